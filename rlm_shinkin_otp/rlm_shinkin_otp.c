/*
 * rlm_shinkin_otp.c - the FreeRADIUS 3.2 adapter of shinkin-otp.
 *
 * RADIUS translation only: attributes in, one core attempt, a reply out.
 * Which questions a context asks, in which order and words, the state,
 * replay and lockout are all the engine's. The module picks the context,
 * hands User-Password over as the answer to the engine's last question,
 * and turns the decision into a reply.
 *
 * Challenge mode: each Access-Request carries one answer (the first one
 * the contract password, or in a context without one the code); when the
 * engine asks again the reply is an Access-Challenge with the engine's
 * message and prompt as Reply-Messages, its echo as Prompt, and the
 * engine's signed, self-contained State (so any server of a farm can take
 * the next round). A registration takes one round per question. Append
 * mode: the password followed by the code in one User-Password.
 *
 * Each radiusd thread keeps its own core context, for the thread's whole
 * life (ctx_pool.c). A lost store connection is the core's to reopen, at
 * the thread's next request (sotp_ctx_ready); the request that saw it
 * fails. What the attributes become is rlm_input.c's, which builds
 * without radiusd.
 */
/* radiusd.h first: modules.h relies on its types. */
#include <freeradius/radiusd.h>

#include <freeradius/modules.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "ctx_pool.h"
#include "rlm_input.h"
#include "shinkin_otp.h"

enum mode { MODE_CHALLENGE, MODE_APPEND };

/*
 * At most this many decisions share one commit: enough to carry every
 * thread of a busy pool (max_servers is 32 by default), few enough that
 * one fsync never holds a crowd.
 */
#define WRITER_MAX_GROUP 64

struct rlm_shinkin_otp {
	/* From the CONF_PARSER table. */
	const char *config;
	const char *context;
	const char *context_attribute;
	const char *mode_name;

	/* Resolved in mod_instantiate; read-only afterwards. */
	const char *name;
	enum mode mode;
	const DICT_ATTR *context_da;
	const DICT_VALUE *auth_type;

	/*
	 * The policy as radiusd -C and the start checked it, from which
	 * every thread's context is made: an edit of the file takes effect
	 * at the next start, never in the threads opened meanwhile only.
	 */
	struct sotp_ctx *model;
	struct ctx_pool pool; /* a core context per radiusd thread */
	/*
	 * The keys, shared by every thread's context: the token is logged
	 * in to and each key version unwrapped once per radiusd.
	 */
	struct sotp_keyring *keys;
	/*
	 * group_commit: the one writer of this instance's threads, opened
	 * with the first thread's context (not before radiusd may fork).
	 */
	bool group_commit;
	pthread_mutex_t writer_lock;
	int writer_lock_ok;
	struct sotp_writer *writer;
};

static const CONF_PARSER module_config[] = {
    {"config", FR_CONF_OFFSET(PW_TYPE_STRING, struct rlm_shinkin_otp, config),
        SOTP_DEFAULT_CONFIG},
    {"context", FR_CONF_OFFSET(PW_TYPE_STRING, struct rlm_shinkin_otp, context),
        NULL},
    {"context_attribute",
        FR_CONF_OFFSET(
            PW_TYPE_STRING, struct rlm_shinkin_otp, context_attribute),
        NULL},
    {"mode", FR_CONF_OFFSET(PW_TYPE_STRING, struct rlm_shinkin_otp, mode_name),
        "challenge"},
    {"group_commit",
        FR_CONF_OFFSET(PW_TYPE_BOOLEAN, struct rlm_shinkin_otp, group_commit),
        "yes"},
    CONF_PARSER_TERMINATOR};

/*
 * radiusd silently ignores unknown items; a misspelt "contxt" would then
 * fall back to defaults. These are the only names the section may hold.
 */
static const char *const known_pairs[] = {
    "config", "context", "context_attribute", "mode", "group_commit", NULL};
static const char *const known_sections[] = {NULL};

/* A Reply-Message or State is one attribute: at most 253 octets. */
#define ATTR_MAX (MAX_STRING_LEN - 1)
_Static_assert(SOTP_REPLY_MAX == ATTR_MAX, "core texts fit one attribute");
_Static_assert(RLM_ATTR_MAX == ATTR_MAX, "rlm_input.h agrees");

static int
in_list(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(name, *list) == 0)
			return 1;
	return 0;
}

/*
 * The core's log sink: its lines (audit included) go to radiusd's log,
 * their control characters escaped (a message may hold a value as it
 * came: sotp_log_text), so that none starts a line of its own. A line
 * longer than line[] is cut by vsnprintf without a mark; out[] is no
 * larger and an escaped text no shorter, so sotp_log_text always cuts it
 * again before that point, after whole characters, with its "...".
 */
static void __attribute__((format(printf, 3, 0)))
core_log(void *arg, int prio, const char *fmt, va_list ap)
{
	const struct rlm_shinkin_otp *inst = arg;
	char line[1024], out[1024];
	log_type_t type;
	_Static_assert(sizeof(line) >= sizeof(out), "every cut is marked");

	if (prio <= LOG_ERR)
		type = L_ERR;
	else if (prio == LOG_WARNING)
		type = L_WARN;
	else if (prio == LOG_NOTICE)
		type = L_AUTH;
	else if (prio == LOG_INFO)
		type = L_INFO;
	else
		type = L_DBG;
	vsnprintf(line, sizeof(line), fmt, ap);
	radlog(type, "rlm_shinkin_otp (%s): %s", inst->name,
	    sotp_log_text(out, sizeof(out), line));
}

static int open_ctx(void *arg, struct sotp_ctx **out, char *why, size_t whysz);

/*
 * The instance's writer, made on first use from a context of its own; a
 * thread that cannot have it gets no context (fail closed: the request
 * fails, the next one tries again).
 */
static int
get_writer(struct rlm_shinkin_otp *inst, struct sotp_writer **out, char *why,
    size_t whysz)
{
	struct sotp_ctx *wctx = NULL;
	int rc = SOTP_OK;

	pthread_mutex_lock(&inst->writer_lock);
	if (inst->writer == NULL &&
	    (rc = open_ctx(inst, &wctx, why, whysz)) == SOTP_OK &&
	    (rc = sotp_writer_new(wctx, WRITER_MAX_GROUP, &inst->writer)) !=
	        SOTP_OK)
		snprintf(why, whysz, "group commit: %s", sotp_strerror(rc));
	*out = inst->writer;
	pthread_mutex_unlock(&inst->writer_lock);
	return rc;
}

/*
 * A thread's context (ctx_pool_open_fn): loaded, and with group_commit
 * writing through the instance's writer.
 */
static int
open_thread_ctx(void *arg, struct sotp_ctx **out, char *why, size_t whysz)
{
	struct rlm_shinkin_otp *inst = arg;
	struct sotp_writer *w = NULL;
	int rc;

	if ((rc = open_ctx(arg, out, why, whysz)) != SOTP_OK ||
	    !inst->group_commit)
		return rc;
	if ((rc = get_writer(inst, &w, why, whysz)) != SOTP_OK ||
	    (rc = sotp_ctx_set_writer(*out, w)) != SOTP_OK) {
		sotp_ctx_free(*out);
		*out = NULL;
	}
	return rc;
}

/*
 * Makes a loaded core context. On failure *out is NULL and why[] holds
 * the core's detail ("file:line: ..."), as it came: its reader escapes
 * it (sotp_log_text). A detail longer than why[] ends in "...".
 */
static int
open_ctx(void *arg, struct sotp_ctx **out, char *why, size_t whysz)
{
	struct rlm_shinkin_otp *inst = arg;
	struct sotp_ctx *ctx = NULL;
	int rc, n;

	*out = NULL;
	why[0] = '\0';
	if ((rc = sotp_ctx_new(&ctx)) != SOTP_OK) {
		snprintf(why, whysz, "%s", sotp_strerror(rc));
		return rc;
	}
	sotp_ctx_set_log(ctx, core_log, inst, rad_debug_lvl > 0);
	if ((rc = sotp_ctx_load_like(ctx, inst->model, inst->keys)) !=
	    SOTP_OK) {
		n = snprintf(why, whysz, "%s: %s", sotp_strerror(rc),
		    sotp_ctx_errmsg(ctx));
		if (n > 0)
			sotp_mark_cut(why, whysz, (size_t)n);
		sotp_ctx_free(ctx);
		return rc;
	}
	*out = ctx;
	return SOTP_OK;
}

/*
 * This thread's core context; NULL (logged) when it cannot be opened.
 * Every core detail this module logs (here, and sotp_ctx_errmsg in the
 * lines below) may hold a value as it came, a path or a store's message:
 * its control characters are escaped as \xHH (radiusd would write each
 * as '?', which names no byte: "bad?.conf" is no file's name), and a
 * long one is cut with "..." after whole characters.
 */
static struct sotp_ctx *
thread_ctx(struct rlm_shinkin_otp *inst, REQUEST *request)
{
	struct sotp_ctx *ctx;
	char why[SOTP_LOG_VALUE_MAX], esc[SOTP_LOG_VALUE_MAX];

	if ((ctx = ctx_pool_get(&inst->pool, why, sizeof(why))) == NULL)
		RERROR("Cannot open shinkin-otp: %s",
		    why[0] != '\0' ? sotp_log_text(esc, sizeof(esc), why)
		                   : "out of memory");
	return ctx;
}

/*
 * The section's items: each a known name, each pair once. radiusd itself
 * ignores an unknown name, and of two lines with one name takes the first
 * with only a warning: "context = login" added under "context = mobile"
 * would leave every login without a code.
 */
static int
check_items(CONF_SECTION *conf)
{
	CONF_PAIR *cp, *again;
	CONF_ITEM *ci;
	const char *name;

	for (ci = cf_item_find_next(conf, NULL); ci != NULL;
	     ci = cf_item_find_next(conf, ci)) {
		if (cf_item_is_pair(ci)) {
			cp = cf_item_to_pair(ci);
			name = cf_pair_attr(cp);
			if (!in_list(name, known_pairs))
				break;
			if ((again = cf_pair_find_next(conf, cp, name)) !=
			    NULL) {
				cf_log_err(cf_pair_to_item(again),
				    "\"%s\" is set twice", name);
				return -1;
			}
		} else if (cf_item_is_section(ci)) {
			name = cf_section_name1(cf_item_to_section(ci));
			if (!in_list(name, known_sections))
				break;
		}
	}
	if (ci == NULL)
		return 0;
	cf_log_err(ci, "Unknown configuration item \"%s\"", name);
	return -1;
}

/* RFC 2548 2.1.5; radius.h names the others. */
#define MSCHAP_LM_ENC_PW 5

/*
 * A credential of another way to authenticate: RFC 2865 4.1 forbids
 * CHAP-Password beside User-Password, and radiusd itself drops a request
 * with EAP-Message beside either. Of RFC 2548's attributes, those a user
 * sends (only in an Access-Request) are the same case: an MS-CHAP or
 * MS-CHAP-V2 response, and the change-password ones, which carry a
 * response and the new password (CPW-1, CPW-2, MS-CHAP2-CPW, and the
 * LM- and NT-Enc-PW pieces). MS-CHAP-Challenge is not: it is the NAS's
 * nonce (RFC 2548 2.3.2, also sent in an Access-Challenge), which proves
 * nothing on its own, and rlm_mschap takes no request on it alone.
 */
static int
is_credential(const DICT_ATTR *da)
{
	if (da->vendor == 0)
		return da->attr == PW_CHAP_PASSWORD;
	if (da->vendor != VENDORPEC_MICROSOFT)
		return 0;
	switch (da->attr) {
	case PW_MSCHAP_RESPONSE:
	case PW_MSCHAP_CPW_1:
	case PW_MSCHAP_CPW_2:
	case MSCHAP_LM_ENC_PW:
	case PW_MSCHAP_NT_ENC_PW:
	case PW_MSCHAP2_RESPONSE:
	case PW_MSCHAP2_CPW:
		return 1;
	default:
		return 0;
	}
}

/*
 * Client-Shortname: the shortname of the client entry the request came
 * through (clients.conf), which the NAS cannot choose, unlike anything it
 * puts in its request. radiusd computes it (a virtual attribute), so it
 * is read from the client, not from the request's attributes.
 */
static int
is_client_shortname(const DICT_ATTR *da)
{
	return da != NULL && da->vendor == 0 && da->attr == PW_CLIENT_SHORTNAME;
}

/*
 * The options' values are named escaped, as the policy path is: radiusd
 * takes a control character raw in a quoted string, and would write it
 * to its log as a '?' that names no byte.
 */
static int
check_options(CONF_SECTION *conf, struct rlm_shinkin_otp *inst)
{
	char esc[SOTP_LOG_VALUE_MAX];
	int has_ctx, has_attr;

	if (strcmp(inst->mode_name, "challenge") == 0)
		inst->mode = MODE_CHALLENGE;
	else if (strcmp(inst->mode_name, "append") == 0)
		inst->mode = MODE_APPEND;
	else {
		cf_log_err_cs(conf,
		    "mode = \"%s\": must be challenge or append",
		    sotp_log_text(esc, sizeof(esc), inst->mode_name));
		return -1;
	}
	has_ctx = inst->context != NULL && inst->context[0] != '\0';
	has_attr = inst->context_attribute != NULL &&
	    inst->context_attribute[0] != '\0';
	if (has_ctx == has_attr) {
		cf_log_err_cs(conf,
		    "Set exactly one of \"context\" and \"context_attribute\"");
		return -1;
	}
	if (has_attr) {
		inst->context_da = dict_attrbyname(inst->context_attribute);
		if (inst->context_da == NULL) {
			cf_log_err_cs(conf,
			    "context_attribute = \"%s\": no such attribute in the dictionary",
			    sotp_log_text(
			        esc, sizeof(esc), inst->context_attribute));
			return -1;
		}
		/*
		 * The value names the service in the audit line and radiusd's
		 * log when the map does not know it: a password there would
		 * be logged.
		 */
		if (inst->context_da->flags.encrypt != FLAG_ENCRYPT_NONE ||
		    inst->context_da->flags.secret ||
		    is_credential(inst->context_da)) {
			cf_log_err_cs(conf,
			    "context_attribute = \"%s\": carries a secret, which "
			    "would be logged as the service name",
			    sotp_log_text(
			        esc, sizeof(esc), inst->context_attribute));
			return -1;
		}
		/* Else never in a request: every one would be refused. */
		if (inst->context_da->flags.virtual &&
		    !is_client_shortname(inst->context_da)) {
			cf_log_err_cs(conf,
			    "context_attribute = \"%s\": radiusd computes it, no "
			    "request carries it (of those, only Client-Shortname "
			    "is taken)",
			    sotp_log_text(
			        esc, sizeof(esc), inst->context_attribute));
			return -1;
		}
	}
	if (inst->config == NULL || inst->config[0] == '\0') {
		cf_log_err_cs(conf, "config must name the policy file");
		return -1;
	}
	return 0;
}

/*
 * Loads the policy once here, as the model of every thread's context, so
 * that a bad policy file, key or store, or a token that is absent,
 * refuses the PIN or lacks the key, stops radiusd (and "radiusd -C") with
 * the core's message, and so that what was checked is what runs.
 */
static int
check_policy(CONF_SECTION *conf, struct rlm_shinkin_otp *inst)
{
	struct sotp_ctx *probe = NULL;
	char why[SOTP_LOG_VALUE_MAX], esc[SOTP_LOG_VALUE_MAX],
	    path[SOTP_LOG_VALUE_MAX];
	int ret = -1;

	/*
	 * The path as configured and the core's detail: escaped alike
	 * (thread_ctx), so that both name the file the same way.
	 */
	sotp_log_text(path, sizeof(path), inst->config);
	/* Read once: the key and every thread's rules come from the model. */
	if (sotp_ctx_new(&inst->model) != SOTP_OK ||
	    sotp_ctx_load_policy(inst->model, inst->config) != SOTP_OK) {
		cf_log_err_cs(conf, "Cannot load policy %s: %s", path,
		    inst->model != NULL ? sotp_log_text(esc, sizeof(esc),
		                              sotp_ctx_errmsg(inst->model))
		                        : "out of memory");
		goto out;
	}
	if (sotp_keyring_open_like(
	        inst->model, &inst->keys, why, sizeof(why)) != SOTP_OK) {
		cf_log_err_cs(conf, "Cannot load policy %s: %s", path,
		    sotp_log_text(esc, sizeof(esc), why));
		goto out;
	}
	if (open_ctx(inst, &probe, why, sizeof(why)) != SOTP_OK) {
		cf_log_err_cs(conf, "Cannot load policy %s: %s", path,
		    sotp_log_text(esc, sizeof(esc), why));
		goto out;
	}
	if (inst->context != NULL && inst->context[0] != '\0' &&
	    sotp_policy_has_context(probe, inst->context) != SOTP_OK) {
		cf_log_err_cs(conf, "context = \"%s\": not defined in %s",
		    inst->context, path);
		goto out;
	}
	/* Else every request would be refused as UNKNOWN_CONTEXT. */
	if (inst->context_da != NULL && !sotp_policy_has_services(probe)) {
		cf_log_err_cs(conf,
		    "context_attribute = \"%s\": %s has no [services] map "
		    "to give its values a context",
		    inst->context_attribute, path);
		goto out;
	}
	ret = 0;
out:
	sotp_ctx_free(probe);
	return ret;
}

static int
mod_instantiate(CONF_SECTION *conf, void *instance)
{
	struct rlm_shinkin_otp *inst = instance;

	inst->name = cf_section_name2(conf);
	if (inst->name == NULL)
		inst->name = cf_section_name1(conf);
	if (check_items(conf) != 0 || check_options(conf, inst) != 0 ||
	    check_policy(conf, inst) != 0)
		return -1;

	/* The server made this VALUE from "Auth-Type NAME { }", if any. */
	inst->auth_type = dict_valbyname(PW_AUTH_TYPE, 0, inst->name);
	if (inst->auth_type == NULL)
		WARN("rlm_shinkin_otp (%s): no \"Auth-Type %s\" in any "
		     "authenticate section; authorize will not claim requests",
		    inst->name, inst->name);

	if (pthread_mutex_init(&inst->writer_lock, NULL) != 0) {
		cf_log_err_cs(conf, "cannot set up the writer's lock");
		return -1;
	}
	inst->writer_lock_ok = 1;
	if (ctx_pool_init(&inst->pool, open_thread_ctx, inst) != 0) {
		cf_log_err_cs(conf, "cannot set up the per-thread contexts");
		return -1;
	}
	return 0;
}

static int
mod_detach(void *instance)
{
	struct rlm_shinkin_otp *inst = instance;

	/* The contexts first: they write through the writer. */
	ctx_pool_free(&inst->pool);
	sotp_writer_free(inst->writer);
	inst->writer = NULL;
	if (inst->writer_lock_ok)
		pthread_mutex_destroy(&inst->writer_lock);
	inst->writer_lock_ok = 0;
	sotp_keyring_free(inst->keys);
	inst->keys = NULL;
	sotp_ctx_free(inst->model);
	inst->model = NULL;
	return 0;
}

/*
 * BlastRADIUS (CVE-2024-3596): radiusd 3.2.1 signs a reply only when it
 * already holds a Message-Authenticator, so every reply to a request this
 * module sees, claimed or not, gets an empty one, first, for the encoder
 * to fill in.
 */
static int
sign_reply(REQUEST *request)
{
	static const uint8_t zero[16];
	VALUE_PAIR *vp;

	if (fr_pair_find_by_num(request->reply->vps, PW_MESSAGE_AUTHENTICATOR,
	        0, TAG_ANY) != NULL)
		return 0;
	vp = fr_pair_afrom_num(request->reply, PW_MESSAGE_AUTHENTICATOR, 0);
	if (vp == NULL)
		return -1;
	fr_pair_value_memcpy(vp, zero, sizeof(zero));
	vp->next = request->reply->vps;
	request->reply->vps = vp;
	return 0;
}

/*
 * One Reply-Message per text, in order (RFC 2865 5.18: clients show them
 * in the order they come). The core keeps each text within one attribute;
 * a longer one would be a core bug, refused rather than cut.
 */
static int
add_reply_message(REQUEST *request, const char *text)
{
	VALUE_PAIR *vp;

	if (text == NULL || text[0] == '\0')
		return 0;
	if (strlen(text) > ATTR_MAX)
		return -1;
	vp = fr_pair_afrom_num(request->reply, PW_REPLY_MESSAGE, 0);
	if (vp == NULL)
		return -1;
	fr_pair_value_strcpy(vp, text);
	fr_pair_add(&request->reply->vps, vp);
	return 0;
}

/*
 * One walk over the request's attributes: the first credential other than
 * User-Password (r->other_auth), and the first attribute of which the
 * request carries more than one where RFC 2865 5.44 allows one
 * (User-Name, User-Password, State, in that order) or where one names the
 * context, into r->repeated. rlm_malformed refuses either.
 */
static void
walk_attributes(
    const struct rlm_shinkin_otp *inst, REQUEST *request, struct rlm_request *r)
{
	static const unsigned int once[] = {
	    PW_USER_NAME, PW_USER_PASSWORD, PW_STATE};
	static const char *const once_name[] = {
	    "User-Name", "User-Password", "State"};
	unsigned int n[4] = {0, 0, 0, 0};
	const VALUE_PAIR *vp;
	size_t i;

	for (vp = request->packet->vps; vp != NULL; vp = vp->next) {
		/* The context may be one of the three: counted as both. */
		if (vp->da == inst->context_da)
			n[3]++;
		for (i = 0; vp->da->vendor == 0 && i < 3; i++)
			if (vp->da->attr == once[i])
				n[i]++;
		if (r->other_auth == NULL && is_credential(vp->da))
			r->other_auth = vp->da->name;
	}
	/*
	 * Which State was meant: none, whatever else is repeated. The
	 * engine spends the State of a request it refuses as malformed; of
	 * two, neither is taken, so neither is spent.
	 */
	if (n[2] > 1) {
		r->state = NULL;
		r->state_len = 0;
	}
	for (i = 0; i < 4; i++) {
		if (n[i] <= 1)
			continue;
		r->repeated = i < 3 ? once_name[i] : inst->context_da->name;
		r->nrepeated = n[i];
		if (i == 0) { /* which contract was meant: none */
			r->user = "";
			r->user_len = 0;
		}
		return;
	}
}

/* The attributes rlm_input.c reads, from the request. */
static void
request_of(const struct rlm_shinkin_otp *inst, REQUEST *request,
    struct rlm_request *r, char *service, size_t servicesz)
{
	const VALUE_PAIR *vp;

	memset(r, 0, sizeof(*r));
	r->now = time(NULL);
	if ((vp = request->username) != NULL) {
		r->user = vp->vp_strvalue;
		r->user_len = vp->vp_length;
	}
	/* Not a CHAP-Password, which radiusd also puts there. */
	if ((vp = request->password) != NULL &&
	    vp->da->attr == PW_USER_PASSWORD && vp->da->vendor == 0) {
		r->password = vp->vp_strvalue;
		r->password_len = vp->vp_length;
	}
	vp = fr_pair_find_by_num(request->packet->vps, PW_STATE, 0, TAG_ANY);
	if (vp != NULL) {
		r->state = vp->vp_octets;
		r->state_len = vp->vp_length;
	}
	if (is_client_shortname(inst->context_da)) {
		r->service_attr = inst->context_da->name;
		if (request->client != NULL &&
		    request->client->shortname != NULL) {
			r->service = request->client->shortname;
			r->service_len = strlen(r->service);
		}
	} else if (inst->context_da != NULL &&
	    (vp = fr_pair_find_by_da(
	         request->packet->vps, inst->context_da, TAG_ANY)) != NULL) {
		r->service_attr = inst->context_da->name;
		/* A string whole, with any NUL inside for rlm_malformed. */
		if (vp->da->type == PW_TYPE_STRING) {
			r->service = vp->vp_strvalue;
			r->service_len = vp->vp_length;
		} else {
			vp_prints_value(service, servicesz, vp, '\0');
			r->service = service;
			r->service_len = strlen(service);
		}
	}
	walk_attributes(inst, request, r);
}

/*
 * What radiusd's log says of the context the engine took (debug), or of
 * a request whose context attribute names none: an error, not debug
 * output, or a NAS that sends no or the wrong attribute is refused
 * without a word outside radiusd -X. The audit line names the value
 * escaped; this one says where to fix it.
 */
static void
log_context(const struct rlm_shinkin_otp *inst, REQUEST *request,
    const struct rlm_request *r, const struct sotp_attempt *a, int rc,
    const struct sotp_decision *d)
{
	const char *context = sotp_attempt_context(a);
	/* The value comes from the NAS: escaped, as radiusd escapes. */
	char value[ATTR_MAX * 4 + 1] = "";

	if (inst->context_da == NULL || a == NULL)
		return;
	if (r->service != NULL)
		fr_prints(value, sizeof(value), r->service,
		    (ssize_t)r->service_len, '"');
	if (context[0] != '\0') {
		RDEBUG2("%s \"%s\" -> context %s", inst->context_da->name,
		    value, context);
		return;
	}
	if (rc != SOTP_OK || d->reason != SOTP_R_UNKNOWN_CONTEXT)
		return;
	if (r->service == NULL)
		RERROR("No %s in the request: cannot choose a context",
		    inst->context_da->name);
	else
		RERROR("%s \"%s\" is not in the policy's [services] map",
		    inst->context_da->name, value);
}

static rlm_rcode_t
send_challenge(
    REQUEST *request, struct sotp_attempt *a, const struct sotp_decision *d)
{
	struct rlm_challenge ch;
	VALUE_PAIR *vp;
	char name[SOTP_LOG_NAME_MAX];
	size_t i;
	int rc;

	if ((rc = rlm_challenge(a, d, &ch)) != SOTP_OK) {
		RERROR("Cannot make the challenge: %s", sotp_strerror(rc));
		return RLM_MODULE_FAIL;
	}
	if ((vp = fr_pair_afrom_num(request->reply, PW_STATE, 0)) == NULL)
		return RLM_MODULE_FAIL;
	fr_pair_value_memcpy(vp, ch.state, ch.state_len);
	fr_pair_add(&request->reply->vps, vp);
	for (i = 0; i < ch.ntext; i++)
		if (add_reply_message(request, ch.text[i]) != 0)
			return RLM_MODULE_FAIL;
	/* RFC 2869 5.10: clients that honour it hide a code as it is typed. */
	if ((vp = fr_pair_afrom_num(request->reply, PW_PROMPT, 0)) == NULL)
		return RLM_MODULE_FAIL;
	vp->vp_integer = ch.echo ? 1 : 0; /* Echo : No-Echo */
	fr_pair_add(&request->reply->vps, vp);
	request->reply->code = PW_CODE_ACCESS_CHALLENGE;
	RDEBUG("Challenge for %s: %s",
	    sotp_log_name(name, request->username->vp_strvalue),
	    sotp_factor_name(d->ask));
	return RLM_MODULE_HANDLED;
}

/*
 * The one place a core result becomes a FreeRADIUS code. An error means
 * the check could not run: fail (never ok), so that a redundant{} section
 * can try another server, and never show the customer internal text.
 */
static rlm_rcode_t
map_decision(REQUEST *request, const struct sotp_ctx *ctx,
    struct sotp_attempt *a, int rc, const struct sotp_decision *d)
{
	const char *malformed;
	char esc[SOTP_LOG_VALUE_MAX];

	if (rc != SOTP_OK) {
		RERROR("shinkin-otp check failed: %s (%s) %s",
		    sotp_strerror(rc), sotp_rc_name(rc),
		    sotp_log_text(esc, sizeof(esc), sotp_ctx_errmsg(ctx)));
		return RLM_MODULE_FAIL;
	}
	/* A malformed answer by the question's name, never its value. */
	malformed = sotp_decision_malformed(d);
	RDEBUG("Decision: %s (%s%s%s)",
	    d->verdict == SOTP_ACCEPT         ? "accept"
	        : d->verdict == SOTP_CONTINUE ? "continue"
	                                      : "reject",
	    sotp_reason_name((int)d->reason),
	    malformed != NULL ? ", malformed input: " : "",
	    malformed != NULL ? malformed : "");

	switch (d->verdict) {
	case SOTP_ACCEPT:
		/* As in PAM: an accept that says anything else is a doubt. */
		if (d->reason != SOTP_R_ACCEPTED || d->locked) {
			RERROR("Accept with reason %s%s: refused",
			    sotp_reason_name((int)d->reason),
			    d->locked ? " (locked)" : "");
			return RLM_MODULE_FAIL;
		}
		if (add_reply_message(request, d->message) != 0)
			return RLM_MODULE_FAIL;
		return RLM_MODULE_OK;
	case SOTP_CONTINUE:
		return send_challenge(request, a, d);
	case SOTP_REJECT:
		break;
	}

	switch (d->reason) {
	case SOTP_R_UNKNOWN_CONTRACT:
		return RLM_MODULE_NOTFOUND;
	case SOTP_R_STORE_UNAVAILABLE:
	case SOTP_R_BAD_CONFIG:
	case SOTP_R_INTERNAL:
		return RLM_MODULE_FAIL;
	case SOTP_R_LOCKED:
		add_reply_message(request, d->message);
		return RLM_MODULE_USERLOCK;
	default:
		add_reply_message(request, d->message);
		return RLM_MODULE_REJECT;
	}
}

/*
 * Status-Server (RFC 5997), when the site calls the module in its
 * "Autz-Type Status-Server" section: ok (radiusd answers Access-Accept)
 * while this thread's context can decide, fail when it cannot (the
 * store lost, removed or not answering, the policy or key unusable).
 * radiusd sends no reply at all for fail, which is what a NAS's probe
 * needs to mark the server dead and send customers to the next one,
 * instead of an answer that says "alive" while every decision fails.
 */
static rlm_rcode_t
status_server(struct rlm_shinkin_otp *inst, REQUEST *request)
{
	struct sotp_ctx *ctx;
	char esc[SOTP_LOG_VALUE_MAX];
	int rc;

	if (sign_reply(request) != 0)
		return RLM_MODULE_FAIL;
	if ((ctx = thread_ctx(inst, request)) == NULL) {
		RERROR("Status-Server: not answering, shinkin-otp cannot be "
		       "opened (the line above says why)");
		return RLM_MODULE_FAIL;
	}
	if ((rc = sotp_ready(ctx)) != SOTP_OK) {
		RERROR("Status-Server: not answering, this server cannot "
		       "decide: %s (%s) %s",
		    sotp_strerror(rc), sotp_rc_name(rc),
		    sotp_log_text(esc, sizeof(esc), sotp_ctx_errmsg(ctx)));
		return RLM_MODULE_FAIL;
	}
	RDEBUG2("Status-Server: the store answers");
	return RLM_MODULE_OK;
}

/*
 * authorize: claim the request unless another module already chose an
 * Auth-Type. With the policy's unknown_contract = hide (the default) it
 * claims every name without looking it up: a name that is not a contract
 * must read and cost what a wrong password does, so it has to reach the
 * engine. Names for another module are routed before this one in the
 * site (sites-available/shinkin-otp). With reveal, an unknown name is
 * left to the next module, as the policy then allows telling.
 */
static rlm_rcode_t
mod_authorize(void *instance, REQUEST *request)
{
	struct rlm_shinkin_otp *inst = instance;
	struct sotp_contract_info info;
	struct rlm_request r;
	struct sotp_ctx *ctx;
	char service[ATTR_MAX + 1], why[128], name[SOTP_LOG_NAME_MAX];
	char esc[SOTP_LOG_VALUE_MAX];
	const char *user;
	VALUE_PAIR *vp;
	int rc;

	if (request->packet->code == PW_CODE_STATUS_SERVER)
		return status_server(inst, request);
	/*
	 * Before any noop: a request left unclaimed (no User-Name) ends in
	 * radiusd's own Access-Reject, which 3.2.1 would send unsigned.
	 */
	if (sign_reply(request) != 0)
		return RLM_MODULE_FAIL;
	if (fr_pair_find_by_num(request->config, PW_AUTH_TYPE, 0, TAG_ANY) !=
	    NULL)
		return RLM_MODULE_NOOP;
	/*
	 * Not refused at the start: a module called only under an Auth-Type
	 * of another name, or enabled and not yet used, is a configuration
	 * that works. Called here, it is not, and says so where -X is off.
	 */
	if (inst->auth_type == NULL) {
		RERROR("No \"Auth-Type %s\" in any authenticate section: "
		       "request not claimed (see rlm_shinkin_otp(5))",
		    inst->name);
		return RLM_MODULE_NOOP;
	}
	request_of(inst, request, &r, service, sizeof(service));
	if ((user = rlm_contract_id(&r)) == NULL)
		return RLM_MODULE_NOOP;
	if ((ctx = thread_ctx(inst, request)) == NULL)
		return RLM_MODULE_FAIL;
	/*
	 * A User-Name that names no contract (two of them, or one holding a
	 * NUL) is the engine's to refuse as malformed, audited and told,
	 * under reveal as under hide: not looked up ("" is no contract) and
	 * left to radiusd's bare reject, or to a module that reads the first.
	 */
	if (sotp_policy_hides_unknown(ctx) ||
	    (user[0] == '\0' && rlm_malformed(&r, why, sizeof(why)) != NULL))
		goto claim;
	rc = sotp_contract_get(ctx, user, &info);
	if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		RERROR("Contract lookup failed: %s %s", sotp_strerror(rc),
		    sotp_log_text(esc, sizeof(esc), sotp_ctx_errmsg(ctx)));
	if (rc == SOTP_ERR_NOT_FOUND) {
		/* From the NAS: escaped, as radiusd escapes it. */
		RDEBUG2("%s is not a contract", sotp_log_name(name, user));
		return RLM_MODULE_NOOP;
	}
	if (rc != SOTP_OK)
		return RLM_MODULE_FAIL;
claim:
	vp = radius_pair_create(request, &request->config, PW_AUTH_TYPE, 0);
	vp->vp_integer = (uint32_t)inst->auth_type->value;
	RDEBUG2("Setting Auth-Type := %s", inst->name);
	return RLM_MODULE_UPDATED;
}

static rlm_rcode_t
mod_authenticate(void *instance, REQUEST *request)
{
	struct rlm_shinkin_otp *inst = instance;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct rlm_request r;
	struct sotp_ctx *ctx;
	char service[ATTR_MAX + 1], why[128], name[SOTP_LOG_NAME_MAX];
	const char *fixed = inst->context;
	rlm_rcode_t code;
	int rc;

	memset(&d, 0, sizeof(d));
	if (sign_reply(request) != 0)
		return RLM_MODULE_FAIL;
	request_of(inst, request, &r, service, sizeof(service));
	if (rlm_contract_id(&r) == NULL) {
		RDEBUG("No User-Name in the request");
		return RLM_MODULE_NOTFOUND;
	}
	if ((ctx = thread_ctx(inst, request)) == NULL)
		return RLM_MODULE_FAIL;
	/*
	 * A request the engine will refuse as malformed names no context
	 * when it carries two context attributes: which one was meant is a
	 * guess.
	 */
	if (rlm_malformed(&r, why, sizeof(why)) != NULL) {
		REDEBUG("%s: refused", why);
		if (inst->context_da != NULL &&
		    r.repeated == inst->context_da->name) {
			fixed = NULL;
			r.service = NULL;
		}
	}
	rc = rlm_round(ctx, fixed, inst->mode == MODE_APPEND, &r, &a, &d);
	log_context(inst, request, &r, a, rc, &d);
	/* The name from the NAS, and a context from the policy or config. */
	RDEBUG2("%s attempt of %s in context %s",
	    r.state != NULL ? "Resuming the" : "New",
	    sotp_log_name(name, r.user),
	    sotp_attempt_context(a)[0] != '\0' ? sotp_attempt_context(a) : "-");
	code = map_decision(request, ctx, a, rc, &d);
	sotp_attempt_free(a);
	return code;
}

extern module_t rlm_shinkin_otp SOTP_EXPORT;
module_t rlm_shinkin_otp SOTP_EXPORT = {
    .magic = RLM_MODULE_INIT,
    .name = "shinkin_otp",
    .type = RLM_TYPE_THREAD_SAFE,
    .inst_size = sizeof(struct rlm_shinkin_otp),
    .config = module_config,
    .instantiate = mod_instantiate,
    .detach = mod_detach,
    .methods =
        {
            [MOD_AUTHENTICATE] = mod_authenticate,
            [MOD_AUTHORIZE] = mod_authorize,
        },
};

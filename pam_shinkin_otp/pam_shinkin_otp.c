/*
 * pam_shinkin_otp.c - the Linux-PAM adapter of shinkin-otp.
 *
 * A translator only: module arguments and the PAM conversation in, one
 * attempt of the core's decision engine in the middle, a PAM return code
 * out. The engine decides every question, its wording in the policy's
 * language and its echo; this file relays them (as sshd relays a
 * keyboard-interactive device's prompts) and holds no rule, no crypto,
 * no SQL and no text of its own for the customer.
 *
 * One thing outlives a call: the context (policy, master key, store
 * handle) of the last call, kept for the next call of the same process
 * (see "The warm context" below; the option "fresh" turns it off).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "shinkin_otp.h"

/*
 * The engine bounds its rounds by the policy's max_rounds (at most 10);
 * this guard only stops a loop should the engine ever fail to.
 */
#define MAX_ROUNDS 16

/* Supplementary groups a warm context remembers (see below). */
#define WARM_GROUPS_MAX 64

struct args {
	const char *config;  /* NULL: SOTP_DEFAULT_CONFIG */
	const char *context; /* NULL: map the PAM service name */
	int use_first_pass;
	int try_first_pass;
	int debug;
	int fresh; /* no warm context: load one for this call only */
};

/*
 * The name of a stack line's option for an audit row: up to and with its
 * '=' (the value might be a secret written in the wrong place), escaped
 * (sotp_log_name).
 */
static const char *
option_name(char out[SOTP_LOG_NAME_MAX], const char *arg)
{
	char name[SOTP_LOG_NAME_MAX];
	size_t n = strcspn(arg, "=");

	if (arg[n] == '=')
		n++;
	if (n >= sizeof(name))
		n = sizeof(name) - 1;
	memcpy(name, arg, n);
	name[n] = '\0';
	return sotp_log_name(out, name);
}

/*
 * Unknown options are refused, not ignored: a typo such as "use_frist_pass"
 * would otherwise change what the stack asks for without anyone noticing.
 * So is an option given twice: in "context=login context=transaction"
 * either could be meant, and taking the last would silently drop the
 * login's password; and so is one with an empty value ("config=").
 * A refusal writes what for its audit row (refuse_options), naming the
 * option, never its value.
 */
static int
parse_args(pam_handle_t *pamh, int argc, const char **argv, struct args *args,
    char *what, size_t whatsz)
{
	char name[SOTP_LOG_NAME_MAX], path[SOTP_LOG_VALUE_MAX];
	unsigned int seen = 0, bit;
	int i;

	memset(args, 0, sizeof(*args));
	what[0] = '\0';
	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "config=") == 0 ||
		    strcmp(argv[i], "context=") == 0) {
			pam_syslog(
			    pamh, LOG_ERR, "option %s: no value", argv[i]);
			snprintf(
			    what, whatsz, "PAM option %s: no value", argv[i]);
			return PAM_SERVICE_ERR;
		}
		if (strncmp(argv[i], "config=", 7) == 0) {
			bit = 1u << 0;
			args->config = argv[i] + 7;
		} else if (strncmp(argv[i], "context=", 8) == 0) {
			bit = 1u << 1;
			args->context = argv[i] + 8;
		} else if (strcmp(argv[i], "use_first_pass") == 0) {
			bit = 1u << 2;
			args->use_first_pass = 1;
		} else if (strcmp(argv[i], "try_first_pass") == 0) {
			bit = 1u << 3;
			args->try_first_pass = 1;
		} else if (strcmp(argv[i], "debug") == 0) {
			bit = 1u << 4;
			args->debug = 1;
		} else if (strcmp(argv[i], "fresh") == 0) {
			bit = 1u << 5;
			args->fresh = 1;
		} else {
			/* Its name only: the value might be a secret. */
			pam_syslog(pamh, LOG_ERR, "unknown option: %s",
			    option_name(name, argv[i]));
			snprintf(what, whatsz, "PAM option %s: unknown", name);
			return PAM_SERVICE_ERR;
		}
		/*
		 * Its name only, as for an unknown option: context='s value
		 * might be a secret typed in the wrong place. A config=
		 * value is kept (here and when it is relative): it is the
		 * path of the file the admin has to look at, which nothing
		 * else on the line names, and it comes from a stack file
		 * that /etc/pam.d leaves readable to every local user;
		 * escaped, as every value from the line (sotp_log_value).
		 */
		if ((seen & bit) != 0) {
			option_name(name, argv[i]);
			if (bit == 1u << 0) /* config= */
				pam_syslog(pamh, LOG_ERR,
				    "duplicate option: config=%s",
				    sotp_log_value(
				        path, sizeof(path), argv[i] + 7));
			else
				pam_syslog(pamh, LOG_ERR,
				    "duplicate option: %s", name);
			snprintf(
			    what, whatsz, "PAM option %s given twice", name);
			return PAM_SERVICE_ERR;
		}
		seen |= bit;
	}
	/*
	 * One says "never prompt", the other "prompt when there is none":
	 * which was meant is a guess, as with an option given twice.
	 */
	if (args->use_first_pass && args->try_first_pass) {
		pam_syslog(pamh, LOG_ERR,
		    "options use_first_pass and try_first_pass conflict: "
		    "give one");
		snprintf(what, whatsz,
		    "PAM options use_first_pass and try_first_pass conflict");
		return PAM_SERVICE_ERR;
	}
	/*
	 * A relative path names a file by the caller's working directory,
	 * which PAM leaves to the application (sshd: /), and the warm
	 * context would outlive a chdir.
	 */
	if (args->config != NULL && args->config[0] != '/') {
		pam_syslog(pamh, LOG_ERR, "config=%s: not an absolute path",
		    sotp_log_value(path, sizeof(path), args->config));
		snprintf(
		    what, whatsz, "PAM option config=: not an absolute path");
		return PAM_SERVICE_ERR;
	}
	return PAM_SUCCESS;
}

/*
 * The one value of a NAME= option on the whole line, or NULL when it is
 * not given; -1 when it is given more than once or empty. parse_args
 * stops at the first mistake: this looks past it.
 */
static int
only_value(int argc, const char **argv, const char *name, const char **out)
{
	size_t n = strlen(name);
	int i;

	*out = NULL;
	for (i = 0; i < argc; i++) {
		if (strncmp(argv[i], name, n) != 0)
			continue;
		if (*out != NULL || argv[i][n] == '\0')
			return -1;
		*out = argv[i] + n;
	}
	return 0;
}

/*
 * The core's lines: a message may hold a value as it came (a path in
 * sotp_ctx_errmsg), so its control characters are escaped here, where
 * the line is written, and none can start a line of its own. A line
 * longer than line[] is cut by vsnprintf without a mark; out[] is no
 * larger and an escaped text no shorter, so sotp_log_text always cuts it
 * again before that point, after whole characters, with its "...".
 */
static void __attribute__((format(printf, 3, 0)))
log_sink(void *arg, int prio, const char *fmt, va_list ap)
{
	char line[4096], out[4096];
	_Static_assert(sizeof(line) >= sizeof(out), "every cut is marked");

	vsnprintf(line, sizeof(line), fmt, ap);
	pam_syslog(arg, prio, "%s", sotp_log_text(out, sizeof(out), line));
}

/*
 * The one translation from the core's outcome to PAM. rc is the last core
 * call's result; d is read only when rc is SOTP_OK. Whatever is not a clean
 * accept of an unlocked contract is a refusal.
 */
static int
pam_result(int rc, const struct sotp_decision *d)
{
	int reason = rc == SOTP_OK ? (int)d->reason : sotp_reason_from_rc(rc);

	if (rc == SOTP_OK && d->locked)
		reason = SOTP_R_LOCKED;
	switch (reason) {
	case SOTP_R_ACCEPTED:
		if (rc == SOTP_OK && d->verdict == SOTP_ACCEPT)
			return PAM_SUCCESS;
		return PAM_AUTH_ERR;
	case SOTP_R_UNKNOWN_CONTRACT:
		return PAM_USER_UNKNOWN;
	case SOTP_R_LOCKED:
		return PAM_MAXTRIES;
	case SOTP_R_UNKNOWN_CONTEXT:
		return PAM_SERVICE_ERR;
	case SOTP_R_STORE_UNAVAILABLE:
	case SOTP_R_BAD_CONFIG:
	case SOTP_R_INTERNAL:
		return PAM_AUTHINFO_UNAVAIL;
	default:
		return PAM_AUTH_ERR;
	}
}

/*
 * The warm context. Reading the policy and the key and opening the store
 * cost more than the decision itself (README, "Speed"), so a process that
 * authenticates more than once (a login daemon, a web front end calling
 * PAM, the bench) keeps the last call's context for its next call, as
 * radiusd keeps one per worker. The module is linked -z nodelete, so it
 * and the context survive the pam_end that would unload it. A call takes
 * the context out (another thread meanwhile loads its own) and puts it
 * back when done. It is not used, and a fresh one is loaded, when:
 * - the policy or the key file has changed (sotp_ctx_stale: looked at on
 *   every call, so an edit or a new key takes effect at the next call);
 * - the call names another config=, or the process now runs under
 *   another effective user or group, or with other supplementary groups,
 *   than when it was loaded (any of them may be what let it read the
 *   policy, the key or the store), or changed them during that call;
 * - the process has forked since: SQLite's handles must never cross a
 *   fork. Before every fork(), the kept context is closed (warm_atfork),
 *   so the child inherits no store handle; a child that got one anyway
 *   (a raw clone) leaves it alone, unclosed.
 * What a call decides is the same either way: every decision reads the
 * store afresh in its own transaction. "fresh" keeps nothing.
 */
struct creds {
	uid_t euid;
	gid_t egid;
	int ngroups;
	gid_t groups[WARM_GROUPS_MAX];
};

static struct {
	pthread_mutex_t lock;
	pthread_once_t once;
	struct sotp_ctx *ctx;
	pid_t pid;
	struct creds creds;
	char config[1024]; /* "" for SOTP_DEFAULT_CONFIG */
} warm = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_ONCE_INIT, NULL, 0, {0}, ""};

/*
 * The credentials that decide what this process may read. 0, or -1 when
 * there are more supplementary groups than kept: no context is kept then.
 */
static int
creds_now(struct creds *c)
{
	memset(c, 0, sizeof(*c));
	c->euid = geteuid();
	c->egid = getegid();
	c->ngroups = getgroups(WARM_GROUPS_MAX, c->groups);
	return c->ngroups < 0 ? -1 : 0;
}

static int
creds_same(const struct creds *a, const struct creds *b)
{
	return a->euid == b->euid && a->egid == b->egid &&
	    a->ngroups == b->ngroups &&
	    memcmp(a->groups, b->groups,
	        (size_t)a->ngroups * sizeof(a->groups[0])) == 0;
}

static void
warm_atfork(void)
{
	struct sotp_ctx *ctx;

	pthread_mutex_lock(&warm.lock);
	ctx = warm.pid == getpid() ? warm.ctx : NULL;
	warm.ctx = NULL;
	pthread_mutex_unlock(&warm.lock);
	sotp_ctx_free(ctx);
}

static void
warm_init(void)
{
	(void)pthread_atfork(warm_atfork, NULL, NULL);
}

/* The kept context, if it fits this call under the credentials `as`. */
static struct sotp_ctx *
warm_take(const struct args *args, const struct creds *as)
{
	const char *config = args->config != NULL ? args->config : "";
	struct sotp_ctx *ctx = NULL, *old = NULL;

	(void)pthread_once(&warm.once, warm_init);
	pthread_mutex_lock(&warm.lock);
	if (warm.ctx != NULL && warm.pid != getpid())
		warm.ctx = NULL; /* the parent's: not ours to use or close */
	if (warm.ctx != NULL && as != NULL && creds_same(&warm.creds, as) &&
	    strcmp(warm.config, config) == 0)
		ctx = warm.ctx;
	else
		old = warm.ctx;
	warm.ctx = NULL;
	pthread_mutex_unlock(&warm.lock);
	sotp_ctx_free(old);
	if (ctx != NULL && sotp_ctx_stale(ctx)) {
		sotp_ctx_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

/*
 * Keeps ctx, loaded or taken under the credentials `as` (NULL: unknown),
 * for the next call, or frees it; ctx is not used after. An application
 * may change its IDs during the call (in its conversation): a context
 * read under other credentials than the ones now is not kept.
 */
static void
warm_keep(const struct args *args, struct sotp_ctx *ctx, const struct creds *as)
{
	const char *config = args->config != NULL ? args->config : "";
	struct sotp_ctx *old;
	struct creds now;

	if (ctx == NULL)
		return;
	sotp_ctx_set_log(ctx, NULL, NULL, 0); /* pamh dies with pam_end */
	if (args->fresh || strlen(config) >= sizeof(warm.config) ||
	    as == NULL || creds_now(&now) != 0 || !creds_same(as, &now)) {
		sotp_ctx_free(ctx);
		return;
	}
	pthread_mutex_lock(&warm.lock);
	old = warm.pid == getpid() ? warm.ctx : NULL;
	warm.ctx = ctx;
	warm.pid = getpid();
	warm.creds = now;
	memcpy(warm.config, config, strlen(config) + 1);
	pthread_mutex_unlock(&warm.lock);
	sotp_ctx_free(old);
}

static int
open_ctx(pam_handle_t *pamh, const struct args *args, const struct creds *as,
    struct sotp_ctx **out)
{
	char path[SOTP_LOG_VALUE_MAX], err[SOTP_LOG_VALUE_MAX];
	int rc;

	if (!args->fresh && (*out = warm_take(args, as)) != NULL) {
		sotp_ctx_set_log(*out, log_sink, pamh, args->debug);
		return PAM_SUCCESS;
	}
	*out = NULL;
	if ((rc = sotp_ctx_new(out)) != SOTP_OK)
		goto fail;
	sotp_ctx_set_log(*out, log_sink, pamh, args->debug);
	if ((rc = sotp_ctx_load(*out, args->config)) != SOTP_OK)
		goto fail;
	if (args->debug)
		pam_syslog(pamh, LOG_DEBUG, "loaded %s",
		    sotp_log_value(path, sizeof(path),
		        args->config != NULL ? args->config
		                             : SOTP_DEFAULT_CONFIG));
	return PAM_SUCCESS;
fail:
	/* The core's message names the path as given: escaped too. */
	pam_syslog(pamh, LOG_ERR, "cannot load %s: %s: %s",
	    sotp_log_value(path, sizeof(path),
	        args->config != NULL ? args->config : SOTP_DEFAULT_CONFIG),
	    sotp_strerror(rc),
	    sotp_log_text(
	        err, sizeof(err), *out != NULL ? sotp_ctx_errmsg(*out) : ""));
	sotp_ctx_free(*out); /* a half-loaded context is never kept */
	*out = NULL;
	return pam_result(rc, NULL);
}

/*
 * The attempt: in context= when given, else in the context the policy's
 * [services] map gives the PAM service. The core maps it, and refuses a
 * service the map does not name as UNKNOWN_CONTEXT (audited, counted,
 * the customer told); *service is set for the log line (conclude).
 */
static int
begin(pam_handle_t *pamh, struct sotp_ctx *ctx, const struct args *args,
    const char *user, const char **service, struct sotp_attempt **a)
{
	const void *item = NULL;

	*service = NULL;
	if (args->context != NULL)
		return sotp_attempt_begin(
		    ctx, user, args->context, time(NULL), a);
	if (pam_get_item(pamh, PAM_SERVICE, &item) != PAM_SUCCESS ||
	    item == NULL) {
		pam_syslog(pamh, LOG_ERR, "no PAM service name");
		item = NULL;
	}
	*service = item;
	return sotp_attempt_begin_service(ctx, user, item, time(NULL), a);
}

/*
 * The name of the attempt's context for a log line, escaped (it is the
 * context= value as given, which the policy may not define): "-" when
 * it has none (a service the [services] map does not name).
 */
static const char *
context_name(char out[SOTP_LOG_NAME_MAX], const struct sotp_attempt *a)
{
	const char *context = sotp_attempt_context(a);

	return context[0] != '\0' ? sotp_log_name(out, context) : "-";
}

/*
 * The attempt ends without an answer to its question (the conversation
 * failed or gave none, use_first_pass found no password): the engine
 * refuses it as BAD_INPUT with `what` as the audit row's detail (which
 * names the question, never an answer, and does not count toward the
 * lockout), so that no attempt is left at a "continue" row with nothing
 * after it; the operator's line says the same. Returns pam_rc, the code
 * for PAM: the engine's customer message is not shown, the conversation
 * being what failed.
 */
static int
abandon(
    pam_handle_t *pamh, struct sotp_attempt *a, const char *what, int pam_rc)
{
	struct sotp_decision d;
	char name[SOTP_LOG_NAME_MAX];

	pam_syslog(pamh, LOG_ERR, "context %s: %s; refused",
	    context_name(name, a), what);
	if (sotp_attempt_malformed(a, what) == SOTP_OK)
		(void)sotp_attempt_step(a, &d);
	return pam_rc;
}

/*
 * The password question: answered from PAM_AUTHTOK when an earlier module
 * read it (and use_first_pass or try_first_pass allows), else prompted
 * and stored as PAM_AUTHTOK for the modules after us. PAM owns
 * PAM_AUTHTOK: only our own prompt response is wiped and freed.
 */
static int
first_pass(pam_handle_t *pamh, const struct args *args, struct sotp_attempt *a,
    int *rc, int *done)
{
	const void *tok = NULL;
	char what[128];
	int pam_rc;

	*done = 0;
	if (!args->use_first_pass && !args->try_first_pass)
		return PAM_SUCCESS;
	if ((pam_rc = pam_get_item(pamh, PAM_AUTHTOK, &tok)) != PAM_SUCCESS) {
		snprintf(what, sizeof(what), "cannot read PAM_AUTHTOK: %s",
		    pam_strerror(pamh, pam_rc));
		return abandon(pamh, a, what, pam_rc);
	}
	if (tok != NULL) {
		*rc = sotp_attempt_answer(a, tok);
		*done = 1;
		return PAM_SUCCESS;
	}
	if (args->use_first_pass)
		return abandon(pamh, a,
		    "use_first_pass: no password from an earlier module",
		    PAM_AUTH_ERR);
	return PAM_SUCCESS;
}

/*
 * Relays the engine's question: its message first (PAM_TEXT_INFO, unless
 * PAM_SILENT), then its prompt with its echo, and the reply back as the
 * answer. A conversation failure ends the attempt (abandon) and stops
 * with its PAM code; a core error stops with *rc set.
 *
 * An event-driven application's conversation may answer PAM_CONV_AGAIN
 * (no answer yet; Linux-PAM's convention: the module returns
 * PAM_INCOMPLETE and the application calls pam_authenticate again, which
 * resumes at this module). That is done at the attempt's first question
 * only (`first`): asking for the first input writes nothing (no audit
 * row, no count, no failure: the engine's finish()), so the attempt is
 * dropped and the next call begins a new one that asks it again. At a
 * later question an answer has been checked and the question's row
 * written; starting over would check that answer twice, so the attempt
 * ends as on any other conversation failure (fail closed).
 */
static int
relay(pam_handle_t *pamh, int flags, const struct args *args,
    struct sotp_attempt *a, const struct sotp_decision *d, int first, int *rc)
{
	const char *question = sotp_factor_name(d->ask);
	char *resp = NULL, what[128];
	int pam_rc, done = 0;

	*rc = SOTP_OK;
	if (d->message[0] != '\0' && (flags & PAM_SILENT) == 0)
		(void)pam_prompt(pamh, PAM_TEXT_INFO, NULL, "%s", d->message);
	if (d->ask == SOTP_F_PASSWORD &&
	    ((pam_rc = first_pass(pamh, args, a, rc, &done)) != PAM_SUCCESS ||
	        done))
		return pam_rc;
	pam_rc =
	    pam_prompt(pamh, d->echo ? PAM_PROMPT_ECHO_ON : PAM_PROMPT_ECHO_OFF,
	        &resp, "%s", d->prompt);
	if (pam_rc == PAM_CONV_AGAIN && first) {
		if (args->debug)
			pam_syslog(pamh, LOG_DEBUG,
			    "the conversation will answer the %s question "
			    "later: incomplete",
			    question);
		pam_rc = PAM_INCOMPLETE;
		goto out;
	}
	if (pam_rc != PAM_SUCCESS || resp == NULL) {
		if (pam_rc != PAM_SUCCESS)
			snprintf(what, sizeof(what),
			    "the conversation failed at the %s question: %s",
			    question, pam_strerror(pamh, pam_rc));
		else
			snprintf(what, sizeof(what),
			    "the conversation gave no answer to the %s question",
			    question);
		pam_rc = abandon(pamh, a, what, PAM_CONV_ERR);
		goto out;
	}
	if (d->ask == SOTP_F_PASSWORD &&
	    (pam_rc = pam_set_item(pamh, PAM_AUTHTOK, resp)) != PAM_SUCCESS) {
		snprintf(what, sizeof(what), "cannot set PAM_AUTHTOK: %s",
		    pam_strerror(pamh, pam_rc));
		pam_rc = abandon(pamh, a, what, pam_rc);
		goto out;
	}
	*rc = sotp_attempt_answer(a, resp);
out:
	sotp_free_string(resp);
	return pam_rc;
}

/* The outcome: the engine's text for the customer, the log, the code. */
static int
conclude(pam_handle_t *pamh, int flags, const struct args *args,
    const struct sotp_ctx *ctx, const struct sotp_attempt *a,
    const char *service, int rc, const struct sotp_decision *d)
{
	const char *context = sotp_attempt_context(a), *malformed = NULL;
	int pam_rc = pam_result(rc, d);
	char name[SOTP_LOG_NAME_MAX], err[SOTP_LOG_VALUE_MAX];

	if (rc == SOTP_OK)
		malformed = sotp_decision_malformed(d);

	/* No attempt (it could not begin): the context it was to run in. */
	if (context[0] == '\0' && a == NULL && args->context != NULL)
		context = args->context;
	/* As given on the stack line, which the policy may not define. */
	context = context[0] != '\0' ? sotp_log_name(name, context) : "-";
	/* The operator's line: the audit line escapes the name, this one
	 * says where to fix it. */
	if (rc == SOTP_OK && d->reason == SOTP_R_UNKNOWN_CONTEXT &&
	    args->context == NULL && service != NULL)
		pam_syslog(pamh, LOG_ERR,
		    "service %s has no context in the policy [services] map "
		    "and no context= option",
		    sotp_log_name(err, service));
	if (rc != SOTP_OK)
		pam_syslog(pamh, LOG_ERR, "context %s: %s: %s", context,
		    sotp_strerror(rc),
		    sotp_log_text(err, sizeof(err), sotp_ctx_errmsg(ctx)));
	else if (d->message[0] != '\0' && (flags & PAM_SILENT) == 0)
		(void)pam_prompt(pamh,
		    d->verdict == SOTP_REJECT ? PAM_ERROR_MSG : PAM_TEXT_INFO,
		    NULL, "%s", d->message);
	/* A malformed answer by the question's name, never its value. */
	if (args->debug)
		pam_syslog(pamh, LOG_DEBUG, "context %s: %s (%s%s%s)", context,
		    pam_strerror(pamh, pam_rc),
		    sotp_reason_name(rc == SOTP_OK ? (int)d->reason
		                                   : sotp_reason_from_rc(rc)),
		    malformed != NULL ? ", malformed input: " : "",
		    malformed != NULL ? malformed : "");
	return pam_rc;
}

/*
 * A stack line parse_args refused: the call stays refused (PAM_SERVICE_ERR,
 * the caller's), and when the policy the line names can still be told
 * apart (one absolute config=, or none: the default) and read, the
 * refusal is audited as the engine's others are: an attempt for PAM_USER
 * (never prompted for: the line is wrong, not the customer) in the one
 * context= or else the service's, refused as BAD_INPUT with `what` as
 * its detail, which names the option and never its value. Nothing is
 * kept warm: the options that would say how are in doubt.
 */
static void
refuse_options(
    pam_handle_t *pamh, int argc, const char **argv, const char *what)
{
	const char *config = NULL, *context = NULL, *user = NULL;
	const void *item = NULL;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char err[SOTP_LOG_VALUE_MAX];
	int rc;

	if (only_value(argc, argv, "config=", &config) != 0 ||
	    (config != NULL && config[0] != '/')) {
		pam_syslog(pamh, LOG_ERR,
		    "options refused: which policy to audit into is not "
		    "clear from config=; no audit row");
		return;
	}
	if (only_value(argc, argv, "context=", &context) != 0)
		context = NULL;
	if (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item != NULL)
		user = item;
	if ((rc = sotp_ctx_new(&ctx)) != SOTP_OK)
		goto fail;
	sotp_ctx_set_log(ctx, log_sink, pamh, 0);
	if ((rc = sotp_ctx_load(ctx, config)) != SOTP_OK)
		goto fail;
	if (context != NULL)
		rc = sotp_attempt_begin(
		    ctx, user != NULL ? user : "", context, time(NULL), &a);
	else {
		item = NULL;
		if (pam_get_item(pamh, PAM_SERVICE, &item) != PAM_SUCCESS)
			item = NULL;
		rc = sotp_attempt_begin_service(
		    ctx, user != NULL ? user : "", item, time(NULL), &a);
	}
	if (rc != SOTP_OK || (rc = sotp_attempt_malformed(a, what)) != SOTP_OK)
		goto fail;
	(void)sotp_attempt_step(a, &d);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
	return;
fail:
	pam_syslog(pamh, LOG_ERR, "options refused: cannot audit it: %s: %s",
	    sotp_strerror(rc),
	    sotp_log_text(
	        err, sizeof(err), ctx != NULL ? sotp_ctx_errmsg(ctx) : ""));
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
}

SOTP_EXPORT int
pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct args args;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct creds creds;
	const struct creds *as = NULL;
	const char *user = NULL, *service = NULL;
	int rc = SOTP_ERR_INTERNAL, pam_rc, round;
	char what[128];

	memset(&d, 0, sizeof(d));
	if ((pam_rc = parse_args(
	         pamh, argc, argv, &args, what, sizeof(what))) != PAM_SUCCESS) {
		refuse_options(pamh, argc, argv, what);
		return pam_rc;
	}
	as = creds_now(&creds) == 0 ? &creds : NULL;
	if ((pam_rc = open_ctx(pamh, &args, as, &ctx)) != PAM_SUCCESS)
		goto out;
	/*
	 * No attempt without a name: the engine has nothing to decide for
	 * (nor to audit under), so only the operator's line says why.
	 */
	if ((pam_rc = pam_get_user(pamh, &user, NULL)) != PAM_SUCCESS ||
	    user == NULL) {
		if (pam_rc == PAM_SUCCESS)
			pam_rc = PAM_USER_UNKNOWN;
		if (pam_rc == PAM_CONV_AGAIN)
			pam_rc = PAM_INCOMPLETE;
		else
			pam_syslog(pamh, LOG_ERR, "no user name: %s",
			    pam_strerror(pamh, pam_rc));
		goto out;
	}
	rc = begin(pamh, ctx, &args, user, &service, &a);
	for (round = 0; rc == SOTP_OK; round++) {
		if ((rc = sotp_attempt_step(a, &d)) != SOTP_OK ||
		    d.verdict != SOTP_CONTINUE)
			break;
		if (round >= MAX_ROUNDS) {
			pam_syslog(pamh, LOG_ERR, "too many rounds; refused");
			pam_rc = PAM_AUTH_ERR;
			goto out;
		}
		if ((pam_rc = relay(pamh, flags, &args, a, &d, round == 0,
		         &rc)) != PAM_SUCCESS)
			goto out;
	}
	pam_rc = conclude(pamh, flags, &args, ctx, a, service, rc, &d);
out:
	sotp_attempt_free(a);
	warm_keep(&args, ctx, as);
	return pam_rc;
}
SOTP_EXPORT int
pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh;
	(void)flags;
	(void)argc;
	(void)argv;
	return PAM_SUCCESS;
}

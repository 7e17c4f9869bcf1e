/*
 * cmd_misc.c - init, check-config, messages and audit (list, verify,
 * prune).
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "cli.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DUMP_MAX (1024 * 1024)

/*
 * The effective policy as text, in a buffer grown until it fits; *out is
 * malloc'd (the caller frees it). Returns an rc.
 */
static int
policy_text(const struct cli *c, char **out)
{
	char *buf = NULL, *nbuf;
	size_t sz = 8192;
	int rc;

	*out = NULL;
	for (;;) {
		if ((nbuf = realloc(buf, sz)) == NULL) {
			rc = SOTP_ERR_NOMEM;
			goto out;
		}
		buf = nbuf;
		rc = sotp_policy_dump(c->ctx, buf, sz);
		if (rc != SOTP_ERR_BUFFER || sz >= DUMP_MAX)
			break;
		sz *= 2;
	}
	if (rc == SOTP_OK) {
		*out = buf;
		buf = NULL;
	}
out:
	free(buf);
	return rc;
}

/*
 * Tokens that hold one seed, one warning line per group: the line
 * gathers a group's serials and is written when the next group (or the
 * end, group 0) comes.
 */
struct shared_line {
	const struct cli *c;
	unsigned int group;
	char text[1024];
	int n;
};

static void
shared_flush(struct shared_line *l)
{
	if (l->group == 0)
		return;
	sotp_mark_cut(l->text, sizeof(l->text), (size_t)l->n);
	cli_warn(l->c,
	    "warning: tokens %s hold one seed: each answers with the other's codes; disable or replace all but one (token list --shared-seed)",
	    l->text);
}

static int
shared_one(void *arg, unsigned int group, const char *serial)
{
	struct shared_line *l = arg;
	size_t len;

	if (group != l->group) {
		shared_flush(l);
		l->group = group;
		l->n = 0;
		l->text[0] = '\0';
	}
	len = (size_t)l->n;
	if (len < sizeof(l->text))
		l->n += snprintf(l->text + len, sizeof(l->text) - len, "%s'%s'",
		    len > 0 ? ", " : "", serial);
	return 0;
}

int
cmd_init(struct cli *c, int argc, char **argv)
{
	struct cli_json j;
	struct shared_line sl;
	char store[PATH_MAX + 64], key[PATH_MAX], kek[256];
	size_t npos;
	int ex, rc;

	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0)
		return ex;
	if ((rc = sotp_init_at(c->ctx, c->config, c->now)) != SOTP_OK)
		return cli_error(c, rc);
	/* Found, and audited, by init: told, and the store kept. */
	cli_what(c, "init", NULL);
	memset(&sl, 0, sizeof(sl));
	sl.c = c;
	if ((rc = sotp_seed_shared(c->ctx, shared_one, &sl)) != SOTP_OK)
		cli_warn_rc(c, rc,
		    "warning: tokens holding one seed not looked for: %s",
		    sotp_ctx_errmsg(c->ctx));
	shared_flush(&sl);
	/* Where init put the key and the store is the policy's to say. */
	if ((rc = sotp_policy_locations(
	         c->ctx, store, sizeof(store), key, sizeof(key))) != SOTP_OK ||
	    (rc = sotp_policy_kek(c->ctx, kek, sizeof(kek))) != SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "config", c->config);
		json_str(&j, "kek", kek);
		json_str(&j,
		    strncmp(kek, "file", 4) == 0 ? "master_key" : "pin_file",
		    key);
		json_str(&j, "store", store);
		json_end(&j);
	} else if (strncmp(kek, "file", 4) == 0) {
		cli_say("config: %s", c->config);
		cli_say("master key: %s", key);
		cli_say("store: %s", store);
	} else {
		cli_say("config: %s", c->config);
		cli_say("key-encryption key: %s (PIN in %s)", kek, key);
		cli_say("store: %s", store);
	}
	return CLI_EXIT_OK;
}

int
cmd_check_config(struct cli *c, int argc, char **argv)
{
	struct cli_json j;
	char *dump = NULL;
	size_t npos;
	int ex, rc;

	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0)
		return ex;
	if ((rc = sotp_ctx_load_policy(c->ctx, c->config)) == SOTP_OK)
		rc = policy_text(c, &dump);
	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "config", c->config);
		json_bool(&j, "valid", rc == SOTP_OK);
		if (rc != SOTP_OK) {
			json_str(&j, "error", sotp_strerror(rc));
			json_str(&j, "detail", sotp_ctx_errmsg(c->ctx));
		} else {
			json_str(&j, "policy", dump);
		}
		json_end(&j);
		cli_json_told(c);
	} else if (rc == SOTP_OK) {
		cli_say("# %s: valid; the effective policy:", c->config);
		fputs(dump, stdout);
	}
	free(dump);
	return rc == SOTP_OK ? CLI_EXIT_OK : cli_error(c, rc);
}

/* One catalog text, as a [messages] line would set it. */
static int
message_line(void *arg, const char *name, const char *text)
{
	const struct cli *c = arg;
	struct cli_json j;

	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "name", name);
		json_str(&j, "text", text);
		json_end(&j);
	} else {
		printf("%s = \"", name);
		cli_text(stdout, text);
		printf("\"\n");
	}
	return 0;
}

/*
 * messages: every text the customers read under this policy, in its
 * language and with its overrides, for the bank to review.
 */
int
cmd_messages(struct cli *c, int argc, char **argv)
{
	size_t npos;
	int ex, rc;

	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0)
		return ex;
	if ((rc = sotp_ctx_load_policy(c->ctx, c->config)) != SOTP_OK ||
	    (rc = sotp_messages(c->ctx, message_line, c)) != SOTP_OK)
		return cli_error(c, rc);
	return CLI_EXIT_OK;
}

/* " KEY=VALUE" of an audit row, "-" when empty. */
static void
field(const char *key, const char *val)
{
	printf(" %s=", key);
	cli_text(stdout, val != NULL && val[0] != '\0' ? val : "-");
}

static int
audit_row(void *arg, const struct sotp_audit_row *r)
{
	const struct cli *c = arg;
	struct cli_json j;
	char when[32];

	cli_time(r->ts, when, sizeof(when));
	if (c->json) {
		json_begin(&j, cli_rows(c));
		json_int(&j, "id", r->id);
		json_int(&j, "ts", r->ts);
		json_str(&j, "time", when);
		json_str(&j, "action", r->action);
		json_str(&j, "contract", r->contract);
		json_str(&j, "serial", r->serial);
		json_str(&j, "context", r->context);
		json_str(&j, "verdict", r->verdict);
		json_str(&j, "reason", sotp_reason_name(r->reason));
		json_int(&j, "reason_code", r->reason);
		json_str(&j, "detail", r->detail);
		json_int(&j, "seq", r->seq);
		json_int(&j, "keyed", r->keyed);
		json_end(&j);
	} else {
		printf("%s %lld %s %s %s", when, (long long)r->id,
		    r->action != NULL ? r->action : "-",
		    r->verdict != NULL ? r->verdict : "-",
		    sotp_reason_name(r->reason));
		field("contract", r->contract);
		field("serial", r->serial);
		field("context", r->context);
		if (r->detail != NULL && r->detail[0] != '\0')
			field("detail", r->detail);
		/* Written without the key: what vouches for it is the store. */
		if (r->keyed == 0)
			printf(" nokey=%s", r->seq > 0 ? "linked" : "waiting");
		fputc('\n', stdout);
	}
	/* Stop early when nobody reads any more (a closed pipe). */
	return ferror(cli_rows(c)) ? 1 : 0;
}

/*
 * --since/--until/--before: seconds since the epoch, an ISO 8601 UTC time
 * as the audit lines print it (2026-11-25T18:43:57Z), or a date (its
 * midnight, UTC); the core refuses any other shape and any moment that
 * does not exist.
 */
static int
audit_time(struct cli *c, const char *opt, const char *s, long long *out)
{
	const char *zero;
	int64_t t;

	if ((zero = sotp_parse_ll_zero(s)) != NULL)
		return cli_usage(c, "%s: '%s' %s", opt, s, zero);
	if (sotp_time_parse(s, &t) != SOTP_OK)
		return cli_usage(c,
		    "%s: '%s' is not seconds since the epoch, "
		    "YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DD (UTC)",
		    opt, s);
	*out = (long long)t;
	return CLI_EXIT_OK;
}

/* The outcome of a verify: one line (or a JSON object), exit 0 or 1. */
static int
audit_report(
    const struct cli *c, const struct sotp_audit_check *k, const char *done)
{
	static const char *const names[] = {
	    "ok", "changed", "removed", "inserted", "head", "base"};
	struct cli_json j;

	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "verdict",
		    k->problem == SOTP_AUDIT_OK ? "ok" : "broken");
		json_str(&j, "problem", names[k->problem]);
		json_int(&j, "row", k->bad_id);
		json_int(&j, "seq", k->bad_seq);
		json_int(&j, "rows", k->rows);
		json_int(&j, "first_seq", k->first_seq);
		json_int(&j, "last_seq", k->last_seq);
		json_int(&j, "base_seq", k->base_seq);
		json_int(&j, "pending", k->pending);
		json_int(&j, "legacy", k->legacy);
		json_int(&j, "unkeyed", k->unkeyed);
		json_int(&j, "unkeyed_row", k->unkeyed_id);
		json_str(&j, "what", k->what);
		json_end(&j);
		cli_json_told(c);
	} else if (k->problem == SOTP_AUDIT_OK) {
		printf("%s%s%s\n", done != NULL ? done : "",
		    done != NULL ? "; " : "", k->what);
		if (k->base_seq > 0)
			printf("pruned before seq %lld\n",
			    (long long)(k->base_seq + 1));
		if (k->pending > 0)
			printf("%lld rows written without the master key wait "
			       "to be chained\n",
			    (long long)k->pending);
		if (k->legacy > 0)
			printf("%lld rows from before the chain are not "
			       "covered\n",
			    (long long)k->legacy);
		if (k->unkeyed > 0)
			printf("%lld rows were written without the master key "
			       "and chained later (the first: row %lld): "
			       "nothing tells them from rows put in by hand "
			       "before that; audit marks them nokey=linked\n",
			    (long long)k->unkeyed, (long long)k->unkeyed_id);
	}
	if (k->problem == SOTP_AUDIT_OK)
		return CLI_EXIT_OK;
	cli_warn(c, "audit chain broken: %s", k->what);
	return CLI_EXIT_REFUSED;
}

/* audit verify: the first row changed, removed or inserted, or none. */
static int
audit_verify(struct cli *c, int argc, char **argv)
{
	struct sotp_audit_check k;
	size_t npos;
	int ex, rc;

	cli_what(c, "audit verify", NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0 ||
	    (ex = cli_load(c)) != 0)
		return ex;
	if ((rc = sotp_audit_verify(c->ctx, &k)) != SOTP_OK)
		return cli_error(c, rc);
	return audit_report(c, &k, NULL);
}

/*
 * --past ID[,ID...]: the rows "audit.head" an auditor has looked into,
 * each an audit id (as audit verify and audit list show them).
 */
static int
audit_past(struct cli *c, char *s, int64_t *past, size_t *n)
{
	char *one, *save = NULL;
	long long v;
	size_t i;
	int ex;

	*n = 0;
	if (s[0] == '\0' || s[0] == ',' || s[strlen(s) - 1] == ',' ||
	    strstr(s, ",,") != NULL)
		return cli_usage(
		    c, "--past: '%s' is no list of audit row ids", s);
	for (one = strtok_r(s, ",", &save); one != NULL;
	     one = strtok_r(NULL, ",", &save)) {
		if (*n == SOTP_AUDIT_PAST_MAX)
			return cli_usage(c, "--past: more than %d rows",
			    SOTP_AUDIT_PAST_MAX);
		if ((ex = cli_number(c, "--past", one, 1, INT64_MAX, &v)) != 0)
			return ex;
		for (i = 0; i < *n; i++)
			if (past[i] == (int64_t)v)
				return cli_usage(
				    c, "--past: row %lld named twice", v);
		past[(*n)++] = (int64_t)v;
	}
	return CLI_EXIT_OK;
}

/*
 * audit prune --before T [--past ID,...]: only a chain that verifies is
 * pruned, but for the rows named in --past.
 */
static int
audit_prune(struct cli *c, int argc, char **argv)
{
	struct sotp_audit_check k;
	char *before_s = NULL, *past_s = NULL, done[64];
	const struct cli_opt opts[] = {
	    {"before", &before_s, NULL},
	    {"past", &past_s, NULL},
	    {NULL, NULL, NULL},
	};
	int64_t past[SOTP_AUDIT_PAST_MAX];
	long long before = 0;
	int64_t removed = 0;
	size_t npos, npast = 0;
	int ex, rc;

	cli_what(c, "audit prune", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0)
		return ex;
	if (before_s == NULL)
		return cli_usage(
		    c, "usage: audit prune --before T [--past ID,...]");
	if ((ex = audit_time(c, "--before", before_s, &before)) != 0 ||
	    (past_s != NULL &&
	        (ex = audit_past(c, past_s, past, &npast)) != 0) ||
	    (ex = cli_load(c)) != 0)
		return ex;
	rc = sotp_audit_prune(
	    c->ctx, (int64_t)before, past, npast, c->now, &removed, &k);
	if (rc != SOTP_OK)
		return cli_error(c, rc);
	if (k.problem != SOTP_AUDIT_OK)
		return audit_report(c, &k, NULL);
	/* What is left, verified again. */
	if ((rc = sotp_audit_verify(c->ctx, &k)) != SOTP_OK)
		return cli_error(c, rc);
	snprintf(done, sizeof(done), "%lld rows pruned", (long long)removed);
	return audit_report(c, &k, done);
}

/* audit retag: tags left under a retired version, moved on. */
static int
audit_retag(struct cli *c, int argc, char **argv)
{
	struct sotp_audit_check k;
	char done[64];
	size_t npos;
	int ex, rc, n = 0;

	cli_what(c, "audit retag", NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0 ||
	    (ex = cli_load(c)) != 0)
		return ex;
	if ((rc = sotp_audit_retag_old(c->ctx, c->now, &n, &k)) != SOTP_OK)
		return cli_error(c, rc);
	snprintf(done, sizeof(done), "%d chains tagged again", n);
	return audit_report(c, &k, done);
}

int
cmd_audit(struct cli *c, int argc, char **argv)
{
	char *contract = NULL, *since_s = NULL, *until_s = NULL;
	const struct cli_opt opts[] = {
	    {"contract", &contract, NULL},
	    {"since", &since_s, NULL},
	    {"until", &until_s, NULL},
	    {NULL, NULL, NULL},
	};
	long long since = 0, until = 0;
	size_t npos;
	int ex, rc;

	if (argc > 0 && strcmp(argv[0], "verify") == 0)
		return audit_verify(c, argc - 1, argv + 1);
	if (argc > 0 && strcmp(argv[0], "prune") == 0)
		return audit_prune(c, argc - 1, argv + 1);
	if (argc > 0 && strcmp(argv[0], "retag") == 0)
		return audit_retag(c, argc - 1, argv + 1);
	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0 ||
	    (ex = cli_nonempty(c, "--contract", contract)) != 0)
		return ex;
	if (since_s != NULL &&
	    (ex = audit_time(c, "--since", since_s, &since)) != 0)
		return ex;
	if (until_s != NULL &&
	    (ex = audit_time(c, "--until", until_s, &until)) != 0)
		return ex;
	/*
	 * The core reads 0 as "no bound": --until 0 (or 1970-01-01) would
	 * list the whole trail, the opposite of what was asked. Rows up to
	 * the epoch are none; -1 says so.
	 */
	if (until_s != NULL && until == 0)
		until = -1;
	if ((ex = cli_load_nokey(c)) != CLI_EXIT_OK ||
	    (ex = cli_rows_begin(c)) != CLI_EXIT_OK)
		return ex;
	rc = sotp_audit_list(c->ctx, contract, since, until, audit_row, c);
	return cli_rows_end(c, rc == SOTP_OK ? CLI_EXIT_OK : cli_error(c, rc));
}

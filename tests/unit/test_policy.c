/*
 * test_policy.c - the policy file: the shipped sample gives the bank's
 * rules, good variants read as written, the dump reads back to the same
 * policy, and every file in tests/data/policy/bad fails with exactly the
 * "file:line: message" its first line announces.
 *
 * Data files are found through $TOP (tests/run.sh exports it), so the
 * binary runs from any directory: TOP=$PWD build/tests/test_policy.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sotp_int.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define EXPECT_TAG "# expect: "
#define DUMP_MAX 65536

static const char *const good_files[] = {
    "conf/shinkin-otp.conf",
    "tests/data/policy/good/minimal.conf",
    "tests/data/policy/good/full.conf",
    "tests/data/policy/good/edge.conf",
    "tests/data/policy/good/services-only.conf",
    "tests/data/policy/good/sqlite-password-path.conf",
};

/* $TOP/rel into out[SOTP_PATH_MAX]; fails the test when TOP is unset. */
static void
top_path(char *out, const char *rel)
{
	const char *top = getenv("TOP");
	int n;

	if (top == NULL || top[0] == '\0')
		fail_msg(
		    "TOP is not set: run tests/run.sh, or "
		    "TOP=$PWD build/tests/test_policy from the source tree");
	n = snprintf(out, SOTP_PATH_MAX, "%s/%s", top, rel);
	assert_true(n > 0 && n < SOTP_PATH_MAX);
}

/* A context with the policy at $TOP/rel loaded; the load must succeed. */
static struct sotp_ctx *
load(const char *rel)
{
	struct sotp_ctx *ctx = NULL;
	char path[SOTP_PATH_MAX];
	int rc;

	top_path(path, rel);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	rc = sotp_ctx_load_policy(ctx, path);
	if (rc != SOTP_OK)
		fail_msg(
		    "%s: %s (%s)", rel, sotp_ctx_errmsg(ctx), sotp_rc_name(rc));
	return ctx;
}

static void
assert_context(const struct sotp_policy *p, const char *name, int password,
    enum sotp_second second, enum sotp_action action)
{
	const struct sotp_context_def *c = sotp_policy_context(p, name);

	if (c == NULL)
		fail_msg("context '%s' is missing", name);
	assert_int_equal(c->password, password);
	assert_int_equal(c->second, second);
	assert_int_equal(c->action, action);
}

static void
assert_maps(const struct sotp_ctx *ctx, const char *service, const char *want)
{
	const char *got = NULL;

	assert_int_equal(sotp_policy_context_for(ctx, service, &got), SOTP_OK);
	assert_non_null(got);
	assert_string_equal(got, want);
}

/* The bank's five contexts, as shipped and as built in. */
static void
assert_bank_contexts(const struct sotp_policy *p)
{
	assert_int_equal(p->ncontexts, 5);
	assert_context(p, "login", 1, SOTP_2F_USER, SOTP_ACT_AUTH);
	assert_context(p, "transaction", 0, SOTP_2F_OTP, SOTP_ACT_AUTH);
	assert_context(p, "mobile", 1, SOTP_2F_NONE, SOTP_ACT_AUTH);
	assert_context(p, "registration", 1, SOTP_2F_CARD, SOTP_ACT_REGISTER);
	assert_context(
	    p, "unregistration", 1, SOTP_2F_OTP, SOTP_ACT_UNREGISTER);
}

static void
test_policy_shipped_has_bank_contexts(void **state)
{
	struct sotp_ctx *ctx = load("conf/shinkin-otp.conf");
	const struct sotp_policy *p = &ctx->pol;
	size_t i;
	static const char *const names[] = {
	    "login", "transaction", "mobile", "registration", "unregistration"};

	(void)state;
	assert_bank_contexts(p);
	for (i = 0; i < NELEM(names); i++)
		assert_int_equal(
		    sotp_policy_has_context(ctx, names[i]), SOTP_OK);
	assert_int_equal(
	    sotp_policy_has_context(ctx, "payments"), SOTP_ERR_NOT_FOUND);
	assert_string_equal(
	    p->store, "sqlite:/var/lib/shinkin-otp/shinkin-otp.db");
	assert_string_equal(p->master_key, "/etc/shinkin-otp/master.key");
	assert_string_equal(p->issuer, "Shinkin Bank");
	assert_int_equal(p->alg, SOTP_ALG_SHA1);
	assert_int_equal(p->digits, 6);
	assert_int_equal(p->period, 30);
	assert_int_equal(p->window_back, 1);
	assert_int_equal(p->window_forward, 1);
	assert_int_equal(p->lock_threshold, 5);
	assert_int_equal(p->lock_duration, 0);
	assert_int_equal(p->state_lifetime, 120);
	assert_int_equal(p->max_rounds, 4);
	assert_int_equal(p->lang, SOTP_LANG_JA);
	assert_int_equal(p->card_rows, 5);
	assert_int_equal(p->card_cols, 10);
	assert_int_equal(p->card_cells, 2);
	assert_int_equal(p->connect_timeout, SOTP_CONNECT_TIMEOUT_S);
	assert_int_equal(p->statement_timeout, SOTP_STATEMENT_TIMEOUT_MS);
	assert_int_equal(p->lock_timeout, SOTP_LOCK_TIMEOUT_MS);
	assert_string_equal(p->metrics, "/var/lib/shinkin-otp/metrics");
	assert_int_equal(p->reveal_unknown, 0);
	sotp_ctx_free(ctx);
}

static void
test_policy_shipped_kinds(void **state)
{
	struct sotp_ctx *ctx = load("conf/shinkin-otp.conf");
	const struct sotp_policy *p = &ctx->pol;
	const struct sotp_kind *k;

	(void)state;
	assert_int_equal(p->nkinds, 2);
	assert_non_null(k = sotp_policy_kind(p, "mobile"));
	assert_ptr_equal(&p->kinds[p->default_kind], k);
	assert_int_equal(k->sunset_end, 0);
	assert_non_null(k = sotp_policy_kind(p, "pc-legacy"));
	assert_string_equal(k->sunset, "2027-03-31");
	/* Accepted through the whole sunset day: ends 2027-04-01T00:00Z. */
	assert_int_equal(k->sunset_end, 1806537600);
	assert_int_equal(k->warn_days, 60);
	assert_null(sotp_policy_kind(p, "sms"));
	sotp_ctx_free(ctx);
}

static void
test_policy_shipped_service_map(void **state)
{
	struct sotp_ctx *ctx = load("conf/shinkin-otp.conf");
	const char *got = "x";

	(void)state;
	assert_int_equal(ctx->pol.nservices, 9);
	assert_int_equal(sotp_policy_has_services(ctx), 1);
	assert_maps(ctx, "ib-transfer", "transaction");
	assert_maps(ctx, "transfer", "transaction");
	assert_maps(ctx, "sshd", "login");
	assert_maps(ctx, "login", "login");
	assert_maps(ctx, "ib-login", "login");
	assert_maps(ctx, "ib-mobile", "mobile");
	assert_maps(ctx, "mobile", "mobile");
	assert_maps(ctx, "ib-register", "registration");
	assert_maps(ctx, "ib-unregister", "unregistration");
	/* Unmapped: not found, and no stale answer left behind. */
	assert_int_equal(
	    sotp_policy_context_for(ctx, "ftp", &got), SOTP_ERR_NOT_FOUND);
	assert_null(got);
	assert_int_equal(
	    sotp_policy_context_for(ctx, "", &got), SOTP_ERR_NOT_FOUND);
	assert_int_equal(
	    sotp_policy_context_for(ctx, "SSHD", &got), SOTP_ERR_NOT_FOUND);
	sotp_ctx_free(ctx);
}

static void
test_policy_relative_paths_resolve(void **state)
{
	struct sotp_ctx *ctx = load("tests/data/policy/good/minimal.conf");
	char dir[SOTP_PATH_MAX], want[SOTP_PATH_MAX + 32];

	(void)state;
	top_path(dir, "tests/data/policy/good");
	snprintf(want, sizeof(want), "sqlite:%s/state/shinkin-otp.db", dir);
	assert_string_equal(ctx->pol.store, want);
	snprintf(want, sizeof(want), "%s/master.key", dir);
	assert_string_equal(ctx->pol.master_key, want);
	sotp_ctx_free(ctx);

	/* Absolute paths are kept as written. */
	ctx = load("tests/data/policy/good/full.conf");
	assert_string_equal(
	    ctx->pol.store, "sqlite:/var/lib/shinkin-otp-test/otp.db");
	assert_string_equal(
	    ctx->pol.master_key, "/etc/shinkin-otp-test/master.key");
	sotp_ctx_free(ctx);
}

static void
test_policy_minimal_gets_defaults(void **state)
{
	struct sotp_ctx *ctx = load("tests/data/policy/good/minimal.conf");
	const struct sotp_policy *p = &ctx->pol;
	const char *got = NULL;

	(void)state;
	assert_bank_contexts(p);
	assert_int_equal(p->nkinds, 1);
	assert_string_equal(p->kinds[0].name, "mobile");
	assert_int_equal(p->default_kind, 0);
	assert_int_equal(p->kinds[0].sunset_end, 0);
	assert_int_equal(p->nservices, 0);
	assert_int_equal(sotp_policy_has_services(ctx), 0);
	assert_int_equal(sotp_policy_has_services(NULL), 0);
	assert_int_equal(
	    sotp_policy_context_for(ctx, "sshd", &got), SOTP_ERR_NOT_FOUND);
	assert_string_equal(p->issuer, "shinkin-otp");
	assert_int_equal(p->alg, SOTP_ALG_SHA1);
	assert_int_equal(p->digits, 6);
	assert_int_equal(p->period, 30);
	assert_int_equal(p->window_back, 1);
	assert_int_equal(p->window_forward, 1);
	assert_int_equal(p->max_drift, 2);
	assert_int_equal(p->resync_window, 40);
	assert_int_equal(p->hotp_look_ahead, 10);
	assert_int_equal(p->hotp_resync_window, 100);
	assert_int_equal(p->min_secret_bytes, 16);
	assert_int_equal(p->migration_binding, 1);
	assert_int_equal(p->rehash, 0);
	assert_int_equal(p->pskc_signed, 0);
	assert_int_equal(p->pw_method, SOTP_PW_YESCRYPT);
	assert_int_equal(p->pw_cost, 5);
	/* Legacy hashes come in by default: the bank's customers have them. */
	assert_int_equal(p->pw_legacy_refuse, 0);
	assert_int_equal(p->lock_threshold, 5);
	assert_int_equal(p->lock_duration, 0);
	assert_int_equal(p->state_lifetime, 120);
	assert_int_equal(p->max_rounds, 4);
	assert_int_equal(p->lang, SOTP_LANG_JA);
	assert_int_equal(p->card_rows, 5);
	assert_int_equal(p->card_cols, 10);
	assert_int_equal(p->card_cells, 2);
	assert_int_equal(p->connect_timeout, SOTP_CONNECT_TIMEOUT_S);
	assert_int_equal(p->statement_timeout, SOTP_STATEMENT_TIMEOUT_MS);
	assert_int_equal(p->lock_timeout, SOTP_LOCK_TIMEOUT_MS);
	/* A policy without the key does not count. */
	assert_string_equal(p->metrics, "");
	sotp_ctx_free(ctx);
}

static void
test_policy_full_sets_every_key(void **state)
{
	struct sotp_ctx *ctx = load("tests/data/policy/good/full.conf");
	const struct sotp_policy *p = &ctx->pol;
	const struct sotp_kind *k;

	(void)state;
	/*
	 * Only whole-line comments: a '#' inside a value is kept (after a
	 * blank it is refused, bad/comment-after-*.conf).
	 */
	assert_string_equal(p->issuer, "Test Bank (staging)#2");
	assert_int_equal(p->alg, SOTP_ALG_SHA512);
	assert_int_equal(p->digits, 8);
	assert_int_equal(p->period, 20);
	assert_int_equal(p->window_back, 2);
	assert_int_equal(p->window_forward, 2);
	assert_int_equal(p->max_drift, 10);
	assert_int_equal(p->resync_window, 1000);
	assert_int_equal(p->hotp_look_ahead, 100);
	assert_int_equal(p->hotp_resync_window, 10000);
	assert_int_equal(p->min_secret_bytes, 20);
	assert_int_equal(p->migration_binding, 0);
	assert_int_equal(p->rehash, 1);
	assert_int_equal(p->pskc_signed, 1);
	assert_int_equal(p->pw_method, SOTP_PW_SHA512CRYPT);
	assert_int_equal(p->pw_cost, 10000);
	assert_int_equal(p->pw_legacy_refuse, 1);
	assert_int_equal(p->lock_threshold, 100);
	assert_int_equal(p->lock_duration, 2592000);
	assert_int_equal(p->state_lifetime, 3600);
	assert_int_equal(p->max_rounds, 10);
	assert_int_equal(p->card_rows, 26);
	assert_int_equal(p->card_cols, 10);
	assert_int_equal(p->card_cells, 8);
	assert_int_equal(p->lang, SOTP_LANG_EN);
	/* [messages]: by name, bare or quoted (blanks kept), in UTF-8. */
	assert_string_equal(sotp_msg_text(p, sotp_msg_find("PROMPT_OTP")),
	    "Code from your token: ");
	assert_string_equal(sotp_msg_text(p, sotp_msg_find("WRONG_CODE")),
	    "ワンタイムパスワードが違います。");
	assert_string_equal(
	    sotp_msg_text(p, sotp_msg_find("CARD_CELL")), "%{row}-%{col}");
	/* In double quotes, a '#' after a blank is part of the text. */
	assert_string_equal(sotp_msg_text(p, sotp_msg_find("PROMPT_SERIAL")),
	    "Serial # on the back: ");
	/* Single quotes are text; in double quotes, at its ends too. */
	assert_string_equal(
	    sotp_msg_text(p, sotp_msg_find("EXISTS")), "'Already registered'");
	/* The rest keep the language's catalog. */
	assert_string_equal(sotp_msg_text(p, sotp_msg_find("WRONG_CARD")),
	    "The confirmation password is not correct.");
	assert_int_equal(p->connect_timeout, 60);
	assert_int_equal(p->statement_timeout, 60000);
	assert_int_equal(p->lock_timeout, 100);
	assert_string_equal(p->metrics, "/var/lib/shinkin-otp-test/counters");
	assert_int_equal(p->reveal_unknown, 1);

	assert_int_equal(p->nkinds, 3);
	assert_string_equal(p->kinds[p->default_kind].name, "mobile");
	assert_non_null(k = sotp_policy_kind(p, "hardware"));
	/* A leap day is a date; its end is 2028-03-01T00:00Z. */
	assert_int_equal(k->sunset_end, 1835481600);
	assert_int_equal(k->warn_days, 3650);
	assert_int_equal(k->serial_exact, 1);
	assert_non_null(k = sotp_policy_kind(p, "pc-legacy"));
	assert_int_equal(k->sunset_end, 1806537600);
	assert_int_equal(k->warn_days, 0);
	assert_int_equal(k->serial_exact, 0);

	/* Defining contexts replaces the built-in ones entirely. */
	assert_int_equal(p->ncontexts, 4);
	assert_null(sotp_policy_context(p, "login"));
	assert_context(p, "teller", 0, SOTP_2F_CARD, SOTP_ACT_AUTH);
	assert_context(p, "enrol", 1, SOTP_2F_USER, SOTP_ACT_REGISTER);
	assert_context(p, "leave", 1, SOTP_2F_NONE, SOTP_ACT_UNREGISTER);
	/* An empty [context] asks for password and code. */
	assert_context(p, "plain", 1, SOTP_2F_OTP, SOTP_ACT_AUTH);

	assert_int_equal(p->nservices, 4);
	assert_maps(ctx, "counter", "teller");
	assert_maps(ctx, "enrol", "enrol");
	assert_maps(ctx, "leave", "leave");
	assert_maps(ctx, "vpn", "plain");
	sotp_ctx_free(ctx);
}

static void
test_policy_edge_cases_read(void **state)
{
	struct sotp_ctx *ctx = load("tests/data/policy/good/edge.conf");
	const struct sotp_policy *p = &ctx->pol;

	(void)state;
	/* CRLF and tabs are white space around keys and values. */
	assert_string_equal(p->store, "sqlite:/tmp/edge.db");
	assert_string_equal(p->master_key, "/tmp/edge.key");
	assert_int_equal(p->alg, SOTP_ALG_SHA256);
	assert_int_equal(p->period, 10);
	assert_int_equal(p->window_back, 3);
	assert_int_equal(p->window_forward, 3);
	assert_int_equal(p->max_drift, 0);
	assert_int_equal(p->resync_window, 1);
	assert_int_equal(p->lock_threshold, 1);
	assert_int_equal(p->state_lifetime, 1);
	assert_int_equal(p->max_rounds, 1);
	/* cells may use the whole grid. */
	assert_int_equal(p->card_rows * p->card_cols, p->card_cells);

	/* No kind marked default: the first one is. */
	assert_int_equal(p->nkinds, 2);
	assert_int_equal(p->default_kind, 0);
	assert_string_equal(
	    p->kinds[0].name, "abcdefghijklmnopqrstuvwxyz012345");
	assert_int_equal(p->kinds[0].sunset_end, 86400);
	assert_int_equal(p->kinds[1].sunset_end, 0);
	assert_int_equal(p->kinds[1].warn_days, 30);

	/* A service may name a context defined further down. */
	assert_int_equal(p->ncontexts, 1);
	assert_context(p, "login", 1, SOTP_2F_OTP, SOTP_ACT_AUTH);
	assert_int_equal(p->nservices, 3);
	assert_maps(ctx, "a", "login");
	assert_maps(ctx, "b.c_d-e", "login");
	assert_maps(ctx,
	    "svc-012345678901234567890123456789012345678901234567890123456789",
	    "login");
	sotp_ctx_free(ctx);
}

static void
test_policy_services_only_uses_default_contexts(void **state)
{
	struct sotp_ctx *ctx =
	    load("tests/data/policy/good/services-only.conf");

	(void)state;
	assert_bank_contexts(&ctx->pol);
	assert_maps(ctx, "sshd", "login");
	assert_maps(ctx, "ib-transfer", "transaction");
	assert_maps(ctx, "ib-mobile", "mobile");
	assert_maps(ctx, "ib-register", "registration");
	assert_maps(ctx, "ib-unregister", "unregistration");
	sotp_ctx_free(ctx);
}

/* Every field but the path the policy was read from. */
static void
assert_same_policy(const struct sotp_policy *a, const struct sotp_policy *b)
{
	size_t i;

	assert_string_equal(a->store, b->store);
	assert_string_equal(a->master_key, b->master_key);
	assert_string_equal(a->issuer, b->issuer);
	assert_int_equal(a->alg, b->alg);
	assert_int_equal(a->digits, b->digits);
	assert_int_equal(a->period, b->period);
	assert_int_equal(a->window_back, b->window_back);
	assert_int_equal(a->window_forward, b->window_forward);
	assert_int_equal(a->max_drift, b->max_drift);
	assert_int_equal(a->resync_window, b->resync_window);
	assert_int_equal(a->hotp_look_ahead, b->hotp_look_ahead);
	assert_int_equal(a->hotp_resync_window, b->hotp_resync_window);
	assert_int_equal(a->min_secret_bytes, b->min_secret_bytes);
	assert_int_equal(a->migration_binding, b->migration_binding);
	assert_int_equal(a->rehash, b->rehash);
	assert_int_equal(a->pw_method, b->pw_method);
	assert_int_equal(a->pw_cost, b->pw_cost);
	assert_int_equal(a->pw_legacy_refuse, b->pw_legacy_refuse);
	assert_int_equal(a->lock_threshold, b->lock_threshold);
	assert_int_equal(a->lock_duration, b->lock_duration);
	assert_int_equal(a->state_lifetime, b->state_lifetime);
	assert_int_equal(a->max_rounds, b->max_rounds);
	assert_int_equal(a->card_rows, b->card_rows);
	assert_int_equal(a->card_cols, b->card_cols);
	assert_int_equal(a->card_cells, b->card_cells);
	assert_int_equal(a->nkinds, b->nkinds);
	assert_int_equal(a->default_kind, b->default_kind);
	for (i = 0; i < a->nkinds; i++) {
		assert_string_equal(a->kinds[i].name, b->kinds[i].name);
		assert_int_equal(
		    a->kinds[i].sunset_end, b->kinds[i].sunset_end);
		assert_string_equal(a->kinds[i].sunset, b->kinds[i].sunset);
		assert_int_equal(a->kinds[i].warn_days, b->kinds[i].warn_days);
		assert_int_equal(
		    a->kinds[i].serial_exact, b->kinds[i].serial_exact);
	}
	assert_int_equal(a->lang, b->lang);
	for (i = 0; i < SOTP_NMSG; i++)
		assert_string_equal(a->msg[i], b->msg[i]);
	assert_int_equal(a->ncontexts, b->ncontexts);
	for (i = 0; i < a->ncontexts; i++) {
		assert_string_equal(a->contexts[i].name, b->contexts[i].name);
		assert_int_equal(
		    a->contexts[i].password, b->contexts[i].password);
		assert_int_equal(a->contexts[i].second, b->contexts[i].second);
		assert_int_equal(a->contexts[i].action, b->contexts[i].action);
	}
	assert_int_equal(a->nservices, b->nservices);
	for (i = 0; i < a->nservices; i++) {
		assert_string_equal(a->services[i].name, b->services[i].name);
		assert_int_equal(
		    a->services[i].context, b->services[i].context);
	}
}

static void
write_file(const char *path, const char *text)
{
	size_t len = strlen(text);
	FILE *f;

	assert_non_null(f = fopen(path, "we"));
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* dir/name holding text, mode 0644. */
static void
write_at(const char *dir, const char *name, const char *text)
{
	char path[SOTP_PATH_MAX];

	assert_true(snprintf(path, sizeof(path), "%s/%s", dir, name) <
	    (int)sizeof(path));
	write_file(path, text);
	assert_int_equal(chmod(path, 0644), 0);
}

/* The policy at path read; its store, master key and metrics as wanted. */
static void
assert_paths(const char *path, const char *dir, const char *metrics)
{
	char err[1024], want[SOTP_PATH_MAX + 32];
	struct sotp_policy *p;

	assert_non_null(p = malloc(sizeof(*p)));
	if (sotp_policy_read(path, p, err, sizeof(err)) != SOTP_OK)
		fail_msg("%s: %s", path, err);
	snprintf(want, sizeof(want), "sqlite:%s/state/otp.db", dir);
	assert_string_equal(p->store, want);
	snprintf(want, sizeof(want), "%s/master.key", dir);
	assert_string_equal(p->master_key, want);
	snprintf(want, sizeof(want), "%s/%s", dir, metrics);
	assert_string_equal(p->metrics, want);
	free(p);
}

/*
 * Relative paths are taken from the directory of the policy file itself:
 * through a symbolic link, the directory of the file it names, so that a
 * policy and the files beside it move together; and always as an
 * absolute path, so that a process that changes its working directory
 * later still opens the same files.
 */
static void
test_policy_relative_paths_from_the_real_file(void **state)
{
	char top[] = "/tmp/sotp-policy-real-XXXXXX";
	char real[SOTP_PATH_MAX], links[SOTP_PATH_MAX], link[SOTP_PATH_MAX];
	char file[SOTP_PATH_MAX], rdir[PATH_MAX], cwd[PATH_MAX];

	(void)state;
	assert_non_null(mkdtemp(top));
	assert_non_null(realpath(top, rdir));
	assert_true(
	    snprintf(real, sizeof(real), "%s/real", rdir) < (int)sizeof(real));
	assert_true(snprintf(links, sizeof(links), "%s/links", rdir) <
	    (int)sizeof(links));
	assert_int_equal(mkdir(real, 0755), 0);
	assert_int_equal(mkdir(links, 0755), 0);
	write_at(real, "p.conf",
	    "store = sqlite:state/otp.db\nmaster_key = master.key\n"
	    "metrics = ./counters\n");
	assert_true(snprintf(file, sizeof(file), "%s/p.conf", real) <
	    (int)sizeof(file));
	assert_true(snprintf(link, sizeof(link), "%s/p.conf", links) <
	    (int)sizeof(link));
	assert_int_equal(symlink(file, link), 0);

	assert_paths(file, real, "./counters");
	/* Through the link: still beside the file, not beside the link. */
	assert_paths(link, real, "./counters");
	/* Named relative to the working directory: absolute all the same. */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(links), 0);
	assert_paths("p.conf", real, "./counters");
	assert_int_equal(chdir(cwd), 0);

	/* A file name with a '.' is a file beside the policy, as before. */
	write_at(real, "p.conf",
	    "store = sqlite:state/otp.db\nmaster_key = master.key\n"
	    "metrics = shinkin-otp.metrics\n");
	assert_paths(link, real, "shinkin-otp.metrics");

	unlink(link);
	unlink(file);
	rmdir(links);
	rmdir(real);
	rmdir(top);
}

static void
test_policy_dump_reads_back_the_same(void **state)
{
	struct sotp_policy *again;
	struct sotp_ctx *ctx;
	char tmp[] = "/tmp/sotp-policy-dump-XXXXXX";
	char err[1024];
	char *buf;
	size_t i;
	int fd, rc;

	(void)state;
	assert_non_null(buf = malloc(DUMP_MAX));
	assert_non_null(again = malloc(sizeof(*again)));
	assert_true((fd = mkstemp(tmp)) >= 0);
	close(fd);
	for (i = 0; i < NELEM(good_files); i++) {
		ctx = load(good_files[i]);
		assert_int_equal(sotp_policy_dump(ctx, buf, DUMP_MAX), SOTP_OK);
		write_file(tmp, buf);
		rc = sotp_policy_read(tmp, again, err, sizeof(err));
		if (rc != SOTP_OK)
			fail_msg("dump of %s does not read back: %s\n%s",
			    good_files[i], err, buf);
		assert_string_equal(again->path, tmp);
		assert_same_policy(&ctx->pol, again);
		sotp_ctx_free(ctx);
	}
	unlink(tmp);
	free(again);
	free(buf);
}

static void
test_policy_dump_needs_room_and_a_policy(void **state)
{
	struct sotp_ctx *ctx = load("conf/shinkin-otp.conf");
	char small[64];

	(void)state;
	assert_int_equal(
	    sotp_policy_dump(ctx, small, sizeof(small)), SOTP_ERR_BUFFER);
	assert_int_equal(sotp_policy_dump(ctx, small, 0), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_policy_dump(NULL, small, sizeof(small)), SOTP_ERR_INVALID_ARG);
	sotp_ctx_free(ctx);

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(
	    sotp_policy_dump(ctx, small, sizeof(small)), SOTP_ERR_CONFIG);
	sotp_ctx_free(ctx);
}

/* The expected message from the first line of a bad file, or NULL. */
static char *
expected_message(const char *path)
{
	char line[512];
	FILE *f;
	char *nl, *s;

	if ((f = fopen(path, "re")) == NULL)
		return NULL;
	if (fgets(line, sizeof(line), f) == NULL) {
		fclose(f);
		return NULL;
	}
	fclose(f);
	if ((nl = strchr(line, '\n')) != NULL)
		*nl = '\0';
	/* A file that tests a byte order mark starts with one. */
	s = strncmp(line, "\xef\xbb\xbf", 3) == 0 ? line + 3 : line;
	if (strncmp(s, EXPECT_TAG, strlen(EXPECT_TAG)) != 0)
		return NULL;
	return strdup(s + strlen(EXPECT_TAG));
}

static void
test_policy_bad_files_fail_with_file_line(void **state)
{
	struct sotp_ctx *ctx = NULL;
	char dir[SOTP_PATH_MAX], path[SOTP_PATH_MAX * 2];
	char want[SOTP_PATH_MAX * 3];
	const struct dirent *de;
	const char *got = NULL;
	unsigned int nfiles = 0, nbad = 0;
	char *msg;
	size_t n;
	DIR *d;
	int rc;

	(void)state;
	top_path(dir, "tests/data/policy/bad");
	if ((d = opendir(dir)) == NULL)
		fail_msg("%s: %s", dir, strerror(errno));
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 5, ".conf") != 0)
			continue;
		nfiles++;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((msg = expected_message(path)) == NULL) {
			print_error("%s: first line is not '" EXPECT_TAG
			            "...'\n",
			    de->d_name);
			nbad++;
			continue;
		}
		snprintf(want, sizeof(want), "%s:%s", path, msg);
		free(msg);
		/* A good policy first: a failed load must drop it. */
		top_path(path, "conf/shinkin-otp.conf");
		assert_int_equal(sotp_ctx_load_policy(ctx, path), SOTP_OK);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		rc = sotp_ctx_load_policy(ctx, path);
		if (rc != SOTP_ERR_CONFIG ||
		    strcmp(sotp_ctx_errmsg(ctx), want) != 0) {
			print_error("%s:\n  want %s\n  got  %s (%s)\n",
			    de->d_name, want, sotp_ctx_errmsg(ctx),
			    sotp_rc_name(rc));
			nbad++;
		}
		if (sotp_policy_context_for(ctx, "sshd", &got) !=
		    SOTP_ERR_CONFIG) {
			print_error("%s: policy still in use after a failed "
			            "load\n",
			    de->d_name);
			nbad++;
		}
	}
	closedir(d);
	sotp_ctx_free(ctx);
	assert_int_equal(nbad, 0);
	/* The list of error cases, and then some. */
	assert_true(nfiles >= 40);
}

/* The policy in text, read into a fresh policy; the read must succeed. */
static struct sotp_policy *
read_text(const char *text)
{
	char tmp[] = "/tmp/sotp-policy-text-XXXXXX";
	struct sotp_policy *p;
	char err[1024];
	int fd;

	assert_non_null(p = malloc(sizeof(*p)));
	assert_true((fd = mkstemp(tmp)) >= 0);
	close(fd);
	write_file(tmp, text);
	if (sotp_policy_read(tmp, p, err, sizeof(err)) != SOTP_OK)
		fail_msg("%s", err);
	unlink(tmp);
	return p;
}

/*
 * [password] legacy_import: accept (the default, spelled or not) or
 * refuse; any other value is refused with file:line (bad/password-legacy-
 * import-*.conf).
 */
static void
test_policy_password_legacy_import(void **state)
{
	static const struct {
		const char *text;
		int refuse;
	} cases[] = {
	    {"[password]\nhash = yescrypt\n", 0},
	    {"[password]\nlegacy_import = accept\n", 0},
	    {"[password]\nlegacy_import = refuse\n", 1},
	    {"[password]\nlegacy_import =\trefuse \ncost = 6\n", 1},
	};
	struct sotp_policy *p;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		p = read_text(cases[i].text);
		if (p->pw_legacy_refuse != cases[i].refuse)
			fail_msg("\"%s\": legacy refuse %d, want %d",
			    cases[i].text, p->pw_legacy_refuse,
			    cases[i].refuse);
		free(p);
	}
}

#define IDSP "\343\200\200" /* U+3000, the ideographic space */

/*
 * The ideographic space (U+3000), which Japanese input gives for a blank,
 * is a blank as ' ' is: trimmed around keys and values, and kept inside
 * a value or in a [messages] text in double quotes (bad/ holds the
 * comments it starts, refused).
 */
static void
test_policy_ideographic_space_is_a_blank(void **state)
{
	struct sotp_policy *p;

	(void)state;
	p = read_text(
	    IDSP "issuer" IDSP "=" IDSP IDSP "信金" IDSP "本店#2" IDSP
	         "\n[messages]\n"
	         "LOCKED" IDSP "= \"" IDSP "ロック中" IDSP "\"" IDSP "\n"
	         "WRONG_CODE = 違います。" IDSP IDSP "\n");
	assert_string_equal(p->issuer, "信金" IDSP "本店#2");
	assert_string_equal(
	    sotp_msg_text(p, sotp_msg_find("LOCKED")), IDSP "ロック中" IDSP);
	assert_string_equal(
	    sotp_msg_text(p, sotp_msg_find("WRONG_CODE")), "違います。");
	free(p);
}

/*
 * In a section header the ideographic space parts the section from its
 * name as ' ' does, alone, repeated or mixed with spaces: "[kind　mobile]"
 * as Japanese input types it was refused as an unknown section.
 * bad/header-ideographic-*.conf: the header's other mistakes are still
 * named, with file and line.
 */
static void
test_policy_ideographic_space_in_header(void **state)
{
	struct sotp_policy *p;

	(void)state;
	p = read_text("[kind" IDSP "mobile]\ndefault = yes\n"
	              "[kind" IDSP " " IDSP "pc-legacy]\n"
	              "sunset = 2030-03-31\n"
	              "[context" IDSP IDSP "teller]\n"
	              "password = none\nfactor = otp\n");
	assert_int_equal(p->nkinds, 2);
	assert_string_equal(p->kinds[0].name, "mobile");
	assert_string_equal(p->kinds[1].name, "pc-legacy");
	assert_string_equal(p->kinds[1].sunset, "2030-03-31");
	assert_non_null(sotp_policy_context(p, "teller"));
	assert_int_equal(sotp_policy_context(p, "teller")->password, 0);
	free(p);
}

/*
 * A text in double quotes runs from the first quote to the last: a quote
 * inside it is text, and so is a '#' with no blank before it. Only a
 * quote followed by blanks and a '#' is refused, as a closing quote and
 * a comment (bad/comment-after-quoted-message-*.conf).
 */
static void
test_policy_quotes_inside_a_quoted_text(void **state)
{
	struct sotp_policy *p;

	(void)state;
	p = read_text("[messages]\n"
	              "LOCKED = \"Press \"OK\" to call us \"\n"
	              "WRONG_CODE = \"Key \"#\" ends the code\"\n");
	assert_string_equal(sotp_msg_text(p, sotp_msg_find("LOCKED")),
	    "Press \"OK\" to call us ");
	assert_string_equal(sotp_msg_text(p, sotp_msg_find("WRONG_CODE")),
	    "Key \"#\" ends the code");
	free(p);
}

static void
test_policy_unreadable_file(void **state)
{
	struct sotp_ctx *ctx = NULL;
	char path[SOTP_PATH_MAX], want[SOTP_PATH_MAX + 64];
	const char *msg;

	(void)state;
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	top_path(path, "tests/data/policy/no-such-file.conf");
	assert_int_equal(sotp_ctx_load_policy(ctx, path), SOTP_ERR_CONFIG);
	snprintf(want, sizeof(want),
	    "%s: cannot read policy file: No such file or directory", path);
	assert_string_equal(sotp_ctx_errmsg(ctx), want);

	/* A directory opens but cannot be read: still named in the error. */
	top_path(path, "tests/data/policy/good");
	assert_int_equal(sotp_ctx_load_policy(ctx, path), SOTP_ERR_CONFIG);
	msg = sotp_ctx_errmsg(ctx);
	assert_int_equal(strncmp(msg, path, strlen(path)), 0);
	assert_int_equal(msg[strlen(path)], ':');
	sotp_ctx_free(ctx);
}

static void
test_policy_rejects_null_arguments(void **state)
{
	struct sotp_policy *p;
	struct sotp_ctx *ctx = load("conf/shinkin-otp.conf");
	const char *got = NULL;
	char err[64];

	(void)state;
	assert_non_null(p = malloc(sizeof(*p)));
	assert_int_equal(
	    sotp_policy_read(NULL, p, err, sizeof(err)), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_policy_read("/dev/null", NULL, err, sizeof(err)),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_policy_read("/dev/null", p, NULL, 0), SOTP_ERR_INVALID_ARG);
	/* An empty file is the all-defaults policy. */
	{
		char empty[] = "/tmp/sotp-policy-empty.XXXXXX";
		int fd = mkstemp(empty);

		assert_true(fd >= 0);
		close(fd);
		assert_int_equal(
		    sotp_policy_read(empty, p, err, sizeof(err)), SOTP_OK);
		assert_bank_contexts(p);
		/* Writable by others: refused, whatever it holds. */
		assert_int_equal(chmod(empty, 0662), 0);
		assert_int_equal(sotp_policy_read(empty, p, err, sizeof(err)),
		    SOTP_ERR_CONFIG);
		unlink(empty);
	}
	/* Nor is /dev/null a policy: not a file, and anyone writes it. */
	assert_int_equal(sotp_policy_read("/dev/null", p, err, sizeof(err)),
	    SOTP_ERR_CONFIG);
	assert_int_equal(
	    sotp_ctx_load_policy(NULL, "/dev/null"), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_policy_context_for(ctx, NULL, &got), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_policy_context_for(ctx, "sshd", NULL), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_policy_has_context(ctx, NULL), SOTP_ERR_INVALID_ARG);
	sotp_ctx_free(ctx);
	free(p);
}

/*
 * Whoever may write a directory above the policy may replace it, so each
 * of them, and a symbolic link's own, must be writable by its owner alone
 * (or sticky, as /tmp is) and belong to root or this process's user.
 */
static void
test_policy_directories_checked(void **state)
{
	char dir[] = "/tmp/sotp-policy-dir-XXXXXX";
	char file[64], links[64], link[80], cwd[PATH_MAX];
	char err[1024];
	struct sotp_policy *p;
	struct sotp_ctx *ctx = NULL;
	struct sotp_keyring *keys = NULL;
	int fd;

	(void)state;
	/* The directory part of a path, as the walk up takes it. */
	assert_int_equal(sotp_dir_of("/etc/x.conf", file, sizeof(file)), 0);
	assert_string_equal(file, "/etc");
	assert_int_equal(sotp_dir_of("/x.conf", file, sizeof(file)), 0);
	assert_string_equal(file, "/");
	assert_int_equal(sotp_dir_of("x.conf", file, sizeof(file)), 0);
	assert_string_equal(file, ".");
	snprintf(file, sizeof(file), "/a/b/c");
	assert_int_equal(sotp_dir_of(file, file, sizeof(file)), 0);
	assert_string_equal(file, "/a/b");
	assert_int_equal(sotp_dir_of("/abcdef/x", file, 7), -1);
	assert_int_equal(errno, ENAMETOOLONG);
	assert_non_null(p = malloc(sizeof(*p)));
	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/p.conf", dir);
	snprintf(links, sizeof(links), "%s/links", dir);
	snprintf(link, sizeof(link), "%s/p.conf", links);
	assert_true((fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0644)) >= 0);
	assert_int_equal(write(fd, "[otp]\ndigits = 6\n", 17), 17);
	close(fd);
	assert_int_equal(sotp_policy_read(file, p, err, sizeof(err)), SOTP_OK);

	/* Group-writable: another member could rename a policy over it. */
	assert_int_equal(chmod(dir, 0770), 0);
	assert_int_equal(
	    sotp_policy_read(file, p, err, sizeof(err)), SOTP_ERR_CONFIG);
	assert_non_null(strstr(err, "its directory"));
	assert_non_null(strstr(err, "writable by group or others (mode 0770)"));
	/* Sticky, as /tmp: only the file's owner may rename it. */
	assert_int_equal(chmod(dir, 01777), 0);
	assert_int_equal(sotp_policy_read(file, p, err, sizeof(err)), SOTP_OK);
	assert_int_equal(chmod(dir, 0700), 0);

	/* A symbolic link in a directory others may write: refused. */
	assert_int_equal(mkdir(links, 0700), 0);
	assert_int_equal(chmod(links, 0777), 0);
	assert_int_equal(symlink(file, link), 0);
	assert_int_equal(
	    sotp_policy_read(link, p, err, sizeof(err)), SOTP_ERR_CONFIG);
	assert_non_null(strstr(err, links));
	/*
	 * The same link named relative to the working directory, as the
	 * tool takes --config: resolving it whole before the read would
	 * drop the link, and its directory would go unchecked.
	 */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(links), 0);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load_policy(ctx, "p.conf"), SOTP_ERR_CONFIG);
	assert_non_null(
	    strstr(sotp_ctx_errmsg(ctx), "writable by group or others"));
	assert_int_equal(sotp_keyring_open("p.conf", &keys, err, sizeof(err)),
	    SOTP_ERR_CONFIG);
	assert_non_null(strstr(err, "writable by group or others"));
	assert_int_equal(chdir(cwd), 0);
	sotp_ctx_free(ctx);
	assert_int_equal(chmod(links, 0755), 0);
	assert_int_equal(sotp_policy_read(link, p, err, sizeof(err)), SOTP_OK);

	/* A directory of another user (only root can make one). */
	if (geteuid() == 0) {
		assert_int_equal(chown(dir, 65534, 65534), 0);
		assert_int_equal(sotp_policy_read(file, p, err, sizeof(err)),
		    SOTP_ERR_CONFIG);
		assert_non_null(strstr(err, "owned by uid 65534"));
		assert_int_equal(chown(dir, 0, 0), 0);
	}
	unlink(link);
	rmdir(links);
	unlink(file);
	rmdir(dir);
	free(p);
}

/*
 * Line ends as the reader takes them: a last line without '\n' is read
 * whole, CR LF is a line end, and a line may hold 2047 octets (its '\n'
 * aside) but not 2048, whatever it is.
 */
static void
test_policy_line_ends_and_length(void **state)
{
	char tmp[] = "/tmp/sotp-policy-lines-XXXXXX";
	char err[1024], want[128];
	struct sotp_policy *p;
	char *text;
	int fd;

	(void)state;
	assert_non_null(p = malloc(sizeof(*p)));
	assert_non_null(text = malloc(4096));
	assert_true((fd = mkstemp(tmp)) >= 0);
	close(fd);

	write_file(tmp, "[otp]\ndigits = 8");
	assert_int_equal(sotp_policy_read(tmp, p, err, sizeof(err)), SOTP_OK);
	assert_int_equal(p->digits, 8);
	write_file(tmp, "[otp]\r\ndigits = 7\r\n[lockout]\r\nthreshold = 9");
	assert_int_equal(sotp_policy_read(tmp, p, err, sizeof(err)), SOTP_OK);
	assert_int_equal(p->digits, 7);
	assert_int_equal(p->lock_threshold, 9);

	/* A comment of 2047 octets, then a key the reader must still see. */
	text[0] = '#';
	memset(text + 1, 'x', 2046);
	strcpy(text + 2047, "\n[otp]\ndigits = 8\n");
	write_file(tmp, text);
	assert_int_equal(sotp_policy_read(tmp, p, err, sizeof(err)), SOTP_OK);
	assert_int_equal(p->digits, 8);
	/* One more octet: refused, on its own line, without a '\n' too. */
	memset(text + 1, 'x', 2047);
	strcpy(text + 2048, "\n[otp]\ndigits = 8\n");
	write_file(tmp, text);
	assert_int_equal(
	    sotp_policy_read(tmp, p, err, sizeof(err)), SOTP_ERR_CONFIG);
	snprintf(want, sizeof(want), "%s:1: line too long", tmp);
	assert_string_equal(err, want);
	text[2048] = '\0';
	write_file(tmp, text);
	assert_int_equal(
	    sotp_policy_read(tmp, p, err, sizeof(err)), SOTP_ERR_CONFIG);
	assert_string_equal(err, want);
	unlink(tmp);
	free(text);
	free(p);
}

/*
 * sotp_time_parse: the three shapes, UTC, and nothing that timegm would
 * roll over to a neighbouring moment (the values: date -u -d ... +%s).
 */
static void
test_time_parse(void **state)
{
	static const struct {
		const char *in;
		int64_t want;
	} good[] = {
	    {"0", 0},
	    {"1700000000", 1700000000},
	    {"1970-01-01", 0},
	    {"2024-02-29", 1709164800},
	    {"2024-02-29T23:59:59Z", 1709251199},
	    {"2026-11-25T18:43:57Z", 1795632237},
	};
	static const char *const bad[] = {"", "-1", " 5", "+5", "5 ", "1e9",
	    "2024-02-30", "2023-02-29", "2024-04-31", "2024-13-01",
	    "2024-00-10", "2024-01-00", "1969-12-31", "2024-1-1", "2024-01-01 ",
	    "2024-01-01T24:00:00Z", "2024-01-01T23:60:00Z",
	    "2024-12-31T23:59:60Z", "2024-01-01T00:00:00",
	    "2024-01-01T00:00:00+09:00", "2024-01-01t00:00:00z",
	    "2024-01-01T 0:00:00Z", "yesterday", "99999999999999999999"};
	int64_t t;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(good); i++) {
		t = -1;
		if (sotp_time_parse(good[i].in, &t) != SOTP_OK ||
		    t != good[i].want)
			fail_msg("'%s': got %lld, want %lld", good[i].in,
			    (long long)t, (long long)good[i].want);
	}
	for (i = 0; i < NELEM(bad); i++)
		if (sotp_time_parse(bad[i], &t) != SOTP_ERR_BAD_INPUT)
			fail_msg(
			    "'%s' was taken, as %lld", bad[i], (long long)t);
	assert_int_equal(sotp_time_parse(NULL, &t), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_time_parse("0", NULL), SOTP_ERR_INVALID_ARG);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policy_shipped_has_bank_contexts),
	    cmocka_unit_test(test_policy_shipped_kinds),
	    cmocka_unit_test(test_policy_shipped_service_map),
	    cmocka_unit_test(test_policy_relative_paths_resolve),
	    cmocka_unit_test(test_policy_relative_paths_from_the_real_file),
	    cmocka_unit_test(test_policy_minimal_gets_defaults),
	    cmocka_unit_test(test_policy_full_sets_every_key),
	    cmocka_unit_test(test_policy_edge_cases_read),
	    cmocka_unit_test(test_policy_password_legacy_import),
	    cmocka_unit_test(test_policy_services_only_uses_default_contexts),
	    cmocka_unit_test(test_policy_dump_reads_back_the_same),
	    cmocka_unit_test(test_policy_dump_needs_room_and_a_policy),
	    cmocka_unit_test(test_policy_bad_files_fail_with_file_line),
	    cmocka_unit_test(test_policy_ideographic_space_is_a_blank),
	    cmocka_unit_test(test_policy_ideographic_space_in_header),
	    cmocka_unit_test(test_policy_quotes_inside_a_quoted_text),
	    cmocka_unit_test(test_policy_unreadable_file),
	    cmocka_unit_test(test_policy_rejects_null_arguments),
	    cmocka_unit_test(test_policy_line_ends_and_length),
	    cmocka_unit_test(test_policy_directories_checked),
	    cmocka_unit_test(test_time_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_keys.c - versioned data keys under a key-encryption key (keys.c,
 * keys_admin.c): the sealed layouts, the locked key pages, a rotation
 * step by step with a second context that has not seen it (a farm's
 * other server), retirement refused while a value or a State may need
 * the old version, the audit chain across versions, a change of key-
 * encryption key, and a store from before key versions adopted as
 * version 0 and rotated away from. Every case runs on a real SQLite
 * store made by init; time is passed in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sotp_int.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define B32_A "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#define B32_B "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
/* 2026-06-01T00:00:00Z, as in test_engine. */
#define T0 ((time_t)1780272000)
#define NTOK 9

struct fx {
	char dir[64];
	char conf[128];
	char db[128];
	struct sotp_ctx *ctx;
};

/* ---- helpers ---- */

static void
run_sql(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	char *err = NULL;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
	sqlite3_close(h);
}

static long long
sql_int(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long v = -1;

	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return v;
}

/* Sets "key = value" in the policy (the first line with that key). */
static void
set_policy(const char *conf, const char *key, const char *value)
{
	char buf[65536], out[65536], *line, *save = NULL;
	size_t n, o = 0, klen = strlen(key);
	int done = 0;
	FILE *f;

	assert_non_null(f = fopen(conf, "r"));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	for (line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (!done && strncmp(line, key, klen) == 0 &&
		    strncmp(line + klen, " = ", 3) == 0) {
			o += (size_t)snprintf(
			    out + o, sizeof(out) - o, "%s = %s\n", key, value);
			done = 1;
		} else
			o += (size_t)snprintf(
			    out + o, sizeof(out) - o, "%s\n", line);
	}
	assert_true(done);
	assert_non_null(f = fopen(conf, "w"));
	assert_int_equal(fwrite(out, 1, o, f), o);
	fclose(f);
}

static struct sotp_ctx *
load(const char *conf)
{
	struct sotp_ctx *ctx = NULL;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	if (sotp_ctx_load(ctx, conf) != SOTP_OK)
		fail_msg("load %s: %s", conf, sotp_ctx_errmsg(ctx));
	return ctx;
}

/*
 * token generate: a fresh seed, sealed under the version the context
 * holds without a look at the store's (token add looks first: it unseals
 * every stored seed to compare, seeds.c).
 */
static void
gen_token(struct sotp_ctx *ctx)
{
	struct sotp_token_spec spec;
	struct sotp_decision d;
	char serial[SOTP_ID_MAX];

	sotp_token_spec_defaults(ctx, &spec);
	assert_int_equal(sotp_token_generate(ctx, &spec, NULL, NULL, NULL, T0,
	                     serial, NULL, &d),
	    SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
}

/* b32 NULL: a random seed (a seed is one token's only, see seeds.c). */
static void
add_token(struct sotp_ctx *ctx, const char *serial, const char *b32)
{
	struct sotp_token_spec spec;
	struct sotp_decision d;
	uint8_t key[64];
	size_t n = 20;

	if (b32 == NULL)
		assert_int_equal(sotp_random(key, n), SOTP_OK);
	else
		assert_int_equal(
		    sotp_base32_decode(b32, key, sizeof(key), &n, NULL),
		    SOTP_OK);
	sotp_token_spec_defaults(ctx, &spec);
	spec.serial = serial;
	assert_int_equal(sotp_token_add(ctx, &spec, key, n, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
}

static void
code_at(const char *b32, time_t t, char *out)
{
	uint8_t key[64];
	size_t n = 0;

	assert_int_equal(
	    sotp_base32_decode(b32, key, sizeof(key), &n, NULL), SOTP_OK);
	assert_int_equal(
	    sotp_totp(SOTP_ALG_SHA1, key, n, t, 30, 6, out), SOTP_OK);
}

/* A transaction with the code of b32 at t: the reason decided. */
static int
transact(struct sotp_ctx *ctx, const char *id, const char *b32, time_t t)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char code[SOTP_CODE_MAX + 1];
	int rc;

	code_at(b32, t, code);
	assert_int_equal(
	    sotp_attempt_begin(ctx, id, "transaction", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_set(a, SOTP_F_OTP, code), SOTP_OK);
	rc = sotp_attempt_step(a, &d);
	sotp_attempt_free(a);
	if (rc != SOTP_OK)
		fail_msg("transaction %s: %s: %s", id, sotp_strerror(rc),
		    sotp_ctx_errmsg(ctx));
	return (int)d.reason;
}

/*
 * A challenge's first round in context: a login's answers the password
 * (pw), a transaction's none. The State it hands on, the code asked.
 */
static void
first_round(struct sotp_ctx *ctx, const char *id, const char *context,
    const char *pw, time_t t, uint8_t *st, size_t *n)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	assert_int_equal(sotp_attempt_begin(ctx, id, context, t, &a), SOTP_OK);
	if (pw != NULL)
		assert_int_equal(sotp_attempt_answer(a, pw), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(d.ask, SOTP_F_OTP);
	assert_int_equal(
	    sotp_attempt_export(a, st, SOTP_STATE_MAX, n), SOTP_OK);
	sotp_attempt_free(a);
}

/* Its next round on ctx (maybe another server): the reason decided. */
static int
next_round(struct sotp_ctx *ctx, const char *id, const char *context,
    const char *b32, time_t t, const uint8_t *st, size_t n)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char code[SOTP_CODE_MAX + 1];

	code_at(b32, t, code);
	assert_int_equal(
	    sotp_attempt_resume(ctx, id, context, st, n, t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	return (int)d.reason;
}

static void
bind(struct sotp_ctx *ctx, const char *id, const char *serial, const char *b32,
    enum sotp_login login)
{
	struct sotp_decision d;
	char code[SOTP_CODE_MAX + 1];

	code_at(b32, T0 - 600, code);
	assert_int_equal(sotp_contract_add(ctx, id, "pw", T0, &d), SOTP_OK);
	assert_int_equal(
	    sotp_contract_bind(ctx, id, serial, code, login, T0 - 600, &d),
	    SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_ACCEPTED);
}

/*
 * AddressSanitizer makes mlock() a no-op (its interceptor never locks),
 * so under it a mapping is counted for MADV_DONTDUMP alone.
 */
#if defined(__SANITIZE_ADDRESS__)
#define WANT_LOCKED 0
#else
#define WANT_LOCKED 1
#endif

/*
 * kB of this process's memory both locked and left out of core dumps.
 * Counted by size, not by mapping: the kernel merges adjacent mappings
 * with the same flags, so two regions may show as one.
 */
static long
locked_dontdump_maps(void)
{
	char line[512];
	long kb = 0, size = 0;
	FILE *f;

	assert_non_null(f = fopen("/proc/self/smaps", "r"));
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Size:", 5) == 0)
			size = strtol(line + 5, NULL, 10);
		else if (strncmp(line, "VmFlags:", 8) == 0 &&
		    (!WANT_LOCKED || strstr(line, " lo") != NULL) &&
		    strstr(line, " dd") != NULL)
			kb += size;
	}
	fclose(f);
	return kb;
}

static void
verify_chain(struct sotp_ctx *ctx, int64_t *rows)
{
	struct sotp_audit_check k;

	assert_int_equal(sotp_audit_verify(ctx, &k), SOTP_OK);
	if (k.problem != SOTP_AUDIT_OK)
		fail_msg("audit chain: %s", k.what);
	if (rows != NULL)
		*rows = k.rows;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char serial[16];
	int i;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/sotp-keys.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof(f->conf), "%s/shinkin-otp.conf", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/shinkin-otp.db", f->dir);
	assert_int_equal(sotp_ctx_new(&f->ctx), SOTP_OK);
	assert_int_equal(sotp_init_at(f->ctx, f->conf, T0 - 3600), SOTP_OK);
	/* Long enough that a second context keeps its view during a test. */
	set_policy(f->conf, "refresh", "300");
	sotp_ctx_free(f->ctx);
	f->ctx = load(f->conf);
	add_token(f->ctx, "T-A", B32_A);
	add_token(f->ctx, "T-B", B32_B);
	for (i = 0; i < NTOK; i++) {
		snprintf(serial, sizeof(serial), "T-X%d", i);
		add_token(f->ctx, serial, NULL);
	}
	bind(f->ctx, "C-A", "T-A", B32_A, SOTP_LOGIN_OTP);
	bind(f->ctx, "C-B", "T-B", B32_B, SOTP_LOGIN_OTP);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	sotp_ctx_free(f->ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* ---- the sealed layouts ---- */

static void
test_keys_sealed_layouts(void **state)
{
	uint8_t key[SOTP_KEY_LEN], ct[64], back[64];
	const uint8_t pt[20] = "twenty bytes secret";
	size_t n = 0, m = 0;
	uint32_t kv = 99;

	(void)state;
	memset(key, 7, sizeof(key));
	/* Version 0: the layout every value had before key versions. */
	assert_int_equal(
	    sotp_seal_kv(key, 0, "T1", 2, pt, sizeof(pt), ct, sizeof(ct), &n),
	    SOTP_OK);
	assert_int_equal(n, sizeof(pt) + SOTP_SEAL_OVERHEAD);
	assert_int_equal(ct[0], 1);
	assert_int_equal(sotp_sealed_kv(ct, n, &kv), SOTP_OK);
	assert_int_equal(kv, 0);
	/* Version 258: named in the header, big-endian. */
	assert_int_equal(
	    sotp_seal_kv(key, 258, "T1", 2, pt, sizeof(pt), ct, sizeof(ct), &n),
	    SOTP_OK);
	assert_int_equal(n, sizeof(pt) + SOTP_SEAL_OVERHEAD_V);
	assert_int_equal(ct[0], 2);
	assert_memory_equal(ct + 1, "\0\0\1\2", 4);
	assert_int_equal(sotp_sealed_kv(ct, n, &kv), SOTP_OK);
	assert_int_equal(kv, 258);
	assert_int_equal(
	    sotp_unseal(key, "T1", 2, ct, n, back, sizeof(back), &m), SOTP_OK);
	assert_memory_equal(back, pt, sizeof(pt));
	/* The version is authenticated: renamed, the value does not open. */
	ct[4] = 3;
	assert_int_equal(
	    sotp_unseal(key, "T1", 2, ct, n, back, sizeof(back), &m),
	    SOTP_ERR_DECRYPT);
	/* A layout-2 header naming version 0 is no layout at all. */
	memset(ct + 1, 0, 4);
	assert_int_equal(sotp_sealed_kv(ct, n, &kv), SOTP_ERR_DECRYPT);
	ct[0] = 9;
	assert_int_equal(sotp_sealed_kv(ct, n, &kv), SOTP_ERR_DECRYPT);
	assert_int_equal(sotp_sealed_kv(ct, 10, &kv), SOTP_ERR_DECRYPT);
}

/* ---- memory ---- */

static void
test_keys_locked_memory(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *b;
	long before;

	/* The fixture's context holds one region; another holds its own. */
	before = locked_dontdump_maps();
	assert_true(before >= 4);
	b = load(f->conf);
	if (locked_dontdump_maps() <= before)
		fail_msg("a second keyring added no locked, undumped memory "
		         "(%ld kB before, %ld kB after)",
		    before, locked_dontdump_maps());
	if (WANT_LOCKED)
		assert_true(sotp_keyring_locked(b->keys));
	sotp_ctx_free(b);
	assert_int_equal(locked_dontdump_maps(), before);
}

/* ---- a rotation ---- */

static void
check_status(
    struct sotp_ctx *ctx, uint32_t current, size_t versions, int64_t left)
{
	static struct sotp_key_status s; /* too big for a stack */

	assert_int_equal(sotp_key_status(ctx, T0, &s), SOTP_OK);
	if (s.current != current || s.n != versions || s.left != left)
		fail_msg(
		    "status: current %u (want %u), %zu versions (want %zu), %lld left (want %lld)",
		    s.current, current, s.n, versions, (long long)s.left,
		    (long long)left);
}

/*
 * Server A rotates while server B, loaded before, has not looked again:
 * both verify codes and each other's States at every step, and the old
 * version goes only when nothing names it and its States have expired.
 */
static void
test_keys_rotation_two_servers(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *b = load(f->conf);
	struct sotp_key_step st;
	uint8_t s1[SOTP_STATE_MAX], s2[SOTP_STATE_MAX];
	size_t n1 = 0, n2 = 0;
	time_t t = T0;
	int64_t rows = 0, before = 0;
	int batches = 0;

	verify_chain(f->ctx, &before);
	check_status(f->ctx, 1, 1, 0);
	/*
	 * B signs a State under version 1 before the rotation begins
	 * (version 4 of the layout: the password done, engine_state.c).
	 */
	first_round(b, "C-A", "login", "pw", t, s1, &n1);
	assert_int_equal(s1[0], 4);
	assert_memory_equal(s1 + 1, "\0\0\0\1", 4);

	assert_int_equal(sotp_key_rotate_begin(f->ctx, t, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_STARTED);
	assert_int_equal(st.from, 1);
	assert_int_equal(st.version, 2);
	check_status(f->ctx, 2, 2, NTOK + 2 + 0);
	/* Nothing is re-sealed yet: both servers verify with version 1. */
	assert_int_equal(transact(f->ctx, "C-A", B32_A, t), SOTP_R_ACCEPTED);
	assert_int_equal(transact(b, "C-B", B32_B, t), SOTP_R_ACCEPTED);
	/* A signs under version 2; B, which has not seen it, verifies. */
	first_round(f->ctx, "C-B", "login", "pw", t + 1, s2, &n2);
	assert_memory_equal(s2 + 1, "\0\0\0\2", 4);
	assert_int_equal(next_round(b, "C-B", "login", B32_B, t + 31, s2, n2),
	    SOTP_R_ACCEPTED);
	/* And B's State from before verifies on A. */
	assert_int_equal(
	    next_round(f->ctx, "C-A", "login", B32_A, t + 31, s1, n1),
	    SOTP_R_ACCEPTED);

	/* Batches of 3: the tokens, then (none here) the cards. */
	for (;;) {
		assert_int_equal(
		    sotp_key_rotate_step(f->ctx, t + 60, 3, &st), SOTP_OK);
		if (st.what != SOTP_KEY_RESEALED)
			break;
		assert_true(st.count <= 3);
		batches++;
		/* Between batches every code verifies, on both servers. */
		t += 30;
		assert_int_equal(
		    transact(b, "C-A", B32_A, t + 60), SOTP_R_ACCEPTED);
	}
	assert_int_equal(batches, 4); /* 11 token secrets */
	assert_int_equal(st.what, SOTP_KEY_WAITING);
	assert_int_equal(
	    sql_int(f->db, "SELECT count(*) FROM tokens WHERE kv = 2"),
	    NTOK + 2);
	/* Lifetime of a State (120) and refresh (300) after the switch. */
	assert_int_equal(st.wait_until, T0 + 420);
	assert_int_equal(
	    sotp_key_rotate_step(f->ctx, T0 + 419, 3, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_WAITING);
	assert_int_equal(
	    sotp_key_rotate_step(f->ctx, T0 + 420, 3, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RETIRED);
	assert_int_equal(st.retired, 1);
	assert_int_equal(
	    sotp_key_rotate_step(f->ctx, T0 + 421, 3, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_DONE);
	check_status(f->ctx, 2, 2, 0);
	assert_int_equal(
	    sql_int(f->db, "SELECT count(*) FROM key_dek WHERE version = 1"),
	    0);
	/* Its data key is gone from the store; its audit key stays. */
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM key_wrap WHERE version = 1"
	                     " AND what = 1"),
	    0);
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM key_wrap WHERE version = 1"
	                     " AND what = 2"),
	    1);
	/* A State signed under the retired version is refused. */
	first_round(b, "C-A", "login", "pw", T0 + 500, s1, &n1);
	assert_memory_equal(s1 + 1, "\0\0\0\2", 4);
	sotp_ctx_free(b);
	/* A new server: every value opens, the chain verifies end to end. */
	b = load(f->conf);
	assert_int_equal(transact(b, "C-B", B32_B, T0 + 1000), SOTP_R_ACCEPTED);
	verify_chain(b, &rows);
	assert_true(rows > before + batches);
	sotp_ctx_free(b);
}

/*
 * A server that has not yet seen the new version seals a value under the
 * old one after the walk: the old version is not retired while it does,
 * and the next step re-seals it. Its next audit row learns the version
 * (the chain's head is tagged under it, and checking that tag loads it),
 * so each late server here seals one value before it knows: B a token
 * (generated: token add looks at the store's versions first), C
 * a card; D seals nothing until the old version is retired.
 */
static void
test_keys_late_writer(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *b = load(f->conf), *c = load(f->conf),
	                *d2 = load(f->conf);
	struct sotp_key_step st;
	struct sotp_decision d;
	char grid[512];

	assert_int_equal(sotp_key_rotate_begin(f->ctx, T0, &st), SOTP_OK);
	do
		assert_int_equal(
		    sotp_key_rotate_step(f->ctx, T0 + 1, 100, &st), SOTP_OK);
	while (st.what == SOTP_KEY_RESEALED);
	assert_int_equal(st.what, SOTP_KEY_WAITING);
	/* B and C still seal under version 1 (they look again in 300 s). */
	gen_token(b);
	assert_int_equal(
	    sotp_contract_card(c, "C-A", T0, grid, sizeof(grid), &d), SOTP_OK);
	assert_int_equal(
	    sql_int(f->db, "SELECT count(*) FROM tokens WHERE kv = 1"), 1);
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM contracts WHERE card IS NOT"
	                     " NULL AND kv = 1"),
	    1);
	/* Its audit row made B look: its next value is version 2's. */
	gen_token(b);
	assert_int_equal(
	    sql_int(f->db, "SELECT count(*) FROM tokens WHERE kv = 1"), 1);
	/* The database refuses to retire what a value names. */
	assert_int_equal(sotp_store_begin(f->ctx->st), SOTP_OK);
	assert_int_not_equal(sotp_store_key_retire(f->ctx->st, 1), SOTP_OK);
	sotp_store_rollback(f->ctx->st);
	/* So the step re-seals them first. */
	assert_int_equal(
	    sotp_key_rotate_step(f->ctx, T0 + 1000, 100, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RESEALED);
	assert_int_equal(st.count, 1);
	assert_int_equal(
	    sotp_key_rotate_step(f->ctx, T0 + 1000, 100, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RESEALED);
	assert_int_equal(st.cards, 1);
	assert_int_equal(st.count, 1);
	assert_int_equal(
	    sotp_key_rotate_step(f->ctx, T0 + 1000, 100, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RETIRED);
	/*
	 * Here D, its clock injected, has not looked again although the
	 * retirement waited for it: what it seals now under the retired
	 * version the store refuses. Nothing unreadable is ever stored.
	 */
	assert_int_not_equal(
	    sotp_contract_card(d2, "C-B", T0, grid, sizeof(grid), &d), SOTP_OK);
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM contracts WHERE card IS NOT"
	                     " NULL AND kv = 1"),
	    0);
	/* Once it has looked (its refresh), it seals under version 2. */
	assert_int_equal(sotp_keys_sync(d2, 1), SOTP_OK);
	assert_int_equal(
	    sotp_contract_card(d2, "C-B", T0, grid, sizeof(grid), &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(transact(b, "C-A", B32_A, T0 + 2000), SOTP_R_ACCEPTED);
	sotp_ctx_free(d2);
	sotp_ctx_free(c);
	sotp_ctx_free(b);
}

/* A rotation taken up again from where it stopped, by another process. */
static void
test_keys_rotation_resumed(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *b;
	struct sotp_key_step st;
	struct sotp_key_check chk;

	assert_int_equal(sotp_key_rotate_begin(f->ctx, T0, &st), SOTP_OK);
	assert_int_equal(sotp_key_rotate_step(f->ctx, T0 + 1, 4, &st), SOTP_OK);
	assert_int_equal(st.count, 4);
	/* Half way: every value opens, under one version or the other. */
	assert_int_equal(sotp_key_check(f->ctx, &chk), SOTP_OK);
	assert_int_equal(chk.secrets, NTOK + 2);
	assert_int_equal(chk.bad, 0);
	/* The process dies here; another begins again. */
	sotp_ctx_free(f->ctx);
	f->ctx = NULL;
	b = load(f->conf);
	assert_int_equal(sotp_key_rotate_begin(b, T0 + 2, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RESUMED);
	assert_int_equal(st.version, 2);
	assert_int_equal(sotp_key_rotate_step(b, T0 + 3, 100, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RESEALED);
	assert_int_equal(st.count, NTOK + 2 - 4);
	assert_int_equal(st.left, 0);
	assert_int_equal(sql_int(f->db, "SELECT count(*) FROM key_dek"), 2);
	assert_int_equal(sotp_key_rotate_step(b, T0 + 999, 100, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RETIRED);
	/* Each step left its audit row. */
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM audit WHERE action ="
	                     " 'key.rotate'"),
	    2);
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM audit WHERE action ="
	                     " 'key.reseal'"),
	    2);
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM audit WHERE action ="
	                     " 'key.retire'"),
	    1);
	verify_chain(b, NULL);
	/* A value changed behind the store's back is named. The byte is
	 * flipped, never set: a random byte already 0x00 once in 256 runs
	 * left the value whole. */
	run_sql(f->db,
	    "UPDATE tokens SET secret = CAST(substr(secret, 1, 20)"
	    " || CASE WHEN substr(secret, 21, 1) = X'00' THEN X'01'"
	    " ELSE X'00' END || substr(secret, 22) AS BLOB)"
	    " WHERE serial = 'T-X3'");
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM tokens WHERE serial ="
	                     " 'T-X3' AND length(secret) > 21"),
	    1);
	assert_int_equal(sotp_key_check(b, &chk), SOTP_OK);
	assert_int_equal(chk.secrets, NTOK + 1);
	assert_int_equal(chk.bad, 1);
	assert_string_equal(chk.first_bad, "token T-X3");
	f->ctx = b;
}

/*
 * One whole rotation at t (begin, re-seal, retire once every State may
 * have expired): the time it ended.
 */
static time_t
rotate_all(struct sotp_ctx *ctx, time_t t)
{
	struct sotp_key_step st;
	int steps = 0;

	if (sotp_key_rotate_begin(ctx, t, &st) != SOTP_OK)
		fail_msg("key rotate: %s", sotp_ctx_errmsg(ctx));
	do {
		t += 1000;
		if (sotp_key_rotate_step(ctx, t, 100, &st) != SOTP_OK)
			fail_msg("key rotate: %s", sotp_ctx_errmsg(ctx));
		assert_true(++steps < 20);
	} while (st.what != SOTP_KEY_DONE);
	return t;
}

/*
 * More rotations than a process holds versions at once (keys.c
 * KR_SLOTS): the chain verifies after every one, in this process (which
 * held each retired audit key as it went) and in a fresh one; decisions,
 * a State signed before a rotation began and answered during it, and
 * cards keep working.
 */
#define MANY_ROTATIONS 70

static void
test_keys_many_rotations(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *b;
	struct sotp_key_step st;
	struct sotp_decision d;
	char grid[512];
	uint8_t s[SOTP_STATE_MAX];
	size_t n = 0;
	time_t t = T0;
	int i;

	for (i = 1; i <= MANY_ROTATIONS; i++) {
		t = rotate_all(f->ctx, t + 100);
		verify_chain(f->ctx, NULL);
		assert_int_equal(
		    transact(f->ctx, "C-A", B32_A, t + 1), SOTP_R_ACCEPTED);
		t += 60;
	}
	assert_int_equal(sql_int(f->db, "SELECT max(version) FROM key_dek"),
	    MANY_ROTATIONS + 1);
	/* key status lists every version: each retired one's audit key. */
	check_status(f->ctx, MANY_ROTATIONS + 1, MANY_ROTATIONS + 1, 0);
	b = load(f->conf);
	verify_chain(b, NULL);
	sotp_ctx_free(b);
	/* A State signed by the version a rotation is leaving. */
	t += 100;
	first_round(f->ctx, "C-B", "transaction", NULL, t, s, &n);
	assert_int_equal(sotp_key_rotate_begin(f->ctx, t + 1, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_STARTED);
	assert_int_equal(
	    next_round(f->ctx, "C-B", "transaction", B32_B, t + 2, s, n),
	    SOTP_R_ACCEPTED);
	assert_int_equal(
	    sotp_contract_card(f->ctx, "C-B", t + 3, grid, sizeof(grid), &d),
	    SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	verify_chain(f->ctx, NULL);
	t = rotate_all(f->ctx, t + 10);
	verify_chain(f->ctx, NULL);
}

/*
 * A retired version's audit key this process cannot open is an error
 * naming the version and why, never a row said to be changed; a row
 * naming a version the store never had is one.
 */
static void
test_keys_audit_key_unloadable(void **state)
{
	struct fx *f = *state;
	struct sotp_audit_check k;
	struct sotp_ctx *b;
	time_t t = T0;
	long long id;
	int i;

	for (i = 0; i < 3; i++)
		t = rotate_all(f->ctx, t + 100);
	verify_chain(f->ctx, NULL);
	/*
	 * Version 2's wrapped audit key replaced by version 3's: its AAD
	 * names another version, so it does not unwrap.
	 */
	run_sql(f->db,
	    "CREATE TABLE saved AS SELECT * FROM key_wrap WHERE version = 2"
	    " AND what = 2;"
	    "UPDATE key_wrap SET blob = (SELECT blob FROM key_wrap w WHERE"
	    " w.version = 3 AND w.what = 2) WHERE version = 2 AND what = 2");
	b = load(f->conf);
	assert_int_equal(sotp_audit_verify(b, &k), SOTP_ERR_KEY);
	if (strstr(sotp_ctx_errmsg(b),
	        "key version 2, whose audit key this"
	        " process cannot load") == NULL ||
	    strstr(sotp_ctx_errmsg(b), "cannot unwrap its audit key") == NULL)
		fail_msg("%s", sotp_ctx_errmsg(b));
	sotp_ctx_free(b);
	/* Put back, it verifies. */
	run_sql(f->db,
	    "UPDATE key_wrap SET blob = (SELECT blob FROM saved) WHERE"
	    " version = 2 AND what = 2; DROP TABLE saved");
	b = load(f->conf);
	verify_chain(b, NULL);
	sotp_ctx_free(b);
	/* Wrapped under another KEK only (a rewrap half done by hand). */
	run_sql(f->db,
	    "UPDATE key_wrap SET kek = 'file:00000000deadbeef'"
	    " WHERE version = 2 AND what = 2");
	b = load(f->conf);
	assert_int_equal(sotp_audit_verify(b, &k), SOTP_ERR_KEY);
	if (strstr(sotp_ctx_errmsg(b),
	        "key version 2, whose audit key this"
	        " process cannot load") == NULL ||
	    strstr(sotp_ctx_errmsg(b), "has no copy wrapped under") == NULL)
		fail_msg("%s", sotp_ctx_errmsg(b));
	sotp_ctx_free(b);
	run_sql(f->db,
	    "UPDATE key_wrap SET kek = (SELECT kek FROM key_wrap w WHERE"
	    " w.version = 3 AND w.what = 2) WHERE version = 2 AND what = 2");
	/* A row said to be keyed by a version the store never had. */
	id = sql_int(f->db, "SELECT min(id) FROM audit WHERE kv = 2");
	assert_true(id > 0);
	run_sql(f->db,
	    "UPDATE audit SET kv = 999 WHERE id ="
	    " (SELECT min(id) FROM audit WHERE kv = 2)");
	b = load(f->conf);
	assert_int_equal(sotp_audit_verify(b, &k), SOTP_OK);
	assert_int_equal(k.problem, SOTP_AUDIT_CHANGED);
	assert_int_equal(k.bad_id, id);
	sotp_ctx_free(b);
}

/*
 * A store holding the most key versions (SOTP_KEY_VERSIONS_MAX): key
 * rotate refuses a new one, saying so, and changes nothing; key status
 * lists every one. The retired versions are made by hand (audit keys
 * wrapped under this KEK, as retirements leave them), not by thousands
 * of rotations.
 */
static void
test_keys_version_cap(void **state)
{
	struct fx *f = *state;
	struct sotp_key_step st;
	char sql[512];

	snprintf(sql, sizeof(sql),
	    "WITH RECURSIVE n(v) AS (SELECT 2 UNION ALL SELECT v + 1 FROM n"
	    " WHERE v < %d) INSERT INTO key_wrap (version, kek, what, blob)"
	    " SELECT n.v, w.kek, 2, w.blob FROM n, key_wrap w WHERE"
	    " w.version = 1 AND w.what = 2",
	    SOTP_KEY_VERSIONS_MAX);
	run_sql(f->db, sql);
	check_status(f->ctx, 1, SOTP_KEY_VERSIONS_MAX, 0);
	assert_int_equal(
	    sotp_key_rotate_begin(f->ctx, T0, &st), SOTP_ERR_CONFIG);
	if (strstr(sotp_ctx_errmsg(f->ctx),
	        "the store holds 4096 key"
	        " versions, the most") == NULL ||
	    strstr(sotp_ctx_errmsg(f->ctx), "nothing changed") == NULL)
		fail_msg("%s", sotp_ctx_errmsg(f->ctx));
	assert_int_equal(sql_int(f->db, "SELECT current FROM key_ring"), 1);
	assert_int_equal(sql_int(f->db, "SELECT count(*) FROM key_dek"), 1);
	verify_chain(f->ctx, NULL);
	/* One fewer, and a rotation begins. */
	snprintf(sql, sizeof(sql), "DELETE FROM key_wrap WHERE version = %d",
	    SOTP_KEY_VERSIONS_MAX);
	run_sql(f->db, sql);
	if (sotp_key_rotate_begin(f->ctx, T0, &st) != SOTP_OK)
		fail_msg("key rotate: %s", sotp_ctx_errmsg(f->ctx));
	assert_int_equal(st.what, SOTP_KEY_STARTED);
	assert_int_equal(st.version, SOTP_KEY_VERSIONS_MAX);
}

/* ---- a change of key-encryption key ---- */

static void
test_keys_rewrap_and_drop(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *b;
	struct sotp_key_step st;
	static struct sotp_key_status s; /* too big for a stack */
	char conf2[192], key2[192], old[SOTP_KEK_NAME_MAX], err[256];
	unsigned int wrapped = 0;
	int64_t removed = 0;

	/* A second master key file, named by a second policy. */
	snprintf(conf2, sizeof(conf2), "%s/new.conf", f->dir);
	snprintf(key2, sizeof(key2), "%s/new.key", f->dir);
	assert_int_equal(sotp_key_create(key2, err, sizeof(err)), SOTP_OK);
	{
		char cmd[1024];

		snprintf(cmd, sizeof(cmd),
		    "sed 's|^master_key = .*|master_key = %s|' %s >%s", key2,
		    f->conf, conf2);
		assert_int_equal(system(cmd), 0);
	}
	/* The new policy's key wraps nothing yet: refused, saying so. */
	assert_int_equal(sotp_ctx_new(&b), SOTP_OK);
	assert_int_equal(sotp_ctx_load(b, conf2), SOTP_ERR_KEY);
	assert_non_null(
	    strstr(sotp_ctx_errmsg(b), "has no copy wrapped under"));
	sotp_ctx_free(b);
	/* A rotation first, so a retired audit key is carried too. */
	assert_int_equal(sotp_key_rotate_begin(f->ctx, T0, &st), SOTP_OK);
	do
		assert_int_equal(
		    sotp_key_rotate_step(f->ctx, T0 + 999, 100, &st), SOTP_OK);
	while (st.what != SOTP_KEY_DONE);
	assert_int_equal(sotp_policy_kek(f->ctx, old, sizeof(old)), SOTP_OK);
	assert_int_equal(
	    sotp_key_rewrap(f->ctx, conf2, T0 + 1000, &wrapped), SOTP_OK);
	/* Version 2's two keys, version 1's audit key. */
	assert_int_equal(wrapped, 3);
	assert_int_equal(sotp_key_status(f->ctx, T0, &s), SOTP_OK);
	assert_int_equal(s.nkeks, 2);
	/* Again: nothing new. */
	assert_int_equal(
	    sotp_key_rewrap(f->ctx, conf2, T0 + 1000, &wrapped), SOTP_OK);
	assert_int_equal(wrapped, 0);
	/* No rotation while two KEKs wrap the keys. */
	assert_int_equal(
	    sotp_key_rotate_begin(f->ctx, T0 + 1001, &st), SOTP_ERR_CONFIG);
	/* The new policy serves, and verifies the chain. */
	b = load(conf2);
	assert_int_equal(transact(b, "C-A", B32_A, T0 + 1100), SOTP_R_ACCEPTED);
	verify_chain(b, NULL);
	/* Its own KEK is never dropped; the old one is, from the new. */
	assert_int_equal(sotp_policy_kek(b, err, sizeof(err)), SOTP_OK);
	assert_int_equal(
	    sotp_key_drop_kek(b, err, T0 + 1200, &removed), SOTP_ERR_CONFIG);
	assert_int_equal(
	    sotp_key_drop_kek(b, old, T0 + 1200, &removed), SOTP_OK);
	assert_int_equal(removed, 3);
	assert_int_equal(
	    sotp_key_drop_kek(b, old, T0 + 1200, &removed), SOTP_OK);
	assert_int_equal(removed, 0);
	sotp_ctx_free(b);
	/* The old policy no longer opens the store. */
	sotp_ctx_free(f->ctx);
	assert_int_equal(sotp_ctx_new(&f->ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(f->ctx, f->conf), SOTP_ERR_KEY);
	sotp_ctx_free(f->ctx);
	f->ctx = load(conf2);
	/* And a rotation is allowed again. */
	assert_int_equal(
	    sotp_key_rotate_begin(f->ctx, T0 + 1300, &st), SOTP_OK);
	assert_int_equal(st.version, 3);
}

/* ---- a store from before key versions ---- */

/*
 * A store of schema version 2 with a token secret and a card sealed
 * directly under the master key file: init upgrades it to version 0 (the
 * file, now wrapped under the KEK the file gives) and everything works as
 * before; a rotation then moves it to version 1.
 */
static void
test_keys_legacy_store(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx;
	struct sotp_key_step st;
	static struct sotp_key_status s; /* too big for a stack */
	uint8_t mk[SOTP_KEY_LEN], key[64], sealed[SOTP_CARD_MAX];
	uint8_t st1[SOTP_STATE_MAX];
	char err[256], sql[2048], hex[2 * SOTP_CARD_MAX + 1], path[256];
	char pw[SOTP_HASH_MAX];
	char *schema = NULL;
	const char *top = getenv("TOP");
	size_t n = 0, len = 0, i, sn = 0;
	FILE *fp;
	long sz;

	/* The fixture's store goes; a version 2 one takes its place. */
	sotp_ctx_free(f->ctx);
	f->ctx = NULL;
	unlink(f->db);
	if (top == NULL)
		fail_msg("TOP is not set: run tests/run.sh");
	snprintf(path, sizeof(path), "%s/tests/data/schema/v2-sqlite.sql", top);
	assert_non_null(fp = fopen(path, "r"));
	fseek(fp, 0, SEEK_END);
	sz = ftell(fp);
	rewind(fp);
	assert_non_null(schema = calloc(1, (size_t)sz + 1));
	assert_int_equal(fread(schema, 1, (size_t)sz, fp), (size_t)sz);
	fclose(fp);
	run_sql(f->db, schema);
	free(schema);
	snprintf(path, sizeof(path), "%s/master.key", f->dir);
	assert_int_equal(
	    sotp_key_load_shared(path, (gid_t)-1, mk, err, sizeof(err)),
	    SOTP_OK);
	assert_int_equal(
	    sotp_base32_decode(B32_A, key, sizeof(key), &n, NULL), SOTP_OK);
	assert_int_equal(
	    sotp_seal(mk, "T-OLD", 5, key, n, sealed, sizeof(sealed), &len),
	    SOTP_OK);
	for (i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", sealed[i]);
	assert_int_equal(sotp_passwd_hash(NULL, "pw", pw), SOTP_OK);
	snprintf(sql, sizeof(sql),
	    "INSERT INTO tokens (serial, kind, secret, algorithm, digits,"
	    " period, created) VALUES ('T-OLD', 'mobile', X'%s', 0, 6, 30, 0);"
	    "INSERT INTO contracts (id, pwhash, login, serial, created)"
	    " VALUES ('C-OLD', '%s', 1, 'T-OLD', 0);",
	    hex, pw);
	run_sql(f->db, sql);
	SOTP_WIPE_ARRAY(mk);
	/* A build of this version refuses it until init. */
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(
	    sotp_ctx_load(ctx, f->conf), SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(sotp_ctx_errmsg(ctx), "shinkin-otp init"));
	assert_int_equal(sotp_init_at(ctx, f->conf, T0), SOTP_OK);
	assert_int_equal(sotp_key_status(ctx, T0, &s), SOTP_OK);
	assert_int_equal(s.current, 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.v[0].secrets, 1);
	/* The old secret opens; codes verify as before. */
	assert_int_equal(transact(ctx, "C-OLD", B32_A, T0), SOTP_R_ACCEPTED);
	/* A value sealed now is in the old layout still (older builds). */
	add_token(ctx, "T-NEW0", B32_B);
	assert_int_equal(
	    sql_int(f->db,
	        "SELECT substr(hex(secret), 1, 2) = '01' FROM tokens"
	        " WHERE serial = 'T-NEW0'"),
	    1);
	/*
	 * And a State too: version 2 of the layout (key version 0), but
	 * for one that carries the password: version 4 (engine_state.c),
	 * naming key version 0, which no older build reads.
	 */
	first_round(ctx, "C-OLD", "transaction", NULL, T0 + 31, st1, &sn);
	assert_int_equal(st1[0], 2);
	assert_int_equal(
	    next_round(ctx, "C-OLD", "transaction", B32_A, T0 + 61, st1, sn),
	    SOTP_R_ACCEPTED);
	first_round(ctx, "C-OLD", "login", "pw", T0 + 91, st1, &sn);
	assert_int_equal(st1[0], 4);
	assert_memory_equal(st1 + 1, "\0\0\0\0", 4);
	assert_int_equal(
	    next_round(ctx, "C-OLD", "login", B32_A, T0 + 121, st1, sn),
	    SOTP_R_ACCEPTED);
	/* init again changes nothing. */
	assert_int_equal(sotp_init_at(ctx, f->conf, T0 + 1), SOTP_OK);
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM audit WHERE action ="
	                     " 'key.create'"),
	    1);
	/* Rotate away from the file: version 1. */
	assert_int_equal(sotp_key_rotate_begin(ctx, T0 + 10, &st), SOTP_OK);
	assert_int_equal(st.from, 0);
	assert_int_equal(st.version, 1);
	do
		assert_int_equal(
		    sotp_key_rotate_step(ctx, T0 + 999, 100, &st), SOTP_OK);
	while (st.what != SOTP_KEY_DONE);
	assert_int_equal(sql_int(f->db,
	                     "SELECT count(*) FROM tokens WHERE kv = 1 AND"
	                     " substr(hex(secret), 1, 10) = '0200000001'"),
	    2);
	sotp_ctx_free(ctx);
	ctx = load(f->conf);
	assert_int_equal(
	    transact(ctx, "C-OLD", B32_A, T0 + 2000), SOTP_R_ACCEPTED);
	verify_chain(ctx, NULL);
	/* Version 0's State is refused now that version 0 is retired. */
	assert_int_equal(
	    next_round(ctx, "C-OLD", "login", B32_A, T0 + 91, st1, sn),
	    SOTP_R_STATE_INVALID);
	f->ctx = ctx;
}

/*
 * A context made like a model decides by the policy the model read, not
 * by the file as it reads now (radiusd's threads, opened as requests
 * come, after the start checked the policy), with keys and a store of
 * its own.
 */
static void
test_keys_load_like(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *model = NULL, *ctx = NULL, *bare = NULL;
	struct sotp_keyring *k = NULL;
	char why[512];

	assert_int_equal(
	    sotp_keyring_open(f->conf, &k, why, sizeof(why)), SOTP_OK);
	assert_int_equal(sotp_ctx_new(&model), SOTP_OK);
	assert_int_equal(sotp_ctx_load_policy(model, f->conf), SOTP_OK);
	assert_int_equal(sotp_policy_hides_unknown(model), 1);
	set_policy(f->conf, "unknown_contract", "reveal");

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	if (sotp_ctx_load_like(ctx, model, k) != SOTP_OK)
		fail_msg("load_like: %s", sotp_ctx_errmsg(ctx));
	assert_int_equal(sotp_policy_hides_unknown(ctx), 1);
	assert_int_equal(sotp_ready(ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_has_key(ctx), 1);
	/* A model with no policy, or none at all, makes nothing. */
	assert_int_equal(sotp_ctx_new(&bare), SOTP_OK);
	assert_int_equal(
	    sotp_ctx_load_like(ctx, bare, k), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_ctx_load_like(ctx, NULL, k), SOTP_ERR_INVALID_ARG);

	/*
	 * The key from the model too (radiusd's start): the file now names
	 * a key that is not there, and the model's key is still the one
	 * opened. Before, radiusd read the file twice at its start, once
	 * for the key and once for the rules, and an edit in between could
	 * pair one version's key with the other's rules.
	 */
	sotp_keyring_free(k);
	k = NULL;
	set_policy(f->conf, "master_key", "/nonexistent/master.key");
	assert_int_not_equal(
	    sotp_keyring_open(f->conf, &k, why, sizeof(why)), SOTP_OK);
	assert_null(k);
	if (sotp_keyring_open_like(model, &k, why, sizeof(why)) != SOTP_OK)
		fail_msg("open_like: %s", why);
	if (sotp_ctx_load_like(ctx, model, k) != SOTP_OK)
		fail_msg(
		    "load_like, the model's key: %s", sotp_ctx_errmsg(ctx));
	assert_int_equal(sotp_ready(ctx), SOTP_OK);
	sotp_keyring_free(k);
	k = NULL;
	assert_int_equal(sotp_keyring_open_like(bare, &k, why, sizeof(why)),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_keyring_open_like(NULL, &k, why, sizeof(why)),
	    SOTP_ERR_INVALID_ARG);
	assert_null(k);

	sotp_ctx_free(bare);
	sotp_ctx_free(ctx);
	sotp_ctx_free(model);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keys_sealed_layouts),
	    cmocka_unit_test_setup_teardown(
	        test_keys_locked_memory, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_rotation_two_servers, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_late_writer, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_rotation_resumed, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_many_rotations, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_audit_key_unloadable, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_version_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_rewrap_and_drop, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_legacy_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_keys_load_like, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

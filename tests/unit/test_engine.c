/*
 * test_engine.c - the decision engine over the shipped policy, table
 * driven. Codes come from oathtool (an independent token), time is
 * injected, and every case goes through a real store: an SQLite file, or
 * when SOTP_TEST_STORE_URL names a PostgreSQL database (tests/run.sh's
 * PostgreSQL pass), that database, its public schema emptied for each
 * test. Tests that reach behind the store's back (a raw UPDATE, a lost
 * connection, the bytes at rest) do it in the dialect of the store under
 * test; the two that only one back end can stage are registered for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sotp_int.h"

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define B32_A "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#define B32_B "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#define B32_C "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"
#define B32_D "ONSWG4TFOQQGC3TEEBXW45DPNNSW4ZLT"
#define B32_E "KRUGKIDROVUWG2ZAMJZG65ZOEBTG66DK"

/* 2026-06-01T00:00:00Z: long before pc-legacy's warning period. */
#define T0 ((time_t)1780272000)
#define DAY 86400

struct fx {
	char dir[64];
	char conf[128];
	struct sotp_ctx *ctx;
	char grid_card[512]; /* printed card of C-CARD */
	char grid_reg[512];  /* printed card of C-REG */
	char grid_reg2[512]; /* printed card of C-REG2 */
};

/* ---- helpers ---- */

/* The PostgreSQL database under test, or NULL for SQLite. */
static const char *
pg_url(void)
{
	const char *u = getenv("SOTP_TEST_STORE_URL");

	return u != NULL && u[0] != '\0' ? u : NULL;
}

/* Runs sql on the PostgreSQL test database; the first value, if any. */
static void
pg_sql(const char *sql, char *out, size_t outsz)
{
	PGconn *conn;
	PGresult *res;

	if (out != NULL)
		out[0] = '\0';
	conn = PQconnectdb(pg_url());
	if (PQstatus(conn) != CONNECTION_OK)
		fail_msg("pg: %s", PQerrorMessage(conn));
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("pg: %s: %s", sql, PQresultErrorMessage(res));
	if (out != NULL && PQresultStatus(res) == PGRES_TUPLES_OK &&
	    PQntuples(res) > 0)
		snprintf(out, outsz, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(conn);
}

/*
 * Another session holding rows: a child that runs sql (BEGIN and the
 * locking statements; with rows >= 0 the last must return that many rows)
 * and keeps its transaction open until hold_end. Returns once they are
 * held.
 */
struct holder {
	pid_t pid;
	int done; /* written to by hold_end */
};

static void
hold_rows(const char *sql, int rows, struct holder *h)
{
	int go[2], done[2];
	char c = 'g';

	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	if ((h->pid = fork()) == 0) {
		PGconn *conn = PQconnectdb(pg_url());
		PGresult *res;

		close(go[0]);
		close(done[1]);
		res = PQexec(conn, sql);
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    (rows >= 0 && PQntuples(res) != rows))
			_exit(2);
		PQclear(res);
		if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) != 1)
			_exit(3);
		res = PQexec(conn, "ROLLBACK");
		_exit(PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : 4);
	}
	assert_true(h->pid > 0);
	close(go[1]);
	close(done[0]);
	h->done = done[1];
	assert_int_equal(read(go[0], &c, 1), 1);
	close(go[0]);
}

/* The holder lets go (ROLLBACK) and must have held and ended cleanly. */
static void
hold_end(struct holder *h)
{
	char c = 'g';
	int wst;

	assert_int_equal(write(h->done, &c, 1), 1);
	close(h->done);
	assert_int_equal(waitpid(h->pid, &wst, 0), h->pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
}

/*
 * conf: a copy of the policy under test with the [store] lock_timeout
 * and statement_timeout given (the shipped 1000 and 2000 ms).
 */
static void
timeouts_conf(const struct fx *f, unsigned int lock_ms,
    unsigned int statement_ms, char *conf, size_t confsz)
{
	char cmd[1024];

	snprintf(
	    conf, confsz, "%s/wait-%u-%u.conf", f->dir, lock_ms, statement_ms);
	snprintf(cmd, sizeof(cmd),
	    "sed -e 's/^lock_timeout = 1000$/lock_timeout = %u/'"
	    " -e 's/^statement_timeout = 2000$/statement_timeout = %u/'"
	    " %s > %s && grep -q '^lock_timeout = %u$' %s &&"
	    " grep -q '^statement_timeout = %u$' %s",
	    lock_ms, statement_ms, f->conf, conf, lock_ms, conf, statement_ms,
	    conf);
	assert_int_equal(system(cmd), 0);
}

/* conf: a copy of the policy under test with lock_timeout = 1500. */
static void
short_wait_conf(const struct fx *f, char *conf, size_t confsz)
{
	timeouts_conf(f, 1500, 2000, conf, confsz);
}

/*
 * Makes the PostgreSQL test database refuse every `event` (INSERT,
 * UPDATE) on table, as a broken or full database would: a trigger named
 * no_<table> raising an error. pg_allow drops it again.
 */
static void
pg_refuse(const char *event, const char *table)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	    "CREATE FUNCTION sotp_test_no_%s() RETURNS trigger"
	    " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION"
	    " '%s refused by the test'; END$$;"
	    " CREATE TRIGGER no_%s BEFORE %s ON %s"
	    " FOR EACH ROW EXECUTE FUNCTION sotp_test_no_%s()",
	    table, table, table, event, table, table);
	pg_sql(sql, NULL, 0);
}

static void
pg_allow(const char *table)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	    "DROP TRIGGER no_%s ON %s; DROP FUNCTION sotp_test_no_%s()", table,
	    table, table);
	pg_sql(sql, NULL, 0);
}

/* The replay mark (last_step) of token serial, read by PostgreSQL. */
static long long
pg_last_step(const char *serial)
{
	char sql[160], val[32];

	snprintf(sql, sizeof(sql),
	    "SELECT last_step FROM tokens WHERE serial = '%s'", serial);
	pg_sql(sql, val, sizeof(val));
	return strtoll(val, NULL, 10);
}

/* Runs sql on the store under test behind the engine's back. */
static void
raw_sql(const char *dir, const char *sql)
{
	char db[160];
	sqlite3 *h = NULL;

	if (pg_url() != NULL) {
		pg_sql(sql, NULL, 0);
		return;
	}
	snprintf(db, sizeof(db), "%s/shinkin-otp.db", dir);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

/*
 * Writes the shipped policy to path with the store under test (an
 * SQLite file beside it, or the PostgreSQL database, emptied) and the
 * key beside it, then `extra` (sections that override nothing).
 */
static void
write_policy(const char *path, const char *extra)
{
	const char *s = sotp_default_policy_text, *nl;
	FILE *fp;

	/*
	 * A bounded wait: a transaction a failed test left open (an assert
	 * inside a store trace hook) fails this DROP, not hangs the suite.
	 */
	if (pg_url() != NULL)
		pg_sql("SET client_min_messages = warning;"
		       " SET lock_timeout = '30s';"
		       " DROP SCHEMA IF EXISTS public CASCADE;"
		       " CREATE SCHEMA public",
		    NULL, 0);
	assert_non_null(fp = fopen(path, "w"));
	for (; *s != '\0'; s = nl + 1) {
		if ((nl = strchr(s, '\n')) == NULL)
			break;
		if (strncmp(s, "store = ", 8) == 0)
			fprintf(fp, "store = %s\n",
			    pg_url() != NULL ? pg_url()
			                     : "sqlite:shinkin-otp.db");
		else if (strncmp(s, "master_key = ", 13) == 0)
			fprintf(fp, "master_key = master.key\n");
		else if (strncmp(s, "metrics = ", 10) == 0)
			fprintf(fp, "metrics = shinkin-otp.metrics\n");
		else if (extra != NULL && strncmp(s, "[card]", 6) == 0)
			break; /* extra replaces what follows */
		else
			fwrite(s, 1, (size_t)(nl - s) + 1, fp);
	}
	if (extra != NULL)
		fputs(extra, fp);
	fclose(fp);
}

static void
oath(const char *b32, time_t t, const char *opts, char *out)
{
	char cmd[256];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "oathtool %s -b --now @%lld %s",
	    opts != NULL ? opts : "--totp", (long long)t, b32);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, SOTP_CODE_MAX + 1, p));
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(pclose(p), 0);
}

static void
add_token(struct fx *f, const char *serial, const char *b32, const char *kind,
    enum sotp_alg alg, unsigned int digits)
{
	struct sotp_token_spec spec;
	struct sotp_decision d;
	uint8_t key[64];
	size_t n = 0;

	assert_int_equal(
	    sotp_base32_decode(b32, key, sizeof(key), &n, NULL), SOTP_OK);
	sotp_token_spec_defaults(f->ctx, &spec);
	spec.serial = serial;
	spec.kind = kind;
	spec.alg = alg;
	spec.digits = digits;
	assert_int_equal(
	    sotp_token_add(f->ctx, &spec, key, n, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
}

static void
add_contract(struct fx *f, const char *id, const char *pw)
{
	struct sotp_decision d;

	assert_int_equal(sotp_contract_add(f->ctx, id, pw, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
}

static void
bind_at(struct fx *f, const char *id, const char *serial, const char *b32,
    enum sotp_login login, time_t t)
{
	struct sotp_decision d;
	char code[16];

	oath(b32, t,
	    strcmp(serial, "T-NONE") == 0 ? "--totp=sha256 -d 8" : NULL, code);
	assert_int_equal(
	    sotp_contract_bind(f->ctx, id, serial, code, login, t, &d),
	    SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_ACCEPTED);
}

/* The digits a printed card shows at "B7 E2"-style cells. */
static void
card_answer(const char *grid, const char *cells, char *out)
{
	const char *lines[27];
	const char *p = grid;
	size_t n = 0, k = 0;

	while (*p != '\0' && n < 27) {
		lines[n++] = p;
		p = strchr(p, '\n');
		if (p == NULL)
			break;
		p++;
	}
	for (p = cells; *p != '\0'; p++) {
		if (*p == ' ')
			continue;
		/* line 0 is the header; row r is line r + 1: "A  d d d" */
		out[k++] = lines[1 + (p[0] - 'A')][3 + 2 * (p[1] - '0')];
		p++;
	}
	out[k] = '\0';
}

static void
issue_card(struct fx *f, const char *id, char *grid, size_t gridsz)
{
	struct sotp_decision d;

	assert_int_equal(
	    sotp_contract_card(f->ctx, id, T0, grid, gridsz, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/sotp-engine.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof(f->conf), "%s/shinkin-otp.conf", f->dir);
	write_policy(f->conf, NULL);
	assert_int_equal(sotp_ctx_new(&f->ctx), SOTP_OK);
	assert_int_equal(sotp_init(f->ctx, f->conf), SOTP_OK);

	add_token(f, "T-OTP", B32_A, NULL, SOTP_ALG_SHA1, 6);
	add_token(f, "T-CARD", B32_B, NULL, SOTP_ALG_SHA1, 6);
	add_token(f, "T-NONE", B32_C, NULL, SOTP_ALG_SHA256, 8);
	add_token(f, "T-LEG", B32_D, "pc-legacy", SOTP_ALG_SHA1, 6);
	add_token(f, "T-REG", B32_E, NULL, SOTP_ALG_SHA1, 6);
	add_contract(f, "C-OTP", "pw-otp");
	add_contract(f, "C-CARD", "pw-card");
	add_contract(f, "C-NONE", "pw-none");
	add_contract(f, "C-NOTOKEN", "pw-nt");
	add_contract(f, "C-LEG", "pw-leg");
	add_contract(f, "C-REG", "pw-reg");
	add_contract(f, "C-REG2", "pw-reg2");
	issue_card(f, "C-CARD", f->grid_card, sizeof(f->grid_card));
	issue_card(f, "C-REG", f->grid_reg, sizeof(f->grid_reg));
	issue_card(f, "C-REG2", f->grid_reg2, sizeof(f->grid_reg2));
	bind_at(f, "C-OTP", "T-OTP", B32_A, SOTP_LOGIN_OTP, T0 - 600);
	bind_at(f, "C-CARD", "T-CARD", B32_B, SOTP_LOGIN_CARD, T0 - 600);
	bind_at(f, "C-NONE", "T-NONE", B32_C, SOTP_LOGIN_NONE, T0 - 600);
	bind_at(f, "C-LEG", "T-LEG", B32_D, SOTP_LOGIN_OTP, T0 - 600);
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

/* ---- one attempt, driven like a front end would ---- */

enum code_kind { NO_CODE, GOOD_CODE, WRONG_CODE };
enum card_kind { NO_CARD, GOOD_CARD, WRONG_CARD };

struct input {
	const char *password;
	enum code_kind code;
	const char *b32;  /* the token the code comes from */
	const char *opts; /* oathtool options (algorithm, digits) */
	enum card_kind card;
	const char *grid;
	const char *serial;
	const char *choice;
};

/* The bank guide's order; every attempt must ask in it. */
static int
guide_index(unsigned int factor)
{
	static const unsigned int order[] = {SOTP_F_PASSWORD, SOTP_F_SERIAL,
	    SOTP_F_OTP, SOTP_F_LOGIN_CHOICE, SOTP_F_CARD};
	int i;

	for (i = 0; i < 5; i++)
		if (order[i] == factor)
			return i;
	fail_msg("asked for %#x, not one factor", factor);
	return -1;
}

/*
 * Answers what the engine asks, one question at a time, until a final
 * decision (or a question `in` has no answer for). *asked collects every
 * question; they must come in the guide's order, each with its prompt.
 */
static void
run(struct fx *f, const char *id, const char *context, time_t now,
    const struct input *in, struct sotp_decision *d, unsigned int *asked)
{
	struct sotp_attempt *a = NULL;
	char code[16], answer[16];
	const char *value;
	int rounds = 0, last = -1;

	*asked = 0;
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, id, context, now, &a), SOTP_OK);
	for (;;) {
		assert_int_equal(sotp_attempt_step(a, d), SOTP_OK);
		if (d->verdict != SOTP_CONTINUE)
			break;
		assert_true(++rounds <= 5);
		assert_true(guide_index(d->ask) > last);
		last = guide_index(d->ask);
		assert_true(d->prompt[0] != '\0');
		assert_int_equal(d->echo,
		    d->ask == SOTP_F_SERIAL || d->ask == SOTP_F_LOGIN_CHOICE);
		*asked |= d->ask;
		value = NULL;
		switch (d->ask) {
		case SOTP_F_PASSWORD:
			value = in->password;
			break;
		case SOTP_F_OTP:
			if (in->code == GOOD_CODE)
				oath(in->b32, now, in->opts, code);
			else
				strcpy(code, "000000");
			value = in->code == NO_CODE ? NULL : code;
			break;
		case SOTP_F_CARD:
			if (in->card == NO_CARD)
				break;
			card_answer(in->grid, d->card_cells, answer);
			if (in->card == WRONG_CARD)
				answer[0] = answer[0] == '9'
				    ? '0'
				    : (char)(answer[0] + 1);
			value = answer;
			break;
		case SOTP_F_SERIAL:
			value = in->serial;
			break;
		case SOTP_F_LOGIN_CHOICE:
			value = in->choice;
			break;
		}
		if (value == NULL)
			break;
		assert_int_equal(sotp_attempt_answer(a, value), SOTP_OK);
	}
	sotp_attempt_free(a);
}

struct row {
	const char *name;
	const char *contract;
	const char *context;
	struct input in;
	int day; /* now = T0 + day * DAY + row * 300 */
	enum sotp_verdict want;
	int reason;
	unsigned int asked; /* exactly these needs were asked */
	const char *msg;    /* substring of the customer message */
};

static void
run_rows(struct fx *f, const struct row *rows, size_t n)
{
	struct sotp_decision d;
	unsigned int asked;
	size_t i;
	time_t now;

	for (i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		now = T0 + (time_t)r->day * DAY + (time_t)i * 300;
		run(f, r->contract, r->context, now, &r->in, &d, &asked);
		if (d.verdict != r->want || (int)d.reason != r->reason ||
		    asked != r->asked ||
		    (r->msg != NULL && strstr(d.message, r->msg) == NULL))
			fail_msg("row %zu '%s': verdict %d reason %s asked %#x "
			         "message '%s'; want verdict %d reason %s "
			         "asked %#x message '%s'",
			    i, r->name, d.verdict, sotp_reason_name(d.reason),
			    asked, d.message, r->want,
			    sotp_reason_name(r->reason), r->asked,
			    r->msg != NULL ? r->msg : "");
	}
}

#define PW SOTP_F_PASSWORD
#define OTP SOTP_F_OTP
#define CARD SOTP_F_CARD
#define SER SOTP_F_SERIAL
#define CHO SOTP_F_LOGIN_CHOICE
#define REG (SOTP_F_SERIAL | SOTP_F_OTP | SOTP_F_LOGIN_CHOICE | SOTP_F_CARD)

static void
test_engine_contexts(void **state)
{
	struct fx *f = *state;
	const struct row rows[] = {
	    {"login, otp choice", "C-OTP", "login",
	        {"pw-otp", GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL},
	        0, SOTP_ACCEPT, SOTP_R_ACCEPTED, PW | OTP, NULL},
	    {"login, otp choice, wrong code", "C-OTP", "login",
	        {"pw-otp", WRONG_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL},
	        0, SOTP_REJECT, SOTP_R_WRONG_CODE, PW | OTP,
	        "ワンタイムパスワードが正しくありません。"},
	    {"login, wrong password asks nothing more", "C-OTP", "login",
	        {"nope", GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_WRONG_PASSWORD, PW, NULL},
	    {"login, card choice", "C-CARD", "login",
	        {"pw-card", NO_CODE, NULL, NULL, GOOD_CARD, f->grid_card, NULL,
	            NULL},
	        0, SOTP_ACCEPT, SOTP_R_ACCEPTED, PW | CARD, NULL},
	    {"login, card choice, wrong digits", "C-CARD", "login",
	        {"pw-card", NO_CODE, NULL, NULL, WRONG_CARD, f->grid_card, NULL,
	            NULL},
	        0, SOTP_REJECT, SOTP_R_WRONG_CARD, PW | CARD, NULL},
	    {"login, none choice", "C-NONE", "login",
	        {"pw-none", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, PW, NULL},
	    {"transaction with a token (sha256, 8 digits)", "C-NONE",
	        "transaction",
	        {NULL, GOOD_CODE, B32_C, "--totp=sha256 -d 8", NO_CARD, NULL,
	            NULL, NULL},
	        0, SOTP_ACCEPT, SOTP_R_ACCEPTED, OTP, NULL},
	    {"transaction without a token", "C-NOTOKEN", "transaction",
	        {NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_NOT_BOUND, 0, "登録してください"},
	    {"transaction asks no password", "C-OTP", "transaction",
	        {NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, OTP, NULL},
	    {"mobile with a token: no code", "C-OTP", "mobile",
	        {"pw-otp", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, PW, NULL},
	    /* unknown_contract = hide: the questions and the refusal of a
	     * wrong password (test_engine_unknown_reads_as_wrong_password). */
	    {"unknown contract", "C-NOBODY", "login",
	        {"x", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_WRONG_PASSWORD, PW,
	        "契約者IDまたはログインパスワードが正しくありません。"},
	    {"unknown contract, malformed ID", "C NOBODY\t", "login",
	        {"x", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_WRONG_PASSWORD, PW,
	        "契約者IDまたはログインパスワードが正しくありません。"},
	    {"unknown contract, no password asked", "C-NOBODY", "transaction",
	        {NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_NOT_BOUND, 0, "登録してください"},
	    {"unknown context", "C-OTP", "nosuch",
	        {"pw-otp", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_UNKNOWN_CONTEXT, 0, NULL},
	    {"legacy before its warning", "C-LEG", "login",
	        {"pw-leg", GOOD_CODE, B32_D, NULL, NO_CARD, NULL, NULL, NULL},
	        0, SOTP_ACCEPT, SOTP_R_ACCEPTED, PW | OTP, NULL},
	    /* 2027-03-01: within 60 days of the 2027-03-31 sunset */
	    {"legacy inside the warning", "C-LEG", "transaction",
	        {NULL, GOOD_CODE, B32_D, NULL, NO_CARD, NULL, NULL, NULL}, 273,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, OTP,
	        "2027-03-31まで利用できます。スマートフォン"},
	    {"legacy on its last day", "C-LEG", "transaction",
	        {NULL, GOOD_CODE, B32_D, NULL, NO_CARD, NULL, NULL, NULL}, 303,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, OTP, "2027-03-31まで"},
	    {"legacy after sunset", "C-LEG", "transaction",
	        {NULL, GOOD_CODE, B32_D, NULL, NO_CARD, NULL, NULL, NULL}, 305,
	        SOTP_REJECT, SOTP_R_TOKEN_SUNSET, OTP,
	        "2027-03-31で利用を終了しました。スマートフォン"},
	};

	run_rows(f, rows, sizeof(rows) / sizeof(rows[0]));
}

static void
expect_contract(
    struct fx *f, const char *id, const char *serial, unsigned int failures)
{
	struct sotp_contract_info ci;

	assert_int_equal(sotp_contract_get(f->ctx, id, &ci), SOTP_OK);
	assert_string_equal(ci.serial, serial);
	assert_int_equal(ci.failures, failures);
}

static void
test_engine_registration(void **state)
{
	struct fx *f = *state;
	const struct row rows[] = {
	    {"wrong password", "C-REG", "registration",
	        {"bad", GOOD_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg, "T-REG",
	            "otp"},
	        0, SOTP_REJECT, SOTP_R_WRONG_PASSWORD, PW, NULL},
	    {"unknown serial", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "T-NOPE", "otp"},
	        0, SOTP_REJECT, SOTP_R_UNKNOWN_SERIAL, PW | SER,
	        "シリアル番号が正しくありません。"},
	    {"token of another contract", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_A, NULL, GOOD_CARD, f->grid_reg,
	            "T-OTP", "otp"},
	        0, SOTP_REJECT, SOTP_R_TOKEN_IN_USE, PW | SER, NULL},
	    {"malformed serial", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "シリアル", "otp"},
	        0, SOTP_REJECT, SOTP_R_BAD_INPUT, PW | SER, NULL},
	    {"wrong code", "C-REG", "registration",
	        {"pw-reg", WRONG_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "T-REG", "otp"},
	        0, SOTP_REJECT, SOTP_R_WRONG_CODE, PW | SER | OTP, NULL},
	    {"bad login choice", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "T-REG", "sometimes"},
	        0, SOTP_REJECT, SOTP_R_BAD_INPUT, PW | SER | OTP | CHO, NULL},
	    {"wrong card", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, WRONG_CARD, f->grid_reg,
	            "T-REG", "otp"},
	        0, SOTP_REJECT, SOTP_R_WRONG_CARD, PW | REG,
	        "確認用パスワードが正しくありません。"},
	};
	const struct row ok[] = {
	    {"all right, the serial typed as printed in full width", "C-REG",
	        "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "ｔ－ｒｅｇ", "１"},
	        1, SOTP_ACCEPT, SOTP_R_ACCEPTED, PW | REG, NULL},
	};
	struct sotp_decision d;
	struct input in = {
	    "pw-reg", GOOD_CODE, B32_E, NULL, NO_CARD, NULL, NULL, NULL};
	unsigned int asked;
	time_t now;

	run_rows(f, rows, sizeof(rows) / sizeof(rows[0]));
	/* Nothing was bound by any refusal; three wrong factors counted. */
	expect_contract(f, "C-REG", "", 3);
	run_rows(f, ok, 1);
	expect_contract(f, "C-REG", "T-REG", 0);
	/* The code that registered is spent: it cannot then log in. */
	now = T0 + DAY;
	run(f, "C-REG", "login", now, &in, &d, &asked);
	assert_int_equal(d.reason, SOTP_R_REPLAYED);
	/* A second registration is refused while one token is bound. */
	in.serial = "T-REG";
	in.choice = "otp";
	run(f, "C-REG", "registration", now + 600, &in, &d, &asked);
	assert_int_equal(d.reason, SOTP_R_ALREADY_BOUND);
	/* Close is refused while bound, allowed after unregistration. */
	assert_int_equal(
	    sotp_contract_close(f->ctx, "C-REG", now, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_STILL_BOUND);
	run(f, "C-REG", "unregistration", now + 1200, &in, &d, &asked);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(asked, PW | OTP);
	expect_contract(f, "C-REG", "", 0);
	/* The freed token can be bound again (with a fresh code). */
	bind_at(f, "C-NOTOKEN", "T-REG", B32_E, SOTP_LOGIN_OTP, now + 1800);
	assert_int_equal(
	    sotp_contract_close(f->ctx, "C-REG", now, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	/* A closed contract is refused. */
	run(f, "C-REG", "mobile", now + 2400, &in, &d, &asked);
	assert_int_equal(d.reason, SOTP_R_CONTRACT_CLOSED);
}

static void
test_engine_lockout_mixed_factors(void **state)
{
	struct fx *f = *state;
	const struct row rows[] = {
	    {"wrong password", "C-CARD", "login",
	        {"bad", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_WRONG_PASSWORD, PW, NULL},
	    {"wrong card", "C-CARD", "login",
	        {"pw-card", NO_CODE, NULL, NULL, WRONG_CARD, f->grid_card, NULL,
	            NULL},
	        0, SOTP_REJECT, SOTP_R_WRONG_CARD, PW | CARD, NULL},
	    {"wrong code in a transaction", "C-CARD", "transaction",
	        {NULL, WRONG_CODE, B32_B, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_WRONG_CODE, OTP, NULL},
	    {"wrong password on mobile", "C-CARD", "mobile",
	        {"bad", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_WRONG_PASSWORD, PW, NULL},
	    {"fifth failure locks", "C-CARD", "transaction",
	        {NULL, WRONG_CODE, B32_B, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_WRONG_CODE, OTP, "ご利用を停止しています"},
	    {"locked: refused before any secret", "C-CARD", "transaction",
	        {NULL, GOOD_CODE, B32_B, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_LOCKED, 0, "ご利用を停止しています"},
	    {"locked in every context", "C-CARD", "mobile",
	        {"pw-card", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_LOCKED, 0, NULL},
	};
	const struct row after[] = {
	    {"unlocked", "C-CARD", "transaction",
	        {NULL, GOOD_CODE, B32_B, NULL, NO_CARD, NULL, NULL, NULL}, 1,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, OTP, NULL},
	};
	struct sotp_decision d;

	run_rows(f, rows, sizeof(rows) / sizeof(rows[0]));
	assert_int_equal(
	    sotp_contract_unlock(f->ctx, "C-CARD", T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	run_rows(f, after, 1);
	expect_contract(f, "C-CARD", "T-CARD", 0);
}

/* ---- window, replay, drift (issue 3) ---- */

static int
verify_at(
    struct fx *f, const char *id, const char *b32, time_t code_time, time_t now)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char code[16];

	oath(b32, code_time, NULL, code);
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, id, "transaction", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_set(a, SOTP_F_OTP, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	return d.reason;
}

static void
test_engine_window_edges_and_replay(void **state)
{
	struct fx *f = *state;
	time_t t = T0 - (T0 % 30) + 3000; /* start of a step */
	struct sotp_decision d;
	char code[SOTP_CODE_MAX];

	/* One step back and one forward are accepted, two are not. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 60, t), SOTP_R_WRONG_CODE);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 60, t), SOTP_R_WRONG_CODE);
	expect_contract(f, "C-OTP", "T-OTP", 2);
	/* The accept resets the count of failures ... */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 30, t), SOTP_R_ACCEPTED);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 30, t), SOTP_R_REPLAYED);
	expect_contract(f, "C-OTP", "T-OTP", 1);
	/* An older code than the last accepted one is a replay too. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 60, t), SOTP_R_REPLAYED);
	assert_int_equal(verify_at(f, "C-OTP", B32_A, t, t), SOTP_R_ACCEPTED);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	/* ... and one with none to reset leaves none. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 30, t), SOTP_R_ACCEPTED);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	/* The context kept no key of the token's after the decision. */
	assert_non_null(f->ctx->mac);
	assert_int_equal(
	    sotp_mac_hotp(f->ctx->mac, 0, 6, code), SOTP_ERR_INVALID_ARG);
	/* Drift is now +1: the window is [T, T + 2], and no wider. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 150, t + 30), SOTP_R_WRONG_CODE);
	assert_int_equal(sotp_contract_unlock(f->ctx, "C-OTP", t, &d), SOTP_OK);
}

static void
test_engine_drift_learned(void **state)
{
	struct fx *f = *state;
	time_t t = T0 - (T0 % 30) + 6000;
	struct sotp_token_info ti;

	/* A phone one step fast: accepted, and the drift remembered ... */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 30, t), SOTP_R_ACCEPTED);
	assert_int_equal(sotp_token_get(f->ctx, "T-OTP", &ti), SOTP_OK);
	assert_int_equal(ti.drift, 1);
	/* ... so two steps ahead of the server now falls in the window. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 120, t + 60), SOTP_R_ACCEPTED);
	assert_int_equal(sotp_token_get(f->ctx, "T-OTP", &ti), SOTP_OK);
	assert_int_equal(ti.drift, 2);
	/* The drift is capped at max_drift (2): three ahead stays out. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 210, t + 90), SOTP_R_WRONG_CODE);
}

static void
test_engine_resync(void **state)
{
	struct fx *f = *state;
	time_t t = T0 - (T0 % 30) + 9000;
	struct sotp_token_info ti;
	struct sotp_decision d;
	char c1[16], c2[16];

	/* A token whose clock runs 10 steps (5 minutes) fast. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 300, t), SOTP_R_WRONG_CODE);
	oath(B32_A, t + 300, NULL, c1);
	oath(B32_A, t + 330, NULL, c2);
	/* Two codes that are not consecutive do not resync. */
	assert_int_equal(
	    sotp_token_resync(f->ctx, "T-OTP", c2, c1, t, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_WRONG_CODE);
	assert_int_equal(
	    sotp_token_resync(f->ctx, "T-NOPE", c1, c2, t, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_UNKNOWN_SERIAL);
	assert_int_equal(
	    sotp_token_resync(f->ctx, "T-OTP", c1, c2, t, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(sotp_token_get(f->ctx, "T-OTP", &ti), SOTP_OK);
	assert_int_equal(ti.drift, 11);
	/* Both codes are spent; the token's next codes work. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 330, t + 5), SOTP_R_REPLAYED);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 360, t + 30), SOTP_R_ACCEPTED);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 390, t + 60), SOTP_R_ACCEPTED);
	assert_int_equal(
	    sotp_token_resync(f->ctx, "T-OTP", c1, c2, t, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_REPLAYED);
}

static void
test_engine_one_token_per_contract(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	char code[16];

	/* C-OTP holds T-OTP: a second token is refused ... */
	oath(B32_E, T0, NULL, code);
	assert_int_equal(sotp_contract_bind(f->ctx, "C-OTP", "T-REG", code,
	                     SOTP_LOGIN_OTP, T0, &d),
	    SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_ALREADY_BOUND);
	/* ... and T-OTP cannot go to a second contract. */
	oath(B32_A, T0 + 7200, NULL, code);
	assert_int_equal(sotp_contract_bind(f->ctx, "C-NOTOKEN", "T-OTP", code,
	                     SOTP_LOGIN_OTP, T0 + 7200, &d),
	    SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_TOKEN_IN_USE);
	assert_int_equal(sotp_contract_bind(f->ctx, "C-NOTOKEN", "T-NOPE", code,
	                     SOTP_LOGIN_OTP, T0, &d),
	    SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_UNKNOWN_SERIAL);
	/* A wrong code binds nothing. */
	assert_int_equal(sotp_contract_bind(f->ctx, "C-NOTOKEN", "T-REG",
	                     "123456", SOTP_LOGIN_OTP, T0, &d),
	    SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_WRONG_CODE);
	expect_contract(f, "C-NOTOKEN", "", 0);
	/* Close refused while bound. */
	assert_int_equal(sotp_contract_close(f->ctx, "C-OTP", T0, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_STILL_BOUND);
	assert_int_equal(
	    sotp_contract_unbind(f->ctx, "C-NOTOKEN", T0, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_NOT_BOUND);
}

/* ---- challenge states (what RADIUS carries) ---- */

/* An exported state: octets, as RADIUS carries them. */
struct st {
	uint8_t b[SOTP_STATE_MAX];
	size_t n;
};

static void
challenge(struct fx *f, const char *id, time_t now, struct st *state)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	assert_int_equal(
	    sotp_attempt_begin(f->ctx, id, "login", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(d.ask, SOTP_F_OTP);
	assert_string_equal(d.prompt, "ワンタイムパスワード(半角数字)：");
	assert_false(d.echo);
	assert_int_equal(
	    sotp_attempt_export(a, state->b, sizeof(state->b), &state->n),
	    SOTP_OK);
	assert_true(state->n > 0 && state->n <= SOTP_STATE_MAX);
	sotp_attempt_free(a);
}

static int
answer(struct fx *f, const char *id, const char *context,
    const struct st *state, time_t now)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char code[16];

	oath(B32_A, now, NULL, code);
	assert_int_equal(sotp_attempt_resume(
	                     f->ctx, id, context, state->b, state->n, now, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	return d.reason;
}

static void
test_engine_state_tokens(void **state)
{
	struct fx *f = *state;
	struct st st, bad;
	time_t t = T0 + 20000;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	size_t i;

	/* The round trip works; the question survives the trip. */
	challenge(f, "C-OTP", t, &st);
	assert_int_equal(sotp_attempt_resume(
	                     f->ctx, "C-OTP", "login", st.b, st.n, t + 5, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(d.ask, SOTP_F_OTP);
	sotp_attempt_free(a);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 5), SOTP_R_ACCEPTED);
	/* Replayed. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 35), SOTP_R_STATE_REPLAYED);
	/* Tampered: one bit changed anywhere is refused. */
	challenge(f, "C-OTP", t + 100, &st);
	for (i = 0; i < st.n; i += 7) {
		bad = st;
		bad.b[i] ^= 0x10;
		if (answer(f, "C-OTP", "login", &bad, t + 100) !=
		    SOTP_R_STATE_INVALID)
			fail_msg("state with byte %zu changed not refused", i);
	}
	/* Cut short, one byte longer, empty, or text. */
	bad = st;
	bad.n--;
	assert_int_equal(
	    answer(f, "C-OTP", "login", &bad, t + 100), SOTP_R_STATE_INVALID);
	bad.n += 2;
	assert_int_equal(
	    answer(f, "C-OTP", "login", &bad, t + 100), SOTP_R_STATE_INVALID);
	bad.n = 0;
	assert_int_equal(
	    answer(f, "C-OTP", "login", &bad, t + 100), SOTP_R_STATE_INVALID);
	memcpy(bad.b, "zz", 2);
	bad.n = 2;
	assert_int_equal(
	    answer(f, "C-OTP", "login", &bad, t + 100), SOTP_R_STATE_INVALID);
	/* Another contract's or context's state. */
	assert_int_equal(
	    answer(f, "C-NONE", "login", &st, t + 100), SOTP_R_STATE_INVALID);
	assert_int_equal(answer(f, "C-OTP", "transaction", &st, t + 100),
	    SOTP_R_STATE_INVALID);
	/* Expired (lifetime 120 s). */
	assert_int_equal(answer(f, "C-OTP", "login", &st, t + 100 + 121),
	    SOTP_R_STATE_EXPIRED);
	/* And the untouched one still works inside its lifetime. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 130), SOTP_R_ACCEPTED);
}

/* One round of a registration over RADIUS: resume, answer, step, export. */
static void
reg_round(struct fx *f, const char *id, struct st *st, const char *value,
    time_t now, struct sotp_decision *d)
{
	struct sotp_attempt *a = NULL;

	if (st->n == 0)
		assert_int_equal(
		    sotp_attempt_begin(f->ctx, id, "registration", now, &a),
		    SOTP_OK);
	else
		assert_int_equal(sotp_attempt_resume(f->ctx, id, "registration",
		                     st->b, st->n, now, &a),
		    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, value), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, d), SOTP_OK);
	st->n = 0;
	if (d->verdict == SOTP_CONTINUE)
		assert_int_equal(
		    sotp_attempt_export(a, st->b, sizeof(st->b), &st->n),
		    SOTP_OK);
	sotp_attempt_free(a);
}

/*
 * A registration one answer per round, the State carrying what was
 * verified: two contracts verify the same code for the same token; the
 * first to finish binds, the other's final compare-and-set finds the
 * token taken and binds nothing. A State is good once.
 */
static void
test_engine_registration_rounds(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	struct st a = {.n = 0}, b = {.n = 0}, used;
	struct input in = {
	    "pw-reg", GOOD_CODE, B32_E, NULL, NO_CARD, NULL, NULL, NULL};
	unsigned int asked;
	time_t t = T0 + 3 * DAY;
	char code[16], card[16];

	oath(B32_E, t, NULL, code);
	reg_round(f, "C-REG", &a, "pw-reg", t, &d);
	assert_int_equal(d.ask, SOTP_F_SERIAL);
	assert_true(d.echo);
	assert_string_equal(d.prompt, "シリアル番号(半角英数字)：");
	reg_round(f, "C-REG2", &b, "pw-reg2", t, &d);
	reg_round(f, "C-REG", &a, "T-REG", t + 5, &d);
	assert_int_equal(d.ask, SOTP_F_OTP);
	reg_round(f, "C-REG2", &b, "t reg", t + 5, &d);
	assert_int_equal(d.verdict, SOTP_REJECT); /* "treg", "TREG": none */
	assert_int_equal(d.reason, SOTP_R_UNKNOWN_SERIAL);
	b.n = 0;
	reg_round(f, "C-REG2", &b, "pw-reg2", t + 6, &d);
	reg_round(f, "C-REG2", &b, "T-REG", t + 6, &d);
	reg_round(f, "C-REG", &a, code, t + 10, &d);
	assert_int_equal(d.ask, SOTP_F_LOGIN_CHOICE);
	reg_round(f, "C-REG2", &b, code, t + 10, &d);
	assert_int_equal(d.ask, SOTP_F_LOGIN_CHOICE);
	reg_round(f, "C-REG", &a, "1", t + 15, &d);
	assert_int_equal(d.ask, SOTP_F_CARD);
	assert_false(d.echo);
	assert_non_null(strstr(d.prompt, "確認用パスワード表の"));
	reg_round(f, "C-REG2", &b, "3", t + 15, &d);
	assert_int_equal(d.ask, SOTP_F_CARD);
	card_answer(f->grid_reg2, d.card_cells, card);
	used = a;
	{
		struct sotp_attempt *x = NULL;
		struct sotp_decision q;

		/* The cells a's State holds, asked again without an answer. */
		assert_int_equal(sotp_attempt_resume(f->ctx, "C-REG",
		                     "registration", a.b, a.n, t + 20, &x),
		    SOTP_OK);
		assert_int_equal(sotp_attempt_step(x, &q), SOTP_OK);
		assert_int_equal(q.ask, SOTP_F_CARD);
		card_answer(f->grid_reg, q.card_cells, code);
		sotp_attempt_free(x);
	}
	reg_round(f, "C-REG", &a, code, t + 20, &d);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	expect_contract(f, "C-REG", "T-REG", 0);
	/* The same code, verified in C-REG2's earlier round: not twice. */
	reg_round(f, "C-REG2", &b, card, t + 25, &d);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_TOKEN_IN_USE);
	expect_contract(f, "C-REG2", "", 0);
	/* The last State again: used. */
	reg_round(f, "C-REG", &used, code, t + 30, &d);
	assert_int_equal(d.reason, SOTP_R_STATE_REPLAYED);
	/* The registering code is spent: it cannot be used again. */
	assert_int_equal(
	    verify_at(f, "C-REG", B32_E, t, t + 30), SOTP_R_REPLAYED);
	run(f, "C-REG", "login", t + 60, &in, &d, &asked);
	assert_int_equal(d.reason, SOTP_R_ACCEPTED);
}

/*
 * The token a registration chose is gone (deleted behind the engine's
 * back) when its last round binds: a refusal naming the serial, not an
 * error (make fuzz found bind_locked returning the lookup's NOT_FOUND).
 */
static void
test_engine_registration_token_gone(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	struct st a = {.n = 0};
	time_t t = T0 + 4 * DAY;
	char code[16], card[16];

	oath(B32_E, t, NULL, code);
	reg_round(f, "C-REG", &a, "pw-reg", t, &d);
	reg_round(f, "C-REG", &a, "T-REG", t + 5, &d);
	reg_round(f, "C-REG", &a, code, t + 10, &d);
	reg_round(f, "C-REG", &a, "1", t + 15, &d);
	assert_int_equal(d.ask, SOTP_F_CARD);
	card_answer(f->grid_reg, d.card_cells, card);
	raw_sql(f->dir, "DELETE FROM tokens WHERE serial = 'T-REG'");
	reg_round(f, "C-REG", &a, card, t + 20, &d);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_UNKNOWN_SERIAL);
	expect_contract(f, "C-REG", "", 0);
}

/*
 * A registration must fit max_rounds: the policy may not allow fewer
 * than it takes, and one more question than allowed is refused.
 */
static void
test_engine_registration_needs_its_rounds(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	struct input in = {
	    "pw-reg", GOOD_CODE, B32_E, NULL, GOOD_CARD, NULL, "T-REG", "1"};
	unsigned int asked;

	in.grid = f->grid_reg;
	/* The shipped policy's max_rounds (4) takes the whole of one. */
	assert_int_equal(f->ctx->pol.max_rounds, 4);
	f->ctx->pol.max_rounds = 3;
	run(f, "C-REG", "registration", T0 + DAY, &in, &d, &asked);
	assert_int_equal(d.reason, SOTP_R_TOO_MANY_ROUNDS);
	assert_int_equal(asked, PW | SER | OTP | CHO);
	expect_contract(f, "C-REG", "", 0);
	f->ctx->pol.max_rounds = 4;
	run(f, "C-REG", "registration", T0 + DAY + 60, &in, &d, &asked);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
}

/* Audit rows as text, one "action=A contract=C reason=R detail=D" a line. */
struct audit_rows {
	char text[8192];
	size_t len;
};

static int
audit_rows_cb(void *arg, const struct sotp_audit_row *r)
{
	struct audit_rows *a = arg;
	int n;

	n = snprintf(a->text + a->len, sizeof(a->text) - a->len,
	    "action=%s contract=%s reason=%s detail=%s\n", r->action,
	    r->contract, sotp_reason_name(r->reason), r->detail);
	if (n > 0 && (size_t)n < sizeof(a->text) - a->len)
		a->len += (size_t)n;
	return 0;
}

static void
audit_rows_of(struct fx *f, time_t since, struct audit_rows *rows)
{
	memset(rows, 0, sizeof(*rows));
	assert_int_equal(sotp_audit_list(f->ctx, NULL, (int64_t)since, 0,
	                     audit_rows_cb, rows),
	    SOTP_OK);
}

/* One attempt begun through the [services] map; its first decision. */
static int
by_service(struct fx *f, const char *id, const char *service, time_t now,
    const char *answer, struct sotp_decision *d)
{
	struct sotp_attempt *a = NULL;

	assert_int_equal(
	    sotp_attempt_begin_service(f->ctx, id, service, now, &a), SOTP_OK);
	if (answer != NULL)
		assert_int_equal(sotp_attempt_answer(a, answer), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, d), SOTP_OK);
	sotp_attempt_free(a);
	return d->reason;
}

/*
 * The [services] map is the core's: a mapped service runs in its context;
 * one the map does not name is refused as a decision (UNKNOWN_CONTEXT,
 * the customer told, a row naming the service, escaped and cut when odd),
 * on a resumed request too, without reading or spending its state.
 */
static void
test_engine_unmapped_service(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct audit_rows rows;
	struct st st;
	char odd[200];
	time_t t = T0 + 30000;

	/* Mapped: ib-mobile -> mobile, the password alone. */
	assert_int_equal(by_service(f, "C-OTP", "ib-mobile", t, "pw-otp", &d),
	    SOTP_R_ACCEPTED);
	assert_int_equal(
	    sotp_attempt_begin_service(f->ctx, "C-OTP", "ib-transfer", t, &a),
	    SOTP_OK);
	assert_string_equal(sotp_attempt_context(a), "transaction");
	sotp_attempt_free(a);
	/* Unmapped, none, empty: refused, told, nothing asked. */
	assert_int_equal(by_service(f, "C-OTP", "sshd-x", t, "pw-otp", &d),
	    SOTP_R_UNKNOWN_CONTEXT);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.ask, 0);
	assert_string_equal(d.message, "このサービスはご利用いただけません。");
	assert_int_equal(
	    by_service(f, "C-OTP", NULL, t, NULL, &d), SOTP_R_UNKNOWN_CONTEXT);
	assert_int_equal(
	    by_service(f, "C-OTP", "", t, NULL, &d), SOTP_R_UNKNOWN_CONTEXT);
	/* A name from outside: blank, quote, backslash, control, UTF-8, long.
	 */
	snprintf(odd, sizeof(odd), "a b\"c\\d\001\xe3\x81\x82%0150d", 7);
	assert_int_equal(
	    by_service(f, "C-OTP", odd, t, NULL, &d), SOTP_R_UNKNOWN_CONTEXT);
	assert_int_equal(
	    sotp_attempt_begin_service(f->ctx, "C-OTP", odd, t, &a), SOTP_OK);
	assert_string_equal(sotp_attempt_context(a), "");
	sotp_attempt_free(a);
	/* A state beside an unmapped service is neither read nor spent. */
	challenge(f, "C-OTP", t + 60, &st);
	assert_int_equal(sotp_attempt_resume_service(
	                     f->ctx, "C-OTP", "sshd-x", st.b, st.n, t + 65, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_UNKNOWN_CONTEXT);
	sotp_attempt_free(a);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 65), SOTP_R_ACCEPTED);
	/* Mapped on resume: the state's own context, checked as ever. */
	challenge(f, "C-OTP", t + 120, &st);
	assert_int_equal(sotp_attempt_resume_service(f->ctx, "C-OTP",
	                     "ib-transfer", st.b, st.n, t + 125, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_STATE_INVALID);
	sotp_attempt_free(a);
	/* The rows, each naming what it was given. */
	audit_rows_of(f, t, &rows);
	assert_non_null(strstr(rows.text,
	    "contract=C-OTP reason=UNKNOWN_CONTEXT detail=service=sshd-x has "
	    "no context in [services]\n"));
	assert_non_null(strstr(rows.text,
	    "reason=UNKNOWN_CONTEXT detail=no service name to map through "
	    "[services]\n"));
	assert_non_null(strstr(rows.text,
	    "reason=UNKNOWN_CONTEXT detail=service=a\\x20b\\x22c\\x5cd"
	    "\\x01\\xe3\\x81\\x82" /* 32 characters, then 32 more */
	    "00000000000000000000000000000000... has no context in "
	    "[services]\n"));
	/* Not counted toward the lockout. */
	expect_contract(f, "C-OTP", "T-OTP", 0);
	/* Errors as sotp_attempt_begin's. */
	assert_int_equal(sotp_attempt_begin_service(f->ctx, NULL, "x", t, &a),
	    SOTP_ERR_INVALID_ARG);
	assert_null(a);
	assert_int_equal(
	    sotp_attempt_resume_service(NULL, "C-OTP", "x", NULL, 0, t, &a),
	    SOTP_ERR_INVALID_ARG);
	assert_string_equal(sotp_attempt_context(NULL), "");
}

/* What a customer types is normalized; malformed is refused, uncounted. */
static void
test_engine_forgiving_input(void **state)
{
	struct fx *f = *state;
	static const char *const fw[] = {
	    "０", "１", "２", "３", "４", "５", "６", "７", "８", "９"};
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct audit_rows rows;
	const char *p;
	char code[16], typed[64];
	time_t t = T0 - (T0 % 30) + 4 * DAY;
	size_t i;

	/* "123 456", as authenticator apps show it. */
	oath(B32_A, t, NULL, code);
	snprintf(typed, sizeof(typed), "%.3s %s", code, code + 3);
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "transaction", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, typed), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_ACCEPTED);
	sotp_attempt_free(a);
	/* Full-width digits, from an input method left in that mode. */
	oath(B32_A, t + 30, NULL, code);
	typed[0] = '\0';
	for (i = 0; code[i] != '\0'; i++)
		strcat(typed, fw[code[i] - '0']);
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "transaction", t + 30, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, typed), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_ACCEPTED);
	sotp_attempt_free(a);
	/* Letters, or the wrong length: malformed, and not a failure. */
	for (i = 0; i < 3; i++) {
		assert_int_equal(sotp_attempt_begin(f->ctx, "C-OTP",
		                     "transaction", t + 60, &a),
		    SOTP_OK);
		assert_int_equal(sotp_attempt_answer(a,
		                     i == 0       ? "12a456"
		                         : i == 1 ? "12345"
		                                  : "1234567"),
		    SOTP_OK);
		assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
		assert_int_equal(d.reason, SOTP_R_BAD_INPUT);
		/* The decision names the input, as the row does. */
		assert_int_equal(d.malformed, SOTP_F_OTP);
		assert_string_equal(sotp_decision_malformed(&d), "otp");
		assert_string_equal(d.message,
		    "入力の形式が正しくありません。桁数をご確認のうえ、最初からやり直してください。");
		sotp_attempt_free(a);
	}
	expect_contract(f, "C-OTP", "T-OTP", 0);
	/* Each row names the input that was malformed. */
	audit_rows_of(f, t + 60, &rows);
	for (i = 0, p = rows.text;
	     (p = strstr(p, "reason=BAD_INPUT detail=malformed=otp\n")) != NULL;
	     p++)
		i++;
	assert_int_equal(i, 3);
}

/* One value from a client that cannot answer challenges (append mode). */
static int
append(struct fx *f, const char *id, const char *context, const char *value,
    time_t now, struct sotp_decision *d)
{
	struct sotp_attempt *a = NULL;

	assert_int_equal(
	    sotp_attempt_begin(f->ctx, id, context, now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_set_combined(a, value), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, d), SOTP_OK);
	sotp_attempt_free(a);
	return d->reason;
}

static void
test_engine_append_mode_decides(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	char code[16], value[64];
	time_t t = T0 - (T0 % 30) + 5 * DAY;

	/* A code-only context takes the code alone. */
	oath(B32_A, t, NULL, code);
	assert_int_equal(
	    append(f, "C-OTP", "transaction", code, t, &d), SOTP_R_ACCEPTED);
	/* A password context: the password followed by the code. */
	oath(B32_A, t + 30, NULL, code);
	snprintf(value, sizeof(value), "pw-otp%s", code);
	assert_int_equal(
	    append(f, "C-OTP", "login", value, t + 30, &d), SOTP_R_ACCEPTED);
	/* 8 digits for a token of 8. */
	oath(B32_C, t, "--totp=sha256 -d 8", code);
	assert_int_equal(
	    append(f, "C-NONE", "transaction", code, t, &d), SOTP_R_ACCEPTED);
	/* The code alone where a password comes first: never guessed. */
	oath(B32_A, t + 60, NULL, code);
	assert_int_equal(append(f, "C-OTP", "login", code, t + 60, &d),
	    SOTP_R_AMBIGUOUS_INPUT);
	assert_string_equal(d.message,
	    "ログインパスワードに続けて、ワンタイムパスワード(半角数字)を入力してください。");
	snprintf(value, sizeof(value), "pw-otp%.5s", code);
	assert_int_equal(append(f, "C-OTP", "login", value, t + 60, &d),
	    SOTP_R_AMBIGUOUS_INPUT);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	/* That code was never spent: it still logs in, split once. */
	snprintf(value, sizeof(value), "pw-otp%s", code);
	assert_int_equal(
	    append(f, "C-OTP", "login", value, t + 60, &d), SOTP_R_ACCEPTED);
	/* A wrong password before a right code is a wrong password. */
	oath(B32_A, t + 90, NULL, code);
	snprintf(value, sizeof(value), "pw-ot%s", code);
	assert_int_equal(append(f, "C-OTP", "login", value, t + 90, &d),
	    SOTP_R_WRONG_PASSWORD);
	expect_contract(f, "C-OTP", "T-OTP", 1);
	/* A password-only context: the whole value is the password. */
	assert_int_equal(append(f, "C-OTP", "mobile", "pw-otp", t + 90, &d),
	    SOTP_R_ACCEPTED);
	/* The card still needs its cells shown: a question, not a guess. */
	assert_int_equal(
	    append(f, "C-CARD", "login", "pw-card", t, &d), SOTP_R_CONTINUE);
	assert_int_equal(d.ask, SOTP_F_CARD);
}

/*
 * A forged state with an all-zero MAC must not pass when the state MAC
 * cannot be computed: make every HMAC fetch fail, as a broken or
 * restricted OpenSSL would.
 */
static void
test_engine_state_mac_failure_refuses(void **state)
{
	struct fx *f = *state;
	struct st st;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t t = T0 + 20000;

	challenge(f, "C-OTP", t, &st);
	/* The MAC is the last 16 bytes. */
	memset(st.b + st.n - 16, 0, 16);
	assert_int_equal(
	    EVP_set_default_properties(NULL, "provider=sotp-none"), 1);
	assert_int_equal(sotp_attempt_resume(
	                     f->ctx, "C-OTP", "login", st.b, st.n, t + 5, &a),
	    SOTP_OK);
	assert_int_equal(EVP_set_default_properties(NULL, ""), 1);
	/* Refused as the failure it is (unverifiable_is_a_failure). */
	assert_int_not_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_INTERNAL);
	sotp_attempt_free(a);
}

/* ---- lockout against parallel guesses ---- */

/*
 * Another process locks the contract after this attempt has read it but
 * before this attempt takes the store's write lock: an SQLite trace hook
 * on the engine's own connection does that at its BEGIN IMMEDIATE.
 */
static struct {
	char path[160];
	int armed;
	int fired;
} race;

static int
race_trace(unsigned int type, void *arg, void *p, void *x)
{
	sqlite3 *db = NULL;
	const char *sql = sqlite3_sql(p);

	(void)arg;
	(void)x;
	if (type != SQLITE_TRACE_STMT || !race.armed || sql == NULL ||
	    strcmp(sql, "BEGIN IMMEDIATE") != 0)
		return 0;
	race.armed = 0;
	if (sqlite3_open_v2(race.path, &db, SQLITE_OPEN_READWRITE, NULL) ==
	        SQLITE_OK &&
	    sqlite3_exec(db,
	        "UPDATE contracts SET failures = 5, locked_until = -1"
	        " WHERE id = 'C-OTP'",
	        NULL, NULL, NULL) == SQLITE_OK)
		race.fired = 1;
	sqlite3_close(db);
	return 0;
}

static int
race_hook(sqlite3 *db, char **err, const void *api)
{
	(void)err;
	(void)api;
	sqlite3_trace_v2(db, SQLITE_TRACE_STMT, race_trace, NULL);
	return SQLITE_OK;
}

static void
test_engine_lock_rechecked_under_write_lock(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t t = T0 + 30000;
	char code[16];

	snprintf(race.path, sizeof(race.path), "%s/shinkin-otp.db", f->dir);
	race.armed = race.fired = 0;
	assert_int_equal(
	    sqlite3_auto_extension((void (*)(void))race_hook), SQLITE_OK);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	sqlite3_cancel_auto_extension((void (*)(void))race_hook);

	oath(B32_A, t, NULL, code);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", t, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_set(a, SOTP_F_OTP, code), SOTP_OK);
	race.armed = 1;
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_true(race.fired);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_LOCKED);
	assert_true(d.locked);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
}

/*
 * The same for a context that checks the password alone (mobile): the
 * contract is locked (by parallel wrong guesses, or an admin) after this
 * attempt read it, while its password was being checked. The accept must
 * look again under the write lock too, or every guess in flight when the
 * lockout lands outruns it, and a right one is let in to a locked
 * contract.
 */
static void
test_engine_password_only_rechecked_under_write_lock(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t t = T0 + 31000;

	snprintf(race.path, sizeof(race.path), "%s/shinkin-otp.db", f->dir);
	race.armed = race.fired = 0;
	assert_int_equal(
	    sqlite3_auto_extension((void (*)(void))race_hook), SQLITE_OK);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	sqlite3_cancel_auto_extension((void (*)(void))race_hook);

	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "mobile", t, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-otp"), SOTP_OK);
	race.armed = 1;
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_true(race.fired);
	if (d.verdict != SOTP_REJECT || d.reason != SOTP_R_LOCKED)
		fail_msg("a contract locked under the write lock: verdict %d,"
		         " reason %s",
		    (int)d.verdict, sotp_reason_name((int)d.reason));
	assert_true(d.locked);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
}

/* A resumed state handed on again keeps its id and expiry: one use. */
static void
test_engine_state_reexport_is_the_same_state(void **state)
{
	struct fx *f = *state;
	struct st st, again;
	time_t t = T0 + 30000;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	challenge(f, "C-OTP", t, &st);
	assert_int_equal(sotp_attempt_resume(
	                     f->ctx, "C-OTP", "login", st.b, st.n, t + 100, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(
	    sotp_attempt_export(a, again.b, sizeof(again.b), &again.n),
	    SOTP_OK);
	sotp_attempt_free(a);
	assert_int_equal(again.n, st.n);
	assert_memory_equal(again.b, st.b, st.n);
	/* Still bound to the first expiry, and good once between the two. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", &again, t + 121), SOTP_R_STATE_EXPIRED);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 110), SOTP_R_ACCEPTED);
	assert_int_equal(answer(f, "C-OTP", "login", &again, t + 110),
	    SOTP_R_STATE_REPLAYED);
}

/*
 * A State carries the password as checked: after the bank changes it
 * (contract passwd), a State issued before is refused as a bad State,
 * the code right (it was accepted for its lifetime: whoever knew the old
 * password finished the login). A passwd to the same password does it
 * too (a fresh salt). A State that carries no password is good across.
 */
/* The failure count a contract has in the store. */
static unsigned int
failures_of(struct fx *f, const char *id)
{
	struct sotp_contract_rec c;
	unsigned int n;

	assert_int_equal(sotp_store_contract_get(f->ctx->st, id, &c), SOTP_OK);
	n = c.failures;
	sotp_wipe(&c, sizeof(c));
	return n;
}

static void
test_engine_state_refused_after_passwd(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct st st, tx;
	time_t t = T0 + 31000;
	char big[SOTP_INPUT_MAX + 2];
	int i;

	challenge(f, "C-OTP", t, &st);
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "transaction", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(
	    sotp_attempt_export(a, tx.b, sizeof(tx.b), &tx.n), SOTP_OK);
	sotp_attempt_free(a);
	assert_int_equal(
	    sotp_contract_passwd(f->ctx, "C-OTP", "pw-otp", t + 1, &d),
	    SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	/*
	 * With an answer malformed past reading (over 1024 bytes, or one an
	 * adapter calls malformed): the State is what is wrong, and is not
	 * spent by the refusal (nothing is, for a bad State).
	 */
	memset(big, '7', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (i = 0; i < 2; i++) {
		assert_int_equal(sotp_attempt_resume(f->ctx, "C-OTP", "login",
		                     st.b, st.n, t + 3, &a),
		    SOTP_OK);
		if (i == 0)
			assert_int_equal(sotp_attempt_answer(a, big), SOTP_OK);
		else
			assert_int_equal(
			    sotp_attempt_malformed(a, "a NUL in User-Password"),
			    SOTP_OK);
		assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
		sotp_attempt_free(a);
		assert_int_equal(d.reason, SOTP_R_STATE_INVALID);
		assert_int_equal(d.malformed, 0);
	}
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 5), SOTP_R_STATE_INVALID);
	/* Refused as a bad State is: not counted toward the lockout. */
	assert_int_equal(failures_of(f, "C-OTP"), 0);
	assert_int_equal(
	    answer(f, "C-OTP", "transaction", &tx, t + 5), SOTP_R_ACCEPTED);
	/* The password as it is now: a new State, good. */
	challenge(f, "C-OTP", t + 40, &st);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 45), SOTP_R_ACCEPTED);
}

/*
 * The clock steps back between the challenge and its answer (an NTP step,
 * a VM restored from a snapshot). The used-state mark must still stand
 * for as long as the state itself is valid: a second use needs no
 * password, only a current code.
 */
static void
test_engine_state_once_after_clock_step_back(void **state)
{
	struct fx *f = *state;
	struct st st;
	time_t t = T0 + 40000; /* the state is valid until t + 120 */

	challenge(f, "C-OTP", t, &st);
	/* The clock steps back 100 s; the state is answered then. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t - 100), SOTP_R_ACCEPTED);
	/* Still inside the state's life, 150 s (5 codes) later. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 50), SOTP_R_STATE_REPLAYED);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 119), SOTP_R_STATE_REPLAYED);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 120), SOTP_R_STATE_EXPIRED);
}

/*
 * Two servers share one store; B's clock runs an hour ahead. When B
 * purges the used-state marks by its own clock, a state that A (on time)
 * still holds valid must not become usable again on A.
 */
static void
test_engine_state_once_across_skewed_servers(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *b = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct st st, stb;
	time_t t = T0 + 50000, tb = t + 3600;

	assert_int_equal(sotp_ctx_new(&b), SOTP_OK);
	assert_int_equal(sotp_ctx_load(b, f->conf), SOTP_OK);
	challenge(f, "C-OTP", t, &st);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 5), SOTP_R_ACCEPTED);
	/* B, an hour ahead, uses a state of its own: marks are purged. */
	assert_int_equal(
	    sotp_attempt_begin(b, "C-OTP", "login", tb, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(
	    sotp_attempt_export(a, stb.b, sizeof(stb.b), &stb.n), SOTP_OK);
	sotp_attempt_free(a);
	assert_int_equal(
	    sotp_attempt_resume(b, "C-OTP", "login", stb.b, stb.n, tb + 1, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "000000"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_WRONG_CODE);
	sotp_attempt_free(a);
	sotp_ctx_free(b);
	/* Back on A, inside the first state's life: still used. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 60), SOTP_R_STATE_REPLAYED);
	/* A new state on A is not affected. */
	challenge(f, "C-OTP", t + 61, &st);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 65), SOTP_R_ACCEPTED);
}

/*
 * Signs st's body (all but its MAC) as engine_state.c does, under the
 * key version the body names (versions 3 and 4; version 2 is version
 * 0's).
 */
static void
resign(struct fx *f, struct st *st, const char *id, const char *context)
{
	uint8_t buf[SOTP_STATE_MAX + SOTP_ID_MAX + SOTP_NAME_MAX], mac[32];
	size_t body = st->n - 16, cl = strlen(id), xl = strlen(context);
	uint32_t kv = 0;

	if (st->b[0] != 2)
		kv = (uint32_t)st->b[1] << 24 | (uint32_t)st->b[2] << 16 |
		    (uint32_t)st->b[3] << 8 | st->b[4];
	memcpy(buf, st->b, body);
	memcpy(buf + body, id, cl + 1);
	memcpy(buf + body + cl + 1, context, xl);
	assert_int_equal(
	    sotp_keys_state_mac(f->ctx, kv, buf, body + cl + 1 + xl, mac),
	    SOTP_OK);
	memcpy(st->b + body, mac, 16);
}

/*
 * Where the fields of a version 3 state are (engine_state.c): a store
 * made by init has key version 1, so its States name it. Version 4 (the
 * password done) has them at the same places, its password tag after
 * the serial.
 */
#define ST_DONE (1 + 4 + 16 + 8 + 1)
#define ST_ASKED (ST_DONE + 1)
#define ST_STEP (ST_DONE + 3 + SOTP_MAX_CELLS + 1 + 4)
#define ST_SERIAL_LEN (ST_STEP + 8)

/* Resumes a forged state and answers; the reason of the step. */
static int
forged_reason(struct fx *f, const struct st *st, const char *id,
    const char *context, const char *value, time_t now)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	assert_int_equal(
	    sotp_attempt_resume(f->ctx, id, context, st->b, st->n, now, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, value), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	return d.verdict == SOTP_ACCEPT ? -1 : (int)d.reason;
}

/*
 * A state whose body claims a factor verified without what that
 * verification yields. The engine writes only the password as done in
 * a login, and in a registration the serial with its token, the code
 * with its step; a body saying otherwise (signed, as only a server can)
 * is refused as invalid, not acted on: fuzz_state found such a body
 * skipping the card check with no card answer.
 */
static void
test_engine_state_body_checked(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct st st, bad, reg = {.n = 0};
	time_t t = T0 + 60000;
	size_t k;
	int r;
	const struct {
		size_t at;
		uint8_t val;
	} forged[] = {
	    {ST_DONE, SOTP_F_PASSWORD | SOTP_F_CARD},
	    {ST_DONE, SOTP_F_PASSWORD | SOTP_F_OTP},
	    {ST_DONE, SOTP_F_PASSWORD | SOTP_F_SERIAL | SOTP_F_OTP},
	    {ST_DONE, 0x80},
	    {ST_ASKED, 0x40},
	};

	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-CARD", "login", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "pw-card"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.ask, SOTP_F_CARD);
	assert_int_equal(
	    sotp_attempt_export(a, st.b, sizeof(st.b), &st.n), SOTP_OK);
	sotp_attempt_free(a);
	for (k = 0; k < sizeof(forged) / sizeof(forged[0]); k++) {
		bad = st;
		bad.b[forged[k].at] = forged[k].val;
		resign(f, &bad, "C-CARD", "login");
		r = forged_reason(f, &bad, "C-CARD", "login", "12", t + 5);
		if (r != SOTP_R_STATE_INVALID)
			fail_msg("forged byte %zu = %#x: %s", forged[k].at,
			    forged[k].val,
			    r < 0 ? "ACCEPTED" : sotp_reason_name(r));
	}
	/* A registration at its code: serial done, with the serial. */
	reg_round(f, "C-REG", &reg, "pw-reg", t, &d);
	reg_round(f, "C-REG", &reg, "T-REG", t + 1, &d);
	assert_int_equal(d.ask, SOTP_F_OTP);
	/* The serial claimed done, but none carried (then the tag, the MAC). */
	bad = reg;
	assert_int_equal(bad.b[0], 4);
	bad.b[ST_SERIAL_LEN] = 0;
	memmove(bad.b + ST_SERIAL_LEN + 1, reg.b + reg.n - 32, 16);
	bad.n = ST_SERIAL_LEN + 1 + 16 + 16;
	resign(f, &bad, "C-REG", "registration");
	assert_int_equal(
	    forged_reason(f, &bad, "C-REG", "registration", "123456", t + 2),
	    SOTP_R_STATE_INVALID);
	/* The code claimed done with no step. */
	bad = reg;
	bad.b[ST_DONE] |= SOTP_F_OTP;
	resign(f, &bad, "C-REG", "registration");
	assert_int_equal(
	    forged_reason(f, &bad, "C-REG", "registration", "yes", t + 2),
	    SOTP_R_STATE_INVALID);
	/* The genuine states still work. */
	assert_int_equal(sotp_attempt_resume(
	                     f->ctx, "C-CARD", "login", st.b, st.n, t + 5, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(d.ask, SOTP_F_CARD);
	sotp_attempt_free(a);
	assert_int_equal(sotp_attempt_resume(f->ctx, "C-REG", "registration",
	                     reg.b, reg.n, t + 2, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.ask, SOTP_F_OTP);
	sotp_attempt_free(a);
}

/*
 * The layouts across an upgrade (engine_state.c): a State with the
 * password done is version 4, its tag checked; one without is version 3
 * as before. A version 3 State with the password done, as an older build
 * writes it, is still taken. Signed bodies that break the rules are not:
 * a version 4 without the password, a tag that is not the password's.
 */
static void
test_engine_state_layout_versions(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct st st, tx, bad;
	time_t t = T0 + 61000;

	/* An older build's State: version 3, no tag, the password done. */
	challenge(f, "C-OTP", t, &st);
	assert_int_equal(st.b[0], 4);
	bad = st;
	bad.b[0] = 3;
	memmove(bad.b + st.n - 32, st.b + st.n - 16, 16);
	bad.n = st.n - 16;
	resign(f, &bad, "C-OTP", "login");
	assert_int_equal(
	    answer(f, "C-OTP", "login", &bad, t + 5), SOTP_R_ACCEPTED);
	/* A tag that is not the password's, under a good MAC. */
	challenge(f, "C-OTP", t + 40, &st);
	bad = st;
	bad.b[st.n - 17] ^= 1;
	resign(f, &bad, "C-OTP", "login");
	assert_int_equal(
	    forged_reason(f, &bad, "C-OTP", "login", "000000", t + 45),
	    SOTP_R_STATE_INVALID);
	assert_int_equal(
	    answer(f, "C-OTP", "login", &st, t + 45), SOTP_R_ACCEPTED);
	/* No password done: version 3, and never version 4. */
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "transaction", t + 80, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(
	    sotp_attempt_export(a, tx.b, sizeof(tx.b), &tx.n), SOTP_OK);
	sotp_attempt_free(a);
	assert_int_equal(tx.b[0], 3);
	bad = tx;
	bad.b[0] = 4;
	memmove(bad.b + tx.n, tx.b + tx.n - 16, 16);
	memset(bad.b + tx.n - 16, 0, 16);
	bad.n = tx.n + 16;
	resign(f, &bad, "C-OTP", "transaction");
	assert_int_equal(
	    forged_reason(f, &bad, "C-OTP", "transaction", "000000", t + 85),
	    SOTP_R_STATE_INVALID);
	assert_int_equal(
	    answer(f, "C-OTP", "transaction", &tx, t + 85), SOTP_R_ACCEPTED);
}

/* ---- issue 12, defect 2: an unknown contract tells nothing ---- */

/*
 * An input over 1024 bytes, or one a front end could not take
 * (sotp_attempt_malformed), is a refusal the engine decides, audited and
 * told like a malformed code, and not counted. It used to be an API error
 * of sotp_attempt_answer: the front end ended the attempt with no row, no
 * message for the customer and an empty reason in its log (a login whose
 * password had passed left only its "continue" row).
 */
static void
test_engine_overlong_input_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct audit_rows rows;
	static const char over[] =
	    "contract=C-OTP reason=BAD_INPUT detail=input over 1024 bytes";
	const char *p;
	char big[1026];
	time_t t = T0 - (T0 % 30) + 6 * DAY;
	int i;

	memset(big, '7', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (i = 0; i < 3; i++) {
		assert_int_equal(sotp_attempt_begin(f->ctx, "C-OTP",
		                     i == 0 ? "transaction" : "login", t, &a),
		    SOTP_OK);
		if (i == 0)
			assert_int_equal(sotp_attempt_answer(a, big), SOTP_OK);
		else if (i == 1)
			assert_int_equal(
			    sotp_attempt_set_combined(a, big), SOTP_OK);
		else
			assert_int_equal(
			    sotp_attempt_set(a, SOTP_F_OTP, big), SOTP_OK);
		assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
		assert_int_equal(d.verdict, SOTP_REJECT);
		assert_int_equal(d.reason, SOTP_R_BAD_INPUT);
		/*
		 * Named when known: the input set by name; not a first
		 * answer (no question asked yet), nor a password and code
		 * in one value.
		 */
		assert_int_equal(d.malformed, i == 2 ? SOTP_F_OTP : 0);
		assert_string_equal(d.message,
		    "入力の形式が正しくありません。桁数をご確認のうえ、最初からやり直してください。");
		sotp_attempt_free(a);
	}
	/* After the password passed: the code's round is refused too. */
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "login", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(sotp_attempt_answer(a, big), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_BAD_INPUT);
	assert_int_equal(d.malformed, SOTP_F_OTP); /* the question asked */
	sotp_attempt_free(a);
	/* 1024 bytes are kept: only a wrong password. */
	big[1024] = '\0';
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "login", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, big), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_WRONG_PASSWORD);
	sotp_attempt_free(a);
	/* What a front end could not take: refused with its own words. */
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "login", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_malformed(a, ""), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_attempt_answer(a, "pw-otp"), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_malformed(a, "State appears 2 times"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_BAD_INPUT);
	assert_int_equal(d.malformed, 0); /* the request, not one input */
	assert_null(sotp_decision_malformed(&d));
	sotp_attempt_free(a);
	/* A row for each refusal, naming the contract and the cause. */
	audit_rows_of(f, t, &rows);
	for (i = 0, p = rows.text; (p = strstr(p, over)) != NULL; p++)
		i++;
	assert_int_equal(i, 4);
	assert_non_null(strstr(rows.text,
	    "contract=C-OTP reason=BAD_INPUT detail=State appears 2 times\n"));
	assert_non_null(strstr(rows.text, "reason=WRONG_PASSWORD"));
	/* Refusals of the form do not count; the wrong password does. */
	expect_contract(f, "C-OTP", "T-OTP", 1);
}

/*
 * A State is good once, whatever its answer: one refused as malformed
 * (over 1024 bytes, or a request the front end could not take whole)
 * is spent as one refused for a short code is, so that the right answer
 * cannot follow on the same State. The customer was told to start again.
 */
static void
test_engine_state_spent_by_malformed_answer(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct st st;
	char big[1026];
	time_t t = T0 + 40000;
	int i;

	memset(big, '7', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (i = 0; i < 3; i++) {
		challenge(f, "C-OTP", t + 100 * i, &st);
		assert_int_equal(sotp_attempt_resume(f->ctx, "C-OTP", "login",
		                     st.b, st.n, t + 100 * i + 1, &a),
		    SOTP_OK);
		if (i == 0)
			assert_int_equal(sotp_attempt_answer(a, big), SOTP_OK);
		else if (i == 1)
			assert_int_equal(
			    sotp_attempt_answer(a, "12a"), SOTP_OK);
		else
			assert_int_equal(sotp_attempt_malformed(
			                     a, "User-Password holds a NUL"),
			    SOTP_OK);
		assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
		assert_int_equal(d.verdict, SOTP_REJECT);
		assert_int_equal(d.reason, SOTP_R_BAD_INPUT);
		sotp_attempt_free(a);
		if (answer(f, "C-OTP", "login", &st, t + 100 * i + 2) !=
		    SOTP_R_STATE_REPLAYED)
			fail_msg("a State refused as malformed (%d) was used "
			         "again",
			    i);
	}
	/* Malformed answers are no guesses: nothing counted. */
	expect_contract(f, "C-OTP", "T-OTP", 0);
}

/* Appends n bytes of sql and sep to buf[bufsz] at *len, if they fit. */
static void
trail_append(
    char *buf, size_t bufsz, size_t *len, const char *sql, size_t n, char sep)
{
	if (*len + n + 2 < bufsz) {
		memcpy(buf + *len, sql, n);
		*len += n;
		buf[(*len)++] = sep;
		buf[*len] = '\0';
	}
}

/* The SQL a context's connection runs, one statement a line. */
static struct {
	char sql[16384];
	size_t len;
} trail;

static void
trail_add(void *arg, const char *sql)
{
	(void)arg;
	trail_append(
	    trail.sql, sizeof(trail.sql), &trail.len, sql, strlen(sql), '\n');
}

static int
trail_trace(unsigned int type, void *arg, void *p, void *x)
{
	const char *sql = sqlite3_sql(p);

	(void)x;
	if (type == SQLITE_TRACE_STMT && sql != NULL)
		trail_add(arg, sql);
	return 0;
}

static int
trail_hook(sqlite3 *db, char **err, const void *api)
{
	(void)err;
	(void)api;
	sqlite3_trace_v2(db, SQLITE_TRACE_STMT, trail_trace, NULL);
	return SQLITE_OK;
}

/*
 * One login as PAM runs it, on a context of its own (as PAM makes one
 * per call): what the customer was told, the SQL run (into out) and the
 * CPU time spent, in microseconds. The SQL as SQLite itself saw it run;
 * on PostgreSQL, as the store layer sent it.
 */
static long
traced_login(struct fx *f, const char *id, const char *pw, time_t now,
    struct sotp_decision *d, char *out, size_t outsz)
{
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct timespec t0, t1;

	trail.len = 0;
	trail.sql[0] = '\0';
	assert_int_equal(
	    sqlite3_auto_extension((void (*)(void))trail_hook), SQLITE_OK);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	sqlite3_cancel_auto_extension((void (*)(void))trail_hook);
	if (pg_url() != NULL)
		sotp_store_set_trace(ctx->st, trail_add, NULL);
	assert_int_equal(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0), 0);
	assert_int_equal(
	    sotp_attempt_begin(ctx, id, "login", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, d), SOTP_OK);
	assert_int_equal(d->verdict, SOTP_CONTINUE);
	assert_int_equal(d->ask, SOTP_F_PASSWORD);
	assert_int_equal(sotp_attempt_answer(a, pw), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, d), SOTP_OK);
	assert_int_equal(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1), 0);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
	if (strstr(trail.sql, "UPDATE contracts") == NULL)
		fail_msg(
		    "%s: no failure counted in the trail:\n%s", id, trail.sql);
	snprintf(out, outsz, "%s", trail.sql);
	return (long)(t1.tv_sec - t0.tv_sec) * 1000000L +
	    (t1.tv_nsec - t0.tv_nsec) / 1000;
}

/*
 * An unknown contract costs and reads what a wrong password does: the
 * same questions, the same reason and text, the same SQL statements in
 * the same order (the count of failures included), and a password hash
 * of the same cost (CPU time over many pairs within a factor of 2; before
 * the fix the unknown one took under a hundredth of the other). The
 * audit row alone tells them apart, without the unknown name.
 */
static void
test_engine_unknown_reads_as_wrong_password(void **state)
{
	struct fx *f = *state;
	struct sotp_decision dk, du;
	struct audit_rows rows;
	static char known[16384], unknown[16384];
	long cpu_k = 0, cpu_u = 0;
	time_t t = T0 + 70000;
	int i;

	for (i = 0; i < 8; i++) {
		cpu_k += traced_login(
		    f, "C-OTP", "not-it", t + i, &dk, known, sizeof(known));
		cpu_u += traced_login(f, "C-NOBODY", "not-it", t + i, &du,
		    unknown, sizeof(unknown));
		if (dk.verdict != du.verdict || dk.reason != du.reason ||
		    strcmp(dk.message, du.message) != 0 ||
		    dk.locked != du.locked)
			fail_msg(
			    "round %d: the wrong password got %s '%s', the "
			    "unknown contract %s '%s'",
			    i, sotp_reason_name(dk.reason), dk.message,
			    sotp_reason_name(du.reason), du.message);
		if (strcmp(known, unknown) != 0)
			fail_msg(
			    "round %d: the SQL differs\n-- wrong password:\n"
			    "%s-- unknown contract:\n%s",
			    i, known, unknown);
		/* Keep C-OTP below the lockout: a lock reads differently. */
		assert_int_equal(
		    sotp_contract_unlock(f->ctx, "C-OTP", t + i, &dk), SOTP_OK);
	}
	assert_int_equal(du.reason, SOTP_R_WRONG_PASSWORD);
	print_message("cpu: wrong password %ld us, unknown contract %ld us "
	              "(8 each)\n",
	    cpu_k, cpu_u);
	if (cpu_u * 2 < cpu_k || cpu_k * 2 < cpu_u)
		fail_msg("cpu: wrong password %ld us, unknown contract %ld us",
		    cpu_k, cpu_u);
	/* The row says what happened, and not the name. */
	audit_rows_of(f, t + 7, &rows);
	if (strstr(rows.text,
	        "reason=UNKNOWN_CONTRACT detail=as=WRONG_PASSWORD") == NULL ||
	    strstr(rows.text, "C-NOBODY") != NULL)
		fail_msg("audit rows: %s", rows.text);
}

/* unknown_contract = reveal: refused at once, as such. */
static void
test_engine_unknown_revealed(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char conf[160], cmd[512];

	snprintf(conf, sizeof(conf), "%s/reveal.conf", f->dir);
	snprintf(cmd, sizeof(cmd),
	    "sed 's/^unknown_contract = hide$/unknown_contract = reveal/' %s > %s",
	    f->conf, conf);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_OK);
	assert_int_equal(sotp_policy_hides_unknown(ctx), 0);
	assert_int_equal(sotp_policy_hides_unknown(f->ctx), 1);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-NOBODY", "login", T0, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_UNKNOWN_CONTRACT);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
}

/* ---- issue 12, defect 5: a locked store is waited for once ---- */

/* Log lines of a context, one a line. */
static struct {
	char text[4096];
	size_t len;
} logged;

static void
log_keep(void *arg, int prio, const char *fmt, va_list ap)
{
	int n;

	(void)arg;
	(void)prio;
	n = vsnprintf(logged.text + logged.len,
	    sizeof(logged.text) - logged.len - 1, fmt, ap);
	if (n > 0 && (size_t)n < sizeof(logged.text) - logged.len - 1) {
		logged.len += (size_t)n;
		logged.text[logged.len++] = '\n';
		logged.text[logged.len] = '\0';
	}
}

/*
 * A genuine State that this server cannot check (its MAC cannot be
 * computed: here no HMAC; on a farm, a key version it cannot fetch or
 * unwrap) is refused as the failure it is, its cause logged: not as
 * STATE_INVALID, which tells the customer their session is bad and the
 * auditors that someone forged one, and logs nothing an operator can fix.
 */
static void
test_engine_state_unverifiable_is_a_failure(void **state)
{
	struct fx *f = *state;
	struct st st;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t t = T0 + 21000;
	int rc;

	challenge(f, "C-OTP", t, &st);
	logged.len = 0;
	logged.text[0] = '\0';
	sotp_ctx_set_log(f->ctx, log_keep, NULL, 0);
	assert_int_equal(
	    EVP_set_default_properties(NULL, "provider=sotp-none"), 1);
	rc = sotp_attempt_resume(
	    f->ctx, "C-OTP", "login", st.b, st.n, t + 5, &a);
	assert_int_equal(EVP_set_default_properties(NULL, ""), 1);
	assert_int_equal(rc, SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "123456"), SOTP_OK);
	rc = sotp_attempt_step(a, &d);
	sotp_attempt_free(a);
	sotp_ctx_set_log(f->ctx, NULL, NULL, 0);
	assert_int_equal(d.verdict, SOTP_REJECT);
	if (d.reason != SOTP_R_INTERNAL || rc == SOTP_OK)
		fail_msg("an unverifiable State refused as %s (rc %s)",
		    sotp_reason_name(d.reason), sotp_rc_name(rc));
	if (strstr(logged.text, "the State cannot be checked") == NULL)
		fail_msg("no line for the failure:\n%s", logged.text);
	expect_contract(f, "C-OTP", "T-OTP", 0);
}

static struct {
	int on;
	int writes; /* statements that need the write lock, while held */
} held;

static int
held_trace(unsigned int type, void *arg, void *p, void *x)
{
	const char *sql = sqlite3_sql(p);

	(void)arg;
	(void)x;
	if (type == SQLITE_TRACE_STMT && held.on && sql != NULL &&
	    (strncmp(sql, "BEGIN IMMEDIATE", 15) == 0 ||
	        strncmp(sql, "INSERT", 6) == 0 ||
	        strncmp(sql, "UPDATE", 6) == 0))
		held.writes++;
	return 0;
}

static int
held_hook(sqlite3 *db, char **err, const void *api)
{
	(void)err;
	(void)api;
	sqlite3_trace_v2(db, SQLITE_TRACE_STMT, held_trace, NULL);
	return SQLITE_OK;
}

/*
 * Another process holds the store's write lock. A wrong password must
 * wait for it once, as long as the policy's [store] lock_timeout (1500 ms
 * here, not the shipped 1000), and not again for the refusal's audit row:
 * the old code waited twice, 5 s each. The count of write statements
 * started under the lock is the check (the store refuses a handle that
 * timed out until the next request), and the log line that stands for
 * the row the engine did not ask for; the time is printed, and only
 * bounded from below (a wait cannot end early).
 */
static void
test_engine_locked_store_waits_once(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct timespec t0, t1;
	sqlite3 *db = NULL;
	char conf[160], path[160];
	long ms;

	short_wait_conf(f, conf, sizeof(conf));
	assert_int_equal(
	    sqlite3_auto_extension((void (*)(void))held_hook), SQLITE_OK);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_OK);
	sqlite3_cancel_auto_extension((void (*)(void))held_hook);
	logged.len = 0;
	logged.text[0] = '\0';
	sotp_ctx_set_log(ctx, log_keep, NULL, 0);
	snprintf(path, sizeof(path), "%s/shinkin-otp.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", T0 + 80000, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "not-it"), SOTP_OK);
	held.on = 1;
	held.writes = 0;
	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &t0), 0);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &t1), 0);
	held.on = 0;
	ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000;
	print_message("waited %ld ms, %d write statements under the lock\n", ms,
	    held.writes);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_STORE_UNAVAILABLE);
	if (held.writes != 1)
		fail_msg("%d write statements waited for the lock (want 1)",
		    held.writes);
	if (ms < 1500)
		fail_msg("waited %ld ms, less than the policy's 1500", ms);
	/* The engine did not ask the store for the row at all. */
	if (strstr(logged.text,
	        "audit row not written: the store was unavailable") == NULL)
		fail_msg("the refusal's row was not logged instead:\n%s",
		    logged.text);
	sotp_attempt_free(a);
	assert_int_equal(
	    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	sotp_ctx_free(ctx);
}

/* From the next COMMIT on, every write of this process fails. */
static void
full_at_commit(void *arg, const char *sql)
{
	struct rlimit rl = {1, RLIM_INFINITY};

	(void)arg;
	if (strcmp(sql, "COMMIT") == 0)
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* A login's first step (the password) through a store that cannot commit. */
static int
login_full(struct fx *f, const char *pw, time_t now, struct sotp_decision *d)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	int rc;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	sotp_store_set_trace(ctx->st, full_at_commit, NULL);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_set(a, SOTP_F_PASSWORD, pw), SOTP_OK);
	rc = sotp_attempt_step(a, d);
	sotp_attempt_free(a);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	sotp_ctx_free(ctx);
	return rc;
}

/*
 * While the store cannot commit (a full disk: RLIMIT_FSIZE, a real write
 * error), a wrong password's failure count is lost with its COMMIT. It
 * must then read as what it is, a store failure, exactly as the right
 * password does (its question undone): not as WRONG_PASSWORD with
 * SOTP_OK, which left guesses uncounted, never locking, and told a wrong
 * password from the right one.
 */
static void
test_engine_uncommitted_guess_is_a_store_failure(void **state)
{
	struct fx *f = *state;
	struct sotp_decision wrong, right;
	int rc_wrong, rc_right;

	signal(SIGXFSZ, SIG_IGN);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	rc_wrong = login_full(f, "not-it", T0 + 81000, &wrong);
	rc_right = login_full(f, "pw-otp", T0 + 81000, &right);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	if (rc_wrong == SOTP_OK || wrong.reason != SOTP_R_STORE_UNAVAILABLE)
		fail_msg("an uncounted wrong password: rc %s, verdict %d,"
		         " reason %s",
		    sotp_rc_name(rc_wrong), (int)wrong.verdict,
		    sotp_reason_name((int)wrong.reason));
	assert_int_equal(wrong.verdict, SOTP_REJECT);
	assert_int_not_equal(rc_right, SOTP_OK);
	assert_int_equal(right.verdict, SOTP_REJECT);
	assert_int_equal(right.reason, SOTP_R_STORE_UNAVAILABLE);
	/* One reply for both. */
	assert_int_equal(rc_wrong, rc_right);
	assert_int_equal(wrong.locked, right.locked);
	assert_string_equal(wrong.message, right.message);
}

/* ---- a log line follows the commit of its row ---- */

/* "pw-otp" in sha512crypt: a hash that rehash = yes replaces. */
#define OLD_HASH_OTP                                                           \
	"$6$abcdefgh$H37FbmD2ms78nyzhnHqtbkBZswmcLfcntTnSmDGOID.cpbF6.mz1V5Q/" \
	"Ki35zJ80EkR48evuY2axcRUm.Rooi1"

/*
 * The next COMMIT of ctx's store fails, as a full disk or a check made
 * at commit makes it: on SQLite the file may grow no more from that
 * COMMIT on (full_at_commit), on PostgreSQL a deferred trigger on the
 * audit table raises at COMMIT. commit_works undoes it.
 */
static void
commit_fails(struct sotp_ctx *ctx)
{
	if (pg_url() != NULL) {
		pg_sql("CREATE FUNCTION sotp_test_late() RETURNS trigger"
		       " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION"
		       " 'refused at commit by the test'; END$$;"
		       " CREATE CONSTRAINT TRIGGER late_audit AFTER INSERT"
		       " ON audit DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
		       " EXECUTE FUNCTION sotp_test_late()",
		    NULL, 0);
		return;
	}
	signal(SIGXFSZ, SIG_IGN);
	sotp_store_set_trace(ctx->st, full_at_commit, NULL);
}

static void
commit_works(struct sotp_ctx *ctx)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};

	if (pg_url() != NULL) {
		pg_sql("DROP TRIGGER late_audit ON audit;"
		       " DROP FUNCTION sotp_test_late()",
		    NULL, 0);
		return;
	}
	sotp_store_set_trace(ctx->st, NULL, NULL);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* A context on conf whose log lines go to `logged`, emptied. */
static struct sotp_ctx *
logged_ctx(const char *conf)
{
	struct sotp_ctx *ctx = NULL;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_OK);
	logged.len = 0;
	logged.text[0] = '\0';
	sotp_ctx_set_log(ctx, log_keep, NULL, 0);
	return ctx;
}

/* 1 when one logged line holds both a and b (b NULL: a alone). */
static int
logged_line(const char *a, const char *b)
{
	const char *p = logged.text, *nl;
	char line[1024];
	size_t n;

	for (; *p != '\0'; p = nl + 1) {
		if ((nl = strchr(p, '\n')) == NULL)
			break;
		n = (size_t)(nl - p) < sizeof(line) - 1 ? (size_t)(nl - p)
		                                        : sizeof(line) - 1;
		memcpy(line, p, n);
		line[n] = '\0';
		if (strstr(line, a) != NULL &&
		    (b == NULL || strstr(line, b) != NULL))
			return 1;
	}
	return 0;
}

/* The hash C-OTP has in the store. */
static void
pwhash_of(struct fx *f, const char *id, char *out, size_t outsz)
{
	struct sotp_contract_rec c;

	assert_int_equal(sotp_store_contract_get(f->ctx->st, id, &c), SOTP_OK);
	snprintf(out, outsz, "%s", c.pwhash);
	sotp_wipe(&c, sizeof(c));
}

/*
 * [migration] rehash = yes: the password's first round replaces C-OTP's
 * sha512crypt hash inside its decision's transaction, with a row of its
 * own (contract.rehash). When that transaction's COMMIT fails, nothing of
 * it happened: the log must not say "contract.rehash ... accept" (the old
 * code logged that line before the COMMIT, standing alone beside the
 * decision's own "not continued"), but that the rehash was not
 * committed. When the COMMIT works, the line says accept, after it.
 */
static void
test_engine_uncommitted_rehash_not_logged_as_accept(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char conf[160], cmd[1024], hash[SOTP_HASH_MAX];
	int rc;

	snprintf(conf, sizeof(conf), "%s/rehash.conf", f->dir);
	snprintf(cmd, sizeof(cmd),
	    "sed 's/^rehash = no$/rehash = yes/' %s > %s &&"
	    " grep -q '^rehash = yes$' %s",
	    f->conf, conf, conf);
	assert_int_equal(system(cmd), 0);
	raw_sql(f->dir,
	    "UPDATE contracts SET pwhash = '" OLD_HASH_OTP
	    "' WHERE id = 'C-OTP'");

	ctx = logged_ctx(conf);
	commit_fails(ctx);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", T0 + 82000, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-otp"), SOTP_OK);
	rc = sotp_attempt_step(a, &d);
	sotp_attempt_free(a);
	commit_works(ctx);
	sotp_ctx_free(ctx);
	if (rc == SOTP_OK || d.verdict != SOTP_REJECT)
		fail_msg("a decision whose COMMIT failed: rc %s, verdict %d",
		    sotp_rc_name(rc), (int)d.verdict);
	pwhash_of(f, "C-OTP", hash, sizeof(hash));
	assert_string_equal(hash, OLD_HASH_OTP);
	if (!logged_line("action=contract.rehash", NULL))
		fail_msg("no line for the rehash:\n%s", logged.text);
	if (logged_line("action=contract.rehash", "verdict=accept"))
		fail_msg(
		    "a rehash that was rolled back logged as accepted:\n%s",
		    logged.text);
	if (!logged_line("action=contract.rehash", "not committed") ||
	    strstr(logged.text, "audit row not committed") == NULL)
		fail_msg("the rehash is not logged as not committed:\n%s",
		    logged.text);
	/* No hash, no password, in any line. */
	if (strstr(logged.text, "abcdefgh") != NULL ||
	    strstr(logged.text, "pw-otp") != NULL)
		fail_msg("a secret in the log:\n%s", logged.text);

	/* The store commits again: the same round rehashes, then logs. */
	ctx = logged_ctx(conf);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", T0 + 82100, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	pwhash_of(f, "C-OTP", hash, sizeof(hash));
	assert_true(strncmp(hash, "$y$", 3) == 0);
	if (!logged_line("action=contract.rehash", "verdict=accept") ||
	    !logged_line("action=contract.rehash", "from=$6$ to=yescrypt"))
		fail_msg("the committed rehash is not logged as accepted:\n%s",
		    logged.text);
	if (strstr(logged.text, "not committed") != NULL)
		fail_msg("a committed rehash logged as not:\n%s", logged.text);
}

/*
 * A login whose first round rehashes the password ([migration] rehash):
 * its State is bound to the hash that round stored, not the one it read,
 * so the customer's next round is taken.
 */
static void
test_engine_state_bound_to_the_rehash(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct st st;
	char conf[160], cmd[1024], hash[SOTP_HASH_MAX], code[16];
	time_t t = T0 + 83000;

	snprintf(conf, sizeof(conf), "%s/rehash.conf", f->dir);
	snprintf(cmd, sizeof(cmd),
	    "sed 's/^rehash = no$/rehash = yes/' %s > %s &&"
	    " grep -q '^rehash = yes$' %s",
	    f->conf, conf, conf);
	assert_int_equal(system(cmd), 0);
	raw_sql(f->dir,
	    "UPDATE contracts SET pwhash = '" OLD_HASH_OTP
	    "' WHERE id = 'C-OTP'");
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", t, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(
	    sotp_attempt_export(a, st.b, sizeof(st.b), &st.n), SOTP_OK);
	sotp_attempt_free(a);
	pwhash_of(f, "C-OTP", hash, sizeof(hash));
	assert_true(strncmp(hash, "$y$", 3) == 0);
	oath(B32_A, t + 5, NULL, code);
	assert_int_equal(
	    sotp_attempt_resume(ctx, "C-OTP", "login", st.b, st.n, t + 5, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
	assert_int_equal(d.reason, SOTP_R_ACCEPTED);
}

/*
 * The admin changes that read before they write (unbind, close, bind)
 * run in one transaction with their audit row. When its COMMIT fails,
 * the change did not happen: the log must not say accept (the old code
 * logged the accept before the COMMIT), but that it was not committed.
 * A refusal in such a transaction stands: its line stays a refusal,
 * followed by the row's loss.
 */
static void
test_engine_uncommitted_admin_change_not_logged_as_accept(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_decision d;
	int rc;

	ctx = logged_ctx(f->conf);
	commit_fails(ctx);
	rc = sotp_contract_unbind(ctx, "C-OTP", T0 + 83000, &d);
	commit_works(ctx);
	sotp_ctx_free(ctx);
	if (rc == SOTP_OK || d.verdict != SOTP_REJECT)
		fail_msg("an unbind whose COMMIT failed: rc %s, verdict %d",
		    sotp_rc_name(rc), (int)d.verdict);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	if (logged_line("action=contract.unbind", "verdict=accept"))
		fail_msg("an unbind that was rolled back logged as accepted:"
		         "\n%s",
		    logged.text);
	if (!logged_line("action=contract.unbind", "not committed") ||
	    strstr(logged.text, "audit row not committed") == NULL)
		fail_msg("the unbind is not logged as not committed:\n%s",
		    logged.text);

	/* C-OTP is still bound: close refuses, and that refusal stands. */
	ctx = logged_ctx(f->conf);
	commit_fails(ctx);
	rc = sotp_contract_close(ctx, "C-OTP", T0 + 83100, &d);
	commit_works(ctx);
	sotp_ctx_free(ctx);
	assert_int_equal(rc, SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_STILL_BOUND);
	if (!logged_line(
	        "action=contract.close", "verdict=reject reason=STILL_BOUND") ||
	    strstr(logged.text, "audit row not committed") == NULL)
		fail_msg("the refusal or its lost row is not logged:\n%s",
		    logged.text);

	/* And with a COMMIT that works, the accept follows it. */
	ctx = logged_ctx(f->conf);
	assert_int_equal(
	    sotp_contract_unbind(ctx, "C-OTP", T0 + 83200, &d), SOTP_OK);
	sotp_ctx_free(ctx);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	expect_contract(f, "C-OTP", "", 0);
	if (!logged_line("action=contract.unbind", "verdict=accept") ||
	    strstr(logged.text, "not committed") != NULL)
		fail_msg("a committed unbind is not logged as such:\n%s",
		    logged.text);
}

/*
 * The same for a key holder's action in a transaction of its own making:
 * an audit prune whose COMMIT fails removed nothing, and its line must
 * not say accept (the old code logged it before the COMMIT). The chain
 * still verifies whole.
 */
static void
test_engine_uncommitted_prune_not_logged_as_accept(void **state)
{
	struct fx *f = *state;
	struct sotp_audit_check check;
	struct sotp_ctx *ctx = NULL;
	int64_t removed = -1;
	int rc;

	ctx = logged_ctx(f->conf);
	commit_fails(ctx);
	rc = sotp_audit_prune(
	    ctx, (int64_t)T0, NULL, 0, T0 + 84000, &removed, &check);
	commit_works(ctx);
	sotp_ctx_free(ctx);
	if (rc == SOTP_OK)
		fail_msg("a prune whose COMMIT failed returned SOTP_OK:\n%s",
		    logged.text);
	if (!logged_line("action=audit.prune", NULL) ||
	    logged_line("action=audit.prune", "verdict=accept"))
		fail_msg("a prune that was rolled back logged as accepted:\n%s",
		    logged.text);
	if (!logged_line("action=audit.prune", "not committed"))
		fail_msg("the prune is not logged as not committed:\n%s",
		    logged.text);
	assert_int_equal(sotp_audit_verify(f->ctx, &check), SOTP_OK);
	if (check.problem != SOTP_AUDIT_OK || check.base_seq != 0)
		fail_msg("the chain after a failed prune: %s (base %lld)",
		    check.what, (long long)check.base_seq);
}

/*
 * A contract write refused in the middle of a decision (a wrong
 * password's failure count: here a trigger refuses the UPDATE): the
 * context's error text names that refusal, the first cause. On
 * PostgreSQL the refusal aborts the transaction, so the decision's own
 * audit row used to fail after it ("current transaction is aborted"):
 * that consequence replaced the cause in sotp_ctx_errmsg, which the
 * front ends print (RADIUS's "check failed" line, the CLI, PAM), and the
 * refusal had no row. Now the failed decision's writes are undone and
 * its refusal audited on its own, on both stores alike.
 */
static void
test_engine_first_cause_kept(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = logged_ctx(f->conf);
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct audit_rows rows;
	const char *msg;
	char want[96];
	int rc;

	if (pg_url() != NULL)
		pg_refuse("UPDATE", "contracts");
	else
		raw_sql(f->dir,
		    "CREATE TRIGGER no_contracts BEFORE UPDATE ON contracts"
		    " BEGIN SELECT RAISE(ABORT,"
		    " 'contracts refused by the test'); END");
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", T0 + 82000, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "not-it"), SOTP_OK);
	rc = sotp_attempt_step(a, &d);
	sotp_attempt_free(a);
	if (pg_url() != NULL)
		pg_allow("contracts");
	else
		raw_sql(f->dir, "DROP TRIGGER no_contracts");
	msg = sotp_ctx_errmsg(ctx);
	print_message("rc %s, reason %s, error text: %s\n", sotp_rc_name(rc),
	    sotp_reason_name((int)d.reason), msg);
	assert_int_not_equal(rc, SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	if (strstr(msg, "contracts refused by the test") == NULL)
		fail_msg("the refused contract write is not what the context"
		         " names: \"%s\"",
		    msg);
	/* The core's own line named it all along. */
	if (!logged_line("contracts refused by the test", NULL))
		fail_msg("the cause is not logged:\n%s", logged.text);
	expect_contract(f, "C-OTP", "T-OTP", 0);
	/*
	 * The refusal has its row on both stores: on PostgreSQL the aborted
	 * transaction used to take it along, leaving the log line alone.
	 */
	audit_rows_of(f, T0 + 82000, &rows);
	print_message("%s", rows.text);
	snprintf(want, sizeof(want), "action=auth contract=C-OTP reason=%s",
	    sotp_reason_name((int)d.reason));
	if (strstr(rows.text, want) == NULL)
		fail_msg("no audit row for the refusal (\"%s\"):\n%s", want,
		    rows.text);
	sotp_ctx_free(ctx);
}

/* Statements that take or wait for a row lock, started while held. */
static int held_locking;

static void
held_count(void *arg, const char *sql)
{
	(void)arg;
	if (strncmp(sql, "UPDATE", 6) == 0 || strncmp(sql, "INSERT", 6) == 0 ||
	    strncmp(sql, "DELETE", 6) == 0 || strstr(sql, "FOR UPDATE") != NULL)
		held_locking++;
}

/*
 * The same on PostgreSQL, with the [store] lock_timeout (1500 ms here):
 * another server's decision holds C-OTP's row and the audit chain's head
 * (as it would in the middle of its own audit append). A wrong password
 * waits for the contract's row once; its refusal's audit row is not
 * waited for (the head is held too), its line is logged instead. The
 * statements that can wait for a lock are counted by the store's trace.
 */
static void
test_engine_pg_locked_row_waits_once(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct timespec t0, t1;
	struct holder other;
	char conf[160];
	long ms;

	short_wait_conf(f, conf, sizeof(conf));
	hold_rows("BEGIN; SELECT id FROM contracts WHERE id = 'C-OTP'"
	          " FOR UPDATE; SELECT 1 FROM audit_head FOR UPDATE",
	    -1, &other);

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_OK);
	logged.len = 0;
	logged.text[0] = '\0';
	sotp_ctx_set_log(ctx, log_keep, NULL, 0);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "login", T0 + 80000, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "not-it"), SOTP_OK);
	held_locking = 0;
	sotp_store_set_trace(ctx->st, held_count, NULL);
	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &t0), 0);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &t1), 0);
	sotp_store_set_trace(ctx->st, NULL, NULL);
	hold_end(&other);
	ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000;
	print_message("waited %ld ms, %d locking statements under the locks\n",
	    ms, held_locking);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_STORE_UNAVAILABLE);
	if (held_locking != 1)
		fail_msg("%d statements that take a lock ran (want 1)",
		    held_locking);
	if (ms < 1500)
		fail_msg("waited %ld ms, less than the policy's 1500", ms);
	if (strstr(logged.text,
	        "audit row not written: the store was unavailable") == NULL)
		fail_msg("the refusal's row was not logged instead:\n%s",
		    logged.text);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
}

/*
 * An accept whose audit row cannot be written is refused (here the
 * database refuses the row: a trigger), and its log line says so: never
 * "verdict=accept" for a customer who was refused. On PostgreSQL nothing
 * of it was committed, so the same code is accepted once rows go in.
 */
static void
test_engine_pg_unaudited_accept_logged_as_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct input in = {
	    NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL};
	char code[16];
	time_t now = T0 + 90000;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	pg_refuse("INSERT", "audit");
	logged.len = 0;
	logged.text[0] = '\0';
	sotp_ctx_set_log(ctx, log_keep, NULL, 0);
	oath(in.b32, now, in.opts, code);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "transaction", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, code), SOTP_OK);
	assert_int_not_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	pg_allow("audit");
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_STORE_UNAVAILABLE);
	if (strstr(logged.text, "verdict=accept") != NULL)
		fail_msg(
		    "a refused customer logged as accepted:\n%s", logged.text);
	if (strstr(logged.text, "verdict=reject reason=STORE_UNAVAILABLE") ==
	        NULL ||
	    strstr(logged.text, "not accepted") == NULL ||
	    strstr(logged.text, "audit row not written") == NULL)
		fail_msg("the refusal is not logged as such:\n%s", logged.text);

	/* Rows go in again: the same code, never committed, is accepted. */
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "transaction", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_ctx_free(ctx);
}

/* Statements the writer's connection ran (sotp_store_set_trace). */
static struct {
	int n;
	char sql[8192];
	size_t len;
} wtrail;

static void
wtrail_add(void *arg, const char *sql)
{
	size_t n = strcspn(sql, " ");

	(void)arg;
	wtrail.n++;
	if (n > 24)
		n = 24;
	trail_append(wtrail.sql, sizeof(wtrail.sql), &wtrail.len, sql, n, ' ');
}

/*
 * A context that decides through a writer of its own (a second context
 * on conf, as a radiusd's threads share one): the caller frees *ctx,
 * then *w.
 */
static void
with_writer(const char *conf, struct sotp_ctx **ctx, struct sotp_writer **w)
{
	struct sotp_ctx *wctx = NULL;

	assert_int_equal(sotp_ctx_new(ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(*ctx, conf), SOTP_OK);
	assert_int_equal(sotp_ctx_new(&wctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(wctx, conf), SOTP_OK);
	assert_int_equal(sotp_writer_new(wctx, 64, w), SOTP_OK);
	assert_int_equal(sotp_ctx_set_writer(*ctx, *w), SOTP_OK);
}

/* One transaction code through ctx; its verdict, the step's rc. */
static int
writer_decide(
    struct sotp_ctx *ctx, time_t now, const char *code, struct sotp_decision *d)
{
	struct sotp_attempt *a = NULL;
	int rc;

	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "transaction", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, code), SOTP_OK);
	rc = sotp_attempt_step(a, d);
	sotp_attempt_free(a);
	return rc;
}

/*
 * A decision through the process's writer (writer.c, group commit) on
 * PostgreSQL: accepted, its mark committed, with the statements it sent
 * counted (a figure: each is a round trip held under the writer's lock,
 * issue 13). Then a statement of the decision fails inside the server
 * (a trigger refuses its audit row; then one refuses the failure count's
 * reset, a statement held back to ride with the next): each time the
 * decision is refused, its code stays unused (accepted once the trigger
 * is gone), and the writer serves the next decision.
 */
static void
test_engine_pg_writer_decision(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_writer *w = NULL;
	struct sotp_decision d;
	struct input in = {
	    NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL};
	char code[16], audit0[32], audit1[32];
	long long step;
	time_t now = T0 + 95000;
	uint64_t commits, decisions, trips;
	int rc;

	with_writer(f->conf, &ctx, &w);

	/* Warm: the writer's statements are prepared once per connection. */
	oath(in.b32, now - 60, in.opts, code);
	assert_int_equal(writer_decide(ctx, now - 60, code, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);

	wtrail.n = 0;
	wtrail.len = 0;
	wtrail.sql[0] = '\0';
	sotp_store_set_trace(sotp_writer_store(w), wtrail_add, NULL);
	trips = sotp_store_round_trips(sotp_writer_store(w));
	oath(in.b32, now - 30, in.opts, code);
	assert_int_equal(writer_decide(ctx, now - 30, code, &d), SOTP_OK);
	trips = sotp_store_round_trips(sotp_writer_store(w)) - trips;
	sotp_store_set_trace(sotp_writer_store(w), NULL, NULL);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	printf("# figure: one accepted transaction code through the writer"
	       " on PostgreSQL, a group of its own: %d statements in %llu"
	       " round trips: %s\n",
	    wtrail.n, (unsigned long long)trips, wtrail.sql);
	/*
	 * The contract's re-read under the lock brings its token: one
	 * SELECT between the decision's savepoint and the step's, 8 round
	 * trips for a group of its own (9 with the token read apart).
	 */
	if (strstr(wtrail.sql, "SAVEPOINT SELECT SAVEPOINT UPDATE") == NULL ||
	    trips > 8)
		fail_msg("the token was read apart from the contract: %llu"
		         " round trips (want at most 8): %s",
		    (unsigned long long)trips, wtrail.sql);
	if ((step = pg_last_step("T-OTP")) != (long long)((now - 30) / 30))
		fail_msg("the accepted code's mark is not committed: last_step"
		         " %lld, want %lld",
		    step, (long long)((now - 30) / 30));

	/* A statement inside the decision fails: refused, code unused. */
	pg_sql("SELECT count(*) FROM audit", audit0, sizeof(audit0));
	pg_refuse("INSERT", "audit");
	oath(in.b32, now, in.opts, code);
	rc = writer_decide(ctx, now, code, &d);
	pg_allow("audit");
	if (rc == SOTP_OK || d.verdict != SOTP_REJECT)
		fail_msg("an unaudited decision through the writer: rc %d,"
		         " verdict %d",
		    rc, (int)d.verdict);
	if ((step = pg_last_step("T-OTP")) != (long long)((now - 30) / 30))
		fail_msg(
		    "the refused code's mark was kept: last_step %lld", step);
	pg_sql("SELECT count(*) FROM audit", audit1, sizeof(audit1));
	if (strcmp(audit0, audit1) != 0)
		fail_msg("audit rows %s before, %s after", audit0, audit1);

	/*
	 * The failure count's reset fails: on PostgreSQL it is held back and
	 * sent with the step's compare-and-set (one round trip for both), so
	 * the set's statement reports it. Refused all the same, code unused.
	 * An accept resets only a count it saw above 0 under the lock: the
	 * contract gets one first.
	 */
	pg_sql("UPDATE contracts SET failures = 1 WHERE id = 'C-OTP'", NULL, 0);
	pg_sql("SELECT count(*) FROM audit", audit0, sizeof(audit0));
	pg_refuse("UPDATE", "contracts");
	rc = writer_decide(ctx, now, code, &d);
	pg_allow("contracts");
	if (rc == SOTP_OK || d.verdict != SOTP_REJECT)
		fail_msg("a decision whose reset failed: rc %d, verdict %d", rc,
		    (int)d.verdict);
	if ((step = pg_last_step("T-OTP")) != (long long)((now - 30) / 30))
		fail_msg(
		    "the refused code's mark was kept: last_step %lld", step);
	/* Its refusal is a decision of its own, audited. */
	pg_sql("SELECT count(*) FROM audit", audit1, sizeof(audit1));
	if (strtol(audit1, NULL, 10) != strtol(audit0, NULL, 10) + 1)
		fail_msg("audit rows %s before the refused reset, %s after",
		    audit0, audit1);

	/* The writer goes on; the same code was never spent. */
	assert_int_equal(writer_decide(ctx, now, code, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(writer_decide(ctx, now, code, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	sotp_writer_counts(w, &commits, &decisions);
	if (decisions != 5)
		fail_msg("the writer kept %llu decisions, want 5 (3 accepts,"
		         " the refusal after the failed reset, 1 replay"
		         " refused)",
		    (unsigned long long)decisions);
	sotp_ctx_free(ctx);
	sotp_writer_free(w);
}

/* ---- a key rotation racing group-committed decisions ---- */

#define RR_THREADS 6 /* two per good contract, each with its bad one */
#define RR_ROUNDS 40
#define RR_SPARE 8 /* unbound tokens: a second batch of secrets */
#define RR_BATCH 16
/* Rotations spread over the rounds (test_keys makes more than 32). */
#define RR_ROTATIONS 10

struct rr {
	char conf[160];
	struct sotp_writer *w;
	uint8_t key[64];
	size_t keylen;
	pthread_barrier_t start, round;
	pthread_mutex_t lock;
	pthread_cond_t moved;
	int rounds; /* begun, under lock */
	/* the rotation's side */
	int rotations, batches, resealed, rot_rc;
	char rot_why[512];
};

struct rr_worker {
	struct rr *r;
	int n;
	int accepted[RR_ROUNDS + 1]; /* this thread's accept of round i */
	int replayed, wrong, store_err, other;
	char why[512];
};

/*
 * Racer id's own secret: the racers' base secret with the id's octets
 * folded into its head (one seed, one token: each its own).
 */
static void
rr_seed(const struct rr *r, const char *id, uint8_t *key)
{
	size_t i;

	memcpy(key, r->key, r->keylen);
	for (i = 0; id[i] != '\0' && i < r->keylen; i++)
		key[i] ^= (uint8_t)id[i];
}

/*
 * A code of racer id's secret at t, or (wrong) one its window lacks. No
 * cmocka assert: it runs on the racing threads.
 */
static int
rr_code(const struct rr *r, const char *id, time_t t, int wrong, char *code)
{
	char near[3][SOTP_CODE_MAX];
	uint8_t key[64];
	int i, rc = SOTP_OK;

	rr_seed(r, id, key);
	for (i = 0; i < 3 && rc == SOTP_OK; i++)
		rc = sotp_totp(SOTP_ALG_SHA1, key, r->keylen, t + 30 * (i - 1),
		    30, 6, near[i]);
	sotp_wipe(key, sizeof(key));
	if (rc != SOTP_OK)
		return rc;
	memcpy(code, near[1], SOTP_CODE_MAX);
	while (wrong &&
	    (strcmp(code, near[0]) == 0 || strcmp(code, near[1]) == 0 ||
	        strcmp(code, near[2]) == 0))
		code[0] = code[0] == '9' ? '0' : (char)(code[0] + 1);
	return SOTP_OK;
}

/* One transaction code for id at t; the step's rc and decision. */
static int
rr_decide(struct sotp_ctx *ctx, const struct rr *r, const char *id, time_t t,
    int wrong, struct sotp_decision *d)
{
	struct sotp_attempt *a = NULL;
	char code[SOTP_CODE_MAX];
	int rc;

	memset(d, 0, sizeof(*d));
	if ((rc = rr_code(r, id, t, wrong, code)) != SOTP_OK ||
	    (rc = sotp_attempt_begin(ctx, id, "transaction", t, &a)) !=
	        SOTP_OK ||
	    (rc = sotp_attempt_set(a, SOTP_F_OTP, code)) != SOTP_OK) {
		sotp_attempt_free(a);
		return rc;
	}
	rc = sotp_attempt_step(a, d);
	sotp_attempt_free(a);
	return rc;
}

/* Sorts one outcome: want is the refusal expected besides an accept. */
static void
rr_tally(struct rr_worker *wk, struct sotp_ctx *ctx, int round, int rc,
    const struct sotp_decision *d, int want)
{
	if (rc == SOTP_OK && d->verdict == SOTP_ACCEPT &&
	    want == SOTP_R_REPLAYED) {
		wk->accepted[round] = 1;
		return;
	}
	if (rc == SOTP_OK && d->verdict == SOTP_REJECT &&
	    (int)d->reason == want) {
		if (want == SOTP_R_REPLAYED)
			wk->replayed++;
		else
			wk->wrong++;
		return;
	}
	if ((rc == SOTP_ERR_STORE || rc == SOTP_ERR_STORE_UNAVAILABLE) &&
	    d->verdict != SOTP_ACCEPT)
		wk->store_err++;
	else
		wk->other++;
	if (wk->why[0] == '\0')
		snprintf(wk->why, sizeof(wk->why),
		    "thread %d round %d: rc %s, verdict %d, reason %s: %s",
		    wk->n, round, sotp_rc_name(rc), (int)d->verdict,
		    sotp_reason_name((int)d->reason), sotp_ctx_errmsg(ctx));
}

static void *
rr_work(void *arg)
{
	struct rr_worker *wk = arg;
	struct sotp_ctx *ctx = NULL;
	struct sotp_decision d;
	char good[16], bad[16];
	time_t t;
	int i, rc, ready;

	ready = sotp_ctx_new(&ctx) == SOTP_OK &&
	    sotp_ctx_load(ctx, wk->r->conf) == SOTP_OK &&
	    sotp_ctx_set_writer(ctx, wk->r->w) == SOTP_OK;
	snprintf(good, sizeof(good), "R-G%d", wk->n / 2);
	snprintf(bad, sizeof(bad), "R-B%d", wk->n);
	pthread_barrier_wait(&wk->r->start);
	for (i = 1; i <= RR_ROUNDS; i++) {
		/* Each round's decisions meet at the writer, in groups. */
		pthread_barrier_wait(&wk->r->round);
		if (wk->n == 0) {
			pthread_mutex_lock(&wk->r->lock);
			wk->r->rounds = i;
			pthread_cond_broadcast(&wk->r->moved);
			pthread_mutex_unlock(&wk->r->lock);
		}
		if (!ready) {
			wk->other++;
			continue;
		}
		t = T0 + 30 * i;
		rc = rr_decide(ctx, wk->r, good, t, 0, &d);
		rr_tally(wk, ctx, i, rc, &d, SOTP_R_REPLAYED);
		rc = rr_decide(ctx, wk->r, bad, t, 1, &d);
		rr_tally(wk, ctx, i, rc, &d, SOTP_R_WRONG_CODE);
	}
	sotp_ctx_free(ctx);
	return NULL;
}

/*
 * RR_ROTATIONS rotations, each to its end (the old version retired, `now`
 * moved past its States' lifetime), the k-th begun once the decisions
 * have reached their round (k - 1) * RR_ROUNDS / RR_ROTATIONS + 1.
 */
static void *
rr_rotate(void *arg)
{
	struct rr *r = arg;
	struct sotp_ctx *ctx = NULL;
	struct sotp_key_step st;
	time_t now;
	int rc = SOTP_OK, k = 0, waiting;

	if (sotp_ctx_new(&ctx) != SOTP_OK ||
	    sotp_ctx_load(ctx, r->conf) != SOTP_OK)
		rc = SOTP_ERR_INTERNAL;
	pthread_barrier_wait(&r->start);
	while (rc == SOTP_OK && k < RR_ROTATIONS) {
		pthread_mutex_lock(&r->lock);
		while (r->rounds < k * RR_ROUNDS / RR_ROTATIONS + 1)
			pthread_cond_wait(&r->moved, &r->lock);
		pthread_mutex_unlock(&r->lock);
		now = T0 + 100000 + 1000 * (time_t)++k;
		if ((rc = sotp_key_rotate_begin(ctx, now, &st)) != SOTP_OK)
			break;
		waiting = 0;
		do {
			rc = sotp_key_rotate_step(
			    ctx, now + 500 * waiting, RR_BATCH, &st);
			if (rc == SOTP_OK && st.what == SOTP_KEY_WAITING)
				waiting = 1;
			if (rc == SOTP_OK && st.what == SOTP_KEY_RESEALED &&
			    st.count > 0) {
				r->batches++;
				r->resealed += (int)st.count;
			}
		} while (rc == SOTP_OK && st.what != SOTP_KEY_DONE);
		if (rc == SOTP_OK)
			r->rotations++;
	}
	r->rot_rc = rc;
	if (rc != SOTP_OK)
		snprintf(r->rot_why, sizeof(r->rot_why),
		    "rotation %d: rc %s: %s", k, sotp_rc_name(rc),
		    ctx != NULL ? sotp_ctx_errmsg(ctx) : "no context");
	sotp_ctx_free(ctx);
	return NULL;
}

/* Racer id's own secret in base32, as token add and oathtool take it. */
static void
rr_b32(const struct rr *r, const char *id, char *b32, size_t len)
{
	uint8_t key[64];

	rr_seed(r, id, key);
	assert_int_equal(sotp_base32_encode(key, r->keylen, b32, len), SOTP_OK);
	sotp_wipe(key, sizeof(key));
}

/* The racers: R-G0.. (good, shared by two threads), R-B0.. (bad). */
static void
rr_provision(struct fx *f, struct rr *r)
{
	char id[16], serial[24], grid[512], b32[128];
	int i;

	assert_int_equal(
	    sotp_base32_decode(B32_A, r->key, sizeof(r->key), &r->keylen, NULL),
	    SOTP_OK);
	for (i = 0; i < RR_THREADS + RR_THREADS / 2; i++) {
		if (i < RR_THREADS)
			snprintf(id, sizeof(id), "R-B%d", i);
		else
			snprintf(id, sizeof(id), "R-G%d", i - RR_THREADS);
		snprintf(serial, sizeof(serial), "T%s", id);
		rr_b32(r, id, b32, sizeof(b32));
		add_token(f, serial, b32, NULL, SOTP_ALG_SHA1, 6);
		add_contract(f, id, "pw-race");
		/* A card each: the rotation's card batches take them too. */
		issue_card(f, id, grid, sizeof(grid));
		bind_at(f, id, serial, b32, SOTP_LOGIN_OTP, T0 - 600);
	}
	for (i = 0; i < RR_SPARE; i++) {
		snprintf(serial, sizeof(serial), "TR-X%02d", i);
		rr_b32(r, serial, b32, sizeof(b32));
		add_token(f, serial, b32, NULL, SOTP_ALG_SHA1, 6);
	}
}

/* The store's answer to sql (an integer), read on a connection of its own. */
static long long
rr_count(const struct fx *f, const char *sql)
{
	char db[160], out[32];
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long long n = -1;

	if (pg_url() != NULL) {
		pg_sql(sql, out, sizeof(out));
		return strtoll(out, NULL, 10);
	}
	snprintf(db, sizeof(db), "%s/shinkin-otp.db", f->dir);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return n;
}

/*
 * `key rotate` while a radiusd's writer decides (group commit: one
 * transaction holds the contracts and tokens of several decisions, taken
 * in the order the threads come). RR_ROTATIONS rotations, each to its
 * end, in batches of RR_BATCH, while RR_THREADS threads decide RR_ROUNDS
 * rounds: two threads send each good contract's code of the round at
 * once (exactly one accept, the other REPLAYED), and each thread a wrong
 * code for its own contract (WRONG_CODE, counted).
 *
 * On PostgreSQL a re-sealing batch takes its token rows, then its card
 * rows, in (kv, serial) order, while a group takes them in the threads'
 * order: opposite orders. What keeps them apart is that the batch skips
 * the rows a decision holds (SKIP LOCKED, store_pg.c) and so never waits
 * for a row while holding others; a batch that waited instead would close
 * a cycle with a group, and the server would abort one side (deadlock
 * detected, 40P01), seen here as a store error (lock_timeout is raised far
 * above deadlock_timeout, so nothing else ends a wait). With the two
 * SKIP LOCKED taken out this test failed so in 4 runs of 5.
 *
 * Nothing may fail: no decision and no rotation step refused by the
 * store, every count adds up (accepts, replays, failure counts in the
 * store), and at the end every secret and card unseals under the one
 * version left, and the audit chain verifies. On SQLite the two take
 * turns at the file's write lock.
 */
static void
test_engine_rotation_races_writer(void **state)
{
	struct fx *f = *state;
	struct rr *r = NULL;
	struct rr_worker wk[RR_THREADS];
	pthread_t th[RR_THREADS], rot;
	struct sotp_key_status *ks = NULL;
	struct sotp_key_check kc;
	struct sotp_audit_check ac;
	struct sotp_ctx *ctx = NULL, *wctx = NULL;
	struct sotp_decision d;
	char cmd[512], sql[160], id[16];
	int i, g, k, n, accepts;

	assert_non_null(r = calloc(1, sizeof(*r)));
	rr_provision(f, r);
	/* Waits that only a cycle of locks could end (PostgreSQL's
	 * deadlock_timeout is 1 s); and no lockout within the rounds. */
	timeouts_conf(f, 30000, 60000, r->conf, sizeof(r->conf));
	snprintf(cmd, sizeof(cmd),
	    "sed -i 's/^threshold = 5$/threshold = 100/' %s &&"
	    " grep -q '^threshold = 100$' %s",
	    r->conf, r->conf);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(sotp_ctx_new(&wctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(wctx, r->conf), SOTP_OK);
	assert_int_equal(sotp_writer_new(wctx, 64, &r->w), SOTP_OK);
	assert_int_equal(
	    pthread_barrier_init(&r->start, NULL, RR_THREADS + 1), 0);
	assert_int_equal(pthread_barrier_init(&r->round, NULL, RR_THREADS), 0);
	assert_int_equal(pthread_mutex_init(&r->lock, NULL), 0);
	assert_int_equal(pthread_cond_init(&r->moved, NULL), 0);

	memset(wk, 0, sizeof(wk));
	for (i = 0; i < RR_THREADS; i++) {
		wk[i].r = r;
		wk[i].n = i;
		assert_int_equal(
		    pthread_create(&th[i], NULL, rr_work, &wk[i]), 0);
	}
	assert_int_equal(pthread_create(&rot, NULL, rr_rotate, r), 0);
	for (i = 0; i < RR_THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_join(rot, NULL);
	sotp_writer_free(r->w);
	pthread_barrier_destroy(&r->start);
	pthread_barrier_destroy(&r->round);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->moved);
	print_message("# %d rotations, %d batches (%d values re-sealed) beside"
	              " %d decisions\n",
	    r->rotations, r->batches, r->resealed, 2 * RR_THREADS * RR_ROUNDS);

	/* Nobody was refused by the store: no lock cycle, on either side. */
	for (i = 0; i < RR_THREADS; i++)
		if (wk[i].store_err > 0 || wk[i].other > 0)
			fail_msg(
			    "%d store errors, %d other outcomes; first: %s",
			    wk[i].store_err, wk[i].other, wk[i].why);
	if (r->rot_rc != SOTP_OK)
		fail_msg("the rotation stopped: %s", r->rot_why);
	assert_int_equal(r->rotations, RR_ROTATIONS);

	/* Each good code: one accept between its two threads, one replay. */
	for (g = 0; g < RR_THREADS / 2; g++) {
		for (k = 1; k <= RR_ROUNDS; k++) {
			n = wk[2 * g].accepted[k] + wk[2 * g + 1].accepted[k];
			if (n != 1)
				fail_msg("R-G%d round %d: %d accepts", g, k, n);
		}
		assert_int_equal(
		    wk[2 * g].replayed + wk[2 * g + 1].replayed, RR_ROUNDS);
		snprintf(sql, sizeof(sql),
		    "SELECT last_step FROM tokens WHERE serial = 'TR-G%d'", g);
		assert_int_equal(rr_count(f, sql), (T0 + 30 * RR_ROUNDS) / 30);
		snprintf(sql, sizeof(sql),
		    "SELECT count(*) FROM audit WHERE contract = 'R-G%d' AND"
		    " context = 'transaction' AND verdict = 'accept'",
		    g);
		assert_int_equal(rr_count(f, sql), RR_ROUNDS);
	}
	/* Each wrong code counted once, none lost. */
	for (i = 0; i < RR_THREADS; i++) {
		assert_int_equal(wk[i].wrong, RR_ROUNDS);
		snprintf(sql, sizeof(sql),
		    "SELECT failures FROM contracts WHERE id = 'R-B%d'", i);
		assert_int_equal(rr_count(f, sql), RR_ROUNDS);
	}

	/* One version left, sealing every value; the chain holds. */
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, r->conf), SOTP_OK);
	assert_int_equal(sotp_key_check(ctx, &kc), SOTP_OK);
	if (kc.bad != 0)
		fail_msg("%lld values do not unseal; first: %s",
		    (long long)kc.bad, kc.first_bad);
	assert_int_equal(
	    kc.secrets, 5 + RR_THREADS + RR_THREADS / 2 + RR_SPARE);
	assert_int_equal(kc.cards, 3 + RR_THREADS + RR_THREADS / 2);
	assert_non_null(ks = calloc(1, sizeof(*ks)));
	assert_int_equal(sotp_key_status(ctx, T0, ks), SOTP_OK);
	assert_int_equal(ks->left, 0);
	for (i = 0, n = 0; (size_t)i < ks->n; i++)
		n += ks->v[i].live;
	assert_int_equal(n, 1);
	assert_int_equal(ks->current, (uint32_t)(1 + r->rotations));
	free(ks);
	assert_int_equal(sotp_audit_verify(ctx, &ac), SOTP_OK);
	if (ac.problem != SOTP_AUDIT_OK)
		fail_msg("audit verify: problem %d at row %lld",
		    (int)ac.problem, (long long)ac.bad_id);
	/* The last codes stay spent, under the new version too. */
	for (g = 0, accepts = 0; g < RR_THREADS / 2; g++) {
		snprintf(id, sizeof(id), "R-G%d", g);
		assert_int_equal(
		    rr_decide(ctx, r, id, T0 + 30 * RR_ROUNDS, 0, &d), SOTP_OK);
		assert_int_equal(d.reason, SOTP_R_REPLAYED);
		assert_int_equal(
		    rr_decide(ctx, r, id, T0 + 30 * (RR_ROUNDS + 1), 0, &d),
		    SOTP_OK);
		accepts += d.verdict == SOTP_ACCEPT;
	}
	assert_int_equal(accepts, RR_THREADS / 2);
	sotp_ctx_free(ctx);
	free(r);
}

/*
 * A wrong code whose audit row the database refuses (a trigger), on
 * PostgreSQL, where the refused INSERT aborts what it ran in: the refusal
 * stands and its failure count is committed, row or not (engine.c
 * finish_audited), through the process's writer as without one, as on
 * SQLite. Through the writer the count used to be undone with the row.
 */
static void
test_engine_pg_unaudited_refusal_counted(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_writer *w = NULL;
	struct sotp_decision d;
	char failures[32];
	time_t now = T0 + 96000;
	int round;

	for (round = 0; round < 2; round++) {
		if (round == 0) {
			assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
			assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
		} else {
			with_writer(f->conf, &ctx, &w);
		}
		pg_sql("UPDATE contracts SET failures = 0 WHERE id = 'C-OTP'",
		    NULL, 0);
		pg_refuse("INSERT", "audit");
		(void)writer_decide(ctx, now, "000000", &d);
		pg_allow("audit");
		pg_sql("SELECT failures FROM contracts WHERE id = 'C-OTP'",
		    failures, sizeof(failures));
		if (d.verdict != SOTP_REJECT)
			fail_msg("%s: a wrong code whose row was refused: "
			         "verdict %d",
			    round == 0 ? "alone" : "through the writer",
			    (int)d.verdict);
		if (strcmp(failures, "1") != 0)
			fail_msg("%s: a wrong code whose row was refused left "
			         "failures %s, want 1",
			    round == 0 ? "alone" : "through the writer",
			    failures);
		/* The writer serves the next decision. */
		assert_int_equal(
		    writer_decide(ctx, now, "000000", &d), SOTP_OK);
		assert_int_equal(d.verdict, SOTP_REJECT);
		pg_sql("SELECT failures FROM contracts WHERE id = 'C-OTP'",
		    failures, sizeof(failures));
		assert_string_equal(failures, "2");
		sotp_ctx_free(ctx);
		ctx = NULL;
		sotp_writer_free(w);
		w = NULL;
	}
	pg_sql("UPDATE contracts SET failures = 0 WHERE id = 'C-OTP'", NULL, 0);
}

/* Armed: the next re-read under the lock finds C-OTP unbound first. */
static int unbind_armed;

static void
unbind_before_lock(void *arg, const char *sql)
{
	(void)arg;
	if (!unbind_armed || strstr(sql, "LEFT JOIN tokens t") == NULL)
		return;
	unbind_armed = 0;
	pg_sql(
	    "UPDATE contracts SET serial = NULL WHERE id = 'C-OTP'", NULL, 0);
}

/*
 * A contract unbound while a decision is under way, between the
 * decision's first read of the contract and its look under the row lock
 * (a help desk's `contract unbind` after a lost phone, committed at that
 * instant on another connection): the code of the token that was bound
 * is not taken, and its step stays unused. The engine used to check the
 * code against the token of its first read and accept it.
 */
static void
test_engine_pg_unbound_under_the_lock(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_writer *w = NULL;
	struct sotp_decision d;
	struct input in = {
	    NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL};
	char code[16];
	long long before, after;
	time_t now = T0 + 96000;

	with_writer(f->conf, &ctx, &w);

	before = pg_last_step("T-OTP");
	unbind_armed = 1;
	sotp_store_set_trace(sotp_writer_store(w), unbind_before_lock, NULL);
	oath(in.b32, now, in.opts, code);
	assert_int_equal(writer_decide(ctx, now, code, &d), SOTP_OK);
	sotp_store_set_trace(sotp_writer_store(w), NULL, NULL);
	if (unbind_armed)
		fail_msg("the decision made no re-read under the lock");
	after = pg_last_step("T-OTP");
	pg_sql("UPDATE contracts SET serial = 'T-OTP' WHERE id = 'C-OTP'", NULL,
	    0);
	if (d.verdict != SOTP_REJECT || d.reason != SOTP_R_NOT_BOUND)
		fail_msg("a code of a token unbound under the decision: verdict"
		         " %d, reason %d (want REJECT, NOT_BOUND)",
		    (int)d.verdict, (int)d.reason);
	if (after != before)
		fail_msg("the unbound token's step was spent: last_step %lld,"
		         " was %lld",
		    after, before);

	/* Bound again: the same code is accepted, it was never spent. */
	assert_int_equal(writer_decide(ctx, now, code, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_ctx_free(ctx);
	sotp_writer_free(w);
}

/* Armed: the decision's compare-and-set finds T-OTP disabled first. */
static int disable_armed;

static void
disable_before_cas(void *arg, const char *sql)
{
	struct fx *f = arg;
	struct sotp_decision d;

	if (!disable_armed ||
	    strncmp(sql, "UPDATE tokens SET last_step", 27) != 0)
		return;
	disable_armed = 0;
	/* The help desk's `token disable`, on a connection of its own. */
	assert_int_equal(
	    sotp_token_set_disabled(f->ctx, "T-OTP", 1, T0 + 97000, &d),
	    SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
}

/*
 * A token disabled while a decision is under way, committed between the
 * decision's read of the token (with its contract, under the contract's
 * row lock) and the compare-and-set that spends the code's step: a help
 * desk's `token disable` after a lost phone. `token disable` takes no
 * contract lock, so only the compare-and-set can see it: the code is
 * refused as the token's (TOKEN_DISABLED, audited so), not counted
 * against the customer, and its step stays unused (the same code is
 * accepted once the token is enabled again). The engine used to accept it.
 */
static void
test_engine_pg_disabled_before_cas(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_writer *w = NULL;
	struct sotp_decision d, de;
	struct audit_rows rows;
	struct input in = {
	    NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL};
	char code[16], failures[32];
	long long before, after;
	time_t now = T0 + 97000;

	with_writer(f->conf, &ctx, &w);

	/* One failure on the count, so the accept would reset it. */
	pg_sql("UPDATE contracts SET failures = 1 WHERE id = 'C-OTP'", NULL, 0);
	before = pg_last_step("T-OTP");
	/*
	 * The disable's audit row must not go to the writer's chain: the
	 * writer's group holds chain 1's head (writer.c) while the hook runs
	 * inside it, so a disable on chain 1 (f->ctx's chain is chosen by
	 * pid, 1 in 16) would wait for it until lock_timeout.
	 */
	sotp_store_audit_chain_home(f->ctx->st, 2);
	disable_armed = 1;
	sotp_store_set_trace(sotp_writer_store(w), disable_before_cas, f);
	oath(in.b32, now, in.opts, code);
	assert_int_equal(writer_decide(ctx, now, code, &d), SOTP_OK);
	sotp_store_set_trace(sotp_writer_store(w), NULL, NULL);
	if (disable_armed)
		fail_msg("the decision made no compare-and-set");
	after = pg_last_step("T-OTP");
	pg_sql("SELECT failures FROM contracts WHERE id = 'C-OTP'", failures,
	    sizeof(failures));
	if (d.verdict != SOTP_REJECT || d.reason != SOTP_R_TOKEN_DISABLED)
		fail_msg(
		    "a code of a token disabled under the decision: verdict"
		    " %d, reason %d (want REJECT, TOKEN_DISABLED)",
		    (int)d.verdict, (int)d.reason);
	if (after != before)
		fail_msg("the disabled token's step was spent: last_step %lld,"
		         " was %lld",
		    after, before);
	if (strcmp(failures, "1") != 0)
		fail_msg("the refusal changed the failure count: %s, was 1",
		    failures);
	audit_rows_of(f, now, &rows);
	/* The disable's row, then the decision's refusal: no accept. */
	if (strcmp(rows.text,
	        "action=token.disable contract=C-OTP reason=ACCEPTED detail=\n"
	        "action=auth contract=C-OTP reason=TOKEN_DISABLED detail=\n") !=
	    0)
		fail_msg("audit rows since the decision:\n%s", rows.text);

	/* Enabled again: the same code is accepted, it was never spent. */
	assert_int_equal(
	    sotp_token_set_disabled(f->ctx, "T-OTP", 0, now, &de), SOTP_OK);
	assert_int_equal(writer_decide(ctx, now, code, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_ctx_free(ctx);
	sotp_writer_free(w);
}

/*
 * The help desk's `token disable` holding T-OTP's row (UPDATEd, not yet
 * committed, on a connection of its own) when the decision's
 * compare-and-set comes: the decision runs in a thread of its own
 * (dh_decide), its trace (disable_and_hold) starts the admin's
 * transaction just before the compare-and-set, and the test ends that
 * transaction only once the server shows the decision waiting for it.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	PGconn *admin;
	int armed;
	int held; /* 1: the admin holds the row; -1: its UPDATE failed */
	int done; /* the decision has its answer */
	char why[256];
	struct sotp_ctx *ctx;
	const char *code;
	time_t now;
	int rc;
	struct sotp_decision d;
} dh;

static void
disable_and_hold(void *arg, const char *sql)
{
	PGresult *res;
	int ok;

	(void)arg;
	if (!dh.armed || strncmp(sql, "UPDATE tokens SET last_step", 27) != 0)
		return;
	dh.armed = 0;
	res = PQexec(dh.admin,
	    "BEGIN; UPDATE tokens SET disabled = 1 WHERE serial = 'T-OTP'");
	ok = PQresultStatus(res) == PGRES_COMMAND_OK &&
	    strcmp(PQcmdTuples(res), "1") == 0;
	if (!ok)
		snprintf(dh.why, sizeof(dh.why), "%s, %s rows: %s",
		    PQresStatus(PQresultStatus(res)), PQcmdTuples(res),
		    PQresultErrorMessage(res));
	PQclear(res);
	pthread_mutex_lock(&dh.lock);
	dh.held = ok ? 1 : -1;
	pthread_cond_broadcast(&dh.cond);
	pthread_mutex_unlock(&dh.lock);
}

/* The decision's thread: no cmocka here, the test checks dh after join. */
static void *
dh_decide(void *arg)
{
	struct sotp_attempt *a = NULL;

	(void)arg;
	dh.rc = sotp_attempt_begin(dh.ctx, "C-OTP", "transaction", dh.now, &a);
	if (dh.rc == SOTP_OK)
		dh.rc = sotp_attempt_answer(a, dh.code);
	if (dh.rc == SOTP_OK)
		dh.rc = sotp_attempt_step(a, &dh.d);
	sotp_attempt_free(a);
	pthread_mutex_lock(&dh.lock);
	dh.done = 1;
	pthread_cond_broadcast(&dh.cond);
	pthread_mutex_unlock(&dh.lock);
	return NULL;
}

/*
 * One decision of code at now through ctx's writer w while the admin
 * holds T-OTP's row; once the decision waits for that row (a backend that
 * the admin's blocks, seen by probe), the admin commits, or rolls back.
 * The decision's answer is left in dh.
 */
static void
decide_while_disable_holds(struct sotp_ctx *ctx, struct sotp_writer *w,
    PGconn *probe, time_t now, const char *code, int commit)
{
	PGresult *res;
	pthread_t t;
	char sql[160];
	int i, waiting = 0, done = 0, ended;

	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM pg_stat_activity"
	    " WHERE %d = ANY(pg_blocking_pids(pid))",
	    PQbackendPID(dh.admin));
	dh.ctx = ctx;
	dh.code = code;
	dh.now = now;
	dh.rc = SOTP_ERR_INTERNAL;
	memset(&dh.d, 0, sizeof(dh.d));
	dh.armed = 1;
	dh.held = 0;
	dh.done = 0;
	dh.why[0] = '\0';
	sotp_store_set_trace(sotp_writer_store(w), disable_and_hold, NULL);
	assert_int_equal(pthread_create(&t, NULL, dh_decide, NULL), 0);
	pthread_mutex_lock(&dh.lock);
	while (dh.held == 0 && !dh.done)
		pthread_cond_wait(&dh.cond, &dh.lock);
	pthread_mutex_unlock(&dh.lock);

	/*
	 * A synchronization, not a timed check: up to about 5 s for the
	 * decision to be seen waiting, well inside the lock_timeout the
	 * caller's policy sets (10 s).
	 */
	for (i = 0; dh.held == 1 && !waiting && !done && i < 1000; i++) {
		res = PQexec(probe, sql);
		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), "0") != 0)
			waiting = 1;
		PQclear(res);
		if (waiting)
			break;
		pthread_mutex_lock(&dh.lock);
		done = dh.done;
		pthread_mutex_unlock(&dh.lock);
		usleep(5 * 1000);
	}
	res = PQexec(dh.admin, commit ? "COMMIT" : "ROLLBACK");
	ended = PQresultStatus(res) == PGRES_COMMAND_OK;
	PQclear(res);
	assert_int_equal(pthread_join(t, NULL), 0);
	sotp_store_set_trace(sotp_writer_store(w), NULL, NULL);

	if (dh.armed)
		fail_msg("the decision made no compare-and-set: rc %s,"
		         " verdict %d, reason %s",
		    sotp_rc_name(dh.rc), (int)dh.d.verdict,
		    sotp_reason_name((int)dh.d.reason));
	if (dh.held != 1)
		fail_msg("the admin's UPDATE did not take the row: %s", dh.why);
	if (!waiting)
		fail_msg("the decision was never seen waiting for the admin's"
		         " row lock (%s after %d polls of pg_stat_activity):"
		         " rc %s, verdict %d, reason %s",
		    done ? "it had its answer" : "still none", i,
		    sotp_rc_name(dh.rc), (int)dh.d.verdict,
		    sotp_reason_name((int)dh.d.reason));
	if (!ended)
		fail_msg(
		    "the admin's %s failed", commit ? "COMMIT" : "ROLLBACK");
	if (dh.rc != SOTP_OK)
		fail_msg("the decision failed: rc %s: %s", sotp_rc_name(dh.rc),
		    sotp_ctx_errmsg(ctx));
}

/* T-OTP's disabled flag and C-OTP's failure count, read by PostgreSQL. */
static void
pg_disabled_and_failures(char *disabled, char *failures, size_t sz)
{
	pg_sql(
	    "SELECT disabled FROM tokens WHERE serial = 'T-OTP'", disabled, sz);
	pg_sql(
	    "SELECT failures FROM contracts WHERE id = 'C-OTP'", failures, sz);
}

/*
 * A token disabled while a decision is under way, the disable not yet
 * committed when the decision's compare-and-set comes: the help desk's
 * `token disable` has UPDATEd the token's row and holds it. On READ
 * COMMITTED the compare-and-set waits for the row; once the disable
 * commits, the server evaluates its WHERE again on the new version
 * (EvalPlanQual) and must find the token disabled: the code is refused
 * as TOKEN_DISABLED (audited so, not counted against the customer) and
 * its step stays unused. Had the disable rolled back instead, the same
 * wait ends in an accept.
 */
static void
test_engine_pg_disable_holding_the_row(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_writer *w = NULL;
	struct sotp_decision de;
	struct audit_rows rows;
	PGconn *probe;
	char conf[160], code[16], disabled[32], failures[32];
	long long before, after;
	time_t now = T0 + 98000;

	/* The decision waits as long as the poll takes, with room to spare. */
	timeouts_conf(f, 10000, 20000, conf, sizeof(conf));
	with_writer(conf, &ctx, &w);
	dh.admin = PQconnectdb(pg_url());
	probe = PQconnectdb(pg_url());
	if (PQstatus(dh.admin) != CONNECTION_OK ||
	    PQstatus(probe) != CONNECTION_OK)
		fail_msg("pg: %s%s", PQerrorMessage(dh.admin),
		    PQerrorMessage(probe));
	pthread_mutex_init(&dh.lock, NULL);
	pthread_cond_init(&dh.cond, NULL);

	/* The disable commits: refused, the step unused, the count kept. */
	pg_sql("UPDATE contracts SET failures = 1 WHERE id = 'C-OTP'", NULL, 0);
	before = pg_last_step("T-OTP");
	oath(B32_A, now, NULL, code);
	decide_while_disable_holds(ctx, w, probe, now, code, 1);
	after = pg_last_step("T-OTP");
	pg_disabled_and_failures(disabled, failures, sizeof(disabled));
	if (dh.d.verdict != SOTP_REJECT || dh.d.reason != SOTP_R_TOKEN_DISABLED)
		fail_msg("a code whose token's disable committed while the"
		         " compare-and-set waited: verdict %d, reason %s (want"
		         " REJECT, TOKEN_DISABLED)",
		    (int)dh.d.verdict, sotp_reason_name((int)dh.d.reason));
	if (after != before)
		fail_msg("the disabled token's step was spent: last_step %lld,"
		         " was %lld",
		    after, before);
	if (strcmp(disabled, "1") != 0 || strcmp(failures, "1") != 0)
		fail_msg("after the refusal: disabled %s (want 1), failures %s"
		         " (want 1, not counted)",
		    disabled, failures);
	audit_rows_of(f, now, &rows);
	if (strcmp(rows.text,
	        "action=auth contract=C-OTP reason=TOKEN_DISABLED detail=\n") !=
	    0)
		fail_msg("audit rows since the decision:\n%s", rows.text);
	/* Enabled again: the same code is accepted, it was never spent. */
	assert_int_equal(
	    sotp_token_set_disabled(f->ctx, "T-OTP", 0, now, &de), SOTP_OK);
	assert_int_equal(writer_decide(ctx, now, code, &de), SOTP_OK);
	assert_int_equal(de.verdict, SOTP_ACCEPT);

	/* The disable rolls back: the waiting decision accepts. */
	now += 60;
	pg_sql("UPDATE contracts SET failures = 1 WHERE id = 'C-OTP'", NULL, 0);
	oath(B32_A, now, NULL, code);
	decide_while_disable_holds(ctx, w, probe, now, code, 0);
	after = pg_last_step("T-OTP");
	pg_disabled_and_failures(disabled, failures, sizeof(disabled));
	if (dh.d.verdict != SOTP_ACCEPT || dh.d.reason != SOTP_R_ACCEPTED)
		fail_msg("a code whose token's disable rolled back while the"
		         " compare-and-set waited: verdict %d, reason %s (want"
		         " ACCEPT, ACCEPTED)",
		    (int)dh.d.verdict, sotp_reason_name((int)dh.d.reason));
	if (after != (long long)(now / 30))
		fail_msg("the accept's step is not committed: last_step %lld,"
		         " want %lld",
		    after, (long long)(now / 30));
	if (strcmp(disabled, "0") != 0 || strcmp(failures, "0") != 0)
		fail_msg("after the accept: disabled %s (want 0), failures %s"
		         " (want 0, reset)",
		    disabled, failures);
	audit_rows_of(f, now, &rows);
	if (strcmp(rows.text,
	        "action=auth contract=C-OTP reason=ACCEPTED detail=\n") != 0)
		fail_msg("audit rows since the decision:\n%s", rows.text);

	PQfinish(probe);
	PQfinish(dh.admin);
	dh.admin = NULL;
	pthread_cond_destroy(&dh.cond);
	pthread_mutex_destroy(&dh.lock);
	sotp_ctx_free(ctx);
	sotp_writer_free(w);
}

/*
 * Two decisions in one group of the writer (PostgreSQL): A accepts
 * C-OTP's code; B, come to the writer while A was in it, waits for
 * C-NOTOKEN's row (another session holds it) to unlock its expired lock,
 * past the policy's lock_timeout. B alone is refused: its savepoint is
 * undone and the group's transaction stands, so A's accept is committed
 * and answered. The old writer let B's timeout mark the shared
 * connection lost, and the group's COMMIT then refused A as well: one
 * contended contract refused every customer grouped with it.
 */
static struct {
	struct sotp_writer *w;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int armed, go_b, rc_b;
	struct sotp_decision d_b;
	const char *conf;
	time_t now;
} grp;

static void
grp_trace(void *arg, const char *sql)
{
	(void)arg;
	if (strncmp(sql, "RELEASE", 7) != 0 || !grp.armed)
		return;
	/* A is inside the writer: B comes to its door. */
	grp.armed = 0;
	pthread_mutex_lock(&grp.lock);
	grp.go_b = 1;
	pthread_cond_broadcast(&grp.cond);
	pthread_mutex_unlock(&grp.lock);
	while (sotp_writer_coming(grp.w) == 0)
		sched_yield();
}

static void *
grp_run_b(void *arg)
{
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;

	(void)arg;
	pthread_mutex_lock(&grp.lock);
	while (!grp.go_b)
		pthread_cond_wait(&grp.cond, &grp.lock);
	pthread_mutex_unlock(&grp.lock);
	grp.rc_b = SOTP_ERR_INTERNAL;
	if (sotp_ctx_new(&ctx) != SOTP_OK ||
	    sotp_ctx_load(ctx, grp.conf) != SOTP_OK ||
	    sotp_ctx_set_writer(ctx, grp.w) != SOTP_OK ||
	    sotp_attempt_begin(ctx, "C-NOTOKEN", "transaction", grp.now, &a) !=
	        SOTP_OK) {
		sotp_ctx_free(ctx);
		return NULL;
	}
	grp.rc_b = sotp_attempt_step(a, &grp.d_b);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
	return NULL;
}

static void
test_engine_pg_writer_timeout_spoils_no_group(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_decision d;
	struct holder other;
	char conf[160], code[16], sql[160];
	int rc;
	time_t now = T0 + 97000;
	long long step;
	pthread_t b;

	short_wait_conf(f, conf, sizeof(conf));
	/* A timed lock that has run out: the gate unlocks it, a write. */
	snprintf(sql, sizeof(sql),
	    "UPDATE contracts SET failures = 1, locked_until = %lld"
	    " WHERE id = 'C-NOTOKEN'",
	    (long long)now - 10);
	pg_sql(sql, NULL, 0);
	hold_rows("BEGIN; SELECT id FROM contracts WHERE id = 'C-NOTOKEN'"
	          " FOR UPDATE",
	    -1, &other);

	memset(&grp, 0, sizeof(grp));
	with_writer(conf, &ctx, &grp.w);
	pthread_mutex_init(&grp.lock, NULL);
	pthread_cond_init(&grp.cond, NULL);
	grp.conf = conf;
	grp.now = now;
	grp.armed = 1;
	sotp_store_set_trace(sotp_writer_store(grp.w), grp_trace, NULL);
	assert_int_equal(pthread_create(&b, NULL, grp_run_b, NULL), 0);
	oath(B32_A, now, NULL, code);
	rc = writer_decide(ctx, now, code, &d);
	assert_int_equal(pthread_join(b, NULL), 0);
	sotp_store_set_trace(sotp_writer_store(grp.w), NULL, NULL);
	hold_end(&other);

	/* B waited, alone, and was refused as the store's failure. */
	assert_int_equal(grp.rc_b, SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(grp.d_b.verdict, SOTP_REJECT);
	assert_int_equal(grp.d_b.reason, SOTP_R_STORE_UNAVAILABLE);
	/* A, grouped with it, was not. */
	if (rc != SOTP_OK || d.verdict != SOTP_ACCEPT)
		fail_msg("an accept grouped with another's lock timeout: rc %s,"
		         " verdict %d, reason %s: %s",
		    sotp_rc_name(rc), (int)d.verdict,
		    sotp_reason_name((int)d.reason), sotp_ctx_errmsg(ctx));
	if ((step = pg_last_step("T-OTP")) != (long long)(now / 30))
		fail_msg(
		    "the accept's mark is not committed: last_step %lld", step);
	/* And the writer serves the next group. */
	oath(B32_A, now + 30, NULL, code);
	assert_int_equal(writer_decide(ctx, now + 30, code, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_ctx_free(ctx);
	sotp_writer_free(grp.w);
	pthread_cond_destroy(&grp.cond);
	pthread_mutex_destroy(&grp.lock);
}

/* ---- transactions that take every chain's head ---- */

struct every_head {
	struct sotp_ctx *ctx;
	int rc;
	struct sotp_key_step st;
	char why[512];
};

/* An audit prune (removing nothing: it still takes every head). */
static void *
prune_every_head(void *arg)
{
	struct every_head *e = arg;
	struct sotp_audit_check check;
	int64_t removed = 0;

	e->rc = sotp_audit_prune(
	    e->ctx, (int64_t)T0 - DAY, NULL, 0, T0 + 20000, &removed, &check);
	snprintf(e->why, sizeof(e->why), "%s", sotp_ctx_errmsg(e->ctx));
	return NULL;
}

/* The retirement of a rotation, which tags every head again. */
static void *
retire_every_head(void *arg)
{
	struct every_head *e = arg;

	e->rc = sotp_key_rotate_step(e->ctx, T0 + 20000, 100, &e->st);
	snprintf(e->why, sizeof(e->why), "%s", sotp_ctx_errmsg(e->ctx));
	return NULL;
}

/*
 * An audit prune and a rotation's retirement at once, each on a
 * connection whose own chain is another (3 and 5), both made to wait for
 * head 1 (another session holds it) before either goes on: each takes
 * every head, and neither may be refused. Taking its own chain's head
 * first (sotp_store_begin) and then the others in chain order, each would
 * hold the head the other comes to next: a cycle the server breaks by
 * aborting one (deadlock detected).
 */
static void
test_engine_pg_every_head_in_chain_order(void **state)
{
	struct fx *f = *state;
	struct every_head a, b;
	struct holder h;
	struct sotp_key_step st;
	pthread_t ta, tb;
	char conf[256], n[16];
	int i;

	/* A rotation with nothing left to re-seal: its retirement is due. */
	assert_int_equal(sotp_key_rotate_begin(f->ctx, T0, &st), SOTP_OK);
	do
		assert_int_equal(
		    sotp_key_rotate_step(f->ctx, T0, 100, &st), SOTP_OK);
	while (st.what != SOTP_KEY_WAITING);
	/* Waits that only a cycle of locks could end. */
	timeouts_conf(f, 30000, 60000, conf, sizeof(conf));
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	assert_int_equal(sotp_ctx_new(&a.ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(a.ctx, conf), SOTP_OK);
	assert_int_equal(sotp_ctx_new(&b.ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(b.ctx, conf), SOTP_OK);
	sotp_store_audit_chain_home(a.ctx->st, 3);
	sotp_store_audit_chain_home(b.ctx->st, 5);

	hold_rows(
	    "BEGIN; SELECT k FROM audit_head WHERE k = 1 FOR UPDATE", 1, &h);
	assert_int_equal(pthread_create(&ta, NULL, prune_every_head, &a), 0);
	assert_int_equal(pthread_create(&tb, NULL, retire_every_head, &b), 0);
	/* Both wait for head 1 (a state, polled; up to 60 s). */
	for (i = 0; i < 2400; i++) {
		pg_sql("SELECT count(*) FROM pg_stat_activity"
		       " WHERE wait_event_type = 'Lock'",
		    n, sizeof(n));
		if (strcmp(n, "2") == 0)
			break;
		usleep(25 * 1000);
	}
	hold_end(&h);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	if (i == 2400)
		fail_msg("the two never both waited for head 1");
	if (a.rc != SOTP_OK || b.rc != SOTP_OK)
		fail_msg("audit prune: %s: %s; retirement: %s: %s",
		    sotp_rc_name(a.rc), a.why, sotp_rc_name(b.rc), b.why);
	assert_int_equal(b.st.what, SOTP_KEY_RETIRED);
	sotp_ctx_free(a.ctx);
	sotp_ctx_free(b.ctx);
}

/*
 * On PostgreSQL a contract's audit rows go to one of SOTP_AUDIT_CHAINS
 * chains, so that a decision waits only for the head of its own: with
 * every other chain's head held by another session (a farm busy with
 * other contracts), C-OTP's accept commits at once; the chains all
 * verify afterwards, each on its own.
 */
static void
test_engine_pg_chains_do_not_wait(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	struct sotp_audit_check chk;
	struct holder other;
	char code[16], sql[160];
	int chain;
	time_t now = T0 + 95000;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	assert_int_equal(sotp_store_audit_chains(ctx->st), SOTP_AUDIT_CHAINS);
	chain = sotp_store_audit_chain(ctx->st);
	assert_in_range(chain, 1, SOTP_AUDIT_CHAINS);
	snprintf(sql, sizeof(sql),
	    "BEGIN; SELECT 1 FROM audit_head WHERE k <> %d FOR UPDATE", chain);
	hold_rows(sql, SOTP_AUDIT_CHAINS - 1, &other);

	oath(B32_A, now, NULL, code);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "transaction", now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	hold_end(&other);
	if (d.verdict != SOTP_ACCEPT)
		fail_msg("C-OTP (chain %d) was not accepted while the other "
		         "chains were held: %s",
		    chain, sotp_reason_name(d.reason));

	assert_int_equal(sotp_audit_verify(ctx, &chk), SOTP_OK);
	if (chk.problem != SOTP_AUDIT_OK)
		fail_msg("the chains do not verify: %s", chk.what);
	print_message("%s\n", chk.what);
	assert_true(chk.chains >= 1);

	/* A row changed in C-OTP's chain is named with its chain. */
	snprintf(sql, sizeof(sql),
	    "UPDATE audit SET detail = 'x' WHERE chain = %d AND seq = 1",
	    chain);
	pg_sql(sql, NULL, 0);
	assert_int_equal(sotp_audit_verify(ctx, &chk), SOTP_OK);
	assert_int_equal(chk.problem, SOTP_AUDIT_CHANGED);
	assert_int_equal(chk.bad_chain, chain);
	assert_int_equal(chk.bad_seq, 1);
	if (chain > 1) {
		snprintf(sql, sizeof(sql), "chain %d: row ", chain);
		if (strncmp(chk.what, sql, strlen(sql)) != 0)
			fail_msg("the break does not name chain %d: %s", chain,
			    chk.what);
	}
	sotp_ctx_free(ctx);
}

/* Statements against the audit chain, while counting. */
static struct {
	int head_sets;
	int rows;
} chain_count;

static void
chain_trace(void *arg, const char *sql)
{
	(void)arg;
	if (strncmp(sql, "UPDATE audit_head", 17) == 0)
		chain_count.head_sets++;
	else if (strncmp(sql, "INSERT INTO audit ", 18) == 0)
		chain_count.rows++;
}

/*
 * A contract import writes its rows into the chain with the head read
 * and written once (sotp_audit_batch_begin), not once per row: on
 * PostgreSQL every UPDATE of the head in one transaction leaves a row
 * version that the next read walks past, so 10,000 rows a head update
 * each took minutes. The chain verifies afterwards.
 */
static void
test_engine_import_writes_head_once(void **state)
{
	struct fx *f = *state;
	struct sotp_contract_import_result res;
	struct sotp_audit_check chk;
	char hash[SOTP_HASH_MAX], *csv;
	size_t len = 0, cap = 40 * (SOTP_HASH_MAX + 32);
	int i;

	assert_int_equal(sotp_passwd_hash(NULL, "pw-import", hash), SOTP_OK);
	assert_non_null(csv = malloc(cap));
	for (i = 1; i <= 40; i++)
		len += (size_t)snprintf(
		    csv + len, cap - len, "IMP%04d,%s,otp,,,active\n", i, hash);
	memset(&chain_count, 0, sizeof(chain_count));
	sotp_store_set_trace(f->ctx->st, chain_trace, NULL);
	assert_int_equal(sotp_contract_import(f->ctx, csv, len, SOTP_FMT_CSV, 0,
	                     T0 + 1000, NULL, NULL, &res),
	    SOTP_OK);
	sotp_store_set_trace(f->ctx->st, NULL, NULL);
	free(csv);
	assert_int_equal(res.refused, 0);
	assert_int_equal(res.imported, 40);
	print_message("head updates %d, audit rows %d\n", chain_count.head_sets,
	    chain_count.rows);
	/* 40 contract rows and the summary's row; the head: the batch's
	 * one write and the summary's own. */
	assert_int_equal(chain_count.rows, 41);
	if (chain_count.head_sets != 2)
		fail_msg("the head was written %d times for 41 rows (want 2)",
		    chain_count.head_sets);
	assert_int_equal(sotp_audit_verify(f->ctx, &chk), SOTP_OK);
	if (chk.problem != SOTP_AUDIT_OK)
		fail_msg("the chain does not verify: %s", chk.what);
}

/* The refusals of one contract import, by line. */
struct import_refusals {
	int n;
	unsigned long line[8];
	char text[8][SOTP_MSG_MAX];
};

static int
collect_refusal(void *arg, unsigned long line, int reason, const char *text)
{
	struct import_refusals *r = arg;

	(void)reason;
	if (r->n < 8) {
		r->line[r->n] = line;
		snprintf(r->text[r->n], sizeof(r->text[0]), "%s", text);
	}
	r->n++;
	return 0;
}

/*
 * A store of its own in dir (a mkdtemp template), under write_policy's
 * policy with extra; own_store_free removes it all.
 */
static struct sotp_ctx *
own_store(char *dir, const char *extra)
{
	struct sotp_ctx *ctx = NULL;
	char conf[64];

	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/p.conf", dir);
	write_policy(conf, extra);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_init(ctx, conf), SOTP_OK);
	return ctx;
}

static void
own_store_free(const char *dir, struct sotp_ctx *ctx)
{
	char cmd[64];

	sotp_ctx_free(ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/*
 * Contract import's record edges: a card one digit longer than the
 * policy's largest (26 x 10) is refused, not cut to fit; "...,serial,"
 * (six fields, the status empty) is a record, and a seventh field is
 * refused.
 */
static void
test_engine_import_record_edges(void **state)
{
	char dir[] = "/tmp/sotp-imp.XXXXXX";
	char hash[SOTP_HASH_MAX], grid[300], buf[2048];
	struct sotp_contract_import_result res;
	struct import_refusals rf;
	struct sotp_contract_info info;
	struct sotp_ctx *ctx;
	int i, n;

	(void)state;
	ctx = own_store(dir, "[card]\nrows = 26\ncolumns = 10\ncells = 8\n");
	assert_int_equal(sotp_passwd_hash(NULL, "pw-edge", hash), SOTP_OK);
	for (i = 0; i < 261; i++)
		grid[i] = (char)('0' + i % 10);
	grid[261] = '\0';
	n = snprintf(buf, sizeof(buf),
	    "E1,%s,card,%s,,active\n"
	    "E2,%s,otp,,,\n"
	    "E3,%s,otp,,,active,\n",
	    hash, grid, hash, hash);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	memset(&rf, 0, sizeof(rf));
	assert_int_equal(sotp_contract_import(ctx, buf, (size_t)n, SOTP_FMT_CSV,
	                     1, T0, collect_refusal, &rf, &res),
	    SOTP_OK);
	for (i = 0; i < rf.n && i < 8; i++)
		print_message("line %lu: %s\n", rf.line[i], rf.text[i]);
	assert_int_equal(res.records, 3);
	assert_int_equal(rf.n, 2);
	assert_int_equal(rf.line[0], 1);
	assert_non_null(strstr(rf.text[0], "card has 261 digits"));
	assert_int_equal(rf.line[1], 3);
	assert_non_null(strstr(rf.text[1], "more than 6 fields"));
	/* 260 digits and the empty status: both in. */
	grid[260] = '\0';
	n = snprintf(buf, sizeof(buf), "E1,%s,card,%s,,active\nE2,%s,otp,,,\n",
	    hash, grid, hash);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	memset(&rf, 0, sizeof(rf));
	assert_int_equal(sotp_contract_import(ctx, buf, (size_t)n, SOTP_FMT_CSV,
	                     0, T0, collect_refusal, &rf, &res),
	    SOTP_OK);
	assert_int_equal(rf.n, 0);
	assert_int_equal(res.imported, 2);
	assert_int_equal(sotp_contract_get(ctx, "E2", &info), SOTP_OK);
	assert_int_equal(info.closed, 0);
	assert_int_equal(info.locked_until, 0);
	assert_int_equal(sotp_contract_get(ctx, "E1", &info), SOTP_OK);
	assert_int_equal(info.has_card, 1);
	own_store_free(dir, ctx);
}

/* The cells C-CARD's login asks for (a question left unanswered). */
static void
card_question(struct fx *f, time_t now, char *cells, size_t cellsz)
{
	const struct input in = {
	    "pw-card", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL};
	struct sotp_decision d;
	unsigned int asked;

	run(f, "C-CARD", "login", now, &in, &d, &asked);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(d.ask, SOTP_F_CARD);
	assert_true(d.card_cells[0] != '\0');
	snprintf(cells, cellsz, "%s", d.card_cells);
}

static void
card_login(struct fx *f, time_t now, enum card_kind card, int reason)
{
	const struct input in = {
	    "pw-card", NO_CODE, NULL, NULL, card, f->grid_card, NULL, NULL};
	struct sotp_decision d;
	unsigned int asked;

	run(f, "C-CARD", "login", now, &in, &d, &asked);
	assert_int_equal(d.reason, reason);
}

/*
 * A card question names the same cells until it is answered right, on
 * every server: one left unanswered or answered wrong shows nothing new,
 * so that someone
 * who knows a few cells cannot ask again until it names only those.
 * Every right answer makes the next cells new.
 */
static void
test_engine_card_cells_stay_until_answered(void **state)
{
	struct fx *f = *state;
	char first[32], again[32], after[32];
	struct sotp_ctx *mine, *other = NULL;
	time_t t = T0;
	int i;

	card_question(f, t, first, sizeof(first));
	for (i = 0; i < 3; i++) {
		card_question(f, t += 40, again, sizeof(again));
		assert_string_equal(again, first);
	}
	/* Another server (a context of its own on the store): the same. */
	mine = f->ctx;
	assert_int_equal(sotp_ctx_new(&other), SOTP_OK);
	assert_int_equal(sotp_init(other, f->conf), SOTP_OK);
	f->ctx = other;
	card_question(f, t += 40, again, sizeof(again));
	f->ctx = mine;
	sotp_ctx_free(other);
	assert_string_equal(again, first);
	card_login(f, t += 40, WRONG_CARD, SOTP_R_WRONG_CARD);
	card_question(f, t += 40, again, sizeof(again));
	assert_string_equal(again, first);
	for (i = 0; i < 3; i++) {
		card_login(f, t += 40, GOOD_CARD, SOTP_R_ACCEPTED);
		card_question(f, t += 40, after, sizeof(after));
		if (strcmp(after, again) == 0)
			fail_msg(
			    "a right answer left the question at %s", after);
		snprintf(again, sizeof(again), "%s", after);
	}
}

/*
 * A card answer is good once. Two attempts are shown the same cells (they
 * stay until answered); the second answers right first, which reseals
 * the card. The first's answer to the same cells, right as it is, is
 * then refused as WRONG_CARD and counted, its row saying why; another
 * server's attempt, which read the card before that reseal, the same.
 * It used to be accepted: an answer seen once let a second session in
 * for as long as its challenge lived.
 */
static void
card_pending(struct fx *f, struct sotp_ctx *ctx, time_t now,
    struct sotp_attempt **a, char *answer)
{
	struct sotp_decision d;

	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-CARD", "login", now, a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(*a, "pw-card"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(*a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(d.ask, SOTP_F_CARD);
	card_answer(f->grid_card, d.card_cells, answer);
}

static void
card_spent(struct sotp_attempt *a, const char *answer)
{
	struct sotp_decision d;

	assert_int_equal(sotp_attempt_answer(a, answer), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	if (d.verdict != SOTP_REJECT || d.reason != SOTP_R_WRONG_CARD)
		fail_msg("a right answer to cells answered since: verdict %d,"
		         " reason %s",
		    d.verdict, sotp_reason_name((int)d.reason));
	sotp_attempt_free(a);
}

static void
test_engine_card_answer_good_once(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *first = NULL, *far = NULL;
	struct sotp_ctx *other = NULL;
	struct sotp_contract_info ci;
	struct audit_rows rows;
	char answer[16], again[16];
	time_t t = T0 + 3 * DAY;

	card_pending(f, f->ctx, t, &first, answer);
	assert_int_equal(sotp_ctx_new(&other), SOTP_OK);
	assert_int_equal(sotp_init(other, f->conf), SOTP_OK);
	card_pending(f, other, t + 1, &far, again);
	assert_string_equal(again, answer);
	card_login(f, t + 2, GOOD_CARD, SOTP_R_ACCEPTED);
	card_spent(first, answer);
	card_spent(far, answer);
	sotp_ctx_free(other);
	assert_int_equal(sotp_contract_get(f->ctx, "C-CARD", &ci), SOTP_OK);
	assert_int_equal(ci.failures, 2);
	audit_rows_of(f, t, &rows);
	if (strstr(rows.text,
	        "reason=WRONG_CARD detail=failures=1 "
	        "cells=answered") == NULL ||
	    strstr(rows.text,
	        "reason=WRONG_CARD detail=failures=2 "
	        "cells=answered") == NULL)
		fail_msg("the refusals' rows do not say why:\n%s", rows.text);
	/* The card's next cells are new, and answered right once. */
	card_login(f, t + 3, GOOD_CARD, SOTP_R_ACCEPTED);
}

/*
 * Good once however few cells the card has. A right answer used to seal
 * the card afresh and leave it at that: the new sealing draws its cells
 * at random, and one time in 2,450 (50 x 49, two cells of a 5 x 10
 * card) it drew the same ones again; an attempt shown those cells
 * before the reseal, answering after it, was then accepted with the same
 * answer (CI's t_race saw two accepts in one of its card rounds). On a
 * card of two cells asked one at a time that was every other round: two
 * attempts on the same question, answered one after the other, 40
 * times; the second is refused each time, and the question moves on.
 */
static void
test_engine_small_card_answer_good_once(void **state)
{
	char dir[] = "/tmp/sotp-card.XXXXXX", grid[256];
	char cells[32], ans1[32], ans2[32], last[32] = "";
	struct sotp_attempt *a1 = NULL, *a2 = NULL;
	struct sotp_ctx *ctx;
	struct sotp_decision d;
	time_t t = T0;
	int i;

	(void)state;
	ctx = own_store(dir, "[card]\nrows = 1\ncolumns = 2\ncells = 1\n");
	assert_int_equal(sotp_contract_add(ctx, "C-TWO", "pw", t, &d), SOTP_OK);
	assert_int_equal(
	    sotp_contract_card(ctx, "C-TWO", t, grid, sizeof(grid), &d),
	    SOTP_OK);
	assert_int_equal(
	    sotp_contract_set_login(ctx, "C-TWO", SOTP_LOGIN_CARD, t, &d),
	    SOTP_OK);
	for (i = 0; i < 40; i++, t += 40) {
		assert_int_equal(
		    sotp_attempt_begin(ctx, "C-TWO", "login", t, &a1), SOTP_OK);
		assert_int_equal(sotp_attempt_answer(a1, "pw"), SOTP_OK);
		assert_int_equal(sotp_attempt_step(a1, &d), SOTP_OK);
		assert_int_equal(d.ask, SOTP_F_CARD);
		snprintf(cells, sizeof(cells), "%s", d.card_cells);
		card_answer(grid, d.card_cells, ans1);
		if (strcmp(cells, last) == 0)
			fail_msg(
			    "round %d: a right answer left the question at %s",
			    i, cells);
		assert_int_equal(
		    sotp_attempt_begin(ctx, "C-TWO", "login", t + 1, &a2),
		    SOTP_OK);
		assert_int_equal(sotp_attempt_answer(a2, "pw"), SOTP_OK);
		assert_int_equal(sotp_attempt_step(a2, &d), SOTP_OK);
		assert_string_equal(d.card_cells, cells);
		card_answer(grid, d.card_cells, ans2);
		assert_int_equal(sotp_attempt_answer(a1, ans1), SOTP_OK);
		assert_int_equal(sotp_attempt_step(a1, &d), SOTP_OK);
		assert_int_equal(d.reason, SOTP_R_ACCEPTED);
		assert_int_equal(sotp_attempt_answer(a2, ans2), SOTP_OK);
		assert_int_equal(sotp_attempt_step(a2, &d), SOTP_OK);
		if (d.verdict != SOTP_REJECT || d.reason != SOTP_R_WRONG_CARD)
			fail_msg(
			    "round %d: the same answer to %s accepted twice "
			    "(reason %s)",
			    i, cells, sotp_reason_name((int)d.reason));
		sotp_attempt_free(a1);
		sotp_attempt_free(a2);
		snprintf(last, sizeof(last), "%s", cells);
	}
	own_store_free(dir, ctx);
}

/* The largest card the policy allows (26 x 10) can be issued and used. */
static void
test_engine_largest_card(void **state)
{
	char dir[] = "/tmp/sotp-card.XXXXXX", grid[2048];
	struct sotp_ctx *ctx;
	struct sotp_decision d;

	(void)state;
	ctx = own_store(dir, "[card]\nrows = 26\ncolumns = 10\ncells = 8\n");
	assert_int_equal(
	    sotp_contract_add(ctx, "C-BIG", "pw", T0, &d), SOTP_OK);
	assert_int_equal(
	    sotp_contract_card(ctx, "C-BIG", T0, grid, sizeof(grid), &d),
	    SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_non_null(strstr(grid, "\nZ "));
	assert_int_equal(
	    sotp_contract_set_login(ctx, "C-BIG", SOTP_LOGIN_CARD, T0, &d),
	    SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	own_store_free(dir, ctx);
}

/* ---- secrets at rest ---- */

static void
test_engine_wrong_master_key_refused(void **state)
{
	struct fx *f = *state;
	char path[160], bak[160];
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char code[16];

	/*
	 * Replace the key file with another key: it is the key-encryption
	 * key, and the store's data key is wrapped under the old one only
	 * (each file KEK is named by its fingerprint), so the context is
	 * refused at load, before any attempt, naming why.
	 */
	snprintf(path, sizeof(path), "%s/master.key", f->dir);
	snprintf(bak, sizeof(bak), "%s/master.key.bak", f->dir);
	assert_int_equal(rename(path, bak), 0);
	assert_int_equal(sotp_key_create(path, code, sizeof(code)), SOTP_OK);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_ERR_KEY);
	if (strstr(sotp_ctx_errmsg(ctx),
	        "key version 1 has no copy wrapped under file:") == NULL)
		fail_msg("load with another key: %s", sotp_ctx_errmsg(ctx));
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "transaction", T0 + 40000, &a),
	    SOTP_OK);
	sotp_attempt_set(a, SOTP_F_OTP, "123456");
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_ERR_CONFIG);
	assert_int_equal(d.verdict, SOTP_REJECT);
	sotp_attempt_free(a);
	sotp_ctx_free(ctx);
	assert_int_equal(rename(bak, path), 0);
}

static void
test_engine_tampered_secret_refused(void **state)
{
	struct fx *f = *state;
	char code[16];
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	/* Move T-CARD's sealed secret onto T-OTP: the serial is the AAD. */
	raw_sql(f->dir,
	    "UPDATE tokens SET secret = (SELECT secret FROM "
	    "tokens WHERE serial = 'T-CARD') WHERE serial = "
	    "'T-OTP'");
	oath(B32_B, T0 + 50000, NULL, code);
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "transaction", T0 + 50000, &a),
	    SOTP_OK);
	sotp_attempt_set(a, SOTP_F_OTP, code);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_ERR_DECRYPT);
	assert_int_equal(d.verdict, SOTP_REJECT);
	sotp_attempt_free(a);
}

/* The card question of a login on C-CARD: the step's return code. */
static int
card_step(struct fx *f, time_t now, struct sotp_decision *d)
{
	struct sotp_attempt *a = NULL;
	int rc;

	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-CARD", "login", now, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-card"), SOTP_OK);
	rc = sotp_attempt_step(a, d);
	if (rc == SOTP_OK && d->verdict == SOTP_CONTINUE) {
		assert_int_equal(d->ask, SOTP_F_CARD);
		assert_int_equal(sotp_attempt_answer(a, "00"), SOTP_OK);
		rc = sotp_attempt_step(a, d);
	}
	sotp_attempt_free(a);
	return rc;
}

/*
 * A tampered card fails closed: one moved from another contract (the ID
 * is the AAD) is asked, and its answer refused as undecryptable; one
 * whose header names a key version nobody holds is refused at once, as
 * its cells come from that version's key.
 */
static void
test_engine_tampered_card_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;

	raw_sql(f->dir,
	    "UPDATE contracts SET card = (SELECT card FROM "
	    "contracts WHERE id = 'C-REG') WHERE id = 'C-CARD'");
	assert_int_equal(card_step(f, T0 + 50000, &d), SOTP_ERR_DECRYPT);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "C-CARD"));
	raw_sql(f->dir,
	    pg_url() != NULL
	        ? "UPDATE contracts SET card = '\\x020000fff0'::bytea || "
	          "substring(card from 6) WHERE id = 'C-CARD'"
	        : "UPDATE contracts SET card = CAST(X'020000fff0' || "
	          "substr(card, 6) AS BLOB) WHERE id = 'C-CARD'");
	assert_int_equal(card_step(f, T0 + 50100, &d), SOTP_ERR_DECRYPT);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "key version 65520"));
}

static void
test_engine_store_down_fails_closed(void **state)
{
	struct fx *f = *state;
	char db[160], code[16];
	struct sotp_ctx *ctx = NULL;

	/* What a Status-Server probe asks (sotp_ready): yes, then no. */
	assert_int_equal(sotp_ready(NULL), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ready(ctx), SOTP_ERR_CONFIG);
	sotp_ctx_free(ctx);
	ctx = NULL;
	assert_int_equal(sotp_ready(f->ctx), SOTP_OK);
	snprintf(db, sizeof(db), "%s/shinkin-otp.db", f->dir);
	assert_int_equal(unlink(db), 0);
	assert_int_equal(sotp_ready(f->ctx), SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(
	    strstr(sotp_ctx_errmsg(f->ctx), "removed or replaced while open"));
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(
	    sotp_ctx_load(ctx, f->conf), SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(sotp_ctx_errmsg(ctx), db));
	sotp_ctx_free(ctx);
	/* The open context fails closed too: the file it had is gone. */
	oath(B32_A, T0 + 60000, NULL, code);
	{
		struct sotp_attempt *a = NULL;
		struct sotp_decision d;

		assert_int_equal(sotp_attempt_begin(f->ctx, "C-OTP",
		                     "transaction", T0 + 60000, &a),
		    SOTP_OK);
		sotp_attempt_set(a, SOTP_F_OTP, code);
		assert_int_equal(
		    sotp_attempt_step(a, &d), SOTP_ERR_STORE_UNAVAILABLE);
		assert_int_equal(d.verdict, SOTP_REJECT);
		assert_int_equal(d.reason, SOTP_R_STORE_UNAVAILABLE);
		sotp_attempt_free(a);
	}
}

/*
 * A name is logged or audited only once it is known to be a contract's:
 * what reaches the User-Name may be a password typed into the wrong
 * field. The old code named any well-formed name in the error line of a
 * store it could not ask ("contract pw-Hunter2: store unavailable"), and
 * in the row and line of a refused state. A name whose contract exists
 * is still named when the store answers.
 */
static void
expect_unnamed(const char *what, const char *name, int named)
{
	char want[64];

	snprintf(want, sizeof(want), "contract=%s ", name);
	if (!named && strstr(logged.text, name) != NULL)
		fail_msg(
		    "%s: the name %s was logged:\n%s", what, name, logged.text);
	if (named && strstr(logged.text, want) == NULL)
		fail_msg("%s: the contract %s was not named:\n%s", what, name,
		    logged.text);
	logged.len = 0;
	logged.text[0] = '\0';
}

static void
refuse_bad_state(struct fx *f, const char *id)
{
	static const uint8_t junk[] = {2, 'n', 'o', 't', ' ', 'a', ' ', 's'};
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	assert_int_equal(sotp_attempt_resume(f->ctx, id, "login", junk,
	                     sizeof(junk), T0 + 62000, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "123456"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_STATE_INVALID);
	sotp_attempt_free(a);
}

/* A refusal of an unknown context: decided before the contract is read. */
static void
refuse_unknown_context(struct fx *f, const char *id)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	assert_int_equal(
	    sotp_attempt_begin(f->ctx, id, "nosuch", T0 + 62000, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "123456"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_UNKNOWN_CONTEXT);
	sotp_attempt_free(a);
}

static void
test_engine_unknown_name_never_logged(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char db[160];

	logged.len = 0;
	logged.text[0] = '\0';
	sotp_ctx_set_log(f->ctx, log_keep, NULL, 0);
	refuse_bad_state(f, "pw-Hunter2");
	expect_unnamed("a bad state, no such contract", "pw-Hunter2", 0);
	refuse_bad_state(f, "C-OTP");
	expect_unnamed("a bad state, a contract", "C-OTP", 1);
	/* An unknown context (a context= typo) refuses a real contract too:
	 * its row names it, as a bad state's does. */
	refuse_unknown_context(f, "pw-Hunter2");
	expect_unnamed("an unknown context, no such contract", "pw-Hunter2", 0);
	refuse_unknown_context(f, "C-OTP");
	expect_unnamed("an unknown context, a contract", "C-OTP", 1);

	/* The store cannot be asked: nobody is named. */
	if (pg_url() != NULL)
		pg_sql("SELECT count(pg_terminate_backend(pid, 5000))"
		       " FROM pg_stat_activity WHERE datname ="
		       " current_database() AND pid <> pg_backend_pid()",
		    NULL, 0);
	else {
		snprintf(db, sizeof(db), "%s/shinkin-otp.db", f->dir);
		assert_int_equal(unlink(db), 0);
	}
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "pw-Hunter2", "login", T0 + 62000, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_answer(a, "hunter2"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(d.reason, SOTP_R_STORE_UNAVAILABLE);
	sotp_attempt_free(a);
	if (strstr(logged.text, "store unavailable") == NULL)
		fail_msg("no line for the lost store:\n%s", logged.text);
	expect_unnamed("a lost store", "pw-Hunter2", 0);
	sotp_ctx_set_log(f->ctx, NULL, NULL, 0);
}

/*
 * A connection the database server drops (restart, failover) under a
 * context that lives on, as radiusd's do: the attempt that meets the loss
 * is refused and spends nothing; the next one reopens and is decided.
 */
static void
test_engine_pg_connection_lost_heals(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t t = T0 + 61000;
	char code[16];

	oath(B32_A, t, NULL, code);
	pg_sql("SELECT count(pg_terminate_backend(pid, 5000))"
	       " FROM pg_stat_activity WHERE datname = current_database()"
	       " AND pid <> pg_backend_pid()",
	    NULL, 0);
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "transaction", t, &a), SOTP_OK);
	sotp_attempt_set(a, SOTP_F_OTP, code);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_STORE_UNAVAILABLE);
	sotp_attempt_free(a);
	/* The same code, next request: the context has reopened. */
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "transaction", t, &a), SOTP_OK);
	sotp_attempt_set(a, SOTP_F_OTP, code);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_attempt_free(a);
	/* A Status-Server probe (sotp_ready) meets a loss the same way. */
	assert_int_equal(sotp_ready(f->ctx), SOTP_OK);
	pg_sql("SELECT count(pg_terminate_backend(pid, 5000))"
	       " FROM pg_stat_activity WHERE datname = current_database()"
	       " AND pid <> pg_backend_pid()",
	    NULL, 0);
	assert_int_equal(sotp_ready(f->ctx), SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(sotp_ready(f->ctx), SOTP_OK);
}

/*
 * A reconnect reads the key ring again: the database a context comes
 * back to may be another server (a promoted standby), or its ring may
 * have moved while the connection was down. A context that lives on
 * (radiusd's) takes the current version up at the first request after
 * the reopen, not a refresh interval (300 s here) later.
 */
static void
test_engine_pg_reconnect_rereads_keys(void **state)
{
	struct fx *f = *state;
	struct sotp_ctx *a = NULL;
	struct sotp_attempt *at = NULL;
	struct sotp_decision d;
	struct sotp_key_step st;
	time_t t = T0 + 62000;
	uint32_t kv = 0;
	char code[16], *conf = NULL, *at300;
	size_t n = 0;
	FILE *fp;

	/* The policy with refresh = 300 in place of the shipped 10. */
	assert_non_null(fp = fopen(f->conf, "r"));
	assert_int_equal(getdelim(&conf, &n, '\0', fp) > 0, 1);
	fclose(fp);
	assert_non_null(at300 = strstr(conf, "\nrefresh = 10\n"));
	assert_non_null(fp = fopen(f->conf, "w"));
	fprintf(fp, "%.*s\nrefresh = 300\n%s", (int)(at300 - conf), conf,
	    at300 + strlen("\nrefresh = 10\n"));
	fclose(fp);
	free(conf);
	assert_int_equal(sotp_ctx_new(&a), SOTP_OK);
	assert_int_equal(sotp_ctx_load(a, f->conf), SOTP_OK);
	assert_int_equal(sotp_keys_current(a, &kv), SOTP_OK);
	assert_int_equal(kv, 1);
	/* Another server begins a rotation: version 2 is current... */
	assert_int_equal(sotp_key_rotate_begin(f->ctx, t, &st), SOTP_OK);
	assert_int_equal(st.version, 2);
	/* ...which a, inside its refresh interval, has not looked for. */
	assert_int_equal(sotp_keys_current(a, &kv), SOTP_OK);
	assert_int_equal(kv, 1);

	pg_sql("SELECT count(pg_terminate_backend(pid, 5000))"
	       " FROM pg_stat_activity WHERE datname = current_database()"
	       " AND pid <> pg_backend_pid()",
	    NULL, 0);
	oath(B32_A, t, NULL, code);
	assert_int_equal(
	    sotp_attempt_begin(a, "C-OTP", "transaction", t, &at), SOTP_OK);
	sotp_attempt_set(at, SOTP_F_OTP, code);
	assert_int_equal(sotp_attempt_step(at, &d), SOTP_ERR_STORE_UNAVAILABLE);
	sotp_attempt_free(at);
	/* The next request reopens, and finds version 2. */
	assert_int_equal(
	    sotp_attempt_begin(a, "C-OTP", "transaction", t, &at), SOTP_OK);
	sotp_attempt_set(at, SOTP_F_OTP, code);
	assert_int_equal(sotp_attempt_step(at, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_attempt_free(at);
	assert_int_equal(sotp_keys_current(a, &kv), SOTP_OK);
	assert_int_equal(kv, 2);
	sotp_ctx_free(a);
}

/*
 * f->ctx under a copy of the policy whose lock_timeout is 30 s (the
 * statement_timeout 60 s, which bounds the same wait): a binding that
 * waits for lock_order_probe's row lock waits as long as the probe takes.
 */
static void
long_wait_ctx(struct fx *f)
{
	char conf[160];

	timeouts_conf(f, 30000, 60000, conf, sizeof(conf));
	sotp_ctx_free(f->ctx);
	f->ctx = NULL;
	assert_int_equal(sotp_ctx_new(&f->ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(f->ctx, conf), SOTP_OK);
}

/*
 * The lockout race on PostgreSQL: another server has locked the
 * contract's row to lock the contract when this attempt has read it
 * (unlocked) but not yet taken it for its decision. The attempt waits on
 * the row lock (a child commits the lock once the server shows the wait)
 * and then refuses as locked, so parallel guesses on several servers
 * cannot outrun the threshold.
 *
 * The wait is long_wait_ctx's (30 s), and the child looks for it for up
 * to 60 s: under the shipped lock_timeout (1 s) a child that a busy host
 * held for a second between seeing the wait and its COMMIT (each look is
 * a new backend) ended the wait first, and the attempt was refused as
 * STORE_UNAVAILABLE.
 */
static void
test_engine_pg_lock_rechecked_under_row_lock(void **state)
{
	struct fx *f = *state;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t t = T0 + 30000;
	int go[2], wst;
	char code[16], c = 'g';
	pid_t pid;

	long_wait_ctx(f);
	oath(B32_A, t, NULL, code);
	assert_int_equal(pipe(go), 0);
	if ((pid = fork()) == 0) {
		PGconn *conn = PQconnectdb(pg_url());
		PGresult *res;
		char n[16];
		int i;

		close(go[0]);
		res = PQexec(conn,
		    "BEGIN; UPDATE contracts SET failures = 5,"
		    " locked_until = -1 WHERE id = 'C-OTP'");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			_exit(2);
		PQclear(res);
		if (write(go[1], &c, 1) != 1)
			_exit(3);
		for (i = 0; i < 2400; i++) {
			pg_sql("SELECT count(*) FROM pg_stat_activity"
			       " WHERE wait_event_type = 'Lock'",
			    n, sizeof(n));
			if (strcmp(n, "0") != 0)
				break;
			usleep(25 * 1000);
		}
		res = PQexec(conn, "COMMIT");
		_exit(PQresultStatus(res) == PGRES_COMMAND_OK && i < 2400 ? 0
		                                                          : 4);
	}
	assert_true(pid > 0);
	close(go[1]);
	assert_int_equal(read(go[0], &c, 1), 1);
	close(go[0]);
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, "C-OTP", "login", t, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_set(a, SOTP_F_OTP, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_LOCKED);
	assert_true(d.locked);
	sotp_attempt_free(a);
}

/*
 * One lock order on PostgreSQL, contract before token: a child holds the
 * contract's row lock; once the parent's binding waits for it, the
 * token's row must still be free (SELECT ... FOR UPDATE NOWAIT), so the
 * binding has not taken the token first. Two transactions taking the
 * rows in opposite orders wait on each other until the server's
 * deadlock detector kills one. Returns the child's pid; it exits 0 when
 * the token was free, 5 when the waiting binding held it, else 2..4.
 *
 * Nothing here is timed but the bounds: the child looks for the wait on
 * the connection it probes with (a new backend per look took tens of ms
 * of a busy host each), for up to 30 s; the binding waits under the
 * policy's lock_timeout, which long_wait_ctx makes 30 s, so a host that
 * stalls the child for a second or more (ASan, a CI run beside it) does
 * not end the wait before the probe.
 */
static pid_t
lock_order_probe(const char *contract, const char *serial)
{
	int go[2];
	char c = 'g';
	pid_t pid;

	assert_int_equal(pipe(go), 0);
	if ((pid = fork()) == 0) {
		PGconn *hold = PQconnectdb(pg_url());
		PGconn *probe = PQconnectdb(pg_url());
		PGresult *res;
		struct timespec t0, t1;
		char sql[256];
		int waiting = 0, token_free;

		close(go[0]);
		if (PQstatus(hold) != CONNECTION_OK ||
		    PQstatus(probe) != CONNECTION_OK)
			_exit(2);
		snprintf(sql, sizeof(sql),
		    "BEGIN; SELECT id FROM contracts WHERE id = '%s'"
		    " FOR UPDATE",
		    contract);
		res = PQexec(hold, sql);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			_exit(2);
		PQclear(res);
		if (write(go[1], &c, 1) != 1)
			_exit(3);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			res = PQexec(probe,
			    "SELECT count(*) FROM pg_stat_activity"
			    " WHERE wait_event_type = 'Lock'");
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				_exit(4);
			waiting = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
			PQclear(res);
			if (waiting)
				break;
			usleep(2 * 1000);
			clock_gettime(CLOCK_MONOTONIC, &t1);
		} while (t1.tv_sec - t0.tv_sec < 30);
		snprintf(sql, sizeof(sql),
		    "BEGIN; SELECT serial FROM tokens WHERE serial = '%s'"
		    " FOR UPDATE NOWAIT",
		    serial);
		res = PQexec(probe, sql);
		token_free = PQresultStatus(res) == PGRES_TUPLES_OK;
		PQclear(res);
		PQclear(PQexec(probe, "ROLLBACK"));
		res = PQexec(hold, "COMMIT");
		if (PQresultStatus(res) != PGRES_COMMAND_OK || !waiting)
			_exit(4);
		_exit(token_free ? 0 : 5);
	}
	assert_true(pid > 0);
	close(go[1]);
	assert_int_equal(read(go[0], &c, 1), 1);
	close(go[0]);
	return pid;
}

static void
expect_probe(pid_t pid)
{
	int wst;

	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	if (WEXITSTATUS(wst) == 5)
		fail_msg("the binding held the token's row lock while it "
		         "waited for the contract's: token before contract");
	assert_int_equal(WEXITSTATUS(wst), 0);
}

/* An admin's "contract bind" (bind_locked): the contract first. */
static void
test_engine_pg_bind_locks_contract_first(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	time_t t = T0 + 5 * DAY;
	char code[16];
	pid_t pid;

	long_wait_ctx(f);
	oath(B32_E, t, NULL, code);
	pid = lock_order_probe("C-REG", "T-REG");
	assert_int_equal(sotp_contract_bind(f->ctx, "C-REG", "T-REG", code,
	                     SOTP_LOGIN_OTP, t, &d),
	    SOTP_OK);
	expect_probe(pid);
	assert_int_equal(d.reason, SOTP_R_ACCEPTED);
	expect_contract(f, "C-REG", "T-REG", 0);
}

/*
 * A registration over RADIUS binds at its last round (the card digits),
 * in the decision's own transaction: the contract first there too.
 */
static void
test_engine_pg_registration_locks_contract_first(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	struct st a = {.n = 0};
	time_t t = T0 + 6 * DAY;
	char code[16];
	pid_t pid;

	long_wait_ctx(f);
	oath(B32_E, t, NULL, code);
	reg_round(f, "C-REG", &a, "pw-reg", t, &d);
	reg_round(f, "C-REG", &a, "T-REG", t + 1, &d);
	reg_round(f, "C-REG", &a, code, t + 2, &d);
	reg_round(f, "C-REG", &a, "1", t + 3, &d);
	assert_int_equal(d.ask, SOTP_F_CARD);
	card_answer(f->grid_reg, d.card_cells, code);
	pid = lock_order_probe("C-REG", "T-REG");
	reg_round(f, "C-REG", &a, code, t + 4, &d);
	expect_probe(pid);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	expect_contract(f, "C-REG", "T-REG", 0);
}

static void
test_engine_store_holds_no_plain_secret(void **state)
{
	struct fx *f = *state;
	char cmd[1400];

	/*
	 * Neither the base32 form nor the raw bytes of a secret, in the
	 * files or in a dump of the database (where bytes show as hex).
	 * B32_A is base32 of "Hello!\xde\xad\xbe\xef" twice.
	 */
	if (pg_url() != NULL)
		snprintf(cmd, sizeof(cmd),
		    "pg_dump '%s' | grep -a -i -c -e %s -e 'Hello!'"
		    " -e 48656c6c6f21 >/dev/null; [ $? -eq 1 ]",
		    pg_url(), B32_A);
	else
		snprintf(cmd, sizeof(cmd),
		    "cat %s/shinkin-otp.db* | grep -a -c -e %s -e 'Hello!' "
		    ">/dev/null; [ $? -eq 1 ]",
		    f->dir, B32_A);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest sqlite_only[] = {
	    T(test_engine_lock_rechecked_under_write_lock),
	    T(test_engine_password_only_rechecked_under_write_lock),
	    T(test_engine_store_down_fails_closed),
	    T(test_engine_locked_store_waits_once),
	    T(test_engine_uncommitted_guess_is_a_store_failure),
	};
	const struct CMUnitTest pg_only[] = {
	    T(test_engine_pg_lock_rechecked_under_row_lock),
	    T(test_engine_pg_connection_lost_heals),
	    T(test_engine_pg_reconnect_rereads_keys),
	    T(test_engine_pg_bind_locks_contract_first),
	    T(test_engine_pg_registration_locks_contract_first),
	    T(test_engine_pg_locked_row_waits_once),
	    T(test_engine_pg_unaudited_accept_logged_as_refused),
	    T(test_engine_pg_chains_do_not_wait),
	    T(test_engine_pg_writer_decision),
	    T(test_engine_pg_unaudited_refusal_counted),
	    T(test_engine_pg_unbound_under_the_lock),
	    T(test_engine_pg_disabled_before_cas),
	    T(test_engine_pg_disable_holding_the_row),
	    T(test_engine_pg_writer_timeout_spoils_no_group),
	    T(test_engine_pg_every_head_in_chain_order),
	};
#undef T
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_refused_after_passwd, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_layout_versions, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_bound_to_the_rehash, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_contexts, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_unknown_name_never_logged, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_registration, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_lockout_mixed_factors, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_window_edges_and_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_drift_learned, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_resync, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_one_token_per_contract, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_tokens, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_reexport_is_the_same_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_registration_rounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_registration_token_gone, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_registration_needs_its_rounds, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_forgiving_input, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_unmapped_service, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_overlong_input_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_spent_by_malformed_answer, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_append_mode_decides, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_once_after_clock_step_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_once_across_skewed_servers, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_body_checked, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_unknown_reads_as_wrong_password, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_unknown_revealed, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_import_writes_head_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_card_cells_stay_until_answered, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_card_answer_good_once, setup, teardown),
	    cmocka_unit_test(test_engine_small_card_answer_good_once),
	    cmocka_unit_test(test_engine_largest_card),
	    cmocka_unit_test(test_engine_import_record_edges),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_mac_failure_refuses, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_unverifiable_is_a_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_wrong_master_key_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_tampered_secret_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_tampered_card_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_store_holds_no_plain_secret, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_uncommitted_rehash_not_logged_as_accept, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_uncommitted_admin_change_not_logged_as_accept,
	        setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_uncommitted_prune_not_logged_as_accept, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_first_cause_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_rotation_races_writer, setup, teardown),
	};

	int failed;

	failed = cmocka_run_group_tests_name(
	    pg_url() != NULL ? "engine_pg" : "engine_sqlite", tests, NULL,
	    NULL);
	if (pg_url() != NULL)
		return failed +
		    cmocka_run_group_tests_name(
		        "engine_pg_only", pg_only, NULL, NULL);
	return failed +
	    cmocka_run_group_tests_name(
	        "engine_sqlite_only", sqlite_only, NULL, NULL);
}

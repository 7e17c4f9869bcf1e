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
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

	if (pg_url() != NULL)
		pg_sql("SET client_min_messages = warning;"
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
	issue_card(f, "C-CARD", f->grid_card, sizeof(f->grid_card));
	issue_card(f, "C-REG", f->grid_reg, sizeof(f->grid_reg));
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

/*
 * Supplies what the engine asks for, round by round, until a final
 * decision. Returns the final decision; *asked collects every need.
 */
static void
run(struct fx *f, const char *id, const char *context, time_t now,
    const struct input *in, struct sotp_decision *d, unsigned int *asked)
{
	struct sotp_attempt *a = NULL;
	char code[16], answer[16];
	int rounds = 0;

	*asked = 0;
	assert_int_equal(
	    sotp_attempt_begin(f->ctx, id, context, now, &a), SOTP_OK);
	for (;;) {
		assert_int_equal(sotp_attempt_step(a, d), SOTP_OK);
		if (d->verdict != SOTP_CONTINUE)
			break;
		assert_true(++rounds <= 3);
		*asked |= d->needs;
		if ((d->needs & SOTP_F_PASSWORD) && in->password == NULL)
			break;
		if (d->needs & SOTP_F_PASSWORD)
			sotp_attempt_set(a, SOTP_F_PASSWORD, in->password);
		if ((d->needs & SOTP_F_OTP) && in->code != NO_CODE) {
			if (in->code == GOOD_CODE)
				oath(in->b32, now, in->opts, code);
			else
				strcpy(code, "000000");
			sotp_attempt_set(a, SOTP_F_OTP, code);
		}
		if ((d->needs & SOTP_F_CARD) && in->card != NO_CARD) {
			card_answer(in->grid, d->card_cells, answer);
			if (in->card == WRONG_CARD)
				answer[0] = answer[0] == '9'
				    ? '0'
				    : (char)(answer[0] + 1);
			sotp_attempt_set(a, SOTP_F_CARD, answer);
		}
		if (d->needs & SOTP_F_SERIAL && in->serial != NULL)
			sotp_attempt_set(a, SOTP_F_SERIAL, in->serial);
		if (d->needs & SOTP_F_LOGIN_CHOICE && in->choice != NULL)
			sotp_attempt_set(a, SOTP_F_LOGIN_CHOICE, in->choice);
		if ((d->needs & SOTP_F_OTP) && in->code == NO_CODE)
			break;
		if ((d->needs & SOTP_F_CARD) && in->card == NO_CARD)
			break;
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
	        0, SOTP_REJECT, SOTP_R_WRONG_CODE, PW | OTP, "not correct"},
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
	        SOTP_REJECT, SOTP_R_NOT_BOUND, 0, "register"},
	    {"transaction asks no password", "C-OTP", "transaction",
	        {NULL, GOOD_CODE, B32_A, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, OTP, NULL},
	    {"mobile with a token: no code", "C-OTP", "mobile",
	        {"pw-otp", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, PW, NULL},
	    {"unknown contract", "C-NOBODY", "login",
	        {"x", NO_CODE, NULL, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_UNKNOWN_CONTRACT, 0, NULL},
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
	        "until 2027-03-31; please move to the smartphone token"},
	    {"legacy on its last day", "C-LEG", "transaction",
	        {NULL, GOOD_CODE, B32_D, NULL, NO_CARD, NULL, NULL, NULL}, 303,
	        SOTP_ACCEPT, SOTP_R_ACCEPTED, OTP, "until 2027-03-31"},
	    {"legacy after sunset", "C-LEG", "transaction",
	        {NULL, GOOD_CODE, B32_D, NULL, NO_CARD, NULL, NULL, NULL}, 305,
	        SOTP_REJECT, SOTP_R_TOKEN_SUNSET, OTP,
	        "retired on 2027-03-31; please move to the smartphone"},
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
	        0, SOTP_REJECT, SOTP_R_UNKNOWN_SERIAL, PW | REG, NULL},
	    {"token of another contract", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_A, NULL, GOOD_CARD, f->grid_reg,
	            "T-OTP", "otp"},
	        0, SOTP_REJECT, SOTP_R_TOKEN_IN_USE, PW | REG, NULL},
	    {"wrong code", "C-REG", "registration",
	        {"pw-reg", WRONG_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "T-REG", "otp"},
	        0, SOTP_REJECT, SOTP_R_WRONG_CODE, PW | REG, NULL},
	    {"wrong card", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, WRONG_CARD, f->grid_reg,
	            "T-REG", "otp"},
	        0, SOTP_REJECT, SOTP_R_WRONG_CARD, PW | REG, NULL},
	    {"bad login choice", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "T-REG", "sometimes"},
	        0, SOTP_REJECT, SOTP_R_BAD_INPUT, PW | REG, NULL},
	};
	const struct row ok[] = {
	    {"all right", "C-REG", "registration",
	        {"pw-reg", GOOD_CODE, B32_E, NULL, GOOD_CARD, f->grid_reg,
	            "T-REG", "yes"},
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
	        SOTP_REJECT, SOTP_R_WRONG_CODE, OTP, "locked"},
	    {"locked: refused before any secret", "C-CARD", "transaction",
	        {NULL, GOOD_CODE, B32_B, NULL, NO_CARD, NULL, NULL, NULL}, 0,
	        SOTP_REJECT, SOTP_R_LOCKED, 0, "locked"},
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

	/* One step back and one forward are accepted, two are not. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 60, t), SOTP_R_WRONG_CODE);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 60, t), SOTP_R_WRONG_CODE);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 30, t), SOTP_R_ACCEPTED);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 30, t), SOTP_R_REPLAYED);
	/* An older code than the last accepted one is a replay too. */
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t - 60, t), SOTP_R_REPLAYED);
	assert_int_equal(verify_at(f, "C-OTP", B32_A, t, t), SOTP_R_ACCEPTED);
	assert_int_equal(
	    verify_at(f, "C-OTP", B32_A, t + 30, t), SOTP_R_ACCEPTED);
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

static void
challenge(struct fx *f, const char *id, time_t now, char *state)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	assert_int_equal(
	    sotp_attempt_begin(f->ctx, id, "login", now, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-otp"), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(d.needs, SOTP_F_OTP);
	assert_int_equal(
	    sotp_attempt_export(a, state, SOTP_STATE_MAX), SOTP_OK);
	sotp_attempt_free(a);
}

static int
answer(struct fx *f, const char *id, const char *context, const char *state,
    time_t now)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char code[16];

	oath(B32_A, now, NULL, code);
	assert_int_equal(
	    sotp_attempt_resume(f->ctx, id, context, state, now, &a), SOTP_OK);
	assert_int_equal(sotp_attempt_set(a, SOTP_F_OTP, code), SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	sotp_attempt_free(a);
	return d.reason;
}

static void
test_engine_state_tokens(void **state)
{
	struct fx *f = *state;
	char st[SOTP_STATE_MAX], bad[SOTP_STATE_MAX];
	time_t t = T0 + 20000;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	/* The round trip works, and needs survive the trip. */
	challenge(f, "C-OTP", t, st);
	assert_int_equal(
	    sotp_attempt_resume(f->ctx, "C-OTP", "login", st, t + 5, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_needs(a), SOTP_F_OTP);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	sotp_attempt_free(a);
	assert_int_equal(
	    answer(f, "C-OTP", "login", st, t + 5), SOTP_R_ACCEPTED);
	/* Replayed. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", st, t + 35), SOTP_R_STATE_REPLAYED);
	/* Tampered: one hex digit changed anywhere is refused. */
	challenge(f, "C-OTP", t + 100, st);
	strcpy(bad, st);
	bad[40] = bad[40] == 'a' ? 'b' : 'a';
	assert_int_equal(
	    answer(f, "C-OTP", "login", bad, t + 100), SOTP_R_STATE_INVALID);
	bad[0] = '\0';
	assert_int_equal(
	    answer(f, "C-OTP", "login", "zz", t + 100), SOTP_R_STATE_INVALID);
	/* Another contract's or context's state. */
	assert_int_equal(
	    answer(f, "C-NONE", "login", st, t + 100), SOTP_R_STATE_INVALID);
	assert_int_equal(answer(f, "C-OTP", "transaction", st, t + 100),
	    SOTP_R_STATE_INVALID);
	/* Expired (lifetime 120 s). */
	assert_int_equal(answer(f, "C-OTP", "login", st, t + 100 + 121),
	    SOTP_R_STATE_EXPIRED);
	/* And the untouched one still works inside its lifetime. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", st, t + 130), SOTP_R_ACCEPTED);
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
	char st[SOTP_STATE_MAX];
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t t = T0 + 20000;
	size_t n;

	challenge(f, "C-OTP", t, st);
	n = strlen(st);
	/* The MAC is the last 16 bytes, 32 hex characters. */
	memset(st + n - 32, '0', 32);
	assert_int_equal(
	    EVP_set_default_properties(NULL, "provider=sotp-none"), 1);
	assert_int_equal(
	    sotp_attempt_resume(f->ctx, "C-OTP", "login", st, t + 5, &a),
	    SOTP_OK);
	assert_int_equal(EVP_set_default_properties(NULL, ""), 1);
	assert_int_equal(sotp_attempt_needs(a), 0);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_STATE_INVALID);
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

/* A resumed state handed on again keeps its id and expiry: one use. */
static void
test_engine_state_reexport_is_the_same_state(void **state)
{
	struct fx *f = *state;
	char st[SOTP_STATE_MAX], again[SOTP_STATE_MAX];
	time_t t = T0 + 30000;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;

	challenge(f, "C-OTP", t, st);
	assert_int_equal(
	    sotp_attempt_resume(f->ctx, "C-OTP", "login", st, t + 100, &a),
	    SOTP_OK);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(sotp_attempt_export(a, again, sizeof(again)), SOTP_OK);
	sotp_attempt_free(a);
	assert_string_equal(again, st);
	/* Still bound to the first expiry, and good once between the two. */
	assert_int_equal(
	    answer(f, "C-OTP", "login", again, t + 121), SOTP_R_STATE_EXPIRED);
	assert_int_equal(
	    answer(f, "C-OTP", "login", st, t + 110), SOTP_R_ACCEPTED);
	assert_int_equal(
	    answer(f, "C-OTP", "login", again, t + 110), SOTP_R_STATE_REPLAYED);
}

/* The largest card the policy allows (26 x 10) can be issued and used. */
static void
test_engine_largest_card(void **state)
{
	char dir[] = "/tmp/sotp-card.XXXXXX", conf[64], grid[2048], cmd[64];
	struct sotp_ctx *ctx = NULL;
	struct sotp_decision d;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/p.conf", dir);
	write_policy(conf, "[card]\nrows = 26\ncolumns = 10\ncells = 8\n");
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_init(ctx, conf), SOTP_OK);
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
	sotp_ctx_free(ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
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

	/* Replace the key file with another key: no code is accepted. */
	snprintf(path, sizeof(path), "%s/master.key", f->dir);
	snprintf(bak, sizeof(bak), "%s/master.key.bak", f->dir);
	assert_int_equal(rename(path, bak), 0);
	assert_int_equal(sotp_key_create(path, code, sizeof(code)), SOTP_OK);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	oath(B32_A, T0 + 40000, NULL, code);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "C-OTP", "transaction", T0 + 40000, &a),
	    SOTP_OK);
	sotp_attempt_set(a, SOTP_F_OTP, code);
	assert_int_equal(sotp_attempt_step(a, &d), SOTP_ERR_DECRYPT);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_non_null(strstr(sotp_ctx_errmsg(ctx), "cannot be decrypted"));
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

static void
test_engine_store_down_fails_closed(void **state)
{
	struct fx *f = *state;
	char db[160], code[16];
	struct sotp_ctx *ctx = NULL;

	snprintf(db, sizeof(db), "%s/shinkin-otp.db", f->dir);
	assert_int_equal(unlink(db), 0);
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
}

/*
 * The lockout race on PostgreSQL: another server has locked the
 * contract's row to lock the contract when this attempt has read it
 * (unlocked) but not yet taken it for its decision. The attempt waits on
 * the row lock (a child commits the lock once the server shows the wait)
 * and then refuses as locked, so parallel guesses on several servers
 * cannot outrun the threshold.
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
		for (i = 0; i < 400; i++) {
			pg_sql("SELECT count(*) FROM pg_stat_activity"
			       " WHERE wait_event_type = 'Lock'",
			    n, sizeof(n));
			if (strcmp(n, "0") != 0)
				break;
			usleep(25 * 1000);
		}
		res = PQexec(conn, "COMMIT");
		_exit(
		    PQresultStatus(res) == PGRES_COMMAND_OK && i < 400 ? 0 : 4);
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
	    T(test_engine_store_down_fails_closed),
	};
	const struct CMUnitTest pg_only[] = {
	    T(test_engine_pg_lock_rechecked_under_row_lock),
	    T(test_engine_pg_connection_lost_heals),
	};
#undef T
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_engine_contexts, setup, teardown),
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
	    cmocka_unit_test(test_engine_largest_card),
	    cmocka_unit_test_setup_teardown(
	        test_engine_state_mac_failure_refuses, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_wrong_master_key_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_tampered_secret_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_engine_store_holds_no_plain_secret, setup, teardown),
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

/*
 * fuzz_state.c - libFuzzer harness for the exported attempt state (what
 * RADIUS carries in State between two requests): resume, supply factors,
 * step, and for a challenge export, resume and step again, on a private
 * store (tests/fuzz/fuzz_env.h) restored after every input.
 *
 * Input: byte 0 picks the contract and the context, byte 1 holds flags,
 * then the state, then up to five '\n'-separated factors (password, code,
 * card digits, serial, login choice; an empty one is not supplied).
 *   flags bit 0   the state is a body (version, id, expiry, rounds, done,
 *                 needs, cells) that the harness signs with the state key
 *                 the way the engine does, so that the fuzzer reaches what
 *                 lies behind the MAC; without it the state is the text up
 *                 to the first '\n', as a stranger would send it;
 *   bits 1-2      1..3: the code is the right one of token 1..3 now;
 *   bit 3         the card digits are the right ones for the state's cells;
 *   bits 4-7      now is T0 plus that many seconds.
 * With SOTP_FUZZ_VERBOSE set, each decision is printed (to check seeds).
 *
 * Checks: no overrun, no error on any input (a refusal is not an error),
 * an unsigned state is refused as invalid whatever follows, a verdict is
 * one of the three, an accept has the ACCEPTED reason, and a challenge
 * exports and resumes to the same question.
 */
#include "fuzz_env.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* engine.c's state layout; checked against a real export at startup. */
#define ST_ID_LEN 16
#define ST_BODY (1 + ST_ID_LEN + 8 + 4 + SOTP_MAX_CELLS)
#define ST_MAC_LEN 16
#define ST_LEN (ST_BODY + ST_MAC_LEN)
#define NTOKENS 3

static const char *const contracts[] = {"F-OTP", "F-CARD", "F-REG", "F-NONE"};
static const char *const contexts[] = {"login", "transaction", "mobile",
    "registration", "unregistration", "nosuch"};
static const char *const serials[NTOKENS] = {"F-T1", "F-T2", "F-T3"};
static const char *const secrets[NTOKENS] = {"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"};

static struct sotp_ctx *ctx;
static int verbose;        /* SOTP_FUZZ_VERBOSE set: each decision on stderr */
static sqlite3 *db;        /* restores the store after each input */
static char grids[2][512]; /* printed cards of F-CARD and F-REG */
static char codes[16][NTOKENS][SOTP_CODE_MAX + 1]; /* per second of now */

static const char restore_sql[] =
    "BEGIN IMMEDIATE; DELETE FROM used_states; DELETE FROM audit;"
    "DELETE FROM contracts; DELETE FROM tokens;"
    "INSERT INTO tokens SELECT * FROM snap_tokens;"
    "INSERT INTO contracts SELECT * FROM snap_contracts; COMMIT;";

static void
check_admin(int rc, const struct sotp_decision *d, const char *what)
{
	if (rc != SOTP_OK || d->verdict != SOTP_ACCEPT)
		fuzz_abort(what, ctx);
}

static void
add_token(int i)
{
	struct sotp_token_spec spec;
	struct sotp_decision d;
	uint8_t key[64];
	size_t n = 0;

	if (sotp_base32_decode(secrets[i], key, sizeof(key), &n, NULL) !=
	    SOTP_OK)
		fuzz_abort("secret", NULL);
	sotp_token_spec_defaults(ctx, &spec);
	spec.serial = serials[i];
	check_admin(
	    sotp_token_add(ctx, &spec, key, n, FUZZ_T0, &d), &d, "token add");
}

static void
bind_token(const char *id, int token, enum sotp_login login)
{
	struct sotp_decision d;
	char code[SOTP_CODE_MAX + 1];
	uint8_t key[64];
	size_t n = 0;

	sotp_base32_decode(secrets[token], key, sizeof(key), &n, NULL);
	if (sotp_totp(SOTP_ALG_SHA1, key, n, FUZZ_T0 - 600, 30, 6, code) !=
	    SOTP_OK)
		fuzz_abort("totp", NULL);
	check_admin(sotp_contract_bind(ctx, id, serials[token], code, login,
	                FUZZ_T0 - 600, &d),
	    &d, "contract bind");
}

/* The store as every input finds it; passwords hashed cheaply. */
static void
provision(const char *path)
{
	struct crypt_data cd;
	struct sotp_decision d;
	char sql[512];
	const char *h;
	uint8_t key[64];
	size_t i, t, n;

	for (i = 0; i < NTOKENS; i++)
		add_token((int)i);
	for (i = 0; i < 3; i++)
		check_admin(
		    sotp_contract_add(ctx, contracts[i], "pw", FUZZ_T0, &d), &d,
		    "contract add");
	check_admin(sotp_contract_card(
	                ctx, "F-CARD", FUZZ_T0, grids[0], sizeof(grids[0]), &d),
	    &d, "card");
	check_admin(sotp_contract_card(
	                ctx, "F-REG", FUZZ_T0, grids[1], sizeof(grids[1]), &d),
	    &d, "card");
	bind_token("F-OTP", 0, SOTP_LOGIN_OTP);
	bind_token("F-CARD", 1, SOTP_LOGIN_CARD);
	for (i = 0; i < 16; i++)
		for (t = 0; t < NTOKENS; t++) {
			sotp_base32_decode(
			    secrets[t], key, sizeof(key), &n, NULL);
			sotp_totp(SOTP_ALG_SHA1, key, n, FUZZ_T0 + (time_t)i,
			    30, 6, codes[i][t]);
		}
	memset(&cd, 0, sizeof(cd));
	/* yescrypt costs tens of ms a check: sha256crypt at its minimum. */
	if ((h = crypt_r("pw", "$5$rounds=1000$fuzzsalt$", &cd)) == NULL ||
	    h[0] != '$')
		fuzz_abort("crypt", NULL);
	snprintf(sql, sizeof(sql),
	    "UPDATE contracts SET pwhash = '%s';"
	    "CREATE TABLE snap_tokens AS SELECT * FROM tokens;"
	    "CREATE TABLE snap_contracts AS SELECT * FROM contracts;",
	    h);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) !=
	        SQLITE_OK ||
	    sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
	    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fuzz_abort("snapshot", NULL);
}

static void
to_hex(const uint8_t *raw, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[2 * n] = '\0';
}

/* raw[ST_LEN]: body given, MAC computed as engine.c's state_mac does. */
static void
sign(uint8_t *raw, const char *contract, const char *context)
{
	uint8_t buf[ST_BODY + SOTP_ID_MAX + SOTP_NAME_MAX], mac[32];
	size_t n = ST_BODY, cl = strlen(contract), xl = strlen(context);

	memcpy(buf, raw, ST_BODY);
	memcpy(buf + n, contract, cl + 1);
	n += cl + 1;
	memcpy(buf + n, context, xl);
	n += xl;
	if (sotp_hmac_sha256(ctx->state_key, buf, n, mac) != SOTP_OK)
		fuzz_abort("state mac", NULL);
	memcpy(raw + ST_BODY, mac, ST_MAC_LEN);
}

/* Re-signs a real export: the layout above must still be engine.c's. */
static void
check_layout(void)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char st[SOTP_STATE_MAX], again[SOTP_STATE_MAX];
	uint8_t raw[ST_LEN];
	size_t i;

	if (sotp_attempt_begin(ctx, "F-OTP", "login", FUZZ_T0, &a) != SOTP_OK ||
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw") != SOTP_OK ||
	    sotp_attempt_step(a, &d) != SOTP_OK || d.verdict != SOTP_CONTINUE ||
	    sotp_attempt_export(a, st, sizeof(st)) != SOTP_OK ||
	    strlen(st) != 2 * ST_LEN)
		fuzz_abort("a real state", ctx);
	sotp_attempt_free(a);
	for (i = 0; i < ST_LEN; i++)
		raw[i] = (uint8_t)(OPENSSL_hexchar2int((unsigned char)st[2 * i])
		        << 4 |
		    OPENSSL_hexchar2int((unsigned char)st[2 * i + 1]));
	sign(raw, "F-OTP", "login");
	to_hex(raw, ST_LEN, again);
	if (strcmp(st, again) != 0)
		fuzz_abort(
		    "the harness's state layout is not engine.c's", NULL);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[300];

	(void)argc;
	(void)argv;
	verbose = getenv("SOTP_FUZZ_VERBOSE") != NULL;
	ctx = fuzz_ctx(path, sizeof(path));
	provision(path);
	check_layout();
	if (sqlite3_exec(db, restore_sql, NULL, NULL, NULL) != SQLITE_OK)
		fuzz_abort("restore", NULL);
	return 0;
}

/* The digits of the contract's card at the body's cells, or "". */
static void
card_answer(const char *contract, const uint8_t *body, char *out)
{
	const char *grid = strcmp(contract, "F-CARD") == 0
	    ? grids[0]
	    : (strcmp(contract, "F-REG") == 0 ? grids[1] : NULL);
	const uint8_t *cells = body + 1 + ST_ID_LEN + 8 + 4;
	unsigned int cols = ctx->pol.card_cols, rows = ctx->pol.card_rows;
	unsigned int i, n = body[1 + ST_ID_LEN + 8 + 3];
	const char *line;
	size_t k = 0;

	out[0] = '\0';
	if (grid == NULL || n > SOTP_MAX_CELLS)
		return;
	for (i = 0; i < n; i++) {
		if (cells[i] >= rows * cols)
			return;
		/* line 0 is the header; row r is "R  d d d", line r + 1 */
		for (line = grid; line != NULL && *line != '\0';) {
			if (line[0] == (char)('A' + cells[i] / cols))
				break;
			line = strchr(line, '\n');
			line = line != NULL ? line + 1 : NULL;
		}
		if (line == NULL || *line == '\0')
			return;
		out[k++] = line[3 + 2 * (cells[i] % cols)];
	}
	out[k] = '\0';
}

static void
one(const uint8_t *data, size_t size)
{
	static const enum sotp_factor factors[] = {SOTP_F_PASSWORD, SOTP_F_OTP,
	    SOTP_F_CARD, SOTP_F_SERIAL, SOTP_F_LOGIN_CHOICE};
	const char *contract = contracts[data[0] % 4];
	const char *context = contexts[(data[0] / 4) % 6];
	uint8_t flags = data[1], raw[ST_LEN];
	char state[SOTP_STATE_MAX + 64], field[5][1025], again[SOTP_STATE_MAX];
	char card[SOTP_MAX_CELLS + 1] = "";
	const uint8_t *p = data + 2, *end = data + size, *nl;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t now = FUZZ_T0 + (flags >> 4);
	unsigned int needs;
	size_t n, i;

	memset(raw, 0, sizeof(raw));
	if (flags & 1) {
		n = (size_t)(end - p) < ST_BODY ? (size_t)(end - p) : ST_BODY;
		memcpy(raw, p, n);
		p += n;
		sign(raw, contract, context);
		to_hex(raw, ST_LEN, state);
		if (flags & 8)
			card_answer(contract, raw, card);
	} else {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((nl != NULL ? nl : end) - p);
		if (n >= sizeof(state))
			n = sizeof(state) - 1;
		memcpy(state, p, n);
		state[n] = '\0';
		p = nl != NULL ? nl + 1 : end;
	}
	for (i = 0; i < 5; i++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((nl != NULL ? nl : end) - p);
		if (n >= sizeof(field[i]))
			n = sizeof(field[i]) - 1;
		memcpy(field[i], p, n);
		field[i][n] = '\0';
		p = nl != NULL ? nl + 1 : end;
	}
	if ((flags >> 1) & 3)
		strcpy(field[1], codes[flags >> 4][((flags >> 1) & 3) - 1]);
	if (card[0] != '\0')
		strcpy(field[2], card);

	if (sotp_attempt_resume(ctx, contract, context, state, now, &a) !=
	    SOTP_OK)
		fuzz_abort("resume", ctx);
	for (i = 0; i < 5; i++)
		if (field[i][0] != '\0' &&
		    sotp_attempt_set(a, factors[i], field[i]) != SOTP_OK)
			abort();
	if (sotp_attempt_step(a, &d) != SOTP_OK)
		fuzz_abort("step", ctx);
	if (verbose)
		fprintf(stderr, "%s %s: %s\n", contract, context,
		    sotp_reason_name(d.reason));
	if (!(flags & 1) &&
	    (d.verdict != SOTP_REJECT || d.reason != SOTP_R_STATE_INVALID))
		abort();
	if (d.verdict != SOTP_REJECT && d.verdict != SOTP_ACCEPT &&
	    d.verdict != SOTP_CONTINUE)
		abort();
	if ((d.verdict == SOTP_ACCEPT) != (d.reason == SOTP_R_ACCEPTED))
		abort();
	if (memchr(d.message, '\0', sizeof(d.message)) == NULL)
		abort();
	if (d.verdict == SOTP_CONTINUE) {
		/* What the state will need when it comes back. */
		needs = sotp_attempt_needs(a);
		if (sotp_attempt_export(a, again, sizeof(again)) != SOTP_OK)
			fuzz_abort("export", ctx);
		sotp_attempt_free(a);
		a = NULL;
		if (sotp_attempt_resume(
		        ctx, contract, context, again, now, &a) != SOTP_OK ||
		    sotp_attempt_step(a, &d) != SOTP_OK)
			fuzz_abort("resume the export", ctx);
		if (d.verdict != SOTP_CONTINUE || d.needs != needs)
			abort();
	}
	sotp_attempt_free(a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	one(data, size);
	if (sqlite3_exec(db, restore_sql, NULL, NULL, NULL) != SQLITE_OK)
		fuzz_abort("restore", NULL);
	return 0;
}

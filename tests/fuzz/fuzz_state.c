/*
 * fuzz_state.c - libFuzzer harness for the exported attempt state (what
 * RADIUS carries in State between two requests, engine_state.c version 3):
 * resume, answer, step, and for a challenge export, resume and step again,
 * on a private store (tests/fuzz/fuzz_env.h) restored after every input.
 *
 * Input: byte 0 picks the contract (% 4), the context (/ 4 % 6) and, in
 * bit (/ 24 % 2), whether the first field is an append-mode value; byte 1
 * holds flags; then the state, then up to six '\n'-separated fields: the
 * answer to the question asked, then inputs by name (password, code,
 * card digits, serial, login choice); an empty one is not supplied.
 *   flags bit 0   the state is a body (version .. serial length, then
 *                 that many serial bytes) that the harness signs with the
 *                 state key the way the engine does, so that the fuzzer
 *                 reaches what lies behind the MAC; the body is laid out
 *                 as version 2's, and one saying version 2 is made what
 *                 the engine writes under the store's current key
 *                 version: version 4, bound to the contracts' password,
 *                 when it says the password is done, else version 3;
 *                 one saying version 1 is made version 3 whatever it
 *                 says (an older build's State, bound to nothing);
 *                 without the flag the state is the octets up to the
 *                 first '\n', as a stranger would send them;
 *   bits 1-2      1..3: the code by name is the right one of token 1..3;
 *   bit 3         the card digits by name are right for the body's cells;
 *   bits 4-7      now is T0 plus that many seconds.
 * With SOTP_FUZZ_VERBOSE set, each decision is printed (to check seeds).
 *
 * Checks: no overrun, no error on any input (a refusal is not an error),
 * an unsigned state is refused as invalid whatever follows, a verdict is
 * one of the three and an accept has the ACCEPTED reason, texts end in
 * their buffers, a challenge exports and resumes to the same question,
 * and outside a registration an accept was earned in this round: the
 * right code of the contract's token, or the right card digits, came in.
 */
#include "fuzz_env.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * engine_state.c's layouts: the input's body is version 2's; version 3
 * puts the key version (4) after the version byte, version 4 also the
 * password's tag (16) after the serial. Checked against an export at
 * start.
 */
#define ST_ID_LEN 16
#define ST_KV 4
#define ST2_FIXED (1 + ST_ID_LEN + 8 + 4 + SOTP_MAX_CELLS + 1 + 4 + 8 + 1)
#define ST_FIXED (ST2_FIXED + ST_KV)
#define ST_DONE (1 + ST_KV + ST_ID_LEN + 8 + 1)
#define ST_NCELLS (ST_DONE + 2)
#define ST_CELLS (ST_NCELLS + 1)
#define ST_MAC_LEN 16
#define ST_TAG_LEN 16
#define ST_MAX (ST_FIXED + SOTP_ID_MAX - 1 + ST_TAG_LEN + ST_MAC_LEN)
#define NTOKENS 3
#define NFIELDS 6

static const char *const contracts[] = {"F-OTP", "F-CARD", "F-REG", "F-NONE"};
static const char *const contexts[] = {"login", "transaction", "mobile",
    "registration", "unregistration", "nosuch"};
static const char *const serials[NTOKENS] = {"F-T1", "F-T2", "F-T3"};
static const char *const secrets[NTOKENS] = {"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"};

static struct sotp_ctx *ctx;
static uint32_t cur_kv;    /* the store's current key version */
static char pwhash[128];   /* every contract's: "pw", hashed cheaply */
static int verbose;        /* SOTP_FUZZ_VERBOSE set: each decision on stderr */
static sqlite3 *db;        /* restores the store after each input */
static char grids[2][512]; /* printed cards of F-CARD and F-REG */
static char codes[16][NTOKENS][SOTP_CODE_MAX + 1]; /* per second of now */
/* Every code the window and a learned drift could take: steps -3..3. */
static char near[7][NTOKENS][SOTP_CODE_MAX + 1];

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
			if (i < 7)
				sotp_totp(SOTP_ALG_SHA1, key, n,
				    FUZZ_T0 + 30 * ((time_t)i - 3), 30, 6,
				    near[i][t]);
		}
	memset(&cd, 0, sizeof(cd));
	/*
	 * yescrypt costs milliseconds a check: sha512crypt at its minimum,
	 * which crypt_checksalt calls sound, so an unknown contract is checked
	 * against it too (engine.c, dummy_hash). A legacy one (sha256crypt)
	 * would have every such input pay for a fresh yescrypt hash.
	 */
	if ((h = crypt_r("pw", "$6$rounds=1000$fuzzsalt$", &cd)) == NULL ||
	    h[0] != '$' || strlen(h) >= sizeof(pwhash))
		fuzz_abort("crypt", NULL);
	strcpy(pwhash, h);
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

/*
 * tag[ST_TAG_LEN]: the password's tag of a version 4 State (raw, its
 * id) as engine_state.c makes it, under the current key version, for
 * the contracts' password.
 */
static void
pw_tag(const uint8_t *raw, uint8_t *tag)
{
	static const char label[] = "shinkin-otp State password";
	uint8_t buf[sizeof(label) + ST_ID_LEN + 32], mac[32];
	unsigned int n = 0;

	memcpy(buf, label, sizeof(label));
	memcpy(buf + sizeof(label), raw + 1 + ST_KV, ST_ID_LEN);
	if (EVP_Digest(pwhash, strlen(pwhash), buf + sizeof(label) + ST_ID_LEN,
	        &n, EVP_sha256(), NULL) != 1 ||
	    sotp_keys_state_mac(ctx, cur_kv, buf, sizeof(buf), mac) != SOTP_OK)
		fuzz_abort("tag", ctx);
	memcpy(tag, mac, ST_TAG_LEN);
}

/*
 * raw[len + ST_MAC_LEN]: body given, MAC computed as engine_state.c does
 * under the key version a version 3 or 4 body names; another version's
 * body, or one naming a key version the store does not hold, gets a MAC
 * of zeros (the engine signs no such State).
 */
static void
sign(uint8_t *raw, size_t len, const char *contract, const char *context)
{
	uint8_t buf[ST_MAX + SOTP_ID_MAX + SOTP_NAME_MAX], mac[32];
	size_t n = len, cl = strlen(contract), xl = strlen(context);
	uint32_t kv;

	memset(raw + len, 0, ST_MAC_LEN);
	if ((raw[0] != 3 && raw[0] != 4) || len < 1 + ST_KV)
		return;
	kv = (uint32_t)raw[1] << 24 | (uint32_t)raw[2] << 16 |
	    (uint32_t)raw[3] << 8 | raw[4];
	memcpy(buf, raw, len);
	memcpy(buf + n, contract, cl + 1);
	n += cl + 1;
	memcpy(buf + n, context, xl);
	n += xl;
	if (sotp_keys_state_mac(ctx, kv, buf, n, mac) == SOTP_OK)
		memcpy(raw + len, mac, ST_MAC_LEN);
}

/* Re-signs a real export: the layout above must still be the engine's. */
static void
check_layout(void)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	uint8_t st[SOTP_STATE_MAX], again[SOTP_STATE_MAX];
	size_t n = 0;

	if (sotp_attempt_begin(ctx, "F-OTP", "login", FUZZ_T0, &a) != SOTP_OK ||
	    sotp_attempt_answer(a, "pw") != SOTP_OK ||
	    sotp_attempt_step(a, &d) != SOTP_OK || d.verdict != SOTP_CONTINUE ||
	    sotp_attempt_export(a, st, sizeof(st), &n) != SOTP_OK ||
	    n != ST_FIXED + ST_TAG_LEN + ST_MAC_LEN || st[0] != 4)
		fuzz_abort("a real state", ctx);
	sotp_attempt_free(a);
	memcpy(again, st, n);
	pw_tag(again, again + ST_FIXED);
	sign(again, ST_FIXED + ST_TAG_LEN, "F-OTP", "login");
	if (memcmp(st, again, n) != 0)
		fuzz_abort(
		    "the harness's state layout is not the engine's", NULL);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[300];

	(void)argc;
	(void)argv;
	verbose = getenv("SOTP_FUZZ_VERBOSE") != NULL;
	ctx = fuzz_ctx(path, sizeof(path));
	if (sotp_keys_current(ctx, &cur_kv) != SOTP_OK || cur_kv == 0)
		fuzz_abort("key version", ctx);
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
	const uint8_t *cells = body + ST_CELLS;
	unsigned int cols = ctx->pol.card_cols, rows = ctx->pol.card_rows;
	unsigned int i, n = body[ST_NCELLS];
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

/* Splits p..end at '\n' into field[NFIELDS]. */
static void
split(const uint8_t *p, const uint8_t *end, char field[NFIELDS][1025])
{
	const uint8_t *nl;
	size_t i, n;

	for (i = 0; i < NFIELDS; i++) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((nl != NULL ? nl : end) - p);
		if (n >= 1025)
			n = 1024;
		memcpy(field[i], p, n);
		field[i][n] = '\0';
		p = nl != NULL ? nl + 1 : end;
	}
}

/* Whether some field, as the engine normalizes digits, equals want. */
static int
came_in(char field[NFIELDS][1025], const char *want)
{
	char digits[1025];
	size_t i;

	for (i = 0; i < NFIELDS; i++) {
		if (want[0] == '\0' ||
		    sotp_input_digits(field[i], digits, sizeof(digits)) !=
		        SOTP_OK)
			continue;
		if (strcmp(digits, want) == 0)
			return 1;
		/* An append-mode value ends with the code. */
		if (strlen(digits) > strlen(want) &&
		    strcmp(digits + strlen(digits) - strlen(want), want) == 0)
			return 1;
	}
	return 0;
}

/*
 * Outside a registration, what an accept for this contract and context
 * needs in its round: the code of the token bound, or the card digits.
 */
static int
earned(const char *contract, const char *context, char field[NFIELDS][1025],
    const char *card)
{
	int token = strcmp(contract, "F-OTP") == 0
	    ? 0
	    : (strcmp(contract, "F-CARD") == 0 ? 1 : -1);
	size_t k;

	if (strcmp(context, "mobile") == 0 || token < 0)
		return 1;
	if (token == 1 && strcmp(context, "login") == 0)
		return card[0] != '\0' && came_in(field, card);
	for (k = 0; k < 7; k++)
		if (came_in(field, near[k][token]))
			return 1;
	return 0;
}

static void
one(const uint8_t *data, size_t size)
{
	static const enum sotp_factor factors[] = {SOTP_F_PASSWORD, SOTP_F_OTP,
	    SOTP_F_CARD, SOTP_F_SERIAL, SOTP_F_LOGIN_CHOICE};
	const char *contract = contracts[data[0] % 4];
	const char *context = contexts[(data[0] / 4) % 6];
	int combined = (data[0] / 24) % 2, reg = (data[0] / 4) % 6 == 3;
	uint8_t flags = data[1], raw[ST_MAX], again[SOTP_STATE_MAX];
	uint8_t body[ST2_FIXED];
	char field[NFIELDS][1025], card[SOTP_MAX_CELLS + 1] = "";
	const uint8_t *p = data + 2, *end = data + size, *nl;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	time_t now = FUZZ_T0 + (flags >> 4);
	size_t n, len, i, fixed;
	unsigned int ask;

	memset(raw, 0, sizeof(raw));
	if (flags & 1) {
		memset(body, 0, sizeof(body));
		n = (size_t)(end - p) < ST2_FIXED ? (size_t)(end - p)
		                                  : ST2_FIXED;
		memcpy(body, p, n);
		p += n;
		/*
		 * Version 2's body as the engine writes it, under the current
		 * key; version 1's as an older build does.
		 */
		fixed = body[0] == 1 || body[0] == 2 ? ST_FIXED : ST2_FIXED;
		if (fixed == ST_FIXED) {
			raw[0] =
			    body[0] == 2 && (body[ST_DONE - ST_KV] & 1) ? 4 : 3;
			raw[1] = (uint8_t)(cur_kv >> 24);
			raw[2] = (uint8_t)(cur_kv >> 16);
			raw[3] = (uint8_t)(cur_kv >> 8);
			raw[4] = (uint8_t)cur_kv;
			memcpy(raw + 1 + ST_KV, body + 1, ST2_FIXED - 1);
		} else
			memcpy(raw, body, ST2_FIXED);
		len = raw[fixed - 1];
		if (len > SOTP_ID_MAX - 1)
			len = SOTP_ID_MAX - 1;
		if (len > (size_t)(end - p))
			len = (size_t)(end - p);
		raw[fixed - 1] = (uint8_t)len;
		memcpy(raw + fixed, p, len);
		p += len;
		len += fixed;
		if (raw[0] == 4) {
			pw_tag(raw, raw + len);
			len += ST_TAG_LEN;
		}
		sign(raw, len, contract, context);
		len += ST_MAC_LEN;
		card_answer(contract, raw, card);
	} else {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		if (len > sizeof(raw))
			len = sizeof(raw);
		memcpy(raw, p, len);
		p = nl != NULL ? nl + 1 : end;
	}
	split(p, end, field);
	if ((flags >> 1) & 3)
		strcpy(field[2], codes[flags >> 4][((flags >> 1) & 3) - 1]);
	if ((flags & 8) && card[0] != '\0')
		strcpy(field[3], card);

	if (sotp_attempt_resume(ctx, contract, context, raw, len, now, &a) !=
	    SOTP_OK)
		fuzz_abort("resume", ctx);
	if (field[0][0] != '\0' &&
	    (combined ? sotp_attempt_set_combined(a, field[0])
	              : sotp_attempt_answer(a, field[0])) != SOTP_OK)
		abort();
	for (i = 1; i < NFIELDS; i++)
		if (field[i][0] != '\0' &&
		    sotp_attempt_set(a, factors[i - 1], field[i]) != SOTP_OK)
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
	if (memchr(d.message, '\0', sizeof(d.message)) == NULL ||
	    memchr(d.prompt, '\0', sizeof(d.prompt)) == NULL ||
	    memchr(d.card_cells, '\0', sizeof(d.card_cells)) == NULL)
		abort();
	if (d.verdict == SOTP_ACCEPT && !reg &&
	    !earned(contract, context, field, card)) {
		fprintf(stderr, "fuzz: %s %s accepted without its factor\n",
		    contract, context);
		abort();
	}
	if (d.verdict == SOTP_CONTINUE) {
		/* The question must survive the trip. */
		ask = d.ask;
		if (sotp_attempt_export(a, again, sizeof(again), &n) != SOTP_OK)
			fuzz_abort("export", ctx);
		sotp_attempt_free(a);
		a = NULL;
		if (sotp_attempt_resume(
		        ctx, contract, context, again, n, now, &a) != SOTP_OK ||
		    sotp_attempt_step(a, &d) != SOTP_OK)
			fuzz_abort("resume the export", ctx);
		if (d.verdict != SOTP_CONTINUE || d.ask != ask)
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

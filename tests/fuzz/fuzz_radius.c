/*
 * fuzz_radius.c - libFuzzer harness for the RADIUS module's reading of a
 * request (rlm_shinkin_otp/rlm_input.c, built without radiusd): User-Name,
 * User-Password, State and the context attribute as radiusd hands them
 * over, into one round of the engine, and a question back into the
 * challenge's attributes; a challenge is answered once more with the
 * State it carried. On a private store (tests/fuzz/fuzz_env.h) restored
 * after every input.
 *
 * Input: one flags byte, then five fields, each one length byte and that
 * many bytes (cut short at the end of the input): User-Name, User-Password,
 * State (octets, as a stranger would send them), the context attribute's
 * value, and the User-Password of the second round.
 *   flags bit 0   append mode (the module's mode = append);
 *   bit 1         the request carries the State field;
 *   bits 2-3      the context: login, transaction, registration, or the
 *                 attribute's value through the policy's [services] map;
 *   bit 4         the first User-Password is the right password of R1
 *                 (or, in append mode, followed by the field's bytes).
 *
 * Checks: no overrun; no error (a NUL in User-Name or User-Password is
 * the engine's BAD_INPUT decision); a verdict is one of the three, an accept
 * has the ACCEPTED reason and never comes from a State the engine did not sign;
 * no decision says UNKNOWN_CONTRACT (the policy hides it); a challenge fits its
 * attributes (253 octets each) and its State resumes.
 */
#include "fuzz_env.h"

#include "../../rlm_shinkin_otp/rlm_input.h"

#include <crypt.h>
#include <sqlite3.h>

int LLVMFuzzerInitialize(int *argc, char **argv[]);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sotp_ctx *ctx;
static sqlite3 *db;

static const char restore_sql[] =
    "BEGIN IMMEDIATE; DELETE FROM used_states; DELETE FROM audit;"
    "DELETE FROM contracts; DELETE FROM tokens;"
    "INSERT INTO tokens SELECT * FROM snap_tokens;"
    "INSERT INTO contracts SELECT * FROM snap_contracts; COMMIT;";

static void
admin(int rc, const struct sotp_decision *d, const char *what)
{
	if (rc != SOTP_OK || d->verdict != SOTP_ACCEPT)
		fuzz_abort(what, ctx);
}

/* R1 (password "pw", a token bound, login asks for a code) and R2. */
static void
provision(const char *path)
{
	struct sotp_token_spec spec;
	struct sotp_decision d;
	struct crypt_data cd;
	char code[SOTP_CODE_MAX + 1], sql[512];
	const char *h;
	uint8_t key[20], key2[20];
	size_t n = 0, n2 = 0;

	if (sotp_base32_decode("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", key,
	        sizeof(key), &n, NULL) != SOTP_OK)
		fuzz_abort("secret", NULL);
	sotp_token_spec_defaults(ctx, &spec);
	spec.serial = "R-T1";
	admin(sotp_token_add(ctx, &spec, key, n, FUZZ_T0, &d), &d, "token");
	/* A seed of its own: token add refuses R-T1's under another serial. */
	if (sotp_base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", key2,
	        sizeof(key2), &n2, NULL) != SOTP_OK)
		fuzz_abort("secret", NULL);
	spec.serial = "R-T2";
	admin(sotp_token_add(ctx, &spec, key2, n2, FUZZ_T0, &d), &d, "token");
	admin(sotp_contract_add(ctx, "R1", "pw", FUZZ_T0, &d), &d, "contract");
	admin(sotp_contract_add(ctx, "R2", "pw", FUZZ_T0, &d), &d, "contract");
	if (sotp_totp(SOTP_ALG_SHA1, key, n, FUZZ_T0 - 600, 30, 6, code) !=
	    SOTP_OK)
		fuzz_abort("totp", NULL);
	admin(sotp_contract_bind(
	          ctx, "R1", "R-T1", code, SOTP_LOGIN_OTP, FUZZ_T0 - 600, &d),
	    &d, "bind");
	/*
	 * yescrypt costs milliseconds a check: sha512crypt at its minimum,
	 * which crypt_checksalt calls sound, so an unknown contract is checked
	 * against it too (engine.c, dummy_hash). A legacy one (sha256crypt)
	 * would have every such input pay for a fresh yescrypt hash.
	 */
	memset(&cd, 0, sizeof(cd));
	if ((h = crypt_r("pw", "$6$rounds=1000$fuzzsalt$", &cd)) == NULL ||
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
	    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, restore_sql, NULL, NULL, NULL) != SQLITE_OK)
		fuzz_abort("snapshot", NULL);
}

int
LLVMFuzzerInitialize(int *argc, char **argv[])
{
	char path[300];

	(void)argc;
	(void)argv;
	ctx = fuzz_ctx(path, sizeof(path));
	provision(path);
	return 0;
}

/* The next length-prefixed field into buf[256] (NUL after it). */
static size_t
field(const uint8_t **p, const uint8_t *end, char *buf)
{
	size_t n = 0;

	if (*p < end) {
		n = **p;
		(*p)++;
		if (n > (size_t)(end - *p))
			n = (size_t)(end - *p);
		memcpy(buf, *p, n);
		*p += n;
	}
	buf[n] = '\0';
	return n;
}

/*
 * The checks every decision passes. unmapped: the attempt has no context
 * (a service the [services] map does not name).
 */
static void
check(int rc, const struct rlm_request *r, const struct sotp_decision *d,
    int signed_state, int unmapped)
{
	if (rc != SOTP_OK)
		fuzz_abort("round", ctx);
	if (d->verdict != SOTP_REJECT && d->verdict != SOTP_ACCEPT &&
	    d->verdict != SOTP_CONTINUE)
		abort();
	if ((d->verdict == SOTP_ACCEPT) != (d->reason == SOTP_R_ACCEPTED))
		abort();
	if (d->reason == SOTP_R_UNKNOWN_CONTRACT)
		abort();
	/*
	 * A service the map does not name is refused as such (or, when the
	 * request is malformed too, as that), its State not even read.
	 */
	if (unmapped) {
		if (d->verdict != SOTP_REJECT ||
		    (d->reason != SOTP_R_UNKNOWN_CONTEXT &&
		        d->reason != SOTP_R_BAD_INPUT))
			abort();
		return;
	}
	if (r->state != NULL && !signed_state &&
	    (d->verdict != SOTP_REJECT || d->reason != SOTP_R_STATE_INVALID))
		abort();
}

static void
one(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = {
	    "login", "transaction", "registration", NULL};
	char user[256], pw[512], state[256], service[256], pw2[256];
	const uint8_t *p = data + 1, *end = data + size;
	struct rlm_challenge ch;
	struct rlm_request r;
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	uint8_t flags = data[0];
	const char *context = fixed[(flags >> 2) & 3];
	size_t n;
	int rc;

	memset(&r, 0, sizeof(r));
	r.user_len = field(&p, end, user);
	r.user = user;
	n = field(&p, end, pw);
	if (flags & 16) {
		/* The right password, then (append mode) the field's bytes. */
		memmove(pw + 2, pw, n + 1);
		memcpy(pw, "pw", 2);
		n += 2;
	}
	r.password = pw;
	r.password_len = n;
	n = field(&p, end, state);
	if (flags & 2) {
		r.state = (const uint8_t *)state;
		r.state_len = n;
	}
	r.service_len = field(&p, end, service);
	r.service = service;
	r.service_attr = "NAS-Identifier";
	field(&p, end, pw2);
	r.now = FUZZ_T0;
	rc = rlm_round(ctx, context, flags & 1, &r, &a, &d);
	check(rc, &r, &d, 0, a != NULL && sotp_attempt_context(a)[0] == '\0');
	if (rc == SOTP_OK && d.verdict == SOTP_CONTINUE) {
		if ((rc = rlm_challenge(a, &d, &ch)) != SOTP_OK)
			fuzz_abort("challenge", ctx);
		if (ch.state_len == 0 || ch.state_len > RLM_ATTR_MAX ||
		    ch.ntext == 0)
			abort();
		/* The next Access-Request: the State back, another answer. */
		sotp_attempt_free(a);
		a = NULL;
		r.state = ch.state;
		r.state_len = ch.state_len;
		r.password = pw2;
		r.password_len = strlen(pw2);
		r.now = FUZZ_T0 + 5;
		rc = rlm_round(ctx, context, flags & 1, &r, &a, &d);
		check(rc, &r, &d, 1,
		    a != NULL && sotp_attempt_context(a)[0] == '\0');
	}
	sotp_attempt_free(a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	one(data, size);
	if (sqlite3_exec(db, restore_sql, NULL, NULL, NULL) != SQLITE_OK)
		fuzz_abort("restore", NULL);
	return 0;
}

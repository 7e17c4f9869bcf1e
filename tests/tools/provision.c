/*
 * provision.c - thousands of contracts with bound tokens for the load
 * and failover tests, in seconds instead of the hours that `shinkin-otp
 * contract add` would take (each add hashes a password with yescrypt,
 * ~30 ms, on purpose).
 *
 *   provision CONFIG PREFIX COUNT      > secrets
 *       makes contracts PREFIX1..PREFIXCOUNT, each bound to its own new
 *       token (tok-PREFIXi, a random 160-bit secret), and prints one line
 *       per contract: "CONTRACT SERIAL BASE32SECRET"
 *   provision codes SECRETS OFFSET TEMPLATE...
 *       prints, for each line of SECRETS and each TEMPLATE, the template
 *       with %u replaced by the contract and %c by the code its token
 *       shows at now + OFFSET seconds (radload's request lines)
 *   provision hash CONFIG PASSWORD
 *       prints the hash a new contract's PASSWORD gets under CONFIG
 *   provision bulk CONFIG sqlite|pg PWHASH PREFIX COUNT [PREFIX COUNT...]
 *       writes to stdout, for the sqlite3 or psql client to read, the
 *       rows of contracts PREFIX0..PREFIX(COUNT-1), each bound to its own
 *       token (tok-PREFIXi) sealed under CONFIG's master key, all holding
 *       the same secret BULK_SECRET (so that one code, of now, is good for
 *       every contract: a RADIUS bench sends one request line per
 *       contract), its seed fingerprint (seedfp.c) and the password hash
 *       PWHASH. No audit rows and no library calls but the seal and the
 *       fingerprint: this is how a million contracts go into a store in
 *       seconds (the benchmark's large stores).
 *
 * The one shortcut, and the only place the admin path is left: every
 * contract gets the same password, hashed once (a real yescrypt hash of
 * "pw-farm"), and the contract row is inserted with it directly. The rest
 * goes through the library's own calls, as the admin tool makes them:
 * sotp_token_add seals and stores each secret, sotp_contract_bind checks
 * a code from the token (computed here for a minute ago, so the codes of
 * now are still unused) and binds it, and both write their audit rows.
 * The rows go in batches of BATCH inside one transaction each, so that a
 * PostgreSQL farm with a synchronous standby pays for one commit per
 * batch, not three per contract, and the audit chain's head is read and
 * written once per batch (sotp_audit_batch_begin), as the imports do.
 * Production code is unchanged by any of this. Codes come from the library's
 * TOTP (checked against the RFC 6238 vectors in test_otp, and the failover test
 * compares a few against oathtool).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sotp_int.h"

#define BATCH 500
#define BULK_SECRET "12345678901234567890"
#define BULK_ROWS 500 /* rows per INSERT (sqlite) */
#define SECRET_LEN 20

static int
fail(const char *what, struct sotp_ctx *ctx, int rc)
{
	fprintf(stderr, "provision: %s: %s: %s\n", what, sotp_strerror(rc),
	    ctx != NULL ? sotp_ctx_errmsg(ctx) : "");
	return 1;
}

/* One contract with its token, inside the caller's transaction. */
static int
one(struct sotp_ctx *ctx, const char *id, const char *serial,
    const char *pwhash, time_t now, char *b32, size_t b32sz)
{
	struct sotp_token_spec spec;
	struct sotp_contract_rec c;
	struct sotp_decision d;
	uint8_t secret[SECRET_LEN];
	char code[SOTP_CODE_MAX];
	int rc;

	if ((rc = sotp_random(secret, sizeof(secret))) != SOTP_OK)
		return rc;
	sotp_token_spec_defaults(ctx, &spec);
	spec.serial = serial;
	if ((rc = sotp_token_add(
	         ctx, &spec, secret, sizeof(secret), now, &d)) != SOTP_OK ||
	    d.verdict != SOTP_ACCEPT)
		goto out;
	memset(&c, 0, sizeof(c));
	sotp_strlcpy(c.id, id, sizeof(c.id));
	sotp_strlcpy(c.pwhash, pwhash, sizeof(c.pwhash));
	c.login = SOTP_LOGIN_OTP;
	c.created = (int64_t)now;
	if ((rc = sotp_store_contract_insert(ctx->st, &c)) != SOTP_OK)
		goto out;
	/* A code of a minute ago binds, and spends no code of now. */
	if ((rc = sotp_totp(spec.alg, secret, sizeof(secret), now - 60,
	         spec.period, spec.digits, code)) != SOTP_OK ||
	    (rc = sotp_contract_bind(ctx, id, serial, code, SOTP_LOGIN_OTP,
	         now - 60, &d)) != SOTP_OK)
		goto out;
	if (d.verdict != SOTP_ACCEPT) {
		rc = SOTP_ERR_INTERNAL;
		goto out;
	}
	rc = sotp_base32_encode(secret, sizeof(secret), b32, b32sz);
out:
	if (rc == SOTP_OK && d.verdict != SOTP_ACCEPT) {
		sotp_ctx_seterr(ctx, "%s: refused: %s", id,
		    sotp_reason_name((int)d.reason));
		rc = SOTP_ERR_INTERNAL;
	}
	SOTP_WIPE_ARRAY(secret);
	SOTP_WIPE_ARRAY(code);
	return rc;
}

static int
make(const char *config, const char *prefix, long count)
{
	struct sotp_ctx *ctx = NULL;
	char pwhash[SOTP_HASH_MAX], id[SOTP_ID_MAX], serial[SOTP_ID_MAX];
	char b32[64];
	time_t now = time(NULL);
	long i;
	int rc, ret = 1;

	if ((rc = sotp_ctx_new(&ctx)) != SOTP_OK ||
	    (rc = sotp_ctx_load(ctx, config)) != SOTP_OK)
		return fail("load", ctx, rc);
	if ((rc = sotp_passwd_hash(&ctx->pol, "pw-farm", pwhash)) != SOTP_OK) {
		fail("hash", ctx, rc);
		goto out;
	}
	for (i = 1; i <= count; i++) {
		if ((i - 1) % BATCH == 0 &&
		    ((rc = sotp_store_begin(ctx->st)) != SOTP_OK ||
		        (rc = sotp_audit_batch_begin(ctx)) != SOTP_OK)) {
			fail("begin", ctx, rc);
			goto out;
		}
		snprintf(id, sizeof(id), "%s%ld", prefix, i);
		snprintf(serial, sizeof(serial), "tok-%s%ld", prefix, i);
		if ((rc = one(ctx, id, serial, pwhash, now, b32,
		         sizeof(b32))) != SOTP_OK) {
			fail(id, ctx, rc);
			goto out;
		}
		printf("%s %s %s\n", id, serial, b32);
		if ((i % BATCH == 0 || i == count) &&
		    ((rc = sotp_audit_batch_end(ctx, SOTP_OK)) != SOTP_OK ||
		        (rc = sotp_store_commit(ctx->st)) != SOTP_OK)) {
			fail("commit", ctx, rc);
			goto out;
		}
	}
	ret = fflush(stdout) == 0 ? 0 : 1;
out:
	(void)sotp_audit_batch_end(ctx, SOTP_ERR_INTERNAL);
	sotp_store_rollback(ctx->st);
	sotp_ctx_free(ctx);
	return ret;
}

/* One template with %u and %c filled in. */
static void
fill(const char *tpl, const char *user, const char *code)
{
	for (; *tpl != '\0'; tpl++) {
		if (tpl[0] == '%' && tpl[1] == 'u') {
			fputs(user, stdout);
			tpl++;
		} else if (tpl[0] == '%' && tpl[1] == 'c') {
			fputs(code, stdout);
			tpl++;
		} else {
			putchar(*tpl);
		}
	}
	putchar('\n');
}

static int
codes(const char *file, long offset, char **tpl, int ntpl)
{
	FILE *f = fopen(file, "r");
	char line[512], user[SOTP_ID_MAX], serial[SOTP_ID_MAX], b32[128];
	char code[SOTP_CODE_MAX];
	uint8_t key[64];
	size_t len;
	time_t at = time(NULL) + offset;
	int i;

	if (f == NULL) {
		perror(file);
		return 1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%64s %64s %127s", user, serial, b32) != 3 ||
		    sotp_base32_decode(b32, key, sizeof(key), &len, NULL) !=
		        SOTP_OK ||
		    sotp_totp(SOTP_ALG_SHA1, key, len, at, 30, 6, code) !=
		        SOTP_OK) {
			fprintf(stderr, "provision: bad line: %s", line);
			fclose(f);
			return 1;
		}
		for (i = 0; i < ntpl; i++)
			fill(tpl[i], user, code);
	}
	SOTP_WIPE_ARRAY(key);
	fclose(f);
	return fflush(stdout) == 0 ? 0 : 1;
}

/*
 * The sealed secret of serial as hex, for either client, under the
 * current key version (kv), as token add seals it, and its seed
 * fingerprint under that version as hex (fphex, SOTP_SEED_FP_LEN * 2 + 1).
 */
static int
sealed_hex(struct sotp_ctx *ctx, const char *serial, char *hex, size_t hexsz,
    char *fphex, uint32_t *kv)
{
	uint8_t sealed[SOTP_SECRET_MAX], fp[SOTP_SEED_FP_LEN];
	size_t len = 0, i;
	int rc;

	if ((rc = sotp_keys_current(ctx, kv)) != SOTP_OK ||
	    (rc = sotp_keys_seal_kv(ctx, *kv, serial,
	         (const uint8_t *)BULK_SECRET, strlen(BULK_SECRET), sealed,
	         sizeof(sealed), &len)) != SOTP_OK ||
	    (rc = sotp_seed_fp(ctx, *kv, (const uint8_t *)BULK_SECRET,
	         strlen(BULK_SECRET), fp)) != SOTP_OK)
		return rc;
	if (len * 2 + 1 > hexsz)
		return SOTP_ERR_INTERNAL;
	for (i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", sealed[i]);
	for (i = 0; i < sizeof(fp); i++)
		snprintf(fphex + 2 * i, 3, "%02x", fp[i]);
	return SOTP_OK;
}

/*
 * sqlite: multi-row INSERTs in one transaction; pg: two COPY blocks (the
 * tokens first: contracts refer to them).
 */
static int
bulk(const char *config, int pg, const char *pwhash, char **spec, int nspec)
{
	struct sotp_ctx *ctx = NULL;
	char serial[SOTP_ID_MAX], hex[2 * SOTP_SECRET_MAX + 1];
	char fphex[2 * SOTP_SEED_FP_LEN + 1];
	long i, n, row = 0, total = 0;
	uint32_t kv = 0;
	int rc, k, pass;

	if ((rc = sotp_ctx_new(&ctx)) != SOTP_OK ||
	    (rc = sotp_ctx_load(ctx, config)) != SOTP_OK)
		return fail("load", ctx, rc);
	if (strchr(pwhash, '\'') != NULL || strchr(pwhash, '\t') != NULL ||
	    strchr(pwhash, '\\') != NULL) {
		sotp_ctx_free(ctx);
		fprintf(stderr, "provision: PWHASH holds a quote or tab\n");
		return 2;
	}
	for (k = 0; k + 1 < nspec; k += 2)
		total += strtol(spec[k + 1], NULL, 10);
	printf(pg ? "" : "BEGIN;\n");
	for (pass = 0; pass < 2; pass++) {
		if (pg)
			printf(pass == 0
			        ? "COPY tokens(serial, kind, secret, algorithm,"
			          " digits, period, created, kv, seed_fp)"
			          " FROM STDIN;\n"
			        : "COPY contracts(id, pwhash, login, serial,"
			          " created) FROM STDIN;\n");
		for (k = 0; k + 1 < nspec; k += 2) {
			n = strtol(spec[k + 1], NULL, 10);
			for (i = 0; i < n; i++, row++) {
				snprintf(serial, sizeof(serial), "tok-%s%ld",
				    spec[k], i);
				if (!pg && row % BULK_ROWS == 0)
					printf(pass == 0
					        ? "INSERT INTO tokens(serial, kind,"
					          " secret, algorithm, digits,"
					          " period, created, kv, seed_fp)"
					          " VALUES\n"
					        : "INSERT INTO contracts(id, pwhash,"
					          " login, serial, created)"
					          " VALUES\n");
				if (pass == 0 &&
				    (rc = sealed_hex(ctx, serial, hex,
				         sizeof(hex), fphex, &kv)) != SOTP_OK) {
					sotp_ctx_free(ctx);
					return fail("seal", NULL, rc);
				}
				if (pg && pass == 0)
					printf(
					    "%s\tmobile\t\\\\x%s\t0\t6\t30\t0\t%u"
					    "\t\\\\x%s\n",
					    serial, hex, kv, fphex);
				else if (pg)
					printf("%s%ld\t%s\t%d\t%s\t0\n",
					    spec[k], i, pwhash, SOTP_LOGIN_OTP,
					    serial);
				else if (pass == 0)
					printf(
					    "('%s','mobile',X'%s',0,6,30,0,%u,"
					    "X'%s')",
					    serial, hex, kv, fphex);
				else
					printf("('%s%ld','%s',%d,'%s',0)",
					    spec[k], i, pwhash, SOTP_LOGIN_OTP,
					    serial);
				if (!pg)
					printf((row + 1) % BULK_ROWS == 0 ||
					            row + 1 == total
					        ? ";\n"
					        : ",\n");
			}
		}
		if (pg)
			printf("\\.\n");
		row = 0;
	}
	printf(pg ? "" : "COMMIT;\n");
	sotp_ctx_free(ctx);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int
hash(const char *config, const char *password)
{
	struct sotp_ctx *ctx = NULL;
	char h[SOTP_HASH_MAX];
	int rc;

	if ((rc = sotp_ctx_new(&ctx)) != SOTP_OK ||
	    (rc = sotp_ctx_load(ctx, config)) != SOTP_OK ||
	    (rc = sotp_passwd_hash(&ctx->pol, password, h)) != SOTP_OK)
		return fail("hash", ctx, rc);
	printf("%s\n", h);
	sotp_ctx_free(ctx);
	return fflush(stdout) == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	char *end = NULL;
	long n;

	if (argc >= 5 && strcmp(argv[1], "codes") == 0) {
		n = strtol(argv[3], &end, 10);
		if (*end != '\0')
			goto usage;
		return codes(argv[2], n, argv + 4, argc - 4);
	}
	if (argc == 4 && strcmp(argv[1], "hash") == 0)
		return hash(argv[2], argv[3]);
	if (argc >= 7 && argc % 2 == 1 && strcmp(argv[1], "bulk") == 0 &&
	    (strcmp(argv[3], "sqlite") == 0 || strcmp(argv[3], "pg") == 0))
		return bulk(
		    argv[2], argv[3][0] == 'p', argv[4], argv + 5, argc - 5);
	if (argc == 4) {
		n = strtol(argv[3], &end, 10);
		if (*end != '\0' || n < 1 || n > 10000000)
			goto usage;
		return make(argv[1], argv[2], n);
	}
usage:
	fprintf(stderr,
	    "usage: provision CONFIG PREFIX COUNT\n"
	    "       provision codes SECRETS OFFSET TEMPLATE...\n"
	    "       provision bulk CONFIG sqlite|pg PWHASH PREFIX COUNT...\n"
	    "       provision hash CONFIG PASSWORD\n");
	return 2;
}

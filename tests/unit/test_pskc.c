/*
 * test_pskc.c - token import from PSKC (RFC 6030) and CSV files.
 *
 * The files are in tests/data/pskc: RFC 6030's figures 2 to 7 as
 * published (HOTP), the same made TOTP (their CipherValues and MACs are
 * the RFC's bytes) and files that make.sh generates with openssl(1).
 * Each imported token must yield the codes oathtool computes from the
 * secret we know is in the file (--totp, or --hotp by counter); each
 * refused file must leave the store exactly as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sotp_int.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 2026-06-01T00:00:00Z, as in test_engine. */
#define T0 ((time_t)1780272000)

/* RFC 6030's examples: PSK, passphrase and the secret inside. */
static const uint8_t rfc_psk[16] = {0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34,
    0x56, 0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12};
#define RFC_PASS "qwerty"
#define RFC_SECRET "3132333435363738393031323334353637383930"

/* make.sh's secrets (secrets.env) and passphrase (passphrase.txt). */
#define S1 "3928b45b60d2c004609deeda43e4542f16b08705"
#define S2 "bd11955dc11f316d2b63b07e6793c28c42bc357b1706aa11f5b207c6099bf8e5"
#define S3                                                                     \
	"60ae7c3f140b3a076e81a149aac08097ee41229edc101788235d0d7ff2f84d03"     \
	"dc2cdebbb407044ec7b41494a4dfa7d6891453c2e5fb3756cf71460b99a229bf"
#define S4 "f5cd8bb0e21a9de25385e2e5821f32eeb66afea6"
#define GEN_PASS "correct horse battery staple"
#define SHA1_LEN 20

struct fx {
	char dir[64];
	char conf[128];
	struct sotp_ctx *ctx;
};

/* One token a file should hold, as oathtool would be told about it. */
struct want {
	const char *serial;
	const char *hex; /* the secret */
	const char *alg; /* oathtool --totp=ALG */
	unsigned int digits;
	unsigned int period;
};

/* ---- helpers ---- */

static char *
slurp(const char *name, size_t *len)
{
	const char *top = getenv("TOP");
	char path[512];
	FILE *fp;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/tests/data/pskc/%s",
	    top != NULL ? top : ".", name);
	fp = fopen(path, "rb");
	if (fp == NULL)
		fail_msg("cannot open %s (run with TOP set)", path);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static int
import_file(struct fx *f, const char *name, const uint8_t *psk,
    const char *pass, int dry_run, struct sotp_import_result *res)
{
	size_t len;
	char *buf = slurp(name, &len);
	int rc;

	if (strstr(name, ".csv") != NULL)
		rc = sotp_import_csv(f->ctx, buf, len, NULL, dry_run, T0, res);
	else
		rc = sotp_import_pskc(f->ctx, buf, len, psk,
		    psk != NULL ? 16 : 0, pass, NULL, dry_run, T0, res);
	free(buf);
	return rc;
}

static int
count_one(void *arg, const struct sotp_token_info *t)
{
	(void)t;
	(*(size_t *)arg)++;
	return 0;
}

static size_t
count_tokens(struct fx *f)
{
	size_t n = 0;

	assert_int_equal(sotp_token_list(f->ctx, 0, count_one, &n), SOTP_OK);
	return n;
}

static void
oath(const struct want *w, time_t t, char *out)
{
	char cmd[512];
	FILE *p;

	snprintf(cmd, sizeof(cmd),
	    "oathtool --totp=%s -d %u -s %us --now @%lld %s", w->alg, w->digits,
	    w->period, (long long)t, w->hex);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, SOTP_CODE_MAX + 1, p));
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(pclose(p), 0);
}

static void
hex_decode(const char *hex, uint8_t *out, size_t *len)
{
	size_t i;
	unsigned int b;

	for (i = 0; hex[2 * i] != '\0'; i++) {
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
		out[i] = (uint8_t)b;
	}
	*len = i;
}

/*
 * The stored token has the parameters and the secret of w, and its codes
 * are oathtool's at a few times.
 */
static void
check_token(struct fx *f, const struct want *w)
{
	static const time_t at[] = {T0, T0 + 30, T0 + 3599, 1111111109};
	struct sotp_token_info info;
	struct sotp_uri u;
	uint8_t key[64], exp[64];
	char *uri = NULL, mine[SOTP_CODE_MAX], theirs[SOTP_CODE_MAX + 1];
	size_t keylen = 0, explen = 0, i;

	assert_int_equal(sotp_token_get(f->ctx, w->serial, &info), SOTP_OK);
	assert_int_equal(info.digits, w->digits);
	assert_int_equal(info.period, w->period);
	assert_string_equal(sotp_alg_name(info.alg), w->alg);
	assert_int_equal(sotp_token_uri(f->ctx, w->serial, "uri", NULL, NULL,
	                     1780272000, &uri),
	    SOTP_OK);
	assert_int_equal(sotp_uri_parse(uri, &u, NULL), SOTP_OK);
	sotp_free_string(uri);
	assert_int_equal(
	    sotp_base32_decode(u.secret, key, sizeof(key), &keylen, NULL),
	    SOTP_OK);
	hex_decode(w->hex, exp, &explen);
	assert_int_equal(keylen, explen);
	assert_memory_equal(key, exp, keylen);
	for (i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		assert_int_equal(sotp_totp(info.alg, key, keylen, at[i],
		                     info.period, info.digits, mine),
		    SOTP_OK);
		oath(w, at[i], theirs);
		assert_string_equal(mine, theirs);
	}
}

/* A refusal of entry `entry` whose reason contains `text`; no change. */
static void
check_refused(struct fx *f, const struct sotp_import_result *res, size_t before,
    unsigned int entry, enum sotp_reason why, const char *text)
{
	assert_true(res->refused);
	assert_int_equal(res->imported, 0);
	assert_int_equal(res->entry, entry);
	assert_int_equal(res->why, why);
	if (strstr(res->reason, text) == NULL)
		fail_msg("reason \"%s\" lacks \"%s\"", res->reason, text);
	assert_int_equal(count_tokens(f), before);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/sotp-pskc.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof(f->conf), "%s/shinkin-otp.conf", f->dir);
	assert_int_equal(sotp_ctx_new(&f->ctx), SOTP_OK);
	assert_int_equal(sotp_init(f->ctx, f->conf), SOTP_OK);
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

/* ---- RFC 6030's examples ---- */

static const struct want rfc_token = {"987654321", RFC_SECRET, "sha1", 8, 30};

static void
test_pskc_rfc_figure2_plain(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "rfc6030-figure2-totp.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 1);
	check_token(f, &rfc_token);
}

static void
test_pskc_rfc_figure6_preshared_key(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "rfc6030-figure6-totp.pskc", rfc_psk, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 1);
	check_token(f, &rfc_token);
}

static void
test_pskc_rfc_figure7_pbkdf2(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(import_file(f, "rfc6030-figure7-totp.pskc", NULL,
	                     RFC_PASS, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 1);
	check_token(f, &rfc_token);
}

/* ---- RFC 6030's figures as published: HOTP ---- */

/* oathtool's HOTP code of counter c for a hex secret. */
static void
oath_hotp(const char *hex, unsigned int digits, uint64_t c, char *out)
{
	char cmd[512];
	FILE *p;

	snprintf(cmd, sizeof(cmd), "oathtool --hotp -d %u -c %llu %s", digits,
	    (unsigned long long)c, hex);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, SOTP_CODE_MAX + 1, p));
	out[strcspn(out, "\n")] = '\0';
	assert_int_equal(pclose(p), 0);
}

/*
 * An imported HOTP token: event-based (period 0), its next counter
 * `counter`, an otpauth://hotp/ URI with that counter and the secret hex,
 * and codes for the next counters equal to oathtool's.
 */
static void
check_hotp(struct fx *f, const char *serial, const char *hex,
    unsigned int digits, uint64_t counter)
{
	struct sotp_token_info info;
	uint8_t key[64], exp[64];
	char *uri = NULL, *p, mine[SOTP_CODE_MAX], theirs[SOTP_CODE_MAX + 1];
	char want[64], b32[160];
	size_t keylen = 0, explen = 0;
	uint64_t c;

	assert_int_equal(sotp_token_get(f->ctx, serial, &info), SOTP_OK);
	assert_int_equal(info.period, 0);
	assert_int_equal(info.digits, digits);
	assert_int_equal(info.last_step, (int64_t)counter - 1);
	assert_int_equal(
	    sotp_token_uri(f->ctx, serial, "uri", NULL, NULL, 1780272000, &uri),
	    SOTP_OK);
	assert_non_null(strstr(uri, "otpauth://hotp/"));
	snprintf(
	    want, sizeof(want), "&counter=%llu", (unsigned long long)counter);
	assert_non_null(strstr(uri, want));
	assert_non_null(p = strstr(uri, "secret="));
	snprintf(b32, sizeof(b32), "%.*s", (int)strcspn(p + 7, "&"), p + 7);
	sotp_free_string(uri);
	assert_int_equal(
	    sotp_base32_decode(b32, key, sizeof(key), &keylen, NULL), SOTP_OK);
	hex_decode(hex, exp, &explen);
	assert_int_equal(keylen, explen);
	assert_memory_equal(key, exp, keylen);
	for (c = counter; c < counter + 3; c++) {
		assert_int_equal(
		    sotp_hotp(info.alg, key, keylen, c, info.digits, mine),
		    SOTP_OK);
		oath_hotp(hex, digits, c, theirs);
		assert_string_equal(mine, theirs);
	}
}

/* Figure 2: a 4-byte secret, below RFC 4226's 128 bits. */
static void
test_pskc_rfc_figure2_basic(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	struct sotp_ctx *weak = NULL;
	char conf[160], cmd[1024];

	assert_int_equal(
	    import_file(f, "rfc6030-figure2.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 1, SOTP_R_BAD_INPUT, "secret is 4 bytes");
	/* A policy that lowers min_secret_bytes takes it, with defaults:
	 * 6 digits, counter 0, the Key Id as serial. */
	snprintf(conf, sizeof(conf), "%s/weak.conf", f->dir);
	snprintf(cmd, sizeof(cmd),
	    "sed 's/^min_secret_bytes = 16$/min_secret_bytes = 4/' %s > %s",
	    f->conf, conf);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(sotp_ctx_new(&weak), SOTP_OK);
	assert_int_equal(sotp_ctx_load(weak, conf), SOTP_OK);
	sotp_ctx_free(f->ctx);
	f->ctx = weak;
	assert_int_equal(
	    import_file(f, "rfc6030-figure2.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	check_hotp(f, "12345678", "31323334", 6, 0);
}

static void
test_pskc_rfc_figure3_supplementary(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "rfc6030-figure3.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 1);
	check_hotp(f, "987654321", RFC_SECRET, 8, 0);
}

/* Figure 4 carries no secret: it is derived from the vendor's key. */
static void
test_pskc_rfc_figure4_derived_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "rfc6030-figure4.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 1, SOTP_R_BAD_INPUT, "KeyReference");
}

/* Figure 5: the PIN key package is the token's own business. */
static void
test_pskc_rfc_figure5_pin(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	size_t len;
	char *buf, *at;

	assert_int_equal(
	    import_file(f, "rfc6030-figure5.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 1);
	check_hotp(f, "987654321", RFC_SECRET, 8, 0);
	/* A PIN the server would have to check is refused. */
	buf = slurp("rfc6030-figure5.pskc", &len);
	assert_non_null(at = strstr(buf, "PINUsageMode=\"Local\""));
	memcpy(at, "PINUsageMode=\"Apend\"", 20);
	assert_int_equal(sotp_import_pskc(f->ctx, buf, len, NULL, 0, NULL, NULL,
	                     0, T0, &res),
	    SOTP_OK);
	free(buf);
	assert_true(res.refused);
	assert_non_null(strstr(res.reason, "PINUsageMode 'Apend'"));
}

static void
test_pskc_rfc_figure6_hotp_psk(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "rfc6030-figure6.pskc", rfc_psk, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	check_hotp(f, "987654321", RFC_SECRET, 8, 0);
}

static void
test_pskc_rfc_figure7_hotp_pbkdf2(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "rfc6030-figure7.pskc", NULL, RFC_PASS, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	check_hotp(f, "987654321", RFC_SECRET, 8, 0);
}

/* ---- make.sh's files ---- */

static void
test_pskc_generated_psk_three_tokens(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	const struct want w[] = {
	    {"GEN-PSK-1", S1, "sha1", 6, 30},
	    {"GEN-PSK-2", S2, "sha256", 8, 60},
	    {"GEN-PSK-3", S3, "sha512", 7, 30},
	};
	size_t i;

	assert_int_equal(
	    import_file(f, "gen-psk.pskc", rfc_psk, NULL, 0, &res), SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 3);
	for (i = 0; i < 3; i++)
		check_token(f, &w[i]);
}

static void
test_pskc_generated_pbkdf2(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	const struct want w[] = {
	    {"GEN-PBKDF2-1", S1, "sha1", 6, 30},
	    {"GEN-PBKDF2-2", S4, "sha1", 6, 30},
	};

	assert_int_equal(
	    import_file(f, "gen-pbkdf2.pskc", NULL, GEN_PASS, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 2);
	check_token(f, &w[0]);
	check_token(f, &w[1]);
}

/*
 * The same file as other writers spell it: PBKDF2-params in the XML
 * Encryption 1.1 namespace (python-pskc does), its children unqualified
 * or qualified in either namespace. Once refused with "PBKDF2:
 * Salt/Specified missing or bad".
 */
static void
test_pskc_pbkdf2_xenc11_namespace(void **state)
{
	static const struct {
		const char *from, *to;
	} spell[] = {
	    {"pkcs5:PBKDF2-params", "xenc11:PBKDF2-params"},
	    {"<Salt><Specified>", "<xenc11:Salt><xenc11:Specified>"},
	    {"</Specified></Salt>", "</xenc11:Specified></xenc11:Salt>"},
	    {"<IterationCount>", "<pkcs5:IterationCount>"},
	    {"</IterationCount>", "</pkcs5:IterationCount>"},
	};
	struct fx *f = *state;
	struct sotp_import_result res;
	const struct want w = {"GEN-PBKDF2-2", S4, "sha1", 6, 30};
	char *buf, *out, *at;
	size_t len, i, n, k, olen;

	buf = slurp("gen-pbkdf2.pskc", &len);
	for (k = 1; k <= sizeof(spell) / sizeof(spell[0]); k += 2) {
		/* k = 1: the namespace alone; then qualified children. */
		out = calloc(1, len + 512);
		assert_non_null(out);
		memcpy(out, buf, len + 1);
		for (i = 0; i < k; i++) {
			while ((at = strstr(out, spell[i].from)) != NULL) {
				n = strlen(spell[i].from);
				memmove(at + strlen(spell[i].to), at + n,
				    strlen(at + n) + 1);
				memcpy(at, spell[i].to, strlen(spell[i].to));
			}
		}
		olen = strlen(out);
		assert_int_equal(sotp_import_pskc(f->ctx, out, olen, NULL, 0,
		                     GEN_PASS, NULL, k < 5, T0, &res),
		    SOTP_OK);
		if (res.refused)
			fail_msg("spelling %zu refused: %s", k, res.reason);
		assert_int_equal(res.imported, 2);
		free(out);
	}
	free(buf);
	check_token(f, &w);
}

/* CSV: a counter in field 7 makes an HOTP token. */
static void
test_pskc_csv_hotp(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	static const char csv[] =
	    "H1,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,,8,,,42\n";

	assert_int_equal(
	    sotp_import_csv(f->ctx, csv, strlen(csv), NULL, 0, T0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	check_hotp(f, "H1", RFC_SECRET, 8, 42);
}

static void
test_pskc_dry_run_stores_nothing(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "gen-psk.pskc", rfc_psk, NULL, 1, &res), SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 3);
	assert_int_equal(count_tokens(f), 0);
}

/* ---- refusals: nothing imported ---- */

static void
test_pskc_wrong_key_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	uint8_t wrong[16];

	memcpy(wrong, rfc_psk, sizeof(wrong));
	wrong[15] ^= 1;
	assert_int_equal(
	    import_file(f, "gen-psk.pskc", wrong, NULL, 0, &res), SOTP_OK);
	assert_true(res.refused);
	/* A wrong key shows in the MAC key's padding or in the first MAC. */
	assert_true(strstr(res.reason, "wrong key") != NULL);
	assert_int_equal(count_tokens(f), 0);

	assert_int_equal(import_file(f, "rfc6030-figure7-totp.pskc", NULL,
	                     "qwertz", 0, &res),
	    SOTP_OK);
	assert_true(res.refused);
	assert_true(strstr(res.reason, "wrong key") != NULL);

	assert_int_equal(
	    import_file(f, "gen-psk.pskc", NULL, NULL, 0, &res), SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT, "no key was given");
	assert_int_equal(
	    import_file(f, "gen-pbkdf2.pskc", NULL, NULL, 0, &res), SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT, "none was given");
}

static void
test_pskc_bad_mac_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "gen-psk-badmac.pskc", rfc_psk, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 2, SOTP_R_BAD_INPUT, "MAC mismatch");
}

/* The first occurrence of old in *doc replaced by new (*doc realloc'd). */
static void
subst(char **doc, const char *old, const char *new)
{
	char *at = strstr(*doc, old), *out;
	size_t pre;

	assert_non_null(at);
	pre = (size_t)(at - *doc);
	out = malloc(strlen(*doc) + strlen(new) + 1);
	assert_non_null(out);
	memcpy(out, *doc, pre);
	strcpy(out + pre, new);
	strcat(out, at + strlen(old));
	free(*doc);
	*doc = out;
}

/* The text of the n-th (0-based) element `tag` of doc, into out[outsz]. */
static void
nth_text(
    const char *doc, const char *tag, unsigned int n, char *out, size_t outsz)
{
	const char *p = doc, *e;

	for (;;) {
		p = strstr(p, tag);
		assert_non_null(p);
		p += strlen(tag);
		if (n-- == 0)
			break;
	}
	e = strchr(p, '<');
	assert_non_null(e);
	assert_true((size_t)(e - p) < outsz);
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
}

static size_t
unb64(const char *in, uint8_t *out)
{
	size_t len = strlen(in);
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);

	assert_true(n >= 0);
	while (len > 0 && in[len - 1] == '=') {
		len--;
		n--;
	}
	return (size_t)n;
}

/*
 * RFC 6030 MACs every encrypted value but not the MAC key, itself
 * encrypted with AES-CBC under the file's key. The block that pads a
 * secret of 32 bytes decrypts to sixteen 0x10 bytes, known, so an IV put
 * before it in place of the MACKey's CipherValue makes a MAC key of the
 * forger's choosing, 15 bytes and the padding byte 1; with it every
 * ValueMAC can be made anew. Here entry 1's secret is altered (its IV),
 * which the MACs were there to catch. Once imported as three tokens.
 */
static void
test_pskc_forged_mac_key_refused(void **state)
{
	static const uint8_t k[15] = "forged-mac-key!";
	struct fx *f = *state;
	struct sotp_import_result res;
	uint8_t ct[128], mk[32], mac[SHA1_LEN];
	char old[256], new[256];
	unsigned int maclen, i;
	size_t len, n;
	char *doc = slurp("gen-psk.pskc", &len);

	/* Entry 2's last block (C3) pads its 32-byte secret. */
	nth_text(doc, "<xenc:CipherValue>", 2, old, sizeof(old));
	assert_int_equal(unb64(old, ct), 64);
	for (i = 0; i < 16; i++)
		mk[i] = (uint8_t)(ct[32 + i] ^ 0x10 ^ (i < 15 ? k[i] : 0x01));
	memcpy(mk + 16, ct + 48, 16);
	nth_text(doc, "<xenc:CipherValue>", 0, old, sizeof(old));
	EVP_EncodeBlock((unsigned char *)new, mk, 32);
	subst(&doc, old, new);
	/* Entry 1's secret altered, and every MAC made anew under k. */
	for (i = 1; i <= 3; i++) {
		nth_text(doc, "<xenc:CipherValue>", i, old, sizeof(old));
		n = unb64(old, ct);
		if (i == 1) {
			ct[0] ^= 0x01;
			EVP_EncodeBlock((unsigned char *)new, ct, (int)n);
			subst(&doc, old, new);
		}
		assert_non_null(
		    HMAC(EVP_sha1(), k, sizeof(k), ct, n, mac, &maclen));
		nth_text(doc, "<ValueMAC>", i - 1, old, sizeof(old));
		EVP_EncodeBlock((unsigned char *)new, mac, SHA1_LEN);
		subst(&doc, old, new);
	}
	assert_int_equal(sotp_import_pskc(f->ctx, doc, strlen(doc), rfc_psk, 16,
	                     NULL, NULL, 0, T0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT,
	    "MACKey is 15 bytes, not the 20 of an HMAC-SHA1 key");
	free(doc);
}

/*
 * One seed in two KeyPackages (a vendor's fault, or an EncryptedValue
 * and its ValueMAC copied from one package into another, which RFC
 * 6030's MACs allow): each token would answer for the other. Once
 * imported as four tokens.
 */
static void
test_pskc_same_secret_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	char from[256], to[256];
	size_t len;
	char *doc = slurp("gen-hotp-entry3.pskc", &len);

	/* PlainValues: secret, period; secret, period; ... entry 4's is 6. */
	nth_text(doc, "<PlainValue>", 2, from, sizeof(from));
	nth_text(doc, "<PlainValue>", 6, to, sizeof(to));
	subst(&doc, to, from);
	assert_int_equal(sotp_import_pskc(f->ctx, doc, strlen(doc), NULL, 0,
	                     NULL, NULL, 0, T0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 4, SOTP_R_BAD_INPUT,
	    "the same secret as entry 2: each token needs a seed of its own");
	if (strstr(res.reason, from) != NULL)
		fail_msg("the reason shows the secret: %s", res.reason);
	free(doc);
}

static void
test_pskc_truncated_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "gen-psk-truncated.pskc", rfc_psk, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT, "not well-formed XML");
	assert_int_equal(
	    sotp_import_pskc(f->ctx, "", 0, NULL, 0, NULL, NULL, 0, T0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT, "not well-formed XML");
}

static void
test_pskc_duplicates_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	/* Inside the file: entry 3 repeats entry 1. */
	assert_int_equal(
	    import_file(f, "gen-dup.pskc", NULL, NULL, 0, &res), SOTP_OK);
	check_refused(f, &res, 0, 3, SOTP_R_EXISTS, "entry 1 has it too");

	/* Against the store: figure 6 holds the serial figure 2 stored. */
	assert_int_equal(
	    import_file(f, "rfc6030-figure2-totp.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	assert_int_equal(res.imported, 1);
	assert_int_equal(
	    import_file(f, "rfc6030-figure6-totp.pskc", rfc_psk, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 1, 1, SOTP_R_EXISTS, "already in the store");
}

/*
 * An encrypted file's MACs protect only the values that are encrypted:
 * a Secret put in clear beside them, in an altered file, is a key the
 * one who altered it knows. Once imported as three tokens, entry 2
 * holding the attacker's "12345678901234567890".
 */
static void
test_pskc_plain_secret_in_encrypted_file_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	size_t len, olen;
	char *buf = slurp("gen-psk.pskc", &len), *start, *end, *out;

	/* Entry 2's whole Secret, EncryptedValue and ValueMAC, in clear. */
	start = strstr(strstr(buf, "GEN-PSK-2"), "<Secret>");
	end = strstr(start, "</Secret>");
	assert_non_null(end);
	out = malloc(len + 64);
	assert_non_null(out);
	memcpy(out, buf, (size_t)(start - buf));
	olen = (size_t)(start - buf);
	olen += (size_t)sprintf(out + olen,
	    "<Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue>");
	strcpy(out + olen, end);
	olen = strlen(out);
	assert_int_equal(sotp_import_pskc(f->ctx, out, olen, rfc_psk, 16, NULL,
	                     NULL, 0, T0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 2, SOTP_R_BAD_INPUT,
	    "Secret is in clear (PlainValue) in a file whose secrets are "
	    "encrypted");
	free(out);
	free(buf);
}

/*
 * A key given for a file in clear: the file is not the one the operator
 * was sent (its MACs gone with its encryption), and is refused rather
 * than imported unprotected. Once imported as four tokens.
 */
static void
test_pskc_key_given_for_plain_file_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(
	    import_file(f, "gen-hotp-entry3.pskc", rfc_psk, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT,
	    "a pre-shared key was given, but the file is not encrypted "
	    "(no EncryptionKey)");
	assert_int_equal(
	    import_file(f, "gen-hotp-entry3.pskc", NULL, GEN_PASS, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT,
	    "a passphrase was given, but the file is not encrypted "
	    "(no EncryptionKey)");
	/* Without a key, the same file imports. */
	assert_int_equal(
	    import_file(f, "gen-hotp-entry3.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 4);
}

/* TOTP and HOTP keys in one file: entry 3 is event-based. */
static void
test_pskc_entry3_hotp_mixed(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	struct sotp_token_info info;

	assert_int_equal(
	    import_file(f, "gen-hotp-entry3.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 4);
	check_hotp(f, "GEN-PLAIN-3", S2, 6, 0);
	assert_int_equal(sotp_token_get(f->ctx, "GEN-PLAIN-4", &info), SOTP_OK);
	assert_int_equal(info.period, 30);
}

/* No DTD: entities are how XML parsers get abused. */
static void
test_pskc_doctype_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	static const char doc[] =
	    "<?xml version=\"1.0\"?>\n"
	    "<!DOCTYPE KeyContainer [<!ENTITY s \"MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=\">"
	    "<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"
	    "<KeyContainer Version=\"1.0\" "
	    "xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\"><KeyPackage>"
	    "<Key Id=\"E1\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:pskc:"
	    "totp\"><Data><Secret><PlainValue>&s;</PlainValue></Secret>"
	    "</Data></Key></KeyPackage></KeyContainer>\n";

	assert_int_equal(sotp_import_pskc(f->ctx, doc, sizeof(doc) - 1, NULL, 0,
	                     NULL, NULL, 0, T0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT, "DOCTYPE");
}

/*
 * A document in a malloc'd buffer: head, then `n` times pre, the index and
 * post, then tail.
 */
static char *
build_doc(const char *head, const char *pre, const char *post, unsigned int n,
    const char *tail, size_t *len)
{
	size_t cap = strlen(head) + strlen(tail) +
	    (size_t)n * (strlen(pre) + strlen(post) + 12) + 1;
	char *buf = malloc(cap), *p;
	unsigned int i;

	assert_non_null(buf);
	p = buf + sprintf(buf, "%s", head);
	for (i = 0; i < n; i++)
		p += sprintf(p, "%s%u%s", pre, i, post);
	p += sprintf(p, "%s", tail);
	*len = (size_t)(p - buf);
	return buf;
}

#define PSKC_ROOT                                                              \
	"<?xml version=\"1.0\"?>\n<KeyContainer Version=\"1.0\""               \
	" xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\""

/*
 * 200,000 namespace declarations on one element took the XML parser 18 s
 * of CPU (its checks are quadratic) before the file was refused. The work
 * is bounded before the parse: the file is refused, saying why.
 */
static void
test_pskc_namespace_flood_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	size_t len;
	char *doc = build_doc(PSKC_ROOT, " xmlns:p", "=\"urn:x\"", 200000,
	    "></KeyContainer>\n", &len);

	assert_int_equal(sotp_import_pskc(f->ctx, doc, len, NULL, 0, NULL, NULL,
	                     0, T0, &res),
	    SOTP_OK);
	free(doc);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT,
	    "line 2: more than 64 namespace declarations in scope");
	/* Spread over nested elements, they are in scope all the same. */
	doc =
	    build_doc(PSKC_ROOT ">", "<x xmlns:p", "=\"urn:x\">", 65, "", &len);
	assert_int_equal(sotp_import_pskc(f->ctx, doc, len, NULL, 0, NULL, NULL,
	                     0, T0, &res),
	    SOTP_OK);
	free(doc);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT,
	    "elements nested more than 32 deep");
}

/* s converted by iconv(3) to `to`, with `bom` before it: malloc'd. */
static char *
recode(const char *s, const char *to, const char *bom, size_t *len)
{
	iconv_t cd = iconv_open(to, "UTF-8");
	size_t inlen = strlen(s), cap = 4 * inlen + 8, outleft;
	char *out = malloc(cap), *in = (char *)(uintptr_t)s, *o;

	assert_true(cd != (iconv_t)-1);
	assert_non_null(out);
	memcpy(out, bom, strlen(bom));
	o = out + strlen(bom);
	outleft = cap - strlen(bom);
	assert_true(iconv(cd, &in, &inlen, &o, &outleft) != (size_t)-1);
	iconv_close(cd);
	*len = (size_t)(o - out);
	return out;
}

/*
 * The bounds on the markup are counted in the file's bytes, before the
 * parse: in UTF-16 or EBCDIC the markup is not in those bytes, and the
 * bounds let anything through (the parser then spent what they were to
 * bound). A file in any encoding but UTF-8 is refused, saying which.
 * Once each of these imported its token past the bound on namespace
 * declarations in scope, which UTF-8 keeps (the last case).
 */
static void
test_pskc_not_utf8_refused(void **state)
{
	static const struct {
		const char *enc, *bom, *decl, *text;
	} c[] = {
	    {"UTF-16LE", "\xff\xfe", "", "UTF-16 (byte order mark)"},
	    {"UTF-16BE", "", "", "NUL byte"},
	    {"UTF-16LE", "", " encoding=\"UTF-16\"", "NUL byte"},
	    {"IBM037", "", " encoding=\"IBM037\"", "not well-formed XML"},
	    {"UTF-8", "", " encoding='ISO-8859-1'",
	        "encoding 'ISO-8859-1' in its XML declaration: only UTF-8 "
	        "is read"},
	    {"UTF-8", "", " encoding=\"UTF-7\"",
	        "encoding 'UTF-7' in its XML declaration"},
	    {"UTF-8", "\xef\xbb\xbf", " encoding=\"utf-8\"",
	        "more than 64 namespace declarations in scope"},
	};
	struct fx *f = *state;
	struct sotp_import_result res;
	char head[512], *utf8, *doc;
	size_t len, i, k;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		snprintf(head, sizeof(head),
		    "<?xml version=\"1.0\"%s?>\n<KeyContainer Version=\"1.0\""
		    " xmlns=\"urn:ietf:params:xml:ns:keyprov:pskc\">"
		    "<KeyPackage><Key Id=\"ENC-%zu\" Algorithm=\"urn:ietf:"
		    "params:xml:ns:keyprov:pskc:totp\"><Data><Secret>"
		    "<PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=</PlainValue>"
		    "</Secret></Data>",
		    c[i].decl, i);
		/* 3 x 30 namespace declarations in scope, bound 64. */
		utf8 = malloc(strlen(head) + 3 * 30 * 24 + 64);
		assert_non_null(utf8);
		strcpy(utf8, head);
		for (k = 0; k < 3 * 30; k++) {
			if (k % 30 == 0)
				strcat(utf8, k == 0 ? "<x" : "><x");
			sprintf(
			    utf8 + strlen(utf8), " xmlns:p%zu=\"urn:x\"", k);
		}
		strcat(
		    utf8, "></x></x></x></Key></KeyPackage></KeyContainer>\n");
		doc = recode(utf8, c[i].enc, c[i].bom, &len);
		assert_int_equal(sotp_import_pskc(f->ctx, doc, len, NULL, 0,
		                     NULL, NULL, 0, T0, &res),
		    SOTP_OK);
		if (!res.refused || strstr(res.reason, c[i].text) == NULL)
			fail_msg("%s%s: refused %d: '%s'", c[i].enc, c[i].decl,
			    res.refused, res.reason);
		check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT, c[i].text);
		free(doc);
		free(utf8);
	}
}

/* Attributes, the other quadratic check, are bounded the same way. */
static void
test_pskc_attribute_flood_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	size_t len;
	char *doc = build_doc(
	    PSKC_ROOT, " a", "='1'", 200000, "></KeyContainer>\n", &len);

	assert_int_equal(sotp_import_pskc(f->ctx, doc, len, NULL, 0, NULL, NULL,
	                     0, T0, &res),
	    SOTP_OK);
	free(doc);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT,
	    "line 2: more than 64 attributes on one element");
}

/*
 * What a vendor file may do stays possible: declarations repeated on each
 * of many packages go out of scope with it, and quoted values, comments
 * and CDATA may hold any of the characters the bound counts.
 */
static void
test_pskc_many_scoped_namespaces_import(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	char *doc = malloc(1000 * 400 + 512), *p, seed[21], b64[32];
	unsigned int i;

	assert_non_null(doc);
	p = doc +
	    sprintf(doc, "%s",
	        PSKC_ROOT
	        " Id='a=b&gt;c' xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">"
	        "<!-- <x a=1 b=2 xmlns:q='z'> -->");
	/* Each its own seed: one seed in two tokens is refused. */
	for (i = 0; i < 1000; i++) {
		snprintf(seed, sizeof(seed), "NS-secret-%010u", i);
		EVP_EncodeBlock(
		    (unsigned char *)b64, (unsigned char *)seed, 20);
		p += sprintf(p,
		    "<KeyPackage xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" "
		    "b:c=\"x=y\"><Key Id=\"NS%u\" Algorithm=\"urn:ietf:params:"
		    "xml:ns:keyprov:pskc:totp\"><Data><Secret><PlainValue>"
		    "<![CDATA[%s]]></PlainValue></Secret></Data></Key>"
		    "</KeyPackage>",
		    i, b64);
	}
	p += sprintf(p, "</KeyContainer>\n");
	assert_int_equal(sotp_import_pskc(f->ctx, doc, (size_t)(p - doc), NULL,
	                     0, NULL, NULL, 1, T0, &res),
	    SOTP_OK);
	free(doc);
	if (res.refused)
		fail_msg("refused: entry %u: %s", res.entry, res.reason);
	assert_int_equal(res.imported, 1000);
}

/*
 * RFC 6030 section 5: a key whose Policy the recipient does not
 * understand, or forbids the use at hand, must not be used. Each of
 * these was once imported as if it had no Policy; T0 is 2026-06-01.
 */
static void
test_pskc_key_policy(void **state)
{
	static const struct {
		const char *policy, *text; /* text NULL: imported */
	} c[] = {
	    {"<KeyUsage>OTP</KeyUsage>", NULL},
	    {"<KeyUsage>CR</KeyUsage><KeyUsage>OTP</KeyUsage>", NULL},
	    {"<StartDate>2026-05-31T23:59:59Z</StartDate>"
	     "<ExpiryDate>2026-06-01T00:00:01Z</ExpiryDate>",
	        NULL},
	    {"<ExpiryDate>2026-06-01T09:00:01+09:00</ExpiryDate>"
	     "<StartDate>2026-05-31T18:59:59.5-05:00</StartDate>",
	        NULL},
	    {"<KeyUsage>Encrypt</KeyUsage>", "KeyUsage does not include OTP"},
	    {"<ExpiryDate>2026-05-31T23:59:59Z</ExpiryDate>",
	        "ExpiryDate 2026-05-31T23:59:59Z has passed"},
	    {"<ExpiryDate>2026-06-01T08:59:59+09:00</ExpiryDate>",
	        "ExpiryDate 2026-06-01T08:59:59+09:00 has passed"},
	    {"<StartDate>2026-06-01T00:00:01Z</StartDate>",
	        "StartDate 2026-06-01T00:00:01Z is still to come"},
	    {"<StartDate>June 1st</StartDate>",
	        "StartDate 'June 1st' is not an xs:dateTime"},
	    {"<NumberOfTransactions>10</NumberOfTransactions>",
	        "NumberOfTransactions: a key for a number of uses"},
	    {"<MaxUses xmlns=\"urn:vendor\">3</MaxUses>",
	        "Policy holds 'MaxUses', which is not understood"},
	};
	struct fx *f = *state;
	struct sotp_import_result res;
	char doc[2048];
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		snprintf(doc, sizeof(doc),
		    PSKC_ROOT "><KeyPackage><Key Id=\"POL-%zu\" Algorithm=\""
		              "urn:ietf:params:xml:ns:keyprov:pskc:totp\">"
		              "<Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1"
		              "Njc4OTA=</PlainValue></Secret></Data>"
		              "<Policy>%s</Policy></Key></KeyPackage>"
		              "</KeyContainer>\n",
		    i, c[i].policy);
		assert_int_equal(sotp_import_pskc(f->ctx, doc, strlen(doc),
		                     NULL, 0, NULL, NULL, 1, T0, &res),
		    SOTP_OK);
		if (c[i].text == NULL && res.refused)
			fail_msg("%s: refused: %s", c[i].policy, res.reason);
		if (c[i].text != NULL &&
		    (!res.refused || strstr(res.reason, c[i].text) == NULL))
			fail_msg("%s: refused %d '%s', not '%s'", c[i].policy,
			    res.refused, res.reason, c[i].text);
		if (c[i].text != NULL)
			check_refused(
			    f, &res, 0, 1, SOTP_R_BAD_INPUT, c[i].text);
	}
}

/*
 * A vendor's file with a seed in hex where PSKC wants base64 (entry 2 of
 * hex-plainvalue.pskc): 40 hex digits are base64 digits too, and were
 * imported as another, 30-byte key that no code of the token matches.
 * Refused now, naming the entry and the serial, and nothing imported (the
 * good entry 1 neither); the same seed in base64 imports and gives
 * oathtool's codes.
 */
static void
test_pskc_hex_plain_value_refused(void **state)
{
	static const struct want w = {"HEX-OK-1", S1, "sha1", 6, 30};
	struct fx *f = *state;
	struct sotp_import_result res;
	size_t len;
	char *buf, *at;

	assert_int_equal(
	    import_file(f, "hex-plainvalue.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 2, SOTP_R_BAD_INPUT,
	    "serial 'HEX-2': Secret PlainValue is 40 hex digits, a seed in "
	    "hex it seems, where PSKC (RFC 6030) requires base64");
	/* The value itself is never shown. */
	assert_null(strstr(res.reason, RFC_SECRET));
	assert_null(strstr(res.reason, "31323334"));
	/* The vendor's fix: the same seed in base64. */
	buf = slurp("hex-plainvalue.pskc", &len);
	assert_non_null(at = strstr(buf, RFC_SECRET));
	memcpy(at, "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=", 28);
	memmove(at + 28, at + 40, strlen(at + 40) + 1);
	assert_int_equal(sotp_import_pskc(f->ctx, buf, strlen(buf), NULL, 0,
	                     NULL, NULL, 0, T0, &res),
	    SOTP_OK);
	free(buf);
	if (res.refused)
		fail_msg("refused: %s", res.reason);
	assert_int_equal(res.imported, 2);
	check_token(f, &w);
	check_token(
	    f, &(const struct want){"HEX-2", RFC_SECRET, "sha1", 6, 30});
}

/*
 * The rule: a PlainValue of hex digits only (blanks aside), an even
 * count of them, 32 or more, is refused; genuine base64 made of hex
 * letters only is taken when shorter, of an odd count or padded, as the
 * bytes its base64 says (computed by Python's base64.b64decode).
 */
static void
test_pskc_hex_plain_value_rule(void **state)
{
	static const struct {
		const char *value;
		const char *hex; /* the seed taken; NULL: refused as hex */
		size_t digits;   /* refused: the count the reason gives; */
		/* taken: the case that holds that seed, or 0 */
	} c[] = {
	    /* 16 bytes in hex, the shortest refused. */
	    {"000102030405060708090a0b0c0d0e0f", NULL, 32},
	    /* 17 bytes: decodes as no base64, refused as hex all the same. */
	    {"000102030405060708090a0b0c0d0e0f10", NULL, 34},
	    /* 32 bytes in upper case, in groups over two lines. */
	    {"BD11955D C11F316D 2B63B07E 6793C28C\n"
	     "42BC357B 1706AA11 F5B207C6 099BF8E5",
	        NULL, 64},
	    /* 64 bytes (read as base64, 96: too long as well). */
	    {S3, NULL, 128},
	    /*
	     * The rule's price: 44 hex letters unpadded are refused although
	     * they are base64 of 33 bytes (for random bytes, (22/64)^44).
	     */
	    {"0123456789abcdefABCDEF0123456789abcdefABCDEF", NULL, 44},
	    /* Base64 of hex letters only, taken. 28: 21 bytes. */
	    {"0123456789abcdefABCDEF012345",
	        "d35db7e39ebbf3d69b71d79f001083105d35db7e39", 0},
	    /* 30 (even, below 32): 22 bytes. */
	    {"0123456789abcdefABCDEF0123456A",
	        "d35db7e39ebbf3d69b71d79f001083105d35db7e39e8", 0},
	    /* 43, unpadded (odd): 32 bytes. */
	    {"0123456789abcdefABCDEF0123456789abcdefABCDE",
	        "d35db7e39ebbf3d69b71d79f001083105d35db7e39ebbf3d69b71d79f0010831",
	        0},
	    /*
	     * The same padded: the same 32 bytes, so refused as the seed
	     * HEXR-7 (the case before) already holds.
	     */
	    {"0123456789abcdefABCDEF0123456789abcdefABCDE=",
	        "d35db7e39ebbf3d69b71d79f001083105d35db7e39ebbf3d69b71d79f0010831",
	        7},
	    /* RFC 6030's own: base64 with a non-hex letter. */
	    {"MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=", RFC_SECRET, 0},
	};
	struct fx *f = *state;
	struct sotp_import_result res;
	char doc[2048], want[64], serial[16];
	size_t i, before;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		before = count_tokens(f);
		snprintf(serial, sizeof(serial), "HEXR-%zu", i);
		snprintf(doc, sizeof(doc),
		    PSKC_ROOT "><KeyPackage><Key Id=\"%s\" Algorithm=\""
		              "urn:ietf:params:xml:ns:keyprov:pskc:totp\">"
		              "<Data><Secret><PlainValue>%s</PlainValue>"
		              "</Secret></Data></Key></KeyPackage>"
		              "</KeyContainer>\n",
		    serial, c[i].value);
		assert_int_equal(sotp_import_pskc(f->ctx, doc, strlen(doc),
		                     NULL, 0, NULL, NULL, 0, T0, &res),
		    SOTP_OK);
		if (c[i].hex == NULL) {
			snprintf(want, sizeof(want),
			    "serial '%s': Secret PlainValue is %zu hex digits",
			    serial, c[i].digits);
			if (!res.refused || strstr(res.reason, want) == NULL)
				fail_msg("%s: refused %d '%s', not '%s'",
				    c[i].value, res.refused, res.reason, want);
			check_refused(f, &res, before, 1, SOTP_R_BAD_INPUT,
			    "requires base64");
			continue;
		}
		if (c[i].digits > 0) {
			snprintf(want, sizeof(want),
			    "the same secret as token 'HEXR-%zu'", c[i].digits);
			check_refused(
			    f, &res, before, 1, SOTP_R_BAD_INPUT, want);
			continue;
		}
		if (res.refused)
			fail_msg("%s: refused: %s", c[i].value, res.reason);
		assert_int_equal(res.imported, 1);
		check_token(
		    f, &(const struct want){serial, c[i].hex, "sha1", 6, 30});
	}
}

/*
 * An element read for its value, twice in one place: the first counted,
 * and a reader of the file (a vendor's tool, a person) may well take the
 * other. Each of these once imported its first.
 */
static void
test_pskc_read_twice_refused(void **state)
{
	static const struct {
		const char *inner, *text;
	} c[] = {
	    {"<DeviceInfo><SerialNo>TW-A</SerialNo><SerialNo>TW-B</SerialNo>"
	     "</DeviceInfo><Key Id=\"TW-1\" Algorithm=\"urn:ietf:params:xml:"
	     "ns:keyprov:pskc:totp\"><Data><Secret><PlainValue>MTIzNDU2Nzg5"
	     "MDEyMzQ1Njc4OTA=</PlainValue></Secret></Data></Key>",
	        "DeviceInfo holds 2 SerialNo elements"},
	    {"<Key Id=\"TW-2\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:"
	     "pskc:totp\"><Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4"
	     "OTA=</PlainValue></Secret><Secret><PlainValue>OTg3NjU0MzIxMDk4"
	     "NzY1NDMyMTA=</PlainValue></Secret></Data></Key>",
	        "Data holds 2 Secret elements: one is read, so one is "
	        "allowed"},
	    {"<Key Id=\"TW-3\" Algorithm=\"urn:ietf:params:xml:ns:keyprov:"
	     "pskc:totp\"><Data><Secret><PlainValue>MTIzNDU2Nzg5MDEyMzQ1Njc4"
	     "OTA=</PlainValue></Secret></Data><Policy><ExpiryDate>2030-01-"
	     "01T00:00:00Z</ExpiryDate></Policy><Policy><ExpiryDate>2020-01-"
	     "01T00:00:00Z</ExpiryDate></Policy></Key>",
	        "Key holds 2 Policy elements"},
	};
	struct fx *f = *state;
	struct sotp_import_result res;
	char doc[2048];
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		snprintf(doc, sizeof(doc),
		    PSKC_ROOT "><KeyPackage>%s</KeyPackage></KeyContainer>\n",
		    c[i].inner);
		assert_int_equal(sotp_import_pskc(f->ctx, doc, strlen(doc),
		                     NULL, 0, NULL, NULL, 0, T0, &res),
		    SOTP_OK);
		if (!res.refused || strstr(res.reason, c[i].text) == NULL)
			fail_msg("case %zu: refused %d '%s'", i, res.refused,
			    res.reason);
		check_refused(f, &res, 0, 1, SOTP_R_BAD_INPUT, c[i].text);
	}
}

/*
 * [migration] pskc_signed = yes: an import without the vendor's
 * certificate is refused before the file is read, whether the file is
 * signed or not; the operator's memory of --signer is not the control.
 * Once imported.
 */
static void
test_pskc_policy_wants_signed(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	struct sotp_ctx *ctx = NULL;
	char conf[160], cmd[1024];
	size_t len;
	char *buf = slurp("gen-hotp-entry3.pskc", &len);

	snprintf(conf, sizeof(conf), "%s/signed.conf", f->dir);
	snprintf(cmd, sizeof(cmd),
	    "sed 's/^pskc_signed = no$/pskc_signed = yes/' %s > %s &&"
	    " grep -q '^pskc_signed = yes$' %s",
	    f->conf, conf, conf);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_OK);
	assert_int_equal(
	    sotp_import_pskc(ctx, buf, len, NULL, 0, NULL, NULL, 0, T0, &res),
	    SOTP_OK);
	check_refused(f, &res, 0, 0, SOTP_R_BAD_INPUT,
	    "the policy takes only signed PSKC files ([migration] "
	    "pskc_signed = yes): give the vendor's certificate (--signer)");
	/* CSV carries no signature: the policy is about PSKC alone. */
	assert_int_equal(
	    import_file(f, "good.csv", NULL, NULL, 1, &res), SOTP_OK);
	assert_false(res.refused);
	sotp_ctx_free(ctx);
	free(buf);
}

/* ---- CSV ---- */

static void
test_pskc_csv_import(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	struct sotp_token_info info;
	const struct want w[] = {
	    {"CSV-1", S1, "sha1", 6, 30},
	    {"CSV-2", S2, "sha256", 8, 60},
	    {"CSV-3", S3, "sha512", 6, 30},
	};
	size_t i;

	assert_int_equal(
	    import_file(f, "good.csv", NULL, NULL, 0, &res), SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 3);
	for (i = 0; i < 3; i++)
		check_token(f, &w[i]);
	assert_int_equal(sotp_token_get(f->ctx, "CSV-3", &info), SOTP_OK);
	assert_string_equal(info.kind, "pc-legacy");
	/* The same file again: every serial is in the store now. */
	assert_int_equal(
	    import_file(f, "good.csv", NULL, NULL, 0, &res), SOTP_OK);
	check_refused(f, &res, 3, 2, SOTP_R_EXISTS, "already in the store");
}

static void
test_pskc_csv_refusals(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	static const struct {
		const char *text;
		unsigned int entry;
		enum sotp_reason why;
		const char *reason;
	} bad[] = {
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\nA,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
	        2, SOTP_R_EXISTS, "duplicate serial"},
	    {"# c\nA,NOT-BASE32!\n", 2, SOTP_R_BAD_INPUT, "not base32"},
	    /* RFC 4226's seed in hex: not base32 (0, 1, 8, 9), said as hex */
	    {"A,3132333435363738393031323334353637383930\n", 1,
	        SOTP_R_BAD_INPUT, "not base32 (hex digits only"},
	    /* hex that is base32 too: it would have been another key */
	    {"A,3a2b4c5d6e7f2a3b4c5d6e7f2a3b4c5d6e7f2a3b\n", 1,
	        SOTP_R_BAD_INPUT, "hex digits only: a seed in hex"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,md5\n", 1, SOTP_R_BAD_INPUT,
	        "algorithm"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,hotp\n", 1, SOTP_R_BAD_INPUT,
	        "HOTP"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,sha1,9\n", 1, SOTP_R_BAD_INPUT,
	        "9 digits"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,sha1,6,0\n", 1,
	        SOTP_R_BAD_INPUT, "period 0"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,,,,nokind\n", 1,
	        SOTP_R_BAD_INPUT, "kind 'nokind'"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,,,,,x\n", 1, SOTP_R_BAD_INPUT,
	        "counter is not a number"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,,,,,1,x\n", 1,
	        SOTP_R_BAD_INPUT, "more than 7 fields"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,,,30,,5\n", 1,
	        SOTP_R_BAD_INPUT, "not both"},
	    {"A B,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n", 1, SOTP_R_BAD_INPUT,
	        "serial"},
	    {"A,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"
	     "B,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJR\n"
	     "C,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
	        3, SOTP_R_BAD_INPUT,
	        "the same secret as line 1: each token needs a seed of its "
	        "own"},
	    {"just-a-serial\n", 1, SOTP_R_BAD_INPUT, "want serial,"},
	    {"# nothing\n\n", 0, SOTP_R_BAD_INPUT, "no token"},
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sotp_import_csv(f->ctx, bad[i].text,
		                     strlen(bad[i].text), NULL, 0, T0, &res),
		    SOTP_OK);
		check_refused(
		    f, &res, 0, bad[i].entry, bad[i].why, bad[i].reason);
	}
	assert_int_equal(
	    import_file(f, "dup.csv", NULL, NULL, 0, &res), SOTP_OK);
	/* A CSV entry is a line: the first one is named as one too. */
	check_refused(f, &res, 0, 3, SOTP_R_EXISTS, "(line 1 has it too)");
	assert_int_equal(
	    import_file(f, "short.csv", NULL, NULL, 0, &res), SOTP_OK);
	check_refused(f, &res, 0, 3, SOTP_R_BAD_INPUT, "secret is 10 bytes");
}

/* The batch primitive itself: a rollback leaves no token behind. */
static void
test_pskc_store_batch_rollback(void **state)
{
	struct fx *f = *state;
	struct sotp_token_rec t;

	memset(&t, 0, sizeof(t));
	sotp_strlcpy(t.serial, "BATCH-1", sizeof(t.serial));
	sotp_strlcpy(t.kind, "mobile", sizeof(t.kind));
	t.digits = 6;
	t.period = 30;
	t.last_step = -1;
	t.secret_len = 32;
	/* The store refuses a value naming a key version it does not have. */
	assert_int_equal(sotp_keys_current(f->ctx, &t.kv), SOTP_OK);
	assert_int_equal(sotp_store_begin(f->ctx->st), SOTP_OK);
	assert_int_equal(sotp_store_token_insert(f->ctx->st, &t), SOTP_OK);
	sotp_store_rollback(f->ctx->st);
	assert_int_equal(count_tokens(f), 0);
	assert_int_equal(sotp_store_begin(f->ctx->st), SOTP_OK);
	assert_int_equal(sotp_store_token_insert(f->ctx->st, &t), SOTP_OK);
	assert_int_equal(sotp_store_commit(f->ctx->st), SOTP_OK);
	assert_int_equal(count_tokens(f), 1);
	/* Outside a batch rollback does nothing. */
	sotp_store_rollback(f->ctx->st);
	assert_int_equal(count_tokens(f), 1);
}

/* ---- the --signer file ---- */

#define CERT_BLOCK                                                             \
	"-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
#define KEY_BLOCK                                                              \
	"-----BEGIN PRIVATE KEY-----\nMIICAAAA\n-----END PRIVATE KEY-----\n"
#define X509_BLOCK                                                             \
	"-----BEGIN X509 CERTIFICATE-----\nMIIBAAAA\n"                         \
	"-----END X509 CERTIFICATE-----\n"

/*
 * One CERTIFICATE (or legacy X509 CERTIFICATE) block with blanks around
 * it, nothing else: a key or any block beside it is named by type (never
 * its content); text around it and a TRUSTED CERTIFICATE are refused with
 * the openssl command that makes the file right.
 */
static void
test_pskc_signer_check(void **state)
{
	static const struct {
		const char *pem, *why; /* why NULL: accepted */
	} cases[] = {
	    {CERT_BLOCK, NULL},
	    {"\n \t\r\n" CERT_BLOCK "\r\n\n  ", NULL},
	    {CERT_BLOCK KEY_BLOCK,
	        "holds something besides one certificate (a PEM block "
	        "'PRIVATE KEY')"},
	    {KEY_BLOCK CERT_BLOCK,
	        "holds something besides one certificate (a PEM block "
	        "'PRIVATE KEY')"},
	    {CERT_BLOCK "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"
	                "-----END RSA PRIVATE KEY-----\n",
	        "(a PEM block 'RSA PRIVATE KEY')"},
	    {CERT_BLOCK "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n",
	        "(a PEM block 'ENCRYPTED PRIVATE KEY')"},
	    /* The legacy label, which OpenSSL reads as a certificate. */
	    {X509_BLOCK, NULL},
	    {"\r\n" X509_BLOCK "\n\n", NULL},
	    {"-----BEGIN X509 CERTIFICATE-----\nMIIB\n"
	     "-----END CERTIFICATE-----\n",
	        "holds a certificate without its END line"},
	    {"-----BEGIN CERTIFICATE-----\nMIIB\n"
	     "-----END X509 CERTIFICATE-----\n",
	        "holds a certificate without its END line"},
	    {X509_BLOCK KEY_BLOCK, "(a PEM block 'PRIVATE KEY')"},
	    {X509_BLOCK CERT_BLOCK, "holds more than one certificate"},
	    {CERT_BLOCK X509_BLOCK, "holds more than one certificate"},
	    /* Trust settings ride with it: refused, saying how to drop them. */
	    {"-----BEGIN TRUSTED CERTIFICATE-----\nMIIB\n"
	     "-----END TRUSTED CERTIFICATE-----\n",
	        "holds a TRUSTED CERTIFICATE (OpenSSL trust settings with "
	        "it): write the certificate alone with: openssl x509 -in "
	        "FILE -out NEWFILE"},
	    {CERT_BLOCK "-----BEGIN TRUSTED CERTIFICATE-----\n",
	        "holds a TRUSTED CERTIFICATE"},
	    {"-----BEGIN CERTIFICATEX-----\nMIIB\n",
	        "(a PEM block 'CERTIFICATEX')"},
	    {"-----BEGIN X509 CERTIFICATES-----\nMIIB\n",
	        "(a PEM block 'X509 CERTIFICATES')"},
	    {CERT_BLOCK "-----BEGIN private key-----\n", "(a PEM block)"},
	    {CERT_BLOCK CERT_BLOCK, "holds more than one certificate"},
	    /* openssl x509 -text: refused, with the command that fixes it. */
	    {"Certificate:\n    Data: ...\n" CERT_BLOCK,
	        "holds text before the certificate (as openssl x509 -text "
	        "writes it): write the certificate alone with: openssl x509 "
	        "-in FILE -out NEWFILE"},
	    {"Certificate:\n    Data: ...\n" X509_BLOCK,
	        "holds text before the certificate"},
	    /* A key in the dump is still named as the key it is. */
	    {"Certificate:\n" KEY_BLOCK CERT_BLOCK,
	        "(a PEM block 'PRIVATE KEY')"},
	    {CERT_BLOCK "trailing\n",
	        "holds text after the certificate: write the certificate "
	        "alone with: openssl x509 -in FILE -out NEWFILE"},
	    {CERT_BLOCK "MIICAAAA\n", "holds text after the certificate"},
	    {"-----BEGIN CERTIFICATE-----\nMIIB\n",
	        "holds a certificate without its END line"},
	    {"not a certificate\n", "holds no PEM certificate"},
	    {"", "holds no PEM certificate"},
	};
	static const char nul[] = CERT_BLOCK "\0";
	char why[SOTP_MSG_MAX];
	size_t i;
	int r;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why[0] = '\0';
		r = sotp_signer_check(
		    cases[i].pem, strlen(cases[i].pem), why, sizeof(why));
		if (cases[i].why == NULL
		        ? r != 0
		        : r != -1 || strstr(why, cases[i].why) == NULL)
			fail_msg("case %zu: got %d '%s', want '%s'", i, r, why,
			    cases[i].why != NULL ? cases[i].why : "accepted");
		if (strstr(why, "MIIC") != NULL || strstr(why, "MIIE") != NULL)
			fail_msg(
			    "case %zu: the refusal quotes content: %s", i, why);
	}
	/* A NUL is no blank: the length given counts, not the string. */
	assert_int_equal(
	    sotp_signer_check(nul, sizeof(nul) - 1, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "holds text after the certificate"));
}

/* The library refuses such a file too, before the PSKC file's shape. */
static void
test_pskc_signer_with_key_refused(void **state)
{
	static const char signer[] = CERT_BLOCK KEY_BLOCK;
	struct fx *f = *state;
	struct sotp_import_result res;
	size_t len;
	char *buf = slurp("rfc6030-figure2-totp.pskc", &len);

	assert_int_equal(
	    sotp_import_pskc_signed(f->ctx, buf, len, NULL, 0, NULL, signer,
	        sizeof(signer) - 1, NULL, 0, T0, &res),
	    SOTP_OK);
	free(buf);
	if (!res.refused ||
	    strcmp(res.reason,
	        "signature: the signer file holds something "
	        "besides one certificate (a PEM block "
	        "'PRIVATE KEY')") != 0)
		fail_msg("refused %d: '%s'", res.refused, res.reason);
	assert_int_equal(res.why, SOTP_R_BAD_INPUT);
	assert_int_equal(count_tokens(f), 0);
}

/*
 * The context's error text after an import error belongs to that import,
 * never to an earlier call on the same context. A refused password
 * change leaves its text on the context; then an import that OpenSSL
 * stops (every fetch failing: PBKDF2 or the seal cannot run), an error
 * that is not the store's, must not report that text as its cause.
 */
static void
leftover_then(struct fx *f, char *first, size_t firstsz)
{
	struct sotp_decision d;

	assert_int_equal(
	    sotp_contract_passwd(f->ctx, "C-LEFT", "", T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	snprintf(first, firstsz, "%s", sotp_ctx_errmsg(f->ctx));
	assert_true(first[0] != '\0');
	assert_int_equal(
	    EVP_set_default_properties(NULL, "provider=sotp-none"), 1);
}

static void
test_pskc_error_text_is_the_imports(void **state)
{
	static const struct {
		const char *file, *pass;
	} files[] = {{"gen-pbkdf2.pskc", GEN_PASS}, {"good.csv", NULL}};
	struct fx *f = *state;
	struct sotp_import_result res;
	char first[1024];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		leftover_then(f, first, sizeof(first));
		rc =
		    import_file(f, files[i].file, NULL, files[i].pass, 0, &res);
		assert_int_equal(EVP_set_default_properties(NULL, ""), 1);
		print_message("%s: rc %d, \"%s\"\n", files[i].file, rc,
		    sotp_ctx_errmsg(f->ctx));
		assert_int_not_equal(rc, SOTP_OK);
		assert_int_not_equal(rc, SOTP_ERR_STORE);
		assert_non_null(
		    strstr(sotp_ctx_errmsg(f->ctx), "nothing imported"));
		assert_null(strstr(sotp_ctx_errmsg(f->ctx), first));
	}
	assert_int_equal(count_tokens(f), 0);
}

/*
 * The same for a contract import: one refused for its arguments (no
 * such format) names them, not the earlier call's cause.
 */
static void
test_pskc_contract_import_error_text(void **state)
{
	struct fx *f = *state;
	struct sotp_contract_import_result res;
	char first[1024];
	int rc;

	leftover_then(f, first, sizeof(first));
	assert_int_equal(EVP_set_default_properties(NULL, ""), 1);
	rc = sotp_contract_import(f->ctx, "", 0, (enum sotp_record_format)99, 0,
	    T0, NULL, NULL, &res);
	print_message(
	    "contracts: rc %d, \"%s\"\n", rc, sotp_ctx_errmsg(f->ctx));
	assert_int_equal(rc, SOTP_ERR_INVALID_ARG);
	assert_true(sotp_ctx_errmsg(f->ctx)[0] != '\0');
	assert_null(strstr(sotp_ctx_errmsg(f->ctx), first));
	/* A token import handed no bytes for its length: the same. */
	leftover_then(f, first, sizeof(first));
	assert_int_equal(EVP_set_default_properties(NULL, ""), 1);
	assert_int_equal(sotp_import_csv(f->ctx, NULL, 10, NULL, 0, T0,
	                     &(struct sotp_import_result){0}),
	    SOTP_ERR_INVALID_ARG);
	assert_true(sotp_ctx_errmsg(f->ctx)[0] != '\0');
	assert_null(strstr(sotp_ctx_errmsg(f->ctx), first));
}

/* ---- seeds a token in the store already holds ---- */

/* base32 of RFC_SECRET ("12345678901234567890"), of S1 and of S4. */
#define RFC_B32 "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#define S1_B32 "HEULIW3A2LAAIYE553NEHZCUF4LLBBYF"
#define S4_B32 "6XGYXMHCDKO6EU4F4LSYEHZS523GV7VG"

static int
csv(struct fx *f, const char *text, int dry_run, struct sotp_import_result *res)
{
	return sotp_import_csv(
	    f->ctx, text, strlen(text), NULL, dry_run, T0, res);
}

/* token add of hex's seed under serial: the decision, its reason. */
static int
add_hex(struct fx *f, const char *serial, const char *hex, time_t t,
    struct sotp_decision *d)
{
	struct sotp_token_spec spec;
	uint8_t key[64];
	size_t len = 0;
	int rc;

	hex_decode(hex, key, &len);
	sotp_token_spec_defaults(f->ctx, &spec);
	spec.serial = serial;
	rc = sotp_token_add(f->ctx, &spec, key, len, t, d);
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

/*
 * A seed that a stored token holds, under a new serial (a vendor's batch
 * re-issued, a file imported twice with its serials renamed): refused,
 * all or nothing, naming the entry, its serial and the token holding the
 * seed, never the seed; seeds of their own still import.
 */
static void
test_pskc_seed_in_store_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;

	assert_int_equal(csv(f, "ST-1," RFC_B32 "\n", 0, &res), SOTP_OK);
	assert_int_equal(res.imported, 1);

	/* PSKC: figure 2 holds RFC_SECRET under 987654321. */
	assert_int_equal(
	    import_file(f, "rfc6030-figure2-totp.pskc", NULL, NULL, 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 1, 1, SOTP_R_BAD_INPUT,
	    "serial '987654321' has the same secret as token 'ST-1', already "
	    "in the store: each token needs a seed of its own");
	assert_null(strstr(res.reason, RFC_B32));
	assert_null(strstr(res.reason, "1234567890"));
	/* A dry run says the same, and stores nothing either way. */
	assert_int_equal(
	    import_file(f, "rfc6030-figure2-totp.pskc", NULL, NULL, 1, &res),
	    SOTP_OK);
	check_refused(f, &res, 1, 1, SOTP_R_BAD_INPUT,
	    "serial '987654321' has the same secret as token 'ST-1'");

	/* CSV: line 3's seed is ST-1's; line 2's, its own, stays out too. */
	assert_int_equal(
	    csv(f, "# two\nST-2," S1_B32 "\nST-3," RFC_B32 "\n", 0, &res),
	    SOTP_OK);
	check_refused(f, &res, 1, 3, SOTP_R_BAD_INPUT,
	    "serial 'ST-3' has the same secret as token 'ST-1', already in "
	    "the store");
	assert_int_equal(
	    sotp_token_get(f->ctx, "ST-2", &(struct sotp_token_info){0}),
	    SOTP_ERR_NOT_FOUND);

	/* Two stored tokens, the later entry's seed held: that one named. */
	assert_int_equal(csv(f, "ST-2," S1_B32 "\n", 0, &res), SOTP_OK);
	assert_int_equal(res.imported, 1);
	assert_int_equal(
	    csv(f, "ST-4," S4_B32 "\nST-5," S1_B32 "\n", 0, &res), SOTP_OK);
	check_refused(f, &res, 2, 2, SOTP_R_BAD_INPUT,
	    "serial 'ST-5' has the same secret as token 'ST-2'");

	/* One file, one seed twice: refused on its own (no store needed). */
	assert_int_equal(
	    csv(f, "ST-6," S4_B32 "\nST-7," S4_B32 "\n", 0, &res), SOTP_OK);
	check_refused(
	    f, &res, 2, 2, SOTP_R_BAD_INPUT, "the same secret as line 1");

	/* Seeds of their own import. */
	assert_int_equal(csv(f, "ST-4," S4_B32 "\n", 0, &res), SOTP_OK);
	assert_false(res.refused);
	assert_int_equal(res.imported, 1);
	assert_int_equal(count_tokens(f), 3);
}

/* token add: the same rule; a generated token is unaffected. */
static void
test_pskc_token_add_seed_in_store_refused(void **state)
{
	struct fx *f = *state;
	struct sotp_token_spec spec;
	struct sotp_decision d;
	char serial[SOTP_ID_MAX];

	assert_int_equal(add_hex(f, "ADD-1", RFC_SECRET, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(add_hex(f, "ADD-2", RFC_SECRET, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_BAD_INPUT);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx),
	    "the same secret as token 'ADD-1', already in the store"));
	assert_int_equal(
	    sotp_token_get(f->ctx, "ADD-2", &(struct sotp_token_info){0}),
	    SOTP_ERR_NOT_FOUND);
	/* A serial already there is refused as such, not as a seed. */
	assert_int_equal(add_hex(f, "ADD-1", RFC_SECRET, T0, &d), SOTP_OK);
	assert_int_equal(d.reason, SOTP_R_EXISTS);
	/* An imported token's seed, too. */
	assert_int_equal(
	    csv(f, "ADD-3," S1_B32 "\n", 0, &(struct sotp_import_result){0}),
	    SOTP_OK);
	assert_int_equal(add_hex(f, "ADD-2", S1, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "token 'ADD-3'"));
	/* And an added token's seed bars an import. */
	assert_int_equal(
	    csv(f, "ADD-4," RFC_B32 "\n", 0, &(struct sotp_import_result){0}),
	    SOTP_OK);
	assert_int_equal(
	    sotp_token_get(f->ctx, "ADD-4", &(struct sotp_token_info){0}),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(add_hex(f, "ADD-2", S4, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_token_spec_defaults(f->ctx, &spec);
	assert_int_equal(sotp_token_generate(f->ctx, &spec, NULL, NULL, NULL,
	                     T0, serial, NULL, &d),
	    SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(count_tokens(f), 4);
}

/*
 * A token without a fingerprint (a store upgraded to schema version 5
 * before init filled it): the store cannot be checked, so nothing comes
 * in, an error naming the token and init, for an import, a dry run and
 * token add. init's fill makes it findable.
 */
static void
test_pskc_seed_check_fails_closed(void **state)
{
	struct fx *f = *state;
	struct sotp_import_result res;
	struct sotp_decision d;
	struct sotp_token_rec t;
	uint8_t key[SHA1_LEN];
	size_t len = 0;
	int64_t filled = 0;

	hex_decode(S4, key, &len);
	memset(&t, 0, sizeof(t));
	sotp_strlcpy(t.serial, "OLD-1", sizeof(t.serial));
	sotp_strlcpy(t.kind, f->ctx->pol.kinds[f->ctx->pol.default_kind].name,
	    sizeof(t.kind));
	t.alg = SOTP_ALG_SHA1;
	t.digits = 6;
	t.period = 30;
	t.last_step = -1;
	assert_int_equal(sotp_keys_seal(f->ctx, t.serial, key, len, t.secret,
	                     sizeof(t.secret), &t.secret_len),
	    SOTP_OK);
	assert_int_equal(
	    sotp_sealed_kv(t.secret, t.secret_len, &t.kv), SOTP_OK);
	assert_int_equal(sotp_store_token_insert(f->ctx->st, &t), SOTP_OK);

	assert_int_equal(csv(f, "OK-1," S4_B32 "\n", 0, &res), SOTP_ERR_STORE);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx),
	    "token 'OLD-1' in the store has no seed fingerprint yet"));
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "shinkin-otp init"));
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "nothing imported"));
	assert_int_equal(res.imported, 0);
	assert_int_equal(count_tokens(f), 1);
	assert_int_equal(csv(f, "OK-1," S4_B32 "\n", 1, &res), SOTP_ERR_STORE);
	assert_int_equal(add_hex(f, "OK-2", S4, T0, &d), SOTP_ERR_STORE);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "token 'OLD-1'"));
	assert_int_equal(count_tokens(f), 1);

	assert_int_equal(sotp_seed_fill(f->ctx, T0, &filled), SOTP_OK);
	assert_int_equal(filled, 1);
	assert_int_equal(add_hex(f, "OK-2", S4, T0, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_non_null(strstr(
	    sotp_ctx_errmsg(f->ctx), "the same secret as token 'OLD-1'"));
	assert_int_equal(sotp_seed_fill(f->ctx, T0, &filled), SOTP_OK);
	assert_int_equal(filled, 0);
	OPENSSL_cleanse(key, sizeof(key));
}

/*
 * Across a rotation: a token under the old version, one re-sealed under
 * the new, one added under the new while the old is still live, and all
 * of them once the old version is retired: each seed is found, whatever
 * version its token is under (the re-seal writes the fingerprint anew).
 */
static void
test_pskc_seed_check_across_rotation(void **state)
{
	struct fx *f = *state;
	struct sotp_key_step st;
	struct sotp_decision d;
	time_t t = T0;

	assert_int_equal(add_hex(f, "ROT-1", S1, t, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(add_hex(f, "ROT-2", RFC_SECRET, t, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(sotp_key_rotate_begin(f->ctx, t, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_STARTED);
	/* Half done: ROT-1 re-sealed (batch of one), ROT-2 not yet. */
	assert_int_equal(sotp_key_rotate_step(f->ctx, t, 1, &st), SOTP_OK);
	assert_int_equal(st.what, SOTP_KEY_RESEALED);
	assert_int_equal(st.count, 1);
	assert_int_equal(st.left, 1);
	assert_int_equal(add_hex(f, "ROT-3", S4, t, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(add_hex(f, "DUP", S1, t, &d), SOTP_OK);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "token 'ROT-1'"));
	assert_int_equal(add_hex(f, "DUP", RFC_SECRET, t, &d), SOTP_OK);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "token 'ROT-2'"));
	assert_int_equal(add_hex(f, "DUP", S4, t, &d), SOTP_OK);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "token 'ROT-3'"));
	/* To the end: every token under the new version, the old retired. */
	do
		assert_int_equal(
		    sotp_key_rotate_step(f->ctx, t, 100, &st), SOTP_OK);
	while (st.what == SOTP_KEY_RESEALED && st.left > 0);
	t += 3600;
	do
		assert_int_equal(
		    sotp_key_rotate_step(f->ctx, t, 100, &st), SOTP_OK);
	while (st.what != SOTP_KEY_DONE);
	assert_int_equal(add_hex(f, "DUP", S1, t, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "token 'ROT-1'"));
	assert_int_equal(add_hex(f, "DUP", RFC_SECRET, t, &d), SOTP_OK);
	assert_non_null(strstr(sotp_ctx_errmsg(f->ctx), "token 'ROT-2'"));
	assert_int_equal(
	    csv(f, "DUP," S4_B32 "\n", 0, &(struct sotp_import_result){0}),
	    SOTP_OK);
	assert_int_equal(count_tokens(f), 3);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_pskc_rfc_figure2_plain),
	    T(test_pskc_rfc_figure6_preshared_key),
	    T(test_pskc_rfc_figure7_pbkdf2),
	    T(test_pskc_rfc_figure2_basic),
	    T(test_pskc_rfc_figure3_supplementary),
	    T(test_pskc_rfc_figure4_derived_refused),
	    T(test_pskc_rfc_figure5_pin),
	    T(test_pskc_rfc_figure6_hotp_psk),
	    T(test_pskc_rfc_figure7_hotp_pbkdf2),
	    T(test_pskc_generated_psk_three_tokens),
	    T(test_pskc_generated_pbkdf2),
	    T(test_pskc_dry_run_stores_nothing),
	    T(test_pskc_wrong_key_refused),
	    T(test_pskc_bad_mac_refused),
	    T(test_pskc_forged_mac_key_refused),
	    T(test_pskc_same_secret_refused),
	    T(test_pskc_truncated_refused),
	    T(test_pskc_duplicates_refused),
	    T(test_pskc_entry3_hotp_mixed),
	    T(test_pskc_plain_secret_in_encrypted_file_refused),
	    T(test_pskc_key_given_for_plain_file_refused),
	    T(test_pskc_pbkdf2_xenc11_namespace),
	    T(test_pskc_csv_hotp),
	    T(test_pskc_doctype_refused),
	    T(test_pskc_namespace_flood_refused),
	    T(test_pskc_attribute_flood_refused),
	    T(test_pskc_not_utf8_refused),
	    T(test_pskc_many_scoped_namespaces_import),
	    T(test_pskc_key_policy),
	    T(test_pskc_hex_plain_value_refused),
	    T(test_pskc_hex_plain_value_rule),
	    T(test_pskc_read_twice_refused),
	    T(test_pskc_policy_wants_signed),
	    T(test_pskc_csv_import),
	    T(test_pskc_csv_refusals),
	    T(test_pskc_store_batch_rollback),
	    T(test_pskc_error_text_is_the_imports),
	    T(test_pskc_contract_import_error_text),
	    cmocka_unit_test(test_pskc_signer_check),
	    T(test_pskc_signer_with_key_refused),
	    T(test_pskc_seed_in_store_refused),
	    T(test_pskc_token_add_seed_in_store_refused),
	    T(test_pskc_seed_check_fails_closed),
	    T(test_pskc_seed_check_across_rotation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

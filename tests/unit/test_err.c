/*
 * test_err.c - every rc and every reason has a distinct name and a text;
 * the small name tables parse what they print.
 */
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

static const int all_reasons[] = {
    SOTP_R_ACCEPTED,
    SOTP_R_CONTINUE,
    SOTP_R_WRONG_CODE,
    SOTP_R_REPLAYED,
    SOTP_R_LOCKED,
    SOTP_R_UNKNOWN_CONTRACT,
    SOTP_R_UNKNOWN_SERIAL,
    SOTP_R_ALREADY_BOUND,
    SOTP_R_TOKEN_IN_USE,
    SOTP_R_NOT_BOUND,
    SOTP_R_WRONG_PASSWORD,
    SOTP_R_WRONG_CARD,
    SOTP_R_NO_CARD,
    SOTP_R_CONTRACT_CLOSED,
    SOTP_R_STILL_BOUND,
    SOTP_R_TOKEN_SUNSET,
    SOTP_R_TOKEN_DISABLED,
    SOTP_R_BAD_INPUT,
    SOTP_R_STATE_INVALID,
    SOTP_R_STATE_EXPIRED,
    SOTP_R_STATE_REPLAYED,
    SOTP_R_TOO_MANY_ROUNDS,
    SOTP_R_EXISTS,
    SOTP_R_UNKNOWN_CONTEXT,
    SOTP_R_AMBIGUOUS_INPUT,
    SOTP_R_STORE_UNAVAILABLE,
    SOTP_R_BAD_CONFIG,
    SOTP_R_INTERNAL,
};

static void
test_err_every_rc_named(void **state)
{
	int rc, other;

	(void)state;
	for (rc = SOTP_ERR_LAST; rc <= SOTP_OK; rc++) {
		const char *name = sotp_rc_name(rc);
		const char *text = sotp_strerror(rc);

		assert_non_null(name);
		assert_non_null(text);
		assert_true(strncmp(name, "SOTP_", 5) == 0);
		assert_true(text[0] != '\0');
		for (other = rc + 1; other <= SOTP_OK; other++)
			assert_string_not_equal(name, sotp_rc_name(other));
	}
	assert_string_equal(sotp_rc_name(SOTP_OK), "SOTP_OK");
	assert_string_equal(sotp_rc_name(SOTP_ERR_STORE), "SOTP_ERR_STORE");
	assert_string_equal(sotp_rc_name(SOTP_ERR_BUFFER), "SOTP_ERR_BUFFER");
	assert_string_equal(sotp_strerror(SOTP_ERR_SYSTEM), "system error");
}

static void
test_err_out_of_range(void **state)
{
	(void)state;
	assert_string_equal(sotp_strerror(1), "unknown error");
	assert_string_equal(sotp_strerror(SOTP_ERR_LAST - 1), "unknown error");
	assert_string_equal(sotp_strerror(-1000000), "unknown error");
	assert_non_null(sotp_rc_name(42));
	assert_string_not_equal(sotp_rc_name(42), "SOTP_OK");
	assert_string_equal(sotp_reason_text(-1), "unknown reason");
	assert_string_equal(sotp_reason_text(2), "unknown reason");
	assert_string_equal(sotp_reason_name(1000), "UNKNOWN");
}

static void
test_err_every_reason_named(void **state)
{
	size_t i, j;

	(void)state;
	for (i = 0; i < NELEM(all_reasons); i++) {
		const char *name = sotp_reason_name(all_reasons[i]);
		const char *text = sotp_reason_text(all_reasons[i]);

		assert_string_not_equal(name, "UNKNOWN");
		assert_string_not_equal(text, "unknown reason");
		assert_true(text[0] != '\0');
		for (j = i + 1; j < NELEM(all_reasons); j++) {
			assert_string_not_equal(
			    name, sotp_reason_name(all_reasons[j]));
			assert_string_not_equal(
			    text, sotp_reason_text(all_reasons[j]));
		}
	}
	assert_string_equal(sotp_reason_name(SOTP_R_WRONG_CODE), "WRONG_CODE");
	assert_string_equal(sotp_reason_text(SOTP_R_WRONG_CODE), "wrong code");
	assert_string_equal(
	    sotp_reason_text(SOTP_R_REPLAYED), "code already used");
	assert_string_equal(sotp_reason_text(SOTP_R_TOKEN_SUNSET),
	    "token kind past its sunset date");
}

static void
test_err_reason_from_rc(void **state)
{
	int rc;

	(void)state;
	assert_int_equal(sotp_reason_from_rc(SOTP_ERR_STORE_UNAVAILABLE),
	    SOTP_R_STORE_UNAVAILABLE);
	assert_int_equal(
	    sotp_reason_from_rc(SOTP_ERR_STORE), SOTP_R_STORE_UNAVAILABLE);
	assert_int_equal(
	    sotp_reason_from_rc(SOTP_ERR_CONFIG), SOTP_R_BAD_CONFIG);
	assert_int_equal(sotp_reason_from_rc(SOTP_ERR_KEY), SOTP_R_BAD_CONFIG);
	assert_int_equal(
	    sotp_reason_from_rc(SOTP_ERR_BAD_INPUT), SOTP_R_BAD_INPUT);
	assert_int_equal(sotp_reason_from_rc(SOTP_ERR_NOMEM), SOTP_R_INTERNAL);
	assert_int_equal(
	    sotp_reason_from_rc(SOTP_ERR_DECRYPT), SOTP_R_INTERNAL);
	assert_int_equal(sotp_reason_from_rc(-9999), SOTP_R_INTERNAL);
	/* Never ACCEPTED, whatever the rc. */
	for (rc = SOTP_ERR_LAST - 1; rc <= 1; rc++)
		assert_int_not_equal(sotp_reason_from_rc(rc), SOTP_R_ACCEPTED);
}

static void
test_err_factor_names(void **state)
{
	static const unsigned int f[] = {SOTP_F_PASSWORD, SOTP_F_OTP,
	    SOTP_F_CARD, SOTP_F_SERIAL, SOTP_F_LOGIN_CHOICE};
	size_t i, j;

	(void)state;
	for (i = 0; i < NELEM(f); i++) {
		assert_string_not_equal(sotp_factor_name(f[i]), "unknown");
		for (j = i + 1; j < NELEM(f); j++)
			assert_string_not_equal(
			    sotp_factor_name(f[i]), sotp_factor_name(f[j]));
	}
	assert_string_equal(sotp_factor_name(SOTP_F_OTP), "otp");
	assert_string_equal(sotp_factor_name(SOTP_F_LOGIN_CHOICE), "login-otp");
	assert_string_equal(sotp_factor_name(0), "unknown");
	assert_string_equal(
	    sotp_factor_name(SOTP_F_OTP | SOTP_F_CARD), "unknown");
}

static void
test_err_login_names(void **state)
{
	enum sotp_login l = SOTP_LOGIN_CARD;

	(void)state;
	assert_int_equal(sotp_login_parse("otp", &l), SOTP_OK);
	assert_int_equal(l, SOTP_LOGIN_OTP);
	assert_int_equal(sotp_login_parse("none", &l), SOTP_OK);
	assert_int_equal(l, SOTP_LOGIN_NONE);
	assert_int_equal(sotp_login_parse("card", &l), SOTP_OK);
	assert_int_equal(l, SOTP_LOGIN_CARD);
	assert_int_equal(sotp_login_parse("yes", &l), SOTP_OK);
	assert_int_equal(l, SOTP_LOGIN_OTP);
	assert_int_equal(sotp_login_parse("no", &l), SOTP_OK);
	assert_int_equal(l, SOTP_LOGIN_NONE);
	assert_int_equal(sotp_login_parse("", &l), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_login_parse("otpx", &l), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_login_parse(NULL, &l), SOTP_ERR_INVALID_ARG);
	for (l = SOTP_LOGIN_NONE; l <= SOTP_LOGIN_CARD; l++) {
		enum sotp_login back = SOTP_LOGIN_NONE;

		assert_int_equal(
		    sotp_login_parse(sotp_login_name(l), &back), SOTP_OK);
		assert_int_equal(back, l);
	}
}

static void
test_err_alg_names(void **state)
{
	enum sotp_alg a = SOTP_ALG_SHA1;

	(void)state;
	assert_string_equal(sotp_alg_name(SOTP_ALG_SHA1), "sha1");
	assert_string_equal(sotp_alg_name(SOTP_ALG_SHA256), "sha256");
	assert_string_equal(sotp_alg_name(SOTP_ALG_SHA512), "sha512");
	assert_null(sotp_alg_name((enum sotp_alg)7));
	assert_int_equal(sotp_alg_parse("SHA256", &a), SOTP_OK);
	assert_int_equal(a, SOTP_ALG_SHA256);
	assert_int_equal(sotp_alg_parse("sha512", &a), SOTP_OK);
	assert_int_equal(a, SOTP_ALG_SHA512);
	assert_int_equal(sotp_alg_parse("Sha1", &a), SOTP_OK);
	assert_int_equal(a, SOTP_ALG_SHA1);
	assert_int_equal(sotp_alg_parse("md5", &a), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_alg_parse("sha-1", &a), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_alg_parse(NULL, &a), SOTP_ERR_INVALID_ARG);
}

/* mem.c helpers live in this binary too: they are as small as err.c. */
static void
test_err_parse_ll(void **state)
{
	long long v = 7;

	(void)state;
	assert_int_equal(sotp_parse_ll("42", 0, 100, &v), SOTP_OK);
	assert_int_equal(v, 42);
	assert_int_equal(sotp_parse_ll("-5", -10, 10, &v), SOTP_OK);
	assert_int_equal(v, -5);
	assert_int_equal(sotp_parse_ll("0", 0, 0, &v), SOTP_OK);
	assert_int_equal(sotp_parse_ll("101", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(v, 0);
	assert_int_equal(sotp_parse_ll("-1", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll("", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll(" 5", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll("+5", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll("5 ", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll("5x", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll("-", -9, 9, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll("0x10", 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(
	    sotp_parse_ll("99999999999999999999", 0, LLONG_MAX, &v),
	    SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll(NULL, 0, 100, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(
	    sotp_parse_ll("9223372036854775807", 0, LLONG_MAX, &v), SOTP_OK);
	assert_true(v == LLONG_MAX);
}

/*
 * A zero-padded number or -0 could be a typo or meant as octal: the policy
 * and the CLI refuse it, and say why. Machine-written data keep it.
 */
static void
test_err_parse_ll_leading_zero(void **state)
{
	static const char *const padded[] = {
	    "007", "00", "-0", "-00", "-07", "010", "0009223372036854775807"};
	static const char *const plain[] = {
	    "0", "7", "-7", "10", "100", "", "-", "x0", "0x", "+0", " 0", NULL};
	long long v;
	int64_t t = 1;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(padded) / sizeof(padded[0]); i++) {
		v = 5;
		if (sotp_parse_ll(padded[i], -100, LLONG_MAX, &v) !=
		        SOTP_ERR_BAD_INPUT ||
		    v != 0)
			fail_msg("sotp_parse_ll('%s') took it as %lld",
			    padded[i], v);
		if (sotp_parse_ll_zero(padded[i]) == NULL)
			fail_msg("no reason for '%s'", padded[i]);
		if (sotp_parse_ll_padded(padded[i], -100, LLONG_MAX, &v) !=
		    SOTP_OK)
			fail_msg(
			    "sotp_parse_ll_padded refused '%s'", padded[i]);
	}
	for (i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		if (sotp_parse_ll_zero(plain[i]) != NULL)
			fail_msg("'%s': '%s'", plain[i] ? plain[i] : "(null)",
			    sotp_parse_ll_zero(plain[i]));
	assert_non_null(strstr(sotp_parse_ll_zero("007"), "leading zero"));
	assert_non_null(strstr(sotp_parse_ll_zero("-07"), "leading zero"));
	assert_non_null(strstr(sotp_parse_ll_zero("-0"), "minus zero"));
	assert_int_equal(sotp_parse_ll_padded("007", 0, 10, &v), SOTP_OK);
	assert_int_equal(v, 7);
	assert_int_equal(sotp_parse_ll_padded("-0", -1, 1, &v), SOTP_OK);
	assert_int_equal(v, 0);
	assert_int_equal(
	    sotp_parse_ll_padded("011", 0, 10, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(
	    sotp_parse_ll_padded("+7", 0, 10, &v), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_parse_ll("0", 0, 10, &v), SOTP_OK);
	assert_int_equal(v, 0);
	/* The epoch form of an audit time is the same number. */
	assert_int_equal(sotp_time_parse("0", &t), SOTP_OK);
	assert_true(t == 0);
	assert_int_equal(
	    sotp_time_parse("01764547200", &t), SOTP_ERR_BAD_INPUT);
}

static void
test_err_strlcpy_and_random(void **state)
{
	char buf[4];
	unsigned int seen[7] = {0};
	unsigned int i, r;
	uint8_t zero[32] = {0}, rnd[32];

	(void)state;
	assert_int_equal(sotp_strlcpy(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	assert_int_equal(sotp_strlcpy(buf, "ab", sizeof(buf)), 2);
	assert_string_equal(buf, "ab");
	assert_int_equal(sotp_strlcpy(buf, "xyz", 0), 3);
	assert_string_equal(buf, "ab");

	assert_int_equal(sotp_random(rnd, sizeof(rnd)), SOTP_OK);
	assert_memory_not_equal(rnd, zero, sizeof(rnd));
	assert_int_equal(sotp_random_uniform(0, &r), SOTP_ERR_INVALID_ARG);
	for (i = 0; i < 7000; i++) {
		assert_int_equal(sotp_random_uniform(7, &r), SOTP_OK);
		assert_true(r < 7);
		seen[r]++;
	}
	/* Loose: each residue turns up; a real bias test is statistical. */
	for (i = 0; i < 7; i++)
		assert_true(seen[i] > 700);
	assert_int_equal(sotp_random_uniform(1, &r), SOTP_OK);
	assert_int_equal(r, 0);

	SOTP_WIPE_ARRAY(rnd);
	assert_memory_equal(rnd, zero, sizeof(rnd));
	sotp_wipe(NULL, 10);
	sotp_free_secret(NULL, 10);
	sotp_free_string(NULL);
	sotp_free_string(sotp_strdup("secret"));
	assert_null(sotp_strdup(NULL));
}

/* 1 when s is whole UTF-8: no character split, no stray byte. */
static int
whole_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i;

	while (*p != '\0') {
		if (*p < 0x80)
			n = 1;
		else if ((*p & 0xe0) == 0xc0)
			n = 2;
		else if ((*p & 0xf0) == 0xe0)
			n = 3;
		else if ((*p & 0xf8) == 0xf0)
			n = 4;
		else
			return 0;
		for (i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return 0;
		p += n;
	}
	return 1;
}

/*
 * A context's error text longer than its room ends in "...", after whole
 * UTF-8 characters, and is otherwise the start of the whole message.
 */
static void
assert_marked_cut(const char *msg, const char *whole)
{
	size_t n = strlen(msg);

	assert_true(n < SOTP_CTX_ERR_MAX);
	assert_true(n > SOTP_CTX_ERR_MAX - 8);
	assert_true(strlen(whole) > n);
	assert_string_equal(msg + n - 3, "...");
	assert_memory_equal(msg, whole, n - 3);
	assert_true(whole_utf8(msg));
}

/* The policy at path is refused, its message a marked cut of whole. */
static void
policy_refused_cut(const char *path, const char *whole)
{
	struct sotp_ctx *ctx = NULL;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load_policy(ctx, path), SOTP_ERR_CONFIG);
	assert_marked_cut(sotp_ctx_errmsg(ctx), whole);
	sotp_ctx_free(ctx);
}

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

/*
 * The policy's error names an unknown key as written: a long Japanese
 * one makes the message longer than the context's 1 KiB. The key's
 * prefix (1 to 3 bytes) puts the cut at each byte of a 3-byte character.
 */
static void
test_err_policy_message_cut(void **state)
{
	char dir[] = "/tmp/sotp-errcut.XXXXXX", path[64], text[2048],
	     whole[4096], key[1600];
	size_t pad, i, n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/p.conf", dir);
	for (pad = 1; pad <= 3; pad++) {
		memset(key, 'a', pad);
		for (i = 0, n = pad; i < 400; i++, n += 3)
			memcpy(key + n, "契", 3);
		key[n] = '\0';
		snprintf(text, sizeof(text), "[otp]\n%s = 1\n", key);
		write_text(path, text);
		snprintf(whole, sizeof(whole),
		    "%s:2: unknown key '%s' in [otp]", path, key);
		policy_refused_cut(path, whole);
	}
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

/*
 * A name that brings path[SOTP_PATH_MAX] to 1021..1023 bytes: from
 * path[n], pad 'a', then the 3-byte character ch; returns its length.
 */
static size_t
long_name(char *path, size_t n, size_t pad, const char *ch)
{
	size_t i;

	memset(path + n, 'a', pad);
	for (i = n + pad; i + 3 < SOTP_PATH_MAX; i += 3)
		memcpy(path + i, ch, 3);
	path[i] = '\0';
	return i;
}

/*
 * sotp_ctx_seterr's own cut: metrics = none names the policy's path, and
 * a path of Japanese names near the longest a policy may have makes that
 * message over 1 KiB, cut inside the file's name at each byte of a
 * character as its prefix is 1 to 3 bytes long.
 */
static void
test_err_seterr_cut(void **state)
{
	static const char policy[] = "store = sqlite:/nonexistent/s.db\n"
	                             "master_key = /nonexistent/master.key\n";
	char dir[] = "/tmp/sotp-errcut.XXXXXX", path[SOTP_PATH_MAX],
	     whole[SOTP_PATH_MAX + 64], dirs[4][SOTP_PATH_MAX];
	struct sotp_ctx *ctx = NULL;
	char *metrics = NULL;
	size_t pad, i, n, d;

	(void)state;
	assert_non_null(mkdtemp(dir));
	/* Four directories of 80 characters (240 bytes) each. */
	n = (size_t)snprintf(path, sizeof(path), "%s", dir);
	for (d = 0; d < 4; d++) {
		path[n++] = '/';
		for (i = 0; i < 80; i++, n += 3)
			memcpy(path + n, "契", 3);
		path[n] = '\0';
		assert_int_equal(mkdir(path, 0755), 0);
		sotp_strlcpy(dirs[d], path, sizeof(dirs[d]));
	}
	path[n++] = '/';
	for (pad = 1; pad <= 3; pad++) {
		i = long_name(path, n, pad, "約");
		assert_true(i >= SOTP_PATH_MAX - 3);
		write_text(path, policy);
		snprintf(whole, sizeof(whole), "%s: metrics = none", path);
		assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
		if (sotp_ctx_load_policy(ctx, path) != SOTP_OK)
			fail_msg("load: %s", sotp_ctx_errmsg(ctx));
		assert_int_equal(
		    sotp_metrics_text(ctx, &metrics), SOTP_ERR_NOT_FOUND);
		assert_null(metrics);
		assert_marked_cut(sotp_ctx_errmsg(ctx), whole);
		sotp_ctx_free(ctx);
		ctx = NULL;
		assert_int_equal(unlink(path), 0);
	}
	for (d = 4; d-- > 0;)
		assert_int_equal(rmdir(dirs[d]), 0);
	assert_int_equal(rmdir(dir), 0);
}

/*
 * The policy file's own errors ("path: ..."), written before any line is
 * read: a path of 1021..1023 bytes that names no file makes the message
 * over 1 KiB, cut inside the path at each byte of a character.
 */
static void
test_err_policy_path_cut(void **state)
{
	char path[SOTP_PATH_MAX], whole[SOTP_PATH_MAX + 64];
	size_t pad, n;

	(void)state;
	n = (size_t)snprintf(path, sizeof(path), "/nonexistent-sotp-errcut/");
	for (pad = 1; pad <= 3; pad++) {
		(void)long_name(path, n, pad, "約");
		snprintf(whole, sizeof(whole),
		    "%s: cannot read policy file: ", path);
		policy_refused_cut(path, whole);
	}
}

/*
 * The master key's own errors (seal.c), written into the context's text
 * as the key is opened: a master_key path of 1021..1023 bytes that names
 * no file makes "PATH: no such file (...)" over 1 KiB, cut inside the
 * path at each byte of a character. It used to end in silence, half a
 * character at its end.
 */
static void
test_err_master_key_path_cut(void **state)
{
	char dir[] = "/tmp/sotp-errcut.XXXXXX", conf[64], key[SOTP_PATH_MAX],
	     text[SOTP_PATH_MAX + 128], whole[SOTP_PATH_MAX + 64];
	struct sotp_ctx *ctx = NULL;
	size_t pad, i, n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/p.conf", dir);
	n = (size_t)snprintf(key, sizeof(key), "/nonexistent-sotp-keycut/");
	for (pad = 1; pad <= 3; pad++) {
		i = long_name(key, n, pad, "鍵");
		assert_true(i >= SOTP_PATH_MAX - 3);
		snprintf(text, sizeof(text),
		    "store = sqlite:%s/s.db\nmaster_key = %s\n", dir, key);
		write_text(conf, text);
		snprintf(whole, sizeof(whole), "%s: no such file", key);
		assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
		assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_ERR_KEY);
		assert_marked_cut(sotp_ctx_errmsg(ctx), whole);
		sotp_ctx_free(ctx);
		ctx = NULL;
	}
	assert_int_equal(unlink(conf), 0);
	assert_int_equal(rmdir(dir), 0);
}
int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_err_every_rc_named),
	    cmocka_unit_test(test_err_out_of_range),
	    cmocka_unit_test(test_err_every_reason_named),
	    cmocka_unit_test(test_err_reason_from_rc),
	    cmocka_unit_test(test_err_factor_names),
	    cmocka_unit_test(test_err_login_names),
	    cmocka_unit_test(test_err_alg_names),
	    cmocka_unit_test(test_err_parse_ll),
	    cmocka_unit_test(test_err_parse_ll_leading_zero),
	    cmocka_unit_test(test_err_strlcpy_and_random),
	    cmocka_unit_test(test_err_policy_message_cut),
	    cmocka_unit_test(test_err_seterr_cut),
	    cmocka_unit_test(test_err_policy_path_cut),
	    cmocka_unit_test(test_err_master_key_path_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_otp.c - HOTP/TOTP against the RFC 4226 and RFC 6238 tables, the
 * reusable MAC context, code comparison and argument checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sotp_int.h"

#include "../vectors/rfc4226.h"
#include "../vectors/rfc6238.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t *
k(const char *s)
{
	return (const uint8_t *)s;
}

static void
rfc6238_key(enum sotp_alg alg, const uint8_t **key, size_t *len)
{
	*key = NULL;
	*len = 0;
	switch (alg) {
	case SOTP_ALG_SHA1:
		*key = k(rfc6238_key_sha1);
		*len = sizeof(rfc6238_key_sha1) - 1;
		return;
	case SOTP_ALG_SHA256:
		*key = k(rfc6238_key_sha256);
		*len = sizeof(rfc6238_key_sha256) - 1;
		return;
	case SOTP_ALG_SHA512:
		*key = k(rfc6238_key_sha512);
		*len = sizeof(rfc6238_key_sha512) - 1;
		return;
	}
	fail();
}

static void
test_otp_hotp_rfc4226(void **state)
{
	char code[SOTP_CODE_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(rfc4226_vectors); i++) {
		assert_int_equal(sotp_hotp(SOTP_ALG_SHA1, k(rfc4226_key),
		                     sizeof(rfc4226_key) - 1,
		                     rfc4226_vectors[i].counter, 6, code),
		    SOTP_OK);
		assert_string_equal(code, rfc4226_vectors[i].hotp);
	}
}

static void
test_otp_totp_rfc6238(void **state)
{
	char code[SOTP_CODE_MAX];
	const uint8_t *key = NULL;
	size_t i, len = 0;

	(void)state;
	assert_int_equal(NELEM(rfc6238_vectors), 18);
	for (i = 0; i < NELEM(rfc6238_vectors); i++) {
		const struct rfc6238_vector *v = &rfc6238_vectors[i];

		rfc6238_key(v->alg, &key, &len);
		assert_int_equal(
		    sotp_totp(v->alg, key, len, (time_t)v->time, 30, 8, code),
		    SOTP_OK);
		assert_string_equal(code, v->totp);
	}
}

static void
test_otp_totp_oathtool_6digits(void **state)
{
	char code[SOTP_CODE_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(oathtool_sha1_6); i++) {
		assert_int_equal(
		    sotp_totp(SOTP_ALG_SHA1, k(rfc6238_key_sha1), 20,
		        (time_t)oathtool_sha1_6[i].time, 30, 6, code),
		    SOTP_OK);
		assert_string_equal(code, oathtool_sha1_6[i].totp);
	}
}

static void
test_otp_totp_seven_digits(void **state)
{
	char code[SOTP_CODE_MAX];

	(void)state;
	/* The last 7 digits of the 8-digit RFC value at T=59. */
	assert_int_equal(
	    sotp_totp(SOTP_ALG_SHA1, k(rfc6238_key_sha1), 20, 59, 30, 7, code),
	    SOTP_OK);
	assert_string_equal(code, "4287082");
}

/*
 * The window checks rely on TOTP(now) being HOTP(floor(now / period)):
 * every second of a step gives one code, the next step the next counter.
 */
static void
test_otp_totp_step_boundaries(void **state)
{
	char a[SOTP_CODE_MAX], b[SOTP_CODE_MAX];
	time_t t;

	(void)state;
	for (t = 30; t < 60; t++) {
		assert_int_equal(sotp_totp(SOTP_ALG_SHA1, k(rfc6238_key_sha1),
		                     20, t, 30, 6, a),
		    SOTP_OK);
		assert_string_equal(a, rfc4226_vectors[1].hotp);
	}
	assert_int_equal(
	    sotp_totp(SOTP_ALG_SHA1, k(rfc6238_key_sha1), 20, 60, 30, 6, a),
	    SOTP_OK);
	assert_string_equal(a, rfc4226_vectors[2].hotp);
	assert_int_equal(
	    sotp_totp(SOTP_ALG_SHA1, k(rfc6238_key_sha1), 20, 29, 30, 6, a),
	    SOTP_OK);
	assert_string_equal(a, rfc4226_vectors[0].hotp);
	/* Another period: step 1111111109 / 60. */
	assert_int_equal(sotp_totp(SOTP_ALG_SHA256, k(rfc6238_key_sha256), 32,
	                     1111111109, 60, 8, a),
	    SOTP_OK);
	assert_int_equal(sotp_hotp(SOTP_ALG_SHA256, k(rfc6238_key_sha256), 32,
	                     1111111109 / 60, 8, b),
	    SOTP_OK);
	assert_string_equal(a, b);
	/* period 1: the counter is the time itself. */
	assert_int_equal(
	    sotp_totp(SOTP_ALG_SHA1, k(rfc4226_key), 20, 9, 1, 6, a), SOTP_OK);
	assert_string_equal(a, rfc4226_vectors[9].hotp);
}

static void
test_otp_mac_reuse_matches_hotp(void **state)
{
	struct sotp_mac *m = NULL;
	char a[SOTP_CODE_MAX], b[SOTP_CODE_MAX];
	const uint8_t *key = NULL;
	size_t i, len = 0;
	uint64_t c;

	(void)state;
	assert_int_equal(sotp_mac_new(&m), SOTP_OK);
	assert_non_null(m);
	/* Unkeyed: refused, never a code. */
	assert_int_equal(sotp_mac_hotp(m, 0, 6, a), SOTP_ERR_INVALID_ARG);
	assert_string_equal(a, "");

	/* A whole window of counters under one key, in both directions. */
	assert_int_equal(
	    sotp_mac_setkey(m, SOTP_ALG_SHA1, k(rfc4226_key), 20), SOTP_OK);
	for (i = 0; i < NELEM(rfc4226_vectors); i++) {
		assert_int_equal(
		    sotp_mac_hotp(m, rfc4226_vectors[i].counter, 6, a),
		    SOTP_OK);
		assert_string_equal(a, rfc4226_vectors[i].hotp);
	}
	for (i = NELEM(rfc4226_vectors); i-- > 0;) {
		assert_int_equal(
		    sotp_mac_hotp(m, rfc4226_vectors[i].counter, 6, a),
		    SOTP_OK);
		assert_string_equal(a, rfc4226_vectors[i].hotp);
	}

	/* Re-keying with other algorithms and key lengths, then back. */
	for (i = 0; i < NELEM(rfc6238_vectors); i++) {
		const struct rfc6238_vector *v = &rfc6238_vectors[i];

		rfc6238_key(v->alg, &key, &len);
		assert_int_equal(sotp_mac_setkey(m, v->alg, key, len), SOTP_OK);
		for (c = 0; c < 3; c++) {
			uint64_t step = (uint64_t)v->time / 30 + c;

			assert_int_equal(sotp_mac_hotp(m, step, 8, a), SOTP_OK);
			assert_int_equal(
			    sotp_hotp(v->alg, key, len, step, 8, b), SOTP_OK);
			assert_string_equal(a, b);
			if (c == 0)
				assert_string_equal(a, v->totp);
		}
	}
	assert_int_equal(
	    sotp_mac_setkey(m, SOTP_ALG_SHA1, k(rfc4226_key), 20), SOTP_OK);
	assert_int_equal(sotp_mac_hotp(m, 5, 6, a), SOTP_OK);
	assert_string_equal(a, rfc4226_vectors[5].hotp);

	/*
	 * Another key under the algorithm already set (the digest is not
	 * named again): the new key answers, not the old one.
	 */
	rfc6238_key(SOTP_ALG_SHA256, &key, &len);
	assert_int_equal(
	    sotp_mac_setkey(m, SOTP_ALG_SHA256, key, len), SOTP_OK);
	assert_int_equal(sotp_mac_hotp(m, 7, 8, a), SOTP_OK);
	assert_int_equal(
	    sotp_hotp(SOTP_ALG_SHA256, key, len, 7, 8, b), SOTP_OK);
	assert_string_equal(a, b);
	rfc6238_key(SOTP_ALG_SHA512, &key, &len);
	assert_int_equal(
	    sotp_mac_setkey(m, SOTP_ALG_SHA256, key, len), SOTP_OK);
	assert_int_equal(sotp_mac_hotp(m, 7, 8, b), SOTP_OK);
	assert_string_not_equal(a, b);
	assert_int_equal(
	    sotp_hotp(SOTP_ALG_SHA256, key, len, 7, 8, a), SOTP_OK);
	assert_string_equal(a, b);

	/* A refused setkey leaves the context unkeyed. */
	assert_int_equal(
	    sotp_mac_setkey(m, (enum sotp_alg)9, k(rfc4226_key), 20),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_mac_setkey(m, SOTP_ALG_SHA1, NULL, 20), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_mac_hotp(m, 5, 6, a), SOTP_ERR_INVALID_ARG);

	/* A forgotten key answers no more; a new one answers again. */
	assert_int_equal(
	    sotp_mac_setkey(m, SOTP_ALG_SHA1, k(rfc4226_key), 20), SOTP_OK);
	assert_int_equal(sotp_mac_hotp(m, 5, 6, a), SOTP_OK);
	sotp_mac_forget(m);
	assert_int_equal(sotp_mac_hotp(m, 5, 6, a), SOTP_ERR_INVALID_ARG);
	assert_string_equal(a, "");
	sotp_mac_forget(m);
	assert_int_equal(
	    sotp_mac_setkey(m, SOTP_ALG_SHA1, k(rfc4226_key), 20), SOTP_OK);
	assert_int_equal(sotp_mac_hotp(m, 5, 6, a), SOTP_OK);
	assert_string_equal(a, rfc4226_vectors[5].hotp);

	sotp_mac_free(m);
	sotp_mac_free(NULL);
	sotp_mac_forget(NULL);
}

static void
test_otp_code_equal(void **state)
{
	(void)state;
	assert_int_equal(sotp_code_equal("287082", "287082"), 1);
	assert_int_equal(sotp_code_equal("94287082", "94287082"), 1);
	assert_int_equal(sotp_code_equal("287082", "287083"), 0);
	assert_int_equal(sotp_code_equal("287082", "387082"), 0);
	/* A prefix or an extension is not equal. */
	assert_int_equal(sotp_code_equal("287082", "2870821"), 0);
	assert_int_equal(sotp_code_equal("2870821", "287082"), 0);
	assert_int_equal(sotp_code_equal("94287082", "287082"), 0);
	assert_int_equal(sotp_code_equal("", ""), 0);
	assert_int_equal(sotp_code_equal("", "287082"), 0);
	assert_int_equal(sotp_code_equal(NULL, "287082"), 0);
	assert_int_equal(sotp_code_equal("287082", NULL), 0);
	assert_int_equal(sotp_code_equal(NULL, NULL), 0);
}

static void
test_otp_code_len(void **state)
{
	(void)state;
	assert_int_equal(sotp_code_len("123456"), 6);
	assert_int_equal(sotp_code_len("1234567"), 7);
	assert_int_equal(sotp_code_len("00000000"), 8);
	assert_int_equal(sotp_code_len("12345"), 0);
	assert_int_equal(sotp_code_len("123456789"), 0);
	assert_int_equal(sotp_code_len("12345a"), 0);
	assert_int_equal(sotp_code_len(" 123456"), 0);
	assert_int_equal(sotp_code_len("123456 "), 0);
	assert_int_equal(sotp_code_len("-12345"), 0);
	assert_int_equal(sotp_code_len(""), 0);
	assert_int_equal(sotp_code_len(NULL), 0);
}

static void
test_otp_bad_args(void **state)
{
	char code[SOTP_CODE_MAX];
	const uint8_t *key = k(rfc4226_key);

	(void)state;
	assert_int_equal(sotp_hotp(SOTP_ALG_SHA1, key, 20, 0, 5, code),
	    SOTP_ERR_INVALID_ARG);
	assert_string_equal(code, "");
	assert_int_equal(sotp_hotp(SOTP_ALG_SHA1, key, 20, 0, 9, code),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_hotp(SOTP_ALG_SHA1, key, 20, 0, 0, code),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_hotp(SOTP_ALG_SHA1, NULL, 20, 0, 6, code),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_hotp(SOTP_ALG_SHA1, key, 0, 0, 6, code), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_hotp((enum sotp_alg)3, key, 20, 0, 6, code),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_hotp(SOTP_ALG_SHA1, key, 20, 0, 6, NULL),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_totp(SOTP_ALG_SHA1, key, 20, -1, 30, 6, code),
	    SOTP_ERR_INVALID_ARG);
	assert_string_equal(code, "");
	assert_int_equal(sotp_totp(SOTP_ALG_SHA1, key, 20, 59, 0, 6, code),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_totp(SOTP_ALG_SHA1, key, 20, 59, 30, 9, code),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_mac_new(NULL), SOTP_ERR_INVALID_ARG);
	/* The counter's full 64 bits are used, without overflow. */
	assert_int_equal(
	    sotp_hotp(SOTP_ALG_SHA1, key, 20, UINT64_MAX, 6, code), SOTP_OK);
	assert_int_equal(sotp_code_len(code), 6);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_otp_hotp_rfc4226),
	    cmocka_unit_test(test_otp_totp_rfc6238),
	    cmocka_unit_test(test_otp_totp_oathtool_6digits),
	    cmocka_unit_test(test_otp_totp_seven_digits),
	    cmocka_unit_test(test_otp_totp_step_boundaries),
	    cmocka_unit_test(test_otp_mac_reuse_matches_hotp),
	    cmocka_unit_test(test_otp_code_equal),
	    cmocka_unit_test(test_otp_code_len),
	    cmocka_unit_test(test_otp_bad_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_base32.c - RFC 4648 base32 both ways, the leniency authenticator
 * apps need, and a reason for every refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sotp_int.h"

#include "../vectors/rfc4648.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
test_base32_rfc4648_encode(void **state)
{
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(rfc4648_base32); i++) {
		const struct rfc4648_vector *v = &rfc4648_base32[i];

		assert_int_equal(sotp_base32_encode((const uint8_t *)v->plain,
		                     strlen(v->plain), out, sizeof(out)),
		    SOTP_OK);
		assert_string_equal(out, v->base32);
	}
}

static void
test_base32_rfc4648_decode(void **state)
{
	uint8_t out[64];
	size_t i, n;
	const char *why;

	(void)state;
	for (i = 0; i < NELEM(rfc4648_base32); i++) {
		const struct rfc4648_vector *v = &rfc4648_base32[i];

		why = "unset";
		assert_int_equal(
		    sotp_base32_decode(v->base32, out, sizeof(out), &n, &why),
		    SOTP_OK);
		assert_null(why);
		assert_int_equal(n, strlen(v->plain));
		assert_memory_equal(out, v->plain, n);
	}
}

static void
test_base32_lenient_spelling(void **state)
{
	static const char *const ok[] = {
	    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
	    "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
	    "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
	    "gezd gnbv gy3t qojq GEZD GNBV GY3T QOJQ ",
	    "  GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
	};
	uint8_t out[32];
	size_t i, n;

	(void)state;
	for (i = 0; i < NELEM(ok); i++) {
		assert_int_equal(
		    sotp_base32_decode(ok[i], out, sizeof(out), &n, NULL),
		    SOTP_OK);
		assert_int_equal(n, 20);
		assert_memory_equal(out, "12345678901234567890", 20);
	}
	/* Padding is optional, and may be written in groups too. */
	assert_int_equal(
	    sotp_base32_decode("MZXW6YQ", out, sizeof(out), &n, NULL), SOTP_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "foob", 4);
	assert_int_equal(
	    sotp_base32_decode("mzxw6ytboi", out, sizeof(out), &n, NULL),
	    SOTP_OK);
	assert_int_equal(n, 6);
	assert_memory_equal(out, "foobar", 6);
	assert_int_equal(sotp_base32_decode(
	                     "MZXW 6YTB OI== ====", out, sizeof(out), &n, NULL),
	    SOTP_OK);
	assert_int_equal(n, 6);
}

static void
test_base32_malformed_refused(void **state)
{
	static const char *const bad[] = {
	    "MZXW6YTB1",        /* '1' is not in the alphabet */
	    "MZXW6YTB0",        /* nor '0' */
	    "MZXW8YTB",         /* nor '8' */
	    "MZXW-6YTB",        /* nor separators other than spaces */
	    "MZXW\t6YTB",       /* nor tabs */
	    "MZXW6YTB\n",       /* nor a newline */
	    "MY=====",          /* 5 '=' after 2 characters: 6 needed */
	    "MY=======",        /* 7 '=' after 2 characters */
	    "MZXW6YQ==",        /* 2 '=' after 7 */
	    "MZXW6YTB========", /* a whole group of padding */
	    "MY======MY======", /* data after padding */
	    "M=======",         /* 1 character cannot encode a byte */
	    "M",                /* same, unpadded */
	    "MZX",              /* 3 characters: impossible */
	    "MZXW6Y",           /* 6 characters: impossible */
	    "MZ======",         /* 'Z' leaves non-zero trailing bits */
	    "MZXR====",         /* 'R' leaves non-zero trailing bits */
	    "MZXW6YR=",         /* 'R' leaves non-zero trailing bits */
	    "MZ\xc3\x9cW6YTB",  /* non-ASCII */
	    "=",                /* padding only */
	    "========",         /* padding only */
	};
	uint8_t out[32];
	size_t i, n;
	const char *why;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		why = NULL;
		n = 99;
		memset(out, 0xaa, sizeof(out));
		assert_int_equal(
		    sotp_base32_decode(bad[i], out, sizeof(out), &n, &why),
		    SOTP_ERR_BAD_INPUT);
		assert_non_null(why);
		assert_true(why[0] != '\0');
		assert_int_equal(n, 0);
		/* Partial output is wiped: it might be part of a secret. */
		for (n = 0; n < sizeof(out); n++)
			assert_int_equal(out[n], 0);
	}
	/* Distinct causes give distinct reasons. */
	assert_int_equal(
	    sotp_base32_decode("MZXW6YTB1", out, sizeof(out), &n, &why),
	    SOTP_ERR_BAD_INPUT);
	assert_string_equal(why, "invalid base32 character");
	assert_int_equal(sotp_base32_decode("MZX", out, sizeof(out), &n, &why),
	    SOTP_ERR_BAD_INPUT);
	assert_string_equal(why, "impossible base32 length");
	assert_int_equal(
	    sotp_base32_decode("MZ======", out, sizeof(out), &n, &why),
	    SOTP_ERR_BAD_INPUT);
	assert_string_equal(why, "non-zero trailing bits");
}

/*
 * A seed in hex is refused, not read as base32: 40 hex digits without
 * 0, 1, 8 or 9 are base32 too, and would give another, 25-byte key.
 */
static void
test_base32_hex_seed_refused(void **state)
{
	static const char *const hex[] = {
	    "3a2b4c5d6e7f2a3b4c5d6e7f2a3b4c5d6e7f2a3b", /* 40: base32 too */
	    "3A2B4C5D 6E7F2A3B 4C5D6E7F 2A3B4C5D",      /* 32, in groups */
	    "3132333435363738393031323334353637383930", /* RFC 4226's seed */
	    /*
	     * Padded (found by fuzz_uri): it was taken, then written
	     * unpadded in a URI that did not read back.
	     */
	    "EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE======",
	};
	uint8_t out[64];
	size_t i, n;
	const char *why;

	(void)state;
	for (i = 0; i < NELEM(hex); i++) {
		why = NULL;
		assert_int_equal(
		    sotp_base32_decode(hex[i], out, sizeof(out), &n, &why),
		    SOTP_ERR_BAD_INPUT);
		assert_non_null(why);
		assert_non_null(strstr(why, "hex digits only"));
		assert_int_equal(n, 0);
	}
	/* Fewer than 32 hex digits, or one letter past F: base32. */
	assert_int_equal(sotp_base32_decode("3a2b4c5d6e7f2a3b4c5d6e7f", out,
	                     sizeof(out), &n, &why),
	    SOTP_OK);
	assert_int_equal(n, 15);
	assert_int_equal(sotp_base32_decode("3a2b4c5d6e7f2a3b4c5d6e7f2a3b4c5g",
	                     out, sizeof(out), &n, &why),
	    SOTP_OK);
	assert_int_equal(n, 20);
}

static void
test_base32_buffers(void **state)
{
	char enc[17];
	uint8_t out[6];
	size_t n;
	const char *why = NULL;

	(void)state;
	/* "foobar" needs 16 characters and the NUL. */
	assert_int_equal(
	    sotp_base32_encode((const uint8_t *)"foobar", 6, enc, 16),
	    SOTP_ERR_BUFFER);
	assert_string_equal(enc, "");
	assert_int_equal(
	    sotp_base32_encode((const uint8_t *)"foobar", 6, enc, 17), SOTP_OK);
	assert_int_equal(
	    sotp_base32_encode(NULL, 1, enc, 17), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_base32_encode(NULL, 0, enc, 17), SOTP_OK);
	assert_string_equal(enc, "");

	assert_int_equal(
	    sotp_base32_decode("MZXW6YTBOI======", out, 5, &n, &why),
	    SOTP_ERR_BUFFER);
	assert_non_null(why);
	assert_int_equal(n, 0);
	assert_int_equal(
	    sotp_base32_decode("MZXW6YTBOI======", out, 6, &n, NULL), SOTP_OK);
	assert_int_equal(n, 6);
	assert_int_equal(
	    sotp_base32_decode(NULL, out, 6, &n, &why), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_base32_decode("MY", out, 6, NULL, &why), SOTP_ERR_INVALID_ARG);
}

static void
test_base32_round_trip_all_lengths(void **state)
{
	uint8_t in[64], back[64];
	char enc[128];
	size_t len, n;

	(void)state;
	for (len = 0; len <= sizeof(in); len++) {
		assert_int_equal(sotp_random(in, len), SOTP_OK);
		assert_int_equal(
		    sotp_base32_encode(in, len, enc, sizeof(enc)), SOTP_OK);
		assert_int_equal(strlen(enc) % 8, 0);
		assert_int_equal(
		    sotp_base32_decode(enc, back, sizeof(back), &n, NULL),
		    SOTP_OK);
		assert_int_equal(n, len);
		assert_memory_equal(in, back, len);
		/* Unpadded, as most apps write it. */
		if (strchr(enc, '=') != NULL)
			*strchr(enc, '=') = '\0';
		assert_int_equal(
		    sotp_base32_decode(enc, back, sizeof(back), &n, NULL),
		    SOTP_OK);
		assert_int_equal(n, len);
		assert_memory_equal(in, back, len);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base32_rfc4648_encode),
	    cmocka_unit_test(test_base32_rfc4648_decode),
	    cmocka_unit_test(test_base32_lenient_spelling),
	    cmocka_unit_test(test_base32_malformed_refused),
	    cmocka_unit_test(test_base32_hex_seed_refused),
	    cmocka_unit_test(test_base32_buffers),
	    cmocka_unit_test(test_base32_round_trip_all_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

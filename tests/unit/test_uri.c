/*
 * test_uri.c - otpauth:// key URIs: what we build, what we accept, and a
 * reason for every refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sotp_int.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#define SECRET "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

static void
fill(struct sotp_uri *u, const char *issuer, const char *account)
{
	memset(u, 0, sizeof(*u));
	sotp_strlcpy(u->issuer, issuer, sizeof(u->issuer));
	sotp_strlcpy(u->account, account, sizeof(u->account));
	sotp_strlcpy(u->secret, SECRET, sizeof(u->secret));
	u->alg = SOTP_ALG_SHA1;
	u->digits = 6;
	u->period = 30;
}

static void
test_uri_build_exact(void **state)
{
	struct sotp_uri u;
	char *s = NULL;

	(void)state;
	fill(&u, "Shinkin Bank", "TK-0001");
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_OK);
	assert_string_equal(s,
	    "otpauth://totp/Shinkin%20Bank:TK-0001?secret=" SECRET
	    "&issuer=Shinkin%20Bank&algorithm=SHA1&digits=6&period=30");
	sotp_free_string(s);

	/* No issuer: the label is the account alone. */
	fill(&u, "", "TK-0002");
	u.alg = SOTP_ALG_SHA512;
	u.digits = 8;
	u.period = 60;
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_OK);
	assert_string_equal(s,
	    "otpauth://totp/TK-0002?secret=" SECRET
	    "&algorithm=SHA512&digits=8&period=60");
	sotp_free_string(s);
}

/* An event-based token: otpauth://hotp/ with the next counter. */
static void
test_uri_build_hotp(void **state)
{
	struct sotp_uri u;
	char *s = NULL;

	(void)state;
	fill(&u, "Shinkin Bank", "HW-1");
	u.digits = 8;
	u.period = 0;
	u.counter = 4611686018427387904ULL; /* 2^62, the largest taken */
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_OK);
	assert_string_equal(s,
	    "otpauth://hotp/Shinkin%20Bank:HW-1?secret=" SECRET
	    "&issuer=Shinkin%20Bank&algorithm=SHA1&digits=8"
	    "&counter=4611686018427387904");
	sotp_free_string(s);
}

static void
test_uri_build_escapes(void **state)
{
	struct sotp_uri u;
	char *s = NULL;

	(void)state;
	fill(&u, "A&B:C/D?E=F%G+H", "x y#z~._-");
	/* Lower case and padded secrets are written canonically. */
	sotp_strlcpy(u.secret, "mzxw 6ytb oi======", sizeof(u.secret));
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_OK);
	assert_string_equal(s,
	    "otpauth://totp/A%26B%3AC%2FD%3FE%3DF%25G%2BH:x%20y%23z~._-"
	    "?secret=MZXW6YTBOI"
	    "&issuer=A%26B%3AC%2FD%3FE%3DF%25G%2BH&algorithm=SHA1&digits=6"
	    "&period=30");
	sotp_free_string(s);

	/* UTF-8 is escaped byte by byte, upper-case hex. */
	fill(&u, "\xe4\xbf\xa1\xe9\x87\x91", "1");
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_OK);
	assert_non_null(strstr(s, "totp/%E4%BF%A1%E9%87%91:1?"));
	sotp_free_string(s);
}

static void
test_uri_build_refuses(void **state)
{
	struct sotp_uri u;
	char *s = (char *)(uintptr_t)1;

	(void)state;
	fill(&u, "Bank", "");
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_ERR_INVALID_ARG);
	assert_null(s);
	fill(&u, "Bank", "TK");
	u.digits = 9;
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_ERR_INVALID_ARG);
	fill(&u, "Bank", "TK");
	u.alg = (enum sotp_alg)5;
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_ERR_INVALID_ARG);
	fill(&u, "Bank", "TK");
	sotp_strlcpy(u.secret, "NOT BASE32!", sizeof(u.secret));
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_ERR_BAD_INPUT);
	assert_null(s);
	fill(&u, "Bank", "TK");
	u.secret[0] = '\0';
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_ERR_BAD_INPUT);
	fill(&u, "Bank", "TK");
	memset(u.account, 'a', sizeof(u.account)); /* no NUL */
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_ERR_INVALID_ARG);
	fill(&u, "", "TK:1");
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_uri_build(NULL, &s), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_uri_build(&u, NULL), SOTP_ERR_INVALID_ARG);
}

static void
test_uri_round_trip(void **state)
{
	static const char *const issuers[] = {"Shinkin Bank", "",
	    "A&B:C/D?E=F%G+H", "\xe4\xbf\xa1\xe9\x87\x91", "~"};
	static const char *const accounts[] = {
	    "TK-0001", "a b", "x#y&z=w", "0", "%3A"};
	struct sotp_uri in, out;
	const char *why = NULL;
	char *s = NULL;
	size_t i, j;

	(void)state;
	for (i = 0; i < NELEM(issuers); i++) {
		for (j = 0; j < NELEM(accounts); j++) {
			fill(&in, issuers[i], accounts[j]);
			in.alg = (enum sotp_alg)((i + j) % 3);
			in.digits = (unsigned int)(6 + j % 3);
			in.period = (unsigned int)(1 + 29 * i);
			assert_int_equal(sotp_uri_build(&in, &s), SOTP_OK);
			assert_int_equal(
			    sotp_uri_parse(s, &out, &why), SOTP_OK);
			assert_null(why);
			assert_string_equal(out.issuer, in.issuer);
			assert_string_equal(out.account, in.account);
			assert_string_equal(out.secret, in.secret);
			assert_int_equal(out.alg, in.alg);
			assert_int_equal(out.digits, in.digits);
			assert_int_equal(out.period, in.period);
			sotp_free_string(s);
		}
	}
}

static void
test_uri_parse_defaults_and_variants(void **state)
{
	struct sotp_uri u;
	const char *why = NULL;

	(void)state;
	/* Only the secret is required; SHA1, 6 digits, 30 s by default. */
	assert_int_equal(
	    sotp_uri_parse("otpauth://totp/TK1?secret=" SECRET, &u, &why),
	    SOTP_OK);
	assert_string_equal(u.account, "TK1");
	assert_string_equal(u.issuer, "");
	assert_int_equal(u.alg, SOTP_ALG_SHA1);
	assert_int_equal(u.digits, 6);
	assert_int_equal(u.period, 30);

	/* Scheme and type in any case, issuer from the parameter only,
	 * %3A as the label colon, blanks after it, lower-case secret. */
	assert_int_equal(sotp_uri_parse("OTPAUTH://TOTP/Bank%3A%20%20TK2?"
	                                "period=60&digits=8&algorithm=sha256"
	                                "&secret=mzxw6ytboi&issuer=Bank",
	                     &u, &why),
	    SOTP_OK);
	assert_string_equal(u.issuer, "Bank");
	assert_string_equal(u.account, "TK2");
	assert_string_equal(u.secret, "MZXW6YTBOI");
	assert_int_equal(u.alg, SOTP_ALG_SHA256);
	assert_int_equal(u.digits, 8);
	assert_int_equal(u.period, 60);

	assert_int_equal(sotp_uri_parse("otpauth://totp/TK3?issuer=My%20Bank&"
	                                "secret=MZXW6YTBOI%3D%3D%3D%3D%3D%3D",
	                     &u, &why),
	    SOTP_OK);
	assert_string_equal(u.issuer, "My Bank");
	assert_string_equal(u.secret, "MZXW6YTBOI");
}

static void
test_uri_malformed_refused(void **state)
{
	static const char *const bad[] = {
	    "",
	    "otpauth:/totp/TK?secret=" SECRET,
	    "http://totp/TK?secret=" SECRET,
	    "otpauth://hotp/TK?secret=" SECRET "&counter=1",
	    "otpauth://totp?secret=" SECRET,
	    "otpauth://totp/?secret=" SECRET,
	    "otpauth://totp/TK",
	    "otpauth://totp/TK?",
	    "otpauth://totp/TK?issuer=Bank",
	    "otpauth://totp/TK?secret=",
	    "otpauth://totp/TK?secret=NOT-BASE32",
	    "otpauth://totp/TK?secret=M",
	    "otpauth://totp/TK?secret=" SECRET "&secret=" SECRET,
	    "otpauth://totp/TK?secret=" SECRET "&image=x",
	    "otpauth://totp/TK?secret=" SECRET "&",
	    "otpauth://totp/TK?secret=" SECRET "&&digits=6",
	    "otpauth://totp/TK?secret=" SECRET "&digits",
	    "otpauth://totp/TK?secret=" SECRET "&digits=5",
	    "otpauth://totp/TK?secret=" SECRET "&digits=9",
	    "otpauth://totp/TK?secret=" SECRET "&digits=+6",
	    "otpauth://totp/TK?secret=" SECRET "&digits=6x",
	    "otpauth://totp/TK?secret=" SECRET "&period=0",
	    "otpauth://totp/TK?secret=" SECRET "&period=-30",
	    "otpauth://totp/TK?secret=" SECRET "&period=99999999999999999999",
	    "otpauth://totp/TK?secret=" SECRET "&algorithm=MD5",
	    "otpauth://totp/TK?secret=" SECRET "&issuer=",
	    "otpauth://totp/Bank:TK?secret=" SECRET "&issuer=Other",
	    "otpauth://totp/:TK?secret=" SECRET,
	    "otpauth://totp/Bank:?secret=" SECRET,
	    "otpauth://totp/Bank:%20?secret=" SECRET,
	    "otpauth://totp/A:B:C?secret=" SECRET,
	    "otpauth://totp/TK%?secret=" SECRET,
	    "otpauth://totp/TK%4?secret=" SECRET,
	    "otpauth://totp/TK%G0?secret=" SECRET,
	    "otpauth://totp/TK%00x?secret=" SECRET,
	    "otpauth://totp/TK%0A?secret=" SECRET,
	    "otpauth://totp/T\tK?secret=" SECRET,
	    "otpauth://totp/TK?secret=" SECRET "#frag",
	    "otpauth://totp/TK?secret=" SECRET "&issuer=a%7Fb",
	    /*
	     * Hex digits only, padded (found by fuzz_uri): it was taken, and
	     * the URI built of it (unpadded) did not read back.
	     */
	    "otpauth://totp/>?secret=EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE======",
	};
	struct sotp_uri u;
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		why = NULL;
		memset(&u, 0x55, sizeof(u));
		if (sotp_uri_parse(bad[i], &u, &why) != SOTP_ERR_BAD_INPUT)
			fail_msg("accepted: %s", bad[i]);
		assert_non_null(why);
		assert_true(why[0] != '\0');
		/* Nothing half-parsed (the secret least of all) remains. */
		assert_int_equal(u.secret[0], 0);
		assert_int_equal(u.account[0], 0);
	}
	assert_int_equal(
	    sotp_uri_parse(
	        "otpauth://totp/TK?secret=" SECRET "&digits=9", &u, &why),
	    SOTP_ERR_BAD_INPUT);
	assert_string_equal(why, "digits must be 6, 7 or 8");
	assert_int_equal(
	    sotp_uri_parse("otpauth://totp/TK", &u, &why), SOTP_ERR_BAD_INPUT);
	assert_string_equal(why, "missing secret");
	assert_int_equal(sotp_uri_parse(NULL, &u, &why), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_uri_parse("otpauth://totp/TK", NULL, NULL),
	    SOTP_ERR_INVALID_ARG);
}

static void
test_uri_bounds(void **state)
{
	struct sotp_uri u;
	const char *why = NULL;
	char *s;
	size_t n;

	(void)state;
	/* An account of SOTP_ID_MAX - 1 characters fits; one more does not. */
	n = strlen("otpauth://totp/") + SOTP_ID_MAX + strlen("?secret=" SECRET);
	s = calloc(1, n + 1);
	assert_non_null(s);
	strcpy(s, "otpauth://totp/");
	memset(s + strlen(s), 'a', SOTP_ID_MAX - 1);
	strcat(s, "?secret=" SECRET);
	assert_int_equal(sotp_uri_parse(s, &u, &why), SOTP_OK);
	assert_int_equal(strlen(u.account), SOTP_ID_MAX - 1);
	free(s);
	s = calloc(1, n + 2);
	assert_non_null(s);
	strcpy(s, "otpauth://totp/");
	memset(s + strlen(s), 'a', SOTP_ID_MAX);
	strcat(s, "?secret=" SECRET);
	assert_int_equal(sotp_uri_parse(s, &u, &why), SOTP_ERR_BAD_INPUT);
	assert_non_null(why);
	free(s);

	/* The longest issuer survives a round trip, escaped twice over. */
	memset(&u, 0, sizeof(u));
	memset(u.issuer, 0xff, sizeof(u.issuer) - 1);
	sotp_strlcpy(u.account, "TK", sizeof(u.account));
	sotp_strlcpy(u.secret, SECRET, sizeof(u.secret));
	u.digits = 6;
	u.period = 30;
	assert_int_equal(sotp_uri_build(&u, &s), SOTP_OK);
	assert_int_equal(sotp_uri_parse(s, &u, &why), SOTP_OK);
	assert_int_equal(strlen(u.issuer), sizeof(u.issuer) - 1);
	free(s);

	/* A huge input is refused without being walked. */
	n = 100000;
	s = malloc(n + 1);
	assert_non_null(s);
	memset(s, 'A', n);
	s[n] = '\0';
	memcpy(s, "otpauth://totp/x?secret=", 24);
	assert_int_equal(sotp_uri_parse(s, &u, &why), SOTP_ERR_BAD_INPUT);
	assert_string_equal(why, "URI too long");
	free(s);

	/* A secret longer than the field is refused, not truncated. */
	n = 400;
	s = malloc(n + 1);
	assert_non_null(s);
	memset(s, 'A', n);
	s[n] = '\0';
	memcpy(s, "otpauth://totp/x?secret=", 24);
	assert_int_equal(sotp_uri_parse(s, &u, &why), SOTP_ERR_BAD_INPUT);
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uri_build_exact),
	    cmocka_unit_test(test_uri_build_hotp),
	    cmocka_unit_test(test_uri_build_escapes),
	    cmocka_unit_test(test_uri_build_refuses),
	    cmocka_unit_test(test_uri_round_trip),
	    cmocka_unit_test(test_uri_parse_defaults_and_variants),
	    cmocka_unit_test(test_uri_malformed_refused),
	    cmocka_unit_test(test_uri_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_passwd.c - is an imported password hash usable? (passwd.c)
 *
 * Hashes made here with libxcrypt in every common format must pass, and
 * must verify their password; hashes altered so that libxcrypt could
 * never match them (cut, a character outside the alphabet, the spare
 * bits of a last character set, a non-canonical bcrypt salt, parameters
 * libxcrypt refuses) must be refused, each before any customer logs in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sotp_int.h"

#include <crypt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A real hash of pw with the method's lowest cost. */
static void
make(const char *prefix, unsigned long count, const char *pw, char *out)
{
	struct crypt_data cd;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *h;

	memset(&cd, 0, sizeof(cd));
	assert_non_null(
	    crypt_gensalt_rn(prefix, count, NULL, 0, salt, sizeof(salt)));
	h = crypt_rn(pw, salt, &cd, (int)sizeof(cd));
	assert_non_null(h);
	assert_true(h[0] != '*');
	snprintf(out, SOTP_HASH_MAX, "%s", h);
}

static const char *
why_of(struct sotp_hash_check *hc, const char *hash, int *weak)
{
	const char *why = (const char *)1;

	assert_int_equal(sotp_passwd_usable(hc, hash, weak, &why), SOTP_OK);
	return why;
}

static const struct {
	const char *prefix;
	unsigned long count;
	int weak;
} formats[] = {
    {"$y$", 1, 0},    /* yescrypt */
    {"$gy$", 1, 0},   /* gost-yescrypt */
    {"$7$", 6, 0},    /* scrypt: outside the table, a crypt() each */
    {"$2b$", 4, 0},   /* bcrypt */
    {"$6$", 1000, 0}, /* sha512crypt */
    {"$5$", 1000, 1}, /* sha256crypt: legacy, says libxcrypt */
    {"$1$", 0, 1},    /* md5crypt */
    {"", 0, 1},       /* descrypt */
};

static void
test_passwd_usable_formats(void **state)
{
	struct sotp_hash_check hc;
	char h[SOTP_HASH_MAX];
	size_t i;
	int weak, ok, k;

	(void)state;
	memset(&hc, 0, sizeof(hc));
	for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		/* Twice: the second one meets the learnt shape. */
		for (k = 0; k < 2; k++) {
			make(formats[i].prefix, formats[i].count, "pw", h);
			if (why_of(&hc, h, &weak) != NULL)
				fail_msg(
				    "%s refused: %s", h, why_of(&hc, h, &weak));
			assert_int_equal(weak, formats[i].weak);
			assert_int_equal(
			    sotp_passwd_check("pw", h, &ok), SOTP_OK);
			assert_int_equal(ok, 1);
		}
	}
	/* yescrypt, bcrypt, sha512crypt and gost-yescrypt: one shape each. */
	assert_true(hc.n >= 4 && hc.n <= 6);
}

/*
 * bigcrypt: DES over every 8 characters of a longer password, 11 hash
 * characters a block. Its length follows the password's, so the import's
 * one check crypt() must be of a password as long, or no bigcrypt hash of
 * a password of 9 characters or more would ever be taken.
 */
static void
test_passwd_usable_bigcrypt(void **state)
{
	static const char *const pw[] = {
	    "password9",
	    "sixteen-chars-pw",
	    "seventeen-chars-p",
	    "a password of 24 letters",
	    "a password of twenty-five",
	};
	struct sotp_hash_check hc;
	struct crypt_data cd;
	char h[SOTP_HASH_MAX], long_pw[129];
	size_t i;
	int weak, ok;

	(void)state;
	memset(&hc, 0, sizeof(hc));
	for (i = 0; i < sizeof(pw) / sizeof(pw[0]); i++) {
		memset(&cd, 0, sizeof(cd));
		/* A setting longer than DES's 13 characters asks for bigcrypt.
		 */
		snprintf(h, sizeof(h), "%s",
		    crypt_rn(pw[i], "abcdefghijklmnopqrstuvwx", &cd,
		        (int)sizeof(cd)));
		assert_int_equal(strlen(h), 2 + 11 * ((strlen(pw[i]) + 7) / 8));
		if (why_of(&hc, h, &weak) != NULL)
			fail_msg("%s (%zu) refused: %s", h, strlen(h),
			    why_of(&hc, h, &weak));
		assert_int_equal(weak, 1);
		assert_int_equal(sotp_passwd_check(pw[i], h, &ok), SOTP_OK);
		assert_int_equal(ok, 1);
		assert_int_equal(
		    sotp_passwd_check("password", h, &ok), SOTP_OK);
		assert_int_equal(ok, 0);
	}
	/* bigcrypt's longest: 128 characters, 16 blocks. */
	memset(long_pw, 'x', sizeof(long_pw) - 1);
	long_pw[sizeof(long_pw) - 1] = '\0';
	memset(&cd, 0, sizeof(cd));
	snprintf(h, sizeof(h), "%s",
	    crypt_rn(
	        long_pw, "abcdefghijklmnopqrstuvwx", &cd, (int)sizeof(cd)));
	assert_int_equal(strlen(h), 2 + 11 * 16);
	assert_null(why_of(&hc, h, &weak));
	assert_int_equal(sotp_passwd_check(long_pw, h, &ok), SOTP_OK);
	assert_int_equal(ok, 1);
	/* One character short of its length: no crypt() gives that back. */
	h[strlen(h) - 1] = '\0';
	assert_non_null(why_of(&hc, h, &weak));
}

/* Each altered hash is refused; the reason names what is wrong. */
static void
test_passwd_unusable_refused(void **state)
{
	struct sotp_hash_check hc;
	char y[SOTP_HASH_MAX], b[SOTP_HASH_MAX], s6[SOTP_HASH_MAX];
	char bad[2 * SOTP_HASH_MAX];
	size_t n;
	int weak;

	(void)state;
	memset(&hc, 0, sizeof(hc));
	make("$y$", 1, "pw", y);
	make("$2b$", 4, "pw", b);
	make("$6$", 1000, "pw", s6);
	assert_null(why_of(&hc, y, &weak));
	assert_null(why_of(&hc, b, &weak));

	/* Cut by one character. */
	snprintf(bad, sizeof(bad), "%.*s", (int)strlen(y) - 1, y);
	assert_non_null(strstr(why_of(&hc, bad, &weak), "checksum"));
	snprintf(bad, sizeof(bad), "%.*s", (int)strlen(b) - 1, b);
	assert_non_null(strstr(why_of(&hc, bad, &weak), "bcrypt"));
	/* A character crypt(3) never writes. */
	snprintf(bad, sizeof(bad), "%s", s6);
	bad[strlen(bad) - 5] = '_';
	assert_non_null(why_of(&hc, bad, &weak));
	/* The spare bits of yescrypt's last character set ('z' > 'D'). */
	snprintf(bad, sizeof(bad), "%s", y);
	bad[strlen(bad) - 1] = 'z';
	assert_non_null(strstr(why_of(&hc, bad, &weak), "checksum"));
	/* A bcrypt salt whose last character is not canonical. */
	snprintf(bad, sizeof(bad), "%s", b);
	bad[28] = bad[28] == 'P' ? 'Q' : 'P';
	assert_non_null(strstr(why_of(&hc, bad, &weak), "canonical"));
	/* Parameters libxcrypt refuses: cost 99, yescrypt "zzz". */
	snprintf(bad, sizeof(bad), "$2b$99$%s", b + 7);
	assert_non_null(strstr(why_of(&hc, bad, &weak), "cannot compute"));
	n = (size_t)(strrchr(y, '$') - y);
	snprintf(bad, sizeof(bad), "$y$zzz$abcdefgh%s", y + n);
	assert_non_null(strstr(why_of(&hc, bad, &weak), "cannot compute"));
	/* Locked, empty, with a blank, unknown. */
	snprintf(bad, sizeof(bad), "!%s", y);
	assert_non_null(strstr(why_of(&hc, bad, &weak), "locked"));
	assert_non_null(why_of(&hc, "", &weak));
	assert_non_null(why_of(&hc, "$6$salt$has blank", &weak));
	assert_non_null(why_of(&hc, "plaintext-password", &weak));
	assert_non_null(why_of(&hc, "$6$onlysalt", &weak));
	/* And the good ones still pass after all that. */
	assert_null(why_of(&hc, y, &weak));
	assert_null(why_of(&hc, s6, &weak));
}

/* The watchdog of the cost test: a hash computed there took too long. */
static void
too_slow(int sig)
{
	static const char msg[] = "test_passwd: a costly hash was computed "
	                          "instead of refused (watchdog)\n";

	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

/*
 * A hash whose cost is above what a login can pay is refused before it is
 * computed: at import it would stall the check, and at each login (wrong
 * passwords too) burn that much CPU. Each is well formed and libxcrypt
 * would compute it, in minutes to days; the watchdog fails the test if
 * one is computed.
 */
static void
test_passwd_costly_refused(void **state)
{
	struct sotp_hash_check hc;
	struct sotp_policy *p = calloc(1, sizeof(*p));
	char y[SOTP_HASH_MAX], b[SOTP_HASH_MAX], s7[SOTP_HASH_MAX];
	char gy[SOTP_HASH_MAX], bad[2 * SOTP_HASH_MAX];
	const char *why;
	int weak;

	(void)state;
	assert_non_null(p);
	make("$y$", 1, "pw", y);
	make("$2b$", 4, "pw", b);
	make("$7$", 6, "pw", s7);
	make("$gy$", 1, "pw", gy);
	memset(&hc, 0, sizeof(hc));
	signal(SIGALRM, too_slow);
	alarm(20);
	/* sha512crypt at its maximum rounds: minutes a check. */
	snprintf(bad, sizeof(bad), "$6$rounds=999999999$saltsalt$%085d.", 0);
	why = why_of(&hc, bad, &weak);
	assert_non_null(why);
	assert_non_null(strstr(why, "costs too much"));
	assert_non_null(strstr(why, "sha-crypt rounds"));
	/* bcrypt cost 31: 2^31 rounds, a day. */
	snprintf(bad, sizeof(bad), "$2b$31$%s", b + 7);
	why = why_of(&hc, bad, &weak);
	assert_non_null(why);
	assert_non_null(strstr(why, "bcrypt cost"));
	/* yescrypt N = 2^20 blocks of r = 32 (4 GiB), its parameters "jHT". */
	snprintf(bad, sizeof(bad), "$y$jHT%s", strchr(y + 3, '$'));
	why = why_of(&hc, bad, &weak);
	assert_non_null(why);
	assert_non_null(strstr(why, "yescrypt or scrypt"));
	/* The same in gost-yescrypt, and scrypt with N = 2^37. */
	snprintf(bad, sizeof(bad), "$gy$jHT%s", strchr(gy + 4, '$'));
	assert_non_null(strstr(why_of(&hc, bad, &weak), "costs too much"));
	snprintf(bad, sizeof(bad), "%s", s7);
	bad[3] = 'Z';
	assert_non_null(strstr(why_of(&hc, bad, &weak), "costs too much"));
	/* yescrypt's optional t (time) parameter counts too: have=2, t=2^20. */
	snprintf(bad, sizeof(bad), "$y$jDT3zzzz%s", strchr(y + 3, '$'));
	assert_non_null(why_of(&hc, bad, &weak));
	/* sha1crypt and sunmd5 with billions of rounds. */
	assert_non_null(strstr(why_of(&hc,
	                           "$sha1$4000000000$saltsalt$"
	                           "abcdefghijklmnopqrstuvwxyz01",
	                           &weak),
	    "costs too much"));
	assert_non_null(strstr(why_of(&hc,
	                           "$md5,rounds=4000000000$saltsalt$$"
	                           "abcdefghijklmnopqrstuv",
	                           &weak),
	    "costs too much"));
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	/*
	 * A policy whose own method costs more lifts that method's ceiling:
	 * bcrypt at 16. The shape is marked verified, so nothing is computed.
	 */
	snprintf(bad, sizeof(bad), "$2b$16$%s", b + 7);
	snprintf(hc.key[hc.n++], sizeof(hc.key[0]), "%.7s", bad);
	assert_non_null(strstr(why_of(&hc, bad, &weak), "bcrypt cost"));
	p->pw_method = SOTP_PW_BCRYPT;
	p->pw_cost = 16;
	hc.pol = p;
	assert_null(why_of(&hc, bad, &weak));
	/* ... and no other method's. */
	snprintf(bad, sizeof(bad), "$6$rounds=6000000$saltsalt$%085d.", 0);
	assert_non_null(why_of(&hc, bad, &weak));
	/* The usual costs still pass. */
	assert_null(why_of(&hc, y, &weak));
	assert_null(why_of(&hc, b, &weak));
	assert_null(why_of(&hc, s7, &weak));
	free(p);
}

/*
 * What rehash on login replaces: anything not yescrypt, weak, or cheaper
 * than the default cost (5).
 */
static void
test_passwd_outdated(void **state)
{
	char h[SOTP_HASH_MAX];

	(void)state;
	make("$y$", 5, "pw", h);
	assert_int_equal(sotp_passwd_outdated(NULL, h), 0);
	make("$y$", 1, "pw", h);
	assert_int_equal(sotp_passwd_outdated(NULL, h), 1);
	make("$6$", 1000, "pw", h);
	assert_int_equal(sotp_passwd_outdated(NULL, h), 1);
	make("$2b$", 4, "pw", h);
	assert_int_equal(sotp_passwd_outdated(NULL, h), 1);
	make("$1$", 0, "pw", h);
	assert_int_equal(sotp_passwd_outdated(NULL, h), 1);
	assert_int_equal(sotp_passwd_hash(NULL, "pw", h), SOTP_OK);
	assert_int_equal(sotp_passwd_outdated(NULL, h), 0);
}

/*
 * What [password] legacy_import = refuse keeps out, by the method of a
 * real hash of each kind libxcrypt makes: DES in its three forms,
 * md5crypt and NT, and nothing else (sha256crypt, sha1crypt and sunmd5,
 * which libxcrypt also calls legacy, carry a rounds count).
 */
static void
test_passwd_legacy_methods(void **state)
{
	static const struct {
		const char *prefix;
		unsigned long count;
		const char *legacy; /* NULL: not refused */
	} m[] = {
	    {"", 0, "descrypt"},
	    {"_", 0, "bsdicrypt"},
	    {"$1$", 0, "md5crypt"},
	    {"$3$", 0, "nt"},
	    {"$y$", 5, NULL},
	    {"$gy$", 1, NULL},
	    {"$7$", 6, NULL},
	    {"$2b$", 4, NULL},
	    {"$6$", 1000, NULL},
	    {"$5$", 1000, NULL},
	    {"$sha1", 0, NULL},
	    {"$md5", 0, NULL},
	};
	struct crypt_data cd;
	char h[SOTP_HASH_MAX];
	const char *got;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		make(m[i].prefix, m[i].count, "pw", h);
		got = sotp_passwd_legacy(h);
		if (m[i].legacy == NULL
		        ? got != NULL
		        : got == NULL || strcmp(got, m[i].legacy))
			fail_msg("%s: %s, want %s", h, got ? got : "(null)",
			    m[i].legacy ? m[i].legacy : "(null)");
	}
	/* bigcrypt: DES with a longer setting, 11 more characters a block. */
	memset(&cd, 0, sizeof(cd));
	snprintf(h, sizeof(h), "%s",
	    crypt_rn(
	        "password9", "abcdefghijklmnopqrstuvwx", &cd, (int)sizeof(cd)));
	assert_int_equal(strlen(h), 24);
	assert_string_equal(sotp_passwd_legacy(h), "bigcrypt");
	assert_null(sotp_passwd_legacy(""));
	assert_null(sotp_passwd_legacy(NULL));
}

/* [password]: new hashes in the policy's method and cost, and checkable. */
static void
test_passwd_policy_method_and_cost(void **state)
{
	static const struct {
		enum sotp_pw_method m;
		unsigned int cost;
		const char *prefix;
	} cases[] = {
	    {SOTP_PW_YESCRYPT, 5, "$y$j9T$"},
	    {SOTP_PW_YESCRYPT, 3, "$y$j7T$"},
	    {SOTP_PW_SHA512CRYPT, 10000, "$6$rounds=10000$"},
	    {SOTP_PW_BCRYPT, 4, "$2b$04$"},
	};
	struct sotp_policy *p = calloc(1, sizeof(*p));
	char h[SOTP_HASH_MAX];
	size_t i;
	int ok = 0;

	(void)state;
	assert_non_null(p);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p->pw_method = cases[i].m;
		p->pw_cost = cases[i].cost;
		assert_int_equal(sotp_passwd_hash(p, "pw-policy", h), SOTP_OK);
		if (strncmp(h, cases[i].prefix, strlen(cases[i].prefix)) != 0)
			fail_msg("%s cost %u made %.20s...",
			    sotp_pw_methods[cases[i].m].name, cases[i].cost, h);
		assert_int_equal(
		    sotp_passwd_check("pw-policy", h, &ok), SOTP_OK);
		assert_int_equal(ok, 1);
		assert_int_equal(
		    sotp_passwd_check("pw-other", h, &ok), SOTP_OK);
		assert_int_equal(ok, 0);
		/* In the policy's own method: not outdated. */
		assert_int_equal(sotp_passwd_outdated(p, h), 0);
	}
	/* Under a bcrypt policy a yescrypt hash is outdated. */
	assert_int_equal(sotp_passwd_hash(NULL, "pw", h), SOTP_OK);
	assert_int_equal(sotp_passwd_outdated(p, h), 1);
	/* A method outside the table is refused, not guessed. */
	p->pw_method = SOTP_PW_NMETHODS;
	assert_int_equal(sotp_passwd_hash(p, "pw", h), SOTP_ERR_INVALID_ARG);
	free(p);
}

/*
 * A cost raised in the policy reaches the hashes already stored: one of
 * the policy's method below its cost is outdated, one at or above it is
 * not (a rehash never lowers a cost within a method).
 */
static void
test_passwd_outdated_cost(void **state)
{
	static const struct {
		enum sotp_pw_method m;
		unsigned int policy;
		const char *prefix;
		unsigned long cost;
		int outdated;
	} cases[] = {
	    {SOTP_PW_YESCRYPT, 5, "$y$", 3, 1},
	    {SOTP_PW_YESCRYPT, 5, "$y$", 4, 1},
	    {SOTP_PW_YESCRYPT, 5, "$y$", 5, 0},
	    {SOTP_PW_YESCRYPT, 5, "$y$", 6, 0},
	    {SOTP_PW_YESCRYPT, 3, "$y$", 5, 0},
	    /* No rounds= field: sha512crypt's classic 5000. */
	    {SOTP_PW_SHA512CRYPT, 10000, "$6$", 0, 1},
	    {SOTP_PW_SHA512CRYPT, 10000, "$6$", 9999, 1},
	    {SOTP_PW_SHA512CRYPT, 10000, "$6$", 10000, 0},
	    {SOTP_PW_SHA512CRYPT, 5000, "$6$", 0, 0},
	    {SOTP_PW_SHA512CRYPT, 5000, "$6$", 20000, 0},
	    {SOTP_PW_BCRYPT, 6, "$2b$", 4, 1},
	    {SOTP_PW_BCRYPT, 6, "$2b$", 5, 1},
	    {SOTP_PW_BCRYPT, 6, "$2b$", 6, 0},
	    {SOTP_PW_BCRYPT, 6, "$2b$", 7, 0},
	};
	struct sotp_policy *p = calloc(1, sizeof(*p));
	char h[SOTP_HASH_MAX];
	size_t i;

	(void)state;
	assert_non_null(p);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p->pw_method = cases[i].m;
		p->pw_cost = cases[i].policy;
		make(cases[i].prefix, cases[i].cost, "pw", h);
		if (sotp_passwd_outdated(p, h) != cases[i].outdated)
			fail_msg("policy %s cost %u: %.24s... outdated %d, "
			         "want %d",
			    sotp_pw_methods[cases[i].m].name, cases[i].policy,
			    h, !cases[i].outdated, cases[i].outdated);
	}
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_passwd_policy_method_and_cost),
	    cmocka_unit_test(test_passwd_usable_formats),
	    cmocka_unit_test(test_passwd_usable_bigcrypt),
	    cmocka_unit_test(test_passwd_unusable_refused),
	    cmocka_unit_test(test_passwd_costly_refused),
	    cmocka_unit_test(test_passwd_outdated),
	    cmocka_unit_test(test_passwd_outdated_cost),
	    cmocka_unit_test(test_passwd_legacy_methods),
	};

	return cmocka_run_group_tests_name("passwd", tests, NULL, NULL);
}

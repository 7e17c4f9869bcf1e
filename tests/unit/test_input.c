/*
 * test_input.c - forgiving input, strict verification: what a customer
 * may type for a code, card digits, a serial, a login choice and an
 * append-mode password, and what stays malformed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sotp_int.h"

#include <string.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
test_input_utf8(void **state)
{
	static const char *const good[] = {"", "abc", "ワンタイムパスワード",
	    "\xc2\xa0", "\xef\xbf\xbd", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"};
	static const char *const bad[] = {
	    "\xff",                       /* never in UTF-8 */
	    "\xc0\xaf",                   /* overlong '/' */
	    "\xe0\x80\xaf",               /* overlong */
	    "\xed\xa0\x80",               /* a UTF-16 surrogate */
	    "\xf4\x90\x80\x80",           /* past U+10FFFF */
	    "\xe3\x83",                   /* cut short */
	    "\x83",                       /* a lone continuation byte */
	    "Shift_JIS \x83\x8f\x83\x93", /* what a Windows editor may save */
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(good); i++)
		if (!sotp_utf8_valid(good[i], strlen(good[i])))
			fail_msg("good %zu refused", i);
	for (i = 0; i < NELEM(bad); i++)
		if (sotp_utf8_valid(bad[i], strlen(bad[i])))
			fail_msg("bad %zu accepted", i);
	/* A NUL inside the counted bytes is not text. */
	assert_false(sotp_utf8_valid("a\0b", 3));
}

static void
test_input_digits(void **state)
{
	static const struct {
		const char *in, *want;
	} good[] = {
	    {"123456", "123456"},
	    {"123 456", "123456"},
	    {"１２３４５６", "123456"},
	    {"１２３　４５６", "123456"}, /* ideographic space */
	    {"123-456", "123456"},
	    {"１２３ー４５６", "123456"}, /* the long-vowel mark */
	    {"１２３－４５６", "123456"}, /* full-width hyphen-minus */
	    {" 12 34 56 ", "123456"},
	    {"12345678", "12345678"},
	};
	static const char *const bad[] = {"12a456", "１２３ａ５６", "", "   ",
	    "-", "123456789", "12.3456", "+123456",
	    "\xff"
	    "123456",
	    "123\t\n456"};
	char out[SOTP_CODE_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(good); i++) {
		if (sotp_input_digits(good[i].in, out, sizeof(out)) != SOTP_OK)
			fail_msg("'%s' refused", good[i].in);
		assert_string_equal(out, good[i].want);
	}
	for (i = 0; i < NELEM(bad); i++) {
		if (sotp_input_digits(bad[i], out, sizeof(out)) !=
		    SOTP_ERR_BAD_INPUT)
			fail_msg("'%s' accepted as '%s'", bad[i], out);
		assert_string_equal(out, "");
	}
}

static void
test_input_serial(void **state)
{
	char out[SOTP_ID_MAX];

	(void)state;
	assert_int_equal(sotp_input_serial("ＳＯ００００ ０００ ０４２", 0, 0,
	                     out, sizeof(out)),
	    SOTP_OK);
	assert_string_equal(out, "SO0000000042");
	assert_int_equal(
	    sotp_input_serial("so-0000-000042", 0, 0, out, sizeof(out)),
	    SOTP_OK);
	assert_string_equal(out, "so-0000-000042");
	assert_int_equal(
	    sotp_input_serial("so-0000-000042", 1, 0, out, sizeof(out)),
	    SOTP_OK);
	assert_string_equal(out, "so0000000042");
	assert_int_equal(
	    sotp_input_serial("so-0000ー000042", 1, 1, out, sizeof(out)),
	    SOTP_OK);
	assert_string_equal(out, "SO0000000042");
	/* Kept as typed: a dash stays a dash, unless asked. */
	assert_int_equal(
	    sotp_input_serial("T‐REG", 0, 0, out, sizeof(out)), SOTP_OK);
	assert_string_equal(out, "T-REG");
	/*
	 * Every dash the code input forgives: a Mac's Japanese input method
	 * types U+2212 (minus) in full-width mode, Windows U+FF0D. The
	 * minus was refused as malformed where a kind keeps its dashes.
	 */
	{
		static const char *const dashes[] = {"T\u2212REG", "T\uff0dREG",
		    "T\u30fcREG", "T\uff70REG", "T\u2015REG"};
		size_t i;

		for (i = 0; i < sizeof(dashes) / sizeof(dashes[0]); i++) {
			if (sotp_input_serial(
			        dashes[i], 0, 0, out, sizeof(out)) != SOTP_OK)
				fail_msg("'%s' refused", dashes[i]);
			assert_string_equal(out, "T-REG");
		}
	}
	assert_int_equal(
	    sotp_input_serial("", 0, 0, out, sizeof(out)), SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_input_serial("シリアル", 0, 0, out, sizeof(out)),
	    SOTP_ERR_BAD_INPUT);
	assert_int_equal(sotp_input_serial("a\"b", 0, 0, out, sizeof(out)),
	    SOTP_ERR_BAD_INPUT);
}

static void
test_input_login(void **state)
{
	static const struct {
		const char *in;
		enum sotp_login want;
	} good[] = {
	    {"1", SOTP_LOGIN_OTP},
	    {"１", SOTP_LOGIN_OTP},
	    {" 2 ", SOTP_LOGIN_CARD},
	    {"３", SOTP_LOGIN_NONE},
	    {"yes", SOTP_LOGIN_OTP},
	    {"ＯＴＰ", SOTP_LOGIN_OTP},
	    {"card", SOTP_LOGIN_CARD},
	    {"no", SOTP_LOGIN_NONE},
	};
	static const char *const bad[] = {
	    "", "4", "0", "12", "sometimes", "はい", "\xff"};
	enum sotp_login l;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(good); i++) {
		l = (enum sotp_login) - 1;
		if (sotp_input_login(good[i].in, &l) != SOTP_OK ||
		    l != good[i].want)
			fail_msg("'%s' -> %d, want %d", good[i].in, (int)l,
			    (int)good[i].want);
	}
	for (i = 0; i < NELEM(bad); i++)
		if (sotp_input_login(bad[i], &l) == SOTP_OK)
			fail_msg("'%s' accepted", bad[i]);
}

/* Append mode: split once, by the code's length, never guessed. */
static void
test_input_split(void **state)
{
	static const struct {
		const char *in;
		unsigned int n;
		long pwlen; /* -1: refused */
	} cases[] = {
	    {"pw123456", 6, 2}, {"pw１２３４５６", 6, 2},
	    {"pw1234567", 6, 3},         /* the password may end in a digit */
	    {"パスワード123456", 6, 15}, /* 5 characters, 15 octets */
	    {"pw12345678", 8, 2},
	    {"123456", 6, -1},    /* no password before the code */
	    {"pw12345", 6, -1},   /* the code is short: the tail has 'w' */
	    {"pw123 456", 6, -1}, /* a blank in the code: not split */
	    {"pw12345x", 6, -1}, {"", 6, -1},
	    {"\xff\xfe"
	     "123456",
	        6, 2}, /* a password need not be UTF-8 */
	};
	size_t i, pwlen;
	int rc;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		pwlen = 999;
		rc = sotp_input_split(cases[i].in, cases[i].n, &pwlen);
		if (cases[i].pwlen < 0
		        ? rc != SOTP_ERR_BAD_INPUT
		        : rc != SOTP_OK || pwlen != (size_t)cases[i].pwlen)
			fail_msg("'%s' / %u: rc %d pwlen %zu, want %ld",
			    cases[i].in, cases[i].n, rc, pwlen, cases[i].pwlen);
	}
}

/* A name from outside becomes one printable line, cut at 64 characters. */
static void
test_input_log_name(void **state)
{
	char out[SOTP_LOG_NAME_MAX], longname[201], newlines[101];

	(void)state;
	assert_string_equal(sotp_log_name(out, "sshd"), "sshd");
	assert_string_equal(sotp_log_name(out, NULL), "");
	assert_string_equal(sotp_log_name(out, "a\nb"), "a\\x0ab");
	assert_string_equal(
	    sotp_log_name(out, "x y\"z\\"), "x\\x20y\\x22z\\x5c");
	assert_string_equal(
	    sotp_log_name(out, "\xe3\x81\x82\x7f"), "\\xe3\\x81\\x82\\x7f");
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	sotp_log_name(out, longname);
	assert_int_equal(strlen(out), 67);
	assert_string_equal(out + 64, "...");
	/* every byte escaped: the longest it writes fits out */
	memset(newlines, '\n', sizeof(newlines) - 1);
	newlines[sizeof(newlines) - 1] = '\0';
	sotp_log_name(out, newlines);
	assert_int_equal(strlen(out), 16 * 4 + 3);
	assert_null(strchr(out, '\n'));
	longname[63] = '\t';
	sotp_log_name(out, longname);
	assert_int_equal(strlen(out), 63 + 4 + 3);
	assert_true(strlen(out) < sizeof(out));
}

/*
 * A path from a PAM stack line: escaped as a name, cut only at the
 * buffer's end; a message keeps its text and loses only its control
 * characters.
 */
static void
test_input_log_value_text(void **state)
{
	char out[SOTP_LOG_VALUE_MAX], small[16], longpath[2001];

	(void)state;
	assert_string_equal(
	    sotp_log_value(out, sizeof(out), "/etc/a\x1b[2J\rb c.conf"),
	    "/etc/a\\x1b[2J\\x0db\\x20c.conf");
	assert_string_equal(sotp_log_value(out, sizeof(out), NULL), "");
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	longpath[0] = '/';
	sotp_log_value(out, sizeof(out), longpath);
	assert_int_equal(strlen(out), sizeof(out) - 8 + 3);
	assert_string_equal(out + sizeof(out) - 8, "...");
	longpath[100] = '\0'; /* longer than a name, not cut */
	assert_string_equal(
	    sotp_log_value(out, sizeof(out), longpath), longpath);
	memset(longpath, '\n', 1999);
	longpath[1999] = '\0';
	sotp_log_text(out, sizeof(out), longpath);
	assert_true(strlen(out) < sizeof(out));
	assert_null(strchr(out, '\n'));
	assert_string_equal(
	    sotp_log_text(out, sizeof(out), "/a b\"\\x0a\n: 契約\x7f"),
	    "/a b\"\\x0a\\x0a: 契約\\x7f");
	assert_string_equal(
	    sotp_log_text(small, sizeof(small), "0123456789abcdef"),
	    "01234567...");
	/* too small to hold an escape and the mark: nothing written */
	assert_string_equal(sotp_log_text(small, 8, "x"), "");
}

/*
 * A log text's cut never splits a UTF-8 character: the mark goes before
 * a character whose bytes would not all fit, at each byte of it; an
 * escape is never split either. The adapters' log sinks write a line of
 * any length through here (4 KiB for PAM): cut, it ends in the mark.
 */
static void
test_input_log_text_cut(void **state)
{
	char small[16], line[4096], big[4200], *p;
	size_t i, n;

	(void)state;
	/* The cut falls at out[8]: after the 1st, 2nd, 3rd byte of 契. */
	assert_string_equal(
	    sotp_log_text(small, sizeof(small), "abcdefg契約"), "abcdefg...");
	assert_string_equal(
	    sotp_log_text(small, sizeof(small), "abcdef契約"), "abcdef...");
	assert_string_equal(
	    sotp_log_text(small, sizeof(small), "abcde契約"), "abcde契...");
	/* An escape is whole before the mark, and a stray byte is kept. */
	assert_string_equal(sotp_log_text(small, sizeof(small), "abcd\x01契約"),
	    "abcd\\x01...");
	assert_string_equal(
	    sotp_log_text(small, sizeof(small), "abcdefg\x80\x80\x80"),
	    "abcdefg\x80...");
	/* A sink's line: longer than the room, at each phase of 契. */
	for (i = 1; i <= 3; i++) {
		memset(big, 'a', i);
		for (p = big + i; p + 3 < big + sizeof(big); p += 3)
			memcpy(p, "契", 3);
		*p = '\0';
		sotp_log_text(line, sizeof(line), big);
		n = strlen(line);
		assert_true(n > sizeof(line) - 16 && n < sizeof(line));
		assert_string_equal(line + n - 3, "...");
		assert_int_equal((n - 3 - i) % 3, 0);
		assert_memory_equal(line, big, n - 3);
	}
}

/* A cut text ends in "...", after whole UTF-8 characters only. */
static void
test_input_mark_cut(void **state)
{
	char out[8];

	(void)state;
	sotp_mark_cut(
	    out, sizeof(out), sotp_strlcpy(out, "abcdefghij", sizeof(out)));
	assert_string_equal(out, "abcd...");
	/* the mark would land inside 契: it goes before it */
	sotp_mark_cut(
	    out, sizeof(out), sotp_strlcpy(out, "ab契約", sizeof(out)));
	assert_string_equal(out, "ab...");
	sotp_mark_cut(
	    out, sizeof(out), sotp_strlcpy(out, "a契約番号", sizeof(out)));
	assert_string_equal(out, "a契...");
	sotp_mark_cut(out, sizeof(out), sotp_strlcpy(out, "abc", sizeof(out)));
	assert_string_equal(out, "abc");
	sotp_mark_cut(
	    out, sizeof(out), sotp_strlcpy(out, "abcdefg", sizeof(out)));
	assert_string_equal(out, "abcdefg");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_input_utf8),
	    cmocka_unit_test(test_input_digits),
	    cmocka_unit_test(test_input_serial),
	    cmocka_unit_test(test_input_login),
	    cmocka_unit_test(test_input_split),
	    cmocka_unit_test(test_input_log_name),
	    cmocka_unit_test(test_input_log_value_text),
	    cmocka_unit_test(test_input_log_text_cut),
	    cmocka_unit_test(test_input_mark_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

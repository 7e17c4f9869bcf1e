/*
 * test_catalog.c - every reason and prompt, in both languages: present,
 * valid UTF-8, within one RADIUS Reply-Message once expanded under the
 * largest policy, worded with the bank guide's terms; one unsplit line in
 * catalog.c each; and the copy shown in man/shinkin-otp.conf.5 equal to
 * the compiled catalog, so that what a bank reviews is what runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sotp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const int all_reasons[] = {
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

static const int all_prompts[] = {
    SOTP_M_PROMPT_PASSWORD,
    SOTP_M_PROMPT_OTP,
    SOTP_M_PROMPT_CARD,
    SOTP_M_PROMPT_SERIAL,
    SOTP_M_PROMPT_LOGIN_CHOICE,
};

static const char *const lang_name[] = {"en", "ja"};

/* The largest policy: 26 x 10 card, 8 cells, a 32-character kind name. */
static struct sotp_policy *
largest(enum sotp_lang lang)
{
	struct sotp_policy *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->lang = lang;
	p->card_rows = 26;
	p->card_cols = 10;
	p->card_cells = SOTP_MAX_CELLS;
	p->nkinds = 1;
	memset(p->kinds[0].name, 'k', SOTP_NAME_MAX - 1);
	return p;
}

static void
test_catalog_every_text_fits_and_is_utf8(void **state)
{
	const uint8_t cells[SOTP_MAX_CELLS] = {
	    255, 254, 253, 252, 251, 250, 249, 248};
	char why[256], out[SOTP_MSG_MAX];
	struct sotp_msg_vars v;
	struct sotp_policy *p;
	const char *t;
	int lang, row, n = 0;

	/* Expanded with the longest values, each still fits one attribute. */

	(void)state;
	memset(&v, 0, sizeof(v));
	v.cells = cells;
	v.ncells = SOTP_MAX_CELLS;
	v.cols = 10;
	v.date = "2027-03-31";
	for (lang = 0; lang < SOTP_NLANG; lang++) {
		p = largest((enum sotp_lang)lang);
		v.kind = p->kinds[0].name;
		for (row = 0; row < SOTP_NMSG; row++) {
			t = sotp_msg_builtin(row, (enum sotp_lang)lang);
			if (sotp_msg_check(p, row, why, sizeof(why)) != 0)
				fail_msg("%s %s: %s", lang_name[lang],
				    sotp_msg_name(row), why);
			if (!sotp_utf8_valid(t, strlen(t)))
				fail_msg("%s %s: not UTF-8", lang_name[lang],
				    sotp_msg_name(row));
			n++;
		}
		/* Every reason and prompt formatted at its longest. */
		for (row = 0; row < (int)NELEM(all_reasons); row++) {
			sotp_msg_format(
			    p, all_reasons[row], &v, out, sizeof(out));
			assert_true(out[0] != '\0');
			if (strlen(out) > SOTP_REPLY_MAX ||
			    !sotp_utf8_valid(out, strlen(out)))
				fail_msg("%s %s: %zu octets", lang_name[lang],
				    sotp_reason_name(all_reasons[row]),
				    strlen(out));
		}
		for (row = 0; row < (int)NELEM(all_prompts); row++) {
			sotp_msg_format(
			    p, all_prompts[row], &v, out, sizeof(out));
			if (out[0] == '\0' || strlen(out) > SOTP_REPLY_MAX ||
			    !sotp_utf8_valid(out, strlen(out)))
				fail_msg("%s prompt %d: '%s' (%zu octets)",
				    lang_name[lang], row, out, strlen(out));
		}
		free(p);
	}
	assert_int_equal(n, 2 * SOTP_NMSG);
}

static void
test_catalog_every_reason_has_a_message(void **state)
{
	size_t i, j;
	int lang, r;

	(void)state;
	for (lang = 0; lang < SOTP_NLANG; lang++) {
		for (i = 0; i < NELEM(all_reasons); i++) {
			r = sotp_msg_row(all_reasons[i]);
			assert_true(r >= 0);
			if (sotp_msg_builtin(r, (enum sotp_lang)lang)[0] ==
			    '\0')
				fail_msg("%s %s: no customer message",
				    lang_name[lang],
				    sotp_reason_name(all_reasons[i]));
			assert_int_equal(sotp_msg_find(sotp_msg_name(r)), r);
		}
		/* One prompt per factor, each its own. */
		for (i = 0; i < NELEM(all_prompts); i++)
			for (j = i + 1; j < NELEM(all_prompts); j++)
				assert_string_not_equal(
				    sotp_msg_builtin(
				        sotp_msg_row(all_prompts[i]),
				        (enum sotp_lang)lang),
				    sotp_msg_builtin(
				        sotp_msg_row(all_prompts[j]),
				        (enum sotp_lang)lang));
	}
	/* The two reasons that once had none. */
	assert_string_not_equal(
	    sotp_msg_builtin(sotp_msg_row(SOTP_R_TOKEN_SUNSET), SOTP_LANG_JA),
	    "");
	assert_string_not_equal(
	    sotp_msg_builtin(sotp_msg_row(SOTP_R_STILL_BOUND), SOTP_LANG_JA),
	    "");
	/* An accept and a question have no text to override. */
	assert_int_equal(sotp_msg_find("ACCEPTED"), -1);
	assert_int_equal(sotp_msg_find("CONTINUE"), -1);
	assert_int_equal(sotp_msg_find("NO_SUCH_MESSAGE"), -1);
}

/* The Japanese speaks the guide's words. */
static void
test_catalog_japanese_uses_the_guide_words(void **state)
{
	static const struct {
		int key;
		const char *word;
	} want[] = {
	    {SOTP_R_WRONG_CODE, "ワンタイムパスワード"},
	    {SOTP_R_WRONG_CARD, "確認用パスワード"},
	    {SOTP_R_UNKNOWN_SERIAL, "シリアル番号"},
	    {SOTP_R_WRONG_PASSWORD, "契約者ID"},
	    {SOTP_R_UNKNOWN_CONTRACT, "契約者ID"},
	    {SOTP_M_PROMPT_OTP, "ワンタイムパスワード(半角数字)"},
	    {SOTP_M_PROMPT_CARD, "確認用パスワード"},
	    {SOTP_M_PROMPT_CARD, "(半角数字)"},
	    {SOTP_M_PROMPT_SERIAL, "シリアル番号"},
	    {SOTP_M_PROMPT_LOGIN_CHOICE, "(半角数字)"},
	    {SOTP_M_CARD_CELL, "行"},
	    {SOTP_M_CARD_CELL, "列"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(want); i++) {
		const char *t =
		    sotp_msg_builtin(sotp_msg_row(want[i].key), SOTP_LANG_JA);

		if (strstr(t, want[i].word) == NULL)
			fail_msg("%s: '%s' lacks '%s'",
			    sotp_msg_name(sotp_msg_row(want[i].key)), t,
			    want[i].word);
	}
}

/* Card cells in a prompt: the card's row letter and column digit. */
static void
test_catalog_card_prompt(void **state)
{
	const uint8_t cells[2] = {17, 40}; /* B7, E0 */
	struct sotp_msg_vars v;
	struct sotp_policy *p;
	char out[SOTP_MSG_MAX];

	(void)state;
	memset(&v, 0, sizeof(v));
	v.cells = cells;
	v.ncells = 2;
	v.cols = 10;
	p = largest(SOTP_LANG_JA);
	sotp_msg_format(p, SOTP_M_PROMPT_CARD, &v, out, sizeof(out));
	assert_string_equal(
	    out, "確認用パスワード表のB行7列、E行0列の数字(半角数字)：");
	p->lang = SOTP_LANG_EN;
	sotp_msg_format(p, SOTP_M_PROMPT_CARD, &v, out, sizeof(out));
	assert_string_equal(
	    out, "Confirmation password, the digits at B7 E0: ");
	/* An override is used as written; its own placeholders filled. */
	snprintf(p->msg[sotp_msg_row(SOTP_M_CARD_CELL)], SOTP_MSG_MAX,
	    "[%%{row}-%%{col}]");
	sotp_msg_format(p, SOTP_M_PROMPT_CARD, &v, out, sizeof(out));
	assert_string_equal(
	    out, "Confirmation password, the digits at [B-7] [E-0]: ");
	free(p);
}

/* What a bad override looks like to the load check. */
static void
test_catalog_check_refuses(void **state)
{
	static const struct {
		const char *name, *text, *why;
	} bad[] = {
	    {"WRONG_CODE", "bad \xff byte", "not valid UTF-8"},
	    {"WRONG_CODE", "overlong \xc0\xaf", "not valid UTF-8"},
	    {"WRONG_CODE", "surrogate \xed\xa0\x80", "not valid UTF-8"},
	    {"WRONG_CODE", "tab\there", "control character"},
	    /* \u escapes: the execution character set is UTF-8. */
	    {"WRONG_CODE", "12\u202e34", "direction override"},
	    {"WRONG_CODE", "12\u200e34", "direction mark (U+200E)"},
	    {"WRONG_CODE", "12\u200f34", "direction mark (U+200F)"},
	    {"WRONG_CODE", "12\u061c34", "direction mark (U+061C)"},
	    {"WRONG_CODE", "12\u200b34", "a zero width space (U+200B)"},
	    {"WRONG_CODE", "12\u200c34", "a zero width non-joiner (U+200C)"},
	    {"WRONG_CODE", "12\u200d34", "a zero width joiner (U+200D)"},
	    {"WRONG_CODE", "12\u206034", "a word joiner (U+2060)"},
	    {"WRONG_CODE", "\ufeffcode", "zero width no-break space (U+FEFF)"},
	    {"WRONG_CODE", "12\ufeff34", "zero width no-break space (U+FEFF)"},
	    {"WRONG_CODE", "code\ufeff", "zero width no-break space (U+FEFF)"},
	    {"WRONG_CODE", "one\u2028two", "a line separator (U+2028)"},
	    {"WRONG_CODE", "one\u2029two", "a paragraph separator (U+2029)"},
	    {"WRONG_CODE", "12\u00ad34", "a soft hyphen (U+00AD)"},
	    {"WRONG_CODE", "12\u034f34",
	        "a combining grapheme joiner (U+034F)"},
	    {"WRONG_CODE", "12\u180e34", "a vowel separator (U+180E)"},
	    {"WRONG_CODE", "12\u206234", "an invisible operator (U+2062)"},
	    {"WRONG_CODE", "12\u206a34", "format character (U+206A)"},
	    {"WRONG_CODE", "12\ufff934", "annotation character (U+FFF9)"},
	    {"WRONG_CODE", "12\u316434", "a blank filler (U+3164)"},
	    {"WRONG_CODE", "12\uffa034", "a blank filler (U+FFA0)"},
	    {"WRONG_CODE", "12\U000e004134", "a tag character (U+E0041)"},
	    {"WRONG_CODE", "12\U0001d17334", "format character (U+1D173)"},
	    {"WRONG_CODE", "%{date}", "cannot use the placeholder"},
	    {"TOKEN_SUNSET", "until %{when}", "unknown placeholder '%{when}'"},
	    {"PROMPT_CARD", "Card digits: ", "must hold %{cells}"},
	    {"CARD_CELL", "%{row}", "must hold %{row} and %{col}"},
	};
	struct sotp_policy *p = largest(SOTP_LANG_JA);
	char why[256];
	size_t i;
	int row;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		row = sotp_msg_find(bad[i].name);
		assert_true(row >= 0);
		memset(p->msg, 0, sizeof(p->msg));
		snprintf(p->msg[row], SOTP_MSG_MAX, "%s", bad[i].text);
		why[0] = '\0';
		if (sotp_msg_check(p, row, why, sizeof(why)) == 0 ||
		    strstr(why, bad[i].why) == NULL)
			fail_msg("%s = '%s': got '%s', want '%s'", bad[i].name,
			    bad[i].text, why, bad[i].why);
	}
	/*
	 * A variation selector only picks the glyph of the character before
	 * it (an ideographic variant of a name, an emoji's colour form):
	 * allowed, as are the full-width forms Japanese text is made of.
	 */
	{
		static const char *const good[] = {
		    "\u845b\U000e0100\u98fe\u533a\u306e\u304a\u5ba2\u69d8",
		    "OK \u2714\ufe0f",
		    "\uff11\uff12\uff13\u3000\u30b3\u30fc\u30c9",
		};

		row = sotp_msg_find("WRONG_CODE");
		for (i = 0; i < NELEM(good); i++) {
			memset(p->msg, 0, sizeof(p->msg));
			snprintf(p->msg[row], SOTP_MSG_MAX, "%s", good[i]);
			why[0] = '\0';
			if (sotp_msg_check(p, row, why, sizeof(why)) != 0)
				fail_msg("WRONG_CODE = '%s' refused: %s",
				    good[i], why);
		}
	}
	/* 84 Japanese characters are 252 octets: fit; one more does not. */
	memset(p->msg, 0, sizeof(p->msg));
	row = sotp_msg_find("WRONG_CODE");
	for (i = 0; i < 84; i++)
		strcat(p->msg[row], "あ");
	assert_int_equal(sotp_msg_check(p, row, why, sizeof(why)), 0);
	strcat(p->msg[row], "あ");
	assert_int_equal(sotp_msg_check(p, row, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "255 octets"));
	/* A cell template that fits alone can still swell the card prompt. */
	memset(p->msg, 0, sizeof(p->msg));
	snprintf(p->msg[sotp_msg_find("CARD_CELL")], SOTP_MSG_MAX, "%s",
	    "the card's row %{row}, in its column %{col}");
	row = sotp_msg_find("PROMPT_CARD");
	assert_int_equal(sotp_msg_check(p, row, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "PROMPT_CARD can grow to"));
	free(p);
}

/* $TOP/rel read whole into a malloc'd string. */
static char *
slurp(const char *rel)
{
	const char *top = getenv("TOP");
	char path[1024];
	char *buf;
	FILE *f;
	long n;

	if (top == NULL || top[0] == '\0')
		fail_msg("TOP is not set: run tests/run.sh");
	snprintf(path, sizeof(path), "%s/%s", top, rel);
	assert_non_null(f = fopen(path, "r"));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	assert_true((n = ftell(f)) > 0);
	rewind(f);
	assert_non_null(buf = malloc((size_t)n + 1));
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* No text is split across source lines: each is whole on one line. */
static void
test_catalog_one_line_each(void **state)
{
	char *src = slurp("common/catalog.c"), *line, *save = NULL;
	char quoted[SOTP_MSG_MAX + 2];
	int lang, row, found;

	(void)state;
	for (lang = 0; lang < SOTP_NLANG; lang++) {
		for (row = 0; row < SOTP_NMSG; row++) {
			const char *t =
			    sotp_msg_builtin(row, (enum sotp_lang)lang);
			char *copy;

			if (t[0] == '\0')
				continue;
			snprintf(quoted, sizeof(quoted), "\"%s\"", t);
			assert_non_null(copy = strdup(src));
			found = 0;
			for (line = strtok_r(copy, "\n", &save); line != NULL;
			     line = strtok_r(NULL, "\n", &save))
				if (strstr(line, quoted) != NULL)
					found = 1;
			free(copy);
			if (!found)
				fail_msg("%s %s is not one line of catalog.c",
				    lang_name[lang], sotp_msg_name(row));
		}
	}
	free(src);
}

/*
 * The catalog as man/shinkin-otp.conf.5 shows it: after the comment line
 * '.\" catalog LANG', a literal display of 'NAME = "text"' lines.
 */
static void
test_catalog_man_page_is_the_catalog(void **state)
{
	char *man = slurp("man/shinkin-otp.conf.5"), *p, *end;
	char marker[32], want[SOTP_MSG_MAX + 64];
	int lang, row;

	(void)state;
	for (lang = 0; lang < SOTP_NLANG; lang++) {
		snprintf(marker, sizeof(marker), ".\\\" catalog %s\n",
		    lang_name[lang]);
		if ((p = strstr(man, marker)) == NULL)
			fail_msg("man page: no '%s' block", marker);
		p = strchr(p, '\n') + 1;
		assert_true(strncmp(p, ".Bd -literal", 12) == 0);
		p = strchr(p, '\n') + 1;
		for (row = 0; row < SOTP_NMSG; row++) {
			const char *t =
			    sotp_msg_builtin(row, (enum sotp_lang)lang);

			if (t[0] == '\0')
				continue;
			snprintf(want, sizeof(want), "%s = \"%s\"",
			    sotp_msg_name(row), t);
			assert_non_null(end = strchr(p, '\n'));
			*end = '\0';
			if (strcmp(p, want) != 0)
				fail_msg(
				    "man page, %s catalog: '%s', compiled: "
				    "'%s'",
				    lang_name[lang], p, want);
			p = end + 1;
		}
		if (strncmp(p, ".Ed", 3) != 0)
			fail_msg("man page, %s catalog: more lines than the "
			         "compiled one: '%.60s'",
			    lang_name[lang], p);
	}
	free(man);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_catalog_every_text_fits_and_is_utf8),
	    cmocka_unit_test(test_catalog_every_reason_has_a_message),
	    cmocka_unit_test(test_catalog_japanese_uses_the_guide_words),
	    cmocka_unit_test(test_catalog_card_prompt),
	    cmocka_unit_test(test_catalog_check_refuses),
	    cmocka_unit_test(test_catalog_one_line_each),
	    cmocka_unit_test(test_catalog_man_page_is_the_catalog),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

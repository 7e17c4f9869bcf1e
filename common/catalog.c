/*
 * catalog.c - every text a customer reads, and the reasons behind them.
 *
 * One row per reason: its number, its name, the operator's log text and
 * the customer's message in English and in Japanese. The prompts (one per
 * factor) and the few notices follow in the same table. Every text is one
 * unsplit literal, so grep finds it. The Japanese follows the bank guide's
 * own words: ワンタイムパスワード, 確認用パスワード, シリアル番号,
 * 契約者ID and (半角数字).
 *
 * A policy picks the language and may override any row by name in its
 * [messages] section; sotp_msg_check() is what keeps every text, as
 * expanded, inside one RADIUS Reply-Message. man/shinkin-otp.conf.5 shows
 * both catalogs; tests/unit/test_catalog.c keeps that copy equal to this.
 */
#include "sotp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Placeholders a text may hold. */
#define V_CELLS 0x01u /* %{cells} */
#define V_DATE 0x02u  /* %{date} */
#define V_KIND 0x04u  /* %{kind} */
#define V_ROW 0x08u   /* %{row} */
#define V_COL 0x10u   /* %{col} */

struct row {
	int key; /* enum sotp_reason, or enum sotp_msg_key */
	const char *name;
	const char *log; /* reasons: the operator's text (logs, CLI) */
	const char *text[SOTP_NLANG];
	unsigned int vars; /* placeholders allowed */
	unsigned int need; /* placeholders required */
};

/* A reason: its constant, log text, English and Japanese message. */
#define R(c, log, en, ja)                                                      \
	{                                                                      \
		SOTP_R_##c, #c, log, {en, ja}, 0, 0                            \
	}
#define RV(c, log, en, ja, vars)                                               \
	{                                                                      \
		SOTP_R_##c, #c, log, {en, ja}, vars, 0                         \
	}
/* A prompt or notice: its key, texts, allowed and required placeholders. */
#define M(c, en, ja, vars, need)                                               \
	{                                                                      \
		SOTP_M_##c, #c, NULL, {en, ja}, vars, need                     \
	}

/* The reason numbers are stored in audit rows: never renumber. */
static const struct row rows[] = {
    /* No text: an accept or a question says nothing of its own. */
    R(ACCEPTED, "accepted", NULL, NULL),
    R(CONTINUE, "more input needed", NULL, NULL),
    R(WRONG_CODE, "wrong code", "The one-time password is not correct.",
        "ワンタイムパスワードが正しくありません。"),
    R(REPLAYED, "code already used",
        "This one-time password has already been used; please wait for the next one.",
        "このワンタイムパスワードは使用済みです。次のワンタイムパスワードが表示されてから入力してください。"),
    R(LOCKED, "contract locked",
        "This contract is locked after too many failed attempts; please contact the bank.",
        "誤った入力が規定の回数を超えたため、ご利用を停止しています。当金庫までお問い合わせください。"),
    R(UNKNOWN_CONTRACT, "unknown contract",
        "The contract ID or password is not correct.",
        "契約者IDまたはログインパスワードが正しくありません。"),
    R(UNKNOWN_SERIAL, "unknown token serial",
        "The serial number is not correct.",
        "シリアル番号が正しくありません。"),
    R(ALREADY_BOUND, "a token is already bound to this contract",
        "A one-time password token is already registered for this contract.",
        "この契約者IDには、すでにワンタイムパスワードが登録されています。"),
    R(TOKEN_IN_USE, "token is bound to another contract",
        "This token is registered to another contract.",
        "このシリアル番号は、ほかの契約者IDに登録されています。"),
    R(NOT_BOUND, "no token bound",
        "No one-time password token is registered; please register a smartphone token first.",
        "ワンタイムパスワードが登録されていません。先にスマートフォンのワンタイムパスワードを登録してください。"),
    R(WRONG_PASSWORD, "wrong password",
        "The contract ID or password is not correct.",
        "契約者IDまたはログインパスワードが正しくありません。"),
    R(WRONG_CARD, "wrong card digits",
        "The confirmation password is not correct.",
        "確認用パスワードが正しくありません。"),
    R(NO_CARD, "no card issued",
        "No confirmation password card has been issued for this contract.",
        "確認用パスワードのカードが発行されていません。"),
    R(CONTRACT_CLOSED, "contract closed", "This contract is closed.",
        "このご契約は解約されています。"),
    R(STILL_BOUND, "a token is still bound",
        "Please unregister the one-time password token before closing the contract.",
        "ワンタイムパスワードの登録を解除してから解約してください。"),
    RV(TOKEN_SUNSET, "token kind past its sunset date",
        "Your %{kind} token was retired on %{date}; please move to the smartphone token.",
        "このワンタイムパスワードは%{date}で利用を終了しました。スマートフォンのワンタイムパスワードへお切り替えください。",
        V_DATE | V_KIND),
    R(TOKEN_DISABLED, "token disabled",
        "This token is disabled; please contact the bank.",
        "このワンタイムパスワードはご利用いただけません。当金庫までお問い合わせください。"),
    R(BAD_INPUT, "malformed input",
        "The input is not in the expected form (check the number of digits); please start again.",
        "入力の形式が正しくありません。桁数をご確認のうえ、最初からやり直してください。"),
    R(STATE_INVALID, "invalid challenge state",
        "This session is not valid; please start again.",
        "このお手続きは無効です。最初からやり直してください。"),
    R(STATE_EXPIRED, "challenge expired",
        "This session has expired; please start again.",
        "お手続きの有効時間が過ぎました。最初からやり直してください。"),
    R(STATE_REPLAYED, "challenge already used",
        "This session was already used; please start again.",
        "このお手続きはすでに使用されています。最初からやり直してください。"),
    R(TOO_MANY_ROUNDS, "too many rounds",
        "Too many steps in one session; please start again.",
        "入力の回数が上限を超えました。最初からやり直してください。"),
    R(EXISTS, "already exists", "This is already registered.",
        "すでに登録されています。"),
    R(UNKNOWN_CONTEXT, "unknown context", "This service is not configured.",
        "このサービスはご利用いただけません。"),
    R(AMBIGUOUS_INPUT, "password and code cannot be told apart",
        "Please enter your password immediately followed by the one-time password.",
        "ログインパスワードに続けて、ワンタイムパスワード(半角数字)を入力してください。"),
    R(STORE_UNAVAILABLE, "service temporarily unavailable",
        "The service is temporarily unavailable; please try again later.",
        "ただいまご利用いただけません。しばらくしてから、もう一度お試しください。"),
    R(BAD_CONFIG, "service misconfigured",
        "The service is temporarily unavailable; please try again later.",
        "ただいまご利用いただけません。しばらくしてから、もう一度お試しください。"),
    R(INTERNAL, "internal error",
        "The service is temporarily unavailable; please try again later.",
        "ただいまご利用いただけません。しばらくしてから、もう一度お試しください。"),
    M(PROMPT_PASSWORD, "Password: ", "ログインパスワード：", 0, 0),
    M(PROMPT_OTP, "One-time password: ", "ワンタイムパスワード(半角数字)：", 0,
        0),
    M(PROMPT_CARD, "Confirmation password, the digits at %{cells}: ",
        "確認用パスワード表の%{cells}の数字(半角数字)：", V_CELLS, V_CELLS),
    M(PROMPT_SERIAL,
        "Serial number of the token: ", "シリアル番号(半角英数字)：", 0, 0),
    M(PROMPT_LOGIN_CHOICE,
        "At login also ask for 1 = the one-time password, 2 = the confirmation password, 3 = nothing: ",
        "ログイン時の追加認証 1:ワンタイムパスワード 2:確認用パスワード 3:なし(半角数字)：",
        0, 0),
    M(SUNSET_SOON,
        "Your %{kind} token can be used until %{date}; please move to the smartphone token.",
        "このワンタイムパスワードは%{date}まで利用できます。スマートフォンのワンタイムパスワードへお切り替えください。",
        V_DATE | V_KIND, 0),
    M(CARD_CELL, "%{row}%{col}", "%{row}行%{col}列", V_ROW | V_COL,
        V_ROW | V_COL),
    M(CARD_CELL_SEP, " ", "、", 0, 0),
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))
_Static_assert(NROWS == SOTP_NMSG, "SOTP_NMSG must count the catalog rows");

static const struct {
	const char *name;
	unsigned int bit;
} placeholders[] = {
    {"cells", V_CELLS},
    {"date", V_DATE},
    {"kind", V_KIND},
    {"row", V_ROW},
    {"col", V_COL},
};

int
sotp_msg_row(int key)
{
	size_t i;

	for (i = 0; i < NROWS; i++)
		if (rows[i].key == key)
			return (int)i;
	return -1;
}

int
sotp_msg_find(const char *name)
{
	size_t i;

	for (i = 0; i < NROWS; i++)
		if (rows[i].text[0] != NULL && strcmp(rows[i].name, name) == 0)
			return (int)i;
	return -1;
}

const char *
sotp_msg_name(int row)
{
	return row >= 0 && (size_t)row < NROWS ? rows[row].name : NULL;
}

const char *
sotp_msg_builtin(int row, enum sotp_lang lang)
{
	if (row < 0 || (size_t)row >= NROWS ||
	    (unsigned int)lang >= SOTP_NLANG || rows[row].text[lang] == NULL)
		return "";
	return rows[row].text[lang];
}

const char *
sotp_msg_text(const struct sotp_policy *p, int row)
{
	if (row < 0 || (size_t)row >= NROWS)
		return "";
	if (p->msg[row][0] != '\0')
		return p->msg[row];
	return sotp_msg_builtin(row, p->lang);
}

const char *
sotp_reason_text(int reason)
{
	int r = sotp_msg_row(reason);

	return r >= 0 && rows[r].log != NULL ? rows[r].log : "unknown reason";
}

const char *
sotp_reason_name(int reason)
{
	int r = sotp_msg_row(reason);

	return r >= 0 && rows[r].log != NULL ? rows[r].name : "UNKNOWN";
}

/* ---- expansion ---- */

struct out {
	char *buf;
	size_t size, len;
};

/*
 * Appends n bytes; never past the buffer, and never half a UTF-8
 * character (the load check makes this cut unreachable).
 */
static void
put(struct out *o, const char *s, size_t n)
{
	if (o->len + n >= o->size) {
		n = o->size - 1 - o->len;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

/* The placeholder at s ("%{name}"): its bit and length, or 0. */
static unsigned int
placeholder(const char *s, size_t *len)
{
	const char *end;
	size_t i, n;

	if (s[0] != '%' || s[1] != '{' || (end = strchr(s + 2, '}')) == NULL)
		return 0;
	n = (size_t)(end - (s + 2));
	for (i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++) {
		if (strlen(placeholders[i].name) == n &&
		    strncmp(s + 2, placeholders[i].name, n) == 0) {
			*len = n + 3;
			return placeholders[i].bit;
		}
	}
	return 0;
}

static void expand(const struct sotp_policy *p, int row,
    const struct sotp_msg_vars *v, char rowc, char colc, struct out *o);

/* %{cells}: each cell as CARD_CELL, separated by CARD_CELL_SEP. */
static void
expand_cells(
    const struct sotp_policy *p, const struct sotp_msg_vars *v, struct out *o)
{
	unsigned int i;

	for (i = 0; i < v->ncells && v->cols > 0; i++) {
		if (i > 0)
			expand(
			    p, sotp_msg_row(SOTP_M_CARD_CELL_SEP), v, 0, 0, o);
		expand(p, sotp_msg_row(SOTP_M_CARD_CELL), v,
		    (char)('A' + v->cells[i] / v->cols),
		    (char)('0' + v->cells[i] % v->cols), o);
	}
}

static void
expand(const struct sotp_policy *p, int row, const struct sotp_msg_vars *v,
    char rowc, char colc, struct out *o)
{
	const char *s = sotp_msg_text(p, row);
	const char *val;
	unsigned int bit;
	size_t n;

	while (*s != '\0') {
		if ((bit = placeholder(s, &n)) == 0) {
			put(o, s, 1);
			s++;
			continue;
		}
		s += n;
		val = NULL;
		if (bit == V_CELLS && v != NULL && v->cells != NULL)
			expand_cells(p, v, o);
		else if (bit == V_DATE && v != NULL)
			val = v->date;
		else if (bit == V_KIND && v != NULL)
			val = v->kind;
		else if (bit == V_ROW)
			put(o, &rowc, 1);
		else if (bit == V_COL)
			put(o, &colc, 1);
		if (val != NULL)
			put(o, val, strlen(val));
	}
}

void
sotp_msg_format(const struct sotp_policy *p, int key,
    const struct sotp_msg_vars *v, char *out, size_t outsz)
{
	struct out o = {out, outsz, 0};

	if (outsz == 0)
		return;
	out[0] = '\0';
	expand(p, sotp_msg_row(key), v, 'A', '0', &o);
}

/* ---- the load check ---- */

static size_t measure(const struct sotp_policy *p, int row);

/* The longest text a placeholder can stand for under policy p. */
static size_t
longest(const struct sotp_policy *p, unsigned int bit)
{
	size_t i, n = 0;

	switch (bit) {
	case V_DATE:
		return 10; /* YYYY-MM-DD */
	case V_KIND:
		for (i = 0; i < p->nkinds; i++)
			if (strlen(p->kinds[i].name) > n)
				n = strlen(p->kinds[i].name);
		return n;
	case V_ROW:
	case V_COL:
		return 1; /* A..Z, 0..9 */
	case V_CELLS:
		if (p->card_cells == 0)
			return 0;
		return p->card_cells *
		    measure(p, sotp_msg_row(SOTP_M_CARD_CELL)) +
		    (p->card_cells - 1) *
		    measure(p, sotp_msg_row(SOTP_M_CARD_CELL_SEP));
	}
	return 0;
}

/* The octets a row's text can grow to; %{cells} never nests. */
static size_t
measure(const struct sotp_policy *p, int row)
{
	const char *s = sotp_msg_text(p, row);
	unsigned int bit;
	size_t len = 0, n;

	while (*s != '\0') {
		if ((bit = placeholder(s, &n)) == 0 ||
		    (bit == V_CELLS && row == sotp_msg_row(SOTP_M_CARD_CELL))) {
			len++;
			s++;
			continue;
		}
		len += longest(p, bit);
		s += n;
	}
	return len;
}

static int fail(char *why, size_t whysz, const char *fmt, ...)
    SOTP_PRINTF(3, 4);

static int
fail(char *why, size_t whysz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whysz, fmt, ap);
	va_end(ap);
	return -1;
}

/* A C1 control, U+0080..U+009F, at s (valid UTF-8): a terminal acts on it. */
static int
c1(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	return u[0] == 0xc2 && u[1] >= 0x80 && u[1] <= 0x9f;
}

/*
 * An explicit direction control at s, U+202A..U+202E or U+2066..U+2069:
 * it reorders what follows on the customer's screen, so a message could
 * show other digits or words than it holds.
 */
static int
bidi(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	return u[0] == 0xe2 &&
	    ((u[1] == 0x80 && u[2] >= 0xaa && u[2] <= 0xae) ||
	        (u[1] == 0x81 && u[2] >= 0xa6 && u[2] <= 0xa9));
}

/*
 * Invisible characters a text may not hold, with what the refusal calls
 * them: the operator cannot see one in the file, so it is named with its
 * code point. The direction marks LRM, RLM and ALM move digits about on
 * the customer's screen as an override does. The zero width characters,
 * the word joiner and the other format characters (Unicode's category
 * Cf: the soft hyphen, the invisible operators, the tags...) and the
 * Hangul fillers (letters that show nothing) hide inside
 * a word or a number, so a text can read other than it holds (and
 * compare unequal to what it shows); U+FEFF is one of them wherever it
 * stands, not only at the start of a file. The line and paragraph
 * separators split a Reply-Message line on some screens. Variation
 * selectors stay allowed: a Japanese name may need one (an ideographic
 * variant) and it only chooses the glyph of the character before it.
 */
static const struct {
	unsigned int lo, hi;
	const char *what;
} invisibles[] = {
    {0x00adu, 0x00adu, "a soft hyphen"},
    {0x034fu, 0x034fu, "a combining grapheme joiner"},
    {0x0600u, 0x0605u, "an invisible format character"},
    {0x061cu, 0x061cu, "a direction mark"},
    {0x06ddu, 0x06ddu, "an invisible format character"},
    {0x070fu, 0x070fu, "an invisible format character"},
    {0x0890u, 0x0891u, "an invisible format character"},
    {0x08e2u, 0x08e2u, "an invisible format character"},
    {0x115fu, 0x1160u, "a blank filler"},
    {0x180eu, 0x180eu, "a vowel separator"},
    {0x200bu, 0x200bu, "a zero width space"},
    {0x200cu, 0x200cu, "a zero width non-joiner"},
    {0x200du, 0x200du, "a zero width joiner"},
    {0x200eu, 0x200fu, "a direction mark"},
    {0x2028u, 0x2028u, "a line separator"},
    {0x2029u, 0x2029u, "a paragraph separator"},
    {0x2060u, 0x2060u, "a word joiner"},
    {0x2061u, 0x2064u, "an invisible operator"},
    {0x206au, 0x206fu, "an invisible format character"},
    {0x3164u, 0x3164u, "a blank filler"},
    {0xfeffu, 0xfeffu, "a zero width no-break space"},
    {0xffa0u, 0xffa0u, "a blank filler"},
    {0xfff9u, 0xfffbu, "an interlinear annotation character"},
    {0x110bdu, 0x110bdu, "an invisible format character"},
    {0x110cdu, 0x110cdu, "an invisible format character"},
    {0x13430u, 0x1343fu, "an invisible format character"},
    {0x1bca0u, 0x1bca3u, "an invisible format character"},
    {0x1d173u, 0x1d17au, "an invisible format character"},
    {0xe0001u, 0xe0001u, "a tag character"},
    {0xe0020u, 0xe007fu, "a tag character"},
};

/*
 * The code point of the multi-octet UTF-8 sequence at s (valid UTF-8),
 * or 0 for a single octet.
 */
static unsigned int
codepoint(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	if ((u[0] & 0xe0) == 0xc0)
		return (u[0] & 0x1fu) << 6 | (u[1] & 0x3fu);
	if ((u[0] & 0xf0) == 0xe0)
		return (u[0] & 0x0fu) << 12 | (u[1] & 0x3fu) << 6 |
		    (u[2] & 0x3fu);
	if ((u[0] & 0xf8) == 0xf0)
		return (u[0] & 0x07u) << 18 | (u[1] & 0x3fu) << 12 |
		    (u[2] & 0x3fu) << 6 | (u[3] & 0x3fu);
	return 0;
}

/* The entry of invisibles[] for the character at s, or NULL. */
static const char *
invisible(const char *s, unsigned int *cp)
{
	size_t i;

	*cp = codepoint(s);
	for (i = 0; i < sizeof(invisibles) / sizeof(invisibles[0]); i++)
		if (*cp >= invisibles[i].lo && *cp <= invisibles[i].hi)
			return invisibles[i].what;
	return NULL;
}

const char *
sotp_text_hazard(const char *s, unsigned int *cp)
{
	*cp = (unsigned char)*s;
	if ((unsigned char)*s < 0x20 || *s == 0x7f)
		return "a control character";
	if (c1(s) || bidi(s)) {
		*cp = codepoint(s);
		return c1(s) ? "a control character" : "a direction override";
	}
	return invisible(s, cp);
}

int
sotp_msg_check(const struct sotp_policy *p, int row, char *why, size_t whysz)
{
	const char *s, *name, *what;
	unsigned int bit, cp, seen = 0;
	size_t n;

	if (row < 0 || (size_t)row >= NROWS)
		return fail(why, whysz, "no such message");
	name = rows[row].name;
	s = sotp_msg_text(p, row);
	if (!sotp_utf8_valid(s, strlen(s)))
		return fail(why, whysz, "%s is not valid UTF-8", name);
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f || c1(s))
			return fail(
			    why, whysz, "%s holds a control character", name);
		if (bidi(s))
			return fail(
			    why, whysz, "%s holds a direction override", name);
		if ((what = invisible(s, &cp)) != NULL)
			return fail(
			    why, whysz, "%s holds %s (U+%04X)", name, what, cp);
		if ((bit = placeholder(s, &n)) != 0) {
			if ((rows[row].vars & bit) == 0)
				return fail(why, whysz,
				    "%s cannot use the placeholder '%.*s'",
				    name, (int)n, s);
			seen |= bit;
		} else if (s[0] == '%' && s[1] == '{') {
			return fail(why, whysz,
			    "%s: unknown placeholder '%.*s'", name,
			    (int)strcspn(s, "}") + 1, s);
		}
	}
	if ((rows[row].need & ~seen) != 0)
		return fail(why, whysz, "%s must hold %s", name,
		    rows[row].need & V_CELLS ? "%{cells}"
		                             : "%{row} and %{col}");
	if ((n = measure(p, row)) > SOTP_REPLY_MAX)
		return fail(why, whysz,
		    "%s can grow to %zu octets; one RADIUS Reply-Message "
		    "holds %d",
		    name, n, SOTP_REPLY_MAX);
	return 0;
}

int
sotp_messages(const struct sotp_ctx *ctx, sotp_message_cb *cb, void *arg)
{
	size_t i;

	if (ctx == NULL || cb == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (!ctx->have_policy)
		return SOTP_ERR_CONFIG;
	for (i = 0; i < NROWS; i++)
		if (rows[i].text[0] != NULL &&
		    cb(arg, rows[i].name, sotp_msg_text(&ctx->pol, (int)i)) !=
		        0)
			break;
	return SOTP_OK;
}

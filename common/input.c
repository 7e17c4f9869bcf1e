/*
 * input.c - forgiving input, strict verification.
 *
 * Customers type codes as their phone shows them ("123 456"), with a
 * Japanese input method left in full-width mode ("１２３４５６"), or with
 * the dash a long-vowel key gives ("ー"). What is typed is brought to one
 * plain form here, before anything is compared; what is still not that
 * form (letters, a wrong length) is refused as malformed, never guessed.
 */
#include "sotp_int.h"

#include <stdio.h>
#include <string.h>

/* One code point from *p (RFC 3629 strict), advancing *p; -1 if invalid. */
static long
utf8_next(const unsigned char **p)
{
	const unsigned char *s = *p;
	long c;
	int n, i;

	if (s[0] < 0x80) {
		*p = s + 1;
		return s[0];
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 1;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 2;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 3;
	else
		return -1;
	c = s[0] & (0x3f >> n);
	for (i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		c = (c << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and past U+10FFFF. */
	if ((n == 2 && c < 0x800) || (n == 3 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return -1;
	*p = s + n + 1;
	return c;
}

int
sotp_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + n;

	/* utf8_next reads up to 4 bytes: a NUL inside n stops the walk. */
	if (memchr(s, '\0', n) != NULL)
		return 0;
	while (p < end)
		if (utf8_next(&p) < 0 || p > end)
			return 0;
	return 1;
}

static int
is_blank(long c)
{
	return c == ' ' || c == '\t' || c == 0x3000;
}

static int
is_dash(long c)
{
	return c == '-' || (c >= 0x2010 && c <= 0x2015) || c == 0x2212 ||
	    c == 0xff0d || c == 0x30fc || c == 0xff70;
}

/* Full-width forms (U+FF01..U+FF5E) as the ASCII they stand for. */
static long
halfwidth(long c)
{
	return c >= 0xff01 && c <= 0xff5e ? c - 0xff01 + 0x21 : c;
}

int
sotp_input_digits(const char *in, char *out, size_t outsz)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;
	long c;

	if (in == NULL || outsz == 0)
		return SOTP_ERR_INVALID_ARG;
	out[0] = '\0';
	while (*p != '\0') {
		if ((c = utf8_next(&p)) < 0)
			goto bad;
		if (is_blank(c) || is_dash(c))
			continue;
		c = halfwidth(c);
		if (c < '0' || c > '9' || n + 1 >= outsz)
			goto bad;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	if (n == 0)
		goto bad;
	return SOTP_OK;
bad:
	sotp_wipe(out, outsz);
	return SOTP_ERR_BAD_INPUT;
}

int
sotp_input_serial(
    const char *in, int nodash, int upper, char *out, size_t outsz)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;
	long c;

	if (in == NULL || outsz == 0)
		return SOTP_ERR_INVALID_ARG;
	out[0] = '\0';
	while (*p != '\0') {
		if ((c = utf8_next(&p)) < 0)
			return SOTP_ERR_BAD_INPUT;
		if (is_blank(c) || (nodash && is_dash(c)))
			continue;
		/* Every dash a code forgives stands for '-' (U+2212 too). */
		if (is_dash(c))
			c = '-';
		c = halfwidth(c);
		if (upper && c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		if (c <= ' ' || c > '~' || n + 1 >= outsz)
			return SOTP_ERR_BAD_INPUT;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return sotp_id_valid(out) ? SOTP_OK : SOTP_ERR_BAD_INPUT;
}

int
sotp_input_login(const char *in, enum sotp_login *l)
{
	char word[16];
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;
	long c;

	if (in == NULL || l == NULL)
		return SOTP_ERR_INVALID_ARG;
	while (*p != '\0') {
		if ((c = utf8_next(&p)) < 0)
			return SOTP_ERR_BAD_INPUT;
		if (is_blank(c))
			continue;
		c = halfwidth(c);
		if (c <= ' ' || c > '~' || n + 1 >= sizeof(word))
			return SOTP_ERR_BAD_INPUT;
		word[n++] = (char)c;
	}
	word[n] = '\0';
	/* The numbers the prompt offers, in its order. */
	if (strcmp(word, "1") == 0)
		*l = SOTP_LOGIN_OTP;
	else if (strcmp(word, "2") == 0)
		*l = SOTP_LOGIN_CARD;
	else if (strcmp(word, "3") == 0)
		*l = SOTP_LOGIN_NONE;
	else
		return sotp_login_parse(word, l);
	return SOTP_OK;
}

int
sotp_input_split(const char *in, unsigned int n, size_t *pwlen)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t off[1025];
	size_t count = 0, i;
	long c;

	if (in == NULL || pwlen == NULL || n == 0)
		return SOTP_ERR_INVALID_ARG;
	/*
	 * Where each character starts; the caller bounds values to 1024. A
	 * password need not be UTF-8: a byte that is not counts as one.
	 */
	while (*p != '\0') {
		if (count == sizeof(off) / sizeof(off[0]))
			return SOTP_ERR_BAD_INPUT;
		off[count++] = (size_t)(p - (const unsigned char *)in);
		if (utf8_next(&p) < 0)
			p++;
	}
	if (count <= n)
		return SOTP_ERR_BAD_INPUT;
	for (i = count - n; i < count; i++) {
		p = (const unsigned char *)in + off[i];
		if ((c = utf8_next(&p)) < 0)
			return SOTP_ERR_BAD_INPUT;
		c = halfwidth(c);
		if (c < '0' || c > '9')
			return SOTP_ERR_BAD_INPUT;
	}
	*pwlen = off[count - n];
	return SOTP_OK;
}

/*
 * Where a cut before the input byte next may fall in out[0..n): if next
 * continues a character whose first bytes were kept raw at the end of
 * out, back to that character's first byte (a UTF-8 character is at most
 * 4 bytes: no further). An escape is plain ASCII and never backed over.
 */
static size_t
whole_utf8(
    const char *out, size_t n, unsigned char next, int (*keep)(unsigned char))
{
	size_t m = n, back = 0;

	if ((next & 0xc0) != 0x80 || !keep(next))
		return n;
	while (
	    m > 0 && back < 3 && ((unsigned char)out[m - 1] & 0xc0) == 0x80) {
		m--;
		back++;
	}
	if (m > 0 && ((unsigned char)out[m - 1] & 0xc0) == 0xc0)
		return m - 1;
	return n; /* not a character's continuation: a stray byte, kept */
}

/*
 * Writes s into out[outsz] fit for one log line: every byte that `keep`
 * refuses as \xHH, cut with "..." once the text has reached outsz - 8
 * bytes (an escape and the mark still fit, with the NUL). The cut falls
 * between whole escapes and whole UTF-8 characters: a character whose
 * bytes were kept as they are is not split by the mark (a reader's
 * terminal or a log collector would show or refuse the broken bytes).
 */
static const char *
log_escape(char *out, size_t outsz, const char *s, int (*keep)(unsigned char))
{
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	size_t i, n = 0;

	if (out == NULL || outsz < 16)
		return "";
	for (i = 0; p[i] != '\0'; i++) {
		if (n >= outsz - 8) {
			n = whole_utf8(out, n, p[i], keep);
			memcpy(out + n, "...", 3);
			n += 3;
			break;
		}
		if (keep(p[i]))
			out[n++] = (char)p[i];
		else
			n += (size_t)snprintf(
			    out + n, outsz - n, "\\x%02x", p[i]);
	}
	out[n] = '\0';
	return out;
}

/* A name's byte: printable ASCII, no blank, no quote, no backslash. */
static int
name_byte(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '"' && c != '\\';
}

/* A message's byte: anything but a control character (C0 and DEL). */
static int
text_byte(unsigned char c)
{
	return c >= ' ' && c != 0x7f;
}

/* A name from outside, escaped for one log line (shinkin_otp.h). */
const char *
sotp_log_name(char out[SOTP_LOG_NAME_MAX], const char *name)
{
	return log_escape(out, SOTP_LOG_NAME_MAX, name, name_byte);
}

/* A longer value from outside, a path (shinkin_otp.h). */
const char *
sotp_log_value(char *out, size_t outsz, const char *value)
{
	return log_escape(out, outsz, value, name_byte);
}

/* A message that may hold values from outside (shinkin_otp.h). */
const char *
sotp_log_text(char *out, size_t outsz, const char *text)
{
	return log_escape(out, outsz, text, text_byte);
}

/*
 * uri.c - otpauth:// key URIs, the format authenticator apps read from a
 * QR code (Google Authenticator's "Key Uri Format"):
 *
 *   otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER
 *       &algorithm=SHA1&digits=6&period=30
 *
 * The parser is strict and bounded because it reads files that an operator
 * was handed by someone else (token imports) and is fuzzed: every field is
 * length-checked before it is copied, percent escapes must be complete,
 * and decoded text may hold no control character.
 */
#include "sotp_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URI_MAX 4096 /* longer input is refused unread */
#define URI_PREFIX "otpauth://"
#define URI_TYPE "totp/"

static const char hexdig[] = "0123456789ABCDEF";

/* RFC 3986 section 2.3: the unreserved characters pass unescaped. */
static int
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~';
}

/* Appends s percent-encoded at *o in buf (sized by the caller). */
static void
put_escaped(char *buf, size_t *o, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (unreserved(*p)) {
			buf[(*o)++] = (char)*p;
		} else {
			buf[(*o)++] = '%';
			buf[(*o)++] = hexdig[*p >> 4];
			buf[(*o)++] = hexdig[*p & 0x0f];
		}
	}
}

static void
put_raw(char *buf, size_t *o, const char *s)
{
	size_t n = strlen(s);

	memcpy(buf + *o, s, n);
	*o += n;
}

/* A string field of a struct: NUL-terminated within its array. */
static int
field_ok(const char *f, size_t size)
{
	return memchr(f, '\0', size) != NULL;
}

/*
 * The secret as apps want it: upper case, no blanks, no padding. Validated
 * by decoding, so a URI is never built around a secret we cannot read.
 */
static int
canonical_secret(const char *in, char *out, size_t outsz, const char **why)
{
	uint8_t raw[sizeof(((struct sotp_uri *)0)->secret)];
	size_t rawlen = 0, o = 0;
	int rc;

	if ((rc = sotp_base32_decode(in, raw, sizeof(raw), &rawlen, why)) !=
	    SOTP_OK)
		goto out;
	if (rawlen == 0) {
		*why = "empty secret";
		rc = SOTP_ERR_BAD_INPUT;
		goto out;
	}
	for (; *in != '\0'; in++) {
		if (*in == ' ' || *in == '=')
			continue;
		if (o + 1 >= outsz) {
			*why = "secret too long";
			rc = SOTP_ERR_BAD_INPUT;
			goto out;
		}
		out[o++] = (*in >= 'a' && *in <= 'z') ? (char)(*in - 32) : *in;
	}
	out[o] = '\0';
	rc = SOTP_OK;
out:
	SOTP_WIPE_ARRAY(raw);
	return rc;
}

int
sotp_uri_build(const struct sotp_uri *u, char **out)
{
	char secret[sizeof(u->secret)];
	char num[32];
	const char *why = NULL;
	const char *alg;
	char *buf = NULL;
	size_t o = 0, isslen, acclen, size;
	int rc = SOTP_ERR_INTERNAL;

	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = NULL;
	if (u == NULL || !field_ok(u->issuer, sizeof(u->issuer)) ||
	    !field_ok(u->account, sizeof(u->account)) ||
	    !field_ok(u->secret, sizeof(u->secret)) || u->account[0] == '\0' ||
	    u->digits < 6 || u->digits > 8)
		return SOTP_ERR_INVALID_ARG;
	/* Without an issuer, a ':' in the account would be read as one. */
	if (u->issuer[0] == '\0' && strchr(u->account, ':') != NULL)
		return SOTP_ERR_INVALID_ARG;
	switch (u->alg) {
	case SOTP_ALG_SHA1:
		alg = "SHA1";
		break;
	case SOTP_ALG_SHA256:
		alg = "SHA256";
		break;
	case SOTP_ALG_SHA512:
		alg = "SHA512";
		break;
	default:
		return SOTP_ERR_INVALID_ARG;
	}
	if ((rc = canonical_secret(u->secret, secret, sizeof(secret), &why)) !=
	    SOTP_OK)
		goto out;
	isslen = strlen(u->issuer);
	acclen = strlen(u->account);
	/* Each escaped byte takes at most 3 characters; fields are bounded. */
	size = sizeof(URI_PREFIX URI_TYPE) + 3 * isslen + 1 + 3 * acclen +
	    sizeof("?secret=") + strlen(secret) + sizeof("&issuer=") +
	    3 * isslen + sizeof("&algorithm=SHA512&digits=&period=") +
	    2 * sizeof(num);
	if ((buf = malloc(size)) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	/* An event-based token's URI carries its next counter instead. */
	put_raw(
	    buf, &o, u->period == 0 ? URI_PREFIX "hotp/" : URI_PREFIX URI_TYPE);
	if (isslen > 0) {
		put_escaped(buf, &o, u->issuer);
		buf[o++] = ':';
	}
	put_escaped(buf, &o, u->account);
	put_raw(buf, &o, "?secret=");
	put_raw(buf, &o, secret);
	if (isslen > 0) {
		put_raw(buf, &o, "&issuer=");
		put_escaped(buf, &o, u->issuer);
	}
	put_raw(buf, &o, "&algorithm=");
	put_raw(buf, &o, alg);
	(void)snprintf(num, sizeof(num), "&digits=%u", u->digits);
	put_raw(buf, &o, num);
	if (u->period == 0)
		(void)snprintf(num, sizeof(num), "&counter=%llu",
		    (unsigned long long)u->counter);
	else
		(void)snprintf(num, sizeof(num), "&period=%u", u->period);
	put_raw(buf, &o, num);
	buf[o] = '\0';
	*out = buf;
	buf = NULL;
	rc = SOTP_OK;
out:
	if (buf != NULL)
		sotp_free_secret(buf, size);
	SOTP_WIPE_ARRAY(secret);
	return rc;
}

/*
 * Percent-decodes p[0..n) into dst[dstsz] with a NUL. Refuses incomplete
 * escapes, control characters (escaped or not, NUL included) and text
 * that does not fit.
 */
static int
pct_decode(const char *p, size_t n, char *dst, size_t dstsz,
    const char *toolong, const char **why)
{
	size_t i, o = 0;
	int hi, lo;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (c == '%') {
			if (n - i < 3 ||
			    (hi = OPENSSL_hexchar2int(
			         (unsigned char)p[i + 1])) < 0 ||
			    (lo = OPENSSL_hexchar2int(
			         (unsigned char)p[i + 2])) < 0) {
				*why = "incomplete percent escape";
				return SOTP_ERR_BAD_INPUT;
			}
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f) {
			*why = "control character in URI";
			return SOTP_ERR_BAD_INPUT;
		}
		if (o + 1 >= dstsz) {
			*why = toolong;
			return SOTP_ERR_BAD_INPUT;
		}
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return SOTP_OK;
}

/*
 * Finds the issuer/account separator in the raw label: a literal ':' or,
 * failing that, an escaped one ("%3A"), as the key URI format allows.
 * Splitting before decoding lets an issuer or account that contains an
 * escaped ':' itself (as sotp_uri_build writes it) come back intact.
 */
static const char *
label_colon(const char *p, size_t n, size_t *seplen)
{
	const char *c;
	size_t i;

	if ((c = memchr(p, ':', n)) != NULL) {
		*seplen = 1;
		return c;
	}
	for (i = 0; i + 3 <= n; i++) {
		if (p[i] == '%' && p[i + 1] == '3' &&
		    (p[i + 2] == 'A' || p[i + 2] == 'a')) {
			*seplen = 3;
			return p + i;
		}
	}
	return NULL;
}

/* Splits the label "ISSUER:ACCOUNT" (or "ACCOUNT") into *u. */
static int
parse_label(const char *p, size_t n, struct sotp_uri *u, const char **why)
{
	char acct[sizeof(u->account) + 16];
	const char *colon, *a;
	size_t seplen = 0;
	int rc;

	if (n == 0) {
		*why = "missing label";
		return SOTP_ERR_BAD_INPUT;
	}
	if ((colon = label_colon(p, n, &seplen)) != NULL) {
		if (colon == p) {
			*why = "empty issuer in label";
			return SOTP_ERR_BAD_INPUT;
		}
		if ((rc = pct_decode(p, (size_t)(colon - p), u->issuer,
		         sizeof(u->issuer), "issuer too long", why)) != SOTP_OK)
			return rc;
		n -= (size_t)(colon - p) + seplen;
		p = colon + seplen;
		if (memchr(p, ':', n) != NULL) {
			*why = "more than one ':' in label";
			return SOTP_ERR_BAD_INPUT;
		}
	}
	/* Room for a few blanks after the colon, which the format allows. */
	if ((rc = pct_decode(p, n, acct, sizeof(acct), "account name too long",
	         why)) != SOTP_OK)
		return rc;
	for (a = acct; *a == ' '; a++)
		;
	if (a[0] == '\0') {
		*why = "empty account name";
		return SOTP_ERR_BAD_INPUT;
	}
	if (sotp_strlcpy(u->account, a, sizeof(u->account)) >=
	    sizeof(u->account)) {
		*why = "account name too long";
		return SOTP_ERR_BAD_INPUT;
	}
	return SOTP_OK;
}

_Static_assert(sizeof(((struct sotp_uri *)0)->issuer) >=
        sizeof(((struct sotp_uri *)0)->secret),
    "parse_param sizes its buffer by the issuer");

enum uri_param {
	P_SECRET = 1 << 0,
	P_ISSUER = 1 << 1,
	P_ALGORITHM = 1 << 2,
	P_DIGITS = 1 << 3,
	P_PERIOD = 1 << 4
};

/* Applies one decoded "key=value" pair; *seen catches duplicates. */
static int
parse_param(const char *key, size_t keylen, const char *val, size_t vallen,
    struct sotp_uri *u, unsigned int *seen, const char **why)
{
	/* The issuer is the longest field; v holds any one value. */
	char v[sizeof(u->issuer)];
	long long num = 0;
	unsigned int bit;
	int rc = SOTP_ERR_BAD_INPUT;

	if (keylen == 6 && memcmp(key, "secret", 6) == 0)
		bit = P_SECRET;
	else if (keylen == 6 && memcmp(key, "issuer", 6) == 0)
		bit = P_ISSUER;
	else if (keylen == 9 && memcmp(key, "algorithm", 9) == 0)
		bit = P_ALGORITHM;
	else if (keylen == 6 && memcmp(key, "digits", 6) == 0)
		bit = P_DIGITS;
	else if (keylen == 6 && memcmp(key, "period", 6) == 0)
		bit = P_PERIOD;
	else {
		*why = "unknown URI parameter";
		return SOTP_ERR_BAD_INPUT;
	}
	if (*seen & bit) {
		*why = "repeated URI parameter";
		return SOTP_ERR_BAD_INPUT;
	}
	*seen |= bit;
	if (vallen == 0) {
		*why = "empty URI parameter value";
		return SOTP_ERR_BAD_INPUT;
	}
	if ((rc = pct_decode(val, vallen, v, sizeof(v), "parameter too long",
	         why)) != SOTP_OK)
		goto out;
	rc = SOTP_ERR_BAD_INPUT;
	switch (bit) {
	case P_SECRET:
		if ((rc = canonical_secret(
		         v, u->secret, sizeof(u->secret), why)) != SOTP_OK)
			rc = SOTP_ERR_BAD_INPUT;
		break;
	case P_ISSUER:
		/* The label's issuer, if any, has been read already. */
		if (u->issuer[0] != '\0' && strcmp(u->issuer, v) != 0)
			*why = "issuer parameter differs from label";
		else if (sotp_strlcpy(u->issuer, v, sizeof(u->issuer)) >=
		    sizeof(u->issuer))
			*why = "issuer too long";
		else
			rc = SOTP_OK;
		break;
	case P_ALGORITHM:
		if (sotp_alg_parse(v, &u->alg) != SOTP_OK)
			*why = "unsupported algorithm";
		else
			rc = SOTP_OK;
		break;
	case P_DIGITS:
		if (sotp_parse_ll_padded(v, 6, 8, &num) != SOTP_OK)
			*why = "digits must be 6, 7 or 8";
		else {
			u->digits = (unsigned int)num;
			rc = SOTP_OK;
		}
		break;
	case P_PERIOD:
		if (sotp_parse_ll_padded(v, 1, 86400, &num) != SOTP_OK)
			*why = "period must be 1..86400 seconds";
		else {
			u->period = (unsigned int)num;
			rc = SOTP_OK;
		}
		break;
	default:
		*why = "unknown URI parameter";
		break;
	}
out:
	SOTP_WIPE_ARRAY(v);
	return rc;
}

static int
parse_query(const char *q, struct sotp_uri *u, const char **why)
{
	unsigned int seen = 0;
	const char *amp, *eq;
	size_t len;
	int rc;

	for (;;) {
		amp = strchr(q, '&');
		len = amp != NULL ? (size_t)(amp - q) : strlen(q);
		if (len == 0) {
			*why = "empty URI parameter";
			return SOTP_ERR_BAD_INPUT;
		}
		if ((eq = memchr(q, '=', len)) == NULL) {
			*why = "URI parameter without '='";
			return SOTP_ERR_BAD_INPUT;
		}
		if ((rc = parse_param(q, (size_t)(eq - q), eq + 1,
		         len - (size_t)(eq - q) - 1, u, &seen, why)) != SOTP_OK)
			return rc;
		if (amp == NULL)
			break;
		q = amp + 1;
	}
	if (!(seen & P_SECRET)) {
		*why = "missing secret";
		return SOTP_ERR_BAD_INPUT;
	}
	return SOTP_OK;
}

int
sotp_uri_parse(const char *s, struct sotp_uri *u, const char **why)
{
	const char *reason = NULL;
	const char *label, *q;
	size_t n;
	int rc = SOTP_ERR_BAD_INPUT;

	if (why != NULL)
		*why = NULL;
	if (u == NULL || s == NULL) {
		reason = "invalid argument";
		rc = SOTP_ERR_INVALID_ARG;
		goto out;
	}
	memset(u, 0, sizeof(*u));
	u->alg = SOTP_ALG_SHA1;
	u->digits = 6;
	u->period = 30;
	if ((n = strnlen(s, URI_MAX + 1)) > URI_MAX) {
		reason = "URI too long";
		goto out;
	}
	/* RFC 3986 section 3.1: schemes are case-insensitive. */
	if (n < sizeof(URI_PREFIX) - 1 ||
	    strncasecmp(s, URI_PREFIX, sizeof(URI_PREFIX) - 1) != 0) {
		reason = "not an otpauth:// URI";
		goto out;
	}
	label = s + sizeof(URI_PREFIX) - 1;
	if (strncasecmp(label, URI_TYPE, sizeof(URI_TYPE) - 1) != 0) {
		reason = "not a TOTP key (otpauth://totp/)";
		goto out;
	}
	label += sizeof(URI_TYPE) - 1;
	if (strchr(label, '#') != NULL) {
		reason = "fragment in URI";
		goto out;
	}
	if ((q = strchr(label, '?')) == NULL) {
		reason = "missing secret";
		goto out;
	}
	if ((rc = parse_label(label, (size_t)(q - label), u, &reason)) !=
	    SOTP_OK)
		goto out;
	if ((rc = parse_query(q + 1, u, &reason)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK && u != NULL) {
		sotp_wipe(u, sizeof(*u));
		if (reason == NULL)
			reason = "malformed URI";
	}
	if (why != NULL)
		*why = rc == SOTP_OK ? NULL : reason;
	return rc;
}

/*
 * base32.c - RFC 4648 section 6 base32, the encoding of TOTP secrets in
 * otpauth URIs and on authenticator app screens.
 *
 * Decoding is lenient only where people are: lower case, spaces between
 * groups, and missing padding. Everything else is refused with a reason,
 * including encodings that are not canonical (RFC 4648 section 3.5), so
 * one secret has exactly one accepted spelling apart from case and blanks.
 */
#include "sotp_int.h"

#include <ctype.h>
#include <string.h>

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int
sotp_base32_encode(const uint8_t *in, size_t len, char *out, size_t outsz)
{
	size_t i, o = 0, need;
	uint32_t acc = 0;
	unsigned int nbits = 0;

	if (out != NULL && outsz > 0)
		out[0] = '\0';
	if (out == NULL || (in == NULL && len > 0))
		return SOTP_ERR_INVALID_ARG;
	/* 8 characters per started 5-byte group, and the NUL. */
	if (len > (SIZE_MAX - 1) / 8 * 5 - 4)
		return SOTP_ERR_BUFFER;
	need = (len + 4) / 5 * 8 + 1;
	if (outsz < need)
		return SOTP_ERR_BUFFER;
	for (i = 0; i < len; i++) {
		acc = (acc << 8) | in[i];
		nbits += 8;
		while (nbits >= 5) {
			nbits -= 5;
			out[o++] = b32_alphabet[(acc >> nbits) & 0x1f];
		}
		acc &= (1U << nbits) - 1;
	}
	if (nbits > 0)
		out[o++] = b32_alphabet[(acc << (5 - nbits)) & 0x1f];
	while (o % 8 != 0)
		out[o++] = '=';
	out[o] = '\0';
	/* The input may be a secret; its bits passed through acc. */
	sotp_wipe(&acc, sizeof(acc));
	return SOTP_OK;
}

static int
b32_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

size_t
sotp_looks_hex(const char *s, const char *skip)
{
	size_t n = 0;

	for (; *s != '\0'; s++) {
		if (strchr(" \t\r\n", *s) != NULL ||
		    (skip != NULL && strchr(skip, *s) != NULL))
			continue;
		if (!isxdigit((unsigned char)*s))
			return 0;
		n++;
	}
	return n >= 32 && n % 2 == 0 ? n : 0;
}

int
sotp_base32_decode(const char *in, uint8_t *out, size_t outsz, size_t *outlen,
    const char **why)
{
	/*
	 * Padding that completes a group of 8 for each count of data
	 * characters in the last group; -1 marks counts that no byte string
	 * encodes to (1, 3 and 6 characters leave whole bytes unfinished).
	 */
	static const int pad_for[8] = {0, -1, 6, -1, 4, 3, -1, 1};
	size_t ndata = 0, npad = 0, o = 0;
	const char *reason = NULL;
	uint32_t acc = 0;
	unsigned int nbits = 0;
	int rc = SOTP_ERR_INTERNAL;
	int v;

	if (why != NULL)
		*why = NULL;
	if (outlen != NULL)
		*outlen = 0;
	if (in == NULL || outlen == NULL || (out == NULL && outsz > 0)) {
		reason = "invalid argument";
		rc = SOTP_ERR_INVALID_ARG;
		goto out;
	}
	/*
	 * A seed in hex holding none of 0, 1, 8 and 9 (one 40-digit seed in
	 * 10^5) is base32 too, and would come in as another key; with them,
	 * "not base32" would not say what to do. Genuine base32 of 32
	 * characters or more made of A-F and 2-7 only: (12/32)^32, 2e-14.
	 * Padding aside: a secret is the same padded or not, and a URI or
	 * list writes it unpadded (uri.c), which must read back.
	 */
	if (sotp_looks_hex(in, "=") > 0) {
		reason = "hex digits only: a seed in hex it seems, which read "
		         "as base32 would be another key";
		rc = SOTP_ERR_BAD_INPUT;
		goto out;
	}
	for (; *in != '\0'; in++) {
		if (*in == ' ')
			continue;
		if (*in == '=') {
			npad++;
			continue;
		}
		if (npad > 0) {
			reason = "data after padding";
			rc = SOTP_ERR_BAD_INPUT;
			goto out;
		}
		if ((v = b32_value(*in)) < 0) {
			reason = "invalid base32 character";
			rc = SOTP_ERR_BAD_INPUT;
			goto out;
		}
		ndata++;
		acc = (acc << 5) | (uint32_t)v;
		nbits += 5;
		if (nbits >= 8) {
			nbits -= 8;
			if (o >= outsz) {
				reason = "decoded secret too long";
				rc = SOTP_ERR_BUFFER;
				goto out;
			}
			out[o++] = (uint8_t)(acc >> nbits);
		}
		acc &= (1U << nbits) - 1;
	}
	if (pad_for[ndata % 8] < 0) {
		reason = "impossible base32 length";
		rc = SOTP_ERR_BAD_INPUT;
		goto out;
	}
	if (npad > 0 && npad != (size_t)pad_for[ndata % 8]) {
		reason = "wrong amount of base32 padding";
		rc = SOTP_ERR_BAD_INPUT;
		goto out;
	}
	if (acc != 0) {
		reason = "non-zero trailing bits";
		rc = SOTP_ERR_BAD_INPUT;
		goto out;
	}
	*outlen = o;
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK && out != NULL)
		sotp_wipe(out, outsz);
	sotp_wipe(&acc, sizeof(acc));
	if (why != NULL)
		*why = reason;
	return rc;
}

/*
 * otp.c - HOTP (RFC 4226) and TOTP (RFC 6238) on OpenSSL's EVP_MAC.
 *
 * Pure functions: a key, a counter or a time, and out comes a code. The
 * engine checks a window of steps under one key, so struct sotp_mac keeps a
 * keyed HMAC context and restarts it with EVP_MAC_init(ctx, NULL, 0, NULL),
 * which in OpenSSL 3 reuses the key schedule instead of re-fetching the
 * digest and re-hashing the key (about half the cost per code; see
 * ../shared/notes/freeradius-and-pam.md section 5).
 */
#include "sotp_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct sotp_mac {
	EVP_MAC *mac;
	EVP_MAC_CTX *ctx;
	int keyed; /* a key is set */
	int fresh; /* keyed and not yet used since: no re-init needed */
	/*
	 * The context's digest is alg's (a setkey with it succeeded): the
	 * next key for the same alg is set without naming the digest again,
	 * which would fetch it again.
	 */
	int has_digest;
	enum sotp_alg alg;
};

static const char *
alg_digest(enum sotp_alg alg)
{
	switch (alg) {
	case SOTP_ALG_SHA1:
		return "SHA1";
	case SOTP_ALG_SHA256:
		return "SHA256";
	case SOTP_ALG_SHA512:
		return "SHA512";
	}
	return NULL;
}

int
sotp_mac_new(struct sotp_mac **out)
{
	struct sotp_mac *m = NULL;
	int rc = SOTP_ERR_INTERNAL;

	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = NULL;
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if ((m->mac = sotp_hmac_fetch()) == NULL ||
	    (m->ctx = EVP_MAC_CTX_new(m->mac)) == NULL) {
		rc = SOTP_ERR_CRYPTO;
		goto out;
	}
	*out = m;
	m = NULL;
	rc = SOTP_OK;
out:
	sotp_mac_free(m);
	return rc;
}

void
sotp_mac_free(struct sotp_mac *m)
{
	if (m == NULL)
		return;
	/* EVP_MAC_CTX_free cleanses the HMAC key schedule it holds. */
	EVP_MAC_CTX_free(m->ctx);
	EVP_MAC_free(m->mac);
	free(m);
}

int
sotp_mac_setkey(
    struct sotp_mac *m, enum sotp_alg alg, const uint8_t *key, size_t keylen)
{
	OSSL_PARAM params[2];
	const char *digest;

	if (m == NULL)
		return SOTP_ERR_INVALID_ARG;
	/* Whatever happens below, the old key must not answer any more. */
	m->keyed = m->fresh = 0;
	if (key == NULL || keylen == 0 || (digest = alg_digest(alg)) == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (m->ctx == NULL && (m->ctx = EVP_MAC_CTX_new(m->mac)) == NULL)
		return SOTP_ERR_CRYPTO;
	/* The param only borrows the name; the cast drops const for the API. */
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_MAC_PARAM_DIGEST, (char *)(uintptr_t)digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(m->ctx, key, keylen,
	        m->has_digest && m->alg == alg ? NULL : params) != 1) {
		m->has_digest = 0;
		return SOTP_ERR_CRYPTO;
	}
	m->has_digest = 1;
	m->alg = alg;
	m->keyed = m->fresh = 1;
	return SOTP_OK;
}

/*
 * Drops the key. A process keeps its MAC context from one decision to the
 * next (radiusd's threads, the PAM module's warm context), and a keyed
 * context holds the HMAC's inner and outer digest states, which answer
 * for the token's secret: left there, the last token's would sit in
 * ordinary heap, and in a core file, until the next decision. Keying the
 * context again with a fixed public byte writes over those states in
 * place; if even that fails, the context is freed (which cleanses it) and
 * the next setkey makes a new one.
 */
void
sotp_mac_forget(struct sotp_mac *m)
{
	static const uint8_t nokey[1];

	if (m == NULL)
		return;
	m->keyed = m->fresh = 0;
	if (m->ctx == NULL || !m->has_digest)
		return;
	if (EVP_MAC_init(m->ctx, nokey, sizeof(nokey), NULL) == 1)
		return;
	EVP_MAC_CTX_free(m->ctx);
	m->ctx = NULL;
	m->has_digest = 0;
}

/*
 * RFC 4226 section 5.3: dynamic truncation of the HMAC value to a 31-bit
 * number, then its low `digits` decimal digits.
 */
static void
truncate_code(const uint8_t *h, size_t hlen, unsigned int digits, char *out)
{
	static const uint32_t pow10[] = {1000000, 10000000, 100000000};
	unsigned int off = h[hlen - 1] & 0x0f;
	uint32_t bin;
	unsigned int i;

	bin = ((uint32_t)(h[off] & 0x7f) << 24) | ((uint32_t)h[off + 1] << 16) |
	    ((uint32_t)h[off + 2] << 8) | (uint32_t)h[off + 3];
	bin %= pow10[digits - 6];
	/* Zero-padded on the left, written from the last digit. */
	for (i = digits; i > 0; i--) {
		out[i - 1] = (char)('0' + bin % 10);
		bin /= 10;
	}
	out[digits] = '\0';
}

int
sotp_mac_hotp(
    struct sotp_mac *m, uint64_t counter, unsigned int digits, char *out)
{
	uint8_t msg[8], h[EVP_MAX_MD_SIZE];
	size_t hlen = 0;
	int rc = SOTP_ERR_INTERNAL;
	int i;

	if (out != NULL)
		out[0] = '\0';
	if (m == NULL || out == NULL || digits < 6 || digits > 8 || !m->keyed)
		return SOTP_ERR_INVALID_ARG;
	/* The counter is hashed as 8 bytes, big-endian (RFC 4226 5.2). */
	for (i = 7; i >= 0; i--) {
		msg[i] = (uint8_t)(counter & 0xff);
		counter >>= 8;
	}
	if (!m->fresh && EVP_MAC_init(m->ctx, NULL, 0, NULL) != 1) {
		rc = SOTP_ERR_CRYPTO;
		goto out;
	}
	m->fresh = 0;
	if (EVP_MAC_update(m->ctx, msg, sizeof(msg)) != 1 ||
	    EVP_MAC_final(m->ctx, h, &hlen, sizeof(h)) != 1 || hlen < 20) {
		rc = SOTP_ERR_CRYPTO;
		goto out;
	}
	truncate_code(h, hlen, digits, out);
	rc = SOTP_OK;
out:
	SOTP_WIPE_ARRAY(h);
	SOTP_WIPE_ARRAY(msg);
	return rc;
}

int
sotp_hotp(enum sotp_alg alg, const uint8_t *key, size_t keylen,
    uint64_t counter, unsigned int digits, char *out)
{
	struct sotp_mac *m = NULL;
	int rc = SOTP_ERR_INTERNAL;

	if (out != NULL)
		out[0] = '\0';
	if (out == NULL || digits < 6 || digits > 8 || key == NULL ||
	    keylen == 0 || alg_digest(alg) == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_mac_new(&m)) != SOTP_OK)
		goto out;
	if ((rc = sotp_mac_setkey(m, alg, key, keylen)) != SOTP_OK)
		goto out;
	if ((rc = sotp_mac_hotp(m, counter, digits, out)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	sotp_mac_free(m);
	return rc;
}

int
sotp_totp(enum sotp_alg alg, const uint8_t *key, size_t keylen, time_t now,
    unsigned int period, unsigned int digits, char *out)
{
	if (out != NULL)
		out[0] = '\0';
	/* RFC 6238 section 4.2: T = floor((now - T0) / X), T0 = 0. */
	if (now < 0 || period < 1)
		return SOTP_ERR_INVALID_ARG;
	return sotp_hotp(alg, key, keylen, (uint64_t)now / period, digits, out);
}

size_t
sotp_code_len(const char *code)
{
	size_t n;

	if (code == NULL)
		return 0;
	/* Bounded: never walks past 9 bytes of a hostile string. */
	for (n = 0; n < 9 && code[n] != '\0'; n++)
		if (code[n] < '0' || code[n] > '9')
			return 0;
	if (n < 6 || n > 8)
		return 0;
	return n;
}

int
sotp_code_equal(const char *a, const char *b)
{
	size_t la, lb;

	if (a == NULL || b == NULL)
		return 0;
	la = strlen(a);
	lb = strlen(b);
	/* The length of a code is not secret: it is the policy's digits. */
	if (la != lb || la == 0)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}

/*
 * rfc6238.h - RFC 6238 Appendix B test values: TOTP, T0 = 0, X = 30,
 * 8 digits. Each algorithm uses the ASCII seed of its own length (20, 32
 * and 64 bytes of "1234567890" repeated), as the RFC's reference code does.
 */
#ifndef SOTP_VECTORS_RFC6238_H
#define SOTP_VECTORS_RFC6238_H

#include <stdint.h>

#include "shinkin_otp.h"

static const char rfc6238_key_sha1[] = "12345678901234567890";
static const char rfc6238_key_sha256[] = "12345678901234567890123456789012";
static const char rfc6238_key_sha512[] =
    "1234567890123456789012345678901234567890123456789012345678901234";

struct rfc6238_vector {
	int64_t time;
	enum sotp_alg alg;
	const char *totp;
};

static const struct rfc6238_vector rfc6238_vectors[] = {
    {59, SOTP_ALG_SHA1, "94287082"},
    {59, SOTP_ALG_SHA256, "46119246"},
    {59, SOTP_ALG_SHA512, "90693936"},
    {1111111109, SOTP_ALG_SHA1, "07081804"},
    {1111111109, SOTP_ALG_SHA256, "68084774"},
    {1111111109, SOTP_ALG_SHA512, "25091201"},
    {1111111111, SOTP_ALG_SHA1, "14050471"},
    {1111111111, SOTP_ALG_SHA256, "67062674"},
    {1111111111, SOTP_ALG_SHA512, "99943326"},
    {1234567890, SOTP_ALG_SHA1, "89005924"},
    {1234567890, SOTP_ALG_SHA256, "91819424"},
    {1234567890, SOTP_ALG_SHA512, "93441116"},
    {2000000000, SOTP_ALG_SHA1, "69279037"},
    {2000000000, SOTP_ALG_SHA256, "90698825"},
    {2000000000, SOTP_ALG_SHA512, "38618901"},
    {20000000000, SOTP_ALG_SHA1, "65353130"},
    {20000000000, SOTP_ALG_SHA256, "77737706"},
    {20000000000, SOTP_ALG_SHA512, "47863826"},
};

/* Six-digit SHA1 codes as `oathtool --totp -d 6 --now @T <hex key>`. */
struct totp6_vector {
	int64_t time;
	const char *totp;
};

static const struct totp6_vector oathtool_sha1_6[] = {
    {59, "287082"},
    {1111111109, "081804"},
    {1700000000, "921300"},
};

#endif /* SOTP_VECTORS_RFC6238_H */

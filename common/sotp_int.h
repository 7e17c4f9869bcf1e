/*
 * sotp_int.h - internal interfaces shared by common/*.c.
 *
 * Outside common/ only tests/unit may include this header.
 */
#ifndef SOTP_INT_H
#define SOTP_INT_H

#include "shinkin_otp.h"

#include <stdbool.h>

/* ---- mem.c ---- */

/* Wipes len bytes at p and frees p (the freezero analog); NULL-safe. */
void sotp_free_secret(void *p, size_t len);
/* strdup that returns NULL on NULL input. */
char *sotp_strdup(const char *s);
/*
 * Wipes an array, never a pointer: the expression fails to compile when
 * `a` is a pointer (as Linux-PAM's pam_overwrite_array does).
 */
#define SOTP_MUST_BE_ARRAY(a) \
	(0 * sizeof(struct { \
		int must_be_array : __builtin_types_compatible_p( \
					__typeof__(a), __typeof__(&(a)[0])) \
		    ? -1 \
		    : 1; \
	}))
#define SOTP_WIPE_ARRAY(a) sotp_wipe((a), sizeof(a) + SOTP_MUST_BE_ARRAY(a))

/* Fills buf with n bytes from the CSPRNG. SOTP_ERR_CRYPTO on failure. */
int sotp_random(void *buf, size_t n);
/* A uniformly random integer in [0, bound); bound > 0. */
int sotp_random_uniform(unsigned int bound, unsigned int *out);

/*
 * Copies src into dst[dstsz] with truncation and NUL; returns the length
 * of src (strlcpy semantics).
 */
size_t sotp_strlcpy(char *dst, const char *src, size_t dstsz);

/*
 * Bounded decimal parse in the spirit of strtonum: the whole string must be
 * a number within [min, max]. Returns SOTP_OK or SOTP_ERR_BAD_INPUT.
 */
int sotp_parse_ll(const char *s, long long min, long long max,
    long long *out);

/* ---- otp.c: a reusable keyed HMAC for checking a window of codes ---- */

struct sotp_mac;
/* Allocates a MAC context (fetches HMAC once). */
int sotp_mac_new(struct sotp_mac **out);
void sotp_mac_free(struct sotp_mac *m);
/* Keys the context; key is secret and is not retained after the call. */
int sotp_mac_setkey(struct sotp_mac *m, enum sotp_alg alg,
    const uint8_t *key, size_t keylen);
/* HOTP of counter under the current key; out[digits + 1]. */
int sotp_mac_hotp(struct sotp_mac *m, uint64_t counter, unsigned int digits,
    char *out);
/* Checks that code is 6..8 ASCII digits; returns its length or 0. */
size_t sotp_code_len(const char *code);

/* ---- seal.c: AES-256-GCM under the master key ---- */

#define SOTP_KEY_LEN 32
#define SOTP_SEAL_NONCE 12
#define SOTP_SEAL_TAG 16
/* Sealed layout: version byte (1) | nonce (12) | ciphertext | tag (16). */
#define SOTP_SEAL_OVERHEAD (1 + SOTP_SEAL_NONCE + SOTP_SEAL_TAG)

/*
 * Encrypts pt under key with aad bound in (e.g. the serial, so a sealed
 * secret cannot be moved to another token). out[outsz] receives
 * ptlen + SOTP_SEAL_OVERHEAD bytes.
 */
int sotp_seal(const uint8_t *key, const void *aad, size_t aadlen,
    const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outsz,
    size_t *outlen);
/*
 * Decrypts and authenticates; SOTP_ERR_DECRYPT on a wrong key, a wrong aad
 * or any tampering. out (secret) must hold inlen - SOTP_SEAL_OVERHEAD.
 */
int sotp_unseal(const uint8_t *key, const void *aad, size_t aadlen,
    const uint8_t *in, size_t inlen, uint8_t *out, size_t outsz,
    size_t *outlen);
/*
 * Loads the 32-byte master key from path: O_NOFOLLOW, a regular file of
 * exactly 32 bytes (or 64 hex characters and a newline), owned by root or
 * by the effective user, no group or other permission bits. Failures are
 * SOTP_ERR_KEY with the reason written to err[errsz].
 */
int sotp_key_load(const char *path, uint8_t *key, char *err, size_t errsz);
/*
 * Creates a new random key file at path (mode 0600, O_EXCL). Returns
 * SOTP_ERR_EXISTS if a file is there already (never overwrites).
 */
int sotp_key_create(const char *path, char *err, size_t errsz);
/* Derives a 32-byte subkey for `label` (HKDF-SHA256) from the master key. */
int sotp_kdf(const uint8_t *master, const char *label, uint8_t *out);
/* HMAC-SHA256 of data under a 32-byte key; out[32]. */
int sotp_hmac_sha256(const uint8_t *key, const void *data, size_t len,
    uint8_t *out);

#endif /* SOTP_INT_H */

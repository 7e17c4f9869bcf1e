/*
 * passwd.c - contract passwords as crypt(3) hashes (libxcrypt).
 *
 * New hashes use yescrypt, libxcrypt's recommended default; any hash that
 * libxcrypt can verify (sha512crypt, bcrypt, ...) is accepted, so
 * passwords migrated from an older system keep working.
 */
#include "sotp_int.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

int
sotp_passwd_hash(const char *password, char *out)
{
	struct crypt_data *cd = NULL;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	const char *h;
	int rc = SOTP_ERR_CRYPTO;

	if (password == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	out[0] = '\0';
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return SOTP_ERR_NOMEM;
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL)
		goto out;
	h = crypt_rn(password, salt, cd, (int)sizeof(*cd));
	if (h == NULL || h[0] == '*')
		goto out;
	if (sotp_strlcpy(out, h, SOTP_HASH_MAX) >= SOTP_HASH_MAX) {
		out[0] = '\0';
		goto out;
	}
	rc = SOTP_OK;
out:
	sotp_free_secret(cd, sizeof(*cd));
	return rc;
}

int
sotp_passwd_check(const char *password, const char *hash, int *ok)
{
	struct crypt_data *cd = NULL;
	const char *h;
	size_t n;

	if (password == NULL || hash == NULL || ok == NULL)
		return SOTP_ERR_INVALID_ARG;
	*ok = 0;
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return SOTP_ERR_NOMEM;
	/* crypt_rn returns NULL or a "*" string for an unusable setting. */
	h = crypt_rn(password, hash, cd, (int)sizeof(*cd));
	n = strlen(hash);
	if (h != NULL && h[0] != '*' && strlen(h) == n)
		*ok = CRYPTO_memcmp(h, hash, n) == 0;
	sotp_free_secret(cd, sizeof(*cd));
	return SOTP_OK;
}

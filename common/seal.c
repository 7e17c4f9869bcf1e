/*
 * seal.c - secrets at rest: AES-256-GCM under a data-encryption key, the
 * secret files (the master key, a PKCS#11 PIN), and the two derived-key
 * primitives (HKDF, HMAC).
 *
 * Sealed layouts, told apart by their first byte:
 *   1 | nonce (12) | ciphertext | tag (16)
 *	sealed directly under the master key file: key version 0, what
 *	every value was before keys had versions (keys.c);
 *   2 | key version (4, big-endian) | nonce (12) | ciphertext | tag (16)
 *	sealed under data-encryption key version >= 1.
 * The header (the layout byte, and the key version) is authenticated as
 * the first AAD bytes, followed by the caller's aad (the token serial or
 * contract ID), so a sealed blob can be neither relabelled, nor moved to
 * another row, nor made to name another key version.
 */
#include "sotp_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#define SEAL_LEGACY 1 /* key version 0: no version in the header */
#define SEAL_VERSIONED 2

/*
 * The algorithms every decision uses, fetched once per process: a fetch
 * looks the name up in OpenSSL's method store under its lock, which costs
 * more than the AES or the HMAC of a few bytes it serves. They hold no
 * secret (the keys go into the contexts made from them, per use). A
 * process-wide fetch that failed leaves NULL, and each use then fetches
 * for itself, as before: it works if the provider came later, and fails
 * closed if there is none.
 */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_MAC *algs_hmac;
static EVP_CIPHER *algs_gcm;

static void
algs_fetch(void)
{
	algs_hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
	algs_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

EVP_MAC *
sotp_hmac_fetch(void)
{
	if (pthread_once(&algs_once, algs_fetch) == 0 && algs_hmac != NULL &&
	    EVP_MAC_up_ref(algs_hmac) == 1)
		return algs_hmac;
	return EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
}

static EVP_CIPHER *
gcm_fetch(void)
{
	if (pthread_once(&algs_once, algs_fetch) == 0 && algs_gcm != NULL &&
	    EVP_CIPHER_up_ref(algs_gcm) == 1)
		return algs_gcm;
	return EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

/*
 * Runs AES-256-GCM one way or the other. For decryption the tag is read
 * from `tag` and checked by the final call; for encryption it is written
 * there. Both directions authenticate the header (hdrlen bytes), then aad.
 */
static int
gcm(int enc, const uint8_t *key, const uint8_t *nonce, const uint8_t *hdr,
    size_t hdrlen, const void *aad, size_t aadlen, const uint8_t *in,
    size_t inlen, uint8_t *out, uint8_t *tag)
{
	EVP_CIPHER *cipher = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	int len = 0, rc = SOTP_ERR_CRYPTO;

	if (inlen > INT_MAX || aadlen > INT_MAX)
		return SOTP_ERR_INVALID_ARG;
	if ((cipher = gcm_fetch()) == NULL ||
	    (ctx = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	if (EVP_CipherInit_ex(ctx, cipher, NULL, key, nonce, enc) != 1)
		goto out;
	if (EVP_CipherUpdate(ctx, NULL, &len, hdr, (int)hdrlen) != 1)
		goto out;
	if (aadlen > 0 &&
	    EVP_CipherUpdate(ctx, NULL, &len, aad, (int)aadlen) != 1)
		goto out;
	if (inlen > 0 && EVP_CipherUpdate(ctx, out, &len, in, (int)inlen) != 1)
		goto out;
	if (!enc &&
	    EVP_CIPHER_CTX_ctrl(
	        ctx, EVP_CTRL_GCM_SET_TAG, SOTP_SEAL_TAG, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(ctx, out + inlen, &len) != 1) {
		/* In decryption this is the tag check failing. */
		rc = enc ? SOTP_ERR_CRYPTO : SOTP_ERR_DECRYPT;
		goto out;
	}
	if (enc &&
	    EVP_CIPHER_CTX_ctrl(
	        ctx, EVP_CTRL_GCM_GET_TAG, SOTP_SEAL_TAG, tag) != 1)
		goto out;
	rc = SOTP_OK;
out:
	EVP_CIPHER_CTX_free(ctx);
	EVP_CIPHER_free(cipher);
	return rc;
}

/* The header of a blob sealed under key version kv; its length. */
static size_t
seal_header(uint32_t kv, uint8_t *hdr)
{
	if (kv == 0) {
		hdr[0] = SEAL_LEGACY;
		return 1;
	}
	hdr[0] = SEAL_VERSIONED;
	hdr[1] = (uint8_t)(kv >> 24);
	hdr[2] = (uint8_t)(kv >> 16);
	hdr[3] = (uint8_t)(kv >> 8);
	hdr[4] = (uint8_t)kv;
	return SOTP_SEAL_HDR_V;
}

int
sotp_sealed_kv(const uint8_t *in, size_t inlen, uint32_t *kv)
{
	*kv = 0;
	if (in == NULL || inlen < SOTP_SEAL_OVERHEAD)
		return SOTP_ERR_DECRYPT;
	if (in[0] == SEAL_LEGACY)
		return SOTP_OK;
	if (in[0] != SEAL_VERSIONED || inlen < SOTP_SEAL_OVERHEAD_V)
		return SOTP_ERR_DECRYPT;
	*kv = (uint32_t)in[1] << 24 | (uint32_t)in[2] << 16 |
	    (uint32_t)in[3] << 8 | in[4];
	/* Version 0 has a layout of its own: a 2 naming it is forged. */
	return *kv != 0 ? SOTP_OK : SOTP_ERR_DECRYPT;
}

int
sotp_seal(const uint8_t *key, const void *aad, size_t aadlen, const uint8_t *pt,
    size_t ptlen, uint8_t *out, size_t outsz, size_t *outlen)
{
	return sotp_seal_kv(key, 0, aad, aadlen, pt, ptlen, out, outsz, outlen);
}

int
sotp_seal_kv(const uint8_t *key, uint32_t kv, const void *aad, size_t aadlen,
    const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outsz, size_t *outlen)
{
	uint8_t hdr[SOTP_SEAL_HDR_V];
	size_t hl;
	int rc = SOTP_ERR_INTERNAL;

	if (outlen != NULL)
		*outlen = 0;
	if (key == NULL || out == NULL || outlen == NULL ||
	    (aad == NULL && aadlen > 0) || (pt == NULL && ptlen > 0))
		return SOTP_ERR_INVALID_ARG;
	hl = seal_header(kv, hdr);
	if (ptlen > SIZE_MAX - SOTP_SEAL_OVERHEAD_V ||
	    outsz < ptlen + hl + SOTP_SEAL_NONCE + SOTP_SEAL_TAG)
		return SOTP_ERR_BUFFER;
	memcpy(out, hdr, hl);
	/* A random 96-bit nonce per seal; a key seals few enough blobs. */
	if ((rc = sotp_random(out + hl, SOTP_SEAL_NONCE)) != SOTP_OK)
		goto out;
	if ((rc = gcm(1, key, out + hl, hdr, hl, aad, aadlen, pt, ptlen,
	         out + hl + SOTP_SEAL_NONCE,
	         out + hl + SOTP_SEAL_NONCE + ptlen)) != SOTP_OK)
		goto out;
	*outlen = hl + SOTP_SEAL_NONCE + ptlen + SOTP_SEAL_TAG;
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK)
		sotp_wipe(out, outsz);
	return rc;
}

int
sotp_unseal(const uint8_t *key, const void *aad, size_t aadlen,
    const uint8_t *in, size_t inlen, uint8_t *out, size_t outsz, size_t *outlen)
{
	uint8_t tag[SOTP_SEAL_TAG];
	uint32_t kv = 0;
	size_t ctlen, hl;
	int rc = SOTP_ERR_INTERNAL;

	if (outlen != NULL)
		*outlen = 0;
	if (key == NULL || outlen == NULL || (in == NULL && inlen > 0) ||
	    (aad == NULL && aadlen > 0) || (out == NULL && outsz > 0))
		return SOTP_ERR_INVALID_ARG;
	/* Truncated or of an unknown layout: not ours to read. */
	if ((rc = sotp_sealed_kv(in, inlen, &kv)) != SOTP_OK)
		goto out;
	hl = kv == 0 ? 1 : SOTP_SEAL_HDR_V;
	ctlen = inlen - hl - SOTP_SEAL_NONCE - SOTP_SEAL_TAG;
	if (outsz < ctlen) {
		rc = SOTP_ERR_BUFFER;
		goto out;
	}
	/* EVP wants a writable tag buffer; the input stays const. */
	memcpy(tag, in + hl + SOTP_SEAL_NONCE + ctlen, sizeof(tag));
	if ((rc = gcm(0, key, in + hl, in, hl, aad, aadlen,
	         in + hl + SOTP_SEAL_NONCE, ctlen, out, tag)) != SOTP_OK)
		goto out;
	*outlen = ctlen;
	rc = SOTP_OK;
out:
	/* Unauthenticated plaintext must never be used: wipe it. */
	if (rc != SOTP_OK && out != NULL)
		sotp_wipe(out, outsz);
	return rc;
}

/* Reads exactly n bytes (retrying short reads); 0 or -1 with errno. */
static int
read_full(int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;
	ssize_t r;

	while (got < n) {
		r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		got += (size_t)r;
	}
	return 0;
}

/*
 * The gid of SOTP_KEY_GROUP on this host, or (gid_t)-1 when it has none
 * (or the lookup fails: then no key is shared, which is the safe side).
 */
static gid_t
key_group(void)
{
	struct group gr, *res = NULL;
	char *buf = NULL, *nb;
	size_t sz = 1024;
	gid_t gid = (gid_t)-1;
	int r;

	for (;;) {
		if ((nb = realloc(buf, sz)) == NULL)
			break;
		buf = nb;
		r = getgrnam_r(SOTP_KEY_GROUP, &gr, buf, sz, &res);
		if (r == ERANGE && sz < 1024 * 1024) {
			sz *= 2;
			continue;
		}
		if (r == 0 && res != NULL)
			gid = gr.gr_gid;
		break;
	}
	free(buf);
	return gid;
}

int
sotp_key_load(const char *path, uint8_t *key, char *err, size_t errsz)
{
	return sotp_key_load_shared(
	    path, SOTP_KEY_SHARED_LOOKUP, key, err, errsz);
}

/*
 * Opens a secret file (the master key, a PKCS#11 PIN) the one way every
 * loader does: O_NOFOLLOW, a regular file, owned by root or the effective
 * user, no group or other permission bits except the one shared case.
 * missing is the hint after "no such file". *fd is open on SOTP_OK.
 */
static int
secret_open(const char *path, gid_t shared, const char *missing, int *fd,
    struct stat *st, char *err, size_t errsz)
{
	*fd = -1;
	/*
	 * O_NOFOLLOW: a symlink could point the daemon at a file that some
	 * other user controls. O_NONBLOCK: a FIFO planted at the path must not
	 * hang the open; it is refused by the S_ISREG check below.
	 */
	*fd = open(
	    path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (*fd < 0) {
		if (errno == ELOOP)
			sotp_errf(err, errsz,
			    "%s: is a symbolic link; refusing to follow it",
			    path);
		else if (errno == ENOENT)
			sotp_errf(
			    err, errsz, "%s: no such file (%s)", path, missing);
		else
			sotp_errf(err, errsz, "%s: %s", path, strerror(errno));
		return SOTP_ERR_KEY;
	}
	if (fstat(*fd, st) != 0) {
		sotp_errf(err, errsz, "%s: %s", path, strerror(errno));
		return SOTP_ERR_KEY;
	}
	if (!S_ISREG(st->st_mode)) {
		sotp_errf(err, errsz, "%s: not a regular file", path);
		return SOTP_ERR_KEY;
	}
	/*
	 * As sshkey_perm_ok(): the key is the owner's alone, and the owner is
	 * root or the user reading it, for root as for anyone else. A key
	 * another user owns is that user's to replace or chmod, whoever reads
	 * it; root and radiusd's user share root's key through the group
	 * below, never through a key the service user owns.
	 */
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		sotp_errf(err, errsz,
		    "%s: owned by uid %lu, neither root nor this process's user "
		    "(uid %lu): refused; chown root it",
		    path, (unsigned long)st->st_uid, (unsigned long)geteuid());
		return SOTP_ERR_KEY;
	}
	/*
	 * The one shared case: root's key, readable (only) by the members of
	 * SOTP_KEY_GROUP, so root (PAM in sshd) and a service user in that
	 * group (radiusd as freerad) read one key file. The group is looked
	 * up only for a file that has exactly this shape.
	 */
	if ((st->st_mode & 077) == 040 && st->st_uid == 0) {
		if (shared == SOTP_KEY_SHARED_LOOKUP)
			shared = key_group();
		if (shared == (gid_t)-1 || st->st_gid != shared) {
			sotp_errf(err, errsz,
			    "%s: readable by group %lu (mode 0640); only group " SOTP_KEY_GROUP
			    " may share root's key: chmod 600 "
			    "or chgrp " SOTP_KEY_GROUP " it",
			    path, (unsigned long)st->st_gid);
			return SOTP_ERR_KEY;
		}
	} else if ((st->st_mode & 077) != 0) {
		sotp_errf(err, errsz,
		    "%s: %s by group or others (mode 0%03o); chmod 600 it",
		    path, (st->st_mode & 044) != 0 ? "readable" : "accessible",
		    (unsigned int)(st->st_mode & 07777));
		return SOTP_ERR_KEY;
	}
	return SOTP_OK;
}

int
sotp_key_load_shared(
    const char *path, gid_t shared, uint8_t *key, char *err, size_t errsz)
{
	/* 64 hex characters, a newline, and one byte to see a longer file. */
	uint8_t buf[2 * SOTP_KEY_LEN + 2];
	struct stat st;
	size_t n, i;
	int fd = -1, rc = SOTP_ERR_KEY;
	int hi, lo;

	sotp_errf(err, errsz, "%s", "");
	if (path == NULL || key == NULL) {
		sotp_errf(err, errsz, "master key: no path given");
		return SOTP_ERR_INVALID_ARG;
	}
	if ((rc = secret_open(path, shared, "create it with shinkin-otp init",
	         &fd, &st, err, errsz)) != SOTP_OK)
		goto out;
	rc = SOTP_ERR_KEY;
	if (st.st_size != SOTP_KEY_LEN && st.st_size != 2 * SOTP_KEY_LEN &&
	    st.st_size != 2 * SOTP_KEY_LEN + 1) {
		sotp_errf(err, errsz,
		    "%s: wrong size (%lld bytes); want %d raw bytes or %d hex "
		    "characters",
		    path, (long long)st.st_size, SOTP_KEY_LEN,
		    2 * SOTP_KEY_LEN);
		goto out;
	}
	n = (size_t)st.st_size;
	if (read_full(fd, buf, n) != 0) {
		sotp_errf(err, errsz, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (n == SOTP_KEY_LEN) {
		memcpy(key, buf, SOTP_KEY_LEN);
	} else {
		if (n == 2 * SOTP_KEY_LEN + 1 && buf[n - 1] != '\n') {
			sotp_errf(err, errsz, "%s: not a hex key", path);
			goto out;
		}
		for (i = 0; i < SOTP_KEY_LEN; i++) {
			if ((hi = OPENSSL_hexchar2int(buf[2 * i])) < 0 ||
			    (lo = OPENSSL_hexchar2int(buf[2 * i + 1])) < 0) {
				sotp_errf(
				    err, errsz, "%s: not a hex key", path);
				goto out;
			}
			key[i] = (uint8_t)(hi << 4 | lo);
		}
	}
	rc = SOTP_OK;
out:
	if (fd >= 0)
		(void)close(fd);
	SOTP_WIPE_ARRAY(buf);
	if (rc != SOTP_OK)
		sotp_wipe(key, key != NULL ? SOTP_KEY_LEN : 0);
	return rc;
}

int
sotp_secret_read(
    const char *path, char *out, size_t outsz, char *err, size_t errsz)
{
	struct stat st;
	size_t n;
	int fd = -1, rc = SOTP_ERR_KEY;

	sotp_errf(err, errsz, "%s", "");
	if (path == NULL || out == NULL || outsz < 2)
		return SOTP_ERR_INVALID_ARG;
	out[0] = '\0';
	if ((rc = secret_open(path, SOTP_KEY_SHARED_LOOKUP,
	         "write the PIN to it, mode 0600", &fd, &st, err, errsz)) !=
	    SOTP_OK)
		goto out;
	rc = SOTP_ERR_KEY;
	/* One line; a trailing newline is not part of it. */
	if (st.st_size <= 0 || (size_t)st.st_size >= outsz) {
		sotp_errf(err, errsz, "%s: %lld bytes; want 1 to %zu", path,
		    (long long)st.st_size, outsz - 1);
		goto out;
	}
	n = (size_t)st.st_size;
	if (read_full(fd, (uint8_t *)out, n) != 0) {
		sotp_errf(err, errsz, "%s: %s", path, strerror(errno));
		goto out;
	}
	out[n] = '\0';
	if (out[n - 1] == '\n')
		out[--n] = '\0';
	if (n == 0 || memchr(out, '\n', n) != NULL ||
	    memchr(out, '\0', n) != NULL) {
		sotp_errf(err, errsz, "%s: not one line", path);
		goto out;
	}
	rc = SOTP_OK;
out:
	if (fd >= 0)
		(void)close(fd);
	if (rc != SOTP_OK)
		sotp_wipe(out, outsz);
	return rc;
}

int
sotp_key_create(const char *path, char *err, size_t errsz)
{
	uint8_t key[SOTP_KEY_LEN];
	size_t off = 0;
	ssize_t w;
	int fd = -1, rc = SOTP_ERR_INTERNAL, saved = 0;

	sotp_errf(err, errsz, "%s", "");
	if (path == NULL) {
		sotp_errf(err, errsz, "master key: no path given");
		return SOTP_ERR_INVALID_ARG;
	}
	if ((rc = sotp_random(key, sizeof(key))) != SOTP_OK) {
		sotp_errf(err, errsz, "%s: no random bytes for a key", path);
		goto out;
	}
	/*
	 * O_EXCL: an existing key is never overwritten (the store's sealed
	 * secrets depend on it), and with O_NOFOLLOW a planted symlink is
	 * refused, dangling or not. Mode 0600 is already the most the umask
	 * can leave, so the process-wide umask is not touched (radiusd is
	 * threaded).
	 */
	fd = open(
	    path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST) {
			sotp_errf(
			    err, errsz, "%s: exists; not overwriting it", path);
			rc = SOTP_ERR_EXISTS;
		} else {
			sotp_errf(err, errsz, "%s: %s", path, strerror(errno));
			rc = SOTP_ERR_SYSTEM;
		}
		goto out;
	}
	while (off < sizeof(key)) {
		w = write(fd, key + off, sizeof(key) - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			saved = w < 0 ? errno : EIO;
			goto io_error;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0) {
		saved = errno;
		goto io_error;
	}
	w = close(fd);
	fd = -1;
	if (w != 0) {
		saved = errno;
		goto io_error;
	}
	rc = SOTP_OK;
	goto out;
io_error:
	/* A partial key must not stay behind to be loaded later. */
	sotp_errf(err, errsz, "%s: %s", path, strerror(saved));
	if (fd >= 0)
		(void)close(fd);
	fd = -1;
	(void)unlink(path);
	errno = saved;
	rc = SOTP_ERR_SYSTEM;
out:
	if (fd >= 0)
		(void)close(fd);
	SOTP_WIPE_ARRAY(key);
	return rc;
}

int
sotp_kdf(const uint8_t *master, const char *label, uint8_t *out)
{
	EVP_KDF *kdf = NULL;
	EVP_KDF_CTX *ctx = NULL;
	OSSL_PARAM params[4];
	int rc = SOTP_ERR_CRYPTO;

	if (master == NULL || label == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	/* RFC 5869 with no salt: the master key is already uniform. */
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_KDF_PARAM_DIGEST, (char *)(uintptr_t) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)master, SOTP_KEY_LEN);
	params[2] = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)label, strlen(label));
	params[3] = OSSL_PARAM_construct_end();
	if ((kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_HKDF, NULL)) == NULL ||
	    (ctx = EVP_KDF_CTX_new(kdf)) == NULL)
		goto out;
	if (EVP_KDF_derive(ctx, out, SOTP_KEY_LEN, params) != 1)
		goto out;
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK)
		sotp_wipe(out, SOTP_KEY_LEN);
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return rc;
}

int
sotp_hmac_sha256(const uint8_t *key, const void *data, size_t len, uint8_t *out)
{
	EVP_MAC *mac = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	size_t outlen = 0;
	int rc = SOTP_ERR_CRYPTO;

	if (key == NULL || out == NULL || (data == NULL && len > 0))
		return SOTP_ERR_INVALID_ARG;
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_MAC_PARAM_DIGEST, (char *)(uintptr_t) "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((mac = sotp_hmac_fetch()) == NULL ||
	    (ctx = EVP_MAC_CTX_new(mac)) == NULL)
		goto out;
	if (EVP_MAC_init(ctx, key, SOTP_KEY_LEN, params) != 1 ||
	    (len > 0 && EVP_MAC_update(ctx, data, len) != 1) ||
	    EVP_MAC_final(ctx, out, &outlen, 32) != 1 || outlen != 32)
		goto out;
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK)
		sotp_wipe(out, 32);
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return rc;
}

/*
 * test_seal.c - AES-256-GCM sealing refuses every kind of tampering; the
 * master key file is refused unless it is private, regular and well
 * formed; a key is never overwritten; HKDF and HMAC match references.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sotp_int.h"

struct tdir {
	char dir[64];
	char path[128];
};

static int
setup_dir(void **state)
{
	struct tdir *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "/tmp/sotp-seal-XXXXXX");
	if (mkdtemp(t->dir) == NULL) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int
teardown_dir(void **state)
{
	struct tdir *t = *state;
	struct dirent *de;
	char p[512];
	DIR *d;

	if ((d = opendir(t->dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", t->dir, de->d_name);
			if (unlink(p) != 0)
				(void)rmdir(p);
		}
		closedir(d);
	}
	(void)rmdir(t->dir);
	free(t);
	return 0;
}

static const char *
tpath(struct tdir *t, const char *name)
{
	snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, name);
	return t->path;
}

static void
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static void
test_seal_round_trip(void **state)
{
	uint8_t key[SOTP_KEY_LEN], pt[100], ct[100 + SOTP_SEAL_OVERHEAD],
	    ct2[100 + SOTP_SEAL_OVERHEAD], back[100];
	size_t len, ctlen, n;

	(void)state;
	assert_int_equal(sotp_random(key, sizeof(key)), SOTP_OK);
	assert_int_equal(sotp_random(pt, sizeof(pt)), SOTP_OK);
	for (len = 0; len <= sizeof(pt); len += 7) {
		assert_int_equal(
		    sotp_seal(key, "TK-1", 4, pt, len, ct, sizeof(ct), &ctlen),
		    SOTP_OK);
		assert_int_equal(ctlen, len + SOTP_SEAL_OVERHEAD);
		assert_int_equal(ct[0], 1);
		assert_int_equal(sotp_unseal(key, "TK-1", 4, ct, ctlen, back,
		                     sizeof(back), &n),
		    SOTP_OK);
		assert_int_equal(n, len);
		assert_memory_equal(back, pt, len);
	}
	/* A fresh nonce each time: equal inputs, different blobs. */
	assert_int_equal(
	    sotp_seal(key, "TK-1", 4, pt, 20, ct, sizeof(ct), &ctlen), SOTP_OK);
	assert_int_equal(
	    sotp_seal(key, "TK-1", 4, pt, 20, ct2, sizeof(ct2), &n), SOTP_OK);
	assert_memory_not_equal(ct, ct2, ctlen);
	/* No aad at all also works, and then demands none. */
	assert_int_equal(
	    sotp_seal(key, NULL, 0, pt, 20, ct, sizeof(ct), &ctlen), SOTP_OK);
	assert_int_equal(
	    sotp_unseal(key, NULL, 0, ct, ctlen, back, sizeof(back), &n),
	    SOTP_OK);
	assert_int_equal(
	    sotp_unseal(key, "x", 1, ct, ctlen, back, sizeof(back), &n),
	    SOTP_ERR_DECRYPT);
}

static void
test_seal_tampering_refused(void **state)
{
	uint8_t key[SOTP_KEY_LEN], key2[SOTP_KEY_LEN], pt[20];
	uint8_t ct[20 + SOTP_SEAL_OVERHEAD], bad[20 + SOTP_SEAL_OVERHEAD];
	uint8_t back[20];
	size_t ctlen, n, i;
	unsigned int bit;

	(void)state;
	assert_int_equal(sotp_random(key, sizeof(key)), SOTP_OK);
	memcpy(key2, key, sizeof(key2));
	key2[31] ^= 1;
	memcpy(pt, "12345678901234567890", 20);
	assert_int_equal(
	    sotp_seal(key, "TK-0001", 7, pt, 20, ct, sizeof(ct), &ctlen),
	    SOTP_OK);

	/* The wrong key, and a blob moved to another serial. */
	assert_int_equal(
	    sotp_unseal(key2, "TK-0001", 7, ct, ctlen, back, sizeof(back), &n),
	    SOTP_ERR_DECRYPT);
	assert_int_equal(n, 0);
	assert_int_equal(
	    sotp_unseal(key, "TK-0002", 7, ct, ctlen, back, sizeof(back), &n),
	    SOTP_ERR_DECRYPT);
	assert_int_equal(
	    sotp_unseal(key, "TK-000", 6, ct, ctlen, back, sizeof(back), &n),
	    SOTP_ERR_DECRYPT);

	/* Every bit of every region: version, nonce, ciphertext, tag. */
	for (i = 0; i < ctlen; i++) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(bad, ct, ctlen);
			bad[i] ^= (uint8_t)(1U << bit);
			memset(back, 0xaa, sizeof(back));
			assert_int_equal(sotp_unseal(key, "TK-0001", 7, bad,
			                     ctlen, back, sizeof(back), &n),
			    SOTP_ERR_DECRYPT);
			/* No unauthenticated plaintext is left behind. */
			for (n = 0; n < sizeof(back); n++)
				assert_int_equal(back[n], 0);
		}
	}
	/* Every truncation, including to nothing. */
	for (i = 0; i < ctlen; i++)
		assert_int_equal(sotp_unseal(key, "TK-0001", 7, ct, i, back,
		                     sizeof(back), &n),
		    SOTP_ERR_DECRYPT);
	/* Still intact after all that. */
	assert_int_equal(
	    sotp_unseal(key, "TK-0001", 7, ct, ctlen, back, sizeof(back), &n),
	    SOTP_OK);
	assert_memory_equal(back, pt, 20);
}

static void
test_seal_buffers_and_args(void **state)
{
	uint8_t key[SOTP_KEY_LEN] = {0}, ct[10 + SOTP_SEAL_OVERHEAD], back[10];
	size_t n;

	(void)state;
	assert_int_equal(sotp_seal(key, "a", 1, (const uint8_t *)"0123456789",
	                     10, ct, sizeof(ct) - 1, &n),
	    SOTP_ERR_BUFFER);
	assert_int_equal(sotp_seal(key, "a", 1, (const uint8_t *)"0123456789",
	                     10, ct, sizeof(ct), &n),
	    SOTP_OK);
	assert_int_equal(
	    sotp_unseal(key, "a", 1, ct, n, back, 9, &n), SOTP_ERR_BUFFER);
	assert_int_equal(sotp_seal(NULL, "a", 1, (const uint8_t *)"x", 1, ct,
	                     sizeof(ct), &n),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_seal(key, NULL, 1, (const uint8_t *)"x", 1, ct,
	                     sizeof(ct), &n),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_unseal(key, "a", 1, NULL, 5, back, sizeof(back), &n),
	    SOTP_ERR_INVALID_ARG);
}

static void
test_seal_key_create_and_load(void **state)
{
	struct tdir *t = *state;
	uint8_t key[SOTP_KEY_LEN], again[SOTP_KEY_LEN], raw[SOTP_KEY_LEN];
	char err[256], target[128];
	struct stat st;
	int fd;

	err[0] = 'x';
	assert_int_equal(
	    sotp_key_create(tpath(t, "master.key"), err, sizeof(err)), SOTP_OK);
	assert_int_equal(stat(t->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, SOTP_KEY_LEN);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_OK);
	assert_string_equal(err, "");
	fd = open(t->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, raw, sizeof(raw)), (ssize_t)sizeof(raw));
	close(fd);
	assert_memory_equal(key, raw, sizeof(raw));

	/* Never overwritten. */
	assert_int_equal(
	    sotp_key_create(t->path, err, sizeof(err)), SOTP_ERR_EXISTS);
	assert_non_null(strstr(err, t->path));
	assert_int_equal(
	    sotp_key_load(t->path, again, err, sizeof(err)), SOTP_OK);
	assert_memory_equal(key, again, sizeof(key));

	/* Nor created through a symlink, dangling or not. */
	snprintf(target, sizeof(target), "%s", tpath(t, "elsewhere"));
	assert_int_equal(symlink(target, tpath(t, "link.key")), 0);
	assert_int_equal(
	    sotp_key_create(t->path, err, sizeof(err)), SOTP_ERR_EXISTS);
	assert_int_equal(access(target, F_OK), -1);
	/* And a symlink to an existing file is not written through. */
	assert_int_equal(unlink(t->path), 0);
	write_file(target, "x", 1, 0600);
	assert_int_equal(symlink(target, tpath(t, "link.key")), 0);
	assert_int_equal(
	    sotp_key_create(t->path, err, sizeof(err)), SOTP_ERR_EXISTS);
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_size, 1);

	/* A missing directory is a system error with the path. */
	assert_int_equal(
	    sotp_key_create(tpath(t, "no/such.key"), err, sizeof(err)),
	    SOTP_ERR_SYSTEM);
	assert_non_null(strstr(err, "no/such.key"));
}

static void
test_seal_key_hex_format(void **state)
{
	struct tdir *t = *state;
	static const char hex[] =
	    "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
	uint8_t key[SOTP_KEY_LEN], want[SOTP_KEY_LEN];
	char err[256], line[80];
	size_t i;

	for (i = 0; i < sizeof(want); i++)
		want[i] = (uint8_t)i;
	write_file(tpath(t, "hex.key"), hex, 64, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_OK);
	assert_memory_equal(key, want, sizeof(want));
	snprintf(line, sizeof(line), "%s\n", hex);
	write_file(tpath(t, "hexnl.key"), line, 65, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_OK);
	assert_memory_equal(key, want, sizeof(want));
	/* 65 bytes without the newline, or a non-hex character. */
	snprintf(line, sizeof(line), "%s ", hex);
	write_file(tpath(t, "hexsp.key"), line, 65, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	assert_non_null(strstr(err, "not a hex key"));
	snprintf(line, sizeof(line), "%s", hex);
	line[10] = 'g';
	write_file(tpath(t, "hexg.key"), line, 64, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	assert_non_null(strstr(err, "hexg.key: not a hex key"));
}

static void
test_seal_key_unsafe_refused(void **state)
{
	struct tdir *t = *state;
	uint8_t key[SOTP_KEY_LEN], raw[SOTP_KEY_LEN + 1];
	char err[400], want[400], pin[64];

	memset(raw, 0x42, sizeof(raw));
	/* Group- or world-accessible: refused, naming path and mode. */
	write_file(tpath(t, "open.key"), raw, SOTP_KEY_LEN, 0644);
	memset(key, 0x55, sizeof(key));
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	snprintf(want, sizeof(want),
	    "%s: readable by group or others (mode 0644); chmod 600 it",
	    t->path);
	assert_string_equal(err, want);
	for (size_t i = 0; i < sizeof(key); i++)
		assert_int_equal(key[i], 0);
	write_file(tpath(t, "gw.key"), raw, SOTP_KEY_LEN, 0620);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	assert_non_null(strstr(err, "(mode 0620)"));
	write_file(tpath(t, "x.key"), raw, SOTP_KEY_LEN, 0601);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);

	/*
	 * Owned by another user, mode 0600: that user could replace it, so
	 * it is refused even to root (which used to take any owner's key).
	 */
	if (geteuid() == 0) {
		write_file(tpath(t, "other.key"), raw, SOTP_KEY_LEN, 0600);
		assert_int_equal(chown(t->path, 12345, 0), 0);
		memset(key, 0x55, sizeof(key));
		assert_int_equal(sotp_key_load(t->path, key, err, sizeof(err)),
		    SOTP_ERR_KEY);
		snprintf(want, sizeof(want),
		    "%s: owned by uid 12345, neither root nor this process's "
		    "user (uid 0): refused; chown root it",
		    t->path);
		assert_string_equal(err, want);
		for (size_t i = 0; i < sizeof(key); i++)
			assert_int_equal(key[i], 0);
		/* The PIN file is read under the same rule. */
		assert_int_equal(sotp_secret_read(t->path, pin, sizeof(pin),
		                     err, sizeof(err)),
		    SOTP_ERR_KEY);
		assert_string_equal(err, want);
		/* The same file, once root's: accepted. */
		assert_int_equal(chown(t->path, 0, 0), 0);
		assert_int_equal(
		    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_OK);
	}

	/* A symlink to a perfectly good key is still refused. */
	write_file(tpath(t, "good.key"), raw, SOTP_KEY_LEN, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_OK);
	assert_int_equal(symlink(t->path, tpath(t, "sym.key")), 0);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	assert_non_null(strstr(err, "symbolic link"));

	/* Wrong sizes. */
	write_file(tpath(t, "short.key"), raw, SOTP_KEY_LEN - 1, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	assert_non_null(strstr(err, "wrong size (31 bytes)"));
	write_file(tpath(t, "long.key"), raw, SOTP_KEY_LEN + 1, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	write_file(tpath(t, "empty.key"), raw, 0, 0600);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);

	/* Not a regular file; not there at all. */
	assert_int_equal(mkdir(tpath(t, "dir.key"), 0700), 0);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(mkfifo(tpath(t, "fifo.key"), 0600), 0);
	assert_int_equal(
	    sotp_key_load(t->path, key, err, sizeof(err)), SOTP_ERR_KEY);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(
	    sotp_key_load(tpath(t, "none.key"), key, err, sizeof(err)),
	    SOTP_ERR_KEY);
	assert_non_null(strstr(err, "none.key: no such file"));
	/* A NULL or tiny error buffer is fine. */
	assert_int_equal(sotp_key_load(t->path, key, NULL, 0), SOTP_ERR_KEY);
	assert_int_equal(sotp_key_load(t->path, key, err, 1), SOTP_ERR_KEY);
	assert_string_equal(err, "");
}

/*
 * A root-owned key of mode 0640 is shared with one group only, the one
 * named SOTP_KEY_GROUP (given here as a gid, so the test needs no system
 * group); any other group bit, group or owner is still refused.
 */
static void
test_seal_key_shared_group(void **state)
{
	struct tdir *t = *state;
	static const mode_t more[] = {0660, 0650, 0644, 0641, 0604, 0670};
	uint8_t key[SOTP_KEY_LEN], raw[SOTP_KEY_LEN];
	char err[256], want[300];
	struct group *gr;
	struct stat st;
	size_t i;
	gid_t g;
	int root = geteuid() == 0, named;

	memset(raw, 0x42, sizeof(raw));
	write_file(tpath(t, "shared.key"), raw, sizeof(raw), 0640);
	assert_int_equal(stat(t->path, &st), 0);
	g = st.st_gid;
	memset(key, 0, sizeof(key));
	if (root) {
		assert_int_equal(
		    sotp_key_load_shared(t->path, g, key, err, sizeof(err)),
		    SOTP_OK);
		assert_memory_equal(key, raw, sizeof(raw));
	} else {
		/* Not root's key: the shared case does not apply. */
		assert_int_equal(
		    sotp_key_load_shared(t->path, g, key, err, sizeof(err)),
		    SOTP_ERR_KEY);
		assert_non_null(strstr(err, "group or others (mode 0640)"));
	}
	/* Another group, or no sharing group on this host. */
	assert_int_equal(
	    sotp_key_load_shared(t->path, g + 1, key, err, sizeof(err)),
	    SOTP_ERR_KEY);
	for (i = 0; i < sizeof(key); i++)
		assert_int_equal(key[i], 0);
	if (root) {
		snprintf(want, sizeof(want),
		    "%s: readable by group %lu (mode 0640); only group "
		    "shinkin-otp may share root's key: chmod 600 or chgrp "
		    "shinkin-otp it",
		    t->path, (unsigned long)g);
		assert_string_equal(err, want);
	}
	assert_int_equal(
	    sotp_key_load_shared(t->path, (gid_t)-1, key, err, sizeof(err)),
	    SOTP_ERR_KEY);
	/* More than read for the group, or anything for others. */
	for (i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
		assert_int_equal(chmod(t->path, more[i]), 0);
		assert_int_equal(
		    sotp_key_load_shared(t->path, g, key, err, sizeof(err)),
		    SOTP_ERR_KEY);
		assert_non_null(strstr(err, "group or others (mode 0"));
	}
	/*
	 * The group's key must be root's: one nobody owns is refused, for
	 * its owner (root reads no other user's key).
	 */
	if (root) {
		assert_int_equal(chmod(t->path, 0640), 0);
		assert_int_equal(chown(t->path, 65534, g), 0);
		assert_int_equal(
		    sotp_key_load_shared(t->path, g, key, err, sizeof(err)),
		    SOTP_ERR_KEY);
		assert_non_null(
		    strstr(err, "owned by uid 65534, neither root"));
		assert_int_equal(chown(t->path, 0, g), 0);
	}
	/* By name: accepted exactly when SOTP_KEY_GROUP is the file's group. */
	assert_int_equal(chmod(t->path, 0640), 0);
	gr = getgrnam(SOTP_KEY_GROUP);
	named = gr != NULL && gr->gr_gid == g;
	assert_int_equal(sotp_key_load(t->path, key, err, sizeof(err)),
	    root && named ? SOTP_OK : SOTP_ERR_KEY);
}

static void
test_seal_kdf_and_hmac(void **state)
{
	/* References computed independently (Python hmac/hashlib). */
	static const uint8_t hkdf_state[32] = {0x43, 0x05, 0x6c, 0x9e, 0x4c,
	    0xf5, 0xb9, 0x12, 0x80, 0xcd, 0x91, 0xa8, 0x3e, 0xf6, 0xe4, 0xaf,
	    0x26, 0xa5, 0x80, 0x8e, 0x11, 0x2a, 0x29, 0x35, 0xe8, 0x56, 0x88,
	    0xef, 0xa0, 0x1a, 0x33, 0xe9};
	static const uint8_t hmac_ref[32] = {0x09, 0x98, 0x05, 0xf4, 0xac, 0x31,
	    0x07, 0x86, 0x96, 0x85, 0x65, 0xc0, 0x98, 0xdb, 0x51, 0x5c, 0xc5,
	    0x08, 0x62, 0xb4, 0x20, 0xae, 0x31, 0xe2, 0x02, 0x38, 0x31, 0x23,
	    0x44, 0xbe, 0xd3, 0x6a};
	static const char msg[] = "what do ya want for nothing?";
	uint8_t master[SOTP_KEY_LEN], a[32], b[32];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(master); i++)
		master[i] = (uint8_t)i;
	assert_int_equal(sotp_kdf(master, "sotp state v1", a), SOTP_OK);
	assert_memory_equal(a, hkdf_state, 32);
	assert_int_equal(sotp_kdf(master, "sotp state v2", b), SOTP_OK);
	assert_memory_not_equal(a, b, 32);
	assert_int_equal(sotp_kdf(NULL, "x", b), SOTP_ERR_INVALID_ARG);

	assert_int_equal(
	    sotp_hmac_sha256(master, msg, sizeof(msg) - 1, a), SOTP_OK);
	assert_memory_equal(a, hmac_ref, 32);
	assert_int_equal(sotp_hmac_sha256(master, NULL, 0, b), SOTP_OK);
	assert_memory_not_equal(a, b, 32);
	assert_int_equal(
	    sotp_hmac_sha256(master, NULL, 3, b), SOTP_ERR_INVALID_ARG);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seal_round_trip),
	    cmocka_unit_test(test_seal_tampering_refused),
	    cmocka_unit_test(test_seal_buffers_and_args),
	    cmocka_unit_test_setup_teardown(
	        test_seal_key_create_and_load, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(
	        test_seal_key_hex_format, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(
	        test_seal_key_unsafe_refused, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(
	        test_seal_key_shared_group, setup_dir, teardown_dir),
	    cmocka_unit_test(test_seal_kdf_and_hmac),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_fuzz_smoke.c - a deterministic mutation run over the parsers that
 * read outside input: the policy file, base32 secrets and otpauth URIs.
 *
 * Not a fuzzer (tests/fuzz/ has the libFuzzer harnesses): a fixed xorshift
 * stream of bit flips, truncations, insertions, deletions and splices over
 * the seed files, so every `make check` covers a few hundred thousand
 * malformed inputs in a couple of seconds. Under `make check SANITIZE=1`
 * ASan/UBSan turn any overrun into a failure. Each input must be accepted
 * or refused with the documented code; what is accepted must round-trip.
 */
#define _GNU_SOURCE /* mkdtemp, O_CLOEXEC */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sotp_int.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define SEED_MAX 16384 /* the shipped policy is 9 kB */
#define GROW 64        /* most bytes the mutations add */
#define DUMP_MAX 65536
#define POLICY_ROUNDS 300   /* per seed file */
#define STRING_ROUNDS 10000 /* per seed string */

/* xorshift64: the same inputs on every run and every machine. */
static uint64_t
next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t
below(uint64_t *s, size_t n)
{
	return n == 0 ? 0 : (size_t)(next(s) % n);
}

/* Bytes that matter to the parsers more than random ones do. */
static const char special[] = "[]=#\n\r\t -:/?&%0129azAZ.\xff";

/*
 * Applies 1-4 random edits to buf[*len] (room for *len + GROW bytes,
 * plus the seed for splices).
 */
static void
mutate(
    uint64_t *s, uint8_t *buf, size_t *len, const uint8_t *seed, size_t seedlen)
{
	size_t edits = 1 + below(s, 4), pos, n, from;

	while (edits-- > 0) {
		pos = below(s, *len + 1);
		switch (below(s, 6)) {
		case 0: /* bit flip */
			if (*len > 0)
				buf[below(s, *len)] ^=
				    (uint8_t)(1u << below(s, 8));
			break;
		case 1: /* truncate */
			*len = pos;
			break;
		case 2: /* insert a byte: special or any */
			if (*len >= seedlen + GROW)
				break;
			memmove(buf + pos + 1, buf + pos, *len - pos);
			buf[pos] = below(s, 2)
			    ? (uint8_t)special[below(s, sizeof(special) - 1)]
			    : (uint8_t)next(s);
			(*len)++;
			break;
		case 3: /* delete a run */
			n = below(s, 8) + 1;
			if (pos + n > *len)
				n = *len - pos;
			memmove(buf + pos, buf + pos + n, *len - pos - n);
			*len -= n;
			break;
		case 4: /* overwrite with a special byte */
			if (*len > 0)
				buf[below(s, *len)] = (uint8_t)
				    special[below(s, sizeof(special) - 1)];
			break;
		default: /* splice in a slice of the seed (duplicate lines) */
			if (seedlen == 0)
				break;
			from = below(s, seedlen);
			n = below(s, GROW / 2) + 1;
			if (from + n > seedlen)
				n = seedlen - from;
			if (*len + n > seedlen + GROW)
				break;
			memmove(buf + pos + n, buf + pos, *len - pos);
			memcpy(buf + pos, seed + from, n);
			*len += n;
			break;
		}
	}
}

static void
top_path(char *out, size_t outsz, const char *rel)
{
	const char *top = getenv("TOP");
	int n;

	if (top == NULL || top[0] == '\0')
		fail_msg("TOP is not set: run tests/run.sh, or "
		         "TOP=$PWD build/tests/test_fuzz_smoke from the source "
		         "tree");
	n = snprintf(out, outsz, "%s/%s", top, rel);
	assert_true(n > 0 && (size_t)n < outsz);
}

static size_t
read_seed(const char *path, uint8_t *buf, size_t bufsz)
{
	FILE *f;
	size_t n;

	if ((f = fopen(path, "re")) == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	n = fread(buf, 1, bufsz, f);
	assert_int_equal(ferror(f), 0);
	assert_true(feof(f) != 0); /* seeds fit in SEED_MAX */
	fclose(f);
	return n;
}

/* The dump without its first line, which names the file it came from. */
static const char *
body(const char *dump)
{
	const char *nl = strchr(dump, '\n');

	return nl != NULL ? nl + 1 : dump;
}

/* What one round of the policy run shares across inputs. */
struct policy_run {
	struct sotp_ctx *ctx, *again;
	int fd, fd2;
	char path[64], path2[64];
	char *dump, *dump2;
	unsigned long accepted, refused;
};

static void
put(int fd, const void *data, size_t len)
{
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
}

/* One input: refused as "file:N: ..." (N >= 1), or read back alike. */
static void
policy_one(struct policy_run *r, const uint8_t *data, size_t len)
{
	const char *msg;
	size_t n;
	int rc;

	put(r->fd, data, len);
	rc = sotp_ctx_load_policy(r->ctx, r->path);
	if (rc != SOTP_OK) {
		msg = sotp_ctx_errmsg(r->ctx);
		n = strlen(r->path);
		if (rc != SOTP_ERR_CONFIG || strncmp(msg, r->path, n) != 0 ||
		    msg[n] != ':' || msg[n + 1] < '1' || msg[n + 1] > '9')
			fail_msg("refused with %s, '%s', for:\n%.*s",
			    sotp_rc_name(rc), msg, (int)len,
			    (const char *)data);
		r->refused++;
		return;
	}
	r->accepted++;
	assert_int_equal(sotp_policy_dump(r->ctx, r->dump, DUMP_MAX), SOTP_OK);
	put(r->fd2, r->dump, strlen(r->dump));
	rc = sotp_ctx_load_policy(r->again, r->path2);
	if (rc != SOTP_OK)
		fail_msg("dump does not read back: %s\n%s",
		    sotp_ctx_errmsg(r->again), r->dump);
	assert_int_equal(
	    sotp_policy_dump(r->again, r->dump2, DUMP_MAX), SOTP_OK);
	if (strcmp(body(r->dump), body(r->dump2)) != 0)
		fail_msg("dump changes on re-reading:\n%s\n---\n%s", r->dump,
		    r->dump2);
}

static void
policy_seed(struct policy_run *r, const char *path, uint64_t *s)
{
	uint8_t seed[SEED_MAX], buf[SEED_MAX + GROW];
	size_t seedlen, len;
	unsigned int i;

	seedlen = read_seed(path, seed, sizeof(seed));
	policy_one(r, seed, seedlen);
	for (i = 0; i < POLICY_ROUNDS; i++) {
		memcpy(buf, seed, seedlen);
		len = seedlen;
		mutate(s, buf, &len, seed, seedlen);
		policy_one(r, buf, len);
	}
}

static void
policy_dir(struct policy_run *r, const char *rel, uint64_t *s)
{
	char dir[SOTP_PATH_MAX], path[SOTP_PATH_MAX * 2];
	struct dirent **de;
	unsigned int nseeds = 0;
	int i, n;

	/*
	 * In name order: the xorshift stream runs on from one seed file to
	 * the next, so readdir's order (ext4 hashes names with a seed of
	 * each file system's) made the inputs differ from one machine or
	 * checkout to the next, and with them what a failure looked like.
	 */
	top_path(dir, sizeof(dir), rel);
	if ((n = scandir(dir, &de, NULL, alphasort)) < 0)
		fail_msg("%s: %s", dir, strerror(errno));
	for (i = 0; i < n; i++) {
		if (strstr(de[i]->d_name, ".conf") != NULL) {
			snprintf(
			    path, sizeof(path), "%s/%s", dir, de[i]->d_name);
			policy_seed(r, path, s);
			nseeds++;
		}
		free(de[i]);
	}
	free(de);
	assert_true(nseeds > 0);
}

/*
 * A policy file of the run's, in a private directory: the loader checks
 * the directories above a policy, so an anonymous file (which has none)
 * is not one.
 */
static char policy_dir_tmp[] = "/tmp/sotp-fuzz-smoke-XXXXXX";

static int
memfile(char *path)
{
	static int n;
	int fd;

	if (n == 0)
		assert_non_null(mkdtemp(policy_dir_tmp));
	snprintf(path, 64, "%s/p%d.conf", policy_dir_tmp, n++);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	return fd;
}

static void
test_fuzz_smoke_policy(void **state)
{
	struct policy_run r;
	char path[SOTP_PATH_MAX];
	uint64_t s = 0x5107c0de2027ULL;

	(void)state;
	memset(&r, 0, sizeof(r));
	assert_int_equal(sotp_ctx_new(&r.ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_new(&r.again), SOTP_OK);
	assert_non_null(r.dump = malloc(DUMP_MAX));
	assert_non_null(r.dump2 = malloc(DUMP_MAX));
	r.fd = memfile(r.path);
	r.fd2 = memfile(r.path2);

	top_path(path, sizeof(path), "conf/shinkin-otp.conf");
	policy_seed(&r, path, &s);
	policy_dir(&r, "tests/data/policy/good", &s);
	policy_dir(&r, "tests/data/policy/bad", &s);
	print_message("policy inputs: %lu accepted, %lu refused\n", r.accepted,
	    r.refused);
	/* Both outcomes were exercised, not just the refusals. */
	assert_true(r.accepted > 100);
	assert_true(r.refused > 1000);

	close(r.fd);
	close(r.fd2);
	unlink(r.path);
	unlink(r.path2);
	rmdir(policy_dir_tmp);
	free(r.dump);
	free(r.dump2);
	sotp_ctx_free(r.ctx);
	sotp_ctx_free(r.again);
}

static const char *const base32_seeds[] = {
    "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
    "MZXW6YTBOI======",
    "mzxw 6ytb oi",
    "MY======",
    "JBSWY3DPEHPK3PXP",
    "",
};

static void
test_fuzz_smoke_base32(void **state)
{
	uint8_t out[20], back[sizeof(out)];
	char buf[128], enc[128];
	const char *why;
	uint64_t s = 0xba5e32ULL;
	size_t i, j, len, n, m;
	unsigned long ok = 0;
	int rc;

	(void)state;
	for (i = 0; i < NELEM(base32_seeds); i++) {
		const uint8_t *seed = (const uint8_t *)base32_seeds[i];
		size_t seedlen = strlen(base32_seeds[i]);

		for (j = 0; j < STRING_ROUNDS; j++) {
			memcpy(buf, seed, seedlen);
			len = seedlen;
			mutate(&s, (uint8_t *)buf, &len, seed, seedlen);
			buf[len] = '\0';
			why = NULL;
			rc =
			    sotp_base32_decode(buf, out, sizeof(out), &n, &why);
			if (rc != SOTP_OK) {
				if ((rc != SOTP_ERR_BAD_INPUT &&
				        rc != SOTP_ERR_BUFFER) ||
				    why == NULL || n != 0)
					fail_msg("'%s': %s (%s)", buf,
					    sotp_rc_name(rc),
					    why != NULL ? why : "no reason");
				continue;
			}
			ok++;
			assert_true(n <= sizeof(out));
			assert_int_equal(
			    sotp_base32_encode(out, n, enc, sizeof(enc)),
			    SOTP_OK);
			assert_int_equal(sotp_base32_decode(
			                     enc, back, sizeof(back), &m, &why),
			    SOTP_OK);
			assert_int_equal(m, n);
			assert_memory_equal(out, back, n);
		}
	}
	assert_true(ok > 100);
}

#define SECRET "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
static const char *const uri_seeds[] = {
    "otpauth://totp/Shinkin%20Bank:TK-0001?secret=" SECRET
    "&issuer=Shinkin%20Bank&algorithm=SHA1&digits=6&period=30",
    "otpauth://totp/TK-0002?secret=" SECRET
    "&algorithm=SHA512&digits=8&period=60",
    "otpauth://totp/A:b?secret=MZXW6YTBOI======&issuer=A",
    "otpauth://totp/x?secret=mzxw%206ytb%20oi",
};

static void
test_fuzz_smoke_uri(void **state)
{
	struct sotp_uri u, v;
	char buf[256];
	char *built;
	const char *why;
	uint64_t s = 0x07a07a07aULL;
	size_t i, j, len;
	unsigned long ok = 0;
	int rc;

	(void)state;
	for (i = 0; i < NELEM(uri_seeds); i++) {
		const uint8_t *seed = (const uint8_t *)uri_seeds[i];
		size_t seedlen = strlen(uri_seeds[i]);

		assert_true(seedlen + GROW < sizeof(buf));
		for (j = 0; j < STRING_ROUNDS; j++) {
			memcpy(buf, seed, seedlen);
			len = seedlen;
			mutate(&s, (uint8_t *)buf, &len, seed, seedlen);
			buf[len] = '\0';
			why = NULL;
			rc = sotp_uri_parse(buf, &u, &why);
			if (rc != SOTP_OK) {
				if (rc != SOTP_ERR_BAD_INPUT || why == NULL)
					fail_msg("'%s': %s (%s)", buf,
					    sotp_rc_name(rc),
					    why != NULL ? why : "no reason");
				continue;
			}
			ok++;
			built = NULL;
			assert_int_equal(sotp_uri_build(&u, &built), SOTP_OK);
			if (sotp_uri_parse(built, &v, &why) != SOTP_OK)
				fail_msg("'%s' builds '%s', refused: %s", buf,
				    built, why);
			assert_string_equal(u.issuer, v.issuer);
			assert_string_equal(u.account, v.account);
			assert_string_equal(u.secret, v.secret);
			assert_int_equal(u.alg, v.alg);
			assert_int_equal(u.digits, v.digits);
			assert_int_equal(u.period, v.period);
			sotp_free_string(built);
		}
	}
	assert_true(ok > 100);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fuzz_smoke_policy),
	    cmocka_unit_test(test_fuzz_smoke_base32),
	    cmocka_unit_test(test_fuzz_smoke_uri),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_policy.c - libFuzzer harness for the policy file reader.
 *
 * Built and run by `make fuzz` (seeds in tests/fuzz/corpus/fuzz_policy/).
 *
 * The input is written to an anonymous file and read by
 * sotp_policy_read (through sotp_ctx_load_policy). Checks that the reader
 * never overruns, that it only accepts or refuses with SOTP_ERR_CONFIG,
 * that a refusal names "file:line" with a real line, and that an accepted
 * policy dumps to text that reads back to the same policy.
 */
#define _GNU_SOURCE /* mkdtemp, O_CLOEXEC */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sotp_int.h"

#define DUMP_MAX 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * A file holding data, NAME (p1 or p2) in a private directory made once
 * (the loader checks the directories above a policy: an anonymous file
 * has none); its path is written to path[64]. The directory is in
 * /dev/shm when it can be, as fuzz_env.h's: on ext4 each input's rewrite
 * of a file cut short was written back at its close, most of the time.
 */
static char dir[40];

static void
cleanup(void)
{
	char path[64];

	snprintf(path, sizeof(path), "%s/p1.conf", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/p2.conf", dir);
	unlink(path);
	rmdir(dir);
}

static int
memfile(const void *data, size_t size, const char *name, char *path)
{
	static int made;
	int fd;

	if (!made) {
		snprintf(dir, sizeof(dir), "%s/sotp-fuzz-policy-XXXXXX",
		    access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
		if (mkdtemp(dir) == NULL)
			return -1;
		atexit(cleanup);
		made = 1;
	}
	snprintf(path, 64, "%s/%s.conf", dir, name);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) <
	    0)
		return -1;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The dump without its first line, which names the file it came from. */
static const char *
body(const char *dump)
{
	const char *nl = strchr(dump, '\n');

	return nl != NULL ? nl + 1 : dump;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sotp_ctx *ctx = NULL, *again = NULL;
	char path[64], path2[64];
	char *dump = NULL, *dump2 = NULL;
	const char *msg;
	size_t n;
	int fd = -1, fd2 = -1, rc;

	if ((fd = memfile(data, size, "p1", path)) < 0 ||
	    sotp_ctx_new(&ctx) != SOTP_OK || sotp_ctx_new(&again) != SOTP_OK ||
	    (dump = malloc(DUMP_MAX)) == NULL ||
	    (dump2 = malloc(DUMP_MAX)) == NULL)
		goto out;
	rc = sotp_ctx_load_policy(ctx, path);
	if (rc != SOTP_OK) {
		msg = sotp_ctx_errmsg(ctx);
		n = strlen(path);
		if (rc != SOTP_ERR_CONFIG || strncmp(msg, path, n) != 0 ||
		    msg[n] != ':' || msg[n + 1] < '1' || msg[n + 1] > '9')
			abort();
		goto out;
	}
	if (sotp_policy_dump(ctx, dump, DUMP_MAX) != SOTP_OK)
		abort();
	if ((fd2 = memfile(dump, strlen(dump), "p2", path2)) < 0)
		goto out;
	if (sotp_ctx_load_policy(again, path2) != SOTP_OK ||
	    sotp_policy_dump(again, dump2, DUMP_MAX) != SOTP_OK ||
	    strcmp(body(dump), body(dump2)) != 0)
		abort();
out:
	if (fd >= 0)
		close(fd);
	if (fd2 >= 0)
		close(fd2);
	free(dump);
	free(dump2);
	sotp_ctx_free(ctx);
	sotp_ctx_free(again);
	return 0;
}

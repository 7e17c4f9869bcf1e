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
#define _GNU_SOURCE /* memfd_create */
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

/* An anonymous file holding data; its path is written to path[64]. */
static int
memfile(const void *data, size_t size, char *path)
{
	int fd;

	if ((fd = memfd_create("policy", MFD_CLOEXEC)) < 0)
		return -1;
	/* A memfd is made 0777; the policy loader refuses a writable file. */
	if (fchmod(fd, 0600) != 0) {
		close(fd);
		return -1;
	}
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	snprintf(path, 64, "/proc/self/fd/%d", fd);
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

	if ((fd = memfile(data, size, path)) < 0 ||
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
	if ((fd2 = memfile(dump, strlen(dump), path2)) < 0)
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

/*
 * cutread.c - an LD_PRELOAD shim for the tests: the file named by
 * SHIM_CUT_PATH is cut to SHIM_CUT_AT bytes (truncate(2)) just before the
 * first read(2) of it, as a file that another process rewrites (cp over
 * it, an editor saving, a transfer starting again) is cut between the
 * tool's fstat and its read. Every read goes on to the C library. Built
 * with the tests only, never installed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t read_fn(int, void *, size_t);

ssize_t read(int fd, void *buf, size_t n);

/* A test shim's one piece of state: the file is cut once. */
static int cut_done;

static void
cut_if_named(int fd)
{
	const char *want = getenv("SHIM_CUT_PATH");
	const char *at = getenv("SHIM_CUT_AT");
	char link[64], path[PATH_MAX];
	ssize_t len;

	if (cut_done || want == NULL || at == NULL)
		return;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((len = readlink(link, path, sizeof(path) - 1)) < 0)
		return;
	path[len] = '\0';
	if (strcmp(path, want) != 0)
		return;
	cut_done = 1;
	(void)truncate(want, (off_t)strtoll(at, NULL, 10));
}

__attribute__((visibility("default"))) ssize_t
read(int fd, void *buf, size_t n)
{
	read_fn *real;
	int e = errno;

	cut_if_named(fd);
	errno = e;
	if ((real = (read_fn *)dlsym(RTLD_NEXT, "read")) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real(fd, buf, n);
}

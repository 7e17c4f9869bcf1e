/*
 * notmpfile.c - an LD_PRELOAD shim for the tests: open() with O_TMPFILE
 * fails with EOPNOTSUPP, as on a filesystem without unnamed files, so
 * that a test takes the tool's NAME.PID.tmp path (cli/newfile.c) on any
 * filesystem. Every other open() goes to the C library. Built with the
 * tests only, never installed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

typedef int open_fn(const char *, int, ...);

int open(const char *path, int flags, ...);
int open64(const char *path, int flags, ...);

static int
shim_open(const char *name, const char *path, int flags, mode_t mode)
{
	open_fn *real;

	if ((flags & O_TMPFILE) == O_TMPFILE) {
		errno = EOPNOTSUPP;
		return -1;
	}
	if ((real = (open_fn *)dlsym(RTLD_NEXT, name)) == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real(path, flags, mode);
}

/* open and open64 alike: the mode is there with O_CREAT or O_TMPFILE. */
#define SHIM_ENTRY(fn)                                                         \
	__attribute__((visibility("default"))) int fn(                         \
	    const char *path, int flags, ...)                                  \
	{                                                                      \
		mode_t mode = 0;                                               \
		va_list ap;                                                    \
                                                                               \
		if ((flags & O_CREAT) != 0 ||                                  \
		    (flags & O_TMPFILE) == O_TMPFILE) {                        \
			va_start(ap, flags);                                   \
			mode = (mode_t)va_arg(ap, int);                        \
			va_end(ap);                                            \
		}                                                              \
		return shim_open(#fn, path, flags, mode);                      \
	}

SHIM_ENTRY(open)
SHIM_ENTRY(open64)

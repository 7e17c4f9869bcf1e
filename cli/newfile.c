/*
 * newfile.c - a file the tool writes for the operator (an export, a QR
 * code's PNG) that may hold secrets: created 0600, never over an existing
 * file, and named only once whole.
 *
 * It is written unnamed (O_TMPFILE, in the directory it is to be in) and
 * linked to its name after an fsync: a crash, a kill or a failure part way
 * leaves nothing at the name, so nothing that looks complete (an export
 * has no end marker; a cut PNG may still show part of a QR code) and no
 * part of a secret. A filesystem without unnamed files gets NAME.PID.tmp
 * instead, linked the same way and removed on every path the tool
 * controls; one a kill left (SIGKILL cannot be caught) is removed by the
 * next run that writes NAME, once its process is gone (sweep). An
 * existing NAME is refused before anything is written, and by the link
 * if it appears meanwhile.
 */
#define _GNU_SOURCE /* O_TMPFILE, AT_EMPTY_PATH */
#include "cli.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Removes from dir the BASE.PID.tmp files that runs killed part way left:
 * PID written as this file writes it (decimal, no leading zero), of a
 * process that no longer exists (a PID taken again keeps the file until
 * that process is gone too) or of this one, which has not made its own
 * yet; and the file as this one makes it: regular, ours, 0600 and one
 * link. Best effort: what cannot be removed stays.
 */
static void
sweep(const char *dir, const char *base)
{
	const struct dirent *de;
	size_t n = strlen(base);
	const char *p;
	struct stat st;
	char *end;
	long pid;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		p = de->d_name;
		if (strncmp(p, base, n) != 0 || p[n] != '.')
			continue;
		p += n + 1;
		if (!isdigit((unsigned char)p[0]) || p[0] == '0')
			continue;
		errno = 0;
		pid = strtol(p, &end, 10);
		if (errno != 0 || strcmp(end, ".tmp") != 0 || pid > INT_MAX)
			continue;
		/* Ours is not made yet: one with our PID is an old one's. */
		if (pid != (long)getpid() &&
		    (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) !=
		        0 ||
		    !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
		    (st.st_mode & 07777) != 0600 || st.st_nlink != 1)
			continue;
		(void)unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

/* Opens nf->f; 0, or -1 with errno (EEXIST: the name is taken). */
static int
newfile_fd(struct cli_file *nf)
{
	char dir[PATH_MAX];
	const char *path = nf->path, *slash = strrchr(path, '/');
	struct stat st;
	int fd, n;

	if (lstat(path, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	if (slash == NULL)
		n = snprintf(dir, sizeof(dir), ".");
	else
		n = snprintf(dir, sizeof(dir), "%.*s",
		    slash == path ? 1 : (int)(slash - path), path);
	if (n < 0 || (size_t)n >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600)) >= 0 ||
	    (errno != EOPNOTSUPP && errno != EISDIR))
		return fd;
	sweep(dir, slash == NULL ? path : slash + 1);
	n = snprintf(
	    nf->tmp, sizeof(nf->tmp), "%s.%ld.tmp", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(nf->tmp)) {
		nf->tmp[0] = '\0';
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = open(nf->tmp,
	         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) <
	    0)
		nf->tmp[0] = '\0';
	return fd;
}

int
cli_file_open(struct cli_file *nf, const char *path)
{
	int fd, e;

	nf->f = NULL;
	nf->path = path;
	nf->tmp[0] = '\0';
	if ((fd = newfile_fd(nf)) < 0)
		return -1;
	if ((nf->f = fdopen(fd, "w")) == NULL) {
		e = errno;
		close(fd);
		cli_file_abandon(nf);
		errno = e;
		return -1;
	}
	return 0;
}

/* Links the synced file to its name; 0, or -1 with errno. */
static int
newfile_link(int fd, const char *tmp, const char *path)
{
	char proc[64];

	if (tmp[0] != '\0')
		return link(tmp, path);
	/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; else through /proc. */
	if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM)
		return -1;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

int
cli_file_publish(struct cli_file *nf)
{
	int rc = -1, e;

	if (nf->f == NULL) {
		errno = EBADF;
		return -1;
	}
	/* A failed fflush or fsync leaves errno saying why. */
	if (fflush(nf->f) == 0) {
		if (ferror(nf->f))
			errno = EIO; /* an earlier write's errno is gone */
		else if (fsync(fileno(nf->f)) == 0)
			rc = newfile_link(fileno(nf->f), nf->tmp, nf->path);
	}
	e = errno;
	if (fclose(nf->f) != 0 && rc == 0) {
		/* Named, but not whole after all: take the name back. */
		e = errno;
		unlink(nf->path);
		rc = -1;
	}
	nf->f = NULL;
	cli_file_abandon(nf);
	errno = e;
	return rc;
}

void
cli_file_abandon(struct cli_file *nf)
{
	if (nf == NULL)
		return;
	if (nf->f != NULL)
		fclose(nf->f);
	nf->f = NULL;
	if (nf->tmp[0] != '\0')
		unlink(nf->tmp);
	nf->tmp[0] = '\0';
}

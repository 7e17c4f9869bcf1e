/*
 * fuzz_env.h - a private policy, master key and SQLite store for the
 * harnesses that need a loaded context (fuzz_pskc, fuzz_state).
 *
 * The directory is made under $SOTP_FUZZ_DIR, else /dev/shm (the store
 * commits with fsync; memory makes that cheap), else $TMPDIR or /tmp, and
 * removed when the fuzzer exits. Included by one harness each: static.
 */
#ifndef SOTP_FUZZ_ENV_H
#define SOTP_FUZZ_ENV_H

#define _GNU_SOURCE /* nftw flags */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sotp_int.h"

/* 2026-06-01T00:00:00Z, as in the unit tests. */
#define FUZZ_T0 ((time_t)1780272000)

static char fuzz_dir[256];

static int
fuzz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
fuzz_cleanup(void)
{
	if (fuzz_dir[0] != '\0')
		nftw(fuzz_dir, fuzz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* Stops the fuzzer with the ctx detail: setup failed, or a check did. */
static void
fuzz_abort(const char *what, const struct sotp_ctx *ctx)
{
	fprintf(stderr, "fuzz: %s: %s\n", what,
	    ctx != NULL ? sotp_ctx_errmsg(ctx) : "");
	abort();
}

/*
 * A context loaded with the shipped policy, a new master key and a new
 * store; the store's path goes to db[dbsz].
 */
static struct sotp_ctx *
fuzz_ctx(char *db, size_t dbsz)
{
	const char *base = getenv("SOTP_FUZZ_DIR");
	struct sotp_ctx *ctx = NULL;
	char conf[300];

	if (base == NULL || base[0] == '\0')
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
	if (base == NULL && (base = getenv("TMPDIR")) == NULL)
		base = "/tmp";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/sotp-fuzz.XXXXXX", base);
	if (mkdtemp(fuzz_dir) == NULL)
		fuzz_abort(fuzz_dir, NULL);
	atexit(fuzz_cleanup);
	snprintf(conf, sizeof(conf), "%s/shinkin-otp.conf", fuzz_dir);
	snprintf(db, dbsz, "%s/shinkin-otp.db", fuzz_dir);
	if (sotp_ctx_new(&ctx) != SOTP_OK || sotp_init(ctx, conf) != SOTP_OK)
		fuzz_abort("init", ctx);
	return ctx;
}

#endif /* SOTP_FUZZ_ENV_H */

/*
 * ctx.c - the context: an immutable policy, the keys (keys.c), one store
 * handle and the counters file. A context is used by one thread at a
 * time; radiusd keeps one per worker for its whole life, sharing one
 * keyring between them, PAM one per call.
 *
 * A long-lived context outlives its store connection: a database server
 * restarts, fails over, or the network drops. The rule for that lives
 * here, once, for every front end: the request that saw the connection
 * go is refused (the store marks its handle lost and fails the rest of
 * that request), and the next request, at its first call into the core
 * (sotp_ctx_ready), reopens it. The keys held stay (a reconnect is no
 * reason to unwrap again), but the reopened store may be another server
 * (a promoted standby): the key ring's generation is read again at the
 * next use of a key, and the keys reloaded if it moved.
 */
#include "sotp_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

int
sotp_ctx_new(struct sotp_ctx **out)
{
	struct sotp_ctx *ctx;

	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = NULL;
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return SOTP_ERR_NOMEM;
	*out = ctx;
	return SOTP_OK;
}

void
sotp_ctx_free(struct sotp_ctx *ctx)
{
	if (ctx == NULL)
		return;
	sotp_store_close(ctx->st);
	/* After the close, which logs what still waited (not committed). */
	free(ctx->waiting);
	sotp_keyring_free(ctx->keys);
	sotp_metrics_close(ctx->metrics);
	sotp_mac_free(ctx->mac);
	sotp_free_secret(ctx, sizeof(*ctx));
}

void
sotp_ctx_set_log(struct sotp_ctx *ctx, sotp_log_fn *fn, void *arg, int debug)
{
	if (ctx == NULL)
		return;
	ctx->log = fn;
	ctx->log_arg = arg;
	ctx->debug = debug;
}

const char *
sotp_ctx_errmsg(const struct sotp_ctx *ctx)
{
	return ctx == NULL ? "" : ctx->err;
}

void
sotp_ctx_seterr(struct sotp_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	/* A message naming a long value (a path, a key): its cut shows. */
	va_start(ap, fmt);
	sotp_verrf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
}

void
sotp_ctx_keep_cause(
    struct sotp_ctx *ctx, const char *cause, int failed, const char *what)
{
	char then[SOTP_CTX_ERR_MAX];

	/*
	 * On PostgreSQL a refused write aborts the transaction: every later
	 * statement of it fails with "current transaction is aborted",
	 * which names no cause. That text must not be all a front end says.
	 */
	if (strcmp(ctx->err, cause) == 0)
		return;
	sotp_strlcpy(then, ctx->err, sizeof(then));
	if (!failed || then[0] == '\0' || cause[0] == '\0')
		sotp_ctx_seterr(ctx, "%s", cause[0] != '\0' ? cause : then);
	else
		sotp_ctx_seterr(ctx, "%s; and %s: %s", cause, what, then);
}

void
sotp_log(const struct sotp_ctx *ctx, int prio, const char *fmt, ...)
{
	va_list ap;

	if (ctx->log == NULL || (prio == LOG_DEBUG && !ctx->debug))
		return;
	va_start(ap, fmt);
	ctx->log(ctx->log_arg, prio, fmt, ap);
	va_end(ap);
}

int
sotp_ctx_ready_nokey(struct sotp_ctx *ctx)
{
	int rc;

	if (!ctx->have_policy || ctx->st == NULL) {
		if (ctx->err[0] == '\0')
			sotp_ctx_seterr(ctx, "context not loaded");
		return SOTP_ERR_CONFIG;
	}
	if (!sotp_store_lost(ctx->st))
		return SOTP_OK;
	if ((rc = sotp_store_heal(ctx->st)) != SOTP_OK) {
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
		return rc;
	}
	sotp_log(ctx, LOG_NOTICE, "store reopened after a lost connection");
	sotp_keys_recheck(ctx);
	return SOTP_OK;
}

int
sotp_ctx_ready(struct sotp_ctx *ctx)
{
	int rc;

	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	if (!ctx->have_key) {
		/* Loaded without it on purpose (sotp_ctx_load_nokey). */
		sotp_ctx_seterr(ctx,
		    "this needs the master key %s, which this user cannot read",
		    ctx->pol.master_key);
		return SOTP_ERR_KEY;
	}
	return SOTP_OK;
}

int
sotp_ctx_has_key(const struct sotp_ctx *ctx)
{
	return ctx != NULL && ctx->have_key;
}

static void
file_id(const char *path, struct sotp_file_id *id)
{
	struct stat sb;

	memset(id, 0, sizeof(*id));
	if (stat(path, &sb) != 0)
		return;
	id->ok = 1;
	id->dev = sb.st_dev;
	id->ino = sb.st_ino;
	id->size = sb.st_size;
	id->mtime = sb.st_mtim;
	id->ctime = sb.st_ctim;
}

static int
file_changed(const char *path, const struct sotp_file_id *was)
{
	struct sotp_file_id now;

	file_id(path, &now);
	return !was->ok || !now.ok || now.dev != was->dev ||
	    now.ino != was->ino || now.size != was->size ||
	    now.mtime.tv_sec != was->mtime.tv_sec ||
	    now.mtime.tv_nsec != was->mtime.tv_nsec ||
	    now.ctime.tv_sec != was->ctime.tv_sec ||
	    now.ctime.tv_nsec != was->ctime.tv_nsec;
}

/*
 * The file that stands for the key-encryption key: the master key file,
 * or under kek = pkcs11 the token's PIN file (the master key file is
 * gone then, and a missing file would read as changed at every call).
 */
static const char *
key_file(const struct sotp_policy *p)
{
	return p->kek == SOTP_KEK_PKCS11 ? p->p11_pin_file : p->master_key;
}

/*
 * Each file is looked at before it is read (sotp_ctx_load_policy,
 * load_key): one changed in between is seen as changed next time, never
 * the other way round.
 */
int
sotp_ctx_stale(const struct sotp_ctx *ctx)
{
	if (ctx == NULL || !ctx->have_policy)
		return 1;
	if (file_changed(ctx->pol_path, &ctx->pol_id))
		return 1;
	return ctx->have_key && file_changed(key_file(&ctx->pol), &ctx->key_id);
}

static void
reset(struct sotp_ctx *ctx)
{
	sotp_store_close(ctx->st);
	ctx->st = NULL;
	sotp_metrics_close(ctx->metrics);
	ctx->metrics = NULL;
	ctx->have_policy = 0;
	ctx->have_key = 0;
	sotp_keyring_free(ctx->keys);
	ctx->keys = NULL;
	SOTP_WIPE_ARRAY(ctx->dummy_hash);
	free(ctx->audit_batch);
	ctx->audit_batch = NULL;
	ctx->err[0] = '\0';
}

int
sotp_ctx_load_policy(struct sotp_ctx *ctx, const char *path)
{
	char *abs = NULL;
	int rc;

	if (ctx == NULL)
		return SOTP_ERR_INVALID_ARG;
	reset(ctx);
	if (path == NULL)
		path = SOTP_DEFAULT_CONFIG;
	/*
	 * Absolute, so that every process agrees on which file this is; not
	 * resolved (realpath), which would drop a link named relative to the
	 * working directory, and with it the check of the link's directory.
	 */
	if (path[0] != '/' && (abs = sotp_abs_path(path)) != NULL)
		path = abs;
	sotp_strlcpy(ctx->pol_path, path, sizeof(ctx->pol_path));
	file_id(path, &ctx->pol_id);
	rc = sotp_policy_read(path, &ctx->pol, ctx->err, sizeof(ctx->err));
	free(abs);
	if (rc != SOTP_OK)
		return rc;
	ctx->have_policy = 1;
	return SOTP_OK;
}

/*
 * The key-encryption key: this context's own, or the one a process
 * shares between its contexts (radiusd's threads), which must then be
 * the one this policy names.
 */
static int
open_keys(struct sotp_ctx *ctx, struct sotp_keyring *shared)
{
	char want[SOTP_KEK_CONF_MAX];

	if (shared == NULL)
		return sotp_keyring_new(
		    &ctx->pol, &ctx->keys, ctx->err, sizeof(ctx->err));
	sotp_kek_conf(&ctx->pol, want, sizeof(want));
	if (strcmp(want, sotp_keyring_conf(shared)) != 0) {
		sotp_ctx_seterr(ctx,
		    "%s names the key-encryption key %s; this process holds %s",
		    ctx->pol.path, want, sotp_keyring_conf(shared));
		return SOTP_ERR_CONFIG;
	}
	ctx->keys = sotp_keyring_ref(shared);
	return SOTP_OK;
}

/* The data keys, once the store is open (keys.c unwraps them once). */
static int
load_keys(struct sotp_ctx *ctx)
{
	int rc;

	file_id(key_file(&ctx->pol), &ctx->key_id);
	if ((rc = sotp_keys_sync(ctx, 1)) != SOTP_OK)
		return rc;
	if (!sotp_keyring_locked(ctx->keys))
		sotp_log(ctx, LOG_WARNING,
		    "cannot lock the keys in memory (RLIMIT_MEMLOCK): they may be swapped out");
	ctx->have_key = 1;
	return SOTP_OK;
}

void
sotp_ctx_limits(const struct sotp_ctx *ctx, struct sotp_limits *lim)
{
	lim->connect_timeout_s = ctx->pol.connect_timeout;
	lim->statement_timeout_ms = ctx->pol.statement_timeout;
	lim->lock_timeout_ms = ctx->pol.lock_timeout;
}

/* Counting never stands in the way of a decision: failures are logged. */
static void
open_metrics(struct sotp_ctx *ctx)
{
	char err[SOTP_PATH_MAX + 128];

	if (ctx->pol.metrics[0] == '\0')
		return;
	if (sotp_metrics_open(
	        ctx->pol.metrics, &ctx->metrics, err, sizeof(err)) != SOTP_OK) {
		sotp_log(ctx, LOG_INFO, "not counting: %s", err);
		return;
	}
	sotp_store_set_metrics(ctx->st, ctx->metrics);
}

/*
 * The policy model holds, as it was read: the same rules for every
 * context made from it, whatever the file says by now.
 */
static int
copy_policy(struct sotp_ctx *ctx, const struct sotp_ctx *model)
{
	if (model == NULL || model == ctx || !model->have_policy)
		return SOTP_ERR_INVALID_ARG;
	reset(ctx);
	sotp_strlcpy(ctx->pol_path, model->pol_path, sizeof(ctx->pol_path));
	ctx->pol_id = model->pol_id;
	ctx->pol = model->pol;
	ctx->have_policy = 1;
	return SOTP_OK;
}

/*
 * Loads ctx: the policy (read from path, or copied from model), the KEK
 * (with_key), the store, the data keys. init >= 0 (sotp_init_at): a new
 * store gets its first key version then.
 */
static int
load(struct sotp_ctx *ctx, const char *path, const struct sotp_ctx *model,
    int with_key, struct sotp_keyring *shared, int64_t init)
{
	struct sotp_limits lim;
	int rc;

	rc = model != NULL ? copy_policy(ctx, model)
	                   : sotp_ctx_load_policy(ctx, path);
	if (rc != SOTP_OK)
		return rc;
	sotp_ctx_limits(ctx, &lim);
	if (with_key && (rc = open_keys(ctx, shared)) != SOTP_OK)
		goto out;
	if (ctx->mac == NULL && (rc = sotp_mac_new(&ctx->mac)) != SOTP_OK) {
		sotp_ctx_seterr(ctx, "cannot set up HMAC");
		goto out;
	}
	if ((rc = sotp_store_open_with(ctx->pol.store, &lim, 0, &ctx->st,
	         ctx->err, sizeof(ctx->err))) != SOTP_OK)
		goto out;
	/* The line of a row written in a transaction waits for its end. */
	sotp_store_set_txn_hook(ctx->st, sotp_audit_txn_end, ctx);
	open_metrics(ctx);
	if (with_key && init >= 0 &&
	    (rc = sotp_keys_first(ctx, init)) != SOTP_OK)
		goto out;
	if (with_key && (rc = load_keys(ctx)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK) {
		/* Keep the message, drop the half-loaded state. */
		char msg[sizeof(ctx->err)];

		memcpy(msg, ctx->err, sizeof(msg));
		reset(ctx);
		memcpy(ctx->err, msg, sizeof(msg));
	}
	return rc;
}

int
sotp_ctx_load(struct sotp_ctx *ctx, const char *path)
{
	return load(ctx, path, NULL, 1, NULL, -1);
}

/* The help desk: no key is read, so none can leak or be missed. */
int
sotp_ctx_load_nokey(struct sotp_ctx *ctx, const char *path)
{
	return load(ctx, path, NULL, 0, NULL, -1);
}

int
sotp_ctx_load_keyring(
    struct sotp_ctx *ctx, const char *path, struct sotp_keyring *k)
{
	if (ctx == NULL || k == NULL)
		return SOTP_ERR_INVALID_ARG;
	return load(ctx, path, NULL, 1, k, -1);
}

int
sotp_ctx_load_like(
    struct sotp_ctx *ctx, const struct sotp_ctx *model, struct sotp_keyring *k)
{
	if (ctx == NULL || model == NULL || k == NULL)
		return SOTP_ERR_INVALID_ARG;
	return load(ctx, NULL, model, 1, k, -1);
}

int
sotp_keyring_open(
    const char *path, struct sotp_keyring **out, char *err, size_t errsz)
{
	struct sotp_policy *p = NULL;
	char *abs = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || err == NULL || errsz == 0)
		return SOTP_ERR_INVALID_ARG;
	if (path == NULL)
		path = SOTP_DEFAULT_CONFIG;
	if ((p = malloc(sizeof(*p))) == NULL)
		return SOTP_ERR_NOMEM;
	/* Paths resolve as sotp_ctx_load_policy resolves them. */
	if (path[0] != '/' && (abs = sotp_abs_path(path)) != NULL)
		path = abs;
	if ((rc = sotp_policy_read(path, p, err, errsz)) == SOTP_OK)
		rc = sotp_keyring_new(p, out, err, errsz);
	free(abs);
	free(p);
	return rc;
}

int
sotp_keyring_open_like(const struct sotp_ctx *model, struct sotp_keyring **out,
    char *err, size_t errsz)
{
	if (out != NULL)
		*out = NULL;
	if (model == NULL || !model->have_policy || out == NULL ||
	    err == NULL || errsz == 0)
		return SOTP_ERR_INVALID_ARG;
	return sotp_keyring_new(&model->pol, out, err, errsz);
}

/*
 * Writes the shipped policy to path with the store and the key placed
 * beside it (relative paths resolve from the policy file's directory).
 */
static int
write_default_policy(struct sotp_ctx *ctx, const char *path)
{
	const char *s = sotp_default_policy_text, *nl;
	FILE *f = NULL;
	int fd, rc = SOTP_ERR_SYSTEM;
	size_t n;

	fd = open(
	    path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
	if (fd == -1) {
		if (errno == EEXIST)
			return SOTP_OK;
		sotp_ctx_seterr(
		    ctx, "%s: cannot create: %s", path, strerror(errno));
		return SOTP_ERR_SYSTEM;
	}
	if ((f = fdopen(fd, "w")) == NULL) {
		close(fd);
		goto fail;
	}
	for (; *s != '\0'; s = nl + 1) {
		if ((nl = strchr(s, '\n')) == NULL)
			nl = s + strlen(s) - 1;
		n = (size_t)(nl - s) + 1;
		if (strncmp(s, "store = ", 8) == 0)
			fputs("store = sqlite:shinkin-otp.db\n", f);
		else if (strncmp(s, "master_key = ", 13) == 0)
			fputs("master_key = master.key\n", f);
		else if (strncmp(s, "metrics = ", 10) == 0)
			fputs("metrics = shinkin-otp.metrics\n", f);
		else
			fwrite(s, 1, n, f);
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		goto fail;
	if (fclose(f) != 0) {
		f = NULL;
		goto fail;
	}
	return SOTP_OK;
fail:
	sotp_ctx_seterr(ctx, "%s: cannot write: %s", path, strerror(errno));
	if (f != NULL)
		fclose(f);
	unlink(path);
	return rc;
}

int
sotp_init(struct sotp_ctx *ctx, const char *path)
{
	return sotp_init_at(ctx, path, 0);
}

int
sotp_init_at(struct sotp_ctx *ctx, const char *path, time_t now)
{
	struct sotp_store *st = NULL;
	struct sotp_limits lim;
	int64_t filled = 0;
	int rc;

	if (ctx == NULL || now < 0)
		return SOTP_ERR_INVALID_ARG;
	if (path == NULL)
		path = SOTP_DEFAULT_CONFIG;
	reset(ctx);
	if ((rc = write_default_policy(ctx, path)) != SOTP_OK)
		return rc;
	if ((rc = sotp_ctx_load_policy(ctx, path)) != SOTP_OK)
		return rc;
	/*
	 * A token's key needs no file: none is made to be left lying. A key
	 * file already there must load before a store is made for it (a
	 * dangling link, a wrong size): else the store would be left behind
	 * without its first key version.
	 */
	if (ctx->pol.kek == SOTP_KEK_FILE) {
		rc = sotp_key_create(
		    ctx->pol.master_key, ctx->err, sizeof(ctx->err));
		if (rc == SOTP_ERR_EXISTS) {
			uint8_t key[SOTP_KEY_LEN];

			rc = sotp_key_load(ctx->pol.master_key, key, ctx->err,
			    sizeof(ctx->err));
			SOTP_WIPE_ARRAY(key);
		}
		if (rc != SOTP_OK)
			return rc;
	}
	ctx->err[0] = '\0';
	sotp_ctx_limits(ctx, &lim);
	if ((rc = sotp_store_open_with(ctx->pol.store, &lim, SOTP_OPEN_CREATE,
	         &st, ctx->err, sizeof(ctx->err))) != SOTP_OK)
		return rc;
	sotp_store_close(st);
	/*
	 * The first key version, then proof that the result is usable the
	 * way every front end will load it.
	 */
	if ((rc = load(ctx, path, NULL, 1, NULL, (int64_t)now)) != SOTP_OK)
		return rc;
	/*
	 * A store upgraded to schema version 5: each token's seed
	 * fingerprint, which needs the data keys the schema step lacked
	 * (seedfp.c). Until it is filled, token add and import refuse.
	 */
	if ((rc = sotp_seed_fill(ctx, now, &filled)) != SOTP_OK)
		return rc;
	/*
	 * Seeds two tokens held before (fingerprints now tell): audited
	 * each time, for the operator to disable or replace all but one.
	 * The bank's upgrade goes on.
	 */
	sotp_seed_shared_audit(ctx, now);
	return sotp_ctx_load(ctx, path);
}

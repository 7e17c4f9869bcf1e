/*
 * store.c - the store layer under the operations: the URL picks a dialect
 * driver, and everything every driver would otherwise repeat lives here
 * once: running a statement and reading its rows, decoding columns with
 * their bounds, the transaction nesting (a savepoint inside a caller's
 * transaction), the schema check, and the shape of every error message.
 * The operations themselves are in store_ops.c; the SQL is in the
 * drivers' dialect tables (store_sqlite.c, store_pg.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sotp_int.h"
#include "store_int.h"

/* The drivers this build knows, by URL scheme (libpq takes both). */
static const struct {
	const char *scheme;
	const struct sotp_store_driver *drv;
} schemes[] = {
    {"sqlite", &sotp_store_sqlite_driver},
    {"postgresql", &sotp_store_pg_driver},
    {"postgres", &sotp_store_pg_driver},
};

void
sotp_store_seterr(struct sotp_store *st, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
	/* A database's long message: its cut shows (sotp_mark_cut). */
	if (n > 0)
		sotp_mark_cut(st->err, sizeof(st->err), (size_t)n);
}

int
sotp_store_dberr(struct sotp_store *st, int rc, const char *fmt, ...)
{
	char what[SOTP_STORE_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	sotp_store_seterr(st, "%s %s: %s: %s", st->drv->name, st->where,
	    st->op != NULL ? st->op : "open", what);
	/* The one funnel of every driver failure: see sotp_store_heal. */
	if (rc == SOTP_ERR_STORE_UNAVAILABLE)
		st->lost = 1;
	sotp_metrics_store_error(st->metrics, rc);
	return rc;
}

/* Appends n bytes of s to out[outsz] at *len; 1 when it had to cut. */
static int
put(char *out, size_t outsz, size_t *len, const char *s, size_t n)
{
	while (n > 0 && *len + 1 < outsz) {
		out[(*len)++] = *s++;
		n--;
	}
	out[*len] = '\0';
	return n > 0;
}

/* Where a password value starts in url at i ("password=" there), or 0. */
static size_t
password_at(const char *url, size_t i)
{
	size_t j;

	/* ':' too: "postgresql:password=..." is a key=value string. */
	if (strncmp(url + i, "password", 8) != 0 ||
	    (i > 0 && strchr(" \t?&:", url[i - 1]) == NULL))
		return 0;
	j = i + 8;
	j += strspn(url + j, " \t");
	if (url[j] != '=')
		return 0;
	j++;
	return j + strspn(url + j, " \t");
}

/*
 * The audit chain a new connection appends to (audit.c): spread by
 * process and by connection, so that the connections of a farm seldom
 * share a head. Nothing depends on which: any chain verifies.
 */
static int
home_chain(const struct sotp_store *st)
{
	static unsigned int opened;
	unsigned int n = (unsigned int)sotp_store_audit_chains(st);

	return 1 +
	    (int)(((unsigned int)getpid() * 2654435761u +
	              __atomic_fetch_add(&opened, 1, __ATOMIC_RELAXED)) %
	        n);
}

/*
 * One pass of masking (sotp_store_url_redact makes it a fixed point).
 * Returns 1 when out[outsz] was too small.
 */
static int
mask(const char *url, char *out, size_t outsz)
{
	const char *auth, *at, *colon;
	size_t i = 0, j, len = 0, authlen;
	int cut = 0;

	out[0] = '\0';
	/* scheme://user:PASSWORD@host/... */
	if ((auth = strstr(url, "://")) != NULL) {
		auth += 3;
		authlen = strcspn(auth, "/?#");
		at = memchr(auth, '@', authlen);
		if (at != NULL &&
		    (colon = memchr(auth, ':', (size_t)(at - auth))) != NULL) {
			cut |= put(
			    out, outsz, &len, url, (size_t)(colon - url) + 1);
			cut |= put(out, outsz, &len, "***", 3);
			i = (size_t)(at - url);
		}
	}
	/* password=VALUE, in a URI query or a key=value string. */
	while (url[i] != '\0') {
		if ((j = password_at(url, i)) == 0) {
			cut |= put(out, outsz, &len, url + i, 1);
			i++;
			continue;
		}
		cut |= put(out, outsz, &len, url + i, j - i);
		cut |= put(out, outsz, &len, "***", 3);
		if (url[j] == '\'') {
			for (j++; url[j] != '\0' && url[j] != '\''; j++)
				if (url[j] == '\\' && url[j + 1] != '\0')
					j++;
			if (url[j] == '\'')
				j++;
		}
		/*
		 * Up to the next separator, quoted part or not: what is glued
		 * to the value goes with it, so that masking a masked string
		 * changes nothing (a policy dump reads back the same).
		 */
		j += strcspn(url + j, " \t&#");
		i = j;
	}
	return cut;
}

void
sotp_store_url_redact(const char *url, char *out, size_t outsz)
{
	char *again = NULL;
	size_t n = 0, scheme;
	int odd;

	if (outsz == 0)
		return;
	out[0] = '\0';
	if (url == NULL)
		return;
	/*
	 * Masking what is masked must change nothing, or a policy dump would
	 * not read back as the same policy. A URL too odd for that (a masked
	 * value held the '/' that ended the authority, say), or too long for
	 * out, is shown as its scheme alone.
	 */
	odd = mask(url, out, outsz);
	if (!odd &&
	    ((again = malloc(outsz)) == NULL || mask(out, again, outsz) ||
	        strcmp(again, out) != 0))
		odd = 1;
	free(again);
	if (odd) {
		scheme = strcspn(url, ":");
		put(out, outsz, &n, url, scheme);
		put(out, outsz, &n, url[scheme] == ':' ? ":***" : "***",
		    url[scheme] == ':' ? 4 : 3);
	}
}

int
sotp_store_open(const char *url, int create, struct sotp_store **out, char *err,
    size_t errsz)
{
	return sotp_store_open_with(
	    url, NULL, create ? SOTP_OPEN_CREATE : 0, out, err, errsz);
}

int
sotp_store_open_with(const char *url, const struct sotp_limits *lim, int flags,
    struct sotp_store **out, char *err, size_t errsz)
{
	static const struct sotp_limits defaults = {SOTP_CONNECT_TIMEOUT_S,
	    SOTP_STATEMENT_TIMEOUT_MS, SOTP_LOCK_TIMEOUT_MS};
	struct sotp_store *st = NULL;
	const struct sotp_store_driver *drv = NULL;
	const char *colon;
	size_t i, n;
	int rc = SOTP_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (err != NULL && errsz > 0)
		err[0] = '\0';
	if (url == NULL || out == NULL) {
		if (err != NULL && errsz > 0)
			sotp_strlcpy(err, "store: invalid argument", errsz);
		return SOTP_ERR_INVALID_ARG;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	st->op = "open";
	st->lim = lim != NULL ? *lim : defaults;
	if ((colon = strchr(url, ':')) != NULL) {
		n = (size_t)(colon - url);
		for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
			if (strlen(schemes[i].scheme) == n &&
			    strncmp(schemes[i].scheme, url, n) == 0)
				drv = schemes[i].drv;
		}
	}
	if (drv == NULL) {
		/* The URL itself is not secret, but a typo'd one could hold a
		 * password (postgresql://user:pw@...): name the scheme only. */
		sotp_store_seterr(st,
		    "unsupported store URL scheme \"%.*s\" (expected sqlite:PATH or postgresql://...)",
		    colon != NULL ? (int)(colon - url) : 0, url);
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	st->drv = drv;
	st->home_chain = home_chain(st);
	/* Kept for a reopen; it may hold a password, so it is wiped. */
	if ((st->target = sotp_strdup(colon + 1)) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if ((rc = drv->open(st, st->target, flags)) != SOTP_OK)
		goto out;
	st->lost = 0;
	*out = st;
	st = NULL;
	rc = SOTP_OK;
out:
	if (st != NULL) {
		if (err != NULL && errsz > 0)
			sotp_strlcpy(err, st->err, errsz);
		sotp_store_close(st);
	}
	return rc;
}

/*
 * A level ended, st->depth the levels left: the owner's hook hears
 * whether its work was kept (the audit lines waiting for it, audit.c)
 * and, when it was not, the error that led here.
 */
static void
level_ended(struct sotp_store *st, int kept)
{
	if (st->txn_end != NULL)
		st->txn_end(st->txn_arg, st->depth, kept, kept ? "" : st->err);
}

/* The levels are gone without a word from the database (lost, closed). */
static void
levels_gone(struct sotp_store *st)
{
	if (st->depth == 0)
		return;
	st->depth = 0;
	level_ended(st, 0);
}

void
sotp_store_close(struct sotp_store *st)
{
	if (st == NULL)
		return;
	if (st->drv != NULL)
		st->drv->close(st);
	/* Closed with a transaction open: none of it was committed. */
	if (st->depth > 0 && st->drv != NULL)
		sotp_store_seterr(st, "%s %s: closed inside a transaction",
		    st->drv->name, st->where);
	levels_gone(st);
	sotp_free_string(st->target);
	free(st);
}

const char *
sotp_store_errmsg(const struct sotp_store *st)
{
	return st != NULL ? st->err : "";
}

const char *
sotp_store_where(const struct sotp_store *st)
{
	return st != NULL ? st->where : "";
}

void
sotp_store_set_metrics(struct sotp_store *st, struct sotp_metrics *m)
{
	if (st != NULL)
		st->metrics = m;
}

void
sotp_store_set_trace(struct sotp_store *st, sotp_store_trace_fn *fn, void *arg)
{
	if (st == NULL)
		return;
	st->trace = fn;
	st->trace_arg = arg;
}

void
sotp_store_set_txn_hook(struct sotp_store *st, sotp_store_txn_fn *fn, void *arg)
{
	if (st == NULL)
		return;
	st->txn_end = fn;
	st->txn_arg = arg;
}

int
sotp_store_lost(const struct sotp_store *st)
{
	return st != NULL && (st->lost || st->conn == NULL);
}

/*
 * A reopen is a new connection with the same URL: with several hosts and
 * target_session_attrs=read-write, the one that is the primary now, which
 * is how a farm follows a failover without a restart.
 */
int
sotp_store_heal(struct sotp_store *st)
{
	int64_t now;
	int rc;

	if (st == NULL || st->drv == NULL || st->target == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (!sotp_store_lost(st))
		return SOTP_OK;
	now = (int64_t)(sotp_monotonic_us() / 1000);
	if (now < st->reopen_after) {
		/* The text of the failed reopen stands. */
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	st->drv->close(st);
	levels_gone(st);
	st->busy = 0;
	st->op = "open";
	st->err[0] = '\0';
	rc = st->drv->open(st, st->target, 0);
	if (rc != SOTP_OK) {
		st->drv->close(st);
		st->lost = 1;
		st->reopen_after = now + SOTP_REOPEN_DELAY_MS;
		sotp_metrics_reopen(st->metrics, 0);
		/* Whatever went wrong, this handle cannot serve for now. */
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	st->lost = 0;
	sotp_metrics_reopen(st->metrics, 1);
	return SOTP_OK;
}

int
sotp_store_resume(struct sotp_store *st)
{
	char keep[sizeof(st->err)];
	int rc;

	if (st == NULL || st->drv == NULL || st->conn == NULL || st->depth < 1)
		return SOTP_ERR_STORE_UNAVAILABLE;
	if (!st->lost)
		return SOTP_OK;
	/* Aborted (-1) or gone (0): nothing of it can be committed. */
	if (st->drv->txn_state(st) != 1)
		return SOTP_ERR_STORE_UNAVAILABLE;
	/* The failure's text stands: it says why the request was refused. */
	memcpy(keep, st->err, sizeof(keep));
	rc = st->drv->check(st);
	memcpy(st->err, keep, sizeof(keep));
	if (rc != SOTP_OK) {
		st->lost = 1;
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	st->lost = 0;
	return SOTP_OK;
}

int
sotp_db_enter(struct sotp_store *st, const char *op, int args_ok)
{
	if (st == NULL || st->drv == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (sotp_store_lost(st)) {
		st->op = op;
		/* Keep the first failure's text: it says what was lost. */
		if (st->err[0] == '\0')
			sotp_store_seterr(st,
			    "%s %s: %s: connection lost (reopened at the next request)",
			    st->drv->name, st->where, op);
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	st->err[0] = '\0';
	st->op = op;
	if (!args_ok) {
		sotp_store_seterr(st, "%s: invalid argument", op);
		return SOTP_ERR_INVALID_ARG;
	}
	/*
	 * Inside a transaction the check made when it began stands: all of
	 * it commits to the database that check saw (or to none). SQLite's
	 * check is a stat() of the file, once per decision rather than once
	 * per statement under load.
	 */
	if (st->depth > 0)
		return SOTP_OK;
	return st->drv->check(st);
}

/* ---- Statements and rows ---- */

/*
 * Starts statement id. One statement is open at a time: a row callback
 * that calls back into the store is a bug, refused rather than allowed to
 * reset the statement under its caller.
 */
static int
start(struct sotp_store *st, enum sotp_stmt id, const struct sotp_param *p,
    size_t n)
{
	int cache;

	if (st->busy || n > SOTP_STORE_MAX_PARAMS) {
		sotp_store_seterr(st, "%s: statement %d refused (%s)", st->op,
		    (int)id,
		    st->busy ? "another is open" : "too many parameters");
		return SOTP_ERR_INTERNAL;
	}
	/* The schema is read once per open: not worth keeping prepared. */
	cache = id >= SOTP_Q_SCHEMA_LOCK && id <= SOTP_Q_SCHEMA_VERSION
	    ? -1
	    : (int)id;
	st->busy = 1;
	if (st->trace != NULL)
		st->trace(st->trace_arg, st->drv->sql[id]);
	return st->drv->exec(st, cache, st->drv->sql[id], p, n);
}

static void
finish(struct sotp_store *st)
{
	if (st->busy)
		st->drv->done(st);
	st->busy = 0;
}

int
sotp_db_run(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n, int64_t *changes)
{
	int rc;

	if (changes != NULL)
		*changes = 0;
	if ((rc = start(st, id, p, n)) == SOTP_OK) {
		while ((rc = st->drv->next(st)) > 0)
			;
		if (rc == SOTP_OK && changes != NULL)
			*changes = st->drv->changes(st);
	}
	finish(st);
	return rc;
}

int
sotp_db_run_deferred(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n)
{
	int rc;

	st->defer = 1;
	rc = sotp_db_run(st, id, p, n, NULL);
	st->defer = 0;
	return rc;
}

/* Runs a change that must hit exactly one row; else SOTP_ERR_NOT_FOUND. */
int
sotp_db_update_one(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n)
{
	int64_t changed = 0;
	int rc;

	if ((rc = sotp_db_run(st, id, p, n, &changed)) != SOTP_OK)
		return rc;
	return changed == 1 ? SOTP_OK : SOTP_ERR_NOT_FOUND;
}

int
sotp_db_row(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n, sotp_db_row_fn *row, void *arg)
{
	int rc;

	if ((rc = start(st, id, p, n)) != SOTP_OK)
		goto out;
	if ((rc = st->drv->next(st)) <= 0) {
		if (rc == 0)
			rc = SOTP_ERR_NOT_FOUND;
		goto out;
	}
	if ((rc = row(st, arg)) != SOTP_OK)
		goto out;
	/* To the end: a statement with RETURNING completes its change. */
	while ((rc = st->drv->next(st)) > 0)
		;
out:
	finish(st);
	return rc;
}

int
sotp_db_rows(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n, sotp_db_row_fn *row, void *arg)
{
	int rc;

	if ((rc = start(st, id, p, n)) != SOTP_OK)
		goto out;
	while ((rc = st->drv->next(st)) > 0) {
		if ((rc = row(st, arg)) != 0) {
			if (rc > 0)
				rc = SOTP_OK;
			goto out;
		}
	}
out:
	finish(st);
	return rc;
}

/* ---- Columns, checked against what the schema allows ---- */

int
sotp_db_text(struct sotp_store *st, int col, char *dst, size_t dstsz)
{
	struct sotp_value v;

	dst[0] = '\0';
	st->drv->value(st, col, &v);
	if (v.type == SOTP_V_NULL)
		return 0;
	if (v.type != SOTP_V_TEXT || v.p == NULL || v.len >= dstsz ||
	    memchr(v.p, '\0', v.len) != NULL)
		return -1;
	memcpy(dst, v.p, v.len);
	dst[v.len] = '\0';
	return 0;
}

/* An empty blob is never stored (it is written as NULL). */
int
sotp_db_blob(
    struct sotp_store *st, int col, uint8_t *dst, size_t dstsz, size_t *len)
{
	struct sotp_value v;

	*len = 0;
	st->drv->value(st, col, &v);
	if (v.type == SOTP_V_NULL)
		return 0;
	if (v.type != SOTP_V_BLOB || v.p == NULL || v.len == 0 || v.len > dstsz)
		return -1;
	memcpy(dst, v.p, v.len);
	*len = v.len;
	return 0;
}

int
sotp_db_int(
    struct sotp_store *st, int col, int64_t min, int64_t max, int64_t *out)
{
	struct sotp_value v;

	*out = 0;
	st->drv->value(st, col, &v);
	if (v.type == SOTP_V_NULL)
		return min <= 0 && 0 <= max ? 0 : -1;
	if (v.type != SOTP_V_INT || v.i < min || v.i > max)
		return -1;
	*out = v.i;
	return 0;
}

const char *
sotp_db_str(struct sotp_store *st, int col)
{
	struct sotp_value v;

	st->drv->value(st, col, &v);
	return v.type == SOTP_V_TEXT && v.p != NULL ? v.p : "";
}

int
sotp_db_corrupt(struct sotp_store *st, const char *column)
{
	return sotp_store_dberr(
	    st, SOTP_ERR_STORE, "bad value in column %s", column);
}

/* ---- Transactions ---- */

/*
 * The engine groups a decision's state change and its audit row into one
 * transaction, one commit, one fsync; an operation that needs a
 * transaction of its own then runs in a savepoint inside it, so that its
 * refusal or failure never discards the caller's work.
 */
int
sotp_db_begin(struct sotp_store *st)
{
	int rc;

	if (st->depth > 0 && st->drv->txn_state(st) != 0) {
		rc = sotp_db_run(st, SOTP_Q_SAVEPOINT, NULL, 0, NULL);
	} else {
		/* A transaction the database ended by itself: undone. */
		levels_gone(st);
		st->chain = 0;
		rc = sotp_db_run(st, SOTP_Q_BEGIN, NULL, 0, NULL);
	}
	if (rc == SOTP_OK)
		st->depth++;
	return rc;
}

static int
commit_level(struct sotp_store *st)
{
	int rc;

	/*
	 * A failed statement may have aborted the transaction (PostgreSQL),
	 * and COMMIT would then "succeed" as a ROLLBACK.
	 */
	if (st->drv->txn_state(st) < 0)
		return sotp_store_dberr(
		    st, SOTP_ERR_STORE, "transaction was rolled back");
	rc = sotp_db_run(
	    st, st->depth > 1 ? SOTP_Q_RELEASE : SOTP_Q_COMMIT, NULL, 0, NULL);
	if (rc == SOTP_OK) {
		st->depth--;
		level_ended(st, 1);
	}
	return rc;
}

/* Errors here are ignored: whatever led here has failed already. */
void
sotp_db_rollback(struct sotp_store *st)
{
	char keep[sizeof(st->err)];
	int was;

	/* The database may have rolled back by itself (SQLite on some I/O
	 * and full-disk errors, a lost PostgreSQL connection). */
	if (st->drv->txn_state(st) == 0) {
		levels_gone(st);
		return;
	}
	memcpy(keep, st->err, sizeof(keep));
	was = st->depth;
	if (st->depth > 1) {
		/* Also clears an aborted state back to the caller's work. */
		(void)sotp_db_run(st, SOTP_Q_ROLLBACK_TO, NULL, 0, NULL);
		(void)sotp_db_run(st, SOTP_Q_RELEASE, NULL, 0, NULL);
		st->depth--;
	} else {
		st->depth = 0;
		(void)sotp_db_run(st, SOTP_Q_ROLLBACK, NULL, 0, NULL);
	}
	memcpy(st->err, keep, sizeof(keep));
	if (was > 0)
		level_ended(st, 0);
}

int
sotp_db_end(struct sotp_store *st, int rc)
{
	if (rc == SOTP_OK && (rc = commit_level(st)) == SOTP_OK)
		return SOTP_OK;
	sotp_db_rollback(st);
	return rc;
}

static int
ignore_row(struct sotp_store *st, void *arg)
{
	(void)st;
	(void)arg;
	return SOTP_OK;
}

/*
 * An outermost transaction takes its audit chain's head first (this
 * connection's chain, audit.c). Every such transaction appends to it, and
 * so locks the head before it commits; taking it first gives one lock
 * order for all of them, the head before any contract or token
 * (PostgreSQL; SQLite's BEGIN IMMEDIATE already orders everything). That order
 * matters with group commit: a group holds the head from its first decision to
 * its COMMIT while later decisions take their contracts, and two radiusd of a
 * farm taking the head last would wait on each other in a cycle.
 */
int
sotp_store_begin(struct sotp_store *st)
{
	struct sotp_param p[] = {SOTP_PINT(0)};
	int rc;

	if ((rc = sotp_db_enter(st, "begin", 1)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK || st->depth != 1 ||
	    !st->drv->row_locks)
		return rc;
	p[0].i = sotp_store_audit_chain(st);
	rc = sotp_db_row(st, SOTP_Q_AUDIT_HEAD_LOCK, p, 1, ignore_row, NULL);
	if (rc == SOTP_ERR_NOT_FOUND)
		rc = SOTP_OK; /* the append will say what is wrong */
	if (rc != SOTP_OK)
		sotp_db_rollback(st);
	return rc;
}

/*
 * A transaction that takes every chain's head (a prune, the retag of a
 * key version's retirement) takes them all here, in chain order, before
 * anything else. Taking its own chain's head first, as sotp_store_begin
 * does, and the others after in chain order, two of them (two servers'
 * prunes, a prune and a rotation's retirement) would each hold the head
 * the other comes to next, and the server would abort one (deadlock
 * detected). An append holds one head only, so it waits for such a
 * transaction without closing a cycle.
 */
int
sotp_store_begin_every_head(struct sotp_store *st)
{
	struct sotp_param p[] = {SOTP_PINT(0)};
	int rc, chain, n;

	if ((rc = sotp_db_enter(st, "begin", 1)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK || st->depth != 1 ||
	    !st->drv->row_locks)
		return rc;
	n = sotp_store_audit_chains(st);
	for (chain = 1; chain <= n && rc == SOTP_OK; chain++) {
		p[0].i = chain;
		rc = sotp_db_row(
		    st, SOTP_Q_AUDIT_HEAD_LOCK, p, 1, ignore_row, NULL);
		if (rc == SOTP_ERR_NOT_FOUND)
			rc = SOTP_OK; /* the walk will say what is wrong */
	}
	if (rc != SOTP_OK)
		sotp_db_rollback(st);
	return rc;
}

/* Round trips to the database server so far (tests, issue 13). */
uint64_t
sotp_store_round_trips(const struct sotp_store *st)
{
	return st != NULL ? st->round_trips : 0;
}

int
sotp_store_depth(const struct sotp_store *st)
{
	return st != NULL ? st->depth : 0;
}

/*
 * No driver check here: every operation inside the transaction made one,
 * and a commit that fails rolls back.
 */
int
sotp_store_commit(struct sotp_store *st)
{
	if (st == NULL || st->drv == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (sotp_store_lost(st)) {
		/* Nothing of a lost handle is committed: undo what is open. */
		sotp_store_rollback(st);
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	st->err[0] = '\0';
	st->op = "commit";
	return sotp_db_end(st, SOTP_OK);
}

/* Keeps the error text of the failure that led here. */
void
sotp_store_rollback(struct sotp_store *st)
{
	/*
	 * Also on a lost handle whose connection is still there (a lock
	 * timeout): an open SQLite transaction would keep the file's write
	 * lock from every other process until the next request.
	 */
	if (st == NULL)
		return;
	if (st->conn != NULL)
		sotp_db_rollback(st);
	else
		levels_gone(st);
}

int
sotp_store_backup(struct sotp_store *st, const char *path)
{
	int rc;

	if ((rc = sotp_db_enter(st, "backup",
	         path != NULL && path[0] == '/' && st->depth == 0)) != SOTP_OK)
		return rc;
	if (st->drv->backup == NULL)
		return sotp_store_dberr(st, SOTP_ERR_CONFIG,
		    "not done here: use pg_dump, or base backups with WAL "
		    "archiving (see README, Backup)");
	return st->drv->backup(st, path);
}

/* ---- The schema ---- */

struct one_int {
	int64_t v;
	int rows;
};

static int
one_int_row(struct sotp_store *st, void *arg)
{
	struct one_int *o = arg;

	o->rows++;
	if (sotp_db_int(st, 0, INT64_MIN, INT64_MAX, &o->v) != 0)
		return sotp_db_corrupt(st, "(schema query)");
	return SOTP_OK;
}

/* The integer a schema query returns (0 if none) and its row count. */
static int
query_int(struct sotp_store *st, enum sotp_stmt id, struct one_int *o)
{
	o->v = 0;
	o->rows = 0;
	return sotp_db_rows(st, id, NULL, 0, one_int_row, o);
}

/*
 * Creation runs in one transaction under a lock (SQLite's BEGIN IMMEDIATE,
 * a PostgreSQL advisory lock) so two `init`s racing make it once. A
 * database that has tables but not ours is refused rather than written
 * into: the URL most likely names the wrong one.
 */
int
sotp_store_schema(struct sotp_store *st, int create)
{
	struct one_int o;
	int rc;

	st->op = "open";
	if (create && (rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	if (create &&
	    (rc = sotp_db_run(st, SOTP_Q_SCHEMA_LOCK, NULL, 0, NULL)) !=
	        SOTP_OK)
		goto out;
	if ((rc = query_int(st, SOTP_Q_SCHEMA_FOUND, &o)) != SOTP_OK)
		goto out;
	if (o.v == 0) {
		if (!create) {
			rc = sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
			    "no shinkin-otp schema (run \"shinkin-otp init\")");
			goto out;
		}
		if ((rc = query_int(st, SOTP_Q_SCHEMA_TABLES, &o)) != SOTP_OK)
			goto out;
		if (o.v != 0) {
			rc = sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
			    "not a shinkin-otp store (it holds other tables)");
			goto out;
		}
		if ((rc = st->drv->script(
		         st, st->drv->sql[SOTP_Q_SCHEMA_CREATE])) != SOTP_OK)
			goto out;
	}
	if ((rc = query_int(st, SOTP_Q_SCHEMA_VERSION, &o)) != SOTP_OK)
		goto out;
	/* init takes an older store to this version, in the same lock. */
	if (create && o.rows == 1 && o.v == 1 &&
	    ((rc = st->drv->script(st, st->drv->sql[SOTP_Q_SCHEMA_UPGRADE])) !=
	            SOTP_OK ||
	        (rc = query_int(st, SOTP_Q_SCHEMA_VERSION, &o)) != SOTP_OK))
		goto out;
	if (create && o.rows == 1 && o.v == 2 &&
	    ((rc = st->drv->script(
	          st, st->drv->sql[SOTP_Q_SCHEMA_UPGRADE_3])) != SOTP_OK ||
	        (rc = query_int(st, SOTP_Q_SCHEMA_VERSION, &o)) != SOTP_OK))
		goto out;
	if (create && o.rows == 1 && o.v == 3 &&
	    ((rc = st->drv->script(
	          st, st->drv->sql[SOTP_Q_SCHEMA_UPGRADE_4])) != SOTP_OK ||
	        (rc = query_int(st, SOTP_Q_SCHEMA_VERSION, &o)) != SOTP_OK))
		goto out;
	/* Tokens get their seed fingerprint from init, once it has keys. */
	if (create && o.rows == 1 && o.v == 4 &&
	    ((rc = st->drv->script(
	          st, st->drv->sql[SOTP_Q_SCHEMA_UPGRADE_5])) != SOTP_OK ||
	        (rc = query_int(st, SOTP_Q_SCHEMA_VERSION, &o)) != SOTP_OK))
		goto out;
	if (o.rows != 1 || o.v != SOTP_SCHEMA_VERSION) {
		rc = sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
		    "schema version %lld (%d rows), this build needs version %d%s",
		    (long long)o.v, o.rows, SOTP_SCHEMA_VERSION,
		    o.rows == 1 && o.v >= 1 && o.v < SOTP_SCHEMA_VERSION
		        ? " (run \"shinkin-otp init\")"
		        : "");
		goto out;
	}
	rc = SOTP_OK;
out:
	if (create)
		rc = sotp_db_end(st, rc);
	return rc;
}

/*
 * writer.c - one writer per process, and group commit (issue 13).
 *
 * Without it each radiusd thread writes through its own connection, and
 * SQLite lets one of them hold the file's write lock while the others
 * sleep in its busy handler (1, 2, 5, ... 100 ms naps): under load most of
 * a decision's time was spent asleep, and every decision paid its own
 * fsync. Here the contexts of one process hand their decisions' writes to
 * a writer: one connection, one decision at a time (a mutex, not a sleep),
 * and decisions that come while others are written share one transaction.
 *
 *   - The first decision that finds no transaction open begins one; each
 *     decision then runs as a savepoint inside it (sotp_store_begin nests),
 *     so that one decision's error undoes its own work only.
 *   - A decision whose savepoint is released looks whether another thread
 *     is already waiting for the writer. If so (and the group is not
 *     full), it hands the writer on and sleeps until the group's COMMIT;
 *     if not, it commits the group itself, for everyone in it.
 *   - Nobody in a group returns before the COMMIT that carries its replay
 *     mark, failure count and audit row has returned: with
 *     synchronous=FULL (SQLite) or synchronous_commit (PostgreSQL) that
 *     is after the fsync. When the COMMIT fails, the database has undone
 *     the whole group, and every decision in it gets the error: the engine
 *     then turns an accept into a refusal (finish_audited), fail closed.
 *
 * The audit chain's head is read once when a group begins (its row lock
 * is the group's from then on) and written once before its COMMIT: the
 * decisions append their rows to the chain through it in memory (as an
 * import's batch does), and a decision that is undone puts it back as it
 * was. On PostgreSQL that saves four round trips per decision.
 *
 * The last decision of a burst always commits (it sees nobody waiting),
 * so no group is left open: a thread counts itself as waiting before it
 * blocks on the mutex, and stops counting once it holds it.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sotp_int.h"

/* One decision waiting for its group's commit (on its thread's stack). */
struct writer_wait {
	sem_t done; /* posted once rc is set: its own, so no herd wakes */
	int rc;
	char err[SOTP_WRITER_ERR_MAX];
	struct writer_wait *next;
};

struct sotp_writer {
	struct sotp_ctx *ctx; /* owns the connection every write goes through */
	pthread_mutex_t lock;
	unsigned int coming;    /* threads blocked on lock (atomic) */
	unsigned int members;   /* decisions kept in the open group */
	unsigned int max_group; /* commit at this many, waiting or not */
	int open;               /* the group's transaction is open */
	/* The chain's head while a group is open; saved: before a decision */
	struct sotp_audit_head head, saved;
	struct writer_wait *waiting;
	uint64_t commits, decisions; /* counted for the tests */
};

int
sotp_writer_new(
    struct sotp_ctx *ctx, unsigned int max_group, struct sotp_writer **out)
{
	struct sotp_writer *w = NULL;

	if (out == NULL)
		goto fail;
	*out = NULL;
	if (ctx == NULL || ctx->st == NULL || ctx->writer != NULL ||
	    max_group == 0)
		goto fail;
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		sotp_ctx_free(ctx);
		return SOTP_ERR_NOMEM;
	}
	if (pthread_mutex_init(&w->lock, NULL) != 0) {
		free(w);
		sotp_ctx_free(ctx);
		return SOTP_ERR_SYSTEM;
	}
	w->ctx = ctx;
	w->max_group = max_group;
	*out = w;
	return SOTP_OK;
fail:
	sotp_ctx_free(ctx);
	return SOTP_ERR_INVALID_ARG;
}

void
sotp_writer_free(struct sotp_writer *w)
{
	if (w == NULL)
		return;
	/* Nobody may be inside: the contexts using it are gone. */
	if (w->open)
		sotp_store_rollback(w->ctx->st);
	pthread_mutex_destroy(&w->lock);
	sotp_ctx_free(w->ctx);
	free(w);
}

int
sotp_ctx_set_writer(struct sotp_ctx *ctx, struct sotp_writer *w)
{
	if (ctx == NULL || (w != NULL && w->ctx == ctx))
		return SOTP_ERR_INVALID_ARG;
	ctx->writer = w;
	return SOTP_OK;
}

/*
 * Tells every decision kept in the group its outcome (locked). A member
 * may return as soon as it is posted: its next is read first.
 */
static void
tell_group(struct sotp_writer *w, int rc, const char *err)
{
	struct writer_wait *m, *next;

	for (m = w->waiting; m != NULL; m = next) {
		next = m->next;
		m->rc = rc;
		if (rc != SOTP_OK)
			sotp_strlcpy(m->err, err, sizeof(m->err));
		sem_post(&m->done);
	}
	w->waiting = NULL;
	w->open = 0;
	w->members = 0;
}

/*
 * Ends the open group (locked): COMMIT, and every decision kept in it
 * learns the outcome. A group without members is committed all the same
 * (it holds nothing; ending it frees the database's write lock).
 */
static void
commit_group(struct sotp_writer *w)
{
	struct sotp_store *st = w->ctx->st;
	int rc;

	if (!w->open)
		return;
	/* On failure the commit has rolled the whole group back. */
	if ((rc = sotp_store_audit_head_set(st, &w->head)) == SOTP_OK)
		rc = sotp_store_commit(st);
	else
		sotp_store_rollback(st);
	w->commits++;
	tell_group(w, rc, sotp_store_errmsg(st));
}

/*
 * The group's transaction is gone (the database rolled it back after an
 * I/O error, the connection was lost) or out of step: nothing in it will
 * be committed, and everyone in it is told so.
 */
static void
fail_group(struct sotp_writer *w)
{
	struct sotp_store *st = w->ctx->st;
	char err[SOTP_WRITER_ERR_MAX];

	snprintf(err, sizeof(err),
	    "group commit: the group's transaction was lost: %s",
	    sotp_store_errmsg(st));
	while (sotp_store_depth(st) > 0)
		sotp_store_rollback(st);
	tell_group(w, SOTP_ERR_STORE, err);
}

/*
 * The end of one decision (locked, and unlocks): its savepoint released
 * (rc SOTP_OK) or undone, then either handed on to whoever waits for the
 * writer or the group committed; a kept decision returns the group's
 * outcome.
 */
static int
leave_locked(struct sotp_writer *w, int rc, char *err, size_t errsz)
{
	struct writer_wait me;
	struct sotp_store *st = w->ctx->st;
	int kept = 0, have_sem;

	memset(&me, 0, sizeof(me));
	/* Without it no wait for the commit: the decision is not kept. */
	have_sem = sem_init(&me.done, 0, 0) == 0;
	if (!have_sem && rc == SOTP_OK) {
		rc = SOTP_ERR_SYSTEM;
		if (err != NULL)
			sotp_strlcpy(
			    err, "group commit: sem_init failed", errsz);
	}
	if (w->open && rc == SOTP_OK) {
		/* On failure the release has undone the savepoint. */
		if ((rc = sotp_store_commit(st)) == SOTP_OK) {
			kept = 1;
			w->members++;
			w->decisions++;
			me.next = w->waiting;
			w->waiting = &me;
		} else {
			w->head = w->saved;
			if (err != NULL)
				sotp_strlcpy(err, sotp_store_errmsg(st), errsz);
		}
	} else if (w->open) {
		/* Back to the group's work as it was before this decision. */
		sotp_store_rollback(st);
		w->head = w->saved;
	}
	/*
	 * A failure that marks the connection lost (a lock_timeout on
	 * PostgreSQL) was this decision's, and its savepoint is undone: the
	 * group goes on when its transaction stands, else it is lost for all.
	 * Left lost, the group's COMMIT would refuse every decision kept in
	 * it for one that waited too long for another server's row lock.
	 */
	if (w->open && sotp_store_depth(st) == 1 && sotp_store_lost(st) &&
	    sotp_store_resume(st) != SOTP_OK)
		fail_group(w);
	if (w->open && sotp_store_depth(st) != 1)
		fail_group(w);
	/*
	 * Someone is about to take the writer: the group goes on, and the
	 * last of the burst commits it. Else (or when full) commit now.
	 */
	if (w->open &&
	    (__atomic_load_n(&w->coming, __ATOMIC_SEQ_CST) == 0 ||
	        w->members >= w->max_group))
		commit_group(w);
	pthread_mutex_unlock(&w->lock);
	if (kept) {
		while (sem_wait(&me.done) != 0)
			; /* EINTR */
		rc = me.rc;
		if (rc != SOTP_OK && err != NULL)
			sotp_strlcpy(err, me.err, errsz);
	}
	if (have_sem)
		sem_destroy(&me.done);
	return rc;
}

int
sotp_writer_enter(struct sotp_writer *w, struct sotp_store **st,
    struct sotp_audit_head **head, char *err, size_t errsz)
{
	int rc;

	*st = NULL;
	*head = NULL;
	__atomic_add_fetch(&w->coming, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&w->lock);
	__atomic_sub_fetch(&w->coming, 1, __ATOMIC_SEQ_CST);
	if (!w->open) {
		/*
		 * Between groups: a lost connection is reopened here. A group
		 * locks the contracts of all its decisions, so every writer of
		 * a farm takes chain 1's head first: one line of groups, never
		 * two groups each holding a contract the other waits for.
		 */
		if ((rc = sotp_ctx_ready(w->ctx)) == SOTP_OK)
			sotp_store_audit_chain_home(w->ctx->st, 1);
		if (rc != SOTP_OK ||
		    (rc = sotp_store_begin(w->ctx->st)) != SOTP_OK ||
		    (rc = sotp_store_audit_head(w->ctx->st,
		         sotp_store_audit_chain(w->ctx->st), 1, &w->head)) !=
		        SOTP_OK) {
			sotp_store_rollback(w->ctx->st);
			sotp_strlcpy(err,
			    rc == SOTP_ERR_STORE_UNAVAILABLE ||
			            w->ctx->err[0] == '\0'
			        ? sotp_store_errmsg(w->ctx->st)
			        : w->ctx->err,
			    errsz);
			pthread_mutex_unlock(&w->lock);
			return rc;
		}
		w->open = 1;
		w->members = 0;
	}
	if ((rc = sotp_store_begin(w->ctx->st)) != SOTP_OK) {
		/* The group's transaction is not usable: end it for all. */
		sotp_strlcpy(err, sotp_store_errmsg(w->ctx->st), errsz);
		(void)leave_locked(w, rc, NULL, 0);
		return rc;
	}
	w->saved = w->head;
	*st = w->ctx->st;
	*head = &w->head;
	return SOTP_OK;
}

int
sotp_writer_leave(struct sotp_writer *w, int rc, char *err, size_t errsz)
{
	return leave_locked(w, rc, err, errsz);
}

void
sotp_writer_counts(
    struct sotp_writer *w, uint64_t *commits, uint64_t *decisions)
{
	pthread_mutex_lock(&w->lock);
	*commits = w->commits;
	*decisions = w->decisions;
	pthread_mutex_unlock(&w->lock);
}

unsigned int
sotp_writer_coming(struct sotp_writer *w)
{
	return __atomic_load_n(&w->coming, __ATOMIC_SEQ_CST);
}

struct sotp_store *
sotp_writer_store(struct sotp_writer *w)
{
	return w->ctx->st;
}

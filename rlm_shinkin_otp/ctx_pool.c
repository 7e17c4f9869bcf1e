/*
 * ctx_pool.c - one loaded shinkin-otp context per radiusd thread.
 */
#include "ctx_pool.h"

#include <stdlib.h>

/* One thread's context, also linked into its pool. */
struct ctx_pool_entry {
	struct sotp_ctx *ctx;
	struct ctx_pool *pool;
	struct ctx_pool_entry *prev, *next;
};

static void
unlink_entry(struct ctx_pool_entry *e)
{
	struct ctx_pool *p = e->pool;

	pthread_mutex_lock(&p->lock);
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		p->entries = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	pthread_mutex_unlock(&p->lock);
	e->prev = e->next = NULL;
}

static void
free_entry(struct ctx_pool_entry *e)
{
	sotp_ctx_free(e->ctx);
	free(e);
}

/* The key's destructor: a radiusd thread is exiting. */
static void
thread_exit(void *arg)
{
	struct ctx_pool_entry *e = arg;

	unlink_entry(e);
	free_entry(e);
}

int
ctx_pool_init(struct ctx_pool *p, ctx_pool_open_fn *open, void *arg)
{
	p->open = open;
	p->arg = arg;
	p->entries = NULL;
	if (pthread_mutex_init(&p->lock, NULL) != 0)
		return -1;
	p->lock_ok = 1;
	if (pthread_key_create(&p->key, thread_exit) != 0)
		return -1;
	p->key_ok = 1;
	return 0;
}

struct sotp_ctx *
ctx_pool_get(struct ctx_pool *p, char *why, size_t whysz)
{
	struct ctx_pool_entry *e = pthread_getspecific(p->key);

	why[0] = '\0';
	if (e != NULL)
		return e->ctx;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->pool = p;
	if (p->open(p->arg, &e->ctx, why, whysz) != SOTP_OK) {
		free(e);
		return NULL;
	}
	if (pthread_setspecific(p->key, e) != 0) {
		free_entry(e);
		return NULL;
	}
	pthread_mutex_lock(&p->lock);
	e->next = p->entries;
	if (e->next != NULL)
		e->next->prev = e;
	p->entries = e;
	pthread_mutex_unlock(&p->lock);
	return e->ctx;
}

void
ctx_pool_free(struct ctx_pool *p)
{
	struct ctx_pool_entry *e;

	/*
	 * Deleting the key first means no thread destructor runs from now
	 * on; then free what live threads still hold. XXX a thread already
	 * inside thread_exit at this very moment would race; radiusd
	 * detaches after its workers have stopped.
	 */
	if (p->key_ok)
		pthread_key_delete(p->key);
	p->key_ok = 0;
	while ((e = p->entries) != NULL) {
		p->entries = e->next;
		free_entry(e);
	}
	if (p->lock_ok)
		pthread_mutex_destroy(&p->lock);
	p->lock_ok = 0;
}

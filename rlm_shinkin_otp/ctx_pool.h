/*
 * ctx_pool.h - one loaded shinkin-otp context per radiusd thread.
 *
 * A core context (policy, key, store handle) is used by one thread at a
 * time, and radiusd's worker threads come and go: each thread opens its
 * own on first use, held as a thread-specific value, and gives it back
 * when it exits. (FreeRADIUS's connection pool would do, but it lives in
 * the radiusd executable, not in libfreeradius-server, so a module using
 * it cannot be linked with -Wl,--no-undefined.) A context is never
 * dropped for a store failure: the core reopens a lost store connection
 * itself, at the thread's next request (sotp_ctx_ready), and refuses the
 * request that saw the loss.
 */
#ifndef RLM_SHINKIN_OTP_CTX_POOL_H
#define RLM_SHINKIN_OTP_CTX_POOL_H

#include <pthread.h>
#include <stddef.h>

#include "shinkin_otp.h"

/*
 * Opens a loaded context for the pool; on failure returns an rc and
 * writes the core's detail ("file:line: ...") to why[whysz].
 */
typedef int ctx_pool_open_fn(
    void *arg, struct sotp_ctx **out, char *why, size_t whysz);

struct ctx_pool_entry;

struct ctx_pool {
	ctx_pool_open_fn *open;
	void *arg;
	pthread_key_t key;
	pthread_mutex_t lock; /* guards the list of entries only */
	int key_ok, lock_ok;
	struct ctx_pool_entry *entries;
};

/* Sets the pool up; 0, or -1 when pthreads refuse. */
int ctx_pool_init(struct ctx_pool *p, ctx_pool_open_fn *open, void *arg);
/*
 * This thread's context, opened on first use; NULL on failure, with the
 * reason in why[whysz].
 */
struct sotp_ctx *ctx_pool_get(struct ctx_pool *p, char *why, size_t whysz);
/* Frees every context; radiusd calls it once its workers have stopped. */
void ctx_pool_free(struct ctx_pool *p);

#endif /* RLM_SHINKIN_OTP_CTX_POOL_H */

/*
 * health.c - is this server fit to decide? Four checks, each with a real
 * round trip rather than a look at configuration: the policy is read and
 * validated, the master key loaded, the store opened (and its schema
 * checked), and a write committed and undone. The write goes through the
 * same transaction path as a decision's, so on PostgreSQL with a
 * synchronous standby a probe that passes means the standby answered too.
 *
 * The probe's row is a challenge-state row with a random id: that table
 * is already purged by expiry, the row is deleted in the same
 * transaction, and nothing about customers is read or written.
 */
#include "sotp_int.h"

#include <string.h>

static const char *const check_names[SOTP_HC_COUNT] = {
    "policy", "key", "store", "write"};

static void
result(struct sotp_health *h, enum sotp_health_check i, int rc, uint64_t t0,
    const char *detail)
{
	h->check[i].state = rc == SOTP_OK ? SOTP_HEALTH_OK : SOTP_HEALTH_FAILED;
	h->check[i].rc = rc;
	h->check[i].ms = (unsigned int)((sotp_monotonic_us() - t0) / 1000);
	sotp_strlcpy(h->check[i].detail, detail, sizeof(h->check[i].detail));
}

static void
check_key(struct sotp_ctx *ctx, struct sotp_health *h)
{
	uint8_t key[SOTP_KEY_LEN];
	char err[sizeof(h->check[0].detail)];
	uint64_t t0 = sotp_monotonic_us();
	int rc;

	err[0] = '\0';
	rc = sotp_key_load(ctx->pol.master_key, key, err, sizeof(err));
	SOTP_WIPE_ARRAY(key);
	result(
	    h, SOTP_HC_KEY, rc, t0, rc == SOTP_OK ? ctx->pol.master_key : err);
}

/* Opens the store (a read-only one too, so the write check can say so). */
static void
check_store(struct sotp_ctx *ctx, struct sotp_health *h, time_t now)
{
	struct sotp_store *st = NULL;
	struct sotp_limits lim;
	char err[sizeof(h->check[0].detail)];
	uint8_t id[16];
	uint64_t t0 = sotp_monotonic_us();
	int rc;

	sotp_ctx_limits(ctx, &lim);
	rc = sotp_store_open_with(
	    ctx->pol.store, &lim, SOTP_OPEN_READONLY_OK, &st, err, sizeof(err));
	result(h, SOTP_HC_STORE, rc, t0,
	    rc == SOTP_OK ? sotp_store_where(st) : err);
	if (rc != SOTP_OK)
		return;
	t0 = sotp_monotonic_us();
	if ((rc = sotp_random(id, sizeof(id))) == SOTP_OK)
		rc = sotp_store_probe(st, id, (int64_t)now);
	result(h, SOTP_HC_WRITE, rc, t0,
	    rc == SOTP_OK ? "a row inserted, read back, deleted and committed"
	        : sotp_store_errmsg(st)[0] != '\0' ? sotp_store_errmsg(st)
	                                           : sotp_strerror(rc));
	sotp_store_close(st);
}

int
sotp_health(
    struct sotp_ctx *ctx, const char *path, time_t now, struct sotp_health *h)
{
	uint64_t t0;
	int rc, i;

	if (ctx == NULL || h == NULL)
		return SOTP_ERR_INVALID_ARG;
	memset(h, 0, sizeof(*h));
	for (i = 0; i < SOTP_HC_COUNT; i++)
		h->check[i].name = check_names[i];
	t0 = sotp_monotonic_us();
	rc = sotp_ctx_load_policy(ctx, path);
	if (rc == SOTP_ERR_NOMEM)
		return rc;
	result(h, SOTP_HC_POLICY, rc, t0,
	    rc == SOTP_OK ? ctx->pol.path : sotp_ctx_errmsg(ctx));
	if (rc != SOTP_OK)
		return SOTP_OK;
	/* The key and the store do not depend on each other: run both. */
	check_key(ctx, h);
	check_store(ctx, h, now);
	h->healthy = 1;
	for (i = 0; i < SOTP_HC_COUNT; i++)
		if (h->check[i].state != SOTP_HEALTH_OK)
			h->healthy = 0;
	/* Leave nothing loaded that a later call could take as ready. */
	ctx->have_policy = 0;
	return SOTP_OK;
}

/*
 * health.c - is this server fit to decide? Four checks, each with a real
 * round trip rather than a look at configuration: the policy is read and
 * validated, the key-encryption key loaded (a PKCS#11 token logged into)
 * and the data keys unwrapped under it, the store opened (and its schema
 * checked), and a write committed and undone. The write goes through the
 * same transaction path as a decision's, so on PostgreSQL with a
 * synchronous standby a probe that passes means the standby answered too.
 *
 * The probe's row is a challenge-state row with a random id: that table
 * is already purged by expiry, the row is deleted in the same
 * transaction, and nothing about customers is read or written.
 */
#include "sotp_int.h"

#include <stdio.h>
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

/*
 * The key-encryption key (the master key file, or the key in a PKCS#11
 * token, logged into), and through the store when it opened every live
 * data-key version unwrapped under it: what a decision needs.
 */
static void
check_key(struct sotp_ctx *ctx, struct sotp_health *h, struct sotp_store *st)
{
	struct sotp_keyring *k = NULL;
	char err[sizeof(h->check[0].detail)];
	char ok[sizeof(h->check[0].detail)];
	uint64_t t0 = sotp_monotonic_us();
	uint32_t kv = 0;
	int rc;

	err[0] = '\0';
	if ((rc = sotp_keyring_new(&ctx->pol, &k, err, sizeof(err))) != SOTP_OK)
		goto out;
	if (st == NULL) {
		snprintf(ok, sizeof(ok),
		    "%s (the data keys not read: no store)",
		    sotp_keyring_kek(k));
		goto out;
	}
	/* The context borrows both for the one sync, and gives them back. */
	ctx->keys = k;
	ctx->st = st;
	if ((rc = sotp_keys_sync(ctx, 1)) == SOTP_OK)
		rc = sotp_keys_current(ctx, &kv);
	ctx->keys = NULL;
	ctx->st = NULL;
	if (rc != SOTP_OK)
		sotp_strlcpy(err,
		    ctx->err[0] != '\0' ? ctx->err : sotp_strerror(rc),
		    sizeof(err));
	else
		snprintf(ok, sizeof(ok), "%s, data key version %u",
		    sotp_keyring_kek(k), (unsigned int)kv);
out:
	sotp_keyring_free(k);
	result(h, SOTP_HC_KEY, rc, t0, rc == SOTP_OK ? ok : err);
}

/*
 * Opens the store (a read-only one too, so the write check can say so);
 * *out the store, open, when it did.
 */
static void
check_store(struct sotp_ctx *ctx, struct sotp_health *h, time_t now,
    struct sotp_store **out)
{
	struct sotp_store *st = NULL;
	struct sotp_limits lim;
	char err[sizeof(h->check[0].detail)];
	uint8_t id[16];
	uint64_t t0 = sotp_monotonic_us();
	int rc;

	*out = NULL;
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
	*out = st;
}

int
sotp_health(
    struct sotp_ctx *ctx, const char *path, time_t now, struct sotp_health *h)
{
	struct sotp_store *st = NULL;
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
	/*
	 * The store first, so that the key check can unwrap the data keys
	 * through it; a store that fails leaves the KEK still checked.
	 */
	check_store(ctx, h, now, &st);
	check_key(ctx, h, st);
	sotp_store_close(st);
	h->healthy = 1;
	for (i = 0; i < SOTP_HC_COUNT; i++)
		if (h->check[i].state != SOTP_HEALTH_OK)
			h->healthy = 0;
	/* Leave nothing loaded that a later call could take as ready. */
	ctx->have_policy = 0;
	return SOTP_OK;
}

int
sotp_ready(struct sotp_ctx *ctx)
{
	struct sotp_key_ring ring;
	int rc;

	if (ctx == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_key_ring(ctx->st, 0, &ring)) != SOTP_OK)
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

/*
 * keys_admin.c - the key ceremonies: the first data-encryption key, a
 * rotation, a change of key-encryption key, and what the store holds.
 *
 * A rotation, step by step, each step one transaction under the key
 * ring's row lock and one audit row, so that a kill at any point loses
 * nothing and the next `key rotate` takes it up where it stopped:
 *   begin    a new version (wrapped under this policy's KEK) becomes
 *            current ("key.rotate"); from now on new values, States and
 *            audit rows are made under it, by every server within the
 *            policy's refresh interval;
 *   reseal   batches of token secrets, then card grids, still sealed
 *            under an older version are unsealed and sealed again under
 *            the current one ("key.reseal"); PAM and RADIUS go on
 *            serving, since every live version still unseals, and a
 *            value a decision holds is skipped (PostgreSQL) or waits for
 *            it (SQLite) and comes in a later batch;
 *   retire   once nothing is left under an older version, and every
 *            State it may have signed has expired (the refresh interval
 *            for every server to have moved, plus the State lifetime),
 *            its wrapped data key is deleted ("key.retire"); the
 *            database refuses that while any value still names it.
 *
 * A change of KEK (file to HSM, one HSM for another) re-wraps keys only:
 * `key rewrap NEW.conf` wraps every version also under the new KEK, each
 * server moves to the new policy when its operator is ready (both work
 * meanwhile), and `key drop-kek OLD` deletes the old wrappings.
 */
#include "sotp_int.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- making a version ---- */

/* A new data key for version v: its key_dek row, its two wrapped keys. */
static int
mint(struct sotp_ctx *ctx, uint32_t v, int64_t now)
{
	uint8_t dek[SOTP_KEY_LEN], audit[SOTP_KEY_LEN], blob[SOTP_WRAP_LEN];
	const char *kek = sotp_keyring_kek(ctx->keys);
	size_t len = 0;
	int rc;

	if ((rc = sotp_random(dek, sizeof(dek))) != SOTP_OK ||
	    (rc = sotp_kdf(dek, "shinkin-otp audit v1", audit)) != SOTP_OK)
		goto out;
	if ((rc = sotp_store_key_add(ctx->st, v, now)) != SOTP_OK ||
	    (rc = sotp_keyring_wrap(ctx->keys, v, SOTP_WRAP_DEK, dek, blob,
	         &len, ctx->err, sizeof(ctx->err))) != SOTP_OK ||
	    (rc = sotp_store_key_wrap_put(
	         ctx->st, v, kek, SOTP_WRAP_DEK, blob, len)) != SOTP_OK ||
	    (rc = sotp_keyring_wrap(ctx->keys, v, SOTP_WRAP_AUDIT, audit, blob,
	         &len, ctx->err, sizeof(ctx->err))) != SOTP_OK ||
	    (rc = sotp_store_key_wrap_put(
	         ctx->st, v, kek, SOTP_WRAP_AUDIT, blob, len)) != SOTP_OK)
		goto out;
out:
	SOTP_WIPE_ARRAY(dek);
	SOTP_WIPE_ARRAY(audit);
	return rc;
}

/* The store's error text as the context's, for the caller; returns rc. */
static int
store_fail(struct sotp_ctx *ctx, int rc)
{
	if (ctx->err[0] == '\0')
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

/*
 * A store upgraded from before key versions is at version 0, the master
 * key file, which nothing in it wraps yet: its data key (the file's) and
 * audit subkey are wrapped under the KEK of that same file, so that they
 * can be wrapped under another (a token) one day and the file retired.
 * *adopted = 0 when there is nothing to do.
 */
static int
adopt_v0(struct sotp_ctx *ctx, const struct sotp_key_ring *ring, int *adopted)
{
	uint8_t dek[SOTP_KEY_LEN], audit[SOTP_KEY_LEN], blob[SOTP_WRAP_LEN];
	const char *kek = sotp_keyring_kek(ctx->keys);
	size_t len = 0;
	int rc;

	*adopted = 0;
	rc = sotp_store_key_wrap_get(
	    ctx->st, 0, kek, SOTP_WRAP_DEK, blob, sizeof(blob), &len);
	if (ring->current != 0 || rc != SOTP_ERR_NOT_FOUND)
		return rc == SOTP_ERR_NOT_FOUND ? SOTP_OK : rc;
	/* Under a token, version 0 comes only by key rewrap from the file. */
	if (sotp_keys_file_key(ctx, dek) != SOTP_OK)
		return SOTP_OK;
	if ((rc = sotp_kdf(dek, "shinkin-otp audit v1", audit)) != SOTP_OK ||
	    (rc = sotp_keyring_wrap(ctx->keys, 0, SOTP_WRAP_DEK, dek, blob,
	         &len, ctx->err, sizeof(ctx->err))) != SOTP_OK ||
	    (rc = sotp_store_key_wrap_put(
	         ctx->st, 0, kek, SOTP_WRAP_DEK, blob, len)) != SOTP_OK ||
	    (rc = sotp_keyring_wrap(ctx->keys, 0, SOTP_WRAP_AUDIT, audit, blob,
	         &len, ctx->err, sizeof(ctx->err))) != SOTP_OK ||
	    (rc = sotp_store_key_wrap_put(
	         ctx->st, 0, kek, SOTP_WRAP_AUDIT, blob, len)) != SOTP_OK ||
	    (rc = sotp_store_key_ring_bump(ctx->st)) != SOTP_OK)
		goto out;
	*adopted = 1;
out:
	SOTP_WIPE_ARRAY(dek);
	SOTP_WIPE_ARRAY(audit);
	return rc;
}

int
sotp_keys_first(struct sotp_ctx *ctx, int64_t now)
{
	struct sotp_key_ring ring;
	char detail[SOTP_KEK_NAME_MAX + 64];
	int rc, adopted = 0;

	ctx->err[0] = '\0';
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		return store_fail(ctx, rc);
	rc = sotp_store_key_ring(ctx->st, 1, &ring);
	if (rc == SOTP_OK) {
		/* A store that has its keys; one from before, adopted. */
		if ((rc = adopt_v0(ctx, &ring, &adopted)) != SOTP_OK ||
		    !adopted)
			goto out;
		if ((rc = sotp_keys_sync(ctx, 1)) != SOTP_OK)
			goto out;
		ctx->have_key = 1;
		snprintf(detail, sizeof(detail),
		    "version=0 (the master key file, from before key versions) kek=%s",
		    sotp_keyring_kek(ctx->keys));
		rc = sotp_audit(ctx, (time_t)now, "key.create", NULL, NULL,
		    NULL, "accept", SOTP_R_ACCEPTED, detail);
		goto out;
	}
	if (rc != SOTP_ERR_NOT_FOUND)
		goto out;
	if ((rc = mint(ctx, 1, now)) != SOTP_OK ||
	    (rc = sotp_store_key_ring_init(ctx->st, 1, now)) != SOTP_OK ||
	    (rc = sotp_keys_sync(ctx, 1)) != SOTP_OK)
		goto out;
	/* The row is chained under the version it makes (the first). */
	ctx->have_key = 1;
	snprintf(detail, sizeof(detail), "version=1 kek=%s",
	    sotp_keyring_kek(ctx->keys));
	rc = sotp_audit(ctx, (time_t)now, "key.create", NULL, NULL, NULL,
	    "accept", SOTP_R_ACCEPTED, detail);
out:
	if (rc != SOTP_OK || !ctx->have_key) {
		ctx->have_key = 0;
		sotp_store_rollback(ctx->st);
		return rc == SOTP_OK ? SOTP_OK : store_fail(ctx, rc);
	}
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		return store_fail(ctx, rc);
	return SOTP_OK;
}

/* ---- what the store holds ---- */

struct wraps {
	struct sotp_key_status *out;
	char keks[SOTP_KEY_KEKS_MAX][192];
	size_t nkeks;
	uint32_t maxv;
	int any;
};

static struct sotp_key_version *
version_find(struct sotp_key_status *s, uint32_t v)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (s->v[i].version == v)
			return &s->v[i];
	return NULL;
}

static struct sotp_key_version *
version_of(struct sotp_key_status *s, uint32_t v)
{
	struct sotp_key_version *x;

	if ((x = version_find(s, v)) != NULL)
		return x;
	if (s->n == SOTP_KEY_VERSIONS_MAX)
		return NULL;
	memset(&s->v[s->n], 0, sizeof(s->v[s->n]));
	s->v[s->n].version = v;
	return &s->v[s->n++];
}

static void
add_kek(char keks[][192], size_t *n, const char *kek)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp(keks[i], kek) == 0)
			return;
	if (*n < SOTP_KEY_KEKS_MAX)
		snprintf(keks[(*n)++], 192, "%s", kek);
}

static void
add_wrapped(struct sotp_key_version *v, const char *kek, int what)
{
	char item[200];
	size_t n = strlen(v->wrapped);

	snprintf(item, sizeof(item), "%s%s%s", n > 0 ? ", " : "", kek,
	    what == SOTP_WRAP_AUDIT ? " (audit key)" : "");
	/* A version's data and audit keys under one KEK: named once. */
	if (what == SOTP_WRAP_AUDIT && strstr(v->wrapped, kek) != NULL)
		return;
	if (n + strlen(item) < sizeof(v->wrapped))
		memcpy(v->wrapped + n, item, strlen(item) + 1);
}

static int
status_live(void *arg, uint32_t version, int64_t created)
{
	struct sotp_key_status *s = arg;
	struct sotp_key_version *v = version_of(s, version);

	if (v != NULL) {
		v->live = 1;
		v->created = created;
	}
	return 0;
}

static int
status_wrap(void *arg, uint32_t version, const char *kek, int what,
    const uint8_t *blob, size_t len)
{
	struct wraps *w = arg;
	struct sotp_key_version *v = version_of(w->out, version);

	(void)blob;
	(void)len;
	w->any = 1;
	if (version > w->maxv)
		w->maxv = version;
	add_kek(w->keks, &w->nkeks, kek);
	if (v != NULL)
		add_wrapped(v, kek, what);
	return 0;
}

static int
status_count(void *arg, int what, uint32_t kv, int64_t n)
{
	struct sotp_key_status *s = arg;
	struct sotp_key_version *v = version_of(s, kv);

	if (v == NULL)
		return 0;
	if (what == 1)
		v->secrets = n;
	else if (what == 2)
		v->cards = n;
	else
		v->audit_rows = n;
	return 0;
}

static int
by_version(const void *a, const void *b)
{
	const struct sotp_key_version *x = a, *y = b;

	return x->version < y->version ? 1 : x->version > y->version ? -1 : 0;
}

/* Reads everything; w receives the KEKs and the highest version. */
static int
read_status(struct sotp_ctx *ctx, struct sotp_key_status *out, struct wraps *w)
{
	struct sotp_key_ring ring;
	struct sotp_key_version *v;
	int rc;

	memset(w, 0, sizeof(*w));
	w->out = out;
	if ((rc = sotp_store_key_ring(ctx->st, 0, &ring)) != SOTP_OK)
		return rc;
	out->current = ring.current;
	out->switched = ring.switched;
	out->generation = ring.gen;
	if ((rc = sotp_store_key_live(ctx->st, status_live, out)) != SOTP_OK ||
	    (rc = sotp_store_key_wraps(ctx->st, status_wrap, w)) != SOTP_OK ||
	    (rc = sotp_store_key_counts(ctx->st, status_count, out)) !=
	        SOTP_OK ||
	    (rc = sotp_store_key_left(ctx->st, ring.current, 1, &out->left)) !=
	        SOTP_OK)
		return rc;
	if ((v = version_of(out, ring.current)) != NULL)
		v->current = 1;
	return SOTP_OK;
}

int
sotp_key_status(struct sotp_ctx *ctx, time_t now, struct sotp_key_status *out)
{
	struct wraps *w = NULL;
	size_t i;
	int rc;

	(void)now;
	if (ctx == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return SOTP_ERR_NOMEM;
	if (sotp_policy_kek(ctx, out->kek, sizeof(out->kek)) != SOTP_OK)
		out->kek[0] = '\0';
	rc = read_status(ctx, out, w);
	if (rc == SOTP_ERR_NOT_FOUND) {
		sotp_ctx_seterr(ctx,
		    "the store has no data-encryption key yet: run shinkin-otp init");
		rc = SOTP_ERR_KEY;
		goto out;
	}
	if (rc != SOTP_OK) {
		store_fail(ctx, rc);
		goto out;
	}
	for (i = 0; i < w->nkeks; i++)
		add_kek(out->keks, &out->nkeks, w->keks[i]);
	out->retire_at =
	    out->switched + ctx->pol.key_refresh + ctx->pol.state_lifetime;
	qsort(out->v, out->n, sizeof(out->v[0]), by_version);
out:
	free(w);
	return rc;
}

/* ---- rotating ---- */

static int
need_keys(struct sotp_ctx *ctx)
{
	int rc;

	if (ctx == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	ctx->err[0] = '\0';
	return sotp_keys_sync(ctx, 1);
}

/* Under the ring's lock: a new current version, or the one under way. */
static int
begin_locked(struct sotp_ctx *ctx, int64_t now, struct sotp_key_step *out)
{
	struct sotp_key_status *s = NULL;
	struct wraps *w = NULL;
	char detail[SOTP_KEK_NAME_MAX + 64];
	uint32_t next;
	size_t i, live = 0;
	int rc;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (w = calloc(1, sizeof(*w))) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if ((rc = read_status(ctx, s, w)) != SOTP_OK)
		goto out;
	out->version = s->current;
	for (i = 0; i < s->n; i++)
		live += s->v[i].live;
	if (live > 1) {
		out->what = SOTP_KEY_RESUMED;
		snprintf(detail, sizeof(detail), "resume version=%u left=%lld",
		    s->current, (long long)s->left);
		rc = sotp_audit(ctx, (time_t)now, "key.rotate", NULL, NULL,
		    NULL, "accept", SOTP_R_ACCEPTED, detail);
		goto out;
	}
	if (w->nkeks > 1 ||
	    (w->nkeks == 1 &&
	        strcmp(w->keks[0], sotp_keyring_kek(ctx->keys)) != 0)) {
		sotp_ctx_seterr(ctx,
		    "the store's keys are wrapped under more than one key-encryption key (see key status): finish that change with key drop-kek before a rotation");
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	/*
	 * Every version the store holds stays listed (key status) and
	 * wrapped anew (key rewrap): one past the most is refused here,
	 * before anything changes, never cut from a list later.
	 */
	if (s->n >= SOTP_KEY_VERSIONS_MAX) {
		sotp_ctx_seterr(ctx,
		    "the store holds %zu key versions, the most this release keeps (retired versions keep their audit keys while the audit trail has rows they keyed): no new version is made, nothing changed (README, Keys)",
		    s->n);
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	/* Never a number used before: retired versions keep theirs. */
	next = (w->maxv > s->current ? w->maxv : s->current) + 1;
	if ((rc = mint(ctx, next, now)) != SOTP_OK ||
	    (rc = sotp_store_key_ring_set(ctx->st, next, now)) != SOTP_OK)
		goto out;
	out->what = SOTP_KEY_STARTED;
	out->from = s->current;
	out->version = next;
	snprintf(detail, sizeof(detail), "start version=%u from=%u kek=%s",
	    next, s->current, sotp_keyring_kek(ctx->keys));
	rc = sotp_audit(ctx, (time_t)now, "key.rotate", NULL, NULL, NULL,
	    "accept", SOTP_R_ACCEPTED, detail);
out:
	free(s);
	free(w);
	return rc;
}

int
sotp_key_rotate_begin(
    struct sotp_ctx *ctx, time_t now, struct sotp_key_step *out)
{
	struct sotp_key_ring ring;
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = need_keys(ctx)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		return store_fail(ctx, rc);
	if ((rc = sotp_store_key_ring(ctx->st, 1, &ring)) != SOTP_OK ||
	    (rc = begin_locked(ctx, (int64_t)now, out)) != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		return store_fail(ctx, rc);
	}
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		return store_fail(ctx, rc);
	/* This process moves at once; the others within `refresh`. */
	return sotp_keys_sync(ctx, 1);
}

/* One batch of values under older versions, sealed again under kv. */
static int
reseal_batch(struct sotp_ctx *ctx, uint32_t kv, int cards,
    struct sotp_sealed_row *rows, unsigned int max, unsigned int *done)
{
	uint8_t plain[SOTP_CARD_MAX], blob[SOTP_CARD_MAX];
	uint8_t fp[SOTP_SEED_FP_LEN];
	size_t n = 0, i, plen = 0, blen = 0;
	int rc, won = 0;

	*done = 0;
	if ((rc = sotp_store_key_old(ctx->st, cards, kv, rows, max, &n)) !=
	    SOTP_OK)
		return rc;
	for (i = 0; i < n; i++) {
		if ((rc = sotp_keys_unseal(ctx, rows[i].id, rows[i].blob,
		         rows[i].len, plain, sizeof(plain), &plen)) !=
		    SOTP_OK) {
			/* A value no live key opens: stop, touch nothing. */
			sotp_ctx_seterr(ctx,
			    "%s %s: sealed under key version %u, which does not unseal it (tampered row?); nothing re-sealed in this batch",
			    cards ? "contract" : "token", rows[i].id,
			    rows[i].kv);
			goto out;
		}
		rc = sotp_keys_seal_kv(ctx, kv, rows[i].id, plain, plen, blob,
		    cards ? SOTP_CARD_MAX : SOTP_SECRET_MAX, &blen);
		/*
		 * A token's fingerprint is keyed by the version that seals
		 * it: both change in one write, so the seed check
		 * (seedfp.c) finds it under one version or the other.
		 */
		if (rc == SOTP_OK && !cards)
			rc = sotp_seed_fp(ctx, kv, plain, plen, fp);
		SOTP_WIPE_ARRAY(plain);
		if (rc != SOTP_OK ||
		    (rc = sotp_store_key_reseal(ctx->st, cards, rows[i].id,
		         rows[i].kv, blob, blen, kv, cards ? NULL : fp,
		         &won)) != SOTP_OK)
			goto out;
		*done += (unsigned int)won;
	}
	rc = SOTP_OK;
out:
	SOTP_WIPE_ARRAY(plain);
	SOTP_WIPE_ARRAY(blob);
	SOTP_WIPE_ARRAY(fp);
	sotp_wipe(rows, max * sizeof(*rows));
	return rc;
}

/* A batch in its own transaction, audited with it. */
static int
reseal_step(struct sotp_ctx *ctx, int64_t now, unsigned int batch,
    struct sotp_key_step *out)
{
	struct sotp_sealed_row *rows = NULL;
	struct sotp_key_ring ring;
	char detail[96];
	unsigned int done = 0;
	int rc;

	if ((rows = calloc(batch, sizeof(*rows))) == NULL)
		return SOTP_ERR_NOMEM;
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		goto fail;
	if ((rc = sotp_store_key_ring(ctx->st, 1, &ring)) != SOTP_OK)
		goto fail;
	if (ring.current != out->version) {
		/* Another rotation began meanwhile: follow it. */
		sotp_store_rollback(ctx->st);
		free(rows);
		out->what = SOTP_KEY_RESEALED;
		out->version = ring.current;
		return sotp_keys_sync(ctx, 1);
	}
	out->cards = 0;
	rc = reseal_batch(ctx, ring.current, 0, rows, batch, &done);
	if (rc == SOTP_OK && done == 0) {
		out->cards = 1;
		rc = reseal_batch(ctx, ring.current, 1, rows, batch, &done);
	}
	if (rc != SOTP_OK)
		goto fail;
	if (done > 0) {
		snprintf(detail, sizeof(detail), "version=%u %s=%u",
		    ring.current, out->cards ? "cards" : "secrets", done);
		if ((rc = sotp_audit(ctx, (time_t)now, "key.reseal", NULL, NULL,
		         NULL, "accept", SOTP_R_ACCEPTED, detail)) != SOTP_OK)
			goto fail;
	}
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		goto fail;
	free(rows);
	out->what = SOTP_KEY_RESEALED;
	out->count = done;
	if ((rc = sotp_store_key_left(ctx->st, out->version, 1, &out->left)) !=
	    SOTP_OK)
		return store_fail(ctx, rc);
	return SOTP_OK;
fail:
	sotp_store_rollback(ctx->st);
	free(rows);
	return store_fail(ctx, rc);
}

struct oldest {
	uint32_t current;
	uint32_t v;
	int found;
};

static int
oldest_live(void *arg, uint32_t version, int64_t created)
{
	struct oldest *o = arg;

	(void)created;
	if (version != o->current && !o->found) {
		o->v = version;
		o->found = 1;
	}
	return 0;
}

/*
 * Retires the oldest live version but the current, when it may go. The
 * retirement tags every audit chain's head again, so it takes them all
 * first (sotp_store_begin_every_head); only once the ring, read without a
 * lock, says it may be due: before that, the check each second while the
 * rotation waits holds one head, not every one, from the decisions.
 * (The ring's switch only moves later, so a retirement the unlocked read
 * says is not due is not due under the lock either.)
 */
static int
retire_step(struct sotp_ctx *ctx, int64_t now, struct sotp_key_step *out)
{
	struct sotp_key_ring ring;
	struct oldest o;
	char detail[80];
	int64_t used = 0;
	int rc, retagged = 0;

	if ((rc = sotp_store_key_ring(ctx->st, 0, &ring)) != SOTP_OK)
		return store_fail(ctx, rc);
	rc =
	    now < ring.switched + ctx->pol.key_refresh + ctx->pol.state_lifetime
	    ? sotp_store_begin(ctx->st)
	    : sotp_store_begin_every_head(ctx->st);
	if (rc != SOTP_OK)
		return store_fail(ctx, rc);
	memset(&o, 0, sizeof(o));
	if ((rc = sotp_store_key_ring(ctx->st, 1, &ring)) != SOTP_OK)
		goto fail;
	o.current = ring.current;
	out->version = ring.current;
	if ((rc = sotp_store_key_live(ctx->st, oldest_live, &o)) != SOTP_OK)
		goto fail;
	if (!o.found) {
		sotp_store_rollback(ctx->st);
		out->what = SOTP_KEY_DONE;
		return SOTP_OK;
	}
	/*
	 * Every server has moved to the current version within `refresh`
	 * of the switch, and a State it signed before lives `lifetime`.
	 */
	out->wait_until =
	    ring.switched + ctx->pol.key_refresh + ctx->pol.state_lifetime;
	if (now < out->wait_until) {
		sotp_store_rollback(ctx->st);
		out->what = SOTP_KEY_WAITING;
		return SOTP_OK;
	}
	/* A server that had not yet moved may have sealed under it. */
	if ((rc = sotp_store_key_left(ctx->st, o.v, 0, &used)) != SOTP_OK)
		goto fail;
	if (used > 0) {
		sotp_store_rollback(ctx->st);
		out->what = SOTP_KEY_RESEALED;
		out->left = used;
		return SOTP_OK;
	}
	/*
	 * The heads and bases it tagged, tagged again under the current
	 * one: its audit key stays, for its rows only (audit.c).
	 */
	if ((rc = sotp_store_key_retire(ctx->st, o.v)) != SOTP_OK ||
	    (rc = sotp_audit_retag(ctx, ring.current, &retagged)) != SOTP_OK ||
	    (rc = sotp_store_key_ring_bump(ctx->st)) != SOTP_OK)
		goto fail;
	snprintf(detail, sizeof(detail),
	    "retire version=%u current=%u retagged=%d", o.v, ring.current,
	    retagged);
	if ((rc = sotp_audit(ctx, (time_t)now, "key.retire", NULL, NULL, NULL,
	         "accept", SOTP_R_ACCEPTED, detail)) != SOTP_OK)
		goto fail;
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		return store_fail(ctx, rc);
	out->what = SOTP_KEY_RETIRED;
	out->retired = o.v;
	return sotp_keys_sync(ctx, 1);
fail:
	sotp_store_rollback(ctx->st);
	return store_fail(ctx, rc);
}

int
sotp_key_rotate_step(struct sotp_ctx *ctx, time_t now, unsigned int batch,
    struct sotp_key_step *out)
{
	struct sotp_key_ring ring;
	int64_t left = 0;
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (out == NULL || batch == 0 || batch > 100000)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = need_keys(ctx)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_key_ring(ctx->st, 0, &ring)) != SOTP_OK ||
	    (rc = sotp_store_key_left(ctx->st, ring.current, 1, &left)) !=
	        SOTP_OK)
		return store_fail(ctx, rc);
	out->version = ring.current;
	if (left > 0)
		return reseal_step(ctx, (int64_t)now, batch, out);
	return retire_step(ctx, (int64_t)now, out);
}

/* ---- changing the key-encryption key ---- */

/* A key to wrap anew: version and purpose. */
struct wrap_item {
	uint32_t v;
	int what;
};
struct wrap_list {
	const char *kek; /* this policy's */
	struct wrap_item item[2 * SOTP_KEY_VERSIONS_MAX];
	size_t n;
	int over;
};

static void
item_add(struct wrap_list *l, uint32_t v, int what)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (l->item[i].v == v && l->item[i].what == what)
			return;
	if (l->n == sizeof(l->item) / sizeof(l->item[0])) {
		l->over = 1;
		return;
	}
	l->item[l->n].v = v;
	l->item[l->n++].what = what;
}

static int
list_live(void *arg, uint32_t version, int64_t created)
{
	(void)created;
	item_add(arg, version, SOTP_WRAP_DEK);
	item_add(arg, version, SOTP_WRAP_AUDIT);
	return 0;
}

static int
list_wrap(void *arg, uint32_t version, const char *kek, int what,
    const uint8_t *blob, size_t len)
{
	struct wrap_list *l = arg;

	(void)blob;
	(void)len;
	/* Retired versions' audit keys: those this KEK can open. */
	if (what == SOTP_WRAP_AUDIT && strcmp(kek, l->kek) == 0)
		item_add(l, version, what);
	return 0;
}

/* Every key this context can open, for another KEK to wrap. */
static int
keys_to_wrap(struct sotp_ctx *ctx, struct wrap_list *l)
{
	int rc;

	l->kek = sotp_keyring_kek(ctx->keys);
	if ((rc = sotp_store_key_live(ctx->st, list_live, l)) != SOTP_OK ||
	    (rc = sotp_store_key_wraps(ctx->st, list_wrap, l)) != SOTP_OK)
		return rc;
	if (l->over) {
		sotp_ctx_seterr(ctx, "too many key versions to re-wrap");
		return SOTP_ERR_INTERNAL;
	}
	return SOTP_OK;
}

/* Wraps each listed key under `to`; *wrapped: those it did not have. */
static int
wrap_all(struct sotp_ctx *ctx, struct sotp_keyring *to,
    const struct wrap_list *l, unsigned int *wrapped)
{
	uint8_t key[SOTP_KEY_LEN], blob[SOTP_WRAP_LEN];
	size_t i, len = 0;
	int rc = SOTP_OK;

	for (i = 0; i < l->n && rc == SOTP_OK; i++) {
		if ((rc = sotp_keys_plain(
		         ctx, l->item[i].v, l->item[i].what, key)) != SOTP_OK ||
		    (rc = sotp_keyring_wrap(to, l->item[i].v, l->item[i].what,
		         key, blob, &len, ctx->err, sizeof(ctx->err))) !=
		        SOTP_OK)
			break;
		rc = sotp_store_key_wrap_put(ctx->st, l->item[i].v,
		    sotp_keyring_kek(to), l->item[i].what, blob, len);
		if (rc == SOTP_OK)
			(*wrapped)++;
		else if (rc == SOTP_ERR_EXISTS)
			rc = SOTP_OK; /* a rewrap run before: kept */
	}
	SOTP_WIPE_ARRAY(key);
	return rc;
}

int
sotp_key_rewrap(struct sotp_ctx *ctx, const char *new_policy, time_t now,
    unsigned int *wrapped)
{
	struct sotp_keyring *to = NULL;
	struct sotp_key_ring ring;
	struct wrap_list *l = NULL;
	char detail[2 * SOTP_KEK_NAME_MAX + 64];
	int rc;

	if (wrapped != NULL)
		*wrapped = 0;
	if (new_policy == NULL || wrapped == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = need_keys(ctx)) != SOTP_OK)
		return rc;
	if ((rc = sotp_keyring_open(
	         new_policy, &to, ctx->err, sizeof(ctx->err))) != SOTP_OK)
		return rc;
	if (strcmp(sotp_keyring_kek(to), sotp_keyring_kek(ctx->keys)) == 0) {
		sotp_ctx_seterr(ctx,
		    "%s names %s, the key-encryption key of this policy too: nothing to re-wrap",
		    new_policy, sotp_keyring_kek(to));
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		goto fail;
	if ((rc = sotp_store_key_ring(ctx->st, 1, &ring)) != SOTP_OK ||
	    (rc = keys_to_wrap(ctx, l)) != SOTP_OK ||
	    (rc = wrap_all(ctx, to, l, wrapped)) != SOTP_OK ||
	    (rc = sotp_store_key_ring_bump(ctx->st)) != SOTP_OK)
		goto fail;
	snprintf(detail, sizeof(detail), "from=%s to=%s keys=%u",
	    sotp_keyring_kek(ctx->keys), sotp_keyring_kek(to), *wrapped);
	if ((rc = sotp_audit(ctx, now, "key.rewrap", NULL, NULL, NULL, "accept",
	         SOTP_R_ACCEPTED, detail)) != SOTP_OK)
		goto fail;
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK) {
		store_fail(ctx, rc);
		goto out;
	}
	rc = SOTP_OK;
	goto out;
fail:
	sotp_store_rollback(ctx->st);
	store_fail(ctx, rc);
	*wrapped = 0;
out:
	free(l);
	sotp_keyring_free(to);
	return rc;
}

/* Every key under the KEK to drop, also under this policy's. */
struct drop_check {
	const char *drop, *ours;
	struct wrap_item have[2 * SOTP_KEY_VERSIONS_MAX],
	    need[2 * SOTP_KEY_VERSIONS_MAX];
	size_t nhave, nneed;
	int over;
};

static int
drop_row(void *arg, uint32_t version, const char *kek, int what,
    const uint8_t *blob, size_t len)
{
	struct drop_check *d = arg;
	struct wrap_item *list;
	size_t *n;

	(void)blob;
	(void)len;
	if (strcmp(kek, d->drop) == 0) {
		list = d->need;
		n = &d->nneed;
	} else if (strcmp(kek, d->ours) == 0) {
		list = d->have;
		n = &d->nhave;
	} else
		return 0;
	if (*n == SOTP_NELEM(d->need)) {
		d->over = 1;
		return 1;
	}
	list[*n].v = version;
	list[(*n)++].what = what;
	return 0;
}

static int
drop_unsafe(const struct drop_check *d, uint32_t *v, int *what)
{
	size_t i, j;

	for (i = 0; i < d->nneed; i++) {
		for (j = 0; j < d->nhave; j++)
			if (d->have[j].v == d->need[i].v &&
			    d->have[j].what == d->need[i].what)
				break;
		if (j == d->nhave) {
			*v = d->need[i].v;
			*what = d->need[i].what;
			return 1;
		}
	}
	return 0;
}

int
sotp_key_drop_kek(
    struct sotp_ctx *ctx, const char *kek, time_t now, int64_t *removed)
{
	struct sotp_key_ring ring;
	struct drop_check *d = NULL;
	char detail[SOTP_KEK_NAME_MAX + 32];
	uint32_t v = 0;
	int rc, what = 0;

	if (removed != NULL)
		*removed = 0;
	if (kek == NULL || removed == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = need_keys(ctx)) != SOTP_OK)
		return rc;
	if (strcmp(kek, sotp_keyring_kek(ctx->keys)) == 0) {
		sotp_ctx_seterr(ctx,
		    "%s is this policy's own key-encryption key; drop it from a policy that names the one replacing it",
		    kek);
		return SOTP_ERR_CONFIG;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return SOTP_ERR_NOMEM;
	d->drop = kek;
	d->ours = sotp_keyring_kek(ctx->keys);
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		goto fail;
	if ((rc = sotp_store_key_ring(ctx->st, 1, &ring)) != SOTP_OK ||
	    (rc = sotp_store_key_wraps(ctx->st, drop_row, d)) != SOTP_OK)
		goto fail;
	if (d->over || drop_unsafe(d, &v, &what)) {
		sotp_ctx_seterr(ctx,
		    "key version %u: its %s key is wrapped under %s but not under %s; run key rewrap first",
		    v, what == SOTP_WRAP_DEK ? "data" : "audit", kek, d->ours);
		rc = SOTP_ERR_CONFIG;
		goto fail;
	}
	if ((rc = sotp_store_key_wrap_drop(ctx->st, kek, removed)) != SOTP_OK)
		goto fail;
	if (*removed == 0) {
		/* Nothing to drop (again): no change, no audit row. */
		sotp_store_rollback(ctx->st);
		free(d);
		return SOTP_OK;
	}
	if ((rc = sotp_store_key_ring_bump(ctx->st)) != SOTP_OK)
		goto fail;
	snprintf(detail, sizeof(detail), "kek=%s keys=%lld", kek,
	    (long long)*removed);
	if ((rc = sotp_audit(ctx, now, "key.drop-kek", NULL, NULL, NULL,
	         "accept", SOTP_R_ACCEPTED, detail)) != SOTP_OK)
		goto fail;
	rc = sotp_store_commit(ctx->st);
	free(d);
	return rc != SOTP_OK ? store_fail(ctx, rc) : SOTP_OK;
fail:
	sotp_store_rollback(ctx->st);
	free(d);
	*removed = 0;
	return store_fail(ctx, rc);
}

/* ---- every value, unsealed ---- */

struct check {
	struct sotp_ctx *ctx;
	struct sotp_key_check *out;
	uint8_t buf[SOTP_CARD_MAX];
};

static void
check_one(
    struct check *k, int card, const char *id, const uint8_t *blob, size_t len)
{
	size_t n = 0;

	if (sotp_keys_unseal(
	        k->ctx, id, blob, len, k->buf, sizeof(k->buf), &n) == SOTP_OK) {
		if (card)
			k->out->cards++;
		else
			k->out->secrets++;
	} else if (k->out->bad++ == 0)
		snprintf(k->out->first_bad, sizeof(k->out->first_bad), "%s %s",
		    card ? "contract" : "token", id);
	sotp_wipe(k->buf, sizeof(k->buf));
}

static int
check_token(void *arg, const struct sotp_token_rec *t)
{
	check_one(arg, 0, t->serial, t->secret, t->secret_len);
	return 0;
}

static int
check_card(void *arg, const struct sotp_contract_rec *c)
{
	if (c->card_len > 0)
		check_one(arg, 1, c->id, c->card, c->card_len);
	return 0;
}

int
sotp_key_check(struct sotp_ctx *ctx, struct sotp_key_check *out)
{
	struct check *k = NULL;
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = need_keys(ctx)) != SOTP_OK)
		return rc;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return SOTP_ERR_NOMEM;
	k->ctx = ctx;
	k->out = out;
	/* Every live version is held now (need_keys synced). */
	if ((rc = sotp_store_token_list(ctx->st, 0, check_token, k)) !=
	        SOTP_OK ||
	    (rc = sotp_store_contract_list(ctx->st, 0, 0, -1, check_card, k)) !=
	        SOTP_OK)
		store_fail(ctx, rc);
	sotp_free_secret(k, sizeof(*k));
	return rc;
}

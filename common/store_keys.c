/*
 * store_keys.c - the keyring's operations, written once above the
 * dialect drivers like those of store_ops.c (its head comment says how
 * an operation is added). The rules are in keys.c (which version seals,
 * which unwraps) and keys_admin.c (rotation, rewrap, retirement); what
 * the store keeps here is atomicity: a version is retired by deleting its
 * key_dek row, which the tokens' and contracts' kv reference, so the
 * database refuses it while one value still names that version.
 */
#include <string.h>

#include "sotp_int.h"
#include "store_int.h"

static int
kek_ok(const char *kek)
{
	size_t n;

	if (kek == NULL)
		return 0;
	n = strnlen(kek, SOTP_KEK_NAME_MAX);
	return n > 0 && n < SOTP_KEK_NAME_MAX;
}

static int
what_ok(int what)
{
	return what == SOTP_WRAP_DEK || what == SOTP_WRAP_AUDIT;
}

static int
version_col(struct sotp_store *st, int col, uint32_t *v)
{
	int64_t x;

	if (sotp_db_int(st, col, 0, UINT32_MAX, &x) != 0)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

/* ---- the ring ---- */

static int
ring_row(struct sotp_store *st, void *arg)
{
	struct sotp_key_ring *r = arg;

	if (version_col(st, 0, &r->current) != 0 ||
	    sotp_db_int(st, 1, 1, INT64_MAX, &r->gen) != 0 ||
	    sotp_db_int(st, 2, INT64_MIN, INT64_MAX, &r->switched) != 0)
		return sotp_db_corrupt(st, "key_ring");
	return SOTP_OK;
}

int
sotp_store_key_ring(struct sotp_store *st, int lock, struct sotp_key_ring *r)
{
	int rc;

	if (r != NULL)
		memset(r, 0, sizeof(*r));
	if ((rc = sotp_db_enter(st, "key_ring",
	         r != NULL && (!lock || st->depth > 0))) != SOTP_OK)
		return rc;
	return sotp_db_row(st, lock ? SOTP_Q_KEY_RING_LOCK : SOTP_Q_KEY_RING,
	    NULL, 0, ring_row, r);
}

int
sotp_store_key_ring_init(
    struct sotp_store *st, uint32_t current, int64_t switched)
{
	const struct sotp_param p[] = {SOTP_PINT(current), SOTP_PINT(switched)};
	int rc;

	if ((rc = sotp_db_enter(st, "key_ring_init", 1)) != SOTP_OK)
		return rc;
	return sotp_db_run(st, SOTP_Q_KEY_RING_INIT, p, SOTP_NELEM(p), NULL);
}

int
sotp_store_key_ring_set(
    struct sotp_store *st, uint32_t current, int64_t switched)
{
	const struct sotp_param p[] = {SOTP_PINT(current), SOTP_PINT(switched)};
	int rc;

	if ((rc = sotp_db_enter(st, "key_ring_set", 1)) != SOTP_OK)
		return rc;
	return sotp_db_update_one(st, SOTP_Q_KEY_RING_SET, p, SOTP_NELEM(p));
}

int
sotp_store_key_ring_bump(struct sotp_store *st)
{
	int rc;

	if ((rc = sotp_db_enter(st, "key_ring_bump", 1)) != SOTP_OK)
		return rc;
	return sotp_db_update_one(st, SOTP_Q_KEY_RING_BUMP, NULL, 0);
}

/* ---- live versions ---- */

struct live_walk {
	sotp_key_live_cb *cb;
	void *arg;
};

static int
live_row(struct sotp_store *st, void *arg)
{
	const struct live_walk *w = arg;
	uint32_t v;
	int64_t created;

	if (version_col(st, 0, &v) != 0 ||
	    sotp_db_int(st, 1, INT64_MIN, INT64_MAX, &created) != 0)
		return sotp_db_corrupt(st, "key_dek");
	return w->cb(w->arg, v, created);
}

int
sotp_store_key_live(struct sotp_store *st, sotp_key_live_cb *cb, void *arg)
{
	struct live_walk w = {cb, arg};
	int rc;

	if ((rc = sotp_db_enter(st, "key_live", cb != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_rows(st, SOTP_Q_KEY_LIVE, NULL, 0, live_row, &w);
}

int
sotp_store_key_add(struct sotp_store *st, uint32_t version, int64_t created)
{
	const struct sotp_param p[] = {SOTP_PINT(version), SOTP_PINT(created)};
	int rc;

	if ((rc = sotp_db_enter(st, "key_add", 1)) != SOTP_OK)
		return rc;
	return sotp_db_run(st, SOTP_Q_KEY_ADD, p, SOTP_NELEM(p), NULL);
}

/*
 * Both deletes in one savepoint: when the key_dek row is refused (a value
 * still names the version), its wrapped data keys are kept too.
 */
int
sotp_store_key_retire(struct sotp_store *st, uint32_t version)
{
	const struct sotp_param p[] = {SOTP_PINT(version)};
	int rc;

	if ((rc = sotp_db_enter(st, "key_retire", 1)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(st, SOTP_Q_KEY_RETIRE_WRAPS, p, SOTP_NELEM(p), NULL);
	if (rc == SOTP_OK)
		rc =
		    sotp_db_update_one(st, SOTP_Q_KEY_RETIRE, p, SOTP_NELEM(p));
	return sotp_db_end(st, rc);
}

/* ---- wrapped keys ---- */

struct wrap_walk {
	sotp_key_wrap_cb *cb;
	void *arg;
};

static int
wrap_row(struct sotp_store *st, void *arg)
{
	const struct wrap_walk *w = arg;
	uint8_t blob[SOTP_WRAP_LEN];
	char kek[SOTP_KEK_NAME_MAX];
	uint32_t v;
	int64_t what;
	size_t len = 0;

	if (version_col(st, 0, &v) != 0 ||
	    sotp_db_text(st, 1, kek, sizeof(kek)) != 0 ||
	    sotp_db_int(st, 2, SOTP_WRAP_DEK, SOTP_WRAP_AUDIT, &what) != 0 ||
	    sotp_db_blob(st, 3, blob, sizeof(blob), &len) != 0)
		return sotp_db_corrupt(st, "key_wrap");
	return w->cb(w->arg, v, kek, (int)what, blob, len);
}

int
sotp_store_key_wraps(struct sotp_store *st, sotp_key_wrap_cb *cb, void *arg)
{
	struct wrap_walk w = {cb, arg};
	int rc;

	if ((rc = sotp_db_enter(st, "key_wraps", cb != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_rows(st, SOTP_Q_KEY_WRAPS, NULL, 0, wrap_row, &w);
}

struct blob_out {
	uint8_t *blob;
	size_t sz, len;
};

static int
blob_row(struct sotp_store *st, void *arg)
{
	struct blob_out *b = arg;

	if (sotp_db_blob(st, 0, b->blob, b->sz, &b->len) != 0 || b->len == 0)
		return sotp_db_corrupt(st, "key_wrap.blob");
	return SOTP_OK;
}

int
sotp_store_key_wrap_get(struct sotp_store *st, uint32_t version,
    const char *kek, int what, uint8_t *blob, size_t blobsz, size_t *len)
{
	const struct sotp_param p[] = {
	    SOTP_PINT(version), SOTP_PTEXT(kek), SOTP_PINT(what)};
	struct blob_out b = {blob, blobsz, 0};
	int rc;

	if (len != NULL)
		*len = 0;
	if ((rc = sotp_db_enter(st, "key_wrap_get",
	         kek_ok(kek) && what_ok(what) && blob != NULL &&
	             len != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_row(st, SOTP_Q_KEY_WRAP_GET, p, SOTP_NELEM(p),
	         blob_row, &b)) == SOTP_OK)
		*len = b.len;
	return rc;
}

int
sotp_store_key_wrap_put(struct sotp_store *st, uint32_t version,
    const char *kek, int what, const uint8_t *blob, size_t len)
{
	const struct sotp_param p[] = {SOTP_PINT(version), SOTP_PTEXT(kek),
	    SOTP_PINT(what), SOTP_PBLOB(blob, len)};
	int nested, rc;

	if ((rc = sotp_db_enter(st, "key_wrap_put",
	         kek_ok(kek) && what_ok(what) && blob != NULL && len > 0)) !=
	    SOTP_OK)
		return rc;
	/* A refusal must not abort the caller's transaction (PostgreSQL). */
	nested = st->depth > 0 && !st->drv->stmt_undo;
	if (nested && (rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(st, SOTP_Q_KEY_WRAP_PUT, p, SOTP_NELEM(p), NULL);
	return nested ? sotp_db_end(st, rc) : rc;
}

int
sotp_store_key_wrap_drop(
    struct sotp_store *st, const char *kek, int64_t *removed)
{
	const struct sotp_param p[] = {SOTP_PTEXT(kek)};
	int rc;

	if ((rc = sotp_db_enter(st, "key_wrap_drop",
	         kek_ok(kek) && removed != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_run(st, SOTP_Q_KEY_WRAP_DROP, p, SOTP_NELEM(p), removed);
}

/* ---- what each version seals ---- */

struct count_walk {
	sotp_key_count_cb *cb;
	void *arg;
};

static int
count_row(struct sotp_store *st, void *arg)
{
	const struct count_walk *w = arg;
	int64_t what, n;
	uint32_t v;

	if (sotp_db_int(st, 0, 1, 3, &what) != 0 || version_col(st, 1, &v) ||
	    sotp_db_int(st, 2, 0, INT64_MAX, &n) != 0)
		return sotp_db_corrupt(st, "(key counts)");
	return w->cb(w->arg, (int)what, v, n);
}

int
sotp_store_key_counts(struct sotp_store *st, sotp_key_count_cb *cb, void *arg)
{
	struct count_walk w = {cb, arg};
	int rc;

	if ((rc = sotp_db_enter(st, "key_counts", cb != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_rows(st, SOTP_Q_KEY_COUNTS, NULL, 0, count_row, &w);
}

/* ---- re-sealing ---- */

struct old_rows {
	struct sotp_sealed_row *rows;
	size_t max, n;
};

static int
old_row(struct sotp_store *st, void *arg)
{
	struct old_rows *o = arg;
	struct sotp_sealed_row *r;
	uint32_t named = 0;

	if (o->n == o->max)
		return 1;
	r = &o->rows[o->n];
	memset(r, 0, sizeof(*r));
	if (sotp_db_text(st, 0, r->id, sizeof(r->id)) != 0 || r->id[0] == '\0')
		return sotp_db_corrupt(st, "serial/id");
	if (version_col(st, 1, &r->kv) != 0)
		return sotp_db_corrupt(st, "kv");
	if (sotp_db_blob(st, 2, r->blob, sizeof(r->blob), &r->len) != 0 ||
	    r->len == 0)
		return sotp_db_corrupt(st, "secret/card");
	/* The column mirrors the value's own header; both must agree. */
	if (sotp_sealed_kv(r->blob, r->len, &named) != SOTP_OK ||
	    named != r->kv)
		return sotp_db_corrupt(st, "kv (not the sealed value's)");
	o->n++;
	return SOTP_OK;
}

int
sotp_store_key_old(struct sotp_store *st, int cards, uint32_t below,
    struct sotp_sealed_row *rows, size_t max, size_t *n)
{
	const struct sotp_param p[] = {SOTP_PINT(below), SOTP_PINT(max)};
	struct old_rows o = {rows, max, 0};
	int rc;

	if (n != NULL)
		*n = 0;
	if ((rc = sotp_db_enter(st, "key_old",
	         rows != NULL && max > 0 && n != NULL && st->depth > 0)) !=
	    SOTP_OK)
		return rc;
	rc = sotp_db_rows(st,
	    cards ? SOTP_Q_KEY_OLD_CARDS : SOTP_Q_KEY_OLD_TOKENS, p,
	    SOTP_NELEM(p), old_row, &o);
	*n = o.n;
	return rc;
}

int
sotp_store_key_reseal(struct sotp_store *st, int cards, const char *id,
    uint32_t oldkv, const uint8_t *blob, size_t len, uint32_t kv,
    const uint8_t *fp, int *won)
{
	/* A card's statement takes the first four. */
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PBLOB(blob, len),
	    SOTP_PINT(kv), SOTP_PINT(oldkv),
	    SOTP_PBLOB(fp, fp != NULL ? SOTP_SEED_FP_LEN : 0)};
	int64_t changed = 0;
	int rc;

	if (won != NULL)
		*won = 0;
	if ((rc = sotp_db_enter(st, "key_reseal",
	         id != NULL && id[0] != '\0' && blob != NULL && len > 0 &&
	             len <= (cards ? SOTP_CARD_MAX : SOTP_SECRET_MAX) &&
	             (cards ? fp == NULL : fp != NULL) && won != NULL)) !=
	    SOTP_OK)
		return rc;
	rc = sotp_db_run(st,
	    cards ? SOTP_Q_KEY_RESEAL_CARD : SOTP_Q_KEY_RESEAL_TOKEN, p,
	    SOTP_NELEM(p) - (cards ? 1 : 0), &changed);
	if (rc == SOTP_OK)
		*won = changed == 1;
	return rc;
}

static int
count_one(struct sotp_store *st, void *arg)
{
	if (sotp_db_int(st, 0, 0, INT64_MAX, arg) != 0)
		return sotp_db_corrupt(st, "(count)");
	return SOTP_OK;
}

int
sotp_store_key_left(struct sotp_store *st, uint32_t kv, int below, int64_t *n)
{
	const struct sotp_param p[] = {SOTP_PINT(kv)};
	int rc;

	if (n != NULL)
		*n = 0;
	if ((rc = sotp_db_enter(st, "key_left", n != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_row(st, below ? SOTP_Q_KEY_LEFT : SOTP_Q_KEY_USED, p,
	    SOTP_NELEM(p), count_one, n);
}

struct load_rows {
	struct sotp_key_ring *ring;
	struct sotp_key_live *live;
	size_t max, n;
	int over;
};

static int
load_row(struct sotp_store *st, void *arg)
{
	struct load_rows *l = arg;
	struct sotp_key_live *k;
	int rc;

	if ((rc = ring_row(st, l->ring)) != SOTP_OK)
		return rc;
	if (l->n == l->max) {
		l->over = 1;
		return 1;
	}
	k = &l->live[l->n];
	memset(k, 0, sizeof(*k));
	if (version_col(st, 3, &k->version) != 0 ||
	    sotp_db_blob(st, 4, k->blob, sizeof(k->blob), &k->len) != 0)
		return sotp_db_corrupt(st, "key_dek/key_wrap");
	l->n++;
	return SOTP_OK;
}

int
sotp_store_key_load(struct sotp_store *st, const char *kek,
    struct sotp_key_ring *ring, struct sotp_key_live *live, size_t max,
    size_t *n, int *over)
{
	const struct sotp_param p[] = {SOTP_PTEXT(kek)};
	struct load_rows l = {ring, live, max, 0, 0};
	int rc;

	if (n != NULL)
		*n = 0;
	if (ring != NULL)
		memset(ring, 0, sizeof(*ring));
	if ((rc = sotp_db_enter(st, "key_load",
	         kek_ok(kek) && ring != NULL && live != NULL && max > 0 &&
	             n != NULL && over != NULL)) != SOTP_OK)
		return rc;
	rc = sotp_db_rows(st, SOTP_Q_KEY_LOAD, p, SOTP_NELEM(p), load_row, &l);
	*n = l.n;
	*over = l.over;
	/* A ring row always has its current version live: no row, no ring. */
	if (rc == SOTP_OK && l.n == 0)
		rc = SOTP_ERR_NOT_FOUND;
	return rc;
}

/* ---- seed fingerprints (seedfp.c) ---- */

struct serial_out {
	char *dst;
	size_t sz;
};

static int
serial_row(struct sotp_store *st, void *arg)
{
	struct serial_out *o = arg;

	if (sotp_db_text(st, 0, o->dst, o->sz) != 0 || o->dst[0] == '\0')
		return sotp_db_corrupt(st, "serial");
	return SOTP_OK;
}

int
sotp_store_seed_find(struct sotp_store *st, const uint8_t *fp, uint32_t kv,
    char *holder, size_t holdersz)
{
	const struct sotp_param p[] = {
	    SOTP_PBLOB(fp, SOTP_SEED_FP_LEN), SOTP_PINT(kv)};
	struct serial_out o = {holder, holdersz};
	int rc;

	if (holder != NULL && holdersz > 0)
		holder[0] = '\0';
	if ((rc = sotp_db_enter(st, "seed_find",
	         fp != NULL && holder != NULL && holdersz > 0)) != SOTP_OK)
		return rc;
	return sotp_db_row(
	    st, SOTP_Q_SEED_FIND, p, SOTP_NELEM(p), serial_row, &o);
}

int
sotp_store_seed_unfilled(struct sotp_store *st, char *serial, size_t serialsz)
{
	struct serial_out o = {serial, serialsz};
	int rc;

	if (serial != NULL && serialsz > 0)
		serial[0] = '\0';
	if ((rc = sotp_db_enter(st, "seed_unfilled",
	         serial != NULL && serialsz > 0)) != SOTP_OK)
		return rc;
	return sotp_db_row(st, SOTP_Q_SEED_UNFILLED, NULL, 0, serial_row, &o);
}

int
sotp_store_seed_todo(
    struct sotp_store *st, struct sotp_sealed_row *rows, size_t max, size_t *n)
{
	const struct sotp_param p[] = {SOTP_PINT(max)};
	struct old_rows o = {rows, max, 0};
	int rc;

	if (n != NULL)
		*n = 0;
	if ((rc = sotp_db_enter(st, "seed_todo",
	         rows != NULL && max > 0 && n != NULL && st->depth > 0)) !=
	    SOTP_OK)
		return rc;
	rc = sotp_db_rows(st, SOTP_Q_SEED_TODO, p, SOTP_NELEM(p), old_row, &o);
	*n = o.n;
	return rc;
}

int
sotp_store_seed_set(struct sotp_store *st, const char *serial, uint32_t kv,
    const uint8_t *fp, int *won)
{
	const struct sotp_param p[] = {SOTP_PTEXT(serial),
	    SOTP_PBLOB(fp, SOTP_SEED_FP_LEN), SOTP_PINT(kv)};
	int64_t changed = 0;
	int rc;

	if (won != NULL)
		*won = 0;
	if ((rc = sotp_db_enter(st, "seed_set",
	         serial != NULL && serial[0] != '\0' && fp != NULL &&
	             won != NULL)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(st, SOTP_Q_SEED_SET, p, SOTP_NELEM(p), &changed);
	if (rc == SOTP_OK)
		*won = changed == 1;
	return rc;
}

struct shared_out {
	sotp_store_shared_fn *fn;
	void *arg;
};

static int
shared_row(struct sotp_store *st, void *arg)
{
	struct shared_out *o = arg;
	char serial[SOTP_ID_MAX];
	int64_t group = 0;

	if (sotp_db_text(st, 0, serial, sizeof(serial)) != 0 ||
	    serial[0] == '\0')
		return sotp_db_corrupt(st, "serial");
	if (sotp_db_int(st, 1, 1, UINT32_MAX, &group) != 0)
		return sotp_db_corrupt(st, "dense_rank");
	return o->fn(o->arg, (unsigned int)group, serial);
}

int
sotp_store_seed_shared(
    struct sotp_store *st, sotp_store_shared_fn *fn, void *arg)
{
	struct shared_out o = {fn, arg};
	int rc;

	if ((rc = sotp_db_enter(st, "seed_shared", fn != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_rows(st, SOTP_Q_SEED_SHARED, NULL, 0, shared_row, &o);
}

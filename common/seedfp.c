/*
 * seedfp.c - is a new token's seed already another token's?
 *
 * Two tokens with one seed give the same codes: whoever holds one could
 * answer for the other's contract (a vendor's batch delivered twice under
 * new serials, a file imported again with its serials renamed). token add
 * and token import refuse such a seed, naming the token that holds it.
 *
 * The store holds sealed seeds only, and unsealing every one to compare
 * costs seconds at a million tokens. So each token also carries its
 * seed's fingerprint, an HMAC-SHA256 under the seed subkey of the data
 * key version that seals it (keys.c): the check is one indexed lookup per
 * live version. The fingerprint is not the seed and, keyed, tells nothing
 * about it to whoever reads the database without the keys (no dictionary
 * of likely seeds can be run against it); it is still never logged or
 * shown.
 *
 * Versions. A rotation re-seals each token under the new version and
 * writes its new fingerprint in the same UPDATE (keys_admin.c), so a
 * token is always found under the version it is sealed under. While one
 * runs, tokens are under two versions: the candidate's fingerprint is
 * looked up under each live one. The check takes the key ring's row
 * first, as every batch of a rotation does, so no token moves between
 * versions while it looks (SQLite's BEGIN IMMEDIATE holds the whole file
 * anyway), and two writers of given seeds check one after the other:
 * the second sees the first's tokens.
 *
 * Not a UNIQUE index: a store from before may already hold one seed
 * twice, and tokens are never deleted, so a constraint would make every
 * later add fail. The lookup under the ring's row is the check; init
 * fills the fingerprints of a store upgraded to schema version 5
 * (sotp_seed_fill, which needs the data keys the schema step has not),
 * and until every token has one the check refuses (fails closed) rather
 * than pass a seed it cannot see.
 */
#include "sotp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* Tokens filled per transaction: the write lock is held for one batch. */
#define FILL_BATCH 500

static int
store_fail(struct sotp_ctx *ctx, int rc)
{
	if (ctx->err[0] == '\0')
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

int
sotp_seed_fp(struct sotp_ctx *ctx, uint32_t kv, const uint8_t *seed, size_t len,
    uint8_t *fp)
{
	return sotp_keys_seed_mac(ctx, kv, seed, len, fp);
}

struct versions {
	struct sotp_seed_check *sc;
	int over;
};

static int
note_version(void *arg, uint32_t version, int64_t created)
{
	struct versions *w = arg;

	(void)created;
	if (w->sc->n == sizeof(w->sc->v) / sizeof(w->sc->v[0]))
		w->over = 1;
	else
		w->sc->v[w->sc->n++] = version;
	return 0;
}

int
sotp_seed_check_begin(struct sotp_ctx *ctx, struct sotp_seed_check *sc)
{
	struct sotp_key_ring ring;
	struct versions w = {sc, 0};
	char serial[SOTP_ID_MAX];
	int rc;

	memset(sc, 0, sizeof(*sc));
	ctx->err[0] = '\0';
	rc = sotp_store_key_ring(ctx->st, 1, &ring);
	if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		return store_fail(ctx, rc);
	rc = sotp_store_seed_unfilled(ctx->st, serial, sizeof(serial));
	if (rc == SOTP_OK) {
		sotp_ctx_seterr(ctx,
		    "token '%s' in the store has no seed fingerprint yet (a store upgraded to schema version 5): run \"shinkin-otp init\" to fill them; until then no seed can be checked against the store's, and none is taken",
		    serial);
		sc->needs_init = 1;
		return SOTP_ERR_STORE;
	}
	if (rc != SOTP_ERR_NOT_FOUND)
		return store_fail(ctx, rc);
	/* Every live version held, and noted oldest first. */
	if ((rc = sotp_keys_sync(ctx, 1)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_key_live(ctx->st, note_version, &w)) != SOTP_OK)
		return store_fail(ctx, rc);
	if (w.over) { /* a version not looked under: refuse, not pass */
		sotp_ctx_seterr(ctx, "more live key versions than %zu",
		    sizeof(sc->v) / sizeof(sc->v[0]));
		return SOTP_ERR_KEY;
	}
	return SOTP_OK;
}

int
sotp_seed_reason(const struct sotp_seed_check *sc, int rc)
{
	/*
	 * Not STORE_UNAVAILABLE: the store answers; it waits for init,
	 * which only the operator runs.
	 */
	return sc->needs_init ? SOTP_R_BAD_CONFIG : sotp_reason_from_rc(rc);
}

int
sotp_seed_held(struct sotp_ctx *ctx, const struct sotp_seed_check *sc,
    const uint8_t *seed, size_t len, int *found, char *holder, size_t holdersz)
{
	uint8_t fp[SOTP_SEED_FP_LEN];
	size_t i;
	int rc = SOTP_OK;

	*found = 0;
	holder[0] = '\0';
	for (i = 0; i < sc->n; i++) {
		if ((rc = sotp_seed_fp(ctx, sc->v[i], seed, len, fp)) !=
		    SOTP_OK)
			break;
		rc = sotp_store_seed_find(
		    ctx->st, fp, sc->v[i], holder, holdersz);
		if (rc == SOTP_OK) {
			*found = 1;
			break;
		}
		if (rc != SOTP_ERR_NOT_FOUND) {
			rc = store_fail(ctx, rc);
			break;
		}
		rc = SOTP_OK;
	}
	SOTP_WIPE_ARRAY(fp);
	return rc;
}

/* One batch of tokens without a fingerprint, in its own transaction. */
static int
fill_batch(struct sotp_ctx *ctx, struct sotp_sealed_row *rows, time_t now,
    size_t *n, int64_t *filled)
{
	struct sotp_key_ring ring;
	uint8_t plain[SOTP_SECRET_MAX], fp[SOTP_SEED_FP_LEN];
	char detail[64];
	size_t i, plen = 0;
	int rc, won = 0, done = 0;

	*n = 0;
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		return store_fail(ctx, rc);
	/* As a rotation's batch: no token changes version meanwhile. */
	rc = sotp_store_key_ring(ctx->st, 1, &ring);
	if ((rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND) ||
	    (rc = sotp_store_seed_todo(ctx->st, rows, FILL_BATCH, n)) !=
	        SOTP_OK) {
		rc = store_fail(ctx, rc);
		goto fail;
	}
	for (i = 0; i < *n; i++) {
		if ((rc = sotp_keys_unseal(ctx, rows[i].id, rows[i].blob,
		         rows[i].len, plain, sizeof(plain), &plen)) !=
		    SOTP_OK) {
			sotp_ctx_seterr(ctx,
			    "token '%s': sealed under key version %u, which does not unseal it (tampered row?): its seed fingerprint cannot be made, and token add and token import refuse until it is",
			    rows[i].id, rows[i].kv);
			goto fail;
		}
		rc = sotp_seed_fp(ctx, rows[i].kv, plain, plen, fp);
		SOTP_WIPE_ARRAY(plain);
		if (rc != SOTP_OK)
			goto fail;
		if ((rc = sotp_store_seed_set(ctx->st, rows[i].id, rows[i].kv,
		         fp, &won)) != SOTP_OK) {
			rc = store_fail(ctx, rc);
			goto fail;
		}
		done += won;
	}
	if (done > 0) {
		snprintf(detail, sizeof(detail), "seed fingerprints=%d", done);
		if ((rc = sotp_audit(ctx, now, "token.fingerprint", NULL, NULL,
		         NULL, "accept", SOTP_R_ACCEPTED, detail)) != SOTP_OK)
			goto fail;
	}
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		return store_fail(ctx, rc);
	*filled += done;
	SOTP_WIPE_ARRAY(fp);
	return SOTP_OK;
fail:
	sotp_store_rollback(ctx->st);
	SOTP_WIPE_ARRAY(plain);
	SOTP_WIPE_ARRAY(fp);
	return rc;
}

int
sotp_seed_fill(struct sotp_ctx *ctx, time_t now, int64_t *filled)
{
	struct sotp_sealed_row *rows = NULL;
	size_t n = 0;
	int rc;

	*filled = 0;
	ctx->err[0] = '\0';
	if ((rows = calloc(FILL_BATCH, sizeof(*rows))) == NULL)
		return SOTP_ERR_NOMEM;
	/*
	 * Each batch fills every row it reads (or stops at an error), and a
	 * token written meanwhile comes with its fingerprint, so this ends.
	 */
	do
		rc = fill_batch(ctx, rows, now, &n, filled);
	while (rc == SOTP_OK && n == FILL_BATCH);
	sotp_free_secret(rows, FILL_BATCH * sizeof(*rows));
	return rc;
}

/* ---- seeds two tokens already hold ---- */

struct shared {
	struct shared_tok {
		char serial[SOTP_ID_MAX];
		unsigned int group;
	} * t;
	size_t n, cap;
};

static int
shared_note(void *arg, unsigned int group, const char *serial)
{
	struct shared *s = arg;
	struct shared_tok *t;
	size_t cap;

	if (s->n == s->cap) {
		cap = s->cap > 0 ? s->cap * 2 : 16;
		if ((t = realloc(s->t, cap * sizeof(*t))) == NULL)
			return SOTP_ERR_NOMEM;
		s->t = t;
		s->cap = cap;
	}
	sotp_strlcpy(s->t[s->n].serial, serial, sizeof(s->t[s->n].serial));
	s->t[s->n++].group = group;
	return SOTP_OK;
}

/* Read whole before any is handed on: cb may use the store. */
static int
shared_read(struct sotp_ctx *ctx, struct shared *s)
{
	int rc;

	memset(s, 0, sizeof(*s));
	rc = sotp_store_seed_shared(ctx->st, shared_note, s);
	if (rc != SOTP_OK && rc != SOTP_ERR_NOMEM)
		rc = store_fail(ctx, rc);
	return rc;
}

int
sotp_seed_shared(struct sotp_ctx *ctx, sotp_seed_shared_cb *cb, void *arg)
{
	struct shared s;
	size_t i;
	int rc, r;

	if (ctx == NULL || cb == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	ctx->err[0] = '\0';
	rc = shared_read(ctx, &s);
	for (i = 0; rc == SOTP_OK && i < s.n; i++)
		if ((r = cb(arg, s.t[i].group, s.t[i].serial)) != 0) {
			rc = r < 0 ? r : SOTP_OK;
			break;
		}
	free(s.t);
	return rc;
}

void
sotp_seed_shared_audit(struct sotp_ctx *ctx, time_t now)
{
	struct shared s;
	char detail[512];
	size_t i, j, len;
	int rc, n;

	if ((rc = shared_read(ctx, &s)) != SOTP_OK) {
		sotp_log(ctx, LOG_ERR,
		    "tokens holding one seed not looked for: %s",
		    sotp_ctx_errmsg(ctx));
		free(s.t);
		return;
	}
	for (i = 0; i < s.n; i = j) {
		len = 0;
		n = snprintf(detail, sizeof(detail), "tokens ");
		for (j = i; j < s.n && s.t[j].group == s.t[i].group; j++) {
			len = (size_t)n;
			if (len < sizeof(detail))
				n += snprintf(detail + len,
				    sizeof(detail) - len, "%s'%s'",
				    j > i ? ", " : "", s.t[j].serial);
		}
		len = (size_t)n;
		if (len < sizeof(detail))
			n += snprintf(detail + len, sizeof(detail) - len,
			    " hold one seed: each answers with the others' codes");
		sotp_mark_cut(detail, sizeof(detail), (size_t)n);
		(void)sotp_audit(ctx, now, "token.seed_shared", NULL, NULL,
		    NULL, "error", SOTP_R_BAD_INPUT, detail);
	}
	free(s.t);
}

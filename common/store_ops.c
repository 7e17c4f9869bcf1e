/*
 * store_ops.c - every store operation, written once above the dialect
 * drivers (the sotp_store_* functions of sotp_int.h).
 *
 * An operation checks its arguments and names itself (sotp_db_enter),
 * then runs statements by id with typed parameters and decodes their
 * rows; the SQL for each id is in each driver's dialect table. Adding an
 * operation takes one id, one SQL row per dialect and one function:
 *
 *	store_int.h:
 *		SOTP_Q_TOKEN_SET_DISABLED,
 *	store_sqlite.c:
 *		[SOTP_Q_TOKEN_SET_DISABLED] = "UPDATE tokens SET disabled = ?2"
 *		                              " WHERE serial = ?1",
 *	store_pg.c:
 *		[SOTP_Q_TOKEN_SET_DISABLED] = "UPDATE tokens SET disabled = $2"
 *		                              " WHERE serial = $1",
 *	store_ops.c:
 *		int
 *		sotp_store_token_set_disabled(
 *		    struct sotp_store *st, const char *serial, int disabled)
 *		{
 *			const struct sotp_param p[] = {
 *			    SOTP_PTEXT(serial), SOTP_PINT(disabled != 0)};
 *			int rc;
 *
 *			if ((rc = sotp_db_enter(st, "token_set_disabled",
 *			         valid_id(serial))) != SOTP_OK)
 *				return rc;
 *			return sotp_db_update_one(
 *			    st, SOTP_Q_TOKEN_SET_DISABLED, p, SOTP_NELEM(p));
 *		}
 *
 * No business rule lives here: which refusal applies, and in which order,
 * is decided in engine.c and admin.c over plain reads. What the store
 * keeps is atomicity. A write whose outcome depends on the row as it is
 * now is guarded in its WHERE clause (a compare-and-set) and says whether
 * it won; the reads a decision rests on can be taken under row locks held
 * to the end of the caller's transaction (token_lock, contract_lock); and
 * an operation of several statements runs in a transaction of its own, or
 * a savepoint inside the caller's.
 */
#include <stdlib.h>
#include <string.h>

#include "sotp_int.h"
#include "store_int.h"

/* A contract ID or serial: 1..SOTP_ID_MAX-1 bytes. */
static int
valid_id(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	n = strnlen(s, SOTP_ID_MAX);
	return n > 0 && n < SOTP_ID_MAX;
}

static int
valid_login(enum sotp_login login)
{
	return login == SOTP_LOGIN_NONE || login == SOTP_LOGIN_OTP ||
	    login == SOTP_LOGIN_CARD;
}

/* A text that fits a buffer of sz bytes with its NUL. */
static int
fits(const char *s, size_t sz)
{
	return s != NULL && strnlen(s, sz) < sz;
}

/*
 * Runs a statement that a constraint may refuse (SOTP_ERR_EXISTS). Where
 * a failed statement aborts the whole transaction (PostgreSQL), it gets a
 * savepoint of its own inside a caller's transaction, so that the caller's
 * batch survives the refusal as it does on SQLite.
 */
static int
guarded(struct sotp_store *st, enum sotp_stmt id, const struct sotp_param *p,
    size_t n)
{
	int nested = st->depth > 0 && !st->drv->stmt_undo;
	int rc;

	if (nested && (rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(st, id, p, n, NULL);
	return nested ? sotp_db_end(st, rc) : rc;
}

/* Whether a row exists: the rare path of a guarded write that lost. */
static int
any_row(struct sotp_store *st, void *arg)
{
	(void)st;
	(void)arg;
	return SOTP_OK;
}

static int
key_exists(struct sotp_store *st, enum sotp_stmt id, const char *key)
{
	const struct sotp_param p[] = {SOTP_PTEXT(key)};

	return sotp_db_row(st, id, p, SOTP_NELEM(p), any_row, NULL);
}

/* ---- Rows ---- */

/*
 * The columns of SOTP_SQL_TOKEN_SELECT (store_int.h), in order, from
 * column b on.
 */
static int
token_cols(struct sotp_store *st, int b, struct sotp_token_rec *t)
{
	int64_t v;

	memset(t, 0, sizeof(*t));
	if (sotp_db_text(st, b + 0, t->serial, sizeof(t->serial)) != 0)
		return sotp_db_corrupt(st, "serial");
	if (sotp_db_text(st, b + 1, t->kind, sizeof(t->kind)) != 0)
		return sotp_db_corrupt(st, "kind");
	if (sotp_db_blob(
	        st, b + 2, t->secret, sizeof(t->secret), &t->secret_len) != 0 ||
	    t->secret_len == 0)
		return sotp_db_corrupt(st, "secret");
	/* What the value names; checked when it is unsealed (keys.c). */
	(void)sotp_sealed_kv(t->secret, t->secret_len, &t->kv);
	if (sotp_db_int(st, b + 3, SOTP_ALG_SHA1, SOTP_ALG_SHA512, &v) != 0)
		return sotp_db_corrupt(st, "algorithm");
	t->alg = (enum sotp_alg)v;
	if (sotp_db_int(st, b + 4, 0, UINT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "digits");
	t->digits = (unsigned int)v;
	if (sotp_db_int(st, b + 5, 0, UINT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "period");
	t->period = (unsigned int)v;
	if (sotp_db_int(st, b + 6, -1, INT64_MAX, &t->last_step) != 0)
		return sotp_db_corrupt(st, "last_step");
	if (sotp_db_int(st, b + 7, INT_MIN, INT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "drift");
	t->drift = (int)v;
	if (sotp_db_int(st, b + 8, 0, 1, &v) != 0)
		return sotp_db_corrupt(st, "disabled");
	t->disabled = (int)v;
	if (sotp_db_int(st, b + 9, INT64_MIN, INT64_MAX, &t->created) != 0)
		return sotp_db_corrupt(st, "created");
	if (sotp_db_text(st, b + 10, t->contract, sizeof(t->contract)) != 0)
		return sotp_db_corrupt(st, "contracts.id");
	return SOTP_OK;
}

/*
 * The columns of SOTP_SQL_CONTRACT_SELECT (store_int.h), in order, from
 * column b on.
 */
static int
contract_cols(struct sotp_store *st, int b, struct sotp_contract_rec *c)
{
	int64_t v;

	memset(c, 0, sizeof(*c));
	if (sotp_db_text(st, b + 0, c->id, sizeof(c->id)) != 0)
		return sotp_db_corrupt(st, "id");
	if (sotp_db_text(st, b + 1, c->pwhash, sizeof(c->pwhash)) != 0)
		return sotp_db_corrupt(st, "pwhash");
	if (sotp_db_int(st, b + 2, SOTP_LOGIN_NONE, SOTP_LOGIN_CARD, &v) != 0)
		return sotp_db_corrupt(st, "login");
	c->login = (enum sotp_login)v;
	if (sotp_db_text(st, b + 3, c->serial, sizeof(c->serial)) != 0)
		return sotp_db_corrupt(st, "serial");
	if (sotp_db_blob(st, b + 4, c->card, sizeof(c->card), &c->card_len) !=
	    0)
		return sotp_db_corrupt(st, "card");
	if (c->card_len > 0)
		(void)sotp_sealed_kv(c->card, c->card_len, &c->kv);
	if (sotp_db_int(st, b + 5, 0, UINT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "failures");
	c->failures = (unsigned int)v;
	if (sotp_db_int(st, b + 6, -1, INT64_MAX, &c->locked_until) != 0)
		return sotp_db_corrupt(st, "locked_until");
	if (sotp_db_int(st, b + 7, 0, 1, &v) != 0)
		return sotp_db_corrupt(st, "closed");
	c->closed = (int)v;
	if (sotp_db_int(st, b + 8, INT64_MIN, INT64_MAX, &c->created) != 0)
		return sotp_db_corrupt(st, "created");
	return SOTP_OK;
}

static int
row_token(struct sotp_store *st, void *arg)
{
	return token_cols(st, 0, arg);
}

static int
row_contract(struct sotp_store *st, void *arg)
{
	return contract_cols(st, 0, arg);
}

/* ---- Tokens ---- */

int
sotp_store_token_get(
    struct sotp_store *st, const char *serial, struct sotp_token_rec *out)
{
	const struct sotp_param p[] = {SOTP_PTEXT(serial)};
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = sotp_db_enter(
	         st, "token_get", valid_id(serial) && out != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_row(
	    st, SOTP_Q_TOKEN_GET, p, SOTP_NELEM(p), row_token, out);
}

int
sotp_store_token_lock(struct sotp_store *st, const char *serial)
{
	int rc;

	if ((rc = sotp_db_enter(st, "token_lock",
	         valid_id(serial) && st != NULL && st->depth > 0)) != SOTP_OK)
		return rc;
	return key_exists(st, SOTP_Q_TOKEN_LOCK, serial);
}

static int
token_insert(struct sotp_store *st, const struct sotp_token_rec *t)
{
	const struct sotp_param p[] = {SOTP_PTEXT(t->serial),
	    SOTP_PTEXT(t->kind), SOTP_PBLOB(t->secret, t->secret_len),
	    SOTP_PINT(t->alg), SOTP_PINT(t->digits), SOTP_PINT(t->period),
	    SOTP_PINT(t->last_step), SOTP_PINT(t->drift),
	    SOTP_PINT(t->disabled != 0), SOTP_PINT(t->created),
	    SOTP_PINT(t->kv),
	    SOTP_PBLOB(t->seed_fp, t->has_fp ? SOTP_SEED_FP_LEN : 0)};

	return guarded(st, SOTP_Q_TOKEN_INSERT, p, SOTP_NELEM(p));
}

int
sotp_store_token_insert(struct sotp_store *st, const struct sotp_token_rec *t)
{
	int rc;

	if ((rc = sotp_db_enter(st, "token_insert",
	         t != NULL && valid_id(t->serial) &&
	             fits(t->kind, sizeof(t->kind)) && t->secret_len > 0 &&
	             t->secret_len <= sizeof(t->secret))) != SOTP_OK)
		return rc;
	if ((rc = token_insert(st, t)) == SOTP_ERR_EXISTS)
		sotp_store_seterr(st, "token_insert: serial exists");
	return rc;
}

struct token_list {
	sotp_token_rec_cb *cb;
	void *arg;
	struct sotp_token_rec t;
};

static int
token_list_row(struct sotp_store *st, void *arg)
{
	struct token_list *l = arg;
	int rc;

	if ((rc = row_token(st, &l->t)) != SOTP_OK)
		return rc;
	return l->cb(l->arg, &l->t);
}

int
sotp_store_token_list(struct sotp_store *st, int unassigned_only,
    sotp_token_rec_cb *cb, void *arg)
{
	struct token_list l = {.cb = cb, .arg = arg};
	int rc;

	if ((rc = sotp_db_enter(st, "token_list", cb != NULL)) != SOTP_OK)
		return rc;
	rc = sotp_db_rows(st,
	    unassigned_only ? SOTP_Q_TOKEN_LIST_FREE : SOTP_Q_TOKEN_LIST, NULL,
	    0, token_list_row, &l);
	sotp_wipe(&l.t, sizeof(l.t));
	return rc;
}

int
sotp_store_token_set_drift(struct sotp_store *st, const char *serial, int drift)
{
	const struct sotp_param p[] = {SOTP_PTEXT(serial), SOTP_PINT(drift)};
	int rc;

	if ((rc = sotp_db_enter(st, "token_set_drift", valid_id(serial))) !=
	    SOTP_OK)
		return rc;
	return sotp_db_update_one(st, SOTP_Q_TOKEN_SET_DRIFT, p, SOTP_NELEM(p));
}

int
sotp_store_token_set_disabled(
    struct sotp_store *st, const char *serial, int disabled)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(serial), SOTP_PINT(disabled != 0)};
	int rc;

	if ((rc = sotp_db_enter(st, "token_set_disabled", valid_id(serial))) !=
	    SOTP_OK)
		return rc;
	return sotp_db_update_one(
	    st, SOTP_Q_TOKEN_SET_DISABLED, p, SOTP_NELEM(p));
}

/* ---- Contracts ---- */

/* One contract by id: a plain read, or one under the row lock. */
static int
contract_read(struct sotp_store *st, const char *op, enum sotp_stmt q,
    int args_ok, const char *id, struct sotp_contract_rec *out)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id)};
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if ((rc = sotp_db_enter(
	         st, op, args_ok && valid_id(id) && out != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_row(st, q, p, SOTP_NELEM(p), row_contract, out);
}

int
sotp_store_contract_get(
    struct sotp_store *st, const char *id, struct sotp_contract_rec *out)
{
	return contract_read(
	    st, "contract_get", SOTP_Q_CONTRACT_GET, 1, id, out);
}

struct contract_list {
	sotp_contract_rec_cb *cb;
	void *arg;
	struct sotp_contract_rec c;
};

static int
contract_list_row(struct sotp_store *st, void *arg)
{
	struct contract_list *l = arg;
	int rc;

	if ((rc = row_contract(st, &l->c)) != SOTP_OK)
		return rc;
	return l->cb(l->arg, &l->c);
}

int
sotp_store_contract_list(struct sotp_store *st, int locked_only, int64_t now,
    int closed, sotp_contract_rec_cb *cb, void *arg)
{
	const struct sotp_param p[] = {SOTP_PINT(locked_only != 0),
	    SOTP_PINT(now), SOTP_PINT(closed < 0 ? -1 : closed != 0)};
	struct contract_list l = {.cb = cb, .arg = arg};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_list", cb != NULL)) != SOTP_OK)
		return rc;
	rc = sotp_db_rows(
	    st, SOTP_Q_CONTRACT_LIST, p, SOTP_NELEM(p), contract_list_row, &l);
	sotp_wipe(&l.c, sizeof(l.c));
	return rc;
}

static int
pwhash_row(struct sotp_store *st, void *arg)
{
	if (sotp_db_text(st, 0, arg, SOTP_HASH_MAX) != 0)
		return sotp_db_corrupt(st, "pwhash");
	return SOTP_OK;
}

int
sotp_store_pwhash_sample(struct sotp_store *st, char *out)
{
	int rc;

	if (out != NULL)
		out[0] = '\0';
	if ((rc = sotp_db_enter(st, "pwhash_sample", out != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_row(
	    st, SOTP_Q_CONTRACT_PWHASH_SAMPLE, NULL, 0, pwhash_row, out);
}

int
sotp_store_contract_lock(
    struct sotp_store *st, const char *id, struct sotp_contract_rec *out)
{
	return contract_read(st, "contract_lock", SOTP_Q_CONTRACT_LOCK,
	    st != NULL && st->depth > 0, id, out);
}

struct contract_token {
	struct sotp_contract_rec *c;
	struct sotp_token_rec *t;
	int *have;
};

/* SOTP_SQL_CONTRACT_SELECT's columns, then the bound token's, if any. */
static int
row_contract_token(struct sotp_store *st, void *arg)
{
	struct contract_token *x = arg;
	char serial[sizeof(x->t->serial)];
	int rc;

	if ((rc = contract_cols(st, 0, x->c)) != SOTP_OK)
		return rc;
	/* No token row joined (unbound): its columns are all NULL. */
	if (sotp_db_text(st, SOTP_CONTRACT_COLS, serial, sizeof(serial)) != 0)
		return sotp_db_corrupt(st, "tokens.serial");
	if (serial[0] == '\0')
		return SOTP_OK;
	if ((rc = token_cols(st, SOTP_CONTRACT_COLS, x->t)) != SOTP_OK)
		return rc;
	*x->have = 1;
	return SOTP_OK;
}

int
sotp_store_contract_lock_token(struct sotp_store *st, const char *id,
    struct sotp_contract_rec *out, struct sotp_token_rec *tok, int *have)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id)};
	struct contract_token x = {out, tok, have};
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (tok != NULL)
		memset(tok, 0, sizeof(*tok));
	if (have != NULL)
		*have = 0;
	if ((rc = sotp_db_enter(st, "contract_lock_token",
	         st != NULL && st->depth > 0 && valid_id(id) && out != NULL &&
	             tok != NULL && have != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_row(st, SOTP_Q_CONTRACT_LOCK_TOKEN, p, SOTP_NELEM(p),
	         row_contract_token, &x)) != SOTP_OK) {
		sotp_wipe(tok, sizeof(*tok));
		*have = 0;
	}
	return rc;
}

static int
contract_insert(struct sotp_store *st, const struct sotp_contract_rec *c)
{
	const struct sotp_param p[] = {SOTP_PTEXT(c->id), SOTP_PTEXT(c->pwhash),
	    SOTP_PINT(c->login), SOTP_PBLOB(c->card, c->card_len),
	    SOTP_PINT(c->failures), SOTP_PINT(c->locked_until),
	    SOTP_PINT(c->closed != 0), SOTP_PINT(c->created),
	    SOTP_PINT(c->card_len > 0 ? (int64_t)c->kv : -1)};

	return guarded(st, SOTP_Q_CONTRACT_INSERT, p, SOTP_NELEM(p));
}

/*
 * A new contract never arrives bound: a binding is made only by
 * sotp_store_bind, after the engine has checked the token and the code.
 */
int
sotp_store_contract_insert(
    struct sotp_store *st, const struct sotp_contract_rec *c)
{
	int rc;

	if ((rc = sotp_db_enter(st, "contract_insert",
	         c != NULL && valid_id(c->id) && c->serial[0] == '\0' &&
	             fits(c->pwhash, sizeof(c->pwhash)) &&
	             valid_login(c->login) &&
	             c->card_len <= sizeof(c->card))) != SOTP_OK)
		return rc;
	if ((rc = contract_insert(st, c)) == SOTP_ERR_EXISTS)
		sotp_store_seterr(st, "contract_insert: contract exists");
	return rc;
}

int
sotp_store_contract_set_password(
    struct sotp_store *st, const char *id, const char *pwhash)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PTEXT(pwhash)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_set_password",
	         valid_id(id) && fits(pwhash, SOTP_HASH_MAX))) != SOTP_OK)
		return rc;
	return sotp_db_update_one(
	    st, SOTP_Q_CONTRACT_SET_PASSWORD, p, SOTP_NELEM(p));
}

/*
 * Guarded by the hash the caller verified: a password set meanwhile (or a
 * rehash by another server) stands, and *won says 0.
 */
int
sotp_store_contract_rehash(struct sotp_store *st, const char *id,
    const char *old, const char *pwhash, int *won)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(id), SOTP_PTEXT(old), SOTP_PTEXT(pwhash)};
	int64_t changed = 0;
	int rc;

	if (won != NULL)
		*won = 0;
	if ((rc = sotp_db_enter(st, "contract_rehash",
	         valid_id(id) && fits(old, SOTP_HASH_MAX) &&
	             fits(pwhash, SOTP_HASH_MAX) && won != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_run(st, SOTP_Q_CONTRACT_REHASH, p, SOTP_NELEM(p),
	         &changed)) == SOTP_OK)
		*won = changed == 1;
	return rc;
}

/*
 * Guarded by the sealed card the caller read: a new card, or a rotation's
 * or another server's reseal meanwhile, stands and *won says 0.
 */
int
sotp_store_contract_reseal_card(struct sotp_store *st, const char *id,
    const uint8_t *old, size_t oldlen, const uint8_t *card, size_t len,
    uint32_t kv, int *won)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PBLOB(old, oldlen),
	    SOTP_PBLOB(card, len), SOTP_PINT(kv)};
	int64_t changed = 0;
	int rc;

	if (won != NULL)
		*won = 0;
	if ((rc = sotp_db_enter(st, "contract_reseal_card",
	         valid_id(id) && old != NULL && oldlen > 0 &&
	             oldlen <= SOTP_CARD_MAX && card != NULL && len > 0 &&
	             len <= SOTP_CARD_MAX && won != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_run(st, SOTP_Q_CONTRACT_RESEAL_CARD, p, SOTP_NELEM(p),
	         &changed)) == SOTP_OK)
		*won = changed == 1;
	return rc;
}

int
sotp_store_contract_set_login(
    struct sotp_store *st, const char *id, enum sotp_login login)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PINT(login)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_set_login",
	         valid_id(id) && valid_login(login))) != SOTP_OK)
		return rc;
	return sotp_db_update_one(
	    st, SOTP_Q_CONTRACT_SET_LOGIN, p, SOTP_NELEM(p));
}

/* len 0 removes the card. */
int
sotp_store_contract_set_card(struct sotp_store *st, const char *id,
    const uint8_t *card, size_t len, uint32_t kv)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PBLOB(card, len),
	    SOTP_PINT(len > 0 ? (int64_t)kv : -1)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_set_card",
	         valid_id(id) && (card != NULL || len == 0) &&
	             len <= SOTP_CARD_MAX)) != SOTP_OK)
		return rc;
	return sotp_db_update_one(
	    st, SOTP_Q_CONTRACT_SET_CARD, p, SOTP_NELEM(p));
}

int
sotp_store_contract_unlock(struct sotp_store *st, const char *id)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_unlock", valid_id(id))) !=
	    SOTP_OK)
		return rc;
	return sotp_db_update_one(st, SOTP_Q_CONTRACT_UNLOCK, p, SOTP_NELEM(p));
}

/*
 * Only the lock the caller saw: a newer lock set meanwhile by another
 * process or server stands (the guard is locked_until = seen).
 */
int
sotp_store_contract_unlock_expired(
    struct sotp_store *st, const char *id, int64_t seen)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PINT(seen)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_unlock_expired",
	         valid_id(id) && seen > 0)) != SOTP_OK)
		return rc;
	return sotp_db_update_one(
	    st, SOTP_Q_CONTRACT_UNLOCK_EXPIRED, p, SOTP_NELEM(p));
}

/*
 * A guarded write keyed by a contract (p[0]): *won = 1 when it changed
 * the row. When it did not, the rare path pays a read to tell a missing
 * contract (SOTP_ERR_NOT_FOUND) from a guard that said no.
 */
static int
contract_guarded(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n, int *won)
{
	int64_t changed = 0;
	int rc;

	if ((rc = sotp_db_run(st, id, p, n, &changed)) != SOTP_OK)
		return rc;
	if (changed == 1) {
		*won = 1;
		return SOTP_OK;
	}
	return key_exists(st, SOTP_Q_CONTRACT_GET, p[0].p);
}

/* Guarded by "no token bound": a bind racing with the close loses one. */
int
sotp_store_contract_close(struct sotp_store *st, const char *id, int *closed)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id)};
	int rc;

	if (closed != NULL)
		*closed = 0;
	if ((rc = sotp_db_enter(st, "contract_close",
	         valid_id(id) && closed != NULL)) != SOTP_OK)
		return rc;
	return contract_guarded(
	    st, SOTP_Q_CONTRACT_CLOSE, p, SOTP_NELEM(p), closed);
}

/* ---- The authentication path ---- */

/*
 * What a compare-and-set that lost finds on a fresh read of the token:
 * whether the token's disabled flag is what said no. last_step never
 * moves back, so a step still newer than it lost to the flag even if the
 * token has been enabled again since.
 */
struct lost_step {
	int64_t step;
	int disabled;
};

static int
lost_row(struct sotp_store *st, void *arg)
{
	struct lost_step *l = arg;
	int64_t last, v;

	if (sotp_db_int(st, 6, -1, INT64_MAX, &last) != 0)
		return sotp_db_corrupt(st, "last_step");
	if (sotp_db_int(st, 8, 0, 1, &v) != 0)
		return sotp_db_corrupt(st, "disabled");
	l->disabled = v != 0 || last < l->step;
	return SOTP_OK;
}

/*
 * The replay guard: the WHERE clause (last_step < step, disabled = 0),
 * not a prior read, decides, so two callers can never both move
 * last_step to one step, on one server or many, and a `token disable`
 * committed at any time before this statement (it takes no contract
 * lock) stops a decision, or a resync, that read the token enabled. A
 * loss says whether the flag was the guard.
 */
int
sotp_store_use_step(struct sotp_store *st, const char *serial,
    const char *contract, int64_t step, int drift, int *won, int *disabled)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(serial), SOTP_PINT(step), SOTP_PINT(drift)};
	const struct sotp_param q[] = {SOTP_PTEXT(contract)};
	const struct sotp_param k[] = {SOTP_PTEXT(serial)};
	struct lost_step l = {step, 0};
	int64_t changed = 0;
	int rc;

	if (won != NULL)
		*won = 0;
	if (disabled != NULL)
		*disabled = 0;
	if (contract != NULL && contract[0] == '\0')
		contract = NULL;
	if ((rc = sotp_db_enter(st, "use_step",
	         valid_id(serial) && (contract == NULL || valid_id(contract)) &&
	             step >= 0 && won != NULL && disabled != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	/*
	 * The count goes back to 0 first (undone below if the step is
	 * lost), so that on PostgreSQL it travels with the step's change:
	 * one round trip for both (sotp_db_run_deferred). A contract not
	 * found is no error. The caller holds the contract's row already.
	 */
	if (contract != NULL)
		rc = sotp_db_run_deferred(
		    st, SOTP_Q_CONTRACT_RESET_FAILURES, q, SOTP_NELEM(q));
	if (rc == SOTP_OK)
		rc = sotp_db_run(
		    st, SOTP_Q_TOKEN_USE_STEP, p, SOTP_NELEM(p), &changed);
	if (rc == SOTP_OK && changed != 1) {
		/*
		 * Lost, or no such token: only the rare path pays to tell,
		 * with a statement of its own, so that on PostgreSQL it
		 * sees what committed while the set waited for the row.
		 */
		if ((rc = sotp_db_row(st, SOTP_Q_TOKEN_GET, k, SOTP_NELEM(k),
		         lost_row, &l)) == SOTP_OK)
			*disabled = l.disabled;
		sotp_db_rollback(st);
		return rc;
	}
	if ((rc = sotp_db_end(st, rc)) == SOTP_OK)
		*won = 1;
	return rc;
}

struct fail_out {
	int64_t failures, locked_until;
};

static int
fail_row(struct sotp_store *st, void *arg)
{
	struct fail_out *f = arg;

	if (sotp_db_int(st, 0, 0, UINT_MAX, &f->failures) != 0)
		return sotp_db_corrupt(st, "failures");
	if (sotp_db_int(st, 1, -1, INT64_MAX, &f->locked_until) != 0)
		return sotp_db_corrupt(st, "locked_until");
	return SOTP_OK;
}

/* One statement, so the increment is atomic on every back end. */
int
sotp_store_fail(struct sotp_store *st, const char *contract,
    unsigned int threshold, int64_t lock_value, unsigned int *failures,
    int64_t *locked_until)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(contract), SOTP_PINT(threshold), SOTP_PINT(lock_value)};
	struct fail_out f = {0, 0};
	int rc;

	if (failures != NULL)
		*failures = 0;
	if (locked_until != NULL)
		*locked_until = 0;
	if ((rc = sotp_db_enter(st, "fail",
	         valid_id(contract) && failures != NULL &&
	             locked_until != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_row(st, SOTP_Q_CONTRACT_FAIL, p, SOTP_NELEM(p),
	         fail_row, &f)) != SOTP_OK)
		return rc;
	*failures = (unsigned int)f.failures;
	*locked_until = f.locked_until;
	return SOTP_OK;
}

int
sotp_store_reset_failures(struct sotp_store *st, const char *contract)
{
	const struct sotp_param p[] = {SOTP_PTEXT(contract)};
	int rc;

	if ((rc = sotp_db_enter(st, "reset_failures", valid_id(contract))) !=
	    SOTP_OK)
		return rc;
	return sotp_db_update_one(
	    st, SOTP_Q_CONTRACT_RESET_FAILURES, p, SOTP_NELEM(p));
}

/*
 * Two guarded writes in one transaction (or savepoint): the token's step
 * moves only forward (the replay guard), the contract takes the token only
 * while it is open and holds none, and the UNIQUE on contracts.serial
 * keeps the token from a second contract. Any guard that says no undoes
 * both.
 */
int
sotp_store_bind(struct sotp_store *st, const char *contract, const char *serial,
    enum sotp_login login, int64_t step, int drift, int *won)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(serial), SOTP_PINT(step), SOTP_PINT(drift)};
	const struct sotp_param q[] = {
	    SOTP_PTEXT(contract), SOTP_PTEXT(serial), SOTP_PINT(login)};
	int64_t changed = 0;
	int rc;

	if (won != NULL)
		*won = 0;
	if ((rc = sotp_db_enter(st, "bind",
	         valid_id(contract) && valid_id(serial) && valid_login(login) &&
	             step >= 0 && won != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	/* The engine has seen the token enabled under its row lock. */
	rc = sotp_db_run(st, SOTP_Q_TOKEN_USE_STEP, p, SOTP_NELEM(p), &changed);
	if (rc == SOTP_OK && changed == 1)
		rc = sotp_db_run(
		    st, SOTP_Q_CONTRACT_BIND, q, SOTP_NELEM(q), &changed);
	if (rc == SOTP_OK && changed == 1) {
		if ((rc = sotp_db_end(st, SOTP_OK)) == SOTP_OK)
			*won = 1;
		return rc;
	}
	sotp_db_rollback(st);
	/* The token is bound to another contract: a guard, not a fault. */
	return rc == SOTP_ERR_EXISTS ? SOTP_OK : rc;
}

/*
 * A migration binding (contract import): the contract takes serial and
 * login with no code checked and the token's last_step left as it is,
 * under the guards of a binding: the contract open and holding no token,
 * and the UNIQUE on contracts.serial keeping the token from a second
 * contract (*won = 0 then; in a savepoint where a refused statement would
 * abort the caller's transaction). Whether a binding without a code is
 * allowed at all is the policy's, checked by the caller (migrate.c).
 */
int
sotp_store_bind_migrated(struct sotp_store *st, const char *contract,
    const char *serial, enum sotp_login login, int *won)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(contract), SOTP_PTEXT(serial), SOTP_PINT(login)};
	int nested, rc;
	int64_t changed = 0;

	if (won != NULL)
		*won = 0;
	if ((rc = sotp_db_enter(st, "bind_migrated",
	         valid_id(contract) && valid_id(serial) && valid_login(login) &&
	             won != NULL)) != SOTP_OK)
		return rc;
	nested = st->depth > 0 && !st->drv->stmt_undo;
	if (nested && (rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(st, SOTP_Q_CONTRACT_BIND, p, SOTP_NELEM(p), &changed);
	if (nested)
		rc = sotp_db_end(st, rc);
	if (rc == SOTP_ERR_EXISTS)
		return SOTP_OK;
	if (rc == SOTP_OK)
		*won = changed == 1;
	return rc;
}

/*
 * Guarded by the binding the caller saw: a token bound since then (after
 * another unbind) stays bound. The token keeps its last_step, so codes it
 * has already produced stay spent if it is bound again.
 */
int
sotp_store_unbind(struct sotp_store *st, const char *contract,
    const char *serial, int *unbound)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(contract), SOTP_PTEXT(serial)};
	int rc;

	if (unbound != NULL)
		*unbound = 0;
	if ((rc = sotp_db_enter(st, "unbind",
	         valid_id(contract) && valid_id(serial) && unbound != NULL)) !=
	    SOTP_OK)
		return rc;
	return contract_guarded(
	    st, SOTP_Q_CONTRACT_UNBIND, p, SOTP_NELEM(p), unbound);
}

/*
 * Used challenge states. A state is good once: its id is marked used
 * (a row keyed by the id, carrying the state's own expiry), and a second
 * use finds the mark. Marks are purged once their state has expired,
 * `expires < now`, by the purger's clock. A clock running ahead (another
 * server of the farm, a step forward and back) therefore purges marks of
 * states that a clock on time still holds valid, and such a state would
 * be fresh again. So a purge raises the horizon, the highest expiry it
 * has removed, and a state whose expiry is not past the horizon is never
 * fresh: its mark may be gone. The horizon moves only as far as expiries
 * really stored, never to the purger's clock itself; the price is that a
 * state issued before a purged one and never used is refused too.
 *
 * Ordering, which the horizon's two rows carry (the dialect tables):
 * a use reads the horizon under a shared row lock and inserts its mark
 * in the same transaction; a purge takes the same rows exclusively,
 * raises the horizon and deletes in one transaction. Uses never wait
 * for each other (two uses of one id: the insert of the second waits for
 * the first to commit, then finds the mark); a purge waits for the uses
 * under way, and the uses that come meanwhile wait for it and then read
 * the raised horizon (READ COMMITTED re-reads a row it waited for). So a
 * purge and a use of a mark it removes cannot interleave: the use either
 * commits its mark before the purge looks, or reads the raised horizon.
 * Purges are rare, and batched: the one use that finds the last purge
 * SOTP_STORE_STATE_PURGE_EVERY seconds old by its clock purges after its
 * own commit, in a transaction of its own.
 */
struct state_marks {
	int64_t horizon;   /* the highest expiry purged */
	int64_t purged_at; /* when the last purge ran, by the purger's clock */
	unsigned int seen; /* bit 0: the horizon row, bit 1: purged_at */
};

static int
state_marks_row(struct sotp_store *st, void *arg)
{
	struct state_marks *m = arg;
	uint8_t id[1];
	size_t len = 0;
	int64_t v;

	if (sotp_db_blob(st, 0, id, sizeof(id), &len) != 0 || len != 1 ||
	    id[0] > 1)
		return sotp_db_corrupt(st, "used_states.id");
	if (sotp_db_int(st, 1, INT64_MIN, INT64_MAX, &v) != 0)
		return sotp_db_corrupt(st, "used_states.expires");
	if (id[0] == 0)
		m->horizon = v;
	else
		m->purged_at = v;
	m->seen |= 1u << id[0];
	return SOTP_OK;
}

/*
 * Reads the horizon rows with statement q (under its row lock), making
 * them first in a store that has none yet.
 */
static int
state_marks_read(struct sotp_store *st, enum sotp_stmt q, struct state_marks *m)
{
	int rc;

	memset(m, 0, sizeof(*m));
	if ((rc = sotp_db_rows(st, q, NULL, 0, state_marks_row, m)) !=
	        SOTP_OK ||
	    m->seen == 3)
		return rc;
	if ((rc = sotp_db_run(st, SOTP_Q_STATE_MARKS_INIT, NULL, 0, NULL)) !=
	    SOTP_OK)
		return rc;
	memset(m, 0, sizeof(*m));
	if ((rc = sotp_db_rows(st, q, NULL, 0, state_marks_row, m)) != SOTP_OK)
		return rc;
	return m->seen == 3 ? SOTP_OK : sotp_db_corrupt(st, "used_states");
}

static int
state_purge_due(const struct state_marks *m, int64_t now)
{
	return now >= m->purged_at + SOTP_STORE_STATE_PURGE_EVERY ||
	    now < m->purged_at - SOTP_STORE_STATE_PURGE_BACK;
}

/* A batch purge, in a transaction of its own. */
static int
state_purge(struct sotp_store *st, int64_t now)
{
	const struct sotp_param p[] = {SOTP_PINT(now)};
	struct state_marks m;
	int rc;

	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = state_marks_read(st, SOTP_Q_STATE_MARKS_PURGER, &m);
	/* Another server may have purged while this one waited. */
	if (rc == SOTP_OK && state_purge_due(&m, now)) {
		rc = sotp_db_run(
		    st, SOTP_Q_STATE_HORIZON_RAISE, p, SOTP_NELEM(p), NULL);
		if (rc == SOTP_OK)
			rc = sotp_db_run(
			    st, SOTP_Q_STATE_PURGE, p, SOTP_NELEM(p), NULL);
		if (rc == SOTP_OK)
			rc = sotp_db_run(
			    st, SOTP_Q_STATE_PURGED_AT, p, SOTP_NELEM(p), NULL);
	}
	return sotp_db_end(st, rc);
}

int
sotp_store_state_use(struct sotp_store *st, const uint8_t *id, int64_t expires,
    int64_t now, int *fresh)
{
	const struct sotp_param q[] = {
	    SOTP_PBLOB(id, SOTP_STORE_STATE_ID_LEN), SOTP_PINT(expires)};
	struct state_marks m;
	int64_t inserted = 0;
	int rc, outer;

	if (fresh != NULL)
		*fresh = 0;
	if ((rc = sotp_db_enter(
	         st, "state_use", id != NULL && fresh != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	outer = st->depth == 1;
	rc = state_marks_read(st, SOTP_Q_STATE_MARKS, &m);
	if (rc == SOTP_OK && expires > m.horizon)
		rc = sotp_db_run(
		    st, SOTP_Q_STATE_INSERT, q, SOTP_NELEM(q), &inserted);
	if ((rc = sotp_db_end(st, rc)) != SOTP_OK)
		return rc;
	*fresh = inserted == 1;
	/*
	 * Not inside a caller's transaction: the exclusive lock would be
	 * held to its end (and a shared one upgraded). A purge that fails
	 * changes nothing and leaves the marks for the next one; the use
	 * stands, so its outcome is what this call returns.
	 */
	if (outer && state_purge_due(&m, now) &&
	    state_purge(st, now) != SOTP_OK)
		st->err[0] = '\0';
	return SOTP_OK;
}

static int
probe_row(struct sotp_store *st, void *arg)
{
	int64_t *expires = arg;

	if (sotp_db_int(st, 0, INT64_MIN, INT64_MAX, expires) != 0)
		return sotp_db_corrupt(st, "used_states.expires");
	return SOTP_OK;
}

int
sotp_store_probe(struct sotp_store *st, const uint8_t *id, int64_t now)
{
	const struct sotp_param key[] = {
	    SOTP_PBLOB(id, SOTP_STORE_STATE_ID_LEN)};
	const struct sotp_param row[] = {
	    SOTP_PBLOB(id, SOTP_STORE_STATE_ID_LEN), SOTP_PINT(now)};
	int64_t n = 0, expires = -1;
	int rc;

	if ((rc = sotp_db_enter(st, "probe", id != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(st, SOTP_Q_STATE_INSERT, row, SOTP_NELEM(row), &n);
	if (rc == SOTP_OK && n != 1)
		rc = sotp_store_dberr(st, SOTP_ERR_STORE,
		    "the probe row was not inserted (%lld rows)", (long long)n);
	if (rc == SOTP_OK)
		rc = sotp_db_row(st, SOTP_Q_STATE_GET, key, SOTP_NELEM(key),
		    probe_row, &expires);
	if (rc == SOTP_OK && expires != now)
		rc = sotp_store_dberr(
		    st, SOTP_ERR_STORE, "the probe row read back differs");
	if (rc == SOTP_OK)
		rc = sotp_db_run(
		    st, SOTP_Q_STATE_DELETE, key, SOTP_NELEM(key), &n);
	if (rc == SOTP_OK && n != 1)
		rc = sotp_store_dberr(st, SOTP_ERR_STORE,
		    "the probe row was not deleted (%lld rows)", (long long)n);
	return sotp_db_end(st, rc);
}

/* ---- Audit ---- */

/* The columns of SOTP_SQL_AUDIT_SELECT (store_int.h), in order. */
static int
audit_row(struct sotp_store *st, struct sotp_audit_row *r)
{
	int64_t v;

	memset(r, 0, sizeof(*r));
	if (sotp_db_int(st, 0, INT64_MIN, INT64_MAX, &r->id) != 0 ||
	    sotp_db_int(st, 1, INT64_MIN, INT64_MAX, &r->ts) != 0)
		return sotp_db_corrupt(st, "id/ts");
	r->action = sotp_db_str(st, 2);
	r->contract = sotp_db_str(st, 3);
	r->serial = sotp_db_str(st, 4);
	r->context = sotp_db_str(st, 5);
	r->verdict = sotp_db_str(st, 6);
	if (sotp_db_int(st, 7, INT_MIN, INT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "reason");
	r->reason = (int)v;
	r->detail = sotp_db_str(st, 8);
	return SOTP_OK;
}

#define CHAIN_OK(c) ((c) >= 1 && (c) <= SOTP_AUDIT_CHAINS)

int
sotp_store_audit_chains(const struct sotp_store *st)
{
	return st != NULL && st->drv != NULL && st->drv->chains > 1
	    ? st->drv->chains
	    : 1;
}

/*
 * The chain a transaction appends to: the one it appends to already, so
 * that it never holds two heads (two transactions taking two heads in
 * turn could wait for each other); else this connection's own (chosen at
 * open, store.c), so that connections of a farm, a radiusd's threads or
 * its writer, PAM calls, mostly take different heads.
 */
int
sotp_store_audit_chain(struct sotp_store *st)
{
	int c;

	if (st == NULL)
		return 1;
	if (st->depth > 0 && st->chain != 0)
		return st->chain;
	c = st->home_chain >= 1 && st->home_chain <= SOTP_AUDIT_CHAINS
	    ? st->home_chain
	    : 1;
	if (st->depth > 0)
		st->chain = c;
	return c;
}

void
sotp_store_audit_chain_home(struct sotp_store *st, int chain)
{
	if (st != NULL && chain >= 1 && chain <= SOTP_AUDIT_CHAINS)
		st->home_chain = chain;
}

int
sotp_store_audit_append(struct sotp_store *st, const struct sotp_audit_rec *r,
    int chain, int64_t seq, const uint8_t *mac, uint32_t kv)
{
	const struct sotp_param p[] = {SOTP_PINT(r != NULL ? r->ts : 0),
	    SOTP_PTEXT(r != NULL ? r->action : NULL),
	    SOTP_PTEXT(r != NULL ? r->contract : NULL),
	    SOTP_PTEXT(r != NULL ? r->serial : NULL),
	    SOTP_PTEXT(r != NULL ? r->context : NULL),
	    SOTP_PTEXT(r != NULL ? r->verdict : NULL),
	    SOTP_PINT(r != NULL ? r->reason : 0),
	    SOTP_PTEXT(r != NULL ? r->detail : NULL),
	    /* seq 0 and an empty mac are stored as NULL: waiting. */
	    SOTP_PINT(seq), SOTP_PBLOB(mac, seq > 0 ? SOTP_AUDIT_MAC_LEN : 0),
	    SOTP_PINT(seq > 0), SOTP_PINT(seq > 0 ? (int64_t)kv : -1),
	    SOTP_PINT(chain)};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_append",
	         r != NULL && r->action != NULL && r->verdict != NULL &&
	             CHAIN_OK(chain) && seq >= 0 &&
	             (seq == 0 || mac != NULL))) != SOTP_OK)
		return rc;
	return sotp_db_run(st, SOTP_Q_AUDIT_ADD, p, SOTP_NELEM(p), NULL);
}

/* A MAC column: 32 bytes, or NULL (has = 0). */
static int
mac_col(struct sotp_store *st, int col, uint8_t *mac, int *has)
{
	size_t len = 0;

	if (sotp_db_blob(st, col, mac, SOTP_AUDIT_MAC_LEN, &len) != 0 ||
	    (len != 0 && len != SOTP_AUDIT_MAC_LEN))
		return -1;
	*has = len != 0;
	return 0;
}

/* The columns of SOTP_SQL_AUDIT_HEAD_SELECT (store_int.h), in order. */
static int
head_row(struct sotp_store *st, void *arg)
{
	struct sotp_audit_head *h = arg;
	int64_t kv = 0, base_kv = 0;
	int has = 0;

	memset(h, 0, sizeof(*h));
	if (sotp_db_int(st, 0, 0, INT64_MAX, &h->seq) != 0 ||
	    mac_col(st, 1, h->mac, &has) != 0 ||
	    mac_col(st, 2, h->tag, &h->has_tag) != 0 ||
	    sotp_db_int(st, 3, 0, INT64_MAX, &h->pending) != 0 ||
	    sotp_db_int(st, 4, 0, INT64_MAX, &h->base_seq) != 0 ||
	    mac_col(st, 5, h->base_mac, &has) != 0 ||
	    mac_col(st, 6, h->base_tag, &h->has_base_tag) != 0 ||
	    sotp_db_int(st, 7, 0, UINT32_MAX, &kv) != 0 ||
	    sotp_db_int(st, 8, 0, UINT32_MAX, &base_kv) != 0)
		return sotp_db_corrupt(st, "audit_head");
	h->kv = (uint32_t)kv;
	h->base_kv = (uint32_t)base_kv;
	return SOTP_OK;
}

int
sotp_store_audit_head(
    struct sotp_store *st, int chain, int lock, struct sotp_audit_head *h)
{
	const struct sotp_param p[] = {SOTP_PINT(chain)};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_head",
	         h != NULL && CHAIN_OK(chain) && (!lock || st->depth > 0))) !=
	    SOTP_OK)
		return rc;
	rc = sotp_db_row(st, lock ? SOTP_Q_AUDIT_HEAD_LOCK : SOTP_Q_AUDIT_HEAD,
	    p, SOTP_NELEM(p), head_row, h);
	if (rc == SOTP_ERR_NOT_FOUND)
		rc = sotp_db_corrupt(st, "audit_head (no row)");
	if (rc == SOTP_OK)
		h->chain = chain;
	return rc;
}

int
sotp_store_audit_head_set(
    struct sotp_store *st, const struct sotp_audit_head *h)
{
	const struct sotp_param p[] = {SOTP_PINT(h != NULL ? h->seq : 0),
	    SOTP_PBLOB(h != NULL ? h->mac : NULL,
	        h != NULL && h->seq > 0 ? SOTP_AUDIT_MAC_LEN : 0),
	    SOTP_PBLOB(h != NULL ? h->tag : NULL,
	        h != NULL && h->has_tag ? SOTP_AUDIT_MAC_LEN : 0),
	    SOTP_PINT(h != NULL ? h->pending : 0),
	    SOTP_PINT(h != NULL ? h->base_seq : 0),
	    SOTP_PBLOB(h != NULL ? h->base_mac : NULL,
	        h != NULL && h->base_seq > 0 ? SOTP_AUDIT_MAC_LEN : 0),
	    SOTP_PBLOB(h != NULL ? h->base_tag : NULL,
	        h != NULL && h->has_base_tag ? SOTP_AUDIT_MAC_LEN : 0),
	    SOTP_PINT(h != NULL ? h->kv : 0),
	    SOTP_PINT(h != NULL ? h->base_kv : 0),
	    SOTP_PINT(h != NULL ? h->chain : 0)};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_head_set",
	         h != NULL && CHAIN_OK(h->chain) && h->seq >= 0 &&
	             h->pending >= 0 && h->base_seq >= 0)) != SOTP_OK)
		return rc;
	return sotp_db_update_one(st, SOTP_Q_AUDIT_HEAD_SET, p, SOTP_NELEM(p));
}

struct audit_links {
	sotp_audit_link_cb *cb;
	void *arg;
};

/* The columns of SOTP_SQL_AUDIT_CHAIN_SELECT (store_int.h), in order. */
static int
audit_link_row(struct sotp_store *st, void *arg)
{
	const struct audit_links *l = arg;
	struct sotp_audit_row r;
	struct sotp_audit_link k;
	struct sotp_value v;
	int64_t n;
	int rc;

	if ((rc = audit_row(st, &r)) != SOTP_OK)
		return rc;
	memset(&k, 0, sizeof(k));
	if (sotp_db_int(st, 9, 0, INT64_MAX, &k.seq) != 0 ||
	    mac_col(st, 10, k.mac, &k.has_mac) != 0)
		return sotp_db_corrupt(st, "seq/mac");
	st->drv->value(st, 11, &v);
	if (v.type == SOTP_V_NULL)
		k.keyed = -1;
	else if (sotp_db_int(st, 11, 0, 1, &n) != 0)
		return sotp_db_corrupt(st, "keyed");
	else
		k.keyed = (int)n;
	if (sotp_db_int(st, 12, 0, UINT32_MAX, &n) != 0)
		return sotp_db_corrupt(st, "kv");
	k.kv = (uint32_t)n;
	return l->cb(l->arg, &r, &k);
}

int
sotp_store_audit_pending(
    struct sotp_store *st, int chain, sotp_audit_link_cb *cb, void *arg)
{
	const struct sotp_param p[] = {SOTP_PINT(chain)};
	struct audit_links l = {cb, arg};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_pending",
	         cb != NULL && CHAIN_OK(chain))) != SOTP_OK)
		return rc;
	return sotp_db_row(
	    st, SOTP_Q_AUDIT_PENDING, p, SOTP_NELEM(p), audit_link_row, &l);
}

/* Guarded by "still waiting": a row linked meanwhile is not moved. */
int
sotp_store_audit_link(struct sotp_store *st, int64_t id, int64_t seq,
    const uint8_t *mac, uint32_t kv)
{
	const struct sotp_param p[] = {SOTP_PINT(id), SOTP_PINT(seq),
	    SOTP_PBLOB(mac, SOTP_AUDIT_MAC_LEN), SOTP_PINT(kv)};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_link", seq > 0 && mac != NULL)) !=
	    SOTP_OK)
		return rc;
	return sotp_db_update_one(st, SOTP_Q_AUDIT_LINK, p, SOTP_NELEM(p));
}

int
sotp_store_audit_walk(struct sotp_store *st, int chain, int64_t after_seq,
    sotp_audit_link_cb *cb, void *arg)
{
	const struct sotp_param p[] = {SOTP_PINT(chain), SOTP_PINT(after_seq)};
	struct audit_links l = {cb, arg};
	int rc;

	if ((rc = sotp_db_enter(
	         st, "audit_walk", cb != NULL && CHAIN_OK(chain))) != SOTP_OK)
		return rc;
	return sotp_db_rows(
	    st, SOTP_Q_AUDIT_WALK, p, SOTP_NELEM(p), audit_link_row, &l);
}

struct two_ints {
	int64_t a, b;
};

static int
two_ints_row(struct sotp_store *st, void *arg)
{
	struct two_ints *t = arg;

	if (sotp_db_int(st, 0, 0, INT64_MAX, &t->a) != 0 ||
	    sotp_db_int(st, 1, 0, INT64_MAX, &t->b) != 0)
		return sotp_db_corrupt(st, "(count)");
	return SOTP_OK;
}

int
sotp_store_audit_counts(
    struct sotp_store *st, int64_t *pending, int64_t *legacy)
{
	struct two_ints t = {0, 0};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_counts",
	         pending != NULL && legacy != NULL)) != SOTP_OK)
		return rc;
	rc = sotp_db_row(st, SOTP_Q_AUDIT_COUNTS, NULL, 0, two_ints_row, &t);
	*pending = t.a;
	*legacy = t.b;
	return rc;
}

static int
int_row(struct sotp_store *st, void *arg)
{
	if (sotp_db_int(st, 0, 0, INT64_MAX, arg) != 0)
		return sotp_db_corrupt(st, "seq");
	return SOTP_OK;
}

int
sotp_store_audit_prune_point(
    struct sotp_store *st, int chain, int64_t before, int64_t *seq)
{
	const struct sotp_param p[] = {SOTP_PINT(before), SOTP_PINT(chain)};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_prune_point",
	         seq != NULL && CHAIN_OK(chain))) != SOTP_OK)
		return rc;
	*seq = 0;
	return sotp_db_row(
	    st, SOTP_Q_AUDIT_PRUNE_POINT, p, SOTP_NELEM(p), int_row, seq);
}

static int
mac_row(struct sotp_store *st, void *arg)
{
	int has = 0;

	if (mac_col(st, 0, arg, &has) != 0 || !has)
		return sotp_db_corrupt(st, "mac");
	return SOTP_OK;
}

int
sotp_store_audit_mac_at(
    struct sotp_store *st, int chain, int64_t seq, uint8_t *mac)
{
	const struct sotp_param p[] = {SOTP_PINT(seq), SOTP_PINT(chain)};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_mac_at",
	         seq > 0 && mac != NULL && CHAIN_OK(chain))) != SOTP_OK)
		return rc;
	return sotp_db_row(
	    st, SOTP_Q_AUDIT_MAC_AT, p, SOTP_NELEM(p), mac_row, mac);
}

int
sotp_store_audit_prune(struct sotp_store *st, int chain, int64_t through_seq,
    int64_t before, int64_t *removed)
{
	const struct sotp_param p[] = {
	    SOTP_PINT(through_seq), SOTP_PINT(before), SOTP_PINT(chain)};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_prune",
	         through_seq >= 0 && removed != NULL && CHAIN_OK(chain))) !=
	    SOTP_OK)
		return rc;
	return sotp_db_run(st, SOTP_Q_AUDIT_PRUNE, p, SOTP_NELEM(p), removed);
}

static int
stray_row(struct sotp_store *st, void *arg)
{
	int64_t *v = arg;

	if (sotp_db_int(st, 0, INT64_MIN, INT64_MAX, &v[0]) != 0 ||
	    sotp_db_int(st, 1, INT64_MIN, INT64_MAX, &v[1]) != 0)
		return sotp_db_corrupt(st, "id/seq");
	return SOTP_OK;
}

int
sotp_store_audit_stray(struct sotp_store *st, int64_t *id, int64_t *seq)
{
	int64_t v[2] = {0, 0};
	int rc;

	if ((rc = sotp_db_enter(
	         st, "audit_stray", id != NULL && seq != NULL)) != SOTP_OK)
		return rc;
	rc = sotp_db_row(st, SOTP_Q_AUDIT_STRAY, NULL, 0, stray_row, v);
	*id = v[0];
	*seq = v[1];
	return rc;
}

struct audit_list {
	sotp_audit_cb *cb;
	void *arg;
};

static int
audit_list_row(struct sotp_store *st, void *arg)
{
	const struct audit_list *l = arg;
	struct sotp_audit_row r;

	struct sotp_value v;
	int64_t n;
	int rc;

	if ((rc = audit_row(st, &r)) != SOTP_OK)
		return rc;
	/*
	 * seq and keyed as they are (NULL: 0, and -1), a value no writer
	 * makes read as -1: the rows are listed whatever was put in them
	 * (verify names such a row).
	 */
	if (sotp_db_int(st, 9, INT64_MIN, INT64_MAX, &r.seq) != 0)
		return sotp_db_corrupt(st, "seq");
	st->drv->value(st, 10, &v);
	r.keyed = -1;
	if (v.type != SOTP_V_NULL &&
	    sotp_db_int(st, 10, INT64_MIN, INT64_MAX, &n) == 0 &&
	    (n == 0 || n == 1))
		r.keyed = (int)n;
	return l->cb(l->arg, &r);
}

/* Two statements so that each can use its own index. */
int
sotp_store_audit_list(struct sotp_store *st, const char *contract,
    int64_t since, int64_t until, sotp_audit_cb *cb, void *arg)
{
	/* 0 means "no bound" on either side. */
	const struct sotp_param p[] = {
	    SOTP_PINT(since != 0 ? since : INT64_MIN),
	    SOTP_PINT(until != 0 ? until : INT64_MAX), SOTP_PTEXT(contract)};
	struct audit_list l = {cb, arg};
	int rc;

	if ((rc = sotp_db_enter(st, "audit_list", cb != NULL)) != SOTP_OK)
		return rc;
	return sotp_db_rows(st,
	    contract != NULL ? SOTP_Q_AUDIT_LIST_CONTRACT : SOTP_Q_AUDIT_LIST,
	    p, contract != NULL ? 3 : 2, audit_list_row, &l);
}

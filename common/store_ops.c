/*
 * store_ops.c - every store operation, written once above the dialect
 * drivers (the sotp_store_* functions of sotp_int.h).
 *
 * An operation checks its arguments and names itself (sotp_db_enter),
 * then runs statements by id with typed parameters and decodes their
 * rows; the SQL for each id is in each driver's dialect table. Adding an
 * operation takes one id, one SQL row per dialect and one function:
 *
 *	store_int.h:     SOTP_Q_TOKEN_SET_DISABLED,
 *	store_sqlite.c:  [SOTP_Q_TOKEN_SET_DISABLED] =
 *	                     "UPDATE tokens SET disabled = ?2 WHERE serial =
 *?1", store_pg.c:      [SOTP_Q_TOKEN_SET_DISABLED] = "UPDATE tokens SET
 *disabled = $2 WHERE serial = $1", here: int
 *	sotp_store_token_set_disabled(struct sotp_store *st,
 *	    const char *serial, int disabled)
 *	{
 *		const struct sotp_param p[] = {
 *		    SOTP_PTEXT(serial), SOTP_PINT(disabled != 0)};
 *		int rc;
 *
 *		if ((rc = sotp_db_enter(st, "token_set_disabled",
 *		         valid_id(serial))) != SOTP_OK)
 *			return rc;
 *		return update_one(st, SOTP_Q_TOKEN_SET_DISABLED, p,
 *		    SOTP_NELEM(p));
 *	}
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

/* Runs a change that must hit exactly one row; else SOTP_ERR_NOT_FOUND. */
static int
update_one(struct sotp_store *st, enum sotp_stmt id, const struct sotp_param *p,
    size_t n)
{
	int64_t changed = 0;
	int rc;

	if ((rc = sotp_db_run(st, id, p, n, &changed)) != SOTP_OK)
		return rc;
	return changed == 1 ? SOTP_OK : SOTP_ERR_NOT_FOUND;
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

/* The columns of SOTP_SQL_TOKEN_SELECT (store_int.h), in order. */
static int
row_token(struct sotp_store *st, void *arg)
{
	struct sotp_token_rec *t = arg;
	int64_t v;

	memset(t, 0, sizeof(*t));
	if (sotp_db_text(st, 0, t->serial, sizeof(t->serial)) != 0)
		return sotp_db_corrupt(st, "serial");
	if (sotp_db_text(st, 1, t->kind, sizeof(t->kind)) != 0)
		return sotp_db_corrupt(st, "kind");
	if (sotp_db_blob(st, 2, t->secret, sizeof(t->secret), &t->secret_len) !=
	        0 ||
	    t->secret_len == 0)
		return sotp_db_corrupt(st, "secret");
	if (sotp_db_int(st, 3, SOTP_ALG_SHA1, SOTP_ALG_SHA512, &v) != 0)
		return sotp_db_corrupt(st, "algorithm");
	t->alg = (enum sotp_alg)v;
	if (sotp_db_int(st, 4, 0, UINT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "digits");
	t->digits = (unsigned int)v;
	if (sotp_db_int(st, 5, 0, UINT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "period");
	t->period = (unsigned int)v;
	if (sotp_db_int(st, 6, -1, INT64_MAX, &t->last_step) != 0)
		return sotp_db_corrupt(st, "last_step");
	if (sotp_db_int(st, 7, INT_MIN, INT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "drift");
	t->drift = (int)v;
	if (sotp_db_int(st, 8, 0, 1, &v) != 0)
		return sotp_db_corrupt(st, "disabled");
	t->disabled = (int)v;
	if (sotp_db_int(st, 9, INT64_MIN, INT64_MAX, &t->created) != 0)
		return sotp_db_corrupt(st, "created");
	if (sotp_db_text(st, 10, t->contract, sizeof(t->contract)) != 0)
		return sotp_db_corrupt(st, "contracts.id");
	return SOTP_OK;
}

/* The columns of SOTP_SQL_CONTRACT_SELECT (store_int.h), in order. */
static int
row_contract(struct sotp_store *st, void *arg)
{
	struct sotp_contract_rec *c = arg;
	int64_t v;

	memset(c, 0, sizeof(*c));
	if (sotp_db_text(st, 0, c->id, sizeof(c->id)) != 0)
		return sotp_db_corrupt(st, "id");
	if (sotp_db_text(st, 1, c->pwhash, sizeof(c->pwhash)) != 0)
		return sotp_db_corrupt(st, "pwhash");
	if (sotp_db_int(st, 2, SOTP_LOGIN_NONE, SOTP_LOGIN_CARD, &v) != 0)
		return sotp_db_corrupt(st, "login");
	c->login = (enum sotp_login)v;
	if (sotp_db_text(st, 3, c->serial, sizeof(c->serial)) != 0)
		return sotp_db_corrupt(st, "serial");
	if (sotp_db_blob(st, 4, c->card, sizeof(c->card), &c->card_len) != 0)
		return sotp_db_corrupt(st, "card");
	if (sotp_db_int(st, 5, 0, UINT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "failures");
	c->failures = (unsigned int)v;
	if (sotp_db_int(st, 6, -1, INT64_MAX, &c->locked_until) != 0)
		return sotp_db_corrupt(st, "locked_until");
	if (sotp_db_int(st, 7, 0, 1, &v) != 0)
		return sotp_db_corrupt(st, "closed");
	c->closed = (int)v;
	if (sotp_db_int(st, 8, INT64_MIN, INT64_MAX, &c->created) != 0)
		return sotp_db_corrupt(st, "created");
	return SOTP_OK;
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
	    SOTP_PINT(t->disabled != 0), SOTP_PINT(t->created)};

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
	return update_one(st, SOTP_Q_TOKEN_SET_DRIFT, p, SOTP_NELEM(p));
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

int
sotp_store_contract_lock(
    struct sotp_store *st, const char *id, struct sotp_contract_rec *out)
{
	return contract_read(st, "contract_lock", SOTP_Q_CONTRACT_LOCK,
	    st != NULL && st->depth > 0, id, out);
}

static int
contract_insert(struct sotp_store *st, const struct sotp_contract_rec *c)
{
	const struct sotp_param p[] = {SOTP_PTEXT(c->id), SOTP_PTEXT(c->pwhash),
	    SOTP_PINT(c->login), SOTP_PBLOB(c->card, c->card_len),
	    SOTP_PINT(c->failures), SOTP_PINT(c->locked_until),
	    SOTP_PINT(c->closed != 0), SOTP_PINT(c->created)};

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
	return update_one(st, SOTP_Q_CONTRACT_SET_PASSWORD, p, SOTP_NELEM(p));
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

int
sotp_store_contract_set_login(
    struct sotp_store *st, const char *id, enum sotp_login login)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PINT(login)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_set_login",
	         valid_id(id) && valid_login(login))) != SOTP_OK)
		return rc;
	return update_one(st, SOTP_Q_CONTRACT_SET_LOGIN, p, SOTP_NELEM(p));
}

/* len 0 removes the card. */
int
sotp_store_contract_set_card(
    struct sotp_store *st, const char *id, const uint8_t *card, size_t len)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id), SOTP_PBLOB(card, len)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_set_card",
	         valid_id(id) && (card != NULL || len == 0) &&
	             len <= SOTP_CARD_MAX)) != SOTP_OK)
		return rc;
	return update_one(st, SOTP_Q_CONTRACT_SET_CARD, p, SOTP_NELEM(p));
}

int
sotp_store_contract_unlock(struct sotp_store *st, const char *id)
{
	const struct sotp_param p[] = {SOTP_PTEXT(id)};
	int rc;

	if ((rc = sotp_db_enter(st, "contract_unlock", valid_id(id))) !=
	    SOTP_OK)
		return rc;
	return update_one(st, SOTP_Q_CONTRACT_UNLOCK, p, SOTP_NELEM(p));
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
	return update_one(st, SOTP_Q_CONTRACT_UNLOCK_EXPIRED, p, SOTP_NELEM(p));
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
 * The replay guard: the WHERE clause (last_step < step), not a prior
 * read, decides, so two callers can never both move last_step to one
 * step, on one server or many.
 */
int
sotp_store_accept_step(struct sotp_store *st, const char *serial,
    const char *contract, int64_t step, int drift, int *won)
{
	const struct sotp_param p[] = {
	    SOTP_PTEXT(serial), SOTP_PINT(step), SOTP_PINT(drift)};
	const struct sotp_param q[] = {SOTP_PTEXT(contract)};
	int64_t changed = 0;
	int rc;

	if (won != NULL)
		*won = 0;
	if (contract != NULL && contract[0] == '\0')
		contract = NULL;
	if ((rc = sotp_db_enter(st, "accept_step",
	         valid_id(serial) && (contract == NULL || valid_id(contract)) &&
	             step >= 0 && won != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(
	    st, SOTP_Q_TOKEN_ACCEPT_STEP, p, SOTP_NELEM(p), &changed);
	if (rc == SOTP_OK && changed != 1) {
		/* Lost, or no such token: only the rare path pays to tell. */
		rc = key_exists(st, SOTP_Q_TOKEN_GET, serial);
		sotp_db_rollback(st);
		return rc;
	}
	if (rc == SOTP_OK && contract != NULL) {
		rc = update_one(
		    st, SOTP_Q_CONTRACT_RESET_FAILURES, q, SOTP_NELEM(q));
		if (rc == SOTP_ERR_NOT_FOUND)
			rc = SOTP_OK;
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
	return update_one(st, SOTP_Q_CONTRACT_RESET_FAILURES, p, SOTP_NELEM(p));
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
	rc = sotp_db_run(
	    st, SOTP_Q_TOKEN_ACCEPT_STEP, p, SOTP_NELEM(p), &changed);
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
sotp_store_contract_list(
    struct sotp_store *st, sotp_contract_rec_cb *cb, void *arg)
{
	struct contract_list *l;
	int rc;

	if ((rc = sotp_db_enter(st, "contract_list", cb != NULL)) != SOTP_OK)
		return rc;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return SOTP_ERR_NOMEM;
	l->cb = cb;
	l->arg = arg;
	rc = sotp_db_rows(
	    st, SOTP_Q_CONTRACT_LIST, NULL, 0, contract_list_row, l);
	sotp_free_secret(l, sizeof(*l));
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
 * The purge is by `expires < now`, so a row lives until its state has
 * expired; the engine refuses an expired state before it gets here, and
 * an id seen again after its purge is therefore never reached. Of two
 * servers inserting one id, only one sees it as fresh (the insert ignores
 * a conflict after waiting for the other to commit).
 */
int
sotp_store_state_use(struct sotp_store *st, const uint8_t *id, int64_t expires,
    int64_t now, int *fresh)
{
	const struct sotp_param p[] = {SOTP_PINT(now)};
	const struct sotp_param q[] = {
	    SOTP_PBLOB(id, SOTP_STORE_STATE_ID_LEN), SOTP_PINT(expires)};
	int64_t inserted = 0;
	int rc;

	if (fresh != NULL)
		*fresh = 0;
	if ((rc = sotp_db_enter(
	         st, "state_use", id != NULL && fresh != NULL)) != SOTP_OK)
		return rc;
	if ((rc = sotp_db_begin(st)) != SOTP_OK)
		return rc;
	rc = sotp_db_run(st, SOTP_Q_STATE_PURGE, p, SOTP_NELEM(p), NULL);
	if (rc == SOTP_OK)
		rc = sotp_db_run(
		    st, SOTP_Q_STATE_INSERT, q, SOTP_NELEM(q), &inserted);
	if ((rc = sotp_db_end(st, rc)) == SOTP_OK)
		*fresh = inserted == 1;
	return rc;
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

static int
audit_add(struct sotp_store *st, const struct sotp_audit_rec *r)
{
	const struct sotp_param p[] = {SOTP_PINT(r->ts), SOTP_PTEXT(r->action),
	    SOTP_PTEXT(r->contract), SOTP_PTEXT(r->serial),
	    SOTP_PTEXT(r->context), SOTP_PTEXT(r->verdict),
	    SOTP_PINT(r->reason), SOTP_PTEXT(r->detail)};

	return sotp_db_run(st, SOTP_Q_AUDIT_ADD, p, SOTP_NELEM(p), NULL);
}

int
sotp_store_audit_add(struct sotp_store *st, const struct sotp_audit_rec *r)
{
	int rc;

	if ((rc = sotp_db_enter(st, "audit_add",
	         r != NULL && r->action != NULL && r->verdict != NULL)) !=
	    SOTP_OK)
		return rc;
	return audit_add(st, r);
}

struct audit_list {
	sotp_audit_cb *cb;
	void *arg;
};

/* The columns of SOTP_SQL_AUDIT_SELECT (store_int.h), in order. */
static int
audit_list_row(struct sotp_store *st, void *arg)
{
	const struct audit_list *l = arg;
	struct sotp_audit_row r;
	int64_t v;

	memset(&r, 0, sizeof(r));
	if (sotp_db_int(st, 0, INT64_MIN, INT64_MAX, &r.id) != 0 ||
	    sotp_db_int(st, 1, INT64_MIN, INT64_MAX, &r.ts) != 0)
		return sotp_db_corrupt(st, "id/ts");
	r.action = sotp_db_str(st, 2);
	r.contract = sotp_db_str(st, 3);
	r.serial = sotp_db_str(st, 4);
	r.context = sotp_db_str(st, 5);
	r.verdict = sotp_db_str(st, 6);
	if (sotp_db_int(st, 7, INT_MIN, INT_MAX, &v) != 0)
		return sotp_db_corrupt(st, "reason");
	r.reason = (int)v;
	r.detail = sotp_db_str(st, 8);
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

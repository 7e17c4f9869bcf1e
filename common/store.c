/*
 * store.c - the store front: URL dispatch and argument checks.
 *
 * The engine talks to one struct sotp_store whatever the database is. This
 * file picks the back end from the URL scheme and checks arguments once,
 * so that every back end refuses the same bad input the same way; the back
 * ends (store_sqlite.c, store_pg.c) hold all the SQL.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sotp_int.h"
#include "store_int.h"

/* The back ends this build knows, by URL scheme. */
static const struct sotp_store_ops *const backends[] = {
    &sotp_store_sqlite_ops,
    &sotp_store_pg_ops,
    &sotp_store_postgres_ops,
};

void
sotp_store_seterr(struct sotp_store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
}

/* Appends n bytes of s to out[outsz] at *len; 1 when it had to cut. */
static int
put(char *out, size_t outsz, size_t *len, const char *s, size_t n)
{
	while (n > 0 && *len + 1 < outsz) {
		out[(*len)++] = *s++;
		n--;
	}
	out[*len] = '\0';
	return n > 0;
}

/* Where a password value starts in url at i ("password=" there), or 0. */
static size_t
password_at(const char *url, size_t i)
{
	size_t j;

	/* ':' too: "postgresql:password=..." is a key=value string. */
	if (strncmp(url + i, "password", 8) != 0 ||
	    (i > 0 && strchr(" \t?&:", url[i - 1]) == NULL))
		return 0;
	j = i + 8;
	j += strspn(url + j, " \t");
	if (url[j] != '=')
		return 0;
	j++;
	return j + strspn(url + j, " \t");
}

/*
 * One pass of masking (sotp_store_url_redact makes it a fixed point).
 * Returns 1 when out[outsz] was too small.
 */
static int
mask(const char *url, char *out, size_t outsz)
{
	const char *auth, *at, *colon;
	size_t i = 0, j, len = 0, authlen;
	int cut = 0;

	out[0] = '\0';
	/* scheme://user:PASSWORD@host/... */
	if ((auth = strstr(url, "://")) != NULL) {
		auth += 3;
		authlen = strcspn(auth, "/?#");
		at = memchr(auth, '@', authlen);
		if (at != NULL &&
		    (colon = memchr(auth, ':', (size_t)(at - auth))) != NULL) {
			cut |= put(
			    out, outsz, &len, url, (size_t)(colon - url) + 1);
			cut |= put(out, outsz, &len, "***", 3);
			i = (size_t)(at - url);
		}
	}
	/* password=VALUE, in a URI query or a key=value string. */
	while (url[i] != '\0') {
		if ((j = password_at(url, i)) == 0) {
			cut |= put(out, outsz, &len, url + i, 1);
			i++;
			continue;
		}
		cut |= put(out, outsz, &len, url + i, j - i);
		cut |= put(out, outsz, &len, "***", 3);
		if (url[j] == '\'') {
			for (j++; url[j] != '\0' && url[j] != '\''; j++)
				if (url[j] == '\\' && url[j + 1] != '\0')
					j++;
			if (url[j] == '\'')
				j++;
		}
		/*
		 * Up to the next separator, quoted part or not: what is glued
		 * to the value goes with it, so that masking a masked string
		 * changes nothing (a policy dump reads back the same).
		 */
		j += strcspn(url + j, " \t&#");
		i = j;
	}
	return cut;
}

void
sotp_store_url_redact(const char *url, char *out, size_t outsz)
{
	char *again = NULL;
	size_t n = 0, scheme;
	int odd;

	if (outsz == 0)
		return;
	out[0] = '\0';
	if (url == NULL)
		return;
	/*
	 * Masking what is masked must change nothing, or a policy dump would
	 * not read back as the same policy. A URL too odd for that (a masked
	 * value held the '/' that ended the authority, say), or too long for
	 * out, is shown as its scheme alone.
	 */
	odd = mask(url, out, outsz);
	if (!odd &&
	    ((again = malloc(outsz)) == NULL || mask(out, again, outsz) ||
	        strcmp(again, out) != 0))
		odd = 1;
	free(again);
	if (odd) {
		scheme = strcspn(url, ":");
		put(out, outsz, &n, url, scheme);
		put(out, outsz, &n, url[scheme] == ':' ? ":***" : "***",
		    url[scheme] == ':' ? 4 : 3);
	}
}

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

/*
 * Entry check shared by every operation: a usable handle, and the error
 * text of an earlier call cleared so that sotp_store_errmsg describes
 * this call only.
 */
static int
enter(struct sotp_store *st)
{
	if (st == NULL || st->be == NULL)
		return 0;
	st->err[0] = '\0';
	return 1;
}

static int
badarg(struct sotp_store *st, const char *op)
{
	sotp_store_seterr(st, "%s: invalid argument", op);
	return SOTP_ERR_INVALID_ARG;
}

int
sotp_store_open(const char *url, int create, struct sotp_store **out, char *err,
    size_t errsz)
{
	struct sotp_store *st = NULL;
	const struct sotp_store_ops *ops = NULL;
	const char *colon;
	size_t i, n;
	int rc = SOTP_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (err != NULL && errsz > 0)
		err[0] = '\0';
	if (url == NULL || out == NULL) {
		if (err != NULL && errsz > 0)
			sotp_strlcpy(err, "store: invalid argument", errsz);
		return SOTP_ERR_INVALID_ARG;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if ((colon = strchr(url, ':')) != NULL) {
		n = (size_t)(colon - url);
		for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
			if (strlen(backends[i]->scheme) == n &&
			    strncmp(backends[i]->scheme, url, n) == 0)
				ops = backends[i];
		}
	}
	if (ops == NULL) {
		/* The URL itself is not secret, but a typo'd one could hold a
		 * password (postgresql://user:pw@...): name the scheme only. */
		sotp_store_seterr(st,
		    "unsupported store URL scheme \"%.*s\" (expected sqlite:PATH or postgresql://...)",
		    colon != NULL ? (int)(colon - url) : 0, url);
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	st->ops = ops;
	if ((rc = ops->open(st, colon + 1, create != 0)) != SOTP_OK)
		goto out;
	*out = st;
	st = NULL;
	rc = SOTP_OK;
out:
	if (st != NULL) {
		if (err != NULL && errsz > 0)
			sotp_strlcpy(err, st->err, errsz);
		sotp_store_close(st);
	}
	return rc;
}

void
sotp_store_close(struct sotp_store *st)
{
	if (st == NULL)
		return;
	if (st->ops != NULL)
		st->ops->close(st);
	free(st);
}

const char *
sotp_store_errmsg(const struct sotp_store *st)
{
	return st != NULL ? st->err : "";
}

int
sotp_store_token_get(
    struct sotp_store *st, const char *serial, struct sotp_token_rec *out)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(serial) || out == NULL)
		return badarg(st, "token_get");
	return st->ops->token_get(st, serial, out);
}

int
sotp_store_token_insert(struct sotp_store *st, const struct sotp_token_rec *t)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (t == NULL || !valid_id(t->serial) ||
	    strnlen(t->kind, sizeof(t->kind)) == sizeof(t->kind) ||
	    t->secret_len == 0 || t->secret_len > sizeof(t->secret))
		return badarg(st, "token_insert");
	return st->ops->token_insert(st, t);
}

int
sotp_store_token_list(struct sotp_store *st, int unassigned_only,
    sotp_token_rec_cb *cb, void *arg)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (cb == NULL)
		return badarg(st, "token_list");
	return st->ops->token_list(st, unassigned_only != 0, cb, arg);
}

int
sotp_store_token_set_drift(struct sotp_store *st, const char *serial, int drift)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(serial))
		return badarg(st, "token_set_drift");
	return st->ops->token_set_drift(st, serial, drift);
}

int
sotp_store_contract_get(
    struct sotp_store *st, const char *id, struct sotp_contract_rec *out)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(id) || out == NULL)
		return badarg(st, "contract_get");
	return st->ops->contract_get(st, id, out);
}

/*
 * A new contract never arrives bound: a binding is made only by
 * sotp_store_bind, which checks the token is free and the code fresh.
 */
int
sotp_store_contract_insert(
    struct sotp_store *st, const struct sotp_contract_rec *c)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (c == NULL || !valid_id(c->id) || c->serial[0] != '\0' ||
	    strnlen(c->pwhash, sizeof(c->pwhash)) == sizeof(c->pwhash) ||
	    !valid_login(c->login) || c->card_len > sizeof(c->card))
		return badarg(st, "contract_insert");
	return st->ops->contract_insert(st, c);
}

int
sotp_store_contract_set_password(
    struct sotp_store *st, const char *id, const char *pwhash)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(id) || pwhash == NULL ||
	    strnlen(pwhash, SOTP_HASH_MAX) == SOTP_HASH_MAX)
		return badarg(st, "contract_set_password");
	return st->ops->contract_set_password(st, id, pwhash);
}

int
sotp_store_contract_set_login(
    struct sotp_store *st, const char *id, enum sotp_login login)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(id) || !valid_login(login))
		return badarg(st, "contract_set_login");
	return st->ops->contract_set_login(st, id, login);
}

/* len 0 removes the card. */
int
sotp_store_contract_set_card(
    struct sotp_store *st, const char *id, const uint8_t *card, size_t len)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(id) || (card == NULL && len > 0) || len > SOTP_CARD_MAX)
		return badarg(st, "contract_set_card");
	return st->ops->contract_set_card(st, id, card, len);
}

int
sotp_store_contract_unlock(struct sotp_store *st, const char *id)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(id))
		return badarg(st, "contract_unlock");
	return st->ops->contract_unlock(st, id);
}

int
sotp_store_contract_unlock_expired(
    struct sotp_store *st, const char *id, int64_t seen)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(id) || seen <= 0)
		return badarg(st, "contract_unlock_expired");
	return st->ops->contract_unlock_expired(st, id, seen);
}

int
sotp_store_contract_close(struct sotp_store *st, const char *id, int *closed)
{
	if (closed != NULL)
		*closed = 0;
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(id) || closed == NULL)
		return badarg(st, "contract_close");
	return st->ops->contract_close(st, id, closed);
}

/* contract may be NULL or "": then no failure count is reset. */
int
sotp_store_accept_step(struct sotp_store *st, const char *serial,
    const char *contract, int64_t step, int drift, int *won)
{
	if (won != NULL)
		*won = 0;
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (contract != NULL && contract[0] == '\0')
		contract = NULL;
	if (!valid_id(serial) || (contract != NULL && !valid_id(contract)) ||
	    step < 0 || won == NULL)
		return badarg(st, "accept_step");
	return st->ops->accept_step(st, serial, contract, step, drift, won);
}

int
sotp_store_fail(struct sotp_store *st, const char *contract,
    unsigned int threshold, int64_t lock_value, unsigned int *failures,
    int64_t *locked_until)
{
	if (failures != NULL)
		*failures = 0;
	if (locked_until != NULL)
		*locked_until = 0;
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(contract) || failures == NULL || locked_until == NULL)
		return badarg(st, "fail");
	return st->ops->fail(
	    st, contract, threshold, lock_value, failures, locked_until);
}

int
sotp_store_reset_failures(struct sotp_store *st, const char *contract)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(contract))
		return badarg(st, "reset_failures");
	return st->ops->reset_failures(st, contract);
}

int
sotp_store_bind(struct sotp_store *st, const char *contract, const char *serial,
    enum sotp_login login, int64_t step, int drift,
    enum sotp_bind_result *result)
{
	/* Fail closed: a caller that ignores rc still sees a refusal. */
	if (result != NULL)
		*result = SOTP_BIND_NO_CONTRACT;
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(contract) || !valid_id(serial) || !valid_login(login) ||
	    step < 0 || result == NULL)
		return badarg(st, "bind");
	return st->ops->bind(st, contract, serial, login, step, drift, result);
}

int
sotp_store_unbind(
    struct sotp_store *st, const char *contract, int *unbound, char *serial)
{
	if (unbound != NULL)
		*unbound = 0;
	if (serial != NULL)
		serial[0] = '\0';
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (!valid_id(contract) || unbound == NULL)
		return badarg(st, "unbind");
	return st->ops->unbind(st, contract, unbound, serial);
}

int
sotp_store_state_use(struct sotp_store *st, const uint8_t *id, int64_t expires,
    int64_t now, int *fresh)
{
	if (fresh != NULL)
		*fresh = 0;
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (id == NULL || fresh == NULL)
		return badarg(st, "state_use");
	return st->ops->state_use(st, id, expires, now, fresh);
}

int
sotp_store_audit_add(struct sotp_store *st, const struct sotp_audit_rec *r)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (r == NULL || r->action == NULL || r->verdict == NULL)
		return badarg(st, "audit_add");
	return st->ops->audit_add(st, r);
}

int
sotp_store_audit_list(struct sotp_store *st, const char *contract,
    int64_t since, int64_t until, sotp_audit_cb *cb, void *arg)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	if (cb == NULL)
		return badarg(st, "audit_list");
	return st->ops->audit_list(st, contract, since, until, cb, arg);
}

int
sotp_store_begin(struct sotp_store *st)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	return st->ops->begin(st);
}

int
sotp_store_commit(struct sotp_store *st)
{
	if (!enter(st))
		return SOTP_ERR_INVALID_ARG;
	return st->ops->commit(st);
}

/* Keeps the error text of the failure that led here (no enter()). */
void
sotp_store_rollback(struct sotp_store *st)
{
	if (st != NULL && st->be != NULL)
		st->ops->rollback(st);
}

/*
 * test_store.c - the store interface (sotp_int.h), run against SQLite or,
 * when SOTP_TEST_STORE_URL names one, a PostgreSQL database
 * (tests/store/t_pg.sh starts a private server and sets it).
 *
 * Each test gets a fresh store: with SQLite a new file in its own mkdtemp
 * directory, with PostgreSQL an emptied schema (dropped and recreated).
 * Tests about SQLite files are registered only for SQLite, and their
 * PostgreSQL counterparts only for PostgreSQL. Secrets here are arbitrary
 * bytes: the store only ever sees sealed blobs. One test reads the
 * drivers' dialect tables (store_int.h); every other goes through the
 * interface.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "sotp_int.h"
/* The dialect tables, for test_store_dialects_complete. */
#include "store_int.h"

struct fixture {
	char dir[64];
	char path[128];
	char url[1024];
	struct sotp_store *st;
};

/* The PostgreSQL database under test, or NULL for SQLite. */
static const char *
pg_url(void)
{
	const char *u = getenv("SOTP_TEST_STORE_URL");

	return u != NULL && u[0] != '\0' ? u : NULL;
}

/* Runs sql on the PostgreSQL test database behind the store's back. */
static void
pg_exec(const char *sql)
{
	PGconn *conn;
	PGresult *res;

	conn = PQconnectdb(pg_url());
	if (PQstatus(conn) != CONNECTION_OK)
		fail_msg("pg: %s", PQerrorMessage(conn));
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("pg: %s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(conn);
}

/* Runs sql in another database of the test server (dbname). */
static void
pg_exec_in(const char *dbname, const char *sql)
{
	const char *const keys[] = {"dbname", "dbname", NULL};
	const char *vals[] = {pg_url(), dbname, NULL};
	PGconn *conn;
	PGresult *res;

	conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK)
		fail_msg("pg: %s", PQerrorMessage(conn));
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("pg: %s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(conn);
}

/* An empty schema: every test starts from nothing, as with a new file. */
static void
pg_reset(void)
{
	/* Bounded: a transaction a failed test left open fails it. */
	pg_exec("SET client_min_messages = warning; SET lock_timeout = '30s';"
	        " DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
}

static void
fx_paths(struct fixture *fx)
{
	snprintf(fx->path, sizeof(fx->path), "%s/store.db", fx->dir);
	if (pg_url() != NULL)
		snprintf(fx->url, sizeof(fx->url), "%s", pg_url());
	else
		snprintf(fx->url, sizeof(fx->url), "sqlite:%s", fx->path);
}

static int
setup(void **state)
{
	struct fixture *fx;
	char err[512];

	fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_store.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	fx_paths(fx);
	if (pg_url() != NULL)
		pg_reset();
	assert_int_equal(
	    sotp_store_open(fx->url, 1, &fx->st, err, sizeof(err)), SOTP_OK);
	/* What init does first: the key version the values below name. */
	assert_int_equal(sotp_store_key_add(fx->st, 0, 0), SOTP_OK);
	*state = fx;
	return 0;
}

static void
rm_db(const char *path)
{
	char p[PATH_MAX];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-journal", path);
	unlink(p);
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	sotp_store_close(fx->st);
	rm_db(fx->path);
	rmdir(fx->dir);
	/* Nothing left behind: the next user of the database starts empty. */
	if (pg_url() != NULL)
		pg_reset();
	free(fx);
	return 0;
}

/* A token row with a recognisable fake sealed secret. */
static void
mk_token(struct sotp_token_rec *t, const char *serial)
{
	size_t i;

	memset(t, 0, sizeof(*t));
	snprintf(t->serial, sizeof(t->serial), "%s", serial);
	snprintf(t->kind, sizeof(t->kind), "soft");
	t->alg = SOTP_ALG_SHA256;
	t->digits = 8;
	t->period = 30;
	t->last_step = -1;
	t->secret_len = 61;
	for (i = 0; i < t->secret_len; i++)
		t->secret[i] = (uint8_t)(i * 7 + 1);
	t->secret[3] = 0; /* a NUL inside: blobs are not strings */
	t->created = 1700000000;
}

static void
mk_contract(struct sotp_contract_rec *c, const char *id)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->pwhash, sizeof(c->pwhash), "$y$j9T$salt$hash-of-%s", id);
	c->login = SOTP_LOGIN_OTP;
	c->created = 1700000001;
}

static void
add_token(struct sotp_store *st, const char *serial)
{
	struct sotp_token_rec t;

	mk_token(&t, serial);
	assert_int_equal(sotp_store_token_insert(st, &t), SOTP_OK);
}

static void
add_contract(struct sotp_store *st, const char *id)
{
	struct sotp_contract_rec c;

	mk_contract(&c, id);
	assert_int_equal(sotp_store_contract_insert(st, &c), SOTP_OK);
}

/* The guarded write of a binding: won is 1 when it bound, 0 when not. */
static int
bind_won(struct sotp_store *st, const char *id, const char *serial,
    enum sotp_login login, int64_t step, int drift)
{
	int won = -1;

	assert_int_equal(
	    sotp_store_bind(st, id, serial, login, step, drift, &won), SOTP_OK);
	assert_true(won == 0 || won == 1);
	return won;
}

static void
bind_ok(struct sotp_store *st, const char *id, const char *serial, int64_t step)
{
	assert_int_equal(bind_won(st, id, serial, SOTP_LOGIN_OTP, step, 0), 1);
}

/*
 * The compare-and-set on an enabled token, as most tests want it: the
 * flag's answer is test_store_use_step_disabled's to check.
 */
static int
accept_step(struct sotp_store *st, const char *serial, const char *contract,
    int64_t step, int drift, int *won)
{
	int disabled = 0;

	return sotp_store_use_step(
	    st, serial, contract, step, drift, won, &disabled);
}

static void
test_store_token_insert_get(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t, got;

	mk_token(&t, "TK0001");
	t.drift = -2;
	t.last_step = 55;
	assert_int_equal(sotp_store_token_insert(fx->st, &t), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK0001", &got), SOTP_OK);
	assert_string_equal(got.serial, "TK0001");
	assert_string_equal(got.kind, "soft");
	assert_int_equal(got.alg, SOTP_ALG_SHA256);
	assert_int_equal(got.digits, 8);
	assert_int_equal(got.period, 30);
	assert_int_equal(got.last_step, 55);
	assert_int_equal(got.drift, -2);
	assert_int_equal(got.disabled, 0);
	assert_int_equal(got.secret_len, t.secret_len);
	assert_memory_equal(got.secret, t.secret, t.secret_len);
	assert_string_equal(got.contract, "");
	assert_int_equal(got.created, 1700000000);
}

static void
test_store_token_exists(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;

	mk_token(&t, "TK0001");
	assert_int_equal(sotp_store_token_insert(fx->st, &t), SOTP_OK);
	assert_int_equal(sotp_store_token_insert(fx->st, &t), SOTP_ERR_EXISTS);
	assert_non_null(strstr(sotp_store_errmsg(fx->st), "token_insert"));
}

static void
test_store_token_not_found(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec got;

	assert_int_equal(
	    sotp_store_token_get(fx->st, "NOPE", &got), SOTP_ERR_NOT_FOUND);
	assert_int_equal(
	    sotp_store_token_set_drift(fx->st, "NOPE", 1), SOTP_ERR_NOT_FOUND);
}

static void
test_store_token_bad_args(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t, got;

	mk_token(&t, "");
	assert_int_equal(
	    sotp_store_token_insert(fx->st, &t), SOTP_ERR_INVALID_ARG);
	mk_token(&t, "TK1");
	t.secret_len = 0;
	assert_int_equal(
	    sotp_store_token_insert(fx->st, &t), SOTP_ERR_INVALID_ARG);
	t.secret_len = SOTP_SECRET_MAX + 1;
	assert_int_equal(
	    sotp_store_token_insert(fx->st, &t), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_store_token_get(fx->st, NULL, &got), SOTP_ERR_INVALID_ARG);
	assert_int_equal(
	    sotp_store_token_get(NULL, "TK1", &got), SOTP_ERR_INVALID_ARG);
}

static void
test_store_token_set_drift(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec got;

	add_token(fx->st, "TK1");
	assert_int_equal(sotp_store_token_set_drift(fx->st, "TK1", 3), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &got), SOTP_OK);
	assert_int_equal(got.drift, 3);
	assert_int_equal(got.last_step, -1);
}

struct list_acc {
	int n;
	char serials[8][SOTP_ID_MAX];
	int stop_after;
};

static int
list_cb(void *arg, const struct sotp_token_rec *t)
{
	struct list_acc *acc = arg;

	if (acc->n < 8)
		snprintf(acc->serials[acc->n], SOTP_ID_MAX, "%s", t->serial);
	acc->n++;
	return acc->stop_after != 0 && acc->n >= acc->stop_after;
}

static void
test_store_token_list_unassigned(void **state)
{
	struct fixture *fx = *state;
	struct list_acc acc;

	add_token(fx->st, "TK3");
	add_token(fx->st, "TK1");
	add_token(fx->st, "TK2");
	add_contract(fx->st, "C1");
	bind_ok(fx->st, "C1", "TK2", 10);

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_token_list(fx->st, 0, list_cb, &acc), SOTP_OK);
	assert_int_equal(acc.n, 3);
	assert_string_equal(acc.serials[0], "TK1");
	assert_string_equal(acc.serials[1], "TK2");
	assert_string_equal(acc.serials[2], "TK3");

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_token_list(fx->st, 1, list_cb, &acc), SOTP_OK);
	assert_int_equal(acc.n, 2);
	assert_string_equal(acc.serials[0], "TK1");
	assert_string_equal(acc.serials[1], "TK3");

	/* A non-zero callback return stops the walk. */
	memset(&acc, 0, sizeof(acc));
	acc.stop_after = 1;
	assert_int_equal(
	    sotp_store_token_list(fx->st, 0, list_cb, &acc), SOTP_OK);
	assert_int_equal(acc.n, 1);
}

static void
test_store_contract_insert_get(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c, got;

	mk_contract(&c, "C1");
	c.card_len = 40;
	memset(c.card, 0xa5, c.card_len);
	c.login = SOTP_LOGIN_CARD;
	assert_int_equal(sotp_store_contract_insert(fx->st, &c), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &got), SOTP_OK);
	assert_string_equal(got.id, "C1");
	assert_string_equal(got.pwhash, c.pwhash);
	assert_int_equal(got.login, SOTP_LOGIN_CARD);
	assert_string_equal(got.serial, "");
	assert_int_equal(got.card_len, 40);
	assert_memory_equal(got.card, c.card, 40);
	assert_int_equal(got.failures, 0);
	assert_int_equal(got.locked_until, 0);
	assert_int_equal(got.closed, 0);
	assert_int_equal(got.created, 1700000001);
}

static void
test_store_contract_exists_not_found(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c, got;
	int closed = 0;

	mk_contract(&c, "C1");
	assert_int_equal(sotp_store_contract_insert(fx->st, &c), SOTP_OK);
	assert_int_equal(
	    sotp_store_contract_insert(fx->st, &c), SOTP_ERR_EXISTS);
	assert_int_equal(
	    sotp_store_contract_get(fx->st, "C2", &got), SOTP_ERR_NOT_FOUND);
	assert_int_equal(sotp_store_contract_set_password(fx->st, "C2", "x"),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(
	    sotp_store_contract_set_login(fx->st, "C2", SOTP_LOGIN_NONE),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(sotp_store_contract_set_card(fx->st, "C2", NULL, 0, 0),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(
	    sotp_store_contract_unlock(fx->st, "C2"), SOTP_ERR_NOT_FOUND);
	assert_int_equal(sotp_store_contract_close(fx->st, "C2", &closed),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(
	    sotp_store_reset_failures(fx->st, "C2"), SOTP_ERR_NOT_FOUND);
}

static void
test_store_contract_insert_refuses_bound(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;

	/* Bindings are made by sotp_store_bind only. */
	add_token(fx->st, "TK1");
	mk_contract(&c, "C1");
	snprintf(c.serial, sizeof(c.serial), "TK1");
	assert_int_equal(
	    sotp_store_contract_insert(fx->st, &c), SOTP_ERR_INVALID_ARG);
}

static void
test_store_contract_setters(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec got;
	const uint8_t card[] = {1, 2, 0, 4, 5};

	add_contract(fx->st, "C1");
	assert_int_equal(
	    sotp_store_contract_set_password(fx->st, "C1", "$y$new"), SOTP_OK);
	assert_int_equal(
	    sotp_store_contract_set_login(fx->st, "C1", SOTP_LOGIN_NONE),
	    SOTP_OK);
	assert_int_equal(
	    sotp_store_contract_set_card(fx->st, "C1", card, sizeof(card), 0),
	    SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &got), SOTP_OK);
	assert_string_equal(got.pwhash, "$y$new");
	assert_int_equal(got.login, SOTP_LOGIN_NONE);
	assert_int_equal(got.card_len, sizeof(card));
	assert_memory_equal(got.card, card, sizeof(card));

	/* Length 0 removes the card. */
	assert_int_equal(
	    sotp_store_contract_set_card(fx->st, "C1", NULL, 0, 0), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &got), SOTP_OK);
	assert_int_equal(got.card_len, 0);
}

/* Asserts that nothing about C1/TK1 changed from the given snapshot. */
static void
assert_unchanged(struct sotp_store *st, const char *id, const char *serial,
    const struct sotp_contract_rec *c0, const struct sotp_token_rec *t0)
{
	struct sotp_contract_rec c;
	struct sotp_token_rec t;

	if (id != NULL) {
		assert_int_equal(sotp_store_contract_get(st, id, &c), SOTP_OK);
		assert_memory_equal(&c, c0, sizeof(c));
	}
	if (serial != NULL) {
		assert_int_equal(sotp_store_token_get(st, serial, &t), SOTP_OK);
		assert_memory_equal(&t, t0, sizeof(t));
	}
}

static void
test_store_bind_ok(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	unsigned int n;
	int64_t lock;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 5, -1, &n, &lock), SOTP_OK);
	assert_int_equal(
	    bind_won(fx->st, "C1", "TK1", SOTP_LOGIN_CARD, 100, 1), 1);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_string_equal(c.serial, "TK1");
	assert_int_equal(c.login, SOTP_LOGIN_CARD);
	assert_int_equal(c.failures, 0);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_string_equal(t.contract, "C1");
	assert_int_equal(t.last_step, 100);
	assert_int_equal(t.drift, 1);
}

/*
 * The write of a binding is guarded, whatever the caller checked before:
 * each guard that says no leaves both rows as they were (the reasons are
 * the engine's, tested in test_engine.c).
 */
/*
 * A migration binding (contract import): no code, the token's last_step
 * untouched, the guards of a binding; inside a caller's transaction a
 * refused one leaves the rest of the batch standing (PostgreSQL would
 * abort the whole transaction without its savepoint).
 */
static void
test_store_bind_migrated(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	int won = -1, closed = 0;

	add_token(fx->st, "TK1");
	add_token(fx->st, "TK2");
	add_contract(fx->st, "C1");
	add_contract(fx->st, "C2");
	add_contract(fx->st, "C3");
	assert_int_equal(sotp_store_begin(fx->st), SOTP_OK);
	assert_int_equal(sotp_store_bind_migrated(
	                     fx->st, "C1", "TK1", SOTP_LOGIN_CARD, &won),
	    SOTP_OK);
	assert_int_equal(won, 1);
	/* TK1 is C1's: the UNIQUE refuses it for C2, the batch goes on. */
	assert_int_equal(
	    sotp_store_bind_migrated(fx->st, "C2", "TK1", SOTP_LOGIN_OTP, &won),
	    SOTP_OK);
	assert_int_equal(won, 0);
	/* C1 holds a token already. */
	assert_int_equal(
	    sotp_store_bind_migrated(fx->st, "C1", "TK2", SOTP_LOGIN_OTP, &won),
	    SOTP_OK);
	assert_int_equal(won, 0);
	add_contract(fx->st, "C4");
	assert_int_equal(sotp_store_commit(fx->st), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_string_equal(c.serial, "TK1");
	assert_int_equal(c.login, SOTP_LOGIN_CARD);
	assert_int_equal(sotp_store_contract_get(fx->st, "C4", &c), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_string_equal(t.contract, "C1");
	assert_int_equal(t.last_step, -1);
	/* A closed contract takes no token. */
	assert_int_equal(
	    sotp_store_contract_close(fx->st, "C3", &closed), SOTP_OK);
	assert_int_equal(
	    sotp_store_bind_migrated(fx->st, "C3", "TK2", SOTP_LOGIN_OTP, &won),
	    SOTP_OK);
	assert_int_equal(won, 0);
}

struct listed {
	char ids[8][SOTP_ID_MAX];
	int n;
};

static int
contract_listed(void *arg, const struct sotp_contract_rec *c)
{
	struct listed *l = arg;

	if (l->n < 8)
		snprintf(l->ids[l->n], SOTP_ID_MAX, "%s", c->id);
	l->n++;
	return 0;
}

/* Every contract in ID order; a rehash only over the hash it saw. */
static void
test_store_contract_list_rehash(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct listed l;
	int won = -1;

	memset(&l, 0, sizeof(l));
	add_contract(fx->st, "C2");
	add_contract(fx->st, "C10");
	add_contract(fx->st, "C1");
	assert_int_equal(
	    sotp_store_contract_list(fx->st, 0, 0, -1, contract_listed, &l),
	    SOTP_OK);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.ids[0], "C1");
	assert_string_equal(l.ids[1], "C10");
	assert_string_equal(l.ids[2], "C2");
	assert_int_equal(sotp_store_contract_rehash(fx->st, "C1",
	                     "$y$j9T$salt$hash-of-C2", "$y$new", &won),
	    SOTP_OK);
	assert_int_equal(won, 0);
	assert_int_equal(sotp_store_contract_rehash(fx->st, "C1",
	                     "$y$j9T$salt$hash-of-C1", "$y$new", &won),
	    SOTP_OK);
	assert_int_equal(won, 1);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_string_equal(c.pwhash, "$y$new");
}

static void
test_store_bind_guards(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c1, c2, c3;
	struct sotp_token_rec t1, t2;
	int closed, won;

	add_token(fx->st, "TK1");
	add_token(fx->st, "TK2");
	add_contract(fx->st, "C1");
	add_contract(fx->st, "C2");
	add_contract(fx->st, "C3");
	bind_ok(fx->st, "C1", "TK1", 50);
	assert_int_equal(
	    sotp_store_contract_close(fx->st, "C3", &closed), SOTP_OK);
	assert_int_equal(closed, 1);
	assert_int_equal(sotp_store_token_set_drift(fx->st, "TK2", 0), SOTP_OK);
	assert_int_equal(
	    accept_step(fx->st, "TK2", NULL, 70, 0, &won), SOTP_OK);
	assert_int_equal(won, 1);

	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c1), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C2", &c2), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C3", &c3), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t1), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK2", &t2), SOTP_OK);

	/* No such contract: the token's step is not spent either. */
	assert_int_equal(
	    bind_won(fx->st, "NOPE", "TK2", SOTP_LOGIN_OTP, 100, 0), 0);
	assert_unchanged(fx->st, NULL, "TK2", NULL, &t2);
	/* A closed contract. */
	assert_int_equal(
	    bind_won(fx->st, "C3", "TK2", SOTP_LOGIN_OTP, 100, 0), 0);
	assert_unchanged(fx->st, "C3", "TK2", &c3, &t2);
	/* A contract that holds a token. */
	assert_int_equal(
	    bind_won(fx->st, "C1", "TK2", SOTP_LOGIN_OTP, 100, 0), 0);
	assert_unchanged(fx->st, "C1", "TK2", &c1, &t2);
	/* No such token. */
	assert_int_equal(
	    bind_won(fx->st, "C2", "NOPE", SOTP_LOGIN_OTP, 100, 0), 0);
	assert_unchanged(fx->st, "C2", NULL, &c2, NULL);
	/* A token bound to another contract (the UNIQUE on the binding). */
	assert_int_equal(
	    bind_won(fx->st, "C2", "TK1", SOTP_LOGIN_OTP, 100, 0), 0);
	assert_unchanged(fx->st, "C2", "TK1", &c2, &t1);
	/* TK2 has spent step 70: 70 and older are replays. */
	assert_int_equal(
	    bind_won(fx->st, "C2", "TK2", SOTP_LOGIN_OTP, 70, 0), 0);
	assert_unchanged(fx->st, "C2", "TK2", &c2, &t2);
	assert_int_equal(
	    bind_won(fx->st, "C2", "TK2", SOTP_LOGIN_OTP, 69, 0), 0);
	assert_unchanged(fx->st, "C2", "TK2", &c2, &t2);

	/* And the first newer step binds. */
	bind_ok(fx->st, "C2", "TK2", 71);
}

static void
test_store_one_token_per_contract(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;

	add_token(fx->st, "TK1");
	add_token(fx->st, "TK2");
	add_contract(fx->st, "C1");
	bind_ok(fx->st, "C1", "TK1", 10);
	assert_int_equal(
	    bind_won(fx->st, "C1", "TK2", SOTP_LOGIN_OTP, 11, 0), 0);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_string_equal(c.serial, "TK1");
}

static void
test_store_one_contract_per_token(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct sotp_token_rec t;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	add_contract(fx->st, "C2");
	bind_ok(fx->st, "C1", "TK1", 10);
	assert_int_equal(
	    bind_won(fx->st, "C2", "TK1", SOTP_LOGIN_OTP, 11, 0), 0);
	assert_int_equal(sotp_store_contract_get(fx->st, "C2", &c), SOTP_OK);
	assert_string_equal(c.serial, "");
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_string_equal(t.contract, "C1");
}

static void
test_store_unbind_frees_token(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	int unbound = -1;

	add_token(fx->st, "TK1");
	add_token(fx->st, "TK2");
	add_contract(fx->st, "C1");
	add_contract(fx->st, "C2");
	assert_int_equal(
	    sotp_store_unbind(fx->st, "C1", "TK1", &unbound), SOTP_OK);
	assert_int_equal(unbound, 0);
	bind_ok(fx->st, "C1", "TK1", 10);
	/* Guarded by the binding the caller saw: another one stays. */
	assert_int_equal(
	    sotp_store_unbind(fx->st, "C1", "TK2", &unbound), SOTP_OK);
	assert_int_equal(unbound, 0);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_string_equal(c.serial, "TK1");
	assert_int_equal(
	    sotp_store_unbind(fx->st, "C1", "TK1", &unbound), SOTP_OK);
	assert_int_equal(unbound, 1);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_string_equal(t.contract, "");
	/* The token keeps its last step: its old codes stay spent. */
	assert_int_equal(t.last_step, 10);
	assert_int_equal(
	    bind_won(fx->st, "C2", "TK1", SOTP_LOGIN_OTP, 10, 0), 0);
	bind_ok(fx->st, "C2", "TK1", 11);
	assert_int_equal(sotp_store_unbind(fx->st, "NOPE", "TK1", &unbound),
	    SOTP_ERR_NOT_FOUND);
}

static void
test_store_close_refused_while_bound(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	int closed = -1, unbound = 0;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	bind_ok(fx->st, "C1", "TK1", 10);
	assert_int_equal(
	    sotp_store_contract_close(fx->st, "C1", &closed), SOTP_OK);
	assert_int_equal(closed, 0);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.closed, 0);
	assert_string_equal(c.serial, "TK1");

	assert_int_equal(
	    sotp_store_unbind(fx->st, "C1", "TK1", &unbound), SOTP_OK);
	assert_int_equal(unbound, 1);
	assert_int_equal(
	    sotp_store_contract_close(fx->st, "C1", &closed), SOTP_OK);
	assert_int_equal(closed, 1);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.closed, 1);
}

static void
test_store_fail_locks_at_threshold(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	unsigned int n = 0;
	int64_t lock = 0;

	add_contract(fx->st, "C1");
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 3, 1234, &n, &lock), SOTP_OK);
	assert_int_equal(n, 1);
	assert_int_equal(lock, 0);
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 3, 1234, &n, &lock), SOTP_OK);
	assert_int_equal(n, 2);
	assert_int_equal(lock, 0);
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 3, 1234, &n, &lock), SOTP_OK);
	assert_int_equal(n, 3);
	assert_int_equal(lock, 1234);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 3);
	assert_int_equal(c.locked_until, 1234);
	/* Past the threshold each failure locks again (a timed lock ran out).
	 */
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 3, 5678, &n, &lock), SOTP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(lock, 5678);
	assert_int_equal(sotp_store_fail(fx->st, "NOPE", 3, 1, &n, &lock),
	    SOTP_ERR_NOT_FOUND);
	/* An expired lock ends only if it is still the one that was seen. */
	assert_int_equal(sotp_store_contract_unlock_expired(fx->st, "C1", 1234),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.locked_until, 5678);
	assert_int_equal(c.failures, 4);
	assert_int_equal(
	    sotp_store_contract_unlock_expired(fx->st, "C1", 5678), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.locked_until, 0);
	assert_int_equal(c.failures, 0);
}

static void
test_store_fail_threshold_zero_never_locks(void **state)
{
	struct fixture *fx = *state;
	unsigned int n = 0;
	int64_t lock = 0;
	int i;

	add_contract(fx->st, "C1");
	for (i = 0; i < 5; i++)
		assert_int_equal(
		    sotp_store_fail(fx->st, "C1", 0, -1, &n, &lock), SOTP_OK);
	assert_int_equal(n, 5);
	assert_int_equal(lock, 0);
}

static void
test_store_unlock_resets(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	unsigned int n = 0;
	int64_t lock = 0;

	add_contract(fx->st, "C1");
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 1, -1, &n, &lock), SOTP_OK);
	assert_int_equal(lock, -1);
	assert_int_equal(sotp_store_contract_unlock(fx->st, "C1"), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 0);
	assert_int_equal(c.locked_until, 0);

	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 5, -1, &n, &lock), SOTP_OK);
	assert_int_equal(sotp_store_reset_failures(fx->st, "C1"), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 0);
}

struct ids {
	char list[256];
};

static int
ids_cb(void *arg, const struct sotp_contract_rec *c)
{
	struct ids *l = arg;
	size_t n = strlen(l->list);

	snprintf(
	    l->list + n, sizeof(l->list) - n, "%s%s", n > 0 ? " " : "", c->id);
	return 0;
}

static const char *
list_ids(
    struct sotp_store *st, int locked, int64_t now, int closed, struct ids *l)
{
	l->list[0] = '\0';
	assert_int_equal(
	    sotp_store_contract_list(st, locked, now, closed, ids_cb, l),
	    SOTP_OK);
	return l->list;
}

/* The help desk's list and token switch, on both dialects. */
static void
test_store_contract_list_token_disable(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	struct ids l;
	unsigned int n = 0;
	int64_t lock = 0;
	int closed = 0;

	add_contract(fx->st, "C3");
	add_contract(fx->st, "C1");
	add_contract(fx->st, "C2");
	add_contract(fx->st, "C4");
	/* C1 locked until an admin, C2 until 2000, C4 closed. */
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 1, -1, &n, &lock), SOTP_OK);
	assert_int_equal(
	    sotp_store_fail(fx->st, "C2", 1, 2000, &n, &lock), SOTP_OK);
	assert_int_equal(
	    sotp_store_contract_close(fx->st, "C4", &closed), SOTP_OK);
	assert_int_equal(closed, 1);
	assert_string_equal(list_ids(fx->st, 0, 1000, -1, &l), "C1 C2 C3 C4");
	assert_string_equal(list_ids(fx->st, 1, 1000, -1, &l), "C1 C2");
	assert_string_equal(list_ids(fx->st, 1, 2000, -1, &l), "C1");
	assert_string_equal(list_ids(fx->st, 0, 1000, 0, &l), "C1 C2 C3");
	assert_string_equal(list_ids(fx->st, 0, 1000, 1, &l), "C4");
	assert_string_equal(list_ids(fx->st, 1, 1000, 1, &l), "");

	add_token(fx->st, "T1");
	assert_int_equal(
	    sotp_store_token_set_disabled(fx->st, "T1", 1), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "T1", &t), SOTP_OK);
	assert_int_equal(t.disabled, 1);
	assert_int_equal(
	    sotp_store_token_set_disabled(fx->st, "T1", 0), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "T1", &t), SOTP_OK);
	assert_int_equal(t.disabled, 0);
	assert_int_equal(
	    sotp_store_token_set_disabled(fx->st, "T9", 1), SOTP_ERR_NOT_FOUND);
}

static void
test_store_accept_step_cas(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	unsigned int n = 0;
	int64_t lock = 0;
	int won = -1;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	bind_ok(fx->st, "C1", "TK1", 100);
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 5, -1, &n, &lock), SOTP_OK);
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 5, -1, &n, &lock), SOTP_OK);

	/* Older and equal steps are refused and change nothing. */
	assert_int_equal(
	    accept_step(fx->st, "TK1", "C1", 99, 4, &won), SOTP_OK);
	assert_int_equal(won, 0);
	assert_int_equal(
	    accept_step(fx->st, "TK1", "C1", 100, 4, &won), SOTP_OK);
	assert_int_equal(won, 0);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(t.last_step, 100);
	assert_int_equal(t.drift, 0);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 2);

	/* A newer step wins, records the drift and resets failures. */
	assert_int_equal(
	    accept_step(fx->st, "TK1", "C1", 101, -1, &won), SOTP_OK);
	assert_int_equal(won, 1);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(t.last_step, 101);
	assert_int_equal(t.drift, -1);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 0);

	/* The same step again is a replay. */
	assert_int_equal(
	    accept_step(fx->st, "TK1", "C1", 101, -1, &won), SOTP_OK);
	assert_int_equal(won, 0);

	assert_int_equal(
	    accept_step(fx->st, "NOPE", NULL, 5, 0, &won), SOTP_ERR_NOT_FOUND);
	assert_int_equal(won, 0);
}

/*
 * The compare-and-set also wants the token enabled: on a disabled token
 * it spends no step, undoes the failure count's reset and says that the
 * flag was the guard (before the replay guard), with a contract (a
 * decision) or without (the admin's resync).
 */
static void
test_store_use_step_disabled(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	unsigned int n = 0;
	int64_t lock = 0;
	int won = -1, disabled = -1;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	bind_ok(fx->st, "C1", "TK1", 100);
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 5, -1, &n, &lock), SOTP_OK);

	/* Enabled: a newer step wins and resets the count. */
	assert_int_equal(
	    sotp_store_use_step(fx->st, "TK1", "C1", 101, 2, &won, &disabled),
	    SOTP_OK);
	assert_int_equal(won, 1);
	assert_int_equal(disabled, 0);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 0);

	/* Disabled: nothing changes, and the flag is named. */
	assert_int_equal(
	    sotp_store_fail(fx->st, "C1", 5, -1, &n, &lock), SOTP_OK);
	assert_int_equal(
	    sotp_store_token_set_disabled(fx->st, "TK1", 1), SOTP_OK);
	assert_int_equal(
	    sotp_store_use_step(fx->st, "TK1", "C1", 102, -1, &won, &disabled),
	    SOTP_OK);
	assert_int_equal(won, 0);
	assert_int_equal(disabled, 1);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(t.last_step, 101);
	assert_int_equal(t.drift, 2);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 1);
	/* A used step of a disabled token: the flag comes first. */
	assert_int_equal(
	    sotp_store_use_step(fx->st, "TK1", "C1", 101, 0, &won, &disabled),
	    SOTP_OK);
	assert_int_equal(won, 0);
	assert_int_equal(disabled, 1);

	/* Without a contract (the admin's resync): the flag the same. */
	assert_int_equal(
	    sotp_store_use_step(fx->st, "TK1", NULL, 102, 0, &won, &disabled),
	    SOTP_OK);
	assert_int_equal(won, 0);
	assert_int_equal(disabled, 1);

	/* Enabled again: a used step is a replay, a newer one wins. */
	assert_int_equal(
	    sotp_store_token_set_disabled(fx->st, "TK1", 0), SOTP_OK);
	assert_int_equal(
	    sotp_store_use_step(fx->st, "TK1", "C1", 101, 0, &won, &disabled),
	    SOTP_OK);
	assert_int_equal(won, 0);
	assert_int_equal(disabled, 0);
	assert_int_equal(
	    sotp_store_use_step(fx->st, "TK1", "C1", 103, 0, &won, &disabled),
	    SOTP_OK);
	assert_int_equal(won, 1);
	assert_int_equal(disabled, 0);
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &c), SOTP_OK);
	assert_int_equal(c.failures, 0);

	assert_int_equal(
	    sotp_store_use_step(fx->st, "NOPE", NULL, 5, 0, &won, &disabled),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(won, 0);
	assert_int_equal(
	    sotp_store_use_step(fx->st, "TK1", NULL, 104, 0, &won, NULL),
	    SOTP_ERR_INVALID_ARG);
}

static void
test_store_state_use_replay_purge(void **state)
{
	struct fixture *fx = *state;
	uint8_t a[16], b[16], c[16];
	int fresh = -1;

	memset(a, 0x11, sizeof(a));
	memset(b, 0x22, sizeof(b));
	memset(c, 0x33, sizeof(c));
	/* The first use finds a purge due: it runs (nothing to purge). */
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1100, 1000, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1100, 1050, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
	/* At its expiry second the row is still there (and a purge ran). */
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1100, 1100, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
	/* Past it, the row stays until the next purge is due. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, b, 1300, 1101, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1300, 1102, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
	/* A minute after the last purge, one runs after this use. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, c, 1400, 1100 + 60, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	/* a's row is gone: an id with a later expiry is fresh again... */
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1300, 1161, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	/* ...but never one that does not outlive what was purged. */
	memset(a, 0x44, sizeof(a));
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1100, 1099, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
	assert_int_equal(
	    sotp_store_state_use(fx->st, b, 1300, 1162, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
}

/*
 * A server whose clock runs ahead purges marks by its clock while a server
 * on time still holds their states valid. Whatever the clocks do, a mark
 * at or below the highest expiry purged so far is never fresh again: its
 * twin may be gone. Marks above it are not affected.
 */
static void
test_store_state_use_after_purge_ahead(void **state)
{
	struct fixture *fx = *state;
	uint8_t a[16], b[16], c[16], d[16];
	int fresh = -1;

	memset(a, 0x11, sizeof(a));
	memset(b, 0x22, sizeof(b));
	memset(c, 0x33, sizeof(c));
	memset(d, 0x44, sizeof(d));
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1120, 1005, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	/* A server an hour ahead: a's mark goes. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, b, 4720, 4601, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	/* Back on time, a is still valid there: not fresh. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, a, 1120, 1060, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
	/* Nor is a state issued before a and never used. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, c, 1100, 1061, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
	/* A state that outlives every purged mark is. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, d, 1121, 1062, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(
	    sotp_store_state_use(fx->st, d, 1121, 1063, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
	/* The purger's clock does not move the line, only what it purged. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, b, 4720, 4602, &fresh), SOTP_OK);
	assert_int_equal(fresh, 0);
}

struct audit_acc {
	int n;
	int64_t ts[8];
	char contract[8][SOTP_ID_MAX];
	char action[8][32];
	int reason[8];
	char detail[8][64];
};

static int
audit_cb(void *arg, const struct sotp_audit_row *r)
{
	struct audit_acc *acc = arg;

	if (acc->n < 8) {
		acc->ts[acc->n] = r->ts;
		snprintf(acc->contract[acc->n], SOTP_ID_MAX, "%s", r->contract);
		snprintf(acc->action[acc->n], 32, "%s", r->action);
		snprintf(acc->detail[acc->n], 64, "%s", r->detail);
		acc->reason[acc->n] = r->reason;
	}
	acc->n++;
	return 0;
}

static void
add_audit(struct sotp_store *st, int64_t ts, const char *contract,
    const char *action, int reason)
{
	struct sotp_audit_rec r;

	memset(&r, 0, sizeof(r));
	r.ts = ts;
	r.action = action;
	r.contract = contract;
	r.serial = "TK1";
	r.context = "login";
	r.verdict = "reject";
	r.reason = reason;
	r.detail = contract != NULL ? "window=1" : NULL;
	assert_int_equal(
	    sotp_store_audit_append(st, &r, 1, 0, NULL, 0), SOTP_OK);
}

static void
test_store_audit_add_list(void **state)
{
	struct fixture *fx = *state;
	struct audit_acc acc;

	/* Inserted out of order: the list is oldest first. */
	add_audit(fx->st, 300, "C1", "verify", SOTP_R_WRONG_CODE);
	add_audit(fx->st, 100, "C1", "bind", SOTP_R_ACCEPTED);
	add_audit(fx->st, 200, "C2", "verify", SOTP_R_LOCKED);
	add_audit(fx->st, 400, NULL, "token.add", SOTP_R_ACCEPTED);

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_audit_list(fx->st, NULL, 0, 0, audit_cb, &acc), SOTP_OK);
	assert_int_equal(acc.n, 4);
	assert_int_equal(acc.ts[0], 100);
	assert_int_equal(acc.ts[1], 200);
	assert_int_equal(acc.ts[2], 300);
	assert_int_equal(acc.ts[3], 400);
	assert_string_equal(acc.contract[3], "");
	assert_string_equal(acc.detail[3], "");
	assert_string_equal(acc.action[0], "bind");
	assert_string_equal(acc.detail[0], "window=1");

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_audit_list(fx->st, "C1", 0, 0, audit_cb, &acc), SOTP_OK);
	assert_int_equal(acc.n, 2);
	assert_int_equal(acc.ts[0], 100);
	assert_int_equal(acc.ts[1], 300);
	assert_int_equal(acc.reason[1], SOTP_R_WRONG_CODE);

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_audit_list(fx->st, NULL, 200, 300, audit_cb, &acc),
	    SOTP_OK);
	assert_int_equal(acc.n, 2);
	assert_int_equal(acc.ts[0], 200);
	assert_int_equal(acc.ts[1], 300);

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_audit_list(fx->st, "C1", 150, 0, audit_cb, &acc),
	    SOTP_OK);
	assert_int_equal(acc.n, 1);
	assert_int_equal(acc.ts[0], 300);

	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_audit_list(fx->st, NULL, 0, 250, audit_cb, &acc),
	    SOTP_OK);
	assert_int_equal(acc.n, 2);
}

static void
test_store_reopen_keeps_data(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	char err[512];

	add_token(fx->st, "TK1");
	sotp_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(
	    sotp_store_open(fx->url, 0, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	/* create = 1 on an existing store is idempotent (init twice). */
	sotp_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(
	    sotp_store_open(fx->url, 1, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
}

static void
test_store_file_mode_0600(void **state)
{
	struct fixture *fx = *state;
	struct stat sb;
	char p[PATH_MAX];

	add_token(fx->st, "TK1");
	assert_int_equal(stat(fx->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	snprintf(p, sizeof(p), "%s-wal", fx->path);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0077, 0);
}

static void
test_store_open_missing_file(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = (struct sotp_store *)(uintptr_t)1;
	char url[PATH_MAX], err[512];
	struct stat sb;

	snprintf(url, sizeof(url), "sqlite:%s/missing.db", fx->dir);
	assert_int_equal(sotp_store_open(url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_null(st);
	assert_non_null(strstr(err, "missing.db"));
	/* And it was not created on the way. */
	snprintf(url, sizeof(url), "%s/missing.db", fx->dir);
	assert_int_equal(stat(url, &sb), -1);
}

static void
test_store_open_unsupported_url(void **state)
{
	struct sotp_store *st = NULL;
	char err[512];

	(void)state;
	assert_int_equal(sotp_store_open("mysql://u:secretpw@db/otp", 0, &st,
	                     err, sizeof(err)),
	    SOTP_ERR_CONFIG);
	assert_null(st);
	assert_non_null(strstr(err, "unsupported store URL scheme"));
	assert_null(strstr(err, "secretpw"));
	assert_int_equal(
	    sotp_store_open("/var/lib/x.db", 0, &st, err, sizeof(err)),
	    SOTP_ERR_CONFIG);
	assert_int_equal(
	    sotp_store_open("sqlitex:/x.db", 0, &st, err, sizeof(err)),
	    SOTP_ERR_CONFIG);
}

static void
test_store_open_relative_path(void **state)
{
	struct sotp_store *st = NULL;
	char err[512];

	(void)state;
	assert_int_equal(
	    sotp_store_open("sqlite:store.db", 1, &st, err, sizeof(err)),
	    SOTP_ERR_CONFIG);
	assert_null(st);
	assert_non_null(strstr(err, "absolute"));
}

static void
test_store_open_corrupt_file(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char path[PATH_MAX], url[PATH_MAX + 8], err[512], junk[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/junk.db", fx->dir);
	snprintf(url, sizeof(url), "sqlite:%s", path);
	memset(junk, 'x', sizeof(junk));
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);
	assert_int_equal(sotp_store_open(url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "junk.db"));
	assert_int_equal(sotp_store_open(url, 1, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	rm_db(path);
}

static void
test_store_open_empty_file_needs_init(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char path[PATH_MAX], url[PATH_MAX + 8], err[512];
	int fd;

	snprintf(path, sizeof(path), "%s/empty.db", fx->dir);
	snprintf(url, sizeof(url), "sqlite:%s", path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(sotp_store_open(url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "init"));
	rm_db(path);
}

static void
test_store_open_readonly_file(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char err[512];

	pid_t pid;
	int status = 0;

	sotp_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(chmod(fx->path, 0400), 0);
	if (geteuid() != 0) {
		assert_int_equal(
		    sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
		    SOTP_ERR_STORE_UNAVAILABLE);
		assert_null(st);
		assert_int_equal(chmod(fx->path, 0600), 0);
		return;
	}
	/* Root writes through any mode: try it as nobody, who owns it. */
	assert_int_equal(chmod(fx->dir, 0755), 0);
	assert_int_equal(chown(fx->path, 65534, 65534), 0);
	if ((pid = fork()) == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		_exit(sotp_store_open(fx->url, 0, &st, err, sizeof(err)) ==
		                SOTP_ERR_STORE_UNAVAILABLE &&
		            st == NULL
		        ? 0
		        : 1);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(chown(fx->path, 0, 0), 0);
	assert_int_equal(chmod(fx->path, 0600), 0);
}

/* Runs sql on the file at path behind the store's back. */
static void
raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void
test_store_open_other_schema_version(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char err[512];

	sotp_store_close(fx->st);
	fx->st = NULL;
	/* As a newer build would leave it: its version in the header too. */
	raw_exec(fx->path,
	    "UPDATE schema_version SET version = 99; PRAGMA user_version = 99");
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "version 99"));
	assert_int_equal(sotp_store_open(fx->url, 1, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
}

/*
 * A version 1 store, from before the audit chain: refused until init
 * upgrades it; its rows stay, counted as from before the chain.
 */
/*
 * The store as a build of schema version 2 made it, from its own SQL
 * (tests/data/schema), in place of the fixture's: then `down` on it.
 */
static void
old_store(struct fixture *fx, const char *down)
{
	char path[PATH_MAX], *sql;
	const char *top = getenv("TOP");
	FILE *f;
	long n;

	sotp_store_close(fx->st);
	fx->st = NULL;
	if (top == NULL)
		fail_msg("TOP is not set: run tests/run.sh");
	snprintf(path, sizeof(path), "%s/tests/data/schema/v2-%s.sql", top,
	    pg_url() != NULL ? "postgresql" : "sqlite");
	assert_non_null(f = fopen(path, "r"));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	assert_true((n = ftell(f)) > 0);
	rewind(f);
	assert_non_null(sql = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(sql, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	if (pg_url() != NULL) {
		pg_reset();
		pg_exec(sql);
		pg_exec(down);
	} else {
		rm_db(fx->path);
		raw_exec(fx->path, sql);
		raw_exec(fx->path, down);
	}
	free(sql);
}

static void
test_store_upgrade_from_v1(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	struct sotp_audit_head h;
	struct sotp_key_ring ring;
	int64_t pending = -1, legacy = -1;
	char err[512];
	static const char down[] =
	    "DROP TABLE audit_head; DROP INDEX audit_seq;"
	    " DROP INDEX audit_pending; ALTER TABLE audit DROP COLUMN seq;"
	    " ALTER TABLE audit DROP COLUMN mac;"
	    " ALTER TABLE audit DROP COLUMN keyed;"
	    " INSERT INTO audit (ts, action, contract, serial, context,"
	    " verdict, reason, detail) VALUES (5, 'verify', 'C1', '',"
	    " 'login', 'accept', 0, '');"
	    " UPDATE schema_version SET version = 1";

	old_store(fx, down);
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	if (strstr(err, "version 1") == NULL ||
	    strstr(err, "shinkin-otp init") == NULL)
		fail_msg("refusal of a version 1 store: %s", err);
	assert_int_equal(
	    sotp_store_open(fx->url, 1, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(
	    sotp_store_audit_counts(fx->st, &pending, &legacy), SOTP_OK);
	assert_int_equal(pending, 0);
	assert_int_equal(legacy, 1);
	assert_int_equal(sotp_store_audit_head(fx->st, 1, 0, &h), SOTP_OK);
	assert_int_equal(h.seq, 0);
	/* Through version 2 to 3: at key version 0, the master key file. */
	assert_int_equal(sotp_store_key_ring(fx->st, 0, &ring), SOTP_OK);
	assert_int_equal(ring.current, 0);
	/* And it opens as any store now. */
	assert_int_equal(
	    sotp_store_open(fx->url, 0, &st, err, sizeof(err)), SOTP_OK);
	sotp_store_close(st);
}

/*
 * A version 2 store with a token and a card sealed under the master key:
 * init takes it to version 3 at key version 0, every value named as
 * sealed under it, and a version 2 build's refusal names init.
 */
static void
test_store_upgrade_from_v2(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	struct sotp_key_ring ring;
	struct sotp_token_rec t;
	struct sotp_contract_rec c;
	int64_t left = -1;
	char err[512];
	static const char down[] =
	    "INSERT INTO tokens (serial, kind, secret, algorithm, digits,"
	    " period, created) VALUES ('TK1', 'mobile', X'01AA', 0, 6, 30, 1);"
	    " INSERT INTO contracts (id, pwhash, login, card, created)"
	    " VALUES ('C1', '*', 1, X'01BB', 1),"
	    " ('C2', '*', 1, NULL, 1)";
	static const char down_pg[] =
	    "INSERT INTO tokens (serial, kind, secret, algorithm, digits,"
	    " period, created) VALUES ('TK1', 'mobile', '\\x01aa', 0, 6,"
	    " 30, 1);"
	    " INSERT INTO contracts (id, pwhash, login, card, created)"
	    " VALUES ('C1', '*', 1, '\\x01bb', 1),"
	    " ('C2', '*', 1, NULL, 1)";

	old_store(fx, pg_url() != NULL ? down_pg : down);
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	if (strstr(err, "version 2") == NULL ||
	    strstr(err, "shinkin-otp init") == NULL)
		fail_msg("refusal of a version 2 store: %s", err);
	assert_int_equal(
	    sotp_store_open(fx->url, 1, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_key_ring(fx->st, 0, &ring), SOTP_OK);
	assert_int_equal(ring.current, 0);
	assert_int_equal(ring.gen, 1);
	/* Two values, both under version 0 (the NULL card names none). */
	assert_int_equal(sotp_store_key_left(fx->st, 0, 0, &left), SOTP_OK);
	assert_int_equal(left, 2);
	assert_int_equal(sotp_store_key_left(fx->st, 1, 1, &left), SOTP_OK);
	assert_int_equal(left, 2);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(sotp_store_contract_get(fx->st, "C2", &c), SOTP_OK);
	/* Version 0 cannot go while values name it. */
	assert_int_equal(sotp_store_begin(fx->st), SOTP_OK);
	assert_int_not_equal(sotp_store_key_retire(fx->st, 0), SOTP_OK);
	sotp_store_rollback(fx->st);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	/* The upgrade is done once: init again changes nothing. */
	sotp_store_close(fx->st);
	assert_int_equal(
	    sotp_store_open(fx->url, 1, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_key_ring(fx->st, 0, &ring), SOTP_OK);
	assert_int_equal(ring.gen, 1);
}

/* One integer answer of sql on the file at path, behind the store. */
static int64_t
raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int64_t v;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return v;
}

/*
 * Opening checks the schema from the file's header (application_id,
 * user_version); a store without the stamp (made before it) gets the
 * full check once and is stamped by it.
 */
static void
test_store_header_stamp(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	char err[512];

	add_token(fx->st, "TK1");
	sotp_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(
	    raw_int(fx->path, "PRAGMA application_id"), 0x534f5450);
	assert_int_equal(
	    raw_int(fx->path, "PRAGMA user_version"), SOTP_SCHEMA_VERSION);
	raw_exec(
	    fx->path, "PRAGMA application_id = 0; PRAGMA user_version = 0");
	assert_int_equal(
	    sotp_store_open(fx->url, 0, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(
	    raw_int(fx->path, "PRAGMA application_id"), 0x534f5450);
	assert_int_equal(
	    raw_int(fx->path, "PRAGMA user_version"), SOTP_SCHEMA_VERSION);
	/* A stamp alone does not make a file a store. */
	sotp_store_close(fx->st);
	fx->st = NULL;
	raw_exec(
	    fx->path, "PRAGMA user_version = 4; PRAGMA application_id = 1");
	raw_exec(fx->path, "UPDATE schema_version SET version = 7");
	assert_int_equal(sotp_store_open(fx->url, 0, &fx->st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "version 7"));
}

static off_t
file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? sb.st_size : -1;
}

/*
 * The WAL outlives every handle (closing neither checkpoints nor removes
 * it), what was committed in it is there for the next handle, and it stays
 * bounded: by handles that live for one operation (as a PAM call without
 * its warm context) and by one that lives for many (radiusd's).
 */
static void
test_store_wal_persists_bounded(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	struct sotp_token_rec t;
	char wal[PATH_MAX], serial[32], err[512];
	off_t sz, most = 0;
	/*
	 * The header, then WAL_CKPT_PAGES (64) pages for one-shot handles and
	 * WAL_WARM_PAGES (1000) for long-lived ones, plus one commit's frames.
	 */
	const off_t bound = 32 + (64 + 16) * (4096 + 24);
	const off_t warm_bound = 32 + (1000 + 16) * (4096 + 24);
	int i, won;

	snprintf(wal, sizeof(wal), "%s-wal", fx->path);
	add_token(fx->st, "TK0");
	sotp_store_close(fx->st);
	fx->st = NULL;
	if ((sz = file_size(wal)) <= 0)
		fail_msg(
		    "no WAL left after the close: size %lld", (long long)sz);
	/* The commit is in the WAL, not yet in the database file. */
	assert_int_equal(
	    raw_int(
	        fx->path, "SELECT count(*) FROM tokens WHERE serial = 'TK0'"),
	    1);
	for (i = 1; i <= 300; i++) {
		assert_int_equal(
		    sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
		    SOTP_OK);
		snprintf(serial, sizeof(serial), "TK%d", i);
		add_token(st, serial);
		sotp_store_close(st);
		st = NULL;
		if ((sz = file_size(wal)) < 0)
			fail_msg("the WAL went away after %d opens", i);
		most = sz > most ? sz : most;
	}
	if (most > bound)
		fail_msg(
		    "one-shot handles: WAL grew to %lld bytes (bound %lld)",
		    (long long)most, (long long)bound);
	assert_int_equal(
	    sotp_store_open(fx->url, 0, &fx->st, err, sizeof(err)), SOTP_OK);
	for (i = 0, most = 0; i < 3000; i++) {
		assert_int_equal(
		    accept_step(fx->st, "TK0", NULL, i + 1, 0, &won), SOTP_OK);
		assert_int_equal(won, 1);
		sz = file_size(wal);
		most = sz > most ? sz : most;
	}
	if (most > warm_bound)
		fail_msg(
		    "a long-lived handle: WAL grew to %lld bytes (bound %lld)",
		    (long long)most, (long long)warm_bound);
	assert_int_equal(sotp_store_token_get(fx->st, "TK300", &t), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK0", &t), SOTP_OK);
	assert_int_equal(t.last_step, 3000);
}

/*
 * A process killed right after an accepted step committed (no close, no
 * checkpoint): the next opener finds the mark in the WAL and refuses the
 * same step again.
 */
static void
test_store_killed_after_accept_keeps_mark(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	char err[512];
	pid_t pid;
	int wst, won = -1;

	add_token(fx->st, "TK1");
	sotp_store_close(fx->st);
	fx->st = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sotp_store *st = NULL;
		int w = 0;

		if (sotp_store_open(fx->url, 0, &st, err, sizeof(err)) !=
		        SOTP_OK ||
		    accept_step(st, "TK1", NULL, 42, 0, &w) != SOTP_OK ||
		    w != 1)
			_exit(3);
		raise(SIGKILL);
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	if (!WIFSIGNALED(wst) || WTERMSIG(wst) != SIGKILL)
		fail_msg(
		    "the child did not die after its accept: status %d", wst);
	assert_int_equal(
	    sotp_store_open(fx->url, 0, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(t.last_step, 42);
	assert_int_equal(
	    accept_step(fx->st, "TK1", NULL, 42, 0, &won), SOTP_OK);
	assert_int_equal(won, 0);
}

static void
test_store_open_foreign_db(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char path[PATH_MAX], url[PATH_MAX + 8], err[512];

	snprintf(path, sizeof(path), "%s/other.db", fx->dir);
	snprintf(url, sizeof(url), "sqlite:%s", path);
	raw_exec(path, "CREATE TABLE t(x)");
	assert_int_equal(sotp_store_open(url, 1, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "not a shinkin-otp store"));
	rm_db(path);
}

static void
test_store_deleted_while_open(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	struct sotp_store *st = NULL;
	char err[512];
	int won = 1;

	add_token(fx->st, "TK1");
	rm_db(fx->path);
	/* The open handle fails closed instead of writing to a ghost. */
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(accept_step(fx->st, "TK1", NULL, 9, 0, &won),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(won, 0);
	assert_non_null(strstr(sotp_store_errmsg(fx->st), "removed"));
	/* And a new handle does not recreate it. */
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
}

/* The health probe commits a write round trip and leaves nothing. */
static void
test_store_probe(void **state)
{
	struct fixture *fx = *state;
	uint8_t id[16] = {9, 8, 7, 6, 5};
	int fresh = 0;

	assert_int_equal(sotp_store_probe(fx->st, id, 1000), SOTP_OK);
	assert_int_equal(sotp_store_probe(fx->st, id, 1000), SOTP_OK);
	/* The row is gone: the id is fresh for a challenge state. */
	assert_int_equal(
	    sotp_store_state_use(fx->st, id, 2000, 1000, &fresh), SOTP_OK);
	assert_int_equal(fresh, 1);
	assert_int_equal(
	    sotp_store_probe(fx->st, NULL, 1000), SOTP_ERR_INVALID_ARG);
}

/*
 * A store removed (with its -wal and -shm) and made again under an open
 * handle: the handle is lost (it would write to a ghost), and the next
 * request's reopen reads the new file. (Moving another file over a live
 * one, leaving the old -wal beside it, is not a way to restore: SQLite
 * would apply that WAL to the new file.)
 */
static void
test_store_replaced_file_heals(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *other = NULL;
	struct sotp_token_rec t;
	char err[512];

	add_token(fx->st, "TK1");
	rm_db(fx->path);
	assert_int_equal(
	    sotp_store_open(fx->url, 1, &other, err, sizeof(err)), SOTP_OK);
	/* As init makes it: the key version TK2's secret names. */
	assert_int_equal(sotp_store_key_add(other, 0, 0), SOTP_OK);
	add_token(other, "TK2");
	sotp_store_close(other);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_true(sotp_store_lost(fx->st));
	assert_int_equal(sotp_store_token_get(fx->st, "TK2", &t),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(sotp_store_heal(fx->st), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK2", &t), SOTP_OK);
	assert_int_equal(
	    sotp_store_token_get(fx->st, "TK1", &t), SOTP_ERR_NOT_FOUND);
}

/* A store file nobody may write: open refuses, the probe says why. */
static void
test_store_sqlite_read_only_probe(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	uint8_t id[16] = {1};
	char err[512], side[PATH_MAX];
	pid_t pid;
	int wst;

	sotp_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(chmod(fx->dir, 0755), 0);
	assert_int_equal(chown(fx->dir, 65534, 65534), 0);
	assert_int_equal(chown(fx->path, 65534, 65534), 0);
	assert_int_equal(chmod(fx->path, 0400), 0);
	/* The WAL the last handle kept, the owner's too (setup-state.sh). */
	snprintf(side, sizeof(side), "%s-wal", fx->path);
	if (chown(side, 65534, 65534) != 0)
		assert_int_equal(errno, ENOENT);
	snprintf(side, sizeof(side), "%s-shm", fx->path);
	if (chown(side, 65534, 65534) != 0)
		assert_int_equal(errno, ENOENT);
	if ((pid = fork()) == 0) {
		/* Root writes through any mode: run as nobody, the owner. */
		if (geteuid() == 0 &&
		    (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(3);
		if (sotp_store_open(fx->url, 0, &st, err, sizeof(err)) !=
		        SOTP_ERR_STORE_UNAVAILABLE ||
		    strstr(err, "read-only") == NULL)
			_exit(4);
		if (sotp_store_open_with(fx->url, NULL, SOTP_OPEN_READONLY_OK,
		        &st, err, sizeof(err)) != SOTP_OK)
			_exit(5);
		if (sotp_store_probe(st, id, 100) != SOTP_ERR_STORE_UNAVAILABLE)
			_exit(6);
		fprintf(stderr, "# probe: %s\n", sotp_store_errmsg(st));
		sotp_store_close(st);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	assert_int_equal(chmod(fx->path, 0600), 0);
}

static void
test_store_errmsg_names_operation(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(sotp_store_contract_set_login(fx->st, "C1", 7),
	    SOTP_ERR_INVALID_ARG);
	assert_non_null(
	    strstr(sotp_store_errmsg(fx->st), "contract_set_login"));
	assert_string_equal(sotp_store_errmsg(NULL), "");
}

/*
 * One racer: open the store, report ready, wait for the start signal and
 * try to spend `step`. Exit status 10 = won, 11 = lost, 1 = error.
 */
static void
racer(const char *url, int ready_fd, int go_fd, int64_t step)
{
	struct sotp_store *st = NULL;
	char err[512], c = 'r';
	int won = 0, disabled = 0;
	int status = 1;

	if (sotp_store_open(url, 0, &st, err, sizeof(err)) != SOTP_OK)
		_exit(1);
	if (write(ready_fd, &c, 1) != 1)
		_exit(1);
	/* EOF on the go pipe releases both racers at once. */
	if (read(go_fd, &c, 1) != 0)
		_exit(1);
	/* A decision's set: the loser lost to the replay guard. */
	if (sotp_store_use_step(st, "TK1", "C1", step, 0, &won, &disabled) ==
	        SOTP_OK &&
	    !disabled)
		status = won ? 10 : 11;
	sotp_store_close(st);
	_exit(status);
}

/*
 * One racer for test_store_race_state_purge: like racer(), but uses the
 * state id made of `b` bytes. Exit status 10 = fresh, 11 = not, 1 = error.
 */
static void
state_racer(const char *url, int ready_fd, int go_fd, uint8_t b,
    int64_t expires, int64_t now)
{
	struct sotp_store *st = NULL;
	uint8_t id[16];
	char err[512], c = 'r';
	int fresh = 0, status = 1;

	memset(id, b, sizeof(id));
	if (sotp_store_open(url, 0, &st, err, sizeof(err)) != SOTP_OK)
		_exit(1);
	if (write(ready_fd, &c, 1) != 1)
		_exit(1);
	if (read(go_fd, &c, 1) != 0)
		_exit(1);
	if (sotp_store_state_use(st, id, expires, now, &fresh) == SOTP_OK)
		status = fresh ? 10 : 11;
	sotp_store_close(st);
	_exit(status);
}

/*
 * A server ahead purges a used state's mark while a server on time
 * replays that state, at the same instant: whichever runs first, the
 * replay is never fresh (the purge and the horizon commit together, and
 * every state_use is ordered against them).
 */
static void
test_store_race_state_purge(void **state)
{
	struct fixture *fx = *state;
	uint8_t id[16];
	char err[512], c;
	int ready[2], go[2], fresh = 0;
	pid_t pid[2];
	int64_t e;
	int r, i, wst, st[2];

	for (r = 1; r <= 40; r++) {
		e = 1000 * (int64_t)r;
		memset(id, r, sizeof(id));
		assert_int_equal(
		    sotp_store_state_use(fx->st, id, e, e - 60, &fresh),
		    SOTP_OK);
		assert_int_equal(fresh, 1);
		sotp_store_close(fx->st);
		fx->st = NULL;
		assert_int_equal(pipe(ready), 0);
		assert_int_equal(pipe(go), 0);
		for (i = 0; i < 2; i++) {
			pid[i] = fork();
			assert_true(pid[i] >= 0);
			if (pid[i] != 0)
				continue;
			close(ready[0]);
			close(go[1]);
			/*
			 * Ahead: its own new state, then the purge that is
			 * due for it (the last ran at e - 60, by our use).
			 */
			if (i == 0)
				state_racer(fx->url, ready[1], go[0],
				    (uint8_t)(100 + r), e + 100000,
				    e + SOTP_STORE_STATE_PURGE_EVERY);
			/* on time: the used state again */
			state_racer(
			    fx->url, ready[1], go[0], (uint8_t)r, e, e - 50);
		}
		close(ready[1]);
		close(go[0]);
		for (i = 0; i < 2; i++)
			assert_int_equal(read(ready[0], &c, 1), 1);
		close(go[1]);
		close(ready[0]);
		for (i = 0; i < 2; i++) {
			assert_int_equal(waitpid(pid[i], &wst, 0), pid[i]);
			assert_true(WIFEXITED(wst));
			st[i] = WEXITSTATUS(wst);
		}
		if (st[0] != 10 || st[1] != 11)
			fail_msg("round %d: purger exit %d (want 10), replay "
			         "exit %d (want 11: not fresh)",
			    r, st[0], st[1]);
		assert_int_equal(
		    sotp_store_open(fx->url, 0, &fx->st, err, sizeof(err)),
		    SOTP_OK);
	}
}

static void
test_store_race_accept_step(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	char err[512], c;
	int ready[2], go[2];
	pid_t pid[2];
	int64_t step;
	int i, k, wst, wins, losses;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	bind_ok(fx->st, "C1", "TK1", 0);
	/* No connection may cross a fork; the parent's is closed first. */
	sotp_store_close(fx->st);
	fx->st = NULL;

	for (step = 1; step <= 100; step++) {
		assert_int_equal(pipe(ready), 0);
		assert_int_equal(pipe(go), 0);
		for (i = 0; i < 2; i++) {
			pid[i] = fork();
			assert_true(pid[i] >= 0);
			if (pid[i] == 0) {
				close(ready[0]);
				close(go[1]);
				racer(fx->url, ready[1], go[0], step);
			}
		}
		close(ready[1]);
		close(go[0]);
		for (i = 0; i < 2; i++)
			assert_int_equal(read(ready[0], &c, 1), 1);
		close(go[1]);
		close(ready[0]);
		wins = losses = 0;
		for (i = 0; i < 2; i++) {
			assert_int_equal(waitpid(pid[i], &wst, 0), pid[i]);
			assert_true(WIFEXITED(wst));
			k = WEXITSTATUS(wst);
			if (k == 10)
				wins++;
			else if (k == 11)
				losses++;
		}
		if (wins != 1 || losses != 1)
			fail_msg("step %lld: %d winners, %d losers",
			    (long long)step, wins, losses);
	}
	assert_int_equal(
	    sotp_store_open(fx->url, 0, &fx->st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(t.last_step, 100);
}

/*
 * The engine wraps a decision's writes and its audit row in one
 * transaction: an operation inside it runs in a savepoint, so its own
 * refusal or rollback never discards the caller's work, and the caller's
 * rollback discards everything.
 */
static void
test_store_nested_operations(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	struct audit_acc acc;
	int won = 0;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	bind_ok(fx->st, "C1", "TK1", 10);

	assert_int_equal(sotp_store_begin(fx->st), SOTP_OK);
	add_audit(fx->st, 100, "C1", "verify", SOTP_R_ACCEPTED);
	/* A refused inner operation (rolled back to its savepoint) ... */
	assert_int_equal(
	    bind_won(fx->st, "C1", "NOPE", SOTP_LOGIN_OTP, 20, 0), 0);
	/* ... and one that commits its savepoint. */
	assert_int_equal(
	    accept_step(fx->st, "TK1", "C1", 11, 0, &won), SOTP_OK);
	assert_int_equal(won, 1);
	assert_int_equal(sotp_store_commit(fx->st), SOTP_OK);
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_audit_list(fx->st, NULL, 0, 0, audit_cb, &acc), SOTP_OK);
	assert_int_equal(acc.n, 1);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(t.last_step, 11);

	/* The caller's rollback undoes the inner commit and the row. */
	assert_int_equal(sotp_store_begin(fx->st), SOTP_OK);
	add_audit(fx->st, 200, "C1", "verify", SOTP_R_ACCEPTED);
	assert_int_equal(
	    accept_step(fx->st, "TK1", "C1", 12, 0, &won), SOTP_OK);
	assert_int_equal(won, 1);
	sotp_store_rollback(fx->st);
	memset(&acc, 0, sizeof(acc));
	assert_int_equal(
	    sotp_store_audit_list(fx->st, NULL, 0, 0, audit_cb, &acc), SOTP_OK);
	assert_int_equal(acc.n, 1);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(t.last_step, 11);
	/* And the handle is usable on its own again. */
	assert_int_equal(
	    accept_step(fx->st, "TK1", "C1", 12, 0, &won), SOTP_OK);
	assert_int_equal(won, 1);
}

/*
 * A server that cannot be reached is an outage, and the message names the
 * server but never the password, in either form of connection string.
 * Needs no server: the socket directory does not exist.
 */
static void
test_store_pg_unreachable(void **state)
{
	static const char *const urls[] = {
	    "postgresql://u:secretpw@/otp?host=/nonexistent-sotp",
	    "postgres://u:secretpw@/otp?host=/nonexistent-sotp",
	    "postgresql:host=/nonexistent-sotp dbname=otp password=secretpw",
	    "postgresql:///otp?host=/nonexistent-sotp&password=secretpw",
	};
	struct sotp_store *st = (struct sotp_store *)(uintptr_t)1;
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		assert_int_equal(
		    sotp_store_open(urls[i], 0, &st, err, sizeof(err)),
		    SOTP_ERR_STORE_UNAVAILABLE);
		assert_null(st);
		assert_non_null(strstr(err, "nonexistent-sotp"));
		assert_null(strstr(err, "secretpw"));
	}
}

/* libpq would quote the bad token back; the message must not. */
static void
test_store_pg_malformed_url(void **state)
{
	struct sotp_store *st = NULL;
	char err[512];

	(void)state;
	assert_int_equal(sotp_store_open("postgresql://u:sec%zzret@h/db", 0,
	                     &st, err, sizeof(err)),
	    SOTP_ERR_CONFIG);
	assert_null(st);
	assert_null(strstr(err, "sec"));
	assert_int_equal(
	    sotp_store_open("postgresql:nokey", 0, &st, err, sizeof(err)),
	    SOTP_ERR_CONFIG);
}

static void
test_store_url_redact(void **state)
{
	static const struct {
		const char *in, *out;
	} v[] = {
	    {"sqlite:/var/lib/x.db", "sqlite:/var/lib/x.db"},
	    {"postgresql://u:pw@db:5432/otp", "postgresql://u:***@db:5432/otp"},
	    {"postgresql://u@db/otp", "postgresql://u@db/otp"},
	    {"postgres://db/otp?password=pw&sslmode=require",
	        "postgres://db/otp?password=***&sslmode=require"},
	    {"postgresql:host=db password = 'p w\\'x' dbname=otp",
	        "postgresql:host=db password = *** dbname=otp"},
	    {"postgresql:host=db passwordx=1",
	        "postgresql:host=db passwordx=1"},
	    /* libpq key=value right after the scheme. */
	    {"postgresql:password=pw host=db",
	        "postgresql:password=*** host=db"},
	    /* Glued to its quotes, or unterminated: all of it goes. */
	    {"postgresql:password='a b'c=d e=f", "postgresql:password=*** e=f"},
	    {"postgresql:password='a b\\", "postgresql:password=***"},
	    /* A masked value held the '/' that ended the authority: masking
	     * again would differ, so only the scheme is shown (fuzz_policy). */
	    {"postgres://:sq\030it  =od pass password =://\t\257postge@",
	        "postgres:***"},
	    /* What fuzz_policy found: an escape, then a second password. */
	    {"postgres:x =y password ='\xd7\x1c\\\x1c=\tpostgres: password ='"
	     "\xd7\x1c\\\x1c\x01ll rr",
	        "postgres:x =y password =*** rr"},
	};
	char out[256], again[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		sotp_store_url_redact(v[i].in, out, sizeof(out));
		assert_string_equal(out, v[i].out);
		/* Masking what is masked changes nothing: a dump reads back
		 * as the same policy. */
		sotp_store_url_redact(out, again, sizeof(again));
		assert_string_equal(again, out);
	}
	sotp_store_url_redact("postgresql://u:pw@db/otp", out, 12);
	assert_string_equal(out, "postgresql:");
}

static void
test_store_pg_empty_needs_init(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char err[512];

	sotp_store_close(fx->st);
	fx->st = NULL;
	pg_reset();
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_null(st);
	assert_non_null(strstr(err, "init"));
	/* And create = 0 made nothing. */
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
}

static void
test_store_pg_other_schema_version(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char err[512];

	sotp_store_close(fx->st);
	fx->st = NULL;
	pg_exec("UPDATE schema_version SET version = 99");
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "version 99"));
	assert_int_equal(sotp_store_open(fx->url, 1, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
}

static void
test_store_pg_foreign_db(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	char err[512];

	sotp_store_close(fx->st);
	fx->st = NULL;
	pg_reset();
	pg_exec("CREATE TABLE t(x int)");
	assert_int_equal(sotp_store_open(fx->url, 1, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "not a shinkin-otp store"));
}

/*
 * A connection the server drops (restart, failover, an admin's kill)
 * fails closed on the next operation, and stays failed: the caller
 * reopens.
 */
static void
test_store_pg_connection_lost(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	int won = 1;

	add_token(fx->st, "TK1");
	pg_exec("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
	        " WHERE datname = current_database()"
	        " AND pid <> pg_backend_pid()");
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(sotp_store_errmsg(fx->st), "token_get"));
	assert_int_equal(accept_step(fx->st, "TK1", NULL, 9, 0, &won),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(won, 0);
	assert_int_equal(sotp_store_begin(fx->st), SOTP_ERR_STORE_UNAVAILABLE);
	/* The next request reopens: the same handle serves again. */
	assert_true(sotp_store_lost(fx->st));
	assert_int_equal(sotp_store_heal(fx->st), SOTP_OK);
	assert_false(sotp_store_lost(fx->st));
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
	assert_int_equal(accept_step(fx->st, "TK1", NULL, 9, 0, &won), SOTP_OK);
	assert_int_equal(won, 1);
}

/* A value from the PostgreSQL test database, behind the store's back. */
static void
pg_value(const char *sql, char *out, size_t outsz)
{
	PGconn *conn;
	PGresult *res;

	out[0] = '\0';
	conn = PQconnectdb(pg_url());
	if (PQstatus(conn) != CONNECTION_OK)
		fail_msg("pg: %s", PQerrorMessage(conn));
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("pg: %s: %s", sql, PQresultErrorMessage(res));
	if (PQntuples(res) > 0)
		snprintf(out, outsz, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(conn);
}

/*
 * While the database refuses connections a lost handle stays lost and
 * says why; once it takes them again, the reopen works (after the short
 * pause a failed reopen imposes).
 */
static void
test_store_pg_heal_waits_for_server(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;
	char db[128], sql[256];

	add_token(fx->st, "TK1");
	pg_value("SELECT current_database()", db, sizeof(db));
	snprintf(sql, sizeof(sql),
	    "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS false", db);
	pg_exec_in("postgres", sql);
	pg_exec_in("postgres",
	    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
	    " WHERE datname <> current_database()"
	    " AND backend_type = 'client backend'");
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_int_equal(sotp_store_heal(fx->st), SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(sotp_store_errmsg(fx->st), "cannot connect"));
	assert_true(sotp_store_lost(fx->st));
	/* A second try at once fails without a new connection attempt. */
	assert_int_equal(sotp_store_heal(fx->st), SOTP_ERR_STORE_UNAVAILABLE);
	snprintf(sql, sizeof(sql),
	    "ALTER DATABASE \"%s\" ALLOW_CONNECTIONS true", db);
	pg_exec_in("postgres", sql);
	usleep((SOTP_REOPEN_DELAY_MS + 50) * 1000);
	assert_int_equal(sotp_store_heal(fx->st), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &t), SOTP_OK);
}

/*
 * With several hosts in the URL the handle connects to one that serves:
 * the first here is a socket directory with no server.
 */
static void
test_store_pg_multi_host(void **state)
{
	struct fixture *fx = *state;
	PQconninfoOption *opts, *o;
	const char *host = NULL, *port = NULL, *db = NULL, *user = NULL;
	struct sotp_store *st = NULL;
	struct sotp_token_rec t;
	char url[1400], err[512];

	add_token(fx->st, "TK1");
	assert_non_null(opts = PQconninfoParse(pg_url(), NULL));
	for (o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			db = o->val;
		else if (strcmp(o->keyword, "user") == 0)
			user = o->val;
	}
	assert_non_null(host);
	assert_non_null(port);
	snprintf(url, sizeof(url),
	    "postgresql:host=/nonexistent-sotp,%s port=%s,%s dbname=%s user=%s",
	    host, port, port, db != NULL ? db : "sotp",
	    user != NULL ? user : "sotp");
	assert_int_equal(
	    sotp_store_open(url, 0, &st, err, sizeof(err)), SOTP_OK);
	assert_int_equal(sotp_store_token_get(st, "TK1", &t), SOTP_OK);
	if (strstr(sotp_store_where(st), host) == NULL)
		fail_msg("connected to %s, not %s", sotp_store_where(st), host);
	PQconninfoFree(opts);
	sotp_store_close(st);
}

/* Makes every commit wait for a synchronous standby that never comes. */
static void
pg_sync_standby(const char *name)
{
	char sql[128], now[128];
	int i;

	snprintf(sql, sizeof(sql),
	    "ALTER SYSTEM SET synchronous_standby_names = '%s'", name);
	pg_exec(name[0] != '\0'
	        ? sql
	        : "ALTER SYSTEM RESET synchronous_standby_names");
	pg_exec("SELECT pg_reload_conf()");
	/*
	 * The postmaster rereads the file when it gets to the signal, and a
	 * session started after that has the new value: wait until a new
	 * session shows it. (A fixed 200 ms pause assumed an idle machine:
	 * a commit then did not wait for the standby, or a later test's did.)
	 */
	for (i = 0; i < 600; i++) {
		pg_value("SHOW synchronous_standby_names", now, sizeof(now));
		if (strcmp(now, name) == 0)
			return;
		usleep(50 * 1000);
	}
	fail_msg("synchronous_standby_names is still '%s' 30 s after the"
	         " reload, not '%s'",
	    now, name);
}

/*
 * A COMMIT waiting for a synchronous standby that does not answer is not
 * bounded by the server's statement_timeout; this side's deadline bounds
 * it: the commit is refused as unavailable, the connection closed, the
 * handle lost. (Its backend waits on, committed on the primary alone,
 * until the standby list is relaxed below.)
 */
static void
test_store_pg_commit_deadline(void **state)
{
	struct fixture *fx = *state;
	const struct sotp_limits lim = {2, 300, 300};
	struct sotp_store *st = NULL;
	struct sotp_token_rec t;
	char err[512];
	int rc;

	assert_int_equal(
	    sotp_store_open_with(fx->url, &lim, 0, &st, err, sizeof(err)),
	    SOTP_OK);
	pg_sync_standby("nosuch");
	assert_int_equal(sotp_store_begin(st), SOTP_OK);
	mk_token(&t, "TK1");
	assert_int_equal(sotp_store_token_insert(st, &t), SOTP_OK);
	rc = sotp_store_commit(st);
	pg_sync_standby("");
	assert_int_equal(rc, SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(
	    strstr(sotp_store_errmsg(st), "no answer within 300 ms"));
	assert_true(sotp_store_lost(st));
	assert_int_equal(
	    sotp_store_token_get(st, "TK1", &t), SOTP_ERR_STORE_UNAVAILABLE);
	sotp_store_close(st);
}

/*
 * A COMMIT whose wait for the standby an operator cancels comes back as
 * a success with a WARNING, committed on the primary alone: refused.
 * A child cancels the wait once the server shows it.
 */
static void
test_store_pg_commit_warning_refused(void **state)
{
	struct fixture *fx = *state;
	const struct sotp_limits lim = {2, 20000, 2000};
	struct sotp_store *st = NULL;
	struct sotp_token_rec t;
	char err[512], n[16];
	pid_t pid;
	int rc, wst, i;

	assert_int_equal(
	    sotp_store_open_with(fx->url, &lim, 0, &st, err, sizeof(err)),
	    SOTP_OK);
	pg_sync_standby("nosuch");
	if ((pid = fork()) == 0) {
		for (i = 0; i < 400; i++) {
			pg_value("SELECT count(pg_cancel_backend(pid))"
			         " FROM pg_stat_activity"
			         " WHERE wait_event = 'SyncRep'",
			    n, sizeof(n));
			if (strcmp(n, "0") != 0)
				_exit(0);
			usleep(25 * 1000);
		}
		_exit(1);
	}
	assert_true(pid > 0);
	assert_int_equal(sotp_store_begin(st), SOTP_OK);
	mk_token(&t, "TK1");
	assert_int_equal(sotp_store_token_insert(st, &t), SOTP_OK);
	rc = sotp_store_commit(st);
	pg_sync_standby("");
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	assert_int_equal(rc, SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(sotp_store_errmsg(st), "warning"));
	assert_true(sotp_store_lost(st));
	sotp_store_close(st);
}

/* A database that refuses writes: open refuses, the probe says why. */
static void
test_store_pg_read_only(void **state)
{
	struct fixture *fx = *state;
	struct sotp_store *st = NULL;
	uint8_t id[16] = {1, 2, 3};
	char db[128], sql[256], err[512];

	pg_value("SELECT current_database()", db, sizeof(db));
	snprintf(sql, sizeof(sql),
	    "ALTER DATABASE \"%s\" SET default_transaction_read_only = on", db);
	pg_exec_in("postgres", sql);
	assert_int_equal(sotp_store_open(fx->url, 0, &st, err, sizeof(err)),
	    SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(err, "read-only"));
	assert_int_equal(sotp_store_open_with(fx->url, NULL,
	                     SOTP_OPEN_READONLY_OK, &st, err, sizeof(err)),
	    SOTP_OK);
	assert_int_equal(
	    sotp_store_probe(st, id, 100), SOTP_ERR_STORE_UNAVAILABLE);
	assert_non_null(strstr(sotp_store_errmsg(st), "read-only"));
	sotp_store_close(st);
	snprintf(sql, sizeof(sql),
	    "ALTER DATABASE \"%s\" RESET default_transaction_read_only", db);
	pg_exec_in("postgres", sql);
}

/*
 * Inside a caller's transaction a refused insert (a key that exists)
 * aborts only its own savepoint, as a failed SQLite statement does: the
 * caller's batch goes on and commits.
 */
static void
test_store_nested_insert_refused(void **state)
{
	struct fixture *fx = *state;
	struct sotp_token_rec t;

	add_token(fx->st, "TK1");
	assert_int_equal(sotp_store_begin(fx->st), SOTP_OK);
	add_token(fx->st, "TK2");
	mk_token(&t, "TK1");
	assert_int_equal(sotp_store_token_insert(fx->st, &t), SOTP_ERR_EXISTS);
	add_token(fx->st, "TK3");
	assert_int_equal(sotp_store_commit(fx->st), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK2", &t), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK3", &t), SOTP_OK);
}

/*
 * Every statement id has SQL text in every dialect, taking the same
 * number of parameters (?N in SQLite, $N in PostgreSQL): a row missing
 * from one table would otherwise show only when that operation first ran
 * on that database.
 */
static int
max_param(const char *sql, char mark)
{
	const char *p;
	int n, max = 0;

	for (p = sql; (p = strchr(p, mark)) != NULL; p++) {
		n = atoi(p + 1);
		if (n > max)
			max = n;
	}
	return max;
}

static void
test_store_dialects_complete(void **state)
{
	const char *const *sq = sotp_store_sqlite_driver.sql;
	const char *const *pg = sotp_store_pg_driver.sql;
	int i;

	(void)state;
	for (i = 0; i < SOTP_Q_COUNT; i++) {
		if (sq[i] == NULL || pg[i] == NULL)
			fail_msg("statement %d: no SQL for %s", i,
			    sq[i] == NULL ? "sqlite" : "postgresql");
		if (max_param(sq[i], '?') != max_param(pg[i], '$'))
			fail_msg("statement %d: %d parameters in sqlite, %d in"
			         " postgresql",
			    i, max_param(sq[i], '?'), max_param(pg[i], '$'));
	}
}

/* Row locks mean something only inside a transaction: refused outside. */
static void
test_store_locks_need_a_transaction(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	assert_int_equal(
	    sotp_store_token_lock(fx->st, "TK1"), SOTP_ERR_INVALID_ARG);
	assert_non_null(strstr(sotp_store_errmsg(fx->st), "token_lock"));
	assert_int_equal(
	    sotp_store_contract_lock(fx->st, "C1", &c), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_store_begin(fx->st), SOTP_OK);
	assert_int_equal(sotp_store_token_lock(fx->st, "TK1"), SOTP_OK);
	assert_int_equal(
	    sotp_store_token_lock(fx->st, "NOPE"), SOTP_ERR_NOT_FOUND);
	assert_int_equal(sotp_store_contract_lock(fx->st, "C1", &c), SOTP_OK);
	assert_string_equal(c.id, "C1");
	assert_string_equal(c.pwhash, "$y$j9T$salt$hash-of-C1");
	assert_int_equal(
	    sotp_store_contract_lock(fx->st, "NOPE", &c), SOTP_ERR_NOT_FOUND);
	assert_int_equal(sotp_store_commit(fx->st), SOTP_OK);
}

/*
 * The contract's re-read under the lock with its token in one statement
 * (issue 13): the token comes as sotp_store_token_get reads it, none for
 * an unbound contract, and the same refusals as sotp_store_contract_lock.
 */
static void
test_store_contract_lock_token(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c, cw;
	struct sotp_token_rec t, want;
	int have = -1;

	add_token(fx->st, "TK1");
	add_contract(fx->st, "C1");
	add_contract(fx->st, "C2");
	bind_ok(fx->st, "C1", "TK1", 7);
	assert_int_equal(
	    sotp_store_contract_lock_token(fx->st, "C1", &c, &t, &have),
	    SOTP_ERR_INVALID_ARG);
	assert_non_null(
	    strstr(sotp_store_errmsg(fx->st), "contract_lock_token"));
	assert_int_equal(have, 0);

	assert_int_equal(sotp_store_begin(fx->st), SOTP_OK);
	assert_int_equal(sotp_store_token_get(fx->st, "TK1", &want), SOTP_OK);
	assert_int_equal(
	    sotp_store_contract_lock_token(fx->st, "C1", &c, &t, &have),
	    SOTP_OK);
	/* Every column as sotp_store_contract_get reads it. */
	assert_int_equal(sotp_store_contract_get(fx->st, "C1", &cw), SOTP_OK);
	assert_string_equal(c.id, "C1");
	assert_string_equal(c.serial, "TK1");
	assert_string_equal(c.pwhash, "$y$j9T$salt$hash-of-C1");
	assert_string_equal(c.pwhash, cw.pwhash);
	assert_int_equal(c.login, cw.login);
	assert_int_equal(c.card_len, cw.card_len);
	assert_memory_equal(c.card, cw.card, cw.card_len);
	assert_int_equal(c.kv, cw.kv);
	assert_int_equal(c.failures, cw.failures);
	assert_int_equal(c.locked_until, cw.locked_until);
	assert_int_equal(c.closed, cw.closed);
	assert_int_equal(c.created, cw.created);
	assert_int_equal(have, 1);
	assert_string_equal(t.serial, want.serial);
	assert_string_equal(t.kind, want.kind);
	assert_string_equal(t.contract, "C1");
	assert_int_equal(t.secret_len, want.secret_len);
	assert_memory_equal(t.secret, want.secret, want.secret_len);
	assert_int_equal(t.alg, want.alg);
	assert_int_equal(t.digits, want.digits);
	assert_int_equal(t.period, want.period);
	assert_int_equal(t.last_step, 7);
	assert_int_equal(t.last_step, want.last_step);
	assert_int_equal(t.drift, want.drift);
	assert_int_equal(t.disabled, want.disabled);
	assert_int_equal(t.created, want.created);

	/* Unbound: the contract, no token. */
	have = -1;
	assert_int_equal(
	    sotp_store_contract_lock_token(fx->st, "C2", &c, &t, &have),
	    SOTP_OK);
	assert_string_equal(c.id, "C2");
	assert_string_equal(c.serial, "");
	assert_int_equal(have, 0);
	assert_string_equal(t.serial, "");

	have = -1;
	assert_int_equal(
	    sotp_store_contract_lock_token(fx->st, "NOPE", &c, &t, &have),
	    SOTP_ERR_NOT_FOUND);
	assert_int_equal(have, 0);
	assert_int_equal(
	    sotp_store_contract_lock_token(fx->st, "", &c, &t, &have),
	    SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_store_commit(fx->st), SOTP_OK);
}

/*
 * A lock held past the timeout (SQLite's busy timeout, PostgreSQL's
 * lock_timeout) is an outage, not a wait without end: one process holds
 * contract C1's row lock in a transaction, another asks for it and fails
 * closed as unavailable, with a message that names the operation.
 */
static void
test_store_lock_held_is_unavailable(void **state)
{
	struct fixture *fx = *state;
	struct sotp_contract_rec c;
	struct sotp_store *st = NULL;
	char err[512], ch = 'r';
	int ready[2], hold[2], wst;
	pid_t holder, waiter;
	int rc;

	add_contract(fx->st, "C1");
	sotp_store_close(fx->st);
	fx->st = NULL;
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(hold), 0);
	if ((holder = fork()) == 0) {
		close(ready[0]);
		close(hold[1]);
		if (sotp_store_open(fx->url, 0, &st, err, sizeof(err)) !=
		        SOTP_OK ||
		    sotp_store_begin(st) != SOTP_OK ||
		    sotp_store_contract_lock(st, "C1", &c) != SOTP_OK ||
		    write(ready[1], &ch, 1) != 1)
			_exit(1);
		/* Until the parent closes the pipe (EOF). */
		if (read(hold[0], &ch, 1) != 0)
			_exit(1);
		sotp_store_rollback(st);
		sotp_store_close(st);
		_exit(0);
	}
	assert_true(holder > 0);
	close(ready[1]);
	close(hold[0]);
	assert_int_equal(read(ready[0], &ch, 1), 1);
	if ((waiter = fork()) == 0) {
		if (sotp_store_open(fx->url, 0, &st, err, sizeof(err)) !=
		    SOTP_OK)
			_exit(2);
		if ((rc = sotp_store_begin(st)) == SOTP_OK)
			rc = sotp_store_contract_lock(st, "C1", &c);
		fprintf(stderr, "# waiter: %s\n", sotp_store_errmsg(st));
		_exit(rc == SOTP_ERR_STORE_UNAVAILABLE &&
		            (strstr(sotp_store_errmsg(st), "begin") != NULL ||
		                strstr(sotp_store_errmsg(st),
		                    "contract_lock") != NULL)
		        ? 0
		        : 3);
	}
	assert_true(waiter > 0);
	assert_int_equal(waitpid(waiter, &wst, 0), waiter);
	close(hold[1]);
	close(ready[0]);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	assert_int_equal(waitpid(holder, &wst, 0), holder);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
}

/*
 * Two handles bind one token to two contracts at once, 20 times: exactly
 * one binding each time; the other's guarded write changes nothing.
 */
static void
binder(const char *url, const char *contract, const char *serial, int ready_fd,
    int go_fd)
{
	struct sotp_store *st = NULL;
	char err[512], c = 'r';
	int status = 1, won = -1;

	if (sotp_store_open(url, 0, &st, err, sizeof(err)) != SOTP_OK)
		_exit(1);
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 0)
		_exit(1);
	if (sotp_store_bind(st, contract, serial, SOTP_LOGIN_OTP, 5, 0, &won) ==
	    SOTP_OK)
		status = won == 1 ? 10 : won == 0 ? 11 : 2;
	sotp_store_close(st);
	_exit(status);
}

static void
test_store_race_bind(void **state)
{
	struct fixture *fx = *state;
	char serial[32], cid[2][32], c;
	int ready[2], go[2];
	pid_t pid[2];
	int i, k, round, wst, wins, losses;

	for (round = 0; round < 20; round++) {
		snprintf(serial, sizeof(serial), "TK%d", round);
		add_token(fx->st, serial);
		for (i = 0; i < 2; i++) {
			snprintf(cid[i], sizeof(cid[i]), "C%d-%d", round, i);
			add_contract(fx->st, cid[i]);
		}
	}
	sotp_store_close(fx->st);
	fx->st = NULL;
	for (round = 0; round < 20; round++) {
		snprintf(serial, sizeof(serial), "TK%d", round);
		assert_int_equal(pipe(ready), 0);
		assert_int_equal(pipe(go), 0);
		for (i = 0; i < 2; i++) {
			snprintf(cid[i], sizeof(cid[i]), "C%d-%d", round, i);
			pid[i] = fork();
			assert_true(pid[i] >= 0);
			if (pid[i] == 0) {
				close(ready[0]);
				close(go[1]);
				binder(
				    fx->url, cid[i], serial, ready[1], go[0]);
			}
		}
		close(ready[1]);
		close(go[0]);
		for (i = 0; i < 2; i++)
			assert_int_equal(read(ready[0], &c, 1), 1);
		close(go[1]);
		close(ready[0]);
		wins = losses = 0;
		for (i = 0; i < 2; i++) {
			assert_int_equal(waitpid(pid[i], &wst, 0), pid[i]);
			assert_true(WIFEXITED(wst));
			k = WEXITSTATUS(wst);
			if (k == 10)
				wins++;
			else if (k == 11)
				losses++;
		}
		if (wins != 1 || losses != 1)
			fail_msg("round %d: %d bound, %d refused", round, wins,
			    losses);
	}
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
/* Every back end. */
#define COMMON_TESTS                                                           \
	T(test_store_token_insert_get), T(test_store_token_exists),            \
	    T(test_store_token_not_found), T(test_store_token_bad_args),       \
	    T(test_store_token_set_drift),                                     \
	    T(test_store_token_list_unassigned),                               \
	    T(test_store_contract_insert_get),                                 \
	    T(test_store_contract_exists_not_found),                           \
	    T(test_store_contract_insert_refuses_bound),                       \
	    T(test_store_contract_setters), T(test_store_bind_ok),             \
	    T(test_store_bind_guards), T(test_store_one_token_per_contract),   \
	    T(test_store_bind_migrated), T(test_store_contract_list_rehash),   \
	    T(test_store_one_contract_per_token),                              \
	    T(test_store_unbind_frees_token),                                  \
	    T(test_store_close_refused_while_bound),                           \
	    T(test_store_fail_locks_at_threshold),                             \
	    T(test_store_fail_threshold_zero_never_locks),                     \
	    T(test_store_unlock_resets), T(test_store_accept_step_cas),        \
	    T(test_store_use_step_disabled),                                   \
	    T(test_store_contract_list_token_disable),                         \
	    T(test_store_state_use_replay_purge),                              \
	    T(test_store_state_use_after_purge_ahead),                         \
	    T(test_store_audit_add_list), T(test_store_nested_operations),     \
	    T(test_store_upgrade_from_v1), T(test_store_upgrade_from_v2),      \
	    T(test_store_nested_insert_refused),                               \
	    T(test_store_dialects_complete),                                   \
	    T(test_store_locks_need_a_transaction),                            \
	    T(test_store_contract_lock_token),                                 \
	    T(test_store_lock_held_is_unavailable),                            \
	    T(test_store_reopen_keeps_data),                                   \
	    T(test_store_open_unsupported_url), T(test_store_pg_unreachable),  \
	    T(test_store_pg_malformed_url), T(test_store_url_redact),          \
	    T(test_store_errmsg_names_operation),                              \
	    T(test_store_race_accept_step), T(test_store_race_bind),           \
	    T(test_store_race_state_purge), T(test_store_probe)
	const struct CMUnitTest sqlite_tests[] = {
	    COMMON_TESTS,
	    T(test_store_file_mode_0600),
	    T(test_store_open_missing_file),
	    T(test_store_open_relative_path),
	    T(test_store_open_corrupt_file),
	    T(test_store_open_empty_file_needs_init),
	    T(test_store_open_readonly_file),
	    T(test_store_open_other_schema_version),
	    T(test_store_header_stamp),
	    T(test_store_wal_persists_bounded),
	    T(test_store_killed_after_accept_keeps_mark),
	    T(test_store_open_foreign_db),
	    T(test_store_deleted_while_open),
	    T(test_store_replaced_file_heals),
	    T(test_store_sqlite_read_only_probe),
	};
	const struct CMUnitTest pg_tests[] = {
	    COMMON_TESTS,
	    T(test_store_pg_empty_needs_init),
	    T(test_store_pg_other_schema_version),
	    T(test_store_pg_foreign_db),
	    T(test_store_pg_connection_lost),
	    T(test_store_pg_heal_waits_for_server),
	    T(test_store_pg_multi_host),
	    T(test_store_pg_commit_deadline),
	    T(test_store_pg_commit_warning_refused),
	    T(test_store_pg_read_only),
	};
#undef COMMON_TESTS
#undef T

	if (pg_url() != NULL)
		return cmocka_run_group_tests_name(
		    "store_pg", pg_tests, NULL, NULL);
	return cmocka_run_group_tests_name(
	    "store_sqlite", sqlite_tests, NULL, NULL);
}

/*
 * store_sqlite.c - the SQLite back end of the store ("sqlite:/abs/path").
 *
 * One handle per thread (SQLITE_OPEN_NOMUTEX): radiusd keeps one per
 * worker, PAM and the CLI one per call. Several processes share the file;
 * SQLite's file locks serialise their writers, and every read-then-write
 * operation starts with BEGIN IMMEDIATE so that it takes the write lock
 * before it reads (in WAL mode a deferred transaction that later wants to
 * write can fail with SQLITE_BUSY without waiting). A writer that cannot
 * get the lock within the busy timeout gets SOTP_ERR_STORE_UNAVAILABLE.
 *
 * Statements are prepared once per handle, on first use, and kept: every
 * authentication runs several of them, and parsing SQL on each call would
 * cost more than the queries. A statement is reset and its bindings cleared
 * before the operation that used it returns, so no pointer into the
 * caller's memory outlives the call.
 *
 * The file holds no plaintext secret (token secrets and cards arrive
 * sealed), but it does hold replay marks and failure counts: it is created
 * 0600 and written with synchronous=FULL so a committed accept or failure
 * survives a power cut.
 *
 * A file unlinked or replaced while a handle is open keeps working through
 * the open descriptor as far as SQLite is concerned; another process would
 * then see a different (or no) database, and a code accepted here would be
 * accepted there again. So every operation first asks SQLite whether the
 * file has moved (one stat) and fails closed with
 * SOTP_ERR_STORE_UNAVAILABLE if it has; the caller must reopen.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sotp_int.h"
#include "store_int.h"

#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 5000

/*
 * Version 1 of the schema. The UNIQUE on contracts.serial is what makes a
 * binding one-to-one: one token per contract (the column holds one value)
 * and one contract per token (no two rows hold the same serial). The token
 * side of the binding is derived by joining, so the two can never disagree.
 * STRICT makes SQLite refuse a value of the wrong type instead of storing
 * it as given.
 */
static const char schema_sql[] =
    "CREATE TABLE schema_version ("
    " version INTEGER NOT NULL) STRICT;"
    "CREATE TABLE tokens ("
    " serial TEXT PRIMARY KEY,"
    " kind TEXT,"
    " secret BLOB NOT NULL,"
    " algorithm INTEGER,"
    " digits INTEGER,"
    " period INTEGER,"
    " last_step INTEGER NOT NULL DEFAULT -1,"
    " drift INTEGER NOT NULL DEFAULT 0,"
    " disabled INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER) STRICT;"
    "CREATE TABLE contracts ("
    " id TEXT PRIMARY KEY,"
    " pwhash TEXT NOT NULL,"
    " login INTEGER NOT NULL,"
    " serial TEXT UNIQUE REFERENCES tokens(serial),"
    " card BLOB,"
    " failures INTEGER NOT NULL DEFAULT 0,"
    " locked_until INTEGER NOT NULL DEFAULT 0,"
    " closed INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER) STRICT;"
    "CREATE TABLE audit ("
    " id INTEGER PRIMARY KEY,"
    " ts INTEGER,"
    " action TEXT,"
    " contract TEXT,"
    " serial TEXT,"
    " context TEXT,"
    " verdict TEXT,"
    " reason INTEGER,"
    " detail TEXT) STRICT;"
    "CREATE INDEX audit_contract_ts ON audit(contract, ts);"
    "CREATE INDEX audit_ts ON audit(ts);"
    "CREATE TABLE used_states ("
    " id BLOB PRIMARY KEY,"
    " expires INTEGER) STRICT;"
    /* state_use purges by expiry on every call. */
    "CREATE INDEX used_states_expires ON used_states(expires);"
    "INSERT INTO schema_version(version) VALUES (1);";

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_TOKEN_GET,
	S_TOKEN_INSERT,
	S_TOKEN_LIST,
	S_TOKEN_LIST_FREE,
	S_TOKEN_SET_DRIFT,
	S_TOKEN_SET_STEP,
	S_CONTRACT_GET,
	S_CONTRACT_INSERT,
	S_CONTRACT_SET_PASSWORD,
	S_CONTRACT_SET_LOGIN,
	S_CONTRACT_SET_CARD,
	S_CONTRACT_UNLOCK,
	S_CONTRACT_UNLOCK_EXPIRED,
	S_CONTRACT_CLOSE,
	S_CONTRACT_RESET_FAILURES,
	S_CONTRACT_FAIL,
	S_CONTRACT_BIND,
	S_CONTRACT_UNBIND,
	S_ACCEPT_STEP,
	S_STATE_HORIZON,
	S_STATE_PURGE,
	S_STATE_INSERT,
	S_AUDIT_ADD,
	S_AUDIT_LIST,
	S_AUDIT_LIST_CONTRACT,
	S_COUNT
};

/* Column order shared by read_token() and every token query. */
#define TOKEN_SELECT                                                           \
	"SELECT t.serial, t.kind, t.secret, t.algorithm, t.digits,"            \
	" t.period, t.last_step, t.drift, t.disabled, t.created, c.id"         \
	" FROM tokens t LEFT JOIN contracts c ON c.serial = t.serial"
#define CONTRACT_SELECT                                                        \
	"SELECT id, pwhash, login, serial, card, failures, locked_until,"      \
	" closed, created FROM contracts"
#define AUDIT_SELECT                                                           \
	"SELECT id, ts, action, contract, serial, context, verdict, reason,"   \
	" detail FROM audit"

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_TOKEN_GET] = TOKEN_SELECT " WHERE t.serial = ?1",
    [S_TOKEN_INSERT] = "INSERT INTO tokens (serial, kind, secret,"
                       " algorithm, digits, period, last_step, drift,"
                       " disabled, created)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_TOKEN_LIST] = TOKEN_SELECT " ORDER BY t.serial",
    [S_TOKEN_LIST_FREE] = TOKEN_SELECT " WHERE c.id IS NULL"
                                       " ORDER BY t.serial",
    [S_TOKEN_SET_DRIFT] = "UPDATE tokens SET drift = ?2 WHERE serial = ?1",
    [S_TOKEN_SET_STEP] = "UPDATE tokens SET last_step = ?2, drift = ?3"
                         " WHERE serial = ?1",
    [S_CONTRACT_GET] = CONTRACT_SELECT " WHERE id = ?1",
    [S_CONTRACT_INSERT] = "INSERT INTO contracts (id, pwhash, login,"
                          " card, failures, locked_until, closed, created)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_CONTRACT_SET_PASSWORD] = "UPDATE contracts SET pwhash = ?2"
                                " WHERE id = ?1",
    [S_CONTRACT_SET_LOGIN] = "UPDATE contracts SET login = ?2"
                             " WHERE id = ?1",
    [S_CONTRACT_SET_CARD] = "UPDATE contracts SET card = ?2 WHERE id = ?1",
    [S_CONTRACT_UNLOCK] = "UPDATE contracts SET failures = 0,"
                          " locked_until = 0 WHERE id = ?1",
    [S_CONTRACT_UNLOCK_EXPIRED] = "UPDATE contracts SET failures = 0,"
                                  " locked_until = 0 WHERE id = ?1"
                                  " AND locked_until = ?2",
    [S_CONTRACT_CLOSE] = "UPDATE contracts SET closed = 1 WHERE id = ?1",
    [S_CONTRACT_RESET_FAILURES] = "UPDATE contracts SET failures = 0"
                                  " WHERE id = ?1",
    /*
     * ">=" rather than "=": a contract whose timed lock has run out but
     * whose count was not reset locks again on its next failure.
     */
    [S_CONTRACT_FAIL] = "UPDATE contracts SET failures = failures + 1,"
                        " locked_until = CASE WHEN ?2 > 0 AND"
                        " failures + 1 >= ?2 THEN ?3 ELSE locked_until END"
                        " WHERE id = ?1 RETURNING failures, locked_until",
    [S_CONTRACT_BIND] = "UPDATE contracts SET serial = ?2, login = ?3,"
                        " failures = 0 WHERE id = ?1",
    [S_CONTRACT_UNBIND] = "UPDATE contracts SET serial = NULL"
                          " WHERE id = ?1",
    /* The replay guard: only a strictly newer step moves last_step. */
    [S_ACCEPT_STEP] = "UPDATE tokens SET last_step = ?2, drift = ?3"
                      " WHERE serial = ?1 AND last_step < ?2",
    /*
     * The row with the one-byte id X'00' (a state id has 16) holds the
     * highest expiry ever purged; sq_state_use explains why.
     */
    [S_STATE_HORIZON] = "INSERT INTO used_states (id, expires)"
                        " SELECT X'00', m FROM (SELECT max(expires) AS m"
                        " FROM used_states WHERE expires < ?1"
                        " AND id <> X'00') WHERE m IS NOT NULL"
                        " ON CONFLICT (id) DO UPDATE"
                        " SET expires = max(expires, excluded.expires)",
    [S_STATE_PURGE] = "DELETE FROM used_states WHERE expires < ?1"
                      " AND id <> X'00'",
    [S_STATE_INSERT] = "INSERT OR IGNORE INTO used_states (id, expires)"
                       " SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1"
                       " FROM used_states WHERE id = X'00'"
                       " AND expires >= ?2)",
    [S_AUDIT_ADD] = "INSERT INTO audit (ts, action, contract, serial,"
                    " context, verdict, reason, detail)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    /* Two statements so each can use its own index. */
    [S_AUDIT_LIST] = AUDIT_SELECT " WHERE ts >= ?1 AND ts <= ?2"
                                  " ORDER BY ts, id",
    [S_AUDIT_LIST_CONTRACT] = AUDIT_SELECT " WHERE contract = ?3 AND"
                                           " ts >= ?1 AND ts <= ?2"
                                           " ORDER BY ts, id",
};

struct sqlite_be {
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	char path[PATH_MAX];
	int depth;          /* open transaction levels (savepoints inside) */
	int just_committed; /* the innermost level was just committed */
};

static struct sqlite_be *
be(const struct sotp_store *st)
{
	return st->be;
}

/*
 * Maps an (extended) SQLite result code to ours. Anything that means the
 * database cannot be used as it stands (locked past the timeout, file gone,
 * unreadable, read-only, corrupt, disk full) is "unavailable", which the
 * front ends report as a service outage rather than a wrong input.
 */
static int
map_rc(int sqlrc)
{
	switch (sqlrc & 0xff) {
	case SQLITE_NOMEM:
		return SOTP_ERR_NOMEM;
	case SQLITE_CONSTRAINT:
		if (sqlrc == SQLITE_CONSTRAINT_PRIMARYKEY ||
		    sqlrc == SQLITE_CONSTRAINT_UNIQUE)
			return SOTP_ERR_EXISTS;
		return SOTP_ERR_STORE;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_CANTOPEN:
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
	case SQLITE_IOERR:
	case SQLITE_READONLY:
	case SQLITE_FULL:
	case SQLITE_PERM:
	case SQLITE_PROTOCOL:
	case SQLITE_NOLFS:
	case SQLITE_AUTH:
		return SOTP_ERR_STORE_UNAVAILABLE;
	default:
		return SOTP_ERR_STORE;
	}
}

/* Records a failed SQLite call of operation op and returns our code. */
static int
db_fail(struct sotp_store *st, const char *op, int sqlrc)
{
	struct sqlite_be *b = be(st);

	sotp_store_seterr(st, "sqlite %s: %s: %s", b->path, op,
	    b->db != NULL ? sqlite3_errmsg(b->db) : sqlite3_errstr(sqlrc));
	return map_rc(sqlrc);
}

/* A row that breaks the schema's promises (bad type, oversize value). */
static int
corrupt(struct sotp_store *st, const char *op, const char *column)
{
	sotp_store_seterr(st, "sqlite %s: %s: bad value in column %s",
	    be(st)->path, op, column);
	return SOTP_ERR_STORE;
}

/* The cached statement id, prepared on first use. */
static int
stmt(struct sotp_store *st, enum stmt_id id, const char *op, sqlite3_stmt **out)
{
	struct sqlite_be *b = be(st);
	int sqlrc;

	*out = NULL;
	if (b->stmt[id] == NULL) {
		sqlrc = sqlite3_prepare_v3(b->db, stmt_sql[id], -1,
		    SQLITE_PREPARE_PERSISTENT, &b->stmt[id], NULL);
		if (sqlrc != SQLITE_OK)
			return db_fail(st, op, sqlrc);
	}
	*out = b->stmt[id];
	return SOTP_OK;
}

/* Makes a statement reusable and drops its pointers into our caller. */
static void
done(sqlite3_stmt *s)
{
	if (s == NULL)
		return;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/*
 * Binding helpers. Values are bound SQLITE_STATIC: each statement runs to
 * completion and is cleared before the caller's buffers can go away.
 */
static int
bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

static int
bind_blob(sqlite3_stmt *s, int i, const void *v, size_t len)
{
	if (len == 0)
		return sqlite3_bind_null(s, i);
	return sqlite3_bind_blob(s, i, v, (int)len, SQLITE_STATIC);
}

/* Runs a statement that returns no row. */
static int
run(struct sotp_store *st, sqlite3_stmt *s, const char *op)
{
	int sqlrc;

	if ((sqlrc = sqlite3_step(s)) != SQLITE_DONE && sqlrc != SQLITE_ROW)
		return db_fail(st, op, sqlrc);
	return SOTP_OK;
}

/* Runs a cached statement with no parameters (BEGIN, COMMIT, ...). */
static int
run_id(struct sotp_store *st, enum stmt_id id, const char *op)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = stmt(st, id, op, &s)) == SOTP_OK)
		rc = run(st, s, op);
	done(s);
	return rc;
}

/*
 * Undoes the innermost open level: the whole transaction, or the savepoint
 * of an operation run inside a caller's transaction (sotp_store_begin), so
 * that a refused inner operation never discards the caller's work. A no-op
 * right after that level committed, so every operation can end with it.
 * Errors are ignored: the operation has failed already and says why.
 */
static void
rollback(struct sotp_store *st)
{
	struct sqlite_be *b = be(st);
	sqlite3_stmt *s = NULL;

	if (b->just_committed) {
		b->just_committed = 0;
		return;
	}
	/* SQLite rolls back by itself on some I/O and full-disk errors. */
	if (sqlite3_get_autocommit(b->db)) {
		b->depth = 0;
		return;
	}
	if (b->depth > 1) {
		(void)sqlite3_exec(
		    b->db, "ROLLBACK TO sotp; RELEASE sotp", NULL, NULL, NULL);
		b->depth--;
		return;
	}
	b->depth = 0;
	if (stmt(st, S_ROLLBACK, "rollback", &s) == SOTP_OK)
		sqlite3_step(s);
	done(s);
}

/*
 * The check at the top of every operation: fail closed when the file this
 * handle reads is no longer the file at its path (see the head comment).
 */
static int
check_file(struct sotp_store *st, const char *op)
{
	struct sqlite_be *b = be(st);
	int moved = 0;
	int sqlrc;

	sqlrc =
	    sqlite3_file_control(b->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved);
	if (sqlrc != SQLITE_OK)
		return db_fail(st, op, sqlrc);
	if (moved) {
		sotp_store_seterr(st,
		    "sqlite %s: %s: database file was removed or replaced while open",
		    b->path, op);
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	return SOTP_OK;
}

/*
 * Opens a write transaction after check_file, or a savepoint when the
 * caller already holds one: the engine groups a decision's state change
 * and its audit row into one transaction, one commit, one fsync.
 */
static int
begin(struct sotp_store *st, const char *op)
{
	struct sqlite_be *b = be(st);
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	b->just_committed = 0;
	if (b->depth > 0 && !sqlite3_get_autocommit(b->db)) {
		sqlrc = sqlite3_exec(b->db, "SAVEPOINT sotp", NULL, NULL, NULL);
		if (sqlrc != SQLITE_OK)
			return db_fail(st, op, sqlrc);
	} else {
		b->depth = 0;
		if ((rc = run_id(st, S_BEGIN, op)) != SOTP_OK)
			return rc;
	}
	b->depth++;
	return SOTP_OK;
}

/* Commits the innermost level; on failure the caller rolls back. */
static int
commit(struct sotp_store *st, const char *op)
{
	struct sqlite_be *b = be(st);
	int rc, sqlrc;

	if (b->depth > 1) {
		sqlrc = sqlite3_exec(b->db, "RELEASE sotp", NULL, NULL, NULL);
		if (sqlrc != SQLITE_OK)
			return db_fail(st, op, sqlrc);
	} else if ((rc = run_id(st, S_COMMIT, op)) != SOTP_OK)
		return rc;
	b->depth--;
	b->just_committed = 1;
	return SOTP_OK;
}

/* ---- Row readers ---- */

/* Copies a TEXT (or NULL, as "") column into dst[dstsz]. */
static int
col_text(sqlite3_stmt *s, int col, char *dst, size_t dstsz)
{
	const unsigned char *t;
	int n;

	dst[0] = '\0';
	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return 0;
	if (sqlite3_column_type(s, col) != SQLITE_TEXT ||
	    (t = sqlite3_column_text(s, col)) == NULL)
		return -1;
	n = sqlite3_column_bytes(s, col);
	if (n < 0 || (size_t)n >= dstsz || memchr(t, '\0', (size_t)n) != NULL)
		return -1;
	memcpy(dst, t, (size_t)n);
	dst[n] = '\0';
	return 0;
}

/* Copies a BLOB (or NULL, as length 0) column into dst[dstsz]. */
static int
col_blob(sqlite3_stmt *s, int col, uint8_t *dst, size_t dstsz, size_t *len)
{
	const void *p;
	int n;

	*len = 0;
	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return 0;
	if (sqlite3_column_type(s, col) != SQLITE_BLOB)
		return -1;
	n = sqlite3_column_bytes(s, col);
	if (n <= 0 || (size_t)n > dstsz ||
	    (p = sqlite3_column_blob(s, col)) == NULL)
		return -1;
	memcpy(dst, p, (size_t)n);
	*len = (size_t)n;
	return 0;
}

/* An INTEGER column within [min, max]; NULL reads as 0. */
static int
col_int(sqlite3_stmt *s, int col, int64_t min, int64_t max, int64_t *out)
{
	int64_t v;

	*out = 0;
	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return min <= 0 && 0 <= max ? 0 : -1;
	if (sqlite3_column_type(s, col) != SQLITE_INTEGER)
		return -1;
	v = sqlite3_column_int64(s, col);
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Fills t from the current row of a TOKEN_SELECT statement. */
static int
row_token(struct sotp_store *st, sqlite3_stmt *s, const char *op,
    struct sotp_token_rec *t)
{
	int64_t v;

	memset(t, 0, sizeof(*t));
	if (col_text(s, 0, t->serial, sizeof(t->serial)) != 0)
		return corrupt(st, op, "serial");
	if (col_text(s, 1, t->kind, sizeof(t->kind)) != 0)
		return corrupt(st, op, "kind");
	if (col_blob(s, 2, t->secret, sizeof(t->secret), &t->secret_len) != 0 ||
	    t->secret_len == 0)
		return corrupt(st, op, "secret");
	if (col_int(s, 3, SOTP_ALG_SHA1, SOTP_ALG_SHA512, &v) != 0)
		return corrupt(st, op, "algorithm");
	t->alg = (enum sotp_alg)v;
	if (col_int(s, 4, 0, UINT_MAX, &v) != 0)
		return corrupt(st, op, "digits");
	t->digits = (unsigned int)v;
	if (col_int(s, 5, 0, UINT_MAX, &v) != 0)
		return corrupt(st, op, "period");
	t->period = (unsigned int)v;
	if (col_int(s, 6, -1, INT64_MAX, &t->last_step) != 0)
		return corrupt(st, op, "last_step");
	if (col_int(s, 7, INT_MIN, INT_MAX, &v) != 0)
		return corrupt(st, op, "drift");
	t->drift = (int)v;
	if (col_int(s, 8, 0, 1, &v) != 0)
		return corrupt(st, op, "disabled");
	t->disabled = (int)v;
	if (col_int(s, 9, INT64_MIN, INT64_MAX, &t->created) != 0)
		return corrupt(st, op, "created");
	if (col_text(s, 10, t->contract, sizeof(t->contract)) != 0)
		return corrupt(st, op, "contracts.id");
	return SOTP_OK;
}

/* Fills c from the current row of a CONTRACT_SELECT statement. */
static int
row_contract(struct sotp_store *st, sqlite3_stmt *s, const char *op,
    struct sotp_contract_rec *c)
{
	int64_t v;

	memset(c, 0, sizeof(*c));
	if (col_text(s, 0, c->id, sizeof(c->id)) != 0)
		return corrupt(st, op, "id");
	if (col_text(s, 1, c->pwhash, sizeof(c->pwhash)) != 0)
		return corrupt(st, op, "pwhash");
	if (col_int(s, 2, SOTP_LOGIN_NONE, SOTP_LOGIN_CARD, &v) != 0)
		return corrupt(st, op, "login");
	c->login = (enum sotp_login)v;
	if (col_text(s, 3, c->serial, sizeof(c->serial)) != 0)
		return corrupt(st, op, "serial");
	if (col_blob(s, 4, c->card, sizeof(c->card), &c->card_len) != 0)
		return corrupt(st, op, "card");
	if (col_int(s, 5, 0, UINT_MAX, &v) != 0)
		return corrupt(st, op, "failures");
	c->failures = (unsigned int)v;
	if (col_int(s, 6, -1, INT64_MAX, &c->locked_until) != 0)
		return corrupt(st, op, "locked_until");
	if (col_int(s, 7, 0, 1, &v) != 0)
		return corrupt(st, op, "closed");
	c->closed = (int)v;
	if (col_int(s, 8, INT64_MIN, INT64_MAX, &c->created) != 0)
		return corrupt(st, op, "created");
	return SOTP_OK;
}

/* Decodes the current row of s into a record. */
typedef int row_fn(
    struct sotp_store *st, sqlite3_stmt *s, const char *op, void *out);

static int
row_token_fn(struct sotp_store *st, sqlite3_stmt *s, const char *op, void *out)
{
	return row_token(st, s, op, out);
}

static int
row_contract_fn(
    struct sotp_store *st, sqlite3_stmt *s, const char *op, void *out)
{
	return row_contract(st, s, op, out);
}

/* One row by key: SOTP_OK, SOTP_ERR_NOT_FOUND or an error. */
static int
read_one(struct sotp_store *st, const char *op, enum stmt_id id,
    const char *key, row_fn *row, void *out)
{
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = stmt(st, id, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_text(s, 1, key)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	switch ((sqlrc = sqlite3_step(s))) {
	case SQLITE_ROW:
		rc = row(st, s, op, out);
		break;
	case SQLITE_DONE:
		rc = SOTP_ERR_NOT_FOUND;
		break;
	default:
		rc = db_fail(st, op, sqlrc);
		break;
	}
out:
	done(s);
	return rc;
}

static int
read_token(struct sotp_store *st, const char *op, const char *serial,
    struct sotp_token_rec *out)
{
	return read_one(st, op, S_TOKEN_GET, serial, row_token_fn, out);
}

static int
read_contract(struct sotp_store *st, const char *op, const char *id,
    struct sotp_contract_rec *out)
{
	return read_one(st, op, S_CONTRACT_GET, id, row_contract_fn, out);
}

/*
 * Runs a one-row UPDATE keyed by id (?1) with an optional second value
 * already bound by the caller; SOTP_ERR_NOT_FOUND if no row matched.
 */
static int
update_one(
    struct sotp_store *st, sqlite3_stmt *s, const char *op, const char *id)
{
	struct sqlite_be *b = be(st);
	int rc, sqlrc;

	if ((sqlrc = bind_text(s, 1, id)) != SQLITE_OK)
		return db_fail(st, op, sqlrc);
	if ((rc = run(st, s, op)) != SOTP_OK)
		return rc;
	return sqlite3_changes(b->db) == 1 ? SOTP_OK : SOTP_ERR_NOT_FOUND;
}

/* ---- Open and close ---- */

/* Runs one-off SQL during open (not worth caching). */
static int
exec_sql(struct sotp_store *st, const char *op, const char *sql)
{
	struct sqlite_be *b = be(st);
	int sqlrc;

	if ((sqlrc = sqlite3_exec(b->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
		return db_fail(st, op, sqlrc);
	return SOTP_OK;
}

/* The single integer a one-off query returns (0 if none) in *out. */
static int
query_int(struct sotp_store *st, const char *op, const char *sql, int64_t *out,
    int *rows)
{
	struct sqlite_be *b = be(st);
	sqlite3_stmt *s = NULL;
	int rc = SOTP_ERR_INTERNAL;
	int sqlrc;

	*out = 0;
	*rows = 0;
	if ((sqlrc = sqlite3_prepare_v2(b->db, sql, -1, &s, NULL)) !=
	    SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	while ((sqlrc = sqlite3_step(s)) == SQLITE_ROW) {
		*out = sqlite3_column_int64(s, 0);
		(*rows)++;
	}
	if (sqlrc != SQLITE_DONE) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = SOTP_OK;
out:
	sqlite3_finalize(s);
	return rc;
}

/*
 * Checks (and with create, makes) the schema. Creation runs under
 * BEGIN IMMEDIATE so two `init`s racing make it once. A database that has
 * tables but not ours is refused rather than written into: the URL most
 * likely points at the wrong file.
 */
static int
schema(struct sotp_store *st, int create)
{
	struct sqlite_be *b = be(st);
	int64_t n = 0, version = 0;
	int rows = 0;
	int rc = SOTP_ERR_INTERNAL;

	if (create && (rc = run_id(st, S_BEGIN, "open")) != SOTP_OK)
		goto out;
	if ((rc = query_int(st, "open",
	         "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
	         " AND name = 'schema_version'",
	         &n, &rows)) != SOTP_OK)
		goto out;
	if (n == 0) {
		if (!create) {
			sotp_store_seterr(st,
			    "sqlite %s: no shinkin-otp schema (run \"shinkin-otp init\")",
			    b->path);
			rc = SOTP_ERR_STORE_UNAVAILABLE;
			goto out;
		}
		if ((rc = query_int(st, "open",
		         "SELECT count(*) FROM sqlite_master", &n, &rows)) !=
		    SOTP_OK)
			goto out;
		if (n != 0) {
			sotp_store_seterr(st,
			    "sqlite %s: not a shinkin-otp store (it holds other tables)",
			    b->path);
			rc = SOTP_ERR_STORE_UNAVAILABLE;
			goto out;
		}
		if ((rc = exec_sql(st, "create schema", schema_sql)) != SOTP_OK)
			goto out;
	}
	if ((rc = query_int(st, "open", "SELECT version FROM schema_version",
	         &version, &rows)) != SOTP_OK)
		goto out;
	if (rows != 1 || version != SCHEMA_VERSION) {
		sotp_store_seterr(st,
		    "sqlite %s: schema version %lld (%d rows), this build needs version %d",
		    b->path, (long long)version, rows, SCHEMA_VERSION);
		rc = SOTP_ERR_STORE_UNAVAILABLE;
		goto out;
	}
	if (create && (rc = run_id(st, S_COMMIT, "open")) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK)
		rollback(st);
	return rc;
}

/* Sets WAL and checks SQLite agreed (it silently keeps its mode if not). */
static int
set_wal(struct sotp_store *st)
{
	struct sqlite_be *b = be(st);
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int rc = SOTP_ERR_INTERNAL;
	int sqlrc;

	if ((sqlrc = sqlite3_prepare_v2(b->db, "PRAGMA journal_mode=WAL", -1,
	         &s, NULL)) != SQLITE_OK) {
		rc = db_fail(st, "open", sqlrc);
		goto out;
	}
	if ((sqlrc = sqlite3_step(s)) != SQLITE_ROW) {
		rc = db_fail(st, "open", sqlrc);
		goto out;
	}
	mode = sqlite3_column_text(s, 0);
	if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
		sotp_store_seterr(
		    st, "sqlite %s: cannot use WAL journal mode", b->path);
		rc = SOTP_ERR_STORE_UNAVAILABLE;
		goto out;
	}
	rc = SOTP_OK;
out:
	sqlite3_finalize(s);
	return rc;
}

/*
 * With create, makes the file first with mode 0600 ourselves: SQLite would
 * create it 0644 (less the umask), and we must not depend on the caller's
 * umask for a file of replay marks and sealed secrets. SQLite gives the
 * -wal and -shm files the same mode as the database.
 */
static int
precreate(struct sotp_store *st, const char *path)
{
	int fd;

	fd = open(
	    path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd == -1) {
		if (errno == EEXIST)
			return SOTP_OK;
		sotp_store_seterr(
		    st, "sqlite %s: cannot create: %s", path, strerror(errno));
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	close(fd);
	return SOTP_OK;
}

static int
sq_open(struct sotp_store *st, const char *path, int create)
{
	struct sqlite_be *b = NULL;
	int flags, sqlrc;
	int rc = SOTP_ERR_INTERNAL;

	/*
	 * An absolute path only: PAM and radiusd run with whatever working
	 * directory their host has, and a relative path would silently open
	 * (or with create, make) a different database.
	 */
	if (path[0] != '/') {
		sotp_store_seterr(
		    st, "sqlite store path must be absolute: \"%s\"", path);
		return SOTP_ERR_CONFIG;
	}
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return SOTP_ERR_NOMEM;
	st->be = b;
	if (sotp_strlcpy(b->path, path, sizeof(b->path)) >= sizeof(b->path)) {
		sotp_store_seterr(st, "sqlite store path too long");
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	if (create && (rc = precreate(st, path)) != SOTP_OK)
		goto out;
	flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	if ((sqlrc = sqlite3_open_v2(path, &b->db, flags, NULL)) != SQLITE_OK) {
		sotp_store_seterr(st, "sqlite %s: cannot open: %s", path,
		    b->db != NULL ? sqlite3_errmsg(b->db)
		                  : sqlite3_errstr(sqlrc));
		rc = map_rc(sqlrc);
		goto out;
	}
	sqlite3_extended_result_codes(b->db, 1);
	/* READWRITE quietly falls back to read-only on a write-protected
	 * file; a store that cannot record a used code must not serve. */
	if (sqlite3_db_readonly(b->db, "main") != 0) {
		sotp_store_seterr(st, "sqlite %s: database is read-only", path);
		rc = SOTP_ERR_STORE_UNAVAILABLE;
		goto out;
	}
	if ((sqlrc = sqlite3_busy_timeout(b->db, BUSY_TIMEOUT_MS)) !=
	    SQLITE_OK) {
		rc = db_fail(st, "open", sqlrc);
		goto out;
	}
	/* FULL: a committed replay mark or failure count survives a crash. */
	if ((rc = exec_sql(st, "open",
	         "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL")) != SOTP_OK)
		goto out;
	/* Schema first: a missing or foreign database is not written to. */
	if ((rc = schema(st, create)) != SOTP_OK)
		goto out;
	if ((rc = set_wal(st)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	return rc;
}

static void
sq_close(struct sotp_store *st)
{
	struct sqlite_be *b = be(st);
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < S_COUNT; i++)
		sqlite3_finalize(b->stmt[i]);
	sqlite3_close_v2(b->db);
	free(b);
	st->be = NULL;
}

/* ---- Tokens ---- */

static int
sq_token_get(
    struct sotp_store *st, const char *serial, struct sotp_token_rec *out)
{
	int rc;

	if ((rc = check_file(st, "token_get")) != SOTP_OK)
		return rc;
	return read_token(st, "token_get", serial, out);
}

static int
sq_token_insert(struct sotp_store *st, const struct sotp_token_rec *t)
{
	const char *op = "token_insert";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_TOKEN_INSERT, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_text(s, 1, t->serial)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 2, t->kind)) != SQLITE_OK ||
	    (sqlrc = bind_blob(s, 3, t->secret, t->secret_len)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 4, (int)t->alg)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 5, t->digits)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 6, t->period)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 7, t->last_step)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 8, t->drift)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 9, t->disabled != 0)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 10, t->created)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = run(st, s, op);
	if (rc == SOTP_ERR_EXISTS)
		sotp_store_seterr(st, "token_insert: serial exists");
out:
	done(s);
	return rc;
}

static int
sq_token_list(struct sotp_store *st, int unassigned_only, sotp_token_rec_cb *cb,
    void *arg)
{
	const char *op = "token_list";
	struct sotp_token_rec t;
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, unassigned_only ? S_TOKEN_LIST_FREE : S_TOKEN_LIST,
	         op, &s)) != SOTP_OK)
		goto out;
	while ((sqlrc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((rc = row_token(st, s, op, &t)) != SOTP_OK)
			goto out;
		/* A negative return is an rc to pass on; positive stops. */
		if ((rc = cb(arg, &t)) != 0) {
			if (rc > 0)
				rc = SOTP_OK;
			goto out;
		}
	}
	if (sqlrc != SQLITE_DONE) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = SOTP_OK;
out:
	done(s);
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
sq_token_set_drift(struct sotp_store *st, const char *serial, int drift)
{
	const char *op = "token_set_drift";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_TOKEN_SET_DRIFT, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = sqlite3_bind_int(s, 2, drift)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = update_one(st, s, op, serial);
out:
	done(s);
	return rc;
}

/* ---- Contracts ---- */

static int
sq_contract_get(
    struct sotp_store *st, const char *id, struct sotp_contract_rec *out)
{
	int rc;

	if ((rc = check_file(st, "contract_get")) != SOTP_OK)
		return rc;
	return read_contract(st, "contract_get", id, out);
}

static int
sq_contract_insert(struct sotp_store *st, const struct sotp_contract_rec *c)
{
	const char *op = "contract_insert";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_INSERT, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_text(s, 1, c->id)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 2, c->pwhash)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 3, (int)c->login)) != SQLITE_OK ||
	    (sqlrc = bind_blob(s, 4, c->card, c->card_len)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 5, c->failures)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 6, c->locked_until)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 7, c->closed != 0)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 8, c->created)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = run(st, s, op);
	if (rc == SOTP_ERR_EXISTS)
		sotp_store_seterr(st, "contract_insert: contract exists");
out:
	done(s);
	return rc;
}

static int
sq_contract_set_password(
    struct sotp_store *st, const char *id, const char *pwhash)
{
	const char *op = "contract_set_password";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_SET_PASSWORD, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_text(s, 2, pwhash)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = update_one(st, s, op, id);
out:
	done(s);
	return rc;
}

static int
sq_contract_set_login(
    struct sotp_store *st, const char *id, enum sotp_login login)
{
	const char *op = "contract_set_login";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_SET_LOGIN, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = sqlite3_bind_int(s, 2, (int)login)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = update_one(st, s, op, id);
out:
	done(s);
	return rc;
}

static int
sq_contract_set_card(
    struct sotp_store *st, const char *id, const uint8_t *card, size_t len)
{
	const char *op = "contract_set_card";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_SET_CARD, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_blob(s, 2, card, len)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = update_one(st, s, op, id);
out:
	done(s);
	return rc;
}

static int
sq_contract_unlock(struct sotp_store *st, const char *id)
{
	const char *op = "contract_unlock";
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_UNLOCK, op, &s)) == SOTP_OK)
		rc = update_one(st, s, op, id);
	done(s);
	return rc;
}

/*
 * Ends a timed lock that has run out, only if it is still the lock the
 * caller saw: a newer lock set meanwhile by another process stands.
 */
static int
sq_contract_unlock_expired(struct sotp_store *st, const char *id, int64_t seen)
{
	const char *op = "contract_unlock_expired";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_UNLOCK_EXPIRED, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = sqlite3_bind_int64(s, 2, seen)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = update_one(st, s, op, id);
out:
	done(s);
	return rc;
}

static int
sq_contract_close(struct sotp_store *st, const char *id, int *closed)
{
	const char *op = "contract_close";
	struct sotp_contract_rec c;
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	if ((rc = read_contract(st, op, id, &c)) != SOTP_OK)
		goto out;
	if (c.serial[0] != '\0') {
		/* Still bound: unbinding comes first (DESIGN.md). */
		rc = SOTP_OK;
		goto out;
	}
	if ((rc = stmt(st, S_CONTRACT_CLOSE, op, &s)) != SOTP_OK ||
	    (rc = update_one(st, s, op, id)) != SOTP_OK)
		goto out;
	done(s);
	s = NULL;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*closed = 1;
	rc = SOTP_OK;
out:
	done(s);
	rollback(st);
	sotp_wipe(&c, sizeof(c));
	return rc;
}

/* ---- The authentication path ---- */

static int
sq_accept_step(struct sotp_store *st, const char *serial, const char *contract,
    int64_t step, int drift, int *won)
{
	const char *op = "accept_step";
	struct sqlite_be *b = be(st);
	struct sotp_token_rec t;
	sqlite3_stmt *s = NULL;
	int changed;
	int rc, sqlrc;

	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	/*
	 * The compare-and-set itself: the WHERE clause, not a prior read,
	 * decides, so even without the transaction two callers could not
	 * both move last_step to the same step.
	 */
	if ((rc = stmt(st, S_ACCEPT_STEP, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_text(s, 1, serial)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 2, step)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 3, drift)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	if ((rc = run(st, s, op)) != SOTP_OK)
		goto out;
	changed = sqlite3_changes(b->db);
	done(s);
	s = NULL;
	if (changed != 1) {
		/* Lost, or no such token: only the rare path pays to tell. */
		rc = read_token(st, op, serial, &t);
		goto out;
	}
	if (contract != NULL) {
		if ((rc = stmt(st, S_CONTRACT_RESET_FAILURES, op, &s)) !=
		    SOTP_OK)
			goto out;
		rc = update_one(st, s, op, contract);
		if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
			goto out;
		done(s);
		s = NULL;
	}
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*won = 1;
	rc = SOTP_OK;
out:
	done(s);
	rollback(st);
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
sq_fail(struct sotp_store *st, const char *contract, unsigned int threshold,
    int64_t lock_value, unsigned int *failures, int64_t *locked_until)
{
	const char *op = "fail";
	sqlite3_stmt *s = NULL;
	int64_t n = 0, lock = 0;
	int rc, sqlrc;

	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_FAIL, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_text(s, 1, contract)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 2, threshold)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 3, lock_value)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	switch ((sqlrc = sqlite3_step(s))) {
	case SQLITE_ROW:
		if (col_int(s, 0, 0, UINT_MAX, &n) != 0) {
			rc = corrupt(st, op, "failures");
			goto out;
		}
		if (col_int(s, 1, -1, INT64_MAX, &lock) != 0) {
			rc = corrupt(st, op, "locked_until");
			goto out;
		}
		break;
	case SQLITE_DONE:
		rc = SOTP_ERR_NOT_FOUND;
		goto out;
	default:
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	/* RETURNING rows are produced after the change is made; finish. */
	if ((sqlrc = sqlite3_step(s)) != SQLITE_DONE) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	done(s);
	s = NULL;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*failures = (unsigned int)n;
	*locked_until = lock;
	rc = SOTP_OK;
out:
	done(s);
	rollback(st);
	return rc;
}

static int
sq_reset_failures(struct sotp_store *st, const char *contract)
{
	const char *op = "reset_failures";
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_CONTRACT_RESET_FAILURES, op, &s)) == SOTP_OK)
		rc = update_one(st, s, op, contract);
	done(s);
	return rc;
}

/* Decides whether contract c may take token t at step. */
static enum sotp_bind_result
bind_check(const struct sotp_contract_rec *c, const struct sotp_token_rec *t,
    int64_t step)
{
	if (c->closed)
		return SOTP_BIND_CLOSED;
	if (c->serial[0] != '\0')
		return SOTP_BIND_CONTRACT_HAS_TOKEN;
	if (t->contract[0] != '\0')
		return SOTP_BIND_TOKEN_IN_USE;
	if (t->last_step >= step)
		return SOTP_BIND_REPLAYED;
	return SOTP_BIND_OK;
}

static int
sq_bind(struct sotp_store *st, const char *contract, const char *serial,
    enum sotp_login login, int64_t step, int drift,
    enum sotp_bind_result *result)
{
	const char *op = "bind";
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	memset(&t, 0, sizeof(t));
	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	if ((rc = read_contract(st, op, contract, &c)) != SOTP_OK) {
		if (rc == SOTP_ERR_NOT_FOUND)
			rc = SOTP_OK; /* *result is already NO_CONTRACT */
		goto out;
	}
	if (c.closed || c.serial[0] != '\0') {
		*result = bind_check(&c, &t, step);
		goto out;
	}
	if ((rc = read_token(st, op, serial, &t)) != SOTP_OK) {
		if (rc == SOTP_ERR_NOT_FOUND) {
			*result = SOTP_BIND_NO_TOKEN;
			rc = SOTP_OK;
		}
		goto out;
	}
	if ((*result = bind_check(&c, &t, step)) != SOTP_BIND_OK)
		goto out;
	/* Setting last_step with the binding spends the registration code. */
	if ((rc = stmt(st, S_TOKEN_SET_STEP, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = sqlite3_bind_int64(s, 2, step)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 3, drift)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	if ((rc = update_one(st, s, op, serial)) != SOTP_OK)
		goto out;
	done(s);
	if ((rc = stmt(st, S_CONTRACT_BIND, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_text(s, 2, serial)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 3, (int)login)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	if ((rc = update_one(st, s, op, contract)) != SOTP_OK)
		goto out;
	done(s);
	s = NULL;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	done(s);
	/* A refusal or an error changes nothing: undo what was done. */
	if (rc != SOTP_OK && *result == SOTP_BIND_OK)
		*result = SOTP_BIND_NO_CONTRACT;
	rollback(st);
	sotp_wipe(&c, sizeof(c));
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
sq_unbind(
    struct sotp_store *st, const char *contract, int *unbound, char *serial)
{
	const char *op = "unbind";
	struct sotp_contract_rec c;
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	if ((rc = read_contract(st, op, contract, &c)) != SOTP_OK)
		goto out;
	if (c.serial[0] == '\0') {
		rc = SOTP_OK;
		goto out;
	}
	/*
	 * The token keeps its last_step: if it is bound again, to this
	 * contract or another, codes it has already produced stay spent.
	 */
	if ((rc = stmt(st, S_CONTRACT_UNBIND, op, &s)) != SOTP_OK ||
	    (rc = update_one(st, s, op, contract)) != SOTP_OK)
		goto out;
	done(s);
	s = NULL;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*unbound = 1;
	if (serial != NULL)
		sotp_strlcpy(serial, c.serial, SOTP_ID_MAX);
	rc = SOTP_OK;
out:
	done(s);
	rollback(st);
	sotp_wipe(&c, sizeof(c));
	return rc;
}

/*
 * A mark lives until its state's expiry by the clock of whoever purges:
 * `expires < now`. A clock running ahead (another server of the farm, a
 * step forward and back) purges marks of states that a clock on time
 * still holds valid. So the purge first raises the horizon, the highest
 * expiry it removes, and a state whose expiry is at or below the horizon
 * is never fresh: its mark may be gone. Whatever the clocks do, a state
 * is good once. The horizon moves only as far as expiries really stored,
 * never to the purger's clock itself.
 */
static int
sq_state_use(struct sotp_store *st, const uint8_t *id, int64_t expires,
    int64_t now, int *fresh)
{
	const char *op = "state_use";
	struct sqlite_be *b = be(st);
	sqlite3_stmt *s = NULL;
	int inserted;
	int rc, sqlrc;

	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_STATE_HORIZON, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = sqlite3_bind_int64(s, 1, now)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	if ((rc = run(st, s, op)) != SOTP_OK)
		goto out;
	done(s);
	if ((rc = stmt(st, S_STATE_PURGE, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = sqlite3_bind_int64(s, 1, now)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	if ((rc = run(st, s, op)) != SOTP_OK)
		goto out;
	done(s);
	if ((rc = stmt(st, S_STATE_INSERT, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = bind_blob(s, 1, id, SOTP_STORE_STATE_ID_LEN)) !=
	        SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(s, 2, expires)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	if ((rc = run(st, s, op)) != SOTP_OK)
		goto out;
	inserted = sqlite3_changes(b->db);
	done(s);
	s = NULL;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*fresh = inserted == 1;
	rc = SOTP_OK;
out:
	done(s);
	rollback(st);
	return rc;
}

/* ---- Audit ---- */

static int
sq_audit_add(struct sotp_store *st, const struct sotp_audit_rec *r)
{
	const char *op = "audit_add";
	sqlite3_stmt *s = NULL;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st, S_AUDIT_ADD, op, &s)) != SOTP_OK)
		goto out;
	if ((sqlrc = sqlite3_bind_int64(s, 1, r->ts)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 2, r->action)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 3, r->contract)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 4, r->serial)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 5, r->context)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 6, r->verdict)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int(s, 7, r->reason)) != SQLITE_OK ||
	    (sqlrc = bind_text(s, 8, r->detail)) != SQLITE_OK) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = run(st, s, op);
out:
	done(s);
	return rc;
}

/* A TEXT column as a pointer valid until the next step; NULL reads "". */
static const char *
col_str(sqlite3_stmt *s, int col)
{
	const unsigned char *t;

	if (sqlite3_column_type(s, col) == SQLITE_NULL ||
	    (t = sqlite3_column_text(s, col)) == NULL)
		return "";
	return (const char *)t;
}

static int
sq_audit_list(struct sotp_store *st, const char *contract, int64_t since,
    int64_t until, sotp_audit_cb *cb, void *arg)
{
	const char *op = "audit_list";
	struct sotp_audit_row r;
	sqlite3_stmt *s = NULL;
	int64_t v;
	int rc, sqlrc;

	if ((rc = check_file(st, op)) != SOTP_OK)
		return rc;
	if ((rc = stmt(st,
	         contract != NULL ? S_AUDIT_LIST_CONTRACT : S_AUDIT_LIST, op,
	         &s)) != SOTP_OK)
		goto out;
	/* 0 means "no bound" on either side. */
	if ((sqlrc = sqlite3_bind_int64(
	         s, 1, since != 0 ? since : INT64_MIN)) != SQLITE_OK ||
	    (sqlrc = sqlite3_bind_int64(
	         s, 2, until != 0 ? until : INT64_MAX)) != SQLITE_OK ||
	    (contract != NULL &&
	        (sqlrc = bind_text(s, 3, contract)) != SQLITE_OK)) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	while ((sqlrc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		r.id = sqlite3_column_int64(s, 0);
		r.ts = sqlite3_column_int64(s, 1);
		r.action = col_str(s, 2);
		r.contract = col_str(s, 3);
		r.serial = col_str(s, 4);
		r.context = col_str(s, 5);
		r.verdict = col_str(s, 6);
		if (col_int(s, 7, INT_MIN, INT_MAX, &v) != 0) {
			rc = corrupt(st, op, "reason");
			goto out;
		}
		r.reason = (int)v;
		r.detail = col_str(s, 8);
		if ((rc = cb(arg, &r)) != 0) {
			if (rc > 0)
				rc = SOTP_OK;
			goto out;
		}
	}
	if (sqlrc != SQLITE_DONE) {
		rc = db_fail(st, op, sqlrc);
		goto out;
	}
	rc = SOTP_OK;
out:
	done(s);
	return rc;
}

/* ---- Batches (token import) ---- */

static int
sq_begin(struct sotp_store *st)
{
	return begin(st, "begin");
}

static int
sq_commit(struct sotp_store *st)
{
	int rc;

	if ((rc = commit(st, "commit")) != SOTP_OK)
		rollback(st);
	return rc;
}

static void
sq_rollback(struct sotp_store *st)
{
	/* The caller's own level, even right after an inner commit. */
	be(st)->just_committed = 0;
	rollback(st);
}

const struct sotp_store_ops sotp_store_sqlite_ops = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .token_get = sq_token_get,
    .token_insert = sq_token_insert,
    .token_list = sq_token_list,
    .token_set_drift = sq_token_set_drift,
    .contract_get = sq_contract_get,
    .contract_insert = sq_contract_insert,
    .contract_set_password = sq_contract_set_password,
    .contract_set_login = sq_contract_set_login,
    .contract_set_card = sq_contract_set_card,
    .contract_unlock = sq_contract_unlock,
    .contract_unlock_expired = sq_contract_unlock_expired,
    .contract_close = sq_contract_close,
    .accept_step = sq_accept_step,
    .fail = sq_fail,
    .reset_failures = sq_reset_failures,
    .bind = sq_bind,
    .unbind = sq_unbind,
    .state_use = sq_state_use,
    .audit_add = sq_audit_add,
    .audit_list = sq_audit_list,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
};

/*
 * store_pg.c - the PostgreSQL back end of the store
 * ("postgresql://..." or "postgres://..." URLs, or "postgresql:" followed
 * by a libpq key=value connection string).
 *
 * One connection per handle, like the SQLite back end: radiusd keeps one
 * per worker, PAM and the CLI one per call, and a farm of servers shares
 * the database. Nothing here relies on a lock that only one machine can
 * see: the compare-and-set updates decide in their WHERE clause, and the
 * read-then-write operations (bind, unbind, close) take row locks with
 * SELECT ... FOR UPDATE before they read. READ COMMITTED is enough for
 * that: a statement that waited for a row lock sees the row as the other
 * transaction committed it.
 *
 * Lock order is token, then contract, in every operation that takes both
 * (accept_step updates the token first, bind locks it first), so two
 * servers cannot deadlock over one binding.
 *
 * Statements are prepared once per connection, on first use. Values travel
 * only as parameters (text, or binary for BYTEA) and every result comes
 * back in binary, so no value is ever spliced into SQL or reparsed.
 *
 * A connection that fails, is lost or hits an error that means the server
 * cannot be used as it stands (shutdown, read-only standby, out of space,
 * lock timeout) is SOTP_ERR_STORE_UNAVAILABLE; the caller drops the handle
 * and reopens. Messages name the server by host, port, database and user,
 * never by the connection string, which may hold a password.
 */
#include <dlfcn.h>
#include <endian.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "sotp_int.h"
#include "store_int.h"

#define SCHEMA_VERSION 1
/* The SQLite back end's busy timeout, as a row-lock wait limit. */
#define LOCK_TIMEOUT_MS "5000"
#define CONNECT_TIMEOUT_S "5"
/* Serialises two concurrent `init`s on one database (any fixed key). */
#define SCHEMA_LOCK_KEY "736f7470"

/* Type OIDs from the server's catalog (pg_type.dat); stable forever. */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/*
 * Version 1 of the schema, with the meaning of the SQLite one: every
 * integer is a BIGINT (SQLite's INTEGER is 64 bits), blobs are BYTEA, and
 * the UNIQUE on contracts.serial keeps a binding one-to-one.
 */
static const char schema_sql[] =
    "CREATE TABLE schema_version ("
    " version BIGINT NOT NULL);"
    "CREATE TABLE tokens ("
    " serial TEXT PRIMARY KEY,"
    " kind TEXT,"
    " secret BYTEA NOT NULL,"
    " algorithm BIGINT,"
    " digits BIGINT,"
    " period BIGINT,"
    " last_step BIGINT NOT NULL DEFAULT -1,"
    " drift BIGINT NOT NULL DEFAULT 0,"
    " disabled BIGINT NOT NULL DEFAULT 0,"
    " created BIGINT);"
    "CREATE TABLE contracts ("
    " id TEXT PRIMARY KEY,"
    " pwhash TEXT NOT NULL,"
    " login BIGINT NOT NULL,"
    " serial TEXT UNIQUE REFERENCES tokens(serial),"
    " card BYTEA,"
    " failures BIGINT NOT NULL DEFAULT 0,"
    " locked_until BIGINT NOT NULL DEFAULT 0,"
    " closed BIGINT NOT NULL DEFAULT 0,"
    " created BIGINT);"
    "CREATE TABLE audit ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " ts BIGINT,"
    " action TEXT,"
    " contract TEXT,"
    " serial TEXT,"
    " context TEXT,"
    " verdict TEXT,"
    " reason BIGINT,"
    " detail TEXT);"
    "CREATE INDEX audit_contract_ts ON audit(contract, ts);"
    "CREATE INDEX audit_ts ON audit(ts);"
    "CREATE TABLE used_states ("
    " id BYTEA PRIMARY KEY,"
    " expires BIGINT);"
    "CREATE INDEX used_states_expires ON used_states(expires);"
    "INSERT INTO schema_version(version) VALUES (1);";

enum stmt_id {
	S_TOKEN_GET,
	S_TOKEN_LOCK,
	S_TOKEN_INSERT,
	S_TOKEN_LIST,
	S_TOKEN_LIST_FREE,
	S_TOKEN_SET_DRIFT,
	S_TOKEN_SET_STEP,
	S_CONTRACT_GET,
	S_CONTRACT_LOCK,
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
	S_STATE_PURGE,
	S_STATE_INSERT,
	S_AUDIT_ADD,
	S_AUDIT_LIST,
	S_AUDIT_LIST_CONTRACT,
	S_COUNT
};

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

/*
 * Each statement with its parameter types, one letter per $n: t text,
 * b bytea, i bigint. Declaring them keeps the server from inferring a
 * narrower type from the SQL (a threshold compared with 0 would be int4).
 */
struct stmt_def {
	const char *sql;
	const char *types;
};

static const struct stmt_def stmts[S_COUNT] = {
    [S_TOKEN_GET] = {TOKEN_SELECT " WHERE t.serial = $1", "t"},
    [S_TOKEN_LOCK] = {"SELECT 1 FROM tokens WHERE serial = $1 FOR UPDATE", "t"},
    [S_TOKEN_INSERT] = {"INSERT INTO tokens (serial, kind, secret,"
                        " algorithm, digits, period, last_step, drift,"
                        " disabled, created)"
                        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        "ttbiiiiiii"},
    [S_TOKEN_LIST] = {TOKEN_SELECT " ORDER BY t.serial", ""},
    [S_TOKEN_LIST_FREE] = {TOKEN_SELECT " WHERE c.id IS NULL"
                                        " ORDER BY t.serial",
        ""},
    [S_TOKEN_SET_DRIFT] = {"UPDATE tokens SET drift = $2 WHERE serial = $1",
        "ti"},
    [S_TOKEN_SET_STEP] = {"UPDATE tokens SET last_step = $2, drift = $3"
                          " WHERE serial = $1",
        "tii"},
    [S_CONTRACT_GET] = {CONTRACT_SELECT " WHERE id = $1", "t"},
    [S_CONTRACT_LOCK] = {CONTRACT_SELECT " WHERE id = $1 FOR UPDATE", "t"},
    [S_CONTRACT_INSERT] = {"INSERT INTO contracts (id, pwhash, login,"
                           " card, failures, locked_until, closed, created)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        "ttibiiii"},
    [S_CONTRACT_SET_PASSWORD] = {"UPDATE contracts SET pwhash = $2"
                                 " WHERE id = $1",
        "tt"},
    [S_CONTRACT_SET_LOGIN] = {"UPDATE contracts SET login = $2"
                              " WHERE id = $1",
        "ti"},
    [S_CONTRACT_SET_CARD] = {"UPDATE contracts SET card = $2 WHERE id = $1",
        "tb"},
    [S_CONTRACT_UNLOCK] = {"UPDATE contracts SET failures = 0,"
                           " locked_until = 0 WHERE id = $1",
        "t"},
    [S_CONTRACT_UNLOCK_EXPIRED] = {"UPDATE contracts SET failures = 0,"
                                   " locked_until = 0 WHERE id = $1"
                                   " AND locked_until = $2",
        "ti"},
    [S_CONTRACT_CLOSE] = {"UPDATE contracts SET closed = 1 WHERE id = $1", "t"},
    [S_CONTRACT_RESET_FAILURES] = {"UPDATE contracts SET failures = 0"
                                   " WHERE id = $1",
        "t"},
    /* As in SQLite: ">=" so a run-out lock whose count stayed relocks. */
    [S_CONTRACT_FAIL] = {"UPDATE contracts SET failures = failures + 1,"
                         " locked_until = CASE WHEN $2 > 0 AND"
                         " failures + 1 >= $2 THEN $3 ELSE locked_until END"
                         " WHERE id = $1 RETURNING failures, locked_until",
        "tii"},
    [S_CONTRACT_BIND] = {"UPDATE contracts SET serial = $2, login = $3,"
                         " failures = 0 WHERE id = $1",
        "tti"},
    [S_CONTRACT_UNBIND] = {"UPDATE contracts SET serial = NULL"
                           " WHERE id = $1",
        "t"},
    /* The replay guard: only a strictly newer step moves last_step. */
    [S_ACCEPT_STEP] = {"UPDATE tokens SET last_step = $2, drift = $3"
                       " WHERE serial = $1 AND last_step < $2",
        "tii"},
    /*
     * The row with the one-byte id '\x00' (a state id has 16) holds the
     * highest expiry ever purged, raised by the very rows deleted.
     */
    [S_STATE_PURGE] = {"WITH gone AS (DELETE FROM used_states"
                       " WHERE expires < $1 AND id <> '\\x00'::bytea"
                       " RETURNING expires)"
                       " INSERT INTO used_states (id, expires)"
                       " SELECT '\\x00'::bytea, max(expires) FROM gone"
                       " HAVING count(*) > 0"
                       " ON CONFLICT (id) DO UPDATE SET expires ="
                       " greatest(used_states.expires, excluded.expires)",
        "i"},
    [S_STATE_INSERT] = {"INSERT INTO used_states (id, expires)"
                        " SELECT $1, $2 WHERE NOT EXISTS (SELECT 1"
                        " FROM used_states WHERE id = '\\x00'::bytea"
                        " AND expires >= $2)"
                        " ON CONFLICT (id) DO NOTHING",
        "bi"},
    [S_AUDIT_ADD] = {"INSERT INTO audit (ts, action, contract, serial,"
                     " context, verdict, reason, detail)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        "itttttit"},
    [S_AUDIT_LIST] = {AUDIT_SELECT " WHERE ts >= $1 AND ts <= $2"
                                   " ORDER BY ts, id",
        "ii"},
    [S_AUDIT_LIST_CONTRACT] = {AUDIT_SELECT " WHERE contract = $3 AND"
                                            " ts >= $1 AND ts <= $2"
                                            " ORDER BY ts, id",
        "iit"},
};

#define MAX_PARAMS 10

/*
 * libpq is loaded when a PostgreSQL store is opened, not linked: the PAM
 * module lives in every process that authenticates (sshd, login, su, ...)
 * and should not map libpq and its Kerberos, LDAP and TLS stacks into each
 * of them on a site that uses SQLite. The functions are typed from
 * libpq-fe.h, so a call through the table is checked like a direct one.
 */
#define LIBPQ_SONAME "libpq.so.5"
#define PQ_FUNCS(X)                                                            \
	X(PQconnectdbParams)                                                   \
	X(PQconninfoParse)                                                     \
	X(PQconninfoFree)                                                      \
	X(PQfreemem)                                                           \
	X(PQsetNoticeProcessor)                                                \
	X(PQfinish)                                                            \
	X(PQstatus)                                                            \
	X(PQtransactionStatus)                                                 \
	X(PQerrorMessage)                                                      \
	X(PQhost)                                                              \
	X(PQport)                                                              \
	X(PQdb)                                                                \
	X(PQuser)                                                              \
	X(PQexec)                                                              \
	X(PQprepare)                                                           \
	X(PQexecPrepared)                                                      \
	X(PQresultStatus)                                                      \
	X(PQresultErrorMessage)                                                \
	X(PQresultErrorField)                                                  \
	X(PQclear)                                                             \
	X(PQcmdTuples)                                                         \
	X(PQcmdStatus)                                                         \
	X(PQntuples)                                                           \
	X(PQftype)                                                             \
	X(PQgetisnull)                                                         \
	X(PQgetvalue)                                                          \
	X(PQgetlength)

struct pq_api {
#define PQ_MEMBER(f) __typeof__(f) *f;
	PQ_FUNCS(PQ_MEMBER)
#undef PQ_MEMBER
};

struct pg_be {
	struct pq_api pq;
	void *dl; /* the dlopen handle of libpq */
	PGconn *conn;
	unsigned char prepared[S_COUNT];
	char name[256];     /* "host=... port=... dbname=... user=..." */
	int depth;          /* open transaction levels (savepoints inside) */
	int just_committed; /* the innermost level was just committed */
};

/* The parameters of one statement, pointing into the caller's memory. */
struct params {
	const char *v[MAX_PARAMS];
	int len[MAX_PARAMS];
	int fmt[MAX_PARAMS];
	char num[MAX_PARAMS][24];
	int n;
};

static struct pg_be *
be(const struct sotp_store *st)
{
	return st->be;
}

static void
p_text(struct params *p, const char *s)
{
	p->v[p->n] = s;
	p->len[p->n] = 0;
	p->fmt[p->n] = 0;
	p->n++;
}

static void
p_int(struct params *p, int64_t v)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)v);
	p_text(p, p->num[p->n]);
}

/* len 0 is NULL, as in the SQLite back end. */
static void
p_blob(struct params *p, const void *v, size_t len)
{
	p->v[p->n] = len > 0 ? v : NULL;
	p->len[p->n] = (int)len;
	p->fmt[p->n] = 1;
	p->n++;
}

/* The first line of a libpq message, without its trailing newline. */
static void
first_line(const char *msg, char *out, size_t outsz)
{
	size_t n;

	if (msg == NULL)
		msg = "";
	n = strcspn(msg, "\n");
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, msg, n);
	out[n] = '\0';
}

/*
 * Maps a failed command to our code. A client-side failure (no SQLSTATE)
 * on a dead connection, the connection classes, operator intervention
 * (shutdown), resource exhaustion, lock and statement timeouts, deadlocks,
 * a read-only standby and a missing table all mean the store cannot serve
 * as it stands.
 */
static int
map_state(const struct pq_api *pq, PGconn *conn, const char *state)
{
	if (state == NULL || strlen(state) != 5)
		return pq->PQstatus(conn) == CONNECTION_BAD
		    ? SOTP_ERR_STORE_UNAVAILABLE
		    : SOTP_ERR_STORE;
	if (strcmp(state, "23505") == 0)
		return SOTP_ERR_EXISTS;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 ||
	    strncmp(state, "53", 2) == 0 || strncmp(state, "58", 2) == 0 ||
	    strncmp(state, "40", 2) == 0 || strncmp(state, "28", 2) == 0 ||
	    strcmp(state, "55P03") == 0 || strcmp(state, "25006") == 0 ||
	    strcmp(state, "42P01") == 0 || strcmp(state, "3D000") == 0)
		return SOTP_ERR_STORE_UNAVAILABLE;
	if (pq->PQstatus(conn) == CONNECTION_BAD)
		return SOTP_ERR_STORE_UNAVAILABLE;
	return SOTP_ERR_STORE;
}

/* Records a failed command (res may be NULL) and returns our code. */
static int
db_fail(struct sotp_store *st, const char *op, const PGresult *res)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);
	char msg[256];

	first_line(res != NULL ? pq->PQresultErrorMessage(res) : NULL, msg,
	    sizeof(msg));
	if (msg[0] == '\0')
		first_line(pq->PQerrorMessage(b->conn), msg, sizeof(msg));
	sotp_store_seterr(st, "postgresql %s: %s: %s", b->name, op,
	    msg[0] != '\0' ? msg : "unknown error");
	return map_state(pq, b->conn,
	    res != NULL ? pq->PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
}

/* A row that breaks the schema's promises (bad type, oversize value). */
static int
corrupt(struct sotp_store *st, const char *op, const char *column)
{
	sotp_store_seterr(st, "postgresql %s: %s: bad value in column %s",
	    be(st)->name, op, column);
	return SOTP_ERR_STORE;
}

/* A connection already known dead is refused before it is used. */
static int
check_conn(struct sotp_store *st, const char *op)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);

	if (pq->PQstatus(b->conn) != CONNECTION_OK) {
		sotp_store_seterr(
		    st, "postgresql %s: %s: connection lost", b->name, op);
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	return SOTP_OK;
}

/* Runs SQL without parameters (BEGIN, SAVEPOINT, schema, ...). */
static int
exec_sql(struct sotp_store *st, const char *op, const char *sql)
{
	const struct pq_api *pq = &be(st)->pq;
	PGresult *res;
	int rc = SOTP_OK;

	res = pq->PQexec(be(st)->conn, sql);
	if (res == NULL ||
	    (pq->PQresultStatus(res) != PGRES_COMMAND_OK &&
	        pq->PQresultStatus(res) != PGRES_TUPLES_OK))
		rc = db_fail(st, op, res);
	pq->PQclear(res);
	return rc;
}

/* Prepares statement id on this connection, once. */
static int
prepare(struct sotp_store *st, enum stmt_id id, const char *op)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);
	Oid types[MAX_PARAMS];
	char name[16];
	PGresult *res;
	size_t i, n;
	int rc = SOTP_OK;

	if (b->prepared[id])
		return SOTP_OK;
	n = strlen(stmts[id].types);
	for (i = 0; i < n; i++)
		types[i] = stmts[id].types[i] == 'b' ? OID_BYTEA
		    : stmts[id].types[i] == 'i'      ? OID_INT8
		                                     : OID_TEXT;
	snprintf(name, sizeof(name), "sotp%d", (int)id);
	res = pq->PQprepare(b->conn, name, stmts[id].sql, (int)n, types);
	if (res == NULL || pq->PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = db_fail(st, op, res);
	else
		b->prepared[id] = 1;
	pq->PQclear(res);
	return rc;
}

/*
 * Runs prepared statement id with p; on success *out holds the result
 * (binary columns), to be pq->PQclear()ed by the caller.
 */
static int
exec_stmt(struct sotp_store *st, enum stmt_id id, const char *op,
    const struct params *p, PGresult **out)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);
	char name[16];
	PGresult *res;
	int rc;

	*out = NULL;
	if ((rc = prepare(st, id, op)) != SOTP_OK)
		return rc;
	snprintf(name, sizeof(name), "sotp%d", (int)id);
	res = pq->PQexecPrepared(b->conn, name, p->n, p->v, p->len, p->fmt, 1);
	if (res == NULL ||
	    (pq->PQresultStatus(res) != PGRES_COMMAND_OK &&
	        pq->PQresultStatus(res) != PGRES_TUPLES_OK)) {
		rc = db_fail(st, op, res);
		pq->PQclear(res);
		return rc;
	}
	*out = res;
	return SOTP_OK;
}

/* The number of rows a command changed ("" for a SELECT reads as 0). */
static long
changes(const struct pq_api *pq, PGresult *res)
{
	const char *s = pq->PQcmdTuples(res);

	return s != NULL && s[0] != '\0' ? strtol(s, NULL, 10) : 0;
}

/* Runs a one-row change; SOTP_ERR_NOT_FOUND if no row matched. */
static int
update_one(struct sotp_store *st, enum stmt_id id, const char *op,
    const struct params *p)
{
	const struct pq_api *pq = &be(st)->pq;
	PGresult *res = NULL;
	int rc;

	if ((rc = exec_stmt(st, id, op, p, &res)) != SOTP_OK)
		return rc;
	/* The replay guard's verdict: exactly "1" row, nothing else. */
	rc = strcmp(pq->PQcmdTuples(res), "1") == 0 ? SOTP_OK
	                                            : SOTP_ERR_NOT_FOUND;
	pq->PQclear(res);
	return rc;
}

/*
 * Undoes the innermost open level, as the SQLite back end does: the whole
 * transaction, or the savepoint of an operation run inside a caller's
 * transaction. A no-op right after that level committed. Errors are
 * ignored: the operation has failed already and says why.
 */
static void
rollback(struct sotp_store *st)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);
	PGresult *res;

	if (b->just_committed) {
		b->just_committed = 0;
		return;
	}
	/* Idle: nothing open (or the connection is gone with it). */
	switch (pq->PQtransactionStatus(b->conn)) {
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR:
		break;
	default:
		b->depth = 0;
		return;
	}
	if (b->depth > 1) {
		/* Also clears an aborted state back to the caller's work. */
		res = pq->PQexec(b->conn, "ROLLBACK TO SAVEPOINT sotp");
		pq->PQclear(res);
		res = pq->PQexec(b->conn, "RELEASE SAVEPOINT sotp");
		pq->PQclear(res);
		b->depth--;
		return;
	}
	b->depth = 0;
	res = pq->PQexec(b->conn, "ROLLBACK");
	pq->PQclear(res);
}

/*
 * Opens a transaction, or a savepoint when the caller already holds one:
 * the engine groups a decision's state change and its audit row into one
 * transaction and one commit.
 */
static int
begin(struct sotp_store *st, const char *op)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);
	int rc;

	if ((rc = check_conn(st, op)) != SOTP_OK)
		return rc;
	b->just_committed = 0;
	if (b->depth > 0 && pq->PQtransactionStatus(b->conn) != PQTRANS_IDLE) {
		if ((rc = exec_sql(st, op, "SAVEPOINT sotp")) != SOTP_OK)
			return rc;
	} else {
		b->depth = 0;
		if ((rc = exec_sql(st, op, "BEGIN")) != SOTP_OK)
			return rc;
	}
	b->depth++;
	return SOTP_OK;
}

/* Commits the innermost level; on failure the caller rolls back. */
static int
commit(struct sotp_store *st, const char *op)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);
	PGresult *res;
	int rc;

	if (b->depth > 1) {
		if ((rc = exec_sql(st, op, "RELEASE SAVEPOINT sotp")) !=
		    SOTP_OK)
			return rc;
	} else {
		/*
		 * COMMIT of an aborted transaction "succeeds" as a ROLLBACK;
		 * only the command tag tells them apart.
		 */
		res = pq->PQexec(b->conn, "COMMIT");
		if (res == NULL ||
		    pq->PQresultStatus(res) != PGRES_COMMAND_OK) {
			rc = db_fail(st, op, res);
			pq->PQclear(res);
			return rc;
		}
		if (strcmp(pq->PQcmdStatus(res), "COMMIT") != 0) {
			pq->PQclear(res);
			b->depth = 0;
			sotp_store_seterr(st,
			    "postgresql %s: %s: transaction was rolled back",
			    b->name, op);
			return SOTP_ERR_STORE;
		}
		pq->PQclear(res);
	}
	b->depth--;
	b->just_committed = 1;
	return SOTP_OK;
}

/*
 * A single statement that may fail on a constraint (an insert of an
 * existing key) runs in a savepoint inside a caller's transaction: a
 * PostgreSQL error aborts the whole transaction, where SQLite fails the
 * statement only, and the caller's batch must survive the refusal.
 */
static int
exec_guarded(struct sotp_store *st, enum stmt_id id, const char *op,
    const struct params *p)
{
	const struct pq_api *pq = &be(st)->pq;
	struct pg_be *b = be(st);
	PGresult *res = NULL;
	int nested = b->depth > 0;
	int rc;

	if ((rc = check_conn(st, op)) != SOTP_OK)
		return rc;
	if (nested && (rc = begin(st, op)) != SOTP_OK)
		return rc;
	rc = exec_stmt(st, id, op, p, &res);
	pq->PQclear(res);
	if (nested) {
		if (rc == SOTP_OK)
			rc = commit(st, op);
		if (rc != SOTP_OK)
			rollback(st);
		b->just_committed = 0;
	}
	return rc;
}

/* ---- Row readers (binary results) ---- */

static int
col_text(const struct pq_api *pq, const PGresult *res, int row, int col,
    char *dst, size_t dstsz)
{
	const char *v;
	int n;

	dst[0] = '\0';
	if (pq->PQgetisnull(res, row, col))
		return 0;
	v = pq->PQgetvalue(res, row, col);
	n = pq->PQgetlength(res, row, col);
	if (n < 0 || (size_t)n >= dstsz || memchr(v, '\0', (size_t)n) != NULL)
		return -1;
	memcpy(dst, v, (size_t)n);
	dst[n] = '\0';
	return 0;
}

static int
col_blob(const struct pq_api *pq, const PGresult *res, int row, int col,
    uint8_t *dst, size_t dstsz, size_t *len)
{
	int n;

	*len = 0;
	if (pq->PQgetisnull(res, row, col))
		return 0;
	n = pq->PQgetlength(res, row, col);
	if (n <= 0 || (size_t)n > dstsz)
		return -1;
	memcpy(dst, pq->PQgetvalue(res, row, col), (size_t)n);
	*len = (size_t)n;
	return 0;
}

/* A BIGINT column within [min, max]; NULL reads as 0. */
static int
col_int(const struct pq_api *pq, const PGresult *res, int row, int col,
    int64_t min, int64_t max, int64_t *out)
{
	uint64_t u;
	int64_t v;

	*out = 0;
	if (pq->PQgetisnull(res, row, col))
		return min <= 0 && 0 <= max ? 0 : -1;
	if (pq->PQftype(res, col) != OID_INT8 ||
	    pq->PQgetlength(res, row, col) != 8)
		return -1;
	memcpy(&u, pq->PQgetvalue(res, row, col), sizeof(u));
	u = be64toh(u);
	memcpy(&v, &u, sizeof(v));
	if (v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* A TEXT column as a pointer valid until PQclear; NULL reads "". */
static const char *
col_str(const struct pq_api *pq, const PGresult *res, int row, int col)
{
	if (pq->PQgetisnull(res, row, col))
		return "";
	return pq->PQgetvalue(res, row, col);
}

static int
row_token(struct sotp_store *st, const PGresult *res, int row, const char *op,
    struct sotp_token_rec *t)
{
	const struct pq_api *pq = &be(st)->pq;
	int64_t v;

	memset(t, 0, sizeof(*t));
	if (col_text(pq, res, row, 0, t->serial, sizeof(t->serial)) != 0)
		return corrupt(st, op, "serial");
	if (col_text(pq, res, row, 1, t->kind, sizeof(t->kind)) != 0)
		return corrupt(st, op, "kind");
	if (col_blob(pq, res, row, 2, t->secret, sizeof(t->secret),
	        &t->secret_len) != 0 ||
	    t->secret_len == 0)
		return corrupt(st, op, "secret");
	if (col_int(pq, res, row, 3, SOTP_ALG_SHA1, SOTP_ALG_SHA512, &v) != 0)
		return corrupt(st, op, "algorithm");
	t->alg = (enum sotp_alg)v;
	if (col_int(pq, res, row, 4, 0, UINT_MAX, &v) != 0)
		return corrupt(st, op, "digits");
	t->digits = (unsigned int)v;
	if (col_int(pq, res, row, 5, 0, UINT_MAX, &v) != 0)
		return corrupt(st, op, "period");
	t->period = (unsigned int)v;
	if (col_int(pq, res, row, 6, -1, INT64_MAX, &t->last_step) != 0)
		return corrupt(st, op, "last_step");
	if (col_int(pq, res, row, 7, INT_MIN, INT_MAX, &v) != 0)
		return corrupt(st, op, "drift");
	t->drift = (int)v;
	if (col_int(pq, res, row, 8, 0, 1, &v) != 0)
		return corrupt(st, op, "disabled");
	t->disabled = (int)v;
	if (col_int(pq, res, row, 9, INT64_MIN, INT64_MAX, &t->created) != 0)
		return corrupt(st, op, "created");
	if (col_text(pq, res, row, 10, t->contract, sizeof(t->contract)) != 0)
		return corrupt(st, op, "contracts.id");
	return SOTP_OK;
}

static int
row_contract(struct sotp_store *st, const PGresult *res, int row,
    const char *op, struct sotp_contract_rec *c)
{
	const struct pq_api *pq = &be(st)->pq;
	int64_t v;

	memset(c, 0, sizeof(*c));
	if (col_text(pq, res, row, 0, c->id, sizeof(c->id)) != 0)
		return corrupt(st, op, "id");
	if (col_text(pq, res, row, 1, c->pwhash, sizeof(c->pwhash)) != 0)
		return corrupt(st, op, "pwhash");
	if (col_int(pq, res, row, 2, SOTP_LOGIN_NONE, SOTP_LOGIN_CARD, &v) != 0)
		return corrupt(st, op, "login");
	c->login = (enum sotp_login)v;
	if (col_text(pq, res, row, 3, c->serial, sizeof(c->serial)) != 0)
		return corrupt(st, op, "serial");
	if (col_blob(pq, res, row, 4, c->card, sizeof(c->card), &c->card_len) !=
	    0)
		return corrupt(st, op, "card");
	if (col_int(pq, res, row, 5, 0, UINT_MAX, &v) != 0)
		return corrupt(st, op, "failures");
	c->failures = (unsigned int)v;
	if (col_int(pq, res, row, 6, -1, INT64_MAX, &c->locked_until) != 0)
		return corrupt(st, op, "locked_until");
	if (col_int(pq, res, row, 7, 0, 1, &v) != 0)
		return corrupt(st, op, "closed");
	c->closed = (int)v;
	if (col_int(pq, res, row, 8, INT64_MIN, INT64_MAX, &c->created) != 0)
		return corrupt(st, op, "created");
	return SOTP_OK;
}

/* One row of statement id keyed by key: SOTP_OK or SOTP_ERR_NOT_FOUND. */
static int
read_one(struct sotp_store *st, enum stmt_id id, const char *op,
    const char *key, PGresult **out)
{
	const struct pq_api *pq = &be(st)->pq;
	struct params p = {.n = 0};
	int rc;

	p_text(&p, key);
	if ((rc = exec_stmt(st, id, op, &p, out)) != SOTP_OK)
		return rc;
	if (pq->PQntuples(*out) == 0) {
		pq->PQclear(*out);
		*out = NULL;
		return SOTP_ERR_NOT_FOUND;
	}
	return SOTP_OK;
}

static int
read_token(struct sotp_store *st, const char *op, const char *serial,
    struct sotp_token_rec *out)
{
	const struct pq_api *pq = &be(st)->pq;
	PGresult *res = NULL;
	int rc;

	if ((rc = read_one(st, S_TOKEN_GET, op, serial, &res)) == SOTP_OK)
		rc = row_token(st, res, 0, op, out);
	pq->PQclear(res);
	return rc;
}

/* lock: SELECT ... FOR UPDATE, held until the transaction ends. */
static int
read_contract(struct sotp_store *st, const char *op, const char *id, int lock,
    struct sotp_contract_rec *out)
{
	const struct pq_api *pq = &be(st)->pq;
	PGresult *res = NULL;
	int rc;

	rc =
	    read_one(st, lock ? S_CONTRACT_LOCK : S_CONTRACT_GET, op, id, &res);
	if (rc == SOTP_OK)
		rc = row_contract(st, res, 0, op, out);
	pq->PQclear(res);
	return rc;
}

/* ---- Open and close ---- */

/* The first column of the first row of a text-format query, as a number. */
static int
query_int(struct sotp_store *st, const char *op, const char *sql, int64_t *out,
    int *rows)
{
	const struct pq_api *pq = &be(st)->pq;
	PGresult *res;
	const char *v;
	char *end;
	int rc = SOTP_OK;

	*out = 0;
	*rows = 0;
	res = pq->PQexec(be(st)->conn, sql);
	if (res == NULL || pq->PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = db_fail(st, op, res);
		goto out;
	}
	*rows = pq->PQntuples(res);
	if (*rows > 0 && !pq->PQgetisnull(res, 0, 0)) {
		v = pq->PQgetvalue(res, 0, 0);
		*out = strtoll(v, &end, 10);
		if (end == v || *end != '\0')
			rc = corrupt(st, op, "(query)");
	}
out:
	pq->PQclear(res);
	return rc;
}

/*
 * Checks (and with create, makes) the schema in the connection's current
 * schema. Creation holds an advisory lock so two `init`s make it once. A
 * schema with tables but not ours is refused rather than written into: the
 * URL most likely names the wrong database.
 */
static int
schema(struct sotp_store *st, int create)
{
	struct pg_be *b = be(st);
	int64_t n = 0, version = 0;
	int rows = 0;
	int rc = SOTP_ERR_INTERNAL;

	if ((rc = query_int(st, "open",
	         "SELECT CASE WHEN current_setting('transaction_read_only')"
	         " = 'on' THEN 1 ELSE 0 END",
	         &n, &rows)) != SOTP_OK)
		return rc;
	if (n != 0) {
		sotp_store_seterr(
		    st, "postgresql %s: database is read-only", b->name);
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	if (create && (rc = begin(st, "open")) != SOTP_OK)
		return rc;
	if (create &&
	    (rc = exec_sql(st, "open",
	         "SELECT pg_advisory_xact_lock(x'" SCHEMA_LOCK_KEY
	         "'::bigint)")) != SOTP_OK)
		goto out;
	if ((rc = query_int(st, "open",
	         "SELECT count(*) FROM pg_catalog.pg_tables"
	         " WHERE schemaname = current_schema()"
	         " AND tablename = 'schema_version'",
	         &n, &rows)) != SOTP_OK)
		goto out;
	if (n == 0) {
		if (!create) {
			sotp_store_seterr(st,
			    "postgresql %s: no shinkin-otp schema (run \"shinkin-otp init\")",
			    b->name);
			rc = SOTP_ERR_STORE_UNAVAILABLE;
			goto out;
		}
		if ((rc = query_int(st, "open",
		         "SELECT count(*) FROM pg_catalog.pg_tables"
		         " WHERE schemaname = current_schema()",
		         &n, &rows)) != SOTP_OK)
			goto out;
		if (n != 0) {
			sotp_store_seterr(st,
			    "postgresql %s: not a shinkin-otp store (it holds other tables)",
			    b->name);
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
		    "postgresql %s: schema version %lld (%d rows), this build needs version %d",
		    b->name, (long long)version, rows, SCHEMA_VERSION);
		rc = SOTP_ERR_STORE_UNAVAILABLE;
		goto out;
	}
	if (create && (rc = commit(st, "open")) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	if (create)
		rollback(st);
	return rc;
}

/*
 * Overwrites every occurrence of secret in s (a libpq message could in
 * principle quote the connection string back).
 */
static void
redact(char *s, const char *secret)
{
	size_t n = secret != NULL ? strlen(secret) : 0;
	char *p;

	if (n == 0)
		return;
	while ((p = strstr(s, secret)) != NULL)
		memset(p, '*', n);
}

/*
 * The connection's name for messages: what libpq resolved, never the
 * string it was given (which may carry a password).
 */
static void
set_name(struct pg_be *b)
{
	const struct pq_api *pq = &b->pq;
	const char *host = pq->PQhost(b->conn), *port = pq->PQport(b->conn);
	const char *db = pq->PQdb(b->conn), *user = pq->PQuser(b->conn);

	snprintf(b->name, sizeof(b->name), "host=%s port=%s dbname=%s user=%s",
	    host != NULL && host[0] != '\0' ? host : "(default)",
	    port != NULL && port[0] != '\0' ? port : "(default)",
	    db != NULL ? db : "", user != NULL ? user : "");
}

/*
 * libpq prints server notices to stderr by default; the core never writes
 * to the host's stderr (PAM and radiusd own it), so they are dropped.
 */
static void
ignore_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/*
 * Fills b->pq from libpq, loaded on first use. RTLD_NODELETE keeps it
 * mapped after the last handle closes: unloading a library that holds
 * thread-local state (libpq's Kerberos and TLS dependencies do) under a
 * running host is asking for trouble, and the next open would map it
 * again anyway.
 */
static int
load_libpq(struct sotp_store *st, struct pg_be *b)
{
	const char *missing = NULL;

	b->dl = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (b->dl == NULL) {
		sotp_store_seterr(st, "postgresql: cannot load %s: %s",
		    LIBPQ_SONAME, dlerror());
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
#define PQ_LOAD(f)                                                             \
	if ((*(void **)(void *)&b->pq.f = dlsym(b->dl, #f)) == NULL &&         \
	    missing == NULL)                                                   \
		missing = #f;
	PQ_FUNCS(PQ_LOAD)
#undef PQ_LOAD
	if (missing != NULL) {
		sotp_store_seterr(
		    st, "postgresql: %s lacks %s", LIBPQ_SONAME, missing);
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	return SOTP_OK;
}

static int
pg_open(struct sotp_store *st, const char *target, int create)
{
	const struct pq_api *pq = NULL;
	struct pg_be *b = NULL;
	PQconninfoOption *opts = NULL, *o;
	char *conninfo = NULL, *perr = NULL, *password = NULL;
	const char *keys[4], *vals[4];
	char msg[256];
	size_t n;
	int rc = SOTP_ERR_INTERNAL;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return SOTP_ERR_NOMEM;
	st->be = b;
	snprintf(b->name, sizeof(b->name), "(not connected)");
	if ((rc = load_libpq(st, b)) != SOTP_OK)
		return rc;
	pq = &b->pq;
	/* "//host/db" is a URI whatever its scheme was; else key=value. */
	n = strlen(target) + sizeof("postgresql:");
	if ((conninfo = malloc(n)) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	snprintf(conninfo, n, "%s%s",
	    strncmp(target, "//", 2) == 0 ? "postgresql:" : "", target);
	/*
	 * Parse first, without libpq's message: it quotes the offending
	 * token back, and that token may be (part of) the password.
	 */
	if ((opts = pq->PQconninfoParse(conninfo, &perr)) == NULL) {
		sotp_store_seterr(st, "postgresql store URL is malformed");
		rc = perr == NULL ? SOTP_ERR_NOMEM : SOTP_ERR_CONFIG;
		goto out;
	}
	for (o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL &&
		    (password = strdup(o->val)) == NULL) {
			rc = SOTP_ERR_NOMEM;
			goto out;
		}
	/* Defaults first: a value in the URL overrides them. */
	keys[0] = "connect_timeout";
	vals[0] = CONNECT_TIMEOUT_S;
	keys[1] = "fallback_application_name";
	vals[1] = "shinkin-otp";
	keys[2] = "dbname";
	vals[2] = conninfo;
	keys[3] = NULL;
	vals[3] = NULL;
	if ((b->conn = pq->PQconnectdbParams(keys, vals, 1)) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	pq->PQsetNoticeProcessor(b->conn, ignore_notice, NULL);
	set_name(b);
	redact(b->name, password);
	if (pq->PQstatus(b->conn) != CONNECTION_OK) {
		first_line(pq->PQerrorMessage(b->conn), msg, sizeof(msg));
		redact(msg, password);
		sotp_store_seterr(
		    st, "postgresql %s: cannot connect: %s", b->name, msg);
		rc = SOTP_ERR_STORE_UNAVAILABLE;
		goto out;
	}
	/* Row-lock waits end like SQLite's busy timeout: unavailable. */
	if ((rc = exec_sql(
	         st, "open", "SET lock_timeout = " LOCK_TIMEOUT_MS)) != SOTP_OK)
		goto out;
	if ((rc = schema(st, create)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	if (password != NULL)
		sotp_free_string(password);
	if (conninfo != NULL)
		sotp_free_string(conninfo);
	if (perr != NULL)
		pq->PQfreemem(perr);
	if (opts != NULL) {
		for (o = opts; o->keyword != NULL; o++)
			if (o->val != NULL)
				sotp_wipe(o->val, strlen(o->val));
		pq->PQconninfoFree(opts);
	}
	return rc;
}

static void
pg_close(struct sotp_store *st)
{
	struct pg_be *b = be(st);

	if (b == NULL)
		return;
	if (b->conn != NULL)
		b->pq.PQfinish(b->conn);
	/* RTLD_NODELETE: libpq stays mapped, as a linked library would. */
	if (b->dl != NULL)
		dlclose(b->dl);
	free(b);
	st->be = NULL;
}

/* ---- Tokens ---- */

static int
pg_token_get(
    struct sotp_store *st, const char *serial, struct sotp_token_rec *out)
{
	int rc;

	if ((rc = check_conn(st, "token_get")) != SOTP_OK)
		return rc;
	return read_token(st, "token_get", serial, out);
}

static int
pg_token_insert(struct sotp_store *st, const struct sotp_token_rec *t)
{
	struct params p = {.n = 0};
	int rc;

	p_text(&p, t->serial);
	p_text(&p, t->kind);
	p_blob(&p, t->secret, t->secret_len);
	p_int(&p, (int64_t)t->alg);
	p_int(&p, t->digits);
	p_int(&p, t->period);
	p_int(&p, t->last_step);
	p_int(&p, t->drift);
	p_int(&p, t->disabled != 0);
	p_int(&p, t->created);
	rc = exec_guarded(st, S_TOKEN_INSERT, "token_insert", &p);
	if (rc == SOTP_ERR_EXISTS)
		sotp_store_seterr(st, "token_insert: serial exists");
	return rc;
}

static int
pg_token_list(struct sotp_store *st, int unassigned_only, sotp_token_rec_cb *cb,
    void *arg)
{
	const struct pq_api *pq = &be(st)->pq;
	const char *op = "token_list";
	struct sotp_token_rec t;
	struct params p = {.n = 0};
	PGresult *res = NULL;
	int i, rc;

	memset(&t, 0, sizeof(t));
	if ((rc = check_conn(st, op)) != SOTP_OK)
		return rc;
	if ((rc = exec_stmt(st,
	         unassigned_only ? S_TOKEN_LIST_FREE : S_TOKEN_LIST, op, &p,
	         &res)) != SOTP_OK)
		goto out;
	for (i = 0; i < pq->PQntuples(res); i++) {
		if ((rc = row_token(st, res, i, op, &t)) != SOTP_OK)
			goto out;
		/* A negative return is an rc to pass on; positive stops. */
		if ((rc = cb(arg, &t)) != 0) {
			if (rc > 0)
				rc = SOTP_OK;
			goto out;
		}
	}
	rc = SOTP_OK;
out:
	pq->PQclear(res);
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
pg_token_set_drift(struct sotp_store *st, const char *serial, int drift)
{
	struct params p = {.n = 0};
	int rc;

	if ((rc = check_conn(st, "token_set_drift")) != SOTP_OK)
		return rc;
	p_text(&p, serial);
	p_int(&p, drift);
	return update_one(st, S_TOKEN_SET_DRIFT, "token_set_drift", &p);
}

/* ---- Contracts ---- */

static int
pg_contract_get(
    struct sotp_store *st, const char *id, struct sotp_contract_rec *out)
{
	int rc;

	if ((rc = check_conn(st, "contract_get")) != SOTP_OK)
		return rc;
	return read_contract(st, "contract_get", id, 0, out);
}

static int
pg_contract_insert(struct sotp_store *st, const struct sotp_contract_rec *c)
{
	struct params p = {.n = 0};
	int rc;

	p_text(&p, c->id);
	p_text(&p, c->pwhash);
	p_int(&p, (int64_t)c->login);
	p_blob(&p, c->card, c->card_len);
	p_int(&p, c->failures);
	p_int(&p, c->locked_until);
	p_int(&p, c->closed != 0);
	p_int(&p, c->created);
	rc = exec_guarded(st, S_CONTRACT_INSERT, "contract_insert", &p);
	if (rc == SOTP_ERR_EXISTS)
		sotp_store_seterr(st, "contract_insert: contract exists");
	return rc;
}

/* A one-row UPDATE keyed by id ($1), with an optional second value. */
static int
set_one(struct sotp_store *st, enum stmt_id id, const char *op, const char *key,
    struct params *p)
{
	struct params q = {.n = 0};
	int rc;

	if ((rc = check_conn(st, op)) != SOTP_OK)
		return rc;
	if (p == NULL)
		p = &q;
	/* The key goes first: shift what the caller set up by one. */
	memmove(&p->v[1], &p->v[0], sizeof(p->v[0]) * (size_t)p->n);
	memmove(&p->len[1], &p->len[0], sizeof(p->len[0]) * (size_t)p->n);
	memmove(&p->fmt[1], &p->fmt[0], sizeof(p->fmt[0]) * (size_t)p->n);
	p->v[0] = key;
	p->len[0] = 0;
	p->fmt[0] = 0;
	p->n++;
	return update_one(st, id, op, p);
}

static int
pg_contract_set_password(
    struct sotp_store *st, const char *id, const char *pwhash)
{
	struct params p = {.n = 0};

	p_text(&p, pwhash);
	return set_one(
	    st, S_CONTRACT_SET_PASSWORD, "contract_set_password", id, &p);
}

static int
pg_contract_set_login(
    struct sotp_store *st, const char *id, enum sotp_login login)
{
	struct params p = {.n = 0};

	p_int(&p, (int64_t)login);
	return set_one(st, S_CONTRACT_SET_LOGIN, "contract_set_login", id, &p);
}

static int
pg_contract_set_card(
    struct sotp_store *st, const char *id, const uint8_t *card, size_t len)
{
	struct params p = {.n = 0};

	p_blob(&p, card, len);
	return set_one(st, S_CONTRACT_SET_CARD, "contract_set_card", id, &p);
}

static int
pg_contract_unlock(struct sotp_store *st, const char *id)
{
	return set_one(st, S_CONTRACT_UNLOCK, "contract_unlock", id, NULL);
}

/*
 * Ends a timed lock that has run out, only if it is still the lock the
 * caller saw: a newer lock set meanwhile by another server stands.
 */
static int
pg_contract_unlock_expired(struct sotp_store *st, const char *id, int64_t seen)
{
	struct params p = {.n = 0};

	p_int(&p, seen);
	return set_one(
	    st, S_CONTRACT_UNLOCK_EXPIRED, "contract_unlock_expired", id, &p);
}

static int
pg_contract_close(struct sotp_store *st, const char *id, int *closed)
{
	const char *op = "contract_close";
	struct sotp_contract_rec c;
	struct params p = {.n = 0};
	int rc;

	memset(&c, 0, sizeof(c));
	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	/* Locked: a bind racing with the close waits for our verdict. */
	if ((rc = read_contract(st, op, id, 1, &c)) != SOTP_OK)
		goto out;
	if (c.serial[0] != '\0') {
		/* Still bound: unbinding comes first (DESIGN.md). */
		rc = SOTP_OK;
		goto out;
	}
	p_text(&p, id);
	if ((rc = update_one(st, S_CONTRACT_CLOSE, op, &p)) != SOTP_OK)
		goto out;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*closed = 1;
	rc = SOTP_OK;
out:
	rollback(st);
	sotp_wipe(&c, sizeof(c));
	return rc;
}

/* ---- The authentication path ---- */

static int
pg_accept_step(struct sotp_store *st, const char *serial, const char *contract,
    int64_t step, int drift, int *won)
{
	const char *op = "accept_step";
	struct sotp_token_rec t;
	struct params p = {.n = 0};
	int rc;

	memset(&t, 0, sizeof(t));
	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	/*
	 * The compare-and-set itself: the WHERE clause decides. A racer
	 * that waited on the row lock re-evaluates it against the committed
	 * row and changes nothing, on this server or any other.
	 */
	p_text(&p, serial);
	p_int(&p, step);
	p_int(&p, drift);
	rc = update_one(st, S_ACCEPT_STEP, op, &p);
	if (rc == SOTP_ERR_NOT_FOUND) {
		/* Lost, or no such token: only the rare path pays to tell. */
		rc = read_token(st, op, serial, &t);
		goto out;
	}
	if (rc != SOTP_OK)
		goto out;
	if (contract != NULL) {
		memset(&p, 0, sizeof(p));
		p_text(&p, contract);
		rc = update_one(st, S_CONTRACT_RESET_FAILURES, op, &p);
		if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
			goto out;
	}
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*won = 1;
	rc = SOTP_OK;
out:
	rollback(st);
	sotp_wipe(&t, sizeof(t));
	return rc;
}

/* One statement: the row lock makes the increment atomic across servers. */
static int
pg_fail(struct sotp_store *st, const char *contract, unsigned int threshold,
    int64_t lock_value, unsigned int *failures, int64_t *locked_until)
{
	const struct pq_api *pq = &be(st)->pq;
	const char *op = "fail";
	struct params p = {.n = 0};
	PGresult *res = NULL;
	int64_t n = 0, lock = 0;
	int rc;

	if ((rc = check_conn(st, op)) != SOTP_OK)
		return rc;
	p_text(&p, contract);
	p_int(&p, threshold);
	p_int(&p, lock_value);
	if ((rc = exec_stmt(st, S_CONTRACT_FAIL, op, &p, &res)) != SOTP_OK)
		goto out;
	if (pq->PQntuples(res) != 1) {
		rc = SOTP_ERR_NOT_FOUND;
		goto out;
	}
	if (col_int(pq, res, 0, 0, 0, UINT_MAX, &n) != 0) {
		rc = corrupt(st, op, "failures");
		goto out;
	}
	if (col_int(pq, res, 0, 1, -1, INT64_MAX, &lock) != 0) {
		rc = corrupt(st, op, "locked_until");
		goto out;
	}
	*failures = (unsigned int)n;
	*locked_until = lock;
	rc = SOTP_OK;
out:
	pq->PQclear(res);
	return rc;
}

static int
pg_reset_failures(struct sotp_store *st, const char *contract)
{
	return set_one(
	    st, S_CONTRACT_RESET_FAILURES, "reset_failures", contract, NULL);
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
pg_bind(struct sotp_store *st, const char *contract, const char *serial,
    enum sotp_login login, int64_t step, int drift,
    enum sotp_bind_result *result)
{
	const struct pq_api *pq = &be(st)->pq;
	const char *op = "bind";
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	struct params p = {.n = 0};
	PGresult *res = NULL;
	int have_token;
	int rc;

	memset(&c, 0, sizeof(c));
	memset(&t, 0, sizeof(t));
	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	/*
	 * Token first, then contract (the order accept_step takes them).
	 * The token's binding lives in contracts, so it is read only after
	 * both locks are held: each statement then sees every bind that
	 * committed while we waited.
	 */
	rc = read_one(st, S_TOKEN_LOCK, op, serial, &res);
	pq->PQclear(res);
	if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		goto out;
	have_token = rc == SOTP_OK;
	if ((rc = read_contract(st, op, contract, 1, &c)) != SOTP_OK) {
		if (rc == SOTP_ERR_NOT_FOUND)
			rc = SOTP_OK; /* *result is already NO_CONTRACT */
		goto out;
	}
	if (c.closed || c.serial[0] != '\0') {
		*result = bind_check(&c, &t, step);
		goto out;
	}
	if (!have_token ||
	    (rc = read_token(st, op, serial, &t)) == SOTP_ERR_NOT_FOUND) {
		*result = SOTP_BIND_NO_TOKEN;
		rc = SOTP_OK;
		goto out;
	}
	if (rc != SOTP_OK)
		goto out;
	if ((*result = bind_check(&c, &t, step)) != SOTP_BIND_OK)
		goto out;
	/* Setting last_step with the binding spends the registration code. */
	p_text(&p, serial);
	p_int(&p, step);
	p_int(&p, drift);
	if ((rc = update_one(st, S_TOKEN_SET_STEP, op, &p)) != SOTP_OK)
		goto out;
	memset(&p, 0, sizeof(p));
	p_text(&p, contract);
	p_text(&p, serial);
	p_int(&p, (int64_t)login);
	if ((rc = update_one(st, S_CONTRACT_BIND, op, &p)) != SOTP_OK)
		goto out;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	/* A refusal or an error changes nothing: undo what was done. */
	if (rc != SOTP_OK && *result == SOTP_BIND_OK)
		*result = SOTP_BIND_NO_CONTRACT;
	rollback(st);
	sotp_wipe(&c, sizeof(c));
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
pg_unbind(
    struct sotp_store *st, const char *contract, int *unbound, char *serial)
{
	const char *op = "unbind";
	struct sotp_contract_rec c;
	struct params p = {.n = 0};
	int rc;

	memset(&c, 0, sizeof(c));
	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	if ((rc = read_contract(st, op, contract, 1, &c)) != SOTP_OK)
		goto out;
	if (c.serial[0] == '\0') {
		rc = SOTP_OK;
		goto out;
	}
	/* The token keeps its last_step: its spent codes stay spent. */
	p_text(&p, contract);
	if ((rc = update_one(st, S_CONTRACT_UNBIND, op, &p)) != SOTP_OK)
		goto out;
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*unbound = 1;
	if (serial != NULL)
		sotp_strlcpy(serial, c.serial, SOTP_ID_MAX);
	rc = SOTP_OK;
out:
	rollback(st);
	sotp_wipe(&c, sizeof(c));
	return rc;
}

/*
 * As in SQLite: purge by `expires < now`, raising the horizon, then
 * insert unless the horizon has reached the state's expiry. ON CONFLICT
 * DO NOTHING waits for a concurrent insert of the same id to commit, so
 * of two servers only one sees the id as fresh. The table lock orders
 * every state_use of the farm: without it, an insert could read the old
 * horizon while a purge that is deleting the same id commits under it.
 */
static int
pg_state_use(struct sotp_store *st, const uint8_t *id, int64_t expires,
    int64_t now, int *fresh)
{
	const struct pq_api *pq = &be(st)->pq;
	const char *op = "state_use";
	struct params p = {.n = 0};
	PGresult *res = NULL;
	long inserted;
	int rc;

	if ((rc = begin(st, op)) != SOTP_OK)
		return rc;
	if ((rc = exec_sql(st, op,
	         "LOCK TABLE used_states IN SHARE ROW EXCLUSIVE MODE")) !=
	    SOTP_OK)
		goto out;
	p_int(&p, now);
	if ((rc = exec_stmt(st, S_STATE_PURGE, op, &p, &res)) != SOTP_OK)
		goto out;
	pq->PQclear(res);
	res = NULL;
	memset(&p, 0, sizeof(p));
	p_blob(&p, id, SOTP_STORE_STATE_ID_LEN);
	p_int(&p, expires);
	if ((rc = exec_stmt(st, S_STATE_INSERT, op, &p, &res)) != SOTP_OK)
		goto out;
	inserted = changes(pq, res);
	if ((rc = commit(st, op)) != SOTP_OK)
		goto out;
	*fresh = inserted == 1;
	rc = SOTP_OK;
out:
	pq->PQclear(res);
	rollback(st);
	return rc;
}

/* ---- Audit ---- */

static int
pg_audit_add(struct sotp_store *st, const struct sotp_audit_rec *r)
{
	const struct pq_api *pq = &be(st)->pq;
	const char *op = "audit_add";
	struct params p = {.n = 0};
	PGresult *res = NULL;
	int rc;

	if ((rc = check_conn(st, op)) != SOTP_OK)
		return rc;
	p_int(&p, r->ts);
	p_text(&p, r->action);
	p_text(&p, r->contract);
	p_text(&p, r->serial);
	p_text(&p, r->context);
	p_text(&p, r->verdict);
	p_int(&p, r->reason);
	p_text(&p, r->detail);
	rc = exec_stmt(st, S_AUDIT_ADD, op, &p, &res);
	pq->PQclear(res);
	return rc;
}

static int
pg_audit_list(struct sotp_store *st, const char *contract, int64_t since,
    int64_t until, sotp_audit_cb *cb, void *arg)
{
	const struct pq_api *pq = &be(st)->pq;
	const char *op = "audit_list";
	struct sotp_audit_row r;
	struct params p = {.n = 0};
	PGresult *res = NULL;
	int64_t v;
	int i, rc;

	if ((rc = check_conn(st, op)) != SOTP_OK)
		return rc;
	/* 0 means "no bound" on either side. */
	p_int(&p, since != 0 ? since : INT64_MIN);
	p_int(&p, until != 0 ? until : INT64_MAX);
	if (contract != NULL)
		p_text(&p, contract);
	if ((rc = exec_stmt(st,
	         contract != NULL ? S_AUDIT_LIST_CONTRACT : S_AUDIT_LIST, op,
	         &p, &res)) != SOTP_OK)
		goto out;
	for (i = 0; i < pq->PQntuples(res); i++) {
		memset(&r, 0, sizeof(r));
		if (col_int(pq, res, i, 0, INT64_MIN, INT64_MAX, &r.id) != 0 ||
		    col_int(pq, res, i, 1, INT64_MIN, INT64_MAX, &r.ts) != 0) {
			rc = corrupt(st, op, "id/ts");
			goto out;
		}
		r.action = col_str(pq, res, i, 2);
		r.contract = col_str(pq, res, i, 3);
		r.serial = col_str(pq, res, i, 4);
		r.context = col_str(pq, res, i, 5);
		r.verdict = col_str(pq, res, i, 6);
		if (col_int(pq, res, i, 7, INT_MIN, INT_MAX, &v) != 0) {
			rc = corrupt(st, op, "reason");
			goto out;
		}
		r.reason = (int)v;
		r.detail = col_str(pq, res, i, 8);
		if ((rc = cb(arg, &r)) != 0) {
			if (rc > 0)
				rc = SOTP_OK;
			goto out;
		}
	}
	rc = SOTP_OK;
out:
	pq->PQclear(res);
	return rc;
}

/* ---- Batches and the engine's decision transaction ---- */

static int
pg_begin(struct sotp_store *st)
{
	return begin(st, "begin");
}

static int
pg_commit(struct sotp_store *st)
{
	int rc;

	if ((rc = commit(st, "commit")) != SOTP_OK)
		rollback(st);
	return rc;
}

static void
pg_rollback(struct sotp_store *st)
{
	/* The caller's own level, even right after an inner commit. */
	be(st)->just_committed = 0;
	rollback(st);
}

#define PG_OPS(name)                                                           \
	{                                                                      \
		.scheme = name, .open = pg_open, .close = pg_close,            \
		.token_get = pg_token_get, .token_insert = pg_token_insert,    \
		.token_list = pg_token_list,                                   \
		.token_set_drift = pg_token_set_drift,                         \
		.contract_get = pg_contract_get,                               \
		.contract_insert = pg_contract_insert,                         \
		.contract_set_password = pg_contract_set_password,             \
		.contract_set_login = pg_contract_set_login,                   \
		.contract_set_card = pg_contract_set_card,                     \
		.contract_unlock = pg_contract_unlock,                         \
		.contract_unlock_expired = pg_contract_unlock_expired,         \
		.contract_close = pg_contract_close,                           \
		.accept_step = pg_accept_step, .fail = pg_fail,                \
		.reset_failures = pg_reset_failures, .bind = pg_bind,          \
		.unbind = pg_unbind, .state_use = pg_state_use,                \
		.audit_add = pg_audit_add, .audit_list = pg_audit_list,        \
		.begin = pg_begin, .commit = pg_commit,                        \
		.rollback = pg_rollback,                                       \
	}

/* libpq takes both URI schemes; so do we. */
const struct sotp_store_ops sotp_store_pg_ops = PG_OPS("postgresql");
const struct sotp_store_ops sotp_store_postgres_ops = PG_OPS("postgres");

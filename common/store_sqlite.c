/*
 * store_sqlite.c - the SQLite driver of the store ("sqlite:/abs/path"):
 * the SQLite dialect (one SQL text per statement id) and the calls that
 * run it. The operations themselves are in store_ops.c.
 *
 * One handle per thread (SQLITE_OPEN_NOMUTEX): radiusd keeps one per
 * worker, PAM and the CLI one per call. Several processes share the file;
 * SQLite's file locks serialise their writers, and every transaction
 * starts with BEGIN IMMEDIATE so that it takes the write lock before it
 * reads (in WAL mode a deferred transaction that later wants to write can
 * fail with SQLITE_BUSY without waiting). That lock is also what
 * sotp_store_token_lock and _contract_lock rely on here. A writer that
 * cannot get the lock within the busy timeout gets
 * SOTP_ERR_STORE_UNAVAILABLE.
 *
 * Statements are prepared once per handle, on first use, and kept: every
 * authentication runs several of them, and parsing SQL on each call would
 * cost more than the queries. Values are bound SQLITE_STATIC, and a
 * statement is reset and its bindings cleared when it is done, so no
 * pointer into the caller's memory outlives the call.
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sotp_int.h"
#include "store_int.h"

/*
 * The schema. The UNIQUE on contracts.serial is what makes a binding
 * one-to-one: one token per contract (the column holds one value) and one
 * contract per token (no two rows hold the same serial). The token side of
 * the binding is derived by joining, so the two can never disagree.
 * STRICT makes SQLite refuse a value of the wrong type instead of storing
 * it as given.
 */
#define SCHEMA_SQL                                                             \
	"CREATE TABLE schema_version ("                                        \
	" version INTEGER NOT NULL) STRICT;" KEY_TABLES_SQL                    \
	"CREATE TABLE tokens ("                                                \
	" serial TEXT PRIMARY KEY,"                                            \
	" kind TEXT,"                                                          \
	" secret BLOB NOT NULL,"                                               \
	" algorithm INTEGER,"                                                  \
	" digits INTEGER,"                                                     \
	" period INTEGER,"                                                     \
	" last_step INTEGER NOT NULL DEFAULT -1,"                              \
	" drift INTEGER NOT NULL DEFAULT 0,"                                   \
	" disabled INTEGER NOT NULL DEFAULT 0,"                                \
	" created INTEGER,"                                                    \
	" kv INTEGER REFERENCES key_dek(version)) STRICT;"                     \
	"CREATE TABLE contracts ("                                             \
	" id TEXT PRIMARY KEY,"                                                \
	" pwhash TEXT NOT NULL,"                                               \
	" login INTEGER NOT NULL,"                                             \
	" serial TEXT UNIQUE REFERENCES tokens(serial),"                       \
	" card BLOB,"                                                          \
	" failures INTEGER NOT NULL DEFAULT 0,"                                \
	" locked_until INTEGER NOT NULL DEFAULT 0,"                            \
	" closed INTEGER NOT NULL DEFAULT 0,"                                  \
	" created INTEGER,"                                                    \
	" kv INTEGER REFERENCES key_dek(version)) STRICT;" KV_INDEX_SQL        \
	"CREATE TABLE audit ("                                                 \
	" id INTEGER PRIMARY KEY,"                                             \
	" ts INTEGER,"                                                         \
	" action TEXT,"                                                        \
	" contract TEXT,"                                                      \
	" serial TEXT,"                                                        \
	" context TEXT,"                                                       \
	" verdict TEXT,"                                                       \
	" reason INTEGER,"                                                     \
	" detail TEXT,"                                                        \
	" seq INTEGER,"                                                        \
	" mac BLOB,"                                                           \
	" keyed INTEGER,"                                                      \
	" kv INTEGER) STRICT;"                                                 \
	"CREATE INDEX audit_contract_ts ON audit(contract, ts);"               \
	"CREATE INDEX audit_ts ON audit(ts);" AUDIT_CHAIN_SQL                  \
	    AUDIT_HEAD_KV_SQL "CREATE TABLE used_states ("                     \
	" id BLOB PRIMARY KEY,"                                                \
	" expires INTEGER) STRICT;"                                            \
	"CREATE INDEX used_states_expires ON used_states(expires);"            \
	"INSERT INTO schema_version(version) VALUES (3);"

/*
 * Versioned keys (keys.c): the live data-encryption key versions, which
 * every sealed value's kv references (so the database itself refuses to
 * retire a version a value still needs), their keys wrapped under each
 * key-encryption key, and the ring: the current version and the
 * generation every change bumps. A new store has no version until init
 * makes version 1; an upgraded one starts at version 0, the master key
 * file.
 */
#define KEY_TABLES_SQL                                                         \
	"CREATE TABLE key_dek ("                                               \
	" version INTEGER PRIMARY KEY,"                                        \
	" created INTEGER NOT NULL) STRICT;"                                   \
	"CREATE TABLE key_wrap ("                                              \
	" version INTEGER NOT NULL,"                                           \
	" kek TEXT NOT NULL,"                                                  \
	" what INTEGER NOT NULL,"                                              \
	" blob BLOB NOT NULL,"                                                 \
	" PRIMARY KEY (version, kek, what)) STRICT;"                           \
	"CREATE TABLE key_ring ("                                              \
	" k INTEGER PRIMARY KEY CHECK (k = 1),"                                \
	" current INTEGER NOT NULL REFERENCES key_dek(version),"               \
	" gen INTEGER NOT NULL,"                                               \
	" switched INTEGER NOT NULL) STRICT;"
/* What a rotation walks (kv < current), and a retirement checks. */
#define KV_INDEX_SQL                                                           \
	"CREATE INDEX tokens_kv ON tokens(kv, serial);"                        \
	"CREATE INDEX contracts_kv ON contracts(kv, id);"
/* Which version tagged the head, and the base of a prune. */
#define AUDIT_HEAD_KV_SQL                                                      \
	"ALTER TABLE audit_head ADD COLUMN kv INTEGER NOT NULL DEFAULT 0;"     \
	"ALTER TABLE audit_head ADD COLUMN base_kv INTEGER NOT NULL DEFAULT 0;"

/*
 * The audit chain (audit.c): each row's place (seq) and keyed hash (mac),
 * whether it was written by a holder of the master key (keyed 1), by one
 * without it (0: chained later) or before the chain (NULL), and the one
 * head row. Version 1 stores get it by SCHEMA_UPGRADE (init).
 */
#define AUDIT_CHAIN_SQL                                                        \
	"CREATE UNIQUE INDEX audit_seq ON audit(seq);"                         \
	"CREATE INDEX audit_pending ON audit(id)"                              \
	" WHERE seq IS NULL AND keyed = 0;"                                    \
	"CREATE TABLE audit_head ("                                            \
	" k INTEGER PRIMARY KEY CHECK (k = 1),"                                \
	" seq INTEGER NOT NULL,"                                               \
	" mac BLOB,"                                                           \
	" tag BLOB,"                                                           \
	" pending INTEGER NOT NULL,"                                           \
	" base_seq INTEGER NOT NULL,"                                          \
	" base_mac BLOB,"                                                      \
	" base_tag BLOB) STRICT;"                                              \
	"INSERT INTO audit_head VALUES (1, 0, NULL, NULL, 0, 0, NULL, NULL);"

/*
 * Version 3 to 4: SOTP_AUDIT_CHAINS chains (audit.c), each with its head
 * row; what was chained so far is chain 1. SQLite cannot change a CHECK,
 * so the head table is made again. A new store is made at version 3 and
 * taken here, as an older one is.
 */
#define UPGRADE_4_SQL                                                          \
	"ALTER TABLE audit ADD COLUMN chain INTEGER;"                          \
	"UPDATE audit SET chain = 1 WHERE keyed IS NOT NULL;"                  \
	"DROP INDEX audit_seq;"                                                \
	"CREATE UNIQUE INDEX audit_seq ON audit(chain, seq);"                  \
	"CREATE TABLE audit_heads ("                                           \
	" k INTEGER PRIMARY KEY CHECK (k BETWEEN 1 AND 16),"                   \
	" seq INTEGER NOT NULL,"                                               \
	" mac BLOB,"                                                           \
	" tag BLOB,"                                                           \
	" pending INTEGER NOT NULL,"                                           \
	" base_seq INTEGER NOT NULL,"                                          \
	" base_mac BLOB,"                                                      \
	" base_tag BLOB,"                                                      \
	" kv INTEGER NOT NULL DEFAULT 0,"                                      \
	" base_kv INTEGER NOT NULL DEFAULT 0) STRICT;"                         \
	"INSERT INTO audit_heads SELECT k, seq, mac, tag, pending, base_seq,"  \
	" base_mac, base_tag, kv, base_kv FROM audit_head;"                    \
	"WITH RECURSIVE n(k) AS (SELECT 2 UNION ALL"                           \
	" SELECT k + 1 FROM n WHERE k < 16)"                                   \
	" INSERT INTO audit_heads SELECT k, 0, NULL, NULL, 0, 0, NULL, NULL,"  \
	" 0, 0 FROM n;"                                                        \
	"DROP TABLE audit_head;"                                               \
	"ALTER TABLE audit_heads RENAME TO audit_head;"                        \
	"UPDATE schema_version SET version = 4;"

/*
 * Version 4 to 5: each token's seed fingerprint, an HMAC-SHA256 of its
 * seed under a subkey of the data key it is sealed under (seedfp.c), so
 * that a seed given twice is found by one indexed lookup. Not UNIQUE: a
 * store from before may already hold a seed twice, and no token is ever
 * deleted; the check is the lookup, under the key ring's row. The index
 * ends with serial so that the lookup's ORDER BY serial LIMIT 1 is read
 * from it: without, SQLite's planner may walk tokens_kv (kv, serial) in
 * order instead, every token of a version. Existing tokens are filled by
 * init, which holds the keys; the partial index finds one still empty at
 * once (the check refuses until init has run).
 */
#define UPGRADE_5_SQL                                                          \
	"ALTER TABLE tokens ADD COLUMN seed_fp BLOB;"                          \
	"CREATE INDEX tokens_seed_fp ON tokens(seed_fp, kv, serial);"          \
	"CREATE INDEX tokens_seed_unfilled ON tokens(serial)"                  \
	" WHERE seed_fp IS NULL;"                                              \
	"UPDATE schema_version SET version = 5;"

#define UPGRADE_SQL                                                            \
	"ALTER TABLE audit ADD COLUMN seq INTEGER;"                            \
	"ALTER TABLE audit ADD COLUMN mac BLOB;"                               \
	"ALTER TABLE audit ADD COLUMN keyed INTEGER;" AUDIT_CHAIN_SQL          \
	"UPDATE schema_version SET version = 2;"

/* Version 2 to 3: every value sealed so far is key version 0's. */
#define UPGRADE_3_SQL                                                           \
	KEY_TABLES_SQL                                                          \
	"INSERT INTO key_dek (version, created) VALUES (0, 0);"                 \
	"INSERT INTO key_ring (k, current, gen, switched) VALUES (1, 0, 1, 0);" \
	"ALTER TABLE tokens ADD COLUMN kv INTEGER REFERENCES key_dek(version);" \
	"UPDATE tokens SET kv = 0;"                                             \
	"ALTER TABLE contracts ADD COLUMN kv INTEGER"                           \
	" REFERENCES key_dek(version);"                                         \
	"UPDATE contracts SET kv = 0 WHERE card IS NOT NULL;" KV_INDEX_SQL      \
	"ALTER TABLE audit ADD COLUMN kv INTEGER;" AUDIT_HEAD_KV_SQL            \
	"UPDATE schema_version SET version = 3;"

/* The SQLite dialect. ?N is the Nth parameter the operation passes. */
static const char *const sqlite_sql[SOTP_Q_COUNT] = {
    [SOTP_Q_BEGIN] = "BEGIN IMMEDIATE",
    [SOTP_Q_COMMIT] = "COMMIT",
    [SOTP_Q_ROLLBACK] = "ROLLBACK",
    [SOTP_Q_SAVEPOINT] = "SAVEPOINT sotp",
    [SOTP_Q_RELEASE] = "RELEASE sotp",
    [SOTP_Q_ROLLBACK_TO] = "ROLLBACK TO sotp",
    /* BEGIN IMMEDIATE already holds the file's write lock. */
    [SOTP_Q_SCHEMA_LOCK] = "SELECT 1",
    [SOTP_Q_SCHEMA_FOUND] = "SELECT count(*) FROM sqlite_master"
                            " WHERE type = 'table'"
                            " AND name = 'schema_version'",
    [SOTP_Q_SCHEMA_TABLES] = "SELECT count(*) FROM sqlite_master",
    [SOTP_Q_SCHEMA_CREATE] = SCHEMA_SQL UPGRADE_4_SQL UPGRADE_5_SQL,
    [SOTP_Q_SCHEMA_VERSION] = "SELECT version FROM schema_version",
    [SOTP_Q_SCHEMA_UPGRADE] = UPGRADE_SQL,
    [SOTP_Q_SCHEMA_UPGRADE_3] = UPGRADE_3_SQL,
    [SOTP_Q_SCHEMA_UPGRADE_4] = UPGRADE_4_SQL,
    [SOTP_Q_SCHEMA_UPGRADE_5] = UPGRADE_5_SQL,
    [SOTP_Q_TOKEN_GET] = SOTP_SQL_TOKEN_SELECT " WHERE t.serial = ?1",
    [SOTP_Q_TOKEN_LOCK] = "SELECT 1 FROM tokens WHERE serial = ?1",
    [SOTP_Q_TOKEN_INSERT] = "INSERT INTO tokens (serial, kind, secret,"
                            " algorithm, digits, period, last_step, drift,"
                            " disabled, created, kv, seed_fp)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                            " ?10, ?11, ?12)",
    [SOTP_Q_TOKEN_LIST] = SOTP_SQL_TOKEN_SELECT " ORDER BY t.serial",
    [SOTP_Q_TOKEN_LIST_FREE] = SOTP_SQL_TOKEN_SELECT " WHERE c.id IS NULL"
                                                     " ORDER BY t.serial",
    [SOTP_Q_TOKEN_SET_DRIFT] = "UPDATE tokens SET drift = ?2"
                               " WHERE serial = ?1",
    /*
     * The replay guard: only a strictly newer step moves last_step, and
     * a disabled token spends none.
     */
    [SOTP_Q_TOKEN_USE_STEP] = "UPDATE tokens SET last_step = ?2,"
                              " drift = ?3 WHERE serial = ?1"
                              " AND last_step < ?2 AND disabled = 0",
    [SOTP_Q_TOKEN_SET_DISABLED] = "UPDATE tokens SET disabled = ?2"
                                  " WHERE serial = ?1",
    [SOTP_Q_CONTRACT_GET] = SOTP_SQL_CONTRACT_SELECT " WHERE id = ?1",
    [SOTP_Q_CONTRACT_LOCK] = SOTP_SQL_CONTRACT_SELECT " WHERE id = ?1",
    [SOTP_Q_CONTRACT_LOCK_TOKEN] =
        SOTP_SQL_CONTRACT_TOKEN_SELECT " WHERE c.id = ?1",
    [SOTP_Q_CONTRACT_INSERT] = "INSERT INTO contracts (id, pwhash, login,"
                               " card, failures, locked_until, closed,"
                               " created, kv)"
                               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
                               " NULLIF(?9, -1))",
    [SOTP_Q_CONTRACT_SET_PASSWORD] = "UPDATE contracts SET pwhash = ?2"
                                     " WHERE id = ?1",
    [SOTP_Q_CONTRACT_SET_LOGIN] = "UPDATE contracts SET login = ?2"
                                  " WHERE id = ?1",
    [SOTP_Q_CONTRACT_SET_CARD] = "UPDATE contracts SET card = ?2,"
                                 " kv = NULLIF(?3, -1) WHERE id = ?1",
    [SOTP_Q_CONTRACT_UNLOCK] = "UPDATE contracts SET failures = 0,"
                               " locked_until = 0 WHERE id = ?1",
    [SOTP_Q_CONTRACT_UNLOCK_EXPIRED] = "UPDATE contracts SET failures = 0,"
                                       " locked_until = 0 WHERE id = ?1"
                                       " AND locked_until = ?2",
    [SOTP_Q_CONTRACT_CLOSE] = "UPDATE contracts SET closed = 1"
                              " WHERE id = ?1 AND serial IS NULL",
    [SOTP_Q_CONTRACT_RESET_FAILURES] = "UPDATE contracts SET failures = 0"
                                       " WHERE id = ?1",
    /*
     * ">=" rather than "=": a contract whose timed lock has run out but
     * whose count was not reset locks again on its next failure.
     */
    [SOTP_Q_CONTRACT_FAIL] = "UPDATE contracts SET failures = failures + 1,"
                             " locked_until = CASE WHEN ?2 > 0 AND"
                             " failures + 1 >= ?2 THEN ?3"
                             " ELSE locked_until END"
                             " WHERE id = ?1"
                             " RETURNING failures, locked_until",
    [SOTP_Q_CONTRACT_BIND] = "UPDATE contracts SET serial = ?2, login = ?3,"
                             " failures = 0 WHERE id = ?1"
                             " AND serial IS NULL AND closed = 0",
    [SOTP_Q_CONTRACT_UNBIND] = "UPDATE contracts SET serial = NULL"
                               " WHERE id = ?1 AND serial = ?2",
    /* ?1 locked only (at ?2), ?3 closed = ?3 or any (-1). */
    [SOTP_Q_CONTRACT_LIST] = SOTP_SQL_CONTRACT_SELECT
    " WHERE (?1 = 0 OR locked_until = -1 OR locked_until > ?2)"
    " AND (?3 < 0 OR closed = ?3) ORDER BY id",
    [SOTP_Q_CONTRACT_PWHASH_SAMPLE] = "SELECT pwhash FROM contracts LIMIT 1",
    /*
     * The used-state marks (16-byte ids) and, beside them, two rows with
     * one-byte ids: X'00' the horizon (the highest expiry ever purged),
     * X'01' when the last purge ran. sotp_store_state_use explains them;
     * BEGIN IMMEDIATE already orders every use and purge here.
     */
    [SOTP_Q_STATE_MARKS] = "SELECT id, expires FROM used_states"
                           " WHERE id IN (X'00', X'01')",
    [SOTP_Q_STATE_MARKS_PURGER] = "SELECT id, expires FROM used_states"
                                  " WHERE id IN (X'00', X'01')",
    [SOTP_Q_STATE_MARKS_INIT] = "INSERT OR IGNORE INTO used_states"
                                " (id, expires) VALUES (X'00', 0),"
                                " (X'01', 0)",
    [SOTP_Q_STATE_HORIZON_RAISE] = "UPDATE used_states SET expires ="
                                   " max(expires, coalesce((SELECT"
                                   " max(expires) FROM used_states"
                                   " WHERE expires < ?1"
                                   " AND length(id) = 16), expires))"
                                   " WHERE id = X'00'",
    [SOTP_Q_STATE_PURGE] = "DELETE FROM used_states WHERE expires < ?1"
                           " AND length(id) = 16",
    [SOTP_Q_STATE_PURGED_AT] = "UPDATE used_states SET expires = ?1"
                               " WHERE id = X'01'",
    [SOTP_Q_CONTRACT_REHASH] = "UPDATE contracts SET pwhash = ?3"
                               " WHERE id = ?1 AND pwhash = ?2",
    [SOTP_Q_CONTRACT_RESEAL_CARD] = "UPDATE contracts SET card = ?3, kv = ?4"
                                    " WHERE id = ?1 AND card = ?2",
    [SOTP_Q_STATE_INSERT] = "INSERT OR IGNORE INTO used_states (id, expires)"
                            " VALUES (?1, ?2)",
    [SOTP_Q_STATE_GET] = "SELECT expires FROM used_states WHERE id = ?1",
    [SOTP_Q_STATE_DELETE] = "DELETE FROM used_states WHERE id = ?1",
    [SOTP_Q_AUDIT_ADD] = "INSERT INTO audit (ts, action, contract, serial,"
                         " context, verdict, reason, detail, seq, mac,"
                         " keyed, kv, chain)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
                         " NULLIF(?9, 0), ?10, ?11, NULLIF(?12, -1), ?13)",
    [SOTP_Q_AUDIT_LIST] = SOTP_SQL_AUDIT_SELECT " WHERE ts >= ?1 AND ts <= ?2"
                                                " ORDER BY ts, id",
    [SOTP_Q_AUDIT_LIST_CONTRACT] =
        SOTP_SQL_AUDIT_SELECT " WHERE contract = ?3 AND"
                              " ts >= ?1 AND ts <= ?2"
                              " ORDER BY ts, id",
    /* BEGIN IMMEDIATE already holds the lock that orders appends. */
    [SOTP_Q_AUDIT_HEAD] = SOTP_SQL_AUDIT_HEAD_SELECT " WHERE k = ?1",
    [SOTP_Q_AUDIT_HEAD_LOCK] = SOTP_SQL_AUDIT_HEAD_SELECT " WHERE k = ?1",
    [SOTP_Q_AUDIT_HEAD_SET] = "UPDATE audit_head SET seq = ?1, mac = ?2,"
                              " tag = ?3, pending = ?4, base_seq = ?5,"
                              " base_mac = ?6, base_tag = ?7, kv = ?8,"
                              " base_kv = ?9 WHERE k = ?10",
    [SOTP_Q_AUDIT_PENDING] = SOTP_SQL_AUDIT_CHAIN_SELECT
    " WHERE chain = ?1 AND seq IS NULL AND keyed = 0 ORDER BY id LIMIT 1",
    [SOTP_Q_AUDIT_LINK] = "UPDATE audit SET seq = ?2, mac = ?3, kv = ?4"
                          " WHERE id = ?1 AND seq IS NULL AND keyed = 0",
    [SOTP_Q_AUDIT_WALK] =
        SOTP_SQL_AUDIT_CHAIN_SELECT " WHERE chain = ?1 AND seq > ?2"
                                    " ORDER BY seq",
    [SOTP_Q_AUDIT_COUNTS] = "SELECT (SELECT count(*) FROM audit"
                            " WHERE seq IS NULL AND keyed = 0),"
                            " (SELECT count(*) FROM audit"
                            " WHERE keyed IS NULL)",
    [SOTP_Q_AUDIT_PRUNE_POINT] = "SELECT min(seq) FROM audit"
                                 " WHERE chain = ?2 AND seq IS NOT NULL"
                                 " AND ts >= ?1",
    [SOTP_Q_AUDIT_MAC_AT] = "SELECT mac FROM audit WHERE chain = ?2"
                            " AND seq = ?1",
    [SOTP_Q_AUDIT_PRUNE] = "DELETE FROM audit WHERE (chain = ?3"
                           " AND seq <= ?1)"
                           " OR (keyed IS NULL AND ts < ?2)",
    [SOTP_Q_AUDIT_STRAY] = SOTP_SQL_AUDIT_STRAY,
    /* The keyring: BEGIN IMMEDIATE already holds every row still. */
    [SOTP_Q_KEY_RING] = SOTP_SQL_KEY_RING_SELECT,
    [SOTP_Q_KEY_RING_LOCK] = SOTP_SQL_KEY_RING_SELECT,
    [SOTP_Q_KEY_RING_INIT] = "INSERT INTO key_ring (k, current, gen,"
                             " switched) VALUES (1, ?1, 1, ?2)",
    [SOTP_Q_KEY_RING_SET] = "UPDATE key_ring SET current = ?1,"
                            " switched = ?2, gen = gen + 1 WHERE k = 1",
    [SOTP_Q_KEY_RING_BUMP] = "UPDATE key_ring SET gen = gen + 1"
                             " WHERE k = 1",
    [SOTP_Q_KEY_LIVE] = "SELECT version, created FROM key_dek"
                        " ORDER BY version",
    [SOTP_Q_KEY_ADD] = "INSERT INTO key_dek (version, created)"
                       " VALUES (?1, ?2)",
    [SOTP_Q_KEY_RETIRE_WRAPS] = "DELETE FROM key_wrap WHERE version = ?1"
                                " AND what = 1",
    [SOTP_Q_KEY_RETIRE] = "DELETE FROM key_dek WHERE version = ?1",
    [SOTP_Q_KEY_WRAPS] = "SELECT version, kek, what, blob FROM key_wrap"
                         " ORDER BY version, kek, what",
    [SOTP_Q_KEY_WRAP_GET] = "SELECT blob FROM key_wrap WHERE version = ?1"
                            " AND kek = ?2 AND what = ?3",
    [SOTP_Q_KEY_WRAP_PUT] = "INSERT INTO key_wrap (version, kek, what,"
                            " blob) VALUES (?1, ?2, ?3, ?4)",
    [SOTP_Q_KEY_WRAP_DROP] = "DELETE FROM key_wrap WHERE kek = ?1",
    [SOTP_Q_KEY_COUNTS] = SOTP_SQL_KEY_COUNTS,
    [SOTP_Q_KEY_OLD_TOKENS] = "SELECT serial, kv, secret FROM tokens"
                              " WHERE kv < ?1 ORDER BY kv, serial"
                              " LIMIT ?2",
    [SOTP_Q_KEY_OLD_CARDS] = "SELECT id, kv, card FROM contracts"
                             " WHERE kv < ?1 ORDER BY kv, id LIMIT ?2",
    /* A token's fingerprint moves with its seal, in the same write. */
    [SOTP_Q_KEY_RESEAL_TOKEN] = "UPDATE tokens SET secret = ?2, kv = ?3,"
                                " seed_fp = ?5"
                                " WHERE serial = ?1 AND kv = ?4",
    [SOTP_Q_KEY_RESEAL_CARD] = "UPDATE contracts SET card = ?2, kv = ?3"
                               " WHERE id = ?1 AND kv = ?4",
    [SOTP_Q_KEY_LEFT] = "SELECT (SELECT count(*) FROM tokens"
                        " WHERE kv < ?1) + (SELECT count(*)"
                        " FROM contracts WHERE kv < ?1)",
    [SOTP_Q_KEY_USED] = "SELECT (SELECT count(*) FROM tokens"
                        " WHERE kv = ?1) + (SELECT count(*)"
                        " FROM contracts WHERE kv = ?1)",
    [SOTP_Q_KEY_LOAD] = SOTP_SQL_KEY_LOAD "?1 WHERE r.k = 1"
                                          " ORDER BY d.version",
    [SOTP_Q_SEED_FIND] = "SELECT serial FROM tokens WHERE seed_fp = ?1"
                         " AND kv = ?2 ORDER BY serial LIMIT 1",
    [SOTP_Q_SEED_UNFILLED] = "SELECT serial FROM tokens"
                             " WHERE seed_fp IS NULL LIMIT 1",
    [SOTP_Q_SEED_TODO] = "SELECT serial, kv, secret FROM tokens"
                         " WHERE seed_fp IS NULL ORDER BY serial"
                         " LIMIT ?1",
    [SOTP_Q_SEED_SET] = "UPDATE tokens SET seed_fp = ?2 WHERE serial = ?1"
                        " AND kv = ?3 AND seed_fp IS NULL",
    [SOTP_Q_SEED_SHARED] = SOTP_SQL_SEED_SHARED,
};

struct sq_conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[SOTP_Q_COUNT]; /* prepared on first use, kept */
	sqlite3_stmt *cur;                /* the statement under way */
	int once;                         /* cur is finalized when done */
	int commits;                      /* up to WAL_WARM_COMMITS */
};

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

/* Records a failed SQLite call and returns our code. */
static int
db_fail(struct sotp_store *st, int sqlrc)
{
	struct sq_conn *c = st->conn;

	return sotp_store_dberr(st, map_rc(sqlrc), "%s",
	    c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(sqlrc));
}

/* ---- The driver ---- */

static int
bind_param(sqlite3_stmt *s, int i, const struct sotp_param *p)
{
	switch (p->type) {
	case SOTP_P_INT:
		return sqlite3_bind_int64(s, i, p->i);
	case SOTP_P_TEXT:
		if (p->p == NULL)
			return sqlite3_bind_null(s, i);
		return sqlite3_bind_text(s, i, p->p, -1, SQLITE_STATIC);
	case SOTP_P_BLOB:
		if (p->len == 0)
			return sqlite3_bind_null(s, i);
		return sqlite3_bind_blob(
		    s, i, p->p, (int)p->len, SQLITE_STATIC);
	}
	return SQLITE_MISUSE;
}

static int
sq_exec(struct sotp_store *st, int id, const char *sql,
    const struct sotp_param *p, size_t n)
{
	struct sq_conn *c = st->conn;
	sqlite3_stmt *s = id >= 0 ? c->stmt[id] : NULL;
	size_t i;
	int sqlrc = SQLITE_OK;

	if (s == NULL) {
		sqlrc = sqlite3_prepare_v3(c->db, sql, -1,
		    id >= 0 ? SQLITE_PREPARE_PERSISTENT : 0, &s, NULL);
		if (sqlrc != SQLITE_OK)
			return db_fail(st, sqlrc);
		if (id >= 0)
			c->stmt[id] = s;
	}
	c->cur = s;
	c->once = id < 0;
	for (i = 0; i < n && sqlrc == SQLITE_OK; i++)
		sqlrc = bind_param(s, (int)i + 1, &p[i]);
	return sqlrc == SQLITE_OK ? SOTP_OK : db_fail(st, sqlrc);
}

static int
sq_next(struct sotp_store *st)
{
	struct sq_conn *c = st->conn;
	int sqlrc;

	switch ((sqlrc = sqlite3_step(c->cur))) {
	case SQLITE_ROW:
		return 1;
	case SQLITE_DONE:
		return 0;
	default:
		return db_fail(st, sqlrc);
	}
}

static void
sq_value(struct sotp_store *st, int col, struct sotp_value *v)
{
	sqlite3_stmt *s = ((struct sq_conn *)st->conn)->cur;

	memset(v, 0, sizeof(*v));
	switch (sqlite3_column_type(s, col)) {
	case SQLITE_NULL:
		v->type = SOTP_V_NULL;
		break;
	case SQLITE_INTEGER:
		v->type = SOTP_V_INT;
		v->i = sqlite3_column_int64(s, col);
		break;
	case SQLITE_TEXT:
		/* Text first, then its length (sqlite3_column_bytes). */
		v->type = SOTP_V_TEXT;
		v->p = sqlite3_column_text(s, col);
		v->len = (size_t)sqlite3_column_bytes(s, col);
		break;
	case SQLITE_BLOB:
		v->type = SOTP_V_BLOB;
		v->p = sqlite3_column_blob(s, col);
		v->len = (size_t)sqlite3_column_bytes(s, col);
		break;
	default:
		v->type = SOTP_V_OTHER;
		break;
	}
}

static int64_t
sq_changes(struct sotp_store *st)
{
	return sqlite3_changes(((struct sq_conn *)st->conn)->db);
}

static void
sq_done(struct sotp_store *st)
{
	struct sq_conn *c = st->conn;

	if (c->cur == NULL)
		return;
	if (c->once) {
		sqlite3_finalize(c->cur);
	} else {
		sqlite3_reset(c->cur);
		sqlite3_clear_bindings(c->cur);
	}
	c->cur = NULL;
}

static int
sq_script(struct sotp_store *st, const char *sql)
{
	struct sq_conn *c = st->conn;
	int sqlrc;

	if ((sqlrc = sqlite3_exec(c->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
		return db_fail(st, sqlrc);
	return SOTP_OK;
}

static int
sq_txn_state(struct sotp_store *st)
{
	return !sqlite3_get_autocommit(((struct sq_conn *)st->conn)->db);
}

/* Fails closed when the file this handle reads has moved (head comment). */
static int
sq_check(struct sotp_store *st)
{
	struct sq_conn *c = st->conn;
	int moved = 0;
	int sqlrc;

	sqlrc =
	    sqlite3_file_control(c->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved);
	if (sqlrc != SQLITE_OK)
		return db_fail(st, sqlrc);
	if (moved)
		return sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
		    "database file was removed or replaced while open");
	return SOTP_OK;
}

/* ---- Open and close ---- */

/* Sets WAL and checks SQLite agreed (it silently keeps its mode if not). */
static int
set_wal(struct sotp_store *st)
{
	struct sq_conn *c = st->conn;
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int rc = SOTP_ERR_INTERNAL;
	int sqlrc;

	if ((sqlrc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1,
	         &s, NULL)) != SQLITE_OK ||
	    (sqlrc = sqlite3_step(s)) != SQLITE_ROW) {
		rc = db_fail(st, sqlrc);
		goto out;
	}
	mode = sqlite3_column_text(s, 0);
	if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
		rc = sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
		    "cannot use WAL journal mode");
		goto out;
	}
	rc = SOTP_OK;
out:
	sqlite3_finalize(s);
	return rc;
}

/*
 * The schema check of every open, from the file's header alone: init (and
 * the first full check of an older store) stamps application_id and
 * user_version, and a file that carries both is this build's schema. Any
 * other file gets the full check (sotp_store_schema), which reads the
 * schema_version table. A foreign file stamped alike would still fail
 * closed at its first statement.
 */
#define SOTP_APPLICATION_ID 0x534f5450 /* "SOTP" */

static int64_t
pragma_int(struct sq_conn *c, const char *sql)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int
stamped(struct sotp_store *st)
{
	struct sq_conn *c = st->conn;

	return pragma_int(c, "PRAGMA application_id") == SOTP_APPLICATION_ID &&
	    pragma_int(c, "PRAGMA user_version") == SOTP_SCHEMA_VERSION;
}

/*
 * After a full check passed. Only a speed-up: a store that cannot be
 * stamped now (read-only for this caller, or busy) is checked in full
 * again next time.
 */
static void
stamp(struct sotp_store *st, int oflags)
{
	struct sq_conn *c = st->conn;
	char sql[96];

	if ((oflags & SOTP_OPEN_READONLY_OK) &&
	    sqlite3_db_readonly(c->db, "main"))
		return;
	snprintf(sql, sizeof(sql),
	    "PRAGMA application_id=%d; PRAGMA user_version=%d",
	    SOTP_APPLICATION_ID, SOTP_SCHEMA_VERSION);
	(void)sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

/*
 * The WAL outlives every handle. The PAM module opens the store on every
 * call; by default SQLite's last connection to close would checkpoint the
 * WAL into the database (two more fsyncs) and unlink it, and the next call
 * would create it again. So closing neither checkpoints nor removes it
 * (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, SQLITE_FCNTL_PERSIST_WAL): a commit
 * is durable once its frames are synced in the WAL (synchronous=FULL), and
 * the next opener, or crash recovery, reads them from there.
 *
 * The WAL is kept bounded instead, by wal_hook. A handle that has lived
 * for a few commits (radiusd's, the PAM module's warm context) does what
 * SQLite's own autocheckpoint does: a passive checkpoint once a commit
 * leaves WAL_WARM_PAGES pages (SQLite's default), after which the next
 * commit rewinds the WAL and writes over it; a WAL that keeps its size
 * costs no inode update at each commit's fdatasync, and a large one copies
 * each page often written (the audit trail's) once per checkpoint: with a
 * million contracts, 64 pages cost 1.6x the CPU per accept of 1000. A
 * fresh handle (a PAM call without a warm context, the CLI), once a commit
 * leaves WAL_CKPT_PAGES pages, copies the WAL into the database and
 * truncates it to nothing (SQLITE_CHECKPOINT_TRUNCATE), without waiting:
 * if another process is reading or writing, the copy is done as far as it
 * can be and the truncation left to a later commit. The passive way alone
 * would not do there: how far a checkpoint got lives in the -shm index,
 * which the first opener of a file rebuilds from the WAL, so with a handle
 * per call the WAL would never be rewound (and every such call would read
 * all of it). journal_size_limit trims a rewound WAL that an import or
 * a long reader made large.
 */
#define WAL_CKPT_PAGES 64
#define WAL_WARM_PAGES 1000
#define WAL_WARM_COMMITS 4
#define WAL_SIZE_LIMIT (4 * 1024 * 1024)

static int
wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct sotp_store *st = arg;
	struct sq_conn *c = st->conn;

	if (c->commits < WAL_WARM_COMMITS)
		c->commits++;
	/* The commit is done: nothing here may turn it into an error. */
	if (c->commits >= WAL_WARM_COMMITS) {
		if (pages >= WAL_WARM_PAGES)
			(void)sqlite3_wal_checkpoint_v2(
			    db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		return SQLITE_OK;
	}
	if (pages < WAL_CKPT_PAGES)
		return SQLITE_OK;
	sqlite3_busy_timeout(db, 0);
	(void)sqlite3_wal_checkpoint_v2(
	    db, name, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	sqlite3_busy_timeout(db, (int)st->lim.lock_timeout_ms);
	return SQLITE_OK;
}

static int
keep_wal(struct sotp_store *st)
{
	struct sq_conn *c = st->conn;
	char sql[64];
	int one = 1, sqlrc;

	if ((sqlrc = sqlite3_file_control(
	         c->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one)) != SQLITE_OK ||
	    (sqlrc = sqlite3_db_config(c->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
	         1, NULL)) != SQLITE_OK)
		return db_fail(st, sqlrc);
	snprintf(
	    sql, sizeof(sql), "PRAGMA journal_size_limit=%d", WAL_SIZE_LIMIT);
	if ((sqlrc = sqlite3_exec(c->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
		return db_fail(st, sqlrc);
	sqlite3_wal_hook(c->db, wal_hook, st);
	return SOTP_OK;
}

/*
 * The VFS the store opens with: SQLite's own "unix", except for how a WAL
 * that already exists is opened. SQLite opens the -wal file with
 * SQLITE_OPEN_CREATE whether or not it exists, and fsyncs the directory at
 * the first sync of every file it opened so: with a handle per PAM call,
 * one more fsync per authentication for a directory entry that has been
 * durable since the WAL was made. Here an existing WAL is opened without
 * SQLITE_OPEN_CREATE (no directory sync); a missing one is created as
 * SQLite would, and its directory synced at once, before any commit can
 * land in it, so that no opener after it depends on a directory sync it
 * skipped. The WAL is never removed by the store (keep_wal).
 */
static sqlite3_vfs vfs;
static char vfs_name[48];
static sqlite3_vfs *unix_vfs;
static pthread_once_t vfs_once = PTHREAD_ONCE_INIT;

static void
sync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	int fd;

	if (sotp_dir_of(path, dir, sizeof(dir)) != 0)
		return;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return;
	(void)fsync(fd);
	close(fd);
}

static int
vfs_open(sqlite3_vfs *self, sqlite3_filename name, sqlite3_file *f, int flags,
    int *out)
{
	int sqlrc;

	(void)self;
	if ((flags & SQLITE_OPEN_WAL) == 0 || name == NULL ||
	    (flags & SQLITE_OPEN_CREATE) == 0)
		return unix_vfs->xOpen(unix_vfs, name, f, flags, out);
	sqlrc = unix_vfs->xOpen(
	    unix_vfs, name, f, flags & ~SQLITE_OPEN_CREATE, out);
	if (sqlrc == SQLITE_OK)
		return sqlrc;
	if ((sqlrc = unix_vfs->xOpen(unix_vfs, name, f, flags, out)) ==
	    SQLITE_OK)
		sync_dir_of(name);
	return sqlrc;
}

static void
vfs_register(void)
{
	if ((unix_vfs = sqlite3_vfs_find("unix")) == NULL)
		return;
	/*
	 * A name of this copy's own: the PAM and RADIUS modules each carry
	 * the core, and one process may load both.
	 */
	snprintf(vfs_name, sizeof(vfs_name), "shinkin-otp-%p", (void *)&vfs);
	vfs = *unix_vfs;
	vfs.pNext = NULL;
	vfs.zName = vfs_name;
	vfs.xOpen = vfs_open;
	if (sqlite3_vfs_register(&vfs, 0) != SQLITE_OK)
		unix_vfs = NULL;
}

/* A module unloaded from a process that keeps libsqlite3 leaves no VFS
 * pointing into unmapped memory. */
__attribute__((destructor)) static void
vfs_unregister(void)
{
	if (unix_vfs != NULL)
		sqlite3_vfs_unregister(&vfs);
}

/* The store's VFS, or NULL (SQLite's default) if it cannot be had. */
static const char *
store_vfs(void)
{
	(void)pthread_once(&vfs_once, vfs_register);
	return unix_vfs != NULL ? vfs_name : NULL;
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
sq_open(struct sotp_store *st, const char *path, int oflags)
{
	struct sq_conn *c = NULL;
	int create = (oflags & SOTP_OPEN_CREATE) != 0;
	int flags, sqlrc;
	int rc;

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
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SOTP_ERR_NOMEM;
	st->conn = c;
	if (sotp_strlcpy(st->where, path, sizeof(st->where)) >=
	    sizeof(st->where)) {
		sotp_store_seterr(st, "sqlite store path too long");
		return SOTP_ERR_CONFIG;
	}
	if (create && (rc = precreate(st, path)) != SOTP_OK)
		return rc;
	flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	if (create)
		flags |= SQLITE_OPEN_CREATE;
	if ((sqlrc = sqlite3_open_v2(path, &c->db, flags, store_vfs())) !=
	    SQLITE_OK) {
		sotp_store_seterr(st, "sqlite %s: cannot open: %s", path,
		    c->db != NULL ? sqlite3_errmsg(c->db)
		                  : sqlite3_errstr(sqlrc));
		return map_rc(sqlrc);
	}
	sqlite3_extended_result_codes(c->db, 1);
	/* READWRITE quietly falls back to read-only on a write-protected
	 * file; a store that cannot record a used code must not serve. */
	if (sqlite3_db_readonly(c->db, "main") != 0 &&
	    !(oflags & SOTP_OPEN_READONLY_OK))
		return sotp_store_dberr(
		    st, SOTP_ERR_STORE_UNAVAILABLE, "database is read-only");
	if ((sqlrc = sqlite3_busy_timeout(
	         c->db, (int)st->lim.lock_timeout_ms)) != SQLITE_OK)
		return db_fail(st, sqlrc);
	/* FULL: a committed replay mark or failure count survives a crash. */
	if ((rc = sq_script(st,
	         "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL")) != SOTP_OK)
		return rc;
	/* Schema first: a missing or foreign database is not written to. */
	if (create || !stamped(st)) {
		if ((rc = sotp_store_schema(st, create)) != SOTP_OK)
			return rc;
		stamp(st, oflags);
	}
	if ((rc = set_wal(st)) != SOTP_OK)
		return rc;
	return keep_wal(st);
}

static void
sq_close(struct sotp_store *st)
{
	struct sq_conn *c = st->conn;
	size_t i;

	if (c == NULL)
		return;
	sq_done(st);
	for (i = 0; i < SOTP_Q_COUNT; i++)
		sqlite3_finalize(c->stmt[i]);
	sqlite3_close_v2(c->db);
	free(c);
	st->conn = NULL;
}

/* ---- Backup ---- */

/* One integer or text answer of a statement on db, into out. */
static int
one_answer(sqlite3 *db, const char *sql, char *out, size_t outsz)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *v;
	int ok = 0;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW &&
	    (v = sqlite3_column_text(s, 0)) != NULL) {
		sotp_strlcpy(out, (const char *)v, outsz);
		ok = 1;
	}
	sqlite3_finalize(s);
	return ok ? 0 : -1;
}

/* Makes the copy durable: the file's data, then its directory entry. */
static int
sync_file(const char *path)
{
	char dir[PATH_MAX];
	int fd, ok;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return -1;
	ok = fsync(fd) == 0;
	close(fd);
	if (sotp_dir_of(path, dir, sizeof(dir)) != 0 ||
	    (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	ok = fsync(fd) == 0 && ok;
	close(fd);
	return ok ? 0 : -1;
}

/*
 * SQLite's online backup API, in one step: the copy is read inside one
 * read transaction, a snapshot of the last commit; in WAL mode readers
 * and writers do not block each other, so PAM and radiusd keep accepting
 * codes while it runs (their commits land after the snapshot). A copy in
 * several steps would restart at every commit of another connection, and
 * under load might never end. The copy is then made a single file
 * (rollback journal instead of WAL: the store turns WAL on again when it
 * opens it), checked (quick_check and the schema version) and synced; a
 * copy that fails any of this is removed.
 */
static int
sq_backup(struct sotp_store *st, const char *path)
{
	struct sq_conn *c = st->conn;
	sqlite3 *dst = NULL;
	sqlite3_backup *b = NULL;
	char answer[64], jpath[PATH_MAX + 16];
	int fd, sqlrc, rc = SOTP_ERR_STORE, made = 0;

	fd = open(
	    path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return sotp_store_dberr(st, SOTP_ERR_SYSTEM, "%s: %s", path,
		    errno == EEXIST ? "exists (a backup never overwrites)"
		                    : strerror(errno));
	close(fd);
	made = 1;
	if ((sqlrc = sqlite3_open_v2(path, &dst,
	         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)) !=
	    SQLITE_OK) {
		rc = sotp_store_dberr(
		    st, SOTP_ERR_STORE, "%s: %s", path, sqlite3_errstr(sqlrc));
		goto out;
	}
	if ((b = sqlite3_backup_init(dst, "main", c->db, "main")) == NULL) {
		rc = sotp_store_dberr(
		    st, SOTP_ERR_STORE, "%s: %s", path, sqlite3_errmsg(dst));
		goto out;
	}
	sqlrc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (sqlrc != SQLITE_DONE) {
		rc = sotp_store_dberr(st, map_rc(sqlrc), "%s: copy: %s", path,
		    sqlite3_errstr(sqlrc));
		goto out;
	}
	if (one_answer(dst, "PRAGMA journal_mode=DELETE", answer,
	        sizeof(answer)) != 0 ||
	    strcmp(answer, "delete") != 0 ||
	    one_answer(dst, "PRAGMA quick_check", answer, sizeof(answer)) !=
	        0 ||
	    strcmp(answer, "ok") != 0 ||
	    one_answer(dst, "SELECT version FROM schema_version", answer,
	        sizeof(answer)) != 0 ||
	    atoi(answer) != SOTP_SCHEMA_VERSION) {
		rc = sotp_store_dberr(st, SOTP_ERR_STORE,
		    "%s: the copy does not check out (%s)", path, answer);
		goto out;
	}
	if (sqlite3_close(dst) != SQLITE_OK) {
		rc = sotp_store_dberr(st, SOTP_ERR_STORE, "%s: close", path);
		dst = NULL;
		goto out;
	}
	dst = NULL;
	if (sync_file(path) != 0) {
		rc = sotp_store_dberr(st, SOTP_ERR_SYSTEM, "%s: fsync: %s",
		    path, strerror(errno));
		goto out;
	}
	rc = SOTP_OK;
out:
	if (dst != NULL)
		sqlite3_close_v2(dst);
	if (rc != SOTP_OK && made) {
		unlink(path);
		if (snprintf(jpath, sizeof(jpath), "%s-journal", path) <
		    (int)sizeof(jpath))
			unlink(jpath);
	}
	return rc;
}

const struct sotp_store_driver sotp_store_sqlite_driver = {
    .name = "sqlite",
    .sql = sqlite_sql,
    .stmt_undo = 1,
    .chains = 1,
    .row_locks = 0,
    .open = sq_open,
    .close = sq_close,
    .check = sq_check,
    .exec = sq_exec,
    .next = sq_next,
    .value = sq_value,
    .changes = sq_changes,
    .done = sq_done,
    .script = sq_script,
    .txn_state = sq_txn_state,
    .backup = sq_backup,
};

/*
 * store_pg.c - the PostgreSQL driver of the store ("postgresql://..." or
 * "postgres://..." URLs, or "postgresql:" followed by a libpq key=value
 * connection string): the PostgreSQL dialect (one SQL text per statement
 * id) and the libpq calls that run it. The operations themselves are in
 * store_ops.c.
 *
 * One connection per handle, like the SQLite driver: radiusd keeps one
 * per worker, PAM and the CLI one per call, and a farm of servers shares
 * the database. Nothing relies on a lock that only one machine can see:
 * the compare-and-set updates decide in their WHERE clause, and the reads
 * of a read-then-write are taken with SELECT ... FOR UPDATE
 * (sotp_store_token_lock, _contract_lock). READ COMMITTED is enough for
 * that: a statement that waited for a row lock sees the row as the other
 * transaction committed it. The engine takes the contract before the
 * token in every decision and binding, so two servers cannot deadlock
 * over one contract.
 *
 * Statements are prepared once per connection, on first use. Values travel
 * only as parameters (text, or binary for BIGINT and BYTEA) and every
 * result comes back in binary, so no value is ever spliced into SQL or
 * reparsed.
 *
 * A connection that fails, is lost or hits an error that means the server
 * cannot be used as it stands (shutdown, read-only standby, out of space,
 * lock or statement timeout) is SOTP_ERR_STORE_UNAVAILABLE; the store
 * layer then refuses the rest of the request and reopens at the next one
 * (sotp_store_heal). Messages name the server by host, port, database and
 * user, never by the connection string, which may hold a password.
 *
 * Every round trip has a deadline (the policy's statement_timeout): the
 * statement is sent, and the answer awaited with poll(2), never in a
 * blocking libpq call. The server's own statement_timeout is set to the
 * same value, but it does not cover what matters most here: a COMMIT
 * that waits for a synchronous standby which does not answer (the wait
 * comes after the server has disarmed the timeout), or a server that no
 * longer answers at all. Past the deadline the connection is closed and
 * the request refused; whether that COMMIT reached the standby is then
 * unknown, which is why the request is refused and not answered. A COMMIT
 * that comes back with a WARNING is refused as well: that is how the
 * server says it stopped waiting for the standby (an operator cancelled
 * the wait), with the transaction committed on the primary alone.
 *
 * Unless the URL says otherwise, libpq is asked for
 * target_session_attrs=read-write: with several hosts in the URL
 * ("host=a,b" or "postgresql://a,b/db"), a (re)connection goes to the
 * one that is the primary now, which is how a farm follows a failover.
 */
#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#include <libpq-fe.h>

#include "sotp_int.h"
#include "store_int.h"

/* Serialises two concurrent `init`s on one database (any fixed key). */
#define SCHEMA_LOCK_KEY "736f7470"

/* Type OIDs from the server's catalog (pg_type.dat); stable forever. */
#define OID_BYTEA 17
#define OID_NAME 19
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_VARCHAR 1043

/*
 * The schema, with the meaning of the SQLite one: every integer is a
 * BIGINT (SQLite's INTEGER is 64 bits), blobs are BYTEA, and the UNIQUE
 * on contracts.serial keeps a binding one-to-one.
 */
#define SCHEMA_SQL                                                             \
	"CREATE TABLE schema_version ("                                        \
	" version BIGINT NOT NULL);" KEY_TABLES_SQL "CREATE TABLE tokens ("    \
	" serial TEXT PRIMARY KEY,"                                            \
	" kind TEXT,"                                                          \
	" secret BYTEA NOT NULL,"                                              \
	" algorithm BIGINT,"                                                   \
	" digits BIGINT,"                                                      \
	" period BIGINT,"                                                      \
	" last_step BIGINT NOT NULL DEFAULT -1,"                               \
	" drift BIGINT NOT NULL DEFAULT 0,"                                    \
	" disabled BIGINT NOT NULL DEFAULT 0,"                                 \
	" created BIGINT,"                                                     \
	" kv BIGINT REFERENCES key_dek(version));"                             \
	"CREATE TABLE contracts ("                                             \
	" id TEXT PRIMARY KEY,"                                                \
	" pwhash TEXT NOT NULL,"                                               \
	" login BIGINT NOT NULL,"                                              \
	" serial TEXT UNIQUE REFERENCES tokens(serial),"                       \
	" card BYTEA,"                                                         \
	" failures BIGINT NOT NULL DEFAULT 0,"                                 \
	" locked_until BIGINT NOT NULL DEFAULT 0,"                             \
	" closed BIGINT NOT NULL DEFAULT 0,"                                   \
	" created BIGINT,"                                                     \
	" kv BIGINT REFERENCES key_dek(version));" KV_INDEX_SQL                \
	"CREATE TABLE audit ("                                                 \
	" id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"                 \
	" ts BIGINT,"                                                          \
	" action TEXT,"                                                        \
	" contract TEXT,"                                                      \
	" serial TEXT,"                                                        \
	" context TEXT,"                                                       \
	" verdict TEXT,"                                                       \
	" reason BIGINT,"                                                      \
	" detail TEXT,"                                                        \
	" seq BIGINT,"                                                         \
	" mac BYTEA,"                                                          \
	" keyed BIGINT,"                                                       \
	" kv BIGINT);"                                                         \
	"CREATE INDEX audit_contract_ts ON audit(contract, ts);"               \
	"CREATE INDEX audit_ts ON audit(ts);" AUDIT_CHAIN_SQL                  \
	    AUDIT_HEAD_KV_SQL "CREATE TABLE used_states ("                     \
	" id BYTEA PRIMARY KEY,"                                               \
	" expires BIGINT);"                                                    \
	"CREATE INDEX used_states_expires ON used_states(expires);"            \
	"INSERT INTO schema_version(version) VALUES (3);"

/* Versioned keys, as in SQLite (store_sqlite.c KEY_TABLES_SQL). */
#define KEY_TABLES_SQL                                                         \
	"CREATE TABLE key_dek ("                                               \
	" version BIGINT PRIMARY KEY,"                                         \
	" created BIGINT NOT NULL);"                                           \
	"CREATE TABLE key_wrap ("                                              \
	" version BIGINT NOT NULL,"                                            \
	" kek TEXT NOT NULL,"                                                  \
	" what BIGINT NOT NULL,"                                               \
	" blob BYTEA NOT NULL,"                                                \
	" PRIMARY KEY (version, kek, what));"                                  \
	"CREATE TABLE key_ring ("                                              \
	" k BIGINT PRIMARY KEY CHECK (k = 1),"                                 \
	" current BIGINT NOT NULL REFERENCES key_dek(version),"                \
	" gen BIGINT NOT NULL,"                                                \
	" switched BIGINT NOT NULL);"
#define KV_INDEX_SQL                                                           \
	"CREATE INDEX tokens_kv ON tokens(kv, serial);"                        \
	"CREATE INDEX contracts_kv ON contracts(kv, id);"
#define AUDIT_HEAD_KV_SQL                                                      \
	"ALTER TABLE audit_head ADD COLUMN kv BIGINT NOT NULL DEFAULT 0,"      \
	" ADD COLUMN base_kv BIGINT NOT NULL DEFAULT 0;"

/* The audit chain, as in SQLite (store_sqlite.c AUDIT_CHAIN_SQL). */
#define AUDIT_CHAIN_SQL                                                        \
	"CREATE UNIQUE INDEX audit_seq ON audit(seq);"                         \
	"CREATE INDEX audit_pending ON audit(id)"                              \
	" WHERE seq IS NULL AND keyed = 0;"                                    \
	"CREATE TABLE audit_head ("                                            \
	" k BIGINT PRIMARY KEY CHECK (k = 1),"                                 \
	" seq BIGINT NOT NULL,"                                                \
	" mac BYTEA,"                                                          \
	" tag BYTEA,"                                                          \
	" pending BIGINT NOT NULL,"                                            \
	" base_seq BIGINT NOT NULL,"                                           \
	" base_mac BYTEA,"                                                     \
	" base_tag BYTEA);"                                                    \
	"INSERT INTO audit_head VALUES (1, 0, NULL, NULL, 0, 0, NULL, NULL);"

/* Version 3 to 4, as in SQLite (store_sqlite.c UPGRADE_4_SQL). */
#define UPGRADE_4_SQL                                                          \
	"ALTER TABLE audit ADD COLUMN chain BIGINT;"                           \
	"UPDATE audit SET chain = 1 WHERE keyed IS NOT NULL;"                  \
	"DROP INDEX audit_seq;"                                                \
	"CREATE UNIQUE INDEX audit_seq ON audit(chain, seq);"                  \
	"ALTER TABLE audit_head DROP CONSTRAINT audit_head_k_check;"           \
	"ALTER TABLE audit_head ADD CONSTRAINT audit_head_k_check"             \
	" CHECK (k BETWEEN 1 AND 16);"                                         \
	"INSERT INTO audit_head SELECT k, 0, NULL, NULL, 0, 0, NULL, NULL,"    \
	" 0, 0 FROM generate_series(2, 16) AS k;"                              \
	"UPDATE schema_version SET version = 4;"

/* Version 4 to 5, as in SQLite (store_sqlite.c UPGRADE_5_SQL). */
#define UPGRADE_5_SQL                                                          \
	"ALTER TABLE tokens ADD COLUMN seed_fp BYTEA;"                         \
	"CREATE INDEX tokens_seed_fp ON tokens(seed_fp, kv, serial);"          \
	"CREATE INDEX tokens_seed_unfilled ON tokens(serial)"                  \
	" WHERE seed_fp IS NULL;"                                              \
	"UPDATE schema_version SET version = 5;"

#define UPGRADE_SQL                                                            \
	"ALTER TABLE audit ADD COLUMN seq BIGINT,"                             \
	" ADD COLUMN mac BYTEA, ADD COLUMN keyed BIGINT;" AUDIT_CHAIN_SQL      \
	"UPDATE schema_version SET version = 2;"

/* Version 2 to 3: every value sealed so far is key version 0's. */
#define UPGRADE_3_SQL                                                           \
	KEY_TABLES_SQL                                                          \
	"INSERT INTO key_dek (version, created) VALUES (0, 0);"                 \
	"INSERT INTO key_ring (k, current, gen, switched) VALUES (1, 0, 1, 0);" \
	"ALTER TABLE tokens ADD COLUMN kv BIGINT REFERENCES key_dek(version);"  \
	"UPDATE tokens SET kv = 0;"                                             \
	"ALTER TABLE contracts ADD COLUMN kv BIGINT"                            \
	" REFERENCES key_dek(version);"                                         \
	"UPDATE contracts SET kv = 0 WHERE card IS NOT NULL;" KV_INDEX_SQL      \
	"ALTER TABLE audit ADD COLUMN kv BIGINT;" AUDIT_HEAD_KV_SQL             \
	"UPDATE schema_version SET version = 3;"

/*
 * The PostgreSQL dialect. $N is the Nth parameter the operation passes;
 * its type (text, bigint, bytea) is declared from the parameter when the
 * statement is prepared, so the server never infers a narrower one.
 */
static const char *const pg_sql[SOTP_Q_COUNT] = {
    [SOTP_Q_BEGIN] = "BEGIN",
    [SOTP_Q_COMMIT] = "COMMIT",
    [SOTP_Q_ROLLBACK] = "ROLLBACK",
    [SOTP_Q_SAVEPOINT] = "SAVEPOINT sotp",
    [SOTP_Q_RELEASE] = "RELEASE SAVEPOINT sotp",
    [SOTP_Q_ROLLBACK_TO] = "ROLLBACK TO SAVEPOINT sotp",
    [SOTP_Q_SCHEMA_LOCK] =
        "SELECT pg_advisory_xact_lock(x'" SCHEMA_LOCK_KEY "'::bigint)",
    [SOTP_Q_SCHEMA_FOUND] = "SELECT count(*) FROM pg_catalog.pg_tables"
                            " WHERE schemaname = current_schema()"
                            " AND tablename = 'schema_version'",
    [SOTP_Q_SCHEMA_TABLES] = "SELECT count(*) FROM pg_catalog.pg_tables"
                             " WHERE schemaname = current_schema()",
    [SOTP_Q_SCHEMA_CREATE] = SCHEMA_SQL UPGRADE_4_SQL UPGRADE_5_SQL,
    [SOTP_Q_SCHEMA_VERSION] = "SELECT version FROM schema_version",
    [SOTP_Q_SCHEMA_UPGRADE] = UPGRADE_SQL,
    [SOTP_Q_SCHEMA_UPGRADE_3] = UPGRADE_3_SQL,
    [SOTP_Q_SCHEMA_UPGRADE_4] = UPGRADE_4_SQL,
    [SOTP_Q_SCHEMA_UPGRADE_5] = UPGRADE_5_SQL,
    [SOTP_Q_TOKEN_GET] = SOTP_SQL_TOKEN_SELECT " WHERE t.serial = $1",
    [SOTP_Q_TOKEN_LOCK] = "SELECT 1 FROM tokens WHERE serial = $1"
                          " FOR UPDATE",
    [SOTP_Q_TOKEN_INSERT] = "INSERT INTO tokens (serial, kind, secret,"
                            " algorithm, digits, period, last_step, drift,"
                            " disabled, created, kv, seed_fp)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                            " $10, $11, $12)",
    [SOTP_Q_TOKEN_LIST] = SOTP_SQL_TOKEN_SELECT " ORDER BY t.serial",
    [SOTP_Q_TOKEN_LIST_FREE] = SOTP_SQL_TOKEN_SELECT " WHERE c.id IS NULL"
                                                     " ORDER BY t.serial",
    [SOTP_Q_TOKEN_SET_DRIFT] = "UPDATE tokens SET drift = $2"
                               " WHERE serial = $1",
    /*
     * The replay guard. A racer that waited on the row lock re-evaluates
     * the WHERE clause against the committed row and changes nothing.
     * A disabled token spends no code: a `token disable` committed after
     * the decision read the token (it takes no contract lock) is seen
     * here, or, if it holds the row, waited for and seen in the
     * re-evaluation.
     */
    [SOTP_Q_TOKEN_USE_STEP] = "UPDATE tokens SET last_step = $2,"
                              " drift = $3 WHERE serial = $1"
                              " AND last_step < $2 AND disabled = 0",
    [SOTP_Q_TOKEN_SET_DISABLED] = "UPDATE tokens SET disabled = $2"
                                  " WHERE serial = $1",
    [SOTP_Q_CONTRACT_GET] = SOTP_SQL_CONTRACT_SELECT " WHERE id = $1",
    [SOTP_Q_CONTRACT_LOCK] =
        SOTP_SQL_CONTRACT_SELECT " WHERE id = $1 FOR UPDATE",
    [SOTP_Q_CONTRACT_LOCK_TOKEN] =
        SOTP_SQL_CONTRACT_TOKEN_SELECT " WHERE c.id = $1 FOR UPDATE OF c",
    [SOTP_Q_CONTRACT_INSERT] = "INSERT INTO contracts (id, pwhash, login,"
                               " card, failures, locked_until, closed,"
                               " created, kv)"
                               " VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
                               " NULLIF($9, -1))",
    [SOTP_Q_CONTRACT_SET_PASSWORD] = "UPDATE contracts SET pwhash = $2"
                                     " WHERE id = $1",
    [SOTP_Q_CONTRACT_SET_LOGIN] = "UPDATE contracts SET login = $2"
                                  " WHERE id = $1",
    [SOTP_Q_CONTRACT_SET_CARD] = "UPDATE contracts SET card = $2,"
                                 " kv = NULLIF($3, -1) WHERE id = $1",
    [SOTP_Q_CONTRACT_UNLOCK] = "UPDATE contracts SET failures = 0,"
                               " locked_until = 0 WHERE id = $1",
    [SOTP_Q_CONTRACT_UNLOCK_EXPIRED] = "UPDATE contracts SET failures = 0,"
                                       " locked_until = 0 WHERE id = $1"
                                       " AND locked_until = $2",
    [SOTP_Q_CONTRACT_CLOSE] = "UPDATE contracts SET closed = 1"
                              " WHERE id = $1 AND serial IS NULL",
    [SOTP_Q_CONTRACT_RESET_FAILURES] = "UPDATE contracts SET failures = 0"
                                       " WHERE id = $1",
    /* As in SQLite: ">=" so a run-out lock whose count stayed relocks. */
    [SOTP_Q_CONTRACT_FAIL] = "UPDATE contracts SET failures = failures + 1,"
                             " locked_until = CASE WHEN $2 > 0 AND"
                             " failures + 1 >= $2 THEN $3"
                             " ELSE locked_until END"
                             " WHERE id = $1"
                             " RETURNING failures, locked_until",
    [SOTP_Q_CONTRACT_BIND] = "UPDATE contracts SET serial = $2, login = $3,"
                             " failures = 0 WHERE id = $1"
                             " AND serial IS NULL AND closed = 0",
    [SOTP_Q_CONTRACT_UNBIND] = "UPDATE contracts SET serial = NULL"
                               " WHERE id = $1 AND serial = $2",
    /* $1 locked only (at $2), $3 closed = $3 or any (-1). */
    [SOTP_Q_CONTRACT_LIST] = SOTP_SQL_CONTRACT_SELECT
    " WHERE ($1 = 0 OR locked_until = -1 OR locked_until > $2)"
    " AND ($3 < 0 OR closed = $3) ORDER BY id",
    [SOTP_Q_CONTRACT_PWHASH_SAMPLE] = "SELECT pwhash FROM contracts LIMIT 1",
    /*
     * The used-state marks (16-byte ids) and, beside them, two rows with
     * one-byte ids: '\x00' the horizon (the highest expiry ever purged),
     * '\x01' when the last purge ran (sotp_store_state_use). A use reads
     * them FOR SHARE and a purger FOR UPDATE, so that uses run side by
     * side and only a purge, once a minute, waits for them and they for
     * it: a use that read the horizon can never see its mark purged under
     * it, and one that waited for a purge reads the horizon it raised.
     */
    [SOTP_Q_STATE_MARKS] = "SELECT id, expires FROM used_states"
                           " WHERE id IN ('\\x00'::bytea, '\\x01'::bytea)"
                           " FOR SHARE",
    [SOTP_Q_STATE_MARKS_PURGER] = "SELECT id, expires FROM used_states"
                                  " WHERE id IN ('\\x00'::bytea,"
                                  " '\\x01'::bytea) FOR UPDATE",
    [SOTP_Q_STATE_MARKS_INIT] = "INSERT INTO used_states (id, expires)"
                                " VALUES ('\\x00'::bytea, 0),"
                                " ('\\x01'::bytea, 0)"
                                " ON CONFLICT (id) DO NOTHING",
    [SOTP_Q_STATE_HORIZON_RAISE] = "UPDATE used_states SET expires ="
                                   " greatest(expires, (SELECT"
                                   " max(expires) FROM used_states"
                                   " WHERE expires < $1"
                                   " AND length(id) = 16))"
                                   " WHERE id = '\\x00'::bytea",
    [SOTP_Q_STATE_PURGE] = "DELETE FROM used_states WHERE expires < $1"
                           " AND length(id) = 16",
    [SOTP_Q_STATE_PURGED_AT] = "UPDATE used_states SET expires = $1"
                               " WHERE id = '\\x01'::bytea",
    [SOTP_Q_CONTRACT_REHASH] = "UPDATE contracts SET pwhash = $3"
                               " WHERE id = $1 AND pwhash = $2",
    [SOTP_Q_CONTRACT_RESEAL_CARD] = "UPDATE contracts SET card = $3, kv = $4"
                                    " WHERE id = $1 AND card = $2",
    /* Waits for a concurrent insert of the same id, then does nothing. */
    [SOTP_Q_STATE_INSERT] = "INSERT INTO used_states (id, expires)"
                            " VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    [SOTP_Q_STATE_GET] = "SELECT expires FROM used_states WHERE id = $1",
    [SOTP_Q_STATE_DELETE] = "DELETE FROM used_states WHERE id = $1",
    [SOTP_Q_AUDIT_ADD] = "INSERT INTO audit (ts, action, contract, serial,"
                         " context, verdict, reason, detail, seq, mac,"
                         " keyed, kv, chain)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
                         " NULLIF($9, 0), $10, $11, NULLIF($12, -1), $13)",
    [SOTP_Q_AUDIT_LIST] = SOTP_SQL_AUDIT_SELECT " WHERE ts >= $1 AND ts <= $2"
                                                " ORDER BY ts, id",
    [SOTP_Q_AUDIT_LIST_CONTRACT] =
        SOTP_SQL_AUDIT_SELECT " WHERE contract = $3 AND"
                              " ts >= $1 AND ts <= $2"
                              " ORDER BY ts, id",
    [SOTP_Q_AUDIT_HEAD] = SOTP_SQL_AUDIT_HEAD_SELECT " WHERE k = $1",
    /*
     * An append takes its chain's head row (audit.c: a contract's rows go
     * to one of SOTP_AUDIT_CHAINS chains), reads and extends it inside
     * the decision's own transaction, and the next append to that chain
     * waits for that commit and reads the head it left (READ COMMITTED
     * re-reads a row it waited for).
     */
    [SOTP_Q_AUDIT_HEAD_LOCK] = SOTP_SQL_AUDIT_HEAD_SELECT " WHERE k = $1"
                                                          " FOR UPDATE",
    [SOTP_Q_AUDIT_HEAD_SET] = "UPDATE audit_head SET seq = $1, mac = $2,"
                              " tag = $3, pending = $4, base_seq = $5,"
                              " base_mac = $6, base_tag = $7, kv = $8,"
                              " base_kv = $9 WHERE k = $10",
    [SOTP_Q_AUDIT_PENDING] = SOTP_SQL_AUDIT_CHAIN_SELECT
    " WHERE chain = $1 AND seq IS NULL AND keyed = 0 ORDER BY id LIMIT 1",
    [SOTP_Q_AUDIT_LINK] = "UPDATE audit SET seq = $2, mac = $3, kv = $4"
                          " WHERE id = $1 AND seq IS NULL AND keyed = 0",
    [SOTP_Q_AUDIT_WALK] =
        SOTP_SQL_AUDIT_CHAIN_SELECT " WHERE chain = $1 AND seq > $2"
                                    " ORDER BY seq",
    [SOTP_Q_AUDIT_COUNTS] = "SELECT (SELECT count(*) FROM audit"
                            " WHERE seq IS NULL AND keyed = 0),"
                            " (SELECT count(*) FROM audit"
                            " WHERE keyed IS NULL)",
    [SOTP_Q_AUDIT_PRUNE_POINT] = "SELECT min(seq) FROM audit"
                                 " WHERE chain = $2 AND seq IS NOT NULL"
                                 " AND ts >= $1",
    [SOTP_Q_AUDIT_MAC_AT] = "SELECT mac FROM audit WHERE chain = $2"
                            " AND seq = $1",
    [SOTP_Q_AUDIT_PRUNE] = "DELETE FROM audit WHERE (chain = $3"
                           " AND seq <= $1)"
                           " OR (keyed IS NULL AND ts < $2)",
    [SOTP_Q_AUDIT_STRAY] = SOTP_SQL_AUDIT_STRAY,
    /*
     * The keyring. A change (a version made current, one retired, a KEK
     * added or dropped) takes the ring row FOR UPDATE, so two rotations
     * never interleave; readers take no lock. A batch of re-sealing locks
     * its rows and skips those a decision holds: they come in a later
     * batch, and the decision is never made to wait.
     */
    [SOTP_Q_KEY_RING] = SOTP_SQL_KEY_RING_SELECT,
    [SOTP_Q_KEY_RING_LOCK] = SOTP_SQL_KEY_RING_SELECT " FOR UPDATE",
    [SOTP_Q_KEY_RING_INIT] = "INSERT INTO key_ring (k, current, gen,"
                             " switched) VALUES (1, $1, 1, $2)",
    [SOTP_Q_KEY_RING_SET] = "UPDATE key_ring SET current = $1,"
                            " switched = $2, gen = gen + 1 WHERE k = 1",
    [SOTP_Q_KEY_RING_BUMP] = "UPDATE key_ring SET gen = gen + 1"
                             " WHERE k = 1",
    [SOTP_Q_KEY_LIVE] = "SELECT version, created FROM key_dek"
                        " ORDER BY version",
    [SOTP_Q_KEY_ADD] = "INSERT INTO key_dek (version, created)"
                       " VALUES ($1, $2)",
    [SOTP_Q_KEY_RETIRE_WRAPS] = "DELETE FROM key_wrap WHERE version = $1"
                                " AND what = 1",
    [SOTP_Q_KEY_RETIRE] = "DELETE FROM key_dek WHERE version = $1",
    [SOTP_Q_KEY_WRAPS] = "SELECT version, kek, what, blob FROM key_wrap"
                         " ORDER BY version, kek, what",
    [SOTP_Q_KEY_WRAP_GET] = "SELECT blob FROM key_wrap WHERE version = $1"
                            " AND kek = $2 AND what = $3",
    [SOTP_Q_KEY_WRAP_PUT] = "INSERT INTO key_wrap (version, kek, what,"
                            " blob) VALUES ($1, $2, $3, $4)",
    [SOTP_Q_KEY_WRAP_DROP] = "DELETE FROM key_wrap WHERE kek = $1",
    [SOTP_Q_KEY_COUNTS] = SOTP_SQL_KEY_COUNTS,
    [SOTP_Q_KEY_OLD_TOKENS] = "SELECT serial, kv, secret FROM tokens"
                              " WHERE kv < $1 ORDER BY kv, serial"
                              " LIMIT $2 FOR UPDATE SKIP LOCKED",
    [SOTP_Q_KEY_OLD_CARDS] = "SELECT id, kv, card FROM contracts"
                             " WHERE kv < $1 ORDER BY kv, id LIMIT $2"
                             " FOR UPDATE SKIP LOCKED",
    /* A token's fingerprint moves with its seal, in the same write. */
    [SOTP_Q_KEY_RESEAL_TOKEN] = "UPDATE tokens SET secret = $2, kv = $3,"
                                " seed_fp = $5"
                                " WHERE serial = $1 AND kv = $4",
    [SOTP_Q_KEY_RESEAL_CARD] = "UPDATE contracts SET card = $2, kv = $3"
                               " WHERE id = $1 AND kv = $4",
    [SOTP_Q_KEY_LEFT] = "SELECT (SELECT count(*) FROM tokens"
                        " WHERE kv < $1) + (SELECT count(*)"
                        " FROM contracts WHERE kv < $1)",
    [SOTP_Q_KEY_USED] = "SELECT (SELECT count(*) FROM tokens"
                        " WHERE kv = $1) + (SELECT count(*)"
                        " FROM contracts WHERE kv = $1)",
    [SOTP_Q_KEY_LOAD] = SOTP_SQL_KEY_LOAD "$1 WHERE r.k = 1"
                                          " ORDER BY d.version",
    [SOTP_Q_SEED_FIND] = "SELECT serial FROM tokens WHERE seed_fp = $1"
                         " AND kv = $2 ORDER BY serial LIMIT 1",
    [SOTP_Q_SEED_UNFILLED] = "SELECT serial FROM tokens"
                             " WHERE seed_fp IS NULL LIMIT 1",
    [SOTP_Q_SEED_TODO] = "SELECT serial, kv, secret FROM tokens"
                         " WHERE seed_fp IS NULL ORDER BY serial"
                         " LIMIT $1",
    [SOTP_Q_SEED_SET] = "UPDATE tokens SET seed_fp = $2 WHERE serial = $1"
                        " AND kv = $3 AND seed_fp IS NULL",
    [SOTP_Q_SEED_SHARED] = SOTP_SQL_SEED_SHARED,
};

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
	X(PQsetNoticeReceiver)                                                 \
	X(PQfinish)                                                            \
	X(PQstatus)                                                            \
	X(PQtransactionStatus)                                                 \
	X(PQerrorMessage)                                                      \
	X(PQhost)                                                              \
	X(PQport)                                                              \
	X(PQdb)                                                                \
	X(PQuser)                                                              \
	X(PQsendQuery)                                                         \
	X(PQsendQueryParams)                                                   \
	X(PQsendPrepare)                                                       \
	X(PQsendQueryPrepared)                                                 \
	X(PQgetResult)                                                         \
	X(PQconsumeInput)                                                      \
	X(PQisBusy)                                                            \
	X(PQsocket)                                                            \
	X(PQresultStatus)                                                      \
	X(PQresultErrorMessage)                                                \
	X(PQresultErrorField)                                                  \
	X(PQclear)                                                             \
	X(PQcmdTuples)                                                         \
	X(PQntuples)                                                           \
	X(PQftype)                                                             \
	X(PQgetisnull)                                                         \
	X(PQgetvalue)                                                          \
	X(PQgetlength)                                                         \
	X(PQenterPipelineMode)                                                 \
	X(PQexitPipelineMode)                                                  \
	X(PQpipelineSync)

struct pq_api {
#define PQ_MEMBER(f) __typeof__(f) *f;
	PQ_FUNCS(PQ_MEMBER)
#undef PQ_MEMBER
};

#define PG_DEFER_MAX 8

/* A statement held back, its parameters' values copied. */
struct pg_deferred {
	int id;
	int n;
	char *copy; /* the values (malloc), wiped when freed */
	size_t copylen;
	const char *v[SOTP_STORE_MAX_PARAMS];
	int len[SOTP_STORE_MAX_PARAMS], fmt[SOTP_STORE_MAX_PARAMS];
};

struct pg_conn {
	struct pq_api pq;
	void *dl;     /* the dlopen handle of libpq */
	PGconn *conn; /* NULL once dropped (a deadline passed) */
	unsigned char prepared[SOTP_Q_COUNT];
	PGresult *res; /* the statement under way */
	int row;       /* its current row; -1 before the first */
	int warned;    /* the server sent a WARNING during the statement */
	/* Statements not sent yet (see deferrable) */
	struct pg_deferred deferred[PG_DEFER_MAX];
	int ndeferred;
};

/* The first line of a libpq message, without its trailing newline. */
static void
first_line(const char *msg, char *out, size_t outsz)
{
	size_t n;

	if (msg == NULL)
		msg = "";
	n = strcspn(msg, "\n");
	if (n < outsz) {
		memcpy(out, msg, n);
		out[n] = '\0';
		return;
	}
	memcpy(out, msg, outsz - 1);
	out[outsz - 1] = '\0';
	sotp_mark_cut(out, outsz, n); /* a long message's cut shows */
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
	if (conn == NULL)
		return SOTP_ERR_STORE_UNAVAILABLE;
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
db_fail(struct sotp_store *st, const PGresult *res)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	char msg[SOTP_STORE_ERR_MAX];

	first_line(res != NULL ? pq->PQresultErrorMessage(res) : NULL, msg,
	    sizeof(msg));
	if (msg[0] == '\0' && c->conn != NULL)
		first_line(pq->PQerrorMessage(c->conn), msg, sizeof(msg));
	return sotp_store_dberr(st,
	    map_state(pq, c->conn,
	        res != NULL ? pq->PQresultErrorField(res, PG_DIAG_SQLSTATE)
	                    : NULL),
	    "%s", msg[0] != '\0' ? msg : "unknown error");
}

static int
ok_result(const struct pq_api *pq, const PGresult *res)
{
	return res != NULL &&
	    (pq->PQresultStatus(res) == PGRES_COMMAND_OK ||
	        pq->PQresultStatus(res) == PGRES_TUPLES_OK);
}

/* ---- Round trips with a deadline ---- */

/* Frees the statements held back (sent or never to be). */
static void
forget_deferred(struct pg_conn *c)
{
	int i;

	for (i = 0; i < c->ndeferred; i++) {
		if (c->deferred[i].copy != NULL) {
			sotp_wipe(c->deferred[i].copy, c->deferred[i].copylen);
			free(c->deferred[i].copy);
		}
		c->deferred[i].copy = NULL;
	}
	c->ndeferred = 0;
}

/* Closes a connection whose state is no longer known; the handle is lost. */
static void
drop(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;

	if (c->res != NULL)
		c->pq.PQclear(c->res);
	c->res = NULL;
	if (c->conn != NULL)
		c->pq.PQfinish(c->conn);
	c->conn = NULL;
	forget_deferred(c);
}

/*
 * Waits until the connection has input or the deadline (monotonic µs);
 * 0 on input, SOTP_ERR_STORE_UNAVAILABLE when the time is up or the
 * socket failed.
 */
static int
wait_input(struct pg_conn *c, uint64_t deadline)
{
	struct pollfd pfd;
	uint64_t now;
	int r;

	pfd.fd = c->pq.PQsocket(c->conn);
	pfd.events = POLLIN;
	if (pfd.fd < 0)
		return SOTP_ERR_STORE_UNAVAILABLE;
	for (;;) {
		if ((now = sotp_monotonic_us()) >= deadline)
			return SOTP_ERR_STORE_UNAVAILABLE;
		pfd.revents = 0;
		/* Round up: never spin on a sub-millisecond remainder. */
		r = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
		if (r > 0)
			return SOTP_OK;
		if (r < 0 && errno != EINTR)
			return SOTP_ERR_STORE_UNAVAILABLE;
	}
}

/*
 * Collects the results of the statement just sent, until the deadline.
 * *out is the result to report: the first that failed, else the last.
 * Past the deadline the connection is dropped.
 */
static int
await_result(struct sotp_store *st, PGresult **out)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	uint64_t deadline =
	    sotp_monotonic_us() + (uint64_t)st->lim.statement_timeout_ms * 1000;
	PGresult *r, *keep = NULL;

	*out = NULL;
	for (;;) {
		while (pq->PQisBusy(c->conn)) {
			if (wait_input(c, deadline) != SOTP_OK) {
				if (keep != NULL)
					pq->PQclear(keep);
				drop(st);
				return sotp_store_dberr(st,
				    SOTP_ERR_STORE_UNAVAILABLE,
				    "no answer within %u ms (statement_timeout);"
				    " connection closed",
				    st->lim.statement_timeout_ms);
			}
			if (!pq->PQconsumeInput(c->conn))
				break; /* PQgetResult reports the failure */
		}
		if ((r = pq->PQgetResult(c->conn)) == NULL)
			break;
		if (keep == NULL || ok_result(pq, keep)) {
			if (keep != NULL)
				pq->PQclear(keep);
			keep = r;
		} else {
			pq->PQclear(r);
		}
		/* A dead connection may not end its result list. */
		if (pq->PQstatus(c->conn) == CONNECTION_BAD)
			break;
	}
	*out = keep;
	return SOTP_OK;
}

/*
 * Deferred statements (issue 13). Inside a transaction, a SAVEPOINT or a
 * RELEASE answers nothing the caller needs before its next statement: a
 * healthy transaction does not refuse one. Nor does a change run by
 * sotp_db_run_deferred (its caller reads no row and no count, and runs
 * another statement before it returns). So none of them is sent alone:
 * it waits in c->deferred (its parameters copied) and goes out with the
 * next statement in one pipeline (libpq's pipeline mode, one Sync), one
 * round trip for all. Every result of the pipeline is read and checked
 * before the statement that carried it returns, so a COMMIT (never
 * deferred) returns only after everything before it was done.
 *
 * A deferred change that fails makes the carrying statement fail with
 * its error, inside the operation that ran both. A deferred SAVEPOINT or
 * RELEASE that fails all the same leaves the transaction's state unknown
 * to the layers above (whose savepoint was undone, which depth holds):
 * the connection is then closed, the server rolls the whole transaction
 * back, and the store is unavailable until it heals; fail closed. Never
 * deferred: a statement outside a healthy transaction, or one not yet
 * prepared on this connection.
 */
static int
deferrable(struct sotp_store *st, int id, size_t n)
{
	struct pg_conn *c = st->conn;

	return id >= 0 &&
	    (((id == SOTP_Q_SAVEPOINT || id == SOTP_Q_RELEASE) && n == 0) ||
	        st->defer) &&
	    c->prepared[id] && c->ndeferred < PG_DEFER_MAX &&
	    c->pq.PQtransactionStatus(c->conn) == PQTRANS_INTRANS;
}

/* Holds statement id back, with a copy of its n values. */
static int
defer(struct sotp_store *st, int id, size_t n, const char *const *v,
    const int *len, const int *fmt)
{
	struct pg_conn *c = st->conn;
	struct pg_deferred *d = &c->deferred[c->ndeferred];
	size_t i, total = 0, k[SOTP_STORE_MAX_PARAMS];
	char *at;

	memset(d, 0, sizeof(*d));
	for (i = 0; i < n; i++) {
		k[i] = v[i] == NULL ? 0
		    : fmt[i]        ? (size_t)len[i]
		                    : strlen(v[i]) + 1;
		total += k[i];
	}
	if (total > 0 && (d->copy = malloc(total)) == NULL)
		return sotp_store_dberr(st, SOTP_ERR_NOMEM, "out of memory");
	d->copylen = total;
	for (i = 0, at = d->copy; i < n; i++) {
		d->v[i] = NULL;
		if (v[i] != NULL) {
			memcpy(at, v[i], k[i]);
			d->v[i] = at;
			at += k[i];
		}
		d->len[i] = len[i];
		d->fmt[i] = fmt[i];
	}
	d->id = id;
	d->n = (int)n;
	c->ndeferred++;
	return SOTP_OK;
}

/* Reads a pipeline's closing Sync and leaves pipeline mode. */
static int
await_sync(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	PGresult *r = NULL;
	int i, synced = 0;

	/* A NULL may stand between the last statement and the Sync. */
	for (i = 0; i < 2 && !synced; i++) {
		if (await_result(st, &r) != SOTP_OK)
			return SOTP_ERR_STORE_UNAVAILABLE; /* dropped */
		if (r == NULL)
			continue;
		synced = pq->PQresultStatus(r) == PGRES_PIPELINE_SYNC;
		pq->PQclear(r);
		r = NULL;
	}
	if (!synced || !pq->PQexitPipelineMode(c->conn)) {
		drop(st);
		return sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
		    "pipeline out of step; connection closed");
	}
	return SOTP_OK;
}

/*
 * Sends the deferred statements, then the prepared statement name (none:
 * NULL) with its parameters, and one Sync; reads every result. The
 * statement's own result is left in c->res.
 */
static int
run_pipeline(struct sotp_store *st, const char *name, int n,
    const char *const *v, const int *len, const int *fmt)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	PGresult *r = NULL, *bad = NULL;
	struct pg_deferred *d;
	char dname[16], msg[256];
	int i, nd = c->ndeferred, sent = 1, fatal = 0, rc;
	int kinds[PG_DEFER_MAX]; /* 1: a SAVEPOINT or RELEASE */

	for (i = 0; i < nd; i++)
		kinds[i] = c->deferred[i].id == SOTP_Q_SAVEPOINT ||
		    c->deferred[i].id == SOTP_Q_RELEASE;
	if (!pq->PQenterPipelineMode(c->conn))
		sent = 0;
	for (i = 0; sent && i < nd; i++) {
		d = &c->deferred[i];
		snprintf(dname, sizeof(dname), "sotp%d", d->id);
		sent = pq->PQsendQueryPrepared(
		    c->conn, dname, d->n, d->v, d->len, d->fmt, 1);
	}
	/* Sent (libpq holds them now) or not: forgotten either way. */
	forget_deferred(c);
	if (sent && name != NULL)
		sent =
		    pq->PQsendQueryPrepared(c->conn, name, n, v, len, fmt, 1);
	if (sent)
		sent = pq->PQpipelineSync(c->conn);
	if (!sent) {
		first_line(pq->PQerrorMessage(c->conn), msg, sizeof(msg));
		drop(st);
		return sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
		    "pipeline not sent: %s; connection closed", msg);
	}
	st->round_trips++;
	for (i = 0; i < nd; i++) {
		if ((rc = await_result(st, &r)) != SOTP_OK)
			goto out;
		if (bad == NULL && !ok_result(pq, r)) {
			bad = r;
			fatal = kinds[i];
		} else if (r != NULL) {
			/* A SAVEPOINT or RELEASE skipped after the failure. */
			if (bad != NULL && kinds[i])
				fatal = 1;
			pq->PQclear(r);
		}
		r = NULL;
	}
	if (name != NULL && (rc = await_result(st, &c->res)) != SOTP_OK)
		goto out;
	if ((rc = await_sync(st)) != SOTP_OK)
		goto out;
	if (bad != NULL && !fatal) {
		/* The carrying statement fails with the deferred one's error.
		 */
		if (c->res != NULL)
			pq->PQclear(c->res);
		c->res = bad;
		bad = NULL;
		rc = db_fail(st, c->res);
		goto out;
	}
	if (bad != NULL) {
		first_line(pq->PQresultErrorMessage(bad), msg, sizeof(msg));
		drop(st);
		rc = sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
		    "a deferred savepoint statement failed: %s; connection"
		    " closed",
		    msg);
		goto out;
	}
	rc = SOTP_OK;
out:
	if (bad != NULL)
		pq->PQclear(bad);
	return rc;
}

/* Sends what is deferred, alone. */
static int
flush_deferred(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;

	if (c->ndeferred == 0 || c->conn == NULL)
		return SOTP_OK;
	return run_pipeline(st, NULL, 0, NULL, NULL, NULL);
}

/* ---- The driver ---- */

static int
pg_exec(struct sotp_store *st, int id, const char *sql,
    const struct sotp_param *p, size_t n)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	const char *v[SOTP_STORE_MAX_PARAMS];
	int len[SOTP_STORE_MAX_PARAMS], fmt[SOTP_STORE_MAX_PARAMS];
	Oid types[SOTP_STORE_MAX_PARAMS];
	uint64_t be[SOTP_STORE_MAX_PARAMS];
	PGresult *res;
	char name[16];
	size_t i;
	int rc;

	c->row = -1;
	if (c->conn == NULL)
		return sotp_store_dberr(
		    st, SOTP_ERR_STORE_UNAVAILABLE, "connection closed");
	for (i = 0; i < n; i++) {
		switch (p[i].type) {
		case SOTP_P_INT:
			types[i] = OID_INT8;
			be[i] = htobe64((uint64_t)p[i].i);
			v[i] = (const char *)&be[i];
			len[i] = 8;
			fmt[i] = 1;
			break;
		case SOTP_P_BLOB:
			types[i] = OID_BYTEA;
			v[i] = p[i].len > 0 ? p[i].p : NULL;
			len[i] = (int)p[i].len;
			fmt[i] = 1;
			break;
		case SOTP_P_TEXT:
		default:
			types[i] = OID_TEXT;
			v[i] = p[i].p;
			len[i] = 0;
			fmt[i] = 0;
			break;
		}
	}
	if (deferrable(st, id, n))
		return defer(st, id, n, v, len, fmt);
	if (c->ndeferred > 0 && (id < 0 || !c->prepared[id]) &&
	    (rc = flush_deferred(st)) != SOTP_OK)
		return rc;
	if (id >= 0) {
		snprintf(name, sizeof(name), "sotp%d", id);
		if (!c->prepared[id]) {
			st->round_trips++;
			if (!pq->PQsendPrepare(
			        c->conn, name, sql, (int)n, types))
				return db_fail(st, NULL);
			if ((rc = await_result(st, &res)) != SOTP_OK)
				return rc;
			if (res == NULL ||
			    pq->PQresultStatus(res) != PGRES_COMMAND_OK) {
				c->res = res;
				return db_fail(st, res);
			}
			pq->PQclear(res);
			c->prepared[id] = 1;
		}
	}
	c->warned = 0;
	if (c->ndeferred > 0) {
		/* Prepared (else flushed above): it carries what waits. */
		if ((rc = run_pipeline(st, name, (int)n, v, len, fmt)) !=
		    SOTP_OK)
			return rc;
	} else {
		st->round_trips++;
		if (!(id < 0 ? pq->PQsendQueryParams(
		                   c->conn, sql, (int)n, types, v, len, fmt, 1)
		             : pq->PQsendQueryPrepared(
		                   c->conn, name, (int)n, v, len, fmt, 1)))
			return db_fail(st, NULL);
		if ((rc = await_result(st, &c->res)) != SOTP_OK)
			return rc;
	}
	if (!ok_result(pq, c->res))
		return db_fail(st, c->res);
	/* See the head comment: committed on the primary alone, perhaps. */
	if (id == SOTP_Q_COMMIT && c->warned)
		return sotp_store_dberr(st, SOTP_ERR_STORE_UNAVAILABLE,
		    "COMMIT came back with a warning (the wait for a "
		    "synchronous standby was cancelled?): not trusted");
	return SOTP_OK;
}

static int
pg_next(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;

	/* A deferred statement has no result yet, and no rows. */
	if (c->res == NULL)
		return 0;
	return ++c->row < c->pq.PQntuples(c->res) ? 1 : 0;
}

/* An integer column (binary, big-endian) of 2, 4 or 8 bytes. */
static int
int_value(const char *b, int n, int64_t *out)
{
	uint64_t u = 0;
	int i;

	if (n != 2 && n != 4 && n != 8)
		return -1;
	for (i = 0; i < n; i++)
		u = u << 8 | (uint8_t)b[i];
	/* Sign-extend the narrower ones. */
	if (n < 8 && (u >> (8 * n - 1)) != 0)
		u |= ~(uint64_t)0 << (8 * n);
	memcpy(out, &u, sizeof(*out));
	return 0;
}

static void
pg_value(struct sotp_store *st, int col, struct sotp_value *v)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	const char *b;
	int n;

	memset(v, 0, sizeof(*v));
	if (pq->PQgetisnull(c->res, c->row, col)) {
		v->type = SOTP_V_NULL;
		return;
	}
	b = pq->PQgetvalue(c->res, c->row, col);
	n = pq->PQgetlength(c->res, c->row, col);
	v->type = SOTP_V_OTHER;
	switch (pq->PQftype(c->res, col)) {
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
		if (int_value(b, n, &v->i) == 0)
			v->type = SOTP_V_INT;
		break;
	case OID_TEXT:
	case OID_VARCHAR:
	case OID_NAME:
		/* libpq ends every value with a NUL, binary ones too. */
		v->type = SOTP_V_TEXT;
		break;
	case OID_BYTEA:
		v->type = SOTP_V_BLOB;
		break;
	default:
		break;
	}
	if (v->type == SOTP_V_TEXT || v->type == SOTP_V_BLOB) {
		v->p = b;
		v->len = n > 0 ? (size_t)n : 0;
	}
}

/* The number of rows a command changed ("" for a SELECT reads as 0). */
static int64_t
pg_changes(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;
	const char *s = c->res != NULL ? c->pq.PQcmdTuples(c->res) : NULL;

	return s != NULL && s[0] != '\0' ? strtoll(s, NULL, 10) : 0;
}

static void
pg_done(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;

	if (c->res != NULL)
		c->pq.PQclear(c->res);
	c->res = NULL;
}

/* Runs sql (one or several statements) and hands over its result. */
static int
query(struct sotp_store *st, const char *sql, PGresult **res)
{
	struct pg_conn *c = st->conn;
	int rc;

	*res = NULL;
	if (c->conn == NULL)
		return sotp_store_dberr(
		    st, SOTP_ERR_STORE_UNAVAILABLE, "connection closed");
	if ((rc = flush_deferred(st)) != SOTP_OK)
		return rc;
	st->round_trips++;
	if (!c->pq.PQsendQuery(c->conn, sql))
		return db_fail(st, NULL);
	if ((rc = await_result(st, res)) != SOTP_OK)
		return rc;
	return ok_result(&c->pq, *res) ? SOTP_OK : db_fail(st, *res);
}

static int
pg_script(struct sotp_store *st, const char *sql)
{
	struct pg_conn *c = st->conn;
	PGresult *res = NULL;
	int rc = query(st, sql, &res);

	if (res != NULL)
		c->pq.PQclear(res);
	return rc;
}

static int
pg_txn_state(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;

	if (c->conn == NULL)
		return 0;
	switch (c->pq.PQtransactionStatus(c->conn)) {
	case PQTRANS_INTRANS:
	case PQTRANS_ACTIVE:
		return 1;
	case PQTRANS_INERROR:
		return -1;
	default:
		return 0;
	}
}

/* A connection already known dead is refused before it is used. */
static int
pg_check(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;

	if (c->conn == NULL || c->pq.PQstatus(c->conn) != CONNECTION_OK)
		return sotp_store_dberr(
		    st, SOTP_ERR_STORE_UNAVAILABLE, "connection lost");
	return SOTP_OK;
}

/* ---- Open and close ---- */

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
set_name(struct sotp_store *st)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	const char *host = pq->PQhost(c->conn), *port = pq->PQport(c->conn);
	const char *db = pq->PQdb(c->conn), *user = pq->PQuser(c->conn);

	snprintf(st->where, sizeof(st->where),
	    "host=%s port=%s dbname=%s user=%s",
	    host != NULL && host[0] != '\0' ? host : "(default)",
	    port != NULL && port[0] != '\0' ? port : "(default)",
	    db != NULL ? db : "", user != NULL ? user : "");
}

/*
 * libpq prints server notices to stderr by default; the core never writes
 * to the host's stderr (PAM and radiusd own it), so they are not printed,
 * only noted when they are warnings (see pg_exec).
 */
static void
on_notice(void *arg, const PGresult *res)
{
	struct pg_conn *c = arg;
	const char *sev =
	    c->pq.PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

	if (sev != NULL && strcmp(sev, "WARNING") == 0)
		c->warned = 1;
}

/*
 * Fills c->pq from libpq, loaded on first use. RTLD_NODELETE keeps it
 * mapped after the last handle closes: unloading a library that holds
 * thread-local state (libpq's Kerberos and TLS dependencies do) under a
 * running host is asking for trouble, and the next open would map it
 * again anyway.
 */
static int
load_libpq(struct sotp_store *st, struct pg_conn *c)
{
	const char *missing = NULL;

	c->dl = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (c->dl == NULL) {
		sotp_store_seterr(st, "postgresql: cannot load %s: %s",
		    LIBPQ_SONAME, dlerror());
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
#define PQ_LOAD(f)                                                             \
	if ((*(void **)(void *)&c->pq.f = dlsym(c->dl, #f)) == NULL &&         \
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

extern char **environ;

/*
 * libpq takes what the URL leaves unsaid from the environment
 * (PGHOSTADDR, PGSSLROOTCERT, PGSERVICEFILE with PGSERVICE, ...). A
 * setuid or setgid host (su, sudo: AT_SECURE) runs with its caller's
 * environment, and through it the caller could send the PAM module to a
 * server of his own that says what he likes of any contract. There, any
 * PG* variable refuses the store: 1 and its name (never its value, which
 * may be PGPASSWORD's) in name[namesz]; else 0.
 */
static int
caller_pg_env(char *name, size_t namesz)
{
	char **e;

	if (getauxval(AT_SECURE) == 0)
		return 0;
	for (e = environ; e != NULL && *e != NULL; e++)
		if (strncmp(*e, "PG", 2) == 0) {
			snprintf(
			    name, namesz, "%.*s", (int)strcspn(*e, "="), *e);
			return 1;
		}
	return 0;
}

/*
 * Connects with conninfo, taking libpq's defaults for what the URL does
 * not say; the password is only used to keep it out of messages.
 */
static int
connect_db(struct sotp_store *st, const char *conninfo, const char *password,
    int flags)
{
	struct pg_conn *c = st->conn;
	const struct pq_api *pq = &c->pq;
	char timeout[16], msg[256];
	/* Defaults first: a value in the URL overrides them. */
	const char *keys[] = {"connect_timeout", "target_session_attrs",
	    "fallback_application_name", "dbname", NULL};
	const char *vals[] = {timeout,
	    flags & SOTP_OPEN_READONLY_OK ? "any" : "read-write", "shinkin-otp",
	    conninfo, NULL};

	if (caller_pg_env(msg, sizeof(msg))) {
		sotp_store_seterr(st,
		    "postgresql: %s is set in the environment of a setuid or "
		    "setgid program, and libpq would take it from there; "
		    "refused",
		    msg);
		return SOTP_ERR_CONFIG;
	}
	snprintf(timeout, sizeof(timeout), "%u", st->lim.connect_timeout_s);
	if ((c->conn = pq->PQconnectdbParams(keys, vals, 1)) == NULL)
		return SOTP_ERR_NOMEM;
	pq->PQsetNoticeReceiver(c->conn, on_notice, c);
	set_name(st);
	redact(st->where, password);
	if (pq->PQstatus(c->conn) != CONNECTION_OK) {
		first_line(pq->PQerrorMessage(c->conn), msg, sizeof(msg));
		redact(msg, password);
		sotp_store_seterr(
		    st, "postgresql %s: cannot connect: %s", st->where, msg);
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	return SOTP_OK;
}

/*
 * The session: row-lock waits end like SQLite's busy timeout (as
 * unavailable), and a read-only server (a standby) is refused before
 * anything is read from it.
 */
static int
setup_session(struct sotp_store *st, int flags)
{
	struct pg_conn *c = st->conn;
	PGresult *res = NULL;
	char sql[96];
	int rc;

	snprintf(sql, sizeof(sql),
	    "SET lock_timeout = %u; SET statement_timeout = %u",
	    st->lim.lock_timeout_ms, st->lim.statement_timeout_ms);
	if ((rc = pg_script(st, sql)) != SOTP_OK)
		return rc;
	if ((rc = query(st, "SHOW transaction_read_only", &res)) != SOTP_OK)
		goto out;
	if (c->pq.PQntuples(res) != 1)
		rc = sotp_store_dberr(
		    st, SOTP_ERR_STORE, "SHOW transaction_read_only: no row");
	else if (strcmp(c->pq.PQgetvalue(res, 0, 0), "off") != 0 &&
	    !(flags & SOTP_OPEN_READONLY_OK))
		rc = sotp_store_dberr(
		    st, SOTP_ERR_STORE_UNAVAILABLE, "database is read-only");
out:
	if (res != NULL)
		c->pq.PQclear(res);
	return rc;
}

static int
pg_open(struct sotp_store *st, const char *target, int flags)
{
	const struct pq_api *pq = NULL;
	struct pg_conn *c = NULL;
	PQconninfoOption *opts = NULL, *o;
	char *conninfo = NULL, *perr = NULL, *password = NULL;
	size_t n;
	int rc = SOTP_ERR_INTERNAL;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SOTP_ERR_NOMEM;
	st->conn = c;
	snprintf(st->where, sizeof(st->where), "(not connected)");
	if ((rc = load_libpq(st, c)) != SOTP_OK)
		return rc;
	pq = &c->pq;
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
	if ((rc = connect_db(st, conninfo, password, flags)) != SOTP_OK ||
	    (rc = setup_session(st, flags)) != SOTP_OK)
		goto out;
	rc = sotp_store_schema(st, (flags & SOTP_OPEN_CREATE) != 0);
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
	struct pg_conn *c = st->conn;

	if (c == NULL)
		return;
	forget_deferred(c);
	if (c->res != NULL)
		c->pq.PQclear(c->res);
	if (c->conn != NULL)
		c->pq.PQfinish(c->conn);
	/* RTLD_NODELETE: libpq stays mapped, as a linked library would. */
	if (c->dl != NULL)
		dlclose(c->dl);
	free(c);
	st->conn = NULL;
}

const struct sotp_store_driver sotp_store_pg_driver = {
    .name = "postgresql",
    .sql = pg_sql,
    .stmt_undo = 0,
    .chains = SOTP_AUDIT_CHAINS,
    .row_locks = 1,
    .open = pg_open,
    .close = pg_close,
    .check = pg_check,
    .exec = pg_exec,
    .next = pg_next,
    .value = pg_value,
    .changes = pg_changes,
    .done = pg_done,
    .script = pg_script,
    .txn_state = pg_txn_state,
};

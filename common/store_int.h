/*
 * store_int.h - the seam between the store layer (store.c, store_ops.c)
 * and its dialect drivers (store_sqlite.c, store_pg.c). Only common/store*.c
 * include it, and tests/unit/test_store.c to check the dialect tables.
 *
 * The shape is FreeRADIUS rlm_sql's: a driver knows how to talk to one
 * kind of database (open, run a statement with typed parameters, hand out
 * the columns of the current row, count changed rows, say whether a
 * transaction is open, classify its errors) and carries its dialect: one
 * table of SQL text, indexed by statement id. Everything above the
 * drivers (the transaction nesting, the schema check, every operation and
 * the decoding of every row) is written once, in store.c and store_ops.c.
 *
 * Errors. A driver turns each failure into one of
 *   SOTP_ERR_STORE_UNAVAILABLE  the database cannot serve as it stands
 *                               (gone, locked past the timeout, read-only,
 *                               connection lost, ...): rlm_sql's RECONNECT;
 *   SOTP_ERR_EXISTS             a unique or primary key constraint refused
 *                               the row: rlm_sql's ALT_QUERY;
 *   SOTP_ERR_NOMEM, SOTP_ERR_STORE  anything else,
 * and leaves a message with sotp_store_dberr(): never a parameter value,
 * never a password.
 *
 * Where the next steps plug in:
 * - prepared statements: exec's id is the per-connection cache key (both
 *   drivers prepare on first use and keep the statement);
 * - one writer per process with group commit: a decision is one level
 *   (sotp_db_begin .. sotp_db_end); a writer that owns the outer
 *   transaction runs each decision as a savepoint inside it and answers
 *   none before the one COMMIT that carries them all;
 * - reconnect: the connection lives in st->conn, apart from the handle.
 *   Any SOTP_ERR_STORE_UNAVAILABLE a driver reports through
 *   sotp_store_dberr marks the handle lost; the layer refuses every later
 *   operation until sotp_store_heal (at the start of the next request)
 *   closes the connection and opens st->target again;
 * - timeouts from the policy: st->lim, read by both drivers when they
 *   open (the PostgreSQL driver also bounds every round trip with it);
 * - a new operation or column: store_ops.c's head comment; a new schema
 *   version: SOTP_SCHEMA_VERSION and each dialect's SCHEMA_CREATE.
 */
#ifndef SOTP_STORE_INT_H
#define SOTP_STORE_INT_H

#include <limits.h>

#include "sotp_int.h"

#define SOTP_STORE_ERR_MAX 512
#define SOTP_STORE_MAX_PARAMS 16
/*
 * Version 2 adds the audit chain (audit.seq, .mac, .keyed and the
 * audit_head row); SOTP_Q_SCHEMA_UPGRADE takes a version 1 store there.
 * Version 3 adds versioned keys (key_dek, key_wrap, key_ring, and the kv
 * of every sealed value and audit row); SOTP_Q_SCHEMA_UPGRADE_3 takes a
 * version 2 store there, at key version 0 (the master key file).
 * Version 4 makes the audit chain SOTP_AUDIT_CHAINS chains (audit.chain,
 * a head row each); SOTP_Q_SCHEMA_UPGRADE_4 takes a version 3 store
 * there, and a new store is made as a version 3 one taken there.
 * Version 5 adds each token's seed fingerprint (tokens.seed_fp, indexed):
 * SOTP_Q_SCHEMA_UPGRADE_5 adds the column empty, and init fills it, as it
 * holds the data keys (seedfp.c).
 */
#define SOTP_SCHEMA_VERSION 5
/* Length of a challenge state id (sotp_store_state_use). */
#define SOTP_STORE_STATE_ID_LEN 16
/*
 * Used-state marks are purged in batches, by whoever finds the last purge
 * this many seconds behind its clock (or far enough ahead of it that the
 * purger's clock was wrong): see sotp_store_state_use.
 */
#define SOTP_STORE_STATE_PURGE_EVERY 60
#define SOTP_STORE_STATE_PURGE_BACK 3600

/*
 * Statement ids: every dialect has SQL text for each (a unit test checks).
 * Parameters are positional (?1 in SQLite, $1 in PostgreSQL) and come in
 * the order the operation in store_ops.c passes them; the result columns
 * in the order its row decoder reads them.
 */
enum sotp_stmt {
	/* Transactions: the nesting itself is in store.c. */
	SOTP_Q_BEGIN,
	SOTP_Q_COMMIT,
	SOTP_Q_ROLLBACK,
	SOTP_Q_SAVEPOINT,
	SOTP_Q_RELEASE,
	SOTP_Q_ROLLBACK_TO,
	/* The schema check and creation (sotp_store_schema). */
	SOTP_Q_SCHEMA_LOCK,
	SOTP_Q_SCHEMA_FOUND,
	SOTP_Q_SCHEMA_TABLES,
	SOTP_Q_SCHEMA_CREATE, /* a script: several statements, no parameters */
	SOTP_Q_SCHEMA_VERSION,
	SOTP_Q_SCHEMA_UPGRADE,   /* a script: version 1 to 2 (init) */
	SOTP_Q_SCHEMA_UPGRADE_3, /* a script: version 2 to 3 (init) */
	SOTP_Q_SCHEMA_UPGRADE_4, /* a script: version 3 to 4 (init) */
	SOTP_Q_SCHEMA_UPGRADE_5, /* a script: version 4 to 5 (init) */
	/* The operations. */
	SOTP_Q_TOKEN_GET,
	SOTP_Q_TOKEN_LOCK,
	SOTP_Q_TOKEN_INSERT,
	SOTP_Q_TOKEN_LIST,
	SOTP_Q_TOKEN_LIST_FREE,
	SOTP_Q_TOKEN_SET_DRIFT,
	SOTP_Q_TOKEN_USE_STEP,
	SOTP_Q_TOKEN_SET_DISABLED,
	SOTP_Q_CONTRACT_GET,
	SOTP_Q_CONTRACT_LOCK,
	SOTP_Q_CONTRACT_LOCK_TOKEN,
	SOTP_Q_CONTRACT_INSERT,
	SOTP_Q_CONTRACT_SET_PASSWORD,
	SOTP_Q_CONTRACT_SET_LOGIN,
	SOTP_Q_CONTRACT_SET_CARD,
	SOTP_Q_CONTRACT_UNLOCK,
	SOTP_Q_CONTRACT_UNLOCK_EXPIRED,
	SOTP_Q_CONTRACT_CLOSE,
	SOTP_Q_CONTRACT_RESET_FAILURES,
	SOTP_Q_CONTRACT_FAIL,
	SOTP_Q_CONTRACT_BIND,
	SOTP_Q_CONTRACT_UNBIND,
	SOTP_Q_CONTRACT_LIST,
	SOTP_Q_CONTRACT_REHASH,
	SOTP_Q_CONTRACT_RESEAL_CARD,
	SOTP_Q_CONTRACT_PWHASH_SAMPLE,
	SOTP_Q_STATE_MARKS,
	SOTP_Q_STATE_MARKS_PURGER,
	SOTP_Q_STATE_MARKS_INIT,
	SOTP_Q_STATE_HORIZON_RAISE,
	SOTP_Q_STATE_PURGE,
	SOTP_Q_STATE_PURGED_AT,
	SOTP_Q_STATE_INSERT,
	SOTP_Q_STATE_GET,    /* the health probe's read-back */
	SOTP_Q_STATE_DELETE, /* and its clean-up */
	SOTP_Q_AUDIT_ADD,
	SOTP_Q_AUDIT_LIST,
	SOTP_Q_AUDIT_LIST_CONTRACT,
	SOTP_Q_AUDIT_HEAD,
	SOTP_Q_AUDIT_HEAD_LOCK,
	SOTP_Q_AUDIT_HEAD_SET,
	SOTP_Q_AUDIT_PENDING,
	SOTP_Q_AUDIT_LINK,
	SOTP_Q_AUDIT_WALK,
	SOTP_Q_AUDIT_COUNTS,
	SOTP_Q_AUDIT_PRUNE_POINT,
	SOTP_Q_AUDIT_MAC_AT,
	SOTP_Q_AUDIT_PRUNE,
	SOTP_Q_AUDIT_STRAY,
	/* The keyring (store_keys.c). */
	SOTP_Q_KEY_RING,
	SOTP_Q_KEY_RING_LOCK,
	SOTP_Q_KEY_RING_INIT,
	SOTP_Q_KEY_RING_SET,
	SOTP_Q_KEY_RING_BUMP,
	SOTP_Q_KEY_LIVE,
	SOTP_Q_KEY_ADD,
	SOTP_Q_KEY_RETIRE_WRAPS,
	SOTP_Q_KEY_RETIRE,
	SOTP_Q_KEY_WRAPS,
	SOTP_Q_KEY_WRAP_GET,
	SOTP_Q_KEY_WRAP_PUT,
	SOTP_Q_KEY_WRAP_DROP,
	SOTP_Q_KEY_COUNTS,
	SOTP_Q_KEY_OLD_TOKENS,
	SOTP_Q_KEY_OLD_CARDS,
	SOTP_Q_KEY_RESEAL_TOKEN,
	SOTP_Q_KEY_RESEAL_CARD,
	SOTP_Q_KEY_LEFT,
	SOTP_Q_KEY_USED,
	SOTP_Q_KEY_LOAD,
	/* Seed fingerprints (seedfp.c). */
	SOTP_Q_SEED_FIND,
	SOTP_Q_SEED_UNFILLED,
	SOTP_Q_SEED_TODO,
	SOTP_Q_SEED_SET,
	SOTP_Q_SEED_SHARED,
	SOTP_Q_COUNT
};

/*
 * The select lists every dialect shares: the columns, in the order the
 * row decoders in store_ops.c read them (row_token, row_contract,
 * audit_list_row).
 */
/*
 * Tokens whose seed another holds (one fingerprint under one key
 * version), each with its group's number (1, 2, ...), groups in
 * fingerprint order, serials in order within: one GROUP BY over the
 * (seed_fp, kv, serial) index.
 */
#define SOTP_SQL_SEED_SHARED                                                   \
	"SELECT t.serial, dense_rank() OVER (ORDER BY t.kv, t.seed_fp)"        \
	" FROM tokens t JOIN (SELECT seed_fp, kv FROM tokens"                  \
	" WHERE seed_fp IS NOT NULL GROUP BY seed_fp, kv"                      \
	" HAVING count(*) > 1) g ON g.seed_fp = t.seed_fp AND g.kv = t.kv"     \
	" ORDER BY 2, t.serial"
#define SOTP_SQL_TOKEN_SELECT                                                  \
	"SELECT t.serial, t.kind, t.secret, t.algorithm, t.digits,"            \
	" t.period, t.last_step, t.drift, t.disabled, t.created, c.id"         \
	" FROM tokens t LEFT JOIN contracts c ON c.serial = t.serial"
#define SOTP_SQL_CONTRACT_SELECT                                               \
	"SELECT id, pwhash, login, serial, card, failures, locked_until,"      \
	" closed, created FROM contracts"
#define SOTP_CONTRACT_COLS 9 /* the columns of SOTP_SQL_CONTRACT_SELECT */
/*
 * A contract's row, its columns as in SOTP_SQL_CONTRACT_SELECT, followed
 * by those of SOTP_SQL_TOKEN_SELECT for the token it is bound to (all
 * NULL when none): the re-read under the write lock and the token's read
 * in one statement, one round trip on PostgreSQL (issue 13).
 */
#define SOTP_SQL_CONTRACT_TOKEN_SELECT                                         \
	"SELECT c.id, c.pwhash, c.login, c.serial, c.card, c.failures,"        \
	" c.locked_until, c.closed, c.created, t.serial, t.kind, t.secret,"    \
	" t.algorithm, t.digits, t.period, t.last_step, t.drift, t.disabled,"  \
	" t.created, c.id FROM contracts c"                                    \
	" LEFT JOIN tokens t ON t.serial = c.serial"
#define SOTP_SQL_AUDIT_SELECT                                                  \
	"SELECT id, ts, action, contract, serial, context, verdict, reason,"   \
	" detail, seq, keyed FROM audit"
/*
 * A row that is none of: in a chain's walk (past its base), waiting (no
 * seq, no MAC, keyed 0), from before the chain (no seq, MAC, keyed or
 * chain, and written before the first chained row that is left: ids only
 * grow). Each test is true or false, never NULL (coalesce): a NULL must
 * not hide a row. The same text in both dialects.
 */
#define SOTP_SQL_AUDIT_STRAY                                                   \
	"SELECT a.id, coalesce(a.seq, 0) FROM audit a"                         \
	" LEFT JOIN audit_head h ON h.k = a.chain"                             \
	" WHERE NOT ((h.k IS NOT NULL AND a.seq IS NOT NULL"                   \
	" AND a.seq > h.base_seq)"                                             \
	" OR (h.k IS NOT NULL AND a.seq IS NULL AND coalesce(a.keyed, -1) = 0" \
	" AND a.mac IS NULL)"                                                  \
	" OR (a.chain IS NULL AND a.seq IS NULL AND a.keyed IS NULL"           \
	" AND a.mac IS NULL AND a.id > 0 AND a.id < coalesce((SELECT"          \
	" min(id) FROM audit WHERE keyed IS NOT NULL),"                        \
	" 9223372036854775807)))"                                              \
	" ORDER BY a.id LIMIT 1"
/* The same with the chain's columns after them (audit_chain_row). */
#define SOTP_SQL_AUDIT_CHAIN_SELECT                                            \
	"SELECT id, ts, action, contract, serial, context, verdict, reason,"   \
	" detail, seq, mac, keyed, kv FROM audit"
#define SOTP_SQL_AUDIT_HEAD_SELECT                                             \
	"SELECT seq, mac, tag, pending, base_seq, base_mac, base_tag, kv,"     \
	" base_kv FROM audit_head"

/* The keyring's row (store_keys.c key_ring_row) and what each key seals. */
#define SOTP_SQL_KEY_RING_SELECT                                               \
	"SELECT current, gen, switched FROM key_ring WHERE k = 1"
/*
 * What a process loads, in one statement (so one snapshot): the ring,
 * and each live version with its data key wrapped under one KEK, if any.
 */
#define SOTP_SQL_KEY_LOAD                                                      \
	"SELECT r.current, r.gen, r.switched, d.version, w.blob"               \
	" FROM key_ring r CROSS JOIN key_dek d"                                \
	" LEFT JOIN key_wrap w ON w.version = d.version AND w.what = 1"        \
	" AND w.kek = "
#define SOTP_SQL_KEY_COUNTS                                                    \
	"SELECT 1, kv, count(*) FROM tokens WHERE kv IS NOT NULL GROUP BY kv"  \
	" UNION ALL SELECT 2, kv, count(*) FROM contracts"                     \
	" WHERE kv IS NOT NULL GROUP BY kv"                                    \
	" UNION ALL SELECT 3, coalesce(kv, 0), count(*) FROM audit"            \
	" WHERE seq IS NOT NULL GROUP BY coalesce(kv, 0)"

/* A statement parameter; a NULL text or an empty blob is SQL NULL. */
enum sotp_ptype { SOTP_P_TEXT, SOTP_P_INT, SOTP_P_BLOB };
struct sotp_param {
	enum sotp_ptype type;
	int64_t i;
	const void *p; /* text (NUL-terminated) or blob, the caller's memory */
	size_t len;    /* blob length */
};
#define SOTP_PTEXT(s)                                                          \
	{                                                                      \
		.type = SOTP_P_TEXT, .p = (s)                                  \
	}
#define SOTP_PINT(v)                                                           \
	{                                                                      \
		.type = SOTP_P_INT, .i = (int64_t)(v)                          \
	}
#define SOTP_PBLOB(b, n)                                                       \
	{                                                                      \
		.type = SOTP_P_BLOB, .p = (b), .len = (n)                      \
	}
#define SOTP_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A column of the current row, valid until the next row or the end. */
enum sotp_vtype {
	SOTP_V_NULL,
	SOTP_V_INT,
	SOTP_V_TEXT,
	SOTP_V_BLOB,
	SOTP_V_OTHER
};
struct sotp_value {
	enum sotp_vtype type;
	int64_t i;
	const void *p; /* text or blob bytes (text is NUL-terminated) */
	size_t len;
};

struct sotp_store;

/*
 * One dialect driver. A statement runs as exec, then next until it says 0
 * (the rows, if any), then done; only one statement is open at a time.
 */
struct sotp_store_driver {
	const char *name; /* "sqlite", "postgresql": starts each message */
	const char *const *sql; /* the dialect: SOTP_Q_COUNT texts by id */
	/*
	 * 1 when a failed statement undoes only itself and the transaction
	 * goes on (SQLite); 0 when it aborts the whole transaction
	 * (PostgreSQL), so that a statement that may be refused by a
	 * constraint inside a caller's transaction needs a savepoint.
	 */
	int stmt_undo;
	/*
	 * How many audit chains appends spread over (audit.c): 1 where one
	 * writer at a time holds the whole database (SQLite), so that more
	 * would gain nothing; SOTP_AUDIT_CHAINS where writers run side by
	 * side (PostgreSQL), so that connections do not wait for one
	 * another's commits.
	 */
	int chains;
	/*
	 * 1 when rows are locked one by one (SELECT ... FOR UPDATE,
	 * PostgreSQL); 0 when a write transaction already holds the whole
	 * database (SQLite's BEGIN IMMEDIATE), so that taking a row lock
	 * first orders nothing.
	 */
	int row_locks;
	/*
	 * Connects to target (the URL without its "scheme:"), keeping the
	 * connection in st->conn and naming it in st->where; flags are
	 * SOTP_OPEN_*: with SOTP_OPEN_CREATE makes the file or schema. Runs
	 * sotp_store_schema() itself, at the point its setup allows. On
	 * failure close is still called.
	 */
	int (*open)(struct sotp_store *st, const char *target, int flags);
	void (*close)(struct sotp_store *st);
	/* Before every operation: fail closed on a connection not to trust. */
	int (*check)(struct sotp_store *st);
	/*
	 * Starts statement sql with n parameters. id >= 0: prepared once per
	 * connection and kept under that id; -1: prepared for this run only.
	 */
	int (*exec)(struct sotp_store *st, int id, const char *sql,
	    const struct sotp_param *p, size_t n);
	/* 1: a row is current; 0: no more rows; or a negative SOTP_ERR_*. */
	int (*next)(struct sotp_store *st);
	void (*value)(struct sotp_store *st, int col, struct sotp_value *v);
	/* Rows changed by the statement (after next has said 0). */
	int64_t (*changes)(struct sotp_store *st);
	/* Ends the statement; no pointer into the caller's memory is kept. */
	void (*done)(struct sotp_store *st);
	/* Runs several statements without parameters or rows (the schema). */
	int (*script)(struct sotp_store *st, const char *sql);
	/* 0: no transaction open; 1: one is; -1: one is, but has failed. */
	int (*txn_state)(struct sotp_store *st);
	/*
	 * A consistent copy of the open database into a new file at path,
	 * while other connections go on reading and writing; NULL where the
	 * database's own tools do it (PostgreSQL: pg_dump, base backups).
	 */
	int (*backup)(struct sotp_store *st, const char *path);
};

struct sotp_store {
	const struct sotp_store_driver *drv;
	void *conn;     /* the driver's connection, NULL until opened */
	const char *op; /* the operation under way, for messages */
	int depth;      /* open transaction levels (savepoints inside) */
	int chain; /* the audit chain this transaction appends to; 0: none */
	int home_chain; /* this connection's chain (sotp_store_audit_chain) */
	int busy;       /* a statement is between exec and done */
	struct sotp_limits lim;
	char *target; /* what drv->open was given, for a reopen (secret) */
	int lost;     /* unusable until healed (sotp_store_heal) */
	int64_t reopen_after; /* monotonic ms: no reopen before then */
	struct sotp_metrics *metrics;
	sotp_store_trace_fn *trace; /* tests: sotp_store_set_trace */
	void *trace_arg;
	sotp_store_txn_fn *txn_end; /* sotp_store_set_txn_hook */
	void *txn_arg;
	uint64_t round_trips; /* to the server and back (PostgreSQL) */
	int defer; /* the statement may wait for the next (sotp_db_run_deferred)
	            */
	char where[PATH_MAX]; /* the database, as messages name it */
	char err[SOTP_STORE_ERR_MAX];
};

/* The drivers this build knows (store.c maps URL schemes to them). */
extern const struct sotp_store_driver sotp_store_sqlite_driver;
extern const struct sotp_store_driver sotp_store_pg_driver;

/* Replaces st's error text. Never pass a secret or a bound value. */
void sotp_store_seterr(struct sotp_store *st, const char *fmt, ...)
    SOTP_PRINTF(2, 3);
/* "<driver> <where>: <op>: <what>" as st's error text; returns rc. */
int sotp_store_dberr(struct sotp_store *st, int rc, const char *fmt, ...)
    SOTP_PRINTF(3, 4);
/*
 * Checks (and with create, makes) the schema, in one transaction when
 * creating: a database without it is refused unless create, one with
 * other tables is refused always, and the version must be this build's.
 */
int sotp_store_schema(struct sotp_store *st, int create);

/* ---- store.c: what every operation is built from ---- */

/*
 * The start of every operation: a usable handle, the error text of an
 * earlier call cleared (so that sotp_store_errmsg describes this call
 * only), op named for messages, args_ok (else "op: invalid argument"),
 * then the driver's check. SOTP_ERR_INVALID_ARG or the check's error.
 */
int sotp_db_enter(struct sotp_store *st, const char *op, int args_ok);

/* Decodes the current row into arg; SOTP_OK or an error. */
typedef int sotp_db_row_fn(struct sotp_store *st, void *arg);
/*
 * Runs statement id. Rows are dropped; *changes (may be NULL) receives the
 * number of rows the statement changed.
 */
int sotp_db_run(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n, int64_t *changes);
/*
 * Runs a change whose rows and count nobody reads. A driver may hold it
 * back and send it with the next statement (store_pg.c: one round trip
 * for both); that statement's result then reports its failure. So the
 * caller runs another statement, not a SAVEPOINT or RELEASE, before it
 * returns.
 */
int sotp_db_run_deferred(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n);
/* A change that must hit exactly one row; else SOTP_ERR_NOT_FOUND. */
int sotp_db_update_one(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n);
/* Runs id and decodes its first row; SOTP_ERR_NOT_FOUND when none. */
int sotp_db_row(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n, sotp_db_row_fn *row, void *arg);
/*
 * Runs id and hands each row to row(); a negative return is passed on, a
 * positive one stops early with SOTP_OK.
 */
int sotp_db_rows(struct sotp_store *st, enum sotp_stmt id,
    const struct sotp_param *p, size_t n, sotp_db_row_fn *row, void *arg);

/* Column readers: 0, or -1 for a value the schema does not allow. */
int sotp_db_text(struct sotp_store *st, int col, char *dst, size_t dstsz);
int sotp_db_blob(
    struct sotp_store *st, int col, uint8_t *dst, size_t dstsz, size_t *len);
/* An integer within [min, max]; NULL reads as 0. */
int sotp_db_int(
    struct sotp_store *st, int col, int64_t min, int64_t max, int64_t *out);
/* A text column as a pointer valid until the next row; NULL reads "". */
const char *sotp_db_str(struct sotp_store *st, int col);
/* A row that breaks the schema's promises; SOTP_ERR_STORE. */
int sotp_db_corrupt(struct sotp_store *st, const char *column);

/*
 * Transaction levels: begin opens a transaction, or a savepoint inside an
 * open one; end commits the innermost level when rc is SOTP_OK and rolls
 * it back otherwise, and returns the outcome; rollback undoes the
 * innermost level (a no-op when none is open) and keeps the error text.
 */
int sotp_db_begin(struct sotp_store *st);
int sotp_db_end(struct sotp_store *st, int rc);
void sotp_db_rollback(struct sotp_store *st);

#endif /* SOTP_STORE_INT_H */

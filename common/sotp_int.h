/*
 * sotp_int.h - internal interfaces shared by the files in common/.
 *
 * Outside common/ only the tests (tests/unit, tests/tools, tests/bench)
 * may include this header.
 */
#ifndef SOTP_INT_H
#define SOTP_INT_H

#include "shinkin_otp.h"

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

/* ---- mem.c ---- */

/* Wipes len bytes at p and frees p (the freezero analog); NULL-safe. */
void sotp_free_secret(void *p, size_t len);
/* strdup that returns NULL on NULL input. */
char *sotp_strdup(const char *s);
/*
 * Wipes an array, never a pointer: the expression fails to compile when
 * `a` is a pointer (as Linux-PAM's pam_overwrite_array does).
 */
#define SOTP_MUST_BE_ARRAY(a)                                                  \
	(0 * sizeof(struct {                                                   \
		int must_be_array : __builtin_types_compatible_p(              \
		                        __typeof__(a), __typeof__(&(a)[0]))    \
		                    ? -1                                       \
		                    : 1;                                       \
	}))
#define SOTP_WIPE_ARRAY(a) sotp_wipe((a), sizeof(a) + SOTP_MUST_BE_ARRAY(a))

/* Fills buf with n bytes from the CSPRNG. SOTP_ERR_CRYPTO on failure. */
int sotp_random(void *buf, size_t n);
/* A uniformly random integer in [0, bound); bound > 0. */
int sotp_random_uniform(unsigned int bound, unsigned int *out);

/*
 * Copies src into dst[dstsz] with truncation and NUL; returns the length
 * of src (strlcpy semantics).
 */
size_t sotp_strlcpy(char *dst, const char *src, size_t dstsz);
/* The context's error text (sotp_ctx_errmsg), with its NUL. */
#define SOTP_CTX_ERR_MAX 1024
/* sotp_mark_cut (shinkin_otp.h) marks a cut text. */
/*
 * An error text into err[errsz] (nothing when err is NULL or errsz 0),
 * as snprintf, its cut marked (sotp_mark_cut): a message naming a long
 * value (a path, a key label, a module's text) never ends in silence.
 */
void sotp_errf(char *err, size_t errsz, const char *fmt, ...) SOTP_PRINTF(3, 4);
void sotp_verrf(char *err, size_t errsz, const char *fmt, va_list ap)
    SOTP_PRINTF(3, 0);
/*
 * The directory part of path into out[outsz] (out may be path): "/" for
 * "/x", "." without a '/'. 0, or -1 (errno ENAMETOOLONG) if it does not
 * fit.
 */
int sotp_dir_of(const char *path, char *out, size_t outsz);
/*
 * path made absolute by the working directory (malloc'd), nothing in it
 * resolved: a symbolic link stays one, for the checks of its directory.
 */
char *sotp_abs_path(const char *path);
/*
 * sotp_parse_ll that also takes leading zeros (007, -0), for numbers in
 * files written by programs: an XML Schema integer in PSKC may be padded
 * (RFC 6030 types are xs:unsignedLong and the like), so may a vendor's CSV
 * or an otpauth URI, and none of them is read as octal by anyone. The
 * policy file and the CLI use the strict sotp_parse_ll.
 */
int sotp_parse_ll_padded(
    const char *s, long long min, long long max, long long *out);

/* ---- otp.c: a reusable keyed HMAC for checking a window of codes ---- */

struct sotp_mac;
/* Allocates a MAC context (fetches HMAC once). */
int sotp_mac_new(struct sotp_mac **out);
void sotp_mac_free(struct sotp_mac *m);
/* Keys the context; key is secret and is not retained after the call. */
int sotp_mac_setkey(
    struct sotp_mac *m, enum sotp_alg alg, const uint8_t *key, size_t keylen);
/* Drops the key: its HMAC state is written over (otp.c). */
void sotp_mac_forget(struct sotp_mac *m);
/* HOTP of counter under the current key; out[digits + 1]. */
int sotp_mac_hotp(
    struct sotp_mac *m, uint64_t counter, unsigned int digits, char *out);
/* Checks that code is 6..8 ASCII digits; returns its length or 0. */
size_t sotp_code_len(const char *code);

/* ---- seal.c: AES-256-GCM under the master key ---- */

#define SOTP_KEY_LEN 32
#define SOTP_SEAL_NONCE 12
#define SOTP_SEAL_TAG 16
/*
 * Sealed layouts (seal.c): under key version 0, layout byte (1) | nonce
 * (12) | ciphertext | tag (16); under version >= 1, layout byte and the
 * version (5) | nonce | ciphertext | tag.
 */
#define SOTP_SEAL_OVERHEAD (1 + SOTP_SEAL_NONCE + SOTP_SEAL_TAG)
#define SOTP_SEAL_HDR_V 5
#define SOTP_SEAL_OVERHEAD_V (SOTP_SEAL_HDR_V + SOTP_SEAL_NONCE + SOTP_SEAL_TAG)

/*
 * Encrypts pt under key with aad bound in (e.g. the serial, so a sealed
 * secret cannot be moved to another token), in the layout of key version
 * 0. out[outsz] receives ptlen + SOTP_SEAL_OVERHEAD bytes.
 */
int sotp_seal(const uint8_t *key, const void *aad, size_t aadlen,
    const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outsz,
    size_t *outlen);
/*
 * The same for key version kv, recorded (authenticated) in the header:
 * ptlen + SOTP_SEAL_OVERHEAD_V bytes, or the version 0 layout for kv 0.
 */
int sotp_seal_kv(const uint8_t *key, uint32_t kv, const void *aad,
    size_t aadlen, const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outsz,
    size_t *outlen);
/*
 * The key version a sealed blob names (0 for the version 0 layout);
 * SOTP_ERR_DECRYPT for a blob of no known layout. Not authenticated until
 * the blob is unsealed under that version's key.
 */
int sotp_sealed_kv(const uint8_t *in, size_t inlen, uint32_t *kv);
/*
 * Decrypts and authenticates either layout; SOTP_ERR_DECRYPT on a wrong
 * key, a wrong aad or any tampering. out (secret) must hold the
 * ciphertext's length (inlen less the layout's overhead).
 */
int sotp_unseal(const uint8_t *key, const void *aad, size_t aadlen,
    const uint8_t *in, size_t inlen, uint8_t *out, size_t outsz,
    size_t *outlen);
/*
 * Loads the 32-byte master key from path: O_NOFOLLOW, a regular file of
 * exactly 32 bytes (or 64 hex characters and a newline), owned by root or
 * by the effective user, no group or other permission bits, with one
 * exception: a root-owned key of mode 0640 whose group is SOTP_KEY_GROUP
 * (how the packages share one key between root and radiusd's user).
 * Failures are SOTP_ERR_KEY with the reason written to err[errsz].
 */
int sotp_key_load(const char *path, uint8_t *key, char *err, size_t errsz);
#define SOTP_KEY_GROUP "shinkin-otp"
#define SOTP_KEY_SHARED_LOOKUP ((gid_t)-2)
/*
 * sotp_key_load with the sharing group's gid given (SOTP_KEY_SHARED_LOOKUP:
 * look SOTP_KEY_GROUP up; (gid_t)-1: none), so tests can exercise the rule
 * without creating a system group.
 */
int sotp_key_load_shared(
    const char *path, gid_t shared, uint8_t *key, char *err, size_t errsz);
/*
 * Creates a new random key file at path (mode 0600, O_EXCL). Returns
 * SOTP_ERR_EXISTS if a file is there already (never overwrites).
 */
int sotp_key_create(const char *path, char *err, size_t errsz);
/*
 * Reads a one-line secret file (a PKCS#11 PIN) into out[outsz], its
 * newline dropped, under the rules of sotp_key_load. SOTP_ERR_KEY with the
 * reason in err.
 */
int sotp_secret_read(
    const char *path, char *out, size_t outsz, char *err, size_t errsz);
/* Derives a 32-byte subkey for `label` (HKDF-SHA256) from the master key. */
int sotp_kdf(const uint8_t *master, const char *label, uint8_t *out);
/* HMAC-SHA256 of data under a 32-byte key; out[32]. */
int sotp_hmac_sha256(
    const uint8_t *key, const void *data, size_t len, uint8_t *out);
/*
 * OpenSSL's HMAC, as EVP_MAC_fetch(NULL, "HMAC", NULL) returns it: a
 * reference the caller frees with EVP_MAC_free, or NULL. The fetch is
 * made once per process and shared (seal.c).
 */
struct evp_mac_st *sotp_hmac_fetch(void);

/* ---- store*.c: the persistent state ---- */

/*
 * The store is deliberately dumb: it reads rows, writes rows, and makes
 * the writes whose outcome depends on the row as it is now atomic, as a
 * compare-and-set in one statement or under row locks held to the end of
 * a transaction. Every rule (which refusal, in which order) lives in the
 * engine. The operations are written once (store_ops.c) above one driver
 * per SQL dialect (store_sqlite.c, store_pg.c).
 *
 * All functions return SOTP_OK or a negative SOTP_ERR_*; the detail of a
 * failure goes to st's error text (sotp_store_errmsg). A store that cannot
 * be reached (file missing or unreadable, server down or connection lost,
 * schema absent, database locked past the busy or lock timeout) is
 * SOTP_ERR_STORE_UNAVAILABLE.
 */
struct sotp_store;

#define SOTP_SECRET_MAX 128 /* sealed token secret */
/* The largest HOTP counter taken in: look-ahead cannot overflow it. */
#define SOTP_COUNTER_MAX ((uint64_t)1 << 62)
#define SOTP_CARD_MAX 320   /* sealed card grid: 26 x 10 digits + 33 */
#define SOTP_HASH_MAX 256   /* crypt(3) hash string */
#define SOTP_SEED_FP_LEN 32 /* a seed's fingerprint: HMAC-SHA256 */

struct sotp_token_rec {
	char serial[SOTP_ID_MAX];
	char kind[SOTP_NAME_MAX];
	enum sotp_alg alg;
	unsigned int digits;
	unsigned int period; /* 0: event-based (HOTP) */
	int64_t last_step;   /* step or HOTP counter; -1: never used */
	int drift;
	int disabled;
	uint8_t secret[SOTP_SECRET_MAX]; /* sealed (AES-GCM), aad = serial */
	size_t secret_len;
	uint32_t kv;                /* the key version secret is sealed under */
	char contract[SOTP_ID_MAX]; /* the contract it is bound to, or "" */
	int64_t created;
	/*
	 * Written by token_insert only (never read back): the seed's
	 * fingerprint under version kv (seedfp.c); has_fp 0 writes none.
	 */
	uint8_t seed_fp[SOTP_SEED_FP_LEN];
	int has_fp;
};

struct sotp_contract_rec {
	char id[SOTP_ID_MAX];
	char pwhash[SOTP_HASH_MAX];
	enum sotp_login login;
	char serial[SOTP_ID_MAX]; /* bound token or "" */
	uint8_t
	    card[SOTP_CARD_MAX]; /* sealed grid, aad = id; card_len 0: none */
	size_t card_len;
	uint32_t kv; /* the key version card is sealed under */
	unsigned int failures;
	int64_t locked_until; /* 0 no lock, -1 until unlocked, else epoch */
	int closed;
	int64_t created;
};

struct sotp_audit_rec {
	int64_t ts;
	const char *action;
	const char *contract;
	const char *serial;
	const char *context;
	const char *verdict;
	int reason;
	const char *detail;
};

/*
 * How long the store may keep a request waiting: a NAS retries after a few
 * seconds and then gives up or asks another server, so every wait is
 * bounded well under that, and a request that runs out of time is refused
 * (SOTP_ERR_STORE_UNAVAILABLE), never left hanging. From the policy's
 * [store] section.
 *   connect_timeout    seconds to wait for a connection, per host
 *                      (PostgreSQL; libpq's connect_timeout, at least 2);
 *   statement_timeout  milliseconds one statement may take, its round
 *                      trip included: the server's statement_timeout, and
 *                      a deadline on this side that also bounds a COMMIT
 *                      waiting for a synchronous standby (which the
 *                      server's own timeout does not) and a server that
 *                      stopped answering (PostgreSQL);
 *   lock_timeout       milliseconds to wait for a row lock (PostgreSQL's
 *                      lock_timeout) or the file's write lock (SQLite's
 *                      busy timeout); below statement_timeout, so that a
 *                      lock wait ends with the server's own error.
 */
#define SOTP_CONNECT_TIMEOUT_S 2
#define SOTP_STATEMENT_TIMEOUT_MS 2000
#define SOTP_LOCK_TIMEOUT_MS 1000
struct sotp_limits {
	unsigned int connect_timeout_s;
	unsigned int statement_timeout_ms;
	unsigned int lock_timeout_ms;
};

/* sotp_store_open_with flags. */
#define SOTP_OPEN_CREATE 1 /* make the file and schema if missing (init) */
/*
 * Open a database that refuses writes (a read-only file, a standby or a
 * read-only database) instead of failing: the health check's write probe
 * then says so. Never for serving requests.
 */
#define SOTP_OPEN_READONLY_OK 2

/*
 * Opens url ("sqlite:/abs/path", "postgresql://..." or "postgres://...",
 * or "postgresql:" + a libpq key=value string). create = 0: the file or
 * database and its schema must exist (else SOTP_ERR_STORE_UNAVAILABLE);
 * create = 1: creates the file (mode 0600) and the schema if missing
 * (init); a PostgreSQL database itself must exist. SQLite: WAL, a busy
 * timeout, foreign keys on. PostgreSQL: a lock timeout, row locks for the
 * read-then-write operations. Both check a schema_version table on open.
 */
int sotp_store_open(const char *url, int create, struct sotp_store **out,
    char *err, size_t errsz);
/* The same with the policy's limits (NULL: the defaults) and flags. */
int sotp_store_open_with(const char *url, const struct sotp_limits *lim,
    int flags, struct sotp_store **out, char *err, size_t errsz);
void sotp_store_close(struct sotp_store *st);
const char *sotp_store_errmsg(const struct sotp_store *st);
/* The database as messages name it (never a password). */
const char *sotp_store_where(const struct sotp_store *st);
/*
 * Reconnecting. A handle whose database became unusable (an operation
 * failed with SOTP_ERR_STORE_UNAVAILABLE: connection lost, server shut
 * down or turned standby, a deadline passed, the file replaced, ...) is
 * marked lost, and every later operation on it fails the same way: the
 * request that saw the loss is refused as a whole, and never carries on,
 * half on a new connection. sotp_store_heal, called where a new request
 * starts (sotp_ctx_ready), closes a lost connection and opens it again
 * with the same URL and limits; SOTP_OK when the handle is usable (also
 * when nothing was lost), else SOTP_ERR_STORE_UNAVAILABLE and the reason
 * in the error text. After a failed reopen the next attempt waits
 * SOTP_REOPEN_DELAY_MS, so that a server that is down does not cost
 * every request a connect timeout.
 */
#define SOTP_REOPEN_DELAY_MS 250
int sotp_store_heal(struct sotp_store *st);
/* 1 when the handle is marked lost (see sotp_store_heal). */
int sotp_store_lost(const struct sotp_store *st);
/*
 * For a transaction shared by several requests (the writer's group): a
 * handle marked lost by one request's failure inside its savepoint (a
 * lock_timeout, a deadlock), that savepoint undone since, serves the
 * transaction around it on when that transaction is still open and the
 * connection still passes the driver's check. SOTP_OK and the mark
 * cleared; else SOTP_ERR_STORE_UNAVAILABLE, and the handle stays lost.
 */
int sotp_store_resume(struct sotp_store *st);
/* Open transaction levels (0: none; savepoints count). */
int sotp_store_depth(const struct sotp_store *st);
/*
 * fn(arg, depth, committed, why) each time a transaction level of st
 * ends: depth the levels still open, committed 1 when the level's work
 * was kept (a savepoint released into the level around it, or at depth
 * 0 the COMMIT done), 0 when it was undone or lost (why: the store's
 * error text then, may be empty). Every way a level ends comes here (a
 * failed COMMIT, a rollback, the database's own, a handle reopened or
 * closed with one open). The owner of st sets it (ctx.c: audit lines
 * wait for the commit of their rows, audit.c); NULL: none.
 */
typedef void sotp_store_txn_fn(
    void *arg, int depth, int committed, const char *why);
void sotp_store_set_txn_hook(
    struct sotp_store *st, sotp_store_txn_fn *fn, void *arg);
uint64_t sotp_store_round_trips(const struct sotp_store *st);

/* ---- writer.c: one writer per process, group commit ---- */

struct sotp_audit_head;

#define SOTP_WRITER_ERR_MAX 512
/*
 * Takes the writer (blocking) and opens this decision's savepoint inside
 * the group's transaction; *st is the store to write through until
 * sotp_writer_leave, *head the audit chain's head to append through (the
 * context's audit_batch meanwhile). On failure the writer is not held
 * and err says why.
 */
int sotp_writer_enter(struct sotp_writer *w, struct sotp_store **st,
    struct sotp_audit_head **head, char *err, size_t errsz);
/*
 * Ends the decision: rc SOTP_OK keeps its work in the group and returns
 * the group's commit outcome (err: why it failed); any other rc undoes
 * its savepoint and returns rc. Releases the writer.
 */
int sotp_writer_leave(struct sotp_writer *w, int rc, char *err, size_t errsz);
/* For the tests: commits and decisions kept so far; threads waiting. */
void sotp_writer_counts(
    struct sotp_writer *w, uint64_t *commits, uint64_t *decisions);
unsigned int sotp_writer_coming(struct sotp_writer *w);
struct sotp_store *sotp_writer_store(struct sotp_writer *w);
/* Counters of this handle's errors and reopens go there (may be NULL). */
struct sotp_metrics;
void sotp_store_set_metrics(struct sotp_store *st, struct sotp_metrics *m);
/*
 * For tests: fn(arg, sql) sees the text of every statement st starts,
 * transaction control included, in the dialect of its back end (NULL:
 * none). Never bound values.
 */
typedef void sotp_store_trace_fn(void *arg, const char *sql);
void sotp_store_set_trace(
    struct sotp_store *st, sotp_store_trace_fn *fn, void *arg);
/*
 * The health check's write round trip, in one transaction: inserts a
 * challenge-state row under the random id[16] (expiring at now), reads it
 * back, deletes it and commits, so that the commit goes where every write
 * goes (on PostgreSQL with a synchronous standby, to both servers).
 * Leaves nothing behind. SOTP_ERR_STORE_UNAVAILABLE when the database
 * refuses writes.
 */
int sotp_store_probe(struct sotp_store *st, const uint8_t *id, int64_t now);
/*
 * Copies a store URL into out[outsz] with any password replaced by "***"
 * (user:PASSWORD@ in a URI, password=VALUE in a query or a conninfo), for
 * anything that shows the URL to a person.
 */
void sotp_store_url_redact(const char *url, char *out, size_t outsz);

int sotp_store_token_get(struct sotp_store *st, const char *serial,
    struct sotp_token_rec *out); /* SOTP_ERR_NOT_FOUND */
int sotp_store_token_insert(struct sotp_store *st,
    const struct sotp_token_rec *t); /* SOTP_ERR_EXISTS */
typedef int sotp_token_rec_cb(void *arg, const struct sotp_token_rec *t);
/* cb must not call back into the store (one statement is open). */
int sotp_store_token_list(struct sotp_store *st, int unassigned_only,
    sotp_token_rec_cb *cb, void *arg);
/* Sets drift (resync) unconditionally. */
int sotp_store_token_set_drift(
    struct sotp_store *st, const char *serial, int drift);
/* disabled 1 or 0; SOTP_ERR_NOT_FOUND for an unknown serial. */
int sotp_store_token_set_disabled(
    struct sotp_store *st, const char *serial, int disabled);

int sotp_store_contract_get(struct sotp_store *st, const char *id,
    struct sotp_contract_rec *out); /* SOTP_ERR_NOT_FOUND */
typedef int sotp_contract_rec_cb(void *arg, const struct sotp_contract_rec *c);
/*
 * Contracts in id order: locked_only, those locked at `now`; closed -1
 * any, 0 open, 1 closed. cb must not call back into the store (one
 * statement is open); a non-zero return stops the walk.
 */
int sotp_store_contract_list(struct sotp_store *st, int locked_only,
    int64_t now, int closed, sotp_contract_rec_cb *cb, void *arg);
/* One contract's password hash, any; SOTP_ERR_NOT_FOUND when none. */
int sotp_store_pwhash_sample(struct sotp_store *st, char *out);
int sotp_store_contract_insert(struct sotp_store *st,
    const struct sotp_contract_rec *c); /* SOTP_ERR_EXISTS */
int sotp_store_contract_set_password(struct sotp_store *st, const char *id,
    const char *pwhash); /* SOTP_ERR_NOT_FOUND */
/* pwhash replaces old only while old is the hash: *won = 1 if it did. */
int sotp_store_contract_rehash(struct sotp_store *st, const char *id,
    const char *old, const char *pwhash, int *won);
/*
 * The same card sealed afresh (under key version kv), only while old is
 * the sealed card: *won = 1 if it replaced it.
 */
int sotp_store_contract_reseal_card(struct sotp_store *st, const char *id,
    const uint8_t *old, size_t oldlen, const uint8_t *card, size_t len,
    uint32_t kv, int *won);
int sotp_store_contract_set_login(struct sotp_store *st, const char *id,
    enum sotp_login login); /* SOTP_ERR_NOT_FOUND */
/* The card sealed under key version kv. */
int sotp_store_contract_set_card(struct sotp_store *st, const char *id,
    const uint8_t *card, size_t len, uint32_t kv); /* SOTP_ERR_NOT_FOUND */
/* failures = 0, locked_until = 0. */
int sotp_store_contract_unlock(struct sotp_store *st, const char *id);
/*
 * Ends a timed lock that has run out (failures = 0, locked_until = 0) only
 * if locked_until is still `seen`; SOTP_ERR_NOT_FOUND when it changed.
 */
int sotp_store_contract_unlock_expired(
    struct sotp_store *st, const char *id, int64_t seen);
/*
 * Closes the contract only while no token is bound (a guarded write):
 * *closed = 1 if it did, 0 if a token is bound. SOTP_ERR_NOT_FOUND. The
 * caller decides whether to close (admin.c); the guard keeps a bind that
 * races with the close from leaving a closed contract bound.
 */
int sotp_store_contract_close(
    struct sotp_store *st, const char *id, int *closed);

/*
 * Row locks for a read-then-write inside a transaction (sotp_store_begin),
 * held until it ends: PostgreSQL takes the row (SELECT ... FOR UPDATE);
 * SQLite's BEGIN IMMEDIATE already holds the whole file. Take the
 * contract before the token, as every decision and binding does, so that
 * two servers never wait on each other. Outside a transaction:
 * SOTP_ERR_INVALID_ARG.
 */
int sotp_store_token_lock(
    struct sotp_store *st, const char *serial); /* SOTP_ERR_NOT_FOUND */
int sotp_store_contract_lock(struct sotp_store *st, const char *id,
    struct sotp_contract_rec *out); /* SOTP_ERR_NOT_FOUND */
/*
 * sotp_store_contract_lock, and the token the contract is bound to, read
 * by the same statement (one round trip on PostgreSQL): *have 1 and *tok
 * filled when the contract names a token that exists, else *have 0 (no
 * binding, or none of that serial). *tok holds the sealed secret: wipe it.
 */
int sotp_store_contract_lock_token(struct sotp_store *st, const char *id,
    struct sotp_contract_rec *out, struct sotp_token_rec *tok,
    int *have); /* SOTP_ERR_NOT_FOUND */

/*
 * The replay guard and success path, one transaction: sets the token's
 * last_step = step and drift = drift only if its last_step < step and it
 * is not disabled, and if so resets the contract's failure count (none
 * when contract is NULL: the admin's resync). *won = 1 if this call moved
 * last_step; else *disabled = 1 says that the disabled flag was the guard
 * that said no (the step stays unused), 0 that the step was used already.
 * Two processes racing with one code get exactly one *won = 1.
 * SOTP_ERR_NOT_FOUND for an unknown serial.
 */
int sotp_store_use_step(struct sotp_store *st, const char *serial,
    const char *contract, int64_t step, int drift, int *won, int *disabled);
/*
 * Counts one failure, one statement: failures += 1 and, when the new
 * count reaches threshold, locked_until = lock_value. Returns the new
 * count and lock in *failures and *locked_until.
 */
int sotp_store_fail(struct sotp_store *st, const char *contract,
    unsigned int threshold, int64_t lock_value, unsigned int *failures,
    int64_t *locked_until);
/* Resets the failure count of a contract (successful password-only). */
int sotp_store_reset_failures(struct sotp_store *st, const char *contract);

/*
 * The write of a binding, guarded, in one transaction: the token's
 * last_step moves to step (drift too) only if it is older, and the
 * contract takes serial, login and failures = 0 only while it is open
 * and holds no token, and no other contract holds serial. *won = 1 if
 * all of it happened; 0 if any guard said no, and then nothing changed.
 * Why not is the engine's to tell (sotp_engine_bind reads under locks).
 */
int sotp_store_bind(struct sotp_store *st, const char *contract,
    const char *serial, enum sotp_login login, int64_t step, int drift,
    int *won);
/*
 * A migration binding: the contract takes serial and login without a code
 * and the token's last_step stays; the guards of sotp_store_bind (contract
 * open and unbound, token on no other contract) give *won = 0 and change
 * nothing. SOTP_ERR_STORE when the token does not exist.
 */
int sotp_store_bind_migrated(struct sotp_store *st, const char *contract,
    const char *serial, enum sotp_login login, int *won);
/*
 * Unbinds contract from serial only while that is its binding (a guarded
 * write): *unbound = 1 if it did, 0 if it holds no token or another one.
 * SOTP_ERR_NOT_FOUND for an unknown contract. The token keeps its
 * last_step, so its spent codes stay spent.
 */
int sotp_store_unbind(struct sotp_store *st, const char *contract,
    const char *serial, int *unbound);

/*
 * Marks a challenge state id (16 bytes) used; *fresh = 1 the first time,
 * 0 on a replay. `expires` is the state's own expiry. Marks with
 * expires < now are purged in batches (about once a minute, by the use
 * that finds a purge due), and the highest expiry purged so far is kept:
 * a state that does not outlive it is never fresh, since its mark may be
 * gone (a clock running ahead purged it).
 */
int sotp_store_state_use(struct sotp_store *st, const uint8_t *id,
    int64_t expires, int64_t now, int *fresh);

/*
 * The audit chains' storage (audit.c has their rules). A row is appended
 * to chain 1..SOTP_AUDIT_CHAINS with its place in it (seq >= 1) and keyed
 * hash (mac, 32 bytes), keyed = 1; or, by a writer without the master
 * key, with seq 0 and mac NULL, keyed = 0, to be linked into that chain
 * later.
 */
#define SOTP_AUDIT_MAC_LEN 32
#define SOTP_AUDIT_CHAINS 16
/* kv: the key version whose audit key made mac. */
int sotp_store_audit_append(struct sotp_store *st,
    const struct sotp_audit_rec *r, int chain, int64_t seq, const uint8_t *mac,
    uint32_t kv);
/* How many chains this store's appends spread over (1 on SQLite). */
int sotp_store_audit_chains(const struct sotp_store *st);
/* The chain this transaction's rows go to (store_ops.c). */
int sotp_store_audit_chain(struct sotp_store *st);
/*
 * Makes chain this connection's own. A connection whose transactions
 * lock many contracts (a group-commit writer) must share one chain with
 * every other such connection: taken first, its head then orders them,
 * where two of them on two heads could each hold a contract the other
 * wants (writer.c).
 */
void sotp_store_audit_chain_home(struct sotp_store *st, int chain);
/* A chain's head row: its last link, its pruned base, the pending. */
struct sotp_audit_head {
	int chain;   /* 1..SOTP_AUDIT_CHAINS */
	int64_t seq; /* the last chained row; 0: none yet */
	uint8_t mac[SOTP_AUDIT_MAC_LEN];
	uint8_t tag[SOTP_AUDIT_MAC_LEN]; /* over seq and mac, by a key holder */
	int has_tag;
	int64_t pending;  /* rows written without the key, not yet linked */
	int64_t base_seq; /* the last row pruned; 0: none */
	uint8_t base_mac[SOTP_AUDIT_MAC_LEN];
	uint8_t base_tag[SOTP_AUDIT_MAC_LEN];
	int has_base_tag;
	uint32_t kv, base_kv; /* the key versions that made tag, base_tag */
	int held; /* in memory: its tag was found to hold (audit.c extend) */
};
/*
 * Chain's head; lock: under the row lock that orders its appends (in a
 * transaction).
 */
int sotp_store_audit_head(
    struct sotp_store *st, int chain, int lock, struct sotp_audit_head *h);
int sotp_store_audit_head_set(
    struct sotp_store *st, const struct sotp_audit_head *h);
/* A row's place in the chain, beside its columns. */
struct sotp_audit_link {
	int64_t seq; /* 0: not linked */
	uint8_t mac[SOTP_AUDIT_MAC_LEN];
	int has_mac;
	int keyed;   /* 1 by a key holder, 0 without the key, -1 before */
	uint32_t kv; /* the key version of mac (0 for rows from before) */
};
typedef int sotp_audit_link_cb(
    void *arg, const struct sotp_audit_row *r, const struct sotp_audit_link *l);
/* The chain's oldest row waiting to be linked; SOTP_ERR_NOT_FOUND. */
int sotp_store_audit_pending(
    struct sotp_store *st, int chain, sotp_audit_link_cb *cb, void *arg);
/* Links pending row id at seq with mac; SOTP_ERR_NOT_FOUND if it moved. */
int sotp_store_audit_link(struct sotp_store *st, int64_t id, int64_t seq,
    const uint8_t *mac, uint32_t kv);
/* The chain's linked rows past after_seq, in order. */
int sotp_store_audit_walk(struct sotp_store *st, int chain, int64_t after_seq,
    sotp_audit_link_cb *cb, void *arg);
/* Rows waiting to be linked, and rows from before the chain. */
int sotp_store_audit_counts(
    struct sotp_store *st, int64_t *pending, int64_t *legacy);
/* The chain's first linked row stamped at or after `before` (0: none). */
int sotp_store_audit_prune_point(
    struct sotp_store *st, int chain, int64_t before, int64_t *seq);
/* The mac of the chain's row at seq; SOTP_ERR_NOT_FOUND. */
int sotp_store_audit_mac_at(
    struct sotp_store *st, int chain, int64_t seq, uint8_t *mac);
/*
 * Deletes the chain's linked rows up to through_seq and the rows from
 * before the chains stamped before `before`; *removed their number.
 */
int sotp_store_audit_prune(struct sotp_store *st, int chain,
    int64_t through_seq, int64_t before, int64_t *removed);
/*
 * The first row that claims a writer (keyed not NULL) but no chain
 * 1..SOTP_AUDIT_CHAINS: put in by hand; SOTP_ERR_NOT_FOUND when none.
 */
int sotp_store_audit_stray(struct sotp_store *st, int64_t *id, int64_t *seq);
/*
 * Rows oldest first; contract NULL for all; since/until 0: no bound. cb
 * must not call back into the store (one statement is open).
 */
int sotp_store_audit_list(struct sotp_store *st, const char *contract,
    int64_t since, int64_t until, sotp_audit_cb *cb, void *arg);

/*
 * A transaction: a batch of writes that lands all at once or not at all
 * (token import), or a decision's state change with its audit row. begin
 * opens it (SQLite: BEGIN IMMEDIATE, which takes the write lock before
 * anything is read); commit makes every write since begin durable
 * together, and on failure rolls back; rollback drops them and is a no-op
 * when none is open. Operations called inside run in savepoints, so that
 * one refused operation never discards the rest; begin inside an open
 * transaction nests the same way.
 */
int sotp_store_begin(struct sotp_store *st);
/*
 * sotp_store_begin for a transaction that takes every audit chain's head
 * (PostgreSQL): all of them at once, in chain order (store.c says why).
 */
int sotp_store_begin_every_head(struct sotp_store *st);
/*
 * A consistent online copy of the store into a new file at the absolute
 * path (created 0600, never overwritten), checked before it is kept; the
 * store stays open for reads and writes throughout. SQLite only: for
 * PostgreSQL, SOTP_ERR_CONFIG (pg_dump and base backups do it).
 */
int sotp_store_backup(struct sotp_store *st, const char *path);
int sotp_store_commit(struct sotp_store *st);
void sotp_store_rollback(struct sotp_store *st);

/*
 * ---- store_keys.c: the keyring's rows (keys.c and keys_admin.c have the
 * rules) ----
 *
 * key_dek holds the live data-encryption key versions: what tokens.kv and
 * contracts.kv (the version each sealed value names) reference, so the
 * database itself refuses to retire a version a value still needs.
 * key_wrap holds each version's keys wrapped under each key-encryption
 * key, and key_ring the current version and the generation every change
 * bumps.
 */
#define SOTP_WRAP_DEK 1   /* a version's data-encryption key */
#define SOTP_WRAP_AUDIT 2 /* its audit subkey, kept after retirement */
/* A wrapped key: the layout of a version 0 sealed value (seal.c). */
#define SOTP_WRAP_LEN (SOTP_KEY_LEN + SOTP_SEAL_OVERHEAD)
#define SOTP_KEK_NAME_MAX 192
#define SOTP_KEK_CONF_MAX (SOTP_PATH_MAX + 16)

struct sotp_key_ring {
	uint32_t current;
	int64_t gen;
	int64_t switched; /* when current last changed */
};
/* lock: under its row lock, in a transaction. NOT_FOUND: no row yet. */
int sotp_store_key_ring(
    struct sotp_store *st, int lock, struct sotp_key_ring *r);
/* The first row (init): version current, generation 1. */
int sotp_store_key_ring_init(
    struct sotp_store *st, uint32_t current, int64_t switched);
/* A new current version (switched), or the same with gen + 1. */
int sotp_store_key_ring_set(
    struct sotp_store *st, uint32_t current, int64_t switched);
int sotp_store_key_ring_bump(struct sotp_store *st);
typedef int sotp_key_live_cb(void *arg, uint32_t version, int64_t created);
/* The live versions, ascending; cb must not call back into the store. */
int sotp_store_key_live(struct sotp_store *st, sotp_key_live_cb *cb, void *arg);
int sotp_store_key_add(
    struct sotp_store *st, uint32_t version, int64_t created);
/*
 * Retires a version: its wrapped data keys and its key_dek row go (the
 * audit subkeys stay). SOTP_ERR_STORE when a value still names it.
 */
int sotp_store_key_retire(struct sotp_store *st, uint32_t version);
typedef int sotp_key_wrap_cb(void *arg, uint32_t version, const char *kek,
    int what, const uint8_t *blob, size_t len);
/* Every wrapped key, by version, KEK and purpose. */
int sotp_store_key_wraps(
    struct sotp_store *st, sotp_key_wrap_cb *cb, void *arg);
/* One wrapped key; SOTP_ERR_NOT_FOUND. */
int sotp_store_key_wrap_get(struct sotp_store *st, uint32_t version,
    const char *kek, int what, uint8_t *blob, size_t blobsz, size_t *len);
/* SOTP_ERR_EXISTS when that version, KEK and purpose has one. */
int sotp_store_key_wrap_put(struct sotp_store *st, uint32_t version,
    const char *kek, int what, const uint8_t *blob, size_t len);
/* Every key wrapped under kek; *removed how many. */
int sotp_store_key_wrap_drop(
    struct sotp_store *st, const char *kek, int64_t *removed);
/* What each version seals: 1 token secrets, 2 cards, 3 chained audit rows. */
typedef int sotp_key_count_cb(void *arg, int what, uint32_t kv, int64_t n);
int sotp_store_key_counts(
    struct sotp_store *st, sotp_key_count_cb *cb, void *arg);
/* A sealed value that names a version older than the one wanted. */
struct sotp_sealed_row {
	char id[SOTP_ID_MAX]; /* serial or contract ID: the value's aad */
	uint32_t kv;
	uint8_t blob[SOTP_CARD_MAX];
	size_t len;
};
/*
 * Up to max token secrets (cards: 0) or cards (1) sealed under a version
 * below `below`, oldest version first, their rows locked to the end of
 * the transaction (PostgreSQL: rows another transaction holds are
 * skipped, and come in a later batch).
 */
int sotp_store_key_old(struct sotp_store *st, int cards, uint32_t below,
    struct sotp_sealed_row *rows, size_t max, size_t *n);
/*
 * Replaces a value still sealed under oldkv; *won = 1 if it was. A
 * token's (cards 0) seed fingerprint under kv, fp[SOTP_SEED_FP_LEN], is
 * written with it; cards take NULL.
 */
int sotp_store_key_reseal(struct sotp_store *st, int cards, const char *id,
    uint32_t oldkv, const uint8_t *blob, size_t len, uint32_t kv,
    const uint8_t *fp, int *won);
/*
 * Seed fingerprints (seedfp.c). seed_find: the first serial whose
 * fingerprint is fp under version kv, into holder (SOTP_ERR_NOT_FOUND:
 * none). seed_unfilled: a token with no fingerprint yet, into serial
 * (SOTP_ERR_NOT_FOUND: none). seed_todo: up to max tokens with none
 * (serial, kv, sealed secret), in a transaction. seed_set: fills one
 * still empty and still under kv; *won = 1 if it was. seed_shared: each
 * token whose seed another holds (the same fingerprint under the same
 * version), its group numbered from 1, to fn; a non-zero return stops.
 */
int sotp_store_seed_find(struct sotp_store *st, const uint8_t *fp, uint32_t kv,
    char *holder, size_t holdersz);
int sotp_store_seed_unfilled(
    struct sotp_store *st, char *serial, size_t serialsz);
int sotp_store_seed_todo(
    struct sotp_store *st, struct sotp_sealed_row *rows, size_t max, size_t *n);
int sotp_store_seed_set(struct sotp_store *st, const char *serial, uint32_t kv,
    const uint8_t *fp, int *won);
typedef int sotp_store_shared_fn(
    void *arg, unsigned int group, const char *serial);
int sotp_store_seed_shared(
    struct sotp_store *st, sotp_store_shared_fn *fn, void *arg);
/* A live version and its data key wrapped under one KEK (len 0: none). */
struct sotp_key_live {
	uint32_t version;
	uint8_t blob[SOTP_WRAP_LEN];
	size_t len;
};
/*
 * In one statement (one snapshot): the ring, and every live version with
 * its data key wrapped under kek, up to max (*n; *over when more).
 * SOTP_ERR_NOT_FOUND without a ring.
 */
int sotp_store_key_load(struct sotp_store *st, const char *kek,
    struct sotp_key_ring *ring, struct sotp_key_live *live, size_t max,
    size_t *n, int *over);
/* How many values name a version below kv (below = 1), or kv itself. */
int sotp_store_key_left(
    struct sotp_store *st, uint32_t kv, int below, int64_t *n);

/*
 * ---- pkcs11.c: the key-encryption key in a PKCS#11 token ----
 */
struct sotp_p11;
struct sotp_policy;
/*
 * Loads the policy's module, finds its token (label, slot), logs in with
 * the PIN from its file and finds its key (one AES-256 key, sensitive,
 * not extractable). SOTP_ERR_KEY with a message naming module, token,
 * slot and key in err.
 */
int sotp_p11_open(const struct sotp_policy *p, struct sotp_p11 **out, char *err,
    size_t errsz);
void sotp_p11_close(struct sotp_p11 *h);
/* "token 'T' (slot N), key 'K'". */
const char *sotp_p11_where(const struct sotp_p11 *h);
/*
 * AES-256-GCM in the token: iv (12 bytes), aad, a 16-byte tag after the
 * ciphertext. SOTP_ERR_DECRYPT when the tag does not hold, SOTP_ERR_KEY
 * when the token fails.
 */
int sotp_p11_crypt(struct sotp_p11 *h, int enc, const uint8_t *iv,
    const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
    uint8_t *out, size_t outsz, size_t *outlen, char *err, size_t errsz);

/* ---- metrics.c: counters every process adds to, in one shared file ---- */

/*
 * The counters file (the policy's `metrics`): a fixed layout mapped
 * MAP_SHARED by every process that decides (radiusd's threads, each PAM
 * call, the CLI), which adds to it with atomic increments: no lock, no
 * system call on the hot path. `shinkin-otp metrics` renders it in the
 * Prometheus text format. Counting never fails a request: a file that
 * cannot be opened or has another layout leaves the handle NULL, and
 * every sotp_metrics_* call takes NULL and does nothing.
 */
struct sotp_metrics;
/* Maps path, creating it (mode 0660 less the umask) when missing. */
int sotp_metrics_open(
    const char *path, struct sotp_metrics **out, char *err, size_t errsz);
void sotp_metrics_close(struct sotp_metrics *m);
/*
 * One decision: its context (a context the policy does not define is
 * counted as "-"), verdict, reason, and the microseconds the core spent
 * on it.
 */
void sotp_metrics_decision(struct sotp_metrics *m, const char *context,
    int defined, enum sotp_verdict v, int reason, uint64_t usec);
/* A store operation failed with rc (SOTP_ERR_STORE_UNAVAILABLE, ...). */
void sotp_metrics_store_error(struct sotp_metrics *m, int rc);
/* A lost store connection was reopened (ok = 1) or could not be. */
void sotp_metrics_reopen(struct sotp_metrics *m, int ok);
/* CLOCK_MONOTONIC in microseconds (durations, deadlines; never decisions). */
uint64_t sotp_monotonic_us(void);

/* ---- policy.c: the policy file, read once into an immutable struct ---- */

#define SOTP_MAX_KINDS 16
#define SOTP_MAX_CONTEXTS 16
#define SOTP_MAX_SERVICES 64
#define SOTP_PATH_MAX 1024
/* The longest input (answer, combined value) an attempt keeps, in bytes. */
#define SOTP_INPUT_MAX 1024
#define SOTP_MAX_CELLS 8

enum sotp_second { SOTP_2F_NONE, SOTP_2F_OTP, SOTP_2F_CARD, SOTP_2F_USER };
enum sotp_action { SOTP_ACT_AUTH, SOTP_ACT_REGISTER, SOTP_ACT_UNREGISTER };

struct sotp_kind {
	char name[SOTP_NAME_MAX];
	int64_t sunset_end; /* first second after the sunset day; 0: none */
	char sunset[11];    /* YYYY-MM-DD as written */
	unsigned int warn_days;
	int serial_exact; /* serials match only as written, case included */
};

struct sotp_context_def {
	char name[SOTP_NAME_MAX];
	int password; /* 1: the contract password is checked */
	enum sotp_second second;
	enum sotp_action action;
};

struct sotp_service {
	char name[SOTP_ID_MAX];
	int context; /* index into contexts */
};

enum sotp_kek_source { SOTP_KEK_FILE = 0, SOTP_KEK_PKCS11 = 1 };

/* The catalogs a policy may choose with `language = en | ja`. */
enum sotp_lang { SOTP_LANG_EN = 0, SOTP_LANG_JA = 1 };
#define SOTP_NLANG 2
/* Rows of the catalog (catalog.c): reasons, prompts, notices. */
#define SOTP_NMSG 36

/* [password] hash: the crypt(3) methods new password hashes may use. */
enum sotp_pw_method {
	SOTP_PW_YESCRYPT,
	SOTP_PW_SHA512CRYPT,
	SOTP_PW_BCRYPT,
	SOTP_PW_NMETHODS
};

struct sotp_policy {
	char path[SOTP_PATH_MAX];
	enum sotp_lang lang;
	/* unknown_contract = reveal: refused as such, not as a password. */
	int reveal_unknown;
	/* [messages] overrides by catalog row; "" keeps the catalog's. */
	char msg[SOTP_NMSG][SOTP_MSG_MAX];
	char store[SOTP_PATH_MAX + 16];
	char master_key[SOTP_PATH_MAX];
	char issuer[128];
	enum sotp_alg alg;
	unsigned int digits, period, window_back, window_forward;
	unsigned int max_drift, resync_window;
	/*
	 * Event-based (HOTP) tokens: how many counters past the last
	 * accepted one a code may come from (RFC 4226 section 7.4), and how
	 * far "token resync" searches for two consecutive codes.
	 */
	unsigned int hotp_look_ahead, hotp_resync_window;
	unsigned int min_secret_bytes; /* shortest token secret accepted */
	int migration_binding; /* contract import may bind without a code */
	int rehash;      /* an outdated hash is remade at the next login */
	int pskc_signed; /* token import takes only PSKC checked by --signer */
	/* [password]: how new password hashes are made (passwd.c) */
	enum sotp_pw_method pw_method;
	unsigned int pw_cost;
	/*
	 * legacy_import = refuse: contract import refuses a DES-based,
	 * md5crypt or NT hash (sotp_passwd_legacy) instead of taking it
	 * for a rehash at the next login.
	 */
	int pw_legacy_refuse;
	unsigned int lock_threshold, lock_duration;
	unsigned int state_lifetime, max_rounds;
	unsigned int card_rows, card_cols, card_cells;
	/*
	 * [key]: where the key-encryption key comes from, a file (the master
	 * key) or an AES key in a PKCS#11 token, named by module, token label
	 * (and slot), key label and the file its PIN is in; and how often a
	 * process looks for a new data-encryption key version.
	 */
	enum sotp_kek_source kek;
	char p11_module[SOTP_PATH_MAX];
	char p11_token[33]; /* a PKCS#11 token label is 32 characters */
	unsigned long p11_slot;
	int p11_has_slot;
	char p11_key[128];
	char p11_pin_file[SOTP_PATH_MAX];
	unsigned int key_refresh;
	/* [store]: seconds per host; milliseconds (see struct sotp_limits) */
	unsigned int connect_timeout, statement_timeout, lock_timeout;
	char metrics[SOTP_PATH_MAX]; /* the counters file; "": none */
	struct sotp_kind kinds[SOTP_MAX_KINDS];
	size_t nkinds;
	size_t default_kind;
	struct sotp_context_def contexts[SOTP_MAX_CONTEXTS];
	size_t ncontexts;
	struct sotp_service services[SOTP_MAX_SERVICES];
	size_t nservices;
};

/* Reads path into *p; SOTP_ERR_CONFIG with "file:line: ..." in err. */
int sotp_policy_read(
    const char *path, struct sotp_policy *p, char *err, size_t errsz);
const struct sotp_kind *sotp_policy_kind(
    const struct sotp_policy *p, const char *name);
const struct sotp_context_def *sotp_policy_context(
    const struct sotp_policy *p, const char *name);
/* The default policy text (conf/shinkin-otp.conf, built in). */
extern const char sotp_default_policy_text[];

/* ---- catalog.c: every text a customer reads, in both languages ---- */

/* Catalog keys beyond the reason numbers (which are keys themselves). */
enum sotp_msg_key {
	SOTP_M_PROMPT_PASSWORD = 100,
	SOTP_M_PROMPT_OTP,
	SOTP_M_PROMPT_CARD,
	SOTP_M_PROMPT_SERIAL,
	SOTP_M_PROMPT_LOGIN_CHOICE,
	SOTP_M_SUNSET_SOON, /* a legacy kind nears its sunset: accepted */
	SOTP_M_CARD_CELL,   /* one card cell in a prompt: %{row}, %{col} */
	SOTP_M_CARD_CELL_SEP
};

/* What a text's placeholders expand to; NULL or 0: none. */
struct sotp_msg_vars {
	const char *date;     /* %{date}: a kind's sunset, YYYY-MM-DD */
	const char *kind;     /* %{kind}: a token kind's name */
	const uint8_t *cells; /* %{cells}: card cells, CARD_CELL each */
	unsigned int ncells;
	unsigned int cols; /* the card's columns, to name a cell */
};

/* The catalog row of a key (a reason or SOTP_M_*), or -1. */
int sotp_msg_row(int key);
/* The row named name ("WRONG_CODE", "PROMPT_OTP"), or -1. */
int sotp_msg_find(const char *name);
/* A row's name; NULL past the last row. */
const char *sotp_msg_name(int row);
/* A row's text in the policy's language, its override if any; never NULL. */
const char *sotp_msg_text(const struct sotp_policy *p, int row);
/* The compiled text of a row in a language (tests, the man page check). */
const char *sotp_msg_builtin(int row, enum sotp_lang lang);
/*
 * Writes the text of key, placeholders expanded, to out[outsz] (at least
 * SOTP_MSG_MAX). The load check guarantees it fits SOTP_REPLY_MAX octets.
 */
void sotp_msg_format(const struct sotp_policy *p, int key,
    const struct sotp_msg_vars *v, char *out, size_t outsz);
/*
 * Checks a row's text under policy p (its override, else the catalog's):
 * UTF-8, no control character, only the row's placeholders (and those it
 * needs), and at most SOTP_REPLY_MAX octets once expanded with the
 * longest values p allows. Returns 0, or -1 with the reason in why[whysz].
 */
int sotp_msg_check(
    const struct sotp_policy *p, int row, char *why, size_t whysz);
/*
 * What the character at s (in valid UTF-8) would hide or do on a screen,
 * as "a control character", "a direction override" or the name of an
 * invisible one, with its code point in *cp; NULL for any other. The
 * policy reader refuses a key or a value holding one.
 */
const char *sotp_text_hazard(const char *s, unsigned int *cp);

/* ---- input.c: forgiving input, strict verification ---- */

/* 1 when s[0..n) is well-formed UTF-8 (RFC 3629), else 0. */
int sotp_utf8_valid(const char *s, size_t n);
/*
 * A code or card answer as typed: full-width digits become ASCII, blanks
 * (also U+3000) and dashes (hyphen, U+2010-2015, U+2212, U+FF0D, U+30FC,
 * U+FF70) are dropped. out[outsz] receives ASCII digits only.
 * SOTP_ERR_BAD_INPUT on any other character, on no digit or when they
 * do not fit.
 */
int sotp_input_digits(const char *in, char *out, size_t outsz);
/*
 * A serial as typed: full-width ASCII becomes ASCII and blanks are
 * dropped. With nodash, dashes are dropped too; with upper, letters are
 * upper-cased. SOTP_ERR_BAD_INPUT unless the result is a valid ID.
 */
int sotp_input_serial(
    const char *in, int nodash, int upper, char *out, size_t outsz);
/*
 * A login choice as typed: 1 (otp), 2 (card), 3 (none), in full-width or
 * ASCII digits, or what sotp_login_parse takes. SOTP_ERR_BAD_INPUT else.
 */
int sotp_input_login(const char *in, enum sotp_login *l);
/*
 * Append mode: *pwlen is the byte length of the password in "password
 * followed by n digits", the digits ASCII or full-width. Split once, by
 * count: SOTP_ERR_BAD_INPUT when the last n characters are not all
 * digits or no password is left before them.
 */
int sotp_input_split(const char *in, unsigned int n, size_t *pwlen);

/* ---- keys.c: the keyring (versioned data keys under a KEK) ---- */

/*
 * The KEK a policy names, as a person reads it: "file PATH" or
 * "pkcs11:TOKEN/KEY" (the store's name of a file KEK needs the file).
 */
void sotp_kek_conf(const struct sotp_policy *p, char *out, size_t outsz);
/*
 * Opens the policy's key-encryption key (reads the key file, or logs in
 * to the token); no data key is loaded before sotp_keys_sync. Reference
 * counted: sotp_keyring_ref, sotp_keyring_free (shinkin_otp.h).
 */
int sotp_keyring_new(const struct sotp_policy *p, struct sotp_keyring **out,
    char *err, size_t errsz);
struct sotp_keyring *sotp_keyring_ref(struct sotp_keyring *k);
/* The KEK's name in the store: "file:HEX" or "pkcs11:TOKEN/KEY". */
const char *sotp_keyring_kek(const struct sotp_keyring *k);
/* What the policy it was opened with says (sotp_kek_conf). */
const char *sotp_keyring_conf(const struct sotp_keyring *k);
/* 1 when its pages are locked in memory. */
int sotp_keyring_locked(const struct sotp_keyring *k);
/* Wraps (unwraps) version v's key `what` under k's KEK; secret key. */
int sotp_keyring_wrap(struct sotp_keyring *k, uint32_t v, int what,
    const uint8_t *key, uint8_t *out, size_t *outlen, char *err, size_t errsz);
int sotp_keyring_unwrap(struct sotp_keyring *k, uint32_t v, int what,
    const uint8_t *blob, size_t len, uint8_t *key, char *err, size_t errsz);
/*
 * Brings ctx's keyring to the store's keys: at once (force), or when the
 * policy's refresh interval has passed since it last looked.
 */
int sotp_keys_sync(struct sotp_ctx *ctx, int force);
/*
 * After a reconnect (sotp_ctx_ready): the store may be another server (a
 * promoted standby), so the next use of a key reads the ring's generation
 * whatever the refresh interval, and reloads the keys if it moved. The
 * keys held stay: nothing is unwrapped again unless the store changed.
 */
void sotp_keys_recheck(struct sotp_ctx *ctx);
/* The version new values, States and audit rows are made under. */
int sotp_keys_current(struct sotp_ctx *ctx, uint32_t *kv);
/* Seals pt (secret) under the current version, aad bound in (seal.c). */
int sotp_keys_seal(struct sotp_ctx *ctx, const char *aad, const uint8_t *pt,
    size_t ptlen, uint8_t *out, size_t outsz, size_t *outlen);
/* The same under live version kv (a rotation's re-sealing). */
int sotp_keys_seal_kv(struct sotp_ctx *ctx, uint32_t kv, const char *aad,
    const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outsz,
    size_t *outlen);
/*
 * Unseals under the version the blob names; SOTP_ERR_DECRYPT for a
 * wrong aad, tampering or a version the store does not hold.
 */
int sotp_keys_unseal(struct sotp_ctx *ctx, const char *aad, const uint8_t *in,
    size_t inlen, uint8_t *out, size_t outsz, size_t *outlen);
/* HMAC-SHA256 under version kv's State subkey; out[32]. */
int sotp_keys_state_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out);
/* The same under its card subkey: what picks a card's cells. */
int sotp_keys_card_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out);
/* The same under its seed subkey: a token seed's fingerprint (seedfp.c). */
int sotp_keys_seed_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out);
/*
 * ---- seedfp.c: is a new token's seed already another token's? ----
 *
 * sotp_seed_check_begin, inside the write transaction that will insert
 * the new tokens: takes the key ring's row (writers of given seeds, and
 * each batch of a rotation, one after the other), refuses when a stored
 * token has no fingerprint yet (SOTP_ERR_STORE, the token and what to run
 * in the ctx's error, and needs_init set: fail closed), and notes the
 * live key versions. sotp_seed_reason: the reason of a failed check's
 * refusal and row: BAD_CONFIG for a store init has yet to fill (the
 * upgrade not finished: no outage, nothing to retry), else
 * sotp_reason_from_rc's.
 * sotp_seed_held: whether a stored token holds seed[len] (secret): its
 * fingerprint looked up under each noted version, oldest first; *found
 * and holder (that token's serial) when one does. sotp_seed_fp: the
 * fingerprint to store with a token sealed under kv. Each can return
 * SOTP_ERR_KEY / _DECRYPT (a version not held), SOTP_ERR_STORE*.
 */
/* Live versions a store may have at once (keys.c refuses more). */
#define SOTP_KEY_LIVE_MAX 64
struct sotp_seed_check {
	uint32_t v[SOTP_KEY_LIVE_MAX];
	size_t n;
	int needs_init; /* refused: a token without a fingerprint */
};
int sotp_seed_check_begin(struct sotp_ctx *ctx, struct sotp_seed_check *sc);
int sotp_seed_reason(const struct sotp_seed_check *sc, int rc);
int sotp_seed_held(struct sotp_ctx *ctx, const struct sotp_seed_check *sc,
    const uint8_t *seed, size_t len, int *found, char *holder, size_t holdersz);
int sotp_seed_fp(struct sotp_ctx *ctx, uint32_t kv, const uint8_t *seed,
    size_t len, uint8_t *fp);
/*
 * Fills the fingerprint of every token that has none (a store upgraded
 * to schema version 5), batch transactions of its own; init runs it.
 * *filled counts them. A token no live key unseals stops it (SOTP_ERR_
 * DECRYPT, the serial in the ctx's error), what was filled kept.
 */
int sotp_seed_fill(struct sotp_ctx *ctx, time_t now, int64_t *filled);
/*
 * One "token.seed_shared" audit row per group of tokens that hold one
 * seed (sotp_seed_shared), naming their serials; init runs it each time.
 * A finding, not a failure: rows that cannot be written are logged.
 */
void sotp_seed_shared_audit(struct sotp_ctx *ctx, time_t now);
/*
 * The same under its audit subkey, fetched first if this process does not
 * hold it (sotp_keys_audit_load); inside a walk of rows (the store has a
 * statement open) only one held, SOTP_ERR_NOT_FOUND if not: the walk
 * stops, loads it, and goes on. A process holds KR_SLOTS versions at
 * once (keys.c), a retired version's audit key giving way when more are
 * wanted, so a store may have retired any number of them.
 */
int sotp_keys_audit_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out);
/*
 * Loads kv's audit key: SOTP_ERR_NOT_FOUND when the store holds none
 * under any KEK (no row was keyed by that version), SOTP_ERR_KEY when it
 * holds one this process cannot open (ctx->err names the version and
 * why), else a store error.
 */
int sotp_keys_audit_load(struct sotp_ctx *ctx, uint32_t kv);
/* Version v's data (SOTP_WRAP_DEK) or audit key in clear (secret). */
int sotp_keys_plain(struct sotp_ctx *ctx, uint32_t v, int what, uint8_t *out);
/* The master key file's key (version 0's data key); secret. */
int sotp_keys_file_key(struct sotp_ctx *ctx, uint8_t *out);
/*
 * ---- keys_admin.c ----
 * A store without keys (new) gets version 1, wrapped under ctx's KEK,
 * stamped and audited at now; a store with keys is left as it is.
 */
int sotp_keys_first(struct sotp_ctx *ctx, int64_t now);

/* ---- ctx.c ---- */

/* A file as stat(2) saw it: replaced, rewritten or chmod'ed, it differs. */
struct sotp_file_id {
	int ok;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

/*
 * An audit row appended inside a transaction, its log line held until
 * that transaction ends (audit.c sotp_audit_txn_end): copies of the
 * record's texts, which hold no secret. A decision or an admin change
 * holds one or two; a batch of admin calls in one transaction (the test
 * tools' provisioning) one or two per call, up to SOTP_AUDIT_WAITING.
 */
#define SOTP_AUDIT_WAITING 4096
struct sotp_audit_wait {
	int depth;   /* the transaction level the row went into */
	int written; /* 0: the append failed, why says why */
	int64_t ts;
	int reason;
	char action[32];
	char contract[SOTP_ID_MAX];
	char serial[SOTP_ID_MAX];
	char context[SOTP_NAME_MAX];
	char verdict[16];
	char detail[512];
	char why[SOTP_WRITER_ERR_MAX];
};

struct sotp_ctx {
	struct sotp_policy pol;
	int have_policy;
	/* The keys (keys.c); NULL without them (sotp_ctx_load_nokey). */
	struct sotp_keyring *keys;
	int have_key;
	/* sotp_audit_batch_begin..end: the head, held in memory (audit.c) */
	struct sotp_audit_head *audit_batch;
	/* Lines of rows not yet committed, in the order appended. */
	struct sotp_audit_wait *waiting;
	size_t nwaiting, waiting_room;
	/*
	 * The hash an unknown contract's password is checked against, so
	 * that it costs what a real check costs: a real contract's hash,
	 * or one made like every new hash (engine.c, dummy_hash).
	 */
	char dummy_hash[SOTP_HASH_MAX];
	/*
	 * Its store calls the audit's transaction hook on this context, so
	 * lines wait for the COMMIT of their rows. Code that points st at
	 * another store for a while (the engine's writer path) gets no hook
	 * call for that store's ends: it logs the waiting lines itself with
	 * sotp_audit_txn_end when it puts st back (engine.c writer_end).
	 */
	struct sotp_store *st;
	/* Decisions write through it when set (writer.c); not owned. */
	struct sotp_writer *writer;
	struct sotp_metrics *metrics; /* NULL: not counting */
	struct sotp_mac *mac;
	sotp_log_fn *log;
	void *log_arg;
	int debug;
	/* What the policy and key files were when read (sotp_ctx_stale). */
	char pol_path[SOTP_PATH_MAX];
	struct sotp_file_id pol_id, key_id;
	char err[SOTP_CTX_ERR_MAX];
};

void sotp_ctx_seterr(struct sotp_ctx *ctx, const char *fmt, ...)
    SOTP_PRINTF(2, 3);
/*
 * After a failure's consequence (the refusal's audit row that the failure
 * then kept out, its commit): the context's text names cause, the text it
 * held when the failure happened, first, as the core's own log line does;
 * what the consequence's text replaced it with follows, introduced by
 * `what` ("the audit row was not written"), when failed and other.
 */
void sotp_ctx_keep_cause(
    struct sotp_ctx *ctx, const char *cause, int failed, const char *what);
void sotp_log(const struct sotp_ctx *ctx, int prio, const char *fmt, ...)
    SOTP_PRINTF(3, 4);
/*
 * The start of every call that serves a request: SOTP_ERR_CONFIG unless
 * the whole context (policy, key, store) is loaded; a store handle lost
 * in an earlier request is reopened here (SOTP_ERR_STORE_UNAVAILABLE when
 * it cannot be, the reason in the ctx's error text).
 */
int sotp_ctx_ready(struct sotp_ctx *ctx);
/*
 * The same for what touches no secret: policy and store, with or without
 * the key (sotp_ctx_load_nokey), a lost store reopened as above.
 * SOTP_ERR_CONFIG, SOTP_ERR_STORE_UNAVAILABLE.
 */
int sotp_ctx_ready_nokey(struct sotp_ctx *ctx);
/* The policy's [store] limits. */
void sotp_ctx_limits(const struct sotp_ctx *ctx, struct sotp_limits *lim);

/* ---- audit.c ---- */

/*
 * The log line of audit row r (key=value; accepts at LOG_INFO, the rest
 * at LOG_NOTICE), for rows written without sotp_audit.
 */
void sotp_audit_line(
    const struct sotp_ctx *ctx, const struct sotp_audit_rec *r);

/*
 * Appends one audit row to the chain, no log line (the import's rows,
 * logged once committed): inside the caller's transaction, or in one of
 * its own. Without the key the row waits to be chained (audit.c).
 */
int sotp_audit_append(struct sotp_ctx *ctx, const struct sotp_audit_rec *r);
/*
 * The same, in a level of its own when the caller's transaction appends
 * through a batch's head (sotp_audit_batch_begin, the writer's group):
 * a row the database refuses undoes only itself (PostgreSQL aborts the
 * level a failed statement ran in), and the head is put back as it was,
 * so that the caller's work can still be committed (a refusal's failure
 * count stands, row or not).
 */
int sotp_audit_append_apart(
    struct sotp_ctx *ctx, const struct sotp_audit_rec *r);
/*
 * Many rows in one transaction (the imports): begin reads the chain's
 * head under its lock once, inside the caller's open transaction; every
 * append until end chains its row from that copy and leaves the head
 * row alone; end(rc) writes the head once when rc is SOTP_OK, and always
 * ends the batch. Every row appended in a batch must commit with it, or
 * the caller rolls the whole transaction back (a savepoint rolled back
 * under a batch would leave a gap in the chain). On PostgreSQL each
 * UPDATE of the head inside one transaction leaves a row version that
 * the next read of it walks past: a row at a time, n rows cost n^2.
 * SOTP_ERR_STORE*, SOTP_ERR_NOMEM, SOTP_ERR_INVALID_ARG (a batch open).
 */
/*
 * Inside the caller's transaction: every chain's head and base tagged
 * under a version no longer live (and whose tag holds) tagged again
 * under `to`; *retagged: how many chains.
 */
int sotp_audit_retag(struct sotp_ctx *ctx, uint32_t to, int *retagged);
int sotp_audit_batch_begin(struct sotp_ctx *ctx);
int sotp_audit_batch_end(struct sotp_ctx *ctx, int rc);
/*
 * Appends r's row (when store) and logs its line once the row is
 * committed, so that the line tells what happened: a row of its own
 * (no transaction open), at once after its commit; a row inside the
 * caller's transaction, when that transaction ends (sotp_audit_txn_end).
 * store 0 logs the line and that the row was not written (a store that
 * made this request wait already).
 */
int sotp_audit_write(
    struct sotp_ctx *ctx, const struct sotp_audit_rec *r, int store);
/*
 * A transaction level of the ctx's store ended (sotp_store_txn_fn, set
 * by ctx.c; arg the ctx): the lines of rows appended deeper than depth
 * are logged when their work was kept at depth 0, move out to depth when
 * kept inside it, and are logged as not committed when undone (an accept
 * as a refusal: it did not happen; a refusal as it was, its row lost),
 * each followed by the error why. A decision inside the writer's group
 * calls it itself once its group's COMMIT is known (engine.c), on its
 * own thread: depth 0, kept that COMMIT's outcome.
 */
void sotp_audit_txn_end(void *arg, int depth, int kept, const char *why);
/*
 * Records one decision or admin action: an audit row in the store and one
 * log line (key=value). Never pass a secret in detail. A failure to write
 * the row is logged; the caller's verdict stands unless it was an accept
 * (see engine.c).
 */
int sotp_audit(struct sotp_ctx *ctx, time_t now, const char *action,
    const char *contract, const char *serial, const char *context,
    const char *verdict, int reason, const char *detail);
/* Convenience for admin calls: fills d and audits; returns SOTP_OK. */
int sotp_refuse(struct sotp_ctx *ctx, struct sotp_decision *d, time_t now,
    const char *action, const char *contract, const char *serial, int reason);
int sotp_admin_ok(struct sotp_ctx *ctx, struct sotp_decision *d, time_t now,
    const char *action, const char *contract, const char *serial,
    const char *detail);

/* ---- passwd.c, card.c ---- */

/*
 * crypt(3) hash of password into out[SOTP_HASH_MAX], in the policy's
 * [password] method and cost (p NULL: yescrypt at its default cost).
 */
int sotp_passwd_hash(
    const struct sotp_policy *p, const char *password, char *out);
/*
 * The [password] methods: name as the policy spells it, crypt(3) prefix,
 * the bounds of cost and its default.
 */
struct sotp_pw_method_def {
	const char *name, *prefix;
	unsigned int min_cost, max_cost, default_cost;
};
extern const struct sotp_pw_method_def sotp_pw_methods[SOTP_PW_NMETHODS];
/* *ok = 1 when password matches hash (constant-time compare). */
int sotp_passwd_check(const char *password, const char *hash, int *ok);

/* The hash shapes one import has seen verified (passwd.c). */
#define SOTP_HASH_SHAPES 64
struct sotp_hash_check {
	char key[SOTP_HASH_SHAPES][SOTP_HASH_MAX];
	size_t n;
	/* NULL, or the policy whose own method may cost what it asks. */
	const struct sotp_policy *pol;
};
/*
 * Whether libxcrypt can verify hash, checked without a full hash per call
 * where the method is known (passwd.c explains how). *why is NULL when it
 * is usable, else a static reason; *weak = 1 for a method libxcrypt calls
 * legacy or too cheap. A hash whose cost (rounds, memory) is above a
 * ceiling a login can pay is refused before it is computed. hc (zeroed
 * before the first call, then its pol set if there is one) remembers the
 * shapes verified. Returns SOTP_OK or SOTP_ERR_NOMEM.
 */
int sotp_passwd_usable(
    struct sotp_hash_check *hc, const char *hash, int *weak, const char **why);
/*
 * 1 when hash is not in the policy's [password] method (p NULL:
 * yescrypt), or libxcrypt calls it legacy or cheap.
 */
int sotp_passwd_outdated(const struct sotp_policy *p, const char *hash);
/*
 * 1 when libxcrypt calls hash's method legacy or its cost too cheap
 * (DES, md5crypt, ...): checked in microseconds where a current hash
 * takes milliseconds.
 */
int sotp_passwd_cheap(const char *hash);
/*
 * The libxcrypt name of hash's method when it is one of those that
 * [password] legacy_import = refuse keeps out ("descrypt", "bigcrypt",
 * "bsdicrypt", "md5crypt", "nt"), else NULL. Meant for a hash that
 * sotp_passwd_usable has accepted: any such hash not in '$' form is DES.
 */
const char *sotp_passwd_legacy(const char *hash);

/*
 * The count of hex digits in s when s reads as a seed in hex: hex digits
 * only (blanks and the characters in skip aside), an even count, at least
 * 32 (a 16-byte seed, RFC 4226's least); else 0. A base64 or base32
 * secret reading so is refused (pskc.c, sotp_base32_decode), not decoded
 * into another key.
 */
size_t sotp_looks_hex(const char *s, const char *skip);

/* A grid of rows x cols ASCII digits, row-major, no separators. */
int sotp_card_new(
    unsigned int rows, unsigned int cols, char *grid, size_t gridsz);
/* Formats grid for printing ("   0 1 2 ...\nA  3 8 1 ...\n"). */
int sotp_card_format(const char *grid, unsigned int rows, unsigned int cols,
    char *out, size_t outsz);
/*
 * The n distinct cells (index = row * cols + col) c's card is asked for,
 * the same until its sealed card changes (card.c says why).
 */
int sotp_card_pick(struct sotp_ctx *ctx, const struct sotp_contract_rec *c,
    unsigned int rows, unsigned int cols, unsigned int n, uint8_t *cells);
/* The same for a card sealed as sealed (under key version kv). */
int sotp_card_pick_sealed(struct sotp_ctx *ctx, const char *id, uint32_t kv,
    const uint8_t *sealed, size_t sealed_len, unsigned int rows,
    unsigned int cols, unsigned int n, uint8_t *cells);
/* "B7 E2" for the cells. */
void sotp_card_cells_text(const uint8_t *cells, unsigned int n,
    unsigned int cols, char *out, size_t outsz);
/* *ok = 1 when answer (digits, spaces ignored) matches the grid cells. */
int sotp_card_check(const char *grid, const uint8_t *cells, unsigned int n,
    const char *answer, int *ok);

/* ---- token.c: secrets and code checks shared by engine and admin ---- */

/*
 * Checks code against token t at now within the policy window around its
 * drift (wider: `window` steps each way when > 0, for binding). On a
 * match, *step is the matched time step and *drift the new drift.
 * *match = 0 when no step in the window matches.
 */
int sotp_token_match(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const char *code, time_t now, int *match, int64_t *step, int *drift);
/*
 * Resync: finds two consecutive codes (code1 at step s - 1, code2 at s)
 * within `window` steps of now; *step = s, or -1 when not found.
 */
int sotp_token_find_pair(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const char *code1, const char *code2, time_t now, unsigned int window,
    int64_t *step);
/*
 * Binds serial to contract after checking that code comes from it now (the
 * step is consumed by the bind transaction). *reason says why not; msg
 * receives a customer message for a sunset kind.
 */
int sotp_engine_bind(struct sotp_ctx *ctx, const char *contract,
    const char *serial, const char *code, enum sotp_login login, time_t now,
    int *reason, char *msg, size_t msgsz);
/* 1..64 printable ASCII, no spaces or control characters. */
int sotp_id_valid(const char *s);

#endif /* SOTP_INT_H */

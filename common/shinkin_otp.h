/*
 * shinkin_otp.h - the public interface of the shinkin-otp core library.
 *
 * This is the only header that the PAM module, the FreeRADIUS module and the
 * admin CLI include. Every rule (windows, replay, lockout, contexts, card
 * challenges, registration) lives behind it; the adapters translate.
 *
 * Conventions: functions return an int holding an enum sotp_rc (0 or a
 * negative SOTP_ERR_*). An error means the check itself could not run and
 * the caller must fail closed. A refusal (wrong code, locked, ...) is not an
 * error: the call returns SOTP_OK and fills a struct sotp_decision.
 * Time is always a parameter; the library never reads the clock.
 */
#ifndef SHINKIN_OTP_H
#define SHINKIN_OTP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SOTP_EXPORT __attribute__((visibility("default")))
#define SOTP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SOTP_WUR __attribute__((warn_unused_result))

#define SOTP_DEFAULT_CONFIG "/etc/shinkin-otp/shinkin-otp.conf"

/* Sizes of fixed buffers in the structs below, terminating NUL included. */
#define SOTP_ID_MAX 65    /* contract IDs and token serials: 1..64 chars */
#define SOTP_NAME_MAX 33  /* kind and context names: 1..32 chars */
#define SOTP_CODE_MAX 9   /* up to 8 digits */
#define SOTP_MSG_MAX 256  /* customer-facing message or prompt */
#define SOTP_CELLS_MAX 32 /* card cells, "B7 E2": up to 8 cells */
/*
 * The most octets a text for the customer (a message or a prompt) or an
 * exported attempt state may hold: one RADIUS attribute (RFC 2865 5.18,
 * 5.24). The policy is refused at load when a text could grow past it, so
 * nothing is ever cut on the wire.
 */
#define SOTP_REPLY_MAX 253
#define SOTP_STATE_MAX SOTP_REPLY_MAX

/*
 * Errors: the check could not run. Walk [SOTP_ERR_LAST, SOTP_OK] for the
 * full table; every value has a name and a text.
 */
enum sotp_rc {
	SOTP_OK = 0,
	SOTP_ERR_INTERNAL = -1,
	SOTP_ERR_NOMEM = -2,
	SOTP_ERR_INVALID_ARG = -3,
	SOTP_ERR_SYSTEM = -4, /* errno is valid */
	SOTP_ERR_CRYPTO = -5,
	SOTP_ERR_CONFIG = -6,
	SOTP_ERR_KEY = -7, /* master key or token: missing, unsafe, refused */
	SOTP_ERR_STORE = -8,
	SOTP_ERR_STORE_UNAVAILABLE = -9,
	SOTP_ERR_BAD_INPUT = -10, /* malformed base32, URI, serial, ... */
	SOTP_ERR_DECRYPT = -11,   /* ciphertext tampered or wrong key */
	SOTP_ERR_NOT_FOUND = -12,
	SOTP_ERR_EXISTS = -13,
	SOTP_ERR_BUFFER = -14, /* output buffer too small */
	SOTP_ERR_LAST = -15
};

/* Fixed texts for an rc; never NULL, "unknown error" outside the table. */
SOTP_EXPORT const char *sotp_strerror(int rc);
/* The enum constant's name, e.g. "SOTP_ERR_STORE"; never NULL. */
SOTP_EXPORT const char *sotp_rc_name(int rc);

/*
 * A name from outside (a PAM service, ...) fit for one log line or an
 * audit row's detail: a blank, '"', '\\' and every byte outside printable
 * ASCII as \xHH, cut after 64 characters with "...". Raw, a newline in it
 * would forge a line of its own. Writes out (SOTP_LOG_NAME_MAX bytes) and
 * returns it; NULL is written as "".
 */
#define SOTP_LOG_NAME_MAX 72
SOTP_EXPORT const char *sotp_log_name(
    char out[SOTP_LOG_NAME_MAX], const char *name);
/*
 * As sotp_log_name, for a value longer than a name (a path from a PAM
 * stack line): written into out[outsz] (outsz >= 16), cut with "..."
 * after outsz - 8 bytes. SOTP_LOG_VALUE_MAX holds any path's text.
 */
#define SOTP_LOG_VALUE_MAX 1024
SOTP_EXPORT const char *sotp_log_value(
    char *out, size_t outsz, const char *value);
/*
 * A message that may hold values from outside (sotp_ctx_errmsg(), which
 * can name a path as it was given) fit for one log line: only control
 * characters (bytes below 0x20, and 0x7f) as \xHH, so that the
 * message's own text and the names it holds escaped stay as they are;
 * cut as sotp_log_value, the mark after whole UTF-8 characters only.
 * Returns out.
 */
SOTP_EXPORT const char *sotp_log_text(
    char *out, size_t outsz, const char *text);
/*
 * Marks a text that had to be cut to fit dst[dstsz] (dstsz >= 4): its
 * end becomes "...", after the last whole UTF-8 character that leaves
 * room for it, so that a reader sees the cut. For a text whose length
 * (as snprintf or sotp_strlcpy returned it) was len; nothing when len
 * fits. For the front ends' own buffers, as the core's messages do.
 */
SOTP_EXPORT void sotp_mark_cut(char *dst, size_t dstsz, size_t len);

/*
 * Reasons: the one numbered table behind every decision. The number is
 * what the audit rows store and the CLI prints; it never changes meaning.
 */
enum sotp_reason {
	SOTP_R_ACCEPTED = 0,
	SOTP_R_CONTINUE = 1, /* more factors are needed */
	SOTP_R_WRONG_CODE = 10,
	SOTP_R_REPLAYED = 11,
	SOTP_R_LOCKED = 12,
	SOTP_R_UNKNOWN_CONTRACT = 13,
	SOTP_R_UNKNOWN_SERIAL = 14,
	SOTP_R_ALREADY_BOUND = 15, /* the contract already holds a token */
	SOTP_R_TOKEN_IN_USE = 16,  /* the token is bound to another contract */
	SOTP_R_NOT_BOUND = 17,
	SOTP_R_WRONG_PASSWORD = 18,
	SOTP_R_WRONG_CARD = 19,
	SOTP_R_NO_CARD = 20,
	SOTP_R_CONTRACT_CLOSED = 21,
	SOTP_R_STILL_BOUND = 22, /* close refused while a token is bound */
	SOTP_R_TOKEN_SUNSET = 23,
	SOTP_R_TOKEN_DISABLED = 24,
	SOTP_R_BAD_INPUT = 25, /* malformed code, card answer, choice */
	SOTP_R_STATE_INVALID = 26,
	SOTP_R_STATE_EXPIRED = 27,
	SOTP_R_STATE_REPLAYED = 28,
	SOTP_R_TOO_MANY_ROUNDS = 29,
	SOTP_R_EXISTS = 30, /* contract or serial already exists */
	SOTP_R_UNKNOWN_CONTEXT = 31,
	SOTP_R_AMBIGUOUS_INPUT =
	    32, /* append mode: password and code unclear */
	SOTP_R_STORE_UNAVAILABLE = 40,
	SOTP_R_BAD_CONFIG = 41,
	SOTP_R_INTERNAL = 42
};

/*
 * "accepted", "wrong code", ...: the operator's English text for logs and
 * the CLI; never NULL. What the customer reads comes with each decision,
 * in the policy's language (struct sotp_decision.message).
 */
SOTP_EXPORT const char *sotp_reason_text(int reason);
/* "ACCEPTED", "WRONG_CODE", ...; never NULL. */
SOTP_EXPORT const char *sotp_reason_name(int reason);
/* The reason a front end reports when a call failed with rc. */
SOTP_EXPORT int sotp_reason_from_rc(int rc);

enum sotp_verdict {
	SOTP_REJECT = 0, /* zero-initialised means refused: fail closed */
	SOTP_ACCEPT = 1,
	SOTP_CONTINUE = 2 /* ask the question in `prompt`, then step again */
};

/*
 * The inputs an attempt asks for, one per question. A registration asks
 * them in the bank guide's order: password, serial, code, login choice,
 * card digits; other contexts ask a subset in the same order.
 */
enum sotp_factor {
	SOTP_F_PASSWORD = 1 << 0,
	SOTP_F_OTP = 1 << 1,
	SOTP_F_CARD = 1 << 2,
	SOTP_F_SERIAL = 1 << 3,       /* registration: token serial */
	SOTP_F_LOGIN_CHOICE = 1 << 4, /* registration: otp, card or none */
};

/*
 * The outcome of one step. On CONTINUE the engine has decided the next
 * question: the front end shows `message` (if any) and `prompt`, hides
 * the answer as it is typed unless `echo`, and hands it back with
 * sotp_attempt_answer(). Texts are UTF-8 in the policy's language and
 * each fits one RADIUS Reply-Message (SOTP_REPLY_MAX octets).
 */
struct sotp_decision {
	enum sotp_verdict verdict;
	enum sotp_reason reason;
	unsigned int ask;                /* CONTINUE: the SOTP_F_* asked */
	int echo;                        /* CONTINUE: the answer may show */
	int locked;                      /* the contract is locked (now) */
	char message[SOTP_MSG_MAX];      /* fit to show the customer, or "" */
	char prompt[SOTP_MSG_MAX];       /* CONTINUE: the question */
	char card_cells[SOTP_CELLS_MAX]; /* CONTINUE on CARD: "B7 E2" */
	/*
	 * REJECT with SOTP_R_BAD_INPUT: the SOTP_F_* input that was
	 * malformed, for the operator's line (sotp_factor_name; never the
	 * value); 0 when no one input is to blame (what the front end said
	 * of its request, a password and code in one value).
	 */
	unsigned int malformed;
};

/*
 * "password", "otp", "card", "serial", "login-otp" for one SOTP_F_*
 * value (the names the CLI and the audit use); "unknown" otherwise.
 */
SOTP_EXPORT const char *sotp_factor_name(unsigned int factor);
/*
 * The name of the input a REJECT for SOTP_R_BAD_INPUT blames (d->malformed,
 * by sotp_factor_name), for the operator's line; NULL for any other
 * decision or when no one input is to blame. Never the input's value.
 */
SOTP_EXPORT const char *sotp_decision_malformed(const struct sotp_decision *d);

/* ---- OTP primitives (pure: no I/O, time passed in) ---- */

enum sotp_alg { SOTP_ALG_SHA1 = 0, SOTP_ALG_SHA256 = 1, SOTP_ALG_SHA512 = 2 };

/* "sha1", "sha256", "sha512". Returns NULL for an unknown value. */
SOTP_EXPORT const char *sotp_alg_name(enum sotp_alg alg);
/* Parses a name (case-insensitive); SOTP_ERR_BAD_INPUT if unknown. */
SOTP_EXPORT int sotp_alg_parse(const char *name, enum sotp_alg *alg);

/*
 * RFC 4226 HOTP of `counter`, `digits` (6..8) decimal digits written to
 * out[digits + 1] with a NUL. key is secret. Returns SOTP_OK,
 * SOTP_ERR_INVALID_ARG or SOTP_ERR_CRYPTO.
 */
SOTP_EXPORT int sotp_hotp(enum sotp_alg alg, const uint8_t *key, size_t keylen,
    uint64_t counter, unsigned int digits, char *out);
/* RFC 6238 TOTP at `now` with step `period` seconds (>= 1). As sotp_hotp. */
SOTP_EXPORT int sotp_totp(enum sotp_alg alg, const uint8_t *key, size_t keylen,
    time_t now, unsigned int period, unsigned int digits, char *out);
/*
 * Constant-time comparison of two codes of the same length; returns 1 when
 * equal, 0 otherwise (also when lengths differ). WARNING: never use
 * strcmp/memcmp on codes.
 */
SOTP_EXPORT int sotp_code_equal(const char *a, const char *b) SOTP_WUR;

/*
 * RFC 4648 base32, upper-case alphabet with '=' padding on output. Writes
 * a NUL-terminated string to out[outsz]; SOTP_ERR_BUFFER if too small.
 */
SOTP_EXPORT int sotp_base32_encode(
    const uint8_t *in, size_t len, char *out, size_t outsz);
/*
 * Decodes base32; accepts lower case, optional padding, and ignores spaces
 * (as authenticator apps show secrets in groups). Bad input returns
 * SOTP_ERR_BAD_INPUT and points *why (may be NULL) at a static reason;
 * so does text of 32 or more hex digits only, an even count of them (a
 * seed in hex, which read as base32 would be another key).
 * Decoded bytes are written to out[outsz], their count to *outlen.
 */
SOTP_EXPORT int sotp_base32_decode(const char *in, uint8_t *out, size_t outsz,
    size_t *outlen, const char **why);

/* An otpauth://totp/ key URI, as read by authenticator apps. */
struct sotp_uri {
	char issuer[SOTP_MSG_MAX];
	char account[SOTP_ID_MAX]; /* the token serial */
	char secret[160];          /* base32, secret */
	enum sotp_alg alg;
	unsigned int digits;
	unsigned int period; /* 0: build an otpauth://hotp/ URI */
	uint64_t counter;    /* hotp: the counter of the next code */
};
/*
 * Builds "otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=
 * SHA1&digits=6&period=30" (period 0: "otpauth://hotp/...&counter=N"),
 * percent-encoding labels. *out is malloc'd and holds the secret: free
 * with sotp_free_string(). Parsing takes TOTP URIs only.
 */
SOTP_EXPORT int sotp_uri_build(const struct sotp_uri *u, char **out);
/* Parses such a URI into *u; SOTP_ERR_BAD_INPUT with *why on bad input. */
SOTP_EXPORT int sotp_uri_parse(
    const char *s, struct sotp_uri *u, const char **why);

/* Wipes and frees a NUL-terminated string (NULL-safe). */
SOTP_EXPORT void sotp_free_string(char *s);
/* Wipes n bytes (never optimised away). */
SOTP_EXPORT void sotp_wipe(void *p, size_t n);

/* ---- The context: policy + master key + store, one per thread ---- */

struct sotp_ctx;

/*
 * Log sink. The core never writes to syslog or stdio itself; PAM maps this
 * to pam_vsyslog, RADIUS to its log, the CLI to stderr. prio is a syslog
 * priority. Audit lines arrive here at LOG_NOTICE with the `audit` flag.
 */
typedef void sotp_log_fn(void *arg, int prio, const char *fmt, va_list ap);

/* Allocates an empty context. Returns SOTP_OK or SOTP_ERR_NOMEM. */
SOTP_EXPORT int sotp_ctx_new(struct sotp_ctx **out);
/* Frees ctx and wipes the key it holds; NULL-safe. */
SOTP_EXPORT void sotp_ctx_free(struct sotp_ctx *ctx);
/* Sets the log sink; fn may be NULL (silent). debug enables LOG_DEBUG. */
SOTP_EXPORT void sotp_ctx_set_log(
    struct sotp_ctx *ctx, sotp_log_fn *fn, void *arg, int debug);
/*
 * Reads the policy file at path (NULL: SOTP_DEFAULT_CONFIG), loads the
 * master key and opens the store. Errors: SOTP_ERR_CONFIG (text names
 * file:line), SOTP_ERR_KEY, SOTP_ERR_STORE_UNAVAILABLE, ...
 */
SOTP_EXPORT int sotp_ctx_load(struct sotp_ctx *ctx, const char *path);
/*
 * One writer for the contexts of one process, with group commit: the
 * decisions of every context given the writer (sotp_ctx_set_writer) write
 * through its one store connection, one at a time, and decisions that
 * arrive together are committed together (one COMMIT, one fsync). No
 * decision returns before the commit that carries its replay mark,
 * failure count and audit row; when that commit fails, every decision in
 * it fails (an accept becomes a refusal). sotp_writer_new takes ctx, a
 * loaded context, and owns it from then on, also on failure; at most
 * max_group decisions share a commit. Errors: SOTP_ERR_INVALID_ARG,
 * SOTP_ERR_NOMEM, SOTP_ERR_SYSTEM. sotp_writer_free is NULL-safe and must
 * come after every context using the writer is freed or detached.
 */
struct sotp_writer;
SOTP_EXPORT int sotp_writer_new(
    struct sotp_ctx *ctx, unsigned int max_group, struct sotp_writer **out);
SOTP_EXPORT void sotp_writer_free(struct sotp_writer *w);
/*
 * Sends ctx's decision writes through w (NULL: through ctx's own store
 * again). Reads stay on ctx's own connection. SOTP_ERR_INVALID_ARG when w
 * is the writer's own context.
 */
SOTP_EXPORT int sotp_ctx_set_writer(
    struct sotp_ctx *ctx, struct sotp_writer *w);
/*
 * Reads and validates the policy only (no key, no store): check-config.
 */
SOTP_EXPORT int sotp_ctx_load_policy(struct sotp_ctx *ctx, const char *path);
/*
 * Reads the policy and opens the store without the master key: for a
 * help desk operator who may not read it. What touches no secret works
 * (show, list, unlock, unbind, token disable/enable, contract add,
 * passwd, set and close, the audit trail); what needs the key (token
 * add, generate, import, export and resync, cards, bind, verify, audit
 * verify and prune, attempts) returns SOTP_ERR_KEY. The audit rows it
 * writes wait, unchained, for the next holder of the key to chain them
 * (see sotp_audit_verify). Errors as sotp_ctx_load, without SOTP_ERR_KEY.
 */
SOTP_EXPORT int sotp_ctx_load_nokey(struct sotp_ctx *ctx, const char *path);
/*
 * 1 when the policy file or the master key file ctx was loaded from (the
 * PIN file under kek = pkcs11) has changed since it was read (replaced,
 * rewritten, its mode or owner changed) or can no longer be checked; else 0. A
 * caller that keeps a context across requests loads a new one then (the PAM
 * module does).
 */
SOTP_EXPORT int sotp_ctx_stale(const struct sotp_ctx *ctx);
/* 1 when the context holds the master key (sotp_ctx_load), else 0. */
SOTP_EXPORT int sotp_ctx_has_key(const struct sotp_ctx *ctx);
/* The detail of the last error ("file:line: ..."), or "". Never NULL. */
SOTP_EXPORT const char *sotp_ctx_errmsg(const struct sotp_ctx *ctx);

/*
 * Writes the effective policy in the policy file's own syntax to buf.
 * Requires a loaded policy.
 */
SOTP_EXPORT int sotp_policy_dump(
    const struct sotp_ctx *ctx, char *buf, size_t bufsz);
/*
 * Where the loaded policy puts the store (URL, any password masked) and the
 * secret file it reads for its key-encryption key (the master key, or the
 * PKCS#11 PIN with kek = pkcs11), copied to store[storesz] and key[keysz].
 */
SOTP_EXPORT int sotp_policy_locations(const struct sotp_ctx *ctx, char *store,
    size_t storesz, char *key, size_t keysz);
/*
 * The key-encryption key of ctx as the store names it, "file:HEX" (the
 * master key file's fingerprint) or "pkcs11:TOKEN/KEY", once its keys
 * are loaded; before, what the policy names ("file PATH"). SOTP_ERR_CONFIG
 * without a policy.
 */
SOTP_EXPORT int sotp_policy_kek(
    const struct sotp_ctx *ctx, char *out, size_t outsz);
/*
 * Maps a service name (PAM service, NAS-Identifier) to a context name via
 * the policy's service map. SOTP_ERR_NOT_FOUND if unmapped.
 */
SOTP_EXPORT int sotp_policy_context_for(
    const struct sotp_ctx *ctx, const char *service, const char **context);
/* SOTP_OK if the policy defines that context, else SOTP_ERR_NOT_FOUND. */
SOTP_EXPORT int sotp_policy_has_context(
    const struct sotp_ctx *ctx, const char *context);
/*
 * 1 when the policy's [services] map names at least one service, else 0
 * (an empty or absent map, or no policy loaded): a front end that takes
 * its context from a service name can then decide nothing.
 */
SOTP_EXPORT int sotp_policy_has_services(const struct sotp_ctx *ctx);
/*
 * 1 when the policy hides unknown contracts (unknown_contract = hide, the
 * default): an attempt for a contract that does not exist asks the same
 * questions, takes the same work and is refused with the same reason and
 * text as a wrong password, so a front end must not look a contract up
 * to decide whether to take a request. 0 (reveal): such an attempt is
 * refused at once with SOTP_R_UNKNOWN_CONTRACT.
 */
SOTP_EXPORT int sotp_policy_hides_unknown(const struct sotp_ctx *ctx);

/*
 * The customer texts of the loaded policy, in its language with its
 * [messages] overrides: cb(arg, name, text) for each, in the catalog's
 * order (reasons by number, then prompts and notices). name is the key
 * [messages] takes ("WRONG_CODE", "PROMPT_OTP"); text may hold the
 * placeholders %{cells}, %{date}, %{kind}, %{row} and %{col}. A non-zero
 * cb return stops the walk. SOTP_ERR_CONFIG without a loaded policy.
 */
typedef int sotp_message_cb(void *arg, const char *name, const char *text);
SOTP_EXPORT int sotp_messages(
    const struct sotp_ctx *ctx, sotp_message_cb *cb, void *arg);

/*
 * init: if path does not exist, writes the default policy there with the
 * store and key beside it; then creates the master key (0600, never
 * overwritten; only with kek = file), the store schema (or upgrades an
 * older one), and in a new store the first data-encryption key, version
 * 1, wrapped under the key-encryption key, stamped and audited at now.
 * Idempotent. sotp_init stamps 0 (tests, tools).
 */
SOTP_EXPORT int sotp_init_at(
    struct sotp_ctx *ctx, const char *path, time_t now);
SOTP_EXPORT int sotp_init(struct sotp_ctx *ctx, const char *path);

/* ---- Keys: versioned data keys under a key-encryption key ---- */

/*
 * A keyring: the policy's key-encryption key (the master key file, or an
 * AES key in a PKCS#11 token, logged in once) and the data-encryption
 * keys it unwraps, held in locked memory. A process with many contexts
 * (radiusd, one per thread) opens one and loads each context with it, so
 * that the token is opened and each key version unwrapped once per
 * process. Reference counted and thread-safe; sotp_keyring_free drops the
 * caller's reference and wipes the keys with the last.
 *
 * sotp_keyring_open reads the policy at path and opens its key-encryption
 * key: SOTP_ERR_CONFIG, or SOTP_ERR_KEY when the key file is missing or
 * unsafe, the token absent, the PIN wrong or the key missing, with a
 * message naming the file, or the module, token, slot and key, in err.
 */
struct sotp_keyring;
SOTP_EXPORT int sotp_keyring_open(
    const char *path, struct sotp_keyring **out, char *err, size_t errsz);
SOTP_EXPORT void sotp_keyring_free(struct sotp_keyring *k);
/*
 * The same for the policy model holds (sotp_ctx_load_policy), as it was
 * read then: the key-encryption key the contexts made from that model
 * (sotp_ctx_load_like) need, without reading the file a second time.
 */
SOTP_EXPORT int sotp_keyring_open_like(const struct sotp_ctx *model,
    struct sotp_keyring **out, char *err, size_t errsz);
/*
 * sotp_ctx_load with the keys of k, which must be the key-encryption key
 * the policy at path names (else SOTP_ERR_CONFIG). ctx takes a reference.
 */
SOTP_EXPORT int sotp_ctx_load_keyring(
    struct sotp_ctx *ctx, const char *path, struct sotp_keyring *k);
/*
 * sotp_ctx_load_keyring with the policy model was loaded with (by
 * sotp_ctx_load_policy or any load), as it was read then, not as the
 * file reads now: a process that makes contexts over its whole life
 * (radiusd, one per thread as threads come) decides by one policy until
 * it loads a new model, even when the file is edited meanwhile. model
 * is only read; ctx gets its own store connection and a reference to k.
 * Errors: SOTP_ERR_INVALID_ARG (model holds no policy), then as
 * sotp_ctx_load_keyring.
 */
SOTP_EXPORT int sotp_ctx_load_like(
    struct sotp_ctx *ctx, const struct sotp_ctx *model, struct sotp_keyring *k);

/* One data-encryption key version as the store has it (key status). */
struct sotp_key_version {
	uint32_t version;
	int live;    /* its data key exists: it unseals and verifies */
	int current; /* new values, States and audit rows are made under it */
	int64_t created;
	int64_t secrets, cards; /* token secrets and card grids it seals */
	int64_t audit_rows;     /* chained audit rows its audit key made */
	/* The key-encryption keys it is wrapped under, comma-separated. */
	char wrapped[256];
};
/*
 * The most key versions a store holds: live ones and retired ones (each
 * keeps its audit key while the store has rows it keyed). key status
 * lists them, key rewrap wraps them; key rotate refuses a version past
 * it (daily rotations for eleven years), never a silent wrong answer.
 */
#define SOTP_KEY_VERSIONS_MAX 4096
#define SOTP_KEY_KEKS_MAX 8
struct sotp_key_status {
	char kek[192];    /* the key-encryption key of this policy */
	uint32_t current; /* 0: the master key file, from before versions */
	int64_t switched; /* when current became current */
	int64_t generation;
	/* Values sealed under older versions: a rotation under way. */
	int64_t left;
	int64_t retire_at; /* older live versions may be retired from then */
	size_t n;
	struct sotp_key_version v[SOTP_KEY_VERSIONS_MAX];
	size_t nkeks; /* every key-encryption key with keys wrapped under it */
	char keks[SOTP_KEY_KEKS_MAX][192];
};
/*
 * The store's key versions, what each seals and which KEKs wrap them.
 * Needs no key (works from sotp_ctx_load_nokey). SOTP_ERR_STORE*.
 */
SOTP_EXPORT int sotp_key_status(
    struct sotp_ctx *ctx, time_t now, struct sotp_key_status *out);

/* What one step of a rotation did (sotp_key_rotate_*). */
enum sotp_key_stepped {
	SOTP_KEY_STARTED,  /* a new version is current */
	SOTP_KEY_RESUMED,  /* a rotation found under way goes on */
	SOTP_KEY_RESEALED, /* a batch of values re-sealed (count may be 0) */
	SOTP_KEY_WAITING,  /* nothing left to re-seal; retire at wait_until */
	SOTP_KEY_RETIRED,  /* an old version retired */
	SOTP_KEY_DONE      /* one version left: the rotation is over */
};
struct sotp_key_step {
	enum sotp_key_stepped what;
	uint32_t version;   /* the version rotated to */
	uint32_t from;      /* STARTED: the version it replaces */
	int cards;          /* RESEALED: 0 token secrets, 1 card grids */
	unsigned int count; /* RESEALED: values re-sealed in this batch */
	int64_t left;       /* values still under older versions */
	int64_t wait_until; /* WAITING */
	uint32_t retired;   /* RETIRED */
};
/*
 * Begins a rotation: a new data-encryption key version, wrapped under this
 * policy's KEK, becomes current (STARTED); or a rotation found under way
 * (an older version still live) is taken up (RESUMED). Refused
 * (SOTP_ERR_CONFIG) while keys are wrapped under more than one KEK.
 * Audited ("key.rotate"). Needs the key.
 */
SOTP_EXPORT int sotp_key_rotate_begin(
    struct sotp_ctx *ctx, time_t now, struct sotp_key_step *out);
/*
 * One step: re-seals up to batch values under the current version
 * (RESEALED), or, once none is left under an older one, retires the
 * oldest live version that is not current (RETIRED) when every State it
 * may have signed has expired (else WAITING until wait_until), or says
 * DONE. Each step is one transaction and one audit row ("key.reseal",
 * "key.retire"): killed anywhere, the rotation loses nothing and
 * sotp_key_rotate_begin takes it up again.
 */
SOTP_EXPORT int sotp_key_rotate_step(struct sotp_ctx *ctx, time_t now,
    unsigned int batch, struct sotp_key_step *out);
/*
 * Unseals every token secret and card grid in the store with the keys
 * the store holds: what opens, and what does not (with the first such
 * named). For after a rotation, a KEK change or a restore. Needs the key.
 */
struct sotp_key_check {
	int64_t secrets, cards; /* that unseal */
	int64_t bad;            /* that do not */
	char first_bad[SOTP_ID_MAX + 16];
};
SOTP_EXPORT int sotp_key_check(
    struct sotp_ctx *ctx, struct sotp_key_check *out);
/*
 * Wraps every key version (data keys, and the audit keys of retired
 * versions) also under the key-encryption key the policy at new_policy
 * names, unwrapping with this context's: the step of a KEK change (file
 * to HSM, HSM replaced) that lets every server move to the new policy at
 * its own pace. *wrapped: keys wrapped. Audited ("key.rewrap").
 */
SOTP_EXPORT int sotp_key_rewrap(struct sotp_ctx *ctx, const char *new_policy,
    time_t now, unsigned int *wrapped);
/*
 * Deletes every key wrapped under kek (a name as sotp_key_status gives
 * it), once each is also wrapped under this policy's KEK; refused for
 * this policy's own KEK. *removed: keys deleted. Audited ("key.drop-kek").
 */
SOTP_EXPORT int sotp_key_drop_kek(
    struct sotp_ctx *ctx, const char *kek, time_t now, int64_t *removed);

/* ---- The decision engine: one attempt for a contract and context ---- */

struct sotp_attempt;

/*
 * Starts an attempt for contract_id in context at `now`. Never refuses by
 * itself: refusals (unknown contract, locked, ...) come from
 * sotp_attempt_step so that every one is audited in one place.
 * Errors: SOTP_ERR_NOMEM, SOTP_ERR_INVALID_ARG.
 */
SOTP_EXPORT int sotp_attempt_begin(struct sotp_ctx *ctx,
    const char *contract_id, const char *context, time_t now,
    struct sotp_attempt **out);
/*
 * As sotp_attempt_begin, in the context the policy's [services] map
 * gives `service` (a PAM service name, the value of a RADIUS context
 * attribute such as NAS-Identifier): the front end passes the name, the
 * core decides. A service the map does not name (or NULL or "") still
 * begins an attempt: its first sotp_attempt_step refuses it as
 * SOTP_R_UNKNOWN_CONTEXT, audited with a detail naming the service
 * ("service=NAME has no context in [services]"; a blank, a quote, a
 * backslash or a byte outside printable ASCII written as \xHH, a name
 * over 64 characters cut with "..."), counted and the customer told,
 * as for an unknown context name. Errors as sotp_attempt_begin.
 */
SOTP_EXPORT int sotp_attempt_begin_service(struct sotp_ctx *ctx,
    const char *contract_id, const char *service, time_t now,
    struct sotp_attempt **out);
/*
 * The name of the context the attempt runs in, or "" when it has none
 * (a service the map does not name); never NULL. For the front end's log.
 */
SOTP_EXPORT const char *sotp_attempt_context(const struct sotp_attempt *a);
/*
 * The customer's answer to the question the attempt asked last (the
 * decision's `ask`); on a fresh attempt, to its first question (the
 * password, or in a context without one the code). This is all a front
 * end relays: PAM's conversation reply, RADIUS's User-Password. The value
 * is copied, treated as secret and wiped on free. An answer to a card
 * question whose cells were never shown is dropped and the cells asked.
 * A value over 1024 bytes is not kept: the next sotp_attempt_step refuses
 * the attempt as SOTP_R_BAD_INPUT (audited, the customer told), as every
 * refusal. Errors: SOTP_ERR_INVALID_ARG, SOTP_ERR_NOMEM.
 */
SOTP_EXPORT int sotp_attempt_answer(struct sotp_attempt *a, const char *value);
/*
 * The front end could not take its request's input as it came (a NUL
 * inside a value, an attribute given twice): `what` says so and where,
 * naming the field, never showing a value. Nothing is taken from the
 * request; the next sotp_attempt_step refuses the attempt as
 * SOTP_R_BAD_INPUT, audited with `what` as the row's detail (its first
 * 127 bytes), the customer told. Errors: SOTP_ERR_INVALID_ARG.
 */
SOTP_EXPORT int sotp_attempt_malformed(
    struct sotp_attempt *a, const char *what);
/*
 * Supplies one input by name (a SOTP_F_* value) ahead of the question,
 * as the CLI's --otp, --serial, ... do; the engine still takes each in
 * its turn. The value is copied and wiped on free. Errors as above.
 */
SOTP_EXPORT int sotp_attempt_set(
    struct sotp_attempt *a, enum sotp_factor factor, const char *value);
/*
 * RADIUS append mode: one value for a client that cannot answer
 * challenges. When the attempt's next questions are the password and
 * then the code, value is the password followed by the code, split once
 * by the code length of the contract's token (the policy's digits when
 * none is bound); a value that cannot hold both, or whose tail is not
 * that many digits, is refused as SOTP_R_AMBIGUOUS_INPUT at the next
 * step. Otherwise value is the answer to the first question (the code
 * alone in a context without a password). Secret; copied.
 */
SOTP_EXPORT int sotp_attempt_set_combined(
    struct sotp_attempt *a, const char *value);
/*
 * Takes the inputs supplied so far, in the guide's order, verifies each
 * as it comes, and decides. CONTINUE asks one question (d->ask, d->prompt,
 * d->echo); ACCEPT and REJECT are final and audited. A wrong input at any
 * round ends the attempt. Errors (store down, ...) are audited too and
 * leave d as a REJECT.
 */
SOTP_EXPORT int sotp_attempt_step(
    struct sotp_attempt *a, struct sotp_decision *d);
/*
 * Exports the attempt's progress (what was verified so far and what was
 * asked) as octets to buf[bufsz], their count in *len (at most
 * SOTP_STATE_MAX, one RADIUS State): no secret inside, authenticated
 * with a key derived from the master key, bound to contract and context
 * and, once the password is verified, to the contract's password as
 * stored then, expiring after the policy's state lifetime. Errors:
 * SOTP_ERR_BUFFER,
 * SOTP_ERR_CONFIG, SOTP_ERR_CRYPTO.
 */
SOTP_EXPORT int sotp_attempt_export(
    struct sotp_attempt *a, uint8_t *buf, size_t bufsz, size_t *len);
/*
 * Resumes an exported attempt (state[len] octets) for the same contract
 * and context. A bad, expired, replayed or foreign state does not fail:
 * the attempt is marked and its next step rejects with the matching
 * reason (and is audited). One this server cannot check (the key
 * version that signed it cannot be fetched or unwrapped, no HMAC) is no
 * bad state: the next step refuses it as that failure and returns the
 * error, as any other. A state that carries the password verified is
 * bad once the contract's stored password hash has changed (contract
 * passwd, a rehash by another login): the step that reads the contract
 * rejects it as SOTP_R_STATE_INVALID. A step before any answer repeats
 * the question, changing nothing.
 */
SOTP_EXPORT int sotp_attempt_resume(struct sotp_ctx *ctx,
    const char *contract_id, const char *context, const uint8_t *state,
    size_t len, time_t now, struct sotp_attempt **out);
/*
 * As sotp_attempt_resume, in the context the policy's [services] map
 * gives `service` (see sotp_attempt_begin_service). For a service the
 * map does not name, nothing of the state is read or spent: the attempt
 * is the one sotp_attempt_begin_service makes, refused as
 * SOTP_R_UNKNOWN_CONTEXT at its first step (audited, the service named).
 */
SOTP_EXPORT int sotp_attempt_resume_service(struct sotp_ctx *ctx,
    const char *contract_id, const char *service, const uint8_t *state,
    size_t len, time_t now, struct sotp_attempt **out);
/* Frees the attempt, wiping its inputs; NULL-safe. */
SOTP_EXPORT void sotp_attempt_free(struct sotp_attempt *a);

/* ---- Administration (the CLI) ---- */

enum sotp_login {
	SOTP_LOGIN_NONE = 0,
	SOTP_LOGIN_OTP = 1,
	SOTP_LOGIN_CARD = 2
};
SOTP_EXPORT const char *sotp_login_name(enum sotp_login l);
/* Accepts otp|card|none and yes(=otp)|no(=none). */
SOTP_EXPORT int sotp_login_parse(const char *s, enum sotp_login *l);
/*
 * A moment as an administrator gives one (audit --since, prune --before):
 * seconds since the epoch (digits only, as sotp_parse_ll reads them: 0 but
 * no leading zero), "YYYY-MM-DD" (its midnight) or
 * "YYYY-MM-DDTHH:MM:SSZ", always UTC, 1970 onwards. A day or time that
 * does not exist (2024-02-30, 24:00:00, a leap second), a time without
 * its Z (local or UTC?) and any other shape are SOTP_ERR_BAD_INPUT,
 * never rolled over to a neighbouring moment.
 */
SOTP_EXPORT int sotp_time_parse(const char *s, int64_t *out);
/*
 * A whole decimal number within [min, max], read as the policy file and
 * the CLI read one: an optional '-' and digits, nothing else (no blank, no
 * '+', no trailing text, unlike strtoll), and no leading zero (007, -07)
 * nor -0, which could hide a typo or a value meant as octal; "0" itself
 * is a number. *out is 0 unless it succeeds. Returns SOTP_OK,
 * SOTP_ERR_BAD_INPUT or SOTP_ERR_INVALID_ARG (out NULL).
 */
SOTP_EXPORT int sotp_parse_ll(
    const char *s, long long min, long long max, long long *out);
/*
 * Why sotp_parse_ll refuses s for the way it is written though it is all
 * digits: "has a leading zero (...)" or "is minus zero (...)", a static
 * phrase for an error line that names the option and where s came from.
 * NULL for any other s (a number, or not one at all).
 */
SOTP_EXPORT const char *sotp_parse_ll_zero(const char *s);

/*
 * A token is time-based (TOTP, RFC 6238: period is its step in seconds)
 * or event-based (HOTP, RFC 4226, such as a hardware token with a button:
 * period is 0). Its last_step is the last time step, or for HOTP the last
 * counter, that a code was accepted for; -1 when none was.
 */
struct sotp_token_info {
	char serial[SOTP_ID_MAX];
	char kind[SOTP_NAME_MAX];
	enum sotp_alg alg;
	unsigned int digits;
	unsigned int period; /* 0: event-based (HOTP) */
	int64_t last_step;   /* -1: never used */
	int drift;           /* steps */
	int disabled;
	char contract[SOTP_ID_MAX]; /* "" when unassigned */
	int64_t created;
};

struct sotp_contract_info {
	char id[SOTP_ID_MAX];
	enum sotp_login login;
	char serial[SOTP_ID_MAX]; /* "" when no token is bound */
	int has_card;
	unsigned int failures;
	int64_t locked_until; /* 0: not locked, -1: until an admin unlocks */
	int closed;
	int64_t created;
};

struct sotp_token_spec {
	const char *serial;
	const char *kind; /* NULL: the policy's default kind */
	enum sotp_alg alg;
	unsigned int digits;
	unsigned int period; /* 0: event-based (HOTP) */
	uint64_t counter;    /* HOTP: the counter of the token's next code */
};
/*
 * Fills spec with the policy's OTP defaults (serial and kind NULL).
 */
SOTP_EXPORT void sotp_token_spec_defaults(
    const struct sotp_ctx *ctx, struct sotp_token_spec *spec);

/*
 * Admin calls. Each returns an rc; refusals (exists, unknown, bound, ...)
 * return SOTP_OK with d->verdict == SOTP_REJECT and the reason. Every call
 * is audited. Secret inputs: secret, password, code.
 */
SOTP_EXPORT int sotp_token_add(struct sotp_ctx *ctx,
    const struct sotp_token_spec *spec, const uint8_t *secret, size_t len,
    time_t now, struct sotp_decision *d);
/*
 * Generates a serial and a 160-bit random secret; serial_out[SOTP_ID_MAX].
 * With `how` (the forms the secret leaves in, e.g. "uri qr") and uri,
 * also exports the secret as its otpauth URI into *uri (free it with
 * sotp_free_string): the token, its "token.add" row and the export's
 * "token.export" row are one transaction, so that an export that cannot
 * be audited leaves no token (the error returned, the ctx's text saying
 * so) and a token is never left whose secret nobody saw. how and uri are
 * both NULL or both set.
 *
 * hold (may be NULL; only with uri) is the caller's part of that export
 * that must land with the token, as a PNG file of its QR code: it gets
 * the serial and the URI inside the transaction, once the export's row
 * is written, and before the commit. SOTP_OK lets the token be
 * committed; any other rc undoes the token and its rows and is returned,
 * with the text hold wrote into why (whysz bytes) in the ctx's. When the
 * commit itself then fails, the error is returned and the caller undoes
 * what hold did.
 */
typedef int sotp_uri_hold_cb(
    void *arg, const char *serial, const char *uri, char *why, size_t whysz);
SOTP_EXPORT int sotp_token_generate(struct sotp_ctx *ctx,
    const struct sotp_token_spec *spec, const char *how, sotp_uri_hold_cb *hold,
    void *hold_arg, time_t now, char *serial_out, char **uri,
    struct sotp_decision *d);
/* SOTP_ERR_NOT_FOUND for an unknown serial. */
SOTP_EXPORT int sotp_token_get(
    struct sotp_ctx *ctx, const char *serial, struct sotp_token_info *out);
typedef int sotp_token_cb(void *arg, const struct sotp_token_info *t);
/* Calls cb for each token in serial order; a non-zero cb return stops. */
SOTP_EXPORT int sotp_token_list(
    struct sotp_ctx *ctx, int unassigned_only, sotp_token_cb *cb, void *arg);
/*
 * Tokens that hold one seed (a store from before seed fingerprints may
 * have taken a seed under two serials, and each token then answers with
 * the other's codes): cb gets each one's serial and its group, numbered
 * from 1 (the tokens of a group hold one seed), group after group,
 * serials in order within; never the seed or its fingerprint. Tokens
 * without a fingerprint yet (init not run since the upgrade) are not
 * seen. Needs no key. cb may call the core; a non-zero return stops (a
 * negative one, an SOTP_ERR_*, is returned). SOTP_ERR_STORE*,
 * SOTP_ERR_NOMEM.
 */
typedef int sotp_seed_shared_cb(
    void *arg, unsigned int group, const char *serial);
SOTP_EXPORT int sotp_seed_shared(
    struct sotp_ctx *ctx, sotp_seed_shared_cb *cb, void *arg);
/*
 * Exports the token's secret as its otpauth URI; free it with
 * sotp_free_string. An audited admin action ("token.export", `how` the
 * form asked for, e.g. "uri qr", as its detail): the row is written once
 * the URI is made, before it is returned; when it cannot be, nothing is
 * exported and the store's error is returned. A secret that cannot be
 * decrypted (SOTP_ERR_DECRYPT: a wrong key or a tampered row) is not
 * exported: an "error" row records the attempt, the ctx's text says why.
 * SOTP_ERR_NOT_FOUND for an unknown serial.
 *
 * hold (may be NULL) is the caller's part of the export that must land
 * with its row, as sotp_token_generate's (a PNG file of the QR code): it
 * gets the serial and the URI inside the transaction that writes the
 * row, before the commit. Any rc but SOTP_OK undoes the accept row and
 * is returned; the attempt is recorded as an "error" row whose detail is
 * how and the text hold wrote into why ("png: cannot write FILE: ..."),
 * and the ctx's text is "token SERIAL: " and that text. When the commit
 * itself then fails, the error is returned and the caller undoes what
 * hold did.
 */
SOTP_EXPORT int sotp_token_uri(struct sotp_ctx *ctx, const char *serial,
    const char *how, sotp_uri_hold_cb *hold, void *hold_arg, time_t now,
    char **uri);
/*
 * Disables (disabled = 1) or enables a token: a disabled token's codes
 * are refused (TOKEN_DISABLED) and it cannot be bound. Needs no master
 * key. Refusals: UNKNOWN_SERIAL. Audited ("token.disable", ".enable").
 */
SOTP_EXPORT int sotp_token_set_disabled(struct sotp_ctx *ctx,
    const char *serial, int disabled, time_t now, struct sotp_decision *d);

/*
 * Admin resync of a token whose clock has drifted: code1 and code2 are two
 * consecutive codes it shows now; they are searched within the policy's
 * resync_window steps. On success the drift is stored and both codes are
 * spent. An HOTP token whose counter ran ahead (pressed often without a
 * login) is searched forward from its last accepted counter, within
 * hotp_resync_window counters; both codes are spent the same way.
 * Refusals: UNKNOWN_SERIAL, WRONG_CODE (no such pair), REPLAYED.
 */
SOTP_EXPORT int sotp_token_resync(struct sotp_ctx *ctx, const char *serial,
    const char *code1, const char *code2, time_t now, struct sotp_decision *d);

SOTP_EXPORT int sotp_contract_add(struct sotp_ctx *ctx, const char *id,
    const char *password, time_t now, struct sotp_decision *d);
SOTP_EXPORT int sotp_contract_passwd(struct sotp_ctx *ctx, const char *id,
    const char *password, time_t now, struct sotp_decision *d);
/* Binds serial to id after checking `code` from it (admin path). */
SOTP_EXPORT int sotp_contract_bind(struct sotp_ctx *ctx, const char *id,
    const char *serial, const char *code, enum sotp_login login, time_t now,
    struct sotp_decision *d);
SOTP_EXPORT int sotp_contract_unbind(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d);
SOTP_EXPORT int sotp_contract_unlock(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d);
SOTP_EXPORT int sotp_contract_close(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d);
SOTP_EXPORT int sotp_contract_set_login(struct sotp_ctx *ctx, const char *id,
    enum sotp_login login, time_t now, struct sotp_decision *d);
/*
 * Issues a new card grid for id and writes it, printable (a header row
 * and one line per row), to grid[gridsz]; the grid is secret.
 */
SOTP_EXPORT int sotp_contract_card(struct sotp_ctx *ctx, const char *id,
    time_t now, char *grid, size_t gridsz, struct sotp_decision *d);
/* SOTP_ERR_NOT_FOUND for an unknown id. */
SOTP_EXPORT int sotp_contract_get(
    struct sotp_ctx *ctx, const char *id, struct sotp_contract_info *out);
/* Which contracts sotp_contract_list returns. */
enum sotp_contract_status {
	SOTP_CONTRACTS_ANY = 0,
	SOTP_CONTRACTS_ACTIVE, /* not closed */
	SOTP_CONTRACTS_CLOSED
};
typedef int sotp_contract_cb(void *arg, const struct sotp_contract_info *c);
/*
 * Calls cb for each contract in id order, those locked at `now` only
 * when locked_only, of the given status; a non-zero cb return stops.
 * Needs no master key.
 */
SOTP_EXPORT int sotp_contract_list(struct sotp_ctx *ctx, int locked_only,
    enum sotp_contract_status status, time_t now, sotp_contract_cb *cb,
    void *arg);

struct sotp_audit_row {
	int64_t id;
	int64_t ts;
	const char *action;   /* "verify", "bind", "token.add", ... */
	const char *contract; /* "" if none */
	const char *serial;
	const char *context;
	const char *verdict; /* "accept", "reject", "continue", "error" */
	int reason;          /* enum sotp_reason */
	const char *detail;  /* never secret */
	int64_t seq;         /* its place in its chain; 0: not chained */
	/*
	 * 1: chained by a holder of the key. 0: written without the key
	 * (a help desk's), waiting (seq 0) or linked since by the next
	 * append: its MAC is a key holder's, its content only as sure as
	 * the store was until then. -1: from before the chain.
	 */
	int keyed;
};
typedef int sotp_audit_cb(void *arg, const struct sotp_audit_row *r);
/*
 * Rows oldest first; contract NULL for all; since/until 0 for no bound.
 * Needs no master key.
 */
SOTP_EXPORT int sotp_audit_list(struct sotp_ctx *ctx, const char *contract,
    int64_t since, int64_t until, sotp_audit_cb *cb, void *arg);

/* The first break sotp_audit_verify found, if any. */
enum sotp_audit_problem {
	SOTP_AUDIT_OK = 0,
	SOTP_AUDIT_CHANGED,  /* a row's MAC does not hold */
	SOTP_AUDIT_REMOVED,  /* a gap in the chain, or its end cut off */
	SOTP_AUDIT_INSERTED, /* a row out of order, or past the head */
	SOTP_AUDIT_HEAD,     /* the head row does not match the last row */
	SOTP_AUDIT_BASE      /* the base was not set by a prune */
};
struct sotp_audit_check {
	enum sotp_audit_problem problem;
	int64_t bad_id;  /* the row (audit id) where it broke, or 0 */
	int64_t bad_seq; /* its place in the chain, or where one is missing */
	int64_t rows;    /* rows that verified, seq first_seq..last_seq */
	int64_t first_seq, last_seq;
	int64_t base_seq; /* the chain starts after it (pruned); 0: none */
	int64_t pending;  /* written without the key, not yet chained */
	int64_t legacy;   /* from before the chain (an upgraded store) */
	char what[SOTP_MSG_MAX]; /* one line for the operator */
	int bad_chain;           /* the chain (1..) where it broke, or 0 */
	int chains; /* chains that hold rows (PostgreSQL spreads them) */
	/*
	 * Of rows, those written without the key and linked since (keyed 0
	 * in sotp_audit_list): nothing tells a help desk's from one put in
	 * the same shape by hand before it was linked; the first one's id.
	 */
	int64_t unkeyed, unkeyed_id;
};
/*
 * Walks the audit chain (keyed by the master key) from its base to its
 * head and fills out: problem SOTP_AUDIT_OK, or the first row changed,
 * removed or inserted out of order. A break is not an error: SOTP_OK.
 * Errors: SOTP_ERR_KEY without the master key, SOTP_ERR_STORE*.
 */
SOTP_EXPORT int sotp_audit_verify(
    struct sotp_ctx *ctx, struct sotp_audit_check *out);
/*
 * Verifies the chain (into check), and only if it holds removes the rows
 * stamped before `before`, up to the first row stamped at or after it;
 * the last row removed becomes the chain's base, so that the chain still
 * verifies from the first row left. *removed: rows deleted (also those
 * from before the chain). Audited ("audit.prune"). Needs the master key.
 *
 * past (npast ids, at most SOTP_AUDIT_PAST_MAX): rows "audit.head" (an
 * append found its chain's head set back) that an auditor has looked
 * into. The verify does not name them, nor such rows before them in
 * their chain, and every other check must hold; each must go with the
 * prune (stamped before `before`, and no row before it in its chain
 * stamped at or after it): else SOTP_ERR_NOT_FOUND (no such row in a
 * chain) or SOTP_ERR_BAD_INPUT, nothing removed, the error naming it.
 */
#define SOTP_AUDIT_PAST_MAX 16
SOTP_EXPORT int sotp_audit_prune(struct sotp_ctx *ctx, int64_t before,
    const int64_t *past, size_t npast, time_t now, int64_t *removed,
    struct sotp_audit_check *check);

/*
 * Heads and bases a retirement by an older release left tagged under the
 * retired version (which verify refuses: a retired key must not vouch for
 * a chain's ends) tagged again under the current one, once every other
 * check passes; then verified again into *check. Only for a store whose
 * history was checked otherwise: a head put back by hand is tagged too.
 * Audited ("audit.retag"). Needs the master key.
 */
SOTP_EXPORT int sotp_audit_retag_old(struct sotp_ctx *ctx, time_t now,
    int *retagged, struct sotp_audit_check *check);

/* ---- Operations: health and metrics ---- */

enum sotp_health_state {
	SOTP_HEALTH_SKIPPED = 0, /* not run: a check it needs failed */
	SOTP_HEALTH_OK = 1,
	SOTP_HEALTH_FAILED = 2
};
/* The checks, in the order they run. */
enum sotp_health_check {
	SOTP_HC_POLICY = 0, /* the policy file reads and is valid */
	SOTP_HC_KEY,        /* the master key loads (owner, mode, size) */
	SOTP_HC_STORE,      /* the store opens: reachable, schema current */
	SOTP_HC_WRITE,      /* a write round trip commits there */
	SOTP_HC_COUNT
};
struct sotp_health {
	int healthy; /* 1: every check passed */
	struct {
		const char *name; /* "policy", "key", "store", "write" */
		enum sotp_health_state state;
		int rc;           /* the failure's SOTP_ERR_*, else SOTP_OK */
		unsigned int ms;  /* how long the check took */
		char detail[640]; /* what failed, or what was checked */
	} check[SOTP_HC_COUNT];
};
/*
 * Checks what a server needs to decide, as a load balancer's probe or a
 * watchdog would want: the policy at path (NULL: the default), the
 * master key, the store (reachable, schema current) and a real write
 * round trip (a row inserted, read back, deleted and committed, so that
 * on PostgreSQL with a synchronous standby it needs both servers). Each
 * check that cannot run because one before it failed is SKIPPED. Never
 * counts as a decision, writes no audit row, leaves no row behind. The
 * waits are the policy's [store] limits. Returns SOTP_OK when the checks
 * ran (h->healthy says how they went), or SOTP_ERR_INVALID_ARG or
 * SOTP_ERR_NOMEM when they could not. The context is left without a
 * loaded policy.
 */
SOTP_EXPORT int sotp_health(
    struct sotp_ctx *ctx, const char *path, time_t now, struct sotp_health *h);
/*
 * Whether this loaded context can decide now, as a RADIUS Status-Server
 * probe asks (RFC 5997), many times a minute: its policy and key loaded,
 * and its store answering one read, a lost connection reopened first (as
 * a decision would) and a SQLite file removed or replaced seen as lost.
 * It reads the key ring's one row: nothing about customers, no write, no
 * audit row. SOTP_OK, else the error a decision would have met
 * (sotp_ctx_errmsg says what and where).
 */
SOTP_EXPORT int sotp_ready(struct sotp_ctx *ctx);
/*
 * The counters file of the loaded policy (`metrics`), rendered in the
 * Prometheus text exposition format (version 0.0.4) into *text (malloc'd;
 * free with free()). Needs only the policy. A file no process has made
 * yet reads as zeros. SOTP_ERR_NOT_FOUND when the policy says metrics =
 * none, SOTP_ERR_CONFIG for a file of another layout, SOTP_ERR_SYSTEM,
 * SOTP_ERR_NOMEM.
 */
SOTP_EXPORT int sotp_metrics_text(struct sotp_ctx *ctx, char **text);

/* ---- Import: token seed files (PSKC, RFC 6030, and CSV) ---- */

/*
 * What became of a PSKC file's XML-DSig signature: none in the file; one
 * there but not checked (no signer certificate was given: the caller
 * must say so); checked against the signer certificate; or there and
 * refused by that check (the file is refused with it).
 */
enum sotp_sig_status {
	SOTP_SIG_NONE = 0,
	SOTP_SIG_UNCHECKED = 1,
	SOTP_SIG_VERIFIED = 2,
	SOTP_SIG_FAILED = 3,
};
/* "none", "unchecked", "verified", "failed": the audit rows' and --json's. */
SOTP_EXPORT const char *sotp_sig_status_name(enum sotp_sig_status s);

/*
 * The outcome of an import. A refused file is not an error: the call
 * returns SOTP_OK with refused = 1, and nothing is stored.
 */
struct sotp_import_result {
	unsigned int imported;     /* tokens stored (dry run: that would be) */
	int refused;               /* 1: the whole file was refused */
	enum sotp_reason why;      /* SOTP_R_BAD_INPUT or SOTP_R_EXISTS */
	unsigned int entry;        /* 1-based KeyPackage or CSV line; 0: file.
	                            * Also set (refused 0) when an error stops
	                            * the import at an entry. */
	char reason[SOTP_MSG_MAX]; /* "duplicate serial 'X' (line 2 has it too)"
	                            */
	enum sotp_sig_status signature; /* PSKC; also in the audit rows */
};

/*
 * Imports every KeyPackage of a PSKC document (RFC 6030) in buf[len], or
 * none: all entries are parsed, decrypted and checked (TOTP, or HOTP
 * with its Counter; 6-8 digits, secrets of the policy's min_secret_bytes
 * to 64 bytes, kind defined, serials new to the file and to the store)
 * before one store transaction inserts them all. Encrypted
 * secrets need psk[psklen] (16 bytes, section 6.1) or passphrase (PBKDF2,
 * section 6.2); each encrypted value's HMAC-SHA1 MAC is checked before it
 * is decrypted. kind NULL: the policy's default kind. dry_run checks all
 * and stores nothing. psk, passphrase and buf are secret. Audited, an
 * import that an error stops too (verdict error): res->entry is then the
 * entry the store was at (0: none, e.g. the commit failed), and
 * sotp_ctx_errmsg names its serial (or the format and pass), the error
 * and that nothing was imported; the caller, who knows the file, leads
 * with it and res->entry, as for a refusal.
 * A ds:Signature is NOT checked here (see sotp_import_pskc_signed):
 * res->signature is SOTP_SIG_UNCHECKED and the caller must say so.
 * Errors: SOTP_ERR_CONFIG (context not loaded), SOTP_ERR_STORE*,
 * SOTP_ERR_NOMEM, SOTP_ERR_CRYPTO, SOTP_ERR_INVALID_ARG.
 */
SOTP_EXPORT int sotp_import_pskc(struct sotp_ctx *ctx, const char *buf,
    size_t len, const uint8_t *psk, size_t psklen, const char *passphrase,
    const char *kind, int dry_run, time_t now, struct sotp_import_result *res);
/*
 * The same, checking the file's signature against signer[signer_len], the
 * PEM X.509 certificate of the vendor, alone (sotp_signer_check; anything
 * beside it refuses the file), pinned (its RSA key is the only one
 * tried: no chain, no trust store, the file's KeyInfo ignored). The file
 * must hold one enveloped ds:Signature, the last child of KeyContainer,
 * with one Reference to the whole file (no URI or URI=""), enveloped-
 * signature plus at most one (exclusive) C14N, rsa-sha1 or rsa-sha256
 * over a sha1 or sha256 digest; no URI is ever fetched. Anything else,
 * or a signature that does not verify, refuses the whole file before any
 * secret is decrypted; res->signature is SOTP_SIG_VERIFIED on success.
 * signer NULL: sotp_import_pskc (res->signature says UNCHECKED when the
 * file carries a signature).
 */
SOTP_EXPORT int sotp_import_pskc_signed(struct sotp_ctx *ctx, const char *buf,
    size_t len, const uint8_t *psk, size_t psklen, const char *passphrase,
    const char *signer, size_t signer_len, const char *kind, int dry_run,
    time_t now, struct sotp_import_result *res);
/*
 * Whether signer[signer_len] is one PEM CERTIFICATE (or legacy X509
 * CERTIFICATE) block and nothing else but blanks around it, as
 * sotp_import_pskc_signed requires (a private key or any other block
 * beside it is an operator's mistake, not to be skipped): 0, or -1 with
 * why[whysz] saying what else it holds, by block type only, never a
 * block's content; for text around the block (an openssl x509 -text
 * dump) or a TRUSTED CERTIFICATE, with the openssl command that writes
 * the certificate alone. No certificate is parsed.
 */
SOTP_EXPORT int sotp_signer_check(
    const char *signer, size_t signer_len, char *why, size_t whysz);
/*
 * The same for CSV: one token a line, "serial,base32secret[,algorithm,
 * digits,period,kind]" (empty fields take the defaults, a kind field
 * overrides `kind`); blank lines and lines starting with '#' are skipped.
 * entry is the line number, and a reason that names another entry names
 * it as "line N" (the caller, who knows the file, reports FILE:entry).
 */
SOTP_EXPORT int sotp_import_csv(struct sotp_ctx *ctx, const char *buf,
    size_t len, const char *kind, int dry_run, time_t now,
    struct sotp_import_result *res);

/* ---- Migration: contracts in bulk, export and backup ---- */

enum sotp_record_format { SOTP_FMT_CSV = 0, SOTP_FMT_JSONL = 1 };

/* One refused record: its line (0: the file) and why, in English. */
typedef int sotp_import_refusal_cb(
    void *arg, unsigned long line, int reason, const char *text);

struct sotp_contract_import_result {
	unsigned long records;     /* records read */
	unsigned long refused;     /* non-zero: nothing was stored */
	unsigned long imported;    /* contracts stored (dry run: would be) */
	unsigned long bindings;    /* migration bindings among them */
	unsigned long weak_hashes; /* legacy or too cheap, libxcrypt says */
	unsigned long line;        /* an error: the record's line it stopped
	                            * at (0: none, e.g. the commit failed) */
};

/*
 * Imports contracts from buf[len]: one record a line, CSV
 * "contract,pwhash[,login,card,serial,status]" (blank lines and lines
 * starting with '#' skipped) or JSON lines, one object with those members
 * (strings or null). pwhash is a crypt(3) hash stored as given (refused
 * unless libxcrypt can verify it); login otp|card|none (default otp); card
 * the grid's rows x columns digits; serial a token in the store to bind
 * without a live code (policy [migration] binding); status active|locked|
 * closed. Every record is checked first and each refused one reported to
 * cb with its line; only when none is refused (and not dry_run) are all
 * inserted, in one transaction. buf is secret (hashes, grids). Audited:
 * a refused import's row carries its first refusal's reason and line;
 * one an error stops has verdict error, naming the pass, the line and
 * the contract ID. On an error, res->line is the line of the record the
 * store was at (0: none) and sotp_ctx_errmsg names its contract ID (or
 * the format and pass), the error and that nothing was imported; the
 * caller, who knows the file, leads with FILE:res->line.
 * Errors: SOTP_ERR_CONFIG, SOTP_ERR_STORE*, SOTP_ERR_NOMEM,
 * SOTP_ERR_CRYPTO, SOTP_ERR_INVALID_ARG.
 */
SOTP_EXPORT int sotp_contract_import(struct sotp_ctx *ctx, const char *buf,
    size_t len, enum sotp_record_format fmt, int dry_run, time_t now,
    sotp_import_refusal_cb *cb, void *arg,
    struct sotp_contract_import_result *res);

/*
 * Receives one output line of len bytes, newline included: SOTP_OK, or
 * an rc with why (whysz bytes) saying what failed.
 */
typedef int sotp_write_cb(
    void *arg, const char *line, size_t len, char *why, size_t whysz);
/*
 * Publishes an export whose lines the caller held (a file written
 * unnamed, now named): SOTP_OK, or an rc with why (whysz bytes) saying
 * what failed.
 */
typedef int sotp_publish_cb(void *arg, char *why, size_t whysz);
/*
 * Writes every contract, in ID order, as one record in fmt to cb: the
 * format sotp_contract_import reads, with the binding's serial and the
 * status. Without with_secrets the pwhash and card fields are empty (not
 * importable as they stand); with it they hold the hash and the unsealed
 * grid, and the lines are secret. Audited ("contract.export"): the row
 * records only an export that is written.
 *
 * Without publish the lines leave as cb gets them: every record is made
 * (every card decrypted) in a first pass that writes nothing, then the
 * row, before the first line (an export that cannot be audited does not
 * start). With publish the caller holds every line until publish, which
 * is called after the last line inside one transaction with the row: a
 * line that cannot be made leaves no row, a row that cannot be written
 * means publish is not called, and a line that cannot be written (no
 * accept row) or a publish that fails (undoing the row) is recorded as an
 * "error" row with the callback's why, which the ctx's text says. When the
 * commit then fails, the error is returned and the caller undoes the
 * publication (arg is both callbacks').
 *
 * A card that cannot be decrypted (SOTP_ERR_DECRYPT: a wrong key or a
 * tampered row) is not exported: an "error" row names its contract, the
 * ctx's text says why, and no line was written (streamed) or published
 * (held). A non-zero cb return stops the export and is returned.
 * *count: lines written, once the export is done.
 */
SOTP_EXPORT int sotp_export(struct sotp_ctx *ctx, enum sotp_record_format fmt,
    int with_secrets, time_t now, sotp_write_cb *cb, sotp_publish_cb *publish,
    void *arg, unsigned long *count);
/*
 * A consistent online copy of a SQLite store into a new file at the
 * absolute path (0600; an existing file is never overwritten): PAM and
 * RADIUS go on reading and writing while it runs. The copy is checked
 * before it is kept. A PostgreSQL store returns SOTP_ERR_CONFIG: pg_dump
 * and base backups do that (README). Audited. Errors: SOTP_ERR_SYSTEM,
 * SOTP_ERR_STORE*, SOTP_ERR_CONFIG, SOTP_ERR_INVALID_ARG.
 */
SOTP_EXPORT int sotp_backup(struct sotp_ctx *ctx, const char *path, time_t now);

#endif /* SHINKIN_OTP_H */

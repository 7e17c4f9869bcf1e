/*
 * engine_int.h - the attempt, shared by engine.c (the decisions) and
 * engine_state.c (what RADIUS carries between two requests).
 */
#ifndef SOTP_ENGINE_INT_H
#define SOTP_ENGINE_INT_H

#include "sotp_int.h"

#define SOTP_NFACTORS 5
#define SOTP_STATE_ID_LEN 16
#define SOTP_PW_DIGEST_LEN 32
#define SOTP_PW_TAG_LEN 16

struct sotp_attempt {
	struct sotp_ctx *ctx;
	char contract[SOTP_ID_MAX];
	int contract_ok; /* the given ID was well-formed */
	char context[SOTP_NAME_MAX];
	time_t now;
	char *in[SOTP_NFACTORS]; /* inputs, indexed by factor bit */
	char *answer;            /* to the question asked (or the first) */
	char *combined;          /* append mode: password followed by code */
	unsigned int supplied;
	unsigned int done;  /* verified, in this or an earlier round */
	unsigned int asked; /* the question the last CONTINUE asked */
	uint8_t cells[SOTP_MAX_CELLS];
	unsigned int ncells;
	int cells_spent; /* answered right since they were shown (engine.c) */
	unsigned int rounds;
	/* What registration rounds verified, carried in the state. */
	char serial[SOTP_ID_MAX]; /* the token, as stored */
	int64_t step;             /* the verified code's time step, or -1 */
	int drift;
	enum sotp_login login;
	int resumed;
	int state_reason; /* a resumed state was bad: reject with this */
	/*
	 * Its MAC could not be computed (no key version to fetch, no
	 * HMAC): not a bad state but a failure of this server, refused as
	 * one (engine.c step), its cause in the context's error text.
	 */
	int state_rc;
	/*
	 * Why an input could not be taken ("" when none was refused): one
	 * over SOTP_INPUT_MAX bytes, or what the front end said of its
	 * request (sotp_attempt_malformed). The next step refuses the
	 * attempt as BAD_INPUT with this as the audit row's detail.
	 */
	char malformed[128];
	unsigned int malformed_factor; /* the SOTP_F_* it was, or 0 */
	/*
	 * The service (PAM service, RADIUS context attribute) that
	 * sotp_attempt_begin_service could not map to a context, as the
	 * audit row names it (escaped, cut); "" when none. The next step
	 * refuses the attempt as UNKNOWN_CONTEXT with this as the detail.
	 */
	char unmapped[128];
	uint8_t state_id[SOTP_STATE_ID_LEN];
	int64_t state_expires; /* of the resumed state */
	uint32_t state_kv;     /* the key version that signed it */
	/*
	 * The password this attempt verified: SHA-256 of the contract's
	 * stored hash it matched (the new one after a rehash). A State that
	 * carries the password done is bound to it (engine_state.c).
	 */
	uint8_t pw_digest[SOTP_PW_DIGEST_LEN];
	int pw_digest_set;
	/*
	 * A resumed State's binding to the password (layout version 4),
	 * checked against the contract's row the next step reads
	 * (sotp_attempt_state_holds); pw_bound 0 for a State with no
	 * password done, or one of an older build.
	 */
	uint8_t pw_tag[SOTP_PW_TAG_LEN];
	int pw_bound;
	int final;
	/*
	 * The contract does not exist and the policy hides that: the attempt
	 * goes on as for a contract whose password never matches (engine.c,
	 * sotp_attempt_step); only the audit row says UNKNOWN_CONTRACT.
	 */
	int phantom;
	/*
	 * The contract's row was read in this request. Only then is its name
	 * logged or audited: a name that is no contract, or one the store
	 * could not be asked about, may be a password typed into the wrong
	 * field.
	 */
	int known;
	/* The store said unavailable once: no second wait (engine.c). */
	int store_down;
	int txn; /* a store transaction is open for this decision's writes */
	/* With a writer: ctx's own store while ctx->st is the writer's. */
	struct sotp_store *own_st;
	struct sotp_audit_head *own_batch; /* ctx's, while the writer's */
	int regated; /* the lock was looked at again under that transaction */
	/*
	 * The contract's failure count as that look saw it, under the write
	 * lock: an accept resets a count only if it is not already 0.
	 */
	unsigned int regated_failures;
	/* And the token it was bound to then ("" for none). */
	char regated_serial[SOTP_ID_MAX];
	/* Core time (monotonic µs) toward the next counted decision. */
	uint64_t t_busy, t_start;
};

/*
 * The password was verified against pwhash, the contract's stored hash
 * (after a rehash, the one that replaced it): a State exported with the
 * password done is bound to it.
 */
int sotp_attempt_pw_verified(struct sotp_attempt *a, const char *pwhash);
/*
 * Whether a resumed State bound to the password (version 4) still holds
 * for pwhash, the contract's stored hash as this step read it (NULL: no
 * contract): *holds 1, or 0 with the State dropped and state_reason set
 * to STATE_INVALID. A State not so bound holds. Errors: those of the
 * State's MAC (its key version, the HMAC), the State then dropped too.
 */
int sotp_attempt_state_holds(
    struct sotp_attempt *a, const char *pwhash, int *holds);

/* The bit index of a single SOTP_F_* value, or -1. */
int sotp_engine_fidx(unsigned int factor);
/* 1 for the questions whose answer may show as it is typed. */
int sotp_engine_echo(unsigned int factor);
/* The prompt key (SOTP_M_PROMPT_*) of a factor. */
int sotp_engine_prompt_key(unsigned int factor);

#endif /* SOTP_ENGINE_INT_H */

/*
 * engine.c - the decision engine: one attempt for a contract in a context.
 *
 * The policy's context says which factors are asked (password, code, card,
 * or registration inputs). An attempt collects inputs, asks for what is
 * missing (CONTINUE), and ends in one ACCEPT or REJECT that is audited.
 * Order matters and is fixed here for every front end:
 *   1. unknown context, unknown or closed contract, lock: refused before
 *      any secret (password hash, token secret, card) is touched;
 *   2. the password, when the context checks it, before anything that
 *      would tell a stranger whether the contract has a token;
 *   3. the second factor; a code is accepted only through the store's
 *      compare-and-set of the token's last step, so a code is good once.
 * Every wrong password, code or card counts toward the same lockout.
 */
#include "sotp_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#define NFACTORS 5
#define STATE_VERSION 1
#define STATE_ID_LEN 16
#define STATE_MAC_LEN 16
/* version | id | expires (8) | rounds | done | needs | ncells | cells */
#define STATE_BODY (1 + STATE_ID_LEN + 8 + 4 + SOTP_MAX_CELLS)
#define STATE_LEN (STATE_BODY + STATE_MAC_LEN)

struct sotp_attempt {
	struct sotp_ctx *ctx;
	char contract[SOTP_ID_MAX];
	int contract_ok; /* the given ID was well-formed */
	char context[SOTP_NAME_MAX];
	time_t now;
	char *in[NFACTORS]; /* inputs, indexed by factor bit */
	char *combined;     /* password followed by code */
	unsigned int supplied;
	unsigned int done;  /* verified in an earlier round */
	unsigned int needs; /* what the last CONTINUE asked for */
	uint8_t cells[SOTP_MAX_CELLS];
	unsigned int ncells;
	unsigned int rounds;
	int resumed;
	int state_reason; /* a resumed state was bad: reject with this */
	uint8_t state_id[STATE_ID_LEN];
	int64_t state_expires; /* of the resumed state */
	int final;
	int txn; /* a store transaction is open for this decision's writes */
	/* Core time (monotonic µs) toward the next counted decision. */
	uint64_t t_busy, t_start;
};

/* What the customer is told; internal detail goes to the log only. */
static const struct {
	int reason;
	const char *msg;
} customer_msgs[] = {
    {SOTP_R_WRONG_CODE, "The one-time code is not correct."},
    {SOTP_R_REPLAYED,
        "This code has already been used; wait for the "
        "next code."},
    {SOTP_R_LOCKED,
        "This contract is locked after too many failed "
        "attempts; please contact the bank."},
    {SOTP_R_UNKNOWN_CONTRACT,
        "The contract ID or password is not "
        "correct."},
    {SOTP_R_WRONG_PASSWORD,
        "The contract ID or password is not "
        "correct."},
    {SOTP_R_UNKNOWN_SERIAL, "The token serial number is not known."},
    {SOTP_R_ALREADY_BOUND,
        "A token is already registered for this "
        "contract."},
    {SOTP_R_TOKEN_IN_USE,
        "This token is registered to another "
        "contract."},
    {SOTP_R_NOT_BOUND,
        "No token is registered for this contract; "
        "please register a smartphone token first."},
    {SOTP_R_WRONG_CARD, "The card digits are not correct."},
    {SOTP_R_NO_CARD,
        "No confirmation card has been issued for this "
        "contract."},
    {SOTP_R_CONTRACT_CLOSED, "This contract is closed."},
    {SOTP_R_TOKEN_DISABLED,
        "This token is disabled; please contact "
        "the bank."},
    {SOTP_R_BAD_INPUT, "The input is not valid."},
    {SOTP_R_STATE_INVALID,
        "This session is not valid; please start "
        "again."},
    {SOTP_R_STATE_EXPIRED,
        "This session has expired; please start "
        "again."},
    {SOTP_R_STATE_REPLAYED,
        "This session was already used; please "
        "start again."},
    {SOTP_R_TOO_MANY_ROUNDS,
        "Too many steps in one session; please "
        "start again."},
    {SOTP_R_UNKNOWN_CONTEXT, "This service is not configured."},
    {SOTP_R_STORE_UNAVAILABLE,
        "The service is temporarily unavailable; "
        "please try again later."},
    {SOTP_R_BAD_CONFIG,
        "The service is temporarily unavailable; please "
        "try again later."},
    {SOTP_R_INTERNAL,
        "The service is temporarily unavailable; please "
        "try again later."},
};

static const char *
customer_msg(int reason)
{
	size_t i;

	for (i = 0; i < sizeof(customer_msgs) / sizeof(customer_msgs[0]); i++)
		if (customer_msgs[i].reason == reason)
			return customer_msgs[i].msg;
	return "";
}

static int
fidx(unsigned int factor)
{
	if (factor == 0 || (factor & (factor - 1)) != 0 ||
	    factor >= (1u << NFACTORS))
		return -1;
	return __builtin_ctz(factor);
}

int
sotp_attempt_begin(struct sotp_ctx *ctx, const char *contract_id,
    const char *context, time_t now, struct sotp_attempt **out)
{
	struct sotp_attempt *a;

	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = NULL;
	if (ctx == NULL || contract_id == NULL || context == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return SOTP_ERR_NOMEM;
	a->ctx = ctx;
	a->now = now;
	a->contract_ok = sotp_id_valid(contract_id);
	if (a->contract_ok)
		sotp_strlcpy(a->contract, contract_id, sizeof(a->contract));
	/* An over-long context name simply matches no context. */
	if (sotp_strlcpy(a->context, context, sizeof(a->context)) >=
	    sizeof(a->context))
		a->context[0] = '\0';
	*out = a;
	return SOTP_OK;
}

int
sotp_attempt_set(
    struct sotp_attempt *a, enum sotp_factor factor, const char *value)
{
	char *copy;
	int i;

	if (a == NULL || value == NULL || (i = fidx(factor)) < 0)
		return SOTP_ERR_INVALID_ARG;
	if (strlen(value) > 1024)
		return SOTP_ERR_BAD_INPUT;
	if ((copy = sotp_strdup(value)) == NULL)
		return SOTP_ERR_NOMEM;
	sotp_free_string(a->in[i]);
	a->in[i] = copy;
	a->supplied |= factor;
	return SOTP_OK;
}

int
sotp_attempt_set_combined(struct sotp_attempt *a, const char *value)
{
	char *copy;

	if (a == NULL || value == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (strlen(value) > 1024)
		return SOTP_ERR_BAD_INPUT;
	if ((copy = sotp_strdup(value)) == NULL)
		return SOTP_ERR_NOMEM;
	sotp_free_string(a->combined);
	a->combined = copy;
	return SOTP_OK;
}

unsigned int
sotp_attempt_needs(const struct sotp_attempt *a)
{
	return a == NULL ? 0 : a->needs;
}

void
sotp_attempt_free(struct sotp_attempt *a)
{
	size_t i;

	if (a == NULL)
		return;
	if (a->txn)
		sotp_store_rollback(a->ctx->st);
	for (i = 0; i < NFACTORS; i++)
		sotp_free_string(a->in[i]);
	sotp_free_string(a->combined);
	sotp_free_secret(a, sizeof(*a));
}

/* ---- decisions ---- */

static const char *
action_name(const struct sotp_context_def *cdef)
{
	if (cdef == NULL)
		return "auth";
	switch (cdef->action) {
	case SOTP_ACT_REGISTER:
		return "register";
	case SOTP_ACT_UNREGISTER:
		return "unregister";
	case SOTP_ACT_AUTH:
		break;
	}
	return "auth";
}

/*
 * Opens the transaction that holds a decision's state change (replay mark,
 * failure count, binding) and its audit row: they land together, with one
 * commit, or not at all.
 */
static int
write_begin(struct sotp_attempt *a)
{
	int rc;

	if (a->txn)
		return SOTP_OK;
	if ((rc = sotp_store_begin(a->ctx->st)) != SOTP_OK) {
		sotp_ctx_seterr(a->ctx, "%s", sotp_store_errmsg(a->ctx->st));
		return rc;
	}
	a->txn = 1;
	return SOTP_OK;
}

/* Commits the decision's transaction, if one is open. */
static int
write_commit(struct sotp_attempt *a)
{
	int rc;

	if (!a->txn)
		return SOTP_OK;
	a->txn = 0;
	if ((rc = sotp_store_commit(a->ctx->st)) != SOTP_OK)
		sotp_ctx_seterr(a->ctx, "%s", sotp_store_errmsg(a->ctx->st));
	return rc;
}

/*
 * Counts a decision as its audit row records it (after finish_audited
 * may have turned it into a refusal), with the core time spent on it.
 */
static void
count(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    const struct sotp_decision *d)
{
	uint64_t now;

	if (a->ctx->metrics == NULL)
		return;
	now = sotp_monotonic_us();
	sotp_metrics_decision(a->ctx->metrics, a->context, cdef != NULL,
	    d->verdict, (int)d->reason, a->t_busy + (now - a->t_start));
	a->t_busy = 0;
	a->t_start = now;
}

static int
finish_audited(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, enum sotp_verdict v, int reason,
    const char *serial, const char *detail)
{
	int rc, crc;

	rc = sotp_audit(a->ctx, a->now, action_name(cdef),
	    a->contract_ok && reason != SOTP_R_UNKNOWN_CONTRACT ? a->contract
	                                                        : "",
	    serial, a->context,
	    v == SOTP_ACCEPT ? "accept"
	                     : (v == SOTP_CONTINUE ? "continue" : "reject"),
	    reason, detail);
	crc = write_commit(a);
	if (rc == SOTP_OK)
		rc = crc;
	/*
	 * An accept that cannot be audited, or whose replay mark cannot be
	 * committed, is not an accept: the bank's auditors must see every
	 * way in, and a code must stay single use.
	 */
	if (rc != SOTP_OK && v != SOTP_REJECT) {
		d->verdict = SOTP_REJECT;
		d->reason = SOTP_R_STORE_UNAVAILABLE;
		sotp_strlcpy(
		    d->message, customer_msg(d->reason), sizeof(d->message));
		a->final = 1;
		return rc;
	}
	return SOTP_OK;
}

static int
finish(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, enum sotp_verdict v, int reason,
    const char *serial, const char *detail)
{
	int rc;

	d->verdict = v;
	d->reason = (enum sotp_reason)reason;
	if (d->message[0] == '\0')
		sotp_strlcpy(
		    d->message, customer_msg(reason), sizeof(d->message));
	if (v != SOTP_CONTINUE)
		a->final = 1;
	/* Asking for the first input is not worth a row; a challenge is. */
	if (v == SOTP_CONTINUE && a->done == 0)
		return SOTP_OK;
	rc = finish_audited(a, cdef, d, v, reason, serial, detail);
	count(a, cdef, d);
	return rc;
}

/* The check itself failed: refuse, log the detail, return the error. */
static int
fail_error(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, int rc)
{
	int reason = sotp_reason_from_rc(rc);

	sotp_log(a->ctx, LOG_ERR, "contract %s: %s: %s",
	    a->contract_ok ? a->contract : "-", sotp_strerror(rc),
	    sotp_ctx_errmsg(a->ctx));
	memset(d, 0, sizeof(*d));
	(void)finish(a, cdef, d, SOTP_REJECT, reason, NULL, sotp_rc_name(rc));
	return rc;
}

static int
store_err(struct sotp_ctx *ctx, int rc)
{
	sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

/* Counts a wrong factor toward the lockout and refuses. */
static int
wrong(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, int reason, const char *serial)
{
	const struct sotp_policy *p = &a->ctx->pol;
	unsigned int failures = 0;
	int64_t lock, locked_until = 0;
	char detail[64];
	int rc;

	lock = p->lock_duration == 0 ? -1 : (int64_t)a->now + p->lock_duration;
	if ((rc = write_begin(a)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if ((rc = sotp_store_fail(a->ctx->st, a->contract, p->lock_threshold,
	         lock, &failures, &locked_until)) != SOTP_OK)
		return fail_error(a, cdef, d, store_err(a->ctx, rc));
	d->locked = locked_until != 0;
	snprintf(detail, sizeof(detail), "failures=%u%s", failures,
	    d->locked ? " locked" : "");
	if (d->locked)
		snprintf(d->message, sizeof(d->message), "%s %s",
		    customer_msg(reason), customer_msg(SOTP_R_LOCKED));
	return finish(a, cdef, d, SOTP_REJECT, reason, serial, detail);
}

/* ---- the plan: which factors this context asks of this contract ---- */

static unsigned int
plan(const struct sotp_context_def *cdef, const struct sotp_contract_rec *c)
{
	unsigned int req = cdef->password ? SOTP_F_PASSWORD : 0;
	enum sotp_second second = cdef->second;

	if (second == SOTP_2F_USER)
		second = c->login == SOTP_LOGIN_OTP
		    ? SOTP_2F_OTP
		    : (c->login == SOTP_LOGIN_CARD ? SOTP_2F_CARD
		                                   : SOTP_2F_NONE);
	switch (cdef->action) {
	case SOTP_ACT_REGISTER:
		req |= SOTP_F_SERIAL | SOTP_F_OTP | SOTP_F_LOGIN_CHOICE;
		if (second == SOTP_2F_CARD)
			req |= SOTP_F_CARD;
		return req;
	case SOTP_ACT_UNREGISTER:
		return req | SOTP_F_OTP;
	case SOTP_ACT_AUTH:
		break;
	}
	if (second == SOTP_2F_OTP)
		req |= SOTP_F_OTP;
	else if (second == SOTP_2F_CARD)
		req |= SOTP_F_CARD;
	return req;
}

/* Refusals that depend on the contract's bindings, after the password. */
static int
precondition(const struct sotp_context_def *cdef,
    const struct sotp_contract_rec *c, unsigned int req)
{
	if (cdef->action == SOTP_ACT_REGISTER) {
		if (c->serial[0] != '\0')
			return SOTP_R_ALREADY_BOUND;
	} else if ((req & SOTP_F_OTP) && c->serial[0] == '\0')
		return SOTP_R_NOT_BOUND;
	if ((req & SOTP_F_CARD) && c->card_len == 0)
		return SOTP_R_NO_CARD;
	return SOTP_R_ACCEPTED;
}

/*
 * Legacy kinds: refused after the sunset day, accepted with a warning in
 * the days before it. Returns a refusal reason or SOTP_R_ACCEPTED.
 */
static int
kind_check(const struct sotp_policy *p, const struct sotp_token_rec *t,
    time_t now, char *msg, size_t msgsz)
{
	const struct sotp_kind *k = sotp_policy_kind(p, t->kind);

	if (k == NULL || k->sunset_end == 0)
		return SOTP_R_ACCEPTED;
	if ((int64_t)now >= k->sunset_end) {
		snprintf(msg, msgsz,
		    "Your %s token was retired on %s; please move to the "
		    "smartphone token.",
		    k->name, k->sunset);
		return SOTP_R_TOKEN_SUNSET;
	}
	if ((int64_t)now >= k->sunset_end - (int64_t)k->warn_days * 86400)
		snprintf(msg, msgsz,
		    "Your %s token can be used until %s; please move to the "
		    "smartphone token.",
		    k->name, k->sunset);
	return SOTP_R_ACCEPTED;
}

/* Splits "password followed by code" once the code's length is known. */
static int
split_combined(
    struct sotp_attempt *a, unsigned int req, const struct sotp_contract_rec *c)
{
	struct sotp_token_rec t;
	size_t n, digits = 0;
	char *pw;
	int rc;

	if (a->combined == NULL)
		return SOTP_OK;
	if ((req & SOTP_F_OTP) && c->serial[0] != '\0') {
		rc = sotp_store_token_get(a->ctx->st, c->serial, &t);
		if (rc != SOTP_OK)
			return store_err(a->ctx, rc);
		digits = t.digits;
		sotp_wipe(&t, sizeof(t));
	}
	n = strlen(a->combined);
	if (digits > 0 && n > digits) {
		if ((rc = sotp_attempt_set(
		         a, SOTP_F_OTP, a->combined + n - digits)) != SOTP_OK)
			return rc;
		sotp_wipe(a->combined + n - digits, digits);
		a->combined[n - digits] = '\0';
	}
	if (req & SOTP_F_PASSWORD) {
		pw = a->combined;
		if ((rc = sotp_attempt_set(a, SOTP_F_PASSWORD, pw)) != SOTP_OK)
			return rc;
	}
	sotp_free_string(a->combined);
	a->combined = NULL;
	return SOTP_OK;
}

/*
 * Checks a code against token t; on a match the store's compare-and-set
 * consumes the step. *reason: ACCEPTED, WRONG_CODE or REPLAYED.
 */
static int
use_code(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const char *contract, const char *code, time_t now, int bind, int *reason,
    int64_t *step, int *drift)
{
	int rc, match = 0, won = 0;

	*reason = SOTP_R_WRONG_CODE;
	if ((rc = sotp_token_match(ctx, t, code, now, &match, step, drift)) !=
	    SOTP_OK)
		return rc;
	if (!match)
		return SOTP_OK;
	if (*step <= t->last_step) {
		*reason = SOTP_R_REPLAYED;
		return SOTP_OK;
	}
	if (bind) { /* the caller's bind transaction does the CAS */
		*reason = SOTP_R_ACCEPTED;
		return SOTP_OK;
	}
	if ((rc = sotp_store_accept_step(
	         ctx->st, t->serial, contract, *step, *drift, &won)) != SOTP_OK)
		return store_err(ctx, rc);
	*reason = won ? SOTP_R_ACCEPTED : SOTP_R_REPLAYED;
	return SOTP_OK;
}

/* Loads a token for binding: it must exist, be free and enabled. */
static int
bind_token_get(struct sotp_ctx *ctx, const char *serial,
    struct sotp_token_rec *t, int *reason)
{
	int rc;

	*reason = SOTP_R_UNKNOWN_SERIAL;
	if (!sotp_id_valid(serial))
		return SOTP_OK;
	rc = sotp_store_token_get(ctx->st, serial, t);
	if (rc == SOTP_ERR_NOT_FOUND)
		return SOTP_OK;
	if (rc != SOTP_OK)
		return store_err(ctx, rc);
	if (t->contract[0] != '\0')
		*reason = SOTP_R_TOKEN_IN_USE;
	else if (t->disabled)
		*reason = SOTP_R_TOKEN_DISABLED;
	else
		*reason = SOTP_R_ACCEPTED;
	return SOTP_OK;
}

/*
 * May contract c take token t (NULL: there is no such token) with a code
 * of time step `step`? The rules of a binding: the contract is open and
 * holds no token (one token per contract), the token exists, is enabled
 * and is bound to no contract (one contract per token), and the code is
 * newer than any the token has produced before (single use).
 */
static int
bind_check(const struct sotp_contract_rec *c, const struct sotp_token_rec *t,
    int64_t step)
{
	if (c->closed)
		return SOTP_R_CONTRACT_CLOSED;
	if (c->serial[0] != '\0')
		return SOTP_R_ALREADY_BOUND;
	if (t == NULL)
		return SOTP_R_UNKNOWN_SERIAL;
	if (t->contract[0] != '\0')
		return SOTP_R_TOKEN_IN_USE;
	if (t->disabled)
		return SOTP_R_TOKEN_DISABLED;
	if (t->last_step >= step)
		return SOTP_R_REPLAYED;
	return SOTP_R_ACCEPTED;
}

/*
 * The binding's transaction (a savepoint inside a decision's): the
 * contract and the token are read again under their row locks, contract
 * first (the order of every decision: gate_again takes the contract, the
 * code's compare-and-set then the token, so no two transactions wait on
 * each other in a cycle), and only then checked, so that of two racing
 * binds the second sees the first. The token's binding lives in
 * contracts, so it is read after both locks are held. The write itself is
 * guarded too (sotp_store_bind); with the locks held it cannot lose.
 */
static int
bind_locked(struct sotp_ctx *ctx, const char *contract, const char *serial,
    enum sotp_login login, int64_t step, int drift, int *reason)
{
	struct sotp_store *st = ctx->st;
	struct sotp_contract_rec c;
	struct sotp_token_rec t;
	int rc, have_token, won = 0;

	memset(&c, 0, sizeof(c));
	memset(&t, 0, sizeof(t));
	*reason = SOTP_R_INTERNAL;
	if ((rc = sotp_store_begin(st)) != SOTP_OK)
		return store_err(ctx, rc);
	rc = sotp_store_contract_lock(st, contract, &c);
	if (rc == SOTP_ERR_NOT_FOUND) {
		*reason = SOTP_R_UNKNOWN_CONTRACT;
		rc = SOTP_OK;
		goto refuse;
	}
	if (rc != SOTP_OK)
		goto fail;
	rc = sotp_store_token_lock(st, serial);
	if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		goto fail;
	have_token = rc == SOTP_OK;
	if (have_token &&
	    (rc = sotp_store_token_get(st, serial, &t)) != SOTP_OK)
		goto fail;
	if ((*reason = bind_check(&c, have_token ? &t : NULL, step)) !=
	    SOTP_R_ACCEPTED)
		goto refuse;
	if ((rc = sotp_store_bind(
	         st, contract, serial, login, step, drift, &won)) != SOTP_OK)
		goto fail;
	if (!won) {
		/* The row locks should make this impossible: fail closed. */
		sotp_store_rollback(st);
		sotp_ctx_seterr(
		    ctx, "bind %s: changed under its row locks", contract);
		rc = SOTP_ERR_STORE;
		goto out;
	}
	/* On failure the commit has rolled back already. */
	if ((rc = sotp_store_commit(st)) != SOTP_OK)
		rc = store_err(ctx, rc);
	goto out;
fail:
	rc = store_err(ctx, rc);
refuse:
	/* A refusal or an error changes nothing. */
	sotp_store_rollback(st);
out:
	if (rc != SOTP_OK)
		*reason = SOTP_R_INTERNAL;
	sotp_wipe(&c, sizeof(c));
	sotp_wipe(&t, sizeof(t));
	return rc;
}

/*
 * The binding shared by self-service registration and the admin's
 * "contract bind": the code must come from the token now, and its step is
 * spent by the binding's own write.
 */
int
sotp_engine_bind(struct sotp_ctx *ctx, const char *contract, const char *serial,
    const char *code, enum sotp_login login, time_t now, int *reason, char *msg,
    size_t msgsz)
{
	struct sotp_token_rec t;
	int64_t step = -1;
	int rc, drift = 0;

	memset(&t, 0, sizeof(t));
	if ((rc = bind_token_get(ctx, serial, &t, reason)) != SOTP_OK ||
	    *reason != SOTP_R_ACCEPTED)
		goto out;
	if ((*reason = kind_check(&ctx->pol, &t, now, msg, msgsz)) !=
	    SOTP_R_ACCEPTED)
		goto out;
	if ((rc = use_code(ctx, &t, contract, code, now, 1, reason, &step,
	         &drift)) != SOTP_OK ||
	    *reason != SOTP_R_ACCEPTED)
		goto out;
	rc = bind_locked(ctx, contract, serial, login, step, drift, reason);
out:
	sotp_wipe(&t, sizeof(t));
	return rc;
}

/* ---- the second factor of one step ---- */

static int
check_card(
    struct sotp_attempt *a, const struct sotp_contract_rec *c, int *reason)
{
	char grid[SOTP_CARD_MAX];
	size_t len = 0;
	int rc, ok = 0;

	*reason = SOTP_R_WRONG_CARD;
	if ((rc = sotp_unseal(a->ctx->key, c->id, strlen(c->id), c->card,
	         c->card_len, (uint8_t *)grid, sizeof(grid) - 1, &len)) !=
	    SOTP_OK) {
		sotp_ctx_seterr(a->ctx,
		    "contract %s: card cannot be "
		    "decrypted (wrong master key or "
		    "tampered row)",
		    c->id);
		goto out;
	}
	grid[len] = '\0';
	if ((rc = sotp_card_check(grid, a->cells, a->ncells,
	         a->in[fidx(SOTP_F_CARD)], &ok)) != SOTP_OK)
		goto out;
	if (ok)
		*reason = SOTP_R_ACCEPTED;
out:
	SOTP_WIPE_ARRAY(grid);
	return rc;
}

static int
check_otp(struct sotp_attempt *a, const struct sotp_contract_rec *c,
    int *reason, char *serial, char *msg, size_t msgsz)
{
	struct sotp_token_rec t;
	int64_t step;
	int rc, drift;

	sotp_strlcpy(serial, c->serial, SOTP_ID_MAX);
	if ((rc = sotp_store_token_get(a->ctx->st, c->serial, &t)) != SOTP_OK)
		return store_err(a->ctx, rc);
	if (t.disabled)
		*reason = SOTP_R_TOKEN_DISABLED;
	else if ((*reason = kind_check(&a->ctx->pol, &t, a->now, msg, msgsz)) ==
	    SOTP_R_ACCEPTED)
		rc = use_code(a->ctx, &t, c->id, a->in[fidx(SOTP_F_OTP)],
		    a->now, 0, reason, &step, &drift);
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
do_register(struct sotp_attempt *a, const struct sotp_contract_rec *c,
    unsigned int req, int *reason, char *serial, char *msg, size_t msgsz)
{
	enum sotp_login login;
	int rc;

	sotp_strlcpy(serial, a->in[fidx(SOTP_F_SERIAL)], SOTP_ID_MAX);
	if (sotp_login_parse(a->in[fidx(SOTP_F_LOGIN_CHOICE)], &login) !=
	    SOTP_OK) {
		*reason = SOTP_R_BAD_INPUT;
		return SOTP_OK;
	}
	if (login == SOTP_LOGIN_CARD && c->card_len == 0) {
		*reason = SOTP_R_NO_CARD;
		return SOTP_OK;
	}
	if ((req & SOTP_F_CARD) &&
	    ((rc = check_card(a, c, reason)) != SOTP_OK ||
	        *reason != SOTP_R_ACCEPTED))
		return rc;
	return sotp_engine_bind(a->ctx, c->id, a->in[fidx(SOTP_F_SERIAL)],
	    a->in[fidx(SOTP_F_OTP)], login, a->now, reason, msg, msgsz);
}

/* Reasons that count toward the lockout. */
static int
counts(int reason)
{
	return reason == SOTP_R_WRONG_CODE || reason == SOTP_R_REPLAYED ||
	    reason == SOTP_R_WRONG_CARD || reason == SOTP_R_WRONG_PASSWORD;
}

/*
 * The contract was read before the store's write lock was taken, so
 * another process may have locked or closed it since: parallel guesses
 * would each pass gate() and outrun the lockout. Look again under the
 * lock, before any secret is touched: SQLite's transaction holds the
 * file's write lock already, and on PostgreSQL the contract's row lock
 * (held to the end of the decision) makes parallel decisions on one
 * contract, on any server of a farm, take their turns.
 */
static int
gate_again(
    struct sotp_attempt *a, const struct sotp_contract_rec *c, int *reason)
{
	struct sotp_contract_rec *cur = NULL;
	int rc;

	*reason = SOTP_R_ACCEPTED;
	if ((cur = malloc(sizeof(*cur))) == NULL)
		return SOTP_ERR_NOMEM;
	if ((rc = sotp_store_contract_lock(a->ctx->st, c->id, cur)) !=
	    SOTP_OK) {
		rc = store_err(a->ctx, rc);
		goto out;
	}
	if (cur->closed)
		*reason = SOTP_R_CONTRACT_CLOSED;
	else if (cur->locked_until == -1 || cur->locked_until > (int64_t)a->now)
		*reason = SOTP_R_LOCKED;
out:
	sotp_free_secret(cur, sizeof(*cur));
	return rc;
}

static int
second_factor(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    const struct sotp_contract_rec *c, unsigned int req,
    struct sotp_decision *d)
{
	char serial[SOTP_ID_MAX] = "";
	char detail[64] = "";
	int rc = SOTP_OK, reason = SOTP_R_ACCEPTED, unbound = 0;

	if ((rc = write_begin(a)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if ((rc = gate_again(a, c, &reason)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if (reason != SOTP_R_ACCEPTED) {
		d->locked = reason == SOTP_R_LOCKED;
		return finish(a, cdef, d, SOTP_REJECT, reason, NULL, NULL);
	}
	if (cdef->action == SOTP_ACT_REGISTER)
		rc = do_register(
		    a, c, req, &reason, serial, d->message, sizeof(d->message));
	else if (req & SOTP_F_OTP)
		rc = check_otp(
		    a, c, &reason, serial, d->message, sizeof(d->message));
	else if (req & SOTP_F_CARD)
		rc = check_card(a, c, &reason);
	if (rc != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if (reason != SOTP_R_ACCEPTED) {
		if (counts(reason))
			return wrong(a, cdef, d, reason, serial);
		return finish(a, cdef, d, SOTP_REJECT, reason, serial, NULL);
	}
	if (cdef->action == SOTP_ACT_UNREGISTER) {
		/* Only the token whose code was just checked. */
		if ((rc = sotp_store_unbind(
		         a->ctx->st, c->id, c->serial, &unbound)) != SOTP_OK)
			return fail_error(a, cdef, d, store_err(a->ctx, rc));
		if (!unbound)
			return finish(a, cdef, d, SOTP_REJECT, SOTP_R_NOT_BOUND,
			    serial, NULL);
		snprintf(detail, sizeof(detail), "unbound");
	} else if (!(req & SOTP_F_OTP) && c->failures > 0 &&
	    (rc = sotp_store_reset_failures(a->ctx->st, c->id)) != SOTP_OK)
		return fail_error(a, cdef, d, store_err(a->ctx, rc));
	if (cdef->action == SOTP_ACT_REGISTER)
		snprintf(detail, sizeof(detail), "bound");
	return finish(a, cdef, d, SOTP_ACCEPT, SOTP_R_ACCEPTED, serial, detail);
}

/* ---- one step ---- */

static int
ask(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, unsigned int missing, unsigned int remaining)
{
	const struct sotp_policy *p = &a->ctx->pol;
	int rc;

	/* Asking for the very first input is not a challenge round. */
	if ((a->supplied != 0 || a->done != 0 || a->combined != NULL) &&
	    ++a->rounds > p->max_rounds)
		return finish(a, cdef, d, SOTP_REJECT, SOTP_R_TOO_MANY_ROUNDS,
		    NULL, NULL);
	if ((missing & SOTP_F_CARD) && a->ncells == 0) {
		if ((rc = sotp_card_pick(p->card_rows, p->card_cols,
		         p->card_cells, a->cells)) != SOTP_OK)
			return fail_error(a, cdef, d, rc);
		a->ncells = p->card_cells;
	}
	if (missing & SOTP_F_CARD)
		sotp_card_cells_text(a->cells, a->ncells, p->card_cols,
		    d->card_cells, sizeof(d->card_cells));
	d->needs = missing;
	a->needs = remaining;
	return finish(a, cdef, d, SOTP_CONTINUE, SOTP_R_CONTINUE, NULL, NULL);
}

/* Refusals that need no secret: contract state and lock. */
static int
gate(struct sotp_attempt *a, struct sotp_contract_rec *c, int *reason)
{
	int rc, fresh = 0;
	int64_t expires;

	*reason = SOTP_R_ACCEPTED;
	if (c->closed) {
		*reason = SOTP_R_CONTRACT_CLOSED;
		return SOTP_OK;
	}
	if (c->locked_until == -1 || c->locked_until > (int64_t)a->now) {
		*reason = SOTP_R_LOCKED;
		return SOTP_OK;
	}
	if (c->locked_until != 0) { /* a timed lock has run out */
		/* Only the lock we saw: a newer one set meanwhile stands,
		 * and the check under the write lock will see it. */
		rc = sotp_store_contract_unlock_expired(
		    a->ctx->st, c->id, c->locked_until);
		if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
			return store_err(a->ctx, rc);
		c->failures = 0;
		c->locked_until = 0;
	}
	if (a->resumed) { /* each challenge state is good once */
		expires = (int64_t)a->now + a->ctx->pol.state_lifetime;
		if ((rc = sotp_store_state_use(a->ctx->st, a->state_id, expires,
		         (int64_t)a->now, &fresh)) != SOTP_OK)
			return store_err(a->ctx, rc);
		a->resumed = 0;
		if (!fresh)
			*reason = SOTP_R_STATE_REPLAYED;
	}
	return SOTP_OK;
}

static int
step_contract(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_contract_rec *c, struct sotp_decision *d)
{
	unsigned int req, remaining, missing;
	int rc, reason, ok = 0;

	if ((rc = gate(a, c, &reason)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if (reason != SOTP_R_ACCEPTED) {
		d->locked = reason == SOTP_R_LOCKED;
		return finish(a, cdef, d, SOTP_REJECT, reason, NULL, NULL);
	}
	req = plan(cdef, c);
	if ((rc = split_combined(a, req, c)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if ((req & SOTP_F_PASSWORD) && !(a->done & SOTP_F_PASSWORD)) {
		if (!(a->supplied & SOTP_F_PASSWORD))
			return ask(a, cdef, d, SOTP_F_PASSWORD, req & ~a->done);
		if ((rc = sotp_passwd_check(a->in[fidx(SOTP_F_PASSWORD)],
		         c->pwhash, &ok)) != SOTP_OK)
			return fail_error(a, cdef, d, rc);
		if (!ok)
			return wrong(a, cdef, d, SOTP_R_WRONG_PASSWORD, NULL);
		a->done |= SOTP_F_PASSWORD;
	}
	if ((reason = precondition(cdef, c, req)) != SOTP_R_ACCEPTED)
		return finish(a, cdef, d, SOTP_REJECT, reason, NULL, NULL);
	/* A card answer is only good for cells this attempt has shown. */
	if (a->ncells == 0)
		a->supplied &= ~(unsigned int)SOTP_F_CARD;
	remaining = req & ~a->done;
	missing = remaining & ~a->supplied;
	if (missing != 0)
		return ask(a, cdef, d, missing, remaining);
	return second_factor(a, cdef, c, req, d);
}

static int
step(struct sotp_attempt *a, struct sotp_decision *d)
{
	const struct sotp_context_def *cdef;
	struct sotp_contract_rec *c = NULL;
	int rc;

	memset(d, 0, sizeof(*d));
	d->verdict = SOTP_REJECT;
	if ((rc = sotp_ctx_ready(a->ctx)) != SOTP_OK) {
		/* Nothing to audit into: the store could not be reopened. */
		d->reason = (enum sotp_reason)sotp_reason_from_rc(rc);
		sotp_strlcpy(
		    d->message, customer_msg(d->reason), sizeof(d->message));
		sotp_log(a->ctx, LOG_ERR, "contract %s: %s: %s",
		    a->contract_ok ? a->contract : "-", sotp_strerror(rc),
		    sotp_ctx_errmsg(a->ctx));
		count(a, sotp_policy_context(&a->ctx->pol, a->context), d);
		a->final = 1;
		return rc;
	}
	if (a->final) {
		d->reason = SOTP_R_INTERNAL;
		return SOTP_ERR_INVALID_ARG;
	}
	cdef = sotp_policy_context(&a->ctx->pol, a->context);
	/* A resumed state asked for something: say it again, change nothing. */
	if (a->resumed && a->state_reason == 0 && a->supplied == 0 &&
	    a->combined == NULL && cdef != NULL) {
		d->verdict = SOTP_CONTINUE;
		d->reason = SOTP_R_CONTINUE;
		d->needs = a->needs;
		if (a->needs & SOTP_F_CARD)
			sotp_card_cells_text(a->cells, a->ncells,
			    a->ctx->pol.card_cols, d->card_cells,
			    sizeof(d->card_cells));
		return SOTP_OK;
	}
	if (a->state_reason != 0)
		return finish(
		    a, cdef, d, SOTP_REJECT, a->state_reason, NULL, NULL);
	if (cdef == NULL)
		return finish(a, cdef, d, SOTP_REJECT, SOTP_R_UNKNOWN_CONTEXT,
		    NULL, NULL);
	if (!a->contract_ok)
		return finish(a, cdef, d, SOTP_REJECT, SOTP_R_UNKNOWN_CONTRACT,
		    NULL, NULL);
	if ((c = malloc(sizeof(*c))) == NULL)
		return fail_error(a, cdef, d, SOTP_ERR_NOMEM);
	rc = sotp_store_contract_get(a->ctx->st, a->contract, c);
	if (rc == SOTP_ERR_NOT_FOUND)
		rc = finish(a, cdef, d, SOTP_REJECT, SOTP_R_UNKNOWN_CONTRACT,
		    NULL, NULL);
	else if (rc != SOTP_OK)
		rc = fail_error(a, cdef, d, store_err(a->ctx, rc));
	else
		rc = step_contract(a, cdef, c, d);
	sotp_free_secret(c, sizeof(*c));
	return rc;
}

/* The time spent here counts toward the decision (see count). */
int
sotp_attempt_step(struct sotp_attempt *a, struct sotp_decision *d)
{
	int rc;

	if (a == NULL || d == NULL)
		return SOTP_ERR_INVALID_ARG;
	a->t_start = sotp_monotonic_us();
	rc = step(a, d);
	a->t_busy += sotp_monotonic_us() - a->t_start;
	return rc;
}

/* ---- exported state: what RADIUS carries between two requests ---- */

static int
state_mac(const struct sotp_attempt *a, const uint8_t *body, uint8_t *mac)
{
	uint8_t buf[STATE_BODY + SOTP_ID_MAX + SOTP_NAME_MAX];
	uint8_t full[32];
	size_t n = STATE_BODY, cl = strlen(a->contract),
	       xl = strlen(a->context);
	int rc;

	/* Bound to contract and context: a state is useless elsewhere. */
	memcpy(buf, body, STATE_BODY);
	memcpy(buf + n, a->contract, cl + 1);
	n += cl + 1;
	memcpy(buf + n, a->context, xl);
	n += xl;
	/*
	 * No MAC on failure: a zeroed one would match a forged state whose
	 * MAC field is zero, so the callers refuse instead.
	 */
	if ((rc = sotp_hmac_sha256(a->ctx->state_key, buf, n, full)) == SOTP_OK)
		memcpy(mac, full, STATE_MAC_LEN);
	SOTP_WIPE_ARRAY(full);
	return rc;
}

static void
put64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

int
sotp_attempt_export(struct sotp_attempt *a, char *buf, size_t bufsz)
{
	uint8_t raw[STATE_LEN], *p = raw;
	static const char hex[] = "0123456789abcdef";
	int64_t expires;
	size_t i;
	int rc;

	if (a == NULL || buf == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (bufsz < 2 * STATE_LEN + 1)
		return SOTP_ERR_BUFFER;
	if ((rc = sotp_ctx_ready(a->ctx)) != SOTP_OK)
		return rc;
	/*
	 * A resumed state not yet used is handed on as it is: same id, same
	 * expiry. Re-exporting must not make a second use or a longer life.
	 */
	expires = (int64_t)a->now + a->ctx->pol.state_lifetime;
	if (a->resumed)
		expires = a->state_expires;
	else if ((rc = sotp_random(a->state_id, STATE_ID_LEN)) != SOTP_OK)
		return rc;
	*p++ = STATE_VERSION;
	memcpy(p, a->state_id, STATE_ID_LEN);
	p += STATE_ID_LEN;
	put64(p, (uint64_t)expires);
	p += 8;
	*p++ = (uint8_t)a->rounds;
	*p++ = (uint8_t)a->done;
	*p++ = (uint8_t)a->needs;
	*p++ = (uint8_t)a->ncells;
	memcpy(p, a->cells, SOTP_MAX_CELLS);
	if ((rc = state_mac(a, raw, raw + STATE_BODY)) != SOTP_OK)
		return rc;
	for (i = 0; i < STATE_LEN; i++) {
		buf[2 * i] = hex[raw[i] >> 4];
		buf[2 * i + 1] = hex[raw[i] & 15];
	}
	buf[2 * STATE_LEN] = '\0';
	return SOTP_OK;
}

static int
unhex(const char *s, uint8_t *out, size_t n)
{
	size_t i;
	int hi, lo;

	if (strlen(s) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
		lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* Validates a state; returns 0 or the reason to reject with. */
static int
load_state(struct sotp_attempt *a, const char *state)
{
	uint8_t raw[STATE_LEN], mac[STATE_MAC_LEN];
	const uint8_t *p = raw + 1 + STATE_ID_LEN;
	unsigned int i;

	if (unhex(state, raw, STATE_LEN) != 0 || raw[0] != STATE_VERSION)
		return SOTP_R_STATE_INVALID;
	if (state_mac(a, raw, mac) != SOTP_OK ||
	    CRYPTO_memcmp(mac, raw + STATE_BODY, STATE_MAC_LEN) != 0)
		return SOTP_R_STATE_INVALID;
	a->state_expires = (int64_t)get64(p);
	if (a->state_expires <= (int64_t)a->now)
		return SOTP_R_STATE_EXPIRED;
	p += 8;
	a->rounds = p[0];
	a->done = p[1];
	a->needs = p[2];
	a->ncells = p[3];
	if (a->ncells > SOTP_MAX_CELLS)
		return SOTP_R_STATE_INVALID;
	memcpy(a->cells, p + 4, SOTP_MAX_CELLS);
	for (i = 0; i < a->ncells; i++)
		if (a->cells[i] >=
		    a->ctx->pol.card_rows * a->ctx->pol.card_cols)
			return SOTP_R_STATE_INVALID;
	memcpy(a->state_id, raw + 1, STATE_ID_LEN);
	a->resumed = 1;
	return 0;
}

int
sotp_attempt_resume(struct sotp_ctx *ctx, const char *contract_id,
    const char *context, const char *state, time_t now,
    struct sotp_attempt **out)
{
	struct sotp_attempt *a = NULL;
	int rc;

	if (state == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_attempt_begin(ctx, contract_id, context, now, &a)) !=
	    SOTP_OK)
		return rc;
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK) {
		sotp_attempt_free(a);
		return rc;
	}
	a->state_reason = load_state(a, state);
	if (a->state_reason != 0) {
		a->rounds = 0;
		a->done = 0;
		a->needs = 0;
		a->ncells = 0;
		a->resumed = 0;
	}
	*out = a;
	return SOTP_OK;
}

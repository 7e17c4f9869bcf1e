/*
 * engine.c - the decision engine: one attempt for a contract in a context.
 *
 * The engine owns the conversation, as OpenSSH's keyboard-interactive
 * devices do: it decides the next question (one input per question, in
 * the bank guide's order), words it in the policy's language and says
 * whether the answer may show as it is typed; PAM, RADIUS and the CLI
 * relay. Each answer is verified as it arrives, so a RADIUS State only
 * has to carry what was verified so far. Order matters and is fixed here
 * for every front end:
 *   1. unknown context, unknown or closed contract, lock: refused before
 *      any secret (password hash, token secret, card) is touched;
 *   2. the password, when the context checks it, before anything that
 *      would tell a stranger whether the contract has a token;
 *   3. then serial, current code, login choice and card digits, as the
 *      context needs them. A code is accepted only through the store's
 *      compare-and-set of the token's last step, so it is good once; a
 *      registration binds in one compare-and-set at its end, which also
 *      finds the token and the contract still free.
 * Every wrong password, code or card counts toward the same lockout, and
 * a wrong input at any round ends the attempt. Input that is malformed
 * even after normalization (input.c) is refused before any comparison
 * and does not count: it cannot be a guess.
 */
#include "engine_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/*
 * The bank guide's order: contract ID and password, the token's serial,
 * its current code, the login choice, then the card digits. Logins,
 * transactions and unregistration ask fewer, in the same order.
 */
static const unsigned int guide_order[] = {SOTP_F_PASSWORD, SOTP_F_SERIAL,
    SOTP_F_OTP, SOTP_F_LOGIN_CHOICE, SOTP_F_CARD};
#define NORDER (sizeof(guide_order) / sizeof(guide_order[0]))

int
sotp_engine_fidx(unsigned int factor)
{
	if (factor == 0 || (factor & (factor - 1)) != 0 ||
	    factor >= (1u << SOTP_NFACTORS))
		return -1;
	return __builtin_ctz(factor);
}

int
sotp_engine_echo(unsigned int factor)
{
	/* Neither is secret, and a customer checks what they typed. */
	return factor == SOTP_F_SERIAL || factor == SOTP_F_LOGIN_CHOICE;
}

int
sotp_engine_prompt_key(unsigned int factor)
{
	switch (factor) {
	case SOTP_F_PASSWORD:
		return SOTP_M_PROMPT_PASSWORD;
	case SOTP_F_OTP:
		return SOTP_M_PROMPT_OTP;
	case SOTP_F_CARD:
		return SOTP_M_PROMPT_CARD;
	case SOTP_F_SERIAL:
		return SOTP_M_PROMPT_SERIAL;
	default:
		return SOTP_M_PROMPT_LOGIN_CHOICE;
	}
}

/* The first factor of `set` in the guide's order, or 0. */
static unsigned int
first_of(unsigned int set)
{
	size_t i;

	for (i = 0; i < NORDER; i++)
		if (set & guide_order[i])
			return guide_order[i];
	return 0;
}

static const char *
input(const struct sotp_attempt *a, unsigned int factor)
{
	return a->in[sotp_engine_fidx(factor)];
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
	a->step = -1;
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

/*
 * The audit row's detail for a service the [services] map does not name.
 * The name comes from outside the policy (a NAS sends any
 * NAS-Identifier, a PAM service is any file name): a blank, '"', '\' and
 * every byte outside printable ASCII are written as \xHH and a long name
 * is cut after 64 characters with "...", so that the row and its syslog
 * line (detail="...") stay one line that reads back as it was written.
 */
static void
name_unmapped(char *out, size_t outsz, const char *service)
{
	char name[SOTP_LOG_NAME_MAX];

	if (service == NULL || service[0] == '\0') {
		snprintf(
		    out, outsz, "no service name to map through [services]");
		return;
	}
	snprintf(out, outsz, "service=%s has no context in [services]",
	    sotp_log_name(name, service));
}

int
sotp_attempt_begin_service(struct sotp_ctx *ctx, const char *contract_id,
    const char *service, time_t now, struct sotp_attempt **out)
{
	const char *context = NULL;
	int rc;

	if ((rc = sotp_attempt_begin(ctx, contract_id, "", now, out)) !=
	    SOTP_OK)
		return rc;
	if (service != NULL && service[0] != '\0' &&
	    sotp_policy_context_for(ctx, service, &context) == SOTP_OK)
		sotp_strlcpy((*out)->context, context, sizeof((*out)->context));
	else
		name_unmapped(
		    (*out)->unmapped, sizeof((*out)->unmapped), service);
	return SOTP_OK;
}

const char *
sotp_attempt_context(const struct sotp_attempt *a)
{
	return a != NULL ? a->context : "";
}

_Static_assert(SOTP_INPUT_MAX == 1024, "the refusal's detail says 1024");

/*
 * A copy of value in *slot, the old one wiped. A value over
 * SOTP_INPUT_MAX bytes is not kept but remembered: sotp_attempt_step
 * refuses it as a decision (audited, the customer told), as the header
 * promises of every refusal. An API error here would end the attempt
 * with no row, no message, and no reason in the log. factor: the input
 * it is (a SOTP_F_* value), or 0 when that is not known yet.
 */
static int
keep(
    struct sotp_attempt *a, char **slot, const char *value, unsigned int factor)
{
	char *copy;

	if (strlen(value) > SOTP_INPUT_MAX) {
		if (a->malformed[0] == '\0') {
			sotp_strlcpy(a->malformed, "input over 1024 bytes",
			    sizeof(a->malformed));
			a->malformed_factor = factor;
		}
		sotp_free_string(*slot);
		*slot = NULL;
		return SOTP_OK;
	}
	if ((copy = sotp_strdup(value)) == NULL)
		return SOTP_ERR_NOMEM;
	sotp_free_string(*slot);
	*slot = copy;
	return SOTP_OK;
}

int
sotp_attempt_set(
    struct sotp_attempt *a, enum sotp_factor factor, const char *value)
{
	int i, rc;

	if (a == NULL || value == NULL || (i = sotp_engine_fidx(factor)) < 0)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = keep(a, &a->in[i], value, factor)) != SOTP_OK)
		return rc;
	if (a->in[i] != NULL)
		a->supplied |= factor;
	else
		a->supplied &= ~(unsigned int)factor;
	return SOTP_OK;
}

int
sotp_attempt_malformed(struct sotp_attempt *a, const char *what)
{
	if (a == NULL || what == NULL || what[0] == '\0')
		return SOTP_ERR_INVALID_ARG;
	if (a->malformed[0] == '\0')
		sotp_strlcpy(a->malformed, what, sizeof(a->malformed));
	return SOTP_OK;
}

int
sotp_attempt_answer(struct sotp_attempt *a, const char *value)
{
	if (a == NULL || value == NULL)
		return SOTP_ERR_INVALID_ARG;
	/* The question asked last; on a fresh attempt, not known yet. */
	return keep(a, &a->answer, value, a->asked);
}

int
sotp_attempt_set_combined(struct sotp_attempt *a, const char *value)
{
	if (a == NULL || value == NULL)
		return SOTP_ERR_INVALID_ARG;
	/* A password and a code: no one input to name. */
	return keep(a, &a->combined, value, 0);
}

static void write_abort(struct sotp_attempt *a, int rc);

void
sotp_attempt_free(struct sotp_attempt *a)
{
	size_t i;

	if (a == NULL)
		return;
	if (a->txn)
		write_abort(a, SOTP_ERR_INTERNAL);
	for (i = 0; i < SOTP_NFACTORS; i++)
		sotp_free_string(a->in[i]);
	sotp_free_string(a->answer);
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
	char err[SOTP_WRITER_ERR_MAX];
	struct sotp_store *st = NULL;
	struct sotp_audit_head *head = NULL;
	int rc;

	if (a->txn)
		return SOTP_OK;
	if (a->ctx->writer != NULL) {
		/*
		 * The process's writer (writer.c): until write_commit, every
		 * store call of this decision goes through its connection,
		 * inside the group's transaction.
		 */
		if ((rc = sotp_writer_enter(a->ctx->writer, &st, &head, err,
		         sizeof(err))) != SOTP_OK) {
			sotp_ctx_seterr(a->ctx, "%s", err);
			return rc;
		}
		a->own_st = a->ctx->st;
		a->ctx->st = st;
		a->own_batch = a->ctx->audit_batch;
		a->ctx->audit_batch = head;
		a->txn = 1;
		return SOTP_OK;
	}
	if ((rc = sotp_store_begin(a->ctx->st)) != SOTP_OK) {
		sotp_ctx_seterr(a->ctx, "%s", sotp_store_errmsg(a->ctx->st));
		return rc;
	}
	a->txn = 1;
	return SOTP_OK;
}

/*
 * The decision leaves the writer: its own store back, then its part of
 * the group kept (rc SOTP_OK: the answer waits for the group's commit) or
 * undone.
 */
static int
writer_end(struct sotp_attempt *a, int rc)
{
	char err[SOTP_WRITER_ERR_MAX];

	err[0] = '\0';
	a->ctx->st = a->own_st;
	a->own_st = NULL;
	a->ctx->audit_batch = a->own_batch;
	a->own_batch = NULL;
	if ((rc = sotp_writer_leave(a->ctx->writer, rc, err, sizeof(err))) !=
	        SOTP_OK &&
	    err[0] != '\0')
		sotp_ctx_seterr(a->ctx, "%s", err);
	/*
	 * The lines of rows this decision appended (a rehash's) waited for
	 * the group's COMMIT, which another thread may have run; they are
	 * logged here, by this decision's context, as it went.
	 */
	sotp_audit_txn_end(a->ctx, 0, rc == SOTP_OK, err);
	return rc;
}

/* Commits the decision's transaction, if one is open. */
static int
write_commit(struct sotp_attempt *a)
{
	int rc;

	if (!a->txn)
		return SOTP_OK;
	a->txn = 0;
	a->regated = 0;
	if (a->own_st != NULL)
		return writer_end(a, SOTP_OK);
	if ((rc = sotp_store_commit(a->ctx->st)) != SOTP_OK)
		sotp_ctx_seterr(a->ctx, "%s", sotp_store_errmsg(a->ctx->st));
	return rc;
}

/* Undoes the decision's open writes, if any; returns rc. */
static void
write_abort(struct sotp_attempt *a, int rc)
{
	if (!a->txn)
		return;
	a->txn = 0;
	a->regated = 0;
	if (a->own_st != NULL)
		(void)writer_end(a, rc);
	else
		sotp_store_rollback(a->ctx->st);
}

/* write_commit (rc SOTP_OK) or write_abort, as rc says; returns the end. */
static int
write_end(struct sotp_attempt *a, int rc)
{
	if (rc == SOTP_OK)
		return write_commit(a);
	write_abort(a, rc);
	return rc;
}

/*
 * A write outside any open transaction (the gate's, a refusal's audit
 * row): with a writer, it joins the writer's group as a short decision of
 * its own, so that it waits for no file lock (on SQLite the thread's own
 * connection would wait for the write lock the groups hold, and under
 * load time out); without one, nothing to do here.
 */
static int
join_writer(struct sotp_attempt *a)
{
	if (a->ctx->writer == NULL || a->txn)
		return SOTP_OK;
	return write_begin(a);
}

/*
 * A refusal tells the customer its reason (a failure that locks says so).
 * An accept or a question keeps the notice already set, if any: the
 * legacy-token warning. TOKEN_SUNSET comes formatted with its date.
 */
static void
tell(const struct sotp_attempt *a, struct sotp_decision *d, int reason)
{
	if (d->verdict != SOTP_REJECT)
		return;
	if (reason == SOTP_R_TOKEN_SUNSET && d->message[0] != '\0' &&
	    !d->locked)
		return;
	sotp_msg_format(&a->ctx->pol, d->locked ? SOTP_R_LOCKED : reason, NULL,
	    d->message, sizeof(d->message));
}

/*
 * Counts a decision as the customer was told it, with the core time spent
 * on it: after finish_audited may have turned it into a refusal, and an
 * unknown contract under unknown_contract = hide as the wrong password it
 * read as. Only the audit row, in the store, says UNKNOWN_CONTRACT: a
 * counters file that monitoring scrapes must not tell names apart either.
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

/* The decision's audit row and its commit. */
static int
finish_audited(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, enum sotp_verdict v, int reason,
    const char *detail)
{
	const char *serial = a->serial[0] != '\0' ? a->serial : NULL;
	struct sotp_audit_rec r;
	char as[96], why[SOTP_WRITER_ERR_MAX];
	int rc, crc = SOTP_OK;

	/*
	 * The customer read what a contract that exists would have read;
	 * the row says what happened. An unknown name is not recorded: it
	 * may be a password typed in the wrong field.
	 */
	if (a->phantom) {
		snprintf(as, sizeof(as), "as=%s", sotp_reason_name(reason));
		reason = SOTP_R_UNKNOWN_CONTRACT;
		detail = as;
	}
	memset(&r, 0, sizeof(r));
	r.ts = (int64_t)a->now;
	r.action = action_name(cdef);
	r.contract =
	    a->known && reason != SOTP_R_UNKNOWN_CONTRACT ? a->contract : "";
	r.serial = serial != NULL ? serial : "";
	r.context = a->context;
	r.verdict = v == SOTP_ACCEPT
	    ? "accept"
	    : (v == SOTP_CONTINUE ? "continue" : "reject");
	r.reason = reason;
	r.detail = detail != NULL ? detail : "";
	/*
	 * Appended to the audit chain inside the decision's transaction (or,
	 * for a refusal that wrote nothing before, one of its own: through
	 * the writer when there is one) and committed with it; the log line
	 * follows the commit, so that it
	 * tells what the customer was told. A store that made this request
	 * wait once is not waited for again: the line is the only record.
	 * Why a row is missing is read from the store that failed, before
	 * the decision leaves the writer's (whose text is not this ctx's).
	 * A refusal's row is appended apart: refused by the database, it
	 * takes nothing else with it (on PostgreSQL, through the writer),
	 * and the failure count is committed as on SQLite.
	 */
	why[0] = '\0';
	if (a->store_down) {
		(void)write_commit(a);
		rc = SOTP_ERR_STORE_UNAVAILABLE;
		sotp_strlcpy(why,
		    "the store was unavailable (the line above is the record)",
		    sizeof(why));
	} else if ((rc = join_writer(a)) != SOTP_OK) {
		sotp_strlcpy(why, sotp_ctx_errmsg(a->ctx), sizeof(why));
	} else if ((rc = v == SOTP_REJECT
	                   ? sotp_audit_append_apart(a->ctx, &r)
	                   : sotp_audit_append(a->ctx, &r)) != SOTP_OK) {
		sotp_strlcpy(why, sotp_store_errmsg(a->ctx->st), sizeof(why));
		/* An accept that left no row did not happen: undo it all. */
		if (v != SOTP_REJECT)
			write_abort(a, rc);
		else /* a refusal's failure count stands, row or not */
			crc = write_commit(a);
	} else {
		crc = write_commit(a);
	}
	/* write_commit put the commit's own text in the ctx. */
	if (crc != SOTP_OK) {
		rc = crc;
		if (why[0] == '\0')
			sotp_strlcpy(why, sotp_ctx_errmsg(a->ctx), sizeof(why));
	}
	if (rc == SOTP_OK) {
		sotp_audit_line(a->ctx, &r);
		return SOTP_OK;
	}
	/*
	 * An accept that cannot be audited, or whose replay mark cannot be
	 * committed, is not an accept: the bank's auditors must see every
	 * way in, and a code must stay single use. A refusal's failure
	 * count stands without its row, but not without its commit: a
	 * guess that was not counted is a store failure, told as one.
	 * Else, while the store cannot commit, guesses would never lock,
	 * and a wrong one (WRONG_PASSWORD) would read unlike a right one
	 * (STORE_UNAVAILABLE, its accept or next question undone).
	 */
	if (v != SOTP_REJECT || crc != SOTP_OK) {
		if (v != SOTP_REJECT)
			snprintf(as, sizeof(as), "not %s: %s",
			    v == SOTP_ACCEPT ? "accepted" : "continued",
			    sotp_rc_name(rc));
		else
			snprintf(as, sizeof(as), "%s not committed: %s",
			    sotp_reason_name(reason), sotp_rc_name(rc));
		d->verdict = SOTP_REJECT;
		d->reason = SOTP_R_STORE_UNAVAILABLE;
		d->locked = 0;
		d->ask = 0;
		d->malformed = 0;
		d->message[0] = '\0';
		tell(a, d, d->reason);
		a->final = 1;
		r.verdict = "reject";
		r.reason = SOTP_R_STORE_UNAVAILABLE;
		r.detail = as;
	}
	sotp_audit_line(a->ctx, &r);
	sotp_log(a->ctx, LOG_ERR, "audit row not written: %s", why);
	if (v == SOTP_REJECT && crc == SOTP_OK)
		return SOTP_OK;
	sotp_ctx_seterr(a->ctx, "%s", why);
	return rc;
}

static int
finish(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, enum sotp_verdict v, int reason,
    const char *detail)
{
	int rc;

	/* Nothing lets a contract that does not exist in. */
	if (a->phantom && v == SOTP_ACCEPT) {
		v = SOTP_REJECT;
		reason = SOTP_R_UNKNOWN_CONTRACT;
	}
	d->verdict = v;
	d->reason = (enum sotp_reason)reason;
	if (reason != SOTP_R_BAD_INPUT)
		d->malformed = 0;
	tell(a, d, reason);
	if (v != SOTP_CONTINUE)
		a->final = 1;
	/* Asking for the first input is not worth a row; a challenge is. */
	if (v == SOTP_CONTINUE && a->done == 0)
		return write_commit(a);
	rc = finish_audited(a, cdef, d, v, reason, detail);
	count(a, cdef, d);
	return rc;
}

/* The check itself failed: refuse, log the detail, return the error. */
static int
fail_error(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, int rc)
{
	int reason = sotp_reason_from_rc(rc);
	char cause[SOTP_CTX_ERR_MAX];

	/*
	 * One bounded wait per request (the policy's lock_timeout): a store
	 * that timed out is not asked again for the refusal's audit row,
	 * which goes to the log alone.
	 */
	if (rc == SOTP_ERR_STORE_UNAVAILABLE)
		a->store_down = 1;
	sotp_log(a->ctx, LOG_ERR, "contract %s: %s: %s",
	    a->known ? a->contract : "-", sotp_strerror(rc),
	    sotp_ctx_errmsg(a->ctx));
	memset(d, 0, sizeof(*d));
	/*
	 * A decision that failed half-way leaves nothing of itself: its
	 * open writes are undone, and the refusal's row goes in a
	 * transaction of its own. Else the two stores would part: SQLite
	 * would commit the half and the row, PostgreSQL (whose failed
	 * statement aborted the transaction) lose the row along with the
	 * half, the log line its only record.
	 */
	write_abort(a, rc);
	/* The refusal's row and commit fail after it: the cause stays first. */
	sotp_strlcpy(cause, sotp_ctx_errmsg(a->ctx), sizeof(cause));
	sotp_ctx_keep_cause(a->ctx, cause,
	    finish(a, cdef, d, SOTP_REJECT, reason, sotp_rc_name(rc)) !=
	        SOTP_OK,
	    "the refusal's audit row was not written");
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
    struct sotp_decision *d, int reason)
{
	const struct sotp_policy *p = &a->ctx->pol;
	unsigned int failures = 0;
	int64_t lock, locked_until = 0;
	char detail[64];
	int rc;

	lock = p->lock_duration == 0 ? -1 : (int64_t)a->now + p->lock_duration;
	if ((rc = write_begin(a)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	/* A phantom's count changes no row, at the cost of a real one. */
	if (a->phantom && !a->contract_ok)
		rc = SOTP_OK;
	else if ((rc = sotp_store_fail(a->ctx->st, a->contract,
	              p->lock_threshold, lock, &failures, &locked_until)) ==
	        SOTP_ERR_NOT_FOUND &&
	    a->phantom)
		rc = SOTP_OK;
	if (rc != SOTP_OK)
		return fail_error(a, cdef, d, store_err(a->ctx, rc));
	d->locked = locked_until != 0;
	snprintf(detail, sizeof(detail), "failures=%u%s%s", failures,
	    d->locked ? " locked" : "",
	    a->cells_spent ? " cells=answered" : "");
	return finish(a, cdef, d, SOTP_REJECT, reason, detail);
}

/* Reasons that count toward the lockout. */
static int
counts(int reason)
{
	return reason == SOTP_R_WRONG_CODE || reason == SOTP_R_REPLAYED ||
	    reason == SOTP_R_WRONG_CARD || reason == SOTP_R_WRONG_PASSWORD;
}

/*
 * A refusal of one input (factor, or 0 when none is to blame): counted
 * toward the lockout or not. A malformed one is named in the row, so
 * that an operator reading "BAD_INPUT" after a registration's five
 * answers knows which one.
 */
static int
refuse(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, int reason, unsigned int factor)
{
	char detail[32];

	if (counts(reason))
		return wrong(a, cdef, d, reason);
	if (reason != SOTP_R_BAD_INPUT || factor == 0)
		return finish(a, cdef, d, SOTP_REJECT, reason, NULL);
	snprintf(
	    detail, sizeof(detail), "malformed=%s", sotp_factor_name(factor));
	d->malformed = factor;
	return finish(a, cdef, d, SOTP_REJECT, reason, detail);
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
 * the days before it; both texts go to msg. Returns a refusal reason or
 * SOTP_R_ACCEPTED.
 */
static int
kind_check(const struct sotp_policy *p, const struct sotp_token_rec *t,
    time_t now, char *msg, size_t msgsz)
{
	const struct sotp_kind *k = sotp_policy_kind(p, t->kind);
	struct sotp_msg_vars v;

	if (k == NULL || k->sunset_end == 0)
		return SOTP_R_ACCEPTED;
	memset(&v, 0, sizeof(v));
	v.date = k->sunset;
	v.kind = k->name;
	if ((int64_t)now >= k->sunset_end) {
		sotp_msg_format(p, SOTP_R_TOKEN_SUNSET, &v, msg, msgsz);
		return SOTP_R_TOKEN_SUNSET;
	}
	if ((int64_t)now >= k->sunset_end - (int64_t)k->warn_days * 86400)
		sotp_msg_format(p, SOTP_M_SUNSET_SOON, &v, msg, msgsz);
	return SOTP_R_ACCEPTED;
}

/*
 * A code as typed, normalized, into out[SOTP_CODE_MAX]: 0, or -1 when it
 * is malformed (anything but digits, blanks and dashes; not `digits`
 * digits long).
 */
static int
norm_code(const char *typed, unsigned int digits, char *out)
{
	if (typed == NULL ||
	    sotp_input_digits(typed, out, SOTP_CODE_MAX) != SOTP_OK)
		return -1;
	if (strlen(out) != digits) {
		sotp_wipe(out, SOTP_CODE_MAX);
		return -1;
	}
	return 0;
}

/*
 * Checks a code against token t; on a match the store's compare-and-set
 * consumes the step (unless `bind`: the bind does it). *reason: ACCEPTED,
 * WRONG_CODE, REPLAYED, TOKEN_DISABLED (disabled before the set), or
 * BAD_INPUT for a malformed code.
 */
static int
use_code(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const char *contract, const char *typed, time_t now, int bind, int *reason,
    int64_t *step, int *drift)
{
	char code[SOTP_CODE_MAX];
	int rc, match = 0, won = 0, disabled = 0;

	*reason = SOTP_R_BAD_INPUT;
	if (norm_code(typed, t->digits, code) != 0)
		return SOTP_OK;
	*reason = SOTP_R_WRONG_CODE;
	rc = sotp_token_match(ctx, t, code, now, &match, step, drift);
	SOTP_WIPE_ARRAY(code);
	if (rc != SOTP_OK || !match)
		return rc;
	if (*step <= t->last_step) {
		*reason = SOTP_R_REPLAYED;
		return SOTP_OK;
	}
	if (bind) {
		*reason = SOTP_R_ACCEPTED;
		return SOTP_OK;
	}
	/*
	 * t was read under the contract's row lock, but `token disable`
	 * takes none: the set's own guard sees a disable committed since
	 * (a lost phone's), and the step stays unused, as when t said so.
	 */
	if ((rc = sotp_store_use_step(ctx->st, t->serial, contract, *step,
	         *drift, &won, &disabled)) != SOTP_OK)
		return store_err(ctx, rc);
	*reason = won ? SOTP_R_ACCEPTED
	              : (disabled ? SOTP_R_TOKEN_DISABLED : SOTP_R_REPLAYED);
	return SOTP_OK;
}

/*
 * Loads a token for binding: it must exist, be free, enabled and not past
 * its kind's sunset (msg gets that text, or the warning before it).
 */
static int
bind_token_get(struct sotp_ctx *ctx, const char *serial,
    struct sotp_token_rec *t, time_t now, int *reason, char *msg, size_t msgsz)
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
		*reason = kind_check(&ctx->pol, t, now, msg, msgsz);
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
 * binds the second sees the first. A registration's last round binds
 * here inside its decision's transaction, after secure() has taken the
 * contract already: the same order. The token's binding lives in
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
	/* No such token is a refusal (UNKNOWN_SERIAL), not an error. */
	have_token = rc == SOTP_OK;
	rc = SOTP_OK;
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
 * The binding of the admin's "contract bind": the code must come from the
 * token now, and its step is spent by the binding's own write.
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
	if ((rc = bind_token_get(ctx, serial, &t, now, reason, msg, msgsz)) !=
	        SOTP_OK ||
	    *reason != SOTP_R_ACCEPTED)
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

/* ---- one input each: verified as it arrives ---- */

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
gate_again(struct sotp_attempt *a, const struct sotp_contract_rec *c,
    int *reason, struct sotp_token_rec *tok, int *have)
{
	struct sotp_contract_rec *cur = NULL;
	int rc;

	*reason = SOTP_R_ACCEPTED;
	if ((cur = malloc(sizeof(*cur))) == NULL)
		return SOTP_ERR_NOMEM;
	/*
	 * The code's check reads the contract's token next: the same
	 * statement brings it (one round trip on PostgreSQL, under the
	 * writer's lock), sealed; nothing is unsealed before the gate.
	 */
	rc = tok != NULL
	    ? sotp_store_contract_lock_token(a->ctx->st, c->id, cur, tok, have)
	    : sotp_store_contract_lock(a->ctx->st, c->id, cur);
	if (rc != SOTP_OK) {
		rc = store_err(a->ctx, rc);
		goto out;
	}
	if (cur->closed)
		*reason = SOTP_R_CONTRACT_CLOSED;
	else if (cur->locked_until == -1 || cur->locked_until > (int64_t)a->now)
		*reason = SOTP_R_LOCKED;
	a->regated_failures = cur->failures;
	sotp_strlcpy(a->regated_serial, cur->serial, sizeof(a->regated_serial));
out:
	sotp_free_secret(cur, sizeof(*cur));
	return rc;
}

/*
 * Before a token secret or a card is touched: the write lock, the gate.
 * With tok, the contract's token comes with its re-read (*have 1), unless
 * this decision passed the gate before (*have 0).
 */
static int
secure(struct sotp_attempt *a, const struct sotp_contract_rec *c,
    struct sotp_decision *d, int *reason, struct sotp_token_rec *tok, int *have)
{
	int rc;

	*reason = SOTP_R_ACCEPTED;
	if (have != NULL)
		*have = 0;
	if (a->regated)
		return SOTP_OK;
	if ((rc = write_begin(a)) != SOTP_OK ||
	    (rc = gate_again(a, c, reason, tok, have)) != SOTP_OK)
		return rc;
	d->locked = *reason == SOTP_R_LOCKED;
	a->regated = *reason == SOTP_R_ACCEPTED;
	return SOTP_OK;
}

/*
 * [migration] rehash: a hash imported in an older method (or one that
 * libxcrypt calls legacy or too cheap) becomes yescrypt now that the
 * customer has typed the password. The new hash is computed before the
 * write lock is taken (yescrypt takes its time on purpose); the write is
 * guarded by the old hash, and lands with the decision and its own audit
 * row.
 */
static int
rehash(struct sotp_attempt *a, const struct sotp_contract_rec *c)
{
	char hash[SOTP_HASH_MAX], detail[48];
	int rc, won = 0;

	if ((rc = sotp_passwd_hash(
	         &a->ctx->pol, input(a, SOTP_F_PASSWORD), hash)) != SOTP_OK)
		goto out;
	if ((rc = write_begin(a)) != SOTP_OK)
		goto out;
	if ((rc = sotp_store_contract_rehash(
	         a->ctx->st, c->id, c->pwhash, hash, &won)) != SOTP_OK) {
		rc = store_err(a->ctx, rc);
		goto out;
	}
	/* The method, never the hash: "$6$", "$2b$", "$1$". */
	snprintf(detail, sizeof(detail), "from=%.*s to=%s",
	    c->pwhash[0] == '$' && strchr(c->pwhash + 1, '$') != NULL
	        ? (int)(strchr(c->pwhash + 1, '$') - c->pwhash + 1)
	        : 0,
	    c->pwhash, sotp_pw_methods[a->ctx->pol.pw_method].name);
	/* A State of this attempt is bound to the hash now stored. */
	if (won && (rc = sotp_attempt_pw_verified(a, hash)) == SOTP_OK)
		rc = sotp_audit(a->ctx, a->now, "contract.rehash", c->id, NULL,
		    a->context, "accept", SOTP_R_ACCEPTED, detail);
out:
	SOTP_WIPE_ARRAY(hash);
	return rc;
}

static int
check_password(
    struct sotp_attempt *a, const struct sotp_contract_rec *c, int *reason)
{
	int rc, ok = 0;

	rc = sotp_passwd_check(input(a, SOTP_F_PASSWORD), c->pwhash, &ok);
	/* A phantom's hash is borrowed; nothing matches it. */
	if (a->phantom)
		ok = 0;
	/*
	 * An imported hash of a legacy method (DES, md5crypt) is checked in
	 * microseconds, an unknown contract's (dummy_hash) in milliseconds:
	 * the time would tell a stranger which contracts exist. The dummy's
	 * check follows, its answer unused, until a rehash replaces it.
	 */
	if (rc == SOTP_OK && !a->phantom && a->ctx->dummy_hash[0] == '$' &&
	    sotp_passwd_cheap(c->pwhash)) {
		int unused = 0;

		rc = sotp_passwd_check(
		    input(a, SOTP_F_PASSWORD), a->ctx->dummy_hash, &unused);
	}
	*reason = ok ? SOTP_R_ACCEPTED : SOTP_R_WRONG_PASSWORD;
	if (rc == SOTP_OK && ok)
		rc = sotp_attempt_pw_verified(a, c->pwhash);
	if (rc == SOTP_OK && ok && a->ctx->pol.rehash &&
	    sotp_passwd_outdated(&a->ctx->pol, c->pwhash))
		rc = rehash(a, c);
	return rc;
}

/*
 * Finds the token a typed serial names. Full-width forms and blanks never
 * matter; the form as typed wins, then without dashes, then (for kinds
 * whose serials are not case-sensitive) upper-cased. Each form is looked
 * up once; the first that exists is the token.
 */
static int
find_serial(struct sotp_attempt *a, const char *typed, struct sotp_token_rec *t,
    int *reason)
{
	char form[4][SOTP_ID_MAX];
	const struct sotp_kind *k;
	int i, j, rc;

	*reason = SOTP_R_BAD_INPUT;
	if (sotp_input_serial(typed, 0, 0, form[0], SOTP_ID_MAX) != SOTP_OK)
		return SOTP_OK;
	*reason = SOTP_R_UNKNOWN_SERIAL;
	for (i = 0; i < 4; i++) {
		if (sotp_input_serial(
		        typed, i & 1, i >> 1, form[i], SOTP_ID_MAX) != SOTP_OK)
			continue;
		for (j = 0; j < i; j++)
			if (strcmp(form[i], form[j]) == 0)
				break;
		if (j < i)
			continue;
		rc = sotp_store_token_get(a->ctx->st, form[i], t);
		if (rc == SOTP_ERR_NOT_FOUND)
			continue;
		if (rc != SOTP_OK)
			return store_err(a->ctx, rc);
		k = sotp_policy_kind(&a->ctx->pol, t->kind);
		if (i >> 1 && k != NULL && k->serial_exact)
			continue;
		*reason = SOTP_R_ACCEPTED;
		return SOTP_OK;
	}
	return SOTP_OK;
}

/* Registration: the serial names a token that is free and usable. */
static int
check_serial(struct sotp_attempt *a, struct sotp_decision *d, int *reason)
{
	struct sotp_token_rec t;
	int rc;

	memset(&t, 0, sizeof(t));
	if ((rc = find_serial(a, input(a, SOTP_F_SERIAL), &t, reason)) !=
	        SOTP_OK ||
	    *reason != SOTP_R_ACCEPTED)
		goto out;
	if (t.contract[0] != '\0')
		*reason = SOTP_R_TOKEN_IN_USE;
	else if (t.disabled)
		*reason = SOTP_R_TOKEN_DISABLED;
	else
		*reason = kind_check(
		    &a->ctx->pol, &t, a->now, d->message, sizeof(d->message));
	if (*reason == SOTP_R_ACCEPTED)
		sotp_strlcpy(a->serial, t.serial, sizeof(a->serial));
out:
	sotp_wipe(&t, sizeof(t));
	return rc;
}

/*
 * The current code. A login, a transaction or an unregistration consumes
 * its step now (compare-and-set); a registration only records the step
 * and drift, and its bind at the end consumes them.
 */
static int
check_otp(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    const struct sotp_contract_rec *c, struct sotp_decision *d, int *reason)
{
	struct sotp_token_rec t;
	int reg = cdef->action == SOTP_ACT_REGISTER;
	int64_t step = -1;
	int rc, drift = 0, have = 0;

	memset(&t, 0, sizeof(t));
	rc = secure(a, c, d, reason, reg ? NULL : &t, reg ? NULL : &have);
	if (rc != SOTP_OK || *reason != SOTP_R_ACCEPTED) {
		sotp_wipe(&t, sizeof(t));
		return rc;
	}
	/*
	 * The binding as the look under the lock saw it: a token unbound
	 * (or replaced) since this decision read the contract is not the
	 * contract's any more, and its code is not taken. Else the token
	 * read with that look (have) is c's.
	 */
	if (!reg && strcmp(a->regated_serial, c->serial) != 0) {
		sotp_wipe(&t, sizeof(t));
		*reason = SOTP_R_NOT_BOUND;
		return SOTP_OK;
	}
	if (reg)
		rc = bind_token_get(a->ctx, a->serial, &t, a->now, reason,
		    d->message, sizeof(d->message));
	else if (!have &&
	    (rc = sotp_store_token_get(a->ctx->st, c->serial, &t)) != SOTP_OK)
		rc = store_err(a->ctx, rc);
	else if (t.disabled)
		*reason = SOTP_R_TOKEN_DISABLED;
	else
		*reason = kind_check(
		    &a->ctx->pol, &t, a->now, d->message, sizeof(d->message));
	if (!reg)
		sotp_strlcpy(a->serial, c->serial, sizeof(a->serial));
	/*
	 * The accept resets the contract's failure count in its
	 * compare-and-set, unless the look under this same write lock saw
	 * none: then that UPDATE would change nothing (a statement for
	 * nothing; SQLite does not even rewrite the unchanged row).
	 */
	if (rc == SOTP_OK && *reason == SOTP_R_ACCEPTED)
		rc = use_code(a->ctx, &t,
		    a->regated_failures != 0 ? c->id : NULL,
		    input(a, SOTP_F_OTP), a->now, reg, reason, &step, &drift);
	if (rc == SOTP_OK && *reason == SOTP_R_ACCEPTED && reg) {
		a->step = step;
		a->drift = drift;
	}
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
check_choice(
    struct sotp_attempt *a, const struct sotp_contract_rec *c, int *reason)
{
	enum sotp_login login;

	*reason = SOTP_R_BAD_INPUT;
	if (sotp_input_login(input(a, SOTP_F_LOGIN_CHOICE), &login) != SOTP_OK)
		return SOTP_OK;
	*reason = SOTP_R_NO_CARD;
	if (login == SOTP_LOGIN_CARD && c->card_len == 0)
		return SOTP_OK;
	a->login = login;
	*reason = SOTP_R_ACCEPTED;
	return SOTP_OK;
}

/*
 * A card answer is good once. The cells this attempt showed were drawn
 * from the card as it was then sealed (sotp_card_pick); a right answer
 * seals it afresh. Cells the card as read now would not draw were
 * answered since (in another attempt, on any server: a challenge lives
 * its State's lifetime), or the card was changed or resealed under a new
 * key: an answer to them is refused as wrong and counted.
 */
static int
cells_current(struct sotp_attempt *a, const struct sotp_contract_rec *c)
{
	const struct sotp_policy *p = &a->ctx->pol;
	uint8_t now[SOTP_MAX_CELLS];
	int rc;

	if ((rc = sotp_card_pick(a->ctx, c, p->card_rows, p->card_cols,
	         a->ncells, now)) != SOTP_OK)
		return rc;
	a->cells_spent = CRYPTO_memcmp(now, a->cells, a->ncells) != 0;
	return SOTP_OK;
}

/*
 * A right card answer seals the card afresh, in the decision's own
 * transaction, so that the next question names new cells (card.c says
 * why they stay the same until then): a compare-and-set on the card as
 * read, so that of two attempts answering the same cells at once, one
 * wins. The other's answer was spent meanwhile (a->cells_spent); a new
 * card or a reseal since c was read stands.
 *
 * Spent is seen only as "the card draws other cells now"
 * (cells_current), so a sealing that draws the answered cells again is
 * not kept: it would leave the same question open, and the attempt that
 * lost the compare-and-set, answering it after this commit, would be
 * accepted with the same answer (one reseal in 2,450 did so, for two
 * cells of a 5 x 10 card). Each try draws the same cells with a chance
 * of at most 1/2, since the policy refuses a card of one cell
 * (policy.c); after 64 tries the decision fails closed.
 */
#define RESEAL_TRIES 64

static int
reseal_card(struct sotp_attempt *a, const struct sotp_contract_rec *c,
    const char *grid, size_t len)
{
	const struct sotp_policy *p = &a->ctx->pol;
	uint8_t sealed[SOTP_CARD_MAX], next[SOTP_MAX_CELLS];
	uint32_t kv = 0;
	size_t n = 0;
	int rc, won = 0, tries = 0;

	do {
		if (++tries > RESEAL_TRIES) {
			sotp_ctx_seterr(a->ctx,
			    "contract %s: %d sealings of the card all asked %u cell(s) just answered",
			    c->id, RESEAL_TRIES, a->ncells);
			return SOTP_ERR_INTERNAL;
		}
		if ((rc = sotp_keys_seal(a->ctx, c->id, (const uint8_t *)grid,
		         len, sealed, sizeof(sealed), &n)) != SOTP_OK ||
		    (rc = sotp_sealed_kv(sealed, n, &kv)) != SOTP_OK ||
		    (rc = sotp_card_pick_sealed(a->ctx, c->id, kv, sealed, n,
		         p->card_rows, p->card_cols, a->ncells, next)) !=
		        SOTP_OK)
			return rc;
	} while (memcmp(next, a->cells, a->ncells) == 0);
	if ((rc = sotp_store_contract_reseal_card(a->ctx->st, c->id, c->card,
	         c->card_len, sealed, n, kv, &won)) != SOTP_OK)
		return store_err(a->ctx, rc);
	a->cells_spent = !won;
	return SOTP_OK;
}

static int
check_card(struct sotp_attempt *a, const struct sotp_contract_rec *c,
    struct sotp_decision *d, int *reason)
{
	char grid[SOTP_CARD_MAX], digits[SOTP_MAX_CELLS + 1];
	size_t len = 0;
	int rc, ok = 0;

	if ((rc = secure(a, c, d, reason, NULL, NULL)) != SOTP_OK ||
	    *reason != SOTP_R_ACCEPTED)
		return rc;
	*reason = SOTP_R_BAD_INPUT;
	if (sotp_input_digits(input(a, SOTP_F_CARD), digits, sizeof(digits)) !=
	        SOTP_OK ||
	    strlen(digits) != a->ncells)
		goto out;
	*reason = SOTP_R_WRONG_CARD;
	if ((rc = cells_current(a, c)) != SOTP_OK || a->cells_spent)
		goto out;
	if ((rc = sotp_keys_unseal(a->ctx, c->id, c->card, c->card_len,
	         (uint8_t *)grid, sizeof(grid) - 1, &len)) != SOTP_OK) {
		sotp_ctx_seterr(a->ctx,
		    "contract %s: card cannot be decrypted (wrong master key or tampered row)",
		    c->id);
		goto out;
	}
	grid[len] = '\0';
	if ((rc = sotp_card_check(grid, a->cells, a->ncells, digits, &ok)) !=
	    SOTP_OK)
		goto out;
	if (ok && (rc = reseal_card(a, c, grid, len)) == SOTP_OK &&
	    !a->cells_spent)
		*reason = SOTP_R_ACCEPTED;
out:
	SOTP_WIPE_ARRAY(grid);
	SOTP_WIPE_ARRAY(digits);
	return rc;
}

static int
verify(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    const struct sotp_contract_rec *c, unsigned int factor,
    struct sotp_decision *d, int *reason)
{
	switch (factor) {
	case SOTP_F_PASSWORD:
		return check_password(a, c, reason);
	case SOTP_F_SERIAL:
		return check_serial(a, d, reason);
	case SOTP_F_OTP:
		return check_otp(a, cdef, c, d, reason);
	case SOTP_F_LOGIN_CHOICE:
		return check_choice(a, c, reason);
	case SOTP_F_CARD:
		return check_card(a, c, d, reason);
	}
	return SOTP_ERR_INTERNAL;
}

/*
 * Everything asked was right: bind (one compare-and-set that consumes the
 * registration's code and finds token and contract still free), unbind,
 * or accept.
 */
static int
complete(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    const struct sotp_contract_rec *c, unsigned int req,
    struct sotp_decision *d)
{
	int rc, reason, unbound = 0;

	/* Only a context that checks nothing gets here with a phantom. */
	if (a->phantom)
		return finish(
		    a, cdef, d, SOTP_REJECT, SOTP_R_UNKNOWN_CONTRACT, NULL);
	/*
	 * Under the write lock, the lock looked at again: a context that
	 * checks the password alone has done it nowhere else, and a
	 * contract locked since it was read (parallel guesses, an admin)
	 * must not let in a password checked meanwhile.
	 */
	if ((rc = secure(a, c, d, &reason, NULL, NULL)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if (reason != SOTP_R_ACCEPTED)
		return finish(a, cdef, d, SOTP_REJECT, reason, NULL);
	switch (cdef->action) {
	case SOTP_ACT_REGISTER:
		if ((rc = bind_locked(a->ctx, c->id, a->serial, a->login,
		         a->step, a->drift, &reason)) != SOTP_OK)
			return fail_error(a, cdef, d, rc);
		if (reason != SOTP_R_ACCEPTED)
			return refuse(a, cdef, d, reason, 0);
		return finish(
		    a, cdef, d, SOTP_ACCEPT, SOTP_R_ACCEPTED, "bound");
	case SOTP_ACT_UNREGISTER:
		if ((rc = sotp_store_unbind(
		         a->ctx->st, c->id, c->serial, &unbound)) != SOTP_OK)
			return fail_error(a, cdef, d, store_err(a->ctx, rc));
		if (!unbound)
			return finish(
			    a, cdef, d, SOTP_REJECT, SOTP_R_NOT_BOUND, NULL);
		return finish(
		    a, cdef, d, SOTP_ACCEPT, SOTP_R_ACCEPTED, "unbound");
	case SOTP_ACT_AUTH:
		break;
	}
	/* An accepted code reset the failures in its compare-and-set. */
	if (!(req & SOTP_F_OTP) && c->failures > 0 &&
	    (rc = sotp_store_reset_failures(a->ctx->st, c->id)) != SOTP_OK)
		return fail_error(a, cdef, d, store_err(a->ctx, rc));
	return finish(a, cdef, d, SOTP_ACCEPT, SOTP_R_ACCEPTED, NULL);
}

/* ---- one step ---- */

/* Fills d with the question for factor (its prompt, echo, cells). */
static void
pose(const struct sotp_attempt *a, struct sotp_decision *d, unsigned int factor)
{
	const struct sotp_policy *p = &a->ctx->pol;
	struct sotp_msg_vars v;

	memset(&v, 0, sizeof(v));
	d->ask = factor;
	d->echo = sotp_engine_echo(factor);
	if (factor == SOTP_F_CARD) {
		v.cells = a->cells;
		v.ncells = a->ncells;
		v.cols = p->card_cols;
		sotp_card_cells_text(a->cells, a->ncells, p->card_cols,
		    d->card_cells, sizeof(d->card_cells));
	}
	sotp_msg_format(p, sotp_engine_prompt_key(factor), &v, d->prompt,
	    sizeof(d->prompt));
}

static int
ask(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    const struct sotp_contract_rec *c, struct sotp_decision *d,
    unsigned int factor)
{
	const struct sotp_policy *p = &a->ctx->pol;
	char detail[32];
	int rc;

	/* Asking for the very first input is not a challenge round. */
	if ((a->supplied != 0 || a->done != 0) && ++a->rounds > p->max_rounds)
		return finish(
		    a, cdef, d, SOTP_REJECT, SOTP_R_TOO_MANY_ROUNDS, NULL);
	if (factor == SOTP_F_CARD && a->ncells == 0) {
		if ((rc = sotp_card_pick(a->ctx, c, p->card_rows, p->card_cols,
		         p->card_cells, a->cells)) != SOTP_OK)
			return fail_error(a, cdef, d, rc);
		a->ncells = p->card_cells;
	}
	pose(a, d, factor);
	a->asked = factor;
	snprintf(detail, sizeof(detail), "asked=%s", sotp_factor_name(factor));
	return finish(a, cdef, d, SOTP_CONTINUE, SOTP_R_CONTINUE, detail);
}

/*
 * Sorts what came in into inputs: the append-mode value (password and
 * code split once, by the code's length) and the answer to the question
 * asked (on a fresh attempt, to its first one). A refusal of the split
 * goes to *reason.
 */
static int
take_inputs(struct sotp_attempt *a, unsigned int req,
    const struct sotp_contract_rec *c, int *reason)
{
	unsigned int pending = req & ~a->done, first = first_of(pending), f;
	unsigned int digits = a->ctx->pol.digits;
	struct sotp_token_rec t;
	size_t pwlen;
	int rc = SOTP_OK;

	*reason = SOTP_R_ACCEPTED;
	if (a->combined != NULL && first == SOTP_F_PASSWORD &&
	    first_of(pending & ~first) == SOTP_F_OTP) {
		/* A contract without a token is refused after its password. */
		if (c->serial[0] != '\0' &&
		    (rc = sotp_store_token_get(a->ctx->st, c->serial, &t)) ==
		        SOTP_OK) {
			digits = t.digits;
			sotp_wipe(&t, sizeof(t));
		}
		if (rc != SOTP_OK)
			return store_err(a->ctx, rc);
		if (sotp_input_split(a->combined, digits, &pwlen) != SOTP_OK)
			*reason = SOTP_R_AMBIGUOUS_INPUT;
		else if ((rc = sotp_attempt_set(
		              a, SOTP_F_OTP, a->combined + pwlen)) == SOTP_OK) {
			a->combined[pwlen] = '\0';
			rc = sotp_attempt_set(a, SOTP_F_PASSWORD, a->combined);
		}
	} else if (a->combined != NULL && a->answer == NULL) {
		a->answer = a->combined;
		a->combined = NULL;
	}
	sotp_free_string(a->combined);
	a->combined = NULL;
	if (rc == SOTP_OK && a->answer != NULL) {
		f = a->asked != 0 ? a->asked : first;
		/* A card answer is only good for cells this attempt showed. */
		if ((pending & f) != 0 && (f != SOTP_F_CARD || a->ncells > 0))
			rc =
			    sotp_attempt_set(a, (enum sotp_factor)f, a->answer);
	}
	sotp_free_string(a->answer);
	a->answer = NULL;
	if (a->ncells == 0)
		a->supplied &= ~(unsigned int)SOTP_F_CARD;
	return rc;
}

/*
 * The gate's writes commit by themselves, before the password is checked
 * (which takes its time on purpose): with a writer, each is a short
 * decision of its own in the group (join_writer); without, an autocommit
 * statement.
 */
static int
gate_write_end(struct sotp_attempt *a, int rc)
{
	if (a->ctx->writer == NULL)
		return rc;
	return write_end(a, rc);
}

/*
 * Each challenge state is good once: a resumed one is marked used in the
 * store (*reason STATE_REPLAYED when it was used before). Every decision
 * on a state spends it, a refusal's too: only the question asked again,
 * no answer given (step), leaves it as it was.
 */
static int
spend_state(struct sotp_attempt *a, int *reason)
{
	int rc, fresh = 0;

	*reason = SOTP_R_ACCEPTED;
	if (!a->resumed)
		return SOTP_OK;
	/*
	 * The mark carries the state's own expiry, not one counted from
	 * now: after the clock steps back, now + lifetime ends before the
	 * state does. Marks purged by a clock running ahead are caught by
	 * the store (sotp_store_state_use).
	 */
	if ((rc = join_writer(a)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_state_use(a->ctx->st, a->state_id,
	         a->state_expires, (int64_t)a->now, &fresh)) != SOTP_OK)
		rc = store_err(a->ctx, rc);
	if ((rc = gate_write_end(a, rc)) != SOTP_OK)
		return rc;
	a->resumed = 0;
	if (!fresh)
		*reason = SOTP_R_STATE_REPLAYED;
	return SOTP_OK;
}

/* Refusals that need no secret: contract state and lock. */
static int
gate(struct sotp_attempt *a, struct sotp_contract_rec *c, int *reason)
{
	int rc;

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
		if ((rc = join_writer(a)) != SOTP_OK)
			return rc;
		rc = sotp_store_contract_unlock_expired(
		    a->ctx->st, c->id, c->locked_until);
		if (rc == SOTP_ERR_NOT_FOUND)
			rc = SOTP_OK;
		if (rc != SOTP_OK)
			rc = store_err(a->ctx, rc);
		if ((rc = gate_write_end(a, rc)) != SOTP_OK)
			return rc;
		c->failures = 0;
		c->locked_until = 0;
	}
	return spend_state(a, reason);
}

static int
step_contract(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_contract_rec *c, struct sotp_decision *d)
{
	unsigned int req, f;
	size_t i;
	int rc, reason;

	if ((rc = gate(a, c, &reason)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if (reason != SOTP_R_ACCEPTED) {
		d->locked = reason == SOTP_R_LOCKED;
		return finish(a, cdef, d, SOTP_REJECT, reason, NULL);
	}
	req = plan(cdef, c);
	if ((rc = take_inputs(a, req, c, &reason)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if (reason != SOTP_R_ACCEPTED)
		return finish(a, cdef, d, SOTP_REJECT, reason, NULL);
	for (i = 0; i < NORDER; i++) {
		f = guide_order[i];
		if ((req & f) == 0 || (a->done & f) != 0)
			continue;
		if (f != SOTP_F_PASSWORD &&
		    (reason = precondition(cdef, c, req)) != SOTP_R_ACCEPTED)
			return finish(a, cdef, d, SOTP_REJECT, reason, NULL);
		if ((a->supplied & f) == 0)
			return ask(a, cdef, c, d, f);
		if ((rc = verify(a, cdef, c, f, d, &reason)) != SOTP_OK)
			return fail_error(a, cdef, d, rc);
		if (reason != SOTP_R_ACCEPTED)
			return refuse(a, cdef, d, reason, f);
		a->done |= f;
	}
	return complete(a, cdef, c, req, d);
}

/*
 * The hash an unknown contract's password is checked against: the first
 * contract's own (imported hashes keep their method and cost, so this
 * costs what checking a real one costs), else, in a store with none or
 * when that one is of a legacy method (whose checks are padded with this
 * one's: check_password), one made as every new hash is. Read once per
 * context, in every attempt's first step whether its contract exists or
 * not, so that the read does not tell them apart either.
 */
static int
dummy_hash(struct sotp_ctx *ctx)
{
	char pw[33];
	uint8_t rnd[16];
	size_t i;
	int rc;

	if (ctx->dummy_hash[0] != '\0')
		return SOTP_OK;
	rc = sotp_store_pwhash_sample(ctx->st, ctx->dummy_hash);
	if (rc == SOTP_OK && ctx->dummy_hash[0] == '$' &&
	    !sotp_passwd_cheap(ctx->dummy_hash))
		return SOTP_OK;
	SOTP_WIPE_ARRAY(ctx->dummy_hash);
	if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		return store_err(ctx, rc);
	if ((rc = sotp_random(rnd, sizeof(rnd))) != SOTP_OK)
		return rc;
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(pw + 2 * i, 3, "%02x", rnd[i]);
	rc = sotp_passwd_hash(&ctx->pol, pw, ctx->dummy_hash);
	SOTP_WIPE_ARRAY(pw);
	SOTP_WIPE_ARRAY(rnd);
	return rc;
}

/*
 * A contract that does not exist, when the policy hides that (the
 * default, unknown_contract = hide): the attempt runs as for a contract
 * with no token and no card whose password never matches, checked
 * against a real hash, counted, refused and audited as a wrong password
 * would be, so that a stranger can tell neither by the questions, the
 * replies nor the time taken. Only the audit row says UNKNOWN_CONTRACT.
 */
static int
step_phantom(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_contract_rec *c, struct sotp_decision *d)
{
	memset(c, 0, sizeof(*c));
	sotp_strlcpy(c->id, a->contract, sizeof(c->id));
	sotp_strlcpy(c->pwhash, a->ctx->dummy_hash, sizeof(c->pwhash));
	c->login = SOTP_LOGIN_OTP;
	a->phantom = 1;
	return step_contract(a, cdef, c, d);
}

/*
 * A resumed State that carries the password holds only while the
 * contract's password is the one it was verified against
 * (engine_state.c): checked against c, the row this step read (NULL when
 * there is none), with no read of its own. 1 when it holds; else 0 and
 * *rc: refused as a bad State is (and as look_up would, the row naming
 * the contract when there is one), or the failure of its MAC.
 */
static int
state_holds(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    const struct sotp_contract_rec *c, struct sotp_decision *d, int *rc)
{
	int holds = 0;

	*rc = sotp_attempt_state_holds(a, c != NULL ? c->pwhash : NULL, &holds);
	if (*rc == SOTP_OK && holds)
		return 1;
	a->known = c != NULL;
	if (*rc != SOTP_OK)
		*rc = fail_error(a, cdef, d, *rc);
	else
		*rc = finish(a, cdef, d, SOTP_REJECT, a->state_reason, NULL);
	return 0;
}

/*
 * For a refusal decided before the contract is read (a bad or expired
 * state, an unknown context, a malformed answer): whether the name is a
 * contract's, so that the refusal's line and row may name it. A store
 * that cannot answer is not asked again. With d, for a refusal that would
 * spend a resumed State (a malformed answer): a State that carries the
 * password is first checked against the row read, as step_contract's is
 * (state_holds): 0 when it is refused so (*rc the decision's), else 1. A
 * store that cannot say whether the contract is there leaves the State
 * alone (the answer is refused all the same).
 */
static int
look_up_holds(struct sotp_attempt *a, const struct sotp_context_def *cdef,
    struct sotp_decision *d, int *rc)
{
	struct sotp_contract_rec *c;
	int got, holds = 1;

	if (!a->contract_ok || (c = malloc(sizeof(*c))) == NULL)
		return 1;
	got = sotp_store_contract_get(a->ctx->st, a->contract, c);
	a->known = got == SOTP_OK;
	if (got == SOTP_ERR_STORE_UNAVAILABLE)
		a->store_down = 1;
	if (d != NULL && a->pw_bound &&
	    (got == SOTP_OK || got == SOTP_ERR_NOT_FOUND))
		holds = state_holds(a, cdef, got == SOTP_OK ? c : NULL, d, rc);
	sotp_free_secret(c, sizeof(*c));
	return holds;
}

static void
look_up(struct sotp_attempt *a)
{
	(void)look_up_holds(a, NULL, NULL, NULL);
}

static int
step(struct sotp_attempt *a, struct sotp_decision *d)
{
	const struct sotp_context_def *cdef;
	struct sotp_contract_rec *c = NULL;
	int rc, reveal, reason, found;

	memset(d, 0, sizeof(*d));
	d->verdict = SOTP_REJECT;
	if ((rc = sotp_ctx_ready(a->ctx)) != SOTP_OK) {
		/*
		 * Nothing to audit into: no context loaded, or a lost store
		 * that could not be reopened (STORE_UNAVAILABLE, told so).
		 * Logged and counted all the same.
		 */
		d->reason = (enum sotp_reason)sotp_reason_from_rc(rc);
		if (a->ctx->have_policy)
			tell(a, d, d->reason);
		sotp_log(a->ctx, LOG_ERR, "contract -: %s: %s",
		    sotp_strerror(rc), sotp_ctx_errmsg(a->ctx));
		count(a, sotp_policy_context(&a->ctx->pol, a->context), d);
		a->final = 1;
		return rc;
	}
	if (a->final) {
		d->reason = SOTP_R_INTERNAL;
		return SOTP_ERR_INVALID_ARG;
	}
	cdef = sotp_policy_context(&a->ctx->pol, a->context);
	/*
	 * Before anything is asked again: a refusal, audited like others.
	 * Its state is spent all the same, as a short code's is (one used
	 * before is refused as such), unless the store made this request
	 * wait once already: it is not waited for again.
	 */
	if (a->malformed[0] != '\0' && a->state_reason == 0) {
		if (!look_up_holds(a, cdef, d, &rc))
			return rc;
		reason = SOTP_R_ACCEPTED;
		if (!a->store_down && (rc = spend_state(a, &reason)) != SOTP_OK)
			return fail_error(a, cdef, d, rc);
		if (reason != SOTP_R_ACCEPTED)
			return finish(a, cdef, d, SOTP_REJECT, reason, NULL);
		d->malformed = a->malformed_factor;
		return finish(
		    a, cdef, d, SOTP_REJECT, SOTP_R_BAD_INPUT, a->malformed);
	}
	/* A resumed state asked something: ask it again, change nothing. */
	if (a->resumed && a->state_reason == 0 && a->supplied == 0 &&
	    a->answer == NULL && a->combined == NULL && cdef != NULL &&
	    a->asked != 0) {
		d->verdict = SOTP_CONTINUE;
		d->reason = SOTP_R_CONTINUE;
		pose(a, d, a->asked);
		return SOTP_OK;
	}
	if (a->state_rc != SOTP_OK) {
		if (a->state_rc != SOTP_ERR_STORE_UNAVAILABLE)
			look_up(a);
		return fail_error(a, cdef, d, a->state_rc);
	}
	if (a->state_reason != 0) {
		look_up(a);
		return finish(a, cdef, d, SOTP_REJECT, a->state_reason, NULL);
	}
	if (cdef == NULL) {
		look_up(a);
		return finish(a, cdef, d, SOTP_REJECT, SOTP_R_UNKNOWN_CONTEXT,
		    a->unmapped[0] != '\0' ? a->unmapped : NULL);
	}
	reveal = a->ctx->pol.reveal_unknown;
	if (!a->contract_ok && reveal)
		return finish(
		    a, cdef, d, SOTP_REJECT, SOTP_R_UNKNOWN_CONTRACT, NULL);
	if (!reveal && (rc = dummy_hash(a->ctx)) != SOTP_OK)
		return fail_error(a, cdef, d, rc);
	if ((c = malloc(sizeof(*c))) == NULL)
		return fail_error(a, cdef, d, SOTP_ERR_NOMEM);
	rc = a->contract_ok
	    ? sotp_store_contract_get(a->ctx->st, a->contract, c)
	    : SOTP_ERR_NOT_FOUND;
	found = rc == SOTP_OK;
	if (rc == SOTP_ERR_NOT_FOUND && reveal)
		rc = finish(
		    a, cdef, d, SOTP_REJECT, SOTP_R_UNKNOWN_CONTRACT, NULL);
	else if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		rc = fail_error(a, cdef, d, store_err(a->ctx, rc));
	else if (!state_holds(a, cdef, found ? c : NULL, d, &rc))
		; /* refused as a bad State, or failed: rc says which */
	/* Once a phantom, always: a contract made meanwhile changes nothing. */
	else if (!found || a->phantom)
		rc = step_phantom(a, cdef, c, d);
	else {
		a->known = 1;
		rc = step_contract(a, cdef, c, d);
	}
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

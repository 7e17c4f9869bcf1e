/*
 * audit.c - one audit row and one log line per decision or admin action,
 * and the chain that makes the rows tamper-evident.
 *
 * The line is key=value for a SIEM. Nothing secret is ever passed in: the
 * callers hand over identifiers, the verdict and the reason, no inputs.
 *
 * The chain. Each row carries its place (seq, 1, 2, ...) and a MAC:
 * HMAC-SHA256 under the audit subkey of a data-key version (keys.c:
 * HKDF(DEK, "shinkin-otp audit v1"); version 0 is the master key file's,
 * as before versions) over the previous row's MAC, its own seq, the
 * version and every column. The row names its version (kv), and so does
 * the head row (audit_head), which holds the last seq and MAC, tagged,
 * so that rows cut from the end show too.
 *
 * Across a key rotation the chain goes on: rows are appended under the
 * current version, the first one under a new version covers the last
 * MAC of the old, and a retired version's audit subkey stays in the
 * store (wrapped under the KEK) for as long as rows may name it. So an
 * auditor verifies the whole chain, from before the first rotation to
 * today, with the keys the store holds; and a version's subkey, if it
 * ever leaked, could forge rows of that version only, never the rows
 * after it that cover them, nor a head or base (tagged under live
 * versions only: see sotp_audit_retag). Changing a row breaks its
 * MAC; removing one leaves a gap in seq (and the next MAC); a row put in
 * (a copy, or one made without the key) repeats a seq or fails its MAC.
 * sotp_audit_verify walks the chain and names the first row that breaks;
 * then every row of the table must be one the walks passed, one waiting,
 * or one from before the chain: any other (no seq, a seq at or below the
 * base, no chain) is named as put in beside them.
 *
 * Order. An append reads its chain's head under its row lock and extends
 * it in the same transaction as the row, so appends from every process
 * and every server of a farm form one line per chain: the decision's own
 * transaction (engine.c) holds the head from its audit row to its commit,
 * and the next append to that chain waits for that. On SQLite the write
 * lock already orders every write, and there is one chain. On PostgreSQL
 * a single chain would put every decision of the farm in one line behind
 * the commit before it (a synchronous standby's round trip each), so the
 * rows spread over SOTP_AUDIT_CHAINS chains: each connection (a PAM call,
 * a radiusd thread or its group-commit writer) has its own, chosen when
 * it opens (sotp_store_audit_chain), and its transactions take that head
 * first, before any contract or token (store.c sotp_store_begin: one lock
 * order for every transaction). A transaction appends to one chain
 * only; one that takes every head (a prune, a retag) takes them all
 * first, in chain order (sotp_store_begin_every_head), never its own
 * before the others. Each chain is verified, pruned and tagged on its
 * own; its head rows are fixed (1..SOTP_AUDIT_CHAINS), so a chain removed
 * whole shows as a head ahead of its rows. The cost on the hot path: two
 * statements and two HMACs more per decision.
 *
 * Without the key (a help desk operator, sotp_ctx_load_nokey) a row
 * cannot be chained: it is written waiting (seq NULL, keyed 0) and the
 * head's pending count goes up; the next append by a holder of the key
 * links the waiting rows first, in the order they were written, marked
 * keyed 0 inside their MAC. Until then such a row is only as safe as the
 * store (and its syslog line); audit verify counts the rows still
 * waiting. The operator never holds the chain's key, so cannot rewrite
 * what is chained.
 *
 * A key holder's append checks the head's tag first (check_head): a head
 * set back by hand (its tail removed) would otherwise be tagged again by
 * the next append and verify clean. The chain goes on, but after a row
 * "audit.head" (verdict error) that says so, which verify names.
 *
 * Pruning (sotp_audit_prune) removes the oldest rows and keeps the last
 * removed row's seq and MAC as the chain's base, tagged with the key, so
 * that the chain verifies from the first row left and a base moved by
 * hand does not.
 */
#include "sotp_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

/* The row an append writes on finding its chain's head set back. */
#define SOTP_AUDIT_HEAD_ACTION "audit.head"

/* Waiting rows one append links at most: a bound on the hot path. */
#define LINK_MAX 64

void
sotp_audit_line(const struct sotp_ctx *ctx, const struct sotp_audit_rec *r)
{
	sotp_log(ctx, strcmp(r->verdict, "accept") == 0 ? LOG_INFO : LOG_NOTICE,
	    "action=%s contract=%s serial=%s context=%s verdict=%s "
	    "reason=%s(%d)%s%s%s",
	    r->action, r->contract[0] != '\0' ? r->contract : "-",
	    r->serial[0] != '\0' ? r->serial : "-",
	    r->context[0] != '\0' ? r->context : "-", r->verdict,
	    sotp_reason_name(r->reason), r->reason,
	    r->detail[0] != '\0' ? " detail=\"" : "", r->detail,
	    r->detail[0] != '\0' ? "\"" : "");
}

/* ---- the MACs ---- */

static uint8_t *
put_int(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = n - 1; i >= 0; i--) {
		p[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
	return p + n;
}

static uint8_t *
put_str(uint8_t *p, const char *s)
{
	size_t n = strlen(s);

	p = put_int(p, n, 4);
	memcpy(p, s, n);
	return p + n;
}

/*
 * A row's MAC: "sotp-audit-1", the previous MAC, seq, keyed, ts, reason
 * and each text with its length, so that no two rows encode alike; from
 * key version 1 on, "sotp-audit-2" and the version after keyed.
 */
static int
row_mac(struct sotp_ctx *ctx, const uint8_t *prev, int64_t seq, int keyed,
    uint32_t kv, const struct sotp_audit_rec *r, uint8_t *mac)
{
	const char *tag = kv == 0 ? "sotp-audit-1" : "sotp-audit-2";
	const char *text[] = {r->action, r->contract, r->serial, r->context,
	    r->verdict, r->detail};
	uint8_t *buf, *p;
	size_t i, n = strlen(tag) + 1 + SOTP_AUDIT_MAC_LEN + 8 + 1 + 4 + 8 + 8;
	int rc;

	for (i = 0; i < sizeof(text) / sizeof(text[0]); i++)
		n += 4 + strlen(text[i]);
	if ((buf = malloc(n)) == NULL)
		return SOTP_ERR_NOMEM;
	memcpy(buf, tag, strlen(tag) + 1);
	p = buf + strlen(tag) + 1;
	memcpy(p, prev, SOTP_AUDIT_MAC_LEN);
	p += SOTP_AUDIT_MAC_LEN;
	p = put_int(p, (uint64_t)seq, 8);
	*p++ = (uint8_t)keyed;
	if (kv != 0)
		p = put_int(p, kv, 4);
	p = put_int(p, (uint64_t)r->ts, 8);
	p = put_int(p, (uint64_t)(int64_t)r->reason, 8);
	for (i = 0; i < sizeof(text) / sizeof(text[0]); i++)
		p = put_str(p, text[i]);
	rc = sotp_keys_audit_mac(ctx, kv, buf, (size_t)(p - buf), mac);
	free(buf);
	return rc;
}

/* The tag of a head or a base: which, (its key version), seq, MAC. */
static int
link_tag(struct sotp_ctx *ctx, uint32_t kv, const char *which, int64_t seq,
    const uint8_t *mac, uint8_t *tag)
{
	uint8_t buf[32 + 4 + 8 + SOTP_AUDIT_MAC_LEN], *p = buf;
	size_t n = strlen(which);

	memcpy(p, which, n);
	p += n;
	if (kv != 0)
		p = put_int(p, kv, 4);
	p = put_int(p, (uint64_t)seq, 8);
	memcpy(p, mac, SOTP_AUDIT_MAC_LEN);
	p += SOTP_AUDIT_MAC_LEN;
	return sotp_keys_audit_mac(ctx, kv, buf, (size_t)(p - buf), tag);
}

static void
rec_of(const struct sotp_audit_row *row, struct sotp_audit_rec *r)
{
	memset(r, 0, sizeof(*r));
	r->ts = row->ts;
	r->action = row->action;
	r->contract = row->contract;
	r->serial = row->serial;
	r->context = row->context;
	r->verdict = row->verdict;
	r->reason = row->reason;
	r->detail = row->detail;
}

/* ---- appending ---- */

struct pending {
	struct sotp_ctx *ctx;
	const struct sotp_audit_head *h;
	uint32_t kv;
	int64_t id;
	uint8_t mac[SOTP_AUDIT_MAC_LEN];
	int rc;
};

static int
pending_row(
    void *arg, const struct sotp_audit_row *r, const struct sotp_audit_link *l)
{
	struct pending *p = arg;
	struct sotp_audit_rec rec;

	(void)l;
	rec_of(r, &rec);
	p->id = r->id;
	p->rc =
	    row_mac(p->ctx, p->h->mac, p->h->seq + 1, 0, p->kv, &rec, p->mac);
	return SOTP_OK;
}

/* Links the rows written without the key into the chain, oldest first. */
static int
link_pending(struct sotp_ctx *ctx, struct sotp_audit_head *h, uint32_t kv)
{
	struct pending p;
	int i, rc;

	for (i = 0; i < LINK_MAX && h->pending > 0; i++) {
		memset(&p, 0, sizeof(p));
		p.ctx = ctx;
		p.h = h;
		p.kv = kv;
		rc = sotp_store_audit_pending(
		    ctx->st, h->chain, pending_row, &p);
		if (rc == SOTP_ERR_NOT_FOUND) {
			/* The count ran ahead of the rows (some went). */
			h->pending = 0;
			break;
		}
		if (rc != SOTP_OK || (rc = p.rc) != SOTP_OK ||
		    (rc = sotp_store_audit_link(
		         ctx->st, p.id, h->seq + 1, p.mac, kv)) != SOTP_OK)
			return rc;
		h->seq++;
		memcpy(h->mac, p.mac, sizeof(h->mac));
		h->pending--;
	}
	return SOTP_OK;
}

static int tag_ok(struct sotp_ctx *ctx, uint32_t kv, const char *which,
    int64_t seq, const uint8_t *mac, const uint8_t *tag, int has_tag, int *ok);

/* Row r chained after head h under kv, and h moved on to it. */
static int
chain_row(struct sotp_ctx *ctx, struct sotp_audit_head *h, uint32_t kv,
    const struct sotp_audit_rec *r)
{
	uint8_t mac[SOTP_AUDIT_MAC_LEN];
	int rc;

	if ((rc = row_mac(ctx, h->mac, h->seq + 1, 1, kv, r, mac)) != SOTP_OK ||
	    (rc = sotp_store_audit_append(
	         ctx->st, r, h->chain, h->seq + 1, mac, kv)) != SOTP_OK)
		return rc;
	h->seq++;
	memcpy(h->mac, mac, sizeof(h->mac));
	h->has_tag = 1;
	h->kv = kv;
	return link_tag(ctx, kv, "head", h->seq, h->mac, h->tag);
}

/*
 * Before a key holder extends a chain: its head must hold its tag. One
 * that does not was set back or changed by hand (its tail removed, say),
 * and extending it would tag it again, so that the next verify finds
 * nothing. The chain goes on (a decision is not refused for it), but
 * first with a row that says so, chained like any other, which verify
 * names, and an error line for the log. An empty head (seq 0) carries
 * no tag. Once per head read (h->held): one HMAC, no statement, but for
 * loading a head's older key version once.
 */
static int
check_head(
    struct sotp_ctx *ctx, struct sotp_audit_head *h, uint32_t kv, time_t now)
{
	char detail[128];
	struct sotp_audit_rec r;
	int rc, ok = 0;

	if (h->held || h->seq == 0)
		goto held;
	/*
	 * A version the store does not hold made no tag: it does not hold.
	 * Nor, for the decision's sake, one this process cannot open (its
	 * row says so; audit verify tells the two apart).
	 */
	rc = h->has_tag ? sotp_keys_audit_load(ctx, h->kv) : SOTP_OK;
	if (rc != SOTP_OK) {
		if (rc != SOTP_ERR_KEY && rc != SOTP_ERR_NOT_FOUND)
			return rc;
		ctx->err[0] = '\0';
	} else if ((rc = tag_ok(ctx, h->kv, "head", h->seq, h->mac, h->tag,
	                h->has_tag, &ok)) != SOTP_OK)
		return rc;
	if (ok)
		goto held;
	snprintf(detail, sizeof(detail),
	    "head seq=%lld kv=%lu did not hold its tag", (long long)h->seq,
	    (unsigned long)h->kv);
	memset(&r, 0, sizeof(r));
	r.ts = (int64_t)now;
	r.action = SOTP_AUDIT_HEAD_ACTION;
	r.contract = r.serial = r.context = "";
	r.verdict = "error";
	r.reason = SOTP_R_INTERNAL;
	r.detail = detail;
	if ((rc = chain_row(ctx, h, kv, &r)) != SOTP_OK)
		return rc;
	sotp_log(ctx, LOG_ERR,
	    "audit chain %d: its head (seq %lld) does not hold its tag: set "
	    "back or changed by hand, rows may have been removed; recorded "
	    "at seq %lld (audit verify names it)",
	    h->chain, (long long)(h->seq - 1), (long long)h->seq);
held:
	h->held = 1;
	return SOTP_OK;
}

/* Row r after head h, and h moved on to it (the head row untouched). */
static int
extend(struct sotp_ctx *ctx, struct sotp_audit_head *h,
    const struct sotp_audit_rec *r)
{
	uint32_t kv = 0;
	int rc;

	if (!ctx->have_key) {
		if ((rc = sotp_store_audit_append(
		         ctx->st, r, h->chain, 0, NULL, 0)) == SOTP_OK)
			h->pending++;
		return rc;
	}
	if ((rc = sotp_keys_current(ctx, &kv)) != SOTP_OK ||
	    (rc = check_head(ctx, h, kv, (time_t)r->ts)) != SOTP_OK ||
	    (rc = link_pending(ctx, h, kv)) != SOTP_OK)
		return rc;
	return chain_row(ctx, h, kv, r);
}

/* Inside the caller's transaction, or one of its own. */
static int
append(struct sotp_ctx *ctx, const struct sotp_audit_rec *r)
{
	struct sotp_audit_head h;
	int rc;

	if (ctx->audit_batch != NULL)
		return extend(ctx, ctx->audit_batch, r);
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_audit_head(
	         ctx->st, sotp_store_audit_chain(ctx->st), 1, &h)) == SOTP_OK &&
	    (rc = extend(ctx, &h, r)) == SOTP_OK)
		rc = sotp_store_audit_head_set(ctx->st, &h);
	if (rc != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		return rc;
	}
	return sotp_store_commit(ctx->st);
}

int
sotp_audit_batch_begin(struct sotp_ctx *ctx)
{
	struct sotp_audit_head *h = NULL;
	int rc;

	if (ctx == NULL || ctx->audit_batch != NULL)
		return SOTP_ERR_INVALID_ARG;
	if (ctx->st == NULL)
		return SOTP_ERR_STORE_UNAVAILABLE;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return SOTP_ERR_NOMEM;
	if ((rc = sotp_store_audit_head(
	         ctx->st, sotp_store_audit_chain(ctx->st), 1, h)) != SOTP_OK) {
		free(h);
		return rc;
	}
	ctx->audit_batch = h;
	return SOTP_OK;
}

int
sotp_audit_batch_end(struct sotp_ctx *ctx, int rc)
{
	struct sotp_audit_head *h;

	if (ctx == NULL || (h = ctx->audit_batch) == NULL)
		return rc != SOTP_OK ? rc : SOTP_ERR_INVALID_ARG;
	ctx->audit_batch = NULL;
	if (rc == SOTP_OK)
		rc = sotp_store_audit_head_set(ctx->st, h);
	free(h);
	return rc;
}

int
sotp_audit_append(struct sotp_ctx *ctx, const struct sotp_audit_rec *r)
{
	if (ctx == NULL || r == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (ctx->st == NULL)
		return SOTP_ERR_STORE_UNAVAILABLE;
	return append(ctx, r);
}

int
sotp_audit_append_apart(struct sotp_ctx *ctx, const struct sotp_audit_rec *r)
{
	struct sotp_audit_head keep;
	int rc;

	if (ctx == NULL || r == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (ctx->st == NULL)
		return SOTP_ERR_STORE_UNAVAILABLE;
	/* Without a batch, append's own transaction is a level already. */
	if (ctx->audit_batch == NULL)
		return append(ctx, r);
	keep = *ctx->audit_batch;
	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		return rc;
	if ((rc = append(ctx, r)) == SOTP_OK)
		rc = sotp_store_commit(ctx->st);
	else
		sotp_store_rollback(ctx->st);
	if (rc != SOTP_OK)
		*ctx->audit_batch = keep;
	return rc;
}

/* ---- the log line, after the commit ---- */

/*
 * A waiting row's line, as what happened to it: kept, as it was; undone,
 * an accept (or a question asked) did not happen and reads as refused
 * because the store could not commit it, as a decision does
 * (engine.c finish_audited), while a refusal stands, its row lost. The
 * error line follows when the row is not in the store.
 */
static void
wait_line(const struct sotp_ctx *ctx, const struct sotp_audit_wait *w, int kept,
    const char *why)
{
	struct sotp_audit_rec r;
	char detail[sizeof(w->detail) + 48];

	memset(&r, 0, sizeof(r));
	r.ts = w->ts;
	r.action = w->action;
	r.contract = w->contract;
	r.serial = w->serial;
	r.context = w->context;
	r.verdict = w->verdict;
	r.reason = w->reason;
	r.detail = w->detail;
	if (!kept &&
	    (strcmp(w->verdict, "accept") == 0 ||
	        strcmp(w->verdict, "continue") == 0)) {
		snprintf(detail, sizeof(detail), "not %s: not committed%s%s%s",
		    strcmp(w->verdict, "accept") == 0 ? "accepted"
		                                      : "continued",
		    w->detail[0] != '\0' ? " (" : "", w->detail,
		    w->detail[0] != '\0' ? ")" : "");
		r.verdict = "reject";
		r.reason = SOTP_R_STORE_UNAVAILABLE;
		r.detail = detail;
	}
	sotp_audit_line(ctx, &r);
	if (!w->written)
		sotp_log(ctx, LOG_ERR, "audit row not written: %s", w->why);
	else if (!kept)
		sotp_log(ctx, LOG_ERR, "audit row not committed: %s",
		    why != NULL && why[0] != '\0'
		        ? why
		        : "the transaction was rolled back");
}

static void
wait_fill(struct sotp_audit_wait *w, const struct sotp_audit_rec *r, int depth)
{
	memset(w, 0, sizeof(*w));
	w->depth = depth;
	w->written = 1;
	w->ts = r->ts;
	w->reason = r->reason;
	sotp_strlcpy(w->action, r->action, sizeof(w->action));
	sotp_strlcpy(w->contract, r->contract, sizeof(w->contract));
	sotp_strlcpy(w->serial, r->serial, sizeof(w->serial));
	sotp_strlcpy(w->context, r->context, sizeof(w->context));
	sotp_strlcpy(w->verdict, r->verdict, sizeof(w->verdict));
	sotp_strlcpy(w->detail, r->detail, sizeof(w->detail));
}

void
sotp_audit_txn_end(void *arg, int depth, int kept, const char *why)
{
	struct sotp_ctx *ctx = arg;
	struct sotp_audit_wait *w;
	size_t i, n = 0;

	for (i = 0; i < ctx->nwaiting; i++) {
		w = &ctx->waiting[i];
		if (w->depth > depth && (!kept || depth == 0)) {
			wait_line(ctx, w, kept, why);
			continue;
		}
		/* Still open, or released into the level around it. */
		if (w->depth > depth)
			w->depth = depth;
		if (n != i)
			ctx->waiting[n] = *w;
		n++;
	}
	ctx->nwaiting = n;
}

/* Room for one more waiting line; SOTP_ERR_NOMEM past the bound. */
static int
wait_room(struct sotp_ctx *ctx)
{
	struct sotp_audit_wait *more;
	size_t n;

	if (ctx->nwaiting < ctx->waiting_room)
		return SOTP_OK;
	n = ctx->waiting_room == 0 ? 4 : ctx->waiting_room * 2;
	if (n > SOTP_AUDIT_WAITING ||
	    (more = realloc(ctx->waiting, n * sizeof(*more))) == NULL)
		return SOTP_ERR_NOMEM;
	ctx->waiting = more;
	ctx->waiting_room = n;
	return SOTP_OK;
}

/*
 * A row inside the caller's transaction: it stands or falls with that
 * transaction, and its line waits for the end of it. A row whose line
 * cannot wait is refused (the caller's change with it), so that no line
 * is ever logged before its commit.
 */
static int
write_waiting(struct sotp_ctx *ctx, const struct sotp_audit_rec *r)
{
	struct sotp_audit_wait w;
	int rc;

	wait_fill(&w, r, sotp_store_depth(ctx->st));
	if ((rc = wait_room(ctx)) != SOTP_OK) {
		w.written = 0;
		snprintf(w.why, sizeof(w.why),
		    "no room for the line of more than %zu audited rows in "
		    "one transaction",
		    ctx->nwaiting);
		wait_line(ctx, &w, 0, NULL);
		sotp_ctx_seterr(ctx, "%s", w.why);
		return rc;
	}
	if ((rc = sotp_audit_append(ctx, r)) != SOTP_OK) {
		w.written = 0;
		sotp_strlcpy(w.why,
		    ctx->st != NULL ? sotp_store_errmsg(ctx->st) : "no store",
		    sizeof(w.why));
	}
	ctx->waiting[ctx->nwaiting++] = w;
	return rc;
}

int
sotp_audit_write(
    struct sotp_ctx *ctx, const struct sotp_audit_rec *r, int store)
{
	int rc;

	if (!store) {
		sotp_audit_line(ctx, r);
		sotp_log(ctx, LOG_ERR,
		    "audit row not written: the store was unavailable "
		    "(the line above is the record)");
		return SOTP_ERR_STORE_UNAVAILABLE;
	}
	if (sotp_store_depth(ctx->st) > 0)
		return write_waiting(ctx, r);
	/* A transaction of its own, committed (or not) when it returns. */
	rc = sotp_audit_append(ctx, r);
	sotp_audit_line(ctx, r);
	if (rc != SOTP_OK)
		sotp_log(ctx, LOG_ERR, "audit row not written: %s",
		    ctx->st != NULL ? sotp_store_errmsg(ctx->st) : "no store");
	return rc;
}

int
sotp_audit(struct sotp_ctx *ctx, time_t now, const char *action,
    const char *contract, const char *serial, const char *context,
    const char *verdict, int reason, const char *detail)
{
	struct sotp_audit_rec r = {
	    .ts = (int64_t)now,
	    .action = action,
	    .contract = contract != NULL ? contract : "",
	    .serial = serial != NULL ? serial : "",
	    .context = context != NULL ? context : "",
	    .verdict = verdict,
	    .reason = reason,
	    .detail = detail != NULL ? detail : "",
	};

	return sotp_audit_write(ctx, &r, 1);
}

int
sotp_refuse(struct sotp_ctx *ctx, struct sotp_decision *d, time_t now,
    const char *action, const char *contract, const char *serial, int reason)
{
	memset(d, 0, sizeof(*d));
	d->verdict = SOTP_REJECT;
	d->reason = (enum sotp_reason)reason;
	d->locked = reason == SOTP_R_LOCKED;
	(void)sotp_audit(
	    ctx, now, action, contract, serial, NULL, "reject", reason, NULL);
	return SOTP_OK;
}

int
sotp_admin_ok(struct sotp_ctx *ctx, struct sotp_decision *d, time_t now,
    const char *action, const char *contract, const char *serial,
    const char *detail)
{
	memset(d, 0, sizeof(*d));
	d->verdict = SOTP_ACCEPT;
	d->reason = SOTP_R_ACCEPTED;
	return sotp_audit(ctx, now, action, contract, serial, NULL, "accept",
	    SOTP_R_ACCEPTED, detail);
}

int
sotp_audit_list(struct sotp_ctx *ctx, const char *contract, int64_t since,
    int64_t until, sotp_audit_cb *cb, void *arg)
{
	int rc;

	if (ctx == NULL || cb == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_audit_list(
	         ctx->st, contract, since, until, cb, arg)) != SOTP_OK)
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

/* ---- the live versions: who may tag a head or a base ---- */

/*
 * A retired version's audit key stays in the store to verify the rows it
 * keyed, but must not vouch for where a chain ends or starts: whoever
 * held it (a data key retired because it may have leaked) could put a
 * head back before the rotation, the rows since deleted, or forge a tail
 * under it. So a head or base is tagged under a live version only: an
 * append tags under the current one, a retirement tags again those left
 * under the version it retires (sotp_audit_retag), and verify refuses a
 * tag under any other.
 */
struct live {
	uint32_t v[SOTP_KEY_LIVE_MAX];
	size_t n;
};

static int
live_row(void *arg, uint32_t version, int64_t created)
{
	struct live *l = arg;

	(void)created;
	if (l->n < SOTP_KEY_LIVE_MAX)
		l->v[l->n++] = version;
	return 0;
}

static int
read_live(struct sotp_ctx *ctx, struct live *l)
{
	memset(l, 0, sizeof(*l));
	return sotp_store_key_live(ctx->st, live_row, l);
}

static int
is_live(const struct live *l, uint32_t v)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (l->v[i] == v)
			return 1;
	return 0;
}

/* ---- verifying ---- */

/*
 * Rows "audit.head" an auditor has looked into (sotp_audit_prune's
 * `past`): verify names neither them nor such rows before them in their
 * chain (a prune past one removes those too), so that every other check
 * still holds, and notes where the walk met each.
 */
struct past {
	int64_t id; /* its audit id */
	int chain;  /* the chain whose walk met it, or 0 */
	int64_t seq, ts;
};
struct pasts {
	struct past p[SOTP_AUDIT_PAST_MAX];
	size_t n;
	/*
	 * Each chain's last seq the verify walked (or its base): a prune
	 * goes no further, so that a row appended between the verify and
	 * the prune's transaction is never removed unverified.
	 */
	int64_t walked[SOTP_AUDIT_CHAINS + 1];
};

struct walk {
	struct sotp_ctx *ctx;
	struct sotp_audit_check *out; /* this chain's */
	int chain;
	uint8_t prev[SOTP_AUDIT_MAC_LEN];
	int64_t last; /* the last seq that verified */
	/* The first row that did not: 1 a gap before it, 2 its MAC. */
	int bad;
	int64_t bad_id, bad_seq;
	struct live *live; /* read again once when a tag's version is not */
	int rc;
	/* The first row an append wrote on finding the head set back. */
	int64_t said_id, said_seq;
	char said[128];
	struct pasts *past; /* such rows an auditor has looked into */
	int anchored;       /* its seq 1 verified: see anchored_at */
	/* The walk stopped at a row keyed by a version not held: this. */
	int need;
	uint32_t need_kv;
	/* The last load and where: a load that does not stay is an error. */
	uint32_t last_need_kv;
	int64_t last_need_at;
};

/* Whether kv is live, the set read again first when it seems not. */
static int
live_now(struct walk *w, uint32_t kv, int *live)
{
	int rc;

	*live = is_live(w->live, kv);
	if (*live)
		return SOTP_OK;
	/* A rotation may have begun since it was read. */
	if ((rc = read_live(w->ctx, w->live)) != SOTP_OK)
		return rc;
	*live = is_live(w->live, kv);
	return SOTP_OK;
}

static void broken(struct sotp_audit_check *out,
    enum sotp_audit_problem problem, int64_t id, int64_t seq, const char *fmt,
    ...) SOTP_PRINTF(5, 6);

static void
broken(struct sotp_audit_check *out, enum sotp_audit_problem problem,
    int64_t id, int64_t seq, const char *fmt, ...)
{
	va_list ap;

	out->problem = problem;
	out->bad_id = id;
	out->bad_seq = seq;
	va_start(ap, fmt);
	vsnprintf(out->what, sizeof(out->what), fmt, ap);
	va_end(ap);
}

/*
 * A row an append wrote on finding the chain's head set back: the first
 * one is named, unless an auditor has looked into it or into one after
 * it (w->past).
 */
static void
head_row(struct walk *w, const struct sotp_audit_row *r, int64_t seq)
{
	size_t i;

	for (i = 0; w->past != NULL && i < w->past->n; i++)
		if (w->past->p[i].id == r->id) {
			w->past->p[i].chain = w->chain;
			w->past->p[i].seq = seq;
			w->past->p[i].ts = r->ts;
			w->said_id = 0;
			return;
		}
	if (w->said_id != 0)
		return;
	w->said_id = r->id;
	w->said_seq = seq;
	sotp_strlcpy(w->said, r->detail, sizeof(w->said));
}

/* One linked row, in chain order; stops (1) at the first that breaks. */
static int
walk_row(
    void *arg, const struct sotp_audit_row *r, const struct sotp_audit_link *l)
{
	struct walk *w = arg;
	struct sotp_audit_rec rec;
	uint8_t mac[SOTP_AUDIT_MAC_LEN];

	w->bad_id = r->id;
	w->bad_seq = l->seq;
	if (l->seq != w->last + 1) {
		w->bad = 1;
		return 1;
	}
	rec_of(r, &rec);
	if (l->has_mac && l->keyed >= 0)
		w->rc = row_mac(
		    w->ctx, w->prev, l->seq, l->keyed, l->kv, &rec, mac);
	/*
	 * Its version's audit key not held: the walk stops here, and goes
	 * on from here once walk_to_head has loaded it (it cannot reach the
	 * store from inside the walk).
	 */
	if (w->rc == SOTP_ERR_NOT_FOUND) {
		w->rc = SOTP_OK;
		w->need = 1;
		w->need_kv = l->kv;
		return 1;
	}
	if (w->rc == SOTP_OK && l->has_mac && l->keyed >= 0 &&
	    CRYPTO_memcmp(mac, l->mac, sizeof(mac)) == 0) {
		memcpy(w->prev, l->mac, sizeof(w->prev));
		w->last = l->seq;
		if (l->keyed == 0 && w->out->unkeyed++ == 0)
			w->out->unkeyed_id = r->id;
		if (l->keyed == 1 &&
		    strcmp(r->action, SOTP_AUDIT_HEAD_ACTION) == 0 &&
		    strcmp(r->verdict, "error") == 0)
			head_row(w, r, l->seq);
		if (l->seq == 1 && l->keyed == 1 &&
		    (l->kv == 0 || strcmp(r->action, "key.create") == 0))
			w->anchored = 1;
		w->out->rows++;
		if (w->out->first_seq == 0)
			w->out->first_seq = l->seq;
		w->out->last_seq = l->seq;
		return 0;
	}
	w->bad = 2;
	return 1;
}

/*
 * Names the first break. A row past the chain's head was put in (its
 * appender could not move the tagged head); below it, a gap is rows
 * removed, a row whose MAC does not hold was changed (or put in by
 * renumbering the rows after it, which changes them too).
 */
static void
classify(struct walk *w, const struct sotp_audit_head *h)
{
	long long id = (long long)w->bad_id, seq = (long long)w->bad_seq;

	if (w->bad_seq > h->seq)
		broken(w->out, SOTP_AUDIT_INSERTED, w->bad_id, w->bad_seq,
		    "row %lld (seq %lld) inserted out of order: past the "
		    "chain's head (seq %lld)",
		    id, seq, (long long)h->seq);
	else if (w->bad == 1 && w->bad_seq <= w->last)
		broken(w->out, SOTP_AUDIT_INSERTED, w->bad_id, w->bad_seq,
		    "row %lld (seq %lld) inserted out of order: seq %lld "
		    "already verified",
		    id, seq, (long long)w->last);
	else if (w->bad == 1)
		broken(w->out, SOTP_AUDIT_REMOVED, w->bad_id, w->bad_seq,
		    "rows removed: seq %lld..%lld missing before row %lld",
		    (long long)(w->last + 1), seq - 1, id);
	else
		broken(w->out, SOTP_AUDIT_CHANGED, w->bad_id, w->bad_seq,
		    "row %lld (seq %lld) changed: its MAC does not hold", id,
		    seq);
}

static int
tag_ok(struct sotp_ctx *ctx, uint32_t kv, const char *which, int64_t seq,
    const uint8_t *mac, const uint8_t *tag, int has_tag, int *ok)
{
	uint8_t want[SOTP_AUDIT_MAC_LEN];
	int rc;

	*ok = 0;
	if (!has_tag)
		return SOTP_OK;
	rc = link_tag(ctx, kv, which, seq, mac, want);
	if (rc == SOTP_ERR_NOT_FOUND) {
		ctx->err[0] = '\0';
		return SOTP_OK; /* tagged under no key the store holds */
	}
	if (rc != SOTP_OK)
		return rc;
	*ok = CRYPTO_memcmp(want, tag, sizeof(want)) == 0;
	return SOTP_OK;
}

/* The base the chain starts from: the last pruned row, or none. */
static int
check_base(struct walk *w, const struct sotp_audit_head *h)
{
	int rc, ok = 0, live = 1;

	if (h->base_seq == 0 && !h->has_base_tag)
		return SOTP_OK;
	if ((rc = tag_ok(w->ctx, h->base_kv, "base", h->base_seq, h->base_mac,
	         h->base_tag, h->has_base_tag, &ok)) != SOTP_OK)
		return rc;
	if (ok && (rc = live_now(w, h->base_kv, &live)) != SOTP_OK)
		return rc;
	if (!ok)
		broken(w->out, SOTP_AUDIT_BASE, 0, h->base_seq,
		    "the chain's base (seq %lld) was not set by a prune",
		    (long long)h->base_seq);
	else if (!live)
		broken(w->out, SOTP_AUDIT_BASE, 0, h->base_seq,
		    "the chain's base (seq %lld) is tagged under key version "
		    "%lu, retired: moved by hand, or tagged before tags "
		    "moved on at a retirement (see audit retag)",
		    (long long)h->base_seq, (unsigned long)h->base_kv);
	memcpy(w->prev, h->base_mac, sizeof(w->prev));
	w->last = h->base_seq;
	return SOTP_OK;
}

/*
 * The walk stopped at a row keyed by w->need_kv, whose audit key this
 * process does not hold now: loaded, the walk goes on from that row (not
 * counted as a try). A version the store holds no audit key of, under
 * any KEK, keyed no row: that row was changed (w->bad). One it holds but
 * this process cannot open is no verdict on the row: an error naming
 * the row, the version and why.
 */
static int
need_key(struct walk *w, int *tries)
{
	char why[sizeof(w->ctx->err)];
	int rc;

	if (w->need_kv == w->last_need_kv && w->last == w->last_need_at) {
		/* Loaded, and given way again before its row was reached. */
		sotp_ctx_seterr(w->ctx,
		    "the audit key of key version %lu, for row %lld (seq %lld), does not stay loaded",
		    (unsigned long)w->need_kv, (long long)w->bad_id,
		    (long long)w->bad_seq);
		return SOTP_ERR_KEY;
	}
	w->last_need_kv = w->need_kv;
	w->last_need_at = w->last;
	rc = sotp_keys_audit_load(w->ctx, w->need_kv);
	if (rc == SOTP_OK) {
		(*tries)--;
		return SOTP_OK;
	}
	if (rc == SOTP_ERR_NOT_FOUND) {
		w->ctx->err[0] = '\0';
		w->bad = 2;
		return SOTP_OK;
	}
	if (rc == SOTP_ERR_KEY) {
		sotp_strlcpy(why, w->ctx->err, sizeof(why));
		sotp_ctx_seterr(w->ctx,
		    "row %lld (seq %lld) is keyed by key version %lu, whose audit key this process cannot load (not a verdict on the row): %s",
		    (long long)w->bad_id, (long long)w->bad_seq,
		    (unsigned long)w->need_kv, why);
	}
	return rc;
}

/*
 * Walks what was linked past w->last, then reads the head; rows appended
 * meanwhile (the head moved on) are walked in turn, until the walk ends
 * where the head is. A head that stays ahead of the rows lost its tail.
 */
static int
walk_to_head(struct walk *w, struct sotp_audit_head *h)
{
	int64_t from;
	int rc, tries, ok = 0;

	for (tries = 0;; tries++) {
		from = w->last;
		w->need = 0;
		if ((rc = sotp_store_audit_walk(w->ctx->st, w->chain, w->last,
		         walk_row, w)) != SOTP_OK ||
		    (rc = w->rc) != SOTP_OK)
			return rc;
		if (w->need) {
			if ((rc = need_key(w, &tries)) != SOTP_OK)
				return rc;
			if (!w->bad)
				continue;
		}
		if ((rc = sotp_store_audit_head(w->ctx->st, w->chain, 0, h)) !=
		    SOTP_OK)
			return rc;
		if (w->bad) {
			classify(w, h);
			return SOTP_OK;
		}
		if (h->seq <= w->last || w->last == from || tries == 100)
			break;
	}
	if (h->seq < w->last) {
		broken(w->out, SOTP_AUDIT_HEAD, 0, h->seq,
		    "the chain's head (seq %lld) is behind its last row "
		    "(seq %lld)",
		    (long long)h->seq, (long long)w->last);
		return SOTP_OK;
	}
	if (h->seq != w->last) {
		broken(w->out, SOTP_AUDIT_REMOVED, 0, w->last + 1,
		    "rows removed at the end: seq %lld..%lld missing",
		    (long long)(w->last + 1), (long long)h->seq);
		return SOTP_OK;
	}
	/*
	 * A head at its base too: rows past a base removed and the head put
	 * back on it would otherwise pass (the base's own tag holds).
	 */
	if (h->seq > 0 &&
	    ((rc = tag_ok(w->ctx, h->kv, "head", h->seq, h->mac, h->tag,
	          h->has_tag, &ok)) != SOTP_OK ||
	        !ok || CRYPTO_memcmp(h->mac, w->prev, sizeof(w->prev)) != 0)) {
		if (rc == SOTP_OK)
			broken(w->out, SOTP_AUDIT_HEAD, 0, h->seq,
			    "the chain's head (seq %lld) does not match its "
			    "last row",
			    (long long)h->seq);
		return rc;
	}
	if (h->seq > 0) {
		if ((rc = live_now(w, h->kv, &ok)) != SOTP_OK)
			return rc;
		if (!ok)
			broken(w->out, SOTP_AUDIT_HEAD, 0, h->seq,
			    "the chain's head (seq %lld) is tagged under key "
			    "version %lu, retired: put back or made with a "
			    "retired key, or tagged before tags moved on at a "
			    "retirement (see audit retag)",
			    (long long)h->seq, (unsigned long)h->kv);
	}
	return SOTP_OK;
}

/*
 * Fetches the audit key of version kv ahead of the checks that use it
 * (a head's or a base's tag). One the store holds under no KEK is no
 * error: what names it does not verify. One it holds but this process
 * cannot open is (SOTP_ERR_KEY), never taken for a tag that does not
 * hold.
 */
static int
load_audit_key(struct sotp_ctx *ctx, uint32_t kv)
{
	int rc = sotp_keys_audit_load(ctx, kv);

	if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		return rc;
	ctx->err[0] = '\0';
	return SOTP_OK;
}

/*
 * One chain, from its base to its head, into out (zeroed first).
 * *anchored: it starts from a prune's base, or at the store's first row
 * (anchored_at).
 */
static int
verify_chain(struct sotp_ctx *ctx, int chain, struct live *live,
    struct pasts *past, struct sotp_audit_check *out, int *anchored)
{
	struct sotp_audit_head h;
	struct walk w;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&w, 0, sizeof(w));
	w.ctx = ctx;
	w.live = live;
	w.out = out;
	w.chain = chain;
	w.past = past;
	w.last_need_at = -1; /* no key loaded yet (need_key) */
	*anchored = 0;
	if ((rc = sotp_store_audit_head(ctx->st, chain, 0, &h)) != SOTP_OK ||
	    (rc = load_audit_key(ctx, h.kv)) != SOTP_OK ||
	    (rc = load_audit_key(ctx, h.base_kv)) != SOTP_OK ||
	    (rc = check_base(&w, &h)) != SOTP_OK)
		return rc;
	out->base_seq = h.base_seq;
	if (out->problem == SOTP_AUDIT_OK)
		rc = walk_to_head(&w, &h);
	/*
	 * What an append found is named once the walk holds: the chain is
	 * whole from there on, but rows before that row may be gone.
	 */
	if (rc == SOTP_OK && out->problem == SOTP_AUDIT_OK && w.said_id != 0)
		broken(out, SOTP_AUDIT_HEAD, w.said_id, w.said_seq,
		    "row %lld (seq %lld): an append found the chain's head set "
		    "back or changed by hand (%s): rows before it may have "
		    "been removed",
		    (long long)w.said_id, (long long)w.said_seq, w.said);
	*anchored = h.base_seq > 0 || w.anchored;
	return rc;
}

/*
 * No chain anchored: every chain empty, or none begins at a prune's base
 * or at the store's first row. A store whose keys hold an audit key had
 * its first one made in the same transaction as a chained row
 * (key.create, keys_admin.c: the first row of its chain, or a row after
 * ones under version 0, the master key file's, from before key versions;
 * either way seq 1 of its chain is one or the other), and a chain's head
 * never goes back, nor does a prune leave it without a base. So a trail
 * without an anchor is rows removed and the heads set back to nothing by
 * hand, and a chain begun again since (the next decision) does not hide
 * it. (A store whose current version has no audit key, made before key
 * versions and not yet taken over by init, claims nothing.)
 */
static int
check_anchor(struct sotp_ctx *ctx, int chain, struct sotp_audit_check *out)
{
	uint32_t kv = 0;
	int rc;

	if ((rc = sotp_keys_current(ctx, &kv)) != SOTP_OK)
		return rc;
	rc = sotp_keys_audit_load(ctx, kv);
	if (rc == SOTP_ERR_KEY || rc == SOTP_ERR_NOT_FOUND) {
		ctx->err[0] = '\0';
		return SOTP_OK;
	}
	if (rc != SOTP_OK)
		return rc;
	if (chain == 0)
		broken(out, SOTP_AUDIT_REMOVED, 0, 1,
		    "rows removed: every chain is empty and its head set "
		    "back, yet key version %lu was made with an audited row",
		    (unsigned long)kv);
	else
		broken(out, SOTP_AUDIT_REMOVED, 0, 1,
		    "rows removed: no chain begins at the store's first row "
		    "(key.create) or at a prune's base, yet key version %lu "
		    "was made with an audited row: the heads were set back "
		    "to nothing, and chain %d begun again",
		    (unsigned long)kv, chain);
	out->bad_chain = chain;
	return SOTP_OK;
}

/*
 * Every chain (the fixed head rows), the first break named with its
 * chain. With one chain holding rows (always on SQLite) the figures are
 * that chain's; with more, the rows add up. past: rows "audit.head" not
 * to name, or NULL.
 */
static int
verify(struct sotp_ctx *ctx, struct pasts *past, struct sotp_audit_check *out)
{
	struct sotp_audit_check one;
	struct live *live = NULL;
	char why[sizeof(ctx->err)];
	size_t n;
	int64_t id, seq;
	int rc, chain, last = 0, anchored = 0, one_anchored = 0;

	if (ctx == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	if ((live = malloc(sizeof(*live))) == NULL)
		return SOTP_ERR_NOMEM;
	if ((rc = read_live(ctx, live)) != SOTP_OK)
		goto out;
	for (chain = 1; chain <= SOTP_AUDIT_CHAINS; chain++) {
		if ((rc = verify_chain(ctx, chain, live, past, &one,
		         &one_anchored)) != SOTP_OK)
			goto out;
		anchored |= one_anchored;
		if (past != NULL)
			past->walked[chain] = one.last_seq > one.base_seq
			    ? one.last_seq
			    : one.base_seq;
		if (one.problem != SOTP_AUDIT_OK) {
			out->problem = one.problem;
			out->bad_id = one.bad_id;
			out->bad_seq = one.bad_seq;
			out->bad_chain = chain;
			out->base_seq = one.base_seq;
			n = 0;
			if (chain > 1)
				n = (size_t)snprintf(out->what,
				    sizeof(out->what), "chain %d: ", chain);
			sotp_strlcpy(
			    out->what + n, one.what, sizeof(out->what) - n);
			break;
		}
		if (one.rows == 0 && one.base_seq == 0)
			continue;
		out->chains++;
		out->rows += one.rows;
		if (out->unkeyed == 0 ||
		    (one.unkeyed_id != 0 && one.unkeyed_id < out->unkeyed_id))
			out->unkeyed_id = one.unkeyed_id;
		out->unkeyed += one.unkeyed;
		if (out->chains == 1) {
			out->first_seq = one.first_seq;
			out->last_seq = one.last_seq;
			out->base_seq = one.base_seq;
			last = chain;
		}
	}
	if ((rc = sotp_store_audit_counts(
	         ctx->st, &out->pending, &out->legacy)) != SOTP_OK)
		goto out;
	if (out->problem != SOTP_AUDIT_OK)
		goto out;
	if (!anchored &&
	    (rc = check_anchor(ctx, out->chains > 0 ? last : 0, out)) !=
	        SOTP_OK)
		goto out;
	if (out->problem != SOTP_AUDIT_OK)
		goto out;
	/* A row no chain walks past: put in beside them. */
	if ((rc = sotp_store_audit_stray(ctx->st, &id, &seq)) == SOTP_OK) {
		broken(out, SOTP_AUDIT_INSERTED, id, seq,
		    "row %lld (seq %lld) inserted out of order: in no chain",
		    (long long)id, (long long)seq);
		goto out;
	}
	if (rc != SOTP_ERR_NOT_FOUND)
		goto out;
	rc = SOTP_OK;
	if (out->chains > 1)
		snprintf(out->what, sizeof(out->what),
		    "chains verified: %lld rows in %d chains",
		    (long long)out->rows, out->chains);
	else if (last <= 1)
		snprintf(out->what, sizeof(out->what),
		    "chain verified: %lld rows, seq %lld..%lld",
		    (long long)out->rows, (long long)out->first_seq,
		    (long long)out->last_seq);
	else
		snprintf(out->what, sizeof(out->what),
		    "chain %d verified: %lld rows, seq %lld..%lld", last,
		    (long long)out->rows, (long long)out->first_seq,
		    (long long)out->last_seq);
out:
	free(live);
	if (rc == SOTP_ERR_KEY) {
		sotp_strlcpy(why, ctx->err, sizeof(why));
		sotp_ctx_seterr(ctx, "audit verify: %s", why);
	} else if (rc != SOTP_OK)
		sotp_ctx_seterr(
		    ctx, "audit verify: %s", sotp_store_errmsg(ctx->st));
	return rc;
}

int
sotp_audit_verify(struct sotp_ctx *ctx, struct sotp_audit_check *out)
{
	return verify(ctx, NULL, out);
}

/* One tag under a version no longer live, tagged again under `to`. */
static int
retag_one(struct sotp_ctx *ctx, const struct live *l, uint32_t to,
    const char *which, int64_t seq, const uint8_t *mac, uint32_t *kv,
    uint8_t *tag, int has_tag, int *changed)
{
	int rc, ok = 0;

	if (!has_tag || is_live(l, *kv))
		return SOTP_OK;
	/* Only a tag that holds is carried over: not one made by hand. */
	if ((rc = load_audit_key(ctx, *kv)) != SOTP_OK ||
	    (rc = tag_ok(ctx, *kv, which, seq, mac, tag, has_tag, &ok)) !=
	        SOTP_OK ||
	    !ok)
		return rc;
	if ((rc = link_tag(ctx, to, which, seq, mac, tag)) != SOTP_OK)
		return rc;
	*kv = to;
	*changed = 1;
	return SOTP_OK;
}

int
sotp_audit_retag(struct sotp_ctx *ctx, uint32_t to, int *retagged)
{
	struct sotp_audit_head h;
	struct live *l;
	int rc, chain, changed;

	*retagged = 0;
	if ((l = malloc(sizeof(*l))) == NULL)
		return SOTP_ERR_NOMEM;
	if ((rc = read_live(ctx, l)) != SOTP_OK ||
	    (rc = sotp_keys_audit_load(ctx, to)) != SOTP_OK)
		goto out;
	for (chain = 1; chain <= SOTP_AUDIT_CHAINS; chain++) {
		changed = 0;
		if ((rc = sotp_store_audit_head(ctx->st, chain, 1, &h)) !=
		        SOTP_OK ||
		    (rc = retag_one(ctx, l, to, "head", h.seq, h.mac, &h.kv,
		         h.tag, h.has_tag, &changed)) != SOTP_OK ||
		    (rc = retag_one(ctx, l, to, "base", h.base_seq, h.base_mac,
		         &h.base_kv, h.base_tag, h.has_base_tag, &changed)) !=
		        SOTP_OK)
			goto out;
		if (changed) {
			if ((rc = sotp_store_audit_head_set(ctx->st, &h)) !=
			    SOTP_OK)
				goto out;
			(*retagged)++;
		}
	}
out:
	free(l);
	return rc;
}

/*
 * A store whose rotations retired versions before a retirement tagged
 * heads and bases again: those left under a retired version fail verify
 * until an auditor, having checked that history otherwise (a verify by
 * the release that wrote it, a backup), has them tagged again under the
 * current version. Everything else must verify first. Audited.
 */
int
sotp_audit_retag_old(struct sotp_ctx *ctx, time_t now, int *retagged,
    struct sotp_audit_check *check)
{
	char detail[64];
	uint32_t kv = 0;
	int rc;

	if (retagged != NULL)
		*retagged = 0;
	if (ctx == NULL || retagged == NULL || check == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_audit_verify(ctx, check)) != SOTP_OK)
		return rc;
	if (check->problem != SOTP_AUDIT_OK &&
	    !((check->problem == SOTP_AUDIT_HEAD ||
	          check->problem == SOTP_AUDIT_BASE) &&
	        strstr(check->what, ", retired") != NULL))
		return SOTP_OK;
	if ((rc = sotp_keys_current(ctx, &kv)) != SOTP_OK ||
	    (rc = sotp_store_begin_every_head(ctx->st)) != SOTP_OK)
		goto fail;
	if ((rc = sotp_audit_retag(ctx, kv, retagged)) == SOTP_OK &&
	    *retagged > 0) {
		snprintf(detail, sizeof(detail), "retagged=%d current=%u",
		    *retagged, kv);
		rc = sotp_audit(ctx, now, "audit.retag", NULL, NULL, NULL,
		    "accept", SOTP_R_ACCEPTED, detail);
	}
	if (rc != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		goto fail;
	}
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		goto fail;
	/* What is there now, verified again. */
	return sotp_audit_verify(ctx, check);
fail:
	*retagged = 0;
	sotp_ctx_seterr(ctx, "audit retag: %s", sotp_store_errmsg(ctx->st));
	return rc;
}

/* ---- pruning ---- */

/*
 * One chain's part, under its head's lock: its base moves on, no further
 * than upto (the verify's walk).
 */
static int
prune_chain(struct sotp_ctx *ctx, uint32_t kv, int chain, int64_t before,
    int64_t upto, int64_t *removed, int64_t *through)
{
	struct sotp_audit_head h;
	int64_t first = 0, s, n = 0;
	int rc;

	if ((rc = sotp_store_audit_head(ctx->st, chain, 1, &h)) != SOTP_OK ||
	    (rc = sotp_store_audit_prune_point(
	         ctx->st, chain, before, &first)) != SOTP_OK)
		return rc;
	s = first > 0 ? first - 1 : h.seq;
	if (s > upto)
		s = upto;
	if (s > h.base_seq) {
		if ((rc = sotp_store_audit_mac_at(
		         ctx->st, chain, s, h.base_mac)) != SOTP_OK ||
		    (rc = link_tag(ctx, kv, "base", s, h.base_mac,
		         h.base_tag)) != SOTP_OK)
			return rc;
		h.base_kv = kv;
		h.base_seq = s;
		h.has_base_tag = 1;
		if ((rc = sotp_store_audit_head_set(ctx->st, &h)) != SOTP_OK)
			return rc;
	}
	if ((rc = sotp_store_audit_prune(
	         ctx->st, chain, h.base_seq, before, &n)) != SOTP_OK)
		return rc;
	*removed += n;
	*through = h.base_seq;
	return SOTP_OK;
}

/*
 * After a verify: in each chain, the linked rows before `before` go, up
 * to the first one stamped at or after it (a row's place, not its clock,
 * orders a chain), and the last one removed becomes the chain's tagged
 * base. The heads are taken at the start, all of them in chain order (an
 * append holds one only).
 * The prune is itself a chained row. A row looked into (past) must go
 * with the rows before it: kept, verify would name it again.
 */
static int
prune(struct sotp_ctx *ctx, int64_t before, const struct pasts *past,
    time_t now, int64_t *removed, int64_t *through)
{
	char detail[128];
	size_t i, n;
	int64_t t;
	uint32_t kv = 0;
	int rc, chain;

	if ((rc = sotp_keys_current(ctx, &kv)) != SOTP_OK ||
	    (rc = sotp_store_begin_every_head(ctx->st)) != SOTP_OK)
		return rc;
	for (chain = 1; chain <= SOTP_AUDIT_CHAINS && rc == SOTP_OK; chain++) {
		t = 0;
		rc = prune_chain(
		    ctx, kv, chain, before, past->walked[chain], removed, &t);
		if (chain == 1)
			*through = t;
		for (i = 0; rc == SOTP_OK && i < past->n; i++)
			if (past->p[i].chain == chain && t < past->p[i].seq) {
				sotp_ctx_seterr(ctx,
				    "audit prune: --past %lld: the row stays, "
				    "as chain %d keeps its rows from seq %lld "
				    "on (one is stamped at or after --before "
				    "%lld): give a later time",
				    (long long)past->p[i].id, chain,
				    (long long)(t + 1), (long long)before);
				rc = SOTP_ERR_BAD_INPUT;
			}
	}
	if (rc != SOTP_OK)
		goto out;
	n = (size_t)snprintf(detail, sizeof(detail),
	    "before=%lld through=%lld rows=%lld", (long long)before,
	    (long long)*through, (long long)*removed);
	for (i = 0; i < past->n && n < sizeof(detail); i++)
		n += (size_t)snprintf(detail + n, sizeof(detail) - n, "%s%lld",
		    i == 0 ? " past=" : ",", (long long)past->p[i].id);
	rc = sotp_audit(ctx, now, "audit.prune", NULL, NULL, NULL, "accept",
	    SOTP_R_ACCEPTED, detail);
out:
	if (rc != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		return rc;
	}
	return sotp_store_commit(ctx->st);
}

/* Each row looked into: met by the walk, and stamped before `before`. */
static int
pasts_hold(struct sotp_ctx *ctx, const struct pasts *past, int64_t before)
{
	size_t i;

	for (i = 0; i < past->n; i++) {
		if (past->p[i].chain == 0) {
			sotp_ctx_seterr(ctx,
			    "audit prune: --past %lld: no such row \"%s\" "
			    "(verdict error) in a chain: give the row audit "
			    "verify names",
			    (long long)past->p[i].id, SOTP_AUDIT_HEAD_ACTION);
			return SOTP_ERR_NOT_FOUND;
		}
		if (past->p[i].ts >= before) {
			sotp_ctx_seterr(ctx,
			    "audit prune: --past %lld: the row is stamped "
			    "%lld, not before --before %lld: it would stay; "
			    "give a later time",
			    (long long)past->p[i].id, (long long)past->p[i].ts,
			    (long long)before);
			return SOTP_ERR_BAD_INPUT;
		}
	}
	return SOTP_OK;
}

int
sotp_audit_prune(struct sotp_ctx *ctx, int64_t before, const int64_t *past,
    size_t npast, time_t now, int64_t *removed, struct sotp_audit_check *check)
{
	struct pasts *p;
	int64_t through = 0;
	size_t i;
	int rc;

	if (removed != NULL)
		*removed = 0;
	if (ctx == NULL || removed == NULL || check == NULL ||
	    npast > SOTP_AUDIT_PAST_MAX || (npast > 0 && past == NULL))
		return SOTP_ERR_INVALID_ARG;
	for (i = 0; i < npast; i++)
		if (past[i] <= 0)
			return SOTP_ERR_INVALID_ARG;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return SOTP_ERR_NOMEM;
	for (i = 0; i < npast; i++)
		p->p[i].id = past[i];
	p->n = npast;
	/* What is not intact is evidence: it stays. */
	if ((rc = verify(ctx, p, check)) != SOTP_OK ||
	    check->problem != SOTP_AUDIT_OK ||
	    (rc = pasts_hold(ctx, p, before)) != SOTP_OK) {
		free(p);
		return rc;
	}
	rc = prune(ctx, before, p, now, removed, &through);
	free(p);
	if (rc != SOTP_OK && rc != SOTP_ERR_BAD_INPUT)
		sotp_ctx_seterr(
		    ctx, "audit prune: %s", sotp_store_errmsg(ctx->st));
	if (rc != SOTP_OK)
		*removed = 0;
	return rc;
}

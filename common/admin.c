/*
 * admin.c - the operations behind the admin CLI: tokens and contracts.
 *
 * Each call validates its input, refuses with a reason (audited) or makes
 * one change (audited). Secrets arrive in plain text and leave sealed.
 */
#include "sotp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#define SECRET_LEN 20 /* 160 bits, RFC 4226 section 4 R6 recommends this */

void
sotp_token_spec_defaults(
    const struct sotp_ctx *ctx, struct sotp_token_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->alg = ctx->pol.alg;
	spec->digits = ctx->pol.digits;
	spec->period = ctx->pol.period;
}

/*
 * The start of an admin call: d a refusal until decided, and a context
 * loaded with the master key (ready) or, for what touches no secret, with
 * or without it (ready_nokey: the help desk, sotp_ctx_load_nokey).
 */
static int
ready_nokey(struct sotp_ctx *ctx, struct sotp_decision *d)
{
	if (ctx == NULL || d == NULL)
		return SOTP_ERR_INVALID_ARG;
	memset(d, 0, sizeof(*d));
	d->verdict = SOTP_REJECT;
	d->reason = SOTP_R_BAD_CONFIG;
	return sotp_ctx_ready_nokey(ctx);
}

static int
ready(struct sotp_ctx *ctx, struct sotp_decision *d)
{
	int rc;

	if ((rc = ready_nokey(ctx, d)) != SOTP_OK)
		return rc;
	return sotp_ctx_ready(ctx);
}

static int
store_err(struct sotp_ctx *ctx, struct sotp_decision *d, int rc)
{
	sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	d->reason = (enum sotp_reason)sotp_reason_from_rc(rc);
	return rc;
}

/*
 * A change that reads before it writes (bind, unbind, close) runs in one
 * transaction with its audit row: the reads are taken under row locks,
 * and the change and its row land together or not at all.
 */
static int
admin_begin(struct sotp_ctx *ctx, struct sotp_decision *d)
{
	int rc;

	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		return store_err(ctx, d, rc);
	return SOTP_OK;
}

/*
 * Ends admin_begin's transaction with the outcome rc of the change (its
 * decision in d, its audit row written). An accept that cannot commit is
 * an error; a refusal stands even if its audit row was lost. The row's
 * line is logged as the transaction ends, saying which (audit.c).
 */
static int
admin_end(struct sotp_ctx *ctx, struct sotp_decision *d, int rc)
{
	if (rc != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		/* The change is undone, whatever its audit said. */
		if (d->verdict == SOTP_ACCEPT) {
			d->verdict = SOTP_REJECT;
			return store_err(ctx, d, rc);
		}
		return rc;
	}
	if ((rc = sotp_store_commit(ctx->st)) == SOTP_OK)
		return SOTP_OK;
	if (d->verdict != SOTP_ACCEPT)
		return SOTP_OK;
	d->verdict = SOTP_REJECT;
	return store_err(ctx, d, rc);
}

typedef int contract_change_fn(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d);

/* A contract change that decides on the contract read under its lock. */
static int
locked_change(struct sotp_ctx *ctx, const char *action, const char *id,
    time_t now, struct sotp_decision *d, contract_change_fn *change)
{
	int rc;

	if ((rc = ready_nokey(ctx, d)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(id))
		return sotp_refuse(
		    ctx, d, now, action, NULL, NULL, SOTP_R_UNKNOWN_CONTRACT);
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		return rc;
	return admin_end(ctx, d, change(ctx, id, now, d));
}

/* What sotp_id_valid and password_ok take, for their refusals' detail. */
#define ID_RULE                                                                \
	"the ID is not 1 to 64 printable ASCII characters without blank, "     \
	"'\"' or '\\'"
#define PASSWORD_RULE "the password is not 1 to 256 bytes"

/* The otpauth URI of token t whose secret is key (plain); *uri is new. */
static int
token_uri_of(const struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const uint8_t *key, size_t keylen, char **uri)
{
	struct sotp_uri u;
	int rc;

	memset(&u, 0, sizeof(u));
	sotp_strlcpy(u.issuer, ctx->pol.issuer, sizeof(u.issuer));
	sotp_strlcpy(u.account, t->serial, sizeof(u.account));
	u.alg = t->alg;
	u.digits = t->digits;
	u.period = t->period;
	u.counter = (uint64_t)(t->last_step + 1);
	if ((rc = sotp_base32_encode(
	         key, keylen, u.secret, sizeof(u.secret))) == SOTP_OK)
		rc = sotp_uri_build(&u, uri);
	sotp_wipe(&u, sizeof(u));
	return rc;
}

/*
 * A new token's secret exported as it is added (token generate): the URI,
 * its token.export row and the caller's hold (its PNG), inside the
 * insert's transaction, so that the token, its row, the export's row and
 * the file land together or not at all. On failure *uri is NULL and `why`
 * says what failed.
 */
struct export_req {
	const char *how;        /* the forms, as the row's detail: "uri qr" */
	sotp_uri_hold_cb *hold; /* the caller's part, before the commit */
	void *hold_arg;
	char **uri;
	char why[SOTP_CTX_ERR_MAX];
};

static int
export_new(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const uint8_t *secret, size_t len, time_t now, struct export_req *ex)
{
	int rc;

	if ((rc = token_uri_of(ctx, t, secret, len, ex->uri)) != SOTP_OK) {
		snprintf(ex->why, sizeof(ex->why),
		    "its otpauth URI cannot be made: %s", sotp_strerror(rc));
		return rc;
	}
	if ((rc = sotp_audit(ctx, now, "token.export", NULL, t->serial, NULL,
	         "accept", SOTP_R_ACCEPTED, ex->how)) != SOTP_OK) {
		snprintf(ex->why, sizeof(ex->why),
		    "its export's audit row cannot be written: %s",
		    sotp_store_errmsg(ctx->st));
	} else if (ex->hold != NULL &&
	    (rc = ex->hold(ex->hold_arg, t->serial, *ex->uri, ex->why,
	         sizeof(ex->why))) != SOTP_OK &&
	    ex->why[0] == '\0') {
		snprintf(ex->why, sizeof(ex->why), "its export failed: %s",
		    sotp_strerror(rc));
	}
	if (rc != SOTP_OK) {
		sotp_free_string(*ex->uri);
		*ex->uri = NULL;
	}
	return rc;
}

/*
 * In the add's transaction: a secret another token already holds (a seed
 * given twice, under two serials: each token's codes would be the
 * other's) is refused (d filled, audited) naming that token, never the
 * secret; *refused then. One indexed lookup per live key version
 * (seedfp.c); an error when the store cannot be checked.
 */
static int
seed_check(struct sotp_ctx *ctx, const char *serial, const uint8_t *secret,
    size_t len, time_t now, struct sotp_decision *d, int *refused)
{
	struct sotp_seed_check sc;
	char holder[SOTP_ID_MAX], detail[SOTP_ID_MAX + 48];
	int rc, found = 0;

	*refused = 0;
	if ((rc = sotp_seed_check_begin(ctx, &sc)) != SOTP_OK ||
	    (rc = sotp_seed_held(ctx, &sc, secret, len, &found, holder,
	         sizeof(holder))) != SOTP_OK) {
		d->reason = (enum sotp_reason)sotp_seed_reason(&sc, rc);
		return rc;
	}
	if (!found)
		return SOTP_OK;
	*refused = 1;
	sotp_ctx_seterr(ctx,
	    "the same secret as token '%s', already in the store: each token needs a seed of its own",
	    holder);
	snprintf(detail, sizeof(detail), "same secret as token '%s'", holder);
	memset(d, 0, sizeof(*d));
	d->verdict = SOTP_REJECT;
	d->reason = SOTP_R_BAD_INPUT;
	/* As sotp_refuse: a refusal stands even if its row is lost. */
	(void)sotp_audit(ctx, now, "token.add", NULL, serial, NULL, "reject",
	    SOTP_R_BAD_INPUT, detail);
	return SOTP_OK;
}

/*
 * check_seed: a secret given (token add) is looked for in the store; a
 * generated one is fresh. Either way the token gets its fingerprint.
 */
static int
token_insert(struct sotp_ctx *ctx, const struct sotp_token_spec *spec,
    const uint8_t *secret, size_t len, int check_seed, time_t now,
    struct sotp_decision *d, struct export_req *ex)
{
	struct sotp_token_rec t;
	const char *kind, *why = NULL;
	int rc, refused = 0;

	memset(&t, 0, sizeof(t));
	kind = spec->kind != NULL ? spec->kind
	                          : ctx->pol.kinds[ctx->pol.default_kind].name;
	/* Each refusal names the one thing wrong (what the operator fixes). */
	if (!sotp_id_valid(spec->serial))
		why = ID_RULE;
	else if (sotp_alg_name(spec->alg) == NULL)
		why = "unknown algorithm";
	else if (spec->digits < 6 || spec->digits > 8)
		why = "digits must be 6 to 8";
	else if (spec->period > 300)
		why = "period must be 1 to 300 s (0: an HOTP token)";
	else if (spec->counter > SOTP_COUNTER_MAX)
		why = "counter too large";
	else if (len < ctx->pol.min_secret_bytes || len > 64)
		why = "";
	if (why != NULL) {
		if (why[0] != '\0')
			sotp_ctx_seterr(ctx, "%s", why);
		else
			sotp_ctx_seterr(ctx,
			    "a secret of %zu bytes: the policy takes %u to 64",
			    len, ctx->pol.min_secret_bytes);
		return sotp_refuse(ctx, d, now, "token.add", NULL,
		    sotp_id_valid(spec->serial) ? spec->serial : NULL,
		    SOTP_R_BAD_INPUT);
	}
	if (sotp_policy_kind(&ctx->pol, kind) == NULL) {
		sotp_ctx_seterr(
		    ctx, "kind '%s' is not defined in %s", kind, ctx->pol.path);
		return sotp_refuse(ctx, d, now, "token.add", NULL, spec->serial,
		    SOTP_R_BAD_INPUT);
	}
	sotp_strlcpy(t.serial, spec->serial, sizeof(t.serial));
	sotp_strlcpy(t.kind, kind, sizeof(t.kind));
	t.alg = spec->alg;
	t.digits = spec->digits;
	t.period = spec->period;
	/* HOTP: the counter before the token's next code counts as used. */
	t.last_step = spec->period == 0 ? (int64_t)spec->counter - 1 : -1;
	t.created = (int64_t)now;
	/* The serial is the AAD: a sealed secret cannot move to a token. */
	if ((rc = sotp_keys_seal(ctx, t.serial, secret, len, t.secret,
	         sizeof(t.secret), &t.secret_len)) != SOTP_OK)
		goto out;
	(void)sotp_sealed_kv(t.secret, t.secret_len, &t.kv);
	if ((rc = sotp_seed_fp(ctx, t.kv, secret, len, t.seed_fp)) != SOTP_OK)
		goto out;
	t.has_fp = 1;
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		goto out;
	/* A serial already there is refused as such, before its seed. */
	rc = sotp_store_token_lock(ctx->st, t.serial);
	if (rc == SOTP_OK)
		rc = SOTP_ERR_EXISTS;
	else if (rc == SOTP_ERR_NOT_FOUND) {
		if (check_seed &&
		    ((rc = seed_check(ctx, t.serial, secret, len, now, d,
		          &refused)) != SOTP_OK ||
		        refused))
			goto end;
		rc = sotp_store_token_insert(ctx->st, &t);
	}
	if (rc == SOTP_ERR_EXISTS)
		rc = sotp_refuse(
		    ctx, d, now, "token.add", NULL, t.serial, SOTP_R_EXISTS);
	else if (rc != SOTP_OK)
		rc = store_err(ctx, d, rc);
	else if ((rc = sotp_admin_ok(ctx, d, now, "token.add", NULL, t.serial,
	              t.kind)) == SOTP_OK &&
	    ex != NULL)
		rc = export_new(ctx, &t, secret, len, now, ex);
end:
	rc = admin_end(ctx, d, rc);
out:
	/*
	 * A generated token undone (its rows, its export): say so, in the
	 * export's own words or else the failure's.
	 */
	if (rc != SOTP_OK && ex != NULL) {
		if (ex->why[0] == '\0')
			sotp_strlcpy(
			    ex->why, sotp_ctx_errmsg(ctx), sizeof(ex->why));
		sotp_ctx_seterr(ctx,
		    "token %s not generated, nothing stored: %s", spec->serial,
		    ex->why);
	}
	sotp_wipe(&t, sizeof(t));
	return rc;
}

int
sotp_token_add(struct sotp_ctx *ctx, const struct sotp_token_spec *spec,
    const uint8_t *secret, size_t len, time_t now, struct sotp_decision *d)
{
	int rc;

	if (spec == NULL || secret == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = ready(ctx, d)) != SOTP_OK)
		return rc;
	return token_insert(ctx, spec, secret, len, 1, now, d, NULL);
}

int
sotp_token_generate(struct sotp_ctx *ctx, const struct sotp_token_spec *spec,
    const char *how, sotp_uri_hold_cb *hold, void *hold_arg, time_t now,
    char *serial_out, char **uri, struct sotp_decision *d)
{
	struct sotp_token_spec s;
	struct export_req ex;
	uint8_t secret[SECRET_LEN], rnd[5];
	int rc, tries;

	if (uri != NULL)
		*uri = NULL;
	if (spec == NULL || serial_out == NULL ||
	    (how == NULL) != (uri == NULL) || (hold != NULL && uri == NULL))
		return SOTP_ERR_INVALID_ARG;
	serial_out[0] = '\0';
	memset(&ex, 0, sizeof(ex));
	ex.how = how;
	ex.hold = hold;
	ex.hold_arg = hold_arg;
	ex.uri = uri;
	if ((rc = ready(ctx, d)) != SOTP_OK)
		return rc;
	s = *spec;
	/* A fresh 12-digit serial; retried on the rare collision. */
	for (tries = 0; tries < 8; tries++) {
		if ((rc = sotp_random(rnd, sizeof(rnd))) != SOTP_OK ||
		    (rc = sotp_random(secret, sizeof(secret))) != SOTP_OK)
			goto out;
		snprintf(serial_out, SOTP_ID_MAX, "SO%010llu",
		    (unsigned long long)(((uint64_t)rnd[0] << 32 |
		                             (uint64_t)rnd[1] << 24 |
		                             (uint64_t)rnd[2] << 16 |
		                             (uint64_t)rnd[3] << 8 | rnd[4]) %
		        10000000000ULL));
		s.serial = serial_out;
		if ((rc = token_insert(ctx, &s, secret, sizeof(secret), 0, now,
		         d, uri != NULL ? &ex : NULL)) != SOTP_OK ||
		    d->reason != SOTP_R_EXISTS)
			goto out;
	}
out:
	SOTP_WIPE_ARRAY(secret);
	if (rc != SOTP_OK || d->verdict != SOTP_ACCEPT) {
		serial_out[0] = '\0';
		if (uri != NULL) {
			sotp_free_string(*uri);
			*uri = NULL;
		}
	}
	return rc;
}

static void
token_info(const struct sotp_token_rec *t, struct sotp_token_info *out)
{
	memset(out, 0, sizeof(*out));
	sotp_strlcpy(out->serial, t->serial, sizeof(out->serial));
	sotp_strlcpy(out->kind, t->kind, sizeof(out->kind));
	out->alg = t->alg;
	out->digits = t->digits;
	out->period = t->period;
	out->last_step = t->last_step;
	out->drift = t->drift;
	out->disabled = t->disabled;
	sotp_strlcpy(out->contract, t->contract, sizeof(out->contract));
	out->created = t->created;
}

int
sotp_token_get(
    struct sotp_ctx *ctx, const char *serial, struct sotp_token_info *out)
{
	struct sotp_token_rec t;
	int rc;

	if (ctx == NULL || serial == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(serial))
		return SOTP_ERR_NOT_FOUND;
	if ((rc = sotp_store_token_get(ctx->st, serial, &t)) != SOTP_OK) {
		if (rc != SOTP_ERR_NOT_FOUND)
			sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
		return rc;
	}
	token_info(&t, out);
	sotp_wipe(&t, sizeof(t));
	return SOTP_OK;
}

struct list_arg {
	sotp_token_cb *cb;
	void *arg;
};

static int
list_one(void *arg, const struct sotp_token_rec *t)
{
	const struct list_arg *la = arg;
	struct sotp_token_info info;

	token_info(t, &info);
	return la->cb(la->arg, &info);
}

int
sotp_token_list(
    struct sotp_ctx *ctx, int unassigned_only, sotp_token_cb *cb, void *arg)
{
	struct list_arg la = {cb, arg};
	int rc;

	if (ctx == NULL || cb == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_token_list(
	         ctx->st, unassigned_only, list_one, &la)) != SOTP_OK)
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

int
sotp_token_set_disabled(struct sotp_ctx *ctx, const char *serial, int disabled,
    time_t now, struct sotp_decision *d)
{
	const char *action = disabled ? "token.disable" : "token.enable";
	struct sotp_token_rec t;
	int rc;

	if ((rc = ready_nokey(ctx, d)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(serial))
		return sotp_refuse(
		    ctx, d, now, action, NULL, NULL, SOTP_R_UNKNOWN_SERIAL);
	/* The row names the contract the token was bound to, if any. */
	memset(&t, 0, sizeof(t));
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		return rc;
	rc = sotp_store_token_get(ctx->st, serial, &t);
	if (rc == SOTP_OK)
		rc = sotp_store_token_set_disabled(ctx->st, serial, disabled);
	if (rc == SOTP_ERR_NOT_FOUND)
		rc = sotp_refuse(
		    ctx, d, now, action, NULL, NULL, SOTP_R_UNKNOWN_SERIAL);
	else if (rc != SOTP_OK)
		rc = store_err(ctx, d, rc);
	else
		rc = sotp_admin_ok(ctx, d, now, action, t.contract, serial,
		    t.disabled == (disabled != 0) ? "unchanged" : NULL);
	sotp_wipe(&t, sizeof(t));
	return admin_end(ctx, d, rc);
}

/*
 * An export of a secret is an admin action like any other: its audit row
 * (and log line) is written before the secret leaves, and an export that
 * cannot be audited does not happen. The row records only an export
 * that is shown: the secret is decrypted and its URI made first, so that
 * a secret that cannot be decrypted (a wrong key, a tampered row) leaves
 * no row saying it left. That attempt is recorded as an error, as a
 * failed import or backup is.
 */
/*
 * The export's accept row and the caller's hold (its PNG) in one
 * transaction: a hold that fails undoes the row, and says why in hwhy.
 * On failure other than the hold's, the ctx says what failed.
 */
static int
export_held(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const char *how, sotp_uri_hold_cb *hold, void *hold_arg, time_t now,
    const char *uri, char *hwhy, size_t hwhysz, int *held_failed)
{
	int rc;

	*held_failed = 0;
	if ((rc = sotp_store_begin(ctx->st)) == SOTP_OK &&
	    (rc = sotp_audit(ctx, now, "token.export", t->contract, t->serial,
	         NULL, "accept", SOTP_R_ACCEPTED, how)) != SOTP_OK)
		sotp_store_rollback(ctx->st);
	if (rc != SOTP_OK) {
		sotp_ctx_seterr(ctx, "token %s: export not audited: %s",
		    t->serial, sotp_store_errmsg(ctx->st));
		return rc;
	}
	hwhy[0] = '\0';
	if ((rc = hold(hold_arg, t->serial, uri, hwhy, hwhysz)) != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		/* As export_new's: the hold's text, or rc's. */
		if (hwhy[0] == '\0')
			snprintf(hwhy, hwhysz, "its export failed: %s",
			    sotp_strerror(rc));
		*held_failed = 1;
		return rc;
	}
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		sotp_ctx_seterr(ctx, "token %s: export not audited: %s",
		    t->serial, sotp_store_errmsg(ctx->st));
	return rc;
}

int
sotp_token_uri(struct sotp_ctx *ctx, const char *serial, const char *how,
    sotp_uri_hold_cb *hold, void *hold_arg, time_t now, char **uri)
{
	struct sotp_token_rec t;
	uint8_t key[SOTP_SECRET_MAX];
	size_t keylen = 0;
	const char *why = NULL;
	char detail[160 + SOTP_CTX_ERR_MAX], hwhy[SOTP_CTX_ERR_MAX];
	int rc, held_failed = 0;

	if (uri != NULL)
		*uri = NULL;
	if (ctx == NULL || serial == NULL || how == NULL || uri == NULL)
		return SOTP_ERR_INVALID_ARG;
	memset(&t, 0, sizeof(t));
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(serial))
		return SOTP_ERR_NOT_FOUND;
	if ((rc = sotp_store_token_get(ctx->st, serial, &t)) != SOTP_OK)
		return rc;
	if ((rc = sotp_keys_unseal(ctx, t.serial, t.secret, t.secret_len, key,
	         sizeof(key), &keylen)) != SOTP_OK) {
		why =
		    "secret cannot be decrypted (wrong master key or tampered row)";
		goto failed;
	}
	if ((rc = token_uri_of(ctx, &t, key, keylen, uri)) != SOTP_OK) {
		why = "its otpauth URI cannot be made";
		goto failed;
	}
	if (hold != NULL)
		rc = export_held(ctx, &t, how, hold, hold_arg, now, *uri, hwhy,
		    sizeof(hwhy), &held_failed);
	else if ((rc = sotp_audit(ctx, now, "token.export", t.contract,
	              t.serial, NULL, "accept", SOTP_R_ACCEPTED, how)) !=
	    SOTP_OK)
		sotp_ctx_seterr(ctx, "token %s: export not audited: %s", serial,
		    sotp_store_errmsg(ctx->st));
	if (rc != SOTP_OK) {
		sotp_free_string(*uri);
		*uri = NULL;
	}
	if (!held_failed)
		goto out;
	why = hwhy;
failed:
	snprintf(detail, sizeof(detail), "%s: %s", how, why);
	(void)sotp_audit(ctx, now, "token.export", t.contract, t.serial, NULL,
	    "error", sotp_reason_from_rc(rc), detail);
	sotp_ctx_seterr(ctx, "token %s: %s", serial, why);
out:
	SOTP_WIPE_ARRAY(key);
	sotp_wipe(&t, sizeof(t));
	return rc;
}

int
sotp_token_resync(struct sotp_ctx *ctx, const char *serial, const char *code1,
    const char *code2, time_t now, struct sotp_decision *d)
{
	struct sotp_token_rec t;
	int64_t step = -1, T;
	int rc, won = 0, disabled = 0, drift;
	char detail[32];

	if (code1 == NULL || code2 == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = ready(ctx, d)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(serial))
		return sotp_refuse(ctx, d, now, "token.resync", NULL, NULL,
		    SOTP_R_UNKNOWN_SERIAL);
	rc = sotp_store_token_get(ctx->st, serial, &t);
	if (rc == SOTP_ERR_NOT_FOUND)
		return sotp_refuse(ctx, d, now, "token.resync", NULL, NULL,
		    SOTP_R_UNKNOWN_SERIAL);
	if (rc != SOTP_OK)
		return store_err(ctx, d, rc);
	/*
	 * A disabled token (a lost phone's) has its codes checked by nobody:
	 * enable it first. One disabled while this runs is seen by the
	 * compare-and-set below.
	 */
	if (t.disabled) {
		rc = sotp_refuse(ctx, d, now, "token.resync", t.contract,
		    serial, SOTP_R_TOKEN_DISABLED);
		goto out;
	}
	if ((rc = sotp_token_find_pair(ctx, &t, code1, code2, now,
	         t.period == 0 ? ctx->pol.hotp_resync_window
	                       : ctx->pol.resync_window,
	         &step)) != SOTP_OK)
		goto out;
	if (step < 0) {
		rc = sotp_refuse(ctx, d, now, "token.resync", t.contract,
		    serial, SOTP_R_WRONG_CODE);
		goto out;
	}
	/* An HOTP token has no clock to drift: its counter moves instead. */
	T = t.period == 0 ? step : (int64_t)now / t.period;
	drift = (int)(step - T);
	/*
	 * Both codes are spent: the compare-and-set moves past them, in one
	 * transaction with its audit row.
	 */
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		goto out;
	if ((rc = sotp_store_use_step(ctx->st, serial, NULL, step, drift, &won,
	         &disabled)) != SOTP_OK)
		rc = store_err(ctx, d, rc);
	else if (!won)
		rc = sotp_refuse(ctx, d, now, "token.resync", t.contract,
		    serial, disabled ? SOTP_R_TOKEN_DISABLED : SOTP_R_REPLAYED);
	else {
		if (t.period == 0)
			snprintf(detail, sizeof(detail), "counter=%lld",
			    (long long)step);
		else
			snprintf(detail, sizeof(detail), "drift=%d", drift);
		rc = sotp_admin_ok(
		    ctx, d, now, "token.resync", t.contract, serial, detail);
	}
	rc = admin_end(ctx, d, rc);
out:
	sotp_wipe(&t, sizeof(t));
	return rc;
}

/* ---- contracts ---- */

static int
password_ok(const char *pw)
{
	size_t n = pw != NULL ? strlen(pw) : 0;

	return n >= 1 && n <= 256;
}

int
sotp_contract_add(struct sotp_ctx *ctx, const char *id, const char *password,
    time_t now, struct sotp_decision *d)
{
	struct sotp_contract_rec c;
	int rc;

	if ((rc = ready_nokey(ctx, d)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(id) || !password_ok(password)) {
		sotp_ctx_seterr(
		    ctx, "%s", !sotp_id_valid(id) ? ID_RULE : PASSWORD_RULE);
		return sotp_refuse(ctx, d, now, "contract.add",
		    sotp_id_valid(id) ? id : NULL, NULL, SOTP_R_BAD_INPUT);
	}
	memset(&c, 0, sizeof(c));
	sotp_strlcpy(c.id, id, sizeof(c.id));
	c.login = SOTP_LOGIN_OTP;
	c.created = (int64_t)now;
	if ((rc = sotp_passwd_hash(&ctx->pol, password, c.pwhash)) != SOTP_OK)
		goto out;
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		goto out;
	rc = sotp_store_contract_insert(ctx->st, &c);
	if (rc == SOTP_ERR_EXISTS)
		rc = sotp_refuse(
		    ctx, d, now, "contract.add", id, NULL, SOTP_R_EXISTS);
	else if (rc != SOTP_OK)
		rc = store_err(ctx, d, rc);
	else
		rc = sotp_admin_ok(ctx, d, now, "contract.add", id, NULL, NULL);
	rc = admin_end(ctx, d, rc);
out:
	sotp_wipe(&c, sizeof(c));
	return rc;
}

/* Runs a one-contract update and maps NOT_FOUND to a refusal. */
static int
contract_done(struct sotp_ctx *ctx, struct sotp_decision *d, time_t now,
    const char *action, const char *id, int rc, const char *detail)
{
	if (rc == SOTP_ERR_NOT_FOUND)
		return sotp_refuse(
		    ctx, d, now, action, NULL, NULL, SOTP_R_UNKNOWN_CONTRACT);
	if (rc != SOTP_OK)
		return store_err(ctx, d, rc);
	return sotp_admin_ok(ctx, d, now, action, id, NULL, detail);
}

int
sotp_contract_passwd(struct sotp_ctx *ctx, const char *id, const char *password,
    time_t now, struct sotp_decision *d)
{
	char hash[SOTP_HASH_MAX];
	int rc;

	if ((rc = ready_nokey(ctx, d)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(id))
		return sotp_refuse(ctx, d, now, "contract.passwd", NULL, NULL,
		    SOTP_R_UNKNOWN_CONTRACT);
	if (!password_ok(password)) {
		sotp_ctx_seterr(ctx, "%s", PASSWORD_RULE);
		return sotp_refuse(
		    ctx, d, now, "contract.passwd", id, NULL, SOTP_R_BAD_INPUT);
	}
	if ((rc = sotp_passwd_hash(&ctx->pol, password, hash)) != SOTP_OK)
		return rc;
	if ((rc = admin_begin(ctx, d)) == SOTP_OK)
		rc = admin_end(ctx, d,
		    contract_done(ctx, d, now, "contract.passwd", id,
		        sotp_store_contract_set_password(ctx->st, id, hash),
		        NULL));
	SOTP_WIPE_ARRAY(hash);
	return rc;
}

/* After ready(): the checks, the binding and its audit row. */
static int
contract_bind(struct sotp_ctx *ctx, const char *id, const char *serial,
    const char *code, enum sotp_login login, time_t now,
    struct sotp_decision *d)
{
	struct sotp_contract_rec c;
	int rc, reason = SOTP_R_INTERNAL;

	rc = sotp_store_contract_get(ctx->st, id, &c);
	if (rc == SOTP_ERR_NOT_FOUND)
		return sotp_refuse(ctx, d, now, "contract.bind", NULL, NULL,
		    SOTP_R_UNKNOWN_CONTRACT);
	if (rc != SOTP_OK)
		return store_err(ctx, d, rc);
	if (login == SOTP_LOGIN_CARD && c.card_len == 0)
		reason = SOTP_R_NO_CARD;
	else if ((rc = sotp_engine_bind(ctx, id, serial, code, login, now,
	              &reason, d->message, sizeof(d->message))) != SOTP_OK)
		reason = sotp_reason_from_rc(rc);
	sotp_wipe(&c, sizeof(c));
	if (rc != SOTP_OK) {
		d->reason = (enum sotp_reason)reason;
		return rc;
	}
	if (reason == SOTP_R_UNKNOWN_CONTRACT)
		return sotp_refuse(
		    ctx, d, now, "contract.bind", NULL, NULL, reason);
	if (reason != SOTP_R_ACCEPTED)
		return sotp_refuse(ctx, d, now, "contract.bind", id,
		    sotp_id_valid(serial) ? serial : NULL, reason);
	return sotp_admin_ok(
	    ctx, d, now, "contract.bind", id, serial, sotp_login_name(login));
}

int
sotp_contract_bind(struct sotp_ctx *ctx, const char *id, const char *serial,
    const char *code, enum sotp_login login, time_t now,
    struct sotp_decision *d)
{
	int rc;

	if ((rc = ready(ctx, d)) != SOTP_OK)
		return rc;
	if (serial == NULL || code == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (!sotp_id_valid(id))
		return sotp_refuse(ctx, d, now, "contract.bind", NULL, NULL,
		    SOTP_R_UNKNOWN_CONTRACT);
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		return rc;
	return admin_end(
	    ctx, d, contract_bind(ctx, id, serial, code, login, now, d));
}

/* After admin_begin: the contract is read under its row lock. */
static int
contract_unbind(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d)
{
	struct sotp_contract_rec c;
	int rc, unbound = 0;

	rc = sotp_store_contract_lock(ctx->st, id, &c);
	if (rc == SOTP_ERR_NOT_FOUND)
		return sotp_refuse(ctx, d, now, "contract.unbind", NULL, NULL,
		    SOTP_R_UNKNOWN_CONTRACT);
	if (rc == SOTP_OK && c.serial[0] != '\0')
		rc = sotp_store_unbind(ctx->st, id, c.serial, &unbound);
	if (rc != SOTP_OK)
		rc = store_err(ctx, d, rc);
	else if (!unbound)
		rc = sotp_refuse(
		    ctx, d, now, "contract.unbind", id, NULL, SOTP_R_NOT_BOUND);
	else
		rc = sotp_admin_ok(
		    ctx, d, now, "contract.unbind", id, c.serial, NULL);
	sotp_wipe(&c, sizeof(c));
	return rc;
}

int
sotp_contract_unbind(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d)
{
	return locked_change(
	    ctx, "contract.unbind", id, now, d, contract_unbind);
}

static int
contract_unlock(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d)
{
	return contract_done(ctx, d, now, "contract.unlock", id,
	    sotp_store_contract_unlock(ctx->st, id), NULL);
}

int
sotp_contract_unlock(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d)
{
	return locked_change(
	    ctx, "contract.unlock", id, now, d, contract_unlock);
}

/*
 * After admin_begin. Unregistration comes before closing (DESIGN.md): a
 * contract with a bound token is not closed.
 */
static int
contract_close(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d)
{
	struct sotp_contract_rec c;
	int rc, closed = 0;

	rc = sotp_store_contract_lock(ctx->st, id, &c);
	if (rc == SOTP_OK && c.serial[0] == '\0')
		rc = sotp_store_contract_close(ctx->st, id, &closed);
	sotp_wipe(&c, sizeof(c));
	if (rc == SOTP_OK && !closed)
		return sotp_refuse(ctx, d, now, "contract.close", id, NULL,
		    SOTP_R_STILL_BOUND);
	return contract_done(ctx, d, now, "contract.close", id, rc, NULL);
}

int
sotp_contract_close(
    struct sotp_ctx *ctx, const char *id, time_t now, struct sotp_decision *d)
{
	return locked_change(ctx, "contract.close", id, now, d, contract_close);
}

int
sotp_contract_set_login(struct sotp_ctx *ctx, const char *id,
    enum sotp_login login, time_t now, struct sotp_decision *d)
{
	struct sotp_contract_rec c;
	int rc;

	if ((rc = ready_nokey(ctx, d)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(id))
		return sotp_refuse(ctx, d, now, "contract.set", NULL, NULL,
		    SOTP_R_UNKNOWN_CONTRACT);
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		return rc;
	/* Read under its row lock: the choice is checked against it. */
	rc = sotp_store_contract_lock(ctx->st, id, &c);
	if (rc == SOTP_OK) {
		/* A choice the contract cannot satisfy would lock it out. */
		if (login == SOTP_LOGIN_OTP && c.serial[0] == '\0')
			rc = sotp_refuse(ctx, d, now, "contract.set", id, NULL,
			    SOTP_R_NOT_BOUND);
		else if (login == SOTP_LOGIN_CARD && c.card_len == 0)
			rc = sotp_refuse(ctx, d, now, "contract.set", id, NULL,
			    SOTP_R_NO_CARD);
		else
			rc = contract_done(ctx, d, now, "contract.set", id,
			    sotp_store_contract_set_login(ctx->st, id, login),
			    sotp_login_name(login));
		sotp_wipe(&c, sizeof(c));
		return admin_end(ctx, d, rc);
	}
	return admin_end(
	    ctx, d, contract_done(ctx, d, now, "contract.set", id, rc, NULL));
}

int
sotp_contract_card(struct sotp_ctx *ctx, const char *id, time_t now, char *grid,
    size_t gridsz, struct sotp_decision *d)
{
	const struct sotp_policy *p;
	char raw[26 * 10 + 1];
	uint8_t sealed[SOTP_CARD_MAX];
	size_t n = 0;
	uint32_t kv = 0;
	int rc;

	if (grid == NULL || gridsz == 0)
		return SOTP_ERR_INVALID_ARG;
	grid[0] = '\0';
	if ((rc = ready(ctx, d)) != SOTP_OK)
		return rc;
	p = &ctx->pol;
	if (!sotp_id_valid(id))
		return sotp_refuse(ctx, d, now, "contract.card", NULL, NULL,
		    SOTP_R_UNKNOWN_CONTRACT);
	if ((rc = sotp_card_new(
	         p->card_rows, p->card_cols, raw, sizeof(raw))) != SOTP_OK ||
	    (rc = sotp_keys_seal(ctx, id, (const uint8_t *)raw, strlen(raw),
	         sealed, sizeof(sealed), &n)) != SOTP_OK ||
	    (rc = sotp_sealed_kv(sealed, n, &kv)) != SOTP_OK ||
	    (rc = sotp_card_format(
	         raw, p->card_rows, p->card_cols, grid, gridsz)) != SOTP_OK)
		goto out;
	/* The card and its audit row land together, or no grid is shown. */
	if ((rc = admin_begin(ctx, d)) != SOTP_OK)
		goto out;
	rc = admin_end(ctx, d,
	    contract_done(ctx, d, now, "contract.card", id,
	        sotp_store_contract_set_card(ctx->st, id, sealed, n, kv),
	        NULL));
out:
	if (rc != SOTP_OK || d->verdict != SOTP_ACCEPT)
		sotp_wipe(grid, gridsz);
	SOTP_WIPE_ARRAY(raw);
	return rc;
}

/* What a contract shows: never its password hash nor its card. */
static void
contract_info(const struct sotp_contract_rec *c, struct sotp_contract_info *out)
{
	memset(out, 0, sizeof(*out));
	sotp_strlcpy(out->id, c->id, sizeof(out->id));
	out->login = c->login;
	sotp_strlcpy(out->serial, c->serial, sizeof(out->serial));
	out->has_card = c->card_len > 0;
	out->failures = c->failures;
	out->locked_until = c->locked_until;
	out->closed = c->closed;
	out->created = c->created;
}

int
sotp_contract_get(
    struct sotp_ctx *ctx, const char *id, struct sotp_contract_info *out)
{
	struct sotp_contract_rec c;
	int rc;

	if (ctx == NULL || id == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	if (!sotp_id_valid(id))
		return SOTP_ERR_NOT_FOUND;
	if ((rc = sotp_store_contract_get(ctx->st, id, &c)) != SOTP_OK) {
		if (rc != SOTP_ERR_NOT_FOUND)
			sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
		return rc;
	}
	contract_info(&c, out);
	sotp_wipe(&c, sizeof(c));
	return SOTP_OK;
}

struct contract_list_arg {
	sotp_contract_cb *cb;
	void *arg;
};

static int
contract_list_one(void *arg, const struct sotp_contract_rec *c)
{
	const struct contract_list_arg *la = arg;
	struct sotp_contract_info info;

	contract_info(c, &info);
	return la->cb(la->arg, &info);
}

int
sotp_contract_list(struct sotp_ctx *ctx, int locked_only,
    enum sotp_contract_status status, time_t now, sotp_contract_cb *cb,
    void *arg)
{
	struct contract_list_arg la = {cb, arg};
	int rc, closed;

	if (ctx == NULL || cb == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready_nokey(ctx)) != SOTP_OK)
		return rc;
	closed = status == SOTP_CONTRACTS_ACTIVE
	    ? 0
	    : (status == SOTP_CONTRACTS_CLOSED ? 1 : -1);
	if ((rc = sotp_store_contract_list(ctx->st, locked_only, (int64_t)now,
	         closed, contract_list_one, &la)) != SOTP_OK)
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

/*
 * audit.c - one audit row and one log line per decision or admin action.
 *
 * The line is key=value for a SIEM. Nothing secret is ever passed in: the
 * callers hand over identifiers, the verdict and the reason, no inputs.
 */
#include "sotp_int.h"

#include <string.h>
#include <syslog.h>

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
	int rc;

	sotp_audit_line(ctx, &r);
	if (ctx->st == NULL)
		return SOTP_ERR_STORE_UNAVAILABLE;
	if ((rc = sotp_store_audit_add(ctx->st, &r)) != SOTP_OK)
		sotp_log(ctx, LOG_ERR, "audit row not written: %s",
		    sotp_store_errmsg(ctx->st));
	return rc;
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
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	if ((rc = sotp_store_audit_list(
	         ctx->st, contract, since, until, cb, arg)) != SOTP_OK)
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	return rc;
}

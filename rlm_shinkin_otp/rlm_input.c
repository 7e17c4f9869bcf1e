/*
 * rlm_input.c - a request's attributes into one round of the engine, and
 * a question back into a challenge's attributes (rlm_input.h).
 */
#include "rlm_input.h"

#include <stdio.h>
#include <string.h>

const char *
rlm_contract_id(const struct rlm_request *r)
{
	if (r->user == NULL)
		return NULL;
	/* Its head is no contract ID: none is named (rlm_malformed says why).
	 */
	if (memchr(r->user, '\0', r->user_len) != NULL)
		return "";
	return r->user;
}

/* The context attribute's value holds a NUL: a C string would cut it. */
static int
service_cut(const struct rlm_request *r)
{
	return r->service != NULL &&
	    memchr(r->service, '\0', r->service_len) != NULL;
}

const char *
rlm_malformed(const struct rlm_request *r, char *buf, size_t bufsz)
{
	if (r->repeated != NULL)
		snprintf(buf, bufsz,
		    "%s appears %u times in the request (RFC 2865 allows one)",
		    r->repeated, r->nrepeated);
	else if (r->user != NULL && memchr(r->user, '\0', r->user_len) != NULL)
		snprintf(buf, bufsz, "User-Name holds a NUL");
	else if (r->password == NULL)
		snprintf(buf, bufsz,
		    "no User-Password in the request (CHAP is not taken)");
	else if (memchr(r->password, '\0', r->password_len) != NULL)
		snprintf(buf, bufsz, "User-Password holds a NUL");
	else if (r->other_auth != NULL)
		snprintf(buf, bufsz,
		    "%s beside User-Password (one credential per request)",
		    r->other_auth);
	else if (service_cut(r))
		snprintf(buf, bufsz, "%s holds a NUL",
		    r->service_attr != NULL ? r->service_attr
		                            : "the context attribute");
	else
		return NULL;
	return buf;
}

/*
 * The attempt, begun or resumed: in the module's fixed context, else in
 * the one the policy's [services] map gives the context attribute's
 * value. The core maps it, and refuses a value the map does not name. A
 * value holding a NUL is passed as none: "ib-mobile\0..." must not be
 * read as ib-mobile (rlm_malformed refuses the request).
 */
static int
start(struct sotp_ctx *ctx, const char *fixed, const char *user,
    const struct rlm_request *r, struct sotp_attempt **a)
{
	const char *service = service_cut(r) ? NULL : r->service;

	if (fixed != NULL && fixed[0] != '\0')
		return r->state != NULL
		    ? sotp_attempt_resume(
		          ctx, user, fixed, r->state, r->state_len, r->now, a)
		    : sotp_attempt_begin(ctx, user, fixed, r->now, a);
	return r->state != NULL
	    ? sotp_attempt_resume_service(
	          ctx, user, service, r->state, r->state_len, r->now, a)
	    : sotp_attempt_begin_service(ctx, user, service, r->now, a);
}

int
rlm_round(struct sotp_ctx *ctx, const char *fixed, int append,
    const struct rlm_request *r, struct sotp_attempt **a,
    struct sotp_decision *d)
{
	const char *user = rlm_contract_id(r);
	char why[128];
	int rc;

	*a = NULL;
	memset(d, 0, sizeof(*d));
	d->verdict = SOTP_REJECT;
	if (user == NULL)
		return SOTP_ERR_BAD_INPUT;
	if ((rc = start(ctx, fixed, user, r, a)) != SOTP_OK)
		return rc;
	/*
	 * A NUL inside User-Password would cut what the customer typed: no
	 * part of it is taken for the whole. Of an attribute given twice,
	 * neither is taken. The engine refuses, audits and tells.
	 */
	if (rlm_malformed(r, why, sizeof(why)) != NULL)
		rc = sotp_attempt_malformed(*a, why);
	else if (append && r->state == NULL)
		rc = sotp_attempt_set_combined(*a, r->password);
	else
		rc = sotp_attempt_answer(*a, r->password);
	if (rc != SOTP_OK)
		return rc;
	return sotp_attempt_step(*a, d);
}

int
rlm_challenge(struct sotp_attempt *a, const struct sotp_decision *d,
    struct rlm_challenge *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = sotp_attempt_export(a, out->state, sizeof(out->state),
	         &out->state_len)) != SOTP_OK)
		return rc;
	/* RFC 2865 5.18: clients show the messages in the order they come. */
	if (d->message[0] != '\0')
		out->text[out->ntext++] = d->message;
	if (d->prompt[0] != '\0')
		out->text[out->ntext++] = d->prompt;
	if (strlen(d->message) > RLM_ATTR_MAX ||
	    strlen(d->prompt) > RLM_ATTR_MAX || out->state_len > RLM_ATTR_MAX)
		return SOTP_ERR_BUFFER;
	out->echo = d->echo != 0;
	return SOTP_OK;
}

/*
 * err.c - the fixed texts behind enum sotp_rc, and the small name <->
 * value tables of the public API. The reasons and everything a customer
 * reads are in catalog.c.
 *
 * Every string here is static: it may reach a log line or the CLI, so
 * none of it depends on input or names a secret.
 */
#include "sotp_int.h"

#include <strings.h>

struct rc_entry {
	const char *name;
	const char *text;
};

/* Indexed by -rc; must cover SOTP_OK .. SOTP_ERR_LAST (tested). */
static const struct rc_entry rc_table[] = {
    {"SOTP_OK", "success"},
    {"SOTP_ERR_INTERNAL", "internal error"},
    {"SOTP_ERR_NOMEM", "out of memory"},
    {"SOTP_ERR_INVALID_ARG", "invalid argument"},
    {"SOTP_ERR_SYSTEM", "system error"},
    {"SOTP_ERR_CRYPTO", "cryptographic library error"},
    {"SOTP_ERR_CONFIG", "invalid configuration"},
    {"SOTP_ERR_KEY",
        "master key (file or token) missing, unreadable, unsafe or refused"},
    {"SOTP_ERR_STORE", "store error"},
    {"SOTP_ERR_STORE_UNAVAILABLE", "store unavailable"},
    {"SOTP_ERR_BAD_INPUT", "malformed input"},
    {"SOTP_ERR_DECRYPT", "decryption failed (wrong key or tampered data)"},
    {"SOTP_ERR_NOT_FOUND", "not found"},
    {"SOTP_ERR_EXISTS", "already exists"},
    {"SOTP_ERR_BUFFER", "output buffer too small"},
    {"SOTP_ERR_LAST", "unknown error"},
};

static const struct rc_entry *
rc_lookup(int rc)
{
	if (rc > 0 || rc < SOTP_ERR_LAST)
		return NULL;
	return &rc_table[-rc];
}

const char *
sotp_strerror(int rc)
{
	const struct rc_entry *e = rc_lookup(rc);

	return e != NULL ? e->text : "unknown error";
}

const char *
sotp_rc_name(int rc)
{
	const struct rc_entry *e = rc_lookup(rc);

	return e != NULL ? e->name : "SOTP_ERR_UNKNOWN";
}

int
sotp_reason_from_rc(int rc)
{
	switch (rc) {
	case SOTP_OK:
		/* Not a failure: callers should not ask, but never accept. */
		return SOTP_R_INTERNAL;
	/*
	 * Any store error, an outage or not (a full disk, a constraint, a
	 * schema this build does not know): this server cannot decide now,
	 * which is what the reason tells the customer, PAM and the NAS (which
	 * may then ask another server). The audit row's detail and the
	 * metrics name which error it was.
	 */
	case SOTP_ERR_STORE_UNAVAILABLE:
	case SOTP_ERR_STORE:
		return SOTP_R_STORE_UNAVAILABLE;
	case SOTP_ERR_CONFIG:
	case SOTP_ERR_KEY:
		return SOTP_R_BAD_CONFIG;
	case SOTP_ERR_BAD_INPUT:
		return SOTP_R_BAD_INPUT;
	default:
		return SOTP_R_INTERNAL;
	}
}

const char *
sotp_decision_malformed(const struct sotp_decision *d)
{
	if (d == NULL || d->verdict != SOTP_REJECT ||
	    d->reason != SOTP_R_BAD_INPUT || d->malformed == 0)
		return NULL;
	return sotp_factor_name(d->malformed);
}

const char *
sotp_factor_name(unsigned int factor)
{
	switch (factor) {
	case SOTP_F_PASSWORD:
		return "password";
	case SOTP_F_OTP:
		return "otp";
	case SOTP_F_CARD:
		return "card";
	case SOTP_F_SERIAL:
		return "serial";
	case SOTP_F_LOGIN_CHOICE:
		return "login-otp";
	default:
		return "unknown";
	}
}

const char *
sotp_login_name(enum sotp_login l)
{
	switch (l) {
	case SOTP_LOGIN_NONE:
		return "none";
	case SOTP_LOGIN_OTP:
		return "otp";
	case SOTP_LOGIN_CARD:
		return "card";
	}
	return "unknown";
}

int
sotp_login_parse(const char *s, enum sotp_login *l)
{
	if (s == NULL || l == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (strcasecmp(s, "otp") == 0 || strcasecmp(s, "yes") == 0)
		*l = SOTP_LOGIN_OTP;
	else if (strcasecmp(s, "card") == 0)
		*l = SOTP_LOGIN_CARD;
	else if (strcasecmp(s, "none") == 0 || strcasecmp(s, "no") == 0)
		*l = SOTP_LOGIN_NONE;
	else
		return SOTP_ERR_BAD_INPUT;
	return SOTP_OK;
}

const char *
sotp_alg_name(enum sotp_alg alg)
{
	switch (alg) {
	case SOTP_ALG_SHA1:
		return "sha1";
	case SOTP_ALG_SHA256:
		return "sha256";
	case SOTP_ALG_SHA512:
		return "sha512";
	}
	return NULL;
}

int
sotp_alg_parse(const char *name, enum sotp_alg *alg)
{
	if (name == NULL || alg == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (strcasecmp(name, "sha1") == 0)
		*alg = SOTP_ALG_SHA1;
	else if (strcasecmp(name, "sha256") == 0)
		*alg = SOTP_ALG_SHA256;
	else if (strcasecmp(name, "sha512") == 0)
		*alg = SOTP_ALG_SHA512;
	else
		return SOTP_ERR_BAD_INPUT;
	return SOTP_OK;
}

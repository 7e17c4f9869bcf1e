/*
 * err.c - the fixed texts behind enum sotp_rc and enum sotp_reason, the
 * factor prompts, and the small name <-> value tables of the public API.
 *
 * Every string here is static and customer-neutral: it may reach a PAM
 * conversation, a RADIUS Reply-Message or an audit line, so none of it
 * depends on input or names a secret.
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
    {"SOTP_ERR_KEY", "master key missing, unreadable or unsafe"},
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

struct reason_entry {
	int reason;
	const char *name;
	const char *text;
};

/* The reason numbers are stored in audit rows: never renumber. */
static const struct reason_entry reason_table[] = {
    {SOTP_R_ACCEPTED, "ACCEPTED", "accepted"},
    {SOTP_R_CONTINUE, "CONTINUE", "more input needed"},
    {SOTP_R_WRONG_CODE, "WRONG_CODE", "wrong code"},
    {SOTP_R_REPLAYED, "REPLAYED", "code already used"},
    {SOTP_R_LOCKED, "LOCKED", "contract locked"},
    {SOTP_R_UNKNOWN_CONTRACT, "UNKNOWN_CONTRACT", "unknown contract"},
    {SOTP_R_UNKNOWN_SERIAL, "UNKNOWN_SERIAL", "unknown token serial"},
    {SOTP_R_ALREADY_BOUND, "ALREADY_BOUND",
        "a token is already bound to this contract"},
    {SOTP_R_TOKEN_IN_USE, "TOKEN_IN_USE", "token is bound to another contract"},
    {SOTP_R_NOT_BOUND, "NOT_BOUND", "no token bound"},
    {SOTP_R_WRONG_PASSWORD, "WRONG_PASSWORD", "wrong password"},
    {SOTP_R_WRONG_CARD, "WRONG_CARD", "wrong card digits"},
    {SOTP_R_NO_CARD, "NO_CARD", "no card issued"},
    {SOTP_R_CONTRACT_CLOSED, "CONTRACT_CLOSED", "contract closed"},
    {SOTP_R_STILL_BOUND, "STILL_BOUND", "a token is still bound"},
    {SOTP_R_TOKEN_SUNSET, "TOKEN_SUNSET", "token kind past its sunset date"},
    {SOTP_R_TOKEN_DISABLED, "TOKEN_DISABLED", "token disabled"},
    {SOTP_R_BAD_INPUT, "BAD_INPUT", "malformed input"},
    {SOTP_R_STATE_INVALID, "STATE_INVALID", "invalid challenge state"},
    {SOTP_R_STATE_EXPIRED, "STATE_EXPIRED", "challenge expired"},
    {SOTP_R_STATE_REPLAYED, "STATE_REPLAYED", "challenge already used"},
    {SOTP_R_TOO_MANY_ROUNDS, "TOO_MANY_ROUNDS", "too many rounds"},
    {SOTP_R_EXISTS, "EXISTS", "already exists"},
    {SOTP_R_UNKNOWN_CONTEXT, "UNKNOWN_CONTEXT", "unknown context"},
    {SOTP_R_STORE_UNAVAILABLE, "STORE_UNAVAILABLE",
        "service temporarily unavailable"},
    {SOTP_R_BAD_CONFIG, "BAD_CONFIG", "service misconfigured"},
    {SOTP_R_INTERNAL, "INTERNAL", "internal error"},
};

static const struct reason_entry *
reason_lookup(int reason)
{
	size_t i;

	for (i = 0; i < sizeof(reason_table) / sizeof(reason_table[0]); i++)
		if (reason_table[i].reason == reason)
			return &reason_table[i];
	return NULL;
}

const char *
sotp_reason_text(int reason)
{
	const struct reason_entry *e = reason_lookup(reason);

	return e != NULL ? e->text : "unknown reason";
}

const char *
sotp_reason_name(int reason)
{
	const struct reason_entry *e = reason_lookup(reason);

	return e != NULL ? e->name : "UNKNOWN";
}

int
sotp_reason_from_rc(int rc)
{
	switch (rc) {
	case SOTP_OK:
		/* Not a failure: callers should not ask, but never accept. */
		return SOTP_R_INTERNAL;
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
sotp_factor_prompt(unsigned int factor)
{
	switch (factor) {
	case SOTP_F_PASSWORD:
		return "Password: ";
	case SOTP_F_OTP:
		return "One-time code: ";
	case SOTP_F_CARD:
		return "Card digits: ";
	case SOTP_F_SERIAL:
		return "Token serial: ";
	case SOTP_F_LOGIN_CHOICE:
		return "Ask for a code at login (otp/card/none): ";
	default:
		return "Response: ";
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

/*
 * rlm_input.h - what rlm_shinkin_otp makes of a request's attributes and
 * of the engine's answer, in plain C: no FreeRADIUS type, so that it can
 * be built and fuzzed without radiusd (tests/fuzz/fuzz_radius.c). The
 * module's glue (rlm_shinkin_otp.c) only moves values between these and
 * the attribute lists.
 */
#ifndef RLM_SHINKIN_OTP_INPUT_H
#define RLM_SHINKIN_OTP_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "shinkin_otp.h"

/* A Reply-Message or State is one attribute: at most 253 octets. */
#define RLM_ATTR_MAX 253

/* One Access-Request, as the attributes carry it. */
struct rlm_request {
	const char *user; /* User-Name: len octets, NUL after them */
	size_t user_len;
	/* User-Password, decrypted: len octets; NULL without one. */
	const char *password;
	size_t password_len;
	const uint8_t *state; /* State; NULL when the request has none or two */
	size_t state_len;
	/* The context attribute's value: len octets, NUL after; or NULL. */
	const char *service;
	size_t service_len;
	const char *service_attr; /* that attribute's name, for the log */
	/*
	 * A second credential beside User-Password (CHAP-Password, an
	 * MS-CHAP response or change-password attribute), by name; NULL
	 * when there is none.
	 */
	const char *other_auth;
	time_t now;
	/*
	 * An attribute of which one is allowed (RFC 2865 5.44: User-Name,
	 * User-Password, State; and the context attribute) that the request
	 * carries `nrepeated` (> 1) times, by name; NULL when none is. Of a
	 * repeated User-Name, user is "": no contract is named.
	 */
	const char *repeated;
	unsigned int nrepeated;
};

/*
 * User-Name as a contract ID (the engine judges it); "" (no contract is
 * named) when it holds a NUL and so could not be passed on whole, as when
 * two are given; NULL without one.
 */
const char *rlm_contract_id(const struct rlm_request *r);

/*
 * Why the request cannot be decided on as it came, in buf (for the log:
 * names the attribute, never shows a value), or NULL when it can: no
 * User-Password, a User-Name, User-Password or context attribute holding
 * a NUL (it would be cut), an attribute given more than once, or a
 * second credential beside User-Password (RFC 2865 4.1 allows one way to
 * authenticate): which one was meant is a guess, and a module before
 * this one may have read the other.
 */
const char *rlm_malformed(const struct rlm_request *r, char *buf, size_t bufsz);

/*
 * One round: with a State, the attempt it exported resumes and
 * User-Password answers the question it asked; without one a new
 * attempt begins, and User-Password answers its first question, or in
 * append mode is the password followed by the code. The context is
 * `fixed` (the module's context) when not NULL or "", else the one the
 * policy's [services] map gives r->service: a value the map does not
 * name (or none) is the engine's to refuse (UNKNOWN_CONTEXT, audited,
 * the value named), and a State beside it is neither read nor spent. A
 * value holding a NUL names no context (its head is not taken for it).
 * *a is the caller's to free (also on error). A request rlm_malformed refuses
 * is the engine's to refuse (BAD_INPUT, audited, with that reason); nothing of
 * it is taken. SOTP_ERR_BAD_INPUT without a User-Name; else the engine's
 * errors.
 */
int rlm_round(struct sotp_ctx *ctx, const char *fixed, int append,
    const struct rlm_request *r, struct sotp_attempt **a,
    struct sotp_decision *d);

/* What an Access-Challenge carries. */
struct rlm_challenge {
	uint8_t state[SOTP_STATE_MAX];
	size_t state_len;
	const char *text[2]; /* Reply-Messages in order: message, prompt */
	size_t ntext;
	int echo; /* Prompt: 1 Echo, 0 No-Echo */
};

/*
 * The challenge for a CONTINUE decision d of attempt a (texts point into
 * d). SOTP_ERR_BUFFER when a text would not fit one attribute (a core
 * bug, refused rather than cut); else the engine's export errors.
 */
int rlm_challenge(struct sotp_attempt *a, const struct sotp_decision *d,
    struct rlm_challenge *out);

#endif /* RLM_SHINKIN_OTP_INPUT_H */

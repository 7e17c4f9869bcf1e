/*
 * token.c - checking a code against a token's sealed secret.
 *
 * RFC 6238 section 5.2: accept the current step and a small window around
 * it, recentred on the drift this token has shown before, so a phone whose
 * clock runs a step off keeps working without widening everyone's window.
 *
 * An event-based token (HOTP, RFC 4226; period 0) has no clock: its
 * "step" is the counter, and last_step is the last counter accepted. The
 * window is the look-ahead of section 7.4, from the counter after it to
 * hotp_look_ahead counters on, so the codes of presses that never reached
 * us still work; the last accepted counter is computed too, so a code
 * typed twice is told apart (REPLAYED) from a wrong one. Acceptance then
 * goes through the same compare-and-set as a time step (last_step < c),
 * which is what keeps each code good once, on every server of a farm.
 */
#include "sotp_int.h"

#include <stdlib.h>
#include <string.h>

int
sotp_id_valid(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n >= SOTP_ID_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s > '~' || *s == '"' || *s == '\\')
			return 0;
	return 1;
}

static int
clamp(int64_t v, int lim)
{
	if (v > lim)
		return lim;
	if (v < -lim)
		return -lim;
	return (int)v;
}

/* Keys the context's MAC with t's secret, unsealed only for the call. */
static int
key_mac(struct sotp_ctx *ctx, const struct sotp_token_rec *t)
{
	uint8_t key[SOTP_SECRET_MAX];
	size_t keylen = 0;
	int rc;

	if ((rc = sotp_keys_unseal(ctx, t->serial, t->secret, t->secret_len,
	         key, sizeof(key), &keylen)) != SOTP_OK)
		sotp_ctx_seterr(ctx,
		    "token %s: secret cannot be decrypted "
		    "(wrong master key or tampered row)",
		    t->serial);
	else
		rc = sotp_mac_setkey(ctx->mac, t->alg, key, keylen);
	SOTP_WIPE_ARRAY(key);
	return rc;
}

int
sotp_token_match(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const char *code, time_t now, int *match, int64_t *step, int *drift)
{
	char cand[SOTP_CODE_MAX];
	const struct sotp_policy *p = &ctx->pol;
	int64_t T, s, first, last;
	int rc = SOTP_ERR_INTERNAL, hit = 0;

	*match = 0;
	*step = -1;
	*drift = t->drift;
	if (now < 0)
		return SOTP_ERR_INVALID_ARG;
	/* A malformed code is simply no match; nothing secret is touched. */
	if (sotp_code_len(code) != t->digits)
		return SOTP_OK;
	if ((rc = key_mac(ctx, t)) != SOTP_OK)
		goto out;
	if (t->period == 0) {
		T = t->last_step + 1; /* the counter of the next code */
		first = t->last_step;
		last = t->last_step + (int64_t)p->hotp_look_ahead;
	} else {
		T = (int64_t)now / t->period;
		first = T + t->drift - p->window_back;
		last = T + t->drift + p->window_forward;
	}
	if (first < 0)
		first = 0;
	/*
	 * Compute every candidate, so the time taken says nothing. The first
	 * match wins, and the used steps come first: six digits once
	 * accepted are refused (REPLAYED) even when a step not yet used
	 * shares them (once in a million), so that no two servers ever both
	 * accept one code; the customer then types the next one.
	 */
	for (s = first; s <= last; s++) {
		if ((rc = sotp_mac_hotp(
		         ctx->mac, (uint64_t)s, t->digits, cand)) != SOTP_OK)
			goto out;
		if (sotp_code_equal(cand, code) && !hit) {
			hit = 1;
			*step = s;
		}
	}
	if (hit && t->period == 0) {
		*match = 1;
		*drift = 0;
	} else if (hit) {
		/*
		 * Learn at most max_drift, unless an admin resync already set
		 * a larger drift: then follow the token from there.
		 */
		*match = 1;
		*drift = clamp(*step - T,
		    abs(t->drift) > (int)p->max_drift ? abs(t->drift)
		                                      : (int)p->max_drift);
	}
	rc = SOTP_OK;
out:
	sotp_mac_forget(ctx->mac);
	SOTP_WIPE_ARRAY(cand);
	return rc;
}

int
sotp_token_find_pair(struct sotp_ctx *ctx, const struct sotp_token_rec *t,
    const char *code1, const char *code2, time_t now, unsigned int window,
    int64_t *step)
{
	char cur[SOTP_CODE_MAX];
	int64_t T, s, first, last;
	int rc, prev_hit = 0, hit;

	*step = -1;
	if (now < 0)
		return SOTP_ERR_INVALID_ARG;
	if (sotp_code_len(code1) != t->digits ||
	    sotp_code_len(code2) != t->digits)
		return SOTP_OK;
	if ((rc = key_mac(ctx, t)) != SOTP_OK)
		goto out;
	if (t->period == 0) {
		/* HOTP: forward only, from the counter after the last used. */
		first = t->last_step + 1;
		last = t->last_step + (int64_t)window;
	} else {
		T = (int64_t)now / t->period;
		first = T - window > 0 ? T - window : 0;
		last = T + window;
	}
	/* Two consecutive steps: code1 at s - 1 and code2 at s. */
	for (s = first; s <= last; s++) {
		if ((rc = sotp_mac_hotp(
		         ctx->mac, (uint64_t)s, t->digits, cur)) != SOTP_OK)
			goto out;
		hit = sotp_code_equal(cur, code1);
		if (prev_hit && sotp_code_equal(cur, code2) && *step < 0)
			*step = s;
		prev_hit = hit;
	}
	rc = SOTP_OK;
out:
	sotp_mac_forget(ctx->mac);
	SOTP_WIPE_ARRAY(cur);
	return rc;
}

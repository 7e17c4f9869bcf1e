/*
 * engine_state.c - what RADIUS carries between two requests.
 *
 * An attempt that asks a question is exported as a State: what has been
 * verified so far (the factors, and for a registration the token's serial,
 * the verified code's step and drift and the login choice), the question
 * asked, the card cells shown and the rounds taken. It is octets, since a
 * RADIUS State is (RFC 2865 5.24), and at most 151 of them, inside the
 * attribute's 253. No secret is inside: the code's time step says nothing
 * of the code, the password's tag (below) nothing of the password. An
 * HMAC-SHA256 under the State subkey of a data-key version (keys.c)
 * binds it to the contract and the context; the store marks each State
 * used once (engine.c gate()), and it expires after the policy's
 * lifetime, so any server of a farm can take the next round.
 *
 * The State names the key version that signed it (version 3 of the
 * layout), so that during a key rotation a State signed by a server that
 * has moved to the new version verifies on one that has not yet: that
 * one fetches the version it lacks. Version 2 States, from before key
 * versions, are signed under version 0 (the master key file) and are
 * still read; they are still written while the store's current version
 * is 0, so that servers of an older build read them during an upgrade.
 *
 * A State that carries the password as verified is bound to the
 * password as it was then (version 4 of the layout): a tag in it, an
 * HMAC under the same State subkey of the State's id and a SHA-256 of
 * the contract's stored hash (the one the password matched, or the one
 * a rehash put in its place). A passwd stores a hash with a fresh salt,
 * so after it (even to the same password) the tag no longer matches, and
 * the State is refused as a bad State is (STATE_INVALID: not counted
 * toward the lockout, audited, the same reply as a forged one). Else
 * whoever knew the old password and held a State could finish the login
 * with a current code for the State's lifetime after the bank changed
 * it. The MAC is still checked on resuming, before the contract is
 * read; the tag is checked by the step against the contract's row it
 * reads anyway (engine.c step), so a resumed State costs no store read
 * more. A State without the password done (a context that does not
 * check it, a contract with none) is written as version 2 or 3, as
 * before; version 4 is written whenever the password is done, whatever
 * the key version (0 included).
 *
 * A new layout, not a new MAC input for version 3: the States of an
 * older build and ours must be told apart. During an upgrade, a server
 * of an older build refuses a version 4 State as invalid (a layout it
 * does not know): a customer whose answer reaches it starts the login
 * again, and nothing is accepted that should not be. This build reads
 * versions 2 and 3 still: one carrying the password comes from an older
 * build, is bound to nothing and is good for its lifetime as it was
 * there; once every server runs this build none is written, and the last
 * expires `[state] lifetime` later.
 */
#include "engine_int.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

/*
 * Version 2: version | id (16) | expires (8) | rounds | done | asked |
 * ncells | cells (8) | login | drift (4) | step (8) | serial length |
 * serial (0..64) | MAC (16). Integers are big-endian. Version 3: the
 * same with the key version (4) after the version byte. Version 4:
 * version 3's with the password tag (16) between the serial and the MAC.
 */
#define STATE_V2 2
#define STATE_V3 3
#define STATE_V4 4
#define STATE_MAC_LEN 16
#define STATE_TAG_LEN SOTP_PW_TAG_LEN
#define STATE_BODY (SOTP_STATE_ID_LEN + 8 + 4 + SOTP_MAX_CELLS + 1 + 4 + 8 + 1)
/* The fixed part of a layout: version byte, key version, body. */
#define STATE_FIXED(v) (1 + ((v) != STATE_V2 ? 4 : 0) + STATE_BODY)
/* What follows the serial: the password tag, the MAC. */
#define STATE_TAIL(v) (((v) == STATE_V4 ? STATE_TAG_LEN : 0) + STATE_MAC_LEN)
#define STATE_MAX                                                              \
	(STATE_FIXED(STATE_V4) + SOTP_ID_MAX - 1 + STATE_TAIL(STATE_V4))

_Static_assert(STATE_MAX <= SOTP_STATE_MAX, "a State must fit one attribute");

static int
state_mac(const struct sotp_attempt *a, uint32_t kv, const uint8_t *body,
    size_t len, uint8_t *mac)
{
	uint8_t buf[STATE_MAX + SOTP_ID_MAX + SOTP_NAME_MAX];
	uint8_t full[32];
	size_t n = len, cl = strlen(a->contract), xl = strlen(a->context);
	int rc;

	/* Bound to contract and context: a state is useless elsewhere. */
	memcpy(buf, body, len);
	memcpy(buf + n, a->contract, cl + 1);
	n += cl + 1;
	memcpy(buf + n, a->context, xl);
	n += xl;
	/*
	 * No MAC on failure: a zeroed one would match a forged state whose
	 * MAC field is zero, so the callers refuse instead.
	 */
	if ((rc = sotp_keys_state_mac(a->ctx, kv, buf, n, full)) == SOTP_OK)
		memcpy(mac, full, STATE_MAC_LEN);
	SOTP_WIPE_ARRAY(full);
	return rc;
}

/* SHA-256 of a stored password hash: what a State is bound to. */
static int
pw_digest(const char *pwhash, uint8_t *out)
{
	unsigned int n = 0;

	if (EVP_Digest(pwhash, strlen(pwhash), out, &n, EVP_sha256(), NULL) !=
	        1 ||
	    n != SOTP_PW_DIGEST_LEN)
		return SOTP_ERR_CRYPTO;
	return SOTP_OK;
}

/*
 * The tag that binds a State to the password: an HMAC under version kv's
 * State subkey of a label, the State's id and the hash's digest. A MAC's
 * input starts with the layout's version byte, never with the label's
 * first, so that neither can stand for the other.
 */
static int
pw_tag(struct sotp_attempt *a, uint32_t kv, const uint8_t *digest, uint8_t *tag)
{
	static const char label[] = "shinkin-otp State password";
	uint8_t buf[sizeof(label) + SOTP_STATE_ID_LEN + SOTP_PW_DIGEST_LEN];
	uint8_t full[32];
	int rc;

	memcpy(buf, label, sizeof(label));
	memcpy(buf + sizeof(label), a->state_id, SOTP_STATE_ID_LEN);
	memcpy(buf + sizeof(label) + SOTP_STATE_ID_LEN, digest,
	    SOTP_PW_DIGEST_LEN);
	if ((rc = sotp_keys_state_mac(a->ctx, kv, buf, sizeof(buf), full)) ==
	    SOTP_OK)
		memcpy(tag, full, STATE_TAG_LEN);
	SOTP_WIPE_ARRAY(full);
	SOTP_WIPE_ARRAY(buf);
	return rc;
}

int
sotp_attempt_pw_verified(struct sotp_attempt *a, const char *pwhash)
{
	int rc;

	if ((rc = pw_digest(pwhash, a->pw_digest)) == SOTP_OK)
		a->pw_digest_set = 1;
	return rc;
}

static uint8_t *
put(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = n - 1; i >= 0; i--) {
		p[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
	return p + n;
}

static uint64_t
get(const uint8_t **p, int n)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < n; i++)
		v = (v << 8) | (*p)[i];
	*p += n;
	return v;
}

int
sotp_attempt_export(
    struct sotp_attempt *a, uint8_t *buf, size_t bufsz, size_t *len)
{
	uint8_t raw[STATE_MAX], *p = raw;
	size_t sl;
	int64_t expires;
	uint32_t kv = 0;
	int rc, v, bound;

	if (len != NULL)
		*len = 0;
	if (a == NULL || buf == NULL || len == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready(a->ctx)) != SOTP_OK ||
	    (rc = sotp_keys_current(a->ctx, &kv)) != SOTP_OK)
		return rc;
	/*
	 * The password done: bound to the hash it matched, or, for a resumed
	 * State whose binding no step has checked (a question asked again),
	 * its tag handed on under the key version that made it. One of an
	 * older build (bound to nothing) is handed on as it came.
	 */
	bound = (a->done & SOTP_F_PASSWORD) != 0 &&
	    (a->pw_digest_set || a->pw_bound);
	if (bound && !a->pw_digest_set)
		kv = a->state_kv;
	v = bound ? STATE_V4 : (kv == 0 ? STATE_V2 : STATE_V3);
	sl = strlen(a->serial);
	if (bufsz < STATE_FIXED(v) + sl + STATE_TAIL(v))
		return SOTP_ERR_BUFFER;
	/*
	 * A resumed state not yet used is handed on as it is: same id, same
	 * expiry. Re-exporting must not make a second use or a longer life.
	 */
	expires = (int64_t)a->now + a->ctx->pol.state_lifetime;
	if (a->resumed)
		expires = a->state_expires;
	else if ((rc = sotp_random(a->state_id, SOTP_STATE_ID_LEN)) != SOTP_OK)
		return rc;
	*p++ = (uint8_t)v;
	if (v != STATE_V2)
		p = put(p, kv, 4);
	memcpy(p, a->state_id, SOTP_STATE_ID_LEN);
	p += SOTP_STATE_ID_LEN;
	p = put(p, (uint64_t)expires, 8);
	*p++ = (uint8_t)a->rounds;
	*p++ = (uint8_t)a->done;
	*p++ = (uint8_t)a->asked;
	*p++ = (uint8_t)a->ncells;
	memcpy(p, a->cells, SOTP_MAX_CELLS);
	p += SOTP_MAX_CELLS;
	*p++ = (uint8_t)a->login;
	p = put(p, (uint32_t)a->drift, 4);
	p = put(p, (uint64_t)a->step, 8);
	*p++ = (uint8_t)sl;
	memcpy(p, a->serial, sl);
	p += sl;
	if (v == STATE_V4) {
		if (!a->pw_digest_set)
			memcpy(p, a->pw_tag, STATE_TAG_LEN);
		else if ((rc = pw_tag(a, kv, a->pw_digest, p)) != SOTP_OK)
			return rc;
		p += STATE_TAG_LEN;
	}
	if ((rc = state_mac(a, kv, raw, (size_t)(p - raw), p)) != SOTP_OK)
		return rc;
	p += STATE_MAC_LEN;
	*len = (size_t)(p - raw);
	memcpy(buf, raw, *len);
	return SOTP_OK;
}

/*
 * What the engine writes as done, each factor with what its verification
 * yields. The card is the last question wherever it is asked, so it is
 * never carried done, nor is the question asked. Outside a registration
 * only the password is: a second factor is checked in the round that
 * brings it. A registration carries the serial with the token's serial,
 * the code with its time step, the login choice after the code, in the
 * guide's order. Even under a good MAC, a body saying otherwise is not
 * acted on (fuzz_state found one that skipped the card check).
 */
static int
done_sane(const struct sotp_attempt *a)
{
	const struct sotp_context_def *cdef =
	    sotp_policy_context(&a->ctx->pol, a->context);
	unsigned int d = a->done;
	int serial = a->serial[0] != '\0';

	if ((d & SOTP_F_CARD) != 0 || (d & a->asked) != 0)
		return 0;
	if ((d & SOTP_F_LOGIN_CHOICE) == 0 && a->login != SOTP_LOGIN_NONE)
		return 0;
	if (cdef == NULL || cdef->action != SOTP_ACT_REGISTER)
		return (d & ~(unsigned int)SOTP_F_PASSWORD) == 0 && !serial &&
		    a->step == -1;
	if (!(d & SOTP_F_SERIAL) != !serial ||
	    !(d & SOTP_F_OTP) != (a->step < 0))
		return 0;
	if ((d & SOTP_F_OTP) && !(d & SOTP_F_SERIAL))
		return 0;
	return !(d & SOTP_F_LOGIN_CHOICE) || (d & SOTP_F_OTP);
}

/* The fields a state may hold, beyond what its MAC vouches for. */
static int
state_sane(const struct sotp_attempt *a)
{
	const struct sotp_policy *p = &a->ctx->pol;
	unsigned int i;

	if (a->ncells > SOTP_MAX_CELLS || a->done >= (1u << SOTP_NFACTORS) ||
	    (a->asked != 0 && sotp_engine_fidx(a->asked) < 0) ||
	    a->login > SOTP_LOGIN_CARD ||
	    (a->serial[0] != '\0' && !sotp_id_valid(a->serial)) ||
	    !done_sane(a))
		return 0;
	for (i = 0; i < a->ncells; i++)
		if (a->cells[i] >= p->card_rows * p->card_cols)
			return 0;
	return 1;
}

/* Validates a state; returns 0 or the reason to reject with. */
static int
load_state(struct sotp_attempt *a, const uint8_t *raw, size_t len)
{
	uint8_t mac[STATE_MAC_LEN];
	char why[SOTP_CTX_ERR_MAX];
	const uint8_t *p = raw + 1, *id;
	size_t sl, fixed, tail;
	uint32_t kv = 0;
	int rc;

	if (len < 1 ||
	    (raw[0] != STATE_V2 && raw[0] != STATE_V3 && raw[0] != STATE_V4))
		return SOTP_R_STATE_INVALID;
	fixed = STATE_FIXED(raw[0]);
	tail = STATE_TAIL(raw[0]);
	if (len < fixed + tail || len > STATE_MAX)
		return SOTP_R_STATE_INVALID;
	if (raw[0] != STATE_V2)
		kv = (uint32_t)get(&p, 4);
	sl = raw[fixed - 1];
	if (fixed + sl + tail != len)
		return SOTP_R_STATE_INVALID;
	/* A version this store does not hold signed nothing of its own. */
	if (raw[0] == STATE_V3 && kv == 0)
		return SOTP_R_STATE_INVALID;
	a->ctx->err[0] = '\0'; /* the text of this check's failure, if any */
	rc = state_mac(a, kv, raw, len - STATE_MAC_LEN, mac);
	if (rc == SOTP_ERR_NOT_FOUND)
		return SOTP_R_STATE_INVALID;
	/*
	 * Any other failure is this server's (the store or the KEK that a
	 * version it lacks comes from, the HMAC itself), not the State's:
	 * refused as that failure, its cause logged, so that neither the
	 * customer nor the audit trail reads it as a forged session.
	 */
	if (rc != SOTP_OK) {
		sotp_strlcpy(why, sotp_ctx_errmsg(a->ctx), sizeof(why));
		sotp_ctx_seterr(a->ctx,
		    "the State cannot be checked (key version %u): %s", kv,
		    why[0] != '\0' ? why : sotp_strerror(rc));
		a->state_rc = rc;
		return sotp_reason_from_rc(rc);
	}
	if (CRYPTO_memcmp(mac, raw + len - STATE_MAC_LEN, STATE_MAC_LEN) != 0)
		return SOTP_R_STATE_INVALID;
	id = p;
	p += SOTP_STATE_ID_LEN;
	a->state_expires = (int64_t)get(&p, 8);
	if (a->state_expires <= (int64_t)a->now)
		return SOTP_R_STATE_EXPIRED;
	a->rounds = *p++;
	a->done = *p++;
	a->asked = *p++;
	a->ncells = *p++;
	memcpy(a->cells, p, SOTP_MAX_CELLS);
	p += SOTP_MAX_CELLS;
	a->login = (enum sotp_login) * p++;
	a->drift = (int)(int32_t)(uint32_t)get(&p, 4);
	a->step = (int64_t)get(&p, 8);
	p++;
	memcpy(a->serial, p, sl);
	a->serial[sl] = '\0';
	p += sl;
	/* Version 4 is written with the password done, and only then. */
	if (!state_sane(a) ||
	    (raw[0] == STATE_V4 && (a->done & SOTP_F_PASSWORD) == 0))
		return SOTP_R_STATE_INVALID;
	if (raw[0] == STATE_V4) {
		memcpy(a->pw_tag, p, STATE_TAG_LEN);
		a->pw_bound = 1;
	}
	memcpy(a->state_id, id, SOTP_STATE_ID_LEN);
	a->state_kv = kv;
	a->resumed = 1;
	return 0;
}

/* Nothing of a bad state survives into the attempt. */
static void
drop_state(struct sotp_attempt *a)
{
	a->rounds = a->done = a->asked = a->ncells = 0;
	a->serial[0] = '\0';
	a->step = -1;
	a->drift = 0;
	a->login = SOTP_LOGIN_NONE;
	a->resumed = 0;
	a->pw_bound = 0;
	SOTP_WIPE_ARRAY(a->pw_tag);
}

int
sotp_attempt_state_holds(struct sotp_attempt *a, const char *pwhash, int *holds)
{
	uint8_t digest[SOTP_PW_DIGEST_LEN], tag[STATE_TAG_LEN];
	int rc = SOTP_OK;

	*holds = 1;
	if (!a->pw_bound)
		return SOTP_OK;
	*holds = 0;
	/* A contract gone, or left without a password: nothing matches. */
	if (pwhash != NULL && pwhash[0] != '\0' &&
	    (rc = pw_digest(pwhash, digest)) == SOTP_OK &&
	    (rc = pw_tag(a, a->state_kv, digest, tag)) == SOTP_OK)
		*holds = CRYPTO_memcmp(tag, a->pw_tag, STATE_TAG_LEN) == 0;
	if (*holds) {
		memcpy(a->pw_digest, digest, sizeof(digest));
		a->pw_digest_set = 1;
	} else {
		if (rc == SOTP_OK)
			a->state_reason = SOTP_R_STATE_INVALID;
		drop_state(a);
	}
	SOTP_WIPE_ARRAY(digest);
	SOTP_WIPE_ARRAY(tag);
	return rc;
}

int
sotp_attempt_resume(struct sotp_ctx *ctx, const char *contract_id,
    const char *context, const uint8_t *state, size_t len, time_t now,
    struct sotp_attempt **out)
{
	struct sotp_attempt *a = NULL;
	int rc;

	if (out != NULL)
		*out = NULL;
	if (state == NULL && len != 0)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_attempt_begin(ctx, contract_id, context, now, &a)) !=
	    SOTP_OK)
		return rc;
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK) {
		sotp_attempt_free(a);
		return rc;
	}
	a->state_reason = load_state(a, state, len);
	if (a->state_reason != 0)
		drop_state(a);
	*out = a;
	return SOTP_OK;
}

int
sotp_attempt_resume_service(struct sotp_ctx *ctx, const char *contract_id,
    const char *service, const uint8_t *state, size_t len, time_t now,
    struct sotp_attempt **out)
{
	const char *context = NULL;

	if (out != NULL)
		*out = NULL;
	if (ctx == NULL || (state == NULL && len != 0))
		return SOTP_ERR_INVALID_ARG;
	/*
	 * A service the map does not name has no context to check the
	 * state against: nothing of the state is read, and the attempt is
	 * refused as sotp_attempt_begin_service refuses it.
	 */
	if (service != NULL && service[0] != '\0' &&
	    sotp_policy_context_for(ctx, service, &context) == SOTP_OK)
		return sotp_attempt_resume(
		    ctx, contract_id, context, state, len, now, out);
	return sotp_attempt_begin_service(ctx, contract_id, service, now, out);
}

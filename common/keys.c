/*
 * keys.c - the keyring: envelope encryption with versioned keys.
 *
 * The hierarchy.
 *   KEK  the key-encryption key: the master key file (kek = file), or an
 *        AES key in a PKCS#11 token that never leaves it (kek = pkcs11,
 *        pkcs11.c). It wraps the keys below and does nothing else.
 *   DEK  a data-encryption key, 32 random bytes, one per version (1, 2,
 *        ...). It seals token secrets and card grids (seal.c records its
 *        version in each value), and subkeys derive from it:
 *          state = HKDF(DEK, "shinkin-otp state v1")  signs RADIUS States;
 *          audit = HKDF(DEK, "shinkin-otp audit v1")  keys the audit chain;
 *          card  = HKDF(DEK, "shinkin-otp card v1")   picks a card's cells;
 *          seed  = HKDF(DEK, "shinkin-otp seed v1")   keys each token's seed
 *                                                     fingerprint (seedfp.c).
 *        The store keeps each version wrapped under the KEK (key_wrap,
 *        one row per version, KEK and purpose), never in clear.
 *   v0   a store from before versions: the master key file itself was
 *        the data key, its subkeys derived from it exactly as above.
 *        An upgraded store starts at version 0 and keeps working as it
 *        was: init wraps the file's key as version 0 under the KEK the
 *        same file gives, so that a later KEK (a token) can take it over;
 *        `key rotate` moves the store to version 1.
 *
 * KEK names, as the store records them: "file:" and 16 hex digits of a
 * keyed hash of the master key file (so that one file can be told from
 * another, and a farm's servers agree when they hold the same), or
 * "pkcs11:TOKEN/KEY", the token's and the key's labels.
 *
 * One process unwraps each version once (a PKCS#11 call per version, not
 * per decision) into pages of its own, locked (mlock) and left out of
 * core dumps (MADV_DONTDUMP), wiped when the last context lets go. radiusd
 * shares one keyring between its threads (sotp_ctx_load_keyring).
 *
 * Finding a new version. The store's key_ring row carries a generation,
 * bumped in the transaction of every change (a version made current, one
 * retired, a KEK added or dropped). A process reads it at most every
 * `refresh` seconds of the policy (a primary-key read), when a value or a
 * State names a version it does not hold, and when it seals: a farm moves
 * to a new version without a restart, within `refresh` seconds.
 *
 * Across a rotation (keys_admin.c has its steps): every live version
 * unseals what it sealed, so both verify while values are re-sealed; a
 * State names the version that signed it (engine_state.c), so a server
 * that has not yet seen the new version fetches it and verifies; the old
 * version is retired only when no value names it (a foreign key makes
 * the database refuse otherwise) and when every State it signed has
 * expired. Audit rows name their version too (audit.c); a retired
 * version's audit subkey stays wrapped in the store, since rows it keyed
 * must stay verifiable: it can check and forge audit rows of that
 * version only, and the chain's next version seals them (each row's MAC
 * covers the previous row's).
 */
#include "sotp_int.h"
#include "store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* Versions one process holds at once: live ones and retired audit keys. */
#define KR_SLOTS 32
/* The AAD of a wrapped key: label, version, purpose. */
#define WRAP_LABEL "shinkin-otp key"
#define WRAP_AAD_LEN (sizeof(WRAP_LABEL) - 1 + 4 + 1)

struct kr_slot {
	uint32_t version;
	int used;
	int dek_ok;   /* live: seals, unseals, signs States */
	int audit_ok; /* its audit subkey (kept after retirement) */
	int card_ok;  /* its card subkey, made at its first use */
	int seed_ok;  /* its seed subkey, made at its first use */
	uint8_t dek[SOTP_KEY_LEN];
	uint8_t state[SOTP_KEY_LEN];
	uint8_t audit[SOTP_KEY_LEN];
	uint8_t card[SOTP_KEY_LEN];
	uint8_t seed[SOTP_KEY_LEN];
};

/* Everything secret, in locked pages of its own. */
struct kr_secret {
	uint8_t file_key[SOTP_KEY_LEN]; /* the master key file (kek = file) */
	uint8_t file_kek[SOTP_KEY_LEN]; /* HKDF(file_key, "... kek v1") */
	struct kr_slot slot[KR_SLOTS];
};

struct sotp_keyring {
	pthread_mutex_t lock; /* every use: radiusd's threads share it */
	unsigned int refs;
	struct kr_secret *sec;
	size_t seclen;
	int mlocked;
	struct sotp_policy *pol; /* the policy it was opened with (KEK) */
	struct sotp_p11 *p11;
	char kek[SOTP_KEK_NAME_MAX];  /* "file:HEX", "pkcs11:TOKEN/KEY" */
	char conf[SOTP_KEK_CONF_MAX]; /* what the policy says (sotp_kek_conf) */
	int64_t gen;                  /* key_ring.gen held; -1: none yet */
	uint64_t checked_ms;          /* when gen was read (monotonic) */
	int recheck;                  /* read gen at the next use (reconnect) */
	uint32_t current;
	int64_t switched;
	size_t evict; /* the next slot a retired audit key may give up */
};

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
sotp_kek_conf(const struct sotp_policy *p, char *out, size_t outsz)
{
	if (p->kek == SOTP_KEK_PKCS11)
		snprintf(out, outsz, "pkcs11:%s/%s", p->p11_token, p->p11_key);
	else
		snprintf(out, outsz, "file %s", p->master_key);
}

/* "file:" and the first 8 bytes of a keyed hash of the file's KEK. */
static int
file_kek_name(struct sotp_keyring *k)
{
	static const char label[] = "shinkin-otp kek name";
	uint8_t h[32];
	size_t i;
	int rc;

	if ((rc = sotp_hmac_sha256(
	         k->sec->file_kek, label, sizeof(label) - 1, h)) != SOTP_OK)
		return rc;
	memcpy(k->kek, "file:", 5);
	for (i = 0; i < 8; i++)
		snprintf(k->kek + 5 + 2 * i, 3, "%02x", h[i]);
	return SOTP_OK;
}

/* ---- locked memory ---- */

static int
secure_alloc(struct sotp_keyring *k)
{
	long pg = sysconf(_SC_PAGESIZE);
	void *p;

	if (pg <= 0)
		pg = 4096;
	k->seclen =
	    (sizeof(*k->sec) + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
	p = mmap(NULL, k->seclen, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return SOTP_ERR_NOMEM;
	k->sec = p;
	/* Out of core dumps; and never on swap, where the limit allows. */
	(void)madvise(p, k->seclen, MADV_DONTDUMP);
	k->mlocked = mlock(p, k->seclen) == 0;
	return SOTP_OK;
}

static void
secure_free(struct sotp_keyring *k)
{
	if (k->sec == NULL)
		return;
	sotp_wipe(k->sec, k->seclen);
	if (k->mlocked)
		(void)munlock(k->sec, k->seclen);
	(void)munmap(k->sec, k->seclen);
	k->sec = NULL;
}

/* ---- the keyring's life ---- */

int
sotp_keyring_new(const struct sotp_policy *p, struct sotp_keyring **out,
    char *err, size_t errsz)
{
	struct sotp_keyring *k = NULL;
	int rc = SOTP_ERR_NOMEM;

	*out = NULL;
	err[0] = '\0';
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return SOTP_ERR_NOMEM;
	k->refs = 1;
	k->gen = -1;
	if (pthread_mutex_init(&k->lock, NULL) != 0) {
		free(k);
		return SOTP_ERR_SYSTEM;
	}
	if ((k->pol = malloc(sizeof(*k->pol))) == NULL ||
	    (rc = secure_alloc(k)) != SOTP_OK)
		goto out;
	memcpy(k->pol, p, sizeof(*p));
	sotp_kek_conf(p, k->conf, sizeof(k->conf));
	/*
	 * One source, never the other: with kek = pkcs11 the master key
	 * file is not even opened, so a token that fails cannot be papered
	 * over by a file left behind.
	 */
	if (p->kek == SOTP_KEK_PKCS11) {
		if ((rc = sotp_p11_open(p, &k->p11, err, errsz)) == SOTP_OK)
			snprintf(k->kek, sizeof(k->kek), "pkcs11:%s/%s",
			    p->p11_token, p->p11_key);
	} else if ((rc = sotp_key_load(p->master_key, k->sec->file_key, err,
	                errsz)) == SOTP_OK &&
	    ((rc = sotp_kdf(k->sec->file_key, "shinkin-otp kek v1",
	          k->sec->file_kek)) != SOTP_OK ||
	        (rc = file_kek_name(k)) != SOTP_OK))
		sotp_errf(err, errsz, "cannot derive the key-encryption key");
	if (rc != SOTP_OK)
		goto out;
	*out = k;
	k = NULL;
out:
	sotp_keyring_free(k);
	return rc;
}

struct sotp_keyring *
sotp_keyring_ref(struct sotp_keyring *k)
{
	pthread_mutex_lock(&k->lock);
	k->refs++;
	pthread_mutex_unlock(&k->lock);
	return k;
}

void
sotp_keyring_free(struct sotp_keyring *k)
{
	unsigned int left;

	if (k == NULL)
		return;
	pthread_mutex_lock(&k->lock);
	left = --k->refs;
	pthread_mutex_unlock(&k->lock);
	if (left > 0)
		return;
	sotp_p11_close(k->p11);
	secure_free(k);
	free(k->pol);
	pthread_mutex_destroy(&k->lock);
	sotp_free_secret(k, sizeof(*k));
}

const char *
sotp_keyring_kek(const struct sotp_keyring *k)
{
	return k->kek;
}

const char *
sotp_keyring_conf(const struct sotp_keyring *k)
{
	return k->conf;
}

int
sotp_keyring_locked(const struct sotp_keyring *k)
{
	return k->mlocked;
}

/* ---- wrapping under the KEK ---- */

static void
wrap_aad(uint32_t v, int what, uint8_t *aad)
{
	size_t n = sizeof(WRAP_LABEL) - 1;

	memcpy(aad, WRAP_LABEL, n);
	aad[n] = (uint8_t)(v >> 24);
	aad[n + 1] = (uint8_t)(v >> 16);
	aad[n + 2] = (uint8_t)(v >> 8);
	aad[n + 3] = (uint8_t)v;
	aad[n + 4] = (uint8_t)what;
}

/*
 * One PKCS#11 call; a token that went away (or a session that did) is
 * opened again once before the call fails.
 */
static int
p11_call(struct sotp_keyring *k, int enc, const uint8_t *iv, const uint8_t *aad,
    size_t aadlen, const uint8_t *in, size_t inlen, uint8_t *out, size_t outsz,
    size_t *outlen, char *err, size_t errsz)
{
	struct sotp_p11 *fresh = NULL;
	int rc;

	rc = sotp_p11_crypt(k->p11, enc, iv, aad, aadlen, in, inlen, out, outsz,
	    outlen, err, errsz);
	if (rc != SOTP_ERR_KEY)
		return rc;
	if (sotp_p11_open(k->pol, &fresh, err, errsz) != SOTP_OK)
		return SOTP_ERR_KEY;
	sotp_p11_close(k->p11);
	k->p11 = fresh;
	return sotp_p11_crypt(k->p11, enc, iv, aad, aadlen, in, inlen, out,
	    outsz, outlen, err, errsz);
}

/*
 * Wraps a 32-byte key as version v's `what` (SOTP_WRAP_*) under the
 * keyring's KEK: the layout of a version 0 sealed value (seal.c), its
 * AAD naming the version and purpose, so a wrapped key cannot be passed
 * off as another. out[SOTP_WRAP_LEN].
 */
int
sotp_keyring_wrap(struct sotp_keyring *k, uint32_t v, int what,
    const uint8_t *key, uint8_t *out, size_t *outlen, char *err, size_t errsz)
{
	uint8_t aad[1 + WRAP_AAD_LEN];
	size_t n = 0;
	int rc;

	*outlen = 0;
	wrap_aad(v, what, aad + 1);
	if (k->p11 == NULL) {
		rc = sotp_seal(k->sec->file_kek, aad + 1, WRAP_AAD_LEN, key,
		    SOTP_KEY_LEN, out, SOTP_WRAP_LEN, outlen);
		if (rc != SOTP_OK)
			sotp_errf(err, errsz, "cannot wrap a key: %s",
			    sotp_strerror(rc));
		return rc;
	}
	/* The same layout: the layout byte is authenticated first. */
	out[0] = aad[0] = 1;
	if ((rc = sotp_random(out + 1, SOTP_SEAL_NONCE)) != SOTP_OK)
		return rc;
	if ((rc = p11_call(k, 1, out + 1, aad, sizeof(aad), key, SOTP_KEY_LEN,
	         out + 1 + SOTP_SEAL_NONCE, SOTP_WRAP_LEN - 1 - SOTP_SEAL_NONCE,
	         &n, err, errsz)) != SOTP_OK)
		return rc;
	if (n != SOTP_KEY_LEN + SOTP_SEAL_TAG) {
		sotp_errf(err, errsz, "pkcs11: %s: C_Encrypt gave %zu bytes",
		    sotp_p11_where(k->p11), n);
		return SOTP_ERR_KEY;
	}
	*outlen = SOTP_WRAP_LEN;
	return SOTP_OK;
}

int
sotp_keyring_unwrap(struct sotp_keyring *k, uint32_t v, int what,
    const uint8_t *blob, size_t len, uint8_t *key, char *err, size_t errsz)
{
	uint8_t aad[1 + WRAP_AAD_LEN], out[SOTP_WRAP_LEN];
	size_t n = 0;
	int rc;

	wrap_aad(v, what, aad + 1);
	if (len != SOTP_WRAP_LEN || blob[0] != 1) {
		sotp_errf(err, errsz,
		    "key version %u: its wrapped %s key is malformed", v,
		    what == SOTP_WRAP_DEK ? "data" : "audit");
		return SOTP_ERR_DECRYPT;
	}
	if (k->p11 == NULL)
		rc = sotp_unseal(k->sec->file_kek, aad + 1, WRAP_AAD_LEN, blob,
		    len, key, SOTP_KEY_LEN, &n);
	else {
		/* Tokens (SoftHSM) want room for the tag in the output too. */
		aad[0] = 1;
		rc = p11_call(k, 0, blob + 1, aad, sizeof(aad),
		    blob + 1 + SOTP_SEAL_NONCE, len - 1 - SOTP_SEAL_NONCE, out,
		    sizeof(out), &n, err, errsz);
		if (rc == SOTP_OK && n == SOTP_KEY_LEN)
			memcpy(key, out, SOTP_KEY_LEN);
		SOTP_WIPE_ARRAY(out);
	}
	if (rc == SOTP_OK && n != SOTP_KEY_LEN)
		rc = SOTP_ERR_DECRYPT;
	if (rc == SOTP_ERR_DECRYPT)
		sotp_errf(err, errsz,
		    "key version %u: %s cannot unwrap its %s key: not the key that wrapped it, or the row was changed",
		    v,
		    k->p11 != NULL ? sotp_p11_where(k->p11)
		                   : "the master key file",
		    what == SOTP_WRAP_DEK ? "data" : "audit");
	if (rc != SOTP_OK)
		sotp_wipe(key, SOTP_KEY_LEN);
	return rc;
}

/* ---- slots ---- */

static struct kr_slot *
slot_find(struct sotp_keyring *k, uint32_t v)
{
	size_t i;

	for (i = 0; i < KR_SLOTS; i++)
		if (k->sec->slot[i].used && k->sec->slot[i].version == v)
			return &k->sec->slot[i];
	return NULL;
}

/* A free slot for v, or one holding only a retired audit key. */
static struct kr_slot *
slot_new(struct sotp_keyring *k, uint32_t v)
{
	struct kr_slot *s;
	size_t i, n;

	if ((s = slot_find(k, v)) != NULL)
		return s;
	for (i = 0; i < KR_SLOTS; i++)
		if (!k->sec->slot[i].used)
			break;
	/*
	 * Every slot used: a retired version's audit key gives way, taken
	 * in turn, so that the one just loaded is the last to go. Those are
	 * loaded again when wanted (sotp_keys_audit_load): a store may have
	 * retired any number of versions.
	 */
	if (i == KR_SLOTS) {
		for (n = 0; n < KR_SLOTS; n++) {
			i = (k->evict + n) % KR_SLOTS;
			if (!k->sec->slot[i].dek_ok)
				break;
		}
		if (n == KR_SLOTS)
			return NULL;
		k->evict = (i + 1) % KR_SLOTS;
	}
	s = &k->sec->slot[i];
	sotp_wipe(s, sizeof(*s));
	s->used = 1;
	s->version = v;
	return s;
}

/* Takes dek as version v's data key, with its State and audit subkeys. */
static int
slot_set_dek(struct kr_slot *s, const uint8_t *dek)
{
	int rc;

	memcpy(s->dek, dek, SOTP_KEY_LEN);
	s->card_ok = s->seed_ok = 0;
	if ((rc = sotp_kdf(s->dek, "shinkin-otp state v1", s->state)) !=
	        SOTP_OK ||
	    (rc = sotp_kdf(s->dek, "shinkin-otp audit v1", s->audit)) !=
	        SOTP_OK) {
		sotp_wipe(s, sizeof(*s));
		return rc;
	}
	s->dek_ok = s->audit_ok = 1;
	return SOTP_OK;
}

/* A retired version: its data key goes, its audit key stays. */
static void
slot_retire(struct kr_slot *s)
{
	SOTP_WIPE_ARRAY(s->dek);
	SOTP_WIPE_ARRAY(s->state);
	SOTP_WIPE_ARRAY(s->card);
	SOTP_WIPE_ARRAY(s->seed);
	s->dek_ok = s->card_ok = s->seed_ok = 0;
}

/* ---- reading the keyring from the store ---- */

/* Version v's data key into slot s, unwrapped from blob[len]. */
static int
load_dek(struct sotp_ctx *ctx, struct kr_slot *s, uint32_t v,
    const uint8_t *blob, size_t len)
{
	struct sotp_keyring *k = ctx->keys;
	uint8_t dek[SOTP_KEY_LEN];
	int rc;

	if (len == 0) {
		sotp_ctx_seterr(ctx,
		    "key version %u has no copy wrapped under %s, the key-encryption key of %s (%s: a key other than the store's? see shinkin-otp key status, and key rewrap%s)",
		    v, k->kek, ctx->pol.path, k->conf,
		    v == 0
		        ? "; a store upgraded from before key versions takes its first with shinkin-otp init"
		        : "");
		rc = SOTP_ERR_KEY;
	} else if ((rc = sotp_keyring_unwrap(k, v, SOTP_WRAP_DEK, blob, len,
	                dek, ctx->err, sizeof(ctx->err))) != SOTP_OK)
		rc = SOTP_ERR_KEY;
	else
		rc = slot_set_dek(s, dek);
	SOTP_WIPE_ARRAY(dek);
	if (rc != SOTP_OK)
		sotp_wipe(s, sizeof(*s));
	return rc;
}

static int
is_live(const struct sotp_key_live *live, size_t n, uint32_t v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (live[i].version == v)
			return 1;
	return 0;
}

/*
 * Brings the slots to the store's live versions, read in one statement
 * (one snapshot of the ring and its keys): what is new is unwrapped, what
 * was retired is wiped (its audit key stays).
 */
static int
reload(struct sotp_ctx *ctx)
{
	struct sotp_keyring *k = ctx->keys;
	struct sotp_key_live *live = NULL;
	struct sotp_key_ring ring;
	struct kr_slot *s;
	size_t i, n = 0;
	int rc, over = 0;

	if ((live = calloc(KR_SLOTS, sizeof(*live))) == NULL)
		return SOTP_ERR_NOMEM;
	rc = sotp_store_key_load(
	    ctx->st, k->kek, &ring, live, KR_SLOTS, &n, &over);
	if (rc == SOTP_ERR_NOT_FOUND) {
		sotp_ctx_seterr(ctx,
		    "the store has no data-encryption key yet: run shinkin-otp init");
		rc = SOTP_ERR_KEY;
		goto out;
	}
	if (rc != SOTP_OK) {
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
		goto out;
	}
	if (over || !is_live(live, n, ring.current)) {
		sotp_ctx_seterr(ctx,
		    "the store's key versions do not fit: %s%zu live, current %u",
		    over ? "over " : "", n, ring.current);
		rc = SOTP_ERR_STORE;
		goto out;
	}
	for (i = 0; i < KR_SLOTS; i++) {
		s = &k->sec->slot[i];
		if (s->used && s->dek_ok && !is_live(live, n, s->version))
			slot_retire(s);
	}
	for (i = 0; i < n; i++) {
		if ((s = slot_find(k, live[i].version)) != NULL && s->dek_ok)
			continue;
		if ((s = slot_new(k, live[i].version)) == NULL) {
			sotp_ctx_seterr(ctx, "too many key versions held");
			rc = SOTP_ERR_KEY;
			goto out;
		}
		if ((rc = load_dek(ctx, s, live[i].version, live[i].blob,
		         live[i].len)) != SOTP_OK)
			goto out;
	}
	k->gen = ring.gen;
	k->current = ring.current;
	k->switched = ring.switched;
	rc = SOTP_OK;
out:
	if (live != NULL)
		sotp_free_secret(live, KR_SLOTS * sizeof(*live));
	return rc;
}

/*
 * Under k->lock. Forced, the keys are read again at once (one statement);
 * else, once the refresh interval has passed, the ring's generation is
 * read, and the keys only when it moved.
 */
static int
sync_locked(struct sotp_ctx *ctx, int force)
{
	struct sotp_keyring *k = ctx->keys;
	struct sotp_key_ring ring;
	uint64_t now = mono_ms();
	int rc;

	if (!force && !k->recheck && k->gen >= 0 && now >= k->checked_ms &&
	    now - k->checked_ms < (uint64_t)k->pol->key_refresh * 1000)
		return SOTP_OK;
	if (!force && k->gen >= 0) {
		rc = sotp_store_key_ring(ctx->st, 0, &ring);
		if (rc == SOTP_OK && ring.gen == k->gen) {
			k->checked_ms = now;
			k->recheck = 0;
			return SOTP_OK;
		}
		if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND) {
			sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
			return rc;
		}
	}
	if ((rc = reload(ctx)) == SOTP_OK) {
		k->checked_ms = now;
		k->recheck = 0;
	}
	return rc;
}

int
sotp_keys_sync(struct sotp_ctx *ctx, int force)
{
	int rc;

	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	pthread_mutex_lock(&ctx->keys->lock);
	rc = sync_locked(ctx, force);
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

void
sotp_keys_recheck(struct sotp_ctx *ctx)
{
	if (ctx->keys == NULL)
		return;
	pthread_mutex_lock(&ctx->keys->lock);
	ctx->keys->recheck = 1;
	pthread_mutex_unlock(&ctx->keys->lock);
}

/*
 * The live slot of v, synced once more if this process lacks it; not
 * from inside a walk of rows (the store has a statement open), where a
 * version not held is simply not found.
 */
static int
live_slot(struct sotp_ctx *ctx, uint32_t v, struct kr_slot **out)
{
	struct kr_slot *s;
	int rc;

	*out = NULL;
	if ((s = slot_find(ctx->keys, v)) == NULL || !s->dek_ok) {
		if (ctx->st == NULL || ctx->st->busy)
			return SOTP_ERR_NOT_FOUND;
		if ((rc = sync_locked(ctx, 1)) != SOTP_OK)
			return rc;
		if ((s = slot_find(ctx->keys, v)) == NULL || !s->dek_ok)
			return SOTP_ERR_NOT_FOUND;
	}
	*out = s;
	return SOTP_OK;
}

/* ---- what the rest of the core uses ---- */

int
sotp_keys_current(struct sotp_ctx *ctx, uint32_t *kv)
{
	int rc;

	*kv = 0;
	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	pthread_mutex_lock(&ctx->keys->lock);
	if ((rc = sync_locked(ctx, 0)) == SOTP_OK)
		*kv = ctx->keys->current;
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

/* Under k->lock. */
static int
seal_locked(struct sotp_ctx *ctx, uint32_t kv, const char *aad,
    const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outsz, size_t *outlen)
{
	struct kr_slot *s = NULL;
	int rc;

	if ((rc = live_slot(ctx, kv, &s)) != SOTP_OK)
		return rc;
	return sotp_seal_kv(s->dek, s->version, aad, strlen(aad), pt, ptlen,
	    out, outsz, outlen);
}

int
sotp_keys_seal(struct sotp_ctx *ctx, const char *aad, const uint8_t *pt,
    size_t ptlen, uint8_t *out, size_t outsz, size_t *outlen)
{
	int rc;

	*outlen = 0;
	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	pthread_mutex_lock(&ctx->keys->lock);
	if ((rc = sync_locked(ctx, 0)) == SOTP_OK)
		rc = seal_locked(ctx, ctx->keys->current, aad, pt, ptlen, out,
		    outsz, outlen);
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

int
sotp_keys_seal_kv(struct sotp_ctx *ctx, uint32_t kv, const char *aad,
    const uint8_t *pt, size_t ptlen, uint8_t *out, size_t outsz, size_t *outlen)
{
	int rc;

	*outlen = 0;
	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	pthread_mutex_lock(&ctx->keys->lock);
	rc = seal_locked(ctx, kv, aad, pt, ptlen, out, outsz, outlen);
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

int
sotp_keys_unseal(struct sotp_ctx *ctx, const char *aad, const uint8_t *in,
    size_t inlen, uint8_t *out, size_t outsz, size_t *outlen)
{
	struct kr_slot *s = NULL;
	uint32_t kv = 0;
	int rc;

	*outlen = 0;
	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	if ((rc = sotp_sealed_kv(in, inlen, &kv)) != SOTP_OK)
		return rc;
	pthread_mutex_lock(&ctx->keys->lock);
	rc = live_slot(ctx, kv, &s);
	if (rc == SOTP_OK)
		rc = sotp_unseal(
		    s->dek, aad, strlen(aad), in, inlen, out, outsz, outlen);
	else if (rc == SOTP_ERR_NOT_FOUND) {
		/* Retired (or, met inside a walk of rows, new since). */
		sotp_ctx_seterr(ctx,
		    "sealed under key version %u, which this process does not hold",
		    kv);
		rc = SOTP_ERR_DECRYPT;
	}
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

enum live_sub { SUB_STATE, SUB_CARD, SUB_SEED };

/*
 * HMAC-SHA256 under a live version's State, card or seed subkey; the
 * card and seed subkeys are derived at their first use, so that a
 * process that asks no card question and adds no token (most) does not
 * pay for them at every load.
 */
static int
live_mac(struct sotp_ctx *ctx, uint32_t kv, enum live_sub sub, const void *data,
    size_t len, uint8_t *out)
{
	struct kr_slot *s = NULL;
	const uint8_t *key = NULL;
	int rc;

	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	pthread_mutex_lock(&ctx->keys->lock);
	if ((rc = live_slot(ctx, kv, &s)) == SOTP_OK) {
		if (sub == SUB_CARD && !s->card_ok &&
		    (rc = sotp_kdf(s->dek, "shinkin-otp card v1", s->card)) ==
		        SOTP_OK)
			s->card_ok = 1;
		if (sub == SUB_SEED && !s->seed_ok &&
		    (rc = sotp_kdf(s->dek, "shinkin-otp seed v1", s->seed)) ==
		        SOTP_OK)
			s->seed_ok = 1;
		key = sub == SUB_CARD ? s->card
		    : sub == SUB_SEED ? s->seed
		                      : s->state;
	}
	if (rc == SOTP_ERR_NOT_FOUND && sub != SUB_STATE) {
		/* as sotp_keys_unseal */
		sotp_ctx_seterr(ctx,
		    "%s under key version %u, which this process does not hold",
		    sub == SUB_CARD ? "card sealed" : "seed fingerprint", kv);
		rc = SOTP_ERR_DECRYPT;
	}
	if (rc == SOTP_OK)
		rc = sotp_hmac_sha256(key, data, len, out);
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

int
sotp_keys_state_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out)
{
	return live_mac(ctx, kv, SUB_STATE, data, len, out);
}

int
sotp_keys_card_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out)
{
	return live_mac(ctx, kv, SUB_CARD, data, len, out);
}

int
sotp_keys_seed_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out)
{
	return live_mac(ctx, kv, SUB_SEED, data, len, out);
}

struct wrapped_v {
	uint32_t v;
	int found;
};

static int
wrapped_row(void *arg, uint32_t version, const char *kek, int what,
    const uint8_t *blob, size_t len)
{
	struct wrapped_v *w = arg;

	(void)kek;
	(void)blob;
	(void)len;
	if (version == w->v && what == SOTP_WRAP_AUDIT)
		w->found = 1;
	return 0;
}

/*
 * Whether the store holds version v's audit key under any KEK:
 * SOTP_OK, or SOTP_ERR_NOT_FOUND (no such version ever keyed a row).
 */
static int
audit_wrapped_anywhere(struct sotp_ctx *ctx, uint32_t v)
{
	struct wrapped_v w = {v, 0};
	int rc;

	if ((rc = sotp_store_key_wraps(ctx->st, wrapped_row, &w)) != SOTP_OK) {
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
		return rc;
	}
	return w.found ? SOTP_OK : SOTP_ERR_NOT_FOUND;
}

/*
 * A retired version's audit key, from its wrapped copy (or the file).
 * SOTP_ERR_NOT_FOUND: the store holds none under any KEK (no row was
 * ever keyed by that version); SOTP_ERR_KEY: it holds one this process
 * cannot open (another KEK's only, or its unwrap failed), ctx->err says
 * which and why; else a store error.
 */
static int
load_audit(struct sotp_ctx *ctx, uint32_t v, struct kr_slot **out)
{
	struct sotp_keyring *k = ctx->keys;
	uint8_t blob[SOTP_WRAP_LEN], key[SOTP_KEY_LEN];
	struct kr_slot *s;
	size_t len = 0;
	int rc;

	rc = sotp_store_key_wrap_get(
	    ctx->st, v, k->kek, SOTP_WRAP_AUDIT, blob, sizeof(blob), &len);
	if (rc == SOTP_ERR_NOT_FOUND) {
		if ((rc = audit_wrapped_anywhere(ctx, v)) == SOTP_OK) {
			sotp_ctx_seterr(ctx,
			    "the audit key of key version %u has no copy wrapped under %s (%s): see shinkin-otp key status, and key rewrap",
			    v, k->kek, k->conf);
			rc = SOTP_ERR_KEY;
		} else if (rc == SOTP_ERR_NOT_FOUND)
			sotp_ctx_seterr(ctx,
			    "the store holds no audit key of key version %u",
			    v);
	} else if (rc != SOTP_OK)
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	else if ((rc = sotp_keyring_unwrap(k, v, SOTP_WRAP_AUDIT, blob, len,
	              key, ctx->err, sizeof(ctx->err))) != SOTP_OK)
		rc = SOTP_ERR_KEY;
	if (rc == SOTP_OK) {
		if ((s = slot_new(k, v)) == NULL) {
			sotp_ctx_seterr(ctx, "too many key versions held");
			rc = SOTP_ERR_KEY;
		} else {
			memcpy(s->audit, key, sizeof(key));
			s->audit_ok = 1;
			*out = s;
		}
	}
	SOTP_WIPE_ARRAY(key);
	return rc;
}

/* Under k->lock: a live version of the store's, or a retired one's. */
static int
audit_load_locked(struct sotp_ctx *ctx, uint32_t kv, struct kr_slot **out)
{
	struct kr_slot *s;
	int rc = SOTP_OK;

	if ((s = slot_find(ctx->keys, kv)) == NULL || !s->audit_ok) {
		if ((rc = sync_locked(ctx, 1)) == SOTP_OK &&
		    ((s = slot_find(ctx->keys, kv)) == NULL || !s->audit_ok))
			rc = load_audit(ctx, kv, &s);
	}
	*out = s;
	return rc;
}

int
sotp_keys_audit_load(struct sotp_ctx *ctx, uint32_t kv)
{
	struct kr_slot *s;
	int rc;

	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	pthread_mutex_lock(&ctx->keys->lock);
	rc = audit_load_locked(ctx, kv, &s);
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

/*
 * The audit key of kv, loaded first if not held. Inside a walk of the
 * audit rows, where the store has a statement open, only what is held:
 * SOTP_ERR_NOT_FOUND there means "not held now" (the walk stops, loads
 * it with sotp_keys_audit_load and goes on); elsewhere as
 * sotp_keys_audit_load.
 */
int
sotp_keys_audit_mac(struct sotp_ctx *ctx, uint32_t kv, const void *data,
    size_t len, uint8_t *out)
{
	struct kr_slot *s;
	int rc = SOTP_ERR_NOT_FOUND;

	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	pthread_mutex_lock(&ctx->keys->lock);
	if (((s = slot_find(ctx->keys, kv)) == NULL || !s->audit_ok) &&
	    ctx->st != NULL && !ctx->st->busy)
		rc = audit_load_locked(ctx, kv, &s);
	if ((s = slot_find(ctx->keys, kv)) != NULL && s->audit_ok)
		rc = sotp_hmac_sha256(s->audit, data, len, out);
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

int
sotp_keys_plain(struct sotp_ctx *ctx, uint32_t v, int what, uint8_t *out)
{
	struct kr_slot *s = NULL;
	int rc;

	if (ctx->keys == NULL)
		return SOTP_ERR_KEY;
	/* Loads it (a retired one too) into its slot first. */
	if (what == SOTP_WRAP_AUDIT &&
	    (rc = sotp_keys_audit_load(ctx, v)) != SOTP_OK)
		return rc;
	pthread_mutex_lock(&ctx->keys->lock);
	if (what == SOTP_WRAP_AUDIT) {
		s = slot_find(ctx->keys, v);
		rc = s != NULL && s->audit_ok ? SOTP_OK : SOTP_ERR_NOT_FOUND;
	} else
		rc = live_slot(ctx, v, &s);
	if (rc == SOTP_OK)
		memcpy(out, what == SOTP_WRAP_AUDIT ? s->audit : s->dek,
		    SOTP_KEY_LEN);
	pthread_mutex_unlock(&ctx->keys->lock);
	return rc;
}

int
sotp_keys_file_key(struct sotp_ctx *ctx, uint8_t *out)
{
	if (ctx->keys == NULL || ctx->keys->p11 != NULL)
		return SOTP_ERR_NOT_FOUND;
	memcpy(out, ctx->keys->sec->file_key, SOTP_KEY_LEN);
	return SOTP_OK;
}

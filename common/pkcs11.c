/*
 * pkcs11.c - the key-encryption key in a PKCS#11 token: an AES key that
 * never leaves it, used to encrypt and decrypt the data-encryption keys
 * (keys.c) and nothing else.
 *
 * The module is a shared object named by the policy: a token's own
 * (SoftHSM's libsofthsm2.so, an HSM vendor's) or p11-kit's proxy, which
 * loads the modules p11-kit is configured with. It is loaded with
 * dlopen(), so a build without any PKCS#11 library still runs with a
 * file key. The token is found by its label (and slot, when the policy
 * names one), logged in with the PIN from a file, and the key by its
 * label: one AES-256 secret key, sensitive and not extractable, allowed
 * to encrypt and decrypt. Anything else is refused with a message that
 * names the module, the token, the slot and the key, never the PIN.
 *
 * Mechanism: CKM_AES_GCM through C_Encrypt/C_Decrypt, with a random
 * 96-bit IV made here and the caller's AAD (the key version and purpose):
 * the same layout as a value sealed in software (seal.c), so one check
 * covers both. XXX an HSM that insists on making GCM IVs itself (some do
 * in FIPS mode) refuses a caller's IV; CKM_AES_KEY_WRAP_PAD would be the
 * way there.
 *
 * Ownership. A host process (radiusd, sshd) may have other users of the
 * same module: C_Initialize may find it initialised already, and this file
 * then never finalises it, and never logs out (a logout ends the login of
 * every session of the process). Closing the session is all it does; the
 * module stays loaded until the process ends.
 */
#define CRYPTOKI_COMPAT
#include "sotp_int.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

struct sotp_p11 {
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE sess;
	int have_sess;
	CK_OBJECT_HANDLE key;
	CK_SLOT_ID slot;
	int owns_init; /* C_Initialize was this handle's (not the host's) */
	int transient; /* the last failure may pass: see sotp_p11_open */
	/* "token 'T' (slot N), key 'K'": what every message names. */
	char where[256];
};

/* The CK_RV values an operator may meet, by name. */
static const struct {
	CK_RV rv;
	const char *name;
} rv_names[] = {
    {CKR_OK, "CKR_OK"},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED"},
    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
};

static const char *
rv_name(CK_RV rv)
{
	size_t i;

	for (i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	return "CKR_(other)";
}

/* A blank-padded PKCS#11 label as a C string. */
static void
label_str(const unsigned char *lab, size_t n, char *out, size_t outsz)
{
	while (n > 0 && (lab[n - 1] == ' ' || lab[n - 1] == '\0'))
		n--;
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, lab, n);
	out[n] = '\0';
}

static int
load_module(struct sotp_p11 *h, const char *module, char *err, size_t errsz)
{
	CK_C_GetFunctionList getf;
	CK_C_INITIALIZE_ARGS args;
	const char *why;
	CK_RV rv;

	/* RTLD_LOCAL: its symbols must not meet the host's (radiusd's). */
	if ((h->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		why = dlerror();
		sotp_errf(err, errsz, "pkcs11: cannot load module %s: %s",
		    module, why != NULL ? why : "unknown error");
		return SOTP_ERR_KEY;
	}
	*(void **)(&getf) = dlsym(h->dl, "C_GetFunctionList");
	if (getf == NULL || (rv = getf(&h->f)) != CKR_OK || h->f == NULL) {
		sotp_errf(err, errsz,
		    "pkcs11: %s is not a PKCS#11 module (no C_GetFunctionList)",
		    module);
		return SOTP_ERR_KEY;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK; /* radiusd's threads share it */
	rv = h->f->C_Initialize(&args);
	h->owns_init = rv == CKR_OK;
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		sotp_errf(err, errsz,
		    "pkcs11: module %s: C_Initialize: %s (is the token's storage readable by this user?)",
		    module, rv_name(rv));
		return SOTP_ERR_KEY;
	}
	return SOTP_OK;
}

/* Appends "'LABEL' in slot N" for each token present to list[listsz]. */
static void
list_add(char *list, size_t listsz, const char *label, CK_SLOT_ID slot)
{
	size_t n = strlen(list);

	if (n + 1 < listsz)
		snprintf(list + n, listsz - n, "%s'%s' in slot %lu",
		    n > 0 ? ", " : "", label, (unsigned long)slot);
}

/* The slot whose token carries the policy's label (and slot number). */
static int
find_token(
    struct sotp_p11 *h, const struct sotp_policy *p, char *err, size_t errsz)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_TOKEN_INFO ti;
	char label[33], seen[512] = "";
	int rc = SOTP_ERR_KEY, found = 0;
	CK_RV rv;

	if ((rv = h->f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_OK)
		goto fail;
	if (n > 0 && (slots = calloc(n, sizeof(*slots))) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if (n > 0 && (rv = h->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		goto fail;
	for (i = 0; i < n && !found; i++) {
		if (h->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		label_str(ti.label, sizeof(ti.label), label, sizeof(label));
		list_add(seen, sizeof(seen), label, slots[i]);
		if (strcmp(label, p->p11_token) == 0 &&
		    (!p->p11_has_slot || slots[i] == p->p11_slot)) {
			h->slot = slots[i];
			found = 1;
		}
	}
	if (!found) {
		/* It may be unreadable for a moment (sotp_p11_open). */
		h->transient = h->owns_init;
		if (p->p11_has_slot)
			sotp_errf(err, errsz,
			    "pkcs11: no token labelled '%s' in slot %lu of module %s (tokens present: %s)",
			    p->p11_token, p->p11_slot, p->p11_module,
			    seen[0] != '\0' ? seen : "none");
		else
			sotp_errf(err, errsz,
			    "pkcs11: no token labelled '%s' in module %s (tokens present: %s)",
			    p->p11_token, p->p11_module,
			    seen[0] != '\0' ? seen : "none");
		goto out;
	}
	rc = SOTP_OK;
	goto out;
fail:
	sotp_errf(err, errsz, "pkcs11: module %s: C_GetSlotList: %s",
	    p->p11_module, rv_name(rv));
out:
	free(slots);
	return rc;
}

static int
login(struct sotp_p11 *h, const struct sotp_policy *p, char *err, size_t errsz)
{
	char pin[256], why[SOTP_PATH_MAX + 128];
	int rc = SOTP_ERR_KEY;
	CK_RV rv;

	if ((rv = h->f->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL,
	         &h->sess)) != CKR_OK) {
		sotp_errf(err, errsz, "pkcs11: %s: C_OpenSession: %s", h->where,
		    rv_name(rv));
		goto out;
	}
	h->have_sess = 1;
	if (sotp_secret_read(p->p11_pin_file, pin, sizeof(pin), why,
	        sizeof(why)) != SOTP_OK) {
		sotp_errf(err, errsz, "pkcs11: %s: PIN file %s", h->where, why);
		goto out;
	}
	rv = h->f->C_Login(
	    h->sess, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
	if (rv == CKR_PIN_INCORRECT)
		sotp_errf(err, errsz,
		    "pkcs11: %s: login refused: wrong PIN (CKR_PIN_INCORRECT; the PIN is read from %s)",
		    h->where, p->p11_pin_file);
	else if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		sotp_errf(err, errsz, "pkcs11: %s: login refused: %s", h->where,
		    rv_name(rv));
		h->transient = rv == CKR_GENERAL_ERROR ||
		    rv == CKR_FUNCTION_FAILED || rv == CKR_DEVICE_ERROR;
	} else
		rc = SOTP_OK;
out:
	SOTP_WIPE_ARRAY(pin);
	return rc;
}

/*
 * The key: exactly one AES secret key with the label, of 32 bytes, that
 * may encrypt and decrypt, and can never be read out of the token.
 */
static int
find_key(
    struct sotp_p11 *h, const struct sotp_policy *p, char *err, size_t errsz)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_ATTRIBUTE want[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_KEY_TYPE, &type, sizeof(type)},
	    {CKA_LABEL, (void *)(uintptr_t)p->p11_key, strlen(p->p11_key)},
	};
	CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, enc = CK_FALSE,
	         dec = CK_FALSE;
	CK_ULONG len = 0, n = 0;
	CK_OBJECT_HANDLE obj[2];
	CK_ATTRIBUTE got[] = {
	    {CKA_SENSITIVE, &sens, sizeof(sens)},
	    {CKA_EXTRACTABLE, &extr, sizeof(extr)},
	    {CKA_ENCRYPT, &enc, sizeof(enc)},
	    {CKA_DECRYPT, &dec, sizeof(dec)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	};
	CK_RV rv;

	if ((rv = h->f->C_FindObjectsInit(h->sess, want, 3)) != CKR_OK ||
	    (rv = h->f->C_FindObjects(h->sess, obj, 2, &n)) != CKR_OK) {
		sotp_errf(err, errsz, "pkcs11: %s: C_FindObjects: %s", h->where,
		    rv_name(rv));
		(void)h->f->C_FindObjectsFinal(h->sess);
		return SOTP_ERR_KEY;
	}
	(void)h->f->C_FindObjectsFinal(h->sess);
	if (n != 1) {
		sotp_errf(err, errsz, "pkcs11: %s: %s", h->where,
		    n == 0
		        ? "no AES key with this label on the token"
		        : "more than one AES key with this label; a label must name one key");
		return SOTP_ERR_KEY;
	}
	h->key = obj[0];
	if ((rv = h->f->C_GetAttributeValue(h->sess, h->key, got, 5)) !=
	    CKR_OK) {
		sotp_errf(err, errsz, "pkcs11: %s: C_GetAttributeValue: %s",
		    h->where, rv_name(rv));
		return SOTP_ERR_KEY;
	}
	if (sens != CK_TRUE || extr != CK_FALSE) {
		sotp_errf(err, errsz,
		    "pkcs11: %s: the key could leave the token (CKA_SENSITIVE %s, CKA_EXTRACTABLE %s); make one that is sensitive and not extractable",
		    h->where, sens == CK_TRUE ? "true" : "false",
		    extr == CK_TRUE ? "true" : "false");
		return SOTP_ERR_KEY;
	}
	if (enc != CK_TRUE || dec != CK_TRUE || len != SOTP_KEY_LEN) {
		sotp_errf(err, errsz,
		    "pkcs11: %s: not an AES-256 key allowed to encrypt and decrypt (CKA_ENCRYPT, CKA_DECRYPT, %lu bytes)",
		    h->where, (unsigned long)len);
		return SOTP_ERR_KEY;
	}
	return SOTP_OK;
}

/* One try: module, token, login, key. */
static int
open_once(
    struct sotp_p11 *h, const struct sotp_policy *p, char *err, size_t errsz)
{
	int rc;

	h->transient = 0;
	if ((rc = load_module(h, p->p11_module, err, errsz)) != SOTP_OK ||
	    (rc = find_token(h, p, err, errsz)) != SOTP_OK)
		return rc;
	snprintf(h->where, sizeof(h->where), "token '%s' (slot %lu), key '%s'",
	    p->p11_token, (unsigned long)h->slot, p->p11_key);
	if ((rc = login(h, p, err, errsz)) != SOTP_OK ||
	    (rc = find_key(h, p, err, errsz)) != SOTP_OK)
		return rc;
	return SOTP_OK;
}

/* Undoes a failed try: the session, and the module's initialisation if
 * it was this handle's, so that the next try reads the token afresh. */
static void
undo_try(struct sotp_p11 *h)
{
	if (h->have_sess)
		(void)h->f->C_CloseSession(h->sess);
	h->have_sess = 0;
	if (h->owns_init)
		(void)h->f->C_Finalize(NULL);
	h->owns_init = 0;
	if (h->dl != NULL)
		dlclose(h->dl);
	h->dl = NULL;
	h->f = NULL;
}

/*
 * A failure that may pass is tried again, P11_TRIES times in all, a
 * P11_RETRY_MS apart: a login the token answers with CKR_GENERAL_ERROR,
 * CKR_FUNCTION_FAILED or CKR_DEVICE_ERROR (a network HSM's hiccup; a file
 * token that another process is rewriting, as SoftHSM2 rewrites its token
 * file at every login), or a token missing from a module this handle
 * initialised (it may have been read mid-write). A wrong PIN, a missing
 * key or a module that does not load is refused at once, and every
 * refusal still names what failed; nothing ever falls back to a file.
 */
#define P11_TRIES 3
#define P11_RETRY_MS 50

int
sotp_p11_open(
    const struct sotp_policy *p, struct sotp_p11 **out, char *err, size_t errsz)
{
	struct sotp_p11 *h = NULL;
	struct timespec ts = {0, P11_RETRY_MS * 1000000L};
	int rc, i;

	*out = NULL;
	err[0] = '\0';
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return SOTP_ERR_NOMEM;
	for (i = 0;; i++) {
		if ((rc = open_once(h, p, err, errsz)) == SOTP_OK)
			break;
		if (!h->transient || i + 1 >= P11_TRIES)
			goto out;
		undo_try(h);
		(void)nanosleep(&ts, NULL);
	}
	*out = h;
	h = NULL;
	rc = SOTP_OK;
out:
	sotp_p11_close(h);
	return rc;
}

void
sotp_p11_close(struct sotp_p11 *h)
{
	if (h == NULL)
		return;
	if (h->have_sess)
		(void)h->f->C_CloseSession(h->sess);
	/* The module stays loaded and initialised: see the top comment. */
	sotp_free_secret(h, sizeof(*h));
}

const char *
sotp_p11_where(const struct sotp_p11 *h)
{
	return h != NULL ? h->where : "";
}

int
sotp_p11_crypt(struct sotp_p11 *h, int enc, const uint8_t *iv,
    const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
    uint8_t *out, size_t outsz, size_t *outlen, char *err, size_t errsz)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM mech;
	CK_ULONG n = (CK_ULONG)outsz;
	CK_RV rv;

	*outlen = 0;
	memset(&gp, 0, sizeof(gp));
	gp.pIv = (CK_BYTE_PTR)(uintptr_t)iv;
	gp.ulIvLen = SOTP_SEAL_NONCE;
	gp.ulIvBits = SOTP_SEAL_NONCE * 8;
	gp.pAAD = (CK_BYTE_PTR)(uintptr_t)aad;
	gp.ulAADLen = (CK_ULONG)aadlen;
	gp.ulTagBits = SOTP_SEAL_TAG * 8;
	mech.mechanism = CKM_AES_GCM;
	mech.pParameter = &gp;
	mech.ulParameterLen = sizeof(gp);
	if (enc) {
		if ((rv = h->f->C_EncryptInit(h->sess, &mech, h->key)) ==
		    CKR_OK)
			rv =
			    h->f->C_Encrypt(h->sess, (CK_BYTE_PTR)(uintptr_t)in,
			        (CK_ULONG)inlen, out, &n);
	} else {
		if ((rv = h->f->C_DecryptInit(h->sess, &mech, h->key)) ==
		    CKR_OK)
			rv =
			    h->f->C_Decrypt(h->sess, (CK_BYTE_PTR)(uintptr_t)in,
			        (CK_ULONG)inlen, out, &n);
	}
	if (rv != CKR_OK) {
		sotp_wipe(out, outsz);
		sotp_errf(err, errsz, "pkcs11: %s: %s: %s", h->where,
		    enc ? "C_Encrypt" : "C_Decrypt", rv_name(rv));
		/*
		 * A tag that does not hold is a key that did not wrap this
		 * (or a wrapped key changed): not a token out of order.
		 */
		if (!enc &&
		    (rv == CKR_ENCRYPTED_DATA_INVALID ||
		        rv == CKR_ENCRYPTED_DATA_LEN_RANGE))
			return SOTP_ERR_DECRYPT;
		return SOTP_ERR_KEY;
	}
	*outlen = (size_t)n;
	return SOTP_OK;
}

/*
 * pskc_sig.c - the XML-DSig signature of a PSKC file (RFC 6030 section
 * 4: "the KeyContainer MAY be signed"), checked against the vendor's
 * certificate, pinned: its public key is the only key tried, no chain is
 * built and no trust store is read.
 *
 * Only one shape is accepted, the one oath-toolkit's pskctool (libpskc)
 * writes: one ds:Signature, the last child element of KeyContainer, whose
 * SignedInfo holds one Reference to the whole document (no URI, or
 * URI="") with the enveloped-signature transform and at most one C14N
 * after it. Such a Reference covers every byte the reader then reads, so
 * no element can be moved out of the signed part or added beside it
 * (signature wrapping): everything but the signature itself is digested.
 * A Reference to a part (URI="#id") or to anything outside (http:, file:)
 * is refused by name before xmlsec sees it, and xmlsec is told to accept
 * only the empty URI as well, so it opens no file and no socket.
 *
 * Algorithms: pskctool (libpskc 2.6) signs with rsa-sha1 over an sha1
 * digest and cannot be told otherwise, so both SHA-1 methods are
 * accepted; rsa-sha256 and sha256 are accepted too. Nothing else.
 *
 * The signature is checked in the tree the reader then walks, before any
 * secret is decrypted; the file is refused as a whole if it fails.
 */
#define _GNU_SOURCE /* memmem */
#include "import_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <libxml/tree.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* xmlsec.h first: the others use its types. */
#include <xmlsec/xmlsec.h>

#include <xmlsec/errors.h>
#include <xmlsec/keys.h>
#include <xmlsec/openssl/app.h>
#include <xmlsec/openssl/crypto.h>
#include <xmlsec/openssl/evp.h>
#include <xmlsec/transforms.h>
#include <xmlsec/xmldsig.h>

#define NS_PSKC "urn:ietf:params:xml:ns:keyprov:pskc"
#define NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define ALG_EXC_C14N "http://www.w3.org/2001/10/xml-exc-c14n#"
#define ALG_C14N "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
#define ALG_ENVELOPED NS_DS "enveloped-signature"
#define ALG_RSA_SHA1 NS_DS "rsa-sha1"
#define ALG_RSA_SHA256 "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
#define ALG_SHA1 NS_DS "sha1"
#define ALG_SHA256 "http://www.w3.org/2001/04/xmlenc#sha256"

#define SIG_ATTR_MAX 256
#define SIGNER_MIN_BITS 2048 /* NIST SP 800-131A: RSA below is disallowed */
#define SIG_QUOTE 64

static int sig_refuse(struct sotp_import_batch *b, const char *fmt, ...)
    SOTP_PRINTF(2, 3);

static int
sig_refuse(struct sotp_import_batch *b, const char *fmt, ...)
{
	char msg[SOTP_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sotp_import_refuse(
	    b->res, 0, SOTP_R_BAD_INPUT, "signature: %s", msg);
}

static int
is_el(const xmlNode *n, const char *ns, const char *name)
{
	return n != NULL && n->type == XML_ELEMENT_NODE && n->ns != NULL &&
	    n->ns->href != NULL && strcmp((const char *)n->ns->href, ns) == 0 &&
	    strcmp((const char *)n->name, name) == 0;
}

/* The ds:Signature elements anywhere under n; the first into *first. */
static unsigned int
count_sigs(const xmlNode *n, const xmlNode **first)
{
	unsigned int k = 0;

	for (; n != NULL; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (is_el(n, NS_DS, "Signature")) {
			if (k++ == 0 && *first == NULL)
				*first = n;
		}
		k += count_sigs(n->children, first);
	}
	return k;
}

/* The element children of n: how many, and how many are ds:name. */
static unsigned int
count_ds(const xmlNode *n, const char *name, unsigned int *all)
{
	const xmlNode *c;
	unsigned int k = 0;

	*all = 0;
	for (c = n->children; c != NULL; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		(*all)++;
		k += is_el(c, NS_DS, name);
	}
	return k;
}

/* The n-th (0-based) element child of p, or NULL. */
static const xmlNode *
nth_el(const xmlNode *p, unsigned int i)
{
	const xmlNode *c;

	for (c = p != NULL ? p->children : NULL; c != NULL; c = c->next)
		if (c->type == XML_ELEMENT_NODE && i-- == 0)
			return c;
	return NULL;
}

/*
 * The Algorithm attribute of a ds: element, read as xmlsec reads it
 * (xmlGetProp, whatever its prefix), quoted for a message too.
 */
static int
algorithm(const xmlNode *n, char *buf, size_t bufsz, char *q, size_t qsz)
{
	xmlChar *v;
	int r = -1;

	buf[0] = '\0';
	if (n != NULL &&
	    (v = xmlGetProp(n, (const xmlChar *)"Algorithm")) != NULL) {
		if (strlen((const char *)v) < bufsz) {
			memcpy(buf, v, strlen((const char *)v) + 1);
			r = 0;
		}
		xmlFree(v);
	}
	sotp_import_quote(q, qsz, buf);
	return r;
}

static int
one_of(const char *s, const char *a, const char *b)
{
	return strcmp(s, a) == 0 || strcmp(s, b) == 0;
}

/*
 * The Algorithm of n (NULL: the element is not there) is a1 or a2, or the
 * file is refused naming what it is and what is accepted.
 */
static int
want_alg(struct sotp_import_batch *b, const xmlNode *n, const char *a1,
    const char *a2, const char *what, const char *accepted)
{
	char alg[SIG_ATTR_MAX], q[SIG_QUOTE];

	if (algorithm(n, alg, sizeof(alg), q, sizeof(q)) == 0 &&
	    one_of(alg, a1, a2))
		return SOTP_OK;
	return sig_refuse(b, "%s '%s' is not accepted (%s)", what, q, accepted);
}

/* The Reference: the whole document, enveloped, one C14N at most. */
static int
check_reference(struct sotp_import_batch *b, const xmlNode *ref)
{
	char alg[SIG_ATTR_MAX], q[SIG_QUOTE];
	const xmlNode *tr, *dm;
	xmlChar *uri;
	unsigned int n, all, i;
	int rc;

	/* xmlGetProp, as xmlsec reads it: a prefixed URI is a URI too. */
	if ((uri = xmlGetProp(ref, (const xmlChar *)"URI")) != NULL) {
		sotp_import_quote(q, sizeof(q), (const char *)uri);
		n = uri[0] != '\0';
		xmlFree(uri);
		if (n)
			return sig_refuse(b,
			    "the Reference has URI '%s', not the whole file "
			    "(URI=\"\"): only the whole file may be signed "
			    "(signature wrapping)",
			    q);
	}
	tr = nth_el(ref, 0);
	if (!is_el(tr, NS_DS, "Transforms"))
		return sig_refuse(
		    b, "the Reference has no enveloped-signature transform");
	n = count_ds(tr, "Transform", &all);
	if (n != all || n < 1 || n > 2 ||
	    algorithm(nth_el(tr, 0), alg, sizeof(alg), q, sizeof(q)) != 0 ||
	    strcmp(alg, ALG_ENVELOPED) != 0)
		return sig_refuse(b,
		    "the Reference's transforms are not enveloped-signature "
		    "and at most one C14N");
	for (i = 1; i < n; i++)
		if ((rc = want_alg(b, nth_el(tr, i), ALG_EXC_C14N, ALG_C14N,
		         "transform", "C14N or exclusive C14N only")) !=
		    SOTP_OK)
			return rc;
	/* Not there, it is named as '' (its quote was never made before). */
	dm = nth_el(ref, 1);
	return want_alg(b, is_el(dm, NS_DS, "DigestMethod") ? dm : NULL,
	    ALG_SHA1, ALG_SHA256, "digest method", "sha1 or sha256");
}

/*
 * The shape pskctool writes, checked by name before xmlsec runs, so that
 * each refusal says what is wrong.
 */
static int
check_shape(
    struct sotp_import_batch *b, const xmlNode *root, const xmlNode **sigp)
{
	const xmlNode *sig = NULL, *si, *c, *last = NULL;
	unsigned int n, all;
	int rc;

	*sigp = NULL;
	n = count_sigs(root, &sig);
	if (n == 0)
		return sig_refuse(b,
		    "the file is not signed (no ds:Signature) and a signer "
		    "certificate was given");
	if (n > 1)
		return sig_refuse(
		    b, "%u ds:Signature elements: exactly one is accepted", n);
	for (c = root->children; c != NULL; c = c->next)
		if (c->type == XML_ELEMENT_NODE)
			last = c;
	if (sig->parent != root || sig != last)
		return sig_refuse(b,
		    "the ds:Signature is not the last child of KeyContainer "
		    "(enveloped signatures of the whole file only)");
	/* SignedInfo, SignatureValue, KeyInfo?: no Object, no Manifest. */
	if (count_ds(sig, "SignedInfo", &all) != 1 ||
	    count_ds(sig, "SignatureValue", &all) != 1 ||
	    (n = count_ds(sig, "KeyInfo", &all)) > 1 || n + 2 != all)
		return sig_refuse(b,
		    "the ds:Signature holds other than SignedInfo, "
		    "SignatureValue and KeyInfo");
	si = nth_el(sig, 0);
	if (!is_el(si, NS_DS, "SignedInfo") ||
	    !is_el(nth_el(si, 0), NS_DS, "CanonicalizationMethod") ||
	    !is_el(nth_el(si, 1), NS_DS, "SignatureMethod"))
		return sig_refuse(
		    b, "SignedInfo is not in the XML-DSig layout");
	if ((rc = want_alg(b, nth_el(si, 0), ALG_EXC_C14N, ALG_C14N,
	         "canonicalization", "C14N or exclusive C14N")) != SOTP_OK ||
	    (rc = want_alg(b, nth_el(si, 1), ALG_RSA_SHA1, ALG_RSA_SHA256,
	         "signature method", "rsa-sha1 or rsa-sha256")) != SOTP_OK)
		return rc;
	if ((n = count_ds(si, "Reference", &all)) != 1 || all != 3)
		return sig_refuse(b,
		    "SignedInfo holds %u References: exactly one, over the "
		    "whole file, is accepted",
		    n);
	*sigp = sig;
	return check_reference(b, nth_el(si, 2));
}

/* xmlsec reports to stderr by default; the refusal says enough. */
static void
quiet(const char *file, int line, const char *func, const char *object,
    const char *subject, int reason, const char *msg)
{
	(void)file;
	(void)line;
	(void)func;
	(void)object;
	(void)subject;
	(void)reason;
	(void)msg;
}

/*
 * xmlsec and its OpenSSL back end register their transforms and key
 * types in process-wide lists, once: the only mutable state of this
 * file, behind pthread_once. Nothing is ever shut down (the host process
 * owns libcrypto, and a library may import more than once).
 */
static pthread_once_t xmlsec_once = PTHREAD_ONCE_INIT;
static int xmlsec_ready;

static void
xmlsec_init(void)
{
	xmlsec_ready = xmlSecInit() == 0 && xmlSecCheckVersion() == 1 &&
	    xmlSecOpenSSLAppInit(NULL) == 0 && xmlSecOpenSSLInit() == 0;
	/* Last: the inits above install the default (stderr) callback. */
	xmlSecErrorsDefaultCallbackEnableOutput(0);
	xmlSecErrorsSetCallback(quiet);
}

/* Only blanks (a PEM file's line ends and indents) in [p, end). */
static int
blank(const char *p, const char *end)
{
	for (; p < end; p++)
		if (strchr(" \t\r\n", *p) == NULL || *p == '\0')
			return 0;
	return 1;
}

/*
 * The type of the PEM block whose "-----BEGIN " ends at p, as in "a PEM
 * block 'PRIVATE KEY'", or "a PEM block" when it is not a plain one: the
 * type is printed, so only capitals, digits and blanks are quoted.
 */
static void
pem_type(const char *p, const char *end, char *out, size_t outsz)
{
	size_t n = 0;

	while (p + n < end && n < 40 &&
	    ((p[n] >= 'A' && p[n] <= 'Z') || (p[n] >= '0' && p[n] <= '9') ||
	        p[n] == ' '))
		n++;
	if (n > 0 && (size_t)(end - p) - n >= 5 &&
	    memcmp(p + n, "-----", 5) == 0)
		snprintf(out, outsz, "a PEM block '%.*s'", (int)n, p);
	else
		snprintf(out, outsz, "a PEM block");
}

/*
 * The labels a signer certificate may carry: OpenSSL's PEM_read_bio_X509
 * reads the legacy "X509 CERTIFICATE" as a plain certificate, and old
 * vendor tools still write it. NULL when the block at p is neither.
 */
static const char *
cert_label(const char *p, const char *end)
{
	static const char *const labels[] = {"CERTIFICATE", "X509 CERTIFICATE"};
	size_t i, n;

	for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
		n = strlen(labels[i]);
		if ((size_t)(end - p) >= n + 5 &&
		    memcmp(p, labels[i], n) == 0 &&
		    memcmp(p + n, "-----", 5) == 0)
			return labels[i];
	}
	return NULL;
}

/* The fix for a file that is more than the PEM certificate alone. */
#define SIGNER_FIX                                                             \
	"write the certificate alone with: openssl x509 -in FILE -out NEWFILE"

/*
 * Every "-----BEGIN " in pem[len] is a certificate's, and there is one:
 * its start in *first and its label in *label; else -1 with why[].
 */
static int
one_begin(const char *pem, const char *end, const char **first,
    const char **label, char *why, size_t whysz)
{
	static const char begin[] = "-----BEGIN ";
	const char *p = pem, *l;
	char type[64];
	unsigned int n = 0;

	/*
	 * OpenSSL's PEM reader skips every block that is not the one asked
	 * for, so a private key beside the certificate would pass unseen:
	 * every BEGIN line is looked at here, wherever it stands.
	 */
	while ((p = memmem(p, (size_t)(end - p), begin, sizeof(begin) - 1)) !=
	    NULL) {
		p += sizeof(begin) - 1;
		if ((size_t)(end - p) >= 24 &&
		    memcmp(p, "TRUSTED CERTIFICATE-----", 24) == 0) {
			/* Trust settings ride with it; the pin honours none. */
			snprintf(why, whysz,
			    "holds a TRUSTED CERTIFICATE (OpenSSL trust settings "
			    "with it): " SIGNER_FIX);
			return -1;
		}
		if ((l = cert_label(p, end)) == NULL) {
			pem_type(p, end, type, sizeof(type));
			snprintf(why, whysz,
			    "holds something besides one certificate (%s)",
			    type);
			return -1;
		}
		if (n++ == 0) {
			*first = p - (sizeof(begin) - 1);
			*label = l;
		}
	}
	if (n == 0) {
		snprintf(why, whysz, "holds no PEM certificate");
		return -1;
	}
	if (n > 1) {
		snprintf(why, whysz,
		    "holds more than one certificate: give the vendor's "
		    "signing certificate alone");
		return -1;
	}
	return 0;
}

int
sotp_signer_check(const char *pem, size_t len, char *why, size_t whysz)
{
	const char *end, *p, *first = NULL, *label = NULL;
	char cert_end[40];
	int n;

	if (pem == NULL) {
		snprintf(why, whysz, "holds no PEM certificate");
		return -1;
	}
	end = pem + len;
	if (one_begin(pem, end, &first, &label, why, whysz) != 0)
		return -1;
	/*
	 * Text around the block (openssl x509 -text puts its dump before
	 * it) is refused, not skipped: an operator would read a subject or
	 * a fingerprint there that nothing ties to the key pinned.
	 */
	if (!blank(pem, first)) {
		snprintf(why, whysz,
		    "holds text before the certificate (as openssl x509 -text "
		    "writes it): " SIGNER_FIX);
		return -1;
	}
	n = snprintf(cert_end, sizeof(cert_end), "-----END %s-----", label);
	p = memmem(first, (size_t)(end - first), cert_end, (size_t)n);
	if (p == NULL) {
		snprintf(
		    why, whysz, "holds a certificate without its END line");
		return -1;
	}
	if (!blank(p + n, end)) {
		snprintf(why, whysz,
		    "holds text after the certificate: " SIGNER_FIX);
		return -1;
	}
	return 0;
}

/* The certificate's public key as an xmlsec key; NULL with a refusal. */
static int
load_signer(
    struct sotp_import_batch *b, const char *pem, size_t len, xmlSecKeyPtr *out)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	xmlSecKeyDataPtr data = NULL;
	xmlSecKeyPtr key = NULL;
	int rc = SOTP_ERR_CRYPTO, bits;

	*out = NULL;
	if (len > INT_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
		rc = sig_refuse(
		    b, "the signer certificate is not a PEM X.509 certificate");
		goto out;
	}
	if ((pk = X509_get_pubkey(x)) == NULL ||
	    EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		rc = sig_refuse(b,
		    "the signer certificate's key is not RSA (rsa-sha1 and "
		    "rsa-sha256 signatures only)");
		goto out;
	}
	/* A key that can be factored signs whatever its factorer likes. */
	if ((bits = EVP_PKEY_get_bits(pk)) < SIGNER_MIN_BITS) {
		rc = sig_refuse(b,
		    "the signer certificate's RSA key is %d bits: %d at "
		    "least (a shorter one can be factored, and files forged "
		    "under it)",
		    bits, SIGNER_MIN_BITS);
		goto out;
	}
	if ((data = xmlSecOpenSSLEvpKeyAdopt(pk)) == NULL)
		goto out;
	pk = NULL; /* data owns it */
	if ((key = xmlSecKeyCreate()) == NULL ||
	    xmlSecKeySetValue(key, data) != 0)
		goto out;
	data = NULL; /* key owns it */
	*out = key;
	key = NULL;
	rc = SOTP_OK;
out:
	ERR_clear_error();
	if (key != NULL)
		xmlSecKeyDestroy(key);
	if (data != NULL)
		xmlSecKeyDataDestroy(data);
	EVP_PKEY_free(pk);
	X509_free(x);
	BIO_free(bio);
	return rc;
}

/* Only what check_shape let through may run in xmlsec either. */
static int
restrict_ctx(xmlSecDSigCtxPtr d)
{
	const xmlSecTransformId ref[] = {xmlSecTransformEnvelopedId,
	    xmlSecTransformExclC14NId, xmlSecTransformInclC14NId,
	    xmlSecOpenSSLTransformSha1Id, xmlSecOpenSSLTransformSha256Id};
	const xmlSecTransformId sig[] = {xmlSecTransformExclC14NId,
	    xmlSecTransformInclC14NId, xmlSecOpenSSLTransformRsaSha1Id,
	    xmlSecOpenSSLTransformRsaSha256Id};
	size_t i;

	d->flags |= XMLSEC_DSIG_FLAGS_IGNORE_MANIFESTS;
	/* The empty URI only: no same-document part, no file, no URL. */
	d->enabledReferenceUris = xmlSecTransformUriTypeEmpty;
	d->transformCtx.enabledUris = xmlSecTransformUriTypeEmpty;
	for (i = 0; i < sizeof(ref) / sizeof(ref[0]); i++)
		if (xmlSecDSigCtxEnableReferenceTransform(d, ref[i]) != 0)
			return -1;
	for (i = 0; i < sizeof(sig) / sizeof(sig[0]); i++)
		if (xmlSecDSigCtxEnableSignatureTransform(d, sig[i]) != 0)
			return -1;
	return 0;
}

const char *
sotp_sig_status_name(enum sotp_sig_status s)
{
	switch (s) {
	case SOTP_SIG_UNCHECKED:
		return "unchecked";
	case SOTP_SIG_VERIFIED:
		return "verified";
	case SOTP_SIG_FAILED:
		return "failed";
	case SOTP_SIG_NONE:
		break;
	}
	return "none";
}

int
sotp_pskc_signature(struct sotp_import_batch *b, struct _xmlDoc *doc,
    const char *signer, size_t signer_len)
{
	const xmlNode *root = xmlDocGetRootElement(doc), *sig = NULL;
	xmlSecDSigCtxPtr d = NULL;
	xmlSecDSigReferenceCtxPtr r;
	xmlSecKeyPtr key = NULL;
	char why[SOTP_MSG_MAX];
	int rc;

	b->res->signature = SOTP_SIG_NONE;
	if (signer == NULL) {
		if (root != NULL && count_sigs(root, &sig) > 0)
			b->res->signature = SOTP_SIG_UNCHECKED;
		return SOTP_OK;
	}
	if (root == NULL || !is_el(root, NS_PSKC, "KeyContainer"))
		return sig_refuse(b, "not a PSKC KeyContainer");
	/* Before the file's shape: a key there is the operator's mistake. */
	if (sotp_signer_check(signer, signer_len, why, sizeof(why)) != 0) {
		rc = sig_refuse(b, "the signer file %s", why);
		goto out;
	}
	if ((rc = check_shape(b, root, &sig)) != SOTP_OK)
		goto out;
	(void)pthread_once(&xmlsec_once, xmlsec_init);
	if (!xmlsec_ready) {
		rc = SOTP_ERR_CRYPTO;
		goto out;
	}
	if ((rc = load_signer(b, signer, signer_len, &key)) != SOTP_OK)
		goto out;
	if ((d = xmlSecDSigCtxCreate(NULL)) == NULL || restrict_ctx(d) != 0) {
		rc = SOTP_ERR_CRYPTO;
		goto out;
	}
	/* Set, the key is used and KeyInfo (a certificate of the file's
	 * choosing) is not read at all. d frees it. */
	d->signKey = key;
	key = NULL;
	/* xmlsec wants a mutable node; it reads the tree, it changes none. */
	if (xmlSecDSigCtxVerify(d, (xmlNodePtr)(uintptr_t)sig) != 0) {
		rc = sig_refuse(b,
		    "the signature cannot be checked (malformed, or "
		    "not made with the signer certificate's key type)");
		goto out;
	}
	r = xmlSecPtrListGetSize(&d->signedInfoReferences) == 1
	    ? xmlSecPtrListGetItem(&d->signedInfoReferences, 0)
	    : NULL;
	if (r == NULL || r->status != xmlSecDSigStatusSucceeded) {
		rc = sig_refuse(b,
		    "digest mismatch: the file was changed after it was "
		    "signed");
		goto out;
	}
	if (d->status != xmlSecDSigStatusSucceeded) {
		rc = sig_refuse(b,
		    "the signature does not verify with the signer "
		    "certificate's key (signed by another key, or "
		    "altered)");
		goto out;
	}
	b->res->signature = SOTP_SIG_VERIFIED;
	rc = SOTP_OK;
out:
	/* A signature there and not accepted: the rows and --json say so. */
	if (rc != SOTP_OK && count_sigs(root, &sig) > 0)
		b->res->signature = SOTP_SIG_FAILED;
	ERR_clear_error();
	if (key != NULL)
		xmlSecKeyDestroy(key);
	if (d != NULL)
		xmlSecDSigCtxDestroy(d);
	return rc;
}

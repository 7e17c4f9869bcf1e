/*
 * pskc.c - reads a PSKC document (RFC 6030), the format token vendors ship
 * seed files in, into an import batch.
 *
 * From each KeyPackage we take the serial (DeviceInfo/SerialNo, else
 * Key/@Id), the algorithm (Key/@Algorithm: TOTP, or HOTP with its
 * Data/Counter), the digits (ResponseFormat/@Length), the period
 * (Data/TimeInterval), a hash hint (AlgorithmParameters/Suite) and the
 * secret: a PlainValue, or an
 * EncryptedValue under a pre-shared AES-128 key (section 6.1) or under a
 * key derived from a passphrase with PBKDF2 (section 6.2). An encrypted
 * value must carry a ValueMAC, HMAC-SHA1 over IV || ciphertext under the
 * MAC key (itself encrypted under the same key, section 6.1.1); the MAC is
 * checked in constant time before anything is decrypted, so a tampered
 * file never reaches the CBC padding check. The MAC key must be 20
 * bytes (see mac_method). In a file with an
 * EncryptionKey every Secret must be encrypted, and a key given for a
 * file without one is refused: a MAC protects only what is encrypted. A
 * KeyPackage holding a PIN key (RFC 6030 section 5, figure 5) is skipped when
 * the OTP key's PINPolicy says the token checks the PIN itself (PINUsageMode
 * Local); any other PIN usage would need the server to check a PIN, and is
 * refused.
 *
 * Writers differ in how they spell the PBKDF2 parameters: RFC 6030's
 * figure 7 puts PBKDF2-params in the PKCS #5 namespace, others (python-
 * pskc, for one) in XML Encryption 1.1's, and either leaves the children
 * unqualified or qualifies them. Both namespaces are read, and the
 * children by their local name.
 *
 * A ds:Signature is checked against the vendor's certificate when the
 * caller gives one (pskc_sig.c), in the parsed tree, before the walk
 * below decrypts anything; without one the caller is told the file was
 * signed and not checked.
 *
 * The parser is asked for no network, no DTD loading and no entity
 * substitution, and a document that has a DTD at all is refused: a seed
 * file has no use for one, and entities are how XML parsers get abused.
 * Before the parse, one linear pass bounds what the parser's checks cost
 * (attributes per element, namespace declarations in scope, nesting); it
 * reads bytes, so only UTF-8 is taken, and the parser is told so.
 * Text is read only from direct text children, never through entities.
 *
 * Secret bytes live in our buffers only as long as needed and are wiped.
 * XXX libxml2 copies the input and builds text nodes with realloc; we
 * wipe every text node of the tree before freeing it, but the copies in
 * the parser's own buffers are freed unwiped. The caller's buffer is
 * plaintext for a plain file anyway; for an encrypted one they hold only
 * ciphertext.
 */
#define _GNU_SOURCE /* memmem */
#include "import_int.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define NS_PSKC "urn:ietf:params:xml:ns:keyprov:pskc"
#define NS_DS "http://www.w3.org/2000/09/xmldsig#"
#define NS_XENC "http://www.w3.org/2001/04/xmlenc#"
#define NS_XENC11 "http://www.w3.org/2009/xmlenc11#"
#define NS_PKCS5 "http://www.rsasecurity.com/rsalabs/pkcs/schemas/pkcs-5v2-0#"

#define ALG_TOTP NS_PSKC ":totp"
#define ALG_HOTP NS_PSKC ":hotp"
#define ALG_PIN NS_PSKC ":pin"
#define ALG_AES128_CBC NS_XENC "aes128-cbc"
#define ALG_HMAC_SHA1 NS_DS "hmac-sha1"
#define ALG_PBKDF2 NS_PKCS5 "pbkdf2"

#define PSKC_MAX_LEN (16 * 1024 * 1024)
#define AES128_KEY 16
#define AES_BLOCK 16
#define SHA1_LEN 20
#define MACKEY_MAX 64
#define VALUE_MAX 256 /* a decoded PlainValue or CipherValue */
#define TEXT_MAX 512  /* base64 text of such a value, with spaces */
#define ATTR_MAX 256  /* an attribute or short element value */
#define PBKDF2_MAX_ITER 10000000
/*
 * Bounds checked before the parse (prescan). libxml2 checks each new
 * attribute against the element's others and each namespace declaration
 * against those in scope, so its work grows with the square of these
 * counts: 200,000 declarations on one element cost 18 s of CPU. A PSKC
 * file needs a handful of each, and about ten levels of nesting.
 */
#define PSKC_MAX_ATTRS 64 /* attributes of one element, xmlns included */
#define PSKC_MAX_NS 64    /* namespace declarations in scope at once */
#define PSKC_MAX_DEPTH 32 /* elements open at once */

struct pskc {
	struct sotp_import_batch *b;
	const uint8_t *psk;
	size_t psklen;
	const char *passphrase;
	uint8_t key[AES128_KEY]; /* the encryption key: secret */
	int have_key;
	uint8_t mackey[MACKEY_MAX]; /* secret */
	size_t mackey_len;
	int have_mac;
};

static int refuse(struct pskc *p, unsigned int pos, const char *fmt, ...)
    SOTP_PRINTF(3, 4);

static int
refuse(struct pskc *p, unsigned int pos, const char *fmt, ...)
{
	char msg[SOTP_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sotp_import_refuse(p->b->res, pos, SOTP_R_BAD_INPUT, "%s", msg);
}

/* An element named ns:name. */
static int
is(const xmlNode *n, const char *ns, const char *name)
{
	return n != NULL && n->type == XML_ELEMENT_NODE && n->ns != NULL &&
	    n->ns->href != NULL && strcmp((const char *)n->ns->href, ns) == 0 &&
	    strcmp((const char *)n->name, name) == 0;
}

/* The first child element ns:name, or NULL. */
static const xmlNode *
child(const xmlNode *n, const char *ns, const char *name)
{
	const xmlNode *c;

	for (c = n != NULL ? n->children : NULL; c != NULL; c = c->next)
		if (is(c, ns, name))
			return c;
	return NULL;
}

/*
 * The first child element with that local name, whatever its namespace:
 * RFC 6030's PBKDF2 example leaves the children of PBKDF2-params
 * unqualified, others qualify them with the PKCS #5 namespace.
 */
static const xmlNode *
child_local(const xmlNode *n, const char *name)
{
	const xmlNode *c;

	for (c = n != NULL ? n->children : NULL; c != NULL; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    strcmp((const char *)c->name, name) == 0)
			return c;
	return NULL;
}

/*
 * The text of element n, surrounding white space trimmed, into
 * buf[bufsz]. Returns 0, or -1 when n is NULL, holds an element or an
 * entity reference, or does not fit.
 */
static int
text(const xmlNode *n, char *buf, size_t bufsz)
{
	const xmlNode *c;
	size_t len = 0, k, start = 0;

	buf[0] = '\0';
	if (n == NULL)
		return -1;
	for (c = n->children; c != NULL; c = c->next) {
		if (c->type == XML_COMMENT_NODE)
			continue;
		if ((c->type != XML_TEXT_NODE &&
		        c->type != XML_CDATA_SECTION_NODE) ||
		    c->content == NULL)
			return -1;
		k = strlen((const char *)c->content);
		if (len + k >= bufsz)
			return -1;
		memcpy(buf + len, c->content, k);
		len += k;
	}
	while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
		len--;
	buf[len] = '\0';
	while (buf[start] != '\0' && strchr(" \t\r\n", buf[start]) != NULL)
		start++;
	memmove(buf, buf + start, len - start + 1);
	return 0;
}

/* An attribute without namespace into buf[bufsz]; -1 if absent/long. */
static int
attr(const xmlNode *n, const char *name, char *buf, size_t bufsz)
{
	xmlChar *v;
	int ret = -1;

	buf[0] = '\0';
	if (n == NULL || (v = xmlGetNoNsProp(n, (const xmlChar *)name)) == NULL)
		return -1;
	if (strlen((const char *)v) < bufsz) {
		memcpy(buf, v, strlen((const char *)v) + 1);
		ret = 0;
	}
	xmlFree(v);
	return ret;
}

static int
b64val(int ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/*
 * Base64 (RFC 4648 section 4) as XML Schema's base64Binary allows it:
 * white space anywhere, '=' padding only at the end. Returns 0, or -1 on
 * bad input or when out[outsz] is too small.
 */
static int
b64_decode(const char *in, uint8_t *out, size_t outsz, size_t *outlen)
{
	uint32_t acc = 0;
	size_t n = 0;
	int bits = 0, pad = 0, v;

	*outlen = 0;
	for (; *in != '\0'; in++) {
		if (strchr(" \t\r\n", *in) != NULL)
			continue;
		if (*in == '=') {
			pad++;
			continue;
		}
		if (pad > 0 || (v = b64val((unsigned char)*in)) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= outsz)
				return -1;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	/* Leftover bits must be zero padding of the last quantum. */
	if (pad > 2 || bits >= 6 || (acc & ((1u << bits) - 1)) != 0)
		return -1;
	*outlen = n;
	return 0;
}

/* Base64 text of element n into out; -1 if missing or malformed. */
static int
b64_elem(const xmlNode *n, uint8_t *out, size_t outsz, size_t *outlen)
{
	char buf[TEXT_MAX];
	int r;

	*outlen = 0;
	r = text(n, buf, sizeof(buf)) == 0 && buf[0] != '\0'
	    ? b64_decode(buf, out, outsz, outlen)
	    : -1;
	SOTP_WIPE_ARRAY(buf);
	return r;
}

/* A decimal element or attribute value in [min, max]. */
static int
number(const char *s, long long min, long long max, unsigned int *out)
{
	long long v;

	if (sotp_parse_ll_padded(s, min, max, &v) != SOTP_OK)
		return -1;
	*out = (unsigned int)v;
	return 0;
}

/*
 * AES-128-CBC decryption of IV || ciphertext (xmlenc's layout) with
 * PKCS #7 padding. A bad padding means a wrong key: RFC 6030 files that
 * carry a MAC had it checked before this is called.
 */
static int
aes_decrypt(struct pskc *p, unsigned int pos, const uint8_t *in, size_t len,
    uint8_t *out, size_t outsz, size_t *outlen, const char *what)
{
	EVP_CIPHER_CTX *cx = NULL;
	int ok, n1 = 0, n2 = 0, rc = SOTP_ERR_CRYPTO;

	*outlen = 0;
	if (len < 2 * AES_BLOCK || len % AES_BLOCK != 0)
		return refuse(
		    p, pos, "%s: CipherValue is not IV || AES blocks", what);
	/* EVP may write up to one block more than it returns. */
	if (len > outsz)
		return refuse(p, pos, "%s: value too long", what);
	if ((cx = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	ok = EVP_DecryptInit_ex(cx, EVP_aes_128_cbc(), NULL, p->key, in) &&
	    EVP_DecryptUpdate(
	        cx, out, &n1, in + AES_BLOCK, (int)(len - AES_BLOCK));
	if (!ok)
		goto out;
	if (!EVP_DecryptFinal_ex(cx, out + n1, &n2)) {
		sotp_wipe(out, outsz);
		rc = refuse(p, pos, "%s: cannot decrypt (wrong key?)", what);
		goto out;
	}
	*outlen = (size_t)n1 + (size_t)n2;
	rc = SOTP_OK;
out:
	EVP_CIPHER_CTX_free(cx);
	return rc;
}

/*
 * An xenc EncryptedValue-shaped element (EncryptionMethod + CipherData/
 * CipherValue) into out. mac is the element holding its ValueMAC, or NULL
 * for the MAC key itself (which RFC 6030 does not MAC).
 */
static int
decrypt_value(struct pskc *p, unsigned int pos, const xmlNode *ev,
    const xmlNode *mac, uint8_t *out, size_t outsz, size_t *outlen,
    const char *what)
{
	char alg[ATTR_MAX], q[64];
	uint8_t ct[VALUE_MAX + AES_BLOCK], want[SHA1_LEN + 1], got[SHA1_LEN];
	size_t ctlen = 0, wantlen = 0;
	unsigned int gotlen = 0;
	int rc;

	*outlen = 0;
	if (!p->have_key) {
		rc = refuse(p, pos,
		    "%s is encrypted but the file names no EncryptionKey",
		    what);
		goto out;
	}
	if (attr(child(ev, NS_XENC, "EncryptionMethod"), "Algorithm", alg,
	        sizeof(alg)) != 0 ||
	    strcmp(alg, ALG_AES128_CBC) != 0) {
		sotp_import_quote(q, sizeof(q), alg);
		rc = refuse(p, pos,
		    "%s: encryption method '%s' is not supported "
		    "(aes128-cbc only)",
		    what, q);
		goto out;
	}
	if (b64_elem(
	        child(child(ev, NS_XENC, "CipherData"), NS_XENC, "CipherValue"),
	        ct, sizeof(ct), &ctlen) != 0) {
		rc = refuse(
		    p, pos, "%s: CipherValue missing or not base64", what);
		goto out;
	}
	if (mac != NULL) {
		if (!p->have_mac) {
			rc = refuse(p, pos,
			    "%s is encrypted without a MACMethod "
			    "(RFC 6030 section 6.1.1 requires one for CBC)",
			    what);
			goto out;
		}
		if (b64_elem(mac, want, sizeof(want), &wantlen) != 0 ||
		    wantlen != SHA1_LEN) {
			rc = refuse(p, pos,
			    "%s: ValueMAC missing or not a base64 HMAC-SHA1",
			    what);
			goto out;
		}
		if (HMAC(EVP_sha1(), p->mackey, (int)p->mackey_len, ct, ctlen,
		        got, &gotlen) == NULL ||
		    gotlen != SHA1_LEN) {
			rc = SOTP_ERR_CRYPTO;
			goto out;
		}
		if (CRYPTO_memcmp(got, want, SHA1_LEN) != 0) {
			rc = refuse(p, pos,
			    "%s: MAC mismatch (wrong key, or the file was "
			    "altered)",
			    what);
			goto out;
		}
	}
	rc = aes_decrypt(p, pos, ct, ctlen, out, outsz, outlen, what);
out:
	SOTP_WIPE_ARRAY(ct);
	SOTP_WIPE_ARRAY(got);
	return rc;
}

/* Section 6.2: the key from a passphrase, PBKDF2 (PKCS #5 v2.0). */
static int
derive_key(struct pskc *p, const xmlNode *dk)
{
	const xmlNode *kdm, *params, *prf;
	char alg[ATTR_MAX], buf[ATTR_MAX], q[64];
	uint8_t salt[VALUE_MAX];
	size_t saltlen = 0;
	unsigned int iter = 0, keylen = AES128_KEY;
	const EVP_MD *md = EVP_sha1();

	kdm = child(dk, NS_XENC11, "KeyDerivationMethod");
	if (attr(kdm, "Algorithm", alg, sizeof(alg)) != 0 ||
	    strcmp(alg, ALG_PBKDF2) != 0) {
		sotp_import_quote(q, sizeof(q), alg);
		return refuse(p, 0,
		    "key derivation '%s' is not supported (PBKDF2 only)", q);
	}
	if ((params = child(kdm, NS_PKCS5, "PBKDF2-params")) == NULL)
		params = child(kdm, NS_XENC11, "PBKDF2-params");
	if (params == NULL)
		return refuse(p, 0,
		    "PBKDF2: no PBKDF2-params (in the PKCS #5 or the XML "
		    "Encryption 1.1 namespace)");
	if (b64_elem(child_local(child_local(params, "Salt"), "Specified"),
	        salt, sizeof(salt), &saltlen) != 0 ||
	    saltlen == 0)
		return refuse(p, 0, "PBKDF2: Salt/Specified missing or bad");
	if (text(child_local(params, "IterationCount"), buf, sizeof(buf)) !=
	        0 ||
	    number(buf, 1, PBKDF2_MAX_ITER, &iter) != 0)
		return refuse(p, 0, "PBKDF2: IterationCount not in 1..%d",
		    PBKDF2_MAX_ITER);
	if (child_local(params, "KeyLength") != NULL &&
	    (text(child_local(params, "KeyLength"), buf, sizeof(buf)) != 0 ||
	        number(buf, 1, 1024, &keylen) != 0 || keylen != AES128_KEY))
		return refuse(
		    p, 0, "PBKDF2: KeyLength must be 16 (AES-128 keys only)");
	/* An absent or empty PRF is hmac-sha1, PKCS #5's default. */
	prf = child_local(params, "PRF");
	if (attr(prf, "Algorithm", alg, sizeof(alg)) == 0 && alg[0] != '\0') {
		const char *h = strrchr(alg, '#');

		if (h != NULL && strcmp(h, "#hmac-sha1") == 0)
			md = EVP_sha1();
		else if (h != NULL && strcmp(h, "#hmac-sha256") == 0)
			md = EVP_sha256();
		else if (h != NULL && strcmp(h, "#hmac-sha512") == 0)
			md = EVP_sha512();
		else {
			sotp_import_quote(q, sizeof(q), alg);
			return refuse(
			    p, 0, "PBKDF2: PRF '%s' not supported", q);
		}
	}
	if (p->passphrase == NULL)
		return refuse(p, 0,
		    "the file's key is derived from a passphrase (PBKDF2) "
		    "and none was given");
	if (!PKCS5_PBKDF2_HMAC(p->passphrase, (int)strlen(p->passphrase), salt,
	        (int)saltlen, (int)iter, md, AES128_KEY, p->key))
		return SOTP_ERR_CRYPTO;
	p->have_key = 1;
	return SOTP_OK;
}

/* EncryptionKey: a pre-shared key by name, or a derived key. */
static int
encryption_key(struct pskc *p, const xmlNode *ek)
{
	const xmlNode *dk;
	char name[ATTR_MAX], q[64];

	if ((dk = child(ek, NS_XENC11, "DerivedKey")) != NULL) {
		if (p->psk != NULL)
			return refuse(p, 0,
			    "the file's key is derived from a passphrase "
			    "(PBKDF2), not a pre-shared key");
		return derive_key(p, dk);
	}
	if (child(ek, NS_DS, "X509Data") != NULL)
		return refuse(p, 0,
		    "asymmetric (X.509) encryption is not supported: "
		    "ask for a file under a pre-shared key or passphrase");
	/* Some writers leave the pre-shared key unnamed (<EncryptionKey/>). */
	if (child(ek, NS_DS, "KeyName") == NULL)
		sotp_strlcpy(name, "(unnamed)", sizeof(name));
	else if (text(child(ek, NS_DS, "KeyName"), name, sizeof(name)) != 0)
		return refuse(p, 0, "EncryptionKey: KeyName is not text");
	sotp_import_quote(q, sizeof(q), name);
	if (p->psk == NULL)
		return refuse(p, 0,
		    "the file is encrypted under the pre-shared key '%s' and "
		    "no key was given",
		    q);
	if (p->psklen != AES128_KEY)
		return refuse(p, 0,
		    "the pre-shared key must be 16 bytes (AES-128), not %zu",
		    p->psklen);
	memcpy(p->key, p->psk, AES128_KEY);
	p->have_key = 1;
	return SOTP_OK;
}

/* MACMethod (section 6.1.1): HMAC-SHA1 with an encrypted MACKey. */
static int
mac_method(struct pskc *p, const xmlNode *mm)
{
	char alg[ATTR_MAX], q[64];
	const xmlNode *mk;
	int rc;

	if (attr(mm, "Algorithm", alg, sizeof(alg)) != 0 ||
	    strcmp(alg, ALG_HMAC_SHA1) != 0) {
		sotp_import_quote(q, sizeof(q), alg);
		return refuse(p, 0,
		    "MAC method '%s' is not supported (hmac-sha1 only)", q);
	}
	if ((mk = child(mm, NS_PSKC, "MACKey")) == NULL)
		return refuse(p, 0, "MACMethod without a MACKey");
	if ((rc = decrypt_value(p, 0, mk, NULL, p->mackey, sizeof(p->mackey),
	         &p->mackey_len, "MACKey")) != SOTP_OK)
		return rc;
	/*
	 * RFC 6030 MACs every value but the MAC key. AES-CBC lets whoever
	 * knows one block's plaintext (the block that pads a 16- or
	 * 32-byte secret is sixteen 0x10 bytes) put an IV before it that
	 * makes it decrypt to a key of their choosing: 15 bytes and a pad
	 * byte of 1, or 31 from two such blocks when one pads right. An
	 * HMAC-SHA1 key of its hash's length, as RFC 6030's example and
	 * the writers make it, needs 12 bytes of padding to come out right,
	 * which no forger can arrange.
	 */
	if (p->mackey_len != SHA1_LEN)
		return refuse(p, 0,
		    "MACKey is %zu bytes, not the %d of an HMAC-SHA1 key "
		    "(a key of another length is how one forged from the "
		    "file's own cipher blocks shows)",
		    p->mackey_len, SHA1_LEN);
	p->have_mac = 1;
	return SOTP_OK;
}

/* The hash of a Suite hint such as "HMAC-SHA256"; -1 if unknown. */
static int
suite_alg(const char *s, enum sotp_alg *alg)
{
	char norm[ATTR_MAX];
	size_t i, n = 0;

	/* Upper case, dashes and "HMAC" dropped: "hmac-sha-256" = "SHA256". */
	for (i = 0; s[i] != '\0' && n + 1 < sizeof(norm); i++)
		if (s[i] != '-' && s[i] != '_')
			norm[n++] =
			    (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 'a' + 'A'
			                                      : s[i]);
	norm[n] = '\0';
	s = strncmp(norm, "HMAC", 4) == 0 ? norm + 4 : norm;
	if (strcmp(s, "SHA1") == 0)
		*alg = SOTP_ALG_SHA1;
	else if (strcmp(s, "SHA256") == 0)
		*alg = SOTP_ALG_SHA256;
	else if (strcmp(s, "SHA512") == 0)
		*alg = SOTP_ALG_SHA512;
	else
		return -1;
	return 0;
}

/* Key/AlgorithmParameters: Suite (hash hint) and ResponseFormat. */
static int
alg_params(struct pskc *p, unsigned int pos, const xmlNode *ap,
    struct sotp_import_entry *e)
{
	const xmlNode *rf;
	char buf[ATTR_MAX], q[64];

	if (ap == NULL)
		return SOTP_OK;
	if (child(ap, NS_PSKC, "Suite") != NULL &&
	    (text(child(ap, NS_PSKC, "Suite"), buf, sizeof(buf)) != 0 ||
	        suite_alg(buf, &e->alg) != 0)) {
		sotp_import_quote(q, sizeof(q), buf);
		return refuse(p, pos,
		    "Suite '%s' is not a hash we know (sha1, sha256, sha512)",
		    q);
	}
	if ((rf = child(ap, NS_PSKC, "ResponseFormat")) == NULL)
		return SOTP_OK;
	if (attr(rf, "Encoding", buf, sizeof(buf)) == 0 &&
	    strcmp(buf, "DECIMAL") != 0) {
		sotp_import_quote(q, sizeof(q), buf);
		return refuse(p, pos,
		    "ResponseFormat Encoding '%s' is not supported (DECIMAL)",
		    q);
	}
	if (attr(rf, "Length", buf, sizeof(buf)) != 0 ||
	    number(buf, 0, 99, &e->digits) != 0)
		return refuse(p, pos, "ResponseFormat Length is not a number");
	return SOTP_OK;
}

/* A Data child's PlainValue as a number; absent leaves *out alone. */
static int
data_number(struct pskc *p, unsigned int pos, const xmlNode *data,
    const char *name, long long max, unsigned int *out)
{
	const xmlNode *n = child(data, NS_PSKC, name);
	char buf[ATTR_MAX];

	if (n == NULL)
		return SOTP_OK;
	if (text(child(n, NS_PSKC, "PlainValue"), buf, sizeof(buf)) != 0 ||
	    number(buf, 0, max, out) != 0)
		return refuse(
		    p, pos, "%s: a PlainValue in 0..%lld is needed", name, max);
	return SOTP_OK;
}

/*
 * A PlainValue is base64 (xs:base64Binary in RFC 6030's schema), but
 * some vendors' tools write the seed there in hex. Hex digits are base64
 * digits too, so such a value decodes without a murmur into another key
 * (40 hex digits, a 20-byte seed, into 30 bytes) that the policy takes
 * and that no code of the customer's token will ever match. PSKC
 * declares no secret length to check the decoding against, so the text
 * itself decides (sotp_looks_hex). Genuine base64 is refused by
 * it only when it is unpadded and made of those 22 of its 64 characters
 * throughout: for a random seed, odds of (22/64)^32, about 1e-15, at the
 * shortest. And the base64 of a 16, 20, 32 or 64-byte seed (HMAC-SHA1's,
 * -SHA256's, -SHA512's) ends in '=', which is no hex digit.
 */
/* Secret/PlainValue: base64, never a hex seed read as base64. */
static int
plain_secret(struct pskc *p, unsigned int pos, const xmlNode *pv,
    struct sotp_import_entry *e)
{
	char buf[TEXT_MAX], q[SOTP_ID_MAX];
	uint8_t v[VALUE_MAX + AES_BLOCK]; /* as secret()'s: the same limit */
	size_t len = 0, nhex;
	int rc;

	if (text(pv, buf, sizeof(buf)) != 0 || buf[0] == '\0') {
		rc = refuse(p, pos,
		    "Secret has neither a base64 PlainValue nor an "
		    "EncryptedValue");
	} else if ((nhex = sotp_looks_hex(buf, NULL)) > 0) {
		sotp_import_quote(q, sizeof(q), e->serial);
		rc = refuse(p, pos,
		    "serial '%s': Secret PlainValue is %zu hex digits, a seed "
		    "in hex it seems, where PSKC (RFC 6030) requires base64: "
		    "read as base64 it would be another key; ask the vendor "
		    "for base64",
		    q, nhex);
	} else if (b64_decode(buf, v, sizeof(v), &len) != 0) {
		rc = refuse(p, pos,
		    "Secret has neither a base64 PlainValue nor an "
		    "EncryptedValue");
	} else {
		rc = sotp_import_secret(p->b, e, v, len);
	}
	SOTP_WIPE_ARRAY(buf);
	SOTP_WIPE_ARRAY(v);
	return rc;
}

/* Data/Secret: PlainValue, or EncryptedValue with its ValueMAC. */
static int
secret(struct pskc *p, unsigned int pos, const xmlNode *data,
    struct sotp_import_entry *e)
{
	const xmlNode *s = child(data, NS_PSKC, "Secret"), *ev;
	uint8_t v[VALUE_MAX + AES_BLOCK];
	size_t len = 0;
	int rc;

	if (s == NULL) {
		rc = refuse(p, pos,
		    "no Data/Secret: a key that its vendor derives from a "
		    "master key (KeyProfileId, KeyReference) cannot be "
		    "checked here; ask for a file that carries the secrets");
	} else if ((ev = child(s, NS_PSKC, "EncryptedValue")) != NULL) {
		rc = decrypt_value(p, pos, ev, child(s, NS_PSKC, "ValueMAC"), v,
		    sizeof(v), &len, "Secret");
		if (rc == SOTP_OK)
			rc = sotp_import_secret(p->b, e, v, len);
	} else if (p->have_key) {
		/*
		 * The MACs cover only what is encrypted: a secret in clear
		 * beside them is one anybody who altered the file could
		 * have put there.
		 */
		rc = refuse(p, pos,
		    "Secret is in clear (PlainValue) in a file whose secrets "
		    "are encrypted: every secret of an encrypted file must "
		    "be an EncryptedValue with its ValueMAC");
	} else {
		rc = plain_secret(p, pos, child(s, NS_PSKC, "PlainValue"), e);
	}
	SOTP_WIPE_ARRAY(v);
	return rc;
}

/*
 * A PINPolicy: a PIN the token checks itself (Local) is no business of
 * ours; a PIN the server would have to check (Prepend, Append,
 * Algorithmic) cannot be, here.
 */
static int
pin_policy(struct pskc *p, unsigned int pos, const xmlNode *pp)
{
	char mode[ATTR_MAX], q[64];

	if (attr(pp, "PINUsageMode", mode, sizeof(mode)) != 0 ||
	    strcmp(mode, "Local") == 0)
		return SOTP_OK;
	sotp_import_quote(q, sizeof(q), mode);
	return refuse(p, pos,
	    "PINUsageMode '%s': the server would have to check the PIN, "
	    "which shinkin-otp does not do (Local only)",
	    q);
}

static int
digits2(const char *s)
{
	return isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1])
	    ? (s[0] - '0') * 10 + (s[1] - '0')
	    : -1;
}

/*
 * An xs:dateTime as PSKC writers give it: YYYY-MM-DDThh:mm:ss, a
 * fraction (dropped), then Z, an offset (+hh:mm or -hh:mm) or nothing
 * (taken as UTC). -1 when it is not one.
 */
static int
date_time(const char *s, int64_t *out)
{
	char z[21];
	const char *r = s + 19;
	int64_t t;
	int h, m;

	if (strlen(s) < 19)
		return -1;
	memcpy(z, s, 19);
	memcpy(z + 19, "Z", 2);
	if (sotp_time_parse(z, &t) != SOTP_OK)
		return -1;
	if (*r == '.' && isdigit((unsigned char)r[1]))
		for (r++; isdigit((unsigned char)*r); r++)
			;
	if (*r == 'Z') {
		r++;
	} else if (*r == '+' || *r == '-') {
		if ((h = digits2(r + 1)) < 0 || h > 14 || r[3] != ':' ||
		    (m = digits2(r + 4)) < 0 || m > 59)
			return -1;
		/* Local time is UTC plus the offset. */
		t += (*r == '+' ? -1 : 1) * ((int64_t)h * 3600 + m * 60);
		r += 6;
	}
	if (*r != '\0')
		return -1;
	*out = t;
	return 0;
}

/* StartDate or ExpiryDate against the time of the import. */
static int
policy_date(struct pskc *p, unsigned int pos, const xmlNode *c)
{
	int start = strcmp((const char *)c->name, "StartDate") == 0;
	char buf[ATTR_MAX], q[64];
	int64_t t = 0;

	if (text(c, buf, sizeof(buf)) != 0 || date_time(buf, &t) != 0) {
		sotp_import_quote(q, sizeof(q), buf);
		return refuse(p, pos,
		    "%s '%s' is not an xs:dateTime (YYYY-MM-DDThh:mm:ssZ)",
		    (const char *)c->name, q);
	}
	sotp_import_quote(q, sizeof(q), buf);
	if (start && t > (int64_t)p->b->now)
		return refuse(p, pos,
		    "StartDate %s is still to come: the vendor allows no use "
		    "of the key before it",
		    q);
	if (!start && t <= (int64_t)p->b->now)
		return refuse(p, pos,
		    "ExpiryDate %s has passed: the vendor allows no use of the "
		    "key after it",
		    q);
	return SOTP_OK;
}

/*
 * Key/Policy, RFC 6030 section 5: a key whose Policy the recipient does
 * not understand must not be used, nor one used outside it. KeyUsage
 * must name OTP, the import fall between StartDate and ExpiryDate, a PIN
 * be the token's (pin_policy); a number of uses (NumberOfTransactions)
 * is not counted here, so such a key is refused as well.
 */
static int
key_policy(struct pskc *p, unsigned int pos, const xmlNode *key)
{
	const xmlNode *pol = child(key, NS_PSKC, "Policy"), *c;
	char buf[ATTR_MAX], q[64];
	int usage = 0, otp = 0, rc;

	for (c = pol != NULL ? pol->children : NULL; c != NULL; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (is(c, NS_PSKC, "PINPolicy"))
			rc = pin_policy(p, pos, c);
		else if (is(c, NS_PSKC, "StartDate") ||
		    is(c, NS_PSKC, "ExpiryDate"))
			rc = policy_date(p, pos, c);
		else if (is(c, NS_PSKC, "KeyUsage")) {
			usage = 1;
			otp |= text(c, buf, sizeof(buf)) == 0 &&
			    strcmp(buf, "OTP") == 0;
			rc = SOTP_OK;
		} else if (is(c, NS_PSKC, "NumberOfTransactions"))
			rc = refuse(p, pos,
			    "NumberOfTransactions: a key for a number of uses, "
			    "which shinkin-otp does not count");
		else {
			sotp_import_quote(q, sizeof(q), (const char *)c->name);
			rc = refuse(p, pos,
			    "Policy holds '%s', which is not understood: RFC "
			    "6030 section 5 forbids using such a key",
			    q);
		}
		if (rc != SOTP_OK)
			return rc;
	}
	if (usage && !otp)
		return refuse(p, pos,
		    "KeyUsage does not include OTP: the vendor does not allow "
		    "this key to make one-time passwords");
	return SOTP_OK;
}

/*
 * The elements whose value is read, each once where it stands: with two,
 * the first would count and the second be shown by whatever tool (or
 * person) reads the file the other way.
 */
static const struct {
	const char *ns, *name;
} read_once[] = {
    {NS_PSKC, "DeviceInfo"},
    {NS_PSKC, "SerialNo"},
    {NS_PSKC, "AlgorithmParameters"},
    {NS_PSKC, "Suite"},
    {NS_PSKC, "ResponseFormat"},
    {NS_PSKC, "Data"},
    {NS_PSKC, "Secret"},
    {NS_PSKC, "Counter"},
    {NS_PSKC, "Time"},
    {NS_PSKC, "TimeInterval"},
    {NS_PSKC, "PlainValue"},
    {NS_PSKC, "EncryptedValue"},
    {NS_PSKC, "ValueMAC"},
    {NS_PSKC, "Policy"},
    {NS_PSKC, "PINPolicy"},
    {NS_PSKC, "StartDate"},
    {NS_PSKC, "ExpiryDate"},
    {NS_PSKC, "MACKey"},
    {NS_DS, "KeyName"},
    {NS_XENC, "EncryptionMethod"},
    {NS_XENC, "CipherData"},
    {NS_XENC, "CipherValue"},
    {NS_XENC11, "DerivedKey"},
    {NS_XENC11, "KeyDerivationMethod"},
};

/* No element of read_once twice in one parent, anywhere under n. */
static int
once_each(struct pskc *p, unsigned int pos, const xmlNode *n)
{
	const xmlNode *c;
	unsigned int k;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(read_once) / sizeof(read_once[0]); i++) {
		for (k = 0, c = n->children; c != NULL; c = c->next)
			k += is(c, read_once[i].ns, read_once[i].name);
		if (k > 1)
			return refuse(p, pos,
			    "%s holds %u %s elements: one is read, so one is "
			    "allowed",
			    (const char *)n->name, k, read_once[i].name);
	}
	for (c = n->children; c != NULL; c = c->next)
		if (c->type == XML_ELEMENT_NODE &&
		    (rc = once_each(p, pos, c)) != SOTP_OK)
			return rc;
	return SOTP_OK;
}

static int
key_package(struct pskc *p, unsigned int pos, const xmlNode *kp)
{
	const xmlNode *key, *data, *c;
	struct sotp_import_entry *e = NULL;
	char alg[ATTR_MAX], serial[ATTR_MAX], q[64];
	unsigned int t0 = 0, keys = 0, counter = 0;
	int rc, hotp;

	for (c = kp->children; c != NULL; c = c->next)
		keys += is(c, NS_PSKC, "Key");
	if (keys != 1)
		return refuse(p, pos, "a KeyPackage needs exactly one Key");
	if ((rc = once_each(p, pos, kp)) != SOTP_OK)
		return rc;
	key = child(kp, NS_PSKC, "Key");
	if (attr(key, "Algorithm", alg, sizeof(alg)) != 0)
		return refuse(p, pos, "Key has no Algorithm");
	/* A PIN for the token to check (see pin_policy): not a token. */
	if (strcmp(alg, ALG_PIN) == 0)
		return SOTP_OK;
	hotp = strcmp(alg, ALG_HOTP) == 0;
	if (!hotp && strcmp(alg, ALG_TOTP) != 0) {
		sotp_import_quote(q, sizeof(q), alg);
		return refuse(p, pos,
		    "algorithm '%s' is not supported (TOTP or HOTP)", q);
	}
	if ((rc = key_policy(p, pos, key)) != SOTP_OK ||
	    (rc = sotp_import_add(p->b, pos, &e)) != SOTP_OK)
		return rc;
	/* The serial printed on the device; the Key Id for soft tokens. */
	if (text(child(child(kp, NS_PSKC, "DeviceInfo"), NS_PSKC, "SerialNo"),
	        serial, sizeof(serial)) != 0 &&
	    attr(key, "Id", serial, sizeof(serial)) != 0)
		return refuse(p, pos, "no DeviceInfo/SerialNo and no Key Id");
	if (strlen(serial) >= sizeof(e->serial) || !sotp_id_valid(serial))
		return refuse(p, pos,
		    "serial is not 1..64 printable characters without "
		    "spaces");
	sotp_strlcpy(e->serial, serial, sizeof(e->serial));
	if ((rc = alg_params(p, pos, child(key, NS_PSKC, "AlgorithmParameters"),
	         e)) != SOTP_OK)
		return rc;
	if ((data = child(key, NS_PSKC, "Data")) == NULL)
		return refuse(p, pos, "Key has no Data");
	if (hotp) {
		/* The counter of the token's next code; absent: 0. */
		if ((rc = data_number(p, pos, data, "Counter", UINT_MAX,
		         &counter)) != SOTP_OK)
			return rc;
		e->hotp = 1;
		e->counter = counter;
		return secret(p, pos, data, e);
	}
	/* Counter is HOTP state: a TOTP token has no use for it. */
	if ((rc = data_number(
	         p, pos, data, "TimeInterval", 86400, &e->period)) != SOTP_OK ||
	    (rc = data_number(p, pos, data, "Time", UINT_MAX, &t0)) != SOTP_OK)
		return rc;
	/* RFC 6238 T0: codes are counted from the epoch here. */
	if (t0 != 0)
		return refuse(
		    p, pos, "Time (T0) %u is not supported: only T0 = 0", t0);
	return secret(p, pos, data, e);
}

/* Wipes every text node: plain secrets sit in them as base64. */
static void
wipe_tree(xmlNode *n)
{
	for (; n != NULL; n = n->next) {
		if ((n->type == XML_TEXT_NODE ||
		        n->type == XML_CDATA_SECTION_NODE) &&
		    n->content != NULL &&
		    n->content != (xmlChar *)&n->properties)
			sotp_wipe(n->content, strlen((char *)n->content));
		if (n->type == XML_ELEMENT_NODE)
			wipe_tree(n->children);
	}
}

static int
container(struct pskc *p, const xmlNode *root)
{
	const xmlNode *c;
	char ver[ATTR_MAX];
	unsigned int pos = 0;
	int rc;

	if (!is(root, NS_PSKC, "KeyContainer"))
		return refuse(p, 0,
		    "not a PSKC document (no KeyContainer in " NS_PSKC ")");
	if (attr(root, "Version", ver, sizeof(ver)) != 0 ||
	    strcmp(ver, "1.0") != 0)
		return refuse(p, 0, "KeyContainer Version is not 1.0");
	/*
	 * Schema order is EncryptionKey, MACMethod, KeyPackage*, Signature;
	 * a key or MAC method after the first package is refused rather
	 * than applied to some packages only. A ds:Signature was checked
	 * (pskc_sig.c) before this walk, or the caller was told it was not.
	 */
	for (c = root->children; c != NULL; c = c->next) {
		if (is(c, NS_PSKC, "EncryptionKey")) {
			if (p->have_key || pos > 0)
				return refuse(p, 0,
				    "EncryptionKey twice or after a KeyPackage");
			if ((rc = once_each(p, 0, c)) != SOTP_OK ||
			    (rc = encryption_key(p, c)) != SOTP_OK)
				return rc;
		} else if (is(c, NS_PSKC, "MACMethod")) {
			if (p->have_mac || pos > 0)
				return refuse(p, 0,
				    "MACMethod twice or after a KeyPackage");
			if ((rc = once_each(p, 0, c)) != SOTP_OK ||
			    (rc = mac_method(p, c)) != SOTP_OK)
				return rc;
		} else if (is(c, NS_PSKC, "KeyPackage")) {
			/*
			 * A key given for a file in clear: not the file the
			 * operator was sent, or one stripped of its MACs
			 * along with its encryption.
			 */
			if (pos == 0 && !p->have_key &&
			    (p->psk != NULL || p->passphrase != NULL))
				return refuse(p, 0,
				    "a %s was given, but the file is not "
				    "encrypted (no EncryptionKey): its secrets "
				    "would be taken in clear, unprotected by "
				    "any MAC",
				    p->psk != NULL ? "pre-shared key"
				                   : "passphrase");
			if ((rc = key_package(p, ++pos, c)) != SOTP_OK)
				return rc;
		}
	}
	if (pos == 0)
		return refuse(p, 0, "no KeyPackage in the file");
	if (p->b->n == 0)
		return refuse(p, 0, "no OTP key in the file (PIN keys only)");
	return SOTP_OK;
}

/* ---- Bounding the parser's work ---- */

/* The line of buf[pos], for a refusal. */
static unsigned int
line_at(const char *buf, size_t pos)
{
	unsigned int line = 1;
	size_t i;

	for (i = 0; i < pos; i++)
		line += buf[i] == '\n';
	return line;
}

static int
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* After the first `close` at or after p, or NULL when there is none. */
static const char *
skip_past(const char *p, const char *end, const char *close)
{
	size_t n = strlen(close);
	const char *q = memmem(p, (size_t)(end - p), close, n);

	return q != NULL ? q + n : NULL;
}

/*
 * A start tag from its '<' to its '>': the attributes it holds (each has
 * one '=' outside quotes), the namespace declarations among them, and
 * whether it is empty ("/>"). Returns the byte after '>', or NULL when
 * the tag does not end.
 */
static const char *
start_tag(const char *p, const char *end, unsigned int *attrs, unsigned int *ns,
    int *empty)
{
	const char *q;

	*attrs = *ns = 0;
	for (p++; p < end && *p != '>'; p++) {
		if (*p == '"' || *p == '\'') {
			if ((q = memchr(p + 1, *p, (size_t)(end - p - 1))) ==
			    NULL)
				return NULL;
			p = q;
		} else if (*p == '=') {
			(*attrs)++;
		} else if (blank(p[-1]) && end - p > 5 &&
		    memcmp(p, "xmlns", 5) == 0 &&
		    (p[5] == '=' || p[5] == ':' || blank(p[5]))) {
			(*ns)++;
		}
	}
	if (p >= end)
		return NULL;
	*empty = p[-1] == '/';
	return p + 1;
}

/*
 * One linear pass over the markup, before libxml2 sees the file: refuses
 * an element with too many attributes, too many namespace declarations
 * in scope, or too deep a nesting (the PSKC_MAX_* bounds). It checks
 * nothing else; a document it cannot follow (an unterminated tag) goes
 * on to the parser, which refuses it.
 */
static int
prescan(struct pskc *p, const char *buf, size_t len)
{
	const char *s = buf, *end = buf + len, *tag;
	unsigned int depth = 0, in_scope = 0, attrs, ns;
	unsigned int scope[PSKC_MAX_DEPTH + 1];
	int empty;

	while (s != NULL && (s = memchr(s, '<', (size_t)(end - s))) != NULL) {
		tag = s;
		if (end - s >= 4 && memcmp(s, "<!--", 4) == 0)
			s = skip_past(s + 4, end, "-->");
		else if (end - s >= 9 && memcmp(s, "<![CDATA[", 9) == 0)
			s = skip_past(s + 9, end, "]]>");
		else if (end - s >= 2 && s[1] == '?')
			s = skip_past(s + 2, end, "?>");
		else if (end - s >= 9 && memcmp(s, "<!DOCTYPE", 9) == 0)
			return refuse(
			    p, 0, "a DOCTYPE is not allowed in a PSKC file");
		else if (end - s >= 2 && s[1] == '!')
			s = skip_past(s + 2, end, ">");
		else if (end - s >= 2 && s[1] == '/') {
			s = skip_past(s + 2, end, ">");
			if (depth > 0)
				in_scope -= scope[depth--];
		} else {
			if ((s = start_tag(s, end, &attrs, &ns, &empty)) ==
			    NULL)
				break;
			if (in_scope + ns > PSKC_MAX_NS)
				return refuse(p, 0,
				    "line %u: more than %d namespace declarations in scope",
				    line_at(buf, (size_t)(tag - buf)),
				    PSKC_MAX_NS);
			if (attrs > PSKC_MAX_ATTRS)
				return refuse(p, 0,
				    "line %u: more than %d attributes on one element",
				    line_at(buf, (size_t)(tag - buf)),
				    PSKC_MAX_ATTRS);
			if (empty)
				continue;
			if (depth == PSKC_MAX_DEPTH)
				return refuse(p, 0,
				    "line %u: elements nested more than %d deep",
				    line_at(buf, (size_t)(tag - buf)),
				    PSKC_MAX_DEPTH);
			scope[++depth] = ns;
			in_scope += ns;
		}
	}
	return SOTP_OK;
}

/*
 * The encoding named by the XML declaration at buf[len], into enc[encsz]
 * ("" when none is named). -1 when the name does not fit.
 */
static int
declared_encoding(const char *buf, size_t len, char *enc, size_t encsz)
{
	const char *end, *e, *q;

	enc[0] = '\0';
	if (len < 6 || memcmp(buf, "<?xml", 5) != 0 || !blank(buf[5]) ||
	    (end = memmem(buf, len, "?>", 2)) == NULL ||
	    (e = memmem(buf, (size_t)(end - buf), "encoding", 8)) == NULL)
		return 0;
	for (e += 8; e < end && blank(*e); e++)
		;
	if (e == end || *e++ != '=')
		return 0;
	while (e < end && blank(*e))
		e++;
	if (e == end || (*e != '"' && *e != '\'') ||
	    (q = memchr(e + 1, *e, (size_t)(end - e - 1))) == NULL)
		return 0;
	if ((size_t)(q - e - 1) >= encsz)
		return -1;
	memcpy(enc, e + 1, (size_t)(q - e - 1));
	enc[q - e - 1] = '\0';
	return 0;
}

/*
 * prescan counts markup in the file's bytes, so the parser must read
 * those bytes as the same characters: UTF-8 (ASCII a part of it). In
 * UTF-16 or -32, EBCDIC or UTF-7 the markup is not in the bytes and
 * every bound would let anything through. The parser is then told
 * UTF-8, whatever the declaration says.
 */
static int
check_encoding(struct pskc *p, const char *buf, size_t len)
{
	char enc[32], q[64];

	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
		buf += 3;
		len -= 3;
	}
	if (len >= 2 &&
	    (memcmp(buf, "\xfe\xff", 2) == 0 ||
	        memcmp(buf, "\xff\xfe", 2) == 0))
		return refuse(p, 0,
		    "the file is UTF-16 (byte order mark): only UTF-8 is "
		    "read; convert it with iconv -f UTF-16 -t UTF-8");
	if (memchr(buf, '\0', len) != NULL)
		return refuse(p, 0,
		    "line %u: a NUL byte (UTF-16 or UTF-32?): only UTF-8 is "
		    "read",
		    line_at(buf,
		        (size_t)((const char *)memchr(buf, '\0', len) - buf)));
	if (declared_encoding(buf, len, enc, sizeof(enc)) != 0 ||
	    (enc[0] != '\0' && strcasecmp(enc, "UTF-8") != 0 &&
	        strcasecmp(enc, "US-ASCII") != 0 &&
	        strcasecmp(enc, "ASCII") != 0)) {
		sotp_import_quote(q, sizeof(q), enc);
		return refuse(p, 0,
		    "encoding '%s' in its XML declaration: only UTF-8 is read; "
		    "convert the file with iconv -t UTF-8 and change its "
		    "declaration",
		    q);
	}
	return SOTP_OK;
}

int
sotp_pskc_read(struct sotp_import_batch *b, const char *buf, size_t len,
    const uint8_t *psk, size_t psklen, const char *passphrase,
    const char *signer, size_t signer_len)
{
	/* No network, no DTD, no entity substitution, no libxml2 stderr. */
	const int opts = XML_PARSE_NONET | XML_PARSE_NODICT |
	    XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_IGNORE_ENC;
	struct pskc p;
	xmlParserCtxtPtr pc = NULL;
	xmlDocPtr doc = NULL;
	char raw[128], msg[128];
	const char *m;
	int rc = SOTP_ERR_INTERNAL;

	memset(&p, 0, sizeof(p));
	p.b = b;
	p.psk = psk;
	p.psklen = psklen;
	p.passphrase = passphrase;
	if (len > PSKC_MAX_LEN) {
		rc = refuse(&p, 0, "file larger than %d bytes", PSKC_MAX_LEN);
		goto out;
	}
	if ((rc = check_encoding(&p, buf, len)) != SOTP_OK ||
	    (rc = prescan(&p, buf, len)) != SOTP_OK)
		goto out;
	xmlInitParser();
	if ((pc = xmlNewParserCtxt()) == NULL) {
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	doc = xmlCtxtReadMemory(pc, buf, (int)len, NULL, "UTF-8", opts);
	if (doc == NULL || !pc->wellFormed) {
		m = pc->lastError.message != NULL ? pc->lastError.message
		                                  : "empty document";
		/* libxml2's messages end with a newline. */
		snprintf(raw, sizeof(raw), "%.*s", (int)strcspn(m, "\n"), m);
		sotp_import_quote(msg, sizeof(msg), raw);
		rc = refuse(&p, 0, "not well-formed XML: line %d: %s",
		    pc->lastError.line, msg);
		goto out;
	}
	if (doc->intSubset != NULL || doc->extSubset != NULL) {
		rc = refuse(&p, 0, "a DOCTYPE is not allowed in a PSKC file");
		goto out;
	}
	/* The signature first, in this very tree, before any decryption. */
	if ((rc = sotp_pskc_signature(b, doc, signer, signer_len)) != SOTP_OK)
		goto out;
	rc = container(&p, xmlDocGetRootElement(doc));
out:
	if (doc != NULL)
		wipe_tree(doc->children);
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(pc);
	sotp_wipe(&p, sizeof(p));
	return rc;
}

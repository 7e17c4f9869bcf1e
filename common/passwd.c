/*
 * passwd.c - contract passwords as crypt(3) hashes (libxcrypt).
 *
 * New hashes use the policy's [password] method and cost: yescrypt at
 * cost 5 by default, libxcrypt's recommended method and Debian's own for
 * /etc/shadow (see shinkin-otp.conf(5) for why). Any hash that libxcrypt
 * can verify (sha512crypt, bcrypt, ...) is accepted, so passwords
 * migrated from an older system keep working.
 */
#include "sotp_int.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Costs, as crypt_gensalt(3) counts them: yescrypt's is a log2-like
 * factor (5 is N = 2^14 blocks, 16 MiB, libxcrypt's and Debian's default);
 * sha512crypt's is rounds (5000 is its classic default); bcrypt's is
 * log2 rounds.
 */
const struct sotp_pw_method_def sotp_pw_methods[SOTP_PW_NMETHODS] = {
    [SOTP_PW_YESCRYPT] = {"yescrypt", "$y$", 1, 11, 5},
    [SOTP_PW_SHA512CRYPT] = {"sha512crypt", "$6$", 1000, 999999999, 5000},
    [SOTP_PW_BCRYPT] = {"bcrypt", "$2b$", 4, 31, 12},
};

int
sotp_passwd_hash(const struct sotp_policy *p, const char *password, char *out)
{
	const struct sotp_pw_method_def *m = &sotp_pw_methods[SOTP_PW_YESCRYPT];
	struct crypt_data *cd = NULL;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	unsigned long cost = m->default_cost;
	const char *h;
	int rc = SOTP_ERR_CRYPTO;

	if (password == NULL || out == NULL ||
	    (p != NULL && (unsigned int)p->pw_method >= SOTP_PW_NMETHODS))
		return SOTP_ERR_INVALID_ARG;
	if (p != NULL) {
		m = &sotp_pw_methods[p->pw_method];
		cost = p->pw_cost;
	}
	out[0] = '\0';
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return SOTP_ERR_NOMEM;
	if (crypt_gensalt_rn(m->prefix, cost, NULL, 0, salt, sizeof(salt)) ==
	    NULL)
		goto out;
	h = crypt_rn(password, salt, cd, (int)sizeof(*cd));
	if (h == NULL || h[0] == '*')
		goto out;
	if (sotp_strlcpy(out, h, SOTP_HASH_MAX) >= SOTP_HASH_MAX) {
		out[0] = '\0';
		goto out;
	}
	rc = SOTP_OK;
out:
	sotp_free_secret(cd, sizeof(*cd));
	return rc;
}

int
sotp_passwd_check(const char *password, const char *hash, int *ok)
{
	struct crypt_data *cd = NULL;
	const char *h;
	size_t n;

	if (password == NULL || hash == NULL || ok == NULL)
		return SOTP_ERR_INVALID_ARG;
	*ok = 0;
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return SOTP_ERR_NOMEM;
	/* crypt_rn returns NULL or a "*" string for an unusable setting. */
	h = crypt_rn(password, hash, cd, (int)sizeof(*cd));
	n = strlen(hash);
	if (h != NULL && h[0] != '*' && strlen(h) == n)
		*ok = CRYPTO_memcmp(h, hash, n) == 0;
	sotp_free_secret(cd, sizeof(*cd));
	return SOTP_OK;
}

/*
 * ---- Is an imported hash usable? ----
 *
 * A migrated hash must be refused at import if libxcrypt cannot verify it,
 * not at the customer's first login. Computing it in full for every record
 * would cost a yescrypt or bcrypt hash each (hours for a million), so a
 * hash is taken apart instead: the method and its parameters, the salt and
 * the checksum. For the common methods (table below) the checksum's length
 * and alphabet are known, and so are the spare bits of its last character
 * (a non-canonical one could never compare equal to crypt's output). What
 * the table cannot know, whether libxcrypt takes these parameters and this
 * salt length, is learnt by one real crypt() per distinct shape (method,
 * parameters verbatim, salt length): a migration has a handful. A method
 * outside the table pays one crypt() per hash. What no check can see
 * without the password is a checksum altered within its alphabet.
 */

/* The crypt(3) base-64 alphabet, in the order sha-crypt and yescrypt use. */
static const char crypt64[] =
    "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/* bcrypt's own order. */
static const char bcrypt64[] =
    "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static const struct hash_method {
	const char *prefix;
	unsigned int sumlen;  /* checksum characters */
	unsigned int lastmod; /* the last one's index: < lastmod */
} methods[] = {
    {"$y$", 43, 16},  /* yescrypt: 32 bytes in 43 characters */
    {"$gy$", 43, 16}, /* gost-yescrypt */
    {"$5$", 43, 16},  /* sha256crypt */
    {"$6$", 86, 4},   /* sha512crypt: 64 bytes in 86 */
    {"$1$", 22, 4},   /* md5crypt: 16 bytes in 22 */
};

static int
index_of(const char *alphabet, char ch)
{
	const char *p;

	if (ch == '\0' || (p = strchr(alphabet, ch)) == NULL)
		return -1;
	return (int)(p - alphabet);
}

static int
all_in(const char *alphabet, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (index_of(alphabet, s[i]) < 0)
			return 0;
	return 1;
}

/*
 * Splits hash into its shape key (method and parameters verbatim, then
 * the salt length) and checks the checksum. Returns 1 with key[keysz]
 * filled, 0 for a method outside the table, or -1 with *why.
 */
static int
shape(const char *hash, char *key, size_t keysz, const char **why)
{
	const char *last, *salt;
	size_t n = strlen(hash), i, saltlen;

	/* bcrypt: $2b$NN$ + 22 salt + 31 checksum, one field. */
	if (strncmp(hash, "$2", 2) == 0 && n >= 4 && hash[3] == '$' &&
	    strchr("abxy", hash[2]) != NULL) {
		if (n != 60 || hash[6] != '$') {
			*why = "bcrypt hash is not 60 characters $2b$NN$...";
			return -1;
		}
		if (!all_in(bcrypt64, hash + 7, 53) ||
		    index_of(bcrypt64, hash[28]) % 16 != 0 ||
		    index_of(bcrypt64, hash[59]) % 4 != 0) {
			*why =
			    "bcrypt salt or checksum is not canonical base-64";
			return -1;
		}
		snprintf(key, keysz, "%.7s", hash);
		return 1;
	}
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strncmp(hash, methods[i].prefix,
		        strlen(methods[i].prefix)) == 0)
			break;
	if (i == sizeof(methods) / sizeof(methods[0]))
		return 0;
	/* PREFIX[PARAMS$...]SALT$CHECKSUM; the prefix ends in '$'. */
	last = strrchr(hash, '$');
	if (last < hash + strlen(methods[i].prefix)) {
		*why = "hash has no salt and checksum fields";
		return -1;
	}
	for (salt = last; salt[-1] != '$'; salt--)
		;
	saltlen = (size_t)(last - salt);
	if (strlen(last + 1) != methods[i].sumlen ||
	    !all_in(crypt64, last + 1, methods[i].sumlen) ||
	    index_of(crypt64, last[methods[i].sumlen]) >=
	        (int)methods[i].lastmod) {
		*why = "hash checksum has the wrong length or characters";
		return -1;
	}
	if ((size_t)snprintf(key, keysz, "%.*s%zu", (int)(salt - hash), hash,
	        saltlen) >= keysz) {
		*why = "hash parameters too long";
		return -1;
	}
	return 1;
}

/*
 * ---- What does a hash cost? ----
 *
 * A hash's cost is written in it (rounds, log2 rounds, memory), and every
 * check of it pays that cost: at the import's one crypt() per shape, and
 * at every login, wrong passwords included. A record with "$2b$31$" (a
 * day of CPU) or "$6$rounds=999999999$" (minutes) would stall the import
 * and give anyone who knows the contract ID a way to burn a RADIUS thread
 * per attempt. So a hash costlier than a ceiling is refused at import,
 * before it is ever computed. The ceilings are near a yescrypt at the
 * policy's highest cost (11: 1 GiB, about a second) and far above what
 * the systems a bank migrates from write: sha512crypt's default is 5000
 * rounds, bcrypt's 10 to 12. The policy's own method may cost what the
 * policy asks of new hashes, if that is more.
 */
#define CEIL_SHACRYPT 5000000UL /* $5$, $6$ rounds */
#define CEIL_BCRYPT 15UL        /* log2 rounds */
#define CEIL_YESCRYPT_LG 30U    /* log2 of 128 * N * r * p * (t + 1) */
#define CEIL_SHA1CRYPT 2000000UL
#define CEIL_SUNMD5 1000000UL

static unsigned int
atoi64(char c)
{
	int i = index_of(crypt64, c);

	return i < 0 ? 64 : (unsigned int)i;
}

/* yescrypt's variable-length number (libxcrypt's decode64_uint32). */
static const char *
yes_uint32(const char *s, uint32_t min, uint64_t *out)
{
	uint64_t v = min;
	uint32_t start = 0, end = 47, chars = 1, bits = 0, c;

	if ((c = atoi64(*s++)) > 63)
		return NULL;
	while (c > end) {
		v += (uint64_t)(end + 1 - start) << bits;
		start = end + 1;
		end = start + (62 - end) / 2;
		chars++;
		bits += 6;
	}
	v += (uint64_t)(c - start) << bits;
	while (--chars) {
		if ((c = atoi64(*s++)) > 63)
			return NULL;
		bits -= 6;
		v += (uint64_t)c << bits;
	}
	*out = v;
	return s;
}

/* The smallest b with 2^b >= v (v >= 1). */
static unsigned int
log2_up(uint64_t v)
{
	unsigned int b = 0;

	while (b < 64 && ((uint64_t)1 << b) < v)
		b++;
	return b;
}

/* A decimal field; saturates rather than wraps. -1 if none. */
static long long
decimal(const char *s)
{
	long long v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v > 99999999999LL ? v : v * 10 + (*s - '0');
	return v;
}

/*
 * log2 of yescrypt's (and scrypt's) work, 128 * N * r * p * (t + 1) << g,
 * from the parameters after its prefix ("j9T$..."); 0 when they cannot
 * be read (libxcrypt, which reads them the same way, refuses those).
 */
static unsigned int
yescrypt_lg(const char *s, int scrypt)
{
	uint64_t flavor, nlog2, r, p = 1, t = 0, g = 0, have = 0;
	unsigned int i;

	if (scrypt) {
		if ((nlog2 = atoi64(*s++)) < 1 || nlog2 > 63)
			return 0;
		for (r = 0, i = 0; i < 5; i++)
			if (atoi64(s[i]) > 63)
				return 0;
			else
				r |= (uint64_t)atoi64(s[i]) << (6 * i);
		for (p = 0, i = 0; i < 5; i++)
			if (atoi64(s[5 + i]) > 63)
				return 0;
			else
				p |= (uint64_t)atoi64(s[5 + i]) << (6 * i);
	} else {
		if ((s = yes_uint32(s, 0, &flavor)) == NULL ||
		    (s = yes_uint32(s, 1, &nlog2)) == NULL || nlog2 > 63 ||
		    (s = yes_uint32(s, 1, &r)) == NULL)
			return 0;
		if (*s != '$' && (s = yes_uint32(s, 1, &have)) == NULL)
			return 0;
		if ((have & 1) && (s = yes_uint32(s, 2, &p)) == NULL)
			return 0;
		if ((have & 2) && (s = yes_uint32(s, 1, &t)) == NULL)
			return 0;
		if ((have & 4) && (s = yes_uint32(s, 1, &g)) == NULL)
			return 0;
		if ((have & 8) != 0 || *s != '$') /* a ROM: none here */
			return 0;
	}
	if (r == 0 || p == 0)
		return 0;
	return 7 + (unsigned int)nlog2 + log2_up(r) + log2_up(p) +
	    log2_up(t + 1) + (unsigned int)(g > 64 ? 64 : g);
}

/*
 * NULL when hash costs no more than its ceiling (or the policy's own
 * cost, for the policy's method), else why not.
 */
static const char *
too_costly(const struct sotp_policy *pol, const char *hash)
{
	enum sotp_pw_method pm =
	    pol != NULL ? pol->pw_method : SOTP_PW_NMETHODS;
	unsigned long pc = pol != NULL ? pol->pw_cost : 0;
	unsigned long long ceil;
	unsigned int lg, lgmax = CEIL_YESCRYPT_LG;
	long long v;

	if (strncmp(hash, "$y$", 3) == 0 || strncmp(hash, "$gy$", 4) == 0 ||
	    strncmp(hash, "$7$", 3) == 0) {
		/* Policy cost c is N = 2^(c + 7) blocks of r = 32. */
		if (pm == SOTP_PW_YESCRYPT && hash[1] == 'y' && pc + 19 > lgmax)
			lgmax = (unsigned int)pc + 19;
		lg = yescrypt_lg(strchr(hash + 1, '$') + 1, hash[1] == '7');
		if (lg == 0)
			return "libxcrypt cannot compute this hash (method, "
			       "parameters or salt not usable)";
		return lg > lgmax ? "password hash costs too much to check "
		                    "at each login (yescrypt or scrypt memory "
		                    "x time above 1 GiB x 1, or the policy's "
		                    "cost if higher)"
		                  : NULL;
	}
	if (strncmp(hash, "$2", 2) == 0 && strlen(hash) > 6 && hash[3] == '$') {
		ceil =
		    pm == SOTP_PW_BCRYPT && pc > CEIL_BCRYPT ? pc : CEIL_BCRYPT;
		v = hash[4] >= '0' && hash[4] <= '9' ? decimal(hash + 4) : -1;
		/* Above 31 is no bcrypt: crypt() refuses it at once. */
		return v > (long long)ceil && v <= 31
		    ? "password hash costs too much to "
		      "check at each login (bcrypt cost "
		      "above 15, or the policy's cost if "
		      "higher)"
		    : NULL;
	}
	if ((strncmp(hash, "$5$", 3) == 0 || strncmp(hash, "$6$", 3) == 0) &&
	    strncmp(hash + 3, "rounds=", 7) == 0) {
		ceil = pm == SOTP_PW_SHA512CRYPT && pc > CEIL_SHACRYPT
		    ? pc
		    : CEIL_SHACRYPT;
		return decimal(hash + 10) > (long long)ceil
		    ? "password hash costs too much to check at each login "
		      "(sha-crypt rounds above 5000000, or the policy's cost if "
		      "higher)"
		    : NULL;
	}
	if (strncmp(hash, "$sha1$", 6) == 0)
		return decimal(hash + 6) > (long long)CEIL_SHA1CRYPT
		    ? "password hash costs too much to check at each login "
		      "(sha1crypt iterations above 2000000)"
		    : NULL;
	if ((strncmp(hash, "$md5,rounds=", 12) == 0 ||
	        strncmp(hash, "$md5$rounds=", 12) == 0))
		return decimal(hash + 12) > (long long)CEIL_SUNMD5
		    ? "password hash costs too much to check at each login "
		      "(sunmd5 rounds above 1000000)"
		    : NULL;
	/* The others cost what their method costs (BSDi: 2^24 at most). */
	return NULL;
}

/*
 * One real crypt(): it must give back a hash of the same shape. Of a
 * password as long as the hash asks for: bigcrypt (DES in the form of a
 * setting longer than 13 characters) writes 11 characters for each 8 of
 * the password, so its probe has as many blocks as the hash; every
 * other method's output has one length, whatever the password's.
 */
static int
crypt_agrees(const char *hash, size_t cmplen, int *ok)
{
	static const char probe[] = "shinkin-otp import check, "
	                            "as long as the hash it checks: bigcrypt "
	                            "takes 8 of its characters a block, up "
	                            "to 128 of them, 16 blocks and a hash of "
	                            "178";
	char pw[sizeof(probe)];
	struct crypt_data *cd = NULL;
	size_t n = 24, len = strlen(hash);
	const char *h;

	*ok = 0;
	if (hash[0] != '$' && hash[0] != '_' && len > 13)
		n = 8 * ((len - 2) / 11);
	if (n >= sizeof(pw))
		return SOTP_OK; /* longer than bigcrypt's 16 blocks: not one */
	memcpy(pw, probe, n);
	pw[n] = '\0';
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return SOTP_ERR_NOMEM;
	h = crypt_rn(pw, hash, cd, (int)sizeof(*cd));
	*ok = h != NULL && h[0] != '*' && strlen(h) == strlen(hash) &&
	    strncmp(h, hash, cmplen) == 0;
	sotp_free_secret(cd, sizeof(*cd));
	return SOTP_OK;
}

int
sotp_passwd_usable(
    struct sotp_hash_check *hc, const char *hash, int *weak, const char **why)
{
	char key[SOTP_HASH_MAX];
	const char *p;
	size_t i, n;
	int rc, s, ok = 0;

	*why = NULL;
	*weak = 0;
	n = strnlen(hash, SOTP_HASH_MAX);
	if (n == 0 || n >= SOTP_HASH_MAX) {
		*why = "password hash is empty or too long";
		return SOTP_OK;
	}
	if (hash[0] == '!' || hash[0] == '*') {
		*why = "password hash is locked or disabled ('!' or '*'): no "
		       "password matches it";
		return SOTP_OK;
	}
	for (p = hash; *p != '\0'; p++)
		if (*p <= ' ' || *p > '~' || strchr(":;\\\"'", *p) != NULL) {
			*why = "password hash holds a character crypt(3) "
			       "never writes";
			return SOTP_OK;
		}
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
		break;
	case CRYPT_SALT_METHOD_LEGACY:
	case CRYPT_SALT_TOO_CHEAP:
		*weak = 1;
		break;
	case CRYPT_SALT_METHOD_DISABLED:
		*why = "password hash method is disabled in libxcrypt";
		return SOTP_OK;
	default:
		*why = "password hash is not a crypt(3) hash libxcrypt knows";
		return SOTP_OK;
	}
	if ((s = shape(hash, key, sizeof(key), why)) < 0)
		return SOTP_OK;
	/* Before any crypt(): the one below would pay the cost too. */
	if ((*why = too_costly(hc->pol, hash)) != NULL)
		return SOTP_OK;
	if (s > 0)
		for (i = 0; i < hc->n; i++)
			if (strcmp(hc->key[i], key) == 0)
				return SOTP_OK;
	/*
	 * crypt() of another password must give back the method, parameters
	 * and salt as given: up to the last '$' (bcrypt: its 22-character
	 * salt too), or the salt of the formats without one (BSDi: 9
	 * characters, DES: 2).
	 */
	if (strncmp(hash, "$2", 2) == 0)
		n = 29;
	else if (hash[0] == '$')
		n = (size_t)(strrchr(hash, '$') - hash);
	else
		n = hash[0] == '_' ? 9 : 2;
	if ((rc = crypt_agrees(hash, n, &ok)) != SOTP_OK)
		return rc;
	if (!ok) {
		*why = "libxcrypt cannot compute this hash (method, parameters "
		       "or salt not usable)";
		return SOTP_OK;
	}
	if (s > 0 && hc->n < SOTP_HASH_SHAPES)
		sotp_strlcpy(hc->key[hc->n++], key, sizeof(hc->key[0]));
	return SOTP_OK;
}

int
sotp_passwd_cheap(const char *hash)
{
	int s = crypt_checksalt(hash);

	return s == CRYPT_SALT_METHOD_LEGACY || s == CRYPT_SALT_TOO_CHEAP;
}

/*
 * The methods [password] legacy_import = refuse keeps out of an import:
 * those a stolen copy of the store gives up fastest, with no cost to
 * raise. DES (and bigcrypt, its longer form) uses 8 characters of the
 * password at most and 12 bits of salt; md5crypt is a fixed 1000 MD5
 * rounds; NT is one unsalted MD4. sha256crypt, sha1crypt and sunmd5,
 * which libxcrypt also calls legacy, carry a rounds count and stay
 * accepted (rehash replaces them at the next login).
 */
const char *
sotp_passwd_legacy(const char *hash)
{
	if (hash == NULL || hash[0] == '\0')
		return NULL;
	if (strncmp(hash, "$1$", 3) == 0)
		return "md5crypt";
	if (strncmp(hash, "$3$", 3) == 0)
		return "nt";
	if (hash[0] == '$')
		return NULL;
	/* BSDi's extended DES: '_', 4 count, 4 salt, 11 hash characters. */
	if (hash[0] == '_')
		return "bsdicrypt";
	/* DES: 2 salt and 11 hash characters; bigcrypt adds 11 a block. */
	return strlen(hash) == 13 ? "descrypt" : "bigcrypt";
}

/*
 * Whether a hash in method m costs less than cost (as crypt_gensalt
 * counts it, sotp_pw_methods): a policy's cost raised since it was made,
 * or an imported one made cheaper. One whose cost cannot be read is not.
 */
static int
below_cost(enum sotp_pw_method m, unsigned long cost, const char *hash)
{
	unsigned int lg;
	long long v;

	switch (m) {
	case SOTP_PW_YESCRYPT:
		/* Cost c is N = 2^(c + 7) blocks of r = 32: 2^(c + 19). */
		lg = yescrypt_lg(hash + 3, 0);
		return lg != 0 && lg < cost + 19;
	case SOTP_PW_SHA512CRYPT:
		v = strncmp(hash + 3, "rounds=", 7) == 0 ? decimal(hash + 10)
		                                         : 5000;
		return v >= 0 && (unsigned long long)v < cost;
	case SOTP_PW_BCRYPT:
		v = decimal(hash + 4);
		return v >= 0 && (unsigned long long)v < cost;
	default:
		return 0;
	}
}

int
sotp_passwd_outdated(const struct sotp_policy *p, const char *hash)
{
	enum sotp_pw_method m =
	    p != NULL && (unsigned int)p->pw_method < SOTP_PW_NMETHODS
	    ? p->pw_method
	    : SOTP_PW_YESCRYPT;
	const char *prefix = sotp_pw_methods[m].prefix;

	/* bcrypt's $2a$, $2x$ and $2y$ are older spellings of $2b$. */
	return strncmp(hash, prefix, strlen(prefix)) != 0 ||
	    sotp_passwd_cheap(hash) ||
	    below_cost(m,
	        p != NULL ? p->pw_cost : sotp_pw_methods[m].default_cost, hash);
}

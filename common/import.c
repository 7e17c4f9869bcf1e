/*
 * import.c - token import from seed files, all or nothing.
 *
 * A reader (pskc.c, or the CSV reader below) turns the file into entries.
 * Then every entry is checked against the rules token add applies (serial,
 * digits, period, secret length, kind), the file against itself
 * (duplicate serials and seeds) and against the store (serials already
 * there, and seeds a stored token holds under another serial: seedfp.c,
 * checked inside the transaction). Only when all of that passes are the
 * tokens sealed and inserted, inside one store transaction: an operator
 * who imports 500 seeds gets 500 tokens or none, never a file half in
 * that must be edited before a retry.
 *
 * Every import is audited: one row per token inside the transaction (so
 * a rollback leaves no row claiming a token that is not there) with its
 * log line once committed, and one summary row and log line for the call,
 * refusals (with the refusal's own reason) and errors (a store or key
 * failing part way, verdict error) included.
 */
#include "import_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMPORT_MAX_ENTRIES 100000
#define CSV_LINE_MAX 1024
#define CSV_FIELDS 7
#define WORD_MAX 12 /* longest algorithm name shown in a refusal */

int
sotp_import_refuse(struct sotp_import_result *res, unsigned int pos,
    enum sotp_reason why, const char *fmt, ...)
{
	va_list ap;

	res->refused = 1;
	res->imported = 0;
	res->why = why;
	res->entry = pos;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
	return SOTP_IMPORT_REFUSED;
}

void
sotp_import_quote(char *dst, size_t dstsz, const char *src)
{
	size_t i, n = 0;

	if (dstsz == 0)
		return;
	for (i = 0; src != NULL && src[i] != '\0' && n + 1 < dstsz; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[n++] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
	}
	dst[n] = '\0';
	if (src != NULL && src[i] != '\0' && n >= 3)
		memcpy(dst + n - 3, "...", 3);
}

/*
 * A field's value for a refusal, quoted, unless it could be a seed in the
 * wrong column: longer than max (no valid value is), or text that reads
 * as a secret the policy would take, in base32 (the CSV's encoding) or
 * hex (a vendor's). Such a value is described, never shown: a file whose
 * columns are out of order would otherwise put its seeds on standard
 * error and in the audit (as migrate.c's shown() keeps hashes out).
 */
static const char *
shown(const struct sotp_import_batch *b, char *dst, size_t dstsz,
    const char *src, size_t max)
{
	uint8_t key[SOTP_IMPORT_SECRET_MAX];
	const char *why = NULL;
	char q[64];
	size_t i, n = strlen(src), keylen = 0;
	int secret = n > max;

	for (i = 0; i < n && isxdigit((unsigned char)src[i]); i++)
		;
	if (i == n && n >= 2 * (size_t)b->pol->min_secret_bytes)
		secret = 1;
	if (!secret &&
	    sotp_base32_decode(src, key, sizeof(key), &keylen, &why) ==
	        SOTP_OK &&
	    keylen >= b->pol->min_secret_bytes)
		secret = 1;
	SOTP_WIPE_ARRAY(key);
	if (secret) {
		snprintf(dst, dstsz,
		    "(%zu characters, not shown: it may be a secret in the "
		    "wrong column)",
		    n);
		return dst;
	}
	sotp_import_quote(q, sizeof(q), src);
	snprintf(dst, dstsz, "'%s'", q);
	return dst;
}

/*
 * Grows by copy rather than realloc: realloc may leave the old block,
 * secrets and all, in the heap unwiped.
 */
int
sotp_import_add(struct sotp_import_batch *b, unsigned int pos,
    struct sotp_import_entry **out)
{
	struct sotp_import_entry *e;
	size_t cap;

	*out = NULL;
	if (b->n >= IMPORT_MAX_ENTRIES)
		return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
		    "more than %d tokens in one file", IMPORT_MAX_ENTRIES);
	if (b->n == b->cap) {
		cap = b->cap == 0 ? 16 : b->cap * 2;
		if ((e = calloc(cap, sizeof(*e))) == NULL)
			return SOTP_ERR_NOMEM;
		if (b->n > 0)
			memcpy(e, b->e, b->n * sizeof(*e));
		sotp_free_secret(b->e, b->cap * sizeof(*b->e));
		b->e = e;
		b->cap = cap;
	}
	e = &b->e[b->n++];
	memset(e, 0, sizeof(*e));
	e->pos = pos;
	e->alg = b->pol->alg;
	e->digits = b->pol->digits;
	e->period = b->pol->period;
	*out = e;
	return SOTP_OK;
}

int
sotp_import_secret(struct sotp_import_batch *b, struct sotp_import_entry *e,
    const uint8_t *secret, size_t len)
{
	if (len < b->pol->min_secret_bytes || len > SOTP_IMPORT_SECRET_MAX)
		return sotp_import_refuse(b->res, e->pos, SOTP_R_BAD_INPUT,
		    "secret is %zu bytes, not %u..%d (min_secret_bytes; "
		    "RFC 4226 R6 asks for 16)",
		    len, b->pol->min_secret_bytes, SOTP_IMPORT_SECRET_MAX);
	memcpy(e->secret, secret, len);
	e->secret_len = len;
	return SOTP_OK;
}

static void
batch_free(struct sotp_import_batch *b)
{
	sotp_free_secret(b->e, b->cap * sizeof(*b->e));
	b->e = NULL;
	b->n = b->cap = 0;
}

/*
 * ---- CSV: serial,base32secret[,algorithm,digits,period,kind,counter] ----
 *
 * A counter makes the token event-based (HOTP): it is the counter of the
 * token's next code, and the period field stays empty.
 */

static char *
trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

/* An optional numeric field; "" keeps the default. */
static int
csv_number(struct sotp_import_batch *b, unsigned int pos, const char *name,
    const char *s, unsigned int *out)
{
	long long v;

	if (s == NULL || s[0] == '\0')
		return SOTP_OK;
	if (sotp_parse_ll_padded(s, 0, 100000, &v) != SOTP_OK)
		return sotp_import_refuse(
		    b->res, pos, SOTP_R_BAD_INPUT, "%s is not a number", name);
	*out = (unsigned int)v;
	return SOTP_OK;
}

static int
csv_line(struct sotp_import_batch *b, unsigned int pos, char *line)
{
	struct sotp_import_entry *e = NULL;
	char *f[CSV_FIELDS], *p, q[128];
	uint8_t key[SOTP_IMPORT_SECRET_MAX + 1];
	const char *why = NULL;
	size_t nf = 0, keylen = 0;
	long long v;
	int rc;

	for (p = line; nf < CSV_FIELDS; nf++) {
		f[nf] = p;
		if ((p = strchr(p, ',')) == NULL) {
			nf++;
			break;
		}
		*p++ = '\0';
	}
	if (p != NULL)
		return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
		    "more than %d fields", CSV_FIELDS);
	if (nf < 2)
		return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
		    "want serial,base32secret[,algorithm,digits,period,kind,"
		    "counter]");
	if ((rc = sotp_import_add(b, pos, &e)) != SOTP_OK)
		return rc;
	f[0] = trim(f[0]);
	if (strlen(f[0]) >= sizeof(e->serial) || !sotp_id_valid(f[0]))
		return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
		    "serial is not 1..64 printable characters without spaces");
	sotp_strlcpy(e->serial, f[0], sizeof(e->serial));
	if ((rc = sotp_base32_decode(trim(f[1]), key, sizeof(key), &keylen,
	         &why)) == SOTP_ERR_BUFFER)
		rc = sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
		    "secret longer than %d bytes", SOTP_IMPORT_SECRET_MAX);
	else if (rc != SOTP_OK)
		rc = sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
		    "secret is not base32 (%s)", why != NULL ? why : "bad");
	else
		rc = sotp_import_secret(b, e, key, keylen);
	SOTP_WIPE_ARRAY(key);
	sotp_wipe(f[1], strlen(f[1]));
	if (rc != SOTP_OK)
		return rc;
	if (nf > 2 && *(p = trim(f[2])) != '\0' &&
	    sotp_alg_parse(p, &e->alg) != SOTP_OK) {
		return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
		    "algorithm %s is not sha1, sha256 or sha512%s",
		    shown(b, q, sizeof(q), p, WORD_MAX),
		    strcasecmp(p, "hotp") == 0
		        ? " (an HOTP token gives its counter in field 7)"
		        : "");
	}
	if ((nf > 3 &&
	        (rc = csv_number(b, pos, "digits", trim(f[3]), &e->digits)) !=
	            SOTP_OK) ||
	    (nf > 4 &&
	        (rc = csv_number(b, pos, "period", trim(f[4]), &e->period)) !=
	            SOTP_OK))
		return rc;
	if (nf > 5 && *(p = trim(f[5])) != '\0') {
		if (strlen(p) >= sizeof(e->kind))
			return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
			    "kind name too long");
		sotp_strlcpy(e->kind, p, sizeof(e->kind));
	}
	if (nf > 6 && *(p = trim(f[6])) != '\0') {
		if (nf > 4 && *trim(f[4]) != '\0')
			return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
			    "a period and a counter: a token counts time "
			    "(TOTP) or events (HOTP), not both");
		if (sotp_parse_ll_padded(
		        p, 0, (long long)SOTP_COUNTER_MAX, &v) != SOTP_OK)
			return sotp_import_refuse(b->res, pos, SOTP_R_BAD_INPUT,
			    "counter is not a number from 0 to 2^62");
		e->counter = (uint64_t)v;
		e->hotp = 1;
	}
	return SOTP_OK;
}

static int
csv_read(struct sotp_import_batch *b, const char *buf, size_t len)
{
	char line[CSV_LINE_MAX + 1], *s;
	size_t i = 0, n;
	unsigned int pos = 0;
	int rc = SOTP_OK;

	/* A UTF-8 byte order mark is not part of the first line's serial. */
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	while (i < len && rc == SOTP_OK) {
		pos++;
		for (n = 0; i < len && buf[i] != '\n'; i++) {
			if (buf[i] == '\0') {
				rc = sotp_import_refuse(b->res, pos,
				    SOTP_R_BAD_INPUT, "line holds a NUL byte");
				goto out;
			}
			if (n >= CSV_LINE_MAX) {
				rc = sotp_import_refuse(b->res, pos,
				    SOTP_R_BAD_INPUT,
				    "line longer than %d bytes", CSV_LINE_MAX);
				goto out;
			}
			line[n++] = buf[i];
		}
		i++; /* the newline */
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		s = trim(line);
		if (s[0] != '\0' && s[0] != '#')
			rc = csv_line(b, pos, s);
		SOTP_WIPE_ARRAY(line);
	}
	if (rc == SOTP_OK && b->n == 0)
		rc = sotp_import_refuse(
		    b->res, 0, SOTP_R_BAD_INPUT, "no token in the file");
out:
	SOTP_WIPE_ARRAY(line);
	return rc;
}

/* ---- Checks shared by the formats ---- */

static int
check_entry(struct sotp_ctx *ctx, struct sotp_import_batch *b,
    struct sotp_import_entry *e, const char *kind)
{
	char q[128];

	if (e->kind[0] == '\0')
		sotp_strlcpy(e->kind,
		    kind != NULL ? kind
		                 : ctx->pol.kinds[ctx->pol.default_kind].name,
		    sizeof(e->kind));
	if (sotp_policy_kind(&ctx->pol, e->kind) == NULL) {
		return sotp_import_refuse(b->res, e->pos, SOTP_R_BAD_INPUT,
		    "kind %s is not defined in the policy",
		    shown(b, q, sizeof(q), e->kind, SOTP_NAME_MAX - 1));
	}
	if (e->digits < 6 || e->digits > 8)
		return sotp_import_refuse(b->res, e->pos, SOTP_R_BAD_INPUT,
		    "%u digits: 6, 7 or 8 are supported", e->digits);
	if (e->hotp)
		e->period = 0; /* how the store tells an HOTP token */
	else if (e->period < 1 || e->period > 300)
		return sotp_import_refuse(b->res, e->pos, SOTP_R_BAD_INPUT,
		    "period %u s: 1..300 s is supported", e->period);
	if (e->counter > SOTP_COUNTER_MAX)
		return sotp_import_refuse(b->res, e->pos, SOTP_R_BAD_INPUT,
		    "counter %llu: 0..2^62 is supported",
		    (unsigned long long)e->counter);
	if (sotp_alg_name(e->alg) == NULL ||
	    e->secret_len < ctx->pol.min_secret_bytes)
		return sotp_import_refuse(
		    b->res, e->pos, SOTP_R_BAD_INPUT, "no usable secret");
	return SOTP_OK;
}

/* Two entries' serials, or their secrets: 0 when they are the same. */
typedef int entry_key(
    const struct sotp_import_entry *x, const struct sotp_import_entry *y);

static int
serial_key(const struct sotp_import_entry *x, const struct sotp_import_entry *y)
{
	return strcmp(x->serial, y->serial);
}

static int
secret_key(const struct sotp_import_entry *x, const struct sotp_import_entry *y)
{
	if (x->secret_len != y->secret_len)
		return x->secret_len < y->secret_len ? -1 : 1;
	/* Not in constant time: the order of a file's seeds tells nothing. */
	return memcmp(x->secret, y->secret, x->secret_len);
}

/* For qsort: by a key, then by position in the file. */
static int
by_key(entry_key *key, const void *a, const void *b)
{
	const struct sotp_import_entry *const *x = a, *const *y = b;
	int c = key(*x, *y);

	if (c != 0)
		return c;
	return (*x)->pos < (*y)->pos ? -1 : (*x)->pos > (*y)->pos;
}

static int
by_serial(const void *a, const void *b)
{
	return by_key(serial_key, a, b);
}

static int
by_secret(const void *a, const void *b)
{
	return by_key(secret_key, a, b);
}

/*
 * The earliest entry (*dup) whose key an entry before it has, and that
 * first one (*first); both NULL when every key is its own. Sorted by key
 * then position, a repeat that comes earliest is the second of its group,
 * and the entry before it the first.
 */
static int
first_repeat(struct sotp_import_batch *b,
    int (*order)(const void *, const void *), entry_key *key,
    const struct sotp_import_entry **dup,
    const struct sotp_import_entry **first)
{
	const struct sotp_import_entry **v;
	size_t i;

	*dup = *first = NULL;
	if (b->n < 2)
		return SOTP_OK;
	if ((v = calloc(b->n, sizeof(*v))) == NULL)
		return SOTP_ERR_NOMEM;
	for (i = 0; i < b->n; i++)
		v[i] = &b->e[i];
	qsort(v, b->n, sizeof(*v), order);
	for (i = 1; i < b->n; i++)
		if (key(v[i], v[i - 1]) == 0 &&
		    (*dup == NULL || v[i]->pos < (*dup)->pos)) {
			*dup = v[i];
			*first = v[i - 1];
		}
	free(v);
	return SOTP_OK;
}

/*
 * Duplicates inside the file: the refusal names the earliest entry that
 * repeats a serial seen before it, and where it was first seen.
 */
static int
check_duplicates(struct sotp_import_batch *b)
{
	const struct sotp_import_entry *dup, *first;
	int rc;

	if ((rc = first_repeat(b, by_serial, serial_key, &dup, &first)) !=
	        SOTP_OK ||
	    dup == NULL)
		return rc;
	return sotp_import_refuse(b->res, dup->pos, SOTP_R_EXISTS,
	    "duplicate serial '%s' (%s %u has it too)", dup->serial, b->unit,
	    first->pos);
}

/*
 * One seed in two entries: a vendor's fault, or a value copied from one
 * entry into another (RFC 6030's MACs do not bind a value to its
 * KeyPackage). Either way each token's codes would be the other's, and
 * whoever holds one could answer for the other's contract. The refusal
 * names the later entry and the earlier, never the secret.
 */
static int
check_same_secret(struct sotp_import_batch *b)
{
	const struct sotp_import_entry *dup, *first;
	int rc;

	if ((rc = first_repeat(b, by_secret, secret_key, &dup, &first)) !=
	        SOTP_OK ||
	    dup == NULL)
		return rc;
	return sotp_import_refuse(b->res, dup->pos, SOTP_R_BAD_INPUT,
	    "the same secret as %s %u: each token needs a seed of its own",
	    b->unit, first->pos);
}

static int
check_store(struct sotp_ctx *ctx, struct sotp_import_batch *b)
{
	struct sotp_token_info info;
	size_t i;
	int rc;

	for (i = 0; i < b->n; i++) {
		rc = sotp_token_get(ctx, b->e[i].serial, &info);
		if (rc == SOTP_OK)
			return sotp_import_refuse(b->res, b->e[i].pos,
			    SOTP_R_EXISTS,
			    "serial '%s' is already in the store",
			    b->e[i].serial);
		if (rc != SOTP_ERR_NOT_FOUND) {
			b->cur = &b->e[i];
			return rc;
		}
	}
	return SOTP_OK;
}

/*
 * In the import's transaction (a dry run's own, rolled back): a seed a
 * token in the store already holds under another serial (a vendor's
 * batch re-issued, a file imported twice with its serials renamed). One
 * indexed lookup per entry and live key version; the refusal names the
 * entry, its serial and the stored token's, never the seed.
 */
static int
check_seeds(struct sotp_ctx *ctx, struct sotp_import_batch *b)
{
	struct sotp_seed_check sc;
	char holder[SOTP_ID_MAX];
	size_t i;
	int rc, found = 0;

	b->cur = NULL; /* an error here is the whole file's */
	if ((rc = sotp_seed_check_begin(ctx, &sc)) != SOTP_OK) {
		b->reason = sotp_seed_reason(&sc, rc);
		return rc;
	}
	for (i = 0; i < b->n; i++) {
		if ((rc = sotp_seed_held(ctx, &sc, b->e[i].secret,
		         b->e[i].secret_len, &found, holder, sizeof(holder))) !=
		    SOTP_OK)
			return rc;
		if (found)
			return sotp_import_refuse(b->res, b->e[i].pos,
			    SOTP_R_BAD_INPUT,
			    "serial '%s' has the same secret as token '%s', already in the store: each token needs a seed of its own",
			    b->e[i].serial, holder);
	}
	return SOTP_OK;
}

/* A dry run's look at the store's seeds, in a transaction it undoes. */
static int
check_seeds_dry(struct sotp_ctx *ctx, struct sotp_import_batch *b)
{
	int rc;

	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK) {
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
		return rc;
	}
	rc = check_seeds(ctx, b);
	sotp_store_rollback(ctx->st);
	return rc;
}

/* ---- The transaction ---- */

/* The audit row of one imported token. */
static void
import_row(struct sotp_audit_rec *a, const char *serial, const char *format,
    time_t now)
{
	memset(a, 0, sizeof(*a));
	a->ts = (int64_t)now;
	a->action = "token.import";
	a->contract = "";
	a->serial = serial;
	a->context = "";
	a->verdict = "accept";
	a->reason = SOTP_R_ACCEPTED;
	a->detail = format;
}

static int
insert_one(struct sotp_ctx *ctx, const struct sotp_import_entry *e,
    const char *format, time_t now)
{
	struct sotp_token_rec t;
	struct sotp_audit_rec a;
	int rc;

	memset(&t, 0, sizeof(t));
	sotp_strlcpy(t.serial, e->serial, sizeof(t.serial));
	sotp_strlcpy(t.kind, e->kind, sizeof(t.kind));
	t.alg = e->alg;
	t.digits = e->digits;
	t.period = e->period;
	/* HOTP: the counter before the token's next code counts as used. */
	t.last_step = e->period == 0 ? (int64_t)e->counter - 1 : -1;
	t.created = (int64_t)now;
	/* The serial is the AAD, as in token add (admin.c). */
	if ((rc = sotp_keys_seal(ctx, t.serial, e->secret, e->secret_len,
	         t.secret, sizeof(t.secret), &t.secret_len)) != SOTP_OK ||
	    (rc = sotp_sealed_kv(t.secret, t.secret_len, &t.kv)) != SOTP_OK ||
	    (rc = sotp_seed_fp(
	         ctx, t.kv, e->secret, e->secret_len, t.seed_fp)) != SOTP_OK)
		goto out;
	t.has_fp = 1;
	if ((rc = sotp_store_token_insert(ctx->st, &t)) != SOTP_OK)
		goto out;
	import_row(&a, t.serial, format, now);
	rc = sotp_audit_append(ctx, &a);
out:
	sotp_wipe(&t, sizeof(t));
	return rc;
}

static int
insert_all(struct sotp_ctx *ctx, struct sotp_import_batch *b,
    const char *format, time_t now)
{
	struct sotp_audit_rec a;
	size_t i;
	int rc;

	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		goto fail;
	/*
	 * The store's seeds, under the key ring's row this transaction
	 * now holds: no writer of given seeds comes in between. Before the
	 * audit batch, whose head decisions wait for.
	 */
	if ((rc = check_seeds(ctx, b)) != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		return rc; /* a refusal, or an error with its own text */
	}
	if ((rc = sotp_audit_batch_begin(ctx)) != SOTP_OK)
		goto fail;
	for (i = 0; i < b->n; i++) {
		b->cur = &b->e[i];
		rc = insert_one(ctx, &b->e[i], format, now);
		/* Another admin added the serial since check_store. */
		if (rc == SOTP_ERR_EXISTS) {
			(void)sotp_audit_batch_end(ctx, rc);
			sotp_store_rollback(ctx->st);
			return sotp_import_refuse(b->res, b->e[i].pos,
			    SOTP_R_EXISTS,
			    "serial '%s' is already in the store",
			    b->e[i].serial);
		}
		if (rc != SOTP_OK)
			goto fail;
	}
	b->cur = NULL; /* an error from here on is the whole batch's */
	if ((rc = sotp_audit_batch_end(ctx, SOTP_OK)) != SOTP_OK ||
	    (rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		goto fail;
	/* Each row its log line, once the rows are sure to stand. */
	for (i = 0; i < b->n; i++) {
		import_row(&a, b->e[i].serial, format, now);
		sotp_audit_line(ctx, &a);
	}
	return SOTP_OK;
fail:
	(void)sotp_audit_batch_end(ctx, rc);
	if (rc != SOTP_ERR_CRYPTO)
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
	sotp_store_rollback(ctx->st);
	return rc;
}

/*
 * An import that an error stopped (the store or a key failing, memory
 * short), not a refusal of its input, is an admin action too: its row has
 * the shape of a contract import's (migrate.c), verdict error, with the
 * pass, the entry and serial the store was at, and the error's name;
 * never the store's own text, never a secret. Best effort (the store may
 * be what failed). The ctx keeps the error it had, led by the serial (the
 * entry in res->entry, for the caller to lead with FILE:entry as for a
 * refusal) or, past the entries (the commit), by the format and pass; it
 * says that nothing was imported.
 */
static void
failed(struct sotp_ctx *ctx, const struct sotp_import_batch *b,
    const char *format, const char *how, int inserting, time_t now, int rc)
{
	char detail[SOTP_MSG_MAX + 80], at[SOTP_ID_MAX + 48] = "";
	char err[sizeof(ctx->err)];

	sotp_strlcpy(err, sotp_ctx_errmsg(ctx), sizeof(err));
	if (err[0] == '\0')
		sotp_strlcpy(err, sotp_strerror(rc), sizeof(err));
	if (b->cur != NULL)
		snprintf(at, sizeof(at), ", %s %u, serial '%s'", b->unit,
		    b->cur->pos, b->cur->serial);
	snprintf(detail, sizeof(detail), "%s: %s pass%s: %s; nothing imported",
	    how, inserting ? "insert" : "checking", at, sotp_rc_name(rc));
	(void)sotp_audit(ctx, now, "token.import", NULL, NULL, NULL, "error",
	    b->reason >= 0 ? b->reason : sotp_reason_from_rc(rc), detail);
	b->res->entry = b->cur != NULL ? b->cur->pos : 0;
	if (b->cur != NULL)
		sotp_ctx_seterr(ctx, "serial '%s': %s; nothing imported",
		    b->cur->serial, err);
	else
		sotp_ctx_seterr(ctx, "%s, %s pass: %s; nothing imported",
		    format, inserting ? "insert" : "checking", err);
}

/*
 * The common path: read, check, insert, audit. psk, passphrase and buf
 * are only handed to the PSKC reader.
 */
static int
import(struct sotp_ctx *ctx, const char *format, const char *buf, size_t len,
    const uint8_t *psk, size_t psklen, const char *passphrase,
    const char *signer, size_t signer_len, const char *kind, int dry_run,
    time_t now, struct sotp_import_result *res)
{
	struct sotp_import_batch b;
	char detail[SOTP_MSG_MAX + 80], how[48];
	size_t i;
	int rc, inserting = 0;

	if (res != NULL)
		memset(res, 0, sizeof(*res));
	memset(&b, 0, sizeof(b));
	b.reason = -1;
	if (ctx == NULL)
		return SOTP_ERR_INVALID_ARG;
	/*
	 * The context's error text is this call's from here on: an error
	 * that is not the store's (failed() reads it) would otherwise be
	 * reported with the text an earlier call left.
	 */
	if (res == NULL || (buf == NULL && len > 0)) {
		sotp_ctx_seterr(ctx, "%s import: %s", format,
		    res == NULL ? "no result to fill"
		                : "no bytes for a length");
		return SOTP_ERR_INVALID_ARG;
	}
	/* Not cleared before: it keeps why the context is not loaded. */
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	ctx->err[0] = '\0';
	b.pol = &ctx->pol;
	b.now = now;
	b.res = res;
	b.unit = strcmp(format, "pskc") == 0 ? "entry" : "line";
	/*
	 * [migration] pskc_signed: the policy, not the operator's memory of
	 * --signer, decides whether an unsigned (or unchecked) file may in.
	 */
	if (strcmp(format, "pskc") == 0 && ctx->pol.pskc_signed &&
	    signer == NULL)
		rc = sotp_import_refuse(res, 0, SOTP_R_BAD_INPUT,
		    "the policy takes only signed PSKC files ([migration] "
		    "pskc_signed = yes): give the vendor's certificate "
		    "(--signer)");
	else if (strcmp(format, "pskc") == 0)
		rc = sotp_pskc_read(&b, buf != NULL ? buf : "", len, psk,
		    psklen, passphrase, signer, signer_len);
	else
		rc = csv_read(&b, buf != NULL ? buf : "", len);
	for (i = 0; rc == SOTP_OK && i < b.n; i++)
		rc = check_entry(ctx, &b, &b.e[i], kind);
	if (rc == SOTP_OK)
		rc = check_duplicates(&b);
	if (rc == SOTP_OK)
		rc = check_same_secret(&b);
	if (rc == SOTP_OK)
		rc = check_store(ctx, &b);
	/* Every row says whether a signature was checked ("pskc, ..."). */
	if (res->signature == SOTP_SIG_NONE)
		snprintf(how, sizeof(how), "%s", format);
	else
		snprintf(how, sizeof(how), "%s, signature=%s", format,
		    sotp_sig_status_name(res->signature));
	if (rc == SOTP_OK && dry_run)
		rc = check_seeds_dry(ctx, &b);
	if (rc == SOTP_OK && !dry_run) {
		inserting = 1;
		rc = insert_all(ctx, &b, how, now);
	}
	if (rc == SOTP_IMPORT_REFUSED) {
		/*
		 * "csv: line 3", not a file:line: the core is handed bytes,
		 * never a path, and the path an operator typed is relative
		 * to a working directory the row outlives. A PSKC entry is a
		 * KeyPackage's position, not a line.
		 */
		if (res->entry > 0)
			snprintf(detail, sizeof(detail), "%s: %s %u: %s", how,
			    b.unit, res->entry, res->reason);
		else
			snprintf(
			    detail, sizeof(detail), "%s: %s", how, res->reason);
		(void)sotp_audit(ctx, now, "token.import", NULL, NULL, NULL,
		    "reject", res->why, detail);
		rc = SOTP_OK;
		goto out;
	}
	if (rc != SOTP_OK)
		goto out;
	res->imported = (unsigned int)b.n;
	snprintf(detail, sizeof(detail), "%s: %u tokens%s", how, res->imported,
	    dry_run ? " (dry run, nothing stored)" : "");
	/* The tokens are in: a lost summary row is logged, not fatal. */
	(void)sotp_audit(ctx, now, "token.import", NULL, NULL, NULL, "accept",
	    SOTP_R_ACCEPTED, detail);
	rc = SOTP_OK;
out:
	if (rc != SOTP_OK)
		failed(ctx, &b, format, how, inserting, now, rc);
	batch_free(&b);
	return rc;
}

int
sotp_import_pskc(struct sotp_ctx *ctx, const char *buf, size_t len,
    const uint8_t *psk, size_t psklen, const char *passphrase, const char *kind,
    int dry_run, time_t now, struct sotp_import_result *res)
{
	return import(ctx, "pskc", buf, len, psk, psklen, passphrase, NULL, 0,
	    kind, dry_run, now, res);
}

int
sotp_import_pskc_signed(struct sotp_ctx *ctx, const char *buf, size_t len,
    const uint8_t *psk, size_t psklen, const char *passphrase,
    const char *signer, size_t signer_len, const char *kind, int dry_run,
    time_t now, struct sotp_import_result *res)
{
	return import(ctx, "pskc", buf, len, psk, psklen, passphrase, signer,
	    signer_len, kind, dry_run, now, res);
}

int
sotp_import_csv(struct sotp_ctx *ctx, const char *buf, size_t len,
    const char *kind, int dry_run, time_t now, struct sotp_import_result *res)
{
	return import(ctx, "csv", buf, len, NULL, 0, NULL, NULL, 0, kind,
	    dry_run, now, res);
}

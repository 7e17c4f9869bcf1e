/*
 * migrate.c - bringing a bank's existing customers in: contract import
 * from CSV or JSON lines, all or nothing.
 *
 * Each record is a contract as the internet-banking system knows it: its
 * ID, its password hash as stored there (any crypt(3) format libxcrypt
 * verifies, kept byte for byte: no cleartext is needed and nothing is
 * re-hashed), the login choice, the printed card's grid, the serial of a
 * token the customer already holds, and the status.
 *
 * All or nothing, in one transaction: a migration is a cut-over, and a
 * customer base half in (which half?) is worse than none; a file that is
 * refused is corrected and run again, with nothing to undo or resume. So
 * the file is read twice. The first pass checks everything and writes
 * nothing (it is all of --dry-run): every field, every hash (passwd.c, a
 * full hash only per distinct method and parameters), IDs and serials
 * repeated in the file (hash sets, not a sort, so that the refusal names
 * both lines), and each record against the store (the contract new, the
 * token there, free, enabled and not past its sunset). Every refused
 * record is reported with its line and reason, not only the first. Only a
 * file with no refusal is read again, inside one store transaction, and
 * inserted: the store's write lock is held for the inserts alone, never
 * while the file is checked. A record that the store refuses in that pass
 * (another admin added the contract meanwhile, or bound or disabled its
 * token: a binding's token is checked again under the lock) is reported
 * with its line and rolls the whole import back.
 *
 * A serial binds the token without a live code: a migration binding,
 * allowed by the policy's [migration] binding, audited as
 * contract.import-bind. The token's last_step stays as it is, so the
 * customer's next code is the first one accepted. Card grids are sealed
 * as contract card seals them (AES-GCM, the contract ID as AAD). Each
 * contract gets its audit row inside the transaction; the import gets a
 * summary row and log line, refusals and dry runs included (a refused
 * import's row carries its first refusal's reason and line), and so does
 * an import that an error stopped.
 */
#include "sotp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#define REC_LINE_MAX 4096
#define REC_FIELDS 6
#define GRID_MAX (26 * 10)
#define WORD_MAX 12 /* longest login or status shown in a refusal */

enum { F_CONTRACT, F_PWHASH, F_LOGIN, F_CARD, F_SERIAL, F_STATUS };
static const char *const field_names[REC_FIELDS] = {
    "contract", "pwhash", "login", "card", "serial", "status"};

/* One record, its fields decoded (NUL-separated in buf). */
struct rec {
	unsigned long line;
	char buf[REC_LINE_MAX + REC_FIELDS]; /* secret: hash and grid */
	const char *f[REC_FIELDS];           /* into buf; "" when absent */
	enum sotp_login login;
	int64_t locked_until;
	int closed;
	char grid[GRID_MAX + 1]; /* secret */
};

/* A set of IDs, each with the line it was first seen on. */
struct idset {
	uint64_t *hash; /* 0: empty slot */
	uint32_t *off;  /* into arena */
	unsigned long *line;
	size_t cap, n;
	char *arena;
	size_t alen, acap;
};

struct mig {
	struct sotp_ctx *ctx;
	const char *buf;
	size_t len;
	enum sotp_record_format fmt;
	time_t now;
	sotp_import_refusal_cb *cb;
	void *arg;
	struct sotp_contract_import_result *res;
	struct sotp_hash_check hc;
	struct idset ids, serials;
	struct rec r;
	int pass; /* 1: the checks, 2: the inserts */
	char why[SOTP_MSG_MAX];
	int first_reason;         /* the first refusal's, for the summary */
	unsigned long first_line; /* its line (0: the file as a whole) */
	/*
	 * An error's text, kept before rollback: room for a store's whole
	 * message (512 bytes, store_int.h), and with what failed() puts
	 * around it still within the context's error text.
	 */
	char err[SOTP_CTX_ERR_MAX / 2];
};
/* failed() puts at most 200 bytes around the text, in the ctx's error. */
_Static_assert(sizeof(((struct mig *)0)->err) + 200 <= SOTP_CTX_ERR_MAX,
    "an import error's text and its location fit the context's error");

static const char *
fmt_name(enum sotp_record_format fmt)
{
	return fmt == SOTP_FMT_JSONL ? "jsonl" : "csv";
}

/*
 * What an error that stops the import says, kept as it comes (a rollback
 * may change the store's text): the store's own for a store error, else
 * the ctx's (a key), else the error's.
 */
static void
note_error(struct mig *m, int rc)
{
	const char *t = "";

	if (rc == SOTP_ERR_STORE || rc == SOTP_ERR_STORE_UNAVAILABLE)
		t = sotp_store_errmsg(m->ctx->st);
	if (t == NULL || t[0] == '\0')
		t = sotp_ctx_errmsg(m->ctx);
	if (t == NULL || t[0] == '\0')
		t = sotp_strerror(rc);
	/* Longer (a key's error names a path): cut with a mark. */
	sotp_mark_cut(
	    m->err, sizeof(m->err), sotp_strlcpy(m->err, t, sizeof(m->err)));
}

/* ---- refusals ---- */

static int refuse(struct mig *m, int reason, const char *fmt, ...)
    SOTP_PRINTF(3, 4);

/* Reports the current record refused; returns the reason. */
static int
refuse(struct mig *m, int reason, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->why, sizeof(m->why), fmt, ap);
	va_end(ap);
	if (m->res->refused++ == 0) {
		m->first_reason = reason;
		m->first_line = m->r.line;
	}
	if (m->cb != NULL)
		(void)m->cb(m->arg, m->r.line, reason, m->why);
	return reason;
}

/* ---- the ID sets ---- */

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h != 0 ? h : 1;
}

static void
idset_free(struct idset *s)
{
	free(s->hash);
	free(s->off);
	free(s->line);
	free(s->arena);
	memset(s, 0, sizeof(*s));
}

static int
idset_grow(struct idset *s)
{
	struct idset t;
	size_t i, j;

	memset(&t, 0, sizeof(t));
	t.cap = s->cap == 0 ? 1024 : s->cap * 2;
	t.hash = calloc(t.cap, sizeof(*t.hash));
	t.off = calloc(t.cap, sizeof(*t.off));
	t.line = calloc(t.cap, sizeof(*t.line));
	if (t.hash == NULL || t.off == NULL || t.line == NULL) {
		idset_free(&t);
		return SOTP_ERR_NOMEM;
	}
	for (i = 0; i < s->cap; i++) {
		if (s->hash[i] == 0)
			continue;
		for (j = s->hash[i] & (t.cap - 1); t.hash[j] != 0;
		     j = (j + 1) & (t.cap - 1))
			;
		t.hash[j] = s->hash[i];
		t.off[j] = s->off[i];
		t.line[j] = s->line[i];
	}
	free(s->hash);
	free(s->off);
	free(s->line);
	s->hash = t.hash;
	s->off = t.off;
	s->line = t.line;
	s->cap = t.cap;
	return SOTP_OK;
}

/*
 * Adds id seen on line; *first is 0 when new, else the line that had it.
 * IDs are not secret; the arena keeps them for an exact comparison.
 */
static int
idset_add(
    struct idset *s, const char *id, unsigned long line, unsigned long *first)
{
	uint64_t h = fnv1a(id);
	size_t i, n = strlen(id) + 1;
	char *a;
	int rc;

	*first = 0;
	if ((s->n + 1) * 2 > s->cap && (rc = idset_grow(s)) != SOTP_OK)
		return rc;
	for (i = h & (s->cap - 1); s->hash[i] != 0; i = (i + 1) & (s->cap - 1))
		if (s->hash[i] == h && strcmp(s->arena + s->off[i], id) == 0) {
			*first = s->line[i];
			return SOTP_OK;
		}
	if (s->alen + n > s->acap) {
		size_t cap = s->acap == 0 ? 65536 : s->acap * 2;

		if (cap > UINT32_MAX || (a = realloc(s->arena, cap)) == NULL)
			return SOTP_ERR_NOMEM;
		s->arena = a;
		s->acap = cap;
	}
	memcpy(s->arena + s->alen, id, n);
	s->hash[i] = h;
	s->off[i] = (uint32_t)s->alen;
	s->line[i] = line;
	s->alen += n;
	s->n++;
	return SOTP_OK;
}

/* ---- reading records ---- */

/*
 * The next line of the file: its text (not NUL-terminated) in *text and
 * *n, its number in m->r.line. Returns 1, or 0 at the end.
 */
static int
next_line(struct mig *m, size_t *pos, const char **text, size_t *n)
{
	const char *nl;

	/*
	 * A UTF-8 byte order mark (what spreadsheets put before "CSV UTF-8")
	 * is not part of the first record: without this, line 1 is refused
	 * as a contract ID of non-ASCII bytes, or its '#' header read as data.
	 */
	if (*pos == 0 && m->len >= 3 && memcmp(m->buf, "\xef\xbb\xbf", 3) == 0)
		*pos = 3;
	if (*pos >= m->len)
		return 0;
	m->r.line++;
	*text = m->buf + *pos;
	nl = memchr(*text, '\n', m->len - *pos);
	*n = nl != NULL ? (size_t)(nl - *text) : m->len - *pos;
	*pos += *n + 1;
	if (*n > 0 && (*text)[*n - 1] == '\r')
		(*n)--;
	return 1;
}

static int
blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Appends s[0..n) and a NUL to r->buf at *o; field i points there. */
static void
put_field(struct rec *r, size_t *o, int i, const char *s, size_t n)
{
	r->f[i] = r->buf + *o;
	memcpy(r->buf + *o, s, n);
	*o += n;
	r->buf[(*o)++] = '\0';
}

/*
 * A field in quotes (RFC 4180 section 2, on one line): "" is one quote,
 * blanks outside the quotes are dropped. *i is at the opening quote;
 * returns 0, or -1 with m->why unset for the caller to refuse.
 */
static int
csv_quoted(struct rec *r, size_t *o, int nf, const char *text, size_t n,
    size_t *i, const char **why)
{
	r->f[nf] = r->buf + *o;
	for ((*i)++;; (*i)++) {
		if (*i >= n) {
			*why = "a quote opens it and none closes it (a record "
			       "is one line)";
			return -1;
		}
		if (text[*i] == '"') {
			if (*i + 1 < n && text[*i + 1] == '"') {
				r->buf[(*o)++] = '"';
				(*i)++;
				continue;
			}
			(*i)++;
			break;
		}
		r->buf[(*o)++] = text[*i];
	}
	r->buf[(*o)++] = '\0';
	while (*i < n && blank(text[*i]))
		(*i)++;
	if (*i < n && text[*i] != ',') {
		*why = "text after its closing quote";
		return -1;
	}
	return 0;
}

/*
 * contract,pwhash[,login,card,serial,status]; blanks around trimmed. A
 * field may be quoted (export quotes an ID that holds a comma or starts
 * with '#'); a quoted field ends on its line.
 */
static int
parse_csv(struct mig *m, const char *text, size_t n)
{
	struct rec *r = &m->r;
	size_t i = 0, o = 0, start, end;
	const char *why = NULL;
	int nf = 0;

	for (;;) {
		while (i < n && blank(text[i]))
			i++;
		if (i < n && text[i] == '"') {
			if (csv_quoted(r, &o, nf, text, n, &i, &why) != 0)
				return refuse(m, SOTP_R_BAD_INPUT,
				    "field %d (%s): %s", nf + 1,
				    field_names[nf], why);
			nf++;
		} else {
			for (start = i; i < n && text[i] != ','; i++)
				;
			for (end = i; end > start && blank(text[end - 1]);
			     end--)
				;
			put_field(r, &o, nf++, text + start, end - start);
		}
		if (i >= n)
			break;
		/*
		 * A comma opens one more field, empty or not: "...,serial,"
		 * is six fields, the status empty; one after the sixth is a
		 * seventh.
		 */
		if (nf == REC_FIELDS)
			return refuse(m, SOTP_R_BAD_INPUT,
			    "more than %d fields (contract,pwhash,login,card,"
			    "serial,status)",
			    REC_FIELDS);
		i++; /* the comma */
	}
	if (nf < 2)
		return refuse(m, SOTP_R_BAD_INPUT,
		    "want contract,pwhash[,login,card,serial,status]");
	return SOTP_R_ACCEPTED;
}

/* ---- JSON lines: one object of string (or null) members per line ---- */

struct jp {
	const char *s;
	size_t i, n;
};

static void
jws(struct jp *j)
{
	while (j->i < j->n && strchr(" \t", j->s[j->i]) != NULL)
		j->i++;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * A JSON string (RFC 8259 section 7) into out[outsz] with a NUL. Every
 * field is ASCII, so a \u escape beyond U+007F (or to a control
 * character) is refused rather than decoded. Returns 0 or -1.
 */
static int
jstring(struct jp *j, char *out, size_t outsz, size_t *len)
{
	size_t o = 0;
	int k, v, c;

	if (j->i >= j->n || j->s[j->i] != '"')
		return -1;
	for (j->i++; j->i < j->n && j->s[j->i] != '"'; j->i++) {
		c = (unsigned char)j->s[j->i];
		if (c < 0x20 || o + 1 >= outsz)
			return -1;
		if (c == '\\') {
			if (++j->i >= j->n)
				return -1;
			switch (j->s[j->i]) {
			case '"':
			case '\\':
			case '/':
				c = j->s[j->i];
				break;
			case 'u':
				for (c = 0, k = 1; k <= 4; k++) {
					if (j->i + (size_t)k >= j->n ||
					    (v = hexval(j->s[j->i + k])) < 0)
						return -1;
					c = c * 16 + v;
				}
				j->i += 4;
				if (c < 0x20 || c > 0x7e)
					return -1;
				break;
			default: /* \b \f \n \r \t: control characters */
				return -1;
			}
		}
		out[o++] = (char)c;
	}
	if (j->i >= j->n)
		return -1;
	j->i++;
	out[o] = '\0';
	*len = o;
	return 0;
}

static int
parse_json(struct mig *m, const char *text, size_t n)
{
	struct rec *r = &m->r;
	struct jp j = {text, 0, n};
	char key[32];
	size_t o = 0, klen = 0, vlen = 0;
	unsigned int seen = 0;
	int i;

	jws(&j);
	if (j.i >= n || text[j.i++] != '{')
		return refuse(m, SOTP_R_BAD_INPUT, "not a JSON object");
	jws(&j);
	if (j.i < n && text[j.i] == '}')
		j.i++;
	else
		for (;;) {
			jws(&j);
			if (jstring(&j, key, sizeof(key), &klen) != 0)
				return refuse(m, SOTP_R_BAD_INPUT,
				    "bad JSON: a member name is expected");
			for (i = 0; i < REC_FIELDS; i++)
				if (strcmp(key, field_names[i]) == 0)
					break;
			if (i == REC_FIELDS)
				return refuse(m, SOTP_R_BAD_INPUT,
				    "unknown member \"%.31s\"", key);
			if (seen & (1u << i))
				return refuse(m, SOTP_R_BAD_INPUT,
				    "member \"%s\" given twice", key);
			seen |= 1u << i;
			jws(&j);
			if (j.i >= n || text[j.i++] != ':')
				return refuse(m, SOTP_R_BAD_INPUT,
				    "bad JSON: ':' expected");
			jws(&j);
			if (n - j.i >= 4 &&
			    memcmp(text + j.i, "null", 4) == 0) {
				j.i += 4;
				vlen = 0;
				r->buf[o] = '\0';
			} else if (jstring(&j, r->buf + o, sizeof(r->buf) - o,
			               &vlen) != 0) {
				return refuse(m, SOTP_R_BAD_INPUT,
				    "member \"%s\": not a JSON string of "
				    "printable ASCII",
				    key);
			}
			r->f[i] = r->buf + o;
			o += vlen + 1;
			jws(&j);
			if (j.i < n && text[j.i] == ',') {
				j.i++;
				continue;
			}
			if (j.i < n && text[j.i] == '}') {
				j.i++;
				break;
			}
			return refuse(m, SOTP_R_BAD_INPUT,
			    "bad JSON: ',' or '}' expected");
		}
	jws(&j);
	if (j.i != n)
		return refuse(
		    m, SOTP_R_BAD_INPUT, "text after the JSON object");
	return SOTP_R_ACCEPTED;
}

/* The next record, parsed: 1 (*reason set), or 0 at the end. */
static int
next_record(struct mig *m, size_t *pos, int *reason)
{
	struct rec *r = &m->r;
	const char *text = NULL;
	size_t n = 0, i;

	for (;;) {
		sotp_wipe(r->buf, sizeof(r->buf));
		sotp_wipe(r->grid, sizeof(r->grid));
		for (i = 0; i < REC_FIELDS; i++)
			r->f[i] = "";
		if (!next_line(m, pos, &text, &n))
			return 0;
		for (i = 0; i < n && blank(text[i]); i++)
			;
		if (i == n || text[i] == '#')
			continue;
		break;
	}
	if (memchr(text, '\0', n) != NULL)
		*reason = refuse(m, SOTP_R_BAD_INPUT, "line holds a NUL byte");
	else if (n > REC_LINE_MAX)
		*reason = refuse(m, SOTP_R_BAD_INPUT,
		    "line longer than %d bytes", REC_LINE_MAX);
	else if (m->fmt == SOTP_FMT_JSONL)
		*reason = parse_json(m, text, n);
	else
		*reason = parse_csv(m, text, n);
	return 1;
}

/* ---- the checks ---- */

/*
 * A field's value for a refusal, quoted ('A?B': blanks and non-ASCII as
 * '?'), unless it could be a secret in the wrong column: one with a '$'
 * (a crypt(3) hash), longer than max (no valid value is: an ID is at
 * most 63 characters, a login or status word 6: a typo of one is shown
 * to WORD_MAX), or as many digits as
 * the policy's card has cells (a card grid). Those are described, never
 * shown: a file whose columns are out of order would otherwise print
 * every customer's hash or card on standard error.
 */
static const char *
shown(const struct mig *m, char *dst, size_t dstsz, const char *src, size_t max)
{
	const struct sotp_policy *p = &m->ctx->pol;
	size_t i, n = strlen(src), digits = 0, other = 0;

	for (i = 0; i < n; i++) {
		if (src[i] >= '0' && src[i] <= '9')
			digits++;
		else if (!blank(src[i]) && src[i] != '-' && src[i] != '/')
			other++;
	}
	if (strchr(src, '$') != NULL || n > max ||
	    (other == 0 && digits >= (size_t)p->card_rows * p->card_cols)) {
		snprintf(dst, dstsz,
		    "(%zu characters, not shown: it may be a password hash or "
		    "card grid in the wrong column)",
		    n);
		return dst;
	}
	dst[0] = '\'';
	for (i = 0; i < n && i + 3 < dstsz; i++)
		dst[i + 1] = src[i] <= ' ' || src[i] > '~' ? '?' : src[i];
	dst[i + 1] = '\'';
	dst[i + 2] = '\0';
	return dst;
}

/* The grid as given: its digits, with blanks, '-' and '/' ignored. */
static int
check_card(struct mig *m)
{
	const struct sotp_policy *p = &m->ctx->pol;
	struct rec *r = &m->r;
	const char *s;
	size_t n = 0, want = (size_t)p->card_rows * p->card_cols;

	for (s = r->f[F_CARD]; *s != '\0'; s++) {
		if (blank(*s) || *s == '-' || *s == '/')
			continue;
		if (*s < '0' || *s > '9')
			return refuse(m, SOTP_R_BAD_INPUT,
			    "card: only digits (and blanks, '-' or '/' "
			    "between them)");
		/* Counted to the end, kept to GRID_MAX: too many is refused. */
		if (n < GRID_MAX)
			r->grid[n] = *s;
		n++;
	}
	r->grid[n < GRID_MAX ? n : GRID_MAX] = '\0';
	if (n != want && !(n == 0 && r->f[F_CARD][0] == '\0'))
		return refuse(m, SOTP_R_BAD_INPUT,
		    "card has %zu digits; the policy's card is %u rows x %u "
		    "columns = %zu",
		    n, p->card_rows, p->card_cols, want);
	return SOTP_R_ACCEPTED;
}

/* Every field on its own and with the others; nothing in the store. */
static int
check_fields(struct mig *m)
{
	struct rec *r = &m->r;
	const char *why = NULL, *st;
	char q[128];
	int rc, weak = 0, reason;

	if (!sotp_id_valid(r->f[F_CONTRACT])) {
		return refuse(m, SOTP_R_BAD_INPUT,
		    "contract ID %s is not 1..64 printable characters "
		    "without blanks or quotes",
		    shown(m, q, sizeof(q), r->f[F_CONTRACT], SOTP_ID_MAX - 1));
	}
	if ((rc = sotp_passwd_usable(&m->hc, r->f[F_PWHASH], &weak, &why)) !=
	    SOTP_OK)
		return rc; /* an error (negative), not a reason */
	if (why != NULL)
		return refuse(m, SOTP_R_BAD_INPUT, "pwhash: %s", why);
	/*
	 * Refused like any bad record: named with its line, and the whole
	 * file with it (all or nothing), so that the bank learns of every
	 * such customer before anyone is in.
	 */
	if (m->ctx->pol.pw_legacy_refuse &&
	    (why = sotp_passwd_legacy(r->f[F_PWHASH])) != NULL)
		return refuse(m, SOTP_R_BAD_INPUT,
		    "pwhash of contract %s is %s, a legacy method the policy "
		    "refuses at import ([password] legacy_import = refuse)",
		    shown(m, q, sizeof(q), r->f[F_CONTRACT], SOTP_ID_MAX - 1),
		    why);
	r->login = SOTP_LOGIN_OTP;
	if (r->f[F_LOGIN][0] != '\0' &&
	    sotp_login_parse(r->f[F_LOGIN], &r->login) != SOTP_OK) {
		return refuse(m, SOTP_R_BAD_INPUT,
		    "login %s is not otp, card or none",
		    shown(m, q, sizeof(q), r->f[F_LOGIN], WORD_MAX));
	}
	if ((reason = check_card(m)) != SOTP_R_ACCEPTED)
		return reason;
	st = r->f[F_STATUS];
	r->locked_until = 0;
	r->closed = 0;
	if (strcmp(st, "locked") == 0)
		r->locked_until = -1;
	else if (strcmp(st, "closed") == 0)
		r->closed = 1;
	else if (st[0] != '\0' && strcmp(st, "active") != 0) {
		return refuse(m, SOTP_R_BAD_INPUT,
		    "status %s is not active, locked or closed",
		    shown(m, q, sizeof(q), st, WORD_MAX));
	}
	if (r->login == SOTP_LOGIN_CARD && r->grid[0] == '\0')
		return refuse(m, SOTP_R_NO_CARD,
		    "login card needs the card grid in the record");
	if (weak && m->pass == 1)
		m->res->weak_hashes++;
	if (r->f[F_SERIAL][0] == '\0')
		return SOTP_R_ACCEPTED;
	if (!sotp_id_valid(r->f[F_SERIAL]))
		return refuse(m, SOTP_R_BAD_INPUT,
		    "serial is not 1..64 printable characters without blanks");
	if (!m->ctx->pol.migration_binding)
		return refuse(m, SOTP_R_BAD_INPUT,
		    "serial given, and the policy forbids binding without a "
		    "code ([migration] binding = no)");
	if (r->closed)
		return refuse(m, SOTP_R_STILL_BOUND,
		    "a closed contract cannot hold a token");
	return SOTP_R_ACCEPTED;
}

/* The token a record binds: there, free, enabled, not past sunset. */
static int
check_token(struct mig *m)
{
	const char *serial = m->r.f[F_SERIAL];
	const struct sotp_kind *k;
	struct sotp_token_rec t;
	char q[128];
	int rc, reason = SOTP_R_ACCEPTED;

	shown(m, q, sizeof(q), serial, SOTP_ID_MAX - 1);
	rc = sotp_store_token_get(m->ctx->st, serial, &t);
	if (rc == SOTP_ERR_NOT_FOUND)
		return refuse(m, SOTP_R_UNKNOWN_SERIAL,
		    "no token %s in the store (token import comes first)", q);
	if (rc != SOTP_OK)
		return rc;
	k = sotp_policy_kind(&m->ctx->pol, t.kind);
	if (t.contract[0] != '\0')
		reason = refuse(m, SOTP_R_TOKEN_IN_USE,
		    "token %s is bound to contract '%s' in the store", q,
		    t.contract);
	else if (t.disabled)
		reason =
		    refuse(m, SOTP_R_TOKEN_DISABLED, "token %s is disabled", q);
	else if (k != NULL && k->sunset_end != 0 &&
	    (int64_t)m->now >= k->sunset_end)
		reason = refuse(m, SOTP_R_TOKEN_SUNSET,
		    "token %s is of kind %s, past its sunset %s", q, k->name,
		    k->sunset);
	sotp_wipe(&t, sizeof(t));
	return reason;
}

/*
 * The first pass over a record: fields, repeats within the file, the
 * store. Returns a reason (ACCEPTED: all good) or, for an error, a
 * negative SOTP_ERR_*.
 */
static int
check_record(struct mig *m)
{
	struct rec *r = &m->r;
	struct sotp_contract_rec *c = NULL;
	unsigned long first = 0;
	char q[128];
	int reason, rc;

	if ((reason = check_fields(m)) != SOTP_R_ACCEPTED)
		return reason;
	if ((rc = idset_add(&m->ids, r->f[F_CONTRACT], r->line, &first)) !=
	    SOTP_OK)
		return rc;
	shown(m, q, sizeof(q), r->f[F_CONTRACT], SOTP_ID_MAX - 1);
	if (first != 0)
		return refuse(m, SOTP_R_EXISTS,
		    "contract %s is on line %lu too", q, first);
	if (r->f[F_SERIAL][0] != '\0') {
		if ((rc = idset_add(&m->serials, r->f[F_SERIAL], r->line,
		         &first)) != SOTP_OK)
			return rc;
		if (first != 0)
			return refuse(m, SOTP_R_TOKEN_IN_USE,
			    "token %s is bound on line %lu too",
			    shown(m, q, sizeof(q), r->f[F_SERIAL],
			        SOTP_ID_MAX - 1),
			    first);
	}
	if ((c = malloc(sizeof(*c))) == NULL)
		return SOTP_ERR_NOMEM;
	rc = sotp_store_contract_get(m->ctx->st, r->f[F_CONTRACT], c);
	sotp_free_secret(c, sizeof(*c));
	if (rc == SOTP_OK)
		return refuse(
		    m, SOTP_R_EXISTS, "contract %s is already in the store", q);
	if (rc != SOTP_ERR_NOT_FOUND)
		return rc;
	if (r->f[F_SERIAL][0] != '\0')
		return check_token(m);
	return SOTP_R_ACCEPTED;
}

/* ---- the second pass: the inserts ---- */

static int
audit_row(
    struct mig *m, const char *action, const char *serial, const char *detail)
{
	struct sotp_audit_rec a;

	memset(&a, 0, sizeof(a));
	a.ts = (int64_t)m->now;
	a.action = action;
	a.contract = m->r.f[F_CONTRACT];
	a.serial = serial;
	a.context = "";
	a.verdict = "accept";
	a.reason = SOTP_R_ACCEPTED;
	a.detail = detail;
	return sotp_audit_append(m->ctx, &a);
}

/* One contract, its binding and audit rows; LOST: the store refused. */
#define LOST 1
static int
insert_record(struct mig *m, struct sotp_contract_rec *c)
{
	struct rec *r = &m->r;
	char detail[48], q[128];
	int rc, won = 0;

	memset(c, 0, sizeof(*c));
	sotp_strlcpy(c->id, r->f[F_CONTRACT], sizeof(c->id));
	sotp_strlcpy(c->pwhash, r->f[F_PWHASH], sizeof(c->pwhash));
	c->login = r->login;
	c->locked_until = r->locked_until;
	c->closed = r->closed;
	c->created = (int64_t)m->now;
	if (r->grid[0] != '\0' &&
	    ((rc = sotp_keys_seal(m->ctx, c->id, (const uint8_t *)r->grid,
	          strlen(r->grid), c->card, sizeof(c->card), &c->card_len)) !=
	            SOTP_OK ||
	        (rc = sotp_sealed_kv(c->card, c->card_len, &c->kv)) != SOTP_OK))
		return rc;
	rc = sotp_store_contract_insert(m->ctx->st, c);
	if (rc == SOTP_ERR_EXISTS) {
		refuse(m, SOTP_R_EXISTS,
		    "contract %s was added to the store during the import",
		    shown(m, q, sizeof(q), c->id, SOTP_ID_MAX - 1));
		return LOST;
	}
	snprintf(
	    detail, sizeof(detail), "%s line %lu", fmt_name(m->fmt), r->line);
	if (rc != SOTP_OK ||
	    (rc = audit_row(m, "contract.import", "", detail)) != SOTP_OK)
		return rc;
	if (r->f[F_SERIAL][0] == '\0')
		return SOTP_OK;
	/*
	 * The token again, now under the write lock: disabled (or bound, or
	 * gone) since the checking pass, it is not bound; the bind below
	 * only sees whether it is free.
	 */
	if ((rc = check_token(m)) < 0)
		return rc;
	if (rc != SOTP_R_ACCEPTED)
		return LOST;
	if ((rc = sotp_store_bind_migrated(
	         m->ctx->st, c->id, r->f[F_SERIAL], c->login, &won)) != SOTP_OK)
		return rc;
	if (!won) {
		refuse(m, SOTP_R_TOKEN_IN_USE,
		    "token %s was bound during the import",
		    shown(m, q, sizeof(q), r->f[F_SERIAL], SOTP_ID_MAX - 1));
		return LOST;
	}
	m->res->bindings++;
	return audit_row(m, "contract.import-bind", r->f[F_SERIAL],
	    "migration binding: no live code checked");
}

static int
insert_all(struct mig *m)
{
	struct sotp_contract_rec *c = NULL;
	size_t pos = 0;
	int rc, reason = SOTP_R_ACCEPTED;

	if ((c = malloc(sizeof(*c))) == NULL)
		return SOTP_ERR_NOMEM;
	m->r.line = 0;
	m->pass = 2;
	/* The chain's head once for all the rows (sotp_audit_batch_begin). */
	if ((rc = sotp_store_begin(m->ctx->st)) != SOTP_OK ||
	    (rc = sotp_audit_batch_begin(m->ctx)) != SOTP_OK)
		goto out;
	while (next_record(m, &pos, &reason)) {
		/* The first pass accepted every record: this one too. */
		if (reason != SOTP_R_ACCEPTED ||
		    (reason = check_fields(m)) != SOTP_R_ACCEPTED) {
			rc = reason < 0 ? reason : SOTP_ERR_INTERNAL;
			goto out;
		}
		if ((rc = insert_record(m, c)) != SOTP_OK)
			goto out;
		m->res->imported++;
	}
	/*
	 * Past the records: an error from here on is the whole batch's, not
	 * the last line's (next_record left no record in m->r).
	 */
	m->r.line = 0;
	if ((rc = sotp_audit_batch_end(m->ctx, SOTP_OK)) == SOTP_OK)
		rc = sotp_store_commit(m->ctx->st);
out:
	if (rc != SOTP_OK) {
		if (rc != LOST)
			note_error(m, rc);
		(void)sotp_audit_batch_end(m->ctx, rc);
		sotp_store_rollback(m->ctx->st);
		m->res->imported = 0;
		m->res->bindings = 0;
		if (rc == LOST)
			rc = SOTP_OK;
	}
	sotp_free_secret(c, sizeof(*c));
	return rc;
}

/* ---- the import ---- */

static int
check_all(struct mig *m)
{
	size_t pos = 0;
	int reason = SOTP_R_ACCEPTED;

	m->pass = 1;
	while (next_record(m, &pos, &reason)) {
		m->res->records++;
		if (reason == SOTP_R_ACCEPTED)
			reason = check_record(m);
		if (reason < 0)
			return reason;
	}
	if (m->res->records == 0) {
		m->r.line = 0;
		refuse(m, SOTP_R_BAD_INPUT, "no record in the file");
	}
	return SOTP_OK;
}

/*
 * The import's own row. A refused import carries the reason of its first
 * refusal, in file order (the insert pass stops at its one refusal), and
 * names that refusal's line: the records' own reasons may differ, and each
 * is on standard error (or --json) with its line; the row keeps the one
 * an operator fixes first, rather than a BAD_INPUT that a duplicate or an
 * unknown serial is not.
 */
static void
summary(struct mig *m, int dry_run)
{
	const struct sotp_contract_import_result *res = m->res;
	char detail[200], first[48] = "";

	if (res->refused > 0 && m->first_line > 0)
		snprintf(first, sizeof(first), "; first refused: line %lu",
		    m->first_line);
	else if (res->refused > 0)
		snprintf(first, sizeof(first), "; first refused: the file");
	snprintf(detail, sizeof(detail),
	    "%s: %lu records, %lu refused, %lu imported, %lu migration "
	    "bindings%s%s",
	    fmt_name(m->fmt), res->records, res->refused, res->imported,
	    res->bindings, dry_run ? " (dry run, nothing stored)" : "", first);
	(void)sotp_audit(m->ctx, m->now, "contract.import", NULL, NULL, NULL,
	    res->refused > 0 ? "reject" : "accept",
	    res->refused > 0 ? m->first_reason : SOTP_R_ACCEPTED, detail);
}

/*
 * An import that could not run to its end (a store or key error) is an
 * admin action too: its row says so, and where: the pass, the line and
 * the contract ID the store was at (quoted, as refusals show it: never a
 * hash), or only the pass past the records (the commit). Best effort (the
 * store may be what failed). The ctx says the same with the error's text
 * and that nothing was imported; res->line carries the line, for the
 * caller to lead with FILE:LINE as a refusal does.
 */
static void
failed(struct mig *m, int rc)
{
	char detail[SOTP_MSG_MAX], msg[sizeof(m->err) + 200], at[160] = "";
	char q[128];
	const char *pass = m->pass == 2 ? "insert" : "checking";

	if (m->err[0] == '\0')
		note_error(m, rc);
	m->res->line = m->r.line;
	if (m->r.line > 0 && m->r.f[F_CONTRACT] != NULL &&
	    m->r.f[F_CONTRACT][0] != '\0') {
		shown(m, q, sizeof(q), m->r.f[F_CONTRACT], SOTP_ID_MAX - 1);
		snprintf(
		    at, sizeof(at), ", line %lu, contract %s", m->r.line, q);
		snprintf(msg, sizeof(msg), "contract %s: %s; nothing imported",
		    q, m->err);
	} else if (m->r.line > 0) {
		snprintf(at, sizeof(at), ", line %lu", m->r.line);
		snprintf(msg, sizeof(msg), "%s; nothing imported", m->err);
	} else {
		snprintf(msg, sizeof(msg), "%s, %s pass: %s; nothing imported",
		    fmt_name(m->fmt), pass, m->err);
	}
	snprintf(detail, sizeof(detail), "%s: %s pass%s: %s; nothing imported",
	    fmt_name(m->fmt), pass, at, sotp_rc_name(rc));
	(void)sotp_audit(m->ctx, m->now, "contract.import", NULL, NULL, NULL,
	    "error", sotp_reason_from_rc(rc), detail);
	sotp_ctx_seterr(m->ctx, "%s", msg);
}

int
sotp_contract_import(struct sotp_ctx *ctx, const char *buf, size_t len,
    enum sotp_record_format fmt, int dry_run, time_t now,
    sotp_import_refusal_cb *cb, void *arg,
    struct sotp_contract_import_result *res)
{
	struct mig *m = NULL;
	int rc;

	if (res != NULL)
		memset(res, 0, sizeof(*res));
	if (ctx == NULL)
		return SOTP_ERR_INVALID_ARG;
	/*
	 * The context's error text is this call's from here on: an error
	 * that is not the store's (note_error reads it) would otherwise be
	 * reported with the text an earlier call left.
	 */
	if (res == NULL || (buf == NULL && len > 0) ||
	    (fmt != SOTP_FMT_CSV && fmt != SOTP_FMT_JSONL)) {
		sotp_ctx_seterr(ctx, "contract import: %s",
		    res == NULL                  ? "no result to fill"
		        : buf == NULL && len > 0 ? "no bytes for a length"
		                                 : "not CSV nor JSON lines");
		return SOTP_ERR_INVALID_ARG;
	}
	/* Not cleared before: it keeps why the context is not loaded. */
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	ctx->err[0] = '\0';
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return SOTP_ERR_NOMEM;
	m->ctx = ctx;
	m->buf = buf != NULL ? buf : "";
	m->len = len;
	m->fmt = fmt;
	m->now = now;
	m->cb = cb;
	m->arg = arg;
	m->res = res;
	m->hc.pol = &ctx->pol;
	if ((rc = check_all(m)) != SOTP_OK) {
		note_error(m, rc);
		goto out;
	}
	if (res->refused == 0 && !dry_run)
		rc = insert_all(m);
	else if (res->refused == 0)
		res->imported = res->records;
	if (rc == SOTP_OK)
		summary(m, dry_run);
out:
	if (rc != SOTP_OK)
		failed(m, rc);
	idset_free(&m->ids);
	idset_free(&m->serials);
	sotp_free_secret(m, sizeof(*m));
	return rc;
}

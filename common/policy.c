/*
 * policy.c - the policy file: one file read by PAM, RADIUS and the CLI.
 *
 * "key = value" lines under "[section]" or "[section name]" headers. Every
 * problem is an error naming file:line, in the manner of OpenSSH's
 * servconf.c; unknown sections and keys are errors too, so a misspelt
 * option can never silently weaken the policy.
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "sotp_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum section {
	SEC_MAIN,
	SEC_OTP,
	SEC_LOCKOUT,
	SEC_STATE,
	SEC_CARD,
	SEC_STORE,
	SEC_KIND,
	SEC_CONTEXT,
	SEC_SERVICES,
	SEC_MESSAGES,
	SEC_MIGRATION,
	SEC_KEY,
	SEC_PASSWORD
};

enum vtype {
	V_UINT,
	V_STR,
	V_PATH,
	V_STORE,
	V_ALG,
	V_LANG,
	V_BOOL,
	V_PWHASH,
	V_LEGACY,
	V_UNKNOWN,
	V_METRICS,
	V_KEK,
	V_MODULE,
	V_SLOT
};

struct option {
	enum section sec;
	const char *key;
	enum vtype type;
	size_t off;
	size_t size; /* string buffer size */
	unsigned int min, max;
};

#define UOPT(s, k, f, lo, hi)                                                  \
	{                                                                      \
		s, k, V_UINT, offsetof(struct sotp_policy, f), 0, lo, hi       \
	}
#define SOPT(s, k, t, f)                                                       \
	{                                                                      \
		s, k, t, offsetof(struct sotp_policy, f),                      \
		    sizeof(((struct sotp_policy *)0)->f), 0, 0                 \
	}

static const struct option options[] = {
    SOPT(SEC_MAIN, "store", V_STORE, store),
    SOPT(SEC_MAIN, "master_key", V_PATH, master_key),
    SOPT(SEC_MAIN, "issuer", V_STR, issuer),
    {SEC_MAIN, "language", V_LANG, offsetof(struct sotp_policy, lang), 0, 0, 0},
    {SEC_MAIN, "unknown_contract", V_UNKNOWN,
        offsetof(struct sotp_policy, reveal_unknown), 0, 0, 0},
    SOPT(SEC_MAIN, "metrics", V_METRICS, metrics),
    {SEC_OTP, "algorithm", V_ALG, offsetof(struct sotp_policy, alg), 0, 0, 0},
    UOPT(SEC_OTP, "digits", digits, 6, 8),
    UOPT(SEC_OTP, "period", period, 10, 300),
    UOPT(SEC_OTP, "window_back", window_back, 0, 3),
    UOPT(SEC_OTP, "window_forward", window_forward, 0, 3),
    UOPT(SEC_OTP, "max_drift", max_drift, 0, 10),
    UOPT(SEC_OTP, "resync_window", resync_window, 1, 1000),
    UOPT(SEC_OTP, "hotp_look_ahead", hotp_look_ahead, 1, 100),
    UOPT(SEC_OTP, "hotp_resync_window", hotp_resync_window, 2, 10000),
    UOPT(SEC_OTP, "min_secret_bytes", min_secret_bytes, 4, 64),
    UOPT(SEC_LOCKOUT, "threshold", lock_threshold, 1, 100),
    UOPT(SEC_LOCKOUT, "duration", lock_duration, 0, 30 * 86400),
    UOPT(SEC_STATE, "lifetime", state_lifetime, 1, 3600),
    UOPT(SEC_STATE, "max_rounds", max_rounds, 1, 10),
    UOPT(SEC_CARD, "rows", card_rows, 1, 26),
    UOPT(SEC_CARD, "columns", card_cols, 1, 10),
    UOPT(SEC_CARD, "cells", card_cells, 1, SOTP_MAX_CELLS),
    UOPT(SEC_STORE, "connect_timeout", connect_timeout, 2, 60),
    UOPT(SEC_STORE, "statement_timeout", statement_timeout, 100, 60000),
    UOPT(SEC_STORE, "lock_timeout", lock_timeout, 100, 60000),
    {SEC_MIGRATION, "binding", V_BOOL,
        offsetof(struct sotp_policy, migration_binding), 0, 0, 0},
    {SEC_MIGRATION, "rehash", V_BOOL, offsetof(struct sotp_policy, rehash), 0,
        0, 0},
    {SEC_MIGRATION, "pskc_signed", V_BOOL,
        offsetof(struct sotp_policy, pskc_signed), 0, 0, 0},
    /* [key]: where the key-encryption key comes from (keys.c). */
    {SEC_KEY, "kek", V_KEK, offsetof(struct sotp_policy, kek), 0, 0, 0},
    SOPT(SEC_KEY, "pkcs11_module", V_MODULE, p11_module),
    SOPT(SEC_KEY, "pkcs11_token", V_STR, p11_token),
    {SEC_KEY, "pkcs11_slot", V_SLOT, offsetof(struct sotp_policy, p11_slot), 0,
        0, 0},
    SOPT(SEC_KEY, "pkcs11_key", V_STR, p11_key),
    SOPT(SEC_KEY, "pkcs11_pin_file", V_PATH, p11_pin_file),
    UOPT(SEC_KEY, "refresh", key_refresh, 1, 300),
    {SEC_PASSWORD, "hash", V_PWHASH, offsetof(struct sotp_policy, pw_method), 0,
        0, 0},
    /* Bounded by the method's own range once the file is read. */
    UOPT(SEC_PASSWORD, "cost", pw_cost, 1, 999999999),
    {SEC_PASSWORD, "legacy_import", V_LEGACY,
        offsetof(struct sotp_policy, pw_legacy_refuse), 0, 0, 0},
};

static const char *const section_names[] = {"", "otp", "lockout", "state",
    "card", "store", "kind", "context", "services", "messages", "migration",
    "key", "password"};
static const char *const lang_names[] = {"en", "ja"};
/* unknown_contract: 0 hide (the default), 1 reveal. */
static const char *const unknown_names[] = {"hide", "reveal"};
/* [key] kek: SOTP_KEK_FILE, SOTP_KEK_PKCS11. */
static const char *const kek_names[] = {"file", "pkcs11"};
/* [password] legacy_import: 0 accept (the default), 1 refuse. */
static const char *const legacy_names[] = {"accept", "refuse"};

/* The bank's shipped contexts, used when a file defines none. */
static const struct sotp_context_def default_contexts[] = {
    {"login", 1, SOTP_2F_USER, SOTP_ACT_AUTH},
    {"transaction", 0, SOTP_2F_OTP, SOTP_ACT_AUTH},
    {"mobile", 1, SOTP_2F_NONE, SOTP_ACT_AUTH},
    {"registration", 1, SOTP_2F_CARD, SOTP_ACT_REGISTER},
    {"unregistration", 1, SOTP_2F_OTP, SOTP_ACT_UNREGISTER},
};

struct parser {
	struct sotp_policy *p;
	const char *file;
	unsigned int line;
	enum section sec;
	char *err;
	size_t errsz;
	/* The line each option was set on; 0: not set. */
	unsigned int seen[sizeof(options) / sizeof(options[0])];
	/*
	 * Keys set in the current section: [context] 1 password, 2 factor,
	 * 4 action; [kind] 1 sunset, 2 warn_days, 4 default, 16 serial_case,
	 * and 8 once any kind is the default.
	 */
	unsigned int ctx_seen;
	/* [context]: the last line that set its password, factor or action */
	unsigned int ctx_line[SOTP_MAX_CONTEXTS];
	unsigned int kind_seen;
	unsigned int service_line[SOTP_MAX_SERVICES];
	char service_ctx[SOTP_MAX_SERVICES][SOTP_NAME_MAX];
	unsigned int msg_line[SOTP_NMSG]; /* [messages]: where set */
	char dir[PATH_MAX]; /* the real directory of the file, no link in it */
};

static int perr(struct parser *ps, const char *fmt, ...) SOTP_PRINTF(2, 3);

static int
perr(struct parser *ps, const char *fmt, ...)
{
	va_list ap;
	int n, m;

	n = snprintf(ps->err, ps->errsz, "%s:%u: ", ps->file, ps->line);
	if (n < 0 || (size_t)n >= ps->errsz) {
		if (n > 0)
			sotp_mark_cut(ps->err, ps->errsz, (size_t)n);
		return SOTP_ERR_CONFIG;
	}
	va_start(ap, fmt);
	m = vsnprintf(ps->err + n, ps->errsz - (size_t)n, fmt, ap);
	va_end(ap);
	/* A long key or value named in the message: its cut shows. */
	if (m > 0)
		sotp_mark_cut(ps->err, ps->errsz, (size_t)n + (size_t)m);
	return SOTP_ERR_CONFIG;
}

static void
set_defaults(struct sotp_policy *p)
{
	memset(p, 0, sizeof(*p));
	sotp_strlcpy(p->store, "sqlite:/var/lib/shinkin-otp/shinkin-otp.db",
	    sizeof(p->store));
	sotp_strlcpy(p->master_key, "/etc/shinkin-otp/master.key",
	    sizeof(p->master_key));
	sotp_strlcpy(p->issuer, "shinkin-otp", sizeof(p->issuer));
	p->lang = SOTP_LANG_JA; /* the bank's customers read Japanese */
	p->alg = SOTP_ALG_SHA1;
	p->digits = 6;
	p->period = 30;
	p->window_back = 1;
	p->window_forward = 1;
	p->max_drift = 2;
	p->resync_window = 40;
	p->hotp_look_ahead = 10;
	p->hotp_resync_window = 100;
	p->min_secret_bytes = 16; /* 128 bits, RFC 4226 section 4 R6 */
	p->migration_binding = 1;
	p->pw_method = SOTP_PW_YESCRYPT;
	p->pw_cost = sotp_pw_methods[SOTP_PW_YESCRYPT].default_cost;
	/* accept: the bank's customers come in with the hashes they have */
	p->pw_legacy_refuse = 0;
	p->rehash = 0;
	p->lock_threshold = 5;
	p->lock_duration = 0;
	p->state_lifetime = 120;
	p->max_rounds = 4; /* a registration: 5 questions, 4 challenges */
	p->card_rows = 5;
	p->card_cols = 10;
	p->card_cells = 2;
	p->connect_timeout = SOTP_CONNECT_TIMEOUT_S;
	p->statement_timeout = SOTP_STATEMENT_TIMEOUT_MS;
	p->lock_timeout = SOTP_LOCK_TIMEOUT_MS;
	p->kek = SOTP_KEK_FILE;
	/* p11-kit's proxy: the modules p11-kit is configured with. */
	sotp_strlcpy(p->p11_module, "p11-kit-proxy.so", sizeof(p->p11_module));
	p->key_refresh = 10;
}

/* Names of kinds, contexts and services: [A-Za-z0-9._-], 1..max-1. */
static int
name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n >= max)
		return 0;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("._-", *s) == NULL)
			return 0;
	return 1;
}

/*
 * Makes a relative path relative to the policy file's directory: the
 * real one (ps->dir), so that a policy reached through a symbolic link
 * finds the files beside it, and one named relative to the working
 * directory gives absolute paths that a later chdir cannot move.
 */
static int
resolve_path(struct parser *ps, const char *val, char *out, size_t outsz)
{
	int n;

	if (val[0] == '/')
		n = snprintf(out, outsz, "%s", val);
	else
		n = snprintf(out, outsz, "%s%s%s", ps->dir,
		    strcmp(ps->dir, "/") == 0 ? "" : "/", val);
	if (n < 0 || (size_t)n >= outsz)
		return perr(ps, "path too long");
	return SOTP_OK;
}

/*
 * A value sotp_parse_ll refuses for being zero-padded or -0, refused with
 * that reason: "is not a number from 0 to 10" would puzzle whoever wrote
 * 007. SOTP_OK for any other value, which the caller then parses.
 */
static int
not_padded(struct parser *ps, const char *key, const char *val)
{
	const char *why;

	if ((why = sotp_parse_ll_zero(val)) != NULL)
		return perr(ps, "%s: '%s' %s", key, val, why);
	return SOTP_OK;
}

/*
 * Outside [messages] a value is taken as written: quotes would stay in
 * it. They are refused, so that issuer = "Bank" or master_key = "/etc/x"
 * is never misread.
 */
static int
plain_value(struct parser *ps, const struct option *o, const char *val)
{
	if (val[0] == '"' || val[0] == '\'')
		return perr(ps,
		    "%s: a quoted value; only [messages] texts take quotes: "
		    "write it without them",
		    o->key);
	return SOTP_OK;
}

/*
 * The length of the blank at s: a space or a tab, or the ideographic
 * space (U+3000) that Japanese input gives for a blank; 0 if none.
 */
static size_t
blank_at(const char *s)
{
	if (*s == ' ' || *s == '\t')
		return 1;
	return strncmp(s, "\xe3\x80\x80", 3) == 0 ? 3 : 0;
}

/* The length of the blank that ends s[0..n), 0 if none. */
static size_t
blank_before(const char *s, size_t n)
{
	if (n >= 1 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		return 1;
	return n >= 3 && memcmp(s + n - 3, "\xe3\x80\x80", 3) == 0 ? 3 : 0;
}

/*
 * Where a comment would start in val: a '#' at its start (after the
 * blank that followed the '=') or after a blank in it. NULL if none.
 */
static const char *
comment_in(const char *val)
{
	const char *s;

	if (val[0] == '#')
		return val;
	for (s = val + 1; *s != '\0'; s++)
		if (*s == '#' && blank_before(val, (size_t)(s - val)) != 0)
			return s;
	return NULL;
}

/*
 * In a text in double quotes (from its first quote to its last), a
 * quote followed by blanks and a '#': read as the closing quote and a
 * comment, it would otherwise keep the comment, and its own quotes, in
 * the text. Where that '#' stands, or NULL.
 */
static const char *
comment_after_quote(const char *val, size_t n)
{
	const char *s, *end = val + n - 1;
	size_t b, nb;

	for (s = val + 1; s < end; s++) {
		if (*s != '"')
			continue;
		for (b = 1, nb = 0; (nb = blank_at(s + b)) != 0; b += nb)
			;
		if (b > 1 && s + b < end && s[b] == '#')
			return s + b;
	}
	return NULL;
}

/*
 * A comment takes a line of its own, for every key: a '#' that starts the
 * value or follows a blank in it reads as one, yet would end up in the
 * value (an issuer every authenticator app shows, a path that opens
 * another file, a number that is no number), so it is refused wherever
 * it stands; any other '#' is part of the value. A [messages] text in
 * double quotes keeps one (message_key). A store's text is not shown: a
 * libpq string may hold a password.
 */
static int
no_comment(struct parser *ps, const char *key, const char *val)
{
	const char *hash;

	if ((hash = comment_in(val)) == NULL)
		return SOTP_OK;
	if (ps->sec == SEC_MAIN && strcmp(key, "store") == 0)
		return perr(ps,
		    "store: a '#' %s reads as a comment; a comment takes a "
		    "line of its own",
		    hash == val ? "as the value" : "after a blank");
	return perr(ps,
	    "%s: '%s' %s reads as a comment; a comment takes a line of its "
	    "own",
	    key, hash, hash == val ? "as the value" : "after the value");
}

/* The index of val among names[n], or -1. */
static long long
word_index(const char *const *names, size_t n, const char *val)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(val, names[i]) == 0)
			return (long long)i;
	return -1;
}

static int
set_option(struct parser *ps, const struct option *o, const char *val)
{
	char *base = (char *)ps->p + o->off;
	long long v;
	int rc;

	if ((o->type == V_STR || o->type == V_PATH || o->type == V_METRICS ||
	        o->type == V_STORE || o->type == V_MODULE) &&
	    (rc = plain_value(ps, o, val)) != SOTP_OK)
		return rc;
	switch (o->type) {
	case V_UINT:
		if ((rc = not_padded(ps, o->key, val)) != SOTP_OK)
			return rc;
		if (sotp_parse_ll(val, o->min, o->max, &v) != SOTP_OK)
			return perr(ps,
			    "%s: '%s' is not a number from %u to %u", o->key,
			    val, o->min, o->max);
		*(unsigned int *)(void *)base = (unsigned int)v;
		return SOTP_OK;
	case V_ALG:
		if (sotp_alg_parse(val, (enum sotp_alg *)(void *)base) !=
		    SOTP_OK)
			return perr(ps,
			    "algorithm: '%s' is not sha1, sha256 or sha512",
			    val);
		return SOTP_OK;
	case V_BOOL:
		if (strcmp(val, "yes") != 0 && strcmp(val, "no") != 0)
			return perr(
			    ps, "%s: '%s' is not yes or no", o->key, val);
		*(int *)(void *)base = strcmp(val, "yes") == 0;
		return SOTP_OK;
	case V_PWHASH:
		for (v = 0; v < SOTP_PW_NMETHODS; v++)
			if (strcmp(val, sotp_pw_methods[v].name) == 0)
				break;
		if (v == SOTP_PW_NMETHODS)
			return perr(ps,
			    "hash: '%s' is not yescrypt, sha512crypt or bcrypt",
			    val);
		*(enum sotp_pw_method *)(void *)base = (enum sotp_pw_method)v;
		return SOTP_OK;
	case V_LANG:
		if ((v = word_index(lang_names, SOTP_NLANG, val)) < 0)
			return perr(ps, "language: '%s' is not ja or en", val);
		*(enum sotp_lang *)(void *)base = (enum sotp_lang)v;
		return SOTP_OK;
	case V_LEGACY:
		if ((v = word_index(legacy_names, 2, val)) < 0)
			return perr(ps,
			    "legacy_import: '%s' is not accept or refuse", val);
		*(int *)(void *)base = (int)v;
		return SOTP_OK;
	case V_UNKNOWN:
		if ((v = word_index(unknown_names, 2, val)) < 0)
			return perr(ps,
			    "unknown_contract: '%s' is not hide or reveal",
			    val);
		*(int *)(void *)base = (int)v;
		return SOTP_OK;
	case V_KEK:
		if ((v = word_index(kek_names, 2, val)) < 0)
			return perr(ps, "kek: '%s' is not file or pkcs11", val);
		*(enum sotp_kek_source *)(void *)base = (enum sotp_kek_source)v;
		return SOTP_OK;
	case V_MODULE:
		/*
		 * dlopen() looks a bare name up in the system's library path
		 * (p11-kit-proxy.so); anything else must be absolute, so that
		 * the module loaded never depends on a working directory.
		 */
		if (val[0] != '/' && strchr(val, '/') != NULL)
			return perr(ps,
			    "pkcs11_module: '%s' is neither an absolute path nor a library name",
			    val);
		if (sotp_strlcpy(base, val, o->size) >= o->size)
			return perr(ps, "%s: value too long", o->key);
		return SOTP_OK;
	case V_SLOT:
		if ((rc = not_padded(ps, "pkcs11_slot", val)) != SOTP_OK)
			return rc;
		if (sotp_parse_ll(val, 0, (long long)UINT32_MAX, &v) != SOTP_OK)
			return perr(ps,
			    "pkcs11_slot: '%s' is not a slot number from 0 to %lu",
			    val, (unsigned long)UINT32_MAX);
		ps->p->p11_slot = (unsigned long)v;
		ps->p->p11_has_slot = 1;
		return SOTP_OK;
	case V_STR:
		if (sotp_strlcpy(base, val, o->size) >= o->size)
			return perr(ps, "%s: value too long", o->key);
		return SOTP_OK;
	case V_PATH:
		return resolve_path(ps, val, base, o->size);
	case V_METRICS:
		/* "none": no counters; else a path like the others. */
		if (strcmp(val, "none") == 0) {
			base[0] = '\0';
			return SOTP_OK;
		}
		/*
		 * A word (None, off, no) would be taken for a file of that
		 * name beside the policy, and counting would go on: a value
		 * with neither a '/' nor a '.' is no file name.
		 */
		if (strpbrk(val, "/.") == NULL)
			return perr(ps,
			    "metrics: '%s' is neither none nor a file name: "
			    "write none to count nothing, or a path with a '/' "
			    "or a '.' (such as /var/lib/shinkin-otp/metrics)",
			    val);
		return resolve_path(ps, val, base, o->size);
	case V_STORE:
		/*
		 * A PostgreSQL URL or conninfo goes to libpq as written: it
		 * is not a path, and only libpq knows its full grammar.
		 */
		if (strncmp(val, "postgresql:", 11) == 0 ||
		    strncmp(val, "postgres:", 9) == 0) {
			if (strchr(val, ':')[1] == '\0')
				return perr(ps,
				    "store: %s needs a connection URL", val);
			if (sotp_strlcpy(base, val, o->size) >= o->size)
				return perr(ps, "store: value too long");
			return SOTP_OK;
		}
		/* Only the scheme: an unknown URL may still hold a password. */
		if (strncmp(val, "sqlite:", 7) != 0)
			return perr(ps,
			    "store: '%.*s' is not a supported store URL scheme "
			    "(sqlite:PATH or postgresql://...)",
			    (int)strcspn(val, ":"), val);
		if (val[7] == '\0')
			return perr(ps, "store: sqlite: needs a file path");
		/* Else a relative path starting with a blank: another file. */
		if (blank_at(val + 7) != 0)
			return perr(ps,
			    "store: a blank after sqlite: (write sqlite:PATH)");
		memcpy(base, "sqlite:", 7);
		return resolve_path(ps, val + 7, base + 7, o->size - 7);
	}
	return perr(ps, "internal: bad option type");
}

/*
 * "YYYY-MM-DD" (with_time 0) or "YYYY-MM-DDTHH:MM:SSZ" into *tm, UTC.
 * strptime skips blanks inside fields and takes any day 1..31 in any
 * month (and second 60), and timegm would then roll "2027-02-30" over to
 * March 2: demand the exact shape and a moment that survives
 * normalisation. 1970 onwards, as sunset_end 0 means "no sunset".
 */
static int
utc_parse(const char *s, int with_time, struct tm *tm)
{
	const char *shape = with_time ? "dddd-dd-ddTdd:dd:ddZ" : "dddd-dd-dd";
	struct tm chk;
	const char *end;
	size_t i;

	memset(tm, 0, sizeof(*tm));
	if (strlen(s) != strlen(shape))
		return SOTP_ERR_BAD_INPUT;
	for (i = 0; shape[i] != '\0'; i++)
		if (shape[i] == 'd' ? !isdigit((unsigned char)s[i])
		                    : s[i] != shape[i])
			return SOTP_ERR_BAD_INPUT;
	end = strptime(s, with_time ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d", tm);
	if (end == NULL || *end != '\0' || tm->tm_year < 70)
		return SOTP_ERR_BAD_INPUT;
	chk = *tm;
	if (timegm(&chk) == (time_t)-1 || chk.tm_year != tm->tm_year ||
	    chk.tm_mon != tm->tm_mon || chk.tm_mday != tm->tm_mday ||
	    chk.tm_hour != tm->tm_hour || chk.tm_min != tm->tm_min ||
	    chk.tm_sec != tm->tm_sec)
		return SOTP_ERR_BAD_INPUT;
	return SOTP_OK;
}

/* "YYYY-MM-DD" -> the first second (UTC) of the following day. */
static int
parse_date_end(const char *s, int64_t *out)
{
	struct tm tm;
	time_t t;

	if (utc_parse(s, 0, &tm) != SOTP_OK)
		return SOTP_ERR_BAD_INPUT;
	tm.tm_mday += 1;
	if ((t = timegm(&tm)) == (time_t)-1)
		return SOTP_ERR_BAD_INPUT;
	*out = (int64_t)t;
	return SOTP_OK;
}

int
sotp_time_parse(const char *s, int64_t *out)
{
	struct tm tm;
	long long v;
	time_t t;

	if (out != NULL)
		*out = 0;
	if (s == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (strchr(s, '-') == NULL) {
		if (sotp_parse_ll(s, 0, INT64_MAX, &v) != SOTP_OK)
			return SOTP_ERR_BAD_INPUT;
		*out = (int64_t)v;
		return SOTP_OK;
	}
	if (utc_parse(s, strlen(s) > 10, &tm) != SOTP_OK ||
	    (t = timegm(&tm)) == (time_t)-1)
		return SOTP_ERR_BAD_INPUT;
	*out = (int64_t)t;
	return SOTP_OK;
}

/* Keys of [kind] and [context] may be set once per section, as others. */
static int
once(struct parser *ps, unsigned int *seen, unsigned int bit, const char *key)
{
	if (*seen & bit)
		return perr(ps, "'%s' is set twice", key);
	*seen |= bit;
	return SOTP_OK;
}

static int
kind_key(struct parser *ps, const char *key, const char *val)
{
	struct sotp_kind *k = &ps->p->kinds[ps->p->nkinds - 1];
	long long v;
	int rc;

	if (strcmp(key, "sunset") == 0) {
		if ((rc = once(ps, &ps->kind_seen, 1, key)) != SOTP_OK)
			return rc;
		if (parse_date_end(val, &k->sunset_end) != SOTP_OK)
			return perr(
			    ps, "sunset: '%s' is not a date YYYY-MM-DD", val);
		sotp_strlcpy(k->sunset, val, sizeof(k->sunset));
	} else if (strcmp(key, "warn_days") == 0) {
		if ((rc = once(ps, &ps->kind_seen, 2, key)) != SOTP_OK)
			return rc;
		if ((rc = not_padded(ps, key, val)) != SOTP_OK)
			return rc;
		if (sotp_parse_ll(val, 0, 3650, &v) != SOTP_OK)
			return perr(ps,
			    "warn_days: '%s' is not a number from 0 to 3650",
			    val);
		k->warn_days = (unsigned int)v;
	} else if (strcmp(key, "serial_case") == 0) {
		if ((rc = once(ps, &ps->kind_seen, 16, key)) != SOTP_OK)
			return rc;
		if (strcmp(val, "sensitive") == 0)
			k->serial_exact = 1;
		else if (strcmp(val, "insensitive") == 0)
			k->serial_exact = 0;
		else
			return perr(ps,
			    "serial_case: '%s' is not sensitive or insensitive",
			    val);
	} else if (strcmp(key, "default") == 0) {
		if ((rc = once(ps, &ps->kind_seen, 4, key)) != SOTP_OK)
			return rc;
		if (strcmp(val, "yes") != 0 && strcmp(val, "no") != 0)
			return perr(ps, "default: '%s' is not yes or no", val);
		if (strcmp(val, "yes") == 0) {
			if (ps->kind_seen & 8)
				return perr(ps,
				    "default: a second kind is marked default");
			ps->kind_seen |= 8;
			ps->p->default_kind = ps->p->nkinds - 1;
		}
	} else
		return perr(ps, "unknown key '%s' in [kind %s]", key, k->name);
	return SOTP_OK;
}

static int
context_key(struct parser *ps, const char *key, const char *val)
{
	struct sotp_context_def *c = &ps->p->contexts[ps->p->ncontexts - 1];
	int rc;

	ps->ctx_line[ps->p->ncontexts - 1] = ps->line;
	if (strcmp(key, "password") == 0) {
		if ((rc = once(ps, &ps->ctx_seen, 1, key)) != SOTP_OK)
			return rc;
		if (strcmp(val, "required") == 0)
			c->password = 1;
		else if (strcmp(val, "none") == 0)
			c->password = 0;
		else
			return perr(
			    ps, "password: '%s' is not required or none", val);
	} else if (strcmp(key, "factor") == 0) {
		if ((rc = once(ps, &ps->ctx_seen, 2, key)) != SOTP_OK)
			return rc;
		if (strcmp(val, "otp") == 0)
			c->second = SOTP_2F_OTP;
		else if (strcmp(val, "card") == 0)
			c->second = SOTP_2F_CARD;
		else if (strcmp(val, "none") == 0)
			c->second = SOTP_2F_NONE;
		else if (strcmp(val, "user") == 0)
			c->second = SOTP_2F_USER;
		else
			return perr(ps,
			    "factor: unknown factor '%s' (otp, card, none "
			    "or user)",
			    val);
	} else if (strcmp(key, "action") == 0) {
		if ((rc = once(ps, &ps->ctx_seen, 4, key)) != SOTP_OK)
			return rc;
		if (strcmp(val, "authenticate") == 0)
			c->action = SOTP_ACT_AUTH;
		else if (strcmp(val, "register") == 0)
			c->action = SOTP_ACT_REGISTER;
		else if (strcmp(val, "unregister") == 0)
			c->action = SOTP_ACT_UNREGISTER;
		else
			return perr(ps,
			    "action: '%s' is not authenticate, register or "
			    "unregister",
			    val);
	} else
		return perr(
		    ps, "unknown key '%s' in [context %s]", key, c->name);
	return SOTP_OK;
}

static int
service_key(struct parser *ps, const char *key, const char *val)
{
	struct sotp_policy *p = ps->p;
	size_t i;

	if (!name_ok(key, SOTP_ID_MAX))
		return perr(ps, "'%s' is not a valid service name", key);
	for (i = 0; i < p->nservices; i++)
		if (strcmp(p->services[i].name, key) == 0)
			return perr(ps, "service '%s' is mapped twice", key);
	if (p->nservices == SOTP_MAX_SERVICES)
		return perr(
		    ps, "too many services (at most %d)", SOTP_MAX_SERVICES);
	if (sotp_strlcpy(ps->service_ctx[p->nservices], val, SOTP_NAME_MAX) >=
	    SOTP_NAME_MAX)
		return perr(ps, "context name too long");
	sotp_strlcpy(p->services[p->nservices].name, key, SOTP_ID_MAX);
	ps->service_line[p->nservices] = ps->line;
	p->nservices++;
	return SOTP_OK;
}

/*
 * A [messages] override: the key names a catalog row, the value is its
 * text, in double quotes when it starts or ends with a blank. The checks
 * that need the whole file (length once expanded) run in finish().
 */
static int
message_key(struct parser *ps, const char *key, const char *val)
{
	const char *hash;
	size_t i, b, n = strlen(val);
	int row;

	if ((row = sotp_msg_find(key)) < 0)
		return perr(ps, "unknown message '%s' in [messages]", key);
	if (ps->msg_line[row] != 0)
		return perr(ps, "'%s' is set twice", key);
	/* A forgotten closing quote would show the opening one. */
	if (val[0] == '"' && (n < 2 || val[n - 1] != '"') &&
	    comment_in(val) == NULL)
		return perr(ps,
		    "%s: an opening quote without its closing one at the end "
		    "of the text",
		    key);
	if (n >= 2 && val[0] == '"' && val[n - 1] == '"') {
		if ((hash = comment_after_quote(val, n)) != NULL)
			return perr(ps,
			    "%s: '%s' after a closing quote reads as a "
			    "comment; a comment takes a line of its own",
			    key, hash);
		val++;
		n -= 2;
	} else if ((hash = comment_in(val)) != NULL)
		/* Unquoted: a '#' first or after a blank is a comment. */
		return perr(ps,
		    "%s: '%s' %s reads as a comment; a comment takes a line "
		    "of its own (put the text in double quotes to keep it)",
		    key, hash, hash == val ? "as the text" : "after the text");
	else if (n >= 2 && val[0] == '\'' && val[n - 1] == '\'')
		/*
		 * Read as quotes everywhere else (and refused there), single
		 * quotes would reach the customer here: CARD_CELL_SEP = ', '
		 * would show them in every card prompt.
		 */
		return perr(ps,
		    "%s: a text in single quotes, which would show; only "
		    "double quotes delimit a text",
		    key);
	if (n == 0)
		return perr(ps, "%s: empty message", key);
	for (i = 0, b = 0; i < n && (b = blank_at(val + i)) != 0; i += b)
		;
	if (i >= n)
		return perr(ps, "%s: a text of blanks only", key);
	if (n > SOTP_REPLY_MAX)
		return perr(ps,
		    "%s: %zu octets; one RADIUS Reply-Message holds %d", key, n,
		    SOTP_REPLY_MAX);
	memcpy(ps->p->msg[row], val, n);
	ps->p->msg[row][n] = '\0';
	ps->msg_line[row] = ps->line;
	return SOTP_OK;
}

static int
keyval(struct parser *ps, const char *key, const char *val)
{
	size_t i;
	int rc;

	/* Named, so that nobody takes "unknown key" for a typo. */
	if (ps->sec == SEC_KEY && strcmp(key, "pkcs11_pin") == 0)
		return perr(ps,
		    "pkcs11_pin: a PIN is never read from the policy; write it to a file (mode 0600) and name that with pkcs11_pin_file");
	if (ps->sec != SEC_MESSAGES &&
	    (rc = no_comment(ps, key, val)) != SOTP_OK)
		return rc;
	switch (ps->sec) {
	case SEC_MESSAGES:
		return message_key(ps, key, val);
	case SEC_KIND:
		return kind_key(ps, key, val);
	case SEC_CONTEXT:
		return context_key(ps, key, val);
	case SEC_SERVICES:
		return service_key(ps, key, val);
	default:
		break;
	}
	for (i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		if (options[i].sec != ps->sec ||
		    strcmp(options[i].key, key) != 0)
			continue;
		if (ps->seen[i])
			return perr(ps, "'%s' is set twice", key);
		ps->seen[i] = ps->line;
		return set_option(ps, &options[i], val);
	}
	/* Issue 12 set the lock wait here, in seconds; issue 14 in [store]. */
	if (ps->sec == SEC_MAIN && strcmp(key, "lock_timeout") == 0)
		return perr(
		    ps, "'lock_timeout' is a [store] key, in milliseconds");
	if (ps->sec == SEC_MAIN)
		return perr(ps, "unknown key '%s'", key);
	return perr(
	    ps, "unknown key '%s' in [%s]", key, section_names[ps->sec]);
}

static int
section(struct parser *ps, char *s)
{
	struct sotp_policy *p = ps->p;
	char *end, *arg;
	size_t i, b;

	if ((end = strchr(s, ']')) == NULL || end[1] != '\0')
		return perr(ps, "malformed section header");
	/* "[ otp ]" would otherwise be reported as the section "[]". */
	if (blank_at(s + 1) != 0 || blank_before(s, (size_t)(end - s)) != 0)
		return perr(ps,
		    "malformed section header: no blank after '[' or before "
		    "']'");
	*end = '\0';
	s++;
	/*
	 * The section and its name are parted by blanks (blank_at), the
	 * ideographic space included, as around keys and values: Japanese
	 * input gives "[kind　mobile]" for "[kind mobile]". (A tab never
	 * gets here: a header holding one is refused as a control
	 * character.)
	 */
	for (arg = s; *arg != '\0' && blank_at(arg) == 0; arg++)
		;
	if (*arg == '\0')
		arg = NULL;
	else {
		b = blank_at(arg);
		*arg = '\0';
		arg += b;
		while ((b = blank_at(arg)) != 0)
			arg += b;
	}
	for (i = 1; i < sizeof(section_names) / sizeof(section_names[0]); i++)
		if (strcmp(s, section_names[i]) == 0)
			break;
	if (i == sizeof(section_names) / sizeof(section_names[0]))
		return perr(ps, "unknown section [%s]", s);
	ps->sec = (enum section)i;
	if (ps->sec != SEC_KIND && ps->sec != SEC_CONTEXT) {
		if (arg != NULL)
			return perr(ps, "[%s] takes no name", s);
		return SOTP_OK;
	}
	if (arg == NULL || !name_ok(arg, SOTP_NAME_MAX))
		return perr(ps,
		    "[%s] needs a name of 1-32 letters, digits, "
		    "'.', '_' or '-'",
		    s);
	if (ps->sec == SEC_KIND) {
		if (sotp_policy_kind(p, arg) != NULL)
			return perr(ps, "kind '%s' is defined twice", arg);
		if (p->nkinds == SOTP_MAX_KINDS)
			return perr(ps, "too many kinds");
		ps->kind_seen &= 8;
		memset(&p->kinds[p->nkinds], 0, sizeof(p->kinds[0]));
		sotp_strlcpy(p->kinds[p->nkinds++].name, arg, SOTP_NAME_MAX);
	} else {
		if (sotp_policy_context(p, arg) != NULL)
			return perr(ps, "context '%s' is defined twice", arg);
		if (p->ncontexts == SOTP_MAX_CONTEXTS)
			return perr(ps, "too many contexts");
		ps->ctx_seen = 0;
		p->contexts[p->ncontexts] =
		    (struct sotp_context_def){.password = 1,
		        .second = SOTP_2F_OTP,
		        .action = SOTP_ACT_AUTH};
		sotp_strlcpy(
		    p->contexts[p->ncontexts++].name, arg, SOTP_NAME_MAX);
	}
	return SOTP_OK;
}

/*
 * s without the blanks (blank_at) at its ends, nor the line end. The
 * ideographic space is a blank here as ' ' is, so that a key or a value
 * typed with one around it reads as the one written without.
 */
static char *
trim(char *s)
{
	size_t n, b;

	while ((b = blank_at(s)) != 0)
		s += b;
	n = strlen(s);
	for (;;) {
		if (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
			n--;
		else if ((b = blank_before(s, n)) != 0)
			n -= b;
		else
			break;
	}
	s[n] = '\0';
	return s;
}

/* The first character of s that a screen would not show as it is. */
static const char *
hazard_in(const char *s, unsigned int *cp)
{
	const char *what;

	for (; *s != '\0'; s++)
		if ((what = sotp_text_hazard(s, cp)) != NULL)
			return what;
	return NULL;
}

static int
parse_line(struct parser *ps, char *line)
{
	char *s, *eq, *key, *val;
	const char *what;
	unsigned int cp;
	size_t n = strlen(line);

	/* Catalogs and overrides are UTF-8, and so is the whole file. */
	if (!sotp_utf8_valid(line, strlen(line)))
		return perr(ps, "not valid UTF-8");
	/*
	 * An editor on Windows may save the file with a byte order mark:
	 * invisible, it would otherwise be reported as a bad line.
	 */
	if (strncmp(line, "\xef\xbb\xbf", 3) == 0)
		return perr(ps,
		    "a byte order mark (U+FEFF) starts the line: "
		    "save the file as UTF-8 without one");
	/*
	 * LF or CR LF ends a line. A CR anywhere else would hide what
	 * follows it on a screen, and a file saved with CR line ends would
	 * read as one line: its first key's value, or one long comment.
	 */
	if (n > 0 && line[n - 1] == '\r')
		line[n - 1] = '\0';
	if (strchr(line, '\r') != NULL)
		return perr(ps,
		    "a carriage return (U+000D) inside the line: save the file "
		    "with LF or CR LF line ends");
	s = trim(line);
	if (*s == '\0' || *s == '#')
		return SOTP_OK;
	/*
	 * What the operator cannot see in the file is refused with its
	 * code point: it would make a name or a path other than the one
	 * read, or an issuer that shows otherwise. [messages] texts have
	 * their own check, naming the message (finish()).
	 */
	if (*s == '[') {
		if ((what = hazard_in(s, &cp)) != NULL)
			return perr(ps, "the section header holds %s (U+%04X)",
			    what, cp);
		return section(ps, s);
	}
	if ((eq = strchr(s, '=')) == NULL)
		return perr(ps, "expected 'key = value' or '[section]'");
	*eq = '\0';
	key = trim(s);
	val = trim(eq + 1);
	if (*key == '\0')
		return perr(ps, "missing key before '='");
	if ((what = hazard_in(key, &cp)) != NULL)
		return perr(ps, "the key holds %s (U+%04X)", what, cp);
	if (*val == '\0')
		return perr(ps, "%s: missing value", key);
	if (ps->sec != SEC_MESSAGES && (what = hazard_in(val, &cp)) != NULL)
		return perr(
		    ps, "%s: the value holds %s (U+%04X)", key, what, cp);
	return keyval(ps, key, val);
}

/*
 * The line of the last of keys (NULL-ended) set in section sec: a check
 * across keys blames the one that tipped it over. Defaults alone always
 * pass, so one of them was set.
 */
static unsigned int
last_set(const struct parser *ps, enum section sec, ...)
{
	const char *key;
	unsigned int line = 0;
	size_t i;
	va_list ap;

	va_start(ap, sec);
	while ((key = va_arg(ap, const char *)) != NULL)
		for (i = 0; i < sizeof(options) / sizeof(options[0]); i++)
			if (options[i].sec == sec &&
			    strcmp(options[i].key, key) == 0 &&
			    ps->seen[i] > line)
				line = ps->seen[i];
	va_end(ap);
	return line != 0 ? line : ps->line;
}

/* Was key of sec set in the file? */
static int
was_set(const struct parser *ps, enum section sec, const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (options[i].sec == sec && strcmp(options[i].key, key) == 0)
			return ps->seen[i] != 0;
	return 0;
}

/* [password] cost within its method's range; unset, the default. */
static int
check_password(struct parser *ps)
{
	struct sotp_policy *p = ps->p;
	const struct sotp_pw_method_def *m = &sotp_pw_methods[p->pw_method];

	if (!was_set(ps, SEC_PASSWORD, "cost")) {
		p->pw_cost = m->default_cost;
		return SOTP_OK;
	}
	if (p->pw_cost < m->min_cost || p->pw_cost > m->max_cost) {
		ps->line = last_set(
		    ps, SEC_PASSWORD, "hash", "cost", (const char *)NULL);
		return perr(ps, "[password] cost %u is outside %s's %u to %u",
		    p->pw_cost, m->name, m->min_cost, m->max_cost);
	}
	return SOTP_OK;
}

/*
 * The questions a context can ask, one per challenge round after the
 * first: password, serial, code, login choice and card digits for a
 * registration (the card when the context or the contract's own choice
 * asks for it), fewer for the others.
 */
static unsigned int
questions(const struct sotp_context_def *c)
{
	unsigned int n = c->password ? 1 : 0;

	if (c->action == SOTP_ACT_REGISTER)
		return n + 3 +
		    (c->second == SOTP_2F_CARD || c->second == SOTP_2F_USER);
	if (c->action == SOTP_ACT_UNREGISTER)
		return n + 1;
	return n + (c->second != SOTP_2F_NONE);
}

/*
 * A context that authenticates must ask for something: without the
 * password and without a second factor (none, or the contract's own
 * choice, which may be none) it would accept anyone who names a contract.
 */
static int
check_asks(struct parser *ps)
{
	const struct sotp_context_def *c;
	size_t i;

	for (i = 0; i < ps->p->ncontexts; i++) {
		c = &ps->p->contexts[i];
		if (c->action != SOTP_ACT_AUTH || c->password ||
		    (c->second != SOTP_2F_NONE && c->second != SOTP_2F_USER))
			continue;
		ps->line = ps->ctx_line[i];
		return perr(ps,
		    "[context %s] asks for nothing%s: password = none with "
		    "factor = %s would accept anyone who names a contract",
		    c->name,
		    c->second == SOTP_2F_USER
		        ? " from a contract whose login choice is none"
		        : "",
		    c->second == SOTP_2F_USER ? "user" : "none");
	}
	return SOTP_OK;
}

/* max_rounds must let every context finish, registration included. */
static int
check_rounds(struct parser *ps)
{
	const struct sotp_policy *p = ps->p;
	unsigned int n;
	size_t i;

	for (i = 0; i < p->ncontexts; i++) {
		n = questions(&p->contexts[i]);
		if (n > 0 && n - 1 > p->max_rounds) {
			ps->line = last_set(
			    ps, SEC_STATE, "max_rounds", (const char *)NULL);
			return perr(ps,
			    "[state] max_rounds = %u cannot finish [context "
			    "%s]: it asks %u questions, %u challenge rounds",
			    p->max_rounds, p->contexts[i].name, n, n - 1);
		}
	}
	return SOTP_OK;
}

/*
 * Every text the customer can read, catalog or override, fits one RADIUS
 * Reply-Message once expanded with the longest values this policy allows
 * (its card cells, its kind names): checked here, never cut on the wire.
 */
static int
check_messages(struct parser *ps)
{
	char why[256];
	unsigned int line = 0;
	size_t i;
	int row;

	for (row = 0; row < SOTP_NMSG; row++) {
		if (sotp_msg_check(ps->p, row, why, sizeof(why)) == 0)
			continue;
		/*
		 * A catalog text that no longer fits grew through the texts
		 * or the card it embeds: blame the last line that set one.
		 */
		line = ps->msg_line[row];
		for (i = 0; line == 0 && i < SOTP_NMSG; i++)
			if (ps->msg_line[i] > line)
				line = ps->msg_line[i];
		for (i = 0; i < sizeof(options) / sizeof(options[0]); i++)
			if (ps->msg_line[row] == 0 &&
			    options[i].sec == SEC_CARD && ps->seen[i] > line)
				line = ps->seen[i];
		if (line != 0)
			ps->line = line;
		return perr(ps, "[messages] %s", why);
	}
	return SOTP_OK;
}

/*
 * A PKCS#11 key-encryption key is named in full, or not at all. Named
 * under kek = file, the token would not be used, silently: whoever wrote
 * it but forgot kek = pkcs11 would believe the keys in the HSM.
 */
static int
check_kek(struct parser *ps)
{
	const struct sotp_policy *p = ps->p;
	const struct option *o, *first = NULL;
	unsigned int line = 0;
	size_t i;

	for (i = 0; p->kek == SOTP_KEK_FILE &&
	     i < sizeof(options) / sizeof(options[0]);
	     i++) {
		o = &options[i];
		/* The module alone names no token (and the dump prints it). */
		if (o->sec == SEC_KEY && strncmp(o->key, "pkcs11_", 7) == 0 &&
		    o->type != V_MODULE && ps->seen[i] != 0 &&
		    (line == 0 || ps->seen[i] < line)) {
			line = ps->seen[i];
			first = o;
		}
	}
	if (first != NULL) {
		ps->line = line;
		return perr(ps,
		    "[key] %s is set, but kek = file does not use it: set "
		    "kek = pkcs11, or remove %s",
		    first->key, first->key);
	}
	if (p->kek != SOTP_KEK_PKCS11 ||
	    (p->p11_token[0] != '\0' && p->p11_key[0] != '\0' &&
	        p->p11_pin_file[0] != '\0'))
		return SOTP_OK;
	ps->line = last_set(ps, SEC_KEY, "kek", (const char *)NULL);
	return perr(ps,
	    "[key] kek = pkcs11 needs pkcs11_token, pkcs11_key and pkcs11_pin_file");
}

/* Checks that need the whole file: service targets, window width. */
static int
finish(struct parser *ps)
{
	struct sotp_policy *p = ps->p;
	size_t i, j;
	int rc;

	if (p->ncontexts == 0) {
		memcpy(p->contexts, default_contexts, sizeof(default_contexts));
		p->ncontexts =
		    sizeof(default_contexts) / sizeof(default_contexts[0]);
	}
	if (p->nkinds == 0) {
		sotp_strlcpy(p->kinds[0].name, "mobile", SOTP_NAME_MAX);
		p->nkinds = 1;
	}
	for (i = 0; i < p->nservices; i++) {
		for (j = 0; j < p->ncontexts; j++)
			if (strcmp(p->contexts[j].name, ps->service_ctx[i]) ==
			    0)
				break;
		if (j == p->ncontexts) {
			ps->line = ps->service_line[i];
			return perr(ps,
			    "service '%s' is mapped to unknown context '%s'",
			    p->services[i].name, ps->service_ctx[i]);
		}
		p->services[i].context = (int)j;
	}
	/* A code must not outlive two minutes (the bank's rule). */
	if ((p->window_back + p->window_forward + 1) * p->period >= 120) {
		ps->line = last_set(ps, SEC_OTP, "period", "window_back",
		    "window_forward", (const char *)NULL);
		return perr(ps,
		    "[otp] window_back + window_forward + 1 steps of %u s "
		    "let a code live %u s; it must stay under 120 s",
		    p->period,
		    (p->window_back + p->window_forward + 1) * p->period);
	}
	if ((rc = check_password(ps)) != SOTP_OK)
		return rc;
	/*
	 * A right answer moves the question to other cells (engine.c,
	 * reseal_card): a card of one cell has no other to move to.
	 */
	if (p->card_rows * p->card_cols < 2) {
		ps->line = last_set(
		    ps, SEC_CARD, "rows", "columns", (const char *)NULL);
		return perr(ps,
		    "[card] rows x columns is 1: a card needs at least 2 cells, "
		    "so that a right answer moves the question to others");
	}
	if (p->card_cells > p->card_rows * p->card_cols) {
		ps->line = last_set(ps, SEC_CARD, "rows", "columns", "cells",
		    (const char *)NULL);
		return perr(ps, "[card] cells exceeds rows x columns");
	}
	if ((rc = check_asks(ps)) != SOTP_OK ||
	    (rc = check_rounds(ps)) != SOTP_OK)
		return rc;
	if ((rc = check_kek(ps)) != SOTP_OK)
		return rc;
	return check_messages(ps);
}

/*
 * The directories from dir up to "/": whoever may write one of them may
 * put a policy of his own in place of the file (a rename needs no write
 * access to the file itself). Each must belong to root or to this
 * process's user, and be writable by nobody else, unless sticky (as
 * /tmp is: there only a file's owner may rename or remove it). dir is
 * a real path (no symbolic link in it).
 */
static int
policy_dirs_safe(const char *path, const char *dir, char *err, size_t errsz)
{
	char d[PATH_MAX];
	struct stat st;

	sotp_strlcpy(d, dir, sizeof(d)); /* dir is a realpath */
	for (;;) {
		if (stat(d, &st) != 0) {
			sotp_errf(err, errsz,
			    "%s: cannot stat its directory %s: %s", path, d,
			    strerror(errno));
			return SOTP_ERR_CONFIG;
		}
		if (st.st_uid != 0 && st.st_uid != geteuid()) {
			sotp_errf(err, errsz,
			    "%s: its directory %s is owned by uid %u, neither "
			    "root nor this process's user (uid %u): refused",
			    path, d, (unsigned int)st.st_uid,
			    (unsigned int)geteuid());
			return SOTP_ERR_CONFIG;
		}
		if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0) {
			sotp_errf(err, errsz,
			    "%s: its directory %s is writable by group or "
			    "others (mode %04o), who could replace the policy: "
			    "refused; chmod go-w it",
			    path, d, (unsigned int)(st.st_mode & 07777));
			return SOTP_ERR_CONFIG;
		}
		if (strcmp(d, "/") == 0)
			return SOTP_OK;
		(void)sotp_dir_of(d, d, sizeof(d));
	}
}

/* The real path of the directory that holds path (a link, not its target). */
static int
real_dir_of(const char *path, char out[PATH_MAX])
{
	char d[PATH_MAX];

	if (sotp_dir_of(path, d, sizeof(d)) != 0)
		return -1;
	return realpath(d, out) == NULL ? -1 : 0;
}

/*
 * The policy says what a login asks (a context may ask no code, or no
 * password) and names the store and the key, and the PAM module reads it
 * as root: a file that someone other than root or this process's user
 * may write, or replace through its directory (or a symbolic link's),
 * would let that someone open every login. Refused, as the master key's
 * loader refuses a loose key (seal.c). The file's real directory, which
 * its relative paths are taken from, goes to dir.
 */
static int
policy_file_safe(
    FILE *f, const char *path, char dir[PATH_MAX], char *err, size_t errsz)
{
	char real[PATH_MAX], link[PATH_MAX];
	struct stat st;
	int rc, islink;

	if (fstat(fileno(f), &st) != 0) {
		sotp_errf(err, errsz, "%s: cannot stat policy file: %s", path,
		    strerror(errno));
		return SOTP_ERR_CONFIG;
	}
	if (!S_ISREG(st.st_mode)) {
		sotp_errf(err, errsz, "%s: not a regular file", path);
		return SOTP_ERR_CONFIG;
	}
	if ((st.st_mode & 022) != 0) {
		sotp_errf(err, errsz,
		    "%s: writable by group or others (mode %04o): refused; "
		    "chmod go-w it",
		    path, (unsigned int)(st.st_mode & 07777));
		return SOTP_ERR_CONFIG;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		sotp_errf(err, errsz,
		    "%s: owned by uid %u, neither root nor this process's "
		    "user (uid %u): refused; chown root it",
		    path, (unsigned int)st.st_uid, (unsigned int)geteuid());
		return SOTP_ERR_CONFIG;
	}
	/* The file's own directories, then a symbolic link's. */
	islink = lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
	if (realpath(path, real) == NULL ||
	    (islink && real_dir_of(path, link) != 0)) {
		sotp_errf(err, errsz, "%s: cannot resolve its path: %s", path,
		    strerror(errno));
		return SOTP_ERR_CONFIG;
	}
	(void)sotp_dir_of(real, real, sizeof(real));
	sotp_strlcpy(dir, real, PATH_MAX);
	if ((rc = policy_dirs_safe(path, real, err, errsz)) != SOTP_OK)
		return rc;
	return islink ? policy_dirs_safe(path, link, err, errsz) : SOTP_OK;
}

/*
 * The next line of f into buf[bufsz], without its '\n'; *got 0 at the
 * end of the file. fgets would stop at a NUL (the rest of its line read
 * as a new one, or dropped on the last line) and could not tell a line
 * cut at the buffer's end from a last line without a '\n'.
 */
static int
read_line(struct parser *ps, FILE *f, char *buf, size_t bufsz, int *got)
{
	size_t n = 0;
	int c;

	*got = 0;
	if ((c = getc(f)) == EOF)
		return ferror(f) ? perr(ps, "read error") : SOTP_OK;
	ps->line++;
	*got = 1;
	for (; c != EOF && c != '\n'; c = getc(f)) {
		if (c == '\0')
			return perr(ps, "a NUL byte in the line");
		if (n + 1 >= bufsz)
			return perr(ps, "line too long");
		buf[n++] = (char)c;
	}
	if (ferror(f))
		return perr(ps, "read error");
	buf[n] = '\0';
	return SOTP_OK;
}

int
sotp_policy_read(
    const char *path, struct sotp_policy *p, char *err, size_t errsz)
{
	struct parser *ps = NULL;
	FILE *f = NULL;
	char line[2048];
	int rc = SOTP_ERR_INTERNAL, fd = -1, got;

	if (path == NULL || p == NULL || err == NULL)
		return SOTP_ERR_INVALID_ARG;
	set_defaults(p);
	if ((ps = calloc(1, sizeof(*ps))) == NULL)
		return SOTP_ERR_NOMEM;
	ps->p = p;
	ps->file = path;
	ps->err = err;
	ps->errsz = errsz;
	if (sotp_strlcpy(p->path, path, sizeof(p->path)) >= sizeof(p->path)) {
		rc = perr(ps, "path too long");
		goto out;
	}
	/*
	 * O_NONBLOCK: a FIFO at the path would hang the open (and the login
	 * or the radiusd thread with it); it opens at once and is refused as
	 * not a regular file. A regular file reads the same either way.
	 */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) <
	        0 ||
	    (f = fdopen(fd, "r")) == NULL) {
		sotp_errf(err, errsz, "%s: cannot read policy file: %s", path,
		    strerror(errno));
		if (fd >= 0)
			close(fd);
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	if ((rc = policy_file_safe(f, path, ps->dir, err, errsz)) != SOTP_OK)
		goto out;
	for (;;) {
		if ((rc = read_line(ps, f, line, sizeof(line), &got)) !=
		    SOTP_OK)
			goto out;
		if (!got)
			break;
		if ((rc = parse_line(ps, line)) != SOTP_OK)
			goto out;
	}
	ps->line++;
	if ((rc = finish(ps)) != SOTP_OK)
		goto out;
	rc = SOTP_OK;
out:
	if (f != NULL)
		fclose(f);
	free(ps);
	return rc;
}

const struct sotp_kind *
sotp_policy_kind(const struct sotp_policy *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->nkinds; i++)
		if (strcmp(p->kinds[i].name, name) == 0)
			return &p->kinds[i];
	return NULL;
}

const struct sotp_context_def *
sotp_policy_context(const struct sotp_policy *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->ncontexts; i++)
		if (strcmp(p->contexts[i].name, name) == 0)
			return &p->contexts[i];
	return NULL;
}

int
sotp_policy_context_for(
    const struct sotp_ctx *ctx, const char *service, const char **context)
{
	const struct sotp_policy *p;
	size_t i;

	if (ctx == NULL || service == NULL || context == NULL)
		return SOTP_ERR_INVALID_ARG;
	*context = NULL;
	if (!ctx->have_policy)
		return SOTP_ERR_CONFIG;
	p = &ctx->pol;
	for (i = 0; i < p->nservices; i++) {
		if (strcmp(p->services[i].name, service) == 0) {
			*context = p->contexts[p->services[i].context].name;
			return SOTP_OK;
		}
	}
	return SOTP_ERR_NOT_FOUND;
}

/*
 * The store as it may be shown. A PostgreSQL URL can carry a password and
 * is masked; a SQLite store is a file path, shown as it is: masking a
 * path that happens to read "password=" would show another file, and the
 * dump would no longer read back as the same policy.
 */
static void
store_shown(const char *store, char *out, size_t outsz)
{
	if (strncmp(store, "sqlite:", 7) == 0)
		sotp_strlcpy(out, store, outsz);
	else
		sotp_store_url_redact(store, out, outsz);
}

int
sotp_policy_has_services(const struct sotp_ctx *ctx)
{
	return ctx != NULL && ctx->have_policy && ctx->pol.nservices > 0;
}

int
sotp_policy_hides_unknown(const struct sotp_ctx *ctx)
{
	/* Without a policy, the default: hide. */
	return ctx == NULL || !ctx->have_policy || !ctx->pol.reveal_unknown;
}

int
sotp_policy_locations(const struct sotp_ctx *ctx, char *store, size_t storesz,
    char *key, size_t keysz)
{
	if (ctx == NULL || store == NULL || key == NULL || storesz == 0 ||
	    keysz == 0)
		return SOTP_ERR_INVALID_ARG;
	if (!ctx->have_policy)
		return SOTP_ERR_CONFIG;
	store_shown(ctx->pol.store, store, storesz);
	/* The secret file this policy reads: the key, or the token's PIN. */
	if (sotp_strlcpy(key,
	        ctx->pol.kek == SOTP_KEK_PKCS11 ? ctx->pol.p11_pin_file
	                                        : ctx->pol.master_key,
	        keysz) >= keysz)
		return SOTP_ERR_BUFFER;
	return SOTP_OK;
}

int
sotp_policy_kek(const struct sotp_ctx *ctx, char *out, size_t outsz)
{
	if (ctx == NULL || out == NULL || outsz == 0)
		return SOTP_ERR_INVALID_ARG;
	if (!ctx->have_policy)
		return SOTP_ERR_CONFIG;
	if (ctx->keys != NULL)
		sotp_strlcpy(out, sotp_keyring_kek(ctx->keys), outsz);
	else
		sotp_kek_conf(&ctx->pol, out, outsz);
	return SOTP_OK;
}

int
sotp_policy_has_context(const struct sotp_ctx *ctx, const char *context)
{
	if (ctx == NULL || context == NULL)
		return SOTP_ERR_INVALID_ARG;
	if (!ctx->have_policy)
		return SOTP_ERR_CONFIG;
	return sotp_policy_context(&ctx->pol, context) != NULL
	    ? SOTP_OK
	    : SOTP_ERR_NOT_FOUND;
}

static const char *const second_names[] = {"none", "otp", "card", "user"};
static const char *const action_names[] = {
    "authenticate", "register", "unregister"};

struct outbuf {
	char *buf;
	size_t size, len;
	int overflow;
};

static void bprintf(struct outbuf *o, const char *fmt, ...) SOTP_PRINTF(2, 3);

static void
bprintf(struct outbuf *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->size - o->len)
		o->overflow = 1;
	else
		o->len += (size_t)n;
}

int
sotp_policy_dump(const struct sotp_ctx *ctx, char *buf, size_t bufsz)
{
	const struct sotp_policy *p;
	struct outbuf o = {buf, bufsz, 0, 0};
	char store[SOTP_PATH_MAX + 16];
	size_t i;

	if (ctx == NULL || buf == NULL || bufsz == 0)
		return SOTP_ERR_INVALID_ARG;
	if (!ctx->have_policy)
		return SOTP_ERR_CONFIG;
	p = &ctx->pol;
	buf[0] = '\0';
	bprintf(&o, "# effective policy from %s\n", p->path);
	store_shown(p->store, store, sizeof(store));
	bprintf(&o,
	    "store = %s\nmaster_key = %s\nissuer = %s\nlanguage = %s\n"
	    "unknown_contract = %s\nmetrics = %s\n",
	    store, p->master_key, p->issuer, lang_names[p->lang],
	    unknown_names[p->reveal_unknown != 0],
	    p->metrics[0] != '\0' ? p->metrics : "none");
	bprintf(&o,
	    "\n[otp]\nalgorithm = %s\ndigits = %u\nperiod = %u\n"
	    "window_back = %u\nwindow_forward = %u\nmax_drift = %u\n"
	    "resync_window = %u\nhotp_look_ahead = %u\n"
	    "hotp_resync_window = %u\nmin_secret_bytes = %u\n",
	    sotp_alg_name(p->alg), p->digits, p->period, p->window_back,
	    p->window_forward, p->max_drift, p->resync_window,
	    p->hotp_look_ahead, p->hotp_resync_window, p->min_secret_bytes);
	bprintf(&o, "\n[lockout]\nthreshold = %u\nduration = %u\n",
	    p->lock_threshold, p->lock_duration);
	bprintf(&o, "\n[state]\nlifetime = %u\nmax_rounds = %u\n",
	    p->state_lifetime, p->max_rounds);
	bprintf(&o, "\n[card]\nrows = %u\ncolumns = %u\ncells = %u\n",
	    p->card_rows, p->card_cols, p->card_cells);
	bprintf(&o,
	    "\n[store]\nconnect_timeout = %u\nstatement_timeout = %u\n"
	    "lock_timeout = %u\n",
	    p->connect_timeout, p->statement_timeout, p->lock_timeout);
	bprintf(&o,
	    "\n[migration]\nbinding = %s\nrehash = %s\npskc_signed = %s\n",
	    p->migration_binding ? "yes" : "no", p->rehash ? "yes" : "no",
	    p->pskc_signed ? "yes" : "no");
	bprintf(&o, "\n[key]\nkek = %s\nrefresh = %u\npkcs11_module = %s\n",
	    kek_names[p->kek], p->key_refresh, p->p11_module);
	if (p->p11_token[0] != '\0')
		bprintf(&o, "pkcs11_token = %s\n", p->p11_token);
	if (p->p11_has_slot)
		bprintf(&o, "pkcs11_slot = %lu\n", p->p11_slot);
	if (p->p11_key[0] != '\0')
		bprintf(&o, "pkcs11_key = %s\n", p->p11_key);
	if (p->p11_pin_file[0] != '\0')
		bprintf(&o, "pkcs11_pin_file = %s\n", p->p11_pin_file);
	bprintf(&o, "\n[password]\nhash = %s\ncost = %u\nlegacy_import = %s\n",
	    sotp_pw_methods[p->pw_method].name, p->pw_cost,
	    legacy_names[p->pw_legacy_refuse != 0]);
	for (i = 0; i < p->nkinds; i++) {
		bprintf(&o, "\n[kind %s]\n", p->kinds[i].name);
		if (i == p->default_kind)
			bprintf(&o, "default = yes\n");
		if (p->kinds[i].sunset_end != 0)
			bprintf(&o, "sunset = %s\n", p->kinds[i].sunset);
		/* Printed even without a sunset, so the dump reads back. */
		if (p->kinds[i].sunset_end != 0 || p->kinds[i].warn_days != 0)
			bprintf(&o, "warn_days = %u\n", p->kinds[i].warn_days);
		if (p->kinds[i].serial_exact)
			bprintf(&o, "serial_case = sensitive\n");
	}
	for (i = 0; i < p->ncontexts; i++)
		bprintf(&o,
		    "\n[context %s]\npassword = %s\nfactor = %s\n"
		    "action = %s\n",
		    p->contexts[i].name,
		    p->contexts[i].password ? "required" : "none",
		    second_names[p->contexts[i].second],
		    action_names[p->contexts[i].action]);
	bprintf(&o, "\n[services]\n");
	for (i = 0; i < p->nservices; i++)
		bprintf(&o, "%s = %s\n", p->services[i].name,
		    p->contexts[p->services[i].context].name);
	bprintf(&o, "\n[messages]\n");
	for (i = 0; i < SOTP_NMSG; i++)
		if (p->msg[i][0] != '\0')
			bprintf(&o, "%s = \"%s\"\n", sotp_msg_name((int)i),
			    p->msg[i]);
	return o.overflow ? SOTP_ERR_BUFFER : SOTP_OK;
}

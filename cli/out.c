/*
 * out.c - what the admin tool writes: one-line diagnostics on stderr, the
 * log sink, and JSON objects (one per line) for --json.
 *
 * Data from the store (IDs, audit details) is printed through cli_text or
 * json_quote, so a stray control character can neither fake a line of
 * output nor break a JSON consumer.
 */
#define _GNU_SOURCE /* O_TMPFILE, secure_getenv */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/*
 * One diagnostic line on stderr: "shinkin-otp: [WHAT: ]MESSAGE". The
 * message and WHAT carry what the operator typed (IDs, paths, option
 * words) and what a file or the store held; each is written as cli_text
 * writes (a tab kept: it breaks no line, and "'\t30'" shown as "'?30'"
 * would hide what is wrong), so that a newline in a contract ID cannot
 * forge a second line for the log that collects stderr, nor an escape
 * sequence reach the terminal.
 */
static void text_out(FILE *f, const char *s, int tab);

/*
 * A message longer than its buffer (an operator's word, a path, the
 * core's detail within one line): its cut shows as "...", after whole
 * UTF-8 characters (sotp_mark_cut). n is what snprintf returned.
 */
static void
cut_mark(char *buf, size_t bufsz, int n)
{
	if (n > 0)
		sotp_mark_cut(buf, bufsz, (size_t)n);
}

static void err_vline(const char *what, const char *fmt, va_list ap)
    SOTP_PRINTF(2, 0);

static void
err_vline(const char *what, const char *fmt, va_list ap)
{
	char buf[2048];

	cut_mark(buf, sizeof(buf), vsnprintf(buf, sizeof(buf), fmt, ap));
	fprintf(stderr, "%s: ", CLI_NAME);
	if (what != NULL) {
		text_out(stderr, what, 1);
		fputs(": ", stderr);
	}
	text_out(stderr, buf, 1);
	fputc('\n', stderr);
}

static void err_line(const char *what, const char *fmt, ...) SOTP_PRINTF(2, 3);

static void
err_line(const char *what, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_vline(what, fmt, ap);
	va_end(ap);
}

/*
 * Keeps the first failure for cli_json_fail; a warning gives way to the
 * first failure of another kind. The detail is what stderr shows (or the
 * core's detail), which never holds a secret.
 */
static void
fail_note(const struct cli *c, enum cli_fail_kind kind, int rc, int reason,
    const char *detail)
{
	struct cli_fail *f = c->fail;

	if (f == NULL ||
	    (f->kind != CLI_FAIL_NONE &&
	        (f->kind != CLI_FAIL_WARN || kind == CLI_FAIL_WARN)))
		return;
	f->kind = kind;
	f->rc = rc;
	f->reason = reason;
	cut_mark(f->detail, sizeof(f->detail),
	    snprintf(f->detail, sizeof(f->detail), "%s", detail));
	/* cli_fail_option named the option just before a usage error. */
	if (kind != CLI_FAIL_USAGE)
		f->option[0] = '\0';
}

void
cli_fail_option(const struct cli *c, const char *opt, size_t len)
{
	struct cli_fail *f = c->fail;

	if (f != NULL && (f->kind == CLI_FAIL_NONE || f->kind == CLI_FAIL_WARN))
		cut_mark(f->option, sizeof(f->option),
		    snprintf(
		        f->option, sizeof(f->option), "%.*s", (int)len, opt));
}

void
cli_json_told(const struct cli *c)
{
	if (c->fail != NULL)
		c->fail->told = 1;
}

static void warn_v(const struct cli *c, int rc, const char *fmt, va_list ap)
    SOTP_PRINTF(3, 0);

static void
warn_v(const struct cli *c, int rc, const char *fmt, va_list ap)
{
	char buf[2048];

	cut_mark(buf, sizeof(buf), vsnprintf(buf, sizeof(buf), fmt, ap));
	fail_note(c, CLI_FAIL_WARN, rc, 0, buf);
	err_line(c->what[0] ? c->what : "error", "%s", buf);
}

void
cli_warn(const struct cli *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	warn_v(c, SOTP_ERR_SYSTEM, fmt, ap);
	va_end(ap);
}

void
cli_warn_rc(const struct cli *c, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	warn_v(c, rc, fmt, ap);
	va_end(ap);
}

/* A refusal with a place in a file: "shinkin-otp: FILE:LINE: refused: ..." */
void
cli_refused_at(
    const char *path, unsigned long line, const char *text, int reason)
{
	err_line(NULL, "%s:%lu: refused: %s (%s)", path, line, text,
	    sotp_reason_name(reason));
}

int
cli_usage(const struct cli *c, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	cut_mark(buf, sizeof(buf), n);
	fail_note(c, CLI_FAIL_USAGE, SOTP_ERR_INVALID_ARG, 0, buf);
	err_line(c->what[0] != '\0' ? c->what : NULL, "%s", buf);
	return CLI_EXIT_ERROR;
}

/*
 * The ctx detail already names what failed ("FILE:LINE: ..."), so it
 * leads; the rc text follows in parentheses.
 */
int
cli_error(const struct cli *c, int rc)
{
	int saved = errno;
	const char *detail = c->ctx != NULL ? sotp_ctx_errmsg(c->ctx) : "";

	fail_note(c, CLI_FAIL_ERROR, rc, 0,
	    detail[0] == '\0' && rc == SOTP_ERR_SYSTEM ? strerror(saved)
	                                               : detail);
	if (detail[0] != '\0')
		err_line(NULL, "%s (%s)", detail, sotp_strerror(rc));
	else if (rc == SOTP_ERR_SYSTEM)
		err_line(c->what, "%s: %s", sotp_strerror(rc), strerror(saved));
	else
		err_line(c->what, "%s", sotp_strerror(rc));
	return CLI_EXIT_ERROR;
}

int
cli_error_left(const struct cli *c, int rc, const char *left)
{
	char buf[2048];
	const char *detail = c->ctx != NULL ? sotp_ctx_errmsg(c->ctx) : "";

	cut_mark(buf, sizeof(buf),
	    snprintf(buf, sizeof(buf), "%s: %s", left,
	        detail[0] != '\0' ? detail : sotp_strerror(rc)));
	fail_note(c, CLI_FAIL_ERROR, rc, 0, buf);
	err_line(NULL, "%s (%s)", buf, sotp_strerror(rc));
	return CLI_EXIT_ERROR;
}

int
cli_error_again(const struct cli *c, int rc, const char *again)
{
	char buf[2048];
	const char *detail = c->ctx != NULL ? sotp_ctx_errmsg(c->ctx) : "";
	int lead = detail[0] != '\0';

	/* "stopped: DETAIL (REASON); AGAIN", or without a detail its reason. */
	cut_mark(buf, sizeof(buf),
	    snprintf(buf, sizeof(buf), "stopped: %s%s%s%s; %s", detail,
	        lead ? " (" : "", sotp_strerror(rc), lead ? ")" : "", again));
	fail_note(c, CLI_FAIL_ERROR, rc, 0, buf);
	err_line(c->what, "%s", buf);
	return CLI_EXIT_ERROR;
}

int
cli_error_in(const struct cli *c, const char *path, const char *unit,
    unsigned long pos, int rc)
{
	const char *detail = c->ctx != NULL ? sotp_ctx_errmsg(c->ctx) : "";

	if (detail[0] == '\0')
		return cli_error(c, rc);
	fail_note(c, CLI_FAIL_ERROR, rc, 0, detail);
	if (pos > 0 && unit == NULL)
		err_line(NULL, "%s:%lu: error: %s (%s)", path, pos, detail,
		    sotp_strerror(rc));
	else if (pos > 0)
		err_line(c->what, "error: %s %lu: %s (%s)", unit, pos, detail,
		    sotp_strerror(rc));
	else
		err_line(c->what, "error: %s (%s)", detail, sotp_strerror(rc));
	return CLI_EXIT_ERROR;
}

/*
 * --json: an error is one object on stdout too, as a refusal or a
 * success is: "verdict":"error", where it stopped (at: pos, when known),
 * then "error" and "detail" as check-config writes them. The stderr
 * line is still written by the caller.
 */
void
cli_json_error(const struct cli *c, const char *at, unsigned long pos, int rc)
{
	struct cli_json j;

	if (!c->json)
		return;
	json_begin(&j, stdout);
	json_str(&j, "verdict", "error");
	cli_json_what(c, &j);
	if (at != NULL && pos > 0)
		json_int(&j, at, (long long)pos);
	json_str(&j, "error", sotp_strerror(rc));
	json_int(&j, "error_code", rc);
	json_str(&j, "detail", c->ctx != NULL ? sotp_ctx_errmsg(c->ctx) : "");
	json_end(&j);
	cli_json_told(c);
}

/*
 * What the command's argument is, by the command: the JSON key that names
 * it. A contract ID, a token serial or a file; "argument" for the rest.
 */
static const char *
arg_key(const char *cmd)
{
	size_t n = strlen(cmd);

	if (strcmp(cmd, "backup") == 0 ||
	    (n > 7 && strcmp(cmd + n - 7, " import") == 0))
		return "file";
	if (strncmp(cmd, "token ", 6) == 0)
		return "serial";
	if (strncmp(cmd, "contract ", 9) == 0 || strcmp(cmd, "verify") == 0)
		return "contract";
	return "argument";
}

void
cli_json_what(const struct cli *c, struct cli_json *j)
{
	if (c->cmd[0] == '\0')
		return;
	json_str(j, "command", c->cmd);
	if (c->arg != NULL)
		json_str(j, arg_key(c->cmd), c->arg);
}

/*
 * A failure with no object of the command's own: the object a script
 * reads on stdout, besides the line on stderr. One command needs no code
 * for it; the first failure it reported is the one described.
 */
void
cli_json_fail(const struct cli *c, int ex)
{
	const struct cli_fail *f = c->fail;
	struct cli_json j;
	int rc;

	if (!c->json || f == NULL || f->told ||
	    (ex != CLI_EXIT_REFUSED && ex != CLI_EXIT_ERROR))
		return;
	json_begin(&j, stdout);
	json_str(
	    &j, "verdict", f->kind == CLI_FAIL_REFUSED ? "reject" : "error");
	cli_json_what(c, &j);
	if (f->kind == CLI_FAIL_REFUSED) {
		json_str(&j, "reason", sotp_reason_name(f->reason));
		json_int(&j, "reason_code", f->reason);
		json_str(&j, "reason_text", sotp_reason_text(f->reason));
		json_str(&j, "detail", f->detail);
		json_end(&j);
		return;
	}
	if (f->kind == CLI_FAIL_USAGE && f->option[0] != '\0')
		json_str(&j, "option", f->option);
	/* Nothing noted is a path that forgot its line: say so, not "ok". */
	rc = f->kind == CLI_FAIL_NONE ? SOTP_ERR_INTERNAL : f->rc;
	json_str(&j, "error", sotp_strerror(rc));
	json_int(&j, "error_code", rc);
	json_str(&j, "detail", f->detail);
	if (f->kind == CLI_FAIL_USAGE)
		json_bool(&j, "usage", 1);
	json_end(&j);
}

int
cli_refused_why(const struct cli *c, int reason, const char *why)
{
	if (why == NULL || why[0] == '\0')
		return cli_refused(c, reason);
	fail_note(c, CLI_FAIL_REFUSED, 0, reason, why);
	err_line(c->what, "refused: %s: %s (%s)", sotp_reason_text(reason), why,
	    sotp_reason_name(reason));
	return CLI_EXIT_REFUSED;
}

int
cli_refused(const struct cli *c, int reason)
{
	fail_note(c, CLI_FAIL_REFUSED, 0, reason, "");
	err_line(c->what, "refused: %s (%s)", sotp_reason_text(reason),
	    sotp_reason_name(reason));
	return CLI_EXIT_REFUSED;
}

int
cli_outcome(const struct cli *c, int rc, const struct sotp_decision *d,
    const char *done)
{
	return cli_outcome_why(c, rc, d, done, NULL);
}

int
cli_outcome_why(const struct cli *c, int rc, const struct sotp_decision *d,
    const char *done, const char *why)
{
	struct cli_json j;
	int ex;

	if (rc != SOTP_OK)
		return cli_error(c, rc);
	if (why == NULL || why[0] == '\0')
		why = sotp_decision_malformed(d);
	ex = d->verdict == SOTP_ACCEPT ? CLI_EXIT_OK
	                               : cli_refused_why(c, d->reason, why);
	if (c->json) {
		json_begin(&j, stdout);
		cli_json_decision(c, &j, d);
		json_end(&j);
		cli_json_told(c);
		return ex;
	}
	if (ex == CLI_EXIT_OK && done != NULL)
		printf("%s\n", done);
	if (d->message[0] != '\0') {
		fputs("message: ", stdout);
		cli_text(stdout, d->message);
		fputc('\n', stdout);
	}
	return ex;
}

/*
 * Every line but debug goes to syslog, as the design asks of every front
 * end: one line per decision and admin action, accepts (LOG_INFO) as
 * much as refusals (LOG_NOTICE), and errors. On stderr the operator gets
 * exactly one line per refusal or error, which the command prints itself
 * with the core's detail; the core's own lines join it only with --debug.
 */
void
cli_log(void *arg, int prio, const char *fmt, va_list ap)
{
	const struct cli *c = arg;
	int level = LOG_PRI(prio);
	va_list cp;

	if (level != LOG_DEBUG) {
		va_copy(cp, ap);
		vsyslog(LOG_AUTHPRIV | level, fmt, cp);
		va_end(cp);
	}
	if (c == NULL || !c->debug)
		return;
	err_vline(NULL, fmt, ap);
}

int
cli_rows_begin(struct cli *c)
{
	char path[PATH_MAX];
	const char *dir;
	int fd, saved;

	if (!c->json || c->rows != NULL)
		return CLI_EXIT_OK;
	dir = secure_getenv("TMPDIR");
	if (dir == NULL || dir[0] != '/')
		dir = "/tmp";
	/* Unnamed where it can be; else named, and unlinked at once. */
	if ((fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0) {
		if (snprintf(path, sizeof(path), "%s/%s.XXXXXX", dir,
		        CLI_NAME) >= (int)sizeof(path))
			errno = ENAMETOOLONG;
		else if ((fd = mkostemp(path, O_CLOEXEC)) >= 0)
			unlink(path);
	}
	if (fd < 0 || (c->rows = fdopen(fd, "w+")) == NULL) {
		saved = errno;
		if (fd >= 0)
			close(fd);
		cli_warn(c,
		    "cannot make a temporary file in %s for the rows: %s%s%s",
		    dir, strerror(saved), c->rows_lost != NULL ? "; " : "",
		    c->rows_lost != NULL ? c->rows_lost : "");
		return CLI_EXIT_ERROR;
	}
	return CLI_EXIT_OK;
}

FILE *
cli_rows(const struct cli *c)
{
	return c->rows != NULL ? c->rows : stdout;
}

int
cli_rows_end(struct cli *c, int ex)
{
	char buf[16384];
	FILE *f = c->rows;
	size_t n;
	int bad;

	if (f == NULL)
		return ex;
	c->rows = NULL;
	/* A row that could not be held stopped the list as a closed pipe. */
	bad = fflush(f) != 0 || ferror(f);
	if (!bad && ex == CLI_EXIT_OK) {
		rewind(f);
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0 &&
		    fwrite(buf, 1, n, stdout) == n)
			;
		bad = ferror(f);
	}
	fclose(f);
	if (bad && ex == CLI_EXIT_OK) {
		cli_warn(c,
		    "cannot hold the rows in a temporary file: none "
		    "is printed%s%s",
		    c->rows_lost != NULL ? "; " : "",
		    c->rows_lost != NULL ? c->rows_lost : "");
		return CLI_EXIT_ERROR;
	}
	return ex;
}

const char *
cli_time(int64_t t, char *buf, size_t bufsz)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, bufsz, "-");
	return buf;
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0.
 */
static size_t
utf8_len(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0;
	else if (p[0] == 0xed)
		hi = 0x9f;
	else if (p[0] == 0xf0)
		lo = 0x90;
	else if (p[0] == 0xf4)
		hi = 0x8f;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/*
 * A terminal acts on C1 controls as on C0 ones: U+009B is CSI, as ESC [
 * is, and an 8-bit terminal takes the lone byte 0x9b the same way. So a
 * character U+0080..U+009F is one '?', as a C0 control or DEL is, and so
 * is each byte that is not well-formed UTF-8 (a 0x80..0x9f among them):
 * what cannot be vouched for as text is not passed on. Well-formed text
 * (Japanese details, names) is written as it is.
 */
static void
text_out(FILE *f, const char *s, int tab)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	while (*p != '\0') {
		if (*p < 0x80) {
			putc((*p < 0x20 && !(tab && *p == '\t')) || *p == 0x7f
			        ? '?'
			        : *p,
			    f);
			p++;
		} else if ((n = utf8_len(p)) == 0 ||
		    (p[0] == 0xc2 && p[1] <= 0x9f)) {
			putc('?', f);
			p += n > 0 ? n : 1;
		} else {
			fwrite(p, 1, n, f);
			p += n;
		}
	}
}

void
cli_text(FILE *f, const char *s)
{
	text_out(f, s, 0);
}

void
cli_say(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	cut_mark(buf, sizeof(buf), vsnprintf(buf, sizeof(buf), fmt, ap));
	va_end(ap);
	text_out(stdout, buf, 1);
	putchar('\n');
}

void
json_quote(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	putc('"', f);
	while (*p != '\0') {
		if (*p >= 0x80) {
			if ((n = utf8_len(p)) == 0) {
				fputs("\\ufffd", f);
				n = 1;
			} else if (n == 2 && p[0] == 0xc2 && p[1] <= 0x9f) {
				/* C1: escaped, as C0 is, for a terminal's sake
				 */
				fprintf(f, "\\u%04x", p[1]);
			} else {
				fwrite(p, 1, n, f);
			}
			p += n;
			continue;
		}
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\b':
			fputs("\\b", f);
			break;
		case '\f':
			fputs("\\f", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				putc(*p, f);
		}
		p++;
	}
	putc('"', f);
}

void
json_begin(struct cli_json *j, FILE *f)
{
	j->f = f;
	j->n = 0;
	putc('{', f);
}

static void
json_key(struct cli_json *j, const char *key)
{
	if (j->n++ > 0)
		putc(',', j->f);
	json_quote(j->f, key);
	putc(':', j->f);
}

void
json_str(struct cli_json *j, const char *key, const char *val)
{
	json_key(j, key);
	if (val != NULL)
		json_quote(j->f, val);
	else
		fputs("null", j->f);
}

void
json_int(struct cli_json *j, const char *key, long long val)
{
	json_key(j, key);
	fprintf(j->f, "%lld", val);
}

void
json_bool(struct cli_json *j, const char *key, int val)
{
	json_key(j, key);
	fputs(val ? "true" : "false", j->f);
}

void
json_strv(struct cli_json *j, const char *key, const char *const *v, size_t n)
{
	size_t i;

	json_key(j, key);
	putc('[', j->f);
	for (i = 0; i < n; i++) {
		if (i > 0)
			putc(',', j->f);
		json_quote(j->f, v[i]);
	}
	putc(']', j->f);
}

void
json_end(struct cli_json *j)
{
	fputs("}\n", j->f);
}

void
cli_json_decision(
    const struct cli *c, struct cli_json *j, const struct sotp_decision *d)
{
	const char *malformed = sotp_decision_malformed(d);
	static const char *const verdicts[] = {"reject", "accept", "continue"};
	unsigned int v = (unsigned int)d->verdict;

	json_str(j, "verdict", v < 3 ? verdicts[v] : "reject");
	/* As in cli_json_fail's objects: which command decided, on what. */
	cli_json_what(c, j);
	json_str(j, "reason", sotp_reason_name((int)d->reason));
	json_int(j, "reason_code", (long long)d->reason);
	json_str(j, "reason_text", sotp_reason_text((int)d->reason));
	/* Which input, never its value. */
	if (malformed != NULL)
		json_str(j, "malformed", malformed);
	json_str(j, "message", d->message);
	json_bool(j, "locked", d->locked);
}

/*
 * cli.h - private interfaces of the shinkin-otp admin tool.
 *
 * The tool translates argv into core calls and the results into text or
 * JSON; it holds no rule of its own. Exit codes are part of its contract
 * with scripts and are documented in man/shinkin-otp.1.
 */
#ifndef SOTP_CLI_H
#define SOTP_CLI_H

#include "shinkin_otp.h"

#include <limits.h>
#include <stdio.h>

enum cli_exit {
	CLI_EXIT_OK = 0,      /* done, or accepted */
	CLI_EXIT_REFUSED = 1, /* the core refused; the reason is on stderr */
	CLI_EXIT_ERROR = 2,   /* usage, configuration or system error */
	CLI_EXIT_MORE = 3     /* verify: more input needed (state printed) */
};

#define CLI_NAME "shinkin-otp"
#define CLI_SECRET_MAX 1024 /* a password or secret line from stdin */

/*
 * --json: the first failure a command reported on standard error, for the
 * one JSON object main writes when the command wrote no outcome of its
 * own (cli_json_fail). A line of cli_warn may be only a warning: a usage
 * error, a core error or a refusal reported after it takes its place.
 */
enum cli_fail_kind {
	CLI_FAIL_NONE = 0,
	CLI_FAIL_WARN,   /* cli_warn: a file, stdin, memory, output */
	CLI_FAIL_USAGE,  /* cli_usage */
	CLI_FAIL_ERROR,  /* cli_error, cli_error_in: a core rc */
	CLI_FAIL_REFUSED /* cli_refused, cli_refused_why: a reason */
};

struct cli_fail {
	enum cli_fail_kind kind;
	int rc;            /* CLI_FAIL_ERROR */
	int reason;        /* CLI_FAIL_REFUSED */
	int told;          /* the command wrote its own JSON outcome */
	char option[64];   /* the option a usage error names, or "" */
	char detail[2048]; /* as on stderr; never a secret */
};

/* One invocation: the global options and the loaded core context. */
struct cli {
	struct sotp_ctx *ctx;
	const char *config; /* --config, $SHINKIN_OTP_CONFIG or default */
	int json;
	int debug;
	time_t now; /* read once, from time(NULL) */
	/*
	 * The command takes a secret (a code, a base32 secret) on the
	 * command line: a word it did not expect may be one put in the
	 * wrong place, and is not echoed in the usage error.
	 */
	int secret_words;
	char what[160];        /* "contract bind C1": prefix of error lines */
	char cmd[48];          /* "contract bind": the command, for --json */
	const char *arg;       /* "C1" (a word of argv), or NULL */
	struct cli_fail *fail; /* what failed, for --json; set by main */
	FILE *rows;            /* --json: a list's rows, until it is whole */
	const char *rows_lost; /* what a rows failure also means, or NULL */
};

/* An option of a subcommand: "--name VALUE", "--name=VALUE" or a flag. */
struct cli_opt {
	const char *name;
	char **value; /* receives the argument (in argv); NULL: a flag */
	int *flag;    /* set to 1 when a flag is present */
};

/* ---- shinkin-otp.c ---- */

/*
 * Parses argv[0..argc) against opts; non-option words go to pos[npos_max]
 * (their count in *npos). Prints a usage error and returns CLI_EXIT_ERROR
 * on an unknown option, a missing argument (the next word is taken as the
 * value unless it begins with "--": "--output --json" has none), an
 * option with a value given twice or too many words.
 */
int cli_parse(struct cli *c, int argc, char **argv, const struct cli_opt *opts,
    const char **pos, size_t npos_max, size_t *npos);
/*
 * A whole number in [min, max] by sotp_parse_ll (digits only); prints a
 * usage error naming opt on failure.
 */
int cli_number(struct cli *c, const char *opt, const char *s, long long min,
    long long max, long long *out);
/*
 * An empty word where a file, policy, ID or name is wanted: a usage error
 * naming what (an empty --contract would not filter, an empty backup
 * path would name the current directory). Returns 0 when s is not empty.
 */
int cli_nonempty(struct cli *c, const char *what, const char *s);
/*
 * Takes a secret (a code, a base32 secret) out of argv: *argp, a word of
 * argv or its part after '=', is copied to the heap and wiped in place,
 * so that it leaves /proc/PID/cmdline before anything can fail or wait
 * (a store's connect timeout). *argp then points to the copy (free it
 * with sotp_free_string); NULL stays NULL. Out of memory: the word is
 * wiped all the same, *argp is NULL, and CLI_EXIT_ERROR is returned.
 */
int cli_take_secret(struct cli *c, char **argp);
/*
 * Before a usage error is written: a usage error ends a parse before the
 * words past the failing one argv[at] reach cli_take_secret, and they
 * would stay in /proc/PID/cmdline while the error is written (a standard
 * error that blocks) and until exit. Wipes, on the whole line and
 * whatever the command, the value of each option that carries a secret
 * (--secret, --otp, --card, --password), what follows argv[at]'s '='
 * (no error shows it), and under c->secret_words (resync's codes) every
 * word past argv[at], and argv[at] itself unless it is an option (whose
 * name the error shows).
 */
void cli_wipe_secrets(const struct cli *c, int argc, char **argv, int at);
/*
 * Sets c->what to "CMD ARG" (ARG may be NULL) for error lines, and
 * c->cmd, c->arg for the JSON error object.
 */
void cli_what(struct cli *c, const char *cmd, const char *arg);
void cli_refused_at(
    const char *path, unsigned long line, const char *text, int reason);
/* Loads policy, key and store; prints the error and returns 2 on failure. */
int cli_load(struct cli *c);
/* The same, going on without the key when it cannot be read. */
int cli_load_nokey(struct cli *c);
/*
 * Reads one line from stdin into buf[bufsz] without stdio buffering (no
 * stray copy of the secret), echo off on a terminal, newline stripped.
 * Returns 0, or 1 on EOF before any byte, or -1 (message printed) on a
 * read error, a line longer than bufsz - 1 or a line holding a NUL byte.
 */
int cli_read_secret(struct cli *c, const char *prompt, char *buf, size_t bufsz);

/* ---- out.c: diagnostics, refusals and JSON ---- */

/*
 * "shinkin-otp: WHAT: MESSAGE" on stderr. A failure so reported is
 * SOTP_ERR_SYSTEM's under --json (a file, output); cli_warn_rc names
 * another core code (SOTP_ERR_BAD_INPUT for what stdin held or lacked,
 * SOTP_ERR_NOMEM).
 */
void cli_warn(const struct cli *c, const char *fmt, ...) SOTP_PRINTF(2, 3);
void cli_warn_rc(const struct cli *c, int rc, const char *fmt, ...)
    SOTP_PRINTF(3, 4);
/* A usage error: the message on stderr; returns CLI_EXIT_ERROR. */
int cli_usage(const struct cli *c, const char *fmt, ...) SOTP_PRINTF(2, 3);
/* A failed core call: sotp_strerror(rc) and the ctx detail; returns 2. */
int cli_error(const struct cli *c, int rc);
/*
 * The same for a command that an error stopped after part of it was
 * committed: "LEFT: DETAIL (TEXT)", LEFT saying what stands (not undone).
 */
int cli_error_left(const struct cli *c, int rc, const char *left);
/*
 * The same for a command that an error stopped between steps each
 * committed on its own, which a new run takes up: "WHAT: stopped:
 * DETAIL (TEXT); AGAIN", AGAIN saying so. Returns CLI_EXIT_ERROR.
 */
int cli_error_again(const struct cli *c, int rc, const char *again);
/*
 * A core call on a file's contents that an error stopped, with its place
 * as a refusal has it: "FILE:POS: error: DETAIL (TEXT)" for a line (unit
 * NULL), "WHAT: error: UNIT POS: DETAIL (TEXT)" for another unit (a PSKC
 * entry), "WHAT: error: DETAIL (TEXT)" with none (pos 0; WHAT names the
 * file). DETAIL is the ctx's; returns CLI_EXIT_ERROR.
 */
int cli_error_in(const struct cli *c, const char *path, const char *unit,
    unsigned long pos, int rc);
/* One refusal line "...: refused: TEXT (NAME)" on stderr; returns 1. */
int cli_refused(const struct cli *c, int reason);
/* The same line with what was wrong: "...: refused: TEXT: WHY (NAME)". */
int cli_refused_why(const struct cli *c, int reason, const char *why);
/*
 * The outcome of an admin call: rc != 0 -> cli_error, a REJECT ->
 * cli_refused, else prints `done` (and d->message) and returns 0.
 */
int cli_outcome(const struct cli *c, int rc, const struct sotp_decision *d,
    const char *done);
/*
 * The same; a REJECT says why (NULL or "": only the reason, or the
 * malformed input's name when the decision has one).
 */
int cli_outcome_why(const struct cli *c, int rc, const struct sotp_decision *d,
    const char *done, const char *why);
/* The CLI's log sink: stderr (and the audit lines to syslog). */
void cli_log(void *arg, int prio, const char *fmt, va_list ap)
    SOTP_PRINTF(3, 0);
/*
 * Writes s for a human: each C0 or C1 control, DEL and each byte that is
 * not well-formed UTF-8 shows as one '?'; other UTF-8 as it is.
 */
void cli_text(FILE *f, const char *s);
/*
 * One line on stdout, its text as cli_text writes it (a tab kept): a
 * path or name the operator gave, echoed in a success line, cannot move
 * the terminal's cursor or forge a second line.
 */
void cli_say(const char *fmt, ...) SOTP_PRINTF(1, 2);

/* A JSON object written field by field to one line. */
struct cli_json {
	FILE *f;
	int n; /* fields written so far */
};
void json_begin(struct cli_json *j, FILE *f);
void json_str(struct cli_json *j, const char *key, const char *val);
void json_int(struct cli_json *j, const char *key, long long val);
void json_bool(struct cli_json *j, const char *key, int val);
void json_strv(
    struct cli_json *j, const char *key, const char *const *v, size_t n);
void json_end(struct cli_json *j);
/* A JSON string literal with RFC 8259 escaping; bad UTF-8 -> U+FFFD. */
void json_quote(FILE *f, const char *s);
/*
 * Adds verdict, the command and its argument (as cli_json_fail names
 * them), reason, reason_code, reason_text, message and locked.
 */
void cli_json_decision(
    const struct cli *c, struct cli_json *j, const struct sotp_decision *d);
/*
 * The command ("command":"contract import") and its argument named by
 * what it is ("file":...), when cli_what set them: what every outcome
 * object carries after its verdict.
 */
void cli_json_what(const struct cli *c, struct cli_json *j);
/*
 * --json: an error as one object ("verdict":"error", the command and its
 * argument, then at:pos when pos > 0); else nothing. It is the command's
 * outcome: main writes no other (cli_json_told).
 */
void cli_json_error(
    const struct cli *c, const char *at, unsigned long pos, int rc);
/*
 * The command wrote its own JSON object stating its outcome (a decision,
 * a summary, check-config's "valid"): main writes no error object after
 * it. Objects that are only data (list rows, key steps) do not count.
 */
void cli_json_told(const struct cli *c);
/* Names the option (the first len bytes of opt) a usage error is about. */
void cli_fail_option(const struct cli *c, const char *opt, size_t len);
/*
 * Under --json, when exit code ex is a failure (1 or 2) and the command
 * wrote no outcome object: one object on stdout from c->fail, the shape
 * of cli_json_error's ("verdict":"error", "error", "error_code",
 * "detail"; a refusal: "verdict":"reject" and the reason fields), with
 * "command", the command's argument by its name ("contract", "serial",
 * "file", "argument"), and for a usage error "usage":true and "option".
 */
void cli_json_fail(const struct cli *c, int ex);

/*
 * --json lists (contract list, token list, audit; contract import's
 * refusals): a script must not take the rows read before a failure for
 * the list, so they are held in an
 * unnamed temporary file ($TMPDIR, else /tmp; 0600, gone with the
 * process: memory stays bounded however long the list) and reach stdout
 * only once the list is whole. cli_rows_begin opens it (0, or an exit
 * code: it cannot be made); cli_rows is where a row goes (stdout without
 * --json); cli_rows_end(c, ex) writes the rows when ex is CLI_EXIT_OK,
 * drops them otherwise (main's error object is then stdout's only line),
 * and returns ex, or CLI_EXIT_ERROR when the rows could not be held.
 * c->rows_lost, when set, ends either failure's message (an import's
 * "nothing imported").
 */
int cli_rows_begin(struct cli *c);
FILE *cli_rows(const struct cli *c);
int cli_rows_end(struct cli *c, int ex);

/* "2024-05-01T09:30:00Z" into buf[21]; "-" for 0. */
const char *cli_time(int64_t t, char *buf, size_t bufsz);

/* ---- newfile.c: a new file, named only once whole ---- */

struct stat;
/*
 * Reads into buf the len bytes the file on fd held when it was fstat'ed
 * (st0): 0; -1 with errno, a read error; 1, it changed while it was read
 * (cut short, grown or written anew: what was read is not the file, and
 * its last line may be cut, a seed in it decoding to a shorter key).
 */
int cli_read_whole(int fd, const struct stat *st0, void *buf, size_t len);

/* A file cli_file_open made; initialise with CLI_FILE_INIT. */
struct cli_file {
	FILE *f;            /* write here; NULL once published or abandoned */
	const char *path;   /* the name it gets when published */
	char tmp[PATH_MAX]; /* its temporary name, or "" while unnamed */
};
#define CLI_FILE_INIT                                                          \
	{                                                                      \
		NULL, NULL, ""                                                 \
	}

/*
 * Creates the file to be named path, 0600, unnamed (or as a temporary
 * name beside it) until cli_file_publish. Returns 0, or -1 with errno
 * (EEXIST when path exists: it is never overwritten).
 */
int cli_file_open(struct cli_file *nf, const char *path);
/*
 * Flushes, syncs and names the file, then closes it. Returns 0, or -1
 * with errno (EEXIST: path appeared meanwhile); then nothing is left at
 * path, nor at a temporary name.
 */
int cli_file_publish(struct cli_file *nf);
/* Closes and drops a file not published (NULL-safe, idempotent). */
void cli_file_abandon(struct cli_file *nf);

/* ---- qr.c: an otpauth URI as a QR code (it holds the secret) ---- */

/* On the terminal, in UTF-8 half blocks. */
int cli_qr_text(const struct cli *c, const char *uri, FILE *f);
/*
 * Claims path for a PNG (cli_file_open): 0600, never over an existing
 * file, nothing at path until it is whole. On failure prints why and
 * returns CLI_EXIT_ERROR.
 */
int cli_png_open(const struct cli *c, const char *path, struct cli_file *png);
/* Drops a PNG cli_png_open made and that was not written. */
void cli_png_abandon(struct cli_file *png);
/*
 * Writes the QR code into png and names the file; on failure prints why
 * and leaves nothing at its name.
 */
int cli_qr_png(const struct cli *c, const char *uri, struct cli_file *png);
/*
 * cli_qr_png that prints nothing: SOTP_OK, or an SOTP_ERR_* with why
 * (whysz bytes) saying what failed, for a PNG that is part of a core call
 * (token generate's hold, inside the transaction that adds the token).
 */
int cli_qr_png_hold(
    const char *uri, struct cli_file *png, char *why, size_t whysz);

/* ---- the commands: argv starts after the command word(s) ---- */

int cmd_init(struct cli *c, int argc, char **argv);
int cmd_check_config(struct cli *c, int argc, char **argv);
int cmd_messages(struct cli *c, int argc, char **argv);
int cmd_audit(struct cli *c, int argc, char **argv);
int cmd_token(struct cli *c, int argc, char **argv);
/* token import FILE ...: cmd_import.c */
int cmd_token_import(struct cli *c, int argc, char **argv);
int cmd_contract(struct cli *c, int argc, char **argv);
int cmd_verify(struct cli *c, int argc, char **argv);
/* contract import FILE ..., export, backup: cmd_migrate.c */
int cmd_contract_import(struct cli *c, int argc, char **argv);
int cmd_export(struct cli *c, int argc, char **argv);
int cmd_backup(struct cli *c, int argc, char **argv);
/* key status | check | rotate | rewrap | drop-kek: cmd_key.c */
int cmd_key(struct cli *c, int argc, char **argv);
/* health, metrics: cmd_ops.c */
int cmd_health(struct cli *c, int argc, char **argv);
int cmd_metrics(struct cli *c, int argc, char **argv);

#endif /* SOTP_CLI_H */

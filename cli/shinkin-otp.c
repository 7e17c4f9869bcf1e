/*
 * shinkin-otp.c - the admin tool: global options, command dispatch and the
 * small argv and stdin helpers the commands share.
 *
 *	shinkin-otp [--config FILE] [--json] [--debug] COMMAND [ARGS]
 *
 * The tool holds no rule: every decision comes from the core, and this
 * file only turns words into calls and results into exit codes.
 */
#define _GNU_SOURCE /* ppoll */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <termios.h>
#include <unistd.h>

struct command {
	const char *name;
	int (*run)(struct cli *c, int argc, char **argv);
};

static const struct command commands[] = {
    {"init", cmd_init},
    {"check-config", cmd_check_config},
    {"messages", cmd_messages},
    {"token", cmd_token},
    {"contract", cmd_contract},
    {"verify", cmd_verify},
    {"audit", cmd_audit},
    {"export", cmd_export},
    {"backup", cmd_backup},
    {"key", cmd_key},
    {"health", cmd_health},
    {"metrics", cmd_metrics},
};

static const char usage_text[] =
    "usage: shinkin-otp [--config FILE] [--json] [--debug] COMMAND ...\n"
    "       shinkin-otp -h | --help\n"
    "  init | check-config | messages\n"
    "  token add SERIAL --secret BASE32|- [--algorithm A] [--digits N]\n"
    "        [--period S | --counter C] [--kind K]\n"
    "  token generate [--count N] [--kind K] [--algorithm A] [--digits N]\n"
    "        [--period S] [--qr] [--png FILE]\n"
    "  token import FILE [--format pskc|csv] [--key-file F|--passphrase-stdin]\n"
    "        [--signer CERT] [--dry-run] [--kind K]\n"
    "  token show SERIAL [--uri] [--qr] [--png FILE]\n"
    "  token list [--unassigned] | token resync SERIAL CODE1 CODE2\n"
    "  token disable|enable SERIAL\n"
    "  contract add|passwd|unbind|unlock|close|show|card ID\n"
    "  contract bind ID --serial S --otp CODE [--login-otp yes|no|card]\n"
    "  contract set ID --login-otp yes|no|card\n"
    "  contract import FILE [--format csv|jsonl] [--dry-run]\n"
    "  export [--format csv|jsonl] [--with-secrets] [--output FILE]\n"
    "  backup FILE\n"
    "  contract list [--locked] [--status active|closed]\n"
    "  verify ID [--context C] [--otp CODE] [--card DIGITS] [--serial S]\n"
    "        [--login-otp CHOICE] [--state TOKEN]   (password on stdin)\n"
    "  audit [--contract ID] [--since T] [--until T]   (T: epoch or ISO 8601)\n"
    "  audit verify | audit retag | audit prune --before T [--past ID,...]\n"
    "  key status | key check | key rewrap NEW-POLICY | key drop-kek NAME\n"
    "  key rotate [--batch N] [--pause MS] [--max-batches N] [--no-wait]\n"
    "  health                 policy, key, store and a write (exit 0/1/2)\n"
    "  metrics [--output FILE]   counters, Prometheus text format\n"
    "exit: 0 ok/accepted/healthy, 1 refused/unhealthy, 2 usage or system "
    "error, 3 more input needed\n";

void
cli_what(struct cli *c, const char *cmd, const char *arg)
{
	int n;

	if (arg != NULL)
		n = snprintf(c->what, sizeof(c->what), "%s %s", cmd, arg);
	else
		n = snprintf(c->what, sizeof(c->what), "%s", cmd);
	/* A long ID: the prefix of every line says it was cut. */
	if (n > 0)
		sotp_mark_cut(c->what, sizeof(c->what), (size_t)n);
	snprintf(c->cmd, sizeof(c->cmd), "%s", cmd);
	c->arg = arg;
}

static const struct cli_opt *
find_opt(const struct cli_opt *opts, const char *name, size_t len)
{
	for (; opts != NULL && opts->name != NULL; opts++)
		if (strlen(opts->name) == len &&
		    strncmp(opts->name, name, len) == 0)
			return opts;
	return NULL;
}

/*
 * --password is no command's option (a password is read from standard
 * input), but a value typed after it would be one all the same.
 */
void
cli_wipe_secrets(const struct cli *c, int argc, char **argv, int at)
{
	static const char *const secret_opts[] = {
	    "--secret", "--otp", "--card", "--password"};
	size_t k, n;
	char *eq;
	int j;

	for (j = 0; j < argc; j++) {
		for (k = 0; k < sizeof(secret_opts) / sizeof(secret_opts[0]);
		     k++) {
			n = strlen(secret_opts[k]);
			if (strncmp(argv[j], secret_opts[k], n) != 0)
				continue;
			if (argv[j][n] == '=')
				sotp_wipe(
				    argv[j] + n + 1, strlen(argv[j] + n + 1));
			else if (argv[j][n] == '\0' && j + 1 < argc)
				sotp_wipe(argv[j + 1], strlen(argv[j + 1]));
		}
		if (j == at && argv[j][0] == '-' &&
		    (eq = strchr(argv[j], '=')) != NULL)
			sotp_wipe(eq + 1, strlen(eq + 1));
		/* The failing word too when it is not an option (not shown). */
		if (c->secret_words &&
		    (j > at || (j == at && argv[j][0] != '-')))
			sotp_wipe(argv[j], strlen(argv[j]));
	}
}

/*
 * A word that is an option ("--x", "--x=y") or ends them ("--"), and so
 * not the value of the option before it. "-" (stdin) and "-5" are values.
 */
static int
option_word(const char *s)
{
	return strncmp(s, "--", 2) == 0;
}

/*
 * argv[at] (its name optlen bytes long) wants a value and the next word is
 * an option: "--output --with-secrets" forgot the file, and taken as the
 * value, the export went without its secrets to a file named
 * "--with-secrets". The next word is named up to its '=' (what follows
 * may be a secret), read before the wipe (which takes --secret's next
 * word whatever it is). Returns CLI_EXIT_ERROR.
 */
static int
value_is_option(struct cli *c, int argc, char **argv, int at, size_t optlen,
    const char *dashes, const char *name)
{
	char word[128];
	int n;

	n = snprintf(word, sizeof(word), "%.*s",
	    (int)strcspn(argv[at + 1], "="), argv[at + 1]);
	if (n > 0)
		sotp_mark_cut(word, sizeof(word), (size_t)n);
	cli_wipe_secrets(c, argc, argv, at);
	cli_fail_option(c, argv[at], optlen);
	return cli_usage(c,
	    "option %s%s needs a value: '%s' is an option (a value that "
	    "begins with \"--\" is written %s%s=VALUE)",
	    dashes, name, word, dashes, name);
}

int
cli_parse(struct cli *c, int argc, char **argv, const struct cli_opt *opts,
    const char **pos, size_t npos_max, size_t *npos)
{
	const struct cli_opt *o;
	const char *name, *eq;
	unsigned long long given = 0, bit;
	size_t optlen;
	int i, words_only = 0;

	*npos = 0;
	for (i = 0; i < argc; i++) {
		if (!words_only && strcmp(argv[i], "--") == 0) {
			words_only = 1;
			continue;
		}
		if (words_only || argv[i][0] != '-' || argv[i][1] == '\0') {
			if (*npos >= npos_max && c->secret_words) {
				cli_wipe_secrets(c, argc, argv, i);
				return cli_usage(c,
				    "unexpected argument %d (not shown: it may "
				    "be a secret)",
				    i + 1);
			}
			if (*npos >= npos_max) {
				cli_wipe_secrets(c, argc, argv, i);
				return cli_usage(
				    c, "unexpected argument '%s'", argv[i]);
			}
			pos[(*npos)++] = argv[i];
			continue;
		}
		name = argv[i] + (argv[i][1] == '-' ? 2 : 1);
		eq = strchr(name, '=');
		o = find_opt(opts, name,
		    eq != NULL ? (size_t)(eq - name) : strlen(name));
		/*
		 * Only the name: "--secret=BASE32" is not echoed whole, on
		 * stderr or as the "option" of --json's error object.
		 */
		optlen = eq != NULL ? (size_t)(eq - argv[i]) : strlen(argv[i]);
		if (o == NULL || argv[i][1] != '-') {
			cli_wipe_secrets(c, argc, argv, i);
			cli_fail_option(c, argv[i], optlen);
			return cli_usage(
			    c, "unknown option '%.*s'", (int)optlen, argv[i]);
		}
		/*
		 * A value given twice ("--digits 6 --digits 8") leaves which
		 * one was meant to a guess; a flag twice is still the flag.
		 * (A command has at most 7 options; past 64 two would share
		 * a bit and be refused together, never let through.)
		 */
		bit = 1ull << ((size_t)(o - opts) % 64);
		if (o->value != NULL && (given & bit) != 0) {
			cli_wipe_secrets(c, argc, argv, i);
			cli_fail_option(c, argv[i], optlen);
			return cli_usage(c, "option --%s given twice", o->name);
		}
		given |= bit;
		if (o->value == NULL) {
			if (eq != NULL) {
				cli_wipe_secrets(c, argc, argv, i);
				cli_fail_option(c, argv[i], optlen);
				return cli_usage(
				    c, "option --%s takes no value", o->name);
			}
			*o->flag = 1;
		} else if (eq != NULL) {
			*o->value = argv[i] + (eq + 1 - argv[i]);
		} else if (i + 1 < argc && !option_word(argv[i + 1])) {
			*o->value = argv[++i];
		} else if (i + 1 < argc) {
			return value_is_option(
			    c, argc, argv, i, optlen, "--", o->name);
		} else {
			cli_wipe_secrets(c, argc, argv, i);
			cli_fail_option(c, argv[i], optlen);
			return cli_usage(
			    c, "option --%s needs a value", o->name);
		}
	}
	return CLI_EXIT_OK;
}

/*
 * The core's parser, the one the policy file is read with: strtoll alone
 * would take " 5" and "+5", so the CLI would accept what the policy
 * refuses. A zero-padded value (007) or -0 is refused with that reason.
 */
int
cli_number(struct cli *c, const char *opt, const char *s, long long min,
    long long max, long long *out)
{
	const char *zero;
	long long v;

	if ((zero = sotp_parse_ll_zero(s)) != NULL) {
		cli_fail_option(c, opt, strlen(opt));
		return cli_usage(c, "%s: '%s' %s", opt, s, zero);
	}
	if (sotp_parse_ll(s, min, max, &v) != SOTP_OK) {
		cli_fail_option(c, opt, strlen(opt));
		return cli_usage(c, "%s: '%s' is not a number in %lld..%lld",
		    opt, s, min, max);
	}
	*out = v;
	return CLI_EXIT_OK;
}

int
cli_take_secret(struct cli *c, char **argp)
{
	char *copy;

	if (*argp == NULL)
		return CLI_EXIT_OK;
	copy = strdup(*argp);
	sotp_wipe(*argp, strlen(*argp));
	*argp = copy;
	if (copy == NULL) {
		cli_warn_rc(c, SOTP_ERR_NOMEM, "out of memory");
		return CLI_EXIT_ERROR;
	}
	return CLI_EXIT_OK;
}

int
cli_nonempty(struct cli *c, const char *what, const char *s)
{
	if (s != NULL && s[0] == '\0') {
		if (what[0] == '-')
			cli_fail_option(c, what, strlen(what));
		return cli_usage(c, "%s: an empty value", what);
	}
	return CLI_EXIT_OK;
}

int
cli_load(struct cli *c)
{
	int rc;

	if ((rc = sotp_ctx_load(c->ctx, c->config)) != SOTP_OK)
		return cli_error(c, rc);
	return CLI_EXIT_OK;
}

/*
 * The help desk's commands touch no secret: they work for an operator
 * who cannot read the master key, whose audit rows the next holder of
 * the key chains (shinkin-otp(1), HELP DESK).
 */
int
cli_load_nokey(struct cli *c)
{
	char store[PATH_MAX + 64], key[PATH_MAX];
	int rc;

	if ((rc = sotp_ctx_load(c->ctx, c->config)) != SOTP_ERR_KEY)
		return rc == SOTP_OK ? CLI_EXIT_OK : cli_error(c, rc);
	/*
	 * Only a key this user may not read: one that is missing, unsafe or
	 * damaged is a fault to report, not a reason to go on without it.
	 */
	if (sotp_ctx_load_policy(c->ctx, c->config) != SOTP_OK ||
	    sotp_policy_locations(
	        c->ctx, store, sizeof(store), key, sizeof(key)) != SOTP_OK ||
	    access(key, R_OK) == 0 || errno != EACCES) {
		/* The first error, as sotp_ctx_load reported it. */
		(void)sotp_ctx_load(c->ctx, c->config);
		return cli_error(c, SOTP_ERR_KEY);
	}
	if (c->debug)
		cli_warn(c,
		    "%s: not readable: working without the master "
		    "key (audit rows are chained later)",
		    key);
	if ((rc = sotp_ctx_load_nokey(c->ctx, c->config)) != SOTP_OK)
		return cli_error(c, rc);
	return CLI_EXIT_OK;
}

/*
 * The signal that came while a secret was read at a terminal with its
 * echo off, or 0. The tool's one mutable global: a signal handler has
 * nowhere else to say so.
 */
static volatile sig_atomic_t tty_signal;

static void
on_tty_signal(int sig)
{
	tty_signal = sig;
}

/*
 * The signals that end the tool (Ctrl-C, Ctrl-\, a hang-up, kill): each
 * one is caught while the echo is off, so that the terminal echoes again
 * before the signal does what it would have done; one the caller ignores
 * or handles is left as it is. They are blocked but while ppoll waits for
 * input, so that one that comes just before the wait is not taken in
 * between and then waited past.
 */
static const int tty_signals[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGALRM};
#define TTY_NSIG (sizeof(tty_signals) / sizeof(tty_signals[0]))

struct tty_guard {
	struct sigaction old[TTY_NSIG];
	int caught[TTY_NSIG];
	sigset_t mask; /* the mask before: ppoll waits with it */
	int blocked;
};

static void
tty_catch(struct tty_guard *g)
{
	struct sigaction sa;
	sigset_t block;
	size_t i;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_tty_signal;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	tty_signal = 0;
	for (i = 0; i < TTY_NSIG; i++) {
		g->caught[i] =
		    sigaction(tty_signals[i], NULL, &g->old[i]) == 0 &&
		    g->old[i].sa_handler == SIG_DFL &&
		    sigaction(tty_signals[i], &sa, NULL) == 0;
		if (g->caught[i])
			sigaddset(&block, tty_signals[i]);
	}
	g->blocked = sigprocmask(SIG_BLOCK, &block, &g->mask) == 0;
}

/* Handlers back first: a signal still pending then acts as it would. */
static void
tty_release(struct tty_guard *g)
{
	size_t i;

	for (i = 0; i < TTY_NSIG; i++)
		if (g->caught[i])
			(void)sigaction(tty_signals[i], &g->old[i], NULL);
	if (g->blocked)
		(void)sigprocmask(SIG_SETMASK, &g->mask, NULL);
	memset(g->caught, 0, sizeof(g->caught));
	g->blocked = 0;
}

/*
 * Waits until stdin has a byte (or its end) with the caught signals let
 * through; 0, or -1 with errno (EINTR: a signal, in tty_signal).
 */
static int
tty_wait(const struct tty_guard *g)
{
	struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};

	if (!g->blocked)
		return 0;
	return ppoll(&pfd, 1, NULL, &g->mask) < 0 ? -1 : 0;
}

/*
 * One byte at a time with read(2): stdio would keep a copy of the secret
 * in its buffer, and would swallow input meant for a later reader.
 */
int
cli_read_secret(struct cli *c, const char *prompt, char *buf, size_t bufsz)
{
	struct termios saved, quiet;
	struct tty_guard g;
	int restore = 0, ret = -1, sig = 0;
	size_t n = 0;
	ssize_t r;
	char ch = '\0';

	memset(&g, 0, sizeof(g));
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		quiet = saved;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		tty_catch(&g);
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0)
			restore = 1;
		fputs(prompt, stderr);
		fflush(stderr);
	}
	for (;;) {
		r = tty_wait(&g) == 0 ? read(STDIN_FILENO, &ch, 1) : -1;
		if ((sig = tty_signal) != 0)
			goto out;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cli_warn(c, "cannot read stdin: %s", strerror(errno));
			goto out;
		}
		if (r == 0 && n == 0) {
			ret = 1;
			goto out;
		}
		if (r == 0 || ch == '\n')
			break;
		/*
		 * Everything after a NUL would be cut off unseen: "pa\0ss"
		 * would set, or be checked as, the password "pa".
		 */
		if (ch == '\0') {
			cli_warn_rc(c, SOTP_ERR_BAD_INPUT,
			    "input line holds a NUL byte");
			goto out;
		}
		if (n + 1 >= bufsz) {
			cli_warn_rc(c, SOTP_ERR_BAD_INPUT,
			    "input line longer than %zu bytes", bufsz - 1);
			goto out;
		}
		buf[n++] = ch;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	ret = 0;
out:
	sotp_wipe(&ch, sizeof(ch));
	if (ret != 0)
		sotp_wipe(buf, bufsz);
	if (restore) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		fputc('\n', stderr);
	}
	tty_release(&g);
	/* Now that the terminal echoes again: what the signal would do. */
	if (sig != 0)
		raise(sig);
	return ret;
}

/*
 * --json among the global options, wherever it stands: a usage error in
 * an option before it is answered in JSON too.
 */
static int
json_asked(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--json") == 0)
			return 1;
		/* Its value, unless that is an option (global_options). */
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc &&
		    !option_word(argv[i + 1]))
			i++;
	}
	return 0;
}

/* Global options come before the command; returns the command's index. */
static int
global_options(struct cli *c, int argc, char **argv, int *idx)
{
	int i, config_given = 0;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			c->json = 1;
		} else if (strcmp(argv[i], "--debug") == 0) {
			c->debug = 1;
		} else if ((strcmp(argv[i], "--config") == 0 && i + 1 < argc &&
		               !option_word(argv[i + 1])) ||
		    strncmp(argv[i], "--config=", 9) == 0) {
			/* Two policies: which store was meant is a guess. */
			if (config_given++) {
				cli_wipe_secrets(c, argc, argv, i);
				cli_fail_option(c, "--config", 8);
				return cli_usage(
				    c, "option --config given twice");
			}
			c->config = argv[i][8] == '=' ? argv[i] + 9 : argv[++i];
			if (c->config[0] == '\0') {
				cli_wipe_secrets(c, argc, argv, i);
				cli_fail_option(c, "--config", 8);
				return cli_usage(
				    c, "--config: an empty file name");
			}
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			/* "--config --debug init": a policy named "--debug". */
			return value_is_option(
			    c, argc, argv, i, 8, "", "--config");
		} else if (strcmp(argv[i], "--config") == 0) {
			cli_wipe_secrets(c, argc, argv, i);
			cli_fail_option(c, "--config", 8);
			return cli_usage(c, "option --config needs a value");
		} else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			fputs(usage_text, stdout);
			return -1;
		} else {
			/* As cli_parse: the name, not what follows '='. */
			cli_wipe_secrets(c, argc, argv, i);
			cli_fail_option(c, argv[i], strcspn(argv[i], "="));
			return cli_usage(c, "unknown option '%.*s'",
			    (int)strcspn(argv[i], "="), argv[i]);
		}
	}
	if (i == argc)
		return cli_usage(c, "no command (try --help)");
	*idx = i;
	return CLI_EXIT_OK;
}

static int
dispatch(struct cli *c, int argc, char **argv)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[0], commands[i].name) == 0) {
			cli_what(c, argv[0], NULL);
			return commands[i].run(c, argc - 1, argv + 1);
		}
	cli_wipe_secrets(c, argc, argv, 0);
	return cli_usage(c, "unknown command '%s' (try --help)", argv[0]);
}

int
main(int argc, char **argv)
{
	struct cli c;
	struct cli_fail fail;
	const char *env;
	int ex, idx = 0, rc;

	memset(&c, 0, sizeof(c));
	memset(&fail, 0, sizeof(fail));
	c.fail = &fail;
	c.json = json_asked(argc, argv);
	env = getenv("SHINKIN_OTP_CONFIG");
	c.config = env != NULL && env[0] != '\0' ? env : SOTP_DEFAULT_CONFIG;
	/* Whatever the core creates (key, store, WAL) is for us alone. */
	umask(077);
	if ((ex = global_options(&c, argc, argv, &idx)) != CLI_EXIT_OK) {
		if (ex < 0)
			return CLI_EXIT_OK;
		cli_json_fail(&c, ex);
		return ex;
	}
	c.now = time(NULL);
	openlog(CLI_NAME, LOG_PID, LOG_AUTHPRIV);
	if ((rc = sotp_ctx_new(&c.ctx)) != SOTP_OK)
		ex = cli_error(&c, rc);
	else {
		sotp_ctx_set_log(c.ctx, cli_log, &c, c.debug);
		ex = dispatch(&c, argc - idx, argv + idx);
	}
	/* Every command, new ones too: a failure is an object under --json. */
	cli_json_fail(&c, ex);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		cli_warn(&c, "cannot write output: %s", strerror(errno));
		ex = CLI_EXIT_ERROR;
	}
	sotp_ctx_free(c.ctx);
	closelog();
	return ex;
}

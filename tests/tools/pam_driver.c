/*
 * pam_driver.c - drives the real libpam for the PAM integration tests.
 *
 *   pam_driver -c CONFDIR -s SERVICE -u USER [-n COUNT] [-q]
 *              [-g GRIDFILE] [-A ANSWERFILE] [-k MODULE] [ANSWER ...]
 *
 * pam_start_confdir() reads the service file from CONFDIR, so no root and
 * no /etc/pam.d are needed and nothing falls back to the system stack. The
 * conversation hands out the answers in order (from the arguments, then
 * from ANSWERFILE, one per line) and prints what it saw:
 *
 *   prompt-off: Password:      prompt-on: Token serial:
 *   info: ...                  error: ...
 *   result: PAM_SUCCESS
 *
 * The answer "@card" is computed from the card grid that `shinkin-otp
 * contract card` printed into GRIDFILE, for the cells the prompt names
 * ("... the digits at B7 E2: ", "...B行7列、E行2列..."); "@card-wrong"
 * gives every digit off by one. "@null-array" and "@null-resp" play a
 * broken application: the conversation returns PAM_SUCCESS with no
 * response array, or with a NULL answer in it; "@conv-err" makes it
 * return PAM_CONV_ERR; "@conv-again" PAM_CONV_AGAIN, as an event-driven
 * application with no answer yet (call pam_authenticate again with
 * "-O auth,auth": the answers go on where they stopped). "@big:N"
 * answers N bytes of '7' (more than one command-line argument may hold).
 *
 * USER "@null" starts PAM with no user (the module must ask for one
 * through the conversation), "@empty" with "". -N adds
 * PAM_DISALLOW_NULL_AUTHTOK to the flags. SERVICE may be a
 * comma-separated list taken in turn, as USER. -O OP calls another entry
 * point instead of pam_authenticate: setcred, acct, open, close or
 * chauthtok; "-O auth,setcred" calls both in turn and prints "setcred:
 * NAME" for the second, after the first's "result:" line is decided.
 *
 * With -n COUNT the whole authentication runs COUNT times in one process
 * (for valgrind): USER may then be a comma-separated list taken in turn,
 * the answers restart each time, and only "result: NAME xN" totals are
 * printed. -k MODULE keeps that module loaded between cycles. -q passes
 * PAM_SILENT. -W FIFO waits, before each cycle after the first, for a line
 * on FIFO (the test changes something in between); -F runs each cycle
 * after the first in a forked child; both print every cycle's output,
 * each cycle headed "cycle: N". -L PATH prints, after the cycles, "open:
 * N", how many of this process's descriptors are open on files whose path
 * starts with PATH (a module's kept store handle). -C UID:GID[:G1+G2...],
 * given once per cycle in order, runs that cycle under those effective
 * user and group IDs and supplementary groups (none without the third
 * part); the driver must start as root, and prints every cycle's output
 * as -W does. -X UID:GID[:G1+G2...] takes those on in the conversation,
 * at the first prompt of the run, as an application that changes its
 * effective IDs while the module waits for an answer. -D DIR changes to DIR
 * before each cycle after the first (and prints every cycle's output). -v
 * prints every cycle's output, with nothing else changed. -t
 * prints "cpu-us: N", the CPU time the cycles took (the defect 2 test compares
 * an unknown contract's with a wrong password's). Exit status: 0 when every run
 * reached pam_authenticate, 2 on usage errors, 3 when pam_start_confdir failed.
 * -e opens syslog with LOG_PERROR: each line a module hands to pam_syslog
 * is also written whole to stderr, as the syslog daemon would receive it
 * (pam_wrapper's own copy of those lines stops at 1 KiB).
 */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>

#define MAX_ANSWERS 32
#define MAX_USERS 32
#define MAX_SERVICES 8
#define MAX_CREDS 8
#define MAX_GROUPS 8
#define GRID_ROWS 26
#define GRID_COLS 32
#define CELL_MAX 8

struct grid {
	char cell[GRID_ROWS][GRID_COLS][CELL_MAX];
};

struct driver {
	const char *answers[MAX_ANSWERS];
	int nanswers;
	int next;
	int verbose;
	const struct grid *grid;
	const char *switch_to; /* -X: credentials taken on at a prompt */
	int switched;
};

static int become(const char *spec);

static const char *const pam_names[] = {
    "PAM_SUCCESS",
    "PAM_OPEN_ERR",
    "PAM_SYMBOL_ERR",
    "PAM_SERVICE_ERR",
    "PAM_SYSTEM_ERR",
    "PAM_BUF_ERR",
    "PAM_PERM_DENIED",
    "PAM_AUTH_ERR",
    "PAM_CRED_INSUFFICIENT",
    "PAM_AUTHINFO_UNAVAIL",
    "PAM_USER_UNKNOWN",
    "PAM_MAXTRIES",
    "PAM_NEW_AUTHTOK_REQD",
    "PAM_ACCT_EXPIRED",
    "PAM_SESSION_ERR",
    "PAM_CRED_UNAVAIL",
    "PAM_CRED_EXPIRED",
    "PAM_CRED_ERR",
    "PAM_NO_MODULE_DATA",
    "PAM_CONV_ERR",
    "PAM_AUTHTOK_ERR",
    "PAM_AUTHTOK_RECOVERY_ERR",
    "PAM_AUTHTOK_LOCK_BUSY",
    "PAM_AUTHTOK_DISABLE_AGING",
    "PAM_TRY_AGAIN",
    "PAM_IGNORE",
    "PAM_ABORT",
    "PAM_AUTHTOK_EXPIRED",
    "PAM_MODULE_UNKNOWN",
    "PAM_BAD_ITEM",
    "PAM_CONV_AGAIN",
    "PAM_INCOMPLETE",
};
#define NPAM_NAMES (int)(sizeof(pam_names) / sizeof(pam_names[0]))

static const char *
pam_name(int rc)
{
	return rc >= 0 && rc < NPAM_NAMES ? pam_names[rc] : "PAM_UNKNOWN";
}

/*
 * Reads the printed grid: a header line, then one line per row starting
 * with the row letter. A row is either one digit per cell separated by
 * blanks, or a single run of digits (one per column).
 */
static int
grid_load(const char *path, struct grid *g)
{
	FILE *f;
	char line[512], *tok, *save = NULL, *toks[GRID_COLS];
	int row, n, rows = 0;
	size_t i;

	memset(g, 0, sizeof(*g));
	if ((f = fopen(path, "r")) == NULL) {
		perror(path);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		tok = line + strspn(line, " \t");
		if (tok[0] < 'A' || tok[0] > 'Z' ||
		    strchr(" \t|:", tok[1]) == NULL)
			continue;
		row = tok[0] - 'A';
		n = 0;
		for (tok = strtok_r(tok + 1, " \t|:\r\n", &save);
		     tok != NULL && n < GRID_COLS;
		     tok = strtok_r(NULL, " \t|:\r\n", &save)) {
			if (strspn(tok, "0123456789") != strlen(tok))
				break;
			toks[n++] = tok;
		}
		if (n == 1 && strlen(toks[0]) > 1) {
			/* one run of digits: a cell per digit */
			for (i = 0; toks[0][i] != '\0' && i < GRID_COLS; i++)
				g->cell[row][i][0] = toks[0][i];
		} else {
			for (i = 0; i < (size_t)n; i++)
				snprintf(
				    g->cell[row][i], CELL_MAX, "%s", toks[i]);
		}
		rows++;
	}
	fclose(f);
	return rows > 0 ? 0 : -1;
}

/*
 * The cells a card prompt names, in order, in either catalog's words:
 * "B7 E2" or "B行7列、E行2列". A cell is a capital letter that follows no
 * ASCII letter, then (after any non-ASCII bytes, such as 行) its column
 * digit; "Confirmation" is no cell.
 */
static char *
card_answer(const struct grid *g, const char *prompt, int wrong)
{
	char buf[128] = "";
	const unsigned char *p = (const unsigned char *)prompt, *q;
	char *end;
	long col;
	int row;

	if (g == NULL)
		return NULL;
	for (; *p != '\0'; p++) {
		if (*p < 'A' || *p > 'Z' ||
		    (p > (const unsigned char *)prompt &&
		        ((p[-1] >= 'A' && p[-1] <= 'Z') ||
		            (p[-1] >= 'a' && p[-1] <= 'z'))))
			continue;
		for (q = p + 1; *q >= 0x80; q++)
			;
		if (*q < '0' || *q > '9')
			continue;
		row = *p - 'A';
		col = strtol((const char *)q, &end, 10);
		if (col < 0 || col >= GRID_COLS || g->cell[row][col][0] == '\0')
			return NULL;
		strncat(buf, g->cell[row][col], sizeof(buf) - strlen(buf) - 1);
		p = (const unsigned char *)end - 1;
	}
	/* every digit off by one: wrong at every cell */
	for (end = buf; wrong && *end != '\0'; end++)
		*end = (char)('0' + (*end - '0' + 1) % 10);
	return buf[0] != '\0' ? strdup(buf) : NULL;
}

/* "@big:N": N bytes of '7'; any other value copied. */
static char *
magic_value(const char *a)
{
	char *p;
	long n;

	if (strncmp(a, "@big:", 5) != 0)
		return strdup(a);
	n = strtol(a + 5, NULL, 10);
	if (n < 0 || n > 64L * 1024 * 1024 ||
	    (p = malloc((size_t)n + 1)) == NULL)
		return NULL;
	memset(p, '7', (size_t)n);
	p[n] = '\0';
	return p;
}

static char *
next_answer(struct driver *dr, const char *prompt)
{
	const char *a;

	if (dr->next >= dr->nanswers)
		return NULL;
	a = dr->answers[dr->next++];
	if (strcmp(a, "@card") == 0)
		return card_answer(dr->grid, prompt, 0);
	if (strcmp(a, "@card-wrong") == 0)
		return card_answer(dr->grid, prompt, 1);
	return magic_value(a);
}

static int
conv(int n, const struct pam_message **msg, struct pam_response **resp,
    void *arg)
{
	struct driver *dr = arg;
	struct pam_response *r;
	int i;

	*resp = NULL;
	if (n <= 0 || (r = calloc((size_t)n, sizeof(*r))) == NULL)
		return PAM_CONV_ERR;
	for (i = 0; i < n; i++) {
		const char *text = msg[i]->msg != NULL ? msg[i]->msg : "";

		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF:
		case PAM_PROMPT_ECHO_ON:
			if (dr->verbose)
				printf("prompt-%s: %s\n",
				    msg[i]->msg_style == PAM_PROMPT_ECHO_ON
				        ? "on"
				        : "off",
				    text);
			if (dr->switch_to != NULL && !dr->switched) {
				dr->switched = 1;
				if (become(dr->switch_to) != 0)
					goto fail;
			}
			/* A broken application: success, but no answer. */
			if (dr->next < dr->nanswers &&
			    strcmp(dr->answers[dr->next], "@null-array") == 0) {
				dr->next++;
				free(r);
				return PAM_SUCCESS;
			}
			if (dr->next < dr->nanswers &&
			    strcmp(dr->answers[dr->next], "@null-resp") == 0) {
				dr->next++;
				break;
			}
			if (dr->next < dr->nanswers &&
			    strcmp(dr->answers[dr->next], "@conv-err") == 0) {
				dr->next++;
				goto fail;
			}
			if (dr->next < dr->nanswers &&
			    strcmp(dr->answers[dr->next], "@conv-again") == 0) {
				dr->next++;
				if (dr->verbose)
					printf("conv: again\n");
				free(r);
				return PAM_CONV_AGAIN;
			}
			if ((r[i].resp = next_answer(dr, text)) == NULL)
				goto fail;
			break;
		case PAM_TEXT_INFO:
			if (dr->verbose)
				printf("info: %s\n", text);
			break;
		case PAM_ERROR_MSG:
			if (dr->verbose)
				printf("error: %s\n", text);
			break;
		default:
			goto fail;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
fail:
	if (dr->verbose)
		printf("conv: no answer\n");
	for (i = 0; i < n; i++) {
		if (r[i].resp != NULL) {
			memset(r[i].resp, 0, strlen(r[i].resp));
			free(r[i].resp);
		}
	}
	free(r);
	return PAM_CONV_ERR;
}

static int
read_answers(const char *path, struct driver *dr, char **store)
{
	FILE *f;
	char line[256];

	if ((f = fopen(path, "r")) == NULL) {
		perror(path);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL &&
	    dr->nanswers < MAX_ANSWERS) {
		line[strcspn(line, "\r\n")] = '\0';
		if ((store[dr->nanswers] = strdup(line)) == NULL)
			break;
		dr->answers[dr->nanswers] = store[dr->nanswers];
		dr->nanswers++;
	}
	fclose(f);
	return 0;
}

/* How many of our descriptors are open on paths starting with prefix. */
static int
open_on(const char *prefix)
{
	char link[320], target[PATH_MAX];
	struct dirent *e;
	DIR *d;
	ssize_t n;
	int count = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		if ((n = readlink(link, target, sizeof(target) - 1)) < 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, prefix, strlen(prefix)) == 0)
			count++;
	}
	closedir(d);
	return count;
}

/*
 * Takes on the credentials of spec "UID:GID[:G1+G2...]" as effective
 * IDs only, so that the next cycle can take on others: back to root
 * first, then the groups, the group, the user.
 */
static int
become(const char *spec)
{
	gid_t groups[MAX_GROUPS];
	unsigned long uid, gid;
	const char *p = spec;
	char *end;
	size_t n = 0;

	uid = strtoul(p, &end, 10);
	if (end == p || *end != ':')
		goto bad;
	p = end + 1;
	gid = strtoul(p, &end, 10);
	if (end == p || (*end != ':' && *end != '\0'))
		goto bad;
	while (*end != '\0' && n < MAX_GROUPS) {
		p = end + 1;
		groups[n++] = (gid_t)strtoul(p, &end, 10);
		if (end == p || (*end != '+' && *end != '\0'))
			goto bad;
	}
	if (*end != '\0')
		goto bad;
	if ((geteuid() != 0 && seteuid(0) != 0) || setegid(0) != 0 ||
	    setgroups(n, groups) != 0 || setegid((gid_t)gid) != 0 ||
	    seteuid((uid_t)uid) != 0) {
		perror("-C");
		return -1;
	}
	return 0;
bad:
	fprintf(stderr, "-C %s: not UID:GID[:G1+G2...]\n", spec);
	return -1;
}

static int
usage(void)
{
	fprintf(stderr,
	    "usage: pam_driver -c CONFDIR -s SERVICE -u USER "
	    "[-n COUNT] [-q] [-t] [-v] [-e] [-g GRIDFILE] [-A ANSWERFILE] [-k MODULE] "
	    "[-W FIFO] [-F] [-L PATH] [-C UID:GID[:G1+G2...]]... [-X UID:GID[:G...]] "
	    "[-D DIR] [-N] [-O OP[,OP]] "
	    "[ANSWER ...]\n");
	return 2;
}

static int
call_op(pam_handle_t *ph, const char *op, int flags)
{
	if (strcmp(op, "auth") == 0)
		return pam_authenticate(ph, flags);
	if (strcmp(op, "setcred") == 0)
		return pam_setcred(ph, flags | PAM_ESTABLISH_CRED);
	if (strcmp(op, "acct") == 0)
		return pam_acct_mgmt(ph, flags);
	if (strcmp(op, "open") == 0)
		return pam_open_session(ph, flags);
	if (strcmp(op, "close") == 0)
		return pam_close_session(ph, flags);
	if (strcmp(op, "chauthtok") == 0)
		return pam_chauthtok(ph, flags);
	return -1;
}

/*
 * One pam_start_confdir / entry points / pam_end cycle; *result is the
 * first entry point's, later ones are printed.
 */
static int
authenticate_once(const char *confdir, const char *service, const char *user,
    int flags, struct driver *dr, const char *ops_arg, int *result)
{
	struct pam_conv pc = {conv, dr};
	pam_handle_t *ph = NULL;
	char ops[64], *op, *save = NULL;
	int rc, first = 1;

	dr->next = 0;
	if (user != NULL && strcmp(user, "@null") == 0)
		user = NULL;
	else if (user != NULL && strcmp(user, "@empty") == 0)
		user = "";
	if ((rc = pam_start_confdir(service, user, &pc, confdir, &ph)) !=
	    PAM_SUCCESS) {
		fprintf(stderr, "pam_start_confdir: %s\n", pam_name(rc));
		return -1;
	}
	snprintf(ops, sizeof(ops), "%s", ops_arg != NULL ? ops_arg : "auth");
	for (op = strtok_r(ops, ",", &save); op != NULL;
	     op = strtok_r(NULL, ",", &save)) {
		if ((rc = call_op(ph, op, flags)) < 0) {
			fprintf(stderr, "-O %s: no such entry point\n", op);
			pam_end(ph, PAM_SYSTEM_ERR);
			return -1;
		}
		if (first)
			*result = rc;
		else
			printf("%s: %s\n", op, pam_name(rc));
		first = 0;
	}
	pam_end(ph, *result);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *confdir = NULL;
	const char *users[MAX_USERS], *services[MAX_SERVICES];
	char *userlist = NULL, *servicelist = NULL, *tok, *save = NULL;
	int nusers = 0, nservices = 0;
	const char *ops = NULL;
	const char *gridfile = NULL, *answerfile = NULL, *keep = NULL;
	const char *waitfile = NULL, *openpath = NULL;
	const char *creds[MAX_CREDS], *chdir_to = NULL;
	int ncreds = 0;
	FILE *waitf = NULL;
	char line[64];
	int forking = 0, wst;
	pid_t pid;
	void *kept = NULL;
	char *owned[MAX_ANSWERS] = {NULL};
	struct driver dr;
	struct grid g;
	long count = 1, i;
	int ch, flags = 0, result, ret = 0, cpu = 0;
	long totals[NPAM_NAMES + 1] = {0};
	struct timespec t0, t1;

	memset(&dr, 0, sizeof(dr));
	while ((ch = getopt(argc, argv, "c:s:u:n:qtveg:A:k:W:FL:C:D:X:NO:")) !=
	    -1) {
		switch (ch) {
		case 'c':
			confdir = optarg;
			break;
		case 's':
			servicelist = optarg;
			break;
		case 'N':
			flags |= PAM_DISALLOW_NULL_AUTHTOK;
			break;
		case 'O':
			ops = optarg;
			break;
		case 'u':
			userlist = optarg;
			break;
		case 'n':
			count = strtol(optarg, NULL, 10);
			break;
		case 'q':
			flags |= PAM_SILENT;
			break;
		case 't':
			cpu = 1;
			break;
		case 'v':
			dr.verbose = 1;
			break;
		case 'e':
			openlog("pam_driver", LOG_PERROR, LOG_AUTHPRIV);
			break;
		case 'g':
			gridfile = optarg;
			break;
		case 'A':
			answerfile = optarg;
			break;
		case 'k':
			keep = optarg;
			break;
		case 'W':
			waitfile = optarg;
			break;
		case 'F':
			forking = 1;
			break;
		case 'L':
			openpath = optarg;
			break;
		case 'D':
			chdir_to = optarg;
			break;
		case 'X':
			dr.switch_to = optarg;
			break;
		case 'C':
			if (ncreds == MAX_CREDS)
				return usage();
			creds[ncreds++] = optarg;
			break;
		default:
			return usage();
		}
	}
	for (tok = userlist != NULL ? strtok_r(userlist, ",", &save) : NULL;
	     tok != NULL && nusers < MAX_USERS;
	     tok = strtok_r(NULL, ",", &save))
		users[nusers++] = tok;
	save = NULL;
	for (tok = servicelist != NULL ? strtok_r(servicelist, ",", &save)
	                               : NULL;
	     tok != NULL && nservices < MAX_SERVICES;
	     tok = strtok_r(NULL, ",", &save))
		services[nservices++] = tok;
	if (confdir == NULL || nservices == 0 || nusers == 0 || count < 1 ||
	    argc - optind > MAX_ANSWERS)
		return usage();
	for (; optind < argc; optind++)
		dr.answers[dr.nanswers++] = argv[optind];
	if (answerfile != NULL && read_answers(answerfile, &dr, owned) != 0)
		return 2;
	if (gridfile != NULL) {
		if (grid_load(gridfile, &g) != 0)
			return 2;
		dr.grid = &g;
	}
	/*
	 * libpam unloads the module at every pam_end; holding one more
	 * reference keeps it (and libcrypto, SQLite) mapped across cycles,
	 * which spares valgrind re-reading their symbols a thousand times.
	 */
	if (keep != NULL && (kept = dlopen(keep, RTLD_NOW)) == NULL) {
		fprintf(stderr, "%s\n", dlerror());
		return 2;
	}
	dr.verbose = dr.verbose || count == 1 || waitfile != NULL || forking ||
	    ncreds > 0 || chdir_to != NULL || dr.switch_to != NULL;
	/* O_RDWR: opening a FIFO so does not wait for its writer (Linux). */
	if (waitfile != NULL &&
	    ((ch = open(waitfile, O_RDWR | O_CLOEXEC)) < 0 ||
	        (waitf = fdopen(ch, "r")) == NULL)) {
		perror(waitfile);
		return 2;
	}
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	for (i = 0; i < count; i++) {
		if (count > 1 && dr.verbose)
			printf("cycle: %ld\n", i + 1);
		fflush(stdout);
		if (i > 0 && waitf != NULL &&
		    fgets(line, sizeof(line), waitf) == NULL) {
			ret = 2;
			break;
		}
		if (i > 0 && chdir_to != NULL && chdir(chdir_to) != 0) {
			perror(chdir_to);
			ret = 2;
			break;
		}
		if (i < ncreds && become(creds[i]) != 0) {
			ret = 2;
			break;
		}
		if (i > 0 && forking) {
			if ((pid = fork()) < 0) {
				ret = 2;
				break;
			}
			if (pid == 0) {
				if (authenticate_once(confdir,
				        services[i % nservices],
				        users[i % nusers], flags, &dr, ops,
				        &result) != 0)
					_exit(3);
				printf("result: %s\n", pam_name(result));
				fflush(stdout);
				_exit(0);
			}
			if (waitpid(pid, &wst, 0) != pid || !WIFEXITED(wst) ||
			    WEXITSTATUS(wst) != 0) {
				ret = 3;
				break;
			}
			continue;
		}
		if (authenticate_once(confdir, services[i % nservices],
		        users[i % nusers], flags, &dr, ops, &result) != 0) {
			ret = 3;
			break;
		}
		if (dr.verbose && count > 1)
			printf("result: %s\n", pam_name(result));
		totals[result >= 0 && result < NPAM_NAMES ? result
		                                          : NPAM_NAMES]++;
	}
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	/* Root again: LeakSanitizer cannot inspect the process otherwise. */
	if ((ncreds > 0 || dr.switched) && become("0:0") != 0)
		ret = 2;
	if (cpu)
		printf("cpu-us: %ld\n",
		    (long)(t1.tv_sec - t0.tv_sec) * 1000000L +
		        (t1.tv_nsec - t0.tv_nsec) / 1000);
	if (openpath != NULL)
		printf("open: %d\n", open_on(openpath));
	for (ch = 0; ch <= NPAM_NAMES && !(dr.verbose && count > 1); ch++) {
		if (totals[ch] == 0)
			continue;
		if (count == 1)
			printf("result: %s\n", pam_name(ch));
		else
			printf("result: %s x%ld\n", pam_name(ch), totals[ch]);
	}
	for (ch = 0; ch < MAX_ANSWERS; ch++)
		free(owned[ch]);
	if (kept != NULL)
		dlclose(kept);
	if (waitf != NULL)
		fclose(waitf);
	return ret;
}

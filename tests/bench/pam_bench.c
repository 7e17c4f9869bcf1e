/*
 * pam_bench.c - PAM cycles per second through the real libpam, for
 * several PAM services in one run (pam_bench.sh writes them).
 *
 *   pam_bench CONFDIR PREFIX NUSERS CYCLES BUDGET SERVICE...
 *
 * A cycle is what tests/tools/pam_driver.c does once: pam_start_confdir,
 * pam_authenticate, pam_end. Every user PREFIX0000000..PREFIX(NUSERS-1)
 * holds the same TOTP secret, so one code per 30 s step serves them all;
 * the codes come from oathtool (a table of the next steps, read once at
 * start), so this process links nothing but libpam and loads no crypto
 * or SQLite library itself: each module pays for what it loads.
 *
 * Each service runs CYCLES cycles (at most NUSERS, so that every user
 * answers one code once, the way a customer does; "permit" is not limited).
 * SERVICE@FIRST+COUNT gives a service users FIRST..FIRST+COUNT-1 only (and
 * at most COUNT cycles), for two services over one store. The service
 * "fdatasync" is no PAM call: a 4 KiB write and fdatasync per cycle, the
 * least one durable commit costs on this disk.
 * in 4 rounds, interleaved with the other services so that a slow moment
 * of the machine falls on all of them alike. A service whose rounds take
 * longer than BUDGET seconds in total stops early (its rate is from the
 * cycles it ran). Every cycle must end in PAM_SUCCESS: a single refusal
 * makes the run invalid (exit 1). Prints one line per service:
 *
 *   SERVICE CYCLES WALL_US CPU_US
 */
#include "bench_clock.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_appl.h>

#define XSTR(x) #x
#define STR(x) XSTR(x)
#define SECRET_HEX "3132333435363738393031323334353637383930"
#define STEPS 60 /* codes for 30 minutes */
#define ROUNDS 4
#define MAX_SERVICES 8

static char codes[STEPS + 1][16];
static long code_step0;

struct svc {
	char name[64];
	long first, count; /* its users: first .. first + count - 1 */
	long cycles, next_user;
	double wall, cpu;
};

/* oathtool --totp -w N prints the code of now, then the next N. */
static int
load_codes(void)
{
	FILE *p;
	long before;
	int i;

	do {
		before = (long)(time(NULL) / 30);
		if ((p = popen("oathtool --totp -w " STR(STEPS) " " SECRET_HEX,
		         "r")) == NULL)
			return -1;
		for (i = 0;
		     i <= STEPS && fgets(codes[i], sizeof(codes[i]), p) != NULL;
		     i++)
			codes[i][strcspn(codes[i], "\r\n")] = '\0';
		if (pclose(p) != 0 || i != STEPS + 1)
			return -1;
		code_step0 = before;
	} while ((long)(time(NULL) / 30) != before);
	return 0;
}

static const char *
code_now(void)
{
	long k = (long)(time(NULL) / 30) - code_step0;

	if (k < 0 || k > STEPS) {
		fprintf(stderr, "pam_bench: ran past the code table\n");
		exit(1);
	}
	return codes[k];
}

static int
conv(int n, const struct pam_message **msg, struct pam_response **resp,
    void *arg)
{
	struct pam_response *r;
	int i;

	(void)arg;
	*resp = NULL;
	if (n <= 0 || (r = calloc((size_t)n, sizeof(*r))) == NULL)
		return PAM_CONV_ERR;
	for (i = 0; i < n; i++) {
		if (msg[i]->msg_style != PAM_PROMPT_ECHO_OFF &&
		    msg[i]->msg_style != PAM_PROMPT_ECHO_ON)
			continue;
		if ((r[i].resp = strdup(code_now())) == NULL) {
			while (i-- > 0)
				free(r[i].resp);
			free(r);
			return PAM_CONV_ERR;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
}

/*
 * The pseudo-service "fdatasync": a 4 KiB write and fdatasync of a file in
 * CONFDIR per cycle, what one durable commit costs on this disk at least.
 */
static void
sync_cycle(const char *confdir)
{
	static int fd = -1;
	static char page[4096];
	static long n;
	char path[512];

	if (fd < 0) {
		snprintf(path, sizeof(path), "%s/fdatasync.dat", confdir);
		if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
			perror(path);
			exit(1);
		}
	}
	if (pwrite(fd, page, sizeof(page), (off_t)(n++ % 16) * 4096) !=
	        (ssize_t)sizeof(page) ||
	    fdatasync(fd) != 0) {
		perror("fdatasync");
		exit(1);
	}
}

/* Up to n cycles of one service; returns how many ran. */
static long
run(const char *confdir, const char *prefix, struct svc *s, long n,
    double budget_us)
{
	struct pam_conv pc = {conv, NULL};
	pam_handle_t *ph = NULL;
	char user[64];
	double t = now_us(), c = cpu_us();
	long i;
	int rc;

	for (i = 0; i < n && now_us() - t + s->wall < budget_us; i++) {
		if (strcmp(s->name, "fdatasync") == 0) {
			sync_cycle(confdir);
			continue;
		}
		snprintf(user, sizeof(user), "%s%07ld", prefix,
		    s->first + s->next_user++ % s->count);
		if ((rc = pam_start_confdir(
		         s->name, user, &pc, confdir, &ph)) != PAM_SUCCESS) {
			fprintf(stderr, "pam_bench: %s: pam_start: %d\n",
			    s->name, rc);
			exit(1);
		}
		rc = pam_authenticate(ph, PAM_SILENT);
		pam_end(ph, rc);
		if (rc != PAM_SUCCESS) {
			fprintf(stderr, "pam_bench: %s: %s refused: %s\n",
			    s->name, user, pam_strerror(NULL, rc));
			exit(1);
		}
	}
	s->wall += now_us() - t;
	s->cpu += cpu_us() - c;
	s->cycles += i;
	return i;
}

int
main(int argc, char **argv)
{
	struct svc s[MAX_SERVICES];
	const char *confdir, *prefix;
	long nusers, cycles, want, round;
	double budget;
	int i, ns;

	if (argc < 7 || argc - 6 > MAX_SERVICES) {
		fprintf(stderr,
		    "usage: pam_bench CONFDIR PREFIX NUSERS CYCLES "
		    "BUDGET SERVICE...\n");
		return 2;
	}
	confdir = argv[1];
	prefix = argv[2];
	nusers = atol(argv[3]);
	cycles = atol(argv[4]);
	budget = atof(argv[5]) * 1e6;
	if (nusers < 1 || cycles < ROUNDS || budget <= 0)
		return 2;
	ns = argc - 6;
	memset(s, 0, sizeof(s));
	for (i = 0; i < ns; i++) {
		char *at;

		snprintf(s[i].name, sizeof(s[i].name), "%s", argv[6 + i]);
		s[i].count = nusers;
		if ((at = strchr(s[i].name, '@')) != NULL) {
			*at = '\0';
			if (sscanf(at + 1, "%ld+%ld", &s[i].first,
			        &s[i].count) != 2 ||
			    s[i].first < 0 || s[i].count < 1 ||
			    s[i].first + s[i].count > nusers)
				return 2;
		}
	}
	if (load_codes() != 0) {
		fprintf(stderr, "pam_bench: cannot read codes from oathtool\n");
		return 1;
	}
	for (round = 0; round < ROUNDS; round++) {
		for (i = 0; i < ns; i++) {
			want = strcmp(s[i].name, "permit") == 0 ||
			        strcmp(s[i].name, "fdatasync") == 0 ||
			        cycles <= s[i].count
			    ? cycles
			    : s[i].count;
			want = want / ROUNDS;
			run(confdir, prefix, &s[i], want, budget);
		}
	}
	for (i = 0; i < ns; i++)
		printf("%s %ld %.0f %.0f\n", s[i].name, s[i].cycles, s[i].wall,
		    s[i].cpu);
	return 0;
}

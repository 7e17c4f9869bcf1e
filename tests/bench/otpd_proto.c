/*
 * otpd_proto.c - the daemon route of issue 13, built only to be measured
 * (`make bench`, tests/bench/pam_bench.sh): one process holds the warm
 * context (policy, key, open store) and decides for PAM calls that reach
 * it over a UNIX socket, as sssd serves pam_sss. Its client is
 * pam_otpd_proto.c; the wire is otpd_proto.h.
 *
 *   otpd_proto CONFIG SOCKET
 *
 * Serves one connection at a time (the bench's PAM calls come one after
 * another), checks the caller with SO_PEERCRED (root or its own user), logs
 * through syslog(3) as the PAM module does, and on SIGTERM prints
 * "REQUESTS CPU_US" (its CPU time since it began to listen) and exits.
 * Every decision is the engine's, committed before the answer, as in
 * the module. Not installed, not a product: a real daemon would need a
 * unit, a man page and its own fail-closed path.
 */
#define _GNU_SOURCE
#include "otpd_proto.h"
#include "bench_clock.h"
#include "shinkin_otp.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>

#define MAX_ROUNDS 8

static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void
log_sink(void *arg, int prio, const char *fmt, va_list ap)
{
	(void)arg;
	vsyslog(prio, fmt, ap);
}

/* A caller is served when it runs as root or as this daemon's user. */
static int
peer_allowed(int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 &&
	    (cr.uid == 0 || cr.uid == getuid());
}

/* One PAM call: its questions relayed, then the verdict. */
static void
serve(struct sotp_ctx *ctx, int fd)
{
	char user[OTPD_MAX], context[OTPD_MAX], buf[OTPD_MAX];
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	int rc, round;
	char verdict = '!';

	memset(&d, 0, sizeof(d));
	if (!peer_allowed(fd) || otpd_recv(fd, user) != 'U' ||
	    otpd_recv(fd, context) != 'C')
		return;
	if (sotp_ctx_stale(ctx)) {
		syslog(LOG_ERR, "policy or key changed: restart otpd_proto");
		goto out;
	}
	rc = sotp_attempt_begin(ctx, user, context, time(NULL), &a);
	for (round = 0; rc == SOTP_OK; round++) {
		if ((rc = sotp_attempt_step(a, &d)) != SOTP_OK ||
		    d.verdict != SOTP_CONTINUE)
			break;
		if (round >= MAX_ROUNDS ||
		    otpd_send(fd, d.echo ? 'E' : 'Q', d.prompt) != 0 ||
		    otpd_recv(fd, buf) != 'A')
			goto out;
		rc = sotp_attempt_answer(a, buf);
		sotp_wipe(buf, sizeof(buf));
	}
	if (rc != SOTP_OK)
		syslog(LOG_ERR, "context %s: %s: %s", context,
		    sotp_strerror(rc), sotp_ctx_errmsg(ctx));
	else
		verdict = d.verdict == SOTP_ACCEPT && !d.locked ? '+' : '-';
out:
	sotp_wipe(buf, sizeof(buf));
	sotp_attempt_free(a);
	(void)otpd_send(fd, verdict, d.message);
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct sigaction sa;
	struct sotp_ctx *ctx = NULL;
	struct timeval tv = {5, 0};
	long served = 0;
	double cpu0;
	int lfd, fd;

	if (argc != 3 || strlen(argv[2]) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "usage: otpd_proto CONFIG SOCKET\n");
		return 2;
	}
	openlog("otpd_proto", LOG_PID, LOG_AUTHPRIV);
	if (sotp_ctx_new(&ctx) != SOTP_OK)
		return 1;
	sotp_ctx_set_log(ctx, log_sink, NULL, 0);
	if (sotp_ctx_load(ctx, argv[1]) != SOTP_OK) {
		fprintf(stderr, "otpd_proto: %s\n", sotp_ctx_errmsg(ctx));
		return 1;
	}
	memcpy(sun.sun_path, argv[2], strlen(argv[2]) + 1);
	(void)unlink(argv[2]);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    chmod(argv[2], 0600) != 0 || listen(lfd, 16) != 0) {
		perror(argv[2]);
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term; /* no SA_RESTART: accept returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	cpu0 = cpu_us();
	while (!stop) {
		if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
			continue;
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		serve(ctx, fd);
		close(fd);
		served++;
	}
	printf("%ld %.0f\n", served, cpu_us() - cpu0);
	sotp_ctx_free(ctx);
	(void)unlink(argv[2]);
	return 0;
}

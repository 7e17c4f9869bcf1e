/*
 * syslog_sink.c - a private syslog listener for tests: binds a unix
 * datagram socket (what syslog(3) writes to at /dev/log) and appends each
 * message to a file, one line each.
 *   syslog_sink SOCKET FILE [SECONDS]
 * The file is created once the socket is bound, so a test can wait for
 * it. Stops on SIGTERM or SIGINT, or by itself after SECONDS (60).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(int argc, char **argv)
{
	struct sockaddr_un sun;
	struct sigaction sa;
	struct pollfd pfd;
	char buf[8192];
	long limit = 60;
	time_t end;
	ssize_t n;
	FILE *out = NULL;
	int fd = -1, rc = 1;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: syslog_sink SOCKET FILE [SECONDS]\n");
		return 2;
	}
	if (argc == 4 && ((limit = strtol(argv[3], NULL, 10)) < 1))
		limit = 60;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(argv[1]) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "syslog_sink: socket path too long\n");
		return 2;
	}
	strcpy(sun.sun_path, argv[1]);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		fprintf(
		    stderr, "syslog_sink: %s: %s\n", argv[1], strerror(errno));
		goto out;
	}
	if ((out = fopen(argv[2], "w")) == NULL) {
		fprintf(
		    stderr, "syslog_sink: %s: %s\n", argv[2], strerror(errno));
		goto out;
	}
	end = time(NULL) + limit;
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		/* Once told to stop, drain what is queued, then go. */
		if (!stop && time(NULL) < end && poll(&pfd, 1, 200) <= 0)
			continue;
		if ((n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) <= 0) {
			if (stop || time(NULL) >= end)
				break;
			continue;
		}
		/* One message, one line: syslog(3) ends none with '\n'. */
		while (n > 0 && buf[n - 1] == '\n')
			n--;
		buf[n] = '\0';
		fprintf(out, "%s\n", buf);
		fflush(out);
	}
	rc = 0;
out:
	if (out != NULL)
		fclose(out);
	if (fd >= 0)
		close(fd);
	unlink(argv[1]);
	return rc;
}

/*
 * pam_otpd_proto.c - the thin PAM client of the bench's daemon prototype
 * (otpd_proto.c; the wire is otpd_proto.h). It links libpam and libc
 * only: it loads no SQLite, no OpenSSL and reads no key, which is what
 * a daemon would save a process that authenticates once (sshd forks one
 * per connection).
 *
 *   auth required pam_otpd_proto.so socket=PATH context=NAME
 *
 * Fails closed: no daemon, a broken reply or a timeout (5 s) is a
 * refusal (PAM_AUTHINFO_UNAVAIL).
 */
#include "otpd_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>

static int
dial(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {5, 0};
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path) ||
	    (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Relays the daemon's questions; PAM_SUCCESS only for its accept. */
static int
converse(pam_handle_t *pamh, int fd)
{
	char buf[OTPD_MAX], *resp = NULL;
	int type, rc;

	for (;;) {
		switch (type = otpd_recv(fd, buf)) {
		case '+':
			return PAM_SUCCESS;
		case '-':
			return PAM_AUTH_ERR;
		case 'Q':
		case 'E':
			break;
		default:
			pam_syslog(
			    pamh, LOG_ERR, "no decision from the daemon");
			return PAM_AUTHINFO_UNAVAIL;
		}
		rc = pam_prompt(pamh,
		    type == 'E' ? PAM_PROMPT_ECHO_ON : PAM_PROMPT_ECHO_OFF,
		    &resp, "%s", buf);
		if (rc != PAM_SUCCESS || resp == NULL)
			return PAM_CONV_ERR;
		rc = otpd_send(fd, 'A', resp);
		explicit_bzero(resp, strlen(resp));
		free(resp);
		resp = NULL;
		if (rc != 0)
			return PAM_AUTHINFO_UNAVAIL;
	}
}

__attribute__((visibility("default"))) int
pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	const char *sock = NULL, *context = "transaction", *user = NULL;
	int i, fd, rc;

	(void)flags;
	for (i = 0; i < argc; i++) {
		if (strncmp(argv[i], "socket=", 7) == 0)
			sock = argv[i] + 7;
		else if (strncmp(argv[i], "context=", 8) == 0)
			context = argv[i] + 8;
	}
	if (sock == NULL || pam_get_user(pamh, &user, NULL) != PAM_SUCCESS ||
	    user == NULL)
		return PAM_SERVICE_ERR;
	if ((fd = dial(sock)) < 0) {
		pam_syslog(pamh, LOG_ERR, "%s: daemon not answering", sock);
		return PAM_AUTHINFO_UNAVAIL;
	}
	rc = otpd_send(fd, 'U', user) != 0 || otpd_send(fd, 'C', context) != 0
	    ? PAM_AUTHINFO_UNAVAIL
	    : converse(pamh, fd);
	close(fd);
	return rc;
}

__attribute__((visibility("default"))) int
pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh;
	(void)flags;
	(void)argc;
	(void)argv;
	return PAM_SUCCESS;
}

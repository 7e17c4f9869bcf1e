/*
 * otpd_proto.h - the wire of the bench's daemon prototype (issue 13:
 * "measure both" routes for PAM). Not a product interface: otpd_proto.c
 * (the daemon) and pam_otpd_proto.c (its thin PAM client) exist only so
 * that `make bench` can put a UNIX-socket daemon holding the warm context
 * beside the in-process module, in the same run.
 *
 * One connection per PAM call. Every message is a frame: one type byte,
 * a 2-byte big-endian length, that many bytes (a NUL-terminated string).
 *   client -> daemon  'U' user, 'C' context, then 'A' answer per question
 *   daemon -> client  'Q' (echo off) or 'E' (echo on) prompt per question,
 *                     and last '+' accept, '-' refused, '!' cannot decide
 */
#ifndef OTPD_PROTO_H
#define OTPD_PROTO_H

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define OTPD_MAX 512

/* Writes one frame; 0 or -1. */
static inline int
otpd_send(int fd, char type, const char *s)
{
	unsigned char buf[3 + OTPD_MAX];
	size_t n = strlen(s) + 1, off = 0;
	ssize_t w;

	if (n > OTPD_MAX)
		return -1;
	buf[0] = (unsigned char)type;
	buf[1] = (unsigned char)(n >> 8);
	buf[2] = (unsigned char)(n & 0xff);
	memcpy(buf + 3, s, n);
	while (off < n + 3) {
		w = write(fd, buf + off, n + 3 - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

static inline int
otpd_read_all(int fd, unsigned char *p, size_t n)
{
	ssize_t r;

	while (n > 0) {
		r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Reads one frame into s (OTPD_MAX bytes); its type, or -1. */
static inline int
otpd_recv(int fd, char *s)
{
	unsigned char h[3];
	size_t n;

	if (otpd_read_all(fd, h, sizeof(h)) != 0)
		return -1;
	n = (size_t)h[1] << 8 | h[2];
	if (n == 0 || n > OTPD_MAX ||
	    otpd_read_all(fd, (unsigned char *)s, n) != 0 || s[n - 1] != '\0')
		return -1;
	return h[0];
}

#endif

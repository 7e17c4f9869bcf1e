/*
 * mem.c - wiping, string and number helpers, and the CSPRNG.
 */
#include "sotp_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

void
sotp_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

void
sotp_free_secret(void *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

void
sotp_free_string(char *s)
{
	if (s == NULL)
		return;
	sotp_free_secret(s, strlen(s));
}

char *
sotp_strdup(const char *s)
{
	if (s == NULL)
		return NULL;
	return strdup(s);
}

size_t
sotp_strlcpy(char *dst, const char *src, size_t dstsz)
{
	size_t len;

	if (src == NULL)
		src = "";
	len = strlen(src);
	if (dstsz > 0) {
		size_t n = len < dstsz - 1 ? len : dstsz - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

void
sotp_mark_cut(char *dst, size_t dstsz, size_t len)
{
	size_t n;

	if (dstsz < 4 || len < dstsz)
		return;
	/* Back to a character's first byte: never half a character. */
	n = dstsz - 4;
	while (n > 0 && ((unsigned char)dst[n] & 0xc0) == 0x80)
		n--;
	memcpy(dst + n, "...", 4);
}

void
sotp_verrf(char *err, size_t errsz, const char *fmt, va_list ap)
{
	int n;

	if (err == NULL || errsz == 0)
		return;
	n = vsnprintf(err, errsz, fmt, ap);
	if (n > 0)
		sotp_mark_cut(err, errsz, (size_t)n);
}

void
sotp_errf(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sotp_verrf(err, errsz, fmt, ap);
	va_end(ap);
}

int
sotp_dir_of(const char *path, char *out, size_t outsz)
{
	const char *slash = strrchr(path, '/');
	size_t n;

	if (slash == NULL) {
		path = ".";
		n = 1;
	} else
		n = slash == path ? 1 : (size_t)(slash - path);
	if (n >= outsz) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memmove(out, path, n);
	out[n] = '\0';
	return 0;
}

char *
sotp_abs_path(const char *path)
{
	char *cwd, *out = NULL;
	size_t n;

	if (path[0] == '/')
		return strdup(path);
	if ((cwd = getcwd(NULL, 0)) == NULL)
		return NULL;
	n = strlen(cwd) + strlen(path) + 2;
	if ((out = malloc(n)) != NULL)
		snprintf(out, n, "%s%s%s", cwd,
		    strcmp(cwd, "/") == 0 ? "" : "/", path);
	free(cwd);
	return out;
}

const char *
sotp_parse_ll_zero(const char *s)
{
	const char *d;

	if (s == NULL)
		return NULL;
	d = s[0] == '-' ? s + 1 : s;
	if (d[0] != '0' || d[strspn(d, "0123456789")] != '\0')
		return NULL;
	if (d[1] != '\0')
		return "has a leading zero (numbers are decimal: write it "
		       "without)";
	return d != s ? "is minus zero (write 0)" : NULL;
}

int
sotp_parse_ll(const char *s, long long min, long long max, long long *out)
{
	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = 0;
	/*
	 * An operator who writes 007 may have meant octal, or slipped; -0
	 * is no number anyone means. Refused rather than guessed at.
	 */
	if (sotp_parse_ll_zero(s) != NULL)
		return SOTP_ERR_BAD_INPUT;
	return sotp_parse_ll_padded(s, min, max, out);
}

int
sotp_parse_ll_padded(
    const char *s, long long min, long long max, long long *out)
{
	char *end = NULL;
	long long v;

	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = 0;
	/*
	 * strtoll alone would skip leading white space and accept "+5":
	 * demand an optional '-' and then a digit, so " 5", "+5" and ""
	 * are all refused.
	 */
	if (s == NULL || min > max)
		return SOTP_ERR_BAD_INPUT;
	if (!((s[0] >= '0' && s[0] <= '9') ||
	        (s[0] == '-' && s[1] >= '0' && s[1] <= '9')))
		return SOTP_ERR_BAD_INPUT;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return SOTP_ERR_BAD_INPUT;
	if (v < min || v > max)
		return SOTP_ERR_BAD_INPUT;
	*out = v;
	return SOTP_OK;
}

int
sotp_random(void *buf, size_t n)
{
	if (buf == NULL && n > 0)
		return SOTP_ERR_INVALID_ARG;
	if (n == 0)
		return SOTP_OK;
	if (n > INT_MAX)
		return SOTP_ERR_INVALID_ARG;
	if (RAND_bytes(buf, (int)n) != 1)
		return SOTP_ERR_CRYPTO;
	return SOTP_OK;
}

int
sotp_random_uniform(unsigned int bound, unsigned int *out)
{
	unsigned int r, min;
	int rc;

	if (out == NULL || bound == 0)
		return SOTP_ERR_INVALID_ARG;
	*out = 0;
	/*
	 * Rejection sampling (as arc4random_uniform): values below
	 * 2^32 mod bound would make the low residues more likely, so draw
	 * again; fewer than half of all draws are ever rejected.
	 */
	min = (0U - bound) % bound;
	for (;;) {
		if ((rc = sotp_random(&r, sizeof(r))) != SOTP_OK)
			return rc;
		if (r >= min)
			break;
	}
	*out = r % bound;
	return SOTP_OK;
}

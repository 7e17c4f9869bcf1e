/*
 * fuzz_signer.c - libFuzzer harness for sotp_signer_check, the check of a
 * token import --signer file before OpenSSL's PEM reader sees it.
 *
 * Built and run by `make fuzz` (seeds in tests/fuzz/corpus/fuzz_signer/:
 * a plain certificate, one under the legacy X509 CERTIFICATE label, with
 * blanks and CRLF, an openssl x509 -text dump, a TRUSTED CERTIFICATE, a
 * key beside it, two certificates, text after it, no END line).
 *
 * Checks that the check never overruns and that a refusal is one line of
 * text; and that what it accepts is what it promises: exactly one
 * "-----BEGIN " in the whole file, a CERTIFICATE or X509 CERTIFICATE one,
 * only blanks before it, its own END line after it and only blanks after
 * that. What it accepts is then read by OpenSSL, as the import does.
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sotp_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
blanks(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			return 0;
	return 1;
}

/* The END line for the label at p, or NULL if p starts no signer label. */
static const char *
end_line(const char *p, const char *end)
{
	if ((size_t)(end - p) >= 16 && memcmp(p, "CERTIFICATE-----", 16) == 0)
		return "-----END CERTIFICATE-----";
	if ((size_t)(end - p) >= 21 &&
	    memcmp(p, "X509 CERTIFICATE-----", 21) == 0)
		return "-----END X509 CERTIFICATE-----";
	return NULL;
}

/* Aborts unless pem[len] is one certificate block with blanks around. */
static void
accepted(const char *pem, size_t len)
{
	static const char begin[] = "-----BEGIN ";
	const char *end = pem + len, *b, *p, *e, *line;
	BIO *bio;
	X509 *x;

	b = memmem(pem, len, begin, sizeof(begin) - 1);
	if (b == NULL || !blanks(pem, b))
		abort();
	p = b + sizeof(begin) - 1;
	if (memmem(p, (size_t)(end - p), begin, sizeof(begin) - 1) != NULL)
		abort();
	if ((line = end_line(p, end)) == NULL)
		abort();
	e = memmem(p, (size_t)(end - p), line, strlen(line));
	if (e == NULL || !blanks(e + strlen(line), end))
		abort();
	/* As load_signer reads it: a certificate or a clean refusal. */
	if (len <= 1 << 20 && (bio = BIO_new_mem_buf(pem, (int)len)) != NULL) {
		x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		X509_free(x);
		BIO_free(bio);
	}
	ERR_clear_error();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[SOTP_MSG_MAX];
	char *s;

	/* A copy of exactly size bytes: ASan sees any read past the end. */
	if ((s = malloc(size > 0 ? size : 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	why[0] = '\0';
	if (sotp_signer_check(s, size, why, sizeof(why)) == 0)
		accepted(s, size);
	else if (why[0] == '\0' || strchr(why, '\n') != NULL)
		abort();
	free(s);
	return 0;
}

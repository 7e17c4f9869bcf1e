/*
 * rfc4226.h - RFC 4226 Appendix D test values: HOTP-SHA1, 6 digits, under
 * the ASCII key "12345678901234567890", for counters 0..9.
 */
#ifndef SOTP_VECTORS_RFC4226_H
#define SOTP_VECTORS_RFC4226_H

#include <stdint.h>

static const char rfc4226_key[] = "12345678901234567890";

struct rfc4226_vector {
	uint64_t counter;
	const char *hotp;
};

static const struct rfc4226_vector rfc4226_vectors[] = {
    {0, "755224"},
    {1, "287082"},
    {2, "359152"},
    {3, "969429"},
    {4, "338314"},
    {5, "254676"},
    {6, "287922"},
    {7, "162583"},
    {8, "399871"},
    {9, "520489"},
};

#endif /* SOTP_VECTORS_RFC4226_H */

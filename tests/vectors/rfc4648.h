/*
 * rfc4648.h - RFC 4648 section 10 base32 test vectors.
 */
#ifndef SOTP_VECTORS_RFC4648_H
#define SOTP_VECTORS_RFC4648_H

struct rfc4648_vector {
	const char *plain;
	const char *base32;
};

static const struct rfc4648_vector rfc4648_base32[] = {
    {"", ""},
    {"f", "MY======"},
    {"fo", "MZXQ===="},
    {"foo", "MZXW6==="},
    {"foob", "MZXW6YQ="},
    {"fooba", "MZXW6YTB"},
    {"foobar", "MZXW6YTBOI======"},
};

#endif /* SOTP_VECTORS_RFC4648_H */

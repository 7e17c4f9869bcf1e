/*
 * fuzz_uri.c - libFuzzer harness for sotp_uri_parse/build.
 *
 * Built and run by `make fuzz` (seeds in tests/fuzz/corpus/fuzz_uri/).
 *
 * Checks that parsing never overruns, that a refusal carries a reason and
 * leaves nothing behind, and that an accepted URI builds and re-parses to
 * the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sotp_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sotp_uri u, v;
	const char *why = NULL;
	char *s, *built = NULL;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (sotp_uri_parse(s, &u, &why) != SOTP_OK) {
		if (why == NULL || u.secret[0] != '\0')
			abort();
	} else {
		if (sotp_uri_build(&u, &built) != SOTP_OK)
			abort();
		if (sotp_uri_parse(built, &v, &why) != SOTP_OK ||
		    strcmp(u.issuer, v.issuer) != 0 ||
		    strcmp(u.account, v.account) != 0 ||
		    strcmp(u.secret, v.secret) != 0 || u.alg != v.alg ||
		    u.digits != v.digits || u.period != v.period)
			abort();
		sotp_free_string(built);
	}
	free(s);
	return 0;
}

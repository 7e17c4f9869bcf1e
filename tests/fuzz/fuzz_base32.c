/*
 * fuzz_base32.c - libFuzzer harness for sotp_base32_decode/encode.
 *
 * Built and run by `make fuzz` (seeds in tests/fuzz/corpus/fuzz_base32/).
 *
 * Checks that decoding never overruns, that a refusal always carries a
 * reason, and that whatever decodes re-encodes and decodes to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sotp_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[256], back[256];
	char enc[512];
	const char *why = NULL;
	size_t n = 0, m = 0;
	char *s;
	int rc;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	rc = sotp_base32_decode(s, out, sizeof(out), &n, &why);
	if (rc != SOTP_OK) {
		if (why == NULL || n != 0)
			abort();
	} else {
		if (why != NULL || n > sizeof(out))
			abort();
		if (sotp_base32_encode(out, n, enc, sizeof(enc)) != SOTP_OK)
			abort();
		if (sotp_base32_decode(enc, back, sizeof(back), &m, &why) !=
		        SOTP_OK ||
		    m != n || memcmp(out, back, n) != 0)
			abort();
	}
	free(s);
	return 0;
}

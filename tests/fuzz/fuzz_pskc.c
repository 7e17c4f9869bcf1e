/*
 * fuzz_pskc.c - libFuzzer harness for PSKC import (RFC 6030), the whole
 * path an operator's seed file takes: the bounding pre-scan, libxml2, the
 * reader, the checks every format shares and the store lookups, as a dry
 * run on a private store (tests/fuzz/fuzz_env.h).
 *
 * Input: one mode byte, then the file. Mode bit 0 hands over RFC 6030's
 * pre-shared key (also the one tests/data/pskc/make.sh uses), bit 1 the
 * RFC's passphrase, bit 2 make.sh's, bit 3 a kind for every token.
 *
 * Checks that the import never overruns or errs on bad input: it accepts
 * (at least one token, nothing stored) or refuses with a reason, and the
 * store never gains a token.
 */
#include "fuzz_env.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t psk[16] = {0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56,
    0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12};

static struct sotp_ctx *ctx;

static int
count_one(void *arg, const struct sotp_token_info *t)
{
	(void)t;
	(*(size_t *)arg)++;
	return 0;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char db[300];

	(void)argc;
	(void)argv;
	ctx = fuzz_ctx(db, sizeof(db));
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sotp_import_result res;
	const char *pass = NULL;
	size_t tokens = 0;
	uint8_t mode;
	int rc;

	if (size < 1)
		return 0;
	mode = data[0];
	if (mode & 2)
		pass = "qwerty";
	else if (mode & 4)
		pass = "correct horse battery staple";
	rc = sotp_import_pskc(ctx, (const char *)data + 1, size - 1,
	    (mode & 1) ? psk : NULL, (mode & 1) ? sizeof(psk) : 0, pass,
	    (mode & 8) ? "pc-legacy" : NULL, 1, FUZZ_T0, &res);
	if (rc != SOTP_OK)
		fuzz_abort("import returned an error", ctx);
	if (res.refused ? res.imported != 0 || res.reason[0] == '\0'
	                : res.imported == 0)
		abort();
	if (sotp_token_list(ctx, 0, count_one, &tokens) != SOTP_OK ||
	    tokens != 0)
		abort();
	return 0;
}

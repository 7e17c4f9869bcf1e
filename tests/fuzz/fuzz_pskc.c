/*
 * fuzz_pskc.c - libFuzzer harness for PSKC import (RFC 6030), the whole
 * path an operator's seed file takes: the bounding pre-scan, libxml2, the
 * reader, the checks every format shares and the store lookups, as a dry
 * run on a private store (tests/fuzz/fuzz_env.h).
 *
 * Input: one mode byte, then the file. Mode bit 0 hands over RFC 6030's
 * pre-shared key (also the one tests/data/pskc/make.sh uses), bit 1 the
 * RFC's passphrase, bit 2 make.sh's, bit 3 a kind for every token, bit 4
 * the signer certificate below (token import --signer: the XML-DSig
 * check, pskc_sig.c and libxmlsec1, on the file before it is read).
 *
 * Checks that the import never overruns or errs on bad input: it accepts
 * (at least one token, nothing stored) or refuses with a reason, and the
 * store never gains a token; with the signer, nothing is accepted that
 * the check did not verify, and without it nothing reads as verified.
 */
#include "fuzz_env.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t psk[16] = {0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34, 0x56,
    0x78, 0x90, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12};

/*
 * A throwaway self-signed certificate, its key discarded once the seed
 * corpus/fuzz_pskc/gen-signed (mode 0x10, RFC figure 2 signed by pskctool
 * --sign) was made with it.
 */
static const char signer[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIDDzCCAfegAwIBAgIUS+v/XonVDucPfMu2Xr+XWsRNp2UwDQYJKoZIhvcNAQEL\n"
    "BQAwFjEUMBIGA1UEAwwLZnV6ei12ZW5kb3IwIBcNMjYxMTMwMDQzMzQ1WhgPMjEy\n"
    "NjExMDYwNDMzNDVaMBYxFDASBgNVBAMMC2Z1enotdmVuZG9yMIIBIjANBgkqhkiG\n"
    "9w0BAQEFAAOCAQ8AMIIBCgKCAQEArZXZz6O8INMDejzyrUbSD8UfoFZEevMx/Ofy\n"
    "/OVeTadcCqh0VO2aikaSW+k47PfUA1ta2rfxCcN0QKFkioW+vRXxFUQUZIkRTjXi\n"
    "Xgt42HcRR53gDklMUZ3mjwAKh2scz7ooOgaLkndxBLQn6bcTMM+szpcW1/gEhDAs\n"
    "b2ZCKKggrlYArdg4OeXg6iiKCcrzelZpww9rmvdIyxBPdMQAr9BgQnM4RyRsXI10\n"
    "Jzxv/N/JBd+AiuQZvPMoqBTfcYKSAWntmw04SvBf34QBZ5fIUTrtsqQWaz6YjYDe\n"
    "6iPAjibpvfY9guW4IalGchHhrNQDl+aZhVcHiU+yXfXeqbKEkQIDAQABo1MwUTAd\n"
    "BgNVHQ4EFgQUgyXoWfprCeSz3BqYrI6R1X5QorcwHwYDVR0jBBgwFoAUgyXoWfpr\n"
    "CeSz3BqYrI6R1X5QorcwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOC\n"
    "AQEAR+Iv53/3glyZUirq8tOkjarVR61hDMDxLn10vG96bA38mGCedzV4JDJZ+Ii8\n"
    "fqt+kEaJIvOMvA/0RMEZk8FHftfO/eCCtFjtoYjds7Ul79gKltq6c8shrDm2AtoJ\n"
    "R7JGhr+m/aDTJzU/RXK6d+NmM+QAnkwxwpiizVeFO9UCh43JMICeQckIn9raQHIb\n"
    "jhY7Gy0FPP9L79Jq7Jch5w7v/mRbM23T8lCWQ5hDlmiKFlTYsdoVDCIIA+XWA+Uk\n"
    "1CdVrHYUo26BZYgKCk9BvS1/YIh2WgerF/RjLWdUIRJvkcVTMZNBAP5zhY2a8Quj\n"
    "r/ZOSU58L4wRsXasrUIsOCUDvw==\n"
    "-----END CERTIFICATE-----\n";

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
	rc = sotp_import_pskc_signed(ctx, (const char *)data + 1, size - 1,
	    (mode & 1) ? psk : NULL, (mode & 1) ? sizeof(psk) : 0, pass,
	    (mode & 16) ? signer : NULL, (mode & 16) ? sizeof(signer) - 1 : 0,
	    (mode & 8) ? "pc-legacy" : NULL, 1, FUZZ_T0, &res);
	if (rc != SOTP_OK)
		fuzz_abort("import returned an error", ctx);
	if (res.refused ? res.imported != 0 || res.reason[0] == '\0'
	                : res.imported == 0)
		abort();
	if ((mode & 16) ? !res.refused && res.signature != SOTP_SIG_VERIFIED
	                : res.signature == SOTP_SIG_VERIFIED ||
	            res.signature == SOTP_SIG_FAILED)
		abort();
	if (sotp_token_list(ctx, 0, count_one, &tokens) != SOTP_OK ||
	    tokens != 0)
		abort();
	return 0;
}

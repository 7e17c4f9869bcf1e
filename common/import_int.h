/*
 * import_int.h - the seam between the seed-file readers (pskc.c, the CSV
 * reader in import.c) and the all-or-nothing batch in import.c. Only
 * common/pskc.c and common/import.c include it.
 *
 * A reader only turns a file into entries; it checks what only it can
 * (XML structure, MACs, base32) and leaves the rules every format shares
 * (serial syntax, digits, period, secret length, kind, duplicates) to
 * import.c, so that both formats refuse the same entry the same way.
 */
#ifndef SOTP_IMPORT_INT_H
#define SOTP_IMPORT_INT_H

#include "sotp_int.h"

/* The shortest secret is the policy's min_secret_bytes (4..64). */
#define SOTP_IMPORT_SECRET_MAX 64

/*
 * Internal return value of the readers and checks: res holds a refusal.
 * The public functions turn it into SOTP_OK with res->refused = 1.
 */
#define SOTP_IMPORT_REFUSED 1

struct sotp_import_entry {
	unsigned int pos; /* 1-based KeyPackage index or CSV line */
	char serial[SOTP_ID_MAX];
	char kind[SOTP_NAME_MAX]; /* "": the batch's kind */
	enum sotp_alg alg;
	unsigned int digits;
	unsigned int period; /* TOTP step; stored as 0 for HOTP */
	int hotp;            /* event-based: the reader saw a counter */
	uint64_t counter;    /* HOTP: the counter of the token's next code */
	uint8_t secret[SOTP_IMPORT_SECRET_MAX]; /* secret */
	size_t secret_len;
};

struct sotp_import_batch {
	struct sotp_import_entry *e; /* wiped on free */
	size_t n, cap;
	const char *unit; /* what pos counts: "entry" (PSKC) or "line" */
	const struct sotp_policy *pol; /* defaults for new entries */
	time_t now;                    /* PSKC: StartDate, ExpiryDate */
	struct sotp_import_result *res;
	/* The entry the store was working on when an error came, or NULL. */
	const struct sotp_import_entry *cur;
	/* The error's reason, when not sotp_reason_from_rc's (-1). */
	int reason;
};

/*
 * Appends an entry at position pos holding the policy's OTP defaults.
 * SOTP_ERR_NOMEM, or SOTP_IMPORT_REFUSED past the entry limit.
 */
int sotp_import_add(struct sotp_import_batch *b, unsigned int pos,
    struct sotp_import_entry **out);
/*
 * Copies a decoded secret into e, refusing one outside the policy's
 * min_secret_bytes..64. Returns SOTP_OK or SOTP_IMPORT_REFUSED.
 */
int sotp_import_secret(struct sotp_import_batch *b, struct sotp_import_entry *e,
    const uint8_t *secret, size_t len);
/* Records a refusal of entry pos (0: the file); returns REFUSED. */
int sotp_import_refuse(struct sotp_import_result *res, unsigned int pos,
    enum sotp_reason why, const char *fmt, ...) SOTP_PRINTF(4, 5);
/*
 * Copies untrusted text into dst[dstsz] for a reason message: control
 * and non-ASCII bytes become '?', long text is cut with "...".
 */
void sotp_import_quote(char *dst, size_t dstsz, const char *src);

/*
 * pskc.c: reads buf[len] into b. psk and passphrase (either may be NULL)
 * are secret. Returns SOTP_OK, SOTP_IMPORT_REFUSED (b->res says why) or
 * an error (SOTP_ERR_NOMEM, SOTP_ERR_CRYPTO).
 */
int sotp_pskc_read(struct sotp_import_batch *b, const char *buf, size_t len,
    const uint8_t *psk, size_t psklen, const char *passphrase,
    const char *signer, size_t signer_len);
/*
 * pskc_sig.c: with signer (a PEM certificate), checks doc's one enveloped
 * signature over the whole file against its key, or refuses; without,
 * only notes whether doc carries a signature. Sets b->res->signature.
 * Returns SOTP_OK, SOTP_IMPORT_REFUSED or SOTP_ERR_NOMEM/SOTP_ERR_CRYPTO.
 */
struct _xmlDoc;
int sotp_pskc_signature(struct sotp_import_batch *b, struct _xmlDoc *doc,
    const char *signer, size_t signer_len);

#endif /* SOTP_IMPORT_INT_H */

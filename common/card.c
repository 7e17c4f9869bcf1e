/*
 * card.c - the customer card ("confirmation password"): a printed grid of
 * digits; a challenge names random cells and the answer is their digits.
 * Rows are letters (A..), columns digits (0..9).
 */
#include "sotp_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

int
sotp_card_new(unsigned int rows, unsigned int cols, char *grid, size_t gridsz)
{
	unsigned int i, v;
	int rc;

	if (rows == 0 || rows > 26 || cols == 0 || cols > 10 ||
	    gridsz < (size_t)rows * cols + 1)
		return SOTP_ERR_INVALID_ARG;
	for (i = 0; i < rows * cols; i++) {
		if ((rc = sotp_random_uniform(10, &v)) != SOTP_OK) {
			sotp_wipe(grid, gridsz);
			return rc;
		}
		grid[i] = (char)('0' + v);
	}
	grid[rows * cols] = '\0';
	return SOTP_OK;
}

int
sotp_card_format(const char *grid, unsigned int rows, unsigned int cols,
    char *out, size_t outsz)
{
	size_t len = 0;
	unsigned int r, c;
	int n;

	if (strlen(grid) != (size_t)rows * cols || outsz == 0)
		return SOTP_ERR_INVALID_ARG;
#define EMIT(...)                                                              \
	do {                                                                   \
		n = snprintf(out + len, outsz - len, __VA_ARGS__);             \
		if (n < 0 || (size_t)n >= outsz - len)                         \
			goto small;                                            \
		len += (size_t)n;                                              \
	} while (0)
	EMIT("  ");
	for (c = 0; c < cols; c++)
		EMIT(" %u", c);
	EMIT("\n");
	for (r = 0; r < rows; r++) {
		EMIT("%c ", 'A' + r);
		for (c = 0; c < cols; c++)
			EMIT(" %c", grid[r * cols + c]);
		EMIT("\n");
	}
#undef EMIT
	return SOTP_OK;
small:
	sotp_wipe(out, outsz);
	return SOTP_ERR_BUFFER;
}

/*
 * The cells are not drawn at random for each question: they come from the
 * contract's card subkey over its ID and its sealed card, so that every
 * question asks the same cells until the card changes. A question left
 * unanswered (or answered wrong) then shows nothing new: someone who
 * knows a few cells of a stolen card's photo cannot ask again and again
 * until the question names only those. A right answer seals the card
 * afresh until the new sealing draws other cells (engine.c, reseal_card),
 * so the next question is always a new one; a key rotation and a new
 * card draw anew too.
 *
 * Blocks of HMAC(card key, counter | id | 0 | sealed card), one octet
 * per draw, octets past the largest multiple of rows x cols refused so
 * that every cell is as likely.
 */
int
sotp_card_pick_sealed(struct sotp_ctx *ctx, const char *id, uint32_t kv,
    const uint8_t *sealed, size_t sealed_len, unsigned int rows,
    unsigned int cols, unsigned int n, uint8_t *cells)
{
	uint8_t msg[1 + SOTP_ID_MAX + SOTP_CARD_MAX], mac[32];
	unsigned int m = rows * cols, i = 0, j, k, limit;
	size_t idlen = strlen(id), len;
	int rc = SOTP_OK;

	if (n == 0 || n > SOTP_MAX_CELLS || n > m || m > 255 ||
	    idlen >= SOTP_ID_MAX || sealed_len == 0 ||
	    sealed_len > SOTP_CARD_MAX)
		return SOTP_ERR_INVALID_ARG;
	limit = 256 - 256 % m;
	memcpy(msg + 1, id, idlen + 1);
	memcpy(msg + 2 + idlen, sealed, sealed_len);
	len = 2 + idlen + sealed_len;
	/* 255 blocks of 32 draws each: never exhausted for 8 of 255 cells. */
	for (msg[0] = 0; i < n && msg[0] < 255; msg[0]++) {
		if ((rc = sotp_keys_card_mac(ctx, kv, msg, len, mac)) !=
		    SOTP_OK)
			break;
		for (k = 0; k < sizeof(mac) && i < n; k++) {
			if (mac[k] >= limit)
				continue;
			for (j = 0; j < i && cells[j] != mac[k] % m; j++)
				;
			if (j == i)
				cells[i++] = (uint8_t)(mac[k] % m);
		}
	}
	if (rc == SOTP_OK && i < n)
		rc = SOTP_ERR_INTERNAL;
	SOTP_WIPE_ARRAY(mac);
	return rc;
}

int
sotp_card_pick(struct sotp_ctx *ctx, const struct sotp_contract_rec *c,
    unsigned int rows, unsigned int cols, unsigned int n, uint8_t *cells)
{
	return sotp_card_pick_sealed(
	    ctx, c->id, c->kv, c->card, c->card_len, rows, cols, n, cells);
}

void
sotp_card_cells_text(const uint8_t *cells, unsigned int n, unsigned int cols,
    char *out, size_t outsz)
{
	size_t len = 0;
	unsigned int i;
	int k;

	out[0] = '\0';
	for (i = 0; i < n && cols > 0; i++) {
		k = snprintf(out + len, outsz - len, "%s%c%u", i ? " " : "",
		    'A' + cells[i] / cols, cells[i] % cols);
		if (k < 0 || (size_t)k >= outsz - len)
			return;
		len += (size_t)k;
	}
}

int
sotp_card_check(const char *grid, const uint8_t *cells, unsigned int n,
    const char *answer, int *ok)
{
	char want[SOTP_MAX_CELLS], got[SOTP_MAX_CELLS];
	size_t glen = strlen(grid), k = 0;
	unsigned int i;

	*ok = 0;
	if (n == 0 || n > SOTP_MAX_CELLS)
		return SOTP_ERR_INVALID_ARG;
	for (i = 0; i < n; i++) {
		if (cells[i] >= glen)
			return SOTP_ERR_INVALID_ARG;
		want[i] = grid[cells[i]];
	}
	for (; *answer != '\0'; answer++) {
		if (*answer == ' ' || *answer == '-')
			continue;
		if (*answer < '0' || *answer > '9' || k == n)
			goto out;
		got[k++] = *answer;
	}
	if (k == n)
		*ok = CRYPTO_memcmp(want, got, n) == 0;
out:
	SOTP_WIPE_ARRAY(want);
	SOTP_WIPE_ARRAY(got);
	return SOTP_OK;
}

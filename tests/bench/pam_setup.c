/*
 * pam_setup.c - the store the PAM bench (pam_bench.sh) authenticates
 * against: a fresh policy, master key and SQLite store in DIR, then
 * contracts PREFIX0000000..PREFIX(N-1), each bound to its own token
 * (serial T + the contract), all of them holding the same 20-byte secret
 * (RFC 6238's "12345678901234567890", which the peers' files hold too).
 *
 *   pam_setup DIR PREFIX N
 *
 * The contracts and tokens are bulk-loaded with SQL in one transaction,
 * each secret sealed under the store's master key as sotp_token_add seals
 * it: a million contracts through the admin path would take hours (each
 * bind checks a code and writes an audit row), and only the authentication
 * is under measurement. Like sotp_bench, this may use the internal header.
 */
#include "sotp_int.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "12345678901234567890"

static void __attribute__((noreturn)) die(const char *what, const char *why)
{
	fprintf(stderr, "pam_setup: %s: %s\n", what, why);
	exit(2);
}

static void
bulk_load(struct sotp_ctx *ctx, const char *db, const char *prefix, long n)
{
	uint8_t sealed[SOTP_SECRET_MAX];
	char serial[SOTP_ID_MAX], id[40];
	char pwhash[SOTP_HASH_MAX];
	sqlite3 *h = NULL;
	sqlite3_stmt *tok = NULL, *con = NULL;
	size_t len = 0;
	uint32_t kv = 0;
	long i;

	/*
	 * One real hash for every contract (transaction codes never check
	 * it): the engine reads the first contract's hash as the one an
	 * unknown contract is checked against, and would compute a fresh
	 * yescrypt hash in every PAM call if that were no real hash.
	 */
	if (sotp_passwd_hash(NULL, "pw-bench", pwhash) != SOTP_OK)
		die("password", "cannot hash");

	if (sqlite3_open(db, &h) != SQLITE_OK ||
	    sqlite3_exec(h, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h,
	        "INSERT INTO tokens(serial, kind, secret, algorithm, digits, "
	        "period, created, kv) VALUES (?, 'mobile', ?, 0, 6, 30, 0, ?)",
	        -1, &tok, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h,
	        "INSERT INTO contracts(id, pwhash, login, serial, created) "
	        "VALUES (?, ?, 1, ?, 0)",
	        -1, &con, NULL) != SQLITE_OK)
		die(db, sqlite3_errmsg(h));
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "%s%07ld", prefix, i);
		snprintf(serial, sizeof(serial), "T%s", id);
		/* Under the current key version, as token add seals. */
		if (sotp_keys_current(ctx, &kv) != SOTP_OK ||
		    sotp_keys_seal_kv(ctx, kv, serial, (const uint8_t *)SECRET,
		        strlen(SECRET), sealed, sizeof(sealed),
		        &len) != SOTP_OK)
			die(serial, "cannot seal");
		sqlite3_bind_text(tok, 1, serial, -1, SQLITE_TRANSIENT);
		sqlite3_bind_blob(tok, 2, sealed, (int)len, SQLITE_TRANSIENT);
		sqlite3_bind_int64(tok, 3, kv);
		sqlite3_bind_text(con, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(con, 2, pwhash, -1, SQLITE_STATIC);
		sqlite3_bind_text(con, 3, serial, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(tok) != SQLITE_DONE ||
		    sqlite3_step(con) != SQLITE_DONE)
			die(db, sqlite3_errmsg(h));
		sqlite3_reset(tok);
		sqlite3_reset(con);
	}
	sqlite3_finalize(tok);
	sqlite3_finalize(con);
	if (sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		die(db, sqlite3_errmsg(h));
	/*
	 * The rows went into the WAL (hundreds of MB for a million), which
	 * the store keeps across handles: the first PAM call would read it
	 * all back and copy it into the database. Done here instead, as the
	 * store's own one-shot handles do after a large commit.
	 */
	if (sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL,
	        NULL) != SQLITE_OK)
		die(db, sqlite3_errmsg(h));
	sqlite3_close(h);
}

int
main(int argc, char **argv)
{
	struct sotp_ctx *ctx = NULL;
	char conf[512], db[512];
	char *end = NULL;
	long n;

	if (argc != 4 || (n = strtol(argv[3], &end, 10)) < 1 || *end != '\0' ||
	    n > 10000000 || strlen(argv[2]) > 8) {
		fprintf(stderr, "usage: pam_setup DIR PREFIX N\n");
		return 2;
	}
	snprintf(conf, sizeof(conf), "%s/shinkin-otp.conf", argv[1]);
	snprintf(db, sizeof(db), "%s/shinkin-otp.db", argv[1]);
	if (sotp_ctx_new(&ctx) != SOTP_OK || sotp_init(ctx, conf) != SOTP_OK)
		die(conf, sotp_ctx_errmsg(ctx));
	bulk_load(ctx, db, argv[2], n);
	sotp_ctx_free(ctx);
	return 0;
}

/*
 * sotp_bench.c - what one decision costs, as ratios against baselines
 * measured in the same run on the same machine (never absolute targets):
 *
 *   baseline  a PAM cycle (pam_start_confdir + pam_authenticate + pam_end)
 *             through pam_permit.so: what every PAM login already costs;
 *   engine    one accepted transaction code through the decision engine
 *             (contract lookup, lock check, unseal, HMAC window, the
 *             replay compare-and-set and the audit row, on SQLite);
 *   scale     the same with 1,000 and with 1,000,000 contracts (each with
 *             its own sealed token) in the store;
 *   import    contract import of BIG contracts (issue 15), against a
 *             plain SQLite bulk insert of the same rows (its own section
 *             at the end of this file).
 *
 * Time is injected (each accept uses the next 30 s step), so no sleeping.
 * Like tests/unit, the bench may use the internal header: it bulk-loads
 * the store with SQL and seals secrets itself.
 *   sotp_bench [ITERATIONS] [BIG]
 */
#include "bench_clock.h"
#include "sotp_int.h"

#include <crypt.h>
#include <dirent.h>
#include <fcntl.h>
#include <security/pam_appl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SECRET "12345678901234567890"
#define T0 ((time_t)1780272000)

/* Wall and CPU microseconds per operation. */
struct cost {
	double wall, cpu;
};

static void __attribute__((noreturn)) die(const char *what)
{
	fprintf(stderr, "sotp_bench: %s\n", what);
	exit(2);
}

static int
conv(int n, const struct pam_message **msg, struct pam_response **resp,
    void *arg)
{
	(void)n;
	(void)msg;
	(void)resp;
	(void)arg;
	return PAM_CONV_ERR;
}

/* The cost of a PAM cycle through pam_permit.so. */
static struct cost
pam_baseline(const char *dir, long n)
{
	struct pam_conv pc = {conv, NULL};
	pam_handle_t *ph;
	char path[512];
	FILE *f;
	double t, c;
	long i;

	snprintf(path, sizeof(path), "%s/permit", dir);
	if ((f = fopen(path, "w")) == NULL)
		die("cannot write the PAM service");
	fprintf(f, "auth required pam_permit.so\n");
	fclose(f);
	t = now_us();
	c = cpu_us();
	for (i = 0; i < n; i++) {
		if (pam_start_confdir("permit", "bench", &pc, dir, &ph) !=
		        PAM_SUCCESS ||
		    pam_authenticate(ph, PAM_SILENT) != PAM_SUCCESS)
			die("pam_permit cycle failed");
		pam_end(ph, PAM_SUCCESS);
	}
	return (struct cost){
	    (now_us() - t) / (double)n, (cpu_us() - c) / (double)n};
}

/* Adds contracts B1..Bn, each with its own sealed token, in one go. */
static void
bulk_load(struct sotp_ctx *ctx, const char *db, long n)
{
	uint8_t sealed[SOTP_SECRET_MAX], fp[SOTP_SEED_FP_LEN];
	char serial[SOTP_ID_MAX], id[SOTP_ID_MAX];
	sqlite3 *h = NULL;
	sqlite3_stmt *tok = NULL, *con = NULL;
	size_t len = 0;
	uint32_t kv = 0;
	long i;

	if (sqlite3_open(db, &h) != SQLITE_OK ||
	    sqlite3_exec(h, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h,
	        "INSERT INTO tokens(serial, kind, secret, algorithm, digits, "
	        "period, created, kv, seed_fp) VALUES (?, 'mobile', ?, 0, 6, "
	        "30, 0, ?, ?)",
	        -1, &tok, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h,
	        "INSERT INTO contracts(id, pwhash, login, serial, created) "
	        "VALUES (?, '*', 1, ?, 0)",
	        -1, &con, NULL) != SQLITE_OK)
		die(sqlite3_errmsg(h));
	for (i = 0; i < n; i++) {
		snprintf(serial, sizeof(serial), "BT%08ld", i);
		snprintf(id, sizeof(id), "B%08ld", i);
		if (sotp_keys_seal(ctx, serial, (const uint8_t *)SECRET,
		        strlen(SECRET), sealed, sizeof(sealed),
		        &len) != SOTP_OK ||
		    sotp_sealed_kv(sealed, len, &kv) != SOTP_OK ||
		    sotp_seed_fp(ctx, kv, (const uint8_t *)SECRET,
		        strlen(SECRET), fp) != SOTP_OK)
			die("seal");
		sqlite3_bind_text(tok, 1, serial, -1, SQLITE_TRANSIENT);
		sqlite3_bind_blob(tok, 2, sealed, (int)len, SQLITE_TRANSIENT);
		sqlite3_bind_int64(tok, 3, kv);
		sqlite3_bind_blob(
		    tok, 4, fp, (int)sizeof(fp), SQLITE_TRANSIENT);
		sqlite3_bind_text(con, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(con, 2, serial, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(tok) != SQLITE_DONE ||
		    sqlite3_step(con) != SQLITE_DONE)
			die(sqlite3_errmsg(h));
		sqlite3_reset(tok);
		sqlite3_reset(con);
	}
	sqlite3_finalize(tok);
	sqlite3_finalize(con);
	if (sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		die(sqlite3_errmsg(h));
	sqlite3_close(h);
}

/*
 * Microseconds per accepted transaction code for contract id (its token
 * holds SECRET); each round uses the next step, as a customer would.
 */
static struct cost
engine_accept(struct sotp_ctx *ctx, const char *id, long n, time_t *clock)
{
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	char code[SOTP_CODE_MAX];
	double t, c, spent = 0, cpu = 0;
	long i;

	for (i = 0; i < n; i++) {
		*clock += 30;
		if (sotp_totp(SOTP_ALG_SHA1, (const uint8_t *)SECRET,
		        strlen(SECRET), *clock, 30, 6, code) != SOTP_OK)
			die("totp");
		t = now_us();
		c = cpu_us();
		if (sotp_attempt_begin(ctx, id, "transaction", *clock, &a) !=
		        SOTP_OK ||
		    sotp_attempt_set(a, SOTP_F_OTP, code) != SOTP_OK ||
		    sotp_attempt_step(a, &d) != SOTP_OK ||
		    d.verdict != SOTP_ACCEPT)
			die("an accept was refused");
		sotp_attempt_free(a);
		spent += now_us() - t;
		cpu += cpu_us() - c;
	}
	return (struct cost){spent / (double)n, cpu / (double)n};
}

static void
add_contract(
    struct sotp_ctx *ctx, const char *id, const char *serial, time_t now)
{
	struct sotp_token_spec spec;
	struct sotp_decision d;
	char code[SOTP_CODE_MAX];

	sotp_token_spec_defaults(ctx, &spec);
	spec.serial = serial;
	if (sotp_token_add(ctx, &spec, (const uint8_t *)SECRET, strlen(SECRET),
	        now, &d) != SOTP_OK ||
	    d.verdict != SOTP_ACCEPT ||
	    sotp_contract_add(ctx, id, "pw", now, &d) != SOTP_OK ||
	    sotp_totp(SOTP_ALG_SHA1, (const uint8_t *)SECRET, strlen(SECRET),
	        now, 30, 6, code) != SOTP_OK ||
	    sotp_contract_bind(
	        ctx, id, serial, code, SOTP_LOGIN_OTP, now, &d) != SOTP_OK ||
	    d.verdict != SOTP_ACCEPT)
		die("cannot set up a contract");
}

/* One line: costs, then ratios to the PAM baseline and to `than`. */
static void
report(
    const char *what, struct cost c, struct cost base, const struct cost *than)
{
	printf("%-44s %7.1fus %7.1fus", what, c.wall, c.cpu);
	if (c.wall != base.wall || c.cpu != base.cpu)
		printf("   %.2fx, %.2fx the PAM baseline", c.wall / base.wall,
		    c.cpu / base.cpu);
	if (than != NULL)
		printf("; %.2fx, %.2fx the 1,000-contract store",
		    c.wall / than->wall, c.cpu / than->cpu);
	printf("\n");
	fflush(stdout);
}

/* ================================================================
 * Contract import (issue 15): BIG contracts from one CSV file, against a
 * plain SQLite bulk insert of the same rows. Kept apart from the decision
 * bench above on purpose; it shares only die(), now_us() and cpu_us().
 * ================================================================ */

#define IMPORT_HASHES 999

/*
 * The file contract import reads: BIG records, hashes real (libxcrypt,
 * yescrypt, sha512crypt and bcrypt in turn at their lowest costs). Only
 * IMPORT_HASHES distinct hashes are computed and reused in turn: a
 * million would take longer than the import, and the import checks each
 * record's hash the same way whether it repeats or not.
 */
static void
import_file(const char *path, long big)
{
	static const char *const pre[] = {"$y$", "$6$", "$2b$"};
	static const unsigned long cost[] = {1, 1000, 4};
	static char hashes[IMPORT_HASHES][128];
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], pw[32], grid[51];
	const char *h;
	FILE *f = fopen(path, "w");
	long i;
	int k;

	if (f == NULL || cd == NULL)
		die("import file");
	for (i = 0; i < IMPORT_HASHES; i++) {
		snprintf(pw, sizeof(pw), "pw-%ld", i);
		if (crypt_gensalt_rn(pre[i % 3], cost[i % 3], NULL, 0, salt,
		        sizeof(salt)) == NULL ||
		    (h = crypt_rn(pw, salt, cd, (int)sizeof(*cd))) == NULL ||
		    h[0] == '*')
			die("crypt");
		snprintf(hashes[i], sizeof(hashes[i]), "%s", h);
	}
	for (i = 0; i < big; i++) {
		for (k = 0; k < 50; k++)
			grid[k] = (char)('0' + (i * 7 + k * 13) % 10);
		grid[50] = '\0';
		fprintf(f, "I%08ld,%s,%s,%s,,active\n", i,
		    hashes[i % IMPORT_HASHES], i % 5 == 0 ? "card" : "otp",
		    grid);
	}
	if (fclose(f) != 0)
		die("import file");
	free(cd);
}

/*
 * The baseline: the same rows into a table of the contracts' shape, as
 * plainly as SQLite does it (one prepared INSERT, one transaction, the
 * store's WAL and synchronous=FULL), reading the same file.
 */
static struct cost
import_baseline(const char *dir, const char *path, long big)
{
	char db[160], line[512], *fld[6], *p;
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	struct cost c;
	double w, u;
	FILE *f;
	int n;

	snprintf(db, sizeof(db), "%s/baseline.db", dir);
	if (sqlite3_open(db, &h) != SQLITE_OK ||
	    sqlite3_exec(h,
	        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	        "CREATE TABLE contracts (id TEXT PRIMARY KEY, pwhash TEXT,"
	        " login INTEGER, serial TEXT UNIQUE, card BLOB, failures"
	        " INTEGER, locked_until INTEGER, closed INTEGER, created"
	        " INTEGER) STRICT",
	        NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(h,
	        "INSERT INTO contracts VALUES (?1, ?2, ?3, NULL, ?4, 0, 0, 0,"
	        " ?5)",
	        -1, &s, NULL) != SQLITE_OK ||
	    (f = fopen(path, "r")) == NULL)
		die("baseline");
	w = now_us();
	u = cpu_us();
	sqlite3_exec(h, "BEGIN", NULL, NULL, NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		for (n = 0, p = line; n < 6; n++) {
			fld[n] = p;
			if ((p = strchr(p, ',')) == NULL)
				break;
			*p++ = '\0';
		}
		sqlite3_bind_text(s, 1, fld[0], -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, fld[1], -1, SQLITE_STATIC);
		sqlite3_bind_int(s, 3, fld[2][0] == 'c' ? 2 : 1);
		sqlite3_bind_blob(s, 4, fld[3], 50, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)T0);
		if (sqlite3_step(s) != SQLITE_DONE)
			die("baseline insert");
		sqlite3_reset(s);
	}
	if (sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		die("baseline commit");
	c.wall = now_us() - w;
	c.cpu = cpu_us() - u;
	fclose(f);
	sqlite3_finalize(s);
	sqlite3_close(h);
	(void)big;
	return c;
}

/* sotp_contract_import of the same file into a fresh store. */
static struct cost
import_run(const char *dir, const char *path, long big)
{
	struct sotp_contract_import_result res;
	struct sotp_ctx *ctx = NULL;
	char conf[192], sub[160];
	struct stat st;
	struct cost c;
	double w, u;
	void *map;
	int fd;

	snprintf(sub, sizeof(sub), "%s/import", dir);
	snprintf(conf, sizeof(conf), "%s/shinkin-otp.conf", sub);
	if (mkdir(sub, 0700) != 0 || sotp_ctx_new(&ctx) != SOTP_OK ||
	    sotp_init(ctx, conf) != SOTP_OK)
		die(sotp_ctx_errmsg(ctx));
	if ((fd = open(path, O_RDONLY)) < 0 || fstat(fd, &st) != 0 ||
	    (map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd,
	         0)) == MAP_FAILED)
		die("map the import file");
	w = now_us();
	u = cpu_us();
	if (sotp_contract_import(ctx, map, (size_t)st.st_size, SOTP_FMT_CSV, 0,
	        T0, NULL, NULL, &res) != SOTP_OK)
		die(sotp_ctx_errmsg(ctx));
	c.wall = now_us() - w;
	c.cpu = cpu_us() - u;
	if (res.refused != 0 || res.imported != (unsigned long)big)
		die("contract import refused the file");
	munmap(map, (size_t)st.st_size);
	close(fd);
	sotp_ctx_free(ctx);
	return c;
}

static void
import_bench(const char *dir, long big)
{
	char path[160];
	struct cost base, imp;

	snprintf(path, sizeof(path), "%s/contracts.csv", dir);
	import_file(path, big);
	base = import_baseline(dir, path, big);
	imp = import_run(dir, path, big);
	printf("\n%-44s %9s %9s   %s\n", "", "wall s", "CPU s",
	    "ratios (wall, CPU)");
	printf("%-44s %9.2f %9.2f\n", "baseline: plain SQLite bulk insert",
	    base.wall / 1e6, base.cpu / 1e6);
	printf("contract import: %-27ld %9.2f %9.2f   %.2fx, %.2fx\n", big,
	    imp.wall / 1e6, imp.cpu / 1e6, imp.wall / base.wall,
	    imp.cpu / base.cpu);
	printf("(the same rows; the import also checks every hash and the "
	       "store, seals every card and writes an audit row per "
	       "contract)\n");
}

/* ================ end of the contract import section ================ */

int
main(int argc, char **argv)
{
	char dir[] = "/tmp/sotp-bench.XXXXXX", conf[128], db[128], cmd[160];
	long n = argc > 1 ? atol(argv[1]) : 2000;
	long big = argc > 2 ? atol(argv[2]) : 1000000;
	struct sotp_ctx *ctx = NULL;
	time_t clock = T0;
	struct cost base, small, large;
	char label[64];

	if (n <= 0 || big < 1000 || mkdtemp(dir) == NULL)
		die("usage: sotp_bench [ITERATIONS] [BIG >= 1000]");
	snprintf(conf, sizeof(conf), "%s/shinkin-otp.conf", dir);
	snprintf(db, sizeof(db), "%s/shinkin-otp.db", dir);
	if (sotp_ctx_new(&ctx) != SOTP_OK || sotp_init(ctx, conf) != SOTP_OK)
		die(sotp_ctx_errmsg(ctx));

	base = pam_baseline(dir, n);
	printf("%-44s %9s %9s   %s\n", "", "wall", "CPU", "ratios (wall, CPU)");
	report("baseline: PAM cycle through pam_permit.so", base, base, NULL);

	add_contract(ctx, "C-SMALL", "T-SMALL", clock);
	bulk_load(ctx, db, 999);
	small = engine_accept(ctx, "C-SMALL", n, &clock);
	report("engine: accepted code, 1,000 contracts", small, base, NULL);

	sotp_ctx_free(ctx);
	ctx = NULL;
	if (sotp_ctx_new(&ctx) != SOTP_OK ||
	    sotp_ctx_load(ctx, conf) != SOTP_OK)
		die(sotp_ctx_errmsg(ctx));
	/* bulk_load numbers from 0: load the large store from scratch. */
	{
		sqlite3 *h = NULL;

		if (sqlite3_open(db, &h) != SQLITE_OK ||
		    sqlite3_exec(h,
		        "DELETE FROM contracts WHERE id LIKE 'B%';"
		        "DELETE FROM tokens WHERE serial LIKE 'BT%';",
		        NULL, NULL, NULL) != SQLITE_OK)
			die("reset");
		sqlite3_close(h);
	}
	bulk_load(ctx, db, big - 1);
	large = engine_accept(ctx, "C-SMALL", n, &clock);
	snprintf(
	    label, sizeof(label), "engine: accepted code, %ld contracts", big);
	report(label, large, base, &small);
	printf("(wall includes the one durable commit per decision; CPU is "
	       "the work itself)\n");

	sotp_ctx_free(ctx);
	import_bench(dir, big);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : 1;
}

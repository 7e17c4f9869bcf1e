/*
 * test_writer.c - one writer per process and group commit (writer.c):
 * many threads, each with its own context, all writing through one writer.
 *
 *   - concurrent decisions are all accepted, and all durable: every replay
 *     mark and audit row is in the store when read afresh afterwards;
 *   - two decisions that meet at the writer share one COMMIT, and neither
 *     returns before it (made to meet, not left to the scheduler: the
 *     first waits, inside its decision, until the second is at the door);
 *   - a COMMIT that fails (the file may not grow: RLIMIT_FSIZE, a real
 *     write error from the kernel) refuses every decision in the group,
 *     and none of their codes is spent;
 *   - a wrong code's failure count goes in with the group, like a mark;
 *   - a refusal that wrote nothing before its row (a locked contract)
 *     appends that row through the writer too, not through the thread's
 *     own connection (which would wait for the file's write lock that
 *     the writer's groups hold, and under load time out, leaving the
 *     row to the log alone);
 *   - a context cannot be its own writer's.
 * Time is injected (each accept uses the next 30 s step).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sotp_int.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SECRET "12345678901234567890"
#define T0 ((time_t)1780272000)
#define THREADS 8
#define ROUNDS 25

extern const char sotp_default_policy_text[];

struct fx {
	char dir[64];
	char conf[128];
	struct sotp_writer *w;
};

static void
write_policy(const char *path)
{
	const char *s = sotp_default_policy_text, *nl;
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	for (; *s != '\0'; s = nl + 1) {
		if ((nl = strchr(s, '\n')) == NULL)
			break;
		if (strncmp(s, "store = ", 8) == 0)
			fprintf(fp, "store = sqlite:shinkin-otp.db\n");
		else if (strncmp(s, "master_key = ", 13) == 0)
			fprintf(fp, "master_key = master.key\n");
		else if (strncmp(s, "metrics = ", 10) == 0)
			fprintf(fp, "metrics = shinkin-otp.metrics\n");
		else
			fwrite(s, 1, (size_t)(nl - s) + 1, fp);
	}
	fclose(fp);
}

/*
 * Contract Wi's secret: SECRET with its last digit i. A seed is one
 * token's only (token add refuses one a stored token holds).
 */
static void
secret_of(const char *id, uint8_t *key)
{
	memcpy(key, SECRET, strlen(SECRET));
	key[strlen(SECRET) - 1] = (uint8_t)id[strlen(id) - 1];
}

static void
code_at(const char *id, time_t t, char *code)
{
	uint8_t key[sizeof(SECRET) - 1];

	secret_of(id, key);
	assert_int_equal(
	    sotp_totp(SOTP_ALG_SHA1, key, sizeof(key), t, 30, 6, code),
	    SOTP_OK);
}

static struct sotp_ctx *
load(const struct fx *f)
{
	struct sotp_ctx *ctx = NULL;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, f->conf), SOTP_OK);
	return ctx;
}

/* Contracts W0..W(n-1), each bound to its own token (secret_of). */
static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct sotp_token_spec spec;
	struct sotp_decision d;
	struct sotp_ctx *ctx = NULL;
	char id[16], serial[16], code[SOTP_CODE_MAX];
	uint8_t key[sizeof(SECRET) - 1];
	int i;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/sotp-writer.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof(f->conf), "%s/shinkin-otp.conf", f->dir);
	write_policy(f->conf);
	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_init(ctx, f->conf), SOTP_OK);
	for (i = 0; i < THREADS; i++) {
		snprintf(id, sizeof(id), "W%d", i);
		snprintf(serial, sizeof(serial), "TW%d", i);
		sotp_token_spec_defaults(ctx, &spec);
		spec.serial = serial;
		secret_of(id, key);
		assert_int_equal(
		    sotp_token_add(ctx, &spec, key, sizeof(key), T0, &d),
		    SOTP_OK);
		assert_int_equal(d.verdict, SOTP_ACCEPT);
		assert_int_equal(
		    sotp_contract_add(ctx, id, "pw-writer", T0, &d), SOTP_OK);
		code_at(id, T0, code);
		assert_int_equal(sotp_contract_bind(ctx, id, serial, code,
		                     SOTP_LOGIN_OTP, T0, &d),
		    SOTP_OK);
		assert_int_equal(d.reason, SOTP_R_ACCEPTED);
	}
	sotp_ctx_free(ctx);
	assert_int_equal(sotp_writer_new(load(f), 64, &f->w), SOTP_OK);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	sotp_writer_free(f->w);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "teardown: cannot remove %s\n", f->dir);
	free(f);
	return 0;
}

/*
 * One transaction-code decision (with wrong set, a code that is not the
 * token's); the decision and the step's rc.
 */
static int
decide_code(struct sotp_ctx *ctx, const char *id, time_t t, int wrong,
    struct sotp_decision *d)
{
	struct sotp_attempt *a = NULL;
	char code[SOTP_CODE_MAX];
	int rc;

	code_at(id, t, code);
	if (wrong)
		code[0] = code[0] == '9' ? '0' : (char)(code[0] + 1);
	if ((rc = sotp_attempt_begin(ctx, id, "transaction", t, &a)) !=
	        SOTP_OK ||
	    (rc = sotp_attempt_set(a, SOTP_F_OTP, code)) != SOTP_OK) {
		sotp_attempt_free(a);
		return rc;
	}
	rc = sotp_attempt_step(a, d);
	sotp_attempt_free(a);
	return rc;
}

static int
decide(struct sotp_ctx *ctx, const char *id, time_t t, struct sotp_decision *d)
{
	return decide_code(ctx, id, t, 0, d);
}

/* ---- many at once ---- */

struct worker {
	struct fx *f;
	int n;
	int accepted, rc_bad;
	char why[256];
};

static void *
work(void *arg)
{
	struct worker *wk = arg;
	struct sotp_ctx *ctx = NULL;
	struct sotp_decision d;
	char id[16];
	int i, rc;

	if (sotp_ctx_new(&ctx) != SOTP_OK ||
	    sotp_ctx_load(ctx, wk->f->conf) != SOTP_OK ||
	    sotp_ctx_set_writer(ctx, wk->f->w) != SOTP_OK) {
		wk->rc_bad = -1;
		sotp_ctx_free(ctx);
		return NULL;
	}
	snprintf(id, sizeof(id), "W%d", wk->n);
	for (i = 1; i <= ROUNDS; i++) {
		rc = decide(ctx, id, T0 + 30 * i, &d);
		if (rc == SOTP_OK && d.verdict == SOTP_ACCEPT)
			wk->accepted++;
		else if (wk->why[0] == '\0')
			snprintf(wk->why, sizeof(wk->why),
			    "round %d: rc %s, verdict %d, reason %s: %s", i,
			    sotp_rc_name(rc), (int)d.verdict,
			    sotp_reason_name((int)d.reason),
			    sotp_ctx_errmsg(ctx));
	}
	sotp_ctx_free(ctx);
	return NULL;
}

/* A count from the store, read by a connection of its own. */
static long
count(const struct fx *f, const char *sql)
{
	char db[128];
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	long n = -1;

	snprintf(db, sizeof(db), "%s/shinkin-otp.db", f->dir);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = (long)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return n;
}

static void
test_writer_concurrent_all_durable(void **state)
{
	struct fx *f = *state;
	struct worker wk[THREADS];
	pthread_t th[THREADS];
	struct sotp_decision d;
	struct sotp_ctx *ctx;
	uint64_t commits = 0, decisions = 0;
	char id[16];
	int i, total = 0;

	memset(wk, 0, sizeof(wk));
	for (i = 0; i < THREADS; i++) {
		wk[i].f = f;
		wk[i].n = i;
		assert_int_equal(pthread_create(&th[i], NULL, work, &wk[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		if (wk[i].accepted != ROUNDS)
			fail_msg("thread %d: %d of %d accepted; first refusal: "
			         "%s",
			    i, wk[i].accepted, ROUNDS, wk[i].why);
		total += wk[i].accepted;
	}
	sotp_writer_counts(f->w, &commits, &decisions);
	print_message("# %d decisions in %llu commits\n", total,
	    (unsigned long long)commits);
	assert_int_equal(decisions, (uint64_t)THREADS * ROUNDS);
	assert_true(commits >= 1 && commits <= decisions);
	/* Durable: read back by other connections, after the fact. */
	assert_int_equal(count(f,
	                     "SELECT count(*) FROM audit WHERE verdict ="
	                     " 'accept' AND context = 'transaction'"),
	    THREADS * ROUNDS);
	assert_int_equal(count(f,
	                     "SELECT count(*) FROM tokens WHERE"
	                     " serial LIKE 'TW%' AND last_step = "
	                     "(1780272000 + 30 * 25) / 30"),
	    THREADS);
	/* And every code of the last round is spent, for a new context. */
	ctx = load(f);
	for (i = 0; i < THREADS; i++) {
		snprintf(id, sizeof(id), "W%d", i);
		assert_int_equal(
		    decide(ctx, id, T0 + 30 * ROUNDS, &d), SOTP_OK);
		assert_int_equal(d.verdict, SOTP_REJECT);
		assert_int_equal(d.reason, SOTP_R_REPLAYED);
	}
	sotp_ctx_free(ctx);
}

/* ---- two that meet: one commit, and a failing one ---- */

struct meet {
	struct fx *f;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int armed;        /* the next RELEASE on the writer waits for B */
	int go_b;         /* B may start its decision */
	int fail;         /* the group's COMMIT is made to fail */
	int wrong_b;      /* B types a wrong code */
	int commits;      /* COMMITs seen on the writer's connection */
	int commits_at_a; /* ... when A's decision returned */
	int rc_a, rc_b;
	struct sotp_decision d_a, d_b;
	time_t t;
	char log_b[4096]; /* B's log lines, each ending in " | " */
	size_t log_b_len;
};

/* Keeps B's log lines in its meet. */
static void
log_b(void *arg, int prio, const char *fmt, va_list ap)
{
	struct meet *m = arg;
	size_t room = sizeof(m->log_b) - m->log_b_len;
	int n;

	(void)prio;
	n = vsnprintf(m->log_b + m->log_b_len, room, fmt, ap);
	if (n > 0 && (size_t)n + 3 < room) {
		m->log_b_len += (size_t)n;
		memcpy(m->log_b + m->log_b_len, " | ", 4);
		m->log_b_len += 3;
	} else {
		m->log_b[m->log_b_len] = '\0';
	}
}

/* The writer's statements, as they are run. */
static void
trace(void *arg, const char *sql)
{
	struct meet *m = arg;
	struct rlimit rl = {1, RLIM_INFINITY};

	if (strcmp(sql, "COMMIT") == 0) {
		m->commits++;
		/* Every write of this process fails from here on. */
		if (m->fail)
			assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	}
	if (strncmp(sql, "RELEASE", 7) != 0 || !m->armed)
		return;
	/* A is inside the writer, its work done: let B come to the door. */
	m->armed = 0;
	pthread_mutex_lock(&m->lock);
	m->go_b = 1;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	while (sotp_writer_coming(m->f->w) == 0)
		sched_yield();
}

static void *
run_b(void *arg)
{
	struct meet *m = arg;
	struct sotp_ctx *ctx = load(m->f);

	pthread_mutex_lock(&m->lock);
	while (!m->go_b)
		pthread_cond_wait(&m->cond, &m->lock);
	pthread_mutex_unlock(&m->lock);
	assert_int_equal(sotp_ctx_set_writer(ctx, m->f->w), SOTP_OK);
	sotp_ctx_set_log(ctx, log_b, m, 0);
	m->rc_b = decide_code(ctx, "W1", m->t, m->wrong_b, &m->d_b);
	sotp_ctx_free(ctx);
	return NULL;
}

/* A (W0) and B (W1) decide at time t, meeting at the writer. */
static void
meet(struct fx *f, struct meet *m, time_t t, int fail, int wrong_b)
{
	struct sotp_ctx *ctx = load(f);
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	pthread_t b;

	memset(m, 0, sizeof(*m));
	m->f = f;
	m->t = t;
	m->fail = fail;
	m->wrong_b = wrong_b;
	m->armed = 1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	sotp_store_set_trace(sotp_writer_store(f->w), trace, m);
	assert_int_equal(pthread_create(&b, NULL, run_b, m), 0);
	assert_int_equal(sotp_ctx_set_writer(ctx, f->w), SOTP_OK);
	m->rc_a = decide(ctx, "W0", t, &m->d_a);
	m->commits_at_a = m->commits;
	pthread_join(b, NULL);
	sotp_store_set_trace(sotp_writer_store(f->w), NULL, NULL);
	if (fail)
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	sotp_ctx_free(ctx);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
}

static void
test_writer_two_decisions_one_commit(void **state)
{
	struct fx *f = *state;
	struct meet m;
	uint64_t c0, d0, c1, d1;

	sotp_writer_counts(f->w, &c0, &d0);
	meet(f, &m, T0 + 3000, 0, 0);
	sotp_writer_counts(f->w, &c1, &d1);
	assert_int_equal(m.rc_a, SOTP_OK);
	assert_int_equal(m.rc_b, SOTP_OK);
	assert_int_equal(m.d_a.verdict, SOTP_ACCEPT);
	assert_int_equal(m.d_b.verdict, SOTP_ACCEPT);
	assert_int_equal(d1 - d0, 2);
	assert_int_equal(c1 - c0, 1);
	assert_int_equal(m.commits, 1);
	/* A, done first, was answered only after B's COMMIT carried it. */
	assert_int_equal(m.commits_at_a, 1);
	/* Both marks are in, for anyone. */
	assert_int_equal(count(f,
	                     "SELECT count(*) FROM tokens WHERE serial"
	                     " IN ('TW0', 'TW1') AND last_step ="
	                     " (1780272000 + 3000) / 30"),
	    2);
}

static void
test_writer_failed_commit_refuses_all(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	struct sotp_ctx *ctx;
	struct meet m;
	long audit0;

	signal(SIGXFSZ, SIG_IGN);
	audit0 = count(f, "SELECT count(*) FROM audit");
	meet(f, &m, T0 + 6000, 1, 0);
	assert_int_equal(m.commits, 1);
	/* Both refused, fail closed, each told why. */
	if (m.rc_a == SOTP_OK || m.rc_b == SOTP_OK)
		fail_msg("a decision of the failed group returned %s / %s",
		    sotp_rc_name(m.rc_a), sotp_rc_name(m.rc_b));
	assert_int_equal(m.d_a.verdict, SOTP_REJECT);
	assert_int_equal(m.d_b.verdict, SOTP_REJECT);
	assert_int_equal(m.d_a.reason, SOTP_R_STORE_UNAVAILABLE);
	assert_int_equal(m.d_b.reason, SOTP_R_STORE_UNAVAILABLE);
	/* Nothing of the group is in the store... */
	assert_int_equal(count(f, "SELECT count(*) FROM audit"), audit0);
	assert_int_equal(count(f,
	                     "SELECT count(*) FROM tokens WHERE serial"
	                     " IN ('TW0', 'TW1') AND last_step ="
	                     " (1780272000 + 6000) / 30"),
	    0);
	/* ...so both codes are still good, through the same writer. */
	ctx = load(f);
	assert_int_equal(sotp_ctx_set_writer(ctx, f->w), SOTP_OK);
	assert_int_equal(decide(ctx, "W0", T0 + 6000, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	assert_int_equal(decide(ctx, "W1", T0 + 6000, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_ACCEPT);
	sotp_ctx_free(ctx);
}

/* A refusal's failure count is as durable as an accept's mark. */
static void
test_writer_failure_count_durable(void **state)
{
	struct fx *f = *state;
	struct meet m;

	meet(f, &m, T0 + 9000, 0, 1);
	assert_int_equal(m.rc_a, SOTP_OK);
	assert_int_equal(m.rc_b, SOTP_OK);
	assert_int_equal(m.d_a.verdict, SOTP_ACCEPT);
	assert_int_equal(m.d_b.verdict, SOTP_REJECT);
	assert_int_equal(m.d_b.reason, SOTP_R_WRONG_CODE);
	/* One COMMIT carried both, and A was answered after it. */
	assert_int_equal(m.commits, 1);
	assert_int_equal(m.commits_at_a, 1);
	assert_int_equal(count(f,
	                     "SELECT failures FROM contracts WHERE id ="
	                     " 'W1'"),
	    1);
	assert_int_equal(count(f,
	                     "SELECT count(*) FROM audit WHERE"
	                     " contract = 'W1' AND verdict = 'reject'"),
	    1);
}

/*
 * A wrong code whose failure count is lost with its group's COMMIT was
 * not counted: it is not an ordinary refusal (rc SOTP_OK, WRONG_CODE)
 * but a store failure, told as such. Else, while the store cannot commit
 * (a full disk), guesses are never counted toward the lockout, and a
 * wrong one (WRONG_CODE) still reads unlike a right one
 * (STORE_UNAVAILABLE): an oracle without a lockout. Its log line says
 * why the group was lost, not the text of some other connection.
 */
static void
test_writer_failed_commit_loses_no_count(void **state)
{
	struct fx *f = *state;
	struct meet m;

	signal(SIGXFSZ, SIG_IGN);
	meet(f, &m, T0 + 12000, 1, 1);
	assert_int_equal(m.commits, 1);
	assert_int_equal(count(f,
	                     "SELECT failures FROM contracts WHERE id ="
	                     " 'W1'"),
	    0);
	if (m.rc_b == SOTP_OK || m.d_b.reason != SOTP_R_STORE_UNAVAILABLE)
		fail_msg("a wrong code whose count was not committed: rc %s,"
		         " reason %s, locked %d; logged: %s",
		    sotp_rc_name(m.rc_b), sotp_reason_name((int)m.d_b.reason),
		    m.d_b.locked, m.log_b);
	assert_int_equal(m.d_b.verdict, SOTP_REJECT);
	assert_int_equal(m.d_b.locked, 0);
	/* The COMMIT's own error, as the writer's connection had it. */
	if (strstr(m.log_b, "audit row not written: sqlite ") == NULL ||
	    strstr(m.log_b, ": commit: ") == NULL)
		fail_msg(
		    "the log does not say why the group was lost: %s", m.log_b);
	if (strstr(m.log_b, "verdict=reject reason=STORE_UNAVAILABLE") ==
	        NULL ||
	    strstr(m.log_b, "WRONG_CODE not committed") == NULL)
		fail_msg(
		    "the line does not tell the count was lost: %s", m.log_b);
}

/* Counts the audit rows appended through one connection. */
static void
count_audit_adds(void *arg, const char *sql)
{
	int *n = arg;

	if (strncmp(sql, "INSERT INTO audit ", 18) == 0)
		(*n)++;
}

static void
test_writer_refusal_row_through_writer(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	struct sotp_ctx *ctx = load(f);
	char sql[128];
	int i, own = 0, writer = 0;

	assert_int_equal(sotp_ctx_set_writer(ctx, f->w), SOTP_OK);
	/* Wrong codes up to the policy's threshold (5) lock W2. */
	for (i = 1; i <= 5; i++) {
		assert_int_equal(
		    decide_code(ctx, "W2", T0 + 12000 + 30 * i, 1, &d),
		    SOTP_OK);
		assert_int_equal(d.verdict, SOTP_REJECT);
	}
	assert_int_equal(d.locked, 1);
	sotp_store_set_trace(ctx->st, count_audit_adds, &own);
	sotp_store_set_trace(
	    sotp_writer_store(f->w), count_audit_adds, &writer);
	/* Refused at the gate, before anything is written: its row. */
	assert_int_equal(decide(ctx, "W2", T0 + 12300, &d), SOTP_OK);
	sotp_store_set_trace(ctx->st, NULL, NULL);
	sotp_store_set_trace(sotp_writer_store(f->w), NULL, NULL);
	assert_int_equal(d.verdict, SOTP_REJECT);
	assert_int_equal(d.reason, SOTP_R_LOCKED);
	if (own != 0 || writer != 1)
		fail_msg("the locked refusal's row: %d through the thread's "
		         "own connection, %d through the writer (want 0, 1)",
		    own, writer);
	snprintf(sql, sizeof(sql),
	    "SELECT count(*) FROM audit WHERE contract = 'W2' AND"
	    " reason = %d",
	    (int)SOTP_R_LOCKED);
	assert_int_equal(count(f, sql), 1);
	sotp_ctx_free(ctx);
}

/* ---- a rehash's log line waits for its group's COMMIT ---- */

/* "pw-writer" in sha512crypt: a hash that rehash = yes replaces. */
#define OLD_HASH                                                               \
	"$6$abcdefgh$hdKzXZxcRoyQ9vYPlcE8IXFS0uTBoiqLBnjg5eZ1iGTron2FNvsaqLEwNeDiMhlUAOfP4vCO2WkY/KZrh/i8y."

/* The deciding thread's log lines, each after how many writer COMMITs. */
struct seen {
	int commits; /* COMMITs started on the writer's connection */
	int fail;    /* the next one fails (the file may grow no more) */
	char log[4096];
	size_t len;
};

static void
seen_trace(void *arg, const char *sql)
{
	struct seen *s = arg;
	struct rlimit rl = {1, RLIM_INFINITY};

	if (strcmp(sql, "COMMIT") != 0)
		return;
	s->commits++;
	if (s->fail)
		assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void
seen_log(void *arg, int prio, const char *fmt, va_list ap)
{
	struct seen *s = arg;
	size_t room;
	int n;

	(void)prio;
	room = sizeof(s->log) - s->len;
	n = snprintf(s->log + s->len, room, "[%d] ", s->commits);
	if (n <= 0 || (size_t)n >= room)
		return;
	s->len += (size_t)n;
	room -= (size_t)n;
	n = vsnprintf(s->log + s->len, room, fmt, ap);
	if (n > 0 && (size_t)n + 1 < room) {
		s->len += (size_t)n;
		s->log[s->len++] = '\n';
	}
	s->log[s->len] = '\0';
}

/* W3's password round through the writer, its log lines in s. */
static int
rehash_round(struct fx *f, const char *conf, time_t t, struct seen *s,
    struct sotp_decision *d)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};
	struct sotp_ctx *ctx = NULL;
	struct sotp_attempt *a = NULL;
	int rc;

	assert_int_equal(sotp_ctx_new(&ctx), SOTP_OK);
	assert_int_equal(sotp_ctx_load(ctx, conf), SOTP_OK);
	assert_int_equal(sotp_ctx_set_writer(ctx, f->w), SOTP_OK);
	sotp_ctx_set_log(ctx, seen_log, s, 0);
	sotp_store_set_trace(sotp_writer_store(f->w), seen_trace, s);
	assert_int_equal(
	    sotp_attempt_begin(ctx, "W3", "login", t, &a), SOTP_OK);
	assert_int_equal(
	    sotp_attempt_set(a, SOTP_F_PASSWORD, "pw-writer"), SOTP_OK);
	rc = sotp_attempt_step(a, d);
	sotp_attempt_free(a);
	sotp_store_set_trace(sotp_writer_store(f->w), NULL, NULL);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	sotp_ctx_free(ctx);
	return rc;
}

/*
 * [migration] rehash = yes, through the writer: the rehash's row is one
 * of the decision's, committed (or not) by its group's COMMIT, which may
 * be run by another thread. Its line must come on the deciding thread
 * after that COMMIT, and tell what it did: the old code logged "accept"
 * inside the decision, before the group committed, also when the COMMIT
 * then failed and nothing of it stood.
 */
static void
test_writer_rehash_line_follows_group_commit(void **state)
{
	struct fx *f = *state;
	struct sotp_decision d;
	struct seen s;
	char conf[160], cmd[1024], db[128];
	sqlite3 *h = NULL;
	int rc;

	signal(SIGXFSZ, SIG_IGN);
	snprintf(conf, sizeof(conf), "%s/rehash.conf", f->dir);
	snprintf(cmd, sizeof(cmd),
	    "sed 's/^rehash = no$/rehash = yes/' %s > %s &&"
	    " grep -q '^rehash = yes$' %s",
	    f->conf, conf, conf);
	assert_int_equal(system(cmd), 0);
	snprintf(db, sizeof(db), "%s/shinkin-otp.db", f->dir);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(h,
	        "UPDATE contracts SET pwhash = '" OLD_HASH "' WHERE id = 'W3'",
	        NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(h);

	/* The group's COMMIT fails: nothing of the rehash stands. */
	memset(&s, 0, sizeof(s));
	s.fail = 1;
	rc = rehash_round(f, conf, T0 + 15000, &s, &d);
	if (rc == SOTP_OK || d.verdict != SOTP_REJECT)
		fail_msg("a decision whose group was lost: rc %s, verdict %d",
		    sotp_rc_name(rc), (int)d.verdict);
	assert_int_equal(count(f,
	                     "SELECT count(*) FROM contracts WHERE id = 'W3'"
	                     " AND pwhash LIKE '$6$%'"),
	    1);
	if (strstr(s.log, "action=contract.rehash") == NULL ||
	    strstr(s.log, "verdict=accept") != NULL)
		fail_msg(
		    "a rehash whose group was lost logged as accepted:\n%s",
		    s.log);
	if (strstr(s.log, "[1] action=contract.rehash") == NULL ||
	    strstr(s.log, "not committed") == NULL ||
	    strstr(s.log, "audit row not committed: sqlite ") == NULL)
		fail_msg("the rehash is not logged, after the COMMIT, as not "
		         "committed:\n%s",
		    s.log);

	/* It commits: the accept, after the COMMIT, on this thread. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(rehash_round(f, conf, T0 + 15100, &s, &d), SOTP_OK);
	assert_int_equal(d.verdict, SOTP_CONTINUE);
	assert_int_equal(count(f,
	                     "SELECT count(*) FROM contracts WHERE id = 'W3'"
	                     " AND pwhash LIKE '$y$%'"),
	    1);
	if (strstr(s.log, "[1] action=contract.rehash contract=W3") == NULL ||
	    strstr(s.log,
	        "verdict=accept reason=ACCEPTED(0) "
	        "detail=\"from=$6$ to=yescrypt\"") == NULL)
		fail_msg("the rehash is not logged as accepted after its "
		         "group's COMMIT:\n%s",
		    s.log);
}

static void
test_writer_refuses_own_ctx(void **state)
{
	struct fx *f = *state;
	struct sotp_writer *w2 = NULL;
	struct sotp_ctx *ctx = load(f);

	assert_int_equal(sotp_writer_new(NULL, 8, &w2), SOTP_ERR_INVALID_ARG);
	assert_null(w2);
	assert_int_equal(
	    sotp_writer_new(load(f), 0, &w2), SOTP_ERR_INVALID_ARG);
	assert_int_equal(sotp_writer_new(ctx, 8, &w2), SOTP_OK);
	/* ctx is w2's now: it cannot also write through w2. */
	assert_int_equal(sotp_ctx_set_writer(ctx, w2), SOTP_ERR_INVALID_ARG);
	sotp_writer_free(w2);
	sotp_writer_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_writer_concurrent_all_durable, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_writer_two_decisions_one_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_writer_failed_commit_refuses_all, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_writer_failure_count_durable, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_writer_failed_commit_loses_no_count, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_writer_refusal_row_through_writer, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_writer_rehash_line_follows_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_writer_refuses_own_ctx, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

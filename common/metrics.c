/*
 * metrics.c - decision counters that every process adds to, and their
 * rendering in the Prometheus text format.
 *
 * The process model decides the shape: PAM runs in short-lived processes
 * (one per login), radiusd in one long-lived process with many threads,
 * the CLI once per command. Counters kept in memory would die with each
 * PAM call, and a collector process would be one more thing to run. So
 * the counters live in one small file of fixed layout that each process
 * maps MAP_SHARED and adds to with atomic increments: a decision costs a
 * few atomic adds on an already mapped page (no lock, no system call but
 * the two clock reads that time it). `shinkin-otp metrics` reads the file
 * and prints it for a scrape, or writes it for node_exporter's textfile
 * collector.
 *
 * Layout: a header, then one slot per context name. A context's slot is
 * claimed once, under flock(2), by writing its name and then publishing
 * it (a release store that readers pair with an acquire load); after
 * that, nothing but the counters ever changes. Slot 0 is "-", for
 * contexts the policy does not define (their names come from requests,
 * and must not be able to use up the slots). Counters only grow; a file
 * deleted or recreated starts again at zero, which Prometheus reads as a
 * counter reset.
 */
#include "sotp_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "SOTPMET1"
#define NSLOTS (SOTP_MAX_CONTEXTS + 8)
#define NVERDICTS 3
#define NREASONS 48 /* enum sotp_reason stays below this (a test checks) */
#define NBUCKETS 13

/* Upper bounds of the latency buckets, in µs; the last is +Inf. */
static const uint64_t bucket_us[NBUCKETS - 1] = {1000, 2500, 5000, 10000, 25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000};
static const char *const bucket_le[NBUCKETS] = {"0.001", "0.0025", "0.005",
    "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"};
static const char *const verdict_names[NVERDICTS] = {
    "reject", "accept", "continue"};

struct mslot {
	char name[40];
	uint32_t used; /* published with a release store */
	uint32_t pad;
	uint64_t decisions[NVERDICTS][NREASONS];
	uint64_t buckets[NBUCKETS];
	uint64_t sum_us;
};

struct mfile {
	char magic[8];
	uint32_t size;
	uint32_t nslots;
	uint64_t store_errors[2]; /* unavailable, other */
	uint64_t reopens[2];      /* ok, failed */
	uint64_t reserved[12];
	struct mslot slots[NSLOTS];
};

struct sotp_metrics {
	struct mfile *f;
	int fd; /* kept for flock when a slot is claimed */
};

uint64_t
sotp_monotonic_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
add(uint64_t *p, uint64_t v)
{
	__atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

static uint64_t
load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void
merr(char *err, size_t errsz, const char *path, const char *what, int e)
{
	sotp_errf(err, errsz, "metrics %s: %s%s%s", path, what,
	    e != 0 ? ": " : "", e != 0 ? strerror(e) : "");
}

/* Makes an empty file its layout (under the caller's flock). */
static int
format_file(int fd)
{
	struct mfile *hdr;
	ssize_t w;
	int rc = -1;

	if ((hdr = calloc(1, sizeof(*hdr))) == NULL)
		return -1;
	memcpy(hdr->magic, MAGIC, sizeof(hdr->magic));
	hdr->size = (uint32_t)sizeof(*hdr);
	hdr->nslots = NSLOTS;
	snprintf(hdr->slots[0].name, sizeof(hdr->slots[0].name), "-");
	hdr->slots[0].used = 1;
	w = pwrite(fd, hdr, sizeof(*hdr), 0);
	/*
	 * Whoever makes it (the admin tool runs with umask 077), every
	 * service that decides must be able to count: radiusd's user by the
	 * file's group (see the policy file). Counters are no secret.
	 */
	if (w == (ssize_t)sizeof(*hdr) && fchmod(fd, 0660) == 0)
		rc = 0;
	free(hdr);
	return rc;
}

/*
 * Maps path. write = 0 maps it read-only and never creates it (the
 * renderer); write = 1 creates and formats it when missing or empty.
 */
static int
map_file(const char *path, int write, struct sotp_metrics **out, char *err,
    size_t errsz)
{
	struct sotp_metrics *m = NULL;
	struct stat sb;
	void *p;
	int fd, e, rc = SOTP_ERR_SYSTEM;

	*out = NULL;
	fd = open(path,
	    (write ? O_RDWR | O_CREAT : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC,
	    0660);
	if (fd == -1) {
		merr(err, errsz, path, "cannot open", errno);
		return errno == ENOENT ? SOTP_ERR_NOT_FOUND : SOTP_ERR_SYSTEM;
	}
	if (write && flock(fd, LOCK_EX) != 0) {
		merr(err, errsz, path, "cannot lock", errno);
		goto out;
	}
	if (fstat(fd, &sb) != 0) {
		merr(err, errsz, path, "cannot stat", errno);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		merr(err, errsz, path, "not a regular file", 0);
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	if (write && sb.st_size == 0) {
		if (format_file(fd) != 0) {
			merr(err, errsz, path, "cannot write", errno);
			goto out;
		}
		sb.st_size = (off_t)sizeof(struct mfile);
	}
	if (sb.st_size != (off_t)sizeof(struct mfile)) {
		merr(err, errsz, path,
		    "not a counters file of this version (remove it)", 0);
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	p = mmap(NULL, sizeof(struct mfile),
	    write ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		merr(err, errsz, path, "cannot map", errno);
		goto out;
	}
	if (memcmp(((struct mfile *)p)->magic, MAGIC, 8) != 0 ||
	    ((struct mfile *)p)->size != sizeof(struct mfile) ||
	    ((struct mfile *)p)->nslots != NSLOTS) {
		munmap(p, sizeof(struct mfile));
		merr(err, errsz, path,
		    "not a counters file of this version (remove it)", 0);
		rc = SOTP_ERR_CONFIG;
		goto out;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		munmap(p, sizeof(struct mfile));
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	m->f = p;
	m->fd = fd;
	fd = -1;
	*out = m;
	rc = SOTP_OK;
out:
	if (fd != -1) {
		e = errno;
		close(fd); /* also drops the flock */
		errno = e;
	} else if (write) {
		flock(m->fd, LOCK_UN);
	}
	return rc;
}

int
sotp_metrics_open(
    const char *path, struct sotp_metrics **out, char *err, size_t errsz)
{
	if (out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = NULL;
	if (path == NULL || path[0] == '\0')
		return SOTP_ERR_INVALID_ARG;
	return map_file(path, 1, out, err, errsz);
}

void
sotp_metrics_close(struct sotp_metrics *m)
{
	if (m == NULL)
		return;
	munmap(m->f, sizeof(struct mfile));
	close(m->fd);
	free(m);
}

static int
slot_find(const struct mfile *f, const char *name)
{
	int i;

	for (i = 0; i < NSLOTS; i++)
		if (__atomic_load_n(&f->slots[i].used, __ATOMIC_ACQUIRE) &&
		    strncmp(f->slots[i].name, name, sizeof(f->slots[i].name)) ==
		        0)
			return i;
	return -1;
}

/* The slot of a defined context, claimed on first use; 0 ("-") if full. */
static int
slot_of(struct sotp_metrics *m, const char *context, int defined)
{
	struct mfile *f = m->f;
	int i;

	if (!defined || context == NULL || context[0] == '\0' ||
	    strlen(context) >= sizeof(f->slots[0].name))
		return 0;
	if ((i = slot_find(f, context)) >= 0)
		return i;
	if (flock(m->fd, LOCK_EX) != 0)
		return 0;
	if ((i = slot_find(f, context)) < 0) {
		for (i = 1; i < NSLOTS; i++)
			if (!__atomic_load_n(
			        &f->slots[i].used, __ATOMIC_ACQUIRE))
				break;
		if (i < NSLOTS) {
			snprintf(f->slots[i].name, sizeof(f->slots[i].name),
			    "%s", context);
			__atomic_store_n(
			    &f->slots[i].used, 1, __ATOMIC_RELEASE);
		} else {
			i = 0;
		}
	}
	flock(m->fd, LOCK_UN);
	return i;
}

void
sotp_metrics_decision(struct sotp_metrics *m, const char *context, int defined,
    enum sotp_verdict v, int reason, uint64_t usec)
{
	struct mslot *s;
	int b;

	if (m == NULL)
		return;
	s = &m->f->slots[slot_of(m, context, defined)];
	if ((int)v < 0 || (int)v >= NVERDICTS)
		v = SOTP_REJECT;
	if (reason < 0 || reason >= NREASONS)
		reason = SOTP_R_INTERNAL;
	add(&s->decisions[v][reason], 1);
	for (b = 0; b < NBUCKETS - 1 && usec > bucket_us[b]; b++)
		;
	add(&s->buckets[b], 1);
	add(&s->sum_us, usec);
}

void
sotp_metrics_store_error(struct sotp_metrics *m, int rc)
{
	if (m == NULL)
		return;
	if (rc == SOTP_ERR_STORE_UNAVAILABLE)
		add(&m->f->store_errors[0], 1);
	else if (rc == SOTP_ERR_STORE || rc == SOTP_ERR_NOMEM)
		add(&m->f->store_errors[1], 1);
}

void
sotp_metrics_reopen(struct sotp_metrics *m, int ok)
{
	if (m != NULL)
		add(&m->f->reopens[ok ? 0 : 1], 1);
}

/* ---- rendering ---- */

struct text {
	char *buf;
	size_t len, size;
	int failed;
};

static void tprintf(struct text *t, const char *fmt, ...) SOTP_PRINTF(2, 3);

static void
tprintf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	size_t need;
	char *nb;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->size - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if ((size_t)n < t->size - t->len)
			break;
		need = t->size * 2 + (size_t)n;
		if ((nb = realloc(t->buf, need)) == NULL) {
			t->failed = 1;
			return;
		}
		t->buf = nb;
		t->size = need;
	}
	t->len += (size_t)n;
}

/*
 * A label value: context names are [A-Za-z0-9._-] (the policy's rule),
 * but a file written by another version is not trusted with quoting.
 */
static void
label(char *out, size_t outsz, const char *name, size_t max)
{
	size_t i, n = 0;

	for (i = 0; i < max && name[i] != '\0' && n + 1 < outsz; i++)
		out[n++] = (name[i] == '"' || name[i] == '\\' ||
		               (unsigned char)name[i] < 0x20)
		    ? '_'
		    : name[i];
	out[n] = '\0';
}

static void
render_decisions(struct text *t, const struct mfile *f)
{
	char ctx[sizeof(f->slots[0].name) + 1];
	uint64_t n;
	int i, v, r;

	tprintf(t,
	    "# HELP shinkin_otp_decisions_total Decisions of the core, by "
	    "context, verdict and reason (one per audit row of a "
	    "decision).\n"
	    "# TYPE shinkin_otp_decisions_total counter\n");
	for (i = 0; i < NSLOTS; i++) {
		if (!__atomic_load_n(&f->slots[i].used, __ATOMIC_ACQUIRE))
			continue;
		label(ctx, sizeof(ctx), f->slots[i].name,
		    sizeof(f->slots[i].name));
		for (v = 0; v < NVERDICTS; v++)
			for (r = 0; r < NREASONS; r++) {
				if ((n = load(&f->slots[i].decisions[v][r])) ==
				    0)
					continue;
				tprintf(t,
				    "shinkin_otp_decisions_total{context=\"%s\","
				    "verdict=\"%s\",reason=\"%s\"} %llu\n",
				    ctx, verdict_names[v], sotp_reason_name(r),
				    (unsigned long long)n);
			}
	}
}

static void
render_latency(struct text *t, const struct mfile *f)
{
	char ctx[sizeof(f->slots[0].name) + 1];
	uint64_t cum, sum;
	int i, b;

	tprintf(t,
	    "# HELP shinkin_otp_decision_duration_seconds Time the core "
	    "spent on a decision (store round trips included, waiting for "
	    "the customer not).\n"
	    "# TYPE shinkin_otp_decision_duration_seconds histogram\n");
	for (i = 0; i < NSLOTS; i++) {
		if (!__atomic_load_n(&f->slots[i].used, __ATOMIC_ACQUIRE))
			continue;
		label(ctx, sizeof(ctx), f->slots[i].name,
		    sizeof(f->slots[i].name));
		/* Read the sum first: a decision counted meanwhile only
		 * makes the count larger, never the mean too high. */
		sum = load(&f->slots[i].sum_us);
		for (cum = 0, b = 0; b < NBUCKETS; b++)
			cum += load(&f->slots[i].buckets[b]);
		if (cum == 0) /* "-" before anything was counted there */
			continue;
		for (cum = 0, b = 0; b < NBUCKETS; b++) {
			cum += load(&f->slots[i].buckets[b]);
			tprintf(t,
			    "shinkin_otp_decision_duration_seconds_bucket{"
			    "context=\"%s\",le=\"%s\"} %llu\n",
			    ctx, bucket_le[b], (unsigned long long)cum);
		}
		tprintf(t,
		    "shinkin_otp_decision_duration_seconds_sum{context=\"%s\"}"
		    " %llu.%06llu\n"
		    "shinkin_otp_decision_duration_seconds_count{context="
		    "\"%s\"} %llu\n",
		    ctx, (unsigned long long)(sum / 1000000),
		    (unsigned long long)(sum % 1000000), ctx,
		    (unsigned long long)cum);
	}
}

static void
render_store(struct text *t, const struct mfile *f)
{
	tprintf(t,
	    "# HELP shinkin_otp_store_errors_total Store operations that "
	    "failed: unavailable (connection lost, timeout, read-only, ...) "
	    "or error.\n"
	    "# TYPE shinkin_otp_store_errors_total counter\n"
	    "shinkin_otp_store_errors_total{kind=\"unavailable\"} %llu\n"
	    "shinkin_otp_store_errors_total{kind=\"error\"} %llu\n"
	    "# HELP shinkin_otp_store_reopens_total Reopens of a lost store "
	    "connection, by result.\n"
	    "# TYPE shinkin_otp_store_reopens_total counter\n"
	    "shinkin_otp_store_reopens_total{result=\"ok\"} %llu\n"
	    "shinkin_otp_store_reopens_total{result=\"failed\"} %llu\n",
	    (unsigned long long)load(&f->store_errors[0]),
	    (unsigned long long)load(&f->store_errors[1]),
	    (unsigned long long)load(&f->reopens[0]),
	    (unsigned long long)load(&f->reopens[1]));
}

int
sotp_metrics_text(struct sotp_ctx *ctx, char **out)
{
	struct sotp_metrics *m = NULL;
	struct text t = {NULL, 0, 0, 0};
	const struct mfile *f;
	struct mfile *zero = NULL;
	int rc;

	if (ctx == NULL || out == NULL)
		return SOTP_ERR_INVALID_ARG;
	*out = NULL;
	if (!ctx->have_policy) {
		sotp_ctx_seterr(ctx, "no policy loaded");
		return SOTP_ERR_CONFIG;
	}
	if (ctx->pol.metrics[0] == '\0') {
		sotp_ctx_seterr(ctx, "%s: metrics = none", ctx->pol.path);
		return SOTP_ERR_NOT_FOUND;
	}
	/* No file yet: nothing has been counted, which reads as zeros. */
	rc = map_file(ctx->pol.metrics, 0, &m, ctx->err, sizeof(ctx->err));
	if (rc != SOTP_OK && rc != SOTP_ERR_NOT_FOUND)
		return rc;
	if ((zero = calloc(1, sizeof(*zero))) == NULL ||
	    (t.buf = malloc(t.size = 8192)) == NULL) {
		free(zero);
		sotp_metrics_close(m);
		return SOTP_ERR_NOMEM;
	}
	f = m != NULL ? m->f : zero;
	t.buf[0] = '\0';
	render_decisions(&t, f);
	render_latency(&t, f);
	render_store(&t, f);
	sotp_metrics_close(m);
	free(zero);
	if (t.failed) {
		free(t.buf);
		return SOTP_ERR_NOMEM;
	}
	*out = t.buf;
	return SOTP_OK;
}

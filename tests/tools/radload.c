/*
 * radload.c - a RADIUS load generator for the tests and the benchmark:
 * many Access-Requests in flight at once, to one or several servers, each
 * request signed with a Message-Authenticator, each reply checked (its
 * Response Authenticator and its Message-Authenticator), and one line per
 * request saying what came back. radclient starts a process per call and
 * spends most of the CPU on a loaded machine; this is one process, one
 * event loop.
 *
 *   radload -s HOST:PORT [-s HOST:PORT ...] -S SECRET [-f FILE] [-n N]
 *           [-c INFLIGHT] [-t TIMEOUT_MS] [-r RETRIES] [-R RATE] [-M] [-q]
 *
 *   -s  a server (repeat for several; numbered 0, 1, ... in that order)
 *   -S  the shared secret
 *   -f  the requests, one per line ("-" or none: stdin)
 *   -n  send the list N times over (default 1)
 *   -c  at most INFLIGHT requests unanswered at once (default 64)
 *   -t  wait TIMEOUT_MS for a reply before a retry (default 3000)
 *   -r  retries after the first try (default 0)
 *   -R  start at most RATE requests per second (default: no limit)
 *   -M  accept replies without a Message-Authenticator
 *   -q  no line per request, only the summary
 *
 * A request line is words separated by blanks: ATTRIBUTE=VALUE for the
 * attributes below, to=N (the server, default: line number modulo the
 * number of servers) and id=LABEL (default: the sequence number). A value
 * may hold %XX escapes; "%n" is the request's sequence number (0, 1, ...
 * over all repetitions), so one line can stand for many users. A value of
 * an octets attribute is 0x followed by hex; Attr-N=0xHEX sends any
 * attribute number N. '#' starts a comment line.
 *
 *   User-Name, User-Password (hidden per RFC 2865 5.2), NAS-IP-Address,
 *   NAS-Port, State, Called-Station-Id, Calling-Station-Id,
 *   NAS-Identifier, Attr-N
 *
 * Output, one line per request in the order the answers come:
 *
 *   ID SERVER RESULT RTT_US SENT_US RECV_US [State=0x...]
 *
 * RESULT is accept, reject, challenge, timeout, or invalid (a reply whose
 * authenticator or Message-Authenticator is wrong or missing, or that is
 * malformed); RTT_US the microseconds from the last try to the reply;
 * SENT_US and RECV_US wall-clock microseconds since the epoch (RECV_US 0
 * for a timeout), to line requests up against events of a test. The
 * summary goes to stderr. Exit status 0 when every request got a valid
 * reply, 1 when some timed out or were invalid, 2 on usage or system
 * errors.
 *
 * SIGUSR1 stops the load: no request is started after it, those in flight
 * are waited for (answered or timed out, each with its line), the rest
 * are never sent (no line) and the summary says how many. A test stops a
 * load so once the event it ran for has been seen, not at a fixed time.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define MAX_SERVERS 16
#define MAX_PACKET 4096 /* a reply */
#define MAX_REQUEST 1024
#define AUTH_LEN 16
#define HDR_LEN 20
#define MA_LEN 18

#define PW_USER_NAME 1
#define PW_USER_PASSWORD 2
#define PW_NAS_IP_ADDRESS 4
#define PW_NAS_PORT 5
#define PW_STATE 24
#define PW_CALLED_STATION_ID 30
#define PW_CALLING_STATION_ID 31
#define PW_NAS_IDENTIFIER 32
#define PW_MESSAGE_AUTHENTICATOR 80

#define CODE_ACCESS_REQUEST 1
#define CODE_ACCESS_ACCEPT 2
#define CODE_ACCESS_REJECT 3
#define CODE_ACCESS_CHALLENGE 11

enum atype { A_STRING, A_OCTETS, A_IPADDR, A_INTEGER, A_PASSWORD };

static const struct {
	const char *name;
	int num;
	enum atype type;
} dict[] = {
    {"User-Name", PW_USER_NAME, A_STRING},
    {"User-Password", PW_USER_PASSWORD, A_PASSWORD},
    {"NAS-IP-Address", PW_NAS_IP_ADDRESS, A_IPADDR},
    {"NAS-Port", PW_NAS_PORT, A_INTEGER},
    {"State", PW_STATE, A_OCTETS},
    {"Called-Station-Id", PW_CALLED_STATION_ID, A_STRING},
    {"Calling-Station-Id", PW_CALLING_STATION_ID, A_STRING},
    {"NAS-Identifier", PW_NAS_IDENTIFIER, A_STRING},
};

enum result { R_ACCEPT, R_REJECT, R_CHALLENGE, R_TIMEOUT, R_INVALID, R_N };
static const char *const result_names[R_N] = {
    "accept", "reject", "challenge", "timeout", "invalid"};

/* One request: its line, and once sent its packet and where it is. */
struct req {
	const char *line;
	unsigned long seq;
	int to;
	char id[64];
	uint8_t pkt[MAX_REQUEST];
	size_t len;
	int sock;                /* the socket it went out on */
	int tries;               /* sent so far */
	uint64_t sent;           /* first try, wall clock µs */
	uint64_t last;           /* last try, monotonic µs */
	struct req *prev, *next; /* in flight, oldest try first */
};

struct opts {
	struct sockaddr_storage srv[MAX_SERVERS];
	socklen_t srvlen[MAX_SERVERS];
	int nsrv;
	const char *secret;
	size_t secretlen;
	const char *file;
	unsigned long repeat;
	unsigned int inflight;
	unsigned int timeout_ms;
	unsigned int retries;
	double rate;
	int need_ma;
	int quiet;
};

struct run {
	const struct opts *o;
	EVP_MD *md5;
	EVP_MD_CTX *mctx;
	EVP_MAC *hmac;
	EVP_MAC_CTX *hctx;
	int *socks;
	int nsock;
	struct req **slot; /* [nsock * 256]: request by socket and id */
	uint8_t *next_id;  /* per socket */
	struct req *head, *tail;
	struct req **free; /* the pool of INFLIGHT requests not in use */
	unsigned int nfree;
	unsigned int busy;
	unsigned long count[R_N];
	uint64_t rtt_sum;
	char *out; /* output buffer */
	size_t outlen;
};

/* Set by SIGUSR1: start no more requests. */
static volatile sig_atomic_t stopped;

static void
on_stop(int sig)
{
	(void)sig;
	stopped = 1;
}

static void die(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "radload: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint64_t
clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- crypto: MD5 and HMAC-MD5, fetched once ---- */

static void
md5(struct run *r, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
    uint8_t *out)
{
	unsigned int n = 0;

	if (!EVP_DigestInit_ex(r->mctx, r->md5, NULL) ||
	    !EVP_DigestUpdate(r->mctx, a, alen) ||
	    (blen > 0 && !EVP_DigestUpdate(r->mctx, b, blen)) ||
	    !EVP_DigestFinal_ex(r->mctx, out, &n))
		die("%s", "MD5 failed");
}

static void
hmac_md5(struct run *r, const uint8_t *data, size_t len, uint8_t *out)
{
	size_t n = 0;

	if (!EVP_MAC_init(r->hctx, (const uint8_t *)r->o->secret,
	        r->o->secretlen, NULL) ||
	    !EVP_MAC_update(r->hctx, data, len) ||
	    !EVP_MAC_final(r->hctx, out, &n, AUTH_LEN))
		die("%s", "HMAC-MD5 failed");
}

static void
crypto_init(struct run *r)
{
	OSSL_PARAM p[2];

	r->md5 = EVP_MD_fetch(NULL, "MD5", NULL);
	r->mctx = EVP_MD_CTX_new();
	r->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (r->md5 == NULL || r->mctx == NULL || r->hmac == NULL ||
	    (r->hctx = EVP_MAC_CTX_new(r->hmac)) == NULL)
		die("%s", "OpenSSL has no MD5 or HMAC");
	p[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_MAC_PARAM_DIGEST, (char *)(uintptr_t) "MD5", 0);
	p[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_CTX_set_params(r->hctx, p))
		die("%s", "HMAC-MD5 unavailable");
}

static void
crypto_free(struct run *r)
{
	EVP_MAC_CTX_free(r->hctx);
	EVP_MAC_free(r->hmac);
	EVP_MD_CTX_free(r->mctx);
	EVP_MD_free(r->md5);
}

/* ---- building a request ---- */

/* Decodes %XX and %n of value into out[outsz]; returns the length. */
static size_t
decode(const char *v, size_t vlen, unsigned long seq, char *out, size_t outsz)
{
	size_t i, n = 0;
	char num[24];
	int k, hi, lo;

	for (i = 0; i < vlen && n + 1 < outsz; i++) {
		if (v[i] == '%' && i + 1 < vlen && v[i + 1] == 'n') {
			k = snprintf(num, sizeof(num), "%lu", seq);
			if (k > 0 && n + (size_t)k < outsz) {
				memcpy(out + n, num, (size_t)k);
				n += (size_t)k;
			}
			i++;
		} else if (v[i] == '%' && i + 2 < vlen &&
		    isxdigit((unsigned char)v[i + 1]) &&
		    isxdigit((unsigned char)v[i + 2])) {
			hi = isdigit((unsigned char)v[i + 1])
			    ? v[i + 1] - '0'
			    : (tolower((unsigned char)v[i + 1]) - 'a' + 10);
			lo = isdigit((unsigned char)v[i + 2])
			    ? v[i + 2] - '0'
			    : (tolower((unsigned char)v[i + 2]) - 'a' + 10);
			out[n++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[n++] = v[i];
		}
	}
	out[n] = '\0';
	return n;
}

static int
unhex(const char *s, size_t slen, uint8_t *out, size_t outsz, size_t *n)
{
	size_t i;
	unsigned int b;

	if (slen < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') ||
	    (slen - 2) % 2 != 0 || (slen - 2) / 2 > outsz)
		return -1;
	for (i = 2; i < slen; i += 2) {
		if (!isxdigit((unsigned char)s[i]) ||
		    !isxdigit((unsigned char)s[i + 1]) ||
		    sscanf(s + i, "%2x", &b) != 1)
			return -1;
		out[(i - 2) / 2] = (uint8_t)b;
	}
	*n = (slen - 2) / 2;
	return 0;
}

/* RFC 2865 5.2: the password in 16-byte blocks, chained MD5 masks. */
static size_t
hide_password(struct run *r, const uint8_t *auth, const char *pw, size_t pwlen,
    uint8_t *out)
{
	uint8_t b[AUTH_LEN], buf[128];
	size_t len, i, j;

	len = pwlen == 0 ? AUTH_LEN : (pwlen + 15) / 16 * 16;
	if (len > sizeof(buf))
		len = sizeof(buf);
	memset(buf, 0, sizeof(buf));
	memcpy(buf, pw, pwlen < len ? pwlen : len);
	for (i = 0; i < len; i += AUTH_LEN) {
		md5(r, (const uint8_t *)r->o->secret, r->o->secretlen,
		    i == 0 ? auth : out + i - AUTH_LEN, AUTH_LEN, b);
		for (j = 0; j < AUTH_LEN; j++)
			out[i + j] = buf[i + j] ^ b[j];
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return len;
}

static int
add_attr(uint8_t *pkt, size_t *len, int num, const uint8_t *v, size_t vlen)
{
	if (vlen > 253 || *len + 2 + vlen > MAX_REQUEST)
		return -1;
	pkt[(*len)++] = (uint8_t)num;
	pkt[(*len)++] = (uint8_t)(vlen + 2);
	memcpy(pkt + *len, v, vlen);
	*len += vlen;
	return 0;
}

/* One word "Name=value" of a request line into the packet. */
static int
add_word(struct run *r, struct req *q, const char *w, size_t wlen)
{
	const char *eq = memchr(w, '=', wlen);
	char val[512];
	uint8_t bin[256];
	size_t nlen, vlen, blen, i;
	uint32_t u;
	int num = -1;
	enum atype type = A_STRING;

	if (eq == NULL)
		return -1;
	nlen = (size_t)(eq - w);
	vlen = decode(eq + 1, wlen - nlen - 1, q->seq, val, sizeof(val));
	if (nlen == 2 && strncmp(w, "to", 2) == 0) {
		q->to = atoi(val);
		return q->to >= 0 && q->to < r->o->nsrv ? 0 : -1;
	}
	if (nlen == 2 && strncmp(w, "id", 2) == 0) {
		if (vlen >= sizeof(q->id))
			return -1;
		memcpy(q->id, val, vlen + 1);
		return 0;
	}
	for (i = 0; i < sizeof(dict) / sizeof(dict[0]); i++)
		if (strlen(dict[i].name) == nlen &&
		    strncmp(dict[i].name, w, nlen) == 0) {
			num = dict[i].num;
			type = dict[i].type;
		}
	if (num < 0 && nlen > 5 && strncmp(w, "Attr-", 5) == 0) {
		num = atoi(w + 5);
		type = A_OCTETS;
		if (num <= 0 || num > 255 || num == PW_MESSAGE_AUTHENTICATOR)
			return -1;
	}
	switch (type) {
	case A_STRING:
		return num < 0 ? -1
		               : add_attr(q->pkt, &q->len, num,
		                     (const uint8_t *)val, vlen);
	case A_OCTETS:
		if (unhex(val, vlen, bin, sizeof(bin), &blen) != 0)
			return -1;
		return add_attr(q->pkt, &q->len, num, bin, blen);
	case A_IPADDR:
		if (inet_pton(AF_INET, val, bin) != 1)
			return -1;
		return add_attr(q->pkt, &q->len, num, bin, 4);
	case A_INTEGER:
		u = htonl((uint32_t)strtoul(val, NULL, 10));
		return add_attr(q->pkt, &q->len, num, (uint8_t *)&u, 4);
	case A_PASSWORD:
		blen = hide_password(r, q->pkt + 4, val, vlen, bin);
		OPENSSL_cleanse(val, sizeof(val));
		return add_attr(q->pkt, &q->len, num, bin, blen);
	}
	return -1;
}

/*
 * Builds q's Access-Request: a random Request Authenticator, the line's
 * attributes, and a Message-Authenticator (RFC 3579 3.2) over it all.
 */
static int
build(struct run *r, struct req *q)
{
	const char *p = q->line, *w;
	uint8_t mac[AUTH_LEN], *ma;

	q->pkt[0] = CODE_ACCESS_REQUEST;
	if (RAND_bytes(q->pkt + 4, AUTH_LEN) != 1)
		die("%s", "no random bytes");
	q->len = HDR_LEN;
	/* The Message-Authenticator first: zeros until the MAC is known. */
	q->pkt[q->len++] = PW_MESSAGE_AUTHENTICATOR;
	q->pkt[q->len++] = MA_LEN;
	ma = q->pkt + q->len;
	memset(ma, 0, AUTH_LEN);
	q->len += AUTH_LEN;
	q->to = (int)(q->seq % (unsigned long)r->o->nsrv);
	snprintf(q->id, sizeof(q->id), "%lu", q->seq);
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '\n')
			break;
		w = p;
		while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		if (add_word(r, q, w, (size_t)(p - w)) != 0) {
			fprintf(stderr, "radload: bad word '%.*s' in: %s",
			    (int)(p - w), w, q->line);
			return -1;
		}
	}
	q->pkt[2] = (uint8_t)(q->len >> 8);
	q->pkt[3] = (uint8_t)(q->len & 0xff);
	hmac_md5(r, q->pkt, q->len, mac);
	memcpy(ma, mac, AUTH_LEN);
	return 0;
}

/* ---- checking a reply ---- */

/*
 * The reply to q in pkt[len]: its Response Authenticator (RFC 2865 3)
 * and its Message-Authenticator (RFC 3579 3.2, computed over the reply
 * with the Request Authenticator in place). Returns its result; *state
 * receives the State attribute as hex (or "").
 */
static enum result
check_reply(struct run *r, const struct req *q, uint8_t *pkt, size_t len,
    char *state, size_t statesz)
{
	uint8_t want[AUTH_LEN], got[AUTH_LEN], mac[AUTH_LEN];
	uint8_t save[AUTH_LEN];
	size_t i, alen, plen, off = 0;
	int have_ma = 0;

	state[0] = '\0';
	if (len < HDR_LEN)
		return R_INVALID;
	plen = (size_t)pkt[2] << 8 | pkt[3];
	if (plen < HDR_LEN || plen > len)
		return R_INVALID;
	len = plen;
	memcpy(got, pkt + 4, AUTH_LEN);
	memcpy(pkt + 4, q->pkt + 4, AUTH_LEN);
	md5(r, pkt, len, (const uint8_t *)r->o->secret, r->o->secretlen, want);
	if (CRYPTO_memcmp(want, got, AUTH_LEN) != 0)
		return R_INVALID;
	for (i = HDR_LEN; i < len; i += alen) {
		if (i + 2 > len || (alen = pkt[i + 1]) < 2 || i + alen > len)
			return R_INVALID;
		if (pkt[i] == PW_MESSAGE_AUTHENTICATOR) {
			if (alen != MA_LEN || have_ma)
				return R_INVALID;
			have_ma = 1;
			off = i + 2;
		} else if (pkt[i] == PW_STATE && statesz > 3) {
			size_t k, n = 0;

			n += (size_t)snprintf(state, statesz, "0x");
			for (k = 2; k < alen && n + 3 < statesz; k++)
				n += (size_t)snprintf(
				    state + n, statesz - n, "%02x", pkt[i + k]);
		}
	}
	if (have_ma) {
		/* The packet still holds the Request Authenticator. */
		memcpy(save, pkt + off, AUTH_LEN);
		memset(pkt + off, 0, AUTH_LEN);
		hmac_md5(r, pkt, len, mac);
		if (CRYPTO_memcmp(mac, save, AUTH_LEN) != 0)
			return R_INVALID;
	} else if (r->o->need_ma) {
		return R_INVALID;
	}
	switch (pkt[0]) {
	case CODE_ACCESS_ACCEPT:
		return R_ACCEPT;
	case CODE_ACCESS_REJECT:
		return R_REJECT;
	case CODE_ACCESS_CHALLENGE:
		return R_CHALLENGE;
	default:
		return R_INVALID;
	}
}

/* ---- the event loop ---- */

static void
unlink_req(struct run *r, struct req *q)
{
	if (q->prev != NULL)
		q->prev->next = q->next;
	else
		r->head = q->next;
	if (q->next != NULL)
		q->next->prev = q->prev;
	else
		r->tail = q->prev;
	q->prev = q->next = NULL;
}

static void
append_req(struct run *r, struct req *q)
{
	q->prev = r->tail;
	q->next = NULL;
	if (r->tail != NULL)
		r->tail->next = q;
	else
		r->head = q;
	r->tail = q;
}

static void
emit(struct run *r, const struct req *q, enum result res, uint64_t recv_wall,
    uint64_t rtt, const char *state)
{
	char line[768];
	int n;

	r->count[res]++;
	if (res != R_TIMEOUT)
		r->rtt_sum += rtt;
	if (r->o->quiet)
		return;
	n = snprintf(line, sizeof(line), "%s %d %s %llu %llu %llu%s%s\n", q->id,
	    q->to, result_names[res], (unsigned long long)rtt,
	    (unsigned long long)q->sent, (unsigned long long)recv_wall,
	    state[0] != '\0' ? " State=" : "", state);
	if (n > 0)
		fwrite(line, 1,
		    (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1,
		    stdout);
}

static void
transmit(struct run *r, struct req *q)
{
	const struct opts *o = r->o;

	if (sendto(r->socks[q->sock], q->pkt, q->len, 0,
	        (const struct sockaddr *)&o->srv[q->to],
	        o->srvlen[q->to]) < 0 &&
	    errno != EAGAIN && errno != ENOBUFS)
		fprintf(stderr, "radload: sendto: %s\n", strerror(errno));
	q->tries++;
	q->last = clock_us(CLOCK_MONOTONIC);
	append_req(r, q);
}

/* Finds a free (socket, id); 0 when one was found. */
static int
take_slot(struct run *r, struct req *q)
{
	int s, k;
	uint8_t id;

	for (s = 0; s < r->nsock; s++)
		for (k = 0; k < 256; k++) {
			id = r->next_id[s]++;
			if (r->slot[s * 256 + id] == NULL) {
				r->slot[s * 256 + id] = q;
				q->sock = s;
				q->pkt[1] = id;
				return 0;
			}
		}
	return -1;
}

static int
start(struct run *r, struct req *q)
{
	uint8_t mac[AUTH_LEN];
	size_t ma = HDR_LEN + 2;

	if (build(r, q) != 0)
		return -1;
	if (take_slot(r, q) != 0)
		return -1;
	/* The id is in the MAC: sign again now that it is known. */
	memset(q->pkt + ma, 0, AUTH_LEN);
	hmac_md5(r, q->pkt, q->len, mac);
	memcpy(q->pkt + ma, mac, AUTH_LEN);
	q->sent = clock_us(CLOCK_REALTIME);
	q->tries = 0;
	r->busy++;
	transmit(r, q);
	return 0;
}

static void
finish(struct run *r, struct req *q, enum result res, uint64_t recv_wall,
    uint64_t rtt, const char *state)
{
	unlink_req(r, q);
	r->slot[q->sock * 256 + q->pkt[1]] = NULL;
	r->busy--;
	emit(r, q, res, recv_wall, rtt, state);
	r->free[r->nfree++] = q;
}

static void
expire(struct run *r, uint64_t now)
{
	const uint64_t tmo = (uint64_t)r->o->timeout_ms * 1000;
	struct req *q;

	while ((q = r->head) != NULL && now - q->last >= tmo) {
		if ((unsigned int)q->tries <= r->o->retries) {
			unlink_req(r, q);
			transmit(r, q);
			continue;
		}
		finish(r, q, R_TIMEOUT, 0, now - q->last, "");
	}
}

static int
same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	const struct sockaddr_in *a4 = (const void *)a, *b4 = (const void *)b;
	const struct sockaddr_in6 *a6 = (const void *)a, *b6 = (const void *)b;

	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	return a6->sin6_port == b6->sin6_port &&
	    memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
}

static void
receive(struct run *r, int s)
{
	struct sockaddr_storage from;
	socklen_t fromlen;
	uint8_t pkt[MAX_PACKET];
	char state[600];
	struct req *q;
	ssize_t n;
	uint64_t now;

	for (;;) {
		fromlen = sizeof(from);
		n = recvfrom(r->socks[s], pkt, sizeof(pkt), MSG_DONTWAIT,
		    (struct sockaddr *)&from, &fromlen);
		if (n < 0)
			return;
		if (n < HDR_LEN)
			continue;
		q = r->slot[s * 256 + pkt[1]];
		/* Not ours (late, or from elsewhere): dropped, as a NAS would.
		 */
		if (q == NULL || !same_addr(&from, &r->o->srv[q->to]))
			continue;
		now = clock_us(CLOCK_MONOTONIC);
		finish(r, q,
		    check_reply(r, q, pkt, (size_t)n, state, sizeof(state)),
		    clock_us(CLOCK_REALTIME), now - q->last, state);
	}
}

static int
open_sockets(struct run *r)
{
	int s, fd, sz = 4 << 20;

	r->nsock = (int)((r->o->inflight + 255) / 256);
	r->socks = calloc((size_t)r->nsock, sizeof(*r->socks));
	r->slot = calloc((size_t)r->nsock * 256, sizeof(*r->slot));
	r->next_id = calloc((size_t)r->nsock, 1);
	if (r->socks == NULL || r->slot == NULL || r->next_id == NULL)
		return -1;
	for (s = 0; s < r->nsock; s++) {
		fd = socket(
		    r->o->srv[0].ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		r->socks[s] = fd;
	}
	return 0;
}

/* Reads the request lines (comments and blank lines dropped). */
static char **
read_lines(const char *file, size_t *n)
{
	FILE *f =
	    file == NULL || strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	char **v = NULL, **nv, *line = NULL, *p;
	size_t cap = 0, sz = 0;

	*n = 0;
	if (f == NULL)
		die("cannot read %s", file);
	while (getline(&line, &sz, f) >= 0) {
		for (p = line; *p == ' ' || *p == '\t'; p++)
			;
		if (*p == '#' || *p == '\n' || *p == '\0')
			continue;
		if (*n == cap) {
			cap = cap == 0 ? 1024 : cap * 2;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL)
				die("%s", "out of memory");
			v = nv;
		}
		if ((v[(*n)++] = strdup(line)) == NULL)
			die("%s", "out of memory");
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return v;
}

static void
add_server(struct opts *o, const char *spec)
{
	struct addrinfo hints, *ai = NULL;
	char host[256];
	const char *colon = strrchr(spec, ':');

	if (colon == NULL || o->nsrv == MAX_SERVERS ||
	    (size_t)(colon - spec) >= sizeof(host))
		die("bad server '%s' (HOST:PORT)", spec);
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || ai == NULL)
		die("cannot resolve '%s'", spec);
	memcpy(&o->srv[o->nsrv], ai->ai_addr, ai->ai_addrlen);
	o->srvlen[o->nsrv] = ai->ai_addrlen;
	if (o->nsrv > 0 && o->srv[0].ss_family != ai->ai_family)
		die("'%s': all servers must be of one address family", spec);
	o->nsrv++;
	freeaddrinfo(ai);
}

static unsigned long
number(const char *s, unsigned long max)
{
	char *end = NULL;
	unsigned long v = strtoul(s, &end, 10);

	if (s[0] == '\0' || *end != '\0' || v > max)
		die("bad number '%s'", s);
	return v;
}

static void
parse_args(int argc, char **argv, struct opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->repeat = 1;
	o->inflight = 64;
	o->timeout_ms = 3000;
	o->need_ma = 1;
	while ((ch = getopt(argc, argv, "s:S:f:n:c:t:r:R:Mq")) != -1) {
		switch (ch) {
		case 's':
			add_server(o, optarg);
			break;
		case 'S':
			o->secret = optarg;
			o->secretlen = strlen(optarg);
			break;
		case 'f':
			o->file = optarg;
			break;
		case 'n':
			o->repeat = number(optarg, 100000000);
			break;
		case 'c':
			o->inflight = (unsigned int)number(optarg, 65536);
			break;
		case 't':
			o->timeout_ms = (unsigned int)number(optarg, 600000);
			break;
		case 'r':
			o->retries = (unsigned int)number(optarg, 100);
			break;
		case 'R':
			o->rate = (double)number(optarg, 10000000);
			break;
		case 'M':
			o->need_ma = 0;
			break;
		case 'q':
			o->quiet = 1;
			break;
		default:
			die("%s",
			    "usage: radload -s HOST:PORT -S SECRET [-f FILE]"
			    " [-n N] [-c INFLIGHT] [-t MS] [-r RETRIES]"
			    " [-R RATE] [-M] [-q]");
		}
	}
	if (o->nsrv == 0 || o->secret == NULL || o->inflight == 0 ||
	    optind != argc)
		die("%s",
		    "need -s HOST:PORT and -S SECRET (see the head of "
		    "tests/tools/radload.c)");
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct run r;
	struct pollfd *pfd;
	struct req *pool, *q;
	char **lines;
	size_t nlines;
	unsigned long total, next = 0, i;
	uint64_t t0, now, wait_us;
	int s, timeout;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("%s", "cannot catch SIGUSR1");
	parse_args(argc, argv, &o);
	memset(&r, 0, sizeof(r));
	r.o = &o;
	crypto_init(&r);
	lines = read_lines(o.file, &nlines);
	total = (unsigned long)nlines * o.repeat;
	if ((pool = calloc(o.inflight, sizeof(*pool))) == NULL ||
	    (r.free = calloc(o.inflight, sizeof(*r.free))) == NULL ||
	    open_sockets(&r) != 0 ||
	    (pfd = calloc((size_t)r.nsock, sizeof(*pfd))) == NULL)
		die("%s", "out of memory or sockets");
	for (i = 0; i < o.inflight; i++)
		r.free[r.nfree++] = &pool[o.inflight - 1 - i];
	for (s = 0; s < r.nsock; s++) {
		pfd[s].fd = r.socks[s];
		pfd[s].events = POLLIN;
	}
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	t0 = clock_us(CLOCK_MONOTONIC);
	while ((next < total && !stopped) || r.busy > 0) {
		now = clock_us(CLOCK_MONOTONIC);
		wait_us = 0;
		while (next < total && !stopped && r.busy < o.inflight) {
			if (o.rate > 0 &&
			    now <
			        t0 + (uint64_t)((double)next * 1e6 / o.rate)) {
				wait_us = t0 +
				    (uint64_t)((double)next * 1e6 / o.rate) -
				    now;
				break;
			}
			q = r.free[--r.nfree];
			memset(q, 0, sizeof(*q));
			q->line = lines[next % nlines];
			q->seq = next;
			if (start(&r, q) != 0)
				exit(2);
			next++;
		}
		timeout = 50;
		if (wait_us > 0 && wait_us / 1000 < (uint64_t)timeout)
			timeout = (int)(wait_us / 1000) + 1;
		if (poll(pfd, (nfds_t)r.nsock, timeout) > 0)
			for (s = 0; s < r.nsock; s++)
				if (pfd[s].revents & POLLIN)
					receive(&r, s);
		expire(&r, clock_us(CLOCK_MONOTONIC));
	}
	fflush(stdout);
	now = clock_us(CLOCK_MONOTONIC);
	if (next < total)
		fprintf(stderr,
		    "radload: stopped by SIGUSR1: %lu of %lu requests sent\n",
		    next, total);
	fprintf(stderr,
	    "radload: %lu requests in %.3f s (%.0f/s): %lu accept, %lu reject,"
	    " %lu challenge, %lu timeout, %lu invalid; mean rtt %.0f us\n",
	    next, (double)(now - t0) / 1e6,
	    now > t0 ? (double)next * 1e6 / (double)(now - t0) : 0.0,
	    r.count[R_ACCEPT], r.count[R_REJECT], r.count[R_CHALLENGE],
	    r.count[R_TIMEOUT], r.count[R_INVALID],
	    next > r.count[R_TIMEOUT]
	        ? (double)r.rtt_sum / (double)(next - r.count[R_TIMEOUT])
	        : 0.0);
	/*
	 * Everything freed: under LeakSanitizer (the ASan build of the
	 * suite) a leak would turn the exit status into 1, "some failed".
	 */
	for (i = 0; i < nlines; i++)
		free(lines[i]);
	free(lines);
	free(pool);
	free(r.free);
	for (s = 0; s < r.nsock; s++)
		close(r.socks[s]);
	free(r.socks);
	free(r.slot);
	free(r.next_id);
	free(pfd);
	crypto_free(&r);
	return r.count[R_TIMEOUT] + r.count[R_INVALID] > 0 ? 1 : 0;
}

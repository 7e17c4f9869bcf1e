/*
 * cmd_key.c - key status, key rotate, key rewrap, key drop-kek: the key
 * ceremonies (README, "Keys"). The core does each step; this file loops
 * over the steps of a rotation, prints them and, between them, keeps the
 * clock and the pauses.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Sleeps ms milliseconds (EINTR resumed). */
static void
nap(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static const char *
state_name(const struct sotp_key_version *v)
{
	if (v->current)
		return "current";
	return v->live ? "live" : "retired";
}

static void
status_json(const struct sotp_key_status *s)
{
	const char *keks[SOTP_KEY_KEKS_MAX];
	struct cli_json j;
	size_t i;

	for (i = 0; i < s->nkeks; i++)
		keks[i] = s->keks[i];
	json_begin(&j, stdout);
	json_str(&j, "kek", s->kek);
	json_int(&j, "current", s->current);
	json_int(&j, "switched", s->switched);
	json_int(&j, "generation", s->generation);
	json_int(&j, "left", s->left);
	json_int(&j, "retire_at", s->retire_at);
	json_strv(&j, "keks", keks, s->nkeks);
	json_end(&j);
	for (i = 0; i < s->n; i++) {
		json_begin(&j, stdout);
		json_int(&j, "version", s->v[i].version);
		json_str(&j, "state", state_name(&s->v[i]));
		json_int(&j, "created", s->v[i].created);
		json_int(&j, "secrets", s->v[i].secrets);
		json_int(&j, "cards", s->v[i].cards);
		json_int(&j, "audit_rows", s->v[i].audit_rows);
		json_str(&j, "wrapped", s->v[i].wrapped);
		json_end(&j);
	}
}

static void
status_text(const struct sotp_key_status *s, time_t now)
{
	char t[32];
	size_t i, live = 0;

	cli_say("key-encryption key of this policy: %s", s->kek);
	printf("current version: %u (since %s)\n", s->current,
	    cli_time(s->switched, t, sizeof(t)));
	for (i = 0; i < s->n; i++) {
		live += s->v[i].live && !s->v[i].current;
		cli_say("version %u: %s, seals %lld token secrets and %lld "
		        "cards, keyed %lld audit rows; wrapped under %s",
		    s->v[i].version, state_name(&s->v[i]),
		    (long long)s->v[i].secrets, (long long)s->v[i].cards,
		    (long long)s->v[i].audit_rows,
		    s->v[i].wrapped[0] != '\0' ? s->v[i].wrapped : "nothing");
	}
	if (s->left > 0)
		printf(
		    "rotation under way: %lld values still sealed under an older version (run key rotate)\n",
		    (long long)s->left);
	else if (live > 0 && now < s->retire_at)
		printf(
		    "rotation under way: nothing left to re-seal; older versions can be retired from %s\n",
		    cli_time(s->retire_at, t, sizeof(t)));
	else if (live > 0)
		printf(
		    "rotation under way: nothing left to re-seal; run key rotate to retire the older versions\n");
	printf("keys wrapped under:");
	for (i = 0; i < s->nkeks; i++) {
		putchar(' ');
		cli_text(stdout, s->keks[i]);
	}
	putchar('\n');
}

/* key status: what the store holds; no key needed. */
static int
key_status(struct cli *c, int argc, char **argv)
{
	struct sotp_key_status *s = NULL;
	size_t npos;
	int ex, rc;

	cli_what(c, "key status", NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0)
		return ex;
	/*
	 * With the key when it loads (the KEK's name in the store); and
	 * without it while a token is down: that is when it is wanted.
	 */
	if ((rc = sotp_ctx_load(c->ctx, c->config)) == SOTP_ERR_KEY) {
		cli_warn(c, "without the keys: %s", sotp_ctx_errmsg(c->ctx));
		rc = sotp_ctx_load_nokey(c->ctx, c->config);
	}
	if (rc != SOTP_OK)
		return cli_error(c, rc);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return cli_error(c, SOTP_ERR_NOMEM);
	if ((rc = sotp_key_status(c->ctx, c->now, s)) != SOTP_OK) {
		free(s);
		return cli_error(c, rc);
	}
	if (c->json)
		status_json(s);
	else
		status_text(s, c->now);
	free(s);
	return CLI_EXIT_OK;
}

/* One step's line (or JSON object). */
static void
step_out(const struct cli *c, const struct sotp_key_step *st)
{
	static const char *const names[] = {
	    "started", "resumed", "resealed", "waiting", "retired", "done"};
	struct cli_json j;
	char t[32];

	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "step", names[st->what]);
		json_int(&j, "version", st->version);
		if (st->what == SOTP_KEY_STARTED)
			json_int(&j, "from", st->from);
		if (st->what == SOTP_KEY_RESEALED) {
			json_str(&j, "what", st->cards ? "cards" : "secrets");
			json_int(&j, "count", st->count);
			json_int(&j, "left", st->left);
		}
		if (st->what == SOTP_KEY_WAITING)
			json_int(&j, "until", st->wait_until);
		if (st->what == SOTP_KEY_RETIRED)
			json_int(&j, "retired", st->retired);
		json_end(&j);
		fflush(stdout);
		return;
	}
	switch (st->what) {
	case SOTP_KEY_STARTED:
		printf(
		    "key rotate: version %u is current (was %u); re-sealing\n",
		    st->version, st->from);
		break;
	case SOTP_KEY_RESUMED:
		printf("key rotate: resuming the rotation to version %u\n",
		    st->version);
		break;
	case SOTP_KEY_RESEALED:
		printf(
		    "key rotate: re-sealed %u %s under version %u (%lld left)\n",
		    st->count, st->cards ? "card grids" : "token secrets",
		    st->version, (long long)st->left);
		break;
	case SOTP_KEY_WAITING:
		printf(
		    "key rotate: nothing left to re-seal; the older version is retired at %s, when every State it signed has expired\n",
		    cli_time(st->wait_until, t, sizeof(t)));
		break;
	case SOTP_KEY_RETIRED:
		printf("key rotate: version %u retired\n", st->retired);
		break;
	case SOTP_KEY_DONE:
		printf("key rotate: done: version %u seals everything\n",
		    st->version);
		break;
	}
	fflush(stdout);
}

/*
 * A store error stopped the rotation (a lock held past lock_timeout, the
 * server gone): each step commits on its own or not at all, so nothing
 * is lost and the next run goes on from here. Any other error is as
 * any command's.
 */
static int
rotate_error(struct cli *c, int rc)
{
	if (rc != SOTP_ERR_STORE && rc != SOTP_ERR_STORE_UNAVAILABLE)
		return cli_error(c, rc);
	return cli_error_again(c, rc,
	    "nothing is lost: run key rotate again and it goes on from here");
}

/*
 * key rotate [--batch N] [--pause MS] [--max-batches N] [--no-wait]:
 * each step is the core's and commits on its own, so an interrupted run
 * is taken up by the next. Exit 0 done, 3 left unfinished on purpose.
 */
static int
key_rotate(struct cli *c, int argc, char **argv)
{
	char *batch_s = NULL, *pause_s = NULL, *max_s = NULL;
	int nowait = 0;
	const struct cli_opt opts[] = {
	    {"batch", &batch_s, NULL},
	    {"pause", &pause_s, NULL},
	    {"max-batches", &max_s, NULL},
	    {"no-wait", NULL, &nowait},
	    {NULL, NULL, NULL},
	};
	struct sotp_key_step st;
	/*
	 * Between batches the rotation lets go of the store for longer than
	 * a request waiting on an SQLite store's write lock sleeps between
	 * its tries (SQLite's busy handler: at most 100 ms), so a PAM or
	 * RADIUS decision always gets its turn: back-to-back batches could
	 * hold it off past the policy's lock_timeout.
	 */
	long long batch = 500, pause = 150, max = 0, n = 0;
	int waiting = 0;
	size_t npos;
	time_t now;
	int ex, rc;

	cli_what(c, "key rotate", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0 ||
	    (batch_s != NULL &&
	        (ex = cli_number(c, "--batch", batch_s, 1, 100000, &batch)) !=
	            0) ||
	    (pause_s != NULL &&
	        (ex = cli_number(c, "--pause", pause_s, 0, 60000, &pause)) !=
	            0) ||
	    (max_s != NULL &&
	        (ex = cli_number(
	             c, "--max-batches", max_s, 1, INT32_MAX, &max)) != 0) ||
	    (ex = cli_load(c)) != 0)
		return ex;
	if ((rc = sotp_key_rotate_begin(c->ctx, c->now, &st)) != SOTP_OK)
		return rotate_error(c, rc);
	step_out(c, &st);
	for (;;) {
		now = time(NULL);
		if ((rc = sotp_key_rotate_step(
		         c->ctx, now, (unsigned int)batch, &st)) != SOTP_OK)
			return rotate_error(c, rc);
		if (st.what == SOTP_KEY_DONE) {
			step_out(c, &st);
			return CLI_EXIT_OK;
		}
		if (st.what == SOTP_KEY_WAITING) {
			if (!waiting)
				step_out(c, &st);
			waiting = 1;
			if (nowait)
				return CLI_EXIT_MORE;
			nap(st.wait_until > now ? 1000 : 100);
			continue;
		}
		waiting = 0;
		/* Every value a decision held was skipped: they come back. */
		if (st.what == SOTP_KEY_RESEALED && st.count == 0) {
			nap(100);
			continue;
		}
		step_out(c, &st);
		if (st.what == SOTP_KEY_RESEALED && max > 0 && ++n >= max) {
			if (!c->json)
				printf(
				    "key rotate: stopped after %lld batches; key rotate goes on from here\n",
				    n);
			return CLI_EXIT_MORE;
		}
		if (pause > 0)
			nap((long)pause);
	}
}

/* key rewrap NEW-POLICY: every key also under the KEK it names. */
static int
key_rewrap(struct cli *c, int argc, char **argv)
{
	struct cli_json j;
	const char *pos[1];
	unsigned int wrapped = 0;
	size_t npos;
	int ex, rc;

	cli_what(c, "key rewrap", NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, pos, 1, &npos)) != 0)
		return ex;
	if (npos != 1)
		return cli_usage(c, "usage: key rewrap NEW-POLICY");
	if ((ex = cli_nonempty(c, "NEW-POLICY", pos[0])) != 0)
		return ex;
	if ((ex = cli_load(c)) != 0)
		return ex;
	if ((rc = sotp_key_rewrap(c->ctx, pos[0], c->now, &wrapped)) != SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "policy", pos[0]);
		json_int(&j, "wrapped", wrapped);
		json_end(&j);
	} else
		cli_say("%u keys wrapped under the key-encryption key of %s",
		    wrapped, pos[0]);
	return CLI_EXIT_OK;
}

/* key drop-kek NAME: the keys wrapped under an old KEK go. */
static int
key_drop(struct cli *c, int argc, char **argv)
{
	struct cli_json j;
	const char *pos[1];
	int64_t removed = 0;
	size_t npos;
	int ex, rc;

	cli_what(c, "key drop-kek", NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, pos, 1, &npos)) != 0)
		return ex;
	if (npos != 1)
		return cli_usage(
		    c, "usage: key drop-kek NAME (see key status)");
	if ((ex = cli_nonempty(c, "NAME", pos[0])) != 0)
		return ex;
	if ((ex = cli_load(c)) != 0)
		return ex;
	if ((rc = sotp_key_drop_kek(c->ctx, pos[0], c->now, &removed)) !=
	    SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "kek", pos[0]);
		json_int(&j, "deleted", removed);
		json_end(&j);
	} else if (removed == 0)
		cli_say("no key is wrapped under %s", pos[0]);
	else
		cli_say("%lld keys wrapped under %s deleted",
		    (long long)removed, pos[0]);
	return CLI_EXIT_OK;
}

/* key check: every value unsealed; exit 1 when one does not. */
static int
key_check(struct cli *c, int argc, char **argv)
{
	struct sotp_key_check k;
	struct cli_json j;
	size_t npos;
	int ex, rc;

	cli_what(c, "key check", NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0 ||
	    (ex = cli_load(c)) != 0)
		return ex;
	if ((rc = sotp_key_check(c->ctx, &k)) != SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		json_begin(&j, stdout);
		json_int(&j, "secrets", k.secrets);
		json_int(&j, "cards", k.cards);
		json_int(&j, "bad", k.bad);
		json_str(&j, "first_bad", k.first_bad);
		json_end(&j);
		cli_json_told(c);
	} else
		printf(
		    "%lld token secrets and %lld card grids unseal; %lld do not\n",
		    (long long)k.secrets, (long long)k.cards, (long long)k.bad);
	if (k.bad == 0)
		return CLI_EXIT_OK;
	cli_warn(c, "%lld values do not unseal, the first: %s",
	    (long long)k.bad, k.first_bad);
	return CLI_EXIT_REFUSED;
}

int
cmd_key(struct cli *c, int argc, char **argv)
{
	if (argc > 0 && strcmp(argv[0], "status") == 0)
		return key_status(c, argc - 1, argv + 1);
	if (argc > 0 && strcmp(argv[0], "rotate") == 0)
		return key_rotate(c, argc - 1, argv + 1);
	if (argc > 0 && strcmp(argv[0], "rewrap") == 0)
		return key_rewrap(c, argc - 1, argv + 1);
	if (argc > 0 && strcmp(argv[0], "drop-kek") == 0)
		return key_drop(c, argc - 1, argv + 1);
	if (argc > 0 && strcmp(argv[0], "check") == 0)
		return key_check(c, argc - 1, argv + 1);
	if (argc > 0) {
		cli_wipe_secrets(c, argc, argv, 0);
		return cli_usage(c,
		    "unknown key command '%s' (status, check, rotate, "
		    "rewrap, drop-kek)",
		    argv[0]);
	}
	return cli_usage(c,
	    "usage: key status | check | rotate | rewrap NEW-POLICY | drop-kek NAME");
}

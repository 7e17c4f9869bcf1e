/*
 * cmd_verify.c - verify: one attempt through the same engine that PAM and
 * RADIUS use.
 *
 * Every input given on the command line is supplied by name before the
 * first step; the engine takes each in its turn. The password is read
 * from stdin only when the engine asks for it. When the engine asks for
 * something the command line did not give, the tool prints its question
 * and the exported state (hex), and exits 3 so that a script can run it
 * again with --state and the answer.
 */
#include "cli.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

struct verify_args {
	char *context, *otp, *card, *serial, *login, *state;
};

/* Supplies the factors given on the command line; wipes their copies. */
static int
supply(struct cli *c, struct sotp_attempt *a, const struct verify_args *va)
{
	const struct {
		enum sotp_factor factor;
		char *value;
	} in[] = {
	    {SOTP_F_OTP, va->otp},
	    {SOTP_F_CARD, va->card},
	    {SOTP_F_SERIAL, va->serial},
	    {SOTP_F_LOGIN_CHOICE, va->login},
	};
	size_t i;
	int rc = SOTP_OK;

	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		if (in[i].value == NULL)
			continue;
		if (rc == SOTP_OK)
			rc = sotp_attempt_set(a, in[i].factor, in[i].value);
		if (in[i].factor == SOTP_F_OTP || in[i].factor == SOTP_F_CARD)
			sotp_wipe(in[i].value, strlen(in[i].value));
	}
	return rc == SOTP_OK ? CLI_EXIT_OK : cli_error(c, rc);
}

/* Steps until a final decision or a need stdin cannot answer. */
static int
decide(struct cli *c, struct sotp_attempt *a, struct sotp_decision *d)
{
	char pw[CLI_SECRET_MAX];
	int have_pw = 0, ex = CLI_EXIT_ERROR, r, rc;

	for (;;) {
		memset(d, 0, sizeof(*d));
		if ((rc = sotp_attempt_step(a, d)) != SOTP_OK) {
			ex = cli_error(c, rc);
			goto out;
		}
		if (d->verdict != SOTP_CONTINUE || d->ask != SOTP_F_PASSWORD ||
		    have_pw)
			break;
		r = cli_read_secret(c, d->prompt, pw, sizeof(pw));
		if (r < 0)
			goto out;
		if (r > 0) /* no password on stdin: report the question */
			break;
		have_pw = 1;
		rc = sotp_attempt_answer(a, pw);
		sotp_wipe(pw, sizeof(pw));
		if (rc != SOTP_OK) {
			ex = cli_error(c, rc);
			goto out;
		}
	}
	ex = CLI_EXIT_OK;
out:
	sotp_wipe(pw, sizeof(pw));
	return ex;
}

static void
print_human(const struct sotp_decision *d, const char *state)
{
	if (d->verdict == SOTP_ACCEPT) {
		printf("accepted\n");
	} else if (d->verdict == SOTP_CONTINUE) {
		printf("needs: %s\n", sotp_factor_name(d->ask));
		fputs("prompt: ", stdout);
		cli_text(stdout, d->prompt);
		fputc('\n', stdout);
		if (d->ask == SOTP_F_CARD)
			printf("card cells: %s\n", d->card_cells);
		printf("state: %s\n", state);
	} else if (sotp_decision_malformed(d) != NULL) {
		printf("refused: %s: %s (%s)\n", sotp_reason_text(d->reason),
		    sotp_decision_malformed(d), sotp_reason_name(d->reason));
	} else {
		printf("refused: %s (%s)\n", sotp_reason_text(d->reason),
		    sotp_reason_name(d->reason));
	}
	if (d->message[0] != '\0') {
		fputs("message: ", stdout);
		cli_text(stdout, d->message);
		fputc('\n', stdout);
	}
}

/* The exported state in hex, state[2 * SOTP_STATE_MAX + 1]. */
static int
state_hex(struct sotp_attempt *a, char *state)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t raw[SOTP_STATE_MAX];
	size_t len = 0, i;
	int rc;

	if ((rc = sotp_attempt_export(a, raw, sizeof(raw), &len)) != SOTP_OK)
		return rc;
	for (i = 0; i < len; i++) {
		state[2 * i] = hex[raw[i] >> 4];
		state[2 * i + 1] = hex[raw[i] & 15];
	}
	state[2 * len] = '\0';
	return SOTP_OK;
}

static int
report(struct cli *c, struct sotp_attempt *a, const struct sotp_decision *d,
    const char *context)
{
	char why[160];

	char state[2 * SOTP_STATE_MAX + 1] = "";
	struct cli_json j;
	int rc, n;

	if (d->verdict == SOTP_CONTINUE &&
	    (rc = state_hex(a, state)) != SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		json_begin(&j, stdout);
		cli_json_decision(c, &j, d);
		if (d->verdict == SOTP_CONTINUE) {
			json_str(&j, "ask", sotp_factor_name(d->ask));
			json_str(&j, "prompt", d->prompt);
			json_bool(&j, "echo", d->echo);
			json_str(&j, "card_cells", d->card_cells);
			json_str(&j, "state", state);
		}
		json_end(&j);
		cli_json_told(c);
	} else {
		print_human(d, state);
	}
	if (d->verdict == SOTP_ACCEPT)
		return CLI_EXIT_OK;
	if (d->verdict == SOTP_CONTINUE)
		return CLI_EXIT_MORE;
	/* The one refusal whose cause is a word of the command line. */
	if (d->reason == SOTP_R_UNKNOWN_CONTEXT) {
		n = snprintf(why, sizeof(why),
		    "%s '%s' is not a context of the policy",
		    context != NULL ? "--context" : "the default context",
		    context != NULL ? context : "transaction");
		if (n > 0) /* a long word: the cut shows */
			sotp_mark_cut(why, sizeof(why), (size_t)n);
		return cli_refused_why(c, d->reason, why);
	}
	/* A malformed input by name ("login-otp"), never its value. */
	return cli_refused_why(c, d->reason, sotp_decision_malformed(d));
}

/*
 * --state as printed: hex. Anything else is handed over as it is, so that
 * the engine refuses and audits it like any other bad state.
 */
static int
resume(struct cli *c, const char *id, const char *context, const char *hex,
    struct sotp_attempt **a)
{
	uint8_t *raw;
	long len = 0;
	int rc;

	if ((raw = OPENSSL_hexstr2buf(hex, &len)) == NULL)
		return sotp_attempt_resume(c->ctx, id, context,
		    (const uint8_t *)hex, strlen(hex), c->now, a);
	rc = sotp_attempt_resume(
	    c->ctx, id, context, raw, (size_t)len, c->now, a);
	OPENSSL_free(raw);
	return rc;
}

int
cmd_verify(struct cli *c, int argc, char **argv)
{
	struct verify_args va;
	const struct cli_opt opts[] = {
	    {"context", &va.context, NULL},
	    {"otp", &va.otp, NULL},
	    {"card", &va.card, NULL},
	    {"serial", &va.serial, NULL},
	    {"login-otp", &va.login, NULL},
	    {"state", &va.state, NULL},
	    {NULL, NULL, NULL},
	};
	struct sotp_attempt *a = NULL;
	struct sotp_decision d;
	const char *pos[1], *context;
	size_t npos;
	int ex, ex_otp, ex_card, rc;

	memset(&va, 0, sizeof(va));
	memset(&d, 0, sizeof(d));
	cli_what(c, "verify", NULL);
	c->secret_words = 1;
	ex = cli_parse(c, argc, argv, opts, pos, 1, &npos);
	/* The code and the card digits leave argv before the load. */
	ex_otp = cli_take_secret(c, &va.otp);
	ex_card = cli_take_secret(c, &va.card);
	if (ex == 0)
		ex = ex_otp != 0 ? ex_otp : ex_card;
	if (ex != 0)
		goto out;
	cli_what(c, "verify", npos > 0 ? pos[0] : NULL);
	if (npos != 1) {
		ex = cli_usage(
		    c, "usage: verify ID [--context NAME] [--otp CODE] ...");
		goto out;
	}
	context = va.context != NULL ? va.context : "transaction";
	if ((ex = cli_load(c)) != 0)
		goto out;
	if (va.state != NULL)
		rc = resume(c, pos[0], context, va.state, &a);
	else
		rc = sotp_attempt_begin(c->ctx, pos[0], context, c->now, &a);
	if (rc != SOTP_OK) {
		ex = cli_error(c, rc);
		goto out;
	}
	if ((ex = supply(c, a, &va)) != 0 || (ex = decide(c, a, &d)) != 0)
		goto out;
	ex = report(c, a, &d, va.context);
out:
	sotp_attempt_free(a);
	sotp_free_string(va.otp);
	sotp_free_string(va.card);
	return ex;
}

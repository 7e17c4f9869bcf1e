/*
 * cmd_verify.c - verify: one attempt through the same engine that PAM and
 * RADIUS use.
 *
 * Every factor given on the command line is supplied before the first
 * step; the engine takes what it needs. The password is read from stdin
 * only when the engine asks for it. When it asks for something the
 * command line did not give, the tool prints what is needed and the
 * exported state, and exits 3 so that a script can run it again with
 * --state and the answer.
 */
#include "cli.h"

#include <string.h>

struct verify_args {
	char *context, *otp, *card, *serial, *login, *state;
};

static const struct {
	unsigned int bit;
	const char *name;
} factor_names[] = {
    {SOTP_F_PASSWORD, "password"},
    {SOTP_F_OTP, "otp"},
    {SOTP_F_CARD, "card"},
    {SOTP_F_SERIAL, "serial"},
    {SOTP_F_LOGIN_CHOICE, "login-otp"},
};
#define NFACTORS (sizeof(factor_names) / sizeof(factor_names[0]))

/* Supplies the factors given on the command line; wipes argv's copies. */
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
		if (d->verdict != SOTP_CONTINUE ||
		    (d->needs & SOTP_F_PASSWORD) == 0 || have_pw)
			break;
		r = cli_read_secret(
		    c, sotp_factor_prompt(SOTP_F_PASSWORD), pw, sizeof(pw));
		if (r < 0)
			goto out;
		if (r > 0) /* no password on stdin: report the need */
			break;
		have_pw = 1;
		rc = sotp_attempt_set(a, SOTP_F_PASSWORD, pw);
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
print_human(const struct sotp_decision *d, const char *const *needs,
    size_t nneeds, const char *state)
{
	size_t i;

	if (d->verdict == SOTP_ACCEPT) {
		printf("accepted\n");
	} else if (d->verdict == SOTP_CONTINUE) {
		printf("needs:");
		for (i = 0; i < nneeds; i++)
			printf(" %s", needs[i]);
		printf("\n");
		if ((d->needs & SOTP_F_CARD) != 0 && d->card_cells[0] != '\0')
			printf("card cells: %s\n", d->card_cells);
		printf("state: %s\n", state);
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

static int
report(struct cli *c, struct sotp_attempt *a, const struct sotp_decision *d)
{
	const char *needs[NFACTORS];
	char state[SOTP_STATE_MAX] = "";
	struct cli_json j;
	size_t i, n = 0;
	int rc;

	if (d->verdict == SOTP_CONTINUE) {
		rc = sotp_attempt_export(a, state, sizeof(state));
		if (rc != SOTP_OK)
			return cli_error(c, rc);
		for (i = 0; i < NFACTORS; i++)
			if ((d->needs & factor_names[i].bit) != 0)
				needs[n++] = factor_names[i].name;
	}
	if (c->json) {
		json_begin(&j, stdout);
		cli_json_decision(&j, d);
		if (d->verdict == SOTP_CONTINUE) {
			json_strv(&j, "needs", needs, n);
			json_str(&j, "card_cells", d->card_cells);
			json_str(&j, "state", state);
		}
		json_end(&j);
	} else {
		print_human(d, needs, n, state);
	}
	if (d->verdict == SOTP_ACCEPT)
		return CLI_EXIT_OK;
	if (d->verdict == SOTP_CONTINUE)
		return CLI_EXIT_MORE;
	return cli_refused(c, d->reason);
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
	int ex, rc;

	memset(&va, 0, sizeof(va));
	memset(&d, 0, sizeof(d));
	if ((ex = cli_parse(c, argc, argv, opts, pos, 1, &npos)) != 0)
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
		rc = sotp_attempt_resume(
		    c->ctx, pos[0], context, va.state, c->now, &a);
	else
		rc = sotp_attempt_begin(c->ctx, pos[0], context, c->now, &a);
	if (rc != SOTP_OK) {
		ex = cli_error(c, rc);
		goto out;
	}
	if ((ex = supply(c, a, &va)) != 0 || (ex = decide(c, a, &d)) != 0)
		goto out;
	ex = report(c, a, &d);
out:
	sotp_attempt_free(a);
	return ex;
}

/*
 * cmd_contract.c - contract add, passwd, bind, unbind, unlock, close,
 * show, set, card and list. All but card and bind work without the master
 * key (the help desk).
 *
 * Passwords come as one line on stdin, never from argv, and are wiped as
 * soon as the core has them. Every refusal is the core's; this file only
 * reports it.
 */
#include "cli.h"

#include <string.h>

#define GRID_MAX 4096

/* Parses "ID [options]"; sets c->what to "contract VERB ID". */
static int
contract_args(struct cli *c, const char *verb, int argc, char **argv,
    const struct cli_opt *opts, char **secret, const char **id)
{
	char what[32];
	const char *pos[1];
	size_t npos;
	int ex, ex_take = CLI_EXIT_OK;

	snprintf(what, sizeof(what), "contract %s", verb);
	cli_what(c, what, NULL);
	ex = cli_parse(c, argc, argv, opts, pos, 1, &npos);
	/* A secret option leaves argv before anything can fail or wait. */
	if (secret != NULL)
		ex_take = cli_take_secret(c, secret);
	if (ex != 0 || (ex = ex_take) != 0)
		return ex;
	if (npos != 1)
		return cli_usage(c, "usage: contract %s ID", verb);
	cli_what(c, what, pos[0]);
	*id = pos[0];
	/* A card is sealed and a binding checks a code: the key's work. */
	if (strcmp(verb, "card") == 0 || strcmp(verb, "bind") == 0)
		return cli_load(c);
	return cli_load_nokey(c);
}

/* add and passwd: the password is one line on stdin. */
static int
contract_password(struct cli *c, const char *verb, int argc, char **argv)
{
	struct sotp_decision d;
	char pw[CLI_SECRET_MAX];
	const char *id = NULL;
	int ex, r, rc, add = strcmp(verb, "add") == 0;

	memset(&d, 0, sizeof(d));
	if ((ex = contract_args(c, verb, argc, argv, NULL, NULL, &id)) != 0)
		return ex;
	r = cli_read_secret(c, "Password: ", pw, sizeof(pw));
	if (r != 0) {
		if (r > 0)
			cli_warn_rc(
			    c, SOTP_ERR_BAD_INPUT, "no password on stdin");
		ex = CLI_EXIT_ERROR;
		goto out;
	}
	if (add)
		rc = sotp_contract_add(
		    c->ctx, id, r == 0 ? pw : NULL, c->now, &d);
	else
		rc = sotp_contract_passwd(c->ctx, id, pw, c->now, &d);
	/* A malformed ID or password: the core's detail says which. */
	ex = cli_outcome_why(c, rc, &d, add ? "contract added" : "password set",
	    d.reason == SOTP_R_BAD_INPUT ? sotp_ctx_errmsg(c->ctx) : NULL);
out:
	sotp_wipe(pw, sizeof(pw));
	return ex;
}

/* A --login-otp value; a bad one is a usage error. */
static int
login_arg(struct cli *c, const char *s, enum sotp_login *l)
{
	if (sotp_login_parse(s, l) != SOTP_OK)
		return cli_usage(
		    c, "--login-otp: '%s' is not yes, no or card", s);
	return CLI_EXIT_OK;
}

static int
contract_bind(struct cli *c, int argc, char **argv)
{
	char *serial = NULL, *code = NULL, *login_s = NULL;
	const struct cli_opt opts[] = {
	    {"serial", &serial, NULL},
	    {"otp", &code, NULL},
	    {"login-otp", &login_s, NULL},
	    {NULL, NULL, NULL},
	};
	struct sotp_contract_info info;
	struct sotp_decision d;
	enum sotp_login login = SOTP_LOGIN_OTP;
	const char *id = NULL;
	int ex, rc;

	memset(&d, 0, sizeof(d));
	c->secret_words = 1;
	if ((ex = contract_args(c, "bind", argc, argv, opts, &code, &id)) != 0)
		goto out;
	if (serial == NULL || code == NULL) {
		ex = cli_usage(
		    c, "usage: contract bind ID --serial S --otp CODE");
		goto out;
	}
	/*
	 * Without --login-otp the contract keeps the choice it has. An
	 * unknown contract is left for the core to refuse (and audit).
	 */
	if (login_s != NULL) {
		if ((ex = login_arg(c, login_s, &login)) != 0)
			goto out;
	} else if (sotp_contract_get(c->ctx, id, &info) == SOTP_OK) {
		login = info.login;
	}
	rc = sotp_contract_bind(c->ctx, id, serial, code, login, c->now, &d);
	ex = cli_outcome(c, rc, &d, "token bound");
out:
	sotp_free_string(code);
	return ex;
}

static int
contract_set(struct cli *c, int argc, char **argv)
{
	char *login_s = NULL;
	const struct cli_opt opts[] = {
	    {"login-otp", &login_s, NULL},
	    {NULL, NULL, NULL},
	};
	struct sotp_decision d;
	enum sotp_login login;
	const char *id = NULL;
	int ex, rc;

	memset(&d, 0, sizeof(d));
	if ((ex = contract_args(c, "set", argc, argv, opts, NULL, &id)) != 0)
		return ex;
	if (login_s == NULL)
		return cli_usage(
		    c, "usage: contract set ID --login-otp yes|no|card");
	if ((ex = login_arg(c, login_s, &login)) != 0)
		return ex;
	rc = sotp_contract_set_login(c->ctx, id, login, c->now, &d);
	return cli_outcome(c, rc, &d, "login choice set");
}

/* unbind, unlock and close: an ID and nothing else. */
static int
contract_simple(struct cli *c, const char *verb, int argc, char **argv)
{
	struct sotp_decision d;
	const char *id = NULL, *done;
	int ex, rc;

	memset(&d, 0, sizeof(d));
	if ((ex = contract_args(c, verb, argc, argv, NULL, NULL, &id)) != 0)
		return ex;
	if (strcmp(verb, "unbind") == 0) {
		rc = sotp_contract_unbind(c->ctx, id, c->now, &d);
		done = "token unbound";
	} else if (strcmp(verb, "unlock") == 0) {
		rc = sotp_contract_unlock(c->ctx, id, c->now, &d);
		done = "contract unlocked";
	} else {
		rc = sotp_contract_close(c->ctx, id, c->now, &d);
		done = "contract closed";
	}
	return cli_outcome(c, rc, &d, done);
}

/* The grid is printed once, for the customer's mailer, then wiped. */
static int
contract_card(struct cli *c, int argc, char **argv)
{
	struct sotp_decision d;
	struct cli_json j;
	char grid[GRID_MAX];
	const char *id = NULL;
	size_t len;
	int ex, rc;

	memset(&d, 0, sizeof(d));
	grid[0] = '\0';
	if ((ex = contract_args(c, "card", argc, argv, NULL, NULL, &id)) != 0)
		goto out;
	rc = sotp_contract_card(c->ctx, id, c->now, grid, sizeof(grid), &d);
	if (rc != SOTP_OK || d.verdict != SOTP_ACCEPT) {
		ex = cli_outcome(c, rc, &d, NULL);
		goto out;
	}
	len = strnlen(grid, sizeof(grid));
	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "contract", id);
		json_str(&j, "grid", grid);
		json_end(&j);
	} else {
		fwrite(grid, 1, len, stdout);
		if (len > 0 && grid[len - 1] != '\n')
			fputc('\n', stdout);
	}
	fflush(stdout);
	ex = CLI_EXIT_OK;
out:
	sotp_wipe(grid, sizeof(grid));
	return ex;
}

static void
contract_json(FILE *f, const struct sotp_contract_info *k)
{
	struct cli_json j;

	json_begin(&j, f);
	json_str(&j, "id", k->id);
	json_str(&j, "status", k->closed ? "closed" : "active");
	json_str(&j, "login", sotp_login_name(k->login));
	json_str(&j, "serial", k->serial);
	json_bool(&j, "card", k->has_card);
	json_int(&j, "failures", k->failures);
	json_int(&j, "locked_until", k->locked_until);
	json_int(&j, "created", k->created);
	json_end(&j);
}

static void
lock_text(int64_t locked_until, char *buf, size_t bufsz)
{
	char when[32];

	if (locked_until == 0)
		snprintf(buf, bufsz, "no");
	else if (locked_until < 0)
		snprintf(buf, bufsz, "until an admin unlocks");
	else
		snprintf(buf, bufsz, "until %s",
		    cli_time(locked_until, when, sizeof(when)));
}

static int
contract_show(struct cli *c, int argc, char **argv)
{
	struct sotp_contract_info k;
	const char *id = NULL;
	char when[32], lock[64];
	int ex, rc;

	if ((ex = contract_args(c, "show", argc, argv, NULL, NULL, &id)) != 0)
		return ex;
	rc = sotp_contract_get(c->ctx, id, &k);
	if (rc == SOTP_ERR_NOT_FOUND)
		return cli_refused(c, SOTP_R_UNKNOWN_CONTRACT);
	if (rc != SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		contract_json(stdout, &k);
		return CLI_EXIT_OK;
	}
	lock_text(k.locked_until, lock, sizeof(lock));
	fputs("contract: ", stdout);
	cli_text(stdout, k.id);
	printf("\nstatus: %s\nlogin: %s\n", k.closed ? "closed" : "active",
	    sotp_login_name(k.login));
	fputs("token: ", stdout);
	cli_text(stdout, k.serial[0] != '\0' ? k.serial : "-");
	printf("\ncard: %s\nfailures: %u\nlocked: %s\ncreated: %s\n",
	    k.has_card ? "issued" : "none", k.failures, lock,
	    cli_time(k.created, when, sizeof(when)));
	return CLI_EXIT_OK;
}

/* contract list: one tab-separated line per contract. */
static int
list_one(void *arg, const struct sotp_contract_info *k)
{
	const struct cli *c = arg;
	char lock[64];

	if (c->json) {
		contract_json(cli_rows(c), k);
	} else {
		lock_text(k->locked_until, lock, sizeof(lock));
		cli_text(stdout, k->id);
		printf("\t%s\t%s\t", k->closed ? "closed" : "active",
		    sotp_login_name(k->login));
		cli_text(stdout, k->serial[0] != '\0' ? k->serial : "-");
		printf("\t%u\t%s\n", k->failures, lock);
	}
	return ferror(cli_rows(c)) ? 1 : 0;
}

static int
contract_list(struct cli *c, int argc, char **argv)
{
	char *status_s = NULL;
	int locked = 0;
	const struct cli_opt opts[] = {
	    {"locked", NULL, &locked},
	    {"status", &status_s, NULL},
	    {NULL, NULL, NULL},
	};
	enum sotp_contract_status status = SOTP_CONTRACTS_ANY;
	size_t npos;
	int ex, rc;

	cli_what(c, "contract list", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0)
		return ex;
	if (status_s != NULL) {
		if (strcmp(status_s, "active") == 0)
			status = SOTP_CONTRACTS_ACTIVE;
		else if (strcmp(status_s, "closed") == 0)
			status = SOTP_CONTRACTS_CLOSED;
		else
			return cli_usage(c,
			    "--status: '%s' is not active or closed", status_s);
	}
	if ((ex = cli_load_nokey(c)) != 0 || (ex = cli_rows_begin(c)) != 0)
		return ex;
	rc = sotp_contract_list(c->ctx, locked, status, c->now, list_one, c);
	return cli_rows_end(c, rc == SOTP_OK ? CLI_EXIT_OK : cli_error(c, rc));
}

int
cmd_contract(struct cli *c, int argc, char **argv)
{
	const char *verb;

	if (argc < 1)
		return cli_usage(c, "usage: contract VERB ID [options]");
	verb = argv[0];
	argc--;
	argv++;
	if (strcmp(verb, "add") == 0 || strcmp(verb, "passwd") == 0)
		return contract_password(c, verb, argc, argv);
	if (strcmp(verb, "bind") == 0)
		return contract_bind(c, argc, argv);
	if (strcmp(verb, "unbind") == 0 || strcmp(verb, "unlock") == 0 ||
	    strcmp(verb, "close") == 0)
		return contract_simple(c, verb, argc, argv);
	if (strcmp(verb, "set") == 0)
		return contract_set(c, argc, argv);
	if (strcmp(verb, "card") == 0)
		return contract_card(c, argc, argv);
	if (strcmp(verb, "show") == 0)
		return contract_show(c, argc, argv);
	if (strcmp(verb, "import") == 0)
		return cmd_contract_import(c, argc, argv);
	if (strcmp(verb, "list") == 0)
		return contract_list(c, argc, argv);
	cli_wipe_secrets(c, argc + 1, argv - 1, 0); /* from verb on */
	return cli_usage(c,
	    "unknown contract command '%s'; usage: contract "
	    "add|passwd|bind|unbind|unlock|close|show|set|card ID, "
	    "contract import FILE, contract list",
	    verb);
}

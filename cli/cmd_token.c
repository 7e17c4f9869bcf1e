/*
 * cmd_token.c - token add, generate, show and list.
 *
 * A secret only passes through here on its way in (add) or, on request,
 * out as an otpauth URI (generate, show --uri/--qr/--png), each export
 * audited by the core (sotp_token_uri). Every copy this file makes
 * is wiped; the argv copy of --secret (and of resync's codes) is wiped
 * as soon as argv is parsed, so that it does not linger in
 * /proc/PID/cmdline while the command loads and runs.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#define SECRET_BYTES_MAX 128 /* decoded secret, well above 64-byte keys */
#define GENERATE_MAX 10000

/* The token parameters an operator may override on add and generate. */
struct spec_args {
	char *alg, *digits, *period, *kind;
	char *counter; /* add only: an event-based (HOTP) token */
};

/* The policy's defaults, then whatever the command line says. */
static int
make_spec(
    struct cli *c, const struct spec_args *sa, struct sotp_token_spec *spec)
{
	long long n;
	int ex;

	sotp_token_spec_defaults(c->ctx, spec);
	if (sa->alg != NULL && sotp_alg_parse(sa->alg, &spec->alg) != SOTP_OK)
		return cli_usage(c,
		    "--algorithm: '%s' is not sha1, sha256 or sha512", sa->alg);
	if (sa->digits != NULL) {
		if ((ex = cli_number(
		         c, "--digits", sa->digits, 0, UINT_MAX, &n)) != 0)
			return ex;
		spec->digits = (unsigned int)n;
	}
	if (sa->period != NULL && sa->counter != NULL)
		return cli_usage(c,
		    "--period and --counter: a token counts time (TOTP) or "
		    "events (HOTP), not both");
	if (sa->period != NULL) {
		/* 0 would make an HOTP token: that takes --counter. */
		if ((ex = cli_number(
		         c, "--period", sa->period, 1, UINT_MAX, &n)) != 0)
			return ex;
		spec->period = (unsigned int)n;
	}
	if (sa->counter != NULL) {
		if ((ex = cli_number(c, "--counter", sa->counter, 0,
		         (long long)1 << 62, &n)) != 0)
			return ex;
		spec->period = 0;
		spec->counter = (uint64_t)n;
	}
	if (sa->kind != NULL)
		spec->kind = sa->kind;
	return CLI_EXIT_OK;
}

/* Decodes the base32 secret from argv, or from stdin for "-". */
static int
decode_secret(
    struct cli *c, char *arg, uint8_t *key, size_t keysz, size_t *keylen)
{
	char line[CLI_SECRET_MAX];
	const char *why = NULL;
	int ex = CLI_EXIT_ERROR, rc, r;

	if (strcmp(arg, "-") == 0) {
		r = cli_read_secret(c, "Secret (base32): ", line, sizeof(line));
		if (r != 0) {
			if (r > 0)
				cli_warn_rc(c, SOTP_ERR_BAD_INPUT,
				    "no secret on stdin");
			goto out;
		}
		rc = sotp_base32_decode(line, key, keysz, keylen, &why);
	} else {
		rc = sotp_base32_decode(arg, key, keysz, keylen, &why);
		sotp_wipe(arg, strlen(arg));
	}
	if (rc == SOTP_ERR_BAD_INPUT) {
		cli_warn_rc(c, SOTP_ERR_BAD_INPUT, "bad --secret: %s",
		    why != NULL ? why : "not base32");
		goto out;
	}
	if (rc != SOTP_OK) {
		ex = cli_error(c, rc);
		goto out;
	}
	ex = CLI_EXIT_OK;
out:
	sotp_wipe(line, sizeof(line));
	return ex;
}

static int
token_add(struct cli *c, int argc, char **argv)
{
	struct spec_args sa = {NULL, NULL, NULL, NULL, NULL};
	char *secret = NULL;
	const struct cli_opt opts[] = {
	    {"secret", &secret, NULL},
	    {"algorithm", &sa.alg, NULL},
	    {"digits", &sa.digits, NULL},
	    {"period", &sa.period, NULL},
	    {"counter", &sa.counter, NULL},
	    {"kind", &sa.kind, NULL},
	    {NULL, NULL, NULL},
	};
	struct sotp_token_spec spec;
	struct sotp_decision d;
	uint8_t key[SECRET_BYTES_MAX];
	const char *pos[1];
	size_t npos, keylen = 0;
	int ex, rc;

	cli_what(c, "token add", NULL);
	c->secret_words = 1;
	ex = cli_parse(c, argc, argv, opts, pos, 1, &npos);
	/* Out of argv before the load (decode_secret wipes the copy). */
	if ((rc = cli_take_secret(c, &secret)) != 0 && ex == 0)
		ex = rc;
	if (ex != 0)
		goto out;
	cli_what(c, "token add", npos > 0 ? pos[0] : NULL);
	if (npos != 1 || secret == NULL) {
		ex = cli_usage(c, "usage: token add SERIAL --secret BASE32|-");
		goto out;
	}
	if ((ex = cli_load(c)) != 0 || (ex = make_spec(c, &sa, &spec)) != 0)
		goto out;
	spec.serial = pos[0];
	if ((ex = decode_secret(c, secret, key, sizeof(key), &keylen)) != 0)
		goto out;
	memset(&d, 0, sizeof(d));
	rc = sotp_token_add(c->ctx, &spec, key, keylen, c->now, &d);
	/*
	 * An error, as a refusal, is led by "token add SERIAL": the core's
	 * detail (a store to init first, a key) does not name the token.
	 */
	if (rc != SOTP_OK)
		ex = cli_error_in(c, NULL, NULL, 0, rc);
	else /* A malformed token: the core's detail names what is wrong. */
		ex = cli_outcome_why(c, rc, &d, "token added",
		    d.reason == SOTP_R_BAD_INPUT ? sotp_ctx_errmsg(c->ctx)
		                                 : NULL);
out:
	sotp_free_string(secret);
	sotp_wipe(key, sizeof(key));
	return ex;
}

/*
 * --qr and --png: the URI as a QR code; the URI line itself too. The PNG
 * goes into pngf, which cli_png_open made; it is named, or dropped.
 */
static int
show_qr(struct cli *c, const char *uri, int qr, struct cli_file *pngf)
{
	int ex = CLI_EXIT_OK;

	if (qr)
		ex = cli_qr_text(c, uri, stdout);
	if (ex == CLI_EXIT_OK && pngf->f != NULL)
		ex = cli_qr_png(c, uri, pngf);
	return ex;
}

/*
 * The forms a secret leaves in, for the audit row of the export: "uri",
 * "qr", "png", space separated.
 */
static const char *
export_how(char *buf, size_t bufsz, int uri, int qr, const char *png)
{
	snprintf(buf, bufsz, "%s%s%s", uri ? " uri" : "", qr ? " qr" : "",
	    png != NULL ? " png" : "");
	return buf[0] == ' ' ? buf + 1 : buf;
}

/* Prints "SERIAL URI" (or a JSON line) of a token just generated. */
static int
print_uri(struct cli *c, const char *serial, const char *uri, int qr,
    struct cli_file *pngf)
{
	struct cli_json j;

	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "serial", serial);
		json_str(&j, "uri", uri);
		json_end(&j);
	} else {
		printf("%s %s\n", serial, uri);
	}
	return show_qr(c, uri, qr, pngf);
}

/*
 * token generate --png and token show --png: the PNG is written and named
 * inside the transaction that writes the export's row (its hold), so
 * that a PNG that cannot be written leaves no token and no accept row;
 * and when the commit fails after it was named, it is removed
 * (png_unhold).
 */
struct png_hold {
	struct cli_file *pngf;
	int named;
};

static int
hold_png(
    void *arg, const char *serial, const char *uri, char *why, size_t whysz)
{
	struct png_hold *h = arg;
	int rc;

	(void)serial;
	if ((rc = cli_qr_png_hold(uri, h->pngf, why, whysz)) == SOTP_OK)
		h->named = 1;
	return rc;
}

/* A PNG hold_png named for an export that did not land: removed. */
static void
png_unhold(const struct cli *c, const char *png, const struct png_hold *h,
    const char *what)
{
	if (h->named && unlink(png) != 0 && errno != ENOENT)
		cli_warn(c,
		    "%s: written for %s, and cannot be removed (%s): "
		    "remove it",
		    png, what, strerror(errno));
}

static int
token_generate(struct cli *c, int argc, char **argv)
{
	struct spec_args sa = {NULL, NULL, NULL, NULL, NULL};
	char *count_s = NULL, *png = NULL;
	int qr = 0;
	const struct cli_opt opts[] = {
	    {"count", &count_s, NULL},
	    {"qr", NULL, &qr},
	    {"png", &png, NULL},
	    {"algorithm", &sa.alg, NULL},
	    {"digits", &sa.digits, NULL},
	    {"period", &sa.period, NULL},
	    {"kind", &sa.kind, NULL},
	    {NULL, NULL, NULL},
	};
	struct sotp_token_spec spec;
	struct sotp_decision d;
	char serial[SOTP_ID_MAX], how[16], left[96], *uri = NULL;
	const char *forms;
	long long count = 1, i;
	struct cli_file pngf = CLI_FILE_INIT;
	struct png_hold hold = {&pngf, 0};
	size_t npos;
	int ex, rc;

	cli_what(c, "token generate", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0)
		return ex;
	if (count_s != NULL &&
	    (ex = cli_number(c, "--count", count_s, 1, GENERATE_MAX, &count)) !=
	        0)
		return ex;
	if (png != NULL && count != 1)
		return cli_usage(c,
		    "token generate: --png writes one token's "
		    "code: use it with --count 1");
	if (qr && c->json)
		return cli_usage(
		    c, "--qr draws on the terminal: not with --json");
	if ((ex = cli_load(c)) != 0 || (ex = make_spec(c, &sa, &spec)) != 0 ||
	    (png != NULL && (ex = cli_png_open(c, png, &pngf)) != 0))
		return ex;
	/*
	 * Each token is added with its export's audit row, in one
	 * transaction: one whose row is refused is not generated at all,
	 * and those before it were, and were shown.
	 */
	forms = export_how(how, sizeof(how), 1, qr, png);
	for (i = 0; i < count; i++) {
		memset(&d, 0, sizeof(d));
		serial[0] = '\0';
		rc = sotp_token_generate(c->ctx, &spec, forms,
		    png != NULL ? hold_png : NULL, &hold, c->now, serial, &uri,
		    &d);
		if (rc != SOTP_OK)
			png_unhold(c, png, &hold, "a token not stored");
		if (rc != SOTP_OK && i > 0) {
			snprintf(left, sizeof(left),
			    "%lld of %lld tokens generated and shown above", i,
			    count);
			ex = cli_error_left(c, rc, left);
			goto out;
		}
		if (rc != SOTP_OK) {
			ex = cli_error(c, rc);
			goto out;
		}
		if (d.verdict != SOTP_ACCEPT) {
			/* As for token add: the core names what is wrong. */
			ex = cli_refused_why(c, d.reason,
			    d.reason == SOTP_R_BAD_INPUT
			        ? sotp_ctx_errmsg(c->ctx)
			        : NULL);
			goto out;
		}
		ex = print_uri(c, serial, uri, qr, &pngf);
		sotp_free_string(uri);
		uri = NULL;
		if (ex != 0)
			goto out;
	}
	ex = CLI_EXIT_OK;
out:
	cli_png_abandon(&pngf);
	return ex;
}

static void
token_json_fields(struct cli_json *j, const struct sotp_token_info *t)
{
	json_str(j, "serial", t->serial);
	json_str(j, "kind", t->kind);
	json_str(j, "algorithm", sotp_alg_name(t->alg));
	json_int(j, "digits", t->digits);
	json_int(j, "period", t->period);
	json_str(j, "contract", t->contract);
	json_int(j, "last_step", t->last_step);
	json_int(j, "drift", t->drift);
	json_bool(j, "disabled", t->disabled);
	json_int(j, "created", t->created);
}

static void
token_json(FILE *f, const struct sotp_token_info *t, const char *uri)
{
	struct cli_json j;

	json_begin(&j, f);
	token_json_fields(&j, t);
	if (uri != NULL)
		json_str(&j, "uri", uri);
	json_end(&j);
}

/* token list: one tab-separated line per token. */
static void
token_line(const struct sotp_token_info *t)
{
	char when[32];

	cli_text(stdout, t->serial);
	printf("\t%s\t%s\t%u\t%u\t", t->kind, sotp_alg_name(t->alg), t->digits,
	    t->period);
	cli_text(stdout, t->contract[0] != '\0' ? t->contract : "-");
	printf("\t%s\t%s\n", t->disabled ? "disabled" : "active",
	    cli_time(t->created, when, sizeof(when)));
}

/* token show: one "key: value" line per field. */
static void
token_lines(const struct sotp_token_info *t, const char *uri)
{
	char when[32];

	fputs("serial: ", stdout);
	cli_text(stdout, t->serial);
	printf("\nkind: %s\nalgorithm: %s\ndigits: %u\n", t->kind,
	    sotp_alg_name(t->alg), t->digits);
	if (t->period == 0)
		printf("type: hotp\nnext counter: %lld\n",
		    (long long)t->last_step + 1);
	else
		printf("type: totp\nperiod: %u\n", t->period);
	fputs("contract: ", stdout);
	cli_text(stdout, t->contract[0] != '\0' ? t->contract : "-");
	if (t->last_step < 0)
		printf("\nlast step: never\n");
	else
		printf("\nlast step: %lld\n", (long long)t->last_step);
	printf("drift: %d\nstate: %s\ncreated: %s\n", t->drift,
	    t->disabled ? "disabled" : "active",
	    cli_time(t->created, when, sizeof(when)));
	if (uri != NULL)
		printf("uri: %s\n", uri);
}

static int
token_show(struct cli *c, int argc, char **argv)
{
	struct sotp_token_info t;
	char *uri = NULL, *png = NULL, how[16];
	struct cli_file pngf = CLI_FILE_INIT;
	struct png_hold hold = {&pngf, 0};
	const char *pos[1];
	int want_uri = 0, qr = 0;
	const struct cli_opt opts[] = {
	    {"uri", NULL, &want_uri},
	    {"qr", NULL, &qr},
	    {"png", &png, NULL},
	    {NULL, NULL, NULL},
	};
	size_t npos;
	int ex, rc;

	cli_what(c, "token show", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, pos, 1, &npos)) != 0)
		return ex;
	cli_what(c, "token show", npos > 0 ? pos[0] : NULL);
	if (npos != 1)
		return cli_usage(
		    c, "usage: token show SERIAL [--uri] [--qr] [--png FILE]");
	if (qr && c->json)
		return cli_usage(
		    c, "--qr draws on the terminal: not with --json");
	/* Only an export of the secret needs the master key. */
	if ((ex = want_uri || qr || png != NULL ? cli_load(c)
	                                        : cli_load_nokey(c)) != 0)
		return ex;
	rc = sotp_token_get(c->ctx, pos[0], &t);
	if (rc == SOTP_ERR_NOT_FOUND)
		return cli_refused(c, SOTP_R_UNKNOWN_SERIAL);
	if (rc != SOTP_OK)
		return cli_error(c, rc);
	/*
	 * Claimed before the export is audited: a PNG that cannot be made
	 * ends it. It is written and named in the transaction of the export's
	 * row (hold_png): one that cannot be written leaves an error row, not
	 * an accept.
	 */
	if (png != NULL && (ex = cli_png_open(c, png, &pngf)) != 0)
		return ex;
	if ((want_uri || qr || png != NULL) &&
	    (rc = sotp_token_uri(c->ctx, pos[0],
	         export_how(how, sizeof(how), want_uri, qr, png),
	         png != NULL ? hold_png : NULL, &hold, c->now, &uri)) !=
	        SOTP_OK) {
		png_unhold(c, png, &hold, "an export not recorded");
		cli_png_abandon(&pngf);
		return cli_error(c, rc);
	}
	if (c->json)
		token_json(stdout, &t, want_uri ? uri : NULL);
	else
		token_lines(&t, want_uri ? uri : NULL);
	ex = uri != NULL ? show_qr(c, uri, qr, &pngf) : CLI_EXIT_OK;
	cli_png_abandon(&pngf);
	sotp_free_string(uri);
	return ex;
}

static int
list_one(void *arg, const struct sotp_token_info *t)
{
	const struct cli *c = arg;

	if (c->json)
		token_json(cli_rows(c), t, NULL);
	else
		token_line(t);
	return ferror(cli_rows(c)) ? 1 : 0;
}

/*
 * token list --shared-seed: each token that holds one seed with another,
 * its group's number first (in JSON, "seed_group"), as token list shows
 * it otherwise.
 */
static int
shared_one(void *arg, unsigned int group, const char *serial)
{
	const struct cli *c = arg;
	struct sotp_token_info t;
	struct cli_json j;
	int rc;

	/* One gone since (tests remove tokens; the tool never does). */
	if ((rc = sotp_token_get(c->ctx, serial, &t)) == SOTP_ERR_NOT_FOUND)
		return 0;
	if (rc != SOTP_OK)
		return rc;
	if (c->json) {
		json_begin(&j, cli_rows(c));
		json_int(&j, "seed_group", group);
		token_json_fields(&j, &t);
		json_end(&j);
	} else {
		fprintf(cli_rows(c), "%u\t", group);
		token_line(&t);
	}
	return ferror(cli_rows(c)) ? 1 : 0;
}

static int
token_list(struct cli *c, int argc, char **argv)
{
	int unassigned = 0, shared = 0;
	const struct cli_opt opts[] = {
	    {"unassigned", NULL, &unassigned},
	    {"shared-seed", NULL, &shared},
	    {NULL, NULL, NULL},
	};
	size_t npos;
	int ex, rc;

	cli_what(c, "token list", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0)
		return ex;
	if (shared && unassigned)
		return cli_usage(
		    c, "--shared-seed and --unassigned: one or the other");
	if ((ex = cli_load_nokey(c)) != 0 || (ex = cli_rows_begin(c)) != 0)
		return ex;
	if (shared)
		rc = sotp_seed_shared(c->ctx, shared_one, c);
	else
		rc = sotp_token_list(c->ctx, unassigned, list_one, c);
	return cli_rows_end(c, rc == SOTP_OK ? CLI_EXIT_OK : cli_error(c, rc));
}

/*
 * Two consecutive codes the token shows now; both are spent. They are
 * secret until then: copied, and wiped off /proc/PID/cmdline (as --otp)
 * before anything can fail or wait, such as loading the policy, the key
 * and the store (a store that is slow to answer keeps the process alive
 * for its connect timeout). Every word but the serial is wiped, a word
 * too many included: it may be a code too.
 */
static int
token_resync(struct cli *c, int argc, char **argv)
{
	struct sotp_decision d;
	const char *pos[3];
	char *code1 = NULL, *code2 = NULL;
	size_t npos;
	int ex, i, rc;

	memset(&d, 0, sizeof(d));
	cli_what(c, "token resync", NULL);
	c->secret_words = 1;
	ex = cli_parse(c, argc, argv, NULL, pos, 3, &npos);
	if (ex == 0 && npos == 3 &&
	    ((code1 = strdup(pos[1])) == NULL ||
	        (code2 = strdup(pos[2])) == NULL)) {
		cli_warn_rc(c, SOTP_ERR_NOMEM, "token resync: out of memory");
		ex = CLI_EXIT_ERROR;
	}
	for (i = 0; i < argc; i++)
		if (npos == 0 || argv[i] != pos[0])
			sotp_wipe(argv[i], strlen(argv[i]));
	if (ex != 0)
		goto out;
	cli_what(c, "token resync", npos > 0 ? pos[0] : NULL);
	if (npos != 3) {
		ex = cli_usage(c, "usage: token resync SERIAL CODE1 CODE2");
		goto out;
	}
	if ((ex = cli_load(c)) != 0)
		goto out;
	rc = sotp_token_resync(c->ctx, pos[0], code1, code2, c->now, &d);
	ex = cli_outcome(c, rc, &d, "token resynchronised");
out:
	sotp_free_string(code1);
	sotp_free_string(code2);
	return ex;
}

/*
 * token disable|enable SERIAL: a lost phone's token is disabled first,
 * so that its codes are refused at once (README, lost phone).
 */
static int
token_state(struct cli *c, const char *verb, int argc, char **argv)
{
	struct sotp_decision d;
	const char *pos[1];
	char what[32];
	size_t npos;
	int ex, rc, off = strcmp(verb, "disable") == 0;

	snprintf(what, sizeof(what), "token %s", verb);
	cli_what(c, what, NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, pos, 1, &npos)) != 0)
		return ex;
	cli_what(c, what, npos > 0 ? pos[0] : NULL);
	if (npos != 1)
		return cli_usage(c, "usage: token %s SERIAL", verb);
	if ((ex = cli_load_nokey(c)) != 0)
		return ex;
	rc = sotp_token_set_disabled(c->ctx, pos[0], off, c->now, &d);
	return cli_outcome(c, rc, &d, off ? "token disabled" : "token enabled");
}

int
cmd_token(struct cli *c, int argc, char **argv)
{
	if (argc < 1)
		return cli_usage(c,
		    "usage: token "
		    "add|generate|show|list|resync|import|disable|enable ...");
	if (strcmp(argv[0], "add") == 0)
		return token_add(c, argc - 1, argv + 1);
	if (strcmp(argv[0], "generate") == 0)
		return token_generate(c, argc - 1, argv + 1);
	if (strcmp(argv[0], "show") == 0)
		return token_show(c, argc - 1, argv + 1);
	if (strcmp(argv[0], "list") == 0)
		return token_list(c, argc - 1, argv + 1);
	if (strcmp(argv[0], "resync") == 0)
		return token_resync(c, argc - 1, argv + 1);
	if (strcmp(argv[0], "import") == 0)
		return cmd_token_import(c, argc - 1, argv + 1);
	if (strcmp(argv[0], "disable") == 0 || strcmp(argv[0], "enable") == 0)
		return token_state(c, argv[0], argc - 1, argv + 1);
	cli_wipe_secrets(c, argc, argv, 0);
	return cli_usage(c, "unknown token command '%s'", argv[0]);
}

/*
 * cmd_import.c - token import: seed files from token vendors.
 *
 *	shinkin-otp token import FILE [--format pskc|csv]
 *	    [--key-file FILE | --passphrase-stdin] [--signer CERT]
 *	    [--dry-run] [--kind K]
 *
 * The core does the parsing, the checks and the one transaction; this
 * file reads the seed file, the pre-shared key or the passphrase, and
 * reports. All three are secret: every copy made here is wiped.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMPORT_FILE_MAX (16 * 1024 * 1024)
#define PSK_LEN 16 /* AES-128, RFC 6030 section 6.1 */

static void
wipe_free(void *p, size_t n)
{
	sotp_wipe(p, n);
	free(p);
}

int
cli_read_whole(int fd, const struct stat *st0, void *buf, size_t len)
{
	struct stat st;
	size_t n = 0;
	ssize_t r = 0;
	char extra = '\0';
	int changed;

	while (n < len) {
		r = read(fd, (char *)buf + n, len - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	if (r < 0)
		return -1;
	changed = n != len || read(fd, &extra, 1) != 0 || fstat(fd, &st) != 0 ||
	    st.st_size != st0->st_size ||
	    st.st_mtim.tv_sec != st0->st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != st0->st_mtim.tv_nsec;
	sotp_wipe(&extra, sizeof(extra));
	return changed;
}

/*
 * Reads a whole regular file into a NUL-terminated *buf (wipe and free
 * it with wipe_free(*buf, *len + 1)). A key file must not be
 * readable by group or others, as for the master key.
 */
static int
read_file(struct cli *c, const char *path, int key, char **buf, size_t *len)
{
	struct stat st;
	char *b = NULL;
	size_t bsz = 0;
	int fd, got, ex = CLI_EXIT_ERROR;

	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO opens at once, to be refused, not waited on. */
	fd = open(path,
	    O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
	        (key ? O_NOFOLLOW : 0));
	if (fd < 0 && key && errno == ELOOP) {
		cli_warn(c,
		    "%s: a symbolic link (a key file is read only as "
		    "itself: name the file it points to)",
		    path);
		goto out;
	}
	if (fd < 0 || fstat(fd, &st) != 0) {
		cli_warn(c, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		cli_warn(c, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > IMPORT_FILE_MAX) {
		cli_warn(c, "%s: larger than %d bytes", path, IMPORT_FILE_MAX);
		goto out;
	}
	if (key && (st.st_mode & 077) != 0) {
		cli_warn(c,
		    "%s: key file is open to group or others "
		    "(chmod 600 it)",
		    path);
		goto out;
	}
	bsz = (size_t)st.st_size + 1;
	if ((b = malloc(bsz)) == NULL) {
		cli_warn_rc(c, SOTP_ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	if ((got = cli_read_whole(fd, &st, b, (size_t)st.st_size)) < 0) {
		cli_warn(c, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (got > 0) {
		cli_warn(c,
		    "%s: changed while it was read; run the import again "
		    "once it is complete",
		    path);
		goto out;
	}
	b[st.st_size] = '\0';
	*buf = b;
	*len = (size_t)st.st_size;
	b = NULL;
	ex = CLI_EXIT_OK;
out:
	if (b != NULL)
		wipe_free(b, bsz);
	if (fd >= 0)
		close(fd);
	return ex;
}

/* A key file: 32 hex digits (a trailing newline allowed) or 16 bytes. */
static int
read_key(struct cli *c, const char *path, uint8_t *key)
{
	char *buf = NULL;
	size_t len = 0, n, i;
	int ex, hi, lo;

	if ((ex = read_file(c, path, 1, &buf, &len)) != 0)
		return ex;
	n = len;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	ex = CLI_EXIT_OK;
	if (n == 2 * PSK_LEN) {
		for (i = 0; i < PSK_LEN && ex == CLI_EXIT_OK; i++) {
			hi = OPENSSL_hexchar2int((unsigned char)buf[2 * i]);
			lo = OPENSSL_hexchar2int((unsigned char)buf[2 * i + 1]);
			if (hi < 0 || lo < 0)
				ex = CLI_EXIT_ERROR;
			else
				key[i] = (uint8_t)(hi << 4 | lo);
		}
	} else if (len == PSK_LEN) {
		memcpy(key, buf, PSK_LEN);
	} else {
		ex = CLI_EXIT_ERROR;
	}
	if (ex != CLI_EXIT_OK) {
		sotp_wipe(key, PSK_LEN);
		cli_warn(c,
		    "%s: a key file holds 16 bytes, raw or as 32 hex digits",
		    path);
	}
	wipe_free(buf, len + 1);
	return ex;
}

/*
 * The vendor's certificate for --signer, refused here, naming the file,
 * when it holds anything besides that one certificate: a private key in
 * it was handed over by mistake, and OpenSSL's reader would skip it
 * unseen. The buffer is wiped on the way out, since it may hold that key.
 */
static int
read_signer(struct cli *c, const char *path, char **buf, size_t *len)
{
	char why[SOTP_MSG_MAX];
	int ex;

	if ((ex = read_file(c, path, 0, buf, len)) != 0)
		return ex;
	if (sotp_signer_check(*buf, *len, why, sizeof(why)) == 0)
		return CLI_EXIT_OK;
	cli_warn(c, "%s: %s", path, why);
	wipe_free(*buf, *len + 1);
	*buf = NULL;
	*len = 0;
	return CLI_EXIT_ERROR;
}

/* pskc or csv: --format, else the file name's extension. */
static int
pick_format(struct cli *c, const char *format, const char *path, int *pskc)
{
	const char *dot = strrchr(path, '.');

	if (format == NULL)
		format = dot == NULL               ? ""
		    : strcasecmp(dot, ".csv") == 0 ? "csv"
		    : strcasecmp(dot, ".pskc") == 0 ||
		        strcasecmp(dot, ".pskcxml") == 0 ||
		        strcasecmp(dot, ".xml") == 0
		    ? "pskc"
		    : "";
	if (strcmp(format, "pskc") == 0 || strcmp(format, "csv") == 0) {
		*pskc = format[0] == 'p';
		return CLI_EXIT_OK;
	}
	if (format[0] == '\0')
		return cli_usage(c,
		    "cannot tell the format from the file name: "
		    "use --format pskc|csv");
	return cli_usage(c, "--format: '%s' is not pskc or csv", format);
}

/*
 * A CSV entry is a line of the file: its refusal leads with FILE:LINE
 * (the path as given), as every error that has a place in a file does.
 * A PSKC entry is a KeyPackage's position, which no editor can go to.
 */
static int
report(struct cli *c, const char *path, int pskc,
    const struct sotp_import_result *res, int dry_run)
{
	struct cli_json j;

	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "verdict", res->refused ? "reject" : "accept");
		cli_json_what(c, &j);
		json_int(&j, "imported", res->imported);
		json_bool(&j, "dry_run", dry_run);
		json_str(&j, "signature", sotp_sig_status_name(res->signature));
		if (res->refused) {
			json_int(&j, "entry", res->entry);
			json_str(&j, "reason", sotp_reason_name(res->why));
			json_int(&j, "reason_code", res->why);
			json_str(&j, "reason_text", res->reason);
		}
		json_end(&j);
		cli_json_told(c);
	}
	if (res->refused) {
		if (res->entry > 0 && !pskc)
			cli_refused_at(path, res->entry, res->reason, res->why);
		else if (res->entry > 0)
			cli_warn(c, "refused: entry %u: %s (%s)", res->entry,
			    res->reason, sotp_reason_name(res->why));
		else
			cli_warn(c, "refused: %s (%s)", res->reason,
			    sotp_reason_name(res->why));
		return CLI_EXIT_REFUSED;
	}
	/* Never let a signed file pass as checked when it was not. */
	if (res->signature == SOTP_SIG_UNCHECKED)
		cli_warn(c,
		    "its signature was NOT checked (--signer CERT checks it)");
	if (!c->json)
		printf(dry_run ? "dry run: %u token%s would be imported\n"
		               : "imported %u token%s\n",
		    res->imported, res->imported == 1 ? "" : "s");
	return CLI_EXIT_OK;
}

int
cmd_token_import(struct cli *c, int argc, char **argv)
{
	char *format = NULL, *key_file = NULL, *kind = NULL, *buf = NULL;
	char *signer = NULL, *cert = NULL;
	int pass_stdin = 0, dry_run = 0, pskc = 0;
	const struct cli_opt opts[] = {
	    {"format", &format, NULL},
	    {"key-file", &key_file, NULL},
	    {"passphrase-stdin", NULL, &pass_stdin},
	    {"signer", &signer, NULL},
	    {"dry-run", NULL, &dry_run},
	    {"kind", &kind, NULL},
	    {NULL, NULL, NULL},
	};
	struct sotp_import_result res;
	uint8_t key[PSK_LEN];
	char pass[CLI_SECRET_MAX];
	const char *pos[1];
	size_t npos, len = 0, certlen = 0;
	int ex, rc, r;

	memset(key, 0, sizeof(key));
	memset(pass, 0, sizeof(pass));
	cli_what(c, "token import", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, pos, 1, &npos)) != 0)
		goto out;
	cli_what(c, "token import", npos > 0 ? pos[0] : NULL);
	if (npos != 1) {
		ex = cli_usage(c,
		    "usage: token import FILE [--format pskc|csv] "
		    "[--key-file F | --passphrase-stdin] [--signer CERT] "
		    "[--dry-run] [--kind K]");
		goto out;
	}
	/* An empty name would be refused as ": No such file or directory". */
	if ((ex = cli_nonempty(c, "FILE", pos[0])) != 0 ||
	    (ex = cli_nonempty(c, "--key-file", key_file)) != 0 ||
	    (ex = cli_nonempty(c, "--signer", signer)) != 0 ||
	    (ex = pick_format(c, format, pos[0], &pskc)) != 0)
		goto out;
	if (key_file != NULL && pass_stdin) {
		ex = cli_usage(
		    c, "--key-file and --passphrase-stdin exclude each other");
		goto out;
	}
	if (!pskc && (key_file != NULL || pass_stdin)) {
		ex = cli_usage(c, "a CSV file takes no key or passphrase");
		goto out;
	}
	if (!pskc && signer != NULL) {
		ex = cli_usage(c,
		    "a CSV file carries no signature: --signer "
		    "is for PSKC files");
		goto out;
	}
	if ((ex = cli_load(c)) != 0)
		goto out;
	if (key_file != NULL && (ex = read_key(c, key_file, key)) != 0)
		goto out;
	/* Before the passphrase is asked for: a wrong signer file ends it. */
	if (signer != NULL &&
	    (ex = read_signer(c, signer, &cert, &certlen)) != 0)
		goto out;
	if (pass_stdin) {
		r = cli_read_secret(c, "Passphrase: ", pass, sizeof(pass));
		if (r != 0) {
			if (r > 0)
				cli_warn_rc(c, SOTP_ERR_BAD_INPUT,
				    "no passphrase on stdin");
			ex = CLI_EXIT_ERROR;
			goto out;
		}
	}
	if ((ex = read_file(c, pos[0], 0, &buf, &len)) != 0)
		goto out;
	if (pskc)
		rc = sotp_import_pskc_signed(c->ctx, buf, len,
		    key_file != NULL ? key : NULL,
		    key_file != NULL ? PSK_LEN : 0, pass_stdin ? pass : NULL,
		    cert, certlen, kind, dry_run, c->now, &res);
	else
		rc = sotp_import_csv(
		    c->ctx, buf, len, kind, dry_run, c->now, &res);
	/* An error leads with the file and entry, as a refusal does. */
	if (rc != SOTP_OK)
		cli_json_error(c, "entry", res.entry, rc);
	ex = rc != SOTP_OK
	    ? cli_error_in(c, pos[0], pskc ? "entry" : NULL, res.entry, rc)
	    : report(c, pos[0], pskc, &res, dry_run);
out:
	if (buf != NULL)
		wipe_free(buf, len + 1);
	if (cert != NULL)
		wipe_free(cert, certlen + 1);
	sotp_wipe(key, sizeof(key));
	sotp_wipe(pass, sizeof(pass));
	return ex;
}

/*
 * cmd_migrate.c - contract import, export and backup: the bank's
 * existing customers in, and the state out again.
 *
 *	shinkin-otp contract import FILE [--format csv|jsonl] [--dry-run]
 *	shinkin-otp export [--format csv|jsonl] [--with-secrets]
 *	    [--output FILE]
 *	shinkin-otp backup FILE
 *
 * The import file is read into an anonymous mapping of its own, not
 * into the heap: it holds password hashes and card grids for up to
 * millions of customers, and the mapping is wiped before it is unmapped,
 * leaving no copy of them behind in freed memory.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMPORT_MAP_MAX ((off_t)1 << 34) /* 16 GiB */

/* csv or jsonl: --format, else the file name's extension. */
static int
record_format(struct cli *c, const char *format, const char *path,
    enum sotp_record_format *fmt)
{
	const char *dot = path != NULL ? strrchr(path, '.') : NULL;

	if (format == NULL && dot != NULL &&
	    (strcasecmp(dot, ".jsonl") == 0 ||
	        strcasecmp(dot, ".ndjson") == 0 ||
	        strcasecmp(dot, ".json") == 0))
		format = "jsonl";
	if (format == NULL || strcmp(format, "csv") == 0) {
		*fmt = SOTP_FMT_CSV;
		return CLI_EXIT_OK;
	}
	if (strcmp(format, "jsonl") == 0) {
		*fmt = SOTP_FMT_JSONL;
		return CLI_EXIT_OK;
	}
	return cli_usage(c, "--format: '%s' is not csv or jsonl", format);
}

struct refusals {
	const struct cli *c;
	const char *path; /* as given on the command line */
};

/*
 * One refused record: a line on stderr that leads with FILE:LINE, as
 * every error with a place in a file does, or a JSON object, held with
 * the others (cli_rows) until the import has its outcome: the summary
 * follows them, while an error that stops the import (the store failing
 * on a later record) is written alone, as a list's is.
 */
static int
print_refusal(void *arg, unsigned long line, int reason, const char *text)
{
	const struct refusals *r = arg;
	const struct cli *c = r->c;
	struct cli_json j;

	if (c->json) {
		json_begin(&j, cli_rows(c));
		json_str(&j, "verdict", "reject");
		json_int(&j, "line", (long long)line);
		json_str(&j, "reason", sotp_reason_name(reason));
		json_int(&j, "reason_code", reason);
		json_str(&j, "reason_text", text);
		json_end(&j);
		return 0;
	}
	if (line > 0)
		cli_refused_at(r->path, line, text, reason);
	else
		cli_warn(c, "refused: %s (%s)", text, sotp_reason_name(reason));
	return 0;
}

static int
import_report(const struct cli *c,
    const struct sotp_contract_import_result *res, int dry_run)
{
	struct cli_json j;

	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "verdict", res->refused ? "reject" : "accept");
		cli_json_what(c, &j);
		json_int(&j, "records", (long long)res->records);
		json_int(&j, "refused", (long long)res->refused);
		json_int(&j, "imported", (long long)res->imported);
		json_int(&j, "bindings", (long long)res->bindings);
		json_int(&j, "weak_hashes", (long long)res->weak_hashes);
		json_bool(&j, "dry_run", dry_run);
		json_end(&j);
		cli_json_told(c);
	}
	if (res->refused) {
		cli_warn(c, "refused: %lu of %lu records; nothing imported",
		    res->refused, res->records);
		return CLI_EXIT_REFUSED;
	}
	if (c->json)
		return CLI_EXIT_OK;
	if (dry_run)
		printf("dry run: %lu contracts would be imported (%lu with a "
		       "migration binding)\n",
		    res->imported, res->bindings);
	else
		printf(
		    "imported %lu contracts (%lu with a migration binding)\n",
		    res->imported, res->bindings);
	if (res->weak_hashes > 0)
		printf("note: %lu password hashes use a method libxcrypt calls "
		       "legacy or too cheap ([migration] rehash = yes replaces "
		       "each at the customer's next login)\n",
		    res->weak_hashes);
	return CLI_EXIT_OK;
}

/*
 * The file's bytes as they are now, in an anonymous mapping (len > 0).
 * Not a mapping of the file: that shows what the file holds when each
 * page is first read, so records changed between the checking pass and
 * the inserts would go in unchecked, and a file cut short meanwhile
 * kills the tool with SIGBUS. A file that changes while it is read is
 * refused: its last line may be cut.
 */
static int
snapshot(struct cli *c, int fd, const struct stat *st0, size_t len, void **out)
{
	void *map;
	int got;

	*out = MAP_FAILED;
	map = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		cli_warn(c, "cannot hold the file: %s", strerror(errno));
		return CLI_EXIT_ERROR;
	}
	(void)madvise(map, len, MADV_DONTDUMP); /* secrets: not in a core */
	if ((got = cli_read_whole(fd, st0, map, len)) < 0) {
		cli_warn(c, "%s", strerror(errno));
	} else if (got > 0) {
		cli_warn(c,
		    "the file changed while it was read; run the "
		    "import again once it is complete");
	} else {
		*out = map;
		return CLI_EXIT_OK;
	}
	sotp_wipe(map, len);
	munmap(map, len);
	return CLI_EXIT_ERROR;
}

int
cmd_contract_import(struct cli *c, int argc, char **argv)
{
	char *format = NULL;
	int dry_run = 0;
	const struct cli_opt opts[] = {
	    {"format", &format, NULL},
	    {"dry-run", NULL, &dry_run},
	    {NULL, NULL, NULL},
	};
	struct sotp_contract_import_result res;
	struct refusals refusals;
	enum sotp_record_format fmt = SOTP_FMT_CSV;
	const char *pos[1];
	struct stat st;
	void *map = MAP_FAILED;
	size_t npos, len = 0;
	int ex, rc, fd = -1;

	cli_what(c, "contract import", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, pos, 1, &npos)) != 0)
		return ex;
	if (npos != 1)
		return cli_usage(c,
		    "usage: contract import FILE [--format csv|jsonl] "
		    "[--dry-run]");
	cli_what(c, "contract import", pos[0]);
	if ((ex = cli_nonempty(c, "FILE", pos[0])) != 0 ||
	    (ex = record_format(c, format, pos[0], &fmt)) != 0 ||
	    (ex = cli_load(c)) != 0)
		return ex;
	/* O_NONBLOCK: a FIFO opens at once, to be refused, not waited on. */
	if ((fd = open(pos[0], O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) <
	        0 ||
	    fstat(fd, &st) != 0) {
		cli_warn(c, "%s", strerror(errno));
		ex = CLI_EXIT_ERROR;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > IMPORT_MAP_MAX) {
		cli_warn(c, "%s",
		    !S_ISREG(st.st_mode) ? "not a regular file"
		                         : "larger than 16 GiB");
		ex = CLI_EXIT_ERROR;
		goto out;
	}
	len = (size_t)st.st_size;
	/* Refusals that cannot be held: no record was inserted. */
	c->rows_lost = "nothing imported";
	if ((len > 0 && (ex = snapshot(c, fd, &st, len, &map)) != 0) ||
	    (ex = cli_rows_begin(c)) != 0)
		goto out;
	refusals.c = c;
	refusals.path = pos[0];
	rc = sotp_contract_import(c->ctx, len > 0 ? map : "", len, fmt, dry_run,
	    c->now, print_refusal, &refusals, &res);
	/*
	 * The refusals, then the summary; or the error alone, leading with
	 * FILE:LINE as a refusal does. Refusals that could not be held
	 * imported nothing (a refused file is not inserted) and are an
	 * error; a file without one wrote no row, and cannot fail here.
	 */
	if (rc != SOTP_OK) {
		(void)cli_rows_end(c, CLI_EXIT_ERROR);
		cli_json_error(c, "line", res.line, rc);
		ex = cli_error_in(c, pos[0], NULL, res.line, rc);
	} else if ((ex = cli_rows_end(c, CLI_EXIT_OK)) == CLI_EXIT_OK) {
		ex = import_report(c, &res, dry_run);
	}
out:
	if (map != MAP_FAILED) {
		sotp_wipe(map, len);
		munmap(map, len);
	}
	if (fd >= 0)
		close(fd);
	return ex;
}

struct out_file {
	FILE *f;
	const char *head;    /* a line written before the first, then NULL */
	struct cli_file *nf; /* --output: the file, named by publish_file */
	int named;
};

/* The head goes with the first line: a refused export writes nothing. */
static int
write_head(struct out_file *o)
{
	const char *h = o->head;

	o->head = NULL;
	return h == NULL || fputs(h, o->f) >= 0 ? SOTP_OK : SOTP_ERR_SYSTEM;
}

static int
write_line(void *arg, const char *line, size_t len, char *why, size_t whysz)
{
	struct out_file *o = arg;

	if (write_head(o) == SOTP_OK && fwrite(line, 1, len, o->f) == len)
		return SOTP_OK;
	/* Its error row says it (a held file's: standard output has none). */
	snprintf(why, whysz, "cannot write %s: %s",
	    o->nf != NULL ? o->nf->path : "standard output", strerror(errno));
	return SOTP_ERR_SYSTEM;
}

/* --output, every line written: the file named, with its audit row. */
static int
publish_file(void *arg, char *why, size_t whysz)
{
	struct out_file *o = arg;

	if (write_head(o) != SOTP_OK || cli_file_publish(o->nf) != 0) {
		/* Its last lines' write (the flush) fails here, as a line's. */
		if (errno == EEXIST)
			snprintf(why, whysz,
			    "%s: it appeared meanwhile (not overwritten)",
			    o->nf->path);
		else
			snprintf(why, whysz, "cannot write %s: %s", o->nf->path,
			    strerror(errno));
		return SOTP_ERR_SYSTEM;
	}
	o->named = 1;
	return SOTP_OK;
}

int
cmd_export(struct cli *c, int argc, char **argv)
{
	char *format = NULL, *output = NULL;
	int secrets = 0;
	const struct cli_opt opts[] = {
	    {"format", &format, NULL},
	    {"with-secrets", NULL, &secrets},
	    {"output", &output, NULL},
	    {NULL, NULL, NULL},
	};
	enum sotp_record_format fmt = SOTP_FMT_CSV;
	struct out_file o = {stdout, NULL, NULL, 0};
	struct cli_file nf = CLI_FILE_INIT;
	unsigned long count = 0;
	size_t npos;
	int ex, rc, err;

	cli_what(c, "export", NULL);
	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0)
		return ex;
	if (c->json)
		return cli_usage(c,
		    "writes records; not with --json "
		    "(--format jsonl writes JSON lines)");
	if ((ex = cli_nonempty(c, "--output", output)) != 0)
		return ex;
	if ((ex = record_format(c, format, NULL, &fmt)) != 0 ||
	    (ex = cli_load(c)) != 0)
		return ex;
	/*
	 * A new file, 0600: it may hold the secrets. Named only once whole
	 * (newfile.c): the format has no end marker, so a cut export would
	 * look complete. It is written whole before its audit row, and
	 * named with it (publish_file): one that cannot be written or named
	 * leaves no row saying it was exported.
	 */
	if (output != NULL) {
		if (cli_file_open(&nf, output) != 0) {
			cli_warn(c, "%s: %s", output,
			    errno == EEXIST ? "exists (not overwritten)"
			                    : strerror(errno));
			return CLI_EXIT_ERROR;
		}
		o.f = nf.f;
		o.nf = &nf;
	}
	if (fmt == SOTP_FMT_CSV)
		o.head = "# contract,pwhash,login,card,serial,status\n";
	rc = sotp_export(c->ctx, fmt, secrets, c->now, write_line,
	    output != NULL ? publish_file : NULL, &o, &count);
	if (rc == SOTP_OK && output == NULL &&
	    (write_head(&o) != SOTP_OK || fflush(o.f) != 0 || ferror(o.f)))
		rc = SOTP_ERR_SYSTEM;
	err = errno;
	/* Named, and then its row's commit failed: it goes. */
	if (rc != SOTP_OK && o.named && unlink(output) != 0 && errno != ENOENT)
		cli_warn(c,
		    "%s: written for an export whose audit row failed, and "
		    "cannot be removed (%s): remove it",
		    output, strerror(errno));
	cli_file_abandon(&nf); /* published, or to be dropped */
	errno = err;
	if (rc != SOTP_OK)
		return cli_error(c, rc);
	if (output != NULL)
		cli_say("exported %lu contracts to %s%s", count, output,
		    secrets ? " (with secrets)" : "");
	return CLI_EXIT_OK;
}

int
cmd_backup(struct cli *c, int argc, char **argv)
{
	char path[PATH_MAX];
	const char *pos[1];
	struct cli_json j;
	size_t npos;
	int ex, rc;

	cli_what(c, "backup", NULL);
	if ((ex = cli_parse(c, argc, argv, NULL, pos, 1, &npos)) != 0)
		return ex;
	if (npos != 1)
		return cli_usage(c, "usage: backup FILE");
	if ((ex = cli_nonempty(c, "FILE", pos[0])) != 0)
		return ex;
	cli_what(c, "backup", pos[0]);
	if (realpath(".", path) == NULL ||
	    (pos[0][0] != '/' &&
	        strlen(path) + 1 + strlen(pos[0]) >= sizeof(path)))
		return cli_usage(c, "path too long");
	/* The core takes absolute paths only; "." is the caller's. */
	if (pos[0][0] == '/')
		snprintf(path, sizeof(path), "%s", pos[0]);
	else
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
		    "/%s", pos[0]);
	if ((ex = cli_load(c)) != 0)
		return ex;
	if ((rc = sotp_backup(c->ctx, path, c->now)) != SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		json_begin(&j, stdout);
		json_str(&j, "backup", path);
		json_end(&j);
	} else {
		cli_say("backup written to %s", path);
	}
	return CLI_EXIT_OK;
}

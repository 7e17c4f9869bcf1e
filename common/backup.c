/*
 * backup.c - getting the state out again: an export of the contracts and
 * their bindings in contract import's own format, and an online backup of
 * a SQLite store.
 *
 * An export leaves the secrets out (password hashes and card grids are
 * what an attacker would take) unless the caller asks for them; that
 * export is audited before its first line is written, so a copy of the
 * secrets can never leave unrecorded. Its row records only an export
 * that is written: a streamed export's lines are all made first (every
 * card decrypted) in a pass that writes nothing; a held one's (a file
 * named once whole) are all written first, and the file is named in one
 * transaction with the row. So a card that cannot be decrypted (a wrong
 * key, a tampered row) or a file that cannot be written leaves no row
 * saying the secrets left; a refused card or a file that cannot be
 * written or named is recorded as an error, as a failed token export is.
 * What an export carries is what an import takes: a contract's timed lock
 * and its failure count are not carried (a timed lock runs out; an import
 * makes "locked" a lock until an admin unlocks), nor are tokens and their
 * replay marks: a store is moved whole with a backup.
 */
#include "sotp_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_EXPORT 1024

struct exp {
	struct sotp_ctx *ctx;
	enum sotp_record_format fmt;
	int secrets;
	int dry;  /* the pass before the row: lines made, none written */
	int held; /* the caller holds the lines until publish */
	sotp_write_cb *cb;
	void *arg;
	unsigned long count;
	int rc;
	const char *why;                 /* the refusal the row records */
	char failed[SOTP_ID_MAX];        /* the contract it names, or "" */
	char pwhy[SOTP_CTX_ERR_MAX / 2]; /* why a held write failed */
	char line[LINE_MAX_EXPORT];      /* secret with secrets */
	char grid[SOTP_CARD_MAX];        /* secret */
};

static const char *
status_name(const struct sotp_contract_rec *c)
{
	if (c->closed)
		return "closed";
	return c->locked_until == -1 ? "locked" : "active";
}

/* A JSON member "name":"value" (or null for ""), RFC 8259 escaping. */
static size_t
json_member(char *out, size_t outsz, size_t o, const char *name,
    const char *value, int last)
{
	const char *p;
	int n;

	n = snprintf(out + o, outsz - o, "\"%s\":", name);
	o = n < 0 || (size_t)n >= outsz - o ? outsz : o + (size_t)n;
	if (value[0] == '\0') {
		n = snprintf(out + o, o < outsz ? outsz - o : 0, "null");
		o = n < 0 || o >= outsz ? outsz : o + (size_t)n;
	} else {
		if (o < outsz)
			out[o++] = '"';
		for (p = value; *p != '\0' && o + 7 < outsz; p++) {
			if (*p == '"' || *p == '\\') {
				out[o++] = '\\';
				out[o++] = *p;
			} else if ((unsigned char)*p < 0x20) {
				o += (size_t)snprintf(out + o, outsz - o,
				    "\\u%04x", (unsigned char)*p);
			} else {
				out[o++] = *p;
			}
		}
		if (o < outsz)
			out[o++] = '"';
	}
	if (o < outsz)
		out[o++] = last ? '}' : ',';
	return o;
}

/*
 * An ID as a CSV field: quoted (RFC 4180) when it holds a comma or a
 * quote, or starts with '#' (import would take its line for a comment),
 * so that import reads back the same ID. IDs hold no blank or newline.
 */
static const char *
csv_id(char *out, size_t outsz, const char *id)
{
	size_t o = 0;

	if (id[0] != '#' && strpbrk(id, ",\"") == NULL)
		return id;
	out[o++] = '"';
	for (; *id != '\0' && o + 3 < outsz; id++) {
		if (*id == '"')
			out[o++] = '"';
		out[o++] = *id;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

/*
 * A held export that its caller could not write or publish: why (the
 * caller's, or rc's), for its error row.
 */
static void
held_failed(struct exp *e, int rc, const char *what)
{
	if (e->pwhy[0] == '\0')
		snprintf(e->pwhy, sizeof(e->pwhy), "%s: %s", what,
		    sotp_strerror(rc));
	e->why = e->pwhy;
}

static int
export_row(void *arg, const struct sotp_contract_rec *c)
{
	struct exp *e = arg;
	const char *login = sotp_login_name(c->login);
	const char *pwhash = e->secrets ? c->pwhash : "";
	char qid[2 * SOTP_ID_MAX + 3], qserial[2 * SOTP_ID_MAX + 3];
	size_t len = 0, o;
	int n;

	e->grid[0] = '\0';
	if (e->secrets && c->card_len > 0) {
		if ((e->rc = sotp_keys_unseal(e->ctx, c->id, c->card,
		         c->card_len, (uint8_t *)e->grid, sizeof(e->grid) - 1,
		         &len)) != SOTP_OK) {
			e->why = "card cannot be decrypted (wrong master key "
			         "or tampered row)";
			goto refused;
		}
		e->grid[len] = '\0';
	}
	if (e->fmt == SOTP_FMT_CSV) {
		n = snprintf(e->line, sizeof(e->line), "%s,%s,%s,%s,%s,%s\n",
		    csv_id(qid, sizeof(qid), c->id), pwhash, login, e->grid,
		    csv_id(qserial, sizeof(qserial), c->serial),
		    status_name(c));
		o = n < 0 ? sizeof(e->line) : (size_t)n;
	} else {
		e->line[0] = '{';
		o = json_member(
		    e->line, sizeof(e->line), 1, "contract", c->id, 0);
		o = json_member(
		    e->line, sizeof(e->line), o, "pwhash", pwhash, 0);
		o = json_member(e->line, sizeof(e->line), o, "login", login, 0);
		o = json_member(
		    e->line, sizeof(e->line), o, "card", e->grid, 0);
		o = json_member(
		    e->line, sizeof(e->line), o, "serial", c->serial, 0);
		o = json_member(
		    e->line, sizeof(e->line), o, "status", status_name(c), 1);
		if (o < sizeof(e->line) - 1) {
			e->line[o++] = '\n';
			e->line[o] = '\0';
		} else {
			o = sizeof(e->line);
		}
	}
	if (o >= sizeof(e->line)) {
		e->why = "record too long";
		e->rc = SOTP_ERR_BUFFER;
		goto refused;
	}
	if (!e->dry) {
		e->pwhy[0] = '\0';
		if ((e->rc = e->cb(e->arg, e->line, o, e->pwhy,
		         sizeof(e->pwhy))) != SOTP_OK) {
			if (e->held)
				held_failed(e, e->rc, "not written");
			return 1;
		}
	}
	e->count++;
	return 0;
refused:
	sotp_strlcpy(e->failed, c->id, sizeof(e->failed));
	return 1;
}

/* One pass over the contracts; SOTP_OK, or why it stopped. */
static int
export_pass(struct exp *e, int dry)
{
	int rc;

	e->dry = dry;
	e->count = 0;
	e->rc = SOTP_OK;
	rc = sotp_store_contract_list(e->ctx->st, 0, 0, -1, export_row, e);
	if (rc != SOTP_OK)
		sotp_ctx_seterr(e->ctx, "%s", sotp_store_errmsg(e->ctx->st));
	else
		rc = e->rc;
	return rc;
}

/* The store refused the export's row (or its transaction): rc, said so. */
static int
row_refused(struct sotp_ctx *ctx, int rc)
{
	sotp_ctx_seterr(ctx,
	    "export refused: its audit row cannot be written: %s",
	    sotp_store_errmsg(ctx->st));
	return rc;
}

/* The export's accept row; when it cannot be written, the ctx says so. */
static int
audit_export(struct sotp_ctx *ctx, time_t now, const char *detail)
{
	int rc;

	if ((rc = sotp_audit(ctx, now, "contract.export", NULL, NULL, NULL,
	         "accept", SOTP_R_ACCEPTED, detail)) != SOTP_OK)
		return row_refused(ctx, rc);
	return SOTP_OK;
}

/*
 * A held export, its lines all written: its row and its publication are
 * one transaction, so that a publication that fails undoes the row.
 */
static int
publish_audited(
    struct exp *e, time_t now, const char *detail, sotp_publish_cb *publish)
{
	struct sotp_ctx *ctx = e->ctx;
	int rc;

	if ((rc = sotp_store_begin(ctx->st)) != SOTP_OK)
		return row_refused(ctx, rc);
	if ((rc = audit_export(ctx, now, detail)) != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		return rc;
	}
	e->pwhy[0] = '\0';
	if ((rc = publish(e->arg, e->pwhy, sizeof(e->pwhy))) != SOTP_OK) {
		sotp_store_rollback(ctx->st);
		held_failed(e, rc, "not published");
		return rc;
	}
	if ((rc = sotp_store_commit(ctx->st)) != SOTP_OK)
		return row_refused(ctx, rc);
	return SOTP_OK;
}

int
sotp_export(struct sotp_ctx *ctx, enum sotp_record_format fmt, int with_secrets,
    time_t now, sotp_write_cb *cb, sotp_publish_cb *publish, void *arg,
    unsigned long *count)
{
	struct exp *e = NULL;
	char detail[96], why[SOTP_CTX_ERR_MAX];
	int rc;

	if (count != NULL)
		*count = 0;
	if (ctx == NULL || cb == NULL ||
	    (fmt != SOTP_FMT_CSV && fmt != SOTP_FMT_JSONL))
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return SOTP_ERR_NOMEM;
	e->ctx = ctx;
	e->fmt = fmt;
	e->secrets = with_secrets != 0;
	e->cb = cb;
	e->arg = arg;
	e->held = publish != NULL;
	snprintf(detail, sizeof(detail), "%s, %s",
	    fmt == SOTP_FMT_CSV ? "csv" : "jsonl",
	    with_secrets ? "with secrets (password hashes, card grids)"
	                 : "without secrets");
	if (publish != NULL) {
		/*
		 * Held (a file named once whole): every line written first,
		 * so that an export that cannot be made or written has no
		 * accept row (one that cannot be written has an error row);
		 * then the row and the publication, together.
		 */
		if ((rc = export_pass(e, 0)) == SOTP_OK)
			rc = publish_audited(e, now, detail, publish);
	} else {
		/*
		 * Streamed: every card decrypted and every line made in a
		 * pass that writes nothing, so that the row records an
		 * export that is written; then the row, before the first
		 * line: a copy never leaves unaudited. A row that changed
		 * since the first pass can still stop the second.
		 */
		if ((rc = export_pass(e, 1)) == SOTP_OK &&
		    (rc = audit_export(ctx, now, detail)) == SOTP_OK)
			rc = export_pass(e, 0);
	}
	if (rc == SOTP_OK && count != NULL)
		*count = e->count;
	/*
	 * A refusal of a contract's record, or a held line or publication
	 * that failed (not the store's own failure), is recorded.
	 */
	if (rc != SOTP_OK && e->why != NULL) {
		snprintf(why, sizeof(why), "%s: %s", detail, e->why);
		(void)sotp_audit(ctx, now, "contract.export",
		    e->failed[0] != '\0' ? e->failed : NULL, NULL, NULL,
		    "error", sotp_reason_from_rc(rc), why);
		if (e->failed[0] != '\0')
			sotp_ctx_seterr(
			    ctx, "contract %s: %s", e->failed, e->why);
		else
			sotp_ctx_seterr(ctx, "export: %s", e->why);
	}
	sotp_free_secret(e, sizeof(*e));
	return rc;
}

int
sotp_backup(struct sotp_ctx *ctx, const char *path, time_t now)
{
	int rc, gone, err;

	if (ctx == NULL || path == NULL)
		return SOTP_ERR_INVALID_ARG;
	if ((rc = sotp_ctx_ready(ctx)) != SOTP_OK)
		return rc;
	if (path[0] != '/') {
		sotp_ctx_seterr(
		    ctx, "backup: %s: the path must be absolute", path);
		return SOTP_ERR_INVALID_ARG;
	}
	rc = sotp_store_backup(ctx->st, path);
	if (rc != SOTP_OK) {
		sotp_ctx_seterr(ctx, "%s", sotp_store_errmsg(ctx->st));
		(void)sotp_audit(ctx, now, "store.backup", NULL, NULL, NULL,
		    "error", sotp_reason_from_rc(rc), path);
		return rc;
	}
	/*
	 * A copy of the store never stays unaudited (as an export, which
	 * is recorded before its first line): without its row it goes.
	 */
	if ((rc = sotp_audit(ctx, now, "store.backup", NULL, NULL, NULL,
	         "accept", SOTP_R_ACCEPTED, path)) != SOTP_OK) {
		gone = unlink(path) == 0 || errno == ENOENT;
		err = errno;
		if (gone)
			sotp_ctx_seterr(ctx,
			    "backup refused: its audit row cannot be written: "
			    "%s; the copy %s was removed",
			    sotp_store_errmsg(ctx->st), path);
		else
			sotp_ctx_seterr(ctx,
			    "backup refused: its audit row cannot be written: "
			    "%s; the copy %s could not be removed (%s): "
			    "remove it",
			    sotp_store_errmsg(ctx->st), path, strerror(err));
	}
	return rc;
}

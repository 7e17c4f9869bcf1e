/*
 * qr.c - an otpauth URI as a QR code, for the customer's authenticator
 * app to scan: on the terminal (UTF-8 half blocks) or as a PNG file.
 *
 * The URI holds the token secret, and so does the symbol: module data is
 * wiped before it is freed, and the PNG is created 0600, never over an
 * existing file, and named only once whole.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <png.h>
#include <qrencode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QR_QUIET 4 /* quiet zone, in modules (ISO/IEC 18004) */
#define QR_SCALE 6 /* PNG pixels per module */

static int
dark(const QRcode *q, int x, int y)
{
	if (x < 0 || y < 0 || x >= q->width || y >= q->width)
		return 0;
	return q->data[y * q->width + x] & 1;
}

static QRcode *
encode(const struct cli *c, const char *uri)
{
	QRcode *q = QRcode_encodeString(uri, 0, QR_ECLEVEL_M, QR_MODE_8, 1);

	if (q == NULL)
		cli_warn(c, "cannot encode a QR code: %s", strerror(errno));
	return q;
}

static void
release(QRcode *q)
{
	if (q == NULL)
		return;
	sotp_wipe(q->data, (size_t)q->width * (size_t)q->width);
	QRcode_free(q);
}

/*
 * Two module rows per text line. Light modules are drawn, dark ones left
 * blank, which reads right on the usual dark terminal background.
 */
int
cli_qr_text(const struct cli *c, const char *uri, FILE *f)
{
	static const char *const cell[4] = {"\u2588", "\u2584", "\u2580", " "};
	QRcode *q;
	int x, y;

	if ((q = encode(c, uri)) == NULL)
		return CLI_EXIT_ERROR;
	for (y = -QR_QUIET; y < q->width + QR_QUIET; y += 2) {
		for (x = -QR_QUIET; x < q->width + QR_QUIET; x++)
			fputs(cell[dark(q, x, y) * 2 + dark(q, x, y + 1)], f);
		fputc('\n', f);
	}
	release(q);
	return CLI_EXIT_OK;
}

/* Writes the rows; libpng reports errors by longjmp to here. */
static int
png_write(FILE *f, const QRcode *q, png_bytep row, int side)
{
	png_structp png;
	png_infop info = NULL;
	int ok = 0, x, y;

	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	if (png == NULL || (info = png_create_info_struct(png)) == NULL)
		goto out;
	if (setjmp(png_jmpbuf(png)))
		goto out;
	png_init_io(png, f);
	png_set_IHDR(png, info, (png_uint_32)side, (png_uint_32)side, 8,
	    PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
	    PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (y = 0; y < side; y++) {
		for (x = 0; x < side; x++)
			row[x] = dark(q, x / QR_SCALE - QR_QUIET,
			             y / QR_SCALE - QR_QUIET)
			    ? 0
			    : 255;
		png_write_row(png, row);
	}
	png_write_end(png, NULL);
	ok = 1;
out:
	png_destroy_write_struct(&png, &info);
	return ok;
}

/*
 * The PNG file is claimed before the token is made or the export audited:
 * a name that is taken (or a directory that cannot be written) ends the
 * command before anything happens, rather than after a token was stored
 * whose QR code never got written. It is written unnamed and named once
 * whole (newfile.c): a kill or a failure part way leaves no cut PNG, which
 * may still show enough of the code to recover part of the secret.
 */
int
cli_png_open(const struct cli *c, const char *path, struct cli_file *png)
{
	if (path[0] == '\0')
		return cli_usage(c, "--png: an empty file name");
	if (cli_file_open(png, path) != 0) {
		cli_warn(c, "cannot create %s: %s", path,
		    errno == EEXIST ? "it exists (never overwritten)"
		                    : strerror(errno));
		return CLI_EXIT_ERROR;
	}
	return CLI_EXIT_OK;
}

void
cli_png_abandon(struct cli_file *png)
{
	cli_file_abandon(png);
}

int
cli_qr_png_hold(const char *uri, struct cli_file *png, char *why, size_t whysz)
{
	QRcode *q = NULL;
	png_bytep row = NULL;
	int rc = SOTP_ERR_SYSTEM, side = 0;

	if ((q = QRcode_encodeString(uri, 0, QR_ECLEVEL_M, QR_MODE_8, 1)) ==
	    NULL) {
		snprintf(
		    why, whysz, "cannot encode a QR code: %s", strerror(errno));
		goto out;
	}
	side = (q->width + 2 * QR_QUIET) * QR_SCALE;
	if ((row = malloc((size_t)side)) == NULL) {
		snprintf(why, whysz, "out of memory");
		rc = SOTP_ERR_NOMEM;
		goto out;
	}
	if (!png_write(png->f, q, row, side)) {
		snprintf(why, whysz, "cannot write a PNG to %s", png->path);
		goto out;
	}
	if (cli_file_publish(png) != 0) {
		snprintf(why, whysz, "cannot write %s: %s", png->path,
		    errno == EEXIST
		        ? "it appeared meanwhile (never overwritten)"
		        : strerror(errno));
		goto out;
	}
	rc = SOTP_OK;
out:
	cli_file_abandon(png);
	if (row != NULL)
		sotp_wipe(row, (size_t)side);
	free(row);
	release(q);
	return rc;
}

int
cli_qr_png(const struct cli *c, const char *uri, struct cli_file *png)
{
	char why[PATH_MAX + 64];
	int rc;

	if ((rc = cli_qr_png_hold(uri, png, why, sizeof(why))) != SOTP_OK) {
		cli_warn_rc(c, rc, "%s", why);
		return CLI_EXIT_ERROR;
	}
	return CLI_EXIT_OK;
}

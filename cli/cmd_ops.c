/*
 * cmd_ops.c - health and metrics: what operations and monitoring ask of a
 * server, as a load balancer's probe, a systemd watchdog or a Prometheus
 * scrape would.
 *
 *	shinkin-otp [--json] health
 *	    exit 0 healthy, 1 unhealthy (a check failed: named on the last
 *	    line, and in the JSON), 2 the check could not run (usage, out of
 *	    memory)
 *	shinkin-otp metrics [--output FILE]
 *	    the counters in the Prometheus text format, on stdout or written
 *	    to FILE whole (a new file renamed over the old, as node_exporter's
 *	    textfile collector wants)
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const state_names[] = {"skipped", "ok", "failed"};

static void
health_json(const struct sotp_health *h)
{
	struct cli_json j;
	char key[64];
	int i;

	json_begin(&j, stdout);
	json_bool(&j, "healthy", h->healthy);
	for (i = 0; i < SOTP_HC_COUNT; i++) {
		json_str(&j, h->check[i].name, state_names[h->check[i].state]);
		if (h->check[i].state == SOTP_HEALTH_SKIPPED)
			continue;
		snprintf(key, sizeof(key), "%s_ms", h->check[i].name);
		json_int(&j, key, h->check[i].ms);
		snprintf(key, sizeof(key), "%s_detail", h->check[i].name);
		json_str(&j, key, h->check[i].detail);
		if (h->check[i].state == SOTP_HEALTH_FAILED) {
			snprintf(
			    key, sizeof(key), "%s_error", h->check[i].name);
			json_str(&j, key, sotp_rc_name(h->check[i].rc));
		}
	}
	json_end(&j);
}

static void
health_text(const struct sotp_health *h)
{
	const char *sep = "";
	int i;

	for (i = 0; i < SOTP_HC_COUNT; i++) {
		printf("%-7s %-8s", h->check[i].name,
		    state_names[h->check[i].state]);
		if (h->check[i].state != SOTP_HEALTH_SKIPPED) {
			printf(" %5u ms  ", h->check[i].ms);
			cli_text(stdout, h->check[i].detail);
		}
		putchar('\n');
	}
	if (h->healthy) {
		puts("healthy");
		return;
	}
	fputs("unhealthy:", stdout);
	for (i = 0; i < SOTP_HC_COUNT; i++)
		if (h->check[i].state == SOTP_HEALTH_FAILED) {
			printf("%s %s", sep, h->check[i].name);
			sep = ",";
		}
	putchar('\n');
}

int
cmd_health(struct cli *c, int argc, char **argv)
{
	struct sotp_health h;
	size_t npos;
	int ex, rc;

	if ((ex = cli_parse(c, argc, argv, NULL, NULL, 0, &npos)) != 0)
		return ex;
	if ((rc = sotp_health(c->ctx, c->config, c->now, &h)) != SOTP_OK)
		return cli_error(c, rc);
	if (c->json) {
		health_json(&h);
		cli_json_told(c);
	} else
		health_text(&h);
	return h.healthy ? CLI_EXIT_OK : CLI_EXIT_REFUSED;
}

/*
 * Writes text to path whole: a scraper reading the file meanwhile sees
 * the old counters or the new ones, never half of them.
 */
static int
write_whole(const struct cli *c, const char *path, const char *text)
{
	char tmp[PATH_MAX];
	size_t len = strlen(text), off = 0;
	ssize_t w;
	int fd, n;

	n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return cli_usage(c, "--output: path too long");
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd == -1) {
		cli_warn(c, "%s: %s", tmp, strerror(errno));
		return CLI_EXIT_ERROR;
	}
	/* Counters are not secret: readable by the collector's user. */
	if (fchmod(fd, 0644) != 0)
		goto fail;
	while (off < len) {
		if ((w = write(fd, text + off, len - off)) < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)w;
	}
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	return CLI_EXIT_OK;
fail:
	cli_warn(c, "%s: %s", path, strerror(errno));
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return CLI_EXIT_ERROR;
}

int
cmd_metrics(struct cli *c, int argc, char **argv)
{
	char *output = NULL, *text = NULL;
	const struct cli_opt opts[] = {
	    {"output", &output, NULL}, {NULL, NULL, NULL}};
	size_t npos;
	int ex, rc;

	if ((ex = cli_parse(c, argc, argv, opts, NULL, 0, &npos)) != 0)
		return ex;
	if (c->json)
		return cli_usage(c, "the Prometheus text format has no --json");
	if ((ex = cli_nonempty(c, "--output", output)) != 0)
		return ex;
	if ((rc = sotp_ctx_load_policy(c->ctx, c->config)) != SOTP_OK ||
	    (rc = sotp_metrics_text(c->ctx, &text)) != SOTP_OK)
		return cli_error(c, rc);
	if (output != NULL)
		ex = write_whole(c, output, text);
	else
		fputs(text, stdout);
	free(text);
	return ex;
}

/*
 * gen_contracts.c - writes contract import records for the tests and
 * the bench, with real crypt(3) hashes from libxcrypt.
 *
 *	gen_contracts N FORMAT OUT [PREFIX]
 *
 * Contract i (1..N) is PREFIX%07u (PREFIX "M" by default) with the
 * password "pw-" + its ID, hashed in turn as yescrypt, sha512crypt and
 * bcrypt at libxcrypt's lowest costs (each a real, verifiable hash with
 * its own salt; low costs only keep 10,000 of them to seconds). Every
 * fifth contract logs in with the card (its grid, 5 x 10 digits, random),
 * every seventh with nothing more; the others with a code. FORMAT is csv
 * or jsonl.
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

static const struct {
	const char *prefix;
	unsigned long count;
} kinds[] = {{"$y$", 1}, {"$6$", 1000}, {"$2b$", 4}};

int
main(int argc, char **argv)
{
	struct crypt_data *cd;
	char salt[CRYPT_GENSALT_OUTPUT_SIZE], id[32], pw[48], grid[51];
	unsigned char rnd[50];
	const char *h, *login, *prefix = argc > 4 ? argv[4] : "M";
	unsigned long n, i, k;
	int json;
	FILE *f;

	if (argc < 4 || (n = strtoul(argv[1], NULL, 10)) == 0 ||
	    (strcmp(argv[2], "csv") != 0 && strcmp(argv[2], "jsonl") != 0)) {
		fprintf(
		    stderr, "usage: gen_contracts N csv|jsonl OUT [PREFIX]\n");
		return 2;
	}
	json = argv[2][0] == 'j';
	if ((f = fopen(argv[3], "w")) == NULL ||
	    (cd = calloc(1, sizeof(*cd))) == NULL) {
		perror(argv[3]);
		return 1;
	}
	for (i = 1; i <= n; i++) {
		snprintf(id, sizeof(id), "%s%07lu", prefix, i);
		snprintf(pw, sizeof(pw), "pw-%s", id);
		k = i % 3;
		if (crypt_gensalt_rn(kinds[k].prefix, kinds[k].count, NULL, 0,
		        salt, sizeof(salt)) == NULL ||
		    (h = crypt_rn(pw, salt, cd, (int)sizeof(*cd))) == NULL ||
		    h[0] == '*' || RAND_bytes(rnd, sizeof(rnd)) != 1) {
			fprintf(stderr, "gen_contracts: hash %lu failed\n", i);
			return 1;
		}
		for (k = 0; k < 50; k++)
			grid[k] = (char)('0' + rnd[k] % 10);
		grid[50] = '\0';
		login = i % 5 == 0 ? "card" : (i % 7 == 0 ? "none" : "otp");
		if (json)
			fprintf(f,
			    "{\"contract\":\"%s\",\"pwhash\":\"%s\","
			    "\"login\":\"%s\",\"card\":\"%s\","
			    "\"status\":\"active\"}\n",
			    id, h, login, grid);
		else
			fprintf(f, "%s,%s,%s,%s,,active\n", id, h, login, grid);
	}
	free(cd);
	return fclose(f) == 0 ? 0 : 1;
}

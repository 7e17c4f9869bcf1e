/*
 * tst_dlopen.c - dlopen(RTLD_NOW) a module and look up symbols, as
 * Linux-PAM's tst-dlopen does: an unresolved symbol fails here, not in
 * front of a customer.
 *   tst_dlopen MODULE [SYMBOL...]   (a SYMBOL "!name" must be absent)
 */
#include <dlfcn.h>
#include <stdio.h>

int
main(int argc, char **argv)
{
	void *h;
	int i, bad = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: tst_dlopen MODULE [SYMBOL...]\n");
		return 2;
	}
	if ((h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	for (i = 2; i < argc; i++) {
		int absent = argv[i][0] == '!';
		void *sym = dlsym(h, argv[i] + absent);

		if ((sym == NULL) != absent) {
			fprintf(stderr, "%s: %s\n", argv[i] + absent,
			    absent ? "exported but must not be" : "missing");
			bad = 1;
		}
	}
	dlclose(h);
	return bad;
}

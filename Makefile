# shinkin-otp: one non-recursive Makefile.
#
#   make                 build the core, the CLI, the PAM and RADIUS modules
#   make check           install missing Debian packages, build, run every test
#   make check SANITIZE=1  the same under AddressSanitizer + UBSan (build-asan/)
#   make demo            the guided walk-through (see README.md)
#   make bench [BENCH_ARGS=..] [PAM_BENCH_ARGS="SIZES CYCLES"]  ratios, see README
#   make fuzz [FUZZ_SECONDS=N]  every libFuzzer target in tests/fuzz/ for N s
#   make install DESTDIR=... PREFIX=...
#   make deb             the Debian packages, into $(BUILD)/deb/

PREFIX     ?= /usr/local
SANITIZE   ?= 0
ifeq ($(SANITIZE),1)
BUILD      ?= build-asan
SANFLAGS    = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD      ?= build
SANFLAGS    =
endif

PKG_CONFIG ?= pkg-config
PKGS        = libcrypto sqlite3 libpq libxcrypt libxml-2.0 xmlsec1-openssl libqrencode libpng
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)

WARN = -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes \
       -Wmissing-prototypes -Wmissing-declarations -Wpointer-arith -Wcast-qual \
       -Wwrite-strings -Wnull-dereference -Wundef -Wvla -Wimplicit-fallthrough \
       -Wconversion -Wno-sign-conversion
# _FORTIFY_SOURCE needs optimisation; -O1 keeps sanitizer traces readable.
OPT  = -O2
ifeq ($(SANITIZE),1)
OPT  = -O1
endif
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=gnu11 $(WARN) -fstack-protector-strong -U_FORTIFY_SOURCE \
           -D_FORTIFY_SOURCE=2 -fPIC -fvisibility=hidden -MMD -MP \
           $(SANFLAGS) $(PKG_CFLAGS) -Icommon
LDFLAGS += -Wl,-z,relro -Wl,-z,now -Wl,--as-needed $(SANFLAGS)

LIB        = $(BUILD)/libshinkin_otp.a
COMMON_SRC = $(wildcard common/*.c)
COMMON_OBJ = $(COMMON_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/default_policy.o

CLI_SRC    = $(wildcard cli/*.c)
CLI_OBJ    = $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI        = $(BUILD)/shinkin-otp

PAM_SRC    = $(wildcard pam_shinkin_otp/*.c)
PAM_OBJ    = $(PAM_SRC:%.c=$(BUILD)/%.o)
PAM_SO     = $(BUILD)/pam_shinkin_otp.so

RLM_SRC    = $(wildcard rlm_shinkin_otp/*.c)
RLM_OBJ    = $(RLM_SRC:%.c=$(BUILD)/%.o)
RLM_SO     = $(BUILD)/rlm_shinkin_otp.so
FR_COMPAT  = $(BUILD)/compat
FR_STAMP   = $(FR_COMPAT)/.stamp

UNIT_SRC   = $(wildcard tests/unit/test_*.c)
UNIT_BIN   = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TLIB_SRC   = $(wildcard tests/unit/lib_*.c)
TLIB_OBJ   = $(TLIB_SRC:%.c=$(BUILD)/%.o)
BENCH      = $(BUILD)/bench/sotp_bench
TOOL_SRC   = $(wildcard tests/tools/*.c)
TOOL_BIN   = $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/%)

TARGETS    = $(LIB) $(CLI)
ifneq ($(PAM_SRC),)
TARGETS   += $(PAM_SO)
endif
ifneq ($(RLM_SRC),)
TARGETS   += $(RLM_SO)
endif

.PHONY: all check test deps demo install uninstall clean format format-check asan fuzz

all: $(TARGETS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

# The shipped policy sample is also the file `shinkin-otp init` writes: one
# source, compiled in as a C string.
$(BUILD)/gen/default_policy.c: conf/shinkin-otp.conf
	@mkdir -p $(@D)
	{ echo '/* generated from conf/shinkin-otp.conf */'; \
	  echo 'extern const char sotp_default_policy_text[];'; \
	  echo 'const char sotp_default_policy_text[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' -e 's/$$/\\n"/' $<; \
	  echo ';'; } > $@
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(CFLAGS) -c -o $@ $<

# The PKCS#11 header only (p11-kit's); the module itself is dlopen()ed.
P11_CFLAGS := $(shell $(PKG_CONFIG) --cflags p11-kit-1 2>/dev/null)
$(BUILD)/common/pkcs11.o: CFLAGS += $(P11_CFLAGS)

$(LIB): $(COMMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

EXE_LDFLAGS = $(LDFLAGS) -pie

$(CLI): $(CLI_OBJ) $(LIB)
	$(CC) $(EXE_LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(PKG_LIBS)

# The PAM module: exactly pam_sm_authenticate and pam_sm_setcred exported.
# -z nodelete: libpam dlcloses the module at every pam_end; without it the
# module, libcrypto and libsqlite3 were unmapped and loaded again (and
# OpenSSL initialised again) on every pam_start of a process that
# authenticates more than once (README, Speed).
$(BUILD)/pam_shinkin_otp/%.o: CFLAGS += $(shell $(PKG_CONFIG) --cflags pam 2>/dev/null)
$(PAM_SO): $(PAM_OBJ) $(LIB) pam_shinkin_otp/pam_shinkin_otp.map
	$(CC) -shared $(LDFLAGS) -Wl,--no-undefined -Wl,-z,nodelete \
	    -Wl,--version-script=pam_shinkin_otp/pam_shinkin_otp.map \
	    -o $@ $(PAM_OBJ) $(LIB) $(PKG_LIBS) -lpam

# The FreeRADIUS module. Debian's libfreeradius-dev 3.2.1 lacks headers that
# its own radiusd.h includes; scripts/fr-headers.sh puts them in the build
# tree (see ../shared/notes). The module builds with the full warning set.
FR_CFLAGS = -I$(FR_COMPAT) -include freeradius/build.h -DIS_MODULE=1 \
            -fno-strict-aliasing
$(FR_STAMP): scripts/fr-headers.sh
	sh scripts/fr-headers.sh $(FR_COMPAT)
	@touch $@
$(RLM_OBJ): $(FR_STAMP)
$(BUILD)/rlm_shinkin_otp/%.o: CFLAGS += $(FR_CFLAGS)
$(RLM_SO): $(RLM_OBJ) $(LIB) rlm_shinkin_otp/rlm_shinkin_otp.map
	$(CC) -shared $(LDFLAGS) -Wl,--no-undefined \
	    -Wl,--version-script=rlm_shinkin_otp/rlm_shinkin_otp.map \
	    -o $@ $(RLM_OBJ) $(LIB) $(PKG_LIBS) \
	    -L/usr/lib/freeradius -lfreeradius-server -lfreeradius-radius -ltalloc

CMOCKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)
$(BUILD)/tests/unit/%.o: CFLAGS += $(CMOCKA_CFLAGS) -Wno-missing-prototypes -Wno-missing-declarations
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(TLIB_OBJ) $(LIB)
	$(CC) $(EXE_LDFLAGS) -o $@ $< $(TLIB_OBJ) $(LIB) $(PKG_LIBS) $(CMOCKA_LIBS)
$(BUILD)/tests/tools/%.o: CFLAGS += $(shell $(PKG_CONFIG) --cflags pam 2>/dev/null)
$(BUILD)/tests/%: $(BUILD)/tests/tools/%.o $(LIB)
	$(CC) $(EXE_LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) -lpam -ldl -lpthread

# LD_PRELOAD shims for the tests (tests/shim/): built without the
# sanitizers, which a test preloads first when the program has them.
SHIM_SRC   = $(wildcard tests/shim/*.c)
SHIM_SO    = $(SHIM_SRC:tests/shim/%.c=$(BUILD)/tests/%.so)
$(BUILD)/tests/%.so: tests/shim/%.c
	@mkdir -p $(@D)
	$(CC) $(OPT) -g -std=gnu11 $(WARN) -fPIC -shared -o $@ $< -ldl

# The benchmark: ratios against baselines measured in the same run. Like
# tests/unit, it may include the internal header.
$(BUILD)/tests/bench/%.o: CFLAGS += $(shell $(PKG_CONFIG) --cflags pam 2>/dev/null) -Wno-missing-prototypes
$(BENCH): $(BUILD)/tests/bench/sotp_bench.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(EXE_LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) -lpam

# The PAM bench (tests/bench/pam_bench.sh): the driver links libpam only,
# so each module pays for the libraries it loads; pam_setup fills the store.
PAM_BENCH  = $(BUILD)/bench/pam_bench $(BUILD)/bench/pam_setup \
             $(BUILD)/tests/syslog_sink
$(BUILD)/bench/pam_bench: $(BUILD)/tests/bench/pam_bench.o
	@mkdir -p $(@D)
	$(CC) $(EXE_LDFLAGS) -o $@ $< -lpam
$(BUILD)/bench/pam_setup: $(BUILD)/tests/bench/pam_setup.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(EXE_LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS)

# The daemon route, measured beside the in-process module (issue 13): a
# prototype daemon holding the warm context and its thin PAM client, which
# links libpam only. Built for the bench, never installed.
PAM_BENCH += $(BUILD)/bench/otpd_proto $(BUILD)/bench/pam_otpd_proto.so
$(BUILD)/bench/otpd_proto: $(BUILD)/tests/bench/otpd_proto.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(EXE_LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS)
$(BUILD)/bench/pam_otpd_proto.so: $(BUILD)/tests/bench/pam_otpd_proto.o
	@mkdir -p $(@D)
	$(CC) -shared $(LDFLAGS) -Wl,--no-undefined -o $@ $< -lpam

# The peers' packages (pam_oath, google-authenticator) come from the
# bench profile of scripts/deps.sh.
bench:
	sh scripts/deps.sh bench
	$(MAKE) all tests-build $(BENCH) $(PAM_BENCH)
	umask 022 && $(BENCH) $(BENCH_ARGS)
	sh tests/bench/pam_bench.sh $(BUILD) $(PAM_BENCH_ARGS)
	sh tests/bench/radius_bench.sh $(BUILD)
.PHONY: bench

deps:
	sh scripts/deps.sh

check: deps
	$(MAKE) all tests-build
	sh tests/run.sh $(BUILD)

# The bench programs are built with the tests, so that a change that
# breaks them shows in make check and not only in make bench.
tests-build: $(UNIT_BIN) $(TOOL_BIN) $(SHIM_SO) $(BENCH) $(PAM_BENCH)
.PHONY: tests-build

test: check

asan:
	$(MAKE) check SANITIZE=1

demo: deps
	$(MAKE) all
	sh scripts/demo.sh $(BUILD)

# libFuzzer with ASan + UBSan (clang only), in build-fuzz/: the core is
# built with coverage, each tests/fuzz/fuzz_*.c is one target. `make fuzz`
# runs each for FUZZ_SECONDS from the seeds in tests/fuzz/corpus/TARGET/
# (what a run learns stays in build-fuzz/corpus/) and prints the
# executions per target; a crash, leak or timeout fails it.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 10
FUZZ_BUILD    = build-fuzz
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=gnu11 -g -O1 $(WARN) -Wno-unused-command-line-argument \
                $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP $(PKG_CFLAGS) \
                -Icommon
FUZZ_OBJ      = $(COMMON_SRC:%.c=$(FUZZ_BUILD)/%.o) \
                $(FUZZ_BUILD)/gen/default_policy.o
FUZZ_SRC      = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN      = $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<
$(FUZZ_BUILD)/common/pkcs11.o: FUZZ_CFLAGS += $(P11_CFLAGS)
$(FUZZ_BUILD)/gen/default_policy.o: $(BUILD)/gen/default_policy.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) $(PKG_LIBS)
# The RADIUS module's reading of attributes, built without radiusd.
FUZZ_RLM_OBJ = $(FUZZ_BUILD)/rlm_shinkin_otp/rlm_input.o
$(FUZZ_BUILD)/fuzz_radius: $(FUZZ_BUILD)/tests/fuzz/fuzz_radius.o \
    $(FUZZ_RLM_OBJ) $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(FUZZ_RLM_OBJ) \
	    $(FUZZ_OBJ) $(PKG_LIBS)

fuzz-build: $(FUZZ_BIN)
fuzz:
	sh scripts/deps.sh fuzz
	$(MAKE) fuzz-build
	sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)
.PHONY: fuzz-build

BINDIR    = $(PREFIX)/bin
MANDIR    = $(PREFIX)/share/man
LIBEXEC   = $(PREFIX)/libexec/shinkin-otp
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
PAMDIR   ?= /lib/$(MULTIARCH)/security
RLMDIR   ?= /usr/lib/freeradius
RADDB    ?= /etc/freeradius/3.0
SYSCONF  ?= /etc/shinkin-otp
STATEDIR ?= /var/lib/shinkin-otp

# Files under /etc are installed once and then left to the admin, as the
# packages' conffiles are. Into a DESTDIR (staging, debian/rules) only the
# files are installed; on the live system (no DESTDIR) setup-state then
# makes the same state the packages' maintainer scripts make: the group
# shinkin-otp, the modes, the master key and the store (README.md,
# "Install"), and freerad joins the group when FreeRADIUS is there.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PAMDIR) $(DESTDIR)$(SYSCONF) \
	    $(DESTDIR)$(LIBEXEC) $(DESTDIR)$(STATEDIR)
	install -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/shinkin-otp
	install -m 0755 scripts/setup-state.sh $(DESTDIR)$(LIBEXEC)/setup-state
	install -m 0644 $(PAM_SO) $(DESTDIR)$(PAMDIR)/pam_shinkin_otp.so
	if [ -f $(RLM_SO) ]; then \
	    install -d $(DESTDIR)$(RLMDIR) $(DESTDIR)$(RADDB)/mods-available \
	        $(DESTDIR)$(RADDB)/sites-available && \
	    install -m 0644 $(RLM_SO) $(DESTDIR)$(RLMDIR)/rlm_shinkin_otp.so && \
	    for f in mods-available/shinkin_otp sites-available/shinkin-otp; do \
	        [ -e $(DESTDIR)$(RADDB)/$$f ] || \
	        install -m 0644 conf/freeradius/$$f $(DESTDIR)$(RADDB)/$$f; \
	    done; fi
	[ -e $(DESTDIR)$(SYSCONF)/shinkin-otp.conf ] || \
	    install -m 0640 conf/shinkin-otp.conf $(DESTDIR)$(SYSCONF)/shinkin-otp.conf
	for m in man/*.[1-8]; do [ -f "$$m" ] || continue; s=$${m##*.}; \
	    install -d $(DESTDIR)$(MANDIR)/man$$s; \
	    install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	if [ -z "$(DESTDIR)" ]; then \
	    $(LIBEXEC)/setup-state $(BINDIR)/shinkin-otp $(SYSCONF)/shinkin-otp.conf && \
	    if [ -f $(RLM_SO) ] && getent passwd freerad >/dev/null; then \
	        adduser --quiet freerad shinkin-otp; fi; fi

# Leaves the policy, the master key and the store (they hold the bank's
# state), as removing the packages does.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/shinkin-otp $(DESTDIR)$(PAMDIR)/pam_shinkin_otp.so \
	    $(DESTDIR)$(RLMDIR)/rlm_shinkin_otp.so $(DESTDIR)$(LIBEXEC)/setup-state
	-rmdir $(DESTDIR)$(LIBEXEC) 2>/dev/null
	for m in man/*.[1-8]; do [ -f "$$m" ] || continue; s=$${m##*.}; \
	    rm -f $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done

# The Debian packages (debian/), from a copy of this tree in
# $(BUILD)/deb/src, so the .debs land in $(BUILD)/deb/ and not beside the
# checkout. The FreeRADIUS headers' source tarball is the one the normal
# build fetched (no network in the package build).
DEB_DIR = $(BUILD)/deb
deb: deps $(FR_STAMP)
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src
	tar -c --exclude=./build --exclude='./build-*' --exclude=./.git \
	    --exclude=./sandbox -f - . | tar -x -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	    SOTP_FR_CACHE=$(abspath $(FR_COMPAT))/.cache \
	    dpkg-buildpackage -us -uc -b
	@ls $(DEB_DIR)/*.deb $(DEB_DIR)/*.changes
.PHONY: deb

clean:
	rm -rf build build-asan build-fuzz

FORMAT_DIRS = common pam_shinkin_otp rlm_shinkin_otp cli tests
format:
	find $(FORMAT_DIRS) -name '*.[ch]' | xargs clang-format -i
format-check:
	find $(FORMAT_DIRS) -name '*.[ch]' | xargs clang-format --dry-run -Werror

# The compiler's dependency files (not the package build's copy of the
# tree under $(BUILD)/deb, whose conf/pam.d is a directory).
-include $(shell find $(BUILD) $(FUZZ_BUILD) -path $(BUILD)/deb -prune -o \
    -name '*.d' -type f -print 2>/dev/null)

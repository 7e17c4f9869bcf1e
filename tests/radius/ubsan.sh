#!/bin/sh
# Builds rlm_shinkin_otp and the core with UBSan only, into $BUILD/ubsan,
# and prints the module's path (-fno-sanitize-recover: undefined behaviour
# aborts radiusd, and the suite fails). ASan cannot run inside radiusd:
# Debian's radiusd dlopens modules with RTLD_DEEPBIND, which the ASan
# runtime refuses; the core, CLI and PAM suites carry ASan instead.
# Sourced by suites that need the module under SANITIZE=1.
ubsan_module() {
	_ub="$BUILD/ubsan"
	# Reuse the FreeRADIUS source tarball the main build fetched, if any.
	SOTP_FR_CACHE=${SOTP_FR_CACHE:-$BUILD/compat/.cache}
	export SOTP_FR_CACHE
	mkdir -p "$_ub"
	# One build at a time: tests/run.sh runs the demo's suite beside the
	# others, and two makes writing one object would spoil it.
	if ! flock "$_ub/.lock" make -C "$TOP" -s BUILD="$_ub" \
	    SANFLAGS="-fsanitize=undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	    "$_ub/rlm_shinkin_otp.so" >"$_ub/make.log" 2>&1; then
		notok "UBSan build of rlm_shinkin_otp"
		tail -n 20 "$_ub/make.log" | sed 's/^/#   /'
		return 1
	fi
	if readelf -d "$_ub/rlm_shinkin_otp.so" | grep -q libubsan; then
		ok "UBSan build of rlm_shinkin_otp (links libubsan)"
	else
		notok "the UBSan module links libubsan"
		readelf -d "$_ub/rlm_shinkin_otp.so" | grep NEEDED | sed 's/^/#   /'
		return 1
	fi
	UBSAN_OPTIONS=print_stacktrace=1
	RLM_SO="$_ub/rlm_shinkin_otp.so"
	export UBSAN_OPTIONS RLM_SO
}

#!/bin/sh
# The RADIUS suite again, on a build of the module and core with UBSan
# (-fno-sanitize-recover: undefined behaviour aborts radiusd, and the
# suite fails). ASan cannot run here: Debian's radiusd dlopens modules with
# RTLD_DEEPBIND, which the ASan runtime refuses; the core and PAM suites
# carry ASan (make asan). The build goes to $BUILD/ubsan.
. "$TOP/tests/lib.sh"

UB="$BUILD/ubsan"
UBSAN_FLAGS="-fsanitize=undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# Reuse the FreeRADIUS source tarball the main build fetched, if any.
SOTP_FR_CACHE=${SOTP_FR_CACHE:-$BUILD/compat/.cache}
export SOTP_FR_CACHE
mkdir -p "$UB"
if make -C "$TOP" -s BUILD="$UB" SANFLAGS="$UBSAN_FLAGS" \
    "$UB/rlm_shinkin_otp.so" >"$UB/make.log" 2>&1; then
	ok "UBSan build of rlm_shinkin_otp"
else
	notok "UBSan build of rlm_shinkin_otp"
	tail -n 20 "$UB/make.log" | sed 's/^/#   /'
	exit 1
fi
if readelf -d "$UB/rlm_shinkin_otp.so" | grep -q libubsan; then
	ok "the module links libubsan"
else
	notok "the module links libubsan"
fi

UBSAN_OPTIONS=print_stacktrace=1
RLM_SO="$UB/rlm_shinkin_otp.so"
export UBSAN_OPTIONS RLM_SO
# The inner suite numbers its own checks; tests/run.sh counts the lines.
sh "$TOP/tests/radius/t_radius.sh"

# The modules' binary interface: exactly the entry points each framework
# calls are exported, symbols bind at load (BIND_NOW), the PAM module loads
# with RTLD_NOW and needs no more libraries than it uses.
. "$TOP/tests/lib.sh"
PAM_SO="$BUILD/pam_shinkin_otp.so"
RLM_SO="$BUILD/rlm_shinkin_otp.so"
exports() { nm -D --defined-only "$1" | awk '{ print $3 }' | sort | xargs; }

check "PAM module exports exactly pam_sm_authenticate, pam_sm_setcred" \
    test "$(exports "$PAM_SO")" = "pam_sm_authenticate pam_sm_setcred"
check "RADIUS module exports exactly rlm_shinkin_otp" \
    test "$(exports "$RLM_SO")" = "rlm_shinkin_otp"
for m in "$PAM_SO" "$RLM_SO" "$CLI"; do
	check "$(basename "$m") is linked with BIND_NOW and RELRO" \
	    sh -c "readelf -d '$m' | grep -q 'BIND_NOW' && readelf -l '$m' | grep -q GNU_RELRO"
done
check "the PAM module loads with RTLD_NOW and has its entry points" \
    "$BUILD/tests/tst_dlopen" "$PAM_SO" pam_sm_authenticate pam_sm_setcred \
    '!sotp_attempt_begin' '!sotp_strerror'
check "the PAM module does not link libpq (loaded only for a PostgreSQL store)" \
    sh -c "! readelf -d '$PAM_SO' | grep -q 'NEEDED.*libpq'"
check "the PAM module does not link libxml2, libxmlsec1 or libqrencode (CLI only)" \
    sh -c "! readelf -d '$PAM_SO' | grep -q -e 'NEEDED.*libxml2' -e 'NEEDED.*libxmlsec1' -e 'NEEDED.*libqrencode'"

# make install into a DESTDIR: the tree, the file modes, no overwrite of
# an existing file under /etc, and make uninstall. (The live install, with
# its group, modes, key and store, is checked on a clean Debian root by
# tests/package.)
. "$TOP/tests/lib.sh"
D=$(mktemp -d "${TMPDIR:-/tmp}/sotp-install.XXXXXX")
trap 'rm -rf "$D"' EXIT
mk() { make -s -C "$TOP" BUILD="$BUILD" DESTDIR="$D" PREFIX=/usr "$@" >"$D.log" 2>&1; }

check "make install into DESTDIR" mk install
mode() { stat -c %a "$D$1" 2>/dev/null; }
check "CLI installed 0755" test "$(mode /usr/bin/shinkin-otp)" = 755
check "PAM module in the security dir, 0644" \
    test "$(mode /lib/x86_64-linux-gnu/security/pam_shinkin_otp.so)" = 644
check "RADIUS module in FreeRADIUS's dir, 0644" \
    test "$(mode /usr/lib/freeradius/rlm_shinkin_otp.so)" = 644
# The module's section and the site hold no secret; 0644 as Debian ships
# files radiusd reads.
check "mods-available/shinkin_otp, 0644" \
    test "$(mode /etc/freeradius/3.0/mods-available/shinkin_otp)" = 644
check "sites-available/shinkin-otp, 0644, without a listener of its own" \
    sh -c "test \"\$(stat -c %a '$D/etc/freeradius/3.0/sites-available/shinkin-otp')\" = 644 &&
	! grep -q '^[[:space:]]*listen' '$D/etc/freeradius/3.0/sites-available/shinkin-otp'"
check "setup-state in /usr/libexec/shinkin-otp, 0755" \
    test "$(mode /usr/libexec/shinkin-otp/setup-state)" = 755
check "the state directory /var/lib/shinkin-otp" test -d "$D/var/lib/shinkin-otp"
check "policy file in /etc/shinkin-otp, 0640" \
    test "$(mode /etc/shinkin-otp/shinkin-otp.conf)" = 640
check "policy file is the shipped one" \
    cmp -s "$TOP/conf/shinkin-otp.conf" "$D/etc/shinkin-otp/shinkin-otp.conf"
for m in man1/shinkin-otp.1 man5/shinkin-otp.conf.5 man5/rlm_shinkin_otp.5 man8/pam_shinkin_otp.8; do
	check "man page $m, 0644" test "$(mode /usr/share/man/$m)" = 644
done
check "into a DESTDIR: no master key, no store (the live install's setup-state makes them)" \
    test ! -e "$D/etc/shinkin-otp/master.key" -a ! -e "$D/var/lib/shinkin-otp/shinkin-otp.db"

echo "# local edit" >>"$D/etc/shinkin-otp/shinkin-otp.conf"
echo "# local edit" >>"$D/etc/freeradius/3.0/mods-available/shinkin_otp"
check "reinstall" mk install
check "an existing policy file is not overwritten" \
    grep -q '^# local edit' "$D/etc/shinkin-otp/shinkin-otp.conf"
check "an existing module section is not overwritten" \
    grep -q '^# local edit' "$D/etc/freeradius/3.0/mods-available/shinkin_otp"

check "make uninstall" mk uninstall
check "uninstall removes the CLI, setup-state and both modules" \
    test ! -e "$D/usr/bin/shinkin-otp" -a \
    ! -e "$D/usr/libexec/shinkin-otp/setup-state" -a \
    ! -e "$D/lib/x86_64-linux-gnu/security/pam_shinkin_otp.so" -a \
    ! -e "$D/usr/lib/freeradius/rlm_shinkin_otp.so"
check "uninstall keeps the policy file (it holds local settings)" \
    test -f "$D/etc/shinkin-otp/shinkin-otp.conf"
rm -f "$D.log"

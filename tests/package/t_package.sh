# The Debian packages as a bank installs them: built with `make deb`,
# checked by lintian, installed with apt on a clean Debian 12 root
# (mmdebstrap, scripts/debian-root.sh) together with Debian's freeradius,
# and then README.md followed literally. The blocks of README.md marked
# "<!-- tests/package runs this block -->" are taken from the README and
# run as they stand, in order:
#   1. "Install from the Debian packages": apt install ./*.deb
#   2. the same section's first contract (shinkin-otp token/contract/bind)
#   3. "PAM: pam_shinkin_otp": the service file copied to /etc/pam.d
#   4. "RADIUS: rlm_shinkin_otp in a stock Debian 12 FreeRADIUS": the
#      links, the context line, the NAS entry, freeradius -CX, restart
# with Debian's stock FreeRADIUS configuration otherwise untouched. Then a
# PAM login through pamtester, a challenge login, a transaction and a
# refusal through radclient (codes from oathtool) from the README's NAS
# address, apt remove and apt purge with what each leaves, and finally
# `make install` on the purged root, which must reach the same state.
#
# radiusd runs in a network namespace of its own (only lo, with the NAS
# address 192.0.2.10 on it), so the stock listener on port 1812 collides
# with nothing on the host. Everything started is stopped on exit, and
# every mount is undone. If the clean root cannot be made (no archive in
# reach), the suite fails saying so; it never skips.
. "$TOP/tests/lib.sh"
. "$TOP/scripts/debian-root.sh"
LANG=C
LC_ALL=C
export LANG LC_ALL

L=$(mktemp -d "${TMPDIR:-/tmp}/sotp-package.XXXXXX")
NSPID=""
cleanup() {
	if [ -n "$NSPID" ]; then
		kill "$NSPID" 2>/dev/null
		wait "$NSPID" 2>/dev/null
	fi
	droot_cleanup
	rm -rf "$L"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
# After a failed step nothing below can mean anything: stop here.
fatal() {
	notok "$1"
	[ $# -lt 2 ] || tail -n "${3:-20}" "$2" | sed 's/^/#   /'
	echo "1..$TAPN"
	exit 1
}

# ---- the packages ----
if make -C "$TOP" -s BUILD="$BUILD" deb >"$L/deb.log" 2>&1; then
	ok "make deb"
else
	fatal "make deb" "$L/deb.log" 30
fi
DEB=$BUILD/deb
set -- "$DEB"/shinkin-otp_*.deb "$DEB"/libpam-shinkin-otp_*.deb \
    "$DEB"/freeradius-shinkin-otp_*.deb
check "three packages: shinkin-otp, libpam-shinkin-otp, freeradius-shinkin-otp" \
    test -f "$1" -a -f "$2" -a -f "$3"
# A release build even under make check SANITIZE=1.
for d in "$@"; do dpkg-deb -x "$d" "$L/x"; done
find "$L/x" -type f \( -name '*.so' -o -path '*/bin/*' \) \
    -exec readelf -d {} + >"$L/needed" 2>&1
check "the packaged binaries need no sanitizer runtime" \
    sh -c "grep -q NEEDED '$L/needed' && ! grep -q 'NEEDED.*san' '$L/needed'"
rm -rf "$L/x"
lintian "$DEB"/*.changes >"$L/lintian.log" 2>&1
if grep -q '^[EW]: ' "$L/lintian.log"; then
	notok "lintian: no errors, no warnings"
	grep '^[EW]: ' "$L/lintian.log" | head -n 20 | sed 's/^/#   /'
else
	ok "lintian: no errors, no warnings"
fi

# ---- a clean Debian 12 ----
R=$(mktemp -d "${TMPDIR:-/tmp}/sotp-package-root.XXXXXX")
if droot_create "$R" make 2>"$L/root.err"; then
	ok "a clean Debian 12 root (mmdebstrap)"
else
	fatal "a clean Debian 12 root (mmdebstrap)" "$L/root.err"
fi
# in ROOT: runs a shell command in the root, output in $L/last.
in_root() { droot_run sh -c "$1" >"$L/last" 2>&1; }
# A chroot keeps the packages' daemons from starting at install
# (freeradius would take port 1812 of the host): Debian's documented
# policy-rc.d for chroots. The README's restart is done below instead.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 0755 "$R/usr/sbin/policy-rc.d"
mkdir -p "$R/root/debs"
cp "$@" "$R/root/debs/"
# What a stock machine already has: package lists. And the test's own
# tools: pamtester drives PAM, oathtool is the customer's phone.
in_root 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q pamtester oathtool' ||
	fatal "apt-get update; install pamtester, oathtool" "$L/last"
ok "package lists fetched; pamtester and oathtool installed"

# The README blocks marked for this suite, by number.
readme_block() {
	awk -v n="$1" '
	    /^<!-- tests\/package runs this block/ { m++; want = (m == n); next }
	    want && /^```sh$/ { inb = 1; next }
	    inb && /^```$/ { exit }
	    inb { print }' "$TOP/README.md"
}
for i in 1 2 3 4; do
	readme_block $i >"$L/block$i"
	[ -s "$L/block$i" ] || fatal "README.md has marked block $i"
done
check "README block 1 installs the three packages with apt" \
    grep -q '^apt install ./shinkin-otp_\*.deb ./libpam-shinkin-otp_\*.deb ./freeradius-shinkin-otp_\*.deb$' "$L/block1"

# ---- README: install ----
if in_root "cd /root/debs && export DEBIAN_FRONTEND=noninteractive &&
    set -e -x && $(sed 's/^apt install /apt install -y /' "$L/block1")"; then
	ok "README install: apt install ./*.deb (with freeradius)"
else
	fatal "README install: apt install ./*.deb" "$L/last" 30
fi
check "freeradius came with the packages" \
    sh -c "chroot '$R' dpkg-query -W -f='\${Status}' freeradius | grep -q 'install ok installed'"
# modes PATH...: "path mode owner:group" per path, as the root sees them.
modes() { droot_run stat -c '%n %a %U:%G' "$@" 2>&1; }
STATE="/etc/shinkin-otp/master.key /etc/shinkin-otp/shinkin-otp.conf
/var/lib/shinkin-otp /var/lib/shinkin-otp/shinkin-otp.db"
# shellcheck disable=SC2086
modes $STATE >"$L/modes.pkg"
cat >"$L/modes.want" <<EOF
/etc/shinkin-otp/master.key 640 root:shinkin-otp
/etc/shinkin-otp/shinkin-otp.conf 640 root:shinkin-otp
/var/lib/shinkin-otp 2770 root:shinkin-otp
/var/lib/shinkin-otp/shinkin-otp.db 660 root:shinkin-otp
EOF
check "key 0640, policy 0640, state dir 2770, store 0660, all root:shinkin-otp" \
    cmp "$L/modes.want" "$L/modes.pkg"
check "the key is 32 bytes" test "$(stat -c %s "$R/etc/shinkin-otp/master.key")" -eq 32
check "freerad is in the group shinkin-otp, nobody else" \
    sh -c "chroot '$R' getent group shinkin-otp | grep -qx 'shinkin-otp:x:[0-9]*:freerad'"
check "nothing under /etc/shinkin-otp or the state dir is world-readable" \
    sh -c "test -z \"\$(find '$R/etc/shinkin-otp' '$R/var/lib/shinkin-otp' -perm -o=r ! -type d)\""
in_root 'dpkg-statoverride --list'
check "dpkg-statoverride keeps the policy's mode" \
    grep -qx 'root shinkin-otp 640 /etc/shinkin-otp/shinkin-otp.conf' "$L/last"
check "dpkg-statoverride keeps the state dir's mode" \
    grep -qx 'root shinkin-otp 2770 /var/lib/shinkin-otp' "$L/last"
KEYSUM=$(md5sum <"$R/etc/shinkin-otp/master.key")
in_root 'dpkg-reconfigure shinkin-otp'
check "reconfiguring keeps the key" \
    test "$(md5sum <"$R/etc/shinkin-otp/master.key")" = "$KEYSUM"

# ---- README: the first contract ----
if in_root "set -e -x; $(cat "$L/block2")"; then
	ok "README first contract: token add, contract add, bind"
else
	notok "README first contract: token add, contract add, bind"
	sed 's/^/#   /' "$L/last"
fi

# ---- README: PAM ----
if in_root "set -e -x; $(cat "$L/block3")"; then
	ok "README PAM: the sample service copied to /etc/pam.d"
else
	notok "README PAM: the sample service copied to /etc/pam.d"
	sed 's/^/#   /' "$L/last"
fi
SEC=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
# The code of the next 30 s step (the bind spent the current one).
next_code() { oathtool --totp -b --now "@$(($(date +%s) + 30))" "$1"; }
pam_login() { # USER ANSWER...
	_u=$1
	shift
	printf '%s\n' "$@" >"$R/root/answers"
	droot_run sh -c "pamtester ib-login $_u authenticate </root/answers" \
	    >"$L/pam.out" 2>&1
}
if pam_login C1001 wrong-password 000000; then
	notok "PAM: a wrong password is refused"
else
	if grep -q 'Authentication failure' "$L/pam.out"; then
		ok "PAM: a wrong password is refused"
	else
		notok "PAM: a wrong password is refused as an authentication failure"
		sed 's/^/#   /' "$L/pam.out"
	fi
fi
if pam_login C1001 s3cret "$(next_code "$SEC")" &&
    grep -q 'successfully authenticated' "$L/pam.out"; then
	ok "PAM: pamtester ib-login C1001: password, then code: accepted"
else
	notok "PAM: pamtester ib-login C1001: password, then code"
	sed 's/^/#   /' "$L/pam.out"
fi

# ---- README: RADIUS, in a network namespace of its own ----
command -v ip >/dev/null || fatal "ip (iproute2) installed (sh scripts/deps.sh)"
unshare --net sleep 100000 &
NSPID=$!
# Up to 60 s, over the moment the namespace exists: a loaded CI host can
# take more than the 5 s this waited.
i=0
while [ "$(readlink /proc/$NSPID/ns/net 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ] &&
    [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
net() { nsenter --net="/proc/$NSPID/ns/net" "$@"; }
net ip link set lo up && net ip addr add 192.0.2.10/32 dev lo ||
	fatal "a network namespace with lo and the NAS address 192.0.2.10"
# in_net CMD: as in_root, inside the namespace.
in_net() {
	net chroot "$R" /usr/bin/env -i HOME=/root \
	    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	    sh -c "$1" >"$L/last" 2>&1
}
# The root has no systemd. "systemctl restart freeradius" does here what
# Debian's freeradius.service does: /run/freeradius (RuntimeDirectory,
# 0775), the check (ExecStartPre: freeradius -Cx -lstdout), then
# "freeradius -f" as User=freerad Group=freerad with freerad's groups.
cat >"$R/root/systemctl.sh" <<'EOF'
systemctl() {
	[ "$*" = "restart freeradius" ] ||
		{ echo "systemctl here knows only 'restart freeradius'" >&2; return 1; }
	# The old radiusd gone before the new one binds its ports: up to
	# 60 s, over as soon as it has exited (a fixed 2 s could be short);
	# exited but not yet reaped (a zombie) counts as gone.
	if [ -s /run/freeradius/test.pid ]; then
		old=$(cat /run/freeradius/test.pid)
		kill "$old" 2>/dev/null
		i=0
		while kill -0 "$old" 2>/dev/null &&
		    ! grep -q '^State:[[:space:]]*Z' "/proc/$old/status" 2>/dev/null; do
			i=$((i + 1))
			[ $i -lt 600 ] || { echo "old radiusd did not exit in 60 s" >&2; return 1; }
			sleep 0.1
		done
	fi
	install -d -o freerad -g freerad -m 0775 /run/freeradius
	setpriv --reuid=freerad --regid=freerad --init-groups \
	    freeradius -Cx -lstdout >/var/log/freeradius/startpre.log 2>&1 ||
		{ cat /var/log/freeradius/startpre.log >&2; return 1; }
	n=$(cat /var/log/freeradius/radius.log 2>/dev/null | wc -l)
	setpriv --reuid=freerad --regid=freerad --init-groups \
	    freeradius -f >/var/log/freeradius/stdout.log 2>&1 &
	echo $! >/run/freeradius/test.pid
	i=0
	until tail -n +$((n + 1)) /var/log/freeradius/radius.log 2>/dev/null |
	    grep -q 'Ready to process requests'; do
		kill -0 "$(cat /run/freeradius/test.pid)" 2>/dev/null ||
			{ echo "radiusd exited" >&2; tail -n 20 /var/log/freeradius/radius.log >&2; return 1; }
		i=$((i + 1))
		# Up to 60 s: at once on a quiet host, not 10 on a loaded one.
		[ $i -lt 600 ] || { echo "radiusd not ready in 60 s" >&2; return 1; }
		sleep 0.1
	done
}
EOF
if in_net ". /root/systemctl.sh; set -e -x; $(cat "$L/block4")"; then
	ok "README RADIUS: links, context, NAS entry, freeradius -CX, restart"
else
	fatal "README RADIUS: links, context, NAS entry, freeradius -CX, restart" "$L/last" 30
fi
check "freeradius -CX: Configuration appears to be OK" \
    grep -qx 'Configuration appears to be OK' "$L/last"
FRPID=$(cat "$R/run/freeradius/test.pid" 2>/dev/null)
check "the stock default site is still enabled" \
    test -L "$R/etc/freeradius/3.0/sites-enabled/default"
grep -E '^(Uid|Gid|Groups):' "/proc/${FRPID:-0}/status" >"$L/frstatus" 2>&1
FRUID=$(droot_run id -u freerad)
SOTPGID=$(droot_run getent group shinkin-otp | cut -d: -f3)
check "radiusd runs as freerad, with the group shinkin-otp" \
    sh -c "grep -q '^Uid:[[:space:]]*$FRUID[[:space:]]' '$L/frstatus' &&
	grep -q '^Groups:.*\\<$SOTPGID\\>' '$L/frstatus'"

# Contracts of this test (not the README's): bound with the previous
# step's code, so the current one is still unused.
rsec() { printf 'package-test-token-%s' "$1" | base32 | tr -d '=\n'; }
for c in R1 R2; do
	# Two steps back, when the step changes between oathtool and the
	# check, is outside window_back: leave room for the three commands.
	fresh_step 5
	in_root "set -e
	    shinkin-otp token add T-$c --secret $(rsec $c)
	    echo pw-$c | shinkin-otp contract add C-$c
	    shinkin-otp contract bind C-$c --serial T-$c --otp \$(oathtool --totp -b --now @\$((\$(date +%s) - 30)) $(rsec $c))" ||
		fatal "contract C-$c for RADIUS" "$L/last"
done
ok "two contracts for the RADIUS checks"
code() { oathtool --totp -b --now "@$(($(date +%s) + ${2:-0}))" "$(rsec "$1")"; }
NAS_SECRET=change-me-to-a-long-random-secret-1
# rad NAME ATTRIBUTES [SERVER SECRET]: one request from the README's NAS
# (default), or another client; radclient -x output in $L/NAME.out.
rad() {
	printf '%s, Message-Authenticator = 0x00\n' "$2" >"$R/root/$1.req"
	net chroot "$R" radclient -x -t 10 -r 1 -f "/root/$1.req" \
	    "${3:-192.0.2.10}:1812" auth "${4:-$NAS_SECRET}" >"$L/$1.out" 2>&1
}
reply_of() {
	sed -n 's/^Received \(Access-[A-Za-z]*\) .*/\1/p' "$L/$1.out" | head -n 1 |
	    grep . || echo none
}
state_of() {
	sed -n 's/^[[:space:]]*State = \(0x[0-9a-fA-F]*\).*/\1/p' "$L/$1.out" | head -n 1
}
# expect NAME REPLY "what": the reply type of NAME, with its output on failure.
expect() {
	if [ "$(reply_of "$1")" = "$2" ]; then
		ok "$3"
	else
		notok "$3 (got $(reply_of "$1"), want $2)"
		sed 's/^/#   /' "$L/$1.out"
	fi
}
fresh_step 5
rad login1 'User-Name = "C-R1", User-Password = "pw-R1", NAS-Identifier = "ib-login"'
expect login1 Access-Challenge "RADIUS login: the password is answered with a challenge"
check "RADIUS login: the challenge carries a State and a Reply-Message" \
    sh -c "grep -q 'State = 0x' '$L/login1.out' && grep -q 'Reply-Message = ' '$L/login1.out'"
rad login2 "User-Name = \"C-R1\", User-Password = \"$(code R1)\", NAS-Identifier = \"ib-login\", State = $(state_of login1)"
expect login2 Access-Accept "RADIUS login: the code with the State is accepted"
check "RADIUS replies are signed (Message-Authenticator)" \
    grep -q 'Message-Authenticator = 0x' "$L/login2.out"
TX=$(code R2)
rad tx1 "User-Name = \"C-R2\", User-Password = \"$TX\", NAS-Identifier = \"ib-transfer\""
expect tx1 Access-Accept "RADIUS transaction: the current code alone is accepted"
rad tx2 "User-Name = \"C-R2\", User-Password = \"$TX\", NAS-Identifier = \"ib-transfer\""
expect tx2 Access-Reject "RADIUS transaction: the same code again is refused"
rad badpw 'User-Name = "C-R1", User-Password = "wrong-R1", NAS-Identifier = "ib-login"'
expect badpw Access-Reject "RADIUS login: a wrong password is refused"
# The NAS's Status-Server probe reaches the shipped site's Autz-Type
# Status-Server, where the module answers for the store.
printf 'Message-Authenticator = 0x00\n' >"$R/root/ss.req"
net chroot "$R" radclient -x -t 10 -r 1 -f /root/ss.req 192.0.2.10:1812 \
    status "$NAS_SECRET" >"$L/ss.out" 2>&1
expect ss Access-Accept "Status-Server from the NAS: answered while the store answers"
sed -n '/^Received/,$p' "$L/ss.out" >"$L/ss.reply"
check "... and signed (Message-Authenticator)" \
    grep -q 'Message-Authenticator = 0x' "$L/ss.reply"
# The stock client localhost (127.0.0.1, testing123) still goes to the
# stock default site: it rejects the unknown user, and its replies, unlike
# rlm_shinkin_otp's, carry no Message-Authenticator in FreeRADIUS 3.2.1.
rad stock 'User-Name = "C-R1", User-Password = "pw-R1"' 127.0.0.1 testing123
expect stock Access-Reject "the stock localhost client is answered by the default site"
sed -n '/^Received/,$p' "$L/stock.out" >"$L/stock.reply"
check "... not by ours (no Message-Authenticator in its reply)" \
    sh -c "! grep -q Message-Authenticator '$L/stock.reply'"
sed -n '/^Received/,$p' "$L/tx2.out" >"$L/tx2.reply"
check "... while ours signs even its rejects" \
    grep -q 'Message-Authenticator = 0x' "$L/tx2.reply"
if [ -n "$FRPID" ] && kill -0 "$FRPID" 2>/dev/null; then
	ok "radiusd still running"
	kill "$FRPID"
	# Up to 60 s, over as soon as it has exited.
	i=0
	while kill -0 "$FRPID" 2>/dev/null && [ $i -lt 600 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	check "radiusd stopped" sh -c "! kill -0 $FRPID 2>/dev/null"
else
	notok "radiusd still running"
	tail -n 20 "$R/var/log/freeradius/radius.log" | sed 's/^/#   /'
fi
kill "$NSPID" 2>/dev/null
wait "$NSPID" 2>/dev/null
NSPID=""

# ---- apt remove: the key, the store and the policy stay ----
PKGS="shinkin-otp libpam-shinkin-otp freeradius-shinkin-otp"
in_root "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q $PKGS" ||
	fatal "apt-get remove" "$L/last"
ok "apt-get remove of the three packages"
# shellcheck disable=SC2086
modes $STATE >"$L/modes.rm"
check "after remove: key, policy, state dir and store as they were" \
    cmp "$L/modes.pkg" "$L/modes.rm"
check "after remove: the same key" \
    test "$(md5sum <"$R/etc/shinkin-otp/master.key")" = "$KEYSUM"
check "after remove: no tool, no PAM module, no RADIUS module" \
    test ! -e "$R/usr/bin/shinkin-otp" -a \
    ! -e "$R/lib/x86_64-linux-gnu/security/pam_shinkin_otp.so" -a \
    ! -e "$R/usr/lib/freeradius/rlm_shinkin_otp.so"
check "after remove: freerad is no longer in shinkin-otp" \
    sh -c "chroot '$R' getent group shinkin-otp | grep -qx 'shinkin-otp:x:[0-9]*:'"

# ---- apt purge: nothing the packages made is left ----
# What remove left in dpkg's "config-files" state: the two with
# conffiles (libpam-shinkin-otp has none and is gone already).
RC=$(droot_run dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS 2>/dev/null |
    awk '$1 == "rc" { print $2 }' | sort | xargs)
check "after remove: shinkin-otp and freeradius-shinkin-otp keep their conffiles" \
    test "$RC" = "freeradius-shinkin-otp shinkin-otp"
in_root "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $RC" ||
	fatal "apt-get purge" "$L/last"
ok "apt-get purge $RC"
check "after purge: no /etc/shinkin-otp, no /var/lib/shinkin-otp" \
    test ! -e "$R/etc/shinkin-otp" -a ! -e "$R/var/lib/shinkin-otp"
check "after purge: no group shinkin-otp" \
    sh -c "! chroot '$R' getent group shinkin-otp"
in_root 'dpkg-statoverride --list'
check "after purge: no dpkg-statoverride left" \
    sh -c "! grep -q shinkin '$L/last'"
check "after purge: the module's and the site's links are gone" \
    test ! -L "$R/etc/freeradius/3.0/mods-enabled/shinkin_otp" -a \
    ! -L "$R/etc/freeradius/3.0/sites-enabled/shinkin-otp"
in_root 'dpkg -l | grep shinkin; find / -xdev \( -path /root -o -path /var/cache/apt/archives \) -prune -o -name "*shinkin*" -print'
check "after purge: dpkg knows none, and no file is named shinkin" \
    test ! -s "$L/last"
[ -s "$L/last" ] && sed 's/^/#   /' "$L/last"

# ---- make install on the purged root: the same state ----
# The root has no compiler: the tree is bound in read-only, and make
# installs what `make deb` built (-o all: build nothing).
PB=$DEB/src/debian/build
mkdir -p "$R$TOP"
if mount --bind "$TOP" "$R$TOP" && mount -o remount,bind,ro "$R$TOP" &&
    in_root "make -C '$TOP' -o all BUILD='$PB' install"; then
	ok "make install (as the source install does)"
else
	fatal "make install" "$L/last"
fi
# shellcheck disable=SC2086
modes $STATE >"$L/modes.src"
check "make install: the same modes, owners and group as the packages" \
    cmp "$L/modes.want" "$L/modes.src"
check "make install: freerad is in the group shinkin-otp" \
    sh -c "chroot '$R' getent group shinkin-otp | grep -qx 'shinkin-otp:x:[0-9]*:freerad'"
SEC2=$(rsec S1)
fresh_step 5 # the bind's code is the previous step's, as above
in_root "set -e
    /usr/local/bin/shinkin-otp token add T-S1 --secret $SEC2
    echo pw-S1 | /usr/local/bin/shinkin-otp contract add C-S1
    /usr/local/bin/shinkin-otp contract bind C-S1 --serial T-S1 --otp \$(oathtool --totp -b --now @\$((\$(date +%s) - 30)) $SEC2)" ||
	fatal "make install: a contract" "$L/last"
if pam_login C-S1 pw-S1 "$(oathtool --totp -b "$SEC2")" &&
    grep -q 'successfully authenticated' "$L/pam.out"; then
	ok "make install: the PAM login works"
else
	notok "make install: the PAM login works"
	sed 's/^/#   /' "$L/pam.out"
fi
echo "1..$TAPN"

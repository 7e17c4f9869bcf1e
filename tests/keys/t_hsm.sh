#!/bin/sh
# The key-encryption key in an HSM (issue 16), SoftHSM2 as the HSM: a
# token initialised in a private directory, an AES-256 key made in it
# that is sensitive and never extractable; an existing store (token
# secrets and a card sealed under the master key file) switched to it
# with key rewrap, the policy swap and key drop-kek, the master key file
# then removed; PAM (the real libpam) and a private radiusd authenticate
# through the HSM, and a rotation under it; then every way the HSM can
# fail, each refused with its message by the tool, by PAM (every request
# AUTHINFO_UNAVAIL) and by radiusd (it does not start), never falling back
# to the file; the same token through p11-kit's proxy; and a service user
# that is not root (radiusd's freerad) reaching the token only through
# SoftHSM's group.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
. "$TOP/tests/radius/lib.sh"
. "$TOP/tests/keys/lib_hsm.sh"

RLM_SO=${RLM_SO:-$BUILD/rlm_shinkin_otp.so}
MOD=$BUILD/pam_shinkin_otp.so
DRV=$BUILD/tests/pam_driver
hsm_require
for b in freeradius radclient oathtool sqlite3 setpriv; do
	command -v "$b" >/dev/null ||
		{ notok "$b installed (sh scripts/deps.sh)"; exit 1; }
done
if readelf -d "$RLM_SO" 2>/dev/null | grep -q 'libasan'; then
	. "$TOP/tests/radius/ubsan.sh"
	ubsan_module || exit 1
fi
mk_sandbox
T=$(mktemp -d "${TMPDIR:-/tmp}/sotp-hsm.XXXXXX")
trap 'fr_stop_all; rm -rf "$T" "$SB"' EXIT
trap 'exit 1' INT TERM HUP
OUT=$SB/out
ERR=$SB/err
KEYFILE=$(conf_path master_key)
# The States of this suite live 5 s, and processes look for a new key
# version every second, so a rotation retires its old version at once.
set_key "$CONF" lifetime 5
set_key "$CONF" refresh 1

# -- a store as an existing install has it: the master key file --
S1=$(secret)
S2=$(secret)
# Event-based (HOTP) tokens, so that every step can take a fresh code.
check "token T1 (HOTP) bound to C1, with the file key" sh -c '"$1" token add T1 --secret "$2" --counter 0 >/dev/null &&
    printf "pw-C1\n" | "$1" contract add C1 >/dev/null &&
    "$1" contract bind C1 --serial T1 --otp "$(oathtool --hotp -b -c 0 "$2")" >/dev/null' \
    sh "$CLI" "$S1"
check "a card issued to C1" sh -c '"$1" contract card C1 >"$2"' sh "$CLI" "$SB/grid"
check "token T2 (HOTP) bound to C2" sh -c '"$1" token add T2 --secret "$2" --counter 0 >/dev/null &&
    printf "pw-C2\n" | "$1" contract add C2 >/dev/null &&
    "$1" contract bind C2 --serial T2 --otp "$(oathtool --hotp -b -c 0 "$2")" >/dev/null' \
    sh "$CLI" "$S2"
FILEKEK=$("$CLI" --json key status | jq -r 'select(.kek) | .kek')
check "key status names the file's key-encryption key ($FILEKEK)" \
    sh -c 'echo "$1" | grep -Eq "^file:[0-9a-f]{16}$"' sh "$FILEKEK"
# n1, n2: the next code of T1, T2 in H1, H2 (the binds took counter 0).
c1=0
c2=0
n1() { c1=$((c1 + 1)) && H1=$(oathtool --hotp -b -c $c1 "$S1"); }
n2() { c2=$((c2 + 1)) && H2=$(oathtool --hotp -b -c $c2 "$S2"); }

# -- the HSM: a token, an AES-256 key that never leaves it --
check "a SoftHSM token initialised in a private directory" hsm_setup "$SB/hsm"
check "an AES-256 key made in it: sensitive, never extractable" \
    sh -c '. "$1/tests/keys/lib_hsm.sh"; hsm_keygen kek-2026 --sensitive >"$2"' sh "$TOP" "$SB/keygen"
check "  as pkcs11-tool reports it" \
    grep -q "Access:.*sensitive.*never extractable" "$SB/keygen"
printf '%s\n' "$HSM_PIN" >"$SB/hsm.pin"
chmod 600 "$SB/hsm.pin"
HSM=$SB/hsm.conf
hsm_policy "$CONF" "$HSM" kek-2026 "$SB/hsm.pin"
check "check-config takes the HSM policy" cli --config "$HSM" check-config
check "  and dumps its [key] section" contains "$OUT" "kek = pkcs11"

# -- switching an existing store to the HSM --
check "key rewrap: every key also wrapped under the HSM's" cli key rewrap "$HSM"
check "  (version 1's data and audit keys)" contains "$OUT" "2 keys wrapped"
check "key status: wrapped under both" cli key status
check "  the file's" contains "$OUT" "$FILEKEK"
check "  and the HSM's" contains "$OUT" "pkcs11:$HSM_LABEL/kek-2026"
n2
check "the file policy still serves meanwhile" cli verify C2 --context transaction --otp "$H2"
n2
check "and the HSM policy serves" cli --config "$HSM" verify C2 --context transaction --otp "$H2"
check "a rotation is refused while two key-encryption keys wrap the keys" \
    sh -c '! "$1" --config "$2" key rotate --no-wait 2>"$3" && grep -q "more than one key-encryption key" "$3"' \
    sh "$CLI" "$HSM" "$ERR"
check "key drop-kek of the file's, from the HSM policy" cli --config "$HSM" key drop-kek "$FILEKEK"
check "  2 keys deleted" contains "$OUT" "2 keys wrapped under $FILEKEK deleted"
mv "$KEYFILE" "$SB/master.key.away"
n2
check "the master key file gone, the HSM policy serves" \
    cli --config "$HSM" verify C2 --context transaction --otp "$H2"
n2
check_rc 2 "the file policy does not (its key wraps nothing now)" \
    cli verify C2 --context transaction --otp "$H2"
mv "$SB/master.key.away" "$KEYFILE"
n2
check_rc 2 "  even with the file back" \
    cli verify C2 --context transaction --otp "$H2"
check "  saying why" contains "$ERR" "has no copy wrapped under $FILEKEK"
check_rc 1 "health under the file policy: unhealthy" cli health
check "  the key check fails, naming the missing copy" sh -c \
    'grep "^key     failed" "$1" | grep -qF "has no copy wrapped under $2"' sh "$OUT" "$FILEKEK"
check "health under the HSM policy" cli --config "$HSM" health
check "  names the HSM's key and the current version" \
    grep -q "^key     ok .*pkcs11:$HSM_LABEL/kek-2026, data key version 1" "$OUT"
mv "$KEYFILE" "$SB/master.key.saved"
check "key check: every secret and card unseals through the HSM" cli --config "$HSM" key check
check "  (2 secrets, 1 card)" contains "$OUT" "2 token secrets and 1 card grids unseal; 0 do not"
check "audit verify through the HSM, the rows from before the switch too" cli --config "$HSM" audit verify
check "the switch is audited (key.rewrap, key.drop-kek)" sh -c \
    '"$1" --config "$2" audit | grep -q "key.rewrap accept" && "$1" --config "$2" audit | grep -q "key.drop-kek accept"' \
    sh "$CLI" "$HSM"
SHINKIN_OTP_CONFIG=$HSM
export SHINKIN_OTP_CONFIG

# -- PAM through the HSM --
mkdir -p "$SB/pam.d"
echo "auth required $MOD config=$HSM context=transaction" >"$SB/pam.d/tx"
echo "auth required $MOD config=$HSM context=login" >"$SB/pam.d/login"
pam() { "$DRV" -c "$SB/pam.d" "$@" >"$SB/p.out" 2>&1; }
n2
pam -s tx -u C2 "$H2"
check "PAM: a code accepted through the HSM" grep -qx "result: PAM_SUCCESS" "$SB/p.out"
n1
pam -s login -u C1 pw-C1 "$H1"
check "PAM: a login (password, then code) through the HSM" grep -qx "result: PAM_SUCCESS" "$SB/p.out"
# The warm context under the HSM: read once for a process's calls. Its
# staleness check looked at the master key file, gone under kek = pkcs11,
# and read the absence as a change: every call loaded the policy again and
# logged in to the token again. pam_wrapper prints the module's syslog.
_pre=libpam_wrapper.so
if readelf -d "$DRV" | grep -q 'NEEDED.*libasan'; then
	_pre="$(${CC:-cc} -print-file-name=libasan.so) $_pre"
fi
echo "auth required $MOD config=$HSM context=transaction debug" >"$SB/pam.d/txd"
LD_PRELOAD="$_pre" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$SB/pam.d" \
    PAM_WRAPPER_DEBUGLEVEL=2 "$DRV" -c "$SB/pam.d" -s txd -u C2 -n 3 \
    "$(wrong_hotp "$S2" "$c2")" \
    >"$SB/p.out" 2>&1
check "PAM: three calls in one process read the HSM policy once" \
    [ "$(grep -c "SYSLOG.*loaded $HSM" "$SB/p.out")" = 1 ]
check "  and refused the wrong code each time" grep -qx "result: PAM_AUTH_ERR x3" "$SB/p.out"
"$CLI" contract unlock C2 >/dev/null 2>&1

# -- radiusd through the HSM --
PORT=$(free_port)
fr_setup "$T/raddb"
radius_conf() { # POLICY
	fr_write_conf "shinkin_otp {
	config = $1
	context = login
}
shinkin_otp tx {
	config = $1
	context = transaction
	mode = append
}" "server hsm-test {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
	}
	authorize {
		if (User-Name == \"C2\") {
			tx
		}
		else {
			shinkin_otp
		}
	}
	authenticate {
		Auth-Type shinkin_otp {
			shinkin_otp
		}
		Auth-Type tx {
			tx
		}
	}
}"
}
radius_conf "$HSM"
if fr_start f; then ok "radiusd starts with the HSM policy"; else
	notok "radiusd starts with the HSM policy"
	exit 1
fi
n2
rad r1 "$(req C2 "$H2")"
check "radiusd: a code accepted through the HSM" test "$(reply_of r1)" = Access-Accept
rad r2 "$(req C1 pw-C1)"
check "radiusd: the password challenged" test "$(reply_of r2)" = Access-Challenge
n1
rad r3 "$(req C1 "$H1" "State = $(state_of r2)")"
check "  and the code with the State accepted" test "$(reply_of r3)" = Access-Accept

# -- a rotation under the HSM, radiusd serving --
check "key rotate under the HSM" cli key rotate --batch 1
check "  done, version 2" contains "$OUT" "done: version 2 seals everything"
check "  wrapped under the HSM's key" sh -c '"$1" key status | grep -q "^version 2: current.*wrapped under pkcs11:$2/kek-2026"' sh "$CLI" "$HSM_LABEL"
n2
rad r4 "$(req C2 "$H2")"
check "radiusd (not restarted) accepts a code sealed under version 2" test "$(reply_of r4)" = Access-Accept
rad r5 "$(req C1 pw-C1)"
n1
rad r6 "$(req C1 "$H1" "State = $(state_of r5)")"
check "  and a login, its State (layout 4: past the password) signed under version 2" sh -c \
    'test "$1" = Access-Accept && echo "$2" | grep -q "^0x0400000002"' sh "$(reply_of r6)" "$(state_of r5)"
fr_stop

# -- every way the HSM can fail: refused, named, never the file --
# The master key file is back beside the policies: nothing falls back to it.
cp "$SB/master.key.saved" "$KEYFILE"
echo 99999999 >"$SB/bad.pin"
chmod 600 "$SB/bad.pin"
hsm_policy "$CONF" "$SB/bad-pin.conf" kek-2026 "$SB/bad.pin"
hsm_policy "$CONF" "$SB/no-key.conf" kek-missing "$SB/hsm.pin"
hsm_policy "$CONF" "$SB/no-token.conf" kek-2026 "$SB/hsm.pin" "$SOFTHSM_MODULE" bank-hsm-02
hsm_policy "$CONF" "$SB/no-module.conf" kek-2026 "$SB/hsm.pin" /usr/lib/no-such-hsm/libhsm.so
check "an extractable, non-sensitive key made too" \
    sh -c '. "$1/tests/keys/lib_hsm.sh"; hsm_keygen kek-weak >/dev/null 2>&1' sh "$TOP"
hsm_policy "$CONF" "$SB/weak.conf" kek-weak "$SB/hsm.pin"
SLOT=$(softhsm2-util --show-slots | sed -n 's/^Slot \([0-9]*\)$/\1/p' | head -n 1)
WHERE="token '$HSM_LABEL' (slot $SLOT)"
refusal() { # NAME POLICY MESSAGE
	_n=$1
	_p=$2
	_m=$3
	"$CLI" --config "$_p" verify C2 --context transaction --otp 000000 >"$OUT" 2>"$ERR"
	_rc=$?
	if [ $_rc -eq 2 ] && grep -qF -- "$_m" "$ERR"; then
		ok "$_n: the tool refuses, naming it"
	else
		notok "$_n: the tool refuses, naming it (exit $_rc)"
		sed 's/^/#   /' "$ERR"
		echo "#   want: $_m"
	fi
	"$CLI" --config "$_p" health >"$OUT" 2>"$ERR"
	_rc=$?
	if [ $_rc -eq 1 ] && grep -q "^key     failed" "$OUT" &&
	    grep -qF -- "$_m" "$OUT" && tail -n 1 "$OUT" | grep -qx "unhealthy: key"; then
		ok "$_n: health fails the key check alone, naming it"
	else
		notok "$_n: health fails the key check alone, naming it (exit $_rc)"
		sed 's/^/#   /' "$OUT" "$ERR"
	fi
	echo "auth required $MOD config=$_p context=transaction" >"$SB/pam.d/bad"
n2
	pam -s bad -u C2 "$H2"
	check "$_n: PAM refuses every request (authinfo unavailable)" \
	    grep -qx "result: PAM_AUTHINFO_UNAVAIL" "$SB/p.out"
	radius_conf "$_p"
	if fr_start f >"$SB/fr.out" 2>&1; then
		notok "$_n: radiusd does not start"
		fr_stop
	else
		ok "$_n: radiusd does not start"
	fi
	cat "$FR_DIR"/log/*.log >"$SB/fr.log" 2>/dev/null
	check "$_n: radiusd's log names it" grep -qF -- "$_m" "$SB/fr.log"
}
refusal "wrong PIN" "$SB/bad-pin.conf" \
    "pkcs11: $WHERE, key 'kek-2026': login refused: wrong PIN (CKR_PIN_INCORRECT; the PIN is read from $SB/bad.pin)"
refusal "key missing" "$SB/no-key.conf" \
    "pkcs11: $WHERE, key 'kek-missing': no AES key with this label on the token"
refusal "HSM absent (no such token)" "$SB/no-token.conf" \
    "pkcs11: no token labelled 'bank-hsm-02' in module $SOFTHSM_MODULE (tokens present: '$HSM_LABEL' in slot $SLOT"
refusal "HSM absent (no module)" "$SB/no-module.conf" \
    "pkcs11: cannot load module /usr/lib/no-such-hsm/libhsm.so"
refusal "a key that could leave the token" "$SB/weak.conf" \
    "pkcs11: $WHERE, key 'kek-weak': the key could leave the token (CKA_SENSITIVE false"
check "the master key file was there all along (not a fallback)" test -s "$KEYFILE"
cp "$HSM" "$SB/pin-in.conf"
sed -i 's|^pkcs11_pin_file = .*|pkcs11_pin = 12345678|' "$SB/pin-in.conf"
check_rc 2 "a PIN in the policy is refused" cli --config "$SB/pin-in.conf" check-config
check "  saying where it belongs" contains "$ERR" "pkcs11_pin: a PIN is never read from the policy"
n2
check "the good policy still serves after all that" \
    cli --config "$HSM" verify C2 --context transaction --otp "$H2"

# -- the same token through p11-kit's proxy --
hsm_policy "$CONF" "$SB/proxy.conf" kek-2026 "$SB/hsm.pin" p11-kit-proxy.so
n2
check "through p11-kit-proxy.so (p11-kit's modules, SoftHSM among them)" \
    cli --config "$SB/proxy.conf" verify C2 --context transaction --otp "$H2"

# -- a service user that is not root: freerad --
# The token directory as Debian's softhsm2 package makes it: group
# softhsm, setgid, no access for others. radiusd runs as freerad.
FRD=$T/freerad
mkdir -p "$FRD"
cp "$(conf_path store)" "$FRD/store.db"
cp "$SB/hsm.pin" "$FRD/hsm.pin"
sed -e "s|^store = .*|store = sqlite:$FRD/store.db|" \
    -e "s|^pkcs11_pin_file = .*|pkcs11_pin_file = $FRD/hsm.pin|" "$HSM" >"$FRD/p.conf"
chown -R freerad:freerad "$FRD"
chmod 600 "$FRD/hsm.pin"
chgrp -R softhsm "$SB/hsm/tokens"
chmod -R g+rwX,o-rwx "$SB/hsm/tokens"
chmod g+s "$SB/hsm/tokens"
chmod 755 "$SB" "$SB/hsm" "$T"
chmod 644 "$SB/hsm/softhsm2.conf"
# The tool copied where freerad can run it: the checkout may sit where
# only root can enter (a clone under /root).
cp "$CLI" "$FRD/shinkin-otp"
chmod 755 "$FRD/shinkin-otp"
as_freerad() { # GROUPS ARGS...
	_g=$1
	shift
	setpriv --reuid=freerad --regid=freerad --groups="$_g" \
	    env SOFTHSM2_CONF="$SOFTHSM2_CONF" "$FRD/shinkin-otp" --config "$FRD/p.conf" "$@" >"$OUT" 2>"$ERR"
}
as_freerad freerad key check
check "freerad outside group softhsm: refused, the token's store out of its reach" \
    sh -c 'test $1 -eq 2 && grep -q "pkcs11: module .*: C_Initialize: CKR_GENERAL_ERROR (is the token.s storage readable by this user?)" "$2"' sh $? "$ERR"
as_freerad freerad,softhsm key check
check "freerad in group softhsm: every value unseals" test $? -eq 0
n2
as_freerad freerad,softhsm verify C2 --context transaction --otp "$H2"
check "  and a code is accepted" test $? -eq 0
# radiusd itself as freerad (security { user = freerad }): it switches
# before it instantiates the module, so the module opens the token as
# freerad. Packaged, the token directory's group is softhsm and
# "adduser freerad softhsm" lets radiusd in; here the directory takes a
# group freerad is in, and then one it is not.
fr_setup "$T/raddb-freerad"
radius_conf "$FRD/p.conf"
sed -i 's/^security {/security {\n\tuser = freerad\n\tgroup = freerad/' "$FR_DIR/radiusd.conf"
# The module copied, not linked into the checkout (see the tool above).
rm -f "$FR_DIR/lib/rlm_shinkin_otp.so"
cp "$RLM_SO" "$FR_DIR/lib/rlm_shinkin_otp.so"
chown -R freerad:freerad "$FR_DIR"
if fr_start f >"$SB/fr.out" 2>&1; then
	notok "radiusd as freerad, the token's group not its own: does not start"
	fr_stop
else
	ok "radiusd as freerad, the token's group not its own: does not start"
fi
check "  its log names the token's storage" \
    grep -q "C_Initialize: CKR_GENERAL_ERROR (is the token's storage readable by this user?)" "$FR_DIR/log/radius.log"
chgrp -R freerad "$SB/hsm/tokens"
if fr_start f; then ok "radiusd as freerad, in the token's group: starts"; else
	notok "radiusd as freerad, in the token's group: starts"
fi
# From /proc (a fresh Debian 12 has no ps(1) until procps is installed).
check "  running as freerad" sh -c 'test "$(awk "/^Uid:/ { print \$2 }" /proc/$1/status)" = "$(id -u freerad)"' sh "$FR_PID"
n2
rad fr1 "$(req C2 "$H2")"
check "  and accepts a code through the HSM" test "$(reply_of fr1)" = Access-Accept
fr_stop

echo "1..$TAPN"

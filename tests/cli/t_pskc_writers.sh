#!/bin/sh
# token import of PSKC files that shinkin-otp did not write: python-pskc
# (Debian's python3-pskc, an independent RFC 6030 implementation) writes
# them at test time with fresh random secrets and keys (tests/tools/
# pskc_write.py): plain, under a pre-shared key with its MAC, under a
# PBKDF2 key (its PBKDF2-params in the XML Encryption 1.1 namespace, with
# unqualified children), each with a TOTP, an HOTP (counter 7) and an
# HMAC-SHA256 8-digit token; oath-toolkit's pskctool (libpskc) signs one
# and reads the secrets back. Every token must then give oathtool's codes.
# Hostile variants (a bad MAC, a wrong key, a wrong passphrase, a serial
# twice) are each refused with nothing imported.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
PY=/usr/bin/python3
W=$TOP/tests/tools/pskc_write.py
PASS="fresh passphrase $(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"

check "python3-pskc is installed (scripts/deps.sh)" $PY -c 'import pskc'
check "pskctool is installed (scripts/deps.sh)" sh -c 'command -v pskctool >/dev/null'

snapshot() { "$CLI" token list >"$SB/list.before"; }
unchanged() {
	"$CLI" token list >"$SB/list.after"
	check "$1: nothing imported" cmp -s "$SB/list.before" "$SB/list.after"
}
# hexcode ALG DIGITS HEX: oathtool's current TOTP code for a hex secret.
hexcode() { oathtool --totp="$1" -d "$2" --now "@$(date +%s)" "$3"; }
hotp() { oathtool --hotp -d 6 -c "$2" "$1"; }

# works MODE TAG: the three tokens of one file bind and verify with
# oathtool's codes: TOTP by time, HOTP from its counter 7 on.
works() {
	. "$SB/$1.env"
	eval "_t=\$${2}_TOTP _h=\$${2}_HOTP _s=\$${2}_SHA256"
	fresh_step 5
	check "$1: contracts" sh -c 'for c in T S H; do printf "pw\n" |
	    "$1" contract add "C-$2-$c" >/dev/null || exit 1; done' sh "$CLI" "$2"
	check "$1: the TOTP token binds with oathtool's code" \
	    cli contract bind "C-$2-T" --serial "PW-$2-TOTP" --otp "$(hexcode sha1 6 "$_t")"
	check "$1: the SHA-256 8-digit token binds with oathtool's code" \
	    cli contract bind "C-$2-S" --serial "PW-$2-SHA256" --otp "$(hexcode sha256 8 "$_s")"
	check "$1: the HOTP token binds with oathtool's code for counter 7" \
	    cli contract bind "C-$2-H" --serial "PW-$2-HOTP" --otp "$(hotp "$_h" 7)"
	check "$1: the HOTP token's next code (counter 8) is accepted" \
	    cli verify "C-$2-H" --context transaction --otp "$(hotp "$_h" 8)"
}

# -- plain --
check "python-pskc writes a plain file" $PY "$W" plain "$SB/plain.pskc" "$SB/plain.env"
check "import: plain" cli token import "$SB/plain.pskc"
check "three tokens" contains "$OUT" "imported 3 tokens"
works plain PLAIN

# -- pre-shared key, MAC --
check "python-pskc writes a file under a fresh pre-shared key" \
    $PY "$W" psk "$SB/psk.pskc" "$SB/psk.env" "$SB/psk.hex"
chmod 600 "$SB/psk.hex"
check "its EncryptionKey names no key (python-pskc leaves it empty)" \
    contains "$SB/psk.pskc" "<pskc:EncryptionKey/>"
check "import: pre-shared key" cli token import "$SB/psk.pskc" --key-file "$SB/psk.hex"
works psk PSK

# -- PBKDF2, xenc11:PBKDF2-params with unqualified Salt/Specified --
check "python-pskc writes a file under a PBKDF2 key" \
    $PY "$W" pbkdf2 "$SB/pbkdf2.pskc" "$SB/pbkdf2.env" "$PASS"
check "its PBKDF2-params are in the XML Encryption 1.1 namespace" \
    contains "$SB/pbkdf2.pskc" "<xenc11:PBKDF2-params>"
check "import: PBKDF2 with the passphrase" \
    clin "$PASS" token import "$SB/pbkdf2.pskc" --passphrase-stdin
works pbkdf2 PBKDF2

# -- signed by pskctool (libpskc, xmlsec): the signature is not checked,
#    the file is still read; pskctool reads the secrets we imported --
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$SB/sign.key" \
    -out "$SB/sign.crt" -days 2 -subj /CN=test-vendor >/dev/null 2>&1
check "python-pskc writes a fourth file" $PY "$W" signed "$SB/u.pskc" "$SB/signed.env"
check "pskctool signs it" sh -c 'pskctool --sign --sign-key "$1" --sign-crt "$2" "$3" >"$4"' \
    sh "$SB/sign.key" "$SB/sign.crt" "$SB/u.pskc" "$SB/signed.pskc"
check "pskctool verifies its signature" pskctool --verify --verify-crt "$SB/sign.crt" "$SB/signed.pskc"
pskctool -i "$SB/signed.pskc" 2>/dev/null | sed -n 's/.*Key Secret (base64): //p' >"$SB/signed.b64"
. "$SB/signed.env"
check "pskctool reads the same secrets python-pskc wrote" test \
    "$(base64 -d "$SB/signed.b64" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = \
    "$(printf %s "$SIGNED_TOTP$SIGNED_HOTP$SIGNED_SHA256")"
check "import: the signed file" cli token import "$SB/signed.pskc"
works signed SIGNED

# -- hostile variants: each refused, nothing imported --
snapshot
check "python-pskc writes a fifth file under a pre-shared key" \
    $PY "$W" psk "$SB/h.pskc" "$SB/h.env" "$SB/h.hex"
chmod 600 "$SB/h.hex"
sed 's/PW-PSK-/PW-H-/g' "$SB/h.pskc" >"$SB/h2.pskc"
awk '/<pskc:ValueMAC>/ && ++n == 2 {
	i = index($0, "<pskc:ValueMAC>") + 15
	$0 = substr($0, 1, i - 1) (substr($0, i, 1) == "A" ? "B" : "A") substr($0, i + 1)
} { print }' "$SB/h2.pskc" >"$SB/badmac.pskc"
refused BAD_INPUT "a bad MAC (entry 2) is refused" \
    cli token import "$SB/badmac.pskc" --key-file "$SB/h.hex"
check "the reason names entry 2 and the MAC" contains "$ERR" "entry 2: Secret: MAC mismatch"
unchanged "bad MAC"
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SB/wrong.hex"
chmod 600 "$SB/wrong.hex"
refused BAD_INPUT "a wrong pre-shared key is refused" \
    cli token import "$SB/h2.pskc" --key-file "$SB/wrong.hex"
unchanged "wrong key"
check "python-pskc writes a PBKDF2 file" \
    $PY "$W" pbkdf2 "$SB/p2.pskc" "$SB/p2.env" "$PASS"
sed 's/PW-PBKDF2-/PW-P2-/g' "$SB/p2.pskc" >"$SB/p3.pskc"
refused BAD_INPUT "a wrong passphrase is refused" \
    clin "not $PASS" token import "$SB/p3.pskc" --passphrase-stdin
unchanged "wrong passphrase"
check "python-pskc writes a file with a serial twice" $PY "$W" dup "$SB/dup.pskc" "$SB/dup.env"
refused EXISTS "a serial twice in the file is refused" cli token import "$SB/dup.pskc"
check "the reason names entry 4 and entry 1" contains "$ERR" "entry 4: duplicate serial 'PW-DUP-TOTP' (entry 1 has it too)"
unchanged "duplicate serial"
check "after the refusals, the good file still imports" \
    cli token import "$SB/h2.pskc" --key-file "$SB/h.hex"
echo "1..$TAPN"

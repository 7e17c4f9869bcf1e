#!/bin/sh
# token import of PSKC files that shinkin-otp did not write: python-pskc
# (Debian's python3-pskc, an independent RFC 6030 implementation) writes
# them at test time with fresh random secrets and keys (tests/tools/
# pskc_write.py): plain, under a pre-shared key with its MAC, under a
# PBKDF2 key (its PBKDF2-params in the XML Encryption 1.1 namespace, with
# unqualified children), each with a TOTP, an HOTP (counter 7) and an
# HMAC-SHA256 8-digit token; oath-toolkit's pskctool (libpskc) signs one
# and reads the secrets back, and token import --signer checks that
# signature against the vendor's certificate (without --signer the file
# imports and stderr says it was NOT checked); xmlsec1's tool signs one
# with rsa-sha256 (accepted) and one with rsa-sha512 (refused). Every
# token must then give oathtool's codes. Hostile variants (another
# signer, a changed secret or serial, no signature, signature wrapping,
# external References, a bad MAC, a wrong key, a wrong passphrase, a
# serial twice) are each refused with nothing imported.
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

# -- signed by pskctool (libpskc, xmlsec): rsa-sha1 over a sha1 digest,
#    exclusive C14N, one Reference without URI (the whole file). With
#    --signer the signature is checked against the pinned certificate;
#    every way of breaking it is refused with nothing imported; without
#    --signer the file imports and stderr says it was NOT checked --
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$SB/sign.key" \
    -out "$SB/sign.crt" -days 2 -subj /CN=test-vendor >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$SB/other.key" \
    -out "$SB/other.crt" -days 2 -subj /CN=test-vendor >/dev/null 2>&1
check "python-pskc writes a fourth file" $PY "$W" signed "$SB/u.pskc" "$SB/signed.env"
check "pskctool signs it" sh -c 'pskctool --sign --sign-key "$1" --sign-crt "$2" "$3" >"$4"' \
    sh "$SB/sign.key" "$SB/sign.crt" "$SB/u.pskc" "$SB/signed.pskc"
check "pskctool verifies its signature" pskctool --verify --verify-crt "$SB/sign.crt" "$SB/signed.pskc"
check "pskctool signs with rsa-sha1 (it has no option for another method)" \
    contains "$SB/signed.pskc" 'SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"'
check "... over a sha1 digest, exclusive C14N, one Reference without URI" sh -c '
    grep -qF "DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"" "$1" &&
    grep -qF "CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"" "$1" &&
    test "$(grep -c "<Reference>" "$1")" -eq 1' sh "$SB/signed.pskc"
pskctool -i "$SB/signed.pskc" 2>/dev/null | sed -n 's/.*Key Secret (base64): //p' >"$SB/signed.b64"
. "$SB/signed.env"
check "pskctool reads the same secrets python-pskc wrote" test \
    "$(base64 -d "$SB/signed.b64" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = \
    "$(printf %s "$SIGNED_TOTP$SIGNED_HOTP$SIGNED_SHA256")"
snapshot
# sig_refused WHAT FILE CERT TEXT: refused as BAD_INPUT naming TEXT, with
# nothing imported.
sig_refused() {
	refused BAD_INPUT "--signer: $1 is refused" \
	    cli token import "$2" --signer "$3"
	check "... the reason: $4" contains "$ERR" "$4"
	unchanged "$1"
}
sig_refused "another vendor's certificate" "$SB/signed.pskc" "$SB/other.crt" \
    "signature: the signature does not verify with the signer certificate's key"
check "... its audit row says signature=failed" sh -c \
    '"$1" audit | tail -n 1 | grep -q "token.import reject BAD_INPUT.*pskc, signature=failed: signature: the signature does not verify"' \
    sh "$CLI"
check "... and --json says \"signature\":\"failed\"" sh -c \
    '"$1" --json token import "$2" --signer "$3" >"$4"; [ $? -eq 1 ]' \
    sh "$CLI" "$SB/signed.pskc" "$SB/other.crt" "$SB/failed.json"
check "... (the object)" contains "$SB/failed.json" '"signature":"failed"'
check "pskctool signs with the other key, embedding the other certificate" \
    sh -c 'pskctool --sign --sign-key "$1" --sign-crt "$2" "$3" >"$4"' \
    sh "$SB/other.key" "$SB/other.crt" "$SB/u.pskc" "$SB/other.pskc"
sig_refused "a file signed by another key (its own certificate inside)" \
    "$SB/other.pskc" "$SB/sign.crt" \
    "signature: the signature does not verify with the signer certificate's key"
# A signer key too short to stand (RSA 1024, which can be factored):
# refused, whatever it signed. Once imported.
openssl req -x509 -newkey rsa:1024 -nodes -keyout "$SB/weak.key" \
    -out "$SB/weak.crt" -days 2 -subj /CN=test-vendor >/dev/null 2>&1
check "pskctool signs with a 1024-bit RSA key" \
    sh -c 'pskctool --sign --sign-key "$1" --sign-crt "$2" "$3" >"$4"' \
    sh "$SB/weak.key" "$SB/weak.crt" "$SB/u.pskc" "$SB/weak.pskc"
check "pskctool verifies it" pskctool --verify --verify-crt "$SB/weak.crt" "$SB/weak.pskc"
sig_refused "a 1024-bit RSA signer key" "$SB/weak.pskc" "$SB/weak.crt" \
    "signature: the signer certificate's RSA key is 1024 bits: 2048 at least"
# One base64 character of the first secret, one character of a serial.
awk '/<PlainValue>/ && !done {
	i = index($0, "<PlainValue>") + 12
	$0 = substr($0, 1, i - 1) (substr($0, i, 1) == "A" ? "B" : "A") substr($0, i + 1)
	done = 1
} { print }' "$SB/signed.pskc" >"$SB/sig-secret.pskc"
check "the secret was changed" test -n "$(cmp "$SB/signed.pskc" "$SB/sig-secret.pskc")"
sig_refused "a secret changed after signing" "$SB/sig-secret.pskc" "$SB/sign.crt" \
    "signature: digest mismatch: the file was changed after it was signed"
sed 's/>PW-SIGNED-HOTP</>PW-SIGNED-HOTQ</' "$SB/signed.pskc" >"$SB/sig-serial.pskc"
sig_refused "a serial changed after signing" "$SB/sig-serial.pskc" "$SB/sign.crt" \
    "signature: digest mismatch"
perl -0pe 's/<Signature .*<\/Signature>//s' "$SB/signed.pskc" >"$SB/sig-none.pskc"
check "the signature was removed" sh -c '! grep -q Signature "$1"' sh "$SB/sig-none.pskc"
sig_refused "the signature removed" "$SB/sig-none.pskc" "$SB/sign.crt" \
    "signature: the file is not signed (no ds:Signature)"
sig_refused "an unsigned file" "$SB/u.pskc" "$SB/sign.crt" \
    "signature: the file is not signed (no ds:Signature)"
# Signature wrapping: a package added beside the signed ones, moved after
# the signature, or a Reference to one part only.
perl -0pe 'm/(<KeyPackage>.*?<\/KeyPackage>)/s; my $k = $1;
    $k =~ s/PW-SIGNED-TOTP/PW-WRAP/g; s/<Signature /$k<Signature /' \
    "$SB/signed.pskc" >"$SB/sig-added.pskc"
check "a fourth package was added inside the signed container" \
    test "$(grep -o '<KeyPackage>' "$SB/sig-added.pskc" | wc -l)" -eq 4
sig_refused "a package added beside the signed ones" "$SB/sig-added.pskc" "$SB/sign.crt" \
    "signature: digest mismatch"
perl -0pe 's/(<KeyPackage>.*?<\/KeyPackage>)(.*<\/Signature>)/$2$1/s' \
    "$SB/signed.pskc" >"$SB/sig-moved.pskc"
sig_refused "a package moved after the signature" "$SB/sig-moved.pskc" "$SB/sign.crt" \
    "signature: the ds:Signature is not the last child of KeyContainer"
sed 's/<Reference>/<Reference URI="#k-PW-SIGNED-TOTP">/' "$SB/signed.pskc" >"$SB/sig-part.pskc"
sig_refused "a Reference to one element (URI=#id)" "$SB/sig-part.pskc" "$SB/sign.crt" \
    "signature: the Reference has URI '#k-PW-SIGNED-TOTP', not the whole file"
sed 's/<Reference>/<Reference xmlns:w="urn:x" w:URI="#k-PW-SIGNED-TOTP">/' \
    "$SB/signed.pskc" >"$SB/sig-part2.pskc"
sig_refused "a Reference to one element, its URI prefixed" "$SB/sig-part2.pskc" "$SB/sign.crt" \
    "signature: the Reference has URI '#k-PW-SIGNED-TOTP', not the whole file"
perl -0pe 's/(<Signature .*<\/Signature>)/$1$1/s' "$SB/signed.pskc" >"$SB/sig-two.pskc"
sig_refused "two signatures" "$SB/sig-two.pskc" "$SB/sign.crt" \
    "signature: 2 ds:Signature elements: exactly one is accepted"
# Hostile References: nothing is fetched. A listener on 127.0.0.1 records
# any connection; file:// names a file that must not be opened either.
$PY -c 'import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
s.settimeout(20)
try:
    c, _ = s.accept(); open(sys.argv[1], "w").write("connected\n")
except Exception:
    pass' "$SB/fetched" >"$SB/port" &
LPID=$!
n=0
while [ ! -s "$SB/port" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n + 1)); done
PORT=$(cat "$SB/port")
sed "s|<Reference>|<Reference URI=\"http://127.0.0.1:$PORT/x\">|" "$SB/signed.pskc" >"$SB/sig-http.pskc"
sig_refused "a Reference to an http: URL" "$SB/sig-http.pskc" "$SB/sign.crt" \
    "signature: the Reference has URI 'http://127.0.0.1:$PORT/x', not the whole file"
# A Reference without its DigestMethod: named as '' (the old code
# printed a quote it had never made, whatever its stack held).
sed 's|<DigestMethod [^>]*/>||' "$SB/signed.pskc" >"$SB/sig-nodm.pskc"
sig_refused "a Reference without its DigestMethod" "$SB/sig-nodm.pskc" "$SB/sign.crt" \
    "signature: digest method '' is not accepted (sha1 or sha256)"
sed 's|<Reference>|<Reference URI="file:///etc/passwd">|' "$SB/signed.pskc" >"$SB/sig-file.pskc"
sig_refused "a Reference to file:///etc/passwd" "$SB/sig-file.pskc" "$SB/sign.crt" \
    "signature: the Reference has URI 'file:///etc/passwd', not the whole file"
$PY -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()' \
    "$PORT" 2>/dev/null
wait "$LPID"
check "the listener saw only the test's own connection" test "$(cat "$SB/fetched" 2>/dev/null)" = connected
# signer_refused WHAT CERT TEXT: the signer file itself is refused (exit
# 2) before anything else is read, in one line naming it and what it
# holds, never a line of the private key; nothing imported.
signer_refused() {
	check_rc 2 "--signer: $1 is refused" \
	    cli token import "$SB/signed.pskc" --signer "$2" --passphrase-stdin
	check "... in one line naming the file: $3" test \
	    "$(cat "$ERR")" = "shinkin-otp: token import $SB/signed.pskc: $2: $3"
	check "... quoting no line of the key" sh -c \
	    '! grep -v -e "^-----" "$1" | grep -qF -f - "$2"' sh "$SB/sign.key" "$ERR"
	unchanged "$1"
}
printf 'not a certificate\n' >"$SB/bad.crt"
signer_refused "a signer file that is not PEM" "$SB/bad.crt" \
    "holds no PEM certificate"
cat "$SB/sign.crt" "$SB/other.crt" >"$SB/both.crt"
signer_refused "a signer file with two certificates" "$SB/both.crt" \
    "holds more than one certificate: give the vendor's signing certificate alone"
# A private key handed over with the certificate (OpenSSL's PEM reader
# skips it, so the old code took the file): refused, wherever it stands.
cat "$SB/sign.crt" "$SB/sign.key" >"$SB/with-key.crt"
signer_refused "the vendor's certificate with its private key after it" \
    "$SB/with-key.crt" "holds something besides one certificate (a PEM block 'PRIVATE KEY')"
cat "$SB/sign.key" "$SB/sign.crt" >"$SB/key-first.crt"
signer_refused "the private key before the certificate" \
    "$SB/key-first.crt" "holds something besides one certificate (a PEM block 'PRIVATE KEY')"
openssl rsa -traditional -in "$SB/sign.key" -out "$SB/sign-rsa.key" 2>/dev/null
cat "$SB/sign.crt" "$SB/sign-rsa.key" >"$SB/with-rsakey.crt"
signer_refused "a traditional RSA private key beside it" \
    "$SB/with-rsakey.crt" "holds something besides one certificate (a PEM block 'RSA PRIVATE KEY')"
# Text around the certificate, such as the dump openssl x509 -text puts
# before it: refused (nothing ties what it says to the key pinned), with
# the command that writes the certificate alone; that command's output
# is then taken.
FIX="write the certificate alone with: openssl x509 -in FILE -out NEWFILE"
{ cat "$SB/sign.crt"; echo "vendor support: 0120-000-000"; } >"$SB/trailing.crt"
signer_refused "text after the certificate" "$SB/trailing.crt" \
    "holds text after the certificate: $FIX"
openssl x509 -in "$SB/sign.crt" -text >"$SB/text.crt"
check "openssl x509 -text writes its dump before the PEM block" \
    sh -c 'head -n 1 "$1" | grep -qx "Certificate:"' sh "$SB/text.crt"
signer_refused "openssl x509 -text output (its dump before the PEM)" "$SB/text.crt" \
    "holds text before the certificate (as openssl x509 -text writes it): $FIX"
check "the fix the refusal names: openssl x509 -in FILE -out NEWFILE" \
    openssl x509 -in "$SB/text.crt" -out "$SB/text-fixed.crt"
check "... gives a signer file that is taken" \
    cli token import "$SB/signed.pskc" --signer "$SB/text-fixed.crt" --dry-run
check "... (dry run, three tokens, signature checked)" \
    contains "$OUT" "dry run: 3 tokens would be imported"
# TRUSTED CERTIFICATE carries OpenSSL trust settings the pin would not
# honour: refused with the same fix, which drops them.
openssl x509 -in "$SB/sign.crt" -trustout -addtrust emailProtection \
    -out "$SB/trusted.crt"
check "openssl x509 -trustout writes a TRUSTED CERTIFICATE block" \
    contains "$SB/trusted.crt" "-----BEGIN TRUSTED CERTIFICATE-----"
signer_refused "a TRUSTED CERTIFICATE" "$SB/trusted.crt" \
    "holds a TRUSTED CERTIFICATE (OpenSSL trust settings with it): $FIX"
check "openssl x509 -in FILE -out NEWFILE drops the trust settings" \
    openssl x509 -in "$SB/trusted.crt" -out "$SB/trusted-fixed.crt"
check "... and NEWFILE is a plain CERTIFICATE block" \
    contains "$SB/trusted-fixed.crt" "-----BEGIN CERTIFICATE-----"
check "... which is taken" \
    cli token import "$SB/signed.pskc" --signer "$SB/trusted-fixed.crt" --dry-run
# The legacy label X509 CERTIFICATE, which OpenSSL's PEM reader takes as
# a certificate: the signature is checked against its key, so another
# vendor's certificate under that label is refused, and a key beside it
# is refused as beside any certificate.
sed 's/^-----\(BEGIN\|END\) CERTIFICATE-----$/-----\1 X509 CERTIFICATE-----/' \
    "$SB/sign.crt" >"$SB/sign-x509.crt"
sed 's/^-----\(BEGIN\|END\) CERTIFICATE-----$/-----\1 X509 CERTIFICATE-----/' \
    "$SB/other.crt" >"$SB/other-x509.crt"
check "the vendor's certificate under the label X509 CERTIFICATE" \
    contains "$SB/sign-x509.crt" "-----BEGIN X509 CERTIFICATE-----"
check "... is read by openssl as the same certificate" test \
    "$(openssl x509 -in "$SB/sign-x509.crt" -noout -fingerprint -sha256)" = \
    "$(openssl x509 -in "$SB/sign.crt" -noout -fingerprint -sha256)"
check "... and taken as the signer" \
    cli token import "$SB/signed.pskc" --signer "$SB/sign-x509.crt" --dry-run
check "... (dry run, three tokens)" contains "$OUT" "dry run: 3 tokens would be imported"
check "... the signature checked (stderr empty)" test ! -s "$ERR"
sig_refused "another vendor's certificate under the label X509 CERTIFICATE" \
    "$SB/signed.pskc" "$SB/other-x509.crt" \
    "signature: the signature does not verify with the signer certificate's key"
cat "$SB/sign-x509.crt" "$SB/sign.key" >"$SB/x509-with-key.crt"
signer_refused "an X509 CERTIFICATE with its private key after it" \
    "$SB/x509-with-key.crt" "holds something besides one certificate (a PEM block 'PRIVATE KEY')"
# The shape of one certificate, yet no certificate inside: the core's
# own refusal, audited.
printf -- '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n' \
    >"$SB/junk.crt"
sig_refused "a CERTIFICATE block that holds no certificate" "$SB/signed.pskc" "$SB/junk.crt" \
    "signature: the signer certificate is not a PEM X.509 certificate"
# Blanks around the one block are fine, CRLF line ends too.
{ printf '\n  \n'; sed 's/$/\r/' "$SB/sign.crt"; printf '\r\n\n'; } >"$SB/blanks.crt"
check "a signer file with blank lines and CRLF around the certificate is taken" \
    cli token import "$SB/signed.pskc" --signer "$SB/blanks.crt" --dry-run
check "... (dry run, three tokens)" contains "$OUT" "dry run: 3 tokens would be imported"
check_rc 2 "--signer twice is a usage error" \
    cli token import "$SB/signed.pskc" --signer "$SB/sign.crt" --signer "$SB/other.crt"
check "... naming the option" contains "$ERR" "--signer given twice"
check_rc 2 "--signer with a CSV file is a usage error" \
    cli token import "$SB/signed.pskc" --format csv --signer "$SB/sign.crt"
check "... saying why" contains "$ERR" "a CSV file carries no signature"
unchanged "usage errors"
check "import: the signed file with --signer and the vendor's certificate" \
    cli token import "$SB/signed.pskc" --signer "$SB/sign.crt"
check "three tokens" contains "$OUT" "imported 3 tokens"
check "stderr is empty: the signature was checked" test ! -s "$ERR"
works signed SIGNED
# rsa-sha256 over sha256, URI="" and a prefixed ds:Signature, as
# xmlsec1's own tool signs a template: accepted; rsa-sha512: refused.
check "xmlsec1 is installed (scripts/deps.sh)" sh -c 'command -v xmlsec1 >/dev/null'
# sig_template SM DM FILE: FILE with an enveloped signature template.
sig_template() {
	_t='<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
	_t=$_t'<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
	_t=$_t'<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#'$1'"/>'
	_t=$_t'<ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm='
	_t=$_t'"http://www.w3.org/2000/09/xmldsig#enveloped-signature"/></ds:Transforms>'
	_t=$_t'<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#'$2'"/>'
	_t=$_t'<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>'
	sed "s|</pskc:KeyContainer>|$_t</pskc:KeyContainer>|" "$3"
}
# Each file its own seeds: a seed a stored token holds is refused under
# another serial (a file imported again with its serials renamed).
$PY "$W" s256 "$SB/s256.pskc" "$SB/s256.env"
sig_template rsa-sha256 sha256 "$SB/s256.pskc" >"$SB/s256.tmpl"
check "xmlsec1 signs a file with rsa-sha256 over sha256" \
    xmlsec1 --sign --privkey-pem "$SB/sign.key" --output "$SB/s256-signed.pskc" "$SB/s256.tmpl"
check "import: rsa-sha256 with --signer" \
    cli token import "$SB/s256-signed.pskc" --signer "$SB/sign.crt"
check "three tokens" contains "$OUT" "imported 3 tokens"
works s256 S256
sed 's/PW-S256-/PW-S512-/g' "$SB/s256.pskc" >"$SB/s512.pskc"
sig_template rsa-sha512 sha512 "$SB/s512.pskc" >"$SB/s512.tmpl"
check "xmlsec1 signs a file with rsa-sha512 over sha512" \
    xmlsec1 --sign --privkey-pem "$SB/sign.key" --output "$SB/s512-signed.pskc" "$SB/s512.tmpl"
snapshot
sig_refused "rsa-sha512 (not on the list)" "$SB/s512-signed.pskc" "$SB/sign.crt" \
    "signature: signature method 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512' is not accepted"
$PY "$W" unchk "$SB/u2.pskc" "$SB/unchk.env"
check "pskctool signs a fifth file" sh -c 'pskctool --sign --sign-key "$1" --sign-crt "$2" "$3" >"$4"' \
    sh "$SB/sign.key" "$SB/sign.crt" "$SB/u2.pskc" "$SB/unchk.pskc"
check "an unsigned file without --signer: no such line" \
    cli token import "$SB/u2.pskc" --dry-run
check "... stderr is empty" test ! -s "$ERR"
check "import: a signed file without --signer still imports" \
    cli token import "$SB/unchk.pskc"
check "three tokens" contains "$OUT" "imported 3 tokens"
check "... and stderr says, in one line, that the signature was NOT checked" sh -c '
    test "$(wc -l <"$1")" -eq 1 &&
    grep -qxF "shinkin-otp: token import $2: its signature was NOT checked (--signer CERT checks it)" "$1"' \
    sh "$ERR" "$SB/unchk.pskc"
works unchk UNCHK
$PY "$W" j "$SB/j.pskc" "$SB/j.env"
pskctool --sign --sign-key "$SB/sign.key" --sign-crt "$SB/sign.crt" "$SB/j.pskc" >"$SB/j-signed.pskc"
check "--json, unsigned" cli --json token import "$SB/j.pskc" --dry-run
check "... says signature none" contains "$OUT" '"signature":"none"'
check "--json, signed, no --signer" cli --json token import "$SB/j-signed.pskc" --dry-run
check "... says signature unchecked" contains "$OUT" '"signature":"unchecked"'
check "--json, signed, --signer" cli --json token import "$SB/j-signed.pskc" --dry-run --signer "$SB/sign.crt"
check "... says signature verified" contains "$OUT" '"signature":"verified"'
# [migration] pskc_signed = yes: the policy, not the operator's memory,
# wants --signer; without it even a signed file is refused, audited.
sed 's/^pskc_signed = no$/pskc_signed = yes/' "$CONF" >"$SB/signed-only.conf"
check "the policy says pskc_signed = yes" grep -qx "pskc_signed = yes" "$SB/signed-only.conf"
refused BAD_INPUT "pskc_signed = yes: a signed file without --signer is refused" \
    cli --config "$SB/signed-only.conf" token import "$SB/j-signed.pskc" --dry-run
check "... saying the policy wants --signer" contains "$ERR" \
    "the policy takes only signed PSKC files ([migration] pskc_signed = yes): give the vendor's certificate (--signer)"
check "... audited" sh -c '"$1" audit | tail -n 1 | grep -q "token.import reject BAD_INPUT.*pskc_signed = yes"' sh "$CLI"
check "pskc_signed = yes: with --signer it is taken" \
    cli --config "$SB/signed-only.conf" token import "$SB/j-signed.pskc" --dry-run --signer "$SB/sign.crt"
# Imported once: a second import of either is refused (the serials
# exist), and its row says whether the signature was checked as well.
refused EXISTS "the checked file again, with --signer: refused" \
    cli token import "$SB/signed.pskc" --signer "$SB/sign.crt"
refused EXISTS "the unchecked file again, without --signer: refused" \
    cli token import "$SB/unchk.pskc"
check "audit" cli audit
check "audit: the checked file's refusal says signature=verified" \
    grep -qF "detail=pskc, signature=verified: entry 1: serial 'PW-SIGNED-TOTP'" "$OUT"
check "audit: the unchecked file's refusal says signature=unchecked" \
    grep -qF "detail=pskc, signature=unchecked: entry 1: serial 'PW-UNCHK-TOTP'" "$OUT"
check "audit: the checked import's rows say signature=verified" \
    contains "$OUT" "serial=PW-SIGNED-TOTP context=- detail=pskc, signature=verified"
check "audit: the unchecked import's rows say signature=unchecked" \
    contains "$OUT" "serial=PW-UNCHK-TOTP context=- detail=pskc, signature=unchecked"
check "audit: the refusals name the signature" \
    contains "$OUT" "detail=pskc, signature=failed: signature: digest mismatch"

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

#!/bin/sh
# token import: PSKC (RFC 6030) and CSV seed files through the admin tool.
# Imported tokens must bind with oathtool's code for the secret we know is
# in the file; every refused file must leave the token list as it was.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
D=$TOP/tests/data/pskc
. "$D/secrets.env"
RFC_SECRET=3132333435363738393031323334353637383930
fresh_step 10

# The key file must be private, as the master key is.
cp "$D/psk.hex" "$SB/psk.hex"
chmod 600 "$SB/psk.hex"
KEY=$SB/psk.hex

# hexcode ALG DIGITS PERIOD HEX: oathtool's current code for a hex secret.
hexcode() { oathtool --totp="$1" -d "$2" -s "$3s" --now "@$(date +%s)" "$4"; }

# unchanged WHAT: the token list is what it was at the last snapshot.
snapshot() { "$CLI" token list >"$SB/list.before"; }
unchanged() {
	"$CLI" token list >"$SB/list.after"
	check "$1: nothing imported" cmp -s "$SB/list.before" "$SB/list.after"
}

# refused_at ENTRY REASON what ARGS...: as refused, naming the entry.
refused_at() {
	_e=$1
	shift
	refused "$@"
	check "$2: names entry $_e" contains "$ERR" "refused: entry $_e: "
}
# seed_held LEAD NEW OLD: the refusal (in $ERR) leads with LEAD and names
# the new serial and the stored token that holds its seed.
seed_held() {
	check "... leads with $1" contains "$ERR" "$1"
	check "... names $2 and $3, the token holding its seed" contains "$ERR" \
	    "serial '$2' has the same secret as token '$3', already in the store: each token needs a seed of its own"
}

# refused_line FILE:LINE REASON what ARGS...: as refused, and the line
# leads with the file and line, as every file:line error does.
refused_line() {
	_w=$1
	shift
	refused "$@"
	check "$2: leads with $_w" contains "$ERR" "shinkin-otp: $_w: refused: "
}

check "RFC 6030 figure 7 (PBKDF2), dry run" \
    clin qwerty token import "$D/rfc6030-figure7-totp.pskc" --passphrase-stdin --dry-run
check "dry run says what it would do" contains "$OUT" "dry run: 1 token would be imported"
check "dry run stores nothing" sh -c "! '$CLI' token show 987654321 >/dev/null 2>&1"

check "RFC 6030 figure 2 (plain), made TOTP" cli token import "$D/rfc6030-figure2-totp.pskc"
check "prints the count" contains "$OUT" "imported 1 token"
check "contract for the RFC token" clin pw-R1 contract add R1
check "the RFC token binds with oathtool's code" \
    cli contract bind R1 --serial 987654321 --otp "$(hexcode sha1 8 30 "$RFC_SECRET")"

snapshot
refused_at 1 EXISTS "figure 6 holds a serial already in the store" \
    cli token import "$D/rfc6030-figure6-totp.pskc" --key-file "$KEY"
unchanged "serial already in the store"

check "pre-shared key, three tokens" cli token import "$D/gen-psk.pskc" --key-file "$KEY"
check "prints three" contains "$OUT" "imported 3 tokens"
check "contract P2" clin pw-P2 contract add P2
check "sha256/8/60 token binds with oathtool's code" \
    cli contract bind P2 --serial GEN-PSK-2 --otp "$(hexcode sha256 8 60 "$S2")"
check "token show: sha256" cli token show GEN-PSK-2
check "token show: algorithm" contains "$OUT" "algorithm: sha256"

# A seed a token in the store holds, under a new serial: GEN-PBKDF2-1's
# is GEN-PSK-1's (a vendor's batch re-issued under new serials).
snapshot
refused_at 1 BAD_INPUT "PSKC: a seed already in the store, under a new serial" \
    clin "$(cat "$D/passphrase.txt")" token import "$D/gen-pbkdf2.pskc" --passphrase-stdin
seed_held "token import $D/gen-pbkdf2.pskc: refused: entry 1: " GEN-PBKDF2-1 GEN-PSK-1
check "... the seed is not shown" sh -c '! grep -qi "$1" "$2"' sh "$S1" "$ERR"
unchanged "a PSKC seed already in the store"
refused_at 1 BAD_INPUT "... a dry run says the same" \
    clin "$(cat "$D/passphrase.txt")" token import "$D/gen-pbkdf2.pskc" --passphrase-stdin --dry-run
seed_held "refused: entry 1: " GEN-PBKDF2-1 GEN-PSK-1
forget GEN-PSK-1
check "PBKDF2 with the passphrase on stdin, once GEN-PSK-1 is gone" \
    clin "$(cat "$D/passphrase.txt")" token import "$D/gen-pbkdf2.pskc" --passphrase-stdin
check "contract K1" clin pw-K1 contract add K1
check "the PBKDF2 token binds with oathtool's code" \
    cli contract bind K1 --serial GEN-PBKDF2-2 --otp "$(hexcode sha1 6 30 "$S4")"

snapshot
refused_at 2 BAD_INPUT "a bad MAC is refused" \
    cli token import "$D/gen-psk-badmac.pskc" --key-file "$KEY"
check "the reason says MAC" contains "$ERR" "MAC mismatch"
unchanged "bad MAC"

printf '00112233445566778899aabbccddeeff\n' >"$SB/wrong.hex"
chmod 600 "$SB/wrong.hex"
refused BAD_INPUT "a wrong key is refused" \
    cli token import "$D/rfc6030-figure6-totp.pskc" --key-file "$SB/wrong.hex"
check "the reason says wrong key" contains "$ERR" "wrong key"
refused BAD_INPUT "a wrong passphrase is refused" \
    clin qwertz token import "$D/rfc6030-figure7-totp.pskc" --passphrase-stdin
refused BAD_INPUT "an encrypted file without a key is refused" \
    cli token import "$D/gen-psk.pskc"
# A key given for a file in clear: not the file the vendor encrypted and
# MACed (once imported unprotected).
refused BAD_INPUT "--key-file with a file in clear is refused" \
    cli token import "$D/gen-hotp-entry3.pskc" --key-file "$KEY"
check "the reason says the file is not encrypted" contains "$ERR" \
    "a pre-shared key was given, but the file is not encrypted (no EncryptionKey)"
unchanged "a key given for a file in clear"
refused BAD_INPUT "a truncated file is refused" \
    cli token import "$D/gen-psk-truncated.pskc" --key-file "$KEY"
check "the reason says XML" contains "$ERR" "not well-formed XML"
refused_at 3 EXISTS "a serial twice in the file is refused" \
    cli token import "$D/gen-dup.pskc"
refused_at 1 BAD_INPUT "RFC 6030 figure 4 (no secret in the file) is refused" \
    cli token import "$D/rfc6030-figure4.pskc"
check "the reason names the vendor's derivation" contains "$ERR" "KeyReference"
refused_at 1 BAD_INPUT "RFC 6030 figure 2 (a 4-byte secret) is refused" \
    cli token import "$D/rfc6030-figure2.pskc"
check "the reason names the secret's length" contains "$ERR" "secret is 4 bytes"
unchanged "every refused PSKC file"

chmod 644 "$SB/wrong.hex"
check_rc 2 "a key file open to others is an error" \
    cli token import "$D/rfc6030-figure6-totp.pskc" --key-file "$SB/wrong.hex"
check_rc 2 "an unknown extension needs --format" cli token import "$D/secrets.env"
check_rc 2 "a CSV file takes no key" cli token import "$D/good.csv" --key-file "$KEY"
check_rc 2 "key file and passphrase exclude each other" \
    cli token import "$D/gen-psk.pskc" --key-file "$KEY" --passphrase-stdin

snapshot
refused_line "$D/good.csv:2" BAD_INPUT "CSV: a seed already in the store, under a new serial" \
    cli token import "$D/good.csv"
seed_held "shinkin-otp: $D/good.csv:2: refused: " CSV-1 GEN-PBKDF2-1
check "... the seed is not shown" sh -c '! grep -qi "HEULIW3A2LAAIYE553NEHZCUF4LLBBYF" "$1"' sh "$ERR"
unchanged "a CSV seed already in the store"
forget GEN-PBKDF2-1 GEN-PSK-2 GEN-PSK-3
check "CSV: three tokens" cli token import "$D/good.csv"
check "CSV: count" contains "$OUT" "imported 3 tokens"
check "CSV: kind column" cli token show CSV-3
check "CSV: pc-legacy kind" contains "$OUT" "kind: pc-legacy"
check "contract V2" clin pw-V2 contract add V2
check "the CSV sha256/8/60 token binds with oathtool's code" \
    cli contract bind V2 --serial CSV-2 --otp "$(hexcode sha256 8 60 "$S2")"
snapshot
refused_line "$D/dup.csv:3" EXISTS "CSV: a serial twice in the file" \
    cli token import "$D/dup.csv"
check "  and where it was first: line 1" contains "$ERR" \
    "duplicate serial 'CSV-1' (line 1 has it too) (EXISTS)"
refused_line "$D/short.csv:3" BAD_INPUT "CSV: a 10-byte secret" \
    cli token import "$D/short.csv"
# Hex digits only, padded: a secret is the same padded or not, and was
# taken padded, then unreadable in the URI that token show --uri wrote
# (unpadded), which read as a seed in hex.
printf '# serial,base32secret\nCSV-HEXPAD,EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE======\n' >"$SB/hexpad.csv"
refused_line "$SB/hexpad.csv:2" BAD_INPUT "CSV: a padded secret of hex digits only" \
    cli token import "$SB/hexpad.csv"
check "  as a seed in hex" contains "$ERR" "hex digits only"
refused_line "$D/good.csv:2" EXISTS "CSV: the same file again" \
    cli token import "$D/good.csv"
cp "$D/good.csv" "$SB/seeds.txt"
# The path as it was given on the command line, relative too.
in_sb() { (cd "$SB" && "$@"); }
refused_line "seeds.txt:2" EXISTS "CSV by --format, a relative path" \
    in_sb cli token import seeds.txt --format csv
unchanged "every refused CSV file"

# A spreadsheet's "CSV UTF-8" starts with a byte order mark.
printf '\357\273\277# serial,base32secret\nCSV-BOM,%s\n' "$(secret)" >"$SB/bom.csv"
check "CSV with a UTF-8 byte order mark: the header stays a comment" \
    cli token import "$SB/bom.csv"
check "CSV with a BOM: the token, its serial without the mark" cli token show CSV-BOM

check_rc 1 "--json refusal" cli --json token import "$D/dup.csv"
check "--json: entry and reason" contains "$OUT" '"entry":3,"reason":"EXISTS"'
check "--json: the refusal names the command and the file" contains "$OUT" \
    '{"verdict":"reject","command":"token import","file":"'"$D/dup.csv"'",'
check "audit has the imports" cli audit
check "audit: one row per imported token" contains "$OUT" "token.import accept ACCEPTED contract=- serial=GEN-PSK-3"
check "audit: the refusals" contains "$OUT" "detail=pskc: entry 2: Secret: MAC mismatch"
check "audit: a CSV refusal names its line" contains "$OUT" \
    "detail=csv: line 3: duplicate serial 'CSV-1' (line 1 has it too)"
check "no secret in the audit" sh -c "! grep -qi -e '$S1' -e '$S2' '$OUT'"
check "audit: a refusal row carries the refusal's reason (EXISTS)" contains "$OUT" \
    "token.import reject EXISTS contract=- serial=- "

# -- an import that an error stops, not a refusal of its input --
# (err.pskc below holds the seeds of CSV-1, CSV-2, CSV-3 and GEN-PBKDF2-2.)
forget CSV-1 CSV-2 CSV-3 GEN-PBKDF2-2
E1=$(secret)
E2=$(secret)
printf '# serial,base32secret\nERR-1,%s\nERR-2,%s\n' "$E1" "$E2" >"$SB/err.csv"
check "the store fails the insert of ERR-2" \
    store_fail no_tokens tokens INSERT "NEW.serial = 'ERR-2'"
snapshot
check_rc 2 "a store error mid-import: an error, not a refusal" \
    cli token import "$SB/err.csv"
check "... the error leads with the file and line, as a refusal does" contains "$ERR" \
    "shinkin-otp: $SB/err.csv:3: error: serial 'ERR-2': "
check "... and says nothing was imported" contains "$ERR" "; nothing imported ("
unchanged "an import a store error stopped"
cp "$ERR" "$SB/err.err"
check "audit after the store error" cli audit
check "... the import's error row: the pass, the line, the serial, the error" \
    grep -q "token\.import error STORE_UNAVAILABLE contract=- serial=- .*detail=csv: insert pass, line 3, serial 'ERR-2': SOTP_ERR_STORE; nothing imported" "$OUT"
check "... and no secret in the row or the error" \
    sh -c '! grep -qi -e "$1" -e "$2" "$3" "$4"' sh "$E1" "$E2" "$OUT" "$SB/err.err"
# --json: an error is one JSON object on stdout, as a refusal is.
check_rc 2 "--json: a store error mid-import: an error" \
    cli --json token import "$SB/err.csv"
check "--json: ... one line on stdout, one JSON object" \
    sh -c '[ "$(wc -l <"$1")" -eq 1 ] && grep -q "^{.*}\$" "$1"' sh "$OUT"
check "--json: ... verdict error, the command, the file, the entry, the error and its detail" \
    grep -q '^{"verdict":"error","command":"token import","file":"'"$SB"'/err.csv","entry":3,"error":"[^"]*","error_code":-[0-9]*,"detail":"[^"]*serial '"'"'ERR-2'"'"'[^"]*"' "$OUT"
check "--json: ... no secret on stdout" \
    sh -c '! grep -qi -e "$1" -e "$2" "$3"' sh "$E1" "$E2" "$OUT"
check "mend the store" store_mend no_tokens tokens
# PSKC: the entry the store was at, as a PSKC refusal names it.
sed 's/GEN-PLAIN-/ERRP-/' "$D/gen-hotp-entry3.pskc" >"$SB/err.pskc"
check "the store fails the insert of ERRP-3" \
    store_fail no_tokens tokens INSERT "NEW.serial = 'ERRP-3'"
check_rc 2 "PSKC: a store error mid-import: an error" cli token import "$SB/err.pskc"
check_rc 2 "PSKC --json: a store error mid-import: an error" \
    cli --json token import "$SB/err.pskc"
check "PSKC --json: ... one JSON object naming the command, the file and the entry" \
    sh -c '[ "$(wc -l <"$1")" -eq 1 ] && grep -q "^{\"verdict\":\"error\",\"command\":\"token import\",\"file\":\"$2\",\"entry\":3,.*}\$" "$1"' sh "$OUT" "$SB/err.pskc"
check_rc 2 "PSKC: again without --json" cli token import "$SB/err.pskc"
check "... the error names the file, the entry and the serial" contains "$ERR" \
    "shinkin-otp: token import $SB/err.pskc: error: entry 3: serial 'ERRP-3': "
check "... and says nothing was imported" contains "$ERR" "; nothing imported ("
unchanged "a PSKC import a store error stopped"
check "mend the store" store_mend no_tokens tokens
# An error past the entries (the audit chain's head, written as the
# transaction ends, refused): no entry to name, the file still named.
check "the store fails the end of a batch holding ERR-2" \
    store_fail no_head audit_head UPDATE \
    "EXISTS (SELECT 1 FROM tokens WHERE serial = 'ERR-2')"
check_rc 2 "--json: an error after the last entry: an error" \
    cli --json token import "$SB/err.csv"
check "--json: ... one JSON object, the command and the file, no entry of its own" \
    sh -c '[ "$(wc -l <"$1")" -eq 1 ] && grep -q "^{\"verdict\":\"error\",\"command\":\"token import\",\"file\":\"$2\",\"error\":.*}\$" "$1"' sh "$OUT" "$SB/err.csv"
check_rc 2 "an error after the last entry: an error" cli token import "$SB/err.csv"
check "... names the file" contains "$ERR" "shinkin-otp: token import $SB/err.csv: error: csv, insert pass: "
check "... names no line nor serial of its own" sh -c '! grep -q "err.csv:[0-9]\|serial" "$1"' sh "$ERR"
check "... and says nothing was imported" contains "$ERR" "; nothing imported ("
unchanged "an import whose batch end failed"
check "audit after the batch end's error" cli audit
check "... its error row: the pass, no line" \
    grep -q "token\.import error STORE_UNAVAILABLE contract=- serial=- .*detail=csv: insert pass: SOTP_ERR_STORE; nothing imported" "$OUT"
check "mend the store" store_mend no_head audit_head
check "the same file then imports" cli token import "$SB/err.csv"

# -- refusals name what is wrong, never a seed found in the wrong column --
E3=$(secret)
E4=$(secret)
printf 'COL-1,%s,%s\n' "$E3" "$E4" >"$SB/col-alg.csv"
snapshot
refused_line "$SB/col-alg.csv:1" BAD_INPUT "CSV: a seed in the algorithm column" \
    cli token import "$SB/col-alg.csv"
check "... described, not shown" contains "$ERR" \
    "algorithm (32 characters, not shown: it may be a secret in the wrong column) is not sha1, sha256 or sha512"
check "... no seed on standard error" sh -c '! grep -qi -e "$1" -e "$2" "$3"' sh "$E3" "$E4" "$ERR"
printf 'COL-2,%s,sha1,6,30,%s\n' "$E3" "$E4" >"$SB/col-kind.csv"
refused_line "$SB/col-kind.csv:1" BAD_INPUT "CSV: a seed in the kind column" \
    cli token import "$SB/col-kind.csv"
check "... described, not shown" contains "$ERR" \
    "kind (32 characters, not shown: it may be a secret in the wrong column) is not defined in the policy"
check "... no seed on standard error" sh -c '! grep -qi -e "$1" -e "$2" "$3"' sh "$E3" "$E4" "$ERR"
H=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'COL-3,%s,sha1,6,30,%s\n' "$E3" "$H" >"$SB/col-hex.csv"
refused_line "$SB/col-hex.csv:1" BAD_INPUT "CSV: a hex seed in the kind column" \
    cli token import "$SB/col-hex.csv"
check "... described, not shown" contains "$ERR" "kind (32 characters, not shown"
check "... no seed on standard error" sh -c '! grep -qi -e "$1" -e "$2" "$3"' sh "$E3" "$H" "$ERR"
printf 'COL-4,%s,sha257\n' "$E3" >"$SB/col-typo.csv"
refused_line "$SB/col-typo.csv:1" BAD_INPUT "CSV: a typo in the algorithm" \
    cli token import "$SB/col-typo.csv"
check "... the typo is shown" contains "$ERR" "algorithm 'sha257' is not sha1"
printf 'COL-5,%s,sha1,6,30,phone\n' "$E4" >"$SB/col-typo2.csv"
refused_line "$SB/col-typo2.csv:1" BAD_INPUT "CSV: a typo in the kind" \
    cli token import "$SB/col-typo2.csv"
check "... the typo is shown" contains "$ERR" "kind 'phone' is not defined in the policy"
unchanged "seeds in the wrong column"
check "audit after the wrong columns" cli audit
check "... no seed in the audit" sh -c '! grep -qi -e "$1" -e "$2" -e "$3" "$4"' sh "$E3" "$E4" "$H" "$OUT"
# PSKC: a Secret that is not base64 (a seed in base64url) is named, not shown.
sed 's|MTIzNDU2Nzg5MDEyMzQ1Njc4OTA=|MTIzNDU2Nzg5MDEyMzQ1Njc4OTA-_|' \
    "$D/rfc6030-figure2-totp.pskc" >"$SB/b64url.pskc"
refused_at 1 BAD_INPUT "PSKC: a Secret in base64url" cli token import "$SB/b64url.pskc"
check "... the element is named" contains "$ERR" "Secret has neither a base64 PlainValue"
check "audit after the base64url Secret" cli audit
check "... no seed on standard error or in the audit" \
    sh -c '! grep -q "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA" "$1" "$2"' sh "$ERR" "$OUT"

# PSKC: a seed in hex where RFC 6030 wants base64 (entry 2). Hex digits
# are base64 digits too: these 40 once came in as another, 30-byte key,
# and the token's codes never matched. Refused, naming the file, the
# entry and the serial; nothing imported, not even entry 1.
snapshot
refused_at 2 BAD_INPUT "PSKC: a hex seed in a PlainValue" \
    cli token import "$D/hex-plainvalue.pskc"
check "... names the file, the entry and the serial" contains "$ERR" \
    "token import $D/hex-plainvalue.pskc: refused: entry 2: serial 'HEX-2': Secret PlainValue is 40 hex digits"
check "... says PSKC requires base64" contains "$ERR" "where PSKC (RFC 6030) requires base64"
check "... the value is not shown" sh -c '! grep -q "$1" "$2"' sh "$RFC_SECRET" "$ERR"
unchanged "hex seed"
check_rc 1 "... a dry run says the same" cli token import "$D/hex-plainvalue.pskc" --dry-run
check "... entry 2" contains "$ERR" "refused: entry 2: serial 'HEX-2'"
# The fix the refusal names: the same seed in base64 imports, and the
# token's codes (oathtool's, from the hex seed) bind.
# basenc is coreutils' (a fresh Debian root has no xxd); base16 is upper case.
sed "s|$RFC_SECRET|$(printf %s "$RFC_SECRET" | tr a-f A-F | basenc --base16 -d | base64 -w0)|" \
    "$D/hex-plainvalue.pskc" >"$SB/hex-fixed.pskc"
refused_at 2 BAD_INPUT "... fixed, HEX-2's seed is 987654321's" \
    cli token import "$SB/hex-fixed.pskc"
seed_held "refused: entry 2: " HEX-2 987654321
forget 987654321
check "the same seeds in base64 import" cli token import "$SB/hex-fixed.pskc"
check "... both" contains "$OUT" "imported 2 tokens"
check "contract HX" clin pw-HX contract add HX
check "... HEX-2 binds with oathtool's code for the hex seed" \
    cli contract bind HX --serial HEX-2 --otp "$(hexcode sha1 6 30 "$RFC_SECRET")"

# A seed file cut short while it is read (another process writing it
# anew: cp over it, a transfer starting again; the shim truncates it
# between the tool's fstat and its first read) is refused, never
# imported as what was read: the last line's secret, cut, still decoded
# to a shorter key, and that token's codes never matched. A contract
# file is refused the same way. (Under the sanitizers, their runtime
# comes first.)
CUT=$BUILD/tests/cutread.so
if readelf -d "$CLI" | grep -q 'NEEDED.*libasan'; then
	CUT="$(${CC:-cc} -print-file-name=libasan.so) $CUT"
fi
# cut_run FILE BYTES ARGS...: the tool, FILE cut to BYTES at its first read.
cut_run() {
	_p=$1
	_a=$2
	shift 2
	SHIM_CUT_PATH=$_p SHIM_CUT_AT=$_a LD_PRELOAD="$CUT" "$CLI" "$@" \
	    </dev/null >"$OUT" 2>"$ERR"
}
printf 'CUT-1,%s\nCUT-2,%s\nCUT-3,%s\n' "$(secret)" "$(secret)" \
    "$(secret)$(secret)" >"$SB/cut.csv"
cut_at=$(($(wc -c <"$SB/cut.csv") - 20))
snapshot
check_rc 2 "token import of a CSV file cut while it is read is refused" \
    cut_run "$SB/cut.csv" "$cut_at" token import "$SB/cut.csv"
check "... saying it changed while it was read" contains "$ERR" \
    "token import $SB/cut.csv: $SB/cut.csv: changed while it was read"
check "... (the shim did cut it)" test "$(wc -c <"$SB/cut.csv")" -eq "$cut_at"
unchanged "a file cut while it is read"
printf 'contract,pwhash\nC-CUT-1,x\nC-CUT-2,y\n' >"$SB/cut-contracts.csv"
check_rc 2 "contract import of a file cut while it is read is refused" \
    cut_run "$SB/cut-contracts.csv" 20 contract import "$SB/cut-contracts.csv"
check "... saying it changed while it was read" \
    contains "$ERR" "the file changed while it was read"

# -- a seed a token in the store holds, by whichever way it comes in --
A1=$(secret)
check "token add: a token" cli token add SEED-A --secret "$A1"
snapshot
refused BAD_INPUT "token add: its seed under another serial" \
    cli token add SEED-B --secret "$A1"
check "... names the token holding it" contains "$ERR" \
    "the same secret as token 'SEED-A', already in the store: each token needs a seed of its own"
check "... the seed is not shown" sh -c '! grep -q "$1" "$2"' sh "$A1" "$ERR"
unchanged "token add with a seed already in the store"
check "audit after the token add" cli audit
check "... the refusal's row names the token holding the seed" contains "$OUT" \
    "detail=same secret as token 'SEED-A'"
check "... no seed in the audit" sh -c '! grep -q "$1" "$2"' sh "$A1" "$OUT"
B1=$(secret)
B2=$(secret)
printf 'SEED-C,%s\nSEED-D,%s\n' "$B1" "$A1" >"$SB/seed.csv"
refused_line "$SB/seed.csv:2" BAD_INPUT "CSV: line 2's seed is SEED-A's" \
    cli token import "$SB/seed.csv"
seed_held "shinkin-otp: $SB/seed.csv:2: refused: " SEED-D SEED-A
unchanged "a CSV file holding a token add's seed"
printf 'SEED-C,%s\nSEED-D,%s\n' "$B1" "$B2" >"$SB/seed.csv"
check "CSV: seeds of their own import" cli token import "$SB/seed.csv"
check "... both" contains "$OUT" "imported 2 tokens"
check "token add: a seed of its own" cli token add SEED-E --secret "$(secret)"

# A token without a seed fingerprint (a store upgraded to schema version
# 5, before init filled them): the check cannot see that seed, so
# nothing comes in until init has filled them.
check "SEED-C's fingerprint emptied" store_exec \
    "UPDATE tokens SET seed_fp = NULL WHERE serial = 'SEED-C'"
printf 'SEED-F,%s\n' "$(secret)" >"$SB/seed2.csv"
snapshot
check_rc 2 "a token without a fingerprint: the import is an error" \
    cli token import "$SB/seed2.csv"
check "... names the token and init" contains "$ERR" \
    "token 'SEED-C' in the store has no seed fingerprint yet (a store upgraded to schema version 5): run \"shinkin-otp init\" to fill them"
check "... and says nothing was imported" contains "$ERR" "nothing imported"
check_rc 2 "... a dry run too" cli token import "$SB/seed2.csv" --dry-run
check "... names the token" contains "$ERR" "token 'SEED-C' in the store has no seed fingerprint yet"
check_rc 2 "... and token add" cli token add SEED-G --secret "$(secret)"
check "... names the token" contains "$ERR" "token 'SEED-C' in the store has no seed fingerprint yet"
check "... led by the command and serial, as token add's other errors" \
    contains "$ERR" "shinkin-otp: token add SEED-G: error: token 'SEED-C' in the store has no seed fingerprint yet"
unchanged "a store with a token without a fingerprint"
# A store that waits for init is no outage: the import's error row says
# BAD_CONFIG (the upgrade not finished), not STORE_UNAVAILABLE.
check "the audit" cli audit
check "... the failed import's row: BAD_CONFIG" contains "$OUT" \
    "token.import error BAD_CONFIG"
check "... the dry run's too: neither STORE_UNAVAILABLE" \
    test "$(tail -n 2 "$OUT" | grep -c 'token.import error BAD_CONFIG .*SOTP_ERR_STORE; nothing imported')" -eq 2
check "init fills it" cli init
refused BAD_INPUT "... and SEED-C's seed is found again" \
    cli token add SEED-G --secret "$B1"
check "... named" contains "$ERR" "the same secret as token 'SEED-C'"
check "the audit says init filled one" cli audit
check "... one" contains "$OUT" "detail=seed fingerprints=1"

# -- across a key rotation: every token under one version or the other --
check_rc 3 "rotation begins, one token re-sealed" \
    cli key rotate --batch 1 --max-batches 1 --pause 0
snapshot
refused BAD_INPUT "half rotated: SEED-A's seed" \
    cli token add SEED-H --secret "$A1"
check "... named" contains "$ERR" "the same secret as token 'SEED-A'"
refused BAD_INPUT "... SEED-D's" cli token add SEED-H --secret "$B2"
check "... named" contains "$ERR" "the same secret as token 'SEED-D'"
unchanged "half rotated: seeds already in the store"
H1=$(secret)
check "a token added half rotated" cli token add SEED-H --secret "$H1"
check_rc 3 "the rotation to its end (re-sealed, the old version waiting)" \
    cli key rotate --pause 0 --no-wait
# left_old: no token under a version older than the current one.
left_old() {
	store_exec "SELECT count(*) FROM tokens WHERE kv < (SELECT current FROM key_ring)" |
	    tr -d ' ' | grep -qx 0
}
check "... no token left under the old version" left_old
refused BAD_INPUT "rotated: the token added half way" \
    cli token add SEED-I --secret "$H1"
check "... named" contains "$ERR" "the same secret as token 'SEED-H'"
printf 'SEED-I,%s\n' "$A1" >"$SB/seed3.csv"
refused_line "$SB/seed3.csv:1" BAD_INPUT "rotated: SEED-A's seed in a file" \
    cli token import "$SB/seed3.csv"
seed_held "shinkin-otp: $SB/seed3.csv:1: refused: " SEED-I SEED-A

# -- a store from before seed fingerprints (schema version 4) --
# left_empty: no token without a fingerprint.
left_empty() {
	store_exec "SELECT count(*) FROM tokens WHERE seed_fp IS NULL" |
	    tr -d ' ' | grep -qx 0
}
if [ "$STORE_KIND" = postgresql ]; then
	V4="UPDATE schema_version SET version = 4"
else
	V4="UPDATE schema_version SET version = 4; PRAGMA user_version = 4"
fi
check "the store taken back to schema version 4" store_exec \
    "DROP INDEX tokens_seed_fp; DROP INDEX tokens_seed_unfilled;
    ALTER TABLE tokens DROP COLUMN seed_fp; $V4"
check_rc 2 "a version 4 store is refused" cli token add SEED-J --secret "$(secret)"
check "... with what to do" contains "$ERR" 'run "shinkin-otp init"'
check "init upgrades it" cli init
check "... every token has its fingerprint" left_empty
refused BAD_INPUT "an upgraded store: SEED-A's seed under another serial" \
    cli token add SEED-J --secret "$A1"
check "... named" contains "$ERR" "the same secret as token 'SEED-A'"
refused BAD_INPUT "... SEED-H's (added during the rotation)" \
    cli token add SEED-J --secret "$H1"
check "... named" contains "$ERR" "the same secret as token 'SEED-H'"
printf 'SEED-J,%s\n' "$B1" >"$SB/seed4.csv"
refused_line "$SB/seed4.csv:1" BAD_INPUT "... SEED-C's, in a file" \
    cli token import "$SB/seed4.csv"
seed_held "shinkin-otp: $SB/seed4.csv:1: refused: " SEED-J SEED-C
check "... a seed of its own comes in" cli token add SEED-J --secret "$(secret)"
check "init again changes nothing" cli init
check "... audited once, with the count" cli audit
check "... a fill row for each init that filled one (2)" test "$(grep -c 'token.fingerprint accept' "$OUT")" -eq 2
check "... and warns of no shared seed" test ! -s "$ERR"

# -- a seed two tokens held before fingerprints --
# token add refuses a seed held twice, so the test makes such a store as
# an old release could: SHARE-1's fingerprint is hidden (another token's
# put in its place) while SHARE-2 is added with its seed, then emptied
# for init to fill from the seed itself.
S1=$(secret)
check "SHARE-1 added" cli token add SHARE-1 --secret "$S1"
check "... its fingerprint hidden" store_exec \
    "UPDATE tokens SET seed_fp = (SELECT seed_fp FROM tokens WHERE serial = 'SEED-J') WHERE serial = 'SHARE-1'"
check "SHARE-2 added with SHARE-1's seed" cli token add SHARE-2 --secret "$S1"
check "... SHARE-1's fingerprint emptied, as before the upgrade" store_exec \
    "UPDATE tokens SET seed_fp = NULL WHERE serial = 'SHARE-1'"
check "init with a seed held twice does not fail" cli init
check "... warns on stderr, naming both tokens" contains "$ERR" \
    "shinkin-otp: init: warning: tokens 'SHARE-1', 'SHARE-2' hold one seed"
check "... one line" test "$(wc -l <"$ERR")" -eq 1
check "... never the seed" sh -c '! grep -q "$1" "$2"' sh "$S1" "$ERR"
check "... nor SEED-J, whose seed is its own" sh -c '! grep -q SEED-J "$1"' sh "$ERR"
check "... audited" cli audit
check "... a row naming both" contains "$OUT" \
    "token.seed_shared error BAD_INPUT contract=- serial=- context=- detail=tokens 'SHARE-1', 'SHARE-2' hold one seed"
check "... never the seed" sh -c '! grep -q "$1" "$2"' sh "$S1" "$OUT"
check "init again warns again" cli init
check "... naming both" contains "$ERR" "tokens 'SHARE-1', 'SHARE-2' hold one seed"
check "token list --shared-seed" cli token list --shared-seed
check "... SHARE-1 in seed group 1" grep -q "^1	SHARE-1	" "$OUT"
check "... and SHARE-2" grep -q "^1	SHARE-2	" "$OUT"
check "... and no other" test "$(wc -l <"$OUT")" -eq 2
check "... --json too" cli --json token list --shared-seed
check "... two objects, their group named" test "$(grep -c '^{"seed_group":1,"serial":"SHARE-[12]"' "$OUT")" -eq 2

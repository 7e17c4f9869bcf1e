#!/bin/sh
# contract import and [password] legacy_import: password hashes of the
# methods a stolen store gives up fastest (DES and its BSDi form, md5crypt,
# NT). accept, the shipped setting, takes them in (each is replaced at the
# customer's next login under [migration] rehash = yes); refuse refuses
# the whole file, naming each such record with FILE:LINE, its contract ID
# and the method, and imports nothing, not even the file's good records.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
LANG=C
LC_ALL=C
export LANG LC_ALL
mk_sandbox
OUT=$SB/out
ERR=$SB/err

# h SETTING PASSWORD: the crypt(3) hash of PASSWORD under SETTING, by the
# system's libxcrypt (through perl's crypt), as the old system made it.
h() { perl -e 'print crypt($ARGV[1], $ARGV[0])' "$1" "$2"; }
DES=$(h ab pw-L1)
BSDI=$(h _J9..salt pw-L2)
MD5=$(h '$1$saltsalt$' pw-L3)
NT=$(h '$3$' pw-L4)
SHA256=$(h '$5$saltsalt$' pw-L5)
SHA512=$(h '$6$saltsalt$' pw-L6)
YES=$(h '$y$j9T$saltsaltsaltsalt$' pw-L7)
check "hashes: DES" test "${#DES}" -eq 13
check "hashes: BSDi DES" test "${#BSDI}" -eq 20
check "hashes: md5crypt" test "${MD5#\$1\$saltsalt\$}" != "$MD5"
check "hashes: NT" test "${NT#\$3\$\$}" != "$NT"
check "hashes: sha256crypt, sha512crypt, yescrypt" \
    test "${SHA256#\$5\$}${SHA512#\$6\$}${YES#\$y\$}" != "$SHA256$SHA512$YES"

{
	echo "# contract,pwhash,login,card,serial,status"
	echo "L1,$DES"
	echo "L2,$BSDI"
	echo "L3,$MD5,otp,,,active"
	echo "L4,$NT"
	echo "L5,$SHA256"
	echo "L6,$SHA512"
	echo "L7,$YES"
} >"$SB/legacy.csv"
{
	echo "{\"contract\":\"J1\",\"pwhash\":\"$YES\"}"
	echo "{\"contract\":\"J2\",\"pwhash\":\"$MD5\"}"
} >"$SB/legacy.jsonl"

# The same store under legacy_import = refuse.
sed -e '/^legacy_import *=/d' -e 's/^\[password\]$/&\nlegacy_import = refuse/' \
    "$CONF" >"$SB/refuse.conf"
check "a policy that says legacy_import = refuse" \
    grep -qx "legacy_import = refuse" "$SB/refuse.conf"
check "the shipped policy says accept" grep -qx "legacy_import = accept" "$CONF"
RC="--config $SB/refuse.conf"

# refused_line N ID METHOD: the last import named line N, its contract and
# the method.
refused_line() {
	check "line $1 ($2, $3) refused with the file, line, contract and method" \
	    contains "$ERR" "shinkin-otp: $SB/legacy.csv:$1: refused: pwhash of contract '$2' is $3, a legacy method the policy refuses at import ([password] legacy_import = refuse) (BAD_INPUT)"
}
# nothing_in IDS...: none of these contracts is in the store.
nothing_in() {
	for id in "$@"; do
		refused UNKNOWN_CONTRACT "  $id is not in the store" cli contract show "$id"
	done
}

# -- refuse: the whole file, each legacy record named --
check_rc 1 "refuse: a dry run of the file is refused" \
    cli $RC contract import "$SB/legacy.csv" --dry-run
refused_line 2 L1 descrypt
refused_line 3 L2 bsdicrypt
refused_line 4 L3 md5crypt
refused_line 5 L4 nt
check "  those four lines and no other" \
    test "$(grep -c 'legacy\.csv:[0-9]*: refused:' "$ERR")" -eq 4
check "  the summary" contains "$ERR" "refused: 4 of 7 records; nothing imported"
check_rc 1 "refuse: the import is refused" cli $RC contract import "$SB/legacy.csv"
refused_line 4 L3 md5crypt
check "  the summary" contains "$ERR" "refused: 4 of 7 records; nothing imported"
check "  no hash on standard error" sh -c '! grep -qF -e "$1" -e "$2" -e "$3" -e "$4" "$5"' \
    sh "${DES#ab}" "${MD5##*\$}" "${NT##*\$}" "${BSDI#_J9..salt}" "$ERR"
nothing_in L1 L3 L5 L6 L7
check "  audited: the import rejected, its first refused line" sh -c \
    '"$1" audit | grep "contract\.import reject BAD_INPUT contract=- " | tail -n 1 |
    grep -q "detail=csv: 7 records, 4 refused, 0 imported, 0 migration bindings; first refused: line 2$"' \
    sh "$CLI"
check_rc 1 "refuse: JSON lines too" cli $RC contract import "$SB/legacy.jsonl"
check "  names line 2, J2 and md5crypt" contains "$ERR" \
    "legacy.jsonl:2: refused: pwhash of contract 'J2' is md5crypt, a legacy method"
check "  one of two" contains "$ERR" "refused: 1 of 2 records; nothing imported"
nothing_in J1
check_rc 1 "refuse, --json: the refusals as JSON" \
    cli $RC --json contract import "$SB/legacy.csv"
check "  line 4's object" contains "$OUT" \
    '{"verdict":"reject","line":4,"reason":"BAD_INPUT","reason_code":25,"reason_text":"pwhash of contract '"'L3'"' is md5crypt, a legacy method'
grep -v -e '^L[1-4],' "$SB/legacy.csv" >"$SB/current.csv"
check "refuse: a file of current hashes imports" cli $RC contract import "$SB/current.csv"
check "  all three" contains "$OUT" "imported 3 contracts"
check "  L5 (sha256crypt) is in" cli contract show L5

# -- accept: the same legacy hashes come in --
grep -e '^#' -e '^L[1-4],' "$SB/legacy.csv" >"$SB/old.csv"
check "accept: a dry run takes the legacy hashes" \
    cli contract import "$SB/old.csv" --dry-run
check "  4 would be imported" contains "$OUT" "dry run: 4 contracts would be imported"
check "accept: the import takes them" cli contract import "$SB/old.csv"
check "  4 imported" contains "$OUT" "imported 4 contracts"
check "  noted as weak, for a rehash" contains "$OUT" "note: 4 password hashes use a method libxcrypt calls legacy"
for id in L1 L2 L3 L4; do
	check "  $id is in the store" cli contract show "$id"
done
check "accept: JSON lines too" cli contract import "$SB/legacy.jsonl"
check "  both" contains "$OUT" "imported 2 contracts"

# -- a bad value names the file, the line and the option --
sed 's/^legacy_import = refuse$/legacy_import = yes/' "$SB/refuse.conf" >"$SB/bad.conf"
N=$(grep -n '^legacy_import = yes$' "$SB/bad.conf" | cut -d: -f1)
check_rc 2 "legacy_import = yes: the policy is refused" \
    cli --config "$SB/bad.conf" contract import "$SB/current.csv"
check "  naming the file, line $N and the option" contains "$ERR" \
    "$SB/bad.conf:$N: legacy_import: 'yes' is not accept or refuse"
echo "1..$TAPN"

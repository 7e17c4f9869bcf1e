#!/bin/sh
# contract import: the bank's existing customers come in with the password
# hashes and printed cards they already have, and log in through the real
# libpam (tests/tools/pam_driver, no root). 10,000 generated contracts with
# real libxcrypt hashes in three formats (yescrypt, sha512crypt, bcrypt;
# tests/tools/gen_contracts), a sample of each logging in; a migration
# binding; every kind of bad record refused with its line, nothing
# imported; JSON lines; export and import again; rehash on login.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"

MOD=$BUILD/pam_shinkin_otp.so
DRV=$BUILD/tests/pam_driver
GEN=$BUILD/tests/gen_contracts
for f in "$MOD" "$DRV" "$CLI" "$GEN"; do
	[ -f "$f" ] || { notok "built: $f"; exit 1; }
done
LANG=C
LC_ALL=C
export LANG LC_ALL
mk_sandbox
SVC=$SB/pam.d
OUT=$SB/out
ERR=$SB/err
mkdir -p "$SVC"
for s in ib-login ib-mobile ib-transfer; do
	echo "auth required $MOD config=$CONF" >"$SVC/$s"
done
echo "auth required pam_deny.so" >"$SVC/other"

# drv WANT "what" SERVICE USER [ANSWER...] [-g GRID]: one PAM conversation.
drv() {
	_want=$1
	_d=$2
	_s=$3
	_u=$4
	shift 4
	"$DRV" -c "$SVC" -s "$_s" -u "$_u" "$@" >"$SB/drv" 2>&1
	if grep -qx "result: $_want" "$SB/drv"; then
		ok "$_d"
	else
		notok "$_d (want $_want; got: $(tr '\n' '|' <"$SB/drv"))"
	fi
}
# grid ID FILE: the card grid of ID's record, as pam_driver reads it.
grid() {
	sed -n "s/^$1,[^,]*,[^,]*,\([0-9]*\),.*/\1/p" "$SB/c.csv" |
	    awk '{ for (r = 0; r < 5; r++) printf "%c %s\n", 65 + r, substr($0, 10 * r + 1, 10) }' >"$2"
}
# refused_line N REASON TEXT: the last import named line N.
refused_line() {
	check "line $1 refused: $3 ($2)" \
	    grep -q "[a-z]:$1: refused: .*$3.* ($2)\$" "$ERR"
}

# -- 10,000 contracts, three hash formats --
check "gen_contracts writes 10,000 records" "$GEN" 10000 csv "$SB/c.csv"
for m in '$y$' '$6$' '$2b$'; do
	check "records hashed with $m" grep -qF ",$m" "$SB/c.csv"
done
check "dry run checks all" cli contract import "$SB/c.csv" --dry-run
check "dry run: 10000 would be imported" contains "$OUT" "dry run: 10000 contracts would be imported"
refused UNKNOWN_CONTRACT "the dry run stored nothing" cli contract show M0000001
check "import 10,000 contracts" cli contract import "$SB/c.csv"
check "imported 10000" contains "$OUT" "imported 10000 contracts"
check "export lists them" sh -c 'test "$("$1" export | grep -c "^M")" -eq 10000' sh "$CLI"
for i in 0000001 0000002 0000003 0009997 0009998 0009999; do
	m=$(sed -n "s/^M$i,\(\$[^$]*\$\).*/\1/p" "$SB/c.csv")
	drv PAM_SUCCESS "M$i ($m) logs in with its old password (mobile)" \
	    ib-mobile "M$i" "pw-M$i"
	drv PAM_AUTH_ERR "M$i ($m): a wrong password is refused" \
	    ib-mobile "M$i" "pw-M${i}x"
	cli contract unlock "M$i"
done
grid M0000005 "$SB/grid5"
drv PAM_SUCCESS "M0000005 logs in with its printed card's digits (login card)" \
    ib-login M0000005 pw-M0000005 @card -g "$SB/grid5"
drv PAM_AUTH_ERR "M0000005: wrong card digits are refused" \
    ib-login M0000005 pw-M0000005 @card-wrong -g "$SB/grid5"
drv PAM_SUCCESS "M0000007 (login none) logs in with the password" \
    ib-login M0000007 pw-M0000007
check_rc 1 "the same file again: refused" cli contract import "$SB/c.csv"
check "every record named" test "$(grep -c 'c\.csv:[0-9][0-9]*: refused: contract .* is already in the store (EXISTS)$' "$ERR")" -eq 10000
check "and nothing imported" contains "$ERR" "refused: 10000 of 10000 records; nothing imported"

# -- JSON lines --
check "gen_contracts writes JSON lines" "$GEN" 300 jsonl "$SB/j.jsonl" J
check "import JSON lines" cli contract import "$SB/j.jsonl"
check "imported 300" contains "$OUT" "imported 300 contracts"
drv PAM_SUCCESS "J0000299 (JSON lines) logs in" ib-mobile J0000299 pw-J0000299

# -- a migration binding: the customer's token, no live code --
H=$(sed -n 's/^M0000003,\([^,]*\),.*/\1/p' "$SB/c.csv")
S=$(secret)
check "the customer's token is in the store" cli token add MIG-T1 --secret "$S"
printf 'MB1,%s,otp,,MIG-T1,active\n' "$H" >"$SB/mb.csv"
check "a record with a serial: bound without a code" cli contract import "$SB/mb.csv"
check "one migration binding" contains "$OUT" "(1 with a migration binding)"
check "contract show: bound" sh -c '"$1" contract show MB1 | grep -q "MIG-T1"' sh "$CLI"
check "audit: contract.import-bind" sh -c '"$1" audit --contract MB1 | grep -q "contract.import-bind accept ACCEPTED contract=MB1 serial=MIG-T1 .*no live code"' sh "$CLI"
fresh_step 5
drv PAM_SUCCESS "MB1 logs in with its password and the token's code" \
    ib-login MB1 pw-M0000003 "$(totp "$S")"
sed 's/^binding = yes$/binding = no/' "$CONF" >"$SB/nobind.conf"
check "the policy can forbid migration bindings" grep -q '^binding = no$' "$SB/nobind.conf"
check "a second token" cli token add MIG-T2 --secret "$(secret)"
printf 'MB2,%s,otp,,MIG-T2,active\n' "$H" >"$SB/mb2.csv"
check_rc 1 "binding = no: a record with a serial is refused" \
    cli --config "$SB/nobind.conf" contract import "$SB/mb2.csv"
refused_line 1 BAD_INPUT "binding = no"

# -- every kind of bad record, each named with its line --
Y=$(sed -n 's/^M0000003,\([^,]*\),.*/\1/p' "$SB/c.csv")
B=$(sed -n 's/^M0000002,\([^,]*\),.*/\1/p' "$SB/c.csv")
G=01234567890123456789012345678901234567890123456789
check "a bound token for the TOKEN_IN_USE line" cli token add MIG-T3 --secret "$(secret)"
{
	echo "# contract,pwhash,login,card,serial,status"
	echo "G1,$Y,otp,$G,,active"
	echo "A B,$Y"
	echo "G3,\$6\$abcdefgh\$tooshort"
	echo "G4,!$Y"
	echo "G5,plaintext-password"
	echo "G6,\$2b\$99\$${B#\$2b\$04\$}"
	echo "G7,\$y\$zzz\$abc\$$(echo "$Y" | sed 's/.*\$//')"
	echo "G8,$Y,sometimes"
	echo "G9,$Y,otp,0123456789"
	echo "G10,$Y,otp,0123456789012345678901234567890123456789012345678x"
	echo "G11,$Y,otp,,,frozen"
	echo "G12,$Y,card"
	echo "G13,$Y,otp,,NO-SUCH-TOKEN"
	echo "G14,$Y,otp,,MIG-T1"
	echo "G1,$Y"
	echo "G16,$Y,otp,,MIG-T3"
	echo "G17,$Y,otp,,MIG-T3"
	echo "M0000001,$Y"
	echo "G19,$Y,otp,,,active,extra"
	echo "G20"
	echo "G21,$Y,otp,,MIG-T3,closed"
	echo "G22,$Y,otp,$(echo $G | sed 's/\(..........\)/\1 /g')"
	echo "G23,\$2b\$31\$${B#\$2b\$04\$}"
	echo "G24,$Y,$G"
	echo "G25,$Y,otp,,$G"
	echo "$Y,G26"
	echo "G27,$Y,otp,,,$Y"
	echo "G28,otp,$Y"
} >"$SB/bad.csv"
check_rc 1 "a file of bad records is refused" cli contract import "$SB/bad.csv"
cp "$ERR" "$SB/bad.err"
refused_line 3 BAD_INPUT "contract ID 'A?B'"
refused_line 4 BAD_INPUT "pwhash: hash checksum has the wrong length"
refused_line 5 BAD_INPUT "pwhash: password hash is locked or disabled"
refused_line 6 BAD_INPUT "pwhash: "
refused_line 7 BAD_INPUT "pwhash: libxcrypt cannot compute this hash"
refused_line 8 BAD_INPUT "pwhash: libxcrypt cannot compute this hash"
refused_line 9 BAD_INPUT "login 'sometimes'"
refused_line 10 BAD_INPUT "card has 10 digits; the policy's card is 5 rows x 10 columns = 50"
refused_line 11 BAD_INPUT "card: only digits"
refused_line 12 BAD_INPUT "status 'frozen'"
refused_line 13 NO_CARD "login card needs the card grid"
refused_line 14 UNKNOWN_SERIAL "no token 'NO-SUCH-TOKEN' in the store"
refused_line 15 TOKEN_IN_USE "token 'MIG-T1' is bound to contract 'MB1'"
refused_line 16 EXISTS "contract 'G1' is on line 2 too"
refused_line 18 TOKEN_IN_USE "token 'MIG-T3' is bound on line 17 too"
refused_line 19 EXISTS "contract 'M0000001' is already in the store"
refused_line 20 BAD_INPUT "more than 6 fields"
refused_line 21 BAD_INPUT "want contract,pwhash"
refused_line 22 STILL_BOUND "a closed contract cannot hold a token"
refused_line 24 BAD_INPUT "pwhash: password hash costs too much to check at each login (bcrypt cost above 15"
# Columns out of order: a hash or card grid where a word or an ID
# belongs is described, never printed.
refused_line 25 BAD_INPUT "login (50 characters, not shown: it may be a password hash or card grid in the wrong column)"
refused_line 26 UNKNOWN_SERIAL "no token (50 characters, not shown"
refused_line 27 BAD_INPUT "contract ID ([0-9]* characters, not shown"
refused_line 28 BAD_INPUT "status ([0-9]* characters, not shown"
refused_line 29 BAD_INPUT "pwhash: "
check "exactly those 25 lines refused" test "$(grep -c '\.csv:[0-9][0-9]*: refused:' "$ERR")" -eq 25
check "the summary" contains "$ERR" "refused: 25 of 28 records; nothing imported"
refused UNKNOWN_CONTRACT "nothing half-imported: G1 is not there" cli contract show G1
refused UNKNOWN_CONTRACT "nor G22" cli contract show G22
# (The import's own standard error: $ERR is the last command's.)
check "no secret in the refusals" sh -c '! grep -qF -e "$1" -e "$2" "$3"' sh "${Y##*\$}" "$G" "$SB/bad.err"
{
	echo "{\"contract\":\"JB1\",\"pwhash\":\"$Y\",\"mood\":\"good\"}"
	echo "{\"contract\":\"JB2\",\"pwhash\":\"$Y\",\"login\":1}"
	echo "{\"contract\":\"JB3\",\"contract\":\"JB3\",\"pwhash\":\"$Y\"}"
	echo "{\"contract\":\"JB4\" \"pwhash\":\"$Y\"}"
	echo "{\"contract\":\"J\\u00e9\",\"pwhash\":\"$Y\"}"
	echo "{\"contract\":\"JB6\",\"pwhash\":\"$Y\"} x"
	echo "[\"JB7\"]"
	echo "{\"contract\":\"JB8\",\"pwhash\":\"$Y\",\"card\":null,\"serial\":null}"
} >"$SB/bad.jsonl"
cli contract import "$SB/bad.jsonl"
refused_line 1 BAD_INPUT 'unknown member "mood"'
refused_line 2 BAD_INPUT 'member "login": not a JSON string'
refused_line 3 BAD_INPUT 'member "contract" given twice'
refused_line 4 BAD_INPUT "',' or '}' expected"
refused_line 5 BAD_INPUT 'member "contract": not a JSON string of printable ASCII'
refused_line 6 BAD_INPUT "text after the JSON object"
refused_line 7 BAD_INPUT "not a JSON object"
check "JSON lines: 7 of 8 refused" contains "$ERR" "refused: 7 of 8 records; nothing imported"
check_rc 1 "--json: refusals as JSON lines" cli --json contract import "$SB/bad.jsonl"
check "--json: line and reason" contains "$OUT" '"verdict":"reject","line":1,"reason":"BAD_INPUT"'

# -- export, and import again into a new store --
check "export without secrets" cli export --output "$SB/plain.csv"
check "no hash, no grid in it" sh -c '! grep -q -e "\\$" -e "[0-9]\{50\}" "$1"' sh "$SB/plain.csv"
check "export with secrets" cli export --with-secrets --output "$SB/full.csv"
check "the export file is private (0600)" test "$(stat -c %a "$SB/full.csv")" = 600
check_rc 2 "an export never overwrites" cli export --output "$SB/full.csv"
# Killed part way (SIGXFSZ at a 32 KiB file size limit: the store and the
# counters file fit under it, the export does not), an export leaves
# no file: it is named only when whole, so nothing that looks like a
# complete export (or holds a part of its secrets) is left behind.
# accepted_exports: the contract.export accept rows so far.
accepted_exports() { "$CLI" audit | grep -c " contract\.export accept "; }
# wal_reset: SQLite's WAL emptied, so that the store's writes fit under
# the file size limit below and the export's file is what it cuts.
wal_reset() {
	[ "$STORE_KIND" != sqlite ] ||
	    sqlite3 "$STORE" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
}
A0=$(accepted_exports)
wal_reset
check_rc 153 "an export killed part way (SIGXFSZ: 128 + 25)" sh -c \
    'ulimit -f 64; exec "$1" export --with-secrets --output "$2" 2>/dev/null' \
    sh "$CLI" "$SB/cut.csv"
check "... and leaves no file, named or temporary" sh -c \
    '! ls "$1"/cut.csv* >/dev/null 2>&1' sh "$SB"
# The file is written whole before its row (and named after it): an
# export whose file cannot be written has no row saying it was. It used
# to: the row was written before the first line.
check "... nor a row saying it was exported" \
    test "$(accepted_exports)" -eq "$A0"
# export_cut: export --with-secrets into $SB/cut.csv under a 64-block
# file size limit (SIGXFSZ ignored: the write fails with EFBIG).
export_cut() {
	sh -c 'trap "" XFSZ; ulimit -f 64
	exec "$1" export --with-secrets --output "$2" 2>"$3"' \
	    sh "$CLI" "$SB/cut.csv" "$ERR"
}
wal_reset
E0=$("$CLI" audit | grep -c " contract\.export error ")
exits_saying 2 "^shinkin-otp: export: cannot write $SB/cut.csv: File too large" \
    "an export whose file cannot be written (EFBIG, SIGXFSZ ignored): exit 2" \
    export_cut
check "... no file, named or temporary" sh -c \
    '! ls "$1"/cut.csv* >/dev/null 2>&1' sh "$SB"
check "... nor a row saying it was exported" \
    test "$(accepted_exports)" -eq "$A0"
# The attempt to take every secret is recorded, as a file that cannot be
# named is: an error row naming the file and why. There was none.
check "... but one error row naming the file and why" sh -c \
    '"$1" audit >"$2" &&
    [ "$(grep -c " contract\.export error " "$2")" -eq $(($3 + 1)) ] &&
    grep " contract\.export error " "$2" | tail -n 1 |
	grep -qF "csv, with secrets (password hashes, card grids): cannot write $4: File too large"' \
    sh "$CLI" "$SB/audit" "$E0" "$SB/cut.csv"
# That row refused too: it still fails closed, saying why.
X0=$("$CLI" audit | grep -c " contract\.export ")
check "the store refuses the export's rows" \
    store_fail no_cexport audit INSERT "NEW.action = 'contract.export'"
wal_reset
exits_saying 2 "^shinkin-otp: export: cannot write $SB/cut.csv: File too large" \
    "... a file that cannot be written, its error row refused: exit 2" \
    export_cut
check "... no file, named or temporary" sh -c \
    '! ls "$1"/cut.csv* >/dev/null 2>&1' sh "$SB"
check "... and no row" \
    test "$("$CLI" audit | grep -c " contract\.export ")" -eq "$X0"
check "mend the store" store_mend no_cexport audit
check "an export into a directory it cannot write is refused, no file" \
    sh -c '! "$1" export --output /proc/cut.csv 2>/dev/null &&
	! test -e /proc/cut.csv' sh "$CLI"
check "audit: the exports, secrets named" sh -c '"$1" audit >"$2" &&
    grep -q "contract.export accept .*detail=csv, without secrets" "$2" &&
    grep -q "contract.export accept .*detail=csv, with secrets" "$2"' sh "$CLI" "$SB/audit"
check "jsonl export" cli export --with-secrets --format jsonl --output "$SB/full.jsonl"
check "the binding is exported" grep -q '^MB1,.*,MIG-T1,active$' "$SB/full.csv"
mkdir "$SB/b"
sed -e "s|^store = .*|store = sqlite:$SB/b/b.db|" \
    -e "s|^master_key = .*|master_key = $(conf_path master_key)|" "$CONF" >"$SB/b/b.conf"
check "a second store" cli --config "$SB/b/b.conf" init
grep -v '^MB1,' "$SB/full.csv" >"$SB/nobind.csv"
check "the export imports into it" cli --config "$SB/b/b.conf" contract import "$SB/nobind.csv"
check "all 10,300 contracts" contains "$OUT" "imported 10300 contracts"
echo "auth required $MOD config=$SB/b/b.conf context=login" >"$SVC/b-login"
grid M0000005 "$SB/grid5"
drv PAM_SUCCESS "the card survives export and import" \
    b-login M0000005 pw-M0000005 @card -g "$SB/grid5"
check "the JSON lines export round-trips too" sh -c \
    '"$1" --config "$2" export --with-secrets --format jsonl | grep -v "\"MB1\"" | cmp -s - "$3"' \
    sh "$CLI" "$SB/b/b.conf" "$(grep -v '"MB1"' "$SB/full.jsonl" >"$SB/j2" && echo "$SB/j2")"

# -- IDs that CSV must quote: a comma, a leading '#' (a comment line) --
check "a contract whose ID holds a comma" clin pw-q1 --config "$SB/b/b.conf" contract add 'Q,1'
check "a contract whose ID starts with '#'" clin pw-q2 --config "$SB/b/b.conf" contract add '#Q2'
check "CSV export of both" sh -c '"$1" --config "$2" export --with-secrets |
    grep -F -e "Q,1" -e "#Q2" >"$3"' sh "$CLI" "$SB/b/b.conf" "$SB/q.csv"
mkdir "$SB/c"
sed -e "s|^store = .*|store = sqlite:$SB/c/c.db|" "$SB/b/b.conf" >"$SB/c/c.conf"
check "a third store" cli --config "$SB/c/c.conf" init
check "the CSV export imports into it" cli --config "$SB/c/c.conf" contract import "$SB/q.csv"
check "both contracts, none skipped as a comment" contains "$OUT" "imported 2 contracts"
check "'Q,1' is there" cli --config "$SB/c/c.conf" contract show 'Q,1'
check "'#Q2' is there" cli --config "$SB/c/c.conf" contract show '#Q2'
echo "auth required $MOD config=$SB/c/c.conf context=mobile" >"$SVC/c-mobile"
drv PAM_SUCCESS "'#Q2' logs in with its password after the round trip" \
    c-mobile '#Q2' pw-q2
{
	echo "\"Q3\",\"$Y\" , otp"
	echo "\"Q4,$Y"
	echo "\"Q5\"x,$Y"
} >"$SB/quoted.csv"
check_rc 1 "quoted fields: an open quote refused" cli --config "$SB/c/c.conf" contract import "$SB/quoted.csv"
refused_line 2 BAD_INPUT "field 1 (contract): a quote opens it and none closes it"
refused_line 3 BAD_INPUT "field 1 (contract): text after its closing quote"
check "and only those two" contains "$ERR" "refused: 2 of 3 records; nothing imported"

printf '\357\273\277# contract,pwhash\nBOM1,%s\n' "$Y" >"$SB/bom.csv"
check "a CSV with a UTF-8 byte order mark imports" cli --config "$SB/c/c.conf" contract import "$SB/bom.csv"
check "its contract ID without the mark" cli --config "$SB/c/c.conf" contract show BOM1
printf '\357\273\277{"contract":"BOM2","pwhash":"%s"}\n' "$Y" >"$SB/bom.jsonl"
check "JSON lines with a byte order mark import" cli --config "$SB/c/c.conf" contract import "$SB/bom.jsonl"
check "BOM2 is there" cli --config "$SB/c/c.conf" contract show BOM2

# -- the file changes between the checking pass and the inserts --
# The import is held before its inserts by a second connection holding
# store c's write lock (SQLite in every pass), the file is emptied in
# place meanwhile, then the lock is let go. What is inserted is what was
# checked; a mapped file cut under it killed the tool with SIGBUS.
sed -e 's/^lock_timeout *=.*/lock_timeout = 60000/' "$SB/c/c.conf" >"$SB/c/slow.conf"
mkfifo "$SB/lockfifo"
# held_import FILE SQL...: contract import FILE into store c, held before
# its inserts while FILE is emptied and SQL (then COMMIT) runs in the
# connection that holds the lock; sets held_rc.
held_import() {
	hi_file=$1
	shift
	lock_held "$SB/c/c.db" "$SB/lockfifo" "$SB/locker.out"
	hi_locker=$LOCKER
	"$CLI" --config "$SB/c/slow.conf" contract import "$hi_file" \
	    >"$OUT" 2>"$ERR" </dev/null 8>&- &
	hi_pid=$!
	# Held once its checking pass is over: it waits for the lock.
	hi_i=0
	until grep -q '^State:.*S (sleeping)' "/proc/$hi_pid/status" 2>/dev/null &&
	    ls -l "/proc/$hi_pid/fd" 2>/dev/null | grep -q "c\.db" ||
	    [ $hi_i -ge 1200 ]; do
		sleep 0.05
		hi_i=$((hi_i + 1))
	done
	sleep 1
	: >"$hi_file"
	for hi_sql in "$@"; do
		echo "$hi_sql" >&8
	done
	echo 'COMMIT;' >&8
	exec 8>&-
	wait "$hi_locker"
	wait "$hi_pid"
	held_rc=$?
}
printf 'MV1,%s\nMV2,%s\n' "$Y" "$Y" >"$SB/moving.csv"
held_import "$SB/moving.csv"
check "a file emptied under the import: no crash (exit $held_rc)" test "$held_rc" -eq 0
check "what was checked is what is inserted" contains "$OUT" "imported 2 contracts"
check "MV2 is there" cli --config "$SB/c/c.conf" contract show MV2
# A token disabled by another admin between the passes is not bound.
check "a token for a migration binding in store c" cli --config "$SB/c/c.conf" token add MIG-D1 --secret "$(secret)"
printf 'MD1,%s,otp,,MIG-D1,active\n' "$Y" >"$SB/moving2.csv"
held_import "$SB/moving2.csv" "UPDATE tokens SET disabled = 1 WHERE serial = 'MIG-D1';"
check "disabled meanwhile: the import is refused (exit $held_rc)" test "$held_rc" -eq 1
check "... naming the line and the token" contains "$ERR" "moving2.csv:1: refused: token 'MIG-D1' is disabled (TOKEN_DISABLED)"
refused UNKNOWN_CONTRACT "... and nothing imported: MD1 is not there" \
    cli --config "$SB/c/c.conf" contract show MD1
check "the token stays free" sh -c '! "$1" --config "$2" token show MIG-D1 | grep -q "MD1"' sh "$CLI" "$SB/c/c.conf"

# An import the store fails part way is audited as an error.
check "contract inserts refused by a trigger" sqlite3 "$SB/c/c.db" \
    "CREATE TRIGGER no_contracts BEFORE INSERT ON contracts BEGIN SELECT RAISE(ABORT, 'contracts refused'); END;"
printf 'ER1,%s\n' "$Y" >"$SB/er.csv"
check_rc 2 "an import whose insert fails: an error" cli --config "$SB/c/c.conf" contract import "$SB/er.csv"
check "... audited as an error, naming the pass, line and contract" sh -c \
    '"$1" --config "$2" audit | grep -q "contract\.import error .*detail=csv: insert pass, line 1, contract '"'ER1'"': SOTP_ERR_STORE; nothing imported"' \
    sh "$CLI" "$SB/c/c.conf"
check "drop the trigger" sqlite3 "$SB/c/c.db" "DROP TRIGGER no_contracts;"

# The same on the sandbox's store (SQLite or PostgreSQL), the second
# record's insert failing: the error leads with FILE:LINE as a refusal
# does, and the error row names the contract.
check "the store fails the insert of ERR-C2" \
    store_fail no_contracts contracts INSERT "NEW.id = 'ERR-C2'"
printf '# contract,pwhash\nERR-C1,%s\nERR-C2,%s\n' "$Y" "$Y" >"$SB/err.csv"
check_rc 2 "CSV --json: a store error on line 3: an error" \
    cli --json contract import "$SB/err.csv"
check "CSV --json: ... one JSON object: verdict error, the command, the file, the line, the error" \
    sh -c '[ "$(wc -l <"$1")" -eq 1 ] && grep -q "^{\"verdict\":\"error\",\"command\":\"contract import\",\"file\":\"$2\",\"line\":3,\"error\":\"[^\"]*\",\"error_code\":-[0-9]*,\"detail\":\"[^\"]*ERR-C2[^\"]*\"}\$" "$1"' sh "$OUT" "$SB/err.csv"
check "CSV --json: ... no hash on stdout" sh -c '! grep -qF "$1" "$2"' sh "${Y##*\$}" "$OUT"
check_rc 2 "CSV: a store error on line 3: an error" cli contract import "$SB/err.csv"
check "... leads with the file and line" contains "$ERR" \
    "shinkin-otp: $SB/err.csv:3: error: contract 'ERR-C2': "
check "... and says nothing was imported" contains "$ERR" "; nothing imported ("
cp "$ERR" "$SB/errc.err"
refused UNKNOWN_CONTRACT "... ERR-C1 is not there" cli contract show ERR-C1
check "audit after the CSV error" cli audit
check "... the error row names the pass, the line and the contract" \
    grep -q "contract\.import error .*detail=csv: insert pass, line 3, contract 'ERR-C2': SOTP_ERR_STORE; nothing imported" "$OUT"
check "... no hash on standard error or in the audit" \
    sh -c '! grep -qF "$1" "$2" "$3"' sh "${Y##*\$}" "$SB/errc.err" "$OUT"
{
	echo "{\"contract\":\"ERR-C1\",\"pwhash\":\"$Y\"}"
	echo
	echo "{\"contract\":\"ERR-C2\",\"pwhash\":\"$Y\"}"
} >"$SB/err.jsonl"
check_rc 2 "JSON lines: a store error on line 3: an error" cli contract import "$SB/err.jsonl"
check "... leads with the file and line" contains "$ERR" \
    "shinkin-otp: $SB/err.jsonl:3: error: contract 'ERR-C2': "
check "... and says nothing was imported" contains "$ERR" "; nothing imported ("
check "audit after the JSON lines error" cli audit
check "... the error row names the line and the contract" \
    grep -q "contract\.import error .*detail=jsonl: insert pass, line 3, contract 'ERR-C2': SOTP_ERR_STORE; nothing imported" "$OUT"
check "mend the store" store_mend no_contracts contracts
# A store error text longer than 255 bytes (a database's message with its
# detail) was cut there without a mark: the message keeps the location
# first (FILE:LINE, the contract) and the store's whole text, and one
# longer than the store's buffer is cut with a visible "...", the
# "nothing imported" after it.
LONGMSG="contracts refused by the test: $(printf '%0300d' 0) tail-of-the-store-text"
check "the store fails the insert of ERR-L2 with a long text" \
    store_fail no_contracts contracts INSERT "NEW.id = 'ERR-L2'" "$LONGMSG"
printf '# contract,pwhash\nERR-L1,%s\nERR-L2,%s\n' "$Y" "$Y" >"$SB/errl.csv"
check_rc 2 "a long store error on line 3: an error" \
    cli contract import "$SB/errl.csv"
check "... leads with the file, the line and the contract" \
    grep -q "^shinkin-otp: $SB/errl.csv:3: error: contract 'ERR-L2': " "$ERR"
check "... with the store's whole text" \
    grep -q "${LONGMSG}.*; nothing imported (" "$ERR"
check "mend the store" store_mend no_contracts contracts
LONGMSG="contracts refused by the test: $(printf '%01000d' 0) tail-of-the-store-text"
check "the store fails the insert of ERR-L2 with a text over 1000 bytes" \
    store_fail no_contracts contracts INSERT "NEW.id = 'ERR-L2'" "$LONGMSG"
check_rc 2 "an over long store error on line 3: an error" \
    cli contract import "$SB/errl.csv"
check "... leads with the file, the line and the contract" \
    grep -q "^shinkin-otp: $SB/errl.csv:3: error: contract 'ERR-L2': " "$ERR"
check "... its text cut with a mark, then nothing imported" \
    grep -q "contracts refused by the test: 0000*\.\.\..*; nothing imported (" "$ERR"
check "mend the store" store_mend no_contracts contracts
check "the store fails the end of a batch holding ERR-C2" \
    store_fail no_head audit_head UPDATE \
    "EXISTS (SELECT 1 FROM contracts WHERE id = 'ERR-C2')"
check_rc 2 "--json: an error after the last record: an error" \
    cli --json contract import "$SB/err.csv"
check "--json: ... one JSON object, the command and the file, no line of its own" \
    sh -c '[ "$(wc -l <"$1")" -eq 1 ] && grep -q "^{\"verdict\":\"error\",\"command\":\"contract import\",\"file\":\"$2\",\"error\":.*}\$" "$1"' sh "$OUT" "$SB/err.csv"
check_rc 2 "an error after the last record: an error" cli contract import "$SB/err.csv"
check "... names the file" contains "$ERR" \
    "shinkin-otp: contract import $SB/err.csv: error: csv, insert pass: "
check "... no line of its own (not the last record's)" sh -c '! grep -q "err.csv:[0-9]\|line [0-9]" "$1"' sh "$ERR"
check "... and says nothing was imported" contains "$ERR" "; nothing imported ("
refused UNKNOWN_CONTRACT "... ERR-C1 is not there" cli contract show ERR-C1
check "audit after the batch end's error" cli audit
check "... the error row: the pass, no line" \
    grep -q "contract\.import error .*detail=csv: insert pass: SOTP_ERR_STORE; nothing imported" "$OUT"
check "mend the store" store_mend no_head audit_head
check "the same file then imports" cli contract import "$SB/err.csv"

# -- the summary row of a refused import: the refusals' reason --
# summary_is PATTERN: the newest contract.import summary row of store c
# matches PATTERN (grep).
summary_is() {
	"$CLI" --config "$SB/c/c.conf" audit >"$SB/audit.c" &&
	    grep "contract\.import [a-z]* [A-Z_]* contract=- " "$SB/audit.c" |
	    tail -n 1 | grep -q "$1"
}
"$CLI" --config "$SB/c/c.conf" audit >"$SB/audit.c"
check "a refusal in the insert pass: its reason in the summary (TOKEN_DISABLED)" \
    grep -q "contract\.import reject TOKEN_DISABLED contract=- .*detail=csv: 1 records, 1 refused, 0 imported, 0 migration bindings; first refused: line 1$" "$SB/audit.c"
printf '# again\nBOM1,%s\n' "$Y" >"$SB/again.csv"
check_rc 1 "a contract already in the store: refused" cli --config "$SB/c/c.conf" contract import "$SB/again.csv"
check "... the summary row says EXISTS, not BAD_INPUT, and the line" summary_is \
    "contract\.import reject EXISTS .*detail=csv: 1 records, 1 refused, 0 imported, 0 migration bindings; first refused: line 2$"
printf 'RX1,%s,otp,,NO-SUCH-TOKEN\nRX2,%s,sometimes\nBOM1,%s\n' "$Y" "$Y" "$Y" >"$SB/mixed.csv"
check_rc 1 "refusals of three reasons" cli --config "$SB/c/c.conf" contract import "$SB/mixed.csv" --dry-run
check "... line 1: UNKNOWN_SERIAL" grep -q "mixed.csv:1: refused: .*(UNKNOWN_SERIAL)$" "$ERR"
check "... line 2: BAD_INPUT" grep -q "mixed.csv:2: refused: .*(BAD_INPUT)$" "$ERR"
check "... line 3: EXISTS" grep -q "mixed.csv:3: refused: .*(EXISTS)$" "$ERR"
check "... the summary row has the first refusal's reason (UNKNOWN_SERIAL)" summary_is \
    "contract\.import reject UNKNOWN_SERIAL .*detail=csv: 3 records, 3 refused, 0 imported, 0 migration bindings (dry run, nothing stored); first refused: line 1$"
check "... and no hash in the refusals or the row" sh -c '! grep -qF "$1" "$2" "$3"' sh "${Y##*\$}" "$ERR" "$SB/audit.c"

# -- rehash on login, when the policy says so --
sed -i 's/^rehash = no$/rehash = yes/' "$CONF"
drv PAM_SUCCESS "rehash = yes: M0000001 (sha512crypt) logs in" ib-mobile M0000001 pw-M0000001
check "audit: contract.rehash from \$6\$" sh -c '"$1" audit --contract M0000001 | grep -q "contract.rehash accept .*from=\$6\$ to=yescrypt"' sh "$CLI"
check "its hash is yescrypt now" sh -c '"$1" export --with-secrets | grep -q "^M0000001,[$]y[$]"' sh "$CLI"
drv PAM_SUCCESS "and the password still works" ib-mobile M0000001 pw-M0000001
check "a yescrypt hash is left alone" sh -c '"$1" audit --contract M0000001 | grep -c contract.rehash | grep -qx 1' sh "$CLI"
# A cost raised in the policy reaches the hashes already there.
cp "$CONF" "$SB/cost5.conf"
sed -i 's/^cost = 5$/cost = 6/' "$CONF"
check "  (the policy's [password] cost, 5, made 6)" grep -qx "cost = 6" "$CONF"
drv PAM_SUCCESS "[password] cost = 6: M0000001 (yescrypt cost 5) logs in" ib-mobile M0000001 pw-M0000001
check "  its hash is made again, audited" sh -c '"$1" audit --contract M0000001 | grep -c "contract.rehash accept .*from=[$]y[$] to=yescrypt" | grep -qx 1' sh "$CLI"
check "  at cost 6 now (jAT: 5 is j9T)" sh -c '"$1" export --with-secrets | grep -q "^M0000001,[$]y[$]jAT[$]"' sh "$CLI"
cp "$SB/cost5.conf" "$CONF"
drv PAM_SUCCESS "  back to cost 5, it still logs in" ib-mobile M0000001 pw-M0000001
check "  and is not made cheaper again" sh -c '"$1" audit --contract M0000001 | grep -c contract.rehash | grep -qx 2' sh "$CLI"

# -- a store whose first contract is of a legacy method (md5crypt) --
# An unknown contract's password is checked against the first contract's
# hash, to cost what a real one does; an md5crypt one costs microseconds,
# and the yescrypt contracts added since milliseconds, so the time told a
# stranger which contracts exist (before: a wrong password cost some 20x
# an unknown contract's). The unknown one's is made as new hashes are.
mkdir "$SB/d"
sed -e "s|^store = .*|store = sqlite:$SB/d/d.db|" "$CONF" >"$SB/d/d.conf"
check "a store for legacy hashes" cli --config "$SB/d/d.conf" init
printf 'DL1,%s\n' "$(openssl passwd -1 pw-DL1)" >"$SB/d/md5.csv"
check "  its first contract imported with an md5crypt hash" \
    cli --config "$SB/d/d.conf" contract import "$SB/d/md5.csv"
KN= UN=
for i in 0 1 2 3 4 5 6 7 8 9; do
	printf 'pw-DY%s\n' "$i" | "$CLI" --config "$SB/d/d.conf" \
	    contract add "DY$i" >/dev/null 2>&1
	KN="${KN:+$KN,}DY$i" UN="${UN:+$UN,}DN$i"
done
check "  ten contracts added since (yescrypt)" \
    [ "$(sqlite3 "$SB/d/d.db" "SELECT count(*) FROM contracts WHERE pwhash LIKE '\$y\$%'")" = 10 ]
echo "auth required $MOD config=$SB/d/d.conf context=mobile" >"$SVC/d-mobile"
cpu_k=$(wrong_cpu d-mobile "$KN" "$SB/d/cpu-known")
cpu_u=$(wrong_cpu d-mobile "$UN" "$SB/d/cpu-unknown")
echo "# cpu: 10 wrong passwords ${cpu_k:-?} us, 10 unknown contracts ${cpu_u:-?} us"
check "  ten of each refused; unknown contracts cost what wrong passwords do (CPU within 2x)" \
    within2 "$cpu_k" "$cpu_u"
drv PAM_SUCCESS "  the md5crypt contract logs in" d-mobile DL1 pw-DL1
echo "1..$TAPN"

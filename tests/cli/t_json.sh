#!/bin/sh
# --json when a command fails: every command writes exactly one JSON
# object on standard output (a script that parses stdout gets what went
# wrong), besides the unchanged line on standard error and the unchanged
# exit code. A usage error, a missing contract or serial, a store that is
# down, a refused verify, a bad policy; never a secret, password or code
# in the object; a command that wrote its own outcome (a decision,
# check-config, health) gets no second object; success is unchanged.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err

if ! command -v jq >/dev/null; then
	notok "jq is not installed (scripts/deps.sh installs it)"
	exit 1
fi

# jfail RC "what" JQ ARGS...: the tool run with ARGS (stdin /dev/null)
# exits RC, writes one line on stdout that is one JSON object for which
# the jq expression JQ is true, and one "shinkin-otp: " line on stderr.
jfail() {
	_want=$1
	_d=$2
	_jq=$3
	shift 3
	cli "$@"
	_got=$?
	if [ "$_got" -eq "$_want" ] && [ "$(wc -l <"$OUT")" -eq 1 ] &&
	    jq -e -s "length == 1 and (.[0] | $_jq)" "$OUT" >/dev/null 2>&1 &&
	    [ "$(wc -l <"$ERR")" -eq 1 ] && grep -q '^shinkin-otp: ' "$ERR"; then
		ok "$_d"
	else
		notok "$_d (exit $_got, want $_want)"
		sed 's/^/#   out: /' "$OUT"
		sed 's/^/#   err: /' "$ERR"
	fi
}

# jqs EXPR: the jq expression is true of stdout's objects, read as one array.
jqs() { jq -e -s "$1" "$OUT" >/dev/null; }

# What every error object has, as contract import's and token import's.
ERROR='.verdict == "error" and (.error | length > 0) and (.error_code | type == "number") and (.detail | type == "string")'
USAGE="$ERROR"' and .usage == true and .error_code == -3'

# ---- usage errors: the option, the command ----
jfail 2 "token add: an unknown option" \
    "$USAGE"' and .command == "token add" and .option == "--bogus" and (.detail | test("unknown option"))' \
    --json token add T9 --bogus
jfail 2 "token add: an option given twice" \
    "$USAGE"' and .option == "--digits" and (.detail | test("given twice"))' \
    --json token add T9 --digits 6 --digits 8
jfail 2 "token generate: a number out of range" \
    "$USAGE"' and .command == "token generate" and .option == "--count"' \
    --json token generate --count 0
jfail 2 "verify: an option without its value" \
    "$USAGE"' and .command == "verify" and .option == "--context"' \
    --json verify C1 --context
# Every subcommand names itself, not only its group ("token"), even in
# a usage error its option parsing finds, before it has read its word.
for sub in "token show T1" "token list" "token disable T1" "token enable T1" \
    "token import $SB/x.csv"; do
	# shellcheck disable=SC2086
	jfail 2 "${sub% "$SB"*}: an unknown option names the subcommand" \
	    "$USAGE"' and .command == "'"$(echo "$sub" | cut -d' ' -f1-2)"'" and .option == "--bogus"' \
	    --json $sub --bogus
	check "... and so does its line" \
	    contains "$ERR" "shinkin-otp: $(echo "$sub" | cut -d' ' -f1-2): unknown option '--bogus'"
done
jfail 2 "contract show: no ID" \
    "$USAGE"' and .command == "contract show" and (has("option") | not)' \
    --json contract show
jfail 2 "an unknown command" \
    "$USAGE"' and (has("command") | not) and (.detail | test("unknown command"))' \
    --json frobnicate
jfail 2 "an unknown global option after --json" \
    "$USAGE"' and .option == "--nope"' --json --nope health
jfail 2 "an unknown global option before --json" \
    "$USAGE"' and .option == "--nope"' --nope --json health
jfail 2 "no command" "$USAGE" --json
jfail 2 "metrics, which has no --json, says so in JSON" \
    "$USAGE"' and .command == "metrics"' --json metrics

# ---- refusals with no decision of their own ----
jfail 1 "contract show: a missing contract" \
    '.verdict == "reject" and .reason == "UNKNOWN_CONTRACT" and (.reason_code | type == "number") and (.reason_text | length > 0) and .command == "contract show" and .contract == "NOPE"' \
    --json contract show NOPE
jfail 1 "token show: a missing serial" \
    '.verdict == "reject" and .reason == "UNKNOWN_SERIAL" and .serial == "NOPE"' \
    --json token show NOPE
jfail 1 "contract unlock: a missing contract (a decision of its own)" \
    '.verdict == "reject" and .reason == "UNKNOWN_CONTRACT"' \
    --json contract unlock NOPE

# ---- stdin that lacks what the command reads ----
jfail 2 "contract add: no password on stdin" \
    "$ERROR"' and .error_code == -10 and .contract == "C9" and (.detail | test("no password"))' \
    --json contract add C9

# ---- a file the tool cannot read: SOTP_ERR_SYSTEM, the file named ----
jfail 2 "token import: no such file" \
    "$ERROR"' and .error_code == -4 and .command == "token import" and .file == "'"$SB"'/none.csv"' \
    --json token import "$SB/none.csv"
jfail 2 "contract import: no such file (no place in a file: no line)" \
    "$ERROR"' and .error_code == -4 and .file == "'"$SB"'/none.csv" and (has("line") | not)' \
    --json contract import "$SB/none.csv"

# ---- a refused verify: its decision, and no second object ----
S=$(secret)
check "provision T1/C1" provision T1 "$S" C1 pw-C1
jfail 1 "verify: a wrong code is one decision object" \
    '.verdict == "reject" and .reason == "WRONG_CODE"' \
    --json verify C1 --otp "$(wrong_code "$S")" --context transaction
check_rc 3 "verify with no password on stdin: one continue object" \
    cli --json verify C1 --context login
check "... and it is one object, not followed by an error" \
    jqs 'length == 1 and .[0].verdict == "continue"'

# ---- success is unchanged ----
check "contract show --json succeeds" cli --json contract show C1
check "... one object, the contract, no error fields" \
    jqs 'length == 1 and .[0].id == "C1" and (.[0] | has("verdict") | not)'
check "token list --json succeeds" cli --json token list
check "... one row per token" jqs 'length == 1 and .[0].serial == "T1"'
check "health --json succeeds" cli --json health
check "... one object, healthy" jqs 'length == 1 and .[0].healthy == true'

# ---- no --json: nothing on stdout, as before ----
check_rc 1 "without --json a refusal" cli contract show NOPE
check "... writes nothing on stdout" test ! -s "$OUT"
check_rc 2 "without --json a usage error" cli token add T9 --bogus
check "... writes nothing on stdout" test ! -s "$OUT"

# ---- secrets never reach the object ----
PW=pw-never-shown-4711
jfail 2 "token add --secret=... with an unknown option: the option only" \
    "$USAGE"' and .option == "--bogus"' \
    --json token add T9 --secret=JBSWY3DPEHPK3PXPJBSWY3DP --bogus=x
check "... the secret is not in the object" \
    sh -c '! grep -q "JBSWY3DP" "$1"' sh "$OUT"
jfail 2 "verify: codes past an unexpected word are not shown" \
    "$USAGE"' and .command == "verify"' \
    --json verify C1 --otp 135791 246802
check "... neither code is in the object" \
    sh -c '! grep -q -e 135791 -e 246802 "$1"' sh "$OUT"

# ---- a bad policy ----
cp "$CONF" "$SB/bad.conf"
echo "window_forward = lots" >>"$SB/bad.conf"
jfail 2 "contract show with a bad policy: the file and line" \
    "$ERROR"' and .error_code == -6 and (.detail | test("bad.conf:[0-9]+"))' \
    --json --config "$SB/bad.conf" contract show C1
check_rc 2 "check-config with a bad policy" \
    cli --json --config "$SB/bad.conf" check-config
check "... one object (its own: valid false), not two" \
    jqs 'length == 1 and .[0].valid == false'

# ---- a list that fails part way: the error object alone ----
# sb_sql SQL: SQL on the sandbox's store, either kind.
sb_sql() {
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "SET search_path TO $STORE_SCHEMA; $1" >/dev/null
	else
		sqlite3 "$STORE" "$1"
	fi
}
# lone OBJ: stdout is exactly one line, and that line is one object.
lone() {
	[ "$(wc -l <"$OUT")" -eq 1 ] && jqs "length == 1 and (.[0] | $1)"
}
STORE_ERR="$ERROR"' and .error_code == -8'
# A row the store cannot read, after one (C1) it could: the rows read
# before it are not a list, and are not printed.
clin pw-C2 contract add C2 && clin pw-C3 contract add C3
check "contract list --json" cli --json contract list
check "... three rows" jqs 'length == 3'
sb_sql "UPDATE contracts SET login = 99 WHERE id = 'C2'"
jfail 2 "contract list: a bad row after a good one is one error object" \
    "$STORE_ERR"' and .command == "contract list" and (.detail | test("login"))' \
    --json contract list
sb_sql "UPDATE contracts SET login = 1 WHERE id = 'C2'"
check "contract list --json: mended" cli --json contract list
check "... one object per line, every contract" \
    jqs 'length == 3 and (map(.id) == ["C1", "C2", "C3"])'
check "token generate" cli token generate
sb_sql "UPDATE tokens SET disabled = 7 WHERE serial = 'T1'"
jfail 2 "token list: a bad row after a good one is one error object" \
    "$STORE_ERR"' and .command == "token list" and (.detail | test("disabled"))' \
    --json token list
sb_sql "UPDATE tokens SET disabled = 0 WHERE serial = 'T1'"
sb_sql "UPDATE audit SET reason = 1099511627776 WHERE id = (SELECT max(id) FROM audit)"
jfail 2 "audit: a bad row after good ones is one error object" \
    "$STORE_ERR"' and .command == "audit" and (.detail | test("reason"))' \
    --json audit
sb_sql "UPDATE audit SET reason = 0 WHERE id = (SELECT max(id) FROM audit)"
check "audit --json: mended, every row" cli --json audit
check "... one object per line, none an error object" \
    jqs 'length > 5 and all(.[]; has("id") and has("error") == false)'

# No temporary file for the rows: refused before any is read, in one object.
_tmpdir=${TMPDIR-}
TMPDIR=$SB/no-such-dir
export TMPDIR
jfail 2 "audit: no temporary file for the rows" \
    "$ERROR"' and .error_code == -4 and .command == "audit" and (.detail | test("no-such-dir"))' \
    --json audit
if [ -n "$_tmpdir" ]; then TMPDIR=$_tmpdir; else unset TMPDIR; fi

# contract import: each refused line is an object, held until the checking
# pass is over, then the summary. An error that stops the import after a
# refusal was found (a store row it cannot read) is the error object
# alone: the refusals seen before it are not the file's outcome.
HASH=$(perl -e 'print crypt("pw-N", q($6$saltsalt$))')
printf '# contract,pwhash\nN1,not-a-hash\nN2,%s\nN3,nope\n' "$HASH" >"$SB/refused.csv"
check_rc 1 "contract import --json: two refused lines" \
    cli --json contract import "$SB/refused.csv"
check "... one object per refused line, then the summary, the last" \
    jqs 'length == 3 and (.[0] | .verdict == "reject" and .line == 2) and (.[1] | .verdict == "reject" and .line == 4) and (.[2] | .verdict == "reject" and .records == 3 and .refused == 2 and .imported == 0)'
check "... the summary names the command and the file" \
    jqs '.[-1] | .command == "contract import" and .file == "'"$SB"'/refused.csv"'
check_rc 1 "... and N2 was not imported" cli contract show N2
printf '# contract,pwhash\nN1,not-a-hash\nC2,%s\nN3,%s\n' "$HASH" "$HASH" >"$SB/broken.csv"
sb_sql "UPDATE contracts SET login = 99 WHERE id = 'C2'"
jfail 2 "contract import: a row the store cannot read after a refusal" \
    "$STORE_ERR"' and .command == "contract import" and .file == "'"$SB"'/broken.csv" and .line == 3 and (.detail | test("login"))' \
    --json contract import "$SB/broken.csv"
jfail 2 "contract import --dry-run: the same, the error object alone" \
    "$STORE_ERR"' and .line == 3' \
    --json contract import "$SB/broken.csv" --dry-run
sb_sql "UPDATE contracts SET login = 1 WHERE id = 'C2'"
# The token a line binds, unreadable, after a refused line.
printf '# contract,pwhash,login,card,serial\nN1,not-a-hash\nN4,%s,otp,,T1\n' "$HASH" >"$SB/badtoken.csv"
sb_sql "UPDATE tokens SET disabled = 7 WHERE serial = 'T1'"
jfail 2 "contract import: a token the store cannot read after a refusal" \
    "$STORE_ERR"' and .line == 3 and (.detail | test("disabled"))' \
    --json contract import "$SB/badtoken.csv"
sb_sql "UPDATE tokens SET disabled = 0 WHERE serial = 'T1'"
# The insert pass comes only after a checking pass with no refusal: a
# store error there is the error object alone too, naming its line.
printf '# contract,pwhash\nN5,%s\nN6,%s\n' "$HASH" "$HASH" >"$SB/insert.csv"
check "the store fails the insert of N6" \
    store_fail no_n6 contracts INSERT "NEW.id = 'N6'"
jfail 2 "contract import: a store error in the insert pass" \
    "$ERROR"' and .command == "contract import" and .line == 3' \
    --json contract import "$SB/insert.csv"
check "mend the store" store_mend no_n6 contracts
check_rc 1 "... and N5 was not imported" cli contract show N5
# No temporary file for the refusals: refused before the file is read.
TMPDIR=$SB/no-such-dir
export TMPDIR
jfail 2 "contract import: no temporary file for the refusals" \
    "$ERROR"' and .error_code == -4 and .command == "contract import" and (.detail | test("no-such-dir.*; nothing imported"))' \
    --json contract import "$SB/insert.csv"
if [ -n "$_tmpdir" ]; then TMPDIR=$_tmpdir; else unset TMPDIR; fi
check_rc 1 "... and N5 was not imported" cli contract show N5
check "contract import --json: a good file" \
    cli --json contract import "$SB/insert.csv"
check "... one object, the summary" \
    jqs 'length == 1 and (.[0] | .verdict == "accept" and .imported == 2 and .command == "contract import")'

# A key rotation's objects are its steps, each committed when printed: a
# step that fails ends them with one error object, on a line of its own.
check "token add Z9" cli token add Z9 --secret "$(secret)"
sb_sql "UPDATE tokens SET secret = (SELECT secret FROM tokens WHERE serial = 'T1') WHERE serial = 'Z9'"
check_rc 2 "key rotate: a row that cannot be unsealed" \
    cli --json key rotate --batch 1 --pause 0
check "... steps, then one error object, the last line, naming the row" \
    jqs '(.[-1] | '"$ERROR"' and .command == "key rotate" and (.detail | test("Z9"))) and ([.[] | select(has("step") | not)] | length == 1) and (.[0].step == "started")'
check "... every line one object" \
    sh -c '[ "$(wc -l <"$1")" -eq "$(jq -c . "$1" | wc -l)" ]' sh "$OUT"

# key rewrap and key drop-kek write one object, not their text: a second
# policy under a master key file of its own, the keys wrapped under its
# key too, then its copies dropped again from this policy.
sed "s|^master_key = .*|master_key = $SB/other.key|" "$CONF" >"$SB/other.conf"
head -c 32 /dev/urandom >"$SB/other.key"
chmod 600 "$SB/other.key" "$SB/other.conf"
check "key rewrap --json" cli --json key rewrap "$SB/other.conf"
check "... one object: the policy and the keys wrapped" \
    jqs 'length == 1 and .[0].policy == "'"$SB"'/other.conf" and .[0].wrapped > 0'
check "key status of the other policy" \
    cli --json --config "$SB/other.conf" key status
OTHER=$(jq -r 'select(has("kek")) | .kek' "$OUT")
check "key drop-kek --json of its key-encryption key" \
    cli --json key drop-kek "$OTHER"
check "... one object: the key-encryption key and the keys deleted" \
    jqs 'length == 1 and .[0].kek == "'"$OTHER"'" and .[0].deleted > 0'
check "key drop-kek --json of a key that wraps none" \
    cli --json key drop-kek file:0000000000000000
check "... one object: none deleted" \
    jqs 'length == 1 and .[0].kek == "file:0000000000000000" and .[0].deleted == 0'

# ---- a decision names its command, as every other object does ----
jfail 1 "verify: the decision names the command and contract" \
    '.verdict == "reject" and .command == "verify" and .contract == "C1"' \
    --json verify C1 --otp "$(wrong_code "$S")" --context transaction
jfail 1 "contract bind: the decision names the command and contract" \
    '.verdict == "reject" and .command == "contract bind" and .contract == "C3"' \
    --json contract bind C3 --serial NOPE --otp 123456
jfail 1 "contract unlock: the decision names the command and contract" \
    '.verdict == "reject" and .command == "contract unlock" and .contract == "NOPE"' \
    --json contract unlock NOPE

# ---- the store is down: after every check that needs it ----
store_garbage
jfail 2 "contract list: the store is down" \
    "$ERROR"' and .error_code == -9 and .command == "contract list"' \
    --json contract list
jfail 2 "audit: the store is down" \
    "$ERROR"' and .error_code == -9 and .command == "audit"' --json audit
jfail 2 "key status: the store is down" \
    "$ERROR"' and .error_code == -9 and .command == "key status"' \
    --json key status
printf '%s\n' "$PW" |
    "$CLI" --json verify C1 --otp 864209 --card 97531 >"$OUT" 2>"$ERR"
rc=$?
check "verify: the store is down (exit $rc)" test "$rc" -eq 2
check "... one error object naming the contract" \
    jqs 'length == 1 and .[0].verdict == "error" and .[0].error_code == -9 and .[0].contract == "C1"'
check "... no password, code or card digits in it" \
    sh -c '! grep -q -e "$2" -e 864209 -e 97531 "$1"' sh "$OUT" "$PW"
check_rc 1 "health: the store is down" cli --json health
check "... one object (its own: healthy false), not two" \
    jqs 'length == 1 and .[0].healthy == false'

#!/bin/sh
# Every export of a token secret is an audited admin action (issue 12,
# defect 4): token show --uri, --qr and --png (and token generate, which
# prints the URI) each write one "token.export" row naming the forms, and
# an export that cannot be audited does not happen.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
fresh_step 10

# exports: the token.export rows of the audit, one per line.
exports() {
	"$CLI" audit >"$SB/audit" 2>"$SB/audit.err" &&
	    grep ' token\.export ' "$SB/audit" >"$SB/exports"
	wc -l <"$SB/exports"
}
# last_export: "ACTION VERDICT REASON contract=.. serial=.. ... detail=.."
last_export() { tail -n 1 "$SB/exports" | cut -d ' ' -f 3-; }

S=$(secret)
check "provision" provision T1 "$S" C1
check "token show" cli token show T1
check "token show exports nothing, audits no export" test "$(exports)" -eq 0
check "token show --uri" cli token show T1 --uri
check "the URI is printed" contains "$OUT" "secret=$S"
check "one export row" test "$(exports)" -eq 1
check "it names the token, its contract and the form" test \
    "$(last_export)" = "token.export accept ACCEPTED contract=C1 serial=T1 context=- detail=uri"
check "token show --qr" cli token show T1 --qr
check "a second export row" test "$(exports)" -eq 2
check "detail qr" test "$(last_export | sed 's/.* detail=//')" = qr
check "token show --png" cli token show T1 --png "$SB/t1.png"
check "a third export row" test "$(exports)" -eq 3
check "detail png" test "$(last_export | sed 's/.* detail=//')" = png
check "--json token show --uri --qr is a usage error, no row" \
    sh -c '! "$1" --json token show T1 --uri --qr >/dev/null 2>&1' sh "$CLI"
check "still three rows" test "$(exports)" -eq 3
check "--json token show --uri --png" \
    cli --json token show T1 --uri --png "$SB/t1b.png"
check "one row for both forms" test "$(exports)" -eq 4
check "detail 'uri png'" test "$(last_export | sed 's/.* detail=//')" = "uri png"
refused UNKNOWN_SERIAL "token show --uri of an unknown serial" \
    cli token show NOPE --uri
check "no row for what was not exported" test "$(exports)" -eq 4
check "token generate" cli token generate
gen=$(cut -d ' ' -f 1 "$OUT")
check "token generate exports the new secret: a row" test "$(exports)" -eq 5
check "naming the new serial" contains "$SB/exports" "serial=$gen"

# A PNG is named only once whole: a kill part way leaves nothing at its
# name (a cut PNG may still show part of the QR code, and so of the
# secret). The tool is held after it claimed the PNG and before it wrote
# it, by a second connection holding the store's write lock (SQLite:
# this suite is not in run.sh's PostgreSQL pass), with lock_timeout
# raised so that the wait outlasts the look; then it is killed. (ulimit
# -f, as t_migrate kills an export, cannot cut a PNG of 2 KB here: the
# store's WAL is written at higher offsets before it, and is cut first.)
sed -e 's/^lock_timeout *=.*/lock_timeout = 60000/' "$CONF" >"$SB/slow.conf"
mkfifo "$SB/lockfifo"
lock_held "$STORE" "$SB/lockfifo" "$SB/locker.out"
locker=$LOCKER
check "a second connection holds the store's write lock" \
    grep -qx locked "$SB/locker.out"
# png_killed DIR WHAT ARGS...: the tool, looked at once it holds a file
# in DIR (where ARGS put the PNG, as x.png), then killed.
png_killed() {
	pk_dir=$1
	pk_what=$2
	shift 2
	mkdir "$pk_dir"
	held_in "$pk_dir" "$pk_what" "$@"
	pk_pid=$HELD_PID
	check "... nothing at its name while it is not whole" \
	    test ! -e "$pk_dir/x.png"
	kill -KILL "$pk_pid"
	wait "$pk_pid"
	check "... killed part way (SIGKILL: 128 + 9)" test $? -eq 137
	check "... nothing left at its name, nor beside it" \
	    test -z "$(ls -A "$pk_dir")"
}
png_killed "$SB/show" "token show --png" token show T1 --png "$SB/show/x.png"
png_killed "$SB/gen" "token generate --png" \
    token generate --png "$SB/gen/x.png"

# Where the filesystem has no unnamed files (O_TMPFILE: the shim makes
# open() refuse it, as such a filesystem does), the PNG is written as
# NAME.PID.tmp; a SIGKILL cannot be caught, so a kill part way leaves
# that file, and the next run that writes NAME removes it once its
# process is gone. (Under the sanitizers, their runtime comes first.)
NOTMP=$BUILD/tests/notmpfile.so
if readelf -d "$CLI" | grep -q 'NEEDED.*libasan'; then
	NOTMP="$(${CC:-cc} -print-file-name=libasan.so) $NOTMP"
fi
mkdir "$SB/fb"
LD_PRELOAD="$NOTMP" "$CLI" --config "$SB/slow.conf" token show T1 \
    --png "$SB/fb/x.png" >/dev/null 2>&1 </dev/null 8>&- &
fb_pid=$!
fb_i=0
until [ -e "$SB/fb/x.png.$fb_pid.tmp" ] || [ $fb_i -ge 1200 ]; do
	sleep 0.05
	fb_i=$((fb_i + 1))
done
check "no O_TMPFILE: the PNG is claimed as x.png.PID.tmp, 0600" sh -c \
    'test "$(stat -c %a "$1")" = 600' sh "$SB/fb/x.png.$fb_pid.tmp"
kill -KILL "$fb_pid"
wait "$fb_pid"
check "... killed part way (SIGKILL: 128 + 9)" test $? -eq 137
check "... nothing at its name" test ! -e "$SB/fb/x.png"
echo 'ROLLBACK;' >&8
exec 8>&-
wait "$locker"
# Beside it: one of a live process (this shell), and names not of that
# shape, which are kept.
: >"$SB/fb/x.png.$$.tmp"
: >"$SB/fb/x.png.1x.tmp"
: >"$SB/fb/y.png.$fb_pid.tmp"
chmod 600 "$SB/fb/"*.tmp
check "no O_TMPFILE: the next run writes the PNG" sh -c \
    'LD_PRELOAD="$1" "$2" token show T1 --png "$3" >/dev/null' sh \
    "$NOTMP" "$CLI" "$SB/fb/x.png"
check "... 0600" test "$(stat -c %a "$SB/fb/x.png")" = 600
check "... and removes the killed run's x.png.PID.tmp" \
    test ! -e "$SB/fb/x.png.$fb_pid.tmp"
check "... but not a live process's, nor another name's" sh -c \
    'test -e "$1/x.png.$2.tmp" && test -e "$1/x.png.1x.tmp" &&
    test -e "$1/y.png.$3.tmp"' sh "$SB/fb" "$$" "$fb_pid"
check "token show --png, unhindered: the PNG is there, 0600" sh -c \
    '"$1" token show T1 --png "$2" >/dev/null 2>&1 &&
    test "$(stat -c %a "$2")" = 600' sh "$CLI" "$SB/t1d.png"
check "... and never overwritten" sh -c \
    '! "$1" token show T1 --png "$2" >/dev/null 2>&1' sh "$CLI" "$SB/t1d.png"

# name_taken FILE PID: another's FILE appears while the tool (PID) waits
# for the store's write lock; then the lock is let go, and the tool's exit
# code is left in TAKEN_RC.
name_taken() {
	echo "another's" >"$1"
	echo 'ROLLBACK;' >&8
	exec 8>&-
	wait "$locker"
	wait "$2"
	TAKEN_RC=$?
}

# token generate --png: the PNG is the export, and goes with the token.
# One that cannot be written (here its name is taken by another process
# while the tool waits for the store's write lock, after it claimed the
# file: the link of the whole file is refused) leaves no token and no
# row, as a refused export row does. It used to be written after the
# commit: the token and its 'uri png' row stood, its QR code nowhere.
n0=$(exports)
adds0=$(grep -c ' token\.add ' "$SB/audit")
tokens0=$(sqlite3 "$STORE" "SELECT count(*) FROM tokens")
mkfifo "$SB/lockfifo2"
lock_held "$STORE" "$SB/lockfifo2" "$SB/locker2.out"
locker=$LOCKER
check "a second connection holds the store's write lock again" \
    grep -qx locked "$SB/locker2.out"
mkdir "$SB/taken"
held_in "$SB/taken" "token generate --png" token generate --png "$SB/taken/x.png"
name_taken "$SB/taken/x.png" "$HELD_PID"
check "... its name taken meanwhile: exit 2" test "$TAKEN_RC" -eq 2
check "... one line: the token not generated, and why" sh -c \
    '[ "$(wc -l <"$1")" -eq 1 ] &&
    grep -q "^shinkin-otp: token SO[0-9]* not generated, nothing stored: cannot write $2: it appeared meanwhile (never overwritten)" "$1"' \
    sh "$ERR" "$SB/taken/x.png"
check "... no secret printed" test ! -s "$OUT"
check "... the other's file untouched, nothing beside it" sh -c \
    '[ "$(cat "$1/x.png")" = "another'"'"'s" ] && [ "$(ls -A "$1")" = x.png ]' \
    sh "$SB/taken"
check "... no token stored" \
    test "$(sqlite3 "$STORE" "SELECT count(*) FROM tokens")" -eq "$tokens0"
check "... no export row" test "$(exports)" -eq "$n0"
check "... nor a token.add row" \
    test "$(grep -c ' token\.add ' "$SB/audit")" -eq "$adds0"
check "token generate --png, unhindered" \
    cli token generate --png "$SB/taken/y.png"
gen=$(cut -d ' ' -f 1 "$OUT")
check "... the PNG is there, 0600" \
    test "$(stat -c %a "$SB/taken/y.png")" = 600
check "... and holds the URI printed" sh -c \
    '[ "$(zbarimg -q --raw "$1")" = "$(cut -d " " -f 2 "$2")" ]' \
    sh "$SB/taken/y.png" "$OUT"
check "... its token, and one export row naming both forms" sh -c \
    '[ "$("$1" audit | grep -c " token\.export accept .*serial=$2 .*detail=uri png$")" -eq 1 ]' \
    sh "$CLI" "$gen"

# token show --png: the PNG is written and named inside the export row's
# transaction, as token generate's is. One whose name is taken meanwhile
# (by another process while the tool waits for the store's write lock,
# after it claimed the file) leaves no accept row: one error row names
# the file and why, and nothing of the tool's is left beside the other's
# file. The accept row used to be written first and stand: the audit
# said the secret had left when it had not.
n0=$(exports)
mkfifo "$SB/lockfifo3"
lock_held "$STORE" "$SB/lockfifo3" "$SB/locker3.out"
locker=$LOCKER
check "a second connection holds the store's write lock once more" \
    grep -qx locked "$SB/locker3.out"
mkdir "$SB/shown"
held_in "$SB/shown" "token show --png" token show T1 --png "$SB/shown/x.png"
name_taken "$SB/shown/x.png" "$HELD_PID"
check "... its name taken meanwhile: exit 2" test "$TAKEN_RC" -eq 2
check "... one line: the token and why" sh -c \
    '[ "$(wc -l <"$1")" -eq 1 ] &&
    grep -q "^shinkin-otp: token T1: cannot write $2: it appeared meanwhile (never overwritten)" "$1"' \
    sh "$ERR" "$SB/shown/x.png"
check "... the other's file untouched, nothing beside it" sh -c \
    '[ "$(cat "$1/x.png")" = "another'"'"'s" ] && [ "$(ls -A "$1")" = x.png ]' \
    sh "$SB/shown"
n1=$(exports)
check "... no row says T1's secret left: one row, not an accept" sh -c \
    '[ "$1" -eq $(($2 + 1)) ] &&
    ! tail -n 1 "$3" | grep -q " token\.export accept "' sh "$n1" "$n0" "$SB/exports"
check "... one error row names the file and why" sh -c \
    'tail -n 1 "$1" | grep -q " token\.export error [A-Z_]* contract=C1 serial=T1 .*detail=png: cannot write $2: it appeared meanwhile (never overwritten)$"' \
    sh "$SB/exports" "$SB/shown/x.png"

# A secret that cannot be decrypted (a row tampered with: T1's sealed
# secret moved to Z9, whose serial it is not sealed to) is not exported:
# no row says it was. It used to be: the row was written before the
# secret was decrypted. The attempt is recorded as an error, as a failed
# import or backup is.
check "token add Z9" cli token add Z9 --secret "$(secret)"
check "Z9's row given T1's sealed secret" sqlite3 "$STORE" \
    "UPDATE tokens SET secret = (SELECT secret FROM tokens WHERE serial = 'T1') WHERE serial = 'Z9'"
n0=$(exports)
exits_saying 2 "^shinkin-otp: token Z9: secret cannot be decrypted (wrong master key or tampered row)" \
    "token show --uri of a secret that cannot be decrypted fails, saying why" \
    cli token show Z9 --uri
check "... and prints nothing" test ! -s "$OUT"
n1=$(exports)
check "... and no row records an export of Z9" \
    sh -c '! grep -q "token\.export accept .*serial=Z9 " "$1"' sh "$SB/exports"
check "... one row records the attempt, as an error" \
    test "$(grep -c "token\.export error INTERNAL contract=- serial=Z9 .*detail=uri: secret cannot be decrypted" "$SB/exports")" -eq 1
check "... and no other" test "$n1" -eq $((n0 + 1))
exits_saying 2 "token Z9: secret cannot be decrypted" \
    "token show --png of it fails too" cli token show Z9 --png "$SB/z9.png"
check "... and writes no file" test ! -e "$SB/z9.png"

# The audit row cannot be written: no secret leaves.
check "audit rows refused by a trigger" sqlite3 "$(conf_path store)" \
    "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused'); END;"
check_rc 2 "token show --uri fails" cli token show T1 --uri
check "and prints no secret" sh -c '! grep -q "$1" "$2" "$3"' sh "$S" "$OUT" "$ERR"
check "it says the export was not audited" contains "$ERR" "export not audited"
check_rc 2 "token show --png fails" cli token show T1 --png "$SB/t1c.png"
check "and writes no file" test ! -e "$SB/t1c.png"
echo "1..$TAPN"

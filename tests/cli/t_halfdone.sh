#!/bin/sh
# An admin command whose audit row the store refuses (a trigger, as a
# broken or full store would) has done nothing: its change and its row
# land together or not at all, it exits 2, and its one line names what
# failed and where, never a bare "store error". On SQLite and
# PostgreSQL.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err

sb_sql() {
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "SET search_path TO $STORE_SCHEMA; $1" | tr -d ' '
	else
		sqlite3 "$STORE" "$1"
	fi
}
q() {
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "SET search_path TO $STORE_SCHEMA; COPY ($1) TO STDOUT"
	else
		sqlite3 "$STORE" "$1"
	fi
}

# failed_specific WHAT ARGS...: the tool run with ARGS exits 2 with one
# stderr line that names the store and the refused audit append.
failed_specific() {
	_fd=$1
	shift
	exits_saying 2 "^shinkin-otp: .*$STORE_KIND .*audit refused by the test" \
	    "$_fd" "$@"
}

# same WHAT SQL WANT: the query's output is WANT.
same() {
	_got=$(q "$2")
	if [ "$_got" = "$3" ]; then
		ok "$1"
	else
		notok "$1"
		echo "#   got '$_got', want '$3'"
	fi
}

S=$(secret)
check "token add T1" cli token add T1 --secret "$S"
check "contract add C1" clin pw-C1 contract add C1
check "contract card C1" cli contract card C1
CARD1=$(q "SELECT hex(card) FROM contracts WHERE id = 'C1'" 2>/dev/null ||
    q "SELECT encode(card, 'hex') FROM contracts WHERE id = 'C1'")
HASH1=$(q "SELECT pwhash FROM contracts WHERE id = 'C1'")
sb_sql "UPDATE contracts SET failures = 3, locked_until = 9999999999 WHERE id = 'C1'" >/dev/null
ROWS=$(q "SELECT count(*) FROM audit")

check "the store refuses every audit row" \
    store_fail no_audit audit INSERT "true" "audit refused by the test"

# (T2 a seed of its own: T1's would be refused before any audit row.)
failed_specific "token add: the audit row refused" \
    cli token add T2 --secret "$(secret)"
same "... and T2 was not added" \
    "SELECT count(*) FROM tokens WHERE serial = 'T2'" 0
failed_specific "token generate: the audit row refused" cli token generate
check "... saying so" \
    grep -q "^shinkin-otp: token SO[0-9]* not generated, nothing stored: " "$ERR"
same "... and no token was added" "SELECT count(*) FROM tokens" 1
NOW=$(date +%s)
STEP1=$(q "SELECT last_step FROM tokens WHERE serial = 'T1'")
failed_specific "token resync: the audit row refused" \
    cli token resync T1 "$(oathtool --totp -b --now "@$((NOW + 60))" "$S")" \
    "$(oathtool --totp -b --now "@$((NOW + 90))" "$S")"
same "... and T1's codes are not spent" \
    "SELECT last_step FROM tokens WHERE serial = 'T1'" "$STEP1"
failed_specific "token disable: the audit row refused" cli token disable T1
same "... and T1 is still enabled" \
    "SELECT disabled FROM tokens WHERE serial = 'T1'" 0
failed_specific "contract add: the audit row refused" \
    clin pw-C2 contract add C2
same "... and C2 was not added" \
    "SELECT count(*) FROM contracts WHERE id = 'C2'" 0
failed_specific "contract passwd: the audit row refused" \
    clin new-pw contract passwd C1
same "... and C1's password is unchanged" \
    "SELECT pwhash FROM contracts WHERE id = 'C1'" "$HASH1"
failed_specific "contract unlock: the audit row refused" \
    cli contract unlock C1
same "... and C1 is still locked" \
    "SELECT failures FROM contracts WHERE id = 'C1'" 3
failed_specific "contract card: the audit row refused" \
    cli contract card C1
check "... and no grid was shown" [ ! -s "$OUT" ]
CARD=$(q "SELECT hex(card) FROM contracts WHERE id = 'C1'" 2>/dev/null ||
    q "SELECT encode(card, 'hex') FROM contracts WHERE id = 'C1'")
check "... and C1 keeps the card its customer holds" [ "$CARD" = "$CARD1" ]
failed_specific "contract set --login-otp: the audit row refused" \
    cli contract set C1 --login-otp card
same "... and C1's login choice is unchanged" \
    "SELECT login FROM contracts WHERE id = 'C1'" 1

check "mend the store" store_mend no_audit audit
same "no audit row was written meanwhile" "SELECT count(*) FROM audit" "$ROWS"

# token generate adds the token, its row and its export's row in one
# transaction: when the export's row is refused, nothing is left (it
# used to leave the token, unassigned, its secret never shown), and the
# one line says so.
check "the store refuses the export's audit row" \
    store_fail no_export audit INSERT "NEW.action = 'token.export'" \
    "audit refused by the test"
ROWS=$(q "SELECT count(*) FROM audit")
exits_saying 2 "^shinkin-otp: token SO[0-9]* not generated, nothing stored: its export's audit row cannot be written: .*$STORE_KIND .*audit refused by the test" \
    "token generate: a refused export leaves nothing, and says so" \
    cli token generate
check "... and prints no secret" [ ! -s "$OUT" ]
same "... and no token was added" \
    "SELECT count(*) FROM tokens WHERE serial LIKE 'SO%'" 0
same "... nor any audit row" "SELECT count(*) FROM audit" "$ROWS"
check "mend the store" store_mend no_export audit
# --count: the tokens before the refused one were generated and shown;
# it and those after it were not.
check "the store refuses the second generated token's export row" \
    store_fail no_second audit INSERT "NEW.action = 'token.export' AND
    (SELECT count(*) FROM tokens WHERE serial LIKE 'SO%') > 1" \
    "audit refused by the test"
exits_saying 2 "^shinkin-otp: 1 of 3 tokens generated and shown above: token SO[0-9]* not generated, nothing stored: its export's audit row cannot be written: .*audit refused by the test" \
    "token generate --count 3: the second refused, said so" \
    cli token generate --count 3
GEN=$(q "SELECT serial FROM tokens WHERE serial LIKE 'SO%'")
check "... the first was generated ($GEN) and shown" \
    grep -q "^$GEN otpauth://totp/" "$OUT"
check "... only it" [ "$(wc -l <"$OUT")" -eq 1 ]
same "... one token stored" \
    "SELECT count(*) FROM tokens WHERE serial LIKE 'SO%'" 1
same "... with its rows: added, exported" \
    "SELECT count(*) FROM audit WHERE serial = '$GEN'
     AND action IN ('token.add', 'token.export')" 2
same "... and no row for another" \
    "SELECT count(*) FROM audit WHERE serial LIKE 'SO%' AND serial <> '$GEN'" 0
check "mend the store" store_mend no_second audit
check "token generate once it is mended" cli token generate
check "... as an otpauth URI" grep -q "^SO[0-9]* otpauth://totp/" "$OUT"
check "contract unlock C1 once the store is mended" cli contract unlock C1
same "... and C1 is unlocked" \
    "SELECT failures FROM contracts WHERE id = 'C1'" 0
# A refusal inside the change's transaction (a constraint, which on
# PostgreSQL aborts what it ran in) stands, with its row.
refused EXISTS "contract add of an ID that exists" clin pw contract add C1
refused EXISTS "token add of a serial that exists" \
    cli token add T1 --secret "$S"
same "... each with its audit row" \
    "SELECT count(*) FROM audit WHERE verdict = 'reject'
     AND action IN ('contract.add', 'token.add')" 2
# A backup (SQLite: PostgreSQL's are its own tools') whose audit row is
# refused leaves no copy of the store behind, and says so.
if [ "$STORE_KIND" = sqlite ]; then
	check "the store refuses the backup's audit row" \
	    store_fail no_backup audit INSERT "NEW.action = 'store.backup'" \
	    "audit refused by the test"
	exits_saying 2 "^shinkin-otp: backup refused: its audit row cannot be written: .*audit refused by the test; the copy $SB/bk.db was removed" \
	    "backup: its audit row refused, exit 2, said so" \
	    cli backup "$SB/bk.db"
	check "... and no copy is left" [ ! -e "$SB/bk.db" ]
	check "mend the store" store_mend no_backup audit
	check "backup once mended" cli backup "$SB/bk.db"
	check "... the copy is there" [ -s "$SB/bk.db" ]
fi

# key rotate stopped by a store error: each step commits on its own, so
# the one line says that nothing is lost and that running it again goes
# on; run again, it does. The store refuses the re-seal's audit row.
check "the store refuses the re-seal's audit rows" \
    store_fail no_reseal audit INSERT "NEW.action = 'key.reseal'" \
    "audit refused by the test"
exits_saying 2 "^shinkin-otp: key rotate: stopped: .*$STORE_KIND .*audit refused by the test (.*); nothing is lost: run key rotate again and it goes on from here\$" \
    "key rotate: a store error stops it, and a new run is said to go on" \
    cli key rotate --pause 0 --no-wait
check "... once version 2 was current" \
    grep -qx "key rotate: version 2 is current (was 1); re-sealing" "$OUT"
same "... and nothing was re-sealed" \
    "SELECT count(*) FROM tokens WHERE kv = 2" 0
check "mend the store" store_mend no_reseal audit
check_rc 3 "key rotate again goes on (and waits to retire: --no-wait)" \
    cli key rotate --pause 0 --no-wait
check "... resuming the rotation to version 2" \
    grep -qx "key rotate: resuming the rotation to version 2" "$OUT"
same "... every token secret under version 2" \
    "SELECT count(*) FROM tokens WHERE kv <> 2" 0

# The same for the store's lock held past lock_timeout (the audit chain's
# head, which every step's audit row takes): the holder answers once it
# holds it, and lets go after the refusal. No timing is asserted.
mkfifo "$SB/lock.in"
if [ "$STORE_KIND" = postgresql ]; then
	psql -X -q -A -t "$SOTP_TEST_STORE_URL" <"$SB/lock.in" \
	    >"$SB/lock.out" 2>&1 &
	LOCKER=$!
	exec 8>"$SB/lock.in"
	echo "SET search_path TO $STORE_SCHEMA; BEGIN;
	    SELECT k FROM audit_head FOR UPDATE; SELECT 'locked';" >&8
	_w=0
	until grep -qx locked "$SB/lock.out" || [ $_w -ge 1200 ]; do
		sleep 0.05
		_w=$((_w + 1))
	done
	check "a session holds every audit head" grep -qx locked "$SB/lock.out"
else
	check "a session holds the store's write lock" \
	    lock_held "$STORE" "$SB/lock.in" "$SB/lock.out"
fi
exits_saying 2 "^shinkin-otp: key rotate: stopped: .*$STORE_KIND .*(store unavailable); nothing is lost: run key rotate again and it goes on from here\$" \
    "key rotate: a lock held past lock_timeout stops it, and a new run is said to go on" \
    cli key rotate --pause 0 --no-wait
echo "ROLLBACK;" >&8
exec 8>&-
wait "$LOCKER"
check_rc 3 "key rotate again goes on once the lock is let go" \
    cli key rotate --pause 0 --no-wait
check "... resuming the rotation to version 2" \
    grep -qx "key rotate: resuming the rotation to version 2" "$OUT"
check "audit verify" cli audit verify

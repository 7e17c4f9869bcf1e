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
# --png: the PNG is written in the same transaction, once the export's
# row is: that row refused, no PNG is written.
exits_saying 2 "^shinkin-otp: token SO[0-9]* not generated, nothing stored: its export's audit row cannot be written: .*audit refused by the test" \
    "token generate --png: a refused export leaves nothing" \
    cli token generate --png "$SB/g1.png"
check "... no PNG, named or temporary" \
    sh -c '! ls "$1"/g1.png* >/dev/null 2>&1' sh "$SB"
same "... no token, no audit row" \
    "SELECT count(*) FROM tokens WHERE serial LIKE 'SO%' UNION ALL
     SELECT count(*) - $ROWS FROM audit" "0
0"
check "mend the store" store_mend no_export audit
# PostgreSQL can refuse a transaction at its COMMIT (a deferred
# constraint trigger): a PNG written and named before that COMMIT is
# removed, as its token and rows were undone.
if [ "$STORE_KIND" = postgresql ]; then
	check "the store refuses the token's COMMIT" store_sql "
	    CREATE FUNCTION $STORE_SCHEMA.no_commit() RETURNS trigger
	    LANGUAGE plpgsql AS \$\$BEGIN
	    RAISE EXCEPTION 'commit refused by the test'; END\$\$;
	    CREATE CONSTRAINT TRIGGER no_commit AFTER INSERT
	    ON $STORE_SCHEMA.tokens DEFERRABLE INITIALLY DEFERRED
	    FOR EACH ROW EXECUTE FUNCTION $STORE_SCHEMA.no_commit()"
	ROWS=$(q "SELECT count(*) FROM audit")
	exits_saying 2 "^shinkin-otp: token SO[0-9]* not generated, nothing stored: .*commit refused by the test" \
	    "token generate --png: its COMMIT refused, exit 2, said so" \
	    cli token generate --png "$SB/g2.png"
	check "... and the PNG it named is removed" \
	    sh -c '! ls "$1"/g2.png* >/dev/null 2>&1' sh "$SB"
	check "... and prints no secret" [ ! -s "$OUT" ]
	same "... no token, no audit row" \
	    "SELECT count(*) FROM tokens WHERE serial LIKE 'SO%' UNION ALL
	     SELECT count(*) - $ROWS FROM audit" "0
0"
	check "mend the store" store_mend no_commit tokens
fi
# token show --png writes and names its PNG inside the export row's
# transaction: a PNG that cannot be written (EFBIG under a 512-byte file
# size limit, SIGXFSZ ignored: the PNG is 2 KB, the one line on stderr
# fits) leaves no accept row but an error row naming
# the file and why, and no file, named or temporary. The accept row used
# to be written first and stand. (PostgreSQL only: on SQLite the limit
# cuts the store's own WAL first, so no row at all can be written.)
if [ "$STORE_KIND" = postgresql ]; then
	ROWS=$(q "SELECT count(*) FROM audit")
	exits_saying 2 "^shinkin-otp: token T1: cannot write $SB/s1.png: File too large" \
	    "token show --png: a PNG that cannot be written, exit 2, said so" \
	    sh -c 'trap "" XFSZ; ulimit -f 1
		exec "$1" token show T1 --png "$2" >"$3" 2>"$4" </dev/null' \
	    sh "$CLI" "$SB/s1.png" "$OUT" "$ERR"
	check "... no PNG, named or temporary" \
	    sh -c '! ls "$1"/s1.png* >/dev/null 2>&1' sh "$SB"
	same "... no accept row, one error row naming the file and why" \
	    "SELECT verdict || ' ' || detail FROM audit
	     WHERE action = 'token.export' AND serial = 'T1'
	     ORDER BY id DESC LIMIT 1" \
	    "error png: cannot write $SB/s1.png: File too large"
	same "... and no other row" "SELECT count(*) - $ROWS FROM audit" 1
fi
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
# export --with-secrets decrypts every card before its row is written:
# a card that cannot be decrypted (C3's row given C1's sealed card, as a
# tampered row or a wrong master key would leave it) is refused, naming
# the contract, and recorded as an error; no row says the secrets left,
# and no file is left, named or temporary. It used to write the accept
# row first.
check "contract add C3" clin pw-C3 contract add C3
check "contract card C3" cli contract card C3
CARD3=$(q "SELECT hex(card) FROM contracts WHERE id = 'C3'" 2>/dev/null ||
    q "SELECT encode(card, 'hex') FROM contracts WHERE id = 'C3'")
sb_sql "UPDATE contracts SET card = (SELECT card FROM contracts WHERE id = 'C1') WHERE id = 'C3'" >/dev/null
ROWS=$(q "SELECT count(*) FROM audit")
exits_saying 2 "^shinkin-otp: contract C3: card cannot be decrypted (wrong master key or tampered row)" \
    "export --with-secrets of a card that cannot be decrypted: exit 2, naming it" \
    cli export --with-secrets --output "$SB/x.csv"
check "... and leaves no file, named or temporary" \
    sh -c '! ls "$1"/x.csv* >/dev/null 2>&1' sh "$SB"
same "... no row says it was exported" \
    "SELECT count(*) FROM audit WHERE action = 'contract.export'
     AND verdict = 'accept'" 0
same "... one row records the attempt, as an error naming C3" \
    "SELECT contract || ' ' || detail FROM audit
     WHERE action = 'contract.export' AND verdict = 'error'" \
    "C3 csv, with secrets (password hashes, card grids): card cannot be decrypted (wrong master key or tampered row)"
same "... and no other" "SELECT count(*) FROM audit" $((ROWS + 1))
exits_saying 2 "^shinkin-otp: contract C3: card cannot be decrypted" \
    "to standard output: the same refusal" cli export --with-secrets
check "... and no line of it is written" [ ! -s "$OUT" ]
same "... still no row says it was exported" \
    "SELECT count(*) FROM audit WHERE action = 'contract.export'
     AND verdict = 'accept'" 0
check "an export without secrets decrypts nothing: it goes on" \
    cli export --output "$SB/plain.csv"
check "... C3 is in it" grep -q "^C3,," "$SB/plain.csv"
# Once its card is whole again, the export is audited once, with secrets.
if [ "$STORE_KIND" = postgresql ]; then
	sb_sql "UPDATE contracts SET card = decode('$CARD3', 'hex') WHERE id = 'C3'" >/dev/null
else
	sb_sql "UPDATE contracts SET card = x'$CARD3' WHERE id = 'C3'"
fi
ROWS=$(q "SELECT count(*) FROM audit")
check "export --with-secrets once C3's card is its own" \
    cli export --with-secrets --output "$SB/x.csv"
check "... C1's and C3's grids are in it" sh -c \
    '[ "$(grep -c "^C[13],[$].*,[0-9]\{20,\}," "$1")" -eq 2 ]' sh "$SB/x.csv"
same "... one row, an accept with secrets" \
    "SELECT count(*) || ' ' || min(verdict) || ' ' || min(detail) FROM audit
     WHERE id > (SELECT max(id) - 1 FROM audit)" \
    "1 accept csv, with secrets (password hashes, card grids)"
same "... and no other" "SELECT count(*) FROM audit" $((ROWS + 1))
# Its row refused: nothing is written, no file is left.
check "the store refuses the export's audit row" \
    store_fail no_cexport audit INSERT "NEW.action = 'contract.export'" \
    "audit refused by the test"
exits_saying 2 "^shinkin-otp: export refused: its audit row cannot be written: .*$STORE_KIND .*audit refused by the test" \
    "export --with-secrets: its row refused, exit 2, said so" \
    cli export --with-secrets --output "$SB/y.csv"
check "... and no file is left, named or temporary" \
    sh -c '! ls "$1"/y.csv* >/dev/null 2>&1' sh "$SB"
check "mend the store" store_mend no_cexport audit
# The file is named in one transaction with its row. SQLite: the tool
# is held before that transaction (its lines written) by a second
# connection holding the store's write lock, and the file's name is
# taken meanwhile: the link is refused, the row undone, the attempt
# recorded as an error. It used to be named after its row was written.
if [ "$STORE_KIND" = sqlite ]; then
	sed -e 's/^lock_timeout *=.*/lock_timeout = 60000/' "$CONF" >"$SB/slow.conf"
	mkfifo "$SB/lockfifo"
	lock_held "$STORE" "$SB/lockfifo" "$SB/locker.out"
	locker=$LOCKER
	check "a second connection holds the store's write lock" \
	    grep -qx locked "$SB/locker.out"
	ROWS=$(q "SELECT count(*) FROM audit")
	mkdir "$SB/race"
	held_in "$SB/race" "export --output" export --with-secrets \
	    --output "$SB/race/x.csv"
	ex_pid=$HELD_PID
	echo "another's" >"$SB/race/x.csv"
	echo 'ROLLBACK;' >&8
	exec 8>&-
	wait "$locker"
	wait "$ex_pid"
	check "... its name taken meanwhile: exit 2" test $? -eq 2
	check "... one line saying so" sh -c \
	    '[ "$(wc -l <"$1")" -eq 1 ] &&
	    grep -q "^shinkin-otp: export: $2: it appeared meanwhile (not overwritten)" "$1"' \
	    sh "$ERR" "$SB/race/x.csv"
	check "... the other's file untouched, nothing beside it" sh -c \
	    '[ "$(cat "$1/x.csv")" = "another'"'"'s" ] &&
	    [ "$(ls -A "$1")" = x.csv ]' sh "$SB/race"
	same "... one row" "SELECT count(*) FROM audit" $((ROWS + 1))
	same "... recording the attempt as an error, not an export" \
	    "SELECT verdict || ' ' || detail FROM audit ORDER BY id DESC LIMIT 1" \
	    "error csv, with secrets (password hashes, card grids): $SB/race/x.csv: it appeared meanwhile (not overwritten)"
fi
# PostgreSQL can refuse the row's transaction at its COMMIT (a deferred
# constraint trigger): the file named in it is removed.
if [ "$STORE_KIND" = postgresql ]; then
	check "the store refuses the export's COMMIT" store_sql "
	    CREATE FUNCTION $STORE_SCHEMA.no_commit() RETURNS trigger
	    LANGUAGE plpgsql AS \$\$BEGIN
	    IF NEW.action = 'contract.export' THEN
	    RAISE EXCEPTION 'commit refused by the test'; END IF;
	    RETURN NEW; END\$\$;
	    CREATE CONSTRAINT TRIGGER no_commit AFTER INSERT
	    ON $STORE_SCHEMA.audit DEFERRABLE INITIALLY DEFERRED
	    FOR EACH ROW EXECUTE FUNCTION $STORE_SCHEMA.no_commit()"
	ROWS=$(q "SELECT count(*) FROM audit")
	exits_saying 2 "^shinkin-otp: export refused: its audit row cannot be written: .*commit refused by the test" \
	    "export --output: its COMMIT refused, exit 2, said so" \
	    cli export --with-secrets --output "$SB/z.csv"
	check "... and the file it named is removed" \
	    sh -c '! ls "$1"/z.csv* >/dev/null 2>&1' sh "$SB"
	same "... and no row says it was exported" \
	    "SELECT count(*) FROM audit" "$ROWS"
	check "mend the store" store_mend no_commit audit
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

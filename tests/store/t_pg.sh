#!/bin/sh
# The PostgreSQL back end, on a private server that this suite starts and
# always stops (scripts/pg-test-server.sh): the store unit tests
# (test_store with SOTP_TEST_STORE_URL, each test on an emptied schema;
# their cmocka summary is relayed for tests/run.sh to count), then the
# engine end to end through the CLI with oathtool as the token, a
# two-process race on one code, PG_RACE_ROUNDS (50) times, and two
# processes binding at once, PG_BIND_RACE_ROUNDS (20) times; health on a
# healthy, a read-only and a stopped server.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"

SB=$(mktemp -d "${TMPDIR:-/tmp}/sotp-pgt.XXXXXX")
# Short: the server's socket lives in it (sun_path holds 107 bytes).
PGDIR=$(mktemp -d /tmp/sotp-pg.XXXXXX)
PGCTL="$TOP/scripts/pg-test-server.sh"
OUT=$SB/out
ERR=$SB/err
ROUNDS=${PG_RACE_ROUNDS:-50}
cleanup() {
	sh "$PGCTL" stop "$PGDIR" >/dev/null 2>&1
	rm -rf "$SB" "$PGDIR"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

if ! URL=$(sh "$PGCTL" start "$PGDIR" 2>"$SB/start.err"); then
	notok "private PostgreSQL server starts"
	sed 's/^/#   /' "$SB/start.err"
	echo "1..$TAPN"
	exit 1
fi
ok "private PostgreSQL server starts"

# -- the store's own tests, against PostgreSQL --
SOTP_TEST_STORE_URL=$URL "$BUILD/tests/test_store" >"$SB/unit.log" 2>&1
unit=$?
cat "$SB/unit.log"

# -- the engine end to end: init makes the schema in the named database --
CONF=$SB/shinkin-otp.conf
SHINKIN_OTP_CONFIG=$CONF
export SHINKIN_OTP_CONFIG
awk -v u="$URL" '
	/^store = / { print "store = " u; next }
	/^master_key = / { print "master_key = master.key"; next }
	{ print }' "$TOP/conf/shinkin-otp.conf" >"$CONF"
check "init creates the schema in PostgreSQL" cli init
check "init twice is harmless" cli init
check "init names the pg store" contains "$OUT" "store: postgresql:"
# A password in the URL (trust authentication ignores it) is never shown.
sed "s|^store = .*|&\\&password=hunter2|" "$CONF" >"$SB/pw.conf"
check "a password in the URL reaches the policy" grep -q "hunter2" "$SB/pw.conf"
check "check-config with a password in the URL" cli --config "$SB/pw.conf" check-config
check "check-config masks the password" \
    sh -c '! grep -q hunter2 "$1" "$2" && grep -q "password=\*\*\*" "$1"' sh "$OUT" "$ERR"

S=$(secret)
fresh_step 8
check "token add, contract add, bind with the current code" provision PG1 "$S" PGC1
# One code, read once: computed twice, a step ending between the two
# verifies would make the second a new code, accepted.
C=$(totp "$S" 30)
check "verify accepts the next code" cli verify PGC1 --otp "$C"
refused REPLAYED "the same code again is refused as a replay" \
    cli verify PGC1 --otp "$C"
check "audit lists the contract's decisions" cli audit --contract PGC1
check "audit has the bind" contains "$OUT" "contract.bind accept ACCEPTED"
check "audit has the accept" contains "$OUT" "auth accept ACCEPTED"
check "audit has the replay" contains "$OUT" "auth reject REPLAYED"
check "unbind" cli contract unbind PGC1
check "close after unbind" cli contract close PGC1

# -- contract import and export on PostgreSQL: all or nothing, one
#    transaction (a refused migration binding in it must not abort it) --
check "gen_contracts: 300 records" "$BUILD/tests/gen_contracts" 300 csv "$SB/c.csv" PG
check "contract import into PostgreSQL" cli contract import "$SB/c.csv"
check "imported 300" contains "$OUT" "imported 300 contracts"
check "an imported password verifies" clin pw-PG0000002 verify PG0000002 --context mobile
H=$(sed -n 's/^PG0000003,\([^,]*\),.*/\1/p' "$SB/c.csv")
check "a token for a migration binding" cli token add PGM1 --secret "$(secret)"
printf 'PGB1,%s,otp,,PGM1,active\nPGB2,%s\n' "$H" "$H" >"$SB/mb.csv"
check "a migration binding in PostgreSQL" cli contract import "$SB/mb.csv"
check "one binding" contains "$OUT" "(1 with a migration binding)"
printf 'PGB3,%s\nPGB4,%s,otp,,PGM1\n' "$H" "$H" >"$SB/bad.csv"
check_rc 1 "a token bound already: refused, nothing imported" cli contract import "$SB/bad.csv"
check "line 2 named" contains "$ERR" "bad.csv:2: refused: token 'PGM1' is bound to contract 'PGB1'"
refused UNKNOWN_CONTRACT "PGB3 was not half-imported" cli contract show PGB3
check "export from PostgreSQL" sh -c 'test "$("$1" export --with-secrets | grep -c "^PG[0-9B]")" -eq 302' sh "$CLI"
check_rc 2 "backup names PostgreSQL's own tools" cli backup "$SB/pg.bk"
check "pg_dump named" contains "$ERR" "pg_dump"

# -- two processes, one code: exactly one accept, as with SQLite --
race_rounds "$ROUNDS" R
# -- two processes bind at once: exactly one binding, as with SQLite --
bind_race_rounds "${PG_BIND_RACE_ROUNDS:-20}" B

# -- the audit chain on a farm: processes appending at once make one chain
# (the head row FOR UPDATE orders them), and an edit is found --
check "audit verify: the chain of everything above verifies" cli audit verify
psql_q() { psql "$URL" -Atqc "$1"; }
appender() { # PREFIX: 20 contracts added, each one audit row
	for _i in $(seq 1 20); do
		printf 'pw\n' | "$CLI" contract add "$1$_i" >/dev/null 2>&1
	done
}
appender AP &
ap1=$!
appender AQ &
ap2=$!
appender AR
wait $ap1 $ap2
check "three processes appended 60 rows at once" \
    [ "$(psql_q "SELECT count(*) FROM audit WHERE action = 'contract.add' AND contract LIKE 'A_%'")" = 60 ]
check "  and the chain verifies" cli audit verify
# Rows no walk reaches (no seq, seq 0, a keyed flag not 0 or 1) and a
# trail emptied with its heads set back: each found, then undone.
for how in "NULL, mac, 1, kv, chain" "0, mac, 1, kv, chain" \
    "NULL, NULL, 7, kv, chain" "NULL, NULL, NULL, NULL, NULL"; do
	psql_q "INSERT INTO audit (ts, action, contract, serial, context,
	    verdict, reason, detail, seq, mac, keyed, kv, chain) SELECT ts,
	    'contract.close', 'X', serial, context, verdict, reason, detail,
	    $how FROM audit WHERE seq = 2 ORDER BY id LIMIT 1" >/dev/null
	check_rc 1 "a row the walk does not reach is found ($how)" cli audit verify
	check "  in no chain" contains "$ERR" "inserted out of order: in no chain"
	psql_q "DELETE FROM audit WHERE contract = 'X'" >/dev/null
done
psql_q "CREATE TABLE audit_keep AS SELECT * FROM audit;
    CREATE TABLE audit_head_keep AS SELECT * FROM audit_head;
    DELETE FROM audit; UPDATE audit_head SET seq = 0, mac = NULL, tag = NULL,
    kv = 0" >/dev/null
check_rc 1 "a trail emptied with its heads set back is found" cli audit verify
check "  every chain empty" contains "$ERR" "every chain is empty"
check "  then a contract added: a chain begun again" \
    sh -c 'printf "pw\n" | "$1" contract add PGW0 >/dev/null' sh "$CLI"
check_rc 1 "  the trail emptied and begun again is found" cli audit verify
check "  no chain begins at the store's first row" contains "$ERR" \
    "no chain begins at the store's first row (key.create) or at a prune's base"
psql_q "DELETE FROM audit;
    INSERT INTO audit OVERRIDING SYSTEM VALUE SELECT * FROM audit_keep;
    DELETE FROM audit_head;
    INSERT INTO audit_head SELECT * FROM audit_head_keep;
    DROP TABLE audit_keep; DROP TABLE audit_head_keep" >/dev/null
check "  and put back, the chains verify" cli audit verify
# One chain's rows past its base removed and its head set back on the
# base, the other chains as they were: found, then undone.
psql_q "CREATE TABLE audit_keep AS SELECT * FROM audit;
    CREATE TABLE audit_head_keep AS SELECT * FROM audit_head" >/dev/null
check "a prune of every row so far" cli audit prune --before "$(($(date +%s) + 1))"
appender AS
K=$(psql_q "SELECT k FROM audit_head WHERE seq > base_seq AND base_seq > 0
    ORDER BY k LIMIT 1")
check "  then a chain with rows past its base ($K)" [ -n "$K" ]
check "  and the chains verify" cli audit verify
psql_q "DELETE FROM audit WHERE chain = $K; UPDATE audit_head SET
    seq = base_seq, mac = base_mac, tag = NULL WHERE k = $K" >/dev/null
check_rc 1 "a chain's rows past its base removed, its head set back on it, is found" \
    cli audit verify
# (Chain 1's name goes without its number, as on SQLite.)
what="the chain's head (seq"
[ "$K" -gt 1 ] && what="chain $K: $what"
check "  and named: its head" contains "$ERR" "$what"
psql_q "DELETE FROM audit; INSERT INTO audit OVERRIDING SYSTEM VALUE
    SELECT * FROM audit_keep; DELETE FROM audit_head;
    INSERT INTO audit_head SELECT * FROM audit_head_keep;
    DROP TABLE audit_keep; DROP TABLE audit_head_keep" >/dev/null
check "  and put back, the chains verify" cli audit verify
# One chain's last row removed and its head moved back onto the row
# before, then contracts added until an append reaches that chain: it
# writes a row saying so, which verify names. Then undone.
psql_q "CREATE TABLE audit_keep AS SELECT * FROM audit;
    CREATE TABLE audit_head_keep AS SELECT * FROM audit_head" >/dev/null
K=$(psql_q "SELECT k FROM audit_head ORDER BY seq DESC, k LIMIT 1")
N=$(psql_q "SELECT seq FROM audit_head WHERE k = $K")
psql_q "DELETE FROM audit WHERE chain = $K AND seq = $N;
    UPDATE audit_head SET seq = $N - 1, mac = (SELECT mac FROM audit
    WHERE chain = $K AND seq = $N - 1) WHERE k = $K" >/dev/null
i=0
while [ "$(psql_q "SELECT seq FROM audit_head WHERE k = $K")" -lt "$N" ] &&
    [ $i -lt 300 ]; do
	i=$((i + 1))
	printf 'pw\n' | "$CLI" contract add "AT$i" >/dev/null 2>&1
done
check "an append reached chain $K, its end cut and head moved back ($i adds)" \
    [ "$(psql_q "SELECT count(*) FROM audit WHERE chain = $K AND seq = $N
    AND action = 'audit.head' AND verdict = 'error'")" = 1 ]
check_rc 1 "  the cut is found after it" cli audit verify
what="(seq $N): an append found the chain's head set back"
[ "$K" -gt 1 ] && what="chain $K: row"
check "  and named: the row the append wrote" contains "$ERR" "$what"
check "  only that chain's append wrote one" \
    [ "$(psql_q "SELECT count(*) FROM audit WHERE action = 'audit.head'")" = 1 ]
ID=$(psql_q "SELECT id FROM audit WHERE action = 'audit.head'")
check_rc 1 "  a prune is refused while it is named" \
    cli audit prune --before "$(($(date +%s) + 1))"
check "  audit prune --past $ID, once looked into, prunes past it" \
    cli audit prune --before "$(($(date +%s) + 1))" --past "$ID"
check "  and every chain verifies" cli audit verify
check "  the row is gone" \
    [ "$(psql_q "SELECT count(*) FROM audit WHERE action = 'audit.head'")" = 0 ]
psql_q "DELETE FROM audit; INSERT INTO audit OVERRIDING SYSTEM VALUE
    SELECT * FROM audit_keep; DELETE FROM audit_head;
    INSERT INTO audit_head SELECT * FROM audit_head_keep;
    DROP TABLE audit_keep; DROP TABLE audit_head_keep" >/dev/null
check "  and put back, the chains verify" cli audit verify
# A row in a waiting row's shape (no key, not chained): listed as such.
psql_q "INSERT INTO audit (ts, action, contract, serial, context, verdict,
    reason, detail, keyed, chain) VALUES (0, 'contract.unlock', 'W1', '',
    '', 'accept', 0, '', 0, 3)" >/dev/null
check "audit lists a waiting row as written without the key" \
    sh -c "'$CLI' audit --contract W1 | grep -q 'contract.unlock accept ACCEPTED.* nokey=waiting\$'"
check "  and a chained one as it is" \
    sh -c "'$CLI' --json audit --contract PGC1 | grep -q '\"seq\":[1-9][0-9]*,\"keyed\":1}'"
psql_q "DELETE FROM audit WHERE contract = 'W1'" >/dev/null
psql_q "UPDATE audit SET detail = 'edited' WHERE seq = 3" >/dev/null
check_rc 1 "an edited row is found" cli audit verify
check "  and named" contains "$ERR" "(seq 3) changed"

# -- health on PostgreSQL: a real write round trip, then a read-only
# database (as a standby would be) --
check "health: healthy on PostgreSQL" cli health
check "health: the store check names the server" \
    grep -q "^store   ok .*host=$PGDIR" "$OUT"
ADMIN_URL=$(echo "$URL" | sed 's|///sotp?|///postgres?|')
psql -q "$ADMIN_URL" -c "ALTER DATABASE sotp SET default_transaction_read_only = on"
cli health
rc=$?
check "health: a read-only database fails the write check (exit $rc)" \
    sh -c '[ "$1" -eq 1 ] && grep -q "^store   ok" "$2" && grep -q "^write   failed .*read-only" "$2"' sh "$rc" "$OUT"
cli --json health
check "health --json: write failed, store ok" \
    sh -c 'grep -q "\"store\":\"ok\"" "$1" && grep -q "\"write\":\"failed\"" "$1"' sh "$OUT"
psql -q "$ADMIN_URL" -c "ALTER DATABASE sotp RESET default_transaction_read_only"
check "health: healthy again" cli health

# -- the server goes away: fail closed, name the server, no accept --
sh "$PGCTL" stop "$PGDIR" >/dev/null 2>&1
cli verify R1 --otp "$(totp "$(secret)")"
rc=$?
check "store down: verify refuses (exit $rc)" test "$rc" -ne 0
check "store down: the message names the server" contains "$ERR" "$PGDIR"
cli health
rc=$?
check "store down: health fails the store check and skips the write (exit $rc)" \
    sh -c '[ "$1" -eq 1 ] && grep -q "^store   failed .*$3" "$2" && grep -q "^write   skipped" "$2"' sh "$rc" "$OUT" "$PGDIR"

echo "1..$TAPN"
# A cmocka failure is already counted from its summary; make it fail too.
[ "$unit" -eq 0 ]

#!/bin/sh
# Operations: "shinkin-otp health" (one case for each failure it names,
# in text and JSON, with its exit code) and "shinkin-otp metrics" (the
# counters every process adds to, in the Prometheus text format).
# PostgreSQL's own cases (server down, read-only database, standby) are
# in tests/store/t_pg.sh and tests/farm/t_failover.sh.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
KEY=$(conf_path master_key)
STORE=$(conf_path store)
METRICS=$(conf_path metrics)

# health_is EXIT STATES WHAT: runs health (text, then --json) and checks
# the exit code of both, the four states in the text ("policy=ok
# key=failed ..."), and the same states in the JSON.
health_is() {
	_want=$1
	_states=$2
	_what=$3
	cli health
	_got=$?
	_seen=$(awk '$1 ~ /^(policy|key|store|write)$/ { printf "%s%s=%s", s, $1, $2; s = " " }' "$OUT")
	if [ "$_got" -eq "$_want" ] && [ "$_seen" = "$_states" ]; then
		ok "health: $_what (exit $_got)"
	else
		notok "health: $_what (exit $_got, want $_want; $_seen, want $_states)"
		sed 's/^/#   /' "$OUT" "$ERR"
	fi
	cli --json health
	_got=$?
	_j=$(echo "$_states" | sed 's/\([a-z]*\)=\([a-z]*\)/"\1":"\2"/g; s/ /|/g')
	_n=$(grep -o -E "$_j" "$OUT" | wc -l)
	if [ "$_got" -eq "$_want" ] && [ "$_n" -eq 4 ] &&
	    grep -q "\"healthy\":$([ "$_want" -eq 0 ] && echo true || echo false)" "$OUT"; then
		ok "health --json: $_what"
	else
		notok "health --json: $_what (exit $_got, $_n of 4 states)"
		sed 's/^/#   /' "$OUT" "$ERR"
	fi
}

# ---- health ----
# init's own rows (key.create): health must add none.
ROWS=$("$CLI" audit | grep -c .)
health_is 0 "policy=ok key=ok store=ok write=ok" "a fresh sandbox is healthy"
check "health: the last line says healthy" \
    sh -c '"$1" health | tail -n 1 | grep -qx healthy' sh "$CLI"
check "health leaves no row behind (no audit row either: still $ROWS)" \
    sh -c '"$1" audit | grep -c . | grep -qx "$2"' sh "$CLI" "$ROWS"

check_rc 2 "health: an argument is a usage error (exit 2)" cli health extra
check_rc 2 "health: an unknown option is a usage error (exit 2)" cli health --bogus

cp "$CONF" "$SB/good.conf"
printf '[nosuch]\n' >>"$CONF"
health_is 1 "policy=failed key=skipped store=skipped write=skipped" \
    "a bad policy file fails the policy check"
check "health: the policy failure names file and line" \
    sh -c '"$1" health | grep -q "^policy  failed .*shinkin-otp.conf:[0-9]*: unknown section \[nosuch\]"' sh "$CLI"
check "health: the last line names what failed" \
    sh -c '"$1" health | tail -n 1 | grep -qx "unhealthy: policy"' sh "$CLI"
cp "$SB/good.conf" "$CONF"
mv "$CONF" "$CONF.away"
health_is 1 "policy=failed key=skipped store=skipped write=skipped" \
    "a missing policy file fails the policy check"
mv "$CONF.away" "$CONF"

mv "$KEY" "$KEY.away"
health_is 1 "policy=ok key=failed store=ok write=ok" \
    "a missing master key fails the key check alone"
check "health: the key failure is named in JSON" \
    sh -c '"$1" --json health | grep -q "\"key_error\":\"SOTP_ERR_KEY\""' sh "$CLI"
mv "$KEY.away" "$KEY"
chmod 0644 "$KEY"
health_is 1 "policy=ok key=failed store=ok write=ok" \
    "a master key readable by others fails the key check"
chmod 0600 "$KEY"

mv "$STORE" "$STORE.away"
health_is 1 "policy=ok key=ok store=failed write=skipped" \
    "a missing store fails the store check; the write is not tried"
check "health does not create a missing store" test ! -e "$STORE"
mv "$STORE.away" "$STORE"

# A store its user may read but not write: as nobody, on a copy nobody
# owns (root writes through any mode).
U=$(mktemp -d "${TMPDIR:-/tmp}/sotp-ops-nobody.XXXXXX")
chmod 755 "$U"
cp "$KEY" "$STORE" "$U/"
sed -e "s|^store *=.*|store = sqlite:$U/$(basename "$STORE")|" \
    -e "s|^master_key *=.*|master_key = $U/$(basename "$KEY")|" \
    -e "s|^metrics *=.*|metrics = none|" "$CONF" >"$U/p.conf"
chown -R nobody:nogroup "$U"
chmod 0400 "$U/$(basename "$STORE")"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
as_nobody "$CLI" --config "$U/p.conf" health >"$OUT" 2>"$ERR"
rc=$?
check "health: a read-only store fails the write check (exit $rc)" \
    sh -c '[ "$1" -eq 1 ] && grep -q "^store   ok" "$2" && grep -q "^write   failed .*readonly" "$2"' sh "$rc" "$OUT"
as_nobody "$CLI" --config "$U/p.conf" --json health >"$OUT" 2>"$ERR"
check "health --json: the write failure is named" \
    grep -q '"write":"failed".*"write_error":"SOTP_ERR_STORE_UNAVAILABLE"' "$OUT"
rm -rf "$U"
health_is 0 "policy=ok key=ok store=ok write=ok" "healthy again once repaired"

# ---- metrics ----
# metric NAME LABELS: the value of one series in $OUT, or 0.
metric() {
	awk -v k="$1{$2}" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$OUT"
}

rm -f "$METRICS"
check "metrics before anything was counted: zeros, exit 0" cli metrics
check "metrics: TYPE lines of every family" \
    test "$(grep -c '^# TYPE shinkin_otp_' "$OUT")" -eq 4
check "metrics: no decision yet" test "$(grep -c '^shinkin_otp_decisions_total' "$OUT")" -eq 0

S=$(secret)
fresh_step 8
check "provision" provision T1 "$S" C1
# One code, read once: computed again, a step ending between the two
# verifies makes the second a new code, and it is accepted.
C=$(totp "$S" 30)
check "verify: accepted" cli verify C1 --context transaction --otp "$C"
check_rc 1 "verify: the same code is refused" cli verify C1 --context transaction --otp "$C"
check_rc 1 "verify: a wrong code is refused" cli verify C1 --context transaction --otp "$(wrong_code "$S")"
check_rc 1 "verify: an unknown contract is refused" cli verify NOSUCH --context transaction --otp 123456
check "metrics" cli metrics
check "metrics: one accept in transaction" \
    test "$(metric shinkin_otp_decisions_total 'context="transaction",verdict="accept",reason="ACCEPTED"')" -eq 1
check "metrics: one replay" \
    test "$(metric shinkin_otp_decisions_total 'context="transaction",verdict="reject",reason="REPLAYED"')" -eq 1
check "metrics: one wrong code" \
    test "$(metric shinkin_otp_decisions_total 'context="transaction",verdict="reject",reason="WRONG_CODE"')" -eq 1
# Counted as the customer was told it: under unknown_contract = hide, an
# unknown contract in a context without a password reads as one without
# a token (the audit row alone says UNKNOWN_CONTRACT).
check "metrics: one unknown contract, counted as what it read as (NOT_BOUND)" \
    test "$(metric shinkin_otp_decisions_total 'context="transaction",verdict="reject",reason="NOT_BOUND"')" -eq 1
check "metrics: under hide, no UNKNOWN_CONTRACT series" \
    test "$(grep -c 'reason="UNKNOWN_CONTRACT"' "$OUT")" -eq 0
check "metrics: the histogram counted the 4 decisions" \
    test "$(metric shinkin_otp_decision_duration_seconds_count 'context="transaction"')" -eq 4
check "metrics: +Inf bucket equals the count" \
    test "$(metric shinkin_otp_decision_duration_seconds_bucket 'context="transaction",le="+Inf"')" -eq 4
check "metrics: buckets only grow" \
    sh -c 'grep "^shinkin_otp_decision_duration_seconds_bucket{context=\"transaction\"" "$1" | awk "{ if (\$2 < p) exit 1; p = \$2 }"' sh "$OUT"
check_rc 1 "an undefined context is refused" cli verify C1 --context nosuch --otp 123456
check "metrics: undefined contexts count under \"-\"" \
    sh -c '"$1" metrics | grep -q "^shinkin_otp_decisions_total{context=\"-\",verdict=\"reject\",reason=\"UNKNOWN_CONTEXT\"} 1$"' sh "$CLI"

# Eight processes at once, 25 refusals each: every one counted.
cli metrics
before=$(metric shinkin_otp_decisions_total 'context="transaction",verdict="reject",reason="NOT_BOUND"')
k=0
while [ $k -lt 8 ]; do
	(j=0; while [ $j -lt 25 ]; do "$CLI" verify "NO$k" --context transaction --otp 123456 >/dev/null 2>&1; j=$((j + 1)); done) &
	k=$((k + 1))
done
wait
cli metrics
after=$(metric shinkin_otp_decisions_total 'context="transaction",verdict="reject",reason="NOT_BOUND"')
check "metrics: 200 decisions from 8 processes at once, all counted ($before -> $after)" \
    test "$after" -eq $((before + 200))

# unknown_contract = reveal: the customer is told, and so are the counters.
sed -i 's|^unknown_contract *=.*|unknown_contract = reveal|' "$CONF"
check "unknown_contract = reveal set" grep -qx 'unknown_contract = reveal' "$CONF"
check_rc 1 "reveal: an unknown contract is refused" cli verify NOSUCH --context transaction --otp 123456
cli metrics
check "metrics: under reveal, one UNKNOWN_CONTRACT" \
    test "$(metric shinkin_otp_decisions_total 'context="transaction",verdict="reject",reason="UNKNOWN_CONTRACT"')" -eq 1
sed -i 's|^unknown_contract *=.*|unknown_contract = hide|' "$CONF"

check "metrics --output writes the file" cli metrics --output "$SB/otp.prom"
check "metrics --output: same text as stdout, mode 0644, no temp file left" \
    sh -c '"$1" metrics | cmp -s - "$2" && [ "$(stat -c %a "$2")" = 644 ] && [ "$(ls "$3" | grep -c "otp.prom.*tmp")" -eq 0 ]' \
    sh "$CLI" "$SB/otp.prom" "$SB"
check "the counters file is group-writable for radiusd's user (0660)" \
    test "$(stat -c %a "$METRICS")" = 660
check_rc 2 "metrics --json is a usage error" cli --json metrics
head -c 100 /dev/zero >"$METRICS"
check_rc 2 "metrics: a file of another layout is an error" cli metrics
check "metrics: the error names the file" grep -q "not a counters file" "$ERR"
check "a decision still works with a bad counters file" \
    clin pw-C1 verify C1 --context mobile
sed -i 's|^metrics *=.*|metrics = none|' "$CONF"
check_rc 2 "metrics = none: metrics is an error" cli metrics
check "metrics = none: the error says so" grep -q "metrics = none" "$ERR"

echo "1..$TAPN"

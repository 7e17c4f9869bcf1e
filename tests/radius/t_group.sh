#!/bin/sh
# Group commit in radiusd (issue 13): the module's threads write through
# one writer, and concurrent decisions share one COMMIT.
#   - GROUP_N (1,000) codes at once, 128 in flight: every one accepted, and
#     every one durable (a replay mark and an audit row each, read from the
#     file afterwards), and every one refused when sent again;
#   - a load of KILL_N (3,000) codes during which radiusd is killed with
#     SIGKILL: every code answered Access-Accept has its mark in the file
#     (0 lost), and is refused by the restarted radiusd;
#   - group_commit = no still works (each thread writes for itself).
# Requests go through tests/tools/radload (signed, every reply verified);
# the contracts are bulk-loaded (tests/tools/provision bulk), one secret
# for all, so one code of now serves every contract.
. "$TOP/tests/lib.sh"
. "$TOP/tests/radius/lib.sh"

GROUP_N=${GROUP_N:-1000}
KILL_N=${KILL_N:-3000}
RLM_SO=${RLM_SO:-$BUILD/rlm_shinkin_otp.so}
RADLOAD=$BUILD/tests/radload
PROVISION=$BUILD/tests/provision
B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ # provision's bulk secret

for b in freeradius oathtool sqlite3; do
	command -v "$b" >/dev/null ||
		{ notok "$b installed (sh scripts/deps.sh)"; exit 1; }
done
for f in "$RLM_SO" "$RADLOAD" "$PROVISION"; do
	[ -e "$f" ] || { notok "built: $f"; exit 1; }
done
if readelf -d "$RLM_SO" 2>/dev/null | grep -q 'libasan'; then
	. "$TOP/tests/radius/ubsan.sh"
	ubsan_module || exit 1
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/sotp-group.XXXXXX")
trap 'fr_stop_all; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP
DB=$T/s.db
CONF=$T/shinkin-otp.conf
awk -v d="$T" '
	/^store = / { print "store = sqlite:" d "/s.db"; next }
	/^master_key = / { print "master_key = " d "/master.key"; next }
	/^metrics = / { print "metrics = " d "/metrics"; next }
	{ print }' "$TOP/conf/shinkin-otp.conf" >"$CONF"
check "init" sh -c '"$1" --config "$2" init >"$3/init.log" 2>&1' sh "$CLI" \
    "$CONF" "$T"
HASH=$("$PROVISION" hash "$CONF" pw-group)
if "$PROVISION" bulk "$CONF" sqlite "$HASH" g "$GROUP_N" k "$KILL_N" \
    n 100 | sqlite3 "$DB" >"$T/load.log" 2>&1; then
	ok "bulk-load $((GROUP_N + KILL_N + 100)) contracts"
else
	notok "bulk-load"
	sed 's/^/#   /' "$T/load.log"
	exit 1
fi

q() { sqlite3 "$DB" "$1"; }
now_step() { echo $(($(date +%s) / 30)); }
# Waits until at least 10 s remain of the current step: the codes of a
# phase are then of one step, and still good when the phase ends.
step_room() {
	while [ $((30 - $(date +%s) % 30)) -lt 10 ]; do sleep 1; done
}
code() { oathtool --totp -b -d 6 "$B32"; }
lines() { # PREFIX COUNT CODE
	awk -v p="$1" -v n="$2" -v c="$3" 'BEGIN { for (i = 0; i < n; i++)
		printf "id=%s%d User-Name=%s%d User-Password=%s\n", p, i, p, i, c }'
}
counts() { # FILE: accept reject timeout invalid
	awk '{ n[$3]++ } END { printf "%d %d %d %d\n", n["accept"],
	    n["reject"], n["timeout"], n["invalid"] }' "$1"
}

up() { # NAME [MORE MODULE SETTINGS]
	fr_setup "$T/$1"
	PORT=$(free_port)
	fr_write_conf "shinkin_otp {
	config = $CONF
	context = transaction
	${2:-}
}" "server group {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
		recv_buff = 4194304
	}
	authorize {
		shinkin_otp
	}
	authenticate {
		Auth-Type shinkin_otp {
			shinkin_otp
		}
	}
}"
	sed -i 's/^\(\tmax_servers = \).*/\132/; s/^\(\tstart_servers = \).*/\116/' \
	    "$FR_DIR/radiusd.conf"
	fr_start f
}

# ---- all at once, all durable ----
up ra || { notok "radiusd starts"; exit 1; }
step_room
S=$(now_step)
C=$(code)
lines g "$GROUP_N" "$C" >"$T/g.req"
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 128 -t 10000 -f "$T/g.req" \
    >"$T/g.out" 2>"$T/g.sum"
set -- $(counts "$T/g.out")
check "$GROUP_N codes at once, 128 in flight: all accepted ($1 accept, $2 reject, $3 timeout, $4 invalid)" \
    test "$1" -eq "$GROUP_N"
check "each accept's mark is in the file ($(q "SELECT count(*) FROM tokens WHERE serial LIKE 'tok-g%' AND last_step = $S") of $GROUP_N)" \
    test "$(q "SELECT count(*) FROM tokens WHERE serial LIKE 'tok-g%' AND last_step = $S")" -eq "$GROUP_N"
check "each accept's audit row is in the file" \
    test "$(q "SELECT count(*) FROM audit WHERE contract LIKE 'g%' AND verdict = 'accept'")" -eq "$GROUP_N"
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 128 -t 10000 -f "$T/g.req" \
    >"$T/g2.out" 2>"$T/g2.sum"
set -- $(counts "$T/g2.out")
check "the same codes again: all refused ($1 accept, $2 reject)" \
    test "$2" -eq "$GROUP_N"
check "radiusd's log has no store error" \
    sh -c '! grep -i "store\|sqlite" "$1"/log/radius.log | grep -qi "error\|fail"' \
    sh "$FR_DIR"

# ---- SIGKILL during a load ----
step_room
S=$(now_step)
C=$(code)
lines k "$KILL_N" "$C" >"$T/k.req"
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 64 -t 1000 -R 1500 \
    -f "$T/k.req" >"$T/k.out" 2>"$T/k.sum" &
LPID=$!
# radload's output is buffered: the file says when enough has landed
# (up to 60 s: a busy host may be slow to land them).
i=0
while [ "$(q "SELECT count(*) FROM audit WHERE contract LIKE 'k%'")" -lt 300 ] &&
    [ $i -lt 1200 ]; do
	sleep 0.05
	i=$((i + 1))
done
kill -9 "$FR_PID"
wait "$FR_PID" 2>/dev/null
FR_PID=""
wait "$LPID"
set -- $(counts "$T/k.out")
echo "# figure: SIGKILL after $(($1 + $2)) answers: $1 accepted, $2 refused, $3 unanswered of $KILL_N"
check "the kill came during the load (accepts $1 > 0, unanswered $3 > 0)" \
    test "$1" -gt 0 -a "$3" -gt 0
awk '$3 == "accept" { print $1 }' "$T/k.out" | sort >"$T/k.acc"
q "SELECT c.id FROM contracts c JOIN tokens t ON t.serial = c.serial
    WHERE c.id LIKE 'k%' AND t.last_step >= $S" | sort >"$T/k.marked"
lost=$(comm -23 "$T/k.acc" "$T/k.marked" | wc -l)
check "every code answered Access-Accept has its mark in the file ($lost lost)" \
    test "$lost" -eq 0
noaudit=$(q "SELECT id FROM contracts WHERE id LIKE 'k%' AND id NOT IN
    (SELECT contract FROM audit WHERE verdict = 'accept')" | sort |
    comm -12 "$T/k.acc" - | wc -l)
check "and its audit row ($noaudit missing)" test "$noaudit" -eq 0
up rb || { notok "radiusd starts again"; exit 1; }
grep -F -f "$T/k.acc" -w "$T/k.req" >"$T/k2.req"
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 64 -t 10000 -f "$T/k2.req" \
    >"$T/k2.out" 2>"$T/k2.sum"
set -- $(counts "$T/k2.out")
check "after the restart, every one of them is refused ($1 accept, $2 reject of $(wc -l <"$T/k2.req"))" \
    test "$1" -eq 0 -a "$2" -eq "$(wc -l <"$T/k2.req")"
fr_stop
"$CLI" --config "$CONF" audit verify >"$T/verify.out" 2>&1
rc=$?
check "the audit chain verifies after all that (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$T/verify.out"

# ---- without group commit ----
up rc "group_commit = no" || { notok "radiusd starts (group_commit = no)"; exit 1; }
step_room
lines n 100 "$(code)" >"$T/n.req"
# Four in flight: each thread's connection waits in SQLite's busy handler
# (what group commit replaces), and on a loaded machine sixteen could wait
# past lock_timeout and be refused, which is no news here.
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 4 -t 10000 -f "$T/n.req" \
    >"$T/n.out" 2>"$T/n.sum"
set -- $(counts "$T/n.out")
check "group_commit = no: 100 codes, all accepted ($1 accept, $2 reject, $3 timeout)" \
    test "$1" -eq 100
fr_stop

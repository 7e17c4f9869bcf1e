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
#
# A phase's code is good until its window closes (window_back steps after
# its own): a phase that a slow host stretches past that is judged answer
# by answer against the store's audit row (judge below). An answer
# received before the window closed was decided inside it and is held to
# the full claim (accepted; or, sent again, refused as REPLAYED); only one
# received later may instead be refused as WRONG_CODE. Nothing else
# passes: the counts are exact, and an accept of a code sent again fails
# wherever it falls.
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
WB=$(sed -n 's/^window_back *= *\([0-9][0-9]*\).*/\1/p' "$CONF")
[ -n "$WB" ] || { notok "window_back in $CONF"; exit 1; }
# phase NAME: a phase starts. With fewer than 10 s left of the current
# step, waits for the next one (on a quiet host a phase then ends inside
# its code's window, and is judged in full). S is the step and C its code,
# read at one instant; CLOSE_US the first microsecond outside the code's
# window (the verifier's window_back steps later). MARKS: the steps an
# accept of C may be marked at, S and any of the window_back steps before
# it whose code is C too (the first match wins, common/token.c: once in a
# million per step, every contract is then marked there); MARK_LO the
# first of them.
phase() {
	while [ $((30 - $(date +%s) % 30)) -lt 10 ]; do sleep 1; done
	_now=$(date +%s)
	S=$((_now / 30))
	C=$(oathtool --totp -b -d 6 --now "@$_now" "$B32")
	CLOSE_US=$(((S + 1 + WB) * 30 * 1000000))
	MARKS=$S
	MARK_LO=$S
	_s=$((S - 1))
	while [ "$_s" -ge $((S - WB)) ]; do
		if [ "$(oathtool --totp -b -d 6 --now "@$((_s * 30))" "$B32")" = "$C" ]; then
			MARKS="$_s,$MARKS"
			MARK_LO=$_s
			echo "# step $_s shows the code of step $S too: marks there count" >&2
		fi
		_s=$((_s - 1))
	done
	PHASE_NAME=$1
	PHASE_T0=$_now
}
# phase_end: the phase's figure (how long it took, and the room its code
# had left).
phase_end() {
	_now=$(date +%s)
	echo "# figure: phase $PHASE_NAME: $((_now - PHASE_T0)) s, its code good for $((CLOSE_US / 1000000 - _now)) s more"
}
lines() { # PREFIX COUNT CODE
	awk -v p="$1" -v n="$2" -v c="$3" 'BEGIN { for (i = 0; i < n; i++)
		printf "id=%s%d User-Name=%s%d User-Password=%s\n", p, i, p, i, c }'
}
counts() { # FILE: accept reject timeout invalid
	awk '{ n[$3]++ } END { printf "%d %d %d %d\n", n["accept"],
	    n["reject"], n["timeout"], n["invalid"] }' "$1"
}
# judge load|again OUT PREFIX: each answer of radload's OUT (of PREFIX
# contracts, sent once: load; or sent a second time: again) against the
# audit rows of its contract, the first and the last. Prints "ACCEPTED
# LATE_REFUSED DOUBLE BAD": accepts; refusals as WRONG_CODE received after
# CLOSE_US (the code's window closed); accepts of a code sent again; and
# answers that are none of what may be, listed in OUT.bad:
#   load:  accept, whose first row is an accept; or, received after
#          CLOSE_US, reject with a first row WRONG_CODE (10);
#   again: reject whose last row is a later one than the first, and is
#          REPLAYED (11) when the first was an accept (received after
#          CLOSE_US, WRONG_CODE too), WRONG_CODE when it was not.
# A timeout or an invalid reply is BAD either way.
judge() {
	q "SELECT f.contract, f.verdict, f.reason, l.id > f.id, l.verdict,
	    l.reason FROM (SELECT contract, min(id) AS lo, max(id) AS hi
	    FROM audit WHERE action = 'auth' AND contract LIKE '$3%'
	    GROUP BY contract) m JOIN audit f ON f.id = m.lo
	    JOIN audit l ON l.id = m.hi" | tr '|' ' ' >"$2.rows"
	awk -v mode="$1" -v cl="$CLOSE_US" -v bad="$2.bad" '
	NR == FNR { fv[$1] = $2; fr[$1] = $3; two[$1] = $4; lv[$1] = $5
		lr[$1] = $6; next }
	{
		late = $6 + 0 >= cl + 0
		ok = 0
		if (mode == "load") {
			if ($3 == "accept" && fv[$1] == "accept")
				{ acc++; ok = 1 }
			else if ($3 == "reject" && late && fv[$1] == "reject" &&
			    fr[$1] == 10)
				{ lref++; ok = 1 }
		} else if ($3 == "accept") {
			dbl++
			print $0, "audit:", fv[$1], fr[$1], lv[$1], lr[$1] >bad
			next
		} else if ($3 == "reject" && two[$1] == 1 && lv[$1] == "reject") {
			if (fv[$1] == "accept")
				ok = lr[$1] == 11 || (late && lr[$1] == 10)
			else
				ok = lr[$1] == 10
			if (ok && lr[$1] == 10)
				lref++
		}
		if (!ok) {
			nbad++
			print $0, "audit:", fv[$1], fr[$1], lv[$1], lr[$1] >bad
		}
	}
	END { printf "%d %d %d %d\n", acc, lref, dbl, nbad }' "$2.rows" "$2"
}
# bad_lines OUT: the first of OUT.bad's lines, under a failed check.
bad_lines() {
	[ -s "$1.bad" ] && head -n 5 "$1.bad" | sed 's/^/#   /'
	return 0
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

# marks_match P "what" [MORE]: the contracts P% whose answer in $T/P.out
# was an accept are exactly those whose token holds the mark of C (of step
# $S, or of an earlier step in MARKS).
marks_match() {
	awk '$3 == "accept" { print $1 }' "$T/$1.out" | sort >"$T/$1.acc"
	q "SELECT c.id FROM contracts c JOIN tokens t ON t.serial = c.serial
	    WHERE c.id LIKE '$1%' AND t.last_step IN ($MARKS)" | sort >"$T/$1.marked"
	check "$2 ($(wc -l <"$T/$1.marked") marks${3:-})" \
	    cmp -s "$T/$1.acc" "$T/$1.marked"
}

# ---- all at once, all durable ----
up ra || { notok "radiusd starts"; exit 1; }
phase g
lines g "$GROUP_N" "$C" >"$T/g.req"
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 128 -t 10000 -f "$T/g.req" \
    >"$T/g.out" 2>"$T/g.sum"
n=$(wc -l <"$T/g.out")
set -- $(judge load "$T/g.out" g)
gacc=$1
check "$GROUP_N codes at once, 128 in flight: all accepted but those answered after their window closed ($1 accepted, $2 refused as WRONG_CODE after it, $4 otherwise, of $n answers)" \
    test "$n" -eq "$GROUP_N" -a "$4" -eq 0 -a $(($1 + $2)) -eq "$GROUP_N"
bad_lines "$T/g.out"
marks_match g "each accept's mark is in the file, and no other" ", $gacc accepts"
check "each accept's audit row is in the file" \
    test "$(q "SELECT count(*) FROM audit WHERE contract LIKE 'g%' AND verdict = 'accept'")" -eq "$gacc"
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 128 -t 10000 -f "$T/g.req" \
    >"$T/g2.out" 2>"$T/g2.sum"
n=$(wc -l <"$T/g2.out")
set -- $(judge again "$T/g2.out" g)
check "the same codes again: all refused, as REPLAYED ($3 accepted again, $2 refused as WRONG_CODE after their window closed, $4 otherwise, of $n answers)" \
    test "$n" -eq "$GROUP_N" -a "$3" -eq 0 -a "$4" -eq 0
bad_lines "$T/g2.out"
phase_end
check "radiusd's log has no store error" \
    sh -c '! grep -i "store\|sqlite" "$1"/log/radius.log | grep -qi "error\|fail"' \
    sh "$FR_DIR"

# ---- SIGKILL during a load ----
phase k
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
# The load has done its work: a second for radload to send into the dead
# port, then no more (the rest would only time out, a minute of it).
sleep 1
kill -USR1 "$LPID"
wait "$LPID"
set -- $(counts "$T/k.out")
echo "# figure: SIGKILL after $(($1 + $2)) answers: $1 accepted, $2 refused, $3 unanswered; $((KILL_N - $1 - $2 - $3 - $4)) of $KILL_N not sent"
check "the kill came during the load (accepts $1 > 0, unanswered $3 > 0)" \
    test "$1" -gt 0 -a "$3" -gt 0
awk '$3 == "accept" { print $1 }' "$T/k.out" | sort >"$T/k.acc"
q "SELECT c.id FROM contracts c JOIN tokens t ON t.serial = c.serial
    WHERE c.id LIKE 'k%' AND t.last_step >= $MARK_LO" | sort >"$T/k.marked"
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
n=$(wc -l <"$T/k2.out")
set -- $(judge again "$T/k2.out" k)
check "after the restart, every one of them is refused as REPLAYED ($3 accepted again, $2 refused as WRONG_CODE after their window closed, $4 otherwise, of $n answers to $(wc -l <"$T/k2.req"))" \
    test "$n" -eq "$(wc -l <"$T/k2.req")" -a "$n" -gt 0 -a "$3" -eq 0 -a "$4" -eq 0
bad_lines "$T/k2.out"
phase_end
fr_stop
"$CLI" --config "$CONF" audit verify >"$T/verify.out" 2>&1
rc=$?
check "the audit chain verifies after all that (exit $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || sed 's/^/#   /' "$T/verify.out"

# ---- without group commit ----
up rc "group_commit = no" || { notok "radiusd starts (group_commit = no)"; exit 1; }
phase n
lines n 100 "$C" >"$T/n.req"
# Four in flight: each thread's connection waits in SQLite's busy handler
# (what group commit replaces), and on a loaded machine sixteen could wait
# past lock_timeout and be refused, which is no news here.
"$RADLOAD" -s "127.0.0.1:$PORT" -S "$SECRET" -c 4 -t 10000 -f "$T/n.req" \
    >"$T/n.out" 2>"$T/n.sum"
n=$(wc -l <"$T/n.out")
set -- $(judge load "$T/n.out" n)
check "group_commit = no: 100 codes, all accepted but those answered after their window closed ($1 accepted, $2 refused as WRONG_CODE after it, $4 otherwise, of $n answers)" \
    test "$n" -eq 100 -a "$4" -eq 0 -a $(($1 + $2)) -eq 100
bad_lines "$T/n.out"
marks_match n "  each accept's mark is in the file, and no other"
phase_end
fr_stop

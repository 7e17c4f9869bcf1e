#!/bin/sh
# Two processes verify the same fresh code at the same instant, 100 times:
# the replay guard (one compare-and-set in the store) lets exactly one of
# them through each time. Each round has its own token and contract, so
# every round races with a code that nobody has used.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
ROUNDS=${RACE_ROUNDS:-100}
LOCK=$SB/gate

# The gate: this shell holds an exclusive lock; both racers wait for a
# shared one and are released together when it is dropped.
race() { # race CONTRACT CODE: prints the two exit codes
	exec 9>"$LOCK"
	flock -x 9
	flock -s "$LOCK" "$CLI" verify "$1" --otp "$2" >"$SB/r1" 2>&1 &
	p1=$!
	flock -s "$LOCK" "$CLI" verify "$1" --otp "$2" >"$SB/r2" 2>&1 &
	p2=$!
	sleep 0.05
	flock -u 9
	exec 9>&-
	wait "$p1"
	e1=$?
	wait "$p2"
	e2=$?
	echo "$e1 $e2"
}

check "token generate --count $ROUNDS" cli token generate --count "$ROUNDS"
cp "$OUT" "$SB/tokens"
check "one serial and URI per line" test "$(grep -c ' otpauth://totp/' "$SB/tokens")" -eq "$ROUNDS"

bad=0
replayed=0
i=0
while read -r serial uri; do
	i=$((i + 1))
	s=$(echo "$uri" | sed 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/')
	# Bind and race inside one 30 s step: a bind that lands in the next
	# step teaches the token a drift of -1, and the racers' code (one
	# step ahead) would then fall outside the window for both.
	fresh_step 3
	if ! clin "pw-$i" contract add "C$i" ||
	    ! cli contract bind "C$i" --serial "$serial" --otp "$(totp "$s")"; then
		bad=$((bad + 1))
		echo "# round $i: provision"
		sed 's/^/#   /' "$ERR"
		continue
	fi
	r=$(race "C$i" "$(totp "$s" 30)")
	case "$r" in
	"0 1" | "1 0")
		grep -q '(REPLAYED)' "$SB/r1" "$SB/r2" && replayed=$((replayed + 1))
		;;
	*)
		bad=$((bad + 1))
		echo "# round $i: exits $r"
		sed 's/^/#   /' "$SB/r1" "$SB/r2"
		;;
	esac
done <"$SB/tokens"
check "$i rounds, exactly one accept each ($bad bad)" \
    test "$bad" -eq 0 -a "$i" -eq "$ROUNDS"
check "the loser was refused as REPLAYED ($replayed/$ROUNDS)" \
    test "$replayed" -eq "$ROUNDS"
echo "1..$TAPN"

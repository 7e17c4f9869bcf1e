#!/bin/sh
# A farm rotates as one (issue 16): two radiusd servers, A and B, share a
# PostgreSQL store (a private server, scripts/pg-test-server.sh) and
# accept codes while `key rotate` runs from a third process. Neither is
# restarted: each signs its States under the new version within the
# policy's refresh interval; a challenge answered on the other server
# verifies before, during and after the rotation, either way round; no
# accept fails; the old version is retired and the audit chain, written
# by three processes under two versions, verifies.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
. "$TOP/tests/radius/lib.sh"

RLM_SO=${RLM_SO:-$BUILD/rlm_shinkin_otp.so}
N=${FARM_LOAD:-30}
for b in freeradius radclient oathtool; do
	command -v "$b" >/dev/null ||
		{ notok "$b installed (sh scripts/deps.sh)"; exit 1; }
done
if readelf -d "$RLM_SO" 2>/dev/null | grep -q 'libasan'; then
	. "$TOP/tests/radius/ubsan.sh"
	ubsan_module || exit 1
fi
SB=$(mktemp -d "${TMPDIR:-/tmp}/sotp-farm.XXXXXX")
T=$SB/t
mkdir -p "$T"
PGDIR=$(mktemp -d /tmp/sotp-pg.XXXXXX)
PGCTL="$TOP/scripts/pg-test-server.sh"
OUT=$SB/out
ERR=$SB/err
cleanup() {
	fr_stop_all
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

CONF=$SB/shinkin-otp.conf
SHINKIN_OTP_CONFIG=$CONF
export SHINKIN_OTP_CONFIG
# States live 10 s; each server looks for a new key version every second.
awk -v u="$URL" '
	/^store = / { print "store = " u; next }
	/^master_key = / { print "master_key = master.key"; next }
	/^lifetime = / { print "lifetime = 10"; next }
	/^refresh = / { print "refresh = 1"; next }
	{ print }' "$TOP/conf/shinkin-otp.conf" >"$CONF"
check "init: the schema and version 1 in PostgreSQL" cli init
check "300 tokens to re-seal" sh -c '"$1" token generate --count 300 >/dev/null' sh "$CLI"
for who in A B C; do
	S=$(secret)
	eval "SEC_$who=\$S"
	check "token H$who (HOTP) bound to L$who" sh -c '"$1" token add "H$2" --secret "$3" --counter 0 >/dev/null &&
	    printf "pw\n" | "$1" contract add "L$2" >/dev/null &&
	    "$1" contract bind "L$2" --serial "H$2" --otp "$(oathtool --hotp -b -c 0 "$3")" >/dev/null' \
	    sh "$CLI" "$who" "$S"
done

# -- two servers on the one store --
server() { # NAME: a radiusd of its own, on a port of its own
	fr_setup "$T/$1"
	eval "PORT_$1=\$(free_port)"
	eval "_p=\$PORT_$1"
	fr_write_conf "shinkin_otp {
	config = $CONF
	context = login
}
shinkin_otp tx {
	config = $CONF
	context = transaction
	mode = append
}" "server farm-$1 {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $_p
	}
	authorize {
		if (User-Name == \"LC\") {
			shinkin_otp
		}
		else {
			tx
		}
	}
	authenticate {
		Auth-Type shinkin_otp {
			shinkin_otp
		}
		Auth-Type tx {
			tx
		}
	}
}"
	# fr_start moves to another port if this one was taken meanwhile.
	fr_start f && eval "PORT_$1=\$FR_PORT"
}
if server A && server B; then ok "servers A and B run, sharing the store"; else
	notok "servers A and B start"
	exit 1
fi
on() { PORT=$(eval echo "\$PORT_$1"); }

# The HOTP counters, carried from run to run (a file each: the loads run
# in subshells).
for w in A B C; do echo 0 >"$SB/$w.next"; done
# A counter whose code is the last one's (once in a million) is skipped:
# those six digits are refused as a replay (token.c), and the customer
# presses for the next code, as this does.
hotp() { # WHO: the next code of token HWHO
	_s=$(eval echo "\$SEC_$1")
	_c=$(cat "$SB/$1.next")
	_last=$(oathtool --hotp -b -c "$_c" "$_s")
	_c=$((_c + 1))
	_code=$(oathtool --hotp -b -c "$_c" "$_s")
	while [ "$_code" = "$_last" ]; do
		_c=$((_c + 1))
		_code=$(oathtool --hotp -b -c "$_c" "$_s")
	done
	echo "$_c" >"$SB/$1.next"
	echo "$_code"
}
# cross NAME FROM TO: a login challenged by FROM, its code answered on TO;
# prints the reply and the State's key version (its bytes 2..5).
cross() {
	on "$2"
	rad "$1a" "$(req LC pw)"
	_st=$(state_of "$1a")
	on "$3"
	rad "$1b" "$(req LC "$(hotp C)" "State = $_st")"
	echo "$(reply_of "$1b") $(echo "$_st" | cut -c 5-12)"
}
check "a challenge on A answered on B (version 1)" test "$(cross x1 A B)" = "Access-Accept 00000001"
check "a challenge on B answered on A (version 1)" test "$(cross x2 B A)" = "Access-Accept 00000001"

# -- the load: each server accepts its own token's codes until told to
#    stop (and at least N), and a challenge crosses between them --
load() { # SERVER WHO STOP
	_bad=0
	_cnt=0
	on "$1"
	while [ ! -f "$3" ] || [ $_cnt -lt "$N" ]; do
		_cnt=$((_cnt + 1))
		rad "l$1$_cnt" "$(req "L$2" "$(hotp "$2")")" || true
		[ "$(reply_of "l$1$_cnt")" = Access-Accept ] ||
			{ _bad=$((_bad + 1)); sed 's/^/# /' "$T/l$1$_cnt.out"; }
	done
	echo "$_cnt $_bad" >"$SB/$1.result"
}
crossing() { # STOP: challenges A->B and B->A, each State's version noted
	_bad=0
	_cnt=0
	while [ ! -f "$1" ] || [ $_cnt -lt 6 ]; do
		_cnt=$((_cnt + 1))
		for _d in "A B" "B A"; do
			# shellcheck disable=SC2086
			set -- "$1" $_d
			_r=$(cross "c$_cnt$2" "$2" "$3")
			echo "$2 ${_r#* }" >>"$SB/versions"
			[ "${_r% *}" = Access-Accept ] ||
				{ _bad=$((_bad + 1)); echo "# $2->$3: $_r"; }
		done
	done
	echo "$_cnt $_bad" >"$SB/X.result"
}
rm -f "$SB/stop" "$SB/versions"
load A A "$SB/stop" >"$SB/A.log" 2>&1 &
PA=$!
load B B "$SB/stop" >"$SB/B.log" 2>&1 &
PB=$!
crossing "$SB/stop" >"$SB/X.log" 2>&1 &
PX=$!
# Until both servers have signed a State under version 1 (up to 60 s):
# a fixed second before the rotation, which a busy host may not give the
# load, left no version-1 State to find below.
i=0
while [ $i -lt 600 ]; do
	grep -q "^A 00000001" "$SB/versions" 2>/dev/null &&
	    grep -q "^B 00000001" "$SB/versions" && break
	sleep 0.1
	i=$((i + 1))
done
check "key rotate from a third process, during the load" \
    sh -c '"$1" key rotate --batch 20 --pause 100 >"$2" 2>&1' sh "$CLI" "$SB/rot"
# Until both servers have signed under version 2 after the rotation (up
# to 60 s; at once on a quiet host).
i=0
while [ $i -lt 600 ]; do
	tail -n 4 "$SB/versions" 2>/dev/null | grep -q "^A 00000002" &&
	    tail -n 4 "$SB/versions" | grep -q "^B 00000002" && break
	sleep 0.1
	i=$((i + 1))
done
touch "$SB/stop"
wait $PA
wait $PB
wait $PX
cat "$SB/A.log" "$SB/B.log" "$SB/X.log"
for s in A B; do
	read -r cnt bad <"$SB/$s.result"
	check "server $s: $cnt accepts during the rotation, $bad failed" test "$bad" -eq 0 -a "$cnt" -ge "$N"
done
read -r cnt bad <"$SB/X.result"
check "$((2 * cnt)) challenges answered on the other server, $bad failed" test "$bad" -eq 0
check "  States of version 1, then 2 (no restart): A" sh -c \
    'grep -q "^A 00000001" "$1" && grep -q "^A 00000002" "$1"' sh "$SB/versions"
check "  and B" sh -c \
    'grep -q "^B 00000001" "$1" && grep -q "^B 00000002" "$1"' sh "$SB/versions"
check "the rotation retired version 1 and is done" sh -c \
    'grep -q "version 1 retired" "$1" && grep -q "done: version 2" "$1"' sh "$SB/rot"
check "after it, a challenge on A answered on B (version 2)" test "$(cross y1 A B)" = "Access-Accept 00000002"
check "  and on B answered on A" test "$(cross y2 B A)" = "Access-Accept 00000002"
check "key check: every value unseals" cli key check
check "  (303 secrets)" contains "$OUT" "303 token secrets and 0 card grids unseal; 0 do not"
check "audit verify: one chain, three writers, two versions" cli audit verify

echo "1..$TAPN"

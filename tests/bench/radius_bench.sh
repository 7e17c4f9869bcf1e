#!/bin/sh
# radius_bench.sh BUILD - the RADIUS half of `make bench` (issue 13): a
# private radiusd (-f, its thread pool) on 127.0.0.1, loaded by the
# project's radload (RB_INFLIGHT requests in flight, a Message-Authenticator
# on every request, every reply's authenticators checked), and ratios
# against radiusd's own PAP measured in the same run:
#
#   floor     PAP against Cleartext-Password (radiusd's own cheapest path)
#   ours      rlm_shinkin_otp, context transaction (a TOTP code), on
#             SQLite and on a private PostgreSQL, with 1,000 and with
#             1,000,000 contracts in the store
#   login     rlm_shinkin_otp, context login, password and code appended
#             in one User-Password, against PAP with Crypt-Password holding
#             the same yescrypt hash: the hash is the cost both pay (both
#             one request at a time, see below)
#   memory    radiusd's RSS after the 100,000-th and the 300,000-th request
#             through our module (SQLite, 1M store)
#
# Contracts are bulk-loaded (tests/tools/provision bulk): every token holds
# the same secret, so one code of now is good for every contract, and a
# request file is one line per contract. A 1,000-contract store serves
# 3,000 accepts: each contract's codes of the steps before, at and after
# now, in that order (the learnt drift moves the window along). Each
# 1M-store request names a contract of its own, spread over the store.
# Printed: rates as ratios (the absolute numbers move up to 2x between runs
# on this 2-core machine), radiusd CPU per request as ratios (and the
# private PostgreSQL's, for its rows), p99 latency in ms, the ceiling (the
# rate the machine's cores could give at that CPU per request, were they
# given to nothing else, as a ratio to PAP's rate: a goal above it cannot
# be met on this machine by waiting less, only by spending less), and the
# RSS growth in KiB. Every request must come back as expected;
# a run that did not prints the counts it saw.
#
#   RB_N        requests per rate run (default 30000; the 1k store: 3000)
#   RB_INFLIGHT requests in flight (default 32)
#   RB_LOGIN_N  requests per login run (default 300)
#   RB_MEM      0 skips the memory run (default 1)
#   RB_MEM_AT   the memory run's two marks, in requests (default
#               "100000 300000")
#   RB_PG       0 skips PostgreSQL (default 1)
set -u
umask 022 # its policies: a group-writable one is refused (tests/run.sh)
BUILD=${1:-build}
TOP=$(pwd)
case "$BUILD" in /*) ;; *) BUILD=$TOP/$BUILD ;; esac
export BUILD TOP
. "$TOP/tests/lib.sh"
. "$TOP/tests/radius/lib.sh"

N=${RB_N:-30000}
C=${RB_INFLIGHT:-32}
LOGIN_N=${RB_LOGIN_N:-300}
MEM=${RB_MEM:-1}
set -- ${RB_MEM_AT:-100000 300000}
MEM_A=$1
MEM_B=$2
PG=${RB_PG:-1}
RLM_SO=$BUILD/rlm_shinkin_otp.so
RADLOAD=$BUILD/tests/radload
PROVISION=$BUILD/tests/provision
PGCTL="$TOP/scripts/pg-test-server.sh"
B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ # provision's BULK_SECRET
PW=pw-bench

die() {
	echo "radius_bench: $*" >&2
	exit 1
}
for b in freeradius oathtool; do
	command -v "$b" >/dev/null || die "$b not installed (sh scripts/deps.sh)"
done
for f in "$RLM_SO" "$RADLOAD" "$PROVISION" "$CLI"; do
	[ -e "$f" ] || die "not built: $f"
done

T=$(mktemp -d /tmp/sotp-rb.XXXXXX)
chmod 755 "$T"
PGDIR=$T/pg
cleanup() {
	fr_stop_all
	[ "$PG" = 0 ] || sh "$PGCTL" stop "$PGDIR" >/dev/null 2>&1
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# policy NAME STORE_URL: a policy for the bench in $T/NAME.conf, with its
# own key and metrics, and the store made.
policy() {
	awk -v u="$2" -v d="$T" -v n="$1" '
		/^store = / { print "store = " u; next }
		/^master_key = / { print "master_key = " d "/master.key"; next }
		/^metrics = / { print "metrics = " d "/" n ".metrics"; next }
		{ print }' "$TOP/conf/shinkin-otp.conf" >"$T/$1.conf"
	"$CLI" --config "$T/$1.conf" init >"$T/$1.init" 2>&1 ||
	    die "init $1: $(cat "$T/$1.init")"
}

# load NAME DIALECT PREFIX COUNT...: bulk-loads contracts into NAME's store.
load() {
	_n=$1
	_d=$2
	shift 2
	if [ "$_d" = sqlite ]; then
		"$PROVISION" bulk "$T/$_n.conf" sqlite "$HASH" "$@" |
		    sqlite3 "$T/$_n.db" >"$T/$_n.load" 2>&1
	else
		"$PROVISION" bulk "$T/$_n.conf" pg "$HASH" "$@" |
		    psql -X -q -v ON_ERROR_STOP=1 "$PGURL" >"$T/$_n.load" 2>&1 &&
		    psql -X -q -c "ANALYZE" "$PGURL" >>"$T/$_n.load" 2>&1
	fi || die "load $_n: $(cat "$T/$_n.load")"
}

# A radiusd NAME on its own port; BODY is its authorize and authenticate.
radiusd_up() { # NAME MODULES AUTHORIZE AUTHENTICATE
	fr_setup "$T/fr-$1"
	RPORT=$(free_port)
	fr_write_conf "$2" "server bench {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $RPORT
		recv_buff = 4194304
	}
	authorize {
$3
	}
	authenticate {
$4
	}
}"
	# Debian's own thread pool (max_servers 32), started full.
	sed -i 's/^\(\tmax_servers = \).*/\132/; s/^\(\tstart_servers = \).*/\132/; s/^\(\tmax_spare_servers = \).*/\132/' \
	    "$FR_DIR/radiusd.conf"
	fr_start f || die "radiusd $1 did not start: $(cat "$FR_DIR"/log/*.log)"
}
pap_up() { # NAME CONTROL-ATTRIBUTE VALUE
	radiusd_up "$1" "pap {
}" "		update control {
			&$2 := '$3'
		}
		update reply {
			&Message-Authenticator := 0x00
		}
		pap" "		Auth-Type PAP {
			pap
		}"
}
otp_up() { # NAME CONF CONTEXT MODE
	radiusd_up "$1" "shinkin_otp {
	config = $2
	context = $3
	mode = $4
}" "		shinkin_otp" "		Auth-Type shinkin_otp {
			shinkin_otp
		}"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# pg_ticks: the CPU ticks of the private PostgreSQL, its postmaster and
# every child (the backends serving radiusd's connections, the WAL
# writer, ...); 0 without one
pg_ticks() {
	[ "$PG" != 0 ] && [ -f "$PGDIR/data/postmaster.pid" ] || {
		echo 0
		return
	}
	# each /proc/PID/stat past its "(comm) ": state ppid ... utime stime
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$(head -n 1 \
	    "$PGDIR/data/postmaster.pid")" '{ p = $1; sub(/^.*\) /, "")
		if (p == pm || $2 == pm) s += $12 + $13 }
		END { print s + 0 }'
}
# fr_alive: radiusd FR_PID runs (not gone, not a zombie not yet waited for)
fr_alive() {
	awk '$3 != "Z" { ok = 1 } END { exit !ok }' "/proc/$FR_PID/stat" \
	    2>/dev/null
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
totp() { oathtool --totp -b -d 6 --now "@$(($(date +%s) + $1))" "$B32"; }
# Waits until at least 8 s remain of the current 30 s step, so that the
# codes written next are still in the window when they arrive.
step_room() {
	while [ $((30 - $(date +%s) % 30)) -lt 8 ]; do sleep 1; done
}

# run LABEL FILE WANT [RADLOAD ARGS]: sends FILE through radiusd FR_PID at
# RPORT; sets RATE (req/s), P99 (ms), CPUR (radiusd CPU ticks per 1,000
# requests) and PGCPUR (the same for the private PostgreSQL's processes);
# WANT is the result every reply must be (accept).
run() {
	_l=$1
	_f=$2
	_want=$3
	shift 3
	fr_alive || die "$_l: radiusd (pid $FR_PID) is not running"
	_c0=$(cpu_ticks "$FR_PID")
	_g0=$(pg_ticks)
	"$RADLOAD" -s "127.0.0.1:$RPORT" -S "$SECRET" -c "$C" -t 5000 \
	    -f "$_f" "$@" >"$T/out" 2>"$T/sum" &
	_rl=$!
	# a radiusd that dies ends the run at once, not after every timeout
	while kill -0 "$_rl" 2>/dev/null; do
		fr_alive || kill "$_rl" 2>/dev/null
		sleep 0.2
	done
	wait "$_rl"
	fr_alive || die "$_l: radiusd (pid $FR_PID) died:" \
	    "$(tail -n 5 "$FR_DIR/log/radius.log" "$FR_DIR/log/f.log" 2>&1)"
	_c1=$(cpu_ticks "$FR_PID")
	_g1=$(pg_ticks)
	RATE=$(sed -n 's/.*requests in .* s (\([0-9]*\)\/s).*/\1/p' "$T/sum")
	_tot=$(wc -l <"$T/out")
	_bad=$(awk -v w="$_want" '$3 != w' "$T/out" | wc -l)
	P99=$(awk '{ print $4 }' "$T/out" | sort -n |
	    awk -v n="$_tot" 'NR == int(n * 0.99 + 0.999) {
		printf "%.1f", $1 / 1000 }')
	CPUR=$(awk -v a="$_c0" -v b="$_c1" -v n="$_tot" \
	    'BEGIN { printf "%.4f", (b - a) * 1000 / n }')
	PGCPUR=$(awk -v a="$_g0" -v b="$_g1" -v n="$_tot" \
	    'BEGIN { printf "%.4f", (b - a) * 1000 / n }')
	if [ "$_bad" -ne 0 ] || [ -z "$RATE" ]; then
		echo "radius_bench: $_l: $_bad of $_tot replies not $_want:" \
		    "$(cat "$T/sum")" >&2
		BAD=$((BAD + 1))
	fi
	[ -n "$RATE" ] || RATE=1
	[ -z "${RB_DEBUG:-}" ] ||
	    echo "# $_l: $(cat "$T/sum") cpu/1k $CPUR pg/1k $PGCPUR p99 $P99" >&2
}
BAD=0

# lines PREFIX FROM COUNT PASSWORD_PREFIX OFFSETS...: request lines, one
# per contract and offset (in steps from now), offset-major.
lines() {
	_p=$1
	_from=$2
	_n=$3
	_pw=$4
	shift 4
	for _o in "$@"; do
		_code=$(totp $((_o * 30)))
		awk -v p="$_p" -v a="$_from" -v n="$_n" -v c="$_pw$_code" \
		    'BEGIN { for (i = a; i < a + n; i++)
			printf "User-Name=%s%d User-Password=%s\n", p, i, c }'
	done
}

# The ratio of a to b, two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# LABEL RATE CPU P99 [NOTE [PG_CPU]]: one line of the table; PG_CPU is
# PostgreSQL's CPU per 1,000 requests (0 when it took no part)
row() {
	printf '%-46s %6sx %6sx %7s ms %6sx  %s\n' "$1" \
	    "$(ratio "$2" "$FLOOR_RATE")" "$(ratio "$3" "$FLOOR_CPU")" "$4" \
	    "$(ratio "$(ceiling "$3" "${6:-0}")" "$FLOOR_RATE")" "${5:-}"
}
# ceiling RADIUSD_CPU PG_CPU (ticks per 1,000 requests): the rate (req/s)
# this machine's cores could serve if they did nothing but that work, an
# upper bound (radload needs some too)
ceiling() {
	awk -v a="$1" -v b="$2" -v n="$NCPU" -v hz="$HZ" \
	    'BEGIN { printf "%.0f", (a + b > 0 ? n * hz * 1000 / (a + b) : 0) }'
}
NCPU=$(getconf _NPROCESSORS_ONLN)
HZ=$(getconf CLK_TCK)

# ---- stores ----
policy tmp "sqlite:$T/tmp.db"
HASH=$("$PROVISION" hash "$T/tmp.conf" "$PW") || die "hash"
policy s1k "sqlite:$T/s1k.db"
load s1k sqlite k 1000
policy s1m "sqlite:$T/s1m.db"
MEMR=$((MEM_B - 2000 - N))
[ "$MEM" = 0 ] && MEMR=0
load s1m sqlite w 2000 m "$N" r "$MEMR" f $((1000000 - 2000 - N - MEMR))
policy login "sqlite:$T/login.db"
load login sqlite w 200 l "$LOGIN_N" f $((1000 - 200 - LOGIN_N))
if [ "$PG" != 0 ]; then
	PGURL=$(SOTP_PG_PORT=${SOTP_PG_PORT:-54329} SOTP_PG_CONNECTIONS=60 \
	    sh "$PGCTL" start "$PGDIR" 2>"$T/pg.err") ||
	    die "PostgreSQL: $(cat "$T/pg.err")"
fi

echo "RADIUS: radiusd -f, radload with $C requests in flight, Message-Authenticator on every request and reply, every reply checked"
printf '%-46s %7s %7s %10s %7s\n' "" "rate" "CPU/req" "p99" "ceiling"

# ---- the floor ----
pap_up pap Cleartext-Password "$PW"
echo "User-Name=u%n User-Password=$PW" >"$T/pap.req"
run warm "$T/pap.req" accept -n 2000
run "PAP, Cleartext-Password" "$T/pap.req" accept -n "$N"
FLOOR_RATE=$RATE
FLOOR_CPU=$CPUR
row "radiusd PAP, Cleartext-Password (the floor)" "$RATE" "$CPUR" "$P99"
fr_stop

# ---- ours: a TOTP code (context transaction) ----
# ours NAME LABEL SMALL(1|0) CONF
ours() {
	otp_up "$1" "$4" transaction challenge
	step_room
	if [ "$3" = 1 ]; then
		lines k 0 1000 "" -1 >"$T/w.req"
		run "$2 (warm-up)" "$T/w.req" accept
		lines k 0 1000 "" 0 1 >"$T/m.req"
	else
		lines w 0 2000 "" 0 >"$T/w.req"
		run "$2 (warm-up)" "$T/w.req" accept
		lines m 0 "$N" "" 0 >"$T/m.req"
	fi
	# RB_PROFILE="perf record -o F": that command on radiusd, during the
	# run ("-p PID" appended), e.g. to see where its time goes.
	[ -z "${RB_PROFILE:-}" ] || {
		$RB_PROFILE -p "$FR_PID" >/dev/null 2>&1 &
		_prof=$!
		sleep 1
	}
	run "$2" "$T/m.req" accept
	[ -z "${RB_PROFILE:-}" ] || { kill -INT "$_prof"; wait "$_prof"; }
	_note=${5:-}
	_pgc=0
	case "$2" in
	*PostgreSQL*)
		_pgc=$PGCPUR
		_note="(PostgreSQL's CPU/req $(ratio "$_pgc" "$FLOOR_CPU")x)${_note:+ $_note}"
		;;
	esac
	row "$2" "$RATE" "$CPUR" "$P99" "$_note" "$_pgc"
}
ours s1k "shinkin_otp transaction, SQLite, 1k" 1 "$T/s1k.conf" "(2,000 accepts after 1,000)"
fr_stop
ours s1m "shinkin_otp transaction, SQLite, 1M" 0 "$T/s1m.conf"

# ---- memory: the same radiusd, on to 300,000 requests ----
if [ "$MEM" != 0 ]; then
	done_n=$((2000 + N))
	r=0
	rss100=""
	while [ "$r" -lt "$MEMR" ]; do
		chunk=20000
		if [ -z "$rss100" ] && [ $((done_n + chunk)) -gt "$MEM_A" ]; then
			chunk=$((MEM_A - done_n))
		fi
		[ $((r + chunk)) -gt "$MEMR" ] && chunk=$((MEMR - r))
		step_room
		lines r "$r" "$chunk" "" 0 >"$T/r.req"
		run "memory run" "$T/r.req" accept -q
		r=$((r + chunk))
		done_n=$((done_n + chunk))
		[ "$done_n" -eq "$MEM_A" ] && rss100=$(rss_kib "$FR_PID")
	done
	rss300=$(rss_kib "$FR_PID")
	printf '%-46s %s KiB (%s KiB at %s, %s KiB at %s)\n' \
	    "radiusd RSS growth, request ${MEM_A} to ${MEM_B}" \
	    $((rss300 - rss100)) "$rss100" "$MEM_A" "$rss300" "$MEM_B"
fi
fr_stop

# ---- the same on PostgreSQL ----
if [ "$PG" != 0 ]; then
	policy p1k "$PGURL"
	load p1k pg k 1000
	ours p1k "shinkin_otp transaction, PostgreSQL, 1k" 1 "$T/p1k.conf" "(2,000 accepts after 1,000)"
	fr_stop
	# The same database, emptied and made large.
	psql -X -q -c "TRUNCATE audit, contracts, tokens" "$PGURL" >/dev/null 2>&1 ||
	    psql -X -q -c "DELETE FROM contracts; DELETE FROM tokens" "$PGURL" >/dev/null
	load p1k pg w 2000 m "$N" f $((1000000 - 2000 - N))
	ours p1k "shinkin_otp transaction, PostgreSQL, 1M" 0 "$T/p1k.conf"
	fr_stop
fi

# ---- login: password + code against PAP with the same hash ----
# One request at a time, for both: a hash takes tens of ms, and 32 queued
# would only measure the queue (and time out). And with 4 in flight,
# Debian's radiusd 3.2.1 PAP against this yescrypt Crypt-Password rejected
# the right password (2 of 50) or crashed in libcrypt (the kernel log:
# "freeradius: segfault ... in libcrypt.so.1.1.0"), twice in five runs;
# our module hashes in its own crypt_data per call and stays checked
# under concurrency by tests/radius (login).
LC="-c 1 -t 30000"
pap_up papc Crypt-Password "$HASH"
run warm "$T/pap.req" accept -n 50 $LC
run "PAP, Crypt-Password" "$T/pap.req" accept -n "$LOGIN_N" $LC
PC_RATE=$RATE
PC_CPU=$CPUR
PC_P99=$P99
fr_stop
otp_up login "$T/login.conf" login append
step_room
lines w 0 200 "$PW" 0 >"$T/w.req"
run "login (warm-up)" "$T/w.req" accept $LC
lines l 0 "$LOGIN_N" "$PW" 0 >"$T/l.req"
run "login" "$T/l.req" accept $LC
fr_stop
printf '%-46s %6sx %6sx %7s ms %7s\n' "radiusd PAP, Crypt-Password (same hash)" \
    "$(ratio "$PC_RATE" "$FLOOR_RATE")" "$(ratio "$PC_CPU" "$FLOOR_CPU")" "$PC_P99" \
    -
printf '%-46s %6sx %6sx %7s ms %7s  (%sx PAP-crypt rate, %sx its CPU)\n' \
    "shinkin_otp login (password + code), SQLite" \
    "$(ratio "$RATE" "$FLOOR_RATE")" "$(ratio "$CPUR" "$FLOOR_CPU")" "$P99" \
    - \
    "$(ratio "$RATE" "$PC_RATE")" "$(ratio "$CPUR" "$PC_CPU")"
echo "(rate and CPU/req are ratios to the floor's in this run; 1M stores: each request a contract of its own)"
echo "(ceiling: the rate this machine's $NCPU cores could give at that CPU per request of radiusd and PostgreSQL, with nothing else to run, as a ratio to the floor's rate)"
[ "$BAD" -eq 0 ] || die "$BAD runs had replies other than expected"

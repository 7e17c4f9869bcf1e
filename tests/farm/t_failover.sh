#!/bin/sh
# A farm that survives losing its database server, proved on loopback:
#   - a PostgreSQL primary and a synchronous streaming standby (two
#     private servers, pg_basebackup, replication over the primary's unix
#     socket; synchronous_commit = on, synchronous_standby_names), so an
#     accepted code's replay mark is on both before the Access-Accept
#     leaves;
#   - two radiusd instances on that store, through one multi-host URL with
#     target_session_attrs=read-write;
#   - FARM_RACES (10,000) races of one code through both radiusd at once:
#     exactly one accept each, 0 double accepts;
#   - a load of fresh codes during which the primary is killed (SIGKILL
#     to all its processes) and the standby promoted (pg_ctl promote):
#     every code answered Access-Accept is refused as replayed after the
#     promotion (0 lost marks, 0 double accepts across the switch), no
#     request sent while there was no primary is accepted, and both
#     radiusd, never restarted, accept fresh codes on the new primary; the
#     time that took is printed (the bound checked is generous: it only
#     stops a test that would wait for ever);
#   - a NAS's Status-Server probe gets no answer while there is no
#     primary (so the NAS would fail over), and an answer from both
#     radiusd once the standby is promoted;
#   - health and metrics on the farm before and after.
# Requests go through tests/tools/radload (signed, every reply verified),
# contracts are made by tests/tools/provision. Figures are printed as
# "# figure: ..." lines, which tests/run.sh shows in its summary. The SOTP_PG_PORT port is the primary's, the next
# one the standby's.
. "$TOP/tests/lib.sh"
. "$TOP/tests/radius/lib.sh"

RACES=${FARM_RACES:-10000}
LOAD=${FARM_LOAD:-4000}
RATE=${FARM_RATE:-200}
PROBES=${FARM_PROBES:-200}
FIRST_ACCEPT_BOUND=${FARM_FIRST_ACCEPT_BOUND:-30}
RLM_SO=${RLM_SO:-$BUILD/rlm_shinkin_otp.so}
RADLOAD=$BUILD/tests/radload
PROVISION=$BUILD/tests/provision
PGCTL="$TOP/scripts/pg-test-server.sh"

for b in freeradius oathtool psql; do
	command -v "$b" >/dev/null ||
		{ notok "$b installed (sh scripts/deps.sh)"; exit 1; }
done
for f in "$RLM_SO" "$RADLOAD" "$PROVISION"; do
	[ -x "$f" ] || [ -f "$f" ] || { notok "built: $f"; exit 1; }
done
# Under SANITIZE=1 radiusd loads a UBSan build (see tests/radius).
if readelf -d "$RLM_SO" 2>/dev/null | grep -q 'libasan'; then
	. "$TOP/tests/radius/ubsan.sh"
	ubsan_module || exit 1
fi

# Short: the servers' sockets live in it (sun_path holds 107 bytes).
T=$(mktemp -d /tmp/sotp-farm.XXXXXX)
chmod 755 "$T"
P=$T/p
S=$T/s
PPORT=${SOTP_PG_PORT:-54329}
SPORT=$((PPORT + 1))
LOAD_PID=""
cleanup() {
	# The failover's load, if a failure left it running.
	[ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
	fr_stop_all
	sh "$PGCTL" stop "$P" >/dev/null 2>&1
	sh "$PGCTL" stop "$S" >/dev/null 2>&1
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

now_us() { date +%s%6N; }
# sql DIR SQL: one value from the server in DIR (database sotp).
sql() {
	psql -X -A -t -q -h "$1" -p "$(
		[ "$1" = "$P" ] && echo "$PPORT" || echo "$SPORT")" -U sotp -d sotp -c "$2"
}
figure() { echo "# figure: $*"; }

# ---- the pair ----
# Two radiusd of up to 32 threads, one connection each, and the tests.
if ! SOTP_PG_PORT=$PPORT SOTP_PG_CONNECTIONS=120 sh "$PGCTL" start "$P" \
    >"$T/p.url" 2>"$T/p.err"; then
	notok "the primary starts"
	sed 's/^/#   /' "$T/p.err"
	exit 1
fi
ok "the primary starts"
if ! SOTP_PG_PORT=$SPORT sh "$PGCTL" standby "$S" "$P" farm_standby \
    >"$T/s.url" 2>"$T/s.err"; then
	notok "the standby is made with pg_basebackup and starts"
	sed 's/^/#   /' "$T/s.err"
	exit 1
fi
ok "the standby is made with pg_basebackup and starts"
i=0
while [ "$(sql "$P" "SELECT count(*) FROM pg_stat_replication
    WHERE application_name = 'farm_standby' AND state = 'streaming'")" != 1 ] &&
    [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "the standby streams from the primary over its unix socket" \
    test "$(sql "$P" "SELECT count(*) FROM pg_stat_replication
        WHERE application_name = 'farm_standby'")" = 1
sh "$PGCTL" sync "$P" farm_standby
i=0
while [ "$(sql "$P" "SELECT sync_state FROM pg_stat_replication
    WHERE application_name = 'farm_standby'")" != sync ] && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "the standby is synchronous (sync_state = sync)" \
    test "$(sql "$P" "SELECT sync_state FROM pg_stat_replication")" = sync
figure "durability: synchronous_commit = $(sql "$P" "SHOW synchronous_commit"), synchronous_standby_names = '$(sql "$P" "SHOW synchronous_standby_names")'"

# ---- the policy: both servers in one URL, the primary wins ----
SB=$T/sb
mkdir -p "$SB"
CONF=$SB/shinkin-otp.conf
SHINKIN_OTP_CONFIG=$CONF
export SHINKIN_OTP_CONFIG
URL="postgresql:///sotp?host=$P,$S&port=$PPORT,$SPORT&user=sotp&target_session_attrs=read-write"
awk -v u="$URL" '
	/^store = / { print "store = " u; next }
	/^master_key = / { print "master_key = master.key"; next }
	/^metrics = / { print "metrics = farm.metrics"; next }
	{ print }' "$TOP/conf/shinkin-otp.conf" >"$CONF"
check "init on the farm's store (multi-host URL)" \
    sh -c '"$1" init >"$2/init.log" 2>&1' sh "$CLI" "$SB"
check "health: the farm is healthy (a write commits on both servers)" \
    sh -c '"$1" health >"$2/health.log"' sh "$CLI" "$SB"
sed "s|^store = .*|store = postgresql:///sotp?host=$S\\&port=$SPORT\\&user=sotp|" \
    "$CONF" >"$SB/standby.conf"
"$CLI" --config "$SB/standby.conf" health >"$SB/health.log" 2>&1
rc=$?
check "health on the standby alone: reachable, not writable (exit $rc)" \
    sh -c '[ "$1" -eq 1 ] && grep -q "^store   ok" "$2" && grep -q "^write   failed .*read-only" "$2"' \
    sh "$rc" "$SB/health.log"

t0=$(now_us)
if "$PROVISION" "$CONF" r "$RACES" >"$T/race.secrets" 2>"$T/prov.err" &&
    "$PROVISION" "$CONF" f "$LOAD" >"$T/load.secrets" 2>>"$T/prov.err" &&
    "$PROVISION" "$CONF" p "$PROBES" >"$T/probe.secrets" 2>>"$T/prov.err"; then
	ok "provision $((RACES + LOAD + PROBES)) contracts with bound tokens ($((($(now_us) - t0) / 1000)) ms)"
else
	notok "provision"
	sed 's/^/#   /' "$T/prov.err"
	exit 1
fi
# The library's codes are oathtool's (the independent token), at a second
# read before and after provision's: oathtool at its own "now" was a step
# later whenever a step ended between the two programs.
bad=0
for k in 1 2 3; do
	set -- $(sed -n "${k}p" "$T/race.secrets")
	_ta=$(date +%s)
	"$PROVISION" codes "$T/race.secrets" 0 '%u %c' | sed -n "${k}p" >"$T/one"
	_tb=$(date +%s)
	_got=$(cut -d' ' -f2 "$T/one")
	[ "$_got" = "$(oathtool --totp -b --now "@$_ta" "$3")" ] ||
	    [ "$_got" = "$(oathtool --totp -b --now "@$_tb" "$3")" ] ||
	    bad=$((bad + 1))
done
check "provision's codes are oathtool's ($bad of 3 differ)" test "$bad" -eq 0

# ---- two radiusd on the one store ----
start_radiusd() { # NAME PORT
	fr_setup "$T/$1"
	fr_write_conf "shinkin_otp {
	config = $CONF
	context = transaction
}" "server farm {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $2
		recv_buff = 4194304
	}
	authorize {
		Autz-Type Status-Server {
			shinkin_otp
		}
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
FR_STATUS_SERVER=yes
PA=$(free_port)
# FR_PORT: fr_start moves to another port if this one was taken meanwhile.
start_radiusd ra "$PA" && PID_A=$FR_PID && PA=$FR_PORT ||
	{ notok "radiusd A starts"; exit 1; }
PB=$(free_port)
[ "$PB" = "$PA" ] && PB=$((PA + 1))
start_radiusd rb "$PB" && PID_B=$FR_PID && PB=$FR_PORT ||
	{ notok "radiusd B starts"; exit 1; }
ok "two radiusd on the same store (ports $PA and $PB)"
LOADER="$RADLOAD -s 127.0.0.1:$PA -s 127.0.0.1:$PB -S $SECRET"

# counts FILE: "accept reject challenge timeout invalid" of radload output.
counts() {
	awk '{ n[$3]++ } END { printf "%d %d %d %d %d\n", n["accept"], n["reject"],
	    n["challenge"], n["timeout"], n["invalid"] }' "$1"
}

WB=$(sed -n 's/^window_back *= *\([0-9][0-9]*\).*/\1/p' "$CONF")
[ -n "$WB" ] || { notok "window_back in $CONF"; exit 1; }

# ---- the race: each code through both radiusd at once ----
# In chunks of RACE_CHUNK races, each with codes made just before it is
# sent: every commit waits for the standby, so on a slow machine the
# whole race can outlast a code's window (about 60 s), and its late codes
# would read as wrong ones.
RACE_CHUNK=${FARM_RACE_CHUNK:-1000}
STEP=$(($(date +%s) / 30))
: >"$T/race.req"
: >"$T/race.out"
: >"$T/race.err"
t0=$(now_us)
n=0
while [ "$n" -lt "$RACES" ]; do
	sed -n "$((n + 1)),$((n + RACE_CHUNK))p" "$T/race.secrets" >"$T/race.chunk"
	"$PROVISION" codes "$T/race.chunk" 0 \
	    'id=%u to=0 User-Name=%u User-Password=%c' \
	    'id=%u to=1 User-Name=%u User-Password=%c' >"$T/race.creq"
	cat "$T/race.creq" >>"$T/race.req"
	$LOADER -c 256 -t 10000 -f "$T/race.creq" >>"$T/race.out" 2>>"$T/race.err"
	n=$((n + RACE_CHUNK))
done
t1=$(now_us)
LAST_STEP=$(($(date +%s) / 30))
set -- $(counts "$T/race.out")
racc=$1 rrej=$2 rto=$4 rinv=$5
races=$(awk '{ n[$1]++ } END { for (k in n) if (n[k] == 2) r++; print r + 0 }' "$T/race.out")
double=$(awk '$3 == "accept" { n[$1]++ } END { for (k in n) if (n[k] > 1) d++; print d + 0 }' "$T/race.out")
none=$(awk '{ a[$1] += ($3 == "accept") } END { for (k in a) if (a[k] == 0) z++; print z + 0 }' "$T/race.out")
figure "races run: $races, double accepts: $double, races without an accept: $none ($((2 * RACES)) requests in $(((t1 - t0) / 1000)) ms: $racc accept, $rrej reject, $rto timeout, $rinv invalid)"
check "$RACES races of one code through both radiusd, every one run" test "$races" -eq "$RACES"
check "0 double accepts in $races races" test "$double" -eq 0
check "exactly one accept per race ($none without)" test "$none" -eq 0 -a "$racc" -eq "$RACES"
if [ "$none" -gt 0 ]; then
	# What the store said to the races that got no accept.
	awk '{ a[$1] += ($3 == "accept") } END { for (k in a) if (a[k] == 0) print k }' \
	    "$T/race.out" | head -n 5 | while read -r u; do
		sql "$P" "SELECT contract, verdict, reason, detail FROM audit
		    WHERE contract = '$u' ORDER BY id" | sed 's/^/#   /'
		grep -h "\[$u\]\|contract=$u " "$T"/ra/log/*.log \
		    "$T"/rb/log/*.log | head -n 6 | sed 's/^/#   /'
	done
	# And what the store said when it refused.
	grep -h "ERROR\|error" "$T"/ra/log/*.log "$T"/rb/log/*.log |
	    sort | uniq -c | sort -rn | head -n 5 | sed 's/^/#   /'
fi
check "every reply verified (authenticator, Message-Authenticator): $rinv invalid, $rto unanswered" \
    test "$rinv" -eq 0 -a "$rto" -eq 0
# The codes' steps run from the first chunk's to the last one's. A code
# whose six digits an earlier step in the window also shows is marked at
# that step (the first match wins, common/token.c): once in a million per
# step, so a few times in a hundred runs one of 10,000 marks sits up to
# window_back steps before the first chunk's. Each such mark counts only
# if the code sent really is the token's code at the marked step
# (oathtool says), so a mark left where binding put it is still lost.
# early_marks DIR PREFIX SECRETS REQUESTS: the contracts PREFIX% whose
# mark on the server in DIR lies up to window_back steps before STEP and
# is explained so, one per line; each such mark is named on stderr.
early_marks() {
	sql "$1" "SELECT c.id, t.last_step FROM contracts c
	    JOIN tokens t ON t.serial = c.serial WHERE c.id LIKE '$2%'
	    AND t.last_step BETWEEN $((STEP - WB)) AND $((STEP - 1))" |
	    tr '|' ' ' >"$T/early"
	while read -r _id _step; do
		_b32=$(awk -v c="$_id" '$1 == c { print $3 }' "$3")
		_sent=$(sed -n "s/^id=$_id .*User-Password=\([0-9]*\).*/\1/p" \
		    "$4" | head -n 1)
		_at=$(oathtool --totp -b --now "@$((_step * 30))" "$_b32")
		echo "#   $_id marked at step $_step (the first chunk's is $STEP): sent $_sent, the token's code there $_at" >&2
		[ -n "$_sent" ] && [ "$_sent" = "$_at" ] && echo "$_id"
	done <"$T/early"
}
marks=$(sql "$P" "SELECT count(*) FROM tokens WHERE serial LIKE 'tok-r%'
    AND last_step BETWEEN $STEP AND $LAST_STEP")
odd=$(early_marks "$P" r "$T/race.secrets" "$T/race.req" | wc -l)
check "the primary holds all $RACES replay marks ($marks, $odd at an earlier step with the same digits)" \
    test "$((marks + odd))" -eq "$RACES"
smarks=$(sql "$S" "SELECT count(*) FROM tokens WHERE serial LIKE 'tok-r%'
    AND last_step BETWEEN $STEP AND $LAST_STEP")
sodd=$(early_marks "$S" r "$T/race.secrets" "$T/race.req" 2>/dev/null | wc -l)
check "the synchronous standby holds them too ($smarks, $sodd at an earlier step)" \
    test "$((smarks + sodd))" -eq "$RACES"
"$CLI" metrics >"$T/metrics.1"
macc=$(awk '$1 == "shinkin_otp_decisions_total{context=\"transaction\",verdict=\"accept\",reason=\"ACCEPTED\"}" { print $2 }' "$T/metrics.1")
check "metrics: both radiusd counted into one file ($macc accepts counted, $racc answered)" \
    test "${macc:-0}" -eq "$racc"

# ---- failover in the middle of a load of accepts ----
# The load and the failover are ordered by what has been seen, not by a
# schedule a slow host could outrun. The load runs until the test stops
# it: chunks of fresh contracts, each with codes made just before it is
# sent, at the rate in load.rate (a tenth of a second's worth each, so a
# new rate holds at once), until load.stop appears (or the LOAD contracts
# run out: a failure). Each wait is bounded by
# WAIT_T seconds (60), so a broken farm still fails:
#   - the primary is killed once it holds LOAD_BEFORE accepts of the load;
#   - the standby is promoted once the load holds an answer to a request
#     sent after the kill, and a NAS's probe has been refused;
#   - the load stops once each radiusd has answered Access-Accept to
#     LOAD_AFTER requests sent after the promotion was ordered.
# Between the first answer after the kill and the promotion the load runs
# at RATE_IDLE/s: a host slow to get there spends few contracts.
LOAD_BEFORE=${FARM_LOAD_BEFORE:-100}
LOAD_AFTER=${FARM_LOAD_AFTER:-50}
RATE_IDLE=${FARM_RATE_IDLE:-25}
WAIT_T=${FARM_WAIT_T:-60}
STEP=$(($(date +%s) / 30))
: >"$T/load.req"
: >"$T/load.out"
: >"$T/load.err"
rm -f "$T/load.stop" "$T/load.done"
# set_rate N: the load's rate from its next chunk on (renamed into place:
# the loader never reads a half-written file).
set_rate() {
	echo "$1" >"$T/load.rate.new" && mv "$T/load.rate.new" "$T/load.rate"
}
set_rate "$RATE"
# load.close: each load contract and the first microsecond its code can be
# outside the verifier's window (window_back steps after the step of the
# time read before the codes were made; a later step's closes later).
: >"$T/load.close"
loader() {
	_n=0
	while [ ! -f "$T/load.stop" ] && [ "$_n" -lt "$LOAD" ]; do
		_r=$(cat "$T/load.rate")
		_c=$((_r / 10))
		[ "$_c" -ge 2 ] || _c=2
		sed -n "$((_n + 1)),$((_n + _c))p" "$T/load.secrets" \
		    >"$T/load.chunk"
		_t=$(date +%s)
		"$PROVISION" codes "$T/load.chunk" 0 \
		    'id=%u User-Name=%u User-Password=%c' >"$T/load.creq"
		cat "$T/load.creq" >>"$T/load.req"
		awk -v c="$(((_t / 30 + 1 + WB) * 30000000))" \
		    '{ sub(/^id=/, "", $1); print $1, c }' "$T/load.creq" \
		    >>"$T/load.close"
		$LOADER -c 64 -t 3000 -R "$_r" -f "$T/load.creq" \
		    >>"$T/load.out" 2>>"$T/load.err"
		_n=$((_n + _c))
	done
	: >"$T/load.done"
}
loader &
LOAD_PID=$!
# await WHAT CMD...: until CMD succeeds (looked at every 0.1 s); a failed
# check naming WHAT when WAIT_T seconds pass first, or the load ends
# first (its contracts all spent).
await() {
	_what=$1
	shift
	_i=0
	until "$@"; do
		if [ -f "$T/load.done" ]; then
			"$@" && return 0
			notok "$_what: the load spent its $LOAD contracts first"
			return 1
		fi
		if [ $_i -ge $((WAIT_T * 10)) ]; then
			notok "$_what: not within $WAIT_T s"
			return 1
		fi
		sleep 0.1
		_i=$((_i + 1))
	done
	return 0
}
primary_accepts() {
	[ "$(sql "$P" "SELECT count(*) FROM audit WHERE contract LIKE 'f%'
	    AND action = 'auth' AND verdict = 'accept'")" -ge "$LOAD_BEFORE" ]
}
# A line of load.out for a request sent at or after $1 (µs).
sent_since() { awk -v a="$1" '$5 >= a { f = 1 } END { exit !f }' "$T/load.out"; }
# Each radiusd (0 and 1) has accepted LOAD_AFTER requests sent at or
# after $1.
both_accept_since() {
	awk -v a="$1" -v n="$LOAD_AFTER" '$3 == "accept" && $5 >= a { s[$2]++ }
	    END { exit !(s[0] >= n && s[1] >= n) }' "$T/load.out"
}
await "the primary holds $LOAD_BEFORE accepts of the load before the kill" \
    primary_accepts
T_KILL=$(now_us)
sh "$PGCTL" crash "$P"
T_KILLED=$(now_us)
# A NAS's probe while there is no primary, during the second before the
# promotion: the module cannot read the store, so radiusd stays silent.
PORT=$PA RADCLIENT_T=1 status ss-down &
PROBE_PID=$!
sleep 1
wait "$PROBE_PID"
# And radiusd has refused it: a busy host may have it wait in radiusd's
# queue past radclient's second, and a probe handled after the promotion
# is answered (at once on a quiet host; up to 60 s).
log_says "$T/ra/log/radius.log" 'Status-Server: not answering'
await "the load holds an answer to a request sent after the kill" \
    sent_since "$T_KILLED"
set_rate "$RATE_IDLE"
T_PROMOTE=$(now_us)
sh "$PGCTL" promote "$S"
T_PROMOTED=$(now_us)
set_rate "$RATE"
await "each radiusd accepts $LOAD_AFTER requests sent after the promotion" \
    both_accept_since "$T_PROMOTE"
: >"$T/load.stop"
wait "$LOAD_PID"
LOAD_PID=""
T_STOPPED=$(now_us)
LAST_STEP=$(($(date +%s) / 30))
figure "primary killed $(((T_KILLED - T_KILL) / 1000)) ms after the order; promotion ordered $(((T_PROMOTE - T_KILLED) / 1000)) ms after the kill, done in $(((T_PROMOTED - T_PROMOTE) / 1000)) ms"
set -- $(counts "$T/load.out")
figure "load: $(wc -l <"$T/load.req") requests (of $LOAD contracts) at $RATE/s over $(((T_STOPPED - T_KILL) / 1000)) ms after the kill was ordered: $1 accept, $2 reject, $4 timeout, $5 invalid"
check "the load was answered or timed out, every reply verified ($5 invalid)" \
    test "$5" -eq 0 -a "$(wc -l <"$T/load.out")" -eq "$(wc -l <"$T/load.req")"
before=$(awk -v k="$T_KILL" '$3 == "accept" && $6 < k' "$T/load.out" | wc -l)
check "accepts before the kill ($before)" test "$before" -gt 0
during=$(awk -v a="$T_KILLED" -v b="$T_PROMOTE" '$3 == "accept" && $5 >= a && $5 < b' "$T/load.out" | wc -l)
sent_during=$(awk -v a="$T_KILLED" -v b="$T_PROMOTE" '$5 >= a && $5 < b' "$T/load.out" | wc -l)
figure "accepted before the kill: $before; sent while there was no primary: $sent_during, accepted: $during"
check "no accept for the $sent_during requests sent while there was no primary ($during)" \
    test "$during" -eq 0 -a "$sent_during" -gt 0
# From the order to promote (pg_ctl promote -w returns only once it has
# seen the promotion done, which may be after the first accepts).
for k in 0 1; do
	first=$(awk -v p="$T_PROMOTE" -v s="$k" '$2 == s && $3 == "accept" && $5 >= p { print $6 }' \
	    "$T/load.out" | sort -n | head -n 1)
	if [ -n "$first" ]; then
		ms=$(((first - T_PROMOTE) / 1000))
		figure "time to first accept on the new primary, radiusd $k: $ms ms after the promotion was ordered (bound ${FIRST_ACCEPT_BOUND} s)"
		check "radiusd $k accepts fresh codes on the new primary without a restart ($ms ms)" \
		    test "$ms" -lt $((FIRST_ACCEPT_BOUND * 1000))
	else
		notok "radiusd $k accepts fresh codes on the new primary without a restart (none in the load)"
	fi
done
check "neither radiusd was restarted" kill -0 "$PID_A" "$PID_B"

# Every code answered Access-Accept, before, during or after the switch:
# its mark is on the new primary, and the code is refused as replayed.
awk '$3 == "accept" { print $1 }' "$T/load.out" | sort >"$T/accepted"
nacc=$(wc -l <"$T/accepted")
lost=0
# (A mark on an earlier step with the same digits counts: early_marks.)
{
	sql "$S" "SELECT c.id FROM contracts c JOIN tokens t ON t.serial = c.serial
	    WHERE c.id LIKE 'f%' AND t.last_step BETWEEN $STEP AND $LAST_STEP"
	early_marks "$S" f "$T/load.secrets" "$T/load.req"
} | sort >"$T/marked"
lost=$(comm -23 "$T/accepted" "$T/marked" | wc -l)
figure "marks checked after promotion: $nacc, lost marks: $lost"
check "every accepted code's mark is on the new primary ($lost of $nacc lost)" \
    test "$lost" -eq 0 -a "$nacc" -gt 0
# The load's request lines of the accepted ids, sent again.
awk 'NR == FNR { a["id=" $1] = 1; next } a[$1]' "$T/accepted" "$T/load.req" >"$T/replay.req"
$LOADER -c 64 -t 5000 -f "$T/replay.req" >"$T/replay.out" 2>"$T/replay.err"
set -- $(counts "$T/replay.out")
figure "accepted codes sent again after the promotion: $(wc -l <"$T/replay.out"), accepted again: $1, refused: $2, unanswered: $4"
check "0 double accepts across the switch: all $nacc accepted codes refused" \
    test "$1" -eq 0 -a "$2" -eq "$nacc"
# Each refusal's reason, the contract's last audit row on the new
# primary: REPLAYED; or, for a replay answered after its code's window
# closed (a slow host's long failover), WRONG_CODE.
sql "$S" "SELECT a.contract, a.reason FROM audit a JOIN (SELECT contract,
    max(id) AS hi FROM audit WHERE contract LIKE 'f%' AND action = 'auth'
    GROUP BY contract) m ON a.id = m.hi" | tr '|' ' ' >"$T/replay.reasons"
set -- $(awk 'FILENAME == ARGV[1] { cl[$1] = $2; next }
    FILENAME == ARGV[2] { r[$1] = $2; next }
    $3 != "reject" { next }
    r[$1] == 11 { rep++; next }
    r[$1] == 10 && $6 >= cl[$1] { late++; next }
    { bad++; print $0, "reason", r[$1], "window closes", cl[$1] >"/dev/stderr" }
    END { print rep + 0, late + 0, bad + 0 }' "$T/load.close" \
    "$T/replay.reasons" "$T/replay.out" 2>"$T/replay.bad")
check "the new primary's audit calls them REPLAYED ($1 of $nacc; $2 WRONG_CODE after their window closed, $3 otherwise)" \
    test "$3" -eq 0 -a $(($1 + $2)) -eq "$nacc"
head -n 5 "$T/replay.bad" | sed 's/^/#   /'
kbefore=$(awk -v k="$T_KILL" '$3 == "accept" && $6 < k { print $1 }' "$T/load.out" | sort)
kb_refused=$(echo "$kbefore" | awk 'NR == FNR { a[$1] = 1; next } a[$1] && $3 == "reject"' - "$T/replay.out" | wc -l)
check "each of the $before codes accepted before the kill is refused after the promotion" \
    test "$kb_refused" -eq "$before"

# ---- after the switch: fresh codes everywhere, healthy, counted ----
"$PROVISION" codes "$T/probe.secrets" 0 'id=%u User-Name=%u User-Password=%c' >"$T/probe.req"
$LOADER -c 32 -t 5000 -f "$T/probe.req" >"$T/probe.out" 2>"$T/probe.err"
set -- $(counts "$T/probe.out")
check "fresh codes through both radiusd after the failover: $1 of $PROBES accepted" \
    test "$1" -eq "$PROBES"
check "Status-Server while there was no primary: no answer (got $(reply_of ss-down)), the module's refusal in the log" \
    sh -c '[ "$1" = none ] && grep -q "Status-Server: not answering" "$2"/ra/log/radius.log' \
    sh "$(reply_of ss-down)" "$T"
PORT=$PA status ss-a
PORT=$PB status ss-b
check "Status-Server after the promotion: both radiusd answer ($(reply_of ss-a), $(reply_of ss-b))" \
    test "$(reply_of ss-a)" = Access-Accept -a "$(reply_of ss-b)" = Access-Accept
check "health: the farm is healthy on the new primary" \
    sh -c '"$1" health >"$2/health.log" && grep -q "^store   ok .*host=$3" "$2/health.log"' sh "$CLI" "$SB" "$S"
"$CLI" metrics >"$T/metrics.2"
reopen=$(awk '$1 == "shinkin_otp_store_reopens_total{result=\"ok\"}" { print $2 }' "$T/metrics.2")
unav=$(awk '$1 == "shinkin_otp_store_errors_total{kind=\"unavailable\"}" { print $2 }' "$T/metrics.2")
figure "metrics: store errors (unavailable) $unav, reopens $reopen"
check "metrics: the lost connections were counted and reopened ($unav errors, $reopen reopens)" \
    test "${unav:-0}" -gt 0 -a "${reopen:-0}" -gt 0
if cat "$T"/ra/log/*.log "$T"/rb/log/*.log | grep -q 'runtime error'; then
	notok "no sanitizer runtime error in radiusd's output"
	grep -h 'runtime error' "$T"/ra/log/*.log "$T"/rb/log/*.log | head -5 | sed 's/^/#   /'
else
	ok "no sanitizer runtime error in radiusd's output"
fi
echo "1..$TAPN"

#!/bin/sh
# make demo: shinkin-otp end to end, in a sandbox under the build tree.
#
# Provisions a token and shows its QR code, starts a private radiusd with
# rlm_shinkin_otp on 127.0.0.1, and has the customer register over RADIUS
# challenge rounds, in Japanese as the bank's customers read it, with a
# code from oathtool (standing in for the customer's phone); then walks
# through a login with challenge, a transfer, the mobile channel, a
# replayed code, a lockout and its unlock, unregistration and closing the
# contract. Every step's outcome is checked; the script stops what it
# started.
#   scripts/demo.sh BUILD_DIR
set -u
BUILD=$(cd "${1:-build}" && pwd)
TOP=$(cd "$(dirname "$0")/.." && pwd)
DEMO="$BUILD/demo"
CLI="$BUILD/shinkin-otp"
SECRET_RAD=demo-radius-secret
PORT=${SOTP_DEMO_PORT:-18212}
FR_PID=""
STEP=0

cleanup() {
	if [ -n "$FR_PID" ]; then
		kill "$FR_PID" 2>/dev/null
		wait "$FR_PID" 2>/dev/null
	fi
}
trap cleanup EXIT
# A signal ends the demo (the EXIT trap then stops radiusd); trapped
# without exiting, the script went on after its radiusd was gone.
trap 'exit 1' INT TERM HUP

step() {
	STEP=$((STEP + 1))
	printf '\n== %d. %s\n' "$STEP" "$*"
}
say() { printf '   %s\n' "$*"; }
# run CMD...: show the command, run it, indent its output.
run() {
	printf '$ %s\n' "$*" | sed "s|$BUILD/||g"
	"$@" 2>&1 | sed 's/^/  /'
}
outcome() { printf '=> %s\n' "$*"; }
die() {
	printf 'demo: FAILED at step %d: %s\n' "$STEP" "$*"
	[ -f "$DEMO/radius/log/radius.log" ] &&
		tail -n 20 "$DEMO/radius/log/radius.log"
	exit 1
}
# The phone's code for the next usable step, in CODE: each code the demo
# uses must be newer than the last (codes are single use), and at most one
# step ahead of the server's clock (the policy's window); wait otherwise.
LAST_STEP=-1
next_code() {
	while :; do
		now_step=$(($(date +%s) / 30))
		s=$((LAST_STEP + 1))
		[ "$s" -lt "$now_step" ] && s=$now_step
		[ "$s" -le $((now_step + 1)) ] && break
		say "(waiting $((30 - $(date +%s) % 30))s for the phone's next code)"
		# In the background: a signal is acted on now, not after it.
		sleep $((30 - $(date +%s) % 30)) &
		wait $!
	done
	LAST_STEP=$s
	CODE=$(oathtool --totp -b --now "@$((s * 30))" "$TOKEN_SECRET")
}

# radius NAME ATTRS...: one Access-Request through radclient; prints the
# reply and leaves its type in REPLY, its State in STATE.
radius() {
	_n=$1
	shift
	req="Message-Authenticator = 0x00"
	for a in "$@"; do req="$req, $a"; done
	printf '$ radclient 127.0.0.1:%s auth <<< %s\n' "$PORT" \
	    "$(echo "$req" | sed 's/User-Password = "[^"]*"/User-Password = "******"/')"
	echo "$req" | radclient -x -t 10 -r 1 "127.0.0.1:$PORT" auth \
	    "$SECRET_RAD" >"$DEMO/$_n.out" 2>&1
	REPLY=$(sed -n 's/^Received \(Access-[A-Za-z]*\) .*/\1/p' \
	    "$DEMO/$_n.out" | head -n 1)
	# The reply's State and texts, not the request's.
	STATE=$(sed -n '/^Received /,$ s/^[[:space:]]*State = \(0x[0-9a-fA-F]*\).*/\1/p' \
	    "$DEMO/$_n.out" | head -n 1)
	printf '  %s\n' "${REPLY:-no reply}"
	sed -n '/^Received /,$ s/^[[:space:]]*Reply-Message = \(.*\)/  Reply-Message: \1/p' \
	    "$DEMO/$_n.out"
	sed -n '/^Received /,$ s/^[[:space:]]*Prompt = \(.*\)/  Prompt: \1/p' \
	    "$DEMO/$_n.out"
}

expect_reply() {
	[ "$REPLY" = "$1" ] || die "expected $1, got ${REPLY:-no reply}"
	outcome "$2"
}

# ---- the sandbox ----

rm -rf "$DEMO"
mkdir -p "$DEMO"
CONF="$DEMO/shinkin-otp.conf"
export SHINKIN_OTP_CONFIG="$CONF"

step "An operator sets up shinkin-otp: policy, master key, store"
run "$CLI" init || die "init"
outcome "a sandbox under $DEMO"

step "A token is provisioned; the customer scans its QR code"
run "$CLI" token generate || die "token generate"
SERIAL=$("$CLI" --json token list --unassigned |
    sed -n 's/.*"serial":"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$SERIAL" ] || die "no serial"
"$CLI" token show "$SERIAL" --uri >"$DEMO/uri.txt" || die "token show"
URI=$(sed -n 's/^uri: //p' "$DEMO/uri.txt")
TOKEN_SECRET=$(echo "$URI" | sed -n 's/.*[?&]secret=\([A-Z2-7=]*\).*/\1/p')
[ -n "$TOKEN_SECRET" ] || die "no secret in the key URI"
run "$CLI" token show "$SERIAL" --qr || die "token show --qr"
outcome "token $SERIAL is ready; the phone now shows its codes"

CONTRACT=C-1001
PASSWORD='correct horse battery'
step "The bank opens contract $CONTRACT and mails its customer card"
printf '$ echo "******" | shinkin-otp contract add %s\n' "$CONTRACT"
echo "$PASSWORD" | "$CLI" contract add "$CONTRACT" 2>&1 | sed 's/^/  /'
run "$CLI" contract card "$CONTRACT" >"$DEMO/card.txt" || die "card"
cat "$DEMO/card.txt"
# The printed grid: a header, then "A  d d d ...".
card_digits() {
	for cell in $1; do
		r=$(printf '%s' "$cell" | cut -c1)
		c=$(printf '%s' "$cell" | cut -c2)
		awk -v r="$r" -v c="$c" '$1 == r { printf "%s", $(c + 2) }' \
		    "$DEMO/card.txt"
	done
}
outcome "contract $CONTRACT exists, with a card and no token yet"

# ---- radiusd with the module and the shipped samples ----

step "The RADIUS gateway: radiusd with rlm_shinkin_otp on 127.0.0.1"
R="$DEMO/radius"
mkdir -p "$R/run" "$R/log" "$R/lib"
ln -sf "${RLM_SO:-$BUILD/rlm_shinkin_otp.so}" "$R/lib/rlm_shinkin_otp.so"
# The shipped module section, pointed at the sandbox's policy, with the
# context taken from NAS-Identifier through the policy's [services].
sed -e "s|^\tconfig = .*|\tconfig = $CONF|" \
    -e 's|^\tcontext = login|#\tcontext = login|' \
    -e 's|^#\tcontext_attribute = NAS-Identifier|\tcontext_attribute = NAS-Identifier|' \
    "$TOP/conf/freeradius/mods-available/shinkin_otp" >"$R/shinkin_otp"
cp "$TOP/conf/freeradius/sites-available/shinkin-otp" "$R/site"
# start_radiusd: writes radiusd.conf for $PORT and starts radiusd; returns
# 2 when the port is taken (another program listens there), 1 on any
# other failure.
start_radiusd() {
	cat >"$R/radiusd.conf" <<EOF
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
confdir = $R
raddbdir = $R
run_dir = $R/run
logdir = $R/log
libdir = $R/lib:/usr/lib/freeradius
pidfile = $R/run/radiusd.pid
proxy_requests = no
log {
	destination = files
	file = $R/log/radius.log
}
security {
	reject_delay = 0
}
thread pool {
	start_servers = 2
	max_servers = 4
}
# As on a server with Debian's stock configuration: one listener (there,
# the default site's), and the gateway's client entry sends its requests
# to the shinkin-otp virtual server.
listen {
	type = auth
	ipaddr = 127.0.0.1
	port = $PORT
}
client gateway {
	ipaddr = 127.0.0.1
	secret = $SECRET_RAD
	require_message_authenticator = yes
	virtual_server = shinkin-otp
}
modules {
\$INCLUDE $R/shinkin_otp
}
\$INCLUDE $R/site
EOF
	rm -f "$R/log/radius.log"
	freeradius -f -d "$R" >"$R/log/stdout.log" 2>&1 &
	FR_PID=$!
	i=0
	until grep -q "Ready to process requests" "$R/log/radius.log" 2>/dev/null; do
		if ! kill -0 "$FR_PID" 2>/dev/null; then
			wait "$FR_PID" 2>/dev/null
			FR_PID=""
			grep -q "Address already in use" "$R/log/radius.log" \
			    "$R/log/stdout.log" 2>/dev/null && return 2
			return 1
		fi
		# Up to 60 s: at once on a quiet host, but a busy one (a CI
		# run, the sanitizers' module) can take more than 10.
		i=$((i + 1))
		[ $i -lt 600 ] || die "radiusd did not get ready in 60 s"
		sleep 0.1
	done
	return 0
}
# The port: SOTP_DEMO_PORT if set (that one only), else 18212 or, while
# another program holds it, one of a few after it.
tries=1
[ -n "${SOTP_DEMO_PORT:-}" ] || tries=8
while :; do
	start_radiusd
	rc=$?
	[ $rc -eq 0 ] && break
	[ $rc -eq 2 ] || die "radiusd did not start"
	tries=$((tries - 1))
	[ $tries -gt 0 ] ||
		die "port $PORT on 127.0.0.1 is taken (set SOTP_DEMO_PORT to a free port)"
	say "port $PORT is taken; trying $((PORT + 101))"
	PORT=$((PORT + 101))
done
outcome "radiusd is up on 127.0.0.1:$PORT (pid $FR_PID), requests must carry Message-Authenticator"

step "Self-service registration over RADIUS, in Japanese: one question per challenge, in the guide's order"
say "the policy speaks Japanese (language = ja); each answer goes back with the State"
radius reg1 "User-Name = \"$CONTRACT\"" "User-Password = \"$PASSWORD\"" \
    'NAS-Identifier = "ib-register"'
expect_reply Access-Challenge "password checked; the bank asks for the serial"
radius reg2 "User-Name = \"$CONTRACT\"" "User-Password = \"$SERIAL\"" \
    "State = $STATE" 'NAS-Identifier = "ib-register"'
expect_reply Access-Challenge "serial checked; the bank asks for the current code"
next_code
radius reg3 "User-Name = \"$CONTRACT\"" "User-Password = \"$CODE\"" \
    "State = $STATE" 'NAS-Identifier = "ib-register"'
expect_reply Access-Challenge "code checked; the bank asks whether login asks for a code"
radius reg4 "User-Name = \"$CONTRACT\"" 'User-Password = "1"' \
    "State = $STATE" 'NAS-Identifier = "ib-register"'
expect_reply Access-Challenge "choice taken; the bank asks for the card digits"
# The cells, as the Japanese prompt names them: B行7列 is row B, column 7.
CELLS=$(sed -n '/^Received /,$ s/^[[:space:]]*Reply-Message = //p' \
    "$DEMO/reg4.out" | grep -o '[A-Z]行[0-9]*列' | sed 's/行//; s/列//' | xargs)
[ -n "$CELLS" ] || die "no card cells in the prompt"
say "the customer reads cells $CELLS from the card"
radius reg5 "User-Name = \"$CONTRACT\"" \
    "User-Password = \"$(card_digits "$CELLS")\"" "State = $STATE" \
    'NAS-Identifier = "ib-register"'
expect_reply Access-Accept "registered"
"$CLI" contract show "$CONTRACT" | grep -q "token: $SERIAL" ||
	die "token not bound"
outcome "token $SERIAL is bound to $CONTRACT; login asks for a code"

step "Login: password, then the code asked by an Access-Challenge"
radius login1 "User-Name = \"$CONTRACT\"" "User-Password = \"$PASSWORD\"" \
    'NAS-Identifier = "ib-login"'
expect_reply Access-Challenge "the gateway asks for the one-time code"
next_code
LOGIN_CODE=$CODE
LOGIN_STATE=$STATE
radius login2 "User-Name = \"$CONTRACT\"" "User-Password = \"$LOGIN_CODE\"" \
    "State = $STATE" 'NAS-Identifier = "ib-login"'
expect_reply Access-Accept "logged in"

step "A transfer: a code, always, and nothing else"
next_code
TRANSFER_CODE=$CODE
radius transfer "User-Name = \"$CONTRACT\"" \
    "User-Password = \"$TRANSFER_CODE\"" 'NAS-Identifier = "ib-transfer"'
expect_reply Access-Accept "transfer authorised with code ******"

step "The mobile channel (a feature phone): the password only"
radius mobile "User-Name = \"$CONTRACT\"" "User-Password = \"$PASSWORD\"" \
    'NAS-Identifier = "ib-mobile"'
expect_reply Access-Accept "logged in on the mobile channel, no code asked"

step "An eavesdropper replays the transfer's code"
radius replay "User-Name = \"$CONTRACT\"" \
    "User-Password = \"$TRANSFER_CODE\"" 'NAS-Identifier = "ib-transfer"'
expect_reply Access-Reject "the used code is refused"
radius replay-state "User-Name = \"$CONTRACT\"" \
    "User-Password = \"$LOGIN_CODE\"" "State = $LOGIN_STATE" \
    'NAS-Identifier = "ib-login"'
expect_reply Access-Reject "the used challenge State is refused too"

step "Wrong codes until the contract locks (policy: 5 failures)"
n=0
while [ $n -lt 6 ]; do
	n=$((n + 1))
	radius wrong$n "User-Name = \"$CONTRACT\"" 'User-Password = "000000"' \
	    'NAS-Identifier = "ib-transfer"'
	[ "$REPLY" = Access-Reject ] || die "a wrong code was not rejected"
	grep -q 'ご利用を停止しています' "$DEMO/wrong$n.out" && break
done
grep -q 'ご利用を停止しています' "$DEMO/wrong$n.out" ||
	die "no lock after $n failures"
run "$CLI" contract show "$CONTRACT"
next_code
radius locked "User-Name = \"$CONTRACT\"" "User-Password = \"$CODE\"" \
    'NAS-Identifier = "ib-transfer"'
expect_reply Access-Reject "locked: even the right code is refused"

step "The bank's operator unlocks the contract"
run "$CLI" contract unlock "$CONTRACT" || die "unlock"
next_code
radius unlocked "User-Name = \"$CONTRACT\"" "User-Password = \"$CODE\"" \
    'NAS-Identifier = "ib-transfer"'
expect_reply Access-Accept "the customer is back in"

step "Unregistration (password + a current code), then closing the contract"
run "$CLI" contract close "$CONTRACT"
outcome "closing is refused while a token is bound"
next_code
printf '$ echo "******" | shinkin-otp verify %s --context unregistration --otp ******\n' \
    "$CONTRACT"
echo "$PASSWORD" | "$CLI" verify "$CONTRACT" --context unregistration \
    --otp "$CODE" 2>&1 | sed 's/^/  /'
"$CLI" contract show "$CONTRACT" | grep -q "token: $SERIAL" &&
	die "token still bound"
run "$CLI" contract close "$CONTRACT" || die "close refused"
outcome "the token is free again and the contract is closed"

step "The audit trail (no secret, password or code in it)"
run "$CLI" audit --contract "$CONTRACT"

kill "$FR_PID" 2>/dev/null
wait "$FR_PID" 2>/dev/null
FR_PID=""
printf '\n== demo complete: every step behaved as the bank expects\n'

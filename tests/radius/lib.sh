# shellcheck shell=sh
# Helpers for the RADIUS suites: a private radiusd on 127.0.0.1 with a
# single-file config under a temp dir, and radclient exchanges checked
# through filter files. Sourced after tests/lib.sh.
#
#   RLM_SO   the module to load (default $BUILD/rlm_shinkin_otp.so)
#   FR_DIR   the private config dir (made by fr_setup)
#   PORT     its auth port; SECRET its shared secret
#   FR_STATUS_SERVER  yes: radiusd answers Status-Server (default no)

SECRET=sotp-test-secret
# radclient's wait for a reply: long enough for a loaded CI machine (an
# answered request ends the wait; only a test that wants no answer waits
# it out, and sets its own).
RADCLIENT_T=${RADCLIENT_T:-10}
FR_PIDS=""

# A free UDP port on 127.0.0.1 (the kernel picks; radiusd binds it next).
free_port() {
	python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + $$ % 30000))
}

# fr_setup DIR: a fresh config dir with the module linked into DIR/lib.
fr_setup() {
	FR_DIR=$1
	mkdir -p "$FR_DIR/run" "$FR_DIR/log" "$FR_DIR/lib"
	ln -sf "$RLM_SO" "$FR_DIR/lib/rlm_shinkin_otp.so"
}

# fr_write_conf MODULES SERVERS: writes $FR_DIR/radiusd.conf around the
# given modules{} body and server sections. Every setting the notes found
# necessary for a private radiusd is here (../shared/notes section 2).
fr_write_conf() {
	cat >"$FR_DIR/radiusd.conf" <<EOF
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
confdir = $FR_DIR
raddbdir = $FR_DIR
run_dir = $FR_DIR/run
logdir = $FR_DIR/log
libdir = $FR_DIR/lib:/usr/lib/freeradius
pidfile = $FR_DIR/run/radiusd.pid
name = freeradius
max_request_time = 30
cleanup_delay = 0
max_requests = 16384
hostname_lookups = no
proxy_requests = no
log {
	destination = files
	file = $FR_DIR/log/radius.log
	stripped_names = no
	auth = no
}
security {
	reject_delay = 0
	allow_core_dumps = no
	status_server = ${FR_STATUS_SERVER:-no}
}
thread pool {
	start_servers = 8
	max_servers = 16
	min_spare_servers = 4
	max_spare_servers = 16
	max_requests_per_server = 0
	max_queue_size = 65536
}
client local {
	ipaddr = 127.0.0.1
	secret = $SECRET
	require_message_authenticator = yes
}
modules {
$1
}
$2
EOF
}

# fr_start MODE: starts radiusd (-X single-threaded, or -f with its thread
# pool) in the background and waits until it answers. Killed by fr_stop_all
# (the suites' EXIT trap).
#
# free_port's port is free when it is chosen, not when radiusd binds it:
# another process may take it meanwhile. When radiusd then fails to bind
# it, that port is replaced with a new free one in radiusd.conf, PORT too
# when it named it, and radiusd is started again (FR_START_TRIES times in
# all). FR_PORT is then the port of the config's first auth listener
# (fr_auth_port), where Access-Requests go: not an acct listener's, nor a
# module's "port =" (modules{} comes before the servers in radiusd.conf).
#
# A start under ASan on a loaded host may take many seconds: it is given
# FR_START_T seconds (default 60), looked at every 0.1 s.
FR_START_TRIES=${FR_START_TRIES:-5}
FR_START_T=${FR_START_T:-60}
fr_start() {
	FR_PORT=""
	_try=1
	while :; do
		fr_start_once "$1"
		_rc=$?
		[ $_rc -eq 2 ] || break
		# The port radiusd could not bind, as its log names it.
		_old=$(sed -n 's/.*Failed binding to .* port \([0-9][0-9]*\) .*Address already in use.*/\1/p' \
		    "$FR_DIR/log/$1.log" "$FR_DIR/log/radius.log" 2>/dev/null |
		    head -n 1)
		if [ -z "$_old" ] || [ $_try -ge "$FR_START_TRIES" ]; then
			echo "# radiusd exited during start (try $_try)" >&2
			cat "$FR_DIR"/log/*.log >&2
			return 1
		fi
		_new=$(free_port)
		echo "# port $_old was taken before radiusd bound it: port $_new" >&2
		sed -i "s/^\([[:space:]]*port = \)$_old\$/\1$_new/" \
		    "$FR_DIR/radiusd.conf"
		[ "${PORT:-}" = "$_old" ] && PORT=$_new
		_try=$((_try + 1))
	done
	[ $_rc -eq 0 ] || return $_rc
	FR_PORT=$(fr_auth_port "$FR_DIR/radiusd.conf")
	if [ -z "$FR_PORT" ]; then
		echo "# $FR_DIR/radiusd.conf: no listen section of type auth with a port" >&2
		return 1
	fi
	return 0
}

# fr_auth_port CONF: the port of CONF's first listen section of type auth
# (or auth+acct), in file order; nothing when there is none. Only the
# listen section's own settings count, not those of a block inside it.
fr_auth_port() {
	awk '
	{ sub(/#.*/, "") }
	!in_l && /^[[:space:]]*listen[[:space:]]*\{[[:space:]]*$/ {
		in_l = 1; d = 1; type = ""; port = ""; next
	}
	in_l {
		if (d == 1 && $1 == "type" && $2 == "=") type = $3
		if (d == 1 && $1 == "port" && $2 == "=") port = $3
		o = gsub(/\{/, "{"); c = gsub(/\}/, "}")
		d += o - c
		if (d <= 0) {
			in_l = 0
			if ((type == "auth" || type == "auth+acct") &&
			    port ~ /^[0-9]+$/) { print port; exit }
		}
	}' "$1"
}

# fr_start_once MODE: one start; 0 ready, 1 not ready in time, 2 exited.
fr_start_once() {
	_mode=$1
	: >"$FR_DIR/log/radius.log"
	if [ "$_mode" = X ]; then
		freeradius -X -d "$FR_DIR" >"$FR_DIR/log/X.log" 2>&1 &
	else
		freeradius -f -d "$FR_DIR" >"$FR_DIR/log/f.log" 2>&1 &
	fi
	FR_PID=$!
	FR_PIDS="$FR_PIDS $FR_PID"
	_i=0
	while [ $_i -lt $((FR_START_T * 10)) ]; do
		if ! kill -0 "$FR_PID" 2>/dev/null; then
			wait "$FR_PID" 2>/dev/null
			# Gone: its pid is not to be killed later.
			FR_PIDS=$(echo "$FR_PIDS" | sed "s/ $FR_PID\( \|\$\)/\1/")
			FR_PID=""
			return 2
		fi
		# This start's own log only: X.log of an earlier -X run
		# also says "Ready" (and is kept for the UBSan check).
		if grep -q "Ready to process requests" "$FR_DIR/log/$_mode.log" \
		    "$FR_DIR/log/radius.log" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
		_i=$((_i + 1))
	done
	echo "# radiusd did not get ready in $FR_START_T s" >&2
	return 1
}

fr_stop() {
	[ -n "${FR_PID:-}" ] || return 0
	kill "$FR_PID" 2>/dev/null
	_i=0
	while kill -0 "$FR_PID" 2>/dev/null && [ $_i -lt 50 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
	kill -9 "$FR_PID" 2>/dev/null
	wait "$FR_PID" 2>/dev/null
	FR_PID=""
}

fr_stop_all() {
	for _p in $FR_PIDS; do
		kill "$_p" 2>/dev/null
	done
	sleep 0.2
	for _p in $FR_PIDS; do
		kill -9 "$_p" 2>/dev/null
	done
	FR_PIDS=""
}

# rad NAME REQUEST [FILTER]: sends the request (attribute lines) with
# radclient -x; output in $T/NAME.out, exit status radclient's. With a
# FILTER (lines as radclient -f req:filter wants), rc 0 means the reply
# matched it exactly: every reply attribute must be listed.
rad() {
	_n=$1
	printf '%s\n' "$2" >"$T/$_n.req"
	if [ $# -ge 3 ]; then
		printf '%s\n' "$3" >"$T/$_n.filt"
		radclient -x -t "$RADCLIENT_T" -r 1 -f "$T/$_n.req:$T/$_n.filt" \
		    "127.0.0.1:$PORT" auth "$SECRET" >"$T/$_n.out" 2>&1
	else
		radclient -x -t "$RADCLIENT_T" -r 1 -f "$T/$_n.req" \
		    "127.0.0.1:$PORT" auth "$SECRET" >"$T/$_n.out" 2>&1
	fi
}

# status NAME: one signed Status-Server (RFC 5997); output as rad's.
status() {
	printf 'Message-Authenticator = 0x00\n' >"$T/$1.req"
	radclient -x -t "$RADCLIENT_T" -r 1 -f "$T/$1.req" "127.0.0.1:$PORT" \
	    status "$SECRET" >"$T/$1.out" 2>&1
}

# log_says FILE TEXT: FILE holds TEXT, or does within 60 s. radiusd logs a
# packet when it gets to it, which a busy host (ASan, a CI run beside
# it) can put off past the client's timeout: a check of an unanswered
# request must wait for it. Only a failing check waits it out.
log_says() {
	_i=0
	until grep -qF -- "$2" "$1" 2>/dev/null; do
		[ $_i -ge 600 ] && return 1
		sleep 0.1
		_i=$((_i + 1))
	done
}

# The reply type radclient saw for NAME: Access-Accept, ...; "none".
reply_of() {
	sed -n 's/^Received \(Access-[A-Za-z]*\) .*/\1/p' "$T/$1.out" |
	    head -n 1 | grep . || echo none
}

# The State of NAME's reply, as radclient prints it (0x...); not the one
# the request carried.
state_of() {
	sed -n '/^Received /,$ s/^[[:space:]]*State = \(0x[0-9a-fA-F]*\).*/\1/p' \
	    "$T/$1.out" | head -n 1
}

# Filters for our replies: each lists the reply's attributes exactly.
# f_challenge PROMPT [Echo|No-Echo], f_accept [MESSAGE], f_reject [MESSAGE].
f_challenge() {
	printf '%s\n' "Response-Packet-Type == Access-Challenge" \
	    "Message-Authenticator =* ANY" "State =* ANY" \
	    "Reply-Message == \"$1\"" "Prompt == ${2:-No-Echo}"
}
f_accept() {
	printf '%s\n' "Response-Packet-Type == Access-Accept" \
	    "Message-Authenticator =* ANY"
	[ $# -gt 0 ] && printf '%s\n' "Reply-Message == \"$1\""
	return 0
}
f_reject() {
	printf '%s\n' "Response-Packet-Type == Access-Reject" \
	    "Message-Authenticator =* ANY"
	[ $# -gt 0 ] && printf '%s\n' "Reply-Message == \"$1\""
	return 0
}

# A request as radclient reads it: User-Name, User-Password, signed.
#   req USER PASSWORD [MORE ATTRIBUTES...]
req() {
	_r="User-Name = \"$1\", User-Password = \"$2\", Message-Authenticator = 0x00"
	shift 2
	for _a in "$@"; do
		_r="$_r, $_a"
	done
	printf '%s' "$_r"
}

# exchange NAME REQUEST FILTER WHAT: one check, with the output on failure.
exchange() {
	if rad "$1" "$2" "$3"; then
		ok "$4"
	else
		notok "$4"
		sed 's/^/#   /' "$T/$1.out"
	fi
}

# What the customer was shown: every Reply-Message of NAME's reply, in
# order, each followed by "|".
shown() {
	sed -n '/^Received /,$ s/^[[:space:]]*Reply-Message = "\(.*\)"$/\1/p' \
	    "$T/$1.out" | tr '\n' '|'
}

# The Prompt attribute of NAME's reply (Echo, No-Echo), or "".
prompt_attr() {
	sed -n '/^Received /,$ s/^[[:space:]]*Prompt = \(.*\)$/\1/p' "$T/$1.out"
}

# round NAME TYPE TEXT PROMPT WHAT: NAME's reply was TYPE, showed exactly
# TEXT (one Reply-Message) and carried PROMPT ("" for none).
round() {
	if [ "$(reply_of "$1")" = "$2" ] && [ "$(shown "$1")" = "${3:+$3|}" ] &&
	    [ "$(prompt_attr "$1")" = "$4" ]; then
		ok "$5"
	else
		notok "$5 (got $(reply_of "$1"), shown '$(shown "$1")', prompt '$(prompt_attr "$1")')"
		sed 's/^/#   /' "$T/$1.out"
	fi
}

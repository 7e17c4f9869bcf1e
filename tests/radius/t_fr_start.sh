#!/bin/sh
# The RADIUS suites' own harness (tests/radius/lib.sh): fr_start must
# survive what a busy CI host does to it. free_port's port can be taken
# by another process before radiusd binds it; radiusd under ASan on a
# loaded host can take many seconds to get ready. Neither may fail a
# suite by chance. A private radiusd with files and pap only (no module
# of ours): what is tested is the harness.
. "$TOP/tests/lib.sh"
. "$TOP/tests/radius/lib.sh"

for b in freeradius radclient python3; do
	command -v "$b" >/dev/null ||
		{ notok "$b installed (sh scripts/deps.sh)"; exit 1; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/sotp-frs.XXXXXX")
HOLDER=""
trap 'fr_stop_all; [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null; rm -rf "$T"' EXIT
trap 'exit 1' INT TERM HUP
RLM_SO=/dev/null

# conf DIR: a radiusd in DIR listening on $PORT that accepts user/pw.
conf() {
	fr_setup "$1"
	printf 'user\tCleartext-Password := "pw"\n' >"$1/users"
	fr_write_conf "files {
	filename = $1/users
}
pap {
}" "server harness {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
	}
	authorize {
		files
		pap
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
	}
}"
}

# ---- the port taken between free_port and radiusd's bind ----
PORT=$(free_port)
TAKEN=$PORT
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[2], "w").close()
time.sleep(600)' "$PORT" "$T/held" &
HOLDER=$!
i=0
while [ ! -f "$T/held" ] && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "another process holds port $TAKEN" test -f "$T/held"
conf "$T/clash"
if fr_start f 2>"$T/clash.err"; then
	ok "radiusd starts though its port was taken ($TAKEN)"
else
	notok "radiusd starts though its port was taken ($TAKEN)"
	sed 's/^/#   /' "$T/clash.err"
fi
check "  on another port, which PORT and FR_PORT name ($PORT, ${FR_PORT:-})" \
    test "$PORT" != "$TAKEN" -a "$PORT" = "${FR_PORT:-}"
check "  the move said so" grep -q "port $TAKEN was taken before radiusd bound it" "$T/clash.err"
check "  radiusd.conf names the new port" grep -q "^[[:space:]]*port = $PORT\$" "$FR_DIR/radiusd.conf"
rad c1 "$(req user pw)"
check "  and radiusd answers there" test "$(reply_of c1)" = Access-Accept
check "  the radiusd that could not bind is not left to be killed" \
    test "$(echo "$FR_PIDS" | wc -w)" -eq 1
fr_stop
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
HOLDER=""

# ---- a refusal that is not about the port: not tried again ----
PORT=$(free_port)
conf "$T/bad"
sed -i "s/^\t\tfiles$/\t\tno_such_module/" "$FR_DIR/radiusd.conf"
if fr_start f 2>"$T/bad.err"; then
	notok "a config radiusd refuses: fr_start fails"
else
	ok "a config radiusd refuses: fr_start fails"
fi
check "  at the first try, with radiusd's log" sh -c \
    'grep -q "radiusd exited during start (try 1)" "$1" && grep -q no_such_module "$1"' \
    sh "$T/bad.err"

# ---- a slow start: ready after 12 s, more than the old 10 s bound ----
PORT=$(free_port)
conf "$T/slow"
# The next radiusd starts 12 s late, as a loaded host with ASan can make
# it (exec: the pid fr_start watches becomes radiusd's).
# shellcheck disable=SC2317 # called by fr_start
freeradius() { sleep 12; exec freeradius "$@"; }
t0=$(date +%s)
if fr_start f 2>"$T/slow.err"; then
	ok "a radiusd ready only after $(($(date +%s) - t0)) s is waited for"
else
	notok "a radiusd ready only after 12 s is waited for"
	sed 's/^/#   /' "$T/slow.err"
fi
unset -f freeradius
check "  (it did take 12 s or more)" test $(($(date +%s) - t0)) -ge 12
rad s1 "$(req user pw)"
check "  and answers" test "$(reply_of s1)" = Access-Accept
fr_stop

# ---- a fast start stays fast ----
t0=$(date +%s)
check "a plain start" fr_start f
echo "# figure: fr_start of a plain radiusd: $(($(date +%s) - t0)) s"
fr_stop

# ---- FR_PORT is the auth listener's port, not the config's first ----
# An acct listener ahead of the auth one (and its "port =" first in the
# file): Access-Requests sent to FR_PORT must reach the auth listener.
ACCT=$(free_port)
PORT=$(free_port)
[ "$PORT" = "$ACCT" ] && PORT=$((ACCT + 1))
conf "$T/two"
awk -v a="$ACCT" '
	/^server harness \{$/ { print; print "\tlisten {\n\t\ttype = acct\n\t\tipaddr = 127.0.0.1\n\t\tport = " a "\n\t}"; next }
	/^\tauthenticate \{$/ { print "\tpreacct {\n\t}\n\taccounting {\n\t}" }
	{ print }' "$FR_DIR/radiusd.conf" >"$T/two.conf" &&
    mv "$T/two.conf" "$FR_DIR/radiusd.conf"
if fr_start f 2>"$T/two.err"; then
	ok "radiusd with an acct listener before its auth listener starts"
else
	notok "radiusd with an acct listener before its auth listener starts"
	sed 's/^/#   /' "$T/two.err"
fi
check "  FR_PORT names the auth listener ($PORT), not the acct one ($ACCT): ${FR_PORT:-}" \
    test "${FR_PORT:-}" = "$PORT"
PORT_WAS=$PORT
PORT=${FR_PORT:-$ACCT}
rad t1 "$(req user pw)"
PORT=$PORT_WAS
check "  and an Access-Request sent to FR_PORT is accepted" test "$(reply_of t1)" = Access-Accept
fr_stop
# The parser itself, on a config radiusd is not asked to run: comments,
# a block inside a listen section, a second auth listener (the first in
# file order counts), and a config without any auth listener.
cat >"$T/parse.conf" <<'EOF'
# port = 1
modules {
	sql {
		port = 5432
	}
}
listen {
	type = acct
	port = 2 # not this one
}
listen {
	type = auth
	# port = 9
	limit {
		port = 8
		max_connections = 16
	}
	port = 3
}
listen {
	type = auth
	port = 4
}
EOF
check "fr_auth_port: the first auth listener's own port (3): $(fr_auth_port "$T/parse.conf")" \
    test "$(fr_auth_port "$T/parse.conf")" = 3
sed '/type = auth/,$d' "$T/parse.conf" >"$T/noauth.conf"
check "fr_auth_port: none in a config without an auth listener" \
    test -z "$(fr_auth_port "$T/noauth.conf")"

echo "1..$TAPN"

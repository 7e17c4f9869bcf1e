#!/bin/sh
# radload's own checks, against a RADIUS responder written here in Python
# (an independent implementation of RFC 2865's Response Authenticator and
# RFC 3579's Message-Authenticator) that answers each request as its
# User-Name says: a good accept, reject or challenge, a reply with a wrong
# authenticator, without a Message-Authenticator, with a wrong one, or no
# reply at all. The failover test counts on radload calling each of these
# by its name; here a wrong verdict would show.
. "$TOP/tests/lib.sh"
RADLOAD=$BUILD/tests/radload
[ -x "$RADLOAD" ] || { notok "built: $RADLOAD"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/sotp-radload.XXXXXX")
RPID=""
trap '[ -n "$RPID" ] && kill "$RPID" 2>/dev/null; rm -rf "$T"' EXIT

cat >"$T/responder.py" <<'EOF'
import hashlib, hmac, socket, sys
SECRET = b"radload-test"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
seen = open(sys.argv[1], "w")

def attrs(p):
    i, out = 20, []
    while i + 2 <= len(p):
        t, n = p[i], p[i + 1]
        out.append((t, p[i + 2:i + n]))
        i += n
    return out

def request_ok(p):
    """The request's Message-Authenticator, over the packet with it zeroed."""
    ma = [v for t, v in attrs(p) if t == 80]
    if len(ma) != 1:
        return False
    i = p.index(bytes([80, 18]) + ma[0])
    z = p[:i + 2] + bytes(16) + p[i + 18:]
    return hmac.compare_digest(hmac.new(SECRET, z, hashlib.md5).digest(), ma[0])

def password(p, ra):
    c = [v for t, v in attrs(p) if t == 2][0]
    out, last = b"", ra
    for k in range(0, len(c), 16):
        b = hashlib.md5(SECRET + last).digest()
        out += bytes(x ^ y for x, y in zip(c[k:k + 16], b))
        last = c[k:k + 16]
    return out.rstrip(b"\0").decode()

while True:
    p, peer = s.recvfrom(4096)
    code, ident, ra = p[0], p[1], p[4:20]
    user = [v for t, v in attrs(p) if t == 1][0].decode()
    seen.write("%s %s %s\n" % (user, request_ok(p), password(p, ra)))
    seen.flush()
    if user == "silent":
        continue
    rcode = {"reject": 3, "challenge": 11}.get(user, 2)
    body = b""
    if user == "challenge":
        body += bytes([24, 6]) + b"\x01\x02\x03\x04"
    if user != "noma":
        body = bytes([80, 18]) + bytes(16) + body
    length = 20 + len(body)
    hdr = bytes([rcode, ident, length >> 8, length & 255])
    if user != "noma":
        mac = hmac.new(SECRET, hdr + ra + body, hashlib.md5).digest()
        if user == "badma":
            mac = bytes(16)
        body = bytes([80, 18]) + mac + body[18:]
    auth = hashlib.md5(hdr + ra + body + SECRET).digest()
    if user == "badauth":
        auth = bytes(16)
    s.sendto(hdr + auth + body, peer)
EOF
python3 "$T/responder.py" "$T/seen" >"$T/port" 2>"$T/responder.err" &
RPID=$!
i=0
while [ ! -s "$T/port" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
PORT=$(cat "$T/port")
check "the test responder listens" test -n "$PORT"

printf '%s\n' "id=a User-Name=good User-Password=pw%n" \
    "id=r User-Name=reject User-Password=x" \
    "id=c User-Name=challenge User-Password=a%20long%20password%20over%2016%20bytes" \
    "id=ba User-Name=badauth User-Password=x" \
    "id=nm User-Name=noma User-Password=x" \
    "id=bm User-Name=badma User-Password=x" >"$T/req"
# The answered requests get 10 s: with 500 ms, a responder not scheduled
# for that long (a busy host) read as six timeouts. The one that gets no
# answer goes alone, with a short timeout.
"$RADLOAD" -s "127.0.0.1:$PORT" -S radload-test -t 10000 -f "$T/req" \
    >"$T/out" 2>"$T/err"
rc=$?
printf '%s\n' "id=s User-Name=silent User-Password=x" >"$T/silent"
"$RADLOAD" -s "127.0.0.1:$PORT" -S radload-test -t 200 -f "$T/silent" \
    >>"$T/out" 2>"$T/err.s"
rc_s=$?
# One more request, answered, says the responder has read the silent one
# (one socket, in order).
printf '%s\n' "User-Name=sync User-Password=x" >"$T/sync"
"$RADLOAD" -s "127.0.0.1:$PORT" -S radload-test -t 10000 -f "$T/sync" \
    >/dev/null 2>&1
result() { awk -v id="$1" '$1 == id { print $3 }' "$T/out"; }
check "a signed accept is an accept" test "$(result a)" = accept
check "a signed reject is a reject" test "$(result r)" = reject
check "a signed challenge is a challenge, its State shown" \
    sh -c '[ "$(awk "\$1 == \"c\" { print \$3, \$7 }" "$1")" = "challenge State=0x01020304" ]' sh "$T/out"
check "a wrong Response Authenticator is invalid" test "$(result ba)" = invalid
check "a reply without a Message-Authenticator is invalid" test "$(result nm)" = invalid
check "a wrong Message-Authenticator is invalid" test "$(result bm)" = invalid
check "no reply is a timeout" test "$(result s)" = timeout
check "exit 1 when some were invalid (exit $rc)" test "$rc" -eq 1
check "exit 1 when some were unanswered (exit $rc_s)" test "$rc_s" -eq 1
check "the summary counts them" \
    grep -q "6 requests .* 1 accept, 1 reject, 1 challenge, 0 timeout, 3 invalid" "$T/err"
check "  and the timeout" \
    grep -q "1 requests .* 0 accept, 0 reject, 0 challenge, 1 timeout, 0 invalid" "$T/err.s"
check "every request carried a valid Message-Authenticator" \
    test "$(grep -v '^sync ' "$T/seen" | grep -c ' True ')" -eq 7
check "User-Password is hidden per RFC 2865 (the responder read it back)" \
    sh -c 'grep -qx "good True pw0" "$1" && grep -qx "challenge True a long password over 16 bytes" "$1"' sh "$T/seen"
"$RADLOAD" -s "127.0.0.1:$PORT" -S radload-test -M -t 10000 -f "$T/req" \
    >"$T/out" 2>"$T/err"
check "-M admits a reply without a Message-Authenticator" test "$(result nm)" = accept

# Repetition, %n, two servers in turn and retries.
printf '%s\n' "User-Name=silent User-Password=x" >"$T/one"
: >"$T/seen"
"$RADLOAD" -s "127.0.0.1:$PORT" -S radload-test -t 200 -r 2 -f "$T/one" \
    >"$T/out" 2>"$T/err"
# radload may give up before a busy responder has read its last try: the
# answer to one more request, read after them (one socket, in order),
# says every try has been seen.
"$RADLOAD" -s "127.0.0.1:$PORT" -S radload-test -t 10000 -f "$T/sync" \
    >/dev/null 2>&1
n=$(grep -c '^silent ' "$T/seen")
check "-r 2: three tries before a timeout (saw $n)" test "$n" -eq 3
printf '%s\n' "User-Name=good User-Password=p%n" >"$T/one"
: >"$T/seen"
"$RADLOAD" -s "127.0.0.1:$PORT" -s "127.0.0.1:$PORT" -S radload-test -n 500 \
    -c 100 -t 10000 -f "$T/one" >"$T/out" 2>"$T/err"
check "-n 500 -c 100: 500 accepts" test "$(grep -c ' accept ' "$T/out")" -eq 500
check "%n numbers every request once" \
    test "$(sort -u "$T/seen" | wc -l)" -eq 500
check "two servers taken in turn" \
    test "$(awk '$2 == 0' "$T/out" | wc -l)" -eq 250
# SIGUSR1: no request started after it, those in flight answered, the
# rest never sent. 1,000 requests at 20/s would take 50 s; the signal is
# sent once the responder has seen 10 of them.
: >"$T/seen"
"$RADLOAD" -s "127.0.0.1:$PORT" -S radload-test -n 1000 -R 20 -c 4 \
    -t 10000 -f "$T/one" >"$T/out" 2>"$T/err" &
LP=$!
i=0
while [ "$(wc -l <"$T/seen")" -lt 10 ] && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
t0=$(date +%s)
kill -USR1 "$LP"
wait "$LP"
rc=$?
sent=$(sed -n 's/^radload: stopped by SIGUSR1: \([0-9]*\) of 1000 requests sent$/\1/p' "$T/err")
check "SIGUSR1 stops a load: exit $rc, after $(($(date +%s) - t0)) s, ${sent:-?} of 1000 sent" \
    test "$rc" -eq 0 -a -n "$sent" -a $(($(date +%s) - t0)) -lt 30
check "  each one sent has its line, an accept (${sent:-?} sent, $(grep -c ' accept ' "$T/out") accepts)" \
    test "$(wc -l <"$T/out")" -eq "${sent:-0}" -a "$(grep -c ' accept ' "$T/out")" -eq "${sent:-0}" \
    -a "${sent:-0}" -ge 10 -a "${sent:-1000}" -lt 1000
check "  and the summary counts the sent ones" grep -q "^radload: ${sent:-x} requests in " "$T/err"
check_rc 2 "a bad request word is a usage error" \
    sh -c 'echo "Bogus" | "$1" -s "127.0.0.1:$2" -S x -f - >/dev/null 2>&1' sh "$RADLOAD" "$PORT"
echo "1..$TAPN"

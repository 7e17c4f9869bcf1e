#!/bin/sh
# One syslog line per audit row (issue 12, defect 3): every decision and
# admin action the tool takes reaches syslog, as the README promises.
#
# syslog(3) writes to /dev/log. The suite gives the tool a /dev/log of its
# own, without touching the system: in a private mount namespace
# (unshare(1); as a normal user, inside a user namespace too) a tmpfs
# covers /dev, holds links to the real device nodes and the socket of
# tests/tools/syslog_sink, which writes each message to a file. The tool
# is the installed kind, unchanged; the namespace vanishes with the test.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"

if [ "${1:-}" != inner ]; then
	SB=$(mktemp -d "${TMPDIR:-/tmp}/sotp-syslog.XXXXXX")
	# Outside the namespace the mount points are empty directories; never
	# cross into another file system all the same.
	trap 'rm -rf --one-file-system "$SB"' EXIT
	if [ "$(id -u)" -eq 0 ]; then
		set -- unshare --mount --propagation private
	else
		set -- unshare --user --map-root-user --mount --propagation private
	fi
	if ! "$@" true 2>"$SB/unshare.err"; then
		notok "a private mount namespace ($*)"
		sed 's/^/#   /' "$SB/unshare.err"
		exit 1
	fi
	ok "a private mount namespace"
	SOTP_TAPN=$TAPN "$@" sh "$0" inner "$SB"
	exit $?
fi

# ---- inside the namespace ----
SB=$2
TAPN=${SOTP_TAPN:-0}
OUT=$SB/out
ERR=$SB/err
LOG=$SB/syslog

mkdir "$SB/hostdev" "$SB/empty"
if mount --rbind /dev "$SB/hostdev" && mount -t tmpfs -o mode=0755 tmpfs /dev; then
	for e in "$SB"/hostdev/*; do ln -s "$e" "/dev/${e##*/}"; done
	ok "a private /dev with the real nodes"
else
	notok "a private /dev with the real nodes"
	echo "1..$TAPN"
	exit 1
fi
"$BUILD/tests/syslog_sink" /dev/log "$LOG" 120 2>"$SB/sink.err" &
sink=$!
i=0
while [ ! -f "$LOG" ] && [ "$i" -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
check "the private /dev/log listens" test -S /dev/log -a -f "$LOG"

CONF=$SB/shinkin-otp.conf
SHINKIN_OTP_CONFIG=$CONF
export SHINKIN_OTP_CONFIG
check "init" cli init
S=$(secret)
fresh_step 10
check "token add" cli token add T1 --secret "$S"
check "contract add" clin pw-1 contract add C1
check "contract bind" cli contract bind C1 --serial T1 --otp "$(totp "$S")"
# One code, read once (computed twice, a step ending between the two
# verifies would make the second a new code, accepted).
C=$(totp "$S" 30)
check "verify: accepted" cli verify C1 --otp "$C"
check_rc 1 "verify: the same code, refused" cli verify C1 --otp "$C"
check_rc 1 "verify: a wrong code, refused" cli verify C1 --otp "$(wrong_code "$S")"
check "contract unlock" cli contract unlock C1
check "verify mobile: accepted" clin pw-1 verify C1 --context mobile
check "contract set" cli contract set C1 --login-otp no
check "contract card" cli contract card C1
check "token generate" cli token generate
check "token show --uri" cli token show T1 --uri
check "contract unbind" cli contract unbind C1
check_rc 1 "contract close of an unknown contract, refused" cli contract close C9
check "token import" sh -c 'printf "T2,%s\n" "$1" >"$2/seed.csv" &&
    "$3" token import "$2/seed.csv" --format csv >"$4" 2>"$5"' \
    sh "$(secret)" "$SB" "$CLI" "$OUT" "$ERR"

kill -TERM "$sink"
wait "$sink"
check "the sink stopped cleanly" test "$?" -eq 0

# action contract serial verdict reason, one line per row / per message.
cli audit
awk '{ c = s = "-"
	for (i = 6; i <= NF; i++) {
		if ($i ~ /^contract=/) c = substr($i, 10)
		if ($i ~ /^serial=/) s = substr($i, 8)
	}
	print $3, c, s, $4, $5 }' "$OUT" >"$SB/rows"
sed -n 's/^<[0-9]*>.* shinkin-otp\[[0-9]*\]: \(action=.*\)$/\1/p' "$LOG" |
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	sub(/\(.*/, "", v["reason"])
	print v["action"], v["contract"], v["serial"], v["verdict"], v["reason"] }' \
    >"$SB/lines"
rows=$(wc -l <"$SB/rows")
lines=$(wc -l <"$SB/lines")
check "the commands wrote audit rows ($rows)" test "$rows" -ge 15
check "one syslog line per audit row ($lines lines, $rows rows)" \
    test "$lines" -eq "$rows"
if cmp -s "$SB/rows" "$SB/lines"; then
	ok "the lines say what the rows say, in order"
else
	notok "the lines say what the rows say, in order"
	diff "$SB/rows" "$SB/lines" | sed 's/^/#   /'
fi
check "nothing else reached syslog" test "$(wc -l <"$LOG")" -eq "$rows"
# LOG_AUTHPRIV (10 << 3): accepts at LOG_INFO (86), refusals LOG_NOTICE (85).
check "accepts at authpriv.info" \
    test "$(grep -c '^<86>.* verdict=accept ' "$LOG")" -eq "$(grep -c ' accept ' "$SB/rows")"
check "refusals at authpriv.notice" \
    test "$(grep -c '^<85>.* verdict=reject ' "$LOG")" -eq "$(grep -c ' reject ' "$SB/rows")"
check "no secret in syslog" sh -c '! grep -q "$1" "$2"' sh "$S" "$LOG"
echo "1..$TAPN"

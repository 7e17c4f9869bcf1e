#!/bin/sh
# The PAM half of `make bench` (issue 13): transaction codes through the
# real libpam, ours against the peers, in one run, as ratios only.
#
#   sh tests/bench/pam_bench.sh BUILD [SIZES] [CYCLES]
#
# For each size (1,000 and 1,000,000 contracts by default) a fresh
# directory gets: our store with SIZE contracts, each bound to its own TOTP
# token (pam_setup); pam_oath's usersfile with SIZE users; SIZE
# google-authenticator secret files (DISALLOW_REUSE, RATE_LIMIT 3 30); and
# one PAM service per module. pam_bench then runs CYCLES cycles of each
# (pam_start_confdir + pam_authenticate + pam_end; every user answers one
# code once, every cycle must succeed) interleaved, and this prints each
# ratio of auth/s: ours over pam_permit (the floor of any PAM call), over
# pam_oath and over google-authenticator. Over 1 means ours is faster.
# Ours runs three times, on three thirds of the contracts: as a process
# that authenticates many times uses it (the warm context kept between
# calls, pam_shinkin_otp(8)), with "fresh" (each call reads the policy and
# key and opens the store, as the first call of any process does), and
# over a local daemon (the other route the issue names, measured with a
# prototype: otpd_proto holds the warm context, and its thin client
# pam_otpd_proto.so loads nothing but libpam; its CPU in brackets adds
# the daemon's). A
# last line puts one 4 KiB write + fdatasync (what a durable accept costs
# at least) against a pam_permit cycle: no module that makes each accept
# durable before it answers can beat that ratio. Wall time is the ratio
# that counts; CPU time (in brackets) is what the process itself spent.
# PAM_BENCH_RAW=1 also prints each service's microseconds per cycle.
#
# At a million users pam_oath reads and rewrites its whole usersfile (90
# MB) on every authentication: it gets PEER_BUDGET seconds and its rate is
# from the cycles that fitted, and it runs after the others, alone (its
# write-back would otherwise land in their fsyncs). google-authenticator reads one file per
# user; a million 4 KiB files would cost minutes and 4 GiB, so its million
# are hard links to a few files (it replaces a user's file by rename, so each
# user still gets a state of their own). The peers' packages come from
# scripts/deps.sh bench.
set -eu
umask 022 # its policies: a group-writable one is refused (tests/run.sh)

BUILD=${1:?usage: pam_bench.sh BUILD [SIZES] [CYCLES]}
SIZES=${2:-1000 1000000}
CYCLES=${3:-1000}
PEER_BUDGET=${PEER_BUDGET:-20}
SECRET_HEX=3132333435363738393031323334353637383930
SECRET_B32=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
case $BUILD in
/*) ;;
*) BUILD=$PWD/$BUILD ;;
esac
MOD=$BUILD/pam_shinkin_otp.so
OTPD=$BUILD/bench/otpd_proto
[ -x "$BUILD/bench/pam_bench" ] && [ -x "$BUILD/bench/pam_setup" ] &&
	[ -x "$OTPD" ] && [ -f "$BUILD/bench/pam_otpd_proto.so" ] &&
	[ -x "$BUILD/tests/pam_driver" ] &&
	[ -x "$BUILD/tests/syslog_sink" ] && [ -f "$MOD" ] || {
	echo "pam_bench.sh: build $BUILD/bench/pam_bench first" >&2
	exit 2
}

# Every module here logs through syslog(3); on a host without /dev/log
# (this build machine) glibc then writes each line to /dev/console, a
# serial line, once any module has asked for LOG_CONS (google-
# authenticator does), which would make the bench measure the console. As
# root, the bench runs in a private mount namespace instead, with a /dev of
# its own whose /dev/log is tests/tools/syslog_sink, as a production host
# has journald or rsyslogd there (tests/cli/t_syslog.sh does the same).
if [ "${PAM_BENCH_NS:-}" = "" ] && [ "$(id -u)" -eq 0 ] &&
	unshare --mount --propagation private true 2>/dev/null; then
	PAM_BENCH_NS=1 exec unshare --mount --propagation private \
	    sh "$0" "$@"
fi

# wait_for TEST PATH: up to 10 s for `test TEST PATH` (a server's file).
wait_for() {
	_i=0
	while ! test "$1" "$2" && [ $_i -lt 100 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
}

top=$(mktemp -d /tmp/sotp-pam-bench.XXXXXX)
sink=""
otpd=""
cleanup() {
	[ -z "$sink" ] || kill "$sink" 2>/dev/null
	[ -z "$otpd" ] || kill "$otpd" 2>/dev/null
	umount -l "$top/hostdev" 2>/dev/null
	rm -rf --one-file-system "$top"
}
trap cleanup EXIT INT TERM
if [ "${PAM_BENCH_NS:-}" = 1 ]; then
	mkdir "$top/hostdev"
	mount --rbind /dev "$top/hostdev" &&
		mount -t tmpfs -o mode=0755 tmpfs /dev || exit 1
	for e in "$top"/hostdev/*; do ln -s "$e" "/dev/${e##*/}"; done
	"$BUILD/tests/syslog_sink" /dev/log "$top/syslog" 3600 &
	sink=$!
	wait_for -f "$top/syslog"
	LOGS="syslog to a private /dev/log"
else
	LOGS="no private /dev/log (not root): syslog lines may go to the console"
fi

# ratio A B: how many times A's rate is B's, from per-cycle microseconds.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b / a }'
}

# refused DIR USER CODE RESULT: one call through the daemon's client,
# which must end in RESULT.
refused() {
	"$BUILD/tests/pam_driver" -c "$1/pam" -s daemon -u "$2" -q "$3" \
	    >"$1/refused.out" 2>&1
	grep -qx "result: $4" "$1/refused.out" || {
		echo "pam_bench.sh: the daemon prototype: $2: not $4:" >&2
		cat "$1/refused.out" >&2
		exit 1
	}
}

one_size() {
	n=$1
	d=$top/$n
	mkdir -p "$d/pam" "$d/ga"
	"$BUILD/bench/pam_setup" "$d" B "$n"
	awk -v n="$n" -v s="$SECRET_HEX" 'BEGIN {
		for (i = 0; i < n; i++) printf "HOTP/T30 B%07d - %s\n", i, s }' \
	    >"$d/oath.users"
	chmod 600 "$d/oath.users"
	# one file per 60,000 users (ext4 allows 65,000 links to a file)
	perl -e 'my ($d, $n, $s) = @ARGV;
		for my $i (0 .. $n - 1) {
			my $src = sprintf("%s/ga.%d", $d, int($i / 60000));
			if ($i % 60000 == 0) {
				open(my $f, ">", $src) or die "$src: $!\n";
				print $f "$s\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n" .
				    "\" DISALLOW_REUSE\n\" TOTP_AUTH\n";
				close($f) or die "$src: $!\n";
				chmod(0400, $src) or die "$src: $!\n";
			}
			link($src, sprintf("%s/ga/B%07d", $d, $i))
			    or die "link: $!\n";
		}' "$d" "$n" "$SECRET_B32"
	echo "auth required pam_deny.so" >"$d/pam/other"
	echo "auth required pam_permit.so" >"$d/pam/permit"
	echo "auth required pam_oath.so usersfile=$d/oath.users window=3" \
	    "digits=6" >"$d/pam/oath"
	echo "auth required pam_google_authenticator.so" \
	    "secret=$d/ga/\${USER} user=root" >"$d/pam/ga"
	echo "auth required $MOD config=$d/shinkin-otp.conf" \
	    "context=transaction" >"$d/pam/sotp"
	echo "auth required $MOD config=$d/shinkin-otp.conf" \
	    "context=transaction fresh" >"$d/pam/fresh"
	echo "auth required $BUILD/bench/pam_otpd_proto.so" \
	    "socket=$d/otpd.sock context=transaction" >"$d/pam/daemon"
	# The setup wrote hundreds of MB (a million rows, a 90 MB usersfile):
	# written back now, not during the cycles that fsync.
	sync
	# At a million users pam_oath writes 90 MB per call: run among the
	# others, that write-back would be measured as their fsyncs. It runs
	# after them then, alone.
	alone=""
	together=oath
	if [ "$n" -gt 100000 ]; then
		alone=oath
		together=""
	fi
	"$OTPD" "$d/shinkin-otp.conf" "$d/otpd.sock" >"$d/otpd.out" &
	otpd=$!
	wait_for -S "$d/otpd.sock"
	third=$((n / 3))
	"$BUILD/bench/pam_bench" "$d/pam" B "$n" "$CYCLES" "$PEER_BUDGET" \
	    permit $together ga "sotp@0+$third" "fresh@$third+$third" \
	    "daemon@$((2 * third))+$third" fdatasync >"$d/out"
	# The prototype refuses too: a wrong code, then no daemon at all.
	wrong=$(oathtool --totp "$SECRET_HEX" | tr 0-9 1-90)
	refused "$d" B0000000 "$wrong" PAM_AUTH_ERR
	kill -TERM "$otpd"
	wait "$otpd"
	otpd=""
	refused "$d" B0000001 "$wrong" PAM_AUTHINFO_UNAVAIL
	if [ -n "$alone" ]; then
		sync
		"$BUILD/bench/pam_bench" "$d/pam" B "$n" "$CYCLES" \
		    "$PEER_BUDGET" "$alone" >>"$d/out"
	fi
	# per-cycle microseconds (wall, CPU) of each service
	[ "$(awk '$2 > 0' "$d/out" | wc -l)" -eq 7 ] || {
		echo "pam_bench.sh: a service ran no cycle" >&2
		exit 1
	}
	eval "$(awk '{ printf "%s_n=%d %s_w=%.3f %s_c=%.3f\n", $1, $2, $1,
		$3 / $2, $1, $4 / $2 }' "$d/out")"
	# the daemon's CPU: it served the daemon's cycles and the wrong code
	read -r otpd_n otpd_cpu <"$d/otpd.out"
	[ "$otpd_n" -eq $((daemon_n + 1)) ] || {
		echo "pam_bench.sh: the daemon served $otpd_n calls," \
		    "not $daemon_n + 1" >&2
		exit 1
	}
	daemon_c=$(awk -v c="$daemon_c" -v d="$otpd_cpu" -v n="$otpd_n" \
	    'BEGIN { printf "%.3f", c + d / n }')
	printf '%s contracts (ratios of auth/s, wall; CPU time in brackets):\n' \
	    "$(printf '%d' "$n" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta')"
	printf '  %-38s %7s (%s)   goal >= 0.40x\n' \
	    "pam_shinkin_otp / pam_permit" "$(ratio "$sotp_w" "$permit_w")" \
	    "$(ratio "$sotp_c" "$permit_c")"
	printf '  %-38s %7s (%s)\n' \
	    "  the same, fresh (no warm context)" \
	    "$(ratio "$fresh_w" "$permit_w")" "$(ratio "$fresh_c" "$permit_c")"
	printf '  %-38s %7s (%s)   %s fresh\n' \
	    "  over a local daemon (prototype)" \
	    "$(ratio "$daemon_w" "$permit_w")" \
	    "$(ratio "$daemon_c" "$permit_c")" "$(ratio "$daemon_w" "$fresh_w")"
	for peer in oath ga; do
		eval "pn=\$${peer}_n pw=\$${peer}_w pc=\$${peer}_c"
		case $peer in
		oath) label="pam_shinkin_otp / pam_oath" ;;
		ga) label="pam_shinkin_otp / google-authenticator" ;;
		esac
		note=""
		[ "$pn" -lt "$sotp_n" ] &&
			note=" ($pn cycles fitted in ${PEER_BUDGET} s)"
		printf '  %-38s %7s (%s)   goal > 1x%s\n' "$label" \
		    "$(ratio "$sotp_w" "$pw")" "$(ratio "$sotp_c" "$pc")" "$note"
	done
	printf '  %-38s %7s\n' "4 KiB write + fdatasync / pam_permit" \
	    "$(ratio "$fdatasync_w" "$permit_w")"
	[ -z "${PAM_BENCH_RAW:-}" ] || awk '{ printf "  (%s: %d cycles, %.0f us wall, %.0f us CPU each)\n", $1, $2, $3 / $2, $4 / $2 }' "$d/out"
	rm -rf "$d"
}

echo
echo "PAM, transaction code only: pam_start_confdir + pam_authenticate +" \
    "pam_end through libpam, up to $CYCLES cycles each (each user answers" \
    "once; ours, warm, fresh and over a daemon, each has a third of the contracts); $LOGS"
for n in $SIZES; do
	one_size "$n"
done

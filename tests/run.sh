#!/bin/sh
# Runs every test of shinkin-otp and ends with "N passed, N failed".
#   tests/run.sh BUILD_DIR [PATTERN]
# cmocka binaries ($BUILD/tests/test_*) are counted from their own
# summaries; shell suites (tests/*/t_*.sh) print TAP-style "ok"/"not ok"
# lines. A program that dies without its summary counts as one failure.
# Lines a suite prints as "# figure: TEXT" (measurements, such as the
# failover test's) are shown under its summary line.
#
# Every suite runs on SQLite; the suites in PG_SUITES (those whose subject
# is the store's users: the engine, PAM, RADIUS, and the migration's
# import, HOTP and PSKC suites) then run again on PostgreSQL, as
# "NAME@postgresql": this script starts a private server
# (scripts/pg-test-server.sh, a unix socket only) and names it to them in
# SOTP_TEST_STORE_URL, which test_engine and tests/lib.sh's mk_sandbox
# honour. That one variable is the whole mechanism: a suite needs no
# change to run on both. SOTP_PG_PORT names the server's socket.
set -u
# The files the suites write (policies above all) get 0644, not 0664:
# the core refuses a policy its group may write, and Debian gives a
# console login of a user with a private group the umask 002.
umask 022
BUILD=${1:-build}
PATTERN=${2:-}
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$TOP" && cd "$BUILD" && pwd)
export BUILD TOP
LOGDIR="$BUILD/test-logs"
mkdir -p "$LOGDIR"
pass=0
fail=0
failed_names=""
# radius/t_backup stays on SQLite: `backup` is SQLite's backup API (a
# PostgreSQL store is backed up with pg_dump or base backups, README.md).
PG_SUITES="test_engine pam/t_pam radius/t_radius pam/t_migrate cli/t_hotp cli/t_json
    cli/t_import cli/t_pskc_writers cli/t_halfdone"
START=$(date +%s)

count() { # $1: log file, $2: exit code, $3: name
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' "$1" | awk '{s+=$1} END {print s+0}')
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:.*/\1/p' "$1" | awk '{s+=$1} END {print s+0}')
	tp=$(grep -c '^ok ' "$1")
	tf=$(grep -c '^not ok ' "$1")
	p=$((p + tp))
	f=$((f + tf))
	if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1
		echo "  $3 exited with status $2 without reporting a failure" >&2
	fi
	pass=$((pass + p))
	fail=$((fail + f))
	if [ "$f" -ne 0 ]; then
		failed_names="$failed_names $3"
		# Each "not ok" with the "#" lines after it (what the check
		# saw), and the cmocka and sanitizer failure lines.
		awk '/^not ok /		{ d = 1; print; next }
		     d && /^#/		{ print; next }
					{ d = 0 }
		     /FAILED|ERROR|runtime error|Sanitizer/	{ print }' "$1" |
		    head -n 60 >&2
	fi
	printf '%-28s %4d passed, %d failed %5ds\n' "$3" "$p" "$f" \
	    $(($(date +%s) - t0))
	# A suite's figures ("# figure: ..." lines) belong in the summary.
	sed -n 's/^# figure: /    /p' "$1"
}

# log_of NAME: the suite's log file.
log_of() { echo "$LOGDIR/$(echo "$1" | tr /@ __).log"; }

# run NAME: one suite (a test_* binary or a tests/DIR/t_*.sh), logged.
run() {
	t0=$(date +%s)
	lf=$(log_of "$1")
	case "$1" in
	test_*) "$BUILD/tests/${1%@*}" >"$lf" 2>&1 </dev/null ;;
	*) sh "$TOP/tests/${1%@*}.sh" >"$lf" 2>&1 </dev/null ;;
	esac
	count "$lf" $? "$1"
}

# Suites that spend most of their time waiting for the clock (the demo
# waits for the phone's next 30 s code, about two minutes in all) start
# first, in the background, and are counted after the others: their
# waits overlap the other suites' work instead of adding to it.
WAITERS="demo/t_demo"
waiting=""
for n in $WAITERS; do
	case "$n" in *"$PATTERN"*) ;; *) continue ;; esac
	lf=$(log_of "$n")
	(
		s0=$(date +%s)
		sh "$TOP/tests/$n.sh" >"$lf" 2>&1 </dev/null
		rc=$?
		echo $(($(date +%s) - s0)) >"$lf.secs"
		exit $rc
	) &
	waiting="$waiting $n:$!"
done

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	case "$n" in *"$PATTERN"*) run "$n" ;; esac
done

for s in "$TOP"/tests/*/t_*.sh; do
	[ -f "$s" ] || continue
	n=$(basename "$(dirname "$s")")/$(basename "$s" .sh)
	case " $WAITERS " in *" $n "*) continue ;; esac
	case "$n" in *"$PATTERN"*) run "$n" ;; esac
done
for w in $waiting; do
	wait "${w#*:}"
	rc=$?
	lf=$(log_of "${w%:*}")
	# count prints the time since t0: the suite's own.
	t0=$(($(date +%s) - $(cat "$lf.secs" 2>/dev/null || echo 0)))
	count "$lf" "$rc" "${w%:*}"
	rm -f "$lf.secs"
done

# ---- the PostgreSQL pass ----
pg_todo=""
for n in $PG_SUITES; do
	case "$n@postgresql" in *"$PATTERN"*) pg_todo="$pg_todo $n" ;; esac
done
if [ -n "$pg_todo" ]; then
	# Short: the socket lives in it (sun_path holds 107 bytes).
	PGDIR=$(mktemp -d /tmp/sotp-run.XXXXXX)
	t0=$(date +%s)
	if URL=$(sh "$TOP/scripts/pg-test-server.sh" start "$PGDIR" \
	    2>"$LOGDIR/pg-server.log"); then
		for n in $pg_todo; do
			SOTP_TEST_STORE_URL=$URL run "$n@postgresql"
		done
	else
		echo "not ok 1 - the PostgreSQL pass's server starts" \
		    >>"$LOGDIR/pg-server.log"
		count "$LOGDIR/pg-server.log" 1 "postgresql server"
	fi
	sh "$TOP/scripts/pg-test-server.sh" stop "$PGDIR" >/dev/null 2>&1
	rm -rf "$PGDIR"
fi

[ -n "$failed_names" ] && echo "failed:$failed_names (logs in $LOGDIR)"
echo "total time: $(($(date +%s) - START)) s"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]

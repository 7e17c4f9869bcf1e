#!/bin/sh
# Runs every test of shinkin-otp and ends with "N passed, N failed".
#   tests/run.sh BUILD_DIR [PATTERN]
# cmocka binaries ($BUILD/tests/test_*) are counted from their own
# summaries; shell suites (tests/*/t_*.sh) print TAP-style "ok"/"not ok"
# lines. A program that dies without its summary counts as one failure.
set -u
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
	printf '%-28s %4d passed, %d failed\n' "$3" "$p" "$f"
}

for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	case "$n" in *"$PATTERN"*) ;; *) continue ;; esac
	"$t" >"$LOGDIR/$n.log" 2>&1
	count "$LOGDIR/$n.log" $? "$n"
done

for s in "$TOP"/tests/*/t_*.sh; do
	[ -f "$s" ] || continue
	n=$(basename "$(dirname "$s")")/$(basename "$s" .sh)
	case "$n" in *"$PATTERN"*) ;; *) continue ;; esac
	lf="$LOGDIR/$(echo "$n" | tr / _).log"
	sh "$s" >"$lf" 2>&1 </dev/null
	count "$lf" $? "$n"
done

[ -n "$failed_names" ] && echo "failed:$failed_names (logs in $LOGDIR)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]

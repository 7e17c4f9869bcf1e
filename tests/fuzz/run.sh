#!/bin/sh
# Runs every libFuzzer target of FUZZ_BUILD for SECONDS each (make fuzz).
#   tests/fuzz/run.sh FUZZ_BUILD SECONDS
# Seeds come from tests/fuzz/corpus/TARGET/ (kept in the tree; read only);
# what a run learns goes to FUZZ_BUILD/corpus/TARGET/, crash inputs to
# FUZZ_BUILD/artifacts/, each target's log to FUZZ_BUILD/logs/. Any crash,
# sanitizer report, leak or input slower than 10 s fails the run. Ends
# with one line per target and "N passed, N failed".
set -u
FB=${1:?usage: tests/fuzz/run.sh FUZZ_BUILD SECONDS}
SECONDS_EACH=${2:?usage: tests/fuzz/run.sh FUZZ_BUILD SECONDS}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
case "$SECONDS_EACH" in
'' | *[!0-9]*)
	echo "fuzz: SECONDS must be a number of seconds, not '$SECONDS_EACH'" >&2
	exit 2
	;;
esac
mkdir -p "$FB/corpus" "$FB/artifacts" "$FB/logs"
pass=0
fail=0
summary=""
for bin in "$FB"/fuzz_*; do
	[ -x "$bin" ] || continue
	t=$(basename "$bin")
	seeds="$TOP/tests/fuzz/corpus/$t"
	if [ ! -d "$seeds" ]; then
		echo "fuzz: $t has no seed corpus ($seeds)" >&2
		fail=$((fail + 1))
		continue
	fi
	mkdir -p "$FB/corpus/$t"
	log="$FB/logs/$t.log"
	echo "== $t: $SECONDS_EACH s"
	"$bin" -max_total_time="$SECONDS_EACH" \
	    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="$FB/artifacts/$t-" \
	    "$FB/corpus/$t" "$seeds" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
		pass=$((pass + 1))
		line=$(printf '%-16s %10s executions, %s' "$t" "$runs" "$cov")
	else
		fail=$((fail + 1))
		line=$(printf '%-16s FAILED (exit %s), see %s' "$t" "$rc" "$log")
		grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" |
		    head -n 20 >&2
	fi
	echo "$line"
	summary="$summary$line
"
done
printf '\n%s' "$summary"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]

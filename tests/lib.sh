# Shared helpers for the shell suites (tests/*/t_*.sh); sourced, not run.
# Each check prints one TAP-style line, "ok N - what" or "not ok N - what",
# which tests/run.sh counts.
set -u
: "${BUILD:?tests need BUILD (run them through tests/run.sh)}"
: "${TOP:?tests need TOP}"
CLI="$BUILD/shinkin-otp"
TAPN=0

ok() { TAPN=$((TAPN + 1)); echo "ok $TAPN - $*"; }
notok() { TAPN=$((TAPN + 1)); echo "not ok $TAPN - $*"; }

# check "what" cmd...: passes when cmd succeeds; a failure also prints
# what the command saw (see saw).
check() {
	_d=$1
	shift
	if "$@"; then
		ok "$_d"
	else
		_rc=$?
		notok "$_d"
		saw "$_rc" "$@"
	fi
}

# check_rc RC "what" cmd...: passes when cmd exits with RC.
check_rc() {
	_want=$1
	_d=$2
	shift 2
	"$@"
	_got=$?
	if [ "$_got" -eq "$_want" ]; then
		ok "$_d"
	else
		notok "$_d (exit $_got, want $_want)"
		saw "$_got" "$@"
	fi
}

# saw STATUS CMD...: after a failed check, what its command saw, as "#"
# lines under the "not ok" (tests/run.sh shows them): the command with
# every argument expanded (a test "$(...)" = ... shows the value it got),
# its exit status, and the end of the file it read when its last argument
# is a text file (grep PATTERN FILE, cmp A B, ...).
saw() {
	_rc=$1
	shift
	printf 'ran (exit %s): %s\n' "$_rc" "$*" | sed 's/^/#   /'
	eval "_last=\${$#}"
	if [ -f "$_last" ] && [ -r "$_last" ] && grep -Iq . "$_last"; then
		echo "#   $_last ends:"
		tail -n 15 "$_last" | cut -c 1-200 | sed 's/^/#     /'
	fi
	return 0
}

# contains FILE TEXT: the file holds TEXT (fixed string).
contains() { grep -qF -- "$2" "$1"; }

# A private sandbox: policy, master key and SQLite store under one temp
# directory, removed on exit. Sets SB and CONF; SHINKIN_OTP_CONFIG too, so
# every CLI call below uses it.
mk_sandbox() {
	SB=$(mktemp -d "${TMPDIR:-/tmp}/sotp-test.XXXXXX")
	CONF="$SB/shinkin-otp.conf"
	SHINKIN_OTP_CONFIG=$CONF
	export SHINKIN_OTP_CONFIG
	trap 'rm -rf "$SB"' EXIT
	"$CLI" --config "$CONF" init >"$SB/init.log" 2>&1 ||
		{ notok "sandbox init"; cat "$SB/init.log"; exit 1; }
}

# The code an independent token (oathtool) shows now, or at now+$2 seconds.
#   totp BASE32 [OFFSET [EXTRA oathtool options]]
totp() {
	_s=$1
	_off=${2:-0}
	shift
	[ $# -gt 0 ] && shift
	oathtool --totp -b "$@" --now "@$(($(date +%s) + _off))" "$_s"
}

# Seconds left in the current 30 s step; waits for a fresh step when fewer
# than $1 (default 5) remain, so a multi-call check does not straddle one.
fresh_step() {
	_min=${1:-5}
	_left=$((30 - $(date +%s) % 30))
	[ "$_left" -lt "$_min" ] && sleep "$_left"
	return 0
}

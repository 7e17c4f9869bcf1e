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

# A private sandbox: policy, master key and store under one temp
# directory, removed on exit. Sets SB and CONF; SHINKIN_OTP_CONFIG too, so
# every CLI call below uses it.
#
# The store is an SQLite file in the sandbox, unless SOTP_TEST_STORE_URL
# names a PostgreSQL database (tests/run.sh's PostgreSQL pass sets it):
# then the sandbox gets a schema of its own there, named in the URL.
# Either way STORE_KIND (sqlite | postgresql) and STORE_URL say which;
# STORE is the SQLite file's path ("" for PostgreSQL). A suite that breaks
# the store on purpose uses store_remove, store_garbage, store_deny and
# store_allow below, which do the same to either kind.
mk_sandbox() {
	SB=$(mktemp -d "${TMPDIR:-/tmp}/sotp-test.XXXXXX")
	CONF="$SB/shinkin-otp.conf"
	SHINKIN_OTP_CONFIG=$CONF
	export SHINKIN_OTP_CONFIG
	trap 'rm -rf "$SB"' EXIT
	STORE=""
	if [ -n "${SOTP_TEST_STORE_URL:-}" ]; then
		STORE_KIND=postgresql
		STORE_SCHEMA=sb_$(basename "$SB" | tr -dc 'A-Za-z0-9' | tr 'A-Z' 'a-z')
		store_sql "CREATE SCHEMA $STORE_SCHEMA" >"$SB/init.log" 2>&1 ||
			{ notok "sandbox schema"; cat "$SB/init.log"; exit 1; }
		# init keeps an existing policy file: write it with this store.
		awk -v u="$SOTP_TEST_STORE_URL&options=-csearch_path%3D$STORE_SCHEMA" '
			/^store = / { print "store = " u; next }
			/^master_key = / { print "master_key = master.key"; next }
			/^metrics = / { print "metrics = shinkin-otp.metrics"; next }
			{ print }' "$TOP/conf/shinkin-otp.conf" >"$CONF"
	else
		STORE_KIND=sqlite
	fi
	"$CLI" --config "$CONF" init >"$SB/init.log" 2>&1 ||
		{ notok "sandbox init ($STORE_KIND)"; cat "$SB/init.log"; exit 1; }
	STORE_URL=$(sed -n 's/^store *= *//p' "$CONF")
	if [ "$STORE_KIND" = sqlite ]; then
		STORE=${STORE_URL#sqlite:}
		case $STORE in /*) ;; *) STORE=$SB/$STORE ;; esac
	fi
	echo "# store: $STORE_URL"
}

# store_sql SQL: runs SQL on the PostgreSQL server under test.
store_sql() {
	psql -X -q -v ON_ERROR_STOP=1 "$SOTP_TEST_STORE_URL" -c "$1"
}

# The store goes away: the file and its WAL, or the sandbox's schema.
store_remove() {
	if [ "$STORE_KIND" = postgresql ]; then
		# Quietly, and twice is no error (store_garbage after a removal).
		# Bounded: a session a failed test left open fails the DROP.
		store_sql "SET client_min_messages = warning;
		    SET lock_timeout = '30s';
		    DROP SCHEMA IF EXISTS $STORE_SCHEMA CASCADE" >/dev/null
	else
		rm -f "$STORE" "$STORE-wal" "$STORE-shm" "$STORE-journal"
	fi
}

# wrong_cpu SERVICE USERS FILE: one wrong password ("not-it") for each of
# the ten comma-separated USERS through pam_driver ($DRV, the stack in
# $SVC, $MOD kept loaded), into FILE; prints the CPU microseconds the
# process spent, if every one was refused. within2 A B: A and B are
# both set and within a factor of 2 of each other.
wrong_cpu() {
	"$DRV" -c "$SVC" -s "$1" -u "$2" -n 10 -t -k "$MOD" not-it >"$3" 2>&1
	grep -qx "result: PAM_AUTH_ERR x10" "$3" &&
		sed -n 's/^cpu-us: //p' "$3"
}
within2() {
	[ -n "$1" ] && [ -n "$2" ] && [ $(($1 * 2)) -ge "$2" ] &&
		[ $(($2 * 2)) -ge "$1" ]
}

# lock_held DB FIFO OUT: a sqlite3 on DB reads its statements from FIFO
# (this shell's fd 8 writes to it, left open for the caller's COMMIT) and
# holds DB's write lock when this returns 0: it answered a SELECT after
# its BEGIN IMMEDIATE (an echo into the FIFO returns once the pipe has the
# line, not once sqlite3 has run it). LOCKER is its pid, OUT its output.
lock_held() {
	sqlite3 "$1" <"$2" >"$3" 2>&1 &
	LOCKER=$!
	exec 8>"$2"
	echo 'BEGIN IMMEDIATE;' >&8
	echo "SELECT 'locked';" >&8
	_lh=0
	until grep -qx locked "$3" || [ $_lh -ge 1200 ]; do
		sleep 0.05
		_lh=$((_lh + 1))
	done
	grep -qx locked "$3"
}

# store_fail NAME TABLE EVENT CONDITION [MESSAGE]: the sandbox's store
# fails each EVENT (INSERT or UPDATE) on TABLE while CONDITION (SQL; NEW
# is the row) holds, as a broken or full store would: a trigger NAME that
# raises MESSAGE (no quotes in it), by default "TABLE refused by the
# test". store_mend NAME TABLE removes it.
store_fail() {
	_sf_msg=${5:-"$2 refused by the test"}
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "CREATE FUNCTION $STORE_SCHEMA.$1() RETURNS trigger
		    LANGUAGE plpgsql AS \$\$BEGIN IF $4 THEN
		    RAISE EXCEPTION '$_sf_msg'; END IF;
		    RETURN NEW; END\$\$;
		    CREATE TRIGGER $1 BEFORE $3 ON $STORE_SCHEMA.$2
		    FOR EACH ROW EXECUTE FUNCTION $STORE_SCHEMA.$1()"
	else
		sqlite3 "$STORE" "CREATE TRIGGER $1 BEFORE $3 ON $2 WHEN $4
		    BEGIN SELECT RAISE(ABORT, '$_sf_msg'); END;"
	fi
}
store_mend() {
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "DROP TRIGGER $1 ON $STORE_SCHEMA.$2;
		    DROP FUNCTION $STORE_SCHEMA.$1()"
	else
		sqlite3 "$STORE" "DROP TRIGGER $1;"
	fi
}

# Something that is not a shinkin-otp store where the store was.
store_garbage() {
	store_remove
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "CREATE SCHEMA $STORE_SCHEMA;
		    CREATE TABLE $STORE_SCHEMA.junk (x int)" >/dev/null
	else
		echo "this is not a database" >"$STORE"
	fi
}

# The store cannot be read (until store_allow): the file's mode, or the
# schema moved out of the search path.
store_deny() {
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "ALTER SCHEMA $STORE_SCHEMA RENAME TO ${STORE_SCHEMA}_away" >/dev/null
	else
		chmod 000 "$STORE"
	fi
}
store_allow() {
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "ALTER SCHEMA ${STORE_SCHEMA}_away RENAME TO $STORE_SCHEMA" >/dev/null
	else
		chmod 600 "$STORE"
	fi
}

# The code an independent token (oathtool) shows now, or at now+$2 seconds.
#   totp BASE32 [OFFSET [EXTRA oathtool options]]
# A code of now or earlier is read with 2 s at least left in the step: read
# in the last instant of a step and checked in the next, it is a step old
# there, and the token learns a drift of -1 from it; the next step's code,
# which the suites check next, is then outside the window (window_forward
# is 1). A later step's code needs no such room.
totp() {
	_s=$1
	_off=${2:-0}
	shift
	[ $# -gt 0 ] && shift
	[ "$_off" -le 0 ] && fresh_step 2
	oathtool --totp -b "$@" --now "@$(($(date +%s) + _off))" "$_s"
}

# codes_distinct BASE32: the secret's TOTP codes from 4 steps before now to
# 12 after (6 minutes, longer than a suite takes), and its HOTP codes of
# counters 0 to 40, are all different. The verifier tries the window's
# steps in order and takes the first whose six digits match, so a code
# that another step of the window shares is read as that step's: refused
# as REPLAYED when that one was used, or accepted a step early (and a
# drift learned). Two given steps share a code once in 10^6: each check
# of the next step's code after an accept failed so, about 2 in 10^6.
codes_distinct() {
	_cn=$(date +%s)
	[ -z "$(oathtool --totp -b -w 16 --now "@$((_cn - 120))" "$1" | sort | uniq -d)" ] &&
	    [ -z "$(oathtool --hotp -b -c 0 -w 40 "$1" | sort | uniq -d)" ]
}

# random_secret: 20 random bytes in base32 whose codes are distinct
# (codes_distinct); drawn again, once in about 1,000, when they are not.
random_secret() {
	while :; do
		_rs=$(head -c 20 /dev/urandom | base32 | tr -d '=\n')
		codes_distinct "$_rs" && { echo "$_rs"; return 0; }
	done
}

# wrong_code BASE32: a 6-digit code that no step within 4 of now produces
# (120 s either way: the window, 1 step each side of a learned drift of
# up to 2, and a step more for the time the check takes), and that differs
# from the current code in every digit (so a log holding one does not
# hold the other). A wrong code made by a fixed rule alone (a fixed
# string, or the current code changed) is another step's code once in
# 10^6 per step in the window: then it is accepted or refused as
# REPLAYED, not as wrong.
wrong_code() {
	_wc=$(for _o in -120 -90 -60 -30 0 30 60 90 120; do totp "$1" "$_o"; done)
	_wn=$(totp "$1")
	for _k in 5 1 2 3 4 6 7 8 9; do
		_c=$(echo "$_wn" | awk -v k="$_k" '{ for (i = 1; i <= length($0); i++)
			printf "%d", (substr($0, i, 1) + k) % 10; print "" }')
		echo "$_wc" | grep -qx "$_c" || { echo "$_c"; return 0; }
	done
	echo "wrong_code: every candidate is a code of the window" >&2
	return 1
}

# wrong_hotp BASE32 COUNTER: a 6-digit code that no counter from COUNTER
# to COUNTER + 20 produces (the look-ahead is 10 in the shipped policy):
# a fixed string such as 000000 is one of an HOTP token's next 11 codes
# about once in 90,000 tokens.
wrong_hotp() {
	_wc=$(oathtool --hotp -b -c "$2" -w 20 "$1")
	for _c in 000000 111111 222222 333333 444444 555555 666666 777777; do
		echo "$_wc" | grep -qx "$_c" || { echo "$_c"; return 0; }
	done
	echo "wrong_hotp: every candidate is a code of the window" >&2
	return 1
}

# card_digits GRID CELLS: the digits a printed card (`contract card`'s
# output, in file GRID) shows at CELLS ("B7 E2": row letter, column label
# from the header row), one after the other.
card_digits() {
	for _cell in $2; do
		awk -v cell="$_cell" '
		NF > 1 && $1 !~ /^[A-Z]$/ && !hdr { for (i = 1; i <= NF; i++) col[$i] = i; hdr = 1; next }
		$1 == substr(cell, 1, 1) { printf "%s", $(col[substr(cell, 2)] + 1) }' "$1"
	done
}

# Waits for a fresh 30 s step when fewer than $1 (default 5) seconds remain
# in the current one, so a multi-call check does not straddle one. Counted
# in milliseconds: in whole seconds the room could be a second short.
fresh_step() {
	_min=${1:-5}
	_left=$((30000 - $(date +%s%3N) % 30000))
	if [ "$_left" -lt $((_min * 1000)) ]; then
		_left=$((_left + 50)) # into the new step, not at its edge
		sleep "$((_left / 1000)).$(printf '%03d' $((_left % 1000)))"
	fi
	return 0
}

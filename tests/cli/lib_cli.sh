# Helpers of the CLI suites (tests/cli/t_*.sh); sourced after tests/lib.sh.
# Every run of the tool leaves its output in $OUT and $ERR.

# cli ARGS...: runs the tool with stdin from /dev/null.
cli() { "$CLI" "$@" >"$OUT" 2>"$ERR" </dev/null; }

# clin LINE ARGS...: runs the tool with LINE (a password) on stdin.
clin() {
	_in=$1
	shift
	printf '%s\n' "$_in" | "$CLI" "$@" >"$OUT" 2>"$ERR"
}

# exits_saying RC PATTERN what ARGS...: exit RC and exactly one stderr
# line, which matches the grep pattern PATTERN.
exits_saying() {
	_es_rc=$1
	_es_pat=$2
	_es_d=$3
	shift 3
	"$@"
	_es_got=$?
	if [ "$_es_got" -eq "$_es_rc" ] && [ "$(wc -l <"$ERR")" -eq 1 ] &&
	    grep -q -- "$_es_pat" "$ERR"; then
		ok "$_es_d"
	else
		notok "$_es_d (exit $_es_got, want $_es_rc and a line like /$_es_pat/)"
		sed 's/^/#   /' "$ERR"
	fi
}

# held_in DIR WHAT ARGS...: starts the tool (ARGS, on the policy
# $SB/slow.conf, fd 8 closed, output in $OUT and $ERR) in the background
# and waits until it holds a file in DIR (a file it claimed, unnamed);
# checks that it does. Its pid in $HELD_PID.
held_in() {
	_hi_dir=$1
	_hi_what=$2
	shift 2
	"$CLI" --config "$SB/slow.conf" "$@" >"$OUT" 2>"$ERR" </dev/null 8>&- &
	HELD_PID=$!
	_hi_i=0
	until ls -l "/proc/$HELD_PID/fd" 2>/dev/null | grep -q " $_hi_dir/" ||
	    [ $_hi_i -ge 1200 ]; do
		sleep 0.05
		_hi_i=$((_hi_i + 1))
	done
	check "$_hi_what: held, its file claimed" sh -c \
	    'ls -l "/proc/$1/fd" | grep -q " $2/"' sh "$HELD_PID" "$_hi_dir"
}

# refused REASON what ARGS...: exit 1 and exactly one stderr line that
# names the reason, e.g. "... refused: ... (TOKEN_IN_USE)".
refused() {
	_r=$1
	_rd=$2
	shift 2
	exits_saying 1 "^shinkin-otp: .*: refused: .* ($_r)\$" "$_rd" "$@"
}

# A random base32 secret of 20 bytes (160 bits), its codes distinct
# (lib.sh's random_secret).
secret() { random_secret; }

# provision SERIAL SECRET CONTRACT [PASSWORD]: token + contract, bound
# with the token's current code.
provision() {
	cli token add "$1" --secret "$2" &&
	    clin "${4:-pw-$3}" contract add "$3" &&
	    cli contract bind "$3" --serial "$1" --otp "$(totp "$2")"
}

# A value of the policy file ("key = value"), relative paths resolved.
conf_path() {
	_v=$(sed -n "s/^$1[ 	]*=[ 	]*//p" "$CONF" | head -n 1)
	_v=${_v#sqlite:}
	case "$_v" in /*) echo "$_v" ;; *) echo "$(dirname "$CONF")/$_v" ;; esac
}

# totp_alg ALG DIGITS BASE32 [OFFSET]: as totp, for another hash and length
# (lib.sh's totp already passes --totp, which oathtool takes only once).
totp_alg() {
	[ "${4:-0}" -le 0 ] && fresh_step 2 # as totp: see lib.sh
	oathtool --totp="$1" -d "$2" -b --now "@$(($(date +%s) + ${4:-0}))" "$3"
}

# race2 F1 F2: runs the shell functions F1 and F2 at the same instant and
# prints their two exit codes; their output goes to $SB/r1 and $SB/r2. The
# gate: this shell holds an exclusive lock; both racers wait for a shared
# one and are released together when it is dropped.
race2() {
	exec 9>"$LOCK"
	flock -x 9
	(exec 9>&- && flock -s 8 && "$1") 8<"$LOCK" >"$SB/r1" 2>&1 &
	p1=$!
	(exec 9>&- && flock -s 8 && "$2") 8<"$LOCK" >"$SB/r2" 2>&1 &
	p2=$!
	sleep 0.05
	flock -u 9
	exec 9>&-
	wait "$p1"
	e1=$?
	wait "$p2"
	e2=$?
	echo "$e1 $e2"
}

race() { # race CONTRACT CODE: two verifies of one code
	_vc=$1
	_vcode=$2
	verifier() { "$CLI" verify "$_vc" --otp "$_vcode"; }
	race2 verifier verifier
}

# race_rounds N PREFIX: N rounds, each with a fresh token bound to its own
# contract PREFIXi; two processes verify the same new code at the same
# instant. Checks exactly one accept per round, the loser REPLAYED.
race_rounds() {
	_rounds=$1
	_pfx=$2
	LOCK=$SB/gate
	check "token generate --count $_rounds" cli token generate --count "$_rounds"
	cp "$OUT" "$SB/tokens"
	check "one serial and URI per line" test "$(grep -c ' otpauth://totp/' "$SB/tokens")" -eq "$_rounds"

	bad=0
	named=0
	i=0
	while read -r serial uri; do
		i=$((i + 1))
		s=$(echo "$uri" | sed 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/')
		# A token whose codes are not distinct (lib.sh's codes_distinct)
		# gives way to a new one: the code raced could be the bind's.
		while ! codes_distinct "$s" && cli token generate; do
			read -r serial uri <"$OUT"
			s=$(echo "$uri" | sed 's/.*[?&]secret=\([A-Z2-7]*\).*/\1/')
		done
		# Bind and race inside one 30 s step: a bind that lands in the next
		# step teaches the token a drift of -1, and the racers' code (one
		# step ahead) would then fall outside the window for both.
		fresh_step 3
		if ! clin "pw-$i" contract add "$_pfx$i" ||
		    ! cli contract bind "$_pfx$i" --serial "$serial" --otp "$(totp "$s")"; then
			bad=$((bad + 1))
			echo "# round $i: provision"
			sed 's/^/#   /' "$ERR"
			continue
		fi
		race_tally "$(race "$_pfx$i" "$(totp "$s" 30)")" REPLAYED
	done <"$SB/tokens"
	check "$i rounds, exactly one accept each ($bad bad)" \
	    test "$bad" -eq 0 -a "$i" -eq "$_rounds"
	check "the loser was refused as REPLAYED ($named/$_rounds)" \
	    test "$named" -eq "$_rounds"
}

# race_tally EXITS REASON: round $i of a race ended with EXITS ("0 1"):
# one accept and one refusal, the refusal naming REASON (named counted),
# or a bad round (bad counted, both outputs shown).
race_tally() {
	case "$1" in
	"0 1" | "1 0")
		grep -q "($2)" "$SB/r1" "$SB/r2" && named=$((named + 1))
		;;
	*)
		bad=$((bad + 1))
		echo "# round $i: exits $1"
		sed 's/^/#   /' "$SB/r1" "$SB/r2"
		;;
	esac
}

# bind_race_rounds N PREFIX: N rounds of two processes binding at the same
# instant, each with a code its token shows now: in odd rounds one token
# to two contracts, in even rounds two tokens to one contract. Checks
# exactly one binding per round, the loser refused as TOKEN_IN_USE or
# ALREADY_BOUND (the engine's checks, made under the store's row locks).
bind_race_rounds() {
	_rounds=$1
	_pfx=$2
	LOCK=$SB/gate
	bad=0
	i=0
	while [ "$i" -lt "$_rounds" ]; do
		i=$((i + 1))
		_c1=${_pfx}C$i
		_t1=${_pfx}T$i
		_s1=$(secret)
		if [ $((i % 2)) -eq 1 ]; then
			_c2=${_pfx}D$i _t2=$_t1 _s2=$_s1 _want=TOKEN_IN_USE
		else
			_c2=$_c1 _t2=${_pfx}U$i _s2=$(secret) _want=ALREADY_BOUND
		fi
		if ! cli token add "$_t1" --secret "$_s1" ||
		    { [ "$_t2" != "$_t1" ] && ! cli token add "$_t2" --secret "$_s2"; } ||
		    ! clin pw contract add "$_c1" ||
		    { [ "$_c2" != "$_c1" ] && ! clin pw contract add "$_c2"; }; then
			bad=$((bad + 1))
			echo "# bind round $i: provision"
			sed 's/^/#   /' "$ERR"
			continue
		fi
		fresh_step 3
		_o1=$(totp "$_s1")
		_o2=$(totp "$_s2")
		binder1() { "$CLI" contract bind "$_c1" --serial "$_t1" --otp "$_o1"; }
		binder2() { "$CLI" contract bind "$_c2" --serial "$_t2" --otp "$_o2"; }
		r=$(race2 binder1 binder2)
		case "$r" in
		"0 1" | "1 0")
			grep -q "($_want)\$" "$SB/r1" "$SB/r2" && continue
			;;
		esac
		bad=$((bad + 1))
		echo "# bind round $i: exits $r, want one 0 and one $_want"
		sed 's/^/#   /' "$SB/r1" "$SB/r2"
	done
	check "$i bind rounds, exactly one binding each ($bad bad)" \
	    test "$bad" -eq 0 -a "$i" -eq "$_rounds"
}

# store_exec SQL: SQL on the sandbox's store, of either kind.
store_exec() {
	if [ "$STORE_KIND" = postgresql ]; then
		store_sql "SET search_path = $STORE_SCHEMA; $1"
	else
		sqlite3 "$STORE" "$1"
	fi
}
# forget SERIAL...: the tokens leave the store (unbound first). A seed
# that a token in the store holds is refused under any other serial, and
# the data files share theirs (tests/data/pskc/secrets.env, RFC 6030's
# one secret): a file reusing one comes in only once the token holding it
# is gone. The tool deletes no token; the test does it in SQL.
forget() {
	for _s in "$@"; do
		store_exec "UPDATE contracts SET serial = NULL WHERE serial = '$_s';
		    DELETE FROM tokens WHERE serial = '$_s'" >/dev/null ||
			notok "forget $_s"
	done
}

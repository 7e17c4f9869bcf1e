#!/bin/sh
# The admin tool's refusals of what it was given: each says what was wrong
# and where, in one line on stderr that the operator's words cannot break
# or forge, exits non-zero, echoes no secret, and leaves nothing half done.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
fresh_step 10

# lacks FILE TEXT: FILE does not hold TEXT.
lacks() { ! grep -qF -- "$2" "$1"; }
# one_line: stderr is exactly one line.
one_line() { test "$(wc -l <"$ERR")" -eq 1; }
# tokens: how many tokens the store holds.
tokens() { "$CLI" token list 2>/dev/null | wc -l; }

S=$(secret)
check "provision" provision T1 "$S" C1

# A contract ID is the operator's (or a script's) word, printed back on
# stderr, which a log collects: a newline in it must not make a line.
nl_id=$(printf 'C9\nshinkin-otp: contract show C1: forged')
refused UNKNOWN_CONTRACT "contract show of an ID with a newline: one line" \
    cli contract show "$nl_id"
check "... the forged text is not a line of its own" \
    sh -c '! grep -q "^shinkin-otp: contract show C1: forged" "$1"' sh "$ERR"
esc_id=$(printf 'C9\033[2J')
refused UNKNOWN_CONTRACT "contract show of an ID with an escape" \
    cli contract show "$esc_id"
check "... no escape byte reaches stderr" \
    sh -c '! LC_ALL=C grep -q "$(printf "\033")" "$1"' sh "$ERR"
check_rc 2 "an unknown option holding a newline is a usage error" \
    cli token list "$(printf -- '--x\nshinkin-otp: forged')"
check "... in one line" one_line
printf 'pw\n' | "$CLI" contract add "$nl_id" >"$OUT" 2>"$ERR"
check "contract add of an ID with a newline is refused (exit 1)" test $? -eq 1
check "... in one line" one_line

# Malformed input is named, not only called malformed.
long=$(printf 'C%.0s' $(seq 65))
check_rc 1 "contract add of a 65-character ID is refused" \
    clin pw contract add "$long"
check "... saying the ID is not 1 to 64 characters" \
    contains "$ERR" "the ID is not 1 to 64 printable ASCII characters"
check_rc 1 "contract add with a 300-byte password is refused" \
    clin "$(printf 'x%.0s' $(seq 300))" contract add C2
check "... saying the password is not 1 to 256 bytes" \
    contains "$ERR" "the password is not 1 to 256 bytes"
check_rc 1 "token add --digits 9 is refused" \
    cli token add T9 --secret "$S" --digits 9
check "... saying digits must be 6 to 8" contains "$ERR" "digits must be 6 to 8"
check_rc 1 "token add of a 5-byte secret is refused" \
    cli token add T9 --secret MFRGGZDF
check "... naming the secret's length and the policy's bounds" \
    contains "$ERR" "a secret of 5 bytes: the policy takes 16 to 64"
check_rc 1 "token add of a serial with a blank is refused" \
    cli token add "T 9" --secret "$S"
check "... saying what a serial may hold" contains "$ERR" "the ID is not 1 to 64"
check_rc 1 "token add --kind of an undefined kind is refused" \
    cli token add T9 --secret "$S" --kind nope
check "... naming the kind and the policy file" \
    contains "$ERR" "kind 'nope' is not defined in $CONF"

# A secret or code put where a value was not expected is not echoed.
check_rc 2 "token show --secret=BASE32 is a usage error" \
    cli token show T1 --secret="$S"
check "... naming the option" contains "$ERR" "unknown option '--secret'"
check "... without the secret" lacks "$ERR" "$S"
check_rc 2 "token add SERIAL SECRET (no --secret word) is a usage error" \
    cli token add T9 "$S" --secret "$S"
check "... without the secret" lacks "$ERR" "$S"
check "... naming the argument by its place" \
    contains "$ERR" "unexpected argument 2"
code=$(wrong_code "$S")
check_rc 2 "verify ID --otp CODE CODE2 is a usage error" \
    cli verify C1 --otp 999999 "$code"
check "... without the code" lacks "$ERR" "$code"
check_rc 2 "token resync with a third code is a usage error" \
    cli token resync T1 111111 222222 "$code"
check "... without the code" lacks "$ERR" "$code"
check_rc 2 "contract bind with a stray code is a usage error" \
    cli contract bind C1 --serial T1 "$code"
check "... without the code" lacks "$ERR" "$code"

# A secret given on the command line (resync's codes, verify's --otp and
# --card, token add's --secret, contract bind's --otp) leaves
# /proc/PID/cmdline before the tool loads anything: a load can take long
# (a store's connect timeout) and fail, and they used to stay visible all
# along (and, for resync and verify, unwiped when it failed). The process
# is held in the load by an exclusive lock on the metrics file the policy
# names (which the load flock()s), then fails for a master key other
# than the store's.
head -c 32 /dev/urandom >"$SB/other.key"
chmod 600 "$SB/other.key"
sed -e "s|^master_key *=.*|master_key = $SB/other.key|" \
    -e "s|^metrics *=.*|metrics = $SB/held.metrics|" "$CONF" >"$SB/held.conf"
# held_in_load WHAT "SECRET..." ARGS...: the tool with ARGS, looked at
# while held in the load; none of the (blank-separated) SECRETs may be
# in its cmdline, nor on its stderr once the load failed.
held_in_load() {
	hl_what=$1
	printf '%s\n' $2 >"$SB/secrets"
	shift 2
	exec 7>"$SB/held.metrics"
	flock -x 7
	"$CLI" --config "$SB/held.conf" "$@" >"$OUT" 2>"$ERR" </dev/null 7>&- &
	hl_pid=$!
	# Waiting for the lock (a "->" line of /proc/locks): inside the load.
	hl_i=0
	until grep -q "^[0-9]*: -> FLOCK .* $hl_pid " /proc/locks ||
	    [ $hl_i -ge 1200 ]; do
		sleep 0.05
		hl_i=$((hl_i + 1))
	done
	tr '\0' ' ' <"/proc/$hl_pid/cmdline" >"$SB/cmdline" 2>/dev/null
	check "$hl_what: held in the load (waiting for the metrics lock)" \
	    grep -q "^[0-9]*: -> FLOCK .* $hl_pid " /proc/locks
	check "... its cmdline read" contains "$SB/cmdline" "$SB/held.conf"
	check "... and no secret in it" \
	    sh -c '! grep -qF -f "$1" "$2"' sh "$SB/secrets" "$SB/cmdline"
	flock -u 7
	exec 7>&-
	wait "$hl_pid"
	check "... then the load fails (exit 2)" test $? -eq 2
	check "... naming the key file" contains "$ERR" \
	    "(file $SB/other.key: a key other than the store's?"
	check "... and no secret on stderr" \
	    sh -c '! grep -qF -f "$1" "$2"' sh "$SB/secrets" "$ERR"
}
c1=$(wrong_code "$S")
c2=9$(printf '%s' "$c1" | cut -c 2-)
held_in_load "token resync" "$c1 $c2" token resync T1 "$c1" "$c2"
check "... the serial still named in its cmdline" \
    contains "$SB/cmdline" " resync T1 "
held_in_load "verify --otp --card" "$c1 86420" \
    verify C1 --otp "$c1" --card 86420
S2=$(secret)
held_in_load "token add --secret" "$S2" token add T8 --secret "$S2"
held_in_load "contract bind --otp=CODE" "$c2" \
    contract bind C1 --serial T1 "--otp=$c2"
check "... the option's name still in its cmdline" \
    contains "$SB/cmdline" " --otp= "

# A usage error ends the parse before it reaches a secret: the words past
# the failing one (a --secret, --otp or --card value, resync's codes)
# used to stay in /proc/PID/cmdline while the error was written and until
# exit. The process is held in the write of its error line: standard
# error is a FIFO whose pipe was filled first.
# held_in_usage WHAT "SECRET..." ARGS...: the tool with ARGS, looked at
# while held there; none of the SECRETs may be in its cmdline nor in
# what it wrote.
held_in_usage() {
	hu_what=$1
	printf '%s\n' $2 >"$SB/secrets"
	shift 2
	rm -f "$SB/errfifo"
	mkfifo "$SB/errfifo"
	exec 8<>"$SB/errfifo"
	# Fills the pipe: nonblocking 4 KiB writes until one would block.
	dd if=/dev/zero of="$SB/errfifo" bs=4096 oflag=nonblock 2>/dev/null
	"$CLI" "$@" >"$OUT" 2>"$SB/errfifo" </dev/null 8>&- &
	hu_pid=$!
	# Blocked in a system call on fd 2 (/proc/PID/syscall: "NR 0x2 ...").
	hu_i=0
	until [ "$(cut -d' ' -f2 "/proc/$hu_pid/syscall" 2>/dev/null)" = 0x2 ] ||
	    [ $hu_i -ge 1200 ]; do
		sleep 0.05
		hu_i=$((hu_i + 1))
	done
	tr '\0' ' ' <"/proc/$hu_pid/cmdline" >"$SB/cmdline" 2>/dev/null
	check "$hu_what: held in the write of its usage error" \
	    [ "$(cut -d' ' -f2 "/proc/$hu_pid/syscall" 2>/dev/null)" = 0x2 ]
	check "... its cmdline read" contains "$SB/cmdline" "$CLI "
	check "... and no secret in it" \
	    sh -c '! grep -qF -f "$1" "$2"' sh "$SB/secrets" "$SB/cmdline"
	# A second reader, opened while fd 8 still writes (so no wait), to
	# drain the pipe: the tool then writes, exits, and cat sees the end.
	exec 9<"$SB/errfifo"
	exec 8>&-
	cat <&9 >"$SB/errout" &
	hu_cat=$!
	exec 9<&-
	wait "$hu_pid"
	check "... then a usage error (exit 2)" test $? -eq 2
	wait "$hu_cat"
	check "... and no secret on stderr" \
	    sh -c '! tr -d "\\000" <"$2" | grep -qF -f "$1"' sh "$SB/secrets" "$SB/errout"
}
S3=$(secret)
held_in_usage "token add --bogus --secret" "$S3" \
    token add T9 --bogus --secret "$S3"
held_in_usage "token add --kind twice, then --secret=" "$S3" \
    token add T9 --kind a --kind b "--secret=$S3"
held_in_usage "verify: a stray word, then --otp and --card" "$c1 86420" \
    verify C1 stray --otp "$c1" --card 86420
held_in_usage "contract bind: an unknown option, then --otp" "$c2" \
    contract bind C1 --frob --serial T1 --otp "$c2"
held_in_usage "token resync: an unknown option before the codes" "$c1 $c2" \
    token resync T1 --frob "$c1" "$c2"
held_in_usage "a command that takes no --secret" "$S3" \
    token list --secret "$S3"
held_in_usage "a bad global option, then --secret" "$S3" \
    --frob token add T9 --secret "$S3"
held_in_usage "an unknown option with a value (a PIN?)" "4711" \
    verify C1 --pin=4711 --otp "$c1"
held_in_usage "an unknown token command, then --secret" "$S3" \
    token ad T9 --secret "$S3"
held_in_usage "an unknown contract command, then --otp=" "$c2" \
    contract bnd C1 --serial T1 "--otp=$c2"
held_in_usage "an unknown command, then --otp" "$c2" \
    verfy C1 --otp "$c2"

# --config with no file name.
check_rc 2 "--config= is a usage error" cli --config= token list
check "... naming --config" contains "$ERR" "--config: an empty file name"

# --png onto a name that is taken: nothing is made or exported first.
echo keep >"$SB/taken.png"
n=$(tokens)
check_rc 2 "token generate --png onto an existing file fails" \
    cli token generate --png "$SB/taken.png"
check "... saying it exists" contains "$ERR" "taken.png: it exists"
check "... and no token was made" test "$(tokens)" -eq "$n"
check "... nor any URI printed" lacks "$OUT" "otpauth://"
check "... and the file is untouched" test "$(cat "$SB/taken.png")" = keep
"$CLI" audit >"$SB/a1" 2>/dev/null
check_rc 2 "token show --png onto an existing file fails" \
    cli token show T1 --png "$SB/taken.png"
"$CLI" audit >"$SB/a2" 2>/dev/null
check "... and no export is audited" test \
    "$(grep -c ' token\.export ' "$SB/a1")" = \
    "$(grep -c ' token\.export ' "$SB/a2")"
check_rc 2 "token generate --png into a missing directory fails" \
    cli token generate --png "$SB/nodir/x.png"
check "... and no token was made" test "$(tokens)" -eq "$n"
check_rc 2 "token generate --png '' is a usage error" \
    cli token generate --png ''
check "... and no token was made" test "$(tokens)" -eq "$n"
check "token generate --png NEW still works" \
    cli token generate --png "$SB/new.png"
check "... one token more" test "$(tokens)" -eq $((n + 1))
check "... its PNG 0600" test "$(stat -c %a "$SB/new.png")" = 600
# An empty word where a file, policy, ID or name is wanted is a usage
# error naming it, before anything is done: an empty backup path named
# the current directory (and audited a failed backup), an empty
# --contract listed every contract's rows.
for args in "backup|FILE" "export --output|--output" \
    "metrics --output|--output" "key rewrap|NEW-POLICY" \
    "key drop-kek|NAME" "audit --contract|--contract" "token import|FILE" \
    "contract import|FILE" "token import $SB/x.pskc --key-file|--key-file" \
    "token import $SB/x.pskc --signer|--signer"; do
	words=${args%|*}
	what=${args#*|}
	# shellcheck disable=SC2086
	check_rc 2 "$words '' is a usage error" cli $words ''
	check "... naming $what" contains "$ERR" "$what: an empty value"
	check "... and prints nothing" test ! -s "$OUT"
done
"$CLI" audit >"$SB/a3" 2>/dev/null
check "no backup was audited" sh -c '! grep -q store.backup "$1"' sh "$SB/a3"

# A key file given as a symbolic link is refused saying so.
printf '00112233445566778899aabbccddeeff\n' >"$SB/psk"
chmod 600 "$SB/psk"
ln -s "$SB/psk" "$SB/psk.link"
touch "$SB/seeds.pskc"
check_rc 2 "token import --key-file SYMLINK is refused" \
    cli token import "$SB/seeds.pskc" --key-file "$SB/psk.link"
check "... saying it is a symbolic link" \
    contains "$ERR" "psk.link: a symbolic link"
# The refusals whose cause is a word of the command line name it.
check_rc 1 "verify --context of an undefined context is refused" \
    cli verify C1 --context nope --otp 123456
check "... naming the context" \
    contains "$ERR" "--context 'nope' is not a context of the policy"
check_rc 1 "token generate --digits 5 is refused" cli token generate --digits 5
check "... saying digits must be 6 to 8" contains "$ERR" "digits must be 6 to 8"
check_rc 1 "token generate --kind of an undefined kind is refused" \
    cli token generate --kind nope
check "... naming the kind" contains "$ERR" "kind 'nope' is not defined"
# The same before the command, where only the global options go.
check_rc 2 "a global --otp=CODE is a usage error" cli --otp="$code" verify C1
check "... naming the option" contains "$ERR" "unknown option '--otp'"
check "... without the code" lacks "$ERR" "$code"
# A FIFO where a file is read: refused at once, never waited on (a hang
# is no refusal). timeout's 124 would say it hung.
mkfifo "$SB/fifo" "$SB/fifo.csv"
cli_timed() { timeout 10 "$CLI" "$@" </dev/null >"$OUT" 2>"$ERR"; }
for args in "contract import $SB/fifo.csv" "token import $SB/fifo.csv" \
    "token import $SB/seeds.pskc --key-file $SB/fifo" \
    "token import $SB/seeds.pskc --signer $SB/fifo" \
    "--config $SB/fifo check-config" "key rewrap $SB/fifo"; do
	# shellcheck disable=SC2086
	check_rc 2 "${args#"$SB"/} on a FIFO is refused at once" \
	    cli_timed $args
	check "... saying it is not a regular file" \
	    grep -q "fifo[.a-z]*: not a regular file" "$ERR"
done
# --until the epoch is a bound like any other: no row is that old. The
# core's 0 means "no bound", and the whole trail came out.
for t in 0 1970-01-01 1970-01-01T00:00:00Z; do
	check "audit --until $t" cli audit --until "$t"
	check "... lists no row" test ! -s "$OUT"
done
check "audit --until 1 lists no row either" cli audit --until 1
check "... (none)" test ! -s "$OUT"
# An unknown subcommand is named.
check_rc 2 "key frob is a usage error" cli key frob
check "... naming it" contains "$ERR" "unknown key command 'frob'"
check_rc 2 "contract frob X is a usage error" cli contract frob X
check "... naming it" contains "$ERR" "unknown contract command 'frob'"
# A line longer than its 2 KiB (an unknown command of 2.4 KB), an ID
# longer than the 160 bytes that name the command at the head of every
# line, and a --context word longer than the 160 bytes of its refusal:
# each cut ends in "...", after whole UTF-8 characters (the tool writes
# a split character's bytes as '?'). The prefix puts the cut at each
# byte of a 3-byte character.
LONGW=$(printf '契約者番号%.0s' $(seq 1 160))
for pad in a aa aaa; do
	check_rc 2 "an unknown command of 2.4 KB ($pad): a usage error" \
	    cli "$pad$LONGW"
	check "... its line cut with the mark" \
	    grep -q "^shinkin-otp: unknown command '$pad契約者番号.*\.\.\.\$" "$ERR"
	check "... after whole characters" lacks "$ERR" "?"
	refused UNKNOWN_CONTRACT "contract show of a 2.4 KB ID ($pad)" \
	    cli contract show "$pad$LONGW"
	check "... its head cut with the mark" \
	    grep -q "^shinkin-otp: contract show $pad契約者番号.*\.\.\.: refused: " "$ERR"
	check "... after whole characters" lacks "$ERR" "?"
	check_rc 1 "verify --context of a 2.4 KB word ($pad) is refused" \
	    cli verify C1 --context "$pad$LONGW" --otp 123456
	check "... the word cut with the mark" \
	    grep -q -- "--context '$pad契約者番号.*\.\.\. (UNKNOWN_CONTEXT)\$" "$ERR"
	check "... after whole characters" lacks "$ERR" "?"
done
# An option's value is the next word, but not a word that is an option
# itself: "--output --with-secrets" is --output without its value (a
# usage error), not an export without secrets to a file named
# "--with-secrets"; nor is "--png --uri" a QR code of the secret in a
# file named "--uri" instead of the URI asked for. A value that begins
# with "--" is written --opt=VALUE. Run in an empty directory, where
# such a file would appear.
mkdir "$SB/cwd"
in_cwd() { (cd "$SB/cwd" && "$CLI" "$@") </dev/null >"$OUT" 2>"$ERR"; }
for args in "export --with-secrets --output --format|--output|--format" \
    "export --output --with-secrets|--output|--with-secrets" \
    "token show T1 --png --uri|--png|--uri" \
    "metrics --output --json|--output|--json" \
    "audit --contract --since|--contract|--since" \
    "--config --debug init|--config|--debug"; do
	words=${args%%|*}
	opt=${args#*|}
	val=${opt#*|}
	opt=${opt%|*}
	# shellcheck disable=SC2086
	check_rc 2 "$words: a usage error" in_cwd $words
	check "... saying $opt needs a value, not $val" contains "$ERR" \
	    "option $opt needs a value: '$val' is an option"
	check "... in one line" one_line
	check "... and prints nothing" test ! -s "$OUT"
	check "... and writes no file" test -z "$(ls -A "$SB/cwd")"
	rm -rf "$SB/cwd" && mkdir "$SB/cwd"
done
check_rc 2 "--json export --output --with-secrets: a usage error" \
    cli --json export --output --with-secrets
check "... one JSON object naming --output" \
    grep -qx '{"verdict":"error","command":"export","option":"--output",.*"usage":true}' "$OUT"
check_rc 2 "token add --secret --digits 8: a usage error" \
    cli token add T9 --secret --digits 8
check "... saying --secret needs a value" \
    contains "$ERR" "option --secret needs a value: '--digits' is an option"
# --opt=VALUE still takes a value that begins with "--".
check "metrics --output=--m writes the file so named" sh -c \
    'cd "$1/cwd" && "$2" metrics --output=--m >/dev/null' sh "$SB" "$CLI"
check "... there" test -s "$SB/cwd/--m"
# A path the operator gave, echoed in a success line on stdout (init,
# backup): its escape and newline cannot move the cursor or make a line.
odd_dir="$SB/$(printf 'e\033[2Jx\nforged: yes')"
mkdir "$odd_dir"
"$CLI" --config "$odd_dir/p.conf" init >"$OUT" 2>"$ERR"
check "init of a policy under an odd directory" test $? -eq 0
check "... no escape byte on stdout" \
    sh -c '! LC_ALL=C grep -q "$(printf "\033")" "$1"' sh "$OUT"
check "... its config line names the path, the odd bytes as '?'" \
    grep -qxF "config: $SB/e?[2Jx?forged: yes/p.conf" "$OUT"
check "... and forges no line" sh -c '! grep -q "^forged: yes" "$1"' sh "$OUT"
check "backup to a file under it" cli backup "$odd_dir/b.db"
check "... its line names the path, the odd bytes as '?'" \
    grep -qxF "backup written to $SB/e?[2Jx?forged: yes/b.db" "$OUT"
echo "1..$TAPN"

#!/bin/sh
# A challenge state is good once whatever the clocks do (issue 12, defect
# 1), through `verify --state`: the clock steps back between the challenge
# and its answer, and a second "server" (another process on the same
# store) whose clock runs an hour ahead purges the used-state marks. Each
# CLI run gets its clock from faketime(1), as each server has its own.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
# libfaketime is preloaded; an ASan build must not insist on coming first.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
export ASAN_OPTIONS
# faketime reads its times in the local zone: make that UTC.
TZ=UTC
export TZ

# at T cli...: the tool with its clock at epoch second T.
at() {
	_t=$1
	shift
	faketime -f "@$(date -u -d "@$_t" '+%Y-%m-%d %H:%M:%S')" "$@"
}
# atcli T ARGS... / atclin T LINE ARGS...: cli and clin at epoch second T.
atcli() {
	_t=$1
	shift
	at "$_t" "$CLI" "$@" >"$OUT" 2>"$ERR" </dev/null
}
atclin() {
	_t=$1
	_in=$2
	shift 2
	printf '%s\n' "$_in" | at "$_t" "$CLI" "$@" >"$OUT" 2>"$ERR"
}
# code T: the token's code at epoch second T.
code() { oathtool --totp -b --now "@$1" "$S"; }
# A code that no step within +-3 of T produces.
bad_code() {
	_codes=$(for _o in -90 -60 -30 0 30 60 90; do code $(($1 + _o)); done)
	for _c in 000000 111111 222222 333333 444444 555555; do
		echo "$_codes" | grep -qx "$_c" || { echo "$_c"; return 0; }
	done
}
state_of() { sed -n 's/^state: //p' "$OUT"; }

check "faketime sets the tool's clock" \
    sh -c 'faketime -f "@2030-01-01 00:00:00" date +%s | grep -qx 1893456000'

S=$(secret)
fresh_step 5
check "provision (login asks for a code)" provision T1 "$S" C1 secret-1
# A day ahead, at the start of a 30 s step: later than the bind's code.
N=$((($(date +%s) / 30 + 2880) * 30 + 5))

# -- the clock steps back 100 s between the challenge and its answer --
check_rc 3 "challenge at N" atclin $N secret-1 verify C1 --context login
st=$(state_of)
check "it prints a state" test -n "$st"
check "answered at N-100 (clock stepped back)" \
    atcli $((N - 100)) verify C1 --context login --state "$st" \
    --otp "$(code $((N - 100)))"
check "accepted" contains "$OUT" accepted
refused STATE_REPLAYED "the state again at N+50, inside its life" \
    atcli $((N + 50)) verify C1 --context login --state "$st" \
    --otp "$(code $((N + 50)))"

# -- server B, an hour ahead, purges marks while A still holds a state --
M=$((N + 1200))
check_rc 3 "A: challenge at M" atclin $M secret-1 verify C1 --context login
sa=$(state_of)
check "A: answered at M+5" \
    atcli $((M + 5)) verify C1 --context login --state "$sa" \
    --otp "$(code $((M + 5)))"
check "A: accepted" contains "$OUT" accepted
check_rc 3 "B: challenge at M+3600" atclin $((M + 3600)) secret-1 verify C1 --context login
sb=$(state_of)
refused WRONG_CODE "B: its own state used at M+3601 (the purge runs)" \
    atcli $((M + 3601)) verify C1 --context login --state "$sb" \
    --otp "$(bad_code $((M + 3601)))"
refused STATE_REPLAYED "A: the first state again at M+60, inside its life" \
    atcli $((M + 60)) verify C1 --context login --state "$sa" \
    --otp "$(code $((M + 60)))"
check_rc 3 "A: a new challenge at M+61" atclin $((M + 61)) secret-1 verify C1 --context login
sa=$(state_of)
check "A: a new state is not affected" \
    atcli $((M + 65)) verify C1 --context login --state "$sa" \
    --otp "$(code $((M + 65)))"

# -- two time steps, one code: with RFC 4226's secret, steps 62075368 and
#    62075369 (2029-01-04) both give 235522. Used at the first, the six
#    digits are refused as a replay at the next too (no two servers ever
#    both accept one code); the step after takes its own --
K=62075368
RFC=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
check "oathtool agrees: steps K and K+1 give one code" \
    test "$(oathtool --totp -b --now "@$((K * 30 + 5))" $RFC)" = 235522 -a \
    "$(oathtool --totp -b --now "@$((K * 30 + 35))" $RFC)" = 235522
check "a token with the RFC secret" \
    atcli $((K * 30)) token add T2 --secret $RFC --digits 6
check "its contract" atclin $((K * 30)) secret-2 contract add C2
check "bound at step K with its code" \
    atcli $((K * 30 + 5)) contract bind C2 --serial T2 --otp 235522
refused REPLAYED "the same six digits at step K+1: a replay" \
    atcli $((K * 30 + 35)) verify C2 --context transaction --otp 235522
check "the code of step K+2 is accepted" \
    atcli $((K * 30 + 65)) verify C2 --context transaction --otp \
    "$(oathtool --totp -b --now "@$((K * 30 + 65))" $RFC)"

echo "1..$TAPN"

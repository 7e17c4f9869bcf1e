#!/bin/sh
# Lockout: the policy's threshold (5) of consecutive wrong codes locks the
# contract; then even a right code is refused as LOCKED until an admin
# runs "contract unlock".
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
fresh_step 15

S=$(secret)
check "provision" provision T1 "$S" C1
bad=$(wrong_code "$S")
good=$(totp "$S" 30)
for i in 1 2 3 4 5; do
	check_rc 1 "wrong code $i refused" cli verify C1 --otp "$bad"
done
refused LOCKED "a right code is refused once locked" cli verify C1 --otp "$good"
check "contract show" cli contract show C1
check "contract show says locked" grep -q "^locked: until" "$OUT"
check "contract show --json" cli --json contract show C1
check "json: locked_until is set" \
    sh -c "grep -q '\"locked_until\":-\\{0,1\\}[1-9]' '$OUT'"
check "contract unlock" cli contract unlock C1
check "contract show: no longer locked" \
    sh -c "'$CLI' contract show C1 | grep -q '^locked: no'"
check "the right code is accepted after unlock" cli verify C1 --otp "$good"
check "failures are reset by the accept" \
    sh -c "'$CLI' contract show C1 | grep -q '^failures: 0'"
echo "1..$TAPN"

#!/bin/sh
# verify through the engine with the shipped contexts: the password read
# from stdin only when the context checks it, exit 3 with a state when a
# factor is missing, resuming with --state, the card challenge, and the
# JSON output.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
fresh_step 15

S=$(secret)
check "provision (login asks for a code)" provision T1 "$S" C1 secret-1
check "contract set --login-otp yes" cli contract set C1 --login-otp yes

check "mobile: password only" clin secret-1 verify C1 --context mobile
check "mobile: accepted" contains "$OUT" accepted
refused WRONG_PASSWORD "mobile: wrong password" \
    clin wrong verify C1 --context mobile
check_rc 3 "login without --otp asks for more" \
    clin secret-1 verify C1 --context login
check "it names the factor" grep -q '^needs: otp$' "$OUT"
check "it shows the engine's prompt, in Japanese" \
    grep -qx 'prompt: ワンタイムパスワード(半角数字)：' "$OUT"
state=$(sed -n 's/^state: //p' "$OUT")
check "it prints a state" test -n "$state"
check "resume with --state and the code" \
    cli verify C1 --context login --state "$state" --otp "$(totp "$S" 30)"
check "resumed: accepted" contains "$OUT" accepted
refused STATE_REPLAYED "the same state cannot be used twice" \
    cli verify C1 --context login --state "$state" --otp "$(totp "$S" 30)"
check_rc 1 "login with a wrong password and a code" \
    clin nope verify C1 --context login --otp "$(wrong_code "$S")"
refused WRONG_CODE "transaction reads no password, refuses a wrong code" \
    cli verify C1 --otp "$(wrong_code "$S")"
refused UNKNOWN_CONTEXT "an unknown context is refused" \
    cli verify C1 --context nosuch --otp 123456
check "contract unlock (reset failures)" cli contract unlock C1

# Forgiving input: as an authenticator app shows the code, and in the
# full-width digits of a Japanese input method; malformed is not a guess.
fresh_step 10
C=$(totp "$S" 60)
check "verify --otp '123 456' (grouped as apps show it) is accepted" \
    cli verify C1 --otp "$(echo "$C" | sed 's/^\(...\)/\1 /')"
C=$(totp "$S" 90)
FW=$(echo "$C" | sed 's/0/０/g;s/1/１/g;s/2/２/g;s/3/３/g;s/4/４/g;s/5/５/g;s/6/６/g;s/7/７/g;s/8/８/g;s/9/９/g')
check "verify --otp in full-width digits ($FW) is accepted" cli verify C1 --otp "$FW"
refused BAD_INPUT "a code with a letter is malformed" cli verify C1 --otp 12a456
check "the malformed code tells the customer, in Japanese" \
    grep -q '^message: 入力の形式が正しくありません。' "$OUT"
# The operator reads which input was malformed, never its value.
check "  the stderr line names the input" \
    grep -q ': refused: malformed input: otp (BAD_INPUT)$' "$ERR"
check "  so does stdout" grep -qx 'refused: malformed input: otp (BAD_INPUT)' "$OUT"
check "  neither shows the code" sh -c '! grep -q 12a456 "$1" "$2"' sh "$OUT" "$ERR"
refused BAD_INPUT "a code of the wrong length is malformed" cli verify C1 --otp 12345
check "malformed codes do not count toward the lockout" \
    sh -c "'$CLI' contract show C1 | grep -qx 'failures: 0'"

# A registration asks five inputs: a malformed one is named as its audit
# row names it ("malformed=login-otp"), not only called malformed.
S2=$(secret)
check "token add T2 (for a registration)" cli token add T2 --secret "$S2"
check "contract add R1" clin pw-R1 contract add R1
check "contract card R1" cli contract card R1
refused BAD_INPUT "registration: a login choice that is none of 1-3 is refused" \
    clin pw-R1 verify R1 --context registration --serial T2 \
    --otp "$(totp "$S2")" --login-otp maybe
check "  the stderr line names the input" \
    grep -q ': refused: malformed input: login-otp (BAD_INPUT)$' "$ERR"
check "  so does stdout" \
    grep -qx 'refused: malformed input: login-otp (BAD_INPUT)' "$OUT"
check "  never its value" sh -c '! grep -q maybe "$1" "$2"' sh "$OUT" "$ERR"
check "  as the audit row names it" \
    sh -c "'$CLI' audit --contract R1 | tail -n 1 | grep -q 'register reject BAD_INPUT .*detail=malformed=login-otp'"
refused BAD_INPUT "registration: a serial with a quote inside is refused" \
    clin pw-R1 verify R1 --context registration --serial 'T"2' \
    --otp "$(totp "$S2")" --login-otp 1
check "  named: serial" \
    grep -q ': refused: malformed input: serial (BAD_INPUT)$' "$ERR"
check "T2 stays unbound" sh -c "'$CLI' contract show R1 | grep -qx 'token: -'"

# The card: a grid printed once, then a challenge for some cells.
check "contract card" cli contract card C1
cp "$OUT" "$SB/grid"
check "contract set --login-otp card" cli contract set C1 --login-otp card
check_rc 3 "login with the card asks for cells" \
    clin secret-1 verify C1 --context login
cells=$(sed -n 's/^card cells: //p' "$OUT")
check "the cells are printed ($cells)" test -n "$cells"
state=$(sed -n 's/^state: //p' "$OUT")
# The digits at each cell of the card printed above.
card_answer() { card_digits "$SB/grid" "$1"; }
# A question left unanswered shows nothing new: the same cells again.
for i in 1 2; do
	check_rc 3 "asked again ($i), the card question" \
	    clin secret-1 verify C1 --context login
	check "the same cells ($cells)" \
	    test "$(sed -n 's/^card cells: //p' "$OUT")" = "$cells"
done
answer=$(card_answer "$cells")
check "the card answer is accepted ($answer)" \
    cli verify C1 --context login --state "$state" --card "$answer"
# A right answer makes the next cells new: three keeping the same two
# cells of 50 would be a 1 in 10^10 chance.
changed=no
for i in 1 2 3; do
	check_rc 3 "after a right answer ($i), the card question" \
	    clin secret-1 verify C1 --context login
	next=$(sed -n 's/^card cells: //p' "$OUT")
	[ "$next" = "$cells" ] || changed=yes
	cells=$next
	state=$(sed -n 's/^state: //p' "$OUT")
	check "its answer is accepted" \
	    cli verify C1 --context login --state "$state" --card "$(card_answer "$cells")"
done
check "right answers made new cells" test "$changed" = yes
# A card answer is good once: two challenges open on the same cells, the
# first answered right; the second's right answer is refused as a wrong
# card and counted (it was accepted: one answer seen let a second
# session in while its State lived).
check_rc 3 "a card challenge" clin secret-1 verify C1 --context login
cells=$(sed -n 's/^card cells: //p' "$OUT")
state1=$(sed -n 's/^state: //p' "$OUT")
check_rc 3 "a second one, the same cells" clin secret-1 verify C1 --context login
check "  (the same cells: $cells)" \
    test "$(sed -n 's/^card cells: //p' "$OUT")" = "$cells"
state2=$(sed -n 's/^state: //p' "$OUT")
check "the first challenge's right answer is accepted" \
    cli verify C1 --context login --state "$state1" --card "$(card_answer "$cells")"
refused WRONG_CARD "the second's, the same right answer, is refused" \
    cli verify C1 --context login --state "$state2" --card "$(card_answer "$cells")"
check "  and counted" \
    sh -c "'$CLI' contract show C1 | grep -qx 'failures: 1'"
check "  its audit row says why" \
    sh -c "'$CLI' audit --contract C1 | grep -q 'WRONG_CARD.*cells=answered'"
check_rc 3 "a new challenge" clin secret-1 verify C1 --context login
check "  answered right, accepted" cli verify C1 --context login \
    --state "$(sed -n 's/^state: //p' "$OUT")" \
    --card "$(card_answer "$(sed -n 's/^card cells: //p' "$OUT")")"
check "  the count is 0" \
    sh -c "'$CLI' contract show C1 | grep -qx 'failures: 0'"

# JSON: one valid object; the verdict and the reason by name.
check_rc 1 "verify --json (a used code)" \
    cli --json verify C1 --otp "$(totp "$S" 30)"
if command -v jq >/dev/null; then
	check "json: verdict" jq -e '.verdict == "reject" and .reason == "REPLAYED"' "$OUT"
	check "json: no malformed input named for a used code" jq -e 'has("malformed") | not' "$OUT"
	check_rc 1 "verify --json (a malformed login choice)" \
	    clin pw-R1 --json verify R1 --context registration --serial T2 \
	    --otp "$(totp "$S2")" --login-otp maybe
	check "json: the malformed input by name" \
	    jq -e '.reason == "BAD_INPUT" and .malformed == "login-otp"' "$OUT"
	check_rc 3 "json: continue" clin secret-1 --json verify C1 --context login
	check "json: the question, its prompt, echo and state" \
	    jq -e '.ask == "card" and (.prompt | test("確認用パスワード表の")) and .echo == false and (.state | length > 0) and (.card_cells | length > 0)' "$OUT"
	check "token list --json: one object per line" cli --json token list
	check "json: lines parse" jq -e -s 'length == 2 and .[0].serial == "T1" and .[1].serial == "T2"' "$OUT"
	check "audit --json parses" sh -c "'$CLI' --json audit | jq -e -s 'length > 5' >/dev/null"
	# Every --json command writes JSON only: no human lines, no QR art.
	mkdir "$SB/j"
	check "init --json" cli --json --config "$SB/j/shinkin-otp.conf" init
	check "json: init names config, key and store" \
	    jq -e -s 'length == 1 and (.[0].config | length > 0) and (.[0].master_key | length > 0) and (.[0].store | length > 0)' "$OUT"
	check "contract card --json" cli --json contract card C1
	check "json: the grid is one string" \
	    jq -e -s 'length == 1 and .[0].contract == "C1" and (.[0].grid | test("\n"))' "$OUT"
	check_rc 2 "token show --qr --json is refused" cli --json token show T1 --qr
	check "the refusal is one line" test "$(wc -l <"$ERR")" -eq 1
	check "and on stdout only the usage error's JSON object" \
	    jq -e -s 'length == 1 and .[0].verdict == "error" and .[0].usage == true and .[0].command == "token show"' "$OUT"
	check_rc 2 "token generate --qr --json is refused" cli --json token generate --qr
	check "no token was generated" \
	    sh -c "'$CLI' token list | wc -l | grep -qx 2"
else
	notok "jq is not installed (scripts/deps.sh installs it)"
fi

# A State carries the password as checked, not the password: once the
# bank changes it (contract passwd), a State issued before is refused as
# a bad State, even with the right code (it was accepted for its whole
# lifetime: whoever knew the old password finished the login). A State
# that carries no password (transaction) is good across the change.
S3=$(secret)
check "provision C2 (login asks for a code)" provision T3 "$S3" C2 old-pw
check "  contract set --login-otp yes" cli contract set C2 --login-otp yes
check_rc 3 "login with the password asks for the code" \
    clin old-pw verify C2 --context login
lstate=$(sed -n 's/^state: //p' "$OUT")
check_rc 3 "transaction asks for the code, no password" \
    cli verify C2 --context transaction
tstate=$(sed -n 's/^state: //p' "$OUT")
check "contract passwd C2 (the bank changes the password)" \
    clin new-pw contract passwd C2
refused STATE_INVALID "the login State from before the change is refused" \
    cli verify C2 --context login --state "$lstate" --otp "$(totp "$S3" 30)"
check "  its audit row says why" \
    sh -c "'$CLI' audit --contract C2 | grep -q 'STATE_INVALID'"
check "the transaction State from before it is accepted" \
    cli verify C2 --context transaction --state "$tstate" --otp "$(totp "$S3" 30)"
check_rc 3 "the new password asks for the code" \
    clin new-pw verify C2 --context login
echo "1..$TAPN"

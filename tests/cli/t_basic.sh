#!/bin/sh
# The admin tool against an independent token (oathtool): provisioning,
# binding, verification, replay, SHA256/8 digits and the refusals.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
fresh_step 10

S1=$(secret)
S2=$(secret)
S3=$(secret)

check "token add" cli token add T1 --secret "$S1"
check "token add with spaces and lower case" \
    cli token add T2 --secret "$(echo "$S2" | tr A-Z a-z | sed 's/..../& /g')"
check_rc 2 "token add rejects bad base32" cli token add T9 --secret 'NOT-BASE32!'
refused EXISTS "token add refuses a known serial" \
    cli token add T1 --secret "$S1"

check "contract add" clin pw-C1 contract add C1
check "contract add C2" clin pw-C2 contract add C2
refused EXISTS "contract add refuses a known ID" clin x contract add C1

refused UNKNOWN_SERIAL "bind refuses an unknown serial" \
    cli contract bind C1 --serial NOPE --otp "$(totp "$S1")"
refused WRONG_CODE "bind refuses a wrong code" \
    cli contract bind C1 --serial T1 --otp "$(wrong_code "$S1")"
check "bind with oathtool's current code" \
    cli contract bind C1 --serial T1 --otp "$(totp "$S1")"
refused ALREADY_BOUND "a second token cannot be bound" \
    cli contract bind C1 --serial T2 --otp "$(totp "$S2")"
refused TOKEN_IN_USE "a bound token cannot be bound again" \
    cli contract bind C2 --serial T1 --otp "$(totp "$S1" 30)"
check "the refusal line names the contract" \
    contains "$ERR" "shinkin-otp: contract bind C2: refused: "

# The next step's code is inside the window (1 forward).
code=$(totp "$S1" 30)
check "verify a later code" cli verify C1 --otp "$code"
check "verify prints accepted" contains "$OUT" accepted
refused REPLAYED "the same code twice is refused" cli verify C1 --otp "$code"
check "verify prints the reason on stdout" contains "$OUT" "(REPLAYED)"
refused REPLAYED "an older code is refused too" \
    cli verify C1 --otp "$(totp "$S1")"

check "token add sha256/8" \
    cli token add T3 --secret "$S3" --algorithm sha256 --digits 8
check "contract add C3" clin pw-C3 contract add C3
refused NOT_BOUND "verify on a contract with no token" \
    cli verify C3 --otp 12345678
refused NOT_BOUND "unbind a contract with no token" cli contract unbind C3
check "bind the sha256/8 token" cli contract bind C3 --serial T3 \
    --otp "$(totp_alg sha256 8 "$S3")"
check "verify a sha256/8 code" \
    cli verify C3 --otp "$(totp_alg sha256 8 "$S3" 30)"
check "token show has no secret" cli token show T3
check "token show: algorithm" contains "$OUT" "algorithm: sha256"
check "token show: no secret" sh -c "! grep -qi -e secret -e '$S3' '$OUT'"
check "token show --uri" cli token show T3 --uri
check "token show --uri: otpauth" contains "$OUT" "otpauth://totp/"
uri=$(sed -n 's/^uri: //p' "$OUT")
check "token show --png" cli token show T3 --png "$SB/t3.png"
check "the PNG is 0600" test "$(stat -c %a "$SB/t3.png")" = 600
if command -v zbarimg >/dev/null; then
	check "the QR code decodes to the URI" \
	    test "$(zbarimg -q --raw "$SB/t3.png" 2>/dev/null)" = "$uri"
else
	notok "zbarimg is not installed (scripts/deps.sh installs it)"
fi
check_rc 2 "--png never overwrites" cli token show T3 --png "$SB/t3.png"
check "token show --qr draws on the terminal" cli token show T3 --qr
check "... in block characters" grep -q '█' "$OUT"

# Resync: the token's clock runs 2 steps ahead.
S4=$(secret)
check "token add T4" cli token add T4 --secret "$S4"
refused WRONG_CODE "resync refuses codes that are not consecutive" \
    cli token resync T4 "$(totp "$S4" 60)" "$(totp "$S4" 120)"
# Each pair is read in one step and kept: read apart, a step ending
# between its two codes made them not consecutive, and a pair read again
# for "the same" resync was another pair.
fresh_step 5
R1=$(totp "$S4" 60)
R2=$(totp "$S4" 90)
check "resync with two consecutive codes" cli token resync T4 "$R1" "$R2"
check "the drift is stored" \
    sh -c "'$CLI' token show T4 | grep -q '^drift: [23]$'"
refused REPLAYED "the resync codes are spent" cli token resync T4 "$R1" "$R2"
# A disabled token (a lost phone's) is not resynchronised: its codes are
# checked by nobody until it is enabled again, and none is spent.
check "token disable T4" cli token disable T4
fresh_step 5
R1=$(totp "$S4" 150)
R2=$(totp "$S4" 180)
refused TOKEN_DISABLED "resync of a disabled token is refused" \
    cli token resync T4 "$R1" "$R2"
check "token enable T4" cli token enable T4
check "... and its codes were not spent: the same resync now succeeds" \
    cli token resync T4 "$R1" "$R2"

refused STILL_BOUND "close refused while bound" cli contract close C1
check "unbind" cli contract unbind C1
check "close after unbind" cli contract close C1
check "contract show: closed" cli contract show C1
check "contract show: status" contains "$OUT" "status: closed"
check "token list --unassigned" cli token list --unassigned
check "the unbound token is unassigned" grep -q "^T1	" "$OUT"
check "the bound token is not" sh -c "! grep -q '^T3	' '$OUT'"

# unknown_contract = hide: an unknown contract reads as a wrong password
# (or, where no password is asked, as a contract without a token).
refused WRONG_PASSWORD "verify for an unknown contract: as a wrong password" \
    clin some-pw verify NOBODY --context login
refused NOT_BOUND "verify for an unknown contract, code only: as no token" \
    cli verify NOBODY --otp 123456
refused UNKNOWN_SERIAL "token show of an unknown serial" cli token show NOPE
check_rc 2 "an unknown command is a usage error" cli frobnicate
check_rc 2 "an unknown option is a usage error" cli token list --bogus
# An option given twice with a value: which one was meant is a guess.
S9=$(secret)
check_rc 2 "token add --digits 6 --digits 8 is a usage error" \
    cli token add T9 --secret "$S9" --digits 6 --digits 8
check "... naming the option" contains "$ERR" "--digits given twice"
refused UNKNOWN_SERIAL "... and no token is added" cli token show T9
# A number on the command line is read as the policy file reads one
# (sotp_parse_ll): digits only, so a blank or a '+' that strtoll would
# skip is a usage error naming the option, and nothing is stored.
tab=$(printf '\t')
n=0
for bad in "--digits| 8" "--digits|+8" "--period|${tab}30" "--counter|+1" \
    "--counter| 0"; do
	opt=${bad%%|*}
	val=${bad#*|}
	n=$((n + 1))
	check_rc 2 "token add $opt '$val' is a usage error" \
	    cli token add "T9-$n" --secret "$S9" "$opt" "$val"
	check "... saying $opt: '$val' is not a number" \
	    contains "$ERR" "$opt: '$val' is not a number"
	refused UNKNOWN_SERIAL "... and no token is added" cli token show "T9-$n"
done
check_rc 2 "token generate --count ' 1' is a usage error" \
    cli token generate --count " 1"
check "... naming --count" contains "$ERR" "--count: ' 1' is not a number"
check_rc 2 "key rotate --batch +5 is a usage error" cli key rotate --batch +5
check "... naming --batch" contains "$ERR" "--batch: '+5' is not a number"
# Nor a zero-padded number or -0, which could be a typo or meant as
# octal: the refusal says which it is, and nothing is stored.
n=0
for bad in "--digits|08|has a leading zero" "--counter|-0|is minus zero" \
    "--counter|00|has a leading zero" "--period|030|has a leading zero"; do
	opt=${bad%%|*}
	rest=${bad#*|}
	val=${rest%%|*}
	why=${rest#*|}
	n=$((n + 1))
	check_rc 2 "token add $opt $val is a usage error" \
	    cli token add "T9-z$n" --secret "$S9" "$opt" "$val"
	check "... saying $opt: '$val' $why" \
	    contains "$ERR" "$opt: '$val' $why"
	refused UNKNOWN_SERIAL "... and no token is added" \
	    cli token show "T9-z$n"
done
check_rc 2 "token generate --count 01 is a usage error" \
    cli token generate --count 01
check "... naming --count and the leading zero" \
    contains "$ERR" "--count: '01' has a leading zero"
check "token add --counter 0 is still a number" \
    cli token add T9-z0 --secret "$S9" --counter 0
check_rc 2 "audit --since 0978652800 is a usage error" \
    cli audit --since 0978652800
check "... naming --since and the leading zero" \
    contains "$ERR" "--since: '0978652800' has a leading zero"
check_rc 2 "verify --context twice (--context=X too) is a usage error" \
    cli verify C1 --context login --context=transaction --otp 123456
check_rc 2 "--config twice is a usage error" \
    cli --config /nonexistent/other.conf --config="$CONF" token list
check "... naming the option" contains "$ERR" "--config given twice"
check_rc 2 "bind without --otp is a usage error" \
    cli contract bind C2 --serial T2

check "audit lists the decisions" cli audit --contract C1
check "audit has the replay" grep -q "REPLAYED" "$OUT"
# Provisioning: generate draws the QR code and writes a PNG that decodes
# back to the URI (zbarimg stands in for the phone's camera).
check "token generate --qr --png" cli token generate --qr --png "$SB/gen.png"
guri=$(sed -n 's/^[^ ]* \(otpauth:.*\)$/\1/p' "$OUT" | head -n 1)
check "token generate prints serial and URI" test -n "$guri"
check "... and draws the QR code" grep -q '█' "$OUT"
check "the generated PNG decodes to the URI" \
    test "$(zbarimg -q --raw "$SB/gen.png" 2>/dev/null)" = "$guri"
check_rc 2 "--png with --count 2 is a usage error" \
    cli token generate --count 2 --png "$SB/gen2.png"

# Audit export for a SIEM: a time window and JSON lines.
since=$(date -u +%Y-%m-%dT%H:%M:%SZ -d '-1 hour')
check "audit --since ISO --until epoch --json" \
    cli --json audit --since "$since" --until "$(($(date +%s) + 60))"
check "every audit line is a JSON object" \
    sh -c "jq -e -s 'length > 5 and all(.[]; has(\"action\") and has(\"reason\"))' '$OUT' >/dev/null"
check "audit --since a future date is empty" cli audit --since 2099-01-01
check "... (no rows)" test ! -s "$OUT"
check_rc 2 "audit --since nonsense is a usage error" cli audit --since yesterday
# A time is one of the three shapes, and a real moment: strptime and
# timegm alone took 2024-02-30 as March 1, and a time without its Z as
# UTC, which an operator in Japan may have meant as local (9 hours off).
check "audit --since 2024-02-29 (a leap day)" cli audit --since 2024-02-29
for t in 2024-02-30 2023-02-29 2024-04-31 2024-01-01T24:00:00Z \
    2024-12-31T23:59:60Z 2024-01-01T00:00:00 2024-1-1 " 5" +5 \
    "2024-01-01 " 2024-01-01T00:00:00+09:00; do
	check_rc 2 "audit --since '$t' is a usage error" cli audit --since "$t"
	check "... naming the option and the value" \
	    contains "$ERR" "--since: '$t' is not"
done
check_rc 2 "audit prune --before 2024-02-30 is a usage error" \
    cli audit prune --before 2024-02-30
check "... and prunes nothing" sh -c "! grep -q pruned '$OUT'"
# A password line with a NUL byte: C would see only what comes before it,
# so "pa<NUL>ss" would set, or be checked as, the password "pa".
printf 'pa\000ss\n' | "$CLI" contract add CN1 >"$OUT" 2>"$ERR"
check "contract add: a password with a NUL byte is refused (exit 2)" \
    test $? -eq 2
check "... saying why" contains "$ERR" "NUL"
refused UNKNOWN_CONTRACT "... and no contract is made" cli contract show CN1
check "contract add CN2 (password pa)" clin pa contract add CN2
printf 'pa\000ss\n' | "$CLI" verify CN2 --context mobile >"$OUT" 2>"$ERR"
check "verify: 'pa<NUL>ss' is not taken for 'pa' (exit 2)" test $? -eq 2
check "... and nothing printed as accepted" sh -c "! grep -q accepted '$OUT'"
echo "1..$TAPN"

#!/bin/sh
# Event-based (HOTP, RFC 4226) tokens through the admin tool, with
# oathtool --hotp as the independent token: RFC 6030's figures as
# published import and give oathtool's codes; a code is accepted once
# (also when two processes race with it), the look-ahead window takes the
# codes of presses that never reached us and nothing beyond, resync finds
# a token far ahead from two consecutive codes, and a TOTP token beside
# it keeps its behaviour.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err
D=$TOP/tests/data/pskc
RFC=3132333435363738393031323334353637383930
cp "$D/psk.hex" "$SB/psk.hex"
chmod 600 "$SB/psk.hex"
# code HEX COUNTER [DIGITS]
code() { oathtool --hotp -d "${3:-8}" -c "$2" "$1"; }

# -- RFC 6030 figures 3, 5, 6 and 7 as published: one HOTP key each, the
#    same secret; each binds with oathtool's code for counter 0 and takes
#    counter 1 next (a seed is one token's only: the figure before goes
#    first) --
n=0
prev=
for fig in 3 5 6 7; do
	n=$((n + 1))
	[ -z "$prev" ] || forget "RFC-F$prev"
	prev=$fig
	case $fig in
	6) imp() { cli token import "$1" --key-file "$SB/psk.hex"; } ;;
	7) imp() { clin qwerty token import "$1" --passphrase-stdin; } ;;
	*) imp() { cli token import "$1"; } ;;
	esac
	sed "s/987654321/RFC-F$fig/" "$D/rfc6030-figure$fig.pskc" >"$SB/f$fig.pskc"
	check "figure $fig imports" imp "$SB/f$fig.pskc"
	check "figure $fig: one token (a PIN key is not one)" contains "$OUT" "imported 1 token"
	check "figure $fig: token show says hotp, next counter 0" \
	    sh -c '"$1" token show "$2" >"$3" && grep -qx "type: hotp" "$3" && grep -qx "next counter: 0" "$3"' \
	    sh "$CLI" "RFC-F$fig" "$SB/show"
	check "figure $fig: contract" clin "pw-$fig" contract add "F$fig"
	check "figure $fig: binds with oathtool --hotp -c 0" \
	    cli contract bind "F$fig" --serial "RFC-F$fig" --otp "$(code $RFC 0)"
	check "figure $fig: counter 1 is accepted" \
	    cli verify "F$fig" --context transaction --otp "$(code $RFC 1)"
	[ "$fig" != 3 ] && continue
	check "token show --uri: an otpauth://hotp/ URI at the next counter" \
	    cli token show RFC-F3 --uri
	check "the URI counts from 2" contains "$OUT" "&digits=8&counter=2"
done
forget RFC-F7

# -- the window: accept once, replay, look-ahead (10), resync --
S=$(secret)
H=$(printf %s "$S" | base32 -d | od -An -tx1 | tr -d ' \n')
check "token add --counter: an HOTP token at counter 100" \
    cli token add HW-1 --secret "$S" --digits 6 --counter 100
check "contract" clin pw-hw contract add HW
check "binds with the code of counter 100" \
    cli contract bind HW --serial HW-1 --otp "$(code "$H" 100 6)"
refused REPLAYED "the bind's code is spent" \
    cli verify HW --context transaction --otp "$(code "$H" 100 6)"
check "counter 101 is accepted" cli verify HW --context transaction --otp "$(code "$H" 101 6)"
refused REPLAYED "counter 101 again: refused as a replay" \
    cli verify HW --context transaction --otp "$(code "$H" 101 6)"
check "unlock (the replays counted toward the lockout)" cli contract unlock HW
check "counter 111 (10 presses ahead, the look-ahead) is accepted" \
    cli verify HW --context transaction --otp "$(code "$H" 111 6)"
refused WRONG_CODE "counter 110, behind the last accepted, is refused" \
    cli verify HW --context transaction --otp "$(code "$H" 110 6)"
refused WRONG_CODE "counter 123 (12 ahead, past the look-ahead) is refused" \
    cli verify HW --context transaction --otp "$(code "$H" 123 6)"
check "unlock" cli contract unlock HW
refused WRONG_CODE "resync with two codes that are not consecutive" \
    cli token resync HW-1 "$(code "$H" 150 6)" "$(code "$H" 152 6)"
check "resync with counters 180 and 181 (the token ran ahead)" \
    cli token resync HW-1 "$(code "$H" 180 6)" "$(code "$H" 181 6)"
check "token show: next counter 182" sh -c '"$1" token show HW-1 | grep -qx "next counter: 182"' sh "$CLI"
refused REPLAYED "the resync's codes are spent" \
    cli verify HW --context transaction --otp "$(code "$H" 181 6)"
check "unlock" cli contract unlock HW
check "counter 182 is accepted" cli verify HW --context transaction --otp "$(code "$H" 182 6)"
check "audit: the resync names its counter" cli audit --contract HW
check "audit: token.resync counter=181" contains "$OUT" "detail=counter=181"
refused WRONG_CODE "resync beyond hotp_resync_window (100) is refused" \
    cli token resync HW-1 "$(code "$H" 300 6)" "$(code "$H" 301 6)"

# -- two processes, one HOTP code: exactly one accept --
LOCK=$SB/gate
bad=0
c=200
while [ $c -lt 210 ]; do
	c=$((c + 1))
	cli contract unlock HW
	cli token resync HW-1 "$(code "$H" $((c - 2)) 6)" "$(code "$H" $((c - 1)) 6)"
	verifier() { "$CLI" verify HW --context transaction --otp "$(code "$H" $c 6)"; }
	r=$(race2 verifier verifier)
	case "$r" in "0 1" | "1 0") ;; *) bad=$((bad + 1)); echo "# counter $c: exits $r" ;; esac
done
check "10 races on one HOTP code: exactly one accept each ($bad bad)" test "$bad" -eq 0

# -- two counters, one code: with RFC 4226's secret, counters 910737 and
#    910738 both give 911617 (once in a million). Six digits once
#    accepted are refused as a replay, even typed for the new counter, so
#    that no two servers ever both accept one code; the next is taken --
check "token add: the RFC secret at counter 910737" \
    cli token add HX-1 --secret GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --digits 6 \
    --counter 910737
check "oathtool agrees: counters 910737 and 910738 give one code" \
    test "$(code $RFC 910737 6)" = 911617 -a "$(code $RFC 910738 6)" = 911617
check "contract" clin pw-hx contract add HX
check "binds with the code of counter 910737" \
    cli contract bind HX --serial HX-1 --otp 911617
refused REPLAYED "the same six digits, typed for counter 910738: a replay" \
    cli verify HX --context transaction --otp 911617
check "token show: next counter still 910738" \
    sh -c '"$1" token show HX-1 | grep -qx "next counter: 910738"' sh "$CLI"
check "the code of counter 910739 is accepted" \
    cli verify HX --context transaction --otp "$(code $RFC 910739 6)"
check "token show: next counter 910740" \
    sh -c '"$1" token show HX-1 | grep -qx "next counter: 910740"' sh "$CLI"

# -- a TOTP token beside it keeps its behaviour --
T=$(secret)
fresh_step 5
check "a TOTP token binds as before" provision TT-1 "$T" TT
# One code, read once: computed twice, a step ending between the two
# verifies would make the second a new code, accepted.
C=$(totp "$T" 30)
check "and verifies the next step's code" cli verify TT --otp "$C"
refused REPLAYED "and refuses it twice" cli verify TT --otp "$C"
check "token show says totp, period 30" sh -c '"$1" token show TT-1 | grep -qx "period: 30"' sh "$CLI"
check_rc 2 "--period 0 is no way to make an HOTP token" \
    cli token add X-1 --secret "$T" --period 0
check_rc 2 "--period and --counter exclude each other" \
    cli token add X-1 --secret "$T" --period 30 --counter 1
echo "1..$TAPN"

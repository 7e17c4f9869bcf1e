# make demo's script, run as the README's first command runs it: every
# step's outcome is in the transcript, and nothing is left running.
. "$TOP/tests/lib.sh"
# Under SANITIZE=1 radiusd loads a UBSan build of the module (an ASan one
# cannot load there); the CLI is the ASan build.
if readelf -d "$BUILD/rlm_shinkin_otp.so" 2>/dev/null | grep -q libasan; then
	. "$TOP/tests/radius/ubsan.sh"
	ubsan_module || exit 1
fi
OUT="$BUILD/test-logs/demo-transcript.txt"
mkdir -p "$BUILD/test-logs"
# The demo's own choice of port: 18212, or while another program holds
# it one of a few after it. A port made of the pid (20000 to 39999) was
# in the kernel's ephemeral range (32768 on) one time in three, where a
# radclient of a suite running meanwhile may hold it: the demo then
# failed, given that port alone.
sh "$TOP/scripts/demo.sh" "$BUILD" >"$OUT" 2>&1
check "the demo runs to the end" test $? -eq 0
for want in \
    "=> a sandbox under" \
    "otpauth://totp/Shinkin%20Bank:" \
    "=> contract C-1001 exists, with a card" \
    "=> token SO" \
    "=> radiusd is up" \
    "Reply-Message: \"シリアル番号(半角英数字)：\"" \
    "=> password checked; the bank asks for the serial" \
    "Reply-Message: \"ワンタイムパスワード(半角数字)：\"" \
    "=> serial checked; the bank asks for the current code" \
    "Reply-Message: \"ログイン時の追加認証 1:ワンタイムパスワード 2:確認用パスワード 3:なし(半角数字)：\"" \
    "Reply-Message: \"確認用パスワード表の" \
    "=> registered" \
    "=> the gateway asks for the one-time code" \
    "=> logged in" \
    "=> transfer authorised" \
    "=> logged in on the mobile channel, no code asked" \
    "=> the used code is refused" \
    "=> the used challenge State is refused too" \
    "Reply-Message: \"ワンタイムパスワードが正しくありません。\"" \
    "Reply-Message: \"誤った入力が規定の回数を超えたため、ご利用を停止しています。当金庫までお問い合わせください。\"" \
    "=> locked: even the right code is refused" \
    "contract unlocked" \
    "=> the customer is back in" \
    "refused: a token is still bound (STILL_BOUND)" \
    "=> the token is free again and the contract is closed" \
    "register accept ACCEPTED" \
    "unregister accept ACCEPTED" \
    "== demo complete"; do
	check "transcript: $want" grep -qF -- "$want" "$OUT"
done
check "the transcript shows no password" sh -c "! grep -q 'correct horse' '$OUT'"
FRPID=$(sed -n 's/^=> radiusd is up on [0-9.:]* (pid \([0-9]*\)).*/\1/p' "$OUT")
check "the transcript names radiusd's pid" test -n "$FRPID"
check "no radiusd is left running" sh -c "! kill -0 ${FRPID:-0} 2>/dev/null"

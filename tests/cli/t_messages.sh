#!/bin/sh
# The customer's texts: `shinkin-otp messages` prints the effective
# catalog, which for the shipped (Japanese) policy is the copy in
# shinkin-otp.conf(5); language = en switches catalogs; [messages]
# overrides one text; bad overrides stop every front end with file:line.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
mk_sandbox
OUT=$SB/out
ERR=$SB/err

# The man page block after '.\" catalog LANG', up to its '.Ed'.
man_catalog() {
	awk -v m=".\\\\\" catalog $1" '
	$0 == m { on = 1; next }
	on && /^\.Bd/ { next }
	on && /^\.Ed/ { exit }
	on { print }' "$TOP/man/shinkin-otp.conf.5"
}

check "messages: the shipped policy's catalog" cli messages
check "messages: 34 texts" test "$(wc -l <"$OUT")" -eq 34
man_catalog ja >"$SB/man-ja"
check "messages: equal to the Japanese catalog in shinkin-otp.conf(5)" \
    cmp -s "$OUT" "$SB/man-ja"
check "messages: WRONG_CODE in the guide's words" \
    grep -qx 'WRONG_CODE = "ワンタイムパスワードが正しくありません。"' "$OUT"

sed 's/^language = ja$/language = en/' "$CONF" >"$SB/en.conf"
check "messages: language = en" cli --config "$SB/en.conf" messages
man_catalog en >"$SB/man-en"
check "messages: equal to the English catalog in shinkin-otp.conf(5)" \
    cmp -s "$OUT" "$SB/man-en"

# An override, quoted to keep its trailing blank, and in the dump.
cp "$CONF" "$SB/ov.conf"
printf 'PROMPT_OTP = "ワンタイムパスワード(半角数字6桁)："\nLOCKED = "Locked: call 0120-000-000. "\n' >>"$SB/ov.conf"
check "messages: with two overrides" cli --config "$SB/ov.conf" messages
check "the override replaces the prompt" \
    grep -qx 'PROMPT_OTP = "ワンタイムパスワード(半角数字6桁)："' "$OUT"
check "a quoted override keeps its trailing blank" \
    grep -qx 'LOCKED = "Locked: call 0120-000-000. "' "$OUT"
check "the others keep the catalog's text" \
    grep -qx 'WRONG_CODE = "ワンタイムパスワードが正しくありません。"' "$OUT"
check "check-config shows the language and the overrides" \
    cli --config "$SB/ov.conf" check-config
check "check-config: language" grep -qx 'language = ja' "$OUT"
check "check-config: the override" \
    grep -qx 'LOCKED = "Locked: call 0120-000-000. "' "$OUT"

# The override in a decision: the customer reads it.
S=$(secret)
fresh_step 5
check "provision" provision T1 "$S" C1
printf 'WRONG_CODE = コードが違います。\n' >>"$SB/ov.conf"
refused WRONG_CODE "a wrong code" \
    cli --config "$SB/ov.conf" verify C1 --otp "$(wrong_code "$S")"
check "the refusal carries the overridden text" \
    grep -qx 'message: コードが違います。' "$OUT"

# Bad overrides: refused with file:line, by check-config and verify alike.
cp "$CONF" "$SB/bad.conf"
n=$(($(wc -l <"$SB/bad.conf") + 1))
printf 'WRONG_CODE = %s\n' "$(printf '%090d' 0 | sed 's/0/あ/g')" >>"$SB/bad.conf"
check_rc 2 "check-config refuses a 270-octet message" \
    cli --config "$SB/bad.conf" check-config
check "  naming file:line and the limit" contains "$ERR" \
    "$SB/bad.conf:$n: WRONG_CODE: 270 octets; one RADIUS Reply-Message holds 253"
check_rc 2 "verify refuses to run on it too" \
    cli --config "$SB/bad.conf" verify C1 --otp 123456
cp "$CONF" "$SB/bad2.conf"
printf 'WRONG_CODE = \203\217\203\223\n' >>"$SB/bad2.conf"
check_rc 2 "check-config refuses a Shift_JIS message" \
    cli --config "$SB/bad2.conf" check-config
check "  naming file:line" contains "$ERR" "$SB/bad2.conf:$n: not valid UTF-8"
cp "$CONF" "$SB/bad3.conf"
printf 'PROMPT_CARD = 確認用パスワード：\n' >>"$SB/bad3.conf"
check_rc 2 "check-config refuses a card prompt without its cells" \
    cli --config "$SB/bad3.conf" check-config
check "  naming file:line" contains "$ERR" \
    "$SB/bad3.conf:$n: [messages] PROMPT_CARD must hold %{cells}"
# A comment after a full-width blank (U+3000), or after a closing quote,
# is refused too: it would otherwise end up in the text.
cp "$CONF" "$SB/bad4.conf"
printf 'LOCKED = ロックされています。\343\200\200# 窓口用\n' >>"$SB/bad4.conf"
check_rc 2 "check-config refuses a comment after a full-width blank" \
    cli --config "$SB/bad4.conf" check-config
check "  naming file:line and the key" contains "$ERR" \
    "$SB/bad4.conf:$n: LOCKED: '# 窓口用' after the text reads as a comment"
cp "$CONF" "$SB/bad5.conf"
printf 'LOCKED = "Locked." # note "b"\n' >>"$SB/bad5.conf"
check_rc 2 "check-config refuses a comment after a closing quote" \
    cli --config "$SB/bad5.conf" check-config
check "  naming file:line and the key" contains "$ERR" \
    "$SB/bad5.conf:$n: LOCKED: '# note \"b\"' after a closing quote reads as a comment"
echo "1..$TAPN"

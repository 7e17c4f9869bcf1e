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

# refused REASON what ARGS...: exit 1 and exactly one stderr line that
# names the reason, e.g. "... refused: ... (TOKEN_IN_USE)".
refused() {
	_r=$1
	_d=$2
	shift 2
	"$@"
	_got=$?
	if [ "$_got" -eq 1 ] && [ "$(wc -l <"$ERR")" -eq 1 ] &&
	    grep -q "^shinkin-otp: .*: refused: .* ($_r)\$" "$ERR"; then
		ok "$_d"
	else
		notok "$_d (exit $_got, want 1 and $_r)"
		sed 's/^/#   /' "$ERR"
	fi
}

# A random base32 secret of 20 bytes (160 bits).
secret() { head -c 20 /dev/urandom | base32; }

# A 6-digit code that no step within +-3 of now produces for SECRET.
wrong_code() {
	_codes=$(for _o in -90 -60 -30 0 30 60 90; do totp "$1" "$_o"; done)
	for _c in 000000 111111 222222 333333 444444 555555; do
		echo "$_codes" | grep -qx "$_c" || { echo "$_c"; return 0; }
	done
}

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
	oathtool --totp="$1" -d "$2" -b --now "@$(($(date +%s) + ${4:-0}))" "$3"
}

#!/bin/sh
# The help desk without the master key (issue 12): an operator who may
# write the store but cannot read the key shows, lists, unlocks, disables
# and enables tokens and unbinds a lost phone; what needs the key (token
# export, add, cards, bindings, verify, audit verify) is refused with a
# reason that names the key. The operator's audit rows wait unchained
# until the next holder of the key chains them, and the chain verifies.
# The lost-phone procedure of the README runs end to end.
#
# The operator is `nobody` (setpriv), so the suite runs as root, as
# make check does here; the key stays root's, mode 0600.
. "$TOP/tests/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"
if [ "$(id -u)" -ne 0 ]; then
	notok "the help-desk suite switches to nobody: it must run as root"
	echo "1..$TAPN"
	exit 1
fi
mk_sandbox
OUT=$SB/out
ERR=$SB/err
KEY=$(conf_path master_key)

# The store in a directory of its own that the operator owns (SQLite
# writes its WAL beside the file); policy readable, key not.
mkdir "$SB/data"
sed "s|^store = .*|store = sqlite:$SB/data/shinkin-otp.db|" "$CONF" \
    >"$SB/hd.conf"
mv "$SB/hd.conf" "$CONF"
cli init
chown -R nobody "$SB/data"
chmod 0711 "$SB"
chmod 0644 "$CONF"
DB=$SB/data/shinkin-otp.db

# hd ARGS...: the tool as the operator (nobody), output in $OUT/$ERR.
hd() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
	    "$CLI" "$@" >"$OUT" 2>"$ERR" </dev/null
}
# needs_key "what" ARGS...: refused as the operator, for the key.
needs_key() {
	_d=$1
	shift
	hd "$@"
	_rc=$?
	if [ $_rc -eq 2 ] && grep -q "master.key" "$ERR"; then
		ok "$_d"
	else
		notok "$_d (exit $_rc: $(tr '\n' '|' <"$ERR"))"
	fi
}

S1=$(secret)
S2=$(secret)
fresh_step 8
check "setup (root, with the key): C1 bound to T1" provision T1 "$S1" C1
check "setup: L1, locked by five wrong passwords" clin pw contract add L1
for i in 1 2 3 4 5; do clin wrong verify L1 --context mobile; done
check "setup: X1, closed" sh -c "printf 'pw\n' | '$CLI' contract add X1 >/dev/null && '$CLI' contract close X1 >/dev/null"
check "the operator cannot read the master key" \
    sh -c "! setpriv --reuid=nobody --regid=nogroup --clear-groups cat '$KEY' 2>/dev/null"

# -- what the help desk does, without the key --
check "contract show" hd contract show C1
check "  shows the bound token" contains "$OUT" "token: T1"
check "contract list" hd contract list
check "  lists every contract" \
    [ "$(cut -f1 "$OUT" | xargs)" = "C1 L1 X1" ]
check "contract list --locked" hd contract list --locked
check "  lists the locked one alone" [ "$(cut -f1 "$OUT" | xargs)" = L1 ]
check "  until an admin unlocks it" contains "$OUT" "until an admin unlocks"
check "contract list --status closed" hd contract list --status closed
check "  lists the closed one alone" [ "$(cut -f1 "$OUT" | xargs)" = X1 ]
check "contract list --status active --json" \
    hd --json contract list --status active
check "  one JSON object a line" \
    sh -c "[ \$(jq -r .id '$OUT' | xargs | tr ' ' ,) = C1,L1 ] && jq -e 'select(.id == \"L1\") | .locked_until == -1' '$OUT' >/dev/null"
check_rc 2 "contract list --status nosuch is a usage error" \
    hd contract list --status nosuch
check "contract unlock" hd contract unlock L1
check "  and nothing is locked now" hd contract list --locked
check "  (empty)" [ ! -s "$OUT" ]
check "token show (no secret)" hd token show T1
check "  shows the binding" contains "$OUT" "contract: C1"
check "token list" hd token list
check "audit trail" hd audit --contract L1
check "  shows the unlock" contains "$OUT" "contract.unlock accept"

# -- what needs the key is refused, naming it --
needs_key "token show --uri needs the key" token show T1 --uri
needs_key "token add needs the key" token add T9 --secret "$S2"
needs_key "contract card needs the key" contract card C1
needs_key "contract bind needs the key" contract bind L1 --serial T1 --otp 123456
needs_key "verify needs the key" verify C1 --otp 123456
needs_key "audit verify needs the key" audit verify
check "none of them left a secret on stdout" [ ! -s "$OUT" ]

# -- the lost phone: disable, unbind, register the new one --
check "lost phone 1: the operator disables the token" hd token disable T1
check "  (audited)" sh -c "'$CLI' audit --contract C1 | grep -q 'token.disable accept ACCEPTED.*serial=T1'"
refused TOKEN_DISABLED "  its codes are refused at once" \
    cli verify C1 --otp "$(totp "$S1")"
check "lost phone 2: the operator unbinds it" hd contract unbind C1
check "  C1 has no token" sh -c "'$CLI' contract show C1 | grep -qx 'token: -'"
refused TOKEN_DISABLED "  and the old token cannot be bound again" \
    cli contract bind C1 --serial T1 --otp "$(totp "$S1" 30)"
check "lost phone 3: a new token for the new phone (with the key)" \
    cli token add T2 --secret "$S2"
check "  registered to C1 with its current code" \
    cli contract bind C1 --serial T2 --otp "$(totp "$S2")"
check "  and C1 logs in with it" \
    clin pw-C1 verify C1 --context login --otp "$(totp "$S2" 30)"
check "token enable (a found phone)" hd token enable T1
check "  T1 is active and free again" \
    sh -c "'$CLI' token show T1 | grep -qx 'state: active' && '$CLI' token show T1 | grep -qx 'contract: -'"

# -- the operator's rows in the chain --
keyless() { sqlite3 "$DB" "SELECT count(*) FROM audit WHERE keyed = 0 ${1:-}"; }
check "the operator's rows were written without the key (4)" \
    [ "$(keyless)" = 4 ]
check "those before a key holder's append are chained (3)" \
    [ "$(keyless 'AND seq IS NOT NULL')" = 3 ]
check "audit verify reports the one still waiting" cli audit verify
check "  as waiting" \
    contains "$OUT" "1 rows written without the master key wait to be chained"
first=$(sqlite3 "$DB" "SELECT min(id) FROM audit WHERE keyed = 0 AND seq IS NOT NULL")
check "  and the three chained since, as written without the key" \
    contains "$OUT" "3 rows were written without the master key and chained later (the first: row $first)"
check "audit marks them: three linked" \
    sh -c "[ \"\$('$CLI' audit | grep -c ' nokey=linked\$')\" = 3 ]"
check "  one waiting" \
    sh -c "[ \"\$('$CLI' audit | grep -c ' nokey=waiting\$')\" = 1 ]"
check "  the rest unmarked" \
    sh -c "[ \"\$('$CLI' audit | grep -c nokey=)\" = 4 ]"
check "audit --json gives each row's place and whether keyed" \
    sh -c "'$CLI' --json audit | grep -q '\"seq\":0,\"keyed\":0}'"
check "the next append of a key holder chains it" \
    sh -c "printf 'pw\n' | '$CLI' contract add Z1 >/dev/null && '$CLI' audit verify >'$OUT'"
check "  and the chain verifies with the operator's rows in it" \
    sh -c "grep -q '^chain verified' '$OUT' && ! grep -q 'wait to be chained' '$OUT'"
check "  none waiting" [ "$(keyless 'AND seq IS NULL')" = 0 ]

# -- a row put in by hand in a waiting row's shape --
# Nothing tells it from the operator's (who holds no key either): the
# next key holder's append links it as designed. Verify and audit show it
# for what it is, a row written without the key, to be checked against
# the help desk's log lines.
sqlite3 "$DB" "INSERT INTO audit (ts, action, contract, serial, context,
    verdict, reason, detail, keyed, chain) VALUES (strftime('%s', 'now'),
    'contract.unlock', 'C1', '', '', 'accept', 0, 'by-hand', 0, 1);
    UPDATE audit_head SET pending = pending + 1 WHERE k = 1"
check "a row put in as waiting is linked by the next append" \
    sh -c "printf 'pw\n' | '$CLI' contract add Z2 >/dev/null"
check "  verify counts it with the operator's" cli audit verify
check "  five chained without the key" \
    contains "$OUT" "5 rows were written without the master key and chained later"
check "  audit marks it linked without the key" \
    sh -c "'$CLI' audit --contract C1 | grep -q 'contract.unlock accept ACCEPTED.*detail=by-hand nokey=linked\$'"

echo "1..$TAPN"

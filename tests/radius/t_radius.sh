#!/bin/sh
# rlm_shinkin_otp inside a real radiusd: a private single-file config on
# 127.0.0.1, driven by radclient; codes from oathtool. Run by tests/run.sh
# (BUILD, TOP set). RLM_SO selects another build of the module (the UBSan
# suite sets it).
. "$TOP/tests/lib.sh"
. "$TOP/tests/radius/lib.sh"

RLM_SO=${RLM_SO:-$BUILD/rlm_shinkin_otp.so}
for b in freeradius radclient oathtool; do
	command -v "$b" >/dev/null ||
		{ notok "$b installed (sh scripts/deps.sh)"; exit 1; }
done
[ -f "$RLM_SO" ] || { notok "module built: $RLM_SO"; exit 1; }
# An ASan module cannot load in Debian's radiusd (RTLD_DEEPBIND, see
# ../shared/notes section 1): under SANITIZE=1 the suite runs on a UBSan
# build of the module instead.
if readelf -d "$RLM_SO" 2>/dev/null | grep -q 'libasan'; then
	. "$TOP/tests/radius/ubsan.sh"
	ubsan_module || exit 1
fi

mk_sandbox
T=$(mktemp -d "${TMPDIR:-/tmp}/sotp-radius.XXXXXX")
trap 'fr_stop_all; [ -n "${KEEP:-}" ] || rm -rf "$T" "$SB"' EXIT
trap 'exit 1' INT TERM HUP

# A second policy on the same store and key whose challenge states live
# 2 s, for the expiry case, and whose [messages] reword the code prompt;
# a third in English. The sandbox policy is the shipped one: Japanese.
sed 's/^lifetime = .*/lifetime = 2/' "$CONF" >"$SB/short.conf"
printf 'PROMPT_OTP = "Code from your token: "\n' >>"$SB/short.conf"
grep -q '^lifetime = 2$' "$SB/short.conf" ||
	{ notok "short-lived state policy"; exit 1; }
sed 's/^language = ja$/language = en/' "$CONF" >"$SB/en.conf"
# A policy that tells unknown contracts (the module then claims only
# contracts and leaves other names to the modules after it).
sed 's/^unknown_contract = hide$/unknown_contract = reveal/' "$CONF" \
    >"$SB/reveal.conf"
grep -q '^unknown_contract = reveal$' "$SB/reveal.conf" ||
	{ notok "a policy with unknown_contract = reveal"; exit 1; }
grep -q '^language = en$' "$SB/en.conf" ||
	{ notok "an English policy"; exit 1; }
# A policy whose [services] map names this suite's client entry ("local",
# its shortname), for context_attribute = Client-Shortname.
sed 's/^\[services\]$/[services]\nlocal = login/' "$CONF" >"$SB/cs.conf"
grep -q '^local = login$' "$SB/cs.conf" ||
	{ notok "a policy mapping the client local"; exit 1; }

# mk_contract ID PASSWORD LOGIN: a token tok-ID with a fresh secret bound
# with the previous step's code (so the current code is still unused).
# That code is two steps old if a step ends between oathtool and the
# bind (window_back is 1): fresh_step keeps the two in one step.
mk_contract() {
	_s=$(random_secret)
	echo "$_s" >"$T/sec.$1"
	"$CLI" token add "tok-$1" --secret "$_s" >/dev/null &&
	    printf '%s\n' "$2" | "$CLI" contract add "$1" >/dev/null &&
	    fresh_step 2 &&
	    "$CLI" contract bind "$1" --serial "tok-$1" \
		--otp "$(totp "$_s" -30)" --login-otp "$3" >/dev/null
}
code() { totp "$(cat "$T/sec.$1")" "${2:-0}"; }
# A six-digit code no step of the window produces (lib.sh's wrong_code;
# the current code plus 500000 was another step's code in the window once
# in 500,000 uses).
wrong() { wrong_code "$(cat "$T/sec.$1")"; }

fresh_step 1
setup_ok=1
for c in alice bob carol dave erin frank grace heidi ivan judy kate mallory; do
	mk_contract "$c" "pw-$c" yes || setup_ok=0
done
# Registration: regc has a card and no token; RT1 waits unbound.
RS=$(random_secret)
echo "$RS" >"$T/sec.RT1"
"$CLI" token add RT1 --secret "$RS" >/dev/null &&
    printf 'pw-regc\n' | "$CLI" contract add regc >/dev/null &&
    "$CLI" contract card regc >"$T/grid-regc" || setup_ok=0
NRACE=32
i=1
while [ $i -le $NRACE ]; do
	mk_contract "r$i" "pw-r$i" yes || setup_ok=0
	i=$((i + 1))
done
# The enumeration case: contracts with a password and no token.
for r in 1 2; do
	for i in 0 1 2 3 4 5 6 7 8 9; do
		printf 'pw\n' | "$CLI" contract add "enum$r-$i" >/dev/null ||
			setup_ok=0
	done
done
[ $setup_ok -eq 1 ] && ok "sandbox: $((NRACE + 12)) contracts with tokens, one to register" ||
	{ notok "sandbox setup"; exit 1; }

# ---- the private radiusd ----
PORT=$(free_port)
fr_setup "$T/raddb"
# The login instance is the shipped sample, pointed at the sandbox.
sed "s|/etc/shinkin-otp/shinkin-otp.conf|$CONF|" \
    "$TOP/conf/freeradius/mods-available/shinkin_otp" >"$T/mod-sample"
MODULES="\$INCLUDE $T/mod-sample
shinkin_otp append {
	config = $CONF
	context = login
	mode = append
}
shinkin_otp append_tx {
	config = $CONF
	context = transaction
	mode = append
}
shinkin_otp en {
	config = $SB/en.conf
	context = login
}
shinkin_otp nas {
	config = $CONF
	context_attribute = NAS-Identifier
}
shinkin_otp mobile {
	config = $CONF
	context = mobile
}
shinkin_otp cs {
	config = $SB/cs.conf
	context_attribute = Client-Shortname
}
shinkin_otp short {
	config = $SB/short.conf
	context = login
}
shinkin_otp reveal {
	config = $SB/reveal.conf
	context = mobile
}
files {
	filename = $T/users
}
pap {
}"
# Called-Station-Id picks the instance, so one port serves every case.
SERVERS="server shinkin-test {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
		recv_buff = 4194304
	}
	authorize {
		# as conf/freeradius/sites-available/shinkin-otp
		Autz-Type Status-Server {
			shinkin_otp
		}
		switch \"%{Called-Station-Id}\" {
			case \"append\" {
				append
			}
			case \"append_tx\" {
				append_tx
			}
			case \"en\" {
				en
			}
			case \"nas\" {
				nas
			}
			case \"mobile\" {
				mobile
			}
			case \"cs\" {
				cs
			}
			case \"short\" {
				short
			}
			case \"reveal\" {
				reveal
			}
			case \"site\" {
				# as conf/freeradius/sites-available/shinkin-otp
				update reply {
					&Message-Authenticator := 0x00
				}
				files
				pap
				shinkin_otp
			}
			case {
				shinkin_otp
			}
		}
	}
	authenticate {
		Auth-Type shinkin_otp {
			shinkin_otp
		}
		Auth-Type append {
			append
		}
		Auth-Type append_tx {
			append_tx
		}
		Auth-Type en {
			en
		}
		Auth-Type nas {
			nas
		}
		Auth-Type mobile {
			mobile
		}
		Auth-Type cs {
			cs
		}
		Auth-Type short {
			short
		}
		Auth-Type reveal {
			reveal
		}
		Auth-Type PAP {
			pap
		}
	}
}"
# A name another module answers in the same site (the sample site's
# files + pap, before shinkin_otp).
printf 'staff1\tCleartext-Password := "staff-pw"\n' >"$T/users"
FR_STATUS_SERVER=yes
fr_write_conf "$MODULES" "$SERVERS"
check "radiusd -C accepts the config" freeradius -C -d "$FR_DIR"
fr_start X || { notok "radiusd -X starts"; exit 1; }
ok "radiusd -X starts with eight module instances, files and pap"

# What the customer reads: the shipped policy's Japanese catalog.
OTP_PROMPT="ワンタイムパスワード(半角数字)："
M_WRONG="ワンタイムパスワードが正しくありません。"
M_REPLAY="このワンタイムパスワードは使用済みです。次のワンタイムパスワードが表示されてから入力してください。"
M_PW="契約者IDまたはログインパスワードが正しくありません。"
M_INVALID="このお手続きは無効です。最初からやり直してください。"
M_EXPIRED="お手続きの有効時間が過ぎました。最初からやり直してください。"
M_USED="このお手続きはすでに使用されています。最初からやり直してください。"
M_LOCKED="誤った入力が規定の回数を超えたため、ご利用を停止しています。当金庫までお問い合わせください。"
M_BAD="入力の形式が正しくありません。桁数をご確認のうえ、最初からやり直してください。"
M_AMBIG="ログインパスワードに続けて、ワンタイムパスワード(半角数字)を入力してください。"
M_CTX="このサービスはご利用いただけません。"

fresh_step 8

# Challenge flow: password -> Access-Challenge -> code with State -> Accept.
exchange a1 "$(req alice pw-alice)" "$(f_challenge "$OTP_PROMPT")" \
    "login: password gets an Access-Challenge with State, prompt, No-Echo"
S=$(state_of a1)
C=$(code alice)
exchange a2 "$(req alice "$C" "State = $S")" "$(f_accept)" \
    "login: the code with that State is accepted"
# The same code again, in a new attempt.
exchange a3 "$(req alice pw-alice)" "$(f_challenge "$OTP_PROMPT")" \
    "login again: challenged"
exchange a4 "$(req alice "$C" "State = $(state_of a3)")" \
    "$(f_reject "$M_REPLAY")" "the same code twice is rejected"

# Wrong code; wrong password; unknown contract.
exchange b1 "$(req bob pw-bob)" "$(f_challenge "$OTP_PROMPT")" "bob: challenged"
exchange b2 "$(req bob "$(wrong bob)" "State = $(state_of b1)")" \
    "$(f_reject "$M_WRONG")" "a wrong code is rejected with its Japanese Reply-Message"
exchange b3 "$(req bob not-his)" "$(f_reject "$M_PW")" \
    "a wrong password is rejected at once"
exchange n1 "$(req nobody whatever)" "$(f_reject "$M_PW")" \
    "an unknown contract is rejected as a wrong password is"
# A User-Name no contract can have (control bytes, a byte that is not
# UTF-8, which a PostgreSQL text parameter refuses; 250 octets): the same
# reply, never a store error's bare refusal.
exchange n1b "$(req "x\\001\\033[31m\\377y" whatever)" "$(f_reject "$M_PW")" \
    "a User-Name with control bytes and invalid UTF-8: rejected as unknown"
exchange n1c "$(req "$(printf '%0250d' 7)" whatever)" "$(f_reject "$M_PW")" \
    "a User-Name of 250 octets: rejected as unknown"

# Issue 12, defect 2: an unknown contract reads and costs what a wrong
# password does. Ten of each in one radclient run, twice, interleaved:
# every reply the same Access-Reject and Reply-Message, and radiusd's CPU
# time for each ten within a factor of 2 (before the fix an unknown name
# never reached the engine: no hash, no Reply-Message, 0.13 ms).
batch() { # NAME PREFIX: ten requests, PREFIX0..9 with a wrong password
	: >"$T/$1.req"
	for _i in 0 1 2 3 4 5 6 7 8 9; do
		printf '%s\n\n' "$(req "$2$_i" not-it)" >>"$T/$1.req"
	done
	radclient -x -t "$RADCLIENT_T" -r 1 -p 1 -f "$T/$1.req" \
	    "127.0.0.1:$PORT" auth "$SECRET" >"$T/$1.out" 2>"$T/$1.err"
}
cpu_of() { awk '{ print $14 + $15 }' "/proc/$FR_PID/stat"; }
same=1 cpu_k=0 cpu_u=0
for r in 1 2; do
	for kind in known unknown; do
		[ $kind = known ] && pre=enum || pre=nobody
		c0=$(cpu_of)
		batch "enum-$kind-$r" "$pre$r-"
		c1=$(cpu_of)
		if [ $kind = known ]; then
			cpu_k=$((cpu_k + c1 - c0))
		else
			cpu_u=$((cpu_u + c1 - c0))
		fi
		[ "$(grep -c '^Received Access-Reject' "$T/enum-$kind-$r.out")" = 10 ] &&
		    [ "$(grep -c "Reply-Message = \"$M_PW\"" "$T/enum-$kind-$r.out")" = 10 ] ||
			same=0
	done
done
echo "# radiusd cpu: 20 wrong passwords ${cpu_k} ticks, 20 unknown contracts ${cpu_u} ticks"
check "unknown contracts and wrong passwords: the same 20 replies each" [ $same -eq 1 ]
within2() { [ "$1" -gt 0 ] && [ "$2" -gt 0 ] && [ $(($1 * 2)) -ge "$2" ] &&
	[ $(($2 * 2)) -ge "$1" ]; }
check "unknown contracts cost radiusd what wrong passwords do (CPU within 2x)" \
    within2 "$cpu_k" "$cpu_u"
# Another module in the same site still answers the names it knows.
exchange n2 "$(req staff1 staff-pw "Called-Station-Id = site")" "$(f_accept)" \
    "the site's files + pap accept their own user before shinkin_otp"
exchange n3 "$(req staff1 wrong "Called-Station-Id = site")" "$(f_reject)" \
    "  and refuse its wrong password (pap)"
exchange n4 "$(req alice pw-alice "Called-Station-Id = site")" \
    "$(f_challenge "$OTP_PROMPT")" "  while a contract in that site is challenged"
exchange n5 "$(req nobody whatever "Called-Station-Id = site")" \
    "$(f_reject "$M_PW")" "  and a name neither knows is refused as a wrong password"

# State tokens: another contract's, altered, expired, reused.
exchange c1 "$(req carol pw-carol)" "$(f_challenge "$OTP_PROMPT")" \
    "carol: challenged"
exchange d1 "$(req dave "$(code dave)" "State = $(state_of c1)")" \
    "$(f_reject "$M_INVALID")" "a State from another contract is rejected"
exchange e1 "$(req erin pw-erin)" "$(f_challenge "$OTP_PROMPT")" \
    "erin: challenged"
S=$(state_of e1)
# Flip one hex digit in the middle of the token.
ALT=$(echo "$S" | awk '{ i = int(length($0) / 2); c = substr($0, i, 1);
	printf "%s%s%s", substr($0, 1, i - 1), (c == "4" ? "5" : "4"), substr($0, i + 1) }')
exchange e2 "$(req erin "$(code erin)" "State = $ALT")" \
    "$(f_reject "$M_INVALID")" "an altered State is rejected"
# A State issued before the bank changes the password is refused as a
# bad State, the code right (whoever knew the old password finished the
# login with it). e1's is unspent: the altered one was not taken.
check "contract passwd erin (the bank changes the password)" \
    sh -c "printf 'pw-erin-2\\n' | '$CLI' contract passwd erin >/dev/null"
exchange e3 "$(req erin "$(code erin)" "State = $S")" \
    "$(f_reject "$M_INVALID")" "  a State from before the change is rejected"
exchange e4 "$(req erin pw-erin-2)" "$(f_challenge "$OTP_PROMPT")" \
    "  the new password is challenged"
exchange e5 "$(req erin "$(code erin)" "State = $(state_of e4)")" \
    "$(f_accept)" "  and its State with the code accepted"
exchange f1 "$(req frank pw-frank "Called-Station-Id = short")" \
    "$(f_challenge "Code from your token: ")" \
    "a [messages] override in the policy replaces the prompt"
sleep 3
exchange f2 "$(req frank "$(code frank)" "State = $(state_of f1)" \
    "Called-Station-Id = short")" "$(f_reject "$M_EXPIRED")" \
    "an expired State is rejected (state lifetime 2 s)"
exchange g1 "$(req grace pw-grace)" "$(f_challenge "$OTP_PROMPT")" \
    "grace: challenged"
S=$(state_of g1)
exchange g2 "$(req grace "$(code grace)" "State = $S")" "$(f_accept)" \
    "grace: accepted"
exchange g3 "$(req grace "$(code grace 30)" "State = $S")" \
    "$(f_reject "$M_USED")" "a State used once is rejected when replayed"

# Append mode: password and code in one User-Password.
exchange h1 "$(req heidi "pw-heidi$(wrong heidi)" "Called-Station-Id = append")" \
    "$(f_reject "$M_WRONG")" "append mode: a wrong code is rejected"
exchange h2 "$(req heidi "pw-heidi$(code heidi)" "Called-Station-Id = append")" \
    "$(f_accept)" "append mode: password+code accepted in one round trip"
exchange h3 "$(req heidi "$(code heidi 30)" "Called-Station-Id = append")" \
    "$(f_reject "$M_AMBIG")" \
    "append mode: a code alone where the password comes first is refused, not guessed"
# In a code-only context the code alone decides (it once got a challenge).
# One code, read once: computed twice, a step ending between k1 and k2
# made k2's a new code, accepted.
K=$(code kate)
exchange k1 "$(req kate "$K" "Called-Station-Id = append_tx")" \
    "$(f_accept)" "append mode, transaction: a bare 6-digit code is accepted"
exchange k2 "$(req kate "$K" "Called-Station-Id = append_tx")" \
    "$(f_reject "$M_REPLAY")" "append mode, transaction: the same code again is refused"
exchange k3 "$(req kate "12a456" "Called-Station-Id = append_tx")" \
    "$(f_reject "$M_BAD")" "append mode, transaction: a malformed code is refused as such"

# The same module in English, by the policy's language alone.
exchange en1 "$(req bob pw-bob "Called-Station-Id = en")" \
    "$(f_challenge "One-time password: ")" "language = en: the English prompt"
exchange en2 "$(req bob "$(wrong bob)" "State = $(state_of en1)" \
    "Called-Station-Id = en")" \
    "$(f_reject "The one-time password is not correct.")" \
    "language = en: the English Reply-Message on a wrong code"

# Mobile context: password only, even with a token.
exchange i1 "$(req ivan pw-ivan "Called-Station-Id = mobile")" "$(f_accept)" \
    "mobile context: password alone is accepted, no challenge"

# Transaction context chosen by NAS-Identifier through [services].
exchange j1 "$(req judy "$(code judy)" "Called-Station-Id = nas" \
    "NAS-Identifier = ib-transfer")" "$(f_accept)" \
    "NAS-Identifier ib-transfer -> transaction: the code alone is accepted"
exchange j2 "$(req judy pw-judy "Called-Station-Id = nas" \
    "NAS-Identifier = ib-mobile")" "$(f_accept)" \
    "NAS-Identifier ib-mobile -> mobile: the password alone is accepted"
# With context_attribute = Client-Shortname the client entry the request
# came through names the service, not the NAS: a NAS that says ib-mobile
# (the password alone, just above) still gets its entry's context, login
# here, which asks for the code.
rad cs1 "$(req judy pw-judy "Called-Station-Id = cs" \
    "NAS-Identifier = ib-mobile")"
check "Client-Shortname: a NAS saying ib-mobile gets its entry's context" \
    test "$(reply_of cs1)" = Access-Challenge
check "  logged as the client's context" grep -q \
    'Client-Shortname "local" -> context login' "$FR_DIR/log/X.log"
# A NAS-Identifier the [services] map does not name: refused by the core
# as a decision (UNKNOWN_CONTEXT), as an unknown context is: the customer
# told, an audit row naming the value, radiusd's log line for the
# operator. It used to be refused by the module alone (invalid): the log
# line, a bare Access-Reject, no row.
# unmapped NAME WHO VALUE: the audit row of WHO's refusal names VALUE
unmapped() {
	"$CLI" audit --contract "$2" >"$T/$1.audit" 2>&1
	grep -qF "reject UNKNOWN_CONTEXT contract=$2 " "$T/$1.audit" &&
	    grep -qF "service=$3 has no context in [services]" "$T/$1.audit"
}
exchange j3 "$(req judy pw-judy "Called-Station-Id = nas" \
    "NAS-Identifier = no-such-service")" "$(f_reject "$M_CTX")" \
    "an unmapped NAS-Identifier is rejected, the customer told"
check "  with an audit row naming the NAS-Identifier" \
    unmapped j3 judy no-such-service
check "  and radiusd's log line naming it" \
    grep -q 'NAS-Identifier "no-such-service" is not in the policy' \
    "$FR_DIR/log/X.log"
# A value from outside: a quote and a long tail do not break the line.
exchange j4 "$(req judy pw-judy "Called-Station-Id = nas" \
    "NAS-Identifier = \"q\\\"$(printf '%0100d' 0)\"")" \
    "$(f_reject "$M_CTX")" "an odd unmapped NAS-Identifier is rejected"
check "  its audit line escapes and cuts it" \
    grep -q 'contract=judy .*reason=UNKNOWN_CONTEXT(31) detail="service=q\\x220000*\.\.\. has no context in \[services\]"' \
    "$FR_DIR/log/X.log"
check "  and radiusd's log line escapes its quote, as radiusd does" \
    grep -qF 'NAS-Identifier "q\"0000' "$FR_DIR/log/X.log"
# The same value in a request that carries a State: the State binds its
# context, and a service that names none is refused as above, spending
# neither the State nor the code.
fresh_step 5
mk_contract nora pw-nora yes || notok "nora: a contract for the resume case"
exchange j5 "$(req nora pw-nora "Called-Station-Id = nas" \
    "NAS-Identifier = ib-login")" "$(f_challenge "$OTP_PROMPT")" \
    "NAS-Identifier ib-login -> login: challenged"
S=$(state_of j5)
C=$(code nora)
exchange j6 "$(req nora "$C" "State = $S" "Called-Station-Id = nas" \
    "NAS-Identifier = no-such-service")" "$(f_reject "$M_CTX")" \
    "a resumed request with an unmapped NAS-Identifier is rejected"
check "  with an audit row naming the NAS-Identifier" \
    unmapped j6 nora no-such-service
exchange j7 "$(req nora "$C" "State = $S" "Called-Station-Id = nas" \
    "NAS-Identifier = ib-login")" "$(f_accept)" \
    "  and that refusal spent neither the State nor the code"
# No NAS-Identifier at all: refused as an unmapped one, audited.
fresh_step 5
mk_contract quinn pw-quinn yes || notok "quinn: a contract for the context cases"
exchange j8 "$(req quinn pw-quinn "Called-Station-Id = nas")" \
    "$(f_reject "$M_CTX")" "no NAS-Identifier: rejected, the customer told"
check "  with an audit row saying no service was named" \
    grep -q 'contract=quinn .*reason=UNKNOWN_CONTEXT(31) detail="no service name to map' \
    "$FR_DIR/log/X.log"
# Bytes that are not UTF-8, and a control byte: escaped in the audit row
# (a PostgreSQL text column refuses them raw: a store error's bare reply).
printf 'User-Name=quinn User-Password=pw-quinn Called-Station-Id=nas NAS-Identifier=ib%%ff%%0a\n' |
    "$BUILD/tests/radload" -s "127.0.0.1:$PORT" -S "$SECRET" -t 5000 \
    >"$T/j8b.out" 2>&1
check "a NAS-Identifier that is not UTF-8: rejected" \
    grep -q '^0 0 reject ' "$T/j8b.out"
check "  with an audit row naming it escaped" \
    unmapped j8b quinn 'ib\xff\x0a'
# A State is bound to its context: one from a login, offered with the
# NAS-Identifier of a transfer (a code-only context), is refused, and the
# code is not tried; the login then completes.
exchange j9 "$(req quinn pw-quinn "Called-Station-Id = nas" \
    "NAS-Identifier = ib-login")" "$(f_challenge "$OTP_PROMPT")" \
    "quinn: challenged in login"
S=$(state_of j9)
C=$(code quinn)
exchange j10 "$(req quinn "$C" "State = $S" "Called-Station-Id = nas" \
    "NAS-Identifier = ib-transfer")" "$(f_reject "$M_INVALID")" \
    "a login's State offered in the transaction context is rejected"
exchange j11 "$(req quinn "$C" "State = $S" "Called-Station-Id = nas" \
    "NAS-Identifier = ib-login")" "$(f_accept)" \
    "  and its code then completes the login"

# ---- registration and unregistration over challenge rounds ----
# One answer per Access-Request, in the guide's order (password, serial,
# current code, login choice, card digits); each Access-Challenge asks
# the next with the State carrying what was verified. NAS-Identifier
# ib-register / ib-unregister picks the context through [services].
P_SERIAL="シリアル番号(半角英数字)："
P_CHOICE="ログイン時の追加認証 1:ワンタイムパスワード 2:確認用パスワード 3:なし(半角数字)："
# rr NAME SERVICE USER ANSWER [STATE]: one round
rr() {
	rad "$1" "$(req "$3" "$4" "Called-Station-Id = nas" \
	    "NAS-Identifier = $2" ${5:+"State = $5"})"
}
bound() { "$CLI" contract show "$1" | sed -n 's/^token: //p'; }
failures() { "$CLI" contract show "$1" | sed -n 's/^failures: //p'; }
# The card cells a Japanese prompt names ("B行7列、E行2列" -> B7 E2);
# lib.sh's card_digits gives the digits the printed card shows there.
cells_of() {
	shown "$1" | grep -o '[A-Z]行[0-9]*列' | sed 's/行//; s/列//' | xargs
}
# reg_to N: rounds 1..N of a right registration of regc (N <= 4), the
# last State in S. Each round's reply is checked by the caller's round().
reg_to() {
	rr g1 ib-register regc pw-regc
	S=$(state_of g1)
	[ "$1" -lt 2 ] && return 0
	rr g2 ib-register regc RT1 "$S"
	S=$(state_of g2)
	[ "$1" -lt 3 ] && return 0
	rr g3 ib-register regc "$(code RT1)" "$S"
	S=$(state_of g3)
	[ "$1" -lt 4 ] && return 0
	rr g4 ib-register regc 1 "$S"
	S=$(state_of g4)
}
fresh_step 20
rr w1 ib-register regc not-the-password
round w1 Access-Reject "$M_PW" "" "registration round 1: a wrong password is refused"
reg_to 1
round g1 Access-Challenge "$P_SERIAL" Echo \
    "registration round 1: the password gets the serial question (Echo)"
rr w2 ib-register regc NO-SUCH-SERIAL "$S"
round w2 Access-Reject "シリアル番号が正しくありません。" "" \
    "registration round 2: an unknown serial is refused"
reg_to 1
rr w2b ib-register regc tok-alice "$S"
round w2b Access-Reject "このシリアル番号は、ほかの契約者IDに登録されています。" "" \
    "registration round 2: another contract's token is refused"
reg_to 2
round g2 Access-Challenge "$OTP_PROMPT" No-Echo \
    "registration round 2: the serial gets the code question (No-Echo)"
rr w3 ib-register regc "$(wrong RT1)" "$S"
round w3 Access-Reject "$M_WRONG" "" "registration round 3: a wrong code is refused"
reg_to 3
round g3 Access-Challenge "$P_CHOICE" Echo \
    "registration round 3: the code gets the login-choice question (Echo)"
rr w4 ib-register regc 9 "$S"
round w4 Access-Reject "$M_BAD" "" "registration round 4: a choice that is none of 1-3 is refused"
check "  the module's line names the malformed input" \
    log_says "$FR_DIR/log/X.log" 'Decision: reject (BAD_INPUT, malformed input: login-otp)'
reg_to 4
check "registration round 4: the choice gets the card question, naming cells" \
    [ "$(reply_of g4)" = Access-Challenge ] && [ -n "$(cells_of g4)" ] &&
    [ "$(prompt_attr g4)" = No-Echo ]
CELLS=$(cells_of g4)
WRONGCARD=$(card_digits "$T/grid-regc" "$CELLS" | tr 0123456789 1234567890)
rr w5 ib-register regc "$WRONGCARD" "$S"
round w5 Access-Reject "確認用パスワードが正しくありません。" "" \
    "registration round 5: wrong card digits are refused"
check "after every refusal nothing is bound" [ "$(bound regc)" = - ]
check "the wrong password, code and card counted toward the lockout (3)" \
    [ "$(failures regc)" = 3 ]
# The whole registration, the serial typed in groups in full width.
rr g1 ib-register regc pw-regc
rr g2 ib-register regc "ＲＴ１" "$(state_of g1)"
rr g3 ib-register regc "$(code RT1)" "$(state_of g2)"
rr g4 ib-register regc "１" "$(state_of g3)"
G4=$(state_of g4)
rr g5 ib-register regc "$(card_digits "$T/grid-regc" "$(cells_of g4)")" "$G4"
round g5 Access-Accept "" "" "registration: five rounds end in an Access-Accept"
check "registration: RT1 is bound to regc" [ "$(bound regc)" = RT1 ]
check "registration: the failures are reset" [ "$(failures regc)" = 0 ]
check "registration: login asks for a code, as chosen" \
    sh -c "'$CLI' contract show regc | grep -qx 'login: otp'"
"$CLI" audit --contract regc >"$T/audit-regc"
check "registration: audited as through PAM or the CLI" \
    grep -q 'register accept ACCEPTED contract=regc serial=RT1 context=registration detail=bound' "$T/audit-regc"
rr g6 ib-register regc "$(card_digits "$T/grid-regc" "$(cells_of g4)")" "$G4"
round g6 Access-Reject "$M_USED" "" "registration: its last State again is refused"
# Unregistration: password, then a current code (newer than the bind's).
rr u1 ib-unregister regc pw-regc
round u1 Access-Challenge "$OTP_PROMPT" No-Echo "unregistration round 1: the code is asked"
rr u2 ib-unregister regc "$(wrong RT1)" "$(state_of u1)"
round u2 Access-Reject "$M_WRONG" "" "unregistration round 2: a wrong code is refused"
check "  and the token stays bound" [ "$(bound regc)" = RT1 ]
rr u1 ib-unregister regc pw-regc
rr u3 ib-unregister regc "$(code RT1 30)" "$(state_of u1)"
round u3 Access-Accept "" "" "unregistration: password and a current code unbind"
check "unregistration: the token is free again" [ "$(bound regc)" = - ]

# Lockout: five wrong passwords, then the right one is refused.
i=1
while [ $i -le 5 ]; do
	rad m$i "$(req mallory bad-$i "Called-Station-Id = mobile")"
	i=$((i + 1))
done
exchange m6 "$(req mallory pw-mallory "Called-Station-Id = mobile")" \
    "$(f_reject "$M_LOCKED")" "a locked contract is rejected with its message"

# BlastRADIUS: a request without Message-Authenticator gets no answer.
RADCLIENT_T=1 rad u1 "User-Name = \"ivan\", User-Password = \"pw-ivan\", Called-Station-Id = mobile"
if [ "$(reply_of u1)" = none ] &&
    log_says "$FR_DIR/log/X.log" "does not contain required Message-Authenticator"; then
	ok "an unsigned request is dropped (require_message_authenticator)"
else
	notok "an unsigned request is dropped"
	echo "#   reply: $(reply_of u1); radiusd -X log ends:"
	tail -n 8 "$FR_DIR/log/X.log" | sed 's/^/#     /'
fi
# A request the module leaves to radiusd's "No Auth-Type" refusal (no
# User-Name) is refused with a signed reply too: radiusd 3.2.1 adds no
# Message-Authenticator of its own.
exchange v1 "User-Password = \"pw-ivan\", Message-Authenticator = 0x00" \
    "$(f_reject)" "no User-Name: a signed Access-Reject"
# RFC 2865 5.44: an Access-Request carries at most one User-Name,
# User-Password and State, and the context attribute names one context. A
# second one makes the request ambiguous (a module before this one, or a
# proxy, may have read the other): the engine refuses the request as
# malformed, with the attribute named in its audit line (no contract for
# two User-Names, no context for two context attributes), never decided
# on the first one, as it was.
fresh_step 5
mk_contract oscar pw-oscar yes || notok "oscar: a contract for the duplicate cases"
exchange w0 "$(req oscar pw-oscar)" "$(f_challenge "$OTP_PROMPT")" \
    "oscar: challenged"
S=$(state_of w0)
# audited WHO CONTEXT DETAIL: radiusd's log has the audit line of a
# BAD_INPUT refusal of WHO in CONTEXT ("-" for none) with that detail.
audited() {
	grep 'rlm_shinkin_otp' "$FR_DIR/log/X.log" |
	    grep -F "contract=$1 " | grep -F "context=$2 " |
	    grep -qF "reason=BAD_INPUT(25) detail=\"$3\""
}
dup_refused() { # NAME ATTRIBUTE WHO CONTEXT REQUEST WHAT
	_why="$2 appears 2 times in the request (RFC 2865 allows one)"
	if rad "$1" "$5" "$(f_reject "$M_BAD")" && audited "$3" "$4" "$_why"; then
		ok "$6"
	else
		notok "$6"
		sed 's/^/#   /' "$T/$1.out"
		grep "BAD_INPUT" "$FR_DIR/log/X.log" | sed 's/^/#   log: /'
	fi
}
dup_refused w1 State oscar login \
    "$(req oscar "$(code oscar)" "State = $S" "State = 0x0102")" \
    "two States: refused as malformed, audited, not decided on the first"
exchange w2 "$(req oscar "$(code oscar)" "State = $S")" "$(f_accept)" \
    "  and that refusal spent neither the State nor the code"
dup_refused w3 User-Password ivan mobile \
    "$(req ivan pw-ivan "User-Password = \"other\"" "Called-Station-Id = mobile")" \
    "two User-Passwords: refused"
dup_refused w4 User-Name - mobile \
    "$(req ivan pw-ivan "User-Name = \"nobody\"" "Called-Station-Id = mobile")" \
    "two User-Names: refused, no contract named"
# A User-Name holding a NUL names no contract either ("ivan" NUL "x" is
# not ivan). It was left to radiusd's bare Access-Reject: the customer
# told nothing, no audit line, nothing in a production log.
if rad v2 "User-Name = \"ivan\\000x\", User-Password = \"pw-ivan\", Called-Station-Id = mobile, Message-Authenticator = 0x00" \
    "$(f_reject "$M_BAD")" && audited - mobile "User-Name holds a NUL"; then
	ok "a User-Name holding a NUL: refused as malformed, audited, no contract"
else
	notok "a User-Name holding a NUL: refused as malformed, audited, no contract"
	sed 's/^/#   /' "$T/v2.out"
	grep "BAD_INPUT" "$FR_DIR/log/X.log" | sed 's/^/#   log: /'
fi
dup_refused w5 NAS-Identifier judy - \
    "$(req judy pw-judy "Called-Station-Id = nas" \
	"NAS-Identifier = ib-mobile" "NAS-Identifier = ib-transfer")" \
    "two context attributes (NAS-Identifier): refused, no context guessed"
# A CHAP request (no User-Password): refused the same way, audited; it
# was refused by the module alone too.
if rad w7 "User-Name = \"ivan\", CHAP-Password = \"pw-ivan\", Called-Station-Id = mobile, Message-Authenticator = 0x00" \
    "$(f_reject "$M_BAD")" &&
    audited ivan mobile "no User-Password in the request (CHAP is not taken)"; then
	ok "no User-Password (CHAP): refused as malformed and audited"
else
	notok "no User-Password (CHAP): refused as malformed and audited"
	sed 's/^/#   /' "$T/w7.out"
	grep "BAD_INPUT" "$FR_DIR/log/X.log" | sed 's/^/#   log: /'
fi
# A NUL inside User-Password (radclient cannot send one: radload can) was
# refused by the module alone: no audit row, no line in a production log.
printf 'User-Name=ivan User-Password=pw-ivan%%00123456 Called-Station-Id=mobile\n' |
    "$BUILD/tests/radload" -s "127.0.0.1:$PORT" -S "$SECRET" -t 5000 \
    >"$T/w6.out" 2>&1
if grep -q '^0 0 reject ' "$T/w6.out" &&
    audited ivan mobile "User-Password holds a NUL"; then
	ok "a NUL inside User-Password: refused as malformed and audited"
else
	notok "a NUL inside User-Password: refused as malformed and audited"
	sed 's/^/#   /' "$T/w6.out"
	grep "BAD_INPUT" "$FR_DIR/log/X.log" | sed 's/^/#   log: /'
fi
# rl_refused NAME LINE WHO CONTEXT DETAIL WHAT: the radload request LINE
# is rejected, with the BAD_INPUT audit line of WHO in CONTEXT.
rl_refused() {
	printf '%s\n' "$2" | "$BUILD/tests/radload" -s "127.0.0.1:$PORT" \
	    -S "$SECRET" -t 5000 >"$T/$1.out" 2>&1
	if grep -q '^0 0 reject ' "$T/$1.out" && audited "$3" "$4" "$5"; then
		ok "$6"
	else
		notok "$6"
		sed 's/^/#   /' "$T/$1.out"
		grep "contract=$3 " "$FR_DIR/log/X.log" | tail -n 2 |
		    sed 's/^/#   log: /'
	fi
}
fresh_step 5
mk_contract pat pw-pat yes || notok "pat: a contract for the credential cases"
# A NUL inside the context attribute: its head is no service name. It was
# cut there, and "ib-mobile" NUL "x" logged in to the mobile context by
# the password alone.
rl_refused w8 "User-Name=pat User-Password=pw-pat Called-Station-Id=nas NAS-Identifier=ib-mobile%00x" \
    pat - "NAS-Identifier holds a NUL" \
    "a NUL inside the NAS-Identifier: refused as malformed, no context read"
# RFC 2865 4.1: a request carries User-Password or CHAP-Password, never
# both (radiusd itself drops EAP-Message beside either); an MS-CHAP
# response is the same case. Which credential the NAS checked is a guess:
# refused, where the User-Password was taken and the password accepted.
CHAPPW=0x01$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
rl_refused w9 "User-Name=pat User-Password=pw-pat Attr-3=$CHAPPW Called-Station-Id=mobile" \
    pat mobile "CHAP-Password beside User-Password (one credential per request)" \
    "User-Password beside CHAP-Password: refused as malformed"
MSCHAP2=0x000001371934$(head -c 50 /dev/urandom | od -An -tx1 | tr -d ' \n')
rl_refused w10 "User-Name=pat User-Password=pw-pat Attr-26=$MSCHAP2 Called-Station-Id=mobile" \
    pat mobile "MS-CHAP2-Response beside User-Password (one credential per request)" \
    "User-Password beside MS-CHAP2-Response: refused as malformed"
# RFC 2548's change-password attributes carry a response and the new
# password: a credential as the response is. They were not refused, and
# the password beside them logged in.
hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
rl_refused w11 "User-Name=pat User-Password=pw-pat Attr-26=0x000001371b46$(hex 68) Called-Station-Id=mobile" \
    pat mobile "MS-CHAP2-CPW beside User-Password (one credential per request)" \
    "User-Password beside MS-CHAP2-CPW: refused as malformed"
rl_refused w12 "User-Name=pat User-Password=pw-pat Attr-26=0x000001370456$(hex 84) Called-Station-Id=mobile" \
    pat mobile "MS-CHAP-CPW-2 beside User-Password (one credential per request)" \
    "User-Password beside MS-CHAP-CPW-2: refused as malformed"
# MS-CHAP-Challenge alone is not one (RFC 2548 2.3.2: the NAS's own
# nonce, also sent in Access-Challenges; rlm_mschap takes no request on
# it alone): the password beside it decides.
printf '%s\n' "User-Name=pat User-Password=pw-pat Attr-26=0x000001370b12$(hex 16) Called-Station-Id=mobile" |
    "$BUILD/tests/radload" -s "127.0.0.1:$PORT" -S "$SECRET" -t 5000 \
    >"$T/w13.out" 2>&1
check "MS-CHAP-Challenge beside User-Password is no second credential: accepted" \
    grep -q '^0 0 accept ' "$T/w13.out"
# One State, and a NUL inside User-Password: refused as malformed, and
# the State spent as any answer spends it. It was left unspent, for the
# right code to follow on it; of two States (w1) neither is taken.
exchange w14 "$(req pat pw-pat)" "$(f_challenge "$OTP_PROMPT")" \
    "pat: challenged"
S=$(state_of w14)
rl_refused w15 "User-Name=pat User-Password=12%00345 State=$S" \
    pat login "User-Password holds a NUL" \
    "one State and a NUL inside User-Password: refused as malformed"
exchange w16 "$(req pat "$(code pat)" "State = $S")" "$(f_reject "$M_USED")" \
    "  and that refusal spent the State"

# unknown_contract = reveal: the module claims only contracts, and leaves
# other names to the modules after it. A User-Name that names no contract
# at all (one holding a NUL, or two of them) was looked up as "", found
# nothing and was left to radiusd's bare Access-Reject: no audit line, no
# Reply-Message, where the default mode gives the engine's BAD_INPUT
# refusal. Both modes now refuse it the same audited way.
# audited_in INSTANCE WHO CONTEXT DETAIL: as audited, from that instance
audited_in() {
	grep "rlm_shinkin_otp ($1): " "$FR_DIR/log/X.log" |
	    grep -F "contract=$2 " | grep -F "context=$3 " |
	    grep -qF "reason=BAD_INPUT(25) detail=\"$4\""
}
fresh_step 5
mk_contract rita pw-rita yes || notok "rita: a contract for the reveal cases"
exchange x1 "$(req rita pw-rita "Called-Station-Id = reveal")" "$(f_accept)" \
    "reveal: a contract is claimed and decided (mobile: the password)"
exchange x2 "$(req nobody pw-x "Called-Station-Id = reveal")" "$(f_reject)" \
    "reveal: an unknown name is left to radiusd (its bare Access-Reject)"
for x in x3 x4; do
	if [ $x = x3 ]; then
		what="reveal: a User-Name holding a NUL: refused as malformed, audited"
		why="User-Name holds a NUL"
		r="User-Name = \"rita\\000x\", User-Password = \"pw-rita\", Called-Station-Id = reveal, Message-Authenticator = 0x00"
	else
		what="reveal: two User-Names: refused as malformed, audited"
		why="User-Name appears 2 times in the request (RFC 2865 allows one)"
		r=$(req rita pw-rita "User-Name = \"nobody\"" "Called-Station-Id = reveal")
	fi
	if rad $x "$r" "$(f_reject "$M_BAD")" && audited_in reveal - mobile "$why"; then
		ok "$what"
	else
		notok "$what"
		sed 's/^/#   /' "$T/$x.out"
		grep "rlm_shinkin_otp (reveal)" "$FR_DIR/log/X.log" | tail -n 3 |
		    sed 's/^/#   log: /'
	fi
done
# A User-Name from the NAS holding control characters (an escape
# sequence, a carriage return, a newline) names no contract. The module's
# debug lines named it raw: a NAS could forge a line of the log, or send
# a terminal sequence to whoever reads it. They escape it now, as radiusd
# escapes the attributes it prints.
ESC=$(printf '\033')
CR=$(printf '\r')
rad ev1 "$(req 'ev\033[2J\rfake\nline' pw-x "Called-Station-Id = mobile")"
check "a User-Name with control characters: rejected" \
    [ "$(reply_of ev1)" = Access-Reject ]
check "  the module's line names it escaped" log_says "$FR_DIR/log/X.log" \
    'New attempt of ev\x1b[2J\x0dfake\x0aline in context mobile'
check "  no line of the log is forged by it" \
    sh -c '! grep -q "^line in context" "$1"' sh "$FR_DIR/log/X.log"
check "  no escape or carriage return reaches the log raw" \
    sh -c '! grep -q -- "$1" "$3" && ! grep -q -- "$2" "$3"' \
    sh "$ESC" "$CR" "$FR_DIR/log/X.log"
# The request's own error line (RERROR "check failed") names the store's
# message, which holds a value as it came: its control characters
# escaped there as in the core's lines. radiusd writes a control
# character of a line as '?', which named no byte: "ctl:?[2K?[1Gforged".
# The refused write is the contract's (its failure count), on both
# stores: on PostgreSQL it aborts the transaction, after which the
# refusal's audit row used to fail ("current transaction is aborted"),
# and that line named only the audit row's failure, not the cause.
store_fail ctl contracts UPDATE "NEW.id = 'ivan'" \
    "ctl:$ESC[2K${ESC}[1Gforged"
rad ctl "$(req ivan wrong-pw "Called-Station-Id = mobile")"
store_mend ctl contracts
log_says "$FR_DIR/log/X.log" 'ERROR: shinkin-otp check failed'
check "a store message's control characters: escaped in the error line" \
    sh -c 'grep -a "check failed" "$2" | grep -aqF "$1"' sh \
    'ctl:\x1b[2K\x1b[1Gforged' "$FR_DIR/log/X.log"
# Status-Server: the module answers it while the store does.
status ss1
[ "$(reply_of ss1)" = Access-Accept ] &&
	ok "Status-Server: Access-Accept while the store answers" ||
	{ notok "Status-Server: got $(reply_of ss1)"; sed 's/^/#   /' "$T/ss1.out"; }
# Every reply radclient received carried a Message-Authenticator it checked.
nrep=$(cat "$T"/*.out | grep -c '^Received Access-')
nma=$(cat "$T"/*.out | grep -c '^[[:space:]]*Message-Authenticator = 0x')
nsent=$(cat "$T"/*.out | grep '^Sent' -A8 | grep -c 'Message-Authenticator = 0x00$')
if [ "$nrep" -gt 20 ] && [ $((nma - nsent)) -eq "$nrep" ]; then
	ok "all $nrep replies carry a verified Message-Authenticator"
else
	notok "replies signed ($nrep replies, $nma MA lines, $nsent sent)"
fi
# Nothing secret in what the module and the core log.
leak=0
for c in alice bob heidi ivan judy; do
	grep -i 'shinkin' "$FR_DIR/log/X.log" | grep -q "pw-$c" && leak=1
done
if [ $leak -eq 0 ]; then
	ok "no password in the module's log lines"
else
	notok "a password reached the module's log lines"
	grep -i 'shinkin' "$FR_DIR/log/X.log" | grep 'pw-' | head -n 5 |
	    sed 's/^/#   /'
fi
# Nor any code typed in this run, right or wrong (the module's and the
# core's lines; radiusd -X itself prints every User-Password).
grep -h -o 'User-Password = "[0-9]\{6\}"' "$T"/*.req | sed 's/.*"\(.*\)"/\1/' |
    sort -u >"$T/codes"
grep -i 'shinkin' "$FR_DIR/log/X.log" | grep -v 'User-Password = ' >"$T/modlines"
# A code with no digit either side: the lines hold runs of zeros (the long
# service name above, "\x22" and 0s), in which 000000, 200000 or 220000,
# a code once in 330,000, was found as a substring.
sed 's/.*/(^|[^0-9])&([^0-9]|$)/' "$T/codes" >"$T/codes.re"
if [ "$(wc -l <"$T/codes")" -ge 10 ] && ! grep -qEf "$T/codes.re" "$T/modlines"; then
	ok "no typed code in the module's log lines ($(wc -l <"$T/codes") codes)"
else
	notok "codes in the module's log lines ($(wc -l <"$T/codes") codes)"
	grep -Ef "$T/codes.re" "$T/modlines" | head -n 5 | sed 's/^/#   /'
fi
fr_stop

# ---- concurrency: the thread pool, 8 streams, each code on two streams ----
fr_start f || { notok "radiusd -f starts"; exit 1; }
ok "radiusd -f (thread pool) starts"
# What an operator has without -X (radiusd's log file, auth = no): a
# refusal the engine decides leaves its audit line; one the module
# decides alone (no context for the request) must still say why, or a
# NAS sending the wrong NAS-Identifier is refused in silence.
exchange p1 "$(req judy pw-judy "Called-Station-Id = nas" \
    "NAS-Identifier = no-such-service")" "$(f_reject "$M_CTX")" \
    "-f: an unmapped NAS-Identifier is rejected, the customer told"
exchange p2 "$(req ivan pw-ivan "User-Password = \"x\"" \
    "Called-Station-Id = mobile")" "$(f_reject "$M_BAD")" \
    "-f: two User-Passwords are rejected"
check "-f: the log names the unmapped NAS-Identifier" \
    grep -q 'NAS-Identifier "no-such-service" is not in the policy' \
    "$FR_DIR/log/radius.log"
check "-f: the log has the unmapped NAS-Identifier's audit line" \
    grep -q 'contract=judy .*reason=UNKNOWN_CONTEXT(31) detail="service=no-such-service has no context in \[services\]"' \
    "$FR_DIR/log/radius.log"
check "-f: the log has the malformed request's audit line" \
    grep -q 'contract=ivan .*reason=BAD_INPUT(25) detail="User-Password appears 2 times' \
    "$FR_DIR/log/radius.log"
# A core line longer than the module's 1 KiB log line is cut with "..."
# after whole UTF-8 characters: a store message of control characters
# (each logged as \xHH, 4 bytes) then Japanese text, in three lengths
# that put the cut at each byte of a 3-byte character. radiusd writes
# the bytes of a split character as '?': a whole 契 or 約 must precede
# the mark.
CUTJ=$(printf '契約%.0s' $(seq 1 30))
for k in 200 201 202; do
	store_fail "cut$k" contracts UPDATE "NEW.id = 'ivan'" \
	    "k$k:$(head -c "$k" /dev/zero | tr '\0' '\001')$CUTJ"
	rad "cut$k" "$(req ivan wrong-pw "Called-Station-Id = mobile")"
	store_mend "cut$k" contracts
	log_says "$FR_DIR/log/radius.log" "k$k:\\x01"
	grep -aF "k$k:\\x01" "$FR_DIR/log/radius.log" | tail -n 1 >"$T/cut$k.line"
	check "a long store message ($k): its log line cut with the mark" \
	    grep -aq '契約.*\.\.\.$' "$T/cut$k.line"
	check "  after whole UTF-8 characters" \
	    grep -aqE '(契|約)\.\.\.$' "$T/cut$k.line"
done
# The policy edited under the running server: its threads open their
# contexts as requests come, and each one used to read the file then, so
# one radiusd decided by two policies at once (seen: 41 replies of 48
# with the edited prompt, 7 with the old), one of them never checked by
# radiusd -C. Every thread decides by the policy the start checked.
cp "$CONF" "$T/policy.orig"
grep -q '^PROMPT_OTP' "$CONF" && { notok "the sandbox policy has no PROMPT_OTP"; exit 1; }
printf 'PROMPT_OTP = "Edited prompt: "\n' >>"$CONF"
exchange ed1 "$(req bob pw-bob)" "$(f_challenge "$OTP_PROMPT")" \
    "the policy edited after the start: the threads keep the checked one"
cp "$T/policy.orig" "$CONF"
fresh_step 6
# Each contract's code is read once, and both its streams send that one:
# read per stream, a step ending between the two reads (64 reads, longer
# than the step's room on a busy host) made them two codes, both accepted.
i=1
while [ $i -le $NRACE ]; do
	code "r$i" >"$T/race-code.r$i"
	i=$((i + 1))
done
# Stream s carries contracts r(s%4+1), r(s%4+5), ...: streams s and s+4
# send the same codes, interleaved with mobile logins.
s=0
while [ $s -lt 8 ]; do
	: >"$T/stream$s.req"
	i=$((s % 4 + 1))
	while [ $i -le $NRACE ]; do
		printf '%s\n\n' "$(req "r$i" "$(cat "$T/race-code.r$i")" \
		    "Called-Station-Id = nas" \
		    "NAS-Identifier = ib-transfer")" \
		    "$(req ivan pw-ivan "Called-Station-Id = mobile")" \
		    >>"$T/stream$s.req"
		i=$((i + 4))
	done
	s=$((s + 1))
done
pids=""
s=0
while [ $s -lt 8 ]; do
	radclient -x -p 1 -t "$RADCLIENT_T" -r 1 -f "$T/stream$s.req" "127.0.0.1:$PORT" \
	    auth "$SECRET" >"$T/stream$s.log" 2>"$T/stream$s.err" &
	pids="$pids $!"
	s=$((s + 1))
done
for p in $pids; do
	wait "$p"
done
# One "user verdict" line per reply, each reply matched to its request by
# the packet Id within its stream. radclient's stderr goes to its own
# file: its "Expected Access-Accept got Access-Reject" lines are written
# at once while stdout is flushed in 4 KiB blocks, and once landed inside
# a "Received ... Id N" line (CI: "127 of 128 sent" and a contract with
# one reply, although every reply had come).
for l in "$T"/stream?.log; do
	awk '
	/^Sent Access-Request Id / { id = $4; insent = 1; next }
	insent && /User-Name = / { gsub(/"/, "", $3); user[id] = $3; insent = 0 }
	/^Received / && $3 == "Id" {
		print ($4 in user ? user[$4] : "unmatched-" $4), $2
		delete user[$4]
	}' "$l"
done >"$T/race.txt"
nsent=$(grep -c '^Sent Access-Request' "$T"/stream?.log | awk -F: '{s += $2} END {print s}')
nrecv=$(wc -l <"$T/race.txt")
[ "$nsent" -eq "$nrecv" ] && [ "$nrecv" -eq $((2 * NRACE + 8 * NRACE / 4)) ] &&
	ok "every one of $nrecv concurrent requests was answered" || {
	notok "concurrent requests answered ($nrecv of $nsent sent)"
	cat "$T"/stream?.err | grep -v 'Expected Access-Accept got' |
	    head -n 5 | sed 's/^/#   /'
}
bad=0
i=1
while [ $i -le $NRACE ]; do
	na=$(grep -c "^r$i Access-Accept$" "$T/race.txt")
	nr=$(grep -c "^r$i Access-Reject$" "$T/race.txt")
	[ "$na" -eq 1 ] && [ "$nr" -eq 1 ] || { bad=$((bad + 1)); echo "# r$i: $na accepts, $nr rejects"; }
	i=$((i + 1))
done
[ $bad -eq 0 ] && ok "race: each of $NRACE codes sent on two streams at once was accepted exactly once" ||
	notok "race: $bad contracts without exactly one accept"
nm=$(grep -c '^ivan Access-Accept$' "$T/race.txt")
[ "$nm" -eq $((8 * NRACE / 4)) ] && ok "race: all $nm interleaved mobile logins accepted" ||
	notok "race: $nm of $((8 * NRACE / 4)) mobile logins accepted"

# ---- the store disappears under the running server ----
store_remove
rad s1 "$(req ivan pw-ivan "Called-Station-Id = mobile")"
rad s2 "$(req judy "$(code judy 30)" "Called-Station-Id = nas" "NAS-Identifier = ib-transfer")"
r1=$(reply_of s1)
r2=$(reply_of s2)
[ "$r1" = Access-Reject ] && [ "$r2" = Access-Reject ] &&
	ok "store removed while running: Access-Reject, never Accept" ||
	{ notok "store removed: got $r1 / $r2"; sed 's/^/#   /' "$T/s1.out"; }
# The NAS's probe gets no answer now (radiusd's reply to the module's
# fail), so it fails over; the log says why.
RADCLIENT_T=2 status ss2
[ "$(reply_of ss2)" = none ] &&
    log_says "$FR_DIR/log/radius.log" 'Status-Server: not answering' &&
	ok "store removed: Status-Server unanswered, and the log says why" ||
	{ notok "store removed: Status-Server got $(reply_of ss2)"; tail -n 4 "$FR_DIR/log/radius.log" | sed 's/^/#   /'; }
kill -0 "$FR_PID" 2>/dev/null && ok "radiusd still running after the store loss" ||
	{ notok "radiusd died after the store loss"; tail -n 8 "$FR_DIR/log/f.log" | sed 's/^/#   /'; }
fr_stop

# Undefined behaviour reports (the UBSan build prints them to stderr).
if cat "$FR_DIR"/log/*.log | grep -q 'runtime error'; then
	notok "no UBSan runtime error in radiusd's output"
	grep 'runtime error' "$FR_DIR"/log/*.log | head -5 | sed 's/^/#   /'
else
	ok "no sanitizer runtime error in radiusd's output"
fi

# ---- configurations radiusd must refuse (radiusd -C) ----
# check_refused WHAT WANT MODULE-BODY: radiusd -C fails, its log says WANT.
# one_module_conf DIR OPTIONS: a radiusd in DIR with one shinkin_otp
# instance of those options, called in authorize and authenticate.
one_module_conf() {
	fr_setup "$1"
	fr_write_conf "shinkin_otp {
$2
}" "server x {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
	}
	authorize {
		shinkin_otp
	}
	authenticate {
		Auth-Type shinkin_otp {
			shinkin_otp
		}
	}
}"
}
NBAD=0
check_refused() {
	NBAD=$((NBAD + 1))
	one_module_conf "$T/bad$NBAD" "$3"
	freeradius -C -d "$FR_DIR" >"$FR_DIR/log/C.out" 2>&1
	_rc=$?
	if [ $_rc -ne 0 ] && cat "$FR_DIR"/log/* | grep -qF -- "$2"; then
		ok "radiusd -C refuses $1: \"$2\""
	else
		notok "radiusd -C refuses $1 (rc $_rc, want \"$2\")"
		cat "$FR_DIR"/log/* | tail -n 5 | sed 's/^/#   /'
	fi
}
# The store went away above; a fresh sandbox policy for these.
mkdir -p "$SB/fresh"
"$CLI" --config "$SB/fresh/p.conf" init >"$SB/fresh/init.out" 2>&1 ||
	{ notok "a second sandbox policy"; sed 's/^/#   /' "$SB/fresh/init.out"; }
GOOD="$SB/fresh/p.conf"
sed '1i frobnicate = yes' "$GOOD" >"$SB/fresh/bad.conf"
# The shipped samples together (module, site, clients) pass radiusd -C.
fr_setup "$T/samples"
sed "s|/etc/shinkin-otp/shinkin-otp.conf|$GOOD|" \
    "$TOP/conf/freeradius/mods-available/shinkin_otp" >"$FR_DIR/mod"
cp "$TOP/conf/freeradius/sites-available/shinkin-otp" "$FR_DIR/site"
cp "$TOP/conf/freeradius/clients.conf" "$FR_DIR/clients"
# The site has no listener: on a server the stock default site's is used.
fr_write_conf "\$INCLUDE $FR_DIR/mod" "\$INCLUDE $FR_DIR/site
\$INCLUDE $FR_DIR/clients
listen {
	type = auth
	ipaddr = 127.0.0.1
	port = $PORT
}"
if freeradius -C -d "$FR_DIR" >"$FR_DIR/log/C.out" 2>&1; then
	ok "the sample module, site and clients.conf pass radiusd -C"
else
	notok "the samples pass radiusd -C"
	tail -n 5 "$FR_DIR/log/radius.log" | sed 's/^/#   /'
fi
check_refused "a bad policy file" "$SB/fresh/bad.conf:1:" "	config = $SB/fresh/bad.conf
	context = login"
# A policy path that holds a control character (radiusd takes it raw in
# a quoted string): escaped where the module names it and in the core's
# "file:line:" message (radiusd's own '?' for it named no byte).
cp "$SB/fresh/bad.conf" "$SB/fresh/bad${ESC}c.conf"
check_refused "a bad policy file at a path with an ESC" \
    "Cannot load policy $SB/fresh/bad\x1bc.conf: $SB/fresh/bad\x1bc.conf:1:" \
    "	config = \"$SB/fresh/bad${ESC}c.conf\"
	context = login"
check_refused "an unknown module option" 'Unknown configuration item "contxt"' \
    "	config = $GOOD
	contxt = login"
# radiusd reads the first of two lines and ignores the second in silence:
# the context = login added below a context = mobile (password alone)
# would leave every login without a code.
check_refused "an option set twice" '"context" is set twice' \
    "	config = $GOOD
	context = mobile
	context = login"
check_refused "a bad mode" 'must be challenge or append' "	config = $GOOD
	context = login
	mode = sideways"
# An option's value with a control character: named escaped, as the path.
check_refused "a bad mode with an ESC" \
    'mode = "side\x1bways": must be challenge or append' "	config = $GOOD
	context = login
	mode = \"side${ESC}ways\""
check_refused "context and context_attribute together" 'exactly one of' \
    "	config = $GOOD
	context = login
	context_attribute = NAS-Identifier"
check_refused "an undefined context" 'not defined in' "	config = $GOOD
	context = no-such-context"
check_refused "an unknown attribute" 'no such attribute' "	config = $GOOD
	context_attribute = Bogus-Attr-Zz"
# radiusd computes it; no request carries it, so every one was refused.
check_refused "a virtual attribute other than Client-Shortname" \
    'context_attribute = "Packet-Src-IP-Address": radiusd computes it' \
    "	config = $GOOD
	context_attribute = Packet-Src-IP-Address"
# The value of an unmapped context attribute is logged, as the service
# name: an attribute that carries a secret would put it in the log.
check_refused "a context attribute that carries a password" \
    'context_attribute = "User-Password": carries a secret' "	config = $GOOD
	context_attribute = User-Password"
check_refused "a context attribute that carries a CHAP response" \
    'context_attribute = "CHAP-Password": carries a secret' "	config = $GOOD
	context_attribute = CHAP-Password"
check_refused "a missing policy file" "$SB/none.conf" "	config = $SB/none.conf
	context = login"
# context_attribute with no [services] map (absent, or a header alone):
# every request would be refused as UNKNOWN_CONTEXT. It was taken.
grep -q '^ib-login = login$' "$GOOD" ||
	notok "the fresh policy has a [services] map to remove"
awk '/^\[/ { svc = ($0 == "[services]") } !svc' "$GOOD" >"$SB/fresh/nosvc.conf"
awk '/^\[/ { svc = ($0 == "[services]"); if (svc) print } !svc' "$GOOD" \
    >"$SB/fresh/emptysvc.conf"
for f in nosvc emptysvc; do
	check_refused "context_attribute without services ($f)" \
	    "context_attribute = \"NAS-Identifier\": $SB/fresh/$f.conf has no [services] map" \
	    "	config = $SB/fresh/$f.conf
	context_attribute = NAS-Identifier"
done
# With a fixed context the same policy is fine: the map is not read.
one_module_conf "$T/nosvc-ok" "	config = $SB/fresh/nosvc.conf
	context = login"
check "  while a fixed context needs no [services] map" \
    freeradius -C -d "$FR_DIR"

# The module called in authorize with no "Auth-Type shinkin_otp" in any
# authenticate section: not refused at the start (radiusd -C passes), as
# a module called only under an Auth-Type of another name, or enabled in
# mods-enabled and not yet in a site, works; but each request it then
# cannot claim says so in radiusd's log, where it was refused in silence.
fr_setup "$T/noauth"
fr_write_conf "shinkin_otp {
	config = $GOOD
	context = mobile
}
pap {
}" "server x {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = $PORT
	}
	authorize {
		shinkin_otp
	}
	authenticate {
		Auth-Type PAP {
			pap
		}
	}
}"
check "no Auth-Type section for the module: radiusd -C passes" \
    freeradius -C -d "$FR_DIR"
if fr_start f; then
	exchange na1 "$(req somebody pw-x)" "$(f_reject)" \
	    "  a request then gets radiusd's reject, signed"
	check "  and radiusd's log names the missing section" \
	    grep -qF 'No "Auth-Type shinkin_otp" in any authenticate section' \
	    "$FR_DIR/log/radius.log"
	fr_stop
else
	notok "radiusd -f starts without the module's Auth-Type section"
fi

exit 0

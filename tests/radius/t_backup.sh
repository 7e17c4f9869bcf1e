#!/bin/sh
# shinkin-otp backup on a live SQLite store: while a private radiusd (the
# RADIUS module, append mode, context transaction) and the real libpam
# (tests/tools/pam_driver) accept a stream of HOTP codes, backups are
# taken one after another. Every accept must succeed, every backup must
# succeed and be a consistent snapshot (each token's last counter in it
# equals the accepts its audit rows record: both land in one
# transaction), and a backup restored as a new store must verify a
# contract's password and a code, and refuse a code spent before it.
. "$TOP/tests/lib.sh"
. "$TOP/tests/radius/lib.sh"
. "$TOP/tests/cli/lib_cli.sh"

RLM_SO=${RLM_SO:-$BUILD/rlm_shinkin_otp.so}
MOD=$BUILD/pam_shinkin_otp.so
DRV=$BUILD/tests/pam_driver
GEN=$BUILD/tests/gen_contracts
N=${BACKUP_LOAD:-60}
for b in freeradius radclient oathtool sqlite3; do
	command -v "$b" >/dev/null ||
		{ notok "$b installed (sh scripts/deps.sh)"; exit 1; }
done
if readelf -d "$RLM_SO" 2>/dev/null | grep -q 'libasan'; then
	. "$TOP/tests/radius/ubsan.sh"
	ubsan_module || exit 1
fi
mk_sandbox
T=$(mktemp -d "${TMPDIR:-/tmp}/sotp-bk.XXXXXX")
trap 'fr_stop_all; rm -rf "$T" "$SB"' EXIT
trap 'exit 1' INT TERM HUP
OUT=$SB/out
ERR=$SB/err
SQ() { sqlite3 -readonly "$1" "$2"; }
code() { oathtool --hotp -d 6 -c "$2" "$1"; }

# -- the store: 3,000 imported contracts, two HOTP tokens bound --
check "3,000 contracts to give the store some bulk" sh -c \
    '"$1" 3000 csv "$2" && "$3" contract import "$2" >/dev/null' sh "$GEN" "$SB/c.csv" "$CLI"
for who in R P; do
	S=$(secret)
	eval "H$who=\$(printf %s \"\$S\" | base32 -d | od -An -tx1 | tr -d ' \\n')"
	check "token H$who (HOTP) bound to L$who" sh -c '"$1" token add "H$2" --secret "$3" --counter 0 >/dev/null &&
	    printf "pw\n" | "$1" contract add "L$2" >/dev/null &&
	    "$1" contract bind "L$2" --serial "H$2" --otp "$4" >/dev/null' \
	    sh "$CLI" "$who" "$S" "$(eval code "\$H$who" 0)"
done
STORE=$(conf_path store)
check "the store is a file" test -f "$STORE"

# -- the front ends --
mkdir -p "$SB/pam.d"
echo "auth required $MOD config=$CONF context=transaction" >"$SB/pam.d/tx"
echo "auth required $MOD config=$CONF context=mobile" >"$SB/pam.d/mobile"
PORT=$(free_port)
fr_setup "$T/raddb"
fr_write_conf "shinkin_otp {
	config = $CONF
	context = transaction
	mode = append
}" "server backup-test {
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
if fr_start f; then ok "a private radiusd runs the module"; else
	notok "radiusd starts"
	exit 1
fi

# -- the load: N accepts through RADIUS and N through PAM, meanwhile
#    backups one after another --
radius_load() {
	_bad=0
	_c=1
	while [ $_c -le "$N" ]; do
		rad "r$_c" "$(req LR "$(code "$HR" $_c)")" || true
		[ "$(reply_of "r$_c")" = Access-Accept ] ||
			{ _bad=$((_bad + 1)); sed 's/^/# /' "$T/r$_c.out"; }
		_c=$((_c + 1))
	done
	echo "$_bad" >"$SB/radius.bad"
}
pam_load() {
	_bad=0
	_c=1
	while [ $_c -le "$N" ]; do
		"$DRV" -c "$SB/pam.d" -s tx -u LP "$(code "$HP" $_c)" >"$SB/p.out" 2>&1
		grep -qx "result: PAM_SUCCESS" "$SB/p.out" ||
			{ _bad=$((_bad + 1)); sed 's/^/# /' "$SB/p.out"; }
		_c=$((_c + 1))
	done
	echo "$_bad" >"$SB/pam.bad"
}
radius_load >"$SB/radius.log" 2>&1 &
RL=$!
pam_load >"$SB/pam.log" 2>&1 &
PL=$!
k=0
failed=0
while kill -0 $RL 2>/dev/null || kill -0 $PL 2>/dev/null; do
	k=$((k + 1))
	sleep 0.1
	"$CLI" backup "$SB/bk$k.db" >"$SB/bk.out" 2>&1 ||
		{ failed=$((failed + 1)); sed 's/^/# /' "$SB/bk.out"; }
done
wait $RL
wait $PL
cat "$SB/radius.log" "$SB/pam.log"
check "$N accepts through RADIUS during the backups" test "$(cat "$SB/radius.bad")" -eq 0
check "$N accepts through PAM during the backups" test "$(cat "$SB/pam.bad")" -eq 0
check "$k backups taken during the load, none failed ($failed)" test "$failed" -eq 0 -a "$k" -ge 2
check "the live store has every accept" test \
    "$(SQ "$STORE" "SELECT count(*) FROM audit WHERE action = 'auth' AND verdict = 'accept'")" -eq $((2 * N))
bad=0
mid=0
prev=-1
i=0
while [ $i -lt $k ]; do
	i=$((i + 1))
	b=$SB/bk$i.db
	[ "$(SQ "$b" "PRAGMA integrity_check")" = ok ] || { bad=$((bad + 1)); echo "# bk$i: integrity"; }
	[ -e "$b-wal" ] && { bad=$((bad + 1)); echo "# bk$i: not one file"; }
	[ "$(stat -c %a "$b")" = 600 ] || { bad=$((bad + 1)); echo "# bk$i: mode"; }
	for who in R P; do
		steps=$(SQ "$b" "SELECT last_step FROM tokens WHERE serial = 'H$who'")
		rows=$(SQ "$b" "SELECT count(*) FROM audit WHERE action = 'auth' AND verdict = 'accept' AND serial = 'H$who'")
		[ "$steps" = "$rows" ] || { bad=$((bad + 1)); echo "# bk$i: H$who last counter $steps, $rows accepts"; }
	done
	n=$(SQ "$b" "SELECT count(*) FROM audit WHERE action = 'auth' AND verdict = 'accept'")
	[ "$n" -ge "$prev" ] || { bad=$((bad + 1)); echo "# bk$i: $n accepts after $prev"; }
	[ "$n" -gt 0 ] && [ "$n" -lt $((2 * N)) ] && mid=$((mid + 1))
	prev=$n
done
check "every backup is whole, one file, 0600, and a consistent snapshot ($bad bad)" test "$bad" -eq 0
check "backups caught the load in the middle ($mid of $k)" test "$mid" -ge 1
check_rc 2 "a backup never overwrites a file" cli backup "$SB/bk1.db"
check "audit: store.backup rows" sh -c 'test "$("$1" audit | grep -c "store.backup accept")" -eq "$2"' sh "$CLI" "$k"

# -- restore: the last mid-load backup as a new store, with the key --
r=$i
while [ $r -gt 0 ]; do
	n=$(SQ "$SB/bk$r.db" "SELECT count(*) FROM audit WHERE action = 'auth' AND verdict = 'accept'")
	[ "$n" -lt $((2 * N)) ] && break
	r=$((r - 1))
done
[ $r -gt 0 ] || r=1
mkdir "$SB/new"
cp "$SB/bk$r.db" "$SB/new/restored.db"
chmod 600 "$SB/new/restored.db"
sed -e "s|^store = .*|store = sqlite:$SB/new/restored.db|" \
    -e "s|^master_key = .*|master_key = $(conf_path master_key)|" "$CONF" >"$SB/new/p.conf"
echo "auth required $MOD config=$SB/new/p.conf context=mobile" >"$SB/pam.d/restored"
echo "auth required $MOD config=$SB/new/p.conf context=transaction" >"$SB/pam.d/restored-tx"
check "the restored store opens" cli --config "$SB/new/p.conf" token show HP
K=$(sed -n 's/^next counter: //p' "$OUT")
check "it holds the token's counter as backed up ($K)" test -n "$K" -a "${K:-0}" -ge 1
"$DRV" -c "$SB/pam.d" -s restored -u M0000003 pw-M0000003 >"$SB/p.out" 2>&1
check "restored: an imported contract's password verifies through PAM" grep -qx "result: PAM_SUCCESS" "$SB/p.out"
"$DRV" -c "$SB/pam.d" -s restored-tx -u LP "$(code "$HP" $((K - 1)))" >"$SB/p.out" 2>&1
check "restored: a code spent before the backup is refused" grep -qx "result: PAM_AUTH_ERR" "$SB/p.out"
"$DRV" -c "$SB/pam.d" -s restored-tx -u LP "$(code "$HP" "$K")" >"$SB/p.out" 2>&1
check "restored: the next code verifies" grep -qx "result: PAM_SUCCESS" "$SB/p.out"
echo "1..$TAPN"

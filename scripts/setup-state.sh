#!/bin/sh
# shinkin-otp's state on this host, as the packages (shinkin-otp.postinst)
# and `make install` both leave it. Installed as
# /usr/libexec/shinkin-otp/setup-state; as root:
#   setup-state [CLI [POLICY]]   (defaults /usr/bin/shinkin-otp and
#                                 /etc/shinkin-otp/shinkin-otp.conf)
#
# The permission model (see README.md, "Install"):
#   group shinkin-otp        system group of the services that decide:
#                            root needs no membership (PAM in sshd, the
#                            CLI); radiusd's user freerad is added to it
#   policy file              root:shinkin-otp 0640
#   master key               root:shinkin-otp 0640, created once and never
#                            overwritten; the key loader accepts a group
#                            read for this group and root's key only
#   /var/lib/shinkin-otp     root:shinkin-otp 2770: the group creates the
#                            SQLite -wal and -shm files beside the store,
#                            and they keep the group
#   the SQLite store         root:shinkin-otp 0660 (SQLite gives -wal and
#                            -shm the store's mode)
# Nobody outside the group reads the key, the store or the policy.
#
# Idempotent: run again, it only repairs the group, the policy file's and
# the state directory's modes, and runs init on a SQLite store that
# exists, which takes one of an older schema to this build's (a package
# upgrade) and changes nothing else. A key or store that exists keeps its
# owner and mode (an admin may have chosen another layout, e.g. a key
# owned by freerad at 0600). With the key-encryption key in a PKCS#11
# token ([key] kek = pkcs11) there is no master key file to make.
set -eu
CLI=${1:-/usr/bin/shinkin-otp}
POLICY=${2:-/etc/shinkin-otp/shinkin-otp.conf}
GROUP=shinkin-otp
STATE=/var/lib/shinkin-otp

die() {
	echo "shinkin-otp setup-state: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -f "$POLICY" ] || die "$POLICY: no policy file"
[ -x "$CLI" ] || die "$CLI: no admin tool"

if ! getent group "$GROUP" >/dev/null; then
	if command -v addgroup >/dev/null; then
		addgroup --system --quiet "$GROUP"
	else
		groupadd --system "$GROUP"
	fi
fi

chgrp "$GROUP" "$POLICY"
chmod 0640 "$POLICY"
mkdir -p "$STATE"
chown root:"$GROUP" "$STATE"
chmod 2770 "$STATE"

# A path of the policy ("key = value" lines), relative ones taken from
# the policy file's directory, as the core does.
policy_path() {
	_v=$(sed -n "s/^[ 	]*$1[ 	]*=[ 	]*//p" "$POLICY" | tail -n 1)
	_v=${_v#"$2"}
	case $_v in
	"") ;;
	/*) echo "$_v" ;;
	*) echo "$(dirname "$POLICY")/$_v" ;;
	esac
}
KEY=$(policy_path master_key "")
case $(sed -n 's/^[ 	]*store[ 	]*=[ 	]*//p' "$POLICY" | tail -n 1) in
sqlite:*) STORE=$(policy_path store sqlite:) ;;
*) STORE="" ;;
esac
KEK=$(sed -n 's/^[ 	]*kek[ 	]*=[ 	]*//p' "$POLICY" | tail -n 1)
[ -n "$KEY" ] || [ "$KEK" = pkcs11 ] || die "$POLICY: no master_key"

new_key=0
new_store=0
[ "$KEK" = pkcs11 ] || [ -e "$KEY" ] || new_key=1
[ -z "$STORE" ] || [ -e "$STORE" ] || new_store=1
if [ $new_key -eq 1 ] || [ $new_store -eq 1 ]; then
	# init never overwrites a key, and creates the key 0600 and the
	# store 0600 itself; only what it made here is handed to the group.
	"$CLI" --config "$POLICY" init >/dev/null ||
		die "shinkin-otp init failed (see above)"
elif [ -n "$STORE" ]; then
	# An upgrade: init takes the store to this build's schema (a store
	# from before key versions to key version 0: the master key file).
	# A failure is reported, not fatal: the old store stays as it was.
	"$CLI" --config "$POLICY" init >/dev/null ||
		echo "shinkin-otp setup-state: warning: $STORE not upgraded; run shinkin-otp init" >&2
fi
if [ $new_key -eq 1 ]; then
	chown root:"$GROUP" "$KEY"
	chmod 0640 "$KEY"
fi
if [ $new_store -eq 1 ]; then
	# The -wal and -shm files init left beside it (the WAL is kept
	# between uses, README "Speed") get the store's owner and mode too.
	for f in "$STORE" "$STORE-wal" "$STORE-shm"; do
		[ -e "$f" ] || continue
		chown root:"$GROUP" "$f"
		chmod 0660 "$f"
	done
fi
exit 0

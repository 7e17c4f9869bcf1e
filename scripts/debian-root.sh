# shellcheck shell=sh
# A clean Debian 12 root for the checks that must see a stock system: the
# CI's fresh-machine run (.ci/run) and the installed-package suite
# (tests/package). Sourced, not run:
#
#   . scripts/debian-root.sh
#   trap 'droot_cleanup' EXIT        # the caller's trap; see below
#   droot_create DIR [PKG,PKG,...]   # mmdebstrap + mounts, or fails saying why
#   droot_run CMD [ARG...]           # CMD inside, as root, clean environment
#   droot_cleanup                    # stop, unmount, remove (idempotent)
#
# droot_create makes DIR with mmdebstrap --mode=root --variant=apt (apt and
# the essential packages, plus PKGs), then mounts /proc and /dev (a
# recursive bind of the host's, made a slave so nothing propagates back).
# The root's own package lists are fetched fresh: it sees the archive as a
# new machine does. Its package cache starts as hard links to the host's
# .debs (when both are on one file system), and droot_cleanup links the
# ones it downloaded back: repeated roots download a package once. Each
# root keeps its own cache directory and apt lock, so roots made at the
# same time, and apt on the host, never wait for one another (apt does
# not wait for the cache lock; it fails). apt checks every cached .deb
# against the archive's hashes before it uses it.
#
# droot_cleanup kills every process whose root is inside DIR (whatever the
# commands started: radiusd, PostgreSQL, a nested root's daemons), unmounts
# everything mounted at or below DIR, deepest first (nested roots
# included), and removes DIR only when nothing is mounted below it any
# more: the host's /dev is never reached through a leftover mount.
#
#   SOTP_DEBIAN_MIRROR    the archive (default http://deb.debian.org/debian)
#   SOTP_DEBIAN_SECURITY  its security suite (http://deb.debian.org/debian-security)
#   SOTP_APT_CACHE        the host's package cache (/var/cache/apt/archives)
#   SOTP_KEEP_ROOT=1      leave DIR in place (unmounted) for a post-mortem

DROOT=""
DROOT_MIRROR=${SOTP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DROOT_SECURITY=${SOTP_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
DROOT_CACHE=${SOTP_APT_CACHE:-/var/cache/apt/archives}
DROOT_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

droot_err() { echo "debian-root: $*" >&2; }

# The mount points at or below $1, one a line, deepest first (the 5th
# field of mountinfo; our paths have no blanks to unescape).
droot_mounts() {
	awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' \
	    /proc/self/mountinfo | sort -r
}

# droot_create DIR [PACKAGES]: 0 with DIR ready and mounted, or 1 with the
# reason on stderr (never a half-made root left mounted).
droot_create() {
	_pk=${2:-}
	if [ "$(id -u)" -ne 0 ]; then
		droot_err "needs root (mmdebstrap --mode=root, mount, chroot)"
		return 1
	fi
	for _b in mmdebstrap chroot mount umount; do
		command -v "$_b" >/dev/null 2>&1 || {
			droot_err "$_b not found (sh scripts/deps.sh installs it)"
			return 1
		}
	done
	[ -f "$DROOT_KEYRING" ] || {
		droot_err "$DROOT_KEYRING missing (debian-archive-keyring)"
		return 1
	}
	[ -d "$DROOT_CACHE" ] || mkdir -p "$DROOT_CACHE" || return 1
	case $1 in /*) ;; *) droot_err "DIR must be absolute: $1"; return 1 ;; esac
	[ ! -e "$1" ] || [ -z "$(ls -A "$1")" ] || {
		droot_err "$1 exists and is not empty"
		return 1
	}
	mkdir -p "$1" || return 1
	DROOT=$(cd "$1" && pwd -P)
	_log="$DROOT.log"

	# Say plainly when the archive is out of reach, before mmdebstrap
	# buries it in a resolver error. apt's own helper: no curl needed.
	if ! /usr/lib/apt/apt-helper download-file \
	    "$DROOT_MIRROR/dists/bookworm/InRelease" "$DROOT.probe" \
	    >"$_log" 2>&1; then
		droot_err "cannot reach the Debian archive at $DROOT_MIRROR:"
		grep -v '^W:' "$_log" | tail -n 5 | sed 's/^/  /' >&2
		droot_err "a clean Debian 12 root is made from it; set" \
		    "SOTP_DEBIAN_MIRROR to a reachable mirror"
		rm -f "$DROOT.probe"
		return 1
	fi
	rm -f "$DROOT.probe"

	# The root's cache gets links to the host's .debs before the
	# download; what mmdebstrap fetched stays there (essential/unlink
	# and cleanup/apt/cache skipped) for droot_cleanup to link back.
	if ! mmdebstrap --mode=root --variant=apt --format=directory \
	    ${_pk:+--include="$_pk"} \
	    --skip=essential/unlink --skip=cleanup/apt/cache \
	    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\" && find '$DROOT_CACHE' -maxdepth 1 -name '*.deb' -type f -exec ln -t \"\$1/var/cache/apt/archives\" {} + 2>/dev/null || true" \
	    bookworm "$DROOT" \
	    "deb [signed-by=$DROOT_KEYRING] $DROOT_MIRROR bookworm main" \
	    "deb [signed-by=$DROOT_KEYRING] $DROOT_MIRROR bookworm-updates main" \
	    "deb [signed-by=$DROOT_KEYRING] $DROOT_SECURITY bookworm-security main" \
	    >>"$_log" 2>&1; then
		droot_err "mmdebstrap could not make a Debian 12 root in $DROOT:"
		grep -E '^E:|^W:|[Ee]rror|[Ff]ailed' "$_log" | tail -n 15 |
		    sed 's/^/  /' >&2
		droot_err "(full log: $_log)"
		droot_cleanup
		return 1
	fi
	# DIR a mount point of its own, as / is on a real machine: inside,
	# unshare(1) --propagation private (tests/cli/t_syslog.sh) needs /
	# to be one, and nothing mounted inside reaches the host's mounts.
	if ! mount --bind "$DROOT" "$DROOT" ||
	    ! mount --make-private "$DROOT" ||
	    ! mount -t proc proc "$DROOT/proc" ||
	    ! mount --rbind /dev "$DROOT/dev" ||
	    ! mount --make-rslave "$DROOT/dev"; then
		droot_err "cannot mount $DROOT on itself, /proc and /dev in it"
		droot_cleanup
		return 1
	fi
	rm -f "$_log"
	return 0
}

# droot_run CMD [ARG...]: CMD inside the root, as root, with the
# environment a root login shell on a fresh machine has (and the mirror
# settings, which a nested root needs to reach the same archive).
droot_run() {
	chroot "$DROOT" /usr/bin/env -i HOME=/root LOGNAME=root USER=root \
	    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	    ${SOTP_DEBIAN_MIRROR:+SOTP_DEBIAN_MIRROR=$SOTP_DEBIAN_MIRROR} \
	    ${SOTP_DEBIAN_SECURITY:+SOTP_DEBIAN_SECURITY=$SOTP_DEBIAN_SECURITY} \
	    "$@"
}

# The processes whose root directory is DROOT or below it.
droot_pids() {
	for _p in /proc/[0-9]*; do
		_r=$(readlink "$_p/root" 2>/dev/null) || continue
		case $_r in "$DROOT" | "$DROOT"/*) echo "${_p#/proc/}" ;; esac
	done
}

droot_cleanup() {
	[ -n "$DROOT" ] || return 0
	_rc=0
	# Everything started inside: TERM, a grace period, then KILL.
	_pids=$(droot_pids)
	if [ -n "$_pids" ]; then
		for _p in $_pids; do kill "$_p" 2>/dev/null; done
		_i=0
		while [ $_i -lt 50 ] && [ -n "$(droot_pids)" ]; do
			sleep 0.1
			_i=$((_i + 1))
		done
		for _p in $(droot_pids); do kill -9 "$_p" 2>/dev/null; done
		sleep 0.2
	fi
	# Unmount deepest first; a busy mount is detached lazily. Stacked
	# mounts (the same point twice) take more than one round.
	_n=0
	while [ $_n -lt 10 ]; do
		_m=$(droot_mounts "$DROOT")
		[ -n "$_m" ] || break
		for _mp in $_m; do
			umount "$_mp" 2>/dev/null || umount -l "$_mp" 2>/dev/null
		done
		_n=$((_n + 1))
	done
	_m=$(droot_mounts "$DROOT")
	if [ -n "$_m" ]; then
		droot_err "still mounted, so $DROOT is left in place:" $_m
		_rc=1
		DROOT=""
		return $_rc
	fi
	# The .debs this root downloaded, linked into the host's cache
	# (complete files only: apt moves a download there when it is done).
	for _f in "$DROOT"/var/cache/apt/archives/*.deb; do
		[ -f "$_f" ] && [ ! -e "$DROOT_CACHE/${_f##*/}" ] || continue
		ln "$_f" "$DROOT_CACHE/" 2>/dev/null || break
	done
	if [ "${SOTP_KEEP_ROOT:-0}" = 1 ]; then
		droot_err "kept $DROOT (SOTP_KEEP_ROOT=1)"
	else
		rm -rf --one-file-system "$DROOT" "$DROOT.log" || _rc=1
	fi
	DROOT=""
	return $_rc
}

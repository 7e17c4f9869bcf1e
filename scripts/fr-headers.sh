#!/bin/sh
# Completes Debian 12's FreeRADIUS headers so that an out-of-tree module
# builds:   sh scripts/fr-headers.sh OUTDIR
#
# libfreeradius-dev 3.2.1 ships radiusd.h and autoconf.h, which include 8
# headers that upstream never installed (fixed upstream in 3.2.9). We take
# those 8 from Debian's own freeradius source package of exactly the
# installed version, rewrite <freeradius-devel/...> to <freeradius/...> as
# upstream's install rule does, and build OUTDIR/freeradius/ from them plus
# symlinks to every installed /usr/include/freeradius/*.h. Compile with
# -IOUTDIR. Nothing here is committed; see ../shared/notes.
#
# apt is used with private sources, lists and caches under a temp dir, so
# /etc/apt and /var/lib/apt are never touched. The source tarball is kept
# in $SOTP_FR_CACHE (default OUTDIR/.cache) and reused; a second run with
# the same installed version does nothing.
set -eu

HEADERS="automask.h clients.h connection.h listen.h log.h process.h tmpl.h xlat.h"
INC=/usr/include/freeradius
MIRROR=${SOTP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECMIRROR=${SOTP_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() {
	echo "fr-headers: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: fr-headers.sh OUTDIR"
OUT=$1

[ -f "$INC/radiusd.h" ] ||
	die "$INC/radiusd.h missing; install libfreeradius-dev (sh scripts/deps.sh)"
VER=$(dpkg-query -W -f='${Version}' libfreeradius-dev 2>/dev/null) ||
	die "cannot read the libfreeradius-dev version with dpkg-query"
[ -n "$VER" ] || die "libfreeradius-dev is not installed"
UPVER=${VER#*:}
UPVER=${UPVER%-*}

# A later libfreeradius-dev may ship some or all of them (upstream 3.2.9
# does): fetch only what is missing.
NEED=""
for h in $HEADERS; do
	[ -e "$INC/$h" ] || NEED="$NEED $h"
done
HEADERS=$NEED

STAMP="$OUT/freeradius/.version"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$VER" ]; then
	missing=0
	for h in $HEADERS; do
		[ -s "$OUT/freeradius/$h" ] || missing=1
	done
	[ "$missing" -eq 0 ] && exit 0
fi

link_all() {
	rm -rf "$1"
	mkdir -p "$1"
	for f in "$INC"/*.h; do
		ln -s "$f" "$1/$(basename "$f")"
	done
}

if [ -z "$HEADERS" ]; then
	link_all "$OUT/freeradius.new"
	echo "$VER" >"$OUT/freeradius.new/.version"
	rm -rf "$OUT/freeradius"
	mv "$OUT/freeradius.new" "$OUT/freeradius"
	exit 0
fi

CACHE=${SOTP_FR_CACHE:-$OUT/.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fr-headers.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' INT TERM HUP

# The orig tarball holds src/include; Debian's patches do not touch it.
tarball() {
	for f in "$CACHE"/freeradius_"$UPVER".orig.tar.*; do
		[ -f "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

if ! TARBALL=$(tarball); then
	command -v apt-get >/dev/null || die "apt-get not found"
	A="$TMP/apt"
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/dl"
	cat >"$A/sources.list" <<EOF
deb-src [signed-by=$KEYRING] $MIRROR bookworm main
deb-src [signed-by=$KEYRING] $MIRROR bookworm-updates main
deb-src [signed-by=$KEYRING] $SECMIRROR bookworm-security main
EOF
	set -- -q -o "Dir::Etc::SourceList=$A/sources.list" \
	    -o Dir::Etc::SourceParts=/dev/null \
	    -o "Dir::State::Lists=$A/lists" \
	    -o "Dir::Cache=$A/cache" \
	    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
	echo "fr-headers: fetching Debian source freeradius=$VER" >&2
	if ! apt-get "$@" update >"$TMP/apt.log" 2>&1 ||
	    ! (cd "$A/dl" && apt-get "$@" source --download-only \
	    "freeradius=$VER") >>"$TMP/apt.log" 2>&1; then
		sed 's/^/  /' "$TMP/apt.log" >&2
		die "could not download Debian's freeradius $VER source package.
  It supplies 8 headers libfreeradius-dev lacks ($HEADERS).
  Needs network access to $MIRROR (set SOTP_DEBIAN_MIRROR for another
  mirror, as root on CI), or put freeradius_$UPVER.orig.tar.* in $CACHE."
	fi
	for f in "$A"/dl/freeradius_"$UPVER".orig.tar.*; do
		[ -f "$f" ] && cp "$f" "$CACHE/"
	done
	TARBALL=$(tarball) || die "the source package has no orig tarball"
fi

X="$TMP/x"
mkdir -p "$X"
members=""
for h in $HEADERS; do
	members="$members --wildcards */src/include/$h"
done
# shellcheck disable=SC2086
tar -xf "$TARBALL" -C "$X" $members ||
	die "$TARBALL lacks some of: $HEADERS"

# Build the tree in a scratch dir, then swap it in, so an interrupted run
# never leaves a half-made include dir behind.
NEW="$OUT/freeradius.new"
link_all "$NEW"
for h in $HEADERS; do
	src=$(find "$X" -path "*/src/include/$h" | head -n 1)
	[ -n "$src" ] || die "$h not found in $TARBALL"
	sed -e 's/#\([\t ]*\)include <freeradius-devel\/\([^>]*\)>/#\1include <freeradius\/\2>/g' \
	    "$src" >"$NEW/$h"
done
echo "$VER" >"$NEW/.version"
rm -rf "$OUT/freeradius"
mv "$NEW" "$OUT/freeradius"
echo "fr-headers: $OUT/freeradius ready for freeradius $VER" >&2

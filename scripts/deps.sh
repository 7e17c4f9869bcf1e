#!/bin/sh
# Installs the Debian 12 packages that shinkin-otp's build, tests and demo
# need, when any is missing. As root it runs apt-get itself; otherwise it
# prints the exact command to run and fails.
#   sh scripts/deps.sh        the build, the tests and the demo
#   sh scripts/deps.sh fuzz   make fuzz: clang 14 and its libFuzzer runtime
#   sh scripts/deps.sh bench  make bench: the PAM peers it measures ours
#                             against (pam_oath, google-authenticator)
set -eu

# Found by running make demo and make check on a clean mmdebstrap root
# (.ci/fresh-root), not by reading the code. Some a development image has
# anyway: xz-utils (fr-headers.sh unpacks the FreeRADIUS .tar.xz), man-db
# (tests/man formats with groff). The packaging and its suite:
# build-essential (dpkg-checkbuilddeps wants it) and debhelper for
# make deb, lintian, mmdebstrap and mount (clean Debian 12 roots: mount
# is not essential, a clean root has no mount or umount), iproute2 (the
# package suite's network namespace).
PKGS="gcc make pkg-config libssl-dev libsqlite3-dev libcrypt-dev
libcmocka-dev libpam0g-dev libpam-wrapper pamtester oathtool sqlite3
freeradius freeradius-utils libfreeradius-dev libtalloc-dev libpcre3-dev
libxml2-dev libxmlsec1-dev libxmlsec1-openssl
libqrencode-dev libpng-dev zlib1g-dev zbar-tools mandoc valgrind clang-format jq
python3-pskc pskctool xmlsec1 faketime
xz-utils man-db build-essential debhelper lintian mmdebstrap mount iproute2
ca-certificates libpq-dev postgresql
libp11-kit-dev p11-kit-modules softhsm2 opensc"
[ "${1:-}" = fuzz ] && PKGS="$PKGS clang-14 libclang-rt-14-dev"
[ "${1:-}" = bench ] && PKGS="$PKGS libpam-oath libpam-google-authenticator perl"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
	    grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing Debian packages; as root run:" >&2
	echo "  apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >&2
# The freeradius package starts a system radiusd on ports 1812/1813; the
# tests run their own private one and the system one is not wanted here.
# Likewise postgresql's own cluster on port 5432: the tests start a private
# server on a unix socket (scripts/pg-test-server.sh).
if [ -d /run/systemd/system ]; then
	systemctl disable --now freeradius >/dev/null 2>&1 || true
	systemctl disable --now postgresql >/dev/null 2>&1 || true
fi

#!/bin/sh
# A private PostgreSQL server for the tests, never the system one.
#   scripts/pg-test-server.sh start DIR   initdb into DIR, start, print the URL
#   scripts/pg-test-server.sh stop DIR    stop it (quietly if it is not up)
# It listens on a unix socket inside DIR only (listen_addresses = ''); the
# port number serves only to name the socket. PostgreSQL refuses to run as
# root, so as root DIR is made owned by the `postgres` user and the server
# runs as that user; as anyone else it runs as the caller. Trust
# authentication is safe here because DIR is mode 0700.
set -eu

PORT=${SOTP_PG_PORT:-54329}
DBUSER=sotp
DBNAME=sotp

usage() {
	echo "usage: $0 start|stop DIR" >&2
	exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
DIR=$2
case "$DIR" in /*) ;; *) DIR=$(pwd)/$DIR ;; esac

# The server's binaries: PG_BIN, else the newest Debian install.
bindir() {
	if [ -n "${PG_BIN:-}" ]; then
		echo "$PG_BIN"
		return
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/pg_ctl" ] && { echo "$d"; return; }
	done
	echo "pg-test-server: no PostgreSQL server found (apt-get install postgresql)" >&2
	exit 1
}
BIN=$(bindir)

# as_owner CMD...: runs CMD as the user that owns the server.
if [ "$(id -u)" -eq 0 ]; then
	as_owner() { runuser -u postgres -- "$@"; }
else
	as_owner() { "$@"; }
fi

case "$cmd" in
start)
	# The socket path must fit in sun_path (107 bytes).
	if [ ${#DIR} -gt 80 ]; then
		echo "pg-test-server: $DIR is too long for a socket directory" >&2
		exit 1
	fi
	mkdir -p "$DIR"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || {
			echo "pg-test-server: no 'postgres' user (apt-get install postgresql)" >&2
			exit 1
		}
		chown postgres: "$DIR"
	fi
	chmod 700 "$DIR"
	as_owner "$BIN/initdb" -D "$DIR/data" -U "$DBUSER" -A trust \
	    -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1 || {
		cat "$DIR/initdb.log" >&2
		exit 1
	}
	# Appended settings win over initdb's defaults.
	as_owner sh -c 'cat >>"$1/data/postgresql.conf"' sh "$DIR" <<EOF
listen_addresses = ''
unix_socket_directories = '$DIR'
unix_socket_permissions = 0700
port = $PORT
fsync = on
max_connections = 40
shared_buffers = 16MB
EOF
	as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
	    -t 60 start >/dev/null || {
		cat "$DIR/server.log" >&2
		exit 1
	}
	as_owner "$BIN/createdb" -h "$DIR" -p "$PORT" -U "$DBUSER" "$DBNAME"
	echo "postgresql:///$DBNAME?host=$DIR&port=$PORT&user=$DBUSER"
	;;
stop)
	[ -f "$DIR/data/postmaster.pid" ] || exit 0
	as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null
	;;
*)
	usage
	;;
esac

#!/bin/sh
# A private PostgreSQL server for the tests, never the system one.
#   scripts/pg-test-server.sh start DIR   initdb into DIR, start, print the URL
#   scripts/pg-test-server.sh stop DIR    stop it (quietly if it is not up)
# and, for the failover test (tests/farm), a primary with a standby:
#   scripts/pg-test-server.sh standby DIR PRIMARY_DIR NAME
#       a streaming standby of the server in PRIMARY_DIR (pg_basebackup,
#       replication over PRIMARY_DIR's unix socket), reporting itself to
#       the primary as NAME (application_name); prints its URL
#   scripts/pg-test-server.sh sync DIR NAME
#       makes the server in DIR wait, at each commit, for the standby NAME
#       (synchronous_commit = on, synchronous_standby_names = 'NAME')
#   scripts/pg-test-server.sh promote DIR   the standby in DIR takes over
#   scripts/pg-test-server.sh crash DIR     SIGKILL to the server and all
#       its processes at once, as when its machine dies
# Each server's port is SOTP_PG_PORT at the time it is made (a standby
# needs its own); SOTP_PG_CONNECTIONS sets max_connections (40) at start
# (a standby copies its primary's).
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
	echo "usage: $0 start|stop|promote|crash DIR | standby DIR PRIMARY_DIR NAME | sync DIR NAME" >&2
	exit 2
}
[ $# -ge 2 ] || usage
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

# mkdir_owned DIR: a socket and data directory for a server.
mkdir_owned() {
	# The socket path must fit in sun_path (107 bytes).
	if [ ${#1} -gt 80 ]; then
		echo "pg-test-server: $1 is too long for a socket directory" >&2
		exit 1
	fi
	mkdir -p "$1"
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || {
			echo "pg-test-server: no 'postgres' user (apt-get install postgresql)" >&2
			exit 1
		}
		chown postgres: "$1"
	fi
	chmod 700 "$1"
}

# The port a server in DIR listens on (the last "port =" set wins).
port_of() {
	as_owner sed -n 's/^port = \([0-9]*\).*/\1/p' "$1/data/postgresql.conf" |
	    tail -n 1
}

# psql_in DIR SQL: runs SQL on the server in DIR.
psql_in() {
	as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$(port_of "$1")" \
	    -U "$DBUSER" -d postgres -c "$2"
}

case "$cmd" in
start)
	mkdir_owned "$DIR"
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
max_connections = ${SOTP_PG_CONNECTIONS:-40}
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
standby)
	[ $# -eq 4 ] || usage
	PRIMARY=$3
	NAME=$4
	mkdir_owned "$DIR"
	PPORT=$(port_of "$PRIMARY")
	as_owner "$BIN/pg_basebackup" -D "$DIR/data" -h "$PRIMARY" -p "$PPORT" \
	    -U "$DBUSER" -X stream -c fast -R >"$DIR/basebackup.log" 2>&1 || {
		cat "$DIR/basebackup.log" >&2
		exit 1
	}
	# The copy has the primary's settings; these come after and win.
	as_owner sh -c 'cat >>"$1/data/postgresql.conf"' sh "$DIR" <<EOF
unix_socket_directories = '$DIR'
port = $PORT
hot_standby = on
EOF
	as_owner sh -c 'cat >>"$1/data/postgresql.auto.conf"' sh "$DIR" <<EOF
primary_conninfo = 'host=$PRIMARY port=$PPORT user=$DBUSER application_name=$NAME'
EOF
	as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
	    -t 60 start >/dev/null || {
		cat "$DIR/server.log" >&2
		exit 1
	}
	echo "postgresql:///$DBNAME?host=$DIR&port=$PORT&user=$DBUSER"
	;;
sync)
	[ $# -eq 3 ] || usage
	psql_in "$DIR" "ALTER SYSTEM SET synchronous_commit = 'on'" &&
	    psql_in "$DIR" "ALTER SYSTEM SET synchronous_standby_names = '$3'" &&
	    psql_in "$DIR" "SELECT pg_reload_conf()" >/dev/null
	;;
promote)
	as_owner "$BIN/pg_ctl" -D "$DIR/data" -w -t 60 promote >/dev/null
	;;
crash)
	pid=$(head -n 1 "$DIR/data/postmaster.pid")
	# Every process of the server at once (by id, none other).
	kill -KILL "$pid" $(ps -o pid= --ppid "$pid") 2>/dev/null
	# Gone, or a zombie its reaper has not collected yet.
	while [ -n "$(ps -o stat= -p "$pid" | grep -v Z)" ]; do sleep 0.01; done
	;;
*)
	usage
	;;
esac

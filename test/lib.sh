# Shared by test/run-tests.sh and test/demo.sh: packages, build, clusters.
# Source it; it defines functions and variables only.

EB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EB_PACKAGES="postgresql-15 postgresql-server-dev-15 postgresql-15-cron clang libclang-rt-14-dev
postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
make gcc python3-psycopg2 prometheus curl postgresql-15-pgq3 pgbouncer
librdkafka-dev kcat pkg-config libcurl4-openssl-dev"
# The examples suite needs node and npm: the ones on the PATH, else Debian's.
command -v node >/dev/null && command -v npm >/dev/null || EB_PACKAGES="$EB_PACKAGES nodejs npm"

eb_log() { printf '==> %s\n' "$*" >&2; }

# Installs the Debian packages the build and the suites need (root only).
eb_install_packages() {
	local missing=() p
	for p in $EB_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		eb_log "missing Debian packages: ${missing[*]}"
		eb_log "install them as root (apt-get install ${missing[*]}) or run this command as root"
		return 1
	fi
	eb_log "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

EB_PGBIN=${EB_PGBIN:-/usr/lib/postgresql/15/bin}
EB_PG_CONFIG=$EB_PGBIN/pg_config
[ -x "$EB_PG_CONFIG" ] || EB_PG_CONFIG=pg_config

# Builds with warnings as errors and assertions, and installs (as root).
eb_build_install() {
	local sudo=()
	cd "$EB_ROOT"
	eb_log "building"
	make -s PG_CONFIG="$EB_PG_CONFIG" EB_CFLAGS="-Werror -DUSE_ASSERT_CHECKING" >/dev/null
	[ "$(id -u)" != 0 ] && sudo=(sudo)
	eb_log "installing into $("$EB_PG_CONFIG" --pkglibdir)"
	"${sudo[@]}" make -s PG_CONFIG="$EB_PG_CONFIG" install >/dev/null
	# The install script of 0.1.0, for the upgrade test (test/upgrade/README.md).
	"${sudo[@]}" install -m 644 test/upgrade/eventbus--0.1.0.sql "$("$EB_PG_CONFIG" --sharedir)/extension/"
}

# The user that runs clusters: initdb refuses root, so root uses "postgres".
eb_cluster_user() {
	if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

# Runs a command as the cluster user.
eb_as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# eb_start_cluster DIR PORT [extra postgresql.conf lines]
# Creates (if needed) and starts a cluster in DIR, listening on 127.0.0.1 and
# a socket in DIR, with eventbus and pg_cron preloaded.
# Keep its settings in step with test/eventbus.conf (make installcheck).
eb_start_cluster() {
	local dir=$1 port=$2 extra=${3:-}
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown postgres: "$dir"
	chmod 755 "$dir"
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		eb_as_pg "$EB_PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust \
			-E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; return 1; }
		eb_as_pg tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF
# eventbus test/demo cluster
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'eventbus,pg_cron'
cron.database_name = 'postgres'
max_prepared_transactions = 10
# one eventbus worker per database with the extension, plus the launcher
max_worker_processes = 16
fsync = on
log_line_prefix = '%m [%p] %q%a '
$extra
EOF
	fi
	if ! eb_as_pg "$EB_PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		eb_as_pg "$EB_PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
			{ tail -n 30 "$dir/server.log" >&2; return 1; }
	fi
}

# eb_stop_cluster DIR: stops the cluster in DIR, if it runs.
eb_stop_cluster() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	eb_as_pg "$EB_PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

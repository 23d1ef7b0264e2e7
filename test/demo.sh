#!/usr/bin/env bash
# The run command (make demo): installs what it needs (as root), builds,
# installs, starts a local cluster with eventbus and pg_cron preloaded in
# .demo/, creates database eventbus_demo with the extension and runs
# test/demo.sql. Running it again rebuilds, restarts and re-creates the demo.
#
#   bash test/demo.sh start | stop        (make demo | make demo-stop)
#   EB_DEMO_PORT   port of the demo cluster (54320)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${EB_DEMO_PORT:-54320}
DIR=$EB_ROOT/.demo

case ${1:-start} in
stop)
	eb_stop_cluster "$DIR"
	rm -rf "$DIR"
	eb_log "demo cluster stopped and removed"
	exit 0
	;;
start) ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac

eb_install_packages
eb_build_install
# A restart loads the freshly installed library into the postmaster.
eb_stop_cluster "$DIR"
eb_log "starting the demo cluster in $DIR (port $PORT)"
eb_start_cluster "$DIR" "$PORT"

export PGHOST=$DIR PGPORT=$PORT PGUSER=postgres
psql -q -X -d postgres -c "DROP DATABASE IF EXISTS eventbus_demo" -c "CREATE DATABASE eventbus_demo"
psql -q -X -d eventbus_demo -c "CREATE EXTENSION eventbus"
eb_log "running test/demo.sql"
psql -X -a -v ON_ERROR_STOP=1 -d eventbus_demo -f "$EB_ROOT/test/demo.sql"

cat <<MSG

The demo cluster is running (eventbus and pg_cron preloaded).
  connect:  psql -h $DIR -p $PORT -U postgres eventbus_demo
  stop:     make demo-stop
MSG

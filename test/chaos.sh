#!/usr/bin/env bash
# make chaos: the crash-cycle TAP test (test/t/017_crash_cycles.pl) with 20
# immediate-shutdown cycles instead of the test command's 3, on a cluster of
# its own; prints the figures (the table of docs/reliability.md) and keeps
# them in test/results/chaos/: report.md, tap.out (the test's output),
# log/ (the test's and the server's logs) and, when the test failed, ledger/
# (test/crash_load.py). Exits non-zero when the test fails.
#
# Like make test, it builds with -Werror and assertions and installs first
# (as root it installs the Debian packages it needs), then runs the test as
# user postgres when run as root (initdb refuses root).
#
#   EB_CHAOS_CYCLES      immediate shutdowns (20)
#   EB_CHAOS_PUBLISHERS  publisher connections (4)
#   EB_CHAOS_RATE        events/s per publisher, at most (1000)
#   EB_CHAOS_SEED        seed of the publishers' and the test's random choices (random)
#   EB_CHAOS_INSTALL     0: test the eventbus that is installed, do not build (1)
#   EB_PGBIN             the PostgreSQL binaries (/usr/lib/postgresql/15/bin)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export EB_CHAOS_CYCLES=${EB_CHAOS_CYCLES:-20}
OUT=$EB_ROOT/test/results/chaos

EB_PACKAGES="postgresql-15 postgresql-server-dev-15 libipc-run-perl make gcc python3-psycopg2" \
	eb_install_packages || exit 1
if [ "${EB_CHAOS_INSTALL:-1}" != 0 ]; then
	eb_build_install || { eb_log "build failed"; exit 1; }
fi

WORK=$(mktemp -d /tmp/eventbus-chaos.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"

eb_log "test/t/017_crash_cycles.pl with $EB_CHAOS_CYCLES cycles (output: test/results/chaos/tap.out)"
cd "$EB_ROOT"
eb_as_pg env EB_CHAOS_CYCLES="$EB_CHAOS_CYCLES" make -s PG_CONFIG="$EB_PG_CONFIG" TEST_OUTDIR="$WORK" \
	prove_installcheck PROVE_TESTS=test/t/017_crash_cycles.pl PROVE_FLAGS=-v 2>&1 | tee "$OUT/tap.out"
status=${PIPESTATUS[0]}
cp -r "$WORK/tap/tmp_check/log" "$OUT/log" 2>/dev/null
# The ledgers are tens of MB: kept only when the test failed.
[ "$status" = 0 ] || cp -r "$WORK/tap/tmp_check/chaos_ledger" "$OUT/ledger" 2>/dev/null
if [ -f "$WORK/tap/tmp_check/chaos_report.md" ]; then
	cp "$WORK/tap/tmp_check/chaos_report.md" "$OUT/report.md"
	echo
	cat "$OUT/report.md"
else
	eb_log "no figures: the test stopped before its verdict (see test/results/chaos/tap.out)"
	status=1
fi
exit "$status"

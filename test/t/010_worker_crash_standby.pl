# Background workers through a crash and on a standby: after a crash
# restart (kill -9 of a worker) a new launcher and new workers come back with
# no committed event lost; a streaming standby runs no launcher and no
# worker. Time bounds here are liveness bounds, far above what is expected,
# not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = start_primary('primary', "eventbus.worker_restart_delay = 1\n");
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql($_, 'CREATE EXTENSION eventbus') for qw(app other);
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'eventbus worker'")
  or die 'the workers of app and other did not start';
my ($t, $t0, $pid_before, $log_offset);

# ---- 1. kill -9 of a worker: crash restart; everything comes back.
$node->safe_psql('app', join("\n",
		map { "SELECT eventbus.publish('crash.x', '{\"n\": $_}');" } 1 .. 50));
is($node->safe_psql('app', 'SELECT count(*) FROM eventbus.events'), '50',
	'50 events committed before the kill');
$pid_before = worker_pid($node, 'app');
my $launcher_before = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus launcher'");
$log_offset = -s $node->logfile;
is(kill('KILL', $pid_before), 1, 'kill -9 of the worker');
ok(wait_log($node, qr/all server processes terminated; reinitializing/, $log_offset, 30),
	'the postmaster does a crash restart');
like(slurp_file($node->logfile, $log_offset),
	qr/\(PID $pid_before\) was terminated by signal 9/, 'because of the killed worker');
$t0 = time;
ok(defined wait_true($node, 'SELECT true', 60), 'the cluster accepts queries again');
$t = wait_true($node,
	"SELECT (SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus launcher'
	           AND pid <> $launcher_before)
	    AND (SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker'
	           AND datname = 'app' AND pid <> $pid_before)", 30);
ok(defined $t, 'a new launcher and a new worker for app run after the crash restart');
note(sprintf('launcher and worker back %.2f s after the cluster accepted queries',
		$t // (time - $t0)));
ok(wait_log($node, qr/eventbus launcher started/, $log_offset, 10),
	'the new launcher logged its start');
is($node->safe_psql('app', 'SELECT count(*) FROM eventbus.events'), '50',
	'the events committed before the kill are all there');
ok(defined wait_true($node, has_worker_query('other'), 10), 'other has its worker again');

# ---- 2. A streaming standby runs no launcher and no worker.
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is($standby->safe_psql('app', 'SELECT count(*) FROM eventbus.events'), '50',
	'the standby replays the events');
usleep(3_000_000);
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity
		  WHERE backend_type IN ('eventbus launcher', 'eventbus worker')"),
	'0', 'the standby runs no eventbus launcher and no worker');
is(launchers($node), '1', 'while the primary runs its launcher');
is(workers($node), 'app,other', 'and its workers');
unlike(slurp_file($standby->logfile), qr/eventbus launcher started/,
	'the standby never started the launcher');
like(slurp_file($node->logfile), qr/eventbus launcher started/,
	'the primary did');
$standby->stop;

$node->stop;

done_testing();

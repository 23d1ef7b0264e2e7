# Background workers: the launcher starts one worker per database that has
# the extension (at server start, at CREATE EXTENSION), none for the
# others; DROP EXTENSION stops it for good; DROP DATABASE, ALTER DATABASE
# RENAME and CREATE DATABASE ... TEMPLATE are not blocked by it; a worker
# that is terminated is restarted after eventbus.worker_restart_delay. DROP
# DATABASE also works just after CREATE EXTENSION, while the worker is still
# starting. Crash restarts and standbys: 010_worker_crash_standby.pl; the
# NOTIFY lock: 011_notify_lock.pl. Time bounds here are liveness bounds, far
# above what is expected, not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = start_primary('primary');

# ---- 1. A database that has the extension when the server starts.
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('app', 'CREATE EXTENSION eventbus');
my $app_oid = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'app'");
my $other_oid = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'other'");
my $other_commits_before = $node->safe_psql('postgres',
	"SELECT xact_commit FROM pg_stat_database WHERE datname = 'other'");
$node->restart;
ok($node->poll_query_until('postgres', has_worker_query('app')),
	'after a restart, a worker runs for the database that has the extension');
is(launchers($node), '1', 'one launcher runs');
like(slurp_file($node->logfile), qr/eventbus worker started for database "app"/,
	'the worker logs its start');

# ---- 3. No worker stays for the databases without the extension. The
# launcher probed every database in the round that started app's worker.
my $t = wait_true($node,
	"SELECT string_agg(coalesce(datname, '?'), ',' ORDER BY datname) = 'app'
	   FROM pg_stat_activity WHERE backend_type = 'eventbus worker'", 10);
ok(defined $t, 'only the worker of app remains: none for postgres and other');
usleep(1_500_000);
is(workers($node), 'app', '1.5 s later still only app has a worker');
is(launchers($node), '1', 'and the launcher');
ok(wait_true($node,
		"SELECT xact_commit > $other_commits_before FROM pg_stat_database WHERE datname = 'other'",
		10),
	'other was probed (a worker connected and committed there) although no client connected');
unlike(slurp_file($node->logfile), qr/eventbus worker started for database "other"/,
	'no worker started its work in other');

# ---- 2. CREATE EXTENSION in a running cluster: other was probed and found
# without the extension, and the launcher does not probe it again, so only
# the request made at commit can start its worker.
$node->safe_psql('other', 'CREATE EXTENSION eventbus');
my $t0 = time;
$t = wait_true($node, has_worker_query('other'), 30);
ok(defined $t, 'CREATE EXTENSION starts a worker for its database');
$t //= time - $t0;
note(sprintf('worker of other appeared %.2f s after CREATE EXTENSION committed', $t));
cmp_ok($t, '<', 10, 'within 10 s of the commit');

# ---- 4. DROP EXTENSION: the worker exits and is not restarted.
my $log_offset = -s $node->logfile;
$node->safe_psql('other', 'DROP EXTENSION eventbus');
$t0 = time;
$t = wait_true($node, no_worker_query('other'), 10);
ok(defined $t, 'DROP EXTENSION stops the worker of its database');
note(sprintf('worker of other gone %.2f s after DROP EXTENSION', $t // (time - $t0)));
ok(wait_log($node, qr/eventbus worker stopping: the extension was dropped from database $other_oid/,
		$log_offset, 5),
	'the worker logs why it stops');
usleep(3_000_000);
is(workers($node), 'app', '3 s later it has not been restarted');

# ---- 5. CREATE EXTENSION again, then DROP DATABASE.
$node->safe_psql('other', 'CREATE EXTENSION eventbus');
ok(defined wait_true($node, has_worker_query('other'), 10),
	'CREATE EXTENSION after DROP EXTENSION starts the worker again');
$t0 = time;
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE other');
my $drop_time = time - $t0;
is($ret, 0, 'DROP DATABASE of a database with a running worker succeeds');
is($err, '', 'without error (not "being accessed by other users")');
note(sprintf('DROP DATABASE took %.2f s', $drop_time));
cmp_ok($drop_time, '<', 5, 'DROP DATABASE does not wait for the worker until PostgreSQL gives up (5 s)');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventbus worker' AND datid = $other_oid"),
	'0', 'no worker remains for the dropped database');
is(workers($node), 'app', 'only app has a worker');

# ---- 6. ALTER DATABASE ... RENAME, CREATE DATABASE ... TEMPLATE.
my $pid_before = worker_pid($node, 'app');
$t0 = time;
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE app RENAME TO app2');
is($ret, 0, 'ALTER DATABASE RENAME of a database with a running worker succeeds');
is($err, '', 'without error');
note(sprintf('ALTER DATABASE RENAME took %.2f s', time - $t0));
$t0 = time;
$t = wait_true($node, has_worker_query('app2'), 10);
ok(defined $t, 'the worker comes back for the renamed database');
note(sprintf('worker of app2 back %.2f s after the rename', $t // (time - $t0)));
isnt(worker_pid($node, 'app2'), $pid_before, 'it is a new worker');

($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE app_copy TEMPLATE app2');
is($ret, 0, 'CREATE DATABASE ... TEMPLATE of a database with a running worker succeeds');
is($err, '', 'without error');
ok(defined wait_true($node, has_worker_query('app2'), 10),
	'the worker of the template comes back');

unlike(slurp_file($node->logfile), qr/exited unexpectedly/,
	'workers stopped on purpose (DROP EXTENSION, DROP DATABASE, RENAME, TEMPLATE) are not reported as failures');

# ---- 7. A terminated worker is restarted after worker_restart_delay (SIGHUP).
$node->safe_psql('postgres',
	'ALTER SYSTEM SET eventbus.worker_restart_delay = 1; SELECT pg_reload_conf();');
usleep(1_000_000);    # the launcher processes the SIGHUP at once
$pid_before = worker_pid($node, 'app2');
$log_offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid_before)"),
	't', 'pg_terminate_backend of the worker');
$t0 = time;
$t = wait_true($node,
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker'
	    AND datname = 'app2' AND pid <> $pid_before", 15);
ok(defined $t, 'a new worker replaces the terminated one');
note(sprintf('new worker %.2f s after pg_terminate_backend (restart delay 1 s)',
		$t // (time - $t0)));
like(slurp_file($node->logfile, $log_offset),
	qr/LOG:  eventbus worker for database $app_oid was stopped by SIGTERM; restarting it in 1 s/,
	'the launcher logs the stop by SIGTERM as such (LOG), with the reloaded delay');
unlike(slurp_file($node->logfile, $log_offset), qr/exited unexpectedly/,
	'and not as an unexpected exit');

# ---- 5b. DROP DATABASE right after CREATE EXTENSION, while the worker that
# the commit asked for is still starting: the drop must not fail because of
# it either. (Here, after 7, so that it cannot disturb the log checks
# above.) A worker registered but not yet running sees the stop when it
# claims its slot, and leaves.
my $dropper = $node->background_psql('postgres', on_error_stop => 0);
my $race_failures = 0;
my $race_slowest = 0;
for my $i (1 .. 6)
{
	$node->safe_psql('postgres', "CREATE DATABASE racy$i");
	$node->safe_psql("racy$i", 'CREATE EXTENSION eventbus');
	$t0 = time;
	my ($dout, $dfailed) = $dropper->query("DROP DATABASE racy$i");
	my $took = time - $t0;
	$race_slowest = $took if $took > $race_slowest;
	if ($dfailed)
	{
		$race_failures++;
		note("DROP DATABASE racy$i just after CREATE EXTENSION failed after "
			  . sprintf('%.2f s: %s', $took, $dropper->{stderr}));
		$dropper->{stderr} = '';
		# The worker now runs; dropping again works.
		$node->safe_psql('postgres', "DROP DATABASE racy$i");
	}
}
$dropper->quit;
note(sprintf('DROP DATABASE just after CREATE EXTENSION: %d of 6 failed, slowest %.2f s',
		$race_failures, $race_slowest));
is($race_failures, 0,
	'DROP DATABASE just after CREATE EXTENSION succeeds (worker still starting)');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_database WHERE datname LIKE 'racy%'"),
	'0', 'the racy databases are gone');
ok(defined wait_true($node,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'eventbus worker'
		    AND (datname IS NULL OR datname LIKE 'racy%')", 10),
	'and no worker is left for them');

# app_copy, a copy of app2, has the extension: the launcher's scan (every 10 s)
# starts its worker.
ok(defined wait_true($node, has_worker_query('app_copy'), 20),
	'the database created from the template gets its worker');

$node->stop;

done_testing();

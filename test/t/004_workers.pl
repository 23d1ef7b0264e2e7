# Background workers: the launcher starts one worker per database that has
# the extension (at server start, at CREATE EXTENSION), none for the
# others; DROP EXTENSION stops it for good; DROP DATABASE, ALTER DATABASE
# RENAME and CREATE DATABASE ... TEMPLATE are not blocked by it; a worker
# that is terminated is restarted after eventbus.worker_restart_delay, and
# after a crash restart (kill -9) everything comes back with no committed
# event lost; a streaming standby runs no launcher and no worker; and
# publishing transactions never take the NOTIFY queue lock (the worker
# sends the notifications). DROP DATABASE also works just after CREATE
# EXTENSION, while the worker is still starting. Time bounds here are
# liveness bounds, far above what is expected, not speed claims.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

# The lock a committing NOTIFY takes: object 0 of pg_database (1262).
my $notify_lock = "l.locktype = 'object' AND l.classid = 1262 AND l.objid = 0";

# Polls $query (on database postgres) until it returns 't'. Returns the
# seconds it took, or undef after $timeout seconds. Failed connections
# (crash restart in progress) count as "not yet".
sub wait_true
{
	my ($node, $query, $timeout) = @_;
	my $t0 = time;
	while (1)
	{
		my ($ret, $out) = $node->psql('postgres', $query);
		return time - $t0 if defined $ret && $ret == 0 && defined $out && $out eq 't';
		return undef if time - $t0 > $timeout;
		usleep(50_000);
	}
}

# Waits until the server log, from byte $offset, matches $re; returns
# whether it did within $timeout seconds.
sub wait_log
{
	my ($node, $re, $offset, $timeout) = @_;
	my $t0 = time;
	while (time - $t0 <= $timeout)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $re;
		usleep(100_000);
	}
	return 0;
}

# The databases that have an eventbus worker, comma-separated and sorted.
sub workers
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(coalesce(datname, '?'), ',' ORDER BY datname), '')
		   FROM pg_stat_activity WHERE backend_type = 'eventbus worker'");
}

# Number of eventbus launchers.
sub launchers
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventbus launcher'");
}

# The pid of the worker of database $db ('' when none).
sub worker_pid
{
	my ($node, $db) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity
		  WHERE backend_type = 'eventbus worker' AND datname = '$db'");
}

sub has_worker_query
{
	my ($db) = @_;
	return "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker' AND datname = '$db'";
}

sub no_worker_query
{
	my ($db) = @_;
	return "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'eventbus worker' AND datname = '$db'";
}

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'eventbus'
max_worker_processes = 16
restart_after_crash = on
});
$node->start;

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
	qr/eventbus worker for database $app_oid exited unexpectedly; restarting it in 1 s/,
	'the launcher logs the unexpected exit, with the reloaded delay');

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

# ---- 8. kill -9 of a worker: crash restart; everything comes back.
$node->safe_psql('app2', join("\n",
		map { "SELECT eventbus.publish('crash.x', '{\"n\": $_}');" } 1 .. 50));
is($node->safe_psql('app2', 'SELECT count(*) FROM eventbus.events'), '50',
	'50 events committed before the kill');
$pid_before = worker_pid($node, 'app2');
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
	           AND datname = 'app2' AND pid <> $pid_before)", 30);
ok(defined $t, 'a new launcher and a new worker for app2 run after the crash restart');
note(sprintf('launcher and worker back %.2f s after the cluster accepted queries',
		$t // (time - $t0)));
ok(wait_log($node, qr/eventbus launcher started/, $log_offset, 10),
	'the new launcher logged its start');
is($node->safe_psql('app2', 'SELECT count(*) FROM eventbus.events'), '50',
	'the events committed before the kill are all there');
ok(defined wait_true($node, has_worker_query('app_copy'), 10), 'app_copy has its worker again');

# ---- 9. A streaming standby runs no launcher and no worker.
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
$node->wait_for_catchup($standby);
is($standby->safe_psql('app2', 'SELECT count(*) FROM eventbus.events'), '50',
	'the standby replays the events');
usleep(3_000_000);
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity
		  WHERE backend_type IN ('eventbus launcher', 'eventbus worker')"),
	'0', 'the standby runs no eventbus launcher and no worker');
is(launchers($node), '1', 'while the primary runs its launcher');
is(workers($node), 'app2,app_copy', 'and its workers');
unlike(slurp_file($standby->logfile), qr/eventbus launcher started/,
	'the standby never started the launcher');
like(slurp_file($node->logfile), qr/eventbus launcher started/,
	'the primary did');
$standby->stop;

# ---- 10. Publishers never take the NOTIFY lock; the worker notifies.
$node->safe_psql('app2', "SELECT eventbus.subscribe('s1', array['orders.#'])");
my $listener = $node->background_psql('app2');
$listener->query_safe('LISTEN eventbus_s1');

# Runs a query in the listening session and returns how many notifications
# for subscription s1 (payload: its name) psql printed meanwhile. Without
# BackgroundPsql's note() of the output: thousands of notification lines.
my $count_s1 = sub {
	no warnings 'redefine';
	local *PostgreSQL::Test::BackgroundPsql::note = sub { };
	my $out = $listener->query_safe('SELECT 1');
	my @n = $out =~ /Asynchronous notification "eventbus_s1" with payload "s1" received/g;
	return scalar @n;
};
usleep(1_500_000);
$count_s1->();    # drops what came before

# In an open publishing transaction: no NOTIFY lock, no notification yet.
my $pub = $node->background_psql('app2');
$pub->query_safe('BEGIN');
$pub->query_safe("SELECT eventbus.publish('orders.eu.created', '{}'::jsonb)");
is( $pub->query_safe(
		"SELECT count(*) FROM pg_locks l WHERE l.pid = pg_backend_pid() AND $notify_lock"),
	'0', 'a transaction that published holds no NOTIFY lock');
usleep(1_500_000);
is($count_s1->(),
	0, 'no notification while the publishing transaction is open');
$pub->query_safe('COMMIT');
$pub->quit;
my $got = 0;
$t0 = time;
while (time - $t0 < 10)
{
	$got += $count_s1->();
	last if $got > 0;
	usleep(100_000);
}
ok($got > 0, 'the commit makes the worker notify the listener, with the subscription as payload');
note(sprintf('notification %.2f s after the commit', time - $t0));

# Samples pg_locks in one session: every few ms, whether a pgbench session
# holds or waits for the NOTIFY lock.
$node->safe_psql(
	'postgres', qq{
CREATE FUNCTION sample_notify_lock(seconds float8,
	OUT samples int, OUT with_publishers int, OUT publisher_holds int, OUT any_holds int)
LANGUAGE plpgsql AS \$\$
DECLARE
	v_until timestamptz := clock_timestamp() + make_interval(secs => seconds);
	v_pub int;
	v_bad int;
	v_any int;
BEGIN
	samples := 0; with_publishers := 0; publisher_holds := 0; any_holds := 0;
	WHILE clock_timestamp() < v_until LOOP
		PERFORM pg_stat_clear_snapshot();
		SELECT count(*) INTO v_pub FROM pg_stat_activity a
		 WHERE a.backend_type = 'client backend' AND a.application_name = 'pgbench'
		   AND a.pid <> pg_backend_pid();
		SELECT count(*) INTO v_bad FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		 WHERE $notify_lock AND a.backend_type = 'client backend' AND a.application_name = 'pgbench';
		SELECT count(*) INTO v_any FROM pg_locks l WHERE $notify_lock;
		samples := samples + 1;
		with_publishers := with_publishers + (v_pub > 0)::int;
		publisher_holds := publisher_holds + (v_bad > 0)::int;
		any_holds := any_holds + (v_any > 0)::int;
		PERFORM pg_sleep(0.002);
	END LOOP;
END
\$\$;
});

# Runs pgbench with $script on app2 for $seconds while sampling; returns
# (samples, samples with publishers, samples where a publisher held or
# waited for the lock, samples where anybody did, pgbench transactions).
my $scriptdir = PostgreSQL::Test::Utils::tempdir;
sub run_publishers
{
	my ($name, $script, $seconds) = @_;
	my $file = "$scriptdir/$name.sql";
	open my $fh, '>', $file or die "cannot write $file: $!";
	print $fh $script;
	close $fh;
	my ($pout, $perr) = ('', '');
	my $h;
	{
		# Named pgbench (the test sets PGAPPNAME), and not logging each statement.
		local $ENV{PGAPPNAME} = 'pgbench';
		local $ENV{PGOPTIONS} = '-c log_statement=none';
		$h = IPC::Run::start(
			[
				'pgbench', '-n', '-h', $node->host, '-p', $node->port,
				'-c', '4', '-T', $seconds, '-f', $file, 'app2'
			],
			'>', \$pout, '2>', \$perr);
	}
	# Sample from when the clients are connected until shortly before the end.
	ok( defined wait_true(
			$node,
			"SELECT count(*) = 4 FROM pg_stat_activity WHERE application_name = 'pgbench'", 10),
		"the 4 pgbench $name clients are connected");
	my $res = $node->safe_psql('postgres',
		'SELECT samples, with_publishers, publisher_holds, any_holds FROM sample_notify_lock('
		  . ($seconds - 1) . ')');
	ok($h->finish, "pgbench $name ran") or diag($perr);
	my ($txns) = $pout =~ /number of transactions actually processed: (\d+)/;
	return (split(/\|/, $res), $txns // 0);
}

$count_s1->();
my ($samples, $with_pub, $pub_holds, $any_holds, $txns) = run_publishers('publish',
	"SELECT eventbus.publish('orders.eu.created', '{}'::jsonb);\n", 5);
my $notified = $count_s1->();
note("publishers: $txns publishes; $samples samples, $with_pub with publishers connected, "
	  . "$pub_holds with a publisher holding the NOTIFY lock, $any_holds with anybody (the worker) holding it; "
	  . "$notified notifications for s1");
cmp_ok($with_pub, '>=', 300, 'hundreds of samples of pg_locks taken while the publishers ran');
is($pub_holds, 0, 'in none of them did a publisher hold or wait for the NOTIFY lock');
cmp_ok($txns, '>', 0, 'the publishers published');
cmp_ok($notified, '>', 0, 'meanwhile the worker notified the listener');
is($node->safe_psql('app2', "SELECT count(*) FROM eventbus.events WHERE topic = 'orders.eu.created'"),
	$txns + 1, 'every publish is in the log');

# Control: publishers that NOTIFY themselves are seen by the same sampling.
($samples, $with_pub, $pub_holds, $any_holds, $txns) = run_publishers('control',
	"BEGIN;\nSELECT eventbus.publish('orders.eu.created', '{}'::jsonb);\nNOTIFY eventbus_control;\nEND;\n", 3);
note("control: $txns transactions; $samples samples, $with_pub with publishers connected, "
	  . "$pub_holds with a publisher holding or waiting for the NOTIFY lock");
cmp_ok($pub_holds, '>', 0, 'control: the sampling sees publishers that do NOTIFY');

$listener->quit;
$node->stop;

done_testing();

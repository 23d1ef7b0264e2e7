# Publishing transactions never take the NOTIFY queue lock: the worker
# sends the notifications. Sampled in pg_locks under pgbench load, with a
# control whose publishers NOTIFY themselves and are caught. Time bounds
# here are liveness bounds, far above what is expected, not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

# The lock a committing NOTIFY takes: object 0 of pg_database (1262).
my $notify_lock = "l.locktype = 'object' AND l.classid = 1262 AND l.objid = 0";

my $node = start_primary('primary');
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION eventbus');
$node->poll_query_until('postgres', has_worker_query('app'))
  or die 'the worker of app did not start';
my $t0;

# ---- Publishers never take the NOTIFY lock; the worker notifies.
$node->safe_psql('app', "SELECT eventbus.subscribe('s1', array['orders.#'])");
my $listener = $node->background_psql('app');
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
my $pub = $node->background_psql('app');
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

# Runs pgbench with $script on app for $seconds while sampling; returns
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
				'-c', '4', '-T', $seconds, '-f', $file, 'app'
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
is($node->safe_psql('app', "SELECT count(*) FROM eventbus.events WHERE topic = 'orders.eu.created'"),
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

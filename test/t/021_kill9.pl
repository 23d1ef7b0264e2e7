# kill -9 of the launcher and of the metrics endpoint worker: the
# postmaster does a crash restart, and everything comes back: the launcher,
# the database's worker, the metrics endpoint (/health and /metrics), and a
# committed event published before the kill is delivered after it. Time
# bounds here are liveness bounds, far above what is expected, not speed
# claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $tmp = PostgreSQL::Test::Utils::tempdir;

# GET on the endpoint: returns (status, body).
sub http
{
	my ($port, $path) = @_;
	unlink "$tmp/body";
	my $code = `curl -s -m 20 -o $tmp/body -w '%{http_code}' http://127.0.0.1:$port$path`;
	my $body = -e "$tmp/body" ? slurp_file("$tmp/body") : '';
	return ($code, $body);
}

# Waits up to $timeout seconds until /health answers 200; returns the
# seconds it took, or undef.
sub wait_up
{
	my ($port, $timeout) = @_;
	my $t0 = time;
	while (time - $t0 <= $timeout)
	{
		my ($code) = http($port, '/health');
		return time - $t0 if $code eq '200';
		usleep(100_000);
	}
	return undef;
}

# The pid of the one process of this backend_type ('' when none).
sub pid_of
{
	my ($node, $type) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity WHERE backend_type = '$type'");
}

plan skip_all => 'curl is not installed' if system('curl --version >/dev/null 2>&1') != 0;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = start_primary('kill9', "eventbus.metrics_address = '127.0.0.1:$port'\n");
$node->safe_psql('postgres', "CREATE EXTENSION eventbus");
$node->safe_psql('postgres', "SELECT eventbus.subscribe('k9', array['k9.#'])");
ok(defined wait_true($node, has_worker_query('postgres'), 30), 'the worker of postgres runs');
ok(defined wait_up($port, 60), 'the metrics endpoint answers /health');
ok(defined wait_true($node,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus metrics'", 30),
	'the metrics worker shows in pg_stat_activity');

# Kills the process of backend_type $type with SIGKILL after an event is
# committed, then checks that the cluster, the launcher, the worker of
# postgres and the endpoint come back and that the event is delivered.
sub kill9_round
{
	my ($type) = @_;
	my $n = $node->safe_psql('postgres',
		"SELECT eventbus.publish('k9.x', jsonb_build_object('before_kill_of', '$type')) > 0");
	is($n, 't', "$type: an event committed before the kill");
	my $victim = pid_of($node, $type);
	# Never kill 0 or a list: kill('KILL', 0) would hit our process group.
	if ($victim !~ /^[1-9]\d*$/)
	{
		fail("$type: one process (found '$victim'), round skipped");
		return;
	}
	pass("$type: one process");
	my %before = map { $_ => (pid_of($node, $_) || 0) } ('eventbus launcher', 'eventbus worker', 'eventbus metrics');
	my $log_offset = -s $node->logfile;

	is(kill('KILL', $victim), 1, "$type: kill -9");
	ok(wait_log($node, qr/all server processes terminated; reinitializing/, $log_offset, 60),
		"$type: the postmaster does a crash restart");
	like(slurp_file($node->logfile, $log_offset),
		qr/\(PID $victim\) was terminated by signal 9/, "$type: because of the killed process");
	ok(defined wait_true($node, 'SELECT true', 60), "$type: the cluster accepts queries again");

	my $t = wait_true($node,
		"SELECT (SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus launcher'
		           AND pid <> $before{'eventbus launcher'})
		    AND (SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker'
		           AND datname = 'postgres' AND pid <> $before{'eventbus worker'})
		    AND (SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus metrics'
		           AND pid <> $before{'eventbus metrics'})", 60);
	ok(defined $t, "$type: a new launcher, worker of postgres and metrics worker run");
	note(sprintf('%s: workers back %.2f s after the cluster accepted queries', $type, $t // -1));

	$t = wait_up($port, 60);
	ok(defined $t, "$type: the endpoint answers /health again");
	my ($code, $body) = http($port, '/metrics');
	is($code, '200', "$type: /metrics answers 200");
	like($body, qr/^eventbus_\w+/m, "$type: with eventbus metrics");

	is( $node->safe_psql('postgres',
			"SELECT string_agg(payload->>'before_kill_of', ',') FROM eventbus.poll('k9', 10)"),
		$type, "$type: the event committed before the kill is delivered after it");
	is( $node->safe_psql('postgres',
			"SELECT eventbus.ack('k9', array(SELECT event_id FROM eventbus.deliveries WHERE subscription = 'k9'))"),
		'1', "$type: and acked");
}

kill9_round('eventbus launcher');
kill9_round('eventbus metrics');

# After both rounds, new events still flow through the worker.
$node->safe_psql('postgres', "SELECT eventbus.publish('k9.x', '{\"after\": true}')");
is($node->safe_psql('postgres', "SELECT count(*) FROM eventbus.poll('k9', 10)"), '1',
	'an event published after both crash restarts is delivered');

$node->stop;
done_testing();

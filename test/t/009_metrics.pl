# Metrics: the HTTP endpoint (eventbus.metrics_address) serves /metrics and
# /health, refuses other paths and methods, is not held up by a client that
# sends nothing, comes back after being terminated, and its output passes
# `promtool check metrics`. Without shared_preload_libraries the views still
# work from the tables, with the counter columns NULL. Time bounds here are
# liveness bounds, far above what is expected, not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use File::Temp qw(tempfile);
use Time::HiRes qw(time sleep);

my $tmp = PostgreSQL::Test::Utils::tempdir;

# GET (or another method) on the endpoint: returns (status, body, headers).
sub http
{
	my ($port, $path, $method) = @_;
	$method //= 'GET';
	my @cmd = ('curl', '-s', '-m', '20', '-o', "$tmp/body", '-D', "$tmp/head",
		'-w', '%{http_code}', "http://127.0.0.1:$port$path");
	push @cmd, ($method eq 'HEAD' ? ('-I') : ('-X', $method));
	unlink "$tmp/body", "$tmp/head";
	my $code = `@cmd`;
	my $body = -e "$tmp/body" ? slurp_file("$tmp/body") : '';
	my $head = -e "$tmp/head" ? slurp_file("$tmp/head") : '';
	return ($code, $body, $head);
}

# Runs promtool check metrics on a text; returns (exit code, output).
sub promtool
{
	my ($text) = @_;
	my ($fh, $file) = tempfile(DIR => $tmp);
	print $fh $text;
	close $fh;
	my $out = `promtool check metrics < $file 2>&1`;
	return ($? >> 8, $out);
}

# Waits until /health answers with one of the codes (the endpoint is up).
sub wait_up
{
	my ($port, $want) = @_;
	$want //= qr/^(200|503)$/;
	for (my $i = 0; $i < 600; $i++)
	{
		my ($code) = http($port, '/health');
		return 1 if $code =~ $want;
		sleep 0.1;
	}
	return 0;
}

ok(system('promtool --version >/dev/null 2>&1') == 0, 'promtool is installed');

my $node = PostgreSQL::Test::Cluster->new('metrics');
$node->init;
my $port = PostgreSQL::Test::Cluster::get_free_port();
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'eventbus'
eventbus.metrics_address = '127.0.0.1:$port'
max_worker_processes = 16
});
$node->start;

# 1. Up, and /health and /metrics before the extension is installed.
ok(wait_up($port), 'the endpoint answers /health');
my ($code, $body, $head) = http($port, '/health');
is($code, '503', '/health without the extension: 503');
like($body, qr/eventbus is not installed in database "postgres"/, '503 says why');
($code, $body) = http($port, '/metrics');
is($code, '503', '/metrics without the extension: 503');
like($body, qr/eventbus is not installed in database "postgres"/, '503 says why');

# 2. The issue's exact counts, through HTTP.
$node->safe_psql('postgres', q{
	CREATE EXTENSION eventbus;
	SELECT eventbus.subscribe('orders', ARRAY['orders.#'], max_attempts => 1);
	SELECT eventbus.publish('orders.eu.created', jsonb_build_object('n', g)) FROM generate_series(1, 100) g;
	CREATE TABLE got AS SELECT event_id FROM eventbus.poll('orders', 70);
	SELECT eventbus.ack('orders', (SELECT array_agg(event_id) FROM (SELECT event_id FROM got ORDER BY event_id LIMIT 60) q));
	SELECT eventbus.nack('orders', event_id, 'boom') FROM (SELECT event_id FROM got ORDER BY event_id OFFSET 60) q;
});
($code, $body, $head) = http($port, '/metrics');
is($code, '200', '/metrics: 200');
like($head, qr{^Content-Type: text/plain; version=0\.0\.4; charset=utf-8\r?$}mi, 'exposition format 0.0.4');
like($body, qr/^eventbus_subscription_routed_events\{subscription="orders"\} 100$/m, 'routed 100');
like($body, qr/^eventbus_subscription_read_events_total\{subscription="orders"\} 70$/m, 'read 70');
like($body, qr/^eventbus_subscription_delivered_events_total\{subscription="orders"\} 70$/m, 'delivered 70');
like($body, qr/^eventbus_subscription_acked_events_total\{subscription="orders"\} 60$/m, 'acked 60');
like($body, qr/^eventbus_subscription_dead_events_total\{subscription="orders"\} 10$/m, 'dead 10');
like($body, qr/^eventbus_subscription_backlog_events\{subscription="orders"\} 30$/m, 'backlog 30');
like($body, qr/^eventbus_published_events_total\{topic="orders\.eu\.created"\} 100$/m, 'published 100');
like($body, qr/^eventbus_ack_latency_seconds_count\{subscription="orders"\} 60$/m, 'ack histogram count 60');
like($body, qr/^eventbus_delivery_latency_seconds_bucket\{subscription="orders",le="\+Inf"\} 70$/m,
	'delivery histogram +Inf bucket 70');
like($body, qr/^eventbus_worker_up\{database="postgres"\} 1$/m, 'the worker is up');
my ($rc, $out) = promtool($body);
is($rc, 0, 'promtool check metrics accepts GET /metrics') or diag($out);
($rc, $out) = promtool($node->safe_psql('postgres', 'SELECT eventbus.prometheus()') . "\n");
is($rc, 0, 'promtool check metrics accepts eventbus.prometheus()') or diag($out);

# 2b. /health: a line per check of eventbus.health(), 200 when all pass,
# 503 when one fails; thresholds are settings.
ok(wait_up($port, qr/^200$/), '/health: 200 once the worker runs');
($code, $body) = http($port, '/health');
like($body, qr/\Ahealthy\nok worker: pid \d+, running \(threshold: running\)\nok ticking: last tick [0-9.]+ s ago \(threshold: 60 s\)\n/,
	'/health: healthy, the worker runs and ticks');
like($body, qr/^ok lag: oldest pending event [0-9.]+ s old \(subscription orders\) \(threshold: not checked\)$/m,
	'/health: the lag, not checked by default');
like($body, qr/^ok dead_letters: 10 new in the last 300 s \(threshold: not checked\)$/m,
	'/health: the new dead letters, not checked by default');
set_conf($node, 'eventbus.health_max_lag', '1s');
sleep 1.2;
($code, $body) = http($port, '/health');
is($code, '503', '/health with pending events older than health_max_lag: 503');
like($body, qr/\Aunhealthy\n.*^FAIL lag: oldest pending event [0-9.]+ s old \(subscription orders\) \(threshold: 1 s\)$/ms,
	'it names the check that fails and the subscription');
set_conf($node, 'eventbus.health_max_lag', '0');
set_conf($node, 'eventbus.health_max_new_dead_letters', '5');
($code, $body) = http($port, '/health');
is($code, '503', '/health with more new dead letters than health_max_new_dead_letters: 503');
like($body, qr/^FAIL dead_letters: 10 new in the last 300 s \(threshold: 5\)$/m, 'it says how many');
set_conf($node, 'eventbus.health_max_new_dead_letters', '-1');
is((http($port, '/health'))[0], '200', '/health: 200 again');
my $wpid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus worker'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($wpid)");
ok(wait_up($port, qr/^503$/), '/health while the worker is down: 503');
($code, $body) = http($port, '/health');
like($body, qr/^FAIL worker: /m, 'it says the worker does not run');
ok(wait_up($port, qr/^200$/), '/health: 200 when the worker is back');

# 3. Other paths and methods.
($code) = http($port, '/');
is($code, '404', '/: 404');
($code, $body) = http($port, '/metrics/../etc/passwd');
is($code, '404', 'another path: 404');
($code, $body, $head) = http($port, '/metrics', 'POST');
is($code, '405', 'POST /metrics: 405');
like($head, qr/^Allow: GET, HEAD\r?$/mi, 'Allow header');
($code, $body, $head) = http($port, '/metrics', 'HEAD');
is($code, '200', 'HEAD /metrics: 200');
unlike($body, qr/^eventbus_/m, 'HEAD: no body');
($code) = http($port, '/metrics?name[]=x');
is($code, '200', 'a query string is ignored');

# 4. Clients that connect and send nothing delay no other request (the
# endpoint reads all connections at once), and never the database's worker.
my @stall;
for (1 .. 20)
{
	my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp');
	push @stall, $c if $c;
}
is(scalar(@stall), 20, '20 stalling clients connected');
my $ticks = $node->safe_psql('postgres', "SELECT ticks FROM eventbus.worker_stats WHERE database = 'postgres'");
$node->safe_psql('postgres', "SELECT eventbus.publish('orders.eu.created', '{}')");
ok($node->poll_query_until('postgres',
		"SELECT ticks > $ticks FROM eventbus.worker_stats WHERE database = 'postgres'"),
	'the worker ticks while they are connected');
my $t0 = time;
($code) = http($port, '/health');
my $waited = time - $t0;
is($code, '200', '/health answers while 20 clients stall');
# One at a time they would hold it 20 x 2 s; a liveness bound, not a speed claim.
cmp_ok($waited, '<', 10, "it did not wait for them (took ${waited}s)");
close $_ for @stall;

# A scrape names only its own database: another database with eventbus
# and its worker does not appear.
$node->safe_psql('postgres', 'CREATE DATABASE secret_hr_db');
$node->safe_psql('secret_hr_db', 'CREATE EXTENSION eventbus');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM eventbus.worker_stats WHERE database = 'secret_hr_db'"),
	'the other database has its worker');
($code, $body) = http($port, '/metrics');
is($code, '200', '/metrics with two databases');
unlike($body, qr/secret_hr_db/, 'the scrape does not name the other database');
like($body, qr/^eventbus_worker_up\{database="postgres"\} 1$/m, 'but its own worker');
$node->safe_psql('postgres', 'DROP DATABASE secret_hr_db WITH (FORCE)');

# 5. A cancel does not stop the endpoint; terminated, it comes back (restart after 10 s).
my $pid0 = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus metrics'");
$node->safe_psql('postgres', "SELECT pg_cancel_backend($pid0)");
($code) = http($port, '/health');
is($code, '200', '/health after pg_cancel_backend of the endpoint');
is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus metrics'"),
	$pid0, 'the same process still serves');
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus metrics'");
like($pid, qr/^\d+$/, 'the endpoint runs as backend type "eventbus metrics"');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus metrics' AND pid <> $pid"),
	'the endpoint restarts after being terminated');
ok(wait_up($port, qr/^200$/), 'and answers again');

# 6. reset_stats: the counters go to zero, what is pending stays.
$node->safe_psql('postgres', 'SELECT eventbus.reset_stats()');
($code, $body) = http($port, '/metrics');
like($body, qr/^eventbus_subscription_acked_events_total\{subscription="orders"\} 0$/m, 'acked 0 after reset');
like($body, qr/^eventbus_subscription_backlog_events\{subscription="orders"\} 31$/m, 'backlog still 31 after reset');
like($body, qr/^eventbus_stats_reset_timestamp_seconds [0-9.]+$/m, 'the reset time is exported');
$node->stop;

# 7. Without shared_preload_libraries: no endpoint, the views work from the
# tables with the counter columns NULL, prometheus() says stats are off.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', q{
	CREATE EXTENSION eventbus;
	SELECT eventbus.subscribe('orders', ARRAY['orders.#']);
	SELECT eventbus.publish('orders.eu.created', jsonb_build_object('n', g)) FROM generate_series(1, 5) g;
	SELECT count(*) FROM eventbus.poll('orders', 2);
});
is($plain->safe_psql('postgres',
		"SELECT concat_ws(',', coalesce(routed::text, 'null'), coalesce(acked::text, 'null'), backlog, in_flight, "
		  . "coalesce(last_poll_at::text, 'null')) FROM eventbus.subscription_stats"),
	'null,null,3,2,null', 'subscription_stats without preload: counters NULL, backlog and in_flight from the tables');
is($plain->safe_psql('postgres', "SELECT coalesce(published::text, 'null') FROM eventbus.topic_stats"),
	'null', 'topic_stats without preload: published NULL');
is($plain->safe_psql('postgres', 'SELECT count(*) FROM eventbus.worker_stats'), '0', 'worker_stats is empty');
is($plain->safe_psql('postgres', 'SELECT count(*) FROM eventbus.latency_stats'), '0', 'latency_stats is empty');
my $text = $plain->safe_psql('postgres', 'SELECT eventbus.prometheus()') . "\n";
like($text, qr/^eventbus_stats_enabled 0$/m, 'prometheus(): stats_enabled 0');
like($text, qr/^eventbus_subscription_backlog_events\{subscription="orders"\} 3$/m, 'prometheus(): backlog from the tables');
unlike($text, qr/^eventbus_subscription_acked_events_total\{/m, 'prometheus(): no counter samples');
($rc, $out) = promtool($text);
is($rc, 0, 'promtool check metrics accepts the output without preload') or diag($out);
is($plain->safe_psql('postgres', 'SELECT eventbus.reset_stats()'), '', 'reset_stats works without preload');
$plain->stop;

# 8. An address that cannot be used: the server runs on, the log says why,
# and the endpoint tries again (every 10 s).
my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, Proto => 'tcp', ReuseAddr => 0);
ok($busy, 'a port is taken by another listener');
my $bad = PostgreSQL::Test::Cluster->new('badaddr');
$bad->init;
$bad->append_conf('postgresql.conf', "shared_preload_libraries = 'eventbus'\n"
	  . "eventbus.metrics_address = '127.0.0.1:" . $busy->sockport . "'\n");
$bad->start;
ok($bad->wait_for_log(qr/eventbus metrics endpoint could not listen on "127\.0\.0\.1:\d+"/),
	'an address in use is logged');
is($bad->safe_psql('postgres', 'SELECT 1'), '1', 'and the server runs on');
$bad->stop;
$bad->adjust_conf('postgresql.conf', 'eventbus.metrics_address', "'nonsense'");
my $offset = -s $bad->logfile;
$bad->start;
ok($bad->wait_for_log(qr/invalid eventbus\.metrics_address: "nonsense"/, $offset),
	'an address without a port is logged');
$bad->stop;
$bad->adjust_conf('postgresql.conf', 'eventbus.metrics_address', "'[]:" . $busy->sockport . "'");
$offset = -s $bad->logfile;
$bad->start;
ok($bad->wait_for_log(qr/invalid eventbus\.metrics_address: "\[\]:\d+" names no host/, $offset),
	'an address without a host (which would mean every address) is refused');
$bad->stop;
close $busy;

done_testing();

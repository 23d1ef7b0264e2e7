# pg_dump / pg_restore into another cluster (another xid history): the
# subscriptions, their dead letters and every undelivered event survive, and
# exactly the undelivered events are delivered afterwards (design 4.12 and
# trap (b): restored xids are meaningless in the new cluster).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $src = PostgreSQL::Test::Cluster->new('source');
$src->init;
$src->append_conf('postgresql.conf', "eventbus.chunk_interval = '1s'");
$src->start;
$src->safe_psql('postgres', 'CREATE DATABASE app');

# Burn transaction ids so that the source's xids are far ahead of the
# target's: restored xids would look like transactions from the future.
$src->safe_psql('postgres',
	join("\n", map { 'SELECT pg_current_xact_id();' } 1 .. 3000));

# Move the source's log on to chunk 1 first (publish, rotate, reclaim), so
# that the dump's events come back in a chunk that is not the target's
# current one: maintenance must not reclaim them before they are adopted.
$src->safe_psql('app', q{
	CREATE EXTENSION eventbus;
	SELECT eventbus.publish('noise.x', '{}');
});
sleep 1.2;
is($src->safe_psql('app', 'SELECT rotated FROM eventbus.run_maintenance()'), 't',
	'source: publishing moved on to chunk 1');
is($src->safe_psql('app', 'SELECT reclaimed FROM eventbus.run_maintenance()'), '1',
	'source: chunk 0 reclaimed');
$src->safe_psql(
	'app', q{
	SELECT eventbus.subscribe('billing', array['orders.#'], max_attempts => 1);
	SELECT eventbus.subscribe('audit', array['#'], start_at => 'earliest', lease => '1 hour');
	SELECT eventbus.publish('orders.eu.created', jsonb_build_object('n', g)) FROM generate_series(1, 6) g;
	SELECT eventbus.publish('misc.x', '{"n": 7}');
	SELECT eventbus.subscribe('ship', array['ship.#'], ordered => true, lease => '1 hour');
	SELECT eventbus.publish('ship.x', jsonb_build_object('s', s), key => k)
	  FROM (VALUES ('a', 'k1'), ('b', 'k1'), ('c', 'k2')) v (s, k);
	CREATE SCHEMA handlers;
	CREATE FUNCTION handlers.on_event(e eventbus.event) RETURNS void LANGUAGE sql AS 'SELECT';
	SELECT eventbus.subscribe('invoicing', array['invoices.#'],
	                          handler => 'handlers.on_event(eventbus.event)');
});
# ship (ordered): a and c leased, c acked; b queued behind a; d unread.
$src->safe_psql(
	'app', q{
	SELECT eventbus.ack('ship', array(SELECT event_id FROM eventbus.poll('ship', 10) WHERE payload->>'s' = 'c'));
	SELECT eventbus.publish('ship.x', '{"s": "d"}', key => 'k1');
});
# billing: acks 1 and 2, kills 3, leaves 4, 5 and 6 undelivered.
$src->safe_psql(
	'app', q{
	SELECT eventbus.ack('billing', array(SELECT event_id FROM eventbus.poll('billing', 2)));
	SELECT eventbus.nack('billing', (SELECT event_id FROM eventbus.poll('billing', 1)), 'card declined');
});
is( $src->safe_psql('app', "SELECT count(*) FROM eventbus.dead_letters"),
	'1', 'source: one dead letter before the dump');

my $dump = $src->basedir . '/app.dump';
$src->command_ok([ 'pg_dump', '-Fc', '-d', $src->connstr('app'), '-f', $dump ], 'pg_dump');

my $dst = PostgreSQL::Test::Cluster->new('target');
$dst->init;
# The target runs the background worker, with maintenance every second.
$dst->append_conf('postgresql.conf', "shared_preload_libraries = 'eventbus'\neventbus.maintenance_interval = '1s'");
$dst->start;
$dst->safe_psql('postgres', 'CREATE DATABASE app');
$dst->command_ok([ 'pg_restore', '-d', $dst->connstr('app'), $dump ], 'pg_restore');
my $restored = $src->safe_psql('app', 'SELECT count(*) FROM eventbus.event_log');
is($dst->safe_psql('app', 'SELECT count(*) FROM eventbus.event_log_1'), $restored,
	'the events come back in chunk 1, which is not the target\'s current chunk');
sleep 2.5;    # a few rounds of the worker's maintenance
is($dst->safe_psql('app', 'SELECT count(*) FROM eventbus.event_log'), $restored,
	'maintenance reclaims nothing before the restored data is adopted');

isnt(
	$src->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	$dst->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	'the target is another cluster');
cmp_ok(
	$dst->safe_psql('postgres', 'SELECT pg_current_xact_id()::text::bigint'),
	'<', 3000, 'whose xids are far behind the source\'s');

is( $dst->safe_psql(
		'app', "SELECT name || ':' || array_to_string(patterns, ',') || ':' || max_attempts
		          FROM eventbus.subscriptions ORDER BY name"),
	"audit:#:5\nbilling:orders.#:1\ninvoicing:invoices.#:5\nship:ship.#:5",
	'subscriptions survive with their options');
is( $dst->safe_psql(
		'app', "SELECT subscription || ':' || (payload->>'n') || ':' || last_error FROM eventbus.dead_letters"),
	'billing:3:card declined',
	'dead letters survive with their error');

is( $dst->safe_psql(
		'app',
		"SELECT string_agg(payload->>'n', ',' ORDER BY (payload->>'n')::int) FROM eventbus.poll('billing', 100)"),
	'4,5,6',
	'billing gets exactly its undelivered events');
is( $dst->safe_psql(
		'app',
		"SELECT string_agg(payload->>'n', ',' ORDER BY (payload->>'n')::int) FROM eventbus.poll('audit', 100)"),
	'1,2,3,4,5,6,7',
	'audit gets every event it never received');

# The ordered subscription keeps its key order across the restore.
is($dst->safe_psql('app', "SELECT count(*) FROM eventbus.poll('ship', 10)"),
	'0', 'ship: b and d still wait behind the leased a');
foreach my $step ([ 'a', 'b' ], [ 'b', 'd' ])
{
	my ($done, $next) = @$step;
	$dst->safe_psql('app',
		"SELECT eventbus.ack('ship', array(SELECT id FROM eventbus.events WHERE payload->>'s' = '$done'))");
	is($dst->safe_psql('app', "SELECT string_agg(payload->>'s', ',') FROM eventbus.poll('ship', 10)"),
		$next, "ship: after $done, $next");
}

is( $dst->safe_psql('app', "SELECT handler FROM eventbus.subscriptions WHERE name = 'invoicing'"),
	'handlers.on_event(eventbus.event)', 'a handler subscription keeps its handler function');

# New events after the restore are delivered once, nothing old comes back.
$dst->safe_psql('app', "SELECT eventbus.publish('orders.us.created', '{\"n\": 8}')");
is( $dst->safe_psql(
		'app', "SELECT string_agg(payload->>'n', ',') FROM eventbus.poll('billing', 100)"),
	'8', 'a new event is delivered after the restored ones, nothing twice');
is($dst->safe_psql('app', "SELECT origin_ok FROM (SELECT count(*) = 1 AS origin_ok FROM eventbus.origin) o"),
	't', 'the data now belongs to the target cluster');

$src->stop;
$dst->stop;
done_testing();

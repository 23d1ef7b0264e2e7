# Chunk maintenance: the log moves on to the next chunk, and a chunk is
# truncated only when no subscription needs it (unread matching events,
# leased, waiting or dead deliveries pin it), retention has passed, and no
# transaction that wrote to it is still open. Also: the worker does the
# same on its own, and storage returns to what the live chunks hold.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('maint');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
eventbus.maintenance_interval = '1h'
eventbus.chunk_interval = '1h'
));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub maintain { return sql("SELECT reclaimed || ' ' || rotated::int FROM eventbus.run_maintenance()"); }
sub current { return sql("SELECT chunk_no FROM eventbus.chunk WHERE is_current"); }
sub rows { return sql("SELECT count(*) FROM eventbus.event_log_$_[0]"); }
sub pins { return sql("SELECT array_to_string(pinned_by, ',') FROM eventbus.chunks WHERE chunk_no = $_[0]"); }

sql("CREATE EXTENSION eventbus;
	SELECT eventbus.subscribe('a', array['a.#'], max_attempts => 1);
	SELECT eventbus.subscribe('b', array['b.#'], max_attempts => 1);
	SELECT eventbus.subscribe('c', array['c.#']);");
sql("SELECT eventbus.publish('a.x', jsonb_build_object('n', g)) FROM generate_series(1, 100) g;
	SELECT eventbus.publish('b.x', jsonb_build_object('n', g)) FROM generate_series(1, 100) g;");

# 1. Nothing moves while the current chunk is young.
is(maintain(), '0 0', 'a young current chunk is neither rotated nor reclaimed');
is(current(), '0', 'chunk 0 is current');

# 2. Rotation: once older than chunk_interval, publishing moves to chunk 1.
set_conf($node, 'eventbus.chunk_interval', '1s');
sleep 1.2;
is(maintain(), '0 1', 'an old current chunk is rotated');
is(current(), '1', 'chunk 1 is current');
sql("SELECT eventbus.publish('a.y', '{}')");
is(rows(1), '1', 'new events go to chunk 1');
is(rows(0), '200', 'chunk 0 keeps its 200 events');
set_conf($node, 'eventbus.chunk_interval', '1h');

# 3. Unread events pin a chunk, per subscription and only for matching topics.
is(pins(0), 'a,b', 'chunk 0 is pinned by a and b (c matches none of its topics)');
is(maintain(), '0 0', 'a pinned chunk is not reclaimed');

# 4. Reading all of a unpins it for a; b still pins it.
sql("SELECT eventbus.ack('a', array_agg(event_id)) FROM eventbus.poll('a', 1000)");
is(pins(0), 'b', 'after a acked everything only b pins chunk 0');

# 5. b leases everything: leased deliveries pin it.
my $ids = sql("SELECT string_agg(event_id::text, ',') FROM eventbus.poll('b', 1000)");
is(pins(0), 'b', 'leased deliveries pin the chunk');
is(maintain(), '0 0', 'still not reclaimed');

# 6. Ack all but one, which fails for good: a dead letter pins the chunk too.
my ($dead) = split /,/, $ids;
sql("SELECT eventbus.ack('b', array_remove(string_to_array('$ids', ',')::bigint[], $dead))");
is(sql("SELECT eventbus.nack('b', $dead, 'bad')"), 'dead', 'one event becomes a dead letter');
is(pins(0), 'b', 'a dead letter pins the chunk');
is(maintain(), '0 0', 'not reclaimed while a dead letter refers to it');
is(sql("SELECT payload->>'n' IS NOT NULL FROM eventbus.dead_letters"), 't', 'the dead letter still shows its payload');

# 7. Purging the dead letter frees the chunk; it is truncated, chunk 1 is not.
sql("SELECT eventbus.purge_dead_letters('b')");
is(pins(0), '', 'nobody pins chunk 0 now');
is(maintain(), '1 0', 'chunk 0 is reclaimed');
is(rows(0), '0', 'chunk 0 is empty');
is(rows(1), '1', 'chunk 1 still holds its event');
ok(sql("SELECT reclaimed_at IS NOT NULL FROM eventbus.chunk WHERE chunk_no = 0"), 'reclaimed_at is set');

# 8. Retention keeps a consumed chunk until it has passed.
set_conf($node, 'eventbus.chunk_interval', '1s');
sleep 1.2;
is(maintain(), '0 1', 'rotated to chunk 2');
set_conf($node, 'eventbus.chunk_interval', '1h');
is(current(), '2', 'chunk 2 is current');
sql("SELECT eventbus.ack('a', array_agg(event_id)) FROM eventbus.poll('a', 1000)");
set_conf($node, 'eventbus.retention', '1h');
is(pins(1), '', 'chunk 1 is consumed');
is(maintain(), '0 0', 'but retention keeps it');
is(rows(1), '1', 'its event is still there');
set_conf($node, 'eventbus.retention', '0');

# 9. A transaction still open on a chunk keeps it; maintenance does not wait.
my $writer = $node->background_psql('postgres');
$writer->query_safe("BEGIN; LOCK TABLE eventbus.event_log_1 IN ROW EXCLUSIVE MODE;");
my $t0 = time;
is(maintain(), '0 0', 'a chunk locked by an open writer is skipped');
cmp_ok(time - $t0, '<', 30, 'maintenance did not wait for the writer');
$writer->query_safe("COMMIT;");
$writer->quit;
is(maintain(), '1 0', 'reclaimed once the writer is gone');
is(rows(1), '0', 'chunk 1 is empty');

# 10. A subscription created with start_at 'earliest' that never reads pins
# what it has not read.
set_conf($node, 'eventbus.chunk_interval', '1s');
sql("SELECT eventbus.publish('c.x', '{}')");
sleep 1.2;
is(maintain(), '0 1', 'rotated to chunk 0');
set_conf($node, 'eventbus.chunk_interval', '1h');
is(pins(2), 'c', 'chunk 2 has an unread event of c');
sql("SELECT eventbus.ack('c', array_agg(event_id)) FROM eventbus.poll('c', 10)");
sql("SELECT eventbus.ack('a', array_agg(event_id)) FROM eventbus.poll('a', 10)");
sql("SELECT eventbus.subscribe('late', array['#'], start_at => 'earliest')");
is(pins(2), 'late', 'a new subscription from the earliest event pins what is retained');
sql("SELECT eventbus.unsubscribe('late')");
is(maintain(), '1 0', 'reclaimed after it is gone');

# 11. The worker does all this on its own, and storage stays bounded: many
# events published and acked leave at most two chunks' worth behind.
set_conf($node, 'eventbus.chunk_interval', '1s');
set_conf($node, 'eventbus.maintenance_interval', '1s');
my $empty = sql("SELECT pg_total_relation_size('eventbus.event_log_1')");
for my $round (1 .. 4)
{
	sql("SELECT eventbus.publish('a.bulk', jsonb_build_object('n', g, 'pad', repeat('x', 200)))
		 FROM generate_series(1, 5000) g");
	sql("DO \$\$ DECLARE ids bigint[]; BEGIN LOOP
		   SELECT array_agg(event_id) INTO ids FROM eventbus.poll('a', 1000);
		   EXIT WHEN ids IS NULL;
		   PERFORM eventbus.ack('a', ids);
		 END LOOP; END \$\$");
	sleep 1.2;
}
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) FILTER (WHERE NOT is_current AND bytes > $empty) = 0 FROM eventbus.chunks"),
	'the worker reclaimed every chunk but the current one');
my $total = sql("SELECT sum(bytes) FROM eventbus.chunks");
note("storage after 20000 events published and acked: $total bytes (an empty chunk: $empty)");
cmp_ok(sql("SELECT count(*) FROM eventbus.event_log"), '<=', 5000,
	'at most the events of the current chunk are left');

# The worker vacuums the consume tables itself (here at each maintenance
# round, every second: every table with dead rows, in one VACUUM, which
# commits between tables: what the worker gives it must outlive those
# commits). Dead rows in batch, delivery, cursor and expiry:
my $vacuums = "SELECT sum(vacuum_count) FROM pg_stat_user_tables WHERE schemaname = 'eventbus' "
  . "AND relname IN ('batch', 'delivery', 'cursor', 'expiry')";
my $before = sql($vacuums);
sql("SELECT eventbus.subscribe('vac', array['vac.#'], max_attempts => 1)");
for my $round (1 .. 3)
{
	sql("SELECT eventbus.publish('vac.x', jsonb_build_object('n', g), ttl => '1 millisecond') FROM generate_series(1, 3) g");
	sql("SELECT eventbus.publish('vac.y', jsonb_build_object('n', g)) FROM generate_series(1, 10) g");
	sql("SELECT pg_sleep(0.01); SELECT count(*) FROM eventbus.poll('vac', 100)");
	sql("SELECT eventbus.nack('vac', event_id) FROM eventbus.deliveries WHERE subscription = 'vac' AND state = 'leased'");
	sql("SELECT eventbus.purge_dead_letters('vac')");
}
ok($node->poll_query_until('postgres', "SELECT ($vacuums) >= $before + 3"),
	'the worker vacuums the consume tables');
unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no process crashed');
is(sql('SELECT 1'), '1', 'the server runs on');

$node->stop;
done_testing();

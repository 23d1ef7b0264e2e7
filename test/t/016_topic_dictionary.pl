# The topic dictionary stays bounded: topics no stored event uses are
# retired and then dropped once every chunk that could hold them was
# truncated (src/topicdict.c); a topic in use keeps its id; a publisher that
# cached an id before its topic was retired never writes an event that
# names a dropped id; topic_stats keeps its counts across a new id;
# eventbus.max_topics counts what the dictionary holds, so dropped topics
# make room. Then 200,000 distinct topics: polling and ticking stay within
# 2x of a database with 20 topics, and maintenance drops them in bounded
# steps while the worker keeps ticking.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('topics');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
eventbus.maintenance_interval = '1h'
eventbus.chunk_interval = '1s'
eventbus.max_topics = 1000000
));
$node->start;

sub sql { my ($q, $db) = @_; return $node->safe_psql($db // 'postgres', $q); }

# One maintenance round after the current chunk got old: it rotates (when
# the next chunk is free) and reclaims what nobody needs.
sub cycle
{
	my ($db) = @_;
	sql("SELECT eventbus.publish('filler.x', '{}')", $db);
	sleep 1.1;
	return sql("SELECT reclaimed || ' ' || rotated::int FROM eventbus.run_maintenance()", $db);
}
sub topic_ids { return sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM eventbus.topic WHERE topic = '$_[0]'", $_[1]); }
sub count_topics { return sql("SELECT count(*) FROM eventbus.topic WHERE topic LIKE '$_[0]'", $_[1]); }
sub generations { return sql("SELECT string_agg(coalesce(generation::text, '-'), ',' ORDER BY chunk_no) FROM eventbus.chunk", $_[0]); }

# Every stored event names a topic of the dictionary.
sub dangling
{
	return sql("SELECT count(*) FROM eventbus.event_log e
	             WHERE NOT EXISTS (SELECT 1 FROM eventbus.topic t WHERE t.id = e.topic_id)", $_[0]);
}

sql("CREATE EXTENSION eventbus");
sql("SELECT eventbus.subscribe('stale', array['stale.#'])");
is(generations(), '1,-,-', 'a new log: chunk 0 is generation 1, the others hold none');

# 1. 1000 topics published once, one topic published in every generation
# (by new sessions and by one that stays), one published by a session that
# keeps its cached id for a long time.
my $keeper = $node->background_psql('postgres');
my $stale = $node->background_psql('postgres');
sql("SELECT count(eventbus.publish('noise.' || g, '{}')) FROM generate_series(1, 1000) g");
sql("SELECT eventbus.publish('keep.a', '{}')");
$keeper->query_safe("SELECT eventbus.publish('keep.a', '{}')");
$stale->query_safe("SELECT eventbus.publish('stale.x', jsonb_build_object('n', 1))");
is(sql("SELECT count(*) AS n, max(lease_token) AS tok FROM eventbus.poll('stale', 10) \\gset
	SELECT :n || ' ' || eventbus.ack('stale', NULL, :tok)"), '1 1', 'the first stale.x event is consumed');
my $keep_id = topic_ids('keep.a');
my $stale_id = topic_ids('stale.x');
is(count_topics('noise.%'), '1000', '1000 noise topics in the dictionary');

my @rounds;
for my $round (1 .. 6)
{
	push @rounds, cycle();
	sql("SELECT eventbus.publish('keep.a', '{}')");
	$keeper->query_safe("SELECT eventbus.publish('keep.a', '{}')");
	# Retirement and dropping are separate steps: one more each round.
	sql("SELECT more FROM eventbus._maintain_topics()");
	if ($round == 2)
	{
		# The noise topics were last used in generation 1, whose chunk is
		# gone now: retired, not yet dropped.
		is(sql("SELECT count(*) FILTER (WHERE retired_gen IS NOT NULL) FROM eventbus.topic WHERE topic LIKE 'noise.%'"),
			'1000', 'round 2: the noise topics are retired once their chunk is reclaimed');
		is(sql("SELECT retired_gen IS NOT NULL FROM eventbus.topic WHERE id = $stale_id"),
			't', 'and so is stale.x, which its session still has cached');
		# The stale session publishes it again: its cached id is for
		# generation 1, the current chunk is of another generation, so it
		# looks the topic up, finds it retired, and takes a new id.
		$stale->query_safe("SELECT eventbus.publish('stale.x', jsonb_build_object('n', 2))");
		isnt(sql("SELECT topic_id FROM eventbus.event_log WHERE payload->>'n' = '2'"), $stale_id,
			'a session with a cached id of a retired topic writes a new id');
	}
	is(dangling(), '0', "round $round: every stored event names a topic of the dictionary");
}
note "rounds (reclaimed rotated): @rounds";
is(count_topics('noise.%'), '0', 'the noise topics are dropped after the chunks that could hold them');
is(topic_ids('keep.a'), $keep_id, 'a topic published in every generation keeps its one id');
is(sql("SELECT published FROM eventbus.topic_stats WHERE topic = 'keep.a'"), '14', 'topic_stats counts all 14 events of keep.a');
is(sql("SELECT count(*) FROM eventbus.topic WHERE id = $stale_id"), '0', 'the old id of stale.x is dropped');
is(sql("SELECT string_agg(topic || ':' || (payload->>'n'), ',') FROM eventbus.poll('stale', 10)"),
	'stale.x:2', 'the event written with the new id is delivered under its topic');
is(sql("SELECT published FROM eventbus.topic_stats WHERE topic = 'stale.x'"), '2',
	'topic_stats carried the count of the dropped id over to the new one');

# A topic dropped and published again gets a new id, and reads as itself.
sql("SELECT eventbus.publish('noise.1', jsonb_build_object('again', true))");
is(sql("SELECT topic FROM eventbus.events WHERE payload ? 'again'"), 'noise.1', 'a dropped topic published again is stored under a new id');

# 2. A transaction that cached an id and goes on writing while its topic
# would be retired: the chunk it writes to cannot be reclaimed while it is
# open, so the id outlives every event written with it.
sql("SELECT eventbus.subscribe('long', array['long.#'])");
$stale->query_safe("BEGIN; SELECT eventbus.publish('long.x', jsonb_build_object('n', 1))");
cycle();
cycle();
$stale->query_safe("SELECT eventbus.publish('long.x', jsonb_build_object('n', 2)); COMMIT");
cycle() for 1 .. 4;
sql("SELECT more FROM eventbus._maintain_topics()");
is(dangling(), '0', 'after a long transaction and four rounds, every stored event names a topic');
is(sql("SELECT string_agg(topic || ':' || (payload->>'n'), ',' ORDER BY payload->>'n') FROM eventbus.poll('long', 10)"),
	'long.x:1,long.x:2', 'both events of the long transaction are delivered under their topic');

# 3. eventbus.max_topics counts what the dictionary holds: dropped topics
# make room.
sql("CREATE DATABASE limits");
sql("CREATE EXTENSION eventbus", 'limits');
my ($ret, $out, $err) = $node->psql('limits', "SET eventbus.max_topics = 100;
	SELECT count(eventbus.publish('lim.' || g, '{}')) FROM generate_series(1, 99) g;
	SELECT eventbus.publish('lim.new', '{}');
	SELECT eventbus.publish('lim.newer', '{}');", on_error_stop => 1);
like($err, qr/54000|too many distinct topics: eventbus.max_topics \(100\) reached/, 'topic 101 is refused');
like($err, qr/lim\.newer/, 'the error names the topic');
cycle('limits') for 1 .. 4;
sql("SELECT more FROM eventbus._maintain_topics()", 'limits');
is(count_topics('lim.%', 'limits'), '0', 'the 100 topics are dropped after their chunks are reclaimed');
is(sql("SET eventbus.max_topics = 100; SELECT eventbus.publish('lim.newer', '{}') > 0", 'limits'), 't',
	'then a new topic is taken again');

# 4. 200,000 distinct topics in one database, 20 in another, the same
# consumers in both. Maintenance every second, so that the 200,000 are
# retired and dropped (in steps) while we measure.
for my $db ('many', 'few')
{
	sql("CREATE DATABASE $db");
	sql("CREATE EXTENSION eventbus;
		SELECT eventbus.subscribe('orders', array['orders.#']);", $db);
}
my $t0 = time;
sql("SELECT count(eventbus.publish('noise.' || g || '.x', '{}')) FROM generate_series(1, 200000) g", 'many');
note sprintf('published 200,000 distinct topics in %.1f s', time - $t0);
sql("SELECT count(eventbus.publish('noise.' || (g % 20) || '.x', '{}')) FROM generate_series(1, 200000) g", 'few');
is(count_topics('noise.%', 'many'), '200000', '200,000 topics in one database');
is(count_topics('noise.%', 'few'), '20', '20 in the other');
set_conf($node, 'eventbus.maintenance_interval', '1s');

# Polling: publish one order, then a poll that waits for it (the worker
# cuts it); the median of 60, after 10 not counted. Ticking: how often the worker ticked while
# we did that (from eventbus.worker_stats). Between two orders, 20 events
# on 20 of the noise topics, the same in both databases: only the size of
# the dictionary differs.
sub measure
{
	my ($db) = @_;
	my $pub = $node->background_psql($db);
	my $con = $node->background_psql($db);
	my @lat;
	my $tok = 'NULL';
	my ($ticks0, $start);
	# 10 rounds first, not counted: the worker has the burst to take in.
	for my $i (-9 .. 60)
	{
		if ($i == 1)
		{
			$ticks0 = sql("SELECT ticks FROM eventbus.worker_stats WHERE database = '$db'");
			$start = time;
		}
		my $t = time;
		$pub->query_safe("SELECT eventbus.publish('orders.eu.created', '{}')");
		# the poll acks what the previous one leased (ack_lease)
		my $r = $con->query_safe("SELECT count(*) || ' ' || coalesce(max(lease_token)::text, 'NULL')
			FROM eventbus.poll('orders', 10, wait => '5s', ack_lease => $tok)");
		push @lat, time - $t if $i > 0;
		(my $n, $tok) = split / /, $r;
		die "poll $i in $db got no event" unless $n > 0;
		$pub->query_safe("SELECT eventbus.publish('noise.' || g || '.x', '{}') FROM generate_series(1, 20) g");
	}
	$con->query_safe("SELECT eventbus.ack('orders', NULL, $tok)");
	my $secs = time - $start;
	my $ticks1 = sql("SELECT ticks FROM eventbus.worker_stats WHERE database = '$db'");
	$pub->quit;
	$con->quit;
	@lat = sort { $a <=> $b } @lat;
	return ($lat[30], $secs / (($ticks1 - $ticks0) || 1));
}
# Three rounds, alternating, after VACUUM ANALYZE (so that autovacuum does
# not take the CPU from one of them): the median of each.
sql('VACUUM ANALYZE', $_) for ('many', 'few');
my (@pm, @tm, @pf, @tf);
for my $round (1 .. 3)
{
	my ($p, $t) = measure('many');
	push @pm, $p;
	push @tm, $t;
	($p, $t) = measure('few');
	push @pf, $p;
	push @tf, $t;
}
sub median { my @v = sort { $a <=> $b } @_; return $v[ int(@v / 2) ]; }
my ($poll_many, $tick_many, $poll_few, $tick_few) = (median(@pm), median(@tm), median(@pf), median(@tf));
note sprintf('poll median: %.1f ms with 200,000 topics, %.1f ms with 20; tick interval %.1f ms vs %.1f ms',
	1000 * $poll_many, 1000 * $poll_few, 1000 * $tick_many, 1000 * $tick_few);
# Within 2x, with a millisecond of slack for a busy machine.
cmp_ok($poll_many, '<=', 2 * $poll_few + 0.001, 'poll latency with 200,000 topics is within 2x of 20 topics');
cmp_ok($tick_many, '<=', 2 * $tick_few + 0.001, 'the tick interval with 200,000 topics is within 2x of 20 topics');

# Maintenance drops them in bounded steps between the worker's ticks: the
# same measures while it does stay within 2x.
cycle('many') for 1 .. 3;
ok($node->poll_query_until('many', "SELECT count(*) > 1000 FROM eventbus.topic WHERE retired_gen IS NOT NULL"),
	'maintenance retires the unused topics');
my @drop = (measure('many'), measure('many'), measure('many'));
my ($poll_drop, $tick_drop) = (median(@drop[0, 2, 4]), median(@drop[1, 3, 5]));
my $left = sql("SELECT count(*) FROM eventbus.topic WHERE topic LIKE 'noise.%'", 'many');
note sprintf('while dropping (%d noise topics left after): poll median %.1f ms, tick interval %.1f ms',
	$left, 1000 * $poll_drop, 1000 * $tick_drop);
cmp_ok($poll_drop, '<=', 2 * $poll_few + 0.001, 'poll latency while the topics are dropped is within 2x of 20 topics');
cmp_ok($tick_drop, '<=', 2 * $tick_few + 0.001, 'so is the tick interval');
# All but the 20 published again are dropped, as the log moves on (a
# topic retired in the current chunk's generation is dropped after the
# next ones).
ok($node->poll_query_until('many', "SELECT eventbus.publish('other.x', '{}') > 0
	AND (SELECT count(*) FROM eventbus.topic WHERE topic LIKE 'noise.%') <= 20"),
	'the worker drops the 199,980 unused topics');
is(dangling('many'), '0', 'every stored event names a topic');

$keeper->quit;
$stale->quit;
$node->stop;
done_testing();

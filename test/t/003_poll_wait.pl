# poll(..., wait): a waiting poller wakes when another session commits a
# publish (or a nack makes a retry due), can be cancelled, and also works
# without shared_preload_libraries (re-checking every 100 ms). Time bounds
# here are liveness bounds, far above what is expected, not speed claims.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# Sends a waiting poll from a background session; returns after it started
# waiting (visible as wait event type Extension in pg_stat_activity).
sub start_wait
{
	my ($node, $bg, $sub, $seconds, $tag) = @_;
	$bg->{stdout} = '';
	$bg->query_until(qr/started $tag/,
		"\\echo started $tag\nSELECT '$tag ' || count(*) || ' ' || coalesce(string_agg(payload->>'n', ','), '-') "
		  . "FROM eventbus.poll('$sub', 10, wait => '$seconds s');\n");
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'client backend' AND wait_event_type = 'Extension' "
		  . "AND query LIKE '%eventbus.poll(''$sub''%'");
}

# Waits for the result line of start_wait and returns it.
sub finish_wait
{
	my ($bg, $tag) = @_;
	pump_until($bg->{run}, $bg->{timeout}, \$bg->{stdout}, qr/^$tag .*$/m);
	my ($line) = $bg->{stdout} =~ /^($tag .*)$/m;
	return $line // '';
}

my $node = PostgreSQL::Test::Cluster->new('wait');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'eventbus'");
$node->start;
$node->safe_psql('postgres', "CREATE EXTENSION eventbus;
	SELECT eventbus.subscribe('w', array['w.#'], lease => '1 hour');");

my $bg = $node->background_psql('postgres', on_error_stop => 0);

# 1. A publish committed by another session wakes the waiter.
ok(start_wait($node, $bg, 'w', 60, 'pub'), 'the poller waits');
my $t0 = time;
$node->safe_psql('postgres', "SELECT eventbus.publish('w.x', '{\"n\": 1}')");
is(finish_wait($bg, 'pub'), 'pub 1 1', 'the waiting poll returns the published event');
cmp_ok(time - $t0, '<', 30, 'woken by the commit, long before its 60 s wait ended');

# 2. An uncommitted publish does not; its commit does.
ok(start_wait($node, $bg, 'w', 60, 'tx'), 'the poller waits again');
my $pub = $node->background_psql('postgres');
$pub->query_safe("BEGIN; SELECT eventbus.publish('w.x', '{\"n\": 2}');");
$pub->query_safe("SELECT pg_sleep(0.2)");
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND wait_event_type = 'Extension'"),
	'1', 'still waiting while the publishing transaction is open');
$pub->query_safe("COMMIT");
is(finish_wait($bg, 'tx'), 'tx 1 2', 'the commit wakes it');

# 3. A nack with retry_in: the waiter is woken by the nack's commit and
# then sleeps until the retry is due.
my $id = $node->safe_psql('postgres', "SELECT id FROM eventbus.events WHERE payload->>'n' = '2'");
ok(start_wait($node, $bg, 'w', 60, 'nack'), 'waiting for a retry');
$t0 = time;
$node->safe_psql('postgres', "SELECT eventbus.nack('w', $id, 'later', retry_in => '1 second')");
is(finish_wait($bg, 'nack'), 'nack 1 2', 'the retried event is handed out when due');
cmp_ok(time - $t0, '>=', 0.9, 'not before retry_in');
cmp_ok(time - $t0, '<', 30, 'and long before the wait ended');

# 4. Another poller holds the cursor when the event comes: the waiter gets
# it soon after that poller commits (it looks again every 100 ms while
# denied the cursor).
my $holder = $node->background_psql('postgres');
$holder->query_safe("BEGIN; SELECT count(*) FROM eventbus.poll('w', 10);");
ok(start_wait($node, $bg, 'w', 60, 'denied'), 'waiting while another poller holds the cursor');
$node->safe_psql('postgres', "SELECT eventbus.publish('w.x', '{\"n\": 3}')");
$node->safe_psql('postgres', "SELECT pg_sleep(0.3)");
$t0 = time;
$holder->query_safe("COMMIT");
is(finish_wait($bg, 'denied'), 'denied 1 3', 'the waiter gets the event once the cursor is free');
cmp_ok(time - $t0, '<', 30, 'soon after the holder commits, not at the end of its wait');
$holder->quit;

# 5. Wake-ups for other topics do not write: a waiting poll looks at the
# log first and updates its cursor only when something may be there.
$node->safe_psql('postgres', "SELECT eventbus.subscribe('other', array['other.#'])");
my $cursor_updates = sub {
	$bg->query_safe("SELECT pg_stat_force_next_flush()");
	$bg->query_safe("SELECT 1");
	return $node->safe_psql('postgres',
		"SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'eventbus.cursor'::regclass");
};
my $before = $cursor_updates->();
ok(start_wait($node, $bg, 'w', 3, 'quiet'), 'waiting for three seconds');
$node->safe_psql('postgres', join("\n", map { "SELECT eventbus.publish('other.x', '{}');" } 1 .. 50));
is(finish_wait($bg, 'quiet'), 'quiet 0 -', '50 commits on other topics: nothing for this poll');
my $updates = $cursor_updates->() - $before;
cmp_ok($updates, '<=', 3, "the cursor was updated $updates times during the wait, not once per wake-up");

# 6. A subscription dropped and made again while a poll waits on it: the
# poll ends with 55000 when it wakes, and says what to do.
$node->safe_psql('postgres', "SELECT eventbus.subscribe('gone', array['gone.#'])");
$bg->{stderr} = '';
ok(start_wait($node, $bg, 'gone', 600, 'gone'), 'waiting on subscription gone');
$node->safe_psql('postgres', "SELECT eventbus.unsubscribe('gone');
	SELECT eventbus.subscribe('gone', array['gone.#']);");
$node->safe_psql('postgres', "SELECT eventbus.publish('gone.x', '{}')");
pump_until($bg->{run}, $bg->{timeout}, \$bg->{stderr}, qr/HINT:.*$/m);
like($bg->{stderr}, qr/ERROR:  subscription "gone" was dropped while poll waited/,
	'a poll whose subscription was dropped and made again while it waited fails');
like($bg->{stderr}, qr/HINT:  It was dropped \(and maybe created again\) by another session; poll it again\./,
	'with a hint');
is($node->safe_psql('postgres', "SELECT count(*) FROM eventbus.poll('gone', 10)"), '1',
	'the new subscription has the event');

# 7. pg_cancel_backend ends a wait.
ok(start_wait($node, $bg, 'w', 600, 'cancel'), 'waiting for ten minutes');
$node->safe_psql('postgres',
	"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND wait_event_type = 'Extension'");
pump_until($bg->{run}, $bg->{timeout}, \$bg->{stderr}, qr/canceling statement due to user request/);
like($bg->{stderr}, qr/canceling statement due to user request/, 'pg_cancel_backend cancels the wait');
$bg->quit;
$pub->quit;
$node->stop;

# 8. Without shared_preload_libraries the waiter re-checks every 100 ms.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', "CREATE EXTENSION eventbus;
	SELECT eventbus.subscribe('w', array['w.#']);");
$bg = $plain->background_psql('postgres');
$bg->query_until(qr/started/, "\\echo started\nSELECT 'plain ' || count(*) FROM eventbus.poll('w', 10, wait => '60 s');\n");
$plain->safe_psql('postgres', "SELECT pg_sleep(0.3); SELECT eventbus.publish('w.x', '{}')");
$t0 = time;
is(finish_wait($bg, 'plain'), 'plain 1', 'without preload, a waiting poll still gets the event');
cmp_ok(time - $t0, '<', 30, 'within the fallback interval, not the 60 s wait');
$bg->quit;
$plain->stop;

done_testing();

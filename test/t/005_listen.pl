# LISTEN notifications from the background worker: a listener that polls
# only when notified receives every event (test/listen_latency.py, about
# 200 events/s for 3 s), a subscription whose patterns do not match and a
# paused one are not notified meanwhile, and resume notifies the paused
# one; retries, lease ends and delayed events are notified when they fall
# due, and a rolled-back poll when it rolls back; an event whose
# transaction was open at a tick is notified after its commit. Time bounds are liveness bounds, far above what is expected, not
# speed claims; the latency figures are printed with note().
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $python = '/usr/bin/python3';
my $script = abs_path(dirname(__FILE__) . '/../listen_latency.py');
if (system($python, '-c', 'import psycopg2') != 0)
{
	plan skip_all => "$python cannot import psycopg2 (Debian: python3-psycopg2)";
}

my $node = PostgreSQL::Test::Cluster->new('listen');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'eventbus'");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql("CREATE EXTENSION eventbus");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker' AND datname = 'postgres'"),
	'the worker of database postgres runs');

# The worker's first tick notified every subscription there was; these come
# after it. 'quiet' matches none of the published topics, 'held' matches
# them but is paused.
sql("SELECT eventbus.subscribe('latency', array['latency.#']);
	SELECT eventbus.subscribe('quiet', array['other.#']);
	SELECT eventbus.subscribe('held', array['latency.#']);
	SELECT eventbus.pause('held');");

# 1. Every event reaches a listener that polls only when notified.
my @cmd = (
	$python, $script,
	'--dsn' => $node->connstr('postgres'),
	'--rate' => 200,
	'--seconds' => 3,
	'--topic' => 'latency.test',
	'--timeout' => 10,
	'--silent' => 'quiet',
	'--silent' => 'held');
my ($out, $err) = ('', '');
IPC::Run::run(\@cmd, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
my $rc = $? >> 8;
note $out;
note "stderr: $err" if $err ne '';
is($rc, 0, 'listen_latency.py exits 0: every event received, no silent channel notified');

my ($published) = $out =~ /^published: (\d+) events/m;
my ($received, $expected) = $out =~ /^received: (\d+) of (\d+)/m;
my ($p50, $p90, $p99, $max) = $out =~ /^latency ms: p50 (\S+) p90 (\S+) p99 (\S+) max (\S+)/m;
cmp_ok($published // 0, '>=', 500, 'about 600 events published (one per transaction)');
is($received, $published, 'the listener received every published event');
is($expected, $published, 'and expected exactly those');
note sprintf('latency commit -> notification -> poll returned: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms',
	$p50 // '?', $p90 // '?', $p99 // '?', $max // '?');
my ($w50, $w99) = $out =~ /^wake ms: p50 (\S+) p90 \S+ p99 (\S+)/m;
note sprintf('commit -> notification arrived (listener idle): p50 %s ms, p99 %s ms', $w50 // '?', $w99 // '?');
ok(defined $p99 && $p99 < 1000, "p99 latency below 1000 ms (liveness bound): ${\($p99 // '?')} ms");

# 2. No notification for a subscription whose patterns do not match, nor
# for a paused one whose patterns do.
like($out, qr/^silent quiet: 0 notifications during the run/m,
	'a subscription that matches no published topic is not notified');
like($out, qr/^silent held: 0 notifications during the run/m, 'a paused subscription is not notified');
is(sql("SELECT count(*) FROM eventbus.poll('quiet', 10)"), '0', 'and indeed quiet has nothing to poll');

# 3. resume notifies the paused subscription (its events are waiting).
my $bg = $node->background_psql('postgres');
$bg->query_safe('LISTEN eventbus_held');
sql("SELECT eventbus.resume('held')");
my $notified = 0;
for (1 .. 100)
{
	my $o = $bg->query_safe('SELECT pg_sleep(0.1)');
	if ($o =~ /Asynchronous notification "eventbus_held" with payload "held"/)
	{
		$notified = 1;
		last;
	}
}
ok($notified, 'resume notifies the subscription, with its name as payload');
is(sql("SELECT count(*) FROM eventbus.poll('held', 1000)"), $published,
	'the resumed subscription then polls every event published while it was paused');
$bg->quit;

# 4. Deliveries that fall due are notified when they do: a retry, a lease
# end, a delayed event; and a poll that rolls back gives its events back
# with a notification.
use Time::HiRes qw(time);
sql("SELECT eventbus.subscribe('due', array['due.#'], backoff_initial => '1 s', backoff_max => '1 s')");
$bg = $node->background_psql('postgres');
$bg->query_safe('LISTEN eventbus_due');

# Waits up to 10 s for a notification on eventbus_due; returns the seconds
# it took, or undef. Notifications that arrived before are dropped first.
sub wait_due
{
	my $t0 = time;
	for (1 .. 200)
	{
		my $o = $bg->query_safe('SELECT pg_sleep(0.05)');
		return time - $t0 if $o =~ /Asynchronous notification "eventbus_due"/;
	}
	return undef;
}
# (max_events 10 below: a poll that fills max_events notifies at once, as
# others may find more.)
sub drain_due { $bg->query_safe('SELECT pg_sleep(0.1)'); }

sql("SELECT eventbus.publish('due.x', '{}')");
ok(defined wait_due(), 'a new event is notified');
my $id = sql("SELECT event_id FROM eventbus.poll('due', 10)");
drain_due();
sql("SELECT eventbus.nack('due', $id, 'later')");
my $t = wait_due();
ok(defined $t, 'a retry is notified when it falls due');
cmp_ok($t // 0, '>', 0.2, 'not at the nack, but when the backoff (0.5-1 s) ends');
note(sprintf('retry notified %.2f s after the nack', $t // -1));

sql("SELECT event_id FROM eventbus.poll('due', 10, lease => '1 s')");
drain_due();
$t = wait_due();
ok(defined $t, 'an expired lease is notified');
cmp_ok($t // 0, '>', 0.5, 'when the 1 s lease ends');
is(sql("SELECT attempt FROM eventbus.poll('due', 10)"), '3', 'and the event is pollable again');

sql("SELECT eventbus.ack('due', array[$id])");
sql("SELECT eventbus.publish('due.x', '{}', deliver_at => clock_timestamp() + interval '1.5 s')");
ok(defined wait_due(), 'a delayed event is notified when published');
is(sql("SELECT count(*) FROM eventbus.poll('due', 1)"), '0', 'but not handed out before its time');
drain_due();
$t = wait_due();
ok(defined $t, 'and notified again when its time comes');
is(sql("SELECT count(*) FROM eventbus.poll('due', 10)"), '1', 'then it is handed out');

sql("SELECT eventbus.publish('due.x', '{}')");
ok(defined wait_due(), 'one more event');
my $consumer = $node->background_psql('postgres');
$consumer->query_safe("BEGIN; SELECT count(*) FROM eventbus.poll('due', 10);");
drain_due();
$consumer->query_safe('ROLLBACK');
ok(defined wait_due(), 'a poll that rolls back is notified: its events are pollable again');
$consumer->quit;
$bg->quit;

# 5. A listener that does not poll is not flooded: after a notification,
# the next goes out once the subscription has been polled, or 1 s later.
sql("SELECT eventbus.subscribe('lazy', array['lazy.#'])");
$bg = $node->background_psql('postgres');
$bg->query_safe('LISTEN eventbus_lazy');
# Counts notifications on eventbus_lazy during "secs" seconds; $last_lazy
# is when the last one arrived.
my $last_lazy;
sub count_lazy
{
	my ($secs) = @_;
	my $n = 0;
	my $t0 = time;
	while (time - $t0 < $secs)
	{
		my $o = $bg->query_safe('SELECT pg_sleep(0.05)');
		my $k = () = $o =~ /Asynchronous notification "eventbus_lazy"/g;
		$n += $k;
		$last_lazy = time if $k;
	}
	return $n;
}
my $t0 = time;
for my $i (1 .. 20)
{
	sql("SELECT eventbus.publish('lazy.x', '{}')");
	select(undef, undef, undef, 0.02);
}
my $burst = time - $t0;
my $n = count_lazy(0.3);
cmp_ok($n, '>=', 1, 'the first event of a burst is notified');
cmp_ok($n, '<=', 1 + int($burst), sprintf('20 commits in %.2f s without a poll: %d notification(s), at most one a second', $burst, $n));
# More than 1 s after the last notification, a new commit is notified
# (within the next tick; 1.5 s leaves room for a busy machine).
my $left = 1.2 - (time - $last_lazy);
select(undef, undef, undef, $left) if $left > 0;
sql("SELECT eventbus.publish('lazy.x', '{}')");
is(count_lazy(1.5), 1, 'unpolled, a commit more than 1 s after the last notification is notified');
is(sql("SELECT count(*) FROM eventbus.poll('lazy', 100)"), '21', 'one poll gets all 21 events');
$t0 = time;
sql("SELECT eventbus.publish('lazy.x', '{}')");
$n = count_lazy(0.5);
is($n, 1, 'after a poll, the next event is notified at once');
$bg->quit;

# 6. An event whose transaction began before a tick and committed after
# it is notified, on an otherwise idle bus: the tick after the commit finds
# it among the transactions in progress at the previous tick (the xip of
# the window's lower snapshot). A listener that polls only when notified
# would never hear of it otherwise.
sql("SELECT eventbus.subscribe('straddle', array['straddle.#']);
	SELECT eventbus.subscribe('ticker', array['ticker.#']);");
$bg = $node->background_psql('postgres');
$bg->query_safe('LISTEN eventbus_straddle; LISTEN eventbus_ticker');
# Waits up to $secs for a notification on channel $chan; returns the
# seconds it took, or undef. The notifications seen on the way are kept in
# $seen_straddle.
my $seen_straddle = '';
sub wait_channel
{
	my ($chan, $secs) = @_;
	my $t0 = time;
	while (time - $t0 < $secs)
	{
		my $o = $bg->query_safe('SELECT pg_sleep(0.05)');
		$seen_straddle .= $o;
		return time - $t0 if $o =~ /Asynchronous notification "$chan"/;
	}
	return undef;
}
# Nothing is pending for either; drop what subscribing may have notified.
$bg->query_safe('SELECT pg_sleep(0.3)');
$seen_straddle = '';
my $writer = $node->background_psql('postgres');
$writer->query_safe("BEGIN; SELECT eventbus.publish('straddle.x', '{\"n\": 1}')");
sql("SELECT eventbus.publish('ticker.x', '{}')");
ok(defined wait_channel('eventbus_ticker', 10),
	'a tick ran while the straddling transaction was open (its other topic was notified)');
unlike($seen_straddle, qr/"eventbus_straddle"/, 'the uncommitted event was not notified');
$writer->query_safe('COMMIT');
$writer->quit;
$t = wait_channel('eventbus_straddle', 2);
ok(defined $t, 'the event committed after that tick is notified within 2 s');
note(sprintf('straddling event notified %.2f s after its commit', $t // -1));
is(sql("SELECT count(*) FROM eventbus.poll('straddle', 10)"), '1', 'and it is then polled');
$bg->quit;

# 7. The worker ran the whole time (a restart would notify everything).
unlike(slurp_file($node->logfile), qr/eventbus worker .* exited unexpectedly/,
	'the worker did not restart');

$node->stop;
done_testing();

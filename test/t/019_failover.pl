# Failover to a streaming standby. On the primary, 300 events with unique
# keys are published while a consumer polls and acks some of them; one
# batch stays leased and not acked, one transaction that published is
# still open and another rolled back. Once the standby has caught up, the
# primary dies (pg_ctl stop -m immediate) and the standby is promoted. On
# the new primary the eventbus worker starts, every committed event the
# old primary had not acked is delivered exactly once, the batch whose
# lease was open comes again (attempt 2) and nothing else does, nothing
# that never committed is delivered, and publishing works. The time from
# promotion to the first delivery is noted (docs/reliability.md#failover).
# Part 2: with synchronous_standby_names and synchronous_commit =
# remote_apply, every event whose COMMIT returned is on the standby at
# once, without waiting for it to catch up, and is delivered after a
# second failover. A handler subscription paused until the failover runs
# on the new primary and handles each committed event once. Time bounds here are liveness bounds, not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWorkers;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $total = 300;
my $lease = '3s';    # the open lease comes back soon after the failover

my $primary = start_primary('primary', "eventbus.worker_restart_delay = 1\n");
$primary->safe_psql('postgres', qq{
CREATE EXTENSION eventbus;
SELECT eventbus.subscribe('ha', array['ha.#'], lease => '$lease');
-- A handler subscription, paused until after the failover: its handler
-- runs on the new primary only, writing each key in the transaction that
-- acks the event.
CREATE TABLE ha_handled (key text NOT NULL, event_id bigint NOT NULL);
CREATE FUNCTION ha_handle(e eventbus.event) RETURNS void LANGUAGE sql AS \$\$
    INSERT INTO ha_handled VALUES (e.payload->>'k', e.id)
\$\$;
SELECT eventbus.subscribe('hh', array['ha.#'], handler => 'ha_handle(eventbus.event)');
SELECT eventbus.pause('hh');
});
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

# What the consumer received, as a client knows it: key => [[event id,
# attempt, node], ...], and the keys whose ack returned.
my (%got, %acked);

# Polls up to $n events of 'ha' on $node; returns [key, id, attempt, token]
# rows and records them as deliveries.
sub poll_batch
{
	my ($node, $n, $name) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT payload->>'k', event_id, attempt, lease_token FROM eventbus.poll('ha', $n)");
	my @rows = map { [ split /\|/ ] } grep { length } split /\n/, $out;
	push @{ $got{ $_->[0] } }, [ $_->[1], $_->[2], $name ] for @rows;
	return \@rows;
}

# Acks the rows of one poll_batch by their lease token; returns the count.
sub ack_batch
{
	my ($node, $rows) = @_;
	return 0 unless @$rows;
	my $ids = join(',', map { $_->[1] } @$rows);
	my $n = $node->safe_psql('postgres',
		"SELECT eventbus.ack('ha', array[$ids], lease_token => $rows->[0][3])");
	if ($n == @$rows) { $acked{ $_->[0] } = 1 for @$rows; }
	return $n;
}

# ---- 1. Load on the primary: publish in small transactions, consume some.
my $published = 0;
my $acked_old = 0;
while ($published < $total)
{
	my $sql = "BEGIN;\n";
	$sql .= "SELECT eventbus.publish('ha.order', jsonb_build_object('k', 'e$_'));\n"
	  for $published + 1 .. $published + 20;
	$primary->safe_psql('postgres', $sql . 'COMMIT;');
	$published += 20;
	# Every other round, the consumer takes a batch and acks it.
	$acked_old += ack_batch($primary, poll_batch($primary, 15, 'old'))
	  if $published % 40 == 0;
}
cmp_ok($acked_old, '>', 0, "$acked_old events acked on the old primary");
# A batch leased and never acked: its lease is open at the failure.
my $open = poll_batch($primary, 10, 'old');
is(scalar @$open, 10, 'a batch of 10 is leased and not acked at the failure');
# A transaction that rolled back, and one still open at the failure.
$primary->safe_psql('postgres',
	"BEGIN; SELECT eventbus.publish('ha.order', '{\"k\": \"rolledback\"}'); ROLLBACK;");
my $bg = $primary->background_psql('postgres', on_error_stop => 0);
$bg->query_safe("BEGIN; SELECT eventbus.publish('ha.order', '{\"k\": \"open\"}');");

$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', "SELECT count(*) FROM eventbus.events WHERE topic = 'ha.order'"),
	$total, "the standby has the $total committed events");

# ---- 2. The primary dies; the standby is promoted.
$primary->stop('immediate');
eval { $bg->quit; };
my $t_promote = time;
$standby->promote;
my $t_promoted = time;
my $new = $standby;
my ($first, $t_first);
# The first delivery: a poll (not acked yet) that returns events.
while (time - $t_promote < 60)
{
	my $rows = eval { poll_batch($new, 100, 'new') } // [];
	if (@$rows) { $first = $rows; $t_first = time; last; }
	usleep(20_000);
}
ok($first, 'the promoted standby delivers events');
note(sprintf('promote took %.2f s; promote to first delivery %.2f s',
		$t_promoted - $t_promote, ($t_first // time) - $t_promote));
ack_batch($new, $first) if $first;

ok(defined wait_true($new,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker'", 30),
	'the eventbus worker runs on the promoted node');
is(launchers($new), '1', 'and so does the launcher');

# Drain: poll and ack until every key not acked on the old primary has come
# (the open batch comes after its lease ends) and a poll is empty.
my $t0 = time;
while (time - $t0 < 60)
{
	my $rows = poll_batch($new, 100, 'new');
	ack_batch($new, $rows);
	next if @$rows;
	last if !grep { !$acked{"e$_"} } 1 .. $total;
	usleep(200_000);
}

my @lost = grep { !$acked{"e$_"} } 1 .. $total;
is(scalar @lost, 0, 'every committed event is acked in the end (none lost)')
  or diag("lost: @lost[0 .. ($#lost < 9 ? $#lost : 9)]");
my %open_keys = map { $_->[0] => 1 } @$open;
my (@dup_new, @again_acked, @again_unexpected, @phantom);
for my $k (sort keys %got)
{
	push @phantom, $k unless $k =~ /^e(\d+)$/ && $1 >= 1 && $1 <= $total;
	my @new = grep { $_->[2] eq 'new' } @{ $got{$k} };
	my @old = grep { $_->[2] eq 'old' } @{ $got{$k} };
	push @dup_new, $k if @new > 1;
	next unless @old && @new;
	if ($open_keys{$k}) { next; }
	push @again_unexpected, $k;
}
is(scalar @phantom, 0, 'no event that never committed is delivered (rolled back, open at the failure)')
  or diag("phantom: @phantom");
is(scalar @dup_new, 0, 'the new primary delivers each event once') or diag("@dup_new");
is(scalar @again_unexpected, 0,
	'no event acked on the old primary (before the catchup) is delivered again')
  or diag("again: @again_unexpected");
my @open_again = grep { my $k = $_; grep { $_->[2] eq 'new' && $_->[1] == 2 } @{ $got{$k} } }
  keys %open_keys;
is(scalar @open_again, 10, 'the 10 events whose lease was open at the failure come again, with attempt 2');
is(scalar(grep { $_->[2] eq 'new' } map { @$_ } values %got),
	$total - $acked_old, 'the new primary delivered exactly what the old one had not acked');

# Publishing works on the new primary.
$new->safe_psql('postgres', "SELECT eventbus.publish('ha.order', '{\"k\": \"after\"}')");
my $rows = poll_batch($new, 100, 'new');
is(join(',', map { $_->[0] } @$rows), 'after', 'an event published on the new primary is delivered');
ack_batch($new, $rows);

# The handler subscription, resumed on the new primary, handles every
# committed event once (300 and 'after').
$new->safe_psql('postgres', "SELECT eventbus.resume('hh')");
ok( $new->poll_query_until('postgres',
		"SELECT count(DISTINCT key) = $total + 1 FROM ha_handled"),
	'the handler subscription, resumed on the new primary, handles every committed event');
is( $new->safe_psql('postgres',
		"SELECT count(*) || ' ' || count(*) FILTER (WHERE key !~ '^(e[0-9]+|after)\$') FROM ha_handled"),
	($total + 1) . ' 0', 'each once, and none that never committed');

# ---- 3. Synchronous replication: a COMMIT that returned is on the standby.
$new->backup('b2');
my $standby2 = PostgreSQL::Test::Cluster->new('standby2');
$standby2->init_from_backup($new, 'b2', has_streaming => 1);
$standby2->start;
$new->append_conf('postgresql.conf', qq{
synchronous_standby_names = 'standby2'
synchronous_commit = remote_apply
});
$new->reload;
ok( $new->poll_query_until('postgres',
		"SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'standby2'"),
	'standby2 is a synchronous standby');
my @missing;
for my $i (1 .. 50)
{
	$new->safe_psql('postgres', "SELECT eventbus.publish('ha.order', '{\"k\": \"s$i\"}')");
	# Right after the COMMIT returned, without waiting for any catchup.
	push @missing, $i
	  unless $standby2->safe_psql('postgres',
		"SELECT count(*) FROM eventbus.events WHERE payload->>'k' = 's$i'") eq '1';
}
is(scalar @missing, 0, 'each of 50 events is on the synchronous standby when its COMMIT returns')
  or diag("missing right after commit: @missing");
$new->stop('immediate');
$standby2->promote;
my %s;
$t0 = time;
while (keys %s < 50 && time - $t0 < 60)
{
	my $r = poll_batch($standby2, 100, 'sync');
	ack_batch($standby2, $r);
	$s{ $_->[0] }++ for @$r;
	usleep(100_000) unless @$r;
}
is(scalar(grep { $s{"s$_"} } 1 .. 50), 50, 'after a second failover all 50 are delivered');

$standby2->stop;
done_testing();

# Crash cycles under load: N immediate shutdowns (EB_CHAOS_CYCLES, default 3;
# make chaos runs 20) while publishers commit single publishes, batches,
# savepoints (one rolled back, one kept) and transactions rolled back on
# purpose, a poll/ack consumer and a LISTEN + ack_lease consumer each drain
# a subscription, and a handler subscription writes each event it handles,
# with 64 kB chunks rotating every second. test/crash_load.py drives the
# load and keeps the client-side ledgers: what each publisher knows
# committed (and what it sent COMMIT for without an answer), and what each
# consumer received and whether its ack returned; the handler's ledger is
# the table it writes in the transaction that acks. After the last cycle
# the publishers stop, every subscription is drained, and the test fails on
# any committed event never delivered (lost), any delivered event that
# never committed (phantom), anything still pending (stuck), a duplicate
# that did not follow an ack that never returned or a lease that ran out
# first, and any error other than a lost connection. Time bounds here are
# liveness bounds, not speed claims; the figures go to note() and to
# tmp_check/chaos_report.md (docs/reliability.md).
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $python = '/usr/bin/python3';
my $driver = abs_path(dirname(__FILE__) . '/../crash_load.py');
if (system($python, '-c', 'import psycopg2') != 0)
{
	plan skip_all => "$python cannot import psycopg2 (Debian: python3-psycopg2)";
}

my $ncycles = $ENV{EB_CHAOS_CYCLES} // 3;
my $npublishers = $ENV{EB_CHAOS_PUBLISHERS} // 4;
my $rate = $ENV{EB_CHAOS_RATE} // 1000;    # events/s per publisher, at most
my $seed = $ENV{EB_CHAOS_SEED} // int(rand(1_000_000));
my $chunk_size = '64kB';    # the least eventbus.chunk_size allows
my $t_start = time;
note("$ncycles cycles, $npublishers publishers at up to $rate events/s each, seed $seed (EB_CHAOS_SEED)");
srand($seed);

my $node = PostgreSQL::Test::Cluster->new('chaos');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'eventbus'
max_worker_processes = 16
eventbus.chunk_size = '$chunk_size'
eventbus.chunk_interval = '1s'
eventbus.maintenance_interval = '1s'
eventbus.retention = 0
eventbus.worker_restart_delay = 1
log_statement = none
});
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Three subscriptions of every event. Leases of 5 s: what was leased at a
# crash comes back soon after it; max_attempts 1000: no dead letter from
# leases that ran out across many crashes (a dead letter counts as stuck).
sql(q{
CREATE EXTENSION eventbus;
-- One row per publishing transaction, inserted by that transaction: it
-- exists if and only if the transaction committed (in-doubt commits).
CREATE TABLE chaos_txn (pub int, first bigint, last bigint, mode text,
                        PRIMARY KEY (pub, first));
-- The handler's ledger, written in the transaction that acks the event.
CREATE TABLE chaos_handled (key text NOT NULL, event_id bigint NOT NULL,
                            attempt int NOT NULL, at timestamptz NOT NULL);
CREATE FUNCTION chaos_handle(e eventbus.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO chaos_handled VALUES (e.payload->>'k', e.id, e.attempt, clock_timestamp())
$$;
SELECT eventbus.subscribe('polled', array['chaos.#'], lease => '5s', max_attempts => 1000);
SELECT eventbus.subscribe('listened', array['chaos.#'], lease => '5s', max_attempts => 1000);
SELECT eventbus.subscribe('handled', array['chaos.#'], lease => '5s', max_attempts => 1000,
                          handler => 'chaos_handle(eventbus.event)');
});
my $gen_start = sql('SELECT max(generation) FROM eventbus.chunk');

my $dir = "$PostgreSQL::Test::Utils::tmp_check/chaos_ledger";
make_path($dir);
unlink glob("$dir/*");
my $cycles_file = "$dir/cycles";
my $report = "$PostgreSQL::Test::Utils::tmp_check/chaos_report.md";

# Waits until $cond->() is true, every 100 ms; false after $timeout s.
sub wait_for
{
	my ($cond, $timeout) = @_;
	my $t0 = time;
	while (time - $t0 < $timeout)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

# Whether consumer ledger $name has a delivery (D line) after time $t,
# reading from byte $offset.
sub delivered_since
{
	my ($name, $offset, $t) = @_;
	my $text = slurp_file("$dir/cons-$name.txt", $offset);
	while ($text =~ /^D (\S+) /mg)
	{
		return 1 if $1 > $t;
	}
	return 0;
}

# Whether the handler has handled an event after time $t.
sub handled_since
{
	my ($t) = @_;
	my ($ret, $out) = $node->psql('postgres',
		"SELECT count(*) > 0 FROM chaos_handled WHERE at > to_timestamp($t)");
	return $ret == 0 && $out eq 't';
}

# The load, for all the cycles.
my $load = IPC::Run::start(
	[
		$python, $driver, 'run',
		'--dsn' => $node->connstr('postgres'),
		'--dir' => $dir,
		'--publishers' => $npublishers,
		'--rate' => $rate,
		'--seed' => $seed
	],
	'>' => "$dir/driver.out",
	'2>' => "$dir/driver.err");
# Should the test die, the driver must not outlive it (it also exits when
# its parent goes away).
END { eval { $load->kill_kill(grace => 5) if $load && $load->pumpable; }; }
sub driver_out { return -e "$dir/driver.out" ? slurp_file("$dir/driver.out") : ''; }
ok(wait_for(sub { driver_out() =~ /^running/m }, 30), 'the load driver runs')
  or die 'crash_load.py did not start: ' . slurp_file("$dir/driver.err");

my $t_cycle = time;
for my $c (1 .. $ncycles)
{
	# Load until the handler has handled 1000 events since the last
	# restart, then for 2 to 5 s more, at random, so that the crash falls
	# anywhere in the publishers' and consumers' loops.
	my $base = sql("SELECT count(*) FROM chaos_handled");
	ok( wait_for(
			sub {
				my ($ret, $out) = $node->psql('postgres', "SELECT count(*) FROM chaos_handled");
				return $ret == 0 && $out >= $base + 1000;
			},
			120),
		"cycle $c: events flow (1000 more handled)")
	  or last;
	usleep(int((2 + rand(3)) * 1_000_000));

	$node->stop('immediate');
	my %offset = map { $_ => -s "$dir/cons-$_.txt" // 0 } qw(polled listened);
	my $t_restart = time;
	$node->start;
	my $t_ready = time;
	open(my $fh, '>>', $cycles_file) or die $!;
	printf $fh "cycle %d %.6f %.6f\n", $c, $t_restart, $t_ready;
	close $fh;

	# Liveness: every consumer gets events again after the restart.
	ok( wait_for(
			sub {
				delivered_since('polled', $offset{polled}, $t_restart)
				  && delivered_since('listened', $offset{listened}, $t_restart)
				  && handled_since($t_restart);
			},
			60),
		"cycle $c: after the restart, the poll/ack consumer, the LISTEN consumer and the handler deliver again"
	) or last;
	note(sprintf('cycle %d: %.1f s of load, restart took %.2f s', $c, $t_restart - $t_cycle,
			$t_ready - $t_restart));
	$t_cycle = time;
}

# Stop publishing, then drain every subscription.
$load->signal('USR1');
ok(wait_for(sub { driver_out() =~ /^publishers stopped/m }, 60), 'the publishers stopped');
my $drained = wait_for(
	sub {
		my ($ret, $out) = $node->psql(
			'postgres',
			"SELECT (SELECT count(*) = 0 FROM eventbus.deliveries)
			    AND (SELECT bool_and(backlog = 0 AND in_flight = 0) FROM eventbus.subscription_stats
			          WHERE subscription IN ('polled', 'listened', 'handled'))");
		return $ret == 0 && $out eq 't';
	},
	120);
ok($drained, 'every subscription is drained: nothing leased, ready, waiting or unread');
$load->signal('TERM');
ok(wait_for(sub { driver_out() =~ /^stopped$/m }, 60), 'the consumers stopped')
  or diag(driver_out());
eval { $load->finish; };
my $driver_err = slurp_file("$dir/driver.err");
is($driver_err, '', 'the load driver wrote nothing to stderr') or diag($driver_err);

# The verdict.
my ($out, $err) = ('', '');
IPC::Run::run(
	[
		$python, $driver, 'check',
		'--dsn' => $node->connstr('postgres'),
		'--dir' => $dir,
		'--cycles' => $cycles_file,
		'--generation-start' => $gen_start,
		'--chunk-size' => $chunk_size,
		'--report' => $report
	],
	'>' => \$out,
	'2>' => \$err,
	IPC::Run::timeout(600));
is($?, 0, 'crash_load.py check ran') or diag($err);
my %fig = $out =~ /^figure (\S+) (\S+)$/mg;
my @details = grep { !/^figure / && !/immediate-shutdown cycles under load/ } split /\n/, $out;
note($_) for @details;

is($fig{cycles}, $ncycles, "$ncycles immediate-shutdown cycles run");
cmp_ok($fig{events_committed} // 0, '>', 0, 'events were committed');
cmp_ok($fig{lost_connections} // 0, '>=', $ncycles, 'the crashes cut the clients off');
cmp_ok($fig{rotations} // 0, '>', 0, 'chunks rotated under the load');
is($fig{lost}, 0, 'lost: no committed event left undelivered, to any subscription');
is($fig{commits_acknowledged_lost}, 0, 'no acknowledged COMMIT is missing after recovery');
is($fig{phantom}, 0, 'phantom: no delivered event that never committed');
is($fig{stuck}, 0, 'stuck: nothing left pending after the drain');
is($fig{duplicates_unexplained}, 0,
	'every duplicate followed an ack that never returned or a lease that ran out first');
is($fig{duplicates_handled}, 0, 'the handler handled each event once (its writes commit with its ack)');
is($fig{unexpected_errors}, 0, 'no error in the clients other than lost connections');
is($fig{unlogged_transactions}, 0, 'every committed transaction is in a publisher ledger');

note(slurp_file($report)) if -e $report;
note(sprintf('total runtime %.1f s', time - $t_start));
$node->stop;
done_testing();

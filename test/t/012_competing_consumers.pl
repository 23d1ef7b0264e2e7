# Competing consumers, exactly-once effects: four consumer sessions share
# one subscription and run the documented loop (BEGIN; poll; own writes;
# ack; COMMIT) over 50,000 events published while they run. The effects
# table has the event id as primary key and the consumers do not catch
# errors, so an event whose effect would be written twice fails its
# consumer. One consumer is terminated (pg_terminate_backend) in the middle
# of a batch: after its poll and its writes, before its ack and commit. Its
# batch must come back and be handled by the others, once, and in the end
# every event is handled exactly once and nothing is left leased or ready.
#
# The kill is made deterministic with an advisory lock instead of a sleep:
# consumer 1 takes a shared advisory lock between its writes and its ack
# on its third batch; the test holds that lock exclusively, so consumer 1
# stops there, mid-batch, until it is terminated.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $total = 50_000;
my $chunk = 1_000;
my $nconsumers = 4;
my $victim = 1;          # the consumer terminated mid-batch
my $victim_stop_at = 3;  # ... in its third batch with events

my $t_start = time;
my $node = PostgreSQL::Test::Cluster->new('competing');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'eventbus'
max_worker_processes = 16
});
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION eventbus;
-- A short lease: the test must not depend on it (a rollback frees a
-- batch at once), but if a claim outlived the killed consumer it would
-- come back after two seconds, with attempt 2.
SELECT eventbus.subscribe('cc', array['cc.#'], lease => '2 seconds');

-- The consumers' effects: one row per event, never two.
CREATE TABLE done (event_id bigint PRIMARY KEY, by_consumer int NOT NULL,
                   attempt int NOT NULL, handled_at timestamptz NOT NULL);
CREATE TABLE consumers (n int PRIMARY KEY, pid int NOT NULL);

-- The documented exactly-once loop, one transaction per iteration. No
-- exception block: a duplicate effect (unique violation) or an ack that
-- does not finish exactly what was polled ends the consumer with an error.
-- stop_at > 0: in that batch, take the shared advisory lock (12, me)
-- between the writes and the ack (the test holds it to stop us there).
CREATE PROCEDURE consume(me int, total int, stop_at int) LANGUAGE plpgsql AS $$
DECLARE
    v_ids    bigint[];
    v_att    int[];
    v_token  bigint;
    v_tokens int;
    v_n      int;
    v_acked  int;
    v_batches int := 0;
    v_idle   timestamptz := clock_timestamp();
BEGIN
    INSERT INTO consumers VALUES (me, pg_backend_pid());
    COMMIT;
    LOOP
        SELECT array_agg(p.event_id ORDER BY p.event_id), array_agg(p.attempt ORDER BY p.event_id),
               min(p.lease_token), count(DISTINCT p.lease_token), count(*)
          INTO v_ids, v_att, v_token, v_tokens, v_n
          FROM eventbus.poll('cc', 100, wait => '200 ms') p;
        IF v_n = 0 THEN
            COMMIT;
            EXIT WHEN (SELECT count(*) FROM done) >= total;
            IF clock_timestamp() - v_idle > interval '20 seconds' THEN
                RAISE WARNING 'consumer %: nothing to poll for 20 s, giving up', me;
                EXIT;
            END IF;
            CONTINUE;
        END IF;
        v_idle := clock_timestamp();
        v_batches := v_batches + 1;
        IF v_tokens <> 1 THEN
            RAISE EXCEPTION 'consumer %: one poll returned % lease tokens', me, v_tokens;
        END IF;
        INSERT INTO done
        SELECT u.id, me, u.att, clock_timestamp() FROM unnest(v_ids, v_att) AS u (id, att);
        PERFORM pg_sleep(0.01);  -- the handling takes a while: batches are held side by side
        IF v_batches = stop_at THEN
            RAISE LOG 'cc consumer % mid-batch: token % ids %', me, v_token, v_ids;
            PERFORM pg_advisory_xact_lock_shared(12, me);
        END IF;
        v_acked := eventbus.ack('cc', NULL, v_token);
        IF v_acked <> v_n THEN
            RAISE EXCEPTION 'consumer %: polled % events, ack of the lease finished %', me, v_n, v_acked;
        END IF;
        COMMIT;
    END LOOP;
END $$;

-- The publisher: chunks of publish_batch, each its own transaction.
CREATE PROCEDURE publish_all(total int, chunk int) LANGUAGE plpgsql AS $$
BEGIN
    FOR k IN 0 .. total / chunk - 1 LOOP
        PERFORM count(*) FROM eventbus.publish_batch(array['cc.x'],
            (SELECT array_agg(jsonb_build_object('n', g) ORDER BY g)
               FROM generate_series(k * chunk + 1, k * chunk + chunk) g));
        COMMIT;
    END LOOP;
END $$;
});

# The test holds the victim's advisory lock before anything starts.
my $gate = $node->background_psql('postgres');
$gate->query_safe("SELECT pg_advisory_lock(12, $victim)");

# Start the consumers, then the publisher.
my %bg;
for my $n (1 .. $nconsumers)
{
	my $b = $node->background_psql('postgres');
	$b->query_safe("SET application_name = 'cc_consumer_$n'");
	my $stop_at = $n == $victim ? $victim_stop_at : 0;
	$b->query_until(qr/started $n/,
		"\\echo started $n\nCALL consume($n, $total, $stop_at);\n\\echo finished $n\n");
	$bg{$n} = $b;
}
my $publisher = $node->background_psql('postgres');
$publisher->query_until(qr/publishing/,
	"\\echo publishing\nCALL publish_all($total, $chunk);\n\\echo published\n");

# Waits, every 50 ms, until $query returns 't', failing at once when a
# surviving consumer or the publisher reports an error (a duplicate effect
# ends its consumer's CALL).
sub wait_for
{
	my ($query, $what, $timeout) = @_;
	my $t0 = time;
	while (time - $t0 < $timeout)
	{
		for my $s ((map { ["consumer $_", $bg{$_}] } sort keys %bg), ['the publisher', $publisher])
		{
			my ($who, $b) = @$s;
			$b->{run}->pump_nb;
			if ($b->{stderr} =~ /(ERROR|FATAL|WARNING):.*/)
			{
				fail("$what: $who failed: $&");
				diag($b->{stderr});
				return 0;
			}
		}
		return pass($what) if sql($query) eq 't';
		usleep(50_000);
	}
	fail("$what: not within $timeout s");
	return 0;
}

# 1. The victim stops mid-batch: its third batch polled and written, not
# acked, its transaction open (an xid: it wrote), waiting on the lock.
wait_for(
	"SELECT EXISTS (SELECT 1 FROM pg_stat_activity a JOIN consumers c ON c.pid = a.pid
	  WHERE c.n = $victim AND a.wait_event_type = 'Lock' AND a.wait_event = 'advisory'
	    AND a.backend_xid IS NOT NULL)",
	'the victim consumer stops in the middle of a batch', 60)
  or die 'stopping: the victim never stopped mid-batch';

# ... while the others work: wait until they have done some of it.
wait_for("SELECT count(*) >= 5000 FROM done", 'the other consumers make progress meanwhile', 60)
  or die 'stopping: no progress while the victim holds its batch';
cmp_ok(sql("SELECT count(*) FROM done WHERE by_consumer = $victim"), '>', 0,
	'the victim had committed the effects of its first batches');

my $log = slurp_file($node->logfile);
my ($victim_token, $victim_ids) = $log =~ /cc consumer $victim mid-batch: token (\d+) ids \{([\d,]+)\}/;
ok(defined $victim_ids, 'the victim logged the batch it holds');
my @held = split /,/, ($victim_ids // '');
note(sprintf("victim holds %d events (%s .. %s) under lease token %s",
	scalar @held, $held[0] // '-', $held[-1] // '-', $victim_token // '-'));
is(sql("SELECT count(*) FROM done WHERE event_id IN (" . join(',', @held, 0) . ")"), '0',
	'none of its events has a committed effect yet (its writes are uncommitted)');

# 2. Terminate it there.
note("at the kill: "
	  . sql("SELECT (SELECT count(*) FROM done) || ' handled, '
	           || (SELECT count(*) FROM eventbus.events WHERE topic = 'cc.x') || ' published'"));
my $kill_t = time;
is( sql("SELECT pg_terminate_backend(pid) FROM consumers WHERE n = $victim"),
	't', 'the victim is terminated mid-batch');
$gate->query_safe("SELECT pg_advisory_unlock(12, $victim)");
$gate->quit;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity a JOIN consumers c ON c.pid = a.pid WHERE c.n = $victim"),
	'its backend is gone');
pump_until($bg{$victim}->{run}, $bg{$victim}->{timeout}, \$bg{$victim}->{stderr},
	qr/terminating connection due to administrator command|connection to server was lost/);
like($bg{$victim}->{stderr}, qr/terminating connection due to administrator command/,
	'its session saw the termination');
eval { $bg{$victim}->{run}->finish; };
delete $bg{$victim};

# 3. Everything gets handled: the others take the victim's batch too.
wait_for("SELECT count(*) = $total FROM done", "all $total events handled", 150)
  or die "stopping: not every event was handled";
my $t_done = time;
note(sprintf("%d events handled %.1f s after the start, %.1f s after the kill",
	$total, $t_done - $t_start, $t_done - $kill_t));

pump_until($publisher->{run}, $publisher->{timeout}, \$publisher->{stdout}, qr/published/);
ok(eval { $publisher->quit }, 'the publisher ended without error');
for my $n (sort keys %bg)
{
	pump_until($bg{$n}->{run}, $bg{$n}->{timeout}, \$bg{$n}->{stdout}, qr/finished $n/);
	my $ok = eval { $bg{$n}->quit };
	ok($ok && $bg{$n}->{stderr} !~ /ERROR|WARNING/, "consumer $n ended without error")
	  or diag($bg{$n}->{stderr});
}

# 4. Exactly once, nothing missing, nothing left.
is(sql("SELECT count(*) FROM eventbus.events WHERE topic = 'cc.x'"), $total, "$total events published");
is(sql("SELECT count(*) FROM done"), $total, "$total effects: each event's effect once (the primary key allows no second)");
is( sql("SELECT count(*) FROM eventbus.events e WHERE e.topic = 'cc.x'
	  AND NOT EXISTS (SELECT 1 FROM done d WHERE d.event_id = e.id)"),
	'0', 'every published event has its effect');
is(sql("SELECT count(*) FROM done d WHERE NOT EXISTS (SELECT 1 FROM eventbus.events e WHERE e.id = d.event_id)"),
	'0', 'and no effect is for an event that was not published');
is(sql("SELECT count(DISTINCT (payload->>'n')::int) FROM eventbus.events e JOIN done d ON d.event_id = e.id"),
	$total, 'the effects cover every payload n');
is(sql("SELECT count(*) FROM eventbus.deliveries WHERE subscription = 'cc'"), '0',
	'no event of the subscription is left leased, ready, waiting or dead');
is(sql("SELECT count(*) FROM eventbus.batch b JOIN eventbus.subscription s ON s.id = b.sub_id WHERE s.name = 'cc'"),
	'0', 'no batch row is left');
is(sql("SELECT backlog || ' ' || in_flight || ' ' || dead_letters FROM eventbus.subscription_stats WHERE subscription = 'cc'"),
	'0 0 0', 'subscription_stats: no backlog, nothing in flight, no dead letters');

# 5. Who did what.
my $by = sql("SELECT string_agg(by_consumer || ':' || c, ' ' ORDER BY by_consumer)
	FROM (SELECT by_consumer, count(*) c FROM done GROUP BY 1) q");
note("effects per consumer: $by");
is( sql("SELECT count(DISTINCT by_consumer) FROM done WHERE by_consumer <> $victim"),
	$nconsumers - 1, 'each surviving consumer did work');

# 6. The victim's batch came back and was handled by the others, once.
is( sql("SELECT count(*) FROM done WHERE event_id IN (" . join(',', @held, 0) . ") AND by_consumer <> $victim"),
	scalar @held, 'the events the victim held were handled by the other consumers');
# Its claim was part of the transaction that was rolled back: nothing of it
# happened, so the events came back at once, as they were (attempt 1), not
# after the lease ran out (attempt 2). Every event was handled on its first
# attempt.
is(sql("SELECT count(*) FROM done WHERE attempt <> 1"), '0',
	'every event was handled at attempt 1: the rolled-back claim did not count as a delivery');
is( sql("SELECT read || ' ' || delivered || ' ' || acked || ' ' || retried || ' ' || nacked || ' ' || dead
	FROM eventbus.subscription_stats WHERE subscription = 'cc'"),
	"$total $total $total 0 0 0",
	'subscription_stats: read, delivered, acked once per event; no retry, nack or dead letter');

$node->stop;
note(sprintf("total runtime %.1f s", time - $t_start));
done_testing();

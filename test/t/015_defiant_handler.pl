# A handler nothing can wedge: one that catches the cancel of
# eventbus.handler_timeout and goes on forever gets its process terminated
# by the worker, its event nacked with reason 'timeout' and, after
# max_attempts, dead-lettered; one that exits its own process is nacked
# with reason 'crashed'. Meanwhile another handler subscription and a
# polled subscription keep flowing, and pg_ctl stop -m fast succeeds with
# the defiant handler running. Time bounds are liveness bounds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('defiant');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
eventbus.handler_timeout = '500ms'
eventbus.handler_batch = 1
max_worker_processes = 20
));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION eventbus;
CREATE TABLE handled (sub text, n int);
-- Catches every cancel and goes on: only the process's end stops it.
CREATE FUNCTION defiant(e eventbus.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOOP
        BEGIN
            PERFORM pg_sleep(0.05);
        EXCEPTION WHEN query_canceled THEN
            NULL;
        END;
    END LOOP;
END $$;
-- Ends its own process.
CREATE FUNCTION suicidal(e eventbus.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_terminate_backend(pg_backend_pid());
    PERFORM pg_sleep(10);
END $$;
CREATE FUNCTION well_behaved(e eventbus.event) RETURNS void LANGUAGE sql AS $$
    INSERT INTO handled VALUES (e.subscription, (e.payload->>'n')::int)
$$;
SELECT eventbus.subscribe('defiant', array['defiant.#'], max_attempts => 2,
                          backoff_initial => '100 ms', backoff_max => '100 ms',
                          handler => 'defiant(eventbus.event)');
SELECT eventbus.subscribe('suicidal', array['suicidal.#'], max_attempts => 2,
                          backoff_initial => '100 ms', backoff_max => '100 ms',
                          handler => 'suicidal(eventbus.event)');
SELECT eventbus.subscribe('fine', array['fine.#'], handler => 'well_behaved(eventbus.event)');
SELECT eventbus.subscribe('polled', array['fine.#']);
});

# 1. The defiant handler runs on its event; the others flow meanwhile.
sql("SELECT eventbus.publish('defiant.x', '{\"n\": 1}')");
sql("SELECT eventbus.publish('suicidal.x', '{\"n\": 2}')");
ok($node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'eventbus handler for defiant' "
		  . "AND state = 'active'"),
	'the defiant handler is running');
my $t0 = time;
sql("SELECT eventbus.publish('fine.x', jsonb_build_object('n', g)) FROM generate_series(1, 20) g");
ok($node->poll_query_until('postgres', "SELECT count(*) = 20 FROM handled WHERE sub = 'fine'"),
	'another handler subscription handles its events meanwhile');
is(sql("SELECT count(*) FROM eventbus.poll('polled', 100)"), '20',
	'a polled subscription gets its events meanwhile');
my $notified = sql("SELECT notifications FROM eventbus.worker_stats WHERE database = 'postgres'");
cmp_ok($notified, '>', 0, 'and the worker sends notifications');

# 2. The defiant one ends as a dead letter with reason timeout, after
# max_attempts (2) terminated processes; the suicidal one with reason crashed.
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'defiant' AND reason = 'timeout'"),
	'the defiant handler\'s event is a dead letter with reason timeout');
my $took = time - $t0;
cmp_ok($took, '<', 60, "within a bound (took ${took}s)");
is(sql("SELECT attempts || ' ' || (last_error LIKE '%handler_timeout%')::text "
		  . "FROM eventbus.dead_letters WHERE subscription = 'defiant'"),
	'2 true', 'after max_attempts, last_error says why');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'suicidal' AND reason = 'crashed'"),
	'the handler that ends its process: a dead letter with reason crashed');
ok($node->log_contains(qr/handler overran eventbus\.handler_timeout \(500 ms\) and ignored the cancel/),
	'the log says which handler was terminated');

# 3. A new defiant event is running when the server is stopped: a fast
# stop does not wait for it.
sql("SELECT eventbus.publish('defiant.x', '{\"n\": 3}')");
ok($node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'eventbus handler for defiant' "
		  . "AND state = 'active'"),
	'the defiant handler runs again');
$t0 = time;
$node->stop('fast');    # dies if pg_ctl stop fails
$took = time - $t0;
pass('pg_ctl stop -m fast succeeds with the defiant handler running');
cmp_ok($took, '<', 20, "promptly (took ${took}s)");

# 4. After a restart the worker runs, and the other subscriptions flow.
$node->start;
sql("SELECT eventbus.publish('fine.x', '{\"n\": 100}')");
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM handled WHERE n = 100"),
	'after the restart, handlers run');
$node->stop('immediate');
done_testing();

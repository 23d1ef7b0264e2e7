# Handler subscriptions: the background worker calls the function once per
# event, in the transaction that acks it. Success acks; an error rolls the
# handler's writes back and nacks with the error message (retries, then a
# dead letter); a call longer than eventbus.handler_timeout is cancelled;
# the function runs as its owner; a slow handler does not hold up another
# subscription's handler for long. Time bounds are liveness bounds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('handlers');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
eventbus.handler_timeout = '500ms'
eventbus.handler_batch = 1
# one process per handler subscription (more for concurrency), the worker, the launcher
max_worker_processes = 20
));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_for
{
	my ($query, $what) = @_;
	ok($node->poll_query_until('postgres', $query), $what);
}

sql(q{
CREATE EXTENSION eventbus;
CREATE ROLE app_owner;
CREATE SCHEMA app AUTHORIZATION app_owner;
SET ROLE app_owner;
CREATE TABLE app.done (id bigint, topic text, attempt int, by_role text, n int);
CREATE FUNCTION app.on_event(e eventbus.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app.done VALUES (e.id, e.topic, e.attempt, current_user, (e.payload->>'n')::int);
    IF e.payload ? 'fail' THEN
        RAISE EXCEPTION 'cannot handle %', e.payload->>'n';
    END IF;
    IF e.payload ? 'sleep' THEN
        PERFORM pg_sleep((e.payload->>'sleep')::float);
    END IF;
    IF e.payload ? 'superuser' THEN
        PERFORM pg_read_file('postgresql.conf');
    END IF;
END $$;
RESET ROLE;
SELECT eventbus.subscribe('work', array['work.#'], max_attempts => 2,
                          backoff_initial => '100 ms', backoff_max => '100 ms',
                          handler => 'app.on_event(eventbus.event)');
});

# 1. Success: handled once, acked, as the function's owner.
sql("SELECT eventbus.publish('work.ok', jsonb_build_object('n', g)) FROM generate_series(1, 5) g");
wait_for("SELECT count(*) = 5 FROM app.done WHERE topic = 'work.ok'", 'five events handled');
wait_for(
	"SELECT count(*) = 0 FROM eventbus.deliveries WHERE subscription = 'work'",
	'and acked: no delivery left');
is(sql("SELECT string_agg(DISTINCT by_role, ',') || ' ' || max(attempt) FROM app.done"),
	'app_owner 1', 'each once, on the first attempt, as the owner of the function');

# 2. An error: the handler's writes are rolled back, the event is nacked
# with the message, retried, then dead.
sql("SELECT eventbus.publish('work.bad', '{\"n\": 6, \"fail\": true}')");
wait_for("SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'work'",
	'the failing event ends as a dead letter');
is(sql("SELECT attempts || ' ' || reason || ' ' || last_error FROM eventbus.dead_letters"),
	'2 failed cannot handle 6', 'after max_attempts, with the error message');
is(sql("SELECT count(*) FROM app.done WHERE n = 6"), '0',
	'the failed calls left no writes (rolled back with the call)');

# 3. A redriven dead letter is handled again (and fails again).
my $redriven_at = sql("SELECT clock_timestamp()");
is(sql("SELECT eventbus.redrive('work')"), '1', 'the dead letter is redriven');
wait_for(
	"SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'work' AND attempts = 2 AND dead_at > '$redriven_at'",
	'a redriven event goes through the handler again, and dies again');

# 4. Privileges: the handler cannot do what its owner may not.
sql("SELECT eventbus.purge_dead_letters('work')");
sql("SELECT eventbus.publish('work.su', '{\"n\": 7, \"superuser\": true}')");
wait_for("SELECT count(*) = 1 FROM eventbus.dead_letters WHERE event_id IS NOT NULL AND topic = 'work.su'",
	'a handler doing what its owner may not fails');
like(sql("SELECT last_error FROM eventbus.dead_letters WHERE topic = 'work.su'"),
	qr/permission denied/, 'with permission denied: it did not run as superuser');

# 5. A call longer than handler_timeout is cancelled and nacked.
sql("SELECT eventbus.publish('work.slow', '{\"n\": 8, \"sleep\": 30}')");
my $t0 = time;
wait_for("SELECT count(*) = 1 FROM eventbus.dead_letters WHERE topic = 'work.slow'",
	'a handler that overruns its timeout ends as a dead letter');
like(sql("SELECT last_error FROM eventbus.dead_letters WHERE topic = 'work.slow'"),
	qr/statement timeout/, 'with the timeout as its error');
cmp_ok(time - $t0, '<', 25, 'both calls were cut short, long before the 30 s sleep ended');

# 6. A slow subscription does not hold up another one for long.
sql(q{
SELECT eventbus.subscribe('slow', array['slow.#'], max_attempts => 1,
                          handler => 'app.on_event(eventbus.event)');
SELECT eventbus.subscribe('fast', array['fast.#'], handler => 'app.on_event(eventbus.event)');
TRUNCATE app.done;
});
sql("SELECT eventbus.publish('slow.x', jsonb_build_object('n', g, 'sleep', 30)) FROM generate_series(1, 4) g;
	 SELECT eventbus.publish('fast.x', jsonb_build_object('n', g)) FROM generate_series(1, 4) g;");
$t0 = time;
wait_for("SELECT count(*) = 4 FROM app.done WHERE topic = 'fast.x'",
	'the fast subscription is served while the slow one times out');
my $fast = time - $t0;
note(sprintf("4 fast events handled in %.2f s beside 4 slow ones (timeout 0.5 s, batch 1)", $fast));
cmp_ok($fast, '<', 20, 'within a bound far below the slow calls\' 4 x 30 s');

# 7. Nothing a handler leaves behind runs as the worker's superuser: it
# runs as a security-restricted operation (no deferred triggers, which
# would fire at commit), its settings are undone after the call, and the
# worker's own queries ignore operators planted in public.
sql(q{
GRANT CREATE ON SCHEMA public TO app_owner;
SET ROLE app_owner;
CREATE TABLE app.audit (what text, by_role text, search_path text);
CREATE FUNCTION app.spy(oid, regprocedure) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app.audit VALUES ('operator', current_user, current_setting('search_path'));
    RETURN $1 = $2::oid;
END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regprocedure, FUNCTION = app.spy);
CREATE FUNCTION app.note_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app.audit VALUES ('deferred trigger', current_user, current_setting('search_path'));
    RETURN NULL;
END $$;
CREATE TABLE app.deferred (n int);
CREATE CONSTRAINT TRIGGER note AFTER INSERT ON app.deferred
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app.note_trigger();
CREATE FUNCTION app.sneaky(e eventbus.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app.audit VALUES ('handler', current_user, current_setting('search_path'));
    PERFORM set_config('search_path', 'app, public, pg_catalog', false);
END $$;
CREATE FUNCTION app.defers(e eventbus.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app.deferred VALUES (1);
END $$;
RESET ROLE;
SELECT eventbus.subscribe('sneaky', array['sneaky.#'], handler => 'app.sneaky(eventbus.event)');
SELECT eventbus.subscribe('defers', array['defers.#'], max_attempts => 1,
                          handler => 'app.defers(eventbus.event)');
});
sql("SELECT eventbus.publish('sneaky.x', '{}') FROM generate_series(1, 2)");
wait_for("SELECT count(*) = 2 FROM app.audit WHERE what = 'handler'", 'the sneaky handler ran twice');
is(sql("SELECT string_agg(DISTINCT search_path, ',') FROM app.audit WHERE what = 'handler'"),
	'"$user", public', 'each call gets the search_path a login of the owner gets; the change did not outlive its call');
wait_for("SELECT count(*) = 0 FROM eventbus.deliveries WHERE subscription = 'sneaky'",
	'and its events were acked');
# The owner's own settings win over the server's: ALTER ROLE ... SET.
sql("ALTER ROLE app_owner SET search_path = app, public");
sql("SELECT eventbus.publish('sneaky.x', '{}')");
wait_for("SELECT count(*) = 3 FROM app.audit WHERE what = 'handler'", 'the sneaky handler ran again');
is(sql("SELECT search_path FROM app.audit WHERE what = 'handler' ORDER BY ctid DESC LIMIT 1"),
	'app, public', "ALTER ROLE ... SET search_path applies to the owner's handler calls");
sql("ALTER ROLE app_owner RESET search_path");
sql("SELECT eventbus.publish('defers.x', '{}')");
wait_for("SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'defers'",
	'a handler that queues a deferred trigger fails');
like(sql("SELECT last_error FROM eventbus.dead_letters WHERE subscription = 'defers'"),
	qr/deferred trigger within security-restricted operation/, 'refused as a restricted operation');
is(sql("SELECT count(*) FROM app.audit WHERE what = 'deferred trigger'"), '0',
	'the deferred trigger never fired (it would have, as superuser, at commit)');
is(sql("SELECT count(*) FROM app.audit WHERE what = 'operator'"), '0',
	'the worker\'s queries never used the operator planted in public');

# 8. Paused: nothing is handled; resumed: it is.
sql("SELECT eventbus.pause('fast')");
sql("SELECT eventbus.publish('fast.x', '{\"n\": 100}')");
sleep 1.5;
is(sql("SELECT count(*) FROM app.done WHERE n = 100"), '0', 'a paused handler subscription is not run');
sql("SELECT eventbus.resume('fast')");
wait_for("SELECT count(*) = 1 FROM app.done WHERE n = 100", 'and runs once resumed');

# 9. concurrency => N: N handler processes take different batches side by
# side (each call records the process it ran in); fewer when lowered.
sql("ALTER SYSTEM SET eventbus.handler_batch = 5");
sql("SELECT pg_reload_conf()");
sql(q{
CREATE TABLE app.ran (pid int, n int);
GRANT INSERT ON app.ran TO app_owner;
CREATE FUNCTION app.slow(e eventbus.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.05);
    INSERT INTO app.ran VALUES (pg_backend_pid(), (e.payload->>'n')::int);
END $$;
ALTER FUNCTION app.slow(eventbus.event) OWNER TO app_owner;
SELECT eventbus.subscribe('par', array['par.#'], handler => 'app.slow(eventbus.event)', concurrency => 3);
});
my $par_procs = "(SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventbus handler for par')";
wait_for("SELECT $par_procs = 3", 'three handler processes run for concurrency 3');
sql("SELECT eventbus.publish('par.x', jsonb_build_object('n', g)) FROM generate_series(1, 60) g");
wait_for("SELECT count(*) = 60 FROM app.ran", 'all 60 events handled');
is(sql("SELECT count(*) FROM (SELECT n FROM app.ran GROUP BY n HAVING count(*) > 1) q"), '0',
	'each event once');
is(sql("SELECT count(DISTINCT pid) FROM app.ran"), '3', 'by the three processes, side by side');
sql("SELECT eventbus.alter_subscription('par', concurrency => 1)");
wait_for("SELECT $par_procs = 1", 'concurrency lowered to 1: two processes stop');
sql("SELECT eventbus.unsubscribe('par')");
wait_for("SELECT $par_procs = 0", 'unsubscribed: no process is left');
sql("ALTER SYSTEM RESET eventbus.handler_batch");
sql("SELECT pg_reload_conf()");

$node->stop;
done_testing();

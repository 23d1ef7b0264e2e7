# Context propagation in handler processes: an event a handler publishes
# while it handles event E carries, without the handler doing anything,
# causation_id = E's id, correlation_id = E's correlation_id (or E's id),
# and a traceparent with E's trace id and a new span id (docs/cloudevents.md).
# Across two hops the correlation id stays the first event's. Headers the
# handler sets itself win.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('context');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
max_worker_processes = 20
));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION eventbus;
CREATE ROLE app_owner;
GRANT EXECUTE ON FUNCTION eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval) TO app_owner;
CREATE SCHEMA app AUTHORIZATION app_owner;
SET ROLE app_owner;
-- hop.1 -> hop.2 -> end.3; own.1 -> end.own with a correlation_id of its own.
CREATE FUNCTION app.on_event(e eventbus.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.topic = 'hop.1' THEN
        PERFORM eventbus.publish('hop.2', '{}');
    ELSIF e.topic = 'hop.2' THEN
        PERFORM eventbus.publish('end.3', '{}');
    ELSIF e.topic = 'own.1' THEN
        PERFORM eventbus.publish('end.own', '{}', headers => '{"correlation_id": "mine"}');
    END IF;
END $$;
RESET ROLE;
SELECT eventbus.subscribe('ctx', array['hop.#', 'own.#'], handler => 'app.on_event(eventbus.event)');
});

my $tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
my $e1 = sql("SELECT eventbus.publish('hop.1', '{}', headers => '{\"traceparent\": \"$tp\"}')");
my $o1 = sql("SELECT eventbus.publish('own.1', '{}', headers => '{\"correlation_id\": \"theirs\"}')");

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM eventbus.events WHERE topic IN ('end.3', 'end.own')"),
	'the handler published both chains');

my $e2 = sql("SELECT id FROM eventbus.events WHERE topic = 'hop.2'");
is(sql("SELECT headers->>'causation_id' FROM eventbus.events WHERE topic = 'hop.2'"), $e1,
	'first hop: causation_id is the handled event');
is(sql("SELECT headers->>'correlation_id' FROM eventbus.events WHERE topic = 'hop.2'"), $e1,
	'first hop: correlation_id is the handled event id when it has none');
like(sql("SELECT headers->>'traceparent' FROM eventbus.events WHERE topic = 'hop.2'"),
	qr/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/,
	'first hop: traceparent keeps the trace id and flags');
isnt(sql("SELECT headers->>'traceparent' FROM eventbus.events WHERE topic = 'hop.2'"), $tp,
	'first hop: with a new span id');
is(sql("SELECT headers->>'causation_id' FROM eventbus.events WHERE topic = 'end.3'"), $e2,
	'second hop: causation_id is the event of the first hop');
is(sql("SELECT headers->>'correlation_id' FROM eventbus.events WHERE topic = 'end.3'"), $e1,
	'second hop: correlation_id is still the first event');
like(sql("SELECT headers->>'traceparent' FROM eventbus.events WHERE topic = 'end.3'"),
	qr/^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/,
	'second hop: the same trace');
is(sql("SELECT headers->>'correlation_id' || ' ' || (headers->>'causation_id') FROM eventbus.events WHERE topic = 'end.own'"),
	"mine $o1", 'the handler\'s own correlation_id wins, causation_id is still added');
is(sql("SELECT headers ? 'traceparent' FROM eventbus.events WHERE topic = 'end.own'"), 'f',
	'no traceparent when the handled event has none');
# A publish of the process outside any handler call has no context.
is(sql("SELECT count(*) FROM eventbus.events WHERE topic IN ('hop.1', 'own.1') AND headers ? 'causation_id'"), '0',
	'the handled events themselves carry no causation_id');

$node->stop;
done_testing();

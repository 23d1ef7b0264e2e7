-- Relays: create_relay, alter_relay, drop_relay, the eventbus_kafka wrapper
-- and its checks (docs/relay.md). Sending to Kafka is tested in
-- test/t/022_relay_kafka.pl against a mock cluster.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- The wrapper checks options against librdkafka.
CREATE SERVER r_kafka FOREIGN DATA WRAPPER eventbus_kafka
    OPTIONS ("bootstrap.servers" '127.0.0.1:1', "linger.ms" '5', "compression.type" 'lz4');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_kafka OPTIONS ("no.such.property" 'x');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_kafka OPTIONS ("linger.ms" 'soon');
-- A secret is refused in a server (its options are readable by all) ...
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_kafka OPTIONS ("sasl.password" 'hunter2');
-- ... and taken in a user mapping; an error never shows a value.
CREATE USER MAPPING FOR CURRENT_USER SERVER r_kafka
    OPTIONS ("sasl.username" 'relay', "sasl.password" 'hunter2');
ALTER USER MAPPING FOR CURRENT_USER SERVER r_kafka OPTIONS (ADD "security.protocol" 'hunter2');
ALTER SERVER r_kafka OPTIONS (ADD "acks" '1');
ALTER SERVER r_kafka OPTIONS (ADD "enable.idempotence" 'false');
CREATE FOREIGN DATA WRAPPER r_other;
CREATE SERVER r_other_srv FOREIGN DATA WRAPPER r_other;

-- create_relay checks its sink, server, topic and options.
SELECT eventbus.create_relay('r1', array['orders.#'], sink => 'rabbitmq', server => 'r_kafka');
SELECT eventbus.create_relay('r1', array['orders.#']);
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_none');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_other_srv');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', topic => 'orders/all');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', topic => 'x.{33}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', topic => '{topics}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', topic => '..');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', topic => '');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '[]');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"bootstrap.servers": "evil:9092"}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"sasl.password": "x"}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"linger.ms": {"a": 1}}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"source": ""}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"transactional.id": "t"}');
-- What librdkafka would refuse only in the relay process, with idempotence.
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"max.in.flight": 6}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"retries": 0}');
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"delivery.report.only.error": true}');
-- A short value that is no secret is not starred out of librdkafka's message.
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka', options => '{"compression.type": "zz"}');
SELECT eventbus.create_relay('r1', array['bad..pattern'], server => 'r_kafka');
SELECT count(*) AS relays_after_errors FROM eventbus.subscription WHERE sink IS NOT NULL;

-- A valid relay: a subscription with a sink.
SELECT eventbus.create_relay('r1', array['orders.#', 'refunds.*'], server => 'r_kafka',
                             topic => 'shop.{1}', options => '{"linger.ms": 2, "source": "/shop"}',
                             max_attempts => 3);
SELECT name, sink, server, topic, options, patterns, paused, state IN ('stopped', 'starting', 'running') AS state_ok
  FROM eventbus.relays;
SELECT name, max_attempts, ordered, handler FROM eventbus.subscriptions WHERE name = 'r1';
SELECT eventbus.create_relay('r1', array['orders.#'], server => 'r_kafka');

-- Only its relay process consumes it.
SELECT * FROM eventbus.poll('r1');
SELECT eventbus.ack('r1', array[1::bigint]);
-- It has no handler.
CREATE FUNCTION r_handler(e eventbus.event) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT eventbus.alter_subscription('r1', handler => 'r_handler(eventbus.event)');

-- alter_relay changes where its events go; NULL keeps.
SELECT eventbus.alter_relay('r1', topic => '{topic}');
SELECT eventbus.alter_relay('r1', options => '{"compression.type": "zstd"}');
SELECT topic, options FROM eventbus.relays WHERE name = 'r1';
SELECT eventbus.alter_relay('r1', server => 'r_other_srv');
SELECT eventbus.alter_relay('r1', topic => 'a b');
SELECT topic, server FROM eventbus.relays WHERE name = 'r1';
-- The relay commands are for relays only.
SELECT eventbus.subscribe('r_plain', array['orders.#']);
SELECT eventbus.alter_relay('r_plain', topic => 'x');
SELECT eventbus.drop_relay('r_plain');
SELECT eventbus.alter_relay('r_none', topic => 'x');
SELECT eventbus.drop_relay('r_none');

-- Pausing and resuming work as for any subscription.
SELECT eventbus.pause('r1');
SELECT state FROM eventbus.relays WHERE name = 'r1';
SELECT eventbus.resume('r1');

-- nack(dead => true): a dead letter at once, whatever the attempts left.
SELECT eventbus.publish('orders.eu.created', '{"n": 1}') AS e1 \gset
SELECT count(*) FROM eventbus.poll('r_plain', 10);
SELECT eventbus.nack('r_plain', :e1, 'refused for good', dead => true);
SELECT event_id = :e1 AS same, attempts, last_error, reason FROM eventbus.dead_letters WHERE subscription = 'r_plain';

-- HTTP relays: the eventbus_http wrapper checks its options.
CREATE SERVER r_hooks FOREIGN DATA WRAPPER eventbus_http
    OPTIONS (url 'http://127.0.0.1:1/hooks', timeout_ms '2000', "header.X-Team" 'billing');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_http OPTIONS (url 'ftp://x');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_http OPTIONS (timeout_ms '0');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_http OPTIONS (mode 'soap');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_http OPTIONS ("header.Bad Name" 'x');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_http OPTIONS (secret 'whsec_c2VjcmV0');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_http OPTIONS ("header.Authorization" 'Bearer hunter2');
CREATE SERVER r_bad FOREIGN DATA WRAPPER eventbus_http OPTIONS (colour 'blue');
CREATE USER MAPPING FOR CURRENT_USER SERVER r_hooks OPTIONS (secret 'hunter2');
CREATE USER MAPPING FOR CURRENT_USER SERVER r_hooks
    OPTIONS (secret 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', "header.Authorization" 'Bearer t');
SELECT eventbus.create_relay('r_http', array['orders.#'], sink => 'http', server => 'r_kafka');
SELECT eventbus.create_relay('r_http', array['orders.#'], sink => 'kafka', server => 'r_hooks');
SELECT eventbus.create_relay('r_http', array['orders.#'], sink => 'http', server => 'r_hooks', topic => '/a b');
SELECT eventbus.create_relay('r_http', array['orders.#'], sink => 'http', server => 'r_hooks', topic => '/{0}');
SELECT eventbus.create_relay('r_http', array['orders.#'], sink => 'http', server => 'r_hooks', options => '{"url": "http://evil"}');
SELECT eventbus.create_relay('r_http', array['orders.#'], sink => 'http', server => 'r_hooks', options => '{"mode": "batch", "batch_size": 5000}');
SELECT eventbus.create_relay('r_http', array['orders.#'], sink => 'http', server => 'r_hooks');
SELECT eventbus.create_relay('r_http2', array['orders.#'], sink => 'http', server => 'r_hooks',
                             topic => '/{1}/{topic}', options => '{"mode": "structured", "concurrency": 2}');
SELECT name, sink, server, topic, options FROM eventbus.relays WHERE sink = 'http' ORDER BY name;
SELECT eventbus.drop_relay('r_http');
SELECT eventbus.drop_relay('r_http2');
DROP USER MAPPING FOR CURRENT_USER SERVER r_hooks;
DROP SERVER r_hooks;

SELECT eventbus.drop_relay('r1');
SELECT count(*) FROM eventbus.relays;
SELECT eventbus.unsubscribe('r_plain');
DROP FUNCTION r_handler(eventbus.event);
DROP SERVER r_other_srv;
DROP FOREIGN DATA WRAPPER r_other;
DROP USER MAPPING FOR CURRENT_USER SERVER r_kafka;
DROP SERVER r_kafka;

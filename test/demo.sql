-- eventbus demo: what make demo runs. Every statement is echoed.

-- 1. Publish inside your own transaction: the event exists if and only if
--    the transaction commits. publish returns the event id.
BEGIN;
SELECT eventbus.publish('orders.eu.created', '{"order_id": 42, "amount": 99.5}',
                        key => 'order-42');
COMMIT;

-- 2. A rolled-back publish leaves nothing behind.
BEGIN;
SELECT eventbus.publish('orders.eu.cancelled', '{"order_id": 43}');
ROLLBACK;

-- 3. Many events in one call; headers carry e.g. a W3C traceparent.
SELECT * FROM eventbus.publish_batch(
    array['orders.us.created', 'refunds.eu.issued'],
    array['{"order_id": 44}', '{"refund_id": 7}']::jsonb[],
    headers => array['{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}']::jsonb[]);

-- 4. What is in the log: three events; order 43 was rolled back.
SELECT id, topic, key, payload, headers FROM eventbus.events ORDER BY id;

-- 5. Wildcards: "*" is exactly one word, "#" is zero or more words.
SELECT topic,
       eventbus.topic_matches(topic, 'orders.*.created') AS "orders.*.created",
       eventbus.topic_matches(topic, 'orders.#')         AS "orders.#",
       eventbus.topic_matches(topic, '#.issued')         AS "#.issued"
  FROM (SELECT DISTINCT topic FROM eventbus.events) t ORDER BY topic;

-- 6. Consume: a new subscription receives the events committed after it was created.
SELECT eventbus.subscribe('billing', array['orders.*.created']);
SELECT eventbus.publish('orders.eu.created', '{"order_id": 45}');
SELECT eventbus.publish('refunds.eu.issued', '{"refund_id": 8}');   -- not for billing
SELECT event_id, topic, payload, attempt FROM eventbus.poll('billing', 10);
SELECT eventbus.ack('billing', array(SELECT id FROM eventbus.events WHERE payload->>'order_id' = '45'));
SELECT name, patterns, channel, leased, waiting, dead FROM eventbus.subscriptions;

-- 7. LISTEN: the background worker notifies each subscription at most once per
--    tick, and not again until it is polled; publishers never call NOTIFY.
--    A consumer LISTENs, polls once for what came before, then waits. psql
--    shows the notification after the next statement.
LISTEN eventbus_billing;
SELECT count(*) FROM eventbus.poll('billing', 10);   -- nothing new yet
SELECT eventbus.publish('orders.eu.created', '{"order_id": 46}');
SELECT pg_sleep(0.5);
SELECT event_id, payload FROM eventbus.poll('billing', 10);
SELECT eventbus.ack('billing', array(SELECT id FROM eventbus.events WHERE payload->>'order_id' = '46'));
UNLISTEN *;

-- 8. A handler subscription: the worker calls a function per event and acks
--    it in the same transaction; an error becomes a retry, then a dead letter.
CREATE TABLE demo_invoices (order_id bigint, handled_at timestamptz DEFAULT now());
CREATE FUNCTION demo_on_order(e eventbus.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO demo_invoices (order_id) VALUES ((e.payload->>'order_id')::bigint) $$;
SELECT eventbus.subscribe('invoicing', array['orders.*.created'],
                          handler => 'demo_on_order(eventbus.event)');
SELECT eventbus.publish('orders.us.created', '{"order_id": 47}');
-- (a handler process starts for the new subscription: wait up to 10 s for it)
DO $$ BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN EXISTS (SELECT FROM demo_invoices);
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT order_id FROM demo_invoices;

-- 9. Invalid topics are refused with SQLSTATE 22023, a detail and a hint.
\set ON_ERROR_STOP 0
SELECT eventbus.publish('orders..created', '{}');
\set ON_ERROR_STOP 1

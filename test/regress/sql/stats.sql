-- Statistics: exact counts, counted at commit, reset, Prometheus text.
-- The test cluster preloads eventbus, so the counters exist.
SET client_min_messages = warning;
SELECT eventbus.reset_stats();

-- The issue's exact-count case: publish 100, poll 70, ack 60, nack 10 with
-- max_attempts 1.
SELECT eventbus.subscribe('st_orders', ARRAY['st.orders.#'], max_attempts => 1);
SELECT count(eventbus.publish('st.orders.eu.created', jsonb_build_object('n', g)))
  FROM generate_series(1, 100) g;
CREATE TEMP TABLE got AS SELECT event_id FROM eventbus.poll('st_orders', 70);
SELECT eventbus.ack('st_orders', (SELECT array_agg(event_id) FROM
    (SELECT event_id FROM got ORDER BY event_id LIMIT 60) q));
SELECT count(*) FILTER (WHERE r = 'dead') AS dead
  FROM (SELECT eventbus.nack('st_orders', event_id, 'boom') AS r
          FROM (SELECT event_id FROM got ORDER BY event_id OFFSET 60) q) q;
SELECT subscription, routed, delivered, acked, nacked, retried, dead, expired, redriven,
       discarded, backlog, in_flight, dead_letters, last_poll_at IS NOT NULL AS polled,
       stats_reset IS NOT NULL AS has_reset
  FROM eventbus.subscription_stats WHERE subscription = 'st_orders';
SELECT topic, published, bytes, last_published_at IS NOT NULL AS has_last
  FROM eventbus.topic_stats WHERE topic LIKE 'st.%';
SELECT subscription, kind, count, p99_seconds IS NOT NULL AS has_p99
  FROM eventbus.latency_stats WHERE subscription = 'st_orders' ORDER BY kind;

-- Rolled back: a publish, an ack, a poll; a savepoint rolled back inside a
-- committed transaction; a committed subtransaction counts.
BEGIN;
SELECT eventbus.publish('st.orders.eu.created', '{}') > 0 AS published;
ROLLBACK;
BEGIN;
SELECT count(*) FROM eventbus.poll('st_orders', 5);
ROLLBACK;
BEGIN;
SELECT eventbus.publish('st.orders.eu.created', '{"in": "top"}') > 0 AS published;
SAVEPOINT a;
SELECT eventbus.publish('st.orders.eu.created', '{"in": "rolled back"}') > 0 AS published;
SAVEPOINT b;
SELECT eventbus.publish('st.orders.eu.created', '{"in": "nested"}') > 0 AS published;
ROLLBACK TO SAVEPOINT a;
SAVEPOINT c;
SELECT eventbus.publish('st.orders.eu.created', '{"in": "kept"}') > 0 AS published;
RELEASE SAVEPOINT c;
-- Not counted before commit.
SELECT published FROM eventbus.topic_stats WHERE topic = 'st.orders.eu.created';
COMMIT;
SELECT published FROM eventbus.topic_stats WHERE topic = 'st.orders.eu.created';
SELECT routed, delivered, backlog FROM eventbus.subscription_stats WHERE subscription = 'st_orders';

-- Redrive, retries, purge.
SELECT eventbus.redrive('st_orders', (SELECT array_agg(event_id) FROM
    (SELECT event_id FROM eventbus.dead_letters WHERE subscription = 'st_orders'
      ORDER BY event_id LIMIT 4) q));
SELECT count(*) FROM eventbus.poll('st_orders', 4);
SELECT eventbus.purge_dead_letters('st_orders');
SELECT delivered, retried, redriven, discarded, dead_letters, in_flight
  FROM eventbus.subscription_stats WHERE subscription = 'st_orders';

-- Expired events (ttl) count as routed and expired.
SELECT eventbus.subscribe('st_ttl', ARRAY['st.ttl']);
SELECT eventbus.publish('st.ttl', '{}', ttl => interval '1 millisecond') > 0 AS published;
SELECT pg_sleep(0.01);
SELECT routed, backlog FROM eventbus.subscription_stats WHERE subscription = 'st_ttl';
SELECT count(*) FROM eventbus.poll('st_ttl', 10);
SELECT routed, delivered, expired, backlog FROM eventbus.subscription_stats WHERE subscription = 'st_ttl';

-- A filter: only matching events are routed.
SELECT eventbus.subscribe('st_big', ARRAY['st.filtered'], filter => '$.n > 5');
SELECT count(eventbus.publish('st.filtered', jsonb_build_object('n', g))) FROM generate_series(1, 10) g;
SELECT routed, backlog FROM eventbus.subscription_stats WHERE subscription = 'st_big';
SELECT count(*) FROM eventbus.poll('st_big', 3);
SELECT routed, delivered, backlog, in_flight FROM eventbus.subscription_stats WHERE subscription = 'st_big';

-- Schema dead letters count as routed and dead.
SELECT eventbus.register_schema('st.strict', '{"type": "object", "required": ["id"]}', on_invalid => 'dead_letter');
SELECT eventbus.subscribe('st_strict', ARRAY['st.strict']);
SELECT eventbus.publish('st.strict', '{}') > 0 AS published;
SELECT routed, dead, backlog, dead_letters FROM eventbus.subscription_stats WHERE subscription = 'st_strict';
SELECT eventbus.drop_schema('st.strict');

-- Every routed event is in exactly one place.
SELECT subscription, routed = acked + dead - redriven + expired + backlog + in_flight AS balanced,
       dead_letters = dead - redriven - discarded AS dead_balanced
  FROM eventbus.subscription_stats WHERE subscription LIKE 'st\_%' ORDER BY subscription;

-- Unsubscribe forgets the counts; a new subscription starts from zero.
SELECT eventbus.unsubscribe('st_strict');
SELECT count(*) FROM eventbus._stats_subscriptions() st
  WHERE NOT EXISTS (SELECT 1 FROM eventbus.subscription s WHERE s.id = st.sub_id);

-- Reset: counters go to zero, what is pending stays.
SELECT eventbus.reset_stats();
SELECT subscription, routed, delivered, acked, dead, backlog, dead_letters, last_poll_at
  FROM eventbus.subscription_stats WHERE subscription LIKE 'st\_%' ORDER BY subscription;
SELECT topic, published, bytes, last_published_at FROM eventbus.topic_stats WHERE topic LIKE 'st.%' ORDER BY topic;
SELECT count(*) FROM eventbus.latency_stats;

-- Lag and age: the oldest pending event is behind the newest.
SELECT eventbus.subscribe('st_lag', ARRAY['st.lag']);
BEGIN;
SELECT eventbus.publish('st.lag', '{}') > 0 AS published;
COMMIT;
SELECT pg_sleep(0.05);
SELECT eventbus.publish('st.lag', '{}') > 0 AS published;
SELECT backlog, lag >= interval '40 ms' AS lags, oldest_pending_age >= interval '40 ms' AS aged
  FROM eventbus.subscription_stats WHERE subscription = 'st_lag';
SELECT count(*) FROM eventbus.poll('st_lag', 10);
SELECT backlog, in_flight, lag, oldest_pending_age
  FROM eventbus.subscription_stats WHERE subscription = 'st_lag';

-- Prometheus text: escaped labels, families, histograms.
-- Label values are escaped (database names may hold anything).
SELECT eventbus._prom_label(E'a"b\\c\nd') AS escaped;
SELECT eventbus._prom_number(x) FROM unnest(ARRAY[0.001, 60, 'Infinity', 1795604165.435252]::float8[]) x;
SELECT line FROM regexp_split_to_table(eventbus.prometheus(), E'\n') AS line
 WHERE line LIKE 'eventbus_subscription_backlog%st\_%';
SELECT count(*) > 0 AS has_help FROM regexp_split_to_table(eventbus.prometheus(), E'\n') AS line
 WHERE line = '# TYPE eventbus_delivery_latency_seconds histogram';
SELECT line FROM regexp_split_to_table(eventbus.prometheus(), E'\n') AS line
 WHERE line LIKE 'eventbus_delivery_latency_seconds_%{subscription="st_lag"%'
   AND (line LIKE '%+Inf%' OR line LIKE '%_count%');
SELECT line FROM regexp_split_to_table(eventbus.prometheus(), E'\n') AS line
 WHERE line LIKE 'eventbus_stats_enabled%';
-- Every sample line is "name{labels} number" or "name number".
SELECT line FROM regexp_split_to_table(eventbus.prometheus(), E'\n') AS line
 WHERE line <> '' AND line NOT LIKE '# %'
   AND line !~ '^[a-z_]+(\{.*\})? (-?[0-9.e+-]+|\+Inf|NaN)$';

-- Privileges: PUBLIC cannot reset or read; pg_monitor can read.
CREATE ROLE st_nobody;
CREATE ROLE st_monitor IN ROLE pg_monitor;
SET ROLE st_nobody;
SELECT eventbus.reset_stats();
SELECT count(*) FROM eventbus.subscription_stats;
SET ROLE st_monitor;
SELECT count(*) > 0 AS can_read FROM eventbus.subscription_stats;
SELECT count(*) > 0 AS can_read FROM eventbus.topic_stats;
SELECT length(eventbus.prometheus()) > 0 AS can_scrape;
SELECT eventbus.reset_stats();
RESET ROLE;
DROP ROLE st_nobody;
DROP ROLE st_monitor;

SELECT eventbus.unsubscribe(name) FROM eventbus.subscriptions WHERE name LIKE 'st\_%';

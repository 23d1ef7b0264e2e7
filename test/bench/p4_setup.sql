-- P4: a database with :SUBS subscriptions (psql variable SUBS). With one,
-- it is 'orders.#'; with more, wildcard patterns of four shapes that all
-- match some of publish1.sql's topics (orders.r1.created .. orders.r20.created).
-- Nobody polls them during the runs.
CREATE EXTENSION IF NOT EXISTS eventbus;
SELECT eventbus.subscribe('s_' || i,
         CASE WHEN :SUBS = 1 THEN array['orders.#']
              ELSE array[CASE i % 4 WHEN 0 THEN 'orders.#'
                                    WHEN 1 THEN 'orders.*.created'
                                    WHEN 2 THEN 'orders.r' || (i % 20 + 1) || '.*'
                                    ELSE '#.created' END] END)
  FROM generate_series(1, :SUBS) i;

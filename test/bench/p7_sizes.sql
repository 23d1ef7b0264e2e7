-- P7: bytes of eventbus's tables with their indexes and TOAST (the event
-- log chunks, eventbus.delivery, everything else in the schema), and the
-- current chunk. One line: log delivery other total current_chunk.
SELECT coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname ~ '^event_log_[0-9]+$'), 0) AS log,
       coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname = 'delivery'), 0) AS delivery,
       coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname !~ '^event_log_[0-9]+$' AND c.relname <> 'delivery'), 0) AS other,
       sum(pg_total_relation_size(c.oid)) AS total,
       (SELECT chunk_no FROM eventbus.chunk WHERE is_current) AS current_chunk
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'eventbus' AND c.relkind IN ('r', 'p');

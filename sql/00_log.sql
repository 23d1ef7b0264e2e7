-- eventbus install script, part 00: the event log.
--
-- Events live in a fixed ring of chunk tables (event_log_0 .. event_log_2)
-- that inherit from eventbus.event_log. publish() appends to the current
-- chunk only; storage is reclaimed by TRUNCATE of a whole chunk once nobody
-- needs it, never by DELETE. See docs/architecture.md.

\echo Use "CREATE EXTENSION eventbus" to load this file. \quit

COMMENT ON SCHEMA eventbus IS 'eventbus: the database as an event bus';

-- Event ids. Ids are unique but not commit-ordered: readers order by the
-- publishing transaction (txid), never by id alone.
CREATE SEQUENCE eventbus.event_id_seq AS bigint;
COMMENT ON SEQUENCE eventbus.event_id_seq IS 'eventbus: event ids';

-- Topic dictionary: each distinct topic is stored once, events carry its id,
-- so matching runs once per distinct topic. The topic column has no unique
-- index on purpose: a unique index would make two transactions that publish
-- the same brand-new topic wait for each other. A race can leave two ids for
-- one topic; readers map both to the same text.
-- Topics no stored event uses are dropped by maintenance in two steps:
-- retired (retired_gen set: publishers take a new id for the topic), then
-- deleted once every chunk that could hold an event with the old id was
-- truncated. used_gen (the newest chunk generation a publisher used the
-- topic in, folded in from topic_use) says which topics to retire.
-- src/topicdict.c explains why no event is left naming a dropped id.
CREATE SEQUENCE eventbus.topic_id_seq AS integer;
COMMENT ON SEQUENCE eventbus.topic_id_seq IS 'eventbus: topic dictionary ids';
CREATE TABLE eventbus.topic (
    id          integer PRIMARY KEY,
    topic       text COLLATE "C" NOT NULL,
    created_at  timestamptz NOT NULL,
    used_gen    bigint NOT NULL DEFAULT 0,
    retired_gen bigint
);
CREATE INDEX topic_topic_idx ON eventbus.topic (topic);
CREATE INDEX topic_used_gen_idx ON eventbus.topic (used_gen) WHERE retired_gen IS NULL;
CREATE INDEX topic_retired_gen_idx ON eventbus.topic (retired_gen) WHERE retired_gen IS NOT NULL;
COMMENT ON TABLE eventbus.topic IS 'eventbus: topic dictionary (id -> topic text)';
-- Uses of a topic in a chunk generation newer than its used_gen, recorded
-- by publishers (an insert: they never wait) and folded into used_gen by
-- maintenance.
CREATE TABLE eventbus.topic_use (
    topic_id   integer NOT NULL,
    generation bigint NOT NULL
);
COMMENT ON TABLE eventbus.topic_use IS 'eventbus: topic uses not yet folded into eventbus.topic.used_gen';

-- The parent of the chunks: reading it reads every chunk. It holds no rows.
CREATE TABLE eventbus.event_log (
    id           bigint NOT NULL,
    txid         xid8 NOT NULL,          -- top-level xid of the publishing transaction
    published_at timestamptz NOT NULL,   -- now() of the publishing transaction
    topic_id     integer NOT NULL,       -- eventbus.topic.id
    key          text,                   -- ordering key, optional
    payload      jsonb NOT NULL,
    headers      jsonb,                  -- JSON object of strings, optional
    deliver_at   timestamptz,            -- not handed out before this, optional
    expires_at   timestamptz,            -- not handed out after this, optional
    rejected_by  text                    -- a schema (pattern) the payload failed, with on_invalid
                                         -- 'dead_letter': only dead letters refer to it
);
COMMENT ON TABLE eventbus.event_log IS 'eventbus: the event log (parent of the chunk tables)';

CREATE TABLE eventbus.event_log_0 () INHERITS (eventbus.event_log);
CREATE TABLE eventbus.event_log_1 () INHERITS (eventbus.event_log);
CREATE TABLE eventbus.event_log_2 () INHERITS (eventbus.event_log);
-- One index per chunk: readers select by publishing transaction (the tick
-- formula of docs/architecture.md) and fetch single events by (txid, id).
CREATE INDEX event_log_0_txid_idx ON eventbus.event_log_0 (txid, id);
CREATE INDEX event_log_1_txid_idx ON eventbus.event_log_1 (txid, id);
CREATE INDEX event_log_2_txid_idx ON eventbus.event_log_2 (txid, id);
COMMENT ON TABLE eventbus.event_log_0 IS 'eventbus: event log chunk 0';
COMMENT ON TABLE eventbus.event_log_1 IS 'eventbus: event log chunk 1';
COMMENT ON TABLE eventbus.event_log_2 IS 'eventbus: event log chunk 2';

-- The ring of chunks and which one receives new events. Changed only by
-- eventbus's own C code, which invalidates every backend's cached copy.
CREATE TABLE eventbus.chunk (
    chunk_no     integer PRIMARY KEY CHECK (chunk_no BETWEEN 0 AND 2),
    relname      name NOT NULL UNIQUE,
    is_current   boolean NOT NULL DEFAULT false,
    opened_at    timestamptz,            -- when it last became current
    sealed_at    timestamptz,            -- when publishing last moved on from it
    reclaimed_at timestamptz,            -- when it was last truncated
    generation   bigint                  -- its turn as the current chunk (1, 2, ...); NULL
                                         -- when it holds no events (src/topicdict.c)
);
CREATE UNIQUE INDEX chunk_one_current ON eventbus.chunk (is_current) WHERE is_current;
INSERT INTO eventbus.chunk (chunk_no, relname, is_current, opened_at, generation) VALUES
    (0, 'event_log_0', true, now(), 1),
    (1, 'event_log_1', false, NULL, NULL),
    (2, 'event_log_2', false, NULL, NULL);
COMMENT ON TABLE eventbus.chunk IS 'eventbus: the ring of event log chunks';

-- pg_dump keeps the events, the topics they refer to and the id sequences.
-- The chunk ring itself is rebuilt by CREATE EXTENSION on restore.
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_log_0', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_log_1', '');
SELECT pg_catalog.pg_extension_config_dump('eventbus.event_log_2', '');

-- Whether current_user may read the events of a topic: when subscribing is
-- restricted by eventbus.topic_acl (sql/35_acl.sql), only those of topics
-- its subscribe patterns match (src/acl.c).
CREATE FUNCTION eventbus._may_read_topic(topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_may_read_topic'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus._may_read_topic(text) IS
    'eventbus (internal): whether current_user may read events of the topic (topic ACLs)';

-- A readable view of the log for operators (those granted SELECT on it),
-- showing the topics their subscribe ACL lets them read.
CREATE VIEW eventbus.events WITH (security_barrier) AS
SELECT e.id, t.topic, e.key, e.payload, e.headers, e.published_at,
       e.deliver_at, e.expires_at, e.txid,
       (SELECT c.chunk_no FROM eventbus.chunk c WHERE c.relname = p.relname) AS chunk
  FROM eventbus.event_log e
  JOIN pg_catalog.pg_class p ON p.oid = e.tableoid
  JOIN eventbus.topic t ON t.id = e.topic_id
 WHERE eventbus._may_read_topic(t.topic);
COMMENT ON VIEW eventbus.events IS 'eventbus: every stored event (of the topics the role may read), with its topic text and chunk';

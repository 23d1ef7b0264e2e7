-- CloudEvents interop (docs/cloudevents.md): to_cloudevent, publish_cloudevent,
-- instance_id, and context propagation with set_context. Values that change
-- from run to run (instance uuid, times, span ids) are compared, not shown.
\set VERBOSITY default
\set SHOW_CONTEXT never

-- The CloudEvents 1.0 JSON schema, copied unchanged from
-- ../shared/cloudevents/cloudevents.json (cloudevents/spec, commit c2845a4,
-- Apache License 2.0).
create temp table ce_schema (s jsonb);
insert into ce_schema values ($schema$
{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "description": "CloudEvents Specification JSON Schema",
  "type": "object",
  "properties": {
    "id": {
      "description": "Identifies the event.",
      "$ref": "#/definitions/iddef",
      "examples": [
        "A234-1234-1234"
      ]
    },
    "source": {
      "description": "Identifies the context in which an event happened.",
      "$ref": "#/definitions/sourcedef",
      "examples" : [
        "https://github.com/cloudevents",
        "mailto:cncf-wg-serverless@lists.cncf.io",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
        "cloudevents/spec/pull/123",
        "/sensors/tn-1234567/alerts",
        "1-555-123-4567"
      ]
    },
    "specversion": {
      "description": "The version of the CloudEvents specification which the event uses.",
      "$ref": "#/definitions/specversiondef",
      "examples": [
        "1.0"
      ]
    },
    "type": {
      "description": "Describes the type of event related to the originating occurrence.",
      "$ref": "#/definitions/typedef",
      "examples" : [
        "com.github.pull_request.opened",
        "com.example.object.deleted.v2"
      ]
    },
    "datacontenttype": {
      "description": "Content type of the data value. Must adhere to RFC 2046 format.",
      "$ref": "#/definitions/datacontenttypedef",
      "examples": [
        "text/xml",
        "application/json",
        "image/png",
        "multipart/form-data"
      ]
    },
    "dataschema": {
      "description": "Identifies the schema that data adheres to.",
      "$ref": "#/definitions/dataschemadef"
    },
    "subject": {
      "description": "Describes the subject of the event in the context of the event producer (identified by source).",
      "$ref": "#/definitions/subjectdef",
      "examples": [
        "mynewfile.jpg"
      ]
    },
    "time": {
      "description": "Timestamp of when the occurrence happened. Must adhere to RFC 3339.",
      "$ref": "#/definitions/timedef",
      "examples": [
        "2018-04-05T17:31:00Z"
      ]
    },
    "data": {
      "description": "The event payload.",
      "$ref": "#/definitions/datadef",
      "examples": [
        "<much wow=\"xml\"/>"
      ]
    },
    "data_base64": {
      "description": "Base64 encoded event payload. Must adhere to RFC4648.",
      "$ref": "#/definitions/data_base64def",
      "examples": [
        "Zm9vYg=="
      ]
    }
  },
  "required": ["id", "source", "specversion", "type"],
  "definitions": {
    "iddef": {
      "type": "string",
      "minLength": 1
    },
    "sourcedef": {
      "type": "string",
      "format": "uri-reference",
      "minLength": 1
    },
    "specversiondef": {
      "type": "string",
      "minLength": 1
    },
    "typedef": {
      "type": "string",
      "minLength": 1
    },
    "datacontenttypedef": {
      "type": ["string", "null"],
      "minLength": 1
    },
    "dataschemadef": {
      "type": ["string", "null"],
      "format": "uri",
      "minLength": 1
    },
    "subjectdef": {
      "type": ["string", "null"],
      "minLength": 1
    },
    "timedef": {
      "type": ["string", "null"],
      "format": "date-time",
      "minLength": 1
    },
    "datadef": {
      "type": ["object", "string", "number", "array", "boolean", "null"]
    },
    "data_base64def": {
      "type": ["string", "null"],
      "contentEncoding": "base64"
    }
  }
}
$schema$);

-- Event ids in messages do not depend on the tests run before.
select setval('eventbus.event_id_seq', 1000000) as event_ids_from;

-- instance_id: one uuid per install, the one eventbus.instance holds.
select eventbus.instance_id() = (select id from eventbus.instance) as same_instance,
       (select count(*) from eventbus.instance) as rows;

-- to_cloudevent: context attributes, data, extension attributes from headers.
select eventbus.publish('orders.eu.created', '{"n": 1}', 'order-1',
    '{"correlation_id": "c-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "Foo-Bar": "x", "ce_subject": "order 1", "ce_dataschema": "https://example.com/order.json",
      "x_y": "2", "xy": "3", "!!": "empty", "averyveryveryverylongname": "long",
      "Data": "data", "ID": "id", "partition_key": "pk"}') as e1 \gset
select jsonb_pretty(eventbus.to_cloudevent(:e1) - 'id' - 'time' - 'source') as ce;
select eventbus.to_cloudevent(:e1)->>'id' = eventbus.instance_id() || ':' || :e1 as id_is_instance_and_event_id,
       eventbus.to_cloudevent(:e1)->>'source' = '/eventbus/' || current_database() as default_source,
       eventbus.to_cloudevent(:e1)->>'time' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' as time_rfc3339_utc_micro,
       (eventbus.to_cloudevent(:e1)->>'time')::timestamptz = (select published_at from eventbus.events where id = :e1) as time_is_published_at;
select eventbus.to_cloudevent(:e1, 'urn:shop:orders')->>'source' as source_argument;
select eventbus.validate((select s from ce_schema), eventbus.to_cloudevent(:e1)) as valid;
-- No key, no headers, a scalar payload: no partitionkey, data as it is.
select eventbus.publish('a.b', '"hello"') as e2 \gset
select eventbus.to_cloudevent(:e2) - 'id' - 'time' - 'source' as ce;
select eventbus.validate((select s from ce_schema), eventbus.to_cloudevent(:e2)) as valid;
-- Header ce_source beats the default, the argument beats both.
select eventbus.publish('a.b', 'null', headers => '{"ce_source": "/from/header", "ce_id": "given-id", "ce_time": "2020-01-01T00:00:00Z"}') as e3 \gset
select eventbus.to_cloudevent(:e3) - 'type' - 'data' - 'specversion' - 'datacontenttype' as ce;
select eventbus.to_cloudevent(:e3, 'urn:arg')->>'source' as source;

-- publish_cloudevent, and the round trip.
select $$
{"specversion": "1.0", "id": "A234-1234-1234", "source": "/shop/orders", "type": "orders.eu.paid",
 "time": "2026-12-03T19:10:00.5+01:00", "subject": "order-42", "dataschema": "https://example.com/order.json",
 "datacontenttype": "application/json; charset=utf-8", "data": {"total": 12.5}, "partitionkey": "order-42",
 "correlationid": "corr-1", "causationid": "cause-1",
 "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
 "priority": 5, "urgent": true, "tags": ["a", "b"], "nothing": null}
$$ as x \gset
select eventbus.publish_cloudevent(:'x') as p1 \gset
select topic, key, payload, jsonb_pretty(headers) as headers from eventbus.events where id = :p1;
select jsonb_pretty(eventbus.to_cloudevent(:p1)) as ce;
select eventbus.to_cloudevent(:p1) =
       :'x'::jsonb - 'nothing' - 'datacontenttype' || '{"datacontenttype": "application/json", "priority": "5", "urgent": "true", "tags": "[\"a\", \"b\"]"}'
       as round_trip;
select eventbus.validate((select s from ce_schema), eventbus.to_cloudevent(:p1)) as valid;
-- The minimum: no data is a JSON null payload; a +json content type is JSON.
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.min"}') as p2 \gset
select payload, key, headers from eventbus.events where id = :p2;
select eventbus.to_cloudevent(:p2) - 'time' as ce;
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "2", "source": "s", "type": "a.min", "datacontenttype": "application/cloudevents+json", "data": [1]}') > 0 as plus_json;

-- publish_cloudevent refuses, with 22023 naming the attribute (22004 for NULL).
select eventbus.publish_cloudevent(null);
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('[1]');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"id": "1", "source": "s", "type": "a.b"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "0.3", "id": "1", "source": "s", "type": "a.b"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "", "source": "s", "type": "a.b"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": 7, "type": "a.b"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s"}');
\echo :LAST_ERROR_SQLSTATE
\set SHOW_CONTEXT errors
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "com.example..x"}');
\echo :LAST_ERROR_SQLSTATE
\set SHOW_CONTEXT never
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "data_base64": "Zm9vYg=="}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "datacontenttype": "text/xml", "data": "<a/>"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "time": "yesterday"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "subject": ""}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "partitionkey": 42}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "Trace-Id": "x"}');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "1", "source": "s", "type": "a.b", "averyveryveryverylongname": "x"}');
\echo :LAST_ERROR_SQLSTATE

-- to_cloudevent refuses: NULL, an unknown event, an expired one, a role
-- that may not read it (no SELECT on eventbus.events; a topic ACL).
select eventbus.to_cloudevent(null);
\echo :LAST_ERROR_SQLSTATE
select eventbus.to_cloudevent(-1);
\echo :LAST_ERROR_SQLSTATE
select eventbus.to_cloudevent(:e1, '');
\echo :LAST_ERROR_SQLSTATE
select eventbus.publish('a.short', '{}', ttl => '1 millisecond') as short \gset
select pg_sleep(0.01);
select eventbus.to_cloudevent(:short);
\echo :LAST_ERROR_SQLSTATE
create role eb_ce_reader;
create role eb_ce_nobody;
grant select on eventbus.events to eb_ce_reader;
set role eb_ce_nobody;
select eventbus.to_cloudevent(:e1);
\echo :LAST_ERROR_SQLSTATE
select eventbus.instance_id() is not null as anyone_may_ask;
reset role;
set role eb_ce_reader;
select eventbus.to_cloudevent(:e1)->>'type' as reader_sees;
reset role;
select eventbus.grant_subscribe('eb_ce_reader', 'invoices.#');
set role eb_ce_reader;
select eventbus.to_cloudevent(:e1);
\echo :LAST_ERROR_SQLSTATE
select count(*) as rows_in_view from eventbus.events where id = :e1;
reset role;
select eventbus.revoke_subscribe('eb_ce_reader', 'invoices.#');

-- set_context: events published in the transaction get the context's ids
-- and a child of its trace; the publisher's own headers win.
select eventbus.publish('orders.eu.created', '{}', headers =>
    '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "congo=t61rcWkgMzE"}') as root \gset
begin;
select eventbus.set_context(:root);
select eventbus.publish('orders.eu.paid', '{}') as c1 \gset
select eventbus.publish('orders.eu.paid', '{}', headers =>
    '{"correlation_id": "mine", "traceparent": "00-11111111111111111111111111111111-2222222222222222-00", "x": "y"}') as c2 \gset
select array_agg(id) as batch from eventbus.publish_batch(array['orders.eu.paid'], array['{}'::jsonb, '{}'::jsonb]) id \gset
select eventbus.publish_cloudevent('{"specversion": "1.0", "id": "9", "source": "s", "type": "orders.eu.shipped"}') as c3 \gset
commit;
select id = :c1 as c1, headers->>'causation_id' = :'root' as causation, headers->>'correlation_id' = :'root' as correlation,
       headers->>'traceparent' ~ '^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$' as same_trace,
       headers->>'traceparent' <> '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' as new_span,
       headers->>'tracestate' as tracestate
  from eventbus.events where id in (:c1, :c3) or id = any (:'batch'::bigint[]) order by id;
select count(distinct headers->>'traceparent') as distinct_span_ids
  from eventbus.events where id in (:root, :c1, :c3) or id = any (:'batch'::bigint[]);
select headers - 'causation_id' as publisher_wins, headers->>'causation_id' = :'root' as causation
  from eventbus.events where id = :c2;
select eventbus.to_cloudevent(:c3)->>'causationid' = :'root' as ce_causationid,
       eventbus.to_cloudevent(:c3)->>'correlationid' = :'root' as ce_correlationid;
-- The second hop: causation is the first hop, correlation still the root.
begin;
select eventbus.set_context(:c1);
select eventbus.publish('orders.eu.closed', '{}') as c4 \gset
commit;
select headers->>'causation_id' = :'c1' as causation_is_c1, headers->>'correlation_id' = :'root' as correlation_is_root,
       headers->>'traceparent' ~ '^00-4bf92f3577b34da6a3ce929d0e0e4736-' as same_trace
  from eventbus.events where id = :c4;
-- Cleared at commit, at rollback, and by set_context(NULL).
select eventbus.publish('orders.eu.after', '{}') as a1 \gset
begin;
select eventbus.set_context(:root);
rollback;
select eventbus.publish('orders.eu.after', '{}') as a2 \gset
begin;
select eventbus.set_context(:root);
select eventbus.set_context(null);
select eventbus.publish('orders.eu.after', '{}') as a3 \gset
commit;
select id in (:a1, :a2, :a3) as after, headers from eventbus.events where id in (:a1, :a2, :a3);
-- No traceparent from an event whose traceparent is not valid (all-zero
-- trace id, upper case, another version); the ids still propagate.
select eventbus.publish('a.bad', '{}', headers => '{"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "correlation_id": "k"}') as bad1 \gset
select eventbus.publish('a.bad', '{}', headers => '{"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}') as bad2 \gset
select eventbus.publish('a.bad', '{}', headers => '{"traceparent": "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}') as bad3 \gset
begin;
select eventbus.set_context(:bad1);
select eventbus.publish('a.child', '{}') as k1 \gset
select eventbus.set_context(:bad2);
select eventbus.publish('a.child', '{}') as k2 \gset
select eventbus.set_context(:bad3);
select eventbus.publish('a.child', '{}') as k3 \gset
commit;
select id - :k1 as n, headers ? 'traceparent' as has_traceparent, headers->>'causation_id' as causation_id,
       headers->>'correlation_id' as correlation_id
  from eventbus.events where id in (:k1, :k2, :k3) order by id;
-- Bad headers of the publisher are still refused with a context set.
begin;
select eventbus.set_context(:root);
select eventbus.publish('a.b', '{}', headers => '{"n": 1}');
\echo :LAST_ERROR_SQLSTATE
rollback;
-- set_context refuses an unknown event, and a role that may not read it.
select eventbus.set_context(-1);
\echo :LAST_ERROR_SQLSTATE
grant execute on function eventbus.set_context(bigint) to eb_ce_nobody;
set role eb_ce_nobody;
select eventbus.set_context(:root);
\echo :LAST_ERROR_SQLSTATE
reset role;
drop owned by eb_ce_reader, eb_ce_nobody;
drop role eb_ce_reader, eb_ce_nobody;

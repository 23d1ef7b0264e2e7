-- Per-topic rights (docs/security.md#per-topic-rights): who may publish to
-- which topics, and subscribe with which patterns.
\set VERBOSITY default

--
-- 1. Pattern covers pattern, against the matcher: for random pairs of
-- patterns over the words a, b, c, * and #, _pattern_covers(o, i) says
-- true exactly when no topic of 1 to 4 words over a, b, c and d matches i
-- and not o (d stands for every word neither pattern names).
--
select setseed(0.17);
create temp table words (w text);
insert into words values ('a'), ('b'), ('c'), ('*'), ('#');
create temp table pats as
select distinct string_agg(w, '.' order by k) as p
  from (select g, k, (select w from words order by random() + g * 0 + k * 0 limit 1) as w
          from generate_series(1, 400) g, generate_series(1, 3) k
         where k <= 1 + (g % 3)) x
 group by g;
create temp table topics as
with recursive t(topic, n) as (
    select w, 1 from (values ('a'), ('b'), ('c'), ('d')) v(w)
    union all
    select t.topic || '.' || v.w, n + 1 from t, (values ('a'), ('b'), ('c'), ('d')) v(w) where n < 4)
select topic from t;
select count(*) > 100 as enough_patterns, (select count(*) from topics) as topics from pats;
create temp table pairs as
select o.p as outer_p, i.p as inner_p
  from (select p, row_number() over (order by random()) r from pats) o
  join (select p, row_number() over (order by random()) r from pats) i on i.r % 120 = o.r % 120
 limit 600;
create temp table verdicts as
select outer_p, inner_p, eventbus._pattern_covers(outer_p, inner_p) as covers,
       not exists (select 1 from topics t
                    where eventbus.topic_matches(t.topic, inner_p)
                      and not eventbus.topic_matches(t.topic, outer_p)) as truth
  from pairs;
-- Mismatches: none.
select outer_p, inner_p, covers, truth from verdicts where covers <> truth;
-- Not vacuous: both answers occur, also for patterns that differ.
select count(*) filter (where covers) > 5 as some_covered,
       count(*) filter (where not covers) > 20 as some_not,
       count(*) filter (where covers and outer_p <> inner_p) > 5 as covered_by_another
  from verdicts;
-- Cases worth naming.
select o, i, eventbus._pattern_covers(o, i)
  from (values ('orders.#', 'orders.*.created'), ('orders.*.created', 'orders.#'),
               ('#', 'a.b.c'), ('a.#', '#'), ('*.#', '#'), ('#.b', 'a.#.b'),
               ('a.*', 'a.#'), ('a.#', 'a.*'), ('#.#', '#'), ('a.b', 'a.b')) v(o, i);

--
-- 2. Publishing. No publish row at all: anyone with EXECUTE publishes
-- anywhere; with rows, a role publishes only where its patterns (or its
-- roles') match; superusers everywhere.
--
create role eb_pub;
create role eb_pub_group;
create role eb_other;
grant execute on function eventbus.publish(text, jsonb, text, jsonb, timestamptz, interval),
                          eventbus.publish_batch(text[], jsonb[], text[], jsonb[], timestamptz, interval)
   to eb_pub, eb_other;
set role eb_pub;
select eventbus.publish('anything.goes', '{}') > 0 as published;
reset role;
select eventbus.grant_publish('eb_pub', 'orders.#');
select eventbus.grant_publish('eb_pub', 'orders.#');        -- twice: once
select eventbus.grant_publish('eb_pub_group', 'audit.*');
select role, action, pattern from eventbus.topic_acls order by 1, 3;
set role eb_pub;
select eventbus.publish('orders.eu.created', '{}') > 0 as published;
select eventbus.publish('refunds.eu.issued', '{}');
select count(*) from eventbus.publish_batch(array['orders.a', 'audit.x'], array['{}', '{}']::jsonb[]);
reset role;
grant eb_pub_group to eb_pub;          -- membership changes are seen at once
set role eb_pub;
select count(*) from eventbus.publish_batch(array['orders.a', 'audit.x'], array['{}', '{}']::jsonb[]);
reset role;
revoke eb_pub_group from eb_pub;
set role eb_pub;
select eventbus.publish('audit.x', '{}');
reset role;
set role eb_other;                     -- no row: publishing is restricted, so nothing
select eventbus.publish('orders.eu.created', '{}');
reset role;
select eventbus.publish('refunds.eu.issued', '{}') > 0 as superuser_published;
-- Many patterns for one role: all of them count (and the words of each).
select count(*) from (select eventbus.grant_publish('eb_pub', 'many.p' || g || '.*')
                        from generate_series(1, 12) g) x;
set role eb_pub;
select eventbus.publish('many.p12.x', '{}') > 0 as published;
select eventbus.publish('many.p1.x', '{}') > 0 as published;
select eventbus.publish('many.p13.x', '{}');
reset role;
select count(*) from (select eventbus.revoke_publish('eb_pub', 'many.p' || g || '.*')
                        from generate_series(1, 12) g) x;
-- Errors: an invalid pattern, NULL, PUBLIC.
select eventbus.grant_publish('eb_pub', 'orders..x');
select eventbus.grant_publish(NULL, 'orders.#');
select eventbus.grant_publish('-', 'orders.#');
-- Revoking every row lifts the restriction.
select eventbus.revoke_publish('eb_pub', 'orders.#');
select eventbus.revoke_publish('eb_pub_group', 'audit.*');
set role eb_other;
select eventbus.publish('orders.eu.created', '{}') > 0 as published;
reset role;

--
-- 3. Subscribing: patterns covered by the role's subscribe patterns;
-- eventbus.events shows the role only the topics those match.
--
grant execute on function
    eventbus.subscribe(text, text[], integer, interval, interval, interval, boolean, text, jsonpath, bigint, text, regprocedure, integer),
    eventbus.alter_subscription(text, text[], integer, interval, interval, interval, boolean, jsonpath, bigint, text, text[], regprocedure, integer),
    eventbus.unsubscribe(text),
    eventbus.grant_subscription(text, regrole, text)
  to eb_other;
grant select on eventbus.events to eb_other;
select eventbus.publish('aclsub.a', '{}') > 0 as published, eventbus.publish('aclother.b', '{}') > 0 as published;
select eventbus.grant_subscribe('eb_other', 'aclsub.#');
set role eb_other;
select eventbus.subscribe('acl_ok', array['aclsub.*.created', 'aclsub.#']);
select eventbus.subscribe('acl_wide', array['aclsub.*.created', '#']);
select eventbus.alter_subscription('acl_ok', patterns => array['refunds.#']);
select eventbus.alter_subscription('acl_ok', max_attempts => 3);    -- patterns unchanged: allowed
-- Granting consume shares the events: the grantee's subscribe rights must cover them.
select eventbus.grant_subscription('acl_ok', 'eb_pub');
reset role;
select eventbus.grant_subscribe('eb_pub', 'aclsub.*.created');
set role eb_other;
select eventbus.grant_subscription('acl_ok', 'eb_pub');             -- aclsub.# is not covered
reset role;
select eventbus.grant_subscribe('eb_pub', 'aclsub.#');
set role eb_other;
select eventbus.grant_subscription('acl_ok', 'eb_pub');
select eventbus.grant_subscription('acl_ok', 'eb_pub', 'manage');   -- manage takes no subscribe right
reset role;
select eventbus.revoke_subscribe('eb_pub', 'aclsub.*.created');
select eventbus.revoke_subscribe('eb_pub', 'aclsub.#');
set role eb_other;
select distinct topic from eventbus.events where topic like 'acl%' order by 1;
reset role;
select distinct topic from eventbus.events where topic like 'acl%' order by 1;
set role eb_other;
select eventbus.unsubscribe('acl_ok');
reset role;
select eventbus.revoke_subscribe('eb_other', 'aclsub.#');

drop owned by eb_pub, eb_pub_group, eb_other;
drop role eb_pub, eb_pub_group, eb_other;

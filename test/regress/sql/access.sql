-- Who may do what with a subscription (docs/security.md): its owner, the
-- roles granted consume or manage, superusers; everyone else gets 42501
-- naming the subscription, the role and the right.
\set VERBOSITY default
CREATE ROLE eb_alice;
CREATE ROLE eb_bob;
CREATE ROLE eb_carol;
CREATE ROLE eb_team;
GRANT eb_team TO eb_carol;
-- Every role below has EXECUTE on every public function (the documented
-- grants of publishers, consumers and operators at once): what stops them
-- is the right on the subscription.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'eventbus'::regnamespace AND p.proname !~ '^_' LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO eb_alice, eb_bob, eb_carol', f);
    END LOOP;
END
$$;
GRANT SELECT ON eventbus.subscriptions, eventbus.dead_letters, eventbus.deliveries
   TO eb_alice, eb_bob, eb_carol;
GRANT CREATE ON SCHEMA public TO eb_alice;

SET ROLE eb_alice;
SELECT eventbus.subscribe('alice_sub', array['acc.#'], max_attempts => 1);
SELECT name, owner, consumers, managers FROM eventbus.subscriptions;
SELECT eventbus.publish('acc.one', '{"n": 1}') AS e1 \gset
SELECT eventbus.publish('acc.two', '{"n": 2}') AS e2 \gset
RESET ROLE;

-- Another role with every EXECUTE but no right: nothing.
SET ROLE eb_bob;
SELECT name FROM eventbus.subscriptions;
SELECT event_id FROM eventbus.poll('alice_sub', 10);
SELECT eventbus.ack('alice_sub', array[:e1]::bigint[]);
SELECT eventbus.nack('alice_sub', :e1);
SELECT eventbus.extend_lease('alice_sub', array[:e1]::bigint[], '1 hour');
SELECT eventbus.pause('alice_sub');
SELECT eventbus.resume('alice_sub');
SELECT eventbus.seek('alice_sub', 1::bigint);
SELECT eventbus.seek('alice_sub', now());
SELECT eventbus.alter_subscription('alice_sub', max_attempts => 9);
SELECT eventbus.redrive('alice_sub');
SELECT eventbus.purge_dead_letters('alice_sub');
SELECT eventbus.unsubscribe('alice_sub');
SELECT eventbus.grant_subscription('alice_sub', 'eb_bob');
SELECT eventbus.revoke_subscription('alice_sub', 'eb_bob');
SELECT eventbus.alter_subscription_owner('alice_sub', 'eb_bob');
-- The internal functions behind the gates are not callable, with any caller.
SELECT eventbus._pause('eb_alice', 'alice_sub');
SELECT eventbus._subscription('alice_sub', 'eb_alice', 'consume');
-- An unknown subscription is still 42704.
SELECT event_id FROM eventbus.poll('nobody_sub', 10);
SELECT eventbus.pause('nobody_sub');
RESET ROLE;

-- The owner grants consume to bob and manage to a group carol is in.
SET ROLE eb_alice;
SELECT eventbus.grant_subscription('alice_sub', 'eb_bob');
SELECT eventbus.grant_subscription('alice_sub', 'eb_bob', 'consume');   -- twice: once
SELECT eventbus.grant_subscription('alice_sub', 'eb_team', 'manage');
SELECT name, owner, consumers, managers FROM eventbus.subscriptions;
SELECT eventbus.grant_subscription('alice_sub', 'eb_bob', 'write');
SELECT eventbus.grant_subscription('alice_sub', NULL);
SELECT eventbus.grant_subscription('alice_sub', '-');
RESET ROLE;

SET ROLE eb_bob;
SELECT name FROM eventbus.subscriptions;
SELECT event_id = :e1 AS first FROM eventbus.poll('alice_sub', 1);
SELECT eventbus.nack('alice_sub', :e1, 'boom');     -- max_attempts 1: dead
SELECT subscription, event_id = :e1 AS first, last_error FROM eventbus.dead_letters;
SELECT eventbus.pause('alice_sub');                 -- consume is not manage
SELECT eventbus.redrive('alice_sub');
RESET ROLE;

SET ROLE eb_carol;                                  -- manage, through eb_team
SELECT name FROM eventbus.subscriptions;
SELECT eventbus.pause('alice_sub');
SELECT eventbus.resume('alice_sub');
SELECT eventbus.redrive('alice_sub');
SELECT eventbus.alter_subscription('alice_sub', max_attempts => 3);
SELECT event_id FROM eventbus.poll('alice_sub', 10); -- manage is not consume
SELECT eventbus.grant_subscription('alice_sub', 'eb_carol');   -- only the owner grants
RESET ROLE;

-- Revoking: one right, or both.
SET ROLE eb_alice;
SELECT eventbus.revoke_subscription('alice_sub', 'eb_team', 'consume');   -- not held: nothing
SELECT eventbus.revoke_subscription('alice_sub', 'eb_bob');
SELECT name, consumers, managers FROM eventbus.subscriptions;
-- Giving it away needs membership in the new owner.
SELECT eventbus.alter_subscription_owner('alice_sub', 'eb_bob');
RESET ROLE;
SET ROLE eb_bob;
SELECT event_id FROM eventbus.poll('alice_sub', 10);
RESET ROLE;

-- A superuser may do everything, and give it away.
SELECT eventbus.alter_subscription_owner('alice_sub', 'eb_bob');
SELECT name, owner FROM eventbus.subscriptions WHERE name = 'alice_sub';
SET ROLE eb_alice;
SELECT name FROM eventbus.subscriptions;
SELECT eventbus.pause('alice_sub');
RESET ROLE;
SET ROLE eb_bob;
SELECT count(*) FROM eventbus.poll('alice_sub', 10);
SELECT eventbus.ack('alice_sub', NULL, NULL);
RESET ROLE;

-- Rights follow current_user, not the session: alice's SECURITY DEFINER
-- function called by a superuser acts as alice. It cannot poll bob's
-- subscription, nor make a superuser's function a handler.
CREATE FUNCTION public.su_handler(e eventbus.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SET ROLE eb_alice;
CREATE FUNCTION public.alice_poll() RETURNS bigint LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT count(*) FROM eventbus.poll('alice_sub', 10) $$;
CREATE FUNCTION public.alice_trap() RETURNS void LANGUAGE sql SECURITY DEFINER
    AS $$ SELECT eventbus.subscribe('trap_sub', array['trap.#'], handler => 'public.su_handler(eventbus.event)') $$;
RESET ROLE;
SELECT public.alice_poll();
SELECT public.alice_trap();
SELECT count(*) FROM eventbus.subscriptions WHERE name = 'trap_sub';

-- Schemas: only the role that registered one (or a superuser) replaces or drops it.
SET ROLE eb_alice;
SELECT eventbus.register_schema('acc.#', '{"type": "object"}');
RESET ROLE;
SET ROLE eb_bob;
SELECT eventbus.register_schema('acc.#', '{"type": "array"}');
SELECT eventbus.drop_schema('acc.#');
SELECT eventbus.register_schema('bob.#', '{"type": "object"}');
RESET ROLE;
SELECT pattern, owner FROM eventbus.schemas ORDER BY pattern;
SET ROLE eb_alice;
SELECT eventbus.register_schema('acc.#', '{"type": "object", "required": ["n"]}');
SELECT eventbus.drop_schema('acc.#');
RESET ROLE;
SELECT eventbus.drop_schema('bob.#');

-- The views are security barriers: a cheap function of a role without a
-- right sees none of the rows filtered out (no NOTICE below).
SET ROLE eb_alice;
SELECT eventbus.subscribe('leak_sub', array['leak.#'], max_attempts => 1);
SELECT eventbus.publish('leak.x', '{"secret": 1}') > 0 AS published;
SELECT eventbus.nack('leak_sub', event_id) FROM eventbus.poll('leak_sub', 1);
SELECT eventbus.grant_subscription('leak_sub', 'eb_carol', 'manage');
CREATE FUNCTION public.leak(p anyelement) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
    AS $$ BEGIN RAISE NOTICE 'saw %', p; RETURN true; END $$;
RESET ROLE;
SET ROLE eb_bob;
SELECT count(*) FROM eventbus.dead_letters WHERE public.leak(payload);
SELECT count(*) FROM eventbus.deliveries WHERE public.leak(subscription);
SELECT count(*) FROM eventbus.subscriptions WHERE public.leak(name) AND name = 'leak_sub';
RESET ROLE;
-- A manager manages, but choosing the handler (which sees every payload)
-- is the owner's.
SET ROLE eb_carol;
SELECT eventbus.pause('leak_sub');
SELECT eventbus.alter_subscription('leak_sub', handler => 'public.su_handler(eventbus.event)');
RESET ROLE;
SELECT eventbus.unsubscribe('leak_sub');
-- _chunk_pins reads only chunks of the log.
SELECT eventbus._chunk_pins('pg_class'::regclass);

-- Clean up.
SELECT eventbus.unsubscribe('alice_sub');
DROP FUNCTION public.su_handler(eventbus.event), public.alice_poll(), public.alice_trap(), public.leak(anyelement);
DROP OWNED BY eb_alice, eb_bob, eb_carol;
DROP ROLE eb_alice, eb_bob, eb_carol, eb_team;

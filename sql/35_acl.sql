-- eventbus install script, part 35: per-topic rights (src/acl.c,
-- docs/security.md#per-topic-rights).
--
-- A row lets a role (and the roles with its privileges) publish to the
-- topics a pattern matches, or subscribe with patterns it covers. With no
-- row of an action at all, that action is not restricted. Superusers are
-- never restricted. Managed by the extension's owner (or whom it grants
-- these functions).

CREATE TABLE eventbus.topic_acl (
    role    regrole NOT NULL,
    action  text NOT NULL CHECK (action IN ('publish', 'subscribe')),
    pattern text NOT NULL,
    PRIMARY KEY (role, action, pattern)
);
COMMENT ON TABLE eventbus.topic_acl IS 'eventbus: which topics a role may publish to, which patterns it may subscribe with';
SELECT pg_catalog.pg_extension_config_dump('eventbus.topic_acl', '');

-- Tells every backend to reload its topic ACL.
CREATE FUNCTION eventbus._acl_changed()
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_acl_changed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION eventbus._acl_changed() IS
    'eventbus (internal): every backend reloads its topic ACL';

-- Whether every topic the inner pattern matches, the outer one matches.
CREATE FUNCTION eventbus._pattern_covers(outer_pattern text, inner_pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_pattern_covers'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus._pattern_covers(text, text) IS
    'eventbus (internal): whether the outer pattern matches every topic the inner one matches';

-- Raises 42501 unless each pattern is covered by one of the caller's
-- subscribe patterns (when subscribing is restricted).
CREATE FUNCTION eventbus._check_subscribe_acl(caller regrole, patterns text[])
RETURNS void
AS 'MODULE_PATHNAME', 'eventbus_check_subscribe_acl'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus._check_subscribe_acl(regrole, text[]) IS
    'eventbus (internal): raise 42501 unless the role may subscribe with each pattern';

-- Adds or removes a row; a grant of an existing row or a revoke of a
-- missing one changes nothing.
CREATE FUNCTION eventbus._set_acl(role regrole, action text, pattern text, present boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF role IS NULL OR role = 0 THEN
        RAISE EXCEPTION 'a topic right is granted to a role, not to %', CASE WHEN role IS NULL THEN 'NULL' ELSE 'PUBLIC' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name a role, e.g. ''orders_app''; with no row of an action, everyone may do it.';
    END IF;
    IF pattern IS NULL OR NOT eventbus.is_valid_pattern(pattern) THEN
        PERFORM eventbus.topic_matches('x', pattern);   -- raises 22023 with the reason
        RAISE EXCEPTION 'pattern must not be NULL'
            USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass e.g. ''orders.#''.';
    END IF;
    IF present THEN
        INSERT INTO eventbus.topic_acl AS a (role, action, pattern)
        VALUES (_set_acl.role, _set_acl.action, _set_acl.pattern)
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM eventbus.topic_acl a
         WHERE a.role = _set_acl.role AND a.action = _set_acl.action AND a.pattern = _set_acl.pattern;
    END IF;
    PERFORM eventbus._acl_changed();
END
$$;
COMMENT ON FUNCTION eventbus._set_acl(regrole, text, text, boolean) IS
    'eventbus (internal): add or remove a row of eventbus.topic_acl';

CREATE FUNCTION eventbus.grant_publish(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'publish', pattern, true) $$;
COMMENT ON FUNCTION eventbus.grant_publish(regrole, text) IS
    'eventbus: let a role publish to the topics a pattern matches (once any role has a publish pattern, publishing is restricted to them)';

CREATE FUNCTION eventbus.revoke_publish(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'publish', pattern, false) $$;
COMMENT ON FUNCTION eventbus.revoke_publish(regrole, text) IS
    'eventbus: take a publish pattern back from a role';

CREATE FUNCTION eventbus.grant_subscribe(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'subscribe', pattern, true) $$;
COMMENT ON FUNCTION eventbus.grant_subscribe(regrole, text) IS
    'eventbus: let a role subscribe with patterns the pattern covers, and read those topics in eventbus.events';

CREATE FUNCTION eventbus.revoke_subscribe(role regrole, pattern text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT eventbus._set_acl(role, 'subscribe', pattern, false) $$;
COMMENT ON FUNCTION eventbus.revoke_subscribe(regrole, text) IS
    'eventbus: take a subscribe pattern back from a role';

CREATE VIEW eventbus.topic_acls AS
SELECT a.role, a.action, a.pattern FROM eventbus.topic_acl a;
COMMENT ON VIEW eventbus.topic_acls IS
    'eventbus: the per-topic rights: who may publish to, and subscribe to, which patterns';

REVOKE EXECUTE ON FUNCTION
    eventbus._acl_changed(),
    eventbus._set_acl(regrole, text, text, boolean),
    eventbus.grant_publish(regrole, text),
    eventbus.revoke_publish(regrole, text),
    eventbus.grant_subscribe(regrole, text),
    eventbus.revoke_subscribe(regrole, text)
FROM PUBLIC;

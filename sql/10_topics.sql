-- eventbus install script, part 10: topic and pattern grammar.

CREATE FUNCTION eventbus.topic_matches(topic text, pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_topic_matches'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.topic_matches(text, text) IS
    'eventbus: does the topic match the pattern ("*" one word, "#" zero or more words)';

CREATE FUNCTION eventbus.is_valid_topic(topic text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_is_valid_topic'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.is_valid_topic(text) IS
    'eventbus: is the text a valid topic (for CHECK constraints)';

CREATE FUNCTION eventbus.is_valid_pattern(pattern text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'eventbus_is_valid_pattern'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION eventbus.is_valid_pattern(text) IS
    'eventbus: is the text a valid subscription pattern (for CHECK constraints)';

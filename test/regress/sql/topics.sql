--
-- topics: the topic and pattern grammar (design section 2).
--
-- Expected values below are written from the spec, not from the
-- implementation.  The extension is loaded by pg_regress.
--
\set VERBOSITY default

-- Long strings used by several blocks, built once into psql variables.
--   a32    32 words "a"                      (63 bytes)
--   a31b   31 words "a" then "b"
--   w32    w1.w2. ... .w32                   (32 distinct words)
--   h16    16 words "#"
--   ha16   "#.a" sixteen times                (32 words, 16 of them "#")
--   ha15hb "#.a" fifteen times, then "#.b"   (32 words, 16 of them "#")
--   hx16   "#.x" sixteen times                (32 words, 16 of them "#")
--   h16b   16 words "#" then "b"             (17 words)
--   s32    32 words "*";  s31  31 words "*"
SELECT rtrim(repeat('a.', 32), '.')                  AS a32,
       repeat('a.', 31) || 'b'                       AS a31b,
       (SELECT string_agg('w' || i, '.' ORDER BY i)
          FROM generate_series(1, 32) AS i)          AS w32,
       rtrim(repeat('#.', 16), '.')                  AS h16,
       rtrim(repeat('#.a.', 16), '.')                AS ha16,
       repeat('#.a.', 15) || '#.b'                   AS ha15hb,
       rtrim(repeat('#.x.', 16), '.')                AS hx16,
       repeat('#.', 16) || 'b'                       AS h16b,
       rtrim(repeat('*.', 32), '.')                  AS s32,
       rtrim(repeat('*.', 31), '.')                  AS s31
\gset

-- The match table: (topic, pattern, expected).
CREATE TEMP TABLE match_cases (
    id       serial PRIMARY KEY,
    topic    text NOT NULL,
    pattern  text NOT NULL,
    expected boolean NOT NULL
);
INSERT INTO match_cases (topic, pattern, expected) VALUES
    -- exact literals
    ('orders',                 'orders',                 true),
    ('orders.eu.created',      'orders.eu.created',      true),
    ('orders.eu.created',      'orders.eu.deleted',      false),
    ('orders.eu.created',      'orders.us.created',      false),
    -- case sensitivity
    ('Orders',                 'orders',                 false),
    ('orders.EU',              'orders.eu',              false),
    ('orders.eu',              'ORDERS.#',               false),
    ('ORDERS.eu',              'ORDERS.*',               true),
    -- "*" alone: exactly one word
    ('orders',                 '*',                      true),
    ('orders.eu',              '*',                      false),
    ('a.b.c',                  '*',                      false),
    -- "#" alone: every topic
    ('orders',                 '#',                      true),
    ('orders.eu.created',      '#',                      true),
    (:'a32',                   '#',                      true),
    -- "#" at the end, including zero words
    ('orders',                 'orders.#',               true),
    ('orders.eu',              'orders.#',               true),
    ('orders.eu.created',      'orders.#',               true),
    ('order',                  'orders.#',               false),
    ('ordersx.eu',             'orders.#',               false),
    ('payments.eu',            'orders.#',               false),
    -- "#" at the start
    ('created',                '#.created',              true),
    ('orders.created',         '#.created',              true),
    ('orders.eu.created',      '#.created',              true),
    ('orders.eu.created.x',    '#.created',              false),
    ('orders.eu.createdx',     '#.created',              false),
    -- "#" in the middle: the a.#.b family
    ('a.b',                    'a.#.b',                  true),
    ('a.x.b',                  'a.#.b',                  true),
    ('a.x.y.b',                'a.#.b',                  true),
    ('a.b.b',                  'a.#.b',                  true),
    ('a',                      'a.#.b',                  false),
    ('b',                      'a.#.b',                  false),
    ('a.b.c',                  'a.#.b',                  false),
    ('x.a.b',                  'a.#.b',                  false),
    ('a.b.x',                  'a.#.b',                  false),
    -- "#.#", "#.*", "*.#"
    ('a',                      '#.#',                    true),
    ('a.b.c',                  '#.#',                    true),
    ('a',                      '#.*',                    true),
    ('a.b.c',                  '#.*',                    true),
    ('a',                      '*.#',                    true),
    ('a.b',                    '*.#',                    true),
    -- "*.*" against one, two and three words
    ('a',                      '*.*',                    false),
    ('a.b',                    '*.*',                    true),
    ('a.b.c',                  '*.*',                    false),
    -- "*" with literals
    ('orders.created',         '*.created',              true),
    ('created',                '*.created',              false),
    ('a.b.created',            '*.created',              false),
    ('orders.create',          '*.created',              false),
    ('orders',                 'orders.*',               false),
    ('orders.eu',              'orders.*',               true),
    ('orders.eu.created',      'orders.*',               false),
    ('orders.eu.created',      'orders.*.created',       true),
    ('orders.created',         'orders.*.created',       false),
    ('orders.eu.fr.created',   'orders.*.created',       false),
    -- "*" and "#" mixed
    ('a.b.c.d',                '*.#.d',                  true),
    ('a.d',                    '*.#.d',                  true),
    ('d',                      '*.#.d',                  false),
    ('a.b.c',                  '#.b.#',                  true),
    ('b',                      '#.b.#',                  true),
    ('a.c',                    '#.b.#',                  false),
    ('a.b',                    '#.*.*',                  true),
    ('a',                      '#.*.*',                  false),
    ('a.b.c',                  'a.*.#.c',                true),
    ('a.c',                    'a.*.#.c',                false),
    -- prefix / suffix near-misses
    ('orders',                 'order',                  false),
    ('order',                  'orders',                 false),
    ('xorders',                'orders',                 false),
    ('orders.eu',              'orders.e',               false),
    ('orders.eu',              'orders.eu.created',      false),
    ('orders.eu.created',      'orders.eu',              false),
    ('orders.eu',              'orders',                 false),
    ('orders',                 'orders.eu',              false),
    -- unicode words (case-sensitive too)
    ('commandes.été.créée',    'commandes.été.créée',    true),
    ('commandes.été.créée',    'commandes.*.créée',      true),
    ('commandes.été.créée',    'commandes.#',            true),
    ('commandes.été.créée',    'commandes.ete.créée',    false),
    ('commandes.Été',          'commandes.été',          false),
    ('заказы.создан',          '*.создан',               true),
    ('注文.作成',              '注文.*',                 true),
    -- digits, dashes, underscores, colons and other plain characters
    ('orders-v2.eu_west-1.created', 'orders-v2.*.created', true),
    ('urn:orders.42',          'urn:orders.42',          true),
    ('urn:orders.42',          'urn:orders.4',           false),
    ('tenant_7.order-123.v1:created', '#.v1:created',    true),
    ('1.2.3',                  '1.*.3',                  true),
    ('a-b.c',                  'a.#',                    false),
    ('a_b',                    'a.b',                    false),
    -- characters special elsewhere (LIKE, regex, MQTT, NATS) are literals
    ('a_c',                    'abc',                    false),
    ('abc',                    'a_c',                    false),
    ('abc',                    'a%',                     false),
    ('a%',                     'a%',                     true),
    ('aab',                    'a+b',                    false),
    ('a+b',                    'a+b',                    true),
    ('a.b',                    'a.+',                    false),
    ('a.+',                    'a.+',                    true),
    ('a.b',                    'a.>',                    false),
    ('a\b',                    'a\b',                    true),
    -- long topics (32 words); patterns with 16 "#" words
    (:'a32',                   :'a32',                   true),
    (:'a31b',                  :'a32',                   false),
    (:'a32',                   :'h16',                   true),
    (:'a32',                   :'h16b',                  false),
    (:'a31b',                  :'h16b',                  true),
    (:'a32',                   :'ha16',                  true),
    (:'a31b',                  :'ha16',                  false),
    (:'a32',                   :'ha15hb',                false),
    (:'a31b',                  :'ha15hb',                true),
    (:'a32',                   :'hx16',                  false),
    (:'a32',                   :'s32',                   true),
    (:'a32',                   :'s31',                   false),
    (:'w32',                   'w1.#.w32',               true),
    (:'w32',                   '#.w16.#',                true),
    (:'w32',                   '#.w33',                  false),
    (:'w32',                   'w1.*.w32',               false);

-- Mismatches between topic_matches and the expected value: must be no rows.
SELECT id, topic, pattern, expected,
       eventbus.topic_matches(topic, pattern) AS actual
  FROM match_cases
 WHERE eventbus.topic_matches(topic, pattern) IS DISTINCT FROM expected
 ORDER BY id;

-- How many cases, how many expected to match, how many do match.
SELECT count(*) AS cases,
       count(*) FILTER (WHERE expected) AS expected_matches,
       count(*) FILTER (WHERE eventbus.topic_matches(topic, pattern)) AS matches
  FROM match_cases;

-- Linear time: 32-word topic against patterns of 16 "#" words interleaved
-- with literals where a backtracking matcher would explode.  Not timed; the
-- statement_timeout only turns a hang into a failure.
SET statement_timeout = '10s';
SELECT eventbus.topic_matches(:'a32', :'ha15hb') AS ha15hb,
       eventbus.topic_matches(:'a31b', :'ha16') AS ha16,
       eventbus.topic_matches(:'a31b', :'h16' || '.a') AS h16a,
       eventbus.topic_matches(:'a32', :'hx16') AS hx16;
RESET statement_timeout;

-- STRICT: NULL in, NULL out, without validating the other argument.
SELECT eventbus.topic_matches(NULL, '#') IS NULL AS null_topic,
       eventbus.topic_matches('a', NULL) IS NULL AS null_pattern,
       eventbus.topic_matches(NULL, 'ord*') IS NULL AS null_topic_bad_pattern;

--
-- Invalid topics: each raises 22023 with its own message.
--
-- empty
SELECT eventbus.topic_matches('', '#');
\echo :LAST_ERROR_SQLSTATE
-- leading dot
SELECT eventbus.topic_matches('.orders', '#');
-- trailing dot
SELECT eventbus.topic_matches('orders.', '#');
-- double dot (empty word)
SELECT eventbus.topic_matches('orders..eu', '#');
\echo :LAST_ERROR_SQLSTATE
-- "*" and "#" are not allowed in a topic
SELECT eventbus.topic_matches('orders.*', '#');
\echo :LAST_ERROR_SQLSTATE
SELECT eventbus.topic_matches('orders.#', '#');
-- whitespace: space, tab, newline, U+00A0
SELECT eventbus.topic_matches('orders eu', '#');
\echo :LAST_ERROR_SQLSTATE
SELECT eventbus.topic_matches(E'orders\teu', '#');
SELECT eventbus.topic_matches(E'orders\neu', '#');
SELECT eventbus.topic_matches('orders' || chr(160) || 'eu', '#');
\echo :LAST_ERROR_SQLSTATE
-- control characters: U+0001, U+007F
SELECT eventbus.topic_matches('orders' || chr(1) || 'eu', '#');
\echo :LAST_ERROR_SQLSTATE
SELECT eventbus.topic_matches('orders' || chr(127) || 'eu', '#');
-- invisible format characters: a right-to-left override, a zero-width space
SELECT eventbus.topic_matches('orders.e' || chr(8238) || 'u', '#');
SELECT eventbus.topic_matches('orders', 'ord' || chr(8203) || 'ers');
-- 256 bytes (one word)
SELECT eventbus.topic_matches(repeat('a', 256), '#');
\echo :LAST_ERROR_SQLSTATE
-- 256 bytes but only 128 characters: the limit is in bytes
SELECT eventbus.topic_matches(repeat('é', 128), '#');
-- 33 words
SELECT eventbus.topic_matches(rtrim(repeat('a.', 33), '.'), '#');
\echo :LAST_ERROR_SQLSTATE

-- At the limits: 255 bytes (ASCII and multibyte) and 32 words are accepted.
SELECT eventbus.topic_matches(repeat('a', 255), '#') AS bytes_255,
       eventbus.topic_matches(repeat('é', 127) || 'a', '#') AS bytes_255_mb,
       eventbus.topic_matches(rtrim(repeat('a.', 32), '.'), '#') AS words_32,
       eventbus.topic_matches(rtrim(repeat('abcdefg.', 32), '.'), '#') AS words_32_bytes_255;

--
-- Invalid patterns: each raises 22023.
--
-- "*" or "#" inside a word
SELECT eventbus.topic_matches('orders', 'ord*');
\echo :LAST_ERROR_SQLSTATE
SELECT eventbus.topic_matches('orders', '*ord');
SELECT eventbus.topic_matches('orders', '#x');
SELECT eventbus.topic_matches('a.b', 'a.**');
SELECT eventbus.topic_matches('a.b', 'a.##.b');
-- empty, empty words
SELECT eventbus.topic_matches('a', '');
\echo :LAST_ERROR_SQLSTATE
SELECT eventbus.topic_matches('a', '..');
-- too long: 256 bytes, 33 words
SELECT eventbus.topic_matches('a', repeat('a', 256));
\echo :LAST_ERROR_SQLSTATE
SELECT eventbus.topic_matches('a', rtrim(repeat('*.', 33), '.'));

--
-- is_valid_topic / is_valid_pattern never raise; NULL gives NULL.
--
CREATE TEMP TABLE validity_cases (
    id            serial PRIMARY KEY,
    label         text NOT NULL,
    val           text,
    topic_ok      boolean,
    pattern_ok    boolean
);
INSERT INTO validity_cases (label, val, topic_ok, pattern_ok) VALUES
    ('plain',            'orders.eu.created',             true,  true),
    ('one word',         'orders',                        true,  true),
    ('one char',         'a',                             true,  true),
    ('unicode',          'commandes.été.créée',           true,  true),
    ('digits etc.',      'urn:v1.eu_west-1.42',           true,  true),
    ('backslash',        'a\b',                           true,  true),
    ('star word',        'orders.*',                      false, true),
    ('hash word',        'orders.#',                      false, true),
    ('star alone',       '*',                             false, true),
    ('hash alone',       '#',                             false, true),
    ('hash hash',        '#.#',                           false, true),
    ('a.#.b',            'a.#.b',                         false, true),
    ('ord*',             'ord*',                          false, false),
    ('*ord',             '*ord',                          false, false),
    ('#x',               '#x',                            false, false),
    ('a.**',             'a.**',                          false, false),
    ('a.##.b',           'a.##.b',                        false, false),
    ('escaped star',     'a\*',                           false, false),
    ('empty',            '',                              false, false),
    ('dot',              '.',                             false, false),
    ('dot dot',          '..',                            false, false),
    ('leading dot',      '.a',                            false, false),
    ('trailing dot',     'a.',                            false, false),
    ('double dot',       'a..b',                          false, false),
    ('space',            'a b',                           false, false),
    ('space only',       ' ',                             false, false),
    ('tab',              E'a\tb',                         false, false),
    ('newline',          E'a\nb',                         false, false),
    ('CR',               E'a\rb',                         false, false),
    ('U+00A0',           'a' || chr(160) || 'b',          false, false),
    ('U+2000',           'a' || chr(8192) || 'b',         false, false),
    ('U+200A',           'a' || chr(8202) || 'b',         false, false),
    ('U+3000',           'a' || chr(12288) || 'b',        false, false),
    ('VT',               'a' || chr(11) || 'b',           false, false),
    ('FF',               'a' || chr(12) || 'b',           false, false),
    ('U+1680',           'a' || chr(5760) || 'b',         false, false),
    ('U+2028',           'a' || chr(8232) || 'b',         false, false),
    ('U+2029',           'a' || chr(8233) || 'b',         false, false),
    ('U+202F',           'a' || chr(8239) || 'b',         false, false),
    ('U+205F',           'a' || chr(8287) || 'b',         false, false),
    ('U+0001',           'a' || chr(1) || 'b',            false, false),
    ('U+001F',           'a' || chr(31) || 'b',           false, false),
    ('U+007F',           'a' || chr(127) || 'b',          false, false),
    ('U+0080',           'a' || chr(128) || 'b',          false, false),
    ('U+0085',           'a' || chr(133) || 'b',          false, false),
    ('U+009F',           'a' || chr(159) || 'b',          false, false),
    ('U+00AD soft hyphen', 'a' || chr(173) || 'b',        false, false),
    ('U+200B zero width', 'a' || chr(8203) || 'b',         false, false),
    ('U+200D joiner',    'a' || chr(8205) || 'b',         false, false),
    ('U+200F RLM',       'a' || chr(8207) || 'b',         false, false),
    ('U+202E RLO',       'a' || chr(8238) || 'b',         false, false),
    ('U+2066 LRI',       'a' || chr(8294) || 'b',         false, false),
    ('U+2069 PDI',       'a' || chr(8297) || 'b',         false, false),
    ('U+2060 WJ',        'a' || chr(8288) || 'b',         false, false),
    ('U+E0041 tag',      'a' || chr(917569) || 'b',       false, false),
    ('U+200C alone',     chr(8204),                       false, false),
    ('U+2070 sup zero',  'a' || chr(8304) || 'b',         true,  true),
    ('255 bytes',        repeat('a', 255),                true,  true),
    ('256 bytes',        repeat('a', 256),                false, false),
    ('255 bytes mb',     repeat('é', 127) || 'a',         true,  true),
    ('256 bytes mb',     repeat('é', 128),                false, false),
    ('32 words',         :'a32',                          true,  true),
    ('33 words',         rtrim(repeat('a.', 33), '.'),    false, false),
    ('32 stars',         :'s32',                          false, true),
    ('33 stars',         rtrim(repeat('*.', 33), '.'),    false, false),
    ('NULL',             NULL,                            NULL,  NULL);

-- Mismatches: must be no rows.
SELECT id, label, eventbus.is_valid_topic(val) AS is_valid_topic, topic_ok,
       eventbus.is_valid_pattern(val) AS is_valid_pattern, pattern_ok
  FROM validity_cases
 WHERE eventbus.is_valid_topic(val) IS DISTINCT FROM topic_ok
    OR eventbus.is_valid_pattern(val) IS DISTINCT FROM pattern_ok
 ORDER BY id;

SELECT count(*) AS cases,
       count(*) FILTER (WHERE eventbus.is_valid_topic(val)) AS valid_topics,
       count(*) FILTER (WHERE eventbus.is_valid_pattern(val)) AS valid_patterns
  FROM validity_cases;

--
-- is_valid_topic in a CHECK constraint.
--
CREATE TEMP TABLE t (topic text CHECK (eventbus.is_valid_topic(topic)));
INSERT INTO t VALUES ('orders.eu.created');
INSERT INTO t VALUES ('orders..created');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO t VALUES ('orders.*');
SELECT topic FROM t ORDER BY topic;

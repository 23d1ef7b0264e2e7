# Publish survives a crash: every committed publish is there after an
# immediate shutdown (no checkpoint, WAL replay), no publish of a transaction
# that was still open at the crash is, and publishing goes on afterwards.
# A second node checks that publish works without shared_preload_libraries.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'eventbus'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION eventbus');

# 200 committed transactions, one event each, on 4 topics.
my $script = join("\n",
	map { "SELECT eventbus.publish('crash.t" . ($_ % 4) . "', '{\"n\": $_}');" } 1 .. 200);
$node->safe_psql('postgres', $script);

# One committed batch of 100 events.
$node->safe_psql('postgres',
	"SELECT count(*) FROM eventbus.publish_batch(array['crash.batch'],
	   (SELECT array_agg(jsonb_build_object('n', g)) FROM generate_series(1, 100) g))");

# A transaction still open at the crash, with a brand-new topic.
my $open = $node->background_psql('postgres');
$open->query_safe('BEGIN');
$open->query_safe("SELECT eventbus.publish('crash.uncommitted', '{\"n\": 0}')");

$node->stop('immediate');
$open->quit;
$node->start;

is($node->safe_psql('postgres', 'SELECT count(*) FROM eventbus.events'),
	'300', 'every committed event survives an immediate shutdown');
is( $node->safe_psql(
		'postgres',
		"SELECT count(DISTINCT payload->>'n') FROM eventbus.events WHERE topic LIKE 'crash.t_'"),
	'200',
	'each committed single publish is there exactly once');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM eventbus.events WHERE topic = 'crash.uncommitted'"),
	'0',
	'the event of the transaction open at the crash is gone');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM eventbus.topic WHERE topic = 'crash.uncommitted'"),
	'0',
	'so is the topic that transaction introduced');

# Publishing goes on, ids stay unique, the new topic can be introduced again.
$node->safe_psql('postgres',
	"SELECT eventbus.publish('crash.uncommitted', '{\"n\": 1}');
	 SELECT eventbus.publish('crash.t0', '{\"n\": 201}');");
is( $node->safe_psql(
		'postgres', 'SELECT count(*) = count(DISTINCT id) FROM eventbus.event_log'),
	't',
	'event ids are unique across the crash');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM eventbus.events WHERE topic = 'crash.uncommitted'"),
	'1',
	'publishing works after restart');
$node->stop;

# Without shared_preload_libraries every function still works (design 4.11).
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION eventbus');
is( $plain->safe_psql(
		'postgres',
		"SELECT eventbus.publish('plain.topic', '{}') > 0,
		        eventbus.topic_matches('plain.topic', 'plain.#')"),
	't|t',
	'publish and topic_matches work without preloading the library');
$plain->stop;

done_testing();

# ALTER EXTENSION eventbus UPDATE from 0.1.0: the result is exactly a fresh
# install of the new version (test/upgrade/catalog.sql), grants on the
# functions that changed carry over, and subscriptions with leased,
# waiting and dead deliveries and unread events lose nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
my $old = $node->config_data('--sharedir') . '/extension/eventbus--0.1.0.sql';
plan skip_all => "no $old (the test command installs test/upgrade/eventbus--0.1.0.sql)"
  unless -f $old;

$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'eventbus'");
$node->start;

sub sql { return $node->safe_psql('app', $_[0]); }

$node->safe_psql('postgres', "CREATE DATABASE app; CREATE DATABASE fresh;");
sql(q{
CREATE EXTENSION eventbus VERSION '0.1.0';
CREATE ROLE consumer LOGIN;
GRANT EXECUTE ON FUNCTION eventbus.poll(text, integer, interval, interval),
    eventbus.ack(text, bigint[]), eventbus.nack(text, bigint, text, interval) TO consumer;
SELECT eventbus.subscribe('s', array['up.#'], max_attempts => 1, lease => '1 hour');
SELECT eventbus.subscribe('o', array['up.#'], ordered => true, lease => '1 hour');
SELECT count(eventbus.publish('up.x', jsonb_build_object('n', g), key => 'k' || (g % 3))) FROM generate_series(1, 30) g;
});
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'eventbus'"), '0.1.0', 'version 0.1.0 installed');

# In flight on 0.1.0: 10 leased, of them 2 nacked into the dead letters
# (max_attempts 1); 20 unread. Ordered: the heads of the three keys leased.
is(sql("SELECT count(*) FROM eventbus.poll('s', 10)"), '10', 'ten leased');
sql("SELECT eventbus.nack('s', id, 'boom') FROM (SELECT id FROM eventbus.events WHERE payload->>'n' IN ('1', '2')) q");
is(sql("SELECT count(*) FROM eventbus.poll('o', 10)"), '3', 'ordered: one per key leased');
is(sql("SELECT count(*) FROM eventbus.dead_letters"), '2', 'two dead letters');

sql("ALTER EXTENSION eventbus UPDATE");
is(sql("SELECT extversion FROM pg_extension WHERE extname = 'eventbus'"), $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'eventbus'"), 'updated to the default version');

# The same objects as a fresh install.
$node->safe_psql('fresh', "CREATE EXTENSION eventbus; CREATE ROLE consumer_fresh;");
my $catalog = slurp_file('test/upgrade/catalog.sql');
my $updated = $node->safe_psql('app', $catalog);
my $fresh = $node->safe_psql('fresh', $catalog);
# The only difference allowed: the grants made to "consumer" above.
$updated =~ s/,?"?\(\d+,\d+,EXECUTE,f\)"?//g;
$fresh =~ s/,?"?\(\d+,\d+,EXECUTE,f\)"?//g;
is($updated, $fresh, 'the updated extension is exactly a fresh install');

# The grants carried over to the new signatures.
is(sql(q{SELECT string_agg(p.oid::regprocedure::text, ' ' ORDER BY 1) FROM pg_proc p
          WHERE p.pronamespace = 'eventbus'::regnamespace AND has_function_privilege('consumer', p.oid, 'EXECUTE')
            AND p.proname IN ('poll', 'ack', 'nack')}),
	'eventbus.ack(text,bigint[],bigint) eventbus.nack(text,bigint,text,interval,bigint,boolean) eventbus.poll(text,integer,interval,interval,bigint)',
	'the consumer may still poll, ack and nack');

# Owners and rights: the extension's owner owns what was there; the role
# that could poll before may consume each subscription.
is(sql("SELECT string_agg(name || ' ' || owner || ' ' || consumers::text || ' ' || managers::text, '; ' ORDER BY name) "
	  . "FROM eventbus.subscriptions"),
	sql("SELECT string_agg(n || ' ' || current_user || ' {consumer} {}', '; ' ORDER BY n) FROM unnest(array['o', 's']) n"),
	'every subscription is the extension owner\'s, and the consumer keeps consume on it');

# Nothing lost: the 8 leased are acked (by id, no token), the 20 unread
# come as new, the 2 dead ones are redriven and come again.
my $leased = sql("SELECT array_agg(event_id) FROM eventbus.deliveries WHERE subscription = 's' AND state = 'leased'");
is($node->safe_psql('app', "SELECT eventbus.ack('s', '$leased')", extra_params => [ '-U', 'consumer' ]),
	'8', 'the leases taken on 0.1.0 are acked on 0.2.0, by the consumer');
is(sql("SELECT count(*) FROM eventbus.poll('s', 100)"), '20', 'the unread events come, once');
is(sql("SELECT eventbus.redrive('s')"), '2', 'the dead letters are redriven');
is(sql("SELECT count(*) FROM eventbus.poll('s', 100)"), '2', 'and handed out');
sql("SELECT eventbus.ack('s', array(SELECT event_id FROM eventbus.deliveries WHERE subscription = 's'))");
is(sql("SELECT count(*) FROM eventbus.deliveries WHERE subscription = 's'"), '0', 'subscription s: everything done');

# Ordered: the leased heads are acked, then every key's events come in order.
my @got;
for my $round (1 .. 20)
{
	sql("SELECT eventbus.ack('o', array(SELECT event_id FROM eventbus.deliveries WHERE subscription = 'o' AND state = 'leased'))");
	my $r = sql("SELECT string_agg(payload->>'n', ',' ORDER BY event_id) FROM eventbus.poll('o', 10)");
	push @got, $r if $r ne '';
	last if sql("SELECT count(*) FROM eventbus.deliveries WHERE subscription = 'o'") eq '0'
	  && sql("SELECT count(*) FROM eventbus._unread((SELECT id FROM eventbus.subscription WHERE name = 'o'))") eq '0';
}
my %last;
my $in_order = 1;
my $count = 0;
for my $n (map { split /,/ } @got)
{
	my $k = $n % 3;
	$in_order = 0 if defined $last{$k} && $n < $last{$k};
	$last{$k} = $n;
	$count++;
}
is($count, 27, 'ordered subscription: the 27 events not leased on 0.1.0 come after the update');
ok($in_order, 'in order per key');

$node->stop;
done_testing();

# Relays to Kafka against a mock cluster (test/perl/EventbusKafka.pm): every
# committed event of the relay's patterns is produced once, keyed by its
# key, in commit order per key, with its CloudEvents attributes (binary
# mode) and its own headers; a topic template; a message the broker
# refuses for good becomes a dead letter with the broker's error and
# redrive sends it again; a broker that is down makes lag grow, not
# publishing fail, and everything arrives once it is back; pause stops the
# relay process and resume starts it; a fast shutdown is not held up by an
# unreachable broker; and the credentials of a user mapping show nowhere a
# role without it could look (views, errors, pg_stat_activity, the log).
# Time bounds are liveness bounds, not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusKafka;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $why = kafka_rig_missing();
plan skip_all => $why if $why;

my $secret = 'S3cr3t-relay-pw';
my $mock = start_mock(brokers => 3, partitions => 4);
my $bootstrap = $mock->bootstrap;

my $node = PostgreSQL::Test::Cluster->new('relay');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
max_worker_processes = 20
eventbus.tick_interval = '50ms'
));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_for
{
	my ($query, $what) = @_;
	ok($node->poll_query_until('postgres', $query), $what);
}

# The TAP cluster logs every statement: not these (as log_statement = none
# would not for an application that sets up its mapping).
sql(qq{
SET log_statement = 'none';
CREATE EXTENSION eventbus;
CREATE SERVER kafka FOREIGN DATA WRAPPER eventbus_kafka
    OPTIONS ("bootstrap.servers" '$bootstrap', "linger.ms" '5');
CREATE USER MAPPING FOR CURRENT_USER SERVER kafka
    OPTIONS ("sasl.username" 'relay', "sasl.password" '$secret');
SELECT eventbus.create_relay('orders_out', array['orders.#'], server => 'kafka',
                             options => '{"source": "/shop/orders"}');
SELECT eventbus.create_relay('by_region', array['orders.*.created'], server => 'kafka',
                             topic => 'shop.{2}');
});
wait_for(q{SELECT count(*) = 2 FROM eventbus.relays WHERE state = 'running'},
	'both relay processes run');

# ---- every event, once, keyed, in order per key, as a CloudEvent ----
sql(q{
SELECT eventbus.publish('orders.eu.created', jsonb_build_object('n', i), key => 'k' || (i % 7),
                        headers => '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tenant": "acme"}')
  FROM generate_series(1, 150) i;
SELECT eventbus.publish('refunds.eu.created', '{}');
});
# Unkeyed events, in ten transactions 300 ms apart: librdkafka sticks to a
# partition for a while (sticky partitioning), then moves on.
for my $round (0 .. 9)
{
	sql(qq{SELECT eventbus.publish('orders.us.created', jsonb_build_object('n', $round * 5 + i)) FROM generate_series(1, 5) i});
	select(undef, undef, undef, 0.3);
}
my %ids = map { $_ => 1 } split /\n/, sql(q{SELECT id FROM eventbus.events WHERE topic LIKE 'orders.%'});
is(scalar keys %ids, 200, '200 events published to the relay\'s patterns');
my @eu = kcat_wait_count($bootstrap, 'orders.eu.created', 150, 60);
my @us = kcat_wait_count($bootstrap, 'orders.us.created', 50, 60);
is(scalar @eu, 150, 'orders.eu.created holds the 150 keyed events');
is(scalar @us, 50, 'orders.us.created holds the 50 unkeyed events');

my (%seen, %by_key, $bad_key, $bad_ce);
my $instance_ok = 1;
for my $m (@eu, @us)
{
	my $h = $m->{headers};
	my ($id) = ($h->{ce_id} // '') =~ /(\d+)$/;
	$seen{$id}++ if defined $id;
	my $payload = $m->{payload};
	$bad_ce++ unless ($h->{ce_specversion} // '') eq '1.0'
	  && ($h->{ce_type} // '') eq $m->{topic}
	  && ($h->{ce_source} // '') eq '/shop/orders'
	  && ($h->{'content-type'} // '') eq 'application/json'
	  && defined $h->{ce_time}
	  && $payload =~ /^\{"n": \d+\}$/;
	if ($m->{topic} eq 'orders.eu.created')
	{
		$bad_key++ unless defined $m->{key} && $m->{key} =~ /^k\d$/
		  && ($h->{ce_partitionkey} // '') eq $m->{key}
		  && ($h->{traceparent} // '') eq '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
		  && ($h->{tenant} // '') eq 'acme';
		push @{ $by_key{ $m->{key} } }, [ $m->{partition}, $id ];
	}
	else
	{
		$bad_key++ if defined $m->{key};
	}
}
is(scalar(grep { $ids{$_} } keys %seen), 200, 'every event is in Kafka, by its ce_id');
is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'none twice');
ok(!$bad_ce, 'each message has ce_specversion, ce_id, ce_type = the topic, ce_source (the relay\'s), ce_time, content-type, the payload');
ok(!$bad_key, 'the message key is the event key (unkeyed: none), the event\'s headers pass through');
my $order_ok = 1;
for my $k (keys %by_key)
{
	my @p = map { $_->[0] } @{ $by_key{$k} };
	my @i = map { $_->[1] } @{ $by_key{$k} };
	$order_ok = 0 if grep { $_ != $p[0] } @p;
	$order_ok = 0 if grep { $i[$_] <= $i[ $_ - 1 ] } 1 .. $#i;
}
ok($order_ok, 'each key is in one partition, in commit order');
my %parts = map { $_->{partition} => 1 } @us;
cmp_ok(scalar keys %parts, '>', 1, 'unkeyed events spread over partitions');
is(scalar(kcat_wait_count($bootstrap, 'shop.eu', 150, 60)), 150, 'the template shop.{2} sends orders.eu.created to shop.eu');
is(scalar(kcat_wait_count($bootstrap, 'shop.us', 50, 60)), 50, '... and orders.us.created to shop.us');
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'orders_out'},
	'the relay has nothing pending once Kafka acknowledged');
is(sql(q{SELECT produced >= 200 FROM eventbus.relays WHERE name = 'orders_out'}), 't',
	'eventbus.relays counts what was produced');

# ---- a real Kafka client: the kafkajs example consumer (docs/examples/kafka-consumer) ----
my $example = "$FindBin::RealBin/../../docs/examples/kafka-consumer";
SKIP:
{
	skip 'node is not installed', 4 unless grep { -x "$_/node" } split /:/, $ENV{PATH};
	ok(-d "$example/node_modules/kafkajs", 'kafkajs is installed (npm ci in docs/examples/kafka-consumer)')
	  or skip 'no kafkajs', 3;
	local $ENV{KAFKA_BROKERS} = $bootstrap;
	local $ENV{KAFKA_TOPIC} = 'orders.eu.created';
	local $ENV{EXPECT} = 150;
	local $ENV{TIMEOUT} = 90;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'node', "$example/consumer.js" ], '>', \$out, '2>', \$err);
	my @lines = map { eval { JSON::PP::decode_json($_) } // () } split /\n/, $out;
	my ($summary) = map { $_->{summary} } grep { $_->{summary} } @lines;
	my @events = grep { !$_->{summary} } @lines;
	is($summary && $summary->{unique}, 150, 'kafkajs reads the 150 relayed CloudEvents')
	  or diag("stdout: $out\nstderr: $err");
	is($summary && $summary->{invalid}, 0, '... each a valid CloudEvent in binary mode');
	my %want = map { $_ => 1 } grep { $ids{$_} } keys %seen;
	is(scalar(grep { ($_->{id} // '') =~ /:(\d+)$/ && $want{$1} && ($_->{type} // '') eq 'orders.eu.created'
				  && ref $_->{data} eq 'HASH' && defined $_->{data}{n} } @events), 150,
		'... with their ce_id, ce_type and data as published');
}

# ---- refused for good: a dead letter with the broker's error; redrive ----
# The mock cluster has no size limit of its own: the broker's refusal is
# injected (the next Produce request fails with MSG_SIZE_TOO_LARGE), and
# once used up it stands for the limit raised.
$mock->cmd('produce_errors 1 MSG_SIZE_TOO_LARGE');
my $big = sql(q{SELECT eventbus.publish('orders.big', jsonb_build_object('pad', repeat('x', 3000)))});
wait_for(qq{SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'orders_out' AND event_id = $big},
	'a message over message.max.bytes is a dead letter');
like(sql(qq{SELECT last_error FROM eventbus.dead_letters WHERE event_id = $big}),
	qr/MSG_SIZE_TOO_LARGE/, '... with the error, named');
like(sql(q{SELECT last_error FROM eventbus.relays WHERE name = 'orders_out'}),
	qr/MSG_SIZE_TOO_LARGE/, 'eventbus.relays shows the last error');
my @none = kcat_read($bootstrap, 'orders.big');
is(scalar @none, 0, 'it is not in Kafka');
sql(qq{SELECT eventbus.redrive('orders_out', array[${big}::bigint])});
my @bigmsg = kcat_wait_count($bootstrap, 'orders.big', 1, 60);
is(scalar @bigmsg, 1, 'after raising the limit, redrive delivers it');

$mock->cmd('produce_errors 1 TOPIC_AUTHORIZATION_FAILED');
my $denied = sql(q{SELECT eventbus.publish('orders.denied', '{}')});
wait_for(qq{SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'orders_out' AND event_id = $denied},
	'a message the broker refuses (topic authorization) is a dead letter');
like(sql(qq{SELECT last_error FROM eventbus.dead_letters WHERE event_id = $denied}),
	qr/TOPIC_AUTHORIZATION_FAILED/, '... with the broker\'s error');
sql(qq{SELECT eventbus.redrive('orders_out', array[${denied}::bigint])});
is(scalar(kcat_wait_count($bootstrap, 'orders.denied', 1, 60)), 1, 'redrive delivers it');

# ---- a broker down: lag grows, publishing goes on, nothing is lost ----
$mock->cmd('create orders.down 1');
my $leader = (values %{ kcat_leaders($bootstrap, 'orders.down') })[0];
$mock->cmd("down $leader");
my $t0 = time;
sql(q{SELECT eventbus.publish('orders.down', jsonb_build_object('n', i), key => 'd' || (i % 3)) FROM generate_series(1, 300) i});
ok(time - $t0 < 30, 'publishing is not held up by the broker being down');
wait_for(q{SELECT state = 'waiting' FROM eventbus.relays WHERE name = 'orders_out'},
	'the relay waits for the broker');
is(sql(q{SELECT backlog + in_flight > 0 FROM eventbus.subscription_stats WHERE subscription = 'orders_out'}), 't',
	'its lag shows in subscription_stats (in flight: leased to the relay, not acknowledged)');
sleep 2;
$mock->cmd("up $leader");
my @down = kcat_wait_count($bootstrap, 'orders.down', 300, 90);
my %d = map { ($_->{headers}{ce_id} =~ /(\d+)$/)[0] => 1 } @down;
is(scalar keys %d, 300, 'once the broker is back, all 300 arrive');
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'orders_out'},
	'and the lag is back to 0');

# ---- pause, resume ----
sql(q{SELECT eventbus.pause('by_region')});
wait_for(q{SELECT state = 'paused' AND pid IS NULL FROM eventbus.relays WHERE name = 'by_region'
            AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'eventbus relay by_region')},
	'pause stops the relay process');
sql(q{SELECT eventbus.resume('by_region')});
wait_for(q{SELECT state = 'running' FROM eventbus.relays WHERE name = 'by_region'},
	'resume starts it again');

# ---- the credentials show nowhere a role without the mapping looks ----
sql(q{CREATE ROLE snoop LOGIN; GRANT pg_monitor TO snoop;
      GRANT SELECT ON eventbus.relays TO snoop;
      SELECT eventbus.grant_subscription('orders_out', 'snoop', 'manage');});
my $seen_by_snoop = $node->safe_psql('postgres', q{
SET ROLE snoop;
SELECT coalesce(string_agg(x::text, ' '), '') FROM (
  SELECT r::text AS x FROM eventbus.relays r
  UNION ALL SELECT m::text FROM pg_user_mappings m
  UNION ALL SELECT s::text FROM pg_foreign_server s
  UNION ALL SELECT a.query || ' ' || coalesce(a.application_name, '') FROM pg_stat_activity a
  UNION ALL SELECT pg_catalog.array_to_string(srvoptions, ',') FROM pg_foreign_server) t});
unlike($seen_by_snoop, qr/\Q$secret\E/,
	'neither eventbus.relays, pg_user_mappings, pg_foreign_server nor pg_stat_activity shows the password to another role');
like($seen_by_snoop, qr/orders_out/, '... which does see the relay');
my ($ret, $out, $err) = $node->psql('postgres', q{SET ROLE snoop; SELECT * FROM pg_user_mapping});
unlike($err . $out, qr/\Q$secret\E/, 'pg_user_mapping is not readable to it');
($ret, $out, $err) = $node->psql('postgres',
	qq{SET log_statement = 'none'; SET log_min_error_statement = 'panic'; CREATE USER MAPPING FOR snoop SERVER kafka OPTIONS ("security.protocol" '$secret')});
unlike($err, qr/\Q$secret\E/, 'an invalid value in a user mapping is not echoed by the error');
like($err, qr/Invalid value "\*\*\*"/, '... it is shown as ***');

# ---- a relay whose server is dropped: it fails, says why, and others go on ----
sql(qq{
SET log_statement = 'none';
CREATE SERVER doomed FOREIGN DATA WRAPPER eventbus_kafka OPTIONS ("bootstrap.servers" '$bootstrap');
CREATE USER MAPPING FOR CURRENT_USER SERVER doomed;
SELECT eventbus.create_relay('doomed_out', array['doomed.#'], server => 'doomed');
});
wait_for(q{SELECT state = 'running' FROM eventbus.relays WHERE name = 'doomed_out'}, 'a relay on a second server runs');
sql(q{DROP SERVER doomed CASCADE; SELECT eventbus.publish('doomed.x', '{}')});
wait_for(q{SELECT state = 'failed' AND last_error = 'server "doomed" of relay "doomed_out" does not exist'
             FROM eventbus.relays WHERE name = 'doomed_out'},
	'a relay whose server was dropped fails, and eventbus.relays says why');
my $other = sql(q{SELECT eventbus.publish('orders.after_doom', '{}')});
is(scalar(kcat_wait_count($bootstrap, 'orders.after_doom', 1, 60)), 1, 'the other relay goes on');
sql(q{SELECT eventbus.drop_relay('doomed_out')});

# ---- a fast shutdown with the broker down ----
my @all = split /,/, $bootstrap;
$mock->cmd("down $_") for 1 .. scalar @all;
sql(q{SELECT eventbus.publish('orders.eu.created', '{"late": true}', key => 'k1')});
sleep 2;
my $t1 = time;
$node->stop('fast');
ok(time - $t1 < 30, 'pg_ctl stop -m fast is not held up by an unreachable broker');
$mock->cmd("up $_") for 1 .. scalar @all;
$node->start;
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'orders_out'},
	'after the restart, the event waiting for the broker is relayed (once its lease ran out)');
my @late = grep { ($_->{payload} // '') =~ /late/ } kcat_wait_count($bootstrap, 'orders.eu.created', 151, 60);
cmp_ok(scalar @late, '>=', 1, '... and it is in Kafka');

my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$secret\E/, 'the server log never shows the password');

$node->stop;
$mock->stop;
done_testing();

# The Kafka test rig (test/perl/EventbusKafka.pm) against itself, before
# any relay uses it: the mock cluster answers its commands, kcat produces
# keys, headers and binary payloads that kcat_read gives back intact and in
# order per partition, a broker down stops its partitions and up brings
# them back, injected Produce errors are retried (retriable ones) or fail
# the delivery (MSG_SIZE_TOO_LARGE), and topics the cluster did not know are
# auto-created with 4 partitions. No PostgreSQL here. Time bounds are
# liveness bounds, not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusKafka;
use Test::More;

my $why = kafka_rig_missing();
plan skip_all => $why if $why;

my $mock = start_mock(brokers => 3, partitions => 4);
my $b = $mock->bootstrap;
like($b, qr/^127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/,
	'the mock prints three bootstrap servers');

# Commands: ok, or an error line that cmd turns into a die.
is($mock->answer('create rig 4'), 'ok', 'create a topic with 4 partitions');
like($mock->answer('down 9'), qr/^error no such broker/, 'a broker that does not exist is an error');
like($mock->answer('produce_errors 1 NO_SUCH_ERROR'), qr/^error unknown error/,
	'an unknown error name is an error');
like($mock->answer('frobnicate'), qr/^error unknown command/, 'an unknown command is an error');
ok(!eval { $mock->cmd('down 0'); 1 }, 'cmd dies on an error answer');
like($@, qr/"down 0" failed: error/, '... and says which command failed');
is($mock->answer('rtt 1 5'), 'ok', 'rtt');
is($mock->answer('rtt 1 0'), 'ok', 'rtt back to 0');
is(scalar keys %{ kcat_leaders($b, 'rig') }, 4, 'the created topic has 4 partitions');

# Auto-creation: an unknown topic gets 4 partitions on its first Metadata
# request, whatever --partitions says ("create" alone uses that).
my $small = start_mock(brokers => 1, partitions => 2);
$small->cmd('create two');
is(scalar keys %{ kcat_leaders($small->bootstrap, 'two') }, 2, 'create without a count uses --partitions');
ok(kcat_produce($small->bootstrap, 'auto', key => 'a', payload => 'x'), 'produce to an unknown topic');
is(scalar keys %{ kcat_leaders($small->bootstrap, 'auto') }, 4, 'it was auto-created with 4 partitions');
# Metadata v2 (the mock's highest) has no AllowAutoTopicCreation: even a
# consumer that does not allow it creates the topic.
my @none = kcat_read($small->bootstrap, 'by_consumer', extra => [ '-X', 'allow.auto.create.topics=false' ]);
is(scalar @none, 0, 'reading an unknown topic: no message');
is(scalar keys %{ kcat_leaders($small->bootstrap, 'by_consumer') }, 4,
	'... but a consumer with allow.auto.create.topics=false created it, 4 partitions');
is($small->stop, 0, 'quit: the mock exits 0');

# Keys, headers, per-partition order, binary payloads.
my $n = 12;
for my $i (0 .. $n - 1)
{
	my $key = 'order-' . ($i % 4);
	ok(kcat_produce($b, 'rig',
			key => $key,
			headers => [
				ce_id => "id-$i",
				traceparent => sprintf('00-%032x-%016x-01', $i + 1, $i + 1),
				ce_type => 'shop.order "created", v=1; a,b=c',
				ce_id => "dup-$i"    # a repeated name: both kept, in order
			],
			payload => "{\"seq\": $i}\n\x00\x01 tail"),
		"produce $i") or diag $EventbusKafka::last_err;
}
my @msgs = kcat_read($b, 'rig');
is(scalar @msgs, $n, "kcat_read gives back the $n messages");
my (%part_of_key, %last_seq, $bad_headers, $bad_payload, $bad_order);
for my $m (@msgs)
{
	my ($seq) = $m->{payload} =~ /^\{"seq": (\d+)\}\n\x00\x01 tail$/ or $bad_payload++, next;
	my @names = map { $_->[0] } @{ $m->{header_list} };
	$bad_headers++
	  unless "@names" eq 'ce_id traceparent ce_type ce_id'
	  && $m->{header_list}[0][1] eq "id-$seq"
	  && $m->{headers}{ce_id} eq "dup-$seq"
	  && $m->{headers}{traceparent} eq sprintf('00-%032x-%016x-01', $seq + 1, $seq + 1)
	  && $m->{headers}{ce_type} eq 'shop.order "created", v=1; a,b=c';
	$bad_order++ unless $m->{key} eq 'order-' . ($seq % 4);
	$part_of_key{ $m->{key} }{ $m->{partition} } = 1;
	$bad_order++ if defined $last_seq{ $m->{partition} } && $last_seq{ $m->{partition} } >= $seq;
	$last_seq{ $m->{partition} } = $seq;
	is($m->{topic}, 'rig', 'topic') if $seq == 0;
}
ok(!$bad_payload, 'payloads with a newline, NUL and control bytes come back intact');
ok(!$bad_headers, 'headers come back with their values, in order, repeated names kept');
ok(!$bad_order, 'keys intact, offsets in produce order within each partition');
is(scalar(grep { keys %{ $part_of_key{$_} } == 1 } keys %part_of_key), 4,
	'each key stays on one partition');

# A broker down: its partitions cannot take writes; up again, they can.
$mock->cmd('leader rig 0 2');
$mock->cmd('leader rig 1 3');
is(kcat_leaders($b, 'rig')->{0}, 2, 'leader moves partition 0 to broker 2');
$mock->cmd('down 2');
ok(!kcat_produce($b, 'rig', partition => 0, payload => 'while down',
		extra => [ '-X', 'message.timeout.ms=1500' ]),
	'broker 2 down: producing to its partition times out');
ok(kcat_produce($b, 'rig', partition => 1, payload => 'other partition',
		extra => [ '-X', 'message.timeout.ms=10000' ]),
	'... while a partition led by another broker still takes writes');
$mock->cmd('up 2');
ok(kcat_produce($b, 'rig', partition => 0, payload => 'after up'), 'broker 2 up: producing works again');
my @p0 = grep { $_->{partition} == 0 } kcat_read($b, 'rig');
is($p0[-1]{payload}, 'after up', '... and the message is on partition 0');
ok(!grep({ $_->{payload} eq 'while down' } @p0), '... the timed-out one is not');

# Injected Produce errors.
$mock->cmd('create errs 1');
$mock->cmd('produce_errors 3 NOT_LEADER_FOR_PARTITION');
ok(kcat_produce($b, 'errs', payload => 'retried'), '3 x NOT_LEADER_FOR_PARTITION: delivered after retries')
  or diag $EventbusKafka::last_err;
$mock->cmd('produce_errors 2 REQUEST_TIMED_OUT');
ok(kcat_produce($b, 'errs', payload => 'idempotent', extra => [ '-X', 'enable.idempotence=true' ]),
	'2 x REQUEST_TIMED_OUT, idempotent producer: delivered');
$mock->cmd('produce_errors 1 MESSAGE_TOO_LARGE');
ok(!kcat_produce($b, 'errs', payload => 'too large'), 'MESSAGE_TOO_LARGE: the delivery fails');
like($EventbusKafka::last_err, qr/Delivery failed.*too large/i, '... with the broker error');
$mock->cmd('produce_errors 1 10');
ok(!kcat_produce($b, 'errs', payload => 'too large by code'), 'a numeric error code (10) works too');
my @errs = kcat_wait_count($b, 'errs', 2, 10);
is(join(',', map { $_->{payload} } @errs), 'retried,idempotent', 'exactly the delivered messages, once each');

# kcat_wait_count gives up after its timeout with what it found.
my @few = kcat_wait_count($b, 'errs', 5, 1);
is(scalar @few, 2, 'kcat_wait_count returns what there is after its timeout');

# SIGTERM: the mock exits 0.
my $term = start_mock(brokers => 1);
is($term->signal_stop('TERM'), 0, 'SIGTERM: the mock exits 0');

ok(-f $mock->log_file, 'the mock logs to a file: ' . $mock->log_file);
is($mock->stop, 0, 'the mock stops cleanly');
done_testing();

# make demo: test/demo.sql, run as the demo runs it (psql -a on a cluster
# with eventbus preloaded), shows what its comments promise. Each section's
# output is checked, not only that the script ran.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Basename qw(dirname);

my $node = PostgreSQL::Test::Cluster->new('demo');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'eventbus'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE eventbus_demo');
$node->safe_psql('eventbus_demo', 'CREATE EXTENSION eventbus');

my $script = dirname(__FILE__) . '/../demo.sql';
my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ 'psql', '-X', '-a', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('eventbus_demo'), '-f', $script ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'the demo script runs to its end') or diag($stderr);

# The output of section N: from its "-- N." comment to the next one.
sub section
{
	my ($n) = @_;
	my ($text) = $stdout =~ /^-- \Q$n\E\.(.*?)(?=^-- \d+\.|\z)/ms;
	return $text // '';
}

my $s4 = section(4);
like($s4, qr/orders\.eu\.created \| order-42 \| \{"amount": 99\.5, "order_id": 42\}/, '4: the committed publish is in the log');
like($s4, qr/refunds\.eu\.issued.*"refund_id": 7/, '4: and both events of the batch');
like($s4, qr/\(3 rows\)/, '4: three events');
unlike($s4, qr/"order_id": 43/, '4: the rolled-back event is not');

my $s5 = section(5);
like($s5, qr/refunds\.eu\.issued\s*\| f\s*\| f\s*\| t/, '5: the wildcards match as the comment says');

my $s6 = section(6);
like($s6, qr/orders\.eu\.created \| \{"order_id": 45\}\s*\|\s*1/, '6: poll hands out the event published after subscribe, attempt 1');
unlike($s6, qr/^\s*\d+ \| refunds\.eu\.issued/m, '6: not the event on a topic billing does not match');
like($s6, qr/billing \| \{orders\.\*\.created\} \| eventbus_billing \|\s*0 \|\s*0 \|\s*0/, '6: after the ack nothing is leased');

my $s7 = section(7);
like($s7, qr/count\s*\n-+\s*\n\s*0\s*\n/, '7: the first poll after LISTEN finds nothing new');
like($s7, qr/\{"order_id": 46\}/, '7: the poll after the notification returns the new event');
like($stdout, qr/Asynchronous notification "eventbus_billing" with payload "billing" received/, '7: psql shows the notification');

my $s8 = section(8);
like($s8, qr/order_id\s*\n-+\s*\n\s*47\s*\n\(1 row\)/, '8: the handler wrote the invoice row');

like($stderr, qr/invalid topic "orders\.\.created"/, '9: an invalid topic is refused');

$node->stop;
done_testing();

# Through pgbouncer in transaction pooling mode (Debian's pgbouncer, two
# server connections for seven clients): two publishers and three
# consumers (test/pooled_client.py, psycopg2, every statement its own
# transaction, no prepared statements) publish 600 events and consume them
# with poll(wait => 1s) and ack(lease_token); every event is delivered and
# acked exactly once, though each consumer's calls ran on more than one
# server connection. A poll with a 60 s wait through the pooler returns
# with the event as soon as another pooled client publishes it. LISTEN is
# not tested here: through transaction pooling it is not supported
# (docs/pooling.md). Time bounds here are liveness bounds, not speed claims.
use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $python = '/usr/bin/python3';
my $client = abs_path(dirname(__FILE__) . '/../pooled_client.py');
my $pgbouncer = '/usr/sbin/pgbouncer';
plan skip_all => "$pgbouncer not found (Debian: pgbouncer)" unless -x $pgbouncer;
plan skip_all => "$python cannot import psycopg2 (Debian: python3-psycopg2)"
  if system($python, '-c', 'import psycopg2') != 0;

my $per_publisher = 300;
my $pool_size = 2;

my $node = PostgreSQL::Test::Cluster->new('pooled');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'eventbus'
max_worker_processes = 16
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION eventbus;
SELECT eventbus.subscribe('pb', array['pb.#'], lease => '30s');
});

# pgbouncer, run by this test, in a directory of its own.
my $dir = "$PostgreSQL::Test::Utils::tmp_check/pgbouncer";
mkdir $dir;
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $user = $ENV{USER} // getpwuid($<);
open(my $fh, '>', "$dir/userlist.txt") or die $!;
print $fh qq{"$user" ""\n};
close $fh;
my $host = $node->host;
my $port = $node->port;
open($fh, '>', "$dir/pgbouncer.ini") or die $!;
print $fh qq{[databases]
postgres = host=$host port=$port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = $user
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = 50
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
};
close $fh;
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
	'>' => "$dir/stdout", '2>' => "$dir/stderr");
END { eval { $bouncer->kill_kill(grace => 5) if $bouncer && $bouncer->pumpable; }; }
my $dsn = "host=127.0.0.1 port=$bport dbname=postgres user=$user";

# Runs SQL through pgbouncer with psql (one connection, autocommit).
sub bsql
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $dsn, '-c', $sql ],
		'>' => \$out, '2>' => \$err);
	chomp $out;
	return ($? == 0, $out, $err);
}

my $t0 = time;
my ($ok, $out, $err);
while (time - $t0 < 30)
{
	($ok, $out, $err) = bsql('SELECT 1');
	last if $ok;
	usleep(100_000);
}
ok($ok, 'pgbouncer accepts connections') or diag($err . slurp_file("$dir/pgbouncer.log"));
# The admin console says which pool mode the pool runs in.
my $pools = '';
IPC::Run::run([ 'psql', '-XAt', '-d', "host=127.0.0.1 port=$bport dbname=pgbouncer user=$user",
		'-c', 'SHOW POOLS' ], '>' => \$pools, '2>' => \my $perr);
like($pools, qr/^postgres\|\Q$user\E\|.*\|transaction$/m, 'the pool runs in transaction mode');

# ---- 1. Publishers and consumers through the pooler.
my $stop = "$dir/stop";
my @consumers = map {
	IPC::Run::start([ $python, $client, 'consume', $dsn, "$dir/cons-$_.txt", $stop ],
		'>' => "$dir/cons-$_.out", '2>' => "$dir/cons-$_.err")
} 1 .. 3;
my @publishers = map {
	IPC::Run::start([ $python, $client, 'pub', $dsn, "p$_", $per_publisher ],
		'>' => "$dir/pub-$_.out", '2>' => "$dir/pub-$_.err")
} 1 .. 2;
END { eval { $_->kill_kill(grace => 5) for grep { $_->pumpable } @consumers, @publishers; }; }
my $pub_ok = 1;
for my $p (@publishers)
{
	eval { $p->finish; 1 } or $pub_ok = 0;
	$pub_ok = 0 if $?;
}
ok($pub_ok, 'both publishers published through pgbouncer')
  or diag(join '', map { slurp_file("$dir/pub-$_.err") } 1 .. 2);
my $total = 2 * $per_publisher;
is($node->safe_psql('postgres', "SELECT count(*) FROM eventbus.events WHERE topic = 'pb.order'"),
	$total, "$total events committed");
ok( $node->poll_query_until('postgres',
		"SELECT backlog = 0 AND in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'pb'"),
	'the consumers drained the subscription');
open($fh, '>', $stop) or die $!;
close $fh;
my $cons_ok = 1;
for my $c (@consumers)
{
	eval { $c->finish; 1 } or $cons_ok = 0;
	$cons_ok = 0 if $?;
}
ok($cons_ok, 'the three consumers ended without error')
  or diag(join '', map { slurp_file("$dir/cons-$_.err") } 1 .. 3);

my (%count, %pids, @short_acks);
my %all_pids;
for my $c (1 .. 3)
{
	for (split /\n/, slurp_file("$dir/cons-$c.txt"))
	{
		if (/^D (\S+) (\d+) (\d+) (\d+)$/)
		{
			$count{$1}++;
			$pids{$c}{$4} = 1;
			$all_pids{$4} = 1;
		}
		push @short_acks, $_ if /^A (\d+) (\d+)$/ && $1 != $2;
	}
}
my @keys = map { my $p = $_; map { "p$p-$_" } 0 .. $per_publisher - 1 } 1 .. 2;
my @missing = grep { !$count{$_} } @keys;
my @twice = grep { $count{$_} > 1 } keys %count;
is(scalar @missing, 0, 'every event was delivered') or diag("missing: @missing[0 .. 9]");
is(scalar @twice, 0, 'no event was delivered twice') or diag("twice: @twice");
is(scalar(keys %count), $total, "$total keys delivered, no other");
is(scalar @short_acks, 0, 'every ack with the lease token finished all the events of its poll')
  or diag("@short_acks");
cmp_ok(scalar(keys %all_pids), '<=', $pool_size,
	"the consumers' polls ran on at most $pool_size server connections");
ok((grep { keys %{ $pids{$_} } > 1 } 1 .. 3),
	"a consumer's calls ran on more than one server connection (transaction pooling)");
is($node->safe_psql('postgres', 'SELECT count(*) FROM eventbus.deliveries'), '0',
	'nothing is left leased or waiting');

# ---- 2. A poll with wait through the pooler wakes on a pooled publish.
my ($wout, $werr) = ('', '');
my $waiter = IPC::Run::start([ $python, $client, 'wait', $dsn, 60 ], '>' => \$wout, '2>' => \$werr);
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE state = 'active' AND query LIKE '%eventbus.poll(%wait%' AND pid <> pg_backend_pid()"),
	'the waiting poll runs on a server connection');
($ok, $out, $err) = bsql("SELECT eventbus.publish('pb.order', '{\"k\": \"wake\"}')");
ok($ok, 'another client publishes through pgbouncer meanwhile') or diag($err);
$waiter->finish;
like($wout, qr/^rows 1 elapsed/, 'the waiting poll returns the event') or diag($werr);
my ($elapsed) = $wout =~ /elapsed (\S+)/;
cmp_ok($elapsed // 60, '<', 30, 'before its 60 s wait ended');
note("poll with wait through pgbouncer returned after ${\($elapsed // '?')} s");

$bouncer->signal('INT');
eval { $bouncer->finish; };
$node->stop;
done_testing();

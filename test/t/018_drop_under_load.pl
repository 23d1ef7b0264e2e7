# DROP EXTENSION eventbus CASCADE while the bus is busy: a handler
# subscription at work, two pollers waiting, a publisher committing. The
# drop must succeed every time (before, it deadlocked with the pollers and
# handlers: 40P01); the sessions that were at work get a clear 55000, never
# "could not open relation with OID"; the worker stops with its documented
# message and the launcher does not report a failure.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('dropload');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
deadlock_timeout = '100ms'
eventbus.worker_restart_delay = 1
));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $tries = 4;
my $dropped = 0;
my @errors;
for my $try (1 .. $tries)
{
	sql("CREATE EXTENSION eventbus;
		CREATE TABLE IF NOT EXISTS handled (n int);
		CREATE OR REPLACE FUNCTION busy_handler(e eventbus.event) RETURNS void LANGUAGE plpgsql AS
		  \$\$ BEGIN PERFORM pg_sleep(0.005); INSERT INTO handled VALUES (1); END \$\$;
		SELECT eventbus.subscribe('h', array['h.#'], handler => 'busy_handler(eventbus.event)'::regprocedure);
		SELECT eventbus.subscribe('p', array['p.#']);");
	my $log_offset = -s $node->logfile;

	# Load: a publisher, two pollers waiting, each in a loop of its own
	# transactions until the extension is gone. New topics all the time,
	# so that pollers and handlers read eventbus.topic (names they have not
	# seen) after eventbus.subscription, the order the drop crossed.
	my @load;
	push @load, $node->background_psql('postgres', on_error_stop => 0);
	$load[-1]->query_until(qr/go/, "\\echo go\nDO \$\$ BEGIN LOOP
		PERFORM eventbus.publish('h.' || (random() * 1e9)::bigint, '{}');
		PERFORM eventbus.publish('p.' || (random() * 1e9)::bigint, '{}'); COMMIT;
		PERFORM pg_sleep(0.002); END LOOP; END \$\$;\n");
	for my $p (1 .. 2)
	{
		push @load, $node->background_psql('postgres', on_error_stop => 0);
		$load[-1]->query_until(qr/go/, "\\echo go\nDO \$\$ DECLARE t bigint; BEGIN LOOP
			SELECT max(lease_token) INTO t FROM eventbus.poll('p', 5, wait => '1 s', ack_lease => t);
			COMMIT; END LOOP; END \$\$;\n");
	}
	# Let the handler get busy.
	$node->poll_query_until('postgres', "SELECT count(*) > 20 FROM handled")
	  or diag('the handler did not handle 20 events');
	usleep(200_000);

	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', 'DROP EXTENSION eventbus CASCADE');
	my $secs = time - $t0;
	note sprintf('try %d: DROP EXTENSION returned %d in %.2f s%s', $try, $ret, $secs, $err ? ": $err" : '');
	$dropped++ if $ret == 0;

	# The load sessions end with an error each; collect it.
	for my $bg (@load)
	{
		pump_until($bg->{run}, $bg->{timeout}, \$bg->{stderr}, qr/ERROR:.*\n/);
		my ($e) = $bg->{stderr} =~ /(ERROR:[^\n]*)/;
		push @errors, $e // '(none)';
		$bg->quit;
	}
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type IN ('eventbus worker', 'eventbus handler')
			   AND datname = 'postgres'"),
		"try $try: the worker and its handler processes are gone");
	my $log = slurp_file($node->logfile, $log_offset);
	unlike($log, qr/exited unexpectedly|stopped after an error/, "try $try: the launcher reports no failure");
	unlike($log, qr/could not open relation with OID/, "try $try: nobody met a dropped relation by OID");
	sql('DROP TABLE handled') if $ret == 0;
	last if $ret != 0;
}
is($dropped, $tries, "DROP EXTENSION eventbus CASCADE under load succeeded $tries times out of $tries");
note "the load sessions ended with: " . join(' | ', @errors);
my @unclear = grep { !/extension "eventbus" (?:was dropped while this statement ran|is not installed in this database)|relation "eventbus\.\w+" does not exist|function eventbus\.\w+\(.*\) does not exist/ } @errors;
is(scalar(@unclear), 0, 'each load session ended with a clear error naming eventbus') or diag(join("\n", @unclear));
ok((grep { /55000|extension "eventbus"/ } @errors) > 0, 'at least one met the drop in flight with 55000');

# After a DROP rolled back, the worker works as before.
sql("CREATE EXTENSION eventbus; SELECT eventbus.subscribe('after', array['after.#'])");
$node->poll_query_until('postgres', "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker'")
  or die 'no worker';
my $pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus worker'");
sql("BEGIN; DROP EXTENSION eventbus CASCADE; ROLLBACK;");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker' AND pid <> $pid"),
	'a DROP EXTENSION rolled back: the worker is started again');
sql("SELECT eventbus.publish('after.x', '{}')");
is(sql("SELECT count(*) FROM eventbus.poll('after', 10, wait => '5 s')"), '1', 'and the bus works');

# A role that may not drop the extension neither stops the worker nor locks its tables.
sql("CREATE ROLE mallory LOGIN");
$pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus worker'");
my $holder = $node->background_psql('postgres');
$holder->query_safe("BEGIN; SELECT count(*) FROM eventbus.subscription;");
my ($ret, $out, $err) = $node->psql('postgres', "SET lock_timeout = '2s'; DROP EXTENSION eventbus",
	extra_params => [ '-U', 'mallory' ]);
like($err, qr/must be owner of extension eventbus/,
	'a role that may not drop it gets the usual error at once (no lock taken, none waited for)');
$holder->query_safe('COMMIT');
$holder->quit;
usleep(300_000);
is(sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventbus worker'"), $pid,
	'and the worker was not stopped');

$node->stop;
done_testing();

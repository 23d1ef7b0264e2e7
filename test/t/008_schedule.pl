# eventbus.schedule with pg_cron: the job is registered in pg_cron for this
# database, with the schedule and a command that publishes the payload on
# the topic; unschedule removes it. (pg_cron runs jobs at most every minute
# in this version, so the test runs the job's command itself rather than
# waiting for pg_cron to.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('schedule');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'eventbus,pg_cron'\ncron.database_name = 'postgres'");
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql("CREATE EXTENSION pg_cron; CREATE EXTENSION eventbus;
	SELECT eventbus.subscribe('reports', array['reports.#'])");

my $id = sql("SELECT eventbus.schedule('nightly', '0 3 * * *', 'reports.nightly', '{\"kind\": \"daily\"}')");
like($id, qr/^\d+$/, 'schedule returns the pg_cron job id');
is(sql("SELECT schedule || '|' || database || '|' || jobname FROM cron.job WHERE jobid = $id"),
	'0 3 * * *|postgres|nightly', 'the job runs on the schedule, in this database');

# Run the job's command as pg_cron would.
my $cmd = sql("SELECT command FROM cron.job WHERE jobid = $id");
sql($cmd);
is(sql("SELECT topic || ' ' || payload::text FROM eventbus.poll('reports', 10)"),
	'reports.nightly {"kind": "daily"}', 'the command publishes the payload on the topic');

# Scheduling the same job again replaces it.
my $id2 = sql("SELECT eventbus.schedule('nightly', '0 4 * * *', 'reports.nightly', '{}')");
is(sql("SELECT count(*) || ' ' || max(schedule) FROM cron.job WHERE jobname = 'nightly'"),
	'1 0 4 * * *', 'scheduling a job of the same name replaces it');

# A quote in the payload cannot break out of the command.
sql(q{SELECT eventbus.schedule('quoted', '* * * * *', 'reports.x', '{"a": "it''s; DROP TABLE x"}')});
sql(sql("SELECT command FROM cron.job WHERE jobname = 'quoted'"));
is(sql("SELECT payload->>'a' FROM eventbus.poll('reports', 10)"), "it's; DROP TABLE x",
	'the payload is quoted into the command');

my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT eventbus.schedule('bad', '* * * * *', 'reports..x', '{}')");
like($err, qr/invalid topic/, 'an invalid topic is refused');

($ret, $out, $err) = $node->psql('postgres',
	"SELECT eventbus.schedule('nulltopic', '* * * * *', NULL, '{}')");
like($err, qr/invalid topic "NULL"/, 'a NULL topic is refused (not a job that fails every run)');
is(sql("SELECT count(*) FROM cron.job WHERE jobname = 'nulltopic'"), '0', 'and no job is made');

# unschedule removes only jobs that schedule made.
sql("SELECT cron.schedule('vacuum_job', '0 1 * * *', 'VACUUM')");
($ret, $out, $err) = $node->psql('postgres', "SELECT eventbus.unschedule('vacuum_job')");
like($err, qr/no eventbus job "vacuum_job"/, 'unschedule refuses a pg_cron job eventbus did not make');
is(sql("SELECT count(*) FROM cron.job WHERE jobname = 'vacuum_job'"), '1', 'which stays');

is(sql("SELECT eventbus.unschedule('nightly')"), 't', 'unschedule removes the job');
is(sql("SELECT count(*) FROM cron.job WHERE jobname = 'nightly'"), '0', 'it is gone from cron.job');

$node->stop;
done_testing();

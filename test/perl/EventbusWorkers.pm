# Helpers shared by the TAP tests of the background workers (004_workers,
# 010_worker_crash_standby, 011_notify_lock) and others (settings): a primary with eventbus
# preloaded, waits on queries and the server log, and who runs (the
# launcher, the workers and their databases).
package EventbusWorkers;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(start_primary wait_true wait_log workers launchers worker_pid
  has_worker_query no_worker_query set_conf);

# Sets a setting for the whole cluster (ALTER SYSTEM, reload) and waits
# until the sessions see it.
sub set_conf
{
	my ($node, $name, $value) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$value'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('postgres', "SELECT current_setting('$name') = '$value'")
	  or die "$name did not become $value";
	return;
}

# Starts a cluster that can have a streaming standby, with eventbus preloaded
# and crash restarts on; $extra is appended to postgresql.conf.
sub start_primary
{
	my ($name, $extra) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 1);
	$node->append_conf(
		'postgresql.conf', q{
shared_preload_libraries = 'eventbus'
max_worker_processes = 16
restart_after_crash = on
} . ($extra // ''));
	$node->start;
	return $node;
}

# Polls $query (on database postgres) until it returns 't'. Returns the
# seconds it took, or undef after $timeout seconds. Failed connections
# (crash restart in progress) count as "not yet".
sub wait_true
{
	my ($node, $query, $timeout) = @_;
	my $t0 = time;
	while (1)
	{
		my ($ret, $out) = $node->psql('postgres', $query);
		return time - $t0 if defined $ret && $ret == 0 && defined $out && $out eq 't';
		return undef if time - $t0 > $timeout;
		usleep(50_000);
	}
}

# Waits until the server log, from byte $offset, matches $re; returns
# whether it did within $timeout seconds.
sub wait_log
{
	my ($node, $re, $offset, $timeout) = @_;
	my $t0 = time;
	while (time - $t0 <= $timeout)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $re;
		usleep(100_000);
	}
	return 0;
}

# The databases that have an eventbus worker, comma-separated and sorted.
sub workers
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(coalesce(datname, '?'), ',' ORDER BY datname), '')
		   FROM pg_stat_activity WHERE backend_type = 'eventbus worker'");
}

# Number of eventbus launchers.
sub launchers
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventbus launcher'");
}

# The pid of the worker of database $db ('' when none).
sub worker_pid
{
	my ($node, $db) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity
		  WHERE backend_type = 'eventbus worker' AND datname = '$db'");
}

# A query that is true while database $db has exactly one worker.
sub has_worker_query
{
	my ($db) = @_;
	return "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'eventbus worker' AND datname = '$db'";
}

# A query that is true while database $db has no worker.
sub no_worker_query
{
	my ($db) = @_;
	return "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'eventbus worker' AND datname = '$db'";
}

1;

# The Kafka test rig of the TAP suite (docs/testing.md, "The Kafka rig"): a
# mock Kafka cluster (test/kafka/eb_kafka_mock, a librdkafka mock cluster
# driven over a pipe) and kcat to produce to it and read it back. No
# PostgreSQL here: the relay tests combine it with their own clusters.
#
#   my $why = kafka_rig_missing();  plan skip_all => $why if $why;
#   my $mock = start_mock(brokers => 3, partitions => 4);
#   $mock->cmd('create orders 4');  $mock->cmd('down 2');
#   kcat_produce($mock->bootstrap, 'orders', key => 'k', headers => [ce_id => 1], payload => '{}');
#   my @m = kcat_read($mock->bootstrap, 'orders');
#   $mock->stop;
package EventbusKafka;

use strict;
use warnings;
use Carp;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use File::Temp;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(kafka_rig_missing mock_binary start_mock kcat_produce
  kcat_read kcat_wait_count kcat_leaders);

# Returns the path of the mock cluster binary: $EB_KAFKA_MOCK, else the one
# that make kafka-mock builds in test/kafka.
sub mock_binary
{
	return $ENV{EB_KAFKA_MOCK}
	  // File::Spec->rel2abs(dirname(__FILE__) . '/../kafka/eb_kafka_mock');
}

# Returns why the rig cannot run (kcat or the mock binary missing), or undef
# when it can; for plan skip_all.
sub kafka_rig_missing
{
	my $bin = mock_binary();
	return "mock Kafka cluster $bin not built (make kafka-mock)" unless -x $bin;
	my $found = grep { -x "$_/kcat" } File::Spec->path;
	return 'kcat not installed (apt-get install kcat)' unless $found;
	return undef;
}

# Starts a mock cluster; returns an EventbusKafka::Mock object (bootstrap,
# cmd, answer, stop, log_file). Options: brokers (3), partitions (4: the default
# of "create <topic>"), timeout (30 s for the start and each command), log
# (the file for the mock's stderr: librdkafka's log; default: in the TAP
# log directory, PostgreSQL::Test::Utils's, when there is one, else a
# temporary file). A file, not a pipe: a pipe nobody reads could fill and
# block the mock's threads.
my $mock_count = 0;

sub start_mock
{
	my %opts = @_;
	my $self = bless {
		timeout => $opts{timeout} // 30,
		in => '',
		out => '',
	}, 'EventbusKafka::Mock';
	$mock_count++;
	if (defined $opts{log})
	{
		$self->{log} = $opts{log};
	}
	elsif (defined $PostgreSQL::Test::Utils::log_path && -d $PostgreSQL::Test::Utils::log_path)
	{
		$self->{log} = "$PostgreSQL::Test::Utils::log_path/eb_kafka_mock_$$\_$mock_count.log";
	}
	else
	{
		$self->{logtmp} = File::Temp->new(TEMPLATE => 'eb_kafka_mock_XXXXXX', TMPDIR => 1, SUFFIX => '.log');
		$self->{log} = $self->{logtmp}->filename;
	}
	my @cmd = (
		mock_binary(),
		'--brokers' => $opts{brokers} // 3,
		'--partitions' => $opts{partitions} // 4);
	$self->{timer} = IPC::Run::timer($self->{timeout});
	$self->{h} = IPC::Run::start(\@cmd, '<', \$self->{in}, '>', \$self->{out},
		'2>', $self->{log}, $self->{timer});
	$self->{bootstrap} = $self->_line('start');
	croak "eb_kafka_mock printed no bootstrap servers: $self->{bootstrap}"
	  unless $self->{bootstrap} =~ /^[\w.\-]+:\d+(,[\w.\-]+:\d+)*$/;
	return $self;
}

# kcat_produce($bootstrap, $topic, %msg): produces one message (kcat -P)
# and waits for its delivery. %msg: payload (bytes, newlines and NULs
# included; must not be empty: kcat skips empty messages), key, headers
# (array ref of name => value pairs, in order; a value is text without
# NUL), partition, extra (array ref of more kcat arguments, e.g. ['-X',
# 'enable.idempotence=true']), timeout (30 s). Returns 1 when kcat reported
# the delivery, 0 when it failed (its stderr in $EventbusKafka::last_err).
our $last_err = '';

sub kcat_produce
{
	my ($bootstrap, $topic, %msg) = @_;
	croak 'kcat_produce: empty payload (kcat does not send those)'
	  unless defined $msg{payload} && length $msg{payload};
	my @cmd = ('kcat', '-P', '-b', $bootstrap, '-t', $topic);
	push @cmd, '-k', $msg{key} if defined $msg{key};
	push @cmd, '-p', $msg{partition} if defined $msg{partition};
	my @h = @{ $msg{headers} // [] };
	while (my ($name, $value) = splice(@h, 0, 2))
	{
		push @cmd, '-H', "$name=$value";
	}
	push @cmd, @{ $msg{extra} // [] };
	# A file named on the command line is one message, whatever it holds.
	my $tmp = File::Temp->new;
	binmode $tmp;
	print $tmp $msg{payload};
	close $tmp;
	push @cmd, $tmp->filename;
	my ($in, $out, $err) = ('', '', '');
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \$in, '>', \$out, '2>', \$err,
			IPC::Run::timeout($msg{timeout} // 30));
	};
	$last_err = $@ ? "$@ $err" : $err;
	return ($ok && $err !~ /Delivery failed/) ? 1 : 0;
}

# kcat_read($bootstrap, $topic, %opts): every message of $topic from the
# beginning to the current end of each partition (kcat -C -e -J). Returns a
# list of hashes, ordered by partition then offset:
#   { topic, partition, offset, key (undef if none), payload (undef if
#     none), headers => { name => value } (the last value of a repeated
#     name), header_list => [ [name, value], ... ] (in order), ts }
# Strings come back as the bytes Kafka holds (not decoded from UTF-8).
# Options: timeout (30 s; dies when kcat does not finish), partition
# (read only that one), extra (array ref of more kcat arguments). Dies when
# kcat fails.
sub kcat_read
{
	my ($bootstrap, $topic, %opts) = @_;
	my @cmd = ('kcat', '-C', '-b', $bootstrap, '-t', $topic, '-o', 'beginning',
		'-e', '-J', '-q');
	push @cmd, '-p', $opts{partition} if defined $opts{partition};
	push @cmd, @{ $opts{extra} // [] };
	my ($in, $out, $err) = ('', '', '');
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \$in, '>', \$out, '2>', \$err,
			IPC::Run::timeout($opts{timeout} // 30));
	};
	croak "kcat -C on $topic failed: " . ($@ || $err) unless $ok;
	# Not ->utf8: kcat writes the bytes it has, escaping only quotes,
	# backslashes and control characters, so each byte becomes one
	# character of a byte string.
	my $json = JSON::PP->new;
	my @msgs;
	for my $line (split /\n/, $out)
	{
		next if $line eq '';
		my $m = $json->decode($line);
		my @hl;
		my @flat = @{ $m->{headers} // [] };
		while (my ($n, $v) = splice(@flat, 0, 2))
		{
			push @hl, [ $n, $v ];
		}
		push @msgs,
		  {
			topic => $m->{topic},
			partition => $m->{partition},
			offset => $m->{offset},
			key => $m->{key},
			payload => $m->{payload},
			ts => $m->{ts},
			header_list => \@hl,
			headers => { map { @$_ } @hl },
		  };
	}
	return sort { $a->{partition} <=> $b->{partition} || $a->{offset} <=> $b->{offset} } @msgs;
}

# kcat_leaders($bootstrap, $topic, %opts): the topic's partitions as a hash
# ref partition => leader broker id (kcat -L -J). Asking for the metadata of
# an unknown topic creates it in the mock cluster (with 4 partitions, see
# test/kafka/mock_cluster.c). Options: timeout (30 s).
sub kcat_leaders
{
	my ($bootstrap, $topic, %opts) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $ok = eval {
		IPC::Run::run([ 'kcat', '-L', '-J', '-b', $bootstrap, '-t', $topic ],
			'<', \$in, '>', \$out, '2>', \$err,
			IPC::Run::timeout($opts{timeout} // 30));
	};
	croak "kcat -L on $topic failed: " . ($@ || $err) unless $ok;
	my ($t) = grep { $_->{topic} eq $topic } @{ JSON::PP->new->decode($out)->{topics} };
	croak "kcat -L: no metadata for $topic" unless $t;
	return { map { $_->{partition} => $_->{leader} } @{ $t->{partitions} // [] } };
}

# kcat_wait_count($bootstrap, $topic, $n, $timeout): polls (kcat_read every
# 200 ms) until the topic holds at least $n messages or $timeout seconds
# (30) passed. Returns the messages of the last read: the caller compares
# their count with $n.
sub kcat_wait_count
{
	my ($bootstrap, $topic, $n, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	my @msgs;
	while (1)
	{
		@msgs = eval { kcat_read($bootstrap, $topic, timeout => 10) };
		return @msgs if @msgs >= $n || time > $deadline;
		usleep(200_000);
	}
}

package EventbusKafka::Mock;

use strict;
use warnings;
use Carp;

# Returns the bootstrap servers (host:port,host:port,...).
sub bootstrap
{
	return $_[0]->{bootstrap};
}

# Returns the path of the mock's log (its stderr).
sub log_file
{
	return $_[0]->{log};
}

# Returns the last lines of the mock's log, for error messages.
sub _log_tail
{
	my ($self) = @_;
	open(my $fh, '<', $self->{log}) or return '';
	my @lines = <$fh>;
	close $fh;
	return join('', grep { defined } @lines[ -10 .. -1 ]);
}

# Waits for the next line of the mock's stdout and returns it (without the
# newline); dies after the timeout or when the mock exited.
sub _line
{
	my ($self, $what) = @_;
	$self->{timer}->start($self->{timeout});
	while ($self->{out} !~ /\n/)
	{
		croak "eb_kafka_mock: no answer to $what within $self->{timeout} s; log: " . $self->_log_tail
		  if $self->{timer}->is_expired;
		croak "eb_kafka_mock exited before answering $what; log: " . $self->_log_tail
		  unless $self->{h}->pumpable;
		$self->{h}->pump_nb;
		Time::HiRes::usleep(10_000) if $self->{out} !~ /\n/;
	}
	$self->{out} =~ s/^([^\n]*)\n//;
	return $1;
}

# Sends one command and returns its answer line ("ok" or "error <text>").
sub answer
{
	my ($self, $command) = @_;
	croak 'eb_kafka_mock is stopped' unless $self->{h};
	$self->{in} .= "$command\n";
	return $self->_line("\"$command\"");
}

# Sends one command (see test/kafka/mock_cluster.c); dies unless it
# answers ok.
sub cmd
{
	my ($self, $command) = @_;
	my $a = $self->answer($command);
	croak "eb_kafka_mock: \"$command\" failed: $a" unless $a eq 'ok';
	return 1;
}

# Stops the mock (quit, else kill) and waits for it; returns its exit
# status (0 when it exited cleanly, -1 when it had to be killed). Idempotent.
sub stop
{
	my ($self) = @_;
	my $h = delete $self->{h} or return 0;
	$self->{in} .= "quit\n";
	my $ok = eval {
		$h->finish(IPC::Run::timeout(10));
		1;
	};
	unless ($ok)
	{
		$h->kill_kill(grace => 2);
		return -1;
	}
	return _exit_code($h);
}

# The mock's exit status: its exit code, or minus the signal that ended it.
sub _exit_code
{
	my ($h) = @_;
	my $st = $h->full_result(0);
	return ($st & 127) ? -($st & 127) : $st >> 8;
}

# Sends the mock a signal (e.g. 'TERM') and waits for it to exit; returns
# its exit status as stop does.
sub signal_stop
{
	my ($self, $sig) = @_;
	my $h = delete $self->{h} or return 0;
	$h->signal($sig);
	my $ok = eval { $h->finish(IPC::Run::timeout(10)); 1 };
	unless ($ok)
	{
		$h->kill_kill(grace => 2);
		return -1;
	}
	return _exit_code($h);
}

# Stops the mock when the object goes away.
sub DESTROY
{
	my ($self) = @_;
	local ($@, $?);
	$self->stop if $self->{h};
	return;
}

1;

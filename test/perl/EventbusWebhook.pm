# The webhook test server of the TAP suite (docs/testing.md, "The webhook
# test server"): test/webhook/server.py, a local HTTP receiver that records
# every request, verifies Standard Webhooks signatures and injects faults
# on demand. No PostgreSQL here: the relay tests combine it with their own
# clusters.
#
#   my $why = webhook_server_missing();  plan skip_all => $why if $why;
#   my $srv = start_webhook_server(secrets => ['whsec_...'], log => "$dir/hook.jsonl");
#   my $url = $srv->url('/hooks/orders');
#   $srv->control({ rule => { status => 429, retry_after => 1, count => 3 } });
#   $srv->control({ reset => JSON::PP::true });
#   my @r = $srv->requests;               # hashes, as in $srv->log_file
#   my @r = $srv->wait_requests(100, 30); # until 100 are recorded
#   $srv->stop;
package EventbusWebhook;

use strict;
use warnings;
use Carp;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use File::Temp;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64 decode_base64);

our @EXPORT = qw(webhook_server_missing webhook_server_script
  start_webhook_server webhook_sign);

# webhook_sign($secret, $id, $timestamp, $body): the Standard Webhooks
# signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>", keyed with the
# base64 after "whsec_" of $secret; $body is bytes. For tests that sign
# requests themselves, or check what the relay sent.
sub webhook_sign
{
	my ($secret, $id, $ts, $body) = @_;
	(my $key = $secret) =~ s/^whsec_//;
	return 'v1,' . encode_base64(hmac_sha256("$id.$ts.$body", decode_base64($key)), '');
}

# Returns the path of test/webhook/server.py.
sub webhook_server_script
{
	return File::Spec->rel2abs(dirname(__FILE__) . '/../webhook/server.py');
}

# Returns the python3 to run the server with ($EB_PYTHON, else the first
# python3 on the PATH), or undef.
sub _python
{
	return $ENV{EB_PYTHON} if $ENV{EB_PYTHON};
	my ($dir) = grep { -x "$_/python3" } File::Spec->path;
	return $dir ? "$dir/python3" : undef;
}

# Returns why the server cannot run (no python3, no server.py), or undef
# when it can; for plan skip_all.
sub webhook_server_missing
{
	return 'python3 not installed (needed by test/webhook/server.py)'
	  unless _python();
	my $script = webhook_server_script();
	return "$script not found" unless -f $script;
	return undef;
}

# Starts a server; returns an EventbusWebhook::Server object (port, url,
# control, requests, wait_requests, log_file, stop). Options: secrets (array ref
# of whsec_... strings; none: signatures are not checked), log (the
# JSON-lines file; default: a temporary one), tolerance (300 s),
# accept_unsigned (0), port (0: an ephemeral one), timeout (30 s for the
# start). Dies when the server does not start.
sub start_webhook_server
{
	my %opts = @_;
	my $why = webhook_server_missing();
	croak "start_webhook_server: $why" if $why;
	my $self = bless { out => '', err => '', in => '' },
	  'EventbusWebhook::Server';
	unless (defined $opts{log})
	{
		$self->{tmp} = File::Temp->newdir;
		$opts{log} = "$self->{tmp}/webhook.jsonl";
	}
	$self->{log} = $opts{log};
	my @cmd = (_python(), webhook_server_script(),
		'--port' => $opts{port} // 0,
		'--log' => $opts{log},
		'--tolerance' => $opts{tolerance} // 300);
	push @cmd, '--secret', $_ for @{ $opts{secrets} // [] };
	push @cmd, '--accept-unsigned' if $opts{accept_unsigned};
	my $timer = IPC::Run::timer($opts{timeout} // 30);
	$self->{h} = IPC::Run::start(\@cmd, '<', \$self->{in}, '>', \$self->{out},
		'2>', \$self->{err});
	$timer->start;
	while ($self->{out} !~ /\n/)
	{
		if ($timer->is_expired || !$self->{h}->pumpable)
		{
			my $err = $self->{err};
			$self->stop;
			croak "webhook server did not start: stdout \"$self->{out}\", stderr: $err";
		}
		$self->{h}->pump_nb;
		usleep(10_000);
	}
	croak "webhook server printed \"$self->{out}\", not \"listening <port>\""
	  unless $self->{out} =~ /^listening (\d+)\n/;
	$self->{port} = $1;
	$self->{http} = HTTP::Tiny->new(timeout => 10, keep_alive => 0);
	return $self;
}

package EventbusWebhook::Server;

use strict;
use warnings;
use Carp;
use JSON::PP;
use Time::HiRes qw(time usleep);

# Returns the port the server listens on (127.0.0.1).
sub port
{
	return $_[0]->{port};
}

# Returns the URL of a path on the server (default "/").
sub url
{
	my ($self, $path) = @_;
	$path //= '/';
	$path = "/$path" unless $path =~ m{^/};
	return "http://127.0.0.1:$self->{port}$path";
}

# Returns the path of the JSON-lines log.
sub log_file
{
	return $_[0]->{log};
}

# Sends one request to the server's own API; returns the decoded answer.
# Dies on anything but 200.
sub _api
{
	my ($self, $method, $path, $doc) = @_;
	croak 'the webhook server is stopped' unless $self->{h};
	my %req;
	if (defined $doc)
	{
		$req{content} = JSON::PP->new->utf8->canonical->encode($doc);
		$req{headers} = { 'content-type' => 'application/json' };
	}
	my $r = $self->{http}->request($method, $self->url($path), \%req);
	croak "webhook server: $method $path: $r->{status} $r->{content}"
	  unless $r->{status} == 200;
	return JSON::PP->new->utf8->decode($r->{content});
}

# Sends a control command (a hash ref, see docs/testing.md: reset, clear,
# rule, rules, accept_unsigned, secrets, tolerance); returns the server's
# state (rules with their remaining counts, accept_unsigned, secrets,
# tolerance, requests, seq). Dies when the server refuses it.
sub control
{
	my ($self, $cmd) = @_;
	return $self->_api('POST', '/_control', $cmd // {});
}

# Returns the recorded requests as a list of hashes (seq, time, method,
# path, query, headers (lower-case names), body, events ([{id, type,
# source}]), verified (true, false, or undef without secrets),
# verify_error, rule, delay, answer (status, close or reset), status).
# Option: since => seq (only those after it).
sub requests
{
	my ($self, %opts) = @_;
	my $since = $opts{since} // 0;
	return @{ $self->_api('GET', "/_requests?since=$since") };
}

# Polls (every 100 ms) until at least $n requests are recorded or $timeout
# seconds (30) passed; returns the requests of the last look: the caller
# compares their count with $n.
sub wait_requests
{
	my ($self, $n, $timeout) = @_;
	my $deadline = time + ($timeout // 30);
	# The count from the state, cheap; the list once at the end.
	while ($self->control({})->{requests} < $n && time <= $deadline)
	{
		usleep(100_000);
	}
	return $self->requests;
}

# Stops the server (SIGTERM, else kill) and waits for it. Idempotent.
sub stop
{
	my ($self) = @_;
	my $h = delete $self->{h} or return 0;
	$h->signal('TERM');
	my $ok = eval { $h->finish(IPC::Run::timeout(10)); 1 };
	$h->kill_kill(grace => 2) unless $ok;
	return $ok ? 0 : -1;
}

# Stops the server when the object goes away.
sub DESTROY
{
	my ($self) = @_;
	local ($@, $?);
	$self->stop if $self->{h};
	return;
}

1;

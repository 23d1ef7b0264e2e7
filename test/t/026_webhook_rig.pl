# The webhook test server (test/webhook/server.py through
# test/perl/EventbusWebhook.pm) against itself, before the HTTP relay uses
# it: the Perl signer gives the Standard Webhooks test vector, the server
# accepts what it signs with either of two secrets and refuses a wrong one,
# faults set by control apply and reset, requests() and the log file record
# what was sent. No PostgreSQL here; test/webhook/test_server.py covers
# each fault mode in detail.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWebhook;
use File::Temp;
use HTTP::Tiny;
use JSON::PP;
use Test::More;

my $why = webhook_server_missing();
plan skip_all => $why if $why;

is(webhook_sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek',
		1614265330, '{"test": 2432232314}'),
	'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
	'webhook_sign gives the Standard Webhooks test vector');

my $sa = 'whsec_' . 'c2VjcmV0LWEtZm9yLXRoZS13ZWJob29rLXRlc3Q=';
my $sb = 'whsec_' . 'c2VjcmV0LWItZm9yLXRoZS13ZWJob29rLXRlc3Q=';
my $x = 'whsec_' . 'bm90LWEtc2VjcmV0LW9mLXRoZS1zZXJ2ZXI=';
my $dir = File::Temp->newdir;
my $srv = start_webhook_server(secrets => [ $sa, $sb ], log => "$dir/hook.jsonl");
like($srv->port, qr/^\d+$/, 'the server reports its port');
is($srv->url('/hooks/x'), 'http://127.0.0.1:' . $srv->port . '/hooks/x', 'url');

my $http = HTTP::Tiny->new(timeout => 10);

# post($id, %opts): POSTs one signed binary-mode CloudEvent; returns the
# HTTP::Tiny response. opts: secrets (array ref), type, path, timeout.
sub post
{
	my ($id, %o) = @_;
	my $body = qq({"id":"$id"});
	my $ts = time;
	my $h = HTTP::Tiny->new(timeout => $o{timeout} // 10);
	return $h->post(
		$srv->url($o{path} // '/hook'),
		{
			content => $body,
			headers => {
				'content-type' => 'application/json',
				'ce-id' => $id,
				'ce-type' => $o{type} // 'orders.created',
				'ce-source' => '/eventbus/rig',
				'ce-specversion' => '1.0',
				'webhook-id' => $id,
				'webhook-timestamp' => $ts,
				'webhook-signature' =>
				  join(' ', map { webhook_sign($_, $id, $ts, $body) } @{ $o{secrets} // [$sa] }),
			}
		});
}

is(post('e1')->{status}, 200, 'signed with the first secret: 200');
is(post('e2', secrets => [$sb])->{status}, 200, 'signed with the second secret: 200');
is(post('e3', secrets => [ $x, $sb ])->{status}, 200, 'two signatures, one good: 200');
is(post('e4', secrets => [$x])->{status}, 401, 'a wrong secret: 401');

my $state = $srv->control({ rule => { status => 429, retry_after => 2, count => 1 } });
is($state->{rules}[0]{remaining}, 1, 'control returns the rule with its remaining count');
my $r = post('e5');
is($r->{status}, 429, 'the 429 rule applies');
is($r->{headers}{'retry-after'}, '2', '... with Retry-After');
is(post('e6')->{status}, 200, '... once');

$srv->control({ rule => { ce_type => 'bad.*', status => 400, body => 'no' } });
$r = post('e7', type => 'bad.one');
is("$r->{status} $r->{content}", '400 no', 'a rule by ce-type: 400 with its body');
is(post('e8')->{status}, 200, '... not for other types');

$srv->control({ rule => { delay => 3, count => 1 } });
$r = post('e9', timeout => 1);
is($r->{status}, 599, 'a hang past the client timeout: the client gives up');

$srv->control({ rule => { close => JSON::PP::true, count => 1 } });
$r = post('e10');
is($r->{status}, 599, 'close: no answer');

$srv->control({ reset => JSON::PP::true });
is(post('e11', type => 'bad.one')->{status}, 200, 'reset: back to 200');

my @req = $srv->wait_requests(11, 10);
is_deeply([ map { $_->{headers}{'ce-id'} } @req ], [ map { "e$_" } 1 .. 11 ],
	'requests() has every request in order');
is_deeply([ map { $_->{status} // $_->{answer} } @req ],
	[ 200, 200, 200, 401, 429, 200, 400, 200, 200, 'close', 200 ],
	'... with the answer each got');
is_deeply([ map { $_->{verified} ? 1 : 0 } @req ], [ 1, 1, 1, 0, (1) x 7 ],
	'... and whether its signature verified');
is($req[0]{body}, '{"id":"e1"}', '... and its body');
is(scalar(@{ [ $srv->requests(since => $req[9]{seq}) ] }), 1, 'requests(since => seq)');

open(my $fh, '<', $srv->log_file) or die "open log: $!";
my @lines = map { JSON::PP->new->utf8->decode($_) } <$fh>;
close $fh;
is_deeply([ map { $_->{seq} } @lines ], [ map { $_->{seq} } @req ], 'the log file has the same requests');

is($srv->stop, 0, 'the server stops cleanly on SIGTERM');
done_testing();

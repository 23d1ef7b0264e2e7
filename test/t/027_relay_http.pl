# Relays to HTTP (sink 'http') against the webhook test server
# (test/perl/EventbusWebhook.pm): every event arrives once as a signed
# CloudEvents request (binary mode) with the event's headers, the server's
# extra header, both signatures while a secret rotates, at the URL of the
# path template; 10,000 events through 500s, 429s with Retry-After, hangs
# past the timeout, closed connections and 400s: every event but the 400
# ones answered 2xx, in commit order per key, the 400 ones dead letters with
# the status and body, Retry-After honoured (seconds; an HTTP date in a
# case of its own), redrive delivers them; a crash
# (pg_ctl stop -m immediate) during delivery loses no committed event and
# keeps the order per key of the last copies; structured and batch modes;
# a slow endpoint holds up neither publishing nor another relay, nor a fast
# shutdown; an event's headers cannot reframe or reroute the request; a
# relay process survives the empty round after a batch of 1000 and its
# memory does not grow with what it sends. Duplicates are counted and
# reported with note, not failed. A batch sent again with other events
# gets another webhook-id (its size and a hash of its events).
# Time bounds are liveness bounds, not speed claims.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../perl";
use EventbusWebhook;
use File::Temp;
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $why = webhook_server_missing();
plan skip_all => $why if $why;

my $t_start = time;
my $sa = 'whsec_' . 'c2VjcmV0LWEtZm9yLXRoZS13ZWJob29rLXRlc3Q=';    # the previous secret
my $sb = 'whsec_' . 'c2VjcmV0LWItZm9yLXRoZS13ZWJob29rLXRlc3Q=';    # the new one
my $dir = File::Temp->newdir;
my $srv = start_webhook_server(secrets => [$sa], log => "$dir/hook.jsonl");
my $base = $srv->url('/hooks');
my $json = JSON::PP->new->utf8->canonical;

my $node = PostgreSQL::Test::Cluster->new('relay_http');
$node->init;
$node->append_conf(
	'postgresql.conf', qq(
shared_preload_libraries = 'eventbus'
max_worker_processes = 24
eventbus.tick_interval = '50ms'
));
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_for
{
	my ($query, $what) = @_;
	ok($node->poll_query_until('postgres', $query), $what);
}

# The event id of a ce-id ("<instance>:<id>"), or undef.
sub eid
{
	my ($ce) = @_;
	return defined $ce && $ce =~ /:(\d+)$/ ? $1 : undef;
}

# Whether a record is a 2xx the relay saw: a hang past the relay's timeout
# is recorded with its status before the wait, but the relay gave up.
sub got2xx
{
	my ($r, $timeout_s) = @_;
	return defined $r->{status} && $r->{status} >= 200 && $r->{status} < 300
	  && ($r->{delay} // 0) < $timeout_s;
}

# Polls the server until every id of $want (hash ref of event ids) has a
# 2xx on a path matching $re, or $timeout seconds; returns the records on
# such paths since $since.
sub wait_delivered
{
	my ($want, $re, $since, $timeout, $timeout_s) = @_;
	my $deadline = time + $timeout;
	my @r;
	while (1)
	{
		@r = grep { $_->{path} =~ $re } $srv->requests(since => $since);
		my %got = map { (eid($_->{headers}{'ce-id'}) // '') => 1 } grep { got2xx($_, $timeout_s) } @r;
		last if !grep { !$got{$_} } keys %$want;
		last if time > $deadline;
		select(undef, undef, undef, 0.5);
	}
	return @r;
}

# Counts, per event id, the 2xx answers among records.
sub count2xx
{
	my ($timeout_s, @r) = @_;
	my %n;
	for (grep { got2xx($_, $timeout_s) } @r)
	{
		$n{ eid($_->{headers}{'ce-id'}) }++;
	}
	return %n;
}

sql(qq{
SET log_statement = 'none';
CREATE EXTENSION eventbus;
CREATE SERVER hooks FOREIGN DATA WRAPPER eventbus_http
    OPTIONS (url '$base', timeout_ms '2000', concurrency '8', "header.X-Team" 'billing');
CREATE USER MAPPING FOR CURRENT_USER SERVER hooks OPTIONS (secret '$sb', previous_secret '$sa');
SELECT eventbus.create_relay('basic', array['basic.#'], sink => 'http', server => 'hooks',
                             topic => '/{1}/{2}', options => '{"source": "/shop/basic"}',
                             backoff_initial => '200 ms', backoff_max => '2 s');
});
wait_for(q{SELECT state = 'running' FROM eventbus.relays WHERE name = 'basic'}, 'the relay process runs');

# ---- 1. each event once, signed with both secrets, its headers, the path template ----
my $tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
my $seq0 = $srv->control({})->{seq};
sql(qq{
SELECT eventbus.publish('basic.eu.created', jsonb_build_object('n', i), key => 'k' || (i % 4),
                        headers => '{"traceparent": "$tp", "tenant": "acme"}')
  FROM generate_series(1, 20) i;
SELECT eventbus.publish('basic.us.created', jsonb_build_object('n', i),
                        headers => '{"traceparent": "$tp"}')
  FROM generate_series(1, 10) i;
});
my %basic = map { $_ => 1 } split /\n/, sql(q{SELECT id FROM eventbus.events WHERE topic LIKE 'basic.%'});
is(scalar keys %basic, 30, '30 events published');
my @b = wait_delivered(\%basic, qr{^/hooks/basic/}, $seq0, 60, 2);
my %n = count2xx(2, @b);
is(scalar(grep { $basic{$_} } keys %n), 30, 'every event arrives with a 2xx, by its ce-id');
is(scalar(grep { $_->{status} != 200 } @b), 0, '... none answered anything else (401: a bad signature)');
is(scalar(grep { $n{$_} > 1 } keys %n), 0, '... each once');
is(scalar(grep { !$_->{verified} } @b), 0, 'the server verifies each signature');
my ($bad_sig, $bad_ce, $bad_path, $bad_hdr, $bad_key) = (0, 0, 0, 0, 0);
my $ce_prefix;
my %bkey;
for my $r (@b)
{
	my $h = $r->{headers};
	my @sigs = split / /, $h->{'webhook-signature'} // '';
	my ($id, $ts) = ($h->{'webhook-id'} // '', $h->{'webhook-timestamp'} // '');
	$bad_sig++ unless @sigs == 2
	  && $sigs[0] eq webhook_sign($sb, $id, $ts, $r->{body})
	  && $sigs[1] eq webhook_sign($sa, $id, $ts, $r->{body})
	  && $id eq ($h->{'ce-id'} // '-');
	($ce_prefix) = ($h->{'ce-id'} // '') =~ /^(.*:)\d+$/;
	my $body = eval { decode_json($r->{body}) };
	$bad_ce++ unless ($h->{'ce-specversion'} // '') eq '1.0'
	  && ($h->{'ce-type'} // '') =~ /^basic\.(eu|us)\.created$/
	  && ($h->{'ce-source'} // '') eq '/shop/basic'
	  && ($h->{'ce-time'} // '') =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/
	  && ($h->{'content-type'} // '') eq 'application/json'
	  && ref $body eq 'HASH' && defined $body->{n};
	my ($region) = ($h->{'ce-type'} // '') =~ /^basic\.(\w+)\./;
	$bad_path++ unless $r->{path} eq "/hooks/basic/" . ($region // '?');
	$bad_hdr++ unless ($h->{traceparent} // '') eq $tp && ($h->{'x-team'} // '') eq 'billing';
	if (($region // '') eq 'eu')
	{
		$bad_key++ unless ($h->{'ce-partitionkey'} // '') =~ /^k\d$/ && ($h->{tenant} // '') eq 'acme';
		push @{ $bkey{ $h->{'ce-partitionkey'} // '' } }, eid($h->{'ce-id'});
	}
	else
	{
		$bad_key++ if defined $h->{'ce-partitionkey'};
	}
}
is($bad_sig, 0, 'webhook-id = ce-id; webhook-signature has v1 signatures of the new and the previous secret, both right');
is($bad_ce, 0, 'ce-specversion, ce-type (the topic), ce-source, ce-time, content-type application/json, the payload as body');
is($bad_path, 0, 'the path template /{1}/{2} gives /hooks/basic/<region>');
is($bad_hdr, 0, 'the event\'s traceparent and the server\'s header.X-Team pass');
is($bad_key, 0, 'keyed events carry ce-partitionkey and their own headers; unkeyed ones none');
my $ord = 1;
for my $k (keys %bkey)
{
	my @i = @{ $bkey{$k} };
	$ord = 0 if grep { $i[$_] <= $i[ $_ - 1 ] } 1 .. $#i;
}
ok($ord, 'per key, in commit order');

# An event's headers that would reframe or reroute the request, or clash
# with the relay's own, are not sent (a Content-Length of 2 truncated the
# body, the rest read as the next request; Host was replaced; a second
# webhook-id or ce-type was sent).
my $seqh = $srv->control({})->{seq};
my $hid = sql(q{SELECT eventbus.publish('basic.eu.hdr', '{"a": 1}', key => 'h',
  headers => '{"Content-Length": "2", "host": "evil.example", "webhook-id": "x", "ce-type": "spoof",
               "transfer-encoding": "chunked", "connection": "close", "x-kept": "yes"}')});
my @hr = wait_delivered({ $hid => 1 }, qr{^/hooks/basic/eu$}, $seqh, 60, 2);
my ($hreq) = grep { (eid($_->{headers}{'ce-id'}) // 0) == $hid } @hr;
ok($hreq && $hreq->{status} == 200 && $hreq->{verified} && $hreq->{body} eq '{"a": 1}',
	'an event with Content-Length, Host, Transfer-Encoding, webhook-id, ce-type headers: delivered whole, signature verified')
  or diag(explain($hreq));
my %hh = %{ $hreq ? $hreq->{headers} : {} };
ok(($hh{host} // '') eq '127.0.0.1:' . $srv->port && ($hh{'content-length'} // '') eq '8'
	  && !defined $hh{'transfer-encoding'} && ($hh{'webhook-id'} // '') eq ($hh{'ce-id'} // '-')
	  && ($hh{'ce-type'} // '') eq 'basic.eu.hdr' && ($hh{'x-kept'} // '') eq 'yes',
	'... none of those event headers was sent; its other headers were')
  or diag(explain(\%hh));
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'basic'},
	'the relay has nothing pending once the server answered');
$ce_prefix //= '';

# ---- 2. 10,000 events through faults ----
# The relay is paused while the events are published, so that the ce-ids
# of the 400 ones are known before it sends anything.
sql(q{
SELECT eventbus.create_relay('faults', array['orders.#'], sink => 'http', server => 'hooks',
                             options => '{"timeout_ms": 500, "concurrency": 8}',
                             backoff_initial => '200 ms', backoff_max => '2 s');
SELECT eventbus.pause('faults');
CREATE TABLE published (id bigint PRIMARY KEY, key text);
});
wait_for(q{SELECT state = 'paused' FROM eventbus.relays WHERE name = 'faults'}, 'the faults relay is paused');
for my $chunk (0 .. 9)
{
	sql(qq{
INSERT INTO published
SELECT eventbus.publish('orders.' || CASE WHEN i % 5 = 0 THEN 'unkeyed' ELSE 'keyed' END,
                        jsonb_build_object('i', i),
                        key => CASE WHEN i % 5 = 0 THEN NULL ELSE 'k' || ((i / 5) % 50) END),
       CASE WHEN i % 5 = 0 THEN NULL ELSE 'k' || ((i / 5) % 50) END
  FROM generate_series($chunk * 1000 + 1, $chunk * 1000 + 1000) i;
});
}
my %pub = map { my ($i, $k) = split /\|/; ($i => $k) } split /\n/, sql(q{SELECT id, key FROM published});
is(scalar keys %pub, 10000, '10,000 events published');
my @ids = sort { $a <=> $b } keys %pub;
# 25 ids to refuse with a 400, spread over the stream, keyed and unkeyed.
my @bad = map { $ids[ 37 + $_ * 397 ] } 0 .. 24;
my %bad = map { $_ => 1 } @bad;
# Two more answered 302 (a redirect is not followed: a dead letter too).
my @redir = map { $ids[ 5000 + $_ * 1111 ] } 0 .. 1;
$bad{$_} = 1 for @redir;
$srv->control({ reset => JSON::PP::true });
my $seq1 = $srv->control({})->{seq};
$srv->control({
	rules => [
		(map { { path => '/hooks', ce_id => "$ce_prefix$_", status => 400, body => "bad order $_", name => 'r400' } } @bad),
		(map { { path => '/hooks', ce_id => "$ce_prefix$_", status => 302, headers => { Location => '/elsewhere' }, name => 'r302' } } @redir),
		{ path => '/hooks', status => 408, count => 10, name => 'r408' },
		{ path => '/hooks', status => 500, count => 300, name => 'r500' },
		{ path => '/hooks', status => 429, retry_after => 1, count => 20, name => 'r429' },
		{ path => '/hooks', delay => 1.5, count => 10, name => 'hang' },
		{ path => '/hooks', close => JSON::PP::true, count => 20, name => 'close' },
		{ path => '/hooks', status => 503, count => 100, name => 'r503' },
	] });
my $t2 = time;
sql(q{SELECT eventbus.resume('faults')});
# Waiting on the relay's stats first: fetching 10,000 records is not cheap.
$node->poll_query_until('postgres', q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'faults'});
my %good = map { $_ => 1 } grep { !$bad{$_} } @ids;
my @f = wait_delivered(\%good, qr{^/hooks$}, $seq1, 600, 0.5);
my %fn = count2xx(0.5, @f);
note(sprintf('10,000 events through faults: %.1f s, %d requests', time - $t2, scalar @f));
my %rules;
$rules{ $_->{rule} // 'none' }++ for @f;
note('answers by rule: ' . join(', ', map { "$_ $rules{$_}" } sort keys %rules));
is(scalar(grep { !$fn{$_} } keys %good), 0, 'every event not answered 400 arrives with a 2xx');
is(scalar(grep { $bad{$_} } keys %fn), 0, '... and none of the 400 ones');
is(scalar(grep { !exists $pub{$_} } keys %fn), 0, '... and nothing else');
cmp_ok($rules{$_} // 0, '>=', { r408 => 10, r500 => 300, r429 => 20, hang => 10, close => 20, r503 => 100 }->{$_}, "the $_ rule was used up")
  for qw(r408 r500 r429 hang close r503);
is($rules{r400}, 25, 'each event answered 400 was sent once: a dead letter at once, not retried');
is($rules{r302}, 2, '... as was each answered 302');
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'faults'},
	'the faults relay has nothing pending');
my %dead = map { my ($i, $e) = split /\|/, $_, 2; ($i => $e) }
  split /\n/, sql(q{SELECT event_id, replace(last_error, E'\n', ' ') FROM eventbus.dead_letters WHERE subscription = 'faults'});
is_deeply([ sort { $a <=> $b } keys %dead ], [ sort { $a <=> $b } keys %bad ], 'the dead letters are exactly the 400 (and 302) ones');
is(scalar(grep { $dead{$_} !~ /HTTP 400/ || $dead{$_} !~ /bad order $_/ } @bad), 0,
	'... each 400 with "HTTP 400" and the body of the answer in last_error');
is(scalar(grep { $dead{$_} !~ /HTTP 302/ } @redir), 0, '... each 302 with "HTTP 302"');
my $dups = grep { $fn{$_} > 1 } keys %fn;
note("faults: $dups events answered 2xx more than once");

# Per key, the first 2xx of each event in commit order.
my (%first, %order);
for my $r (sort { $a->{seq} <=> $b->{seq} } grep { got2xx($_, 0.5) } @f)
{
	my $id = eid($r->{headers}{'ce-id'});
	next if $first{$id}++;
	push @{ $order{ $pub{$id} } }, $id if defined $pub{$id} && $pub{$id} ne '';
}
my @out_of_order;
for my $k (sort keys %order)
{
	my @i = @{ $order{$k} };
	push @out_of_order, "$k: $i[$_ - 1] before $i[$_]" for grep { $i[$_] <= $i[ $_ - 1 ] } 1 .. $#i;
}
is(scalar keys %order, 50, 'keys k0..k49 all delivered');
is(scalar @out_of_order, 0, 'per key, the first 2xx of each event come in commit order')
  or diag(join("\n", @out_of_order[ 0 .. ($#out_of_order > 9 ? 9 : $#out_of_order) ]));

# A 429 with Retry-After: 1 is not asked again sooner.
my %by_id;
push @{ $by_id{ eid($_->{headers}{'ce-id'}) } }, $_ for sort { $a->{seq} <=> $b->{seq} } @f;
my @gaps;
for my $r (grep { ($_->{rule} // '') eq 'r429' } @f)
{
	my ($next) = grep { $_->{seq} > $r->{seq} } @{ $by_id{ eid($r->{headers}{'ce-id'}) } };
	push @gaps, $next ? $next->{time} - $r->{time} : -1;
}
my @short = grep { $_ < 0.9 } @gaps;
is(scalar @short, 0, 'after a 429 with Retry-After: 1, the same event comes again no sooner than ~1 s')
  or diag('gaps: ' . join(' ', map { sprintf '%.2f', $_ } @gaps));
note('gaps after 429: min ' . sprintf('%.2f', (sort { $a <=> $b } @gaps)[0]) . ' s');

# Redrive, the server fixed.
$srv->control({ reset => JSON::PP::true });
my $seq2 = $srv->control({})->{seq};
sql(q{SELECT eventbus.redrive('faults')});
my @rd = wait_delivered(\%bad, qr{^/hooks$}, $seq2, 120, 0.5);
my %rn = count2xx(0.5, @rd);
is(scalar(grep { $rn{$_} } keys %bad), 27, 'redrive delivers the 27 dead letters once the server is fixed');
wait_for(q{SELECT count(*) = 0 FROM eventbus.dead_letters WHERE subscription = 'faults'}, '... and none is left');
my %all = count2xx(0.5, @f, @rd);
$dups = grep { $all{$_} > 1 } keys %all;
note("faults: duplicates (same ce-id answered 2xx twice or more): $dups of 10,000");

# ---- 3. a crash during delivery ----
sql(q{
SELECT eventbus.create_relay('crashy', array['crash.#'], sink => 'http', server => 'hooks', topic => '/crash',
                             backoff_initial => '200 ms', backoff_max => '2 s');
CREATE TABLE committed (id bigint PRIMARY KEY, key text);
});
wait_for(q{SELECT state = 'running' FROM eventbus.relays WHERE name = 'crashy'}, 'the crash relay runs');
$srv->control({ rule => { path => '/hooks/crash', delay => 0.05, name => 'slow' } });
my $seq3 = $srv->control({})->{seq};
# A publisher of 20 events per transaction (keys c0..c9 and unkeyed),
# each recorded in the same transaction, until the crash ends it.
my ($pin, $pout, $perr) = ('', '', '');
my $pub = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$pin, '>', \$pout, '2>', \$perr);
$pin .= q{
DO $$
BEGIN
  FOR t IN 1 .. 400 LOOP
    INSERT INTO committed
    SELECT eventbus.publish('crash.' || t, jsonb_build_object('t', t, 'i', i),
                            key => CASE WHEN i % 4 = 0 THEN NULL ELSE 'c' || (i % 10) END),
           CASE WHEN i % 4 = 0 THEN NULL ELSE 'c' || (i % 10) END
      FROM generate_series(1, 20) i;
    COMMIT;
    PERFORM pg_sleep(0.01);
  END LOOP;
END
$$;
};
$pub->pump_nb;
# Crash once some of the stream has arrived, with more in flight.
my $d0 = time;
while (time - $d0 < 60)
{
	last if $srv->control({})->{requests} - $seq3 >= 300;
	select(undef, undef, undef, 0.2);
}
cmp_ok($srv->control({})->{requests} - $seq3, '>=', 300, 'the relay was delivering when the crash came');
$node->stop('immediate');
eval { $pub->finish; };
$node->start;
my %committed = map { my ($i, $k) = split /\|/; ($i => $k) } split /\n/, sql(q{SELECT id, key FROM committed});
note(scalar(keys %committed) . ' events committed before the crash');
cmp_ok(scalar keys %committed, '>', 300, 'events were committed before the crash');
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'crashy'},
	'after the restart, the relay finishes');
my @c = wait_delivered(\%committed, qr{^/hooks/crash$}, $seq3, 120, 2);
my %cn = count2xx(2, @c);
is(scalar(grep { !$cn{$_} } keys %committed), 0, 'every committed event arrived');
is(scalar(grep { !exists $committed{$_} } keys %cn), 0, '... and none that did not commit');
my $cdups = grep { $cn{$_} > 1 } keys %cn;
note("crash: duplicates (same ce-id answered 2xx twice or more): $cdups of " . scalar(keys %committed));
my (%last, %corder);
for my $r (sort { $a->{seq} <=> $b->{seq} } grep { got2xx($_, 2) } @c)
{
	my $id = eid($r->{headers}{'ce-id'});
	$last{$id} = $r->{seq};
}
for my $id (sort { $last{$a} <=> $last{$b} } keys %last)
{
	push @{ $corder{ $committed{$id} } }, $id if defined $committed{$id} && $committed{$id} ne '';
}
my @cbad;
for my $k (sort keys %corder)
{
	my @i = @{ $corder{$k} };
	push @cbad, "$k: $i[$_ - 1] before $i[$_]" for grep { $i[$_] <= $i[ $_ - 1 ] } 1 .. $#i;
}
is(scalar @cbad, 0, 'per key, the last copies come in commit order')
  or diag(join("\n", @cbad[ 0 .. ($#cbad > 9 ? 9 : $#cbad) ]));
$srv->control({ reset => JSON::PP::true });

# ---- 4. structured and batch modes ----
sql(q{
SELECT eventbus.create_relay('structured', array['fmt.#'], sink => 'http', server => 'hooks', topic => '/structured',
                             options => '{"mode": "structured", "source": "/fmt"}');
SELECT eventbus.create_relay('batched', array['fmt.#'], sink => 'http', server => 'hooks', topic => '/batch',
                             options => '{"mode": "batch", "batch_size": 10, "source": "/fmt"}');
});
wait_for(q{SELECT count(*) = 2 FROM eventbus.relays WHERE name IN ('structured', 'batched') AND state = 'running'},
	'the structured and batch relays run');
my $seq4 = $srv->control({})->{seq};
sql(qq{
SELECT eventbus.publish('fmt.created', jsonb_build_object('i', i, 's', 'x'), key => CASE WHEN i % 2 = 0 THEN 'f' || (i % 3) END,
                        headers => '{"traceparent": "$tp"}')
  FROM generate_series(1, 25) i;
});
my %fmt = map { $_ => 1 } split /\n/, sql(q{SELECT id FROM eventbus.events WHERE topic = 'fmt.created'});
my %fpay = map { my ($i, $p) = split /\|/, $_, 2; ($i => decode_json($p)) }
  split /\n/, sql(q{SELECT id, payload FROM eventbus.events WHERE topic = 'fmt.created'});
my @s = wait_delivered(\%fmt, qr{^/hooks/structured$}, $seq4, 60, 2);
my ($sbad, %sn) = (0);
for my $r (@s)
{
	my $h = $r->{headers};
	my $ce = eval { decode_json($r->{body}) };
	my $id = ref $ce eq 'HASH' ? eid($ce->{id}) : undef;
	$sn{$id}++ if defined $id;
	$sbad++ unless $r->{verified} && ($h->{'content-type'} // '') eq 'application/cloudevents+json'
	  && defined $id && $fmt{$id}
	  && ($ce->{specversion} // '') eq '1.0' && ($ce->{type} // '') eq 'fmt.created'
	  && ($ce->{source} // '') eq '/fmt' && defined $ce->{time}
	  && $json->encode($ce->{data} // {}) eq $json->encode($fpay{$id})
	  && ($h->{'webhook-id'} // '') eq $ce->{id}
	  && !defined $h->{'ce-id'};
}
is(scalar(grep { $sn{$_} } keys %fmt), 25, 'structured: every event arrives');
is($sbad, 0, '... each body a CloudEvent (specversion, id, type, source, time, data = the payload), content-type application/cloudevents+json, no ce- headers, signature verified');
my @bt;
my $bdl = time + 60;
my %bn;
while (1)
{
	@bt = grep { $_->{path} eq '/hooks/batch' } $srv->requests(since => $seq4);
	%bn = ();
	for my $r (@bt)
	{
		my $arr = eval { decode_json($r->{body}) };
		$bn{ eid($_->{id}) }++ for ref $arr eq 'ARRAY' ? grep { ref $_ eq 'HASH' } @$arr : ();
	}
	last if !grep { !$bn{$_} } keys %fmt or time > $bdl;
	select(undef, undef, undef, 0.5);
}
# A batch's webhook-id: its event's id when alone, else
# batch-<first id>-<size>-<hash of its events>.
sub webhook_id_ok
{
	my ($wid, $arr) = @_;
	my $first = $arr->[0]{id} // '';
	return ($wid // '') eq $first if @$arr == 1;
	my $n = scalar @$arr;
	return ($wid // '') =~ /^batch-\Q$first\E-$n-[0-9a-f]{16}$/;
}
my ($bbad, $bsize) = (0, 0);
for my $r (@bt)
{
	my $h = $r->{headers};
	my $arr = eval { decode_json($r->{body}) };
	$bbad++, next unless ref $arr eq 'ARRAY' && @$arr;
	$bsize = @$arr if @$arr > $bsize;
	$bbad++ unless $r->{verified} && ($h->{'content-type'} // '') eq 'application/cloudevents-batch+json'
	  && webhook_id_ok($h->{'webhook-id'}, $arr)
	  && @$arr <= 10
	  && !grep {
		  my $id = eid($_->{id});
		  !(defined $id && $fmt{$id} && ($_->{type} // '') eq 'fmt.created' && ($_->{source} // '') eq '/fmt'
			  && ($_->{specversion} // '') eq '1.0'
			  && $json->encode($_->{data} // {}) eq $json->encode($fpay{$id}))
	  } @$arr;
}
is(scalar(grep { $bn{$_} } keys %fmt), 25, 'batch: every event arrives');
is($bbad, 0, '... in JSON arrays of at most 10 CloudEvents with data = the payload, content-type application/cloudevents-batch+json, webhook-id batch-<first id>-<size>-<hash of its events>, signature verified');
note("batch: " . scalar(@bt) . " requests, largest $bsize");
cmp_ok(scalar @bt, '<', 25, '... fewer requests than events');

# A batch sent again after a failure for now must not reuse a webhook-id
# for other events: receivers dedupe by webhook-id. A batch [11, 12]
# (event 13, of the key of event 1, waits for the failed first batch)
# answered too late is sent again as [11, 12, 13]: its webhook-id names its
# size and a hash of its events, so it is another message.
sql(q{
SELECT eventbus.create_relay('batchdup', array['bd.#'], sink => 'http', server => 'hooks', topic => '/bd',
                             options => '{"mode": "batch", "batch_size": 10, "timeout_ms": 500}',
                             backoff_initial => '200 ms', backoff_max => '1 s');
SELECT eventbus.pause('batchdup');
});
wait_for(q{SELECT state = 'paused' FROM eventbus.relays WHERE name = 'batchdup'}, 'relay batchdup is paused');
my @bdids = split /\n/, sql(q{SELECT eventbus.publish('bd.x', jsonb_build_object('i', i),
                                 key => CASE i WHEN 1 THEN 'a' WHEN 13 THEN 'a' WHEN 11 THEN 'b' END)
                               FROM generate_series(1, 25) i});
$srv->control({ rules => [ { path => '/hooks/bd', status => 500, count => 1 }, { path => '/hooks/bd', delay => 1, count => 1 } ] });
my $seqbd = $srv->control({})->{seq};
sql(q{SELECT eventbus.resume('batchdup')});
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'batchdup'},
	'relay batchdup delivers its 25 events through a 500 and a batch answered too late');
my %bdset;
for my $r (grep { $_->{path} eq '/hooks/bd' } $srv->requests(since => $seqbd))
{
	$bdset{ $r->{headers}{'webhook-id'} }{ join(',', map { eid($_->{id}) } @{ $r->{events} }) }++;
}
my @reused = grep { keys %{ $bdset{$_} } > 1 } sort keys %bdset;
note('webhook-id reused for other events: ' . join('; ', map { "$_: [" . join('] [', sort keys %{ $bdset{$_} }) . ']' } @reused))
  if @reused;
is(scalar @reused, 0, 'a webhook-id always names the same events');

# A Retry-After given as an HTTP date (RFC 9110) is honoured like seconds.
sql(q{SELECT eventbus.create_relay('rdate', array['rdate.#'], sink => 'http', server => 'hooks', topic => '/rdate',
                                   backoff_initial => '100 ms', backoff_max => '200 ms')});
my $rdate_at = int(time) + 6;
my $rdate = POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime($rdate_at));
$srv->control({ rule => { path => '/hooks/rdate', status => 503, retry_after => $rdate, count => 1, name => 'rdate' } });
my $seqrd = $srv->control({})->{seq};
my $rdid = sql(q{SELECT eventbus.publish('rdate.x', '{}')});
my @rd = wait_delivered({ $rdid => 1 }, qr{^/hooks/rdate$}, $seqrd, 30, 10);
is(join(' ', map { $_->{status} } @rd), '503 200', 'relay rdate: a 503 with Retry-After as an HTTP date, then the event delivered');
# Times are the test server's clock, the same machine's (seconds since the
# epoch): the 503 comes before the date, its retry not before it (the
# relay's backoff alone would retry after 100 ms).
cmp_ok(@rd == 2 ? $rd[0]{time} : 1e12, '<', $rdate_at - 1, '... the 503 came well before that date');
cmp_ok(@rd == 2 ? $rd[1]{time} : -1, '>=', $rdate_at - 0.5, '... and the event was not asked again before it');

# The content mode changed (binary -> structured) while the relay sends a
# batch again: the batch's messages were made for the old mode. The relay
# process ends with an error, the next one takes the batch back and sends
# it in the new mode (without the fix, the server crashed: a structured
# request from a message with no CloudEvent body).
sql(q{SELECT eventbus.create_relay('modesw', array['modesw.#'], sink => 'http', server => 'hooks', topic => '/modesw',
                                   backoff_initial => '300 ms', backoff_max => '300 ms')});
$srv->control({ rule => { path => '/hooks/modesw', status => 503, count => 3, name => 'msw' } });
my $seqms = $srv->control({})->{seq};
my $msid = sql(q{SELECT eventbus.publish('modesw.x', '{"n": 1}', key => 'm')});
my $t_ms = time;
until (grep { $_->{path} eq '/hooks/modesw' } $srv->requests(since => $seqms))
{
	last if time - $t_ms > 30;
	select(undef, undef, undef, 0.05);
}
sql(q{SELECT eventbus.alter_relay('modesw', options => '{"mode": "structured"}')});
my @ms = grep { got2xx($_, 10) } wait_delivered({ $msid => 1 }, qr{^/hooks/modesw$}, $seqms, 60, 10);
is(scalar @ms, 1, 'relay modesw: the event is delivered after its mode changed while it was sent again');
is($ms[0] && $ms[0]{headers}{'content-type'}, 'application/cloudevents+json', '... in the new mode (structured)');
like(slurp_file($node->logfile), qr/relay "modesw" changed its content mode while sending a batch again/,
	'... after its relay process stopped on the change (the log says so)');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is up');

# An answer's body that is no UTF-8 (here "é" and two Latin-1 bytes) is
# stored as valid text: each byte that starts no character becomes '?'.
sql(q{SELECT eventbus.create_relay('enc', array['enc.#'], sink => 'http', server => 'hooks', topic => '/enc')});
$srv->control({ rule => { path => '/hooks/enc', status => 400, body_hex => 'c3a920e9e9', count => 1, name => 'enc' } });
sql(q{SELECT eventbus.publish('enc.x', '{}')});
wait_for(q{SELECT count(*) = 1 FROM eventbus.dead_letters WHERE subscription = 'enc'},
	'relay enc: the 400 makes a dead letter');
is(sql(q{SELECT last_error FROM eventbus.dead_letters WHERE subscription = 'enc'}), 'HTTP 400: é ??',
	'... whose error is valid text: the answer\'s invalid bytes as ?');

# ---- 5. a slow endpoint holds up neither publishing nor another relay ----
sql(q{
SELECT eventbus.create_relay('slow', array['slow.#'], sink => 'http', server => 'hooks', topic => '/slow',
                             options => '{"timeout_ms": 20000}');
SELECT eventbus.create_relay('fast', array['fast.#'], sink => 'http', server => 'hooks', topic => '/fast');
});
wait_for(q{SELECT count(*) = 2 FROM eventbus.relays WHERE name IN ('slow', 'fast') AND state = 'running'},
	'relays slow and fast run');
$srv->control({ rule => { path => '/hooks/slow', delay => 5, name => 'slow5' } });
my $seq5 = $srv->control({})->{seq};
my $tp0 = time;
sql(q{SELECT eventbus.publish('slow.x', jsonb_build_object('i', i), key => 's' || (i % 3)) FROM generate_series(1, 100) i});
sql(q{SELECT eventbus.publish('slow.x', jsonb_build_object('i', i)) FROM generate_series(1, 100) i});
my $pubtime = time - $tp0;
note(sprintf('publishing 200 events to the slow relay: %.2f s', $pubtime));
cmp_ok($pubtime, '<', 5, 'publishing is not held up by the slow endpoint');
# Wait until relay slow has requests hanging, then publish to fast.
my $w0 = time;
while (time - $w0 < 30)
{
	last if grep { $_->{path} eq '/hooks/slow' } $srv->requests(since => $seq5);
	select(undef, undef, undef, 0.2);
}
my $tf0 = time;
sql(q{SELECT eventbus.publish('fast.x', jsonb_build_object('i', i)) FROM generate_series(1, 20) i});
my %fast = map { $_ => 1 } split /\n/, sql(q{SELECT id FROM eventbus.events WHERE topic = 'fast.x'});
my @fr = wait_delivered(\%fast, qr{^/hooks/fast$}, $seq5, 60, 2);
my %frn = count2xx(2, @fr);
my $fasttime = time - $tf0;
is(scalar(grep { $frn{$_} } keys %fast), 20, 'relay fast delivers its 20 events meanwhile');
note(sprintf('relay fast: 20 events in %.2f s while relay slow waits 5 s per request', $fasttime));
cmp_ok($fasttime, '<', 5, '... sooner than one request of relay slow takes');
is(sql(q{SELECT backlog + in_flight > 0 FROM eventbus.subscription_stats WHERE subscription = 'slow'}), 't',
	'relay slow is still behind');
my $ts0 = time;
$node->stop('fast');
my $stoptime = time - $ts0;
note(sprintf('pg_ctl stop -m fast with requests hanging: %.2f s', $stoptime));
cmp_ok($stoptime, '<', 30, 'pg_ctl stop -m fast is not held up by the hanging requests');

# ---- 6. a new relay process's first batch of 1000, then an empty poll ----
# The round after a big batch polls nothing: the sink must not read the
# messages of the round before (freed; a segfault once they were unmapped).
$node->start;
$srv->control({ reset => JSON::PP::true });
sql(q{SELECT eventbus.drop_relay('slow')});
sql(q{SELECT eventbus.create_relay('big', array['big.#'], sink => 'http', server => 'hooks', topic => '/big')});
wait_for(q{SELECT state = 'running' FROM eventbus.relays WHERE name = 'big'}, 'relay big runs');
my $bigpid = sql(q{SELECT pid FROM eventbus.relays WHERE name = 'big'});
my $seq6 = $srv->control({})->{seq};
sql(q{SELECT count(eventbus.publish('big.x', jsonb_build_object('i', i))) FROM generate_series(1, 1000) i});
my %big = map { $_ => 1 } split /\n/, sql(q{SELECT id FROM eventbus.events WHERE topic = 'big.x'});
my %bgn = count2xx(2, wait_delivered(\%big, qr{^/hooks/big$}, $seq6, 60, 2));
is(scalar(grep { $bgn{$_} } keys %big), 1000, 'relay big delivers 1000 events published in one transaction');
wait_for(q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'big'}, '... and records them');
sleep 3;    # a few empty rounds
is(sql(q{SELECT pid FROM eventbus.relays WHERE name = 'big'}), $bigpid, '... and its process lives on through the empty rounds after');

# Memory: the relay sends outside transactions; what a request needs must
# not stay in TopMemoryContext (it did: about 1.6 times each body).
# TopMemoryContext's total (bytes) of a process, from pg_log_backend_memory_contexts.
sub top_total
{
	my ($pid) = @_;
	my $off = -s $node->logfile;
	sql(qq{SELECT pg_log_backend_memory_contexts($pid)});
	for (1 .. 100)
	{
		my $log = substr(slurp_file($node->logfile), $off);
		return $1 if $log =~ /\[$pid\].*TopMemoryContext: (\d+) total/;
		select(undef, undef, undef, 0.1);
	}
	return -1;
}
my @tops;
for my $round (1 .. 2)
{
	sql(q{SELECT count(eventbus.publish('big.y', jsonb_build_object('i', i, 'pad', repeat('x', 4000)))) FROM generate_series(1, 1000) i});
	$node->poll_query_until('postgres', q{SELECT backlog + in_flight = 0 FROM eventbus.subscription_stats WHERE subscription = 'big'});
	push @tops, top_total($bigpid);
}
note("relay big: TopMemoryContext $tops[0] bytes after 1000 events of 4 kB, $tops[1] after 1000 more");
cmp_ok($tops[1] - $tops[0], '<', 1_000_000, 'the relay process\'s TopMemoryContext does not grow with what it sends')
  if $tops[0] > 0 && $tops[1] > 0;
ok($tops[0] > 0 && $tops[1] > 0, '... measured by pg_log_backend_memory_contexts');
$node->stop('fast');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process of the server died of a signal');
unlike($log, qr/TRAP:/, 'no assertion failed');

note(sprintf('run time: %.0f s', time - $t_start));
$srv->stop;
done_testing();

"""The health monitor's pure logic: what an uplink being out changes in the state, the
in/out hysteresis, ICMP packets, the rounds of probes and the published figures.

Nothing here touches the kernel or sleeps: times are plain numbers passed as
``now``, probes are replaced by a fake that the test answers, ICMP packets are
built by hand with struct, and the published file lives in tmp_path.
"""
import copy
import json
import os
import struct
import time

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _monitor

# ---------------------------------------------------------------- a split_access state as the role saves it

UPLINKS = [
    {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'table': 101, 'mark': 1, 'weight': 1},
    {'name': 'isp2', 'interface': 'ppp0', 'table': 102, 'mark': 2, 'weight': 2},
    {'name': 'isp3', 'interface': 'wan3', 'gateway': '203.0.113.1', 'table': 103, 'mark': 3, 'weight': 1},
]
ISP1, ISP2, ISP3 = UPLINKS


def split_state(balance='per_connection', **monitor):
    return {
        'role': 'split_access', 'version': 1, 'uplinks': copy.deepcopy(UPLINKS), 'lan_interfaces': ['lan0'],
        'balance': balance,
        'monitor': dict({'enabled': True, 'targets': {'isp1': ['203.0.113.10'], 'isp3': ['203.0.113.10']},
                         'probe': 'icmp', 'interval': 0.5, 'down': 3, 'up': 3}, **monitor),
        'route_table': {'tables': [
            {'table': '101', 'routes': [{'dest': 'default', 'dev': 'wan1', 'gateway': '198.51.100.1'}],
             'purge': True, 'family': 'ipv4'},
            {'table': '102', 'routes': [{'dest': 'default', 'dev': 'ppp0'}], 'purge': True, 'family': 'ipv4'},
            {'table': '103', 'routes': [{'dest': 'default', 'dev': 'wan3', 'gateway': '203.0.113.1'}],
             'purge': True, 'family': 'ipv4'},
            {'table': 'main', 'routes': [{'dest': 'default', 'nexthops': [
                {'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 1},
                {'gateway': '203.0.113.1', 'dev': 'wan3', 'weight': 1}]}], 'family': 'ipv4'}]},
        'nftables': {'table': 'inet netpolicy_split_access', 'file': '/etc/netpolicy/routing/split_access.nft'},
    }


def override(rule):
    return ('flush chain inet netpolicy_split_access balance\n'
            'add rule inet netpolicy_split_access balance %s\n' % rule)


def main_routes(state):
    return [table['routes'] for table in state['route_table']['tables'] if table['table'] == 'main'][0]


# ---------------------------------------------------------------- balance_rule / main_default

@pytest.mark.parametrize('uplinks, balance, expected', [
    (UPLINKS, 'per_connection',
     'numgen inc mod 4 vmap { 0 : jump uplink_1, 1 : jump uplink_2, 2 : jump uplink_2, 3 : jump uplink_3 }'),
    ([ISP3, ISP1], 'per_connection', 'numgen inc mod 2 vmap { 0 : jump uplink_3, 1 : jump uplink_1 }'),
    ([ISP2], 'per_connection', 'numgen inc mod 2 vmap { 0 : jump uplink_2, 1 : jump uplink_2 }'),
    ([ISP1], 'per_connection', 'jump uplink_1'),
    ([dict(ISP1, weight=None)], 'per_connection', 'jump uplink_1'),     # no weight: 1
    (UPLINKS, 'failover', 'jump uplink_1'),
    ([ISP2, ISP3], 'failover', 'jump uplink_2'),
    (UPLINKS, 'multipath', None),                                        # the main table balances
    ([], 'per_connection', None),
    ([], 'failover', None),
    ([], 'multipath', None),
])
def test_balance_rule(uplinks, balance, expected):
    assert _monitor.balance_rule(uplinks, balance) == expected


@pytest.mark.parametrize('uplinks, balance, expected', [
    (UPLINKS, 'per_connection', {'dest': 'default', 'nexthops': [
        {'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 1},
        {'gateway': '203.0.113.1', 'dev': 'wan3', 'weight': 1}]}),
    ([dict(ISP1, weight=3), ISP3], 'multipath', {'dest': 'default', 'nexthops': [
        {'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 3},
        {'gateway': '203.0.113.1', 'dev': 'wan3', 'weight': 1}]}),
    ([ISP2, ISP3], 'multipath', {'dest': 'default', 'gateway': '203.0.113.1', 'dev': 'wan3'}),
    ([ISP3], 'per_connection', {'dest': 'default', 'gateway': '203.0.113.1', 'dev': 'wan3'}),
    ([ISP2], 'per_connection', {'dest': 'default', 'dev': 'ppp0'}),          # point-to-point: no gateway
    (UPLINKS, 'failover', {'dest': 'default', 'gateway': '198.51.100.1', 'dev': 'wan1'}),
    ([ISP2, ISP1], 'failover', {'dest': 'default', 'dev': 'ppp0'}),          # the first, even without gateway
    ([], 'per_connection', None),
    ([], 'failover', None),
])
def test_main_default(uplinks, balance, expected):
    assert _monitor.main_default(uplinks, balance) == expected


# ---------------------------------------------------------------- effective_state

@pytest.mark.parametrize('out', [set(), {'nonesuch'}, {'isp1', 'isp2', 'isp3'}, {'isp1', 'isp2', 'isp3', 'x'}])
def test_effective_state_unchanged(out):
    """Nothing out: the same object; every uplink out: the last configuration is kept."""
    state = split_state()
    assert _monitor.effective_state(state, out) is state
    assert state == split_state()


@pytest.mark.parametrize('balance, out, rule, route', [
    ('per_connection', {'isp1'},
     'numgen inc mod 3 vmap { 0 : jump uplink_2, 1 : jump uplink_2, 2 : jump uplink_3 }',
     {'dest': 'default', 'gateway': '203.0.113.1', 'dev': 'wan3'}),
    ('per_connection', {'isp2'}, 'numgen inc mod 2 vmap { 0 : jump uplink_1, 1 : jump uplink_3 }',
     {'dest': 'default', 'nexthops': [{'gateway': '198.51.100.1', 'dev': 'wan1', 'weight': 1},
                                      {'gateway': '203.0.113.1', 'dev': 'wan3', 'weight': 1}]}),
    ('per_connection', {'isp1', 'isp3'}, 'numgen inc mod 2 vmap { 0 : jump uplink_2, 1 : jump uplink_2 }',
     {'dest': 'default', 'dev': 'ppp0'}),
    ('failover', {'isp1'}, 'jump uplink_2', {'dest': 'default', 'dev': 'ppp0'}),
    ('failover', {'isp1', 'isp2'}, 'jump uplink_3', {'dest': 'default', 'gateway': '203.0.113.1', 'dev': 'wan3'}),
    ('multipath', {'isp3'}, None, {'dest': 'default', 'gateway': '198.51.100.1', 'dev': 'wan1'}),
])
def test_effective_state_takes_out(balance, out, rule, route):
    state = split_state(balance)
    before = copy.deepcopy(state)
    effective = _monitor.effective_state(state, out)
    assert state == before                                   # the input is not mutated
    if rule is None:
        assert 'override' not in effective['nftables']
    else:
        assert effective['nftables']['override'] == override(rule)
    assert main_routes(effective) == [route]
    # Only the balance rule and the main table change: the uplinks' tables, marks and rules stay.
    effective['nftables'].pop('override', None)
    [table for table in effective['route_table']['tables'] if table['table'] == 'main'][0]['routes'] = \
        main_routes(before)
    assert effective == before


def test_effective_state_without_nftables_or_main_table():
    state = {'role': 'split_access', 'version': 1, 'uplinks': copy.deepcopy(UPLINKS), 'balance': 'per_connection',
             'route_table': {'tables': [{'table': '101', 'routes': [{'dest': 'default', 'dev': 'wan1'}]}]}}
    before = copy.deepcopy(state)
    assert _monitor.effective_state(state, {'isp1'}) == before
    assert state == before
    bare = {'role': 'split_access', 'version': 1, 'uplinks': copy.deepcopy(UPLINKS), 'balance': 'failover'}
    assert _monitor.effective_state(bare, {'isp1'}) == bare
    assert _monitor.effective_state({'role': 'split_access', 'version': 1}, {'isp1'}) == \
        {'role': 'split_access', 'version': 1}


# ---------------------------------------------------------------- flush_conntrack

def test_flush_conntrack(monkeypatch):
    calls = []
    monkeypatch.setattr(_monitor, 'find_tool', lambda name: '/usr/sbin/' + name)
    for rc in (0, 1):   # 1: there was nothing to delete
        monkeypatch.setattr(_monitor, 'run_tool', lambda argv, rc=rc: calls.append(argv) or (rc, '', 'x'))
        assert _monitor.flush_conntrack(2, 0xff) == 'conntrack -D --mark 0x2/0xff'
    assert calls == [['/usr/sbin/conntrack', '-D', '--mark', '2/255']] * 2


def test_flush_conntrack_errors(monkeypatch):
    monkeypatch.setattr(_monitor, 'find_tool', lambda name: '/usr/sbin/' + name)
    monkeypatch.setattr(_monitor, 'run_tool', lambda argv: (2, '', 'Operation not permitted\n'))
    with pytest.raises(OSError, match=r'^/usr/sbin/conntrack -D --mark 1/255 failed: Operation not permitted$'):
        _monitor.flush_conntrack(1, 0xff)
    monkeypatch.setattr(_monitor, 'find_tool', lambda name: None)
    with pytest.raises(OSError, match='conntrack not found'):
        _monitor.flush_conntrack(1, 0xff)


# ---------------------------------------------------------------- UplinkHealth: hysteresis

def health(down=3, up=3, probed=True, now=0.0):
    return _monitor.UplinkHealth('isp1', 'wan1', down, up, now, probed=probed)


def rounds(uplink, results, start=1.0):
    """Record a round per item of ``results`` (True: good) one second apart; the changes."""
    return [uplink.record(good, 0.01 if good else None, start + index) for index, good in enumerate(results)]


def test_health_starts_in():
    uplink = health(now=5.0)
    assert (uplink.out, uplink.since) == (False, 5.0)
    assert uplink.figures() == {'state': 'in', 'since': 5.0, 'rounds': 0, 'loss': None, 'rtt_ms': None}


def test_health_a_good_round_resets_the_failures():
    uplink = health()
    assert rounds(uplink, [False, False, True, False, False, True, False, False]) == [None] * 8
    assert not uplink.out


def test_health_out_after_down_failures_and_in_after_up_good_rounds():
    uplink = health()
    assert rounds(uplink, [False, False, False], start=1.0) == [None, None, 'out']
    assert (uplink.out, uplink.since) == (True, 3.0)
    # Back after `up` good rounds in a row, a failure in between starting again.
    assert rounds(uplink, [True, True, False, True, True, True], start=4.0) == [None] * 5 + ['in']
    assert (uplink.out, uplink.since) == (False, 9.0)
    assert rounds(uplink, [False, False], start=10.0) == [None, None]   # the count starts afresh


@pytest.mark.parametrize('down, up', [(1, 1), (2, 5), (5, 2)])
def test_health_other_thresholds(down, up):
    uplink = health(down=down, up=up)
    assert rounds(uplink, [False] * down) == [None] * (down - 1) + ['out']
    assert rounds(uplink, [True] * up) == [None] * (up - 1) + ['in']


def test_health_link_down_is_out_at_once_and_rounds_wait_for_the_link():
    uplink = health()
    assert rounds(uplink, [False, False]) == [None, None]
    assert uplink.link(False, 7.0) == 'out'
    assert (uplink.out, uplink.since) == (True, 7.0)
    assert uplink.link(False, 7.5) is None                   # still down
    assert rounds(uplink, [True] * 5, start=8.0) == [None] * 5   # ignored while the link is down
    assert uplink.out
    # Up again: a probed uplink needs `up` good rounds counted from now on.
    assert uplink.link(True, 13.0) is None
    assert uplink.out
    assert rounds(uplink, [True, True, True], start=14.0) == [None, None, 'in']
    assert (uplink.out, uplink.since) == (False, 16.0)


def test_health_link_down_when_already_out():
    uplink = health()
    rounds(uplink, [False] * 3)
    assert uplink.link(False, 10.0) is None
    assert uplink.since == 3.0                               # out since the probes said so
    assert uplink.link(True, 11.0) is None
    assert rounds(uplink, [True] * 3, start=12.0) == [None, None, 'in']


def test_health_unprobed_uplink_follows_its_link():
    uplink = health(probed=False)
    assert uplink.link(True, 1.0) is None                    # up while in: nothing
    assert uplink.link(False, 2.0) == 'out'
    assert uplink.link(True, 3.0) == 'in'
    assert (uplink.out, uplink.since) == (False, 3.0)


def test_health_link_event_without_change_keeps_the_count():
    uplink = health()
    assert rounds(uplink, [False, False]) == [None, None]
    assert uplink.link(True, 3.0) is None                    # an RTM_NEWLINK of an interface that stays up
    assert rounds(uplink, [False], start=4.0) == ['out']


def test_health_figures_over_the_last_rounds():
    uplink = health(now=0.0)
    uplink.record(True, 0.010, 1.0)
    uplink.record(False, None, 2.0)
    uplink.record(True, 0.030, 3.0)
    uplink.record(False, None, 4.0)
    assert uplink.figures() == {'state': 'in', 'since': 0.0, 'rounds': 4, 'loss': 0.5, 'rtt_ms': 20.0}
    uplink.record(False, None, 5.0)
    uplink.record(False, None, 6.0)                           # third failure in a row: out
    assert uplink.figures() == {'state': 'out', 'since': 6.0, 'rounds': 6, 'loss': 0.667, 'rtt_ms': 20.0}


def test_health_figures_keep_history_rounds():
    uplink = health()
    for index in range(_monitor.HISTORY):
        uplink.record(False, None, float(index))
    for index in range(_monitor.HISTORY // 4):
        uplink.record(True, 0.002, 100.0 + index)
    figures = uplink.figures()
    assert figures['rounds'] == _monitor.HISTORY
    assert figures['loss'] == 0.75
    assert figures['rtt_ms'] == 2.0
    assert len(uplink.history) == _monitor.HISTORY
    uplink = health()
    for index in range(3 * _monitor.HISTORY):
        uplink.record(True, 0.001 * (index % 3 + 1), float(index))
    assert uplink.figures()['loss'] == 0.0
    assert uplink.figures()['rounds'] == _monitor.HISTORY
    assert uplink.figures()['rtt_ms'] == pytest.approx(2.0, abs=0.05)
    uplink.record(True, 1 / 3.0, 1000.0)                     # figures are rounded
    assert uplink.figures()['rtt_ms'] == round(uplink.figures()['rtt_ms'], 2)


# ---------------------------------------------------------------- ICMP

def ipv4_header(ihl=5, protocol=1):
    header = struct.pack('!BBHHHBBH4s4s', 0x40 | ihl, 0, 20, 0, 0, 64, protocol, 0,
                         bytes([203, 0, 113, 10]), bytes([198, 51, 100, 2]))
    return header + b'\x01\x01\x01\x00' * (ihl - 5)          # options: no-ops and the end


def icmp(kind, ident, seq, payload=b'netpolicy-routing', code=0):
    header = struct.pack('!BBHHH', kind, code, 0, ident, seq)
    return struct.pack('!BBHHH', kind, code, _monitor.checksum(header + payload), ident, seq) + payload


@pytest.mark.parametrize('data, expected', [
    (b'', 0xffff),
    (b'\x00\x01\xf2\x03\xf4\xf5\xf6\xf7', 0x220d),            # the example of RFC 1071
    (b'\x01', 0xfeff),                                      # odd length: padded with a zero byte
    (b'\x01\x00', 0xfeff),
    (b'\xff\xff', 0x0000),
    (b'\xff\xff\x00\x01', 0xfffe),                          # the carry comes back in
])
def test_checksum(data, expected):
    assert _monitor.checksum(data) == expected


@pytest.mark.parametrize('ident, seq', [(0, 0), (0x1234, 1), (0xffff, 0xffff), (0x0100, 65535)])
def test_echo_request(ident, seq):
    packet = _monitor.echo_request(ident, seq)
    assert struct.unpack('!BBHH', packet[:2] + packet[4:8]) == (8, 0, ident, seq)
    assert packet[8:] == b'netpolicy-routing'
    assert _monitor.checksum(packet) == 0                   # a receiver verifies it
    assert packet == icmp(8, ident, seq)


@pytest.mark.parametrize('packet, expected', [
    (ipv4_header() + icmp(0, 0x1234, 7), (0x1234, 7)),
    (ipv4_header() + icmp(0, 0xffff, 0, payload=b''), (0xffff, 0)),
    (ipv4_header(ihl=6) + icmp(0, 0x0102, 65535), (0x0102, 65535)),   # header with options
    (ipv4_header(ihl=15) + icmp(0, 5, 6), (5, 6)),
    (ipv4_header() + icmp(8, 0x1234, 7), None),                       # a request is not a reply
    (ipv4_header() + icmp(3, 0x1234, 7, code=1), None),               # host unreachable
    (ipv4_header() + icmp(11, 0, 0), None),                           # time exceeded
    (ipv4_header() + icmp(0, 0x1234, 7)[:7], None),                   # truncated ICMP header
    (ipv4_header(ihl=6) + icmp(0, 1, 2)[:4], None),
    (ipv4_header(), None),
    (ipv4_header()[:19], None),                                       # truncated IPv4 header
    (b'\x45', None),
    (b'', None),
])
def test_echo_reply(packet, expected):
    assert _monitor.echo_reply(packet) == expected


def test_echo_reply_of_our_request():
    request = _monitor.echo_request(0x4242, 9)
    reply = ipv4_header() + bytes([0]) + request[1:]         # what a host answers: type 0, the rest echoed
    assert _monitor.echo_reply(reply) == (0x4242, 9)


# ---------------------------------------------------------------- Monitor with fake probes

class FakeProbe:
    """Stands in for _monitor.Probe: records the rounds started; the test sets ``answered``/``pending``."""

    def __init__(self, uplink, targets, kind, ident):
        self.uplink = uplink
        self.targets = list(targets)
        self.kind = kind
        self.ident = ident
        self.sock = None
        self.started = []
        self.pending = {}
        self.answered = None
        self.closed = False

    def start_round(self, now):
        self.started.append(now)
        self.pending = dict((seq, target) for seq, target in enumerate(self.targets))
        self.answered = None

    def answer(self, rtt, target=None):
        """An answer from ``target`` (the first one by default): the others stay pending."""
        self.answered = rtt if self.answered is None else self.answered
        target = target or self.targets[0]
        self.pending = dict((seq, other) for seq, other in self.pending.items() if other != target)

    def sockets(self):
        return [], []

    def close_round(self):
        self.pending = {}

    def close(self):
        self.closed = True
        self.close_round()


@pytest.fixture
def probes(monkeypatch):
    """The FakeProbes the Monitor makes, by uplink name."""
    made = {}

    def make(uplink, targets, kind, ident):
        made[uplink['name']] = FakeProbe(uplink, targets, kind, ident)
        return made[uplink['name']]

    monkeypatch.setattr(_monitor, 'Probe', make)
    return made


def monitor(now=100.0, balance='per_connection', **settings):
    return _monitor.Monitor(split_state(balance, **settings), now)


@pytest.mark.parametrize('interval, timeout', [
    (0.5, 0.2), (0.1, 0.04), (1, 0.4), (2.5, 1.0), (10, 1.0), (None, 0.2), (0, 0.2),
])
@pytest.mark.usefixtures('probes')
def test_monitor_timeout(interval, timeout):
    watcher = monitor(interval=interval)
    assert watcher.interval == (interval or 0.5)
    assert watcher.timeout == pytest.approx(timeout)


def test_monitor_probes_the_uplinks_with_targets(probes):
    watcher = monitor(targets={'isp1': ['203.0.113.10', '192.0.2.1'], 'isp2': ['203.0.113.10'], 'isp9': ['x']})
    assert sorted(probes) == ['isp1', 'isp2']
    assert probes['isp1'].targets == ['203.0.113.10', '192.0.2.1']
    assert probes['isp1'].uplink['interface'] == 'wan1'
    assert probes['isp1'].kind == 'icmp'
    assert probes['isp1'].ident != probes['isp2'].ident
    assert sorted(watcher.health) == ['isp1', 'isp2', 'isp3']
    assert [watcher.health[name].probed for name in ('isp1', 'isp2', 'isp3')] == [True, True, False]
    assert watcher.health['isp3'].interface == 'wan3'
    assert watcher.out() == set()
    assert sorted(watcher.figures()) == ['isp1', 'isp2', 'isp3']


@pytest.mark.parametrize('probe, kind', [('icmp', 'icmp'), (None, 'icmp'), ('tcp:443', ('tcp', 443)),
                                         ('tcp:1', ('tcp', 1))])
def test_monitor_probe_kind(probes, probe, kind):
    monitor(probe=probe)
    assert probes['isp1'].kind == kind


def test_monitor_one_target_without_a_list(probes):
    monitor(targets={'isp1': '203.0.113.10'})                  # as the role allows it
    assert probes['isp1'].targets == ['203.0.113.10']


def test_monitor_rounds(probes):
    watcher = monitor(now=100.0)
    assert watcher.deadline() == 100.0                         # the first round is due at once
    assert watcher.tick(100.0) == []
    assert probes['isp1'].started == probes['isp3'].started == [100.0]
    assert watcher.deadline() == pytest.approx(100.2)          # the round's timeout
    assert watcher.tick(100.1) == []                           # no answer yet: the round goes on
    assert probes['isp1'].started == [100.0]
    assert watcher.tick(100.2) == []                           # timed out: a failed round
    assert [health.history for health in watcher.health.values()] == [[(False, None)], [], [(False, None)]]
    assert probes['isp1'].pending == {}
    assert watcher.deadline() == pytest.approx(100.5)          # the next round
    assert watcher.tick(100.4) == []
    assert probes['isp1'].started == [100.0]
    watcher.tick(100.5)
    assert probes['isp1'].started == [100.0, 100.5]


def test_monitor_round_ends_when_every_probe_answered(probes):
    watcher = monitor(now=100.0, targets={'isp1': ['203.0.113.10', '192.0.2.1'], 'isp3': ['203.0.113.10']})
    watcher.tick(100.0)
    probes['isp1'].answer(0.01)          # one target of two is enough
    watcher.tick(100.01)
    assert watcher.deadline() == pytest.approx(100.2)          # isp3 has not answered yet
    probes['isp3'].answer(0.03)
    watcher.tick(100.03)
    assert watcher.health['isp1'].history == [(True, 0.01)]
    assert watcher.health['isp3'].history == [(True, 0.03)]
    assert watcher.deadline() == pytest.approx(100.5)          # the round is over, the next one due
    assert probes['isp1'].started == [100.0]


def test_monitor_round_with_a_probe_that_could_not_send(probes):
    """A probe without pending targets (sending failed) does not hold the round open."""
    watcher = monitor(now=100.0)
    watcher.tick(100.0)
    probes['isp1'].pending = {}
    probes['isp3'].answer(0.02)
    watcher.tick(100.02)
    assert watcher.health['isp1'].history == [(False, None)]
    assert watcher.health['isp3'].history == [(True, 0.02)]
    assert watcher.deadline() == pytest.approx(100.5)


def run_rounds(watcher, probes, count, answers, start):
    """``count`` rounds from ``start``: every interval a round, ended by ``answers`` (name -> RTT) or timeout."""
    changes = []
    for index in range(count):
        now = start + index * watcher.interval
        changes += watcher.tick(now)
        for name, rtt in answers.items():
            probes[name].answer(rtt)
        changes += watcher.tick(now + (0.01 if answers else watcher.timeout))
        changes += watcher.tick(now + watcher.timeout)
    return changes


def test_monitor_verdicts(probes):
    watcher = monitor(now=100.0)
    # isp3 answers, isp1 does not: out at the end of its third failed round.
    assert run_rounds(watcher, probes, 2, {'isp3': 0.01}, 100.0) == []
    assert watcher.tick(101.0) == []
    probes['isp3'].answer(0.01)
    assert watcher.tick(101.01) == []
    assert watcher.tick(101.2) == [('isp1', 'out')]
    assert watcher.out() == {'isp1'}
    assert watcher.health['isp1'].since == 101.2
    # isp1 answers again: back after three good rounds.
    assert run_rounds(watcher, probes, 2, {'isp1': 0.01, 'isp3': 0.01}, 101.5) == []
    assert watcher.tick(102.5) == []
    probes['isp3'].answer(0.01)
    probes['isp1'].answer(0.01)
    assert watcher.tick(102.51) == [('isp1', 'in')]
    assert watcher.out() == set()
    figures = watcher.figures()
    assert (figures['isp1']['rounds'], figures['isp1']['loss'], figures['isp1']['state']) == (6, 0.5, 'in')
    assert (figures['isp3']['rounds'], figures['isp3']['loss']) == (6, 0.0)
    assert dict(figures['isp2'], since=None) == {'state': 'in', 'since': None, 'rounds': 0, 'loss': None,
                                                 'rtt_ms': None}
    assert watcher.health['isp2'].since == 100.0


def test_monitor_both_out_together(probes):
    watcher = monitor(now=100.0, down=2)
    assert run_rounds(watcher, probes, 2, {}, 100.0) == [('isp1', 'out'), ('isp3', 'out')]
    assert watcher.out() == {'isp1', 'isp3'}


def test_monitor_rounds_every_interval(probes):
    watcher = monitor(now=100.0, interval=2)
    now = 100.0
    while now < 110.0:                                         # ticks at odd moments, quick answers
        watcher.tick(now)
        for probe in probes.values():
            if probe.pending:
                probe.answer(0.001)
        now = round(now + 0.3, 3)
    assert probes['isp1'].started == pytest.approx([100.0, 102.1, 104.2, 106.0, 108.1])
    # A round starts at the first tick at or after its time, and the next is due one interval after the last due.
    watcher = monitor(now=100.0, interval=1)
    for now in (100.0, 100.4, 101.0, 101.4, 102.05, 102.45, 103.0):
        watcher.tick(now)
    assert probes['isp1'].started == [100.0, 101.0, 102.05, 103.0]


@pytest.mark.usefixtures('probes')
def test_monitor_deadline_follows_the_round():
    watcher = monitor(now=50.0, interval=1)
    for now in (50.0, 50.4, 51.0, 51.2, 51.4, 52.0):
        watcher.tick(now)
        assert watcher.deadline() > now
        assert watcher.deadline() - now <= watcher.interval


def test_monitor_link(probes):
    watcher = monitor(now=100.0, targets={'isp1': ['203.0.113.10']})
    assert watcher.link('lan0', False, 100.0) == []
    assert watcher.link('wan1', False, 100.0) == [('isp1', 'out')]
    assert watcher.link('ppp0', False, 100.0) == [('isp2', 'out')]
    assert watcher.out() == {'isp1', 'isp2'}
    assert watcher.health['isp1'].since == 100.0
    assert watcher.link('ppp0', True, 100.0) == [('isp2', 'in')]    # not probed: back with its link
    assert watcher.link('wan1', True, 100.0) == []                  # probed: back after good rounds
    assert watcher.out() == {'isp1'}
    assert run_rounds(watcher, probes, 3, {'isp1': 0.01}, 100.0) == [('isp1', 'in')]


def test_monitor_keeps_out_what_the_previous_watch_left_out(probes):
    watcher = monitor(now=100.0, targets={'isp1': ['203.0.113.10'], 'isp3': ['203.0.113.10']})
    went_out = time.time() - 60
    # isp2 has no targets (only its link would bring it back), isp9 is no longer an uplink
    assert watcher.keep_out({'isp3': went_out, 'isp2': went_out, 'isp9': went_out}) == ['isp3']
    assert watcher.out() == {'isp3'}
    assert watcher.figures()['isp3']['state'] == 'out'
    assert watcher.figures()['isp3']['since'] == pytest.approx(went_out, abs=0.01)   # not since this start
    assert run_rounds(watcher, probes, 3, {'isp1': 0.01, 'isp3': 0.01}, 100.0) == [('isp3', 'in')]


def test_monitor_close(probes):
    watcher = monitor()
    watcher.tick(100.0)
    watcher.close()
    assert all(probe.closed for probe in probes.values())
    assert watcher.wait_on() == ([], [])


def test_monitor_after_a_late_tick_the_next_round_is_an_interval_later(probes):
    watcher = monitor(now=100.0)
    watcher.tick(100.0)
    watcher.tick(100.2)
    watcher.tick(101.7)                                      # late: the rounds of 100.5 and 101.0 were missed
    assert probes['isp1'].started == [100.0, 101.7]
    for probe in probes.values():
        probe.answer(0.01)
    watcher.tick(101.71)                                     # answered: the round is over
    assert watcher.deadline() > 101.71
    watcher.tick(101.75)
    assert probes['isp1'].started == [100.0, 101.7]


def test_monitor_without_probes_has_no_past_deadline(probes):
    watcher = monitor(now=100.0, targets={'isp1': []})
    assert probes == {}
    assert watcher.tick(100.0) == []
    for now in (100.5, 200.0):
        assert watcher.tick(now) == []
        assert watcher.deadline() is None or watcher.deadline() > now


# ---------------------------------------------------------------- the published view

FIGURES = {'isp1': {'state': 'out', 'since': 12.5, 'rounds': 4, 'loss': 0.75, 'rtt_ms': 3.1},
           'isp2': {'state': 'in', 'since': 1.0, 'rounds': 0, 'loss': None, 'rtt_ms': None}}


def test_publish_and_published(tmp_path):
    path = str(tmp_path / 'run' / 'monitor-1.json')          # a missing directory is made
    _monitor.publish(FIGURES, path)
    assert os.listdir(str(tmp_path / 'run')) == ['monitor-1.json']   # no temporary file left
    with open(path) as handle:
        document = json.load(handle)
    assert document['pid'] == os.getpid()
    assert isinstance(document['time'], float)
    assert _monitor.published(path) == FIGURES
    _monitor.publish({'isp1': FIGURES['isp1']}, path)          # replaced
    assert _monitor.published(path) == {'isp1': FIGURES['isp1']}
    _monitor.withdraw(path)
    assert not os.path.exists(path)
    assert _monitor.published(path) == {}
    _monitor.withdraw(path)                                     # already gone: fine


def test_a_stopped_watch_leaves_a_record_for_the_next_one(tmp_path):
    path = str(tmp_path / 'monitor-1.json')
    _monitor.publish(FIGURES, path, running=False)
    assert _monitor.published(path) == {}                     # apply and status: no watch runs
    assert _monitor.left_out(path) == {'isp1': 12.5}
    _monitor.publish(FIGURES, path)                           # the next watch runs
    assert _monitor.published(path) == FIGURES


def test_a_watch_that_died_leaves_a_record_too(tmp_path):
    path = tmp_path / 'monitor-1.json'
    path.write_text(json.dumps({'pid': dead_pid(), 'netns': _monitor.netns_cookie(), 'time': time.time() - 5,
                                'uplinks': FIGURES}))
    assert _monitor.published(str(path)) == {}
    assert _monitor.left_out(str(path)) == {'isp1': 12.5}


@pytest.mark.parametrize('age', [_monitor.LEFT_OUT_MAX_AGE + 1, 600, -30])
def test_an_old_record_keeps_nothing_out(tmp_path, age):
    # A watch stopped for longer than a restart takes (an `apply` may have put every uplink
    # back meanwhile), or a record from the future (the wall clock stepped): nothing known.
    path = tmp_path / 'monitor-1.json'
    path.write_text(json.dumps({'pid': None, 'netns': _monitor.netns_cookie(), 'time': time.time() - age,
                                'uplinks': FIGURES}))
    assert _monitor.left_out(str(path)) == {}


def test_no_record_of_another_namespace(tmp_path, monkeypatch):
    # A namespace made after the one that left the record may have its inode, not its cookie.
    path = str(tmp_path / 'monitor-1.json')
    _monitor.publish(FIGURES, path, running=False)
    monkeypatch.setattr(_monitor, 'netns_cookie', lambda: 12345678901)
    assert _monitor.left_out(path) == {}
    monkeypatch.setattr(_monitor, 'netns_cookie', lambda: None)   # a kernel before 5.14: no way to tell
    assert _monitor.left_out(path) == {}


@pytest.mark.parametrize('content', [
    None,
    '',
    'not json',
    '[]',
    '{"pid": null, "time": 1, "uplinks": {"isp1": {"state": "out", "since": 1.0}}}',   # an older watch's
    '{"pid": null, "netns": COOKIE, "time": 1}',
    '{"pid": null, "netns": COOKIE, "uplinks": []}',
    '{"pid": null, "netns": COOKIE, "uplinks": {"isp1": {"state": "out"}}}',
    '{"pid": null, "netns": COOKIE, "uplinks": {"isp1": {"state": "out", "since": "x"}}}',
])
def test_left_out_nothing(tmp_path, content):
    path = tmp_path / 'monitor-1.json'
    if content is not None:
        path.write_text(content.replace('COOKIE', str(_monitor.netns_cookie())))
    assert _monitor.left_out(str(path)) == {}


def test_netns_cookie():
    cookie = _monitor.netns_cookie()
    assert isinstance(cookie, int) and cookie > 0 and _monitor.netns_cookie() == cookie


def dead_pid():
    """A pid no process has: pids are below pid_max."""
    with open('/proc/sys/kernel/pid_max') as handle:
        return int(handle.read())


@pytest.mark.parametrize('content', [
    'dead',
    '',
    'not json',
    '[]',
    '{"time": 1, "uplinks": {"isp1": {}}}',
    '{"pid": "x", "uplinks": {"isp1": {}}}',
    '{"pid": 18446744073709551616, "uplinks": {"isp1": {}}}',    # too large for os.kill
    '{"pid": 0, "uplinks": {"isp1": {}}}',
])
def test_published_nothing(tmp_path, content):
    path = tmp_path / 'monitor-1.json'
    if content == 'dead':
        content = json.dumps({'pid': dead_pid(), 'time': 1.0, 'uplinks': FIGURES})
    path.write_text(content)
    assert _monitor.published(str(path)) == {}


def test_published_without_uplinks(tmp_path):
    path = tmp_path / 'monitor-1.json'
    path.write_text(json.dumps({'pid': os.getpid(), 'time': 1.0}))
    assert _monitor.published(str(path)) == {}


def test_run_path_is_per_network_namespace():
    path = _monitor.run_path()
    assert path == os.path.join(_monitor.RUN_DIR, 'monitor-%d.json' % os.stat('/proc/self/ns/net').st_ino)


@pytest.mark.usefixtures('probes')
def test_monitor_figures_give_since_on_the_wall_clock():
    # The monitor counts on time.monotonic(); status shows ``since`` as a date.
    watcher = _monitor.Monitor(split_state(), time.monotonic())
    assert abs(watcher.figures()['isp1']['since'] - time.time()) < 1.0

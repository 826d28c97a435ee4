"""The nftables backend: rendering and the scripts it runs (no kernel needed)."""
import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _nft
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import normalize
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import ADD, DELETE, REPLACE, EngineError
from ansible_collections.netpolicy.routing.plugins.module_utils._nft import NftRuleSet, render


def model(**extra):
    params = {'name': 'up', 'mask': 0xff, 'restore_on': {'prerouting': ['lan0'], 'output': True}, 'entries': [
        {'mark': 1, 'in_interface': 'wan1'},
        {'mark': 2, 'source_mac': '52:54:00:c2:a5:43', 'protocol': 'tcp', 'dport': '80',
         'exclude_source': ['192.168.1.0/24']},
        {'mark': 2, 'source': '2001:db8::/32', 'protocol': 'udp'},
    ]}
    params.update(extra)
    return normalize(params)


def rules(text, chain):
    body = text.split('chain %s {\n' % chain)[1].split('\n\t}')[0]
    return [line.strip() for line in body.splitlines()[1:]]


def test_render_marks_new_connections_and_restores_per_mark():
    text = render(model())
    assert text.startswith('table inet netpolicy_up {')
    assert 'type filter hook prerouting priority mangle;' in text
    assert 'type route hook output priority mangle;' in text
    assert rules(text, 'prerouting') == [
        'iifname { "lan0" } ct mark & 0xff == 0x1 meta mark set meta mark & 0xffffff00 | 0x1',
        'iifname { "lan0" } ct mark & 0xff == 0x2 meta mark set meta mark & 0xffffff00 | 0x2',
        'ct state new ct mark & 0xff == 0 iifname "wan1" ct mark set ct mark & 0xffffff00 | 0x1',
        'ct state new ct mark & 0xff == 0 ether saddr 52:54:00:c2:a5:43 ip saddr != { 192.168.1.0/24 } '
        'tcp dport 80 ct mark set ct mark & 0xffffff00 | 0x2',
        # The IPv4 exclusion must not keep IPv6 connections from matching.
        'ct state new ct mark & 0xff == 0 ether saddr 52:54:00:c2:a5:43 meta nfproto ipv6 '
        'tcp dport 80 ct mark set ct mark & 0xffffff00 | 0x2',
        'ct state new ct mark & 0xff == 0 ip6 saddr 2001:db8::/32 meta l4proto udp '
        'ct mark set ct mark & 0xffffff00 | 0x2',
    ]
    assert rules(text, 'output') == [
        'ct mark & 0xff == 0x1 meta mark set meta mark & 0xffffff00 | 0x1',
        'ct mark & 0xff == 0x2 meta mark set meta mark & 0xffffff00 | 0x2',
    ]


def test_render_with_another_mask_and_nothing_to_restore():
    text = render(model(mask=0x3f00, restore_on={}, entries=[
        {'mark': 0x200, 'in_interface': 'wan2', 'protocol': 'tcp', 'dport': '8000-8100'}]))
    assert rules(text, 'prerouting') == [
        'ct state new ct mark & 0x3f00 == 0 iifname "wan2" tcp dport 8000-8100 '
        'ct mark set ct mark & 0xffffc0ff | 0x200']
    assert rules(text, 'output') == []


def test_scripts_replace_the_table_in_one_transaction():
    kind = NftRuleSet('/usr/sbin/nft')
    item = {'table': 'netpolicy_up', 'text': 'table inet netpolicy_up {\n}\n'}
    script = kind.script(REPLACE, item)
    assert script == ('table inet netpolicy_up\ndelete table inet netpolicy_up\n'
                      'table inet netpolicy_up {\n}\n')
    assert kind.script(ADD, item) == script
    assert kind.script(DELETE, item) == 'delete table inet netpolicy_up\n'
    assert kind.text(DELETE, item) == "nft -f - <<'EOF'\ndelete table inet netpolicy_up\nEOF"
    assert kind.key(item) == 'netpolicy_up'


def test_script_reads_with_spaces():
    kind = NftRuleSet('/usr/sbin/nft')
    item = {'table': 'netpolicy_up', 'text': 'table inet netpolicy_up {\n\tchain output {\n\t}\n}\n'}
    assert '\t' not in kind.script(ADD, item)
    assert '    chain output {' in kind.script(ADD, item)


class FakeNft:
    """run_tool for NftBackend.read_table: the tables there are, or a failing nft."""

    def __init__(self, tables, broken=False):
        self.tables, self.broken, self.calls = tables, broken, []

    def __call__(self, argv, stdin=None):
        self.calls.append(argv[1:])
        if self.broken:
            return 1, '', 'netlink: Error: cache initialization failed: Operation not permitted\n'
        if argv[1:] == ['list', 'tables', 'inet']:
            return 0, ''.join('table inet %s\n' % name for name in self.tables), ''
        name = argv[-1]
        if name in self.tables:
            return 0, 'table inet %s {\n}\n' % name, ''
        return 1, '', 'Error: No such file or directory\n'


def backend(monkeypatch, fake):
    monkeypatch.setattr(_nft, 'run_tool', fake)
    monkeypatch.setattr(_nft, 'find_tool', lambda name: '/usr/sbin/nft')
    return _nft.NftBackend()


def test_read_table_there_is_one_nft_run(monkeypatch):
    fake = FakeNft(['netpolicy_up'])
    assert backend(monkeypatch, fake).read_table('netpolicy_up') == 'table inet netpolicy_up {\n}\n'
    assert fake.calls == [['-s', 'list', 'table', 'inet', 'netpolicy_up']]


def test_read_table_absent_is_none(monkeypatch):
    fake = FakeNft(['netpolicy_other'])
    assert backend(monkeypatch, fake).read_table('netpolicy_up') is None
    assert fake.calls == [['-s', 'list', 'table', 'inet', 'netpolicy_up'], ['list', 'tables', 'inet']]


def test_read_table_nft_failing_is_an_error(monkeypatch):
    with pytest.raises(EngineError, match='nft list tables failed: netlink: Error: cache initialization failed'):
        backend(monkeypatch, FakeNft([], broken=True)).read_table('netpolicy_up')


def test_read_table_listed_but_unreadable_is_an_error(monkeypatch):
    fake = FakeNft(['netpolicy_up'])
    listing = fake.__call__

    def unreadable(argv, stdin=None):
        return (1, '', 'Error: Could not process rule\n') if argv[1] == '-s' else listing(argv, stdin)
    with pytest.raises(EngineError, match='nft list table inet netpolicy_up failed: Error: Could not process rule'):
        backend(monkeypatch, unreadable).read_table('netpolicy_up')

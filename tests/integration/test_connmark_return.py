"""connmark_return against the real kernel, for both backends (iptables also
with iptables-legacy).

Rule-set tests run in a bare `netns` namespace; traffic tests build the lab's
seed 004 topology (a server behind two routers) and two_isp (a router with two
uplinks). Each backend gets its own namespaces: Debian's iptables is
iptables-nft, so both in one namespace would see each other's tables.
"""
import os
import subprocess

import pytest

from tests.helpers.modules import run_module
from tests.lab import Lab, topologies

BACKENDS = ['nftables', 'iptables']
# iptables-legacy too where it matters most: the module drives whatever
# iptables-restore PATH gives it, here the legacy one.
FLAVOURS = BACKENDS + ['iptables-legacy']
MODULE = 'connmark_return'


class Flavour:
    """A backend as the module sees it: its option value and the tools on PATH."""

    def __init__(self, flavour, legacy_dir):
        self.backend = 'nftables' if flavour == 'nftables' else 'iptables'
        self.suffix = '-legacy' if flavour == 'iptables-legacy' else ''
        self.env = {'PATH': legacy_dir + os.pathsep + os.environ['PATH']} if self.suffix else None

    def run(self, args, **kwargs):
        return run_module(MODULE, args, env=self.env, **kwargs)

    def tool(self, family, verb=''):
        """'iptables', '-save' -> iptables-save (or iptables-legacy-save)."""
        return family + self.suffix + verb


@pytest.fixture(scope='module')
def legacy_dir(tmp_path_factory):
    """A directory whose iptables tools are the legacy ones."""
    path = tmp_path_factory.mktemp('iptables-legacy')
    for family in ('iptables', 'ip6tables'):
        for verb in ('', '-restore', '-save'):
            os.symlink('/usr/sbin/%s-legacy%s' % (family, verb), str(path / (family + verb)))
    return str(path)


def snapshot(run):
    """Every packet-filter rule of a namespace, as text (``run(*argv)`` runs in it)."""
    texts = []
    for argv in (['nft', 'list', 'ruleset'], ['iptables-save'], ['ip6tables-save'],
                 ['iptables-legacy-save'], ['ip6tables-legacy-save']):
        out = run(*argv).stdout
        texts.append('\n'.join(line for line in out.splitlines() if not line.startswith('#')))
    return texts


def owned(ns, flavour, name='up'):
    """What ``name`` owns in the kernel, as text ('' when nothing)."""
    if flavour.backend == 'nftables':
        return ns.run('nft', 'list', 'table', 'inet', 'netpolicy_' + name, check=False).stdout
    lines = []
    for family in ('iptables', 'ip6tables'):
        out = ns.run(flavour.tool(family, '-save'), '-t', 'mangle').stdout
        lines += [line for line in out.splitlines() if 'NP_%s_' % name in line]
    return '\n'.join(lines)


def load_nft(ns, text):
    subprocess.run(['ip', 'netns', 'exec', ns.name, 'nft', '-f', '-'], input=text, text=True, check=True)


def prime_iptables(ns, flavour):
    """Make iptables create its mangle chains now: it keeps them once made."""
    for family in ('iptables', 'ip6tables'):
        for builtin in ('PREROUTING', 'OUTPUT'):
            ns.run(flavour.tool(family), '-t', 'mangle', '-A', builtin, '-j', 'RETURN')
            ns.run(flavour.tool(family), '-t', 'mangle', '-D', builtin, '-j', 'RETURN')


@pytest.fixture
def router(netns):
    """A namespace with interfaces wan1, wan2 and lan0 (veth: no dummy module needed)."""
    netns.ip('link', 'add', 'wan1', 'type', 'veth', 'peer', 'name', 'wan2')
    netns.ip('link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan0p')
    return netns


def args_for(ns, backend, **extra):
    args = {
        'name': 'up',
        'netns': ns.name,
        'backend': backend,
        'entries': [
            {'mark': 1, 'in_interface': 'wan1'},
            {'mark': 2, 'in_interface': 'wan2', 'exclude_source': ['198.51.100.0/24', '2001:db8:1::/48']},
            {'mark': 3, 'source': '2001:db8:5::/48', 'protocol': 'tcp', 'dport': '8000-8100'},
            {'mark': 3, 'source_mac': '52:54:00:c2:a5:43', 'protocol': 'udp'},
        ],
        'restore_on': {'prerouting': ['lan0'], 'output': True},
    }
    args.update(extra)
    return args


@pytest.mark.parametrize('flavour', FLAVOURS)
def test_apply_check_idempotence_diff_absent(router, flavour, legacy_dir):
    flavour = Flavour(flavour, legacy_dir)
    backend = flavour.backend
    args = args_for(router, backend)
    if backend == 'iptables':
        prime_iptables(router, flavour)
    before = snapshot(router.run)

    check = flavour.run(args, check=True, diff=True)
    assert check['changed'] and not check.get('failed'), check
    assert check['backend'] == backend
    assert snapshot(router.run) == before, 'check mode changed the kernel'
    assert check['diff']['before'] == ''

    applied = flavour.run(args, diff=True)
    assert applied['changed'] and not applied.get('failed'), applied
    assert applied['commands'] == check['commands'], 'check mode did not predict the real run'
    assert applied['diff'] == check['diff']
    text = owned(router, flavour)
    assert 'wan2' in text and 'lan0' in text and '2001:db8:5::/48' in text and '52:54:00:c2:a5:43' in text

    again = flavour.run(args, diff=True)
    assert not again['changed'] and again['commands'] == [], again
    assert again['diff']['before'] == again['diff']['after'] == applied['diff']['after']

    # A changed option replaces the rule set: predicted exactly, then applied.
    wider = dict(args, mask=0xffff)
    check = flavour.run(wider, check=True, diff=True)
    assert check['changed'] and check['diff']['before'] == applied['diff']['after']
    assert owned(router, flavour) == text
    changed = flavour.run(wider, diff=True)
    assert changed['changed'] and changed['commands'] == check['commands']
    assert '0xffff' in owned(router, flavour) or '0x0000ffff' in owned(router, flavour)

    absent = dict(args, state='absent')
    check = flavour.run(absent, check=True, diff=True)
    assert check['changed'] and check['diff']['after'] == ''
    removed = flavour.run(absent)
    assert removed['changed'] and removed['commands'] == check['commands']
    assert owned(router, flavour) == ''
    assert snapshot(router.run) == before
    assert not flavour.run(absent)['changed']


@pytest.mark.parametrize('backend', BACKENDS)
def test_foreign_rules_and_other_names_are_left_alone(router, backend):
    if backend == 'nftables':
        load_nft(router, 'table inet foreign {\n chain pre {\n  type filter hook prerouting priority -200;\n'
                         '  meta mark set meta mark | 0x100\n }\n}\n')
    else:
        router.run('iptables', '-t', 'mangle', '-A', 'PREROUTING', '-i', 'lan0', '-j', 'MARK', '--set-xmark', '0x100/0x100')
        router.run('ip6tables', '-t', 'mangle', '-A', 'OUTPUT', '-j', 'ACCEPT')
    other = args_for(router, backend, name='other', entries=[{'mark': 0x200, 'in_interface': 'wan1'}], mask=0xff00)
    assert run_module(MODULE, other)['changed']
    before = snapshot(router.run)

    args = args_for(router, backend)
    assert run_module(MODULE, args)['changed']
    assert run_module(MODULE, dict(args, entries=args['entries'][:1]))['changed']
    assert run_module(MODULE, dict(args, state='absent'))['changed']
    assert snapshot(router.run) == before


@pytest.mark.parametrize('backend', BACKENDS)
def test_drift_is_repaired(router, backend):
    args = args_for(router, backend)
    assert run_module(MODULE, args)['changed']
    text = owned(router, Flavour(backend, ''))
    if backend == 'nftables':
        router.run('nft', 'flush', 'chain', 'inet', 'netpolicy_up', 'output')
    else:
        router.run('iptables', '-t', 'mangle', '-A', 'PREROUTING', '-j', 'NP_up_PRE')   # a second jump
        router.run('ip6tables', '-t', 'mangle', '-F', 'NP_up_OUT')
    repaired = run_module(MODULE, args, diff=True)
    assert repaired['changed'] and repaired['diff']['before'] != repaired['diff']['after']
    assert owned(router, Flavour(backend, '')) == text
    assert not run_module(MODULE, args)['changed']


# Checks that need the kernel (interfaces) or come before it; the pure ones
# are in tests/unit/plugins/module_utils/test__connmark.py.
BAD_INPUTS = [
    ({'entries': [{'mark': 0x100, 'in_interface': 'wan1'}]}, 'entries[0].mark'),
    ({'mask': 0}, 'mask'),
    ({'entries': [{'mark': 1, 'in_interface': 'nosuch0'}]}, 'entries[0].in_interface'),
    ({'restore_on': {'prerouting': ['lan0', 'nosuch0']}}, 'restore_on.prerouting'),
    ({'entries': [{'mark': 1, 'source_mac': '52:54:00:c2:a5'}]}, 'entries[0].source_mac'),
    ({'entries': [{'mark': 1, 'in_interface': 'wan1', 'dport': 80}]}, 'entries[0].dport'),
    ({'entries': [{'mark': 1, 'in_interface': 'wan1'}, {'mark': 2, 'in_interface': 'wan1'}]}, 'entries[1]'),
]


def test_bad_input_fails_cleanly_and_touches_nothing(router):
    good = args_for(router, 'nftables')
    assert run_module(MODULE, good)['changed']
    before = snapshot(router.run)
    for change, field in BAD_INPUTS:
        result = run_module(MODULE, dict(good, **change))
        assert result.get('failed') and not result['changed'], result
        assert result['msg'].startswith(field + ':'), result['msg']
        assert 'Traceback' not in result['stderr']
    assert snapshot(router.run) == before


# ---------------------------------------------------------------- traffic

ROUTER2_MAC = '52:54:00:00:02:01'
OBSERVE = ('table inet observe {\n'
           ' counter marked {\n }\n'
           ' chain out {\n'
           '  type filter hook output priority 0; policy accept;\n'
           '  ct mark 0x1002 meta mark 0x102 counter name "marked"\n'
           ' }\n'
           ' chain foreign {\n'
           '  type filter hook prerouting priority -160; policy accept;\n'
           '  ct state new ct mark set ct mark | 0x1000\n'
           ' }\n'
           ' chain foreign_out {\n'
           '  type route hook output priority -160; policy accept;\n'
           '  meta mark set meta mark | 0x100\n'
           ' }\n'
           '}\n')


def counter(lab, node, table, name):
    out = lab.run(node, 'nft', 'list', 'counter', 'inet', table, name).stdout
    return int(out.split('packets')[1].split()[0])


@pytest.mark.parametrize('flavour', FLAVOURS)
def test_seed_004_replies_leave_by_the_router_the_connection_came_through(flavour, legacy_dir):
    flavour = Flavour(flavour, legacy_dir)
    with Lab(topologies.two_routers()) as lab:
        backend_ns = lab.name('backend')
        # Through router1, the backend's default gateway: works from the start.
        assert lab.connect('server', '198.51.100.2', 80, count=2) == ['203.0.113.10'] * 2
        # Through router2: the reply goes to router1 and dies there.
        assert lab.connect('server', '192.0.2.2', 80, count=1, timeout=1.0) == [None]

        lab.ip('backend', 'route', 'add', 'default', 'via', '192.168.1.2', 'table', '200')
        lab.ip('backend', 'rule', 'add', 'fwmark', '0x2/0xff', 'lookup', '200', 'priority', '1000')
        # Foreign mark bits (0x1000 on the connection, 0x100 on packets) must survive.
        lab.nft('backend', OBSERVE)
        args = {
            'name': 'router2', 'netns': backend_ns, 'backend': flavour.backend,
            'entries': [{'mark': 2, 'source_mac': ROUTER2_MAC, 'exclude_source': ['192.168.1.0/24'],
                         'protocol': 'tcp', 'dport': 80}],
            'restore_on': {'output': True},
        }
        result = flavour.run(args)
        assert result['changed'] and result['backend'] == flavour.backend, result

        assert lab.connect('server', '192.0.2.2', 80, count=3) == ['203.0.113.10'] * 3
        assert lab.connect('server', '198.51.100.2', 80, count=2) == ['203.0.113.10'] * 2
        # Only port 80 is in the entry: 5001 through router2 still fails.
        assert lab.connect('server', '192.0.2.2', 5001, count=1, timeout=1.0) == [None]
        assert counter(lab, 'backend', 'observe', 'marked') > 0

        assert not flavour.run(args)['changed']
        assert flavour.run(dict(args, state='absent'))['changed']
        assert lab.connect('server', '192.0.2.2', 80, count=1, timeout=1.0) == [None]


TEST_DNAT = ('table ip test_dnat {\n'
             ' chain pre {\n'
             '  type nat hook prerouting priority dstnat; policy accept;\n'
             '  iifname "wan2" tcp dport 5001 dnat to 192.168.1.50\n'
             ' }\n'
             '}\n')


@pytest.mark.parametrize('backend', BACKENDS)
def test_two_uplinks_inbound_on_the_second_is_answered_through_it(backend):
    topo = topologies.two_isp()
    topo['nodes']['router']['listen'] = [5002]      # a service of the router itself
    with Lab(topo) as lab:
        lab.nft('router', TEST_DNAT)
        for family, gateway in (('-4', '192.0.2.1'), ('-6', '2001:db8:2::1')):
            lab.ip('router', family, 'route', 'add', 'default', 'via', gateway, 'dev', 'wan2', 'table', '102')
            lab.ip('router', family, 'rule', 'add', 'fwmark', '0x2/0xff', 'lookup', '102', 'priority', '1000')
        # Without the module replies leave by isp1 (main default), which drops them.
        assert lab.connect('server', '192.0.2.2', 5001, count=1, timeout=1.0) == [None]
        assert lab.connect('server', '2001:db8:2::2', 5002, count=1, timeout=1.0) == [None]

        args = {
            'name': 'uplinks', 'netns': lab.name('router'), 'backend': backend,
            'entries': [{'mark': 1, 'in_interface': 'wan1'}, {'mark': 2, 'in_interface': 'wan2'}],
            'restore_on': {'prerouting': ['lan0'], 'output': True},
        }
        assert run_module(MODULE, args)['changed']
        # Forwarded to the LAN server (restored on lan0), and to the router's own service
        # (restored in output), over IPv4 and IPv6.
        assert lab.connect('server', '192.0.2.2', 5001, count=3) == ['203.0.113.10'] * 3
        assert lab.connect('server', '192.0.2.2', 5002, count=2) == ['203.0.113.10'] * 2
        assert lab.connect('server', '2001:db8:2::2', 5002, count=2) == ['2001:db8:203::10'] * 2
        # Outbound from the LAN is untouched: still by isp1.
        assert lab.uplinks_used('client1', '203.0.113.10', 80, 2) == {'isp1': 2}
        assert not run_module(MODULE, args)['changed']

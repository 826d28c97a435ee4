"""The namespace lab itself: its baseline behaves like the internet it models,
and it always cleans up after itself, touching nothing in the host namespace."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.lab import Lab, LabCommandError, TopologyError, topologies, validate
from tests.lab import lab as lab_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = topologies.SERVER


def leftovers(prefix):
    """What is left of the lab with this prefix: namespaces, /etc/netns dirs, state dir."""
    etc = os.listdir(lab_module.ETC_NETNS) if os.path.isdir(lab_module.ETC_NETNS) else []
    state = os.path.join(lab_module.STATE_ROOT, prefix)
    return (lab_module.namespaces(prefix) + [entry for entry in etc if entry.startswith(prefix + '-')]
            + ([state] if os.path.exists(state) else []))


def assert_gone(prefix):
    assert leftovers(prefix) == []


@pytest.fixture
def sweep():
    """Prefixes to remove after the test whatever happened (a lab in a killed subprocess)."""
    prefixes = []
    yield prefixes
    for prefix in prefixes:
        lab_module.teardown(prefix)


def recorder_pids(lab):
    return [pid for node in lab.nodes for pid in lab.pids(node)]


def assert_dead(pids):
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ---------------------------------------------------------------- baseline traffic


def test_baseline_leaves_by_isp1(two_isp_lab):
    lab = two_isp_lab
    for node, port in (('client1', 80), ('client1', 443), ('client2', 5001), ('lan2host', 8080), ('router', 80)):
        seen = lab.connect(node, SERVER, port, count=5)
        assert seen == ['198.51.100.2'] * 5, (node, port)
    assert lab.uplink_of('198.51.100.2') == 'isp1'
    # IPv6 is routed, not NATed: the server sees the client's own address from isp1's prefix
    seen = lab.connect('client1', topologies.SERVER6, 80, count=2)
    assert seen == ['2001:db8:1:1::10'] * 2
    assert lab.uplink_of(seen[0]) == 'isp1'
    # the LAN subnets reach each other through the router, without NAT
    assert lab.connect('client2', '192.168.2.10', 80) == ['192.168.1.11']
    assert lab.connect('client1', '192.168.1.50', 5001, bind='192.168.1.10') == ['192.168.1.10']
    assert lab.log('server')[:1] == [('198.51.100.2', 80)]
    assert lab.spoofed_drops('isp1') == 0 and lab.spoofed_drops('isp2') == 0


def test_isp_drops_spoofed_source(two_isp_lab):
    lab = two_isp_lab
    # client1 routed out wan2 but still masqueraded only on wan1: its LAN source reaches isp2
    lab.ip('router', 'route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'wan2', 'table', '100')
    lab.ip('router', 'rule', 'add', 'from', '192.168.1.10', 'lookup', '100', 'priority', '100')
    assert lab.connect('client1', SERVER, 80, timeout=1.0) == [None]
    assert lab.uplinks_used('client1', SERVER, 80, 1, timeout=1.0) == {'failed': 1}
    assert lab.spoofed_drops('isp2') >= 1
    assert lab.connect('client2', SERVER, 80) == ['198.51.100.2']
    # NATed to its own address, the same route works, and the server sees isp2
    lab.nft('router', topologies.masquerade('wan2'))
    seen = lab.connect('client1', SERVER, 80, count=3)
    assert seen == ['192.0.2.2'] * 3
    assert lab.uplink_of(seen[0]) == 'isp2'
    assert lab.uplinks_used('client1', SERVER, 80, 3) == {'isp2': 3}


def test_table_names_resolve_per_router(two_isp_lab):
    lab = two_isp_lab
    with open(os.path.join(lab.etc('router'), 'iproute2', 'rt_tables')) as handle:
        assert re.search(r'^254\s+main$', handle.read(), re.M)
    with open(os.path.join(lab.etc('router'), 'iproute2', 'rt_tables.d', 'lab.conf'), 'w') as handle:
        handle.write('101 isp2\n')
    lab.run('router', 'ip', 'route', 'add', 'default', 'via', '192.0.2.1', 'table', 'isp2')
    assert 'default via 192.0.2.1' in lab.run('router', 'ip', 'route', 'show', 'table', '101').stdout
    assert lab.run('client1', 'ip', 'route', 'show', 'table', 'isp2', check=False).returncode != 0
    with open('/etc/iproute2/rt_tables') as handle:
        assert 'isp2' not in handle.read()


def test_hold_stays_alive_until_the_path_breaks(two_isp_lab):
    lab = two_isp_lab
    with lab.hold('client1', SERVER, 5001) as conn:
        assert conn.seen == '198.51.100.2'
        for dummy in range(3):
            assert conn.alive()
            time.sleep(0.1)
        lab.nft('router', 'table inet lab_block { chain forward {'
                          ' type filter hook forward priority 0; policy drop; }; }')
        assert not conn.alive(timeout=0.5)
        lab.run('router', 'nft', 'delete', 'table', 'inet', 'lab_block')
        assert conn.alive(timeout=5.0)  # TCP retransmits; the late echo is skipped
    assert lab.connect('client1', SERVER, 5001) == ['198.51.100.2']


def test_three_isp_and_two_routers(lab_factory):
    three = lab_factory(topologies.three_isp())
    assert three.connect('client1', SERVER, 80) == ['198.51.100.2']
    three.ip('router', 'route', 'replace', 'default', 'via', '100.65.3.1', 'dev', 'wan3')
    three.nft('router', topologies.masquerade('wan3'))
    seen = three.connect('client1', SERVER, 80, count=2)
    assert [three.uplink_of(addr) for addr in seen] == ['isp3', 'isp3']

    # seed 004: a port forward through router2 fails, the backend answers via router1
    two = lab_factory(topologies.two_routers())
    assert two.connect('backend', SERVER, 80) == ['198.51.100.2']
    assert two.connect('server', '198.51.100.2', 80) == [SERVER]
    assert two.connect('server', '192.0.2.2', 80, timeout=1.0) == [None]
    assert '52:54:00:00:02:01' in two.ip('router2', 'link', 'show', 'lan0').stdout


def test_two_labs_at_once_do_not_collide(lab_factory):
    first = lab_factory(topologies.two_isp())
    second = lab_factory(topologies.two_isp())
    assert first.prefix != second.prefix
    assert not set(first.names().values()) & set(second.names().values())
    first.ip('router', 'route', 'replace', 'default', 'via', '192.0.2.1', 'dev', 'wan2')
    first.nft('router', topologies.masquerade('wan2'))
    assert first.connect('client1', SERVER, 80) == ['192.0.2.2']
    assert second.connect('client1', SERVER, 80) == ['198.51.100.2']
    first.down()
    assert_gone(first.prefix)
    assert second.connect('client1', SERVER, 80) == ['198.51.100.2']


# ---------------------------------------------------------------- teardown, whatever happens


def test_teardown_on_exception():
    with pytest.raises(RuntimeError, match='boom'):
        with Lab(topologies.two_isp()) as lab:
            assert len(lab_module.namespaces(lab.prefix)) == len(lab.nodes)
            pids = recorder_pids(lab)
            assert pids
            raise RuntimeError('boom')
    assert_gone(lab.prefix)
    assert_dead(pids)


def test_teardown_when_the_build_fails():
    topo = topologies.two_isp()
    topo['nodes']['router']['routes'].append('10.0.0.0/8 via 192.0.2.99 dev nosuchif')
    lab = Lab(topo)
    with pytest.raises(LabCommandError, match='nosuchif'):
        lab.up()
    assert_gone(lab.prefix)


PYTEST_RUN = '''
import signal, sys, pytest
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal
sys.exit(pytest.main(['-p', 'no:cacheprovider', '-p', 'tests.lab.pytest_plugin', '-q', '-c', 'pytest.ini',
                      'test_it.py']))
'''


@pytest.mark.parametrize('how', ['fails', 'interrupted'])
def test_teardown_of_a_pytest_run(how, tmp_path, sweep):
    """A test using the lab fixture fails, or the run is stopped with Ctrl-C."""
    prefix_file = tmp_path / 'prefix'
    (tmp_path / 'pytest.ini').write_text('[pytest]\n')
    (tmp_path / 'test_it.py').write_text(textwrap.dedent('''
        import time
        from tests.lab import topologies

        def test_it(lab_factory):
            lab = lab_factory(topologies.two_isp())
            with open(%r, 'w') as handle:
                handle.write(lab.prefix)
            if %r == 'interrupted':
                time.sleep(60)
            assert lab.connect('client1', '203.0.113.10', 80) == ['nobody']
    ''' % (str(prefix_file), how)))
    proc = subprocess.Popen([sys.executable, '-c', PYTEST_RUN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=REPO))
    try:
        if how == 'interrupted':
            deadline = time.monotonic() + 30
            while not (prefix_file.exists() and prefix_file.read_text()) and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    prefix = prefix_file.read_text()
    assert prefix, output
    sweep.append(prefix)
    assert proc.returncode == (1 if how == 'fails' else 2), output   # tests failed / interrupted
    assert ('1 failed' if how == 'fails' else 'KeyboardInterrupt') in output
    assert_gone(prefix)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_teardown_on_signal(signum, sweep):
    # SIGINT as in a terminal, even where this test runs with it ignored (a background job)
    script = textwrap.dedent('''
        import signal, sys, time
        from tests.lab import Lab, topologies
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with Lab(topologies.two_isp()) as lab:
            print(lab.prefix, flush=True)
            time.sleep(60)
    ''')
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        prefix = proc.stdout.readline().strip()
        assert prefix, proc.stderr.read()
        sweep.append(prefix)
        assert lab_module.namespaces(prefix)
        proc.send_signal(signum)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signum
    assert_gone(prefix)


# ---------------------------------------------------------------- the host namespace


HOST_SYSCTLS = [
    'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding', 'net.ipv4.conf.all.rp_filter',
    'net.ipv4.conf.default.rp_filter', 'net.ipv6.conf.all.accept_dad', 'net.ipv6.conf.default.accept_dad',
    'net.bridge.bridge-nf-call-iptables', 'net.bridge.bridge-nf-call-ip6tables', 'net.bridge.bridge-nf-call-arptables',
]


def host_snapshot():
    commands = [
        ['ip', '-4', 'rule'], ['ip', '-6', 'rule'],
        ['ip', '-4', 'route', 'show', 'table', 'all'], ['ip', '-6', 'route', 'show', 'table', 'all'],
        ['ip', '-o', 'link'], ['ip', '-o', 'addr'], ['nft', '--stateless', 'list', 'ruleset'],
    ]
    snapshot = {}
    for argv in commands:
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        # lifetimes of DHCP addresses and RA routes count down on their own
        snapshot[' '.join(argv)] = re.sub(r'(expires|valid_lft|preferred_lft) \S+', r'\1', out)
    for key in HOST_SYSCTLS:
        path = '/proc/sys/' + key.replace('.', '/')
        if os.path.exists(path):
            with open(path) as handle:
                snapshot[key] = handle.read()
    for root, dummy, files in os.walk('/etc/iproute2'):
        for name in files:
            with open(os.path.join(root, name)) as handle:
                snapshot[os.path.join(root, name)] = handle.read()
    return snapshot


def test_host_namespace_untouched():
    before = host_snapshot()
    with Lab(topologies.three_isp()) as lab:
        assert host_snapshot() == before
        with lab.hold('client1', SERVER, 80) as conn:
            lab.nft('router', topologies.masquerade('wan2'))
            lab.ip('router', 'route', 'replace', 'default', 'via', '192.0.2.1', 'dev', 'wan2')
            assert lab.connect('client2', SERVER, 443, count=3) == ['192.0.2.2'] * 3
            assert conn.alive(timeout=0.5) is False  # its NAT mapping belongs to wan1
        assert host_snapshot() == before
    assert host_snapshot() == before


# ---------------------------------------------------------------- the command line and the demo


def test_cli_up_status_down():
    prefix = lab_module.RUN_PREFIX + '-cli'
    cli = [sys.executable, '-m', 'tests.lab']
    try:
        up = subprocess.run(cli + ['up', 'two_isp', '--prefix', prefix], capture_output=True, text=True,
                            cwd=REPO, timeout=60, check=False)
        assert up.returncode == 0, up.stderr
        names = json.loads(up.stdout)['names']
        assert names['router'] == prefix + '-router'
        # the lab outlives the command, recording server included
        assert Lab(topologies.two_isp(), prefix=prefix).connect('client1', SERVER, 80) == ['198.51.100.2']
        status = subprocess.run(cli + ['status', '--prefix', prefix], capture_output=True, text=True, cwd=REPO, check=False)
        assert status.returncode == 0 and json.loads(status.stdout)['topology'] == 'two_isp'
        again = subprocess.run(cli + ['up', 'two_isp', '--prefix', prefix], capture_output=True, text=True, cwd=REPO, check=False)
        assert again.returncode != 0 and 'exists' in again.stderr
    finally:
        down = subprocess.run(cli + ['down', '--prefix', prefix], capture_output=True, text=True, cwd=REPO, check=False)
    assert down.returncode == 0, down.stderr
    assert_gone(prefix)
    status = subprocess.run(cli + ['status', '--prefix', prefix], capture_output=True, text=True, cwd=REPO, check=False)
    assert status.returncode == 1


def test_demo_prints_the_baseline():
    proc = subprocess.run([sys.executable, '-m', 'tests.lab.demo', 'baseline'], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if '->' in line]
    assert len(rows) >= 5
    assert all(row[3] == 'isp1' for row in rows), proc.stdout
    assert ['client1', '->', '203.0.113.10:80', 'isp1', '198.51.100.2'] in rows


# ---------------------------------------------------------------- topology data (no kernel)


def _bad(change):
    topo = topologies.two_isp()
    change(topo)
    return topo


@pytest.mark.parametrize('topology, message', [
    ({'nodes': {}}, 'nodes: must be a non-empty dict'),
    (_bad(lambda t: t['nodes'].update({'Router-2': {}})), "not a node name"),
    (_bad(lambda t: t['nodes']['router'].update({'adresses': {}})), 'nodes.router: unknown keys adresses'),
    (_bad(lambda t: t['links'].append({'a': 'router:wan1', 'b': 'isp2:extra'})),
     'interface wan1 of router is defined twice'),
    (_bad(lambda t: t['links'].append({'a': 'router:x', 'b': 'nosuch:eth0'})), 'links[9].b: not NODE:INTERFACE'),
    (_bad(lambda t: t['links'].append({'a': 'router:averyveryverylongname', 'b': 'isp2:x'})),
     'links[9].a: not a usable interface name'),
    (_bad(lambda t: t['links'].append({'a': 'router:x', 'b': 'isp2:y', 'bridge': 'br9'})),
     "links[9].bridge: 'br9' is not a bridge of router"),
    (_bad(lambda t: t['nodes']['client1']['addresses'].update({'eth9': ['192.168.1.99/24']})),
     "nodes.client1.addresses: no interface 'eth9'"),
    (_bad(lambda t: t['nodes']['client1']['addresses'].update({'eth0': ['192.168.1.300/24']})),
     'nodes.client1.addresses.eth0: not an address/prefix'),
    (_bad(lambda t: t['nodes']['server'].update({'listen': [0]})), 'nodes.server.listen: not a TCP port'),
    (_bad(lambda t: t['uplinks'].update({'isp9': ['x']})), "uplinks.isp9: not a network: 'x'"),
])
def test_validate_names_the_field(topology, message):
    with pytest.raises(TopologyError) as info:
        validate(topology)
    assert message in str(info.value)


@pytest.mark.parametrize('factory', sorted(topologies.TOPOLOGIES))
def test_topologies_are_valid_and_independent(factory):
    topo = topologies.TOPOLOGIES[factory]()
    validate(topo)
    topo['nodes']['server']['listen'].append(9)
    assert 9 not in topologies.TOPOLOGIES[factory]()['nodes']['server']['listen']


@pytest.mark.parametrize('address, uplink', [
    ('198.51.100.2', 'isp1'), ('::ffff:198.51.100.2', 'isp1'), ('192.0.2.2', 'isp2'),
    ('100.65.3.2', 'isp3'), ('2001:db8:1:1::10', 'isp1'), ('2001:db8:2::2', 'isp2'),
    ('192.168.1.10', None), ('203.0.113.10', None), (None, None),
])
def test_uplink_of(address, uplink):
    assert Lab(topologies.three_isp()).uplink_of(address) == uplink


# ---------------------------------------------------------------- Ansible against the lab


PLAYBOOK = '''
- name: Send the router's traffic out by isp2
  hosts: router
  gather_facts: false
  tasks:
    - name: Default route via isp2, with raw (no Python needed)
      ansible.builtin.raw: ip route replace default via 192.0.2.1 dev wan2
    - name: Masquerade out wan2, with a module (Python inside the namespace)
      ansible.builtin.command: nft add rule ip lab_nat postrouting oifname wan2 masquerade
      changed_when: true
'''


def test_run_playbook_through_the_netns_connection(two_isp_lab, tmp_path):
    from tests.lab.playbook import run_playbook

    lab = two_isp_lab
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    proc = run_playbook(lab, str(tmp_path / 'play.yml'), nodes=['router'])
    assert 'changed=2' in proc.stdout
    seen = lab.connect('client1', SERVER, 80, count=2)
    assert [lab.uplink_of(addr) for addr in seen] == ['isp2', 'isp2']

"""A fleet run with one broken router (issue #13, "Partial failures").

One ansible-playbook applies split_access to three routers of the lab's fleet
(topologies.fleet, netns connection plugin). On r02 the uplink isp2's gateway,
192.0.2.1, is not on the uplink: wan2 has the wrong subnet (192.0.2.130/25), so
nothing in the variables is wrong and only the kernel can refuse isp2's default
route, after the steps before it (table names, sysctls, the state directory)
could have been applied. The other routers must finish fully applied, and r02
must be left exactly as it was, with a failure that says why.

Three routers, not more: each one costs the play about 25 s of CPU on 2 cores.
"""
import json
import os
import re

import pytest

from tests.lab import topologies
from tests.lab.lab import LabCommandError
from tests.lab.playbook import recap, run_playbook, snapshot

ROUTERS = ['r01', 'r02', 'r03']
BROKEN = 'r02'
PLAY = [{
    'name': 'Split access on the fleet',
    'hosts': 'all',
    'gather_facts': False,
    'vars': {
        'split_access_lan_interfaces': ['lan0'],
        'split_access_uplinks': [
            {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'address': '198.51.100.2',
             'table': 1, 'mark': 1},
            {'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'address': '192.0.2.2',
             'table': 2, 'mark': 2},
        ],
        'split_access_balance': 'per_connection',
        'split_access_port_forwards': [{'proto': 'tcp', 'port': 5001, 'to': '192.168.1.50'}],
        'split_access_install_dependencies': False,
        'split_access_service': False,
    },
    'roles': [{'role': 'netpolicy.routing.split_access'}],
}]
# What split_access sets (INTERFACE.md; seed 002), read back on each router.
SYSCTLS = ['net.ipv4.ip_forward', 'net.ipv4.conf.all.src_valid_mark', 'net.ipv4.fib_multipath_hash_policy',
           'net.ipv4.conf.all.rp_filter', 'net.ipv4.conf.wan1.rp_filter', 'net.ipv4.conf.wan2.rp_filter']

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('pipelining')]


def state(lab, node):
    """Everything split_access may change on ``node``, comparable between routers:
    the lab's snapshot, JSON rules and routes, the sysctls the role sets, and
    every directory and file (with its mode) of the node's iproute2, netpolicy
    and sysctl.d, by its path inside the node."""
    found = snapshot(lab, node)
    found['files'] = {}  # the snapshot's, with directories and modes too
    found['json'] = {family: {
        'rules': json.loads(lab.ip(node, '-j', family, 'rule').stdout),
        'routes': json.loads(lab.ip(node, '-j', family, 'route', 'show', 'table', 'all').stdout),
    } for family in ('-4', '-6')}
    found['sysctls'] = {key: lab.sysctl(node, key) for key in SYSCTLS}
    etc = lab.etc(node)
    for top in ('iproute2', 'netpolicy', 'sysctl.d'):
        for root, dirs, names in os.walk(os.path.join(etc, top)):
            for name in dirs + names:
                if name.endswith('.lock'):
                    continue  # where runs take turns (rt_tables_entry's), not state
                path = os.path.join(root, name)
                inside = '/etc/' + os.path.relpath(path, etc)
                mode = oct(os.stat(path).st_mode)
                if os.path.isdir(path):
                    found['files'][inside] = mode
                else:
                    with open(path) as handle:
                        found['files'][inside] = (mode, handle.read())
    return found


def alike(found):
    """``found`` without what may differ between two routers given the same
    variables: the IPv6 link-local addresses made from each interface's random
    MAC address, and what the roles' files say (only which exist, and their modes)."""
    found = dict(found, routes=re.sub(r'^.*fe80::[0-9a-f:]+ .*\n', '', found['routes'], flags=re.M))
    found['files'] = {path: value if isinstance(value, str) else value[0] for path, value in found['files'].items()}
    found['json'] = dict(found['json'])
    found['json']['-6'] = dict(found['json']['-6'], routes=[
        route for route in found['json']['-6']['routes'] if not re.match(r'fe80::[0-9a-f:]+$', route['dst'])])
    return found


def describe(changed):
    """What differs, part by part, key by key where the part is a dict."""
    lines = []
    for part, (was, now) in sorted(changed.items()):
        if isinstance(was, dict):
            for key in sorted(set(was) | set(now), key=str):
                if was.get(key) != now.get(key):
                    lines.append('%s %s: %r -> %r' % (part, key, was.get(key), now.get(key)))
        else:
            lines.append('%s: %r -> %r' % (part, was, now))
    return '\n'.join(lines)


def failures(output, host):
    """The results of ``host``'s failed tasks in the default callback's output."""
    return [json.loads(match) for match in
            re.findall(r'^fatal: \[%s\]: FAILED! => (\{.*\})$' % re.escape(host), output, re.M)]


def test_one_broken_router_is_left_as_it_was(lab_factory):
    topology = topologies.fleet(len(ROUTERS))
    # the ISP renumbered: isp2's gateway is not on the broken router's wan2 any more
    topology['nodes'][BROKEN]['addresses']['wan2'] = ['192.0.2.130/25']
    lab = lab_factory(topology)
    before = {router: state(lab, router) for router in ROUTERS}
    playbook = os.path.join(lab.state_dir, 'fleet.yml')
    with open(playbook, 'w') as handle:
        json.dump(PLAY, handle)  # JSON is YAML

    with pytest.raises(LabCommandError) as failed:
        run_playbook(lab, playbook, nodes=ROUTERS)
    output = failed.value.output
    after = {router: state(lab, router) for router in ROUTERS}

    # the play went on for the others: each ended fully applied
    healthy = [router for router in ROUTERS if router != BROKEN]
    for router in healthy:
        assert recap(failed.value, router)['failed'] == 0, output
        assert recap(failed.value, router)['changed'] > 0, output
        assert alike(after[router]) == alike(after[healthy[0]]), '%s and %s differ' % (router, healthy[0])
    assert recap(failed.value, BROKEN)['failed'] == 1, output
    good = after[healthy[0]]
    rules = [(rule['priority'], rule.get('src'), rule.get('fwmark'), rule['table'])
             for rule in good['json']['-4']['rules'] if 3000 <= rule['priority'] < 4000]
    assert rules == [(3000, 'all', None, 'main'), (3100, 'all', '0x1', 'isp1'), (3101, 'all', '0x2', 'isp2'),
                     (3200, '198.51.100.2', None, 'isp1'), (3201, '192.0.2.2', None, 'isp2')]
    defaults = {route.get('table', 'main'): route
                for route in good['json']['-4']['routes'] if route['dst'] == 'default'}
    assert (defaults['isp1']['gateway'], defaults['isp1']['dev']) == ('198.51.100.1', 'wan1')
    assert (defaults['isp2']['gateway'], defaults['isp2']['dev']) == ('192.0.2.1', 'wan2')
    assert sorted(hop['gateway'] for hop in defaults['main']['nexthops']) == ['192.0.2.1', '198.51.100.1']
    assert 'table inet netpolicy_split_access' in good['nft']
    assert good['sysctls']['net.ipv4.conf.all.src_valid_mark'] == '1'
    assert good['files']['/etc/iproute2/rt_tables.d/netpolicy.conf'][1].split() == ['1', 'isp1', '2', 'isp2']
    assert '/etc/netpolicy/routing/split_access.json' in good['files']

    # the failure says what is wrong: isp2's table and its gateway
    message = ' '.join(result.get('msg', '') for result in failures(output, BROKEN))
    assert '192.0.2.1' in message and ('isp2' in message or 'table 2' in message), message or output

    # the broken router is exactly as it was
    assert before[healthy[0]] != after[healthy[0]]
    changed = dict((part, (before[BROKEN][part], after[BROKEN][part]))
                   for part in before[BROKEN] if after[BROKEN][part] != before[BROKEN][part])
    if changed:
        pytest.fail('%s changed by the failed run: %s\n%s' % (BROKEN, ', '.join(changed), describe(changed)))

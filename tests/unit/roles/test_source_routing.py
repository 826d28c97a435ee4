"""The pure logic of the role source_routing: the variables of its vars/main.yml
(input checks and the desired state: tables, rules, nftables rules, sysctls),
templated by Ansible's own templar as the role templates them."""
import os

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

VARS = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'roles', 'source_routing', 'vars', 'main.yml')
MACBOOK = {'name': 'macbook', 'from': ['192.168.1.169'], 'interface': 'wan2', 'gateway': '192.0.2.1',
           'snat': '192.0.2.74'}
WEB = {'name': 'web', 'from': ['192.168.99.0/24'], 'protocol': 'tcp', 'dports': [80, 443],
       'interface': 'wan3', 'gateway': '100.65.3.1', 'snat': 'masquerade'}


def value(name, policies, **variables):
    loader = DataLoader()
    # the role's vars are templates, as Ansible treats a role's vars files
    values = {key: trust_as_template(item) if isinstance(item, str) else item
              for key, item in loader.load_from_file(VARS).items()}
    values.update({'source_routing_policies': policies, 'source_routing_confirm_timeout': 0})
    values.update(variables)
    # the role sets the filled-in policies once, as a fact (tasks/validate.yml)
    values['__source_routing_policies'] = Templar(loader=loader, variables=values).template(
        values['__source_routing_policies_given'])
    return Templar(loader=loader, variables=values).template(values[name])


def test_seed001_host_policy():
    assert value('__source_routing_entries', [MACBOOK]) == [{'name': 'macbook', 'id': 201}]
    assert value('__source_routing_tables', [MACBOOK]) == [
        {'table': '201', 'purge': True, 'copy_from': 'main', 'copy_exclude': ['default'],
         'routes': [{'dest': 'default', 'gateway': '192.0.2.1', 'dev': 'wan2'}]}]
    assert value('__source_routing_rules', [MACBOOK]) == [
        {'priority': 1000, 'table': '201', 'family': 'ipv4', 'from': '192.168.1.169'}]
    assert value('__source_routing_nft_prerouting', [MACBOOK]) == []
    assert value('__source_routing_nft_postrouting', [MACBOOK]) == [
        'oifname "wan2" ip saddr { 192.168.1.169 } snat ip to 192.0.2.74']
    assert value('__source_routing_sysctl_keys', [MACBOOK]) == ['net.ipv4.conf.wan2.rp_filter']


def test_seed003_service_policy_is_routed_by_connection_mark():
    policies = [MACBOOK, WEB]
    assert value('__source_routing_rules', policies)[1] == {
        'priority': 1010, 'table': '202', 'family': 'ipv4', 'fwmark': '0x200/0xff00'}
    assert value('__source_routing_nft_prerouting', policies) == [
        'ct state new ct mark & 0x0000ff00 == 0x00000000 ip saddr { 192.168.99.0/24 } tcp dport { 80, 443 }'
        ' ct mark set ct mark & 0xffff00ff | 0x00000200',
        'ct direction original ct mark & 0x0000ff00 == 0x00000200 meta mark set meta mark & 0xffff00ff | 0x00000200']
    assert value('__source_routing_nft_postrouting', policies)[1] == \
        'oifname "wan3" meta nfproto ipv4 ct mark & 0x0000ff00 == 0x00000200 masquerade'


def test_point_to_point_ipv6_and_to():
    policy = {'name': 'vpn', 'from': ['192.168.1.10', '2001:db8:1:1::10'], 'to': ['2001:db8:5::/48'],
              'interface': 'eth0.2', 'table': 7375, 'priority': 2500}
    assert value('__source_routing_tables', [policy])[0]['routes'] == [
        {'dest': 'default', 'dev': 'eth0.2', 'family': 'ipv6'}]
    assert value('__source_routing_rules', [policy]) == [
        {'priority': 2500, 'table': '7375', 'family': 'ipv6', 'from': '2001:db8:1:1::10', 'to': '2001:db8:5::/48'}]
    assert value('__source_routing_sysctl_keys', [policy]) == []


def test_explicit_priorities_order_the_marks():
    policies = [dict(WEB, priority=2900), dict(WEB, name='ssh', dports=[22], priority=2100)]
    marks = value('__source_routing_nft_prerouting', policies)
    assert 'tcp dport { 22 }' in marks[0] and 'tcp dport { 80, 443 }' in marks[1]


@pytest.mark.parametrize('policy', [MACBOOK, WEB, dict(MACBOOK, snat=None, gateway=None),
                                    dict(WEB, dports=['8000-8100', 65535], protocol='udp'),
                                    dict(MACBOOK, **{'from': ['2001:db8::/32'], 'gateway': 'fe80::1',
                                                     'snat': '2001:db8:2::2'})])
def test_good_input(policy):
    assert value('__source_routing_errors', [policy]) == []


@pytest.mark.parametrize('change, message', [
    ({'name': 'main'}, "[0] (main).name: not a usable table name: 'main'"),
    ({'name': '1x'}, "[0] (1x).name: not a usable table name"),
    ({'from': []}, '[0] (macbook).from: at least one host or subnet is needed'),
    ({'from': ['192.168.1.256']}, "[0] (macbook).from[0]: not an IP address or prefix: '192.168.1.256'"),
    ({'from': ['10.0.0.0/33']}, "[0] (macbook).from[0]: not an IP address or prefix: '10.0.0.0/33'"),
    ({'to': ['x']}, "[0] (macbook).to[0]: not an IP address or prefix: 'x'"),
    ({'to': ['2001:db8::1']}, '[0] (macbook).to[0]: 2001:db8::1 has no source of its family in from'),
    ({'dports': [80]}, '[0] (macbook).dports: needs protocol (tcp, udp or sctp)'),
    ({'protocol': 'tcp', 'dports': [0]}, "[0] (macbook).dports[0]: not a port (1..65535) or range FIRST-LAST: '0'"),
    ({'protocol': 'tcp', 'dports': ['90-80']}, "[0] (macbook).dports[0]: not a port"),
    ({'gateway': '192.0.2.1/24'}, "[0] (macbook).gateway: not an IP address: '192.0.2.1/24'"),
    ({'gateway': '2001:db8::1'}, '[0] (macbook).gateway: 2001:db8::1 is IPv6, but from has IPv4 sources'),
    ({'snat': 'masq'}, "[0] (macbook).snat: not an IP address or masquerade: 'masq'"),
    ({'table': 254}, '[0] (macbook).table: not a table number'),
    ({'table': 0}, '[0] (macbook).table: not a table number'),
    ({'priority': 2000}, '[0] (macbook).priority: not in the range of this role, 1000..1999: 2000'),
    ({'mark': 256}, '[0] (macbook).mark: not 1..255: 256'),
])
def test_bad_input(change, message):
    found = value('__source_routing_errors', [dict(MACBOOK, **change)])
    assert len(found) == 1 and found[0].startswith('source_routing_policies' + message), found


def test_the_interfaces_are_left_to_the_router():
    # the role cannot tell what the router has: apply_state checks it (tests/integration)
    assert value('__source_routing_errors', [dict(MACBOOK, interface='ppp0')]) == []
    assert value('__source_routing_checks', [MACBOOK, WEB]) == [
        {'field': 'source_routing_policies[0] (macbook).interface', 'interface': 'wan2'},
        {'field': 'source_routing_policies[1] (web).interface', 'interface': 'wan3'}]


def test_conflicts_between_policies():
    found = value('__source_routing_errors', [MACBOOK, dict(WEB, name='macbook', table=201, mark=1)])
    assert found == ["source_routing_policies[1] (macbook).name: two policies are named 'macbook'",
                     'source_routing_policies[1] (macbook).table: 201 is the table of another policy',
                     'source_routing_policies[1] (macbook).mark: 1 is the mark of another policy']


def test_confirm_timeout_is_validated():
    assert value('__source_routing_errors', [], source_routing_confirm_timeout=-1) == [
        'source_routing_confirm_timeout: must be 0 or more, not -1']

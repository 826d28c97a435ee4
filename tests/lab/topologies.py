"""The lab's topologies, as plain data (see tests/lab/lab.py for the format).

Each function returns a fresh dict, so a test may change its copy (add a node,
replace the router's nftables) without affecting anyone else.

Address plan (documentation and shared address space only):
- ISPn's customer link: 198.51.100.0/24 (isp1), 192.0.2.0/24 (isp2),
  100.65.3.0/24 (isp3); IPv6 2001:db8:N::/64 on the link, 2001:db8:N::/48
  delegated to the customer (the LAN's IPv6 subnets come from isp1's /48).
- ISPn <-> inet core: 100.64.N.0/30, 2001:db8:ff0N::/64.
- The internet server: 203.0.113.10/24, 2001:db8:203::10/64.
- LANs: 192.168.1.0/24 (2001:db8:1:1::/64), 192.168.2.0/24 (2001:db8:1:2::/64).
"""

SERVER = '203.0.113.10'
SERVER6 = '2001:db8:203::10'
SERVER_PORTS = [80, 443, 5001, 8080]

# What Debian 12's systemd sets on a real router (50-default.conf): loose
# reverse-path filtering, which multi-uplink routing needs.
ROUTER_SYSCTLS = {'net.ipv4.conf.all.rp_filter': 2, 'net.ipv4.conf.default.rp_filter': 2}

# (router interface, customer subnet prefix, router address, ISP address, IPv6 /48)
_UPLINKS = {
    1: ('198.51.100', 24, '198.51.100.2', '198.51.100.1', '2001:db8:1'),
    2: ('192.0.2', 24, '192.0.2.2', '192.0.2.1', '2001:db8:2'),
    3: ('100.65.3', 24, '100.65.3.2', '100.65.3.1', '2001:db8:3'),
}


def masquerade(*interfaces):
    """The router's baseline NAT: masquerade out these interfaces (table ip lab_nat)."""
    names = ', '.join('"%s"' % name for name in interfaces)
    return ('table ip lab_nat {\n'
            '    chain postrouting {\n'
            '        type nat hook postrouting priority srcnat; policy accept;\n'
            '        oifname { %s } masquerade\n'
            '    }\n'
            '}\n' % names)


def anti_spoofing(interface, sources):
    """nftables of an ISP: drop what arrives from the customer with a source not theirs.

    The named counter `spoofed` counts the drops (Lab.spoofed_drops reads it).
    Link-local and unspecified IPv6 sources stay allowed: neighbour discovery
    and multicast listener reports use them.
    """
    v4 = [net for net in sources if ':' not in net]
    v6 = [net for net in sources if ':' in net] + ['fe80::/10', '::/128']
    return ('table inet lab_antispoof {\n'
            '    counter spoofed {\n'
            '    }\n'
            '    chain prerouting {\n'
            '        type filter hook prerouting priority raw; policy accept;\n'
            '        iifname "%(ifname)s" meta nfproto ipv4 ip saddr != { %(v4)s } counter name "spoofed" drop\n'
            '        iifname "%(ifname)s" meta nfproto ipv6 ip6 saddr != { %(v6)s } counter name "spoofed" drop\n'
            '    }\n'
            '}\n' % {'ifname': interface, 'v4': ', '.join(v4), 'v6': ', '.join(v6)})


def _host(address, address6, gateway, gateway6, listen=()):
    node = {
        'addresses': {'eth0': [address, address6]},
        'routes': ['default via %s' % gateway, 'default via %s' % gateway6],
    }
    if listen:
        node['listen'] = list(listen)
    return node


def _add_isp(topo, number, router='router', router_if=None):
    """ISP number N: its namespace, its customer link to ``router``, its core link to inet."""
    prefix, length, router_addr, isp_addr, net6 = _UPLINKS[number]
    isp = 'isp%d' % number
    router_if = router_if or 'wan%d' % number
    customer = '%s.0/%d' % (prefix, length)
    topo['nodes'][isp] = {
        'forwarding': True,
        'sysctls': dict(ROUTER_SYSCTLS),
        'addresses': {
            'cust0': ['%s/%d' % (isp_addr, length), '%s::1/64' % net6],
            'core': ['100.64.%d.1/30' % number, '2001:db8:ff0%d::1/64' % number],
        },
        'routes': [
            'default via 100.64.%d.2' % number,
            'default via 2001:db8:ff0%d::2' % number,
            '%s::/48 via %s::2' % (net6, net6),
        ],
        'nft': anti_spoofing('cust0', [customer, '%s::/48' % net6]),
    }
    addresses = topo['nodes'][router].setdefault('addresses', {})
    addresses[router_if] = ['%s/%d' % (router_addr, length), '%s::2/64' % net6]
    inet = topo['nodes']['inet']
    inet['addresses'][isp] = ['100.64.%d.2/30' % number, '2001:db8:ff0%d::2/64' % number]
    inet['routes'] += ['%s via 100.64.%d.1' % (customer, number),
                       '%s::/48 via 2001:db8:ff0%d::1' % (net6, number)]
    topo['links'] += [
        {'a': '%s:%s' % (router, router_if), 'b': '%s:cust0' % isp},
        {'a': '%s:core' % isp, 'b': 'inet:%s' % isp},
    ]
    topo['uplinks'][isp] = [customer, '%s::/48' % net6]


def _internet():
    """The internet core `inet` and the recording `server` behind it."""
    return {
        'nodes': {
            'inet': {
                'forwarding': True,
                'addresses': {'srv0': ['203.0.113.1/24', '2001:db8:203::1/64']},
                'routes': [],
            },
            'server': _host(SERVER + '/24', SERVER6 + '/64', '203.0.113.1', '2001:db8:203::1', SERVER_PORTS),
        },
        'links': [{'a': 'inet:srv0', 'b': 'server:eth0'}],
        'uplinks': {},
    }


def two_isp():
    """A router with a LAN (client1, client2, lanserver; lan2host on a second
    subnet) and two ISPs. Baseline: main default via isp1, masquerade out wan1,
    so everything leaves by isp1 until a recipe changes it."""
    topo = _internet()
    topo['name'] = 'two_isp'
    topo['nodes']['router'] = {
        'forwarding': True,
        'sysctls': dict(ROUTER_SYSCTLS),
        'bridges': ['lan0'],
        'addresses': {
            'lan0': ['192.168.1.1/24', '2001:db8:1:1::1/64'],
            'lan1': ['192.168.2.1/24', '2001:db8:1:2::1/64'],
        },
        'routes': ['default via 198.51.100.1 dev wan1', 'default via 2001:db8:1::1 dev wan1'],
        'nft': masquerade('wan1'),
    }
    lan = [('client1', 10, ()), ('client2', 11, ()), ('lanserver', 50, (5001, 80))]
    for port, (role, host, listen) in enumerate(lan, 1):
        topo['nodes'][role] = _host('192.168.1.%d/24' % host, '2001:db8:1:1::%d/64' % host,
                                    '192.168.1.1', '2001:db8:1:1::1', listen)
        topo['links'].append({'a': 'router:lan0p%d' % port, 'b': '%s:eth0' % role, 'bridge': 'lan0'})
    topo['nodes']['lan2host'] = _host('192.168.2.10/24', '2001:db8:1:2::10/64',
                                      '192.168.2.1', '2001:db8:1:2::1', (80,))
    topo['links'].append({'a': 'router:lan1', 'b': 'lan2host:eth0'})
    _add_isp(topo, 1)
    _add_isp(topo, 2)
    return topo


def three_isp():
    """two_isp plus a third uplink wan3 to isp3 (100.65.3.2/24, carrier-grade
    NAT space: the uplink a recipe masquerades instead of SNATing)."""
    topo = two_isp()
    topo['name'] = 'three_isp'
    _add_isp(topo, 3)
    return topo


def two_routers():
    """Seed 004: a LAN `backend` (192.168.1.50, listens on 80 and 5001) behind
    router1 (192.168.1.1, its default gateway, uplink isp1) and router2
    (192.168.1.2, uplink isp2). Both routers forward ports 80 and 5001 from
    their uplink to the backend and masquerade out of it; the LAN is the bridge
    br0 of the switch namespace `lan`. Fixed MAC addresses on the routers'
    LAN interfaces, for recipes that recognise a router by its MAC."""
    return _routers_lan('two_routers', (1, 2))


def three_routers():
    """two_routers plus router3 (192.168.1.3, MAC 52:54:00:00:03:01, uplink
    isp3, 100.65.3.2), which forwards the same ports to the backend: a host
    that must answer each of three routers through itself."""
    return _routers_lan('three_routers', (1, 2, 3))


def _routers_lan(name, numbers):
    topo = _internet()
    topo['name'] = name
    topo['nodes']['lan'] = {'bridges': ['br0']}
    for number in numbers:
        role = 'router%d' % number
        wan = 'wan%d' % number
        topo['nodes'][role] = {
            'forwarding': True,
            'sysctls': dict(ROUTER_SYSCTLS),
            'macs': {'lan0': '52:54:00:00:0%d:01' % number},
            'addresses': {'lan0': ['192.168.1.%d/24' % number]},
            'routes': ['default via %s dev %s' % (_UPLINKS[number][3], wan),
                       'default via 2001:db8:%d::1 dev %s' % (number, wan)],
            'nft': port_forward(wan, '192.168.1.50', [80, 5001]),
        }
        topo['links'].append({'a': 'lan:p%d' % number, 'b': '%s:lan0' % role, 'bridge': 'br0'})
        _add_isp(topo, number, router=role, router_if=wan)
    topo['nodes']['backend'] = {
        'macs': {'eth0': '52:54:00:00:00:50'},
        'addresses': {'eth0': ['192.168.1.50/24']},
        'routes': ['default via 192.168.1.1'],
        'listen': [80, 5001],
    }
    topo['links'].append({'a': 'lan:p%d' % (len(numbers) + 1), 'b': 'backend:eth0', 'bridge': 'br0'})
    return topo


def port_forward(wan, target, ports):
    """nftables of a router that forwards ``ports`` from ``wan`` to ``target``
    and masquerades what leaves by ``wan`` (table ip lab_nat)."""
    return ('table ip lab_nat {\n'
            '    chain prerouting {\n'
            '        type nat hook prerouting priority dstnat; policy accept;\n'
            '        iifname "%s" tcp dport { %s } dnat to %s\n'
            '    }\n'
            '    chain postrouting {\n'
            '        type nat hook postrouting priority srcnat; policy accept;\n'
            '        oifname "%s" masquerade\n'
            '    }\n'
            '}\n' % (wan, ', '.join(str(port) for port in ports), target, wan))


def fleet(count):
    """``count`` routers r01..rNN, alike, and the namespace `peers` at the far end
    of all their links (no addresses there: the gateways only need to be on the
    uplinks' subnets, nothing is routed). Each router: wan1 198.51.100.2/24,
    wan2 192.0.2.2/24, lan0 192.168.1.1/24, main default via 198.51.100.1."""
    nodes = {'peers': {}}
    links = []
    for number in range(1, count + 1):
        router = 'r%02d' % number
        nodes[router] = {
            'forwarding': True,
            'sysctls': dict(ROUTER_SYSCTLS),
            'addresses': {'wan1': ['198.51.100.2/24'], 'wan2': ['192.0.2.2/24'], 'lan0': ['192.168.1.1/24']},
            'routes': ['default via 198.51.100.1 dev wan1'],
        }
        for ifname, peer in (('wan1', 'w1'), ('wan2', 'w2'), ('lan0', 'l')):
            links.append({'a': '%s:%s' % (router, ifname), 'b': 'peers:%s%s' % (router, peer)})
    return {'name': 'fleet', 'nodes': nodes, 'links': links, 'uplinks': {}}


TOPOLOGIES = {'two_isp': two_isp, 'three_isp': three_isp, 'two_routers': two_routers,
              'three_routers': three_routers}

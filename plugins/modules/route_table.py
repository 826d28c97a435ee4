#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: route_table
short_description: The routes of a Linux routing table
version_added: 0.1.0
description:
  - Makes the listed routes exist in a routing table (C(ip route ... table T)), or not exist.
  - With O(purge), routes of the table that are not listed are removed, so a playbook owns the table exactly.
  - With O(copy_from), the table mirrors the routes of another table (for example C(main) without its
    default route), as a policy routing table for a second uplink usually does.
  - Several tables can be given at once with O(tables); they are planned, applied and verified as one change.
  - Routes are compared by the kernel's identity of a route (family, table, destination, TOS, metric).
    A listed route that exists with other attributes is replaced in place (C(ip route replace)).
  - Routes are sent to the kernel in batches on one netlink socket, as fast as C(ip -batch); a run that
    changes nothing reads each table once and sends nothing. With thousands of routes, most of the task's
    time is Ansible's handling of the argument, much less so with routes given as strings, least with
    one string of lines read from a file (see C(docs/performance.md) in the collection).
  - A run that leaves its tables as asked (no change needed, or a change made and verified) keeps a memo in
    C(/run/netpolicy-routing/route_table), a directory only root can read or write, emptied by a reboot.
    It is the SHA-256 of the arguments, the table names, the interfaces, the routes of the tables as the kernel
    dumps them, and the module's code. The same run again, when one dump of each table gives the same, knows
    from the memo that nothing is to be done, without decoding and comparing the routes again. Anything that
    differs (a route changed behind its back, other arguments) is planned as always, and so is every run in
    diff mode. Check mode reads the memo but does not write it.
author:
  - netpolicy.routing contributors (!UNKNOWN)
extends_documentation_fragment:
  - netpolicy.routing.common
options:
  table:
    description:
      - The routing table, by name (as C(ip route ... table NAME) resolves it through the
        C(rt_tables) files of the namespace) or by number.
      - The table C(local) (255) belongs to the kernel and is refused.
      - Required unless O(tables) is given.
    type: str
  routes:
    description:
      - The routes of the table. Mutually exclusive with O(tables).
      - A route is a mapping of the options below, or one string in the words of C(ip route), for example
        C(100.64.1.0/24 via 198.51.100.1 dev wan1 metric 10), C(blackhole 100.64.2.0/24), or
        C(default nexthop via 198.51.100.1 dev wan1 weight 2 nexthop via 203.0.113.1 dev wan2).
        Both forms can be mixed in one list.
      - 'The words of a string, in this order (brackets mark what may be left out, the words between
        DEST and the first C(nexthop) in any order):
        C([ipv4|ipv6] [TYPE] DEST [via GATEWAY] [dev DEV] [src SRC] [metric METRIC] [proto PROTO]
        [scope SCOPE] [onlink] [nexthop [via GATEWAY] [dev DEV] [weight WEIGHT] [onlink]]...),
        each nexthop with C(via), C(dev) or both.
        Each one gives the option of the same name (C(via) gives O(routes[].gateway), C(ipv4) or
        C(ipv6) gives O(routes[].family), TYPE one of the choices of O(routes[].type)), with the same
        meaning, defaults and checks as in a mapping. C(onlink) is given after every nexthop or after none.
        C(table) is not a word of a route here: the table is O(table).'
      - A string of several lines holds one route per line, in the same words, as a file of routes read
        with C(lookup('ansible.builtin.file', ...)) gives them; blank lines are left out. Errors name the
        line (C(routes[0] line 12)). There are no comments, as Ansible splits a string at its commas before
        the module sees it.
      - With thousands of routes, strings take much less time than mappings (Ansible handles one value
        per route instead of one per option, and the module checks routes that differ only in C(DEST) once),
        and one string of lines (a file) less still, as the controller then handles one value.
    type: list
    elements: raw
    suboptions: &route_options
      dest:
        description:
          - Destination prefix (CIDR; a bare address is a host route), or C(default).
        type: str
        required: true
      gateway:
        description:
          - The next hop (C(via)). The family of the route follows from it.
        type: str
      dev:
        description:
          - The outgoing interface. Without it the kernel picks the interface to the gateway.
        type: str
      src:
        description:
          - Preferred source address for traffic of the host itself (C(src)); must be an address of the host.
          - A route to add or replace whose C(src) the kernel would refuse fails before anything changes,
            also in check mode, naming this option. IPv4 takes an address that table C(local) holds as local,
            that is an address of an interface (up or down) or one within a local route (C(127.0.0.0/8), or
            C(ip route add local 192.0.2.0/24 dev lo table local)); not a broadcast address. IPv6 takes an
            address of an interface once its duplicate address detection is over (not tentative); a link-local
            one only for a route out of its interface. The addresses are read only when such a route is sent.
        type: str
      metric:
        description:
          - Route metric (priority). Default is the kernel's, 0 for IPv4 and 1024 for IPv6.
        type: int
      type:
        description:
          - Route type. V(blackhole), V(unreachable), V(prohibit) and V(throw) routes have no gateway or interface.
        type: str
        default: unicast
        choices: [blackhole, prohibit, throw, unicast, unreachable]
      scope:
        description:
          - Route scope. Default as C(ip route) sets it, V(link) for a unicast route with only an
            interface, else V(global). IPv6 routes are always V(global).
          - The kernel refuses V(host) with a gateway or nexthops, and V(link) with an O(routes[].onlink) gateway,
            whatever else the host has; such a route fails before anything changes, also in check mode.
        type: str
        choices: [global, host, link, site]
      onlink:
        description:
          - Pretend the gateway is directly attached to the interface even if no prefix says so
            (for every nexthop of a multipath route).
        type: bool
        default: false
      proto:
        description:
          - Route protocol, a name of C(/etc/iproute2/rt_protos) or a number.
          - Default V(boot), as C(ip route add) uses.
        type: str
        default: boot
      family:
        description:
          - Address family where the addresses do not say, for example C(dest=default) of a V(blackhole) route.
          - Default is the family of the table entry (O(family)), else V(ipv4).
        type: str
        choices: [ipv4, ipv6]
      nexthops:
        description:
          - The nexthops of a multipath route (at least two). Mutually exclusive with O(routes[].gateway)
            and O(routes[].dev).
        type: list
        elements: dict
        suboptions:
          gateway:
            description:
              - The next hop address. Left out for a point-to-point interface (ppp, a tunnel), as in
                C(nexthop dev ppp0); then O(routes[].nexthops[].dev) is required and
                O(routes[].onlink) cannot be set. IPv4 only, as the kernel takes no IPv6 multipath
                nexthop without a gateway.
              - The kernel deletes a multipath route whole when the interface of one of its nexthops
                goes away (a ppp link that reconnects), not only that nexthop.
            type: str
          dev:
            description:
              - The interface of this nexthop. Required without O(routes[].nexthops[].gateway).
            type: str
          weight:
            description:
              - Share of this nexthop (1..256).
            type: int
            default: 1
  state:
    description:
      - V(present) adds or replaces the listed routes, V(absent) removes them.
      - V(absent) matches a route by its destination and metric only (with its family and the table, the
        kernel's identity of a route); its gateway, interface and other options are not compared. A route
        given by O(routes[].dest) alone removes the route to that destination with the default metric,
        whatever its next hop.
      - V(absent) with O(purge=true) removes every route of the table but the kernel's connected routes.
      - In O(tables), the default of an entry's C(state).
    type: str
    default: present
    choices: [present, absent]
  purge:
    description:
      - Remove the routes of the table that are not listed (or copied).
      - The kernel's connected routes (C(proto kernel), made for the addresses of the host) are never removed.
      - Only the routes of O(family) are touched when it is given, else those of both families.
    type: bool
  copy_from:
    description:
      - Also want, in this table, every route of this table (name or number) as it is now, except those in O(copy_exclude).
      - A listed route wins over a copied one with the same destination and metric.
      - Copies of the kernel's connected routes get C(proto boot).
      - Use O(purge=true) too, so that routes that left the source table leave the copy as well.
    type: str
  copy_exclude:
    description:
      - Destinations (CIDR or C(default)) of O(copy_from) not to copy.
    type: list
    elements: str
  family:
    description:
      - The family of routes that O(purge) and O(copy_from) act on, and the default of the routes' own O(routes[].family).
      - Default is both families.
    type: str
    choices: [ipv4, ipv6]
  tables:
    description:
      - Several tables in one task. Mutually exclusive with O(table), O(routes), O(purge), O(copy_from)
        and O(copy_exclude).
    type: list
    elements: dict
    suboptions:
      table:
        description:
          - The routing table, by name or number.
        type: str
        required: true
      routes:
        description:
          - The routes of the table, as in O(routes) (mappings or strings).
        type: list
        elements: raw
        default: []
        suboptions: *route_options
      state:
        description:
          - As O(state); default is O(state).
        type: str
        choices: [present, absent]
      purge:
        description:
          - As O(purge).
        type: bool
        default: false
      copy_from:
        description:
          - As O(copy_from).
        type: str
      copy_exclude:
        description:
          - As O(copy_exclude).
        type: list
        elements: str
        default: []
      family:
        description:
          - As O(family).
        type: str
        choices: [ipv4, ipv6]
seealso:
  - module: netpolicy.routing.rt_tables_entry
  - module: netpolicy.routing.ip_rule
'''

EXAMPLES = r'''
- name: The MacBook's table leaves by the PPP uplink (seeds 000/001, ip route add default via 123.150.232.1 dev ppp0 table sunusroute)
  netpolicy.routing.route_table:
    table: sunusroute
    routes:
      - {dest: default, gateway: 192.0.2.1, dev: ppp0}

- name: One table per ISP with its network and default route (seed 002)
  netpolicy.routing.route_table:
    tables:
      - table: 1
        routes:
          - {dest: 198.51.100.0/24, dev: eth1, src: 198.51.100.2, scope: link}
          - {dest: default, gateway: 198.51.100.1, dev: eth1}
      - table: 2
        routes:
          - {dest: 192.0.2.0/24, dev: eth2, src: 192.0.2.2, scope: link}
          - {dest: default, gateway: 192.0.2.1, dev: eth2}

- name: Replies for router2 leave by it (seed 004, ip route add default via 192.168.1.2 table router2)
  netpolicy.routing.route_table:
    table: router2
    routes:
      - {dest: default, gateway: 192.168.1.2, dev: eth0}

- name: Table 4 is a copy of main with the DSL default route (seed 003)
  netpolicy.routing.route_table:
    table: 4
    copy_from: main
    copy_exclude: [default]
    purge: true
    routes:
      - dest: default
        gateway: 203.0.113.14
        dev: eth4

- name: Multipath default route, weighted 2:1
  netpolicy.routing.route_table:
    table: main
    routes:
      - dest: default
        nexthops:
          - {gateway: 198.51.100.1, dev: wan1, weight: 2}
          - {gateway: 203.0.113.1, dev: wan2, weight: 1}

- name: Multipath default route over two point-to-point links (no gateway)
  netpolicy.routing.route_table:
    table: main
    routes:
      - default nexthop dev ppp0 weight 1 nexthop dev ppp1 weight 1

- name: Two uplink tables in one task, IPv4 and IPv6, nothing else in them
  netpolicy.routing.route_table:
    tables:
      - table: isp1
        purge: true
        routes:
          - {dest: default, gateway: 198.51.100.1, dev: wan1}
          - {dest: default, gateway: "2001:db8:1::1", dev: wan1}
          - {dest: 192.168.0.0/16, type: unreachable}
      - table: isp2
        purge: true
        routes:
          - {dest: default, gateway: 203.0.113.1, dev: wan2}

- name: Routes as strings in the words of ip route (faster with thousands), mixed with a mapping
  netpolicy.routing.route_table:
    table: isp1
    routes:
      - 100.64.1.0/24 via 198.51.100.1 dev wan1 metric 10
      - blackhole 100.64.2.0/24
      - ipv6 unreachable default
      - default nexthop via 198.51.100.1 dev wan1 weight 2 nexthop via 203.0.113.1 dev wan2
      - {dest: "2001:db8:10::/48", gateway: "2001:db8:1::1", dev: wan1}

- name: Thousands of routes from a file on the controller, one per line in the words of ip route
  netpolicy.routing.route_table:
    table: isp1
    purge: true
    # The file's text as it is, one string: the controller handles one value, not thousands
    # (the fastest form, see the collection's docs/performance.md). A rerun that changes
    # nothing reads the table once.
    routes: "{{ lookup('ansible.builtin.file', 'isp1-routes.txt') }}"

- name: Remove the route to 10.9.0.0/16 from table isp1, whatever its gateway (matched by dest and metric)
  netpolicy.routing.route_table:
    table: isp1
    state: absent
    routes:
      - 10.9.0.0/16
      - {dest: "2001:db8:9::/48", metric: 1024}

- name: Remove every route of table 7375 but the connected ones
  netpolicy.routing.route_table:
    table: 7375
    state: absent
    purge: true
'''

RETURN = r'''
commands:
  description: The C(ip route) commands equivalent to what was changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample:
    - ip route add default via 198.51.100.1 dev wan1 table isp1
    - ip route del 10.0.0.0/8 via 192.0.2.1 dev lan0 table isp1
routes:
  description:
    - The routes of the table(s) after the change (predicted in check mode), the kernel's connected ones
      included, one line each as in the diff (C(ip route) arguments; IPv6 ones start with C(ipv6)).
    - Only in diff mode, like the diff itself; a table of thousands of routes would otherwise make every
      result that long.
  returned: success, in diff mode
  type: list
  elements: str
  sample:
    - 198.51.100.0/24 dev wan1 table isp1 proto kernel src 198.51.100.2
    - default via 198.51.100.1 dev wan1 table isp1
    - ipv6 default via 2001:db8:1::1 dev wan1 table isp1
table:
  description: The number of the table (single form).
  returned: success, when O(table) is given
  type: int
  sample: 101
tables:
  description: The numbers of the tables, in the order given.
  returned: success
  type: list
  elements: int
  sample: [101, 102]
'''

from ansible.module_utils.basic import AnsibleModule

# First: the module_utils below load through it (compiled once per router, not on every run).
from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache  # noqa: F401 pylint: disable=unused-import
from ansible_collections.netpolicy.routing.plugins.module_utils._module import require_pyroute2, run
from ansible_collections.netpolicy.routing.plugins.module_utils._routes import ROUTE_TABLE_MODULE_ARGS, change


def main():
    module = AnsibleModule(**ROUTE_TABLE_MODULE_ARGS)
    require_pyroute2(module)
    run(module, change)


if __name__ == '__main__':
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ip_rule
short_description: Routing policy rules (ip rule)
version_added: 0.1.0
description:
  - Adds and removes entries of the routing policy database, like C(ip rule add) and C(ip rule del),
    for IPv4 and IPv6.
  - Give one rule with the rule options (O(from), O(table), ...), or a list of them in O(rules);
    a list is planned, applied and verified as one change.
  - A rule is identified by all of its attributes, compared as the kernel reports them, so a rule
    that exists already, added by hand with C(ip rule add) or by an earlier run, is never added
    again. A rule whose attributes change is a new rule; the old one goes only with O(state=absent)
    or O(purge_priorities).
  - A rule without O(priority) matches an existing rule with the same other attributes at any
    priority. When it has to be added it gets the priority the kernel would pick (one below the
    second rule of its family, as C(ip rule add) without C(priority) does), and the request and
    RV(commands) say it explicitly. With O(state=present), one list cannot hold the same rule twice
    where one of them has no priority (with another priority, or none either), as which priority is meant
    is not clear; the task fails naming both entries.
  - New rules are added before old ones are deleted, so traffic never falls through a gap; a rule
    the kernel counts as the same as a new one (it ignores C(not) and the goto target, and
    C(from)/C(to)/C(tos) when the new rule does not have them) is deleted first.
author:
  - netpolicy.routing contributors (!UNKNOWN)
extends_documentation_fragment:
  - netpolicy.routing.common
options:
  rules:
    description:
      - The rules, each with the rule options below. Not together with the options of a single rule.
      - An empty list with O(purge_priorities) removes every rule in that range.
    type: list
    elements: dict
    suboptions:
      priority:
        description: Priority (C(pref)) of the rule, 0..4294967295. See the description for what happens when it is not set.
        type: int
      from:
        description: Source address or prefix (C(from)); C(all) or not set matches any.
        type: str
      to:
        description: Destination address or prefix (C(to)); C(all) or not set matches any.
        type: str
      iif:
        description: Incoming interface name. It need not exist yet (a C(ppp) link that comes later).
        type: str
      oif:
        description: Outgoing interface name (for sockets bound to it). It need not exist yet.
        type: str
      fwmark:
        description:
          - Firewall mark, 0..0xffffffff, decimal or C(0x) hex, optionally with a mask as C(MARK/MASK) (C(0x2/0xff)).
          - A mark with bits outside its mask (C(0x1/0xff00)) is refused, as the kernel compares only the bits of the
            mask and the rule would not match what it says. A mark of 0 with a mask (C(0/0xff)) matches packets
            whose bits of the mask are all clear.
        type: str
      fwmask:
        description: Mask of O(rules[].fwmark); needs a mark. Default all bits (C(0xffffffff)).
        type: str
      tos:
        description: TOS / DS field to match, 0..255 (C(0x10)); the ECN bits (0x3) must be 0.
        type: str
      ipproto:
        description: IP protocol, a name (C(tcp), C(udp), C(icmp), C(ipv6-icmp), ...) or a number.
        type: str
      sport:
        description: Source port or range C(FIRST-LAST), 1..65534.
        type: str
      dport:
        description: Destination port or range C(FIRST-LAST), 1..65534.
        type: str
      uidrange:
        description: Range of user ids of local sockets, C(FIRST-LAST) or one uid, 0..4294967294.
        type: str
      invert:
        description: Invert the selectors (C(ip rule add not ...)).
        type: bool
        default: false
      table:
        description:
          - Routing table to look up, a name (as C(/etc/iproute2/rt_tables) and C(rt_tables.d) define it, or
            C(main), C(local), C(default)) or a number. Required for O(rules[].action=lookup), not allowed with other actions.
        type: str
      action:
        description:
          - What the rule does. Default C(goto) when O(rules[].goto) is given, else C(lookup).
        type: str
        choices: [lookup, goto, nop, blackhole, unreachable, prohibit]
      goto:
        description: Priority to jump to, for O(rules[].action=goto); must be above the rule's own O(rules[].priority), which is then required.
        type: int
      suppress_prefixlength:
        description: Ignore routes of the looked-up table with this prefix length or shorter (C(0) ignores default routes).
        type: int
      family:
        description:
          - Address family of the rule. Inferred from O(rules[].from) and O(rules[].to); needed for an IPv6 rule
            without addresses. Default the top-level O(family), else C(ipv4).
        type: str
        choices: [ipv4, ipv6]
  state:
    description:
      - C(present) adds the rules that are missing; C(absent) deletes them. A rule without O(priority) is
        deleted at every priority it has.
    type: str
    default: present
    choices: [present, absent]
  purge_priorities:
    description:
      - A priority range C(LOW-HIGH) or one priority (C(1000-1999)) that this task owns, or several of them
        separated by commas (C(400-499,3000-3999)); rules in them that are not listed are deleted (with
        O(state=present) only).
      - Applies to the rules of O(family) when that is set, else to both IPv4 and IPv6.
      - The kernel's own rules (C(proto kernel), such as C(0 lookup local)) are never deleted.
    type: str
  priority:
    description: Priority of the single rule. See O(rules[].priority).
    type: int
  from:
    description: Source of the single rule. See O(rules[].from).
    type: str
  to:
    description: Destination of the single rule. See O(rules[].to).
    type: str
  iif:
    description: Incoming interface of the single rule. See O(rules[].iif).
    type: str
  oif:
    description: Outgoing interface of the single rule. See O(rules[].oif).
    type: str
  fwmark:
    description: Firewall mark of the single rule. See O(rules[].fwmark).
    type: str
  fwmask:
    description: Firewall mark mask of the single rule. See O(rules[].fwmask).
    type: str
  tos:
    description: TOS of the single rule. See O(rules[].tos).
    type: str
  ipproto:
    description: IP protocol of the single rule. See O(rules[].ipproto).
    type: str
  sport:
    description: Source port or range of the single rule. See O(rules[].sport).
    type: str
  dport:
    description: Destination port or range of the single rule. See O(rules[].dport).
    type: str
  uidrange:
    description: Uid range of the single rule. See O(rules[].uidrange).
    type: str
  invert:
    description: Invert the selectors of the single rule. See O(rules[].invert).
    type: bool
    default: false
  table:
    description: Table of the single rule. See O(rules[].table).
    type: str
  action:
    description: Action of the single rule. See O(rules[].action).
    type: str
    choices: [lookup, goto, nop, blackhole, unreachable, prohibit]
  goto:
    description: Goto target of the single rule. See O(rules[].goto).
    type: int
  suppress_prefixlength:
    description: Suppress prefix length of the single rule. See O(rules[].suppress_prefixlength).
    type: int
  family:
    description:
      - Family of the single rule, or the default family of O(rules) without addresses.
      - Also limits O(purge_priorities) to this family.
    type: str
    choices: [ipv4, ipv6]
seealso:
  - module: netpolicy.routing.rt_tables_entry
  - module: netpolicy.routing.route_table
'''

EXAMPLES = r'''
- name: Traffic of one host uses the table of the fast uplink (seeds 000/001, ip rule add from 192.168.1.169 table sunusroute)
  netpolicy.routing.ip_rule:
    from: 192.168.1.169
    table: sunusroute

- name: Replies marked for router2 use its table (seed 004, ip rule add fwmark 0x2 lookup router2)
  netpolicy.routing.ip_rule:
    fwmark: 0x2
    table: router2
    priority: 1002

- name: Marked web traffic uses the DSL table (seed 003, ip rule add fwmark 4 table 4)
  netpolicy.routing.ip_rule:
    fwmark: 4
    table: 4
    priority: 1004

- name: Two ISPs, by source address and by mark, owning the range 1000-1999 exactly (seed 002)
  netpolicy.routing.ip_rule:
    purge_priorities: 1000-1999
    rules:
      - {priority: 1000, from: 198.51.100.2, table: isp1}
      - {priority: 1001, from: 203.0.113.2, table: isp2}
      - {priority: 1010, fwmark: 1, table: isp1}
      - {priority: 1011, fwmark: 2, table: isp2}
      - {priority: 1020, from: "2001:db8:1::/64", table: isp1}

- name: Use the main table unless it only has a default route (split access)
  netpolicy.routing.ip_rule:
    priority: 900
    table: main
    suppress_prefixlength: 0

- name: Jump over a block of rules for local traffic
  netpolicy.routing.ip_rule:
    priority: 100
    to: 192.168.0.0/16
    goto: 2000

- name: Remove a rule, at whatever priority it has
  netpolicy.routing.ip_rule:
    from: 192.0.2.10
    table: 100
    state: absent

- name: Inside a network namespace
  netpolicy.routing.ip_rule:
    netns: router1
    family: ipv6
    priority: 1500
    action: unreachable
'''

RETURN = r'''
commands:
  description: The iproute2 commands equivalent to what was done (or would be done, in check mode).
  returned: always
  type: list
  elements: str
  sample: ['ip rule add priority 1000 from 192.0.2.10 lookup isp2', 'ip -6 rule del priority 1001 from all lookup 200']
rules:
  description: The rules the task lists, as they are after the change (empty for O(state=absent)).
  returned: always
  type: list
  elements: dict
  sample:
    - family: ipv4
      priority: 1000
      from: 192.0.2.10/32
      action: lookup
      table: isp2
      text: "1000:\tfrom 192.0.2.10 lookup isp2"
'''

from ansible.module_utils.basic import AnsibleModule

# First: the module_utils below load through it (compiled once per router, not on every run).
from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache  # noqa: F401 pylint: disable=unused-import
from ansible_collections.netpolicy.routing.plugins.module_utils import _module
from ansible_collections.netpolicy.routing.plugins.module_utils._rules import IP_RULE_SPEC, change


def main():
    module = AnsibleModule(argument_spec=IP_RULE_SPEC, supports_check_mode=True)
    _module.require_pyroute2(module)
    _module.run(module, change)


if __name__ == '__main__':
    main()

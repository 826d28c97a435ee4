#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: connmark_return
short_description: Return traffic leaves the way its connection came in (connmark)
version_added: 0.1.0
description:
  - Gives a NEW connection that matches an entry (arrived on an interface, from a router's MAC
    address, or from a source prefix) a conntrack mark, and copies that mark back onto the packets
    of the connection, so an C(ip rule fwmark) rule (see M(netpolicy.routing.ip_rule)) routes its
    replies by the router or uplink it came in by. Like Shorewall's C(track).
  - Only the bits in O(mask) of the packet and conntrack marks are read or written; other bits
    belong to others (mwan3, firewalls) and are left as they are.
  - A connection keeps the mark of the first entry it matched.
  - With nftables, everything a O(name) owns is the table C(inet netpolicy_NAME), replaced in one
    transaction; other tables are never touched. Marking and restoring on interfaces run in a
    prerouting chain at priority C(mangle) (before DNAT and the routing decision); restoring for
    local replies runs in a C(type route) output chain, so the restored mark re-routes them.
  - With iptables, it owns the chains C(NP_NAME_PRE), C(NP_NAME_OUT) (and C(NP_NAME_E1)... for
    entries with O(entries[].exclude_source)) of the mangle table of iptables and ip6tables, each
    jumped to once from PREROUTING and OUTPUT, written with C(iptables-restore --noflush) in one
    transaction per family.
  - The desired rule set is first loaded into a throwaway network namespace (C(unshare --net)) to
    learn how nft or iptables-save print it; that is compared with the kernel's, so a second run
    changes nothing and check mode predicts exactly.
author:
  - netpolicy.routing contributors (!UNKNOWN)
extends_documentation_fragment:
  - netpolicy.routing.common
options:
  name:
    description:
      - Name of the rule set this task owns. A letter, then up to 19 letters, digits or V(_).
    type: str
    required: true
  entries:
    description:
      - Which NEW connections get which mark. Each entry needs at least one of O(entries[].in_interface),
        O(entries[].source_mac) and O(entries[].source); what it gives must all match.
      - Two entries with the same match and different marks are refused.
    type: list
    elements: dict
    default: []
    suboptions:
      mark:
        description:
          - The conntrack mark a matching connection gets, within O(mask), not 0.
          - With O(mask=0x3f00), for example, V(0x100) or V(0x200).
        type: int
        required: true
      in_interface:
        description: The connection came in on this interface (for example the second uplink).
        type: str
      source_mac:
        description:
          - The connection's first packet came from this MAC address, for example a second router on
            the same LAN (seed 004). Colon separated.
        type: str
      source:
        description: The connection comes from this address or prefix (IPv4 or IPv6).
        type: str
      protocol:
        description: Only connections of this protocol.
        type: str
        choices: [tcp, udp, sctp]
      dport:
        description:
          - Only connections to this destination port (V(80)) or range (V(8000-8100)). Needs O(entries[].protocol).
        type: raw
      exclude_source:
        description:
          - Except connections from these addresses or prefixes, for example the LAN itself.
          - With O(entries[].source), of its family; otherwise each family's exclusions apply to that family.
        type: list
        elements: str
        default: []
  restore_on:
    description: Where the mark of a connection is copied back onto its packets.
    type: dict
    default: {}
    suboptions:
      prerouting:
        description:
          - Packets arriving on these interfaces, for example the LAN for forwarded replies.
        type: list
        elements: str
        default: []
      output:
        description: Packets the host itself sends, for example replies of its own services.
        type: bool
        default: false
  mask:
    description: The bits of the packet and conntrack marks this rule set owns, not 0.
    type: int
    default: 0xff
  backend:
    description:
      - V(nftables) (the C(nft) command), V(iptables) (C(iptables-restore) and C(ip6tables-restore),
        legacy or nft), or V(auto), nftables when C(nft) works, else iptables. The result says which.
      - Do not use both backends for the same O(name); O(state=absent) removes what the chosen one owns.
    type: str
    choices: [auto, nftables, iptables]
    default: auto
  state:
    description:
      - V(present) makes the rule set exactly as given.
      - V(absent) removes everything O(name) owns, and nothing else.
    type: str
    choices: [present, absent]
    default: present
requirements:
  - nftables (C(nft)) or iptables on the managed host, and C(unshare) (util-linux)
'''

EXAMPLES = r'''
- name: Connections forwarded by router2 are answered through router2 (seed 004)
  netpolicy.routing.connmark_return:
    name: router2
    entries:
      - mark: 2
        source_mac: "52:54:00:c2:a5:43"
        exclude_source: [192.168.1.0/24]
        protocol: tcp
        dport: 80
    restore_on:
      output: true

- name: A router with two uplinks answers inbound connections by the uplink they came in on
  netpolicy.routing.connmark_return:
    name: uplinks
    entries:
      - {mark: 1, in_interface: wan1}
      - {mark: 2, in_interface: wan2}
    restore_on:
      prerouting: [lan0]
      output: true

- name: Share the mark with mwan3, which owns 0x3f00
  netpolicy.routing.connmark_return:
    name: uplinks
    mask: 0xff
    entries:
      - {mark: 2, in_interface: wan2}
    restore_on: {prerouting: [lan0]}

- name: Remove the rule set
  netpolicy.routing.connmark_return:
    name: uplinks
    state: absent
'''

RETURN = r'''
backend:
  description: The backend used, V(nftables) or V(iptables).
  returned: success
  type: str
  sample: nftables
commands:
  description:
    - The script run (or, in check mode, that would be run), one line an element. For nftables an
      C(nft -f) script (one transaction); for iptables an C(iptables-restore --noflush) script per family.
  returned: always
  type: list
  elements: str
  sample: ["nft -f - <<'EOF'", "table inet netpolicy_uplinks", "delete table inet netpolicy_uplinks",
           "table inet netpolicy_uplinks {", "...", "}", "EOF"]
'''

from ansible.module_utils.basic import AnsibleModule

# First: the module_utils below load through it (compiled once per router, not on every run).
from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache  # noqa: F401 pylint: disable=unused-import
from ansible_collections.netpolicy.routing.plugins.module_utils._module import require_pyroute2, run
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import CONNMARK_SPEC
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark_return import change


def main():
    module = AnsibleModule(argument_spec=CONNMARK_SPEC, supports_check_mode=True)
    require_pyroute2(module)
    run(module, change)


if __name__ == '__main__':
    main()

#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: rt_tables_entry
short_description: Name a routing table (rt_tables), as C(ip route ... table NAME) resolves it
version_added: 0.1.0
description:
  - Maps a routing table name to its number in an iproute2 rt_tables drop-in file, so
    C(ip route ... table NAME) and C(ip rule ... lookup NAME) resolve the name.
  - Reads every file iproute2 reads table names from (C(/etc/iproute2/rt_tables),
    C(/etc/iproute2/rt_tables.d/*.conf), and the C(/usr/share/iproute2) ones of newer iproute2),
    and refuses a name or id that another line already maps differently, naming that file and line.
  - A name that another file already maps to the same id resolves already; nothing is written then.
  - Writes only its own file O(path), once per run, atomically (temporary file and rename) and under
    a lock, so runs at the same time cannot corrupt it. Comments and other lines of the file are kept
    as they are.
author:
  - netpolicy.routing contributors (!UNKNOWN)
extends_documentation_fragment:
  - netpolicy.routing.common
options:
  name:
    description:
      - Name of the routing table.
      - Letters, digits, V(_), V(.) and V(-), not starting with V(.) or V(-); not a number (iproute2 looks
        names up before numbers), not a builtin name (V(unspec), V(default), V(main), V(local)), not
        V(all) or V(cache) (words of their own in C(ip route show table)).
      - Required unless O(entries) is given.
    type: str
  id:
    description:
      - Number of the routing table, 1 to 2147483647; not the reserved 253, 254, 255.
      - A larger id is refused, although the kernel has tables up to 4294967295, because iproute2 reads the number of an
        rt_tables line as a signed 32-bit integer and ignores a line whose number is above 2147483647, so a name
        for such a table would never resolve. M(netpolicy.routing.route_table) and M(netpolicy.routing.ip_rule)
        take those tables by their number.
      - Required with O(state=present). With O(state=absent) it is optional; when given, it must match.
    type: int
  entries:
    description:
      - Several names at once, planned, applied and verified as one change.
      - Mutually exclusive with O(name) and O(id). O(state) applies to all of them.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the routing table, as O(name).
        type: str
        required: true
      id:
        description: Number of the routing table, as O(id).
        type: int
  state:
    description:
      - V(present) maps the names to the ids.
      - V(absent) removes their lines from O(path). A name that another file defines cannot be removed
        here and fails.
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - The file this module writes, C(/etc/iproute2/rt_tables) or a C(/etc/iproute2/rt_tables.d/NAME.conf)
        drop-in. The directory is created when missing; a new file gets mode 0644.
      - With O(netns), the file lives under C(/etc/netns/NAME/iproute2/) when that directory exists, else it is
        the host's file (see O(netns)).
    type: str
    default: /etc/iproute2/rt_tables.d/netpolicy.conf
notes:
  - A lock file C(.netpolicy.lock) is kept beside O(path).
'''

EXAMPLES = r'''
- name: Name table 7375 for the MacBook's uplink (seeds 000/001)
  netpolicy.routing.rt_tables_entry:
    name: sunusroute
    id: 7375

- name: Name the tables of both uplinks in one change (seeds 002, 003)
  netpolicy.routing.rt_tables_entry:
    entries:
      - {name: isp1, id: 101}
      - {name: isp2, id: 102}

- name: Name the table of the second router inside network namespace lab-router (seed 004)
  netpolicy.routing.rt_tables_entry:
    name: router2
    id: 200
    netns: lab-router

- name: Remove the name again
  netpolicy.routing.rt_tables_entry:
    name: router2
    state: absent
'''

RETURN = r'''
commands:
  description: Shell equivalents of the change made (or, in check mode, that would be made).
  returned: always
  type: list
  elements: str
  sample: ["echo '7375 sunusroute' >> /etc/iproute2/rt_tables.d/netpolicy.conf"]
entries:
  description: The name and id pairs of this task in effect after the run; empty with O(state=absent).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Table name.
      type: str
      returned: always
    id:
      description: Table id.
      type: int
      returned: always
  sample: [{"name": "sunusroute", "id": 7375}]
path:
  description: The file the module owns, as found on the host (under C(/etc/netns/NAME/) for O(netns)).
  returned: always
  type: str
  sample: /etc/iproute2/rt_tables.d/netpolicy.conf
'''

from ansible.module_utils.basic import AnsibleModule

# First: the module_utils below load through it (compiled once per router, not on every run).
from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache  # noqa: F401 pylint: disable=unused-import
from ansible_collections.netpolicy.routing.plugins.module_utils._module import require_pyroute2, run
from ansible_collections.netpolicy.routing.plugins.module_utils._rt_tables import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, REQUIRED_ONE_OF, change)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                           required_one_of=REQUIRED_ONE_OF, supports_check_mode=True)
    if module.params['netns']:
        require_pyroute2(module)
    run(module, change)


if __name__ == '__main__':
    main()

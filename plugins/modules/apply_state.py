#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: apply_state
short_description: Apply the whole state of one of the collection's roles as one change (used by the roles)
version_added: 0.1.0
description:
  - The roles M(netpolicy.routing.rt_tables_entry), M(netpolicy.routing.route_table),
    M(netpolicy.routing.ip_rule) and M(netpolicy.routing.connmark_return) would otherwise run as
    one task each; the roles C(split_access), C(source_routing) and C(reply_via_same_router) hand
    their desired state to this module instead, which runs the same modules' logic in order in one
    task. It is an implementation detail of the roles; playbooks use the roles or the four modules.
  - The state has the format of the agent's state files (C(/etc/netpolicy/routing/ROLE.json),
    version 1, see the agent guide), plus the nftables file's content in C(nftables.content).
  - What the role's previous run saved and this state no longer has is removed (tables emptied,
    table names dropped, the nftables table deleted, sysctls and the main table's IPv4 default route
    given back what they were before the role set them). A table name the role found in another
    rt_tables file (written there before the role) is left there.
  - With O(persist=false) the same document is kept as C(STATE_DIR/ROLE.applied), which the agent
    does not read, so the next run still knows what to remove; a role with nothing to apply keeps
    neither file.
  - With C(--diff), each step shows what it owns before and after, under the step's name
    (C(rt_tables_entry), C(route_table), C(ip_rule), C(sysctl), C(nftables), C(connmark_return));
    the nftables table as C(nft list table) prints it, the sysctls as C(KEY = VALUE) lines.
  - Before changing anything the module records the state the change touches (policy rules, the
    routes of the tables, the nftables tables, the role's files, the sysctls). If a step fails,
    that recorded state is put back, so the router is never left half-changed.
  - With O(confirm_timeout), a process detached from the connection puts the recorded state back
    after that many seconds unless confirmed first (O(confirm=true), which the task itself does over
    a new connection right after the change). Where systemd runs the host, the process is moved into
    a scope unit of its own (RV(rollback.scope)), so that it outlives the connection's login session
    even when logind ends a session's processes with it (C(KillUserProcesses=yes)). Until then the
    role's files as they were are kept in C(STATE_DIR/ROLE.pending); if the router restarts first,
    the agent's C(netpolicy-routing apply) puts them back before it applies the saved states.
notes:
  - The module has an action plugin, run on the controller, which turns O(variables) into O(state) and
    O(checks), and with O(confirm_timeout) confirms the change over a new connection.
  - In check mode, a table named by this same change is shown by its number in RV(commands), as its
    name is not written yet; the changes predicted are the same.
author:
  - netpolicy.routing contributors (!UNKNOWN)
extends_documentation_fragment:
  - netpolicy.routing.common
options:
  role:
    description:
      - The role whose state this is; names the state file and the rollback.
      - Required unless the module only installs the agent (O(agent=true)) or its dependencies (O(dependencies)).
    type: str
    choices: [reply_via_same_router, source_routing, split_access]
  state:
    description:
      - The desired state (version-1 format of the agent's state files). Required unless
        O(confirm=true) or O(variables).
    type: dict
  variables:
    description:
      - The public variables of O(role) by name (for example C(split_access_uplinks)), as the role
        passes them. On the controller, the module's action plugin checks them and turns them into
        O(state) and O(checks); bad variables fail the task before anything reaches the router,
        with every problem named in one message.
      - When the role has nothing to apply (no uplink, policy or router), O(persist) and O(agent)
        are taken as false.
      - Not with O(state) or O(checks).
    type: dict
  persist:
    description:
      - Save the state in O(state_dir) for the agent C(netpolicy-routing); false removes it (and keeps
        the record described above instead).
    type: bool
    default: false
  state_dir:
    description: Directory of the roles' state files.
    type: path
    default: /etc/netpolicy/routing
  confirm_timeout:
    description:
      - Seconds after the change is applied at which the router puts back the state from before
        this run by itself, unless confirmed (O(confirm=true)) first. V(0) arms nothing.
      - When a rollback was armed, the action plugin then drops the connection and confirms over a
        new one. If the router cannot be reached again (the change cut the path to it) or the
        change cannot be confirmed, the task fails saying so; the router puts its previous state
        back by itself when the timeout expires.
    type: int
    default: 0
  confirm:
    description:
      - Only confirm the change of an earlier run of this role (disarm its rollback); fails when
        the rollback already happened.
    type: bool
    default: false
  checks:
    description:
      - What only the router can tell about the role's variables, checked before anything changes;
        every check that fails is reported, each naming its C(field).
      - Each has C(field) (the variable, for the message) and one of C(interface) (it exists; with
        C(ipv4=true), it has an IPv4 address),
        C(host_of) with C(interfaces) (that IPv4 address is a host of those interfaces' subnets,
        not their own address), or C(gateway) with C(interface) (the kernel reaches the gateway
        directly by that interface).
    type: list
    elements: dict
    default: []
  dependencies:
    description:
      - What the modules and the agent need on the router (C(nft), C(conntrack), the Python module
        pyroute2), looked for before anything else.
      - V(install) installs what is lacking with the router's package manager (C(apt-get) or C(dnf),
        unattended), then goes on; its command is the first of RV(commands). In check mode, a router
        that lacks something fails, saying what a real run would install.
      - V(check) fails when something is lacking, naming the packages and O(dependencies_variable).
      - V(report) only returns what is lacking (RV(lacking), RV(package_manager)) and does nothing
        else.
      - O(role) is not needed with this option alone.
    type: str
    choices: [install, check, report]
  dependencies_variable:
    description: The variable that lets the role install what is missing, for the message of O(dependencies=check).
    type: str
    default: agent_install_dependencies
  agent:
    description:
      - Also install or update the agent C(netpolicy-routing) (O(agent_command)) and its engine
        (C(engine.zip) in O(agent_library)), the collection's module_utils as this module has them,
        run by the Python this module runs with. Only files that differ are written, before the
        state file.
    type: bool
    default: false
  agent_command:
    description: Where the agent's command goes (with O(agent=true)).
    type: path
    default: /usr/local/bin/netpolicy-routing
  agent_library:
    description: The directory of the agent's engine (with O(agent=true)).
    type: path
    default: /usr/local/lib/netpolicy-routing
  agent_service:
    description:
      - With O(agent=true), where systemd runs the host (C(/run/systemd/system) exists), also install the
        unit C(/etc/systemd/system/netpolicy-routing.service) that runs C(netpolicy-routing watch), enable
        it, and start it, or restart it when the command, the engine or the unit was written. This comes
        after the state file, so a restarted agent reads the new state.
      - Without systemd (a container, a network namespace) nothing is done for the unit.
      - A failure of C(systemctl) fails the task; the change itself was made by then.
    type: bool
    default: false
'''

EXAMPLES = r'''
# What a role does, by hand: a table for a second uplink and a rule for one host,
# put back by the router itself unless confirmed within 60 seconds.
- name: Apply the state, armed to roll back
  netpolicy.routing.apply_state:
    role: source_routing
    state:
      rt_tables_entry:
        entries: [{name: isp2, id: 102}]
      route_table:
        tables:
          - table: isp2
            purge: true
            routes: ["default via 203.0.113.1 dev wan2"]
      ip_rule:
        rules: [{priority: 1000, from: 192.168.1.10, table: isp2}]
        purge_priorities: 1000-1999
    confirm_timeout: 60

# The agent's command, engine and unit alone (what the role netpolicy.routing.agent does).
- name: Install the agent
  netpolicy.routing.apply_state:
    agent: true
    agent_service: true
# By hand: the change of an earlier run with confirm_timeout (apply_state confirms its
# own change over a new connection; this is for a change whose confirmation failed).
- name: Confirm the change
  netpolicy.routing.apply_state:
    role: source_routing
    confirm: true

# What the role split_access does: its variables, checked and turned into state on the controller.
- name: Apply split access over two uplinks
  netpolicy.routing.apply_state:
    role: split_access
    variables:
      split_access_lan_interfaces: [lan0]
      split_access_uplinks:
        - {name: isp1, interface: wan1, gateway: 198.51.100.1, address: 198.51.100.2}
        - {name: isp2, interface: wan2, gateway: 192.0.2.1, address: 192.0.2.2}
    persist: true
'''

RETURN = r'''
agent_changed:
  description:
    - Whether the agent's command or engine was written (or would be, in check mode).
    - With O(agent_service=true), also whether its unit was written, enabled, started or restarted.
  returned: when O(agent=true)
  type: bool
  sample: false
lacking:
  description: The packages of what the router lacks (C(nft), C(conntrack), pyroute2), by its package manager's names.
  returned: with O(dependencies=report), or when the module fails for what is lacking
  type: list
  elements: str
  sample: [python3-pyroute2]
package_manager:
  description: The router's package manager (V(apt) or V(dnf)), or null when it has neither.
  returned: with O(dependencies=report), or when the module fails for what is lacking
  type: str
  sample: apt
commands:
  description: What was changed (or would be, in check mode), as iproute2 and nft commands and file writes.
  returned: always
  type: list
  elements: str
  sample: ["ip rule add priority 2000 from 192.0.2.10 lookup isp2", "write /etc/netpolicy/routing/source_routing.json"]
rollback:
  description: The armed rollback, when O(confirm_timeout) is set.
  returned: when a rollback was armed
  type: dict
  contains:
    pid:
      description: The process that puts the previous state back unless confirmed.
      type: int
      sample: 4242
    timeout:
      description: Seconds from the end of the change to the rollback.
      type: int
      sample: 30
    scope:
      description:
        - The systemd scope unit of the process, where systemd runs the host.
        - When it could not be made (no C(busctl), D-Bus refused), the task warns and the process
          stays in the connection's login session.
      type: str
      returned: where systemd runs the host and the scope was made
      sample: netpolicy-routing-rollback-source_routing-4242.scope
'''

from functools import partial

from ansible.module_utils.basic import AnsibleModule

# First: the module_utils below load through it (compiled once per router, not on every run).
from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache  # noqa: F401 pylint: disable=unused-import
from ansible_collections.netpolicy.routing.plugins.module_utils._module import require_pyroute2, run
from ansible_collections.netpolicy.routing.plugins.module_utils._apply import APPLY_STATE_SPEC, change
from ansible_collections.netpolicy.routing.plugins.module_utils._install import MissingPackages, ensure, lacking


def main():
    module = AnsibleModule(argument_spec=APPLY_STATE_SPEC, supports_check_mode=True)
    if module.params['variables'] is not None:
        module.fail_json(msg='variables: turned into state by the action plugin of '
                             'netpolicy.routing.apply_state on the controller; run the module through Ansible')
    dependencies = module.params['dependencies']
    if dependencies == 'report':
        manager, packages = lacking()
        module.exit_json(changed=False, commands=[], package_manager=manager, lacking=packages)
    installed = []
    # Before pyroute2 is required: a router without it is told so in the role's words.
    if dependencies:
        try:
            installed = ensure(dependencies == 'install', module.params['dependencies_variable'], module.check_mode)
        except MissingPackages as exc:
            module.fail_json(msg=str(exc), package_manager=exc.manager, lacking=exc.packages)
    require_pyroute2(module)
    run(module, partial(change, installed=installed))


if __name__ == '__main__':
    main()

# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: what a role's variables become on the controller.

Each role hands its public variables to its one ``apply_state`` task; the action
plugin of that module turns them, here in Python, into the checks of the
variables, the desired state and the router-side checks (``_<role>.role_input``).
Done in Jinja, this templating was most of a fleet run's controller time.

Values arrive as Ansible templated them; the role's argument spec has checked
their types, but a role may be run without it (``include_role`` of a task file,
a fuzzing test), so every value is coerced the way the role's Jinja did and a bad
one becomes an error naming the field, never an exception.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import ipaddress
import re

from ansible_collections.netpolicy.routing.plugins.module_utils._rt_tables import MAX_NAMED_TABLE_ID, RESERVED_IDS

# errors: every problem of the variables, each naming the variable and item; state:
# the module's `state`; checks: the module's `checks`; empty: the role has nothing
# to apply (no uplink, policy or router), so nothing is saved for the agent.
RoleInput = collections.namedtuple('RoleInput', 'errors state checks empty')

# The header of the rule set files the roles write, as the roles' templates wrote it.
MANAGED = 'Ansible managed'

# A dotted-quad IPv4 address (matched whole: fullmatch), also part of longer patterns.
IPV4 = r'((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
IPV4_RE = re.compile(IPV4)


def to_int(value, default=0):
    """Jinja's ``int`` filter: an int, or what a string or number reads as, else ``default``."""
    try:
        if isinstance(value, str):
            return int(value, 10)
        return int(value)
    except (TypeError, ValueError, OverflowError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return default


def is_integer(value):
    """An int, not a bool (nor a float): a table or mark of True or 2.0 would reach the
    modules as the text 'True' or '2.0'."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_table_id(value):
    """A table number a role may give a name: 1..2^31-1 (iproute2 reads a larger one as
    negative), not the kernel's default, main or local (253-255)."""
    return is_integer(value) and 1 <= value <= MAX_NAMED_TABLE_ID and value not in RESERVED_IDS


def is_list(value):
    """A list of items. A string or a mapping is not one here (Jinja's ``is sequence``
    took a mapping for one and iterated its keys)."""
    return isinstance(value, (list, tuple))


def to_str(value):
    """Jinja's ``string`` filter (None is 'None', as there)."""
    return value if isinstance(value, str) else str(value)


def or_default(value, default):
    """Jinja's ``default(x, true)`` and ``value or x``: a false value is replaced."""
    return value if value else default


def host_bits_error(prefix):
    """'192.168.1.1/24 has host bits set (did you mean 192.168.1.0/24?)' for a prefix whose
    address is not its network's (the kernel would ignore those bits), else None. Its
    syntax is the caller's to check: a value that is no prefix gives None."""
    text = to_str(prefix)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if network.network_address == ipaddress.ip_address(text.split('/')[0]):
        return None
    return '%s has host bits set (did you mean %s?)' % (text, network)

# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the one pyroute2 seam.

Everything that touches pyroute2 or network namespaces goes through here, so
the rest of module_utils stays plain logic. Works with pyroute2 0.7.2
(Debian 12's python3-pyroute2) and with current releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError

try:
    from pyroute2 import IPRoute
    from pyroute2 import netns as _pyroute2_netns
    from pyroute2.netlink.exceptions import NetlinkError
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError:
    IPRoute = None
    _pyroute2_netns = None
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = traceback.format_exc()

    class NetlinkError(Exception):
        """Stand-in so ``except NetlinkError`` works without pyroute2."""

        code = 0

NETNS_RUN_DIR = '/run/netns'


def enter_netns(name):
    """Move this process into network namespace ``name`` (never creates one).

    Modules are short-lived processes, so the whole process moves: netlink
    sockets and ``nft``/``iptables`` child processes then all act there.
    """
    if not name:
        return
    if '/' in name or name in ('.', '..'):
        raise InputError('netns', 'not a namespace name: %r' % name)
    if not os.path.exists(os.path.join(NETNS_RUN_DIR, name)):
        raise InputError('netns', 'network namespace %r does not exist (see ip netns list)' % name)
    # flags=0: open an existing namespace only; pyroute2's default would create it.
    _pyroute2_netns.setns(name, flags=0)


def etc_path(path, netns=None):
    """Where ``path`` under /etc lives for ``netns``.

    ``ip netns exec NAME`` bind-mounts /etc/netns/NAME/<entry> over /etc/<entry>;
    a module run with ``netns: NAME`` from the host reads and writes the same
    files, so both views agree.
    """
    if not netns or not path.startswith('/etc/'):
        return path
    first = path[len('/etc/'):].split('/', 1)[0]
    if os.path.exists(os.path.join('/etc/netns', netns, first)):
        return os.path.join('/etc/netns', netns, path[len('/etc/'):])
    return path


def connect():
    """A netlink route socket in the current namespace."""
    return IPRoute()


def interface_index(ipr, name):
    """The ifindex of interface ``name``, or None."""
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def interface_names(ipr):
    """{ifindex: name} of every interface in the current namespace."""
    names = {}
    for link in ipr.get_links():
        names[link['index']] = link.get_attr('IFLA_IFNAME')
    return names

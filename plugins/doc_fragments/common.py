# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options and attributes shared by every module of netpolicy.routing."""

    DOCUMENTATION = r'''
options:
  netns:
    description:
      - Name of a network namespace of the managed host (as listed by C(ip netns list)) to act in.
      - Files under C(/etc) are read and written as C(ip netns exec NAME) would see them; a file
        C(/etc/DIR/FILE) is C(/etc/netns/NAME/DIR/FILE) when the directory C(/etc/netns/NAME/DIR) exists,
        else the host's own C(/etc/DIR/FILE). For example M(netpolicy.routing.rt_tables_entry) writes
        C(/etc/netns/NAME/iproute2/rt_tables.d/netpolicy.conf) only when C(/etc/netns/NAME/iproute2) exists,
        and otherwise the host's C(/etc/iproute2/rt_tables.d/netpolicy.conf), which every namespace without
        its own C(iproute2) directory reads too.
      - The namespace must exist; the module never creates one.
    type: str
requirements:
  - pyroute2 >= 0.7.2 (Debian 12 C(python3-pyroute2)) on the managed host
attributes:
  check_mode:
    description: Can run in check mode and return the changed status it predicts without changing the target.
    support: full
    details: Check mode plans the change exactly as a real run would and reports it in RV(commands).
  diff_mode:
    description: Returns details on what has changed (or would change in check mode) in diff mode.
    support: full
    details: The diff shows the owned state before and after the change, one object a line.
  platform:
    description: Target operating systems this module runs on.
    platforms: posix
    support: full
    details: Linux only.
notes:
  - The module reads and changes kernel state through netlink; it never parses C(ip) output.
  - Bad input fails before anything is changed, with a message naming the option.
  - A failure while applying puts back what was already changed, and says so.
  - The module keeps the compiled code of the collection's module_utils in C(/run/netpolicy-routing/bytecode)
    (a directory of the user the module runs as, mode 0700, emptied by a reboot), so that later runs do not compile
    it again. Nothing is written there when E(PYTHONDONTWRITEBYTECODE) is set on the managed host.
  - It also writes C(/run/netpolicy-routing/python/sitecustomize.py) (same rules). The module's action plugin puts
    that directory first in E(PYTHONPATH) (before the host's own E(PYTHONPATH), if any), so that Python keeps
    Ansible's own module_utils in the same cache as well, from the second module run on a host. That file runs the
    C(sitecustomize) it hides.
  - Both directories are used only inside C(/run/netpolicy-routing) owned by root (or the user) and closed to
    writes by others; the module creates it so, mode 0755.
'''

# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: netns
short_description: Run tasks inside a network namespace of the controller
version_added: 0.1.0
description:
  - Runs the commands, modules and file transfers of a host inside a named network namespace of the
    controller, through C(ip netns exec NAME), so that a lab of namespaces can be managed like a
    fleet of routers.
  - As with C(ip netns exec), every entry of C(/etc/netns/NAME/) is bind-mounted over its namesake
    in C(/etc) (for example C(/etc/netns/NAME/iproute2) over C(/etc/iproute2)) and C(/sys) shows
    the namespace's interfaces. The rest of the file system, the processes and the users are the
    controller's own.
  - The namespace must exist (C(/run/netns/NAME), as made by C(ip netns add NAME)); the plugin never
    creates one. A missing namespace makes the host unreachable, with a message naming it.
author:
  - netpolicy.routing contributors (!UNKNOWN)
options:
  netns_name:
    description:
      - Name of the network namespace, as listed by C(ip netns list).
      - The last of these variables that is set gives it, so C(ansible_host) overrides the
        inventory host name and C(ansible_netns_name) overrides both.
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_netns_name
  ip_executable:
    description:
      - The C(ip) command of iproute2 on the controller, a name looked up in C(PATH) and the usual
        C(sbin) directories, or an absolute path.
    type: str
    default: ip
    env:
      - name: ANSIBLE_NETNS_IP_EXECUTABLE
    ini:
      - section: netns_connection
        key: ip_executable
    vars:
      - name: ansible_netns_ip_executable
extends_documentation_fragment:
  - connection_pipelining
requirements:
  - Linux controller with iproute2 (the C(ip) command).
  - Ansible running as root on the controller (C(ip netns exec) needs it).
notes:
  - The remote user is ignored; tasks run as the user running Ansible, which must be root.
  - Privilege escalation (C(become)) works only where it asks for no password, as C(sudo) run by root does.
  - Pipelining is supported and recommended; without it modules are copied to the remote temporary
    directory and run from there, as over SSH.
'''

EXAMPLES = r'''
# inventory.yml: three routers of a lab, each a network namespace of the controller
# all:
#   vars:
#     ansible_connection: netpolicy.routing.netns
#     ansible_python_interpreter: /usr/bin/python3
#   hosts:
#     router1: {ansible_host: lab-r1}
#     router2: {ansible_host: lab-r2}
#     router3: {}               # namespace "router3"

- name: Show the addresses of every router of the lab
  hosts: all
  gather_facts: false
  tasks:
    - name: Addresses, as seen inside each namespace
      ansible.builtin.command: ip -br addr
      changed_when: false

    - name: Give each router its own routing table names (written to /etc/netns/NAME/iproute2)
      netpolicy.routing.rt_tables_entry:
        name: isp1
        id: 101
'''

import os
import pwd
import subprocess
from shlex import quote as shlex_quote

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.process import get_bin_path
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

NETNS_RUN_DIR = '/run/netns'

# The command Ansible hands over is a shell command line; this shell only parses
# it (Ansible's own commands bring their ansible_shell_executable inside).
WRAPPER_SHELL = '/bin/sh'


def netns_name_error(name):
    """Why ``name`` cannot be a namespace name, or None when it can."""
    if not name:
        return 'no network namespace name (set ansible_host or ansible_netns_name)'
    if '/' in name or '\0' in name or name in ('.', '..'):
        return 'not a network namespace name: %r' % name
    return None


class Connection(ConnectionBase):
    """Run commands and transfer files inside a network namespace of the controller."""

    transport = 'netpolicy.routing.netns'
    has_pipelining = True
    # Commands run without a terminal, so become plugins that need one cannot work.
    has_tty = False

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        self.netns = None
        self.ip_path = None

    def _netns_name(self):
        name = self.get_option('netns_name') or self._play_context.remote_addr
        problem = netns_name_error(name)
        if problem:
            raise AnsibleConnectionFailure(problem)
        return name

    def _find_ip(self):
        ip_executable = self.get_option('ip_executable')
        if os.path.isabs(ip_executable):
            if os.access(ip_executable, os.X_OK):
                return ip_executable
        else:
            try:
                return get_bin_path(ip_executable)
            except ValueError:
                pass
        raise AnsibleConnectionFailure(
            'the netns connection needs the ip command of iproute2 on the controller; %r was not found '
            '(install iproute2 or set ansible_netns_ip_executable)' % ip_executable)

    def _connect(self):
        if not self._connected:
            self.netns = self._netns_name()
            if not os.path.exists(os.path.join(NETNS_RUN_DIR, self.netns)):
                raise AnsibleConnectionFailure(
                    'network namespace %r does not exist on the controller (no %s; see ip netns list)'
                    % (self.netns, os.path.join(NETNS_RUN_DIR, self.netns)))
            self.ip_path = self._find_ip()
            # ip netns exec keeps the caller's identity: that is who the tasks run as.
            self._play_context.remote_user = pwd.getpwuid(os.geteuid()).pw_name
            display.vvv(u'ESTABLISH NETNS CONNECTION TO %s FOR USER: %s'
                        % (self.netns, self._play_context.remote_user), host=self.netns)
            self._connected = True
        return self

    def _build_exec_argv(self, cmd):
        """The argv that runs shell command line ``cmd`` inside the namespace."""
        return [self.ip_path, 'netns', 'exec', self.netns, WRAPPER_SHELL, '-c', cmd]

    def _popen(self, cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE):
        argv = self._build_exec_argv(cmd)
        display.vvv(u'EXEC %s' % to_text(' '.join(shlex_quote(to_text(arg)) for arg in argv)), host=self.netns)
        return subprocess.Popen([to_bytes(arg, errors='surrogate_or_strict') for arg in argv],
                                stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)

    def exec_command(self, cmd, in_data=None, sudoable=True):
        """Run ``cmd`` in the namespace; ``in_data`` is its standard input (pipelining)."""
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        proc = self._popen(to_text(cmd, errors='surrogate_or_strict'))
        stdout, stderr = proc.communicate(in_data)
        return proc.returncode, stdout, stderr

    def put_file(self, in_path, out_path):
        """Copy controller file ``in_path`` to ``out_path`` as the namespace sees it."""
        super(Connection, self).put_file(in_path, out_path)
        display.vvv(u'PUT %s TO %s' % (in_path, out_path), host=self.netns)
        b_in_path = to_bytes(in_path, errors='surrogate_or_strict')
        if not os.path.exists(b_in_path):
            raise AnsibleFileNotFound('file or module does not exist: %s' % to_native(in_path))
        # The file goes through cat's standard input: streamed, never held in memory.
        with open(b_in_path, 'rb') as source:
            proc = self._popen('cat > %s' % shlex_quote(to_text(out_path)), stdin=source)
            dummy, stderr = proc.communicate()
        if proc.returncode != 0:
            raise AnsibleError('failed to transfer file to %s in network namespace %s: %s'
                               % (to_native(out_path), self.netns, to_native(stderr).strip()))

    def fetch_file(self, in_path, out_path):
        """Copy ``in_path`` as the namespace sees it to controller file ``out_path``."""
        super(Connection, self).fetch_file(in_path, out_path)
        display.vvv(u'FETCH %s TO %s' % (in_path, out_path), host=self.netns)
        b_out_path = to_bytes(out_path, errors='surrogate_or_strict')
        # cat writes straight into the target file: streamed, never held in memory.
        with open(b_out_path, 'wb') as target:
            proc = self._popen('cat < %s' % shlex_quote(to_text(in_path)), stdin=subprocess.DEVNULL, stdout=target)
            dummy, stderr = proc.communicate()
        if proc.returncode != 0:
            os.unlink(b_out_path)
            raise AnsibleError('failed to fetch file %s from network namespace %s: %s'
                               % (to_native(in_path), self.netns, to_native(stderr).strip()))

    def reset(self):
        self.close()

    def close(self):
        """Nothing stays open between commands."""
        self._connected = False

# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: connmark_return, the backend-independent part.

The options are checked and turned into a model (``normalize``), the same for
both backends; ``_nft`` and ``_iptables`` render that model into their rule
set. Semantics, whichever backend:

- a NEW connection matching an entry, whose conntrack mark has none of the
  ``mask`` bits set yet, gets ``mark`` in those bits (first matching entry wins);
- packets arriving on a ``restore_on.prerouting`` interface, and locally
  generated packets when ``restore_on.output``, get the ``mask`` bits of their
  connection's mark copied into their packet mark, so ``ip rule fwmark`` sees it;
- bits outside ``mask`` are never read nor written.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import re
import subprocess

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError
from ansible_collections.netpolicy.routing.plugins.module_utils._module import NETNS_SPEC

MAX_MARK = 0xffffffff
PROTOCOLS = ('tcp', 'udp', 'sctp')
BACKENDS = ('auto', 'nftables', 'iptables')
# Short enough for the iptables chain names built from it (29 bytes with NUL).
NAME_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_]{0,19}$')
MAC_RE = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')
# What the kernel accepts as an interface name (IFNAMSIZ 16 with NUL), minus
# quotes, so names can be written into nft and iptables rules as they are.
IFNAME_RE = re.compile(r'^[^\s/:"\'\\]{1,15}$')

CONNMARK_SPEC = dict(
    name=dict(type='str', required=True),
    entries=dict(type='list', elements='dict', default=[], options=dict(
        mark=dict(type='int', required=True),
        in_interface=dict(type='str'),
        source_mac=dict(type='str'),
        source=dict(type='str'),
        protocol=dict(type='str', choices=list(PROTOCOLS)),
        dport=dict(type='raw'),
        exclude_source=dict(type='list', elements='str', default=[]),
    )),
    restore_on=dict(type='dict', default={}, options=dict(
        prerouting=dict(type='list', elements='str', default=[]),
        output=dict(type='bool', default=False),
    )),
    mask=dict(type='int', default=0xff),
    backend=dict(type='str', default='auto', choices=list(BACKENDS)),
    state=dict(type='str', default='present', choices=['present', 'absent']),
)
CONNMARK_SPEC.update(NETNS_SPEC)


# ---------------------------------------------------------------- input

def normalize(params):
    """The model of the options, or InputError naming the first bad field.

    Only what can be checked without the kernel; ``check_interfaces`` does the rest.
    """
    name = params['name']
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InputError('name', 'use a letter then up to 19 letters, digits or _ (it names an nftables table '
                                 'and iptables chains): %r' % (name,))
    mask = params.get('mask')
    if mask is None:
        mask = 0xff
    if not 0 < mask <= MAX_MARK:
        raise InputError('mask', 'must be between 0x1 and 0xffffffff: %d' % mask)
    restore_on = params.get('restore_on') or {}
    prerouting = []
    for index, ifname in enumerate(restore_on.get('prerouting') or []):
        check_ifname('restore_on.prerouting[%d]' % index, ifname)
        if ifname not in prerouting:
            prerouting.append(ifname)
    entries = []
    seen = {}
    for index, raw in enumerate(params.get('entries') or []):
        entry = normalize_entry('entries[%d]' % index, raw, mask)
        match = match_key(entry)
        if match in seen:
            other_index, other = seen[match]
            if other['mark'] != entry['mark']:
                raise InputError('entries[%d]' % index, 'same match as entries[%d] but a different mark '
                                 '(%#x, not %#x)' % (other_index, entry['mark'], other['mark']))
            continue    # an exact repeat changes nothing
        seen[match] = (index, entry)
        entries.append(entry)
    return {
        'name': name,
        'mask': mask,
        'entries': entries,
        'restore_prerouting': sorted(prerouting),
        'restore_output': bool(restore_on.get('output')),
    }


def normalize_entry(field, raw, mask):
    mark = raw.get('mark')
    if not isinstance(mark, int) or isinstance(mark, bool):
        raise InputError(field + '.mark', 'must be an integer: %r' % (mark,))
    if mark <= 0 or mark > MAX_MARK:
        raise InputError(field + '.mark', 'must be between 0x1 and 0xffffffff: %d' % mark)
    if mark & ~mask:
        raise InputError(field + '.mark', '%#x has bits outside mask %#x' % (mark, mask))

    in_interface = raw.get('in_interface')
    if in_interface is not None:
        check_ifname(field + '.in_interface', in_interface)
    source_mac = raw.get('source_mac')
    if source_mac is not None:
        source_mac = str(source_mac).strip().lower()
        if not MAC_RE.match(source_mac):
            raise InputError(field + '.source_mac', 'not a MAC address (aa:bb:cc:dd:ee:ff): %r' % raw.get('source_mac'))
    source = raw.get('source')
    family = None
    if source is not None:
        source = parse_prefix(field + '.source', source)
        family = 'ipv%d' % source.version
    if in_interface is None and source_mac is None and source is None:
        raise InputError(field, 'give in_interface, source_mac or source (what a new connection must match)')

    protocol = raw.get('protocol')
    if protocol is not None and protocol not in PROTOCOLS:
        raise InputError(field + '.protocol', 'must be one of %s: %r' % (', '.join(PROTOCOLS), protocol))
    dport = raw.get('dport')
    if dport is not None:
        if protocol is None:
            raise InputError(field + '.dport', 'needs protocol (tcp, udp or sctp)')
        dport = parse_port_range(field + '.dport', dport)

    excludes = []
    for index, value in enumerate(raw.get('exclude_source') or []):
        prefix = parse_prefix('%s.exclude_source[%d]' % (field, index), value)
        if family is not None and prefix.version != source.version:
            raise InputError('%s.exclude_source[%d]' % (field, index),
                             '%s is not of the family of source %s' % (prefix, source))
        if prefix not in excludes:
            excludes.append(prefix)
    excludes.sort(key=lambda net: (net.version, net))
    return {
        'mark': mark,
        'in_interface': in_interface,
        'source_mac': source_mac,
        'source': str(source) if source is not None else None,
        'family': family,
        'protocol': protocol,
        'dport': dport,
        'exclude_source': [str(prefix) for prefix in excludes],
    }


def match_key(entry):
    """What a connection must look like to match ``entry`` (everything but the mark)."""
    return (entry['in_interface'], entry['source_mac'], entry['source'], entry['protocol'],
            entry['dport'], tuple(entry['exclude_source']))


def check_ifname(field, value):
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise InputError(field, 'not an interface name: %r' % (value,))


def check_interfaces(model, present):
    """InputError for the first interface of ``model`` that is not in ``present`` (names)."""
    for index, entry in enumerate(model['entries']):
        if entry['in_interface'] is not None and entry['in_interface'] not in present:
            raise InputError('entries[%d].in_interface' % index, 'no such interface: %r' % entry['in_interface'])
    for ifname in model['restore_prerouting']:
        if ifname not in present:
            raise InputError('restore_on.prerouting', 'no such interface: %r' % ifname)


def parse_prefix(field, value):
    """An ip_network from an address or prefix; host bits must be clear."""
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InputError(field, 'not an IP address or prefix: %r' % (value,))
        raise InputError(field, '%s has host bits set (did you mean %s?)' % (text, loose))


def parse_port_range(field, value):
    """(low, high) from 80, '80', '8000-8100' or '8000:8100'."""
    if isinstance(value, bool):
        raise InputError(field, 'not a port or port range: %r' % (value,))
    if isinstance(value, int):
        low = high = value
    else:
        parts = re.split(r'[-:]', str(value).strip())
        try:
            if len(parts) == 1:
                low = high = int(parts[0])
            elif len(parts) == 2:
                low, high = int(parts[0]), int(parts[1])
            else:
                raise ValueError
        except ValueError:
            raise InputError(field, 'not a port or port range (80, 8000-8100): %r' % (value,))
    if not (1 <= low <= 65535 and 1 <= high <= 65535) or low > high:
        raise InputError(field, 'ports are 1-65535, low before high: %r' % (value,))
    return (low, high)


# ---------------------------------------------------------------- for the backends

def rule_variants(entry):
    """[(family, excludes)] an entry becomes per address family.

    ``family`` None means one rule for IPv4 and IPv6 alike. An entry without
    ``source`` but with exclusions of both families needs one rule per family:
    an IPv4 exclusion must not stop it from matching IPv6 connections.
    """
    excludes = [ipaddress.ip_network(text) for text in entry['exclude_source']]
    if entry['family'] is not None:
        return [(entry['family'], entry['exclude_source'])]
    if not excludes:
        return [(None, [])]
    return [(family, [str(net) for net in excludes if 'ipv%d' % net.version == family])
            for family in ('ipv4', 'ipv6')]


def marks(model):
    """The mark values the entries set, in order."""
    return sorted(set(entry['mark'] for entry in model['entries']))


def inverse_mask(mask):
    return MAX_MARK & ~mask


def find_tool(name):
    """Path of command ``name``: PATH, then the sbin directories a module's PATH may lack."""
    dirs = os.environ.get('PATH', '').split(os.pathsep) + ['/usr/sbin', '/sbin', '/usr/bin', '/bin']
    for directory in dirs:
        path = os.path.join(directory, name)
        if directory and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def run_tool(argv, stdin=None, env=None, timeout=None):
    """(rc, stdout, stderr) of ``argv``; past ``timeout`` seconds it is killed and TimeoutExpired raised."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=env)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out, err


def in_scratch_netns(argv, stdin=None):
    """Run ``argv`` in a throwaway network namespace (gone when it exits).

    Used to learn how nft / iptables-save print a rule set without touching the
    real one: see the backends' ``canonical``.
    """
    unshare = find_tool('unshare')
    if unshare is None:
        raise OSError('unshare (util-linux) not found')
    return run_tool([unshare, '--net', '--'] + list(argv), stdin)

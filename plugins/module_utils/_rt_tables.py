# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: routing table names (rt_tables), as iproute2 resolves them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError
from ansible_collections.netpolicy.routing.plugins.module_utils._netlink import etc_path

BUILTIN_TABLES = {'unspec': 0, 'default': 253, 'main': 254, 'local': 255}
RESERVED_IDS = frozenset((0, 253, 254, 255))
MAX_TABLE_ID = 4294967295

# The directories iproute2 reads table names from: /etc first, then the
# distribution defaults of newer iproute2 (6.5+ moved them to /usr/share).
CONF_DIRS = ('/etc/iproute2', '/usr/share/iproute2', '/usr/lib/iproute2')


def source_files(netns=None):
    """Every file iproute2 reads table names from, in the order it reads them."""
    files = []
    for conf_dir in CONF_DIRS:
        conf_dir = etc_path(conf_dir, netns)
        main_file = os.path.join(conf_dir, 'rt_tables')
        if os.path.isfile(main_file):
            files.append(main_file)
        files.extend(sorted(glob.glob(os.path.join(conf_dir, 'rt_tables.d', '*.conf'))))
    return files


def parse_line(line):
    """(id, name) of one rt_tables line, or None for comments, blanks and junk."""
    text = line.split('#', 1)[0].strip()
    if not text:
        return None
    parts = text.split()
    if len(parts) < 2:
        return None
    try:
        number = int(parts[0], 0)
    except ValueError:
        return None
    return number, parts[1]


def read_entries(netns=None, files=None):
    """[(path, lineno, id, name)] of every table name line iproute2 would read."""
    entries = []
    for path in source_files(netns) if files is None else files:
        try:
            with open(path) as handle:
                lines = handle.read().splitlines()
        except (IOError, OSError):
            continue
        for lineno, line in enumerate(lines, 1):
            parsed = parse_line(line)
            if parsed is not None:
                entries.append((path, lineno, parsed[0], parsed[1]))
    return entries


def table_names(netns=None):
    """{name: id} as iproute2 resolves names (first definition wins), builtins included."""
    names = {}
    for path, lineno, number, name in read_entries(netns):
        names.setdefault(name, number)
    for name, number in BUILTIN_TABLES.items():
        names.setdefault(name, number)
    return names


def resolve_table(value, netns=None, field='table', names=None):
    """The numeric id of table ``value`` (a name or a number); InputError naming ``field``."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text, 0)
        except ValueError:
            known = table_names(netns) if names is None else names
            if text not in known:
                raise InputError(field, 'unknown routing table name %r: not in %s; add it with '
                                 'netpolicy.routing.rt_tables_entry or use a number'
                                 % (text, ', '.join(source_files(netns)) or 'any rt_tables file'))
            return known[text]
    if number < 1 or number > MAX_TABLE_ID:
        raise InputError(field, 'table id %d is out of range 1..%d' % (number, MAX_TABLE_ID))
    return number


def table_label(number, names):
    """The name iproute2 would print for table ``number``, else the number."""
    for name, value in names.items():
        if value == number:
            return name
    return str(number)

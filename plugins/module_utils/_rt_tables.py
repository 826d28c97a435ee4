# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: routing table names (rt_tables), as iproute2 resolves them.

Reading follows iproute2's lib/rt_names.c: which files it reads, how it parses
a line (sscanf ``%d %s``), that it stops reading a file at the first line it
cannot parse, and which definition wins when a name is defined twice.

The rt_tables_entry module owns one drop-in file (``path``); it plans with the
engine and rewrites that file once per run, atomically and under a lock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import os
import re
import tempfile
from shlex import quote as _quote

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    ADD, DELETE, REPLACE, ApplyError, InputError, Kind, build_plan, execute)
from ansible_collections.netpolicy.routing.plugins.module_utils._module import NETNS_SPEC
from ansible_collections.netpolicy.routing.plugins.module_utils._netlink import enter_netns, etc_path

BUILTIN_TABLES = {'unspec': 0, 'default': 253, 'main': 254, 'local': 255}
RESERVED_IDS = frozenset((0, 253, 254, 255))
MAX_TABLE_ID = 4294967295
# iproute2 reads the id of an rt_tables line into a signed int and skips
# negative ones: a name for a table above 2^31-1 never resolves.
MAX_NAMED_TABLE_ID = 2147483647
# Arguments that `ip route show table ...` gives a meaning of its own; a table
# of that name would change what those commands do.
RESERVED_NAMES = frozenset(('all', 'cache'))
MAX_NAME_LENGTH = 255

ETC_DIR = '/etc/iproute2'
# The directories iproute2 reads table names from: /etc first, then the
# distribution defaults of newer iproute2 (6.5+ moved them to /usr/share;
# some distributions build it with /usr/lib).
CONF_DIRS = (ETC_DIR, '/usr/share/iproute2', '/usr/lib/iproute2')
DEFAULT_PATH = '/etc/iproute2/rt_tables.d/netpolicy.conf'
LOCK_NAME = '.netpolicy.lock'
FILE_MODE = 0o644

_WS = ' \t\n\v\f\r'  # C isspace(), what sscanf skips
# The two sscanf formats of iproute2, ``0x%x %s`` and ``%d %s``; the lookaheads
# keep the number greedy as scanf's is.
_HEX_LINE = re.compile(r'0x[%s]*([+-]?)(?:0[xX])?([0-9a-fA-F]+)(?![0-9a-fA-F])[%s]*([^%s]+)' % (_WS, _WS, _WS))
_DEC_LINE = re.compile(r'[%s]*([+-]?)([0-9]+)(?![0-9])[%s]*([^%s]+)' % (_WS, _WS, _WS))
# What strtoul(name, &end, 0) reads as a whole number: iproute2 looks names up
# before numbers, so such a name would take over that table number.
_NUMBER = re.compile(r'^[%s]*[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)\Z' % _WS)
_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z')


# ---------------------------------------------------------------- reading

def _conf_files(directory):
    """The *.conf files of ``directory`` that iproute2 reads (no dot files), sorted."""
    try:
        names = os.listdir(directory)
    except (IOError, OSError):
        return []
    return [os.path.join(directory, name) for name in sorted(names)
            if not name.startswith('.') and len(name) > 5 and name.endswith('.conf')
            and os.path.isfile(os.path.join(directory, name))]


def source_files(netns=None):
    """Every file iproute2 reads table names from, in the order it reads them.

    /etc/iproute2/rt_tables, or the /usr one where /etc has none; then the
    rt_tables.d/*.conf of /usr that /etc does not override; then /etc's.
    """
    etc_dir = etc_path(ETC_DIR, netns)
    files = []
    main_file = os.path.join(etc_dir, 'rt_tables')
    if os.path.isfile(main_file):
        files.append(main_file)
    else:
        files.extend(os.path.join(usr_dir, 'rt_tables') for usr_dir in CONF_DIRS[1:]
                     if os.path.isfile(os.path.join(usr_dir, 'rt_tables')))
    etc_drop_in = os.path.join(etc_dir, 'rt_tables.d')
    for usr_dir in CONF_DIRS[1:]:
        files.extend(path for path in _conf_files(os.path.join(usr_dir, 'rt_tables.d'))
                     if not os.path.lexists(os.path.join(etc_drop_in, os.path.basename(path))))
    files.extend(_conf_files(etc_drop_in))
    return files


def _as_c_int(number, bits):
    """``number`` as C's strtol/strtoul (saturating at ``bits``) stored into an int would hold it."""
    low, high = -(1 << (bits - 1)), (1 << bits) - 1
    number = max(low, min(high, number))
    number &= 0xffffffff
    return number - (1 << 32) if number >= (1 << 31) else number


def parse_line(line):
    """(id, name) of one rt_tables line as iproute2 reads it; None for a comment or blank.

    Raises ValueError for a line iproute2 calls corrupted (it stops reading
    the file there). The id is negative where iproute2 skips the line.
    """
    text = line.lstrip(' \t')
    if not text or text[0] in '#\n\0':
        return None
    found = _HEX_LINE.match(text)
    if found:
        number = int(found.group(2), 16)
        number = _as_c_int(-number if found.group(1) == '-' else number, 64)
        return number, found.group(3)
    found = _DEC_LINE.match(text)
    if found:
        number = int(found.group(2))
        number = _as_c_int(-number if found.group(1) == '-' else number, 64)
        return number, found.group(3)
    raise ValueError('not "NUMBER NAME": %r' % line)


def read_file(path):
    """(text, entries, corrupt) of one rt_tables file.

    ``text`` is None when the file does not exist; ``entries`` are
    [(lineno, id, name)] of the lines iproute2 takes; ``corrupt`` is
    (lineno, line) of the line where iproute2 stops reading, or None.
    """
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None, [], None
        raise
    entries = []
    for lineno, line in enumerate(text.split('\n'), 1):
        try:
            parsed = parse_line(line)
        except ValueError:
            return text, entries, (lineno, line)
        if parsed is not None and parsed[0] >= 0:
            entries.append((lineno, parsed[0], parsed[1]))
    return text, entries, None


def read_entries(netns=None, files=None):
    """[(path, lineno, id, name)] of every table name line iproute2 would read."""
    entries = []
    for path in source_files(netns) if files is None else files:
        try:
            text, found, corrupt = read_file(path)
        except (IOError, OSError):
            continue
        entries.extend((path, lineno, number, name) for lineno, number, name in found)
    return entries


def table_names(netns=None):
    """{name: id} as iproute2 resolves names, builtins included.

    iproute2 keeps names in 256 buckets by ``id & 255``, the newest first in
    each, and looks a name up bucket by bucket; the builtins are the oldest.
    """
    names, rank = {}, {}
    definitions = [(number, name, 1) for name, number in BUILTIN_TABLES.items()]
    definitions.extend((number, name, -order) for order, (path, lineno, number, name)
                       in enumerate(read_entries(netns)))
    for number, name, age in definitions:
        key = (number & 255, age)
        if name not in rank or key < rank[name]:
            rank[name] = key
            names[name] = number
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


# ---------------------------------------------------------------- input

def check_name(value, field):
    """A table name that `ip route ... table NAME` resolves to this entry, else InputError."""
    if not isinstance(value, str) or not value:
        raise InputError(field, 'a table name is required')
    if len(value) > MAX_NAME_LENGTH:
        raise InputError(field, 'table name longer than %d characters' % MAX_NAME_LENGTH)
    if _NUMBER.match(value):
        raise InputError(field, 'table name %r reads as a number; iproute2 would take it for table %s'
                         % (value, value))
    if not _NAME.match(value):
        raise InputError(field, 'not a table name: %r (letters, digits, "_", "." and "-"; '
                         'not starting with "." or "-")' % value)
    if value in BUILTIN_TABLES:
        raise InputError(field, 'table name %r is built into iproute2 (table %d)' % (value, BUILTIN_TABLES[value]))
    if value in RESERVED_NAMES:
        raise InputError(field, 'table name %r has a meaning of its own in `ip route show table %s`'
                         % (value, value))
    return value


def check_id(value, field):
    """A table id a name can stand for, else InputError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, 'not a table id: %r' % (value,))
    if value in RESERVED_IDS:
        reserved = dict((number, name) for name, number in BUILTIN_TABLES.items())
        raise InputError(field, 'table id %d is reserved (%s)' % (value, reserved[value]))
    if value < 1 or value > MAX_TABLE_ID:
        raise InputError(field, 'table id %d is out of range 1..%d' % (value, MAX_TABLE_ID))
    if value > MAX_NAMED_TABLE_ID:
        raise InputError(field, 'table id %d cannot have a name: iproute2 ignores rt_tables lines '
                         'above %d; use the number itself' % (value, MAX_NAMED_TABLE_ID))
    return value


def desired_entries(params):
    """[(name field, id field, {'id', 'name'})] of the task, checked.

    The id is None where state=absent leaves it out.
    """
    state = params.get('state') or 'present'
    if params.get('entries') is not None:
        raw = [('entries[%d]' % index, entry) for index, entry in enumerate(params['entries'])]
    elif params.get('name') is not None:
        raw = [(None, {'name': params['name'], 'id': params.get('id')})]
    else:
        raise InputError('name', 'one of name or entries is required')
    found = []
    seen_names, seen_ids = {}, {}
    for prefix, entry in raw:
        name_field = '%s.name' % prefix if prefix else 'name'
        id_field = '%s.id' % prefix if prefix else 'id'
        if not isinstance(entry, dict):
            raise InputError(prefix, 'not a dict with name and id: %r' % (entry,))
        name = check_name(entry.get('name'), name_field)
        number = entry.get('id')
        if number is None:
            if state == 'present':
                raise InputError(id_field, 'required with state=present')
        else:
            number = check_id(number, id_field)
        if name in seen_names:
            raise InputError(name_field, 'table name %r is given twice (also %s)' % (name, seen_names[name]))
        seen_names[name] = prefix or 'name'
        if number is not None:
            if number in seen_ids:
                raise InputError(id_field, 'table id %d is given twice (also %s)' % (number, seen_ids[number]))
            seen_ids[number] = prefix or 'id'
        found.append((name_field, id_field, {'id': number, 'name': name}))
    return found


def check_path(value, netns=None):
    """The real file behind option ``path`` (an rt_tables file iproute2 reads), else InputError."""
    if not value or not os.path.isabs(value):
        raise InputError('path', 'not an absolute path: %r' % (value,))
    if '\x00' in value:  # no file name has one (open() would raise ValueError)
        raise InputError('path', 'not a file name (it has a NUL character): %r' % (value,))
    path = os.path.normpath(value)
    directory, base = os.path.split(path)
    in_drop_in = (directory == os.path.join(ETC_DIR, 'rt_tables.d') and not base.startswith('.')
                  and len(base) > 5 and base.endswith('.conf'))
    if path != os.path.join(ETC_DIR, 'rt_tables') and not in_drop_in:
        raise InputError('path', 'iproute2 does not read table names from %s: use %s/rt_tables '
                         'or %s/rt_tables.d/NAME.conf' % (value, ETC_DIR, ETC_DIR))
    return etc_path(path, netns)


# ---------------------------------------------------------------- state

class Snapshot:
    """The drop-in ``path`` and every other line iproute2 reads, at one moment."""

    def __init__(self, path, netns=None):
        self.path = path
        self.text, own, self.corrupt = read_file(path)
        self.own = [(path, lineno, number, name) for lineno, number, name in own]
        self.others = [entry for entry in read_entries(netns) if entry[0] != path]


def check_conflicts(desired, state, snapshot):
    """InputError when the task cannot be done without touching lines it does not own."""
    if snapshot.corrupt:
        lineno, line = snapshot.corrupt
        raise InputError('path', '%s:%d: iproute2 stops reading the file at this line (%r); '
                         'fix or remove it first' % (snapshot.path, lineno, line))
    for name_field, id_field, item in desired:
        name, number = item['name'], item['id']
        for path, lineno, other_id, other_name in snapshot.others + snapshot.own:
            where = '%s:%d' % (path, lineno)
            mine = path == snapshot.path
            if state == 'absent':
                if other_name != name:
                    continue
                if not mine:
                    raise InputError(name_field, 'table %r is defined in %s (%d %s), which this task does not '
                                     'own (path: %s); remove it there' % (name, where, other_id, other_name,
                                                                          snapshot.path))
                if number is not None and other_id != number:
                    raise InputError(id_field, 'table %r is %d in %s, not %d' % (name, other_id, where, number))
            elif other_name == name and other_id != number and not mine:
                raise InputError(name_field, 'table name %r is already %d in %s' % (name, other_id, where))
            elif other_id == number and other_name != name:
                raise InputError(id_field, 'table id %d is already named %r in %s' % (number, other_name, where))


def plan_entries(kind, desired, state, snapshot):
    """The plan that makes ``desired`` (from desired_entries) true in ``snapshot``."""
    items = [item for name_field, id_field, item in desired]
    current = [{'id': number, 'name': name} for path, lineno, number, name in snapshot.own]
    if state == 'present':
        # A line elsewhere that already says the same resolves just as well.
        wanted = set((item['name'], item['id']) for item in items)
        current.extend({'id': number, 'name': name} for path, lineno, number, name in snapshot.others
                       if (name, number) in wanted)
        return build_plan(kind, current, items, state='present')
    return build_plan(kind, current, items, state='absent')


# ---------------------------------------------------------------- writing

class ConflictError(Exception):
    """The file changed under the plan in a way that makes an op wrong."""


def _line(item):
    return '%d %s' % (item['id'], item['name'])


def _split(text):
    """Lines with their newline; the last one may lack it."""
    if not text:
        return []
    lines = text.split('\n')
    lines = [line + '\n' for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    return lines


def _parsed(line):
    try:
        return parse_line(line.rstrip('\n'))
    except ValueError:
        return None


def rewrite(text, ops, path='the file'):
    """The file ``text`` after ``ops``: comments and foreign lines stay as they are.

    add appends a line; delete removes the lines of that name (check_conflicts
    made sure they are this task's to remove); replace rewrites the first line
    of that name in place and drops its other lines. The file is read again
    under the lock before this runs, so a line another run added meanwhile
    must agree: ConflictError where it does not.
    """
    lines = _split(text or '')
    for op in ops:
        item = op.item
        parsed = [_parsed(line) for line in lines]
        same_name = [index for index, found in enumerate(parsed) if found and found[1] == item['name']]
        if op.action == DELETE:
            lines = [line for index, line in enumerate(lines) if index not in same_name]
            continue
        for found in parsed:
            if found and found[0] == item['id'] and found[1] != item['name']:
                raise ConflictError('%s now names table %d %r' % (path, item['id'], found[1]))
        if op.action == ADD and same_name:
            if parsed[same_name[0]][0] != item['id']:
                raise ConflictError('%s now has table %r as %d' % (path, item['name'], parsed[same_name[0]][0]))
            continue
        if op.action == REPLACE and same_name:
            lines[same_name[0]] = _line(item) + '\n'
            lines = [line for index, line in enumerate(lines) if index not in same_name[1:]]
            continue
        if lines and not lines[-1].endswith('\n'):
            lines[-1] += '\n'
        lines.append(_line(item) + '\n')
    return ''.join(lines)


def write_atomically(path, text, mode, directory_mode=None):
    """Replace ``path`` by rename: a reader (ip, another run) sees the old file or the new, never half.
    ``text`` may also be bytes. ``directory_mode``: make the directory first when it is missing."""
    directory = os.path.dirname(path)
    if directory_mode is not None and not os.path.isdir(directory):
        try:
            os.makedirs(directory, directory_mode)
        except OSError:
            if not os.path.isdir(directory):  # else another run made it first
                raise
    fd, temp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb' if isinstance(text, bytes) else 'w') as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.rename(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class RtTablesKind(Kind):
    """Lines ``ID NAME`` of one rt_tables file, keyed by name."""

    def __init__(self, path):
        self.path = path

    def key(self, item):
        return item['name']

    def text(self, action, item):
        path = _quote(self.path)
        name = item['name'].replace('.', '\\.')  # the one regex character a name may hold
        if action == ADD:
            return "echo '%s' >> %s" % (_line(item), path)
        if action == DELETE:
            return "sed -i -E '/^%d[[:space:]]+%s$/d' %s" % (item['id'], name, path)
        return "sed -i -E 's/^[0-9]+[[:space:]]+%s$/%s/' %s" % (name, _line(item), path)

    def render(self, item):
        return _line(item)

    def apply(self, ops):
        """Rewrite the file once for all ``ops``, under a lock, by temp file and rename."""
        directory = os.path.dirname(self.path)
        try:
            try:
                os.makedirs(directory, 0o755)
            except OSError:
                if not os.path.isdir(directory):  # else another run made it first
                    raise
            lock = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                text, entries, corrupt = read_file(self.path)
                new_text = rewrite(text, ops, self.path)
                if new_text != (text or ''):
                    mode = os.stat(self.path).st_mode & 0o7777 if text is not None else FILE_MODE
                    write_atomically(self.path, new_text, mode)
            finally:
                os.close(lock)  # closing releases the flock
        except (ConflictError, IOError, OSError) as exc:
            raise ApplyError('%s: %s' % (self.path, exc), applied=[], failed=ops[0])


# ---------------------------------------------------------------- the module

ENTRY_OPTIONS = dict(
    name=dict(type='str', required=True),
    id=dict(type='int'),
)

ARGUMENT_SPEC = dict(
    name=dict(type='str'),
    id=dict(type='int'),
    entries=dict(type='list', elements='dict', options=ENTRY_OPTIONS),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    path=dict(type='str', default=DEFAULT_PATH),
    **NETNS_SPEC
)
MUTUALLY_EXCLUSIVE = [('name', 'entries'), ('id', 'entries')]
REQUIRED_ONE_OF = [('name', 'entries')]


def change(params, check_mode=False, diff=False):
    """The rt_tables_entry task: check, plan, apply, verify; the module result."""
    state = params['state']
    desired = desired_entries(params)
    path = check_path(params['path'], params.get('netns'))
    enter_netns(params.get('netns'))
    try:
        snapshot = Snapshot(path, params.get('netns'))
    except (IOError, OSError) as exc:
        raise InputError('path', 'cannot read %s: %s' % (path, exc))
    check_conflicts(desired, state, snapshot)
    kind = RtTablesKind(path)
    plan = plan_entries(kind, desired, state, snapshot)

    def replan():
        return plan_entries(kind, desired, state, Snapshot(path, params.get('netns')))

    result = execute(plan, kind, replan=replan, check_mode=check_mode)
    if diff:
        result['diff'] = {'before': snapshot.text or '', 'after': rewrite(snapshot.text, plan.ops, path),
                          'before_header': path, 'after_header': path}
    result['path'] = path
    result['entries'] = [] if state == 'absent' else [
        {'name': item['name'], 'id': item['id']} for name_field, id_field, item in desired]
    return result

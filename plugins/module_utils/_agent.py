# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the agent ``netpolicy-routing`` (apply, watch, status).

The roles save what they applied in ``/etc/netpolicy/routing/<role>.json``:
the arguments of each module task they ran, plus the sysctls and the nftables
file they keep. The agent puts that state back with the modules' own
``change`` functions (the same engine, plan and verify), so a reboot, a link
that went down and up, or a new address on a masquerade uplink ends in the
state the play left.

The state file, version 1 (sections are optional; other keys are the role's
own bookkeeping and are not read here)::

    {"role": "split_access", "version": 1,
     "rt_tables_entry": {module arguments},
     "sysctl": {"file": "/etc/sysctl.d/...", "values": {"net.ipv4.ip_forward": 1}},
     "route_table": {"tables": [...]},            # applied table by table
     "ip_rule": {module arguments},
     "address_rules": [{"interface": "wan2", "priority": 3201, "table": "102", "family": "ipv4"}],
     "nftables": {"table": "inet netpolicy_split_access", "file": "/etc/netpolicy/routing/split_access.nft"},
     "connmark_return": {module arguments}}

``address_rules`` are rules from the current addresses of an interface
(a masquerade uplink whose address the ISP gives): each becomes an ``ip_rule``
rule ``from ADDRESS`` when the state is applied.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import time

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import EngineError, InputError
from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils import _connmark_return
from ansible_collections.netpolicy.routing.plugins.module_utils import _lock
from ansible_collections.netpolicy.routing.plugins.module_utils import _monitor
from ansible_collections.netpolicy.routing.plugins.module_utils import _pending
from ansible_collections.netpolicy.routing.plugins.module_utils import _routes
from ansible_collections.netpolicy.routing.plugins.module_utils import _rt_tables
from ansible_collections.netpolicy.routing.plugins.module_utils import _rules
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import CONNMARK_SPEC, run_tool
from ansible_collections.netpolicy.routing.plugins.module_utils._nft import NftBackend, table_name
from ansible_collections.netpolicy.routing.plugins.module_utils._spec import check_params

STATE_DIR = '/etc/netpolicy/routing'
STATE_VERSION = 1
# The roles, in the order their states are applied (their rule priorities, low first).
ROLES = ('reply_via_same_router', 'source_routing', 'split_access')
SECTIONS = ('rt_tables_entry', 'sysctl', 'route_table', 'ip_rule', 'address_rules', 'nftables', 'connmark_return')
# Keys whose values name interfaces a state depends on.
INTERFACE_KEYS = ('dev', 'interface', 'in_interface', 'iif', 'oif')
# After an event, wait this long for the burst to end, then re-apply (well within 1 s).
SETTLE = 0.2
# How often watch looks whether a saved state file changed: a role's run rewrites
# it without restarting the agent, and an operator may edit it by hand.
STATE_CHECK = 1.0
# A hook still running after this many seconds is killed (a hung script must not pile up).
HOOK_TIMEOUT = 60.0
# After a failed take-out of an uplink (or its return), the state is applied again after
# this long, then after twice as long each time it fails again, up to RETRY_MOST.
RETRY_FIRST, RETRY_MOST = 1.0, 30.0
# Something that keeps undoing a state (another tool deleting its rules, a firewall
# manager loading a ruleset without its table) would have watch put it back five times a
# second. After REPAIRS_MAX repairs within REPAIRS_WINDOW, that state's route, rule and
# nftables events wait: it is put back HOLD_FIRST later, then twice as late each time it
# is undone again soon after, up to HOLD_MOST; a REPAIRS_WINDOW without a repair ends it.
REPAIRS_MAX, REPAIRS_WINDOW = 5, 30.0
HOLD_FIRST, HOLD_MOST = 2.0, 30.0

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class StateFileError(Exception):
    """A state file that is not ours or is damaged: reported, never applied."""


# ---------------------------------------------------------------- reading the states

def read_state(path):
    """The checked state in ``path``, or StateFileError saying what is wrong with it."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        raise StateFileError('cannot read it: %s' % exc)
    try:
        state = json.loads(data.decode('utf-8'))
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise StateFileError('not JSON (%s)' % exc)
    check_state(state, os.path.basename(path))
    return state


def check_state(state, filename):
    """StateFileError unless ``state`` is a version-1 state of the role its file is named after."""
    if not isinstance(state, dict) or 'role' not in state:
        raise StateFileError('not a netpolicy.routing state (no "role")')
    role = state['role']
    if role not in ROLES:
        raise StateFileError('unknown role %r (known: %s)' % (role, ', '.join(ROLES)))
    if filename != role + '.json':
        raise StateFileError('holds the state of %s, so it should be named %s.json' % (role, role))
    version = state.get('version')
    if not isinstance(version, int) or isinstance(version, bool) or version != STATE_VERSION:
        raise StateFileError('state version %r, this agent reads version %d' % (version, STATE_VERSION))
    for section in SECTIONS:
        if section in state and not isinstance(state[section], list if section == 'address_rules' else dict):
            raise StateFileError('section %s is not a %s' % (section, 'list' if section == 'address_rules' else 'mapping'))
    if role == 'split_access':
        # What the health monitor and status read.
        problem = _monitor.settings_problem(state)
        if problem:
            raise StateFileError(problem)


def read_states(directory):
    """([(role, state)] in apply order, [(path, problem)]) of the ``*.json`` files in ``directory``."""
    states, problems = [], []
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith('.json'))
    except (IOError, OSError) as exc:
        if getattr(exc, 'errno', None) == 2:
            return states, problems
        return states, [(directory, 'cannot list it: %s' % exc)]
    for name in names:
        path = os.path.join(directory, name)
        try:
            state = read_state(path)
        except StateFileError as exc:
            problems.append((path, str(exc)))
            continue
        states.append((state['role'], state))
    states.sort(key=lambda pair: ROLES.index(pair[0]))
    return states, problems


def state_files(directory):
    """(name, mtime_ns, size, inode) of each ``*.json`` file in ``directory``; any difference
    between two calls (a file rewritten, added or removed) means the states changed."""
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith('.json'))
    except OSError:
        return ()
    found = []
    for name in names:
        try:
            info = os.stat(os.path.join(directory, name))
        except OSError:
            continue  # removed in between
        found.append((name, info.st_mtime_ns, info.st_size, info.st_ino))
    return tuple(found)


def changed_files(before, after):
    """The names of the files that differ between two ``state_files`` results."""
    return sorted(set(entry[0] for entry in set(before) ^ set(after)))


def interfaces_of(state):
    """The names of the interfaces ``state`` refers to (a change of one means: apply it again)."""
    found = set()

    def walk(value, key=None):
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, name)
        elif isinstance(value, list):
            for item in value:
                walk(item, key)
        elif key in INTERFACE_KEYS and isinstance(value, str) and value:
            found.add(value)

    for section in SECTIONS:
        walk(state.get(section))
    found.update(((state.get('connmark_return') or {}).get('restore_on') or {}).get('prerouting') or [])
    for key in (state.get('sysctl') or {}).get('values') or {}:
        parts = key.split('.')
        if len(parts) == 5 and parts[2] == 'conf' and parts[3] not in ('all', 'default'):
            found.add(parts[3].replace('/', '.'))
    return found


def tables_of(state):
    """(tables whose routes ``state`` sets, tables it copies routes from), names or numbers as written."""
    tables = [table for table in state.get('route_table', {}).get('tables') or [] if isinstance(table, dict)]
    return ([table['table'] for table in tables if table.get('table') is not None],
            [table['copy_from'] for table in tables if table.get('copy_from') is not None])


def priorities_of(state):
    """[(low, high)] of the rule priorities ``state`` owns: those of its rules and the
    ranges it purges. Every priority when one of its rules has none (the kernel picks it)."""
    section = state.get('ip_rule') or {}
    rules = list(section.get('rules') or []) + list(state.get('address_rules') or [])
    ranges = []
    for rule in rules:
        priority = rule.get('priority') if isinstance(rule, dict) else None
        if priority is None:
            return [(0, _rules.U32_MAX)]
        try:
            ranges.append((int(priority), int(priority)))
        except (TypeError, ValueError):
            pass  # applying the state says what is wrong with it
    try:
        ranges.extend(_rules.parse_priorities(section.get('purge_priorities')) or [])
    except InputError:
        pass
    return ranges


def nftables_tables_of(state):
    """{(family, name)} of the nftables tables ``state`` fills: its nftables file's, and
    connmark_return's (nftables backend; iptables-nft keeps the iptables backend's
    rules in the mangle tables)."""
    found = set()
    qualified = (state.get('nftables') or {}).get('table')
    if isinstance(qualified, str) and ' ' in qualified:
        found.add(tuple(qualified.split(' ', 1)))
    name = (state.get('connmark_return') or {}).get('name')
    if isinstance(name, str) and name:
        found.update([('inet', table_name(name)), ('ip', 'mangle'), ('ip6', 'mangle')])
    return found


# ---------------------------------------------------------------- applying one state

class Report:
    """What applying (or checking) states did: change lines and error lines, in order."""

    def __init__(self):
        self.changes = []
        self.errors = []
        # the roles a step of which changed something (see Repairs)
        self.changed = set()
        # (role, where) of the steps that ran without an error (see Uplinks.applied)
        self.succeeded = set()
        # the roles a step of which had an error (see Watcher.failing)
        self.failed = set()

    def change(self, role, commands):
        for command in commands:
            self.changes.extend('%s: %s' % (role, line) for line in command.splitlines())
            self.changed.add(role)

    def error(self, role, where, message):
        self.errors.append('%s: %s: %s' % (role, where, message))
        self.failed.add(role)


def apply_state(role, state, report, check_mode=False, fast=False):
    """Apply every section of ``state``; a failing section is reported and the others still
    applied. ``fast``: only what the health monitor changes (see steps)."""
    for section, where, run in steps(state, fast):
        try:
            result = run(check_mode)
        except (InputError, EngineError, StateFileError) as exc:
            report.error(role, where, str(exc))
        except (OSError, IOError) as exc:
            report.error(role, where, 'failed: %s' % exc)
        else:
            report.change(role, result.get('commands') or [])
            report.succeeded.add((role, where))


def steps(state, fast=False):
    """[(section, where, run(check_mode) -> result)] in the order they must be applied.

    ``fast``: only what the health monitor changes to take an uplink out or back
    (_monitor.effective_state): the main table and the nftables file, loaded without
    comparing first. Its errors are then those of that change alone, not of a table
    whose interface is gone (the uplink may be out for that very reason).
    """
    found = []
    if 'rt_tables_entry' in state:
        found.append(('rt_tables_entry', 'rt_tables_entry', module_step(
            _rt_tables.change, _rt_tables.ARGUMENT_SPEC, state['rt_tables_entry'], 'rt_tables_entry.')))
    if 'sysctl' in state:
        found.append(('sysctl', 'sysctl', lambda check_mode: apply_sysctls(state['sysctl'].get('values') or {},
                                                                           check_mode)))
    tables = (state.get('route_table') or {}).get('tables') or []
    for index, table in enumerate(tables):
        # One table at a time: a table whose interface is missing fails alone.
        field = 'route_table.tables[%d]' % index
        label = table.get('table') if isinstance(table, dict) else None
        if fast and str(label) != 'main':
            continue
        found.append(('route_table', field if label is None else '%s (table %s)' % (field, label),
                      module_step(_routes.change, _routes.ROUTE_TABLE_SPEC, {'tables': [table]}, 'route_table.',
                                  rename=('route_table.tables[0]', field))))
    if 'ip_rule' in state or state.get('address_rules'):
        found.append(('ip_rule', 'ip_rule', lambda check_mode: rules_step(state, check_mode)))
    if 'nftables' in state:
        def nft_step(check_mode):
            return apply_nft_file(state['nftables'], check_mode, compare=not fast)
        found.append(('nftables', 'nftables', nft_step))
    if 'connmark_return' in state:
        found.append(('connmark_return', 'connmark_return', module_step(
            _connmark_return.change, CONNMARK_SPEC, state['connmark_return'], 'connmark_return.')))
    if fast:
        found = [step for step in found if step[0] in ('route_table', 'nftables')]
    return found


def module_step(change, spec, params, field, rename=None):
    """run(check_mode, diff=False) of a module's ``change``; ``rename`` (old, new): a field prefix to correct in errors."""
    def run(check_mode, diff=False):
        try:
            return change(check_params(spec, params, field), check_mode, diff)
        except InputError as exc:
            name = exc.field or ''
            if rename and name.startswith(rename[0]):
                raise InputError(rename[1] + name[len(rename[0]):], str(exc)[len(exc.field) + 2:])
            raise
    return run


def rules_step(state, check_mode, diff=False):
    params = dict(state.get('ip_rule') or {})
    rules = list(params.get('rules') or [])
    rules.extend(address_rules(state.get('address_rules') or [], interface_addresses()))
    params['rules'] = rules
    return _rules.change(check_params(_rules.IP_RULE_SPEC, params, 'ip_rule.'), check_mode, diff)


def address_rules(templates, addresses):
    """The ``ip_rule`` rules of ``templates`` for the interfaces' current ``addresses``.

    ``addresses``: {ifname: [(family, address)]}. An interface without an
    address of the family gets no rule (it gets one when an address appears).
    """
    rules = []
    for index, template in enumerate(templates):
        if not isinstance(template, dict) or not template.get('interface'):
            raise InputError('address_rules[%d]' % index, 'expected a mapping with an interface')
        rule = dict((key, value) for key, value in template.items() if key != 'interface')
        family = template.get('family', 'ipv4')
        for have_family, address in addresses.get(template['interface'], []):
            if have_family == family:
                rules.append(dict(rule, family=family, **{'from': address}))
    return rules


def interface_prefixes(sock):
    """{ifname: [ipaddress interface (address/prefix)]} of the global addresses, read on ``sock``."""
    names = dict((index, name) for name, index in _netlink.interface_map().items())
    found = {}
    for address in sock.dump_addresses():
        name = names.get(address['ifindex'])
        if address['scope'] == 0 and name and address['address']:
            found.setdefault(name, []).append(ipaddress.ip_interface(u'%s' % address['address']))
    return found


def interface_addresses():
    """{ifname: [(family, address)]} of the global addresses of this namespace."""
    with _netlink.RouteSocket() as sock:
        prefixes = interface_prefixes(sock)
    return dict((name, [('ipv4' if interface.version == 4 else 'ipv6', str(interface.ip)) for interface in found])
                for name, found in prefixes.items())


def sysctl_path(key):
    """/proc/sys path of a sysctl key (a '/' in a key stands for a '.' in a name)."""
    return '/proc/sys/' + '/'.join(part.replace('/', '.') for part in key.split('.'))


def apply_sysctls(values, check_mode):
    """Set the sysctls ``values`` {key: value}; missing keys (interface not there) are an error."""
    commands, missing = [], []
    for key in sorted(values):
        want = str(values[key]).strip()
        path = sysctl_path(key)
        try:
            with open(path) as handle:
                have = handle.read().strip()
        except (IOError, OSError):
            missing.append(key)
            continue
        if have == want:
            continue
        commands.append('sysctl -w %s=%s' % (key, want))
        if not check_mode:
            with open(path, 'w') as handle:
                handle.write(want + '\n')
    if missing:
        raise EngineError('no such sysctl (is the interface there?): %s; the others were set' % ', '.join(missing),
                          commands=commands)
    return {'changed': bool(commands), 'commands': commands}


def apply_nft_file(section, check_mode, compare=True, script=None, diff=False):
    """Load ``section['file']`` when the live table differs from what the file makes.

    ``script``: the file's content when the caller has it (check mode: the file
    is not written yet). ``diff``: the result has the table's listing before and
    after (as ``nft list table`` prints it)."""
    path, qualified = section.get('file'), section.get('table') or ''
    family, dummy, table = qualified.partition(' ')
    if not path or family != 'inet' or not table:
        raise InputError('nftables', 'expected {"table": "inet NAME", "file": PATH}, got %r' % (section,))
    backend = NftBackend()
    # No separate `nft list tables` probe: read_table runs that and says when it fails.
    if backend.nft is None:
        raise EngineError('nft not found (Debian: nftables)')
    if script is None:
        try:
            with open(path) as handle:
                script = handle.read()
        except (IOError, OSError) as exc:
            raise EngineError('cannot read %s: %s' % (path, exc))
    # The health monitor's change to the file (uplinks out), in the same transaction.
    override = section.get('override') or ''
    script = script.rstrip('\n') + '\n' + override
    listings = {}
    if compare or diff:
        listings = {'before': backend.read_table(table) or '', 'after': backend.listing_of(table, script)}
    if compare and listings['before'] == listings['after']:
        return {'changed': False, 'commands': []}
    command = 'nft -f %s' % path
    if override:
        command += ' + ' + '; '.join(override.strip().splitlines())
    if not check_mode:
        rc, out, err = run_tool([backend.nft, '-f', '-'], script)
        if rc != 0:
            raise EngineError('%s failed: %s' % (command, err.strip() or out.strip()), failed_command=command)
    result = {'changed': True, 'commands': [command]}
    if diff:
        result['diff'] = listings
    return result


def apply_all(directory, report, check_mode=False, roles=None, out=None, fast=False, stop=None):
    """Apply (or check) the states in ``directory`` (only ``roles`` when given); the states read.

    ``out``: the split_access uplinks the health monitor took out; by default
    those of the running ``watch``, if any (so an ``apply`` does not bring a
    dead uplink back). ``stop()``: see _lock.held (watch's SIGTERM ends a wait for
    the lock, so a unit's stop or restart is never held up by a play's change).
    """
    try:
        # The states are read once the lock is held: a play's change holds it from its
        # first change to the kernel (whose events wake `watch`) to the state file it
        # writes last, and what must be applied is that new state, not the one before.
        with _lock.held(_lock.agent_label(), log=_lock.log_to_stderr, needed=not check_mode, stop=stop):
            if not check_mode:
                # A change the router restarted (or lost its rollback process) before confirming:
                # its files as they were before it, so the states below are the confirmed ones.
                for role in _pending.recover(directory):
                    report.change(role, ['put back the files from before an unconfirmed change '
                                         '(its rollback process is gone)'])
            states, problems = read_states(directory)
            for path, problem in problems:
                # With ``roles``, only the problems of their files: another file's damage is said
                # by every apply of all the states, and is no failure of this one.
                if roles is None or os.path.basename(path)[:-len('.json')] in roles:
                    report.errors.append('%s: not applied: %s' % (path, problem))
            if out is None:
                out = monitor_out(_monitor.published())
            for role, state in states:
                if roles is None or role in roles:
                    if role == 'split_access':
                        state = _monitor.effective_state(state, out)
                    apply_state(role, state, report, check_mode, fast)
    except (InputError, EngineError) as exc:  # the lock: not taken in time, bad timeout, no lock file
        report.errors.append(str(exc))
        states = read_states(directory)[0]   # not applied, but what watch follows
    return states


def monitor_out(figures):
    """The names of the uplinks that published monitor ``figures`` say are out."""
    return set(name for name, health in figures.items() if health.get('state') == 'out')


# ---------------------------------------------------------------- status

def uplinks_status(states):
    """[{name, interface, up, new_connections, share}] of the split_access uplinks."""
    uplinks = []
    for role, state in states:
        if role == 'split_access':
            uplinks = [dict(name=uplink.get('name'), interface=uplink.get('interface'), mark=uplink.get('mark'))
                       for uplink in state.get('uplinks') or []]
    if not uplinks:
        return []
    links = link_states()
    counts = uplink_counters()
    figures = _monitor.published()
    total = sum(counts.get(uplink['mark'], 0) for uplink in uplinks)
    for uplink in uplinks:
        uplink['up'] = links.get(uplink['interface'])
        uplink['monitor'] = figures.get(uplink['name'])
        uplink['new_connections'] = counts.get(uplink.pop('mark'), 0)
        uplink['share'] = round(float(uplink['new_connections']) / total, 3) if total else None
    return uplinks


def link_states():
    """{ifname: True (up with carrier) | False} of this namespace's interfaces."""
    with _netlink.RouteSocket() as sock:
        return dict((link['ifname'], link['up']) for link in sock.dump_links())


def uplink_counters():
    """{mark: packets} of the counters of split_access's uplink chains (one packet per new connection)."""
    backend = NftBackend()
    if backend.nft is None:
        return {}
    rc, out, err = run_tool([backend.nft, '-j', 'list', 'table', 'inet', 'netpolicy_split_access'])
    if rc != 0:
        return {}
    counts = {}
    for item in json.loads(out).get('nftables', []):
        rule = item.get('rule')
        if not rule or not rule.get('chain', '').startswith('uplink_'):
            continue
        for expr in rule.get('expr', []):
            if 'counter' in expr:
                try:
                    mark = int(rule['chain'][len('uplink_'):])
                except ValueError:
                    continue
                counts[mark] = counts.get(mark, 0) + expr['counter'].get('packets', 0)
    return counts


def status(directory):
    """The status document: per state in sync or how it drifted; per uplink its state."""
    states, problems = read_states(directory)
    document = {'states': [], 'uplinks': [], 'problems': ['%s: %s' % pair for pair in problems]}
    # What the running monitor took out is not a drift: compare with what watch keeps.
    out = monitor_out(_monitor.published())
    for role, state in states:
        report = Report()
        if role == 'split_access':
            state = _monitor.effective_state(state, out)
        apply_state(role, state, report, check_mode=True)
        prefix = role + ': '
        document['states'].append({
            'role': role,
            'in_sync': not report.changes and not report.errors,
            'differences': [line[len(prefix):] for line in report.changes],
            'errors': [line[len(prefix):] for line in report.errors]})
    document['uplinks'] = uplinks_status(states)
    return document


def format_status(document):
    lines = []
    for problem in document['problems']:
        lines.append('not applied: %s' % problem)
    for state in document['states']:
        if state['in_sync']:
            lines.append('%s: in sync with the kernel' % state['role'])
            continue
        counts = (state['role'], len(state['differences']), len(state['errors']))
        lines.append('%s: drifted (%d to change, %d errors)' % counts)
        lines.extend('  would run: %s' % line for line in state['differences'])
        lines.extend('  error: %s' % line for line in state['errors'])
    for uplink in document['uplinks']:
        share = '-' if uplink['share'] is None else '%.0f%%' % (uplink['share'] * 100)
        line = 'uplink %s (%s): %s, new connections %d (%s)' % (
            uplink['name'], uplink['interface'], {True: 'up', False: 'down', None: 'missing'}[uplink['up']],
            uplink['new_connections'], share)
        health = uplink.get('monitor')
        if health:
            line += '; monitor: %s since %s, loss %s, rtt %s' % (
                health['state'], time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(health['since'])),
                '-' if health['loss'] is None else '%.0f%%' % (health['loss'] * 100),
                '-' if health['rtt_ms'] is None else '%.1f ms' % health['rtt_ms'])
        lines.append(line)
    if not document['states'] and not document['problems']:
        lines.append('no saved state')
    return '\n'.join(lines)


# ---------------------------------------------------------------- watch

class Stop(Exception):
    """SIGTERM or SIGINT: leave the watch loop."""


class Signals:
    """SIGTERM and SIGINT end the watch: at once while it waits (for events or for the lock),
    after the apply when one runs.

    An apply is never cut in the middle, so a stop never leaves half a change.
    """

    def __init__(self):
        self.waiting = False
        self.received = None
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum, frame):
        self.received = signal.Signals(signum).name
        if self.waiting:
            raise Stop(self.received)

    def stopping(self):
        """Whether a signal asked to stop (checked while waiting for the lock)."""
        return self.received is not None

    def wait(self, readable, writable, timeout):
        """select(): (readable, writable) ready; Stop on a signal."""
        if self.received:
            raise Stop(self.received)
        self.waiting = True
        try:
            return select.select(readable, writable, [], timeout)[:2]
        finally:
            self.waiting = False


class Watcher:
    """Which events matter: links and addresses of the states' interfaces, routes of their
    tables, their rules, and changes to their nftables tables."""

    def __init__(self, states, link_up=None, failing=()):
        self.interfaces = dict((role, interfaces_of(state)) for role, state in states)
        # Roles whose last apply had an error. A route, rule or nftables event does not
        # apply them again: undoing a step that failed halfway (the engine puts back what
        # it did) makes such events itself, and the apply would fail again at once, five
        # times a second. A link, address or state file change does (the likely cures).
        self.failing = set(failing)
        self.priorities = dict((role, priorities_of(state)) for role, state in states)
        self.nftables_tables = dict((role, nftables_tables_of(state)) for role, state in states)
        names = _rt_tables.table_names()
        # A route deleted from a table a state sets, or changed in a table it copies from.
        self.set_tables, self.copied_tables = {}, {}
        for role, state in states:
            sets, copies = tables_of(state)
            self.set_tables[role] = _table_ids(sets, names)
            self.copied_tables[role] = _table_ids(copies, names)
        self.link_up = dict(link_up or {})

    def undone(self, event):
        """The roles ``event`` undid something of: a route deleted from a table they fill, a rule
        deleted at their priorities, a change to their nftables tables (repairs, see Repairs).
        Not a change in a table a role copies: that is its source changing, not it undone."""
        if event['kind'] == 'route':
            if event['action'] != 'delete':
                return set()
            return set(role for role, ids in self.set_tables.items() if event['table'] in ids)
        if event['kind'] in ('rule', 'nftables'):
            return self.affected(event, {})[0]
        return set()

    def affected(self, event, ifnames):
        """(roles to apply again, log line or None) for ``event``; ``ifnames`` {index: name}."""
        if event['kind'] == 'overrun':
            return set(self.interfaces), 'netlink events were lost: applying everything'
        if event['kind'] == 'route':
            roles = set(role for role, ids in self.copied_tables.items() if event['table'] in ids)
            if event['action'] == 'delete':
                roles.update(role for role, ids in self.set_tables.items() if event['table'] in ids)
            return roles - self.failing, None
        if event['kind'] == 'rule':
            # Deleted by someone else (`ip rule flush`, another tool's script) or by an
            # apply of ours: applying again puts it back, or finds nothing to do.
            if event['action'] != 'delete':
                return set(), None
            return set(role for role, ranges in self.priorities.items()
                       if any(low <= event['priority'] <= high for low, high in ranges)) - self.failing, None
        if event['kind'] == 'nftables':
            # `nft flush ruleset` (`systemctl reload nftables` with Debian's nftables.conf),
            # a table, chain or rule deleted or added by hand: the table is loaded again
            # when it differs. An apply of ours changes it too; the next finds it equal.
            table = (event['family'], event['table'])
            return set(role for role, tables in self.nftables_tables.items() if table in tables) - self.failing, None
        name = event.get('ifname') or ifnames.get(event['ifindex'])
        shown = name or 'interface %d' % event['ifindex']  # already gone
        roles = set(role for role, names in self.interfaces.items() if name is None or name in names)
        if not roles:
            return roles, None
        if event['kind'] == 'link':
            if event['action'] == 'delete':
                self.link_up.pop(name, None)
                return roles, '%s: gone' % name
            was = self.link_up.get(name)
            self.link_up[name] = event['up']
            if was == event['up']:
                return roles, None
            return roles, '%s: %s' % (name, 'up' if event['up'] else 'down')
        return roles, '%s: address %s %s' % (shown, event['address'], 'added' if event['action'] == 'new' else 'removed')


class Repairs:
    """The states something else keeps undoing, whose route, rule and nftables events wait (REPAIRS_MAX)."""

    def __init__(self):
        self.times = {}  # {role: the times of its repairs within REPAIRS_WINDOW}
        self.wait = {}  # {role: how long its events wait now}, until a REPAIRS_WINDOW without a repair
        self.until = {}  # {role: when it is applied again}: its events wait until then

    def held(self, now):
        return set(role for role, until in self.until.items() if now < until)

    def deadline(self):
        return min(self.until.values()) if self.until else None

    def due(self, now):
        """The roles whose wait is over: applied again now, as any event of theirs would have."""
        roles = set(role for role, until in self.until.items() if now >= until)
        for role in roles:
            del self.until[role]
        return roles

    def repaired(self, roles, now):
        """``roles`` were put back after events of their own; the log lines of those that must now wait."""
        lines = []
        for role in sorted(roles):
            times = [when for when in self.times.get(role, ()) if now - when < REPAIRS_WINDOW] + [now]
            self.times[role] = times
            if role in self.wait:  # undone again during or soon after its last wait
                self.wait[role] = min(self.wait[role] * 2, HOLD_MOST)
                line = '%s: undone again: its route, rule and nftables events now wait %g s'
            elif len(times) >= REPAIRS_MAX:
                self.wait[role] = HOLD_FIRST
                line = ('%%s: put back %d times in %g s: something keeps undoing it; its route, rule and '
                        'nftables events now wait %%g s' % (len(times), REPAIRS_WINDOW))
            else:
                continue
            self.until[role] = now + self.wait[role]
            lines.append(line % (role, self.wait[role]))
        return lines

    def forget(self, now):
        """The log lines of the roles that stayed in place for REPAIRS_WINDOW: their events count at once again."""
        lines = []
        for role in sorted(self.wait):
            if role not in self.until and now - self.times[role][-1] >= REPAIRS_WINDOW:
                del self.wait[role], self.times[role]
                lines.append('%s: not undone for %g s: its events count at once again' % (role, REPAIRS_WINDOW))
        return lines


def _table_ids(tables, names):
    ids = set()
    for table in tables:
        try:
            ids.add(_rt_tables.resolve_table(table, names=names))
        except InputError:
            pass  # a name not known yet: its routes cannot be there either
    return ids


def watch(directory, log):
    """Apply, then apply again what an event touches, and run the health monitor of split_access.

    Returns the exit code on SIGTERM/SIGINT, or at once when another watch runs in this
    network namespace (two would both act on every event and monitor round).
    """
    try:
        with _lock.alone('watch', 'netpolicy-routing watch'):
            return _watch(directory, log)
    except EngineError as exc:
        log('error: %s' % exc)
        return EXIT_FAILED


def _watch(directory, log):
    # Both before the first apply: nothing in between is missed.
    events = _netlink.EventSocket()
    sockets = [events]
    try:
        sockets.append(_netlink.NftablesEventSocket())
    except OSError as exc:
        log('error: changes to the nftables tables are not watched: %s' % exc)
    uplinks = Uplinks(directory, log)
    try:
        with Signals() as signals:
            log('watching %s' % directory)
            files = state_files(directory)  # before the apply: a change during it is seen
            # The monitor before the first apply: the uplinks the previous watch left out stay out.
            uplinks.update(read_states(directory)[0])
            report = Report()
            states = apply_all(directory, report, out=uplinks.out(), stop=signals.stopping)
            _log_report(report, log)
            uplinks.update(states)
            watcher = Watcher(states, failing=report.failed)
            repairs = Repairs()
            # The roles to apply at deadline; of those, the ones only their own route, rule
            # or nftables events asked for (a repair, see Repairs).
            pending, repairing, deadline = set(), set(), None
            files_checked = time.monotonic()
            while True:
                # Deadlines and intervals on the monotonic clock: a step of the wall
                # clock (NTP, an operator) must neither stall the loop nor hurry it.
                now = time.monotonic()
                deadlines = [when for when in (deadline, uplinks.deadline(), files_checked + STATE_CHECK,
                                               repairs.deadline()) if when is not None]
                readable, writable = uplinks.wait_on()
                ready = signals.wait(sockets + readable, writable, max(0.0, min(deadlines) - now))
                now = time.monotonic()
                changes = []
                for sock in ready[0] + ready[1]:
                    if sock not in sockets:
                        uplinks.ready(sock, now)
                        continue
                    ifnames = {}
                    if sock is events:
                        ifnames = dict((index, name) for name, index in _netlink.interface_map().items())
                    for event in sock.events():
                        roles, line = watcher.affected(event, ifnames)
                        if line:
                            log(line)
                        undone = watcher.undone(event) & roles
                        held = undone & repairs.held(now)
                        roles -= held
                        repairing -= roles - undone  # asked for by something else too
                        repairing.update((undone - held) - pending)
                        if roles:
                            pending.update(roles)
                            deadline = deadline or now + SETTLE
                        if event['kind'] == 'link' and event.get('ifname'):
                            changes += uplinks.link(event['ifname'], event['action'] == 'new' and event['up'], now)
                if now >= files_checked + STATE_CHECK:
                    # A role's run rewrites its state file without restarting the agent:
                    # every state is applied again, and the monitor follows its section.
                    files_checked = now
                    seen = state_files(directory)
                    if seen != files:
                        log('saved state changed (%s): applying every state again'
                            % ', '.join(changed_files(files, seen)))
                        files = seen
                        pending.update(ROLES)
                        repairing.clear()
                        repairs = Repairs()  # a new state: what undid the old one may leave it alone
                        deadline = deadline or now + SETTLE
                due = repairs.due(now)
                if due:  # a wait is over: put back what was undone meanwhile (a repair, if it was)
                    repairing.update(due - pending)
                    pending.update(due)
                    deadline = deadline or now
                changes += uplinks.tick(now)
                if uplinks.retry_due(now):
                    pending.add('split_access')
                    repairing.discard('split_access')
                    deadline = deadline or now
                if changes:
                    # At once, only what the monitor changes (balance rule, default route):
                    # new connections must stop going to a dead uplink. The whole state
                    # is applied (and so checked) after SETTLE.
                    report = Report()
                    apply_all(directory, report, roles={'split_access'}, out=uplinks.out(), fast=True,
                              stop=signals.stopping)
                    _log_report(report, log)
                    uplinks.acted(changes, report.errors)
                    pending.add('split_access')
                    repairing.discard('split_access')
                    deadline = deadline or now + SETTLE
                if deadline is not None and time.monotonic() >= deadline:
                    report = Report()
                    states = apply_all(directory, report, roles=pending, out=uplinks.out(), stop=signals.stopping)
                    _log_report(report, log)
                    uplinks.update(states)
                    uplinks.applied(report, attempted='split_access' in pending)
                    watcher = Watcher(states, link_up=watcher.link_up,
                                      failing=(watcher.failing - pending) | report.failed)
                    for line in repairs.repaired(report.changed & repairing, time.monotonic()):
                        log(line)
                    pending, repairing, deadline = set(), set(), None
                for line in repairs.forget(now):
                    log(line)
                uplinks.publish(now)
    except Stop as exc:
        log('stopping (%s)' % exc)
        return EXIT_OK
    finally:
        for sock in sockets:
            sock.close()
        uplinks.close()


class Uplinks:
    """The health monitor of the split_access state as `watch` runs it (nothing when it is not enabled)."""

    def __init__(self, directory, log):
        self.directory = directory
        self.log = log
        self.monitor = None
        self.settings = None
        self.state = None
        self.hooks = []
        self.published_at = 0.0
        # {name: when}: uplinks out because their interface went down, whose connections
        # are deleted then unless the link came back first (see link)
        self.unflushed = {}
        # {name: (change, taken out by its link going down)}: the latest change of each uplink
        # that an apply could not make yet; its flush and hooks wait for one that does (see applied)
        self.unacted = {}
        # When the state is applied again for those, and the wait after that (doubled each
        # time, up to RETRY_MOST): nothing else may come to apply it.
        self.retry_at, self.retry_wait = None, RETRY_FIRST

    def update(self, states):
        """Start, restart or stop the monitor as the saved split_access state says."""
        state = dict(states).get('split_access') or {}
        settings = state.get('monitor') or {}
        wanted = (settings, state.get('uplinks')) if settings.get('enabled') else None
        self.state = state
        if wanted == self.settings:
            return
        if self.settings is not None and wanted is None:
            self.log('monitor: stopped (not enabled in the saved split_access state, or no such state)')
        self.close()
        self.settings = wanted
        if wanted is not None:
            self.monitor = _monitor.Monitor(state, time.monotonic())
            self.log('monitor: probing %s every %ss (out after %s failed rounds, back after %s good ones)' % (
                ', '.join(sorted(settings.get('targets') or {})) or 'no uplink', self.monitor.interval,
                settings.get('down', 3), settings.get('up', 3)))
            # A restarted watch (or monitor) must not give new connections to an uplink found
            # dead before: it stays out until its probes bring it back. Its connections were
            # deleted and its hooks run when it went out (close records no other).
            for name in self.monitor.keep_out(_monitor.left_out()):
                self.log('%s: out (as the previous watch left it)' % name)

    def out(self):
        return self.monitor.out() if self.monitor else set()

    def deadline(self):
        deadlines = [when for name, when in self.unflushed.items() if name not in self.unacted]
        if self.retry_at is not None:
            deadlines.append(self.retry_at)
        monitor_deadline = self.monitor.deadline() if self.monitor else None
        if monitor_deadline is not None:
            deadlines.append(monitor_deadline)
        return min(deadlines) if deadlines else None

    def wait_on(self):
        return self.monitor.wait_on() if self.monitor else ([], [])

    def ready(self, sock, now):
        if self.monitor:
            self.monitor.ready(sock, now)

    def link(self, ifname, up, now):
        """An interface went down or up: [(name, 'out'|'in')].

        An uplink whose interface goes down is out at once (no new connection is given to
        it), but its connections are deleted only if the link is still down after the time
        its ``down`` failed rounds would take: a carrier blip must not reset every
        connection of the uplink, which go on as they were once the link is back (the
        uplink itself is back in after its ``up`` good rounds)."""
        if not self.monitor:
            return []
        changes = self.monitor.link(ifname, up, now)
        for name, change in changes:
            if change == 'out':
                self.unflushed[name] = now + self.monitor.health[name].down * self.monitor.interval
        if up:
            for name in list(self.unflushed):
                if self.monitor.health[name].interface == ifname:
                    del self.unflushed[name]
        return changes

    def tick(self, now):
        self.reap_hooks(now)
        changes = self.monitor.tick(now) if self.monitor else []
        out = self.out()
        for name, when in list(self.unflushed.items()):
            if name not in out:
                del self.unflushed[name]
            elif now >= when and name not in self.unacted:
                del self.unflushed[name]
                self.flush(name, out)
        return changes

    def acted(self, changes, errors):
        """After the state was applied for ``changes``: log, flush the dead uplinks' connections, hooks.

        ``errors``: what that apply reported. Then the uplinks were not taken out (or
        back): that is said, and the flush and the hooks wait for a later apply that
        makes the change (see applied).
        """
        if errors:
            for name, change in changes:
                self.log('%s: could not %s: %s' % (name, 'take it out' if change == 'out' else 'take it back in',
                                                   '; '.join(errors)))
                self.unacted[name] = (change, name in self.unflushed)
            self.schedule_retry(time.monotonic())
            self.publish(time.monotonic(), force=True)
            return
        # Back in before any apply took it out: the hooks were never told it was out.
        never_out = set(name for name, change in changes
                        if change == 'in' and self.unacted.get(name, ('',))[0] == 'out')
        for name, change in changes:
            self.unacted.pop(name, None)
        if not self.unacted:
            self.forget_retry()
        self.follow_up(changes, never_out=never_out)
        self.publish(time.monotonic(), force=True)

    def forget_retry(self):
        self.retry_at, self.retry_wait = None, RETRY_FIRST

    def schedule_retry(self, now):
        if self.retry_at is None:
            self.retry_at = now + self.retry_wait
            self.retry_wait = min(self.retry_wait * 2, RETRY_MOST)

    def retry_due(self, now):
        """Whether the state must be applied again now for a change not made yet (see acted)."""
        if self.retry_at is None or now < self.retry_at:
            return False
        self.retry_at = None
        return True

    def applied(self, report, attempted=True):
        """After an apply of the whole state (its ``report``): when it made the changes that
        could not be made at once (the steps that take an uplink out or back in all ran
        without an error), their log lines, flush and hooks now, once. ``attempted``: whether
        that apply was one of the split_access state (else it could not make them)."""
        if not self.unacted:
            return
        needed = set(('split_access', where) for section, where, run in steps(self.state, fast=True))
        if not needed <= report.succeeded:
            if attempted:
                self.schedule_retry(time.monotonic())   # tried and failed again: later, once more
            return
        unacted, self.unacted = self.unacted, {}
        self.forget_retry()
        self.follow_up(sorted((name, change) for name, (change, link_down) in unacted.items()),
                       link_down=set(name for name, (change, link_down) in unacted.items() if link_down))

    def follow_up(self, changes, link_down=(), never_out=()):
        """Log ``changes``, now made, delete the connections of the uplinks taken out, run the hooks.

        ``link_down``: uplinks taken out by their interface going down whose link came back
        before the change was made: their connections go on (see link). ``never_out``:
        uplinks back in whose taking out was never made: no hooks (they were not told out)."""
        out = self.out()
        for name, change in changes:
            if change == 'out' and name in self.unflushed:
                self.log('%s: out: no new connections, not in the default route; its connections are deleted '
                         'if its link is still down in %.1f s'
                         % (name, max(0.0, self.unflushed[name] - time.monotonic())))
            elif change == 'out':
                self.log('%s: out: no new connections, not in the default route' % name)
                if name not in link_down:
                    self.flush(name, out)
            else:
                self.log('%s: back in' % name)
                self.unflushed.pop(name, None)
                if name in never_out:
                    continue
            self.run_hooks(name, change)
        marks = self.marks()
        if marks and len(out) == len(marks):
            self.log('every uplink is out: keeping the last configuration')

    def marks(self):
        return dict((uplink['name'], uplink['mark']) for uplink in self.state.get('uplinks') or [])

    def flush(self, name, out):
        """Delete the conntrack entries of the uplink ``name`` (taken out): its clients
        reconnect by a live uplink. Not when every uplink is out (nothing to move to)."""
        marks = self.marks()
        if name not in marks or len(out) >= len(marks):
            return
        try:
            self.log('%s: %s' % (name, _monitor.flush_conntrack(marks[name], _monitor.SPLIT_ACCESS_MASK)))
        except OSError as exc:
            self.log('error: %s: %s' % (name, exc))

    def reap_hooks(self, now):
        """Forget the hooks that ended; kill those running longer than HOOK_TIMEOUT."""
        running = []
        for proc, path, started in self.hooks:
            if proc.poll() is not None:
                continue
            if now - started > HOOK_TIMEOUT:
                proc.kill()
                proc.wait()
                self.log('error: hook %s ran longer than %d s: killed' % (path, HOOK_TIMEOUT))
                continue
            running.append((proc, path, started))
        self.hooks = running

    def run_hooks(self, name, change):
        """Run the executables of DIR/hook.d with the uplink's name and its new state (in background)."""
        self.reap_hooks(time.monotonic())
        folder = os.path.join(self.directory, 'hook.d')
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return
        for hook in names:
            path = os.path.join(folder, hook)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                try:
                    self.hooks.append((subprocess.Popen([path, name, change], stdin=subprocess.DEVNULL), path,
                                       time.monotonic()))
                except OSError as exc:
                    self.log('error: hook %s: %s' % (path, exc))

    def publish(self, now, force=False):
        if self.monitor and (force or now - self.published_at >= 1.0):
            try:
                _monitor.publish(self.monitor.figures())
            except OSError as exc:
                self.log('error: cannot publish the monitor figures: %s' % exc)
            self.published_at = now

    def close(self):
        if self.monitor:
            self.monitor.close()
            # A record for the next watch (see update); apply and status no longer use it. Only
            # the uplinks taken out in full: one whose take-out or flush is still owed (acted,
            # link) is left to the next watch's probes, which take it out again, flush and hooks too.
            figures = dict((name, health) for name, health in self.monitor.figures().items()
                           if name not in self.unacted and name not in self.unflushed)
            if any(health['state'] == 'out' for health in figures.values()):
                try:
                    _monitor.publish(figures, running=False)
                except OSError as exc:
                    self.log('error: cannot keep the monitor figures: %s' % exc)
                    _monitor.withdraw()
            else:
                _monitor.withdraw()
        self.monitor = None
        self.published_at = 0.0
        self.settings = None
        self.unflushed = {}
        self.unacted = {}
        self.forget_retry()


def _log_report(report, log):
    for line in report.changes:
        log(line)
    for line in report.errors:
        log('error: ' + line)


# ---------------------------------------------------------------- command line

USAGE = '''usage: netpolicy-routing [--state-dir DIR] COMMAND

  apply           apply every saved state again, once (idempotent)
  watch           apply, then apply again what an interface, address, route or state file change
                  touches (what the systemd unit runs, at boot too)
  status [--json] per saved state: in sync with the kernel or what differs; per uplink: its state

Saved states: DIR/<role>.json (default %s), written by the roles of netpolicy.routing.
Exit codes: 0 done (status: all in sync), 1 something failed or drifted, 2 usage.''' % STATE_DIR


def main(argv=None, out=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout

    def log(line):
        out.write(line + '\n')
        out.flush()

    directory = STATE_DIR
    if argv[:1] == ['--state-dir'] and len(argv) > 1:
        directory, argv = argv[1], argv[2:]
    if not argv or argv[0] not in ('apply', 'watch', 'status') or argv[1:] not in ([], ['--json']) \
            or (argv[1:] and argv[0] != 'status'):
        log(USAGE)
        return EXIT_USAGE
    if not _netlink.HAS_PYROUTE2:
        log('error: pyroute2 is missing (Debian: apt install python3-pyroute2)')
        return EXIT_FAILED
    command = argv[0]
    if command == 'watch':
        return watch(directory, log)
    if command == 'status':
        document = status(directory)
        log(json.dumps(document, indent=2, sort_keys=True) if argv[1:] else format_status(document))
        drifted = document['problems'] or not all(state['in_sync'] for state in document['states'])
        return EXIT_FAILED if drifted else EXIT_OK
    report = Report()
    states = apply_all(directory, report)
    _log_report(report, log)
    if not report.changes and not report.errors:
        log('%d saved state(s) applied: no change' % len(states))
    return EXIT_FAILED if report.errors else EXIT_OK

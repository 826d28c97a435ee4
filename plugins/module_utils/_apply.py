# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: a role's whole state applied as one change (module apply_state).

A role computes its desired state (the version-1 format the agent reads, see
_agent.py) and hands it to one module run, instead of one task per module:
the same ``change`` functions, in the same order, on one connection.

- What the previous run of the role left and this state no longer has (its
  saved state file says) is removed: tables emptied, names dropped, the
  nftables table deleted, sysctls and the main table's default route given
  back what they were before the role.
- Before changing anything the module records the router's state that the
  change touches (a Snapshot). If any step fails, the snapshot is put back,
  so a router is never left half-changed.
- With ``confirm_timeout``, a detached process on the router puts the
  snapshot back when the timeout expires, unless a second run (over a new
  connection, ``confirm: true``) confirmed first. Where systemd runs, it gets
  a scope of its own, out of the connection's login session (own_scope).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import socket
import signal
import subprocess
import time

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    EngineError, InputError, build_plan, execute)
from ansible_collections.netpolicy.routing.plugins.module_utils import _agent
from ansible_collections.netpolicy.routing.plugins.module_utils import _connmark_return
from ansible_collections.netpolicy.routing.plugins.module_utils import _install
from ansible_collections.netpolicy.routing.plugins.module_utils import _lock
from ansible_collections.netpolicy.routing.plugins.module_utils import _monitor
from ansible_collections.netpolicy.routing.plugins.module_utils import _netlink
from ansible_collections.netpolicy.routing.plugins.module_utils import _pending
from ansible_collections.netpolicy.routing.plugins.module_utils import _routes
from ansible_collections.netpolicy.routing.plugins.module_utils import _rt_tables
from ansible_collections.netpolicy.routing.plugins.module_utils import _rules
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import CONNMARK_SPEC, run_tool
from ansible_collections.netpolicy.routing.plugins.module_utils._nft import NftBackend, table_name

APPLY_STATE_SPEC = dict(
    role=dict(type='str', choices=list(_agent.ROLES)),
    state=dict(type='dict'),
    persist=dict(type='bool', default=False),
    state_dir=dict(type='path', default=_agent.STATE_DIR),
    confirm_timeout=dict(type='int', default=0),
    confirm=dict(type='bool', default=False),
    checks=dict(type='list', elements='dict', default=[]),
    dependencies=dict(type='str', choices=['install', 'check', 'report']),
    dependencies_variable=dict(type='str', default='agent_install_dependencies'),
    agent=dict(type='bool', default=False),
    agent_command=dict(type='path', default='/usr/local/bin/netpolicy-routing'),
    agent_library=dict(type='path', default='/usr/local/lib/netpolicy-routing'),
    agent_service=dict(type='bool', default=False),
    netns=dict(type='str'),
    # consumed on the controller by the action plugin (plugins/action/apply_state.py)
    variables=dict(type='dict'),
)

SYSCTL_HEADER = '# Managed by netpolicy.routing.%s; the role rewrites this file.\n'
MAIN_TABLE = 254
# How often the armed rollback looks whether it was confirmed.
POLL = 0.2


def state_path(directory, role):
    return os.path.join(directory, role + '.json')


def record_path(directory, role):
    """Where a run without ``persist`` keeps what it applied, for the role's next run to
    remove what it no longer wants. The agent reads only ``*.json`` files."""
    return os.path.join(directory, role + '.applied')


def read_previous(directory, role):
    """The state the role's last run saved (for the agent, or only as a record), or {}
    (none, or not readable: nothing to remove then)."""
    try:
        return _agent.read_state(state_path(directory, role))
    except _agent.StateFileError:
        pass
    try:
        with open(record_path(directory, role), 'rb') as handle:
            state = json.loads(handle.read().decode('utf-8'))
        _agent.check_state(state, role + '.json')
        return state
    except (IOError, OSError, ValueError, _agent.StateFileError):
        return {}


# ---------------------------------------------------------------- what to apply

def _table_key(table):
    return str(table.get('table')).strip() if isinstance(table, dict) else None


def removals(state, previous):
    """What ``previous`` has and ``state`` no longer wants: (tables, rt_tables entries, connmark_return arguments).

    (The nftables table and file: see Change._nftables.)"""
    wanted_tables = set(_table_key(table) for table in (state.get('route_table') or {}).get('tables') or [])
    # By number: the names of the tables that go are removed first.
    old_ids = dict((str(entry.get('name')), str(entry.get('id')))
                   for entry in (previous.get('rt_tables_entry') or {}).get('entries') or [])
    tables = []
    for table in (previous.get('route_table') or {}).get('tables') or []:
        if _table_key(table) not in wanted_tables and _table_key(table) != 'main':
            emptied = {'table': old_ids.get(_table_key(table), _table_key(table)), 'routes': [], 'purge': True,
                       'state': 'absent'}
            if table.get('family'):
                emptied['family'] = table['family']
            tables.append(emptied)
    wanted_names = set(entry.get('name') for entry in (state.get('rt_tables_entry') or {}).get('entries') or [])
    entries = [entry for entry in (previous.get('rt_tables_entry') or {}).get('entries') or []
               if entry.get('name') not in wanted_names]
    connmark = None
    old_mark = previous.get('connmark_return')
    if old_mark and old_mark.get('entries') and not (state.get('connmark_return') or {}).get('entries'):
        connmark = {'name': old_mark.get('name'), 'state': 'absent'}
    return tables, entries, connmark


def _main_table(state):
    """The state's entry for the main table (the role's default route there), or None."""
    for table in (state.get('route_table') or {}).get('tables') or []:
        if _table_key(table) == 'main':
            return table
    return None


def main_default_plan(state, previous, read_live):
    """(the main table's IPv4 default route from before the role, to save; the
    route_table entry that gives it back, or None).

    The route is ``ip route`` text, '' for none. The first run whose state sets
    main's default records what was there (``read_live()``); a run whose state no
    longer sets it puts that back. A state saved before this was recorded has no
    record: what is there then stays.
    """
    if _main_table(state) is not None:
        if 'main_default_before' in previous:
            return previous['main_default_before'], None
        if _main_table(previous) is not None:
            return None, None
        return read_live(), None
    before = previous.get('main_default_before')
    if _main_table(previous) is None or before is None:
        return None, None
    if before:
        return None, {'table': 'main', 'routes': [before], 'family': 'ipv4'}
    return None, {'table': 'main', 'routes': ['default'], 'state': 'absent', 'family': 'ipv4'}


def read_main_default():
    """The main table's IPv4 default route (of the default metric) as ``ip route`` text, or ''."""
    ifnames = dict((index, name) for name, index in _netlink.interface_map().items())
    with _netlink.RouteSocket() as sock:
        for route in _routes.read_routes(sock, 'ipv4', MAIN_TABLE, ifnames):
            if route['dest'] == 'default' and route['metric'] == _routes.DEFAULT_METRIC['ipv4']:
                return _routes.spec_text(route, None)
    return ''


def sysctl_plan(state, previous, live):
    """(values to set, the ``before`` values to save, values to give back).

    ``before`` keeps, per key the role sets, the value it had before the role
    first set it, so a key the role no longer sets gets that value back.
    """
    section = state.get('sysctl') or {}
    values = dict((key, str(value)) for key, value in (section.get('values') or {}).items())
    old = previous.get('sysctl') or {}
    old_before = old.get('before') or {}
    before = {}
    for key in values:
        if key in old_before:
            before[key] = str(old_before[key])
        elif live.get(key) is not None:
            before[key] = live[key]
    give_back = dict((key, str(value)) for key, value in old_before.items()
                     if key not in values and live.get(key) is not None and live[key] != str(value))
    return values, before, give_back


def read_sysctls(keys):
    values = {}
    for key in keys:
        try:
            with open(_agent.sysctl_path(key)) as handle:
                values[key] = handle.read().strip()
        except (IOError, OSError):
            values[key] = None
    return values


def sysctl_text(role, values):
    return SYSCTL_HEADER % role + ''.join('%s = %s\n' % (key, values[key]) for key in sorted(values))


# ---------------------------------------------------------------- the snapshot

class Snapshot:
    """The router's state a change may touch, as the engine reads it, and how to put it back.

    JSON-serializable (``document``), so the armed rollback could also read it
    from a file; in practice the detached process inherits it.
    """

    def __init__(self, document):
        self.document = document

    @classmethod
    def record(cls, tables, nft_tables, files, sysctl_keys):
        rules = [rule for rule, protocol in _rules.read_rules()]
        routes = {}
        ifnames = dict((index, name) for name, index in _netlink.interface_map().items())
        with _netlink.RouteSocket() as sock:
            for table in sorted(tables):
                routes[str(table)] = _TableReader(sock, table, ifnames)()
        nft = {}
        backend = NftBackend()
        if backend.nft is not None:
            for table in sorted(set(nft_tables)):
                nft[table] = backend.read_table(table)
        contents = dict((path, _file_content(path)) for path in set(files))
        return cls({'time': time.time(), 'rules': rules, 'routes': routes, 'nft': nft, 'files': contents,
                    'sysctl': read_sysctls(sorted(set(sysctl_keys)))})

    def restore(self):
        """Put the recorded state back; [what could not be put back]."""
        problems = []
        for what, step in (('rules', self._rules), ('routes', self._routes), ('nftables', self._nft),
                           ('sysctls', self._sysctls), ('files', self._files)):
            try:
                step()
            except (EngineError, InputError, OSError, IOError, ValueError) as exc:
                problems.append('%s: %s' % (what, exc))
        return problems

    def _rules(self):
        wanted = [dict(rule, other=dict(rule.get('other') or {})) for rule in self.document['rules']]
        _put_back(_rules.RuleKind({}), lambda: [rule for rule, protocol in _rules.read_rules()], wanted,
                  owned=lambda rule: True)

    def _routes(self):
        interfaces = _netlink.interface_map()
        ifnames = dict((index, name) for name, index in interfaces.items())
        with _netlink.RouteSocket() as sock:
            kind = _routes.RouteKind(sock, interfaces, {})
            for table, routes in self.document['routes'].items():
                _put_back(kind, _TableReader(sock, int(table), ifnames), [_route_from_json(route) for route in routes],
                          owned=lambda route: route['proto'] != 'kernel')

    def _nft(self):
        backend = NftBackend()
        for table, text in self.document['nft'].items():
            def read(table=table):
                have = backend.read_table(table)
                return [] if have is None else [{'table': table, 'text': have}]
            if text is None:
                _put_back(backend.kind, read, [{'table': table, 'text': ''}], state='absent')
            else:
                _put_back(backend.kind, read, [{'table': table, 'text': text}])

    def _sysctls(self):
        values = dict((key, value) for key, value in self.document['sysctl'].items() if value is not None)
        _agent.apply_sysctls(values, False)

    def _files(self):
        _pending.restore_files(self.document['files'])


def _put_back(kind, read, wanted, state='present', owned=None):
    """Make the kernel's items of ``kind`` (``read()``) the ``wanted`` ones, verified."""
    def plan():
        return build_plan(kind, read(), wanted, state=state, owned=owned)
    execute(plan(), kind, replan=plan)


class _TableReader:
    """read() of one table's routes, both families."""

    def __init__(self, sock, table, ifnames):
        self.sock, self.table, self.ifnames = sock, table, ifnames

    def __call__(self):
        found = []
        for family in _routes.FAMILIES:
            found.extend(_routes.read_routes(self.sock, family, self.table, self.ifnames))
        return found


def _route_from_json(route):
    route = dict(route)
    if route.get('nexthops') is not None:
        route['nexthops'] = tuple(tuple(hop) for hop in route['nexthops'])
    return route


def _file_content(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


# ---------------------------------------------------------------- confirm timeout

def arm(role, snapshot, timeout, pending):
    """Start the detached process that puts ``snapshot`` back after ``timeout`` s unless
    confirmed (the file ``pending`` removed); its pid."""
    document = dict(deadlines(timeout), timeout=timeout, pid=None, boot=_pending.boot_id(),
                    files=snapshot.document['files'])
    _pending.write(pending, document)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        # Detached from the module's process, session and descriptors (the
        # connection waits for them to close, and the lock must not be inherited).
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            os.write(write_end, str(os.getpid()).encode())
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, 65536)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            _lock.forget_inherited()
            _wait_and_roll_back(role, pending, snapshot)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = int(os.read(read_end, 32).decode() or '0')
    os.close(read_end)
    _pending.write(pending, dict(document, pid=child, start=_pending.process_start(child)))
    return child


# The rollback process's own systemd scope, by role and pid (unique while it runs).
ROLLBACK_SCOPE = 'netpolicy-routing-rollback-%s-%d.scope'


def own_scope(role, pid):
    """Move the rollback process ``pid`` into a systemd scope of its own where systemd runs the
    host; (the scope's name or None, a warning or None).

    Started by the module, the process is in the cgroup of the connection's login session,
    and logind stops every process of that session when it ends if ``KillUserProcesses=yes``
    (and the login user is not in ``KillExcludeUsers``): the change that cut the connection
    would also end the process that is to undo it. In a scope of its own (the D-Bus call
    ``systemd-run --scope`` makes, for a process that already runs) it outlives the session.
    """
    if not _install.systemd_runs():
        return None, None  # a container or a lab's namespace: no logind session to outlive
    scope = ROLLBACK_SCOPE % (role, pid)
    argv = ['busctl', 'call', '--quiet', 'org.freedesktop.systemd1', '/org/freedesktop/systemd1',
            'org.freedesktop.systemd1.Manager', 'StartTransientUnit', 'ssa(sv)a(sa(sv))', scope, 'fail',
            '3', 'PIDs', 'au', '1', str(pid),
            'Description', 's', 'netpolicy.routing: puts the %s state back unless the change is confirmed' % role,
            'CollectMode', 's', 'inactive-or-failed', '0']
    try:
        code, out, err = run_tool(argv, timeout=30)
        problem = 'busctl failed (exit %d): %s' % (code, (err or out).strip()) if code else None
    except (OSError, subprocess.TimeoutExpired) as exc:  # no busctl, or no answer in time
        problem = 'busctl: %s' % exc
    if problem is None:
        return scope, None
    return None, ('%s: the rollback process could not get a systemd scope of its own (%s); it stays in the '
                  'connection\'s login session, and if logind ends that session\'s processes when it closes '
                  '(KillUserProcesses=yes), a change that cuts the connection is not put back until the agent\'s '
                  'next apply' % (role, problem))


def deadlines(timeout):
    """The pending document's deadlines ``timeout`` s from now.

    ``deadline`` is the wall clock's, for a person reading the file; the rollback
    process waits for ``monotonic_deadline``, so a step of the wall clock neither
    hurries nor delays it. CLOCK_MONOTONIC is one clock for every process of a
    boot, so the module that writes it (arm, extend) and the rollback process
    that compares it agree; a document of another boot is never waited on
    (_pending.waiting).
    """
    return {'deadline': time.time() + timeout, 'monotonic_deadline': time.monotonic() + timeout}


def extend(pending, timeout):
    """Start the timeout again now that the change is applied (a long apply does not eat it)."""
    document = _pending.read(pending)
    if document is not None:
        _pending.write(pending, dict(document, **deadlines(timeout)))


def _wait_and_roll_back(role, pending, snapshot):
    while True:
        document = _pending.read(pending)
        if document is None:
            return  # confirmed (the file is gone)
        if time.monotonic() >= document.get('monotonic_deadline', 0):
            break
        time.sleep(POLL)
    try:
        with _lock.held('%s rollback (confirm timeout)' % role):
            problems = snapshot.restore()
    except (EngineError, InputError) as exc:  # the lock not taken in time: restore all the same
        problems = ['lock: %s' % exc] + snapshot.restore()
    _pending.record_rollback(pending, problems)
    _pending.remove(pending)


def confirm(role, pending, check_mode):
    """Disarm the role's rollback; an EngineError when it already rolled back."""
    if os.path.exists(pending):
        if not check_mode:
            _pending.remove(pending)
        return {'changed': True, 'commands': ['confirm %s (rollback disarmed)' % role]}
    done = _file_content(_pending.outcome_path(pending))
    if done is not None and not check_mode:
        _pending.remove(_pending.outcome_path(pending))
    if done is not None:
        problems = json.loads(done).get('problems') or []
        raise EngineError('too late: the router already put its previous state back%s'
                          % (' (could not put back: %s)' % '; '.join(problems) if problems else ''))
    return {'changed': False, 'commands': []}


# ---------------------------------------------------------------- the change

def change(params, check_mode, diff, installed=()):
    """The whole of module apply_state; ``installed``: the commands that installed its packages first."""
    result = _change(params, check_mode, diff)
    if installed:
        result.update(changed=True, commands=list(installed) + result['commands'])
    return result


def _change(params, check_mode, diff):
    role = params.get('role')
    netns = params.get('netns')
    _netlink.enter_netns(netns)
    agent = (params['agent_command'], params['agent_library']) if params.get('agent') else None
    if role is None:
        if agent is None:
            if params.get('dependencies'):
                return {'changed': False, 'commands': []}
            raise InputError('role', 'required unless the module only installs the agent (agent: true) '
                                     'or its dependencies')
        commands = _install.install(agent[0], agent[1], check_mode)
        if params.get('agent_service'):
            commands += install_service(agent[0], bool(commands), check_mode)
        return {'changed': bool(commands), 'commands': commands, 'agent_changed': bool(commands)}
    directory = _netlink.etc_path(params['state_dir'], netns)
    pending = _pending.path_of(directory, role)
    if params.get('confirm'):
        return confirm(role, pending, check_mode)
    timeout = params.get('confirm_timeout') or 0
    if timeout < 0:
        raise InputError('confirm_timeout', 'must be 0 (off) or a number of seconds, got %d' % timeout)
    state = params.get('state')
    if not isinstance(state, dict):
        raise InputError('state', 'required unless confirm is true')
    if state.get('role', role) != role:
        raise InputError('state.role', 'is %r, the module was called for %r' % (state.get('role'), role))
    state = dict(state, role=role, version=_agent.STATE_VERSION)
    failures = failed_checks(params.get('checks') or [])
    if failures:
        raise InputError(None, '; '.join(failures))
    if timeout and not check_mode:
        _pending.remove(_pending.outcome_path(pending))  # an earlier run's rollback, reported or not: not this run's
    path = state_path(directory, role)
    previous = read_previous(directory, role)
    taken = {}

    def before_change():
        taken['snapshot'] = plan.record()
        if timeout:
            taken['pid'] = arm(role, taken['snapshot'], timeout, pending)
            taken['scope'], taken['warning'] = own_scope(role, taken['pid'])

    try:
        plan = Change(role, state, previous, params['persist'], path, netns, agent)
        result = plan.run(check_mode, diff, None if check_mode else before_change)
    except (EngineError, InputError, OSError, IOError) as exc:
        snapshot = taken.get('snapshot')
        if snapshot is None and isinstance(exc, (OSError, IOError)):
            # A file that cannot be read (an rt_tables file, the role's own files):
            # nothing was changed yet, so a clean failure rather than a traceback.
            raise EngineError('%s; nothing was changed' % exc)
        if snapshot is None:
            raise
        if taken.get('pid') is not None:
            _pending.remove(pending)
        problems = snapshot.restore()
        outcome = ('put back the state from before this run' if not problems
                   else 'could not put everything back: %s' % '; '.join(problems))
        raise EngineError('%s: %s; %s' % (getattr(exc, 'where', 'apply'), exc, outcome),
                          commands=getattr(exc, 'commands', None))
    if agent is not None:
        result['agent_changed'] = bool(plan.agent_commands)
        if params.get('agent_service'):
            # After the state file: a restarted agent reads the new state.
            unit = install_service(agent[0], bool(plan.agent_commands), check_mode)
            if unit:
                result.update(changed=True, commands=result['commands'] + unit, agent_changed=True)
    pid = taken.get('pid')
    if pid is not None:
        extend(pending, timeout)
        result['rollback'] = {'pid': pid, 'timeout': timeout}
        if taken['scope']:
            result['rollback']['scope'] = taken['scope']
        if taken['warning']:
            result['warnings'] = [taken['warning']]
    return result


def install_service(command, restart, check_mode):
    """_install.install_service, its failure an EngineError that says the change itself is made."""
    try:
        return _install.install_service(command, restart, check_mode)
    except (_install.ServiceError, OSError, IOError) as exc:
        raise EngineError('the agent\'s unit: %s (the change itself was applied)' % exc)


def failed_checks(checks):
    """The messages of the role's ``checks`` that fail on this router, [] when all hold.

    What only the router can tell, read at once (no task of its own): each check
    has ``field`` (the role's variable, for the message) and one of
    ``interface`` (it exists; with ``ipv4``, it has an IPv4 address);
    ``host_of`` + ``interfaces`` (the address is a host of those interfaces'
    IPv4 subnets, not their own address); ``gateway`` + ``interface`` (the
    kernel reaches the gateway directly by that interface).
    """
    if not checks:
        return []
    interfaces = _netlink.interface_map()
    failures = []
    with _netlink.RouteSocket() as sock:
        addresses = None
        for check in checks:
            field = check.get('field') or 'checks'
            try:
                if 'host_of' in check:
                    if addresses is None:
                        addresses = _agent.interface_prefixes(sock)
                    message = _host_of(check, addresses)
                elif check.get('interface') not in interfaces:
                    # a gateway's interface has a check of its own
                    message = None if 'gateway' in check else 'no interface %r on the router (have: %s)' % (
                        check.get('interface'), ', '.join(sorted(interfaces)))
                elif check.get('ipv4'):
                    if addresses is None:
                        addresses = _agent.interface_prefixes(sock)
                    found = [interface for interface in addresses.get(check['interface'], []) if interface.version == 4]
                    message = None if found else 'no IPv4 address on %r' % check['interface']
                elif 'gateway' in check:
                    # IPv4 without the interface: given one, the kernel takes any address as on its link.
                    oif = interfaces[check['interface']] if ':' in check['gateway'] else None
                    route = sock.route_get(check['gateway'], oif)
                    direct = (route is not None and route['type'] == 1 and route['oif'] == interfaces[check['interface']]
                              and not route['gateway'])
                    message = None if direct else '%s is not on the subnet of interface %s' % (check['gateway'], check['interface'])
                else:
                    message = None
            except (ValueError, socket.error) as exc:
                message = 'cannot check %r: %s' % (check, exc)
            if message:
                failures.append('%s: %s' % (field, message))
    return failures


def _host_of(check, addresses):
    address = ipaddress.ip_address(u'%s' % check['host_of'])
    subnets = [interface for name in check.get('interfaces') or [] for interface in addresses.get(name, [])
               if interface.version == 4]
    if any(address in interface.network and address != interface.ip for interface in subnets):
        return None
    return '%s is not a host of the subnets of %s (%s)' % (address, ', '.join(check.get('interfaces') or []),
                                                           ', '.join(str(interface) for interface in subnets) or 'none')


class Change:
    """The steps of one role's change, in order, each a ``run(check_mode, diff)``."""

    def __init__(self, role, state, previous, persist, path, netns=None, agent=None):
        self.role, self.state, self.previous, self.persist, self.path = role, state, previous, persist, path
        self.record_path = record_path(os.path.dirname(path), role)
        self.netns = netns
        self.agent, self.agent_commands = agent, []
        self.dropped_tables, self.dropped_entries, self.dropped_connmark = removals(state, previous)
        if self.dropped_entries:
            # A name line that was there before the role (in another file, as the
            # migration guide allows keeping) is not the role's to remove.
            own = self.local((previous.get('rt_tables_entry') or {}).get('path') or _rt_tables.DEFAULT_PATH)
            names = set(name for lineno, number, name in _rt_tables.read_file(own)[1])
            self.dropped_entries = [entry for entry in self.dropped_entries if entry.get('name') in names]
        self.main_before, main_give_back = main_default_plan(state, previous, read_main_default)
        if main_give_back is not None:
            self.dropped_tables.append(main_give_back)
        keys = set((state.get('sysctl') or {}).get('values') or {}) | set(((previous.get('sysctl') or {}).get('before') or {}))
        self.live_sysctls = read_sysctls(sorted(keys))
        self.sysctl_values, self.sysctl_before, self.sysctl_give_back = sysctl_plan(state, previous, self.live_sysctls)
        out = _agent.monitor_out(_monitor.published()) if role == 'split_access' else set()
        self.effective = _monitor.effective_state(state, out) if out else state

    def files(self):
        """The files this change may write: the role's state, sysctl and nftables files and rt_tables drop-in."""
        found = [self.path, self.record_path]
        for source in (self.state, self.previous):
            found.append(self.local((source.get('rt_tables_entry') or {}).get('path') or _rt_tables.DEFAULT_PATH))
            for section in ('sysctl', 'nftables'):
                if (source.get(section) or {}).get('file'):
                    found.append(self.local(source[section]['file']))
        return found

    def local(self, path):
        """Where a file of the router is seen from this process (``netns``: see _netlink.etc_path)."""
        return _netlink.etc_path(path, self.netns)

    def tables(self):
        names = _rt_tables.table_names(self.netns)
        for entry in (self.state.get('rt_tables_entry') or {}).get('entries') or []:
            names[entry.get('name')] = entry.get('id')
        found = set()
        for source in (self.state, self.previous):
            for table in (source.get('route_table') or {}).get('tables') or []:
                label = _table_key(table)
                number = names.get(label, label)
                try:
                    found.add(int(number))
                except (TypeError, ValueError):
                    raise InputError('state.route_table', 'unknown table %r' % label)
        return found

    def nft_tables(self):
        found = []
        for source in (self.state, self.previous):
            qualified = (source.get('nftables') or {}).get('table') or ''
            if qualified.startswith('inet '):
                found.append(qualified[len('inet '):])
            name = (source.get('connmark_return') or {}).get('name')
            if name:
                found.append(table_name(name))
        return found

    def record(self):
        return Snapshot.record(self.tables(), self.nft_tables(), self.files(),
                               set(self.live_sysctls) | set(self.sysctl_values))

    def run(self, check_mode, diff, before_change=None):
        """Run the steps; ``before_change()`` is called once, before the first step that
        changes something (the snapshot and the rollback: a run that changes nothing
        needs neither, so each step is planned in check mode first until one would change)."""
        commands, diffs, changed = [], [], False
        for where, step in self.steps():
            try:
                if before_change is not None:
                    if not step(True, False).get('changed'):
                        continue
                    before_change()
                    before_change = None
                result = step(check_mode, diff)
            except (EngineError, InputError) as exc:
                exc.where = where
                raise
            if result.get('changed'):
                changed = True
            commands.extend(result.get('commands') or [])
            if diff and result.get('diff') and (result['diff'].get('before') != result['diff'].get('after')):
                diffs.append(dict(result['diff'], before_header=where, after_header=where))
        out = {'changed': changed, 'commands': commands}
        if diff:
            out['diff'] = diffs
        return out

    def steps(self):
        state = self.effective
        found = []
        # Names no longer used go first: a new name may take an old one's id.
        if self.dropped_entries:
            old = self.previous['rt_tables_entry']
            found.append(('rt_tables_entry', _module(_rt_tables.change, _rt_tables.ARGUMENT_SPEC, dict(
                old, entries=self.dropped_entries, state='absent'), self.netns)))
        if (state.get('rt_tables_entry') or {}).get('entries'):
            found.append(('rt_tables_entry', _module(_rt_tables.change, _rt_tables.ARGUMENT_SPEC, state['rt_tables_entry'], self.netns)))
        found.append(('sysctl', self._sysctl))
        tables = list((state.get('route_table') or {}).get('tables') or []) + self.dropped_tables
        if tables:
            found.append(('route_table', _module(_routes.change, _routes.ROUTE_TABLE_SPEC, {'tables': tables}, self.netns)))
        if 'ip_rule' in state or state.get('address_rules'):
            found.append(('ip_rule', lambda check_mode, diff: _agent.rules_step(
                dict(state, ip_rule=dict(state.get('ip_rule') or {}, netns=self.netns)), check_mode, diff)))
        found.append(('nftables', self._nftables))
        mark = state.get('connmark_return') or {}
        if mark.get('entries'):
            found.append(('connmark_return', _module(_connmark_return.change, CONNMARK_SPEC, mark, self.netns)))
        elif mark.get('name'):
            found.append(('connmark_return', _module(_connmark_return.change, CONNMARK_SPEC,
                                                     {'name': mark['name'], 'state': 'absent'}, self.netns)))
        elif self.dropped_connmark:
            found.append(('connmark_return', _module(_connmark_return.change, CONNMARK_SPEC, self.dropped_connmark, self.netns)))
        if self.agent:
            # Before the state file: the engine that reads it is there first.
            found.append(('agent', self._agent))
        found.append(('state file', self._state_file))
        return found

    def _agent(self, check_mode, diff):
        self.agent_commands = _install.install(self.agent[0], self.agent[1], check_mode)
        return {'changed': bool(self.agent_commands), 'commands': self.agent_commands}

    def _sysctl(self, check_mode, diff):
        section = self.state.get('sysctl') or {}
        commands = []
        path = section.get('file') or ((self.previous.get('sysctl') or {}).get('file'))
        if path:
            want = sysctl_text(self.role, self.sysctl_values) if self.sysctl_values else None
            commands.extend(_install.put_file(self.local(path), want, 0o644, check_mode))
        values = dict(self.sysctl_values)
        values.update(self.sysctl_give_back)
        # A key of an interface not there yet (ppp) is set by the agent when it appears.
        values = dict((key, value) for key, value in values.items() if self.live_sysctls.get(key) is not None)
        if values:
            result = _agent.apply_sysctls(values, check_mode)
            commands.extend(result['commands'])
        result = {'changed': bool(commands), 'commands': commands}
        if diff:
            changed = sorted(key for key, value in values.items() if self.live_sysctls[key] != value)
            result['diff'] = {'before': ''.join('%s = %s\n' % (key, self.live_sysctls[key]) for key in changed),
                              'after': ''.join('%s = %s\n' % (key, values[key]) for key in changed)}
        return result

    def _nftables(self, check_mode, diff):
        section = self.effective.get('nftables') or {}
        old = self.previous.get('nftables') or {}
        wanted = section.get('content') is not None
        # The previous run's table and file unless this state keeps them; this state's when it has no content.
        gone_tables, gone_files = set(), set()
        for source in (old, section):
            for key, gone in (('table', gone_tables), ('file', gone_files)):
                if source.get(key) and not (wanted and source[key] == section.get(key)):
                    gone.add(source[key])
        commands, before, after = [], [], []
        for qualified in sorted(gone_tables):
            deleted, listing = _delete_nft_table(qualified, check_mode)
            commands.extend(deleted)
            before.append(listing)
        for path in sorted(gone_files):
            commands.extend(_install.put_file(self.local(path), None, 0o600, check_mode))
        if wanted:
            commands.extend(_install.put_file(self.local(section['file']), section['content'], 0o600, check_mode,
                                              directory_mode=0o700))
            loaded = _agent.apply_nft_file(section, check_mode, script=section['content'], diff=diff)
            commands.extend(loaded['commands'])
            if loaded.get('diff'):
                before.append(loaded['diff']['before'])
                after.append(loaded['diff']['after'])
        result = {'changed': bool(commands), 'commands': commands}
        if diff:
            result['diff'] = {'before': ''.join(before), 'after': ''.join(after)}
        return result

    def saved(self):
        """The state file's document: what the agent applies after a reboot."""
        state = dict(self.state)
        if 'nftables' in state:
            if state['nftables'].get('content') is None:
                del state['nftables']
            else:
                state['nftables'] = dict((key, value) for key, value in state['nftables'].items() if key != 'content')
        if 'sysctl' in state:
            if self.sysctl_values:
                state['sysctl'] = dict(state['sysctl'], before=self.sysctl_before)
            else:
                del state['sysctl']
        if self.main_before is not None:
            state['main_default_before'] = self.main_before
        return json.dumps(state, indent=4, sort_keys=True) + '\n'

    def leaves_something(self):
        """Whether this state puts anything on the router that a later run may have to remove."""
        state = self.state
        return bool((state.get('route_table') or {}).get('tables') or (state.get('rt_tables_entry') or {}).get('entries')
                    or (state.get('ip_rule') or {}).get('rules') or state.get('address_rules')
                    or (state.get('nftables') or {}).get('content') is not None or self.sysctl_values
                    or (state.get('connmark_return') or {}).get('entries'))

    def _state_file(self, check_mode, diff):
        """The state file for the agent (``persist``); else the same document as a record
        the agent does not read, so the next run still knows what to remove."""
        saved = self.saved() if self.leaves_something() else None
        commands = _install.put_file(self.path, saved if self.persist else None, 0o600, check_mode,
                                     directory_mode=0o700)
        commands += _install.put_file(self.record_path, None if self.persist else saved, 0o600, check_mode,
                                      directory_mode=0o700)
        return {'changed': bool(commands), 'commands': commands}


def _delete_nft_table(qualified, check_mode):
    """Delete nftables table ``qualified`` ('inet NAME') when it is there: (the commands, its
    listing as it was, '' when there was none: the before of a diff)."""
    family, dummy, table = qualified.partition(' ')
    backend = NftBackend()
    listing = backend.read_table(table) if family == 'inet' and backend.nft is not None else None
    if listing is None:
        return [], ''
    if not check_mode:
        rc, out, err = run_tool([backend.nft, 'delete', 'table', family, table])
        if rc != 0:
            raise EngineError('nft delete table %s failed: %s' % (qualified, err.strip()))
    return ['nft delete table %s' % qualified], listing


def _module(change_function, spec, params, netns=None):
    # netns: the module's own option goes to every step (its files under /etc/netns/NAME).
    return _agent.module_step(change_function, spec, dict(params, netns=netns), '')

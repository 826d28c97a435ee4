# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the uplink health monitor of split_access, run by the agent.

Each uplink is probed through itself (its interface, its mark, so policy
routing sends the probe by its table) every ``interval`` seconds, to each of
its targets; a round is good when one target answers within the timeout.
``down`` failed rounds in a row take an uplink out, ``up`` good rounds bring it
back; an interface that goes down is out at once (its connections are deleted
only if the link stays down as long as ``down`` rounds take: see _agent.Uplinks.link).

An uplink that is out gets no new connection (the nftables chain ``balance``
gets a rule over the live uplinks), leaves the router's multipath default, and
the conntrack entries marked for it, only those, are deleted. All of this is
the saved state of split_access with the out uplinks taken away
(``effective_state``), applied as any state is.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import errno
import ipaddress
import json
import math
import os
import socket
import struct
import time

from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import find_tool, run_tool

NFT_TABLE = 'inet netpolicy_split_access'
# The byte of the marks that split_access owns.
SPLIT_ACCESS_MASK = 0xff
# Where `watch` publishes the monitor's view for `apply` and `status` (per network namespace).
RUN_DIR = '/run/netpolicy-routing'
SO_MARK = 36
SO_BINDTODEVICE = 25
SO_NETNS_COOKIE = 71   # Linux 5.14 and later
ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0
# Rounds kept for the loss and RTT figures.
HISTORY = 20
# How long (seconds) the record a stopped `watch` leaves keeps its uplinks out for the next
# one: long enough for a restart of the unit, not for a watch stopped by hand for a while.
LEFT_OUT_MAX_AGE = 60.0


# ---------------------------------------------------------------- what an uplink being out changes

def balance_rule(uplinks, balance):
    """The rule of chain ``balance`` giving new connections to ``uplinks`` (live, in list order)."""
    if balance == 'failover':
        slots = [uplinks[0]['mark']] if uplinks else []
    elif balance == 'per_connection':
        slots = [uplink['mark'] for uplink in uplinks for dummy in range(int(uplink.get('weight') or 1))]
    else:
        return None
    if not slots:
        return None
    if len(slots) == 1:
        return 'jump uplink_%d' % slots[0]
    return 'numgen inc mod %d vmap { %s }' % (
        len(slots), ', '.join('%d : jump uplink_%d' % (index, mark) for index, mark in enumerate(slots)))


def main_default(uplinks, balance):
    """The router's own default route over ``uplinks`` (live, in list order), as route_table takes it."""
    chosen = uplinks[:1] if balance == 'failover' else uplinks
    gateways = [uplink for uplink in chosen if uplink.get('gateway')]
    if len(gateways) > 1:
        return {'dest': 'default', 'nexthops': [
            {'gateway': uplink['gateway'], 'dev': uplink['interface'], 'weight': int(uplink.get('weight') or 1)}
            for uplink in gateways]}
    if gateways:
        return {'dest': 'default', 'gateway': gateways[0]['gateway'], 'dev': gateways[0]['interface']}
    if chosen:
        return {'dest': 'default', 'dev': chosen[0]['interface']}
    return None


def effective_state(state, out):
    """The split_access ``state`` with the uplinks named in ``out`` taken away (``state`` when none is).

    Their tables, rules and marks stay (connections restored by their mark
    still find their way while they last); new connections and the router's
    default route use the live uplinks. With every uplink out nothing is taken
    away: the last configuration is better than none.
    """
    uplinks = state.get('uplinks') or []
    live = [uplink for uplink in uplinks if uplink.get('name') not in out]
    if not out or not live or len(live) == len(uplinks):
        return state
    state = copy.deepcopy(state)
    balance = state.get('balance')
    rule = balance_rule(live, balance)
    if rule is not None and 'nftables' in state:
        state['nftables']['override'] = 'flush chain %s balance\nadd rule %s balance %s\n' % (NFT_TABLE, NFT_TABLE, rule)
    route = main_default(live, balance)
    for table in (state.get('route_table') or {}).get('tables') or []:
        if str(table.get('table')) == 'main' and route is not None:
            table['routes'] = [route]
    return state


def flush_conntrack(mark, mask):
    """Delete the conntrack entries whose mark & ``mask`` is ``mark``; the command, or OSError."""
    tool = find_tool('conntrack')
    if tool is None:
        raise OSError('conntrack not found (Debian: conntrack)')
    command = [tool, '-D', '--mark', '%d/%d' % (mark, mask)]
    rc, out, err = run_tool(command)
    # 1 and "0 flow entries have been deleted": there were none.
    if rc not in (0, 1):
        raise OSError('%s failed: %s' % (' '.join(command), err.strip()))
    return 'conntrack -D --mark %#x/%#x' % (mark, mask)


# ---------------------------------------------------------------- the saved settings

def probe_kind(probe):
    """'icmp' or ('tcp', PORT) of the setting ``probe`` ('icmp' or 'tcp:PORT'), None when it is neither."""
    text = str(probe)
    if text == 'icmp':
        return 'icmp'
    name, dummy, port = text.partition(':')
    if name == 'tcp' and port.isdigit() and 1 <= int(port) <= 65535:
        return ('tcp', int(port))
    return None


def addresses_of(targets):
    """The target addresses of one uplink: one given without a list, as the role allows, is a list of one."""
    return [targets] if isinstance(targets, str) else list(targets)


def _number(value, default, kind):
    """``kind(value or default)`` as the Monitor reads it, or None when it cannot be read."""
    try:
        return kind(value or default)
    except (TypeError, ValueError, OverflowError):
        return None


def settings_problem(state):
    """What the monitor cannot use in the ``uplinks`` and ``monitor`` sections of a split_access
    ``state``, or None: a hand-edited file is refused by name, it does not end `watch`."""
    uplinks = state.get('uplinks') or []
    if not isinstance(uplinks, list):
        return 'uplinks: not a list: %r' % (uplinks,)
    for index, uplink in enumerate(uplinks):
        where = 'uplinks[%d]' % index
        if not isinstance(uplink, dict):
            return '%s: not a mapping: %r' % (where, uplink)
        for key in ('name', 'interface'):
            if not isinstance(uplink.get(key), str) or not uplink[key]:
                return '%s.%s: not a name: %r' % (where, key, uplink.get(key))
        mark = uplink.get('mark')
        if not isinstance(mark, int) or isinstance(mark, bool) or not 1 <= mark <= SPLIT_ACCESS_MASK:
            return '%s.mark: not 1..%d: %r' % (where, SPLIT_ACCESS_MASK, mark)
        weight = _number(uplink.get('weight'), 1, int)
        if weight is None or not 1 <= weight <= 256:
            return '%s.weight: not 1..256: %r' % (where, uplink.get('weight'))
        if not isinstance(uplink.get('gateway') or '', str):
            return '%s.gateway: not an address: %r' % (where, uplink['gateway'])
    settings = state.get('monitor')
    if settings is None:
        return None
    if not isinstance(settings, dict):
        return 'monitor: not a mapping: %r' % (settings,)
    if probe_kind(settings.get('probe') or 'icmp') is None:
        return 'monitor.probe: not icmp or tcp:PORT: %r' % (settings.get('probe'),)
    interval = _number(settings.get('interval'), 0.5, float)
    if interval is None or not math.isfinite(interval) or interval <= 0:
        return 'monitor.interval: not a number of seconds above 0: %r' % (settings.get('interval'),)
    for key in ('down', 'up'):
        rounds = _number(settings.get(key), 3, int)
        if rounds is None or rounds < 1:
            return 'monitor.%s: not a number of rounds, 1 or more: %r' % (key, settings.get(key))
    targets = settings.get('targets') or {}
    if not isinstance(targets, dict):
        return 'monitor.targets: not a mapping: %r' % (targets,)
    for name, addresses in targets.items():
        if not isinstance(addresses, (str, list)):
            return 'monitor.targets.%s: not a list of IPv4 addresses: %r' % (name, addresses)
        for address in addresses_of(addresses):
            try:
                ipaddress.IPv4Address(u'%s' % address)
            except ValueError:
                return 'monitor.targets.%s: not an IPv4 address: %r' % (name, address)
    return None


# ---------------------------------------------------------------- hysteresis

class UplinkHealth:
    """The monitor's view of one uplink: in or out, and the figures of recent rounds."""

    def __init__(self, name, interface, down, up, now, probed=True):
        self.name = name
        self.interface = interface
        self.probed = probed     # without targets only the link counts
        self.down = down
        self.up = up
        self.out = False
        self.since = now
        self.streak = 0          # rounds in a row against the current state
        self.history = []        # (good, rtt or None) of recent rounds
        self.link_down = False

    def record(self, good, rtt, now):
        """A finished round; returns 'out', 'in' or None (no change)."""
        self.history = (self.history + [(good, rtt)])[-HISTORY:]
        if self.link_down:
            return None
        if good == self.out:       # a round that speaks for a change
            self.streak += 1
        else:
            self.streak = 0
        if self.out and self.streak >= self.up:
            return self._set(False, now)
        if not self.out and self.streak >= self.down:
            return self._set(True, now)
        return None

    def link(self, up, now):
        """The interface went down (out at once) or up (back after ``up`` good rounds)."""
        if self.link_down == (not up):
            return None       # no change of the link (another attribute of it changed)
        self.link_down = not up
        self.streak = 0
        if not up and not self.out:
            return self._set(True, now)
        if up and self.out and not self.probed:
            return self._set(False, now)
        return None

    def _set(self, out, now):
        self.out = out
        self.since = now
        self.streak = 0
        return 'out' if out else 'in'

    def figures(self):
        rtts = [rtt for good, rtt in self.history if rtt is not None]
        return {
            'state': 'out' if self.out else 'in',
            'since': self.since,
            'rounds': len(self.history),
            'loss': round(float(sum(1 for good, rtt in self.history if not good)) / len(self.history), 3)
            if self.history else None,
            'rtt_ms': round(1000.0 * sum(rtts) / len(rtts), 2) if rtts else None,
        }


# ---------------------------------------------------------------- probes

def checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def echo_request(ident, seq):
    header = struct.pack('!BBHHH', ICMP_ECHO, 0, 0, ident, seq)
    payload = b'netpolicy-routing'
    return struct.pack('!BBHHH', ICMP_ECHO, 0, checksum(header + payload), ident, seq) + payload


def echo_reply(packet):
    """(ident, seq) of an ICMP echo reply in ``packet`` (with its IPv4 header), else None."""
    if len(packet) < 20:
        return None
    start = (packet[0] & 0x0f) * 4
    if len(packet) < start + 8:
        return None
    kind, code, dummy, ident, seq = struct.unpack('!BBHHH', packet[start:start + 8])
    if kind != ICMP_ECHO_REPLY:
        return None
    return ident, seq


class Probe:
    """The probes of one uplink: a socket bound to its interface, with its mark."""

    def __init__(self, uplink, targets, kind, ident):
        self.uplink = uplink
        self.targets = list(targets)
        self.kind = kind          # 'icmp' or ('tcp', port)
        self.ident = ident
        self.seq = 0
        self.sock = None
        self.pending = {}         # icmp: {seq: target}; tcp: {socket: target}
        self.sent_at = None
        self.answered = None      # RTT of the first answer of this round

    def _options(self, sock):
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, self.uplink['mark'])
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.uplink['interface'].encode() + b'\0')

    def start_round(self, now):
        """Send this round's probes; an error (interface gone) makes a failed round."""
        self.close_round()
        self.sent_at = now
        self.answered = None
        if self.kind == 'icmp':
            try:
                if self.sock is None:
                    self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
                    self.sock.setblocking(False)
                    self._options(self.sock)
                for target in self.targets:
                    self.seq = (self.seq + 1) & 0xffff
                    self.pending[self.seq] = target
                    self.sock.sendto(echo_request(self.ident, self.seq), (target, 0))
            except (OSError, socket.error):
                self.close()
        else:
            for target in self.targets:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    self._options(sock)
                    sock.connect_ex((target, self.kind[1]))
                except (OSError, socket.error):
                    sock.close()
                    continue
                self.pending[sock] = target

    def sockets(self):
        """The sockets to wait on: readable (icmp) or writable (tcp)."""
        if self.kind == 'icmp':
            return ([self.sock] if self.sock is not None and self.pending else []), []
        return [], list(self.pending)

    def handle(self, sock, now):
        """``sock`` is ready: note an answer of this round."""
        if self.kind == 'icmp':
            while True:
                try:
                    packet = self.sock.recv(2048)
                except (OSError, socket.error):
                    return
                reply = echo_reply(packet)
                if reply and reply[0] == self.ident and reply[1] in self.pending:
                    del self.pending[reply[1]]
                    if self.answered is None:
                        self.answered = now - self.sent_at
        else:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            del self.pending[sock]
            sock.close()
            # Refused is an answer too: the path through the uplink works.
            if code in (0, errno.ECONNREFUSED) and self.answered is None:
                self.answered = now - self.sent_at

    def close_round(self):
        if self.kind != 'icmp':
            for sock in self.pending:
                sock.close()
        self.pending = {}

    def close(self):
        self.close_round()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Monitor:
    """Rounds of probes over the uplinks of a split_access state, and their verdicts.

    Every ``now`` is time.monotonic(): a step of the wall clock must not stop the rounds.
    """

    def __init__(self, state, now):
        settings = state.get('monitor') or {}
        self.interval = float(settings.get('interval') or 0.5)
        # A round ends well before the next starts: an uplink is out within
        # down x interval + timeout (+ the time to act) of failing; with the
        # defaults 3 x 0.5 + 0.2 s. An answer slower than this counts as lost.
        self.timeout = min(1.0, self.interval * 0.4)
        kind = probe_kind(settings.get('probe') or 'icmp')  # checked with the state (settings_problem)
        targets = settings.get('targets') or {}
        self.health = {}
        self.probes = []
        base = os.getpid() & 0xff00
        for index, uplink in enumerate(state.get('uplinks') or []):
            self.health[uplink['name']] = UplinkHealth(uplink['name'], uplink['interface'],
                                                       int(settings.get('down') or 3), int(settings.get('up') or 3), now,
                                                       probed=bool(targets.get(uplink['name'])))
            if targets.get(uplink['name']):
                self.probes.append(Probe(uplink, addresses_of(targets[uplink['name']]), kind,
                                         (base + index) & 0xffff))
        self.next_round = now
        self.round_end = None

    def out(self):
        return set(name for name, health in self.health.items() if health.out)

    def keep_out(self, left):
        """Start with the uplinks of ``left`` ({name: since on the wall clock}, see left_out) out,
        as the previous `watch` left them, since then; their names, sorted.

        Only uplinks with targets: their probes bring them back after ``up`` good rounds,
        where one without targets follows its link, and no event would bring it back."""
        offset = time.time() - time.monotonic()
        kept = []
        for name, since in sorted(left.items()):
            health = self.health.get(name)
            if health is not None and health.probed:
                health.out = True
                health.since = since - offset
                kept.append(name)
        return kept

    def deadline(self):
        """When ``tick`` has something to do next; None without probes (link events only)."""
        if not self.probes:
            return None
        return self.round_end if self.round_end is not None else self.next_round

    def wait_on(self):
        readable, writable = [], []
        for probe in self.probes:
            more_r, more_w = probe.sockets()
            readable += more_r
            writable += more_w
        return readable, writable

    def ready(self, sock, now):
        for probe in self.probes:
            if sock is probe.sock or sock in probe.pending:
                probe.handle(sock, now)
                return

    def tick(self, now):
        """Start or finish a round when its time has come; returns [(name, 'out'|'in')]."""
        changes = []
        if self.round_end is not None and (now >= self.round_end or not any(
                probe.pending and probe.answered is None for probe in self.probes)):
            for probe in self.probes:
                change = self.health[probe.uplink['name']].record(probe.answered is not None, probe.answered, now)
                probe.close_round()
                if change:
                    changes.append((probe.uplink['name'], change))
            self.round_end = None
        if self.round_end is None and now >= self.next_round and self.probes:
            for probe in self.probes:
                probe.start_round(now)
            self.round_end = now + self.timeout
            # Rounds keep their rhythm; after a stall (a long apply) the next one
            # is a whole interval after this one, never right behind it.
            self.next_round += self.interval
            if self.next_round <= now:
                self.next_round = now + self.interval
        return changes

    def link(self, ifname, up, now):
        changes = []
        for name, health in self.health.items():
            if health.interface == ifname:
                change = health.link(up, now)
                if change:
                    changes.append((name, change))
        return changes

    def close(self):
        for probe in self.probes:
            probe.close()

    def figures(self):
        """{name: figures} for `status`, ``since`` on the wall clock: a date it shows, where the
        monitor's own times (``now``) are time.monotonic()."""
        offset = time.time() - time.monotonic()
        found = {}
        for name, health in self.health.items():
            found[name] = health.figures()
            found[name]['since'] += offset
        return found


# ---------------------------------------------------------------- the view shared with apply and status

def run_path():
    """The file of this network namespace's monitor (namespaces share /run)."""
    return os.path.join(RUN_DIR, 'monitor-%d.json' % os.stat('/proc/self/ns/net').st_ino)


def netns_cookie():
    """The cookie of this network namespace, or None (a kernel before 5.14). Unlike its inode
    number, which a namespace made after this one is gone may have, it is never reused in a boot."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        return struct.unpack('=Q', sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
    except (OSError, socket.error, struct.error):
        return None
    finally:
        sock.close()


def publish(figures, path=None, running=True):
    """Write the monitor's ``figures`` for `apply` and `status`; ``running=False``: the last
    figures of a `watch` that stops, no longer its view but a record for the next one (left_out)."""
    path = path or run_path()
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path), 0o755)
    temporary = '%s.%d' % (path, os.getpid())
    with open(temporary, 'w') as handle:
        json.dump({'pid': os.getpid() if running else None, 'netns': netns_cookie(), 'time': time.time(),
                   'uplinks': figures}, handle)
    os.rename(temporary, path)


def published(path=None):
    """The figures a running `watch` published, or {} (none, its process is gone, or it stopped:
    nothing would bring back an uplink its record says is out)."""
    path = path or run_path()
    try:
        with open(path) as handle:
            document = json.load(handle)
        if document['pid'] is None:
            return {}
        pid = int(document['pid'])
        if pid <= 0:
            return {}
        os.kill(pid, 0)
    except (IOError, OSError, ValueError, KeyError, TypeError, OverflowError):
        return {}
    return document.get('uplinks') or {}


def left_out(path=None):
    """{name: since} of the uplinks the last `watch` of this network namespace had out when it
    stopped (or died), ``since`` on the wall clock; {} when there is no record of this namespace
    (a reboot empties /run; one of a namespace that had the same inode has another cookie), or
    when it is older than LEFT_OUT_MAX_AGE: the record is for a restart, and after a longer
    stop (an `apply` may have put every uplink back since) nothing is known of the uplinks."""
    path = path or run_path()
    cookie = netns_cookie()
    try:
        with open(path) as handle:
            document = json.load(handle)
        if cookie is None or document['netns'] != cookie:
            return {}
        if not 0 <= time.time() - float(document['time']) <= LEFT_OUT_MAX_AGE:
            return {}
        return dict((name, float(figures['since'])) for name, figures in document['uplinks'].items()
                    if figures['state'] == 'out')
    except (IOError, OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return {}


def withdraw(path=None):
    try:
        os.unlink(path or run_path())
    except OSError:
        pass

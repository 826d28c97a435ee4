# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the one netlink seam.

Everything that touches netlink, pyroute2 or network namespaces goes through
here, so the rest of module_utils stays plain logic. Reads (routes, rules,
links, addresses) and route writes use a lean rtnetlink codec of its own; rule
writes go through pyroute2, imported only then. Works with pyroute2 0.7.2
(Debian 12's python3-pyroute2) and with current releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ctypes
import errno
import importlib.util
import os
import socket
import struct

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError

# pyroute2 is imported only where it is used (connect): its import costs more
# than a no-op run of a module (0.15-0.25 s of CPU), and reads go through the
# codec below.
HAS_PYROUTE2 = importlib.util.find_spec('pyroute2') is not None
PYROUTE2_IMPORT_ERROR = None if HAS_PYROUTE2 else 'ImportError: No module named pyroute2'
CLONE_NEWNET = 0x40000000


class NetlinkError(Exception):
    """A request the kernel refused: ``code`` is the errno."""

    def __init__(self, code, text=None):
        super(NetlinkError, self).__init__(text or '(%d, %r)' % (code, os.strerror(code)))
        self.code = code


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
    fd = os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _setns(fd):
    if hasattr(os, 'setns'):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, 'setns: %s' % os.strerror(code))


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
    """A pyroute2 route socket in the current namespace (for writes of rules: everything else uses RouteSocket)."""
    from pyroute2 import IPRoute

    return IPRoute()


def rule_request(ipr, action, request):
    """``ipr.rule(action, **request)``, a refusal raised as NetlinkError."""
    from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

    try:
        ipr.rule(action, **request)
    except Pyroute2Error as exc:
        raise NetlinkError(exc.code, str(exc))


# Routes travel in bulk (10,000 in one task), so they use a lean rtnetlink
# codec on a plain netlink socket: with pyroute2, adding a route (one call,
# one ack) costs 0.3-0.6 ms and parsing one from a dump 0.07-0.12 ms; batches
# of requests on one socket cost 0.01 ms per route, as `ip -batch` does (see
# docs/performance.md). Only the route fields route_table manages are decoded.

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_RCVBUFFORCE = 33

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_GETLINK = 18
RTM_GETADDR = 22
RTM_GETRULE = 34
RTM_NEWRULE = 32
RTM_DELRULE = 33
FRA_PRIORITY = 6

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_MULTIPATH = 9
RTA_TABLE = 15
IFLA_IFNAME = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTMGRP_IPV4_RULE = 0x80
RTMGRP_IPV6_RULE = 0x40000   # group 19 (RTNLGRP_IPV6_RULE)

# nftables' change notifications (what `nft monitor` shows), linux/netfilter/nf_tables.h.
NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
# NFT_MSG_* that add or remove a table or something in it (a table, chain, rule, set,
# set element, object or flowtable; 26-32 are the DESTROY* of kernel 6.3 and later).
# Attribute 1 of each of these messages is the name of the table.
_NFT_CHANGES = {0: 'new', 2: 'delete', 3: 'new', 5: 'delete', 6: 'new', 8: 'delete', 9: 'new', 11: 'delete',
                12: 'new', 14: 'delete', 18: 'new', 20: 'delete', 22: 'new', 24: 'delete',
                26: 'delete', 27: 'delete', 28: 'delete', 29: 'delete', 30: 'delete', 31: 'delete', 32: 'delete'}
# NFPROTO_* as nft names the families.
_NFT_FAMILIES = {1: 'inet', 2: 'ip', 3: 'arp', 5: 'netdev', 7: 'bridge', 10: 'ip6'}

ROUTE_WRITE_FLAGS = {
    'add': NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
    'replace': NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
    'delete': NLM_F_REQUEST,
}

_NLMSGHDR = struct.Struct('=IHHII')
_RTMSG = struct.Struct('=BBBBBBBBI')
_RTATTR = struct.Struct('=HH')
_IFINFOMSG = struct.Struct('=BxHiII')
_IFADDRMSG = struct.Struct('=BBBBI')
_NFGENMSG = struct.Struct('=BBH')
_RTNEXTHOP = struct.Struct('=HBBi')
_FIB_RULE_HDR = struct.Struct('=BBBBBBBBI')
_RANGE_U16 = struct.Struct('=HH')
_RANGE_U32 = struct.Struct('=II')
_U32 = struct.Struct('=I')
_U32_ATTR = struct.Struct('=HHI')   # a whole 32-bit attribute: length 8, type, value
_ERROR = struct.Struct('=i')
# Bytes of requests per send: well within the default socket send buffer (208 KiB).
_BATCH_BYTES = 64 * 1024


def interface_map():
    """{name: ifindex} of every interface in the current namespace."""
    return dict((name, index) for index, name in socket.if_nameindex())


def _attr(kind, payload):
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b'\0' * (-length % 4)


def _text(payload):
    """A NUL-terminated string attribute (interface name, error message) as text."""
    return payload.split(b'\0', 1)[0].decode('utf-8', 'replace')


def _attrs(data, offset, end):
    """Yield (type, payload) of the netlink attributes in data[offset:end]."""
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            break
        yield kind & 0x3fff, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


class RouteSocket:
    """A netlink route socket of the current namespace, for dumps and batches of route requests."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
            try:
                self.sock.setsockopt(SOL_NETLINK, option, 1)
            except (OSError, socket.error):
                pass  # older kernels: longer acks, no error text, no dump filter
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 * 1024 * 1024)
        except (OSError, socket.error):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.seq = 0
        self.buffer = bytearray(256 * 1024)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _message(self, kind, flags, body):
        self.seq += 1
        return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, self.seq, 0) + body

    def _messages(self):
        """Yield (type, flags, seq, data, offset, end) of the messages of the next datagram."""
        size = self.sock.recv_into(self.buffer)
        data = bytes(self.buffer[:size])
        offset = 0
        while offset + _NLMSGHDR.size <= size:
            length, kind, flags, seq, pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            yield kind, flags, seq, data, offset + _NLMSGHDR.size, offset + length
            offset += (length + 3) & ~3

    def dump_route_messages(self, family, table):
        """The messages of a dump of ``table`` (one family), not decoded: [(data, offset, end)]
        of each one's rtmsg and attributes, in the kernel's order (see decode_routes and
        _routes.routes_of_dump); [] when the table does not exist."""
        body = _RTMSG.pack(family, 0, 0, 0, table if table < 256 else 0, 0, 0, 0, 0)
        body += _U32_ATTR.pack(8, RTA_TABLE, table)
        return self._dump(RTM_GETROUTE, body, lambda data, offset, end: (data, offset, end),
                          'routes of table %d' % table)

    def dump_rules(self, family):
        """The rules of one family, in the kernel's order, as the messages _rules.from_netlink reads."""
        return self._dump(RTM_GETRULE, _FIB_RULE_HDR.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), _decode_rule, 'rules')

    def dump_links(self):
        """decode_event's 'link' dicts of every interface."""
        return self._dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                          lambda data, offset, end: decode_event(RTM_NEWLINK, data, offset, end), 'links')

    def dump_addresses(self):
        """decode_event's 'address' dicts of every address, both families, with ``family``, ``scope``
        and ``flags`` (the IFA_F_* bits of ifaddrmsg, tentative among them)."""
        def decode(data, offset, end):
            family, prefixlen, flags, scope, ifindex = _IFADDRMSG.unpack_from(data, offset)
            return dict(decode_event(RTM_NEWADDR, data, offset, end), family=family, scope=scope, flags=flags)

        return self._dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), decode, 'addresses')

    def route_get(self, address, oif=None):
        """The route the kernel picks for ``address`` (out of interface ``oif``), as
        decode_routes gives a route, or None when there is none (``ip route get``)."""
        family = socket.AF_INET6 if ':' in address else socket.AF_INET
        packed = socket.inet_pton(family, address)
        body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0) + _attr(RTA_DST, packed)
        if oif:
            body += _U32_ATTR.pack(8, RTA_OIF, oif)
        self.sock.send(self._message(RTM_GETROUTE, NLM_F_REQUEST, body))
        seq = self.seq
        while True:
            for kind, flags, msg_seq, data, offset, end in self._messages():
                if msg_seq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    if _ERROR.unpack_from(data, offset)[0]:
                        return None  # unreachable, or no route by that interface
                    continue
                return _decode_route(family, data, offset, end)

    def _dump(self, kind, body, decode, what):
        """[decode(message)] of a dump; [] for a table that does not exist or a family the kernel lacks."""
        self.sock.send(self._message(kind, NLM_F_REQUEST | NLM_F_DUMP, body))
        seq = self.seq
        found = []
        while True:
            for msg_kind, flags, msg_seq, data, offset, end in self._messages():
                if msg_seq != seq:
                    continue
                if msg_kind == NLMSG_DONE:
                    return found
                if msg_kind == NLMSG_ERROR:
                    code = -_ERROR.unpack_from(data, offset)[0]
                    if code in (errno.ENOENT, errno.EAFNOSUPPORT):
                        return found
                    raise OSError(code, 'dumping %s: %s' % (what, os.strerror(code)))
                found.append(decode(data, offset, end))

    def send_routes(self, requests):
        """Send ``requests`` [(action, encode_route of a route dict)] in order; stop after the batch where one fails.

        Returns (done, failure): ``done`` the indexes the kernel accepted,
        ``failure`` None or (index, errno, message) of the first refused one.
        A batch is not a transaction: requests after the refused one in its
        batch may have been accepted too, and are in ``done``.
        """
        done, failure = [], None
        for start, chunk in _batches([body for action, body in requests]):
            first = self.seq + 1
            last = first + len(chunk) - 1
            # The kernel answers a request that fails whether or not it asked for
            # an ack, and handles the requests of one send in order: so only the
            # last one asks, and its ack says that the whole batch was handled.
            buf = b''.join(self._message(RTM_DELROUTE if requests[start + index][0] == 'delete' else RTM_NEWROUTE,
                                         ROUTE_WRITE_FLAGS[requests[start + index][0]]
                                         | (NLM_F_ACK if index == len(chunk) - 1 else 0), body)
                           for index, body in enumerate(chunk))
            self.sock.send(buf)
            refused = set()
            answered = False
            while not answered:
                for kind, flags, seq, data, offset, end in self._messages():
                    if kind != NLMSG_ERROR or not first <= seq <= last:
                        continue
                    answered = answered or seq == last
                    code = -_ERROR.unpack_from(data, offset)[0]
                    if code:
                        index = start + seq - first
                        refused.add(index)
                        if failure is None or index < failure[0]:
                            failure = (index, code, _error_text(code, flags, data, offset, end))
            done.extend(index for index in range(start, start + len(chunk)) if index not in refused)
            if failure is not None:
                break
        return done, failure


class EventSocket:
    """Link, address, route and rule events of the current namespace (what the agent waits on).

    A plain netlink socket subscribed to the multicast groups: ``fileno`` for
    select(), ``events()`` decodes what arrived without blocking.
    """

    PROTOCOL = NETLINK_ROUTE
    GROUPS = (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
              | RTMGRP_IPV4_RULE | RTMGRP_IPV6_RULE)

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, self.PROTOCOL)
        try:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 * 1024 * 1024)
            except (OSError, socket.error):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            self.sock.bind((0, self.GROUPS))
        except (OSError, socket.error):
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()

    @staticmethod
    def decode(kind, data, offset, end):
        return decode_event(kind, data, offset, end)

    def events(self):
        """Decode every message waiting: a list of event dicts (see decode).

        An overrun socket (ENOBUFS) lost events: one ``{'kind': 'overrun'}``
        says so, and the caller must treat everything as changed.
        """
        found = []
        while True:
            try:
                data = self.sock.recv(256 * 1024)
            except (BlockingIOError, InterruptedError):
                return found
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    found.append({'kind': 'overrun'})
                    continue
                raise
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, flags, seq, pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                event = self.decode(kind, data, offset + _NLMSGHDR.size, offset + length)
                if event is not None:
                    found.append(event)
                offset += (length + 3) & ~3


class NftablesEventSocket(EventSocket):
    """Changes to the nftables tables of the current namespace: decode_nftables_event."""

    PROTOCOL = NETLINK_NETFILTER
    GROUPS = 1 << (NFNLGRP_NFTABLES - 1)

    @staticmethod
    def decode(kind, data, offset, end):
        return decode_nftables_event(kind, data, offset, end)


def decode_event(kind, data, offset, end):
    """{'kind': 'link'|'address'|'route'|'rule', 'action': 'new'|'delete', ...} or None for other messages.

    link: ifindex, ifname, up (administratively up and carrier); address:
    ifindex, address; route: table; rule: priority.
    """
    if kind in (RTM_NEWLINK, RTM_DELLINK):
        family, kind_, ifindex, flags, change = _IFINFOMSG.unpack_from(data, offset)
        event = {'kind': 'link', 'action': 'new' if kind == RTM_NEWLINK else 'delete', 'ifindex': ifindex,
                 'ifname': None, 'up': bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)}
        for attr, payload in _attrs(data, offset + _IFINFOMSG.size, end):
            if attr == IFLA_IFNAME:
                event['ifname'] = _text(payload)
        return event
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        family, prefixlen, flags, scope, ifindex = _IFADDRMSG.unpack_from(data, offset)
        event = {'kind': 'address', 'action': 'new' if kind == RTM_NEWADDR else 'delete', 'ifindex': ifindex,
                 'address': None}
        for attr, payload in _attrs(data, offset + _IFADDRMSG.size, end):
            if attr == IFA_LOCAL or (attr == IFA_ADDRESS and event['address'] is None):
                event['address'] = '%s/%d' % (socket.inet_ntop(family, payload), prefixlen)
        return event
    if kind in (RTM_NEWROUTE, RTM_DELROUTE):
        table = _RTMSG.unpack_from(data, offset)[4]
        for attr, payload in _attrs(data, offset + _RTMSG.size, end):
            if attr == RTA_TABLE:
                table = _U32.unpack(payload[:4])[0]
        return {'kind': 'route', 'action': 'new' if kind == RTM_NEWROUTE else 'delete', 'table': table}
    if kind in (RTM_NEWRULE, RTM_DELRULE):
        priority = 0  # the kernel leaves FRA_PRIORITY out for priority 0
        for attr, payload in _attrs(data, offset + _FIB_RULE_HDR.size, end):
            if attr == FRA_PRIORITY:
                priority = _U32.unpack(payload[:4])[0]
        return {'kind': 'rule', 'action': 'new' if kind == RTM_NEWRULE else 'delete', 'priority': priority}
    return None


def decode_nftables_event(kind, data, offset, end):
    """{'kind': 'nftables', 'action': 'new'|'delete', 'family': 'inet'|'ip'|..., 'table': NAME}
    for a change to a table or anything in it; None for other messages (the end of a
    transaction, traces)."""
    if kind >> 8 != NFNL_SUBSYS_NFTABLES or (kind & 0xff) not in _NFT_CHANGES:
        return None
    family = _NFGENMSG.unpack_from(data, offset)[0]
    event = {'kind': 'nftables', 'action': _NFT_CHANGES[kind & 0xff],
             'family': _NFT_FAMILIES.get(family, str(family)), 'table': None}
    for attr, payload in _attrs(data, offset + _NFGENMSG.size, end):
        if attr == 1:
            event['table'] = _text(payload)
    return event


def _batches(bodies):
    """Yield (index of the first, [bodies]) of at most _BATCH_BYTES each (at least one body)."""
    start, chunk, size = 0, [], 0
    for index, body in enumerate(bodies):
        if chunk and size + len(body) + _NLMSGHDR.size > _BATCH_BYTES:
            yield start, chunk
            start, chunk, size = index, [], 0
        chunk.append(body)
        size += len(body) + _NLMSGHDR.size
    if chunk:
        yield start, chunk


def _error_text(code, flags, data, offset, end):
    text = os.strerror(code)
    if flags & NLM_F_ACK_TLVS:
        # nlmsgerr: the error code and the request's header (payload capped).
        start = offset + _ERROR.size + _NLMSGHDR.size
        if not flags & NLM_F_CAPPED:
            start = offset + _ERROR.size + _NLMSGHDR.unpack_from(data, offset + _ERROR.size)[0]
        for kind, payload in _attrs(data, (start + 3) & ~3, end):
            if kind == NLMSGERR_ATTR_MSG:
                text = '%s (%s)' % (_text(payload), text)
    return text


# Where a route's RTA_DST is, as the kernel writes a route (fib_dump_info, rt6_fill_node)
# and as encode_route does: right after the rtmsg and its 8-byte RTA_TABLE attribute.
_TABLE_ATTR_HEADER = _RTATTR.pack(8, RTA_TABLE)
_DST_ATTR_AT = _RTMSG.size + 8
_DST_ATTR_HEADERS = {socket.AF_INET: _RTATTR.pack(8, RTA_DST), socket.AF_INET6: _RTATTR.pack(20, RTA_DST)}


def dst_span(family, data, offset, end):
    """(start, stop) of the destination address in a route message (its rtmsg at ``offset``),
    where the kernel and encode_route put it; None for a route without one or laid out otherwise."""
    header = _DST_ATTR_HEADERS.get(family)
    at = offset + _DST_ATTR_AT
    if header is None or data[offset + _RTMSG.size:offset + _RTMSG.size + 4] != _TABLE_ATTR_HEADER \
            or data[at:at + 4] != header:
        return None
    stop = at + _RTATTR.unpack(header)[0]
    return (at + 4, stop) if stop <= end else None


def decode_routes(family, table, messages):
    """The routes of ``table`` as plain dicts, from dump_route_messages' ``messages``."""
    routes = [_decode_route(family, data, offset, end) for data, offset, end in messages]
    # Without strict dump checking (kernel < 4.20) the filter is ours.
    return [route for route in routes if route['table'] == table]


def _decode_route(family, data, offset, end):
    (family, dst_len, src_len, tos, table, proto, scope, rtype, flags) = _RTMSG.unpack_from(data, offset)
    route = {'family': family, 'dst_len': dst_len, 'src_len': src_len, 'tos': tos, 'table': table,
             'proto': proto, 'scope': scope, 'type': rtype, 'flags': flags,
             'dst': None, 'gateway': None, 'oif': None, 'priority': 0, 'prefsrc': None, 'multipath': None}
    # The attribute walk of _attrs written out: a dump of 10,000 routes runs it 50,000 times.
    position = offset + _RTMSG.size
    while position + 4 <= end:
        length, kind = _RTATTR.unpack_from(data, position)
        if length < 4:
            break
        name = _ROUTE_ADDRESSES.get(kind & 0x3fff)
        if name is not None:
            route[name] = socket.inet_ntop(family, data[position + 4:position + length])
        else:
            name = _ROUTE_NUMBERS.get(kind & 0x3fff)
            if name is not None:
                route[name] = _U32.unpack_from(data, position + 4)[0]
            elif kind & 0x3fff == RTA_MULTIPATH:
                route['multipath'] = _decode_nexthops(family, data[position + 4:position + length])
        position += (length + 3) & ~3
    return route


# The attributes of a route that _decode_route reads, by the key it gives them.
_ROUTE_ADDRESSES = {RTA_DST: 'dst', RTA_GATEWAY: 'gateway', RTA_PREFSRC: 'prefsrc'}
_ROUTE_NUMBERS = {RTA_OIF: 'oif', RTA_PRIORITY: 'priority', RTA_TABLE: 'table'}


def _decode_nexthops(family, data):
    nexthops = []
    offset = 0
    while offset + _RTNEXTHOP.size <= len(data):
        length, flags, hops, ifindex = _RTNEXTHOP.unpack_from(data, offset)
        if length < _RTNEXTHOP.size:
            break
        nexthop = {'oif': ifindex, 'weight': hops + 1, 'flags': flags, 'gateway': None}
        for kind, payload in _attrs(data, offset + _RTNEXTHOP.size, offset + length):
            if kind == RTA_GATEWAY:
                nexthop['gateway'] = socket.inet_ntop(family, payload)
        nexthops.append(nexthop)
        offset += (length + 3) & ~3
    return nexthops


def encode_route(route):
    """rtmsg + attributes of a route dict (the keys _decode_route returns)."""
    family = route['family']
    table = route['table']
    body = [_RTMSG.pack(family, route['dst_len'], 0, route.get('tos', 0), table if table < 256 else 0,
                        route['proto'], route['scope'], route['type'], route['flags'])]
    body.append(_U32_ATTR.pack(8, RTA_TABLE, table))
    if route.get('dst'):
        body.append(_attr(RTA_DST, socket.inet_pton(family, route['dst'])))
    if route.get('priority') is not None:
        body.append(_U32_ATTR.pack(8, RTA_PRIORITY, route['priority']))
    if route.get('gateway'):
        body.append(_attr(RTA_GATEWAY, socket.inet_pton(family, route['gateway'])))
    if route.get('oif'):
        body.append(_U32_ATTR.pack(8, RTA_OIF, route['oif']))
    if route.get('prefsrc'):
        body.append(_attr(RTA_PREFSRC, socket.inet_pton(family, route['prefsrc'])))
    if route.get('multipath'):
        hops = []
        for nexthop in route['multipath']:
            attrs = _attr(RTA_GATEWAY, socket.inet_pton(family, nexthop['gateway'])) if nexthop.get('gateway') else b''
            hops.append(_RTNEXTHOP.pack(_RTNEXTHOP.size + len(attrs), nexthop.get('flags', 0),
                                        nexthop.get('weight', 1) - 1, nexthop.get('oif') or 0) + attrs)
        body.append(_attr(RTA_MULTIPATH, b''.join(hops)))
    return b''.join(body)


# The rule attributes (linux/fib_rules.h) and how each is read, by FRA_* number.
_RULE_ATTRS = {
    1: ('FRA_DST', 'address'), 2: ('FRA_SRC', 'address'), 3: ('FRA_IIFNAME', 'name'),
    4: ('FRA_GOTO', 'u32'), 6: ('FRA_PRIORITY', 'u32'), 10: ('FRA_FWMARK', 'u32'), 11: ('FRA_FLOW', 'u32'),
    12: ('FRA_TUN_ID', 'be64'), 13: ('FRA_SUPPRESS_IFGROUP', 'u32'), 14: ('FRA_SUPPRESS_PREFIXLEN', 'u32'),
    15: ('FRA_TABLE', 'u32'), 16: ('FRA_FWMASK', 'u32'), 17: ('FRA_OIFNAME', 'name'), 18: None,  # FRA_PAD
    19: ('FRA_L3MDEV', 'u8'), 20: ('FRA_UID_RANGE', 'range32'), 21: ('FRA_PROTOCOL', 'u8'),
    22: ('FRA_IP_PROTO', 'u8'), 23: ('FRA_SPORT_RANGE', 'range16'), 24: ('FRA_DPORT_RANGE', 'range16'),
}


def _decode_rule(data, offset, end):
    """One RTM_NEWRULE message: the header's fields, ``attrs`` [(FRA name, value)] (addresses
    and names as text, ranges as 'start:end'), other attributes as ('UNKNOWN', {'header': {'type': N}})."""
    family, dst_len, src_len, tos, table, _res1, _res2, action, flags = _FIB_RULE_HDR.unpack_from(data, offset)
    attrs = []
    for kind, payload in _attrs(data, offset + _FIB_RULE_HDR.size, end):
        known = _RULE_ATTRS.get(kind, False)
        if known is None:
            continue
        if known is False:
            attrs.append(('UNKNOWN', {'header': {'type': kind}}))
            continue
        name, form = known
        if form == 'address':
            value = socket.inet_ntop(family, payload)
        elif form == 'name':
            value = _text(payload)
        elif form == 'u32':
            value = _U32.unpack(payload[:4])[0]
        elif form == 'u8':
            value = bytearray(payload[:1])[0]
        elif form == 'be64':
            value = struct.unpack('>Q', payload[:8])[0]
        else:
            value = '%d:%d' % (_RANGE_U32 if form == 'range32' else _RANGE_U16).unpack(payload[:8 if form == 'range32' else 4])
        attrs.append((name, value))
    return {'family': family, 'dst_len': dst_len, 'src_len': src_len, 'tos': tos, 'table': table,
            'action': action, 'flags': flags, 'attrs': attrs}

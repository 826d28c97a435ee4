"""A small TCP and UDP port scanner, and listeners for it to find (stdlib only; run inside a namespace).

    python scan.py listen NAME TCP_PORTS UDP_PORTS     e.g.: listen router 53,7000 53
    python scan.py scan SPEC_JSON                      prints the results as JSON

A listener answers with its NAME: a TCP connection gets the line "NAME" and is
closed, a UDP datagram gets "NAME" back (from the address it was sent to). So a
scan tells which host answered a port, not only that something did: a port
forward reaches its target, not the router. Listeners bind every address (IPv4
and IPv6); `listen` prints "ready" once they all do.

`scan` probes every (address, port) of SPEC at once (non-blocking sockets, one
epoll loop). SPEC: ``{"addresses": [...], "tcp": [ports], "udp": [ports],
"timeout": seconds, "retries": 2, "source": IPv4 address to send from,
"source6": IPv6 address to send from}`` (the last three optional). It prints
``[[proto, address, port, state], ...]``, state one of
- "open NAME": a listener answered (NAME empty if it said nothing in time),
- "closed": TCP reset, or ICMP port unreachable for UDP,
- "unreachable": another error (ICMP host or network unreachable, prohibited),
- "silent": no answer within the timeout (dropped, or the answer went elsewhere).
A UDP probe is sent again every 0.3 s while unanswered (a first packet may wait
for ARP or NDP and be dropped); for TCP the kernel retransmits the SYN.
"""
import errno
import json
import resource
import select
import socket
import struct
import sys
import time

UDP_RESEND = 0.3
_PKTINFO = struct.Struct('=16si')  # struct in6_pktinfo: address, interface index


def _listener(kind, port):
    """A socket bound to every address, IPv4 (as IPv4-mapped) and IPv6."""
    sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('::', port))
    if kind == socket.SOCK_STREAM:
        sock.listen(1024)
    else:
        # to answer from the address the datagram was sent to, not the one routing picks
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.setblocking(False)
    return sock


def _answer_udp(sock, banner):
    _data, ancillary, _flags, peer = sock.recvmsg(2048, socket.CMSG_SPACE(_PKTINFO.size))
    reply = []
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            destination = _PKTINFO.unpack(value[:_PKTINFO.size])[0]
            # (Linux takes an IPv4-mapped source here for an IPv4 peer, too)
            reply = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _PKTINFO.pack(destination, 0))]
    sock.sendmsg([banner], reply, 0, peer)


def listen(name, tcp_ports, udp_ports):
    banner = (name + '\n').encode()
    sockets = {}
    for kind, ports in ((socket.SOCK_STREAM, tcp_ports), (socket.SOCK_DGRAM, udp_ports)):
        for port in ports:
            sock = _listener(kind, port)
            sockets[sock.fileno()] = sock
    poller = select.epoll()
    for fd in sockets:
        poller.register(fd, select.EPOLLIN)
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    while True:
        for fd, _event in poller.poll():
            sock = sockets[fd]
            try:
                if sock.type == socket.SOCK_STREAM:
                    conn, _peer = sock.accept()
                    with conn:
                        conn.setblocking(False)
                        conn.send(banner)
                else:
                    _answer_udp(sock, banner)
            except OSError:  # a peer gone before we answered: its loss
                pass


def _state_of_error(code):
    return 'closed' if code == errno.ECONNREFUSED else 'unreachable'


class _Probe:
    def __init__(self, key, sock):
        self.key = key            # (proto, address, port)
        self.sock = sock
        self.until = None         # give up then
        self.connected = False    # TCP: the handshake is done, waiting for the banner
        self.data = b''

    def banner(self):
        return 'open ' + self.data.decode(errors='replace').partition('\n')[0]


def _open_files(count):
    """How many probes may be under way at once: ``count``, or what the open file limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64 and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return max(1, min(count, soft - 64))


def _start(key, sources):
    """A _Probe on its way, or the state at once (an error on connect or send)."""
    proto, address, port = key
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
    sock.setblocking(False)
    if sources.get(family):
        sock.bind((sources[family], 0))
    code = sock.connect_ex((address, port))
    if proto == 'tcp' and code == errno.EINPROGRESS:
        code = 0
    elif proto == 'udp' and not code:
        try:
            sock.send(b'probe\n')
        except OSError as exc:
            code = exc.errno
    if code:
        sock.close()
        return _state_of_error(code)
    return _Probe(key, sock)


def _event(probe):
    """The probe's state after an epoll event, or None while it is not decided."""
    if probe.key[0] == 'tcp' and not probe.connected:
        code = probe.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            return _state_of_error(code)
        probe.connected = True
        return None
    try:
        data = probe.sock.recv(2048)
    except BlockingIOError:
        return None
    except OSError as exc:
        # a reset after the handshake: open all the same
        return probe.banner() if probe.connected else _state_of_error(exc.errno)
    probe.data += data
    if probe.key[0] == 'udp' or not data or b'\n' in probe.data:
        return probe.banner()
    return None


def scan(spec):
    """{(proto, address, port): state} for every probe of ``spec``.

    The probes left without a clear answer ("silent", or open without a banner)
    are tried again ``retries`` times (default 2), each time with twice the
    timeout: on a busy machine an answer can be late, and a late answer must not
    read as a change.
    """
    keys = [(proto, address, port) for proto in ('tcp', 'udp')
            for address in spec['addresses'] for port in spec.get(proto, ())]
    timeout = float(spec.get('timeout', 2.0))
    sources = {socket.AF_INET: spec.get('source'), socket.AF_INET6: spec.get('source6')}
    results = _scan_once(keys, sources, timeout)
    for _retry in range(int(spec.get('retries', 2))):
        unclear = [key for key, state in results.items() if state in ('silent', 'open ')]
        if not unclear:
            break
        timeout *= 2
        results.update(_scan_once(unclear, sources, timeout))
    return results


def _scan_once(keys, sources, timeout):
    results = {}
    pending = {}                  # fd -> _Probe
    poller = select.epoll()
    waiting = list(reversed(keys))
    at_once = _open_files(len(keys))

    def start_more():
        started = []
        while waiting and len(pending) < at_once:
            key = waiting.pop()
            probe = _start(key, sources)
            if isinstance(probe, str):
                results[key] = probe
                continue
            pending[probe.sock.fileno()] = probe
            poller.register(probe.sock, select.EPOLLOUT if key[0] == 'tcp' else select.EPOLLIN)
            started.append(probe)
        # each has its full time from when the last one went out (making many takes a while)
        until = time.monotonic() + timeout
        for probe in started:
            probe.until = until

    def finish(fd, state):
        probe = pending.pop(fd)
        results[probe.key] = state
        poller.unregister(fd)
        probe.sock.close()

    start_more()
    tick = time.monotonic() + UDP_RESEND
    while pending or waiting:
        start_more()
        now = time.monotonic()
        if now >= tick:  # every 0.3 s: give up on the probes out of time, send UDP again
            for fd, probe in list(pending.items()):
                if now >= probe.until:
                    finish(fd, probe.banner() if probe.connected else 'silent')
                elif probe.key[0] == 'udp':
                    try:
                        probe.sock.send(b'probe\n')
                    except OSError as exc:  # the ICMP error of an earlier probe: send reports it
                        finish(fd, _state_of_error(exc.errno))
            tick = now + UDP_RESEND
            continue
        for fd, _mask in poller.poll(max(0.0, tick - now)):
            if fd not in pending:
                continue
            probe = pending[fd]
            state = _event(probe)
            if state is not None:
                finish(fd, state)
            elif probe.connected and probe.key[0] == 'tcp':
                # the handshake is done: now the banner, with time of its own to come
                poller.modify(fd, select.EPOLLIN)
                probe.until = max(probe.until, time.monotonic() + timeout)
    poller.close()
    return results


def main(argv):
    if argv[:1] == ['listen'] and len(argv) == 4:
        listen(argv[1], [int(port) for port in argv[2].split(',') if port],
               [int(port) for port in argv[3].split(',') if port])
    elif argv[:1] == ['scan'] and len(argv) == 2:
        results = scan(json.loads(argv[1]))
        json.dump([list(key) + [state] for key, state in sorted(results.items())], sys.stdout)
    else:
        raise SystemExit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])

"""Doing things inside a network namespace from this process, without a subprocess.

A short-lived thread enters the namespace (setns) and runs one function there;
the thread's namespace dies with it, so the rest of the process stays in the
host namespace. Sockets keep the namespace they were created in, which is what
makes the traffic helpers fast (no process per connection).
"""
import ctypes
import os
import socket
import threading

NETNS_RUN = '/run/netns'
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def call_in(netns, func, *args):
    """Return func(*args) called in a thread that has entered namespace ``netns``."""
    box = {}

    def target():
        try:
            fd = os.open(os.path.join(NETNS_RUN, netns), os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, 'setns %s: %s' % (netns, os.strerror(errno)))
            finally:
                os.close(fd)
            box['value'] = func(*args)
        except BaseException as exc:  # handed to the caller's thread
            box['error'] = exc

    thread = threading.Thread(target=target, name='netns-' + netns)
    thread.start()
    thread.join()
    if 'error' in box:
        raise box['error']
    return box['value']


def tcp_socket(netns, family):
    """A TCP socket that lives in namespace ``netns``."""
    return call_in(netns, socket.socket, family, socket.SOCK_STREAM)


def _write_sysctls(values):
    for key, value in values.items():
        with open('/proc/sys/' + key.replace('.', '/'), 'w') as handle:
            handle.write('%s\n' % value)


def _read_sysctl(key):
    with open('/proc/sys/' + key.replace('.', '/')) as handle:
        return handle.read().strip()


def set_sysctls(netns, values):
    """Write ``{'net.ipv4.ip_forward': 1, ...}`` in namespace ``netns``."""
    call_in(netns, _write_sysctls, values)


def get_sysctl(netns, key):
    return call_in(netns, _read_sysctl, key)

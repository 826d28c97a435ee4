"""The lock of a network namespace (plugins/module_utils/_lock.py), for tests:
another process holding it, and who has its file open (holder and waiters)."""
import os
import signal
import subprocess
import sys

HOLDER = '''
import sys
from ansible_collections.netpolicy.routing.plugins.module_utils import _lock
directory = sys.argv[2] or None
with _lock.held(sys.argv[1], directory=directory):
    sys.stdout.write(_lock.lock_path(_lock.netns_inode(), directory) + '\\n')
    sys.stdout.flush()
    sys.stdin.readline()
'''


class Holder:
    """A process holding the lock of namespace ``netns`` (default: the test's own) until ``release()``.

    ``path`` is the lock file; ``directory`` the lock directory (default the real one, /run/netpolicy-routing).
    """

    def __init__(self, what, netns=None, directory=None):
        argv = [sys.executable, '-c', HOLDER, what, str(directory or '')]
        if netns:
            argv = ['ip', 'netns', 'exec', netns] + argv
        # pylint: disable-next=consider-using-with
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        self.path = self.proc.stdout.readline().strip()
        assert self.path, 'the holder did not take the lock (rc %s)' % self.proc.wait(timeout=10)
        # `ip netns exec` execs the command: the pid is the holder's
        self.pid = self.proc.pid

    def release(self):
        """Let go (idempotent); the holder's exit code."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('\n')
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
        try:
            return self.proc.wait(timeout=10)
        finally:
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except (BrokenPipeError, ValueError):
                    pass

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.release()


def openers(path):
    """The pids of the processes that have ``path`` open: its holder and the runs waiting for it."""
    found = set()
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        folder = os.path.join('/proc', pid, 'fd')
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(os.path.join(folder, name)) == path:
                    found.add(int(pid))
                    break
            except OSError:
                continue
    return found

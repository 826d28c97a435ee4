"""The agent netpolicy-routing in a lab router, for tests: run it, watch its output, wait for a state."""
import re
import signal
import subprocess
import threading
import time

import pytest

from tests.lab import topologies
from tests.lab.recorder import peer_text


def agent(lab, *argv):
    return lab.run('router', lab.agent_command('router'), *argv, check=False)


def wait_for(condition, limit):
    """Seconds until ``condition()`` held (polled every 20 ms); fails after ``limit`` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > limit:
            pytest.fail('not within %.1f s' % limit)
        time.sleep(0.02)
    return time.monotonic() - start


class Watch:
    """`netpolicy-routing watch` running in the router; its output lines as they come."""

    def __init__(self, lab):
        argv = ['ip', 'netns', 'exec', lab.name('router'), lab.agent_command('router'), 'watch']
        # pylint: disable-next=consider-using-with
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    def saw(self, pattern):
        return any(re.search(pattern, line) for line in self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.reader.join(timeout=5)


class NewConnections:
    """A new connection from ``node`` every 50 ms, each in its own thread: [(start, uplink or None)]."""

    def __init__(self, lab, node, limit=60):
        self.lab, self.node = lab, node
        self.results = []
        self.running = True
        self.threads = []
        self.limit = limit
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _one(self, start):
        seen = self.lab.connect(self.node, topologies.SERVER, 80, count=1, timeout=1.0)[0]
        self.results.append((start, self.lab.uplink_of(peer_text(seen)) if seen else None))

    def _run(self):
        deadline = time.monotonic() + self.limit  # bounded whatever happens
        while self.running and time.monotonic() < deadline:
            worker = threading.Thread(target=self._one, args=(time.monotonic(),), daemon=True)
            worker.start()
            self.threads.append(worker)
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.thread.join()
        for worker in self.threads:
            worker.join(timeout=3)
        return sorted(self.results)

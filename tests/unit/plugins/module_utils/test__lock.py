"""The lock of a network namespace: holder info, re-entrancy, waiting, the timeout
message, release on exit, on exception and when the holder dies.

The lock files live in tmp_path (the ``directory`` parameter); the other
holder is a second Python process (or thread) in this test's namespace, so the
lock is the same one.
"""
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _lock
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import EngineError, InputError
from tests.helpers.lock import Holder


@pytest.fixture
def holder(tmp_path):
    holders = []

    def start(what='netpolicy-routing apply'):
        holders.append(Holder(what, directory=tmp_path))
        return holders[-1]
    yield start
    for one in holders:
        one.release()


def path(directory):
    return _lock.lock_path(_lock.netns_inode(), str(directory))


def test_holder_info_written_and_file_removed(tmp_path):
    before = time.time()
    with _lock.held('ip_rule module', directory=str(tmp_path)):
        fd = os.open(path(tmp_path), os.O_RDONLY)
        try:
            holder = _lock.holder_of(fd)
        finally:
            os.close(fd)
        assert (holder['pid'], holder['what']) == (os.getpid(), 'ip_rule module')
        assert before <= holder['since'] <= time.time()
        assert oct(os.stat(path(tmp_path)).st_mode & 0o777) == '0o600'
    assert not os.path.exists(path(tmp_path))
    assert os.listdir(str(tmp_path)) == []


def test_lock_dir_made_when_missing(tmp_path):
    directory = tmp_path / 'run' / 'netpolicy-routing'
    with _lock.held('ip_rule module', directory=str(directory)):
        assert os.path.exists(path(directory))


def test_reentrant_within_a_thread(tmp_path):
    with _lock.held('netpolicy-routing apply', directory=str(tmp_path), timeout=0):
        # the agent around a whole apply, the modules' change functions inside it
        with _lock.held('ip_rule module', directory=str(tmp_path), timeout=0):
            with _lock.held('route_table module', directory=str(tmp_path), timeout=0):
                pass
        # the inner ones let go of nothing: another process still cannot take it
        with pytest.raises(_lock.LockTimeout):
            _take_in_child(tmp_path, timeout=0.1)
    _take_in_child(tmp_path, timeout=0)


def _take_in_child(directory, timeout):
    script = ('import sys\nfrom ansible_collections.netpolicy.routing.plugins.module_utils import _lock\n'
              'try:\n    with _lock.held("child", directory=sys.argv[1], timeout=float(sys.argv[2])):\n        pass\n'
              'except _lock.LockTimeout as exc:\n    sys.exit(str(exc))\n')
    proc = subprocess.run([sys.executable, '-c', script, str(directory), str(timeout)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)), check=False)
    if proc.returncode:
        raise _lock.LockTimeout(proc.stderr.strip())


def test_released_on_exception(tmp_path):
    with pytest.raises(ValueError):
        with _lock.held('ip_rule module', directory=str(tmp_path)):
            raise ValueError('boom')
    assert not os.path.exists(path(tmp_path))
    _take_in_child(tmp_path, timeout=0)
    # and this thread does not think it still holds it: it takes it for real again
    with _lock.held('ip_rule module', directory=str(tmp_path), timeout=0):
        with pytest.raises(_lock.LockTimeout):
            _take_in_child(tmp_path, timeout=0)


def test_timeout_names_the_holder(tmp_path, holder):
    other = holder('netpolicy-routing apply')
    start = time.monotonic()
    with pytest.raises(_lock.LockTimeout) as caught:
        with _lock.held('ip_rule module', directory=str(tmp_path), timeout=0.3):
            pytest.fail('ran without the lock')
    took = time.monotonic() - start
    assert 0.3 <= took < 5
    assert isinstance(caught.value, EngineError)
    message = str(caught.value)
    assert re.match(r'another netpolicy\.routing run holds the lock of this network namespace '
                    r'\(pid %d, netpolicy-routing apply, since \d\d:\d\d:\d\d\); '
                    r'waited 0\.3 s \(NETPOLICY_ROUTING_LOCK_TIMEOUT\); nothing was changed$' % other.pid,
                    message), message
    # the waiter did not touch the holder's record
    fd = os.open(path(tmp_path), os.O_RDONLY)
    try:
        assert _lock.holder_of(fd)['pid'] == other.pid
    finally:
        os.close(fd)


def test_timeout_from_environment(tmp_path, holder, monkeypatch):
    holder()
    monkeypatch.setenv('NETPOLICY_ROUTING_LOCK_TIMEOUT', '0')
    start = time.monotonic()
    with pytest.raises(_lock.LockTimeout, match=r'waited 0 s \(NETPOLICY_ROUTING_LOCK_TIMEOUT\)'):
        with _lock.held('ip_rule module', directory=str(tmp_path)):
            pass
    assert time.monotonic() - start < 2


def test_waits_for_the_holder_then_runs(tmp_path, holder):
    other = holder('ip_rule module')
    threading.Timer(0.5, other.release).start()
    lines = []
    start = time.monotonic()
    with _lock.held('netpolicy-routing apply', directory=str(tmp_path), timeout=30, log=lines.append):
        took = time.monotonic() - start
        fd = os.open(path(tmp_path), os.O_RDONLY)
        try:
            assert _lock.holder_of(fd)['pid'] == os.getpid()
        finally:
            os.close(fd)
    assert 0.4 < took < 30
    assert len(lines) == 1
    assert re.match(r'waited \d+\.\d s for the lock held by pid %d, ip_rule module, since \d\d:\d\d:\d\d$'
                    % other.pid, lines[0]), lines


def test_no_wait_no_log_line(tmp_path):
    lines = []
    with _lock.held('netpolicy-routing apply', directory=str(tmp_path), log=lines.append):
        pass
    assert lines == []


def test_released_when_the_holder_dies(tmp_path, holder):
    other = holder()
    other.kill()
    with _lock.held('ip_rule module', directory=str(tmp_path), timeout=5):
        pass


def test_another_thread_waits(tmp_path):
    """Per thread: a second thread of the same process (the agent's) is another run."""
    order = []
    inside = threading.Event()

    def second():
        with _lock.held('thread', directory=str(tmp_path), timeout=30):
            order.append('second')

    with _lock.held('main', directory=str(tmp_path)):
        thread = threading.Thread(target=second)
        thread.start()
        inside.wait(0.3)
        order.append('first')
    thread.join(30)
    assert order == ['first', 'second']


def test_not_needed_takes_nothing(tmp_path, holder):
    holder()
    with _lock.held('ip_rule module', directory=str(tmp_path), timeout=0, needed=False):
        pass


@pytest.mark.parametrize('value, seconds', [
    (None, 120.0), ('', 120.0), (' ', 120.0), ('5', 5.0), ('0', 0.0), ('1.5', 1.5), (' 30 ', 30.0)])
def test_timeout_from_good(value, seconds):
    environ = {} if value is None else {'NETPOLICY_ROUTING_LOCK_TIMEOUT': value}
    assert _lock.timeout_from(environ) == seconds


@pytest.mark.parametrize('value', ['x', '-1', 'inf', 'nan', '1e999', '2m'])
def test_timeout_from_bad(value):
    with pytest.raises(InputError) as caught:
        _lock.timeout_from({'NETPOLICY_ROUTING_LOCK_TIMEOUT': value})
    assert caught.value.field == 'NETPOLICY_ROUTING_LOCK_TIMEOUT'
    assert str(caught.value) == 'NETPOLICY_ROUTING_LOCK_TIMEOUT: not a number of seconds (0 or more): %r' % value


@pytest.mark.parametrize('holder_info, text', [
    ({}, 'holder unknown'),
    ({'pid': 12}, 'pid 12'),
    ({'pid': 12, 'what': 'netpolicy-routing apply'}, 'pid 12, netpolicy-routing apply'),
    ({'what': 'x', 'since': 'not a time'}, 'x'),
])
def test_describe(holder_info, text):
    assert _lock.describe(holder_info) == text


def test_describe_since():
    since = time.mktime((2026, 1, 2, 12, 0, 1, 0, 0, -1))
    assert _lock.describe({'pid': 1234, 'what': 'netpolicy-routing apply', 'since': since}) == \
        'pid 1234, netpolicy-routing apply, since 12:00:01'


@pytest.mark.parametrize('argv, label', [
    (['apply'], 'netpolicy-routing apply'),
    (['--state-dir', '/x', 'apply'], 'netpolicy-routing apply'),
    (['watch'], 'netpolicy-routing watch (re-apply)'),
    (['--state-dir', '/x', 'watch'], 'netpolicy-routing watch (re-apply)'),
    (['--state-dir', 'watch', 'apply'], 'netpolicy-routing apply'),
    ([], 'netpolicy-routing apply'),
])
def test_agent_label(argv, label):
    assert _lock.agent_label(argv) == label


def test_unusable_lock_dir_is_a_clean_error(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('not a directory')
    with pytest.raises(EngineError, match=r'^cannot open the lock file .*/file/lock-\d+: '):
        with _lock.held('ip_rule module', directory=str(blocker)):
            pass


def test_alone_refuses_a_second_one_naming_the_first(tmp_path):
    with _lock.alone('watch', 'netpolicy-routing watch', directory=str(tmp_path)):
        with pytest.raises(EngineError) as caught:
            with _lock.alone('watch', 'netpolicy-routing watch', directory=str(tmp_path)):
                pytest.fail('two at once')
        assert re.match(r'another netpolicy-routing watch runs in this network namespace '
                        r'\(pid %d, netpolicy-routing watch, since ' % os.getpid(), str(caught.value))
        # the lock of changes is another file: a watch does not keep changes out
        with _lock.held('ip_rule module', directory=str(tmp_path), timeout=0):
            pass
    assert os.listdir(str(tmp_path)) == []
    with _lock.alone('watch', 'netpolicy-routing watch', directory=str(tmp_path)):
        pass


def test_a_stop_ends_the_wait_at_once(tmp_path, holder):
    other = holder('ip_rule module')
    start = time.monotonic()
    with pytest.raises(EngineError) as caught:
        with _lock.held('netpolicy-routing watch (re-apply)', directory=str(tmp_path), timeout=30,
                        stop=lambda: time.monotonic() - start > 0.2):
            pytest.fail('ran without the lock')
    assert time.monotonic() - start < 5
    assert re.match(r'stopped while waiting for the lock held by pid %d, ip_rule module, since \d\d:\d\d:\d\d; '
                    r'nothing was changed$' % other.pid, str(caught.value)), str(caught.value)

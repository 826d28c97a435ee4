"""module_utils/_pending.py: a change waiting for its confirmation, and what a restart does with it."""
import json
import os
import subprocess

from ansible_collections.netpolicy.routing.plugins.module_utils import _pending


def test_waiting_only_while_the_same_process_runs_in_the_same_boot():
    sleeper = subprocess.Popen(['sleep', '30'])
    try:
        document = {'boot': _pending.boot_id(), 'pid': sleeper.pid, 'start': _pending.process_start(sleeper.pid)}
        assert _pending.waiting(document)
        assert not _pending.waiting(dict(document, boot='another boot'))
        assert not _pending.waiting(dict(document, start='1'))   # the pid of another process
        assert _pending.waiting(dict(document, pid=None))          # being armed
    finally:
        sleeper.kill()
        sleeper.wait()
    assert _pending.process_start(sleeper.pid) is None
    assert not _pending.waiting(document)


def test_recover_puts_back_the_files_of_a_change_whose_rollback_is_gone(tmp_path):
    state = tmp_path / 'split_access.json'
    state.write_text('new\n')
    created = tmp_path / 'new.nft'
    created.write_text('table inet t {}\n')
    gone = {'boot': 'another boot', 'pid': 1, 'files': {str(state): 'old\n', str(created): None}}
    (tmp_path / 'split_access.pending').write_text(json.dumps(gone))
    live = {'boot': _pending.boot_id(), 'pid': None, 'files': {str(state): 'older\n'}}
    (tmp_path / 'source_routing.pending').write_text(json.dumps(live))
    assert _pending.recover(str(tmp_path)) == ['split_access']
    assert state.read_text() == 'old\n' and not created.exists()
    assert oct(os.stat(str(state)).st_mode & 0o777) == '0o600'
    # the record a timed rollback leaves, for a late confirmation
    assert sorted(os.listdir(str(tmp_path))) == ['source_routing.pending', 'split_access.json',
                                                 'split_access.rolled-back']
    assert json.loads((tmp_path / 'split_access.rolled-back').read_text())['problems'] == []


def test_recover_ignores_what_it_cannot_read(tmp_path):
    (tmp_path / 'split_access.pending').write_text('not json')
    assert _pending.recover(str(tmp_path)) == []
    assert _pending.recover(str(tmp_path / 'missing')) == []

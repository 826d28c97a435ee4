"""_install: the agent's engine and command, the message of what the router lacks (pure logic),
and put_file in a temporary directory."""
import io
import os
import stat
import zipfile

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils._install import (
    command_text, engine_archive, engine_sources, lacking_message, put_file, unit_text)


def test_the_engine_is_the_same_bytes_for_the_same_sources_and_importable_as_ansible_lays_it_out():
    sources = engine_sources()
    names = [name for name, data in sources]
    assert '_agent.py' in names and '_netlink.py' in names and names == sorted(names)
    archive = engine_archive(sources)
    assert engine_archive(engine_sources()) == archive
    with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
        listed = unpacked.namelist()
        assert 'ansible_collections/__init__.py' in listed
        assert 'ansible_collections/netpolicy/routing/plugins/module_utils/_agent.py' in listed
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in unpacked.infolist())
    assert engine_archive(sources + [('_new.py', b'')]) != archive


def test_the_command_runs_the_engine_with_the_given_python():
    text = command_text('/usr/bin/python3', '/usr/local/lib/netpolicy-routing')
    assert text.startswith('#!/usr/bin/python3\n')
    assert "sys.path.insert(0, \"/usr/local/lib/netpolicy-routing/engine.zip\")" in text
    compile(text, 'netpolicy-routing', 'exec')


def test_what_is_lacking_is_named_with_the_variable():
    assert lacking_message('apt', ['python3-pyroute2'], 'split_access_install_dependencies') == \
        'the router lacks: python3-pyroute2; install it, or set split_access_install_dependencies: true'
    assert lacking_message(None, ['nftables', 'conntrack'], 'x') == \
        'the router lacks: nftables, conntrack; install them, or set x: true (no apt or dnf here: install them by hand)'


def test_ensure_says_why_it_cannot_install(monkeypatch):
    from ansible_collections.netpolicy.routing.plugins.module_utils import _install
    monkeypatch.setattr(_install, 'lacking', lambda: (None, ['nftables']))
    with pytest.raises(_install.MissingPackages) as caught:
        _install.ensure(True, 'split_access_install_dependencies', False)
    assert str(caught.value) == 'the router lacks: nftables, and has no apt or dnf to install it: install it by hand'
    monkeypatch.setattr(_install, 'lacking', lambda: ('apt', ['nftables', 'conntrack']))
    with pytest.raises(_install.MissingPackages) as caught:
        _install.ensure(True, 'x', True)
    assert str(caught.value) == ('the router lacks: nftables, conntrack; a run not in check mode installs them '
                                 '(apt-get -o DPkg::Lock::Timeout=120 install -y --no-install-recommends nftables conntrack)')
    assert caught.value.packages == ['nftables', 'conntrack'] and caught.value.manager == 'apt'
    monkeypatch.setattr(_install, 'lacking', lambda: ('apt', []))
    assert _install.ensure(True, 'x', False) == []


def _mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def test_put_file_says_what_it_does_and_check_mode_does_nothing(tmp_path):
    path = tmp_path / 'state' / 'split_access.json'
    assert put_file(str(path), 'text\n', 0o600, True, directory_mode=0o700) == ['write %s' % path]
    assert not (tmp_path / 'state').exists()
    assert put_file(str(path), 'text\n', 0o600, False, directory_mode=0o700) == ['write %s' % path]
    assert path.read_bytes() == b'text\n' and _mode(path) == 0o600 and _mode(path.parent) == 0o700
    # Text and bytes of the same content are the same file.
    assert put_file(str(path), b'text\n', 0o600, False) == []
    os.chmod(str(path), 0o644)
    assert put_file(str(path), 'text\n', 0o600, True) == ['chmod 600 %s' % path]
    assert _mode(path) == 0o644
    assert put_file(str(path), 'text\n', 0o600, False) == ['chmod 600 %s' % path]
    assert _mode(path) == 0o600
    assert put_file(str(path), 'other\n', 0o600, False) == ['write %s' % path]
    assert path.read_bytes() == b'other\n'
    assert put_file(str(path), None, 0o600, True) == ['rm %s' % path]
    assert path.exists()
    assert put_file(str(path), None, 0o600, False) == ['rm %s' % path]
    assert not path.exists()
    assert put_file(str(path), None, 0o600, False) == []


def test_the_unit_restarts_with_nftables_and_after_it():
    # `systemctl restart nftables` flushes the ruleset: the agent restarts after it and applies again.
    lines = unit_text('/usr/local/bin/netpolicy-routing').splitlines()
    unit = lines[lines.index('[Unit]'):lines.index('[Service]')]
    assert 'PartOf=nftables.service' in unit
    assert [line for line in unit if line.startswith('After=')] == ['After=local-fs.target nftables.service']

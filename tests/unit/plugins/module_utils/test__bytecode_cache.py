"""The compiled module_utils kept between module runs: real zips, real zipimport.

Each test builds a zip with a package ``npr_bc_<n>`` (the finder's prefix) and
imports from it through a BytecodeFinder whose directory is in tmp_path, as a
module run imports its module_utils from the zip Ansible sends.
"""
import itertools
import marshal
import os
import sys
import traceback
import zipfile
import zipimport

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _bytecode_cache

MODULE = '''\
VALUE = %r


def fail():
    raise ValueError('failed on purpose')
'''
_COUNTER = itertools.count(1)


class ZipPackage:
    """A package in a zip on sys.path, its modules importable through a finder of tmp_path."""

    def __init__(self, tmp_path, directory):
        self.name = 'npr_bc_%d' % next(_COUNTER)
        self.tmp_path = tmp_path
        self.finder = _bytecode_cache.BytecodeFinder(prefix=self.name + '.', directory=str(directory))
        self.paths = []

    def write(self, value='one', extra=None):
        """A new zip (as each module run gets its own) with mod.py and sub/__init__.py."""
        path = str(self.tmp_path / ('payload-%d.zip' % next(_COUNTER)))
        with zipfile.ZipFile(path, 'w') as archive:
            archive.writestr(self.name + '/__init__.py', '')
            archive.writestr(self.name + '/mod.py', MODULE % value)
            archive.writestr(self.name + '/sub/__init__.py', 'SUB = True\n')
            for name, text in (extra or {}).items():
                archive.writestr('%s/%s' % (self.name, name), text)
        self.forget()
        sys.path.insert(0, path)
        self.paths.append(path)
        return path

    def load(self, name='mod'):
        self.forget()
        __import__('%s.%s' % (self.name, name))
        return sys.modules['%s.%s' % (self.name, name)]

    def forget(self):
        for name in [name for name in sys.modules if name == self.name or name.startswith(self.name + '.')]:
            del sys.modules[name]

    def close(self):
        self.forget()
        for path in self.paths:
            if path in sys.path:
                sys.path.remove(path)
        for key in [key for key in sys.path_importer_cache if any(key.startswith(path) for path in self.paths)]:
            del sys.path_importer_cache[key]


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / 'bytecode'


@pytest.fixture
def package(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(sys, 'dont_write_bytecode', False)  # as on a router (the test run may set it)
    one = ZipPackage(tmp_path, cache_dir)
    sys.meta_path.insert(0, one.finder)
    yield one
    sys.meta_path.remove(one.finder)
    one.close()


def cached_files(directory):
    return sorted(os.listdir(str(directory))) if directory.exists() else []


def test_first_run_compiles_and_keeps_the_module(package, cache_dir):
    zip_path = package.write()
    module = package.load()
    assert module.VALUE == 'one'
    assert isinstance(module.__loader__, _bytecode_cache.CachedSourceLoader)
    assert module.__file__ == os.path.join(zip_path, package.name, 'mod.py')
    source = MODULE % 'one'
    assert cached_files(cache_dir) == ['mod.' + _bytecode_cache.cache_key(source)]
    assert os.stat(str(cache_dir)).st_mode & 0o777 == 0o700
    kept = cache_dir / cached_files(cache_dir)[0]
    assert os.stat(str(kept)).st_mode & 0o777 == 0o600
    data = kept.read_bytes()
    assert data.startswith(_bytecode_cache.HEADER)
    assert marshal.loads(data[len(_bytecode_cache.HEADER):]).co_filename == module.__file__


def test_next_run_loads_the_kept_module_without_compiling(package, cache_dir, monkeypatch):
    package.write()
    package.load()

    def no_compile(*args, **kwargs):
        raise AssertionError('compiled again')
    monkeypatch.setattr(_bytecode_cache, 'compile', no_compile, raising=False)
    zip_path = package.write()  # the next run: the same source in a new zip
    module = package.load()
    assert module.VALUE == 'one'
    # its code names this run's zip, and tracebacks show its source lines
    assert module.fail.__code__.co_filename == os.path.join(zip_path, package.name, 'mod.py')
    with pytest.raises(ValueError) as caught:
        module.fail()
    text = ''.join(traceback.format_exception(caught.type, caught.value, caught.tb))
    assert "raise ValueError('failed on purpose')" in text
    assert os.path.join(zip_path, package.name, 'mod.py') in text


def test_without_a_cache_each_module_is_compiled_once(package, cache_dir, monkeypatch):
    # zipimport compiles a module for its spec's file name, then again to load it: not through the finder
    cache_dir.write_text('a file where the directory would be')
    zip_path = package.write()
    __import__(package.name)  # the package itself: zipimport's, as any package
    compiled = []
    monkeypatch.setattr(_bytecode_cache, 'compile', lambda *args, **kwargs: compiled.append(args[1]) or compile(*args, **kwargs),
                        raising=False)

    def zipimport_compiles(*args):
        raise AssertionError('zipimport compiled %s' % (args,))
    monkeypatch.setattr(zipimport, '_compile_source', zipimport_compiles)
    __import__(package.name + '.mod')
    assert sys.modules[package.name + '.mod'].VALUE == 'one'
    assert compiled == [os.path.join(zip_path, package.name, 'mod.py')]


def test_a_new_version_replaces_the_old_file(package, cache_dir):
    package.write('one')
    package.load()
    package.write('two', extra={'other.py': 'OTHER = 1\n'})
    package.load('other')
    assert package.load().VALUE == 'two'
    assert cached_files(cache_dir) == sorted(['mod.' + _bytecode_cache.cache_key(MODULE % 'two'),
                                              'other.' + _bytecode_cache.cache_key('OTHER = 1\n')])


@pytest.mark.parametrize('damage', [b'', b'garbage', _bytecode_cache.HEADER, _bytecode_cache.HEADER + b'\xff\x00'],
                         ids=['empty', 'foreign', 'header only', 'cut'])
def test_a_damaged_file_is_compiled_again_and_rewritten(package, cache_dir, damage):
    package.write()
    package.load()
    kept = cache_dir / cached_files(cache_dir)[0]
    kept.write_bytes(damage)
    package.write()
    module = package.load()
    assert module.VALUE == 'one'
    data = kept.read_bytes()
    assert marshal.loads(data[len(_bytecode_cache.HEADER):]).co_filename == module.__file__


@pytest.mark.parametrize('mode', [0o755, 0o770, 0o701])
def test_a_directory_others_can_use_is_not_used(package, cache_dir, mode):
    cache_dir.mkdir()
    os.chmod(str(cache_dir), mode)
    package.write()
    assert package.load().VALUE == 'one'
    assert cached_files(cache_dir) == []


def test_a_symlink_to_a_private_directory_is_not_used(package, cache_dir, tmp_path):
    target = tmp_path / 'elsewhere'
    target.mkdir(mode=0o700)
    cache_dir.symlink_to(target)
    package.write()
    assert package.load().VALUE == 'one'
    assert cached_files(target) == []


def test_no_directory_possible_still_imports(package, tmp_path):
    (tmp_path / 'file').write_text('')
    package.finder.directory = str(tmp_path / 'file' / 'bytecode')
    package.write()
    assert package.load().VALUE == 'one'


def test_dont_write_bytecode_reads_but_writes_nothing(package, cache_dir, monkeypatch):
    package.write()
    package.load()
    before = cached_files(cache_dir)
    monkeypatch.setattr(sys, 'dont_write_bytecode', True)
    package.write('two')
    assert package.load().VALUE == 'two'
    assert cached_files(cache_dir) == before


def test_packages_and_other_names_are_left_to_python(package, cache_dir):
    package.write()
    sub = package.load('sub')
    assert sub.SUB is True
    assert isinstance(sub.__loader__, zipimport.zipimporter)
    assert package.finder.find_spec('json', None) is None
    assert cached_files(cache_dir) == []


def test_sources_can_be_read_through_the_spec(package):
    # as _install.engine_sources builds the agent's engine from the module's own zip
    package.write()
    package.forget()
    __import__(package.name)
    spec = _bytecode_cache.importlib.util.find_spec(package.name + '.mod')
    assert isinstance(spec.loader, _bytecode_cache.CachedSourceLoader)
    assert spec.loader.get_data(spec.origin) == (MODULE % 'one').encode()


def test_installed_only_when_loaded_from_a_zip(monkeypatch):
    monkeypatch.setattr(sys, 'meta_path', list(sys.meta_path))
    assert _bytecode_cache.install(_bytecode_cache.__loader__) is False  # from files, as here
    assert not any(isinstance(finder, _bytecode_cache.BytecodeFinder) for finder in sys.meta_path)


def test_installed_once_and_first_when_loaded_from_a_zip(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, 'meta_path', [finder for finder in sys.meta_path
                                           if not isinstance(finder, _bytecode_cache.BytecodeFinder)])
    path = str(tmp_path / 'payload.zip')
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('x.py', '')
    importer = zipimport.zipimporter(path)
    assert _bytecode_cache.install(importer) is True
    assert _bytecode_cache.install(importer) is True
    finders = [finder for finder in sys.meta_path if isinstance(finder, _bytecode_cache.BytecodeFinder)]
    assert len(finders) == 1 and sys.meta_path[0] is finders[0]
    assert finders[0].prefix == _bytecode_cache.PREFIX and finders[0].directory == _bytecode_cache.BYTECODE_DIR

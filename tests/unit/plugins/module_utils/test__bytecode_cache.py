"""The compiled module_utils kept between module runs: real zips, real zipimport.

Each test builds a zip with a package ``npr_bc_<n>`` (the finder's prefix) and
imports from it through a BytecodeFinder whose directory is in tmp_path, as a
module run imports its module_utils from the zip Ansible sends.
"""
import itertools
import marshal
import os
import subprocess
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
SUB = 'SUB = True\n'
_COUNTER = itertools.count(1)


class ZipPackage:
    """A package in a zip on sys.path, its modules importable through a finder of tmp_path."""

    def __init__(self, tmp_path, directory):
        self.name = 'npr_bc_%d' % next(_COUNTER)
        self.tmp_path = tmp_path
        self.finder = _bytecode_cache.BytecodeFinder(prefixes=(self.name + '.',), directory=str(directory))
        self.paths = []

    def write(self, value='one', extra=None):
        """A new zip (as each module run gets its own) with mod.py, sub/__init__.py and sub/leaf.py."""
        path = str(self.tmp_path / ('payload-%d.zip' % next(_COUNTER)))
        with zipfile.ZipFile(path, 'w') as archive:
            archive.writestr(self.name + '/__init__.py', '')
            archive.writestr(self.name + '/mod.py', MODULE % value)
            archive.writestr(self.name + '/sub/__init__.py', SUB)
            archive.writestr(self.name + '/sub/leaf.py', 'LEAF = True\n')
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


def cache_name(package, name, source):
    return _bytecode_cache.cache_name('%s.%s' % (package.name, name), source.encode('utf-8'))


def test_first_run_compiles_and_keeps_the_module(package, cache_dir):
    zip_path = package.write()
    module = package.load()
    assert module.VALUE == 'one'
    assert isinstance(module.__loader__, _bytecode_cache.CachedSourceLoader)
    assert module.__file__ == os.path.join(zip_path, package.name, 'mod.py')
    source = MODULE % 'one'
    assert cached_files(cache_dir) == [cache_name(package, 'mod', source)]
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
    assert cached_files(cache_dir) == sorted([cache_name(package, 'mod', MODULE % 'two'),
                                              cache_name(package, 'other', 'OTHER = 1\n')])


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


def test_packages_load_through_the_cache_too(package, cache_dir):
    zip_path = package.write()
    sub = package.load('sub')
    assert sub.SUB is True
    assert isinstance(sub.__loader__, _bytecode_cache.CachedSourceLoader)
    assert sub.__file__ == os.path.join(zip_path, package.name, 'sub', '__init__.py')
    assert sub.__path__ == [os.path.join(zip_path, package.name, 'sub')]
    assert package.load('sub.leaf').LEAF is True
    assert cached_files(cache_dir) == sorted([cache_name(package, 'sub', SUB), cache_name(package, 'sub.leaf', 'LEAF = True\n')])


def test_other_names_are_left_to_python(package, cache_dir):
    package.write()
    __import__(package.name)
    assert isinstance(sys.modules[package.name].__loader__, zipimport.zipimporter)  # outside the prefix
    assert package.finder.find_spec('json', None) is None
    assert cached_files(cache_dir) == []


@pytest.mark.parametrize('text', [b'\xef\xbb\xbfVALUE = 1\n', b'# -*- coding: latin-1 -*-\nVALUE = "\xe9"\n'],
                         ids=['utf-8 BOM', 'latin-1 coding line'])
def test_a_source_python_reads_loads_through_the_cache_too(package, cache_dir, text):
    # compiled from its bytes, as zipimport does
    package.write(extra={'coded.py': text})
    for _run in range(2):
        module = package.load('coded')
        assert isinstance(module.__loader__, _bytecode_cache.CachedSourceLoader)
        assert module.VALUE in (1, '\xe9')
    assert _bytecode_cache.cache_name(package.name + '.coded', text) in cached_files(cache_dir)


def test_resources_of_a_package_read_as_from_zipimport(package):
    import importlib.resources
    package.write()
    package.load('sub')
    assert (importlib.resources.files(package.name + '.sub') / 'leaf.py').read_text() == 'LEAF = True\n'


def test_files_of_other_bytecode_versions_are_left_alone(package, cache_dir):
    package.write('one')
    package.load()
    other = '%s.mod.%s.%s' % (package.name, '0d0d0a00', 'f' * 64)  # another Python's, on the same router
    (cache_dir / other).write_bytes(b'')
    package.write('two')
    package.load()
    assert cached_files(cache_dir) == sorted([other, cache_name(package, 'mod', MODULE % 'two')])


@pytest.mark.parametrize('mode', [0o777, 0o775, 0o1777])
def test_a_directory_in_one_others_can_change_is_not_used(tmp_path, mode):
    parent = tmp_path / 'run'
    parent.mkdir()
    os.chmod(str(parent), mode)
    assert _bytecode_cache.private_directory(str(parent / 'bytecode')) is False


def test_the_directories_are_made_closed_whatever_the_umask(tmp_path):
    umask = os.umask(0)
    try:
        assert _bytecode_cache.private_directory(str(tmp_path / 'run' / 'bytecode')) is True
    finally:
        os.umask(umask)
    assert os.stat(str(tmp_path / 'run')).st_mode & 0o777 == 0o755
    assert os.stat(str(tmp_path / 'run' / 'bytecode')).st_mode & 0o777 == 0o700


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


COLLECTION_DIR = 'ansible_collections/netpolicy/routing/plugins/module_utils/'


def module_run_zip(tmp_path):
    """A zip with this file where a module run's has it; its zipimporter, and the source."""
    with open(_bytecode_cache.__file__, encoding='utf-8') as handle:
        source = handle.read()
    path = str(tmp_path / 'payload.zip')
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr(COLLECTION_DIR + '_bytecode_cache.py', source)
    return zipimport.zipimporter(os.path.join(path, COLLECTION_DIR)), source


@pytest.fixture
def startup_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, 'dont_write_bytecode', False)  # as on a router (the test run may set it)
    monkeypatch.setattr(sys, 'meta_path', [finder for finder in sys.meta_path
                                           if not isinstance(finder, _bytecode_cache.BytecodeFinder)])
    return tmp_path / 'python'


def test_installed_once_and_first_when_loaded_from_a_zip(tmp_path, startup_dir):
    importer, source = module_run_zip(tmp_path)
    assert _bytecode_cache.install(importer, str(startup_dir)) is True
    assert _bytecode_cache.install(importer, str(startup_dir)) is True
    finders = [finder for finder in sys.meta_path if isinstance(finder, _bytecode_cache.BytecodeFinder)]
    assert len(finders) == 1 and sys.meta_path[0] is finders[0]
    assert finders[0].prefixes == (_bytecode_cache.PREFIX,) and finders[0].directory == _bytecode_cache.BYTECODE_DIR
    # and the startup file for the next run
    startup = startup_dir / _bytecode_cache.STARTUP_FILE
    assert startup.read_text() == _bytecode_cache.startup_text(source)
    assert startup.read_text().endswith("\n\nstart(__file__, '/run/netpolicy-routing/bytecode')\n")
    assert os.stat(str(startup_dir)).st_mode & 0o777 == 0o700 and os.stat(str(startup)).st_mode & 0o777 == 0o600


def test_loaded_through_the_cache_counts_as_from_a_zip(tmp_path, startup_dir):
    importer, source = module_run_zip(tmp_path)
    loader = _bytecode_cache.CachedSourceLoader(importer, 'ignored', None)
    assert _bytecode_cache.install(loader, str(startup_dir)) is True
    assert (startup_dir / _bytecode_cache.STARTUP_FILE).read_text() == _bytecode_cache.startup_text(source)


def test_the_startup_file_is_written_only_when_it_differs(tmp_path, startup_dir):
    importer, source = module_run_zip(tmp_path)
    _bytecode_cache.install(importer, str(startup_dir))
    startup = startup_dir / _bytecode_cache.STARTUP_FILE
    before = os.stat(str(startup)).st_ino
    _bytecode_cache.install(importer, str(startup_dir))
    assert os.stat(str(startup)).st_ino == before
    startup.write_text('an older version')
    _bytecode_cache.install(importer, str(startup_dir))
    assert startup.read_text() == _bytecode_cache.startup_text(source)


def test_no_startup_file_where_others_can_write_or_python_writes_nothing(tmp_path, startup_dir, monkeypatch):
    importer = module_run_zip(tmp_path)[0]
    startup_dir.mkdir(mode=0o755)
    os.chmod(str(startup_dir), 0o755)
    assert _bytecode_cache.install(importer, str(startup_dir)) is True  # the finder, still
    assert cached_files(startup_dir) == []
    os.chmod(str(startup_dir), 0o700)
    monkeypatch.setattr(sys, 'dont_write_bytecode', True)
    _bytecode_cache.install(importer, str(startup_dir))
    assert cached_files(startup_dir) == []


def test_a_new_startup_file_leaves_no_compiled_file_of_the_old_one(tmp_path, startup_dir):
    import importlib.util
    importer = module_run_zip(tmp_path)[0]
    _bytecode_cache.install(importer, str(startup_dir))
    startup = startup_dir / _bytecode_cache.STARTUP_FILE
    compiled = importlib.util.cache_from_source(str(startup))
    os.makedirs(os.path.dirname(compiled))
    with open(compiled, 'wb') as handle:
        handle.write(b'of the old file')  # Python would take it for the new one of the same size and second
    startup.write_text('an older version')
    _bytecode_cache.install(importer, str(startup_dir))
    assert not os.path.exists(compiled)


def test_a_zip_without_this_file_writes_no_startup_file(tmp_path, startup_dir):
    path = str(tmp_path / 'other.zip')
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('x.py', '')
    assert _bytecode_cache.install(zipimport.zipimporter(path), str(startup_dir)) is True
    assert cached_files(startup_dir) == []


def test_python_started_with_the_startup_file_keeps_ansibles_module_utils(tmp_path):
    # A Python started as the action plugin starts the module: the startup directory first in
    # PYTHONPATH, here followed by one with the sitecustomize it hides.
    with open(_bytecode_cache.__file__, encoding='utf-8') as handle:
        source = handle.read()
    cache = tmp_path / 'bytecode'
    startup = tmp_path / 'python'
    startup.mkdir(mode=0o700)
    (startup / _bytecode_cache.STARTUP_FILE).write_text(_bytecode_cache.startup_text(source, str(cache)))
    hidden = tmp_path / 'hidden'
    hidden.mkdir()
    marker = tmp_path / 'hidden-ran'
    (hidden / 'sitecustomize.py').write_text('open(%r, "w").close()\n' % str(marker))
    payload = str(tmp_path / 'payload.zip')
    with zipfile.ZipFile(payload, 'w') as archive:
        archive.writestr('ansible/__init__.py', '')
        archive.writestr('ansible/module_utils/__init__.py', '')
        archive.writestr('ansible/module_utils/basic.py', 'VALUE = 1\n')
    script = ('import sys; sys.path.insert(0, %r); import ansible.module_utils.basic as basic; '
              'print(type(basic.__loader__).__name__, basic.VALUE, sys.modules["sitecustomize"].__file__, '
              'sum(type(finder).__name__ == "BytecodeFinder" for finder in sys.meta_path))' % payload)
    spelled = tmp_path / 'spelled'  # the same directory once more, by a symlink (as /var/run is /run)
    spelled.symlink_to(startup)
    environment = dict(os.environ, PYTHONPATH='%s:%s:%s' % (startup, spelled, hidden))
    environment.pop('PYTHONDONTWRITEBYTECODE', None)
    for _run in range(2):
        ran = subprocess.run([sys.executable, '-c', script], env=environment, capture_output=True, text=True,
                             check=False, timeout=60)
        assert ran.returncode == 0 and not ran.stderr, ran.stderr
        assert ran.stdout.split() == ['CachedSourceLoader', '1', str(startup / _bytecode_cache.STARTUP_FILE), '1']
        assert marker.exists()
        assert cached_files(cache) == [_bytecode_cache.cache_name('ansible.module_utils.basic', b'VALUE = 1\n')]
        marker.unlink()

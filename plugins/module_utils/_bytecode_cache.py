# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: compiled module_utils, kept between module runs.

Ansible sends a module to the router in a zip with the module_utils it imports,
and Python compiles every source it imports from a zip anew on each run: it
keeps no .pyc for them. It even compiles each one twice (Python 3.11's
zipimport compiles a module to tell its file name when the import system
builds the module's spec, then again to load it). For this collection's
module_utils that was about 0.18 s of CPU per module run, some 40 % of a no-op
``apply_state``, and Ansible's own module_utils, which the AnsiballZ wrapper
imports before the module's code runs, cost about 0.05 s more (docs/performance.md).

A module imports this file before the other module_utils, and so does the
agent's command (``_install.COMMAND``), which imports them from its engine zip.
When it was itself loaded from a zip, it puts a finder first in
``sys.meta_path`` that loads the collection's module_utils from that zip
itself: compiled once per run where there is no cache, and else once per
router, kept in ``BYTECODE_DIR`` in a file named by the module's full name and
the SHA-256 of its source and of this Python's bytecode magic number. A file
found there is the compilation of exactly that source by this Python, so it is
never stale; a file of another version of the module is removed when the new
one is written.

For Ansible's module_utils the finder must be in place before the wrapper
starts: the module run also writes ``STARTUP_DIR/sitecustomize.py`` (this file
and a call of ``start``), and the roles' action plugin puts ``STARTUP_DIR``
first in the module's PYTHONPATH. Python runs that file as it starts; it puts
the finder in place for Ansible's module_utils and the collection's, then runs
the sitecustomize it hides (Debian's, for one). Without it (the first run on a
router, the modules run by their own tasks) only the collection's are kept.

The directories hold code that is run, so they are used only when they are
directories of the user running the module that no other user can read or
write (root's on a router, created mode 0700). Anything else (no /run, a
read-only file system, a damaged file) falls back to compiling as Python would:
the cache can make a run faster, never make it fail.

Loaded from files (the controller, the tests, ansible-test), this file does
nothing: Python keeps .pyc files for those itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import pkgutil
import stat
import sys
import zipimport

# Standard library only: this file loads before the other module_utils, so it cannot use
# their helpers (its atomic write is _rt_tables.write_atomically's, without the fsyncs: a
# cache in /run is not worth them, and a lost file is only written again).

try:
    from _imp import _fix_co_filename
except ImportError:  # not CPython: tracebacks name the file of the run that compiled it
    def _fix_co_filename(code, path):
        return None

# In /run with the lock files (_lock.LOCK_DIR): namespaces share it, a reboot empties it.
BYTECODE_DIR = '/run/netpolicy-routing/bytecode'
STARTUP_DIR = '/run/netpolicy-routing/python'
STARTUP_FILE = 'sitecustomize.py'
PREFIX = 'ansible_collections.netpolicy.routing.plugins.module_utils.'
ANSIBLE_PREFIX = 'ansible.module_utils.'
HEADER = importlib.util.MAGIC_NUMBER
# In the files' names too: Pythons of other bytecode versions (two interpreters on one
# router) keep their own files instead of removing each other's (_remove_others).
TAG = HEADER.hex()


def cache_key(source):
    """The name part that ties a file to exactly this ``source`` (bytes) and this Python's bytecode."""
    return hashlib.sha256(HEADER + source).hexdigest()


def cache_name(fullname, source):
    """The file that keeps the compiled ``source`` (bytes) of the module ``fullname``."""
    return '%s.%s.%s' % (fullname, TAG, cache_key(source))


def private_directory(path):
    """True when ``path`` is (or could be made) a directory of this user that no one else can read or write,
    in a directory (/run/netpolicy-routing) that no one else can change: it holds code that is run."""
    parent = os.path.dirname(path)
    for directory, mode in ((parent, 0o755), (path, 0o700)):
        try:
            os.mkdir(directory, mode)
            os.chmod(directory, mode)  # whatever the umask
        except OSError:
            pass  # it exists, or cannot be made: what it is decides
    try:
        above, info = os.lstat(parent), os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(above.st_mode) and above.st_uid in (0, os.geteuid()) and not above.st_mode & 0o022
            and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077)


def write_file(path, data):
    """True when ``path`` now holds ``data``: a whole file or none, as another run may read it at any moment."""
    if sys.dont_write_bytecode:  # PYTHONDONTWRITEBYTECODE / -B: read, as Python does, but write nothing
        return False
    temporary = '%s.%d.tmp' % (path, os.getpid())
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.rename(temporary, path)
        return True
    except (OSError, IOError, ValueError):
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False


class CachedSourceLoader:
    """Loads the module ``filename`` of ``importer`` (a zipimporter), compiled through ``directory`` (None: no cache)."""

    def __init__(self, importer, filename, directory, package=False):
        self.importer = importer
        self.filename = filename
        self.directory = directory
        self.package = package

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module):
        exec(self.get_code(module.__name__), module.__dict__)  # pylint: disable=exec-used

    def get_source(self, fullname):
        # tracebacks read source lines through the module's loader
        return self.importer.get_source(fullname)

    def get_filename(self, fullname):
        return self.filename

    def is_package(self, fullname):
        return self.package

    def get_data(self, path):
        # the agent's engine is built from the sources of this zip (_install.engine_sources)
        return self.importer.get_data(path)

    def get_resource_reader(self, fullname):
        # importlib.resources of a package, as zipimport serves it
        return self.importer.get_resource_reader(fullname)

    def get_code(self, fullname):
        try:
            # The bytes, as zipimport compiles them: a BOM or a coding line is Python's to read.
            source = self.importer.get_data(self.filename)
        except OSError:  # only bytecode in the zip: Python's own
            return self.importer.get_code(fullname)
        if self.directory is None:
            return compile(source, self.filename, 'exec', dont_inherit=True)
        name = cache_name(fullname, source)
        path = os.path.join(self.directory, name)
        code = self._read(path)
        if code is None:
            code = compile(source, self.filename, 'exec', dont_inherit=True)
            if write_file(path, HEADER + marshal.dumps(code)):
                self._remove_others(fullname, name)
        _fix_co_filename(code, self.filename)  # this run's zip, as a fresh compile would name it
        return code

    @staticmethod
    def _read(path):
        try:
            with open(path, 'rb') as handle:
                data = handle.read()
            if data.startswith(HEADER):
                return marshal.loads(data[len(HEADER):])
        except (OSError, IOError, ValueError, EOFError, TypeError):
            pass  # missing or damaged: compiled again and rewritten
        return None

    def _remove_others(self, fullname, name):
        """Files of other versions of this module (an older collection or Ansible) are not needed any more."""
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return
        for entry in entries:
            if entry != name and entry.rpartition('.')[0] == '%s.%s' % (fullname, TAG):  # not 'name.pid.tmp'
                try:
                    os.unlink(os.path.join(self.directory, entry))
                except OSError:
                    pass


class BytecodeFinder:
    """First in sys.meta_path: the modules under ``prefixes`` that come from a zip load through ``directory``."""

    def __init__(self, prefixes=(PREFIX,), directory=BYTECODE_DIR):
        self.prefixes = tuple(prefixes)
        self.directory = directory
        self._usable = None

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.prefixes):
            return None
        for entry in path or ():
            importer = pkgutil.get_importer(entry)  # the zipimporter of the package's directory in the zip
            if not isinstance(importer, zipimport.zipimporter):
                continue
            try:
                package = importer.is_package(fullname)
            except zipimport.ZipImportError:
                continue  # not in this entry (or a namespace package: Python's)
            # Its names as zipimport gives them; asking zipimport for them would compile the module.
            base = '%s%s%s%s' % (importer.archive, os.sep, importer.prefix, fullname.rpartition('.')[2])
            filename = os.path.join(base, '__init__.py') if package else base + '.py'
            loader = CachedSourceLoader(importer, filename, self.directory if self.usable() else None, package)
            spec = importlib.util.spec_from_file_location(fullname, filename, loader=loader,
                                                          submodule_search_locations=[base] if package else None)
            spec.cached = None  # no .pyc beside it in the zip, as for zipimport's own specs
            return spec
        return None

    def usable(self):
        if self._usable is None:
            self._usable = private_directory(self.directory)
        return self._usable


def zip_of(loader):
    """The zipimporter ``loader`` loads from (itself, or a CachedSourceLoader's), or None."""
    importer = getattr(loader, 'importer', loader)
    return importer if isinstance(importer, zipimport.zipimporter) else None


def install(loader=None, startup_dir=STARTUP_DIR):
    """In a module run (this file came from a zip): put the finder first in sys.meta_path, once, and write the startup file."""
    importer = zip_of(loader)
    if importer is None:
        return False
    # By class name: the one of the startup file, a copy of this file, counts too.
    if not any(type(finder).__name__ == BytecodeFinder.__name__ for finder in sys.meta_path):
        sys.meta_path.insert(0, BytecodeFinder())
    try:
        source = importer.get_source(__name__)
    except zipimport.ZipImportError:
        source = None
    write_startup_file(source, startup_dir)
    return True


def startup_text(source, directory=BYTECODE_DIR):
    """The startup file: this file's ``source``, then the call that sets it to work with ``directory``."""
    return '%s\n\nstart(__file__, %r)\n' % (source.rstrip('\n'), directory)


def write_startup_file(source, startup_dir=STARTUP_DIR):
    """True when ``startup_dir`` holds the startup file of ``source`` (unchanged or written now)."""
    if source is None or not private_directory(startup_dir):
        return False
    data = startup_text(source).encode('utf-8')
    path = os.path.join(startup_dir, STARTUP_FILE)
    try:
        with open(path, 'rb') as handle:
            if handle.read() == data:
                return True
    except (OSError, IOError):
        pass  # not there yet
    if not write_file(path, data):
        return False
    # Python keeps the compiled file beside it, checked by the source's size and mtime in
    # whole seconds only: another version of the same size written within the same second
    # would run the old code.
    try:
        os.unlink(importlib.util.cache_from_source(path))
    except (OSError, NotImplementedError, ValueError):
        pass
    return True


def start(startup_file, directory=BYTECODE_DIR):
    """Run by Python as the sitecustomize of a module run: Ansible's module_utils load through the cache as well."""
    sys.meta_path.insert(0, BytecodeFinder((ANSIBLE_PREFIX, PREFIX), directory))
    # The sitecustomize this file hides still runs, as it would have without it; not this
    # file again, however its directory is spelled in sys.path (/var/run is /run).
    here = os.path.realpath(startup_file)
    others = [entry for entry in sys.path
              if os.path.realpath(os.path.join(entry or os.curdir, STARTUP_FILE)) != here]
    spec = importlib.machinery.PathFinder.find_spec('sitecustomize', others)
    if spec is not None and spec.loader is not None:
        hidden = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(hidden)


install(globals().get('__loader__'))

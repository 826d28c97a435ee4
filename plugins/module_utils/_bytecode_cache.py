# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the compiled module_utils, kept between module runs.

Ansible sends a module to the router in a zip with the module_utils it imports,
and Python compiles every source it imports from a zip anew on each run: it
keeps no .pyc for them. It even compiles each one twice (Python 3.11's
zipimport compiles a module to tell its file name when the import system
builds the module's spec, then again to load it). For this collection's
module_utils that was about 0.18 s of CPU per module run, some 40 % of a no-op
``apply_state`` (docs/performance.md).

A module imports this file before the other module_utils, and so does the
agent's command (``_install.COMMAND``), which imports them from its engine zip.
When it was itself loaded from a zip, it puts a finder first in
``sys.meta_path`` that loads the collection's module_utils from that zip
itself: compiled once per run where there is no cache, and else once per
router, kept in ``BYTECODE_DIR`` in a file named by its module and the SHA-256
of its source and of this Python's bytecode magic number. A file found there is
the compilation of exactly that source by this Python, so it is never stale; a
file of another version of the module is removed when the new one is written.

The directory holds code that is run, so it is used only when it is a directory
of the user running the module that no other user can read or write (root's on
a router, created mode 0700). Anything else (no /run, a read-only file system,
a damaged file) falls back to compiling as Python would: the cache can make a
run faster, never make it fail.

Loaded from files (the controller, the tests, ansible-test), this file does
nothing: Python keeps .pyc files for those itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import importlib.util
import marshal
import os
import pkgutil
import stat
import sys
import zipimport

# Standard library only: this file loads before the other module_utils, so it cannot use
# their helpers (its atomic write is _rt_tables.write_atomically's, without the fsyncs: a
# cache in /run is not worth them, and a lost file is only compiled again).

try:
    from _imp import _fix_co_filename
except ImportError:  # not CPython: tracebacks name the file of the run that compiled it
    def _fix_co_filename(code, path):
        return None

# In /run with the lock files (_lock.LOCK_DIR): namespaces share it, a reboot empties it.
BYTECODE_DIR = '/run/netpolicy-routing/bytecode'
PREFIX = 'ansible_collections.netpolicy.routing.plugins.module_utils.'
HEADER = importlib.util.MAGIC_NUMBER


def cache_key(source):
    """The name part that ties a file to exactly this source and this Python's bytecode."""
    return hashlib.sha256(HEADER + source.encode('utf-8')).hexdigest()


def private_directory(path):
    """True when ``path`` is (or could be made) a directory of this user that no one else can read or write."""
    try:
        os.makedirs(path, 0o700)
    except OSError:
        pass  # it exists, or cannot be made: what it is decides
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


class CachedSourceLoader:
    """Loads the module ``filename`` of ``importer`` (a zipimporter), compiled through ``directory`` (None: no cache)."""

    def __init__(self, importer, filename, directory):
        self.importer = importer
        self.filename = filename
        self.directory = directory

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
        return False

    def get_data(self, path):
        # the agent's engine is built from the sources of this zip (_install.engine_sources)
        return self.importer.get_data(path)

    def get_code(self, fullname):
        source = self.get_source(fullname)
        if source is None:  # only bytecode in the zip: Python's own
            return self.importer.get_code(fullname)
        if self.directory is None:
            return compile(source, self.filename, 'exec', dont_inherit=True)
        name = '%s.%s' % (fullname.rsplit('.', 1)[-1], cache_key(source))
        path = os.path.join(self.directory, name)
        code = self._read(path)
        if code is None:
            code = compile(source, self.filename, 'exec', dont_inherit=True)
            if self._write(path, code):
                self._remove_others(name)
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

    @staticmethod
    def _write(path, code):
        """True when ``path`` now holds ``code``."""
        if sys.dont_write_bytecode:  # PYTHONDONTWRITEBYTECODE / -B: read, as Python does, but write nothing
            return False
        # A whole file or none: another run may read it at any moment.
        temporary = '%s.%d.tmp' % (path, os.getpid())
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(HEADER + marshal.dumps(code))
            os.rename(temporary, path)
            return True
        except (OSError, IOError, ValueError):
            try:
                os.unlink(temporary)
            except OSError:
                pass
            return False

    def _remove_others(self, name):
        """Files of other versions of this module (an older collection) are not needed any more."""
        module = name.split('.', 1)[0] + '.'
        try:
            entries = os.listdir(self.directory)
        except OSError:
            return
        for entry in entries:
            if entry.startswith(module) and entry != name and not entry.endswith('.tmp'):
                try:
                    os.unlink(os.path.join(self.directory, entry))
                except OSError:
                    pass


class BytecodeFinder:
    """First in sys.meta_path: the modules under ``prefix`` that come from a zip load through ``directory``."""

    def __init__(self, prefix=PREFIX, directory=BYTECODE_DIR):
        self.prefix = prefix
        self.directory = directory
        self._usable = None

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.prefix):
            return None
        for entry in path or ():
            importer = pkgutil.get_importer(entry)  # the zipimporter of the package's directory in the zip
            if not isinstance(importer, zipimport.zipimporter):
                continue
            try:
                if importer.is_package(fullname):
                    return None  # as Python would do it
            except zipimport.ZipImportError:
                continue  # not in this entry
            # Its name as zipimport gives it; asking zipimport for it would compile the module.
            filename = '%s%s%s%s.py' % (importer.archive, os.sep, importer.prefix, fullname.rpartition('.')[2])
            loader = CachedSourceLoader(importer, filename, self.directory if self.usable() else None)
            spec = importlib.util.spec_from_file_location(fullname, filename, loader=loader)
            spec.cached = None  # no .pyc beside it in the zip, as for zipimport's own specs
            return spec
        return None

    def usable(self):
        if self._usable is None:
            self._usable = private_directory(self.directory)
        return self._usable


def install(loader=None):
    """Put the finder first in sys.meta_path, once, when this file came from a zip (a module run)."""
    if not isinstance(loader, zipimport.zipimporter):
        return False
    if not any(isinstance(finder, BytecodeFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, BytecodeFinder())
    return True


install(globals().get('__loader__'))

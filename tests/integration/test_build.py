"""The built tarball installs with ansible-galaxy and works from there.

scripts/build builds the collection; ansible-galaxy installs the tarball into a
temporary collections path; ansible-doc and a playbook then run with only that
path configured (ANSIBLE_COLLECTIONS_PATH, no sys.path scan, a working directory
outside the checkout), so nothing can come from the source tree.
"""
import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)

# What must never ship. Top level: the venv, caches, build output, benchmarks,
# test results and development tooling (galaxy.yml's build_ignore); anywhere:
# bytecode, VCS data and tarballs.
TOP_LEVEL_JUNK = ('.venv', '.cache', '.build', '.ansible', '.pytest_cache', '.ci', 'bench', 'scripts',
                  'requirements', 'tests/output', 'Makefile', 'pytest.ini', '.gitignore', '.ansible-lint')
JUNK_ANYWHERE = ('__pycache__', '*.pyc', '.git', '.pytest_cache', '*.tar.gz')

PLAYBOOK = """\
- name: Use the installed collection on a test namespace
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Name a table (check mode)
      netpolicy.routing.rt_tables_entry:
        name: npr_build
        id: 100
        netns: "{{ test_netns }}"
      check_mode: true
      register: checked

    - name: Name a table
      netpolicy.routing.rt_tables_entry:
        name: npr_build
        id: 100
        netns: "{{ test_netns }}"
      register: applied

    - name: Name a table again
      netpolicy.routing.rt_tables_entry:
        name: npr_build
        id: 100
        netns: "{{ test_netns }}"
      register: again

    - name: Check mode predicted the change, the second run changed nothing
      ansible.builtin.assert:
        that:
          - checked is changed
          - applied is changed
          - again is not changed
          - checked.commands == applied.commands
          - again.commands == []
"""


def source_plugins(kind):
    """Names of the plugins of ``kind`` (modules, connection) in the source tree."""
    directory = os.path.join(REPO, 'plugins', kind)
    return sorted(name[:-3] for name in os.listdir(directory)
                  if name.endswith('.py') and not name.startswith('_'))


def source_roles():
    """Every role directory of the source tree (each must document itself in meta/argument_specs.yml)."""
    directory = os.path.join(REPO, 'roles')
    return sorted(name for name in os.listdir(directory) if os.path.isdir(os.path.join(directory, name)))


def source_options(kind, name):
    """The options a plugin declares in its own DOCUMENTATION (doc fragments add more)."""
    with open(os.path.join(REPO, 'plugins', kind, name + '.py')) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ['DOCUMENTATION']:
            return set((yaml.safe_load(ast.literal_eval(node.value)) or {}).get('options') or {})
    raise AssertionError('%s/%s.py has no DOCUMENTATION' % (kind, name))


def shown_options(text):
    """Top-level option names in the OPTIONS sections of ansible-doc's text output.

    A section starts at `OPTIONS (= indicates it is required):` (`Options` for a role's
    entry point) and ends at the next unindented line that is not an option (`- name`,
    or `= name` when required), such as `ATTRIBUTES:` or `EXAMPLES:`.
    """
    names, inside = set(), False
    for line in text.splitlines():
        if re.match(r'(OPTIONS|Options) \(', line):
            inside = True
        elif inside and re.match(r'[-=] \S', line):
            names.add(line[2:].split()[0])
        elif line[:1].strip():
            inside = False
    return names


def run(argv, env, cwd):
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, '%s failed (rc=%d)\nstdout:\n%s\nstderr:\n%s' % (
        ' '.join(argv), proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(tarball, collections path, environment that sees only that path, a work dir)."""
    root = tmp_path_factory.mktemp('build')
    work = root / 'work'
    work.mkdir()
    collections = root / 'collections'
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_LOCAL_TEMP=str(root / 'tmp'), ANSIBLE_LOCALHOST_WARNING='false',
               ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', PATH=BIN + os.pathsep + env.get('PATH', ''))
    tarball = run([os.path.join(REPO, 'scripts', 'build'), str(root / 'dist')], env, REPO).strip()
    run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline',
         '-p', str(collections), tarball], env, str(work))
    return tarball, collections, env, work


def test_tarball_has_no_junk(installed):
    with tarfile.open(installed[0]) as tar:
        names = tar.getnames()
    junk = [name for name in names
            if any(name == top or name.startswith(top + '/') for top in TOP_LEVEL_JUNK)
            or any(fnmatch.fnmatch(part, pattern) for part in name.split('/') for pattern in JUNK_ANYWHERE)]
    assert junk == []


def test_tarball_has_the_collection(installed):
    with tarfile.open(installed[0]) as tar:
        names = set(tar.getnames())
    expected = {'MANIFEST.json', 'FILES.json', 'LICENSE', 'README.md', 'meta/runtime.yml',
                'changelogs/changelog.yaml', 'changelogs/config.yaml', 'plugins/doc_fragments/common.py'}
    expected.update('plugins/modules/%s.py' % name for name in source_plugins('modules'))
    expected.update('plugins/connection/%s.py' % name for name in source_plugins('connection'))
    assert expected - names == set()
    with tarfile.open(installed[0]) as tar:
        manifest = json.load(tar.extractfile('MANIFEST.json'))
    assert manifest['collection_info']['namespace'] == 'netpolicy'
    assert manifest['collection_info']['name'] == 'routing'


def test_only_the_installed_copy_is_seen(installed):
    tarball, collections, env, work = installed
    out = run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'list', '--format', 'json'], env, str(work))
    found = json.loads(out)
    # ansible-core lists its own internal collections too; netpolicy.routing is only here.
    assert [path for path, names in found.items() if 'netpolicy.routing' in names] == [
        str(collections / 'ansible_collections')]


PLUGINS = [('module', name) for name in source_plugins('modules')] + [
    ('connection', name) for name in source_plugins('connection')]


@pytest.mark.parametrize('kind, name', PLUGINS, ids=['%s-%s' % plugin for plugin in PLUGINS])
def test_ansible_doc(installed, kind, name):
    tarball, collections, env, work = installed
    fqcn = 'netpolicy.routing.' + name
    out = run([os.path.join(BIN, 'ansible-doc'), '--json', '-t', kind, fqcn], env, str(work))
    doc = json.loads(out)[fqcn]['doc']
    assert doc['filename'].startswith(str(collections) + os.sep), doc['filename']
    assert doc['short_description']
    directory = 'modules' if kind == 'module' else kind
    assert source_options(directory, name) - set(doc['options']) == set()
    # What an operator reads: `ansible-doc NAME` shows every option.
    text = run([os.path.join(BIN, 'ansible-doc'), '-t', kind, fqcn], env, str(work))
    assert shown_options(text) == set(doc['options'])


@pytest.mark.parametrize('role', source_roles())
def test_ansible_doc_role(installed, role):
    tarball, collections, env, work = installed
    fqcn = 'netpolicy.routing.' + role
    with open(os.path.join(REPO, 'roles', role, 'meta', 'argument_specs.yml')) as handle:
        specs = yaml.safe_load(handle)['argument_specs']
    out = run([os.path.join(BIN, 'ansible-doc'), '--json', '-t', 'role', fqcn], env, str(work))
    doc = json.loads(out)[fqcn]
    assert doc['path'].startswith(str(collections) + os.sep), doc['path']
    assert sorted(doc['entry_points']) == sorted(specs)
    for entry_point, spec in specs.items():
        assert doc['entry_points'][entry_point]['short_description']
        assert set(doc['entry_points'][entry_point]['options']) == set(spec.get('options') or {})
    text = run([os.path.join(BIN, 'ansible-doc'), '-t', 'role', fqcn], env, str(work))
    assert shown_options(text) == set().union(*(spec.get('options') or {} for spec in specs.values()))


def test_ansible_doc_lists_every_role(installed):
    tarball, collections, env, work = installed
    out = run([os.path.join(BIN, 'ansible-doc'), '--json', '-t', 'role', '-l', 'netpolicy.routing'], env, str(work))
    assert sorted(json.loads(out)) == ['netpolicy.routing.' + name for name in source_roles()]


@pytest.mark.parametrize('kind, directory', [('module', 'modules'), ('connection', 'connection')])
def test_ansible_doc_lists_every_plugin(installed, kind, directory):
    tarball, collections, env, work = installed
    out = run([os.path.join(BIN, 'ansible-doc'), '--json', '-t', kind, '-l', 'netpolicy.routing'], env, str(work))
    assert sorted(json.loads(out)) == ['netpolicy.routing.' + name for name in source_plugins(directory)]


def test_playbook_runs_from_installed_copy(installed, netns):
    tarball, collections, env, work = installed
    conf = netns.rt_tables('255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n')
    playbook = work / 'playbook.yml'
    playbook.write_text(PLAYBOOK)
    argv = [os.path.join(BIN, 'ansible-playbook'), str(playbook), '-e', 'test_netns=' + netns.name]
    if os.environ.get('NETPOLICY_TEST_PYTHON'):
        # The module's interpreter, as in tests/helpers/modules.py (Debian's python3: pyroute2 0.7.2).
        argv += ['-e', 'ansible_python_interpreter=' + os.environ['NETPOLICY_TEST_PYTHON']]
    run(argv, env, str(work))
    with open(os.path.join(conf, 'rt_tables.d', 'netpolicy.conf')) as handle:
        assert handle.read() == '100 npr_build\n'

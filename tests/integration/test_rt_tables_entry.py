"""netpolicy.routing.rt_tables_entry against real files and a real `ip`.

Every file lives under /etc/netns/<test namespace>/iproute2/, which is what
`ip netns exec` shows that namespace as /etc/iproute2; the host's own
/etc/iproute2 is checked to stay exactly as it was.
"""
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers.modules import run_module

MODULE = 'rt_tables_entry'
DEBIAN_RT_TABLES = ('#\n# reserved values\n#\n255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n'
                    '#\n# local\n#\n#1\tinr.ruhep\n')
DEBIAN_PYTHON = '/usr/bin/python3'


def tree(root):
    """{relative path: bytes} of every file under root."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, 'rb') as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


@pytest.fixture(autouse=True, scope='module')
def host_rt_tables_untouched():
    before = tree('/etc/iproute2')
    yield
    assert tree('/etc/iproute2') == before


@pytest.fixture
def ns(netns):
    """The test namespace with Debian's stock rt_tables plus `200 router2` (seed 004)."""
    netns.rt_tables(DEBIAN_RT_TABLES + '200\trouter2\n')
    netns.conf = os.path.join(netns.etc, 'iproute2')
    netns.drop_in = os.path.join(netns.conf, 'rt_tables.d', 'netpolicy.conf')
    return netns


def run(ns, check=False, diff=False, python=None, **args):
    args.setdefault('netns', ns.name)
    return run_module(MODULE, args, check=check, diff=diff, python=python)


def read(path):
    with open(path) as handle:
        return handle.read()


def assert_resolves(ns, name, number):
    """`ip route ... table NAME`, inside the namespace, lands in table NUMBER (IPv4 and IPv6)."""
    ns.run('ip', 'route', 'add', 'blackhole', '192.0.2.0/24', 'table', name)
    ns.run('ip', '-6', 'route', 'add', 'blackhole', '2001:db8:%x::/64' % number, 'table', name)
    assert '192.0.2.0/24' in ns.ip('route', 'show', 'table', str(number)).stdout
    assert '2001:db8:%x::/64' % number in ns.ip('-6', 'route', 'show', 'table', str(number)).stdout
    # ip -n reads the namespace's /etc/netns files as well.
    assert '192.0.2.0/24' in ns.ip('route', 'show', 'table', name).stdout


def test_apply_again_check_diff_and_ip_resolves_the_name(ns):
    args = dict(name='sunusroute', id=7375)
    untouched = tree(ns.etc)

    check = run(ns, check=True, diff=True, **args)
    assert check['changed'] and 'failed' not in check
    assert tree(ns.etc) == untouched, 'check mode changed files'

    done = run(ns, diff=True, **args)
    assert done['changed'] and 'failed' not in done, done
    assert done['commands'] == check['commands'] == ["echo '7375 sunusroute' >> %s" % ns.drop_in]
    assert done['diff'] == check['diff'] == {'before': '', 'after': '7375 sunusroute\n',
                                             'before_header': ns.drop_in, 'after_header': ns.drop_in}
    assert done['entries'] == [{'name': 'sunusroute', 'id': 7375}]
    assert done['path'] == ns.drop_in
    assert read(ns.drop_in) == '7375 sunusroute\n'
    assert stat.S_IMODE(os.stat(ns.drop_in).st_mode) == 0o644
    assert_resolves(ns, 'sunusroute', 7375)

    for check_mode in (False, True):
        again = run(ns, check=check_mode, diff=True, **args)
        assert not again['changed'] and again['commands'] == [], again
        assert again['diff']['before'] == again['diff']['after'] == '7375 sunusroute\n'


def test_list_form_and_absent(ns):
    entries = [{'name': 'isp1', 'id': 1}, {'name': 'isp2', 'id': 2}, {'name': 'router2', 'id': 200},
               {'name': 'isp4', 'id': 4}]
    check = run(ns, check=True, entries=entries)
    done = run(ns, entries=entries)
    # router2 resolves already through rt_tables: nothing written for it.
    assert done['commands'] == check['commands'] == ["echo '%d %s' >> %s" % (number, name, ns.drop_in)
                                                     for name, number in (('isp1', 1), ('isp2', 2), ('isp4', 4))]
    assert read(ns.drop_in) == '1 isp1\n2 isp2\n4 isp4\n'
    assert done['entries'] == entries
    assert not run(ns, entries=entries)['changed']
    assert_resolves(ns, 'isp4', 4)

    gone = [{'name': 'isp1', 'id': 1}, {'name': 'isp4'}, {'name': 'never-there'}]
    check = run(ns, check=True, diff=True, state='absent', entries=gone)
    assert read(ns.drop_in) == '1 isp1\n2 isp2\n4 isp4\n'
    done = run(ns, diff=True, state='absent', entries=gone)
    assert done['changed'] and done['commands'] == check['commands'] == [
        "sed -i -E '/^1[[:space:]]+isp1$/d' %s" % ns.drop_in, "sed -i -E '/^4[[:space:]]+isp4$/d' %s" % ns.drop_in]
    assert done['diff'] == check['diff'] and done['diff']['after'] == '2 isp2\n'
    assert done['entries'] == []
    assert read(ns.drop_in) == '2 isp2\n'
    assert ns.run('ip', 'route', 'show', 'table', 'isp1', check=False).returncode != 0
    assert not run(ns, state='absent', entries=gone)['changed']


def test_changing_the_id_rewrites_its_line_in_place(ns):
    with open(ns.drop_in, 'w') as handle:
        handle.write('# uplinks\n101 isp1\n102 isp2\n')
    done = run(ns, diff=True, name='isp1', id=111)
    assert done['changed'] and read(ns.drop_in) == '# uplinks\n111 isp1\n102 isp2\n'
    assert done['diff']['before'] == '# uplinks\n101 isp1\n102 isp2\n'
    assert_resolves(ns, 'isp1', 111)


FOREIGN = ('# Managed by hand, keep:\n'
           '\n'
           '  42\t answer   # with a comment and odd spacing \n'
           '0x2b hexname\n'
           '#300 commented-out\n')


def test_comments_and_foreign_lines_are_kept_byte_for_byte(ns):
    with open(ns.drop_in, 'w') as handle:
        handle.write(FOREIGN)
    os.chmod(ns.drop_in, 0o640)
    assert run(ns, name='router3', id=300)['changed']
    assert read(ns.drop_in) == FOREIGN + '300 router3\n'
    assert stat.S_IMODE(os.stat(ns.drop_in).st_mode) == 0o640, 'the mode of an existing file is kept'
    assert run(ns, name='router3', state='absent')['changed']
    assert read(ns.drop_in) == FOREIGN
    assert_resolves(ns, 'answer', 42)


ROUTER2 = "in /etc/netns/{ns}/iproute2/rt_tables:12"


@pytest.mark.parametrize('args, field, message', [
    (dict(name='router2', id=201), 'name', "table name 'router2' is already 200 " + ROUTER2),
    (dict(name='router3', id=200), 'id', "table id 200 is already named 'router2' " + ROUTER2),
    (dict(entries=[{'name': 'ok', 'id': 5}, {'name': 'router3', 'id': 200}]), 'entries[1].id', 'router2'),
    (dict(name='router2', state='absent'), 'name', 'which this task does not own'),
    (dict(name='isp', id=254), 'id', 'table id 254 is reserved (main)'),
    (dict(name='isp', id=0), 'id', 'table id 0 is reserved (unspec)'),
    (dict(name='isp', id=3000000000), 'id', 'cannot have a name'),
    (dict(name='7375', id=7375), 'name', 'reads as a number'),
    (dict(name='my table', id=5), 'name', 'not a table name'),
    (dict(name='#x', id=5), 'name', 'not a table name'),
    (dict(entries=[{'name': 'a', 'id': 5}, {'name': 'a', 'id': 6}]), 'entries[1].name', 'given twice'),
    (dict(entries=[{'name': 'a', 'id': 5}, {'name': 'b', 'id': 5}]), 'entries[1].id', 'given twice'),
    (dict(name='x', id=5, path='/etc/iproute2/other.txt'), 'path', 'iproute2 does not read'),
    (dict(name='x', id=5, netns='npr-does-not-exist'), 'netns', 'does not exist'),
])
def test_bad_input_fails_clearly_and_touches_nothing(ns, args, field, message):
    with open(ns.drop_in, 'w') as handle:
        handle.write('# mine\n7 seven\n')
    before = tree(ns.etc)
    result = run(ns, **args)
    assert result.get('failed') and not result['changed'], result
    assert 'Traceback' not in result['stderr']
    assert result['field'] == field
    assert result['msg'].startswith(field + ': ')
    assert message.format(ns=ns.name) in result['msg']
    assert tree(ns.etc) == before


def test_a_corrupted_own_file_is_refused(ns):
    with open(ns.drop_in, 'w') as handle:
        handle.write('7 seven\nrouter9 9\n')
    result = run(ns, name='x', id=5)
    assert result.get('failed') and result['field'] == 'path'
    assert '%s:2: iproute2 stops reading the file at this line' % ns.drop_in in result['msg']
    assert read(ns.drop_in) == '7 seven\nrouter9 9\n'


def test_ansible_rejects_name_with_entries(ns):
    result = run(ns, name='x', id=5, entries=[{'name': 'y', 'id': 6}])
    assert result.get('failed') and 'mutually exclusive' in result['msg']


def test_concurrent_runs_all_land(ns):
    with open(ns.drop_in, 'w') as handle:
        handle.write('# shared by 8 runs\n')
    names = ['uplink%d' % index for index in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda index: run(ns, name=names[index], id=1000 + index), range(8)))
    for result in results:
        assert result['changed'] and 'failed' not in result, result
    lines = read(ns.drop_in).splitlines()
    assert lines[0] == '# shared by 8 runs'
    assert sorted(lines[1:]) == sorted('%d %s' % (1000 + index, name) for index, name in enumerate(names))
    leftovers = [name for name in os.listdir(os.path.dirname(ns.drop_in)) if name.endswith('.tmp')]
    assert leftovers == []
    assert_resolves(ns, 'uplink7', 1007)


@pytest.mark.parametrize('python', [None, DEBIAN_PYTHON], ids=['venv', 'debian-python3'])
def test_smoke_on_each_interpreter(ns, python):
    if python and not os.path.exists(python):
        pytest.skip('%s not installed' % python)
    done = run(ns, python=python, name='router4', id=4)
    assert done['changed'] and 'failed' not in done, done
    assert not run(ns, python=python, name='router4', id=4)['changed']
    assert_resolves(ns, 'router4', 4)
    assert run(ns, python=python, name='router4', state='absent')['changed']

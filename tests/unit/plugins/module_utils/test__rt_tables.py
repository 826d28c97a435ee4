"""rt_tables: parsing as iproute2 does, input checks, conflicts, planning and the file rewrite.

Files live in tmp_path: ETC_DIR and CONF_DIRS are pointed there, so nothing
here reads or writes the host's /etc/iproute2.
"""
import os

import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils import _rt_tables as rt
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    ADD, DELETE, REPLACE, EngineError, InputError, Op)


@pytest.fixture
def etc(tmp_path, monkeypatch):
    """A fake /etc/iproute2 (and /usr/share/iproute2) under tmp_path."""
    etc_dir = tmp_path / 'etc' / 'iproute2'
    usr_dir = tmp_path / 'usr' / 'iproute2'
    (etc_dir / 'rt_tables.d').mkdir(parents=True)
    monkeypatch.setattr(rt, 'ETC_DIR', str(etc_dir))
    monkeypatch.setattr(rt, 'CONF_DIRS', (str(etc_dir), str(usr_dir)))
    return etc_dir


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def params(**kwargs):
    base = dict(name=None, id=None, entries=None, state='present', path=None, netns=None)
    base.update(kwargs)
    return base


# ---------------------------------------------------------------- parse_line

@pytest.mark.parametrize('line, expected', [
    ('200 router2', (200, 'router2')),
    ('200\trouter2', (200, 'router2')),
    ('  7375   sunusroute   # the MacBook', (7375, 'sunusroute')),
    ('0x10 hexa', (16, 'hexa')),
    ('007 oct', (7, 'oct')),                       # %d: decimal, not octal
    ('+6 plus', (6, 'plus')),
    ('5foo', (5, 'foo')),                          # sscanf needs no space between
    ('200 has#hash', (200, 'has#hash')),           # %s reads up to whitespace
    ('200 router2\r', (200, 'router2')),
    ('-5 negative', (-5, 'negative')),             # iproute2 skips it
    ('3000000000 big', (3000000000 - 2 ** 32, 'big')),  # read into an int: negative, skipped
    ('2147483647 maxint', (2147483647, 'maxint')),
])
def test_parse_line_reads_like_iproute2(line, expected):
    assert rt.parse_line(line) == expected


@pytest.mark.parametrize('line', ['', '   ', '# comment', '\t# 200 router2', '#200 x'])
def test_parse_line_skips_comments_and_blanks(line):
    assert rt.parse_line(line) is None


@pytest.mark.parametrize('line', ['router2 200', '200', 'x', '  200  '])
def test_parse_line_refuses_what_iproute2_calls_corrupted(line):
    with pytest.raises(ValueError):
        rt.parse_line(line)


def test_read_file_stops_at_the_corrupted_line_like_iproute2(tmp_path):
    path = write(tmp_path / 'a.conf', '1 one\n# c\njunk\n2 two\n')
    text, entries, corrupt = rt.read_file(path)
    assert entries == [(1, 1, 'one')]
    assert corrupt == (3, 'junk')


def test_read_file_skips_negative_ids_and_missing_files(tmp_path):
    path = write(tmp_path / 'a.conf', '-1 minus\n3000000000 big\n4 four')
    assert rt.read_file(path)[1] == [(3, 4, 'four')]
    assert rt.read_file(str(tmp_path / 'none.conf')) == (None, [], None)


# ---------------------------------------------------------------- sources and names

def test_source_files_follow_iproute2(etc, tmp_path):
    usr = tmp_path / 'usr' / 'iproute2'
    write(usr / 'rt_tables', '1 usr\n')
    write(usr / 'rt_tables.d' / 'vendor.conf', '2 vendor\n')
    write(usr / 'rt_tables.d' / 'same.conf', '3 shadowed\n')
    write(etc / 'rt_tables.d' / 'same.conf', '3 same\n')
    write(etc / 'rt_tables.d' / 'b.conf', '4 b\n')
    write(etc / 'rt_tables.d' / '.hidden.conf', '5 hidden\n')
    write(etc / 'rt_tables.d' / 'notes.txt', '6 txt\n')
    write(etc / 'rt_tables.d' / '.conf', '7 bare\n')
    # No /etc/iproute2/rt_tables: the /usr one is read instead.
    assert rt.source_files() == [str(usr / 'rt_tables'), str(usr / 'rt_tables.d' / 'vendor.conf'),
                                 str(etc / 'rt_tables.d' / 'b.conf'), str(etc / 'rt_tables.d' / 'same.conf')]
    write(etc / 'rt_tables', '255 local\n')
    assert rt.source_files()[0] == str(etc / 'rt_tables')
    assert str(usr / 'rt_tables') not in rt.source_files()


def test_table_names_resolve_like_iproute2(etc):
    write(etc / 'rt_tables', '255 local\n254 main\n300 dup\n')
    write(etc / 'rt_tables.d' / 'a.conf', '5 dup\n200 router2\n456 late\n')
    write(etc / 'rt_tables.d' / 'b.conf', '200 alias\n')
    names = rt.table_names()
    assert names['router2'] == 200 and names['alias'] == 200
    assert names['dup'] == 5          # bucket 5 is looked at before bucket 300 & 255 = 44
    assert names['main'] == 254 and names['default'] == 253
    assert rt.resolve_table('router2', names=names) == 200
    assert rt.resolve_table('0x10', names=names) == 16
    assert rt.table_label(200, {'router2': 200}) == 'router2'
    with pytest.raises(InputError, match="table: unknown routing table name 'nope'"):
        rt.resolve_table('nope', names=names)


# ---------------------------------------------------------------- input

@pytest.mark.parametrize('name', ['router2', 'sunusroute', 'SunusRules', 'isp_1', 'wan-1', 'T1', 'a.b', '0xg', '1e5'])
def test_check_name_accepts(name):
    assert rt.check_name(name, 'name') == name


@pytest.mark.parametrize('name, message', [
    ('', 'required'),
    ('100', 'reads as a number'),
    ('0x1f', 'reads as a number'),
    ('007', 'reads as a number'),
    ('my table', 'not a table name'),
    ('tab\tle', 'not a table name'),
    ('name\n', 'not a table name'),
    ('12\n', 'not a table name'),
    ('#x', 'not a table name'),
    ('a#b', 'not a table name'),
    ('-x', 'not a table name'),
    ('.x', 'not a table name'),
    ("it's", 'not a table name'),
    ('main', r'built into iproute2 \(table 254\)'),
    ('local', 'built into iproute2'),
    ('all', 'meaning of its own'),
    ('cache', 'meaning of its own'),
    ('x' * 256, 'longer than 255'),
])
def test_check_name_refuses(name, message):
    with pytest.raises(InputError, match=message) as info:
        rt.check_name(name, 'entries[2].name')
    assert info.value.field == 'entries[2].name'
    assert str(info.value).startswith('entries[2].name: ')


@pytest.mark.parametrize('number', [1, 2, 4, 200, 252, 256, 7375, 2147483647])
def test_check_id_accepts(number):
    assert rt.check_id(number, 'id') == number


@pytest.mark.parametrize('number, message', [
    (0, r'reserved \(unspec\)'), (253, r'reserved \(default\)'), (254, r'reserved \(main\)'),
    (255, r'reserved \(local\)'), (-1, 'out of range'), (2 ** 32, 'out of range'),
    (2147483648, 'cannot have a name'), (4294967295, 'cannot have a name'), (True, 'not a table id'),
])
def test_check_id_refuses(number, message):
    with pytest.raises(InputError, match=message):
        rt.check_id(number, 'id')


def test_desired_entries_single_and_list():
    assert rt.desired_entries(params(name='router2', id=200)) == [('name', 'id', {'id': 200, 'name': 'router2'})]
    found = rt.desired_entries(params(entries=[{'name': 'isp1', 'id': 1}, {'name': 'isp2', 'id': 2}]))
    assert [(f, item) for f, i, item in found] == [('entries[0].name', {'id': 1, 'name': 'isp1'}),
                                                   ('entries[1].name', {'id': 2, 'name': 'isp2'})]
    assert rt.desired_entries(params(name='x', state='absent')) == [('name', 'id', {'id': None, 'name': 'x'})]


@pytest.mark.parametrize('given, field, message', [
    (params(name='x'), 'id', 'required with state=present'),
    (params(entries=[{'name': 'a', 'id': 1}, {'name': 'a', 'id': 2}]), 'entries[1].name', r'given twice \(also entries\[0\]\)'),
    (params(entries=[{'name': 'a', 'id': 1}, {'name': 'b', 'id': 1}]), 'entries[1].id', 'table id 1 is given twice'),
    (params(entries=[{'name': 'a', 'id': 1}, {'name': 'a', 'id': 1}]), 'entries[1].name', 'given twice'),
    (params(entries=[{'name': 'a', 'id': 1}, {'name': 'b', 'id': 254}]), 'entries[1].id', 'reserved'),
    (params(entries=[{'name': 'a', 'id': 1}, {'name': '12', 'id': 3}]), 'entries[1].name', 'reads as a number'),
    (params(entries=[{'name': 'a', 'id': None}]), 'entries[0].id', 'required'),
])
def test_desired_entries_refuse(given, field, message):
    with pytest.raises(InputError, match=message) as info:
        rt.desired_entries(given)
    assert info.value.field == field


def test_check_path(etc):
    assert rt.check_path(str(etc / 'rt_tables.d' / 'netpolicy.conf')) == str(etc / 'rt_tables.d' / 'netpolicy.conf')
    assert rt.check_path(str(etc / 'rt_tables')) == str(etc / 'rt_tables')
    for bad in ('relative.conf', '/tmp/x.conf', str(etc / 'rt_tables.d' / 'x.txt'),
                str(etc / 'rt_tables.d' / '.x.conf'), str(etc / 'rt_tables.d' / '.conf'),
                str(etc / 'rt_tables.d' / 'a\x00.conf')):
        with pytest.raises(InputError) as info:
            rt.check_path(bad)
        assert info.value.field == 'path'


# ---------------------------------------------------------------- conflicts and plan

def snapshot_of(etc, own_text=None, rt_tables='255 local\n254 main\n253 default\n0 unspec\n200 router2\n'):
    write(etc / 'rt_tables', rt_tables)
    path = str(etc / 'rt_tables.d' / 'netpolicy.conf')
    if own_text is not None:
        write(etc / 'rt_tables.d' / 'netpolicy.conf', own_text)
    return rt.Snapshot(path)


def desired(**kwargs):
    return rt.desired_entries(params(**kwargs))


@pytest.mark.parametrize('given, field, message', [
    (dict(name='router2', id=201), 'name', r"'router2' is already 200 in .*/rt_tables:5$"),
    (dict(name='other', id=200), 'id', r"table id 200 is already named 'router2' in .*/rt_tables:5$"),
    (dict(name='mine', id=7), 'id', r"table id 7 is already named 'seven' in .*netpolicy.conf:2$"),
    (dict(name='router2', state='absent'), 'name', r"defined in .*/rt_tables:5 \(200 router2\), which this task does not own"),
    (dict(name='mine', id=9, state='absent'), 'id', r"'mine' is 8 in .*netpolicy.conf:3, not 9"),
])
def test_conflicts_name_the_file_and_line(etc, given, field, message):
    snapshot = snapshot_of(etc, '# mine\n7 seven\n8 mine\n')
    with pytest.raises(InputError, match=message) as info:
        rt.check_conflicts(desired(**given), given.get('state', 'present'), snapshot)
    assert info.value.field == field


def test_corrupted_own_file_is_refused(etc):
    snapshot = snapshot_of(etc, '1 one\nnot a line\n')
    with pytest.raises(InputError, match=r"path: .*netpolicy.conf:2: iproute2 stops reading"):
        rt.check_conflicts(desired(name='x', id=5), 'present', snapshot)


def test_plan_present(etc):
    snapshot = snapshot_of(etc, '# mine\n7 seven\n8 mine\n')
    kind = rt.RtTablesKind(snapshot.path)
    # Already resolving elsewhere with the same id: nothing to write.
    assert rt.plan_entries(kind, desired(name='router2', id=200), 'present', snapshot).ops == []
    assert rt.plan_entries(kind, desired(name='seven', id=7), 'present', snapshot).ops == []
    plan = rt.plan_entries(kind, desired(entries=[{'name': 'seven', 'id': 7}, {'name': 'mine', 'id': 9},
                                                  {'name': 'new', 'id': 10}]), 'present', snapshot)
    assert [(op.action, op.item) for op in plan.ops] == [(REPLACE, {'id': 9, 'name': 'mine'}),
                                                         (ADD, {'id': 10, 'name': 'new'})]
    assert plan.ops[0].old == {'id': 8, 'name': 'mine'}
    path = snapshot.path
    assert plan.commands == ["sed -i -E 's/^[0-9]+[[:space:]]+mine$/9 mine/' %s" % path,
                             "echo '10 new' >> %s" % path]


def test_plan_absent(etc):
    snapshot = snapshot_of(etc, '8 mine\n')
    kind = rt.RtTablesKind(snapshot.path)
    plan = rt.plan_entries(kind, desired(entries=[{'name': 'mine'}, {'name': 'gone'}], state='absent'),
                           'absent', snapshot)
    assert [(op.action, op.item) for op in plan.ops] == [(DELETE, {'id': 8, 'name': 'mine'})]
    assert plan.commands == ["sed -i -E '/^8[[:space:]]+mine$/d' %s" % snapshot.path]


def test_commands_quote_paths_and_escape_dots():
    kind = rt.RtTablesKind('/etc/iproute2/rt_tables.d/my tables.conf')
    assert kind.text(DELETE, {'id': 3, 'name': 'a.b'}) == \
        "sed -i -E '/^3[[:space:]]+a\\.b$/d' '/etc/iproute2/rt_tables.d/my tables.conf'"


# ---------------------------------------------------------------- rewrite

def op(action, name, number, old=None):
    item = {'id': number, 'name': name}
    return Op(action, item, '', old=old)


FOREIGN = '# written by hand\n\n  1   one   # keep my spacing\njunk that iproute2 dislikes\n'


@pytest.mark.parametrize('text, ops, expected', [
    (None, [op(ADD, 'a', 5)], '5 a\n'),
    ('', [op(ADD, 'a', 5), op(ADD, 'b', 6)], '5 a\n6 b\n'),
    ('# no newline', [op(ADD, 'a', 5)], '# no newline\n5 a\n'),
    (FOREIGN, [op(ADD, 'a', 5)], FOREIGN + '5 a\n'),
    ('5 a\n', [op(ADD, 'a', 5)], '5 a\n'),                        # already there (another run)
    ('# c\n5 a # note\n6 b\n', [op(DELETE, 'a', 5)], '# c\n6 b\n'),
    ('5 a\n# c\n5 a\n', [op(DELETE, 'a', 5)], '# c\n'),
    ('# c\n5 a\n6 b\n5 a\n', [op(REPLACE, 'a', 7)], '# c\n7 a\n6 b\n'),
    ('6 b\n', [op(REPLACE, 'a', 7)], '6 b\n7 a\n'),              # gone meanwhile: added
    (FOREIGN + '5 a\n', [op(DELETE, 'a', 5), op(ADD, 'c', 9)], FOREIGN + '9 c\n'),
])
def test_rewrite_keeps_what_it_does_not_own(text, ops, expected):
    assert rt.rewrite(text, ops) == expected


@pytest.mark.parametrize('text, ops', [
    ('5 other\n', [op(ADD, 'a', 5)]),
    ('6 a\n', [op(ADD, 'a', 5)]),
    ('5 other\n', [op(REPLACE, 'a', 5)]),
])
def test_rewrite_refuses_what_changed_under_the_plan(text, ops):
    with pytest.raises(rt.ConflictError):
        rt.rewrite(text, ops)


# ---------------------------------------------------------------- the whole change, on files

def test_change_apply_check_diff_absent(etc):
    write(etc / 'rt_tables', '255 local\n254 main\n')
    path = str(etc / 'rt_tables.d' / 'netpolicy.conf')
    write(etc / 'rt_tables.d' / 'netpolicy.conf', '# keep\n')
    args = params(entries=[{'name': 'isp1', 'id': 101}, {'name': 'isp2', 'id': 102}], path=path)

    check = rt.change(args, check_mode=True, diff=True)
    assert check['changed'] and (etc / 'rt_tables.d' / 'netpolicy.conf').read_text() == '# keep\n'
    assert check['diff']['after'] == '# keep\n101 isp1\n102 isp2\n'

    done = rt.change(args, diff=True)
    assert done['commands'] == check['commands'] and done['diff'] == check['diff']
    assert (etc / 'rt_tables.d' / 'netpolicy.conf').read_text() == '# keep\n101 isp1\n102 isp2\n'
    assert oct(os.stat(path).st_mode & 0o777) == '0o644'
    assert done['entries'] == [{'name': 'isp1', 'id': 101}, {'name': 'isp2', 'id': 102}]
    assert rt.table_names()['isp2'] == 102

    again = rt.change(args)
    assert not again['changed'] and again['commands'] == []

    gone = rt.change(params(name='isp1', state='absent', path=path), diff=True)
    assert gone['changed'] and gone['entries'] == []
    assert (etc / 'rt_tables.d' / 'netpolicy.conf').read_text() == '# keep\n102 isp2\n'


def test_change_creates_the_directory(etc):
    (etc / 'rt_tables.d').rmdir()
    path = str(etc / 'rt_tables.d' / 'netpolicy.conf')
    rt.change(params(name='router2', id=200, path=path))
    assert (etc / 'rt_tables.d' / 'netpolicy.conf').read_text() == '200 router2\n'


def test_change_that_does_not_verify_fails(etc, monkeypatch):
    path = str(etc / 'rt_tables.d' / 'netpolicy.conf')
    write(etc / 'rt_tables.d' / 'netpolicy.conf', '1 one\n')
    # A write that does not stick: the re-read still finds work to do.
    monkeypatch.setattr(rt, 'write_atomically', lambda target, text, mode: None)
    with pytest.raises(EngineError, match="did not keep the change: still to do after applying: echo '2 two'"):
        rt.change(params(name='two', id=2, path=path))
    assert (etc / 'rt_tables.d' / 'netpolicy.conf').read_text() == '1 one\n'


def test_change_refuses_a_missing_namespace(etc):
    with pytest.raises(InputError, match='netns: network namespace .* does not exist'):
        rt.change(params(name='two', id=2, path=str(etc / 'rt_tables'), netns='npr-no-such-ns'))

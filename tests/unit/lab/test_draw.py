"""The topology pictures in docs/img are those of tests/lab/topologies.py
(tests/lab/draw.py): a topology changed without redrawing fails here."""
import os

from tests.lab import draw, topologies


def test_committed_pictures_are_current():
    problems = draw.check()
    assert problems == [], 'redraw with: .venv/bin/python -m tests.lab.draw\n' + '\n'.join(problems)


def _commit(directory, name, topology, svg_digest=None):
    text, digest = draw.dot_text(topology)
    dot_path, svg_path = draw.paths(name, str(directory))
    with open(dot_path, 'w') as handle:
        handle.write(text)
    if svg_digest is not False:
        with open(svg_path, 'w') as handle:
            handle.write('<svg><!-- %s %s --></svg>' % (draw.DIGEST_TAG, svg_digest or digest))


def test_check_finds_a_stale_dot_and_svg(tmp_path):
    wanted = {'two_isp': topologies.two_isp}
    _commit(tmp_path, 'two_isp', topologies.two_isp())
    assert draw.check(str(tmp_path), wanted) == []

    changed = topologies.two_isp()
    changed['nodes']['client1']['addresses']['eth0'] = ['192.168.1.12/24']
    _commit(tmp_path, 'two_isp', changed)
    assert draw.check(str(tmp_path), wanted) == [
        '%s: missing or not the drawing of topology two_isp' % os.path.join(str(tmp_path), 'two_isp.dot')]

    _commit(tmp_path, 'two_isp', topologies.two_isp(), svg_digest='0' * 64)
    assert draw.check(str(tmp_path), wanted) == [
        '%s: not rendered from the current two_isp.dot' % os.path.join(str(tmp_path), 'two_isp.svg')]

    os.remove(os.path.join(str(tmp_path), 'two_isp.svg'))
    assert draw.check(str(tmp_path), wanted) == [
        '%s: missing' % os.path.join(str(tmp_path), 'two_isp.svg')]


def test_drawing_is_deterministic():
    topology = topologies.two_routers()
    reordered = dict(topology, nodes=dict(reversed(list(topology['nodes'].items()))),
                     links=list(reversed(topology['links'])))
    assert draw.dot_text(topology) == draw.dot_text(reordered)


def test_drawing_shows_interfaces_addresses_and_links():
    text, _digest = draw.dot_text(topologies.two_routers())
    assert '<B>lan0</B><BR/>52:54:00:00:02:01<BR/>192.168.1.2/24' in text
    assert '<B>p2 (port of br0)</B>' in text
    assert '"lan":"p2":e -- "router2":"lan0":w;' in text
    assert '"router2":"wan2":e -- "isp2":"cust0":w;' in text

"""Pictures of the lab's topologies for the docs, drawn from the same data the tests build:

    python -m tests.lab.draw            # write docs/img/<topology>.dot and render .svg with Graphviz
    python -m tests.lab.draw --check    # exit 1 if a committed picture is not that of the topology

Each namespace is a box listing its interfaces (name, MAC address if the
topology fixes one, addresses; bridges and bridge ports marked) and the TCP
ports its recording server listens on; each veth pair is an edge between the
two interface rows it joins, which reads better than labels on the edges.

`--check` needs no Graphviz: it compares the committed .dot files with the
text drawn now, and asks each .svg to carry the digest of its .dot (the SVG
itself varies with the Graphviz version, so it is not compared).
"""
import argparse
import hashlib
import os
import subprocess
import sys

from tests.lab.lab import interfaces
from tests.lab.topologies import TOPOLOGIES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMG = os.path.join(REPO, 'docs', 'img')
SERVER_NODE = 'server'
DIGEST_TAG = 'netpolicy_lab_dot_sha256:'  # no '-': Graphviz escapes it in SVG comments


def _quote(text):
    return '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"')


def _html(text):
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def _bridge_ports(topology):
    """{(node, interface): bridge} for the link ends that are bridge ports."""
    return {tuple(link['a'].split(':', 1)): link['bridge']
            for link in topology.get('links', ()) if link.get('bridge')}


def _node_label(topology, node, ifnames, bridge_ports):
    """An HTML-like table: the namespace's name, then one row per interface
    (name, MAC if fixed, addresses), each row a port the links attach to."""
    spec = topology['nodes'][node]
    rows = ['<TR><TD BGCOLOR="lightgrey"><B>%s</B></TD></TR>' % _html(node)]
    for ifname in sorted(ifnames):
        if ifname in spec.get('bridges', ()):
            title = '%s (bridge)' % ifname
        elif (node, ifname) in bridge_ports:
            title = '%s (port of %s)' % (ifname, bridge_ports[node, ifname])
        else:
            title = ifname
        lines = ['<B>%s</B>' % _html(title)]
        if ifname in spec.get('macs', {}):
            lines.append(_html(spec['macs'][ifname]))
        lines += [_html(cidr) for cidr in spec.get('addresses', {}).get(ifname, ())]
        rows.append('<TR><TD PORT="%s">%s</TD></TR>' % (_html(ifname), '<BR/>'.join(lines)))
    if spec.get('listen'):
        rows.append('<TR><TD>listens: tcp %s</TD></TR>'
                    % ', '.join(str(port) for port in sorted(spec['listen'])))
    return '<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3">%s</TABLE>>' % ''.join(rows)


def _oriented_links(topology, far_end=SERVER_NODE):
    """The links as sorted (tail, head) ends, the tail farther from ``far_end``
    (the internet server), so that left to right reads LAN, router, ISPs,
    internet."""
    neighbours = {node: set() for node in topology['nodes']}
    for link in topology.get('links', ()):
        node_a, node_b = link['a'].split(':', 1)[0], link['b'].split(':', 1)[0]
        neighbours[node_a].add(node_b)
        neighbours[node_b].add(node_a)
    distance = {far_end: 0} if far_end in neighbours else {}
    queue = list(distance)
    while queue:
        node = queue.pop(0)
        for other in sorted(neighbours[node]):
            if other not in distance:
                distance[other] = distance[node] + 1
                queue.append(other)
    ends = []
    for link in topology.get('links', ()):
        end_a, end_b = link['a'], link['b']
        key_a, key_b = (distance.get(end.split(':', 1)[0], -1) for end in (end_a, end_b))
        # ties (or no server): by name, so the order of the topology's lists does not matter
        ends.append((end_a, end_b) if (key_a, end_b) >= (key_b, end_a) else (end_b, end_a))
    return sorted(ends)


def dot_text(topology):
    """The Graphviz source of ``topology`` and its digest: sorted, no
    timestamps, so the same topology always gives the same text."""
    name = topology['name']
    ifnames = interfaces(topology)
    bridge_ports = _bridge_ports(topology)
    body = ['graph %s {' % _quote(name),
            '    graph [rankdir=LR, fontname="Helvetica", nodesep=0.3, ranksep=1.0];',
            '    node [shape=plaintext, fontname="Helvetica", fontsize=10];',
            '    edge [penwidth=1.5];']
    for node in sorted(topology['nodes']):
        body.append('    %s [label=%s];' % (_quote(node), _node_label(topology, node, ifnames[node], bridge_ports)))
    for end_a, end_b in _oriented_links(topology):
        (node_a, if_a), (node_b, if_b) = end_a.split(':', 1), end_b.split(':', 1)
        # leave by the east side of the tail's row, arrive on the west side of the head's
        body.append('    %s:%s:e -- %s:%s:w;' % (_quote(node_a), _quote(if_a), _quote(node_b), _quote(if_b)))
    body.append('}')
    text = '\n'.join(body) + '\n'
    # The digest of the drawing goes into the SVG as a comment (Graphviz writes
    # a graph's `comment` there), so --check can tell a stale SVG without
    # comparing SVG bytes that differ between Graphviz versions.
    digest = hashlib.sha256(text.encode()).hexdigest()
    comment = '    graph [comment=%s];' % _quote(' %s %s ' % (DIGEST_TAG, digest))
    return text.replace('\n', '\n' + comment + '\n', 1), digest


def paths(name, directory=IMG):
    return os.path.join(directory, name + '.dot'), os.path.join(directory, name + '.svg')


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def check(directory=IMG, topologies=None):
    """The problems with the committed pictures, as sentences; [] when all are current."""
    problems = []
    for name, make in sorted((topologies or TOPOLOGIES).items()):
        text, digest = dot_text(make())
        dot_path, svg_path = paths(name, directory)
        svg = _read(svg_path)
        if _read(dot_path) != text:
            problems.append('%s: missing or not the drawing of topology %s' % (dot_path, name))
        elif svg is None:
            problems.append('%s: missing' % svg_path)
        elif '%s %s' % (DIGEST_TAG, digest) not in svg:
            problems.append('%s: not rendered from the current %s' % (svg_path, os.path.basename(dot_path)))
    return problems


def write(directory=IMG, topologies=None):
    """Write every topology's .dot and render its .svg with Graphviz `dot`."""
    os.makedirs(directory, exist_ok=True)
    for name, make in sorted((topologies or TOPOLOGIES).items()):
        text, _digest = dot_text(make())
        dot_path, svg_path = paths(name, directory)
        with open(dot_path, 'w') as handle:
            handle.write(text)
        subprocess.run(['dot', '-Tsvg', '-o', svg_path, dot_path], check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tests.lab.draw', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--check', action='store_true',
                        help='fail if a committed .dot or .svg is not that of the current topologies')
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            sys.stderr.write(problem + '\n')
        if problems:
            sys.stderr.write('redraw with: .venv/bin/python -m tests.lab.draw\n')
        return 1 if problems else 0
    write()
    return 0


if __name__ == '__main__':
    sys.exit(main())

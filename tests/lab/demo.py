"""`make demo`: build the namespace lab, apply each recipe, show which uplink each flow took.

    python -m tests.lab.demo [SCENE ...]

Each scene builds a fresh lab, applies one recipe (or nothing, for the
baseline), opens a few new TCP connections per flow and prints, per flow, the
uplink the connections left by and the source address the far server saw.
A recipe joins the demo by adding a Scene to SCENES; its ``apply`` is
usually ``tests.lab.playbook.playbook('playbooks/....yml')``.
"""
import collections
import sys
import time

from tests.lab import Lab, topologies
from tests.lab.playbook import playbook

Flow = collections.namedtuple('Flow', 'node host port')


class Scene(collections.namedtuple('Scene', 'name summary topology apply flows')):
    """name and summary: what is shown; topology: a function of tests.lab.topologies;
    apply: a function of the built lab that applies the recipe (None: nothing);
    flows: the connections to try."""


SERVER = topologies.SERVER
TWO_ISP_FLOWS = [
    Flow('client1', SERVER, 80),
    Flow('client1', SERVER, 443),
    Flow('client2', SERVER, 80),
    Flow('client2', SERVER, 5001),
    Flow('lan2host', SERVER, 8080),
    Flow('client1', topologies.SERVER6, 80),
    Flow('router', SERVER, 80),
]

SCENES = [
    Scene('baseline (no recipe)',
          'the lab as built: main default route via isp1, masquerade out wan1',
          topologies.two_isp, None, TWO_ISP_FLOWS),
    # source_routing (seeds 001 and 003): the pinned host and the web service
    Scene('source_routing',
          'client1 pinned to isp2 with its SNAT address (seed 001); tcp 80/443 of 192.168.1.0/24 by isp3 (seed 003)',
          topologies.three_isp,
          playbook('playbooks/seed001_source_host.yml', extra_vars={'source_routing_policies': [
              {'name': 'macbook', 'from': ['192.168.1.10'], 'interface': 'wan2',
               'gateway': '192.0.2.1', 'snat': '192.0.2.2'},
              {'name': 'dsl', 'from': ['192.168.1.0/24'], 'protocol': 'tcp', 'dports': [80, 443],
               'interface': 'wan3', 'gateway': '100.65.3.1', 'snat': 'masquerade'}]}),
          [Flow('client1', SERVER, 80), Flow('client1', SERVER, 5001), Flow('client2', SERVER, 80),
           Flow('client2', SERVER, 443), Flow('client2', SERVER, 5001), Flow('lan2host', SERVER, 80),
           Flow('client1', '192.168.2.10', 80)]),
    # reply_via_same_router (seed 004): without it, the connections through router2 fail
    Scene('reply_via_same_router',
          'backend behind router1 (its gateway) and router2, both forwarding tcp 80, 5001 to it: '
          'each answered through itself (seed 004)',
          topologies.two_routers,
          playbook('playbooks/seed004_reply_via_same_router.yml',
                   extra_vars={'reply_via_same_router_install_dependencies': False}),
          [Flow('server', '198.51.100.2', 80), Flow('server', '192.0.2.2', 80),
           Flow('server', '192.0.2.2', 5001), Flow('backend', SERVER, 80)]),
    # split_access (seeds 002, 003): each new connection by the next uplink, forwards on all three
    Scene('split_access',
          'three uplinks of weight 1 (isp3 masqueraded): new LAN connections take turns; port 5001 of '
          'lanserver forwarded on every uplink address, answered by the uplink it came in on (seed 002)',
          topologies.three_isp,
          playbook('playbooks/seed002_split_access.yml', extra_vars={
              'split_access_uplinks': [
                  {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'address': '198.51.100.2'},
                  {'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'address': '192.0.2.2'},
                  {'name': 'isp3', 'interface': 'wan3', 'gateway': '100.65.3.1'}]}),
          [Flow('client1', SERVER, 80), Flow('client2', SERVER, 443), Flow('lan2host', SERVER, 8080),
           Flow('router', SERVER, 80), Flow('server', '198.51.100.2', 5001),
           Flow('server', '192.0.2.2', 5001), Flow('server', '100.65.3.2', 5001)]),
]

CONNECTIONS = 3
TIMEOUT = 1.0


def describe(lab, seen):
    """('isp1', '198.51.100.2') for 3 connections alike; mixed results are counted."""
    outcomes = collections.Counter((lab.uplink_of(addr) or '-', addr or 'failed') for addr in seen)
    if len(outcomes) == 1:
        return next(iter(outcomes))
    parts = sorted(outcomes.items())
    return (', '.join('%s x%d' % (uplink, n) for (uplink, addr), n in parts),
            ', '.join('%s x%d' % (addr, n) for (uplink, addr), n in parts))


def run_scene(scene, out):
    out.write('\n== %s\n   %s\n\n' % (scene.name, scene.summary))
    started = time.monotonic()
    with Lab(scene.topology()) as lab:
        if scene.apply:
            scene.apply(lab)
        rows = []
        for flow in scene.flows:
            seen = lab.connect(flow.node, flow.host, flow.port, count=CONNECTIONS, timeout=TIMEOUT)
            uplink, source = describe(lab, seen)
            host = '[%s]' % flow.host if ':' in flow.host else flow.host
            rows.append(('%s -> %s:%d' % (flow.node, host, flow.port), uplink, source))
    header = ('flow (%d new connections each)' % CONNECTIONS, 'uplink', 'source address the server saw')
    widths = [max(len(row[col]) for row in rows + [header]) for col in range(3)]
    for row in [header, tuple('-' * width for width in widths)] + rows:
        out.write('   ' + '  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + '\n')
    out.write('\n   (%.1f s)\n' % (time.monotonic() - started))


def main(argv=None):
    wanted = list(argv if argv is not None else sys.argv[1:])
    scenes = [scene for scene in SCENES if not wanted or scene.name.split()[0] in wanted]
    if not scenes:
        sys.stderr.write('no such scene: %s (have: %s)\n'
                         % (' '.join(wanted), ', '.join(s.name.split()[0] for s in SCENES)))
        return 2
    sys.stdout.write('netpolicy.routing demo: each scene builds its own lab of network\n'
                     'namespaces (two_isp, three_isp or two_routers): ISPs that drop packets\n'
                     'whose source is not theirs, and servers that record the source address\n'
                     'of every connection.\n')
    try:
        for scene in scenes:
            run_scene(scene, sys.stdout)
            sys.stdout.flush()
    except KeyboardInterrupt:  # the lab is already gone: Lab's with-block removed it
        sys.stderr.write('\ninterrupted; the lab has been removed\n')
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""Bench: the share of new connections per uplink that split_access gives, against the weights.

One three_isp lab (named with the test lab's prefix, removed at the end even on
failure) after the split_access Molecule scenario's playbook
(roles/split_access/molecule/default/converge.yml: per_connection balancing,
weights 1:2:1). client1 and client2 each open --connections / 2 new TCP
connections to the internet server, one after another; the server tells the
source address it saw, which names the uplink. Prints the count and share per
uplink beside the share its weight asks for, and draws
docs/img/split-access-share.png.

    cd /work/main && .venv/bin/python bench/split_access_share.py [--connections 400]

Run as root on Linux. Not a test (the Molecule scenario checks the split).
"""
import argparse
import collections
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.lab import Lab, topologies  # noqa: E402
from tests.lab.playbook import run_playbook  # noqa: E402

SERVER = topologies.SERVER
PLAYBOOK = os.path.join(REPO, 'roles', 'split_access', 'molecule', 'default', 'converge.yml')
PLOT = os.path.join(REPO, 'docs', 'img', 'split-access-share.png')


def weights():
    """{uplink: weight} of the playbook's split_access_uplinks, in list order."""
    with open(PLAYBOOK) as handle:
        play = yaml.safe_load(handle)[0]
    return {uplink['name']: int(uplink.get('weight') or 1) for uplink in play['vars']['split_access_uplinks']}


def draw(counts, wanted, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    names = list(wanted)
    total = sum(counts.values())
    total_weight = sum(wanted.values())
    places = range(len(names))
    figure, axis = pyplot.subplots(figsize=(6, 3.4))
    measured = [100.0 * counts.get(name, 0) / total for name in names]
    axis.bar([place - 0.2 for place in places], measured, width=0.4, label='measured (%d connections)' % total,
             color='tab:blue')
    axis.bar([place + 0.2 for place in places], [100.0 * wanted[name] / total_weight for name in names], width=0.4,
             label='weight / sum of weights', color='0.7')
    for place, share, name in zip(places, measured, names):
        axis.text(place - 0.2, share + 1, '%d' % counts.get(name, 0), ha='center', fontsize=8)
    axis.set_xticks(list(places))
    axis.set_xticklabels(['%s (weight %d)' % (name, wanted[name]) for name in names])
    axis.set_ylabel('% of new connections')
    axis.set_ylim(0, max(measured + [50.0]) + 12)
    axis.set_title('split_access per_connection, weights %s' % ':'.join(str(wanted[name]) for name in names),
                   fontsize=9)
    axis.legend(fontsize=8, loc='upper right')
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--connections', type=int, default=400)
    parser.add_argument('--plot', default=PLOT, help='where to draw the bar chart (empty: no plot)')
    args = parser.parse_args(argv)
    os.environ.setdefault('ANSIBLE_PIPELINING', '1')
    wanted = weights()
    counts = collections.Counter()
    with Lab(topologies.three_isp()) as lab:
        run_playbook(lab, PLAYBOOK, nodes=['router'])
        for client in ('client1', 'client2'):
            for seen in lab.connect(client, SERVER, 80, count=args.connections // 2, timeout=2.0):
                counts[lab.uplink_of(seen) or 'failed'] += 1
    total = sum(counts.values())
    total_weight = sum(wanted.values())
    print('split_access per_connection in the three_isp lab: %d new connections from client1 and client2' % total)
    print('  %-8s %6s %9s %9s' % ('uplink', 'count', 'share', 'weight'))
    for name in list(wanted) + (['failed'] if counts.get('failed') else []):
        print('  %-8s %6d %8.1f%% %8.1f%%' % (name, counts.get(name, 0), 100.0 * counts.get(name, 0) / total,
                                             100.0 * wanted.get(name, 0) / total_weight))
    if args.plot:
        draw(counts, wanted, args.plot)
        print('drew %s' % args.plot)
    return 1 if counts.get('failed') else 0


if __name__ == '__main__':
    sys.exit(main())

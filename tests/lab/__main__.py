"""The lab from the shell (Molecule's create/destroy, a look around by hand):

    python -m tests.lab up two_isp --prefix P    # build, leave running, print JSON
    python -m tests.lab status [TOPOLOGY] --prefix P
    python -m tests.lab down [TOPOLOGY] --prefix P

`up` prints {"prefix", "topology", "names": {node: namespace}, "etc": {node: dir},
"inventory": an Ansible inventory of the nodes through the netns connection}.
`down` removes every namespace, process and file with that prefix.
"""
import argparse
import json
import os
import sys

from tests.lab import lab as _lab
from tests.lab.topologies import TOPOLOGIES


def _state(prefix):
    path = os.path.join(_lab.STATE_ROOT, prefix, 'lab.json')
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m tests.lab', description='The namespace lab.')
    parser.add_argument('action', choices=['up', 'down', 'status'])
    parser.add_argument('topology', nargs='?', choices=sorted(TOPOLOGIES))
    parser.add_argument('--prefix', required=True,
                        help='name prefix of the lab: its namespaces are PREFIX-NODE')
    args = parser.parse_args(argv)
    if '/' in args.prefix or not args.prefix.strip():
        parser.error('--prefix: not a usable name prefix: %r' % args.prefix)

    if args.action == 'up':
        if not args.topology:
            parser.error('up needs a TOPOLOGY')
        if _lab.namespaces(args.prefix) or _state(args.prefix):
            parser.error('a lab with prefix %s exists; `down` it first' % args.prefix)
        lab = _lab.Lab(TOPOLOGIES[args.topology](), prefix=args.prefix).up()
        lab.detach()
        print(json.dumps({'prefix': lab.prefix, 'topology': args.topology, 'names': lab.names(),
                          'etc': {node: lab.etc(node) for node in lab.nodes},
                          'inventory': lab.inventory()}, indent=2))
    elif args.action == 'down':
        _lab.teardown(args.prefix)
    else:
        state = _state(args.prefix)
        running = _lab.namespaces(args.prefix)
        print(json.dumps({'prefix': args.prefix, 'namespaces': running,
                          'names': state['names'] if state else {},
                          'topology': state['topology'].get('name') if state else None}, indent=2))
        return 0 if running else 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Traffic through the lab of this scenario; prints JSON for verify.yml.

    python roles/split_access/molecule/default/measure.py PREFIX   (from the repository root)

- split: 400 new connections from the LAN clients to the internet server, the
  number that left by each uplink (and failed);
- forwards: per uplink address, the answer of the forwarded port 5001 (the
  LAN server answers with the source it saw) or null;
- router: the uplinks 30 of the router's own connections left by.
"""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..'))

from tests.lab import lab as _lab  # noqa: E402
from tests.lab.topologies import SERVER  # noqa: E402


def main(prefix):
    with open(os.path.join(_lab.STATE_ROOT, prefix, 'lab.json')) as handle:
        lab = _lab.Lab(json.load(handle)['topology'], prefix=prefix)
    split = collections.Counter()
    for client in ('client1', 'client2'):
        for seen in lab.connect(client, SERVER, 80, count=200, timeout=2.0):
            split[lab.uplink_of(seen) or 'failed'] += 1
    forwards = {}
    for uplink, address in (('isp1', '198.51.100.2'), ('isp2', '192.0.2.2'), ('isp3', '100.65.3.2')):
        forwards[uplink] = lab.connect('server', address, 5001, count=1, timeout=2.0)[0]
    router = collections.Counter(lab.uplink_of(seen) or 'failed'
                                 for seen in lab.connect('router', SERVER, 80, count=30, timeout=2.0))
    json.dump({'split': split, 'forwards': forwards, 'router': router}, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))

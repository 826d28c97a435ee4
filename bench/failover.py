#!/usr/bin/env python3
"""Bench: how fast the health monitor of split_access takes a dead uplink out and back in.

One three_isp lab (named with the test lab's prefix, removed at the end even on
failure), split_access over the three uplinks with the monitor
(tests/integration/files/monitor_three_isp.yml), `netpolicy-routing watch`
running in the router. Repeated: while client2 opens a new connection to the
server every 50 ms (each in its own thread, 1 s timeout), isp2 dies upstream (an
nftables table in isp2 drops everything it would forward; its link to the
router stays up), and later comes back. Per repetition:

  detection  outage -> start of the last new connection that failed
             (after it, new connections stop failing)
  recovery   outage ends -> start of the first new connection that left by isp2

with two monitor settings, changed in the saved state split_access.json (the
`watch` restarted):

  ours   the defaults: interval 0.5 s, down 3, up 3            (--reps, default 10)
  mwan3  mwan3's defaults: interval 10 s, down 5, up 5          (--mwan3-reps, default 3:
         about 2 minutes a repetition)

then the probe CPU cost: the `watch` process's CPU time (utime + stime of
/proc/PID/stat) over --cpu-seconds of idle with the monitor probing the three
uplinks every 0.5 s, 4 targets each (12 probes a round: more than 4 uplinks with
one target each), and with the monitor off, as % of one core (--cpu-seconds, 60).

Prints min/median/max, and draws docs/img/failover-timeline.png: every new
connection of the first repetition of each setting, by the uplink it left by
(or failed), against the time since the outage, with the moments `watch` logged
isp2 out and back in.

    cd /work/main && .venv/bin/python bench/failover.py [--reps 10] [--mwan3-reps 3]

Run as root on Linux. Not a test: the numbers depend on the machine and its load.
"""
import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.helpers.agent import NewConnections, Watch  # noqa: E402
from tests.lab import Lab, topologies  # noqa: E402
from tests.lab.playbook import run_playbook  # noqa: E402

SERVER = topologies.SERVER
PLAYBOOK = os.path.join(REPO, 'tests', 'integration', 'files', 'monitor_three_isp.yml')
TIMELINE = os.path.join(REPO, 'docs', 'img', 'failover-timeline.png')
OUTAGE = 'table inet outage { chain forward { type filter hook forward priority 0; policy drop; }; }'
SETTINGS = {
    'ours': {'interval': 0.5, 'down': 3, 'up': 3},
    'mwan3': {'interval': 10.0, 'down': 5, 'up': 5},
}
# Targets that answer through each uplink: the server, the internet core's two
# sides, the ISP's gateway. For the CPU measurement only.
CPU_TARGETS = {
    'isp1': ['203.0.113.10', '203.0.113.1', '100.64.1.2', '198.51.100.1'],
    'isp2': ['203.0.113.10', '203.0.113.1', '100.64.2.2', '192.0.2.1'],
    'isp3': ['203.0.113.10', '203.0.113.1', '100.64.3.2', '100.65.3.1'],
}


class TimedWatch(Watch):
    """Watch, with the monotonic time each line arrived."""

    def __init__(self, lab):
        self.timed = []
        super().__init__(lab)

    def _read(self):
        for line in self.proc.stdout:
            self.timed.append((time.monotonic(), line.rstrip('\n')))
            self.lines.append(line.rstrip('\n'))

    def first(self, text, after):
        """Time of the first line starting with ``text`` that came after ``after``, or None."""
        for when, line in list(self.timed):
            if when >= after and line.startswith(text):
                return when
        return None


def wait(condition, limit, what):
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError('%s: not within %.0f s' % (what, limit))
        time.sleep(0.02)


def state_path(lab):
    return os.path.join(lab.etc('router'), 'netpolicy', 'routing', 'split_access.json')


def set_monitor(lab, **settings):
    """Rewrite the monitor section of the saved split_access state (as the role would write it)."""
    path = state_path(lab)
    with open(path) as handle:
        state = json.load(handle)
    state['monitor'].update(settings)
    with open(path, 'w') as handle:
        json.dump(state, handle, indent=2, sort_keys=True)


def start_watch(lab, settings):
    watch = TimedWatch(lab)
    wait(lambda: watch.saw('^monitor: probing isp1, isp2, isp3 every %ss' % settings['interval']), 30,
         'the monitor did not start')
    return watch


def repetition(lab, watch, settings):
    """One outage of isp2 and its end: (detection, recovery, timeline, log times)."""
    interval, down, up = settings['interval'], settings['down'], settings['up']
    limit = (down + up) * interval * 2 + 60
    clients = NewConnections(lab, 'client2', limit)
    try:
        time.sleep(1.5)
        died = time.monotonic()
        lab.nft('isp2', OUTAGE)
        wait(lambda: watch.first('isp2: out', died), down * interval * 2 + 10, 'isp2 was not taken out')
        time.sleep(2.5)  # the last connections given to isp2 time out (1 s)
        back = time.monotonic()
        lab.run('isp2', 'nft', 'delete', 'table', 'inet', 'outage')
        wait(lambda: watch.first('isp2: back in', back), up * interval * 2 + 10, 'isp2 did not come back')
        time.sleep(2.0)
    finally:
        results = clients.stop()
    failed = [start - died for start, uplink in results if uplink is None and start >= died]
    if [start for start, uplink in results if uplink is None and start >= back]:
        raise RuntimeError('a new connection failed after isp2 was back: %r' % results)
    detection = max(failed) if failed else 0.0
    recovery = min(start - back for start, uplink in results if uplink == 'isp2' and start >= back)
    logged = (watch.first('isp2: out', died) - died, watch.first('isp2: back in', back) - back)
    timeline = {'outage_end': back - died, 'taken_out': logged[0], 'back_in': back - died + logged[1],
                'connections': [(round(start - died, 3), uplink) for start, uplink in results]}
    return detection, recovery, timeline, logged


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    # utime and stime are fields 14 and 15 of stat; fields[0] here is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def cpu_share(lab, settings, seconds):
    """% of one core the watch process used over ``seconds`` idle, with ``settings``."""
    set_monitor(lab, **settings)
    watch = TimedWatch(lab)
    try:
        wait(lambda: watch.saw('^monitor: ' if settings.get('enabled') else '^watching '), 30, 'watch did not start')
        time.sleep(3)  # past the first apply
        with open('/proc/%d/cmdline' % watch.proc.pid) as handle:
            if 'watch' not in handle.read():
                raise RuntimeError('pid %d is not the watch process' % watch.proc.pid)
        before, start = cpu_seconds(watch.proc.pid), time.monotonic()
        time.sleep(seconds)
        used, elapsed = cpu_seconds(watch.proc.pid) - before, time.monotonic() - start
        return 100.0 * used / elapsed, used, elapsed
    finally:
        watch.stop()


def draw(timelines, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    rows = ['isp1', 'isp2', 'isp3', None]
    colors = {'isp1': 'tab:blue', 'isp2': 'tab:orange', 'isp3': 'tab:green', None: 'tab:red'}
    titles = {'ours': 'netpolicy.routing defaults: probe every 0.5 s, out after 3 lost, back after 3 good',
              'mwan3': "mwan3's defaults (same monitor): probe every 10 s, out after 5 lost, back after 5 good"}
    names = [name for name in ('ours', 'mwan3') if name in timelines]
    figure, axes = pyplot.subplots(len(names), 1, figsize=(10, 2.6 * len(names)), squeeze=False)
    for axis, name in zip(axes[:, 0], names):
        timeline = timelines[name]
        for row, uplink in enumerate(rows):
            starts = [start for start, seen in timeline['connections'] if seen == uplink]
            axis.eventplot(starts, lineoffsets=len(rows) - 1 - row, linelengths=0.7, linewidths=0.8,
                           colors=colors[uplink])
        axis.set_yticks(range(len(rows)))
        axis.set_yticklabels(['failed' if uplink is None else 'by ' + uplink for uplink in reversed(rows)])
        axis.axvspan(0, timeline['outage_end'], color='0.85', zorder=0)
        axis.axvline(0, color='black', linewidth=1)
        axis.axvline(timeline['outage_end'], color='black', linewidth=1, linestyle='--')
        axis.text(0, len(rows) - 0.35, ' isp2 dies upstream', fontsize=8, va='bottom')
        axis.text(timeline['outage_end'], len(rows) - 0.35, ' isp2 recovers', fontsize=8, va='bottom')
        for when, text in ((timeline['taken_out'], ' log: isp2: out'), (timeline['back_in'], ' log: isp2: back in')):
            axis.axvline(when, color='tab:purple', linewidth=1, linestyle=':')
            axis.text(when, -0.55, text, fontsize=7, color='tab:purple', va='bottom')
        axis.set_ylim(-0.6, len(rows) + 0.2)
        axis.set_xlim(min(start for start, seen in timeline['connections']),
                      max(start for start, seen in timeline['connections']))
        axis.set_title(titles[name], fontsize=9)
        axis.set_xlabel('seconds since isp2 died (each tick: one new connection, one every 50 ms)', fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def summary(values):
    return '%6.2f %6.2f %6.2f' % (min(values), statistics.median(values), max(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--reps', type=int, default=10, help='repetitions with our defaults')
    parser.add_argument('--mwan3-reps', type=int, default=3,
                        help="repetitions with mwan3's defaults (about 2 minutes each; default 3)")
    parser.add_argument('--cpu-seconds', type=float, default=60.0)
    parser.add_argument('--plot', default=TIMELINE, help='where to draw the timeline (empty: no plot)')
    args = parser.parse_args(argv)
    os.environ.setdefault('ANSIBLE_PIPELINING', '1')
    results, timelines, logs = {}, {}, {}
    started = time.monotonic()
    with Lab(topologies.three_isp()) as lab:
        run_playbook(lab, PLAYBOOK, nodes=['router'])
        for name, reps in (('ours', args.reps), ('mwan3', args.mwan3_reps)):
            if not reps:
                continue
            settings = SETTINGS[name]
            set_monitor(lab, **settings)
            watch = start_watch(lab, settings)
            try:
                time.sleep(max(2.0, 2 * settings['interval']))  # a few good rounds
                for rep in range(reps):
                    detection, recovery, timeline, logged = repetition(lab, watch, settings)
                    results.setdefault(name, []).append((detection, recovery) + logged)
                    timelines.setdefault(name, timeline)
                    print('%-5s rep %2d: detection %6.2f s, recovery %6.2f s (log: out at %.2f s, back in at %.2f s)'
                          % ((name, rep + 1, detection, recovery) + logged), flush=True)
                    time.sleep(2.0)
                logs[name] = list(watch.lines)
                if name == 'ours':  # with the monitor's figures: while watch runs
                    status = lab.run('router', lab.agent_command('router'), 'status', check=False).stdout
            finally:
                watch.stop()
        cpu = {
            'monitor on': cpu_share(lab, {'enabled': True, 'interval': 0.5, 'down': 3, 'up': 3,
                                          'targets': CPU_TARGETS}, args.cpu_seconds),
            'monitor off': cpu_share(lab, {'enabled': False}, args.cpu_seconds),
        }
    print()
    print('failover in the three_isp lab: isp2 dies upstream, then recovers; new connections every 50 ms')
    print('  %-44s %4s %20s %20s' % ('', 'reps', 'detection min/med/max', 'recovery min/med/max'))
    for name, label in (('ours', 'ours: interval 0.5 s, down 3, up 3'),
                        ('mwan3', "mwan3's defaults: interval 10 s, down 5, up 5")):
        if name in results:
            rows = results[name]
            print('  %-44s %4d  %s s  %s s' % (label, len(rows), summary([row[0] for row in rows]),
                                                summary([row[1] for row in rows])))
            print('  %-44s       %s s  %s s' % ('  (as logged: "isp2: out" / "back in")',
                                               summary([row[2] for row in rows]), summary([row[3] for row in rows])))
    print('probe CPU cost of the watch process (3 uplinks x 4 targets every 0.5 s, idle):')
    for name, (share, used, elapsed) in cpu.items():
        print('  %-12s %.3f %% of one core (%.2f s CPU in %.1f s)' % (name, share, used, elapsed))
    print('raw: %s' % json.dumps({name: [[round(value, 3) for value in row] for row in rows]
                                  for name, rows in results.items()}))
    print('took %.0f s; load average at the end: %s' % (time.monotonic() - started, open('/proc/loadavg').read().strip()))
    if 'ours' in results:
        print('\nnetpolicy-routing status (after the runs with our defaults):\n' + status)
        first = logs['ours'][:[line.startswith('isp2: back in') for line in logs['ours']].index(True) + 1]
        print('watch log (our defaults), up to the end of the first repetition:\n' + '\n'.join(first))
    if args.plot and timelines:
        draw(timelines, args.plot)
        print('drew %s' % args.plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())

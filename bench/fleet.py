#!/usr/bin/env python3
"""Bench: the three roles on a fleet of 40 routers, against a one-task play on the same fleet.

Builds a lab of its own (tests/lab, named with the lab's prefix, torn down at the
end even on failure): N router namespaces, each with two uplinks (wan1, wan2) and a
LAN (lan0), all with the same addresses, and one namespace `peers` holding the
other end of every link (no addresses: the gateways only need to be on the
uplinks' subnets, nothing is routed). Then, for each round, with the collection's
netns connection plugin, forks 10 and pipelining, it runs and times:

  baseline   a one-task play, `ansible.builtin.command: ip rule show`, on every router
  converge   split_access, source_routing and reply_via_same_router on every router
  no-op      the same playbook again (should change nothing: tasks that did are listed)
  baseline   again, --baselines in all (default 3): the round's baseline is the median run

and prints the ratios converge / baseline and no-op / baseline and the tasks that
take the most time (summed per task name, from bench/callback_plugins/fleet_timer.py).
Each round builds a fresh lab, so every converge starts from scratch. The roles
run from a copy of the collection made at the start, so edits in the checkout
during a run do not show up as changes.

    cd /work/main && .venv/bin/python bench/fleet.py [--routers 40] [--forks 10] [--rounds 1] [--json FILE]
    .venv/bin/python bench/fleet.py --report FILE      # the report of a run saved with --json
    .venv/bin/python bench/fleet.py --routers 1 --count-execs   # commands run per router (-vvv)
    .venv/bin/python bench/fleet.py --cpu    # also: CPU time of the routers' Pythons vs the controller's

Each router's Python is a script that runs the module in a mount namespace of its
own, where the router's own directories are bound over the modules' caches in /run
(plugins/module_utils/_bytecode_cache.py): on a fleet each router has its own /run,
here the routers share the host's. The converge starts with every router's caches
empty, as on routers the collection never ran on; the no-op finds what the converge
left, as any later run. The script adds `unshare`, two mounts and a shell to every
module run, the baseline's too.

With --cpu that script also appends the CPU time of each module process to a file;
the rest of ansible-playbook's CPU time (its children included: the netns
connection's `ip netns exec`) is the controller's.

With FLEET_TIMER_PROGRESS=FILE in the environment, the callback also writes the
tasks done so far to FILE after each task (40 routers take long: about 40 minutes
per play of the roles on 2 cores).

Run as root on Linux. Not a test: numbers depend on the machine and its load.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, '.cache', 'collections'))  # the collection, linked by scripts/bootstrap

from ansible_collections.netpolicy.routing.plugins.module_utils._bytecode_cache import BYTECODE_DIR, STARTUP_DIR  # noqa: E402
from tests.lab.lab import Lab  # noqa: E402
from tests.lab.topologies import fleet as fleet_topology  # noqa: E402

# The variables of the tested playbooks (playbooks/seed00*.yml), with the roles'
# defaults for the rest: `<role>_install_dependencies` and `<role>_service` true, as a
# user runs them (the lab has the packages, and no systemd runs in its namespaces:
# the apply task only looks).
ROLE_VARS = {
    'split_access_lan_interfaces': ['lan0'],
    'split_access_uplinks': [
        {'name': 'isp1', 'interface': 'wan1', 'gateway': '198.51.100.1', 'address': '198.51.100.2', 'table': 1, 'mark': 1},
        {'name': 'isp2', 'interface': 'wan2', 'gateway': '192.0.2.1', 'address': '192.0.2.2', 'table': 2, 'mark': 2},
    ],
    'split_access_balance': 'per_connection',
    'split_access_port_forwards': [{'proto': 'tcp', 'port': 5001, 'to': '192.168.1.50'}],
    'source_routing_policies': [
        {'name': 'macbook', 'from': ['192.168.1.10'], 'interface': 'wan2', 'gateway': '192.0.2.1', 'snat': '192.0.2.2'},
    ],
    'reply_via_same_router_routers': [
        {'name': 'router2', 'mac': '52:54:00:00:02:01', 'interface': 'lan0', 'gateway': '192.168.1.2',
         'exclude_sources': ['192.168.1.0/24'], 'services': [{'proto': 'tcp', 'port': 80}, {'proto': 'tcp', 'port': 5001}]},
    ],
}

ROLES = ['netpolicy.routing.split_access', 'netpolicy.routing.source_routing',
         'netpolicy.routing.reply_via_same_router']


def snapshot_collection(workdir):
    """A copy of the collection as it is now, so the converge and the no-op rerun run
    the same code while the checkout is being edited (the agent role copies the
    module_utils: a file edited between the runs would show as a change)."""
    root = os.path.join(workdir, 'collections')
    target = os.path.join(root, 'ansible_collections', 'netpolicy', 'routing')
    for part in ('plugins', 'roles', 'meta'):
        shutil.copytree(os.path.join(REPO, part), os.path.join(target, part),
                        ignore=shutil.ignore_patterns('__pycache__', '*.pyc', 'molecule'))
    shutil.copy(os.path.join(REPO, 'galaxy.yml'), target)
    return root


def write_playbooks(workdir):
    baseline = [{'name': 'Baseline', 'hosts': 'routers', 'gather_facts': False,
                 'tasks': [{'name': 'ip rule show', 'ansible.builtin.command': 'ip rule show', 'changed_when': False}]}]
    roles = [{'name': 'The three roles', 'hosts': 'routers', 'gather_facts': False,
              'vars': ROLE_VARS, 'roles': [{'role': role} for role in ROLES]}]
    paths = {}
    for name, playbook in (('baseline', baseline), ('roles', roles)):
        paths[name] = os.path.join(workdir, name + '.yml')
        with open(paths[name], 'w') as handle:
            json.dump(playbook, handle, indent=1)  # JSON is YAML
    return paths


# Each router's Python. On a fleet every router has its own /run, so its module runs keep
# their compiled module_utils for its later runs only (_bytecode_cache). The lab's routers
# share the host's /run: each module process runs in a mount namespace of its own, with
# the router's directories bound over the cache's. With --cpu, bash's `times` after the
# module process ends writes two lines, the shell's own CPU time and its children's (the
# module's).
ROUTER_PYTHON = """#!/bin/bash
exec unshare --mount --propagation private /bin/bash -c '
mount --bind %(run)s/bytecode %(bytecode)s && mount --bind %(run)s/python %(startup)s || exit 111
%(python)s
' bash "$@"
"""
PYTHON = '/usr/bin/python3 "$@"'
PYTHON_CPU = PYTHON + """
status=$?
times >> %(log)s
exit $status"""


def write_router_pythons(workdir, names, cpu=False):
    """({router: its Python}, the --cpu log or None): the interpreters that give each router its caches."""
    log = os.path.join(workdir, 'router-cpu.log') if cpu else None
    for directory in (BYTECODE_DIR, STARTUP_DIR):  # where the routers' directories are bound
        os.makedirs(directory, 0o700, exist_ok=True)
    pythons = {}
    for name in names:
        path = os.path.join(workdir, 'python-' + name)
        with open(path, 'w') as handle:
            handle.write(ROUTER_PYTHON % {'run': router_run_dir(workdir, name), 'bytecode': BYTECODE_DIR,
                                          'startup': STARTUP_DIR,
                                          'python': PYTHON_CPU % {'log': log} if cpu else 'exec ' + PYTHON})
        os.chmod(path, 0o755)
        pythons[name] = path
    empty_caches(workdir, names)
    return pythons, log


def router_run_dir(workdir, name):
    return os.path.join(workdir, 'run', name)


def empty_caches(workdir, names):
    """Every router's caches empty, as on routers this collection never ran on."""
    for name in names:
        for directory in ('bytecode', 'python'):
            path = os.path.join(router_run_dir(workdir, name), directory)
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path, 0o700)
            os.chmod(path, 0o700)


def router_cpu(log):
    """(seconds, module runs) in the log of the --cpu Pythons, which is then emptied."""
    with open(log) as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    open(log, 'w').close()
    total = 0.0
    for line in lines[1::2]:  # the children's line of each `times`
        for field in line.split():  # like 0m0.312s
            minutes, seconds = field.rstrip('s').split('m')
            total += int(minutes) * 60 + float(seconds)
    return total, len(lines) // 2


def write_inventory(lab, routers, workdir, pythons):
    inventory = lab.inventory(routers)
    inventory['all']['children'] = {'routers': {'hosts': dict((router, {}) for router in routers)}}
    for router, values in inventory['all']['hosts'].items():
        values['ansible_python_interpreter'] = pythons[router]
    path = os.path.join(workdir, 'inventory.json')
    with open(path, 'w') as handle:
        json.dump(inventory, handle)
    return path


def run_playbook(inventory, playbook, forks, workdir, count_execs=False):
    """Run one playbook; return (wall seconds of the whole ansible-playbook, fleet_timer's record)."""
    env = dict(os.environ)
    # Here the connection is local, so the controller's PYTHONDONTWRITEBYTECODE would reach
    # the modules; on a router it does not.
    env.pop('PYTHONDONTWRITEBYTECODE', None)
    if count_execs:
        # the netns connection logs every command it runs in a router at -vvv (slower: not for timing)
        env['ANSIBLE_VERBOSITY'] = '3'
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(workdir, 'collections'),
        'ANSIBLE_CALLBACK_PLUGINS': os.path.join(REPO, 'bench', 'callback_plugins'),
        'ANSIBLE_CALLBACKS_ENABLED': 'fleet_timer',
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.default',
        'ANSIBLE_FORKS': str(forks),
        'ANSIBLE_PIPELINING': 'true',
        'ANSIBLE_LOCAL_TEMP': os.path.join(workdir, 'ansible-tmp'),
        'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_NOCOLOR': '1',
    })
    argv = [os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', inventory, playbook]
    started = time.monotonic()
    before = os.times()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    after = os.times()
    seconds = time.monotonic() - started
    record = None
    for line in proc.stdout.splitlines():
        if line.startswith('FLEET_TIMES '):
            record = json.loads(line[len('FLEET_TIMES '):])
    if record is not None:
        record['cpu_seconds'] = (after.children_user + after.children_system
                                 - before.children_user - before.children_system)
    if count_execs and record is not None:
        record['execs'] = sum(1 for line in proc.stdout.splitlines() if ' EXEC ' in line or ' PUT ' in line)
    if proc.returncode or record is None:
        raise SystemExit('%s failed (rc %d)\n%s\n%s' % (os.path.basename(playbook), proc.returncode,
                                                         proc.stdout[-6000:], proc.stderr[-3000:]))
    return seconds, record


def changed(record):
    return sum(summary['changed'] for summary in record['hosts'].values())


def one_round(routers, forks, workdir, progress=None, count_execs=False, cpu=False, baselines=3):
    """Build the fleet, time baseline, converge and no-op in it, tear it down.

    The baseline play is short (about 10 s for 40 routers), and its time moves by up to
    a fifth from one run to the next, more than the roles' plays do: it runs
    ``baselines`` times (first, then after the no-op), and the round's baseline is the
    run of the median time (``baseline_seconds`` lists them all).
    """
    results = {'forks': forks}
    baseline_runs = []
    with Lab(fleet_topology(routers)) as lab:
        names = ['r%02d' % number for number in range(1, routers + 1)]
        pythons, log = write_router_pythons(workdir, names, cpu)
        inventory = write_inventory(lab, names, workdir, pythons)
        playbooks = write_playbooks(workdir)
        steps = [('baseline', 'baseline'), ('converge', 'roles'), ('no-op', 'roles')]
        steps += [('baseline', 'baseline')] * (baselines - 1)
        for step, playbook in steps:
            if log:
                open(log, 'w').close()
            if step == 'converge':  # the first run of this collection on a fleet; the no-op as any later run
                empty_caches(workdir, names)
            run = run_playbook(inventory, playbooks[playbook], forks, workdir, count_execs)
            if log:
                run[1]['router_cpu_seconds'], run[1]['module_runs'] = router_cpu(log)
            results[step] = run
            if step == 'baseline':
                baseline_runs.append(run)
                results['baseline'] = sorted(baseline_runs, key=lambda timed: timed[0])[(len(baseline_runs) - 1) // 2]
                results['baseline_seconds'] = [seconds for seconds, record in baseline_runs]
            # a fleet run takes long: show each step as it ends
            print('  %s: %.2f s' % (step, run[0]), flush=True)
            if progress:
                progress(results)
        hosts = results['converge'][1]['hosts']
        if len(hosts) != routers or any(summary['changed'] == 0 for summary in hosts.values()):
            raise SystemExit('converge did not change every router: %s' % hosts)
    return results


def task_table(records, top):
    """[(role : task, count per run, median seconds per run)], slowest first."""
    totals = []
    for record in records:
        per_task = {}
        for task in record['tasks']:
            key = task['task']  # 'ROLE : NAME' for a role's task
            seconds, runs = per_task.get(key, (0.0, 0))
            per_task[key] = (seconds + task['seconds'], runs + 1)
        totals.append(per_task)
    keys = set(key for per_task in totals for key in per_task)
    rows = [(key, totals[0].get(key, (0, 0))[1], statistics.median(per_task.get(key, (0.0, 0))[0] for per_task in totals))
            for key in keys]
    rows.sort(key=lambda row: -row[2])
    return rows[:top]


def save(path, rounds):
    if path:
        with open(path, 'w') as handle:
            json.dump(rounds, handle, indent=1)


def role_table(records):
    """[(role, median seconds per run, tasks started)], slowest first."""
    totals = []
    for record in records:
        per_role = {}
        for task in record['tasks']:
            role = task['role'].rpartition('.')[2] or '(play)'
            seconds, count = per_role.get(role, (0.0, 0))
            per_role[role] = (seconds + task['seconds'], count + 1)
        totals.append(per_role)
    rows = [(role, statistics.median(per_role.get(role, (0.0, 0))[0] for per_role in totals), totals[0][role][1])
            for role in totals[0]]
    return sorted(rows, key=lambda row: -row[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--routers', type=int, default=40)
    parser.add_argument('--forks', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--top', type=int, default=15, help='how many of the slowest tasks to list')
    parser.add_argument('--json', help='also write the timings of every round (and fleet_timer records) to this file')
    parser.add_argument('--count-execs', action='store_true',
                        help='count the commands run in the routers (runs at -vvv: slower, not for timing)')
    parser.add_argument('--report', metavar='JSON', help='run nothing: print the report of a run saved with --json')
    parser.add_argument('--baselines', type=int, default=3,
                        help='runs of the baseline play per round (the median counts; 1 before 2026-11-26)')
    parser.add_argument('--cpu', action='store_true',
                        help="also split the CPU time between the routers' module processes and the controller")
    args = parser.parse_args()
    if not 1 <= args.routers <= 99:
        raise SystemExit('--routers: 1 to 99')
    if args.baselines < 1:
        raise SystemExit('--baselines: at least 1')

    if args.report:
        with open(args.report) as handle:
            rounds = json.load(handle)
    else:
        rounds = run_rounds(args)
    report(rounds, args.top)


def run_rounds(args):
    rounds = []
    with tempfile.TemporaryDirectory(prefix='npr-fleet-') as workdir:
        snapshot_collection(workdir)
        for number in range(args.rounds):
            print('round %d' % (number + 1), flush=True)
            rounds.append(one_round(args.routers, args.forks, workdir, count_execs=args.count_execs, cpu=args.cpu,
                                    progress=lambda results: save(args.json, rounds + [results]),
                                    baselines=args.baselines))
            save(args.json, rounds)
    return rounds


def report(rounds, top):
    def median(step, index=0):
        values = [result[step][0] if index == 0 else result[step][1]['play_seconds'] for result in rounds]
        return statistics.median(values)

    # a saved run stopped early lacks its last steps: report the ones every round has
    steps = [step for step in ('baseline', 'converge', 'no-op') if all(step in result for result in rounds)]
    routers = len(rounds[0]['baseline'][1]['hosts'])
    print('%d routers, forks %s, pipelining, netns connection, %d round(s), medians'
          % (routers, rounds[0].get('forks', '?'), len(rounds)))
    print('ansible-playbook wall time (play time alone):')
    for step in steps:
        print('  %-9s %7.2f s  (%6.2f s)' % (step, median(step), median(step, 1)))
    for number, result in enumerate(rounds, 1):
        if len(result.get('baseline_seconds', [])) > 1:
            print('  baseline runs of round %d: %s s (the median counts)'
                  % (number, ' / '.join('%.2f' % seconds for seconds in result['baseline_seconds'])))
    if 'execs' in rounds[0]['baseline'][1]:
        print('  baseline: %d commands run in the routers' % rounds[0]['baseline'][1]['execs'])
    if 'router_cpu_seconds' in rounds[0]['baseline'][1]:
        print('CPU seconds (first round): all = module processes in the routers + controller')
        for step in steps:
            record = rounds[0][step][1]
            print('  %-9s %7.2f = %6.2f (%d runs, %.3f s each) + %6.2f'
                  % (step, record['cpu_seconds'], record['router_cpu_seconds'], record['module_runs'],
                     record['router_cpu_seconds'] / max(record['module_runs'], 1),
                     record['cpu_seconds'] - record['router_cpu_seconds']))
    for step, target in (('converge', 6), ('no-op', 4)):
        if step not in steps:
            continue
        print('  ratio %s / baseline: %.2fx  (target <= %dx; play time alone: %.2fx)'
              % (step, median(step) / median('baseline'), target, median(step, 1) / median('baseline', 1)))
    for step in steps[1:]:
        records = [result[step][1] for result in rounds]
        print('%s: %d tasks started, %d changed host results; time per task summed over the fleet:'
              % (step, len(records[0]['tasks']), changed(records[0])))
        if 'execs' in records[0]:
            print('  commands run in the routers: %d (%.1f per router)'
                  % (records[0]['execs'], records[0]['execs'] / len(records[0]['hosts'])))
        for task in records[0]['tasks']:
            if task['changed'] and step == 'no-op':
                print('  NOT A NO-OP: %r changed %d routers' % (task['task'], task['changed']))
        print('  by role (agent: installed by each of the three roles):')
        for role, seconds, count in role_table(records):
            print('  %7.2f  %4d  %s' % (seconds, count, role))
        print('  slowest tasks:')
        print('  %7s  %4s  %s' % ('seconds', 'runs', 'role : task'))
        for key, runs, seconds in task_table(records, top):
            print('  %7.2f  %4d  %s' % (seconds, runs, key))


if __name__ == '__main__':
    main()

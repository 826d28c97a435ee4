#!/usr/bin/env python3
"""Bench: 10,000 routes in one task, netpolicy.routing.route_table against `ip -batch`.

Builds its own network namespace (named with the test lab's prefix, removed at
the end even on failure), then runs one ansible-playbook that, for each round,
times ten tasks on the same table:

  route_table dicts converge    the module puts 10,000 routes, given as dicts, into an empty table
  route_table dicts rerun       the same task again (nothing to do)
  route_table strings converge  the same with the routes as strings ("DEST via GW dev wan1")
  route_table strings rerun
  route_table joined converge   the same strings joined into one with commas (Ansible splits it)
  route_table joined rerun
  route_table file converge     the routes one per line in a file, read with lookup('file'): one string
  route_table file rerun
  ip -batch converge            `command: ip -batch FILE` with the same 10,000 routes
  ip -batch rerun               the same task again (`route replace` lines, so it succeeds)

and prints the median of each and the ratios module / ip -batch; then the same
without Ansible around it (the module process with its JSON arguments, and
`ip -batch`), wall time and CPU time.

    cd /work/main && .venv/bin/python bench/routes_10k.py [--routes 10000] [--rounds 5] [--python PATH]

Run as root on Linux. Not a test: numbers depend on the machine and its load.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.helpers.modules import run_module  # noqa: E402
from tests.lab.names import netns_name  # noqa: E402

TABLE = 100
GATEWAY = '198.51.100.1'
FORMS = ('dicts', 'strings', 'joined', 'file')
# The interpreter of the modules, for both tasks: Debian's, as on a router (its
# python3-pyroute2 is not needed for routes), else the venv's.
DEBIAN_PYTHON = '/usr/bin/python3'
VENV_PYTHON = os.path.join(REPO, '.venv', 'bin', 'python')
# The value of `routes` in the task, per form. joined: the strings as ONE
# comma-separated string, which Ansible splits into the list in the module
# (as it does for any list option), so the controller hands over one value; but
# it templates the join of the 10,000 strings first. file: a file of the routes,
# one per line, read as it is (the module takes a string of lines as a route per
# line), as `ip -batch` reads its file.
TASK_ROUTES = {'dicts': '{{ bench_routes }}', 'strings': '{{ bench_route_strings }}',
               'joined': "{{ bench_route_strings | join(',') }}",
               'file': "{{ lookup('ansible.builtin.file', bench_routes_file) }}"}


def route_dests(count):
    """``count`` distinct /24 prefixes out of 100.64.0.0/10 (lab space)."""
    if count > 64 * 256:
        raise SystemExit('at most %d routes' % (64 * 256))
    return ['100.%d.%d.0/24' % (64 + i // 256, i % 256) for i in range(count)]


def routes_as(form, dests):
    """The ``routes`` argument of route_table for ``dests`` as the module gets it, in ``form``."""
    if form == 'dicts':
        return [{'dest': dest, 'gateway': GATEWAY, 'dev': 'wan1'} for dest in dests]
    strings = ['%s via %s dev wan1' % (dest, GATEWAY) for dest in dests]
    if form == 'file':
        return '\n'.join(strings) + '\n'
    return ','.join(strings) if form == 'joined' else strings


def ip(netns, *argv):
    subprocess.run(['ip', '-n', netns] + list(argv), check=True)


def build_lab(netns):
    subprocess.run(['ip', 'netns', 'add', netns], check=True)
    ip(netns, 'link', 'set', 'lo', 'up')
    ip(netns, 'link', 'add', 'wan1', 'type', 'veth', 'peer', 'name', 'wan1p')
    ip(netns, 'addr', 'add', '198.51.100.2/24', 'dev', 'wan1')
    ip(netns, 'link', 'set', 'wan1', 'up')
    ip(netns, 'link', 'set', 'wan1p', 'up')


def write_inputs(workdir, netns, dests, rounds, python):
    routes_file = os.path.join(workdir, 'routes.json')
    with open(routes_file, 'w') as handle:
        json.dump({'bench_routes': routes_as('dicts', dests), 'bench_route_strings': routes_as('strings', dests),
                   'bench_routes_file': os.path.join(workdir, 'routes.txt')}, handle)
    with open(os.path.join(workdir, 'routes.txt'), 'w') as handle:
        handle.write(routes_as('file', dests))
    batch_file = os.path.join(workdir, 'routes.batch')
    with open(batch_file, 'w') as handle:
        for dest in dests:
            handle.write('route replace %s via %s dev wan1 table %d\n' % (dest, GATEWAY, TABLE))
    # An empty table does not exist for the kernel, so its flush fails: that is fine.
    flush = {'name': 'flush', 'command': 'ip -n %s route flush table %d' % (netns, TABLE), 'failed_when': False}
    batch = {'command': 'ip -n %s -batch %s' % (netns, batch_file)}
    tasks = []
    for index in range(rounds):
        # Rotate which one goes first, so a warm or busy moment favours none.
        pairs = [('route_table %s' % form,
                  {'netpolicy.routing.route_table': {'netns': netns, 'table': TABLE, 'routes': TASK_ROUTES[form]}})
                 for form in FORMS]
        pairs.append(('ip -batch', batch))
        shift = index % len(pairs)
        for label, action in pairs[shift:] + pairs[:shift]:
            tasks.append(flush)
            tasks.append(dict(action, name='%s converge' % label))
            tasks.append(dict(action, name='%s rerun' % label))
    playbook = [{'hosts': 'localhost', 'connection': 'local', 'gather_facts': False,
                 'vars_files': [routes_file],
                 'vars': {'ansible_python_interpreter': python},
                 'tasks': tasks}]
    playbook_file = os.path.join(workdir, 'bench.yml')
    with open(playbook_file, 'w') as handle:
        json.dump(playbook, handle, indent=1)  # JSON is YAML
    return playbook_file


def run_playbook(playbook_file):
    env = dict(os.environ)
    # The modules run as on a router, where a controller's PYTHONDONTWRITEBYTECODE does not reach
    # them (here the connection is local, so it would): their compiled module_utils are kept.
    env.pop('PYTHONDONTWRITEBYTECODE', None)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(REPO, '.cache', 'collections'),
        'ANSIBLE_CALLBACK_PLUGINS': os.path.join(REPO, 'bench', 'callback_plugins'),
        'ANSIBLE_CALLBACKS_ENABLED': 'bench_timer',
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.default',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
    })
    proc = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', playbook_file],
                          capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith('BENCH_TIMES '):
            times = json.loads(line[len('BENCH_TIMES '):])
            break
    else:
        raise SystemExit('ansible-playbook printed no timings (rc %d)\n%s\n%s'
                         % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    failed = [entry for entry in times if not entry['ok'] and entry['task'] != 'flush']
    if failed or proc.returncode:
        raise SystemExit('a task failed: %s\n%s' % (failed, proc.stdout[-3000:]))
    return times


def run_direct(netns, dests, rounds, python):
    """The same work without Ansible around it: the module process alone, and `ip -batch` alone."""
    with tempfile.NamedTemporaryFile('w', suffix='.batch') as batch:
        batch.write(''.join('route replace %s via %s dev wan1 table %d\n' % (dest, GATEWAY, TABLE) for dest in dests))
        batch.flush()
        runs = [('route_table %s' % form,
                 lambda args={'netns': netns, 'table': str(TABLE), 'routes': routes_as(form, dests)}:
                 run_module('route_table', args, python=python))
                for form in FORMS]
        runs.append(('ip -batch', lambda: subprocess.run(['ip', '-n', netns, '-batch', batch.name], check=True)))
        times, cpu = {}, {}
        for _ in range(rounds):
            for label, run in runs:
                subprocess.run(['ip', '-n', netns, 'route', 'flush', 'table', str(TABLE)], capture_output=True)
                for step in ('converge', 'rerun'):
                    started, cpu_started = time.monotonic(), _children_cpu()
                    result = run()
                    times.setdefault('%s %s' % (label, step), []).append(time.monotonic() - started)
                    cpu.setdefault('%s %s' % (label, step), []).append(_children_cpu() - cpu_started)
                    if isinstance(result, dict) and result.get('failed'):
                        raise SystemExit('route_table failed: %s' % result.get('msg'))
    return [dict((name, statistics.median(values)) for name, values in measured.items()) for measured in (times, cpu)]


def _children_cpu():
    """CPU seconds (user + system) of the child processes that ended: less moved by the machine's load than wall time."""
    times = os.times()
    return times.children_user + times.children_system


def report(title, median):
    print(title)
    for step in ('converge', 'rerun'):
        for label in ['route_table %s' % form for form in FORMS] + ['ip -batch']:
            name = '%s %s' % (label, step)
            print('  %-30s %6.3f s' % (name, median[name]))
    for form in FORMS:
        print('  %-8s ratio converge (route_table / ip -batch): %5.2fx  (target <= 1.5x)'
              % (form, median['route_table %s converge' % form] / median['ip -batch converge']))
        print('  %-8s ratio no-op rerun (route_table / ip -batch): %5.2fx  (target <= 1.0x)'
              % (form, median['route_table %s rerun' % form] / median['ip -batch rerun']))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--routes', type=int, default=10000)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--python', default=DEBIAN_PYTHON if os.path.exists(DEBIAN_PYTHON) else VENV_PYTHON,
                        help="the modules' interpreter, for both tasks (default: Debian's, as on a router)")
    args = parser.parse_args()
    print('modules run with %s' % args.python)

    netns = netns_name('bench')
    dests = route_dests(args.routes)
    build_lab(netns)
    try:
        with tempfile.TemporaryDirectory(prefix='npr-bench-') as workdir:
            times = run_playbook(write_inputs(workdir, netns, dests, args.rounds, args.python))
        direct = run_direct(netns, dests, args.rounds, args.python)
    finally:
        subprocess.run(['ip', 'netns', 'del', netns], check=False)

    by_task = {}
    for entry in times:
        by_task.setdefault(entry['task'], []).append(entry)
    for name in ['route_table %s converge' % form for form in FORMS] + ['ip -batch converge']:
        if not all(entry['changed'] for entry in by_task[name]):
            raise SystemExit('%s did not report a change' % name)
    for form in FORMS:
        if any(entry['changed'] for entry in by_task['route_table %s rerun' % form]):
            raise SystemExit('route_table %s rerun reported a change' % form)
    median = dict((name, statistics.median(entry['seconds'] for entry in entries))
                  for name, entries in by_task.items() if name != 'flush')
    print('%d routes, %d rounds, medians' % (args.routes, args.rounds))
    report('Ansible task wall time (ansible-playbook, connection local):', median)
    report('Process time alone (module process with its JSON args vs ip -batch):', direct[0])
    report('CPU time of that process (user + system):', direct[1])


if __name__ == '__main__':
    main()

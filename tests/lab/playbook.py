"""Run an Ansible playbook against the nodes of a lab, each node a host reached
through the collection's netns connection plugin (how the demo applies a
recipe, and how a test can drive a role end to end)."""
import json
import os
import re
import subprocess
import sys

from tests.lab.lab import LabCommandError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _ansible_playbook():
    beside = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    return beside if os.path.exists(beside) else 'ansible-playbook'


def run_playbook(lab, playbook, extra_vars=None, nodes=None, check=False, diff=False, timeout=600,
                 inventory=None, netns=None):
    """Run ``playbook`` with an inventory of ``nodes`` (default: all) of ``lab``;
    return the CompletedProcess, or raise LabCommandError (with the output) if
    it fails. Hosts are named after the nodes ('router', 'backend', ...).
    ``inventory`` (a dict) replaces the lab's; ``netns``: run ansible-playbook
    inside that namespace (a controller node, see tests/lab/ssh.py)."""
    path = os.path.join(lab.state_dir, 'inventory.json')
    with open(path, 'w') as handle:
        json.dump(inventory or lab.inventory(nodes), handle)
    argv = [_ansible_playbook(), '-i', path, playbook]
    if extra_vars:
        variables = os.path.join(lab.state_dir, 'extra_vars.json')
        with open(variables, 'w') as handle:
            json.dump(extra_vars, handle)
        argv += ['-e', '@' + variables]
    if check:
        argv.append('--check')
    if diff:
        argv.append('--diff')
    if netns:
        argv = ['ip', 'netns', 'exec', netns] + argv
    env = dict(os.environ)
    env.setdefault('ANSIBLE_COLLECTIONS_PATH', os.path.join(REPO, '.cache', 'collections'))
    env.setdefault('ANSIBLE_LOCAL_TEMP', os.path.join(lab.state_dir, 'ansible-tmp'))
    env.setdefault('ANSIBLE_NOCOLOR', '1')
    env.setdefault('ANSIBLE_RETRY_FILES_ENABLED', '0')
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode:
        raise LabCommandError(proc.returncode, argv, proc.stdout, proc.stdout + proc.stderr)
    return proc


def playbook(path, extra_vars=None, nodes=None):
    """A demo Scene's ``apply``: run the playbook at ``path`` (relative to the
    repository) against the lab."""
    def apply(lab):
        run_playbook(lab, os.path.join(REPO, path), extra_vars=extra_vars, nodes=nodes)
    return apply


def recap(proc, host='router'):
    """{'ok': N, 'changed': N, ...} of ``host`` in the PLAY RECAP of a run."""
    line = [line for line in proc.stdout.splitlines() if line.startswith(host + ' ')][-1]
    return {key: int(value) for key, value in re.findall(r'(\w+)=(\d+)', line)}


def snapshot(lab, node='router'):
    """Everything a role may change on ``node``: rules, routes of every table and
    nftables (IPv4 and IPv6), reverse-path filters, and the node's files under
    /etc that the roles write (table names, saved state, sysctl.d)."""
    files = {}
    for path in ('iproute2/rt_tables.d', 'netpolicy', 'sysctl.d'):
        for root, _dirs, names in os.walk(os.path.join(lab.etc(node), path)):
            # (not ROLE.rolled-back: the record a confirm-timeout rollback leaves of itself)
            for name in names:
                if name.endswith('.rolled-back'):
                    continue
                with open(os.path.join(root, name)) as handle:
                    files[os.path.join(root, name)] = handle.read()
    return {
        'rules': lab.ip(node, '-4', 'rule').stdout + lab.ip(node, '-6', 'rule').stdout,
        'routes': lab.ip(node, '-4', 'route', 'show', 'table', 'all').stdout
        + lab.ip(node, '-6', 'route', 'show', 'table', 'all').stdout,
        'nft': lab.run(node, 'nft', 'list', 'ruleset').stdout,
        'rp_filter': lab.run(node, 'sysctl', '-r', r'\.rp_filter$', '-a').stdout,
        'files': files,
    }

"""Every task of every module's EXAMPLES runs, in check mode, in a namespace that
has the interfaces and table names the examples use: the documentation is true.
(apply_state's arguments go through what its action plugin does with them first.)"""
import os
import re

import jinja2
import pytest
import yaml

from ansible_collections.netpolicy.routing.plugins.action import apply_state as apply_state_action
from tests.helpers.modules import MODULES, run_module

INTERFACES = {
    'eth0': '192.168.1.10/24', 'eth1': '198.51.100.2/24', 'eth2': '192.0.2.2/24',
    'eth4': '203.0.113.12/24', 'wan1': '198.51.100.3/24', 'wan2': '203.0.113.2/24',
    'ppp0': '192.0.2.74/24', 'ppp1': '100.64.9.2/24', 'lan0': '192.168.2.1/24',
}
RT_TABLES = '255\tlocal\n254\tmain\n253\tdefault\n0\tunspec\n7375\tsunusroute\n101\tisp1\n102\tisp2\n'


MODULE_NAMES = sorted(name[:-3] for name in os.listdir(MODULES) if name.endswith('.py'))
# The files that examples read with lookup('ansible.builtin.file', NAME).
EXAMPLE_FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'files', 'examples')


def rendered(value):
    """An option's value as Ansible would template it: Jinja, with the file lookup of the examples."""
    if not isinstance(value, str) or '{{' not in value:
        return value

    def lookup(kind, name):
        assert kind == 'ansible.builtin.file', kind
        with open(os.path.join(EXAMPLE_FILES, name)) as handle:
            return handle.read().rstrip('\n')

    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(lookup=lookup)


def examples(module):
    with open(os.path.join(MODULES, module + '.py')) as handle:
        text = handle.read()
    return yaml.safe_load(re.search(r"EXAMPLES = r'''(.*?)'''", text, re.S).group(1))


@pytest.mark.parametrize('module', MODULE_NAMES)
def test_examples_run_in_check_mode(netns, module):
    for ifname, address in INTERFACES.items():
        netns.add_dummy(ifname, address)
    netns.ip('-6', 'addr', 'add', '2001:db8:1::2/64', 'dev', 'wan1', 'nodad')
    conf = netns.rt_tables(RT_TABLES)
    with open(os.path.join(conf, 'rt_tables.d', 'netpolicy.conf'), 'w') as handle:
        handle.write('200\trouter2\n')   # the examples' own drop-in names router2

    failures = []
    for task in examples(module):
        args = dict((name, rendered(value)) for name, value in task['netpolicy.routing.' + module].items())
        if module == 'apply_state':
            args, errors = apply_state_action.module_args(args)
            if errors:
                failures.append('%s: %s' % (task['name'], '; '.join(errors)))
                continue
        args['netns'] = netns.name
        result = run_module(module, args, check=True, diff=True)
        if result.get('failed') or not isinstance(result.get('commands'), list):
            failures.append('%s: %s' % (task['name'], result.get('msg')))
    assert failures == []

# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the iptables backend of connmark_return.

For hosts that still run iptables-legacy or an iptables-only firewall. What a
``name`` owns, per address family (iptables and ip6tables), in table mangle:
chains ``NP_<name>_PRE`` and ``NP_<name>_OUT`` (and ``NP_<name>_E<n>`` for
entries with exclusions, as iptables negates only one source per rule), each
jumped to once from PREROUTING and OUTPUT. One item per family; each is written
with ``iptables-restore --noflush`` in one transaction, which leaves every
other chain and rule as it is.

Current and desired are compared as ``iptables-save`` prints them: the desired
chains are loaded into a throwaway network namespace and saved there, the same
way the nftables backend gets nft's own printing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    DELETE, ApplyError, EngineError, Kind)
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import (
    find_tool, in_scratch_netns, rule_variants, run_tool)

FAMILIES = ('ipv4', 'ipv6')
TOOLS = {'ipv4': ('iptables-restore', 'iptables-save'), 'ipv6': ('ip6tables-restore', 'ip6tables-save')}
# The builtin chain each of our main chains hangs from. PREROUTING sees
# packets before the routing decision; a mark changed in mangle OUTPUT makes
# the kernel route the local packet again.
HOOKS = (('PRE', 'PREROUTING'), ('OUT', 'OUTPUT'))


def chain(name, suffix):
    return 'NP_%s_%s' % (name, suffix)


def render(model, family):
    """The iptables-restore lines (without ``*mangle``/``COMMIT``) for ``family``."""
    name, mask = model['name'], model['mask']
    pre, out = chain(name, 'PRE'), chain(name, 'OUT')
    restore = '-j CONNMARK --restore-mark --nfmask %#x --ctmask %#x' % (mask, mask)
    chains = [pre, out]
    rules = ['-A PREROUTING -j %s' % pre, '-A OUTPUT -j %s' % out]
    # Restores first: they act on packets of connections marked earlier.
    rules.extend('-A %s -i %s %s' % (pre, ifname, restore) for ifname in model['restore_prerouting'])
    set_mark = '-j CONNMARK --set-xmark %#x/%#x'
    for entry in model['entries']:
        for variant, excludes in rule_variants(entry):
            if variant not in (None, family):
                continue
            match = mark_match(entry, mask)
            if not excludes:
                rules.append('-A %s %s %s' % (pre, match, set_mark % (entry['mark'], mask)))
                continue
            sub = chain(name, 'E%d' % (len(chains) - 1))
            chains.append(sub)
            rules.append('-A %s %s -j %s' % (pre, match, sub))
            rules.extend('-A %s -s %s -j RETURN' % (sub, prefix) for prefix in excludes)
            rules.append('-A %s %s' % (sub, set_mark % (entry['mark'], mask)))
    if model['restore_output']:
        rules.append('-A %s %s' % (out, restore))
    return [':%s - [0:0]' % name for name in chains] + rules


def mark_match(entry, mask):
    # --mark 0x0/mask: a connection keeps the first mark it got (first entry
    # wins); bits outside mask are not looked at.
    words = ['-m conntrack --ctstate NEW', '-m connmark --mark 0x0/%#x' % mask]
    if entry['in_interface'] is not None:
        words.append('-i %s' % entry['in_interface'])
    if entry['source_mac'] is not None:
        words.append('-m mac --mac-source %s' % entry['source_mac'])
    if entry['source'] is not None:
        words.append('-s %s' % entry['source'])
    if entry['protocol'] is not None:
        words.append('-p %s' % entry['protocol'])
    if entry['dport'] is not None:
        low, high = entry['dport']
        words.append('-m %s --dport %s' % (entry['protocol'], low if low == high else '%d:%d' % (low, high)))
    return ' '.join(words)


def owned_lines(save_output, name):
    """The lines of ``iptables-save -t mangle`` output that belong to ``name``, in order."""
    mine = set(chain(name, suffix) for suffix, builtin in HOOKS)
    jumps = set('-A %s -j %s' % (builtin, chain(name, suffix)) for suffix, builtin in HOOKS)
    lines = []
    for line in save_output.splitlines():
        if line.startswith(':'):
            chain_name = line[1:].split()[0]
            if is_owned_chain(chain_name, name, mine):
                lines.append(':%s - [0:0]' % chain_name)
        elif line.startswith('-A '):
            parts = line.split()
            if line in jumps or is_owned_chain(parts[1], name, mine):
                lines.append(line)
    return lines


def is_owned_chain(chain_name, name, mine):
    if chain_name in mine:
        return True
    prefix = chain(name, 'E')
    return chain_name.startswith(prefix) and chain_name[len(prefix):].isdigit()


def split(lines):
    """(chains, jumps, rules) of owned lines."""
    chains = [line[1:].split()[0] for line in lines if line.startswith(':')]
    builtin = tuple('-A %s ' % builtin for suffix, builtin in HOOKS)
    jumps = [line for line in lines if line.startswith(builtin)]
    rules = [line for line in lines if line.startswith('-A ') and not line.startswith(builtin)]
    return chains, jumps, rules


class IptablesChains(Kind):
    """What a ``name`` owns in one family: items ``{'family', 'lines'}``."""

    def __init__(self, tools):
        self.tools = tools

    def key(self, item):
        return item['family']

    def script(self, action, item, old=None):
        chains, jumps, rules = split(item['lines'])
        lines = ['*mangle']
        if action == DELETE:
            lines.extend('-D%s' % jump[2:] for jump in jumps)
            lines.extend('-F %s' % name for name in chains)
            lines.extend('-X %s' % name for name in chains)
        else:
            old_chains, old_jumps, old_rules = split(old['lines']) if old else ([], [], [])
            # A chain line creates the chain, or empties it when it exists.
            lines.extend(':%s - [0:0]' % name for name in chains)
            lines.extend(rules)
            for jump in jumps:
                count = old_jumps.count(jump)
                if count == 0:
                    lines.append(jump)
                lines.extend(['-D%s' % jump[2:]] * max(count - 1, 0))
            stale = [name for name in old_chains if name not in chains]
            lines.extend('-F %s' % name for name in stale)
            lines.extend('-X %s' % name for name in stale)
        lines.append('COMMIT')
        return '\n'.join(lines) + '\n'

    def text(self, action, item, old=None):
        return "%s --noflush <<'EOF'\n%sEOF" % (TOOLS[item['family']][0], self.script(action, item, old))

    def render(self, item):
        """The owned chains and rules as iptables commands, for the diff."""
        prefix = 'ip6tables' if item['family'] == 'ipv6' else 'iptables'
        lines = ['-N %s' % line[1:].split()[0] if line.startswith(':') else line for line in item['lines']]
        return '\n'.join('%s -t mangle %s' % (prefix, line) for line in lines)

    def apply(self, ops):
        applied = []
        for op in ops:
            restore = self.tools[op.item['family']][0]
            rc, out, err = run_tool([restore, '--noflush'], self.script(op.action, op.item, op.old))
            if rc != 0:
                raise ApplyError('%s: %s' % (TOOLS[op.item['family']][0], err.strip() or out.strip()),
                                 applied=applied, failed=op)
            applied.append(op)


class IptablesBackend:
    name = 'iptables'

    def __init__(self):
        self.tools = dict((family, tuple(find_tool(tool) for tool in TOOLS[family])) for family in FAMILIES)
        self.kind = IptablesChains(self.tools)

    def usable(self):
        """None when iptables and ip6tables work here, else why not."""
        for family in FAMILIES:
            for tool, path in zip(TOOLS[family], self.tools[family]):
                if path is None:
                    return '%s not found (Debian: iptables)' % tool
        return None

    def read(self, name):
        items = []
        for family in FAMILIES:
            rc, out, err = run_tool([self.tools[family][1], '-t', 'mangle'])
            if rc != 0:
                raise EngineError('%s -t mangle failed: %s' % (TOOLS[family][1], err.strip()))
            lines = owned_lines(out, name)
            if lines:
                items.append({'family': family, 'lines': lines})
        return items

    def desired(self, model):
        items = []
        for family in FAMILIES:
            restore, save = self.tools[family]
            script = '\n'.join(['*mangle'] + render(model, family) + ['COMMIT']) + '\n'
            try:
                rc, out, err = in_scratch_netns(['/bin/sh', '-c', '"$0" --noflush && "$1" -t mangle', restore, save],
                                                script)
            except OSError as exc:
                raise EngineError('cannot check the rule set in a scratch network namespace: %s' % exc)
            if rc != 0:
                raise EngineError('could not load the rule set into a scratch network namespace to check it '
                                  '(nothing was changed): %s: %s\n%s' % (TOOLS[family][0], err.strip(), script))
            items.append({'family': family, 'lines': owned_lines(out, model['name'])})
        return items

    def absent(self, name):
        return [{'family': family, 'lines': []} for family in FAMILIES]

# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the nftables backend of connmark_return.

Everything a ``name`` owns is one table, ``inet netpolicy_<name>`` (inet: one
table for IPv4 and IPv6). It is the single item of the engine's plan, and is
written in one ``nft -f`` transaction: ``table X`` + ``delete table X`` + the
full definition, so a run never leaves half a rule set and other tables are
never touched.

How current and desired are compared, exactly: nft prints a table in its own
normal form (hex widths, set element order, implied dependencies). The desired
table is loaded into a throwaway network namespace (``unshare --net``), listed
there by the same nft and kernel, and that listing is compared, as text, with
the listing of the real table. No guessing of nft's printing rules, and the
real rule set is not touched until the plan says so. What is written is that
same listing (nft reads back what it prints), so the diff shows exactly what
is loaded. (nft 1.0.6 prints ``meta mark & 0xffffff00 | 0x2`` as
``meta mark & 0xffffff02 | 0x00000002``: the same operation, mark AND mask XOR
value, shown another way.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import (
    DELETE, ApplyError, EngineError, Kind)
from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import (
    find_tool, in_scratch_netns, inverse_mask, marks, rule_variants, run_tool)

FAMILY = 'inet'
NFPROTO = {'ipv4': 'ip', 'ipv6': 'ip6'}

# Hooks and priorities, chosen so that:
# - prerouting at priority mangle (-150): after conntrack (-200), so ``ct``
#   is known, and before DNAT (-100) and the routing decision, so a restored
#   packet mark is what ``ip rule fwmark`` sees when the packet is routed;
# - output as ``type route`` at priority mangle: a route chain makes the
#   kernel route a locally generated packet again when the chain changed its
#   mark, so replies of local services follow the marked route (a filter
#   chain would change the mark after the route was chosen).
PREROUTING_CHAIN = 'type filter hook prerouting priority mangle; policy accept;'
OUTPUT_CHAIN = 'type route hook output priority mangle; policy accept;'


def table_name(name):
    return 'netpolicy_%s' % name


def render(model):
    """The nft script defining the table of ``model`` (the _connmark model)."""
    mask = model['mask']
    keep = inverse_mask(mask)
    restore = ['ct mark & %#x == %#x meta mark set meta mark & %#x | %#x' % (mask, mark, keep, mark)
               for mark in marks(model)]
    prerouting = []
    if model['restore_prerouting']:
        ifnames = '{ %s }' % ', '.join('"%s"' % name for name in model['restore_prerouting'])
        # Restores come first: they act on packets of connections marked earlier.
        prerouting.extend('iifname %s %s' % (ifnames, rule) for rule in restore)
    for entry in model['entries']:
        for family, excludes in rule_variants(entry):
            prerouting.append(' '.join(mark_rule(entry, family, excludes, mask, keep)))
    lines = ['table %s %s {' % (FAMILY, table_name(model['name'])),
             '\tchain prerouting {', '\t\t' + PREROUTING_CHAIN]
    lines.extend('\t\t' + rule for rule in prerouting)
    lines.extend(['\t}', '\tchain output {', '\t\t' + OUTPUT_CHAIN])
    if model['restore_output']:
        lines.extend('\t\t' + rule for rule in restore)
    lines.extend(['\t}', '}'])
    return '\n'.join(lines) + '\n'


def mark_rule(entry, family, excludes, mask, keep):
    """The words of the rule that marks a NEW connection matching ``entry``."""
    # ``ct mark & mask == 0``: a connection keeps the first mark it got, as
    # with iptables' first matching rule; bits outside mask are not looked at.
    words = ['ct state new', 'ct mark & %#x == 0' % mask]
    if entry['in_interface'] is not None:
        words.append('iifname "%s"' % entry['in_interface'])
    if entry['source_mac'] is not None:
        words.append('ether saddr %s' % entry['source_mac'])
    if entry['source'] is not None:
        words.append('%s saddr %s' % (NFPROTO[family], entry['source']))
    if excludes:
        words.append('%s saddr != { %s }' % (NFPROTO[family], ', '.join(excludes)))
    elif family is not None and entry['source'] is None:
        words.append('meta nfproto %s' % family)
    if entry['dport'] is not None:
        low, high = entry['dport']
        words.append('%s dport %s' % (entry['protocol'], low if low == high else '%d-%d' % (low, high)))
    elif entry['protocol'] is not None:
        words.append('meta l4proto %s' % entry['protocol'])
    words.append('ct mark set ct mark & %#x | %#x' % (keep, entry['mark']))
    return words


class NftRuleSet(Kind):
    """The one table a ``name`` owns: items ``{'table': NAME, 'text': LISTING}``."""

    def __init__(self, nft):
        self.nft = nft

    def key(self, item):
        return item['table']

    def script(self, action, item):
        qualified = '%s %s' % (FAMILY, item['table'])
        if action == DELETE:
            return 'delete table %s\n' % qualified
        # Creating it first makes the delete valid whether it exists or not;
        # nft -f runs the whole file as one transaction. Spaces for nft's
        # tabs: the same to nft, easier to read in ``commands``.
        return 'table %s\ndelete table %s\n%s' % (qualified, qualified, item['text'].expandtabs(4))

    def text(self, action, item, old=None):
        return "nft -f - <<'EOF'\n%sEOF" % self.script(action, item)

    def render(self, item):
        return item['text'].rstrip('\n')

    def apply(self, ops):
        applied = []
        for op in ops:
            rc, out, err = run_tool([self.nft, '-f', '-'], self.script(op.action, op.item))
            if rc != 0:
                raise ApplyError('nft: %s' % (err.strip() or out.strip()), applied=applied, failed=op)
            applied.append(op)


class NftBackend:
    name = 'nftables'

    def __init__(self):
        self.nft = find_tool('nft')
        self.kind = NftRuleSet(self.nft)

    def usable(self):
        """None when nft works here, else why not."""
        if self.nft is None:
            return 'nft not found (Debian: nftables)'
        rc, out, err = run_tool([self.nft, 'list', 'tables'])
        if rc != 0:
            return 'nft list tables failed: %s' % err.strip()
        return None

    def read(self, name):
        """[item] of the table ``name`` owns in the kernel, or []."""
        table = table_name(name)
        text = self.read_table(table)
        return [] if text is None else [{'table': table, 'text': text}]

    def read_table(self, table):
        """nft's listing of table inet ``table`` without counter values, or None when there is none."""
        # -s (stateless): counter values are not part of what a rule set is.
        rc, out, err = run_tool([self.nft, '-s', 'list', 'table', FAMILY, table])
        if rc == 0:
            return out
        # No such table, or nft failed: the list of tables tells which (one run fewer when it is there).
        listed, tables, listed_err = run_tool([self.nft, 'list', 'tables', FAMILY])
        if listed != 0:
            raise EngineError('nft list tables failed: %s' % listed_err.strip())
        if 'table %s %s' % (FAMILY, table) not in tables.splitlines():
            return None
        raise EngineError('nft list table %s %s failed: %s' % (FAMILY, table, err.strip()))

    def desired(self, model):
        """[item] for ``model``, in nft's own printing (see the module docstring)."""
        table = table_name(model['name'])
        return [{'table': table, 'text': self.listing_of(table, render(model))}]

    def listing_of(self, table, script):
        """How nft lists table inet ``table`` once ``script`` is loaded: learnt in a scratch namespace."""
        try:
            # Two nft runs: a list in the same file as the load prints the
            # table as it was before that file's transaction.
            rc, out, err = in_scratch_netns(['/bin/sh', '-c', '"$0" -f - && "$0" -s list table %s %s' % (FAMILY, table),
                                             self.nft], script)
        except OSError as exc:
            raise EngineError('cannot check the rule set in a scratch network namespace: %s' % exc)
        if rc != 0:
            raise EngineError('could not load the rule set into a scratch network namespace to check it '
                              '(nothing was changed): %s\n%s' % (err.strip(), script))
        return out

    def absent(self, name):
        """Items naming what ``state: absent`` removes."""
        return [{'table': table_name(name), 'text': ''}]

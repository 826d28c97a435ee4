"""connmark_return's options: checks and the model both backends render."""
import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils._connmark import (
    check_interfaces, marks, match_key, normalize, parse_port_range, parse_prefix, rule_variants)
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError


def params(**extra):
    base = {'name': 'up', 'entries': [], 'restore_on': {'prerouting': [], 'output': False}, 'mask': 0xff}
    base.update(extra)
    return base


def entry(**extra):
    base = {'mark': 2, 'in_interface': None, 'source_mac': None, 'source': None, 'protocol': None,
            'dport': None, 'exclude_source': []}
    base.update(extra)
    return base


def test_model_of_a_full_entry():
    model = normalize(params(
        entries=[entry(source_mac='52:54:00:C2:A5:43', protocol='tcp', dport=80,
                       exclude_source=['2001:db8::/32', '192.168.1.0/24', '10.0.0.0/8', '10.0.0.0/8'])],
        restore_on={'prerouting': ['lan1', 'lan0', 'lan1'], 'output': True}))
    assert model == {
        'name': 'up', 'mask': 0xff, 'restore_prerouting': ['lan0', 'lan1'], 'restore_output': True,
        'entries': [{'mark': 2, 'in_interface': None, 'source_mac': '52:54:00:c2:a5:43', 'source': None,
                     'family': None, 'protocol': 'tcp', 'dport': (80, 80),
                     'exclude_source': ['10.0.0.0/8', '192.168.1.0/24', '2001:db8::/32']}],
    }


@pytest.mark.parametrize('source, family, text', [
    ('192.168.1.10', 'ipv4', '192.168.1.10/32'),
    ('192.168.0.0/16', 'ipv4', '192.168.0.0/16'),
    ('2001:DB8::/32', 'ipv6', '2001:db8::/32'),
])
def test_source_sets_the_family(source, family, text):
    model = normalize(params(entries=[entry(source=source)]))
    assert (model['entries'][0]['family'], model['entries'][0]['source']) == (family, text)


def test_exact_repeats_are_merged():
    model = normalize(params(entries=[entry(in_interface='wan2'), entry(in_interface='wan2')]))
    assert len(model['entries']) == 1


def test_mark_within_a_wider_mask():
    model = normalize(params(mask=0x3f00, entries=[entry(mark=0x100, in_interface='wan1')]))
    assert model['entries'][0]['mark'] == 0x100 and marks(model) == [0x100]


@pytest.mark.parametrize('change, field', [
    ({'name': 'bad name'}, 'name'),
    ({'name': '1up'}, 'name'),
    ({'name': 'a' * 21}, 'name'),
    ({'mask': 0}, 'mask'),
    ({'mask': 0x100000000}, 'mask'),
    ({'entries': [entry(mark=0, in_interface='wan1')]}, 'entries[0].mark'),
    ({'entries': [entry(mark=-1, in_interface='wan1')]}, 'entries[0].mark'),
    ({'entries': [entry(mark=0x100, in_interface='wan1')]}, 'entries[0].mark'),
    ({'entries': [entry(mark=True, in_interface='wan1')]}, 'entries[0].mark'),
    ({'entries': [entry()]}, 'entries[0]'),
    ({'entries': [entry(in_interface='wan 1')]}, 'entries[0].in_interface'),
    ({'entries': [entry(in_interface='a' * 16)]}, 'entries[0].in_interface'),
    ({'entries': [entry(in_interface='wan"1')]}, 'entries[0].in_interface'),
    ({'entries': [entry(source_mac='52:54:00:c2:a5')]}, 'entries[0].source_mac'),
    ({'entries': [entry(source_mac='52-54-00-c2-a5-43')]}, 'entries[0].source_mac'),
    ({'entries': [entry(source='x')]}, 'entries[0].source'),
    ({'entries': [entry(source='192.168.1.300')]}, 'entries[0].source'),
    ({'entries': [entry(source='192.168.1.5/24')]}, 'entries[0].source'),
    ({'entries': [entry(in_interface='wan1', dport=80)]}, 'entries[0].dport'),
    ({'entries': [entry(in_interface='wan1', protocol='tcp', dport='http')]}, 'entries[0].dport'),
    ({'entries': [entry(in_interface='wan1', protocol='tcp', dport=0)]}, 'entries[0].dport'),
    ({'entries': [entry(in_interface='wan1', protocol='tcp', dport='90-80')]}, 'entries[0].dport'),
    ({'entries': [entry(in_interface='wan1', protocol='icmp')]}, 'entries[0].protocol'),
    ({'entries': [entry(in_interface='wan1', exclude_source=['10.0.0.0/8', 'nope'])]},
     'entries[0].exclude_source[1]'),
    ({'entries': [entry(source='10.0.0.0/8', exclude_source=['2001:db8::/32'])]}, 'entries[0].exclude_source[0]'),
    ({'entries': [entry(in_interface='wan1'), entry(mark=3, in_interface='wan1')]}, 'entries[1]'),
    ({'restore_on': {'prerouting': ['lan0', ''], 'output': False}}, 'restore_on.prerouting[1]'),
])
def test_bad_input_names_the_field(change, field):
    with pytest.raises(InputError) as caught:
        normalize(params(**change))
    assert caught.value.field == field
    assert str(caught.value).startswith(field + ': ')


def test_host_bits_message_suggests_the_prefix():
    with pytest.raises(InputError, match=r'did you mean 192\.168\.1\.0/24'):
        parse_prefix('source', '192.168.1.5/24')


@pytest.mark.parametrize('value, expected', [
    (80, (80, 80)), ('80', (80, 80)), ('8000-8100', (8000, 8100)), ('8000:8100', (8000, 8100)),
    (65535, (65535, 65535)),
])
def test_port_ranges(value, expected):
    assert parse_port_range('dport', value) == expected


@pytest.mark.parametrize('value', [0, 65536, '1-2-3', 'x', '', False, '100-99'])
def test_bad_port_ranges(value):
    with pytest.raises(InputError):
        parse_port_range('dport', value)


def test_different_matches_are_different_keys():
    a = normalize(params(entries=[entry(in_interface='wan1')]))['entries'][0]
    b = normalize(params(entries=[entry(in_interface='wan1', protocol='tcp')]))['entries'][0]
    assert match_key(a) != match_key(b)


@pytest.mark.parametrize('extra, variants', [
    ({'in_interface': 'wan1'}, [(None, [])]),
    ({'source': '10.0.0.0/8', 'exclude_source': ['10.1.0.0/16']}, [('ipv4', ['10.1.0.0/16'])]),
    ({'in_interface': 'wan1', 'exclude_source': ['192.168.1.0/24']},
     [('ipv4', ['192.168.1.0/24']), ('ipv6', [])]),
    ({'in_interface': 'wan1', 'exclude_source': ['2001:db8::/32', '192.168.1.0/24']},
     [('ipv4', ['192.168.1.0/24']), ('ipv6', ['2001:db8::/32'])]),
])
def test_rule_variants_per_family(extra, variants):
    model = normalize(params(entries=[entry(**extra)]))
    assert rule_variants(model['entries'][0]) == variants


def test_unknown_interfaces_are_named():
    model = normalize(params(entries=[entry(in_interface='wan1'), entry(in_interface='wan9')],
                             restore_on={'prerouting': ['lan0'], 'output': False}))
    with pytest.raises(InputError) as caught:
        check_interfaces(model, {'wan1', 'lan0'})
    assert caught.value.field == 'entries[1].in_interface'
    with pytest.raises(InputError) as caught:
        check_interfaces(model, {'wan1', 'wan9'})
    assert caught.value.field == 'restore_on.prerouting'
    check_interfaces(model, {'wan1', 'wan9', 'lan0'})

"""connmark_return: which backend runs."""
import pytest

from ansible_collections.netpolicy.routing.plugins.module_utils._connmark_return import choose_backend
from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError


class FakeBackend:
    def __init__(self, name, why_not=None):
        self.name = name
        self.why_not = why_not

    def usable(self):
        return self.why_not


NFT = FakeBackend('nftables')
NO_NFT = FakeBackend('nftables', 'nft not found')
IPT = FakeBackend('iptables')
NO_IPT = FakeBackend('iptables', 'iptables-restore not found')


@pytest.mark.parametrize('wanted, backends, chosen', [
    ('auto', [NFT, IPT], NFT),
    ('auto', [NO_NFT, IPT], IPT),
    ('iptables', [NFT, IPT], IPT),
    ('nftables', [NFT, NO_IPT], NFT),
])
def test_choose_backend(wanted, backends, chosen):
    assert choose_backend(wanted, backends) is chosen


@pytest.mark.parametrize('wanted, backends, words', [
    ('auto', [NO_NFT, NO_IPT], ['nft not found', 'iptables-restore not found']),
    ('nftables', [NO_NFT, IPT], ['nft not found']),
])
def test_no_usable_backend_says_why(wanted, backends, words):
    with pytest.raises(InputError) as caught:
        choose_backend(wanted, backends)
    assert caught.value.field == 'backend'
    for word in words:
        assert word in str(caught.value)

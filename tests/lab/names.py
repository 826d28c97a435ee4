"""Names of everything a test run creates: one unique prefix per run."""
import os
import random

# Short on purpose: namespace names appear in interface-free places only, but a
# short prefix keeps `ip netns list` readable. 'npr' = netpolicy routing.
RUN_PREFIX = os.environ.get('NETPOLICY_LAB_PREFIX') or 'npr%04x' % random.randrange(0x10000)


def netns_name(role):
    return '%s-%s' % (RUN_PREFIX, role)

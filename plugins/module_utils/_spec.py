# -*- coding: utf-8 -*-
# Copyright: netpolicy.routing contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: module arguments checked against a module's spec without Ansible.

The agent on a router runs the modules' ``change`` functions with the
arguments a role saved, and the router has no Ansible to validate them. This
does what AnsibleModule does for the few spec features our specs use (type,
elements, options, default, choices, required), strictly: a saved state is
written by our roles, so anything else in it is a sign of a foreign or
damaged file, and is refused with the field named. (Two leniencies: a null
value is taken as "not given", as the roles' templates may write one, and
scalars are converted as Ansible converts them.)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.netpolicy.routing.plugins.module_utils._engine import InputError

# True and False also stand for 1 and 0 (equal keys).
BOOLEANS = {True: True, False: False, 'yes': True, 'no': False, 'true': True, 'false': False,
            'on': True, 'off': False, '1': True, '0': False}


def check_params(spec, params, field=''):
    """``params`` with defaults filled in and scalars converted, as AnsibleModule would give them.

    Raises InputError naming the first bad field (``field`` prefixes the names).
    """
    if not isinstance(params, dict):
        raise InputError(field.rstrip('.'), 'expected a mapping, got %r' % (params,))
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InputError(field + unknown[0], 'not an option (known: %s)' % ', '.join(sorted(spec)))
    result = {}
    for name, option in spec.items():
        value = params.get(name)
        if value is None:
            if option.get('required'):
                raise InputError(field + name, 'required')
            default = option.get('default')
            value = _copy(default)
            if value is None:
                result[name] = None
                continue
        result[name] = _convert(option, value, field + name)
    return result


def _convert(option, value, field):
    kind = option.get('type', 'str')
    if kind == 'list':
        # Strict where Ansible is lenient (it splits a string at commas, wraps a scalar):
        # our roles always write lists.
        if not isinstance(value, list):
            raise InputError(field, 'expected a list, got %r' % (value,))
        # choices of a list option apply to its elements, as in Ansible.
        elements = dict(option, type=option.get('elements', 'raw'))
        return [_convert(elements, item, '%s[%d]' % (field, index)) for index, item in enumerate(value)]
    if kind == 'dict':
        if 'options' in option:
            return check_params(option['options'], value, field + '.')
        if not isinstance(value, dict):
            raise InputError(field, 'expected a mapping, got %r' % (value,))
        return value
    converted = _scalar(kind, value, field)
    choices = option.get('choices')
    if choices is not None and converted not in choices:
        raise InputError(field, 'one of %s, got %r' % (', '.join(str(choice) for choice in choices), converted))
    return converted


def _scalar(kind, value, field):
    if kind == 'raw':
        return value
    if kind == 'str':
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind == 'int':
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif kind == 'bool':
        key = value.lower() if isinstance(value, str) else value
        # Only hashable scalars can be looked up: a list or a mapping is just not a bool.
        if isinstance(key, (str, int)) and key in BOOLEANS:
            return BOOLEANS[key]
    else:
        raise InputError(field, 'the spec has a type this check does not know: %s' % kind)
    raise InputError(field, 'expected %s, got %r' % (kind, value))


def _copy(value):
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value

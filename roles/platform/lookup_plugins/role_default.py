"""role_default: a variable's default as the role that owns it defines it.

The platform's wiring (roles/platform/defaults/main.yml) needs some settings
in every play, e.g. the app servers' port for the load balancers' upstreams,
the firewall matrix and the scrape targets, while the role that owns the
setting (roles/app) is only in its own tier's play. Instead of repeating the
literal, the wiring reads the owner's default:

    app_port: "{{ lookup('role_default', 'app', 'app_port') }}"

The value is returned as written in roles/<role>/defaults/main.yml, which
must be a literal (a templated default would be rendered in the wrong
context, so it is refused). The inventory still overrides the variable as
usual: the wiring sits at role-default precedence.
"""

from __future__ import annotations

import os

import yaml

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: role_default
short_description: the literal default of a variable in another role's defaults/main.yml
description:
  - Reads roles/<role>/defaults/main.yml next to the platform role and returns one variable's value.
options:
  _terms:
    description: the role name, then the variable name
    required: true
"""

# libyaml's loader where PyYAML has it (about ten times faster): the cache
# lives in one Ansible worker process, and each task's worker starts empty.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CACHE: dict[str, tuple[float, dict]] = {}
_ROLES_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _defaults(role: str) -> dict:
    path = os.path.join(_ROLES_DIR, role, "defaults", "main.yml")
    try:
        mtime = os.path.getmtime(path)
    except OSError as exc:
        raise AnsibleLookupError(f"role_default: no defaults file for role '{role}' ({path})") from exc
    cached = _CACHE.get(path)
    if cached is None or cached[0] != mtime:
        with open(path, encoding="utf-8") as handle:
            cached = (mtime, yaml.load(handle, Loader=_LOADER) or {})  # noqa: S506 (a safe loader)
        _CACHE[path] = cached
    return cached[1]


def role_default(role: str, name: str):
    defaults = _defaults(role)
    if name not in defaults:
        raise AnsibleLookupError(f"role_default: roles/{role}/defaults/main.yml has no '{name}'")
    value = defaults[name]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise AnsibleLookupError(f"role_default: roles/{role} default '{name}' is templated; only literals can be shared")
    return value


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if len(terms) != 2:
            raise AnsibleLookupError("role_default takes two terms: the role and the variable name")
        return [role_default(str(terms[0]), str(terms[1]))]

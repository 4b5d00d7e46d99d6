"""tier_roles: the roles this host runs in site.yml, read from the tier playbooks.

Preflight validates every role's inputs before any host changes. Instead of
listing the roles and their conditions a second time, it asks this lookup:
it reads site.yml and the playbooks it imports, and returns, in order and
once each, the roles of every play whose `hosts` pattern includes this host
and whose role-level `when` conditions hold for it (evaluated with the
host's variables, as the play would). Roles without a tasks/validate.yml
(this wiring role) are left out.

    loop: "{{ lookup('tier_roles', wantlist=True) }}"
"""

from __future__ import annotations

import os

import yaml

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template

DOCUMENTATION = r"""
name: tier_roles
short_description: the roles of site.yml's plays that apply to this host
description:
  - Parses site.yml and its imported playbooks; returns role names whose play targets this host and whose when holds.
options:
  _terms:
    description: optional path of the entry playbook relative to the project (default site.yml)
    required: false
"""

# libyaml's safe loader where PyYAML has it, as in role_default.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _plays(path: str) -> list[tuple[dict, str]]:
    """Every play of a playbook, following import_playbook, with its file."""
    with open(path, encoding="utf-8") as handle:
        entries = yaml.load(handle, Loader=_LOADER) or []  # noqa: S506 (a safe loader)
    plays = []
    for entry in entries:
        target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        if target:
            plays.extend(_plays(os.path.join(os.path.dirname(path), target)))
        else:
            plays.append((entry, path))
    return plays


def hosts_of(pattern, groups: dict) -> set[str]:
    """The hosts an Ansible host pattern names: groups or hosts joined by ':' or
    ',', intersected with '&name', excluded with '!name'."""
    if isinstance(pattern, list):
        pattern = ",".join(pattern)
    every = set(groups.get("all", []))

    def one(name: str) -> set[str]:
        if name in groups:
            return set(groups[name])
        return {name} & every

    result: set[str] = set()
    parts = [p.strip() for p in str(pattern).replace(",", ":").split(":") if p.strip()]
    for part in [p for p in parts if p[0] not in "&!"]:
        result |= one(part)
    for part in [p for p in parts if p[0] == "&"]:
        result &= one(part[1:])
    for part in [p for p in parts if p[0] == "!"]:
        result -= one(part[1:])
    return result


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        entry = os.path.join(_ROOT, str(terms[0]) if terms else "site.yml")
        host = variables.get("inventory_hostname")
        groups = variables.get("groups", {})
        if host is None:
            raise AnsibleLookupError("tier_roles needs a host context (inventory_hostname)")
        templar = self._templar.copy_with_new_env(available_variables=variables)
        names: list[str] = []
        for play, path in _plays(entry):
            if host not in hosts_of(play.get("hosts", ""), groups):
                continue
            for role in play.get("roles", []):
                name = role if isinstance(role, str) else role.get("role") or role.get("name")
                if name in names or not os.path.exists(os.path.join(_ROOT, "roles", name, "tasks", "validate.yml")):
                    continue
                conditions = [] if isinstance(role, str) else role.get("when", [])
                if not isinstance(conditions, list):
                    conditions = [conditions]
                try:
                    applies = all(templar.evaluate_conditional(trust_as_template(str(c))) for c in conditions)
                except Exception as exc:  # a broken condition names its play
                    raise AnsibleLookupError(f"tier_roles: cannot evaluate `when: {conditions}` of role {name} in {path}: {exc}") from exc
                if applies:
                    names.append(name)
        return names

"""When an acceptance test may skip, and when it must fail instead.

A test never skips because something it needs is missing: a tool on the
controller (hey, ssh-audit, chromium), a Python package (opensearch-py), a
port the firewall should open to the controller, Lynis on the audited host.
That is a failure, with the fix in its message.

A test skips only when its subject is absent from the inventory under test,
and says why:

- ``not_here(reason)``: this kind of host cannot have it at all (auditd in a
  container: the kernel's audit subsystem belongs to the initial PID
  namespace). Always a skip.
- ``not_configured(reason)``: the inventory does not configure it (a tier
  with no hosts, a feature switched off, production-sized ban times, no
  shared address). A skip against an inventory that is sized that way; a
  failure where the inventory is meant to exercise every test: the lab under
  ``scripts/test`` (``SEARCHPLAT_ACCEPTANCE_STRICT=1``) and any CI run
  (``CI`` set, as CI services do), so a regression in the lab's inventory
  can never turn a test into a skip there.

Running on one host of a tier instead of each (``pytest.mark.once``,
``pytest.mark.tier_representative``) is not a skip: conftest.py deselects
the other hosts' items at collection, as it does for hosts outside a
module's groups.
"""

from __future__ import annotations

import os

import pytest


def strict() -> bool:
    """True where every acceptance test must apply (scripts/test's lab, CI)."""
    if os.environ.get("SEARCHPLAT_ACCEPTANCE_STRICT", "") not in ("", "0"):
        return True
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def not_configured(reason: str):
    """Skip: the inventory under test does not configure what this test is
    about. Under strict() (the lab, CI) it fails instead."""
    if strict():
        pytest.fail(f"{reason}: the lab inventory must exercise every acceptance test "
                    "(SEARCHPLAT_ACCEPTANCE_STRICT or CI is set, so this is not a skip)", pytrace=False)
    pytest.skip(reason)


def not_here(reason: str):
    """Skip: this kind of host cannot have it (e.g. a container); always a skip."""
    pytest.skip(reason)

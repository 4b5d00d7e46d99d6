"""Every role's README documents every variable of its defaults.

- For each roles/<role>/defaults/main.yml, every top-level key that does not
  start with `_` (internals) appears in backticks (`name`) in
  roles/<role>/README.md.
- roles/platform's defaults are the wiring: its own settings (`platform_*`)
  must be listed under "## The platform's own settings", every other
  variable it sets (the shared settings it re-exposes and the inputs it
  wires into the tier roles) under "## What it wires".

A README that names a variable only inside a code block or without
backticks does not count.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES_DIR = PROJECT_ROOT / "roles"
ROLES = sorted(p.parent.parent.name for p in ROLES_DIR.glob("*/defaults/main.yml"))

PLATFORM_SETTINGS_SECTION = "The platform's own settings"
PLATFORM_WIRING_SECTION = "What it wires"


def _variables(role: str) -> list[str]:
    defaults = yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text()) or {}
    return [name for name in defaults if not str(name).startswith("_")]


def _documented(text: str) -> set[str]:
    """Every `name` in backticks outside fenced code blocks."""
    prose = re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return set(re.findall(r"`([^`\n]+)`", prose))


def _section(text: str, heading: str) -> str:
    """The body of the `## <heading>` section (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def _missing(names, documented) -> list[str]:
    return [name for name in names if name not in documented]


def test_roles_found():
    assert "platform" in ROLES and len(ROLES) > 10, ROLES


@pytest.mark.parametrize("role", ROLES)
def test_readme_documents_every_default(role):
    readme = ROLES_DIR / role / "README.md"
    assert readme.exists(), f"roles/{role}: README.md missing"
    missing = _missing(_variables(role), _documented(readme.read_text()))
    assert not missing, (
        f"roles/{role}/README.md does not document {len(missing)} variable(s) of defaults/main.yml "
        f"(add each in backticks with its default and meaning): {', '.join(missing)}")


def test_platform_readme_lists_settings_and_wiring():
    text = (ROLES_DIR / "platform" / "README.md").read_text()
    names = _variables("platform")
    problems = []
    for heading, wanted in (
            (PLATFORM_SETTINGS_SECTION, [n for n in names if n.startswith("platform_")]),
            (PLATFORM_WIRING_SECTION, [n for n in names if not n.startswith("platform_")])):
        body = _section(text, heading)
        if not body:
            problems.append(f'no section "## {heading}"')
            continue
        missing = _missing(wanted, _documented(body))
        if missing:
            problems.append(f'{len(missing)} variable(s) not listed under "## {heading}": {", ".join(missing)}')
    assert not problems, "roles/platform/README.md: " + "; ".join(problems)

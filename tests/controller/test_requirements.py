"""requirements.yml is satisfied by the collections the pinned `ansible` package bundles."""

import json
import pathlib
import subprocess

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion


def _installed() -> dict:
    out = subprocess.run(
        ["ansible-galaxy", "collection", "list", "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    found = {}
    for path_entries in json.loads(out).values():
        for name, meta in path_entries.items():
            found.setdefault(name, meta["version"])
    return found


def _allowed(version: str, spec: str) -> bool:
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           ">": lambda a, b: a > b, "==": lambda a, b: a == b}
    for clause in spec.split(","):
        clause = clause.strip()
        op = next(o for o in (">=", "<=", "==", ">", "<") if clause.startswith(o))
        if not ops[op](LooseVersion(version), LooseVersion(clause[len(op):])):
            return False
    return True


PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
REQUIREMENTS = yaml.safe_load((PROJECT_ROOT / "requirements.yml").read_text())["collections"]


@pytest.fixture(scope="module")
def installed():
    return _installed()


@pytest.mark.parametrize("req", REQUIREMENTS, ids=[r["name"] for r in REQUIREMENTS])
def test_collection_present_at_allowed_version(installed, req):
    assert req["name"] in installed, f"{req['name']} is not installed; add it to requirements.txt's ansible pin"
    assert _allowed(installed[req["name"]], req["version"]), (
        f"{req['name']} {installed[req['name']]} is outside {req['version']} in requirements.yml"
    )


def test_every_collection_used_is_required(project_root):
    """Each FQCN prefix used in roles/playbooks is listed in requirements.yml."""
    required = {r["name"] for r in REQUIREMENTS} | {"ansible.builtin"}
    used = set()
    for path in list((project_root / "roles").rglob("*.yml")) + list((project_root / "playbooks").rglob("*.yml")):
        if "molecule" in path.parts:
            continue
        for word in path.read_text().replace("'", " ").replace('"', " ").split():
            word = word.rstrip(":")
            parts = word.split(".")
            if len(parts) == 3 and parts[0] in {"ansible", "community"} and parts[1].isidentifier() and parts[2].isidentifier():
                used.add(".".join(parts[:2]))
    missing = used - required
    assert not missing, f"collections used but not in requirements.yml: {sorted(missing)}"

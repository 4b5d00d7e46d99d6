"""Controller-side tests: they run ansible on this machine, never on a real host."""

import os
import pathlib
import subprocess

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def project_root() -> pathlib.Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def ansible_env(tmp_path_factory) -> dict:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT_ROOT / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    # A fact cache of this test session's own (never the lab's): the
    # preflight cases all target the same container, so only the first run
    # of each worker gathers facts (ansible.cfg: gathering = smart).
    env["ANSIBLE_CACHE_PLUGIN"] = "jsonfile"
    env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(tmp_path_factory.mktemp("facts"))
    return env


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool from Debian's package, unpacked into the cache
    (scripts/lib/promtool.sh; nothing installed on the controller)."""
    result = subprocess.run([str(PROJECT_ROOT / "scripts" / "lib" / "promtool.sh"), "promtool"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"scripts/lib/promtool.sh could not provide promtool: {result.stderr}")
    return result.stdout.strip().splitlines()[-1]

"""Controller-side tests: they run ansible on this machine, never on a real host."""

import os
import pathlib

import pytest

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def project_root() -> pathlib.Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def ansible_env() -> dict:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(PROJECT_ROOT / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    # Keep the test's facts out of the lab's fact cache.
    env["ANSIBLE_CACHE_PLUGIN"] = "memory"
    return env

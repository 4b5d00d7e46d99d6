"""Inventories: secrets stay encrypted, the port matrix is the platform's, each parses."""

import json
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORIES = ["production", "staging"]


def test_no_plaintext_vault_committed():
    tracked = subprocess.run(["git", "ls-files", "inventories"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    for path in tracked:
        name = pathlib.Path(path).name
        if name.startswith("vault") and name.endswith((".yml", ".yaml")):
            assert (ROOT / path).read_text().startswith("$ANSIBLE_VAULT;"), f"{path} is committed unencrypted"


def test_generated_lab_files_are_ignored():
    for path in ["inventories/lab/hosts.yml", "inventories/lab/group_vars/all/lab_secrets.yml", ".lab/ssh/id_ed25519"]:
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert result.returncode == 0, f"{path} is not git-ignored"


@pytest.mark.parametrize("inv", INVENTORIES + ["lab"])
def test_port_matrix_is_the_platforms(inv):
    """The port matrix is derived once, in roles/platform, from the services'
    port variables; the example inventories add site rules
    (firewall_extra_rules) but do not copy the matrix, which would stop
    following the ports."""
    for path in sorted((ROOT / "inventories" / inv).rglob("*.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        if isinstance(data, dict):
            assert "firewall_group_rules" not in data, f"{path.relative_to(ROOT)} copies the platform's port matrix"


@pytest.mark.parametrize("inv", INVENTORIES)
def test_inventory_parses_with_required_groups(inv, ansible_env):
    out = subprocess.run(["ansible-inventory", "-i", f"inventories/{inv}", "--list"], cwd=ROOT,
                         env=ansible_env, capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    for group in ["loadbalancers", "app_servers", "opensearch", "monitoring"]:
        assert group in data, f"{inv}: group {group} missing"
    for host, hv in data["_meta"]["hostvars"].items():
        assert "private_address" in hv, f"{inv}: {host} has no private_address"

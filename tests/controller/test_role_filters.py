"""Unit tests of the roles' own filter plugins (pure functions)."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(role, module):
    path = ROOT / "roles" / role / "filter_plugins" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


hf = _load("hardening", "hardening_filters")

LOGIN_DEFS = """# comment
#UMASK is the default umask
UMASK\t\t022
PASS_MAX_DAYS\t99999
#SHA_CRYPT_MIN_ROUNDS 5000
UMASK 077
"""


def test_set_keys_replaces_the_active_line_and_drops_duplicates():
    out = hf.hardening_set_keys(LOGIN_DEFS, {"UMASK": "027"}, "\t")
    assert out.count("UMASK\t027") == 1
    assert "UMASK\t\t022" not in out and "UMASK 077" not in out
    assert "#UMASK is the default umask" in out  # comments stay


def test_set_keys_uncomments_or_appends():
    out = hf.hardening_set_keys(LOGIN_DEFS, {"SHA_CRYPT_MIN_ROUNDS": 65536, "NEW_KEY": "x"}, "\t")
    assert "SHA_CRYPT_MIN_ROUNDS\t65536" in out and "#SHA_CRYPT_MIN_ROUNDS" not in out
    assert out.endswith("NEW_KEY\tx\n")


def test_set_keys_is_idempotent():
    once = hf.hardening_set_keys(LOGIN_DEFS, {"UMASK": "027", "PASS_MAX_DAYS": 365}, "\t")
    assert hf.hardening_set_keys(once, {"UMASK": "027", "PASS_MAX_DAYS": 365}, "\t") == once


def test_set_keys_does_not_match_a_longer_key():
    out = hf.hardening_set_keys("max_log_file_action = ROTATE\n", {"max_log_file": 50})
    assert out == "max_log_file_action = ROTATE\nmax_log_file = 50\n"


def test_perm_drift_lists_only_existing_paths_that_differ():
    entries = [
        {"path": "/etc/passwd", "mode": "0644", "owner": "root", "group": "root"},
        {"path": "/etc/shadow", "mode": "0640", "owner": "root", "group": "shadow"},
        {"path": "/etc/crontab", "mode": "0600"},
        {"path": "/boot/grub/grub.cfg", "mode": "0400"},
    ]
    stat = ["644 root root /etc/passwd", "640 root root /etc/shadow", "644 root root /etc/crontab"]
    assert [e["path"] for e in hf.hardening_perm_drift(entries, stat)] == ["/etc/shadow", "/etc/crontab"]


fw = _load("firewall", "firewall")


def test_firewall_portless_vrrp_rule_is_valid_and_has_port_any():
    rule = {"proto": "vrrp", "from_groups": ["loadbalancers"], "comment": "VRRP"}
    assert fw.firewall_rule_problems([rule], "r", ["loadbalancers"], 22) == []
    desired = fw.firewall_desired_rules(
        {"loadbalancers": [rule]}, [], ["loadbalancers"], {"loadbalancers": ["lb1", "lb2"]},
        {"lb1": {"private_address": "10.0.0.11"}, "lb2": {"private_address": "10.0.0.12"}},
        "private_address", "managed:")
    assert [(r["proto"], r["port"], r["from_ip"]) for r in desired] == [
        ("vrrp", "any", "10.0.0.11"), ("vrrp", "any", "10.0.0.12")]


def test_firewall_vrrp_rule_recorded_by_ufw_is_not_missing():
    # The tuple UFW 0.36 writes for `ufw allow proto vrrp from 10.0.0.12 comment ...`
    comment = "managed: VRRP".encode().hex()
    current = fw.firewall_parse_ufw_rules(
        [f"### tuple ### allow vrrp any 0.0.0.0/0 any 10.0.0.12 in comment={comment}\n"])
    desired = [{"rule": "allow", "proto": "vrrp", "port": "any", "from_ip": "10.0.0.12", "comment": "managed: VRRP"}]
    assert fw.firewall_missing_rules(desired, current) == []
    assert fw.firewall_stale_rules(current, desired, "managed:") == []


def test_firewall_vrrp_rule_with_a_port_is_rejected():
    problems = fw.firewall_rule_problems([{"port": 112, "proto": "vrrp", "from_any": True}], "r", [], 22)
    assert problems == ["r[0]: proto vrrp has no ports; remove port"]


def test_firewall_rule_address_var_picks_another_host_variable_with_fallback():
    # The lab binds OpenSearch's transport to a 127.200.x address: the 9300
    # rule allows that address; a host without it falls back to private_address.
    rule = {"port": 9300, "proto": "tcp", "from_groups": ["opensearch"],
            "address_var": "opensearch_transport_address", "comment": "transport"}
    assert fw.firewall_rule_problems([rule], "r", ["opensearch"], 22) == []
    desired = fw.firewall_desired_rules(
        {"opensearch": [rule]}, [], ["opensearch"], {"opensearch": ["os1", "os2"]},
        {"os1": {"private_address": "10.0.0.31", "opensearch_transport_address": "127.200.0.31"},
         "os2": {"private_address": "10.0.0.32"}},
        "private_address", "managed:")
    assert [r["from_ip"] for r in desired] == ["127.200.0.31", "10.0.0.32"]


def test_firewall_rule_address_var_needs_from_groups():
    problems = fw.firewall_rule_problems(
        [{"port": 9300, "from_cidrs": ["10.0.0.0/8"], "address_var": "x"}], "r", [], 22)
    assert problems == ["r[0] address_var must be a host variable name and goes with from_groups only"]

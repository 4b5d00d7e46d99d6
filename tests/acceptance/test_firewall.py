"""Firewall (roles/firewall) on every host: policy, reachability, listeners.

The declared port matrix is `firewall_group_rules` (plus `firewall_extra_rules`)
as the platform resolves it for the host (roles/platform's matrix, or the
inventory's): a host gets the rules of `all` and of each of its groups.
From one host of each allowed group a TCP connect must get through (open or
refused); from a host in none of the allowed groups it must be filtered (the
connect times out). Every non-loopback listening socket must be declared.
"""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
import re

import pytest
from netprobe import tcp_probe, tcp_probe_many
from skips import not_configured

pytestmark = pytest.mark.groups("all")

def _name(host) -> str:
    return host.backend.get_hostname()


def _var(inventory, name, key, default):
    """An inventory value of the host (ansible-inventory, unrendered); a
    templated or absent value falls back to the role default given."""
    value = inventory.hostvars(name).get(key, default)
    if isinstance(value, str) and "{{" in value:
        return default
    return value


def _rules(inventory, name) -> list[dict]:
    group_rules = inventory.resolved(name, "firewall_group_rules") or {}
    groups = inventory.groups_of(name) | {"all"}
    rules = []
    for group, items in group_rules.items():
        if group in groups:
            rules.extend(items or [])
    rules.extend(inventory.resolved(name, "firewall_extra_rules") or [])
    return rules


def _ports(rule) -> tuple[int, int]:
    low, _, high = str(rule["port"]).partition(":")
    return int(low), int(high or low)


def _in_cidrs(address: str, cidrs) -> bool:
    addr = ipaddress.ip_address(address)
    return any(addr in ipaddress.ip_network(str(c), strict=False) for c in cidrs)


def test_ufw_active_default_deny(host):
    with host.sudo():
        out = host.check_output("ufw status verbose")
    assert "Status: active" in out
    assert "deny (incoming)" in out
    # UFW shows "disabled (routed)" while the kernel does not forward (a
    # plain host); otherwise the routed policy must be deny.
    assert re.search(r"(deny|disabled) \(routed\)", out), out
    assert 'DEFAULT_FORWARD_POLICY="DROP"' in host.file("/etc/default/ufw").content_string


def test_ssh_reachable_from_a_peer(host, inventory, peer):
    name = _name(host)
    sources = _var(inventory, name, "firewall_ssh_sources", ["any"])
    port = int(_var(inventory, name, "firewall_ssh_port", 22))
    address = inventory.address(name)
    for other in inventory.all_hosts():
        if other == name:
            continue
        other_addr = inventory.address(other)
        if "any" in sources or _in_cidrs(other_addr, [s for s in sources if s != "any"]):
            assert tcp_probe(peer(other), address, port) == "open", f"SSH from {other}"
            return
    not_configured("no other inventory host is inside firewall_ssh_sources")


def test_reachability_matrix(host, inventory, peer):
    """For each declared TCP port: allowed groups get through, others do not."""
    name = _name(host)
    address = inventory.address(name)
    everyone = [h for h in inventory.all_hosts() if h != name]
    # Union of the sources of all rules per port.
    ports: dict[int, dict] = {}
    for rule in _rules(inventory, name):
        if rule.get("proto", "tcp") != "tcp":
            continue  # a /dev/tcp connect cannot tell UDP filtered from open
        port = _ports(rule)[0]
        # A rule with address_var allows (and the service binds) that host
        # variable's address instead of the private one (the lab's
        # OpenSearch transport alias): allowed peers probe that address.
        dest = str(_var(inventory, name, rule["address_var"], "") or address) if "address_var" in rule else address
        entry = ports.setdefault(port, {"groups": set(), "cidrs": [], "any": False, "dest": dest})
        entry["groups"] |= set(rule.get("from_groups", []))
        entry["cidrs"] += list(rule.get("from_cidrs", []))
        entry["any"] |= bool(rule.get("from_any"))

    # (source host, port, expectation, why): one host of each allowed group
    # must get through; one host of each group with no allowed host must be
    # filtered.
    plan = []
    for port, src in sorted(ports.items()):
        allowed_hosts = set()
        for group in src["groups"]:
            allowed_hosts |= set(inventory.hosts_in(group))
        for group in sorted(src["groups"]):
            candidates = [h for h in inventory.hosts_in(group) if h != name]
            if candidates:
                plan.append((candidates[0], port, ("open", "refused"), f"{group}, allowed", src["dest"]))
        if src["any"]:
            continue
        denied = [
            h for h in everyone
            if h not in allowed_hosts and not _in_cidrs(inventory.address(h), src["cidrs"])
        ]
        seen_groups = set()
        for other in denied:
            key = frozenset(inventory.groups_of(other) - {"all", "ungrouped"})
            if key in seen_groups:
                continue
            seen_groups.add(key)
            # Other hosts reach this one only at its private address (a
            # 127.x destination never leaves them): UFW must drop that.
            plan.append((other, port, ("filtered",), "not allowed", address))

    if not ports:
        not_configured(f"no TCP rules declared for {name}")

    if not plan:
        not_configured(f"no other inventory host to probe {name}'s declared ports from")

    # One batch per source host, all sources at once: the filtered probes'
    # timeouts overlap instead of adding up.
    by_source: dict[str, list[tuple[str, int]]] = {}
    for source, port, _, _, dest in plan:
        by_source.setdefault(source, []).append((dest, port))
    with ThreadPoolExecutor(max_workers=len(by_source) or 1) as pool:
        futures = {source: pool.submit(tcp_probe_many, peer(source), targets)
                   for source, targets in by_source.items()}
        results = {source: future.result() for source, future in futures.items()}
    problems = [
        f"{port}/tcp to {dest} from {source} ({why}): {results[source][(dest, port)]}"
        for source, port, expected, why, dest in plan
        if results[source][(dest, port)] not in expected
    ]
    checked = len(plan)
    assert not problems, f"{checked} probes, unexpected:\n" + "\n".join(problems)


def test_no_unexpected_listening_ports(host, inventory):
    """Every socket listening outside loopback is declared."""
    name = _name(host)
    declared: set[tuple[str, int]] = set()
    declared.add(("tcp", int(_var(inventory, name, "firewall_ssh_port", 22))))
    for rule in _rules(inventory, name):
        if "port" not in rule:  # portless protocols (vrrp) listen on no port
            continue
        low, high = _ports(rule)
        for port in range(low, high + 1):
            declared.add((rule.get("proto", "tcp"), port))
    for item in _var(inventory, name, "firewall_unexposed_listen_ports", []) or []:
        port, _, proto = str(item).partition("/")
        declared.add((proto or "tcp", int(port)))

    unexpected = []
    for line in host.check_output("ss -H -tuln").splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        proto, local = fields[0], fields[4]
        addr, _, port = local.rpartition(":")
        addr = addr.strip("[]").split("%")[0]
        if addr not in ("*", "0.0.0.0", "::"):
            try:
                if ipaddress.ip_address(addr).is_loopback:
                    continue
            except ValueError:
                pass
        if (proto, int(port)) not in declared:
            unexpected.append(line.strip())
    assert not unexpected, (
        f"listening on {name} but not declared in firewall_group_rules/"
        f"firewall_extra_rules/firewall_unexposed_listen_ports:\n" + "\n".join(unexpected)
    )

"""Acceptance suite: one Testinfra suite for any inventory, organised by tier.

Run against the lab or any real inventory:

    pytest --hosts=ansible://all --ansible-inventory=inventories/staging tests/acceptance

Each module declares the inventory groups its tests apply to:

    pytestmark = pytest.mark.groups("opensearch")      # or "all"

and each test runs only on the hosts of those groups (ceph-ansible style), so
the same suite fits any topology. A group name must be one of the inventory
contract's groups (CONTRACT_GROUPS) or a group of the inventory: anything
else (a typo) fails collection, it never deselects the module. A test that
is about a whole tier marks itself ``pytest.mark.once`` (it runs on the
first host of the module's groups) or ``pytest.mark.tier_representative``
(one host per set of identical groups); the other hosts' items are
deselected. When a test may skip at all: skips.py. Fixtures:

- ``inventory``: groups, hosts and hostvars as ``ansible-inventory`` sees them
- ``peer``: ``peer("app1")`` is a Testinfra host for another inventory host,
  to run a command from there (reachability tests, attacks on fail2ban)
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import tempfile

import opensearchpy
import pytest
import testinfra
from disruption import lab_turn

PROJECT_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# Settings the tests read as the platform resolves them (Inventory.resolved).
RESOLVED = [
    "app_name", "app_port", "app_ready_path", "platform_loadbalancer_engine", "_platform_lb_server_names",
    "_platform_lb_https_port", "keepalived_virtual_ip", "firewall_group_rules", "firewall_extra_rules",
    "prometheus_private_address", "prometheus_web_port", "alertmanager_web_port", "platform_prometheus_user",
    "platform_alertmanager_user",
    "opensearch_http_port", "opensearch_app_user", "opensearch_monitoring_user", "opensearch_backup_user",
    "opensearch_restored_index_prefix",
    "backup_server_port", "rsyslog_relay_port", "rsyslog_relay_enabled", "rsyslog_tls_cert_file",
    "rsyslog_tls_key_file", "platform_logging_store", "platform_logging_reader_user",
    "platform_logging_writer_user", "platform_tls_protocols", "platform_tls_ciphers_tls12",
    "platform_tls_ciphers_tls13", "platform_tls_curves",
]

# The inventory contract's groups (docs/development.md). A marker may name
# one of them even when the inventory under test does not have it (a
# topology without that tier): its tests are then deselected everywhere.
CONTRACT_GROUPS = frozenset({
    "all", "loadbalancers", "app_servers", "opensearch", "opensearch_cluster_manager",
    "opensearch_data", "monitoring", "logging", "backup",
})


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "groups(*names): run only on hosts in one of these inventory groups ('all' = every host)"
    )
    config.addinivalue_line(
        "markers",
        "disruptive: changes what peers can reach (bans, stopped services); scripts/test runs these "
        "after the others, never beside a reachability test",
    )
    config.addinivalue_line(
        "markers", "once: a test of the whole tier; runs on the first host (by name) of the module's groups only"
    )
    config.addinivalue_line(
        "markers",
        "whole_lab: a disruptive test that takes every host (a power loss); it waits for the other disruptive "
        "tests and they wait for it (disruption.lab_turn)",
    )
    config.addinivalue_line(
        "markers",
        "tier_representative: runs on one host per set of identical groups (Inventory.tier_representative)",
    )


def _inventory_path(config) -> str:
    path = config.getoption("ansible_inventory", None) or os.environ.get("ANSIBLE_INVENTORY")
    if not path:
        raise pytest.UsageError("pass --ansible-inventory=inventories/<env>")
    return os.path.abspath(path)


class Inventory:
    """The inventory as Ansible resolves it (groups, children, hostvars)."""

    def __init__(self, path: str):
        self.path = path
        out = subprocess.run(
            ["ansible-inventory", "-i", path, "--list", "--export"],
            check=True,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        ).stdout
        data = json.loads(out)
        self._hostvars = data.get("_meta", {}).get("hostvars", {})
        self._groups: dict[str, set[str]] = {}

        def walk(group: str) -> set[str]:
            if group in self._groups:
                return self._groups[group]
            node = data.get(group, {})
            members = set(node.get("hosts", []))
            for child in node.get("children", []):
                members |= walk(child)
            self._groups[group] = members
            return members

        for name in data:
            if name != "_meta":
                walk(name)
        self._groups["all"] = set(self._hostvars) | self._groups.get("all", set())

    def all_hosts(self) -> list[str]:
        return sorted(self._groups["all"])

    def hosts_in(self, group: str) -> list[str]:
        return sorted(self._groups.get(group, set()))

    def groups(self) -> set[str]:
        return set(self._groups)

    def groups_of(self, host: str) -> set[str]:
        return {g for g, members in self._groups.items() if host in members}

    def playbook(self, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
        """ansible-playbook -i <this inventory> ARGS from the project root (a
        day-2 playbook, a converge), its output captured."""
        return subprocess.run(["ansible-playbook", "-i", self.path, *args], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=timeout)

    @functools.lru_cache(maxsize=None)
    def hostvars(self, host: str) -> dict:
        """Fully templated hostvars (group_vars and defaults resolved)."""
        out = subprocess.run(
            ["ansible-inventory", "-i", self.path, "--host", host],
            check=True,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        ).stdout
        return json.loads(out)

    @functools.cached_property
    def _resolved(self) -> dict:
        """Every host's RESOLVED variables as the platform resolves them, from
        one run of tests/acceptance/resolve_vars.yml (no module runs)."""
        # The project's settings, with JSON output and no timing callbacks.
        cfg = os.path.join(tempfile.mkdtemp(prefix="searchplat-resolve-"), "ansible.cfg")
        with open(os.path.join(PROJECT_ROOT, "ansible.cfg")) as src, open(cfg, "w") as dst:
            lines = [line for line in src.read().splitlines()
                     if not line.startswith(("callbacks_enabled", "stdout_callback", "roles_path"))]
            dst.write("\n".join(lines).replace(
                "[defaults]", f"[defaults]\nstdout_callback = ansible.posix.json\nroles_path = {PROJECT_ROOT}/roles", 1))
        env = dict(os.environ, ANSIBLE_CONFIG=cfg, ANSIBLE_STRATEGY="linear")
        out = subprocess.run(
            ["ansible-playbook", "-i", self.path, os.path.join(PROJECT_ROOT, "tests", "acceptance", "resolve_vars.yml"),
             "-e", json.dumps({"resolve_names": RESOLVED})],
            check=True, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env,
        ).stdout
        result = {}
        for play in json.loads(out)["plays"]:
            for task in play["tasks"]:
                for host, res in task["hosts"].items():
                    if isinstance(res.get("msg"), dict) and "resolved" in res["msg"]:
                        result[host] = {k: (None if v == "__undefined__" else v) for k, v in res["msg"]["resolved"].items()}
        return result

    def resolved(self, host: str, name: str):
        """A setting of `host` as the platform resolves it: the inventory's
        value, else the platform's wiring or the owning role's default.
        `name` must be listed in RESOLVED."""
        if name not in RESOLVED:
            raise KeyError(f"{name} is not in conftest.RESOLVED")
        return self._resolved[host].get(name)

    def tier_representative(self, host: str) -> bool:
        """True for the first host (by name) of the hosts in exactly the same groups.

        Hosts of one tier get the same configuration, so slow end-to-end tests
        (attacks, full audits) run on one representative host per tier.
        """
        same = [h for h in self.all_hosts() if self.groups_of(h) == self.groups_of(host)]
        return min(same) == host

    def secret(self, host: str, key: str) -> str:
        """A secret host variable; one `{{ vault_x }}` indirection is followed
        (ansible-inventory leaves group_vars templates unrendered)."""
        hv = self.hostvars(host)
        value = str(hv.get(key, ""))
        m = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value)
        return str(hv.get(m.group(1), "")) if m else value

    def address(self, host: str) -> str:
        hv = self.hostvars(host)
        return hv.get("private_address") or hv.get("ansible_host") or host


@pytest.fixture(scope="session")
def inventory(pytestconfig) -> Inventory:
    return Inventory(_inventory_path(pytestconfig))


@pytest.fixture(autouse=True)
def _lab_turn(request):
    """Disruptive tests share the lab; a whole_lab test has it alone."""
    if request.node.get_closest_marker("disruptive") is None:
        yield
        return
    with lab_turn(exclusive=request.node.get_closest_marker("whole_lab") is not None):
        yield


@pytest.fixture(scope="session")
def peer(pytestconfig):
    path = _inventory_path(pytestconfig)
    cache: dict[str, testinfra.host.Host] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = testinfra.get_host(f"ansible://{name}?ansible_inventory={path}")
        return cache[name]

    return get


def _host_of(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None or "_testinfra_host" not in callspec.params:
        return None
    return callspec.params["_testinfra_host"].backend.get_hostname()


@functools.lru_cache(maxsize=None)
def _inventory_at(path: str) -> Inventory:
    return Inventory(path)


def _session_inventory(config) -> Inventory | None:
    if not config.getoption("ansible_inventory", None):
        return None
    return _inventory_at(_inventory_path(config))


def _known_groups(config) -> set[str]:
    inv = _session_inventory(config)
    return set(CONTRACT_GROUPS) | (inv.groups() if inv else set())


def _marker_error(item, known: set[str]) -> str | None:
    marker = item.get_closest_marker("groups")
    if marker is None:
        return 'no groups marker: add pytestmark = pytest.mark.groups("<group>") (conftest.py)'
    if not marker.args:
        return "pytest.mark.groups() names no group"
    unknown = sorted({str(g) for g in marker.args} - known)
    if unknown:
        return (f"unknown group(s) {', '.join(unknown)} in pytest.mark.groups "
                f"(known: {', '.join(sorted(known))})")
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module or class whose tests have a missing or mistyped groups marker
    is a collection error: a typo must never deselect the module silently."""
    outcome = yield
    if not isinstance(collector, (pytest.Module, pytest.Class)):
        return
    report = outcome.get_result()
    if report.outcome != "passed":
        return
    known = _known_groups(collector.config)
    errors = sorted({f"{item.nodeid.split('[')[0]}: {error}" for item in report.result
                     if isinstance(item, pytest.Function) and (error := _marker_error(item, known))})
    if errors:
        report.outcome = "failed"
        report.longrepr = "acceptance groups markers:\n" + "\n".join(errors)
        report.result = []


def _module_hosts(inv: Inventory, groups) -> list[str]:
    if "all" in groups:
        return inv.all_hosts()
    return sorted(set().union(*(inv.hosts_in(g) for g in groups)))


def pytest_collection_modifyitems(config, items):
    """Deselect (host, test) pairs whose host is not in the test's groups, and
    the other hosts' items of tests marked once or tier_representative."""
    inv = _session_inventory(config)
    if inv is None:
        return
    keep, drop = [], []
    for item in items:
        groups = set(item.get_closest_marker("groups").args)
        host = _host_of(item)
        if host is None:
            keep.append(item)
            continue
        wanted = "all" in groups or bool(inv.groups_of(host) & groups)
        if wanted and item.get_closest_marker("once") is not None:
            wanted = host == _module_hosts(inv, groups)[0]
        if wanted and item.get_closest_marker("tier_representative") is not None:
            wanted = inv.tier_representative(host)
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# --- OpenSearch clients (the search cluster), for every tier's tests ------------------

OPENSEARCH_HTTP_PORT = 9200


@pytest.fixture(scope="session")
def platform_ca(inventory, peer):
    """The platform CA (/etc/ssl/searchplat/ca.crt on every host: the load
    balancers', the nodes' and every endpoint's certificates chain to it),
    as a local file."""
    with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as f:
        f.write(peer(inventory.all_hosts()[0]).file("/etc/ssl/searchplat/ca.crt").content_string)
    yield f.name
    os.unlink(f.name)


@pytest.fixture(scope="session")
def lbs(inventory, platform_ca):
    """Every load balancer: name, private address, public name (SNI, Host), HTTPS port, CA file."""
    names = sorted(inventory.hosts_in("loadbalancers"))
    assert names, "no loadbalancers in the inventory"
    return [{"name": name, "address": inventory.address(name),
             "server_name": inventory.resolved(name, "_platform_lb_server_names")[0],
             "port": int(inventory.resolved(name, "_platform_lb_https_port")), "ca": platform_ca}
            for name in names]


@pytest.fixture(scope="session")
def os_client(inventory, platform_ca):
    """client(user) -> an OpenSearch client over every node as that platform
    user (admin, app, monitoring, backup), or None for no credentials."""
    nodes = inventory.hosts_in("opensearch")
    hosts = [{"host": inventory.address(n), "port": OPENSEARCH_HTTP_PORT} for n in nodes]
    first = nodes[0]
    # The controller must be allowed to reach the HTTP port (see the module doc).
    if not _controller_reaches([inventory.address(n) for n in nodes]):
        pytest.fail(f"this controller cannot reach port {OPENSEARCH_HTTP_PORT} of any OpenSearch node (dropped: a "
                    "firewall rule for the controller is missing, or this host is not allowed; run from an "
                    "allowed host, e.g. a bastion in firewall_extra_rules)", pytrace=False)

    def client(user: str | None, **kwargs):
        auth = None
        if user:
            password = inventory.secret(first, f"opensearch_{user}_password")
            assert password, f"opensearch_{user}_password not found in the inventory"
            login = inventory.resolved(first, f"opensearch_{user}_user") if user != "admin" else "admin"
            auth = (str(login), password)
        return opensearchpy.OpenSearch(
            hosts=hosts, http_auth=auth, use_ssl=True, verify_certs=True, ca_certs=platform_ca,
            ssl_show_warn=False, timeout=kwargs.pop("timeout", 15), **kwargs)

    return client


def _controller_reaches(addresses) -> bool:
    """Whether the firewall lets the controller through to the HTTP port of
    any node. A refused connection passes too: the packet got through and the
    node is down (e.g. restarting in a disruptive test of another worker);
    only silence on every node (dropped by the firewall) means no."""
    for address in addresses:
        try:
            socket.create_connection((address, OPENSEARCH_HTTP_PORT), timeout=5).close()
            return True
        except (ConnectionRefusedError, ConnectionResetError):
            return True
        except OSError:  # a timeout: dropped, try the next node
            continue
    return False


@pytest.fixture(scope="session")
def admin(os_client):
    return os_client("admin")

"""The platform's wiring (roles/platform/defaults/main.yml) yields to the inventory.

Every variable the platform wires is set in a throw-away inventory, and a
probe task run *inside the role that consumes it* (the same role files, in
a copy of the project with one probe task file added to each role) reports
the value the role sees: it must be the inventory's. A second run changes
only the shared settings (ports, user names: each owned by one role) and
checks that everything derived from them follows: the load balancers'
upstreams and keepalived's tracked port, the scrape targets, the firewall
matrix, the app's OpenSearch URLs.

Static checks beside it: every wired variable is a documented input of the
role that consumes it (its argument spec), and no role's own
defaults/main.yml defines a variable the platform wires (a role default
would shadow the wiring inside that role's tasks).
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
PLATFORM_DEFAULTS = yaml.safe_load((ROLES / "platform" / "defaults" / "main.yml").read_text())
SHARED_RE = re.compile(r"^\{\{ lookup\('role_default', '(\w+)', '(\w+)'\) \}\}$")


def _spec_options(role: str) -> dict:
    path = ROLES / role / "meta" / "argument_specs.yml"
    if not path.exists():
        return {}
    specs = yaml.safe_load(path.read_text())["argument_specs"]
    options = {}
    for entry in specs.values():
        options.update(entry.get("options") or {})
    return options


SPECS = {p.name: _spec_options(p.name) for p in sorted(ROLES.iterdir()) if (p / "meta").is_dir()}
OWNER = {name: role for role, options in SPECS.items() if role != "platform" for name in options}


def _role_defaults(role: str) -> dict:
    path = ROLES / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


# Shared settings: `x: "{{ lookup('role_default', 'role', 'x') }}"`.
SHARED = {k: SHARED_RE.match(v).groups() for k, v in PLATFORM_DEFAULTS.items() if isinstance(v, str) and SHARED_RE.match(v)}
# Role inputs wired from the topology: not internal (_x), not the platform's
# own settings (platform_*), not shared settings.
WIRED = sorted(k for k in PLATFORM_DEFAULTS if not k.startswith(("_", "platform_")) and k not in SHARED)
PLATFORM_SETTINGS = sorted(k for k in PLATFORM_DEFAULTS if k.startswith("platform_"))


def test_every_wired_variable_is_an_input_of_a_role():
    undocumented = [k for k in WIRED + sorted(SHARED) if k not in OWNER]
    assert not undocumented, f"wired in roles/platform but no role's argument spec describes them: {undocumented}"


def test_platform_settings_are_described_in_its_spec():
    missing = [k for k in PLATFORM_SETTINGS if k not in SPECS["platform"]]
    assert not missing, f"roles/platform/meta/argument_specs.yml lacks: {missing}"


@pytest.mark.parametrize("name", WIRED)
def test_no_role_default_shadows_the_wiring(name):
    role = OWNER[name]
    assert name not in _role_defaults(role), (
        f"roles/{role}/defaults/main.yml defines {name}, which roles/platform wires: inside the role its own "
        f"default would win over the platform's; remove it there (argument spec: required)")


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_settings_read_their_owner(name):
    role, var = SHARED[name]
    assert var == name and OWNER.get(name) == role, f"{name} must read its own owner's default (roles/{OWNER.get(name)})"
    assert name in _role_defaults(role), f"roles/{role}/defaults/main.yml has no {name}"


# --- Dynamic: a throw-away inventory and a probe inside each role -------------------

# Hosts of every tier; local connection, nothing is contacted.
TOPOLOGY = {
    "loadbalancers": {"lb1": {"private_address": "10.9.0.11", "platform_loadbalancer_engine": "nginx"},
                      "lb2": {"private_address": "10.9.0.12", "platform_loadbalancer_engine": "haproxy"}},
    "app_servers": {"app1": {"private_address": "10.9.0.21"}, "app2": {"private_address": "10.9.0.22"}},
    "opensearch": {"os1": {"private_address": "10.9.0.31"}, "os2": {"private_address": "10.9.0.32"},
                   "os3": {"private_address": "10.9.0.33"}},
    "monitoring": {"mon1": {"private_address": "10.9.0.41"}},
    "snapshot_server": {"mon1": {}},
    "backup": {"mon1": {}},
    "logging": {"log1": {"private_address": "10.9.0.42"}},
}
BASE_VARS = {
    "ansible_connection": "local",
    "ansible_python_interpreter": "/usr/bin/python3",
    "keepalived_virtual_ip": "10.9.0.10",
    "opensearch_uid": 9200,
    "opensearch_gid": 9200,
    "platform_grafana_enabled": True,
    "platform_opensearch_dashboards_enabled": True,
    "platform_backup_rest_secret": "wiring-test-rest-secret",
    "platform_backup_repository_secret": "wiring-test-repository-secret",
    "platform_logging_writer_password": "wiring-test-writer",
    "platform_logging_reader_password": "wiring-test-reader",
    "platform_logging_curator_password": "wiring-test-curator",
    "platform_logging_dashboards_password": "wiring-test-dashboards",
}

PROBE = """---
- name: Probe | the wired variables as this role sees them
  ansible.builtin.debug:
    msg: >-
      {%- set ns = namespace(out={}) -%}
      {%- for n in _probe_names -%}
      {%-   set ns.out = ns.out | combine({n: lookup('ansible.builtin.vars', n)}) -%}
      {%- endfor -%}
      {{ {'probe': _probe_role, 'values': ns.out} }}
"""

PLAYBOOK = """---
- name: Probe
  hosts: all
  gather_facts: false
  roles:
    - role: platform
  tasks:
    - name: Probe each role this host runs
      ansible.builtin.include_role:
        name: "{{ _probe_role }}"
        tasks_from: _probe
      vars:
        _probe_names: "{{ probe_names[_probe_role] | default([]) }}"
      loop: "{{ lookup('tier_roles', wantlist=True) | select('in', probe_names) | list }}"
      loop_control:
        loop_var: _probe_role
    - name: Probe | platform-level values
      ansible.builtin.debug:
        msg: >-
          {%- set ns = namespace(out={}) -%}
          {%- for n in platform_probe_names -%}
          {%-   set ns.out = ns.out | combine({n: lookup('ansible.builtin.vars', n)}) -%}
          {%- endfor -%}
          {{ {'probe': 'platform', 'values': ns.out} }}
"""


def _sentinel(name: str, option: dict, index: int):
    kind = option.get("type", "str")
    if option.get("choices"):
        choices = [c for c in option["choices"] if c != option.get("default")]
        return choices[0]
    if kind == "int":
        return 40000 + index
    if kind == "bool":
        return True
    if kind == "list":
        return [{"sentinel": name}] if option.get("elements") == "dict" else [f"sentinel-{name}"]
    if kind == "dict":
        return {"sentinel": name}
    return f"sentinel-{name}"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project with a probe task file in every role."""
    dest = tmp_path_factory.mktemp("wiring")
    shutil.copytree(ROLES, dest / "roles", ignore=shutil.ignore_patterns("molecule", "__pycache__"))
    shutil.copytree(ROOT / "playbooks", dest / "playbooks")
    shutil.copy(ROOT / "site.yml", dest / "site.yml")
    for role in (dest / "roles").iterdir():
        (role / "tasks").mkdir(exist_ok=True)
        (role / "tasks" / "_probe.yml").write_text(PROBE)
    (dest / "probe.yml").write_text(PLAYBOOK)
    return dest


def _run(project, ansible_env, tmp_path, extra_vars: dict, probe_names: dict, platform_names: list):
    inventory = {"all": {"vars": {**BASE_VARS, **extra_vars,
                                  "probe_names": probe_names, "platform_probe_names": platform_names},
                         "children": {g: {"hosts": hosts} for g, hosts in TOPOLOGY.items()}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    # The project's settings, with JSON output and no timing callbacks.
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("\n".join(line for line in (ROOT / "ansible.cfg").read_text().splitlines()
                             if not line.startswith(("callbacks_enabled", "stdout_callback", "roles_path", "fact_caching"))
                             ).replace("[defaults]", "[defaults]\nstdout_callback = ansible.posix.json", 1))
    env = dict(ansible_env, ANSIBLE_CONFIG=str(cfg), ANSIBLE_ROLES_PATH=str(project / "roles"), ANSIBLE_STRATEGY="linear")
    result = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(project / "probe.yml")],
                            cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-4000:] + result.stderr[-2000:])
    seen: dict[tuple[str, str], dict] = {}
    for play in json.loads(result.stdout)["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                msg = res.get("msg")
                if isinstance(msg, dict) and "probe" in msg:
                    seen[(host, msg["probe"])] = msg["values"]
    return seen


def test_every_wired_variable_set_in_the_inventory_reaches_its_role(project, ansible_env, tmp_path):
    sentinels, probe_names = {}, {}
    for index, name in enumerate(WIRED):
        role = OWNER[name]
        sentinels[name] = _sentinel(name, SPECS[role][name], index)
        probe_names.setdefault(role, []).append(name)
    seen = _run(project, ansible_env, tmp_path, sentinels, probe_names, [])
    probed = {name for (host, role), values in seen.items() for name in values if role != "platform"}
    assert set(WIRED) <= probed, f"never probed in their role (no host runs it?): {sorted(set(WIRED) - probed)}"
    wrong = sorted({f"{role}@{host}: {name}={value!r}" for (host, role), values in seen.items()
                    for name, value in values.items() if value != sentinels[name]})
    assert not wrong, "the role does not see the inventory's value:\n" + "\n".join(wrong)


def test_platform_settings_set_in_the_inventory_take_effect(project, ansible_env, tmp_path):
    settings = {name: _sentinel(name, SPECS["platform"][name], i) for i, name in enumerate(PLATFORM_SETTINGS)
                if SPECS["platform"][name].get("type") not in ("list", "dict")}
    settings["platform_loadbalancer_engine"] = "nginx"  # a valid engine: the plays' conditions read it
    seen = _run(project, ansible_env, tmp_path, settings, {}, sorted(settings))
    # A host's own value (the topology's per-host engine) wins over the group's, as it should.
    per_host = {(h, k) for hosts in TOPOLOGY.values() for h, hv in hosts.items() for k in hv}
    wrong = sorted({f"{host}: {n}={v!r}" for (host, role), values in seen.items() for n, v in values.items()
                    if v != settings[n] and (host, n) not in per_host})
    assert seen and not wrong, "\n".join(wrong)


def test_shared_settings_drive_everything_derived_from_them(project, ansible_env, tmp_path):
    """The four wiring bugs of issue #14, each now derived from one source."""
    shared = {"app_port": 18000, "lb_haproxy_https_port": 8443, "lb_nginx_https_port": 9443,
              "node_exporter_port": 19100, "opensearch_http_port": 19200, "alertmanager_web_port": 19093,
              "opensearch_app_user": "searcher", "app_ready_path": "/healthz"}
    names = {"keepalived": ["keepalived_track_tcp_ports"],
             "lb_nginx": ["lb_nginx_upstream_servers", "lb_nginx_upstream_health_path"],
             "lb_haproxy": ["lb_haproxy_upstream_servers", "lb_haproxy_upstream_health_path"],
             "prometheus": ["prometheus_file_sd_targets", "prometheus_alertmanager_targets"],
             "app": ["app_env"],
             "firewall": ["firewall_group_rules"]}
    seen = _run(project, ansible_env, tmp_path, shared, names, [])
    # keepalived tracks the engine's own HTTPS port.
    assert seen[("lb1", "keepalived")]["keepalived_track_tcp_ports"] == [9443]
    assert seen[("lb2", "keepalived")]["keepalived_track_tcp_ports"] == [8443]
    # The load balancers' upstream port is the app's port; the health path its readiness path.
    for host, engine in (("lb1", "lb_nginx"), ("lb2", "lb_haproxy")):
        values = seen[(host, engine)]
        assert {s["port"] for s in values[f"{engine}_upstream_servers"]} == {18000}
        assert values[f"{engine}_upstream_health_path"] == "/healthz"
    # Scrape targets use the exporters' own port variables.
    targets = seen[("mon1", "prometheus")]["prometheus_file_sd_targets"]
    assert {t for group in targets["node"] for t in group["targets"]} == {
        f"10.9.0.{n}:19100" for n in (11, 12, 21, 22, 31, 32, 33, 41, 42)}
    assert {t for group in targets["app"] for t in group["targets"]} == {"10.9.0.21:18000", "10.9.0.22:18000"}
    assert targets["blackbox_app_ready"][0]["targets"] == ["http://10.9.0.21:18000/healthz", "http://10.9.0.22:18000/healthz"]
    assert sorted(targets["blackbox_https"][0]["targets"]) == ["https://10.9.0.11:9443/health", "https://10.9.0.12:8443/health"]
    assert seen[("mon1", "prometheus")]["prometheus_alertmanager_targets"] == ["10.9.0.41:19093"]
    # The firewall opens the same ports, on the listening hosts.
    app_rules = seen[("app1", "firewall")]["firewall_group_rules"]
    assert [r["port"] for r in app_rules["app_servers"]] == [18000]
    assert [r["port"] for r in app_rules["all"]] == [19100]
    assert 8443 in [r.get("port") for r in seen[("lb2", "firewall")]["firewall_group_rules"]["loadbalancers"]]
    # The app reaches OpenSearch on its HTTP port, as its app user.
    env = seen[("app1", "app")]["app_env"]
    assert env["SEARCHPLAT_OPENSEARCH_HOSTS"] == ",".join(f"https://10.9.0.{n}:19200" for n in (31, 32, 33))
    assert env["SEARCHPLAT_OPENSEARCH_USER"] == "searcher"
    # Search tries inside the load balancers' default per-try timeout (2 s).
    assert env["SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT"] == "0.90"


def test_the_apps_search_tries_fit_inside_the_load_balancers_try(project, ansible_env, tmp_path):
    """Two search tries per request at the app, both inside the shortest
    per-try timeout of the load balancers (nginx 1.5 s on lb1, HAProxy 3 s
    on lb2), 0.2 s to spare: a hung search node costs one short try there."""
    names = {"app": ["app_env"], "lb_nginx": ["lb_nginx_idempotent_try_timeout"],
             "lb_haproxy": ["lb_haproxy_idempotent_try_timeout"]}
    seen = _run(project, ansible_env, tmp_path, {"lb_nginx_idempotent_try_timeout": "1500ms",
                                                 "lb_haproxy_idempotent_try_timeout": "3s"}, names, [])
    assert seen[("lb1", "lb_nginx")]["lb_nginx_idempotent_try_timeout"] == "1500ms"
    env = seen[("app1", "app")]["app_env"]
    assert str(env["SEARCHPLAT_OPENSEARCH_MAX_RETRIES"]) == "1"
    assert env["SEARCHPLAT_OPENSEARCH_SEARCH_TIMEOUT"] == "0.65"


@pytest.mark.parametrize("enabled", [True, False], ids=["dashboards-on", "dashboards-off"])
def test_dashboards_server_account_on_the_log_store(project, ansible_env, tmp_path, enabled):
    """With OpenSearch Dashboards on, the log store gets its server account
    (platform_logging_dashboards_user, mapped to the security plugin's static
    role kibana_server) and Dashboards uses it; the reader stays for people.
    Off: no such account. The search cluster never gets the logging users."""
    names = {"opensearch": ["opensearch_extra_users", "opensearch_static_roles_allowed"],
             "opensearch_dashboards": ["opensearch_dashboards_opensearch_username",
                                       "opensearch_dashboards_opensearch_password"]}
    seen = _run(project, ansible_env, tmp_path, {"platform_opensearch_dashboards_enabled": enabled}, names, [])
    users = {u["name"]: (u["role"], u["password"]) for u in seen[("log1", "opensearch")]["opensearch_extra_users"]}
    expected = {"logwriter": ("searchplat_log_writer", "wiring-test-writer"),
                "logreader": ("searchplat_log_reader", "wiring-test-reader"),
                "logcurator": ("searchplat_log_curator", "wiring-test-curator")}
    if enabled:
        expected["dashboards_server"] = ("kibana_server", "wiring-test-dashboards")
    assert users == expected
    assert "kibana_server" in seen[("log1", "opensearch")]["opensearch_static_roles_allowed"]
    assert seen[("os1", "opensearch")]["opensearch_extra_users"] == []
    if enabled:
        assert seen[("log1", "opensearch_dashboards")] == {
            "opensearch_dashboards_opensearch_username": "dashboards_server",
            "opensearch_dashboards_opensearch_password": "wiring-test-dashboards"}
    else:
        assert ("log1", "opensearch_dashboards") not in seen


def test_firewall_peer_addresses_come_from_inventory_variables():
    """The firewall reads a peer's address through hostvars, which hold the
    inventory's values and facts but no role defaults: an address_var must
    be an inventory variable (e.g. opensearch_transport_host), never one of
    the platform's derived (_platform_*) values."""
    matrix = PLATFORM_DEFAULTS["_platform_firewall_matrix"]
    bad = [rule for rules in matrix.values() for rule in rules if str(rule.get("address_var", "")).startswith("_")]
    assert not bad, f"address_var must name an inventory variable: {bad}"


def test_tls_profile_reaches_every_wired_endpoint_in_its_librarys_names(project, ansible_env, tmp_path):
    """One profile (platform_tls_*), each endpoint in its own library's names:
    the load balancers in OpenSSL's, both OpenSearch clusters in JSSE's and
    Java's. The default is Mozilla intermediate: the LBs' former literals."""
    names = {"lb_nginx": ["lb_nginx_tls_protocols", "lb_nginx_tls_ciphers", "lb_nginx_tls_ciphersuites",
                          "lb_nginx_tls_curves"],
             "lb_haproxy": ["lb_haproxy_tls_min_version", "lb_haproxy_tls_ciphers", "lb_haproxy_tls_ciphersuites",
                            "lb_haproxy_tls_curves"],
             "opensearch": ["opensearch_tls_protocols", "opensearch_tls_ciphers", "opensearch_tls_curves"]}
    seen = _run(project, ansible_env, tmp_path, {}, names, [])
    intermediate12 = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                      "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
    tls13 = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    assert seen[("lb1", "lb_nginx")] == {
        "lb_nginx_tls_protocols": ["TLSv1.2", "TLSv1.3"], "lb_nginx_tls_ciphers": intermediate12,
        "lb_nginx_tls_ciphersuites": tls13, "lb_nginx_tls_curves": "X25519:prime256v1:secp384r1"}
    assert seen[("lb2", "lb_haproxy")] == {
        "lb_haproxy_tls_min_version": "TLSv1.2", "lb_haproxy_tls_ciphers": intermediate12,
        "lb_haproxy_tls_ciphersuites": tls13, "lb_haproxy_tls_curves": "X25519:prime256v1:secp384r1"}
    for host in ("os1", "log1"):  # the search cluster and the log store
        values = seen[(host, "opensearch")]
        assert values["opensearch_tls_protocols"] == ["TLSv1.2", "TLSv1.3"]
        assert values["opensearch_tls_ciphers"][:3] == tls13.split(":")
        assert values["opensearch_tls_ciphers"][3] == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        assert len(values["opensearch_tls_ciphers"]) == 9
        assert values["opensearch_tls_curves"] == ["x25519", "secp256r1", "secp384r1"]

    # A narrower profile in the inventory: every endpoint follows.
    profile = {"platform_tls_protocols": ["TLSv1.3"],
               "platform_tls_ciphers_tls12": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
               "platform_tls_ciphers_tls13": ["TLS_AES_256_GCM_SHA384"],
               "platform_tls_curves": ["secp384r1"]}
    seen = _run(project, ansible_env, tmp_path, profile, names, [])
    assert seen[("lb1", "lb_nginx")] == {
        "lb_nginx_tls_protocols": ["TLSv1.3"], "lb_nginx_tls_ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "lb_nginx_tls_ciphersuites": "TLS_AES_256_GCM_SHA384", "lb_nginx_tls_curves": "secp384r1"}
    assert seen[("lb2", "lb_haproxy")] == {
        "lb_haproxy_tls_min_version": "TLSv1.3", "lb_haproxy_tls_ciphers": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "lb_haproxy_tls_ciphersuites": "TLS_AES_256_GCM_SHA384", "lb_haproxy_tls_curves": "secp384r1"}
    assert seen[("os1", "opensearch")] == {
        "opensearch_tls_protocols": ["TLSv1.3"],
        "opensearch_tls_ciphers": ["TLS_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
        "opensearch_tls_curves": ["secp384r1"]}

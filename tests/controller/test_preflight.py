"""Broken inventories are rejected by preflight before any host is changed.

Each case starts from a valid inventory (every host is the same disposable
container, reached with the docker connection), breaks one thing, runs
preflight and asserts that:
  - the run fails with a message naming what to fix,
  - no play after preflight started and no task reported a change,
  - the container is untouched (nothing the common tier installs is there).
The cases in SITE_CASES (one per kind of check: the inventory contract, a
role's argument spec, a relation between tiers) run the whole site.yml,
which proves that its first play stops every later one; the others run
playbooks/preflight.yml, that same first play, without loading the tiers.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import uuid

import pytest
import yaml

TARGET = f"sp-preflight-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def target():
    image = os.environ.get("SEARCHPLAT_BASE_IMAGE")
    if not image:
        pytest.fail("SEARCHPLAT_BASE_IMAGE is not set: run through scripts/test")
    # The lowest CPU weight: beside the full stack (scripts/test runs this
    # stage in the background) the lab's containers come first.
    subprocess.run(["docker", "run", "-d", "--rm", "--cpu-shares", "2", "--name", TARGET, image, "sleep", "infinity"],
                   check=True, capture_output=True)
    yield TARGET
    subprocess.run(["docker", "rm", "-f", TARGET], capture_output=True)


def _host(address: str, **extra) -> dict:
    return {"ansible_connection": "community.docker.docker", "ansible_host": TARGET,
            "private_address": address, **extra}


# Four hosts: the three cluster managers and one host carrying the other
# tiers, the backup server and a one-node log store included (fewer hosts,
# faster cases; a host may be in several groups).
VALID = {
    "all": {
        "vars": {
            "ansible_python_interpreter": "/usr/bin/python3",
            "baseline_admin_users": [{"name": "deploy", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPreflightTestKey deploy@test"]}],
            "platform_loadbalancer_engine": "haproxy",
            "lb_haproxy_server_names": ["search.test.internal"],
            "lb_haproxy_stats_password": "preflight-test-only",
            **{f"opensearch_{u}_password": f"preflight-{u}-only" for u in ("admin", "app", "monitoring", "backup")},
            "platform_app_ingest_token": "preflight-ingest-token-only",
            "platform_prometheus_password": "preflight-prometheus-only",
            "platform_alertmanager_password": "preflight-alertmanager-only",
            "platform_backup_rest_secret": "preflight-rest-secret-only",
            "platform_backup_repository_secret": "preflight-repository-secret-only",
            **{f"platform_logging_{u}_password": f"preflight-log-{u}-only" for u in ("writer", "reader", "curator")},
        },
        "children": {
            "loadbalancers": {"hosts": {"svc1": _host("10.9.0.11")}},
            "app_servers": {"hosts": {"svc1": {}}},
            "opensearch": {"hosts": {"os1": _host("10.9.0.31"), "os2": _host("10.9.0.32"), "os3": _host("10.9.0.33")}},
            "monitoring": {"hosts": {"svc1": {}}},
            "backup": {"hosts": {"svc1": {}}},
            "logging": {"hosts": {"svc1": {}}},
        },
    }
}


# The same with a one-node search cluster (two hosts to validate instead of
# four: less CPU per case). Only the cases in CLUSTER_CASES, which count or name the
# other cluster nodes, start from VALID.
SMALL = copy.deepcopy(VALID)
del SMALL["all"]["children"]["opensearch"]["hosts"]["os2"]
del SMALL["all"]["children"]["opensearch"]["hosts"]["os3"]
SMALL["all"]["vars"]["platform_min_cluster_managers"] = 1
CLUSTER_CASES = {
    "even-cluster-managers", "even-managers-by-node-roles", "even-managers-child-group",
    "node-in-conflicting-roles", "too-few-cluster-managers", "missing-private-address",
    "opensearch-unknown-node-role",
}


def _children(inv):
    return inv["all"]["children"]


def _vars(inv):
    return inv["all"]["vars"]


def _missing_group(inv):
    del _children(inv)["app_servers"]


def _empty_group(inv):
    _children(inv)["monitoring"]["hosts"] = {}


def _even_managers(inv):
    _children(inv)["opensearch"]["hosts"]["os4"] = _host("10.9.0.34")


def _even_managers_by_roles(inv):
    _children(inv)["opensearch"]["hosts"]["os3"]["opensearch_node_roles"] = ["data", "ingest"]


def _even_managers_child_group(inv):
    _children(inv)["opensearch"]["children"] = {
        "opensearch_cluster_manager": {"hosts": {"os1": {}, "os2": {}}}}
    # os3 agrees with the group (not a manager): only the count is wrong.
    _children(inv)["opensearch"]["hosts"]["os3"]["opensearch_node_roles"] = ["data", "ingest"]


def _manager_group_vs_node_roles(inv):
    """os1 is listed as a cluster manager, but its roles say data only."""
    _children(inv)["opensearch"]["children"] = {
        "opensearch_cluster_manager": {"hosts": {"os1": {}, "os2": {}, "os3": {}}}}
    _children(inv)["opensearch"]["hosts"]["os1"]["opensearch_node_roles"] = ["data", "ingest"]


def _too_few_managers(inv):
    for h in ("os2", "os3"):
        del _children(inv)["opensearch"]["hosts"][h]


def _duplicate_address(inv):
    _children(inv)["loadbalancers"]["hosts"]["svc1"]["private_address"] = "10.9.0.31"


def _invalid_address(inv):
    _children(inv)["loadbalancers"]["hosts"]["svc1"]["private_address"] = "10.9.0.300"


def _missing_address(inv):
    del _children(inv)["opensearch"]["hosts"]["os2"]["private_address"]


def _unsupported_os(inv):
    _vars(inv)["platform_supported_os"] = {"Ubuntu": ["24.04"]}


def _bad_zone_type(inv):
    _children(inv)["loadbalancers"]["hosts"]["svc1"]["zone"] = 7


def _wrong_type(inv):
    _vars(inv)["platform_min_cluster_managers"] = "three"


def _admin_without_key(inv):
    _vars(inv)["baseline_admin_users"] = [{"name": "alice", "ssh_keys": []}]


def _firewall_rules(inv, rule):
    _vars(inv)["firewall_group_rules"] = {"opensearch": [rule]}


def _firewall_invalid_port(inv):
    _firewall_rules(inv, {"port": 70000, "proto": "tcp", "from_groups": ["app_servers"]})


def _firewall_invalid_cidr(inv):
    _firewall_rules(inv, {"port": 9200, "proto": "tcp", "from_cidrs": ["10.0.0.0/33"]})


def _firewall_unknown_group(inv):
    _firewall_rules(inv, {"port": 9200, "proto": "tcp", "from_groups": ["app_server"]})


def _firewall_unknown_group_key(inv):
    _vars(inv)["firewall_group_rules"] = {"opensearch_nodes": [
        {"port": 9200, "proto": "tcp", "from_groups": ["app_servers"]}]}


def _ssh_disabled_with_ufw(inv):
    _vars(inv)["firewall_ssh_enabled"] = False


def _weak_rsa_host_key(inv):
    _vars(inv)["hardening_ssh_rsa_key_bits"] = 2048


def _empty_kex(inv):
    _vars(inv)["hardening_ssh_kex_algorithms"] = []


def _unknown_lb_engine(inv):
    _vars(inv)["platform_loadbalancer_engine"] = "traefik"


def _tls_profile_without_tls13_suites(inv):
    _vars(inv)["platform_tls_ciphers_tls13"] = []


def _tls_profile_cbc_suite(inv):
    _vars(inv)["platform_tls_ciphers_tls12"] = ["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"]


def _lb_bad_rate(inv):
    _vars(inv)["lb_haproxy_rate_limit_per_second"] = 0


def _lb_no_app_servers(inv):
    _children(inv)["app_servers"]["hosts"] = {}


def _pki_long_validity(inv):
    _vars(inv)["pki_cert_validity_days"] = 400


def _vip_one_lb(inv):
    _vars(inv)["keepalived_virtual_ip"] = "10.9.0.10"


def _vrrp_password_too_long(inv):
    _children(inv)["loadbalancers"]["hosts"]["os1"] = {}
    _vars(inv)["keepalived_virtual_ip"] = "10.9.0.10"
    _vars(inv)["keepalived_auth_pass"] = "nine-char"


def _opensearch_heap_too_big(inv):
    _vars(inv)["opensearch_heap_size"] = "40g"


def _opensearch_unknown_method(inv):
    _vars(inv)["opensearch_install_method"] = "snap"


def _opensearch_archive_without_checksum(inv):
    _vars(inv)["opensearch_install_method"] = "archive"
    _vars(inv)["opensearch_archive_url"] = "https://example.invalid/opensearch-2.19.3.tar.gz"


def _opensearch_bad_node_role(inv):
    _children(inv)["opensearch"]["hosts"]["os2"]["opensearch_node_roles"] = ["cluster_manager", "master"]


def _opensearch_short_password(inv):
    _vars(inv)["opensearch_app_password"] = "short"


def _snapshot_server(inv):
    _children(inv)["snapshot_server"] = {"hosts": {"svc1": {}}}
    _vars(inv)["opensearch_uid"] = 9200
    _vars(inv)["opensearch_gid"] = 9200


def _nfs_client_not_an_address(inv):
    _snapshot_server(inv)
    _vars(inv)["platform_snapshot_extra_clients"] = ["backup.example.net"]


def _nfs_without_fixed_ids(inv):
    _snapshot_server(inv)
    del _vars(inv)["opensearch_uid"]


def _opensearch_uid_not_an_integer(inv):
    _vars(inv)["opensearch_uid"] = "opensearch"


def _bad_fail2ban_type(inv):
    _vars(inv)["fail2ban_maxretry"] = "many"


# (case id, mutation, regex the failure output must contain)
def _app_without_ingest_token(inv):
    del _vars(inv)["platform_app_ingest_token"]


def _app_reserved_port(inv):
    _vars(inv)["app_port"] = 9100


def _app_one_release_kept(inv):
    _vars(inv)["app_releases_keep"] = 1


def _monitoring_without_prometheus_password(inv):
    del _vars(inv)["platform_prometheus_password"]


def _monitoring_without_alertmanager_password(inv):
    del _vars(inv)["platform_alertmanager_password"]


def _tls_profile_without_a_go_suite(inv):
    _vars(inv)["platform_tls_ciphers_tls13"] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"]


def _lb_try_timeout_too_short(inv):
    _vars(inv)["lb_haproxy_idempotent_try_timeout"] = "500ms"


def _tls_profile_without_a_go_group(inv):
    _vars(inv)["platform_tls_curves"] = ["X448"]


def _monitoring_unknown_scrape_group(inv):
    _vars(inv)["platform_scrape_groups"] = ["all", "databases"]


def _prometheus_retention_not_a_duration(inv):
    _vars(inv)["prometheus_retention_time"] = "15 days"


def _alertmanager_unknown_receiver(inv):
    _vars(inv)["alertmanager_route_critical_receiver"] = "pagerduty"


def _backup_without_host(inv):
    del _children(inv)["backup"]


def _backup_without_secret(inv):
    _vars(inv)["platform_backup_repository_secret"] = ""


def _logging_without_relays(inv):
    _children(inv)["logging"]["hosts"] = {}


def _log_store_on_search_node(inv):
    _children(inv)["logging"]["hosts"] = {"os1": {}}


def _logging_unknown_source(inv):
    _vars(inv)["platform_logging_exclude_sources"] = ["mysql"]


def _logging_without_writer_password(inv):
    _vars(inv)["platform_logging_writer_password"] = ""


def _dashboards_on(inv):
    """OpenSearch Dashboards on, with every input it needs."""
    _vars(inv)["platform_opensearch_dashboards_enabled"] = True
    _vars(inv)["opensearch_dashboards_cookie_password"] = "preflight-cookie-key-of-32-characters-only"
    _vars(inv)["platform_logging_dashboards_password"] = "preflight-log-dashboards-only"


def _dashboards_short_reader_password(inv):
    """OpenSearch Dashboards on (people log in as the logging reader) with a
    reader password too short for the log store."""
    _dashboards_on(inv)
    _vars(inv)["platform_logging_reader_password"] = "short"


def _dashboards_without_server_password(inv):
    """OpenSearch Dashboards on without its server account's password (the
    log store's dashboards_server user, mapped to kibana_server)."""
    _dashboards_on(inv)
    del _vars(inv)["platform_logging_dashboards_password"]


def _snapshots_keep_none(inv):
    _vars(inv)["opensearch_snapshots_min_count"] = 0


CASES = [
    ("missing-group", _missing_group, r"Group 'app_servers' is missing or empty"),
    ("empty-group", _empty_group, r"Group 'monitoring' is missing or empty"),
    ("even-cluster-managers", _even_managers, r"has 4 cluster-manager-eligible node\(s\).*odd number"),
    ("even-managers-by-node-roles", _even_managers_by_roles, r"has 2 cluster-manager-eligible node\(s\) \(os1, os2\)"),
    ("even-managers-child-group", _even_managers_child_group, r"has 2 cluster-manager-eligible node\(s\)"),
    ("node-in-conflicting-roles", _manager_group_vs_node_roles,
     r"Host os1 is in the 'opensearch_cluster_manager' group, but its opensearch_node_roles .* lack cluster_manager"),
    ("too-few-cluster-managers", _too_few_managers, r"has 1 cluster-manager-eligible node\(s\).*at least 3"),
    ("duplicate-private-address", _duplicate_address, r"used by more than one host: 10\.9\.0\.31"),
    ("invalid-private-address", _invalid_address, r"Host svc1 has no valid 'private_address' \(got 10\.9\.0\.300\)"),
    ("missing-private-address", _missing_address, r"Host os2 has no valid 'private_address'"),
    ("unsupported-os", _unsupported_os, r"runs Debian 12.*does not support"),
    ("zone-not-a-string", _bad_zone_type, r"'zone' and 'site' must be non-empty strings"),
    ("wrong-variable-type", _wrong_type, r"platform_min_cluster_managers"),
    ("admin-user-without-key", _admin_without_key, r"user 'alice' has no usable ssh_keys"),
    ("firewall-invalid-port", _firewall_invalid_port, r"port 70000 is invalid"),
    ("firewall-invalid-cidr", _firewall_invalid_cidr, r"'10\.0\.0\.0/33' is not a valid IPv4/IPv6 address or CIDR"),
    ("firewall-unknown-group", _firewall_unknown_group, r"from_groups names unknown group 'app_server'"),
    ("firewall-unknown-group-key", _firewall_unknown_group_key, r"unknown group key\(s\): \['opensearch_nodes'\]"),
    ("ssh-disabled-while-ufw-on", _ssh_disabled_with_ufw, r"firewall_ssh_enabled is false while firewall_enabled is true"),
    ("weak-rsa-host-key", _weak_rsa_host_key, r"hardening_ssh_rsa_key_bits: 2048 is too small"),
    ("empty-kex-list", _empty_kex, r"an empty list would leave sshd with no usable algorithm"),
    ("fail2ban-wrong-type", _bad_fail2ban_type, r"fail2ban_maxretry"),
    ("unknown-lb-engine", _unknown_lb_engine, r"platform_loadbalancer_engine must be one of: nginx, haproxy, got: traefik"),
    ("tls-profile-version-without-suites", _tls_profile_without_tls13_suites,
     r"The platform's TLS profile is incomplete.*Every version listed needs its cipher suites"),
    ("tls-profile-cbc-suite", _tls_profile_cbc_suite,
     r"platform_tls_ciphers_tls12 must be one or more of.*TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    ("lb-invalid-rate", _lb_bad_rate, r"lb_haproxy_rate_limit_per_second"),
    ("lb-no-app-servers", _lb_no_app_servers, r"Group 'app_servers' is missing or empty"),
    ("certificate-validity-too-long", _pki_long_validity, r"pki_cert_validity_days"),
    ("shared-address-with-one-lb", _vip_one_lb, r"a shared address needs at least two"),
    ("vrrp-password-too-long", _vrrp_password_too_long, r"keepalived_auth_pass must be at most 8 printable characters"),
    ("opensearch-heap-above-31g", _opensearch_heap_too_big, r"opensearch_heap_size must be .*at most 31g"),
    ("opensearch-unknown-install-method", _opensearch_unknown_method, r"opensearch_install_method must be \"apt\""),
    ("opensearch-archive-without-checksum", _opensearch_archive_without_checksum, r"opensearch_archive_checksum to \"sha256:"),
    ("opensearch-unknown-node-role", _opensearch_bad_node_role, r"opensearch_node_roles must be a non-empty subset.*unknown: master"),
    ("opensearch-password-too-short", _opensearch_short_password, r"must each be 8 to 72 bytes"),
    ("opensearch-uid-not-an-integer", _opensearch_uid_not_an_integer,
     r"opensearch_uid \(got \W*opensearch\W*\) and opensearch_gid .* must each be empty .* or an integer 100-65533"),
    ("nfs-export-client-not-an-address", _nfs_client_not_an_address,
     r"client \W*backup\.example\.net\W* is not an IPv4 address or CIDR"),
    ("nfs-snapshot-server-without-fixed-uid", _nfs_without_fixed_ids,
     r"opensearch_uid and opensearch_gid must be set for the opensearch group"),
    ("app-without-ingest-token", _app_without_ingest_token, r"missing or empty SEARCHPLAT_INGEST_TOKEN"),
    ("app-port-reserved", _app_reserved_port, r"a port 1-65535 that no other service of the platform uses on the host"),
    ("app-one-release-kept", _app_one_release_kept, r"app_releases_keep at least 2, the current and the rollback target"),
    ("monitoring-without-prometheus-password", _monitoring_without_prometheus_password,
     r"platform_prometheus_password must be set, 8 to 72 bytes"),
    ("monitoring-without-alertmanager-password", _monitoring_without_alertmanager_password,
     r"platform_alertmanager_password must be set, 8 to 72 bytes"),
    ("tls-profile-without-a-go-tls13-suite", _tls_profile_without_a_go_suite,
     r"with TLSv1.3, all of TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256 "
     r"in platform_tls_ciphers_tls13"),
    ("lb-try-timeout-too-short", _lb_try_timeout_too_short,
     r"lb_haproxy_idempotent_try_timeout\) is 0.5 s: at least 1 s is needed"),
    ("tls-profile-without-a-go-group", _tls_profile_without_a_go_group,
     r"leaves Prometheus and Alertmanager .* without a way to speak it.*in platform_tls_curves \(\['X448'\]\) one of X25519"),
    ("monitoring-unknown-scrape-group", _monitoring_unknown_scrape_group,
     r"platform_scrape_groups names databases, which the inventory does not have"),
    ("prometheus-retention-not-a-duration", _prometheus_retention_not_a_duration, r"prometheus_retention_time"),
    ("alertmanager-unknown-receiver", _alertmanager_unknown_receiver, r"pagerduty"),
    ("backup-without-backup-host", _backup_without_host, r"the backup group has no host: add the backup host"),
    ("backup-without-repository-secret", _backup_without_secret,
     r"platform_backup_rest_secret and platform_backup_repository_secret must each be set from the vault"),
    ("logging-without-relays", _logging_without_relays, r"the logging group must have a host"),
    ("log-store-on-a-search-node", _log_store_on_search_node, r"hosts os1 are in both the opensearch and the logging group"),
    ("logging-unknown-excluded-source", _logging_unknown_source, r"platform_logging_exclude_sources names mysql, which is not a log source"),
    ("logging-without-writer-password", _logging_without_writer_password,
     r"every opensearch_extra_users password must each be 8 to 72 bytes"),
    ("dashboards-short-reader-password", _dashboards_short_reader_password,
     r"OpenSearch Dashboards is on \(platform_opensearch_dashboards_enabled\).*"
     r"platform_logging_reader_password set, 8 to 72 bytes \(got 5\)"),
    ("dashboards-without-server-password", _dashboards_without_server_password,
     r"OpenSearch Dashboards is on \(platform_opensearch_dashboards_enabled\).*"
     r"platform_logging_dashboards_password set, 8 to 72 bytes \(got 0\): vault_logging_dashboards_password"),
    ("snapshots-keep-none", _snapshots_keep_none, r"opensearch_snapshots_min_count must be at least 1 \(got 0\)"),
]


SITE_CASES = {"missing-group", "firewall-invalid-port", "backup-without-backup-host"}


def _run_playbook(tmp_path, inv, project_root, ansible_env, playbook="site.yml"):
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return subprocess.run(
        ["ansible-playbook", "-i", str(path), playbook],
        cwd=project_root, env=ansible_env, capture_output=True, text=True, timeout=600,
    )


def _assert_untouched(target_name, result):
    out = result.stdout + result.stderr
    assert not re.search(r"^PLAY \[(?!Preflight)", out, re.M), "a play after preflight started"
    recaps = re.findall(r"^\S+\s+: ok=\d+\s+changed=(\d+)", out, re.M)
    assert recaps and all(c == "0" for c in recaps), "a task reported a change"
    probe = subprocess.run(["docker", "exec", target_name, "dpkg-query", "-W", "-f=${Status}", "chrony"],
                           capture_output=True, text=True)
    assert "install ok installed" not in probe.stdout, "the common tier installed packages"


def test_site_and_cluster_cases_are_cases():
    assert SITE_CASES | CLUSTER_CASES <= {c[0] for c in CASES}


@pytest.mark.parametrize("case_id,mutate,expected", CASES, ids=[c[0] for c in CASES])
def test_broken_inventory_rejected_before_any_change(tmp_path, target, project_root, ansible_env,
                                                     case_id, mutate, expected):
    inv = copy.deepcopy(VALID if case_id in CLUSTER_CASES else SMALL)
    mutate(inv)
    playbook = "site.yml" if case_id in SITE_CASES else "playbooks/preflight.yml"
    result = _run_playbook(tmp_path, inv, project_root, ansible_env, playbook)
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"{case_id}: {playbook} succeeded on a broken inventory"
    assert re.search(expected, " ".join(out.split()), re.S), f"{case_id}: expected /{expected}/ in:\n{out[-3000:]}"
    _assert_untouched(target, result)


@pytest.mark.parametrize("base,mutate", [(VALID, lambda inv: None), (SMALL, lambda inv: None), (VALID, _dashboards_on)],
                         ids=["default", "one-search-node", "dashboards-on"])
def test_valid_inventory_passes_preflight(tmp_path, target, project_root, ansible_env, base, mutate):
    inv = copy.deepcopy(base)
    mutate(inv)
    result = _run_playbook(tmp_path, inv, project_root, ansible_env, "playbooks/preflight.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "changed=0" in result.stdout


# The day-2 playbook that drains an OpenSearch node refuses bad input before
# any change: no node named, a name that is not a node of the cluster, a
# cluster-manager-eligible node.
REMOVE_NODE_CASES = [
    ("no-node-named", {}, r"missing required arguments: opensearch_remove_node"),
    ("not-in-the-inventory", {"opensearch_remove_node": "os9"}, r"It is not a node of the play: check the name against the inventory"),
    ("cluster-manager", {"opensearch_remove_node": "os2"}, r"It is cluster-manager-eligible \(os1, os2, os3\)"),
]


@pytest.mark.parametrize("case_id,extra,expected", REMOVE_NODE_CASES, ids=[c[0] for c in REMOVE_NODE_CASES])
def test_remove_node_refuses_bad_input(tmp_path, target, project_root, ansible_env, case_id, extra, expected):
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(VALID, sort_keys=False))
    args = ["ansible-playbook", "-i", str(path), "playbooks/opensearch-remove-node.yml"]
    for key, value in extra.items():
        args += ["-e", f"{key}={value}"]
    result = subprocess.run(args, cwd=project_root, env=ansible_env, capture_output=True, text=True, timeout=600)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, f"{case_id}: the playbook accepted it"
    assert re.search(expected, out), f"{case_id}: expected /{expected}/ in:\n{out[-3000:]}"
    assert not re.search(r"changed=[1-9]", out), "a task reported a change"

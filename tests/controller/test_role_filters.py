"""Unit tests of the roles' own filter and lookup plugins (pure functions)."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(role, module, kind="filter_plugins"):
    path = ROOT / "roles" / role / kind / f"{module}.py"
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


# --- roles/platform: the wiring's filters and lookups --------------------------------

pf = _load("platform", "platform")

HOSTVARS = {
    "lb1": {"private_address": "10.0.0.11", "group_names": ["loadbalancers"], "zone": "a", "platform_loadbalancer_engine": "nginx"},
    "lb2": {"private_address": "10.0.0.12", "group_names": ["loadbalancers"], "site": "cloud"},
    "app1": {"private_address": "10.0.0.21", "group_names": ["app_servers"], "app_port": 9000},
    "app2": {"private_address": "10.0.0.22", "group_names": ["app_servers"]},
    "os1": {"private_address": "10.0.0.31", "opensearch_transport_host": "127.200.0.31"},
    "os2": {"private_address": "10.0.0.32", "opensearch_node_roles": ["data"]},
    "mon1": {"private_address": "10.0.0.41", "group_names": ["monitoring", "logging"]},
}


def test_endpoints_take_each_hosts_own_port_else_the_shared_default():
    assert pf.platform_endpoints(["app1", "app2"], HOSTVARS, "app_port", 8000) == [
        {"name": "app1", "address": "10.0.0.21", "port": 9000}, {"name": "app2", "address": "10.0.0.22", "port": 8000}]
    assert pf.platform_host_ports(["app1"], HOSTVARS, "app_port", 8000) == ["10.0.0.21:9000"]
    assert pf.platform_urls(["app2"], HOSTVARS, "http", "app_port", 8000, "/ready") == ["http://10.0.0.22:8000/ready"]


def test_scrape_targets_carry_instance_tier_zone_site():
    assert pf.platform_scrape_targets(["lb1", "mon1"], HOSTVARS, "node_exporter_port", 9100,
                                      ["loadbalancers", "monitoring", "logging"]) == [
        {"targets": ["10.0.0.11:9100"], "labels": {"instance": "lb1", "tier": "loadbalancers", "zone": "a"}},
        {"targets": ["10.0.0.41:9100"], "labels": {"instance": "mon1", "tier": "monitoring"}}]
    assert pf.platform_labels("app2", HOSTVARS, ["opensearch"]) == {"instance": "app2", "tier": "other"}


def test_engine_hosts_default_to_the_shared_engine():
    assert pf.platform_engine_hosts(["lb1", "lb2"], HOSTVARS, "haproxy", "haproxy") == ["lb2"]
    assert pf.platform_engine_hosts(["lb1", "lb2"], HOSTVARS, "nginx", "haproxy") == ["lb1"]


def test_transport_addresses_and_cluster_managers():
    assert pf.platform_transport_addresses(["os1", "os2"], HOSTVARS) == ["127.200.0.31", "10.0.0.32"]
    assert pf.platform_cluster_manager_nodes(["os1", "os2"], HOSTVARS) == ["os1"]
    assert pf.platform_hostvar("os2", HOSTVARS, "opensearch_http_port", 9200) == 9200


def test_firewall_matrix_keeps_only_the_inventorys_groups():
    matrix = {"all": [{"port": 9100, "from_groups": ["monitoring"]}],
              "opensearch": [{"port": 9200, "from_groups": ["app_servers", "backup"]},
                             {"port": 9300, "from_groups": ["opensearch"]}],
              "backup": [{"port": 8443, "from_groups": ["all"]}],
              "loadbalancers": [{"port": 443, "from_any": True}, {"port": 8404, "from_groups": ["backup"]}]}
    groups = {"all": [], "monitoring": [], "app_servers": [], "opensearch": [], "loadbalancers": []}
    assert pf.platform_existing_groups(matrix, groups) == {
        "all": [{"port": 9100, "from_groups": ["monitoring"]}],
        "opensearch": [{"port": 9200, "from_groups": ["app_servers"]}, {"port": 9300, "from_groups": ["opensearch"]}],
        "loadbalancers": [{"port": 443, "from_any": True}]}


PROFILE_TLS12 = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                 "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]


def test_tls_cipher_names_per_library():
    # The load balancers' former literal lists, now derived from the profile.
    assert ":".join(pf.platform_tls_cipher_names(PROFILE_TLS12, "openssl")) == (
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
    tls13 = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
    assert pf.platform_tls_cipher_names(tls13, "openssl") == tls13
    for library in ("iana", "java", "go"):
        assert pf.platform_tls_cipher_names(PROFILE_TLS12, library) == PROFILE_TLS12


def test_tls_curve_names_per_library():
    profile = ["X25519", "secp256r1", "secp384r1"]
    assert ":".join(pf.platform_tls_curve_names(profile, "openssl")) == "X25519:prime256v1:secp384r1"
    assert ",".join(pf.platform_tls_curve_names(profile, "java")) == "x25519,secp256r1,secp384r1"
    assert ",".join(pf.platform_tls_curve_names(profile, "go")) == "X25519,CurveP256,CurveP384"


def test_tls_names_refuse_what_they_cannot_translate():
    import pytest
    from ansible.errors import AnsibleFilterError
    with pytest.raises(AnsibleFilterError, match="unknown cipher suite.*TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"):
        pf.platform_tls_cipher_names(["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"], "openssl")
    with pytest.raises(AnsibleFilterError, match="library"):
        pf.platform_tls_cipher_names(PROFILE_TLS12, "gnutls")
    with pytest.raises(AnsibleFilterError, match="X448.*go"):
        pf.platform_tls_curve_names(["X448"], "go")
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        pf.platform_tls_curve_names("X25519:secp256r1", "openssl")


def _load_lookup(name):
    return _load("platform", name, "lookup_plugins")


def test_role_default_reads_the_owners_literal_and_refuses_templates():
    rd = _load_lookup("role_default")
    assert rd.role_default("app", "app_port") == 8000
    import pytest
    from ansible.errors import AnsibleLookupError
    with pytest.raises(AnsibleLookupError, match="templated"):
        rd.role_default("node_exporter", "node_exporter_listen_address")
    with pytest.raises(AnsibleLookupError, match="has no"):
        rd.role_default("app", "no_such_variable")


def test_tier_roles_host_patterns():
    tr = _load_lookup("tier_roles")
    groups = {"all": ["a", "b", "c"], "x": ["a", "b"], "y": ["b", "c"]}
    assert tr.hosts_of("x:y", groups) == {"a", "b", "c"}
    assert tr.hosts_of("x:&y", groups) == {"b"}
    assert tr.hosts_of("all:!x", groups) == {"c"}
    assert tr.hosts_of(["x", "c"], groups) == {"a", "b", "c"}


def test_tier_roles_reads_every_tier_playbook_of_site_yml():
    tr = _load_lookup("tier_roles")
    plays = tr._plays(str(ROOT / "site.yml"))
    roles = {r if isinstance(r, str) else r["role"] for play, _ in plays for r in play.get("roles", [])}
    assert {"baseline", "firewall", "opensearch", "app", "lb_nginx", "lb_haproxy", "keepalived", "prometheus"} <= roles
    assert all(play.get("roles", [{}])[0] in ({"role": "platform"}, "platform") for play, _ in plays if play.get("roles")), \
        "every play lists roles/platform first"


def test_opensearch_match_indices():
    oi = _load("opensearch", "opensearch_indices")
    assert oi.opensearch_match_indices(["search-a", "logs-x", ".sec"], ["search-*", ".sec"]) == ["search-a", ".sec"]
    assert oi.opensearch_match_indices(["a"], []) == []


def test_log_retention_picks_only_dated_indices_past_the_limit():
    import datetime as dt
    path = ROOT / "roles" / "rsyslog" / "files" / "usr" / "local" / "sbin" / "rsyslog-retention"
    spec = importlib.util.spec_from_loader("rsyslog_retention", loader=None)
    mod = importlib.util.module_from_spec(spec)
    exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
    names = ["logs-app-2026.11.01", "logs-app-2026.12.05", "logs-auth-2026.11.06", "logs-auth-2026.11.05",
             "logs-canary-bad.date", "search-documents", "logs-x-2026.02.30"]
    assert mod.expired(names, "logs", 30, dt.date(2026, 12, 6)) == ["logs-app-2026.11.01", "logs-auth-2026.11.05"]


# --- The TLS profile in Go's terms (Prometheus, Alertmanager) ------------------

def test_the_default_profile_in_go_terms():
    import yaml
    defaults = yaml.safe_load((ROOT / "roles" / "platform" / "defaults" / "main.yml").read_text())
    assert pf.platform_go_tls_min_version(defaults["platform_tls_protocols"]) == "TLS12"
    assert pf.platform_tls_cipher_names(defaults["platform_tls_ciphers_tls12"], "go", missing="drop") == PROFILE_TLS12
    assert pf.platform_tls_curve_names(defaults["platform_tls_curves"], "go", missing="drop") == [
        "X25519", "CurveP256", "CurveP384"]


def test_go_min_version_is_the_lowest_protocol():
    import pytest
    from ansible.errors import AnsibleFilterError
    assert pf.platform_go_tls_min_version(["TLSv1.3"]) == "TLS13"
    assert pf.platform_go_tls_min_version(["TLSv1.3", "TLSv1.2"]) == "TLS12"
    with pytest.raises(AnsibleFilterError, match="platform_tls_protocols"):
        pf.platform_go_tls_min_version(["SSLv3"])
    with pytest.raises(AnsibleFilterError, match="expected a list"):
        pf.platform_go_tls_min_version("TLSv1.2")


def test_what_go_lacks_is_dropped_on_request_and_typos_refused():
    """Mozilla's intermediate list also has DHE suites and X448, which Go does
    not implement: dropped for the Go endpoints, refused by default; a name
    in no table is refused either way."""
    import pytest
    from ansible.errors import AnsibleFilterError
    dhe, ecdhe = "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert pf.platform_tls_cipher_names([dhe, ecdhe], "go", missing="drop") == [ecdhe]
    assert pf.platform_tls_cipher_names([dhe, ecdhe], "java") == [dhe, ecdhe]
    assert pf.platform_tls_cipher_names([dhe], "go", missing="drop") == []
    with pytest.raises(AnsibleFilterError, match="not a suite go"):
        pf.platform_tls_cipher_names([dhe, ecdhe], "go")
    with pytest.raises(AnsibleFilterError, match="unknown cipher suite"):
        pf.platform_tls_cipher_names(["ECDHE-RSA-AES128-GCM-SHA256"], "go", missing="drop")
    assert pf.platform_tls_curve_names(["secp256r1", "X448", "secp521r1"], "go", missing="drop") == ["CurveP256", "CurveP521"]
    assert pf.platform_tls_curve_names(["X448"], "openssl") == ["X448"]
    with pytest.raises(AnsibleFilterError, match="unknown group"):
        pf.platform_tls_curve_names(["X25519", "secp999r1"], "go", missing="drop")
    with pytest.raises(AnsibleFilterError, match="missing"):
        pf.platform_tls_curve_names(["X25519"], "go", missing="ignore")


def test_the_profiles_choices_are_the_filters_tables():
    """The argument specs offer exactly the names the filters can translate."""
    import yaml
    spec = yaml.safe_load((ROOT / "roles" / "platform" / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["validate"]["options"]
    offered = set(options["platform_tls_ciphers_tls12"]["choices"]) | set(options["platform_tls_ciphers_tls13"]["choices"])
    assert offered == set(pf._SUITES)
    assert set(options["platform_tls_curves"]["choices"]) == set(pf._CURVES)


def test_seconds_of_nginx_and_haproxy_durations():
    import pytest
    from ansible.errors import AnsibleFilterError
    assert pf.platform_seconds("2s") == 2.0
    assert pf.platform_seconds("1500ms") == 1.5
    assert pf.platform_seconds("1m") == 60.0
    assert pf.platform_seconds("2") == 2.0            # nginx: seconds
    assert pf.platform_seconds("2000", "ms") == 2.0   # HAProxy: milliseconds
    for bad in ("", "2 sec", "-1s", "fast"):
        with pytest.raises(AnsibleFilterError, match="not a duration"):
            pf.platform_seconds(bad)


def test_opensearch_artifact_version_reads_archives_and_plugins(tmp_path):
    """The version an archive (top directory) or a plugin zip (its
    descriptor's opensearch.version) is for; "" for anything else."""
    import tarfile
    import zipfile

    av = _load("opensearch", "opensearch_artifact_version", "lookup_plugins").artifact_version
    dist = tmp_path / "opensearch-x.zip"
    with zipfile.ZipFile(dist, "w") as z:
        z.writestr("opensearch-2.19.4/bin/opensearch", "#!/bin/sh\n")
    plugin = tmp_path / "opensearch-security-x.zip"
    with zipfile.ZipFile(plugin, "w") as z:
        z.writestr("plugin-descriptor.properties", "name=opensearch-security\nversion=2.19.3.0\nopensearch.version=2.19.3\n")
    tgz = tmp_path / "opensearch-x.tar.gz"
    src = tmp_path / "opensearch-2.18.0"
    src.mkdir()
    (src / "README").write_text("x")
    with tarfile.open(tgz, "w:gz") as t:
        t.add(src, arcname="opensearch-2.18.0")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("something/else", "x")
    assert av(str(dist)) == "2.19.4"
    assert av(str(plugin)) == "2.19.3"
    assert av(str(tgz)) == "2.18.0"
    assert av(str(other)) == ""
    assert av(str(tmp_path / "missing.zip")) == ""
    (tmp_path / "text").write_text("not an archive")
    assert av(str(tmp_path / "text")) == ""

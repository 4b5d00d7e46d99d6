"""roles/opensearch_dashboards renders a sound configuration and sound saved objects.

OpenSearch Dashboards cannot be installed on the test machine (no package is
reachable: roles/opensearch_dashboards/README.md), and it has no offline
configuration checker, so the role is checked here, on the controller, with
Ansible itself:

  - `ansible-playbook` on localhost renders the role's templates with the
    role's defaults and vars (ansible.builtin.template, the role's filter
    plugins) and typical wired inputs, in three variants: HTTPS, plain HTTP,
    extra settings; a password full of YAML specials round-trips;
  - the systemd drop-in is accepted by systemd-analyze verify on the
    package's unit (an unknown directive would be reported);
  - each rendered opensearch_dashboards.yml passes the configuration test the
    role runs as the template's `validate:` (the same script), is YAML with
    the keys and values the role promises; the test itself rejects broken
    files (duplicate key, http URL, missing keys, ...) without printing a
    secret;
  - the saved-objects ndjson: every line a JSON object, the index pattern
    first, one saved search per log source the platform ships, each
    referring to the index pattern, each with a DQL query on its source;
    the role's filters read it back and pick exactly the missing or changed
    objects from a _bulk_get answer;
  - the `validate` entry point (argument spec + tasks/validate.yml) accepts
    the defaults with wired inputs and rejects bad relations with a message
    naming the variable.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "opensearch_dashboards"
TEMPLATES = ROLE / "templates"
CONFIG_TEST = ROLE / "files" / "usr" / "local" / "sbin" / "opensearch-dashboards-config-test"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
RSYSLOG_DEFAULTS = ROOT / "roles" / "rsyslog" / "defaults" / "main.yml"
PLATFORM_DEFAULTS = yaml.safe_load((ROOT / "roles" / "platform" / "defaults" / "main.yml").read_text())

# The log sources the platform ships (the `source` field of the relays'
# documents, index logs-<source>-YYYY.MM.DD): the journal's sources from
# roles/rsyslog (auth, kernel, haproxy, app and the default, system) and the
# files the platform ships with imfile (nginx's access log, OpenSearch's logs).
PLATFORM_SOURCES = {"auth", "kernel", "haproxy", "app", "system", "nginx", "opensearch"}

PASSWORD = 'r3ad "only" #: {x} [y], \'q\' \\ & *a !b %c @d `e` |f >g'
COOKIE = "c00kie-key-of-at-least-32-characters-" + "x" * 8
WIRED = {
    "opensearch_dashboards_private_address": "10.20.5.11",
    "opensearch_dashboards_opensearch_hosts": ["https://10.20.5.11:9200", "https://10.20.5.12:9200"],
    "opensearch_dashboards_ca_file": "/etc/ssl/searchplat/ca.crt",
    "opensearch_dashboards_opensearch_username": "logreader",
    "opensearch_dashboards_opensearch_password": PASSWORD,
    "opensearch_dashboards_cookie_password": COOKIE,
    "opensearch_dashboards_tls_cert_file": "/etc/ssl/searchplat/opensearch-dashboards-fullchain.crt",
    "opensearch_dashboards_tls_key_file": "/etc/ssl/searchplat/opensearch-dashboards.key",
    "opensearch_dashboards_log_sources": sorted(PLATFORM_SOURCES | {"nginx-error"}),
}

RENDER_PLAYBOOK = """
- name: Render the opensearch_dashboards templates
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
    - {out}/wired.yml
  tasks:
    - name: opensearch_dashboards.yml (HTTPS)
      ansible.builtin.template:
        src: {templates}/etc/opensearch-dashboards/opensearch_dashboards.yml.j2
        dest: {out}/https.yml
        mode: "0600"
    - name: opensearch_dashboards.yml (plain HTTP)
      ansible.builtin.template:
        src: {templates}/etc/opensearch-dashboards/opensearch_dashboards.yml.j2
        dest: {out}/http.yml
        mode: "0600"
      vars:
        opensearch_dashboards_tls_cert_file: ""
        opensearch_dashboards_tls_key_file: ""
    - name: opensearch_dashboards.yml (extra settings, tenants)
      ansible.builtin.template:
        src: {templates}/etc/opensearch-dashboards/opensearch_dashboards.yml.j2
        dest: {out}/extra.yml
        mode: "0600"
      vars:
        opensearch_dashboards_multitenancy_enabled: true
        opensearch_dashboards_extra_settings:
          opensearch.pingTimeout: 3000
          uiSettings.overrides: {{"theme:darkMode": true}}
    - name: saved objects
      ansible.builtin.template:
        src: {templates}/etc/opensearch-dashboards/searchplat/saved-objects.ndjson.j2
        dest: {out}/saved-objects.ndjson
        mode: "0600"
    - name: saved objects without the sources the platform does not ship (auth, nginx excluded)
      ansible.builtin.template:
        src: {templates}/etc/opensearch-dashboards/searchplat/saved-objects.ndjson.j2
        dest: {out}/saved-objects-excluded.ndjson
        mode: "0600"
      vars:
        opensearch_dashboards_log_sources: [kernel, haproxy, app, system, nginx-error, opensearch]
    - name: saved objects as the role reads them (lookup + the role's filter)
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{templates}/' ~ _opensearch_dashboards_saved_objects_template) | opensearch_dashboards_ndjson | to_json }}}}"
        dest: {out}/desired.json
        mode: "0600"
    - name: systemd drop-in
      ansible.builtin.template:
        src: {templates}/etc/systemd/system/opensearch-dashboards.service.d/searchplat.conf.j2
        dest: {out}/searchplat.conf
        mode: "0600"
    - name: apt preferences
      ansible.builtin.template:
        src: {templates}/etc/apt/preferences.d/opensearch-dashboards.pref.j2
        dest: {out}/opensearch-dashboards.pref
        mode: "0600"
"""

VALIDATE_PLAYBOOK = """
- name: The validate entry point of opensearch_dashboards
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {out}/inputs.yml
  tasks:
    - name: Validate
      ansible.builtin.include_role:
        name: opensearch_dashboards
        tasks_from: validate
"""


def _env(ansible_env: dict, tmp: pathlib.Path, json_output: bool = False) -> dict:
    """The project's settings without timing callbacks and fact cache;
    ansible-playbook on localhost only (the lab inventory is never read)."""
    cfg = tmp / "ansible.cfg"
    lines = [line for line in (ROOT / "ansible.cfg").read_text().splitlines()
             if not line.startswith(("callbacks_enabled", "stdout_callback", "fact_caching", "inventory"))]
    text = "\n".join(lines)
    if json_output:
        text = text.replace("[defaults]", "[defaults]\nstdout_callback = ansible.posix.json", 1)
    cfg.write_text(text + "\n")
    return dict(ansible_env, ANSIBLE_CONFIG=str(cfg), ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
                ANSIBLE_FILTER_PLUGINS=str(ROLE / "filter_plugins"),
                ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="false")


def _playbook(ansible_env, tmp: pathlib.Path, text: str, json_output=False) -> subprocess.CompletedProcess:
    (tmp / "play.yml").write_text(text)
    return subprocess.run(["ansible-playbook", "-i", "localhost,", str(tmp / "play.yml")],
                          cwd=tmp, env=_env(ansible_env, tmp, json_output), capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def rendered(ansible_env, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("opensearch_dashboards")
    (out / "wired.yml").write_text(yaml.safe_dump(WIRED))
    result = _playbook(ansible_env, out, RENDER_PLAYBOOK.format(role=ROLE, templates=TEMPLATES, out=out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out


def _config(rendered, name="https.yml") -> dict:
    return yaml.safe_load((rendered / name).read_text())


def _config_test(path: pathlib.Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CONFIG_TEST), str(path), *args],
                          capture_output=True, text=True, check=False, timeout=60)


# --- opensearch_dashboards.yml --------------------------------------------------

@pytest.mark.parametrize("name", ["https.yml", "http.yml", "extra.yml"])
def test_rendered_configuration_passes_the_roles_configuration_test(rendered, name):
    result = _config_test(rendered / name)
    assert result.returncode == 0, result.stderr


def test_https_configuration_has_the_required_keys_and_values(rendered):
    config = _config(rendered)
    assert config["server.host"] == "10.20.5.11"
    assert config["server.port"] == DEFAULTS["opensearch_dashboards_port"] == 5601
    assert config["server.ssl.enabled"] is True
    assert config["server.ssl.certificate"] == "/etc/opensearch-dashboards/certs/dashboards.crt"
    assert config["server.ssl.key"] == "/etc/opensearch-dashboards/certs/dashboards.key"
    assert config["server.ssl.supportedProtocols"] == ["TLSv1.2", "TLSv1.3"]
    assert config["server.ssl.cipherSuites"] == DEFAULTS["opensearch_dashboards_tls_ciphers"]
    assert config["opensearch.hosts"] == WIRED["opensearch_dashboards_opensearch_hosts"]
    assert config["opensearch.ssl.verificationMode"] == "full"
    assert config["opensearch.ssl.certificateAuthorities"] == ["/etc/ssl/searchplat/ca.crt"]
    assert config["opensearch.username"] == "logreader"
    assert config["opensearch.password"] == PASSWORD, "the password must round-trip through YAML unchanged"
    assert config["opensearch_security.cookie.password"] == COOKIE
    assert config["opensearch_security.cookie.secure"] is True
    assert config["opensearch_security.multitenancy.enabled"] is False
    assert "opensearch_security.multitenancy.tenants.preferred" not in config
    assert config["opensearch_security.readonly_mode.roles"] == ["kibana_read_only"]
    assert [h.lower() for h in config["opensearch.requestHeadersAllowlist"]] == ["authorization", "securitytenant"]
    assert config["opensearch.requestTimeout"] == 30000


def test_mozilla_intermediate_ciphers_by_default():
    ciphers = DEFAULTS["opensearch_dashboards_tls_ciphers"]
    assert {c for c in ciphers if c.startswith("TLS_")} == {
        "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
    legacy = [c for c in ciphers if not c.startswith("TLS_")]
    assert legacy and all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in legacy)
    assert DEFAULTS["opensearch_dashboards_tls_protocols"] == ["TLSv1.2", "TLSv1.3"]


def test_plain_http_variant_has_no_certificate_and_no_secure_cookie(rendered):
    config = _config(rendered, "http.yml")
    assert config["server.ssl.enabled"] is False
    assert not any(key.startswith("server.ssl.") and key != "server.ssl.enabled" for key in config)
    assert config["opensearch_security.cookie.secure"] is False
    assert config["opensearch.ssl.verificationMode"] == "full", "the log cluster stays on verified HTTPS"


def test_extra_settings_and_tenants(rendered):
    config = _config(rendered, "extra.yml")
    assert config["opensearch.pingTimeout"] == 3000
    assert config["uiSettings.overrides"] == {"theme:darkMode": True}
    assert config["opensearch_security.multitenancy.enabled"] is True
    assert config["opensearch_security.multitenancy.tenants.preferred"] == ["Global", "Private"]


def test_configuration_test_checks_files_on_the_host(rendered, tmp_path):
    pem = tmp_path / "ca.crt"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    text = (rendered / "https.yml").read_text()
    config = tmp_path / "opensearch_dashboards.yml"
    config.write_text(text)
    missing = _config_test(config, "--check-files")
    assert missing.returncode == 1 and "no such file" in missing.stderr
    for path in ("/etc/ssl/searchplat/ca.crt", "/etc/opensearch-dashboards/certs/dashboards.crt",
                 "/etc/opensearch-dashboards/certs/dashboards.key"):
        text = text.replace(json.dumps(path), json.dumps(str(pem)))
    config.write_text(text)
    result = _config_test(config, "--check-files")
    assert result.returncode == 0, result.stderr
    pem.write_text("not a certificate\n")
    assert "not a PEM file" in _config_test(config, "--check-files").stderr


BROKEN = {
    "duplicate key": lambda t: t + 'opensearch.username: "other"\n',
    "not YAML": lambda t: t + "server.name: [unclosed\n",
    "http log cluster": lambda t: t.replace('"https://10.20.5.11:9200"', '"http://10.20.5.11:9200"'),
    "no password": lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("opensearch.password:")),
    "short cookie key": lambda t: t.replace(json.dumps(COOKIE), '"short"'),
    "verification off": lambda t: t.replace("opensearch.ssl.verificationMode: full", "opensearch.ssl.verificationMode: none"),
    "TLS without key": lambda t: "\n".join(l for l in t.splitlines() if not l.startswith("server.ssl.key:")),
    "insecure cookie with TLS": lambda t: t.replace("opensearch_security.cookie.secure: true",
                                                    "opensearch_security.cookie.secure: false"),
    "privileged port": lambda t: t.replace("server.port: 5601", "server.port: 443"),
    "TLS 1.0": lambda t: t.replace('["TLSv1.2", "TLSv1.3"]', '["TLSv1", "TLSv1.2"]'),
    "no authorization header": lambda t: t.replace('["authorization", "securitytenant"]', '["securitytenant"]'),
    "not a mapping": lambda t: "- a\n- b\n",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_configuration_test_rejects_broken_files_without_printing_secrets(rendered, tmp_path, case):
    path = tmp_path / "opensearch_dashboards.yml"
    path.write_text(BROKEN[case]((rendered / "https.yml").read_text()))
    result = _config_test(path)
    assert result.returncode == 1, f"{case}: accepted\n{result.stderr}"
    assert result.stderr.strip(), f"{case}: rejected without a message"
    assert PASSWORD not in result.stderr and COOKIE not in result.stderr and "r3ad" not in result.stderr


def test_configuration_test_usage():
    assert _config_test(pathlib.Path("a"), "b").returncode == 2


# --- systemd drop-in and apt pinning ---------------------------------------------

def test_dropin_hardens_the_service(rendered):
    text = (rendered / "searchplat.conf").read_text()
    lines = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in text.splitlines()
             if "=" in line and not line.startswith("#")}
    assert text.count("[Service]") == 1
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                       "RestrictSUIDSGID": "yes", "ProtectKernelTunables": "yes"}.items():
        assert lines.get(key) == value, f"{key}={lines.get(key)}"
    writable = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ReadWritePaths=")]
    assert writable == ["-/var/lib/opensearch-dashboards", "-/var/log/opensearch-dashboards",
                        "-/run/opensearch-dashboards"]
    assert "MemoryDenyWriteExecute" not in lines, "V8's JIT needs W+X memory"


# The package's unit (opensearch-build, scripts/pkg/service_templates/
# opensearch-dashboards/usr/lib/systemd/system/opensearch-dashboards.service),
# with a command and user that exist on the controller.
PACKAGE_UNIT = """[Unit]
Description="OpenSearch Dashboards"

[Service]
Type=simple
User=root
Group=root
EnvironmentFile=-/etc/default/opensearch-dashboards
EnvironmentFile=-/etc/sysconfig/opensearch-dashboards
ExecStart=/bin/true
Restart=always
WorkingDirectory=/

[Install]
WantedBy=multi-user.target
"""


def test_dropin_is_accepted_by_systemd(rendered, tmp_path):
    """systemd-analyze verify (Debian 12's systemd 252) on the package's unit
    with the drop-in: an unknown or misspelt directive is reported."""
    unit = tmp_path / "opensearch-dashboards.service"
    unit.write_text(PACKAGE_UNIT)
    (tmp_path / "opensearch-dashboards.service.d").mkdir()
    dropin = tmp_path / "opensearch-dashboards.service.d" / "searchplat.conf"
    dropin.write_text((rendered / "searchplat.conf").read_text())
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, check=False, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "searchplat.conf" not in output, output
    dropin.write_text(dropin.read_text() + "ProtectSystm=strict\n")
    typo = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, check=False, timeout=120)
    assert "Unknown key 'ProtectSystm'" in typo.stdout + typo.stderr, "systemd-analyze does not report typos here"


def test_apt_pinning_allows_only_the_pinned_packages_from_the_repository_host(rendered):
    text = (rendered / "opensearch-dashboards.pref").read_text()
    stanzas = [s for s in text.split("\n\n") if "Package:" in s]
    assert len(stanzas) == 2
    assert "Package: *" in stanzas[0] and "Pin-Priority: -1" in stanzas[0]
    assert "Package: opensearch-dashboards opensearch\n" in stanzas[1] and "Pin-Priority: 500" in stanzas[1]
    assert all('Pin: origin "artifacts.opensearch.org"' in s for s in stanzas)


# --- saved objects ---------------------------------------------------------------

def _objects(rendered) -> list[dict]:
    lines = (rendered / "saved-objects.ndjson").read_text().splitlines()
    assert lines and all(line.strip() for line in lines), "ndjson: no empty line"
    objects = []
    for number, line in enumerate(lines, 1):
        obj = json.loads(line)
        assert isinstance(obj, dict), f"line {number} is not a JSON object"
        objects.append(obj)
    return objects


def test_every_ndjson_line_is_a_saved_object(rendered):
    objects = _objects(rendered)
    ids = [(o["type"], o["id"]) for o in objects]
    assert len(ids) == len(set(ids))
    for obj in objects:
        assert set(obj) == {"type", "id", "attributes", "references", "migrationVersion"}, obj["id"]
        assert obj["migrationVersion"] == {obj["type"]: {"index-pattern": "7.6.0", "search": "7.9.3"}[obj["type"]]}


def test_index_pattern_first_over_the_log_indices(rendered):
    pattern = _objects(rendered)[0]
    assert pattern["type"] == "index-pattern" and pattern["id"] == "searchplat-logs"
    assert pattern["attributes"] == {"title": "logs-*", "timeFieldName": "@timestamp"}


def test_each_saved_search_refers_to_the_index_pattern_and_queries_its_source(rendered):
    pattern_id = _objects(rendered)[0]["id"]
    searches = _objects(rendered)[1:]
    assert searches and all(s["type"] == "search" for s in searches)
    for search in searches:
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        ref_name = source["indexRefName"]
        assert search["references"] == [{"name": ref_name, "type": "index-pattern", "id": pattern_id}], search["id"]
        assert source["query"]["language"] == "kuery" and source["query"]["query"], search["id"]
        assert source["filter"] == []
        assert search["attributes"]["title"] and search["attributes"]["columns"]
        assert search["attributes"]["sort"] == [["@timestamp", "desc"]]


def test_one_saved_search_per_log_source_the_platform_ships(rendered):
    by_id = {s["id"]: s for s in DEFAULTS["opensearch_dashboards_saved_searches"]}
    assert {s["source"] for s in by_id.values()} == PLATFORM_SOURCES
    for search in _objects(rendered)[1:]:
        wanted = by_id[search["id"]]
        query = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        assert query == wanted["query"] and query.startswith(f"source:{wanted['source']}"), search["id"]
    # The list: sshd and sudo (auth), UFW blocks (kernel), app, nginx, HAProxy, OpenSearch.
    assert {"searchplat-sshd", "searchplat-sudo", "searchplat-kernel-ufw", "searchplat-app", "searchplat-nginx",
            "searchplat-haproxy", "searchplat-opensearch"} <= set(by_id)


def test_sources_the_platform_does_not_ship_get_no_saved_search(rendered):
    lines = (rendered / "saved-objects-excluded.ndjson").read_text().splitlines()
    objects = [json.loads(line) for line in lines if line.strip()]
    assert objects[0]["type"] == "index-pattern"
    kept = {s["id"] for s in DEFAULTS["opensearch_dashboards_saved_searches"] if s["source"] not in ("auth", "nginx")}
    assert [o["id"] for o in objects[1:]] == [s["id"] for s in DEFAULTS["opensearch_dashboards_saved_searches"]
                                              if s["id"] in kept]


def test_platform_sources_include_every_journal_source_of_roles_rsyslog():
    # The journal's sources are an input roles/platform wires (rsyslog_journal_sources, no
    # default in roles/rsyslog); every other journal message gets rsyslog's default source.
    rsyslog = yaml.safe_load(RSYSLOG_DEFAULTS.read_text())
    wired = PLATFORM_DEFAULTS["rsyslog_journal_sources"]
    journal = set(re.findall(r"'source': '([\w-]+)'", wired)) | {rsyslog["rsyslog_journal_default_source"]}
    assert len(journal) > 1, f"no journal source found in roles/platform's rsyslog_journal_sources: {wired}"
    assert journal <= PLATFORM_SOURCES, f"the platform ships journal sources without a saved search: {journal - PLATFORM_SOURCES}"
    # Every saved search's source is one the platform knows.
    assert PLATFORM_SOURCES <= set(PLATFORM_DEFAULTS["_platform_logging_sources"])
    assert rsyslog["rsyslog_relay_opensearch_index_prefix"] + "-*" == DEFAULTS["opensearch_dashboards_index_pattern"]


def test_the_role_reads_the_template_back_as_the_same_objects(rendered):
    assert json.loads((rendered / "desired.json").read_text()) == _objects(rendered)


def _filters():
    spec = importlib.util.spec_from_file_location(
        "opensearch_dashboards_saved_objects", ROLE / "filter_plugins" / "opensearch_dashboards_saved_objects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _as_stored(obj: dict) -> dict:
    """An object as _bulk_get returns it: searchSourceJSON re-serialized,
    fields Dashboards adds itself, bookkeeping around it."""
    stored = copy.deepcopy(obj)
    meta = stored["attributes"].get("kibanaSavedObjectMeta")
    if meta:
        meta["searchSourceJSON"] = json.dumps(json.loads(meta["searchSourceJSON"]), indent=1)
    if stored["type"] == "index-pattern":
        stored["attributes"]["fields"] = "[]"
    stored.update(updated_at="2025-01-01T00:00:00.000Z", version="WzEsMV0=", namespaces=["default"])
    stored["references"] = list(reversed(stored["references"]))
    return stored


def test_outdated_picks_only_missing_or_changed_objects(rendered):
    filters = _filters()
    desired = _objects(rendered)
    missing = [{"type": o["type"], "id": o["id"], "error": {"statusCode": 404, "message": "Not found"}} for o in desired]
    assert filters.opensearch_dashboards_outdated(desired, missing) == desired
    stored = [_as_stored(o) for o in desired]
    assert filters.opensearch_dashboards_outdated(desired, stored) == [], "identical objects must not be re-imported"
    changed = copy.deepcopy(stored)
    changed[2]["attributes"]["columns"] = ["message"]
    changed[3]["references"][0]["id"] = "another-pattern"
    changed[4] = {"type": changed[4]["type"], "id": changed[4]["id"], "error": {"statusCode": 404}}
    assert [o["id"] for o in filters.opensearch_dashboards_outdated(desired, changed)] == \
        [desired[2]["id"], desired[3]["id"], desired[4]["id"]]
    assert filters.opensearch_dashboards_refs(desired) == [{"type": o["type"], "id": o["id"]} for o in desired]


def test_ndjson_filter_rejects_a_line_that_is_not_a_saved_object():
    filters = _filters()
    with pytest.raises(Exception, match="line 2 is not JSON"):
        filters.opensearch_dashboards_ndjson('{"type": "search", "id": "a"}\n{not json}\n')
    with pytest.raises(Exception, match="line 1 is not a saved object"):
        filters.opensearch_dashboards_ndjson('{"id": "a"}\n')


# --- the validate entry point ------------------------------------------------------

def _validate(ansible_env, tmp_path, **changes) -> tuple[int, str]:
    inputs = dict(WIRED, **changes)
    (tmp_path / "inputs.yml").write_text(yaml.safe_dump(inputs))
    result = _playbook(ansible_env, tmp_path, VALIDATE_PLAYBOOK.format(out=tmp_path), json_output=True)
    return result.returncode, result.stdout + result.stderr


def test_validate_accepts_the_defaults_with_wired_inputs(ansible_env, tmp_path):
    code, output = _validate(ansible_env, tmp_path)
    assert code == 0, output[-4000:]
    assert PASSWORD not in output and COOKIE not in output


def _failure_messages(output: str) -> str:
    """The msg of every failed task in the JSON callback's output."""
    start = output.find("{")
    report = json.loads(output[start:output.rfind("}") + 1])
    return "\n".join(str(result.get("msg", "")) for play in report["plays"] for task in play["tasks"]
                     for result in task["hosts"].values() if result.get("failed"))


BAD_INPUTS = {
    "certificate without key": ({"opensearch_dashboards_tls_key_file": ""}, "opensearch_dashboards_tls_key_file must be both set"),
    "http log cluster": ({"opensearch_dashboards_opensearch_hosts": ["http://10.20.5.11:9200"]},
                         "opensearch_dashboards_opensearch_hosts a non-empty list"),
    "port of a log node on this host": ({"opensearch_dashboards_port": 9200}, "not the port of a log cluster node"),
    "log node port out of range": ({"opensearch_dashboards_opensearch_hosts": ["https://10.20.5.11:99999"]},
                                   "ports 1-65535"),
    "privileged port": ({"opensearch_dashboards_port": 443}, "opensearch_dashboards_port 1024-65535"),
    "deb without checksum": ({"opensearch_dashboards_install_method": "deb",
                              "opensearch_dashboards_deb_file": "/srv/opensearch-dashboards-2.19.3-linux-x64.deb"},
                             "opensearch_dashboards_deb_checksum \"sha256:<64 hex digits>\""),
    "TLS 1.3 without a TLS 1.3 suite": ({"opensearch_dashboards_tls_ciphers": ["ECDHE-RSA-AES128-GCM-SHA256"]},
                                        "with TLSv1.3 at least"),
    "short cookie key": ({"opensearch_dashboards_cookie_password": "short"}, "opensearch_dashboards_cookie_password a key"),
    "duplicate saved search id": ({"opensearch_dashboards_saved_searches": [
        {"id": "searchplat-logs", "title": "t", "source": "app", "query": "source:app", "columns": ["message"]}]},
        "must be distinct ids"),
    "extra setting the role writes": ({"opensearch_dashboards_extra_settings": {"server.port": 80}},
                                      "must not repeat a key the role writes"),
    "version not pinned": ({"opensearch_dashboards_version": ""}, "opensearch_dashboards_version must be a release"),
    "missing wired input": ({"opensearch_dashboards_opensearch_hosts": None}, "opensearch_dashboards_opensearch_hosts"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_validate_rejects_bad_relations_naming_the_variable(ansible_env, tmp_path, case):
    changes, message = BAD_INPUTS[case]
    if changes.get("opensearch_dashboards_opensearch_hosts", "") is None:
        inputs = {k: v for k, v in WIRED.items() if k != "opensearch_dashboards_opensearch_hosts"}
        (tmp_path / "inputs.yml").write_text(yaml.safe_dump(inputs))
        result = _playbook(ansible_env, tmp_path, VALIDATE_PLAYBOOK.format(out=tmp_path), json_output=True)
        code, output = result.returncode, result.stdout + result.stderr
    else:
        code, output = _validate(ansible_env, tmp_path, **changes)
    assert code != 0, f"{case}: accepted"
    flat = " ".join(_failure_messages(output).split())
    assert " ".join(message.split()) in flat, f"{case}: message not found\n{output[-3000:]}"
    assert PASSWORD not in output and COOKIE not in output and "r3ad" not in output

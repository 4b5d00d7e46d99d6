"""Inventories: secrets stay encrypted, the port matrix is the platform's, each parses."""

import hashlib
import json
import pathlib
import re
import shutil
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


# --- The example inventories are complete -----------------------------------
# production and staging are what an operator copies: once vault.yml holds
# every vault_* of vault.yml.example, they must pass preflight and give each
# host every secret its tiers need, from the vault, under names the roles
# still declare.

VAULT_REF = re.compile(r"\bvault_[a-z0-9_]+\b")
NAME = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
# What an inventory may set beyond the roles' variables: the inventory
# contract of roles/platform (defaults/main.yml) and Ansible's own.
CONTRACT = {"private_address", "zone", "site"}
# The groups roles/platform knows (its inventory contract).
GROUPS = {"loadbalancers", "app_servers", "opensearch", "opensearch_cluster_manager", "opensearch_data",
          "monitoring", "logging", "backup", "snapshot_server"}
# VRRPv2 passwords are at most 8 characters (scripts/lab generates 8 too).
SHORT_SECRETS = {"vault_loadbalancer_vrrp_password"}
LOCAL = ["-e", "ansible_connection=local", "-e", "ansible_become=false",
         "-e", '{"ansible_python_interpreter": "{{ ansible_playbook_python }}"}']


def _example_dir(inv: str) -> pathlib.Path:
    return ROOT / "inventories" / inv


def _vault_example(inv: str) -> dict:
    return yaml.safe_load((_example_dir(inv) / "group_vars" / "all" / "vault.yml.example").read_text()) or {}


def _var_files(inv: str) -> list[pathlib.Path]:
    base = _example_dir(inv)
    return [base / "hosts.yml"] + sorted(p for d in ("group_vars", "host_vars") for p in (base / d).rglob("*.yml"))


def _set_variables(inv: str) -> dict[str, dict]:
    """{file relative to the inventory: {variable: value}} for every variable
    the inventory sets: group_vars/host_vars files and hosts.yml's vars."""
    out = {}
    for path in _var_files(inv):
        data = yaml.safe_load(path.read_text()) or {}
        rel = str(path.relative_to(_example_dir(inv)))
        if path.name != "hosts.yml":
            out[rel] = data
            continue
        found = {}

        def walk(group):
            found.update(group.get("vars") or {})
            for hv in (group.get("hosts") or {}).values():
                found.update(hv or {})
            for child in (group.get("children") or {}).values():
                walk(child or {})
        walk(data["all"])
        out[rel] = found
    return out


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _declared_variables() -> set[str]:
    """Every variable a role defines: its defaults and the options of every
    entry point of its argument spec."""
    known = set()
    for path in (ROOT / "roles").glob("*/defaults/main.yml"):
        known |= set(yaml.safe_load(path.read_text()) or {})
    for path in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in (yaml.safe_load(path.read_text())["argument_specs"] or {}).values():
            known |= set(entry.get("options") or {})
    return known


def _lab_secret_names() -> set[str]:
    """The vault_* variables scripts/lab generates for the lab (ensure_lab_secrets)."""
    text = (ROOT / "scripts" / "lab").read_text()
    body = text[text.index("ensure_lab_secrets() {"):]
    body = body[:body.index("\n}\n")]
    return set(VAULT_REF.findall(body))


def _dummy(name: str) -> str:
    """A placeholder value that names its vault variable (so a resolved value
    tells where it came from) and fits every length rule."""
    if name in SHORT_SECRETS:
        return hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"dummy-{name}-0123456789"


@pytest.fixture(scope="module")
def filled_example(tmp_path_factory):
    """A copy of an example inventory whose vault.yml (plain YAML: Ansible
    reads it like an encrypted one) holds a dummy for every vault_* of
    vault.yml.example, as the operator would fill it in."""
    made = {}

    def make(inv: str) -> pathlib.Path:
        if inv not in made:
            dest = tmp_path_factory.mktemp(f"inventory-{inv}") / inv
            shutil.copytree(_example_dir(inv), dest, ignore=shutil.ignore_patterns(".pki", "vault.yml"))
            vault = {name: _dummy(name) for name in _vault_example(inv)}
            (dest / "group_vars" / "all" / "vault.yml").write_text(yaml.safe_dump(vault))
            made[inv] = dest
        return made[inv]
    return make


@pytest.mark.parametrize("inv", INVENTORIES)
def test_vault_example_matches_the_references(inv):
    """Every {{ vault_x }} the inventory uses is in vault.yml.example, every
    entry there is used, and the lab's generated secrets all have theirs."""
    example = _vault_example(inv)
    assert example, f"{inv}: vault.yml.example is empty"
    assert all(k.startswith("vault_") for k in example), f"{inv}: vault.yml.example holds non-vault_ keys"
    referenced = {}
    for rel, variables in _set_variables(inv).items():
        for text in _strings(variables):
            for name in VAULT_REF.findall(text):
                referenced.setdefault(name, rel)
    undefined = {n: f for n, f in referenced.items() if n not in example}
    assert not undefined, f"{inv}: referenced but not in vault.yml.example: {undefined}"
    unused = sorted(set(example) - set(referenced))
    assert not unused, f"{inv}: in vault.yml.example but no group_vars/host_vars uses them: {unused}"
    missing = sorted(_lab_secret_names() - set(example))
    assert not missing, f"{inv}: the lab generates these secrets (scripts/lab), vault.yml.example lacks them: {missing}"


@pytest.mark.parametrize("inv", INVENTORIES)
def test_inventory_sets_only_declared_variables(inv):
    """A variable no role declares any more (renamed, removed) would be
    silently ignored: every one the inventory sets must be a role's (defaults
    or argument spec), a vault_ secret, Ansible's or the inventory contract."""
    known = _declared_variables()
    unknown = {}
    for rel, variables in _set_variables(inv).items():
        for name in variables:
            if name in known or name in CONTRACT or name.startswith(("vault_", "ansible_")):
                continue
            unknown.setdefault(rel, []).append(name)
    assert not unknown, f"{inv}: no role declares these variables: {unknown}"


@pytest.mark.parametrize("inv", INVENTORIES)
def test_comments_name_what_exists(inv):
    """Comments of the example inventories name variables that exist and
    files that exist (a stale name sends the operator nowhere)."""
    base = _example_dir(inv)
    known = _declared_variables()
    roles = {p.name for p in (ROOT / "roles").iterdir()}
    vault = set(_vault_example(inv))
    words = {"group_vars", "host_vars", "inventory_hostname", "cluster_manager", "test_inventories"}
    problems = []
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base)
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "#" not in line:
                continue
            comment = line[line.index("#"):]
            for name in NAME.findall(comment):
                if name.startswith("vault_") and name not in vault:
                    problems.append(f"{rel}:{number}: {name} is not in vault.yml.example")
                elif not (name.startswith(("vault_", "ansible_")) or name in known or name in GROUPS
                          or name in roles or name in words or name in CONTRACT):
                    problems.append(f"{rel}:{number}: no role declares {name}")
            # Paths in this inventory, and paths from the project's top.
            for top, pattern in ((base, r"(?<![\w/])(?:group_vars|host_vars)/[\w./-]*\w"),
                                 (ROOT, r"(?<![\w/])(?:roles|playbooks|docs|scripts|inventories)/[\w./-]*\w")):
                for ref in re.findall(pattern, comment):
                    if not (top / ref).exists() and not (top / (ref + ".example")).exists():
                        problems.append(f"{rel}:{number}: {ref} does not exist")
    assert not problems, f"{inv}:\n" + "\n".join(problems)


# Each secret a tier needs, where the platform reads it: (group whose hosts
# need it, what is resolved on them (a variable, or a label of RESOLVE), the
# vault_ variable it must come from).
RESOLVE = {
    "lb stats password (its engine's)":
        "lookup('ansible.builtin.vars', 'lb_' ~ platform_loadbalancer_engine ~ '_stats_password', default='')",
    "app's OpenSearch password (app_secret_env)": "app_secret_env.SEARCHPLAT_OPENSEARCH_PASSWORD",
    "Prometheus's HAProxy scrape password":
        "(prometheus_scrape_configs | selectattr('name', 'equalto', 'haproxy') | first).basic_auth.password",
}
REQUIRED_SECRETS = [
    ("all", "platform_backup_rest_secret", "vault_backup_rest_secret"),
    ("all", "platform_backup_repository_secret", "vault_backup_repository_secret"),
    ("all", "pki_ca_passphrase", "vault_pki_ca_passphrase"),
    ("loadbalancers", "lb stats password (its engine's)", "vault_loadbalancer_stats_password"),
    ("loadbalancers", "keepalived_auth_pass", "vault_loadbalancer_vrrp_password"),
    ("app_servers", "platform_app_ingest_token", "vault_app_ingest_token"),
    ("app_servers", "app's OpenSearch password (app_secret_env)", "vault_opensearch_app_password"),
    ("opensearch", "opensearch_admin_password", "vault_opensearch_admin_password"),
    ("opensearch", "opensearch_app_password", "vault_opensearch_app_password"),
    ("opensearch", "opensearch_monitoring_password", "vault_opensearch_monitoring_password"),
    ("opensearch", "opensearch_backup_password", "vault_opensearch_backup_password"),
    ("opensearch", "opensearch_snapshots_password", "vault_opensearch_backup_password"),
    ("monitoring", "platform_prometheus_password", "vault_prometheus_web_password"),
    ("monitoring", "platform_alertmanager_password", "vault_alertmanager_web_password"),
    ("monitoring", "opensearch_exporter_password", "vault_opensearch_monitoring_password"),
    ("monitoring", "grafana_admin_password", "vault_grafana_admin_password"),
    ("monitoring", "grafana_secret_key", "vault_grafana_secret_key"),
    # The log store (platform_logging_store: dedicated): its own users'
    # passwords, not the search cluster's.
    ("logging", "opensearch_admin_password", "vault_logstore_admin_password"),
    ("logging", "opensearch_monitoring_password", "vault_logstore_monitoring_password"),
    ("logging", "opensearch_backup_password", "vault_logstore_backup_password"),
    ("logging", "platform_logging_writer_password", "vault_logging_writer_password"),
    ("logging", "platform_logging_reader_password", "vault_logging_reader_password"),
    ("logging", "platform_logging_curator_password", "vault_logging_curator_password"),
    ("logging", "rsyslog_relay_opensearch_password", "vault_logging_writer_password"),
    ("logging", "rsyslog_canary_opensearch_password", "vault_logging_reader_password"),
    ("logging", "rsyslog_relay_retention_password", "vault_logging_curator_password"),
    ("logging", "platform_logging_dashboards_password", "vault_logging_dashboards_password"),
    ("logging", "opensearch_dashboards_opensearch_password", "vault_logging_dashboards_password"),
    ("logging", "opensearch_dashboards_cookie_password", "vault_dashboards_cookie_password"),
    ("backup", "backup_server_offsite_access_key_id", "vault_backup_offsite_access_key_id"),
    ("backup", "backup_server_offsite_secret_access_key", "vault_backup_offsite_secret_access_key"),
    ("backup", "backup_server_offsite_password", "vault_backup_offsite_password"),
]
# Only on the backup hosts (the offsite bucket's credentials).
BACKUP_HOST_ONLY = ["backup_server_offsite_access_key_id", "backup_server_offsite_secret_access_key",
                    "backup_server_offsite_password"]

RESOLVER = """\
- name: Resolve each host's secrets as its tiers see them (the platform's wiring included)
  hosts: all
  gather_facts: false
  roles:
    - role: platform
  tasks:
    - name: Resolve
      ansible.builtin.set_fact:
        _test_resolved: {resolved}

- name: Write them
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write
      ansible.builtin.copy:
        dest: "{{{{ test_out }}}}"
        content: "{{{{ dict(groups['all'] | zip(groups['all'] | map('extract', hostvars, '_test_resolved'))) | to_json }}}}"
        mode: "0600"
"""


def _resolve(inv_dir: pathlib.Path, tmp_path: pathlib.Path, env: dict) -> dict:
    labels = sorted({label for _, label, _ in REQUIRED_SECRETS} | set(BACKUP_HOST_ONLY) | set(RESOLVE))
    resolved = {label: "{{ (%s) | default('') }}" % RESOLVE.get(label, label) for label in labels}
    resolved["group_names"] = "{{ group_names }}"
    resolved["engine"] = "{{ platform_loadbalancer_engine }}"
    playbook = tmp_path / "resolve.yml"
    playbook.write_text(RESOLVER.format(resolved=json.dumps(resolved)))
    out = tmp_path / "resolved.json"
    proc = subprocess.run(["ansible-playbook", "-i", str(inv_dir), str(playbook), *LOCAL, "-e", f"test_out={out}"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("inv", INVENTORIES)
def test_every_secret_resolves_from_the_vault(inv, filled_example, tmp_path, ansible_env):
    """With vault.yml filled in from vault.yml.example, every host gets each
    secret its tiers need (after the platform's wiring: what the roles
    read), from the right vault_ variable; the offsite credentials stay on
    the backup hosts."""
    hosts = _resolve(filled_example(inv), tmp_path, ansible_env)
    problems = []
    for host, values in sorted(hosts.items()):
        groups = set(values["group_names"]) | {"all"}
        for group, label, vault_name in REQUIRED_SECRETS:
            if group not in groups:
                continue
            if values[label] != _dummy(vault_name):
                got = next((n for n in _vault_example(inv) if _dummy(n) == values[label]), None)
                problems.append(f"{host}: {label} should come from {vault_name}, got "
                                + (f"{got}'s value" if got else "nothing" if values[label] == "" else "another value"))
        if "backup" not in groups:
            problems += [f"{host}: {label} is set outside the backup hosts" for label in BACKUP_HOST_ONLY if values[label]]
    # Prometheus scrapes the HAProxy load balancers' metrics with their stats user.
    label = "Prometheus's HAProxy scrape password"
    haproxy = [h for h, v in hosts.items() if "loadbalancers" in v["group_names"] and v["engine"] == "haproxy"]
    for host, values in sorted(hosts.items()):
        if haproxy and "monitoring" in values["group_names"] and values[label] != _dummy("vault_loadbalancer_stats_password"):
            problems.append(f"{host}: {label} should come from vault_loadbalancer_stats_password")
    assert not problems, f"{inv}:\n" + "\n".join(problems)


@pytest.mark.parametrize("inv", INVENTORIES)
def test_example_passes_preflight(inv, filled_example, tmp_path, ansible_env):
    """playbooks/preflight.yml, every check of the platform and of each role
    a host runs, accepts the filled-in example without connecting to any of
    its hosts: everything runs on this machine (local connection, nothing is
    changed by preflight) with a fact cache of its own holding minimal facts
    (the OS; no addresses: the checks that need a host's interfaces are
    skipped, as when preflight runs without them)."""
    inv_dir = filled_example(inv)
    env = {**ansible_env, "ANSIBLE_CACHE_PLUGIN": "jsonfile",
           "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path / "facts")}
    facts = tmp_path / "facts.yml"
    facts.write_text("- name: Minimal facts\n  hosts: all\n  gather_facts: false\n  tasks:\n"
                     "    - name: Gather\n      ansible.builtin.gather_facts:\n        gather_subset: [min]\n")
    subprocess.run(["ansible-playbook", "-i", str(inv_dir), str(facts), *LOCAL],
                   cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    proc = subprocess.run(["ansible-playbook", "-i", str(inv_dir), "playbooks/preflight.yml", *LOCAL],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    failures = [line for line in proc.stdout.splitlines() if line.startswith("fatal:")]
    assert proc.returncode == 0, f"{inv}: preflight fails:\n" + "\n".join(failures or [proc.stdout[-4000:], proc.stderr[-4000:]])

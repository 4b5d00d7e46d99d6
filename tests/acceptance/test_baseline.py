"""Acceptance: role baseline on every host of any inventory.

Run: pytest --hosts=ansible://all --ansible-inventory=inventories/<env> tests/acceptance
"""

import pathlib
import re

import pytest
import yaml
from hostinfo import in_container
from skips import not_configured

pytestmark = pytest.mark.groups("all")

ROLE_DEFAULTS = yaml.safe_load(
    (pathlib.Path(__file__).resolve().parents[2] / "roles" / "baseline" / "defaults" / "main.yml").read_text())
SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def _hostvars(host, inventory):
    return inventory.hostvars(host.backend.get_hostname())


@pytest.mark.parametrize("pkg", ["chrony", "unattended-upgrades", "sudo", "logrotate"])
def test_base_packages(host, pkg):
    assert host.package(pkg).is_installed


def test_time_sync(host):
    chrony = host.service("chrony")
    assert chrony.is_enabled
    assert chrony.is_running
    if in_container(host):
        # The clock is the host kernel's: chronyd must not set it.
        assert " -x" in host.check_output("ps -o args= -C chronyd")
        return
    tracking = host.check_output("chronyc -n tracking")
    assert "Leap status     : Normal" in tracking, tracking


def test_timezone_and_locale(host, inventory):
    hv = _hostvars(host, inventory)
    tz = hv.get("baseline_timezone", "Etc/UTC")
    assert host.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{tz}"
    loc = hv.get("baseline_locale", "en_US.UTF-8")
    assert f"LANG={loc}" in host.file("/etc/default/locale").content_string


def _size(text: str) -> float:
    """journald size ('1G', '128M', '1.0G' as journald prints it) -> bytes."""
    m = re.fullmatch(r"([0-9.]+)\s*([KMGT]?)B?", text.strip(), re.I)
    assert m, f"not a size: {text!r}"
    return float(m.group(1)) * SIZE_UNITS[m.group(2).upper()]


def test_journald_limits(host, inventory):
    """journald's effective configuration (every drop-in merged) has the
    inventory's storage, size and retention limits, and the running journald
    applies them: its last report names the persistent journal and its
    SystemMaxUse."""
    hv = _hostvars(host, inventory)

    def var(key):
        return hv.get(key, ROLE_DEFAULTS[key])

    if not var("baseline_journald_enabled"):
        not_configured("baseline_journald_enabled is false for this host")
    want = {
        "Storage": str(var("baseline_journald_storage")),
        "SystemMaxUse": str(var("baseline_journald_system_max_use")),
        "SystemKeepFree": str(var("baseline_journald_system_keep_free")),
        "SystemMaxFileSize": str(var("baseline_journald_system_max_file_size")),
        "RuntimeMaxUse": str(var("baseline_journald_runtime_max_use")),
        "MaxRetentionSec": str(var("baseline_journald_max_retention")),
        "ForwardToSyslog": "yes" if var("baseline_journald_forward_to_syslog") else "no",
    }
    effective = {}
    for line in host.check_output("systemd-analyze cat-config systemd/journald.conf").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            effective[key.strip()] = value.strip()  # the last file read wins, as in journald
    assert {k: effective.get(k) for k in want} == want
    assert host.service("systemd-journald").is_running
    with host.sudo():
        reports = host.check_output(
            "journalctl -b -o cat _COMM=systemd-journal | grep -E '^(System|Runtime) Journal \\(' | tail -n 1")
    # e.g. "System Journal (/var/log/journal/<machine-id>) is 16.0M, max 1.0G, 1008.0M free."
    m = re.match(r"(System|Runtime) Journal \((\S+)\) is \S+, max (\S+),", reports)
    assert m, f"no journald size report since boot: {reports!r}"
    if want["Storage"] == "persistent":
        assert m.group(1) == "System" and m.group(2).startswith("/var/log/journal/"), reports
        limit = want["SystemMaxUse"]
    else:
        limit = want["RuntimeMaxUse"] if m.group(1) == "Runtime" else want["SystemMaxUse"]
    # journald prints one decimal ("1.0G"): equal within that rounding.
    assert abs(_size(m.group(3)) - _size(limit)) <= 0.05 * _size(limit), \
        f"the running journald uses max {m.group(3)}, configured {limit}: {reports}"


def test_unattended_upgrades(host):
    dump = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern APT::Periodic")
    assert "security" in dump.lower()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert host.service("apt-daily-upgrade.timer").is_enabled


def test_admin_users(host, inventory):
    users = _hostvars(host, inventory).get("baseline_admin_users", [])
    if not users:
        not_configured("no baseline_admin_users in this inventory")
    for user in users:
        name = user["name"]
        sudoers = host.file(f"/etc/sudoers.d/{name.replace('.', '_')}")
        if user.get("state", "present") == "absent":
            assert not host.user(name).exists, name
            assert not sudoers.exists, name
            continue
        assert host.user(name).exists, name
        shadow = host.check_output(f"getent shadow {name}").split(":")
        assert shadow[1].startswith("!") or shadow[1] == "*", f"{name} has a usable password"
        assert sudoers.mode == 0o440
        assert "NOPASSWD: ALL" in sudoers.content_string
        keys = host.file(f"/home/{name}/.ssh/authorized_keys").content_string
        for key in user["ssh_keys"]:
            if "{{" in key:
                # ansible-inventory returns templates unrendered (the lab's key
                # is "{{ lab_admin_ssh_public_key }}"); that key is proven by
                # every SSH login of this suite.
                continue
            assert key.split()[1] in keys, f"{name}: key missing"
    host.run_expect([0], "visudo -c")


def test_maintenance_tools(host):
    for pkg in ("needrestart", "debsums", "apt-show-versions", "apt-listchanges"):
        assert host.package(pkg).is_installed, pkg


def test_accounting(host):
    assert host.service("sysstat").is_enabled
    assert host.service("acct").is_enabled

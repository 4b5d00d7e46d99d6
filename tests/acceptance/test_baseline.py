"""Acceptance: role baseline on every host of any inventory.

Run: pytest --hosts=ansible://all --ansible-inventory=inventories/<env> tests/acceptance
"""

import pytest
from hostinfo import in_container

pytestmark = pytest.mark.groups("all")

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


def test_journald_limits(host):
    assert host.file("/etc/systemd/journald.conf.d/50-baseline.conf").exists
    assert host.service("systemd-journald").is_running


def test_unattended_upgrades(host):
    dump = host.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern APT::Periodic")
    assert "security" in dump.lower()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert host.service("apt-daily-upgrade.timer").is_enabled


def test_admin_users(host, inventory):
    users = _hostvars(host, inventory).get("baseline_admin_users", [])
    if not users:
        pytest.skip("no baseline_admin_users in this inventory")
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

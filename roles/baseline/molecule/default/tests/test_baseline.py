"""Testinfra checks for the baseline role (molecule default scenario)."""

import pytest

ALICE_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIM35eClR5U5U6mmPLi+PSL06sIWWfbx++ksq6ZPNpQ6F"


@pytest.mark.parametrize(
    "pkg",
    ["chrony", "unattended-upgrades", "apt-listchanges", "needrestart", "debsums",
     "apt-show-versions", "libpam-tmpdir", "sysstat", "acct", "logrotate", "locales", "sudo",
     "curl", "tzdata"],
)
def test_packages_installed(host, pkg):
    assert host.package(pkg).is_installed


def test_timezone(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"
    assert host.file("/etc/timezone").content_string.strip() == "Etc/UTC"


def test_chrony_running(host):
    chrony = host.service("chrony")
    assert chrony.is_running
    assert chrony.is_enabled
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "pool 2.debian.pool.ntp.org iburst" in conf


def test_chrony_does_not_control_clock_in_container(host):
    # Inside a container the clock is the host kernel's: chronyd runs with -x.
    virt = host.ansible("setup", "filter=ansible_virtualization_type")["ansible_facts"]
    if virt["ansible_virtualization_type"] not in ("docker", "container", "podman", "lxc"):
        pytest.skip("not a container: chronyd controls the clock")
    assert '-x' in host.file("/etc/default/chrony").content_string
    assert " -x" in host.check_output("ps -o args= -C chronyd")


def test_locale(host):
    assert "LANG=en_US.UTF-8" in host.file("/etc/default/locale").content_string
    assert "en_US.utf8" in host.check_output("locale -a")


def test_journald_limits(host):
    f = host.file("/etc/systemd/journald.conf.d/50-baseline.conf")
    assert f.exists
    assert "SystemMaxUse=1G" in f.content_string
    assert "Storage=persistent" in f.content_string
    assert host.file("/var/log/journal").is_directory
    assert host.service("systemd-journald").is_running


def test_unattended_upgrades(host):
    auto = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in auto
    conf = host.file("/etc/apt/apt.conf.d/52baseline-unattended-upgrades").content_string
    assert "label=Debian-Security" in conf
    assert 'Automatic-Reboot "false"' in conf
    # apt-config shows the merged result: only our origins, reboot off.
    dump = host.check_output("apt-config dump Unattended-Upgrade")
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in dump
    assert "Debian-Security" in dump
    timer = host.file("/etc/systemd/system/apt-daily-upgrade.timer.d/override.conf").content_string
    assert "OnCalendar=*-*-* 06:00" in timer
    # The dry run must work with the configuration (no syntax errors).
    host.run_expect([0], "unattended-upgrade --dry-run")


def test_admin_user(host):
    alice = host.user("alice")
    assert alice.exists
    assert "adm" in alice.groups
    assert alice.shell == "/bin/bash"
    # Locked: no password, keys only; never expires.
    shadow = host.check_output("getent shadow alice").split(":")
    assert shadow[1].startswith("!")
    assert shadow[4] in ("", "-1")
    keys = host.file("/home/alice/.ssh/authorized_keys")
    assert keys.user == "alice"
    assert keys.mode == 0o600
    assert ALICE_KEY in keys.content_string
    assert host.file("/home/alice/.ssh").mode == 0o700


def test_admin_sudo(host):
    sudoers = host.file("/etc/sudoers.d/alice")
    assert sudoers.mode == 0o440
    assert "alice ALL=(ALL:ALL) NOPASSWD: ALL" in sudoers.content_string
    host.run_expect([0], "visudo -c")
    # Passwordless sudo works for the admin user.
    out = host.check_output("su -s /bin/sh alice -c 'sudo -n id -u'")
    assert out.strip() == "0"


def test_absent_user_removed(host):
    assert not host.user("carol").exists
    assert not host.file("/etc/sudoers.d/carol").exists
    assert not host.file("/home/carol").exists


def test_logrotate_rule(host):
    assert "/var/log/searchplat-example/*.log" in host.file("/etc/logrotate.d/searchplat-example").content_string
    host.run_expect([0], "logrotate --debug /etc/logrotate.conf")


def test_sysstat_and_acct(host):
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string
    assert host.service("sysstat").is_enabled
    assert host.service("acct").is_enabled
    assert host.file("/var/log/account/pacct").exists

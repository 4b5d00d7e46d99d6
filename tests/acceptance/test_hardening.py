"""Acceptance: role hardening on every host of any inventory.

ssh-audit runs from the controller (pip package ssh-audit in the venv)
against each host's `private_address` port 22; Lynis runs on one host of
each tier (scripts/test installs it there: the auditor's tool, not part of
the product). Either tool missing is a failure, never a skip.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from hostinfo import in_container
from skips import not_configured, not_here

pytestmark = pytest.mark.groups("all")

POLICY = "Hardened Debian 12 (version 3)"
# The platform's target (issue #3) for a converged host, met on every
# converged lab host since 2026-11-23: a drop below it fails.
LYNIS_MIN_INDEX = int(os.environ.get("LYNIS_MIN_INDEX", "90"))
ROLE_DEFAULTS = yaml.safe_load(
    (pathlib.Path(__file__).resolve().parents[2] / "roles" / "hardening" / "defaults" / "main.yml").read_text())


def _hvar(inventory, host, key):
    """An inventory variable of the host, else the role's default."""
    return inventory.hostvars(host.backend.get_hostname()).get(key, ROLE_DEFAULTS[key])


def _ssh_audit() -> str:
    """ssh-audit on PATH, else beside this Python (the venv's bin)."""
    exe = shutil.which("ssh-audit") or shutil.which("ssh-audit", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.fail("ssh-audit is not installed on the controller: it is in requirements.txt "
                    "(scripts/lib/bootstrap.sh installs it into the venv)", pytrace=False)
    return exe


@pytest.fixture(scope="module")
def sshd_t(host):
    with host.sudo():
        out = host.check_output("/usr/sbin/sshd -T -C user=nobody,host=client.example,addr=192.0.2.10")
    settings = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, value)
    return settings


@pytest.mark.parametrize("key,value", [
    ("permitrootlogin", "no"),
    ("passwordauthentication", "no"),
    ("kbdinteractiveauthentication", "no"),
    ("pubkeyauthentication", "yes"),
    ("permitemptypasswords", "no"),
    ("x11forwarding", "no"),
    ("allowagentforwarding", "no"),
    ("compression", "no"),
    ("loglevel", "VERBOSE"),
])
def test_sshd_settings(sshd_t, key, value):
    assert sshd_t.get(key) == value


def test_no_weak_host_keys(host):
    with host.sudo():
        assert not host.file("/etc/ssh/ssh_host_ecdsa_key").exists
        assert not host.file("/etc/ssh/ssh_host_dsa_key").exists
        bits = int(host.check_output("ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub").split()[0])
    assert bits >= 3072


def test_ssh_audit_policy(host, inventory):
    exe = _ssh_audit()
    hv = inventory.hostvars(host.backend.get_hostname())
    address = hv.get("private_address")
    assert address, "no private_address for this host in the inventory (the inventory contract requires it)"
    port = str(hv.get("hardening_ssh_port", 22))
    proc = subprocess.run([exe, "-P", POLICY, "-p", port, address], capture_output=True, text=True, timeout=180)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sysctl(host):
    with host.sudo():
        conf = host.file("/etc/sysctl.d/90-hardening.conf")
        assert conf.exists
        fact = host.file("/etc/ansible/facts.d/hardening_sysctl.fact")
        status = json.loads(fact.content_string) if fact.exists else {}
    if in_container(host):
        print("sysctl controls NOT applied (container):", ", ".join(status.get("not_applied", [])))
        assert status.get("applied_by_role") == []
        return
    assert host.sysctl("net.ipv4.tcp_syncookies") == 1
    assert host.sysctl("kernel.kptr_restrict") == 2
    assert host.sysctl("fs.suid_dumpable") == 0


def test_module_blacklist(host):
    c = host.file("/etc/modprobe.d/hardening-blacklist.conf").content_string
    for module in ("cramfs", "usb-storage", "dccp", "sctp"):
        assert re.search(rf"^install {module} /bin/(true|false)$", c, re.M), module


def test_auditd(host, inventory):
    if not _hvar(inventory, host, "hardening_auditd_enabled"):
        not_configured("hardening_auditd_enabled is false for this host")
    assert host.package("auditd").is_installed
    with host.sudo():
        assert host.file(_hvar(inventory, host, "hardening_auditd_rules_file")).exists
    if in_container(host):
        not_here("auditd cannot run in a container (kernel audit belongs to the initial PID namespace): "
                 "package and rules checked, the running service not")
    assert host.service("auditd").is_running


def test_pam_and_login_defs(host):
    assert "pam_faillock.so" in host.file("/etc/pam.d/common-auth").content_string
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string
    defs = host.file("/etc/login.defs").content_string
    assert re.search(r"^PASS_MAX_DAYS\s+\d+$", defs, re.M)
    assert re.search(r"^UMASK\s+0?27$", defs, re.M)


def test_permissions(host):
    assert host.file("/etc/shadow").mode == 0o640
    with host.sudo():
        assert host.file("/etc/ssh/sshd_config").mode == 0o600


def test_banner(host):
    assert host.file("/etc/issue.net").size > 0


def test_allow_groups_from_inventory(host, sshd_t, inventory):
    """AllowGroups is the inventory's list; none when the list is empty."""
    want = _hvar(inventory, host, "hardening_ssh_allow_groups") or []
    assert sshd_t.get("allowgroups", "").split() == list(want)


def test_login_shell_timeout_and_no_core_files(host):
    text = host.file("/etc/profile.d/hardening.sh").content_string
    assert "ulimit -c 0" in text
    assert re.search(r"^TMOUT=\d+$", text, re.M) and "readonly TMOUT" in text


def test_proc_hides_other_users_processes(host):
    assert re.search(r"hidepid=(invisible|2)\b", host.file("/proc/mounts").content_string)
    with host.sudo():
        total = int(host.check_output("ls -d /proc/[0-9]* | wc -l"))
        seen = int(host.check_output("runuser -u nobody -- sh -c 'ls -d /proc/[0-9]* | wc -l'"))
    assert seen < total and seen <= 5, f"nobody sees {seen} of {total} processes"


def test_rootkit_scanner_scheduled(host):
    assert host.package("chkrootkit").is_installed
    assert 'RUN_DAILY="true"' in host.file("/etc/chkrootkit/chkrootkit.conf").content_string
    assert host.service("chkrootkit.timer").is_enabled


@pytest.mark.once
def test_scheduled_scans_are_spread_over_the_fleet(host, inventory, peer):
    """chkrootkit and the AIDE check start at a different time on each host
    (measured before the spread: chkrootkit on all nine hosts at once took
    direct search throughput from about 1500 to 280 requests/s)."""
    for unit in ("chkrootkit.timer", "aide-check.timer"):
        nexts = {}
        for name in inventory.all_hosts():
            timers = json.loads(peer(name).check_output(f"systemctl list-timers {unit} --all -o json"))
            assert len(timers) == 1 and timers[0]["next"], f"{unit} on {name} is not scheduled: {timers}"
            nexts[name] = timers[0]["next"] // 1_000_000
        spread = max(nexts.values()) - min(nexts.values())
        assert spread >= 30 * 60, f"{unit}: every host starts within {spread} s: {nexts}"
        assert len(set(nexts.values())) == len(nexts), f"{unit}: hosts share a start time: {nexts}"


def test_compilers_restricted(host, inventory):
    """Every compiler of hardening_permissions_compilers that is installed is
    not executable by others, and keeps that mode through upgrades."""
    compilers = _hvar(inventory, host, "hardening_permissions_compilers") or []
    if not compilers:
        not_configured("hardening_permissions_compilers is empty for this host")
    installed = sorted({p for p in (host.run(f"readlink -e {c}").stdout.strip() for c in compilers) if p})
    if not installed:
        not_here(f"none of {', '.join(compilers)} is installed")
    with host.sudo():
        overrides = host.check_output("dpkg-statoverride --list")
    for real in installed:
        assert host.file(real).mode & 0o001 == 0, f"{real} is executable by others"
        assert re.search(rf"^root root 0?750 {re.escape(real)}$", overrides, re.M), f"{real}: no dpkg-statoverride"


def test_integrity_baseline_matches_converged_host(host):
    """AIDE's baseline (recorded after every tier converged) matches the host,
    and the daily check is scheduled."""
    assert host.service("aide-check.timer").is_enabled
    with host.sudo():
        check = host.run("aide --config=/etc/aide/aide.conf --check")
    assert check.rc == 0, f"AIDE reports differences (rc {check.rc}):\n{check.stdout[-3000:]}"


@pytest.mark.tier_representative  # a full audit takes about a minute per host
def test_lynis_index(host):
    if not host.package("lynis").is_installed:
        pytest.fail("lynis is not installed on this host, one per tier (Inventory.tier_representative): "
                    "scripts/test installs it there (install_lynis_for_audit); elsewhere apt install lynis",
                    pytrace=False)
    with host.sudo():
        out = host.check_output("lynis audit system --quick --no-colors 2>/dev/null")
    m = re.search(r"Hardening index : (\d+)", out)
    assert m, out[-2000:]
    index = int(m.group(1))
    suggestions = re.findall(r"^\s*\* (.+)$", out, re.M)
    print(f"LYNIS {host.backend.get_hostname()}: hardening index {index}; {len(suggestions)} suggestions")
    assert index >= LYNIS_MIN_INDEX, \
        f"Lynis index {index} < {LYNIS_MIN_INDEX}; suggestions: {'; '.join(suggestions[:12])}"

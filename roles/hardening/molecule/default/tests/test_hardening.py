"""Testinfra checks for the hardening role (molecule default scenario).

The verifier runs on the controller: ssh-audit and an SSH login as the admin
user go from the controller to the container's address, like a real client.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

POLICY = "Hardened Debian 12 (version 3)"
CONTAINER_TYPES = ("docker", "container", "podman", "lxc")


@pytest.fixture(scope="module")
def sshd_t(host):
    out = host.check_output("/usr/sbin/sshd -T -C user=opsadmin,host=client.example,addr=192.0.2.10")
    settings = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, value)
    return settings


@pytest.fixture(scope="module")
def in_container(host):
    facts = host.ansible("setup", "gather_subset=!all,virtual")["ansible_facts"]
    return facts.get("ansible_virtualization_role") == "guest" and \
        facts.get("ansible_virtualization_type") in CONTAINER_TYPES


@pytest.fixture(scope="module")
def address(host):
    addrs = [a for a in host.interface("eth0").addresses if ":" not in a]
    assert addrs, "container has no IPv4 address on eth0"
    return addrs[0]


# --- ssh ---------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("permitrootlogin", "no"),
    ("passwordauthentication", "no"),
    ("kbdinteractiveauthentication", "no"),
    ("pubkeyauthentication", "yes"),
    ("authenticationmethods", "publickey"),
    ("permitemptypasswords", "no"),
    ("loglevel", "VERBOSE"),
    ("maxauthtries", "3"),
    ("maxsessions", "4"),
    ("clientaliveinterval", "300"),
    ("clientalivecountmax", "2"),
    ("x11forwarding", "no"),
    ("allowtcpforwarding", "no"),
    ("allowagentforwarding", "no"),
    ("compression", "no"),
    ("tcpkeepalive", "no"),
    ("banner", "/etc/issue.net"),
    ("usepam", "yes"),
    ("port", "22"),
])
def test_sshd_effective_settings(sshd_t, key, value):
    assert sshd_t.get(key) == value


def test_sshd_algorithms(sshd_t):
    assert sshd_t["kexalgorithms"] == (
        "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,"
        "curve25519-sha256@libssh.org,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"
        "diffie-hellman-group-exchange-sha256")
    assert sshd_t["ciphers"] == (
        "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes256-ctr,aes192-ctr,"
        "aes128-gcm@openssh.com,aes128-ctr")
    assert sshd_t["macs"] == "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com"


def test_cloud_init_dropin_cannot_reenable_passwords(host, sshd_t):
    # prepare.yml wrote a drop-in with PasswordAuthentication yes etc.
    assert "PasswordAuthentication yes" in host.file("/etc/ssh/sshd_config.d/50-cloud-init.conf").content_string
    assert sshd_t["passwordauthentication"] == "no"
    assert sshd_t["permitrootlogin"] == "no"
    assert sshd_t["kbdinteractiveauthentication"] == "no"


def test_sshd_config_file(host):
    f = host.file("/etc/ssh/sshd_config")
    assert f.mode == 0o600
    assert f.user == "root"
    content = f.content_string
    # Our settings come before the drop-ins: sshd keeps the first value.
    assert content.index("PasswordAuthentication no") < content.index("Include /etc/ssh/sshd_config.d/*.conf")
    host.run_expect([0], "/usr/sbin/sshd -t")


def test_host_keys(host):
    assert not host.file("/etc/ssh/ssh_host_ecdsa_key").exists
    assert not host.file("/etc/ssh/ssh_host_dsa_key").exists
    rsa_bits = int(host.check_output("ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub").split()[0])
    assert rsa_bits == 4096
    # The ed25519 key from first boot is kept (controllers know it).
    before = host.file("/root/ed25519.fp").content_string.strip()
    assert host.check_output("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").strip() == before


def test_moduli_pruned(host):
    small = host.check_output("awk '$1 !~ /^#/ && NF >= 7 && $5 < 3071' /etc/ssh/moduli | wc -l")
    assert int(small) == 0
    assert int(host.check_output("awk '$1 !~ /^#/ && NF >= 7' /etc/ssh/moduli | wc -l")) > 0


def test_sshd_running(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_ssh_audit_policy(address):
    # On PATH, else beside this Python (the venv's bin). Missing is a failure.
    exe = shutil.which("ssh-audit") or shutil.which("ssh-audit", path=os.path.dirname(sys.executable))
    assert exe, "ssh-audit is not installed on the controller: it is in requirements.txt (scripts/lib/bootstrap.sh)"
    proc = subprocess.run([exe, "-P", POLICY, address], capture_output=True, text=True, timeout=180)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout


def test_admin_key_login_and_sudo(address):
    """Key-based SSH and passwordless sudo still work after hardening."""
    key = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "admin_ed25519")
    base = ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", f"opsadmin@{address}"]
    proc = subprocess.run(base + ["sudo -n id -u"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
    # A password is never asked for: key-less login is refused outright.
    proc = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
                           f"opsadmin@{address}", "true"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Permission denied (publickey)" in proc.stderr, proc.stderr


# --- sysctl ------------------------------------------------------------------

def test_sysctl_file(host):
    f = host.file("/etc/sysctl.d/90-hardening.conf")
    assert f.exists
    c = f.content_string
    for line in ("net.ipv4.conf.all.rp_filter = 1", "net.ipv4.tcp_syncookies = 1",
                 "kernel.kptr_restrict = 2", "kernel.dmesg_restrict = 1", "kernel.yama.ptrace_scope = 1",
                 "fs.suid_dumpable = 0", "kernel.randomize_va_space = 2",
                 "kernel.unprivileged_bpf_disabled = 1", "[sysctl-01]"):
        assert line in c
    # Forwarding is not managed by default (Docker, UFW routing need it).
    assert "ip_forward" not in c


def test_sysctl_applied_or_reported(host, in_container):
    import json
    status = json.loads(host.file("/etc/ansible/facts.d/hardening_sysctl.fact").content_string)
    if not in_container:
        for key, value in (("net.ipv4.conf.all.rp_filter", 1), ("kernel.kptr_restrict", 2)):
            assert host.sysctl(key) == value
        assert status["not_applied"] == []
        return
    # In a container nothing is reported as applied by the role; what differs
    # is listed as not applied, and it really differs from the file.
    assert status["container"] is True
    assert status["applied_by_role"] == []
    wanted = dict(re.findall(r"^(\S+) = (\S+)$", host.file("/etc/sysctl.d/90-hardening.conf").content_string, re.M))
    assert set(status["not_applied"]) | set(status["set_outside_role"]) == set(wanted)
    for key in status["not_applied"]:
        running = host.run(f"sysctl -n {key}")
        assert running.rc != 0 or running.stdout.strip() != wanted[key], key
    print("sysctl NOT applied in this container:", ", ".join(status["not_applied"]))


# --- modules, auditd ---------------------------------------------------------

@pytest.mark.parametrize("module", ["cramfs", "freevxfs", "jffs2", "hfs", "hfsplus", "udf",
                                    "usb-storage", "dccp", "sctp", "rds", "tipc", "firewire-core"])
def test_module_blacklisted(host, module):
    c = host.file("/etc/modprobe.d/hardening-blacklist.conf").content_string
    assert f"install {module} /bin/true" in c
    assert f"blacklist {module}" in c


def test_auditd_rules(host):
    assert host.package("auditd").is_installed
    rules = host.file("/etc/audit/rules.d/50-hardening.rules")
    assert rules.exists
    assert "-w /etc/shadow -p wa -k identity" in rules.content_string
    assert "-w /etc/ssh/sshd_config -p wa -k sshd" in rules.content_string


def test_auditd_conf(host):
    conf = host.file("/etc/audit/auditd.conf")
    assert conf.mode == 0o640
    for key, value in (("max_log_file", "50"), ("num_logs", "10"), ("disk_full_action", "SUSPEND")):
        assert re.findall(rf"^{key} = (\S+)$", conf.content_string, re.M) == [value]
    # The package's other settings are kept.
    assert re.search(r"^log_file = /var/log/audit/audit.log$", conf.content_string, re.M)


def test_auditd_service(host, in_container):
    if in_container:
        pytest.skip("auditd cannot run in a container: the kernel audit subsystem belongs to the "
                    "initial PID namespace (role installs and configures it, does not start it)")
    assert host.service("auditd").is_running
    assert host.service("auditd").is_enabled


# --- pam / login.defs --------------------------------------------------------

def test_pam(host):
    assert host.package("libpam-pwquality").is_installed
    auth = host.file("/etc/pam.d/common-auth").content_string
    assert re.search(r"^auth\s+requisite\s+pam_faillock.so preauth", auth, re.M)
    assert re.search(r"pam_faillock.so authfail", auth)
    assert "pam_faillock.so" in host.file("/etc/pam.d/common-account").content_string
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string
    pwq = host.file("/etc/security/pwquality.conf.d/50-hardening.conf").content_string
    assert re.search(r"^minlen = 14$", pwq, re.M)
    assert re.search(r"^minclass = 3$", pwq, re.M)
    assert re.search(r"^deny = 5$", host.file("/etc/security/faillock.conf").content_string, re.M)


@pytest.mark.parametrize("key,value", [
    ("PASS_MAX_DAYS", "365"), ("PASS_MIN_DAYS", "1"), ("PASS_WARN_AGE", "14"),
    ("UMASK", "027"), ("ENCRYPT_METHOD", "YESCRYPT"), ("SHA_CRYPT_MIN_ROUNDS", "65536"),
])
def test_login_defs(host, key, value):
    c = host.file("/etc/login.defs").content_string
    assert re.findall(rf"^{key}\s+(\S+)$", c, re.M) == [value], f"{key} must be set once, to {value}"


# --- permissions, core dumps -------------------------------------------------

@pytest.mark.parametrize("path,mode", [
    ("/etc/shadow", 0o640), ("/etc/gshadow", 0o640), ("/etc/passwd", 0o644),
    ("/etc/ssh/sshd_config", 0o600), ("/etc/cron.d", 0o700), ("/etc/cron.daily", 0o700),
])
def test_permissions(host, path, mode):
    f = host.file(path)
    if not f.exists:
        pytest.skip(f"{path} does not exist on this host")
    assert f.mode == mode


def test_login_shell_timeout_and_no_core_files(host):
    text = host.file("/etc/profile.d/hardening.sh").content_string
    assert "ulimit -c 0" in text
    assert "TMOUT=900" in text and "readonly TMOUT" in text


def test_proc_hides_other_users_processes(host):
    assert "hidepid=invisible" in host.file("/proc/mounts").content_string
    assert "hidepid=invisible" in host.file("/etc/fstab").content_string
    seen = int(host.check_output("runuser -u nobody -- sh -c 'ls -d /proc/[0-9]* | wc -l'"))
    assert seen <= 5, f"nobody sees {seen} processes"


def test_rootkit_scanner_scheduled(host):
    assert host.package("chkrootkit").is_installed
    assert 'RUN_DAILY="true"' in host.file("/etc/chkrootkit/chkrootkit.conf").content_string
    assert host.service("chkrootkit.timer").is_enabled


def _timer(host, unit):
    out = host.check_output(f"systemctl show {unit} -p FixedRandomDelay -p RandomizedDelayUSec -p TimersCalendar "
                            "-p TimersMonotonic -p ActiveState")
    return dict(line.split("=", 1) for line in out.splitlines())


def test_scans_start_at_a_fixed_per_host_time(host):
    """Not 30 min after boot on every host of a fleet booted together: a
    calendar time plus a fixed per-host delay within 4h (the default)."""
    for unit in ("chkrootkit.timer", "aide-check.timer"):
        props = _timer(host, unit)
        assert props["ActiveState"] == "active", unit
        assert props["FixedRandomDelay"] == "yes", unit
        assert props["RandomizedDelayUSec"] == "4h", unit
        assert "OnCalendar=" in props["TimersCalendar"], unit
        # systemctl show omits TimersMonotonic when the timer has none.
        monotonic = props.get("TimersMonotonic", "")
        assert monotonic == "", f"{unit} still runs relative to boot: {monotonic}"


def test_compilers_restricted(host):
    real = host.run("readlink -e /usr/bin/as").stdout.strip()
    if not real:
        pytest.skip("no assembler installed")
    assert host.file(real).mode & 0o001 == 0, f"{real} is executable by others"
    assert real in host.check_output("dpkg-statoverride --list")


def test_home_dirs(host):
    for line in host.check_output("find /home -mindepth 1 -maxdepth 1 -type d").splitlines():
        assert host.file(line).mode & 0o027 == 0, line


def test_core_dumps_disabled(host):
    assert "*    hard    core    0" in host.file("/etc/security/limits.d/10-hardening-coredump.conf").content_string
    assert "Storage=none" in host.file("/etc/systemd/coredump.conf.d/hardening.conf").content_string


# --- integrity (AIDE) -----------------------------------------------------------

AIDE_CHECK = "aide --config=/etc/aide/aide.conf --check"
AIDE_REBASELINE = ("aide --config=/etc/aide/aide.conf --init >/dev/null"
                   " && mv -f /var/lib/aide/aide.db.new /var/lib/aide/aide.db")


def test_aide_config_scoped_with_sha512(host):
    conf = host.file("/etc/aide/aide.conf")
    assert conf.mode == 0o600
    text = conf.content_string
    assert "Checksums = sha512" in text
    for path in ("/etc", "/usr/bin", "/usr/sbin", "/boot"):
        assert f"\n{path} Content\n" in text, path
    assert host.run("aide --config=/etc/aide/aide.conf --config-check").rc == 0


def test_aide_scheduled_check(host):
    assert host.service("aide-check.timer").is_enabled
    assert host.service("aide-check.timer").is_running


def test_aide_detects_a_planted_binary(host):
    """The baseline matches the converged host; a file planted in a watched
    directory is reported; the test then restores the host and its baseline."""
    clean = host.run(AIDE_CHECK)
    assert clean.rc == 0, clean.stdout[-3000:]
    planted = "/usr/local/sbin/sp-integrity-probe"
    host.run(f"printf '#!/bin/sh\\n' > {planted} && chmod 0755 {planted}")
    try:
        found = host.run(AIDE_CHECK)
        assert found.rc & 1, f"rc {found.rc}: the new file was not reported"
        assert planted in found.stdout
    finally:
        host.run(f"rm -f {planted}")
        host.run(AIDE_REBASELINE)
    assert host.run(AIDE_CHECK).rc == 0


# --- services, banner --------------------------------------------------------

@pytest.mark.parametrize("pkg", ["telnet", "rsh-client", "nis", "talk", "xinetd", "inetutils-telnetd"])
def test_legacy_packages_absent(host, pkg):
    assert not host.package(pkg).is_installed


def test_ctrl_alt_del_masked(host):
    assert "masked" in host.run("systemctl is-enabled ctrl-alt-del.target").stdout


def test_banner(host):
    for path in ("/etc/issue", "/etc/issue.net", "/etc/motd"):
        assert "Authorized access only" in host.file(path).content_string

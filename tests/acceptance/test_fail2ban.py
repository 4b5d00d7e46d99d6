"""fail2ban (roles/fail2ban) on every host: the sshd jail bans a real attacker.

A peer that is not in the target's ignoreip fails SSH logins (invalid user,
key-only client) until the target bans it; the ban must block it, and it must
be lifted after the ban time. Runs only when the ban time is test-sized
(<= 120 s); production ban times are skipped with a reason (a failure in the
lab and CI: skips.py), and a ban time fail2ban reports in a form this test
cannot read is a failure. The banned attacker must see what the ban action
does (UFW's reject: refused; deny or drop: filtered). Every wait is a loop
bounded by a deadline; a ban still in place at the end is lifted.
"""

from __future__ import annotations

import ipaddress
import re
import time

import pytest
from netprobe import tcp_probe
from skips import not_configured

pytestmark = pytest.mark.groups("all")

MAX_TEST_BANTIME = 120
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 2592000, "y": 31536000}


def _name(host) -> str:
    return host.backend.get_hostname()


def seconds(value) -> int | None:
    """fail2ban duration ('15', 15, '10m', '1h30m') -> seconds, or None."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    parts = re.findall(r"(\d+)(mo|[smhdwy])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(int(n) * UNITS[u] for n, u in parts)


def f2b(host, *args) -> str:
    with host.sudo():
        return host.check_output("fail2ban-client " + " ".join(args))


def banned(host) -> set[str]:
    return set(f2b(host, "get sshd banip").split())


def ignored(host) -> list:
    out = f2b(host, "get sshd ignoreip")
    nets = []
    for token in re.findall(r"[0-9A-Fa-f:.]+(?:/\d+)?", out):
        try:
            nets.append(ipaddress.ip_network(token, strict=False))
        except ValueError:
            continue
    return nets


def source_address(src, target_address: str) -> str:
    out = src.check_output(f"ip -o route get {target_address}")
    return re.search(r"\bsrc (\S+)", out).group(1)


def failed_login(src, address: str, port: int) -> None:
    src.run(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o ConnectTimeout=3 -p {port} f2b-acceptance-nosuchuser@{address} true || true"
    )  # `|| true`: over SSH, Testinfra takes exit status 255 for its own connection failing


def banned_state(host) -> str:
    """What a banned client's TCP connect gets from the jail's ban action: its
    blocktype as fail2ban runs it (reject: refused; deny or drop: filtered)."""
    # "The jail sshd has the following actions:\nufw[, other...]"
    actions = f2b(host, "get sshd actions").strip().splitlines()[-1].split(",")
    blocktype = f2b(host, f"get sshd action {actions[0].strip()} blocktype").strip().lower()
    if "reject" in blocktype:
        return "refused"
    if blocktype in ("deny", "drop"):
        return "filtered"
    raise AssertionError(f"unknown blocktype {blocktype!r} of ban action {actions[0]}: name its probe outcome here")


def test_fail2ban_running_with_sshd_jail(host, inventory):
    if inventory.hostvars(_name(host)).get("fail2ban_sshd_enabled", True) is False:
        not_configured("fail2ban_sshd_enabled is false for this host")
    assert host.service("fail2ban").is_running
    assert "sshd" in f2b(host, "status")


@pytest.mark.disruptive
@pytest.mark.tier_representative  # the jail is configured alike across a tier
def test_attacker_banned_then_unbanned(host, inventory, peer):
    name = _name(host)
    hv = inventory.hostvars(name)
    if hv.get("fail2ban_sshd_enabled", True) is False:
        not_configured("fail2ban_sshd_enabled is false for this host")
    reported = f2b(host, "get sshd bantime").strip()
    bantime = seconds(reported)
    assert bantime is not None, f"fail2ban reports the sshd ban time as {reported!r}: not a duration this test reads"
    if bantime > MAX_TEST_BANTIME:
        not_configured(f"ban time {bantime} s > {MAX_TEST_BANTIME} s: not waited for outside a test-sized inventory")
    expected = banned_state(host)
    maxretry = int(f2b(host, "get sshd maxretry"))
    port = int(hv.get("firewall_ssh_port", 22))
    address = inventory.address(name)
    controller = hv.get("lab_controller_address")

    # An attacker: another host, not the controller, not in ignoreip.
    ignore = ignored(host)
    attacker = attacker_ip = None
    for other in inventory.all_hosts():
        ohv = inventory.hostvars(other)
        if other == name or ohv.get("ansible_connection") == "local":
            continue
        src = peer(other)
        ip = source_address(src, address)
        if ip == controller or any(ipaddress.ip_address(ip) in net for net in ignore):
            continue
        attacker, attacker_ip = src, ip
        break
    if attacker is None:
        not_configured("every other host is in fail2ban_ignoreip (or is the controller)")

    assert attacker_ip not in banned(host), f"{attacker_ip} already banned"
    try:
        # UFW's SSH limit refuses a source's 6th new connection within 30 s:
        # attack in bursts of at most 5 connections per 30 s.
        deadline = time.monotonic() + 60 + 35 * (maxretry // 5 + 1)
        burst_start, burst = time.monotonic(), 0
        while attacker_ip not in banned(host):
            assert time.monotonic() < deadline, f"{attacker_ip} not banned after {maxretry} failures"
            if burst >= 5:
                if time.monotonic() - burst_start < 31:
                    time.sleep(1)
                    continue
                burst_start, burst = time.monotonic(), 0
            failed_login(attacker, address, port)
            burst += 1
            time.sleep(0.5)

        # fail2ban lists the ban before its action (the UFW rule) has run.
        deadline = time.monotonic() + 15
        while (state := tcp_probe(attacker, address, port)) == "open":
            assert time.monotonic() < deadline, "banned attacker still gets through"
            time.sleep(1)
        assert state == expected, f"banned attacker gets {state}, the ban action gives {expected}"

        with_time = f2b(host, "get sshd banip --with-time")
        match = re.search(re.escape(attacker_ip) + r"\s.*\+ (\d+) =", with_time)
        ban_seconds = int(match.group(1)) if match else bantime
        if ban_seconds > MAX_TEST_BANTIME:
            not_configured(f"incremented ban of {ban_seconds} s (repeat offender, bantime.increment): "
                           "ban verified, unban not waited for")
        deadline = time.monotonic() + ban_seconds + 20
        while attacker_ip in banned(host):
            assert time.monotonic() < deadline, f"still banned {ban_seconds + 20} s later"
            time.sleep(1)
        # The first probe after 30 s of silence: a probe sent while UFW's SSH
        # limit holds counts twice (xt_recent --set and --update) and keeps
        # the limit alive, so probes stay 31 s apart.
        time.sleep(31)
        for _ in range(3):
            if tcp_probe(attacker, address, port) == "open":
                break
            time.sleep(31)
        else:
            pytest.fail("SSH not reachable again after the unban (3 probes, 31 s apart)")
    finally:
        if attacker_ip in banned(host):
            f2b(host, "set sshd unbanip", attacker_ip)

"""Verify the keepalived role: configuration, then the shared address moving.

Two hosts share 10.233.0.10 (VRRP over unicast, password, tracking the
stand-in load balancer `lbtest.service` on :8080, priorities 150 and 140, no
preemption). The controller reaches the address over the scenario's Docker
network and sees which host answers. Every wait is a loop bounded by a
deadline.
"""

import os
import time
import urllib.request

import pytest
import testinfra

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
FIRST, SECOND = PREFIX + "-vrrp-1", PREFIX + "-vrrp-2"
VIP = "10.233.0.10"

testinfra_hosts = ["ansible://" + FIRST, "ansible://" + SECOND]


def _host(name):
    return testinfra.get_host("ansible://" + name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def pair():
    return {FIRST: _host(FIRST), SECOND: _host(SECOND)}


def holders(pair):
    return sorted(name for name, h in pair.items()
                  if (VIP + "/") in h.check_output("ip -4 -o addr show"))


def answer():
    """Which host answers on the shared address ('' when none does)."""
    try:
        with urllib.request.urlopen("http://%s:8080/" % VIP, timeout=2) as resp:
            return resp.read().decode().strip()
    except OSError:
        return ""


def wait_for(pair, holder, seconds=20):
    deadline = time.monotonic() + seconds
    while True:
        now = holders(pair)
        if now == [holder] and answer() == holder:
            return
        assert time.monotonic() < deadline, "after %d s: held by %s, answered by %r; expected %s" % (
            seconds, now, answer(), holder)
        time.sleep(0.5)


def test_package_service_and_config(host):
    assert host.package("keepalived").is_installed
    assert host.service("keepalived").is_running
    assert host.service("keepalived").is_enabled
    conf = host.file("/etc/keepalived/keepalived.conf")
    assert conf.user == "root" and conf.mode == 0o600
    text = conf.content_string
    assert "unicast_peer" in text and "nopreempt" in text and "state BACKUP" in text
    assert "enable_script_security" in text and "script_user keepalived_script" in text
    assert host.run("/usr/local/sbin/keepalived-config-test /etc/keepalived/keepalived.conf").rc == 0


def test_check_scripts_run_unprivileged(host):
    user = host.user("keepalived_script")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid < 1000
    check = "runuser -u keepalived_script -- /usr/local/sbin/keepalived-check-tcp 127.0.0.1 %d"
    assert host.run(check % 8080).rc == 0
    assert host.run(check % 8081).rc != 0


def current_holder(pair, seconds=30):
    """The one host holding the address (waits until exactly one does)."""
    deadline = time.monotonic() + seconds
    while True:
        now = holders(pair)
        if len(now) == 1:
            return now[0]
        assert time.monotonic() < deadline, "after %d s the address is held by %s" % (seconds, now)
        time.sleep(0.5)


def test_exactly_one_host_holds_the_address_and_answers(pair):
    # Which one depends on whose check succeeded first after the converge:
    # with nopreempt, the first to become MASTER keeps the address.
    holder = current_holder(pair)
    wait_for(pair, holder)


def test_address_moves_when_the_load_balancer_stops_and_when_the_host_fails(pair):
    first = current_holder(pair)
    second = SECOND if first == FIRST else FIRST
    wait_for(pair, first)
    try:
        # The tracked port closes on the holder (its service stops): FAULT,
        # the peer takes over.
        pair[first].run("systemctl stop lbtest.service")
        wait_for(pair, second)
        assert "FAULT" in pair[first].check_output(
            "journalctl -u keepalived --since '-60s' --no-pager -o cat | tail -n 20")
        # It comes back: no preemption, the address stays.
        pair[first].run("systemctl start lbtest.service")
        time.sleep(6)
        assert holders(pair) == [second] and answer() == second
        # The holder's keepalived dies (host failure): the first takes over.
        pair[second].run("systemctl stop keepalived")
        wait_for(pair, first)
    finally:
        pair[first].run("systemctl start lbtest.service")
        pair[second].run("systemctl start keepalived")
    time.sleep(4)
    assert holders(pair) == [first]

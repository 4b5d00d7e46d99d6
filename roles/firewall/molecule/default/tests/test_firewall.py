"""Verify the firewall role on the target and from its peers.

The target is in `opensearch`; the `app` peer (app_servers) may reach 9200,
the `lb` peer (loadbalancers) may not. Reachability is measured with TCP
connects from the peers: "open"/"refused" means the packet got through,
"filtered" means UFW dropped it (the connect timed out).
"""

import os
import re
import time

import pytest
import testinfra

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
TARGET = PREFIX + "-fw-target"
APP = PREFIX + "-fw-app"
LB = PREFIX + "-fw-lb"

testinfra_hosts = ["ansible://" + TARGET]


def _host(name):
    return testinfra.get_host(
        "ansible://" + name,
        ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"],
    )


def _address(host):
    return host.check_output(
        "ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'"
    ).strip()


def probe(src, address, port, timeout=3):
    """TCP connect from `src`: 'open', 'refused' or 'filtered'."""
    cmd = src.run(
        "timeout %d bash -c '</dev/tcp/%s/%s'" % (timeout, address, port)
    )
    if cmd.rc == 0:
        return "open"
    if cmd.rc == 124:
        return "filtered"
    if "refused" in cmd.stderr:
        return "refused"
    return "error rc=%d %s" % (cmd.rc, cmd.stderr.strip())


@pytest.fixture(scope="module")
def peers():
    return {"app": _host(APP), "lb": _host(LB)}


@pytest.fixture(scope="module")
def target_ip(host):
    return _address(host)


def test_ufw_active_with_default_policies(host):
    out = host.check_output("ufw status verbose")
    assert "Status: active" in out
    # UFW prints "disabled (routed)" while the kernel does not forward (a
    # plain host, as these containers are); the policy file must say DROP.
    assert re.search(r"Default: deny \(incoming\), allow \(outgoing\), (deny|disabled) \(routed\)", out), out
    assert 'DEFAULT_FORWARD_POLICY="DROP"' in host.file("/etc/default/ufw").content_string
    assert "Logging: on (low)" in out
    assert host.service("ufw").is_enabled


def test_ssh_is_rate_limited_from_anywhere(host):
    out = host.check_output("ufw show added")
    assert "ufw limit 22/tcp comment 'managed: ssh'" in out


def test_group_rules_resolved_to_peer_addresses(host, peers, target_ip):
    added = host.check_output("ufw show added")
    app_ip = _address(peers["app"])
    lb_ip = _address(peers["lb"])
    assert "ufw allow from %s to any port 9200 proto tcp" % app_ip in added
    assert "ufw allow from %s to any port 9300:9400 proto tcp" % target_ip in added
    assert "ufw allow from 192.0.2.0/24 to any port 9100 proto tcp" in added
    assert "ufw allow from 198.51.100.7 to any port 8125 proto udp" in added
    assert re.search(r"ufw allow from 198\.51\.100\.8 .*proto vrrp", added), added
    # lb's rule (443 from anywhere) belongs to loadbalancers, not to the target
    assert " 443" not in added
    assert lb_ip not in added


def test_hand_made_rule_survives_and_stale_managed_rule_is_gone(host):
    added = host.check_output("ufw show added")
    assert "ufw allow from 203.0.113.9 to any port 2222 proto tcp comment 'hand made'" in added
    assert "7777" not in added


def test_allowed_peer_reaches_service(peers, target_ip):
    assert probe(peers["app"], target_ip, 9200) == "open"


def test_other_peer_is_filtered(peers, target_ip):
    assert probe(peers["lb"], target_ip, 9200) == "filtered"
    # 9300 is only for the opensearch group: the app peer is filtered too
    assert probe(peers["app"], target_ip, 9300) == "filtered"


def test_undeclared_port_is_filtered(peers, target_ip):
    # 7777 was the stale managed rule: nothing may get through any more
    assert probe(peers["app"], target_ip, 7777) == "filtered"


def test_ssh_from_peer_after_enable(peers, target_ip):
    cmd = peers["app"].run(
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5 "
        "root@%s true" % target_ip
    )
    assert cmd.rc == 0, cmd.stderr


def test_ssh_session_opened_before_enable_survives(host, peers):
    # The lb peer opened the session in prepare, before UFW was enabled on
    # either side; it must still be writing its heartbeat every second.
    assert peers["lb"].service("fw-test-ssh-session").is_running
    deadline = time.monotonic() + 10
    age = None
    while time.monotonic() < deadline:
        beat = int(host.check_output("cat /tmp/ssh-session-heartbeat"))
        age = int(time.time()) - beat
        if age <= 3:
            break
        time.sleep(0.5)
    assert age is not None and age <= 3, "heartbeat is %s s old" % age


def test_ssh_limit_throttles_bursts(peers, target_ip):
    # ufw limit: a 7th new connection within 30 s from one source is refused.
    # Runs last: the lb peer stays throttled for up to 30 s afterwards.
    results = [probe(peers["lb"], target_ip, 22, timeout=2) for _ in range(10)]
    assert results[0] == "open"
    assert any(r != "open" for r in results), results

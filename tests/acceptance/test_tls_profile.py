"""The platform's TLS profile on every endpoint it is wired to.

roles/platform's `platform_tls_protocols`, `platform_tls_ciphers_tls12`,
`platform_tls_ciphers_tls13` and `platform_tls_curves` (Mozilla
intermediate by default) feed the load balancers (roles/lb_nginx,
roles/lb_haproxy: 443) and both OpenSearch clusters (roles/opensearch: HTTP
and transport; the search cluster's nodes and, with
`platform_logging_store: dedicated`, the log store on the logging hosts).
Each endpoint the controller reaches is scanned with
``sslyze --mozilla_config=intermediate`` (tlsprobe.py): it must be
compliant, and accept nothing outside the
inventory's profile (no TLS 1.2 suite, TLS 1.3 suite or group it does not
list, no version it does not list), and every group it lists. sslyze
counts a handshake that timed out as a group refused; a group of the
profile the scan missed is asked again, one connection at a time, before
the test calls it refused (tlsprobe.accepted_curves).

The relays' RELP listener (rsyslog, 2514) is mutual TLS: sslyze presents
the relay's own client certificate (copied for the scan, removed after).

OpenSearch's transport (9300) is mutual TLS on addresses only the nodes
reach (the lab's loopback aliases): the opensearch role's Molecule scenario
checks it with real handshakes (CBC suites, secp521r1 and X448 refused, the
profile's suites and groups accepted).
"""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
from skips import not_configured
from tlsprobe import accepted_curves, sslyze_scan

pytestmark = pytest.mark.groups("loadbalancers", "opensearch", "logging")


def _name(host) -> str:
    return host.backend.get_hostname()


@pytest.fixture
def endpoint(host, inventory):
    """(SNI name, port, address, tier) of the TLS endpoint `host` serves under the profile."""
    name = _name(host)
    groups = inventory.groups_of(name)
    address = inventory.address(name)
    if "loadbalancers" in groups:
        return (inventory.resolved(name, "_platform_lb_server_names")[0],
                int(inventory.resolved(name, "_platform_lb_https_port")), address, "load balancer")
    if "opensearch" in groups:
        return name, int(inventory.resolved(name, "opensearch_http_port")), address, "search cluster"
    if inventory.resolved(name, "platform_logging_store") != "dedicated":
        not_configured(f"{name}: no log store of its own (platform_logging_store is not dedicated)")
    return name, int(inventory.resolved(name, "opensearch_http_port")), address, "log store"


@pytest.fixture
def profile(host, inventory):
    name = _name(host)
    return {key: list(inventory.resolved(name, f"platform_tls_{key}"))
            for key in ("protocols", "ciphers_tls12", "ciphers_tls13", "curves")}


def _check(endpoint, platform_ca, profile, **client):
    """Scan the endpoint and hold it to the profile."""
    server_name, port, address, tier = endpoint
    try:
        socket.create_connection((address, port), timeout=10).close()
    except OSError as err:
        pytest.fail(f"{tier} {address}:{port} unreachable from the controller ({err}): converge the tier, or "
                    "allow the controller in firewall_extra_rules (the lab's inventory does)", pytrace=False)
    scan = sslyze_scan(server_name, port, address, platform_ca, **client)
    print(scan.report())
    groups = accepted_curves(scan, set(profile["curves"]), lambda: sslyze_scan(
        server_name, port, address, platform_ca, commands=("--elliptic_curves", "--slow_connection"), **client))
    _in_profile(scan, groups, tier, profile)


def test_sslyze_mozilla_intermediate_and_nothing_outside_the_profile(endpoint, platform_ca, profile):
    _check(endpoint, platform_ca, profile)


@pytest.mark.groups("logging")
def test_relp_relay_speaks_the_profile(host, inventory, platform_ca, profile):
    """RELP between every host and the relays: the relay's listener under the
    same profile, scanned with a client certificate it accepts (its own)."""
    name = _name(host)
    if not inventory.resolved(name, "rsyslog_relay_enabled"):
        not_configured(f"{name} is no relay")
    port = int(inventory.resolved(name, "rsyslog_relay_port"))
    with tempfile.TemporaryDirectory(prefix="searchplat-relp-") as tmp:
        cert, key = os.path.join(tmp, "client.crt"), os.path.join(tmp, "client.key")
        with host.sudo():
            chain = host.file(inventory.resolved(name, "rsyslog_tls_cert_file")).content_string
            private = host.file(inventory.resolved(name, "rsyslog_tls_key_file")).content_string
        # The leaf only: sslyze's legacy OpenSSL (its SSL 2.0/3.0 scans) cannot load a chain.
        end = "-----END CERTIFICATE-----"
        with open(cert, "w") as f:
            f.write(chain.split(end, 1)[0] + end + "\n")
        with open(key, "w", opener=lambda path, flags: os.open(path, flags, 0o600)) as f:
            f.write(private)
        _check((name, port, inventory.address(name), "RELP relay"), platform_ca, profile, client_cert=cert, client_key=key)


def _in_profile(scan, groups, tier, profile):
    assert scan.compliant, f"{tier}: {scan.verdict} {scan.issues}\n{scan.report()}"
    for version in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
        assert not scan.accepted(version), f"{tier} accepts {version}: {sorted(scan.accepted(version))}"
    tls12, tls13 = scan.accepted("TLSv1.2"), scan.accepted("TLSv1.3")
    assert bool(tls12) == ("TLSv1.2" in profile["protocols"]), f"{tier}: TLS 1.2 suites {sorted(tls12)}"
    assert bool(tls13) == ("TLSv1.3" in profile["protocols"]), f"{tier}: TLS 1.3 suites {sorted(tls13)}"
    assert tls12 <= set(profile["ciphers_tls12"]), f"{tier}: outside the profile: {sorted(tls12 - set(profile['ciphers_tls12']))}"
    assert tls13 <= set(profile["ciphers_tls13"]), f"{tier}: outside the profile: {sorted(tls13 - set(profile['ciphers_tls13']))}"
    assert groups == set(profile["curves"]), f"{tier}: groups {sorted(groups)}, profile {profile['curves']}"

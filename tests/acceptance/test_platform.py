"""Platform-wide facts every host must show, whatever its tier."""

import pytest

pytestmark = pytest.mark.groups("all")


def test_systemd_healthy_no_failed_units(host):
    failed = host.run("systemctl --failed --no-legend --plain").stdout.strip()
    assert failed == "", f"failed units:\n{failed}"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", f"system state is {state}"


def test_private_address_is_configured(host, inventory):
    name = host.backend.get_hostname()
    address = inventory.hostvars(name)["private_address"]
    configured = host.run("ip -4 -o addr show").stdout
    assert f" {address}/" in configured, f"{address} is not on any interface of {name}"


def test_supported_os(host):
    distro = host.system_info.distribution
    release = host.system_info.release
    assert (distro, release.split(".")[0]) in {("debian", "12")} or (distro, release) in {
        ("ubuntu", "22.04"), ("ubuntu", "24.04")}, f"{distro} {release}"


"""Verify the pki role on both hosts (after converge and side_effect).

Files and modes of the fixed layout, the key made on the host and never seen
on the controller, the chain to ca.crt, SANs, lifetime, the system trust
store, and the full chain / bundle built from the parts.
"""

import datetime
import os
import pathlib

import pytest

EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
CA_DIR = EPHEMERAL / "pki-ca"
D = "/etc/ssl/searchplat"


def certificates(host):
    """The scenario's certificates on this host (molecule.yml host_vars)."""
    name = host.backend.get_hostname()
    if name.endswith("-1"):
        return [{"name": "loadbalancer", "group": "adm", "key_mode": 0o640, "bundle": True,
                 "dns": [name + ".searchplat.test", "lb.searchplat.test"], "ip": ["127.0.0.1", "0:0:0:0:0:0:0:1"]}]
    return [
        {"name": "loadbalancer", "group": "root", "key_mode": 0o640, "bundle": False,
         "dns": [name + ".searchplat.test", "lb.searchplat.test"], "ip": ["127.0.0.1", "0:0:0:0:0:0:0:1"]},
        {"name": "metrics", "group": "root", "key_mode": 0o600, "bundle": False,
         "dns": ["metrics.searchplat.test"], "ip": []},
    ]


def address(host):
    return host.check_output("ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'").strip()


def test_directory_and_ca_file(host):
    d = host.file(D)
    assert d.is_directory and d.user == "root" and d.mode == 0o755
    ca = host.file(D + "/ca.crt")
    assert ca.user == "root" and ca.mode == 0o644
    assert ca.content_string == (CA_DIR / "ca.crt").read_text()


def test_files_and_modes(host):
    for c in certificates(host):
        key = host.file(f"{D}/{c['name']}.key")
        assert key.is_file and key.user == "root" and key.group == c["group"] and key.mode == c["key_mode"]
        for suffix in (".crt", "-chain.crt", "-fullchain.crt"):
            f = host.file(f"{D}/{c['name']}{suffix}")
            assert f.is_file and f.user == "root" and f.mode == 0o644, suffix
        pem = host.file(f"{D}/{c['name']}.pem")
        if c["bundle"]:
            assert pem.is_file and pem.group == c["group"] and pem.mode == c["key_mode"]
        else:
            assert not pem.exists


def test_key_is_ecdsa_p256_and_matches_the_certificate(host):
    for c in certificates(host):
        text = host.check_output(f"openssl pkey -in {D}/{c['name']}.key -noout -text")
        assert "ASN1 OID: prime256v1" in text
        key_pub = host.check_output(f"openssl pkey -in {D}/{c['name']}.key -pubout")
        cert_pub = host.check_output(f"openssl x509 -in {D}/{c['name']}.crt -noout -pubkey")
        assert key_pub == cert_pub


def test_key_never_left_the_host(host):
    """The CA directory holds the CA only, and no file the controller keeps
    for the scenario contains any part of a host key."""
    assert sorted(p.name for p in CA_DIR.iterdir()) == ["ca.crt", "ca.key"]
    assert (CA_DIR / "ca.key").stat().st_mode & 0o777 == 0o600
    assert "ENCRYPTED PRIVATE KEY" in (CA_DIR / "ca.key").read_text()
    for c in certificates(host):
        body = "".join(host.file(f"{D}/{c['name']}.key").content_string.splitlines()[1:-1])
        assert len(body) > 40
        for path in EPHEMERAL.rglob("*"):
            if path.is_file() and path.stat().st_size < 10_000_000:
                data = "".join(path.read_text(errors="ignore").split())
                assert body not in data, f"host key material found in {path}"


def test_chain_verifies_to_ca_and_names(host):
    ip = address(host)
    for c in certificates(host):
        crt = f"{D}/{c['name']}.crt"
        chain = f"{D}/{c['name']}-chain.crt"
        assert host.run(f"openssl verify -CAfile {D}/ca.crt -untrusted {chain} {crt}").rc == 0
        for dns in c["dns"]:
            cmd = host.run(f"openssl verify -CAfile {D}/ca.crt -verify_hostname {dns} {crt}")
            assert cmd.rc == 0, cmd.stdout + cmd.stderr
        for addr in [ip] + [a for a in c["ip"] if "." in a]:
            cmd = host.run(f"openssl verify -CAfile {D}/ca.crt -verify_ip {addr} {crt}")
            assert cmd.rc == 0, cmd.stdout + cmd.stderr
        assert host.run(f"openssl verify -CAfile {D}/ca.crt -verify_hostname not-in.searchplat.test {crt}").rc != 0


def test_sans_present(host):
    ip = address(host)
    for c in certificates(host):
        out = host.check_output(f"openssl x509 -in {D}/{c['name']}.crt -noout -ext subjectAltName")
        names = {n.strip() for n in out.splitlines()[1].split(",")}
        expected = {"DNS:" + d for d in c["dns"]} | {"IP Address:" + a for a in c["ip"] + [ip]}
        assert names == expected


def test_validity_at_most_366_days(host):
    for c in certificates(host):
        out = host.check_output(f"openssl x509 -in {D}/{c['name']}.crt -noout -startdate -enddate")
        dates = dict(line.split("=", 1) for line in out.splitlines())
        fmt = "%b %d %H:%M:%S %Y %Z"
        start = datetime.datetime.strptime(" ".join(dates["notBefore"].split()), fmt)
        end = datetime.datetime.strptime(" ".join(dates["notAfter"].split()), fmt)
        assert datetime.timedelta(days=30) < end - start <= datetime.timedelta(days=366)
        assert end - datetime.datetime.utcnow() > datetime.timedelta(days=30)


def test_leaf_is_a_server_certificate(host):
    for c in certificates(host):
        text = host.check_output(f"openssl x509 -in {D}/{c['name']}.crt -noout -text")
        assert "CA:FALSE" in text
        assert "TLS Web Server Authentication" in text


def test_system_trust_store_has_the_ca(host):
    store = host.file("/usr/local/share/ca-certificates/searchplat-ca.crt")
    assert store.mode == 0o644 and store.content_string == (CA_DIR / "ca.crt").read_text()
    assert host.file("/etc/ssl/certs/searchplat-ca.pem").is_symlink
    # No -CAfile: the system store alone must trust the leaf.
    for c in certificates(host):
        cmd = host.run(f"openssl verify {D}/{c['name']}.crt")
        assert cmd.rc == 0, cmd.stdout + cmd.stderr


@pytest.mark.parametrize("part", ["fullchain", "pem"])
def test_fullchain_and_bundle_are_built_from_the_parts(host, part):
    for c in certificates(host):
        leaf = host.file(f"{D}/{c['name']}.crt").content_string
        chain = host.file(f"{D}/{c['name']}-chain.crt").content_string
        fullchain = host.file(f"{D}/{c['name']}-fullchain.crt").content_string
        assert chain == (CA_DIR / "ca.crt").read_text()
        if part == "fullchain":
            assert fullchain == leaf + chain
        elif c["bundle"]:
            key = host.file(f"{D}/{c['name']}.key").content_string
            assert host.file(f"{D}/{c['name']}.pem").content_string == fullchain + key

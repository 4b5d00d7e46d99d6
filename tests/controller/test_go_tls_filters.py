"""The platform TLS profile in Go's terms (roles/platform/filter_plugins/go_tls.py):
what Prometheus and Alertmanager get from the profile."""

import importlib.util
import pathlib

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("go_tls", ROOT / "roles" / "platform" / "filter_plugins" / "go_tls.py")
go = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(go)

DEFAULTS = yaml.safe_load((ROOT / "roles" / "platform" / "defaults" / "main.yml").read_text())


def test_the_default_profile_is_mozilla_intermediate_in_go_terms():
    assert go.platform_go_tls_min_version(DEFAULTS["platform_tls_protocols"]) == "TLS12"
    assert go.platform_go_cipher_suites(DEFAULTS["platform_tls_ciphers_tls12"]) == [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"]
    assert go.platform_go_curves(DEFAULTS["platform_tls_curves"]) == ["X25519", "CurveP256", "CurveP384"]
    # Go offers its three TLS 1.3 suites whatever the configuration: the
    # profile must allow all of them, or the Go endpoints would not follow it.
    assert set(go.GO_TLS13_SUITES) <= set(DEFAULTS["platform_tls_ciphers_tls13"])


def test_min_version_is_the_lowest_protocol():
    assert go.platform_go_tls_min_version(["TLSv1.3"]) == "TLS13"
    assert go.platform_go_tls_min_version(["TLSv1.3", "TLSv1.2"]) == "TLS12"
    with pytest.raises(AnsibleFilterError, match="platform_tls_protocols"):
        go.platform_go_tls_min_version(["SSLv3"])
    with pytest.raises(AnsibleFilterError):
        go.platform_go_tls_min_version("TLSv1.2")


def test_suites_go_lacks_are_left_out_and_typos_refused():
    # Mozilla's intermediate list also has DHE suites, which Go does not implement.
    assert go.platform_go_cipher_suites(["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]) == [
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
    with pytest.raises(AnsibleFilterError, match="IANA suite names"):
        go.platform_go_cipher_suites(["ECDHE-RSA-AES128-GCM-SHA256"])
    with pytest.raises(AnsibleFilterError, match="no suite Go implements"):
        go.platform_go_cipher_suites(["TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"])


def test_curves_take_openssl_and_nist_names():
    assert go.platform_go_curves(["prime256v1", "P-384", "secp521r1", "X448"]) == ["CurveP256", "CurveP384", "CurveP521"]
    with pytest.raises(AnsibleFilterError, match="unknown curves"):
        go.platform_go_curves(["X25519", "secp999r1"])
    with pytest.raises(AnsibleFilterError, match="no curve Go implements"):
        go.platform_go_curves(["X448"])

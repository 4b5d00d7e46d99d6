"""The platform TLS profile in the terms of Go's crypto/tls.

Prometheus, Alertmanager and the exporters (Go programs configured through
the Prometheus exporter-toolkit web configuration) take the profile
(platform_tls_protocols, platform_tls_ciphers_tls12, platform_tls_curves in
roles/platform/defaults/main.yml) as:

- min_version: TLS10 ... TLS13, the lowest protocol of the profile;
- cipher_suites: Go's names, which are the IANA names, TLS 1.2 only (Go does
  not let TLS 1.3 suites be chosen: it offers TLS_AES_128_GCM_SHA256,
  TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256, all three in
  Mozilla's intermediate profile);
- curve_preferences: X25519, CurveP256, CurveP384, CurveP521.

Suites and curves of the profile that Go does not implement (the DHE suites,
X448, the ffdhe groups) are left out: the Go endpoints offer the rest of the
profile. A name that is no TLS name at all is an error, as is a profile
that leaves Go nothing.

The other libraries' spellings (OpenSSL for the load balancers, Java for
OpenSearch) come from filter_plugins/platform.py (platform_tls_cipher_names,
platform_tls_curve_names). Its "go" spelling refuses what Go lacks; these
filters leave it out, so a profile with Mozilla's DHE suites or X448 still
holds for the load balancers and OpenSearch and gives the Go endpoints the
rest.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# TLS 1.2 suites Go's crypto/tls implements and lists in tls.CipherSuites()
# (the exporter-toolkit accepts exactly those names).
GO_TLS12_SUITES = frozenset({
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
})
# The TLS 1.3 suites Go always offers (not configurable).
GO_TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

# Curve names (OpenSSL's, the RFC 8446 group names, NIST's) -> Go's.
GO_CURVES = {
    "x25519": "X25519",
    "secp256r1": "CurveP256", "prime256v1": "CurveP256", "p-256": "CurveP256",
    "secp384r1": "CurveP384", "p-384": "CurveP384",
    "secp521r1": "CurveP521", "p-521": "CurveP521",
}
# Groups a TLS profile may name that Go does not implement.
NOT_IN_GO = re.compile(r"^(x448|ffdhe(2048|3072|4096|6144|8192)|brainpoolp(256|384|512)r1(tls13)?)$")

GO_VERSIONS = {"TLSv1": "TLS10", "TLSv1.0": "TLS10", "TLSv1.1": "TLS11", "TLSv1.2": "TLS12", "TLSv1.3": "TLS13"}
IANA_SUITE = re.compile(r"^TLS_[A-Z0-9_]+$")


def _names(value, what):
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise AnsibleFilterError(f"{what} must be a list of names, got {value!r}")
    return [str(v).strip() for v in value]


def platform_go_tls_min_version(protocols):
    """The lowest protocol of the profile as Go's min_version (TLS12)."""
    names = _names(protocols, "platform_tls_protocols")
    unknown = [n for n in names if n not in GO_VERSIONS]
    if unknown or not names:
        raise AnsibleFilterError(
            f"platform_tls_protocols must name TLS versions among {', '.join(sorted(GO_VERSIONS))} "
            f"(got {names}; unknown: {unknown})")
    return min((GO_VERSIONS[n] for n in names), key=lambda v: int(v[3:]))


def platform_go_cipher_suites(suites):
    """The profile's TLS 1.2 suites (IANA names) that Go implements, in order."""
    names = _names(suites, "platform_tls_ciphers_tls12")
    bad = [n for n in names if not IANA_SUITE.match(n)]
    if bad:
        raise AnsibleFilterError(
            f"platform_tls_ciphers_tls12 must hold IANA suite names such as "
            f"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (got {bad})")
    out = [n for n in dict.fromkeys(names) if n in GO_TLS12_SUITES]
    if not out:
        raise AnsibleFilterError(
            f"platform_tls_ciphers_tls12 ({names}) has no suite Go implements: Prometheus, Alertmanager "
            f"and the exporters could not speak TLS 1.2. Add an ECDHE suite, e.g. "
            f"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
    return out


def platform_go_curves(curves):
    """The profile's curves as Go's curve_preferences names, in order."""
    names = _names(curves, "platform_tls_curves")
    out, unknown = [], []
    for name in names:
        go = GO_CURVES.get(name.lower())
        if go:
            if go not in out:
                out.append(go)
        elif not NOT_IN_GO.match(name.lower()):
            unknown.append(name)
    if unknown:
        raise AnsibleFilterError(
            f"platform_tls_curves names unknown curves {unknown}: use X25519, secp256r1, secp384r1, "
            f"secp521r1 (or prime256v1, P-256, ...)")
    if not out:
        raise AnsibleFilterError(
            f"platform_tls_curves ({names}) has no curve Go implements: use X25519, secp256r1 or secp384r1")
    return out


class FilterModule:
    def filters(self):
        return {
            "platform_go_tls_min_version": platform_go_tls_min_version,
            "platform_go_cipher_suites": platform_go_cipher_suites,
            "platform_go_curves": platform_go_curves,
        }

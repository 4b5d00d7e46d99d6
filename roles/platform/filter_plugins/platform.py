"""Filters of the platform wiring (roles/platform/defaults/main.yml).

Reading another host's settings: `hostvars[host]` holds what the inventory
gives that host (and its facts), not role defaults. So a setting of another
host is that host's inventory value, else the default every host shares;
these filters take that default explicitly, e.g. the app servers' ports:

    _platform_apps | platform_endpoints(hostvars, 'app_port', app_port)

where `app_port` (in the calling host's context) is the shared default,
unless the calling host's own inventory sets it too: pass the role default
then (lookup('role_default', ...)).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from jinja2 import Undefined


def _value(hostvars, host, name, default=None):
    """`name` of `host` as its inventory sets it, else `default`."""
    hv = hostvars[host]
    try:
        value = hv[name]
    except (KeyError, TypeError):
        return default
    if value is None or isinstance(value, Undefined) or type(value).__name__.endswith("Marker"):
        return default
    return value


def platform_hostvar(host, hostvars, name, default=None):
    """One setting of another host: its inventory value, else `default`."""
    return _value(hostvars, host, name, default)


_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$")
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def platform_seconds(value, default_unit="s"):
    """A duration as nginx or HAProxy write it ("2s", "1500ms", "1m"; a bare
    number is in `default_unit`: s for nginx, ms for HAProxy) in seconds."""
    if default_unit not in _TIME_UNITS:
        raise AnsibleFilterError("platform_seconds: default_unit must be one of %s, got %r"
                                 % (", ".join(_TIME_UNITS), default_unit))
    match = _TIME.match(str(value))
    if not match:
        raise AnsibleFilterError("platform_seconds: %r is not a duration such as 2s, 1500ms or 1m" % (value,))
    number, unit = match.groups()
    return float(number) * _TIME_UNITS[unit or default_unit]


def platform_endpoints(hosts, hostvars, port_var, default_port):
    """[{name, address, port}] of `hosts`: private_address and `port_var`."""
    return [
        {"name": h, "address": _value(hostvars, h, "private_address"), "port": int(_value(hostvars, h, port_var, default_port))}
        for h in hosts
    ]


def platform_host_ports(hosts, hostvars, port_var, default_port):
    """['address:port'] of `hosts`."""
    return ["%s:%s" % (e["address"], e["port"]) for e in platform_endpoints(hosts, hostvars, port_var, default_port)]


def platform_urls(hosts, hostvars, scheme, port_var, default_port, path=""):
    """['scheme://address:port/path'] of `hosts`."""
    return ["%s://%s%s" % (scheme, hp, path) for hp in platform_host_ports(hosts, hostvars, port_var, default_port)]


def platform_labels(host, hostvars, tiers):
    """Labels of a host's scrape targets: instance (the inventory name), tier
    (its first group in `tiers`, else 'other'), zone and site when set."""
    groups = _value(hostvars, host, "group_names", []) or []
    labels = {"instance": host, "tier": next((t for t in tiers if t in groups), "other")}
    for key in ("zone", "site"):
        value = _value(hostvars, host, key)
        if value not in (None, ""):
            labels[key] = str(value)
    return labels


def platform_scrape_targets(hosts, hostvars, port_var, default_port, tiers):
    """One Prometheus target group per host: {targets: [address:port], labels}."""
    return [
        {"targets": [hp], "labels": platform_labels(h, hostvars, tiers)}
        for h, hp in zip(hosts, platform_host_ports(hosts, hostvars, port_var, default_port))
    ]


def platform_engine_hosts(hosts, hostvars, engine, default_engine):
    """The load balancers among `hosts` that run `engine`."""
    return [h for h in hosts if _value(hostvars, h, "platform_loadbalancer_engine", default_engine) == engine]


def platform_transport_addresses(hosts, hostvars):
    """OpenSearch transport address of each host: opensearch_transport_host when
    its inventory sets one (the lab's loopback alias), else private_address."""
    return [_value(hostvars, h, "opensearch_transport_host") or _value(hostvars, h, "private_address") for h in hosts]


def platform_cluster_manager_nodes(hosts, hostvars):
    """The nodes among `hosts` whose opensearch_node_roles (inventory) contain
    cluster_manager, or that set none (OpenSearch's default: every role)."""
    return [h for h in hosts if "cluster_manager" in (_value(hostvars, h, "opensearch_node_roles") or ["cluster_manager"])]


def platform_existing_groups(matrix, groups):
    """The firewall matrix for this inventory: the listening groups it has,
    each rule's from_groups narrowed to the groups it has, and rules left
    with no source group dropped (e.g. no `backup` group, no snapshot share).

    {opensearch: [{port: 9200, from_groups: [app_servers, backup]}]}
      with groups {opensearch, app_servers} -> {opensearch: [{port: 9200, from_groups: [app_servers]}]}
    """
    known = set(groups)
    out = {}
    for group, rules in (matrix or {}).items():
        if group != "all" and group not in known:
            continue
        kept = []
        for rule in rules or []:
            if "from_groups" in rule:
                sources = [g for g in rule["from_groups"] if g == "all" or g in known]
                if not sources:
                    continue
                rule = dict(rule, from_groups=sources)
            kept.append(rule)
        out[group] = kept
    return out


# --- The platform's TLS profile (platform_tls_* in defaults/main.yml) -----------
# One table per kind of name, one filter per kind, for every library:
# OpenSSL (nginx, HAProxy, rsyslog's openssl driver), Java (OpenSearch's
# JSSE) and Go (Prometheus, Alertmanager: crypto/tls through the
# exporter-toolkit). missing='refuse' (the default) makes a name the library
# lacks an error; missing='drop' leaves it out, so a profile with a suite or
# group Go lacks (Mozilla's DHE suites, X448) still holds for the others and
# gives the Go endpoints the rest (preflight, tasks/validate.yml, refuses a
# profile that leaves them nothing). A name that is in no table is an error.

# Cipher suites by their IANA names (JSSE and Go use the same): the OpenSSL
# name, and whether Go lets it be chosen (Go implements no DHE suite, and
# offers its three TLS 1.3 suites itself, unconfigurable).
_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": ("ECDHE-ECDSA-AES128-GCM-SHA256", True),
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": ("ECDHE-RSA-AES128-GCM-SHA256", True),
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": ("ECDHE-ECDSA-AES256-GCM-SHA384", True),
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": ("ECDHE-RSA-AES256-GCM-SHA384", True),
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": ("ECDHE-ECDSA-CHACHA20-POLY1305", True),
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": ("ECDHE-RSA-CHACHA20-POLY1305", True),
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": ("DHE-RSA-AES128-GCM-SHA256", False),
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": ("DHE-RSA-AES256-GCM-SHA384", False),
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": ("DHE-RSA-CHACHA20-POLY1305", False),
    "TLS_AES_128_GCM_SHA256": ("TLS_AES_128_GCM_SHA256", False),
    "TLS_AES_256_GCM_SHA384": ("TLS_AES_256_GCM_SHA384", False),
    "TLS_CHACHA20_POLY1305_SHA256": ("TLS_CHACHA20_POLY1305_SHA256", False),
}
_CIPHER_LIBRARIES = ("iana", "openssl", "java", "go")
# Key-exchange groups: the profile's names (as sslyze reports them) -> each
# library's spelling; a library absent from a group's entry lacks it.
_CURVES = {
    "X25519": {"openssl": "X25519", "java": "x25519", "go": "X25519"},
    "secp256r1": {"openssl": "prime256v1", "java": "secp256r1", "go": "CurveP256"},
    "secp384r1": {"openssl": "secp384r1", "java": "secp384r1", "go": "CurveP384"},
    "secp521r1": {"openssl": "secp521r1", "java": "secp521r1", "go": "CurveP521"},
    "X448": {"openssl": "X448", "java": "x448"},
}
_CURVE_LIBRARIES = ("openssl", "java", "go")
# Protocol versions as Go's min_version names them.
_GO_VERSIONS = {"TLSv1": "TLS10", "TLSv1.0": "TLS10", "TLSv1.1": "TLS11", "TLSv1.2": "TLS12", "TLSv1.3": "TLS13"}


def _names(values, what):
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise AnsibleFilterError("%s: expected a list of names, got %r" % (what, values))
    return [str(v).strip() for v in values]


def _choice(value, allowed, what):
    if value not in allowed:
        raise AnsibleFilterError("%s must be one of %s, got %r" % (what, ", ".join(allowed), value))


def platform_tls_cipher_names(suites, library="openssl", missing="refuse"):
    """IANA cipher suite names (platform_tls_ciphers_tls12/_tls13) as `library`
    names them: openssl (ECDHE-ECDSA-AES128-GCM-SHA256; TLS 1.3 suites keep
    their names), iana or java (the IANA names, unchanged), or go (the IANA
    names of the suites Go lets be chosen). An unknown suite is an error;
    one the library lacks too, unless missing='drop'."""
    _choice(library, _CIPHER_LIBRARIES, "platform_tls_cipher_names: library")
    _choice(missing, ("refuse", "drop"), "platform_tls_cipher_names: missing")
    names = _names(suites, "platform_tls_cipher_names")
    unknown = [n for n in names if n not in _SUITES]
    if unknown:
        raise AnsibleFilterError("platform_tls_cipher_names: unknown cipher suite(s) %s (known IANA names: %s)"
                                 % (", ".join(unknown), ", ".join(_SUITES)))
    out = []
    for name in dict.fromkeys(names):
        openssl, in_go = _SUITES[name]
        if library == "go" and not in_go:
            if missing == "drop":
                continue
            raise AnsibleFilterError("platform_tls_cipher_names: %s is not a suite go lets be chosen (it has: %s)"
                                     % (name, ", ".join(n for n, (_, g) in _SUITES.items() if g)))
        out.append(openssl if library == "openssl" else name)
    return out


def platform_tls_curve_names(curves, library="openssl", missing="refuse"):
    """Key-exchange group names (platform_tls_curves: X25519, secp256r1,
    secp384r1, ...) as `library` spells them: openssl (X25519, prime256v1,
    secp384r1), java (x25519, secp256r1, secp384r1: jdk.tls.namedGroups) or
    go (X25519, CurveP256, CurveP384). An unknown name is an error; a group the library
    does not have too, unless missing='drop'."""
    _choice(library, _CURVE_LIBRARIES, "platform_tls_curve_names: library")
    _choice(missing, ("refuse", "drop"), "platform_tls_curve_names: missing")
    out = []
    for name in _names(curves, "platform_tls_curve_names"):
        if name not in _CURVES:
            raise AnsibleFilterError("platform_tls_curve_names: unknown group %r (known: %s)"
                                     % (name, ", ".join(_CURVES)))
        spelling = _CURVES[name].get(library)
        if spelling is None:
            if missing == "drop":
                continue
            raise AnsibleFilterError("platform_tls_curve_names: %r is not a group %s supports here (known: %s)"
                                     % (name, library, ", ".join(c for c in _CURVES if library in _CURVES[c])))
        if spelling not in out:
            out.append(spelling)
    return out


def platform_go_tls_min_version(protocols):
    """The lowest protocol of the profile (platform_tls_protocols) as Go's
    min_version: TLS10 ... TLS13."""
    names = _names(protocols, "platform_go_tls_min_version")
    unknown = [n for n in names if n not in _GO_VERSIONS]
    if unknown or not names:
        raise AnsibleFilterError("platform_tls_protocols must name TLS versions among %s (got %s; unknown: %s)"
                                 % (", ".join(sorted(_GO_VERSIONS)), names, unknown))
    return min((_GO_VERSIONS[n] for n in names), key=lambda v: int(v[3:]))


class FilterModule:
    def filters(self):
        return {
            "platform_hostvar": platform_hostvar,
            "platform_endpoints": platform_endpoints,
            "platform_urls": platform_urls,
            "platform_host_ports": platform_host_ports,
            "platform_labels": platform_labels,
            "platform_scrape_targets": platform_scrape_targets,
            "platform_engine_hosts": platform_engine_hosts,
            "platform_transport_addresses": platform_transport_addresses,
            "platform_cluster_manager_nodes": platform_cluster_manager_nodes,
            "platform_existing_groups": platform_existing_groups,
            "platform_tls_cipher_names": platform_tls_cipher_names,
            "platform_tls_curve_names": platform_tls_curve_names,
            "platform_go_tls_min_version": platform_go_tls_min_version,
            "platform_seconds": platform_seconds,
        }

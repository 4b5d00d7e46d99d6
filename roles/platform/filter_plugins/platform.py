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
# Suites are named as IANA registers them (TLS_ECDHE_..._WITH_...); JSSE and
# Go's crypto/tls use the same names. OpenSSL has its own (nginx, HAProxy,
# rsyslog's openssl driver); TLS 1.3 suites keep their IANA names there too.
_OPENSSL_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "DHE-RSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384": "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256": "TLS_CHACHA20_POLY1305_SHA256",
}
_CIPHER_LIBRARIES = ("iana", "openssl", "java", "go")
# Key-exchange groups: the profile's names (as sslyze reports them) -> each
# library's spelling. Go's crypto/tls has no X448.
_CURVES = {
    "X25519": {"openssl": "X25519", "java": "x25519", "go": "X25519"},
    "secp256r1": {"openssl": "prime256v1", "java": "secp256r1", "go": "CurveP256"},
    "secp384r1": {"openssl": "secp384r1", "java": "secp384r1", "go": "CurveP384"},
    "secp521r1": {"openssl": "secp521r1", "java": "secp521r1", "go": "CurveP521"},
    "X448": {"openssl": "X448", "java": "x448"},
}


def _names(values, what):
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise AnsibleFilterError("%s: expected a list of names, got %r" % (what, values))
    return [str(v) for v in values]


def platform_tls_cipher_names(suites, library="openssl"):
    """IANA cipher suite names (platform_tls_ciphers_tls12/_tls13) as `library`
    names them: openssl (ECDHE-ECDSA-AES128-GCM-SHA256; TLS 1.3 suites keep
    their names), or iana/java/go (the IANA names, unchanged). An unknown
    suite is an error, never dropped."""
    if library not in _CIPHER_LIBRARIES:
        raise AnsibleFilterError("platform_tls_cipher_names: library must be one of %s, got %r"
                                 % (", ".join(_CIPHER_LIBRARIES), library))
    names = _names(suites, "platform_tls_cipher_names")
    unknown = [n for n in names if n not in _OPENSSL_CIPHERS]
    if unknown:
        raise AnsibleFilterError("platform_tls_cipher_names: unknown cipher suite(s) %s (known IANA names: %s)"
                                 % (", ".join(unknown), ", ".join(_OPENSSL_CIPHERS)))
    return [_OPENSSL_CIPHERS[n] for n in names] if library == "openssl" else names


def platform_tls_curve_names(curves, library="openssl"):
    """Key-exchange group names (platform_tls_curves: X25519, secp256r1,
    secp384r1, ...) as `library` spells them: openssl (X25519, prime256v1,
    secp384r1), java (x25519, secp256r1, secp384r1: jdk.tls.namedGroups) or
    go (X25519, CurveP256, CurveP384). Unknown names, or a group the library
    does not have, are errors."""
    if library not in ("openssl", "java", "go"):
        raise AnsibleFilterError("platform_tls_curve_names: library must be openssl, java or go, got %r" % (library,))
    out = []
    for name in _names(curves, "platform_tls_curve_names"):
        spelling = _CURVES.get(name, {}).get(library)
        if spelling is None:
            raise AnsibleFilterError("platform_tls_curve_names: %r is not a group %s supports here (known: %s)"
                                     % (name, library, ", ".join(c for c in _CURVES if library in _CURVES[c])))
        out.append(spelling)
    return out


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
        }

# -*- coding: utf-8 -*-
"""Filters for the firewall role.

They turn the role's declarative inputs into a flat list of UFW rules, read
the rules UFW already has (from /etc/ufw/user.rules and user6.rules), work
out which managed rules are stale, and report bad input for validate.yml.
Only the Python standard library is used (no netaddr on the controller).
"""

from __future__ import annotations

import ipaddress
import re

DOCUMENTATION = ""

_PORT_RE = re.compile(r"^([0-9]+)(?::([0-9]+))?$")
_PROTOS = ("tcp", "udp")
# IP protocols without ports that UFW can filter by source (VRRP for the
# load balancers' shared address). Their rules have no port; UFW records
# them with port "any".
_PORTLESS_PROTOS = ("vrrp",)
_SOURCE_KEYS = ("from_groups", "from_cidrs", "from_any")
_RULE_KEYS = set(_SOURCE_KEYS) | {"port", "proto", "comment", "address_var"}
# UFW passes comments through a shell-like parser and the ufw module quotes
# them with single quotes: keep them to a safe character set.
_COMMENT_RE = re.compile(r"^[A-Za-z0-9 _.,:/()@+=-]*$")


def _norm_port(port):
    """'9200', 9200, '9200:9300' -> canonical string, or None if invalid."""
    if isinstance(port, bool):
        return None
    text = str(port).strip()
    match = _PORT_RE.match(text)
    if not match:
        return None
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) is not None else None
    if not 1 <= low <= 65535:
        return None
    if high is None:
        return str(low)
    if not 1 <= high <= 65535 or high <= low:
        return None
    return "%d:%d" % (low, high)


def _norm_source(source):
    """'any', an address or a CIDR -> canonical string ('any' or a network)."""
    text = str(source).strip()
    if text.lower() in ("any", "0.0.0.0/0", "::/0"):
        return "any"
    net = ipaddress.ip_network(text, strict=False)
    if net.num_addresses == 1:
        return str(net.network_address)
    return str(net)


def _valid_source(source):
    try:
        _norm_source(source)
    except ValueError:
        return False
    return True


def firewall_rule_problems(rules, varname, known_groups, ssh_port=None):
    """Return a list of human readable problems found in a list of rules.

    `varname` names the input in the messages (e.g.
    "firewall_group_rules['opensearch']"), `known_groups` is the inventory's
    group names, `ssh_port` the port the SSH rules own.
    """
    problems = []
    if rules is None:
        return problems
    if not isinstance(rules, list):
        return ["%s must be a list of rules, got %s" % (varname, type(rules).__name__)]
    known = set(known_groups or [])
    for index, rule in enumerate(rules):
        where = "%s[%d]" % (varname, index)
        if not isinstance(rule, dict):
            problems.append("%s must be a mapping like {port: 9200, proto: tcp, from_groups: [app_servers]}" % where)
            continue
        unknown_keys = sorted(set(rule) - _RULE_KEYS)
        if unknown_keys:
            problems.append("%s has unknown keys %s; allowed: %s" % (where, unknown_keys, sorted(_RULE_KEYS)))
        proto = rule.get("proto", "tcp")
        if proto in _PORTLESS_PROTOS:
            if "port" in rule:
                problems.append("%s: proto %s has no ports; remove port" % (where, proto))
        elif "port" not in rule:
            problems.append("%s has no port; set port: <1-65535> or port: \"start:end\"" % where)
        elif _norm_port(rule["port"]) is None:
            problems.append("%s port %r is invalid; use an integer 1-65535 or a range \"start:end\" with start < end" % (where, rule["port"]))
        elif ssh_port is not None and _norm_port(rule["port"]) == _norm_port(ssh_port):
            problems.append("%s opens the SSH port %s; SSH is managed by firewall_ssh_sources/firewall_ssh_limit, set those instead" % (where, ssh_port))
        if proto not in _PROTOS + _PORTLESS_PROTOS:
            problems.append("%s proto %r is unknown; use one of %s" % (where, proto, list(_PROTOS + _PORTLESS_PROTOS)))
        sources = [key for key in _SOURCE_KEYS if key in rule]
        if len(sources) != 1:
            problems.append("%s must have exactly one of from_groups, from_cidrs, from_any (has %s)" % (where, sources or "none"))
        if "from_any" in rule and rule["from_any"] is not True:
            problems.append("%s from_any must be true (omit it and use from_groups/from_cidrs otherwise)" % where)
        if "from_groups" in rule:
            groups = rule["from_groups"]
            if not isinstance(groups, list) or not groups:
                problems.append("%s from_groups must be a non-empty list of inventory groups" % where)
            else:
                for group in groups:
                    if group not in known:
                        problems.append("%s from_groups names unknown group %r; add it to the inventory or fix the name (known: %s)" % (where, group, sorted(known)))
        if "address_var" in rule and ("from_groups" not in rule
                                      or not isinstance(rule["address_var"], str)
                                      or not rule["address_var"]):
            problems.append("%s address_var must be a host variable name and goes with from_groups only" % where)
        if "from_cidrs" in rule:
            cidrs = rule["from_cidrs"]
            if not isinstance(cidrs, list) or not cidrs:
                problems.append("%s from_cidrs must be a non-empty list of CIDRs" % where)
            else:
                for cidr in cidrs:
                    if str(cidr).strip().lower() == "any" or not _valid_source(cidr):
                        problems.append("%s from_cidrs entry %r is not a valid IPv4/IPv6 address or CIDR (use from_any: true for everybody)" % (where, cidr))
        comment = rule.get("comment", "")
        if not isinstance(comment, str) or not _COMMENT_RE.match(comment):
            problems.append("%s comment %r may only contain letters, digits, spaces and _.,:/()@+=-" % (where, comment))
    return problems


def firewall_source_problems(sources, varname):
    """Problems in a list of 'any'/address/CIDR strings."""
    if not isinstance(sources, list) or not sources:
        return ["%s must be a non-empty list of \"any\" or addresses/CIDRs" % varname]
    return [
        "%s entry %r is not \"any\" or a valid IPv4/IPv6 address or CIDR" % (varname, source)
        for source in sources
        if not _valid_source(source)
    ]


def firewall_address_map(hostvars, hosts, address_var, fallback_var=None):
    """host -> address, from `address_var`, else `fallback_var`, else ansible_host."""
    result = {}
    for host in hosts:
        hvars = hostvars[host]
        address = (hvars.get(address_var)
                   or (hvars.get(fallback_var) if fallback_var else None)
                   or hvars.get("ansible_host"))
        result[host] = str(address) if address else None
    return result


def firewall_desired_rules(group_rules, extra_rules, group_names, groups,
                           hostvars, address_var, prefix):
    """Flatten the declared rules into UFW rules for this host.

    Peers' addresses are read only for the groups this host's rules name, so
    an unrelated host whose address cannot be resolved does not matter.

    Returns a list of {rule, port, proto, from_ip, comment} with from_ip
    'any' or a canonical address/network, deduplicated on
    (rule, proto, port, from_ip): the first declaration wins.
    """
    declared = []
    for group in ["all"] + [g for g in (group_names or []) if g != "all"]:
        for index, rule in enumerate((group_rules or {}).get(group) or []):
            declared.append(("%s[%d]" % (group, index), rule))
    for index, rule in enumerate(extra_rules or []):
        declared.append(("extra[%d]" % index, rule))

    addresses = {}

    def address_of(host, var):
        # A rule's own address_var (e.g. the address a service binds to when
        # it is not the private one) falls back to the role-wide variable.
        if (host, var) not in addresses:
            found = firewall_address_map(hostvars, [host], var, address_var)
            addresses[(host, var)] = found[host]
        return addresses[(host, var)]

    out = []
    seen = set()
    for origin, rule in declared:
        proto = rule.get("proto", "tcp")
        port = "any" if proto in _PORTLESS_PROTOS else _norm_port(rule["port"])
        text = rule.get("comment") or "%s %s/%s" % (origin, port, proto)
        comment = "%s %s" % (prefix, text)
        if rule.get("from_any"):
            sources = ["any"]
        elif "from_cidrs" in rule:
            sources = [_norm_source(c) for c in rule["from_cidrs"]]
        else:
            sources = []
            for group in rule["from_groups"]:
                for host in groups.get(group, []):
                    address = address_of(host, rule.get("address_var") or address_var)
                    if address:
                        sources.append(_norm_source(address))
        for source in sources:
            key = ("allow", proto, port, source)
            if key in seen:
                continue
            seen.add(key)
            out.append({"rule": "allow", "port": port, "proto": proto,
                        "from_ip": source, "comment": comment})
    return out


def firewall_ssh_rules(sources, port, limit, controller, prefix):
    """SSH rules: one per source (limit or allow), plus the controller."""
    out = []
    seen = set()
    if controller:
        src = _norm_source(controller)
        out.append({"rule": "allow", "port": str(port), "proto": "tcp",
                    "from_ip": src, "comment": "%s ssh from ansible controller" % prefix})
        seen.add(("allow", src))
    action = "limit" if limit else "allow"
    for source in sources or []:
        src = _norm_source(source)
        if (action, src) in seen:
            continue
        seen.add((action, src))
        out.append({"rule": action, "port": str(port), "proto": "tcp",
                    "from_ip": src, "comment": "%s ssh" % prefix})
    return out


def _decode_comment(token):
    if not token.startswith("comment="):
        return ""
    try:
        return bytes.fromhex(token[len("comment="):]).decode("utf-8")
    except ValueError:
        return ""


def firewall_parse_ufw_rules(texts):
    """Parse the '### tuple ###' lines of user.rules/user6.rules.

    Returns one entry per rule (IPv4 and IPv6 copies of an 'any' rule are
    merged): {rule, proto, port, to_ip, from_ip, comment, simple}. `simple`
    is true for plain inbound port rules (no interface, app or source port),
    the only shape this role creates.
    """
    out = []
    seen = set()
    for text in texts or []:
        for line in (text or "").splitlines():
            if not line.startswith("### tuple ###"):
                continue
            fields = line[len("### tuple ###"):].split()
            comment = ""
            if fields and fields[-1].startswith("comment="):
                comment = _decode_comment(fields.pop())
            if len(fields) < 7:
                continue
            action, proto, dport, dst, sport, src = fields[:6]
            direction = fields[-1]
            simple = len(fields) == 7 and direction == "in" and sport == "any"
            try:
                from_ip = _norm_source(src)
                to_ip = _norm_source(dst)
            except ValueError:
                continue
            entry = {"rule": action, "proto": proto, "port": dport,
                     "to_ip": to_ip, "from_ip": from_ip, "comment": comment,
                     "simple": simple}
            key = tuple(sorted((k, str(v)) for k, v in entry.items()))
            if key in seen:
                continue
            seen.add(key)
            out.append(entry)
    return out


def firewall_stale_rules(current, desired, prefix):
    """Managed rules UFW has that are no longer declared."""
    wanted = {(r["rule"], r["proto"], r["port"], r["from_ip"]) for r in desired}
    stale = []
    for rule in current or []:
        if not rule["comment"].startswith(prefix):
            continue
        if not rule["simple"] or rule["to_ip"] != "any":
            continue
        if (rule["rule"], rule["proto"], rule["port"], rule["from_ip"]) in wanted:
            continue
        stale.append(rule)
    return stale


def firewall_missing_rules(desired, current):
    """Declared rules UFW does not hold yet.

    A rule is held when UFW's record has a plain inbound rule with the same
    action, port, protocol, source and comment. Only the missing ones are
    passed to the ufw module, so a converged host costs no ufw call at all.
    """
    held = {(r["rule"], r["proto"], r["port"], r["from_ip"], r["comment"])
            for r in current or [] if r["simple"] and r["to_ip"] == "any"}
    return [r for r in desired or []
            if (r["rule"], r["proto"], r["port"], r["from_ip"], r["comment"]) not in held]


_POLICY_VALUE = {"allow": "ACCEPT", "deny": "DROP", "reject": "REJECT"}
_POLICY_KEY = {"incoming": "DEFAULT_INPUT_POLICY", "outgoing": "DEFAULT_OUTPUT_POLICY",
               "routed": "DEFAULT_FORWARD_POLICY"}


def _shell_assignments(text):
    """KEY=value / KEY="value" lines of a shell-style file (/etc/default/ufw)."""
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def firewall_policy_changes(policies, default_text, ufw_conf_text, logging):
    """Default policies and logging level that differ from UFW's files.

    policies: [{direction, policy}]; default_text: /etc/default/ufw;
    ufw_conf_text: /etc/ufw/ufw.conf. Returns the policy items to set, plus
    {"logging": level} when the level differs. Unreadable files mean
    everything is set.
    """
    have = _shell_assignments(default_text)
    out = [p for p in policies or []
           if have.get(_POLICY_KEY[p["direction"]]) != _POLICY_VALUE[p["policy"]]]
    level = {"on": "low"}.get(str(logging), str(logging))
    if _shell_assignments(ufw_conf_text).get("LOGLEVEL") != level:
        out.append({"logging": str(logging)})
    return out


class FilterModule(object):
    def filters(self):
        return {
            "firewall_rule_problems": firewall_rule_problems,
            "firewall_source_problems": firewall_source_problems,
            "firewall_address_map": firewall_address_map,
            "firewall_desired_rules": firewall_desired_rules,
            "firewall_ssh_rules": firewall_ssh_rules,
            "firewall_parse_ufw_rules": firewall_parse_ufw_rules,
            "firewall_stale_rules": firewall_stale_rules,
            "firewall_missing_rules": firewall_missing_rules,
            "firewall_policy_changes": firewall_policy_changes,
        }

"""Prometheus's HTTP API, read on a monitoring host itself.

The platform serves Prometheus over HTTPS (a certificate from the platform
CA) with basic auth (the wiring in roles/platform/defaults/main.yml:
prometheus_web_users from platform_prometheus_user/_password, the same
credentials for the self-scrape job). The reader runs with
sudo on the monitoring host: it verifies the certificate against
/etc/ssl/searchplat/ca.crt and takes the password from the file the
self-scrape job uses (/etc/prometheus/secrets/prometheus.password, root and
the prometheus group only), so no password crosses a command line or the
test's output. The port matrix opens 9090 only to the monitoring and
load-balancer groups, not to the controller.

Alertmanager the same way (alertmanager_*): HTTPS with its own certificate
from the platform CA and basic auth as platform_alertmanager_user, whose
password the reader takes from the file Prometheus sends its alerts with
(/etc/prometheus/secrets/alerting.alertmanagers.password).
"""

from __future__ import annotations

import json

CA_FILE = "/etc/ssl/searchplat/ca.crt"
PASSWORD_FILE = "/etc/prometheus/secrets/prometheus.password"
ALERTMANAGER_PASSWORD_FILE = "/etc/prometheus/secrets/alerting.alertmanagers.password"

# argv: base URL, user, password file ('' for none), JSON list of paths.
# Prints a JSON list with one entry per path: {"status": HTTP status, "body": text}.
READER = r"""
import base64, json, ssl, sys, urllib.error, urllib.request
base, user, pwfile, paths = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
headers = {}
if pwfile:
    password = open(pwfile).read().rstrip("\n")
    headers["Authorization"] = "Basic " + base64.b64encode((user + ":" + password).encode()).decode()
context = ssl.create_default_context(cafile=sys.argv[5]) if base.startswith("https:") else None
out = []
for path in paths:
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=20,
                                    context=context) as r:
            out.append({"status": r.status, "body": r.read().decode()})
    except urllib.error.HTTPError as e:
        out.append({"status": e.code, "body": e.read().decode()})
    except Exception as e:
        out.append({"status": 0, "body": repr(e)})
print(json.dumps(out))
"""


def _name(host) -> str:
    return host.backend.get_hostname()


def base_url(host, inventory) -> str:
    name = _name(host)
    address = inventory.resolved(name, "prometheus_private_address")
    return f"https://{address}:{inventory.resolved(name, 'prometheus_web_port')}"


def user(host, inventory) -> str:
    return str(inventory.resolved(_name(host), "platform_prometheus_user"))


def _read_many(host, base, login, password_file, paths, plain_http):
    """[{status, body}] for each path below base, read on host with sudo."""
    if plain_http:
        base = "http:" + base.removeprefix("https:")
    with host.sudo():
        out = host.check_output("python3 -c %s %s %s %s %s %s", READER, base, login, password_file,
                                json.dumps(list(paths)), CA_FILE)
    return json.loads(out)


def _body(reply, path):
    assert reply["status"] == 200, f"GET {path}: {reply['status']} {reply['body'][:300]}"
    return json.loads(reply["body"])


def get_many(host, inventory, paths, authenticated=True, plain_http=False):
    """[{status, body}] for each path, as the platform's Prometheus user
    (or without credentials; plain_http: http:// to the same port)."""
    return _read_many(host, base_url(host, inventory), user(host, inventory),
                      PASSWORD_FILE if authenticated else "", paths, plain_http)


def get_json(host, inventory, path):
    """The JSON body of one authenticated GET; fails on any status but 200."""
    return _body(get_many(host, inventory, [path])[0], path)


def alertmanager_base_url(host, inventory) -> str:
    name = _name(host)
    address = inventory.resolved(name, "prometheus_private_address")
    return f"https://{address}:{inventory.resolved(name, 'alertmanager_web_port')}"


def alertmanager_get_many(host, inventory, paths, authenticated=True, plain_http=False):
    """[{status, body}] for each path of the Alertmanager on this monitoring
    host, as the platform's Alertmanager user (or without credentials;
    plain_http: http:// to the same port)."""
    return _read_many(host, alertmanager_base_url(host, inventory),
                      str(inventory.resolved(_name(host), "platform_alertmanager_user")),
                      ALERTMANAGER_PASSWORD_FILE if authenticated else "", paths, plain_http)


def alertmanager_get_json(host, inventory, path):
    """The JSON body of one authenticated GET to Alertmanager; fails on any status but 200."""
    return _body(alertmanager_get_many(host, inventory, [path])[0], path)

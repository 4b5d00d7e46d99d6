"""Disruptive tests of one tier take turns across pytest-xdist workers.

A test that stops a node or an engine must never overlap another test that
needs the same tier whole (a load test, a rolling restart). A lock file on
the controller serialises them; pytest-xdist's ``--dist loadgroup`` cannot,
since with pytest 9 it no longer groups anything (docs/testing.md).

The lock is re-entrant within a worker: a session fixture that takes it
(e.g. to wait out a rolling deploy) may be set up inside a test that
already holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time

_held: dict[str, int] = {}


@contextlib.contextmanager
def disruption_lock(tier: str):
    if _held.get(tier):
        _held[tier] += 1
        try:
            yield
        finally:
            _held[tier] -= 1
        return
    path = os.path.join(tempfile.gettempdir(), f"searchplat-{tier}-disruption.lock")
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held[tier] = 1
        try:
            yield
        finally:
            _held[tier] = 0
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def lab_turn(exclusive: bool):
    """Every disruptive test holds the lab's lock shared (they run side by
    side, each tier under its own lock above); a test that takes every host
    at once (a power loss) holds it exclusively: it starts when the running
    ones have finished, and the others wait until it has."""
    path = os.path.join(tempfile.gettempdir(), "searchplat-lab-disruption.lock")
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def active_alerts(inventory, peer, name, **labels):
    """Alertmanager's active alerts called `name` whose labels include `labels`.

    Read on the first monitoring host (Alertmanager's port is open to the
    monitoring group, not to the controller), over HTTPS verified against
    the platform CA, as the platform's Alertmanager user
    (prometheus_api.alertmanager_get_json: the password from the file
    Prometheus sends its alerts with, never on a command line)."""
    # Imported here: conftest.py imports this module for lab_turn, also
    # where only the two are present (tests/controller/test_harness.py).
    import prometheus_api

    monitor = inventory.hosts_in("monitoring")[0]
    alerts = prometheus_api.alertmanager_get_json(peer(monitor), inventory, "/api/v2/alerts?active=true")
    return [a for a in alerts if a["labels"].get("alertname") == name
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def alert_report(inventory, peer, name) -> str:
    """For a failure message: where alert `name` stands in Prometheus
    (pending or firing, with its labels) and in Alertmanager (active,
    suppressed and by what: an inhibition such as the host's InstanceDown,
    or a silence)."""
    import prometheus_api

    monitor = peer(inventory.hosts_in("monitoring")[0])
    rules = prometheus_api.get_json(monitor, inventory, "/api/v1/alerts")["data"]["alerts"]
    held = prometheus_api.alertmanager_get_json(
        monitor, inventory, "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true")
    return json.dumps({
        "prometheus": [{"state": a["state"], "labels": a["labels"], "activeAt": a.get("activeAt")}
                       for a in rules if a["labels"].get("alertname") == name],
        "alertmanager": [{"status": a["status"], "labels": a["labels"]}
                         for a in held if a["labels"].get("alertname") == name],
        "instance_down": [a["labels"] for a in held if a["labels"].get("alertname") == "InstanceDown"],
    }, indent=1)


def wait_until(predicate, seconds, step=5):
    """True as soon as predicate() holds, False after `seconds` without."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False

"""An inventory's values for the benchmark scripts (scripts/lib/bench_*.py),
as ansible-inventory resolves them for one host."""

from __future__ import annotations

import json
import subprocess


def hostvars(inventory, host):
    out = subprocess.run(["ansible-inventory", "-i", inventory, "--host", host],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def secret(inventory, host, key):
    """The host's value of `key`; a value that only names another variable
    ("{{ vault_x }}") is followed once."""
    values = hostvars(inventory, host)
    value = str(values.get(key, ""))
    if value.startswith("{{"):
        value = str(values[value.strip("{} ")])
    return value

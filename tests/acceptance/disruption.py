"""Disruptive tests of one tier take turns across pytest-xdist workers.

A test that stops a node or an engine must never overlap another test that
needs the same tier whole (a load test, a rolling restart). A lock file on
the controller serialises them; pytest-xdist's ``--dist loadgroup`` cannot,
since with pytest 9 it no longer groups anything (docs/testing.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile


@contextlib.contextmanager
def disruption_lock(tier: str):
    path = os.path.join(tempfile.gettempdir(), f"searchplat-{tier}-disruption.lock")
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

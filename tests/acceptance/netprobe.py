"""TCP reachability as seen from a given host (shared by the acceptance modules)."""

from __future__ import annotations

import shlex

PROBE_TIMEOUT = 3


def _classify(rc: int, stderr: str) -> str:
    if rc == 0:
        return "open"
    if rc == 124:
        return "filtered"
    if "refused" in stderr:
        return "refused"
    return f"error rc={rc}: {stderr.strip()}"


def tcp_probe(src, address: str, port: int, timeout: int = PROBE_TIMEOUT) -> str:
    """Connect from Testinfra host `src`: 'open', 'refused' or 'filtered' (timed out)."""
    cmd = src.run(f"timeout {timeout} bash -c '</dev/tcp/{address}/{port}'")
    return _classify(cmd.rc, cmd.stderr)


def tcp_probe_many(src, targets, timeout: int = PROBE_TIMEOUT) -> dict:
    """Probe every (address, port) in `targets` from `src` at once.

    One command on `src` starts all connects in parallel, so a batch costs
    one round trip and at most one timeout. Returns {(address, port): state}.
    """
    targets = sorted(set((str(a), int(p)) for a, p in targets))
    if not targets:
        return {}
    probe = (f'probe() {{ err=$(timeout {timeout} bash -c "</dev/tcp/$1/$2" 2>&1); '
             f'rc=$?; echo "$1 $2 $rc ${{err//$\'\\n\'/ }}"; }}')
    calls = " ".join(f"probe {shlex.quote(a)} {p} &" for a, p in targets)
    cmd = src.run(f"bash -c {shlex.quote(probe + '; ' + calls + ' wait')}")
    results = {}
    for line in cmd.stdout.splitlines():
        address, port, rc, *err = line.split(" ", 3)
        results[(address, int(port))] = _classify(int(rc), " ".join(err))
    for target in targets:
        results.setdefault(target, f"error: no result (rc={cmd.rc}: {cmd.stderr.strip()})")
    return results

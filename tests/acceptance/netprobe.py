"""TCP reachability as seen from a given host (shared by the acceptance modules)."""

PROBE_TIMEOUT = 3


def tcp_probe(src, address: str, port: int, timeout: int = PROBE_TIMEOUT) -> str:
    """Connect from Testinfra host `src`: 'open', 'refused' or 'filtered' (timed out)."""
    cmd = src.run(f"timeout {timeout} bash -c '</dev/tcp/{address}/{port}'")
    if cmd.rc == 0:
        return "open"
    if cmd.rc == 124:
        return "filtered"
    if "refused" in cmd.stderr:
        return "refused"
    return f"error rc={cmd.rc}: {cmd.stderr.strip()}"

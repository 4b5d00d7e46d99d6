"""sslyze against a platform TLS endpoint: one way to run it and read it.

Used by test_tls_profile.py for every endpoint under the platform's TLS
profile (the load balancers' 443, OpenSearch's 9200, the relays' RELP) and
by test_monitoring_tls.py (Prometheus, Alertmanager).
``sslyze_scan(name, port, address, ca_file)`` runs ``python -m sslyze
--mozilla_config=intermediate`` from the controller (the CA file for the
certificate checks, ``name`` for SNI and the certificate's name,
``address`` to connect to) and returns a ``Scan``: the verdict, the issues
sslyze lists and, from its JSON output, the suites accepted per version and
the groups. A missing sslyze is a failure, never a skip (requirements.txt
has it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

SSLYZE_TIMEOUT = 900

_VERSIONS = {"SSLv2": "ssl_2_0_cipher_suites", "SSLv3": "ssl_3_0_cipher_suites",
             "TLSv1.0": "tls_1_0_cipher_suites", "TLSv1.1": "tls_1_1_cipher_suites",
             "TLSv1.2": "tls_1_2_cipher_suites", "TLSv1.3": "tls_1_3_cipher_suites"}


class Scan:
    """One sslyze run: its output, verdict and what the endpoint accepted."""

    def __init__(self, target: str, proc: subprocess.CompletedProcess, result: dict | None):
        self.target = target
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self._result = result or {}
        compliance = self.stdout.split("COMPLIANCE AGAINST", 1)
        tail = compliance[1] if len(compliance) == 2 else ""
        verdict = re.search(r"^\s+\S+: (OK - Compliant\.|FAILED - Not compliant\.|ERROR - .*)$", tail, re.M)
        self.verdict = verdict.group(1) if verdict else None
        self.compliant = self.verdict == "OK - Compliant." and self.returncode == 0
        # {criterion: description} of each issue sslyze lists
        self.issues = dict(re.findall(r"^\s+\* (\w+): (.*)$", tail, re.M))

    def report(self) -> str:
        """The part of the output worth reading in a failure message."""
        text = self.stdout
        start = text.find("* SSL 2.0 Cipher Suites")
        return (f"sslyze {self.target} (rc={self.returncode}):\n" + (text[start:] if start >= 0 else text)[-6000:]
                + (("\nstderr: " + self.stderr[-2000:]) if self.stderr.strip() else ""))

    def _scan(self, key: str) -> dict:
        results = self._result.get("server_scan_results") or [{}]
        attempt = ((results[0].get("scan_result") or {}).get(key)) or {}
        return attempt.get("result") or {}

    def accepted(self, version: str) -> set[str]:
        """IANA names of the suites accepted with `version` (TLSv1.2, TLSv1.3, ...)."""
        return {s["cipher_suite"]["name"] for s in self._scan(_VERSIONS[version]).get("accepted_cipher_suites", [])}

    @property
    def curves(self) -> set[str]:
        """Groups the endpoint accepts for key exchange, as sslyze names them.
        A group is accepted when its handshake completed; sslyze counts a
        handshake that timed out as refused, so a group missing here on a
        loaded machine may still be accepted (see accepted_curves)."""
        return {c["name"] for c in self._scan("elliptic_curves").get("supported_curves") or []}


def sslyze_scan(name: str, port: int, address: str, ca_file: str, timeout: int = SSLYZE_TIMEOUT,
                client_cert: str = "", client_key: str = "",
                commands: tuple[str, ...] = ("--mozilla_config=intermediate",)) -> Scan:
    """sslyze against name:port at address: by default
    --mozilla_config=intermediate (every scan and the verdict), or the scan
    `commands` given (e.g. ("--elliptic_curves", "--slow_connection"));
    with client_cert and client_key (PEM files) for an endpoint that
    requires a client certificate (mutual TLS)."""
    target = f"{name}:{port}{{{address}}}"
    with tempfile.TemporaryDirectory(prefix="searchplat-sslyze-") as tmp:
        out = os.path.join(tmp, "scan.json")
        argv = [sys.executable, "-m", "sslyze", *commands, f"--certinfo_ca_file={ca_file}",
                f"--json_out={out}", target]
        if client_cert:
            argv[-1:-1] = [f"--cert={client_cert}", f"--key={client_key}", "--keyform=PEM"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if "No module named sslyze" in proc.stderr:
            raise AssertionError(f"sslyze is not installed for {sys.executable}: "
                                 "pip install -r requirements.txt (scripts/lib/bootstrap.sh does)")
        result = None
        if os.path.exists(out):
            with open(out) as f:
                result = json.load(f)
    return Scan(target, proc, result)


def accepted_curves(scan: Scan, expected: set[str], rescan, attempts: int = 2) -> set[str]:
    """The groups `scan` saw accepted, plus those of `expected` it missed
    that a rescan (`rescan()`, a Scan of --elliptic_curves alone, one
    connection at a time) completes a handshake with, asked up to
    `attempts` times. An accepted group is always a completed handshake, so
    the union never adds a group the endpoint refuses: a group outside the
    profile still fails the test on the first scan."""
    groups = set(scan.curves)
    for _ in range(attempts):
        if expected <= groups:
            break
        groups |= rescan().curves
    return groups

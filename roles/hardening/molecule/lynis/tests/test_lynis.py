"""Lynis hardening index of the lynis scenario (bare image vs. after
baseline + hardening). Prints both and the remaining suggestions."""

import os
import re

import pytest

# Index the scenario must reach (see README: why a container scores lower
# than a lab host with every role).
LYNIS_MIN_INDEX = int(os.environ.get("HARDENING_LYNIS_MIN_INDEX", "80"))


def test_lynis_index(host):
    if not host.exists("lynis"):
        pytest.skip("lynis is not installed (prepare.yml installs it)")
    out = host.check_output("lynis audit system --quick --no-colors 2>/dev/null")
    m = re.search(r"Hardening index : (\d+)", out)
    assert m, out[-2000:]
    index = int(m.group(1))
    bare = host.file("/root/lynis-index-bare")
    bare_index = bare.content_string.strip() if bare.exists else "?"
    suggestions = host.check_output("grep '^suggestion' /var/log/lynis-report.dat || true")
    print(f"LYNIS hardening index: bare image {bare_index}, after baseline+hardening {index}")
    print(suggestions)
    assert index >= LYNIS_MIN_INDEX

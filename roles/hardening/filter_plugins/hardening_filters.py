"""Filters of role hardening: edit distribution config files in one pass.

hardening_set_keys  sets KEY<sep>VALUE lines in a key/value file's content
                    (login.defs, auditd.conf), keeping the distribution's
                    comments and every other line, so one read (slurp) and
                    one write (copy) replace a lineinfile task per key.
hardening_perm_drift  the permission entries whose path exists and whose
                    mode, owner or group differ from `stat` output.
"""

from __future__ import annotations

import re


def hardening_set_keys(content, settings, separator=" = "):
    """Return `content` with every key of `settings` set.

    Per key: the last active line (KEY<space or =>...) is replaced and other
    active lines of that key are dropped; with no active line, the last
    commented one (#KEY ...) is replaced; with neither, the line is appended.
    """
    lines = content.splitlines()
    for key, value in settings.items():
        wanted = f"{key}{separator}{value}"
        active = re.compile(r"^\s*" + re.escape(str(key)) + r"(\s|=|$)")
        commented = re.compile(r"^#\s*" + re.escape(str(key)) + r"(\s|=|$)")
        hits = [i for i, line in enumerate(lines) if active.match(line)]
        if hits:
            keep = hits[-1]
            lines[keep] = wanted
            lines = [line for i, line in enumerate(lines) if i == keep or i not in hits[:-1]]
            continue
        hits = [i for i, line in enumerate(lines) if commented.match(line)]
        if hits:
            lines[hits[-1]] = wanted
        else:
            lines.append(wanted)
    return "\n".join(lines) + "\n"


def hardening_perm_drift(entries, stat_lines):
    """Entries ({path, mode, owner, group}) that exist and differ.

    `stat_lines` are lines of `stat --printf='%a %U %G %n\\n'`.
    """
    current = {}
    for line in stat_lines:
        parts = line.split(" ", 3)
        if len(parts) == 4:
            current[parts[3]] = parts[:3]
    drift = []
    for entry in entries:
        if entry["path"] not in current:
            continue
        mode, owner, group = current[entry["path"]]
        if (int(str(entry["mode"]), 8) != int(mode, 8)
                or entry.get("owner", owner) != owner
                or entry.get("group", group) != group):
            drift.append(entry)
    return drift


class FilterModule:
    def filters(self):
        return {
            "hardening_set_keys": hardening_set_keys,
            "hardening_perm_drift": hardening_perm_drift,
        }

#!/usr/bin/env python3
"""Check Prometheus rule files on the controller (roles/prometheus preflight).

Usage: check-rule-files.py [--promtool PATH] FILE...

Each file must exist, parse as YAML and have the rule-file shape (groups, each
with a name and rules, each rule with `alert` or `record` and `expr`). When a
promtool binary is at hand (--promtool, $PROMTOOL, PATH, or the one
scripts/lib/promtool.sh unpacks into the cache) it must also accept the file
(`promtool check rules`: PromQL, durations, templates). Prints one line per
problem, exit 1 if any; exit 0 and nothing otherwise. Changes nothing.
"""

import os
import shutil
import subprocess
import sys

import yaml


def shape_problems(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        return [f"{path}: cannot be read ({exc.strerror})"]
    except yaml.YAMLError as exc:
        return [f"{path}: is not valid YAML ({str(exc).splitlines()[0]})"]
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        return [f"{path}: must be a Prometheus rule file with a top-level `groups:` list"]
    problems = []
    for g_index, group in enumerate(data["groups"]):
        if not isinstance(group, dict) or not group.get("name") or not isinstance(group.get("rules"), list):
            problems.append(f"{path}: groups[{g_index}] needs a name and a rules list")
            continue
        for r_index, rule in enumerate(group["rules"]):
            where = f"{path}: group {group['name']} rules[{r_index}]"
            if not isinstance(rule, dict) or not (rule.get("alert") or rule.get("record")):
                problems.append(f"{where} needs `alert:` or `record:`")
            elif not rule.get("expr"):
                problems.append(f"{where} ({rule.get('alert') or rule.get('record')}) has no `expr:`")
    return problems


def find_promtool(explicit):
    candidates = [explicit, os.environ.get("PROMTOOL"), shutil.which("promtool"),
                  os.path.join(os.environ.get("SEARCHPLAT_CACHE", "/var/cache/searchplat"),
                               "downloads", "prometheus", "usr", "bin", "promtool")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def main(argv):
    promtool = None
    if len(argv) >= 2 and argv[0] == "--promtool":
        promtool, argv = argv[1], argv[2:]
    promtool = find_promtool(promtool)
    problems = []
    for path in argv:
        if not os.path.isfile(path):
            problems.append(f"{path}: does not exist on the controller")
            continue
        found = shape_problems(path)
        if not found and promtool:
            result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                detail = " ".join((result.stderr or result.stdout).split())
                found = [f"{path}: promtool check rules refuses it: {detail}"]
        problems.extend(found)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The platform's alert rules (roles/prometheus) are valid and unit-tested.

The rules file is a template (roles/prometheus/templates/etc/prometheus/rules/
searchplat.rules.yml.j2, Ansible delimiters [[ ]]); it is rendered here with
the role's defaults (and with each inventory's monitoring overrides), then:
  - `promtool check rules` accepts it;
  - every tests/rules/*.test.yml passes `promtool test rules`;
  - every alert has a unit test that fires it and one where it stays silent;
  - promtool rejects a broken rule file (what the role's `validate:` relies on
    to refuse a rule before it is installed), and the preflight check
    (roles/prometheus/files/check-rule-files.py) rejects it on the controller.
promtool comes from Debian's prometheus package, unpacked into the cache by
scripts/lib/promtool.sh (nothing is installed on the controller).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import jinja2
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "prometheus"
TEMPLATE = ROLE / "templates" / "etc" / "prometheus" / "rules" / "searchplat.rules.yml.j2"
RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.test.yml"))
CHECK_SCRIPT = ROLE / "files" / "check-rule-files.py"


def render(overrides: dict | None = None) -> str:
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(overrides or {})
    env = jinja2.Environment(variable_start_string="[[", variable_end_string="]]",
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(**values)


@pytest.fixture(scope="session")
def rules_dir(tmp_path_factory) -> pathlib.Path:
    """The rendered rules next to copies of the unit tests (they name it relatively)."""
    directory = tmp_path_factory.mktemp("rules")
    (directory / "searchplat.rules.yml").write_text(render())
    for test in RULE_TESTS:
        shutil.copy(test, directory / test.name)
    return directory


def alerts(text: str) -> list[str]:
    return [rule["alert"] for group in yaml.safe_load(text)["groups"] for rule in group["rules"] if "alert" in rule]


def test_rendered_rules_pass_promtool_check(promtool, rules_dir):
    result = subprocess.run([promtool, "check", "rules", str(rules_dir / "searchplat.rules.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("inventory", sorted(p.parent.parent.name for p in ROOT.glob("inventories/*/group_vars/monitoring.yml")))
def test_rules_rendered_with_each_inventorys_windows_pass_promtool(promtool, tmp_path, inventory):
    group_vars = yaml.safe_load((ROOT / "inventories" / inventory / "group_vars" / "monitoring.yml").read_text()) or {}
    overrides = {k: v for k, v in group_vars.items() if k.startswith("prometheus_alert_")}
    rules = tmp_path / "searchplat.rules.yml"
    rules.write_text(render(overrides))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{inventory}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("test_file", [p.name for p in RULE_TESTS])
def test_rule_unit_tests_pass(promtool, rules_dir, test_file):
    result = subprocess.run([promtool, "test", "rules", test_file], cwd=rules_dir,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_and_stays_silent_in_a_unit_test():
    names = alerts(render())
    assert len(names) == len(set(names)), "duplicate alert names"
    fires, silent = set(), set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert not set(names) - fires, f"alerts no unit test fires: {sorted(set(names) - fires)}"
    assert not set(names) - silent, f"alerts without a silent case: {sorted(set(names) - silent)}"
    unknown = (fires | silent) - set(names)
    assert not unknown, f"unit tests name alerts the rules do not have: {sorted(unknown)}"


def test_every_alert_has_severity_and_annotations():
    for group in yaml.safe_load(render())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"].get("summary") and rule["annotations"].get("description"), rule["alert"]
            assert rule.get("for"), rule["alert"]


BROKEN_PROMQL = """\
groups:
  - name: broken
    rules:
      - alert: Broken
        expr: rate(up[5m] > 0
"""
BROKEN_YAML = "groups:\n  - name: broken\n    rules: [\n"
NO_EXPR = "groups:\n  - name: broken\n    rules:\n      - alert: NoExpr\n"


@pytest.mark.parametrize("content", [BROKEN_PROMQL, BROKEN_YAML, NO_EXPR], ids=["promql", "yaml", "no-expr"])
def test_promtool_rejects_a_broken_rule_file(promtool, tmp_path, content):
    # The role installs rule files with `validate: promtool check rules %s`:
    # this refusal is what keeps a broken rule off the host.
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(content)
    result = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0, result.stdout


@pytest.mark.parametrize("content", [BROKEN_PROMQL, BROKEN_YAML, NO_EXPR], ids=["promql", "yaml", "no-expr"])
def test_preflight_check_rejects_a_broken_rule_file(promtool, tmp_path, content):
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(content)
    good = tmp_path / "good.rules.yml"
    good.write_text(render())
    result = subprocess.run([sys.executable, str(CHECK_SCRIPT), "--promtool", promtool, str(good), str(broken)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(broken) in result.stdout and str(good) not in result.stdout, result.stdout


def test_preflight_check_accepts_the_rules_and_reports_a_missing_file(promtool, tmp_path):
    good = tmp_path / "good.rules.yml"
    good.write_text(render())
    ok = subprocess.run([sys.executable, str(CHECK_SCRIPT), "--promtool", promtool, str(good)],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = subprocess.run([sys.executable, str(CHECK_SCRIPT), str(tmp_path / "nope.yml")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stdout

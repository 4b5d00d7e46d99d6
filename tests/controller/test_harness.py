"""The test harness itself (scripts/test, tests/acceptance/conftest.py) fails
where it must: a missing tool, a stage that collects nothing, an unknown
stage name, a mistyped group marker; it counts Molecule's Testinfra cases,
lists every skip with its reason, never counts a stale JUnit file, and runs
every Molecule scenario in the tree.

Fast: scripts/test is sourced (it defines its functions and runs nothing)
and its functions run against tiny fixture directories; no lab, no
container, no bootstrap.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test"
LAST_LINE = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$")


def harness(body: str, tmp_path: pathlib.Path, env: dict | None = None, path: str | None = None):
    """Run BODY in bash after sourcing scripts/test, artifacts in tmp_path;
    (exit status, output, (passed, failed, skipped) of the last line)."""
    script = textwrap.dedent(f"""\
        source {SCRIPT}
        ARTIFACTS={tmp_path / 'artifacts'}
        MOLECULE_DURATIONS={tmp_path / 'molecule-durations'}
        {f'PATH={path}' if path else ''}
        """) + textwrap.dedent(body)
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})}, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    match = LAST_LINE.match(lines[-1]) if lines else None
    counts = tuple(int(n) for n in match.groups()) if match else None
    return proc.returncode, out, counts


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# --- stage names -------------------------------------------------------------

@pytest.mark.parametrize("args", [["--only", "bogus"], ["--skip", "lint,molecul"], ["--only", ","], ["--only"]])
def test_unknown_stage_name_is_an_error(args):
    """Before any bootstrap: the run stops, naming the stages."""
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0
    assert "stage" in proc.stderr and "bootstrap" not in proc.stdout, proc.stdout + proc.stderr


def test_known_stage_names_are_accepted(tmp_path):
    rc, out, _ = harness("stage_names lint,controller && stage_names 'molecule fullstack acceptance'", tmp_path)
    assert rc == 0, out
    assert "lint controller" in out and "molecule fullstack acceptance" in out


# --- a missing tool ------------------------------------------------------------

def _path_without(tmp_path: pathlib.Path, missing: str) -> str:
    """A PATH with every command of this one except MISSING: the venv's bin
    (its python must stay the venv's), then symlinks to everything else."""
    venv_bin = os.path.dirname(sys.executable)
    assert not os.path.exists(os.path.join(venv_bin, missing))
    shim = tmp_path / "bin"
    shim.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if name != missing and not (shim / name).exists() and os.access(target, os.X_OK) \
                    and os.path.isfile(target):
                (shim / name).symlink_to(target)
    return f"{venv_bin}:{shim}"


def test_a_missing_tool_fails_the_stage(tmp_path):
    """hey (the acceptance suite's load client) missing: the tools check of
    the stage fails and names it; the run's last line counts the failure."""
    assert shutil.which("hey"), "hey: scripts/lib/bootstrap.sh installs it on this controller"
    rc, out, counts = harness("tools_check acceptance; summary 0", tmp_path, path=_path_without(tmp_path, "hey"))
    assert rc != 0, out
    assert counts == (0, 1, 0), out
    assert re.search(r"missing on this controller: hey$", out, re.M), out


def test_a_missing_python_package_fails(tmp_path):
    rc, out, counts = harness("check tools/x require_tools py:searchplat_no_such_module python; summary 0", tmp_path)
    assert rc != 0 and counts == (0, 1, 0), out
    assert "py:searchplat_no_such_module" in out


def test_every_stage_names_its_tools(tmp_path):
    rc, out, _ = harness("for s in $STAGES; do printf '%s: ' $s; stage_tools $s || exit 1; done", tmp_path)
    assert rc == 0, out
    assert re.search(r"acceptance: .*\bhey\b.*\bssh-audit\b.*py:opensearchpy", out), out


# --- pytest stages -------------------------------------------------------------

def test_a_stage_that_collects_nothing_fails(tmp_path):
    """pytest's exit 5 (no test collected) is a failure, not a quiet pass."""
    empty = write(tmp_path / "empty" / "test_nothing.py", '"""No tests here."""\n').parent
    rc, out, counts = harness(f"pytest_stage empty {empty}; summary 0", tmp_path)
    assert rc != 0, out
    assert counts == (0, 1, 0), out
    assert "nothing collected (pytest exit 5)" in out


def test_skips_are_listed_with_their_reason_and_counted(tmp_path):
    suite = write(tmp_path / "suite" / "test_some.py", """\
        import pytest

        def test_passes():
            pass

        @pytest.mark.parametrize("n", [1, 2])
        def test_skips(n):
            pytest.skip("the stub has no such tier")
        """).parent
    rc, out, counts = harness(f"pytest_stage suite {suite}; summary 0", tmp_path)
    assert rc == 0, out
    assert counts == (1, 0, 2), out
    assert re.search(r"the stub has no such tier +\[.*test_some::test_skips: 1, 2\]", out), out


def test_a_stale_junit_file_is_never_counted(tmp_path):
    """A stage whose pytest dies before writing JUnit (here a usage error)
    must not report the previous run's cases."""
    stale = write(tmp_path / "artifacts" / "stage.xml", """\
        <testsuites><testsuite tests="5" failures="0" errors="0" skipped="0">
        <testcase classname="old" name="a"/></testsuite></testsuites>
        """)
    rc, out, counts = harness(f"pytest_stage stage --no-such-pytest-option {tmp_path}; summary 0", tmp_path)
    assert rc != 0, out
    assert counts == (0, 1, 0), out
    assert not stale.exists() or "old" not in stale.read_text()


def test_background_quick_stages_are_niced_and_all_counted(tmp_path):
    """Beside the full stack, lint, syntax and the controller tests run in the
    background at the lowest priority (a session of its own whose autogroup
    has nice 19, itself at nice 19): their passes, failures and listed skips
    reach the summary as if they had run in the foreground."""
    suite = write(tmp_path / "suite" / "test_some.py", """\
        import pytest

        def test_passes():
            pass

        def test_skips():
            pytest.skip("a listed reason")
        """).parent
    rc, out, counts = harness(f"""\
        quick_stages() {{
          check "niced" test "$(nice)" = 19
          check "own session" test "$(ps -o sid= -p $$ | tr -d ' ')" = "$$"
          check "lowest autogroup" bash -c '[ ! -e /proc/self/autogroup ] || grep -q "nice 19" /proc/self/autogroup'
          check "fails" false
          pytest_stage suite {suite}
        }}
        quick_pid=""
        quick_stages_in_background
        check "foreground" true
        merge_quick_stages
        summary 0
        """, tmp_path)
    assert rc != 0, out
    assert counts == (5, 1, 1), out
    assert re.search(r"failed: fails$", out, re.M), out
    assert "a listed reason" in out


def test_a_background_run_without_results_fails(tmp_path):
    rc, out, counts = harness("""\
        quick_stages() { exit 3; }
        quick_pid=""
        quick_stages_in_background
        merge_quick_stages
        summary 0
        """, tmp_path)
    assert rc != 0, out
    assert counts == (0, 1, 0), out
    assert "ended without results" in out


# --- the acceptance suite's group markers ---------------------------------------

def _acceptance_fixture(tmp_path: pathlib.Path, marker: str) -> tuple[pathlib.Path, pathlib.Path]:
    """A one-module copy of the acceptance layout (the real conftest.py) and
    an inventory of two local hosts."""
    suite = tmp_path / "acceptance"
    suite.mkdir()
    shutil.copy(ROOT / "tests" / "acceptance" / "conftest.py", suite / "conftest.py")
    # conftest.py imports the lab's turn-taking (disruption.lab_turn).
    shutil.copy(ROOT / "tests" / "acceptance" / "disruption.py", suite / "disruption.py")
    write(suite / "test_tier.py", f"""\
        import pytest

        pytestmark = pytest.mark.groups({marker!r})

        def test_each_host(host):
            pass

        @pytest.mark.once
        def test_once_per_tier(host):
            pass
        """)
    inventory = write(tmp_path / "hosts.yml", """\
        all:
          children:
            loadbalancers:
              hosts:
                lb1: {ansible_connection: local}
                lb2: {ansible_connection: local}
            app_servers:
              hosts:
                app1: {ansible_connection: local}
        """)
    return suite, inventory


def test_a_mistyped_group_marker_fails_collection(tmp_path):
    suite, inventory = _acceptance_fixture(tmp_path, "loadbalancer")
    rc, out, counts = harness(
        f"pytest_stage acceptance -n 2 --hosts=ansible://all --ansible-inventory={inventory} {suite}; summary 0",
        tmp_path)
    assert rc != 0, out
    assert counts is not None and counts[0] == 0 and counts[1] >= 1, out
    log = (tmp_path / "artifacts" / "acceptance.log").read_text()
    assert "unknown group(s) loadbalancer" in log, log[-3000:]


def test_a_correct_group_marker_selects_its_hosts(tmp_path):
    """Control case: the same module spelt right runs on each load balancer,
    and the tier-wide test on the first one only."""
    suite, inventory = _acceptance_fixture(tmp_path, "loadbalancers")
    rc, out, counts = harness(
        f"pytest_stage acceptance --hosts=ansible://all --ansible-inventory={inventory} {suite}; summary 0",
        tmp_path)
    assert rc == 0, out
    assert counts == (3, 0, 0), out


@pytest.mark.parametrize("inventory", ["production", "staging"])
def test_the_acceptance_suite_collects_against_each_inventory(inventory):
    """Every module's markers are valid for the committed inventories."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
         "--hosts=ansible://all", f"--ansible-inventory=inventories/{inventory}", "tests/acceptance"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\d+/\d+ tests collected|\d+ tests collected", proc.stdout), proc.stdout[-2000:]


# --- Molecule -------------------------------------------------------------------

def _molecule_tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A project with the real shared Molecule config and three scenarios that
    only verify (no instance): one with a pass and a skip, one with a failing
    case, one with no Testinfra test at all."""
    tree = tmp_path / "project"
    shutil.copytree(ROOT / ".config", tree / ".config")
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    for scenario, test in {
        "default": """\
            import pytest

            def test_passes():
                pass

            def test_skips():
                pytest.skip("no such host in the stub")
            """,
        "broken": """\
            def test_fails():
                assert False, "the stub fails"
            """,
        "empty": None,
    }.items():
        base = tree / "roles" / "stub" / "molecule" / scenario
        write(base / "molecule.yml", """\
            ---
            driver:
              name: default
              options:
                managed: false
            platforms:
              - name: stub-instance
            scenario:
              test_sequence:
                - verify
            """)
        if test:
            write(base / "tests" / "test_stub.py", test)
        else:
            (base / "tests").mkdir(parents=True)
    write(tree / "roles" / "stub" / "tasks" / "main.yml", "---\n")
    return tree


def test_molecule_scenarios_report_their_testinfra_cases(tmp_path):
    """Each scenario counts its Testinfra cases from the JUnit file its
    verifier writes (.config/molecule/config.yml), skips with their reason;
    a scenario that reports no case is a failure, as is a failed case."""
    tree = _molecule_tree(tmp_path)
    rc, out, counts = harness(f"""\
        PROJECT_ROOT={tree}
        molecule_scenarios
        MOLECULE_JOBS=1 molecule_runner
        report_molecule
        summary 0
        """, tmp_path)
    assert "stub broken stub-broken" in out and "stub default stub" in out and "stub empty stub-empty" in out, out
    assert rc != 0, out
    assert re.search(r"molecule/stub \(testinfra\) +1 passed, 0 failed, 1 skipped", out), out
    assert re.search(r"molecule/stub-broken \(testinfra\) +0 passed, 1 failed, 0 skipped", out), out
    assert re.search(r"molecule/stub-empty \(testinfra\) +0 passed, 1 failed, 0 skipped", out), out
    assert "no test case reported" in out
    assert "no such host in the stub" in out
    assert counts == (1, 2, 1), out


def test_every_molecule_scenario_in_the_tree_runs(tmp_path):
    """scripts/test runs every scenario under roles/ (not only `default`);
    a scenario anywhere else in the tree (the top-level molecule/platform)
    must be run by scripts/test by name (`molecule test -s <name>`)."""
    rc, out, _ = harness(f"PROJECT_ROOT={ROOT}; molecule_scenarios", tmp_path)
    assert rc == 0, out
    listed = {tuple(line.split()[:2]) for line in out.splitlines() if line.strip()}
    found = set()
    elsewhere = []
    for path in ROOT.rglob("molecule.yml"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".config", ".git", ".cache", "artifacts"):
            continue
        if rel.parts[0] == "roles" and len(rel.parts) == 5 and rel.parts[2] == "molecule":
            found.add((rel.parts[1], rel.parts[3]))
        else:
            elsewhere.append(rel)
    assert found == listed, f"not run by scripts/test: {sorted(found - listed)}"
    script = SCRIPT.read_text()
    not_run = [str(rel) for rel in elsewhere
               if not re.search(rf"(-s|--scenario-name)[\s=]+[\"']?{re.escape(rel.parent.name)}\b", script)]
    assert not not_run, f"Molecule scenarios scripts/test never runs: {not_run}"

#!/usr/bin/env python3
"""Build an offline wheelhouse of a Python service ON THE CONTROLLER.

Run by roles/app (tasks/build.yml) with the controller's Python:

    build_wheelhouse.py --source DIR|WHEEL --requirements LOCK --cache-dir DIR
                        --python-version 3.11 --arch x86_64 --glibc 2.36

The release id is "<version>-<digest>": the digest covers the service's
source (or wheel), the lock file and the target's Python/platform, so any
change of code or dependencies is a new release, and the same inputs are the
same release (nothing rebuilt, nothing redeployed). Wheels of the
dependencies are downloaded as binaries for the TARGET (pip download
--only-binary --platform --python-version), so the controller may run
another Python; the service itself is built as a pure-Python wheel.

Prints one JSON object: {"release", "version", "path", "changed"}. The
wheelhouse directory holds the wheels and requirements.lock; a ".complete"
file marks a finished build (an interrupted one is rebuilt).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

# Never part of the source digest: build output, caches, VCS data.
SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
             ".tox", ".nox", ".venv", "venv", "build", "dist", "node_modules"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")
WHEEL_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")


def fail(message: str) -> None:
    print(json.dumps({"failed": True, "msg": message}))
    sys.exit(1)


def source_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                files.append(Path(dirpath) / name)
    return files


def digest(source: Path, requirements: Path, target: list[str]) -> str:
    h = hashlib.sha256()
    h.update("\0".join(target).encode())
    paths = [source] if source.is_file() else source_files(source)
    for path in paths:
        h.update(b"\0F" + str(path.relative_to(source.parent if source.is_file() else source)).encode())
        h.update(path.read_bytes())
    h.update(b"\0R" + requirements.read_bytes())
    return h.hexdigest()


def project_version(source: Path) -> tuple[str, str]:
    """(distribution name, version) of a source tree or a wheel file."""
    if source.is_file():
        m = WHEEL_RE.match(source.name)
        if not m:
            fail(f"{source} is not a wheel file name (name-version-...-tag.whl)")
        return m["name"], m["version"]
    pyproject = source / "pyproject.toml"
    if not pyproject.is_file():
        fail(f"{source} has no pyproject.toml: app_source must be a Python project directory or a .whl file")
    try:
        project = tomllib.loads(pyproject.read_text("utf-8")).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        fail(f"{pyproject} does not parse: {exc}")
    if "version" not in project or "name" not in project:
        fail(f"{pyproject} must set [project] name and a static version (the release id starts with it)")
    return project["name"], project["version"]


def manylinux_tags(arch: str, glibc: str) -> list[str]:
    """Every manylinux tag a host with this glibc accepts (pip does not
    expand --platform itself): manylinux_2_5 .. manylinux_2_<minor> and the
    legacy aliases manylinux1/2010/2014."""
    m = re.fullmatch(r"2\.(\d+)", glibc)
    if not m or not re.fullmatch(r"[A-Za-z0-9_]+", arch):
        fail(f"unusable target platform: arch {arch!r}, glibc {glibc!r}")
    minor = int(m[1])
    tags = [f"manylinux_2_{n}_{arch}" for n in range(minor, 4, -1)]
    tags += [f"{alias}_{arch}" for n, alias in ((17, "manylinux2014"), (12, "manylinux2010"), (5, "manylinux1"))
             if minor >= n]
    return tags


def pip(args: list[str], extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", *args, *extra]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        fail("pip failed on the controller: " + " ".join(cmd[2:]) + "\n" + proc.stdout[-3000:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True)
    p.add_argument("--requirements", required=True)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--python-version", required=True, help="target's MAJOR.MINOR")
    p.add_argument("--arch", required=True, help="target's machine, e.g. x86_64 or aarch64")
    p.add_argument("--glibc", required=True, help="target's glibc MAJOR.MINOR, e.g. 2.36")
    p.add_argument("--pip-arg", action="append", default=[], help="extra pip argument (repeat)")
    p.add_argument("--keep", type=int, default=5, help="wheelhouses kept in the cache per service")
    a = p.parse_args()

    source = Path(a.source).expanduser().resolve()
    requirements = Path(a.requirements).expanduser().resolve()
    if not source.exists():
        fail(f"app_source {source} does not exist on the controller")
    if not requirements.is_file():
        fail(f"app_requirements_file {requirements} does not exist on the controller")
    name, version = project_version(source)
    platforms = manylinux_tags(a.arch, a.glibc)
    target = [a.python_version, *platforms]
    release = f"{version}-{digest(source, requirements, target)[:12]}"
    cache = Path(a.cache_dir).expanduser()
    dest = cache / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{release}"
    cache.mkdir(parents=True, exist_ok=True)
    # Several hosts of one play ask at once: one builds, the others wait.
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        changed = build(a, source, requirements, cache, dest, release, platforms)
    print(json.dumps({"release": release, "name": name, "version": version, "path": str(dest),
                      "changed": changed}))


def build(a: argparse.Namespace, source: Path, requirements: Path, cache: Path, dest: Path,
          release: str, platforms: list[str]) -> bool:
    """Builds the wheelhouse into dest unless it is complete; True if built."""
    if (dest / ".complete").is_file():
        return False
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        py = a.python_version.replace(".", "")
        download = ["download", "--quiet", "--dest", str(work), "--only-binary=:all:",
                    "--python-version", a.python_version, "--implementation", "cp",
                    "--abi", f"cp{py}", "--abi", "abi3", "--abi", "none"]
        for tag in platforms:
            download += ["--platform", tag]
        pip(download + ["-r", str(requirements)], a.pip_arg)
        if source.is_file():
            shutil.copy2(source, work / source.name)
        else:
            # The service itself: a wheel without its dependencies (they come
            # from the lock file), built in isolation (the build backend from
            # the controller's package index).
            with tempfile.TemporaryDirectory() as build_src:
                shutil.copytree(source, build_src, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(*SKIP_DIRS, "*.egg-info", "*.pyc"))
                pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", str(work), build_src], a.pip_arg)
        shutil.copy2(requirements, work / "requirements.lock")
        (work / ".complete").write_text(release + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)

    # Older wheelhouses of this service beyond --keep, oldest first.
    prefix = dest.name[: -len(release)]
    others = sorted((d for d in cache.iterdir() if d.is_dir() and d.name.startswith(prefix) and d != dest),
                    key=lambda d: d.stat().st_mtime)
    for old in others[: max(0, len(others) - (a.keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return True


if __name__ == "__main__":
    main()

"""roles/app on one host, after side_effect.yml: version 1 of the demo
service deployed again over versions 2, 3 (rolled back) and 4 (refused)."""

import json

import pytest

NAME = "demo-svc"
SECRET = "molecule-secret-token-0123456789"


def get_json(host, path):
    out = host.check_output(
        "python3 -c 'import sys, urllib.request; "
        "print(urllib.request.urlopen(\"http://127.0.0.1:8000\" + sys.argv[1], timeout=5).read().decode())' %s",
        path)
    return json.loads(out)


def test_service_runs_enabled_as_its_own_user(host):
    svc = host.service(f"{NAME}.service")
    assert svc.is_running and svc.is_enabled
    users = set(host.check_output(f"ps -o user= -C gunicorn").split())
    assert users == {NAME}, users


def test_listens_only_on_the_configured_address(host):
    assert host.socket("tcp://127.0.0.1:8000").is_listening
    assert not host.socket("tcp://0.0.0.0:8000").is_listening


def test_serves_release_one_with_its_environment(host):
    assert get_json(host, "/ready") == {"status": "ready"}
    assert get_json(host, "/version") == {"version": "1.0.0"}
    assert get_json(host, "/env") == {"greeting": "hello from the env file", "token_set": True}


def test_current_points_at_release_one_and_previous_releases_are_kept(host):
    current = host.file(f"/opt/{NAME}/current")
    assert current.is_symlink
    assert current.linked_to.startswith(f"/opt/{NAME}/releases/1.0.0-")
    releases = host.check_output(f"ls /opt/{NAME}/releases").split()
    versions = sorted(r.split("-")[0] for r in releases)
    # 1 (current), 2 (the previous one, rollback target) and the newest other
    # (3 or 4): app_releases_keep = 3.
    assert len(releases) == 3, releases
    assert "1.0.0" in versions and "2.0.0" in versions


def test_code_belongs_to_root_and_the_service_cannot_change_it(host):
    release = host.file(f"/opt/{NAME}/current").linked_to
    for path in (release, f"{release}/venv", f"{release}/venv/bin/gunicorn", f"{release}/wheelhouse"):
        f = host.file(path)
        assert f.user == "root" and not (f.mode & 0o022), (path, f.user, oct(f.mode))
    assert host.file(f"{release}/.installed").exists


def test_installed_offline_from_the_release_wheelhouse(host):
    release = host.file(f"/opt/{NAME}/current").linked_to
    wheels = host.check_output(f"ls {release}/wheelhouse").split()
    assert any(w.startswith("demo_svc-1.0.0-") for w in wheels), wheels
    assert any(w.startswith("gunicorn-") for w in wheels), wheels
    assert "requirements.lock" in wheels


def test_environment_file_is_root_only(host):
    env = host.file(f"/etc/{NAME}/{NAME}.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    with host.sudo():
        content = host.file(f"/etc/{NAME}/{NAME}.env").content_string
    assert 'DEMO_GREETING="hello from the env file"' in content
    # The backups made while deploying are gone after the successful deploy.
    assert host.check_output(f"ls /etc/{NAME}").split() == [f"{NAME}.env"]


def test_secret_is_in_no_command_line_and_no_journal(host):
    with host.sudo():
        cmdlines = host.check_output("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
        journal = host.check_output("journalctl --no-pager -o cat")
    assert SECRET not in cmdlines
    assert SECRET not in journal


@pytest.mark.parametrize("prop, value", [
    ("User", NAME),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("CapabilityBoundingSet", ""),
    ("KillSignal", "15"),
    ("Restart", "on-failure"),
])
def test_unit_is_hardened_and_stops_gracefully(host, prop, value):
    out = host.check_output(f"systemctl show -p {prop} --value {NAME}.service")
    assert out == value


def test_seed_command_ran_once_as_the_service(host):
    marker = host.file(f"/var/lib/{NAME}/.seeded")
    assert marker.exists
    assert json.loads(marker.content_string) == {"seeded": "1.0.0", "token_set": True}

"""Verify backup_server and backup_client together (the client role has no scenario of its own).

Two hosts: the repository server (which also backs itself up, as the platform
does) and a client whose REST password has characters a URL must escape. The
offsite endpoint is versitygw on the server's loopback (prepare.yml).
side_effect.yml has already added the client "drill" (no restart), restored
files through the restore entry point and checked the bad-input rejections.
The tests run in file order: backups first, then the server's jobs over what
they left, then the failures.
"""

import hashlib
import json
import os
import re
import time

import pytest
import testinfra

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
SERVER, CLIENT = PREFIX + "-backup-server", PREFIX + "-backup-client"
ADDRESS, PORT = "10.226.0.11", 8443
DATA = "/srv/restic"
TEXTFILE = "/var/lib/prometheus/node-exporter"
CA = "/etc/ssl/searchplat/ca.crt"
SECRETS = "/etc/backup-server/secrets"
OFFSITE = "s3:https://127.0.0.1:7070/searchplat-offsite"
OFFSITE_BUCKET_DIR = "/srv/s3-test/searchplat-offsite"
# From molecule.yml (the master secret derives the per-host passwords).
CLIENT_REST_PASSWORD = "p@ss/w:rd%?#x y"
OFFSITE_SECRET_KEY = "molecule-offsite-secret-key"
OFFSITE_PASSWORD = "molecule-offsite-password"
CLIENT_RESTIC = (f"RESTIC_REPOSITORY_FILE=/etc/backup-client/repository RESTIC_PASSWORD_FILE=/etc/backup-client/password "
                 f"restic --cacert {CA} --no-cache")

# Every test takes the `host` fixture (the server), even when it only uses
# the client: pytest would otherwise reorder the tests that are not
# parametrized by it ahead of those that are, and the file's order matters.
testinfra_hosts = ["ansible://" + SERVER]


def derived(kind, host):
    return hashlib.sha256(f"molecule-master-secret:{kind}:{host}".encode()).hexdigest()


def _host(name):
    return testinfra.get_host("ansible://" + name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def client():
    return _host(CLIENT)


def metrics(host, name):
    """{'metric{labels}': value} of one textfile."""
    out = {}
    for line in host.file(f"{TEXTFILE}/{name}").content_string.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def journal(host, tag, since="-15min"):
    return host.check_output(f"journalctl --no-pager -o cat -t {tag} --since={since}")


def snapshots(host, restic, tag=None):
    cmd = f"{restic} --no-lock snapshots --json" + (f" --tag {tag}" if tag else "")
    return json.loads(host.check_output(cmd)) or []


def server_local_restic(repo):
    """restic on a repository on the server's disk, as the maintenance user, password from the root-only file."""
    return (f"RESTIC_PASSWORD=\"$(cat {SECRETS}/repositories/{repo})\" setpriv --reuid=restic-maint --regid=restic "
            f"--init-groups restic --repo {DATA}/{repo} --no-cache")


# --- the server ---------------------------------------------------------------

def test_server_runs_on_the_private_address_only(host):
    svc = host.service("rclone-restic")
    assert svc.is_running and svc.is_enabled
    assert host.socket(f"tcp://{ADDRESS}:{PORT}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{PORT}").is_listening
    assert not host.socket(f"tcp://127.0.0.1:{PORT}").is_listening
    pid = host.check_output("systemctl show -p MainPID --value rclone-restic")
    assert host.check_output(f"ps -o user= -p {pid}") == "restic-rest"
    cmdline = host.file(f"/proc/{pid}/cmdline").content_string.split("\0")
    for flag in ("--append-only", "--private-repos", "--htpasswd", "--cache-objects=false"):
        assert flag in cmdline
    assert cmdline[cmdline.index("--min-tls-version") + 1] == "tls1.2"


def test_server_unit_is_hardened(host):
    show = host.check_output(
        "systemctl show rclone-restic -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp "
        "-p PrivateDevices -p CapabilityBoundingSet -p ReadWritePaths -p InaccessiblePaths -p UMask -p RestrictSUIDSGID")
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["NoNewPrivileges"] == "yes" and props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes" and props["PrivateTmp"] == "yes" and props["PrivateDevices"] == "yes"
    assert props["CapabilityBoundingSet"] == "" and props["UMask"] == "0007"
    assert props["ReadWritePaths"] == DATA
    assert SECRETS in props["InaccessiblePaths"]
    pid = host.check_output("systemctl show -p MainPID --value rclone-restic")
    # The secrets do not exist for the server's processes.
    assert host.run(f"nsenter -t {pid} -m test -e {SECRETS}/offsite.env").rc != 0
    assert host.run(f"test -e {SECRETS}/offsite.env").rc == 0


def test_tls_key_stays_root_only(host):
    key = host.file("/etc/ssl/searchplat/backup-server.key")
    assert key.user == "root" and key.mode == 0o600
    copy = host.file("/run/rclone-restic/tls.key")
    assert copy.user == "restic-rest" and copy.mode == 0o400
    assert host.file("/run/rclone-restic").mode == 0o700


def test_tls_verified_against_the_scenario_ca(host, client):
    code = (
        "import socket, ssl, sys\n"
        "ctx = ssl.create_default_context(cafile=sys.argv[1]) if sys.argv[1] else ssl.create_default_context()\n"
        f"s = ctx.wrap_socket(socket.create_connection(('{ADDRESS}', {PORT}), timeout=5), server_hostname='{ADDRESS}')\n"
        "print(s.version())\n")
    assert client.check_output("python3 -c %s %s", code, CA) in ("TLSv1.2", "TLSv1.3")
    untrusted = client.run("python3 -c %s ''", code)
    assert untrusted.rc != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_htpasswd_has_one_bcrypt_hash_per_client(host):
    f = host.file("/etc/backup-server/htpasswd")
    assert f.user == "root" and f.group == "restic" and f.mode == 0o640
    entries = dict(line.split(":", 1) for line in f.content_string.splitlines())
    assert sorted(entries) == sorted([SERVER, CLIENT, "drill"])
    assert all(re.match(r"^\$2[aby]\$10\$", h) for h in entries.values())
    assert CLIENT_REST_PASSWORD not in f.content_string


def test_secrets_are_root_only_on_the_server(host):
    assert host.file(SECRETS).mode == 0o700 and host.file(SECRETS).user == "root"
    for name in ("offsite.env", "offsite.password", f"repositories/{CLIENT}", f"repositories/{SERVER}"):
        f = host.file(f"{SECRETS}/{name}")
        assert f.user == "root" and f.mode == 0o600, name
    assert host.file(f"{SECRETS}/repositories/{CLIENT}").content_string == derived("repo", CLIENT)


def test_client_configuration_files(host, client):
    repo = client.file("/etc/backup-client/repository")
    assert repo.user == "root" and repo.mode == 0o600
    # The REST password, URL-encoded, only in this file.
    assert repo.content_string.strip() == (
        f"rest:https://{CLIENT}:p%40ss%2Fw%3Ard%25%3F%23x%20y@{ADDRESS}:{PORT}/{CLIENT}/")
    password = client.file("/etc/backup-client/password")
    assert password.user == "root" and password.mode == 0o600
    assert password.content_string == derived("repo", CLIENT)


def test_offsite_credentials_exist_on_the_backup_host_only(host, client):
    assert client.run(f"grep -rlF {OFFSITE_SECRET_KEY} /etc /root /var/lib /usr/local").rc == 1
    assert client.run(f"grep -rlF {OFFSITE_PASSWORD} /etc /root /var/lib /usr/local").rc == 1


def test_cron_entries(host, client):
    minute = int(hashlib.md5(CLIENT.encode()).hexdigest(), 16) % 60
    cron = client.file("/etc/cron.d/backup-client").content_string
    assert f"\n{minute} 1 * * * root /usr/local/sbin/backup-client-run etc\n" in cron
    assert "\n30 2 * * * root /usr/local/sbin/backup-client-run app\n" in cron
    assert f"\n{minute} 2 * * * root /usr/local/sbin/backup-client-run failing\n" in cron
    assert f"\n{minute} 3 * * * root /usr/local/sbin/backup-client-canary\n" in cron
    server_cron = host.file("/etc/cron.d/backup-server").content_string
    for job, hour in (("forget", 4), ("check", 5), ("offsite", 6)):
        assert f"\n15 {hour} * * * root /usr/local/sbin/backup-server-job {job}\n" in server_cron
    server_minute = int(hashlib.md5(SERVER.encode()).hexdigest(), 16) % 60
    assert f"{server_minute} 3 * * * root /usr/local/sbin/backup-client-run bulk" in host.file(
        "/etc/cron.d/backup-client").content_string


# --- backups, canary ----------------------------------------------------------------

def test_backup_taken_with_metrics(host, client):
    before = len(snapshots(client, CLIENT_RESTIC, "etc"))
    start = time.time()
    client.check_output("/usr/local/sbin/backup-client-run etc")
    assert len(snapshots(client, CLIENT_RESTIC, "etc")) == before + 1
    m = metrics(client, "backup_client_etc.prom")
    assert m['searchplat_backup_success{set="etc"}'] == 1
    assert m['searchplat_backup_last_success_timestamp_seconds{set="etc"}'] >= start - 5
    assert m['searchplat_backup_files{set="etc"}'] > 50
    assert m['searchplat_backup_added_bytes{set="etc"}'] >= 0
    assert 0 <= m['searchplat_backup_duration_seconds{set="etc"}'] < 300
    assert "etc: backup succeeded" in journal(client, "backup-client")


def test_excludes_apply(host, client):
    client.check_output("/usr/local/sbin/backup-client-run app")
    listing = client.check_output(f"{CLIENT_RESTIC} ls latest --tag app")
    assert "/srv/app/release.txt" in listing and "/srv/app/cache.tmp" not in listing


def test_canary_verified(host, client):
    canary = client.file("/etc/backup-client/canary.txt")
    assert canary.content_string == f"searchplat backup canary of {CLIENT}\n"
    client.check_output("/usr/local/sbin/backup-client-canary")
    m = metrics(client, "backup_client_canary.prom")
    assert m["searchplat_backup_canary_success"] == 1
    assert m["searchplat_backup_canary_last_success_timestamp_seconds"] >= time.time() - 120
    assert m["searchplat_backup_canary_snapshot_timestamp_seconds"] >= time.time() - 600
    expected = hashlib.sha256(canary.content_string.encode()).hexdigest()
    assert f"SHA-256 {expected} as expected" in journal(client, "backup-client-canary")


def test_canary_before_the_first_backup_is_not_a_failure(host, client):
    """A new host's canary may run before its set's first backup (the
    repository does not exist yet): nothing to verify, no metric. Once the
    set has backed up, a missing repository is a failure. A copy of the
    job against an empty repository path and an empty textfile directory."""
    scratch = "/tmp/canary-first-run"
    client.check_output(
        f"rm -rf {scratch} && mkdir -p {scratch}/textfile && echo {scratch}/no-repository > {scratch}/repository"
        f" && sed -e 's|^export RESTIC_REPOSITORY_FILE=.*|export RESTIC_REPOSITORY_FILE={scratch}/repository|'"
        f" -e 's|{TEXTFILE}|{scratch}/textfile|g' /usr/local/sbin/backup-client-canary > {scratch}/canary"
        f" && chmod 0700 {scratch}/canary")
    try:
        first = client.run(f"{scratch}/canary")
        assert first.rc == 0, first.stdout + first.stderr
        assert "set etc has no successful backup yet" in journal(client, "backup-client-canary")
        assert not client.file(f"{scratch}/textfile/backup_client_canary.prom").exists
        client.check_output(
            f"printf 'searchplat_backup_last_success_timestamp_seconds{{set=\"etc\"}} 1\\n'"
            f" > {scratch}/textfile/backup_client_etc.prom")
        after = client.run(f"{scratch}/canary")
        assert after.rc == 1, after.stdout + after.stderr
        assert "searchplat_backup_canary_success 0" in client.file(f"{scratch}/textfile/backup_client_canary.prom").content_string
    finally:
        client.run(f"rm -rf {scratch}")


# --- append-only, private repositories --------------------------------------------

REST = """
import base64, json, ssl, sys, urllib.parse, urllib.request, urllib.error
url = urllib.parse.urlsplit(open('/etc/backup-client/repository').read().strip()[len('rest:'):])
auth = base64.b64encode((urllib.parse.unquote(url.username) + ':' + urllib.parse.unquote(url.password)).encode()).decode()
req = urllib.request.Request('https://%s:%d%s' % (url.hostname, url.port, sys.argv[2]), method=sys.argv[1],
                             headers={'Authorization': 'Basic ' + auth})
try:
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=sys.argv[3]), timeout=10) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def rest(client, method, path):
    """HTTP status of a request with the client's own REST credentials (read from its 0600 file)."""
    return int(client.check_output("python3 -c %s %s %s %s", REST, method, path, CA))


def test_append_only_refuses_deleting_a_snapshot(host, client):
    snap = snapshots(client, CLIENT_RESTIC)[0]["id"]
    assert rest(client, "GET", f"/{CLIENT}/snapshots/{snap}") == 200
    assert rest(client, "DELETE", f"/{CLIENT}/snapshots/{snap}") == 403
    assert rest(client, "DELETE", f"/{CLIENT}/config") == 403
    assert snap in [s["id"] for s in snapshots(client, CLIENT_RESTIC)]


def test_a_client_cannot_reach_another_clients_repository(host, client):
    assert rest(client, "GET", f"/{SERVER}/config") in (401, 403)
    assert rest(client, "GET", "/drill/config") in (401, 403)
    # restic itself, with this host's credentials pointed at the server's repository
    other = client.run(
        "sed 's|/%s/$|/%s/|' /etc/backup-client/repository >/root/other.repo && chmod 0600 /root/other.repo && "
        "RESTIC_REPOSITORY_FILE=/root/other.repo RESTIC_PASSWORD_FILE=/etc/backup-client/password "
        "restic --cacert %s --no-cache snapshots; rc=$?; rm -f /root/other.repo; exit $rc" % (CLIENT, SERVER, CA))
    assert other.rc != 0


# --- locks, kill -9, failures ----------------------------------------------------

# --- started here, checked after the next two tests: restic retries a refused delete for ~45 s ---

def test_start_forget_from_the_client(host, client):
    """A client runs `restic forget --prune` against its own repository, in the background.

    It holds the repository's exclusive lock meanwhile: the next tests do not use that repository.
    """
    client.check_output(
        "rm -f /root/forget.rc; nohup bash -c '%s forget --keep-last 1 --prune >/root/forget.out 2>&1; "
        "echo $? >/root/forget.rc' >/dev/null 2>&1 &" % CLIENT_RESTIC)


def test_second_run_skipped_and_killed_run_does_not_stop_the_next(host):
    """The server host backs itself up too: its bulk set is killed mid-backup (script and restic, -9)."""
    repo = f"{DATA}/{SERVER}"
    # new content, so that the backup has 100 MB to upload
    host.check_output("head -c 100M /dev/urandom >/srv/bulk/random.bin")
    out = host.check_output(
        "/usr/local/sbin/backup-client-run bulk & job=$!; "
        "for i in $(seq 1 600); do pgrep -f 'restic .* backup .*bulk' >/dev/null && ls %s/locks/* >/dev/null 2>&1 && break; "
        "sleep 0.05; done; sleep 0.5; "
        "/usr/local/sbin/backup-client-run bulk; echo second=$?; "
        "ls %s/locks | wc -l | sed 's/^/locks=/'; "
        "pkill -9 -P $job; kill -9 $job; wait $job; echo killed=$?" % (repo, repo))
    assert "second=75" in out
    assert "killed=137" in out
    assert "locks=0" not in out
    assert int(host.check_output(f"ls {repo}/locks | wc -l")) >= 1, "the killed backup left no lock"
    assert "another run of this set still holds" in journal(host, "backup-client")
    host.check_output("/usr/local/sbin/backup-client-run bulk")
    assert int(host.check_output(f"ls {repo}/locks | wc -l")) == 0
    assert metrics(host, "backup_client_bulk.prom")['searchplat_backup_success{set="bulk"}'] == 1


def test_failing_pre_command_fails_the_job(host, client):
    result = client.run("/usr/local/sbin/backup-client-run failing")
    assert result.rc == 1
    m = metrics(client, "backup_client_failing.prom")
    assert m['searchplat_backup_success{set="failing"}'] == 0
    assert m['searchplat_backup_pre_command_success{set="failing"}'] == 0
    assert 'searchplat_backup_last_success_timestamp_seconds{set="failing"}' not in m
    log = journal(client, "backup-client")
    assert "precheck - the database is not ready" in log
    assert "failing: the pre_command failed with exit code 3: the backup was NOT taken" in log
    assert snapshots(client, CLIENT_RESTIC, "failing") == []


def test_forget_from_the_client_was_refused(host, client):
    deadline = time.time() + 150
    while not client.file("/root/forget.rc").exists:
        assert time.time() < deadline, "restic forget did not finish"
        time.sleep(2)
    assert client.file("/root/forget.rc").content_string.strip() != "0"
    out = client.file("/root/forget.out").content_string
    assert "403" in out
    # every snapshot is still there (the refused delete removed nothing)
    assert len(snapshots(client, CLIENT_RESTIC)) >= 3


# --- the server's jobs ----------------------------------------------------------------

def test_retention_prunes_on_the_server_and_keeps_the_minimum(host, client):
    for _ in range(2):
        client.check_output("/usr/local/sbin/backup-client-run etc")
    assert len(snapshots(client, CLIENT_RESTIC, "etc")) >= 4
    newest = sorted(s["time"] for s in snapshots(client, CLIENT_RESTIC, "etc"))[-2:]
    newest_app = max(s["time"] for s in snapshots(client, CLIENT_RESTIC, "app"))
    host.check_output("/usr/local/sbin/backup-server-job forget")
    etc = snapshots(client, CLIENT_RESTIC, "etc")
    # keep-last 2; the daily/weekly/monthly keep the newest of today, one of those two
    assert sorted(s["time"] for s in etc) == newest
    assert newest_app in [s["time"] for s in snapshots(client, CLIENT_RESTIC, "app")]
    total = len(snapshots(client, CLIENT_RESTIC))
    m = metrics(host, "backup_server_forget.prom")
    assert m[f'searchplat_backup_server_success{{task="forget",repository="{CLIENT}"}}'] == 1
    assert m[f'searchplat_backup_server_snapshots{{repository="{CLIENT}",location="local"}}'] == total
    assert m[f'searchplat_backup_server_repository_size_bytes{{repository="{CLIENT}",location="local"}}'] > 0
    assert m[f'searchplat_backup_server_repository_present{{repository="{CLIENT}"}}'] == 1
    # the maintenance user wrote group-readable files the server can serve: the client still backs up
    client.check_output("/usr/local/sbin/backup-client-run etc")


def test_check_job_reads_a_rotating_subset(host):
    host.check_output("/usr/local/sbin/backup-server-job check")
    k = int(time.time()) // 86400 % 7 + 1
    assert f"{CLIENT}: reading pack subset {k}/7" in journal(host, "backup-server-check")
    m = metrics(host, "backup_server_check.prom")
    for repo in (CLIENT, SERVER, "drill"):
        assert m[f'searchplat_backup_server_success{{task="check",repository="{repo}"}}'] == 1


def test_offsite_copy_lands_in_the_bucket_and_is_readable(host):
    host.check_output("/usr/local/sbin/backup-server-job offsite")
    assert host.file(f"{OFFSITE_BUCKET_DIR}/{CLIENT}/config").exists
    assert int(host.check_output(f"ls {OFFSITE_BUCKET_DIR}/{CLIENT}/snapshots | wc -l")) >= 1
    local = json.loads(host.check_output(f"{server_local_restic(CLIENT)} snapshots --json"))
    offsite_restic = (f"set -a; . {SECRETS}/offsite.env; set +a; RESTIC_PASSWORD=\"$(cat {SECRETS}/offsite.password)\" "
                      f"restic --repo {OFFSITE}/{CLIENT} --cacert {CA} --no-cache")
    remote = json.loads(host.check_output(f"{offsite_restic} snapshots --json"))
    # copies of local snapshots, the newest of each set among them; the offsite retention may have
    # dropped one more old snapshot than the local one (the client backed up after the local forget)
    key = lambda s: (s["time"], tuple(s["paths"]), tuple(s.get("tags") or []))  # noqa: E731
    assert {key(s) for s in remote} <= {key(s) for s in local}
    for tag in ("etc", "app"):
        assert max(key(s) for s in local if tag in (s.get("tags") or [])) in {key(s) for s in remote}
    # and restorable: the client's canary, from the offsite copy
    host.check_output(f"rm -rf /root/offsite-restore && {offsite_restic} restore latest --tag etc "
                      f"--include /etc/backup-client/canary.txt --target /root/offsite-restore")
    assert host.file("/root/offsite-restore/etc/backup-client/canary.txt").content_string == (
        f"searchplat backup canary of {CLIENT}\n")
    m = metrics(host, "backup_server_offsite.prom")
    assert m[f'searchplat_backup_server_success{{task="offsite",repository="{CLIENT}"}}'] == 1
    assert m[f'searchplat_backup_server_snapshots{{repository="{CLIENT}",location="offsite"}}'] == len(remote)


def test_a_damaged_repository_fails_the_check(host):
    """A pack of drill's repository disappears: check fails for drill only, exits non-zero, keeps the last success."""
    before = metrics(host, "backup_server_check.prom")
    pack = host.check_output(f"find {DATA}/drill/data -type f -size +1M | head -n 1")
    assert pack
    host.check_output(f"rm -f {pack}")
    result = host.run("/usr/local/sbin/backup-server-job check")
    assert result.rc == 1
    m = metrics(host, "backup_server_check.prom")
    key = 'searchplat_backup_server_success{task="check",repository="drill"}'
    assert m[key] == 0
    assert m[f'searchplat_backup_server_success{{task="check",repository="{CLIENT}"}}'] == 1
    last = 'searchplat_backup_server_last_success_timestamp_seconds{task="check",repository="drill"}'
    assert m[last] == before[last]
    log = journal(host, "backup-server-check", since="-2min")
    assert "drill: check FAILED" in log and "check failed for: drill" in log


# --- metrics through node_exporter, and no secret anywhere ---------------------------------

def scrape(host, address):
    code = f"import urllib.request; print(urllib.request.urlopen('http://{address}:9100/metrics', timeout=10).read().decode())"
    return host.check_output("python3 -c %s", code)


def test_node_exporter_reads_the_metrics(host, client):
    server_metrics = scrape(host, ADDRESS)
    assert "node_textfile_scrape_error 0" in server_metrics
    for name in ("searchplat_backup_server_success", "searchplat_backup_server_snapshots",
                 "searchplat_backup_last_success_timestamp_seconds"):
        assert f"\n{name}{{" in server_metrics, name
    client_metrics = scrape(client, "10.226.0.12")
    assert "node_textfile_scrape_error 0" in client_metrics
    for s in ("etc", "app", "failing"):
        assert f'searchplat_backup_success{{set="{s}"}}' in client_metrics
    assert "\nsearchplat_backup_canary_success 1" in client_metrics


def test_no_secret_in_logs_or_command_lines(host, client):
    secrets = [CLIENT_REST_PASSWORD, "p%40ss%2Fw", derived("repo", CLIENT), derived("repo", SERVER),
               derived("rest", SERVER), OFFSITE_SECRET_KEY, OFFSITE_PASSWORD, "drill-rest-password",
               "drill-repository-password"]
    for h in (host, client):
        logs = h.check_output("journalctl --no-pager -o cat")
        processes = h.check_output("ps -eo args")
        for secret in secrets:
            assert secret not in logs
            assert secret not in processes

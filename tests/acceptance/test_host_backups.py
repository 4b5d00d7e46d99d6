"""Host backups (roles/backup_server on the backup group, roles/backup_client
on every host, the CA's backup from the controller, playbooks/restore-host.yml).

Every host: the client is configured (credentials root-only, cron entries,
a per-host minute). The backup host: the REST server on its private address
over TLS, append-only and private repositories from a client's point of
view, the offsite credentials on that host only, the server's jobs
(retention, check, the offsite copy to the lab's S3 endpoint). Disruptive
(second pass): a deleted file restored with restore-host.yml, a failed
backup raising its alert end to end.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
from disruption import active_alerts, alert_report, disruption_lock, wait_until

pytestmark = pytest.mark.groups("all")

RUN = "/usr/local/sbin/backup-client-run"
JOB = "/usr/local/sbin/backup-server-job"
CONF = "/etc/backup-client"
TEXTFILE = "/var/lib/prometheus/node-exporter"


def _name(host) -> str:
    return host.backend.get_hostname()


def _server(inventory) -> str:
    servers = inventory.hosts_in("backup")
    assert servers, "no host in the backup group"
    return servers[0]


def _metrics(node, name) -> dict[str, float]:
    with node.sudo():
        text = node.check_output(f"cat {TEXTFILE}/{name}.prom")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _restic(node, *args) -> subprocess.CompletedProcess:
    """restic against the host's own repository, with its root-only files."""
    with node.sudo():
        return node.run(
            f"RESTIC_REPOSITORY_FILE={CONF}/repository RESTIC_PASSWORD_FILE={CONF}/password "
            f"restic --cacert /etc/ssl/searchplat/ca.crt --no-cache {' '.join(args)}")


@pytest.fixture
def backup_lock():
    with disruption_lock("backup"):
        yield


# --- every host --------------------------------------------------------------------------

def test_client_credentials_are_root_only_and_jobs_scheduled(host):
    for name in ("repository", "password"):
        f = host.file(f"{CONF}/{name}")
        assert f.user == "root" and f.mode == 0o600, f"{CONF}/{name}"
    cron = host.file("/etc/cron.d/backup-client").content_string
    assert f"{RUN} etc" in cron and "backup-client-canary" in cron
    # The password never shows up in the cron file or a process list.
    with host.sudo():
        password = host.check_output(f"cat {CONF}/password")
    assert password and password not in cron


def test_backup_of_etc_succeeds_and_is_listed(host, backup_lock):
    with host.sudo():
        result = host.run(f"{RUN} etc")
    assert result.rc == 0, result.stdout + result.stderr
    metrics = _metrics(host, "backup_client_etc")
    assert metrics['searchplat_backup_success{set="etc"}'] == 1
    assert time.time() - metrics['searchplat_backup_last_success_timestamp_seconds{set="etc"}'] < 900
    snapshots = json.loads(_restic(host, "snapshots", "--json", "--tag", "etc").stdout)
    assert snapshots and snapshots[-1]["hostname"] == _name(host)


# --- the backup host ---------------------------------------------------------------------

@pytest.mark.once
def test_server_listens_on_its_private_address_over_tls_only(host, inventory, peer):
    server = _server(inventory)
    node = peer(server)
    port = inventory.resolved(server, "backup_server_port")
    address = inventory.address(server)
    assert node.socket(f"tcp://{address}:{port}").is_listening
    assert not node.socket(f"tcp://0.0.0.0:{port}").is_listening
    # TLS verified against the platform CA, from a client host; no plain HTTP.
    client = peer(inventory.hosts_in("app_servers")[0])
    tls = client.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 --cacert /etc/ssl/searchplat/ca.crt "
                     f"https://{address}:{port}/")
    assert tls.stdout.strip() == "401", tls.stdout + tls.stderr  # anonymous: refused by its htpasswd
    plain = client.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{address}:{port}/")
    assert plain.stdout.strip() in ("000", "400"), plain.stdout


@pytest.mark.once
def test_a_client_cannot_delete_its_backups_or_read_another_hosts(host, inventory, peer, backup_lock):
    apps = inventory.hosts_in("app_servers")
    node, other = peer(apps[0]), apps[1]
    # Two snapshots at least, so that keep-last 1 has one to remove.
    with node.sudo():
        assert node.run(f"{RUN} etc").rc == 0
        assert node.run(f"{RUN} etc").rc == 0
    before = json.loads(_restic(node, "snapshots", "--json").stdout)
    assert len(before) >= 2, before
    # Append-only: forget --prune is refused, nothing is removed.
    forget = _restic(node, "forget", "--keep-last", "1", "--prune")
    assert forget.rc != 0, forget.stdout
    after = json.loads(_restic(node, "snapshots", "--json").stdout)
    assert {s["id"] for s in before} <= {s["id"] for s in after}, "a snapshot disappeared"
    # A raw DELETE of the repository's config: 403.
    with node.sudo():
        url = node.check_output(f"cat {CONF}/repository").replace("rest:", "", 1).rstrip("/")
        code = node.run("curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert /etc/ssl/searchplat/ca.crt "
                        "-X DELETE " + f"'{url}/config'").stdout.strip()
    assert code == "403", code
    # Private repositories: its credentials do not open another host's.
    with node.sudo():
        foreign = node.run(
            f"sed 's|/{apps[0]}/$|/{other}/|' {CONF}/repository > /run/backup-test-repo && "
            f"RESTIC_REPOSITORY_FILE=/run/backup-test-repo RESTIC_PASSWORD_FILE={CONF}/password "
            "restic --cacert /etc/ssl/searchplat/ca.crt --no-cache snapshots; rc=$?; rm -f /run/backup-test-repo; exit $rc")
    assert foreign.rc != 0 and other not in foreign.stdout


@pytest.mark.once
def test_offsite_credentials_exist_on_the_backup_host_only(host, inventory, peer):
    server = _server(inventory)
    with peer(server).sudo():
        secrets = peer(server).check_output("ls /etc/backup-server/secrets")
    assert "offsite" in secrets, secrets
    for other in inventory.all_hosts():
        if other == server:
            continue
        with peer(other).sudo():
            assert not peer(other).file("/etc/backup-server").exists, f"{other} has backup-server files"


@pytest.mark.once
def test_server_jobs_retention_check_and_offsite_copy(host, inventory, peer, backup_lock):
    server = peer(_server(inventory))
    with server.sudo():
        for job in ("forget", "check", "offsite"):
            result = server.run(f"{JOB} {job}")
            assert result.rc == 0, f"{job}: {result.stdout[-2000:]} {result.stderr[-1000:]}"
    for job in ("forget", "check", "offsite"):
        metrics = _metrics(server, f"backup_server_{job}")
        present = [k for k in metrics if k.startswith("searchplat_backup_server_success")]
        assert present and all(metrics[k] == 1 for k in present), (job, metrics)


@pytest.mark.once
def test_the_internal_ca_is_backed_up_from_the_controller(host, inventory, peer):
    server = peer(_server(inventory))
    with server.sudo():
        listing = server.check_output("ls /srv/restic")
    assert "controller-pki" in listing.split(), listing


# --- disruptive ----------------------------------------------------------------------------

@pytest.mark.disruptive
@pytest.mark.once
def test_a_deleted_file_is_restored_with_restore_host(host, inventory, peer, backup_lock):
    target = inventory.hosts_in("app_servers")[-1]
    node = peer(target)
    marker = f"/etc/searchplat-restore-test-{uuid.uuid4().hex[:8]}"
    content = uuid.uuid4().hex
    with node.sudo():
        node.check_output(f"echo {content} > {marker}")
        assert node.run(f"{RUN} etc").rc == 0
        node.check_output(f"rm -f {marker}")
    proc = inventory.playbook(
        "playbooks/restore-host.yml", "--limit", target,
        "-e", json.dumps({"backup_client_restore_paths": [marker], "backup_client_restore_in_place": True}),
        timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
    with node.sudo():
        assert node.check_output(f"cat {marker}").strip() == content
        node.check_output(f"rm -f {marker}")


@pytest.mark.disruptive
@pytest.mark.once
def test_a_failed_backup_raises_its_alert_and_recovers(host, inventory, peer, backup_lock):
    server, victim = peer(_server(inventory)), peer(inventory.hosts_in("app_servers")[0])

    def firing():
        return active_alerts(inventory, peer, "BackupFailed", instance=_name(victim))

    with server.sudo():
        server.check_output("systemctl stop rclone-restic")
    try:
        with victim.sudo():
            result = victim.run(f"timeout 300 {RUN} etc")
        assert result.rc != 0, "the backup succeeded with the server stopped"
        assert _metrics(victim, "backup_client_etc")['searchplat_backup_success{set="etc"}'] == 0
        assert wait_until(firing, 180), \
            "BackupFailed never reached Alertmanager: " + alert_report(inventory, peer, "BackupFailed")
    finally:
        with server.sudo():
            server.check_output("systemctl start rclone-restic")
    with victim.sudo():
        assert victim.run(f"{RUN} etc").rc == 0
    assert wait_until(lambda: not firing(), 300), \
        "BackupFailed did not resolve after a good backup: " + alert_report(inventory, peer, "BackupFailed")

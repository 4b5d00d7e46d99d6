"""Verify the nfs role on a server and a client container.

This machine's kernel has neither nfsd nor the NFS client file system, and
both hosts are containers: the role must have installed and written
everything, and must NOT have started the server, applied the exports or
mounted anything (converge.yml checks its message). What can only be
proven on a real kernel (an export served, a share mounted, root squashed,
the same owner on every client) is listed in the role's README.
"""

import os

import pytest
import testinfra

PREFIX = os.environ.get("MOLECULE_INSTANCE_PREFIX", "sp")
SERVER, CLIENT = PREFIX + "-nfs-server", PREFIX + "-nfs-client"

testinfra_hosts = ["ansible://" + SERVER, "ansible://" + CLIENT]

EXPORTS = """\
/srv/opensearch-snapshots 10.235.0.12(rw,sync,no_subtree_check,root_squash,sec=sys) \
10.235.0.0/28(rw,sync,no_subtree_check,root_squash,sec=sys)
/srv/shared 10.235.0.12(rw,sync,no_subtree_check,root_squash,sec=sys,all_squash,anonuid=9300,anongid=9301)
"""


def _host(name):
    return testinfra.get_host("ansible://" + name, ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def server():
    return _host(SERVER)


@pytest.fixture(scope="module")
def client():
    return _host(CLIENT)


def test_kernel_has_no_nfs_here(host):
    # Why nothing is served or mounted in this scenario (docs: not verified here).
    filesystems = host.file("/proc/filesystems").content_string.split()
    assert "nfsd" not in filesystems and "nfs4" not in filesystems


def test_rpcbind_and_statd_masked_and_nothing_listens(host):
    for unit in ("rpcbind.socket", "rpcbind.service", "rpc-statd.service"):
        state = host.run("systemctl is-enabled %s", unit).stdout.strip()
        assert state == "masked", "%s is %s" % (unit, state)
    listening = host.check_output("ss -H -tuln")
    for port in (":111 ", ":2049 "):
        assert port not in listening, listening


def test_no_failed_units(host):
    # The packages' own start attempts (proc-fs-nfsd.mount, rpc_pipefs) fail
    # without kernel support; the role clears them, so the host is not degraded.
    failed = host.check_output("systemctl list-units --state=failed --plain --no-legend --no-pager")
    assert failed.strip() == "", failed


def test_server_packages_and_files(server):
    assert server.package("nfs-kernel-server").is_installed
    exports = server.file("/etc/exports.d/searchplat.exports")
    assert exports.user == "root" and exports.group == "root" and exports.mode == 0o644
    lines = [line for line in exports.content_string.splitlines() if not line.startswith("#")]
    assert "\n".join(lines) + "\n" == EXPORTS
    assert "*" not in exports.content_string
    conf = server.file("/etc/nfs.conf.d/searchplat.conf")
    assert conf.mode == 0o644
    for line in ("vers3=n", "vers4.0=n", "vers4.1=y", "vers4.2=y", "udp=n", "tcp=y", "threads=8"):
        assert line in conf.content_string.splitlines()


@pytest.mark.parametrize("path,uid,gid,mode", [
    ("/srv/opensearch-snapshots", 9200, 9200, 0o750),
    ("/srv/shared", 9300, 9301, 0o770),
])
def test_exported_directories(server, path, uid, gid, mode):
    d = server.file(path)
    assert d.is_directory
    assert (d.uid, d.gid, d.mode) == (uid, gid, mode)


def test_server_not_started_where_it_cannot_run(server):
    svc = server.service("nfs-server")
    assert not svc.is_running
    assert not svc.is_enabled
    # exportfs was never run: the kernel's export table is empty.
    assert server.run("exportfs -v").stdout.strip() == ""


def test_client_package_and_mount_points(client):
    assert client.package("nfs-common").is_installed
    mnt = client.file("/mnt/opensearch-snapshots")
    assert mnt.is_directory and mnt.user == "root" and mnt.mode == 0o755


def test_nothing_mounted_and_no_fstab_entry(client):
    mounts = client.file("/proc/self/mounts").content_string
    assert " nfs" not in mounts
    assert "10.235.0.11:" not in client.file("/etc/fstab").content_string


def test_existing_mount_point_left_alone(client):
    # The stand-in for the lab's bind-mounted snapshot directory.
    bound = client.file("/mnt/bound")
    assert bound.mode == 0o750 and bound.user == "root"
    assert "tmpfs /mnt/bound tmpfs" in client.file("/proc/self/mounts").content_string

# shellcheck shell=bash
# Idempotent bootstrap shared by scripts/lab, scripts/test and scripts/bench.
# Source it; then call `bootstrap_all`. Everything expensive is cached outside
# the checkout under $SEARCHPLAT_CACHE so a fresh clone on the same machine
# reuses it (venv, base image, downloads).
#
# What it installs on a fresh Debian 12 machine (as root):
#   - Debian packages: docker.io, debootstrap, python3-venv, openssh-client,
#     hey, and testssl.sh 3.2.1 unpacked into the cache (ensure_testssl)
#   - the lab's downloads (OpenSearch from Maven Central, ensure_lab_downloads)
#   - the Docker engine, started in the background if no daemon answers
#   - a Python venv with requirements.txt (re-created when that file changes)
#   - the systemd base image, built with debootstrap + `docker import`,
#     tagged with the hash of its recipe (this file's image section)

set -o errexit -o nounset -o pipefail

PROJECT_ROOT="${PROJECT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
SEARCHPLAT_CACHE="${SEARCHPLAT_CACHE:-/var/cache/searchplat}"
VENV="${SEARCHPLAT_CACHE}/venv"
# Packages baked into the base image: what a freshly installed minimal
# Debian server has (systemd, sshd, python3 for Ansible, sudo). Everything
# else is installed by the roles, as on a real host.
BASE_IMAGE_PACKAGES="systemd,systemd-sysv,python3,python3-apt,sudo,iproute2,procps,ca-certificates,gnupg,openssh-server"
BASE_IMAGE_SUITE="bookworm"
BASE_IMAGE_REPO="searchplat/debian12-systemd"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31mERROR:\033[0m %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root (the lab manages Docker and apt)"
}

apt_install() {
  # Install only what is missing; one `apt-get update` per machine boot.
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if [ ! -e /var/lib/apt/lists/lock ] || [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_host_packages() {
  need_root
  # hey: the load-balancer tests' bounded load client; wrk: scripts/bench
  # search (a Lua script reads its credentials from a file). chromium and
  # libnss3-tools (certutil: the lab CA in a throwaway NSS database): the
  # app's search page loaded through the LB. restic: the controller backs up
  # the platform's internal CA into the backup host's repository
  # (playbooks/backup.yml), as an operator's controller does. The rest: what
  # testssl.sh (ensure_testssl) needs.
  apt_install docker.io debootstrap python3-venv openssh-client curl hey wrk \
    chromium libnss3-tools openssl bsdextrautils procps bind9-dnsutils restic
}

# testssl.sh 3.2 (the first series with a rating; Debian 12 ships 3.0.8,
# which has none): Debian 13's package, a shell script with its data files,
# fetched once from Debian's archive (checksum pinned) and unpacked into the
# cache, not installed system-wide. Exports TESTSSL_BIN and
# TESTSSL_INSTALL_DIR (its data directory).
TESTSSL_DEB_URL="http://deb.debian.org/debian/pool/main/t/testssl.sh/testssl.sh_3.2.1+dfsg-1_all.deb"
TESTSSL_DEB_SHA256="c6920c9565820e25db2d991ea8c9db882ea339773b126e47e26d623624a6cbe3"
ensure_testssl() {
  local dir="${SEARCHPLAT_CACHE}/testssl-3.2.1" deb="${SEARCHPLAT_CACHE}/downloads/testssl.sh_3.2.1+dfsg-1_all.deb"
  if [ ! -x "${dir}/usr/bin/testssl" ]; then
    mkdir -p "${SEARCHPLAT_CACHE}/downloads"
    if ! echo "${TESTSSL_DEB_SHA256}  ${deb}" | sha256sum -c --quiet >/dev/null 2>&1; then
      log "downloading testssl.sh 3.2.1 (Debian 13 package)"
      curl -fsSL --retry 3 -o "${deb}.part" "$TESTSSL_DEB_URL" || die "could not download ${TESTSSL_DEB_URL}"
      echo "${TESTSSL_DEB_SHA256}  ${deb}.part" | sha256sum -c --quiet || die "checksum mismatch for ${TESTSSL_DEB_URL}"
      mv "${deb}.part" "$deb"
    fi
    rm -rf "${dir}.tmp" && dpkg-deb -x "$deb" "${dir}.tmp" && rm -rf "$dir" && mv "${dir}.tmp" "$dir"
  fi
  export TESTSSL_BIN="${dir}/usr/bin/testssl" TESTSSL_INSTALL_DIR="${dir}/etc/testssl"
}

ensure_dockerd() {
  if docker info >/dev/null 2>&1; then return 0; fi
  log "starting dockerd (no Docker engine answered)"
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  local i
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "dockerd did not answer within 60 s; see /var/log/dockerd.log"
}

ensure_venv() {
  local stamp="${VENV}/.requirements.sha256"
  local want
  want="$(sha256sum "${PROJECT_ROOT}/requirements.txt" | cut -d' ' -f1)"
  if [ -x "${VENV}/bin/ansible-playbook" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  log "creating Python venv ${VENV} from requirements.txt"
  mkdir -p "${SEARCHPLAT_CACHE}"
  [ -x "${VENV}/bin/python" ] || python3 -m venv "${VENV}"
  "${VENV}/bin/pip" install -q --upgrade pip >/dev/null
  # Every package of requirements.txt or nothing: a failed install stops
  # here (and leaves no stamp), instead of a venv whose missing test tools
  # (opensearch-py, ssh-audit, sslyze) would only show up later. pip's
  # "Ignored the following versions" notice is dropped from the output only.
  local out rc=0
  out="$("${VENV}/bin/pip" install -q -r "${PROJECT_ROOT}/requirements.txt" 2>&1)" || rc=$?
  if [ -n "$out" ]; then sed '/^ERROR: Ignored the following versions/d' <<<"$out" >&2; fi
  [ "$rc" -eq 0 ] || die "pip install -r requirements.txt failed (exit ${rc}); see the output above"
  "${VENV}/bin/pip" check >&2 || die "the venv's packages conflict (pip check); fix requirements.txt"
  "${VENV}/bin/ansible-playbook" --version >/dev/null || die "venv install failed"
  echo "$want" >"$stamp"
}

base_image_tag() {
  # The tag is the hash of the recipe: change the package list, suite or
  # mirror file and a new image is built; otherwise the cached one is reused.
  {
    echo "$BASE_IMAGE_PACKAGES $BASE_IMAGE_SUITE"
    cat /etc/apt/sources.list.d/debian.sources 2>/dev/null || true
    sed -n '/^build_base_image()/,/^}/p' "${BASH_SOURCE[0]}"
  } | sha256sum | cut -c1-12
}

base_image() { echo "${BASE_IMAGE_REPO}:$(base_image_tag)"; }

build_base_image() {
  local image="$1"
  local mirror rootfs
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs="$(mktemp -d "${SEARCHPLAT_CACHE}/rootfs.XXXXXX")"
  log "building base image ${image} (debootstrap ${BASE_IMAGE_SUITE}, about a minute)"
  debootstrap --variant=minbase --include="${BASE_IMAGE_PACKAGES}" "${BASE_IMAGE_SUITE}" "$rootfs" "$mirror" >"${SEARCHPLAT_CACHE}/debootstrap.log" 2>&1 \
    || { rm -rf "$rootfs"; die "debootstrap failed; see ${SEARCHPLAT_CACHE}/debootstrap.log"; }
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
    rm -f "$rootfs/etc/apt/sources.list"
  fi
  # Every container must get its own identity: no shared SSH host keys or
  # machine-id baked into the image (the lab generates them per host).
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  : >"$rootfs/etc/machine-id"
  # Like an installer or cloud-init, generate host keys on first boot.
  cat >"$rootfs/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
  ln -s /etc/systemd/system/ssh-hostkeys.service "$rootfs/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$image" >/dev/null
  rm -rf "$rootfs"
  docker image inspect "$image" >/dev/null 2>&1 || die "docker import of ${image} failed"
}

ensure_base_image() {
  local image
  image="$(base_image)"
  docker image inspect "$image" >/dev/null 2>&1 || build_base_image "$image"
  export SEARCHPLAT_BASE_IMAGE="$image"
}

# The lab's host image: the base image plus the Debian packages that the
# every-host roles install on every host (scripts/lib/lab_image.yml reads
# them from the roles), like an operator's golden image. The lab's nine
# hosts then do not each run the same ~85 s of dpkg work on 2 cores; site.yml
# still configures everything on them. Molecule and `scripts/bench converge`
# start from the bare base image, so every role's installation is still
# tested from scratch. Tagged with the hash of the base image, the roles'
# package inputs, the recipe, and the ISO week (pending updates are picked
# up weekly).
LAB_IMAGE_REPO="searchplat/debian12-lab"
lab_image_tag() {
  {
    echo "$SEARCHPLAT_BASE_IMAGE"
    date -u +%G-W%V
    cat "${PROJECT_ROOT}/scripts/lib/lab_image.yml" \
      "${PROJECT_ROOT}"/roles/{baseline,hardening}/{defaults,vars}/main.yml \
      "${PROJECT_ROOT}"/roles/{firewall,fail2ban}/defaults/main.yml
  } | sha256sum | cut -c1-12
}

build_lab_image() {
  local image="$1" builder="sp-lab-image-build"
  log "building lab image ${image} (every-host packages on the base image, about two minutes)"
  docker rm -f "$builder" >/dev/null 2>&1 || true
  mkdir -p "${SEARCHPLAT_CACHE}/apt/lab-image"
  docker run -d --name "$builder" -v "${SEARCHPLAT_CACHE}/apt/lab-image:/var/cache/apt/archives" \
    "$SEARCHPLAT_BASE_IMAGE" sleep infinity >/dev/null
  if ! ANSIBLE_CONFIG="${PROJECT_ROOT}/ansible.cfg" "${VENV}/bin/ansible-playbook" \
      -i "${builder}," -e ansible_connection=community.docker.docker -e ansible_python_interpreter=/usr/bin/python3 \
      "${PROJECT_ROOT}/scripts/lib/lab_image.yml" >"${SEARCHPLAT_CACHE}/lab-image.log" 2>&1; then
    docker rm -f "$builder" >/dev/null 2>&1
    die "building the lab image failed; see ${SEARCHPLAT_CACHE}/lab-image.log"
  fi
  docker commit -c 'CMD ["/lib/systemd/systemd"]' "$builder" "$image" >/dev/null
  docker rm -f "$builder" >/dev/null
}

ensure_lab_image() {
  local image
  image="${LAB_IMAGE_REPO}:$(lab_image_tag)"
  docker image inspect "$image" >/dev/null 2>&1 || build_lab_image "$image"
  export SEARCHPLAT_LAB_IMAGE="$image"
}

activate_venv() {
  # shellcheck disable=SC1091
  source "${VENV}/bin/activate"
  export ANSIBLE_CONFIG="${PROJECT_ROOT}/ansible.cfg"
  use_mitogen
}

# Mitogen for Ansible (requirements.txt) runs the plays over SSH (the lab's
# converges, the day-2 playbooks the acceptance suite runs): one persistent
# Python per host instead of a new interpreter and module upload per task,
# which halved the lab's converge time on 2 cores (docs/benchmarks.md). It
# is a strategy plugin, chosen here by environment and not in ansible.cfg,
# so the product needs no Mitogen: users opt in the same way (README).
# ANSIBLE_STRATEGY=linear turns it off. Connections Mitogen does not handle
# (Molecule's community.docker.docker) run as plain Ansible; scripts/test
# also runs Molecule and the controller tests with the linear strategy, so
# every role is still tested on stock Ansible.
use_mitogen() {
  local dir
  dir="$(echo "${VENV}"/lib/python3*/site-packages/ansible_mitogen/plugins/strategy)"
  [ -d "$dir" ] || return 0
  export ANSIBLE_STRATEGY_PLUGINS="$dir"
  export ANSIBLE_STRATEGY="${ANSIBLE_STRATEGY:-mitogen_linear}"
}

ensure_lab_kernel() {
  # The lab's hosts are containers sharing this machine's kernel, whose
  # kernel-wide sysctls they cannot set (/proc/sys is read-only inside). Set
  # here, on the shared kernel, exactly what the hardening role applies on a
  # real host (read from its defaults: one source), plus what OpenSearch
  # needs. Per-network-namespace ones (net.ipv4.conf.*, ...) are set per
  # container at creation instead (.config/molecule/config.yml).
  local name value cur
  while IFS='=' read -r name value; do
    cur="$(sysctl -n "$name" 2>/dev/null)" || { log "lab kernel: ${name} does not exist here, skipped"; continue; }
    [ "$cur" = "$value" ] && continue
    sysctl -q -w "${name}=${value}" >/dev/null 2>&1 || log "lab kernel: could not set ${name}=${value} (left at ${cur})"
  done < <("${VENV}/bin/python" - "${PROJECT_ROOT}/roles/hardening/defaults/main.yml" <<'PY'
import sys, yaml
for s in yaml.safe_load(open(sys.argv[1])).get("hardening_sysctl_settings", []):
    if not s["name"].startswith(("net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.tcp_", "net.ipv4.icmp_")):
        print(f"{s['name']}={s['value']}")
PY
)
  cur="$(sysctl -n vm.max_map_count)"
  if [ "$cur" -lt 262144 ]; then sysctl -q -w vm.max_map_count=262144; fi
  # New network namespaces (every container) start from the kernel's
  # defaults, like a freshly booted host, instead of copying this machine's
  # IPv4 settings (Docker turned forwarding on here). Setting
  # net.ipv4.ip_forward per container instead would reset
  # conf.all.accept_redirects to 1 whenever Docker happens to apply it last.
  [ "$(sysctl -n net.core.devconf_inherit_init_net 2>/dev/null)" = 2 ] \
    || sysctl -q -w net.core.devconf_inherit_init_net=2 >/dev/null 2>&1 \
    || log "lab kernel: could not set net.core.devconf_inherit_init_net=2"
}

# Artifacts the lab installs from the controller (OpenSearch and its
# security plugin from Maven Central, 2.19.3 and the upgrade target 2.19.4
# side by side): the `lab_downloads` list of
# inventories/lab/group_vars/all/opensearch.yml, fetched once into
# ${SEARCHPLAT_CACHE}/downloads and checked against its pinned SHA-256.
ensure_lab_downloads() {
  local url sha file
  mkdir -p "${SEARCHPLAT_CACHE}/downloads"
  while read -r url sha; do
    file="${SEARCHPLAT_CACHE}/downloads/${url##*/}"
    echo "${sha}  ${file}" | sha256sum -c --quiet >/dev/null 2>&1 && continue
    log "downloading ${url##*/}"
    curl -fsSL --retry 3 -o "${file}.part" "$url" || die "could not download ${url}"
    echo "${sha}  ${file}.part" | sha256sum -c --quiet || die "checksum mismatch for ${url}"
    mv "${file}.part" "$file"
  done < <(python3 -c '
import sys, yaml
for d in yaml.safe_load(open(sys.argv[1]))["lab_downloads"]:
    print(d["url"], d["sha256"])' "${PROJECT_ROOT}/inventories/lab/group_vars/all/opensearch.yml")
}

# versitygw (Apache-2.0), an S3-compatible server: the stand-in for a cloud
# bucket in the backup tier's tests (the offsite copy of the restic
# repositories; roles/backup_server's Molecule scenario). No release binary
# is reachable from here, so it is built once from the Go module proxy (the
# command is the module's cmd/versitygw package: the module root has none)
# with the Go toolchain in /usr/local/go (about 2-3 minutes on 2 cores, 84 MB)
# into ${SEARCHPLAT_CACHE}/bin/versitygw-<version>; the module and build
# caches live under ${SEARCHPLAT_CACHE}/go, so a version bump downloads only
# what changed. GOTOOLCHAIN=local: never fetch another Go toolchain. Its
# POSIX backend needs a file system with user xattrs (a container's overlay
# file system has them). Exports VERSITYGW_BIN.
VERSITYGW_VERSION="v1.8.0"
ensure_versitygw() {
  local bin="${SEARCHPLAT_CACHE}/bin/versitygw-${VERSITYGW_VERSION}"
  local go="${SEARCHPLAT_GO:-/usr/local/go/bin/go}" gobin
  if [ ! -x "$bin" ]; then
    [ -x "$go" ] || go="$(command -v go)" || die "no Go toolchain (/usr/local/go/bin/go or go on PATH) to build versitygw"
    mkdir -p "${SEARCHPLAT_CACHE}/bin" "${SEARCHPLAT_CACHE}/go"
    gobin="$(mktemp -d "${SEARCHPLAT_CACHE}/bin/.versitygw.XXXXXX")"
    log "building versitygw ${VERSITYGW_VERSION} with go install (about 3 minutes on 2 cores)"
    if ! env GOBIN="$gobin" GOPATH="${SEARCHPLAT_CACHE}/go" GOCACHE="${SEARCHPLAT_CACHE}/go/cache" \
        GOMODCACHE="${SEARCHPLAT_CACHE}/go/pkg/mod" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
        "$go" install "github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}" >"${SEARCHPLAT_CACHE}/versitygw-build.log" 2>&1; then
      rm -rf "$gobin"
      die "go install github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION} failed; see ${SEARCHPLAT_CACHE}/versitygw-build.log"
    fi
    mv "${gobin}/versitygw" "$bin" && rmdir "$gobin"
  fi
  export VERSITYGW_BIN="$bin"
}

bootstrap_all() {
  ensure_host_packages
  ensure_testssl
  ensure_lab_downloads
  ensure_dockerd
  ensure_venv
  ensure_base_image
  activate_venv
  ensure_lab_kernel
}

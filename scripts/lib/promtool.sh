#!/usr/bin/env bash
# shellcheck shell=bash
# promtool and amtool on the controller without installing Debian's
# prometheus / prometheus-alertmanager packages (which would start the
# services on this machine): `apt-get download` the .deb into the cache and
# unpack it with `dpkg-deb -x`. Cached under
# ${SEARCHPLAT_CACHE:-/var/cache/searchplat}/downloads; a second call costs
# nothing. Source this file, then:
#
#   ensure_promtool    # prints the path of promtool (also exports PROMTOOL)
#   ensure_amtool      # prints the path of amtool (also exports AMTOOL)
#
# Or run it: `scripts/lib/promtool.sh promtool|amtool` prints the path.
# tests/controller/test_alert_rules.py calls it that way.

_sp_tool_cache="${SEARCHPLAT_CACHE:-/var/cache/searchplat}/downloads"

# _sp_unpack_tool PACKAGE BINARY: the path of usr/bin/BINARY from PACKAGE.
_sp_unpack_tool() {
  local pkg="$1" bin="$2"
  local root="${_sp_tool_cache}/${pkg}"
  if [ -x "${root}/usr/bin/${bin}" ]; then
    echo "${root}/usr/bin/${bin}"
    return 0
  fi
  mkdir -p "${_sp_tool_cache}"
  local work
  work="$(mktemp -d "${_sp_tool_cache}/.${pkg}.XXXXXX")"
  (
    cd "${work}" || exit 1
    if ! apt-get download "${pkg}" >/dev/null 2>&1; then
      # Package lists may be missing or stale on a fresh machine.
      apt-get update -qq >/dev/null 2>&1 || true
      apt-get download "${pkg}" >/dev/null
    fi
  ) || { rm -rf "${work}"; echo "apt-get download ${pkg} failed" >&2; return 1; }
  local deb
  deb="$(ls "${work}"/"${pkg}"_*.deb 2>/dev/null | head -n1)"
  [ -n "${deb}" ] || { rm -rf "${work}"; echo "no ${pkg} .deb downloaded" >&2; return 1; }
  mkdir -p "${work}/root"
  dpkg-deb -x "${deb}" "${work}/root"
  [ -x "${work}/root/usr/bin/${bin}" ] || { rm -rf "${work}"; echo "${pkg} has no usr/bin/${bin}" >&2; return 1; }
  # Publish atomically: a concurrent caller sees either nothing or the whole tree.
  rm -rf "${root}"
  mv "${work}/root" "${root}"
  cp "${deb}" "${_sp_tool_cache}/"
  rm -rf "${work}"
  echo "${root}/usr/bin/${bin}"
}

ensure_promtool() {
  PROMTOOL="$(_sp_unpack_tool prometheus promtool)" || return 1
  export PROMTOOL
  echo "${PROMTOOL}"
}

ensure_amtool() {
  AMTOOL="$(_sp_unpack_tool prometheus-alertmanager amtool)" || return 1
  export AMTOOL
  echo "${AMTOOL}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -o errexit -o nounset -o pipefail
  case "${1:-promtool}" in
    promtool) ensure_promtool ;;
    amtool) ensure_amtool ;;
    *) echo "usage: $0 [promtool|amtool]" >&2; exit 2 ;;
  esac
fi

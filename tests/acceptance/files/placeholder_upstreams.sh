#!/usr/bin/env bash
# placeholder_upstreams.sh INVENTORY [HOSTS] [PORT]: installs placeholder_app.py
# on the app servers (HOSTS, default app_servers) and starts it with
# start_placeholder.sh, which does nothing where something already serves
# PORT (default 8000; the real app). The one way the placeholder upstream
# reaches a host: tests/acceptance/test_loadbalancers.py and scripts/bench lb
# both call this. Runs on the controller.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
inventory="$1" hosts="${2:-app_servers}" port="${3:-8000}"
dir=/usr/local/lib/searchplat-tests
ansible "$hosts" -i "$inventory" -b -m ansible.builtin.file -a "path=${dir} state=directory mode=0755"
ansible "$hosts" -i "$inventory" -b -m ansible.builtin.copy \
  -a "src=${here}/placeholder_app.py dest=${dir}/placeholder_app.py mode=0755"
ansible "$hosts" -i "$inventory" -b -m ansible.builtin.script \
  -a "${here}/start_placeholder.sh {{ private_address }} ${port} {{ inventory_hostname }}"

#!/bin/sh
# Starts the placeholder upstream (placeholder_app.py, installed next to
# this script's target path) as a systemd unit that lasts until the next
# boot or 3 hours, unless something already listens on ADDRESS:PORT (the
# real app). Used by tests/acceptance/test_loadbalancers.py and
# scripts/bench lb. Run as root:  start_placeholder.sh ADDRESS PORT NAME
set -eu
address="$1" port="$2" name="$3"
unit=searchplat-placeholder-app
if timeout 2 bash -c "</dev/tcp/${address}/${port}" 2>/dev/null; then
  echo "already serving ${address}:${port}"
  exit 0
fi
cat >/run/systemd/system/${unit}.service <<UNIT
[Unit]
Description=Placeholder upstream for the load-balancer tests
[Service]
DynamicUser=yes
ExecStart=/usr/bin/python3 /usr/local/lib/searchplat-tests/placeholder_app.py ${address} ${port} ${name}
RuntimeMaxSec=3h
UNIT
systemctl daemon-reload
systemctl start ${unit}
i=0
until timeout 2 bash -c "</dev/tcp/${address}/${port}" 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 30 ] || { echo "placeholder did not start"; exit 1; }
  sleep 1
done
echo "started ${unit} on ${address}:${port}"

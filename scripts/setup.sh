#!/usr/bin/env bash
# Installs what the controller, the emulated plant and the tests need on a fresh Debian machine.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if ((${#need_apt[@]})); then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
    # The Debian packages may start system services; the tests start their own servers.
    for svc in influxdb victoria-metrics; do
        $SUDO service "$svc" stop >/dev/null 2>&1 || true
    done
fi

echo "setup: installing Python packages"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[dev]"
echo "setup: done"

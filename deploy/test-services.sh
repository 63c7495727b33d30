#!/usr/bin/env bash
# What the test suite needs beyond Python, installed once on a fresh machine:
#   - mosquitto (Debian package); the tests start their own instances on free ports
#   - influxd 2.x, built from source into a cache outside the repository
# The pytest fixtures start and stop these processes; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# Debian's Chromium for the dashboard tests (tests/browser, driven by Playwright: never
# `playwright install`, which downloads its own browsers).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} from Debian's packages" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
    # Debian starts a system mosquitto on 1883; the tests use their own instances.
    $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

if [ -f deploy/influxdb/build-influxd.sh ]; then
    influxd_path=$(bash deploy/influxdb/build-influxd.sh)
    mkdir -p .cache
    echo "$influxd_path" > .cache/influxd-path
    echo "influxd: $influxd_path" >&2
fi

# Deploy artefact validators (tests/deploy): Docker Compose v2 and kustomize, built once
# from the Go module proxy (they validate deploy/docker-compose.yml and deploy/kubernetes
# without a Docker engine or a cluster), and systemd-analyze for the unit files.
# hadolint and kubernetes-validate come from PyPI with the test extras.
bash tests/deploy/build-tools.sh
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "installing systemd (for systemd-analyze) from Debian's packages" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends systemd >&2
fi

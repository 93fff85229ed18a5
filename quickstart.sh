#!/usr/bin/env bash
# The README's two Quick start commands, for a fresh Debian 12 machine, as root:
#
#   ./quickstart.sh run    set everything up, load the demo county, start the service
#   ./quickstart.sh test   set everything up, then run ruff, mypy and the whole test suite
#
# Both are safe to run again: each step checks what is already there.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
HERE=$(pwd)

# Debian packages the service and its tests need at run time.
SYSTEM_PACKAGES=(
  python3 python3-venv python3-dev build-essential  # the virtual environment and wheels that compile
  ffmpeg espeak-ng espeak-ng-data                   # audio production and the offline speech engine
  postgresql                                        # the tests start a throwaway cluster of their own
  chromium fonts-wqy-microhei                       # browser tests; Chinese renders as boxes without the font
  debootstrap                                       # provisions the Asterisk 22 sandbox (Debian sid root)
  alsa-utils                                        # aplay: the sound-card sink (tests play to ALSA's null device)
  sqlite3 ca-certificates procps util-linux         # sqlite3 CLI for inspection; runuser, mountpoint, pkill
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root: it installs Debian packages and starts the Asterisk sandbox (sudo $0 $*)"
}

install_system_packages() {
  local missing=()
  for package in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "system packages: all present"
    return
  fi
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_interpreter() {
  # Any python3 >= 3.11 on PATH (Debian 12's is 3.11); a newer one is fine too.
  local candidate
  for candidate in python3 python3.11 python3.12 python3.13; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  die "no Python 3.11 or newer found"
}

install_python_environment() {
  local stamp=.venv/.cunxiang-installed fingerprint
  fingerprint=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$fingerprint" ]; then
    say "virtual environment .venv: up to date"
    return
  fi
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$(python_interpreter)" -m venv .venv
  fi
  say "installing the project into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,lint]'
  echo "$fingerprint" > "$stamp"
}

provision_asterisk() {
  if [ "${CUNXIANG_ASTERISK:-sandbox}" != "sandbox" ]; then
    say "Asterisk: CUNXIANG_ASTERISK=${CUNXIANG_ASTERISK}, not provisioning the sandbox"
    return
  fi
  say "Asterisk sandbox: provisioning (once per machine, ~1 min and ~500 MB the first time)"
  deploy/asterisk/sandbox.sh provision >/dev/null
}

compile_project() {
  # Byte-compile our own modules once: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every
  # `cunxiang` process a test starts would otherwise compile 30,000 lines again (about 1.5 s each).
  .venv/bin/python -m compileall -q -j 0 -x '/(\.venv|data|build)/' . >/dev/null
}

set_up() {
  need_root "$@"
  install_system_packages
  install_python_environment
  provision_asterisk
  compile_project
}

run_service() {
  set_up run
  local cunxiang=.venv/bin/cunxiang
  say "database"
  "$cunxiang" init
  say "demo county"
  "$cunxiang" demo
  say "hotline prompts"
  "$cunxiang" prompts install
  say "starting 村响"
  exec "$cunxiang" serve
}

run_tests() {
  set_up test
  say "ruff"
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  say "mypy"
  .venv/bin/mypy
  say "pytest (SQLite and a throwaway PostgreSQL; the Asterisk sandbox; Chromium), ${CUNXIANG_TEST_WORKERS:-6} workers"
  # Most of the long tests wait on real time (prompts played, items on air), so more workers than
  # cores pays: at four workers the slow tests kept under one core of two busy; six keep about 1.3
  # busy (docs/architecture.md, Tests). Each worker has its own Asterisk instance and PostgreSQL cluster.
  .venv/bin/pytest -n "${CUNXIANG_TEST_WORKERS:-6}" "$@"
}

case "${1:-}" in
  run) shift; run_service "$@" ;;
  test) shift; run_tests "$@" ;;
  *) echo "usage: $0 run | test [pytest arguments]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Set up and run, on a fresh Debian / Raspberry Pi OS machine. Safe to run again.
#   ./dev.sh demo    set up, then run the daemon on its embedded default: a simulated panel
#   ./dev.sh test    set up, then run the test suite (real kamailio, baresip, sipp, espeak-ng, ALSA)
#   ./dev.sh bench   set up, then run the benchmarks and write docs/benchmarks.md
#   ./dev.sh setup   only set up
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  espeak-ng                 # prompt synthesis
  portaudio19-dev           # builds pyaudio
  libasound2-dev alsa-utils libasound2-plugins
  baresip-core              # the resident's phone in the demo and tests
  kamailio                  # registrar/proxy in the tests
  kamailio-tls-modules openssl  # SIP over TLS in the tests: kamailio tls.so, throwaway certificates
  sip-tester                # sipp: scripted SIP peers and load
  sox                       # measures and converts audio in tests
  pulseaudio pulseaudio-utils  # the paced virtual sound card (a room with a clock) for tests and the demo
  mosquitto                 # the MQTT broker the tests start
  iproute2 ethtool          # the test suite's own network namespaces and impaired link
  systemd shellcheck        # systemd-analyze verify/security on the unit; lint of the install script
  gcc python3-dev python3-venv
)
VENV=${INTERCOM_VENV:-.venv}

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

setup_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dev.sh: installing Debian packages: ${missing[*]}"
    need_root apt-get update -qq
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

setup_venv() {
  local py=${PYTHON:-python3}
  [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
  local stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e ".[test,bench]"
    touch "$stamp"
  fi
}

setup() { setup_apt; setup_venv; }

case "${1:-}" in
  demo)  setup; shift; exec "$VENV/bin/intercomd" demo "$@" ;;
  test)  setup; shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) setup; shift; exec "$VENV/bin/python" -m benchmarks "$@" ;;
  setup) setup ;;
  *) echo "usage: ./dev.sh demo|test|bench|setup [args]"; exit 64 ;;
esac

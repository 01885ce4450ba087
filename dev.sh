#!/usr/bin/env bash
# Set up and run, on a fresh Debian / Raspberry Pi OS machine. Safe to run again.
#   ./dev.sh demo    set up, then run the daemon on its embedded default: a simulated panel
#   ./dev.sh test    set up, then run the test suite (real kamailio, baresip, sipp, espeak-ng, ALSA)
#   ./dev.sh bench   set up, then run the benchmarks and write docs/benchmarks.md
#   ./dev.sh setup   only set up
#   ./dev.sh build-pjsua2   set up, then build pjsua2 from pjproject's source (cached; packaging/pjsua2/build.sh)
#   ./dev.sh test-arm64     the whole suite in a Debian arm64 chroot under qemu-user (root; slow: ~30+ min cold)
#
# pjsua2: demo, test and bench run on pjsua2 built from pjproject's source (what a Raspberry Pi runs; cached
# outside the clone by its inputs), put on PYTHONPATH. The PyPI wheel is not used: no sound device, 4 calls.
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
  swig g++ make patch libssl-dev libopus-dev time  # builds pjsua2 from source (packaging/pjsua2/build.sh)
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
  local stamp
  stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e ".[test,bench]"
    # An older checkout installed the PyPI wheel here: one pjsua2 only, the source build.
    "$VENV/bin/pip" uninstall -q -y pjsua2-python >/dev/null 2>&1 || true
    touch "$stamp"
  fi
}

setup() { setup_apt; setup_venv; }

build_pjsua2() { PYTHON="$VENV/bin/python" packaging/pjsua2/build.sh "$@"; }

# Puts the source build on PYTHONPATH (building it on the first run) and says which pjsua2 loads, on stderr.
use_pjsua2() {
  local dir
  dir=$(build_pjsua2 | tail -n1)
  export PYTHONPATH="$dir${PYTHONPATH:+:$PYTHONPATH}"
  "$VENV/bin/python" -c 'import pjsua2, sys; print("dev.sh: pjsua2 from", pjsua2.__file__, file=sys.stderr)'
}

# Run as the service runs: without real-time scheduling. pjmedia's ALSA threads ask for SCHED_RR at the highest
# priority; root gets it, the service does not (User=intercom, RestrictRealtime=yes in systemd/intercom.service).
# Under root, a real-time audio thread spinning while the card opened starved the paced card's PulseAudio on a
# 2-core machine and hung talk tests. So as root, CAP_SYS_NICE is dropped for what dev.sh runs (RLIMIT_RTPRIO is 0).
as_service() {
  if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    exec setpriv --bounding-set -sys_nice --inh-caps -sys_nice -- "$@"
  fi
  exec "$@"
}

case "${1:-}" in
  demo)  setup; shift; use_pjsua2; as_service "$VENV/bin/intercomd" demo "$@" ;;
  test)  setup; shift; use_pjsua2; as_service "$VENV/bin/python" -m pytest "$@" ;;
  bench) setup; shift; use_pjsua2; as_service "$VENV/bin/python" -m benchmarks "$@" ;;
  setup) setup ;;
  build-pjsua2) setup; shift; build_pjsua2 "$@" ;;
  test-arm64) shift; exec packaging/arm64/test-arm64.sh "$@" ;;
  *) echo "usage: ./dev.sh demo|test|bench|setup|build-pjsua2|test-arm64 [args]"; exit 64 ;;
esac

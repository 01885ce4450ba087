#!/usr/bin/env bash
# Install intercomd as a systemd service on a fresh Raspberry Pi OS (Bookworm, arm64 or armhf) or Debian 12.
# Run as root from a checkout; the README's "Installing on a Raspberry Pi" describes these steps in this order.
#
#     sudo systemd/install.sh                     install or upgrade, enable (not start)
#     sudo START=1 systemd/install.sh             ... and (re)start it now
#     sudo DESTDIR=/tmp/root systemd/install.sh   into a scratch root (tests, image builds): no apt, no
#                                                 systemctl start; the user goes into DESTDIR/etc/passwd
#
# Idempotent: a second run changes nothing but what changed in the checkout. An existing
# /etc/intercom/intercom.toml is never overwritten. systemd/uninstall.sh removes everything this installs.
#
# Environment: DESTDIR (scratch root), PYTHON (default python3), START=1, PJSUA2_CACHE (where pjsua2 is built
# and cached; default /var/cache/intercom-build/pjsua2, removed by uninstall.sh), INTERCOM_SKIP_APT=1.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PREFIX=/opt/intercom
VENV=$PREFIX/.venv
CONFIG=/etc/intercom/intercom.toml
UNIT=/etc/systemd/system/intercom.service
BUILD_CACHE=/var/cache/intercom-build  # uninstall.sh removes it
MARKER=$PREFIX/.install-state          # what this script created that uninstall.sh must remove
PYTHON=${PYTHON:-python3}

APT_PACKAGES=(
  python3 python3-venv python3-dev       # the venv
  build-essential swig patch libssl-dev libopus-dev libasound2-dev time  # pjsua2 from pjproject's source
  portaudio19-dev                        # PyAudio (built by pip: no ARM wheel)
  alsa-utils                             # aplay -l / arecord -l to find the sound card's name
  espeak-ng                              # prompt synthesis
)
APT_OPTIONAL=(python3-lgpio)             # gpiozero's pin factory on Raspberry Pi OS (not in plain Debian)

log() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
[ -z "$DESTDIR" ] || [ -d "$DESTDIR" ] || die "DESTDIR=$DESTDIR does not exist"
# useradd/groupadd/usermod edit DESTDIR/etc/{passwd,group,shadow,gshadow} with --prefix.
prefix_opt=()
[ -z "$DESTDIR" ] || prefix_opt=(--prefix "$DESTDIR")
group_id() { awk -F: -v g="$1" '$1 == g {print $3}' "$DESTDIR/etc/group"; }
has_group() { [ -n "$(group_id "$1")" ]; }
has_user() { awk -F: -v u="$1" '$1 == u {found = 1} END {exit !found}' "$DESTDIR/etc/passwd"; }

# 1. Debian packages (not into a scratch root: apt works on the running system only).
if [ -z "$DESTDIR" ] && [ -z "${INTERCOM_SKIP_APT:-}" ]; then
  log "1/7 apt packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  for p in "${APT_OPTIONAL[@]}"; do
    if apt-cache show "$p" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
    fi
  done
else
  log "1/7 apt packages: skipped (scratch root or INTERCOM_SKIP_APT)"
fi

# 2. Groups and the service user. gpio exists on Raspberry Pi OS but not on plain Debian; the unit's
#    SupplementaryGroups= refuses to start when a group is missing, so make it (and remember we did).
log "2/7 the intercom user, in the gpio and audio groups"
mkdir -p "$DESTDIR$PREFIX"
chmod 0755 "$DESTDIR$PREFIX"
touch "$DESTDIR$MARKER"
for group in gpio audio; do
  if ! has_group "$group"; then
    groupadd "${prefix_opt[@]}" --system "$group"
    echo "created-group $group" >>"$DESTDIR$MARKER"
  fi
done
if ! has_user intercom; then
  useradd "${prefix_opt[@]}" --system --user-group --home-dir /var/lib/intercom --no-create-home \
    --shell /usr/sbin/nologin --comment "building intercom daemon" intercom
fi
usermod "${prefix_opt[@]}" --append --groups gpio,audio intercom

# 3. The code, in its own venv. --system-site-packages: on Raspberry Pi OS, gpiozero's lgpio pin factory
#    comes from Debian's python3-lgpio. pjsua2 is not installed by pip (no ARM wheel): step 4 builds it.
log "3/7 the venv $VENV and the daemon"
if [ ! -x "$DESTDIR$VENV/bin/python" ]; then
  "$PYTHON" -m venv --system-site-packages "$DESTDIR$VENV"
fi
# Reinstalled only when the checkout's code changed (a reinstall rewrites every .pyc: not idempotent).
src_hash=$(cd "$SRC" && find pyproject.toml daemon hw -name __pycache__ -prune -o -type f -print | LC_ALL=C sort \
  | xargs sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$DESTDIR$PREFIX/.installed-source" 2>/dev/null)" != "$src_hash" ]; then
  "$DESTDIR$VENV/bin/pip" install --quiet --disable-pip-version-check "$SRC"
  echo "$src_hash" >"$DESTDIR$PREFIX/.installed-source"
else
  log "the daemon in $VENV is this checkout's already"
fi
install -m 0644 "$SRC/README.md" "$DESTDIR$PREFIX/README.md"  # the unit's Documentation= points here

# 4. pjsua2 from pjproject's source (packaging/pjsua2/build.sh: cached by its inputs, so a second run only
#    copies), into the venv's site-packages.
log "4/7 pjsua2 from pjproject's source (cached in ${PJSUA2_CACHE:-$BUILD_CACHE/pjsua2})"
site=$("$DESTDIR$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYTHON="$DESTDIR$VENV/bin/python" PJSUA2_CACHE="${PJSUA2_CACHE:-$DESTDIR$BUILD_CACHE/pjsua2}" \
  "$SRC/packaging/pjsua2/build.sh" --install-into "$site" >/dev/null
# pjsua2.py is 570 KB of SWIG-generated Python. The unit sets PYTHONDONTWRITEBYTECODE=1 (/opt is read-only), so
# without a .pyc made here every start compiled it again: 0.16 s on x86, several times that on a Pi, and 19 MB of
# resident memory for the daemon's life (issue 18). checked-hash: the same bytes at every install (a second install
# changes nothing), and still checked against the source at import.
"$DESTDIR$VENV/bin/python" -m compileall -q --invalidation-mode checked-hash -d "${site#"$DESTDIR"}" \
  "$site/pjsua2.py" "$site/pjsua2_build_info.py" >/dev/null

# 5. The config: root writes it, the daemon's group reads it (it may hold the SIP password), others nothing.
#    The example is not the demo's: real pins, no 127.0.0.1 phones, and codes check-config refuses.
log "5/7 the config $CONFIG"
install -d -m 0755 "$DESTDIR/etc/intercom"
if [ ! -e "$DESTDIR$CONFIG" ]; then
  install -m 0640 -o root -g "$(group_id intercom)" "$SRC/systemd/intercom.example.toml" "$DESTDIR$CONFIG"
  log "wrote the example config: edit it (residents, codes, pins), then check it with"
  log "  sudo -u intercom $VENV/bin/intercomd --config $CONFIG check-config"
else
  log "kept the existing $CONFIG"
fi

# 6. The unit, enabled (systemctl --root works on a scratch root without a running systemd).
log "6/7 the unit $UNIT"
install -D -m 0644 "$SRC/systemd/intercom.service" "$DESTDIR$UNIT"
if [ -n "$DESTDIR" ]; then
  systemctl --root="$DESTDIR" --quiet enable intercom.service
else
  if [ -d /run/systemd/system ]; then  # booted with systemd (not a chroot or an image build)
    systemctl daemon-reload
  fi
  systemctl --quiet enable intercom.service
fi

# 7. Start it, when asked.
if [ -n "${START:-}" ] && [ -z "$DESTDIR" ]; then
  log "7/7 restarting intercom"
  systemctl restart intercom.service
else
  log "7/7 not started (START=1 starts it)"
fi

log "done. Operators join the intercom group to use intercomctl: usermod -aG intercom NAME"
log "start: systemctl start intercom   logs: journalctl -u intercom -f"

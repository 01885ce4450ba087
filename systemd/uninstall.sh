#!/usr/bin/env bash
# Remove everything systemd/install.sh installed: the service, the venv, the config, the daemon's state
# (history, visit log), cache and socket, the pjsua2 build cache, the intercom user and group, and the gpio
# group if install.sh created it. Debian packages stay (other software may use them).
#
#     sudo systemd/uninstall.sh
#     sudo DESTDIR=/tmp/root systemd/uninstall.sh   from a scratch root install.sh wrote into
#
# The config and the visit history go too: copy /etc/intercom and /var/lib/intercom first to keep them.
set -euo pipefail

DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PREFIX=/opt/intercom
MARKER=$PREFIX/.install-state
UNIT=/etc/systemd/system/intercom.service

log() { echo "uninstall.sh: $*"; }
die() { echo "uninstall.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
[ -z "$DESTDIR" ] || [ -d "$DESTDIR" ] || die "DESTDIR=$DESTDIR does not exist"
prefix_opt=()
[ -z "$DESTDIR" ] || prefix_opt=(--prefix "$DESTDIR")
has_group() { awk -F: -v g="$1" '$1 == g {found = 1} END {exit !found}' "$DESTDIR/etc/group"; }
has_user() { awk -F: -v u="$1" '$1 == u {found = 1} END {exit !found}' "$DESTDIR/etc/passwd"; }

# 1. The service: stopped, disabled, its unit gone.
if [ -e "$DESTDIR$UNIT" ]; then
  if [ -n "$DESTDIR" ]; then
    systemctl --root="$DESTDIR" --quiet disable intercom.service
  else
    if [ -d /run/systemd/system ]; then
      systemctl stop intercom.service || true
    fi
    systemctl --quiet disable intercom.service
  fi
  rm -f "$DESTDIR$UNIT"
  log "removed the unit"
fi
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
fi

# 2. Groups install.sh created (read before /opt/intercom goes), then the user and its own group.
created_groups=()
if [ -f "$DESTDIR$MARKER" ]; then
  mapfile -t created_groups < <(awk '$1 == "created-group" {print $2}' "$DESTDIR$MARKER")
fi
if has_user intercom; then
  userdel "${prefix_opt[@]}" intercom
  log "removed the user intercom"
fi
if has_group intercom; then  # userdel keeps a user group that has other members
  groupdel "${prefix_opt[@]}" intercom
fi
for group in "${created_groups[@]}"; do
  if has_group "$group"; then
    groupdel "${prefix_opt[@]}" "$group"
    log "removed the group $group (install.sh created it)"
  fi
done
# shadow's tools keep the previous version of each file as passwd- etc.: it still names intercom.
for f in passwd group shadow gshadow; do
  if [ -f "$DESTDIR/etc/$f-" ] && [ -f "$DESTDIR/etc/$f" ]; then
    cp -p "$DESTDIR/etc/$f" "$DESTDIR/etc/$f-"
  fi
done

# 3. Files: the code and venv, the config, the daemon's state/cache/runtime directories (systemd's
#    StateDirectory= etc.), and the pjsua2 build cache install.sh used by default.
for path in "$PREFIX" /etc/intercom /var/lib/intercom /var/cache/intercom /run/intercom /var/cache/intercom-build; do
  if [ -e "$DESTDIR$path" ]; then
    rm -rf "$DESTDIR$path"
    log "removed $path"
  fi
done
log "done"

#!/usr/bin/env bash
# The whole test suite on arm64 (a Raspberry Pi's architecture), here: a Debian bookworm arm64 chroot run by
# qemu-user, with pjsua2 built inside from pjproject's source (the same packaging/pjsua2/build.sh, cached in the
# chroot) and the SIP peers (kamailio, baresip, sipp) installed inside. Run as root: `./dev.sh test-arm64`.
# Slow (measured: README "Installing on a Raspberry Pi"); pytest arguments pass through.
#
# Environment:
#   INTERCOM_ARM64_ROOT  the chroot (default: ${XDG_CACHE_HOME:-$HOME/.cache}/pi-intercom/arm64-bookworm); kept
#                        between runs: the chroot, its apt packages, its venv and its pjsua2 build are reused
#   DEBIAN_MIRROR        default: the host's first deb.debian.org-style mirror, else http://deb.debian.org/debian
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOT=${INTERCOM_ARM64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/pi-intercom/arm64-bookworm}
SUITE=bookworm

log() { echo "test-arm64: $(date -u +%H:%M:%S) $*" >&2; }
die() { echo "test-arm64: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot and mounts need it)"

host_mirror() {
  local uri
  uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | grep -oE 'https?://[^ ]+' | head -n1) || true
  echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${DEBIAN_MIRROR:-$(host_mirror)}

# 1. The host: qemu-user with binfmt registration, and debootstrap.
missing=()
for p in qemu-user-static binfmt-support debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing on the host: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 is not registered with binfmt_misc"

# 2. The chroot, once.
if [ ! -f "$ROOT/.debootstrap-done" ]; then
  log "debootstrap --arch=arm64 $SUITE $ROOT $MIRROR"
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  debootstrap --arch=arm64 "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $ROOT.debootstrap.log"
  touch "$ROOT/.debootstrap-done"
fi

mounts=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind-mount a host path into the chroot for this run
  mkdir -p "$ROOT$1"
  mountpoint -q "$ROOT$1" || { mount --bind "$1" "$ROOT$1"; mounts+=("$ROOT$1"); }
}
mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc"; mounts+=("$ROOT/proc"); }
bind /sys
bind /dev
bind /dev/pts
mkdir -p "$ROOT/dev/shm"
mountpoint -q "$ROOT/dev/shm" || { mount -t tmpfs shm "$ROOT/dev/shm"; mounts+=("$ROOT/dev/shm"); }
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# No service starts while apt installs into the chroot (kamailio would bind 5060 on the host's network).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
# A machine whose HTTPS goes through an inspecting proxy has its CA in /usr/local/share/ca-certificates.
mkdir -p "$ROOT/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true

in_chroot() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 PIP_CERT=/etc/ssl/certs/ca-certificates.crt INTERCOM_VENV=/opt/pi-intercom-venv \
    CI="${CI:-}" "$@"
}

# 3. The project, copied as it is in the work tree (tracked and untracked files, not ignored ones), next to
#    the vendored pjproject tarball where build.sh looks for it (../shared/vendor/).
log "copying the work tree into $ROOT/src"
rm -rf "$ROOT/src/pi-intercom"
mkdir -p "$ROOT/src/pi-intercom" "$ROOT/src/shared/vendor"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$ROOT/src/pi-intercom" -xf -
main_checkout=$(git -C "$REPO" rev-parse --path-format=absolute --git-common-dir | xargs dirname)
for vendor in "$REPO/../shared/vendor" "$main_checkout/../shared/vendor"; do
  if [ -d "$vendor" ]; then cp -u "$vendor"/pjproject-* "$ROOT/src/shared/vendor/"; break; fi
done
commit=$(git -C "$REPO" rev-parse --short HEAD)

# 4. Inside: apt packages and the venv (dev.sh setup, cached by its stamps), pjsua2 (cached by build.sh's key),
#    then the whole suite on the source build (the only pjsua2 on arm64).
log "in the chroot: ca-certificates, then ./dev.sh setup (apt, venv)"
in_chroot sh -c 'command -v update-ca-certificates >/dev/null || (apt-get update -qq && apt-get install -y -qq ca-certificates >/dev/null); update-ca-certificates >/dev/null'
in_chroot sh -c 'cd /src/pi-intercom && ./dev.sh setup'
log "in the chroot: ./dev.sh build-pjsua2"
t0=$(date +%s)
in_chroot sh -c 'cd /src/pi-intercom && ./dev.sh build-pjsua2' >/dev/null
log "pjsua2 ready in $(($(date +%s) - t0)) s"
info=$(cat "$ROOT"/root/.cache/pi-intercom/pjsua2/*/build-info.txt 2>/dev/null | tr '\n' ' ') || true
log "build: $info"
log "in the chroot: ./dev.sh test $* (commit $commit)"
t0=$(date +%s)
rc=0
in_chroot sh -c 'cd /src/pi-intercom && exec ./dev.sh test -p no:cacheprovider "$@"' sh "$@" || rc=$?
log "tests: exit $rc after $(($(date +%s) - t0)) s on $(in_chroot uname -m) (commit $commit, $(date -u +%F))"
exit "$rc"

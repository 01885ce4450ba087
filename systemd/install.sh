#!/bin/sh
# Install intercomd as a systemd service on Raspberry Pi OS / Debian. Run as root from a checkout:
#
#     sudo sh systemd/install.sh            # install or upgrade, enable (not start)
#     sudo START=1 sh systemd/install.sh    # ... and (re)start it now
#     DRY_RUN=1 sh systemd/install.sh       # print the steps, change nothing
#
# Idempotent: an existing /etc/intercom/intercom.toml and the intercom user are kept.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/intercom}
CONFIG=/etc/intercom/intercom.toml
UNIT=/etc/systemd/system/intercom.service
PYTHON=${PYTHON:-python3}

run() {
    if [ -n "${DRY_RUN:-}" ]; then
        echo "+ $*"
    else
        "$@"
    fi
}

if [ -z "${DRY_RUN:-}" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo sh $0)" >&2
    exit 77
fi

# 1. Groups and the service user. gpio exists on Raspberry Pi OS but not on plain Debian: the unit's
#    SupplementaryGroups= refuses to start when a group is missing, so make both.
for group in gpio audio; do
    getent group "$group" >/dev/null || run groupadd --system "$group"
done
if ! getent passwd intercom >/dev/null; then
    run useradd --system --user-group --home-dir /var/lib/intercom --no-create-home \
        --shell /usr/sbin/nologin --comment "building intercom daemon" intercom
fi
run usermod --append --groups gpio,audio intercom

# 2. The code, in its own venv. --system-site-packages: on a Pi, pjsua2 (built from pjproject) and
#    lgpio come from the system Python; pip has no ARM wheels for them.
run install -d -m 0755 "$PREFIX"
if [ ! -x "$PREFIX/.venv/bin/python" ]; then
    run "$PYTHON" -m venv --system-site-packages "$PREFIX/.venv"
fi
run "$PREFIX/.venv/bin/pip" install --quiet --upgrade "$SRC"
if [ -f "$SRC/README.md" ]; then
    run install -m 0644 "$SRC/README.md" "$PREFIX/README.md"  # the unit's Documentation= points here
fi

# 3. The config: root writes it, the daemon's group reads it (it may hold the SIP password), others nothing.
run install -d -m 0755 /etc/intercom
if [ ! -e "$CONFIG" ]; then
    if [ -n "${DRY_RUN:-}" ]; then
        echo "+ $PREFIX/.venv/bin/intercomd --print-default-config > $CONFIG (0640 root:intercom)"
    else
        tmp=$(mktemp)
        "$PREFIX/.venv/bin/intercomd" --print-default-config >"$tmp"
        install -m 0640 -o root -g intercom "$tmp" "$CONFIG"
        rm -f "$tmp"
        echo "install.sh: wrote the example config to $CONFIG: edit it, then check with"
        echo "            sudo -u intercom $PREFIX/.venv/bin/intercomd --config $CONFIG check-config"
    fi
fi

# 4. The unit.
run install -m 0644 "$SRC/systemd/intercom.service" "$UNIT"
if [ -d /run/systemd/system ]; then  # booted with systemd (not a chroot or image build)
    run systemctl daemon-reload
fi
run systemctl enable intercom.service
if [ -n "${START:-}" ]; then
    run systemctl restart intercom.service
fi

echo "install.sh: done. Operators join the intercom group to use intercomctl: usermod -aG intercom NAME"
echo "            start: systemctl start intercom   logs: journalctl -u intercom -f"

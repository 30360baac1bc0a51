#!/usr/bin/env bash
# Installs trackq as a system service on a host without dpkg (the same files as the .deb):
#
#   scripts/install.sh [path/to/trackq]     # default: .build-release/release/trackq
#   scripts/install.sh --uninstall          # stops and removes it; keeps /var/lib/trackq
#
# The binary must be a static-stdlib build (scripts/build-deb.sh makes one), as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "install.sh: run as root" >&2; exit 1; }

units=/etc/systemd/system
if [[ "${1:-}" == --uninstall ]]; then
  systemctl disable --now trackq.service trackq.socket 2>/dev/null || true
  rm -f /usr/bin/trackq "$units/trackq.service" "$units/trackq.socket" /etc/sysusers.d/trackq.conf
  systemctl daemon-reload
  echo "trackq removed; the queue (/var/lib/trackq), /etc/trackq and the user trackq are kept"
  exit 0
fi

binary=${1:-.build-release/release/trackq}
[[ -x "$binary" ]] || { echo "install.sh: no executable at $binary (build it: scripts/build-deb.sh)" >&2; exit 1; }
install -m 0755 "$binary" /usr/bin/trackq
strip --strip-all /usr/bin/trackq 2>/dev/null || true
install -D -m 0644 systemd/trackq.sysusers /etc/sysusers.d/trackq.conf
if command -v systemd-sysusers >/dev/null; then
  systemd-sysusers /etc/sysusers.d/trackq.conf
else
  getent group trackq >/dev/null || groupadd --system trackq
  getent passwd trackq >/dev/null ||
    useradd --system --gid trackq --home-dir /var/lib/trackq --no-create-home --shell /usr/sbin/nologin trackq
fi
install -d -m 0755 /etc/trackq
[[ -e /etc/trackq/trackq.conf ]] || install -m 0644 examples/trackq.conf /etc/trackq/trackq.conf
install -m 0644 systemd/trackq.service systemd/trackq.socket "$units/"
systemctl daemon-reload
systemctl enable trackq.service
systemctl enable --now trackq.socket
echo "trackq installed: write the token to /etc/trackq/token (0600), set endpoint in /etc/trackq/trackq.conf,"
echo "then: systemctl restart trackq"

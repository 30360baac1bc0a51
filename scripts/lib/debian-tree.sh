# Sourced by scripts/test-systemd.sh and scripts/test-powercut.sh: the Debian 12 tree both
# boot (one under systemd-nspawn, one under qemu), made once with debootstrap from the mirror
# apt already uses here. The sourcing script defines `skip`.

# make_debian_tree DIR: a minimal Debian 12 with systemd, SQLite and python3-minimal in DIR,
# unless it is there already (about a minute, about 270 MB).
make_debian_tree() {
  local tree=$1 mirror
  [[ -x "$tree/lib/systemd/systemd" ]] && return 0
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  rm -rf "$tree" && mkdir -p "$(dirname "$tree")"
  echo "making a Debian 12 tree in $tree (once)"
  debootstrap --variant=minbase --include=systemd,dbus,procps,libsqlite3-0,sqlite3,python3-minimal \
    bookworm "$tree.partial" "${mirror:-http://deb.debian.org/debian}" >/dev/null ||
    skip "debootstrap could not make a Debian tree (no mirror reachable?)"
  mv "$tree.partial" "$tree"
}

#!/usr/bin/env bash
# Builds dist/trackq_<version>_<arch>.deb: a release build with the Swift runtime linked
# statically (an edge host has no Swift toolchain), stripped, with the systemd units, the
# sysusers file and /etc/trackq/trackq.conf. Depends: only Debian libraries.
#
#   scripts/build-deb.sh            # builds, then packages
#   TRACKQ_PREBUILT=path/to/trackq scripts/build-deb.sh   # packages that binary instead
#
# Needs: the Swift toolchain, dpkg-deb, binutils (strip, readelf).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/.*version = "\([^"]*\)".*/\1/p' Sources/TrackQueueSupport/Version.swift)
arch=$(dpkg --print-architecture)
[[ -n "$version" ]] || { echo "build-deb: cannot read the version from Sources/TrackQueueSupport/Version.swift" >&2; exit 1; }

if [[ -n "${TRACKQ_PREBUILT:-}" ]]; then
  binary=$TRACKQ_PREBUILT
else
  # A scratch path of its own: the debug build of the tests is left alone.
  swift build -c release --static-swift-stdlib --product trackq --scratch-path .build-release
  binary=.build-release/release/trackq
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/lib/sysusers.d" \
  "$root/etc/trackq" "$root/usr/share/doc/trackq"
install -m 0755 "$binary" "$root/usr/bin/trackq"
strip --strip-all "$root/usr/bin/trackq"
install -m 0644 systemd/trackq.service systemd/trackq.socket "$root/lib/systemd/system/"
install -m 0644 systemd/trackq.sysusers "$root/usr/lib/sysusers.d/trackq.conf"
install -m 0644 examples/trackq.conf "$root/etc/trackq/trackq.conf"
install -m 0644 README.md "$root/usr/share/doc/trackq/README.md"
for script in postinst prerm postrm; do
  install -m 0755 "scripts/deb/$script" "$root/DEBIAN/$script"
done
echo /etc/trackq/trackq.conf >"$root/DEBIAN/conffiles"

# Under pipefail, a pipe into a reader that stops early (grep -q, head, awk's exit) fails with
# SIGPIPE (141) whenever the writer is still writing: a check would pass by accident, and an
# assignment would end the script. So each tool's output is read whole into a variable first.
program_headers=$(readelf -lW "$root/usr/bin/trackq")
dynamic_section=$(readelf -dW "$root/usr/bin/trackq")
shared_libraries=$(ldconfig -p)

# MemoryDenyWriteExecute= in the unit needs a binary without an executable stack or text
# relocations.
if grep -q 'GNU_STACK.*RWE' <<<"$program_headers"; then
  echo "build-deb: trackq has an executable stack; MemoryDenyWriteExecute= would kill it" >&2; exit 1
fi
if grep -q TEXTREL <<<"$dynamic_section"; then
  echo "build-deb: trackq has text relocations; MemoryDenyWriteExecute= would kill it" >&2; exit 1
fi

# Depends: the Debian package of each shared library the binary needs, at least the upstream
# version it was built against (what dpkg-shlibdeps would say, without a debian/ tree).
depends=()
while read -r library; do
  path=$(awk -v lib="$library" '$1 == lib && /x86-64|AArch64|aarch64|64bit/ { print $NF; exit }' <<<"$shared_libraries")
  [[ -n "$path" ]] || path=$(awk -v lib="$library" '$1 == lib { print $NF; exit }' <<<"$shared_libraries")
  [[ -n "$path" ]] || { echo "build-deb: $library: not found on this host" >&2; exit 1; }
  # dpkg knows a file by the path its package ships, with or without /usr (merged /usr).
  real=$(readlink -f "$path")
  package=
  for candidate in "$path" "$real" "${path#/usr}" "${real#/usr}" "/usr$path" "/usr$real"; do
    package=$(dpkg -S "$candidate" 2>/dev/null | sed -n '1s/:.*//p') && [[ -n "$package" ]] && break
  done
  [[ -n "$package" ]] || { echo "build-deb: no Debian package holds $path" >&2; exit 1; }
  upstream=$(dpkg-query -W -f='${Version}' "$package" | sed 's/^[0-9]*://; s/-[^-]*$//; s/+.*$//')
  depends+=("$package (>= $upstream)")
done < <(sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' <<<"$dynamic_section")
if grep -q 'NEEDED.*libswift\|NEEDED.*libFoundation\|NEEDED.*libdispatch' <<<"$dynamic_section"; then
  echo "build-deb: trackq still links the Swift runtime dynamically" >&2; exit 1
fi
depends_line=$(printf '%s\n' "${depends[@]}" | sort -u | paste -sd, - | sed 's/,/, /g')

cat >"$root/DEBIAN/control" <<CONTROL
Package: trackq
Version: $version
Architecture: $arch
Maintainer: trackq developers <trackq@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends_line, systemd | adduser
Section: net
Priority: optional
Description: durable, offline-first event queue for the Track API
 Apps on the host write analytics events to a Unix socket; trackq commits each
 to SQLite before acknowledging it and delivers them to the Track API with
 retries, surviving outages, power loss and restarts.
CONTROL

mkdir -p dist
out=dist/trackq_${version}_${arch}.deb
dpkg-deb --root-owner-group --build -Zxz "$root" "$out" >/dev/null
echo "$out $(stat -c %s "$out") bytes; Depends: $depends_line"

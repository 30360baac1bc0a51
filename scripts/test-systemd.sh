#!/usr/bin/env bash
# The .deb under a real systemd, as an operator uses it: boots a clean Debian 12 (no Swift)
# with systemd as PID 1 in a container (systemd-nspawn), installs the package built by
# scripts/build-deb.sh, and checks what the README promises. Needs no systemd on this
# machine; needs root, systemd-nspawn and debootstrap (.ci/run installs them). Skipped, with
# the reason printed, where a container cannot be booted.
#
#   scripts/test-systemd.sh                 # builds the .deb, then tests it
#   TRACKQ_DEB=dist/trackq_….deb scripts/test-systemd.sh
#
# The Debian tree is made once (about a minute) in .build-container/bookworm and booted
# with --volatile=overlay, so every run starts from the pristine tree.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD

skip() {
  echo "SKIP scripts/test-systemd.sh: $*"
  exit 0
}
[[ $(id -u) == 0 ]] || skip "needs root to boot a container"
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn is not installed (apt-get install systemd-container)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
[[ -d /sys/fs/cgroup ]] || skip "no cgroup file system"

tree=${TRACKQ_CONTAINER_TREE:-$here/.build-container/bookworm}
source "$here/scripts/lib/debian-tree.sh"
make_debian_tree "$tree"

deb=${TRACKQ_DEB:-}
if [[ -z "$deb" ]]; then
  deb=$(scripts/build-deb.sh | tail -1 | cut -d' ' -f1)
fi
[[ -f "$deb" ]] || { echo "no package at $deb" >&2; exit 1; }

work=$(mktemp -d /tmp/trackq-systemd.XXXXXX)
mkdir -p "$work/payload" "$work/sink"
cp "$deb" "$work/payload/trackq.deb"
# For scripts/install.sh: the package's binary and this checkout's files.
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/trackq >"$work/payload/trackq"
chmod 0755 "$work/payload/trackq"
mkdir -p "$work/payload/src"
cp -r scripts systemd examples "$work/payload/src/"
token="tq-secret-$RANDOM$RANDOM$RANDOM"

python3 scripts/systemd-test/sink.py "$work/sink" "$token" &
sink_pid=$!
nspawn_pid=
cleanup() {
  set +e
  if [[ -n "$nspawn_pid" ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
    [[ -n "${pid1:-}" ]] && nsenter -t "$pid1" -a systemctl poweroff >/dev/null 2>&1
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -TERM "$nspawn_pid" 2>/dev/null; sleep 1; kill -KILL "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  kill "$sink_pid" 2>/dev/null
  # nspawn leaves empty cgroups behind when the host runs no systemd.
  for root in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
    for dir in payload supervisor; do
      [[ -d "$root/$dir" ]] && find "$root/$dir" -depth -type d -exec rmdir {} + 2>/dev/null
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

# (A pipe into grep -q would fail under pipefail when grep stops reading early: pipes into
# grep below read everything, into /dev/null.)

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

wait_for 10 test -s "$work/sink/port" || { echo "the test API did not start" >&2; exit 1; }
port=$(cat "$work/sink/port")

systemd-nspawn -D "$tree" --boot --register=no --keep-unit --volatile=overlay \
  --bind-ro="$work/payload:/payload" --console=read-only >"$work/boot.log" 2>&1 &
nspawn_pid=$!
find_pid1() {
  local child
  for child in $(pgrep -P "$nspawn_pid"); do
    if [[ "$(readlink "/proc/$child/exe" 2>/dev/null)" == */systemd ]]; then
      pid1=$child
      return 0
    fi
  done
  return 1
}
wait_for 30 find_pid1 || skip "the container did not boot: $(tail -3 "$work/boot.log" | tr '\n' ' ')"
wait_for 30 test -S "/proc/$pid1/root/run/systemd/private" || skip "systemd in the container did not start"

inside() { nsenter -t "$pid1" -a "$@"; }
# An app user's command; a minute at most, so a daemon that never answers fails the test.
as_app() { inside timeout 60 runuser -u app -- "$@"; }

passed=0
check() {
  echo "ok - $1"
  passed=$((passed + 1))
}
fail() {
  echo "not ok - $1" >&2
  echo "--- journal of trackq:" >&2
  inside journalctl -u trackq -u trackq.socket --no-pager -n 40 >&2 || true
  exit 1
}

state=$(inside systemctl is-system-running --wait || true)
[[ "$state" == running || "$state" == degraded ]] || fail "systemd reached running (it says: $state)"
# debootstrap's minimal tree lacks the /etc/hosts every installed Debian has; the endpoint
# below names localhost, so the daemon resolves a name under its hardening.
inside sh -c 'grep -qs localhost /etc/hosts || printf "127.0.0.1 localhost\n::1 localhost\n" >/etc/hosts'
check "systemd $(inside systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p') is PID 1 in a clean Debian 12: $state"
inside sh -c 'command -v swift' >/dev/null && fail "the container has no Swift toolchain"

# Install.
inside dpkg -i /payload/trackq.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
check "dpkg -i $(basename "$deb") ($(stat -c %s "$deb") bytes)"
inside getent passwd trackq >/dev/null || fail "the package created the user trackq"
[[ $(inside systemctl is-active trackq.socket) == active ]] || fail "trackq.socket is active after install"
[[ $(inside systemctl is-enabled trackq.socket) == enabled ]] || fail "trackq.socket is enabled"
[[ $(inside systemctl is-enabled trackq.service) == enabled ]] || fail "trackq.service is enabled"
mode=$(inside stat -c '%a %U %G' /run/trackq/trackq.sock)
[[ "$mode" == "660 root trackq" ]] || fail "the socket is 0660 root:trackq (it is $mode)"
check "the user trackq exists; trackq.socket is enabled and listening on /run/trackq/trackq.sock ($mode)"

inside useradd --create-home --groups trackq app
inside useradd --create-home other
cat >"$work/payload-conf" <<EOF
endpoint = http://localhost:$port/api/track
retry-initial = 100ms
retry-max = 1s
EOF
inside sh -c "cat >> /etc/trackq/trackq.conf" <"$work/payload-conf"

# Before a token exists: events are taken and kept, and the alert says why.
printf '{"event_name":"before_token","user_id":"u0","properties":{"seq":"t0"}}\n' |
  as_app trackq send - >/dev/null || fail "an app writes an event before a token exists"
inside systemctl restart trackq || fail "the service (re)starts without a token"
no_token_alert() { { inside trackq status 2>&1 || true; } | grep "has no token" >/dev/null; }
wait_for 20 no_token_alert || fail "trackq status names the missing token: $(inside trackq status 2>&1)"
check "without a token the service starts, keeps the event, and its alert says the token is missing"

# The token, as the operator writes it, then a restart (credentials are read at start).
inside sh -c "umask 077; printf '%s\n' '$token' > /etc/trackq/token"
inside systemctl restart trackq || fail "systemctl restart trackq"
wait_for 20 sh -c "grep -q '\"t0\"' '$work/sink/events' 2>/dev/null" || fail "the event queued before the token reached the API"
check "once the token is written, the event queued before it reaches the API"

# An app's user in group trackq writes events with no flags; they reach the API.
events() { for i in $(seq 1 "$2"); do printf '{"event_name":"e","user_id":"u","properties":{"seq":"%s%d"}}\n' "$1" "$i"; done; }
# Whether the API has all $2 distinct events of series $1.
arrived() { [[ $(grep -so "\"seq\": \"$1[0-9]*\"" "$work/sink/events" | sort -u | wc -l) == "$2" ]]; }
events a 200 | as_app trackq send - >"$work/answers-a" || fail "the app user's 200 events are acked"
[[ $(grep -c '"ok":true' "$work/answers-a") == 200 ]] || fail "200 acks"
wait_for 20 arrived a 200 || fail "the app's 200 events reached the API"
check "an app user in group trackq (trackq send, no flags) writes 200 events; all 200 reach the API"

# A user outside the group is refused.
if inside timeout 60 runuser -u other -- trackq send e --user u >"$work/other.out" 2>&1; then fail "a user outside group trackq is refused"; fi
grep -q "permission denied.*usermod -aG trackq" "$work/other.out" || fail "the refusal says permission denied: $(cat "$work/other.out")"
check "a user outside group trackq is refused: $(tr '\n' ' ' <"$work/other.out")"

# trackq status: healthy for root; an app user is told what to do.
inside trackq status >"$work/status" || fail "trackq status is healthy (exit 0): $(cat "$work/status")"
check "sudo trackq status finds the system database, exit 0: $(head -1 "$work/status")"
if as_app trackq status >"$work/status-app" 2>&1; then fail "an app user cannot read the database"; fi
grep -q "sudo trackq status" "$work/status-app" || fail "status tells an app user what to do: $(cat "$work/status-app")"
check "trackq status run by an app user says: $(tr '\n' ' ' <"$work/status-app")"

# The clock under the unit's ProtectClock=, which refuses adjtimex even to read: the state comes
# from systemd-timesyncd's flag or is unknown, never a crash; events say what the clock was.
inside trackq status --json >"$work/status.json" || fail "trackq status --json: $(cat "$work/status.json")"
grep -Eq '"clock":\{"state":"(synced|unknown)"' "$work/status.json" || fail "status shows the clock's state: $(cat "$work/status.json")"
grep -q '"boot_id_known":true' "$work/status.json" || fail "the daemon reads the boot id in its sandbox: $(cat "$work/status.json")"
grep -Eq '"trackq": \{"event_id": "[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", "clock": "' "$work/sink/events" ||
  fail "events reach the API with context.trackq, its event_id a UUIDv7"
check "the sandboxed daemon reads the clock ($(grep -o '"clock":{"state":"[a-z]*"' "$work/status.json")); events carry context.trackq with a UUIDv7 event_id"

# kill -9: the service restarts by itself; nothing acked is lost; apps are not refused.
echo 503 >"$work/sink/mode"
events b 300 | as_app trackq send - >"$work/answers-b" || fail "300 events acked while the API answers 503"
[[ $(grep -c '"ok":true' "$work/answers-b") == 300 ]] || fail "300 acks before the kill"
main_pid=$(inside systemctl show -p MainPID --value trackq)
inside systemctl kill -s KILL trackq
wait_for 10 inside sh -c "! kill -0 $main_pid 2>/dev/null" || fail "kill -9 ended pid $main_pid"
events c 100 | as_app trackq send - >"$work/answers-c" || fail "events written right after the kill are acked"
[[ $(grep -c '"ok":true' "$work/answers-c") == 100 ]] || fail "100 acks across the restart"
restarted() { [[ $(inside systemctl show -p NRestarts --value trackq) -ge 1 ]] && [[ $(inside systemctl is-active trackq) == active ]]; }
wait_for 30 restarted || fail "systemd restarted trackq after kill -9"
new_pid=$(inside systemctl show -p MainPID --value trackq)
rm -f "$work/sink/mode"
all_arrived() { arrived b 300 && arrived c 100; }
wait_for 30 all_arrived || fail "every event acked around the kill reached the API"
soft_files=$(inside awk '/Max open files/ { print $4 }' "/proc/$new_pid/limits")
((soft_files >= 2048)) || fail "the daemon raised its open-files limit above its 1024 connections (it is $soft_files)"
check "systemctl kill -s KILL (pid $main_pid): restarted as pid $new_pid (NRestarts=1); 300 events acked before and 100 written during the restart all reached the API"

# systemctl reload: SIGHUP, RELOADING=1 then READY=1; same process.
inside systemctl reload trackq || fail "systemctl reload trackq"
[[ $(inside systemctl show -p MainPID --value trackq) == "$new_pid" ]] || fail "reload keeps the process"
[[ $(inside systemctl is-active trackq) == active ]] || fail "active after reload"
inside journalctl -u trackq --no-pager | grep "reload: reading the token again" >/dev/null || fail "the reload is logged"
check "systemctl reload trackq: same pid, active, logged"

# Logs carry their priority: the auth alert is at critical, 'ready' is not a warning.
inside journalctl -u trackq -p crit --no-pager | grep "no token" >/dev/null || fail "journalctl -p crit shows the auth alert"
if inside journalctl -u trackq -p warning --no-pager | grep "notice: ready" >/dev/null; then fail "a notice is not a warning"; fi
inside journalctl -u trackq -p notice --no-pager | grep "ready" >/dev/null || fail "journalctl -p notice shows 'ready'"
check "journalctl -p crit / -p warning / -p notice select trackq's lines by priority"

# The token is nowhere it should not be.
if inside grep -r -a -q -F "$token" /var/lib/trackq; then fail "the token is in no file under /var/lib/trackq"; fi
if inside journalctl --no-pager -o verbose | grep -F "$token" >/dev/null; then fail "the token is nowhere in the journal"; fi
if inside sh -c "cat /proc/$new_pid/cmdline /proc/$new_pid/environ" | grep -a -F "$token" >/dev/null; then
  fail "the token is not in the daemon's argv or environment"
fi
check "the token is in no file under /var/lib/trackq, nowhere in the journal, argv or environment"

# Hardening, as systemd inside the container rates it.
exposure=$(inside systemd-analyze security trackq.service --no-pager | sed -n 's/.*Overall exposure level for trackq.service: \([0-9.]*\).*/\1/p')
[[ -n "$exposure" ]] || fail "systemd-analyze security rates trackq.service"
awk -v e="$exposure" 'BEGIN { exit !(e <= 1.5) }' || fail "exposure $exposure is at most 1.5"
check "systemd-analyze security trackq.service: overall exposure $exposure"

# Upgrade: the package installed again restarts the service; the queue stays.
inside dpkg -i /payload/trackq.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i over itself"; }
upgraded_pid=$(inside systemctl show -p MainPID --value trackq)
[[ "$upgraded_pid" != "$new_pid" && "$upgraded_pid" != 0 ]] || fail "an upgrade restarts the service"
[[ $(inside systemctl is-active trackq.socket) == active ]] || fail "the socket stays active on upgrade"
check "upgrade (dpkg -i again): the service restarted (pid $new_pid -> $upgraded_pid), socket active"

# Remove keeps the queue; purge deletes it; neither leaves a process.
inside dpkg -r trackq >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -r"; }
if inside pgrep -u trackq >/dev/null; then fail "no trackq process after remove"; fi
inside test -f /var/lib/trackq/queue.db || fail "remove keeps /var/lib/trackq"
inside dpkg --purge trackq >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg --purge"; }
if inside pgrep -u trackq >/dev/null; then fail "no trackq process after purge"; fi
if inside test -e /var/lib/trackq; then fail "purge deletes /var/lib/trackq"; fi
if inside test -e /etc/trackq/token; then fail "purge deletes the token"; fi
check "dpkg -r stops everything and keeps the queue; dpkg --purge deletes /var/lib/trackq and the token; no process left"

# Without dpkg: scripts/install.sh puts the same files in place.
inside /payload/src/scripts/install.sh /payload/trackq >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "install.sh"; }
[[ $(inside systemctl is-active trackq.socket) == active ]] || fail "install.sh starts the socket"
inside sh -c "cat >> /etc/trackq/trackq.conf" <"$work/payload-conf"
printf '{"event_name":"e","user_id":"u","properties":{"seq":"i1"}}\n' | as_app trackq send - >/dev/null ||
  fail "an app user writes through the socket install.sh set up"
[[ $(inside systemctl is-active trackq) == active ]] || fail "the first connection started the service"
inside /payload/src/scripts/install.sh --uninstall >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "install.sh --uninstall"; }
if inside pgrep -u trackq >/dev/null; then fail "no trackq process after install.sh --uninstall"; fi
check "scripts/install.sh: socket up, an app's event accepted, the service socket-activated; --uninstall stops it"

echo "test-systemd: $passed checks passed; package $(basename "$deb") $(stat -c %s "$deb") bytes; exposure $exposure"

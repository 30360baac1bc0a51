#!/usr/bin/env bash
# Power cuts of the packaged daemon in a whole machine (issue 22): boots Debian 12 in qemu
# (TCG: KVM does not nest here) with the .deb's trackq, runs a scenario in which apps write
# events and report every ack on a serial port, SIGKILLs qemu at a random moment (the guest's
# page cache is lost; what reached the virtual disk, `cache=none`, is kept: that is the cut),
# boots the machine again to verify, and compares:
#
# - every event whose ack the host read is in the queue, in the dead letters, or in the
#   delivery sink's file (which it fsyncs before it answers 200), at the cut and again after
#   the daemon has started on the database and stopped;
# - `PRAGMA integrity_check` is ok, both times;
# - the daemon starts on the database and takes an event (`trackq send` gets an ok).
#
#   scripts/test-powercut.sh [CUTS]            # default 3; builds the .deb first
#   TRACKQ_DEB=dist/trackq_….deb scripts/test-powercut.sh 100
#
# The cuts cycle over five scenarios, starting at a random one (TRACKQ_POWERCUT_SCENARIOS
# lists others; TRACKQ_POWERCUT_SEED repeats a run's random choices; TRACKQ_POWERCUT_AT=TENTHS
# cuts every time that many tenths of a second into the window): `ingest` (apps writing),
# `delivery` (a backlog made behind 503s draining), `vacuum` (30 MB of backlog drained, so the
# daemon gives space back: incremental vacuum and checkpoints), `migration` (a schema-4 queue
# of 50,000 events, made from Schema.swift's first four migrations, being migrated at start)
# and `requeue` (`trackq dead requeue --all` again and again while the daemon expires events
# into the dead letters). Apps write during every one of them.
#
# Each run also makes one control cut with `--durability normal`, which must lose acked
# events (its commits are not fsynced, so the cut takes the last of them; its apps write at
# about 7,500 events a second, so the checkpoints that do fsync come seconds apart). If it
# loses none, it is cut once more at another moment (one can land just after a checkpoint).
# If that one loses none too, the harness could not have seen a loss either (a disk cache
# that survives the kill, a kill that came too late, acks not read), so the run proved
# nothing: the script says so and exits 1, as it does for a loss, a failed integrity check
# or a daemon that does not serve.
#
# Needs root, qemu-system-x86_64, debootstrap, mke2fs (.ci/run installs them); prints SKIP
# with the reason where they are missing and cannot be installed. The Debian tree is
# scripts/test-systemd.sh's (.build-container/bookworm, made once); its copy with a kernel,
# an initrd and python3 is kept in .build-container/powercut (made once, in under a minute
# here with the mirror close by). Each run makes a fresh ext4 image from it (about 10 s);
# each cut works in its own directory on that disk, deleted once verified. A cut and its
# verify boot take 30 to 70 s here.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$PWD
cuts=${1:-3}
[[ "$cuts" =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/test-powercut.sh [CUTS]" >&2; exit 2; }

skip() {
  echo "SKIP scripts/test-powercut.sh: $*"
  exit 0
}
[[ $(id -u) == 0 ]] || skip "needs root (debootstrap, chroot, mke2fs -d of a root-owned tree)"
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v mke2fs >/dev/null || missing+=(e2fsprogs)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
if ((${#missing[@]})) && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
    >/dev/null 2>&1 || true
fi
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
command -v mke2fs >/dev/null || skip "mke2fs is not installed (e2fsprogs)"
command -v python3 >/dev/null || skip "python3 is not installed"
command -v sqlite3 >/dev/null || skip "sqlite3 is not installed (the self-test reads with it)"

# The verify boot's reading of a file it cannot simply read (a hot journal), checked here first.
python3 scripts/powercut/selftest.py

# The Debian 12 tree scripts/test-systemd.sh boots too.
tree=${TRACKQ_CONTAINER_TREE:-$here/.build-container/bookworm}
source "$here/scripts/lib/debian-tree.sh"
make_debian_tree "$tree"

# Its copy with a kernel and an initrd that mounts a virtio disk, `ip` for lo, and the whole
# python3 (python3-minimal lacks http.server and sqlite3). The initrd holds only the modules
# the guest needs: 6 MB instead of 36, which saves seconds of every boot under TCG.
# Bump the stamp's number when the recipe changes, and the copy is made again.
machine=${TRACKQ_POWERCUT_TREE:-$here/.build-container/powercut}
stamp=$machine/.trackq-powercut-1
if [[ ! -e "$stamp" ]]; then
  echo "making the guest's tree in $machine from $tree (once)"
  rm -rf "$machine" "$machine.partial"
  cp -a "$tree" "$machine.partial"
  cp /etc/resolv.conf "$machine.partial/etc/resolv.conf"
  mkdir -p "$machine.partial/etc/initramfs-tools/conf.d"
  echo MODULES=list >"$machine.partial/etc/initramfs-tools/conf.d/powercut"
  printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic >>"$machine.partial/etc/initramfs-tools/modules"
  for fs in proc dev sys; do mount --bind "/$fs" "$machine.partial/$fs"; done
  chroot_ok=0
  { chroot "$machine.partial" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive chroot "$machine.partial" apt-get install -y -q --no-install-recommends \
      linux-image-amd64 initramfs-tools iproute2 python3 &&
    chroot "$machine.partial" apt-get clean; } >"$here/.build-container/powercut-tree.log" 2>&1 && chroot_ok=1
  for fs in proc dev sys; do umount "$machine.partial/$fs"; done
  ((chroot_ok)) || skip "could not install a kernel in the guest's tree (see .build-container/powercut-tree.log)"
  rm -rf "$machine.partial/var/lib/apt/lists/"*
  mv "$machine.partial" "$machine"
  touch "$stamp"
fi
kernel=$(ls "$machine"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$machine"/boot/initrd.img-* | sort -V | tail -1)

deb=${TRACKQ_DEB:-}
if [[ -z "$deb" ]]; then
  deb=$(scripts/build-deb.sh | tail -1 | cut -d' ' -f1)
fi
[[ -f "$deb" ]] || { echo "no package at $deb" >&2; exit 1; }

work=$(mktemp -d /tmp/trackq-powercut.XXXXXX)
qemu_pid=
keep=${TRACKQ_POWERCUT_KEEP:-0}  # 1: keep the logs and the disk image of a run that passed too
cleanup() {
  set +e
  if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill -KILL "$qemu_pid"
    wait "$qemu_pid" 2>/dev/null
  fi
  rm -rf "$work/stage"
  if ((keep)); then echo "logs and the disk image kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The disk: the guest's tree (hard links: nothing in it is changed), the package's binary,
# the guest's scripts and the schema-4 fixture.
stage=$work/stage
cp -al "$machine" "$stage"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/trackq >"$stage/usr/bin/trackq"
chmod 0755 "$stage/usr/bin/trackq"
mkdir -p "$stage/powercut" "$stage/var/lib/pc"
install -m 0755 scripts/powercut/init.sh "$stage/powercut/init.sh"
install -m 0644 scripts/powercut/guest.py scripts/powercut/writer.py scripts/powercut/sink.py "$stage/powercut/"
fixture_events=50000
python3 scripts/powercut/fixture.py Sources/TrackQueueStore/Schema.swift "$stage/powercut/fixture-v4.db" \
  "$fixture_events" >/dev/null
echo "$fixture_events" >"$stage/powercut/fixture-v4.count"
truncate -s 4G "$work/disk.img"
mke2fs -q -t ext4 -d "$stage" "$work/disk.img"
rm -rf "$stage"

# Boots the guest: boot MODE SCENARIO CUT DURABILITY DIR; the serial ports go to
# DIR/console-MODE.log and DIR/serial-MODE.log; sets qemu_pid.
boot() {
  local mode=$1 scenario=$2 cut=$3 durability=$4 dir=$5
  : >"$dir/serial-$mode.log"
  qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nodefaults -display none -no-reboot -nic none \
    -kernel "$kernel" -initrd "$initrd" \
    -append "root=/dev/vda rw console=ttyS0 panic=-1 quiet init=/powercut/init.sh pc.mode=$mode pc.scenario=$scenario pc.cut=$cut pc.durability=$durability" \
    -drive "file=$work/disk.img,if=virtio,format=raw,cache=none" \
    -serial "file:$dir/console-$mode.log" -serial "file:$dir/serial-$mode.log" -monitor none \
    >"$dir/qemu-$mode.log" 2>&1 &
  qemu_pid=$!
}

# Whether the serial log $1 has a whole line that is exactly $2 (the guest's tty is raw: no \r).
# No process substitution here: with one (`<(sed ...)`), bash 5.2 hung once at cut 44 of a
# long run, in wait4() while qemu ran on, most likely on a process substitution's pid reused
# by qemu (polled ten times a second, pids wrap around within the hour).
has_line() { [[ -f "$1" ]] && grep -qxF -- "$2" "$1"; }

# A random number of tenths of a second in [$1, $2].
random_tenths() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }

# When to cut, in tenths of a second after the guest says `phase window`.
declare -A window=(
  [ingest]="5 60"     # apps writing for 0.5 to 6 s
  [delivery]="0 60"   # the backlog draining (about 4 s of backlog at the window), apps writing
  [vacuum]="30 80"    # measured here: the drain ends 3 s in (later on a busy machine), the file
                      # shrinks 42 -> 8 MB at 3 to 5 s; at 2-6 s, 3 cuts in 10 caught the shrink
  [migration]="10 55" # measured here: the WAL appears 1.5 s after the exec, grows to 4.3 s; ready at 4.7 s
  [requeue]="0 60"    # requeue after requeue
  [control]="30 80"   # --durability normal, apps writing: 3 to 8 s, past a few WAL checkpoints
)

seed=${TRACKQ_POWERCUT_SEED:-$$}
RANDOM=$seed
read -r -a scenarios <<<"${TRACKQ_POWERCUT_SCENARIOS:-ingest delivery vacuum migration requeue}"
offset=$((RANDOM % ${#scenarios[@]}))
echo "powercut: $cuts cuts and a control, seed $seed, starting at ${scenarios[$offset]}; $(basename "$deb"), kernel $(basename "$kernel")"

total_acked=0 total_lost=0 integrity_failures=0 not_serving=0 other_failures=0
control_acked=0 control_lost=0

# cut_once N SCENARIO DURABILITY WINDOW_NAME: one cut and its verify boot; prints its line and
# adds to the totals.
cut_once() {
  local n=$1 scenario=$2 durability=$3 window_name=$4
  local dir=$work/cut-$n started=$SECONDS
  mkdir -p "$dir"
  boot cut "$scenario" "$n" "$durability" "$dir"
  local deadline=$((SECONDS + 900))
  until has_line "$dir/serial-cut.log" "phase window"; do
    if ! kill -0 "$qemu_pid" 2>/dev/null || ((SECONDS > deadline)); then
      echo "cut $n ($scenario): the guest never reached its window" >&2
      tail -n 20 "$dir/console-cut.log" "$dir/serial-cut.log" >&2
      kill -KILL "$qemu_pid" 2>/dev/null || true
      wait "$qemu_pid" 2>/dev/null || true
      qemu_pid=
      other_failures=$((other_failures + 1))
      keep=1
      return
    fi
    sleep 0.1
  done
  local range=(${window[$window_name]})
  local delay
  delay=${TRACKQ_POWERCUT_AT:-$(random_tenths "${range[0]}" "${range[1]}")}
  # The random moment: the one sleep here that is not waiting for anything.
  sleep "$((delay / 10)).$((delay % 10))"
  local alive=1
  kill -0 "$qemu_pid" 2>/dev/null || alive=0
  kill -KILL "$qemu_pid" 2>/dev/null || true
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=
  cp "$dir/serial-cut.log" "$dir/acks.log"  # what the host had read at the cut

  boot verify "$scenario" "$n" "$durability" "$dir"
  deadline=$((SECONDS + 1200))
  while kill -0 "$qemu_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$qemu_pid" 2>/dev/null; then
    echo "cut $n: the verify boot did not power off within 20 minutes" >&2
    kill -KILL "$qemu_pid" 2>/dev/null || true
  fi
  wait "$qemu_pid" 2>/dev/null || true
  qemu_pid=

  # lost and lost_after are -1 when the verify boot did not get as far as reading them.
  local acked=0 lost=-1 lost_after=-1 integrity=failed serving=failed done=no note="compare.py failed"
  local compared
  compared=$(python3 scripts/powercut/compare.py "$dir/acks.log" "$dir/serial-verify.log" 2>"$dir/compare.err" ||
    echo "0 -1 -1 failed failed no compare.py failed")
  read -r acked lost lost_after integrity serving done note <<<"$compared"
  local worst=$((lost > lost_after ? lost : lost_after))
  local line="cut $n scenario=$scenario durability=$durability at=$((delay / 10)).$((delay % 10))s acked=$acked lost=$lost lost_after_restart=$lost_after integrity=$integrity serving=$serving verified=$done time=$((SECONDS - started))s $note"
  ((alive)) || line+=" (the guest had stopped before the cut)"
  echo "$line"
  if [[ -s "$dir/compare.err" ]]; then sed 's/^/  /' "$dir/compare.err"; fi
  if [[ $done != yes || $alive == 0 || $lost == -1 || $lost_after == -1 ]]; then
    # The guest failed (its words are in the line above), or the verify boot did not finish:
    # neither a loss nor a pass.
    other_failures=$((other_failures + 1))
    keep=1
  elif [[ $durability == normal ]]; then
    control_acked=$acked
    control_lost=$worst
  else
    total_acked=$((total_acked + acked))
    total_lost=$((total_lost + worst))
  fi
  if [[ $durability != normal ]]; then
    [[ $integrity == ok ]] || integrity_failures=$((integrity_failures + 1))
    [[ $serving == ok ]] || not_serving=$((not_serving + 1))
    if ((worst > 0)) || [[ $integrity != ok || $serving != ok ]]; then keep=1; fi
  fi
}

cut_once 0 ingest normal control
if ((control_lost == 0 && other_failures == 0)); then
  # A control cut can land where nothing unsynced was acked yet (just after a checkpoint, with
  # the last acks still on their way to the host); one lands there by chance, two in a row
  # mean the harness cannot see a loss.
  echo "powercut: the control lost nothing at this moment; one more control cut, at another"
  cut_once 0b ingest normal control
fi
for ((i = 1; i <= cuts; i++)); do
  scenario=${scenarios[$(((offset + i - 1) % ${#scenarios[@]}))]}
  cut_once "$i" "$scenario" full "$scenario"
done

echo "powercut: cuts=$cuts acked=$total_acked lost=$total_lost integrity_failures=$integrity_failures not_serving=$not_serving other_failures=$other_failures control_acked=$control_acked control_lost=$control_lost"
status=0
if ((total_lost || integrity_failures || not_serving || other_failures)); then
  status=1
fi
if ((control_lost == 0)); then
  echo "powercut: the control cut (--durability normal) lost no acked event, so this run could not have seen a loss: it proved nothing" >&2
  keep=1
  status=1
fi
exit $status

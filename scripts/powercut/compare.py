#!/usr/bin/env python3
"""Compares what the host read on the cut boot's serial port with what the verify boot found.

Usage: compare.py ACKS_LOG RESULTS_LOG

ACKS_LOG: the cut boot's /dev/ttyS1 as the host had it when it killed qemu; only whole lines
count (`ack NAME FIRST LAST`, `phase ...`, `state pending=N bytes=B`). RESULTS_LOG: the verify
boot's (`integrity ...`, `have NAME A B`, `serving ...`, `after-integrity ...`,
`have-after NAME A B`, `done`).

Prints one line: `ACKED LOST LOST_AFTER (-1: not read) INTEGRITY SERVING DONE NOTE...`, where INTEGRITY and
SERVING are `ok` or `failed`, DONE is `yes` or `no`, and NOTE says where the cut landed. The
first missing markers go to standard error.
"""
import sys


def whole_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    return [line.decode(errors="replace").rstrip("\r") for line in data.split(b"\n")[:-1]]


def ranges(lines, tag):
    found = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == tag:
            found.setdefault(parts[1], []).append((int(parts[2]), int(parts[3])))
    return found


def covered(found):
    numbers = {}
    for name, spans in found.items():
        s = numbers.setdefault(name, set())
        for first, last in spans:
            s.update(range(first, last + 1))
    return numbers


acks = whole_lines(sys.argv[1])
results = whole_lines(sys.argv[2])
acked = covered(ranges(acks, "ack"))
present = covered(ranges(results, "have"))
present_after = covered(ranges(results, "have-after"))

total = sum(len(s) for s in acked.values())
lost = sorted((name, n) for name, s in acked.items() for n in s - present.get(name, set()))
lost_after = sorted((name, n) for name, s in acked.items() for n in s - present_after.get(name, set()))
for label, missing in (("at the cut", lost), ("after the restart", lost_after)):
    if missing:
        shown = " ".join(f"{name}-{n}" for name, n in missing[:10])
        print(f"compare: {len(missing)} acked events missing {label}, e.g. {shown}", file=sys.stderr)

integrity = [line.split(" ", 1)[1] for line in results if line.startswith(("integrity ", "after-integrity "))]
integrity_ok = len(integrity) == 2 and all(text.startswith("ok") for text in integrity)
if not integrity_ok:
    print(f"compare: integrity: {integrity}", file=sys.stderr)
serving = [line for line in results if line.startswith("serving ")]
serving_ok = bool(serving) and all(line.startswith("serving ok") for line in serving)
if not serving_ok:
    print(f"compare: {serving or 'no serving line'}", file=sys.stderr)
errors = [line for line in acks + results if line.startswith("error ")]
for line in errors:
    print(f"compare: the guest said: {line}", file=sys.stderr)
done = "done" in results

# Where the cut landed.
phases = [line.split(" ", 1)[1] for line in acks if line.startswith("phase ")]
states = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in acks if line.startswith("state ")]
notes = []
user_version = next((line.split()[1] for line in results if line.startswith("user_version ")), "?")
if any(p.startswith("requeue-start") for p in phases):
    starts = sum(p.startswith("requeue-start") for p in phases)
    dones = sum(p.startswith("requeue-done") for p in phases)
    notes.append(f"requeues_done={dones} {'cut-during-a-requeue' if starts > dones else 'cut-between-requeues'}")
if any(line.startswith("ack f ") for line in acks):
    # The migration: committed if the file says a later schema; under way if the daemon had
    # put the file in WAL mode (its WAL grows with the migration's transaction) and had not.
    ready = next((p.split("t=")[1] + "s" for p in phases if p.startswith("ready")), None)
    wal_seen = max((int(s["wal"]) for s in states), default=0)
    latest = next((line.split()[1] for line in results if line.startswith("after-user_version ")), "?")
    if user_version == latest:
        landed = "after-migration"
    elif wal_seen > 0:
        landed = "during-migration"
    else:
        landed = "before-migration"
    notes.append(f"{landed} schema_at_cut={user_version}/{latest} wal_max={wal_seen} ready_at={ready or 'not-yet'}")
elif states:
    top = max(int(s["bytes"]) for s in states)
    last = states[-1]
    notes.append(f"pending_at_cut~{last['pending']} db_bytes_max={top} db_bytes_at_cut~{last['bytes']}"
                 + (" shrinking" if int(last["bytes"]) < top else ""))
if any(line.startswith("note at-cut no queue ") for line in results):
    notes.append("no-schema-at-cut")  # a new file's schema was still only in the lost WAL (normal)
if any(line.startswith("journal ") for line in results):
    notes.append("hot-journal-at-cut")  # a rollback-mode commit was cut (the switch to WAL)
counts = next((line.split(" ", 1)[1] for line in results if line.startswith("counts ")), "")
if counts:
    notes.append(counts.replace(" ", ","))

read = any(line.startswith("integrity ") for line in results)
read_after = any(line.startswith("after-integrity ") for line in results)
print(total, len(lost) if read else -1, len(lost_after) if read_after else -1, "ok" if integrity_ok else "failed", "ok" if serving_ok else "failed",
      "yes" if done and not errors else "no", " ".join(notes))

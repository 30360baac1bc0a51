#!/usr/bin/env python3
"""The power-cut guest's work, run by init.sh with the kernel's command line.

pc.mode=cut: sets up one scenario (pc.scenario) in /var/lib/pc/cut-N (pc.cut), runs the
packaged daemon (with --durability pc.durability), the fsyncing sink and several apps, and
says on the second serial port (/dev/ttyS1, read by the host) `phase window` when the
moment to cut has come; the host then kills qemu at a random time. Apps report their acks on
the same port (writer.py). It never returns on its own.

pc.mode=verify: the boot after the cut. Reads what is on disk before anything writes to it:
`PRAGMA integrity_check`, the schema version, and every marker in the queue (the `queue`
view or table), the dead letters and the sink's fsynced file, as ranges (`have NAME A B`);
a hot rollback journal is rolled back in a copy (`journal ...`), as a reader would find it.
Then starts the daemon on the database (the same durability), sends an event through the
socket (`serving ok`), stops it, and reads everything again (`after-integrity`,
`have-after`): a start after a cut (which may migrate, recover, deliver) must keep
everything too. Then deletes the cut's directory (the disk serves every cut of a run) and
says `done`. The host compares the ranges with the acks it read.
"""
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

params = dict(arg.split("=", 1) for arg in sys.argv[1:] if arg.startswith("pc.") and "=" in arg)
mode = params.get("pc.mode", "verify")
scenario = params.get("pc.scenario", "ingest")
cut = params.get("pc.cut", "0")
durability = params.get("pc.durability", "full")

BASE = os.environ.get("PC_BASE", "/var/lib/pc")  # another place only for selftest.py
CUT_DIR = f"{BASE}/cut-{cut}"
DB = f"{CUT_DIR}/queue.db"
DELIVERED = f"{CUT_DIR}/delivered"
SOCK = "/run/pc/trackq.sock"
PORT = 8750
SINK_MODE = "/run/pc/sink-mode"
HERE = "/powercut"
TOKEN = "powercut-token"

SERIAL = os.environ.get("PC_SERIAL", "/dev/ttyS1")
serial = None


def say(line):
    global serial
    if serial is None:
        serial = os.open(SERIAL, os.O_WRONLY | os.O_NOCTTY | os.O_APPEND)
    os.write(serial, (line + "\n").encode())


def log(line):
    print(f"guest: {line}", flush=True)


def fsync_path(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sink_status(status):
    with open(SINK_MODE + ".tmp", "w") as f:
        f.write(str(status))
    os.rename(SINK_MODE + ".tmp", SINK_MODE)


def start_sink():
    if not os.path.exists(DELIVERED):
        open(DELIVERED, "a").close()
        fsync_path(DELIVERED)
        fsync_path(CUT_DIR, directory=True)
    sink = subprocess.Popen([sys.executable, f"{HERE}/sink.py", DELIVERED, str(PORT), SINK_MODE])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
            return sink
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the sink did not start")


def start_daemon(extra=()):
    env = dict(os.environ, TRACKQ_TOKEN=TOKEN)
    args = ["trackq", "daemon", "--database", DB, "--socket", SOCK,
            "--endpoint", f"http://127.0.0.1:{PORT}/api/track", "--durability", durability,
            "--retry-initial", "100ms", "--retry-max", "1s", "--max-dead-letters", "10000000",
            "--log-level", "notice", *extra]
    return subprocess.Popen(args, env=env)


def serving():
    """Whether the socket takes a connection (the daemon is ready)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(SOCK)
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_writers(*specs):
    """Starts writer.py for each (NAME, KIND[, LIMIT])."""
    return [subprocess.Popen([sys.executable, f"{HERE}/writer.py", spec[0], spec[1], SOCK, *spec[2:]]) for spec in specs]


window_opened = None


def open_window():
    global window_opened
    window_opened = time.monotonic()
    say("phase window")


def since_window():
    return time.monotonic() - window_opened if window_opened is not None else 0.0


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def watch_queue(interval=0.5, pending=True):
    """Says `state t=SECONDS pending=N bytes=B wal=W` every interval: seconds since the window
    opened, the queue's length (read-only; left out with pending=False, where a reader could
    get in the daemon's way), the database's and the WAL's sizes as the guest sees them."""
    def run():
        while True:
            count = "?"
            if pending:
                try:
                    db = sqlite3.connect(f"file:{DB}?mode=ro", uri=True, timeout=5)
                    count = db.execute("SELECT pending_events FROM counters").fetchone()[0]
                    db.close()
                except sqlite3.Error:
                    pass
            wal = file_size(DB + "-wal")
            say(f"state t={since_window():.1f} pending={count} bytes={file_size(DB) + wal} wal={wal}")
            time.sleep(interval)
    threading.Thread(target=run, daemon=True).start()


def forever():
    while True:
        time.sleep(3600)


# The scenarios: each ends with `phase window`, after which the host cuts within a time it
# chose for the scenario. Apps write all along.

def ingest():
    sink_status(200)
    start_sink()
    start_daemon()
    wait_until(serving, 120, "the daemon")
    if durability == "normal":
        # The control: apps that pause 20 ms between windows (about 7,500 events a second in
        # all), so a WAL checkpoint, the only fsync under NORMAL, comes every few seconds. At
        # full speed one came every ~0.7 s, and on a busy host the acks reached the host's
        # serial log later than that: the cut then took only acks the host had not read yet,
        # and the control lost nothing (CI, once).
        start_writers(("w1", "single", "-", "0.02"), ("w2", "single", "-", "0.02"), ("w3", "batch", "-", "0.02"))
    else:
        start_writers(("w1", "single"), ("w2", "single"), ("w3", "batch"))
    open_window()


def delivery():
    # A backlog builds while the API answers 503, then drains while apps keep writing.
    sink_status(503)
    start_sink()
    start_daemon()
    wait_until(serving, 120, "the daemon")
    start_writers(("w1", "single"), ("w2", "single"), ("w3", "batch"))
    time.sleep(4)
    watch_queue()
    sink_status(200)
    open_window()


def vacuum():
    # 15,000 events of 2 KB (about 30 MB) queue up behind 503s; then they drain, and the
    # daemon gives the freed pages back (incremental vacuum, checkpoints) while an app writes.
    sink_status(503)
    start_sink()
    start_daemon()
    wait_until(serving, 120, "the daemon")
    pad = start_writers(("p1", "pad", "15000"))[0]
    # Apps at a modest rate (about 250 and 500 events a second here), so the drain outruns them.
    start_writers(("w1", "single", "-", "0.2"), ("w3", "batch", "-", "0.2"))
    watch_queue()
    if pad.wait(timeout=600) != 0:
        raise SystemExit("the padding writer failed")
    sink_status(200)
    open_window()


def migration():
    # A schema-4 queue made on the host from Schema.swift's first four migrations; the daemon
    # migrates it at start. Its events count as acked once the copy is on disk.
    shutil.copyfile(f"{HERE}/fixture-v4.db", DB)
    fsync_path(DB)
    fsync_path(CUT_DIR, directory=True)
    with open(f"{HERE}/fixture-v4.count") as f:
        say(f"ack f 1 {int(f.read())}")
    sink_status(200)
    start_sink()
    start_writers(("w1", "single"), ("w2", "single"), ("w3", "batch"))  # they connect once it listens
    open_window()
    # The WAL appears when the daemon puts the file in WAL mode and grows with the migration's
    # transaction; no reader here, it could get in the way of that switch.
    watch_queue(interval=0.2, pending=False)
    start_daemon()
    wait_until(serving, 600, "the daemon")
    say(f"phase ready t={since_window():.1f}")


def requeue():
    # With --max-event-age 1ms every event expires into the dead letters as soon as delivery
    # reads it; `trackq dead requeue --all` puts them back, again and again, while apps write.
    sink_status(200)
    start_sink()
    start_daemon(["--max-event-age", "1ms"])
    wait_until(serving, 120, "the daemon")
    start_writers(("w1", "single"), ("w2", "single"), ("w3", "batch"))
    time.sleep(3)
    open_window()
    n = 0
    while True:
        n += 1
        say(f"phase requeue-start {n}")
        result = subprocess.run(["trackq", "dead", "requeue", "--all", "--database", DB],
                                capture_output=True, text=True)
        said = (result.stdout + result.stderr).strip().replace("\n", " ")
        say(f"phase requeue-done {n} status={result.returncode} {said}")


SCENARIOS = {"ingest": ingest, "delivery": delivery, "vacuum": vacuum, "migration": migration, "requeue": requeue}


# Verify.

MARKER = re.compile(r'"seq"\s*:\s*"([A-Za-z0-9]+)-([0-9]+)"')


def markers(path=DB, when="at-cut"):
    """Every marker in the queue, the dead letters and the sink's file: {name: set(numbers)}.

    A file can hold no tables: with --durability normal the schema a new database got is in
    the WAL until the first checkpoint, and a cut before it leaves the bare file (the daemon
    makes the schema again at its next start). It holds no markers then."""
    found = {}
    texts = []
    if os.path.exists(path):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        for table in ("queue", "dead_letters"):
            if table in tables:
                texts += [row[0] for row in db.execute(f"SELECT body FROM {table}")]
            else:
                say(f"note {when} no {table} in {os.path.basename(path)}")
        db.close()
    if os.path.exists(DELIVERED):
        with open(DELIVERED) as f:
            delivered = f.read()
        for name, number in re.findall(r"([A-Za-z0-9]+)-([0-9]+)", delivered):
            found.setdefault(name, set()).add(int(number))
    for text in texts:
        for name, number in MARKER.findall(text):
            found.setdefault(name, set()).add(int(number))
    return found


def say_ranges(tag, found):
    lines = []
    for name, numbers in sorted(found.items()):
        ordered = sorted(numbers)
        first = last = ordered[0]
        for n in ordered[1:]:
            if n != last + 1:
                lines.append(f"{tag} {name} {first} {last}")
                first = n
            last = n
        lines.append(f"{tag} {name} {first} {last}")
    for i in range(0, len(lines), 50):
        say("\n".join(lines[i:i + 50]))


def sqlite_cli(sql, path=DB):
    result = subprocess.run(["sqlite3", "-readonly", path, sql], capture_output=True, text=True, timeout=600)
    return (result.stdout + result.stderr).strip().replace("\n", " | ")


READ_COPY = f"{BASE}/read-copy"


def as_a_reader_finds_it():
    """The path to read the database at the cut from, untouched by the reading.

    A cut while a transaction in rollback-journal mode was committing (the daemon's switch of
    an older file to WAL mode, before the migration) leaves a hot journal: the first
    read-write open rolls it back, as the daemon's will; a read-only open cannot, and SQLite
    refuses it (SQLITE_READONLY_ROLLBACK, "attempt to write a readonly database"). Then the
    file and its journal are copied aside and the copy is rolled back and read, so the daemon
    still meets the file as the cut left it."""
    journal = DB + "-journal"
    if file_size(journal) == 0:
        return DB
    shutil.rmtree(READ_COPY, ignore_errors=True)
    os.makedirs(READ_COPY)
    copy = f"{READ_COPY}/queue.db"
    shutil.copyfile(DB, copy)
    shutil.copyfile(journal, copy + "-journal")
    if os.path.exists(DB + "-wal"):  # not met: the switch to WAL commits before a WAL exists
        shutil.copyfile(DB + "-wal", copy + "-wal")
    db = sqlite3.connect(copy)
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # rolls a hot journal back
    db.close()
    left = "left" if os.path.exists(copy + "-journal") else "rolled back"
    say(f"journal {file_size(journal)} bytes at the cut, {left} in a copy")
    return copy


def verify():
    if not os.path.isdir(CUT_DIR):
        say(f"error no directory {CUT_DIR}")
        return
    if os.path.exists(DB):
        at_cut = as_a_reader_finds_it()
        say(f"integrity {sqlite_cli('PRAGMA integrity_check', at_cut)}")
        say(f"user_version {sqlite_cli('PRAGMA user_version', at_cut)}")
        say(f"counts queue={sqlite_cli('SELECT count(*) FROM queue', at_cut)} "
            f"dead={sqlite_cli('SELECT count(*) FROM dead_letters', at_cut)}")
        say_ranges("have", markers(at_cut))
        shutil.rmtree(READ_COPY, ignore_errors=True)
    else:
        say("integrity ok (no database yet)")
        say_ranges("have", markers())

    sink_status(200)
    sink = start_sink()
    daemon = start_daemon()
    started = time.monotonic()
    answer = "no answer"
    while time.monotonic() - started < 600 and daemon.poll() is None:
        result = subprocess.run(
            ["trackq", "send", "--socket", SOCK, "--json",
             '{"event_name":"powercut","user_id":"verify","properties":{"seq":"v-1"}}'],
            capture_output=True, text=True)
        answer = (result.stdout + result.stderr).strip().replace("\n", " ")
        if result.returncode == 0 and '"ok":true' in answer:
            break
        time.sleep(0.2)
    if '"ok":true' in answer:
        say(f"serving ok after {time.monotonic() - started:.1f}s: {answer}")
    else:
        say(f"serving failed (daemon exit status {daemon.poll()}): {answer}")
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            say("serving failed: the daemon did not stop within 60 s of SIGTERM")
    sink.kill()
    say(f"after-integrity {sqlite_cli('PRAGMA integrity_check')}")
    say(f"after-user_version {sqlite_cli('PRAGMA user_version')}")
    say_ranges("have-after", markers(when="after"))
    shutil.rmtree(CUT_DIR)
    os.sync()
    say("done")


def main():
    os.makedirs("/run/pc", exist_ok=True)
    if mode == "cut":
        os.makedirs(CUT_DIR, exist_ok=True)
        fsync_path(BASE, directory=True)
        log(f"cut {cut}: scenario {scenario}, durability {durability}")
        SCENARIOS[scenario]()
        forever()
    else:
        log(f"verify {cut}")
        verify()


if __name__ == "__main__":
    try:
        main()
    except BaseException as error:  # the host reads why on the serial port
        say(f"error {type(error).__name__}: {error}")
        raise

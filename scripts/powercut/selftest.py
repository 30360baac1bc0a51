#!/usr/bin/env python3
"""Checks, on the host and in a second, what the verify boot does with a file it cannot simply
read: a queue.db with a hot rollback journal (a cut while the daemon switched an older file to
WAL mode, as CI's migration cut once landed). The verify must read the file as a reader finds
it (the journal rolled back), say so, and leave the file and its journal for the daemon.

Usage: selftest.py (test-powercut.sh runs it before it builds the guest's disk)
"""
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
work = tempfile.mkdtemp(prefix="powercut-selftest.")
os.makedirs(f"{work}/cut-0")
serial = f"{work}/serial"
open(serial, "w").close()
os.environ.update(PC_BASE=work, PC_SERIAL=serial)
sys.argv = ["guest.py", "pc.mode=verify", "pc.cut=0"]
sys.path.insert(0, here)
import guest  # noqa: E402  (reads PC_BASE and PC_SERIAL)

# A committed queue of 2,000 markers, then a transaction that rewrites every row, cut after
# its journal was synced (a small cache spills: SQLite syncs the journal before it writes the
# file) and before it committed: a child process exits in the middle of it.
maker = f"""
import os, sqlite3
db = sqlite3.connect({guest.DB!r}, isolation_level=None)
db.execute("CREATE TABLE queue (body TEXT)")
db.execute("CREATE TABLE dead_letters (body TEXT)")
db.executemany("INSERT INTO queue VALUES (?)",
               [('{{"seq":"f-%d","pad":"%s"}}' % (n, "y" * 500),) for n in range(1, 2001)])
db.execute("PRAGMA user_version = 4")
db.execute("PRAGMA cache_size = 5")
db.execute("BEGIN")
db.execute("UPDATE queue SET body = 'gone'")
os._exit(0)
"""
subprocess.run([sys.executable, "-c", maker], check=True)
journal = guest.DB + "-journal"
with open(journal, "rb") as f:
    assert f.read(8) == bytes.fromhex("d9d505f920a163d7"), "the journal is not hot: the setup is wrong"
refused = subprocess.run(["sqlite3", "-readonly", guest.DB, "PRAGMA user_version"], capture_output=True, text=True)
assert refused.returncode != 0, "a read-only open read a hot journal's file: this test shows nothing"

def digest(file):
    with open(file, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


before = (digest(guest.DB), digest(journal))
path = guest.as_a_reader_finds_it()
assert path != guest.DB, path
assert guest.sqlite_cli("PRAGMA integrity_check", path) == "ok"
assert guest.sqlite_cli("PRAGMA user_version", path) == "4"
found = guest.markers(path)
assert found.get("f") == set(range(1, 2001)), sorted(found)[:5]
assert (digest(guest.DB), digest(journal)) == before, "the reading changed the daemon's file"
said = open(serial).read()
assert said.startswith("journal ") and "rolled back in a copy" in said, said

# A file without a journal is read where it is.
os.remove(journal)
assert guest.as_a_reader_finds_it() == guest.DB
# A file without tables (a new database's schema lost with the WAL of a --durability normal
# cut) holds no markers, and says so.
os.remove(guest.DB)
sqlite3.connect(guest.DB).execute("PRAGMA journal_mode = WAL").fetchone()
assert guest.markers().get("f") is None
assert "note at-cut no queue in queue.db" in open(serial).read()
print("powercut selftest: a hot journal is read rolled back in a copy, the file left as the cut left it; "
      "a file without tables holds no markers")
subprocess.run(["rm", "-rf", work], check=True)

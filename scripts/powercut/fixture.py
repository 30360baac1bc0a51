#!/usr/bin/env python3
"""Makes a queue as an earlier trackq left it (schema 4), for the migration power cut.

Usage: fixture.py SCHEMA_SWIFT OUT_DB EVENTS

The SQL of the first four migrations is read from Sources/TrackQueueStore/Schema.swift at run
time (the multi-line string literals of `Schema.migrations`, in order), so the fixture is what
those migrations make, whatever later ones are added. The queue gets EVENTS events, one row
each, with the markers f-1 ... f-EVENTS (properties.seq) and 500 bytes of padding, so the
migration has some work to do.
"""
import os
import re
import sqlite3
import sys
import time

schema_swift, out, events = sys.argv[1], sys.argv[2], int(sys.argv[3])

source = open(schema_swift).read()
start = source.index("static let migrations: [String] = [")
literals = re.findall(r'"""\n(.*?)\n\s*"""', source[start:], re.S)
if len(literals) < 4:
    sys.exit(f"fixture.py: found {len(literals)} migrations in {schema_swift}, need the first 4")
for sql in literals[:4]:
    if "\\(" in sql:
        sys.exit("fixture.py: a migration uses string interpolation; this reader does not expand it")

if os.path.exists(out):
    os.remove(out)
db = sqlite3.connect(out, isolation_level=None)
for version, sql in enumerate(literals[:4], start=1):
    # Each in its own transaction with its version, as Schema.migrate applies them.
    db.executescript(f"BEGIN;\n{sql}\n;PRAGMA user_version = {version};\nCOMMIT;")

now_ms = int(time.time() * 1000)
pad = "y" * 500
rows = []
total_bytes = 0
for n in range(1, events + 1):
    body = ('{"event_name":"powercut","user_id":"u-f","timestamp":"2026-11-27T05:00:00.000Z",'
            '"properties":{"seq":"f-%d","pad":"%s"}}' % (n, pad))
    total_bytes += len(body)
    rows.append((body, len(body), now_ms, 1000 + n, 1, 0))
db.execute("BEGIN")
db.execute("INSERT INTO boots (id, boot_id) VALUES (1, 'powercut-fixture')")
db.executemany(
    "INSERT INTO queue (body, bytes, accepted_at_ms, accepted_boottime_ms, boot, stamped) VALUES (?, ?, ?, ?, ?, ?)", rows)
db.execute("UPDATE counters SET accepted = ?, pending_events = ?, pending_bytes = ? WHERE id = 1",
           (events, events, total_bytes))
db.execute("COMMIT")
version = db.execute("PRAGMA user_version").fetchone()[0]
count = db.execute("SELECT count(*) FROM queue").fetchone()[0]
db.close()
if version != 4 or count != events:
    sys.exit(f"fixture.py: made user_version {version} with {count} events")
print(f"{out}: schema 4, {count} events, {os.path.getsize(out)} bytes")

#!/usr/bin/env python3
"""An app in the power-cut guest: writes events through trackq's socket and reports each
ack on the second serial port, which the host reads. Only what the host read counts as
acked, so an ack is reported only after the daemon's answer arrived.

Usage: writer.py NAME KIND SOCKET [LIMIT|-] [PAUSE]

KIND: `single` (one event a line, 50 lines pipelined), `batch` (arrays of 20 events, 5
lines pipelined) or `pad` (one event a line with 2,000 bytes of padding, to build a big
backlog). Every event carries a marker that is unique in the run, properties.seq =
"NAME-N" with N counting from 1; a number is never reused, also when its line was refused or
its connection broke. Reports `ack NAME FIRST LAST` for each run of acked numbers. Runs until
killed, or until LIMIT events are acked; waits PAUSE seconds between windows (an app that
writes at a modest rate). Reconnects when the daemon is not there (yet).
"""
import os
import socket
import sys
import time

name, kind, path = sys.argv[1], sys.argv[2], sys.argv[3]
limit = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "-" else None
pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
serial = os.open(os.environ.get("PC_SERIAL", "/dev/ttyS1"), os.O_WRONLY | os.O_NOCTTY | os.O_APPEND | os.O_CREAT)

per_line, lines_per_window = {"single": (1, 50), "batch": (20, 5), "pad": (1, 20)}[kind]
pad = ',"pad":"' + "x" * 2000 + '"' if kind == "pad" else ""


def event(n):
    return '{"event_name":"powercut","user_id":"u-%s","properties":{"seq":"%s-%d"%s}}' % (name, name, n, pad)


def report(runs):
    # One write() per report: lines from several writers never mix on the tty.
    text = "".join("ack %s %d %d\n" % (name, first, last) for first, last in runs)
    if text:
        os.write(serial, text.encode())


next_seq = 1
acked = 0
while limit is None or acked < limit:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
    except OSError:
        s.close()
        time.sleep(0.05)
        continue
    reader = s.makefile("rb")
    try:
        while limit is None or acked < limit:
            window = []
            for _ in range(lines_per_window):
                first = next_seq
                next_seq += per_line
                events = [event(n) for n in range(first, next_seq)]
                window.append((first, next_seq - 1, events[0] if per_line == 1 else "[" + ",".join(events) + "]"))
            s.sendall("".join(line + "\n" for _, _, line in window).encode())
            runs = []
            refused = False
            for first, last, _ in window:
                answer = reader.readline()
                if not answer:
                    report(runs)  # what was answered before the daemon went away
                    raise OSError("the daemon closed the connection")
                if answer.startswith(b'{"ok":true'):
                    acked += last - first + 1
                    if runs and runs[-1][1] == first - 1:
                        runs[-1][1] = last
                    else:
                        runs.append([first, last])
                else:
                    refused = True  # unavailable, queue_full: not acked; its numbers stay unused
            report(runs)
            if refused or pause:
                time.sleep(max(pause, 0.1 if refused else 0))
    except OSError:
        pass
    finally:
        reader.close()
        s.close()

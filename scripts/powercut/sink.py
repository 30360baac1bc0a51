#!/usr/bin/env python3
"""The Track API stand-in inside the power-cut guest, on 127.0.0.1:PORT.

Usage: sink.py DELIVERED_FILE PORT MODE_FILE

For each POST it answers with the status in MODE_FILE (e.g. 503 to build a backlog; 200 when
the file is missing or empty). Before it answers 200 it appends the batch's markers (each
event's properties.seq, space-separated, one line per batch) to DELIVERED_FILE and fsyncs it:
the daemon removes an event only after our 200, so an event it removed is in this file on
disk, whatever the power cut throws away. The caller creates the file and fsyncs its directory.
"""
import http.server
import os
import re
import sys
import threading

delivered_path, port, mode_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
marker = re.compile(rb'"seq"\s*:\s*"([^"]+)"')
lock = threading.Lock()
out = os.open(delivered_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def status_now():
    try:
        with open(mode_path) as f:
            return int(f.read().strip() or "200")
    except (FileNotFoundError, ValueError):
        return 200


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = status_now()
        if status == 200:
            line = b" ".join(marker.findall(body)) + b"\n"
            with lock:
                os.write(out, line)
                os.fsync(out)
        answer = b'{"success":%s}' % (b"true" if status == 200 else b"false")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()

#!/usr/bin/env python3
"""A Track API stand-in on 127.0.0.1 for scripts/test-systemd.sh.

Usage: sink.py DIR TOKEN. Writes its port to DIR/port; appends every event it accepts
(one JSON object per line) to DIR/events. Answers 401 without "Authorization: Bearer TOKEN",
and the status in DIR/mode when that file exists (e.g. 503 to hold events back), else 200.
"""
import http.server
import json
import os
import sys

directory, token = sys.argv[1], sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = 200
        if self.headers.get("Authorization") != "Bearer " + token:
            status = 401
        else:
            try:
                with open(os.path.join(directory, "mode")) as f:
                    status = int(f.read().strip() or "200")
            except FileNotFoundError:
                pass
        if status == 200:
            with open(os.path.join(directory, "events"), "a") as f:
                for event in json.loads(body):
                    f.write(json.dumps(event) + "\n")
        answer = json.dumps({"success": status == 200}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(os.path.join(directory, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(directory, "port.tmp"), os.path.join(directory, "port"))
server.serve_forever()

#!/usr/bin/env python3
"""Bytes on the wire per event, with and without --compression gzip (issue 23).

Usage: Benchmarks/wire_bytes.py BINARY [EVENTS]

Runs the daemon twice per kind of event against a sink on 127.0.0.1 that sums the request
bodies' Content-Length, sends EVENTS events (default 20000) through the socket, waits for the
sink to have them all, and prints one JSON line per run: the body bytes and request headers'
bytes per event, and the ratio. Kinds: `bench` (bench.py's and compare.sh's event: the same
but for properties.seq) and `varied` (a fresh user id, device, time and values per event:
closer to a real app's stream). The daemon adds context.trackq to each event as it is sent
(--clock-annotation, the default), so that is counted too.
"""
import json, os, random, socket, subprocess, sys, tempfile, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BINARY = sys.argv[1]
EVENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 20000


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body_bytes = 0
    header_bytes = 0
    events = 0
    requests = 0
    lock = threading.Lock()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip
            plain = gzip.decompress(body)
        else:
            plain = body
        with Sink.lock:
            Sink.body_bytes += length
            Sink.header_bytes += len(self.requestline) + 2 + len(str(self.headers)) + 2
            Sink.events += plain.count(b'"event_name"')
            Sink.requests += 1
        answer = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def bench_event(i):
    return {"event_name": "signed_in", "user_id": "3e474abe-5943-41fd-8b7b-4c87ad95b0c7",
            "timestamp": "2026-11-27T05:00:00.000Z",
            "properties": {"user_name": "John Doe", "email": "JohnDoe@acmalabs.com", "plan": "pro", "seq": i},
            "context": {"group_id": "ng6SrfNCx", "device_id": "edge-0042"}}


def varied_event(i, rng=random.Random(7)):
    names = ["signed_in", "page_viewed", "item_added", "checkout_started", "search"]
    return {"event_name": rng.choice(names), "user_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1795000000 + rng.randrange(86400))) + ".%03dZ" % rng.randrange(1000),
            "properties": {"path": "/products/%d" % rng.randrange(5000), "price": round(rng.uniform(1, 500), 2),
                           "plan": rng.choice(["free", "pro", "team"]), "seq": i},
            "context": {"group_id": "g%06d" % rng.randrange(10**6), "device_id": "edge-%04d" % rng.randrange(10**4)}}


def run(kind, compression):
    Sink.body_bytes = Sink.header_bytes = Sink.events = Sink.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="trackq-wire-")
    sock = os.path.join(work, "trackq.sock")
    daemon = subprocess.Popen(
        [BINARY, "daemon", "--socket", sock, "--database", os.path.join(work, "queue.db"),
         "--endpoint", "http://127.0.0.1:%d/api/track" % server.server_address[1], "--compression", compression],
        env=dict(os.environ, TRACKQ_TOKEN="wire-bytes"), stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.05)
        make = bench_event if kind == "bench" else varied_event
        plain_bytes = 0
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        reader = s.makefile("rb")
        for start in range(0, EVENTS, 1000):
            lines = [json.dumps(make(i), separators=(",", ":")) for i in range(start, min(EVENTS, start + 1000))]
            plain_bytes += sum(len(line) for line in lines)
            s.sendall(("\n".join(lines) + "\n").encode())
            for _ in lines:
                assert b'"ok":true' in reader.readline()
        deadline = time.time() + 120
        while Sink.events < EVENTS and time.time() < deadline:
            time.sleep(0.05)
        s.close()
    finally:
        daemon.terminate()
        daemon.wait()
        server.shutdown()
    return {"kind": kind, "compression": compression, "events": Sink.events, "requests": Sink.requests,
            "app_bytes_per_event": round(plain_bytes / EVENTS, 1),
            "body_bytes_per_event": round(Sink.body_bytes / Sink.events, 1),
            "header_bytes_per_event": round(Sink.header_bytes / Sink.events, 2)}


for kind in ("bench", "varied"):
    none = run(kind, "none")
    gz = run(kind, "gzip")
    print(json.dumps(none))
    print(json.dumps(gz))
    print(json.dumps({"kind": kind, "gzip_body_ratio": round(gz["body_bytes_per_event"] / none["body_bytes_per_event"], 3)}))

#!/usr/bin/env python3
"""trackq's own benchmark: the figures BENCHMARKS.md keeps, from one release binary.

  Benchmarks/bench.py BINARY [--events N] [--backlog N] [--big-backlog N]

Runs real daemons on a temporary directory, a real Unix socket and a local HTTP sink on
127.0.0.1, with Track API events of about 270 bytes (the shape ../shared/bench uses), and
prints a table and, last, one JSON line. Not part of the test command: it takes minutes and
its figures depend on the machine.

  ingest_1conn, ingest_16conn   acked events/s, pipelined (write all, read the acks)
  ack_one_in_flight             p50/p99/max ms, one event at a time
  ack_paced_10k                 p50/p99/max ms at a paced 10,000 events/s
  http_ingest_1conn_100         acked events/s over the socket's HTTP face: one keep-alive
                                connection, POST /api/track with 100 events, one at a time
  e2e                           events/s from the first write to the last event in the sink
  cpu_us_per_event              the daemon's user+system CPU per event over ingest + delivery
  db_bytes_per_event            database size / events, with the backlog queued
  restart_to_ready_ms           start to READY=1 with the backlog queued
  drain                         events/s delivering the backlog to the sink, and peak RSS
  db_bytes_after_drain, shrink_s  database size once it stopped shrinking after the drain, and
                                how long giving the space back took
  big_drain_rss_kib             peak RSS while a --big-backlog (default 5M) drains (slow)
"""
import argparse, json, os, socket, subprocess, sys, tempfile, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENT = {"event_name": "signed_in", "user_id": "3e474abe-5943-41fd-8b7b-4c87ad95b0c7",
         "timestamp": "2026-11-27T05:00:00.000Z",
         "properties": {"user_name": "John Doe", "email": "JohnDoe@acmalabs.com", "plan": "pro", "seq": 0},
         "context": {"group_id": "ng6SrfNCx", "device_id": "edge-0042"}}


def lines(start, count):
    out = []
    for i in range(start, start + count):
        EVENT["properties"]["seq"] = i
        out.append(json.dumps(EVENT, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


class SinkHandler(BaseHTTPRequestHandler):
    """A Track API stand-in: counts the events it is sent (without parsing) and answers 200
    in one write (several small writes would meet Nagle and delayed ACKs: 40 ms a request)."""
    protocol_version = "HTTP/1.1"
    events = 0
    lock = threading.Lock()

    def reply(self, body):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))

    def do_GET(self):
        with SinkHandler.lock:
            self.reply(json.dumps({"events": SinkHandler.events}).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with SinkHandler.lock:
            SinkHandler.events += body.count(b'"event_name"')
        self.reply(b'{"success":true,"message":"Event(s) tracked successfully"}')

    def log_message(self, *args):
        pass


class SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


def serve_sink(port_file):
    server = SinkServer(("127.0.0.1", 0), SinkHandler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


class Sink:
    """The sink in a process of its own, so it does not share the load generator's GIL."""

    def __init__(self, work):
        port_file = os.path.join(work, "sink.port")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-sink", port_file])
        while not os.path.exists(port_file):
            time.sleep(0.01)
        self.port = int(open(port_file).read())

    def count(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/") as answer:
            return json.load(answer)["events"]

    def wait_for(self, n, timeout=600):
        deadline = time.monotonic() + timeout
        while self.count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink has {self.count()} of {n}")
            time.sleep(0.01)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Daemon:
    def __init__(self, binary, work, endpoint, extra=()):
        self.socket = os.path.join(work, "trackq.sock")
        self.database = os.path.join(work, "queue.db")
        notify = os.path.join(work, "notify.sock")
        if os.path.exists(notify):
            os.unlink(notify)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify)
        env = dict(os.environ, TRACKQ_TOKEN="bench", NOTIFY_SOCKET=notify)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [binary, "daemon", "--socket", self.socket, "--database", self.database, "--endpoint", endpoint,
             "--log-level", "error", *extra],
            env=env, stderr=open(os.path.join(work, "daemon.log"), "ab"))
        self.notify.settimeout(120)
        while True:
            message = self.notify.recv(4096)
            if b"READY=1" in message.split(b"\n"):
                break
        self.ready_ms = (time.perf_counter() - self.started) * 1000

    def cpu_seconds(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.notify.close()


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def pipeline(path, start, n, connections=1):
    """Writes n events over `connections` connections, reads every ack; acked events/s."""
    per = n // connections
    chunks = [lines(start + k * per, per) for k in range(connections)]
    acked = [0] * connections

    def run(k):
        s = connect(path)

        def reader():
            # A bytearray grows in place: `bytes += data` copies all answers so far on every
            # read, which made this client, not the daemon, the limit (about 300k against
            # 550k events/s on one connection here).
            got, buf = 0, bytearray()
            while got < per:
                data = s.recv(1 << 20)
                if not data:
                    break
                got += data.count(b"\n")
                buf += data
            acked[k] = buf.count(b'"ok":true')

        r = threading.Thread(target=reader)
        r.start()
        s.sendall(chunks[k])
        r.join()
        s.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=run, args=(k,)) for k in range(connections)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    seconds = time.perf_counter() - t0
    assert sum(acked) == per * connections, (sum(acked), per * connections)
    return per * connections / seconds


def percentiles(samples):
    samples.sort()
    q = lambda f: round(samples[min(len(samples) - 1, int(f * len(samples)))], 3)
    return {"p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(samples[-1], 3)}


def one_in_flight(path, start, n):
    s = connect(path)
    payloads = [lines(start + i, 1) for i in range(n)]
    out, buf = [], b""
    for payload in payloads:
        t = time.perf_counter()
        s.sendall(payload)
        while b"\n" not in buf:
            buf += s.recv(4096)
        answer, buf = buf.split(b"\n", 1)
        out.append((time.perf_counter() - t) * 1000)
        assert b'"ok":true' in answer, answer
    s.close()
    return percentiles(out)


def paced(path, start, n, rate):
    """Writes n events at `rate` per second on one connection; each ack's latency."""
    s = connect(path)
    sent = [0.0] * n
    latencies = []

    def reader():
        buf, got = b"", 0
        while got < n:
            data = s.recv(1 << 16)
            if not data:
                break
            now = time.perf_counter()
            buf += data
            while b"\n" in buf:
                answer, buf = buf.split(b"\n", 1)
                assert b'"ok":true' in answer, answer
                latencies.append((now - sent[got]) * 1000)
                got += 1

    r = threading.Thread(target=reader)
    r.start()
    payloads = [lines(start + i, 1) for i in range(n)]
    t0 = time.perf_counter()
    for i, payload in enumerate(payloads):
        due = t0 + i / rate
        while time.perf_counter() < due:
            pass
        sent[i] = time.perf_counter()
        s.sendall(payload)
    r.join()
    s.close()
    return percentiles(latencies)


def http_keepalive(path, start, requests, per_request=100):
    """POSTs `requests` bodies of `per_request` events each to /api/track, one after another on
    one keep-alive connection (an HTTP app's way); acked events/s."""
    bodies = []
    for r in range(requests):
        events = lines(start + r * per_request, per_request).rstrip(b"\n").replace(b"\n", b",")
        body = b"[" + events + b"]"
        bodies.append(b"POST /api/track HTTP/1.1\r\nHost: trackq\r\nContent-Type: application/json\r\n"
                      + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    s = connect(path)
    buf, accepted = b"", 0
    t0 = time.perf_counter()
    for request in bodies:
        s.sendall(request)
        while b"\r\n\r\n" not in buf:
            buf += s.recv(1 << 16)
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(buf) < length:
            buf += s.recv(1 << 16)
        answer, buf = buf[:length], buf[length:]
        assert head.startswith(b"HTTP/1.1 200"), (head, answer)
        accepted += json.loads(answer)["accepted"]
    seconds = time.perf_counter() - t0
    s.close()
    assert accepted == requests * per_request, accepted
    return accepted / seconds


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-sink":
        serve_sink(sys.argv[2])
        return
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--backlog", type=int, default=1_000_000)
    p.add_argument("--big-backlog", type=int, default=0, help="also drain this many (e.g. 5000000) and report RSS")
    a = p.parse_args()
    results = {}
    sink_dir = tempfile.mkdtemp(prefix="trackq-bench-sink.")
    sink = Sink(sink_dir)
    endpoint = f"http://127.0.0.1:{sink.port}/api/track"
    nowhere = "http://127.0.0.1:9/api/track"

    with tempfile.TemporaryDirectory(prefix="trackq-bench.") as work:
        # Ingest, latency, end to end and CPU, delivering to the sink as it goes.
        d = Daemon(a.binary, work, endpoint)
        cpu0, t0 = d.cpu_seconds(), time.perf_counter()
        results["ingest_1conn"] = round(pipeline(d.socket, 0, a.events))
        sink.wait_for(a.events)
        results["e2e"] = round(a.events / (time.perf_counter() - t0))
        results["cpu_us_per_event"] = round((d.cpu_seconds() - cpu0) * 1e6 / a.events, 2)
        results["ingest_16conn"] = round(pipeline(d.socket, a.events, a.events, connections=16))
        # Latency with delivery idle, as an app sees it between bursts.
        sink.wait_for(2 * a.events)
        results["ack_one_in_flight"] = one_in_flight(d.socket, 2 * a.events, 3000)
        results["ack_paced_10k"] = paced(d.socket, 2 * a.events + 3000, 30_000, 10_000)
        # The HTTP face: one keep-alive connection, 100 events a request, one request at a time.
        results["http_ingest_1conn_100"] = round(http_keepalive(d.socket, 2 * a.events + 33_000, 1000))
        results["peak_rss_kib"] = d.peak_rss_kib()
        d.stop()

    with tempfile.TemporaryDirectory(prefix="trackq-bench.") as work:
        # A backlog: the API unreachable while it is written.
        d = Daemon(a.binary, work, nowhere, ["--retry-max", "1h"])
        pipeline(d.socket, 0, a.backlog)
        d.stop()
        results["db_bytes_per_event"] = round(
            sum(os.path.getsize(os.path.join(work, f)) for f in os.listdir(work) if f.startswith("queue.db"))
            / a.backlog, 1)
        before = sink.count()
        d = Daemon(a.binary, work, endpoint)
        results["restart_to_ready_ms"] = round(d.ready_ms, 1)
        t0 = time.perf_counter()
        sink.wait_for(before + a.backlog)
        results["drain"] = round(a.backlog / (time.perf_counter() - t0))
        results["drain_peak_rss_kib"] = d.peak_rss_kib()
        # The daemon gives the space back once apps leave it room: wait until the file stops
        # shrinking (3 s unchanged, at most 5 minutes) and say how long that took.
        def db_bytes():
            return sum(os.path.getsize(os.path.join(work, f)) for f in os.listdir(work) if f.startswith("queue.db"))
        t0, last, still = time.perf_counter(), db_bytes(), 0
        while still < 6 and time.perf_counter() - t0 < 300:
            time.sleep(0.5)
            size = db_bytes()
            still = still + 1 if size == last else 0
            last = size
        results["shrink_s"] = round(time.perf_counter() - t0 - 3, 1)
        d.stop()
        results["db_bytes_after_drain"] = db_bytes()

    if a.big_backlog:
        with tempfile.TemporaryDirectory(prefix="trackq-bench.") as work:
            d = Daemon(a.binary, work, nowhere, ["--retry-max", "1h", "--max-queue-bytes", "64GiB"])
            written = 0
            while written < a.big_backlog:
                step = min(1_000_000, a.big_backlog - written)
                pipeline(d.socket, written, step)
                written += step
            d.stop()
            before = sink.count()
            d = Daemon(a.binary, work, endpoint)
            sink.wait_for(before + a.big_backlog, timeout=3600)
            results["big_drain_rss_kib"] = d.peak_rss_kib()
            d.stop()

    sink.stop()
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""POST an oversize JSON body the way an app would, with http.client, and say what came back.

Usage: oversize_post.py URL [SIZE] [--small] [--sndbuf=BYTES]
  URL     e.g. http://127.0.0.1:PORT/api/track
  SIZE    body size in bytes (default 2250000)
  --small send a small valid event instead (expect status 200)
  --sndbuf=BYTES  fix the socket's send buffer (SO_SNDBUF) at BYTES before connecting, as a
          slower link would: on loopback Linux grows the buffer to net.ipv4.tcp_wmem's
          maximum (4 MiB), so a smaller body is handed to the kernel whole before the
          server answers and the early close goes unseen. Off by default.

Prints one line: `status <code>` (exit 0) if an HTTP response was read, else
`error <description>` (exit 1). Gives up after 10 seconds.

A BrokenPipeError or ConnectionResetError raised while request() sends the body is
reported as an error, not worked around: it is what requests and urllib see too.
"""

import http.client
import signal
import socket
import sys
import urllib.parse

TIMEOUT = 10.0
DEFAULT_SIZE = 2_250_000


def body_of(size):
    head = b'{"event_name":"oversize_client","user_id":"u1","properties":{"padding":"'
    tail = b'"}}'
    return head + b"x" * max(size - len(head) - len(tail), 0) + tail


def finish(line, code):
    sys.stdout.write(" ".join(line.split()) + "\n")
    sys.stdout.flush()
    sys.exit(code)


class SmallBufferConnection(http.client.HTTPConnection):
    """An HTTPConnection whose socket has a fixed send buffer; otherwise http.client's own."""

    sndbuf = 0

    def connect(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        sock.settimeout(self.timeout)
        sock.connect((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock


def on_alarm(signum, frame):
    raise TimeoutError(f"no answer within {TIMEOUT:g}s")


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    url = urllib.parse.urlsplit(argv[1])
    rest = argv[2:]
    small = "--small" in rest
    sndbuf = [int(a.split("=", 1)[1]) for a in rest if a.startswith("--sndbuf=")]
    sizes = [a for a in rest if not a.startswith("--")]
    size = int(sizes[0]) if sizes else DEFAULT_SIZE
    if small:
        body = b'{"event_name":"oversize_client_small","user_id":"u1"}'
    else:
        body = body_of(size)
    path = url.path or "/"
    if url.query:
        path += "?" + url.query

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
    if sndbuf:
        SmallBufferConnection.sndbuf = sndbuf[0]
        conn = SmallBufferConnection(url.hostname, url.port or 80, timeout=TIMEOUT)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=TIMEOUT)
    try:
        # bytes body: http.client sets Content-Length and sends it all inside request().
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        status = response.status
    except Exception as error:  # BrokenPipeError, ConnectionResetError, TimeoutError, ...
        signal.setitimer(signal.ITIMER_REAL, 0)
        finish(f"error {type(error).__name__} {error}", 1)
    signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        conn.close()
    except Exception:
        pass
    finish(f"status {status}", 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

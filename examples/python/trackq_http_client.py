#!/usr/bin/env python3
"""trackq over HTTP on its Unix socket, standard library only: the Track API's own call.

    python3 trackq_http_client.py '{"event_name":"signed_in","user_id":"u1"}' ...
Each argument is POSTed to /api/track as one request (an object, or an array for one atomic
batch) on one keep-alive connection; each answer body is printed. Socket: $TRACKQ_SOCKET, else
/run/trackq/trackq.sock. Exit 0 if every request was accepted, 1 if one was refused, 2 if the
daemon cannot be reached.
"""
import http.client, json, os, socket, sys


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket: only the connect step differs."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def track(bodies, path=os.environ.get("TRACKQ_SOCKET") or "/run/trackq/trackq.sock"):
    """POSTs each body (JSON text, or a dict/list to serialise); returns (status, answer) pairs."""
    connection = UnixHTTPConnection(path)
    try:
        results = []
        for body in bodies:
            text = body if isinstance(body, str) else json.dumps(body)
            connection.request("POST", "/api/track", body=text.encode(), headers={"Content-Type": "application/json"})
            response = connection.getresponse()  # read whole before the next request on this connection
            results.append((response.status, json.loads(response.read())))
        return results
    finally:
        connection.close()


if __name__ == "__main__":
    path = os.environ.get("TRACKQ_SOCKET") or "/run/trackq/trackq.sock"
    try:
        results = track(sys.argv[1:], path)
    except OSError as e:
        print(f"trackq: cannot reach the daemon at {path}: {e}", file=sys.stderr)
        sys.exit(2)
    for _, answer in results:
        print(json.dumps(answer, separators=(",", ":")))
    sys.exit(0 if all(status == 200 for status, _ in results) else 1)

#!/usr/bin/env python3
"""The smallest trackq client: write JSON lines to the socket, read one answer per line.

    python3 trackq_client.py '{"event_name":"signed_in","user_id":"u1"}' ...
Socket: $TRACKQ_SOCKET, else /run/trackq/trackq.sock. Exit 0 only if every event was accepted.
"""
import json, os, socket, sys


def send(events, path=os.environ.get("TRACKQ_SOCKET", "/run/trackq/trackq.sock")):
    """Sends each event (a dict, or a list of dicts for one atomic batch); returns the answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(b"".join(json.dumps(e).encode() + b"\n" for e in events))
        reader = s.makefile("rb")
        return [json.loads(reader.readline()) for _ in events]  # one answer per line, in order


if __name__ == "__main__":
    answers = send([json.loads(arg) for arg in sys.argv[1:]])
    for answer in answers:
        print(json.dumps(answer))
    sys.exit(0 if all(a["ok"] for a in answers) else 1)

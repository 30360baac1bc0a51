#!/usr/bin/env python3
"""The smallest trackq client: write JSON lines to the socket, read one answer per line.

    python3 trackq_client.py '{"event_name":"signed_in","user_id":"u1"}' ...
Socket: $TRACKQ_SOCKET, else /run/trackq/trackq.sock. Exit 0 if every event was accepted, 1 if one
was refused, 2 if the daemon cannot be reached.
"""
import json, os, socket, sys


def send(events, path=os.environ.get("TRACKQ_SOCKET") or "/run/trackq/trackq.sock"):
    """Sends each event (a dict, or a list of dicts for one atomic batch); returns the answers."""
    answers = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        reader = s.makefile("rb")
        for i in range(0, len(events), 500):  # read answers as we go: trackq stops reading a client that doesn't
            chunk = events[i:i + 500]
            s.sendall(b"".join(json.dumps(e).encode() + b"\n" for e in chunk))
            answers += [json.loads(reader.readline()) for _ in chunk]  # one answer per line, in order
    return answers


if __name__ == "__main__":
    try:
        answers = send([json.loads(arg) for arg in sys.argv[1:]])
    except OSError as e:
        print(f"trackq: cannot reach the daemon at {os.environ.get('TRACKQ_SOCKET') or '/run/trackq/trackq.sock'}: {e}", file=sys.stderr)
        sys.exit(2)
    for answer in answers:
        print(json.dumps(answer))
    sys.exit(0 if all(a["ok"] for a in answers) else 1)

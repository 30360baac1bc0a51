#!/bin/sh
# The smallest trackq client for a shell: each argument is one JSON line (an event, or an array
# of events for one atomic batch); prints the daemon's answer to each, in order.
#
#   examples/shell/trackq-send.sh '{"event_name":"signed_in","user_id":"u1"}' ...
#
# Socket: $TRACKQ_SOCKET, else /run/trackq/trackq.sock. Needs socat.
# Exit 0 only if every line was accepted; 1 if any was refused; 2 if the daemon is unreachable
# (or the connection ended before every answer came: those lines' fate is unknown).
set -u

sock=${TRACKQ_SOCKET:-/run/trackq/trackq.sock}
me=trackq-send

if ! command -v socat >/dev/null 2>&1; then
    echo "$me: socat is not installed" >&2
    exit 127
fi
case $sock in
    *,* | *:*) echo "$me: cannot use socket path $sock with socat (it contains ',' or ':')" >&2; exit 2 ;;
esac

# One line per argument. A line feed is only ever whitespace in JSON, so turning line feeds
# into spaces keeps an argument one line without changing its meaning. A blank line would get
# no answer: refuse it here.
n=0
for arg in "$@"; do
    n=$((n + 1))
    case $(printf '%s' "$arg" | tr -d ' \t\r\n') in
        '') echo "$me: argument $n is blank" >&2; exit 1 ;;
    esac
done
[ "$n" -eq 0 ] && exit 0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/trackq-send.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# socat writes the lines, half-closes at the end of its input, and prints what the daemon
# answers until the daemon closes (after its last answer); -t bounds that wait.
for arg in "$@"; do printf '%s\n' "$arg" | tr '\r\n' '  '; printf '\n'; done \
    | socat -t 30 - "UNIX-CONNECT:$sock" >"$tmp/answers" 2>"$tmp/errors"
status=$?

answers=$(grep -c . "$tmp/answers")
cat "$tmp/answers"
if [ "$answers" -lt "$n" ]; then
    if [ "$answers" -eq 0 ] && [ "$status" -ne 0 ]; then
        reason=$(sed -n 's/.* E .*: \([^:]*\)$/\1/p' "$tmp/errors" | head -n 1)
        echo "$me: cannot connect to trackq at $sock: ${reason:-socat exited with $status}" >&2
    else
        echo "$me: the connection to $sock ended after $answers of $n answers; the other lines' fate is unknown" >&2
    fi
    exit 2
fi
# The daemon writes its answers compactly: an accepted line starts with {"ok":true.
if grep -qv '^{"ok":true' "$tmp/answers"; then exit 1; fi
exit 0

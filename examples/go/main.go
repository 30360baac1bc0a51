// Command trackq-example is the smallest trackq client in Go (standard library only): it
// writes each argument as one JSON line to the socket and prints the daemon's answer to each.
//
//	go build -o trackq-example . && ./trackq-example '{"event_name":"signed_in","user_id":"u1"}' ...
//
// Socket: $TRACKQ_SOCKET, else /run/trackq/trackq.sock. Exit 0 only if every line was
// accepted, 1 if any was refused, 2 if the daemon is unreachable (or the connection ended
// before every answer came: those lines' fate is unknown).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Answer is the daemon's answer to one line.
type Answer struct {
	OK       bool   `json:"ok"`
	Accepted int    `json:"accepted"`
	FirstID  *int64 `json:"first_id,omitempty"`
	LastID   *int64 `json:"last_id,omitempty"`
	Error    string `json:"error,omitempty"`
	Message  string `json:"message,omitempty"`
}

// ErrUnreachable wraps a failure to connect.
var ErrUnreachable = errors.New("cannot connect to trackq")

// Send writes each line (JSON text: an object for one event, an array for one atomic batch)
// on one connection and returns the answers, one per line, in order, with the raw answer
// lines. On an error after connecting, the answers that came are returned with it.
func Send(path string, lines []string, timeout time.Duration) ([]Answer, []string, error) {
	if len(lines) == 0 {
		return nil, nil, nil
	}
	var payload strings.Builder
	for i, line := range lines {
		// A line feed is only ever whitespace in JSON: as a space, the text stays one line.
		line = strings.NewReplacer("\r", " ", "\n", " ").Replace(line)
		if strings.TrimSpace(line) == "" {
			return nil, nil, fmt.Errorf("line %d is blank (it would get no answer)", i+1)
		}
		payload.WriteString(line)
		payload.WriteByte('\n')
	}

	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Err != nil {
			err = opErr.Err
		}
		return nil, nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, path, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, nil, err
	}

	// Write from another goroutine while reading answers here: the daemon stops reading lines
	// while its answers are not read, so writing everything first could block forever.
	writeErr := make(chan error, 1)
	go func() {
		_, err := conn.Write([]byte(payload.String()))
		if err == nil {
			err = conn.(*net.UnixConn).CloseWrite()
		}
		writeErr <- err
	}()

	reader := bufio.NewReader(conn)
	answers := make([]Answer, 0, len(lines))
	raw := make([]string, 0, len(lines))
	for len(answers) < len(lines) {
		line, err := reader.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if err != nil {
				return answers, raw, fmt.Errorf("the connection to %s ended after %d of %d answers; the other lines' fate is unknown (%v)",
					path, len(answers), len(lines), err)
			}
			continue
		}
		var answer Answer
		if jsonErr := json.Unmarshal([]byte(line), &answer); jsonErr != nil {
			return answers, raw, fmt.Errorf("trackq sent something that is not an answer: %q", line)
		}
		answers = append(answers, answer)
		raw = append(raw, line)
	}
	conn.Close() // unblocks the writer if the daemon stopped reading early
	<-writeErr
	return answers, raw, nil
}

func main() {
	path := os.Getenv("TRACKQ_SOCKET")
	if path == "" {
		path = "/run/trackq/trackq.sock"
	}
	for i, arg := range os.Args[1:] {
		if strings.TrimSpace(arg) == "" {
			fmt.Fprintf(os.Stderr, "trackq-example: argument %d is blank\n", i+1)
			os.Exit(1)
		}
	}
	// Arguments go as they are; the daemon judges them.
	answers, raw, err := Send(path, os.Args[1:], 30*time.Second)
	for _, line := range raw {
		fmt.Println(line)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "trackq-example: %v\n", err)
		os.Exit(2)
	}
	for _, answer := range answers {
		if !answer.OK {
			os.Exit(1)
		}
	}
}

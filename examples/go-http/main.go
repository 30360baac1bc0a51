// Command trackq-http-example sends events to trackq over HTTP on its Unix socket, the Track
// API's own call, with net/http and a Unix dialer (standard library only).
//
//	go build -o trackq-http-example . && ./trackq-http-example '{"event_name":"signed_in","user_id":"u1"}' ...
//
// Each argument is POSTed to /api/track as one request (an object, or an array for one atomic
// batch) on a keep-alive connection; each answer body is printed. Socket: $TRACKQ_SOCKET, else
// /run/trackq/trackq.sock. Exit 0 only if every request was accepted (200), 1 if any was
// refused, 2 if the daemon is unreachable.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// NewClient returns an http.Client whose every connection goes to the Unix socket at path;
// the URL's host is then only a name (http://trackq/api/track).
func NewClient(path string, timeout time.Duration) *http.Client {
	dialer := net.Dialer{Timeout: timeout}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", path)
			},
			MaxIdleConnsPerHost: 1,
		},
	}
}

// Track POSTs one body (JSON text) and returns the status and the answer body.
func Track(client *http.Client, body string) (int, string, error) {
	response, err := client.Post("http://trackq/api/track", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer response.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	return response.StatusCode, string(answer), err
}

func main() {
	path := os.Getenv("TRACKQ_SOCKET")
	if path == "" {
		path = "/run/trackq/trackq.sock"
	}
	client := NewClient(path, 30*time.Second)
	refused := false
	for _, body := range os.Args[1:] {
		status, answer, err := Track(client, body)
		if err != nil {
			fmt.Fprintf(os.Stderr, "trackq-http-example: cannot reach trackq at %s: %v\n", path, err)
			os.Exit(2)
		}
		fmt.Println(strings.TrimSpace(answer))
		if status != http.StatusOK {
			refused = true
		}
	}
	if refused {
		os.Exit(1)
	}
}

// POST an oversize JSON body the way an app would, with net/http, and say what came back.
//
// Usage: go run oversize_post.go URL [SIZE] [--small]
//
//	URL     e.g. http://127.0.0.1:PORT/api/track
//	SIZE    body size in bytes (default 2250000)
//	--small send a small valid event instead (expect status 200)
//
// Prints one line: `status <code>` (exit 0) if an HTTP response was read, else
// `error <description>` (exit 1). Gives up after 10 seconds. Standard library only; no
// go.mod needed.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const defaultSize = 2250000

func bodyOf(size int) []byte {
	head := `{"event_name":"oversize_client","user_id":"u1","properties":{"padding":"`
	tail := `"}}`
	pad := size - len(head) - len(tail)
	if pad < 0 {
		pad = 0
	}
	return []byte(head + strings.Repeat("x", pad) + tail)
}

func finish(line string, code int) {
	fmt.Println(strings.Join(strings.Fields(line), " "))
	os.Exit(code)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: oversize_post URL [SIZE] [--small]")
		os.Exit(2)
	}
	url := os.Args[1]
	small := false
	size := defaultSize
	for _, arg := range os.Args[2:] {
		if arg == "--small" {
			small = true
			continue
		}
		n, err := strconv.Atoi(arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad size:", arg)
			os.Exit(2)
		}
		size = n
	}
	var body []byte
	if small {
		body = []byte(`{"event_name":"oversize_client_small","user_id":"u1"}`)
	} else {
		body = bodyOf(size)
	}

	// A *bytes.Reader body: NewRequest sets ContentLength, so the body is not chunked.
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		finish("error "+err.Error(), 1)
	}
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	resp, err := client.Do(req)
	if err != nil {
		finish("error "+err.Error(), 1)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	finish("status "+strconv.Itoa(resp.StatusCode), 0)
}

//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSendCheckedLooksBeforeWriting: the connection loop writes a request
// on a pooled replica connection only after a look at it in the same turn
// of the poller (sendChecked), which replaced the peek before each reuse.
// A connection holding stray bytes, or one the replica closed, gets
// errStale and not one byte of the request (issue 16, fault 8); a clean
// one gets the whole request, and with wait the call returns once the
// answer can be read. peerClosed tells a closed connection from one with
// stray bytes (the idle ones older than a closed one are dropped).
func TestSendCheckedLooksBeforeWriting(t *testing.T) {
	const req = "GET /v1/x HTTP/1.1\r\nHost: r\r\n\r\n"
	for _, tc := range []struct {
		name  string
		first func(c net.Conn) // what the replica does before the request
		stale bool
		gone  bool // peerClosed
	}{
		{"stray bytes", func(c net.Conn) { _, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!") }, true, false},
		{"closed", func(c net.Conn) { _ = c.(*net.TCPConn).CloseWrite() }, true, true},
		{"clean", func(net.Conn) {}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			addr := rawBackend(t, func(c net.Conn) {
				tc.first(c)
				buf := make([]byte, len(req))
				n, _ := io.ReadFull(c, buf)
				got <- buf[:n]
				if n == len(req) {
					_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
				}
			})
			c, _ := dialRaw(t, strings.TrimPrefix(addr, "http://"))
			if tc.stale {
				awaitPeer(t, c) // what the replica sent has arrived
			}
			var p peeker
			n, err := p.sendChecked(c, []byte(req), true)
			if p.peerClosed() != tc.gone {
				t.Errorf("peerClosed %v, want %v", p.peerClosed(), tc.gone)
			}
			if tc.stale {
				if !errors.Is(err, errStale) || n != 0 {
					t.Fatalf("sendChecked: %d, %v; want 0, errStale", n, err)
				}
				_ = c.Close()
				if b := <-got; len(b) != 0 {
					t.Fatalf("the replica got %q, want nothing", b)
				}
				return
			}
			if err != nil || n != len(req) {
				t.Fatalf("sendChecked: %d, %v; want %d, nil", n, err, len(req))
			}
			if b := <-got; string(b) != req {
				t.Fatalf("the replica got %q", b)
			}
			if st := peekClient(c); st != peerSent {
				t.Fatalf("after the wait the answer is not there to read (%v)", st)
			}
		})
	}
}

// awaitPeer waits until c has something to read (bytes or an end of
// file), without reading it.
func awaitPeer(t *testing.T, c net.Conn) {
	t.Helper()
	for deadline := time.Now().Add(testWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if peekClient(c) != peerQuiet {
			return
		}
	}
	t.Fatal("nothing arrived from the replica")
}

// TestSendCheckedAfterParkedStream: the replica connection of a stream
// that parked (its wait on the socket's readiness, park_linux.go) goes
// back to the pool when the stream ends, and the next requests are sent
// on it with sendChecked's look: the two waits on the connection's
// readiness follow each other without a lost wake-up or a connection
// taken for stale.
func TestSendCheckedAfterParkedStream(t *testing.T) {
	next := make(chan string)
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &acceptCounter{Listener: inner}
	t.Cleanup(func() { _ = ln.Close() })
	go serveScripted(ln, true, next)
	h := newHandler(t, Options{IdleTimeout: time.Minute}, "", "http://"+ln.Addr().String())
	label := t.Name()
	c, br := dialRaw(t, startLabelled(t, &Server{Handler: h}, label))
	_ = c.SetReadDeadline(time.Now().Add(3 * testWait))
	writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"stream":true}`))
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	awaitParked(t, label, 1)
	ev := "data: {\"n\":1}\n\n"
	next <- ev
	got := make([]byte, len(ev))
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != ev {
		t.Fatalf("event: %q, %v; want %q", got, err, ev)
	}
	awaitParked(t, label, 1)
	close(next)
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the event: %q, %v", rest, err)
	}
	for i := range 3 {
		writeRaw(t, c, rawRequest("GET", "/v1/models/x", nil, ""))
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d after the stream: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Errorf("the replica accepted %d connections, want 1 (the parked stream's, reused)", n)
	}
}

// acceptCounter counts the connections its listener accepted.
type acceptCounter struct {
	net.Listener
	accepted atomic.Int32
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

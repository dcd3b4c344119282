//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSendCheckedLooksBeforeWriting: the connection loop writes a request
// on a pooled replica connection only after a look at it in the same turn
// of the poller (sendChecked), which replaced the peek before each reuse.
// A connection holding stray bytes, or one the replica closed, gets
// errStale and not one byte of the request (issue 16, fault 8); a clean
// one gets the whole request, and with wait the call returns once the
// answer can be read.
func TestSendCheckedLooksBeforeWriting(t *testing.T) {
	const req = "GET /v1/x HTTP/1.1\r\nHost: r\r\n\r\n"
	for _, tc := range []struct {
		name  string
		first func(c net.Conn) // what the replica does before the request
		stale bool
	}{
		{"stray bytes", func(c net.Conn) { _, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!") }, true},
		{"closed", func(c net.Conn) { _ = c.(*net.TCPConn).CloseWrite() }, true},
		{"clean", func(net.Conn) {}, false},
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

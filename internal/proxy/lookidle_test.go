package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// lookReplica answers each request on a connection with "ok"; after
// each answer, after (when positive) it closes the connection, or with
// stray it sends those bytes and keeps it open. It counts connections.
type lookReplica struct {
	host  string
	mu    sync.Mutex
	conns int
}

func newLookReplica(t *testing.T, after time.Duration, stray string) *lookReplica {
	t.Helper()
	r := &lookReplica{}
	url := rawBackend(t, func(c net.Conn) {
		r.mu.Lock()
		r.conns++
		r.mu.Unlock()
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
			switch {
			case after > 0:
				time.Sleep(after) // the replica's keep-alive timeout
				return
			case stray != "":
				time.Sleep(50 * time.Millisecond) // after the answer was taken
				_, _ = io.WriteString(c, stray)
			}
		}
	})
	r.host = strings.TrimPrefix(url, "http://")
	return r
}

func (r *lookReplica) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

// TestUpstreamLookIdle: idle pooled connections are looked at about once
// a second; those the replica closed (its keep-alive timeout, uvicorn's
// 5 s) or sent stray bytes on leave the pool then, not when a request
// takes them, and a live one stays pooled and is reused. Without the
// look, the dead connection stayed pooled until the next request (or the
// 90 s idle timeout).
func TestUpstreamLookIdle(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    time.Duration
		stray    string
		wantIdle int
	}{
		{name: "closed by the replica", after: 20 * time.Millisecond, wantIdle: 0},
		{name: "stray bytes", stray: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", wantIdle: 0},
		{name: "alive", wantIdle: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := newLookReplica(t, tc.after, tc.stray)
			host := rep.host
			looks := make(chan time.Time, 16)
			u := &Upstream{onLook: func() {
				select {
				case looks <- time.Now():
				default:
				}
			}}
			defer u.CloseIdleConnections()
			get := func() {
				t.Helper()
				resp, err := u.Forward(context.Background(), host, http.MethodGet, "/", http.Header{}, "", nil)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
					t.Fatalf("answer %q %v", b, err)
				}
				resp.Body.Close()
			}
			get()
			pooled := time.Now()
			if n := countIdle(u, host); n != 1 {
				t.Fatalf("%d idle connections after the answer, want 1", n)
			}
			// Wait for a look that left the pool as wanted: for a live
			// connection, one made once it had idled long enough to be
			// looked at.
			deadline := time.After(testWait)
			for done := false; !done; {
				select {
				case at := <-looks:
					done = countIdle(u, host) == tc.wantIdle && (tc.wantIdle == 0 || at.Sub(pooled) >= lookEvery)
				case <-deadline:
					t.Fatalf("no look left %d idle connection(s) within %s (%d now)", tc.wantIdle, testWait, countIdle(u, host))
				}
			}
			get()
			if want := 2 - tc.wantIdle; rep.connections() != want {
				t.Fatalf("the replica saw %d connections for two requests, want %d", rep.connections(), want)
			}
		})
	}
}

// TestUpstreamLookAfterClose: a pool closed while a look was under way
// keeps nothing it took (the connections are closed, no timer runs on).
func TestUpstreamLookAfterClose(t *testing.T) {
	rep := newLookReplica(t, 0, "")
	host := rep.host
	u := &Upstream{}
	resp, err := u.Forward(context.Background(), host, http.MethodGet, "/", http.Header{}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	u.CloseIdleConnections()
	u.lookIdle() // as if its timer had fired just before the close
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.idle) != 0 || u.look != nil || u.sweep != nil {
		t.Fatalf("after a close and a late look: %d hosts idle, look timer %v, sweep timer %v", len(u.idle), u.look != nil, u.sweep != nil)
	}
}

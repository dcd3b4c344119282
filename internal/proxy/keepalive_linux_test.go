package proxy

import (
	"context"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServerKeepAliveOnLongWait: on a listener that accepts connections
// without TCP keep-alive (the gateway's), a client connection and its
// replica connection (dialled without) get their probes once an exchange
// waits long on the replica (a host that vanished mid-wait is found
// gone), and never for quick requests: four system calls per connection
// fewer, accepted or dialled.
func TestServerKeepAliveOnLongWait(t *testing.T) {
	backend, unblock := newGatedStream(t, echoHandler)
	srv := &Server{Handler: newHandler(t, Options{Transport: &Upstream{}}, "", backend.URL), ReadHeaderTimeout: 2 * time.Second}
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	soKeepAlive := func(c net.Conn) int {
		t.Helper()
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		v := -1
		_ = raw.Control(func(fd uintptr) {
			v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// keepAlive reads SO_KEEPALIVE of the gateway's side of the one
	// client connection, and of the replica connection its exchange
	// holds (-1: none).
	keepAlive := func() (client, replica int) {
		t.Helper()
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if len(srv.conns) != 1 {
			t.Fatalf("%d client connections, want 1", len(srv.conns))
		}
		client, replica = -1, -1
		for sc := range srv.conns {
			client = soKeepAlive(sc.c)
			if pc := sc.cur.Load(); pc != nil {
				replica = soKeepAlive(pc.c)
			}
		}
		return client, replica
	}
	c, br := dialRaw(t, ln.Addr().String())
	writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"model":"llama"}`))
	if resp, _ := readResp(t, br, "POST"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if v, _ := keepAlive(); v != 0 {
		t.Fatalf("SO_KEEPALIVE %d after a quick request, want 0", v)
	}
	u := srv.Handler.up
	u.mu.Lock()
	for _, ic := range u.idle {
		for _, pc := range ic.list {
			if v := soKeepAlive(pc.c); v != 0 {
				t.Errorf("SO_KEEPALIVE %d on a pooled replica connection, want 0", v)
			}
		}
	}
	u.mu.Unlock()
	writeRaw(t, c, rawRequest("POST", "/v1/stream", nil, `{"model":"llama","stream":true}`))
	if head := peekHead(t, br); !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("head %q", head)
	}
	// The stream waits on its replica: past watchAfter it looks at the
	// client, and turns the probes on.
	for i := 0; ; i++ {
		client, replica := keepAlive()
		if client == 1 && replica == 1 {
			break
		}
		if i == 400 {
			t.Fatalf("SO_KEEPALIVE %d (client), %d (replica) %v into a stream's wait, want 1", client, replica, 400*10*time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond)
	}
	unblock()
}

// TestUpstreamForwardKeepAlive: connections the net/http serving path
// sends on (Forward, whose waits nothing watches) have keep-alive probes
// on, dialled by it or not.
func TestUpstreamForwardKeepAlive(t *testing.T) {
	backend := newEchoBackend(t)
	host := strings.TrimPrefix(backend.URL, "http://")
	u := &Upstream{}
	defer u.CloseIdleConnections()
	// A connection the connection loop dialled (without probes), pooled.
	pc, _, err := u.take(context.Background(), host, true, false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	u.put(pc, time.Now())
	for range 2 { // reuses it, then again
		resp, err := u.Forward(context.Background(), host, "GET", "/x", nil, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if n := len(u.idle[host].list); n != 1 {
		t.Fatalf("%d idle connections, want the one reused", n)
	}
	raw, err := u.idle[host].list[0].c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	_ = raw.Control(func(fd uintptr) {
		v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	})
	if err != nil || v != 1 {
		t.Errorf("SO_KEEPALIVE %d (%v) on a connection Forward used, want 1", v, err)
	}
}

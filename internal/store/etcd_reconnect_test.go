package store_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/store"
)

// flakyProxy forwards TCP connections to target while up; while down it
// accepts and closes at once, recording when each dial arrived.
type flakyProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	open  []net.Conn
	dials []time.Time // while down
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{ln: ln, target: target, up: true}
	t.Cleanup(func() { ln.Close(); p.setUp(false) })
	go p.serve()
	return p
}

func (p *flakyProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if !p.up {
			p.dials = append(p.dials, time.Now())
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.open = append(p.open, c, u)
		p.mu.Unlock()
		go func() { io.Copy(u, c); u.Close() }()
		go func() { io.Copy(c, u); c.Close() }()
	}
}

// setUp switches forwarding on or off; off cuts the open connections.
func (p *flakyProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for _, c := range p.open {
			c.Close()
		}
		p.open = nil
	}
}

func (p *flakyProxy) dialTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.dials...)
}

// TestEtcdRedialsQuicklyWhileDown: while etcd is unreachable the client
// keeps trying to connect at short intervals, so a gateway sees etcd back
// (and follows the switches made meanwhile) within about a second of its
// return. gRPC's default reconnect backoff grows 1 s, 1.6 s, 2.6 s, ... up
// to 2 minutes: a gateway that had been cut off for a while served the
// old live pool for tens of seconds after etcd returned while the rest of
// the fleet had switched.
func TestEtcdRedialsQuicklyWhileDown(t *testing.T) {
	srv := etcdtest.New(t)
	p := newFlakyProxy(t, srv.Endpoint()[len("http://"):])
	s, err := store.OpenEtcd(store.EtcdOptions{Endpoints: []string{"http://" + p.ln.Addr().String()}, Prefix: "/t/redial/", Timeout: time.Second, LocalDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping through the proxy: %v", err)
	}
	p.setUp(false)
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with etcd cut off")
	}
	// Wait until the client has tried for 6 s (bounded by the dials seen).
	var dials []time.Time
	for range 800 {
		dials = p.dialTimes()
		if len(dials) > 0 && time.Since(dials[0]) > 6*time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(dials) == 0 {
		t.Fatal("the client never dialled again while etcd was cut off")
	}
	// After the first 2 s, no gap between attempts (nor since the last
	// one) is longer than 1.5 s; the default backoff's are 2.6 s, 4.1 s, ...
	last := dials[0]
	for _, d := range append(dials[1:], time.Now()) {
		if gap := d.Sub(last); d.Sub(dials[0]) > 2*time.Second && gap > 1500*time.Millisecond {
			t.Fatalf("%d dials in 6 s of etcd down; a gap of %v between attempts (want at most 1.5 s)", len(dials), gap.Round(time.Millisecond))
		}
		last = d
	}
	p.setUp(true)
	await(t, "etcd answering again", func() bool { return s.Ping(ctx) == nil })
}

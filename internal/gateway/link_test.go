package gateway_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
)

// link is a TCP proxy on 127.0.0.1 between a gateway and etcd that a test
// cuts like a network partition: while cut, nothing is forwarded (bytes
// on open connections are dropped, new connections are held without an
// answer), so the gateway notices only by its timeouts. Restore closes
// every connection of the cut and forwards new ones again.
type link struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex // guards the fields below
	cut   bool
	conns map[net.Conn]bool // open connections, both sides
}

// newLink forwards a loopback port to target (host:port) until t ends.
func newLink(t testing.TB, target string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: target, conns: map[net.Conn]bool{}}
	l.wg.Go(l.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		l.closeAll()
		l.wg.Wait()
	})
	return l
}

// Endpoint is the link's etcd client URL.
func (l *link) Endpoint() string { return "http://" + l.ln.Addr().String() }

func (l *link) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return // closed at the test's end
		}
		if !l.track(c) {
			continue
		}
		l.mu.Lock()
		cut := l.cut
		l.mu.Unlock()
		if cut {
			continue // held: never read, closed by Restore
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			l.drop(c)
			continue
		}
		if !l.track(up) {
			l.drop(c)
			continue
		}
		l.wg.Go(func() { l.pipe(up, c) })
		l.wg.Go(func() { l.pipe(c, up) })
	}
}

// track records c as open; false (and c closed) once the link is closed.
func (l *link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		_ = c.Close()
		return false
	}
	l.conns[c] = true
	return true
}

func (l *link) drop(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	_ = c.Close()
}

// pipe copies src to dst while the link is not cut; what arrives during a
// cut is dropped. It closes both ends when src ends.
func (l *link) pipe(dst, src net.Conn) {
	defer l.drop(dst)
	defer l.drop(src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.mu.Lock()
			cut := l.cut
			l.mu.Unlock()
			if !cut {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF or closed: the other direction ends too
		}
	}
}

// Cut stops forwarding.
func (l *link) Cut() {
	l.mu.Lock()
	l.cut = true
	l.mu.Unlock()
}

// Restore ends the cut: the connections it stalled are closed (the
// gateway reconnects), new ones are forwarded.
func (l *link) Restore() {
	l.mu.Lock()
	l.cut = false
	old := l.conns
	l.conns = map[net.Conn]bool{}
	l.mu.Unlock()
	for c := range old {
		_ = c.Close()
	}
}

func (l *link) closeAll() {
	l.mu.Lock()
	old := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range old {
		_ = c.Close()
	}
}

// linkedFleet starts a real etcd and n gateways, each reaching it through
// its own link (links[i] is f.gws[i]'s), so that a test can cut one off.
func linkedFleet(t *testing.T, n int, edit func(*config.Config)) (*fleetEnv, []*link) {
	t.Helper()
	srv := etcdtest.New(t)
	target := strings.TrimPrefix(srv.Endpoint(), "http://")
	links := make([]*link, n)
	for i := range links {
		links[i] = newLink(t, target)
	}
	f := newFleetOn(t, 1, []string{links[0].Endpoint()}, edit)
	f.etcd = srv
	for i := 1; i < n; i++ {
		f.gws = append(f.gws, f.startWith(t, fmt.Sprintf("gw-%d", i), t.TempDir(), func(c *config.Config) {
			c.Etcd.Endpoints = []string{links[i].Endpoint()}
		}))
	}
	return f, links
}

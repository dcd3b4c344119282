package proxy

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestUpstreamDropIdleSince: once the replica closed a pooled connection
// idle since t, the connections idle since t or earlier leave the pool at
// once and are closed (off the request's path); younger ones stay. A
// burst after a pause longer than the replica's keep-alive timeout used to
// look at (and close) every dead connection on its requests' path before
// dialling.
func TestUpstreamDropIdleSince(t *testing.T) {
	u := &Upstream{}
	defer u.CloseIdleConnections()
	t0 := time.Now()
	var peers []net.Conn
	for i := range 4 {
		c, peer := net.Pipe()
		peers = append(peers, peer)
		u.put(&upConn{c: c, host: "r:1"}, t0.Add(time.Duration(i)*time.Second))
	}
	u.dropIdleSince("r:1", t0.Add(time.Second)) // the second oldest was found closed
	u.mu.Lock()
	var left []time.Time
	for _, pc := range u.idle["r:1"].list {
		left = append(left, pc.idleSince)
	}
	u.mu.Unlock()
	if len(left) != 2 || !left[0].Equal(t0.Add(2*time.Second)) || !left[1].Equal(t0.Add(3*time.Second)) {
		t.Fatalf("idle since %v after the drop, want the two youngest", left)
	}
	for i, p := range peers[:2] {
		_ = p.SetReadDeadline(time.Now().Add(testWait))
		if _, err := p.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("dropped connection %d: read %v, want it closed (EOF)", i, err)
		}
	}
	u.dropIdleSince("r:9", t0) // no such host: nothing happens
}

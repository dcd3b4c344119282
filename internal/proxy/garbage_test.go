package proxy

import (
	"bytes"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestServerNewConnectionGarbage: a stream on a new client connection
// (as every stream of the benchmark's streams scenario comes) leaves
// almost no garbage in the gateway, so bursts of new streams do not bring
// a collection (a stop of the world and a mark worker on one of two
// processors) into the middle of other streams. It once left about 6 KiB
// per connection: its reader (never given back), its state and the
// buffers its first request grew.
func TestServerNewConnectionGarbage(t *testing.T) {
	if raceOn {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	const answer = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"14\r\ndata: {\"n\":\"tok0\"}\n\n\r\n14\r\ndata: {\"n\":\"tok1\"}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
	const body = `{"model":"llama","stream":true,"end":"zqx"}`
	// A backend that allocates nothing per request: a request ends with
	// its body's last bytes.
	backend := rawBackend(t, func(c net.Conn) {
		buf := make([]byte, 8<<10)
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			if n += m; !bytes.HasSuffix(buf[:n], []byte(`"zqx"}`)) {
				continue
			}
			n = 0
			if _, err := c.Write([]byte(answer)); err != nil {
				return
			}
		}
	})
	srv := &Server{Handler: newHandler(t, Options{Transport: &Upstream{}}, "", backend)}
	addr := startLoopServer(t, srv)
	req := []byte(rawRequest("POST", "/v1/chat/completions", []string{"Content-Type: application/json"}, body))
	buf := make([]byte, 4<<10)
	stream := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(testWait))
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		n := 0
		for !bytes.HasSuffix(buf[:n], []byte("0\r\n\r\n")) {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatalf("reading the stream (got %q): %v", buf[:n], err)
			}
			n += m
		}
		if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
			t.Fatalf("answer %q", buf[:n])
		}
		_ = c.Close()
		// The gateway ends the connection on its own goroutine: wait
		// until it forgot it.
		for i := 0; ; i++ {
			srv.mu.Lock()
			left := len(srv.conns)
			srv.mu.Unlock()
			if left == 0 {
				break
			}
			if i == 10000 {
				t.Fatal("the gateway never ended the connection")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	for range 20 { // the pools fill, the upstream connection is dialled
		stream()
	}
	const streams = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range streams {
		stream()
	}
	runtime.ReadMemStats(&after)
	// The test's client allocates about 1 KiB per connection (dial,
	// addresses, its poller descriptor), the gateway's accept about as
	// much; the rest would be the gateway's garbage.
	perStream := (after.TotalAlloc - before.TotalAlloc) / streams
	t.Logf("%d bytes allocated per stream, client included", perStream)
	if perStream > 3<<10 {
		t.Errorf("%d bytes allocated per stream on a new connection, want at most %d", perStream, 3<<10)
	}
}

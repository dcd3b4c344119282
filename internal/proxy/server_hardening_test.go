package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// TestServerLargeRequestHead: a head past the size whose buffer the loop
// does not keep (64 KiB), allowed by MaxHeaderBytes, is served whole (a
// regression: the buffer was dropped before the request was written on,
// and the process panicked).
func TestServerLargeRequestHead(t *testing.T) {
	backend := newEchoBackend(t)
	h := newHandler(t, Options{}, "", backend.URL)
	c, br := dialRaw(t, startLoopServer(t, &Server{Handler: h, MaxHeaderBytes: 1 << 20}))
	big := strings.Repeat("a", 70<<10)
	for i := range 2 { // and the connection goes on
		writeRaw(t, c, rawRequest("POST", "/v1/completions", []string{"X-Big: " + big}, "{}"))
		resp, body := readResp(t, br, "POST")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d: %.200q", i, resp.StatusCode, body)
		}
		if got := decodeEcho(t, body).Header.Get("X-Big"); got != big {
			t.Fatalf("request %d: the replica got X-Big of %d bytes, want %d", i, len(got), len(big))
		}
	}
}

// TestServerSwitchToHTTPSPool: while the live pool flips between plain
// and https replicas, every request is served by the path its own table
// calls for (a regression: the loop checked one table and served from
// the next, sending plain HTTP to a TLS replica).
func TestServerSwitchToHTTPSPool(t *testing.T) {
	plain := newEchoBackend(t)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(echoHandler))
	closeAtEnd(t, tlsSrv)
	u := &Upstream{Fallback: tlsSrv.Client().Transport}
	t.Cleanup(u.CloseIdleConnections)
	h := newHandler(t, Options{Transport: u}, "", plain.URL)
	table := func(rev int64, live, base string) *route.Table {
		p := &pool.Pool{Name: live, Model: "m"}
		pu, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		p.Replicas = append(p.Replicas, pool.NewReplica(pu))
		return route.New(rev, live, "", p)
	}
	tables := []*route.Table{table(1, "blue", plain.URL), table(2, "green", tlsSrv.URL)}
	h.Apply(tables[0])
	addr := startServer(t, &Server{Handler: h})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			h.Apply(tables[i%2])
		}
	})
	defer func() { close(stop); wg.Wait() }()
	failed := 0
	for i := range 1000 {
		c, br := dialRaw(t, addr)
		writeRaw(t, c, rawRequest("POST", "/v1/completions", []string{"Connection: close"}, "{}"))
		resp, body := readResp(t, br, "POST")
		c.Close()
		if resp.StatusCode != 200 {
			if failed++; failed <= 3 {
				t.Errorf("request %d: %d from pool %s replica %s: %.150q", i, resp.StatusCode,
					resp.Header.Get("X-Cutover-Pool"), resp.Header.Get("X-Cutover-Replica"), body)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of 1000 requests failed", failed)
	}
}

// TestServerUnsupportedTransferEncoding: a replica answer framed by a
// Transfer-Encoding other than chunked (here with a Content-Length too)
// gets a 502 on both paths, never a body the client would misframe.
func TestServerUnsupportedTransferEncoding(t *testing.T) {
	for _, te := range []string{"identity", "gzip", "gzip, chunked"} {
		replica := rawBackend(t, rawAnswers("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: "+te+"\r\nContent-Length: 5\r\n\r\nhello", false))
		for _, fe := range frontends {
			t.Run(te+"/"+fe.name, func(t *testing.T) {
				h := newHandler(t, Options{}, "", replica)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest("POST", "/v1/completions", nil, "{}"))
				_ = c.SetReadDeadline(time.Now().Add(testWait))
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d %q, want 502", resp.StatusCode, body)
				}
				checkAPIError(t, body, "upstream_unreachable")
			})
		}
	}
}

// TestServerWriteToWedgedReplica: a replica that takes the connection but
// never reads cannot hold a large request past the timeout, nor past the
// client's hang-up (a regression: writing it had no deadline at all).
func TestServerWriteToWedgedReplica(t *testing.T) {
	release := make(chan struct{})
	replica := rawBackend(t, func(net.Conn) { <-release })
	t.Cleanup(func() { close(release) }) // before rawBackend's cleanup waits for it
	body := `{"p":"` + strings.Repeat("x", 24<<20) + `"}`
	for _, fe := range frontends {
		t.Run("timeout/"+fe.name, func(t *testing.T) {
			h := newHandler(t, Options{Timeout: time.Second}, "", replica)
			c, br := dialRaw(t, fe.start(t, h))
			go func() { _, _ = io.WriteString(c, rawRequest("POST", "/v1/completions", nil, body)) }()
			_ = c.SetReadDeadline(time.Now().Add(testWait))
			resp, got := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d %q, want 504", resp.StatusCode, got)
			}
			checkAPIError(t, got, "upstream_timeout")
		})
	}
	t.Run("hang-up/loop", func(t *testing.T) {
		obs := make(obsChan, 1)
		h := newHandler(t, Options{Observer: obs}, "", replica)
		c, _ := dialRaw(t, startLoop(t, h))
		writeRaw(t, c, rawRequest("POST", "/v1/completions", nil, body))
		c.Close()
		select {
		case o := <-obs:
			if o.Error != "client_closed" {
				t.Errorf("observation error %q, want client_closed", o.Error)
			}
		case <-time.After(testWait):
			t.Fatal("the request still writes to the wedged replica after the client left")
		}
	})
}

// TestServerNoReplayAfterReplicaWorked: a replica that reads a request,
// works on it, then drops the kept-alive connection without an answer does
// not get it again on the same connection pool (it may have generated
// already); the client gets a 502.
func TestServerNoReplayAfterReplicaWorked(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	replica := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(req.Body)
			mu.Lock()
			seen = append(seen, string(b))
			mu.Unlock()
			if n == 1 { // the second request on the connection
				time.Sleep(2 * staleWindow) // working on it...
				return                      // ...and gone without an answer
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			h := newHandler(t, Options{}, "", replica)
			c, br := dialRaw(t, fe.start(t, h))
			writeRaw(t, c, rawRequest("POST", "/v1/completions", nil, `{"n":1}`))
			readResp(t, br, "POST")
			writeRaw(t, c, rawRequest("POST", "/v1/completions", nil, `{"n":2}`))
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d %q, want 502", resp.StatusCode, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 2 {
				t.Errorf("the replica got %q, want each request once", seen)
			}
		})
	}
}

// TestStreamErrorThenHangUpIsAFailure: a client that leaves after an
// in-stream error event (an SDK raising on it) does not erase the
// failure: the observation still counts as failed, on both paths.
func TestStreamErrorThenHangUpIsAFailure(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
		_, _ = io.WriteString(w, "data: {\"error\": {\"message\": \"CUDA out of memory\", \"code\": 500}}\n\n")
		w.(http.Flusher).Flush()
		select { // [DONE] would follow; the client leaves first
		case <-release:
		case <-r.Context().Done():
		}
	}))
	closeAtEnd(t, backend)
	defer close(release)
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			obs := make(obsChan, 1)
			h := newHandler(t, Options{Observer: obs}, "", backend.URL)
			c, br := dialRaw(t, fe.start(t, h))
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"stream":true}`))
			_ = c.SetReadDeadline(time.Now().Add(testWait))
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(line, `"error"`) {
					break
				}
			}
			c.Close()
			select {
			case o := <-obs:
				if !o.StreamError || !o.Failed() {
					t.Errorf("observation %+v: stream error %v, failed %v; want both", o, o.StreamError, o.Failed())
				}
			case <-time.After(testWait):
				t.Fatal("no observation")
			}
		})
	}
}

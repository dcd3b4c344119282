package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// idleStreams holds streams open through a loop gateway against a replica
// that sends a stream's head and then nothing: the state of a stream
// waiting for its next token. Neither the replica nor the clients keep a
// goroutine per stream, so what a stream costs is the gateway's.
type idleStreams struct {
	tb      testing.TB
	replica net.Listener
	gw      string
	mu      sync.Mutex
	held    []net.Conn // the replica's ends, kept open
	clients []net.Conn
}

const idleStreamHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

func newIdleStreams(tb testing.TB, idle time.Duration) *idleStreams {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &idleStreams{tb: tb, replica: ln}
	go s.serveReplica()
	h := New(Options{Transport: &Upstream{}, IdleTimeout: idle})
	h.Apply(benchTableT(tb, "http://"+ln.Addr().String()))
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &Server{Handler: h}
	// The label marks every goroutine the gateway starts for it.
	go pprof.Do(context.Background(), pprof.Labels(idleStreamsLabel, "gw"), func(context.Context) { _ = srv.Serve(gln) })
	s.gw = gln.Addr().String()
	tb.Cleanup(func() {
		_ = srv.Close()
		_ = ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range append(s.held, s.clients...) {
			_ = c.Close()
		}
	})
	return s
}

const idleStreamsLabel = "idle-streams-test"

// gatewayGoroutines counts the goroutines of the gateway: its accept loop
// and those it started.
func gatewayGoroutines(tb testing.TB) int {
	tb.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		tb.Fatal(err)
	}
	// Records are "N @ pc..." lines, each followed by its labels, if any.
	n, count := 0, 0
	for line := range strings.Lines(b.String()) {
		if k, _, ok := strings.Cut(line, " @ "); ok {
			count, _ = strconv.Atoi(k)
			continue
		}
		if strings.HasPrefix(line, "# labels: ") && strings.Contains(line, `"`+idleStreamsLabel+`":"gw"`) {
			n += count
		}
	}
	return n
}

// serveReplica answers every request with a stream's head, then keeps
// the connection open without a goroutine.
func (s *idleStreams) serveReplica() {
	for {
		c, err := s.replica.Accept()
		if err != nil {
			return
		}
		go func() {
			if !readUntil(c, "\r\n\r\n") {
				_ = c.Close()
				return
			}
			if _, err := c.Write([]byte(idleStreamHead)); err != nil {
				_ = c.Close()
				return
			}
			s.mu.Lock()
			s.held = append(s.held, c)
			s.mu.Unlock()
		}()
	}
}

// readUntil reads c byte by byte (no buffer left behind) until end.
func readUntil(c net.Conn, end string) bool {
	var got []byte
	var b [1]byte
	for len(got) < 64<<10 {
		if _, err := c.Read(b[:]); err != nil {
			return false
		}
		got = append(got, b[0])
		if bytes.HasSuffix(got, []byte(end)) {
			return true
		}
	}
	return false
}

// open starts n streams and returns once each client has the head.
func (s *idleStreams) open(n int) {
	s.tb.Helper()
	body := `{"model":"llama","stream":true}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for range n {
		c, err := net.Dial("tcp", s.gw)
		if err != nil {
			s.tb.Fatal(err)
		}
		s.mu.Lock()
		s.clients = append(s.clients, c)
		s.mu.Unlock()
		if _, err := c.Write([]byte(req)); err != nil {
			s.tb.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if !readUntil(c, "\r\n\r\n") {
			s.tb.Fatal("no stream head through the gateway")
		}
	}
}

// TestIdleStreamOneGoroutine: a stream waiting for its next token costs
// the gateway one goroutine, also once it has waited longer than
// watchAfter (when the gateway starts caring whether the client left).
func TestIdleStreamOneGoroutine(t *testing.T) {
	const n = 20
	s := newIdleStreams(t, time.Minute)
	s.open(n)
	// Past watchAfter, a second goroutine per stream would have started
	// by now (the loop cares whether the client left); check until then,
	// and a while after. One more: the accept loop.
	// A parked stream's wait moves to a fresh goroutine at each wake-up
	// (serveParked): the old one ends right after starting it, so a look
	// may catch both; only a count that stays is a second goroutine.
	end := time.Now().Add(3 * watchAfter)
	for {
		for look := 0; ; look++ {
			g := gatewayGoroutines(t)
			if g == n+1 {
				break
			}
			if look == 2 {
				t.Fatalf("the gateway has %d goroutines with %d idle streams, want %d", g, n, n+1)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if time.Now().After(end) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkIdleStreamMemory reports what one idle stream holds in the
// gateway: heap and goroutine stacks after a collection (the client's and
// the replica's ends of the sockets in this process included, a few
// hundred bytes each), and goroutines. Run with -benchtime=1x.
func BenchmarkIdleStreamMemory(b *testing.B) {
	const n = 500
	for range b.N {
		s := newIdleStreams(b, time.Minute)
		s.open(1)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m0)
		g0 := gatewayGoroutines(b)
		s.open(n)
		time.Sleep(2 * watchAfter) // let every stream wait past watchAfter
		runtime.GC()
		runtime.GC() // buffers back in their pools are freed by the second
		runtime.ReadMemStats(&m1)
		g1 := gatewayGoroutines(b)
		b.ReportMetric(float64(int64(m1.HeapAlloc+m1.StackInuse)-int64(m0.HeapAlloc+m0.StackInuse))/n, "B/stream")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/stream")
		b.ReportMetric(float64(int64(m1.StackInuse)-int64(m0.StackInuse))/n, "stack-B/stream")
	}
}

// TestLongWaitThenKeepAlive: an exchange that waited longer than
// watchAfter (its client reader and replica writer went back to their
// pools) leaves both connections whole: the next requests on the same
// client connection, with bodies, reach the replica intact over the same
// replica connection and are answered.
func TestLongWaitThenKeepAlive(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/slow" {
			time.Sleep(watchAfter + 300*time.Millisecond) // the replica's latency
		}
		echoHandler(w, r)
	}))
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	backend.Start()
	closeAtEnd(t, backend)
	h := newHandler(t, Options{}, "", backend.URL)
	c, br := dialRaw(t, startServer(t, &Server{Handler: h}))
	for i, path := range []string{"/v1/slow", "/v1/chat/completions", "/v1/slow", "/v1/chat/completions"} {
		body := fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", 100*i))
		writeRaw(t, c, rawRequest("POST", path, nil, body))
		resp, got := readResp(t, br, "POST")
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: status %d, close %v: %q", i, resp.StatusCode, resp.Close, got)
		}
		if e := decodeEcho(t, got); e.Body != body || e.URI != path {
			t.Fatalf("request %d: the replica saw %s %q, want %s %q", i, e.URI, e.Body, path, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("the replica saw %d connections, want 1", conns)
	}
}

// TestLongPauseInStream: a stream whose replica pauses longer than
// watchAfter (the wait then holds no read buffer) goes on with the next
// event, and a pause longer than the idle timeout still cuts it as
// upstream_idle.
func TestLongPauseInStream(t *testing.T) {
	const pause = watchAfter + 300*time.Millisecond
	cases := []struct {
		name string
		idle time.Duration
		want string // observed error
	}{
		{"resumes", time.Minute, ""},
		{"idle timeout", watchAfter + 100*time.Millisecond, "upstream_idle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "data: one\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-time.After(pause): // the replica's latency
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "data: two\n\ndata: [DONE]\n\n")
			}))
			closeAtEnd(t, backend)
			obs := make(obsChan, 4)
			h := newHandler(t, Options{Observer: obs, IdleTimeout: tc.idle}, "", backend.URL)
			c, br := dialRaw(t, startServer(t, &Server{Handler: h}))
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"stream":true}`))
			resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if got, whole := string(body), "data: one\n\ndata: two\n\ndata: [DONE]\n\n"; tc.want == "" && (err != nil || got != whole) {
				t.Fatalf("stream %q, %v; want %q", got, err, whole)
			} else if tc.want != "" && err == nil {
				t.Fatalf("stream ended cleanly after the idle timeout: %q", got)
			}
			select {
			case o := <-obs:
				if o.Error != tc.want {
					t.Errorf("observed error %q, want %q", o.Error, tc.want)
				}
			case <-time.After(testWait):
				t.Fatal("no observation")
			}
		})
	}
}

// TestLongHeaderWait: a response-header timeout longer than watchAfter
// counts from the start of the wait, not from each look at the client:
// a replica that never answers gets 504 upstream_timeout.
func TestLongHeaderWait(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then net/http notices the gateway leaving
		<-r.Context().Done()               // never answers
	}))
	closeAtEnd(t, backend)
	u := &Upstream{ResponseHeaderTimeout: 2*watchAfter + 100*time.Millisecond}
	t.Cleanup(u.CloseIdleConnections)
	h := newHandler(t, Options{Transport: u}, "", backend.URL)
	c, br := dialRaw(t, startServer(t, &Server{Handler: h}))
	writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{}`))
	_ = c.SetReadDeadline(time.Now().Add(testWait))
	resp, body := readResp(t, br, "POST")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504: %q", resp.StatusCode, body)
	}
	checkAPIError(t, body, "upstream_timeout")
}

// parkedStreams counts the goroutines labelled label (see
// startLabelled) that wait for a parked stream's replica: at the bottom
// of their stack srvConn.serveParked, at the top readiness.await, nothing
// relayed in between.
func parkedStreams(tb testing.TB, label string) int {
	tb.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, rec := range strings.Split(b.String(), "\n\n") {
		k, _, ok := strings.Cut(rec, " @ ")
		if !ok || !strings.Contains(rec, `"`+idleStreamsLabel+`":"`+label+`"`) ||
			!strings.Contains(rec, "proxy.(*srvConn).serveParked+") || !strings.Contains(rec, "proxy.(*readiness).await+") ||
			strings.Contains(rec, "proxy.(*rawExchange).resume+") {
			continue
		}
		count, _ := strconv.Atoi(k[strings.LastIndexByte(k, '\n')+1:]) // the first record follows the profile's title
		n += count
	}
	return n
}

// awaitParked waits until n streams of the gateway labelled label are
// parked.
func awaitParked(tb testing.TB, label string, n int) {
	tb.Helper()
	end := time.Now().Add(testWait)
	for parkedStreams(tb, label) != n {
		if time.Now().After(end) {
			tb.Fatalf("%d streams parked, want %d", parkedStreams(tb, label), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startLabelled is startServer with the goroutines the server starts
// labelled label.
func startLabelled(t *testing.T, s *Server, label string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go pprof.Do(context.Background(), pprof.Labels(idleStreamsLabel, label), func(context.Context) { _ = s.Serve(ln) })
	t.Cleanup(func() { _ = s.Close() })
	return ln.Addr().String()
}

// TestParkedStreamSmallStack: a stream waiting longer than watchAfter
// parks, and its goroutine then has a fresh stack, not the one the
// request's call chain grew (8 KiB).
func TestParkedStreamSmallStack(t *testing.T) {
	const n = 200
	s := newIdleStreams(t, time.Minute)
	s.open(1)
	awaitParked(t, "gw", 1)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s.open(n)
	awaitParked(t, "gw", n+1)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if raceOn {
		return // the race detector's goroutines need larger stacks
	}
	if per := (int64(m1.StackInuse) - int64(m0.StackInuse)) / n; per > 6<<10 {
		t.Errorf("%d bytes of stack per parked stream, want at most %d", per, 6<<10)
	}
}

// TestParkedStreamResumes: a stream that parks at each long wait relays
// every event as it comes, ends whole, is observed once with its tokens,
// gives its replica back (in flight 0) and leaves the client connection
// serving the next request; with chunked and close-delimited answers.
func TestParkedStreamResumes(t *testing.T) {
	for _, chunked := range []bool{true, false} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			next := make(chan string) // the replica's next event; closed: end the stream
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ln.Close() })
			go serveScripted(ln, chunked, next)
			obs := make(obsChan, 4)
			h := newHandler(t, Options{Observer: obs, IdleTimeout: time.Minute}, "", "http://"+ln.Addr().String())
			label := t.Name()
			c, br := dialRaw(t, startLabelled(t, &Server{Handler: h}, label))
			_ = c.SetReadDeadline(time.Now().Add(3 * testWait))
			writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", nil, `{"stream":true}`))
			resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
			if err != nil {
				t.Fatal(err)
			}
			events := []string{"data: {\"n\":1}\n\n", "data: {\"n\":2}\n\n", "data: {\"n\":3}\n\n"}
			for i, ev := range events {
				if i > 0 {
					awaitParked(t, label, 1) // the wait for this event grew long
				}
				next <- ev
				got := make([]byte, len(ev))
				if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != ev {
					t.Fatalf("event %d: %q, %v; want %q", i, got, err, ev)
				}
			}
			awaitParked(t, label, 1)
			close(next)
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Fatalf("after the last event: %q, %v", rest, err)
			}
			select {
			case o := <-obs:
				if o.Status != 200 || o.Error != "" || o.Tokens != len(events) || !o.Stream {
					t.Errorf("observed status %d, error %q, tokens %d, stream %v; want 200, none, %d, true", o.Status, o.Error, o.Tokens, o.Stream, len(events))
				}
				if f := o.Replica.InFlight(); f != 0 {
					t.Errorf("the replica has %d requests in flight after the stream, want 0", f)
				}
			case <-time.After(testWait):
				t.Fatal("no observation")
			}
			writeRaw(t, c, rawRequest("GET", "/v1/models/x", nil, ""))
			if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("next request on the connection: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// serveScripted is a replica: a stream answer to POSTs whose events come
// from next (chunked, or ended by closing the connection), "ok" to
// anything else; keep-alive.
func serveScripted(ln net.Listener, chunked bool, next chan string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = c.Close() }()
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				if req.Method != "POST" {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					continue
				}
				if !chunked {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
					for ev := range next {
						_, _ = io.WriteString(c, ev)
					}
					return
				}
				_, _ = io.WriteString(c, idleStreamHead)
				for ev := range next {
					_, _ = fmt.Fprintf(c, "%x\r\n%s\r\n", len(ev), ev)
				}
				_, _ = io.WriteString(c, "0\r\n\r\n")
			}
		}()
	}
}

// TestDeadlineForPark: a stream's wait that may park is armed to park
// parkAfter after it began, unless a limit of its own comes first; a wait
// that may not park (or parked) looks at the client watchAfter after it
// began, then every watchAfter.
func TestDeadlineForPark(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		parking  bool
		now      time.Duration // into the wait
		idle     time.Duration // Options.IdleTimeout
		deadline time.Time     // the whole request's
		want     time.Time
		kind     armKind
	}{
		{"parks", true, 0, time.Minute, time.Time{}, t0.Add(parkAfter), armPark},
		{"idle limit first", true, 0, parkAfter / 2, time.Time{}, t0.Add(parkAfter / 2), armIdle},
		{"request timeout first", true, 0, time.Minute, t0.Add(parkAfter / 4), t0.Add(parkAfter / 4), armTotal},
		{"no idle limit", true, 0, 0, time.Time{}, t0.Add(parkAfter), armPark},
		{"not parking", false, 0, time.Minute, time.Time{}, t0.Add(watchAfter), armWatch},
		{"parked: the first look as if it had not", false, parkAfter, time.Minute, time.Time{}, t0.Add(watchAfter), armWatch},
		{"after a look, the next", false, watchAfter, time.Minute, time.Time{}, t0.Add(2 * watchAfter), armWatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := &rawExchange{
				sc:       &srvConn{},
				h:        &Handler{opts: Options{IdleTimeout: tc.idle}},
				resp:     &rawResp{chunked: true},
				deadline: tc.deadline,
				since:    t0,
				parking:  tc.parking,
			}
			d, kind := x.deadlineFor(armIdle, t0.Add(tc.now))
			if !d.Equal(tc.want) || kind != tc.kind {
				t.Errorf("deadline %v (kind %d), want %v (kind %d)", d.Sub(t0), kind, tc.want.Sub(t0), tc.kind)
			}
		})
	}
}

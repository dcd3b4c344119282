package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func forward(t *testing.T, u *Upstream, ctx context.Context, srv *httptest.Server, hdr http.Header, body string) (*http.Response, error) {
	t.Helper()
	host := strings.TrimPrefix(srv.URL, "http://")
	return u.Forward(ctx, host, http.MethodPost, "/v1/chat/completions?x=1", hdr, "10.1.2.3", []byte(body))
}

func TestUpstreamForwardsHeadersAndBody(t *testing.T) {
	var got http.Header
	var gotBody, gotURI string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, gotURI = r.Header.Clone(), r.RequestURI
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	u := &Upstream{}
	hdr := http.Header{
		"Authorization":   {"Bearer k"},
		"Connection":      {"keep-alive, X-Secret-Hop"},
		"X-Secret-Hop":    {"drop me"},
		"Keep-Alive":      {"timeout=5"},
		"Te":              {"trailers"},
		"X-Forwarded-For": {"6.6.6.6"},
		"X-Custom":        {"a", "b"},
	}
	resp, err := forward(t, u, context.Background(), srv, hdr, `{"model":"m"}`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || gotBody != `{"model":"m"}` || gotURI != "/v1/chat/completions?x=1" {
		t.Fatalf("body %q, replica saw body %q uri %q", b, gotBody, gotURI)
	}
	for _, k := range []string{"X-Secret-Hop", "Keep-Alive", "Te"} {
		if v, ok := got[k]; ok {
			t.Errorf("hop-by-hop header %s forwarded: %v", k, v)
		}
	}
	if got.Get("Authorization") != "Bearer k" || len(got["X-Custom"]) != 2 || got.Get("X-Forwarded-For") != "10.1.2.3" {
		t.Errorf("replica saw %v", got)
	}
}

// TestUpstreamReusesAndRecoversStaleConnections: connections are reused,
// and one the replica closed while idle is replaced without an error.
func TestUpstreamReusesAndRecoversStaleConnections(t *testing.T) {
	srv, conns := newCountingServer(t)
	u := &Upstream{}
	do := func() {
		resp, err := forward(t, u, context.Background(), srv, http.Header{}, "{}")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 5 {
		do()
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential requests, want 1", n)
	}
	srv.CloseClientConnections() // the replica drops its idle keep-alive connections
	do()
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after the replica closed the idle one, want 2", n)
	}
}

// TestUpstreamCancel: cancelling the context unblocks a request waiting
// for its answer at once, and the connection is not reused.
func TestUpstreamCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := forward(t, &Upstream{}, ctx, srv, http.Header{}, "{}")
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled request stayed blocked")
	}
}

func TestUpstreamResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	_, err := forward(t, &Upstream{ResponseHeaderTimeout: 50 * time.Millisecond}, context.Background(), srv, http.Header{}, "{}")
	if !isTimeout(err) {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

// TestUpstreamChunkedAndEarlyClose: a chunked stream is relayed whole; a
// body closed before its end closes the connection instead of pooling it.
func TestUpstreamChunkedAndEarlyClose(t *testing.T) {
	var conns atomic.Int64
	var calls atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			if calls.Load() == 2 && i == 0 {
				<-r.Context().Done() // the second stream stops after one chunk until its client leaves
				return
			}
		}
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	u := &Upstream{}
	calls.Store(1)
	resp, err := forward(t, u, context.Background(), srv, http.Header{}, "{}")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "data: 0\n\ndata: 1\n\ndata: 2\n\n" {
		t.Fatalf("stream %q", b)
	}
	calls.Store(2)
	resp, err = forward(t, u, context.Background(), srv, http.Header{}, "{}")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close() // early: the stream is not over
	calls.Store(3)
	resp, err = forward(t, u, context.Background(), srv, http.Header{}, "{}")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (reused once, then replaced after an early close)", n)
	}
}

// TestUpstreamAfterReplicaIdleTimeout: a replica that closes idle
// keep-alive connections (uvicorn does after 5 s) must not turn the next
// requests into errors (a regression: every pooled connection was stale
// and the one retry took another stale one).
func TestUpstreamAfterReplicaIdleTimeout(t *testing.T) {
	var closed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	h := New(Options{Transport: &Upstream{}})
	h.Apply(benchTableT(t, srv.URL))
	gw := httptest.NewServer(h)
	defer gw.Close()
	burst := func() {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d after the replica closed idle connections", resp.StatusCode)
				}
			})
		}
		wg.Wait()
	}
	burst()
	deadline := time.Now().Add(10 * time.Second)
	for closed.Load() == 0 && time.Now().Before(deadline) { // the replica drops its idle connections
		time.Sleep(10 * time.Millisecond)
	}
	burst()
}

// TestTotalTimeoutBeatsIdleDeadline: proxy.timeout ends a stream that
// keeps sending, on the Upstream path too (a regression: the idle
// deadline overwrote the cancellation).
func TestTotalTimeoutBeatsIdleDeadline(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for {
					if _, err := fmt.Fprint(w, "data: {}\n\n"); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}))
			defer backend.Close()
			h := New(Options{Transport: tr.new(), Timeout: 300 * time.Millisecond, IdleTimeout: time.Minute})
			h.Apply(benchTableT(t, backend.URL))
			gw := httptest.NewServer(h)
			defer gw.Close()
			start := time.Now()
			resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("stream ran %s despite a 300ms total timeout", d)
			}
		})
	}
}

func TestDotSegmentsRefused(t *testing.T) {
	h := New(Options{})
	h.Apply(benchTableT(t, "http://127.0.0.1:1"))
	for _, p := range []string{"/v1/../admin", "/v1/%2e%2e/admin", "/v1/./models"} {
		req := httptest.NewRequest(http.MethodGet, "http://x"+p, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, rec.Code)
		}
	}
}

// TestUpstreamReusesConnectionWithExpiredDeadline: a pooled connection
// whose last read deadline passed while it sat idle is still alive and
// must be reused, not redialled (an expired deadline used to fail the
// liveness peek, so every connection idle for 250 ms was replaced).
func TestUpstreamReusesConnectionWithExpiredDeadline(t *testing.T) {
	srv, conns := newCountingServer(t)
	u := &Upstream{}
	host := srv.Listener.Addr().String()
	pc, _, err := u.get(context.Background(), host, false)
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.c.SetReadDeadline(aLongTimeAgo) // as left by an exchange's last wait
	u.put(pc, time.Now())
	got, reused, err := u.get(context.Background(), host, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reused || got != pc {
		t.Fatalf("reused=%v same=%v: the pooled connection was not reused", reused, got == pc)
	}
	if n := conns.Load(); n > 1 {
		t.Fatalf("%d connections dialled, want 1", n)
	}
}

// newCountingServer starts a replica that answers "ok" and counts the
// connections it accepted.
func newCountingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	conns := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, conns
}

// TestUpstreamSweepsIdleConnections: after a burst, the idle connections
// below the newest are closed once IdleTimeout passes, not only the one
// that get looks at (a regression: they stayed open, in CLOSE_WAIT once
// the replica had dropped them).
func TestUpstreamSweepsIdleConnections(t *testing.T) {
	gate := make(chan struct{})
	var arrived atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-gate
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	u := &Upstream{IdleTimeout: 200 * time.Millisecond}
	defer u.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := u.Forward(context.Background(), host, http.MethodGet, "/", http.Header{}, "", nil)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	await(t, "20 requests at the replica at once", func() bool { return arrived.Load() == 20 })
	close(gate)
	wg.Wait()
	if n := countIdle(u, host); n != 20 {
		t.Fatalf("%d idle connections after the burst, want 20", n)
	}
	await(t, "every idle connection swept", func() bool { return countIdle(u, host) == 0 })
}

func countIdle(u *Upstream, host string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ic := u.idle[host]; ic != nil {
		return len(ic.list)
	}
	return 0
}

// await polls cond until it holds, failing after testWait.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

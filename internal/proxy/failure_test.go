package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/pool"
)

// addrPattern finds an ip:port in a client-facing body.
var addrPattern = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+|\[[0-9a-f:]+\]:\d+`)

// TestClassify: the one classifier's decisions, for the errors both
// serving paths meet. No message names an address.
func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8000}, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	dialTimeout := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8000}, Err: os.ErrDeadlineExceeded}
	reset := &net.OpError{Op: "write", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8000}, Err: os.NewSyscallError("write", syscall.ECONNRESET)}
	readTimeout := &net.OpError{Op: "read", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8000}, Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name    string
		a       attemptError
		status  int
		code    string
		retry   bool
		outcome pool.Outcome
	}{
		{"client gone", attemptError{err: reset, clientGone: true}, 499, "client_closed", false, pool.OutcomeNone},
		{"client gone beats a timeout", attemptError{err: readTimeout, expired: expiredHeader, clientGone: true}, 499, "client_closed", false, pool.OutcomeNone},
		{"refused", attemptError{err: refused}, 502, "upstream_unreachable", true, pool.OutcomeConnectFailure},
		{"dial timeout is a connect failure", attemptError{err: dialTimeout}, 502, "upstream_unreachable", true, pool.OutcomeConnectFailure},
		{"total timeout", attemptError{err: readTimeout, expired: expiredTotal}, 504, "upstream_timeout", false, pool.OutcomeNone},
		{"total timeout while dialing", attemptError{err: dialTimeout, expired: expiredTotal}, 504, "upstream_timeout", false, pool.OutcomeNone},
		{"header timeout", attemptError{err: readTimeout, expired: expiredHeader}, 504, "upstream_timeout", false, pool.OutcomeFailure},
		{"timeout of unknown deadline", attemptError{err: readTimeout}, 504, "upstream_timeout", false, pool.OutcomeFailure},
		{"idle", attemptError{err: readTimeout, expired: expiredIdle}, 504, "upstream_idle", false, pool.OutcomeFailure},
		{"idle cause", attemptError{err: errIdle}, 504, "upstream_idle", false, pool.OutcomeFailure},
		{"reset before an answer", attemptError{err: reset}, 502, "upstream_unreachable", true, pool.OutcomeReset},
		{"EOF before an answer", attemptError{err: io.EOF}, 502, "upstream_unreachable", true, pool.OutcomeReset},
		// A new connection the replica closed before the request went out
		// (a replica being killed). Regression: a failure of its own, not
		// retried, and the replica's ejection outlasted its return.
		{"new connection closed before the request", attemptError{err: errStale}, 502, "upstream_unreachable", true, pool.OutcomeReset},
		{"reset after part of an answer", attemptError{err: reset, answered: true}, 502, "upstream_unreachable", false, pool.OutcomeBroken},
		{"broken after the head", attemptError{err: reset, answered: true, afterHead: true}, 502, "upstream_broken", false, pool.OutcomeBroken},
		{"malformed answer", attemptError{err: errors.New(`malformed status line "HTTP/1.1 2"`), answered: true}, 502, "upstream_unreachable", false, pool.OutcomeFailure},
		{"other error", attemptError{err: errors.New("replica 10.0.0.1:8000 said no")}, 502, "upstream_unreachable", false, pool.OutcomeFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := classify(tt.a)
			if v.answer.status != tt.status || v.answer.code != tt.code || v.retry != tt.retry || v.outcome != tt.outcome {
				t.Errorf("classify = %d %s retry=%v outcome=%d, want %d %s retry=%v outcome=%d",
					v.answer.status, v.answer.code, v.retry, v.outcome, tt.status, tt.code, tt.retry, tt.outcome)
			}
			if addrPattern.MatchString(v.answer.msg) {
				t.Errorf("message %q names an address", v.answer.msg)
			}
		})
	}
}

// TestClassifyMarkedAnswered: an error Upstream marked as coming after
// bytes of an answer is not retried (the marker decides, not the path);
// the connection broke, so it is a broken answer.
func TestClassifyMarkedAnswered(t *testing.T) {
	ex := &exchange{r: httptestRequest(t), ctx: context.Background()}
	a := ex.failed(&answeredError{io.ErrUnexpectedEOF})
	if v := classify(a); v.retry || v.outcome != pool.OutcomeBroken {
		t.Errorf("answered error: retry=%v outcome=%d, want no retry, a broken answer", v.retry, v.outcome)
	}
}

func httptestRequest(t *testing.T) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "http://gateway.test/v1/chat/completions", nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// refusingBackend is a replica like uvicorn/h11 or aiohttp facing a
// request it will not take (a header section over its limit): it reads
// the head, answers 400 and closes with the body unread, so the kernel
// resets the connection while the gateway still writes the body. Small
// requests are read and answered 200. It counts the requests it saw.
// With tc it speaks TLS.
func refusingBackend(t *testing.T, seen *atomic.Int64, tc *tls.Config) string {
	t.Helper()
	u := rawBackend(t, func(c net.Conn) {
		// A small receive buffer: the gateway's write of a large body
		// waits on this side, and meets the reset.
		_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		if tc != nil {
			c = tls.Server(c, tc)
		}
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			seen.Add(1)
			if req.ContentLength > 1<<20 {
				const body = `{"error":"request header fields too large"}`
				fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
				return // closes with the body unread: RST
			}
			_, _ = io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
		}
	})
	if tc != nil {
		u = "https" + strings.TrimPrefix(u, "http")
	}
	return u
}

// testTLS returns a server config with httptest's certificate and a
// client config trusting it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS()
	defer srv.Close()
	return srv.TLS.Clone(), srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

// replicaPaths are the ways the Handler reaches replicas: Upstream's own
// connections, http.Transport (proxy.client: net/http), and Upstream's
// https fallback (an http.Transport as the gateway builds it). viaLoop
// reports whether the Server's own loop serves the clients itself; else
// it hands their connections to net/http.
var replicaPaths = []struct {
	name    string
	tls     bool
	viaLoop bool
	rt      func(client *tls.Config) http.RoundTripper
}{
	{"cutover", false, true, func(*tls.Config) http.RoundTripper { return &Upstream{} }},
	{"net-http", false, false, func(*tls.Config) http.RoundTripper { return NewTransport(0, 0) }},
	{"cutover-https", true, false, func(c *tls.Config) http.RoundTripper {
		fb := NewTransport(0, 0)
		fb.TLSClientConfig = c
		return &Upstream{Fallback: fb}
	}},
}

// TestRefusedLargeRequestKeepsReplica is issue 16's fault 3: a POST with a
// large header and an 8 MiB body that the replicas refuse (400, then a
// close with the body unread) ejected the replica and the retry ejected
// the next, so every client got 503 for seconds. The client must get the
// replica's 400, once (no retry after a response), and both replicas stay
// in rotation for everyone else — on every path to replicas (through
// http.Transport the write error won the race against the 400 about 3
// times in 5 until large bodies were sent with Expect: 100-continue).
func TestRefusedLargeRequestKeepsReplica(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	for _, rp := range replicaPaths {
		for _, fe := range frontends {
			t.Run(rp.name+"/"+fe.name, func(t *testing.T) {
				var seen0, seen1 atomic.Int64
				var tc *tls.Config
				if rp.tls {
					tc = serverTLS
				}
				b0, b1 := refusingBackend(t, &seen0, tc), refusingBackend(t, &seen1, tc)
				rt := rp.rt(clientTLS)
				t.Cleanup(rt.(interface{ CloseIdleConnections() }).CloseIdleConnections)
				out := &pool.Outlier{Consecutive5xx: 2, MaxEjectionPercent: 100, Logger: quiet}
				h := newHandler(t, Options{Picker: firstHealthy{}, Outlier: out, Transport: rt}, "", b0, b1)
				start := fe.start
				if fe.name == "loop" && !rp.viaLoop {
					// The loop hands these connections to net/http, as
					// in production.
					start = func(t *testing.T, h *Handler) string { return startServer(t, &Server{Handler: h}) }
				}
				addr := start(t, h)
				big := bytes.Repeat([]byte("a"), 8<<20)
				for i := range 3 {
					req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", bytes.NewReader(big))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("X-Large", strings.Repeat("x", 16<<10))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 400 || !strings.Contains(string(body), "request header fields too large") {
						t.Fatalf("request %d: status %d body %q, want the replica's 400", i, resp.StatusCode, body)
					}
				}
				if n0, n1 := seen0.Load(), seen1.Load(); n0 != 3 || n1 != 0 {
					t.Errorf("replicas saw %d and %d requests, want 3 and 0: a request answered 400 was resent", n0, n1)
				}
				for _, r := range h.Table().Live.Pool.Replicas {
					if !r.Healthy() || r.Failures() != 0 {
						t.Errorf("replica %s: healthy %v, %d failures; a replica that answered is not dead", r.Name, r.Healthy(), r.Failures())
					}
				}
				// Everyone else is served as before.
				resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("a small request after them: status %d, want 200", resp.StatusCode)
				}
			})
		}
	}
}

// TestExpectContinueToReplica: through http.Transport, a body over
// expectContinueAbove goes out with Expect: 100-continue (the replica may
// refuse it before it is sent, see outRequest), a smaller one without;
// a client's own Expect is met by the gateway and not forwarded. The
// replica gets the whole body either way. Upstream never asks.
func TestExpectContinueToReplica(t *testing.T) {
	plain := newEchoBackend(t)
	secure := httptest.NewTLSServer(http.HandlerFunc(echoHandler))
	closeAtEnd(t, secure)
	clientTLS := secure.Client().Transport.(*http.Transport).TLSClientConfig
	bodies := []struct {
		name         string
		size         int
		clientExpect bool
	}{
		{"small, client expects", 100, true},
		{"at the threshold", expectContinueAbove, false},
		{"large", expectContinueAbove + 1, false},
	}
	for _, rp := range replicaPaths {
		replica := plain.URL
		if rp.tls {
			replica = secure.URL
		}
		rt := rp.rt(clientTLS)
		t.Cleanup(rt.(interface{ CloseIdleConnections() }).CloseIdleConnections)
		addr := startNetHTTP(t, newHandler(t, Options{Transport: rt}, "", replica))
		_, ownClient := rt.(*Upstream)
		ownClient = ownClient && !rp.tls
		for _, b := range bodies {
			t.Run(rp.name+"/"+b.name, func(t *testing.T) {
				body := strings.Repeat("a", b.size)
				req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if b.clientExpect {
					req.Header.Set("Expect", "100-continue")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %.200q", resp.StatusCode, got)
				}
				e := decodeEcho(t, string(got))
				want := ""
				if !ownClient && b.size > expectContinueAbove {
					want = "100-continue"
				}
				if g := e.Header.Get("Expect"); g != want {
					t.Errorf("replica saw Expect %q, want %q", g, want)
				}
				if len(e.Body) != b.size {
					t.Errorf("replica got %d body bytes, want %d", len(e.Body), b.size)
				}
			})
		}
	}
}

// TestResetWithoutAnswerIsRetried: a replica that resets the connection
// without answering (a crash) is the case the retry exists for: the other
// replica answers, and the failure counts against the first one alone.
// A replica that resets new connections at once (one being killed: its
// listen queue completes handshakes) is the same case, whether the reset
// comes before the request is written or after.
func TestResetWithoutAnswerIsRetried(t *testing.T) {
	crashes := []struct {
		name  string
		serve func(net.Conn)
	}{
		{"after the request", func(c net.Conn) {
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			_ = c.(*net.TCPConn).SetLinger(0) // RST, no answer
		}},
		{"at once", func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0) }},
	}
	for _, fe := range frontends {
		for _, cr := range crashes {
			t.Run(fe.name+"/"+cr.name, func(t *testing.T) {
				crash := rawBackend(t, cr.serve)
				echo := newEchoBackend(t)
				out := &pool.Outlier{Consecutive5xx: 3, MaxEjectionPercent: 50, Logger: quiet}
				h := newHandler(t, Options{Picker: firstHealthy{}, Outlier: out}, "", crash, echo.URL)
				addr := fe.start(t, h)
				for i := range 4 {
					resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
					if err != nil {
						t.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Fatalf("request %d: status %d, want 200 from the retry", i, resp.StatusCode)
					}
				}
				rs := h.Table().Live.Pool.Replicas
				if rs[0].Healthy() {
					t.Error("a replica resetting three requests in a row was not ejected")
				}
				if !rs[1].Healthy() || rs[1].Failures() != 0 {
					t.Errorf("the answering replica: healthy %v, %d failures", rs[1].Healthy(), rs[1].Failures())
				}
			})
		}
	}
}

// testClock is a settable clock for the outlier detector.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// mockReplica starts a simulated vLLM replica serving model-v1.
func mockReplica(t *testing.T) (*mockllm.Server, string) {
	t.Helper()
	m, err := mockllm.New(mockllm.Config{Model: "model-v1", Tokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: m}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return m, "http://" + ln.Addr().String()
}

// setFaults posts to the simulator's /mock/faults.
func setFaults(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/mock/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /mock/faults %s: status %d", body, resp.StatusCode)
	}
}

// TestOutlierEjectsFailingReplica is issue 16's fault 4: with one of two
// replicas answering every completion 500 at once, least-outstanding sent
// it almost all traffic. Clients now see a few failures, then none: the
// picker weighs failures in a row, and outlier detection ejects the
// replica (round robin, which does not weigh, shows the ejection alone).
// After the ejection time it returns, and is ejected again.
func TestOutlierEjectsFailingReplica(t *testing.T) {
	const (
		workers     = 4
		perWorker   = 40
		consecutive = 5
	)
	pickers := []struct {
		name   string
		picker pool.Picker
	}{
		{"least_outstanding", pool.LeastOutstanding{}},
		{"round_robin", &pool.RoundRobin{}},
	}
	for _, fe := range frontends {
		for _, pk := range pickers {
			t.Run(fe.name+"/"+pk.name, func(t *testing.T) {
				good, goodURL := mockReplica(t)
				bad, badURL := mockReplica(t)
				setFaults(t, badURL, `{"error_rate":1}`)
				clock := &testClock{now: time.Unix(1000, 0)}
				out := &pool.Outlier{Consecutive5xx: consecutive, MaxEjectionPercent: 50, BaseEjectionTime: time.Minute,
					MaxEjectionTime: 10 * time.Minute, Now: clock.Now, Logger: quiet}
				h := newHandler(t, Options{Picker: pk.picker, Outlier: out}, "", goodURL, badURL)
				addr := fe.start(t, h)
				badRep := h.Table().Live.Pool.Replicas[1]
				var failed, failedAfter atomic.Int64
				send := func() {
					ejected := !badRep.Healthy()
					resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
						strings.NewReader(`{"model":"model-v1","messages":[{"role":"user","content":"hi"}]}`))
					if err != nil {
						t.Error(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
						if ejected {
							failedAfter.Add(1)
							t.Logf("after the ejection: status %d %s", resp.StatusCode, body)
						}
					}
				}
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for range perWorker {
							send()
						}
					})
				}
				wg.Wait()
				total := int64(workers * perWorker)
				t.Logf("%d of %d failed; bad replica served %d, good %d", failed.Load(), total,
					bad.Stats().Requests, good.Stats().Requests)
				if n := failed.Load(); n > consecutive+workers-1 {
					t.Errorf("%d requests failed, want at most %d", n, consecutive+workers-1)
				}
				if n := failedAfter.Load(); n != 0 {
					t.Errorf("%d requests that started after the ejection failed", n)
				}
				if pk.name == "round_robin" && badRep.Healthy() {
					t.Fatal("the failing replica was not ejected")
				}
				if badRep.Healthy() {
					return // least outstanding avoided it without an ejection
				}
				// The ejection ends after base_ejection_time.
				clock.advance(time.Minute)
				out.Tick()
				if !badRep.Healthy() {
					t.Fatal("the replica did not return after the ejection time")
				}
				before := bad.Stats().Requests
				for range 2 * consecutive {
					send()
				}
				if bad.Stats().Requests == before {
					t.Error("the returned replica got no request")
				}
			})
		}
	}
}

// TestErrorBodiesNameNoAddress is issue 16's fault 10: the gateway's own
// error answers never carry a replica's ip:port (it stays in the logs),
// and with HideReplica no answer names its replica.
func TestErrorBodiesNameNoAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close()
	slow := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = br.ReadByte() // never answers
	})
	echo := newEchoBackend(t)
	for _, fe := range frontends {
		for _, hide := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/hide=%v", fe.name, hide), func(t *testing.T) {
				cases := []struct {
					replica string
					status  int
				}{
					{dead, 502},
					{slow, 504},
					{echo.URL, 200},
				}
				for _, c := range cases {
					up := &Upstream{ResponseHeaderTimeout: 100 * time.Millisecond}
					t.Cleanup(up.CloseIdleConnections)
					h := newHandler(t, Options{Transport: up, HideReplica: hide}, "", c.replica)
					addr := fe.start(t, h)
					resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != c.status {
						t.Fatalf("%s: status %d, want %d (%s)", c.replica, resp.StatusCode, c.status, body)
					}
					u, _ := url.Parse(c.replica)
					if c.status != 200 && (strings.Contains(string(body), u.Host) || addrPattern.Match(body)) {
						t.Errorf("error body names an address: %s", body)
					}
					_, shown := resp.Header["X-Cutover-Replica"]
					if shown == hide {
						t.Errorf("status %d: X-Cutover-Replica present %v with HideReplica %v", resp.StatusCode, shown, hide)
					}
				}
			})
		}
	}
}

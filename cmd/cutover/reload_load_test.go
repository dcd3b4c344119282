package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/tlsfile/tlstest"
)

// TestReloadUnderLoad: under a steady load of plain and streamed
// completions over TLS (kept-alive connections and new ones), six reloads
// change the proxy's settings, the listener's certificate and the live
// pool's replicas (one added, one removed while it serves streams, one
// added back), by the API and by SIGHUP. No request fails and no stream
// is cut, a stream open across each reload ends whole, new handshakes get
// the new certificate, and the added replica takes traffic.
func TestReloadUnderLoad(t *testing.T) {
	replica := func() string {
		m, err := mockllm.New(mockllm.Config{Model: "model-v1", Tokens: 2000, ITL: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return mockPoolWith(t, m)
	}
	r1, r2, r3 := replica(), replica(), replica()
	ca := tlstest.NewCA(t, "test CA")
	certDir := t.TempDir()
	certFile, keyFile := ca.WritePair(t, certDir, "cert-A")
	tlsBlock := fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", certFile, keyFile)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(), blue: []string{r1, r2}, extra: tlsBlock}
	path := c.write(t)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", path)
	admin := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, admin)

	trust := &tls.Config{RootCAs: ca.Pool()}
	keepAlive := &http.Client{Transport: &http.Transport{TLSClientConfig: trust, MaxIdleConnsPerHost: 8}, Timeout: 60 * time.Second}
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: trust, DisableKeepAlives: true}, Timeout: 60 * time.Second}
	t.Cleanup(keepAlive.CloseIdleConnections)

	var (
		done, streams, failed, cut atomic.Int64
		mu                         sync.Mutex
		problems                   []string
		byReplica                  = map[string]int{}
	)
	report := func(kind *atomic.Int64, format string, args ...any) {
		kind.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	// complete sends one completion; a stream is read to its [DONE], after
	// first (when set) has seen its first event.
	complete := func(cl *http.Client, stream bool, maxTokens int, first func()) {
		body := fmt.Sprintf(`{"model":"llama","stream":%t,"max_tokens":%d,"messages":[{"role":"user","content":"hi"}]}`, stream, maxTokens)
		resp, err := cl.Post("https://"+c.listen+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			report(&failed, "stream %t: %v", stream, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			report(&failed, "stream %t: %d %s", stream, resp.StatusCode, b)
			return
		}
		mu.Lock()
		byReplica[resp.Header.Get("X-Cutover-Replica")]++
		mu.Unlock()
		if !stream {
			if _, err := io.ReadAll(resp.Body); err != nil {
				report(&cut, "answer cut: %v", err)
			}
			done.Add(1)
			return
		}
		br := bufio.NewReader(resp.Body)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
			report(&cut, "stream: first line %q: %v", line, err)
			return
		}
		if first != nil {
			first()
		}
		rest, err := io.ReadAll(br)
		if err != nil || !strings.Contains(string(rest), "data: [DONE]") {
			report(&cut, "stream cut: %v, ends %q", err, rest[max(0, len(rest)-40):])
			return
		}
		streams.Add(1)
		done.Add(1)
	}

	stop := make(chan struct{})
	var load sync.WaitGroup
	const workers = 4
	for w := range workers {
		load.Go(func() {
			for i := range 400 { // bounded; stop ends it much sooner
				select {
				case <-stop:
					return
				default:
				}
				cl := keepAlive
				if i%4 == 3 {
					cl = fresh // a new connection: a new handshake
				}
				complete(cl, (w+i)%2 == 0, 8, nil)
			}
		})
	}
	// progress waits until the load completed n more requests.
	progress := func(n int64) {
		t.Helper()
		target := done.Load() + n
		deadline := time.Now().Add(60 * time.Second)
		for done.Load() < target {
			if time.Now().After(deadline) {
				mu.Lock()
				seen := slices.Clone(problems)
				mu.Unlock()
				t.Fatalf("load stalled at %d requests (want %d); failed %d, cut %d: %q", done.Load(), target, failed.Load(), cut.Load(), seen)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	var long sync.WaitGroup
	// openStream starts a 2 s stream and returns once its first event
	// arrived: it is in flight across the reload that follows.
	openStream := func() {
		started := make(chan struct{})
		long.Go(func() { complete(keepAlive, true, 400, func() { close(started) }) })
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			t.Fatalf("the long stream did not start: %q", problems)
		}
	}
	reload := func(file string, want ...string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		progress(2 * workers)
		openStream()
		res, err := admin.Reload(t.Context())
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		for _, w := range want {
			if !slices.Contains(res.Applied, w) {
				t.Fatalf("reload applied %q, want %q among them (restart needed: %q)", res.Applied, w, res.RestartNeeded)
			}
		}
		if len(res.RestartNeeded) > 0 {
			t.Fatalf("reload: restart needed for %q", res.RestartNeeded)
		}
	}
	servedCert := func() string {
		conn, err := tls.Dial("tcp", c.listen, trust)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	base := string(original)
	withReplicas := func(rs ...string) string {
		return strings.Replace(base, "replicas: ["+r1+", "+r2+"]", "replicas: ["+strings.Join(rs, ", ")+"]", 1)
	}
	const proxyBlock = "proxy: {idle_timeout: 2m, client_write_timeout: 20s, max_buffered_bytes: 268435456, response_header_timeout: 5m, timeout: 10m}\n"
	began := time.Now()

	reload(base+proxyBlock, "proxy.idle_timeout", "proxy.response_header_timeout", "proxy.max_buffered_bytes")
	ca.WritePair(t, certDir, "cert-B")
	reload(base+proxyBlock, "TLS certificates")
	if got := servedCert(); got != "cert-B" {
		t.Errorf("after the reload a new handshake got %q, want cert-B", got)
	}
	reload(withReplicas(r1, r2, r3)+proxyBlock, "pools.blue.replicas")
	awaitHealthy(t, admin, "blue", 3)
	progress(4 * workers)
	reload(withReplicas(r2, r3)+proxyBlock, "pools.blue.replicas") // r1 leaves with streams on it

	// By SIGHUP: the proxy back to its defaults and a third certificate.
	ca.WritePair(t, certDir, "cert-C")
	if err := os.WriteFile(path, []byte(withReplicas(r2, r3)), 0o600); err != nil {
		t.Fatal(err)
	}
	progress(2 * workers)
	openStream()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "SIGHUP: configuration reloaded")
	if got := servedCert(); got != "cert-C" {
		t.Errorf("after SIGHUP a new handshake got %q, want cert-C", got)
	}
	reload(withReplicas(r1, r2, r3), "pools.blue.replicas")
	progress(2 * workers)

	close(stop)
	load.Wait()
	long.Wait()
	elapsed := time.Since(began)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("6 reloads in %v under load: %d requests (%d streams) completed, %d failed, %d cut; by replica %v",
		elapsed.Round(time.Millisecond), done.Load(), streams.Load(), failed.Load(), cut.Load(), byReplica)
	if failed.Load() != 0 || cut.Load() != 0 {
		t.Fatalf("%d requests failed and %d were cut: %q", failed.Load(), cut.Load(), problems)
	}
	if byReplica[r3] == 0 {
		t.Errorf("the added replica %s took no request: %v", r3, byReplica)
	}
	if streams.Load() < 6 {
		t.Errorf("only %d streams completed", streams.Load())
	}
}

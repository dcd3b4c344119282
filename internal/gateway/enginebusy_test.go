package gateway

import (
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/pool"
)

// TestEngineBusyReadsTheEngines: with a driver, the drain's count is what
// the old pool's engines report (vLLM's requests running and waiting),
// one replica's unreadable metrics an error unless its checks have it
// down; with the builtin driver there is none (its own count is exact).
func TestEngineBusyReadsTheEngines(t *testing.T) {
	if (&Gateway{cfg: &config.Config{Driver: "builtin"}}).engineBusy() != nil {
		t.Fatal("engineBusy with the builtin driver")
	}
	g := &Gateway{cfg: &config.Config{Driver: "nginx"}, tls: &tlsSetup{}}
	busy := g.engineBusy()
	m, err := mockllm.New(mockllm.Config{Model: "m", Tokens: 100, ITL: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	p := &pool.Pool{Name: "blue", Model: "m", Replicas: []*pool.Replica{pool.NewReplica(u)}}
	ctx := context.Background()
	if n, err := busy(ctx, p); n != 0 || err != nil {
		t.Fatalf("idle engine: %d %v, want 0", n, err)
	}
	done, release := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		resp, err := srv.Client().Post(srv.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		if err == nil {
			<-release
			resp.Body.Close() // hangs up: the engine drops the request
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := busy(ctx, p); n != 1; n, _ = busy(ctx, p) {
		if time.Now().After(deadline) {
			t.Fatalf("engine with a stream: %d, want 1", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	<-done
	dead, _ := url.Parse("http://127.0.0.1:1")
	p.Replicas = append(p.Replicas, pool.NewReplica(dead))
	if _, err := busy(ctx, p); err == nil {
		t.Fatal("a healthy replica whose metrics cannot be read: no error")
	}
	p.Replicas[1].SetInitial(time.Now(), context.DeadlineExceeded)
	if _, err := busy(ctx, p); err != nil {
		t.Fatalf("a replica down by its checks: %v, want it counted as serving nothing", err)
	}
}

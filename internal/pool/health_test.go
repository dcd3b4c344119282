package pool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/pool"
)

// fakeReplica is an OpenAI-compatible server whose health answer can be
// changed while it runs.
type fakeReplica struct {
	srv     *httptest.Server
	replica *pool.Replica
	status  atomic.Int32 // status of GET /health
	checks  atomic.Int32 // GET /health requests served
}

// newFakeReplica starts a server answering /health with 200 and
// /v1/models with modelsBody (a 404 when empty).
func newFakeReplica(t *testing.T, modelsBody string) *fakeReplica {
	t.Helper()
	f := &fakeReplica{}
	f.status.Store(http.StatusOK)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		f.checks.Add(1)
		w.WriteHeader(int(f.status.Load()))
	})
	if modelsBody != "" {
		mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, modelsBody)
		})
	}
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.replica = replicaFor(t, f.srv.URL)
	return f
}

func replicaFor(t *testing.T, raw string) *pool.Replica {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return pool.NewReplica(u)
}

func models(ids ...string) string {
	var b strings.Builder
	b.WriteString(`{"object":"list","data":[`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%q,"object":"model"}`, id)
	}
	b.WriteString(`]}`)
	return b.String()
}

func newChecker(targets ...pool.Target) *pool.Checker {
	return &pool.Checker{
		Path:    "/health",
		Timeout: 5 * time.Second,
		Rise:    2,
		Fall:    3,
		Targets: func() []pool.Target { return targets },
		Logger:  slog.New(slog.DiscardHandler),
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name    string
		health  int
		models  string
		model   string
		wantErr []string // substrings; nil means success
	}{
		{"healthy and serving the model", 200, models("m-0", "m-1"), "m-1", nil},
		{"no model to check", 200, "", "", nil},
		{"any 2xx health", 204, models("m-1"), "m-1", nil},
		{"health 503", 503, models("m-1"), "m-1", []string{"/health", "status 503"}},
		{"model not listed", 200, models("m-0", "m-2"), "m-1", []string{`"m-1"`, `"m-0", "m-2"`}},
		{"no models listed", 200, models(), "m-1", []string{`"m-1"`, "serves none"}},
		{"models endpoint missing", 200, "", "m-1", []string{"/v1/models", "status 404"}},
		{"models not JSON", 200, "<html>", "m-1", []string{"/v1/models", "bad JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeReplica(t, tt.models)
			f.status.Store(int32(tt.health))
			err := newChecker().Probe(context.Background(), f.replica, tt.model)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Probe: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Probe succeeded, want an error")
			}
			for _, s := range append(tt.wantErr, f.srv.URL) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestProbeUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	r := replicaFor(t, srv.URL)
	srv.Close() // nothing listens there any more
	err := newChecker().Probe(context.Background(), r, "m-1")
	if err == nil || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("Probe of a closed server = %v, want an error naming it", err)
	}
}

func TestProbeTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // hang until the checker gives up
	}))
	defer srv.Close()
	c := newChecker()
	c.Timeout = 100 * time.Millisecond
	begin := time.Now()
	err := c.Probe(context.Background(), replicaFor(t, srv.URL), "m-1")
	elapsed := time.Since(begin)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Probe of a hanging server = %v, want a deadline error", err)
	}
	if elapsed < c.Timeout || elapsed > c.Timeout+2*time.Second {
		t.Errorf("Probe returned after %v, want about %v", elapsed, c.Timeout)
	}
}

func TestTickFallAndRise(t *testing.T) {
	f := newFakeReplica(t, models("m-1"))
	c := newChecker(pool.Target{Replica: f.replica, Model: "m-1"})
	ctx := context.Background()
	tick := func(want bool, why string) {
		t.Helper()
		c.Tick(ctx)
		if got := f.replica.Healthy(); got != want {
			t.Fatalf("%s: healthy = %v, want %v (last error %q)", why, got, want, f.replica.Health().LastError)
		}
	}
	tick(true, "passing")
	f.status.Store(http.StatusServiceUnavailable)
	for i := 1; i < c.Fall; i++ {
		tick(true, fmt.Sprintf("fail %d of %d", i, c.Fall))
	}
	tick(false, "fall reached")
	if msg := f.replica.Health().LastError; !strings.Contains(msg, "503") {
		t.Errorf("LastError %q does not say why", msg)
	}
	f.status.Store(http.StatusOK)
	for i := 1; i < c.Rise; i++ {
		tick(false, fmt.Sprintf("pass %d of %d", i, c.Rise))
	}
	tick(true, "rise reached")
	if got, want := f.checks.Load(), int32(1+c.Fall+c.Rise); got != want {
		t.Errorf("%d health requests, want one per tick (%d)", got, want)
	}
}

func TestTickChecksEveryTargetOnce(t *testing.T) {
	a, b := newFakeReplica(t, models("m-1")), newFakeReplica(t, models("m-1"))
	b.status.Store(http.StatusInternalServerError)
	ta, tb := pool.Target{Replica: a.replica, Model: "m-1"}, pool.Target{Replica: b.replica, Model: "m-1"}
	c := newChecker(ta, ta, tb) // the same pair twice is checked once
	c.Fall = 1
	c.Tick(context.Background())
	if !a.replica.Healthy() || b.replica.Healthy() {
		t.Errorf("after a tick: a healthy %v (want true), b healthy %v (want false)", a.replica.Healthy(), b.replica.Healthy())
	}
	if n := a.checks.Load(); n != 1 {
		t.Errorf("a checked %d times in one tick, want 1", n)
	}
}

// A cancelled round (shutdown) must not count as a failed check.
func TestTickCancelledRecordsNothing(t *testing.T) {
	f := newFakeReplica(t, models("m-1"))
	c := newChecker(pool.Target{Replica: f.replica, Model: "m-1"})
	c.Fall = 1
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Tick(ctx)
	if h := f.replica.Health(); !h.Healthy || !h.CheckedAt.IsZero() {
		t.Errorf("a cancelled tick recorded a check: %+v", h)
	}
}

func TestInitialSetsHealthWithoutThresholds(t *testing.T) {
	up, down := newFakeReplica(t, models("m-1")), newFakeReplica(t, models("m-2"))
	down.replica.Eject(time.Now(), errDown) // must come back despite Rise
	c := newChecker(pool.Target{Replica: up.replica, Model: "m-2"}, pool.Target{Replica: down.replica, Model: "m-2"})
	c.Initial(context.Background())
	if up.replica.Healthy() {
		t.Error("replica serving the wrong model is healthy after Initial")
	}
	if !down.replica.Healthy() {
		t.Errorf("passing replica is unhealthy after Initial: %+v", down.replica.Health())
	}
}

// TestProbeSendsAuthorization: a replica started with vLLM's --api-key
// answers /v1/models 401 without the key; the check sends the replica's
// Authorization and passes.
func TestProbeSendsAuthorization(t *testing.T) {
	m, err := mockllm.New(mockllm.Config{Model: "m-1", APIKey: "k-1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	r := replicaFor(t, srv.URL)
	if err := newChecker().Probe(context.Background(), r, "m-1"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Probe without the key = %v, want a 401 failure", err)
	}
	r = replicaFor(t, srv.URL)
	r.Authorization = "Bearer k-1"
	if err := newChecker().Probe(context.Background(), r, "m-1"); err != nil {
		t.Fatalf("Probe with the key: %v", err)
	}
}

// TestPoolListsWhatEveryReplicaLists: an adapter counts as the pool's
// when every healthy replica lists it, since a request may go to any (one
// that only some list got vLLM's 404 from the others); a replica that is
// down does not count.
func TestPoolListsWhatEveryReplicaLists(t *testing.T) {
	a := newFakeReplica(t, models("base", "sql-lora", "shared-lora"))
	b := newFakeReplica(t, models("base", "other-lora", "shared-lora"))
	p := &pool.Pool{Name: "blue", Model: "base", Replicas: []*pool.Replica{a.replica, b.replica}}
	c := newChecker()
	for _, r := range p.Replicas {
		if err := c.Probe(context.Background(), r, "base"); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]bool{"shared-lora": true, "sql-lora": false, "other-lora": false, "base": false} {
		if got := p.Lists(name); got != want {
			t.Errorf("Lists(%q) = %v, want %v", name, got, want)
		}
	}
	if got := p.Listed(); len(got) != 1 || got[0] != "shared-lora" {
		t.Errorf("Listed() = %q, want [shared-lora]", got)
	}
	b.replica.SetInitial(time.Now(), errors.New("down"))
	if !p.Lists("sql-lora") || len(p.Listed()) != 2 {
		t.Errorf("with the other replica down: Lists(sql-lora) %v, Listed %q", p.Lists("sql-lora"), p.Listed())
	}
}

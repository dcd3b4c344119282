package shadow

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// helperEnv makes this test binary the shadow helper (see init): "run"
// serves as is, "idle" lowers its priority first as cutover shadow-helper
// does.
const helperEnv = "CUTOVER_SHADOW_TEST_HELPER"

func init() {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return
	}
	if mode == "die" { // takes one copy and exits without answering
		fr := frameReader{r: bufio.NewReader(os.Stdin)}
		_, _ = fr.config()
		_, _ = fr.copy()
		os.Exit(1)
	}
	if mode == "idle" {
		if err := IdlePriority(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	if err := ServeHelper(context.Background(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// testHelper returns an Options.Helper that runs this test binary as the
// helper, in mode (see helperEnv).
func testHelper(t *testing.T, mode string) []string {
	t.Setenv(helperEnv, mode)
	return []string{os.Args[0], "-test.run=^$"}
}

// senders are the two ways a copy goes out, for tables: from the
// gateway's process, and through the helper process.
var senders = []struct {
	name   string
	helper func(t *testing.T) []string
}{
	{"inline", func(*testing.T) []string { return nil }},
	{"helper", func(t *testing.T) []string { return testHelper(t, "run") }},
}

// await polls cond until it holds, for at most 20 s.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
	}
}

// TestSaturatedCandidateDropsCopies: with every copy held by a candidate
// that does not answer, the copies that do not fit are dropped and
// counted, Submit never waits, and those held are paired once the
// candidate answers — through the helper as from the gateway's process.
func TestSaturatedCandidateDropsCopies(t *testing.T) {
	for _, s := range senders {
		t.Run(s.name, func(t *testing.T) {
			mock, _ := mockllm.New(mockllm.Config{Model: "m2", Tokens: 3})
			release := make(chan struct{})
			arrived := make(chan struct{}, 64)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				<-release
				mock.ServeHTTP(w, r)
			}))
			defer srv.Close()
			answer := sync.OnceFunc(func() { close(release) })
			defer answer()
			u, _ := url.Parse(srv.URL)
			cand := &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{pool.NewReplica(u)}}
			const queue, concurrency, copies = 2, 1, 40
			m := New(Options{Percent: 100, Queue: queue, Concurrency: concurrency, Upstream: &proxy.Upstream{}, Helper: s.helper(t)})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pairs := make(chan Pair, copies)
			m.SetTarget("blue", cand, func(p Pair) { pairs <- p })
			go m.Run(ctx)
			body := []byte(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`)
			submit := func() {
				m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: body, Live: proxy.Observation{Pool: "blue", Status: 200}})
			}
			submit()
			select {
			case <-arrived: // the first copy is at the candidate
			case <-time.After(20 * time.Second):
				t.Fatal("no copy reached the candidate")
			}
			for range copies - 1 {
				submit() // never waits
			}
			// Held: the copy at the candidate and the queue's worth
			// (waiting in the gateway's queue, or in the helper).
			const held = concurrency + queue
			await(t, "the copies that do not fit dropped", func() bool { return m.Stats().Dropped == copies-held })
			answer()
			for i := range held {
				select {
				case p := <-pairs:
					if p.Shadow.Status != 200 {
						t.Fatalf("pair %d: %+v", i, p.Shadow)
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("%d of %d held copies paired", i, held)
				}
			}
			if st := m.Stats(); st.Sent != held || st.Dropped != copies-held || st.Failed != 0 {
				t.Errorf("stats %+v: want %d sent and answered, %d dropped", st, held, copies-held)
			}
		})
	}
}

// TestHelperRunsAtIdlePriority: every thread of the helper process runs
// at SCHED_IDLE, and copies go through it.
func TestHelperRunsAtIdlePriority(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SCHED_IDLE is Linux's")
	}
	stop := oneCopy(t, testHelper(t, "idle"))
	pid := childOf(t, os.Getpid())
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if idle, err := schedIdle(tid); err != nil || !idle {
			t.Errorf("helper %d thread %d: SCHED_IDLE %v, %v", pid, tid, idle, err)
		}
	}
	stop()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/task", pid)); err == nil {
		t.Errorf("helper %d still runs after Run returned", pid)
	}
}

// childOf returns the only child process of pid.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, not ")".
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, c)
		}
	}
	if len(kids) != 1 {
		t.Fatalf("children of %d: %v, want the helper alone", pid, kids)
	}
	return kids[0]
}

// TestHelperDownSendsInline: a helper that cannot start leaves the copies
// to the gateway's process (logged), not lost.
func TestHelperDownSendsInline(t *testing.T) {
	oneCopy(t, []string{t.TempDir() + "/no-such-helper"})()
}

// TestHelperExitDropsItsCopies: the copies a helper takes down with it are
// dropped and counted, never counted as sent; the gateway then sends the
// next ones itself.
func TestHelperExitDropsItsCopies(t *testing.T) {
	mock, _ := mockllm.New(mockllm.Config{Model: "m2", Tokens: 3})
	srv := httptest.NewServer(mock)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	m := New(Options{Percent: 100, Concurrency: 1, Upstream: &proxy.Upstream{}, Helper: testHelper(t, "die")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pairs := make(chan Pair, 1)
	r := pool.NewReplica(u)
	m.SetTarget("blue", &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{r}}, func(p Pair) { pairs <- p })
	go m.Run(ctx)
	submit := func() {
		m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`), Live: proxy.Observation{Pool: "blue", Status: 200}})
	}
	submit()
	await(t, "the copy the helper took down dropped", func() bool { return m.Stats().Dropped == 1 })
	if st := m.Stats(); st.Sent != 0 || r.InFlight() != 0 {
		t.Fatalf("%+v, %d in flight on the replica: want nothing sent or held", st, r.InFlight())
	}
	submit() // the gateway's own workers, until the helper is restarted
	select {
	case p := <-pairs:
		if p.Shadow.Status != 200 {
			t.Fatalf("pair %+v", p.Shadow)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no pair")
	}
}

// oneCopy runs a mirror with helper (see Options.Helper) against a
// simulated candidate, has one copy answered, and returns a function that
// stops the mirror and waits for Run to return.
func oneCopy(t *testing.T, helper []string) (stop func()) {
	t.Helper()
	mock, _ := mockllm.New(mockllm.Config{Model: "m2", Tokens: 3})
	srv := httptest.NewServer(mock)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	m := New(Options{Percent: 100, Concurrency: 1, Upstream: &proxy.Upstream{}, Helper: helper})
	ctx, cancel := context.WithCancel(context.Background())
	pairs := make(chan Pair, 1)
	m.SetTarget("blue", &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{pool.NewReplica(u)}}, func(p Pair) { pairs <- p })
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`), Live: proxy.Observation{Pool: "blue", Status: 200}})
	select {
	case p := <-pairs:
		if p.Shadow.Status != 200 {
			t.Fatalf("pair %+v", p.Shadow)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no pair")
	}
	return stop
}

// TestServeHelperStopsOnCancel: a helper whose context ends (SIGTERM)
// while a copy waits for a slot returns, without an error, instead of
// reading on past its concurrency (it once took the copy anyway and
// waited for more input forever).
func TestServeHelperStopsOnCancel(t *testing.T) {
	hold := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hold }))
	defer srv.Close()
	defer close(hold)
	in, feed := io.Pipe()
	defer feed.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeHelper(ctx, in, io.Discard) }()
	fw := frameWriter{w: bufio.NewWriter(feed)}
	_ = fw.config(helperConfig{Concurrency: 1, Timeout: time.Hour})
	for id := range uint64(2) { // the first holds the only slot
		_ = fw.copy(&copyRequest{ID: id + 1, URL: srv.URL, Path: "/v1/chat/completions", Body: []byte(`{}`)})
	}
	if err := fw.w.Flush(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeHelper: %v, want nil on cancel", err)
		}
	case <-time.After(20 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("ServeHelper still runs 20 s after its context ended:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

package shadow

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

func TestWant(t *testing.T) {
	m := New(Options{Percent: 100, MaxBodyBytes: 10})
	if m.Want("blue", 5) {
		t.Fatal("wants copies with no target")
	}
	m.SetTarget("blue", &pool.Pool{Name: "green"}, func(Pair) {})
	if !m.Want("blue", 5) || m.Want("green", 5) {
		t.Fatal("must want live-pool requests only")
	}
	if m.Want("blue", 11) || m.Stats().Oversize != 1 {
		t.Fatalf("oversize body wanted: %+v", m.Stats())
	}
	m.Stop()
	if m.Want("blue", 5) {
		t.Fatal("wants copies after Stop")
	}
}

// TestMirrorComparesPairs sends copies to a simulated candidate and checks
// the pair comparison: same text when the candidate answers like the live
// version, a mismatch when it does not; a full queue drops and counts.
func TestMirrorComparesPairs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answerAs string
		mismatch bool
	}{{"same weights", "m1", false}, {"other weights", "", true}} {
		for _, s := range senders {
			t.Run(tc.name+"/"+s.name, func(t *testing.T) { testMirrorComparesPairs(t, s.helper(t), tc.answerAs, tc.mismatch) })
		}
	}
}

// testMirrorComparesPairs is TestMirrorComparesPairs with one sender.
func testMirrorComparesPairs(t *testing.T, helper []string, answerAs string, mismatch bool) {
	mock, _ := mockllm.New(mockllm.Config{Model: "m2", Tokens: 5, AnswerAs: answerAs})
	srv := httptest.NewServer(mock)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	cand := &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{pool.NewReplica(u)}}
	m := New(Options{Percent: 100, Queue: 2, Concurrency: 1, Upstream: &proxy.Upstream{}, Helper: helper})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pairs := make(chan Pair, 1)
	m.SetTarget("blue", cand, func(p Pair) { pairs <- p })
	go m.Run(ctx)
	liveText := mockllm.Answer("m1", "hi", 5)
	resp := `{"model":"m1","choices":[{"message":{"content":"` + liveText + `"}}],"usage":{"completion_tokens":5}}`
	// A live answer cut short is never compared (regression: it once
	// counted as a mismatch).
	m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(`{"model":"m1","temperature":0,"messages":[{"role":"user","content":"hi"}]}`),
		Live: proxy.Observation{Pool: "blue", Status: http.StatusOK, Error: "upstream_broken"}, Response: []byte(resp[:20])})
	if p := <-pairs; p.Judged() || p.Mismatch() {
		t.Fatalf("a cut live answer was judged: %+v", p)
	}
	m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(`{"model":"m1","temperature":0,"messages":[{"role":"user","content":"hi"}]}`),
		Live: proxy.Observation{Pool: "blue", Status: http.StatusOK}, Response: []byte(resp)})
	select {
	case p := <-pairs:
		if p.Mismatch() != mismatch || !p.Deterministic || p.Shadow.Status != 200 || p.LiveText != liveText {
			t.Fatalf("pair %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pair")
	}
}

func TestSubmitNeverBlocks(t *testing.T) {
	m := New(Options{Percent: 100, Queue: 2})
	for range 5 {
		m.Submit(&proxy.Mirrored{}) // nobody works the queue
	}
	if s := m.Stats(); s.Dropped != 3 {
		t.Fatalf("dropped %d, want 3", s.Dropped)
	}
}

// TestLongCandidateStream: a candidate stream longer than what is kept for
// comparing texts (maxAnswer) that ends properly is counted whole and not
// as a failure; a deterministic one is left out of the text comparison (a
// regression: the cut buffer lacked [DONE], so the copy "failed").
func TestLongCandidateStream(t *testing.T) {
	ev := `data: {"id":"x","object":"chat.completion.chunk","model":"m2","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}` + "\n\n"
	n := (maxAnswer+maxAnswer/4)/len(ev) + 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		var b strings.Builder
		for range n {
			b.WriteString(ev)
		}
		b.WriteString("data: [DONE]\n\n")
		fmt.Fprint(w, b.String())
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body    string
		deterministic bool
	}{
		{"sampled", `{"model":"m1","stream":true,"messages":[]}`, false},
		{"deterministic", `{"model":"m1","stream":true,"temperature":0,"messages":[]}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cand := &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{pool.NewReplica(u)}}
			m := New(Options{Percent: 100, Concurrency: 1, Upstream: &proxy.Upstream{}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pairs := make(chan Pair, 1)
			m.SetTarget("blue", cand, func(p Pair) { pairs <- p })
			go m.Run(ctx)
			m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(tc.body),
				Live: proxy.Observation{Pool: "blue", Status: 200, Stream: true}})
			select {
			case p := <-pairs:
				if p.Shadow.Failed() || p.Shadow.Tokens != n {
					t.Errorf("a complete stream of %d events: failed %v (%q), %d tokens", n, p.Shadow.Failed(), p.Shadow.Err, p.Shadow.Tokens)
				}
				if p.Shadow.Truncated != tc.deterministic || p.Comparable {
					t.Errorf("truncated %v comparable %v; want truncated %v, never comparable", p.Shadow.Truncated, p.Comparable, tc.deterministic)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no pair")
			}
		})
	}
}

// TestCopiesCarryReplicaKey: a shadow copy to a candidate replica started
// with vLLM's --api-key carries the replica's Authorization, through the
// Upstream and through the http.Client path (issue 15 item 9).
func TestCopiesCarryReplicaKey(t *testing.T) {
	mock, _ := mockllm.New(mockllm.Config{Model: "m2", Tokens: 3, APIKey: "cand-key"})
	srv := httptest.NewServer(mock)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"upstream", Options{Percent: 100, Concurrency: 1, Upstream: &proxy.Upstream{}}},
		{"http client", Options{Percent: 100, Concurrency: 1}},
		{"helper", Options{Percent: 100, Concurrency: 1, Upstream: &proxy.Upstream{}, Helper: []string{"helper"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Helper != nil {
				tc.opts.Helper = testHelper(t, "run")
			}
			r := pool.NewReplica(u)
			r.Authorization = "Bearer cand-key"
			m := New(tc.opts)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pairs := make(chan Pair, 1)
			m.SetTarget("blue", &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{r}}, func(p Pair) { pairs <- p })
			go m.Run(ctx)
			m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(`{"model":"m2","messages":[{"role":"user","content":"hi"}]}`),
				Live: proxy.Observation{Pool: "blue", Status: http.StatusOK}})
			select {
			case p := <-pairs:
				if p.Shadow.Status != http.StatusOK {
					t.Fatalf("shadow copy status %d (%s), want 200", p.Shadow.Status, p.Shadow.Err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no pair")
			}
		})
	}
}

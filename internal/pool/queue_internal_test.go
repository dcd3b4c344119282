package pool

import (
	"net/url"
	"testing"
	"time"
)

// Among replicas that free slots at once, a held request goes where its
// prefix was sent before.
func TestQueueDispatchPrefersThePrefixAmongTheFree(t *testing.T) {
	var rs []*Replica
	for _, h := range []string{"a.test", "b.test"} {
		rs = append(rs, NewReplica(&url.URL{Scheme: "http", Host: h}))
	}
	l := NewLLM(LLMOptions{QueueTimeout: time.Hour, StaleAfter: time.Hour, BlockBytes: 16})
	body := []byte(`{"model":"m","messages":[{"role":"system","content":"a long shared system prompt of many blocks"}]}`)
	// An earlier turn went to the second replica.
	var hashes [maxPrefixBlocks]uint64
	n := l.prefixHashes(body, hashes[:])
	if n < 2 {
		t.Fatalf("%d prefix blocks", n)
	}
	l.rememberAll(hashes[:n], rs[1])
	fullNow := func(r *Replica, running float64) {
		r.engine.Store(&EngineLoad{At: time.Now(), Running: running, Slots: 2, Queued: true})
	}
	for _, r := range rs {
		fullNow(r, 2) // other clients fill both
	}
	done := make(chan *Replica, 1)
	go func() {
		rep, _, _ := l.PickWait("blue", rs, body, stayingClient{})
		done <- rep
	}()
	deadline := time.Now().Add(10 * time.Second)
	for l.q.n.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the request was not held")
		}
		time.Sleep(time.Millisecond)
	}
	// Both free a slot before the queue looks (the store does not kick;
	// should a poll look in between, it finds the second free first).
	fullNow(rs[1], 1)
	fullNow(rs[0], 1)
	l.q.kick()
	if got := <-done; got != rs[1] {
		t.Fatalf("got %v, want the replica holding the prefix", got.Name)
	}
}

type stayingClient struct{}

func (stayingClient) Done() <-chan struct{} { return nil }
func (stayingClient) Gone() bool            { return false }

// A batch limit learned when the engine queued lapses unless a scrape
// sees it queue again: a limit learned in a moment's queue below the real
// one (vLLM between two steps) must not cap the replica for good.
func TestLearnedBatchLimitLapsesWithoutQueueing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var prev *EngineLoad
	scrape := func(at time.Duration, running, waiting float64) *EngineLoad {
		e := &EngineLoad{At: t0.Add(at), Running: running, Waiting: waiting}
		e.learn(prev)
		prev = e
		return e
	}
	for _, st := range []struct {
		at               time.Duration
		running, waiting float64
		slots            float64
		queued           bool
	}{
		{0, 2, 0, 2, false},              // no queue yet: the limit is unknown
		{time.Second, 3, 1, 3, true},     // a queue: 3 stands as the limit
		{2 * time.Second, 3, 0, 3, true}, // held at 3: no queue, but still recent
		{time.Second + batchConfirmFor, 3, 0, 3, true},
		{2*time.Second + batchConfirmFor, 3, 0, 3, false}, // lapsed: requests flow
		{3*time.Second + batchConfirmFor, 8, 0, 8, false}, // the engine runs more
		{4*time.Second + batchConfirmFor, 8, 2, 8, true},  // and queues at its real limit
	} {
		e := scrape(st.at, st.running, st.waiting)
		if e.Slots != st.slots || e.Queued != st.queued {
			t.Fatalf("at %v: slots %v, queued %v; want %v, %v", st.at, e.Slots, e.Queued, st.slots, st.queued)
		}
	}
}

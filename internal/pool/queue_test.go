package pool_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// full makes r a replica with a known batch of slots (it has queued) that
// the gateway fills: slots requests in flight, the engine seen running them.
func full(r *pool.Replica, slots int) {
	for range slots {
		r.Acquire()
	}
	r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: float64(slots), Slots: float64(slots), Queued: true, KV: 0.1, InFlight: r.InFlight()})
}

// client is a pool.Client the test ends.
type client struct {
	done chan struct{}
	gone func() bool
}

func (c *client) Done() <-chan struct{} { return c.done }
func (c *client) Gone() bool            { return c.gone != nil && c.gone() }

func stays() *client { return &client{done: make(chan struct{})} }

// picked is one PickWait's result.
type picked struct {
	rep      *pool.Replica
	acquired bool
	err      error
}

// pickAsync runs PickWait in a goroutine.
func pickAsync(l *pool.LLM, rs []*pool.Replica, body []byte, c pool.Client) <-chan picked {
	ch := make(chan picked, 1)
	go func() {
		rep, acq, err := l.PickWait("blue", rs, body, c)
		ch <- picked{rep, acq, err}
	}()
	return ch
}

// awaitWaiting waits until n of the pool's requests are held.
func awaitWaiting(t *testing.T, l *pool.LLM, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := l.QueueStats("blue")
		if st.Waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("held requests: %d, want %d (%+v)", st.Waiting, n, st)
		}
		time.Sleep(time.Millisecond)
	}
}

// queued returns an llm balancer with the gateway queue and metrics that
// stay fresh for the test.
func queued(timeout time.Duration, length int) *pool.LLM {
	return pool.NewLLM(pool.LLMOptions{QueueTimeout: timeout, QueueLength: length, StaleAfter: time.Hour})
}

func TestQueueDispatchesToTheFirstReplicaThatFreesASlot(t *testing.T) {
	rs := replicas(t, 3)
	for _, r := range rs {
		full(r, 2)
	}
	l := queued(time.Hour, 0)
	got := pickAsync(l, rs, chat("hello"), stays())
	awaitWaiting(t, l, 1)
	rs[2].Release() // a completion ends on the third replica
	p := <-got
	if p.err != nil || p.rep != rs[2] || !p.acquired {
		t.Fatalf("got %+v, want the third replica, acquired", p)
	}
	if n := rs[2].InFlight(); n != 2 {
		t.Fatalf("third replica in flight %d, want 2 (the slot taken again)", n)
	}
	st, _ := l.QueueStats("blue")
	if st.Held != 1 || st.Dispatched != 1 || st.Waiting != 0 || st.WaitSeconds <= 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestQueueScrapeShowingRoomDispatches(t *testing.T) {
	rs := replicas(t, 2)
	// Full with other clients' requests, as the engine reports them.
	for _, r := range rs {
		r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: 4, Slots: 4, Waiting: 1, Queued: true})
	}
	l := queued(time.Hour, 0)
	got := pickAsync(l, rs, chat("hello"), stays())
	awaitWaiting(t, l, 1)
	rs[1].SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: 3, Slots: 4, Queued: true})
	if p := <-got; p.err != nil || p.rep != rs[1] || !p.acquired {
		t.Fatalf("got %+v, want the second replica", p)
	}
}

func TestQueueKeepsArrivalOrderAndDoesNotHerd(t *testing.T) {
	rs := replicas(t, 2)
	for _, r := range rs {
		full(r, 1)
	}
	l := queued(time.Hour, 0)
	var got []<-chan picked
	for i := range 4 {
		got = append(got, pickAsync(l, rs, chat("request", string(rune('a'+i))), stays()))
		awaitWaiting(t, l, i+1)
	}
	for i := range 4 {
		r := rs[i%2]
		r.Release() // one slot frees: exactly one request, the oldest, takes it
		p := <-got[i]
		if p.err != nil || p.rep != r || !p.acquired {
			t.Fatalf("request %d: got %+v, want %s", i, p, r.Name)
		}
		awaitWaiting(t, l, 3-i)
		for k := i + 1; k < 4; k++ {
			select {
			case p := <-got[k]:
				t.Fatalf("request %d left the queue on slot %d: %+v", k, i, p)
			default:
			}
		}
		if rs[0].InFlight() != 1 || rs[1].InFlight() != 1 {
			t.Fatalf("in flight %d, %d: want 1, 1", rs[0].InFlight(), rs[1].InFlight())
		}
	}
}

func TestQueueTimeoutFallsBackToThePick(t *testing.T) {
	rs := replicas(t, 2)
	for _, r := range rs {
		full(r, 1)
	}
	l := queued(20*time.Millisecond, 0)
	rep, acquired, err := l.PickWait("blue", rs, chat("hello"), stays())
	if err != nil || rep == nil || acquired {
		t.Fatalf("got %v, %v, %v: want a replica to acquire", rep, acquired, err)
	}
	st, _ := l.QueueStats("blue")
	if st.TimedOut != 1 || st.Waiting != 0 || st.Held != 1 {
		t.Fatalf("stats %+v", st)
	}
	if rs[0].InFlight()+rs[1].InFlight() != 2 {
		t.Fatal("the timed-out request took a slot itself")
	}
}

func TestQueueClientGoneTakesNoReplica(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func() (c *client, leave func())
	}{
		{"done closed", func() (*client, func()) {
			c := stays()
			return c, func() { close(c.done) }
		}},
		{"gone polled", func() (*client, func()) {
			gone := make(chan struct{})
			c := &client{gone: func() bool {
				select {
				case <-gone:
					return true
				default:
					return false
				}
			}}
			return c, func() { close(gone) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := replicas(t, 2)
			for _, r := range rs {
				full(r, 1)
			}
			l := queued(time.Hour, 0)
			c, leave := tc.client()
			got := pickAsync(l, rs, chat("hello"), c)
			awaitWaiting(t, l, 1)
			leave()
			p := <-got
			if !errors.Is(p.err, pool.ErrClientGone) || p.rep != nil {
				t.Fatalf("got %+v, want ErrClientGone", p)
			}
			st, _ := l.QueueStats("blue")
			if st.Canceled != 1 || st.Waiting != 0 {
				t.Fatalf("stats %+v", st)
			}
			// A slot that frees now is nobody's.
			rs[0].Release()
			if rs[0].InFlight() != 0 || rs[1].InFlight() != 1 {
				t.Fatalf("in flight %d, %d: want 0, 1", rs[0].InFlight(), rs[1].InFlight())
			}
		})
	}
}

func TestQueueHoldsOnlyAFullPoolOfKnownLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(rs []*pool.Replica)
	}{
		{"a free slot", func(rs []*pool.Replica) { full(rs[0], 2); slottedFree(rs[1]) }},
		{"a batch limit not known yet", func(rs []*pool.Replica) {
			full(rs[0], 2)
			rs[1].Acquire()
			rs[1].SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: 1, Slots: 1, InFlight: 1})
		}},
		{"stale metrics", func(rs []*pool.Replica) {
			full(rs[0], 2)
			rs[1].SetEngineLoad(&pool.EngineLoad{At: time.Now().Add(-2 * time.Hour), Slots: 4, Queued: true})
		}},
		{"no metrics", func(rs []*pool.Replica) { full(rs[0], 2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := replicas(t, 2)
			tc.set(rs)
			l := queued(time.Hour, 0)
			rep, acquired, err := l.PickWait("blue", rs, chat("hello"), stays())
			if err != nil || rep == nil || acquired {
				t.Fatalf("got %v, %v, %v: want a replica at once", rep, acquired, err)
			}
			if _, ok := l.QueueStats("blue"); ok {
				t.Fatal("the request was held")
			}
		})
	}
}

// slottedFree makes r a replica with a known batch of 4 and nothing running.
func slottedFree(r *pool.Replica) {
	r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Slots: 4, Queued: true, KV: 0.1})
}

func TestQueueLengthBoundsTheHeld(t *testing.T) {
	rs := replicas(t, 2)
	for _, r := range rs {
		full(r, 1)
	}
	l := queued(time.Hour, 1)
	first := pickAsync(l, rs, chat("first"), stays())
	awaitWaiting(t, l, 1)
	rep, acquired, err := l.PickWait("blue", rs, chat("second"), stays())
	if err != nil || rep == nil || acquired {
		t.Fatalf("second: got %v, %v, %v: want a replica at once", rep, acquired, err)
	}
	st, _ := l.QueueStats("blue")
	if st.Overflowed != 1 || st.Waiting != 1 {
		t.Fatalf("stats %+v", st)
	}
	rs[0].Release()
	if p := <-first; p.rep != rs[0] || !p.acquired {
		t.Fatalf("first: got %+v", p)
	}
}

func TestQueueOffIsPickBody(t *testing.T) {
	rs := replicas(t, 2)
	for _, r := range rs {
		full(r, 1)
	}
	l := pool.NewLLM(pool.LLMOptions{StaleAfter: time.Hour})
	rep, acquired, err := l.PickWait("blue", rs, chat("hello"), stays())
	if err != nil || rep == nil || acquired {
		t.Fatalf("got %v, %v, %v", rep, acquired, err)
	}
}

func TestPickWaitDoesNotAllocateWithAFreeSlot(t *testing.T) {
	rs := replicas(t, 4)
	for _, r := range rs {
		slottedFree(r)
	}
	l := queued(time.Hour, 0)
	body := chat("You are a helpful assistant. Answer briefly and precisely, please.", "What is the capital of France?")
	c := stays()
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := l.PickWait("blue", rs, body, c); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per pick", n)
	}
}

// A pool with free slots is not held up, nor counted, because another
// pool's requests are held.
func TestQueueOtherPoolsHeldDoNotHoldAPoolWithRoom(t *testing.T) {
	green := replicas(t, 1)
	full(green[0], 1)
	blue := replicas(t, 2)
	for _, r := range blue {
		slottedFree(r)
	}
	l := queued(time.Hour, 0)
	ch := make(chan picked, 1)
	go func() {
		rep, acq, err := l.PickWait("green", green, chat("hello"), stays())
		ch <- picked{rep, acq, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for st, _ := l.QueueStats("green"); st.Waiting != 1; st, _ = l.QueueStats("green") {
		if time.Now().After(deadline) {
			t.Fatal("green's request was not held")
		}
		time.Sleep(time.Millisecond)
	}
	rep, acquired, err := l.PickWait("blue", blue, chat("hello"), stays())
	if err != nil || rep == nil || acquired {
		t.Fatalf("blue: got %v, %v, %v: want a replica at once", rep, acquired, err)
	}
	if st, ok := l.QueueStats("blue"); ok {
		t.Fatalf("blue counted in the queue: %+v", st)
	}
	green[0].Release()
	if p := <-ch; p.rep != green[0] || !p.acquired {
		t.Fatalf("green: got %+v", p)
	}
}

// TestQueueFreedSlotCountsItsKV: a replica whose batch was full at the
// scrape reports its KV over balancing.max_kv (each sequence holding a
// quarter of it); a completion since frees that sequence's share, so the
// held request goes there at once, not at the next scrape.
func TestQueueFreedSlotCountsItsKV(t *testing.T) {
	rs := replicas(t, 2)
	for _, r := range rs {
		for range 4 {
			r.Acquire()
		}
		r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Running: 4, Slots: 4, Queued: true, KV: 1, KVPerSeq: 0.25, InFlight: 4})
	}
	l := queued(time.Hour, 0)
	got := pickAsync(l, rs, chat("hello"), stays())
	awaitWaiting(t, l, 1)
	rs[0].Release()
	select {
	case p := <-got:
		if p.err != nil || p.rep != rs[0] || !p.acquired {
			t.Fatalf("got %+v, want the first replica, acquired", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held request stayed held after a slot freed (KV taken as the scrape's)")
	}
}

package pool

// The llm balancer's gateway queue: late binding of a request to a
// replica while every replica of its pool is at its batch limit, as
// llm-d's flow control holds requests in front of a saturated pool.
//
// A request sent to a full replica waits in that engine's queue for that
// replica's next free slot, even when another replica frees one first.
// Held at the gateway instead, it waits for the first slot to free
// anywhere in the pool (a completion ends: Replica.Release; or a scrape
// shows room: Replica.SetEngineLoad), and goes there, by prefix affinity
// among the replicas then free. The wait is bounded (QueueTimeout,
// QueueLength): beyond it a request goes where PickBody sends it, as
// without the queue.

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Client is what the gateway queue knows of the client of a held request.
type Client interface {
	// Done is closed when the client has gone; nil means Gone alone says.
	Done() <-chan struct{}
	// Gone reports whether the client has gone. It is polled (every
	// queuePoll) while the request is held.
	Gone() bool
}

// WaitPicker is a BodyPicker with a gateway queue (see LLM.PickWait).
// The proxy calls PickWait for a request's first attempt when its picker
// is one.
type WaitPicker interface {
	BodyPicker
	// PickWait picks a replica of rs for a request of pool, holding it
	// while the pool is full; acquired reports that the request is counted
	// in flight on rep already. err is ErrClientGone when c left.
	PickWait(pool string, rs []*Replica, body []byte, c Client) (rep *Replica, acquired bool, err error)
}

var _ WaitPicker = (*LLM)(nil)

// ErrClientGone is PickWait's error when the client left while its
// request was held: no replica was taken for it.
var ErrClientGone = errors.New("client left while its request waited in the gateway queue")

// queuePoll is how often a held request looks whether its client left
// (when Client.Done cannot say) and whether a slot freed unnoticed.
const queuePoll = 50 * time.Millisecond

// QueueStats counts a pool's requests held in the gateway queue since
// the gateway started. Held = Waiting + Dispatched + TimedOut + Canceled.
type QueueStats struct {
	// Waiting is how many are held now.
	Waiting int
	// Held counts the requests that entered the queue.
	Held uint64
	// Dispatched counts those sent on when a replica freed a slot (or
	// when the pool could no longer hold them: a replica's metrics went
	// stale or a replica was added, whose limit is unknown).
	Dispatched uint64
	// TimedOut counts those that waited QueueTimeout, then went where
	// PickBody sent them.
	TimedOut uint64
	// Canceled counts those whose client left while held.
	Canceled uint64
	// Overflowed counts the requests that found QueueLength held and went
	// where PickBody sent them (not in Held).
	Overflowed uint64
	// WaitSeconds is the time the requests no longer held were held.
	WaitSeconds float64
}

// waitQueue is an LLM's gateway queue: the held requests of every pool in
// arrival order (so each pool's in order).
type waitQueue struct {
	l *LLM
	n atomic.Int64 // len(waiters), read without mu on every pick and release

	mu      sync.Mutex
	waiters []*waiter              // guarded by mu
	pools   map[string]*QueueStats // guarded by mu
}

// waiter is one held request.
type waiter struct {
	pool   string
	rs     []*Replica
	hashes []uint64 // its prefix blocks (see LLM.prefixHashes)
	since  time.Time
	ready  chan struct{} // closed once it leaves the queue with rep or fallback set

	rep      *Replica // the replica it was sent to, counted in flight there; guarded by mu
	fallback bool     // the pool can no longer hold it: pick as PickBody; guarded by mu
}

// PickWait is PickBody (skip nil) for a request's first attempt in pool,
// with the gateway queue (LLMOptions.QueueTimeout): when requests of the
// pool are held already, or every healthy replica of rs is full — fresh
// metrics, and no free slot in a batch whose limit is known
// (EngineLoad.Queued), or over a threshold — it holds the request until a
// replica has a free slot and then returns it (acquired true: the
// request is counted in flight there), until QueueTimeout (then it
// returns PickBody's choice), or until the client leaves (then
// ErrClientGone). Otherwise (acquired false) the caller counts the
// request with Replica.Acquire, as after PickBody. When no request is
// held, and the pool has a free slot, it takes no lock and does not
// allocate.
func (l *LLM) PickWait(pool string, rs []*Replica, body []byte, c Client) (rep *Replica, acquired bool, err error) {
	if l.opts.QueueTimeout <= 0 || len(rs) == 0 {
		return l.PickBody(rs, nil, body), false, nil
	}
	var hashes, holders [maxPrefixBlocks]uint64
	n := l.prefixHashes(body, hashes[:])
	if l.q.n.Load() == 0 {
		known := l.holders(hashes[:n], holders[:])
		best, hold := l.best(rs, nil, n, holders[:known], false)
		if !hold {
			if best == nil {
				best = LeastOutstanding{}.Pick(rs, nil)
			}
			l.rememberAll(hashes[:n], best)
			return best, false, nil
		}
	}
	return l.q.wait(pool, rs, hashes[:n], body, c)
}

// QueueStats returns pool's gateway queue counts; false when none of its
// requests was ever held or overflowed.
func (l *LLM) QueueStats(pool string) (QueueStats, bool) {
	l.q.mu.Lock()
	defer l.q.mu.Unlock()
	st, ok := l.q.pools[pool]
	if !ok {
		return QueueStats{}, false
	}
	return *st, true
}

// statsLocked returns pool's counts, made on first use.
func (q *waitQueue) statsLocked(pool string) *QueueStats {
	st := q.pools[pool]
	if st == nil {
		if q.pools == nil {
			q.pools = map[string]*QueueStats{}
		}
		st = &QueueStats{}
		q.pools[pool] = st
	}
	return st
}

// wait holds a request of pool (see PickWait).
func (q *waitQueue) wait(pool string, rs []*Replica, hashes []uint64, body []byte, c Client) (*Replica, bool, error) {
	l := q.l
	q.mu.Lock()
	if st := q.pools[pool]; st == nil || st.Waiting == 0 {
		// Here because another pool's requests are held, or the pool
		// was full a moment ago: none of this pool's is ahead of it.
		var holders [maxPrefixBlocks]uint64
		known := l.holders(hashes, holders[:])
		if best, hold := l.best(rs, nil, len(hashes), holders[:known], false); !hold {
			q.mu.Unlock()
			if best == nil {
				best = LeastOutstanding{}.Pick(rs, nil)
			}
			l.rememberAll(hashes, best)
			return best, false, nil
		}
	}
	w := &waiter{pool: pool, rs: rs, hashes: slices.Clone(hashes), since: l.now(), ready: make(chan struct{})}
	st := q.statsLocked(pool)
	if st.Waiting >= l.opts.QueueLength {
		st.Overflowed++
		q.mu.Unlock()
		return l.PickBody(rs, nil, body), false, nil
	}
	st.Waiting++
	st.Held++
	q.waiters = append(q.waiters, w)
	q.n.Add(1)
	for _, r := range rs {
		if r.wake.Load() != q {
			r.wake.Store(q)
		}
	}
	// A slot may have freed since the caller looked, or the pool may
	// have none to wait for: this settles both before any wait.
	q.dispatchLocked()
	q.mu.Unlock()

	timer := time.NewTimer(l.opts.QueueTimeout)
	defer timer.Stop()
	poll := time.NewTicker(queuePoll)
	defer poll.Stop()
	done := c.Done()
	for {
		select {
		case <-w.ready:
			return q.sent(w, body)
		case <-done:
			return q.leave(w, body, true)
		case <-timer.C:
			return q.leave(w, body, false)
		case <-poll.C:
			if c.Gone() {
				return q.leave(w, body, true)
			}
			q.kickFrom(w)
		}
	}
}

// sent is what wait returns for w, which left the queue.
func (q *waitQueue) sent(w *waiter, body []byte) (*Replica, bool, error) {
	q.mu.Lock()
	rep := w.rep
	q.mu.Unlock()
	if rep == nil { // fallback
		return q.l.PickBody(w.rs, nil, body), false, nil
	}
	return rep, true, nil
}

// leave takes w out of the queue: its client went (gone) or its time is
// up. A w the queue sent on meanwhile gives its slot back (gone) or takes
// it (time up).
func (q *waitQueue) leave(w *waiter, body []byte, gone bool) (*Replica, bool, error) {
	q.mu.Lock()
	rep, fallback := w.rep, w.fallback
	st := q.statsLocked(w.pool)
	if rep == nil && !fallback {
		if i := slices.Index(q.waiters, w); i >= 0 {
			q.waiters = slices.Delete(q.waiters, i, i+1)
			q.n.Add(-1)
			st.Waiting--
			st.WaitSeconds += q.l.now().Sub(w.since).Seconds()
		}
		if gone {
			st.Canceled++
		} else {
			st.TimedOut++
		}
	} else if gone {
		st.Dispatched--
		st.Canceled++
	}
	q.mu.Unlock()
	switch {
	case gone:
		if rep != nil {
			rep.requests.Add(^uint64(0))
			rep.Release() // lets the next held request take the slot
		}
		return nil, false, ErrClientGone
	case rep != nil:
		return rep, true, nil
	}
	return q.l.PickBody(w.rs, nil, body), false, nil
}

// kick sends on the held requests that can go now.
func (q *waitQueue) kick() {
	q.mu.Lock()
	q.dispatchLocked()
	q.mu.Unlock()
}

// kickFrom is kick for a held request's periodic look (a slot may have
// freed unnoticed: a replica tells only the queue that last held a
// request for it): only the oldest held request looks, so that a long
// queue does not scan itself once per request and tick.
func (q *waitQueue) kickFrom(w *waiter) {
	q.mu.Lock()
	if len(q.waiters) > 0 && q.waiters[0] == w {
		q.dispatchLocked()
	}
	q.mu.Unlock()
}

// maxBlockedPools bounds the pools dispatchLocked remembers as full in
// one pass (there are two: blue and green); beyond it, a full pool's
// later requests are only looked at again, in vain.
const maxBlockedPools = 4

// dispatchLocked sends on, in arrival order, each held request for which
// a replica of its pool has a free slot (the best of those free, by the
// llm score: prefix affinity first), or whose pool can no longer hold it;
// the first of a pool that cannot go keeps the later ones of its pool
// waiting. Each replica's slot is taken (Acquire) here, under mu, so that
// one freed slot goes to one request.
func (q *waitQueue) dispatchLocked() {
	var blocked [maxBlockedPools]string
	nb := 0
	for i := 0; i < len(q.waiters); {
		w := q.waiters[i]
		if slices.Contains(blocked[:nb], w.pool) {
			i++
			continue
		}
		var holders [maxPrefixBlocks]uint64
		known := q.l.holders(w.hashes, holders[:])
		best, hold := q.l.best(w.rs, nil, len(w.hashes), holders[:known], true)
		st := q.statsLocked(w.pool)
		switch {
		case best != nil:
			best.Acquire()
			w.rep = best
			q.l.rememberAll(w.hashes, best)
		case !hold:
			w.fallback = true
		default:
			if nb < len(blocked) {
				blocked[nb] = w.pool
				nb++
			}
			i++
			continue
		}
		q.waiters = slices.Delete(q.waiters, i, i+1)
		q.n.Add(-1)
		st.Waiting--
		st.Dispatched++
		st.WaitSeconds += q.l.now().Sub(w.since).Seconds()
		close(w.ready)
	}
}

// freed tells the gateway queue that r may have room: a request ended
// there, or its metrics were read.
func (r *Replica) freed() {
	if q := r.wake.Load(); q != nil && q.n.Load() > 0 {
		q.kick()
	}
}

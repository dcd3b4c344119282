package pool

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is what one attempt of a request says about its replica, as the
// data plane classifies it.
type Outcome uint8

const (
	// OutcomeNone says nothing about the replica: the client left, or the
	// gateway's own total timeout cut a legitimately long request.
	OutcomeNone Outcome = iota
	// OutcomeSuccess is an answer below 500 (a 4xx included: the replica
	// works, the request was bad), relayed whole.
	OutcomeSuccess
	// OutcomeFailure is a 5xx answer, an answer that went silent, or no
	// answer within the response-header timeout.
	OutcomeFailure
	// OutcomeConnectFailure is a connection that could not be made.
	OutcomeConnectFailure
	// OutcomeReset is a connection that broke before the replica answered
	// anything.
	OutcomeReset
	// OutcomeBroken is an answer whose connection broke part-way (a
	// replica killed while it answered): a failure, but of the
	// connection, so a passed active check ends the ejection it causes,
	// as for OutcomeConnectFailure and OutcomeReset.
	OutcomeBroken
)

// Failed reports the outcomes that count against a replica.
func (o Outcome) Failed() bool { return o >= OutcomeFailure }

// outlierState is one replica's outlier-detection bookkeeping. The atomic
// fields are written on every request; the others are guarded by the
// Replica's mu.
type outlierState struct {
	ejected  atomic.Bool             // out of rotation until until
	failures atomic.Int32            // consecutive failed attempts; the picker's penalty
	penalty  atomic.Int64            // unix nanos (by judge's clock) until which failures weigh in picks
	judge    atomic.Pointer[Outlier] // the Outlier that recorded the last failure: its clock
	total    atomic.Int64            // attempts in the current failure-rate window
	failed   atomic.Int64            // failed attempts in the current window
	winStart atomic.Int64            // unix nanos of the window's start

	until      time.Time // end of the running ejection
	reason     string    // why it was ejected
	local      bool      // ejected for a connection failure, reset or broken answer: a passed check ends it
	ejections  int       // consecutive ejections: the ejection time's multiplier
	returnedAt time.Time // end of the last ejection
}

// Failures returns how many attempts on r failed in a row, the last one
// included (0 after a success).
func (r *Replica) Failures() int { return int(r.out.failures.Load()) }

// penaltyWindow is how long after its last failure a replica's failures in
// a row weigh in picks. Without an end, a replica that failed a few times
// would lose every pick for good once it recovered: it would never get the
// success that clears the count, nor the next failure that ejects it.
const penaltyWindow = time.Second

// penalty is what pickers weigh: Failures while the last failure is
// recent (penaltyWindow), else 0. It reads the clock only for a replica
// that has failures.
func (r *Replica) penalty() int {
	f := r.out.failures.Load()
	if f == 0 {
		return 0
	}
	if o := r.out.judge.Load(); o == nil || o.now().UnixNano() >= r.out.penalty.Load() {
		return 0
	}
	return int(f)
}

// Outlier is passive health checking, as Envoy's outlier detection: it
// watches every request's outcome and ejects a replica that fails
// Consecutive5xx times in a row, or whose share of failed attempts in an
// Interval reaches FailureRate (over at least MinimumRequests). An ejected
// replica gets no traffic for BaseEjectionTime times the number of its
// ejections in a row, at most MaxEjectionTime, then returns (Tick). A
// replica ejected for connection failures or resets returns as soon as an
// active health check passes (the check proves what failed works again);
// one ejected for 5xx answers does not (the check does not run a
// completion). Never more than MaxEjectionPercent of a pool is out of
// rotation because of it.
//
// Set the fields before the first Record; they are read-only afterwards.
// A nil *Outlier records nothing.
type Outlier struct {
	// Consecutive5xx ejects after that many failed attempts in a row.
	// Zero turns the rule off.
	Consecutive5xx int
	// FailureRate ejects a replica whose failed share of the attempts in
	// the current window reaches it (0 to 1). Zero turns the rule off.
	FailureRate float64
	// Interval is the failure-rate window. Zero or negative means 10s.
	Interval time.Duration
	// MinimumRequests is how many attempts a window needs before its
	// failure rate counts. Zero means 1.
	MinimumRequests int
	// BaseEjectionTime is the first ejection's length. Zero or negative
	// means 30s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection's length, and a replica that served
	// that long since its last ejection starts again from the base time.
	// Zero or less than BaseEjectionTime means BaseEjectionTime.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent is the largest share (0-100) of a pool's replicas
	// that may be out of rotation (unhealthy or ejected) for an ejection
	// to happen: at 50, one of two or three replicas, never a pool's only
	// one. Zero turns ejection off.
	MaxEjectionPercent int
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives one line per ejection and return. Nil means
	// slog.Default().
	Logger *slog.Logger
	// OnEject, when set, is told of each ejection (reason is
	// consecutive_failures or failure_rate) and OnOverflow of each one
	// refused by MaxEjectionPercent. They run with no lock held.
	OnEject    func(pool string, r *Replica, reason string)
	OnOverflow func(pool string, r *Replica)

	// Resolve, when set, returns the pool of that name as it is now, for
	// Tick: the Pool an ejection was recorded in may have been rebuilt
	// since. It is called with no lock of the Outlier held.
	Resolve func(name string) *Pool

	mu      sync.Mutex         // guards ejected
	ejected map[*Replica]*Pool // the ejected replicas, each with the pool it was ejected in
}

// Record counts one attempt's outcome on replica r of pool p and ejects r
// when a rule says so.
func (o *Outlier) Record(p *Pool, r *Replica, out Outcome) {
	if o == nil || out == OutcomeNone {
		return
	}
	st := &r.out
	now := o.now()
	o.roll(st, now)
	total := st.total.Add(1)
	if !out.Failed() {
		if st.failures.Load() != 0 {
			st.failures.Store(0)
		}
		return
	}
	n := st.failures.Add(1)
	st.penalty.Store(now.Add(penaltyWindow).UnixNano())
	if st.judge.Load() != o {
		st.judge.Store(o)
	}
	failed := st.failed.Add(1)
	var rule, why string
	switch {
	case o.Consecutive5xx > 0 && int(n) >= o.Consecutive5xx:
		rule, why = "consecutive_failures", fmt.Sprintf("%d failed requests in a row", n)
	case o.FailureRate > 0 && total >= int64(max(o.MinimumRequests, 1)) && float64(failed) >= o.FailureRate*float64(total):
		rule, why = "failure_rate", fmt.Sprintf("%d of %d requests failed within %s", failed, total, o.interval())
	default:
		return
	}
	o.eject(p, r, now, rule, why, out == OutcomeConnectFailure || out == OutcomeReset || out == OutcomeBroken)
}

// roll starts a new failure-rate window when the current one is over.
func (o *Outlier) roll(st *outlierState, now time.Time) {
	start := st.winStart.Load()
	if now.UnixNano()-start < int64(o.interval()) {
		return
	}
	if st.winStart.CompareAndSwap(start, now.UnixNano()) {
		st.total.Store(0)
		st.failed.Store(0)
	}
}

// eject takes r out of rotation, unless it is out already or the pool's
// ejection budget is spent.
func (o *Outlier) eject(p *Pool, r *Replica, now time.Time, rule, why string, local bool) {
	o.mu.Lock()
	if r.out.ejected.Load() {
		o.mu.Unlock()
		return
	}
	if !o.mayEjectLocked(p) {
		o.mu.Unlock()
		o.logger().Warn("replica failing but not ejected: health.outlier.max_ejection_percent reached",
			"pool", p.Name, "replica", r.Name, "reason", why)
		if o.OnOverflow != nil {
			o.OnOverflow(p.Name, r)
		}
		return
	}
	r.mu.Lock()
	st := &r.out
	if !st.returnedAt.IsZero() && now.Sub(st.returnedAt) >= o.maxEjection() {
		st.ejections = 0 // it served well for long: start over
	}
	st.ejections++
	d := min(o.baseEjection()*time.Duration(st.ejections), o.maxEjection())
	st.until, st.reason, st.local = now.Add(d), why, local
	st.ejected.Store(true)
	r.mu.Unlock()
	if o.ejected == nil {
		o.ejected = map[*Replica]*Pool{}
	}
	o.ejected[r] = p
	o.mu.Unlock()
	o.logger().Warn("replica ejected", "pool", p.Name, "replica", r.Name, "reason", why, "for", d)
	if o.OnEject != nil {
		o.OnEject(p.Name, r, rule)
	}
}

// mayEjectLocked reports whether one more of p's replicas may go out of
// rotation within MaxEjectionPercent.
func (o *Outlier) mayEjectLocked(p *Pool) bool {
	out := 0
	for _, x := range p.Replicas {
		if !x.Healthy() {
			out++
		}
	}
	return (out+1)*100 <= len(p.Replicas)*o.MaxEjectionPercent
}

// Tick returns the replicas whose ejection is over to rotation, with a
// clean slate of failures. When a pool has no replica in rotation left
// (others failed their health checks since the ejections), it also
// returns one ejected replica of it early, the soonest due among those
// whose checks pass: one that may answer 5xx serves more than a pool with
// none, which fails every request. Run calls it; tests call it directly.
func (o *Outlier) Tick() {
	if o == nil {
		return
	}
	now := o.now()
	var back []*Replica
	pools := map[string]*Pool{} // the pools that have ejected replicas
	o.mu.Lock()
	for r, in := range o.ejected {
		r.mu.Lock()
		switch {
		case !r.out.ejected.Load(): // a passed active check ended it
			delete(o.ejected, r)
		case !now.Before(r.out.until):
			r.returnLocked(now)
			delete(o.ejected, r)
			back = append(back, r)
		default:
			pools[in.Name] = in
		}
		r.mu.Unlock()
	}
	o.mu.Unlock()
	for _, r := range back {
		o.logger().Info("replica back from outlier ejection", "replica", r.Name)
	}
	for name, p := range pools {
		// The pool as it is now: a deployment or a reload may have
		// rebuilt it (the replicas stay the same objects).
		if o.Resolve != nil {
			if cur := o.Resolve(name); cur != nil {
				p = cur
			}
		}
		if p.HealthyCount() > 0 {
			continue
		}
		if r := o.returnSoonest(p, now); r != nil {
			o.logger().Warn("replica back from outlier ejection early: no other replica of its pool is in rotation (they fail their health checks)",
				"pool", name, "replica", r.Name)
		}
	}
}

// returnSoonest ends the ejection of p's replica that would end soonest
// among those whose health checks pass; nil when there is none.
func (o *Outlier) returnSoonest(p *Pool, now time.Time) *Replica {
	o.mu.Lock()
	defer o.mu.Unlock()
	var best *Replica
	for _, r := range p.Replicas {
		if _, ok := o.ejected[r]; !ok || !r.healthy.Load() {
			continue
		}
		if best == nil || r.ejectedUntil().Before(best.ejectedUntil()) {
			best = r
		}
	}
	if best == nil {
		return nil
	}
	best.mu.Lock()
	best.returnLocked(now)
	best.mu.Unlock()
	delete(o.ejected, best)
	return best
}

// ejectedUntil is the end of r's ejection.
func (r *Replica) ejectedUntil() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.until
}

// returnLocked ends r's ejection with a clean slate of failures.
func (r *Replica) returnLocked(now time.Time) {
	r.out.ejected.Store(false)
	r.out.failures.Store(0)
	r.out.total.Store(0)
	r.out.failed.Store(0)
	r.out.winStart.Store(now.UnixNano())
	r.out.until, r.out.reason, r.out.local, r.out.returnedAt = time.Time{}, "", false, now
}

// Run calls Tick every second until ctx is done.
func (o *Outlier) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.Tick()
		}
	}
}

func (o *Outlier) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Outlier) interval() time.Duration {
	if o.Interval > 0 {
		return o.Interval
	}
	return 10 * time.Second
}

func (o *Outlier) baseEjection() time.Duration {
	if o.BaseEjectionTime > 0 {
		return o.BaseEjectionTime
	}
	return 30 * time.Second
}

func (o *Outlier) maxEjection() time.Duration {
	return max(o.MaxEjectionTime, o.baseEjection())
}

func (o *Outlier) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

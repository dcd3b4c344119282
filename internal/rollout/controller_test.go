package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
	"github.com/cutover-dev/cutover/internal/store"
)

// memStore is an in-memory store.Store with an injectable Put failure.
type memStore struct {
	mu      sync.Mutex
	rec     store.Record
	hist    [][]byte
	failPut error
	// failEvents fails only the writes that carry history events (a
	// disk with room for a small write, not for the history's growth).
	failEvents error
}

func (m *memStore) Get(context.Context) (store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rec, nil
}

func (m *memStore) Put(_ context.Context, rev int64, data []byte, h ...[]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut != nil {
		return m.failPut
	}
	if m.failEvents != nil && len(h) > 0 {
		return m.failEvents
	}
	if rev != m.rec.Revision {
		return store.ErrConflict
	}
	m.rec = store.Record{Revision: rev + 1, Data: data}
	m.hist = append(m.hist, h...)
	return nil
}

func (m *memStore) History(context.Context, int) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hist, nil
}

func (m *memStore) Close() error { return nil }

// recorder is an Applier that keeps every table it was given.
type recorder struct {
	mu     sync.Mutex
	tables []*route.Table
	fail   error // returned by Apply when set
}

func (r *recorder) Apply(_ context.Context, t *route.Table) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.tables = append(r.tables, t)
	return nil
}

func (r *recorder) last() *route.Table {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tables[len(r.tables)-1]
}

type okProber struct{ calls atomic.Int64 }

func (p *okProber) Probe(context.Context, *pool.Replica, string) error {
	p.calls.Add(1)
	return nil
}

func newTestController(t *testing.T, st store.Store) (*Controller, *recorder) {
	t.Helper()
	rec := &recorder{}
	return startController(t, st, rec), rec
}

// twoPools is a controller's options over two one-replica pools, blue
// live, that applies its tables to ap.
func twoPools(st store.Store, ap Applier) Options {
	return Options{Store: st, Applier: ap, Prober: &okProber{}, InitialLive: "blue",
		Pools: map[string]PoolSpec{
			"blue":  {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}},
			"green": {Model: "m2", Replicas: []string{"http://127.0.0.1:2"}},
		}}
}

// startController starts a controller of twoPools(st, ap).
func startController(t *testing.T, st store.Store, ap Applier) *Controller {
	t.Helper()
	c, err := New(twoPools(st, ap))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStoreFailureChangesNothing: a switch that cannot be persisted is not
// applied, so the data plane never runs ahead of the stored truth.
func TestStoreFailureChangesNothing(t *testing.T) {
	st := &memStore{}
	c, rec := newTestController(t, st)
	st.failPut = errors.New("disk full")
	if _, err := c.Promote(context.Background(), "test", api.PromoteRequest{}); err == nil {
		t.Fatal("promote succeeded although the store failed")
	}
	if got := rec.last(); got.Live.Pool.Name != "blue" || len(rec.tables) != 1 {
		t.Fatalf("table applied despite store failure: live %s, %d tables", got.Live.Pool.Name, len(rec.tables))
	}
	if s := c.Status(); s.Live != "blue" || s.Revision != 1 {
		t.Fatalf("status after failed promote: %s rev %d", s.Live, s.Revision)
	}
}

// TestConcurrentSwitchesAreSerialised: promote racing rollback, many times;
// every success gets its own revision, a rollback right after a rollback
// is refused (rollback undoes the last switch, it is not a toggle), and
// the live pool in the store, the status and the applied table agree with
// the last success.
func TestConcurrentSwitchesAreSerialised(t *testing.T) {
	st := &memStore{}
	c, rec := newTestController(t, st)
	ctx := context.Background()
	if _, err := c.Promote(ctx, "setup", api.PromoteRequest{}); err != nil { // so that rollback has a target
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	revs := map[int64]string{}
	for i := range 40 {
		wg.Go(func() {
			var res api.SwitchResult
			var err error
			if i%2 == 1 {
				res, err = c.Rollback(ctx, "racer", api.RollbackRequest{})
			} else {
				res, err = c.Promote(ctx, "racer", api.PromoteRequest{})
			}
			var r *Refusal
			if errors.As(err, &r) && r.Code == "already_rolled_back" {
				return
			}
			if err != nil {
				t.Errorf("switch %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, dup := revs[res.Revision]; dup {
				t.Errorf("revision %d given twice (%s and %s)", res.Revision, prev, res.Live)
			}
			revs[res.Revision] = res.Live
		})
	}
	wg.Wait()
	s := c.Status()
	if n := int64(len(revs)); s.Revision != n+2 || n < 20 {
		t.Fatalf("revision %d after %d successful switches (want revision %d, at least the 20 promotes)", s.Revision, n, n+2)
	}
	if revs[s.Revision] != s.Live || rec.last().Live.Pool.Name != s.Live || rec.last().Revision != s.Revision {
		t.Fatalf("status %s@%d, last result %s, applied %s@%d", s.Live, s.Revision, revs[s.Revision], rec.last().Live.Pool.Name, rec.last().Revision)
	}
	stored, err := decodeState(st.rec.Data)
	if err != nil || stored.Live != s.Live || st.rec.Revision != s.Revision {
		t.Fatalf("store has %+v@%d, status %s@%d", stored, st.rec.Revision, s.Live, s.Revision)
	}
	// Each consecutive revision flips the live pool: the story is consistent.
	for r := int64(3); r <= s.Revision; r++ {
		if revs[r] == revs[r-1] {
			t.Fatalf("revisions %d and %d both made %s live", r-1, r, revs[r])
		}
	}
	h, _ := c.History(ctx, 0)
	if int64(len(h)) != s.Revision {
		t.Fatalf("history has %d events, want %d", len(h), s.Revision)
	}
	// Each switch says what it did (a regression: a plain rollback's
	// reason was empty in the history).
	for _, e := range h[1:] {
		if want := fmt.Sprintf("%s by %s: %s (model ", e.Action, e.Actor, e.To); !strings.HasPrefix(e.Reason, want) {
			t.Fatalf("event %d: reason %q, want it to start %q", e.Revision, e.Reason, want)
		}
	}
}

// TestRestartRestoresPersistedLive: a new controller on the same store
// serves the stored live pool, not InitialLive.
func TestRestartRestoresPersistedLive(t *testing.T) {
	st := &memStore{}
	c, _ := newTestController(t, st)
	if _, err := c.Promote(context.Background(), "t", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	c2, rec2 := newTestController(t, st)
	if s := c2.Status(); s.Live != "green" || s.Revision != 2 || rec2.last().Live.Pool.Name != "green" {
		t.Fatalf("after restart: %s@%d", s.Live, s.Revision)
	}
}

// TestFailedApplyIsReverted: when the data plane refuses a table, the
// stored state goes back to the previous live pool, so the record never
// disagrees with what serves traffic.
func TestFailedApplyIsReverted(t *testing.T) {
	st := &memStore{}
	c, rec := newTestController(t, st)
	rec.mu.Lock()
	rec.fail = errors.New("nginx -t: unknown directive")
	rec.mu.Unlock()
	_, err := c.Promote(context.Background(), "test", api.PromoteRequest{})
	var r *Refusal
	if !errors.As(err, &r) || r.Code != "apply_failed" || !strings.Contains(r.Reason, "unknown directive") {
		t.Fatalf("promote: %v, want apply_failed", err)
	}
	stored, _ := decodeState(st.rec.Data)
	if s := c.Status(); s.Live != "blue" || stored.Live != "blue" || st.rec.Revision != 3 {
		t.Fatalf("after failed apply: status %s, stored %s at revision %d; want blue at 3 (switch + revert)", s.Live, stored.Live, st.rec.Revision)
	}
	h, _ := c.History(context.Background(), 0)
	if last := h[len(h)-1]; last.Action != "apply_failed" || !strings.Contains(last.Reason, "unknown directive") {
		t.Fatalf("last event %+v", last)
	}
}

// cancelApplier stands for a load-balancer driver whose work honours its
// context: the caller goes away (cancel) while it applies, and a driver
// that sees that puts the previous table back.
type cancelApplier struct {
	cancel  context.CancelFunc
	serving string
}

func (a *cancelApplier) Apply(ctx context.Context, t *route.Table) error {
	if a.cancel != nil {
		a.cancel()
		a.cancel = nil
		if err := ctx.Err(); err != nil {
			return err // the previous table is back
		}
	}
	a.serving = t.Live.Pool.Name
	return nil
}

// TestCallerGoneDuringApply: a caller that hangs up while a recorded
// switch is applied leaves the store, the status and the data plane in
// agreement (a regression: the apply saw the cancel, and the revert could
// not record it with the same cancelled context, so the store said green
// while the load balancer served blue).
func TestCallerGoneDuringApply(t *testing.T) {
	st, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ap := &cancelApplier{}
	c := startController(t, st, ap)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ap.cancel = cancel
	_, _ = c.Promote(ctx, "cli", api.PromoteRequest{})
	rec, err := st.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := decodeState(rec.Data)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Live != ap.serving || c.Status().Live != ap.serving {
		t.Fatalf("the data plane serves %q, the status says %q, the store %q (revision %d)", ap.serving, c.Status().Live, stored.Live, rec.Revision)
	}
}

// TestStartOnUndecodableStateSaysDamaged: a stored state document that is
// not JSON stops the start with an error that calls the state damaged and
// says where to look, as a damaged state file does (a regression: it said
// only "decode persisted state: unexpected end of JSON input", while
// `cutover state check` called the same file DAMAGED).
func TestStartOnUndecodableStateSaysDamaged(t *testing.T) {
	st := &memStore{rec: store.Record{Revision: 25, Data: []byte(`{"live":"blue","pools":`)}}
	c, err := New(Options{Store: st, Applier: &recorder{}, Prober: &okProber{}, InitialLive: "blue",
		Pools: map[string]PoolSpec{"blue": {Model: "m1", Replicas: []string{"http://127.0.0.1:1"}}, "green": {Model: "m2"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(context.Background())
	for _, want := range []string{"revision 25", "damaged", "cutover state check"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Start: %v; want an error saying %q", err, want)
		}
	}
	if st.rec.Revision != 25 {
		t.Errorf("the store moved to revision %d: a damaged state must not be written over", st.rec.Revision)
	}
}

// TestFirstStartRefusedByTheLoadBalancer: a load balancer that refuses the
// very first routing table fails the start with its error, and leaves a
// state a later start takes: revision 1, the configured live pool. (It
// reverted to the zero state, which names no live pool: a panic, then a
// state every start refused as damaged.)
func TestFirstStartRefusedByTheLoadBalancer(t *testing.T) {
	st := &memStore{}
	c, err := New(twoPools(st, &recorder{fail: errors.New("nginx: test_command failed")}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "test_command failed") {
		t.Fatalf("start: %v, want the load balancer's error", err)
	}
	rec := &recorder{}
	c = startController(t, st, rec) // the next start
	if s := c.Status(); s.Live != "blue" || s.Revision != 1 || rec.last().Live.Pool.Name != "blue" {
		t.Fatalf("after the next start: live %s revision %d", s.Live, s.Revision)
	}
}

// TestHistoryShowsADamagedEntry: an entry damaged in place is shown as
// damaged, and the entries around it as they are (one such entry made
// every history call, the dashboard's included, answer 500).
func TestHistoryShowsADamagedEntry(t *testing.T) {
	st := &memStore{}
	c, _ := newTestController(t, st)
	st.mu.Lock()
	st.hist = append(st.hist, []byte(`X"action":"promote"}`), []byte(`{"time":"2026-1x-06T12:00:00Z","action":"rollback","reason":"by op"}`))
	st.mu.Unlock()
	if _, err := c.Promote(context.Background(), "op", api.PromoteRequest{}); err != nil {
		t.Fatal(err)
	}
	h, err := c.History(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range h {
		actions = append(actions, e.Action)
	}
	if strings.Join(actions, " ") != "init damaged rollback promote" || !strings.Contains(h[1].Reason, "not JSON") ||
		!strings.Contains(h[2].Reason, "by op (this history entry is partly damaged") {
		t.Fatalf("history %v (%q, %q), want init, damaged, rollback (partly damaged), promote", actions, h[1].Reason, h[2].Reason)
	}
}

// TestRefusedDeployKeepsItsID: a deploy whose routing table the load
// balancer refuses is undone under its id (the apply_failed event names
// it), and the next deployment gets a new id (it got d-1 again: two
// deployments under one id in the history).
func TestRefusedDeployKeepsItsID(t *testing.T) {
	st := &memStore{}
	c, rec := newTestController(t, st)
	rec.mu.Lock()
	rec.fail = errors.New("haproxy: replica http://127.0.0.1:9 is no server of backend green")
	rec.mu.Unlock()
	req := api.DeployRequest{Model: "m3", Replicas: []string{"http://127.0.0.1:9"}}
	if _, err := c.Deploy(context.Background(), "op", req); err == nil {
		t.Fatal("deploy applied although the load balancer refused it")
	}
	h, _ := c.History(context.Background(), 0)
	if last := h[len(h)-1]; last.Action != "apply_failed" || last.Deployment != "d-1" || !strings.Contains(last.Reason, "deploy of d-1") {
		t.Fatalf("last event %+v, want apply_failed naming d-1", last)
	}
	rec.mu.Lock()
	rec.fail = nil
	rec.mu.Unlock()
	d, err := c.Deploy(context.Background(), "op", req)
	if err != nil || d.Deployment.ID != "d-2" {
		t.Fatalf("next deploy: %+v %v, want d-2", d.Deployment.ID, err)
	}
}

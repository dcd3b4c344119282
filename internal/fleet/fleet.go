// Package fleet makes one gateway a member of a fleet sharing its state in
// etcd: it applies every state change from the store's watch, keeps a
// local copy of the last one, announces the gateway under the prefix and
// elects the one leader that runs the controller duties.
//
// Run starts three loops, each owned by Run's context:
//   - follow: store.Etcd.Watch → Follower.Follow (the next routing table)
//     → SaveLocal (the copy a restart serves while etcd is down);
//   - health: a Ping every second, so status and cutover_store_up say
//     since when etcd is unreachable;
//   - lead: a session (lease of TTL) announcing the member, a campaign,
//     and while this member leads, Lead(ctx) with ctx fenced on the
//     election key (store.WithFence) and cancelled when the session ends
//     or as soon as etcd has not confirmed the lease for 3/4 of its TTL
//     (so a leader cut off from etcd stops before another is elected).
package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/store"
)

// Follower applies a state written by any member.
type Follower interface {
	Follow(ctx context.Context, rec store.Record) error
}

// Options configure a Member.
type Options struct {
	// Store is the fleet's etcd store.
	Store *store.Etcd
	// Name is this gateway's name; Admin its admin API address.
	Name, Admin string
	// TTL is the session lease: a dead leader is replaced within it.
	// Zero means 10s.
	TTL time.Duration
	// Follower receives every state from the watch.
	Follower Follower
	// Lead runs the controller duties while this member leads, until its
	// context ends. Nil: this member never campaigns.
	Lead func(ctx context.Context)
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now; nil means time.Now.
	Now func() time.Time
	// HealthInterval is the period of the store's health check. Zero
	// means 1s.
	HealthInterval time.Duration
	// Host is this gateway's host name, published with its member key
	// (CheckName). Empty means os.Hostname().
	Host string
	// ConfigDigest returns the digest of this gateway's fleet-wide
	// settings, published with its member key (api.FleetMember.Config);
	// nil publishes none.
	ConfigDigest func() string
	// InFlight returns the requests in flight on this gateway by pool,
	// published with its member key so that the leader's retirement
	// drains the old pool on every gateway (OthersInFlight); nil
	// publishes none.
	InFlight func() map[string]int
}

// Member is this gateway in the fleet.
type Member struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	applied atomic.Int64 // revision applied from the watch
	leading atomic.Bool
	kick    chan struct{} // refresh the member key now
	kickObs chan struct{} // refresh the leader and members now

	mu      sync.Mutex // guards the fields below
	leader  string
	members []api.FleetMember
	warned  map[string]string // member name -> the digests it was warned about
	// followErr says why the newest state the watch brought could not be
	// applied; "" once one was.
	followErr string
}

// digest is Options.ConfigDigest's value, "" without one.
func (m *Member) digest() string {
	if m.opts.ConfigDigest == nil {
		return ""
	}
	return m.opts.ConfigDigest()
}

// New returns a member; call Run.
func New(opts Options) *Member {
	m := &Member{opts: opts, log: opts.Logger, now: opts.Now, kick: make(chan struct{}, 1), kickObs: make(chan struct{}, 1)}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.opts.TTL <= 0 {
		m.opts.TTL = 10 * time.Second
	}
	if m.opts.HealthInterval <= 0 {
		m.opts.HealthInterval = time.Second
	}
	if m.opts.Host == "" {
		m.opts.Host, _ = os.Hostname()
	}
	return m
}

// CheckName refuses a name that a gateway on another host holds in the
// fleet (its member key, kept alive by its session): two gateways with
// one name would overwrite each other's member key, validation samples
// and shadow figures, and a restart of one would end the hooks the other
// runs. A key of this host with this gateway's admin address is taken for
// an earlier run of this gateway (a restart within the session TTL: the
// address it has just bound was free). A key of another host, or of this
// host with another admin address (a second gateway started here from a
// copied file), is waited on until its lease would have expired (at most
// the session TTL and two seconds): a gateway that died, or this one's
// previous run under another host name (a new container) or admin
// address, lets it go; a live one renews it and the name is refused. host
// "" means os.Hostname(); admin "" matches any address; log nil means
// slog.Default(). With etcd unreachable nothing can be checked: nil.
func CheckName(ctx context.Context, st *store.Etcd, name, host, admin string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	if up, _ := st.Health(); !up {
		return nil // the start's read already waited for etcd in vain
	}
	var deadline time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, st.Timeout())
		resp, err := st.Client().Get(rctx, st.Prefix()+"members/"+name)
		cancel()
		if err != nil || len(resp.Kvs) == 0 {
			return nil
		}
		kv := resp.Kvs[0]
		var mi memberInfo
		if json.Unmarshal(kv.Value, &mi) != nil || mi.Host == "" || mi.Host == host && (admin == "" || mi.Admin == admin) {
			return nil
		}
		if deadline.IsZero() {
			ttl := int64(0)
			rctx, cancel := context.WithTimeout(ctx, st.Timeout())
			if lr, err := st.Client().TimeToLive(rctx, clientv3.LeaseID(kv.Lease)); err == nil {
				ttl = lr.GrantedTTL
			}
			cancel()
			// etcd removes an expired lease's keys a moment after its TTL.
			deadline = time.Now().Add(time.Duration(max(ttl, 0))*time.Second + 2*time.Second)
			log.Warn("fleet: another gateway holds this name; waiting for its entry to expire", "name", name, "host", mi.Host, "admin", mi.Admin, "until", deadline.UTC())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%q is the name of a running gateway of this fleet on host %s (admin %s): give every gateway its own name", name, mi.Host, mi.Admin)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Leading reports whether this member is the leader now.
func (m *Member) Leading() bool { return m.leading.Load() }

// Applied is the state revision this member applied last.
func (m *Member) Applied() int64 { return m.applied.Load() }

// Run runs the member until ctx is done, then resigns (so that another
// member takes over at once) and returns when its loops have.
func (m *Member) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { m.opts.Store.Watch(ctx, func(rec store.Record) { m.apply(ctx, rec) }) })
	wg.Go(func() { m.healthLoop(ctx) })
	wg.Go(func() { m.sessionLoop(ctx) })
	wg.Wait()
}

// apply hands rec to the follower and keeps the local copy.
func (m *Member) apply(ctx context.Context, rec store.Record) {
	if rec.Revision == 0 {
		return
	}
	if err := m.opts.Follower.Follow(ctx, rec); err != nil {
		m.log.Error("fleet: applying a state from the watch failed; the previous routing table stays", "revision", rec.Revision, "error", err)
		why := "a damaged document: write a good state over it with `cutover state import --replace`; a pool this gateway's configuration lacks: give every gateway the same file"
		if errors.Is(err, store.ErrBehind) {
			why = "etcd went back in time: see `store problem`"
		}
		m.mu.Lock()
		m.followErr = fmt.Sprintf("state revision %d in etcd cannot be applied here (%v): this gateway keeps the routing table it has (%s)", rec.Revision, err, why)
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	m.followErr = ""
	m.mu.Unlock()
	m.applied.Store(rec.Revision)
	if err := m.opts.Store.SaveLocal(rec); err != nil {
		m.log.Error("fleet: local copy of the state not written", "revision", rec.Revision, "error", err)
	}
	for _, c := range []chan struct{}{m.kick, m.kickObs} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (m *Member) healthLoop(ctx context.Context) {
	t := time.NewTicker(m.opts.HealthInterval)
	defer t.Stop()
	for {
		_ = m.opts.Store.Ping(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// memberKey is this member's key under the prefix.
func (m *Member) memberKey() string { return m.opts.Store.Prefix() + "members/" + m.opts.Name }

func (m *Member) electionPrefix() string { return m.opts.Store.Prefix() + "leader" }

// sessionLoop keeps a session: while it holds, the member key exists and,
// when Lead is set, the member campaigns. A lost session (etcd gone for
// longer than the TTL) starts a new one.
func (m *Member) sessionLoop(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := m.session(ctx)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("fleet: session ended; starting a new one", "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, m.opts.TTL)
	}
}

func (m *Member) session(ctx context.Context) error {
	cli := m.opts.Store.Client()
	gctx, cancel := context.WithTimeout(ctx, m.opts.Store.Timeout())
	lease, err := cli.Grant(gctx, int64(max(m.opts.TTL/time.Second, 1)))
	cancel()
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	granted := time.Now()
	sess, err := concurrency.NewSession(cli, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.Store.Timeout())
		defer cancel()
		_, _ = cli.Revoke(rctx, lease.ID) // leave at once: the next leader need not wait for the TTL
		sess.Orphan()
	}()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-sess.Done():
			stop()
		case <-sctx.Done():
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	confirmed := m.leaseConfirmed(sctx, &wg, lease, granted)
	wg.Go(func() { m.announce(sctx, lease.ID) })
	wg.Go(func() { m.observe(sctx, sess) })
	if m.opts.Lead == nil {
		<-sctx.Done()
		return errors.Join(ctx.Err(), errSessionLost(sess))
	}
	e := concurrency.NewElection(sess, m.electionPrefix())
	// Campaign, cancelled, resigns with the client's own context: while
	// etcd is unreachable that blocks until the client closes. So wait for
	// it here only while the session holds; the lease's revocation (or
	// expiry) removes the candidacy anyway.
	won := make(chan error, 1)
	go func() { won <- e.Campaign(sctx, m.opts.Name) }()
	select {
	case err := <-won:
		if err != nil {
			return fmt.Errorf("campaign: %w", err)
		}
	case <-sctx.Done():
		return errors.Join(ctx.Err(), errSessionLost(sess))
	}
	m.leadWhileConfirmed(sctx, e, confirmed)
	return errSessionLost(sess)
}

// leaseConfirmed follows etcd's answers to the session's keep-alives and
// returns a func reporting whether etcd confirmed the lease within the
// last three quarters of its TTL. etcd expires a lease TTL after the last
// keep-alive it received, and the client ends the session only some time
// after that; a leader that stops once this reports false stops before
// etcd can expire its lease and elect another.
func (m *Member) leaseConfirmed(ctx context.Context, wg *sync.WaitGroup, lease *clientv3.LeaseGrantResponse, granted time.Time) func() bool {
	var last atomic.Int64
	last.Store(granted.UnixNano())
	within := time.Duration(lease.TTL) * time.Second * 3 / 4
	ka, err := m.opts.Store.Client().KeepAlive(ctx, lease.ID)
	if err != nil {
		m.log.Warn("fleet: keep-alive answers of the session's lease not followed; this gateway will not lead in this session", "error", err)
	} else {
		wg.Go(func() {
			for resp := range ka { // closed when ctx ends or the lease is gone
				if resp.TTL > 0 {
					last.Store(time.Now().UnixNano())
				}
			}
		})
	}
	return func() bool { return time.Since(time.Unix(0, last.Load())) < within }
}

// leadWhileConfirmed runs Lead while this member holds the election (until
// ctx ends) and its lease is confirmed: when etcd stops confirming it (a
// partition), the member stops leading at once, before the lease can
// expire, and leads again with the same election key should etcd confirm
// the lease before it expired.
func (m *Member) leadWhileConfirmed(ctx context.Context, e *concurrency.Election, confirmed func() bool) {
	tick := time.NewTicker(max(m.opts.TTL/20, 10*time.Millisecond))
	defer tick.Stop()
	for ctx.Err() == nil {
		if !confirmed() {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		m.leading.Store(true)
		m.log.Info("fleet: this gateway is the leader; it runs deployments, timers, hooks and retirement", "name", m.opts.Name, "election_key", e.Key(), "term", e.Rev())
		go func() {
			defer close(done)
			m.opts.Lead(store.WithFence(lctx, e.Key(), e.Rev()))
		}()
		ended := false // Lead returned by itself (ctx ended)
	watch:
		for {
			select {
			case <-done:
				ended = true
				break watch
			case <-tick.C:
				if !confirmed() {
					m.leading.Store(false)
					m.log.Warn("fleet: etcd has not confirmed this gateway's lease for three quarters of its TTL; it stops leading before the lease can expire", "name", m.opts.Name)
					break watch
				}
			}
		}
		cancel()
		<-done
		m.leading.Store(false)
		m.mu.Lock()
		if m.leader == m.opts.Name {
			m.leader = "" // not this one any more; which one is, the next refresh tells
		}
		m.mu.Unlock()
		m.log.Info("fleet: leadership ended", "name", m.opts.Name)
		if ended {
			return
		}
	}
}

func errSessionLost(sess *concurrency.Session) error {
	select {
	case <-sess.Done():
		return errors.New("session lease expired or revoked")
	default:
		return nil
	}
}

// memberInfo is a member key's value.
type memberInfo struct {
	Name     string    `json:"name"`
	Admin    string    `json:"admin"`
	Host     string    `json:"host,omitempty"`
	Revision int64     `json:"revision"`
	LastSeen time.Time `json:"last_seen"`
	Config   string    `json:"config,omitempty"`
	// InFlight is the requests in flight by pool when it was written.
	InFlight map[string]int `json:"in_flight,omitempty"`
}

// announce writes the member key (on the session's lease) now, after
// every applied revision and every TTL/3.
func (m *Member) announce(ctx context.Context, lease clientv3.LeaseID) {
	t := time.NewTicker(max(m.opts.TTL/3, time.Second))
	defer t.Stop()
	for {
		mi := memberInfo{Name: m.opts.Name, Admin: m.opts.Admin, Host: m.opts.Host, Revision: m.Applied(), LastSeen: m.now().UTC(), Config: m.digest()}
		if m.opts.InFlight != nil {
			mi.InFlight = m.opts.InFlight()
		}
		b, _ := json.Marshal(mi)
		pctx, cancel := context.WithTimeout(ctx, m.opts.Store.Timeout())
		_, err := m.opts.Store.Client().Put(pctx, m.memberKey(), string(b), clientv3.WithLease(lease))
		cancel()
		if err != nil && ctx.Err() == nil {
			m.log.Debug("fleet: member key not written", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
	}
}

// observe keeps the leader's name and the member list current.
func (m *Member) observe(ctx context.Context, sess *concurrency.Session) {
	e := concurrency.NewElection(sess, m.electionPrefix())
	t := time.NewTicker(max(m.opts.TTL/3, time.Second))
	defer t.Stop()
	for {
		m.refresh(ctx, e)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kickObs:
		}
	}
}

// refresh reads the leader and the members; on failure the last known
// ones stay.
func (m *Member) refresh(ctx context.Context, e *concurrency.Election) {
	rctx, cancel := context.WithTimeout(ctx, m.opts.Store.Timeout())
	defer cancel()
	leader := ""
	if resp, err := e.Leader(rctx); err == nil && len(resp.Kvs) > 0 {
		leader = string(resp.Kvs[0].Value)
	} else if err != nil && !errors.Is(err, concurrency.ErrElectionNoLeader) {
		return
	}
	resp, err := m.opts.Store.Client().Get(rctx, m.opts.Store.Prefix()+"members/", clientv3.WithPrefix())
	if err != nil {
		return
	}
	var ms []api.FleetMember
	for _, kv := range resp.Kvs {
		var mi memberInfo
		if json.Unmarshal(kv.Value, &mi) != nil {
			continue
		}
		ms = append(ms, api.FleetMember{Name: mi.Name, Admin: mi.Admin, Revision: mi.Revision, LastSeen: mi.LastSeen, Config: mi.Config, InFlight: mi.InFlight})
		if own := m.digest(); mi.Config != "" && own != "" && mi.Config != own && mi.Name != m.opts.Name {
			m.mu.Lock()
			warned := m.warned[mi.Name] == mi.Config+own
			if !warned {
				if m.warned == nil {
					m.warned = map[string]string{}
				}
				m.warned[mi.Name] = mi.Config + own
			}
			m.mu.Unlock()
			if !warned {
				m.log.Warn("fleet: a gateway's configuration differs from this one's (model_name, pools, rollout.strategy or rollout.retention_mode): keep the file the same on every gateway", "gateway", mi.Name, "admin", mi.Admin, "its_config", mi.Config, "this_config", own)
			}
		}
	}
	slices.SortFunc(ms, func(a, b api.FleetMember) int { return strings.Compare(a.Name, b.Name) })
	m.mu.Lock()
	m.leader, m.members = leader, ms
	m.mu.Unlock()
}

// OthersInFlight is the requests in flight on pool at the fleet's other
// live gateways, as each last published them (every TTL/3 and after each
// revision it applied): what a drain of pool waits for beyond this
// gateway's own. A gateway that died is not counted once its lease
// expired (its requests died with it).
func (m *Member) OthersInFlight(pool string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, x := range m.members {
		if x.Name != m.opts.Name {
			n += x.InFlight[pool]
		}
	}
	return n
}

// Status describes the fleet as this member last saw it.
func (m *Member) Status() *api.Fleet {
	up, since := m.opts.Store.Health()
	m.mu.Lock()
	defer m.mu.Unlock()
	f := &api.Fleet{Leader: m.leader, Self: m.opts.Name, Members: slices.Clone(m.members),
		Store: api.StoreHealth{Kind: "etcd", Healthy: up, Since: since.UTC(), FromLocalCopy: m.opts.Store.FromLocal(),
			Problem: cmp.Or(m.opts.Store.Problem(), m.followErr)}, Config: m.digest()}
	switch {
	case m.Leading():
		f.Leader = m.opts.Name
	case !up:
		f.Leader = "" // who leads now is etcd's to say, and it cannot be asked
	}
	if f.Members == nil {
		f.Members = []api.FleetMember{}
	}
	return f
}

package store

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrUnavailable means the shared store (etcd) could not be reached in
// time: nothing was written. The admin API answers 503 store_unavailable.
var ErrUnavailable = errors.New("state store unavailable")

// ErrFenced means a write guarded by a leader's fence (WithFence) found
// that the leadership it was made under is gone: nothing was written.
var ErrFenced = errors.New("not the leader any more")

// ErrBehind means etcd holds a state older than one this gateway has
// applied: etcd lost its data or was restored from an older snapshot.
// Following it would go back in time (a retired version could take
// traffic), so the gateway neither starts from it nor writes over it.
var ErrBehind = errors.New("the state store went back in time")

// LocalFile is the local copy of the last state an etcd-backed gateway
// applied, inside state_dir: a restart while etcd is down serves it.
const LocalFile = "fleet-state.json"

// Keys under the fleet prefix.
const (
	keyStateDoc = "state/doc"
	keyStateRev = "state/rev"
	keyHistory  = "history/"
)

// EtcdOptions configure OpenEtcd.
type EtcdOptions struct {
	// Endpoints are etcd client URLs.
	Endpoints []string
	// Prefix is the fleet's key prefix; it ends with "/".
	Prefix string
	// Timeout bounds connecting and each request. Zero means 5s.
	Timeout time.Duration
	// Username and Password authenticate to etcd; empty: no auth.
	Username, Password string
	// TLS is the client's TLS; nil for plain http endpoints.
	TLS *tls.Config
	// LocalDir, when set, holds LocalFile, the copy of the last applied
	// state (see SaveLocal); Get falls back on it while etcd is down.
	LocalDir string
	// Logger receives the store's warnings; nil means slog.Default().
	Logger *slog.Logger
	// Now reads the clock; nil means time.Now.
	Now func() time.Time
}

// Etcd is a Store in etcd, shared by every gateway of a fleet: the
// document and its revision under Prefix+"state/", history entries under
// Prefix+"history/". A Put is one transaction that compares the stored
// revision (and, for a leader's writes, its election key: WithFence).
type Etcd struct {
	cli     *clientv3.Client
	prefix  string
	timeout time.Duration
	local   string // path of LocalFile, "" without LocalDir
	log     *slog.Logger
	now     func() time.Time

	mu        sync.Mutex // guards the fields below
	healthy   bool
	since     time.Time // when healthy last changed
	fromLocal bool      // the state came from the local copy: etcd was down at start
	saved     int64     // revision of the local copy
	applied   int64     // the newest state revision this gateway applied or wrote
	etcdRev   int64     // the newest etcd revision a response carried
	problem   string    // why etcd's state cannot be followed now; "" when it can
	// foreignWarned: the warning that the local copy is another fleet's
	// was logged.
	foreignWarned bool

	// resync ends the watch so that Watch reads the state again: etcd's
	// revision went back, and a watch from a revision it has not reached
	// would wait in silence.
	resync chan struct{}
}

var _ Store = (*Etcd)(nil)

// redialMax bounds the wait between two attempts to connect to etcd.
const redialMax = 500 * time.Millisecond

// OpenEtcd connects to etcd. Without authentication it does not wait for
// etcd to answer, so a gateway can start (from its local copy) while etcd
// is down.
func OpenEtcd(opts EtcdOptions) (*Etcd, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	s := &Etcd{prefix: opts.Prefix, timeout: opts.Timeout, log: opts.Logger, now: opts.Now, resync: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if opts.LocalDir != "" {
		if err := os.MkdirAll(opts.LocalDir, 0o700); err != nil {
			return nil, fmt.Errorf("create state_dir %s: %w", opts.LocalDir, err)
		}
		s.local = filepath.Join(opts.LocalDir, LocalFile)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            opts.Endpoints,
		DialTimeout:          opts.Timeout,
		DialKeepAliveTime:    opts.Timeout,
		DialKeepAliveTimeout: opts.Timeout,
		Username:             opts.Username,
		Password:             opts.Password,
		TLS:                  opts.TLS,
		Logger:               zap.NewNop(),
		// gRPC's default reconnect backoff grows to 2 minutes: a gateway
		// cut off for a while would go on serving its old routing table
		// that long after etcd returned. Try again at least every 500 ms.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: redialMax},
			MinConnectTimeout: opts.Timeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", opts.Endpoints, err)
	}
	s.cli = cli
	s.healthy, s.since = true, s.now()
	return s, nil
}

// Client is the etcd client, for the fleet's election and membership.
func (s *Etcd) Client() *clientv3.Client { return s.cli }

// Prefix is the fleet's key prefix.
func (s *Etcd) Prefix() string { return s.prefix }

// Timeout bounds one request.
func (s *Etcd) Timeout() time.Duration { return s.timeout }

// Health reports whether etcd answered the last request, and since when
// that is so.
func (s *Etcd) Health() (healthy bool, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy, s.since
}

// FromLocal reports whether the store started from the local copy
// because etcd could not be read.
func (s *Etcd) FromLocal() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fromLocal
}

// Problem says why the state etcd holds cannot be followed (it is older
// than one this gateway applied, or its revision key is not a number);
// "" when it can. The periodic Ping sets and clears it.
func (s *Etcd) Problem() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.problem
}

// noteEtcdRev records the etcd revision of a response: etcdRev is the
// newest seen.
func (s *Etcd) noteEtcdRev(rev int64) {
	s.mu.Lock()
	s.etcdRev = max(s.etcdRev, rev)
	s.mu.Unlock()
}

// wentBack handles a Ping's answer at etcd revision rev, asked after
// the newest revision seen was before: a linearizable read answers at
// least that, so a lower one means etcd's keyspace went back (a restore
// from a snapshot, or a new cluster). The watch, waiting for a revision
// etcd has not reached, is ended so that Watch reads the state again.
func (s *Etcd) wentBack(rev, before int64) {
	if rev >= before {
		s.noteEtcdRev(rev)
		return
	}
	s.mu.Lock()
	s.etcdRev = rev
	s.mu.Unlock()
	s.log.Warn("etcd's revision went back (restored from a snapshot, or a new cluster): reading the state again",
		"store", "etcd", "was", before, "now", rev)
	select {
	case s.resync <- struct{}{}:
	default:
	}
}

// seen returns the newest state revision this gateway applied and the
// newest etcd revision seen, before a request whose answer is compared
// with them.
func (s *Etcd) seen() (applied, etcdRev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied, s.etcdRev
}

// noteApplied records that this gateway applied or wrote state rev.
func (s *Etcd) noteApplied(rev int64) {
	s.mu.Lock()
	s.applied = max(s.applied, rev)
	s.mu.Unlock()
}

// setProblem records why etcd's state cannot be followed ("" when it
// can), logging each change once.
func (s *Etcd) setProblem(p string) {
	s.mu.Lock()
	old := s.problem
	s.problem = p
	s.mu.Unlock()
	switch {
	case p == old:
	case p != "":
		s.log.Error("the state in etcd cannot be followed: serving the last routing table, refusing changes", "store", "etcd", "problem", p)
	default:
		s.log.Info("the state in etcd can be followed again", "store", "etcd")
	}
}

// behind returns an error wrapping ErrBehind when state revision rev,
// read from etcd, is older than applied (what this gateway had applied
// when it asked) or (withLocal) what its local copy holds; nil otherwise.
func (s *Etcd) behind(rev, applied int64, withLocal bool) error {
	ahead := applied
	what := "this gateway applied"
	if withLocal {
		if loc, err := s.LoadLocal(); err == nil && loc.Revision > ahead {
			ahead, what = loc.Revision, "this gateway's local copy "+s.local+" holds"
		}
	}

	if rev >= ahead {
		return nil
	}
	local := cmp.Or(s.local, "<state_dir>/"+LocalFile)
	return fmt.Errorf("%w: etcd (prefix %s) holds state revision %d, older than revision %d that %s: etcd lost its data or was restored from an older snapshot, and following it would go back to an older routing (a retired version could take traffic). "+
		"Restore etcd's newer data; or write this gateway's local copy over it with `cutover state import --replace --config FILE --file %s`; or, to go back on purpose, remove %s on every gateway",
		ErrBehind, s.prefix, rev, ahead, what, local, local)
}

// stateOps are the puts of state document data at revision rev, the
// pair every write of the state (Put, Import, Replace) makes.
func (s *Etcd) stateOps(data []byte, rev int64) []clientv3.Op {
	return []clientv3.Op{
		clientv3.OpPut(s.prefix+keyStateDoc, string(data)),
		clientv3.OpPut(s.prefix+keyStateRev, strconv.FormatInt(rev, 10)),
	}
}

// mark records the outcome of a request: err nil (or a refusal of the
// request itself) means etcd answered.
func (s *Etcd) mark(err error) {
	up := err == nil || !unreachable(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if up != s.healthy {
		s.healthy, s.since = up, s.now()
		if up {
			s.log.Info("state store reachable again", "store", "etcd")
		} else {
			s.log.Warn("state store unreachable: serving the last routing table, refusing changes", "store", "etcd", "error", err)
		}
	}
}

// unreachable reports whether err means etcd did not answer (as opposed
// to answering no).
func unreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return errors.Is(ee, rpctypes.ErrNoLeader) || errors.Is(ee, rpctypes.ErrTimeout) || errors.Is(ee, rpctypes.ErrTimeoutDueToLeaderFail) ||
			errors.Is(ee, rpctypes.ErrTimeoutDueToConnectionLost) || errors.Is(ee, rpctypes.ErrLeaderChanged)
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return true
		}
	}
	return false
}

// Ping reads one key to learn whether etcd answers; it updates Health.
func (s *Etcd) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.timeout)
	defer cancel()
	applied, before := s.seen()
	resp, err := s.cli.Get(ctx, s.prefix+keyStateRev)
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("%w: etcd did not answer within %s: %w", ErrUnavailable, s.timeout, err)
	}
	s.mark(err)
	if err != nil {
		return err
	}
	s.wentBack(resp.Header.Revision, before)
	var rec Record
	for _, kv := range resp.Kvs {
		if ferr := s.fold(&rec, string(kv.Key), kv.Value); ferr != nil {
			s.setProblem(ferr.Error() + ": write a good state over it with `cutover state import --replace`")
			return nil
		}
	}
	if berr := s.behind(rec.Revision, applied, false); berr != nil {
		s.setProblem(berr.Error())
	} else {
		s.setProblem("")
	}
	return nil
}

// Get implements Store. When etcd cannot be read and a local copy
// exists, it returns that copy (FromLocal then reports true): the
// gateway serves its last routing table while etcd is down.
func (s *Etcd) Get(ctx context.Context) (Record, error) {
	applied, _ := s.seen()
	rec, _, err := s.read(ctx)
	if err == nil {
		if berr := s.behind(rec.Revision, applied, true); berr != nil {
			return Record{}, berr
		}
		return rec, nil
	}
	if !unreachable(err) {
		return Record{}, err
	}
	loc, lerr := s.LoadLocal()
	if lerr != nil || loc.Revision == 0 {
		return Record{}, errors.Join(err, lerr)
	}
	s.noteApplied(loc.Revision) // what etcd says once back is compared with it
	s.mu.Lock()
	first := !s.fromLocal
	s.fromLocal = true
	s.mu.Unlock()
	if first {
		s.log.Warn("etcd is unreachable: running from the local copy of the state; changes are refused until etcd answers",
			"file", s.local, "revision", loc.Revision, "error", err)
	}
	return loc, nil
}

// read returns the record and the etcd revision it was read at.
func (s *Etcd) read(ctx context.Context) (Record, int64, error) {
	cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.timeout)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.prefix+"state/", clientv3.WithPrefix())
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: etcd did not answer within %s: %w", ErrUnavailable, s.timeout, err)
		}
		s.mark(err)
		return Record{}, 0, fmt.Errorf("read state from etcd %s: %w", s.prefix, err)
	}
	s.mark(nil)
	s.noteEtcdRev(resp.Header.Revision)
	var rec Record
	for _, kv := range resp.Kvs {
		if err := s.fold(&rec, string(kv.Key), kv.Value); err != nil {
			return Record{}, 0, err
		}
	}
	return rec, resp.Header.Revision, nil
}

// fold applies one state key's value to rec.
func (s *Etcd) fold(rec *Record, key string, val []byte) error {
	switch key {
	case s.prefix + keyStateRev:
		n, err := strconv.ParseInt(string(val), 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("etcd key %s holds %q, not a revision", key, val)
		}
		rec.Revision = n
	case s.prefix + keyStateDoc:
		rec.Data = append([]byte(nil), val...)
	}
	return nil
}

type fenceKey struct{}

// fence is a leader's election key and its create revision.
type fence struct {
	key string
	rev int64
}

// WithFence marks writes made with ctx as a leader's: an Etcd store
// commits them only while key (the election key) still has create
// revision rev, so a deposed leader's late write fails with ErrFenced.
// Other stores ignore it.
func WithFence(ctx context.Context, key string, rev int64) context.Context {
	return context.WithValue(ctx, fenceKey{}, fence{key: key, rev: rev})
}

// Put implements Store: one transaction comparing the stored revision
// (and the fence of WithFence), writing the document, the next revision
// and the history entries.
func (s *Etcd) Put(ctx context.Context, rev int64, data []byte, history ...[]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ok, since := s.Health(); !ok {
		return fmt.Errorf("write state revision %d: %w: etcd unreachable since %s", rev+1, ErrUnavailable, since.UTC().Format(time.RFC3339))
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.Value(s.prefix+keyStateRev), "=", strconv.FormatInt(rev, 10))}
	if rev == 0 {
		cmps[0] = clientv3.Compare(clientv3.CreateRevision(s.prefix+keyStateRev), "=", 0)
	}
	f, fenced := ctx.Value(fenceKey{}).(fence)
	if fenced {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(f.key), "=", f.rev))
	}
	ops := s.stateOps(data, rev+1)
	for i, h := range history {
		ops = append(ops, clientv3.OpPut(s.historyKey(rev+1, i), string(h)))
	}
	cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.timeout)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(s.prefix + keyStateRev)).Commit()
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: etcd did not answer within %s: %w", ErrUnavailable, s.timeout, err)
		} else if unreachable(err) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		s.mark(err)
		return fmt.Errorf("write state revision %d: %w", rev+1, err)
	}
	s.mark(nil)
	s.noteEtcdRev(resp.Header.Revision)
	if resp.Succeeded {
		s.noteApplied(rev + 1)
		return nil
	}
	var cur int64
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		cur, _ = strconv.ParseInt(string(kvs[0].Value), 10, 64)
	}
	if cur != rev {
		return fmt.Errorf("write state revision %d: %w", rev+1, conflict(rev, cur))
	}
	return fmt.Errorf("write state revision %d: %w: election key %s no longer has create revision %d", rev+1, ErrFenced, f.key, f.rev)
}

// historyKey orders history entries by revision, then by position.
func (s *Etcd) historyKey(rev int64, i int) string {
	return fmt.Sprintf("%s%s%020d-%06d", s.prefix, keyHistory, rev, i)
}

// History implements Store.
func (s *Etcd) History(ctx context.Context, limit int) ([][]byte, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.prefix+keyHistory, opts...)
	if err != nil {
		if cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		s.mark(err)
		return nil, fmt.Errorf("read history from etcd %s: %w", s.prefix, err)
	}
	s.mark(nil)
	out := make([][]byte, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[len(out)-1-i] = kv.Value
	}
	return out, nil
}

// Import writes rec and its history into an empty fleet prefix, keeping
// rec's revision, so that a single gateway's bbolt state moves into etcd
// whole. It refuses a prefix that holds a state already.
func (s *Etcd) Import(ctx context.Context, rec Record, history [][]byte) error {
	if rec.Revision <= 0 {
		return fmt.Errorf("import: nothing to import (revision %d)", rec.Revision)
	}
	ops := s.stateOps(rec.Data, rec.Revision)
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(s.prefix+keyStateRev), "=", 0)).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("import into etcd %s: %w", s.prefix, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("import into etcd %s: %w: the prefix holds a state already; import needs an empty prefix", s.prefix, ErrConflict)
	}
	// History is keyed before every later revision's entries.
	return s.putHistory(ctx, 0, history)
}

// Replace writes rec over the state the prefix holds, whatever it is
// (damaged, or older than what gateways applied: ErrBehind), with rec's
// history entries after the history already there. The revision written
// is rec's, or one past the stored one when that is higher, so that every
// gateway takes it as news. It returns that revision. A concurrent write
// makes it fail with ErrConflict; nothing is written then.
func (s *Etcd) Replace(ctx context.Context, rec Record, history [][]byte) (int64, error) {
	if rec.Revision <= 0 {
		return 0, fmt.Errorf("replace: nothing to write (revision %d)", rec.Revision)
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cur, err := s.cli.Get(cctx, s.prefix+keyStateRev)
	if err != nil {
		return 0, fmt.Errorf("replace the state in etcd %s: %w", s.prefix, err)
	}
	rev, cmpRev := rec.Revision, int64(0)
	if len(cur.Kvs) == 1 {
		cmpRev = cur.Kvs[0].ModRevision
		if n, err := strconv.ParseInt(string(cur.Kvs[0].Value), 10, 64); err == nil && n >= rev {
			rev = n + 1
		}
	}
	// Past what any gateway applied (each records it under members/): a
	// revision one already holds would not be news to it, even with
	// other content.
	members, err := s.cli.Get(cctx, s.prefix+"members/", clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("replace the state in etcd %s: read the gateways' revisions: %w", s.prefix, err)
	}
	for _, kv := range members.Kvs {
		var m struct {
			Revision int64 `json:"revision"`
		}
		if json.Unmarshal(kv.Value, &m) == nil && m.Revision >= rev {
			rev = m.Revision + 1
		}
	}
	ops := s.stateOps(rec.Data, rev)
	resp, err := s.cli.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(s.prefix+keyStateRev), "=", cmpRev)).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("replace the state in etcd %s: %w", s.prefix, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("replace the state in etcd %s: %w: it was written meanwhile; check it and try again", s.prefix, ErrConflict)
	}
	return rev, s.putHistory(ctx, rev, history)
}

// putHistory writes history entries keyed at revision rev, in batches
// below etcd's limit on operations per transaction.
func (s *Etcd) putHistory(ctx context.Context, rev int64, history [][]byte) error {
	for start := 0; start < len(history); start += 100 {
		var batch []clientv3.Op
		for i := start; i < min(start+100, len(history)); i++ {
			batch = append(batch, clientv3.OpPut(s.historyKey(rev, i), string(history[i])))
		}
		bctx, cancel := context.WithTimeout(ctx, s.timeout)
		_, err := s.cli.Txn(bctx).Then(batch...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("write history into etcd %s: %w", s.prefix, err)
		}
	}
	return nil
}

// Watch calls fn with the current record and then with every newer one,
// in order, until ctx is done. It reads the state and starts the watch at
// that read's revision + 1, so no write falls between; a compacted
// revision or a broken watch makes it read again and re-watch. fn runs
// on Watch's goroutine and never sees a revision twice or go backwards.
func (s *Etcd) Watch(ctx context.Context, fn func(Record)) {
	var last int64 = -1
	deliver := func(rec Record) {
		if rec.Revision > last {
			last = rec.Revision
			fn(rec)
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		rec, at, err := s.read(ctx)
		if err != nil {
			s.log.Debug("watch: read failed; retrying", "error", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.timeout)
			continue
		}
		backoff = 100 * time.Millisecond
		deliver(rec)
		s.follow(ctx, at+1, rec, deliver)
	}
}

// follow watches the state keys from etcd revision from, folding events
// into rec, until the watch ends (compaction, cancellation, error).
func (s *Etcd) follow(ctx context.Context, from int64, rec Record, deliver func(Record)) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.prefix+"state/", clientv3.WithPrefix(), clientv3.WithRev(from))
	for {
		// Wait on ctx too: while etcd is unreachable the client may not
		// close a cancelled watch's channel until it reconnects.
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return
		case <-s.resync:
			return
		case resp, ok = <-wch:
		}
		if !ok {
			return
		}
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				s.log.Info("watch: revision compacted; reading the state again", "from", from, "compacted", resp.CompactRevision)
			} else {
				s.log.Debug("watch ended; reading the state again", "error", err)
			}
			return
		}
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			if err := s.fold(&rec, string(ev.Kv.Key), ev.Kv.Value); err != nil {
				s.log.Error("watch: bad state key", "error", err)
				return
			}
		}
		if len(resp.Events) > 0 {
			s.mark(nil)
			s.noteEtcdRev(resp.Header.Revision)
			deliver(rec)
		}
	}
}

// localCopy is LocalFile's content.
type localCopy struct {
	Revision int64           `json:"revision"`
	Saved    time.Time       `json:"saved"`
	State    json.RawMessage `json:"state"`
	// Prefix is the fleet's etcd prefix it was saved under: a copy of
	// another fleet's state is not this one's (empty in older copies:
	// taken as this fleet's).
	Prefix string `json:"prefix,omitempty"`
}

// SaveLocal writes rec as the local copy (through a temporary file,
// fsynced, renamed), unless the copy is already at rec's revision.
func (s *Etcd) SaveLocal(rec Record) error {
	s.noteApplied(rec.Revision)
	if s.local == "" || rec.Revision == 0 {
		return nil
	}
	s.mu.Lock()
	if s.saved == rec.Revision {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	b, err := json.Marshal(localCopy{Revision: rec.Revision, Saved: s.now().UTC(), State: rec.Data, Prefix: s.prefix})
	if err != nil {
		return fmt.Errorf("encode local copy: %w", err)
	}
	dir := filepath.Dir(s.local)
	tmp, err := os.CreateTemp(dir, LocalFile+".new-*")
	if err != nil {
		return fmt.Errorf("local copy: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, s.local)
	}
	if err != nil {
		return fmt.Errorf("write local copy %s: %w", s.local, err)
	}
	s.mu.Lock()
	s.saved = rec.Revision
	s.mu.Unlock()
	return syncDir(dir)
}

// LoadLocal reads the local copy; a zero Record when there is none, or
// when it holds another fleet's state (saved under another prefix).
func (s *Etcd) LoadLocal() (Record, error) {
	if s.local == "" {
		return Record{}, nil
	}
	b, err := os.ReadFile(s.local)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, nil
	}
	if err != nil {
		return Record{}, fmt.Errorf("read local copy: %w", err)
	}
	var lc localCopy
	if err := json.Unmarshal(b, &lc); err != nil {
		return Record{}, fmt.Errorf("local copy %s is damaged: %w", s.local, err)
	}
	if lc.Prefix != "" && lc.Prefix != s.prefix {
		s.mu.Lock()
		warned := s.foreignWarned
		s.foreignWarned = true
		s.mu.Unlock()
		if warned {
			return Record{}, nil
		}
		s.log.Warn("the local copy of the state is another fleet's (another etcd prefix): not used; the next state applied replaces it",
			"file", s.local, "its_prefix", lc.Prefix, "prefix", s.prefix)
		return Record{}, nil
	}
	return Record{Revision: lc.Revision, Data: lc.State}, nil
}

// Close implements Store.
func (s *Etcd) Close() error { return s.cli.Close() }

package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cutover-dev/cutover/internal/store"
	"github.com/cutover-dev/cutover/internal/validation"
)

// SamplesOptions configure a Samples publisher.
type SamplesOptions struct {
	// Store is the fleet's etcd store.
	Store *store.Etcd
	// Name is this gateway's name in the fleet.
	Name string
	// TTL is the lease of the published key: a stopped gateway's figures
	// expire within it. Zero means 10s.
	TTL time.Duration
	// Interval is the publishing period. Zero means 1s.
	Interval time.Duration
	// Window returns the validation window this gateway should measure
	// now (from the applied state); a zero window measures nothing.
	Window func() validation.Window
	// Recorder holds this gateway's samples; it must observe the data
	// plane.
	Recorder *validation.Recorder
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Samples publishes this gateway's validation samples under
// <prefix>samples/<deployment>/<name> on a lease, and reads every
// gateway's for the leader to merge.
type Samples struct {
	opts SamplesOptions
	log  *slog.Logger

	mu      sync.Mutex // guards the fields below
	key     string     // window key of remote and contrib
	readAt  time.Time  // when remote was read
	remote  []validation.Aggregate
	contrib int
	shadows int // gateways whose aggregate has shadow copies
}

// published is a samples key's value.
type published struct {
	Window    string               `json:"window"`
	Gateway   string               `json:"gateway"`
	Aggregate validation.Aggregate `json:"aggregate"`
}

// NewSamples returns a publisher; call Run.
func NewSamples(opts SamplesOptions) *Samples {
	s := &Samples{opts: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.opts.TTL <= 0 {
		s.opts.TTL = 10 * time.Second
	}
	if s.opts.Interval <= 0 {
		s.opts.Interval = time.Second
	}
	return s
}

// deploymentOf is the deployment id part of a window key ("<id>/<kind>").
func deploymentOf(key string) string {
	id, _, _ := strings.Cut(key, "/")
	return id
}

func (s *Samples) prefix(id string) string { return s.opts.Store.Prefix() + "samples/" + id + "/" }

// Run publishes and reads every Interval until ctx is done.
func (s *Samples) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	var lease clientv3.LeaseID
	for {
		var err error
		lease, err = s.tick(ctx, lease)
		if err != nil && ctx.Err() == nil {
			s.log.Debug("fleet: validation samples not published", "error", err)
		}
		select {
		case <-ctx.Done():
			if lease != 0 {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Store.Timeout())
				_, _ = s.opts.Store.Client().Revoke(rctx, lease)
				cancel()
			}
			return
		case <-t.C:
		}
	}
}

// tick sets the recorder's window, publishes its samples and reads the
// others'. It returns the lease in use (0: none yet or lost).
func (s *Samples) tick(ctx context.Context, lease clientv3.LeaseID) (clientv3.LeaseID, error) {
	readAt := time.Now()
	w := s.opts.Window()
	s.opts.Recorder.SetWindow(w)
	if w.Key == "" {
		s.mu.Lock()
		s.key, s.remote, s.contrib, s.shadows = "", nil, 0, 0
		s.mu.Unlock()
		return lease, nil
	}
	cli := s.opts.Store.Client()
	cctx, cancel := context.WithTimeout(ctx, s.opts.Store.Timeout())
	defer cancel()
	if lease != 0 {
		if _, err := cli.KeepAliveOnce(cctx, lease); err != nil {
			lease = 0
		}
	}
	if lease == 0 {
		g, err := cli.Grant(cctx, int64(max(s.opts.TTL/time.Second, 1)))
		if err != nil {
			return 0, fmt.Errorf("grant lease: %w", err)
		}
		lease = g.ID
	}
	_, agg := s.opts.Recorder.Snapshot()
	b, err := json.Marshal(published{Window: w.Key, Gateway: s.opts.Name, Aggregate: agg})
	if err != nil {
		return lease, fmt.Errorf("encode samples: %w", err)
	}
	id := deploymentOf(w.Key)
	if _, err := cli.Put(cctx, s.prefix(id)+s.opts.Name, string(b), clientv3.WithLease(lease)); err != nil {
		return lease, fmt.Errorf("put %s: %w", s.prefix(id)+s.opts.Name, err)
	}
	resp, err := cli.Get(cctx, s.prefix(id), clientv3.WithPrefix())
	if err != nil {
		return lease, fmt.Errorf("get %s: %w", s.prefix(id), err)
	}
	var remote []validation.Aggregate
	contrib, shadows := 0, 0
	for _, kv := range resp.Kvs {
		var p published
		if json.Unmarshal(kv.Value, &p) != nil || p.Window != w.Key {
			continue
		}
		if p.Aggregate.Len() > 0 {
			contrib++
		}
		if p.Aggregate.Shadow > 0 {
			shadows++
		}
		if p.Gateway != s.opts.Name {
			remote = append(remote, p.Aggregate)
		}
	}
	s.mu.Lock()
	s.key, s.remote, s.contrib, s.shadows, s.readAt = w.Key, remote, contrib, shadows, readAt
	s.mu.Unlock()
	return lease, nil
}

// Remote returns the other gateways' samples of the current window, as
// last read; nothing when that was before since, as it may be another
// window's (validation.Validator.Remote).
func (s *Samples) Remote(since time.Time) []validation.Aggregate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readAt.Before(since) {
		return nil
	}
	return s.remote
}

// Contributors is how many gateways (this one included) published samples
// of the deployment's current window, as last read; 0 for another
// deployment or none.
func (s *Samples) Contributors(deployment string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == "" || deploymentOf(s.key) != deployment {
		return 0
	}
	return s.contrib
}

// ShadowContributors is how many gateways (this one included) published
// shadow copies of the deployment's current window, as last read; 0 for
// another deployment, a window without shadow copies, or none.
func (s *Samples) ShadowContributors(deployment string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key == "" || deploymentOf(s.key) != deployment {
		return 0
	}
	return s.shadows
}

package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target is one replica to check, with the model id it must serve ("" to
// skip the model check).
type Target struct {
	Replica *Replica
	Model   string
}

// Checker runs active health checks: GET Path must answer 2xx and
// GET /v1/models must list the target's model. A replica changes state only
// after Rise consecutive passes or Fall consecutive failures.
type Checker struct {
	// Client makes the checks. Nil means a client with no keep-alive
	// sharing concerns: http.DefaultClient's transport.
	Client *http.Client
	// Path is the health endpoint, such as /health.
	Path string
	// Interval between rounds. Must be positive for Run.
	Interval time.Duration
	// Timeout of one replica's check (both requests).
	Timeout time.Duration
	// Rise and Fall are the consecutive pass/fail thresholds (minimum 1).
	Rise, Fall int
	// Targets returns the replicas to check this round. It is called once
	// per round so that membership changes are picked up.
	Targets func() []Target
	// Logger receives one line per health change. Nil means slog.Default().
	Logger *slog.Logger

	// mu guards Path, Interval, Timeout, Rise and Fall once Run runs: set
	// them directly before, with SetSettings after.
	mu sync.Mutex
}

// Settings are the tunables of the checks that SetSettings changes while
// the checker runs; each means what the Checker field of its name means.
type Settings struct {
	Path              string        // Checker.Path
	Interval, Timeout time.Duration // Checker.Interval (must be positive), Checker.Timeout
	Rise, Fall        int           // Checker.Rise, Checker.Fall
}

// SetSettings replaces Path, Interval, Timeout, Rise and Fall while the
// checker runs (a configuration reload): the next check uses them, and Run
// takes the new interval after its next round.
func (c *Checker) SetSettings(s Settings) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Path, c.Interval, c.Timeout, c.Rise, c.Fall = s.Path, s.Interval, s.Timeout, s.Rise, s.Fall
}

// settings returns the current tunables.
func (c *Checker) settings() Settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Settings{Path: c.Path, Interval: c.Interval, Timeout: c.Timeout, Rise: c.Rise, Fall: c.Fall}
}

// Probe checks one replica once and returns why it failed, or nil.
func (c *Checker) Probe(ctx context.Context, r *Replica, model string) error {
	set := c.settings()
	ctx, cancel := context.WithTimeout(ctx, set.Timeout)
	defer cancel()
	if err := c.get(ctx, r, r.Name+set.Path, nil); err != nil {
		return err
	}
	if model == "" {
		return nil
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
			// MaxModelLen is kept as sent: a server whose value is
			// not a whole number is not failed for it.
			MaxModelLen json.RawMessage `json:"max_model_len"`
		} `json:"data"`
	}
	if err := c.get(ctx, r, r.Name+"/v1/models", &list); err != nil {
		return err
	}
	var ids []string
	found := false
	for _, m := range list.Data {
		if m.ID == model {
			n, _ := strconv.ParseInt(string(m.MaxModelLen), 10, 64)
			r.maxLen.Store(max(n, 0))
			found = true
			continue
		}
		ids = append(ids, m.ID)
	}
	if !found {
		return &ModelMismatchError{Replica: r.Name, Want: model, Serves: ids}
	}
	if old := r.listed.Load(); old == nil || !slices.Equal(*old, ids) {
		r.listed.Store(&ids)
	}
	return nil
}

// ModelMismatchError is a replica that answers /v1/models but does not
// list the model its pool must serve: it is up, serving something else.
type ModelMismatchError struct {
	Replica string
	Want    string
	Serves  []string
}

func (e *ModelMismatchError) Error() string {
	return fmt.Sprintf("model %q not listed by %s/v1/models (it serves %s)", e.Want, e.Replica, quoteList(e.Serves))
}

func quoteList(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}

func (c *Checker) get(ctx context.Context, r *Replica, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health check %s: %w", url, err)
	}
	r.SetAuthorization(req.Header)
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	if into == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(into); err != nil {
		return fmt.Errorf("GET %s: bad JSON: %w", url, err)
	}
	return nil
}

// unwrapURLError drops *url.Error's repetition of method and URL.
func unwrapURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && strings.HasPrefix(err.Error(), "Get ") {
		if inner := u.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// Initial checks every target once and sets its health directly, without
// thresholds, so that serving starts from the truth. It returns when all
// checks are done (each bounded by Timeout).
func (c *Checker) Initial(ctx context.Context) {
	c.round(ctx, func(r *Replica, err error) {
		r.SetInitial(time.Now(), err)
		if err != nil {
			c.logger().Warn("replica unhealthy at start", "replica", r.Name, "reason", err.Error())
		}
	})
}

// CheckNew checks the given replicas once, now, and sets their health
// directly as Initial does: replicas that just joined a pool start from
// the truth instead of "not checked yet" until the next round.
func (c *Checker) CheckNew(ctx context.Context, rs []*Replica) {
	var wg sync.WaitGroup
	for _, t := range c.Targets() {
		if !slices.Contains(rs, t.Replica) {
			continue
		}
		wg.Go(func() {
			err := c.Probe(ctx, t.Replica, t.Model)
			if ctx.Err() != nil {
				return
			}
			t.Replica.SetInitial(time.Now(), err)
		})
	}
	wg.Wait()
}

// Tick runs one round of checks of every target, concurrently, and returns
// when all are recorded. Tests call it instead of waiting for Run.
func (c *Checker) Tick(ctx context.Context) {
	set := c.settings()
	c.round(ctx, func(r *Replica, err error) {
		if r.RecordCheck(time.Now(), err, max(set.Rise, 1), max(set.Fall, 1)) {
			if err != nil {
				c.logger().Warn("replica marked unhealthy", "replica", r.Name, "reason", err.Error())
			} else {
				c.logger().Info("replica healthy again", "replica", r.Name)
			}
		}
	})
}

func (c *Checker) round(ctx context.Context, record func(*Replica, error)) {
	targets := c.Targets()
	// A replica in both pools (unusual, but legal across versions) is
	// checked once per model it must serve; dedupe identical pairs.
	targets = slices.CompactFunc(targets, func(a, b Target) bool { return a == b })
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() {
			err := c.Probe(ctx, t.Replica, t.Model)
			if ctx.Err() != nil {
				return // shutting down: a cancelled check says nothing about the replica
			}
			record(t.Replica, err)
		})
	}
	wg.Wait()
}

// Run checks every Interval until ctx is done.
func (c *Checker) Run(ctx context.Context) {
	interval := c.settings().Interval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Tick(ctx)
			if iv := c.settings().Interval; iv != interval && iv > 0 {
				interval = iv
				t.Reset(iv)
			}
		}
	}
}

func (c *Checker) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

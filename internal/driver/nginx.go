package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/route"
)

// NginxOptions configures an Nginx driver.
type NginxOptions struct {
	// File is the upstream file cutover owns, included by nginx.conf
	// inside http {}. Required.
	File string
	// Render holds the upstream name, keepalive and extra directives.
	Render NginxRender
	// TestCommand checks nginx's configuration with the new file, such as
	// [nginx -t]. Required.
	TestCommand []string
	// ReloadCommand makes nginx load it, such as [nginx -s reload].
	// Required.
	ReloadCommand []string
	// CommandTimeout bounds each command. Zero means 30s.
	CommandTimeout time.Duration
	// Verify asks nginx which pool new requests reach. Its URL is
	// required.
	Verify Verifier
	// RetryAfter is how long Sync waits before trying again a file nginx
	// refused. Zero means 30s.
	RetryAfter time.Duration
	// DriftEvery is how often Sync checks that nginx still serves the
	// table applied: the upstream file on disk is the one cutover wrote,
	// and the verify URL names its live pool and version. A reload or an
	// edit outside cutover, or an undo whose reload failed, is then put
	// right by applying the table again. Zero means 10s; negative, never.
	DriftEvery time.Duration
	// Logger receives one line per change. Nil means slog.Default().
	Logger *slog.Logger
}

// NginxSettle is how long the Nginx driver's verification must keep seeing
// the new file's answers, unless Verify.Settle is set: nginx's master lets
// old and new workers accept side by side for 100 ms after a reload.
const NginxSettle = 250 * time.Millisecond

// Nginx drives nginx through one included upstream file: a change writes
// the file atomically, runs the test command, reloads nginx and verifies
// through nginx that new requests reach the new pool. Any failure puts the
// last good file back (reloading again if nginx had loaded the new one)
// and returns the error.
type Nginx struct {
	opts NginxOptions
	log  *slog.Logger

	mu      sync.Mutex   // serialises Apply and Sync; guards the fields below
	table   *route.Table // the table nginx serves; nil before the first Apply
	good    []byte       // the file content nginx serves
	version string       // good's version ($<upstream>_config)
	refused backoff
	drift   driftClock
}

// NewNginx returns an nginx driver. It touches nothing until Apply.
func NewNginx(o NginxOptions) (*Nginx, error) {
	switch {
	case o.File == "":
		return nil, errors.New("nginx driver: no upstream file")
	case len(o.TestCommand) == 0 || len(o.ReloadCommand) == 0:
		return nil, errors.New("nginx driver: test and reload commands are required")
	case o.Verify.URL == "":
		return nil, errors.New("nginx driver: no verify URL")
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 30 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = defaultRetry
	}
	if o.Verify.Settle == 0 {
		o.Verify.Settle = NginxSettle
	}
	n := &Nginx{opts: o, log: o.Logger, drift: driftClock{every: driftEvery(o.DriftEvery)}}
	if n.log == nil {
		n.log = slog.Default()
	}
	return n, nil
}

// Apply makes nginx serve t; see Driver.
func (n *Nginx) Apply(ctx context.Context, t *route.Table) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.applyLocked(ctx, t, "apply")
}

// Sync rewrites the upstream file when the health of the live pool's
// replicas changed since the last Apply (unhealthy ones are marked down).
// A file nginx refused is tried again after RetryAfter only.
func (n *Nginx) Sync(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.table == nil {
		return nil
	}
	content, _, err := RenderNginx(n.table, n.opts.Render)
	if err == nil && n.drift.due(time.Now()) && !n.refused.skip(string(content), time.Now(), n.opts.RetryAfter) {
		if why := n.drifted(ctx); why != "" {
			n.log.Warn("nginx does not serve the routing table cutover applied; applying it again", "why", why, "pool", n.table.Live.Pool.Name, "file", n.opts.File)
			good := n.good
			n.good = nil // what nginx runs is unknown: write, test, reload, verify
			err := n.applyLocked(ctx, n.table, "drift")
			if err != nil {
				// The next try is the drift check's, after its backoff,
				// not the health sync's at every RetryAfter.
				n.good = good
			}
			n.drift.repaired(err == nil, time.Now())
			return err
		}
	}
	if err != nil || bytes.Equal(content, n.good) || n.refused.skip(string(content), time.Now(), n.opts.RetryAfter) {
		return err
	}
	return n.applyLocked(ctx, n.table, "health")
}

// drifted says how nginx no longer serves the table applied, "" when it
// does or cannot be asked (an Apply would fail and say why).
func (n *Nginx) drifted(ctx context.Context) string {
	if n.good == nil {
		return "" // no file known good: the health sync writes one
	}
	if b, err := os.ReadFile(n.opts.File); err != nil || !bytes.Equal(b, n.good) {
		if err != nil {
			return fmt.Sprintf("the upstream file cannot be read: %v", err)
		}
		return "the upstream file was changed outside cutover"
	}
	got, err := n.opts.Verify.Current(ctx)
	if err != nil {
		return ""
	}
	if got.Pool != n.table.Live.Pool.Name || got.Config != "" && got.Config != n.version {
		return fmt.Sprintf("%s answers %s %s (config %q), not %s (config %q)", n.opts.Verify.URL, PoolHeader, got.Pool, got.Config, n.table.Live.Pool.Name, n.version)
	}
	return ""
}

// Live asks nginx, through the verify URL, which pool it serves.
func (n *Nginx) Live(ctx context.Context) (string, error) {
	a, err := n.opts.Verify.Current(ctx)
	return a.Pool, err
}

func (n *Nginx) applyLocked(ctx context.Context, t *route.Table, why string) error {
	if err := checkNginxPools(t); err != nil {
		return fmt.Errorf("nginx: %w; nothing changed", err)
	}
	content, version, err := RenderNginx(t, n.opts.Render)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	if n.table != nil && bytes.Equal(content, n.good) {
		n.table = t // same upstream, same health: nothing for nginx to do
		return nil
	}
	prev, err := takeSnapshot(n.opts.File)
	if err != nil {
		return fmt.Errorf("nginx: %w; nothing changed", err)
	}
	want := Answer{Pool: t.Live.Pool.Name, Config: version}
	if n.table == nil && prev.exists && bytes.Equal(prev.data, content) {
		// cutover restarted: the file already holds this table; when nginx
		// serves it too, a reload would only cost idle connections.
		if got, err := n.opts.Verify.Current(ctx); err == nil && got == want {
			n.table, n.good, n.version = t, content, version
			n.log.Info("nginx already serves the live pool", "pool", want.Pool, "file", n.opts.File)
			return nil
		}
	}
	var steps timings
	if err := n.change(ctx, content, prev, want, &steps); err != nil {
		n.refused.refused(string(content), time.Now())
		return err
	}
	n.table, n.good, n.version = t, content, version
	n.refused.refused("", time.Time{})
	n.drift.repaired(true, time.Now())
	n.log.Info("nginx serves the new upstream", "pool", want.Pool, "version", version, "why", why, "file", n.opts.File,
		"healthy", t.Live.Pool.HealthyCount(), "replicas", len(t.Live.Pool.Replicas), "steps", steps.String())
	return nil
}

// timings records how long each step of a change took, for the log.
type timings struct {
	names []string
	durs  []time.Duration
	last  time.Time // when the last step ended (set it before the first)
}

// step records that step name, begun when the previous one ended, ended
// now.
func (s *timings) step(name string) {
	now := time.Now()
	s.names, s.durs = append(s.names, name), append(s.durs, now.Sub(s.last))
	s.last = now
}

func (s *timings) String() string {
	parts := make([]string, len(s.names))
	for i := range s.names {
		parts[i] = fmt.Sprintf("%s %s", s.names[i], s.durs[i].Round(time.Millisecond))
	}
	return strings.Join(parts, ", ")
}

// change writes content, tests it, reloads nginx and verifies that new
// requests reach want. On failure it puts prev back.
func (n *Nginx) change(ctx context.Context, content []byte, prev snapshot, want Answer, steps *timings) error {
	o := n.opts
	steps.last = time.Now()
	if err := writeFileAtomic(o.File, content); err != nil {
		return fmt.Errorf("nginx: %w; nothing changed", err)
	}
	steps.step("write")
	if _, err := runCommand(ctx, o.TestCommand, o.CommandTimeout); err != nil {
		return n.undo(ctx, prev, false, fmt.Errorf("nginx refused the new upstream file: test_command %w", err))
	}
	steps.step("test")
	if _, err := runCommand(ctx, o.ReloadCommand, o.CommandTimeout); err != nil {
		return n.undo(ctx, prev, true, fmt.Errorf("nginx: reload_command %w", err))
	}
	steps.step("reload")
	if err := o.Verify.Wait(ctx, want); err != nil {
		return n.undo(ctx, prev, true, fmt.Errorf("nginx reloaded but %w", err))
	}
	steps.step("verify")
	return nil
}

// undo puts the previous file back after cause, reloading nginx when it
// may have loaded the new one, and returns cause with what undo did.
func (n *Nginx) undo(ctx context.Context, prev snapshot, reload bool, cause error) error {
	ctx = context.WithoutCancel(ctx) // a caller that gave up must not leave nginx half-changed
	if err := prev.restore(); err != nil {
		n.log.Error("nginx: putting the previous upstream file back failed", "file", n.opts.File, "error", err)
		return fmt.Errorf("%w; putting the previous file back failed too: %v", cause, err)
	}
	if !reload {
		return fmt.Errorf("%w (previous upstream file restored; nginx was not reloaded)", cause)
	}
	if _, err := runCommand(ctx, n.opts.ReloadCommand, n.opts.CommandTimeout); err != nil {
		n.log.Error("nginx: reloading the previous upstream file failed", "file", n.opts.File, "error", err)
		return fmt.Errorf("%w; previous upstream file restored but reloading it failed: %v", cause, err)
	}
	if n.table != nil {
		if err := n.opts.Verify.Wait(ctx, Answer{Pool: n.table.Live.Pool.Name, Config: n.version}); err != nil {
			n.log.Error("nginx: after restoring the previous upstream file", "error", err)
			return fmt.Errorf("%w; previous upstream file restored and reloaded, but %v", cause, err)
		}
	}
	return fmt.Errorf("%w (previous upstream file restored and reloaded)", cause)
}

var _ Driver = (*Nginx)(nil)

package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/route"
)

// HAProxyOptions configures an HAProxy driver.
type HAProxyOptions struct {
	// Socket is the path of HAProxy's admin socket (stats socket with
	// level admin). Required.
	Socket string
	// SocketTimeout bounds one command. Zero means 5s.
	SocketTimeout time.Duration
	// MapFile is the map use_backend consults, spelled as in haproxy.cfg.
	// cutover rewrites the file too, so that a restart keeps the switch.
	// Required.
	MapFile string
	// MapKey is the key whose value is the live backend. Required.
	MapKey string
	// Backends maps each pool name to its HAProxy backend. Required.
	Backends map[string]string
	// ConfigFile is the haproxy.cfg HAProxy runs, read by NewHAProxy to
	// warn when option http-no-delay is missing. Empty: no check.
	ConfigFile string
	// Verify asks HAProxy which backend new requests reach. Its URL is
	// required.
	Verify Verifier
	// RetryAfter is how long Sync waits before trying again a change that
	// failed. Zero means 30s.
	RetryAfter time.Duration
	// DriftEvery is how often Sync checks that HAProxy still serves the
	// table applied: the map's live backend and every server's
	// maintenance state. A reload or restart (which resets server states
	// to haproxy.cfg's) or a command outside cutover is then put right.
	// Zero means 10s; negative, never.
	DriftEvery time.Duration
	// Logger receives one line per change. Nil means slog.Default().
	Logger *slog.Logger
}

// HAProxy drives HAProxy through its Runtime API, without reloads: both
// pools are backends, a switch is one `set map` of the key use_backend
// reads (atomic for every new request), written to the map file as well,
// then verified through HAProxy; replicas failing health checks are put in
// maintenance (`set server B/S state maint`), and back with `ready`.
type HAProxy struct {
	opts HAProxyOptions
	log  *slog.Logger
	sock *adminSocket

	mu      sync.Mutex   // serialises Apply and Sync; guards the fields below
	table   *route.Table // the table HAProxy serves; nil before the first Apply
	applied string       // signature of table as applied
	refused backoff
	drift   driftClock
}

// NewHAProxy returns an HAProxy driver. It only reads ConfigFile (to warn
// about option http-no-delay); the socket is used from Apply on.
func NewHAProxy(o HAProxyOptions) (*HAProxy, error) {
	switch {
	case o.Socket == "" || o.MapFile == "" || o.MapKey == "":
		return nil, errors.New("haproxy driver: admin socket, map file and map key are required")
	case o.Verify.URL == "":
		return nil, errors.New("haproxy driver: no verify URL")
	}
	if o.SocketTimeout <= 0 {
		o.SocketTimeout = 5 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = defaultRetry
	}
	h := &HAProxy{opts: o, log: o.Logger, sock: &adminSocket{path: o.Socket, timeout: o.SocketTimeout},
		drift: driftClock{every: driftEvery(o.DriftEvery)}}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.checkNoDelay()
	return h, nil
}

// Apply makes HAProxy serve t; see Driver. When the admin socket cannot be
// reached nothing changes and the error says so.
func (h *HAProxy) Apply(ctx context.Context, t *route.Table) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.applyLocked(ctx, t, "apply")
}

// Sync puts replicas in or out of maintenance when their health changed
// since the last Apply. A change that failed is tried again after
// RetryAfter only.
func (h *HAProxy) Sync(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.table == nil {
		return nil
	}
	sig := h.signature(h.table)
	if h.refused.skip(sig, time.Now(), h.opts.RetryAfter) {
		return nil
	}
	if sig == h.applied && h.drift.due(time.Now()) {
		if why := h.drifted(ctx); why != "" {
			h.log.Warn("haproxy does not serve the routing table cutover applied; applying it again", "why", why, "pool", h.table.Live.Pool.Name)
			h.applied = ""
			err := h.applyLocked(ctx, h.table, "drift")
			if err != nil {
				h.applied = sig // the next try is the drift check's, after its backoff
			}
			h.drift.repaired(err == nil, time.Now())
			return err
		}
	}
	if sig == h.applied {
		return nil
	}
	return h.applyLocked(ctx, h.table, "health")
}

// drifted says how HAProxy no longer serves the table applied, "" when it
// does or cannot be asked (an Apply would fail and say why).
func (h *HAProxy) drifted(ctx context.Context) string {
	changes, err := h.plan(ctx, h.table)
	if err != nil {
		return ""
	}
	if len(changes) > 0 {
		c := changes[0]
		state := "ready"
		if !c.maint {
			state = "in maintenance"
		}
		return fmt.Sprintf("server %s/%s is %s (and %d more differ): a reload, restart or command outside cutover", c.backend, c.server, state, len(changes)-1)
	}
	cur, found, err := h.sock.mapValue(ctx, h.opts.MapFile, h.opts.MapKey)
	if want := h.opts.Backends[h.table.Live.Pool.Name]; err == nil && (!found || cur != want) {
		return fmt.Sprintf("map %s sends %s to %q, not %s", h.opts.MapFile, h.opts.MapKey, cur, want)
	}
	return ""
}

// Live asks HAProxy's admin socket which pool the map sends requests to.
func (h *HAProxy) Live(ctx context.Context) (string, error) {
	be, found, err := h.sock.mapValue(ctx, h.opts.MapFile, h.opts.MapKey)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("haproxy map %s has no key %s", h.opts.MapFile, h.opts.MapKey)
	}
	for pool, b := range h.opts.Backends {
		if b == be {
			return pool, nil
		}
	}
	return "", fmt.Errorf("haproxy map %s sends %s to backend %s, which is no pool's", h.opts.MapFile, h.opts.MapKey, be)
}

// signature is what HAProxy must reflect of t: the live backend and each
// replica's health. Equal signatures need no command.
func (h *HAProxy) signature(t *route.Table) string {
	var b strings.Builder
	b.WriteString(h.opts.Backends[t.Live.Pool.Name])
	for _, name := range slices.Sorted(maps.Keys(t.Pools)) {
		fmt.Fprintf(&b, "|%s:", name)
		for _, r := range t.Pools[name].Pool.Replicas {
			fmt.Fprintf(&b, " %s=%t", r.Name, r.Healthy())
		}
	}
	return b.String()
}

func (h *HAProxy) applyLocked(ctx context.Context, t *route.Table, why string) error {
	sig := h.signature(t)
	if h.table != nil && sig == h.applied {
		h.table = t
		return nil
	}
	start := time.Now()
	if err := h.change(ctx, t); err != nil {
		h.refused.refused(sig, time.Now())
		return err
	}
	h.table, h.applied = t, sig
	h.refused.refused("", time.Time{})
	h.drift.repaired(true, time.Now())
	h.log.Info("haproxy serves the routing table", "pool", t.Live.Pool.Name, "backend", h.opts.Backends[t.Live.Pool.Name],
		"why", why, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// stateChange is one server to put in or out of maintenance.
type stateChange struct {
	backend, server string
	maint           bool
}

// change reads HAProxy's servers and map, sets server states, then
// switches the map and verifies. Nothing is changed before every replica
// was found in its backend.
func (h *HAProxy) change(ctx context.Context, t *route.Table) error {
	changes, err := h.plan(ctx, t)
	if err != nil {
		return fmt.Errorf("%w; nothing changed", err)
	}
	o := h.opts
	cur, found, err := h.sock.mapValue(ctx, o.MapFile, o.MapKey)
	if err != nil {
		return fmt.Errorf("%w; nothing changed", err)
	}
	for _, c := range changes {
		if err := h.sock.setState(ctx, c.backend, c.server, c.maint); err != nil {
			return fmt.Errorf("%w; the live backend is unchanged (%s)", err, cur)
		}
		h.log.Info("haproxy server state", "server", c.backend+"/"+c.server, "maint", c.maint)
	}
	want := o.Backends[t.Live.Pool.Name]
	if found && cur == want {
		return h.writeMap(want) // make sure a restart keeps it
	}
	prev, err := takeSnapshot(o.MapFile)
	if err != nil {
		return fmt.Errorf("haproxy: %w; nothing changed", err)
	}
	if err := h.sock.setMap(ctx, o.MapFile, o.MapKey, want, found); err != nil {
		return fmt.Errorf("%w; the live backend is unchanged (%s)", err, cur)
	}
	if err := h.writeMap(want); err != nil {
		return h.undo(ctx, prev, cur, found, err)
	}
	if err := o.Verify.Wait(ctx, Answer{Pool: want}); err != nil {
		return h.undo(ctx, prev, cur, found, fmt.Errorf("haproxy switched the map but %w", err))
	}
	return nil
}

// plan lists the server state changes t needs: every replica must be a
// server of its pool's backend (matched by host and port); healthy ones
// ready, unhealthy ones and servers that are no replica in maintenance.
func (h *HAProxy) plan(ctx context.Context, t *route.Table) ([]stateChange, error) {
	var changes []stateChange
	for _, name := range slices.Sorted(maps.Keys(t.Pools)) {
		be, ok := h.opts.Backends[name]
		if !ok {
			return nil, fmt.Errorf("haproxy: no backend configured for pool %s", name)
		}
		servers, err := h.sock.servers(ctx, be)
		if err != nil {
			return nil, err
		}
		used := make([]bool, len(servers))
		for _, r := range t.Pools[name].Pool.Replicas {
			host, port, err := hostPort(r)
			if err != nil {
				return nil, fmt.Errorf("haproxy: %w", err)
			}
			i := slices.IndexFunc(servers, func(s server) bool { return s.matches(host, port) })
			if i < 0 {
				return nil, fmt.Errorf("haproxy: replica %s (pool %s) is no server of backend %s (servers: %s): add `server NAME %s` to backend %s in haproxy.cfg and reload HAProxy",
					r.Name, name, be, serverList(servers), net.JoinHostPort(host, port), be)
			}
			used[i] = true
			if s := servers[i]; s.maint() == r.Healthy() || (r.Healthy() && s.admin&adminForcedDrain != 0) {
				changes = append(changes, stateChange{backend: be, server: s.name, maint: !r.Healthy()})
			}
		}
		for i, s := range servers {
			if !used[i] && !s.maint() {
				changes = append(changes, stateChange{backend: be, server: s.name, maint: true})
			}
		}
	}
	return changes, nil
}

func serverList(ss []server) string {
	if len(ss) == 0 {
		return "none"
	}
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.String()
	}
	return strings.Join(names, ", ")
}

// writeMap writes the map file HAProxy reads at start.
func (h *HAProxy) writeMap(backend string) error {
	data := fmt.Sprintf("# Written by cutover; do not edit: `cutover promote` and `rollback` change it.\n%s %s\n", h.opts.MapKey, backend)
	if err := writeFileAtomic(h.opts.MapFile, []byte(data)); err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	return nil
}

// undo puts the map entry and the map file back after cause.
func (h *HAProxy) undo(ctx context.Context, prev snapshot, cur string, found bool, cause error) error {
	ctx = context.WithoutCancel(ctx)
	var errs []string
	var err error
	if found {
		err = h.sock.setMap(ctx, h.opts.MapFile, h.opts.MapKey, cur, true)
	} else {
		err = h.sock.delMap(ctx, h.opts.MapFile, h.opts.MapKey)
	}
	if err != nil {
		errs = append(errs, "putting the map entry back: "+err.Error())
	}
	if err := prev.restore(); err != nil {
		errs = append(errs, "putting the map file back: "+err.Error())
	}
	if len(errs) > 0 {
		h.log.Error("haproxy: undoing a failed switch failed", "errors", errs)
		return fmt.Errorf("%w; undoing it failed: %s", cause, strings.Join(errs, "; "))
	}
	return fmt.Errorf("%w (map entry and file put back to %s)", cause, cur)
}

var _ Driver = (*HAProxy)(nil)

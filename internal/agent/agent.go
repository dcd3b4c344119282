package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// State is a replica's life-cycle state.
type State string

// Replica states.
const (
	StateStarting State = "starting" // process up, /health not yet 200
	StateRunning  State = "running"  // /health answered 200, awake
	StateSleeping State = "sleeping" // put to sleep through the agent
	StateStopping State = "stopping" // SIGTERM sent, waiting for the exit
	StateExited   State = "exited"   // gone; its GPUs and port are free
)

// holdsGPUs reports whether a replica in state s owns its GPUs and port.
func (s State) holdsGPUs() bool { return s != StateExited }

// Replica is one supervised model server, as the API reports it and the
// state file records it.
type Replica struct {
	ID      string    `json:"id"`
	Model   string    `json:"model"`
	GPUs    []int     `json:"gpus"`
	Port    int       `json:"port"`
	URL     string    `json:"url"` // http://127.0.0.1:PORT, where the agent reaches it
	PID     int       `json:"pid"`
	State   State     `json:"state"`
	Started time.Time `json:"started"`
	// SleepLevel is the level of the current sleep (0 when awake).
	SleepLevel int `json:"sleep_level,omitempty"`
	// ExitCode is set once exited; -1 when unknown (the replica exited
	// while the agent was down, or was killed by a signal).
	ExitCode *int `json:"exit_code,omitempty"`
	// ExitReason says why it exited, e.g. "stopped" or "exited on its own".
	ExitReason string `json:"exit_reason,omitempty"`
	// LastLog holds the last lines of its log once exited.
	LastLog []string `json:"last_log,omitempty"`
	Log     string   `json:"log"` // the log file's path
	// Adopted is true when this agent process did not start it (it was
	// re-adopted from the state file after a restart).
	Adopted bool `json:"adopted,omitempty"`
	// Key is the caller's key for it (StartRequest.Key), "" without one.
	Key string `json:"key,omitempty"`

	procStart uint64        // start time in clock ticks, guards against PID reuse
	done      chan struct{} // closed when the process is gone
}

// stateFile is the JSON document the agent keeps on disk.
type stateFile struct {
	Replicas []*replicaRecord `json:"replicas"`
}

type replicaRecord struct {
	Replica
	ProcStart uint64 `json:"proc_start"`
}

// Agent supervises the replicas of one server. Create it with New.
type Agent struct {
	cfg  *Config
	log  *slog.Logger
	http *http.Client

	mu       sync.Mutex // guards replicas and the state file
	replicas []*Replica // in start order; exited ones stay until forgotten
}

// lastLogLines is how many log lines an exited replica reports.
const lastLogLines = 20

// New loads the state file, re-adopts the replicas still alive and marks
// the others exited, freeing their GPUs.
func New(cfg *Config, log *slog.Logger) (*Agent, error) {
	if err := os.MkdirAll(cfg.LogDir, 0o750); err != nil {
		return nil, fmt.Errorf("log_dir %s: %w", cfg.LogDir, err)
	}
	a := &Agent{cfg: cfg, log: log, http: &http.Client{Timeout: 10 * time.Minute}}
	b, err := os.ReadFile(cfg.StateFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("state file %s: %w", cfg.StateFile, err)
	default:
		var sf stateFile
		if err := json.Unmarshal(b, &sf); err != nil {
			return nil, fmt.Errorf("state file %s: %w", cfg.StateFile, err)
		}
		for _, rec := range sf.Replicas {
			r := rec.Replica
			r.procStart = rec.ProcStart
			r.done = make(chan struct{})
			if !r.State.holdsGPUs() {
				close(r.done)
				a.replicas = append(a.replicas, &r)
				continue
			}
			if alive(r.PID, r.procStart) {
				r.Adopted = true
				a.replicas = append(a.replicas, &r)
				log.Info("agent: re-adopted replica", "id", r.ID, "pid", r.PID, "gpus", r.GPUs, "state", r.State)
				go a.watchAdopted(&r)
				go a.rotateLog(&r, logCheckEvery)
				switch r.State {
				case StateStarting:
					go a.awaitHealthy(&r)
				case StateStopping: // the stop was cut by the agent's restart: finish it
					go func(id string) { _, _ = a.Stop(context.Background(), id) }(r.ID)
				}
				continue
			}
			a.markExitedLocked(&r, -1, "exited while the agent was down")
			close(r.done)
			a.replicas = append(a.replicas, &r)
			log.Warn("agent: replica gone while the agent was down; its GPUs are free", "id", r.ID, "pid", r.PID, "gpus", r.GPUs)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.saveLocked(); err != nil {
		return nil, err
	}
	return a, nil
}

// saveLocked writes the state file atomically.
func (a *Agent) saveLocked() error {
	sf := stateFile{Replicas: []*replicaRecord{}}
	for _, r := range a.replicas {
		sf.Replicas = append(sf.Replicas, &replicaRecord{Replica: *r, ProcStart: r.procStart})
	}
	b, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp := a.cfg.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("state file %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, a.cfg.StateFile); err != nil {
		return fmt.Errorf("state file %s: %w", a.cfg.StateFile, err)
	}
	return nil
}

// saveLockedLogged writes the state file, logging a failure: the replicas keep running.
func (a *Agent) saveLockedLogged() {
	if err := a.saveLocked(); err != nil {
		a.log.Error("agent: cannot write the state file", "err", err)
	}
}

// GPUs returns the ledger: GPU index → replica id ("" when free).
func (a *Agent) GPUs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ledgerLocked()
}

func (a *Agent) ledgerLocked() []string {
	l := make([]string, a.cfg.gpuCount)
	for _, r := range a.replicas {
		if !r.State.holdsGPUs() {
			continue
		}
		for _, g := range r.GPUs {
			if g >= 0 && g < len(l) {
				l[g] = r.ID
			}
		}
	}
	return l
}

// Replicas returns a snapshot of every replica.
func (a *Agent) Replicas() []Replica {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Replica, len(a.replicas))
	for i, r := range a.replicas {
		out[i] = r.snapshot()
	}
	return out
}

func (r *Replica) snapshot() Replica {
	c := *r
	c.GPUs = slices.Clone(r.GPUs)
	c.LastLog = slices.Clone(r.LastLog)
	c.done = nil
	return c
}

func (a *Agent) find(id string) *Replica {
	for _, r := range a.replicas {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// Get returns one replica.
func (a *Agent) Get(id string) (Replica, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.find(id)
	if r == nil {
		return Replica{}, false
	}
	return r.snapshot(), true
}

// ErrNoCapacity is returned when not enough GPUs or ports are free.
var ErrNoCapacity = errors.New("not enough free GPUs")

// StartRequest asks for a replica.
type StartRequest struct {
	Model string `json:"model"`
	GPUs  int    `json:"gpus,omitempty"` // how many; 0 means 1 (sent as absent; the API refuses "gpus":0)
	// Key, when set, makes the request idempotent: when a replica started
	// with this key is known (in any state, exited too), Start returns it
	// instead of starting another. A controller that restarted while the
	// agent was starting a replica asks again with the same key.
	Key string `json:"key,omitempty"`
}

// Start launches a replica of req.Model on free GPUs, in its own process
// group, with CUDA_VISIBLE_DEVICES set to them.
func (a *Agent) Start(req StartRequest) (Replica, error) {
	if req.Model == "" {
		return Replica{}, errors.New("model is required")
	}
	// {model} becomes an argument of the command: no options, no
	// control characters.
	if err := pool.CheckModelID(req.Model); err != nil {
		return Replica{}, err
	}
	n := req.GPUs
	if n == 0 {
		n = 1
	}
	if n < 0 {
		return Replica{}, fmt.Errorf("gpus %d: must be positive", n)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if req.Key != "" {
		for _, r := range a.replicas {
			if r.Key == req.Key {
				return r.snapshot(), nil
			}
		}
	}
	var free []int
	for g, owner := range a.ledgerLocked() {
		if owner == "" {
			free = append(free, g)
		}
	}
	if len(free) < n {
		return Replica{}, fmt.Errorf("%w: %d asked, %d of %d free", ErrNoCapacity, n, len(free), a.cfg.gpuCount)
	}
	gpus := free[:n]
	port, err := a.freePortLocked()
	if err != nil {
		return Replica{}, err
	}
	id := newID()
	logPath := filepath.Join(a.cfg.LogDir, "replica-"+id+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return Replica{}, fmt.Errorf("replica log %s: %w", logPath, err)
	}
	defer logf.Close() // the child holds its own descriptor

	argv := make([]string, len(a.cfg.Command))
	for i, s := range a.cfg.Command {
		argv[i] = expand(s, req.Model, port, gpus)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	for k, v := range a.cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+expand(v, req.Model, port, gpus))
	}
	cmd.Env = append(cmd.Env, "CUDA_VISIBLE_DEVICES="+expand("{gpus}", req.Model, port, gpus))
	// Its own process group: a stop signals the whole tree, and the agent's
	// own death (even kill -9) does not take the replica with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Output files, not pipes: the replica keeps writing while the agent restarts.
	if err := cmd.Start(); err != nil {
		msg := fmt.Sprintf("start %q: %v", argv[0], err)
		fmt.Fprintln(logf, "cutover agent:", msg)
		return Replica{}, fmt.Errorf("replica of %s: %s (GPUs %v stay free)", req.Model, msg, gpus)
	}
	r := &Replica{
		ID: id, Model: req.Model, GPUs: slices.Clone(gpus), Port: port,
		URL: "http://127.0.0.1:" + strconv.Itoa(port), PID: cmd.Process.Pid,
		State: StateStarting, Started: time.Now().UTC(), Log: logPath, Key: req.Key,
		procStart: procStartTime(cmd.Process.Pid), done: make(chan struct{}),
	}
	a.replicas = append(a.replicas, r)
	if err := a.saveLocked(); err != nil {
		// Unrecorded, a restarted agent would give its GPUs to another
		// replica and never know this process: stop it, and say so.
		a.replicas = a.replicas[:len(a.replicas)-1]
		_ = syscall.Kill(-r.PID, syscall.SIGKILL)
		go func() { _ = cmd.Wait() }()
		a.log.Error("agent: replica stopped at once: the state file cannot record it", "model", req.Model, "pid", r.PID, "err", err)
		return Replica{}, fmt.Errorf("replica of %s: stopped at once, since the agent cannot record it (GPUs %v stay free): %w", req.Model, gpus, err)
	}
	a.log.Info("agent: replica started", "id", id, "model", req.Model, "pid", r.PID, "gpus", gpus, "port", port)
	go func() {
		err := cmd.Wait()
		code := -1
		var ee *exec.ExitError
		switch {
		case err == nil:
			code = 0
		case errors.As(err, &ee):
			code = ee.ExitCode() // -1 when killed by a signal
		}
		a.exited(r, code)
	}()
	go a.awaitHealthy(r)
	go a.rotateLog(r, logCheckEvery)
	return r.snapshot(), nil
}

// freePortLocked picks a port of the range no replica holds and nothing
// listens on.
func (a *Agent) freePortLocked() (int, error) {
	used := map[int]bool{}
	for _, r := range a.replicas {
		if r.State.holdsGPUs() {
			used[r.Port] = true
		}
	}
	for p := a.cfg.portFirst; p <= a.cfg.portEnd; p++ {
		if used[p] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, fmt.Errorf("%w: no free port in %s", ErrNoCapacity, a.cfg.Ports)
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// exited records a replica's end and frees its GPUs.
func (a *Agent) exited(r *Replica, code int) {
	a.mu.Lock()
	reason := "exited on its own"
	if r.State == StateStopping {
		reason = "stopped"
	}
	a.markExitedLocked(r, code, reason)
	a.saveLockedLogged()
	a.mu.Unlock()
	close(r.done)
	a.log.Info("agent: replica exited", "id", r.ID, "pid", r.PID, "code", code, "reason", reason, "gpus_freed", r.GPUs)
}

func (a *Agent) markExitedLocked(r *Replica, code int, reason string) {
	r.State = StateExited
	r.ExitCode = &code
	r.ExitReason = reason
	r.SleepLevel = 0
	r.LastLog = tail(r.Log, lastLogLines)
}

// tail returns the last n lines of a file.
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 64<<10 {
		_, _ = f.Seek(-64<<10, 2)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// watchAdopted polls a re-adopted replica, which is not the agent's child,
// until it is gone.
func (a *Agent) watchAdopted(r *Replica) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for range t.C {
		if !alive(r.PID, r.procStart) {
			a.exited(r, -1)
			return
		}
	}
}

// awaitHealthy polls /health until 200, then marks the replica running.
func (a *Agent) awaitHealthy(r *Replica) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/health", nil)
		resp, err := a.http.Do(req)
		cancel()
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		a.mu.Lock()
		if r.State == StateStarting {
			r.State = StateRunning
			a.saveLockedLogged()
			a.log.Info("agent: replica ready", "id", r.ID, "url", r.URL)
		}
		a.mu.Unlock()
		return
	}
}

// ErrNotFound is returned for an unknown replica id.
var ErrNotFound = errors.New("no such replica")

// Stop sends SIGTERM to the replica's process group, SIGKILL after the
// grace, and waits until it is gone (or ctx ends).
func (a *Agent) Stop(ctx context.Context, id string) (Replica, error) {
	a.mu.Lock()
	r := a.find(id)
	if r == nil {
		a.mu.Unlock()
		return Replica{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if r.State == StateExited {
		s := r.snapshot()
		a.mu.Unlock()
		return s, nil
	}
	r.State = StateStopping
	a.saveLockedLogged()
	pid, done := r.PID, r.done
	a.mu.Unlock()

	_ = syscall.Kill(-pid, syscall.SIGTERM)
	grace := time.NewTimer(a.cfg.StopGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		a.log.Warn("agent: replica ignored SIGTERM, killing its process group", "id", id, "pid", pid, "grace", a.cfg.StopGrace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-ctx.Done():
			return Replica{}, fmt.Errorf("stop %s: %w", id, ctx.Err())
		}
	case <-ctx.Done():
		return Replica{}, fmt.Errorf("stop %s: %w", id, ctx.Err())
	}
	// Whatever else is left in its group goes too.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	rep, _ := a.Get(id)
	return rep, nil
}

// Forget removes an exited replica from the list.
func (a *Agent) Forget(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, r := range a.replicas {
		if r.ID != id {
			continue
		}
		if r.State != StateExited {
			return fmt.Errorf("replica %s is %s: stop it first", id, r.State)
		}
		a.replicas = slices.Delete(a.replicas, i, i+1)
		a.saveLockedLogged()
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotFound, id)
}

// ErrExited is returned by AwaitReady for a replica that exited first.
var ErrExited = errors.New("replica exited before it was ready")

// AwaitReady waits until the replica is running (its /health answered 200)
// and returns it. A replica that exits first is an ErrExited error with its
// exit code and last log lines; ctx bounds the wait.
func (a *Agent) AwaitReady(ctx context.Context, id string) (Replica, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		r, ok := a.Get(id)
		switch {
		case !ok:
			return Replica{}, fmt.Errorf("%w: %s", ErrNotFound, id)
		case r.State == StateExited:
			code := -1
			if r.ExitCode != nil {
				code = *r.ExitCode
			}
			return r, fmt.Errorf("%w: replica %s of %s exited with code %d (%s); last log lines:\n%s",
				ErrExited, id, r.Model, code, r.ExitReason, strings.Join(r.LastLog, "\n"))
		case r.State != StateStarting:
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("replica %s not ready: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

package shadow

// The helper process. On a gateway that shares its cores with other work
// (the live replicas, a load balancer), a copy sent from the gateway's own
// process costs about what the live request did — its writes and reads,
// the goroutine and thread wake-ups — at the same CPU priority as live
// traffic, and the live answers' tail latency grows with it. With
// Options.Helper the copies to plain-HTTP replicas are sent by a helper
// process (cutover shadow-helper) that runs at idle CPU priority
// (SCHED_IDLE on Linux): the kernel gives it a core only when nothing else
// wants one, so a copy waits for live traffic, never the other way round.
//
// The gateway's side (runWithHelper) takes the queue in batches: it waits
// batchDelay after the first copy so that one write to the helper carries
// several, and the helper answers in batches the same way. What stays in
// the gateway per copy is choosing the replica, encoding it and pairing
// its result with the live answer. Copies waiting in the helper are
// bounded (Queue + Concurrency); more are dropped and counted, like a
// full queue. If the helper exits, the copies it had are dropped
// (counted), this process sends copies itself, and the helper is started
// again after a back-off.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// batchDelay is how long the gateway and its helper wait after the first
// copy (result) of a batch before writing the batch.
const batchDelay = 5 * time.Millisecond

// helperConfig is the first message the helper reads.
type helperConfig struct {
	// Concurrency bounds the copies the helper sends at once.
	Concurrency int
	// Timeout bounds one copy, stream included.
	Timeout time.Duration
}

// helperResult is the helper's answer to one copy.
type helperResult struct {
	ID     uint64
	Result Result
}

// helperCopy is a copy in the helper's hands.
type helperCopy struct {
	t             *target
	started       uint64 // t.begin's id
	mr            *proxy.Mirrored
	r             *pool.Replica
	deterministic bool
}

// helperConn is the gateway's end of one running helper.
type helperConn struct {
	fw frameWriter

	// stopped is signalled when the target of copies handed over is
	// stopped or replaced; watched is the last target watched so
	// (feedHelper's goroutine only).
	stopped chan struct{}
	watched *target

	mu      sync.Mutex // guards the fields below
	next    uint64
	pending map[uint64]*helperCopy
}

// runWithHelper works the queue through the helper process until ctx is
// done, and from this process while the helper is down.
func (m *Mirror) runWithHelper(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		began := time.Now()
		err := m.runHelper(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second // it ran a while: a new failure
		}
		m.log.Warn("shadow helper stopped; the gateway sends the copies itself until it is restarted",
			"helper", m.opts.Helper[0], "err", err, "retry_in", backoff)
		wctx, cancel := context.WithTimeout(ctx, backoff)
		m.work(wctx)
		cancel()
		backoff = min(2*backoff, time.Minute)
	}
}

// runHelper starts the helper and feeds it the queue until it fails or
// ctx is done; the copies it had are then dropped.
func (m *Mirror) runHelper(ctx context.Context) error {
	argv := m.opts.Helper
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("shadow helper %s: %w", argv[0], err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("shadow helper %s: %w", argv[0], err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("shadow helper %s: %w", argv[0], err)
	}
	w := bufio.NewWriterSize(stdin, 64<<10)
	h := &helperConn{fw: frameWriter{w: w}, stopped: make(chan struct{}, 1), pending: map[uint64]*helperCopy{}}
	var rerr error
	read := make(chan struct{}) // closed when the results end, rerr set
	go func() {
		defer close(read)
		rerr = m.readResults(h, stdout)
	}()
	err = h.fw.config(helperConfig{Concurrency: m.opts.Concurrency, Timeout: m.opts.Timeout})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = m.feedHelper(ctx, h, read)
	}
	_ = stdin.Close()
	_ = cmd.Process.Kill()
	<-read
	if err == nil || errors.Is(err, errHelperGone) {
		err = rerr
	}
	werr := cmd.Wait()
	h.mu.Lock()
	for id, c := range h.pending {
		c.t.end(c.started)
		c.r.Release()
		m.dropped.Add(1)
		delete(h.pending, id)
	}
	h.mu.Unlock()
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("shadow helper %s exited: %v", argv[0], werr)
	}
	return err
}

// errHelperGone reports that the helper's results ended (see runHelper
// for why).
var errHelperGone = errors.New("shadow helper: results ended")

// feedHelper writes the queue's copies to the helper in batches until ctx
// is done or the helper fails (read is closed when its results end). While copies keep
// coming it wakes on a timer every batchDelay rather than on the queue, so
// that a live request's Submit never has to wake it; once a tick finds the
// queue empty it waits on the queue again.
func (m *Mirror) feedHelper(ctx context.Context, h *helperConn, read <-chan struct{}) error {
	wait := time.NewTimer(0)
	<-wait.C
	busy := false
	for {
		var mr *proxy.Mirrored
		if !busy {
			select {
			case <-ctx.Done():
				return nil
			case <-read:
				return errHelperGone
			case <-h.stopped:
				if err := m.cancelStopped(h); err != nil {
					return err
				}
				continue
			case mr = <-m.queue:
			}
		}
		wait.Reset(batchDelay)
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil
			case <-read:
				return errHelperGone
			case <-h.stopped:
				if err := m.cancelStopped(h); err != nil {
					return err
				}
			case <-wait.C:
				waiting = false
			}
		}
		if mr == nil {
			select {
			case mr = <-m.queue:
			default:
				busy = false
				continue
			}
		}
		busy = true
		for n := len(m.queue); ; n-- { // mr and those queued meanwhile
			if err := m.toHelper(ctx, h, mr); err != nil {
				return err
			}
			if n == 0 {
				break
			}
			mr = <-m.queue
		}
		if err := h.fw.w.Flush(); err != nil {
			return fmt.Errorf("shadow helper: %w", err)
		}
	}
}

// cancelStopped tells the helper to cancel the copies whose target was
// stopped or replaced (Stop, SetTarget) and forgets them, so that they do
// not hold the candidate until Timeout; their results, should any still
// come, pair with nothing. They count as sent, as on the gateway's own
// workers.
func (m *Mirror) cancelStopped(h *helperConn) error {
	var ids []uint64
	h.mu.Lock()
	for id, c := range h.pending {
		if c.t.ctx.Err() != nil {
			ids = append(ids, id)
			delete(h.pending, id)
			c.t.end(c.started)
			c.r.Release()
			m.sent.Add(1)
		}
	}
	h.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		if err := h.fw.cancel(id); err != nil {
			return fmt.Errorf("shadow helper: %w", err)
		}
	}
	if err := h.fw.w.Flush(); err != nil {
		return fmt.Errorf("shadow helper: %w", err)
	}
	return nil
}

// toHelper hands one live exchange's copy to the helper (plain-HTTP
// replicas) or to this process (https replicas), or drops it when either
// is full.
func (m *Mirror) toHelper(ctx context.Context, h *helperConn, mr *proxy.Mirrored) error {
	t, body, deterministic, ok := m.prepare(mr)
	if !ok {
		return nil
	}
	r, res := m.pick(t)
	switch {
	case r == nil:
		m.sent.Add(1)
		m.compare(t, mr, deterministic, res)
		return nil
	case r.URL.Scheme != "http":
		// The helper has not the gateway's TLS settings: this process
		// sends it.
		select {
		case m.inline <- struct{}{}:
		default:
			m.dropped.Add(1)
			return nil
		}
		m.sent.Add(1)
		go func() {
			defer func() { <-m.inline }()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(t.ctx, cancel)() // stopped: the copy ends
			r.Acquire()
			defer r.Release()
			started := t.begin()
			res := exchange(ctx, m.sender(), copyOf(r, mr.Path, body, deterministic))
			t.end(started)
			m.compare(t, mr, deterministic, res)
		}()
		return nil
	}
	h.mu.Lock()
	if len(h.pending) >= m.opts.Queue+m.opts.Concurrency {
		h.mu.Unlock()
		m.dropped.Add(1)
		return nil
	}
	h.next++
	id := h.next
	h.pending[id] = &helperCopy{t: t, started: t.begin(), mr: mr, r: r, deterministic: deterministic}
	h.mu.Unlock()
	if t != h.watched {
		h.watched = t
		context.AfterFunc(t.ctx, func() {
			select {
			case h.stopped <- struct{}{}:
			default: // one signal waiting covers every target stopped
			}
		})
	}
	r.Acquire()
	c := copyOf(r, mr.Path, body, deterministic)
	c.ID = id
	if err := h.fw.copy(c); err != nil {
		return fmt.Errorf("shadow helper: %w", err)
	}
	return nil
}

// readResults pairs the helper's results with their live answers until
// the helper's output ends.
func (m *Mirror) readResults(h *helperConn, out io.Reader) error {
	fr := frameReader{r: bufio.NewReaderSize(out, 64<<10)}
	for {
		res, err := fr.result()
		if err != nil {
			return fmt.Errorf("shadow helper: reading results: %w", err)
		}
		h.mu.Lock()
		c := h.pending[res.ID]
		delete(h.pending, res.ID)
		h.mu.Unlock()
		if c == nil {
			continue
		}
		c.t.end(c.started)
		c.r.Release()
		m.sent.Add(1) // counted once answered: one the helper took down with it is dropped
		m.compare(c.t, c.mr, c.deterministic, res.Result)
	}
}

// ServeHelper is the helper process (cutover shadow-helper): it reads
// copies from in, sends each to its replica, and writes each result to
// out, until in ends. A cancel from the gateway (validation stopped) ends
// that copy at once, and its result is not written. Lowering its own CPU
// priority is the caller's (IdlePriority).
func ServeHelper(ctx context.Context, in io.Reader, out io.Writer) error {
	fr := frameReader{r: bufio.NewReaderSize(in, 64<<10)}
	cfg, err := fr.config()
	if err != nil {
		return fmt.Errorf("shadow helper: reading its settings: %w", err)
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	s := sender{upstream: &proxy.Upstream{}, http: &http.Client{}, timeout: cfg.Timeout}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan helperResult, cfg.Concurrency)
	wrote := make(chan error, 1)
	go func() { wrote <- writeResults(ctx, results, out) }()
	// Frames are read while every slot is busy, so that a cancel reaches
	// the copies holding them; the gateway bounds the copies it hands
	// over (Queue + Concurrency).
	frames := make(chan helperFrame)
	go readFrames(ctx, &fr, frames)
	var (
		wg       sync.WaitGroup
		slots    = make(chan struct{}, cfg.Concurrency)
		mu       sync.Mutex                        // guards inFlight
		inFlight = map[uint64]context.CancelFunc{} // by copy ID, until its result is out
	)
	for err == nil {
		var f helperFrame
		select {
		case f = <-frames:
			err = f.err
		case err = <-wrote: // the gateway's end broke
		case <-ctx.Done():
		}
		if err == nil {
			err = ctx.Err() // stopping: no more copies
		}
		if err != nil {
			break
		}
		if f.copy == nil {
			mu.Lock()
			if stop := inFlight[f.cancel]; stop != nil {
				stop()
			}
			mu.Unlock()
			continue
		}
		c := f.copy
		cctx, stop := context.WithCancel(ctx)
		mu.Lock()
		inFlight[c.ID] = stop
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(inFlight, c.ID)
				mu.Unlock()
				stop()
			}()
			select {
			case slots <- struct{}{}:
			case <-cctx.Done():
				return // cancelled before it went out
			}
			defer func() { <-slots }()
			res := exchange(cctx, s, c)
			if cctx.Err() != nil {
				return // cancelled: the gateway forgot it
			}
			select {
			case results <- helperResult{ID: c.ID, Result: res}:
			case <-ctx.Done():
			}
		})
	}
	cancel() // the gateway is gone: copies in flight have no one to tell
	wg.Wait()
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil // the gateway closed its end, or this process is stopping
	}
	return fmt.Errorf("shadow helper: %w", err)
}

// helperFrame is one frame from the gateway: a copy, or (copy nil) the
// ID of a copy to cancel; err ends the frames.
type helperFrame struct {
	copy   *copyRequest
	cancel uint64
	err    error
}

// readFrames reads the gateway's frames into frames until one fails or
// ctx is done.
func readFrames(ctx context.Context, fr *frameReader, frames chan<- helperFrame) {
	for {
		var f helperFrame
		f.copy, f.cancel, f.err = fr.next()
		select {
		case frames <- f:
		case <-ctx.Done():
			return
		}
		if f.err != nil {
			return
		}
	}
}

// writeResults writes results to out in batches (see batchDelay) until
// ctx is done.
func writeResults(ctx context.Context, results <-chan helperResult, out io.Writer) error {
	fw := frameWriter{w: bufio.NewWriterSize(out, 16<<10)}
	wait := time.NewTimer(0)
	<-wait.C
	for {
		var res helperResult
		select {
		case <-ctx.Done():
			return nil
		case res = <-results:
		}
		wait.Reset(batchDelay)
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
		}
		for n := len(results); ; n-- {
			if err := fw.result(&res); err != nil {
				return err
			}
			if n == 0 {
				break
			}
			res = <-results
		}
		if err := fw.w.Flush(); err != nil {
			return err
		}
	}
}

// Package shadow mirrors a sample of live requests to the candidate pool in
// the background and compares each pair of answers. The client's answer
// comes from the live pool only and never waits for the shadow: the queue
// and concurrency are bounded, copies that do not fit are dropped and
// counted, and each copy has its own timeout. With Options.Helper the
// copies go out from a helper process at idle CPU priority (helper.go).
package shadow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/internal/answer"
	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// Options configures a Mirror.
type Options struct {
	// Percent of live requests mirrored, 0..100.
	Percent float64
	// MaxBodyBytes: larger request bodies are not mirrored (counted).
	MaxBodyBytes int
	// Queue is how many copies may wait; more are dropped. Zero means 256.
	Queue int
	// Concurrency is how many copies run at once. Zero means 16.
	Concurrency int
	// Timeout bounds one copy, stream included. Zero means 2m.
	Timeout time.Duration
	// HTTP sends the copies to replicas that Upstream does not serve. Nil
	// means a default client.
	HTTP *http.Client
	// Upstream sends the copies to plain-HTTP replicas, on the same kind
	// of kept-alive connections as live traffic. Nil means HTTP for all.
	Upstream *proxy.Upstream
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Helper, when set, is the command line of a helper process (cutover
	// shadow-helper) that sends the copies to plain-HTTP replicas at idle
	// CPU priority, so that their work never takes a core from live
	// traffic (see helper.go); Upstream, HTTP and Concurrency then apply
	// to copies to https replicas and to the times the helper is down. Nil:
	// this process sends every copy.
	Helper []string
	// Resolve, when set, returns the pool of that name as the routing
	// table holds it now; each copy goes to one of its replicas, with
	// their key, so that replicas a reload rebuilt with a new key (a
	// reloaded api_key_file) get copies with it. Nil, or a nil answer: the
	// pool given to SetTarget.
	Resolve func(name string) *pool.Pool
}

// Result is what the candidate answered to one copy.
type Result struct {
	Status      int
	TTFT        time.Duration
	Duration    time.Duration
	Tokens      int
	StreamError bool
	// Err is a transport failure, "" when there was an answer.
	Err  string
	Text string
	// Truncated reports an answer longer than what is kept for comparing
	// texts: it was read and counted whole, but its text is not compared.
	Truncated bool
}

// Failed reports an error for the gates: 5xx, transport, in-stream error.
func (r Result) Failed() bool { return r.Err != "" || r.Status >= 500 || r.StreamError }

// Pair is a live answer and its shadow, compared.
type Pair struct {
	Path string
	// Deterministic reports temperature 0 or a seed: the texts must match.
	Deterministic bool
	Live          proxy.Observation
	LiveText      string
	Shadow        Result
	// StatusMatch compares status classes (2xx vs 5xx...).
	StatusMatch bool
	// Comparable reports that both texts are whole: the live answer was
	// captured completely and parsed, and neither side was cut short.
	Comparable bool
	// TextMatch is meaningful when Deterministic and both answered 2xx.
	TextMatch bool
}

// Mismatch reports a deterministic, comparable pair whose texts differ.
func (p Pair) Mismatch() bool {
	return p.Judged() && !p.TextMatch
}

// Judged reports a pair whose texts must match: deterministic, both
// answered 2xx, and comparable.
func (p Pair) Judged() bool {
	return p.Deterministic && p.Comparable && p.Live.Status/100 == 2 && p.Shadow.Status/100 == 2
}

// Stats counts mirror outcomes since start.
type Stats struct {
	Sent, Dropped, Oversize, Failed, Mismatched uint64
}

type target struct {
	// ctx ends when the target is replaced or stopped: the copies still
	// waiting on its candidate are cancelled then.
	ctx       context.Context
	cancel    context.CancelFunc
	live      string
	candidate *pool.Pool
	modelJSON []byte // candidate.Model as a JSON string
	sink      func(Pair)
	picker    pool.Picker

	mu      sync.Mutex // guards the fields below
	nextID  uint64
	started map[uint64]time.Time // copies sent and not answered yet, by begin's id
}

// begin records a copy sent to the candidate now; end(id) when it is
// answered, failed or cancelled.
func (t *target) begin() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started == nil {
		t.started = map[uint64]time.Time{}
	}
	t.nextID++
	t.started[t.nextID] = time.Now()
	return t.nextID
}

func (t *target) end(id uint64) {
	t.mu.Lock()
	delete(t.started, id)
	t.mu.Unlock()
}

// Mirror is a proxy.Mirror that sends copies to a candidate pool while a
// target is set.
type Mirror struct {
	opts   Options
	log    *slog.Logger
	target atomic.Pointer[target]
	queue  chan *proxy.Mirrored
	// inline bounds the copies sent from this process while a helper
	// runs (to https replicas): one slot per copy in flight.
	inline chan struct{}

	sent, dropped, oversize, failed, mismatched atomic.Uint64
}

var _ proxy.Mirror = (*Mirror)(nil)

// New returns a mirror with no target: it mirrors nothing until SetTarget.
func New(opts Options) *Mirror {
	if opts.Queue <= 0 {
		opts.Queue = 256
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{}
	}
	m := &Mirror{opts: opts, log: opts.Logger, queue: make(chan *proxy.Mirrored, opts.Queue),
		inline: make(chan struct{}, opts.Concurrency)}
	if m.log == nil {
		m.log = slog.Default()
	}
	return m
}

// Run works the queue until ctx is done: through the helper process
// when Options.Helper is set (and this process's workers while it is
// down), with this process's workers otherwise.
func (m *Mirror) Run(ctx context.Context) {
	if len(m.opts.Helper) > 0 {
		m.runWithHelper(ctx)
		return
	}
	m.work(ctx)
}

// work sends the queue's copies from this process, Concurrency at a time,
// until ctx is done.
func (m *Mirror) work(ctx context.Context) {
	var wg sync.WaitGroup
	for range m.opts.Concurrency {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case mr := <-m.queue:
					m.handle(ctx, mr)
				}
			}
		})
	}
	wg.Wait()
}

// SetTarget starts mirroring requests to live into candidate; every pair
// goes to sink (from worker goroutines).
func (m *Mirror) SetTarget(live string, candidate *pool.Pool, sink func(Pair)) {
	mj, _ := json.Marshal(candidate.Model)
	ctx, cancel := context.WithCancel(context.Background())
	m.swapTarget(&target{ctx: ctx, cancel: cancel, live: live, candidate: candidate, modelJSON: mj, sink: sink, picker: &pool.RoundRobin{}})
}

// Stop stops mirroring; copies in the queue are discarded and those in
// flight cancelled.
func (m *Mirror) Stop() { m.swapTarget(nil) }

// swapTarget makes t the target and cancels the copies of the previous one.
func (m *Mirror) swapTarget(t *target) {
	if old := m.target.Swap(t); old != nil {
		old.cancel()
	}
}

// Unanswered returns how long each copy to the current target's candidate
// has waited so far for its answer (copies sent and not yet answered,
// failed or cancelled; through the helper, from when it was handed
// over). Nil when no target is set.
func (m *Mirror) Unanswered() []time.Duration {
	t := m.target.Load()
	if t == nil {
		return nil
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	ages := make([]time.Duration, 0, len(t.started))
	for _, at := range t.started {
		ages = append(ages, now.Sub(at))
	}
	return ages
}

// Active reports whether a target is set.
func (m *Mirror) Active() bool { return m.target.Load() != nil }

// Stats returns the counters.
func (m *Mirror) Stats() Stats {
	return Stats{Sent: m.sent.Load(), Dropped: m.dropped.Load(), Oversize: m.oversize.Load(), Failed: m.failed.Load(), Mismatched: m.mismatched.Load()}
}

// Want implements proxy.Mirror.
func (m *Mirror) Want(poolName string, bodyLen int) bool {
	t := m.target.Load()
	if t == nil || poolName != t.live {
		return false
	}
	if m.opts.Percent < 100 && rand.Float64()*100 >= m.opts.Percent {
		return false
	}
	if m.opts.MaxBodyBytes > 0 && bodyLen > m.opts.MaxBodyBytes {
		m.oversize.Add(1)
		return false
	}
	return true
}

// Submit implements proxy.Mirror: it never blocks.
func (m *Mirror) Submit(mr *proxy.Mirrored) {
	select {
	case m.queue <- mr:
	default:
		m.dropped.Add(1)
	}
}

func (m *Mirror) handle(ctx context.Context, mr *proxy.Mirrored) {
	t, body, deterministic, ok := m.prepare(mr)
	if !ok {
		return
	}
	m.sent.Add(1)
	res := m.send(ctx, t, mr.Path, body, deterministic)
	m.compare(t, mr, deterministic, res)
}

// prepare returns the target a live exchange is mirrored to and the
// copy's body (the candidate's model in it); ok is false when it is not
// mirrored (no target now, another live pool, not a JSON object).
func (m *Mirror) prepare(mr *proxy.Mirrored) (t *target, body []byte, deterministic, ok bool) {
	t = m.target.Load()
	if t == nil || mr.Live.Pool != t.live {
		return nil, nil, false, false
	}
	body, deterministic, err := proxy.ForModel(mr.Body, t.modelJSON)
	if err != nil {
		return nil, nil, false, false // not a JSON object: nothing to compare
	}
	return t, body, deterministic, true
}

// compare counts the candidate's answer to a copy, pairs it with the live
// answer and hands the pair to the target's sink, wherever the copy was
// sent from.
func (m *Mirror) compare(t *target, mr *proxy.Mirrored, deterministic bool, res Result) {
	if t.ctx.Err() != nil {
		return // stopped meanwhile: no pair for a window that is over
	}
	if res.Failed() {
		m.failed.Add(1)
	}
	p := Pair{Path: mr.Path, Deterministic: deterministic, Live: mr.Live, Shadow: res}
	p.StatusMatch = mr.Live.Status/100 == res.Status/100
	// Texts are compared only for deterministic requests: parse the live
	// answer only then.
	if deterministic && !mr.Truncated && !res.Truncated && mr.Live.Error == "" && res.Err == "" && !res.StreamError {
		if la, err := answer.Parse(mr.Response, mr.Live.Stream); err == nil && (la.Done || !mr.Live.Stream) && la.Error == "" {
			p.LiveText, p.Comparable = la.Text, true
		}
	}
	p.TextMatch = p.LiveText == res.Text
	if p.Mismatch() {
		m.mismatched.Add(1)
	}
	t.sink(p)
}

// contentTypeJSON is the header of every copy (read-only).
var contentTypeJSON = http.Header{"Content-Type": {"application/json"}}

// Buffers for the candidate's answers: a chunk to read into and the
// answer kept whole for parsing.
var (
	chunkPool  = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
	answerPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// maxAnswer bounds the candidate's answer kept for parsing.
const maxAnswer = 4 << 20

func (m *Mirror) send(ctx context.Context, t *target, path string, body []byte, deterministic bool) Result {
	r, res := m.pick(t)
	if r == nil {
		return res
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.ctx, cancel)() // stopped: copies in flight end
	r.Acquire()
	defer r.Release()
	defer t.end(t.begin())
	return exchange(ctx, m.sender(), copyOf(r, path, body, deterministic))
}

// pick returns the candidate replica a copy goes to, or nil and the
// failed Result when the pool has no healthy one.
func (m *Mirror) pick(t *target) (*pool.Replica, Result) {
	cand := t.candidate
	if m.opts.Resolve != nil {
		if p := m.opts.Resolve(cand.Name); p != nil {
			cand = p
		}
	}
	r := t.picker.Pick(cand.Replicas, nil)
	if r == nil {
		return nil, Result{Err: fmt.Sprintf("no healthy replica in candidate pool %s", t.candidate.Name)}
	}
	return r, Result{}
}

// sender is what sends a copy: Upstream for plain-HTTP replicas (nil: HTTP
// for all), HTTP otherwise, each copy within Timeout.
type sender struct {
	upstream *proxy.Upstream
	http     *http.Client
	timeout  time.Duration
}

func (m *Mirror) sender() sender {
	return sender{upstream: m.opts.Upstream, http: m.opts.HTTP, timeout: m.opts.Timeout}
}

// copyRequest is one copy as sent to one replica; the helper process gets
// it in this form (frames.go).
type copyRequest struct {
	// ID names the copy between the gateway and its helper.
	ID uint64
	// URL is the replica's base URL (scheme, host, path prefix).
	URL string
	// Path is the request path, appended to URL's.
	Path string
	// Authorization is the replica's header value, "" for none.
	Authorization string
	Body          []byte
	// Deterministic: the answer's text is kept and parsed for comparing.
	Deterministic bool
}

// copyOf is the copy of a request to path with body for replica r.
func copyOf(r *pool.Replica, path string, body []byte, deterministic bool) *copyRequest {
	return &copyRequest{URL: r.Name, Path: path, Authorization: r.Authorization, Body: body, Deterministic: deterministic}
}

// exchange sends c and reads the answer whole, within s.timeout.
func exchange(ctx context.Context, s sender, c *copyRequest) Result {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	u, err := url.Parse(c.URL)
	if err != nil {
		return Result{Err: fmt.Sprintf("replica url %q: %v", c.URL, err)}
	}
	start := time.Now()
	var resp *http.Response
	if s.upstream != nil && u.Scheme == "http" {
		hdr := contentTypeJSON
		if c.Authorization != "" {
			hdr = http.Header{"Content-Type": contentTypeJSON["Content-Type"], "Authorization": {c.Authorization}}
		}
		resp, err = s.upstream.Forward(ctx, u.Host, http.MethodPost, u.EscapedPath()+c.Path, hdr, "", c.Body)
	} else {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, c.URL+c.Path, bytes.NewReader(c.Body))
		if err != nil {
			return Result{Err: err.Error()}
		}
		req.Header.Set("Content-Type", "application/json")
		if c.Authorization != "" {
			req.Header["Authorization"] = []string{c.Authorization}
		}
		resp, err = s.http.Do(req)
	}
	if err != nil {
		return Result{Err: err.Error(), Duration: time.Since(start)}
	}
	defer resp.Body.Close()
	deterministic := c.Deterministic
	res := Result{Status: resp.StatusCode}
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	// Every answer is counted whole as it arrives, as the live side does;
	// a deterministic one is also kept, up to maxAnswer, to compare texts.
	scan := proxy.NewAnswerScanner(stream)
	buf := answerPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer answerPool.Put(buf)
	cp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(cp)
	chunk := *cp
	seen := false
	for {
		n, rerr := resp.Body.Read(chunk)
		if n > 0 {
			if !seen {
				res.TTFT, seen = time.Since(start), true
			}
			_, _ = scan.Write(chunk[:n])
			if deterministic {
				if buf.Len()+n <= maxAnswer {
					buf.Write(chunk[:n])
				} else {
					res.Truncated = true
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			res.Err = rerr.Error()
			break
		}
	}
	res.Duration = time.Since(start)
	var done bool
	res.Tokens, res.StreamError, done = scan.Result()
	if deterministic && !res.Truncated {
		// The text is compared: parse it whole.
		if a, err := answer.Parse(buf.Bytes(), stream); err == nil {
			res.Text, res.Tokens = a.Text, a.Tokens
		}
	}
	if stream && !done && res.Err == "" {
		res.Err = "stream ended without [DONE]"
	}
	if buf.Cap() > 1<<20 {
		*buf = bytes.Buffer{} // do not keep a huge buffer in the pool
	}
	return res
}

// Package shadow mirrors a sample of live requests to the candidate pool in
// the background and compares each pair of answers. The client's answer
// comes from the live pool only and never waits for the shadow: the queue
// and concurrency are bounded, copies that do not fit are dropped and
// counted, and each copy has its own timeout.
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
}

// Mirror is a proxy.Mirror that sends copies to a candidate pool while a
// target is set.
type Mirror struct {
	opts   Options
	log    *slog.Logger
	target atomic.Pointer[target]
	queue  chan *proxy.Mirrored
	wg     sync.WaitGroup

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
	m := &Mirror{opts: opts, log: opts.Logger, queue: make(chan *proxy.Mirrored, opts.Queue)}
	if m.log == nil {
		m.log = slog.Default()
	}
	return m
}

// Run works the queue until ctx is done.
func (m *Mirror) Run(ctx context.Context) {
	for range m.opts.Concurrency {
		m.wg.Go(func() {
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
	m.wg.Wait()
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
	t := m.target.Load()
	if t == nil || mr.Live.Pool != t.live {
		return
	}
	body, deterministic, err := proxy.ForModel(mr.Body, t.modelJSON)
	if err != nil {
		return // not a JSON object: nothing to compare
	}
	m.sent.Add(1)
	res := m.send(ctx, t, mr.Path, body, deterministic)
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
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	defer context.AfterFunc(t.ctx, cancel)()
	cand := t.candidate
	if m.opts.Resolve != nil {
		if p := m.opts.Resolve(cand.Name); p != nil {
			cand = p
		}
	}
	r := t.picker.Pick(cand.Replicas, nil)
	if r == nil {
		return Result{Err: fmt.Sprintf("no healthy replica in candidate pool %s", t.candidate.Name)}
	}
	r.Acquire()
	defer r.Release()
	start := time.Now()
	var resp *http.Response
	var err error
	if u := m.opts.Upstream; u != nil && r.URL.Scheme == "http" {
		hdr := contentTypeJSON
		if r.Authorization != "" {
			hdr = http.Header{"Content-Type": contentTypeJSON["Content-Type"], "Authorization": {r.Authorization}}
		}
		resp, err = u.Forward(ctx, r.URL.Host, http.MethodPost, r.URL.EscapedPath()+path, hdr, "", body)
	} else {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, r.Name+path, bytes.NewReader(body))
		if err != nil {
			return Result{Err: err.Error()}
		}
		req.Header.Set("Content-Type", "application/json")
		r.SetAuthorization(req.Header)
		resp, err = m.opts.HTTP.Do(req)
	}
	if err != nil {
		return Result{Err: err.Error(), Duration: time.Since(start)}
	}
	defer resp.Body.Close()
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

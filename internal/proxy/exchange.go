package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// exchange is one client request and its (at most two) upstream attempts.
type exchange struct {
	h    *Handler
	w    http.ResponseWriter
	r    *http.Request
	e    *route.Entry
	body []byte

	obs     Observation // obs.Replica is the replica of the current attempt
	capture *capture    // the live answer, kept for shadow comparison; nil if not mirrored
	ctx     context.Context
	resp    *http.Response // the current attempt's answer, until relayed or dropped
	// cancel stops the upstream request: how an answer that went idle is
	// cut when its body is not Upstream's own (whose deadlines do it).
	cancel context.CancelCauseFunc
	wdl    writeDeadline // the client write deadline
}

// exchangePool recycles the per-request state.
var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

// Relay buffers: a stream holds its buffer for as long as it lasts (minutes,
// thousands at once), and its chunks are small; a known-length answer is
// copied in bigger reads.
var (
	streamBufPool = sync.Pool{New: func() any { b := make([]byte, 4<<10); return &b }}
	bodyBufPool   = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
)

// run forwards the request (see Handler.forward). It reports whether the
// client connection must be aborted.
func (ex *exchange) run() (abort bool) {
	// Through a Transport other than Upstream's own connections (the
	// configured http.Transport, or Upstream's https fallback) the only
	// way to stop a read that went idle is to cancel the request's
	// context; this path is the fallback, so it always keeps the means.
	ctx, cancel := context.WithCancelCause(ex.r.Context())
	ex.cancel = cancel
	defer cancel(nil)
	if ex.h.opts.Timeout > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeoutCause(ctx, ex.h.opts.Timeout, context.DeadlineExceeded)
		defer c2()
	}
	ex.ctx = ctx
	return ex.h.forward(ex.e.Pool, &ex.obs, ex, ex.body)
}

func (ex *exchange) try(rep *pool.Replica) (int, error) {
	resp, err := ex.send(ex.ctx, rep)
	if err != nil {
		return 0, err
	}
	ex.resp = resp
	return resp.StatusCode, nil
}

func (ex *exchange) drop() {
	if ex.resp != nil {
		_ = ex.resp.Body.Close()
		ex.resp = nil
	}
}

func (ex *exchange) relay() bool   { return ex.relayResponse(ex.ctx, ex.resp) }
func (ex *exchange) expired() bool { return ex.ctx.Err() != nil }

// failed says which of the request context's deadlines ended the attempt
// (idle and total are causes of ex.ctx; a timeout error otherwise is the
// response-header timeout) and whether Upstream saw bytes of an answer.
func (ex *exchange) failed(err error) attemptError {
	return ex.attemptError(err, false)
}

func (ex *exchange) attemptError(err error, answered bool) attemptError {
	a := attemptError{err: err, answered: answered || wasAnswered(err), clientGone: ex.r.Context().Err() != nil}
	switch c := context.Cause(ex.ctx); {
	case errors.Is(c, errIdle):
		a.expired = expiredIdle
	case errors.Is(c, context.DeadlineExceeded):
		a.expired = expiredTotal
	case isTimeout(err):
		a.expired = expiredHeader
	}
	return a
}

func (ex *exchange) fail(e *apiError) bool {
	ex.obs.Status, ex.obs.Error = e.status, e.code
	if e.status == statusClientClosed {
		return false
	}
	if r := ex.h.shownReplica(ex.obs.Replica); r != nil {
		ex.w.Header()["X-Cutover-Replica"] = r.NameHeader
	}
	e.write(ex.w)
	return false
}

// send forwards the request to rep: on the Upstream fast path without
// copying the header, else as an http.Request through the RoundTripper.
func (ex *exchange) send(ctx context.Context, rep *pool.Replica) (*http.Response, error) {
	if ex.h.up != nil && rep.URL.Scheme == "http" {
		r := ex.r
		target := r.URL.RequestURI()
		if p := rep.URL.EscapedPath(); p != "" {
			target = p + target
		}
		xff, _, _ := net.SplitHostPort(r.RemoteAddr)
		return ex.h.up.forward(ctx, rep.URL.Host, r.Method, target, r.Header, xff, ex.h.credentials(rep), ex.body)
	}
	return ex.h.rt.RoundTrip(ex.outRequest(ctx, rep))
}

func (ex *exchange) outRequest(ctx context.Context, rep *pool.Replica) *http.Request {
	r := ex.r
	u := *rep.URL
	u.Path = rep.URL.Path + r.URL.Path
	if r.URL.RawPath != "" {
		u.RawPath = rep.URL.EscapedPath() + r.URL.RawPath
	}
	u.RawQuery = r.URL.RawQuery
	hdr := r.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	removeHopHeaders(hdr)
	for k := range hdr {
		if clientForwarded([]byte(k)) {
			delete(hdr, k)
		}
	}
	ex.h.credentials(rep).apply(hdr)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		hdr["X-Forwarded-For"] = []string{ip}
	}
	hdr[hopsHeader] = []string{strconv.Itoa(hopsOf(r.Header) + 1)}
	if _, ok := hdr["User-Agent"]; !ok {
		hdr["User-Agent"] = nil // do not let the transport add Go's own
	}
	out := (&http.Request{
		Method:     r.Method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Host:       u.Host,
	}).WithContext(ctx)
	// The client's Expect was met on the gateway's side (the body is
	// here); the replica is asked only for large bodies, as below.
	delete(hdr, "Expect")
	if len(ex.body) > 0 {
		body := ex.body
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		if len(body) > expectContinueAbove {
			hdr["Expect"] = expectContinue
		}
	} else {
		out.Body = http.NoBody
	}
	return out
}

// relay copies the replica's answer to the client. Streams (SSE or unknown
// length) are flushed after every read, so each chunk the replica flushes
// reaches the client at once; nothing is buffered beyond one read.
// It reports whether the upstream broke after the headers went out.
func (ex *exchange) relayResponse(ctx context.Context, resp *http.Response) (abort bool) {
	defer resp.Body.Close()
	o := &ex.obs
	o.TTFB = time.Since(o.Start)
	h := ex.w.Header()
	removeHopHeaders(resp.Header)
	for k, v := range resp.Header {
		h[k] = v
	}
	if v := resp.Header["Location"]; len(v) > 0 && ex.obs.Replica != nil {
		var out []string // as the loop does: each value on its own
		for i, l := range v {
			if rel, ok := replicaLocation([]byte(l), ex.obs.Replica.Name); ok {
				if out == nil {
					out = slices.Clone(v)
				}
				out[i] = string(rel)
			}
		}
		if out != nil {
			h["Location"] = out
		}
	}
	h["X-Cutover-Pool"] = ex.e.PoolHeader
	if r := ex.h.shownReplica(ex.obs.Replica); r != nil {
		h["X-Cutover-Replica"] = r.NameHeader
	}
	streaming := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if streaming {
		h["X-Accel-Buffering"] = noValue
	}
	o.Stream, o.Status = streaming, resp.StatusCode
	sc := newBodyScanner()
	defer func() { o.Tokens, o.TokensFromUsage = sc.tokens(); o.StreamError = sc.streamError }()
	rc := http.NewResponseController(ex.w)
	ex.armWrite(rc)
	ex.w.WriteHeader(resp.StatusCode)
	if streaming {
		_ = rc.Flush()
	}
	// The idle timeout guards streams: a known-length answer whose headers
	// arrived (within the response-header timeout) is already written.
	var idle *time.Timer
	if d := ex.h.opts.IdleTimeout; d > 0 && streaming {
		if ub, ok := resp.Body.(*upBody); ok {
			ub.idle = d
		} else {
			cancel := ex.cancel
			idle = time.AfterFunc(d, func() { cancel(errIdle) })
			defer idle.Stop()
		}
	}
	bufs := &bodyBufPool
	if streaming {
		bufs = &streamBufPool
	}
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if idle != nil {
			idle.Reset(ex.h.opts.IdleTimeout)
		}
		if n > 0 {
			if o.Bytes == 0 {
				o.TTFT = time.Since(o.Start)
			}
			ex.armWrite(rc)
			if _, werr := ex.w.Write(buf[:n]); werr != nil {
				o.Error = clientGoneCode(werr) // closing resp.Body (deferred) stops the upstream
				return false
			}
			o.Bytes += int64(n)
			if streaming {
				if err := rc.Flush(); err != nil {
					o.Error = clientGoneCode(err)
					return false
				}
			}
			sc.scan(buf[:n], streaming)
			if o.trace != nil {
				o.trace.scan.scan(buf[:n])
			}
			if ex.capture != nil {
				ex.capture.add(buf[:n])
			}
		}
		if rerr == io.EOF && ctx.Err() == nil {
			return false
		}
		if rerr != nil {
			if rerr == io.EOF {
				// The request was cancelled (idle, timeout) and the
				// transport reported the closed body as its end: the
				// answer was cut, not complete.
				rerr = context.Cause(ctx)
			}
			if ex.r.Context().Err() != nil {
				o.Error = "client_closed"
				return false
			}
			a := ex.attemptError(rerr, true)
			a.afterHead = true
			if streaming && isTimeout(rerr) && ctx.Err() == nil {
				a.expired = expiredIdle // upBody's idle deadline
			}
			o.Error = classify(a).answer.code
			ex.h.log.Warn("upstream broke mid-response", "pool", ex.e.Pool.Name, "replica", ex.obs.Replica.Name, "error", rerr.Error())
			return true
		}
	}
}

var noValue = []string{"no"}

package proxy

import (
	"bufio"
	"context"

	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Upstream is an HTTP/1.1 client for plain-HTTP replicas, built for the
// proxy's one pattern: a request goes out on a kept-alive connection and
// its answer is read back on the same goroutine. http.Transport hands each
// request between three goroutines (caller, writeLoop, readLoop); with
// small LLM requests at high rates those handoffs cost more than the proxy
// work itself (see docs/benchmarks.md for the before/after). Replicas
// reached over https use Fallback.
//
// It implements http.RoundTripper by handing requests to Fallback, so
// that a Handler holds one Transport for every replica; plain-HTTP
// requests go through Forward (and the Server's loop). A body Forward
// returns must be read to EOF and closed for its connection to be reused;
// closing it early closes the connection. Cancelling the request's
// context unblocks a pending read or write at once.
type Upstream struct {
	// DialTimeout bounds a new connection. Zero means 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request is written. Zero means none.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout closes connections idle for longer. Zero means 90s.
	IdleTimeout time.Duration
	// MaxIdlePerHost bounds the idle connections kept per replica. Zero
	// means 1024.
	MaxIdlePerHost int
	// Fallback serves other schemes (https). Nil means a default
	// http.Transport.
	Fallback http.RoundTripper

	mu    sync.Mutex            // guards idle and sweep
	idle  map[string]*idleConns // per host
	sweep *time.Timer           // closes expired idle connections; nil when none are idle
}

// idleConns are a host's idle connections, oldest first. The map holds a
// pointer, so that taking and putting back one (twice per request) change
// the list in place, without hashing the host again to store it.
type idleConns struct{ list []*upConn }

var _ http.RoundTripper = (*Upstream)(nil)

type upConn struct {
	c         net.Conn
	cr        countingReader
	br        *bufio.Reader
	bw        *bufio.Writer
	host      string
	idleSince time.Time
	// deadline reports that the raw loop may have left a read deadline
	// on c; Forward clears it before use.
	deadline bool
	// wrote is when the current request was written whole (zero before).
	wrote time.Time
	peek  peeker // checks it before each reuse
	// out is the connection loop's request, built and not yet sent (see
	// flush); nil between requests.
	out *[]byte
	// rdl is the read deadline arm set last, while it is in force (zero
	// once another one is set): a watch deadline close enough to the one
	// wanted is kept (see keepWatch). armed is when arm set it: flush
	// sends the request right after.
	rdl, armed time.Time
	probing    bool // TCP keep-alive probes are on (see probe)
}

// setReadDeadline sets the connection's read deadline, for anything but
// arm's waits.
func (pc *upConn) setReadDeadline(t time.Time) {
	_ = pc.c.SetReadDeadline(t)
	pc.rdl, pc.armed = time.Time{}, time.Time{}
}

// staleWindow is how soon after a request was written a failure with no
// byte of an answer still counts as the replica having closed the kept-
// alive connection before it saw the request (it answers such a race at
// once). Later, the replica may have worked on the request: it is not
// resent on the same replica.
const staleWindow = 100 * time.Millisecond

// closedBeforeAnswer reports a failure on a reused connection that a
// fresh one to the same replica may cure: no byte of an answer came, and
// the request was not written whole or failed right after.
func (pc *upConn) closedBeforeAnswer() bool {
	return pc.cr.n == 0 && (pc.wrote.IsZero() || time.Since(pc.wrote) < staleWindow)
}

// countingReader counts bytes read from the connection, so that a failure
// can tell "the replica never answered" (safe to resend) from "it answered
// part of a response".
type countingReader struct {
	r  net.Conn
	sk sock // raw reads, when r is plain TCP
	// inTurn: a stream's turn of the poller has put its own reader in r
	// (see pump); sk's read would wait for the lock the turn holds.
	inTurn bool
	n      int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.sk.ok() && !c.inTurn {
		n, err = c.sk.read(c.r, p)
	} else {
		n, err = c.r.Read(p)
	}
	c.n += int64(n)
	return n, err
}

// aLongTimeAgo is a deadline in the past: setting it unblocks I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip implements http.RoundTripper for what the proxy does not send
// itself: every request goes to Fallback. The proxy reaches plain-HTTP
// replicas through Forward and the Server's loop, never through here.
func (u *Upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	fb := u.Fallback
	if fb == nil {
		fb = http.DefaultTransport
	}
	return fb.RoundTrip(req)
}

// Forward sends one request to the replica at host without building an
// http.Request: target is the escaped path and query, hdr the client's
// header (read-only: hop-by-hop headers, those named by Connection and a
// client-sent X-Forwarded-For are skipped while writing), xff the client's
// address for X-Forwarded-For ("" for none). It is the proxy's hot path.
func (u *Upstream) Forward(ctx context.Context, host, method, target string, hdr http.Header, xff string, body []byte) (*http.Response, error) {
	return u.forward(ctx, host, method, target, hdr, xff, credentials{}, body)
}

// forward is Forward with the replica's credentials applied (see
// credentials).
func (u *Upstream) forward(ctx context.Context, host, method, target string, hdr http.Header, xff string, cred credentials, body []byte) (*http.Response, error) {
	req := requestFor(method)
	for attempt := 0; ; attempt++ {
		pc, reused, err := u.get(ctx, host, attempt > 0)
		if err != nil {
			return nil, err
		}
		resp, err := u.roundTrip(ctx, pc, req, func(bw *bufio.Writer) error {
			return writeForward(bw, host, method, target, hdr, xff, cred, body)
		})
		if err == nil {
			return resp, nil
		}
		if reused && attempt == 0 && pc.closedBeforeAnswer() && ctx.Err() == nil && !isTimeout(err) {
			// A kept-alive connection the replica had closed; its idle
			// siblings are likely closed too: resend on a new one.
			u.dropIdle(host)
			continue
		}
		return nil, err
	}
}

// shared read-only requests for http.ReadResponse, which only looks at
// the method.
var methodRequests = map[string]*http.Request{}

func init() {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		methodRequests[m] = &http.Request{Method: m}
	}
}

func requestFor(method string) *http.Request {
	if r, ok := methodRequests[method]; ok {
		return r
	}
	return &http.Request{Method: method}
}

// roundTrip writes a request with write and reads its answer's head.
func (u *Upstream) roundTrip(ctx context.Context, pc *upConn, req *http.Request, write func(*bufio.Writer) error) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = pc.c.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if pc.cr.n > 0 {
			err = &answeredError{err} // the replica did answer: never resent
		}
		return nil, err
	}
	if pc.deadline {
		pc.setReadDeadline(time.Time{})
		pc.deadline = false
	}
	pc.wrote = time.Time{}
	// A replica that refuses a request may answer and close with the body
	// unread, which breaks the write: read its answer all the same.
	werr := write(pc.writer())
	if werr != nil && (ctx.Err() != nil || !mayHaveAnswered(werr)) {
		return fail(werr)
	}
	if werr == nil {
		pc.wrote = time.Now()
	}
	if d := u.ResponseHeaderTimeout; d > 0 {
		pc.setReadDeadline(time.Now().Add(d))
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			if werr != nil && pc.cr.n == 0 {
				err = werr // no answer came: the write's error says why
			}
			return fail(err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if u.ResponseHeaderTimeout > 0 {
		pc.setReadDeadline(time.Time{})
		if ctx.Err() != nil { // the cancel hook's deadline must win
			pc.setReadDeadline(aLongTimeAgo)
		}
	}
	if resp.Body != http.NoBody && len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked" {
		resp.Body = &chunkedBody{br: pc.br} // hands out a chunk's part as it comes
	}
	resp.Body = &upBody{rc: resp.Body, u: u, pc: pc, ctx: ctx, stop: stop, reuse: !resp.Close && werr == nil}
	return resp, nil
}

// get returns a live idle connection to host (unless fresh), or dials
// one. Idle connections the replica closed meanwhile (vLLM's server drops
// them after a few seconds) are noticed and discarded here, before a
// request is written on them.
func (u *Upstream) get(ctx context.Context, host string, fresh bool) (*upConn, bool, error) {
	pc, reused, err := u.take(ctx, host, fresh, true, time.Now())
	if err == nil {
		// Forward's callers (the net/http serving path, copies) do not
		// watch their waits: probes from the start, on a connection the
		// loop dialled too.
		pc.probe()
	}
	return pc, reused, err
}

// take is get; without peek, a reused connection is not looked at here:
// the caller must write its request with sendChecked, which looks first.
// now is the time to judge idle connections' age by.
func (u *Upstream) take(ctx context.Context, host string, fresh, peek bool, now time.Time) (*upConn, bool, error) {
	idleTimeout := u.idleTimeout()
	for !fresh {
		u.mu.Lock()
		ic := u.idle[host]
		if ic == nil || len(ic.list) == 0 {
			u.mu.Unlock()
			break
		}
		last := len(ic.list) - 1
		pc := ic.list[last]
		ic.list[last] = nil
		ic.list = ic.list[:last]
		u.mu.Unlock()
		// Peek (one non-blocking syscall) before every reuse, however
		// young: a replica that closed the connection, or sent bytes no
		// request asked for (after a HEAD answer, say), must not have
		// them read as the next client's answer.
		if now.Sub(pc.idleSince) < idleTimeout && (!peek || pc.peekAlive()) {
			pc.cr.n = 0
			return pc, true, nil
		}
		_ = pc.c.Close()
	}
	timeout := u.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	// Without TCP keep-alive probes: four system calls fewer per dial,
	// on the first request's path. An idle pooled connection is looked
	// at before each reuse and closed at IdleTimeout, before probes could
	// tell; a wait that grows long turns them on (see upConn.probe).
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	pc := &upConn{c: c, host: host}
	pc.cr.r = c
	pc.cr.sk.init(c)
	// Small buffers: a connection is held by a stream for its whole life,
	// and larger writes (big request bodies) bypass the buffer.
	pc.br = bufio.NewReaderSize(&pc.cr, 4<<10)
	return pc, false, nil
}

// probe turns TCP keep-alive probes on for the connection, once: a
// replica host that vanished mid-wait (no FIN, no reset) is found gone.
func (pc *upConn) probe() {
	if !pc.probing {
		pc.probing = true
		keepAliveOn(pc.c)
	}
}

// peekAlive checks a pooled connection with its peeker: a read deadline
// left from its last answer may have passed, and an expired deadline fails
// the peek before it looks, so it is cleared first (every user sets its
// own).
func (pc *upConn) peekAlive() bool {
	pc.setReadDeadline(time.Time{})
	return pc.peek.alive(pc.c)
}

// dropIdleSince takes host's connections idle since at or before since
// out of the pool and closes them, off the caller's path: the replica
// closed one idle since then (a replica closes kept-alive connections
// idle for its keep-alive timeout, uvicorn's 5 s), so those idle longer
// are closed too. A burst after a pause then dials at once instead of
// looking at (and closing) every dead connection first: up to one per
// request of the last burst.
func (u *Upstream) dropIdleSince(host string, since time.Time) {
	u.mu.Lock()
	ic := u.idle[host]
	var dead []*upConn
	if ic != nil {
		list := ic.list // oldest first
		k := 0
		for k < len(list) && !list[k].idleSince.After(since) {
			k++
		}
		dead = append(dead, list[:k]...)
		n := copy(list, list[k:])
		clear(list[n:])
		ic.list = list[:n]
	}
	u.mu.Unlock()
	if len(dead) == 0 {
		return
	}
	go func() { // bounded: it closes what it took, and ends
		for _, pc := range dead {
			_ = pc.c.Close()
		}
	}()
}

// dropIdle closes every idle connection to host.
func (u *Upstream) dropIdle(host string) {
	u.mu.Lock()
	ic := u.idle[host]
	delete(u.idle, host)
	u.mu.Unlock()
	if ic != nil {
		for _, pc := range ic.list {
			_ = pc.c.Close()
		}
	}
}

func (u *Upstream) idleTimeout() time.Duration {
	if u.IdleTimeout > 0 {
		return u.IdleTimeout
	}
	return 90 * time.Second
}

// put returns a connection whose last answer was read to the end (at
// now).
func (u *Upstream) put(pc *upConn, now time.Time) {
	max := u.MaxIdlePerHost
	if max <= 0 {
		max = 1024
	}
	pc.idleSince = now
	u.mu.Lock()
	if u.idle == nil {
		u.idle = map[string]*idleConns{}
	}
	ic := u.idle[pc.host]
	if ic == nil {
		ic = &idleConns{}
		u.idle[pc.host] = ic
	}
	if len(ic.list) < max {
		ic.list = append(ic.list, pc)
		if u.sweep == nil {
			u.sweep = time.AfterFunc(u.idleTimeout(), u.sweepIdle)
		}
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	_ = pc.c.Close()
}

// sweepIdle closes the connections idle for longer than IdleTimeout. get
// only looks at the newest one of a host (the list is a stack), so after a
// burst the older ones would otherwise stay open, long after the replica
// closed its end. It runs again while any connection is idle.
func (u *Upstream) sweepIdle() {
	timeout := u.idleTimeout()
	now := time.Now()
	var expired []*upConn
	u.mu.Lock()
	if u.sweep == nil { // CloseIdleConnections came first
		u.mu.Unlock()
		return
	}
	next := timeout
	for host, ic := range u.idle {
		list := ic.list
		k := 0
		for k < len(list) && now.Sub(list[k].idleSince) >= timeout {
			k++
		}
		expired = append(expired, list[:k]...)
		n := copy(list, list[k:])
		clear(list[n:])
		if list = list[:n]; n == 0 {
			delete(u.idle, host)
			continue
		}
		ic.list = list
		next = min(next, timeout-now.Sub(list[0].idleSince))
	}
	if len(u.idle) > 0 {
		u.sweep.Reset(next)
	} else {
		u.sweep = nil
	}
	u.mu.Unlock()
	for _, pc := range expired {
		_ = pc.c.Close()
	}
}

// CloseIdleConnections closes every idle connection, the Fallback's too
// when it has the method.
func (u *Upstream) CloseIdleConnections() {
	u.mu.Lock()
	idle := u.idle
	u.idle = nil
	if u.sweep != nil {
		u.sweep.Stop()
		u.sweep = nil
	}
	u.mu.Unlock()
	for _, ic := range idle {
		for _, pc := range ic.list {
			_ = pc.c.Close()
		}
	}
	if c, ok := u.Fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// upBody returns its connection to the pool at EOF, or closes it when the
// body is closed early or fails.
type upBody struct {
	rc    io.ReadCloser
	u     *Upstream
	pc    *upConn
	ctx   context.Context // the request's: its cancellation beats the idle deadline
	stop  func() bool
	reuse bool
	done  bool
	// idle, when positive, bounds the wait of each Read (a stream's
	// silence between chunks).
	idle time.Duration
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.idle > 0 {
		b.pc.setReadDeadline(time.Now().Add(b.idle))
		if b.ctx.Err() != nil { // cancelled (or timed out): stop at once
			b.pc.setReadDeadline(aLongTimeAgo)
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *upBody) finish(clean bool) {
	if b.done {
		return
	}
	b.done = true
	// The cancel hook must not fire on a pooled connection.
	stopped := b.stop()
	if b.idle > 0 && clean {
		b.pc.setReadDeadline(time.Time{})
	}
	// Bytes beyond the declared length would be read as the next answer.
	if clean && b.reuse && stopped && b.pc.br.Buffered() == 0 {
		b.u.put(b.pc, time.Now())
		return
	}
	_ = b.pc.c.Close()
}

func (b *upBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// Connection states, for Shutdown.
const (
	stateIdle   = 0 // waiting for a request: may be closed
	stateActive = 1 // a request is being read or answered
)

// srvConn is one client connection.
type srvConn struct {
	s  *Server
	h  *Handler
	c  net.Conn
	rd connReader
	sk sock // raw reads and writes, when c is plain TCP
	br *bufio.Reader
	ip string // the client's address, for X-Forwarded-For

	state atomic.Int32

	// The current request.
	head     []byte   // its head, as read
	fields   []hfield // its header lines, as offsets into head
	req      rawReq
	fallback string  // why readRequest chose the net/http path
	refusal  string  // why it refused the request (headBad), "" for the generic reason
	unread   bool    // the client may still be sending what the answer skipped
	body     []byte  // reusable body buffer
	out      []byte  // reusable response head buffer
	uhead    []byte  // the replica's response head, as read
	resp     rawResp // what was parsed of it

	parked *rawExchange // a stream that stopped at a long wait (see serveParked)

	// The looks at the client while an exchange waits (see startWatch).
	watching bool
	probing  bool                   // TCP keep-alive probes are on (see keepAliveOn)
	gone     atomic.Bool            // the client hung up
	cur      atomic.Pointer[upConn] // the replica connection to stop then
	pending  int                    // a byte the watcher read, or -1

	wdl          writeDeadline // the client write deadline
	idleUntil    time.Time     // the idle read deadline in force (armIdle), zero when another one is
	ended        time.Time     // when the last exchange ended (rawExchange.end), zero once used
	retryAfter   string        // the next gateway answer's Retry-After
	headDeadline time.Time     // the current head's, zero when none was set
	saidClose    bool          // the current answer said Connection: close

	// A turn of the poller on the client's socket (serveTurn).
	turn   clientTurn
	resume resumeState // where finishRequest goes on after a turn
}

// connReader lets a byte read by the watcher come first.
type connReader struct{ c *srvConn }

func (r *connReader) Read(p []byte) (int, error) {
	if r.c.pending >= 0 && len(p) > 0 {
		p[0] = byte(r.c.pending)
		r.c.pending = -1
		return 1, nil
	}
	if r.c.turn.in {
		return r.c.turn.read(p)
	}
	if r.c.sk.ok() {
		return r.c.sk.read(r.c.c, p)
	}
	return r.c.c.Read(p)
}

// rawReq is what the loop parsed of a request head.
type rawReq struct {
	method        string
	target        []byte // as sent: escaped path and query
	path          string // decoded path, without the query
	contentLength int64  // -1: no body
	close         bool   // Connection: close
	continue100   bool   // Expect: 100-continue
	conn          connTokens
	// framingConflict: Content-Length and Transfer-Encoding both (RFC
	// 9112 section 6.1); the connection closes after the answer.
	framingConflict bool
	// hops is the first X-Cutover-Hops field's value (see hopsHeader).
	hops int
}

// serve runs the connection's request loop.
func (sc *srvConn) serve() {
	handedOff, parked := false, false
	defer func() {
		if !handedOff && !parked {
			sc.end()
		}
	}()
	for {
		sc.state.Store(stateIdle)
		if sc.s.pastGrace() {
			return
		}
		var r loopStep
		switch {
		case sc.br.Buffered() > 0:
			r = sc.serveNext(false)
		case sc.sk.ok():
			// One deadline in the common case: the wait for the next
			// request. The head and body usually arrive with the first
			// byte.
			sc.armIdle()
			r = sc.serveTurn()
		default:
			sc.armIdle()
			if _, err := sc.br.Peek(1); err != nil {
				answerPlainHTTP(err)
				return
			}
			r = sc.serveNext(false)
		}
		switch r {
		case stepRestart:
			r = sc.serveNext(false)
		case stepResume:
			r = sc.finishRequest(sc.resume.verdict, sc.resume.status, sc.resume.t)
			sc.resume = resumeState{}
		}
		switch r {
		case stepEnd:
			return
		case stepHandedOff:
			handedOff = true
			return
		case stepParked:
			// The answer waits long for its replica: a goroutine with a
			// fresh stack holds the wait (see serveParked), and serves
			// the connection on.
			parked = true
			go sc.serveParked()
			return
		}
	}
}

// loopStep is what the request loop does after serveNext or finishRequest.
type loopStep uint8

const (
	stepNext      loopStep = iota // serve the connection's next request
	stepEnd                       // the connection ends (serve closes it)
	stepHandedOff                 // net/http serves the connection now
	stepParked                    // serveParked goes on with the connection
	// stepRestart: in a turn (serveTurn), the request's head is not whole
	// in sc.br; nothing of it is read, and serveNext reads it outside the
	// turn.
	stepRestart
	// stepResume: in a turn, the request's head is read but the rest of
	// it must be served outside the turn (sc.resume holds where
	// finishRequest goes on).
	stepResume
)

// resumeState is where finishRequest goes on with a request that a turn
// read the head of (stepResume).
type resumeState struct {
	verdict, status int
	t               *route.Table
}

// serveNext reads the next request, whose first byte is in sc.br, and
// serves it. inTurn: serveTurn calls it, in a turn of the poller on the
// client's socket, where no read may wait: a request whose head or body
// is not whole in sc.br goes on outside the turn (stepRestart,
// stepResume), and anything but a request the loop serves itself too.
func (sc *srvConn) serveNext(inTurn bool) loopStep {
	sc.ended = time.Time{}
	sc.state.Store(stateActive)
	sc.h = sc.s.Handler.current() // this request's options, to its end
	sc.headDeadline = time.Time{}
	verdict, status, whole := sc.readWholeRequest()
	if !whole {
		if inTurn {
			return stepRestart
		}
		verdict, status = sc.readHead()
	}
	t := sc.h.table.Load()
	if verdict == headOK {
		if why := sc.slowPath(t); why != "" {
			verdict, sc.fallback = headFallback, why
		}
	}
	if inTurn && (verdict != headOK || !sc.bodyBuffered()) {
		sc.resume = resumeState{verdict: verdict, status: status, t: t}
		return stepResume
	}
	return sc.finishRequest(verdict, status, t)
}

// readHead reads a request head that is not whole in sc.br, within the
// head deadline.
func (sc *srvConn) readHead() (verdict, status int) {
	if b, _ := sc.br.Peek(sc.br.Buffered()); !bytes.Contains(b, crlfcrlf) {
		// The rest of the head has until the head deadline.
		sc.headDeadline = time.Now().Add(sc.s.readHeaderTimeout())
		sc.setReadDeadline(sc.headDeadline)
	}
	return sc.readRequest()
}

// bodyBuffered reports whether the body of the request just read needs
// no read of the client's socket: it has none, sc.br holds all of it, or
// it is refused unread (too large).
func (sc *srvConn) bodyBuffered() bool {
	n := sc.req.contentLength
	return n <= 0 || n > sc.h.opts.MaxBodyBytes || int64(sc.br.Buffered()) >= n
}

// finishRequest serves the request whose head readWholeRequest or
// readHead gave verdict and status, from routing table t.
func (sc *srvConn) finishRequest(verdict, status int, t *route.Table) loopStep {
	switch verdict {
	case headFallback:
		if e := netHTTPRefusal(sc.head); e != nil {
			// net/http would answer it in plain text: the same status
			// in the OpenAI error shape.
			sc.req.close, sc.unread = true, true
			sc.writeError(e, nil, nil)
			return stepEnd
		}
		replay := make([]byte, 0, len(sc.head)+len(closeField)+sc.br.Buffered())
		replay = appendReplayHead(replay, sc.head, sc.req.framingConflict)
		rest, _ := sc.br.Peek(sc.br.Buffered())
		replay = append(replay, rest...)
		sc.setReadDeadline(time.Time{})
		if f := sc.s.OnFallback; f != nil {
			f(sc.fallback)
		}
		sc.s.mu.Lock()
		delete(sc.s.conns, sc) // net/http owns it now; s.wg counts it until it closes
		sc.s.mu.Unlock()
		sc.s.handOff(sc.c, replay, sc.headDeadline)
		return stepHandedOff
	case headBad:
		sc.req.close, sc.unread = true, true
		sc.writeError(errMalformedHead(status, sc.refusal), nil, nil)
		return stepEnd
	case headEOF:
		return stepEnd
	}
	sc.saidClose = false
	keep := sc.serveRequest(t)
	if sc.parked != nil {
		return stepParked
	}
	if !sc.requestDone(keep) {
		return stepEnd
	}
	return stepNext
}

// armIdle sets the read deadline of the wait for the next request:
// Server.IdleTimeout from now. Like writeDeadline, it moves the deadline
// only once a sixteenth of the timeout has passed since it was set, so
// that a connection busy with requests moves no timer (and reads no
// clock: "now" is when the last exchange ended, if one just did) per
// request: the wait is cut after between 15/16 of the timeout and the
// whole of it.
func (sc *srvConn) armIdle() {
	d := sc.s.idleTimeout()
	now := sc.ended
	if now.IsZero() {
		now = time.Now()
	}
	if !sc.idleUntil.IsZero() && sc.idleUntil.Sub(now) >= d-d/16 {
		return
	}
	_ = sc.c.SetReadDeadline(now.Add(d))
	sc.idleUntil = now.Add(d)
}

// setReadDeadline sets the client connection's read deadline for
// anything but the wait for the next request (armIdle).
func (sc *srvConn) setReadDeadline(t time.Time) {
	_ = sc.c.SetReadDeadline(t)
	sc.idleUntil = time.Time{}
	sc.turn.noDeadline()
}

// requestDone ends a request the loop served: it reports whether the
// connection serves another.
func (sc *srvConn) requestDone(keep bool) bool {
	if cap(sc.head) > maxKeptBody {
		// Only once the request is done: its header fields are
		// offsets into sc.head.
		sc.head = nil
	}
	// An answer sent without Connection: close (Shutdown began after
	// its head went out) lets the client send another request: the
	// loop's top decides whether the drain's grace still allows it.
	return keep && !sc.req.close && !sc.saidClose
}

// end closes the connection the loop served, and recycles sc.
func (sc *srvConn) end() {
	if sc.unread {
		sc.lingerClose()
	}
	_ = sc.c.Close()
	sc.s.forget(sc)
	sc.recycle()
}

// srvConns are connection states whose connection ended, with the
// buffers they grew (head, header fields, response heads, a small body):
// a new connection takes one, so that accepting and serving a connection
// leaves no garbage for the collector. A burst of new streams once
// allocated about 6 KiB per connection (its reader, the state and the
// buffers each first request grows), enough for a collection, with its
// stop of the world and a mark worker on one of the processors, during
// every few bursts of 200 streams.
var srvConns = sync.Pool{New: func() any { return new(srvConn) }}

// maxKeptFields is the most response header lines a recycled connection
// state keeps room for.
const maxKeptFields = 128

// recycle gives the reader back and puts sc in srvConns, with its buffers
// emptied (those grown beyond maxKeptBody are dropped). Only once nothing
// refers to sc any more: the Server forgot it and its exchange ended. A
// connection handed to net/http is never recycled.
func (sc *srvConn) recycle() {
	if sc.br != nil {
		sc.br.Reset(nil)
		clientReaders.Put(sc.br)
	}
	keep := func(b []byte) []byte {
		if cap(b) > maxKeptBody {
			return nil
		}
		return b[:0]
	}
	fields, ufields := sc.fields[:0], sc.resp.fields[:0]
	if cap(ufields) > maxKeptFields {
		ufields = nil // a replica's head has no bound on its lines but its size
	}
	*sc = srvConn{head: keep(sc.head), fields: fields, body: keep(sc.body), out: keep(sc.out),
		uhead: keep(sc.uhead), resp: rawResp{fields: ufields}, turn: sc.turn.kept()}
	srvConns.Put(sc)
}

// serveParked goes on with a stream that parked at a long wait for its
// replica (see rawExchange.park), then serves the connection's next
// requests. It runs in a goroutine of its own, started when the stream
// parked: the wait sits at the top of a fresh stack, so a stream waiting
// for its next token keeps the smallest stack Go gives a goroutine (2 KiB),
// not the one the request's call chain grew. Relaying what came grows the
// stack; a stream that parks again waits in a fresh goroutine once more,
// and this one ends.
func (sc *srvConn) serveParked() {
	x := sc.parked
	sc.parked = nil
	keep := x.resume(x.ready.await(x.pc.c))
	if sc.parked != nil {
		go sc.serveParked()
		return
	}
	if sc.requestDone(keep) {
		sc.serve()
		return
	}
	sc.end()
}

// Lingering close: how long, and how many bytes, a connection closed
// after an answer that skipped the request body keeps reading.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 64 << 20
)

// lingerClose prepares to close a connection whose client may still be
// sending a request body the gateway answered without reading (413, a
// malformed head): it shuts down the sending side, then reads and drops
// what still arrives until the client closes, for a bounded time. Closing
// with unread bytes makes the kernel answer with a reset, which can
// destroy the answer before the client reads it (nginx's lingering close
// exists for this; net/http waits likewise).
func (sc *srvConn) lingerClose() {
	c := sc.c
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn() // the answer is written: drain the raw bytes
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	_ = tc.CloseWrite()
	_ = tc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, tc, lingerBytes)
}

// readRequest outcomes.
const (
	headOK = iota
	headEOF
	headBad      // answer status and close
	headFallback // hand the connection to net/http
)

// readRequest reads one request head into sc.head, within the size and
// field-count limits (431 beyond), and parses it into sc.req.
func (sc *srvConn) readRequest() (verdict, status int) {
	sc.head = sc.head[:0]
	max, maxLines := sc.s.maxHeaderBytes(), sc.s.maxHeaderFields()+1 // and the request line
	if verdict, status, ok := sc.readBufferedRequest(max, maxLines); ok {
		return verdict, status
	}
	sc.refusal = ""
	for lines, empty := 0, 0; ; {
		start, err := sc.readLine(max)
		if err != nil {
			if errors.Is(err, errHeadTooLarge) {
				return headBad, http.StatusRequestHeaderFieldsTooLarge
			}
			return headEOF, 0
		}
		if len(trimEOL(sc.head[start:])) == 0 {
			if lines > 0 {
				break
			}
			// Empty lines before the request line are skipped (RFC 9112
			// section 2.2): some clients send CRLF after a POST body.
			if empty++; empty == 4 {
				return headBad, http.StatusBadRequest
			}
			sc.head = sc.head[:0]
			continue
		}
		if lines++; lines > maxLines {
			return headBad, http.StatusRequestHeaderFieldsTooLarge
		}
	}
	ph := requestHead{fields: sc.fields[:0]}
	parseRequestHead(sc.head, &ph)
	sc.req, sc.fields, sc.fallback, sc.refusal = ph.rawReq, ph.fields, ph.fallback, ph.reason
	return ph.verdict, ph.status
}

// readWholeRequest is readRequest for a head whole in the reader's
// buffer, as it usually is (see readBufferedRequest): whole is false when
// it was not, with nothing read; readRequest, with the head deadline set,
// decides then.
func (sc *srvConn) readWholeRequest() (verdict, status int, whole bool) {
	sc.head = sc.head[:0]
	return sc.readBufferedRequest(sc.s.maxHeaderBytes(), sc.s.maxHeaderFields()+1)
}

var errHeadTooLarge = errors.New("request head too large")

// readLine appends the next line of the head to sc.head and returns where
// it starts.
func (sc *srvConn) readLine(max int) (int, error) {
	start := len(sc.head)
	for {
		var err error
		sc.head, err = appendLine(sc.br, sc.head, max)
		if err != bufio.ErrBufferFull {
			return start, err
		}
	}
}

// appendLine appends what br holds up to and including the next '\n' to
// buf, or as much as its buffer holds (bufio.ErrBufferFull: call again).
func appendLine(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	b, err := br.ReadSlice('\n')
	buf = append(buf, b...)
	if len(buf) > max {
		return buf, errHeadTooLarge
	}
	return buf, err
}

// readBody reads the request body (Content-Length bytes) within the body
// timeout, a small one into sc.body (see Handler.bufferBody).
func (sc *srvConn) readBody() (body []byte, held int64, aerr *apiError) {
	n := sc.req.contentLength
	if n <= 0 {
		return nil, 0, nil
	}
	if n > sc.h.opts.MaxBodyBytes {
		return nil, 0, errBodyTooLarge(sc.h.opts.MaxBodyBytes)
	}
	if int64(sc.br.Buffered()) < n {
		sc.setReadDeadline(sc.h.bodyDeadline(time.Now()))
	}
	if sc.req.continue100 && sc.br.Buffered() == 0 {
		if _, err := sc.write(continueLine); err != nil {
			return nil, 0, &apiError{status: statusClientClosed, code: "client_closed"}
		}
	}
	return sc.h.bufferBody(sc.br, n, &sc.body)
}

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// maxKeptBody is the largest body buffer a connection keeps between
// requests.
const maxKeptBody = 64 << 10

// slowPath says why the loop cannot serve the request just read itself
// ("" when it can): the Handler sends through another Transport
// ("client"), or the live pool has replicas that are not plain HTTP
// ("https_replicas"). net/http then serves the connection.
// t is the routing table the request will be served from: the check and
// the service must see the same one, or a switch in between could send a
// request for https replicas down the plain-HTTP loop.
func (sc *srvConn) slowPath(t *route.Table) string {
	if sc.h.up == nil {
		return "client"
	}
	if t == nil {
		return "" // answered 503 below
	}
	// Tables are immutable: the answer is worked out once per table.
	if v := sc.h.slow.Load(); v != nil && v.t == t {
		return v.why
	}
	v := &slowVerdict{t: t, why: replicasPath(t, sc.h.opts.PoolHeader != "")}
	sc.h.slow.Store(v)
	return v.why
}

// slowVerdict is slowPath's answer for routing table t.
type slowVerdict struct {
	t   *route.Table
	why string
}

// replicasPath is "https_replicas" when a request served from t may go
// to a replica that is not plain HTTP: one of the live pool, or of any
// pool during a canary or with the pool header on (anyPool).
func replicasPath(t *route.Table, anyPool bool) string {
	for _, r := range t.Live.Pool.Replicas {
		if r.URL.Scheme != "http" {
			return "https_replicas"
		}
	}
	if t.Canary != nil || anyPool {
		// The request may go to another pool than the live one.
		for _, e := range t.Pools {
			for _, r := range e.Pool.Replicas {
				if r.URL.Scheme != "http" {
					return "https_replicas"
				}
			}
		}
	}
	return ""
}

// serveRequest answers the request in sc.req from routing table t, the
// way Handler.ServePool does. It reports whether the connection may serve
// another request.
func (sc *srvConn) serveRequest(t *route.Table) bool {
	start := time.Now()
	h, r := sc.h, &sc.req
	if t == nil {
		return sc.discardBody() && sc.writeError(errNotReady(), nil, nil)
	}
	e, kind := sc.pickEntry(t)
	key, aerr := h.authenticate(r.method, r.path, sc.headerValue("Authorization"))
	if aerr != nil {
		h.logRefused(r.method, r.path, e, start, key, aerr) // before the answer: a client that read it finds the line
		return sc.discardBody() && sc.writeError(aerr, e, nil)
	}
	if a, ok := answerLocally(r.method, r.path, e); ok {
		a = h.modelsForKey(key, e, r.path, a)
		if !sc.discardBody() {
			return false
		}
		if a.err != nil {
			return sc.writeError(a.err, e, nil)
		}
		return sc.writeGateway(a.status, a.contentType, a.body, e, nil)
	}
	if a, ok := h.replicaModelsForKey(context.Background(), key, e, r.method, r.path); ok {
		if !sc.discardBody() {
			return false
		}
		if a.err != nil {
			return sc.writeError(a.err, e, nil)
		}
		return sc.writeGateway(a.status, a.contentType, a.body, e, nil)
	}
	if aerr := loopCheck(sc.req.hops); aerr != nil {
		if !sc.discardBody() {
			return false
		}
		return sc.writeError(aerr, e, nil)
	}
	body, held, aerr := sc.readBody()
	return sc.serveBody(t, e, kind, key, start, body, held, aerr)
}

// serveBody is serveRequest from the body on (readBody's results). It is
// apart so that the deferred give is open-coded: with serveRequest's
// returns it made every request pay for a deferred call record.
func (sc *srvConn) serveBody(t *route.Table, e *route.Entry, kind pickKind, key int, start time.Time, body []byte, held int64, aerr *apiError) bool {
	h, r := sc.h, &sc.req
	defer func() { h.buffered.give(held) }() // held is 0 once an exchange holds it
	if aerr == nil && kind == pickByBody {
		e = rePick(t, e, body)
	}
	var bm bodyModel // the body's scan, shared
	if aerr == nil && bm.readsForm(t, key, body) {
		if ferr := bm.scanForm(body, sc.field("Content-Type")); ferr != nil {
			return sc.writeError(ferr, e, nil)
		}
	}
	if aerr == nil && key != noKey {
		if aerr = h.allowModel(key, t, body, &bm); aerr != nil {
			h.logRefused(r.method, r.path, e, start, key, aerr) // before the answer: a client that read it finds the line
			return sc.writeError(aerr, e, nil)
		}
	}
	if aerr != nil {
		if aerr.status == statusClientClosed {
			return false
		}
		sc.req.close, sc.unread = true, true // the body was not read
		sc.writeError(aerr, e, nil)
		return false
	}
	// A rewritten body goes in the connection's buffer when the body is
	// there and it fits, else in pooled storage.
	bm.inPlace = len(body) > 0 && len(sc.body) > 0 && &body[0] == &sc.body[0]
	bm.pooled = true
	body, e, aerr = applyModelName(t, e, kind != pickFixed, body, &bm)
	rewritten := bm.out // body's storage when pooled, the exchange's until it ends
	if aerr != nil {
		return sc.writeError(aerr, e, nil)
	}
	// The pool's exchanges are zero (rawExchange.end clears one before it goes
	// back): only the fields set here are assigned, the rest is not
	// cleared again.
	x := rawExchangePool.Get().(*rawExchange)
	x.sc, x.h, x.e, x.body, x.resp, x.held, x.rewritten = sc, h, e, body, &sc.resp, held, rewritten
	held = 0
	x.obs.Pool, x.obs.Method, x.obs.Path, x.obs.Start, x.obs.Key = e.Pool.Name, r.method, r.path, start, h.keyID(key)
	if h.opts.Tracer != nil {
		x.obs.trace = sc.traceLoop(start, t, e, body, &bm)
	}
	if h.opts.Timeout > 0 {
		x.deadline = start.Add(h.opts.Timeout)
	}
	x.mirrored = h.wantMirror(r.method, e, body)
	if x.mirrored && bm.deterministic(body) {
		x.capture = getCapture() // its text will be compared
	}
	keep := x.run()
	if x.parked {
		return true // serve hands the stream to serveParked
	}
	return x.end(keep)
}

// discardBody reads and drops a request body the gateway answers without
// forwarding. It reports whether the connection can go on.
func (sc *srvConn) discardBody() bool {
	n := sc.req.contentLength
	if n <= 0 {
		return true
	}
	if n > sc.h.opts.MaxBodyBytes || (sc.req.continue100 && int64(sc.br.Buffered()) < n) {
		// Too large to read, or a client waiting for 100 Continue before
		// it sends the body: answer without it and close.
		sc.req.close, sc.unread = true, true
		return true
	}
	if int64(sc.br.Buffered()) < n {
		sc.setReadDeadline(sc.h.bodyDeadline(time.Now()))
	}
	_, err := sc.br.Discard(int(n))
	return err == nil
}

// writeError answers e with the pool (and replica) headers.
func (sc *srvConn) writeError(e *apiError, pe *route.Entry, rep *pool.Replica) bool {
	body := make([]byte, 0, 96+len(e.msg))
	body = e.appendJSON(body)
	sc.retryAfter = e.retryAfter
	return sc.writeGateway(e.status, "application/json", body, pe, rep)
}

// writeGateway writes a whole response the gateway makes itself.
func (sc *srvConn) writeGateway(status int, contentType string, body []byte, e *route.Entry, rep *pool.Replica) bool {
	b := appendStatusLine(sc.out[:0], status)
	b = appendDate(b, time.Now())
	if contentType != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, contentType...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	b = appendCutoverHeaders(b, e, rep)
	if sc.retryAfter != "" {
		b = append(b, "Retry-After: "...)
		b = append(b, sc.retryAfter...)
		b = append(b, "\r\n"...)
		sc.retryAfter = ""
	}
	if sc.req.close || sc.s.shutdown.Load() {
		b = append(b, "Connection: close\r\n"...)
		sc.saidClose = true
	}
	b = append(b, "\r\n"...)
	if sc.req.method != http.MethodHead {
		b = append(b, body...)
	}
	sc.out = b
	_, err := sc.write(b)
	return err == nil
}

// watchAfter is how long an upstream wait may last before the connection
// starts watching the client for a hang-up (which then stops the
// replica's work). Shorter exchanges never pay for the watcher.
const watchAfter = 500 * time.Millisecond

// startWatch looks whether the client hung up while the exchange waits
// on the replica, each time a wait lasted watchAfter: a non-blocking peek
// of the client connection from the exchange's own goroutine, so that a
// waiting stream holds one goroutine, not a second one blocked in a read
// of the client. A hang-up sets gone, which the next arm turns into an
// expired deadline. Pipelined bytes (buffered, or in the socket) make
// further looks pointless: the client is there.
func (sc *srvConn) startWatch() {
	if !sc.probing {
		sc.probing = true
		keepAliveOn(sc.c)
	}
	if pc := sc.cur.Load(); pc != nil {
		pc.probe()
	}
	if sc.watching {
		return
	}
	if sc.br != nil && sc.br.Buffered() > 0 || sc.pending >= 0 {
		sc.watching = true
		return
	}
	sc.setReadDeadline(time.Time{}) // a past one would fail the peek
	switch peekClient(sc.c) {
	case peerSent:
		sc.watching = true
	case peerGone:
		sc.gone.Store(true)
	}
	sc.releaseBuffers()
}

// keepAliveOn turns TCP keep-alive probes on for client connection c
// (through TLS), with Go's default timing (the first probe after 15 s of
// silence). The traffic listener accepts connections without them: four
// system calls per connection that only a long wait can use. A peer whose
// host vanished sends no FIN and no reset, and only probes find it gone
// while the gateway waits on it: an exchange that waits long on its
// replica (startWatch), or a connection net/http serves. An idle
// kept-alive connection is closed at Server.IdleTimeout (2 minutes), before
// probes at the default timing could tell (15 s + 9 × 15 s).
func keepAliveOn(c net.Conn) {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = u.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
	}
}

// releaseBuffers gives the client reader and the replica writer of an
// exchange that waits long back to their pools: until its end it reads no
// request byte and writes none to the replica (the request is written, or
// its body goes straight to the socket), so a stream that waits long holds
// only the buffer it reads with (and a parked one not even that).
func (sc *srvConn) releaseBuffers() {
	if sc.br != nil && sc.br.Buffered() == 0 && sc.pending < 0 {
		clientReaders.Put(sc.br)
		sc.br = nil
	}
	if pc := sc.cur.Load(); pc != nil {
		pc.releaseWriter()
	}
}

// stopWatch ends the looks at the client of an exchange, and takes back
// the client's reader.
func (sc *srvConn) stopWatch() {
	sc.watching = false
	if sc.br == nil {
		sc.br = clientReaders.Get().(*bufio.Reader)
		sc.br.Reset(&sc.rd)
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

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
	for _, r := range t.Live.Pool.Replicas {
		if r.URL.Scheme != "http" {
			return "https_replicas"
		}
	}
	if t.Canary != nil || sc.h.opts.PoolHeader != "" {
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
	e, byBody := sc.pickEntry(t)
	key, aerr := h.authenticate(r.path, sc.headerValue("Authorization"))
	if aerr != nil {
		h.logRefused(r.method, r.path, e, start, key, aerr) // before the answer: a client that read it finds the line
		return sc.discardBody() && sc.writeError(aerr, e, nil)
	}
	if a, ok := answerLocally(r.method, r.path, e); ok {
		a = h.modelsForKey(key, t, r.path, a)
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
	body, held, aerr := sc.readBody()
	defer h.buffered.give(held)
	if aerr == nil && byBody {
		e = rePick(t, e, body)
	}
	if aerr == nil && key != noKey {
		if aerr = h.allowModel(key, t, r.method, body); aerr != nil {
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
	if body, aerr = applyModelName(t, e, r.method, body); aerr != nil {
		return sc.writeError(aerr, e, nil)
	}
	x := rawExchangePool.Get().(*rawExchange)
	defer func() {
		*x = rawExchange{}
		rawExchangePool.Put(x)
	}()
	*x = rawExchange{sc: sc, h: h, e: e, body: body, resp: &sc.resp}
	x.obs = Observation{Pool: e.Pool.Name, Method: r.method, Path: r.path, Start: start, Key: h.keyID(key)}
	if h.opts.Timeout > 0 {
		x.deadline = start.Add(h.opts.Timeout)
	}
	mirrored := h.wantMirror(r.method, e, body)
	if mirrored && Deterministic(body) {
		x.capture = getCapture() // its text will be compared
	}
	keep := x.run()
	sc.stopWatch()
	x.releaseConn()
	x.obs.Duration = time.Since(start)
	if mirrored && len(sc.body) > 0 && &body[0] == &sc.body[0] {
		body = bytes.Clone(body) // the mirror keeps it; the connection reuses its buffer
	}
	h.finish(&x.obs, e, r.path, body, mirrored, x.capture)
	return keep && !sc.gone.Load()
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
		_ = sc.c.SetReadDeadline(sc.h.bodyDeadline(time.Now()))
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

func appendCutoverHeaders(b []byte, e *route.Entry, rep *pool.Replica) []byte {
	if e != nil {
		b = append(b, "X-Cutover-Pool: "...)
		b = append(b, e.Pool.Name...)
		b = append(b, "\r\n"...)
	}
	if rep != nil {
		b = append(b, "X-Cutover-Replica: "...)
		b = append(b, rep.Name...)
		b = append(b, "\r\n"...)
	}
	return b
}

// rawExchange is one request sent on by the loop, with at most two
// attempts, like exchange.
type rawExchange struct {
	sc   *srvConn
	h    *Handler
	e    *route.Entry
	body []byte

	obs      Observation // obs.Replica is the replica of the current attempt
	capture  *capture
	deadline time.Time // the whole request's (Handler Timeout), zero: none
	since    time.Time // when the current wait began; its phase's limit counts from it
	slow     bool      // a wait lasted watchAfter: the next ones start without a read buffer

	pc       *upConn  // the replica connection of the current attempt
	reusePC  bool     // pc may go back to the idle pool once released
	resp     *rawResp // the connection's, reused
	armed    armKind  // what the current read deadline stands for
	timedOut armKind  // what a timeout error stands for
}

var rawExchangePool = sync.Pool{New: func() any { return new(rawExchange) }}

// armKind names the deadline of an upstream read.
type armKind uint8

const (
	armNone    armKind = iota
	armWatch           // time to look whether the client hung up
	armHeader          // the response-header timeout
	armIdle            // the silence limit of a stream
	armTotal           // the whole request's timeout
	armGone            // the client hung up
	armUnknown         // no deadline set by the exchange
)

// rawResp is what the exchange read of the replica's response head.
type rawResp struct {
	status        int
	reason        []byte // code and reason phrase, from the status line
	contentLength int64  // -1: not given
	chunked       bool
	closeDelim    bool // body ends when the replica closes
	bodiless      bool
	close         bool // the replica closes after this answer
	sse           bool
	fields        []hfield // into sc.uhead
	conn          connTokens
}

// run forwards the request (see Handler.forward). It reports whether
// the client connection can serve another request.
func (x *rawExchange) run() bool { return x.h.forward(x.e.Pool, &x.obs, x, x.body) }

func (x *rawExchange) try(rep *pool.Replica) (int, error) {
	if err := x.send(rep); err != nil {
		return 0, err
	}
	return x.resp.status, nil
}

func (x *rawExchange) drop()         { x.closeConn() }
func (x *rawExchange) expired() bool { return x.pastDeadline() }

func (x *rawExchange) pastDeadline() bool {
	return !x.deadline.IsZero() && !time.Now().Before(x.deadline)
}

// failed says what the loop knows of an attempt's error (see classify):
// which deadline the failed wait stood for, and whether the replica had
// sent bytes of an answer.
func (x *rawExchange) failed(err error) attemptError {
	a := attemptError{err: err, clientGone: x.sc.gone.Load(), answered: x.pc != nil && x.pc.cr.n > 0}
	switch {
	case x.pastDeadline():
		a.expired = expiredTotal
	case !isTimeout(err):
	case x.timedOut == armIdle:
		a.expired = expiredIdle
	case x.timedOut == armTotal:
		a.expired = expiredTotal
	case x.timedOut == armGone:
		a.clientGone = true
	default:
		a.expired = expiredHeader
	}
	return a
}

// fail answers e (nothing of an answer reached the client yet).
func (x *rawExchange) fail(e *apiError) bool {
	x.obs.Status, x.obs.Error = e.status, e.code
	if e.status == statusClientClosed {
		return false
	}
	return x.sc.writeError(e, x.e, x.h.shownReplica(x.obs.Replica))
}

// closeConn closes the attempt's replica connection.
func (x *rawExchange) closeConn() {
	if x.pc != nil {
		x.sc.cur.Store(nil)
		_ = x.pc.c.Close()
		x.pc = nil
	}
}

// releaseConn returns the replica connection to the idle pool when its
// answer was read whole, else closes it. It runs after the watcher
// stopped, so no deadline can hit a pooled connection.
func (x *rawExchange) releaseConn() {
	if x.pc == nil {
		return
	}
	x.sc.cur.Store(nil)
	if x.reusePC && !x.sc.gone.Load() && x.pc.br.Buffered() == 0 {
		x.pc.takeReader() // the pool's other users read with it
		x.h.up.put(x.pc)
	} else {
		_ = x.pc.c.Close()
	}
	x.pc = nil
}

// send writes the request to rep and reads the answer's head into x.resp.
func (x *rawExchange) send(rep *pool.Replica) error {
	if rep.URL.Scheme != "http" {
		// slowPath hands such pools to net/http; never send plain HTTP
		// to a TLS replica.
		return errors.New("the connection loop speaks plain HTTP only, and the replica https")
	}
	u := x.h.up
	host := rep.URL.Host
	ctx := context.Background()
	if !x.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, x.deadline)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := u.get(ctx, host, attempt > 0)
		if err != nil {
			return err
		}
		x.pc, x.reusePC = pc, false
		x.sc.cur.Store(pc)
		if x.sc.gone.Load() {
			return errClientGone
		}
		pc.wrote = time.Time{}
		err = x.writeRequest(pc, host, rep.URL.EscapedPath(), x.h.credentials(rep))
		if err == nil {
			pc.wrote = time.Now()
			err = x.readHead()
		} else if mayHaveAnswered(err) && !x.sc.gone.Load() {
			// A replica that refuses a request may answer (400, 413)
			// and close with the body unread, which resets the
			// connection while it is written: its answer, if it came,
			// is the client's, and the connection is not reused.
			if x.readHead() == nil {
				x.resp.close = true
				return nil
			}
		}
		if err == nil {
			return nil
		}
		if reused && attempt == 0 && pc.closedBeforeAnswer() && !isTimeout(err) && !x.sc.gone.Load() {
			// A kept-alive connection the replica had closed; its idle
			// siblings are likely closed too: resend on a new one.
			x.closeConn()
			u.dropIdle(host)
			continue
		}
		return err
	}
}

var errClientGone = errors.New("client closed the request")

// writeRequest writes the request head and body to the replica.
func (x *rawExchange) writeRequest(pc *upConn, host, prefix string, cred credentials) error {
	sc := x.sc
	r := &sc.req
	bw := pc.writer()
	bw.WriteString(r.method)
	bw.WriteByte(' ')
	bw.WriteString(prefix)
	bw.Write(r.target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for _, f := range sc.fields {
		name := sc.head[f.ns:f.ne]
		if skipRequestHeader(name) || r.conn.has(name) || (cred.dropClient && equalFold(name, "Authorization")) {
			continue
		}
		bw.Write(name)
		bw.WriteString(": ")
		bw.Write(sc.head[f.vs:f.ve])
		bw.WriteString("\r\n")
	}
	if cred.value != "" {
		bw.WriteString("Authorization: ")
		bw.WriteString(cred.value)
		bw.WriteString("\r\n")
	}
	if sc.ip != "" {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(sc.ip)
		bw.WriteString("\r\n")
	}
	if len(x.body) > 0 || r.method == http.MethodPost || r.method == http.MethodPut || r.method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], int64(len(x.body)), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if len(x.body) <= smallBody {
		bw.Write(x.body)
		return bw.Flush()
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return x.writeBody(pc)
}

// smallBody is a request body that fits the socket buffers of an idle
// connection, so writing it never waits on the replica.
const smallBody = 32 << 10

// writeBody writes a large request body straight to the replica, which
// may be slow to read it (or wedged): within the request's timeout, and
// with the hang-up watcher started once the writing takes long, so that a
// client that leaves ends it.
func (x *rawExchange) writeBody(pc *upConn) error {
	b := x.body
	defer func() { _ = pc.c.SetWriteDeadline(time.Time{}) }()
	for len(b) > 0 {
		d, kind := x.deadlineFor(armNone, time.Now())
		_ = pc.c.SetWriteDeadline(d)
		if x.sc.gone.Load() {
			return errClientGone
		}
		n, err := pc.c.Write(b)
		b = b[n:]
		switch {
		case err == nil:
		case isTimeout(err) && kind == armWatch && !x.sc.gone.Load():
			x.sc.startWatch()
		default:
			x.timedOut = kind
			return err
		}
	}
	return nil
}

// skipRequestHeader reports request headers never forwarded, on either
// path: hop-by-hop ones, the ones the request writers set themselves, a
// client's X-Forwarded-For (the gateway sets its own) and Expect (the
// gateway's server answered it; the whole body follows).
func skipRequestHeader(name []byte) bool {
	return hopByHop(name) || equalFold(name, "Host") || equalFold(name, "Expect") ||
		equalFold(name, "Content-Length") || equalFold(name, "X-Forwarded-For")
}

// skipResponseHeader reports replica response headers not relayed as
// they are: hop-by-hop ones and the gateway's own.
func skipResponseHeader(name []byte, streaming bool) bool {
	return hopByHop(name) || equalFold(name, "X-Cutover-Pool") || equalFold(name, "X-Cutover-Replica") ||
		(streaming && equalFold(name, "X-Accel-Buffering"))
}

// hopByHop reports the hop-by-hop headers of RFC 9110 section 7.6.1 and
// their older companions, in any case. The length picks the one candidate
// worth comparing.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "Te")
	case 7:
		return equalFold(name, "Trailer") || equalFold(name, "Upgrade")
	case 10:
		return equalFold(name, "Connection") || equalFold(name, "Keep-Alive")
	case 16:
		return equalFold(name, "Proxy-Connection")
	case 17:
		return equalFold(name, "Transfer-Encoding")
	case 18:
		return equalFold(name, "Proxy-Authenticate")
	case 19:
		return equalFold(name, "Proxy-Authorization")
	}
	return false
}

// arm sets the read deadline of the replica connection for the next wait
// of phase (armHeader or armIdle) and records what a timeout will mean.
func (x *rawExchange) arm(phase armKind) {
	pc := x.pc
	now := time.Now()
	if x.since.IsZero() {
		x.since = now
	}
	d, kind := x.deadlineFor(phase, now)
	switch {
	case kind != armNone:
		_ = pc.c.SetReadDeadline(d)
		x.armed = kind
		pc.deadline = true
	case x.armed != armNone: // clear a deadline left from before
		_ = pc.c.SetReadDeadline(time.Time{})
		x.armed = armNone
	}
	if x.sc.gone.Load() {
		// The client hung up: the watcher set a past deadline, which the
		// one just set may have overwritten. Restore it.
		_ = pc.c.SetReadDeadline(aLongTimeAgo)
		x.armed = armGone
	}
}

// deadlineFor is the next deadline of a wait of phase (armHeader,
// armIdle, or armNone for writing the request) and what its passing will
// mean: the earliest of the phase's own limit (counted from the start of
// the wait, x.since, however often the wait is re-armed), the whole
// request's timeout and, until the client need not be watched, the next
// look at it. armNone: no deadline.
func (x *rawExchange) deadlineFor(phase armKind, now time.Time) (time.Time, armKind) {
	var d time.Time
	kind := armNone
	switch phase {
	case armHeader:
		if t := x.h.up.ResponseHeaderTimeout; t > 0 {
			d, kind = x.since.Add(t), armHeader
		}
	case armIdle:
		if t := x.h.opts.IdleTimeout; t > 0 && (x.resp.chunked || x.resp.closeDelim || x.resp.sse) {
			d, kind = x.since.Add(t), armIdle
		}
	}
	if !x.deadline.IsZero() && (d.IsZero() || x.deadline.Before(d)) {
		d, kind = x.deadline, armTotal
	}
	if !x.sc.watching {
		if w := now.Add(watchAfter); d.IsZero() || w.Before(d) {
			d, kind = w, armWatch
		}
	}
	return d, kind
}

// wait blocks until the replica connection has bytes to read, starting
// the hang-up watcher when the wait grows long.
func (x *rawExchange) wait(phase armKind) error {
	x.since = time.Time{} // a new wait: arm sets it
	if x.slow {
		x.pc.releaseReader() // a slow answer's waits hold no buffer from their start
	}
	for {
		x.arm(phase)
		err := x.pc.fill()
		if err == nil {
			return nil
		}
		x.timedOut = x.armed
		if isTimeout(err) && x.armed == armWatch {
			x.sc.startWatch()
			x.slow = true
			x.pc.releaseReader() // the wait is long: read the socket's readiness, not bytes
			continue
		}
		return err
	}
}

// readHead reads the replica's response head (skipping 1xx answers).
func (x *rawExchange) readHead() error {
	sc := x.sc
	x.armed = armUnknown // a reused connection may carry an old deadline
	for {
		if err := x.wait(armHeader); err != nil {
			return err
		}
		sc.uhead = sc.uhead[:0]
		rr := x.resp
		if !x.readBufferedHead(rr) {
			for {
				start, err := x.readLine()
				if err != nil {
					return err
				}
				line := trimEOL(sc.uhead[start:])
				if start == 0 {
					// A replica that is not speaking HTTP fails at once.
					if _, _, err := parseStatusLine(line); err != nil {
						return err
					}
				} else if len(line) == 0 {
					break
				}
			}
			if err := parseResponseHead(sc.uhead, rr); err != nil {
				return err
			}
		}
		if code := rr.status; code >= 100 && code < 200 {
			if code == http.StatusSwitchingProtocols {
				return errors.New("the replica switched protocols, which the gateway does not relay")
			}
			continue
		}
		rr.frame(sc.req.method)
		return nil
	}
}

// parseStatus parses a three-digit status code from 100 to 999 (net/http
// takes 000 to 099 too, which its server cannot write).
func parseStatus(b []byte) (int, bool) {
	if b[0] < '1' || b[0] > '9' || b[1] < '0' || b[1] > '9' || b[2] < '0' || b[2] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*100 + int(b[1]-'0')*10 + int(b[2]-'0'), true
}

// maxResponseHead bounds a replica's response head.
const maxResponseHead = 1 << 20

// readLine appends the next line of the response head to sc.uhead and
// returns where it starts, waiting through the watcher's deadlines.
func (x *rawExchange) readLine() (int, error) {
	sc := x.sc
	start := len(sc.uhead)
	for {
		var err error
		sc.uhead, err = appendLine(x.pc.br, sc.uhead, maxResponseHead)
		switch {
		case err == nil:
			return start, nil
		case err == bufio.ErrBufferFull:
		case isTimeout(err) && x.armed == armWatch:
			x.sc.startWatch()
			x.arm(armHeader)
		default:
			x.timedOut = x.armed
			return 0, err
		}
	}
}

// appendHead builds the client's response head from the replica's.
func (x *rawExchange) appendHead(b []byte, streaming bool) []byte {
	sc, rr := x.sc, x.resp
	b = append(b, "HTTP/1.1 "...)
	b = append(b, rr.reason...)
	b = append(b, "\r\n"...)
	for _, f := range rr.fields {
		name := sc.uhead[f.ns:f.ne]
		if skipResponseHeader(name, streaming) || rr.conn.has(name) {
			continue
		}
		if (rr.chunked || rr.closeDelim) && equalFold(name, "Content-Length") {
			continue // Transfer-Encoding wins over it (RFC 9112 section 6.3)
		}
		b = append(b, sc.uhead[f.ns:f.ve]...)
		b = append(b, "\r\n"...)
	}
	if rr.chunked || rr.closeDelim {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	b = appendCutoverHeaders(b, x.e, x.h.shownReplica(x.obs.Replica))
	if streaming {
		b = append(b, "X-Accel-Buffering: no\r\n"...)
	}
	if sc.req.close || sc.s.shutdown.Load() {
		b = append(b, "Connection: close\r\n"...)
		sc.saidClose = true
	}
	return append(b, "\r\n"...)
}

// relay sends the replica's answer to the client: the head, then the
// body as it arrives, one client write per replica read, with the chunk
// framing passed through. It reports whether the client connection can
// serve another request.
func (x *rawExchange) relay() bool {
	sc, rr, o := x.sc, x.resp, &x.obs
	o.TTFB = time.Since(o.Start)
	streaming := !rr.bodiless && (rr.chunked || rr.closeDelim || rr.sse)
	o.Stream, o.Status = streaming, rr.status
	scan := newBodyScanner()
	defer func() { o.Tokens, o.TokensFromUsage = scan.tokens(); o.StreamError = scan.streamError }()
	out := x.appendHead(sc.out[:0], streaming)
	br := x.pc.br
	remaining := rr.contentLength
	if !rr.bodiless && remaining > 0 && br.Buffered() > 0 {
		// Usually the whole answer came with its head: one write.
		n := min(int64(br.Buffered()), remaining)
		b, _ := br.Peek(int(n))
		x.observe(b, false, &scan)
		out = append(out, b...)
		_, _ = br.Discard(int(n))
		remaining -= n
	}
	sc.out = out
	if !x.writeClient(out) {
		return false
	}
	switch {
	case rr.bodiless:
		x.reusePC = !rr.close
		return true
	case rr.contentLength >= 0:
		bp := bodyBufPool.Get().(*[]byte)
		defer bodyBufPool.Put(bp)
		buf := *bp
		for remaining > 0 {
			if err := x.wait(armIdle); err != nil {
				return x.broke(err)
			}
			n, err := br.Read(buf[:min(int64(len(buf)), remaining)])
			if n > 0 {
				x.observe(buf[:n], false, &scan)
				if !x.writeClient(buf[:n]) {
					return false
				}
				remaining -= int64(n)
			}
			if err != nil && remaining > 0 {
				return x.broke(err)
			}
		}
		x.reusePC = !rr.close
		return true
	case rr.chunked:
		var cp chunkParser
		data := func(p []byte) { x.observe(p, true, &scan) }
		for !cp.done {
			if err := x.wait(armIdle); err != nil {
				return x.broke(err)
			}
			b, _ := br.Peek(br.Buffered())
			n, err := cp.feed(b, data)
			if err != nil {
				return x.broke(fmt.Errorf("malformed chunked answer: %w", err))
			}
			ok := x.writeClient(b[:n])
			_, _ = br.Discard(n)
			if !ok {
				return false
			}
		}
		x.reusePC = !rr.close
		return true
	default: // until the replica closes: chunk it for the client
		for {
			err := x.wait(armIdle)
			if errors.Is(err, io.EOF) {
				return x.writeClient(lastChunk)
			}
			if err != nil {
				return x.broke(err)
			}
			b, _ := br.Peek(br.Buffered())
			x.observe(b, true, &scan)
			c := strconv.AppendInt(sc.out[:0], int64(len(b)), 16)
			c = append(c, "\r\n"...)
			c = append(c, b...)
			c = append(c, "\r\n"...)
			sc.out = c
			_, _ = br.Discard(len(b))
			if !x.writeClient(c) {
				return false
			}
		}
	}
}

var lastChunk = []byte("0\r\n\r\n")

// observe feeds relayed body bytes to the scanner and the shadow capture.
func (x *rawExchange) observe(p []byte, stream bool, scan *bodyScanner) {
	if len(p) == 0 {
		return
	}
	if x.obs.Bytes == 0 {
		x.obs.TTFT = time.Since(x.obs.Start)
	}
	x.obs.Bytes += int64(len(p))
	scan.scan(p, stream)
	if x.capture != nil {
		x.capture.add(p)
	}
}

// writeClient writes to the client; a failure means it hung up.
func (x *rawExchange) writeClient(b []byte) bool {
	if _, err := x.sc.write(b); err != nil {
		x.obs.Error = clientGoneCode(err)
		x.sc.gone.Store(true)
		return false
	}
	return true
}

// broke records a replica failure after the head went out: the client
// connection is closed so it sees a cut answer, never a complete one.
func (x *rawExchange) broke(err error) bool {
	x.timedOut = x.armed
	if x.sc.gone.Load() {
		x.obs.Error = "client_closed"
		return false
	}
	a := x.failed(err)
	a.answered, a.afterHead = true, true
	x.obs.Error = classify(a).answer.code
	x.h.log.Warn("upstream broke mid-response", "pool", x.e.Pool.Name, "replica", x.obs.Replica.Name, "error", err.Error())
	return false
}

// startWatch looks whether the client hung up while the exchange waits
// on the replica, each time a wait lasted watchAfter: a non-blocking peek
// of the client connection from the exchange's own goroutine, so that a
// waiting stream holds one goroutine, not a second one blocked in a read
// of the client. A hang-up sets gone, which the next arm turns into an
// expired deadline. Pipelined bytes (buffered, or in the socket) make
// further looks pointless: the client is there.
func (sc *srvConn) startWatch() {
	if sc.watching {
		return
	}
	if sc.br != nil && sc.br.Buffered() > 0 || sc.pending >= 0 {
		sc.watching = true
		return
	}
	_ = sc.c.SetReadDeadline(time.Time{}) // a past one would fail the peek
	switch peekClient(sc.c) {
	case peerSent:
		sc.watching = true
	case peerGone:
		sc.gone.Store(true)
	}
	// The exchange waits: until its end it reads no request byte and
	// writes none to the replica (the request is written, or its body
	// goes straight to the socket), so those buffers go back to their
	// pools, and a stream that waits long holds only the one it reads.
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

// clientReaders are the readers of client connections whose exchange
// waits long; upWriters the writers of replica connections between
// requests.
var (
	clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	upWriters     = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
	upReaders     = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
)

// writer returns the connection's writer, taken from upWriters if it has
// none.
func (pc *upConn) writer() *bufio.Writer {
	if pc.bw == nil {
		pc.bw = upWriters.Get().(*bufio.Writer)
		pc.bw.Reset(pc.c)
	}
	return pc.bw
}

// fill waits until the connection's reader holds a byte of the answer.
// A reader released during a long wait is taken back once the socket
// has bytes (or news) to read.
func (pc *upConn) fill() error {
	if pc.br.Size() == 0 {
		if err := waitReadable(pc.c); err != nil {
			return err
		}
		pc.takeReader()
	}
	_, err := pc.br.Peek(1)
	return err
}

// takeReader gives a released reader a buffer again.
func (pc *upConn) takeReader() {
	if pc.br.Size() == 0 {
		*pc.br = *upReaders.Get().(*bufio.Reader) // the same *bufio.Reader: callers may hold it
		pc.br.Reset(&pc.cr)
	}
}

// releaseReader gives the buffer of the connection's reader back to
// upReaders while it holds no byte; fill takes one again. The reader
// itself stays, empty, so that whoever holds it keeps a valid one.
func (pc *upConn) releaseReader() {
	if pc.br.Size() == 0 || pc.br.Buffered() > 0 {
		return
	}
	r := new(bufio.Reader)
	*r = *pc.br
	r.Reset(nil)
	upReaders.Put(r)
	*pc.br = bufio.Reader{}
}

// releaseWriter gives the connection's writer back to upWriters: only
// between requests, or once the request went out.
func (pc *upConn) releaseWriter() {
	if pc.bw != nil {
		pc.bw.Reset(nil)
		upWriters.Put(pc.bw)
		pc.bw = nil
	}
}

// chunkParser follows HTTP/1.1 chunked framing (RFC 9112 section 7.1)
// across reads, handing out the data and finding the end of the last
// chunk's trailer section.
type chunkParser struct {
	state   uint8
	size    int64 // data bytes left in the current chunk
	digits  int
	lineLen int
	done    bool
}

const (
	chunkSize     = iota // hex digits
	chunkExt             // extension up to LF
	chunkData            // size bytes
	chunkDataCR          // CR after data
	chunkDataLF          // LF after data
	chunkTrailer         // start of a trailer line (or the final CRLF)
	chunkTrailerL        // inside a trailer line
)

// maxChunkLine bounds a chunk-size or trailer line.
const maxChunkLine = 4096

// feed consumes b up to the end of the body and returns how many bytes
// belong to it, calling data with each run of chunk data.
func (p *chunkParser) feed(b []byte, data func([]byte)) (int, error) {
	i := 0
	for i < len(b) && !p.done {
		c := b[i]
		switch p.state {
		case chunkSize:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if p.digits == 15 {
					return 0, errors.New("chunk size too large")
				}
				p.size = p.size<<4 | int64(unhex(c))
				p.digits++
			case c == ';' || c == ' ' || c == '\t' || c == '\r':
				if p.digits == 0 {
					return 0, errors.New("missing chunk size")
				}
				p.state, p.lineLen = chunkExt, 0
			case c == '\n':
				if p.digits == 0 {
					return 0, errors.New("missing chunk size")
				}
				p.endSizeLine()
			default:
				return 0, fmt.Errorf("bad chunk size byte %q", c)
			}
			i++
		case chunkExt:
			if c == '\n' {
				p.endSizeLine()
			} else if p.lineLen++; p.lineLen > maxChunkLine {
				return 0, errors.New("chunk extension too long")
			}
			i++
		case chunkData:
			n := min(int64(len(b)-i), p.size)
			data(b[i : i+int(n)])
			i += int(n)
			if p.size -= n; p.size == 0 {
				p.state = chunkDataCR
			}
		case chunkDataCR:
			switch c {
			case '\r':
				p.state = chunkDataLF
			case '\n':
				p.state = chunkSize
			default:
				return 0, errors.New("chunk data longer than its size")
			}
			i++
		case chunkDataLF:
			if c != '\n' {
				return 0, errors.New("chunk data longer than its size")
			}
			p.state = chunkSize
			i++
		case chunkTrailer:
			switch c {
			case '\r':
			case '\n':
				p.done = true
			default:
				p.state, p.lineLen = chunkTrailerL, 0
			}
			i++
		case chunkTrailerL:
			if c == '\n' {
				p.state = chunkTrailer
			} else if p.lineLen++; p.lineLen > maxChunkLine {
				return 0, errors.New("trailer line too long")
			}
			i++
		}
	}
	return i, nil
}

func (p *chunkParser) endSizeLine() {
	p.digits = 0
	if p.size == 0 {
		p.state = chunkTrailer
		return
	}
	p.state = chunkData
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

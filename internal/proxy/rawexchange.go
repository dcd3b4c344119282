package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

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

	// A stream's relay, kept here so that it can stop at a long wait and
	// go on later (see park).
	scan     bodyScanner
	cp       chunkParser
	parking  bool      // the wait being armed may park: its deadline includes parkAfter
	parked   bool      // the stream stopped at a long wait: sc.parked is x
	woke     bool      // the parked wait ended with wakeErr: the next wait goes on with it
	wakeErr  error     // nil: the replica's socket has bytes (or news) to read
	ready    readiness // the parked wait's
	mirrored bool      // serveRequest's: the request is mirrored
	held     int64     // what the body holds of h.buffered until the request ends
	// rewritten is body's storage when the model_name rule rewrote it
	// (from rewriteBufs): given back when the exchange ends.
	rewritten *[]byte

	onData   func([]byte)  // feeds a stream's chunk data to observe; made once per exchange
	turn     *turnState    // a stream's while its waits are short (see pump)
	parkLate time.Duration // added to parkAfter while a deadline is moved lazily (see pumpRearm)
}

var rawExchangePool = sync.Pool{New: func() any { return new(rawExchange) }}

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
func (x *rawExchange) releaseConn(now time.Time) {
	if x.pc == nil {
		return
	}
	x.sc.cur.Store(nil)
	if x.reusePC && !x.sc.gone.Load() && x.pc.br.Buffered() == 0 {
		x.pc.takeReader() // the pool's other users read with it
		x.h.up.put(x.pc, now)
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
		// A reused connection is looked at as the request is written
		// (see upConn.flush), not here.
		pc, reused, err := u.take(ctx, host, attempt > 0, false, x.obs.Start)
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
			err = x.readHead() // its first wait sends a small request
		}
		if errors.Is(err, errStale) {
			// A pooled connection the replica closed, or with bytes no
			// request asked for: nothing was written. Take the next one
			// (the same attempt), or fail on a new one. Closed: so are
			// those idle longer (see dropIdleSince).
			x.closeConn()
			if reused {
				if pc.peek.peerClosed() {
					u.dropIdleSince(host, pc.idleSince)
				}
				attempt--
				continue
			}
			return err
		}
		if err != nil && pc.wrote.IsZero() && mayHaveAnswered(err) && !x.sc.gone.Load() {
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

var (
	errClientGone = errors.New("client closed the request")
	errStale      = errors.New("pooled replica connection closed or holds unread bytes")
)

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

// relay sends the replica's answer to the client: the head, then the
// body as it arrives, one client write per replica read, with the chunk
// framing passed through. It reports whether the client connection can
// serve another request.
func (x *rawExchange) relay() bool {
	sc, rr, o := x.sc, x.resp, &x.obs
	now := time.Now() // the head's, and the first write's
	o.TTFB = now.Sub(o.Start)
	streaming := !rr.bodiless && (rr.chunked || rr.closeDelim || rr.sse)
	o.Stream, o.Status = streaming, rr.status
	x.scan = newBodyScanner()
	defer func() {
		if !x.parked {
			x.scanned()
		}
	}()
	out := x.appendHead(sc.out[:0], streaming)
	br := x.pc.br
	remaining := rr.contentLength
	if !rr.bodiless && remaining > 0 && br.Buffered() > 0 {
		// Usually the whole answer came with its head: one write.
		n := min(int64(br.Buffered()), remaining)
		b, _ := br.Peek(int(n))
		o.TTFT = o.TTFB // it came with the head
		x.observe(b, false, &x.scan)
		out = append(out, b...)
		_, _ = br.Discard(int(n))
		remaining -= n
	}
	sc.out = out
	if !rr.bodiless && rr.contentLength < 0 {
		return x.startStream(out, now) // chunked, or until the replica closes
	}
	if !x.writeClientAt(nil, out, now) {
		return false
	}
	switch {
	case rr.bodiless:
		x.reusePC = !rr.close
		return true
	case rr.contentLength >= 0:
		if remaining > 0 && !x.relayRest(br, remaining) {
			return false
		}
		x.reusePC = !rr.close
		return true
	}
	return true
}

// relayRest relays the remaining bytes of a Content-Length body that did
// not come with the head. It is relay's, apart: with its deferred put,
// relay had more returns times defers than the compiler open-codes
// (15), and every answer paid for a deferred call record.
func (x *rawExchange) relayRest(br *bufio.Reader, remaining int64) bool {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	for remaining > 0 {
		if err := x.wait(armIdle); err != nil {
			return x.broke(err)
		}
		n, err := br.Read(buf[:min(int64(len(buf)), remaining)])
		if n > 0 {
			x.observe(buf[:n], false, &x.scan)
			if !x.writeClient(buf[:n]) {
				return false
			}
			remaining -= int64(n)
		}
		if err != nil && remaining > 0 {
			return x.broke(err)
		}
	}
	return true
}

// startStream writes the head of a streamed answer, with the chunked
// body bytes that came with it, and relays the rest of the body (see
// stream).
func (x *rawExchange) startStream(head []byte, now time.Time) bool {
	x.cp = chunkParser{}
	x.onData = func(p []byte) { x.observe(p, true, &x.scan) }
	x.takeTurn()
	br := x.pc.br
	var body []byte
	var err error
	if x.resp.chunked && br.Buffered() > 0 {
		b, _ := br.Peek(br.Buffered())
		n, ferr := x.cp.feed(b, x.onData)
		if ferr != nil {
			n, err = 0, fmt.Errorf("malformed chunked answer: %w", ferr)
		}
		body = b[:n]
	}
	ok := x.writeClientAt(head, body, now)
	_, _ = br.Discard(len(body))
	if !ok {
		return false
	}
	if err != nil {
		return x.broke(err)
	}
	return x.stream()
}

// stream relays the body of a chunked answer, or of one that ends when
// the replica closes (chunked for the client), from where it is: one
// client write per replica read. A wait that grows long parks the stream
// (see park) and returns. While the stream's waits are short, its reads,
// writes and waits run in one turn of the runtime poller where the
// platform allows (see pump).
func (x *rawExchange) stream() bool {
	rr := x.resp
	for !x.cp.done {
		var err error
		if x.canPump() {
			err = x.pump()
		} else if err = x.waitStream(); err == nil {
			err = x.relayBuffered()
		}
		switch {
		case err == nil:
		case err == errParked, err == errClientWrite:
			return false
		case !rr.chunked && errors.Is(err, io.EOF):
			return x.writeClient(lastChunk)
		default:
			return x.broke(err)
		}
	}
	x.reusePC = !rr.close
	return true
}

// errClientWrite: a write to the client failed (writeClient recorded it).
var errClientWrite = errors.New("client write failed")

// relayBuffered sends what the replica connection's reader holds on to
// the client: a chunked body's bytes as they came (up to its end), a
// close-delimited body's as one chunk.
func (x *rawExchange) relayBuffered() error {
	sc, br := x.sc, x.pc.br
	b, _ := br.Peek(br.Buffered())
	if x.resp.chunked {
		n, err := x.cp.feed(b, x.onData)
		if err != nil {
			return fmt.Errorf("malformed chunked answer: %w", err)
		}
		ok := n == 0 || x.writeClient(b[:n])
		_, _ = br.Discard(n)
		if !ok {
			return errClientWrite
		}
		return nil
	}
	if len(b) == 0 {
		return nil
	}
	x.observe(b, true, &x.scan)
	c := strconv.AppendInt(sc.out[:0], int64(len(b)), 16)
	c = append(c, "\r\n"...)
	c = append(c, b...)
	c = append(c, "\r\n"...)
	sc.out = c
	_, _ = br.Discard(len(b))
	if !x.writeClient(c) {
		return errClientWrite
	}
	return nil
}

// park stops a stream whose wait grew long (it holds no read buffer by
// then; the replica connection's read deadline is armed): its relay
// returns up through the connection's loop, which hands the stream to
// srvConn.serveParked; that waits for the replica's socket at the top of
// its stack and calls resume.
func (x *rawExchange) park() {
	x.releaseTurn()
	x.parked = true
	x.sc.parked = x
}

// resume goes on with a parked stream whose wait ended with err (nil: the
// replica's socket has bytes, or news, to read; a timeout: the armed
// deadline passed). Once the stream ends it does what forward and
// serveRequest do after a relay, and reports whether the connection can
// serve another request; a stream that parks again returns false with
// sc.parked set.
func (x *rawExchange) resume(err error) bool {
	x.parked, x.woke, x.wakeErr = false, true, err
	keep := x.stream()
	if x.parked {
		return false
	}
	x.scanned()
	rep := x.obs.Replica
	rep.Release()
	x.h.opts.Outlier.Record(x.e.Pool, rep, relayOutcome(&x.obs))
	return x.end(keep)
}

// end ends the exchange, as serveRequest does after forwarding: it
// releases the replica connection, reports the observation and the
// mirror, and puts x back in its pool. It reports whether the client
// connection can serve another request.
func (x *rawExchange) end(keep bool) bool {
	sc, h, body := x.sc, x.h, x.body
	x.releaseTurn()
	sc.stopWatch()
	now := time.Now()
	x.releaseConn(now)
	x.obs.Duration = now.Sub(x.obs.Start)
	sc.ended = now
	if x.mirrored && (x.rewritten != nil || len(sc.body) > 0 && &body[0] == &sc.body[0]) {
		body = bytes.Clone(body) // the mirror keeps it; its buffer is reused
	}
	h.finish(&x.obs, x.e, sc.req.path, body, x.mirrored, x.capture)
	h.buffered.give(x.held)
	if x.rewritten != nil {
		putRewriteBuf(x.rewritten)
	}
	*x = rawExchange{}
	rawExchangePool.Put(x)
	return keep && !sc.gone.Load()
}

// scanned records what the body scanner found in the observation.
func (x *rawExchange) scanned() {
	x.obs.Tokens, x.obs.TokensFromUsage = x.scan.tokens()
	x.obs.StreamError = x.scan.streamError
}

// observe feeds relayed body bytes to the scanner and the shadow capture.
func (x *rawExchange) observe(p []byte, stream bool, scan *bodyScanner) {
	if len(p) == 0 {
		return
	}
	if x.obs.Bytes == 0 && x.obs.TTFT == 0 {
		x.obs.TTFT = time.Since(x.obs.Start)
	}
	x.obs.Bytes += int64(len(p))
	scan.scan(p, stream)
	if x.obs.trace != nil {
		x.obs.trace.scan.scan(p)
	}
	if x.capture != nil {
		x.capture.add(p)
	}
}

// writeClient writes to the client; a failure means it hung up.
func (x *rawExchange) writeClient(b []byte) bool { return x.writeClientAt(nil, b, time.Time{}) }

// writeClientAt writes head and then b (either may be empty) as
// writeClient does, in one system call when it can, with the clock read
// at now (zero: not read yet).
func (x *rawExchange) writeClientAt(head, b []byte, now time.Time) bool {
	if _, err := x.sc.writevAt(head, b, now); err != nil {
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

// outBufs hold the connection loop's requests while they are built.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// maxKeptOut is the largest request buffer that goes back to outBufs.
const maxKeptOut = 64 << 10

// takeOut returns an empty buffer for the next request.
func (pc *upConn) takeOut() []byte {
	if pc.out == nil {
		pc.out = outBufs.Get().(*[]byte)
	}
	return (*pc.out)[:0]
}

// releaseOut gives the request buffer back: once sent, or not to be.
func (pc *upConn) releaseOut() {
	if pc.out != nil {
		if cap(*pc.out) <= maxKeptOut {
			*pc.out = (*pc.out)[:0]
			outBufs.Put(pc.out)
		}
		pc.out = nil
	}
}

// flush sends the request in pc.out (built by writeRequest) with
// sendChecked: on a connection with unread bytes, or closed, nothing is
// written and the error is errStale. With wait (the answer's first wait)
// it returns once the answer's first bytes can be read.
func (pc *upConn) flush(wait bool) error {
	b := *pc.out
	now := pc.armed // the write follows at once; the wait may be long
	if now.IsZero() {
		now = time.Now()
	}
	n, err := pc.peek.sendChecked(pc.c, b, wait)
	if err == nil && n < len(b) {
		var m int
		m, err = pc.c.Write(b[n:])
		n += m
		now = time.Now()
	}
	pc.releaseOut()
	if n == len(b) {
		pc.wrote = now
	}
	return err
}

// fill waits until the connection's reader holds a byte of the answer,
// sending the request first when it waits to be (see flush).
// A reader released during a long wait is taken back once the socket
// has bytes (or news) to read.
func (pc *upConn) fill() error {
	if pc.out != nil {
		if err := pc.flush(true); err != nil {
			return err
		}
	}
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

// releaseWriter gives the connection's writer back to upWriters (and a
// request buffer to outBufs): only between requests, or once the request
// went out.
func (pc *upConn) releaseWriter() {
	pc.releaseOut()
	if pc.bw != nil {
		pc.bw.Reset(nil)
		upWriters.Put(pc.bw)
		pc.bw = nil
	}
}

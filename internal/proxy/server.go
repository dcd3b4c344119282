package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves a Handler's client traffic with a connection loop built
// for the proxy's one job: read a request head, send it on to a replica,
// relay the answer. One goroutine per client connection does all of it,
// with no http.Request, no header maps and no per-request goroutine; the
// replica's response head and chunk framing are relayed as read, so a
// stream's chunks reach the client exactly as the replica flushed them.
//
// It serves HTTP/1.1 requests with a Content-Length body (or none) for
// pools of plain-HTTP replicas reached through an *Upstream. Any other
// connection (HTTP/1.0, a chunked request body, an absolute-form target,
// an unusual Expect or Host, folded header lines, HTTPS replicas) is
// handed, with the bytes already read, to a net/http server running the
// same Handler, so behaviour never depends on the path taken. A Handler
// built with another Transport (proxy.client net/http) is served by that
// net/http server alone: Serve builds it at start and hands it every
// connection as accepted.
type Server struct {
	// Handler is the data plane. Required.
	Handler *Handler
	// ReadHeaderTimeout bounds the reading of a request's head from its
	// first byte, on the loop and net/http alike (a hand-off does not
	// restart it). Zero means 30s. The Handler's BodyTimeout bounds the
	// body.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no new request for
	// that long. Zero means 2 minutes.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request head; beyond it the answer is 431.
	// Zero means 64 KiB (nginx's defaults allow about 32 KiB).
	MaxHeaderBytes int
	// MaxHeaderFields bounds the header lines of a request the loop
	// reads; beyond it the answer is 431. Zero means 100 (Apache's and
	// Envoy's default).
	MaxHeaderFields int
	// ErrorLog receives the fallback server's errors. Nil means the log
	// package's standard logger.
	ErrorLog *log.Logger
	// OnFallback, when set, is called each time a connection is handed to
	// the net/http server, with why: http_version, target_form,
	// chunked_body, expect, host, line_folding, https_replicas or client.
	OnFallback func(reason string)
	// DrainGrace is how long, once Shutdown began, a request that arrives
	// on an idle kept-alive connection is still answered (with
	// Connection: close) before idle connections are closed: a client
	// may have sent it before it could learn of the shutdown. Zero means
	// 1s; negative means none.
	DrainGrace time.Duration

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*srvConn]struct{}
	fallback   *http.Server
	fallbackLn *chanListener
	shutdown   atomic.Bool
	graceEnd   atomic.Int64   // Unix nanoseconds when DrainGrace ends; set before shutdown
	wg         sync.WaitGroup // connection goroutines
}

// errServerClosed is Serve's answer after Shutdown or Close.
var errServerClosed = http.ErrServerClosed

// watchAfter is how long an upstream wait may last before the connection
// starts watching the client for a hang-up (which then stops the
// replica's work). Shorter exchanges never pay for the watcher.
const watchAfter = 500 * time.Millisecond

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutdown.Load() { // under the lock: Shutdown closes what it finds registered
		s.mu.Unlock()
		return errServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*srvConn]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	direct := s.Handler.up == nil // every connection goes to net/http
	if direct && s.fallback == nil {
		s.startFallbackLocked(ln.Addr())
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return errServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if direct {
			if !s.handOffAccepted(c) {
				return errServerClosed
			}
			continue
		}
		sc := s.newConn(c)
		if sc == nil {
			_ = c.Close()
			return errServerClosed
		}
		go sc.serve()
	}
}

func (s *Server) newConn(c net.Conn) *srvConn {
	sc := &srvConn{s: s, c: c, h: s.Handler, pending: -1}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		sc.ip = host
	}
	sc.rd.c = sc
	sc.br = clientReaders.Get().(*bufio.Reader)
	sc.br.Reset(&sc.rd)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return nil
	}
	s.conns[sc] = struct{}{}
	s.wg.Add(1)
	return sc
}

func (s *Server) forget(sc *srvConn) {
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown stops accepting, closes idle connections once DrainGrace has
// passed (a request arriving on one before is answered), and waits for
// the requests and streams in flight to finish (their connections close
// after the answer), or for ctx. Connections handed to the net/http
// fallback drain the same way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.graceEnd.Store(time.Now().Add(s.drainGrace()).UnixNano())
	s.shutdown.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	// The fallback server is not shut down while connections drain:
	// net/http drops a request whose head it finishes reading after its
	// Shutdown began, and a connection handed over mid-drain has one.
	// Its handler closes each connection after its answer (fallbackHandler);
	// once the grace ends, without keep-alives it closes idle ones too
	// (called every tick: it may be created meanwhile).
	fallback := func() *http.Server {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.fallback
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.pastGrace() {
			if fb := fallback(); fb != nil {
				fb.SetKeepAlivesEnabled(false)
			}
			s.mu.Lock()
			for sc := range s.conns {
				if sc.state.Load() == stateIdle {
					_ = sc.c.Close()
				}
			}
			s.mu.Unlock()
		}
		select {
		case <-done: // every connection, handed over or not, is closed
			if fb := fallback(); fb != nil {
				_ = fb.Close()
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.shutdown.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for sc := range s.conns {
		_ = sc.c.Close()
	}
	fb := s.fallback
	s.mu.Unlock()
	if fb != nil {
		return fb.Close()
	}
	return nil
}

// handOff gives a connection to the net/http server, replaying the bytes
// the loop already read. The connection stays counted in s.wg until
// net/http closes it, so Shutdown waits for it like for its own.
func (s *Server) handOff(c net.Conn, replay []byte, headDeadline time.Time) {
	rc := &replayConn{Conn: c, replay: replay, done: s.wg.Done, headDeadline: headDeadline}
	s.mu.Lock()
	if s.fallback == nil {
		s.startFallbackLocked(c.LocalAddr())
	}
	// s.mu stays held until the fallback accepts the connection:
	// Shutdown reads s.fallback under it, so it cannot stop the fallback
	// between its creation and this hand-off (Accept takes no lock).
	ln := s.fallbackLn
	defer s.mu.Unlock()
	select {
	case ln.ch <- rc:
	case <-ln.done:
		// The fallback server is draining and accepts nothing more: say
		// so rather than drop a request silently.
		_, _ = io.WriteString(c, shuttingDownAnswer)
		_ = rc.Close()
	}
}

// shuttingDownAnswer is the whole answer to a request that arrives for the
// net/http path once it stopped accepting.
var shuttingDownAnswer = func() string {
	body := (&apiError{status: http.StatusServiceUnavailable, typ: "server_error", code: "shutting_down",
		msg: "the gateway is shutting down; send the request again"}).appendJSON(nil)
	return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
}()

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return 30 * time.Second
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return 2 * time.Minute
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return 64 << 10
}

func (s *Server) maxHeaderFields() int {
	if s.MaxHeaderFields > 0 {
		return s.MaxHeaderFields
	}
	return 100
}

// chanListener feeds handed-off connections to the fallback server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// replayConn returns replay before reading from the connection, and
// calls done once when closed.
type replayConn struct {
	net.Conn
	replay []byte
	done   func()
	once   sync.Once
	// headDeadline is the deadline of the head that began arriving before
	// the hand-off (zero: none); see SetReadDeadline.
	headDeadline time.Time
	clamped      atomic.Bool
	// framing watches the request heads net/http reads from it.
	framing framingScan
}

func (c *replayConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.done)
	return err
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		c.framing.scan(p[:n])
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.framing.scan(p[:n])
	return n, err
}

// framingScan notices a request head with both Content-Length and
// Transfer-Encoding (RFC 9112 section 6.1) in the bytes net/http reads
// from a handed-off connection: net/http deletes the Content-Length
// before its Handler runs, so only the raw bytes tell. It looks at the
// start of every line and treats an empty line as the end of a head; body
// lines that look like such fields can only make it close a connection
// that need not close. Reads are not concurrent (net/http serializes
// them); conflict is read by the Handler.
type framingScan struct {
	line     [len("transfer-encoding:")]byte // the current line's first bytes
	n        int
	cl, te   bool // seen since the last empty line
	conflict atomic.Bool
}

func (f *framingScan) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if f.n < len(f.line) {
			f.n += copy(f.line[f.n:], seg)
		}
		if i < 0 {
			return
		}
		f.endLine()
		p = p[i+1:]
	}
}

func (f *framingScan) endLine() {
	l := f.line[:f.n]
	f.n = 0
	switch {
	case len(l) == 0 || len(l) == 1 && l[0] == '\r':
		f.cl, f.te = false, false
	case len(l) >= len("content-length:") && equalFold(l[:len("content-length:")], "Content-Length:"):
		f.cl = true
	case len(l) >= len("transfer-encoding:") && equalFold(l[:len("transfer-encoding:")], "Transfer-Encoding:"):
		f.te = true
	}
	if f.cl && f.te {
		f.conflict.Store(true)
	}
}

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
	br *bufio.Reader
	ip string // the client's address, for X-Forwarded-For

	state atomic.Int32

	// The current request.
	head     []byte   // its head, as read
	fields   []hfield // its header lines, as offsets into head
	req      rawReq
	fallback string  // why readRequest chose the net/http path
	unread   bool    // the client may still be sending what the answer skipped
	body     []byte  // reusable body buffer
	out      []byte  // reusable response head buffer
	uhead    []byte  // the replica's response head, as read
	resp     rawResp // what was parsed of it

	// The looks at the client while an exchange waits (see startWatch).
	watching bool
	gone     atomic.Bool            // the client hung up
	cur      atomic.Pointer[upConn] // the replica connection to stop then
	pending  int                    // a byte the watcher read, or -1

	wdl          writeDeadline // the client write deadline
	retryAfter   string        // the next gateway answer's Retry-After
	headDeadline time.Time     // the current head's, zero when none was set
	saidClose    bool          // the current answer said Connection: close
}

// connReader lets a byte read by the watcher come first.
type connReader struct{ c *srvConn }

func (r *connReader) Read(p []byte) (int, error) {
	if r.c.pending >= 0 && len(p) > 0 {
		p[0] = byte(r.c.pending)
		r.c.pending = -1
		return 1, nil
	}
	return r.c.c.Read(p)
}

// hfield locates one header line's name and value in srvConn.head.
type hfield struct{ ns, ne, vs, ve int32 }

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
}

// serve runs the connection's request loop.
func (sc *srvConn) serve() {
	handedOff := false
	defer func() {
		if handedOff {
			return
		}
		if sc.unread {
			sc.lingerClose()
		}
		_ = sc.c.Close()
		sc.s.forget(sc)
	}()
	for {
		sc.state.Store(stateIdle)
		if sc.s.pastGrace() {
			return
		}
		if sc.br.Buffered() == 0 {
			// One deadline per request in the common case: the wait for
			// it. The head and body usually arrive with the first byte.
			_ = sc.c.SetReadDeadline(time.Now().Add(sc.s.idleTimeout()))
			if _, err := sc.br.Peek(1); err != nil {
				return
			}
		}
		sc.state.Store(stateActive)
		sc.headDeadline = time.Time{}
		if b, _ := sc.br.Peek(sc.br.Buffered()); !bytes.Contains(b, crlfcrlf) {
			sc.headDeadline = time.Now().Add(sc.s.readHeaderTimeout())
			_ = sc.c.SetReadDeadline(sc.headDeadline)
		}
		verdict, status := sc.readRequest()
		t := sc.h.table.Load()
		if verdict == headOK {
			if why := sc.slowPath(t); why != "" {
				verdict, sc.fallback = headFallback, why
			}
		}
		switch verdict {
		case headFallback:
			replay := make([]byte, 0, len(sc.head)+len(closeField)+sc.br.Buffered())
			replay = appendReplayHead(replay, sc.head, sc.req.framingConflict)
			rest, _ := sc.br.Peek(sc.br.Buffered())
			replay = append(replay, rest...)
			_ = sc.c.SetReadDeadline(time.Time{})
			handedOff = true
			if f := sc.s.OnFallback; f != nil {
				f(sc.fallback)
			}
			sc.s.mu.Lock()
			delete(sc.s.conns, sc) // net/http owns it now; s.wg counts it until it closes
			sc.s.mu.Unlock()
			sc.s.handOff(sc.c, replay, sc.headDeadline)
			return
		case headBad:
			code := "bad_request"
			switch status {
			case http.StatusRequestHeaderFieldsTooLarge:
				code = "request_header_too_large"
			case http.StatusNotImplemented:
				code = "unsupported_transfer_encoding"
			}
			sc.req.close, sc.unread = true, true
			sc.writeError(&apiError{status: status, typ: "invalid_request_error", code: code, msg: "malformed request: " + http.StatusText(status)}, nil, nil)
			return
		case headEOF:
			return
		}
		sc.saidClose = false
		keep := sc.serveRequest(t)
		if cap(sc.head) > maxKeptBody {
			// Only once the request is done: its header fields are
			// offsets into sc.head.
			sc.head = nil
		}
		// An answer sent without Connection: close (Shutdown began after
		// its head went out) lets the client send another request: the
		// loop's top decides whether the drain's grace still allows it.
		if !keep || sc.req.close || sc.saidClose {
			return
		}
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// visibleASCII reports whether b holds only printable ASCII (no control
// byte, space or DEL), as a request target must.
func visibleASCII(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] {
		// Eight bytes at a time: any byte under 0x21, or over 0x7e.
		x := binary.LittleEndian.Uint64(b)
		if ((x-lo8*0x21)&^x|(x+lo8)|x)&hi8 != 0 {
			return false
		}
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// validFieldValue reports whether a header value is free of control bytes
// other than tab (RFC 9110 section 5.5; net/http's rule too). Bytes from
// 0x80 up are allowed as obs-text.
func validFieldValue(b []byte) bool {
	if len(b) < 8 {
		return validFieldBytes(b)
	}
	// Eight bytes at a time, then the last eight (overlapping): any byte
	// under 0x20 or a DEL sends the eight to the byte loop (which allows
	// tabs).
	l := b[len(b)-8:]
	for ; len(b) >= 8; b = b[8:] {
		if !validFieldWord(b[:8]) {
			return false
		}
	}
	return validFieldWord(l)
}

func validFieldWord(b []byte) bool {
	x := binary.LittleEndian.Uint64(b)
	y := x ^ (lo8 * 0x7f)
	return ((x-lo8*0x20)&^x|(y-lo8)&^y)&hi8 == 0 || validFieldBytes(b[:8])
}

func validFieldBytes(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// lo8 and hi8 have the low and the high bit of each of eight bytes set:
// the word-at-a-time tests of Hacker's Delight (haszero, hasless,
// hasmore), exact as tests of the whole word.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

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
	sc.req, sc.fields, sc.fallback = ph.rawReq, ph.fields, ph.fallback
	return ph.verdict, ph.status
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

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// isToken reports an RFC 9110 token: a method or a header name.
func isToken(b []byte) bool {
	t := &tokenBytes
	switch n := len(b); {
	case n >= 8:
		// Eight bytes at a time, then the last eight (overlapping).
		l := b[n-8:]
		for ; len(b) >= 8; b = b[8:] {
			if t[b[0]]&t[b[1]]&t[b[2]]&t[b[3]]&t[b[4]]&t[b[5]]&t[b[6]]&t[b[7]] == 0 {
				return false
			}
		}
		return t[l[0]]&t[l[1]]&t[l[2]]&t[l[3]]&t[l[4]]&t[l[5]]&t[l[6]]&t[l[7]] != 0
	case n >= 4:
		return t[b[0]]&t[b[1]]&t[b[2]]&t[b[3]]&t[b[n-4]]&t[b[n-3]]&t[b[n-2]]&t[b[n-1]] != 0
	case n == 0:
		return false
	}
	for _, c := range b {
		if t[c] == 0 {
			return false
		}
	}
	return true
}

// tokenBytes is 1 for the bytes of a token, 0 for any other.
var tokenBytes = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 1
		t[c-'a'+'A'] = 1
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = 1
	}
	return t
}()

// equalFold compares ASCII case-insensitively without allocating.
func equalFold[T ~string | ~[]byte](b []byte, s T) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || (x|0x20) < 'a' || (x|0x20) > 'z' {
			return false
		}
	}
	return true
}

// parseContentLength parses a Content-Length value as net/http does:
// digits only (leading zeros allowed), at most 1<<63 - 1.
func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > math.MaxInt64 {
			return 0, false
		}
	}
	return int64(n), true
}

func internMethod(b []byte) string {
	switch string(b) {
	case http.MethodPost:
		return http.MethodPost
	case http.MethodGet:
		return http.MethodGet
	case http.MethodHead:
		return http.MethodHead
	}
	return string(b)
}

func internPath(b []byte) string {
	switch string(b) {
	case "/v1/chat/completions":
		return "/v1/chat/completions"
	case "/v1/completions":
		return "/v1/completions"
	case "/v1/models":
		return "/v1/models"
	case "/v1/embeddings":
		return "/v1/embeddings"
	case "/health":
		return "/health"
	}
	return string(b)
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
		_ = sc.c.SetReadDeadline(sc.h.bodyDeadline(time.Now()))
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

// Cached Date header value, one format per second.
type dateValue struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateValue]

func appendDate(b []byte, now time.Time) []byte {
	d := cachedDate.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateValue{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		cachedDate.Store(d)
	}
	b = append(b, "Date: "...)
	b = append(b, d.b...)
	return append(b, "\r\n"...)
}

// appendStatusLine writes "HTTP/1.1 <code> <reason>\r\n".
func appendStatusLine(b []byte, status int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	return append(b, "\r\n"...)
}

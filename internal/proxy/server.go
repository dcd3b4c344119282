package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log"
	"net"
	"net/http"
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
	// Route, when set, answers every request instead of Handler, and
	// every connection goes to the net/http server as with proxy.client
	// net/http (the connection loop routes to the live pool only), still
	// with the raw-byte framing checks (framingScan, fallbackHandler).
	// The preview listener sends everything to the standby pool with it.
	Route http.Handler

	// onProbe, when set (by tests), is called each time a turn's wait
	// for the next request ended at turnProbe.
	onProbe func()

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
	direct := s.Route != nil || s.Handler.up == nil // every connection goes to net/http
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
	sc := srvConns.Get().(*srvConn)
	sc.s, sc.c, sc.h, sc.pending = s, c, s.Handler, -1
	// TCP_NODELAY: the net package sets it on every TCP connection.
	sc.sk.init(c)
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		sc.ip = host
	}
	sc.rd.c = sc
	sc.br = clientReaders.Get().(*bufio.Reader)
	sc.br.Reset(&sc.rd)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		sc.recycle()
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

// framingScan notices, in the bytes net/http reads from a handed-off
// connection, a request head with both Content-Length and
// Transfer-Encoding, and an HTTP/1.0 head with Transfer-Encoding (RFC 9112
// section 6.1): net/http deletes the Content-Length, or in HTTP/1.0 the
// Transfer-Encoding, before its Handler runs, so only the raw bytes tell.
// It looks at the start and the end of every line and treats an empty
// line as the end of a head. Body lines that look like such fields can
// only make it close a connection that need not close, or refuse a later
// HTTP/1.0 request on the connection of the client that sent them. Reads
// are not concurrent (net/http serializes them); conflict and http10TE
// are read by the Handler.
type framingScan struct {
	line     [len("transfer-encoding:")]byte // the current line's first bytes
	n        int
	tail     [len(" HTTP/1.0\r")]byte // its last bytes, right-aligned
	cl, te   bool                     // seen since the last empty line
	http10   bool                     // a line since then ends in " HTTP/1.0"
	conflict atomic.Bool
	http10TE atomic.Bool // an HTTP/1.0 head had Transfer-Encoding
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
		if k := len(f.tail) - len(seg); k > 0 {
			copy(f.tail[:], f.tail[len(seg):])
			copy(f.tail[k:], seg)
		} else {
			copy(f.tail[:], seg[-k:])
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
	tail := f.tail[1:]
	if f.tail[len(f.tail)-1] == '\r' {
		tail = f.tail[:len(f.tail)-1]
	}
	if string(tail) == " HTTP/1.0" {
		f.http10 = true
	}
	f.tail = [len(f.tail)]byte{}
	switch {
	case len(l) == 0 || len(l) == 1 && l[0] == '\r':
		f.cl, f.te, f.http10 = false, false, false
	case len(l) >= len("content-length:") && equalFold(l[:len("content-length:")], "Content-Length:"):
		f.cl = true
	case len(l) >= len("transfer-encoding:") && equalFold(l[:len("transfer-encoding:")], "Transfer-Encoding:"):
		f.te = true
	}
	if f.cl && f.te {
		f.conflict.Store(true)
	}
	if f.http10 && f.te {
		f.http10TE.Store(true)
	}
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

// defaultDrainGrace is Server.DrainGrace's zero value.
const defaultDrainGrace = time.Second

func (s *Server) drainGrace() time.Duration {
	switch {
	case s.DrainGrace < 0:
		return 0
	case s.DrainGrace == 0:
		return defaultDrainGrace
	}
	return s.DrainGrace
}

// pastGrace reports that Shutdown began and its grace ended: idle
// connections close now. During the grace a request that arrives on one
// is answered, with Connection: close.
func (s *Server) pastGrace() bool {
	return s.shutdown.Load() && time.Now().UnixNano() >= s.graceEnd.Load()
}

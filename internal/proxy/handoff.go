package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cutover-dev/cutover/internal/errconn"
)

// handOff gives a connection to the net/http server, replaying the bytes
// the loop already read. The connection stays counted in s.wg until
// net/http closes it, so Shutdown waits for it like for its own.
func (s *Server) handOff(c net.Conn, replay []byte, headDeadline time.Time) {
	keepAliveOn(c) // net/http may wait on it long
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

// Write passes on what the net/http server writes, except the plain-text
// answers it writes by itself to a request it could not read (a malformed
// head, one too large, an unsupported transfer coding): those get the
// body the loop answers the same requests with (see package errconn).
func (c *replayConn) Write(p []byte) (int, error) { return errconn.Write(c.Conn, p, malformedBody) }

// malformedBody is errconn's Body for the traffic and preview listeners.
func malformedBody(status int, why string) []byte {
	return errMalformedHead(status, why).appendJSON(nil)
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

// startFallbackLocked builds the net/http server that serves the
// connections the loop hands over, and starts it. With proxy.client
// net/http (a Handler that does not send through an *Upstream) Serve
// builds it at start and hands it every connection as accepted; else the
// first hand-off does. s.mu is held.
func (s *Server) startFallbackLocked(addr net.Addr) {
	s.fallbackLn = &chanListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
	s.fallback = &http.Server{
		Handler:           fallbackHandler{s},
		ReadHeaderTimeout: s.readHeaderTimeout(),
		IdleTimeout:       s.idleTimeout(),
		MaxHeaderBytes:    s.maxHeaderBytes(),
		ErrorLog:          s.ErrorLog,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if rc, ok := c.(*replayConn); ok {
				return context.WithValue(ctx, framingKey{}, &rc.framing)
			}
			return ctx
		},
	}
	fb, ln := s.fallback, s.fallbackLn
	go func() { _ = fb.Serve(ln) }()
}

// handOffAccepted gives a newly accepted connection to the net/http
// server without reading from it. false means the Server is shutting
// down (c is closed).
func (s *Server) handOffAccepted(c net.Conn) bool {
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		_ = c.Close()
		return false
	}
	s.wg.Add(1) // until net/http closes it
	s.mu.Unlock()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if f := s.OnFallback; f != nil {
		f("client")
	}
	s.handOff(c, nil, time.Time{})
	return true
}

// fallbackHandler is the net/http server's handler: the Server's (its
// Route when set), with
// Connection: close on every answer once Shutdown began, as the loop does,
// and after a request that came with both Content-Length and
// Transfer-Encoding (RFC 9112 section 6.1; see framingScan). An HTTP/1.0
// request with Transfer-Encoding, which net/http reads as if the field
// were not there, is refused as the loop refuses it, before anything is
// sent on.
type fallbackHandler struct{ s *Server }

func (f fallbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.s.shutdown.Load() {
		w.Header()["Connection"] = closeValue
	}
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		if fs, ok := r.Context().Value(framingKey{}).(*framingScan); ok && fs.http10TE.Load() {
			w.Header()["Connection"] = closeValue
			errMalformedHead(http.StatusBadRequest, reasonHTTP10TE).write(w)
			return
		}
	}
	if len(r.TransferEncoding) > 0 {
		if fs, ok := r.Context().Value(framingKey{}).(*framingScan); ok && fs.conflict.Load() {
			w.Header()["Connection"] = closeValue
		}
	}
	if f.s.Route != nil {
		f.s.Route.ServeHTTP(w, r)
		return
	}
	f.s.Handler.ServeHTTP(w, r)
}

var closeValue = []string{"close"}

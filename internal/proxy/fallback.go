package proxy

import (
	"context"
	"net"
	"net/http"
	"time"
)

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

// fallbackHandler is the net/http server's handler: the Server's, with
// Connection: close on every answer once Shutdown began, as the loop does,
// and after a request that came with both Content-Length and
// Transfer-Encoding (RFC 9112 section 6.1; see framingScan).
type fallbackHandler struct{ s *Server }

// framingKey is the context key of a handed-off connection's framingScan.
type framingKey struct{}

func (f fallbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.s.shutdown.Load() {
		w.Header()["Connection"] = closeValue
	}
	if len(r.TransferEncoding) > 0 {
		if fs, ok := r.Context().Value(framingKey{}).(*framingScan); ok && fs.conflict.Load() {
			w.Header()["Connection"] = closeValue
		}
	}
	f.s.Handler.ServeHTTP(w, r)
}

var closeValue = []string{"close"}

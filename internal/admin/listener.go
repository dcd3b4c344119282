package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// The admin listener's limits: a head of at most maxHeaderBytes within
// readHeaderTimeout, a body
// (admin bodies are small JSON documents) within readTimeout of its head,
// and kept-alive connections closed after idleTimeout.
//
// The body's limit is the handler's (readBody), not http.Server's
// ReadTimeout: that one also ends the request's context when it passes,
// which would cut a call that runs longer, such as a 30 s CPU profile.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxBodyBytes      = 1 << 20
	// maxHeaderBytes bounds a request head as on the traffic listener
	// (64 KiB; net/http's default is 1 MiB): larger gets 431 before the
	// token is looked at.
	maxHeaderBytes = 64 << 10
)

// NewHTTPServer returns the admin listener's server for h (the admin API,
// with its extra routes), with the listener's limits. errLog receives
// net/http's errors; nil means the log package's standard logger.
func NewHTTPServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
}

// readBody reads an authorized request's body whole within d and puts it
// back as r.Body, so that no handler waits on a client that trickles it.
func readBody(w http.ResponseWriter, r *http.Request, d time.Duration) *httpError {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if r.ContentLength > maxBodyBytes {
		return errBodyTooLarge()
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(d)) // fails only without a connection (tests)
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return &httpError{status: http.StatusRequestTimeout, code: "request_timeout", msg: fmt.Sprintf("the request body did not arrive within %s", d)}
	case err != nil:
		return &httpError{status: http.StatusBadRequest, code: "bad_body", msg: "reading the request body: " + err.Error()}
	case len(b) > maxBodyBytes:
		return errBodyTooLarge()
	}
	_ = rc.SetReadDeadline(time.Time{})
	r.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

func errBodyTooLarge() *httpError {
	return &httpError{status: http.StatusRequestEntityTooLarge, code: "request_too_large",
		msg: fmt.Sprintf("admin request bodies are at most %d bytes", maxBodyBytes)}
}

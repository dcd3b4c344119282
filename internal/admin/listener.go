package admin

import (
	"log"
	"net/http"
	"time"
)

// The admin listener's limits: a head within readHeaderTimeout, a whole
// request (admin bodies are small JSON documents) within readTimeout, and
// kept-alive connections closed after idleTimeout.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

// NewHTTPServer returns the admin listener's server for h (the admin API,
// with its extra routes), with the listener's limits. errLog receives
// net/http's errors; nil means the log package's standard logger.
func NewHTTPServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          errLog,
	}
}

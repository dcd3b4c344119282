// Package errconn gives the plain-text answers that net/http's server
// writes by itself — to a request it cannot read: a malformed head, one
// too large, an unsupported transfer coding — the error shape every other
// answer of the gateway has (OpenAI's: {"error":{"message","type","code"}}).
//
// net/http writes those answers straight to the connection, past any
// handler (conn.serve in net/http/server.go), so they are recognised by
// their form on the connection's way out: a status line, then exactly
// net/http's "Content-Type: text/plain; charset=utf-8" and "Connection:
// close" headers, then a one-line body. A handler's answer never has
// that form: the response writer adds Content-Length or chunking.
package errconn

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/cutover-dev/cutover/internal/jsonstr"
)

// netHTTPHeaders is what net/http's server puts between the status line
// and the body of the answers it writes by itself.
const netHTTPHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Code is the error code of an answer with status: request_header_too_large
// (431), unsupported_transfer_encoding (501), http_version_not_supported
// (505), else bad_request. The traffic listener's own connection loop
// answers the same requests with the same codes.
func Code(status int) string {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return "request_header_too_large"
	case http.StatusNotImplemented:
		return "unsupported_transfer_encoding"
	case http.StatusHTTPVersionNotSupported:
		return "http_version_not_supported"
	}
	return "bad_request"
}

// Answer returns p in the error shape when p is one of net/http's own
// plain-text error answers, whole: "HTTP/1.1 400 Bad Request", its
// headers and the status again as the body, the status line and body
// perhaps with ": why" (an error net/http explains), or "Unsupported
// transfer encoding" as the body of its 501. The message is "malformed
// request: why" (the status text without a why), the type
// invalid_request_error (the request is at fault, also for a 501), the
// code Code's; the connection closes after it, as net/http closes it.
func Answer(p []byte) ([]byte, bool) {
	const prefix = "HTTP/1.1 "
	if len(p) > 1024 || !bytes.HasPrefix(p, []byte(prefix)) {
		return nil, false
	}
	i := bytes.Index(p, []byte(netHTTPHeaders))
	if i < 0 {
		return nil, false
	}
	line, body := p[len(prefix):i], p[i+len(netHTTPHeaders):]
	if len(line) < 5 || line[3] != ' ' || bytes.ContainsAny(line, "\r\n") || bytes.ContainsAny(body, "\r\n") {
		return nil, false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || status < 400 || status > 599 || http.StatusText(status) == "" {
		return nil, false
	}
	_, why, _ := strings.Cut(string(line[4:]), ": ")
	if why == "" && status == http.StatusNotImplemented {
		why = strings.ToLower(string(body))
	}
	if why == "" {
		why = http.StatusText(status)
	}
	js := append([]byte(`{"error":{"message":`), jsonstr.Append(nil, "malformed request: "+why)...)
	js = append(js, `,"type":"invalid_request_error","code":"`+Code(status)+`"}}`...)
	ans := make([]byte, 0, 128+len(js))
	ans = fmt.Appendf(ans, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n", status, http.StatusText(status), len(js))
	return append(ans, js...), true
}

// Conn is a connection net/http serves, whose own error answers get the
// error shape (see Answer); everything else passes unchanged.
type Conn struct{ net.Conn }

// Write implements net.Conn.
func (c Conn) Write(p []byte) (int, error) {
	if ans, ok := Answer(p); ok {
		if _, err := c.Conn.Write(ans); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Listener returns ln with every accepted connection a Conn. Not for a
// TLS listener's connections (net/http must see its *tls.Conn): wrap the
// plain listener only.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Conn{c}, nil
}

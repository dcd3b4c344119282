// Package errconn gives the plain-text answers that net/http's server
// writes by itself — to a request it cannot read: a malformed head, one
// too large, an unsupported transfer coding — the error shape of the
// listener's other answers (OpenAI's: {"error":{"message","type","code"}},
// each listener's own encoding of it: see Body).
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
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
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

// Parse reports whether p is one of net/http's own plain-text error
// answers, whole: "HTTP/1.1 400 Bad Request", its headers and the status
// again as the body, the status line and body perhaps with ": why" (an
// error net/http explains), or "Unsupported transfer encoding" as the
// body of its 501. It returns the status and why, "" when net/http gave
// none.
func Parse(p []byte) (status int, why string, ok bool) {
	const prefix = "HTTP/1.1 "
	if len(p) > 1024 || !bytes.HasPrefix(p, []byte(prefix)) {
		return 0, "", false
	}
	i := bytes.Index(p, []byte(netHTTPHeaders))
	if i < 0 {
		return 0, "", false
	}
	line, body := p[len(prefix):i], p[i+len(netHTTPHeaders):]
	if len(line) < 5 || line[3] != ' ' || bytes.ContainsAny(line, "\r\n") || bytes.ContainsAny(body, "\r\n") {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || status < 400 || status > 599 || http.StatusText(status) == "" {
		return 0, "", false
	}
	_, why, _ = strings.Cut(string(line[4:]), ": ")
	if why == "" && status == http.StatusNotImplemented {
		why = strings.ToLower(string(body))
	}
	return status, why, true
}

// Body builds the JSON body of the answer to a request head net/http
// could not read, in the error shape of the listener's other answers;
// why is "" when net/http said only the status.
type Body func(status int, why string) []byte

// Response is the whole answer with status and the JSON body: the
// connection closes after it, as net/http closes it.
func Response(status int, body []byte) []byte {
	ans := make([]byte, 0, 128+len(body))
	ans = fmt.Appendf(ans, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n", status, http.StatusText(status), len(body))
	return append(ans, body...)
}

// Write writes p to w, or, when p is one of net/http's own error answers
// (Parse), the answer with body's JSON in its place; it reports p written.
func Write(w io.Writer, p []byte, body Body) (int, error) {
	status, why, ok := Parse(p)
	if !ok {
		return w.Write(p)
	}
	if _, err := w.Write(Response(status, body(status, why))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Conn is a connection net/http serves, whose own error answers get the
// error shape Body gives (see Write); everything else passes unchanged.
type Conn struct {
	net.Conn
	Body Body
}

// Write implements net.Conn.
func (c Conn) Write(p []byte) (int, error) { return Write(c.Conn, p, c.Body) }

// Listener returns ln with every accepted connection a Conn with body.
// Not for a TLS listener's connections (net/http must see its
// *tls.Conn): wrap the plain listener only.
func Listener(ln net.Listener, body Body) net.Listener { return listener{ln, body} }

type listener struct {
	net.Listener
	body Body
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Conn{c, l.body}, nil
}

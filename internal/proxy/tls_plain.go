package proxy

import (
	"crypto/tls"
	"errors"
	"io"
)

// answerPlainHTTP answers a client that spoke plain HTTP to a TLS
// listener the way net/http does, so it learns why instead of reading an
// empty reply: err is the first read's error on the connection, a
// tls.RecordHeaderError whose record header reads like an HTTP method.
// Any other error is left alone.
func answerPlainHTTP(err error) {
	var re tls.RecordHeaderError
	if !errors.As(err, &re) || re.Conn == nil || !looksLikeHTTP(re.RecordHeader) {
		return
	}
	_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
}

// looksLikeHTTP reports a TLS record header that is the start of an HTTP
// request line (net/http's test, on the same five bytes).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

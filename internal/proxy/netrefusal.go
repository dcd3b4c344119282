package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/cutover-dev/cutover/internal/errconn"
)

// netHTTPRefusal says whether net/http's server would refuse head, a
// request head the loop hands over (headFallback), before calling a
// handler: it answers those itself in plain text (505 to another HTTP
// major version, 400 to a request line, header or Host it cannot use, 501
// to a transfer coding it does not know, 417 to an Expect other than
// 100-continue). The loop gives the same status in the OpenAI error shape
// instead, and keeps the connection. It returns nil when net/http would
// serve the request.
//
// The checks are net/http's own (http.ReadRequest, then its server's
// version, Host, field and Expect checks), so that the verdicts cannot
// drift apart: the loop refuses exactly what net/http would.
func netHTTPRefusal(head []byte) *apiError {
	req, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(head), len(head)+16))
	if err != nil {
		if strings.Contains(err.Error(), "unsupported transfer encoding") {
			return errMalformedHead(http.StatusNotImplemented, "")
		}
		return errMalformedHead(http.StatusBadRequest, cut(err.Error(), 200))
	}
	if req.ProtoMajor != 1 && (req.ProtoMajor != 2 || req.ProtoMinor != 0 || req.Method != "PRI" || req.RequestURI != "*") {
		return &apiError{status: http.StatusHTTPVersionNotSupported, typ: "invalid_request_error",
			code: errconn.Code(http.StatusHTTPVersionNotSupported), msg: "malformed request: HTTP version " + req.Proto + " is not supported (HTTP/1.x only)"}
	}
	// http.ReadRequest takes Host out of the fields; the server looks at
	// them before it does. The head is whole and read once already.
	tp := textproto.NewReader(bufio.NewReaderSize(bytes.NewReader(head), len(head)+16))
	_, _ = tp.ReadLine()
	fields, err := tp.ReadMIMEHeader()
	if err != nil {
		return errMalformedHead(http.StatusBadRequest, cut(err.Error(), 200))
	}
	hosts, haveHost := fields["Host"]
	switch {
	case req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != "PRI" && req.Method != "CONNECT":
		return errMalformedHead(http.StatusBadRequest, "missing required Host header")
	case len(hosts) > 1:
		return errMalformedHead(http.StatusBadRequest, "too many Host headers")
	case len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]):
		return errMalformedHead(http.StatusBadRequest, "malformed Host header")
	}
	for name, values := range req.Header {
		if !httpguts.ValidHeaderFieldName(name) {
			return errMalformedHead(http.StatusBadRequest, "invalid header name")
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return errMalformedHead(http.StatusBadRequest, "invalid header value")
			}
		}
	}
	// Only the first Expect field counts, as in net/http's server.
	if expect := req.Header.Get("Expect"); expect != "" && !httpguts.HeaderValuesContainsToken([]string{expect}, "100-continue") {
		return &apiError{status: http.StatusExpectationFailed, typ: "invalid_request_error",
			code: "expectation_failed", msg: "malformed request: Expect " + strconv.Quote(cut(expect, 64)) + " is not supported (only 100-continue)"}
	}
	return nil
}

// cut shortens s, a client's text for an error message, to at most n
// bytes of valid UTF-8.
func cut(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

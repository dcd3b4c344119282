package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/cutover-dev/cutover/internal/jsonstr"
)

// apiError is an error the gateway itself answers, in the OpenAI shape
// {"error":{"message","type","code"}}.
type apiError struct {
	status int
	typ    string
	code   string
	msg    string
	// retryAfter is the answer's Retry-After header, "" for none.
	retryAfter string
}

func (e *apiError) Error() string { return e.msg }

// write sends e as the whole response.
func (e *apiError) write(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	body := e.appendJSON(make([]byte, 0, 96+len(e.msg)))
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	if e.retryAfter != "" {
		h["Retry-After"] = []string{e.retryAfter}
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

// appendJSON appends e's body: {"error":{...}} and a newline.
func (e *apiError) appendJSON(body []byte) []byte {
	body = append(body, `{"error":{"message":`...)
	body = jsonstr.Append(body, e.msg) // it may quote what a client sent
	body = append(body, `,"type":`...)
	body = jsonstr.Append(body, e.typ)
	body = append(body, `,"param":null,"code":`...)
	body = jsonstr.Append(body, e.code)
	return append(body, "}}\n"...)
}

var jsonContentType = []string{"application/json"}

// The gateway's own answers, shared by both serving paths.

func errNotReady() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, typ: "server_error", code: "not_ready", msg: "gateway is starting"}
}

func errNoHealthyReplica(poolName string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, typ: "server_error", code: "no_healthy_replica",
		msg: "no healthy replica in pool " + poolName}
}

func errBodyTooLarge(max int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", code: "request_too_large",
		msg: "request body is larger than the gateway's limit of " + strconv.FormatInt(max, 10) + " bytes"}
}

func errBadBody(err error) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", code: "bad_body", msg: "reading request body: " + err.Error()}
}

// retryStatus reports an answer worth sending to another replica of the
// pool: the replica said it cannot serve right now.
func retryStatus(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable
}

// brokenCode is the observation's error code for a replica failure after
// the answer's head went out: code is failure's, idle reports a stream's
// idle deadline running out.
func brokenCode(code string, idle bool) string {
	switch {
	case code == "upstream_unreachable":
		return "upstream_broken"
	case idle:
		return "upstream_idle"
	}
	return code
}

// errIdle cancels an upstream request whose body went silent too long.
var errIdle = errors.New("upstream sent nothing for longer than the idle timeout")

// statusClientClosed is logged (never sent) when the client went away.
const statusClientClosed = 499

// failure maps an error from the upstream round trip to what the client
// gets. It is the one place that decides: dial errors and broken
// connections are 502, timeouts 504, a client that left 499.
func failure(ctx context.Context, err error) *apiError {
	switch {
	case ctx.Err() != nil && !errors.Is(context.Cause(ctx), errIdle) && !errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		return &apiError{status: statusClientClosed, typ: "client_closed", code: "client_closed", msg: "client closed the request"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(context.Cause(ctx), context.DeadlineExceeded), isTimeout(err):
		return &apiError{status: http.StatusGatewayTimeout, typ: "server_error", code: "upstream_timeout", msg: "the model server did not answer in time: " + err.Error()}
	case errors.Is(context.Cause(ctx), errIdle):
		return &apiError{status: http.StatusGatewayTimeout, typ: "server_error", code: "upstream_idle", msg: errIdle.Error()}
	default:
		return &apiError{status: http.StatusBadGateway, typ: "server_error", code: "upstream_unreachable", msg: "the model server could not be reached: " + err.Error()}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retriable reports whether a round-trip error means the request never got
// an answer from the replica, so it can go to another one: the connection
// could not be made, or broke before any response (a killed replica). LLM
// completions are stateless, so replaying such a request is safe.
// Timeouts are not retried: they would double a long generation.
func retriable(err error) bool {
	if isTimeout(err) {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// ejects reports whether err should take the replica out of rotation at
// once, before active checks confirm: it refused or reset connections.
func ejects(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/cutover-dev/cutover/internal/jsonstr"
	"github.com/cutover-dev/cutover/internal/pool"
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

// errIdle cancels an upstream request whose body went silent too long.
var errIdle = errors.New("upstream sent nothing for longer than the idle timeout")

// statusClientClosed is logged (never sent) when the client went away.
const statusClientClosed = 499

// expiry names the deadline whose passing ended an upstream attempt.
type expiry uint8

const (
	expiredNone   expiry = iota // none, or not known
	expiredHeader               // proxy.response_header_timeout
	expiredIdle                 // proxy.idle_timeout: a stream went silent
	expiredTotal                // proxy.timeout: the whole request's
)

// attemptError is what a serving path knows of an upstream attempt that
// failed: the error, which of its deadlines expired, whether the replica
// sent any byte of an answer, and whether the client left.
type attemptError struct {
	err        error
	expired    expiry
	answered   bool
	clientGone bool
	afterHead  bool // the answer's head went out: only its code is used
}

// verdict is classify's decision on a failed attempt.
type verdict struct {
	answer  *apiError    // what the client gets (status 499: nothing)
	retry   bool         // another replica may take the request
	outcome pool.Outcome // what the failure says about the replica
}

// classify is the one place that decides what an upstream failure means,
// for both serving paths: the client's status and code, whether another
// replica may take the request, and the replica's health verdict.
//
//   - the client left: 499, no retry, nothing learned about the replica;
//   - the whole request's timeout: 504 upstream_timeout, no retry, nothing
//     learned (a long generation is no fault of the replica);
//   - no connection (refused, unreachable, dial timeout): 502
//     upstream_unreachable, retried, a connect failure;
//   - the idle or response-header timeout: 504, not retried (it would
//     double a long generation), a failure;
//   - the replica answered something, then broke: 502 upstream_unreachable
//     (upstream_broken once the head went out), not retried (it may have
//     worked on the request), a failure of the connection (OutcomeBroken);
//   - the connection broke before any answer (reset, closed): 502
//     upstream_unreachable, retried (LLM completions are stateless), a reset.
//
// Client-facing messages never carry a replica's address; it is logged.
func classify(a attemptError) verdict {
	err := a.err
	switch {
	case a.clientGone:
		return verdict{answer: &apiError{status: statusClientClosed, typ: "client_closed", code: "client_closed", msg: "client closed the request"}}
	case a.expired == expiredTotal:
		return verdict{answer: &apiError{status: http.StatusGatewayTimeout, typ: "server_error", code: "upstream_timeout",
			msg: "the request took longer than the gateway's timeout"}}
	case isConnectFailure(err):
		return verdict{answer: errUnreachable("could not connect (" + cause(err) + ")"), retry: true, outcome: pool.OutcomeConnectFailure}
	case a.expired == expiredIdle || errors.Is(err, errIdle):
		return verdict{answer: &apiError{status: http.StatusGatewayTimeout, typ: "server_error", code: "upstream_idle", msg: errIdle.Error()},
			outcome: pool.OutcomeFailure}
	case a.expired == expiredHeader || isTimeout(err):
		return verdict{answer: &apiError{status: http.StatusGatewayTimeout, typ: "server_error", code: "upstream_timeout",
			msg: "the model server did not answer in time"}, outcome: pool.OutcomeFailure}
	case a.afterHead:
		return verdict{answer: &apiError{status: http.StatusBadGateway, typ: "server_error", code: "upstream_broken",
			msg: "the model server's answer broke off (" + cause(err) + ")"}, outcome: brokenOutcome(err)}
	case a.answered:
		return verdict{answer: errUnreachable("sent a broken answer (" + cause(err) + ")"), outcome: brokenOutcome(err)}
	case brokeBeforeAnswer(err):
		return verdict{answer: errUnreachable("closed the connection before answering (" + cause(err) + ")"), retry: true, outcome: pool.OutcomeReset}
	default:
		return verdict{answer: errUnreachable("failed (" + cause(err) + ")"), outcome: pool.OutcomeFailure}
	}
}

func errUnreachable(what string) *apiError {
	return &apiError{status: http.StatusBadGateway, typ: "server_error", code: "upstream_unreachable", msg: "the model server " + what}
}

// errReplicaStatus is the answer when both attempts got a 502 or 503 and
// the second could not be made.
func errReplicaStatus(status int) *apiError {
	return errUnreachable("answered " + strconv.Itoa(status))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isConnectFailure reports an error of making the connection.
func isConnectFailure(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED)
}

// brokeBeforeAnswer reports a connection that broke (reset, closed) with
// no byte of an answer: the replica died, or closed a kept-alive
// connection, or refused the request by closing it. errStale on a new
// connection is one too: the replica closed it (a replica being killed
// completes the handshake from its listen queue, then resets) before the
// request was written.
func brokeBeforeAnswer(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errStale)
}

// brokenOutcome is what an answer that failed part-way with err says
// about its replica: its connection broke (reset, closed: the replica
// went away, which a passed active check shows it is back from), or it
// sent something wrong (a failure of its own).
func brokenOutcome(err error) pool.Outcome {
	if brokeBeforeAnswer(err) {
		return pool.OutcomeBroken
	}
	return pool.OutcomeFailure
}

// mayHaveAnswered reports a failed request write after which the replica's
// answer may still be read: the connection broke, rather than a deadline
// or the client ending the write.
func mayHaveAnswered(werr error) bool {
	return !isTimeout(werr) && !errors.Is(werr, errClientGone) && brokeBeforeAnswer(werr)
}

// cause describes err for a client without the addresses a net.OpError
// carries: the system error's text, or a kind.
func cause(err error) string {
	var errno syscall.Errno
	var dns *net.DNSError
	switch {
	case errors.As(err, &errno):
		return errno.Error()
	case errors.As(err, &dns):
		return "name not resolved"
	case isTimeout(err):
		return "timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op + " failed"
	}
	return "protocol error" // the details, which may name addresses, are logged
}

// answeredError marks an error that came after the replica had sent bytes
// of an answer.
type answeredError struct{ err error }

func (e *answeredError) Error() string { return e.err.Error() }
func (e *answeredError) Unwrap() error { return e.err }

// wasAnswered reports an error marked by answeredError.
func wasAnswered(err error) bool {
	var a *answeredError
	return errors.As(err, &a)
}

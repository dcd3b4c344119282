// Package hook runs the user's lifecycle hooks: a command (argv, no shell)
// or a webhook (POST JSON), bounded by a timeout, with an outcome that
// records exit code or status, duration and the last lines of output.
package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Events are the lifecycle events a hook can be attached to.
var Events = []string{"on_deploy", "before_promote", "on_promote", "on_rollback", "on_retire", "on_fail"}

// Spec is one configured hook: exactly one of Command and Webhook.
type Spec struct {
	// Command is an argv; it runs without a shell.
	Command []string `yaml:"command" json:"command,omitempty"`
	// Webhook is an http(s) URL that receives a POST with the Payload.
	Webhook string `yaml:"webhook" json:"webhook,omitempty"`
	// Timeout bounds one run. Zero means the default, 30s.
	Timeout time.Duration `yaml:"-" json:"-"`
}

// Name describes the hook for status and history.
func (s Spec) Name() string {
	if s.Webhook != "" {
		return "POST " + s.Webhook
	}
	return strings.Join(s.Command, " ")
}

// Redacted is Name without what a webhook URL may carry of its
// credentials: its user info and query are left out. Outcomes (the
// history, the log) and spans (exported to a tracing collector) name
// hooks by it.
func (s Spec) Redacted() string {
	if s.Webhook == "" {
		return s.Name()
	}
	u, err := url.Parse(s.Webhook)
	if err != nil {
		return "POST (webhook)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return "POST " + u.String()
}

// RedactIn returns text with s's webhook URL, as written and as net/http
// quotes it in its errors (the password as ***), replaced by the URL of
// Redacted.
func (s Spec) RedactIn(text string) string {
	if s.Webhook == "" {
		return text
	}
	safe := strings.TrimPrefix(s.Redacted(), "POST ")
	forms := []string{s.Webhook}
	if u, err := url.Parse(s.Webhook); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok { // net/http's stripPassword
			forms = append(forms, strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1))
		}
	}
	for _, f := range forms {
		text = strings.ReplaceAll(text, f, safe)
	}
	return text
}

// Payload is what a hook learns about the event: environment variables
// CUTOVER_* for commands, the JSON body for webhooks.
type Payload struct {
	Event      string   `json:"event"`
	Deployment string   `json:"deployment"`
	Pool       string   `json:"pool"`
	Model      string   `json:"model"`
	Replicas   []string `json:"replicas"`
	Revision   int64    `json:"revision"`
	// Reason is why the event happened (a failure's cause, say).
	Reason string `json:"reason,omitempty"`
	// RunID names this run of the event's hooks; a re-run of the same
	// transition (after a restart, a retried retirement) has the same one.
	RunID string `json:"run_id,omitempty"`
	// Traceparent and Tracestate are the W3C trace context of the hook's
	// span when the gateway traces (TRACEPARENT and TRACESTATE for a
	// command, the traceparent and tracestate headers for a webhook), so
	// that what the hook does can join the trace. Empty: none.
	Traceparent string `json:"-"`
	Tracestate  string `json:"-"`
}

// Env returns p as environment variables for a command hook.
func (p Payload) Env() []string {
	env := []string{
		"CUTOVER_EVENT=" + p.Event,
		"CUTOVER_DEPLOYMENT=" + p.Deployment,
		"CUTOVER_POOL=" + p.Pool,
		"CUTOVER_MODEL=" + p.Model,
		"CUTOVER_REPLICAS=" + strings.Join(p.Replicas, ","),
		fmt.Sprintf("CUTOVER_REVISION=%d", p.Revision),
		"CUTOVER_REASON=" + p.Reason,
		RunIDEnv + "=" + p.RunID,
	}
	if p.Traceparent != "" {
		env = append(env, "TRACEPARENT="+p.Traceparent, "TRACESTATE="+p.Tracestate)
	}
	return env
}

// RunIDEnv is the environment variable that carries Payload.RunID to a
// command hook and to everything it starts; EndLeftover looks for it.
const RunIDEnv = "CUTOVER_HOOK_RUN_ID"

// Trace receives events of a hook run; see WithTrace.
type Trace struct {
	// Started is called once a command hook's process runs, with its
	// process group id (on Unix every hook leads a group of its own; 0
	// where there are no process groups). It is not called for webhooks.
	Started func(pgid int)
}

type traceKey struct{}

// WithTrace returns a context that makes Runner.Run report to t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

func traceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// Outcome is the result of one hook run.
type Outcome struct {
	Event string    `json:"event"`
	Hook  string    `json:"hook"`
	Start time.Time `json:"start"`
	// DurationMS is how long it ran, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// OK reports exit code 0 or a 2xx status.
	OK bool `json:"ok"`
	// ExitCode is the command's exit code (-1 if it did not run or was
	// killed); Status the webhook's HTTP status (0 if none).
	ExitCode int `json:"exit_code,omitempty"`
	Status   int `json:"status,omitempty"`
	// Output is the last lines of combined output or response body.
	Output string `json:"output,omitempty"`
	// Error says why it failed to run or timed out.
	Error string `json:"error,omitempty"`
}

// Summary is a one-line description of o for reasons and logs.
func (o Outcome) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s hook %q", o.Event, o.Hook)
	switch {
	case o.OK:
		b.WriteString(" succeeded")
	case o.Error != "":
		fmt.Fprintf(&b, " failed: %s", o.Error)
	case o.Status != 0:
		fmt.Fprintf(&b, " failed: HTTP %d", o.Status)
	default:
		fmt.Fprintf(&b, " failed: exit code %d", o.ExitCode)
	}
	if !o.OK && o.Output != "" {
		fmt.Fprintf(&b, ": %s", lastLine(o.Output))
	}
	return b.String()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// DefaultTimeout bounds a hook run when its Spec says nothing.
const DefaultTimeout = 30 * time.Second

// outputTail is how much output an Outcome keeps.
const outputTail = 2048

// Runner runs hooks. The zero value is usable.
type Runner struct {
	// HTTP makes webhook calls. Nil means a client without a global timeout
	// (each call is bounded by its hook's timeout).
	HTTP *http.Client
}

// Run runs one hook for payload and returns its outcome. It never returns
// an error: failures are outcomes.
func (r *Runner) Run(ctx context.Context, s Spec, p Payload) Outcome {
	o := Outcome{Event: p.Event, Hook: s.Redacted(), Start: time.Now().UTC()}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if s.Webhook != "" {
		r.webhook(ctx, s, p, &o)
	} else {
		command(ctx, s, p, &o)
	}
	switch err := ctx.Err(); {
	case o.OK:
	case err == context.DeadlineExceeded:
		o.Error = fmt.Sprintf("timed out after %s", timeout)
	case err != nil:
		// Killed because whatever ran it ended (an abort stopping a
		// promote, a caller gone), not an exit code of its own.
		o.Error = "stopped before it ended"
		if cause := context.Cause(ctx); cause != nil && cause != err {
			o.Error += ": " + cause.Error()
		}
	}
	o.Error = s.RedactIn(o.Error) // net/http's errors quote the URL
	o.DurationMS = time.Since(o.Start).Milliseconds()
	return o
}

func command(ctx context.Context, s Spec, p Payload, o *Outcome) {
	if len(s.Command) == 0 {
		o.ExitCode, o.Error = -1, "empty command"
		return
	}
	cmd := exec.CommandContext(ctx, s.Command[0], s.Command[1:]...)
	cmd.Env = append(os.Environ(), p.Env()...)
	ownGroup(cmd)
	cmd.WaitDelay = time.Second
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	if err == nil {
		if t := traceFrom(ctx); t != nil && t.Started != nil {
			t.Started(groupOf(cmd))
		}
		err = cmd.Wait()
	}
	o.Output = out.String()
	var ee *exec.ExitError
	switch {
	case err == nil:
		o.OK = true
	case errors.As(err, &ee):
		o.ExitCode = ee.ExitCode()
	default:
		o.ExitCode, o.Error = -1, err.Error()
	}
}

func (r *Runner) webhook(ctx context.Context, s Spec, p Payload, o *Outcome) {
	body, _ := json.Marshal(p) // plain struct
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Webhook, bytes.NewReader(body))
	if err != nil {
		o.Error = err.Error()
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cutover-hook")
	if p.Traceparent != "" {
		req.Header.Set("Traceparent", p.Traceparent)
		if p.Tracestate != "" {
			req.Header.Set("Tracestate", p.Tracestate)
		}
	}
	hc := r.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		o.Error = err.Error()
		return
	}
	defer resp.Body.Close()
	var out tailBuffer
	_, _ = io.Copy(&out, io.LimitReader(resp.Body, 1<<20))
	o.Status, o.Output = resp.StatusCode, out.String()
	o.OK = resp.StatusCode/100 == 2
}

// tailBuffer keeps the last outputTail bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*outputTail {
		t.b = append(t.b[:0], t.b[len(t.b)-outputTail:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	b := t.b
	if len(b) > outputTail {
		b = b[len(b)-outputTail:]
	}
	return strings.TrimSpace(string(b))
}

package rollout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/cutover-dev/cutover/internal/pool"
)

// The promote preflight: right before a switch (promote, automatic
// promotion, rollback onto the retained pool) every healthy replica of the
// pool about to go live gets one tiny real chat completion. A pool whose
// replicas still answer /health and /v1/models but fail completions (an
// engine that died after validation passed) would otherwise be switched
// to, and every client request would fail on it.

// Preflighter sends one real completion of model to replica r and returns
// why it was not a good answer, or nil.
type Preflighter interface {
	Preflight(ctx context.Context, r *pool.Replica, model string) error
}

// CompletionPreflight is the Preflighter of the gateway: POST
// /v1/chat/completions with max_tokens 1, not streamed, with the pool's
// API key. A good answer is 200 with a completion that parses and holds
// no error object (see checkCompletion).
type CompletionPreflight struct {
	// HTTP sends the request; nil means http.DefaultClient. The caller's
	// context bounds it.
	HTTP *http.Client
}

var _ Preflighter = (*CompletionPreflight)(nil)

// preflightBodyLimit bounds what is read of one answer: a one-token
// completion is far smaller.
const preflightBodyLimit = 64 << 10

// Preflight implements Preflighter.
func (p *CompletionPreflight) Preflight(ctx context.Context, r *pool.Replica, model string) error {
	body, _ := json.Marshal(map[string]any{
		"model":      model,
		"messages":   []map[string]string{{"role": "user", "content": "ping"}},
		"max_tokens": 1,
		"stream":     false,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Name+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("preflight request to %s: %w", r.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	r.SetAuthorization(req.Header)
	client := p.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return preflightErr(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, preflightBodyLimit))
	if err != nil {
		return fmt.Errorf("status %d, reading the answer: %w", resp.StatusCode, preflightErr(ctx, err))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, snippet(raw))
	}
	return checkCompletion(resp.Header.Get("Content-Type"), raw)
}

// preflightErr names a timeout as such rather than as a wrapped
// transport error.
func preflightErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer before the preflight timeout: %w", context.DeadlineExceeded)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkCompletion reports whether body, the 200 answer to a non-streamed
// chat completion, is a completion: a JSON object with at least one
// choice and no error object. A replica that streams anyway is judged by
// its events: none may carry an error, one must carry a choice.
func checkCompletion(contentType string, body []byte) error {
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "text/event-stream" {
		return checkCompletionStream(body)
	}
	return checkCompletionObject(body)
}

// completionAnswer is what checkCompletion reads of one answer or event.
type completionAnswer struct {
	Error   json.RawMessage   `json:"error"`
	Choices []json.RawMessage `json:"choices"`
}

func checkCompletionObject(body []byte) error {
	var a completionAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("status 200 but not a completion (%v): %s", err, snippet(body))
	}
	if hasError(a.Error) {
		return fmt.Errorf("status 200 with an error object: %s", snippet(a.Error))
	}
	if len(a.Choices) == 0 {
		return fmt.Errorf("status 200 but no choices: %s", snippet(body))
	}
	return nil
}

func checkCompletionStream(body []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), preflightBodyLimit)
	choices := false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		data = strings.TrimSpace(data)
		if !ok || data == "" || data == "[DONE]" {
			continue
		}
		var a completionAnswer
		if err := json.Unmarshal([]byte(data), &a); err != nil {
			return fmt.Errorf("status 200, a stream event that is not JSON (%v): %s", err, snippet([]byte(data)))
		}
		if hasError(a.Error) {
			return fmt.Errorf("status 200, an error inside the stream: %s", snippet(a.Error))
		}
		choices = choices || len(a.Choices) > 0
	}
	if !choices {
		return fmt.Errorf("status 200 but the stream carried no choice: %s", snippet(body))
	}
	return nil
}

func hasError(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// snippet is the start of an answer, on one line, for a refusal.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// preflight sends the completion check to every healthy replica of p at
// once, bounded by the preflight timeout, and returns an error naming each
// replica that failed and what it answered when fewer than
// preflightNeed answered well. Nil without a Preflighter.
func (c *Controller) preflight(ctx context.Context, p *pool.Pool) error {
	if c.opts.Preflight == nil || p == nil {
		return nil
	}
	var healthy []*pool.Replica
	for _, r := range p.Replicas {
		if r.Healthy() {
			healthy = append(healthy, r)
		}
	}
	errs := eachReplica(ctx, c.opts.Settings.PreflightTimeout, healthy, func(ctx context.Context, r *pool.Replica) error {
		// The gateway itself answers a completion by sending it to the
		// live pool: it would pass, and the switch would make a loop.
		if m, ok := c.opts.Self.Reaches(ctx, r.Name); ok {
			return fmt.Errorf("%s (%s), not a model server", m, m.Host)
		}
		return c.opts.Preflight.Preflight(ctx, r, p.Model)
	})
	ok := 0
	var bad []string
	for i, err := range errs {
		if err == nil {
			ok++
		} else {
			bad = append(bad, fmt.Sprintf("%s: %v", healthy[i].Name, err))
		}
	}
	need := c.preflightNeed(p, len(healthy))
	if ok >= need {
		return nil
	}
	return fmt.Errorf("preflight completion (model %q, max_tokens 1, timeout %s): %d of %d healthy replica(s) of %s answered, %d needed (%s)",
		p.Model, c.opts.Settings.PreflightTimeout, ok, len(healthy), p.Name, need, strings.Join(bad, "; "))
}

// preflightNeed is how many of healthy replicas of p must answer the
// preflight: what rollout.min_ready asks of a pool (all of them when 0),
// but never more than are healthy (the health rules already decided how
// many healthy replicas a switch needs) and at least one.
func (c *Controller) preflightNeed(p *pool.Pool, healthy int) int {
	return max(min(c.need(p), healthy), 1)
}

// checkPreflight runs the preflight on p before action (promote or
// rollback) makes it live. When it fails, the refusal (409
// preflight_failed, naming each replica and what it answered) is recorded
// in the history as a preflight_failed event, and nothing else changes.
// The caller holds tmu.
func (c *Controller) checkPreflight(ctx context.Context, actor, action, deployment string, p *pool.Pool) error {
	err := c.preflight(ctx, p)
	if err == nil {
		return nil
	}
	st, _, _ := c.snapshot()
	ref := refuse("preflight_failed", "%s refused: %s cannot serve: %v; %s stays live", action, p.Name, err, st.Live)
	rec := func(*State) ([]event, error) {
		return []event{{Action: "preflight_failed", Deployment: deployment, Reason: ref.Reason}}, nil
	}
	if cerr := c.commit(context.WithoutCancel(ctx), actor, rec); cerr != nil {
		c.log.Error("recording a refused preflight failed", "pool", p.Name, "error", cerr)
	}
	return ref
}

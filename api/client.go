package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
)

// Client calls a gateway's admin API.
type Client struct {
	// BaseURL is the admin listener, such as http://127.0.0.1:8081.
	BaseURL string
	// Token is sent as Authorization: Bearer.
	Token string
	// Actor names the caller in the history (sent as X-Cutover-Actor).
	// Empty means the server records "api".
	Actor string
	// HTTP makes the calls. Nil means http.DefaultClient.
	HTTP *http.Client
	// Traceparent and Tracestate, when set, are sent as the W3C trace
	// context headers: on a gateway with tracing, the calls become spans
	// of that trace. Empty: none.
	Traceparent, Tracestate string
}

// Error is a refused or failed call: the HTTP status and the server's
// error body.
type Error struct {
	StatusCode int
	ErrorBody
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.StatusCode, e.Code)
}

// Status returns the gateway's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, "/api/v1/status", nil, &s)
}

// Promote makes the standby pool live: PromoteWith without force or
// revision guard.
func (c *Client) Promote(ctx context.Context) (*SwitchResult, error) {
	return c.PromoteWith(ctx, PromoteRequest{})
}

// PromoteWith makes the standby pool live, with force or a revision guard.
func (c *Client) PromoteWith(ctx context.Context, req PromoteRequest) (*SwitchResult, error) {
	var r SwitchResult
	return &r, c.do(ctx, http.MethodPost, "/api/v1/promote", req, &r)
}

// Rollback undoes the last switch: RollbackWith without a target pool or
// revision guard.
func (c *Client) Rollback(ctx context.Context) (*SwitchResult, error) {
	return c.RollbackWith(ctx, RollbackRequest{})
}

// RollbackWith undoes the last switch, or makes req.To live.
func (c *Client) RollbackWith(ctx context.Context, req RollbackRequest) (*SwitchResult, error) {
	var r SwitchResult
	return &r, c.do(ctx, http.MethodPost, "/api/v1/rollback", req, &r)
}

// Deploy starts a deployment of a new version into the standby pool.
func (c *Client) Deploy(ctx context.Context, req DeployRequest) (*DeployResult, error) {
	var r DeployResult
	return &r, c.do(ctx, http.MethodPost, "/api/v1/deployments", req, &r)
}

// Deployments lists the latest deployments, newest first.
func (c *Client) Deployments(ctx context.Context) (*Deployments, error) {
	var r Deployments
	return &r, c.do(ctx, http.MethodGet, "/api/v1/deployments", nil, &r)
}

// Deployment returns one deployment.
func (c *Client) Deployment(ctx context.Context, id string) (*Deployment, error) {
	var r Deployment
	return &r, c.do(ctx, http.MethodGet, "/api/v1/deployments/"+url.PathEscape(id), nil, &r)
}

// Abort stops the deployment in progress (a rollback after its promotion).
func (c *Client) Abort(ctx context.Context) (*Deployment, error) {
	return c.AbortWith(ctx, AbortRequest{})
}

// AbortWith is Abort with a revision guard.
func (c *Client) AbortWith(ctx context.Context, req AbortRequest) (*Deployment, error) {
	var r Deployment
	return &r, c.do(ctx, http.MethodPost, "/api/v1/abort", req, &r)
}

// Retire ends the retention of the old pool now (or, during retirement,
// retries the on_retire hooks; with force, gives up on them). During the
// post-promotion checks it needs force, which ends them too.
func (c *Client) Retire(ctx context.Context, force bool) (*Deployment, error) {
	return c.RetireWith(ctx, RetireRequest{Force: force})
}

// RetireWith is Retire with a revision guard.
func (c *Client) RetireWith(ctx context.Context, req RetireRequest) (*Deployment, error) {
	var r Deployment
	return &r, c.do(ctx, http.MethodPost, "/api/v1/retire", req, &r)
}

// Traffic returns each pool's request rate, error rate and TTFT p95 over
// the last hour, in 10 s points.
func (c *Client) Traffic(ctx context.Context) (*Traffic, error) {
	var t Traffic
	return &t, c.do(ctx, http.MethodGet, "/api/v1/traffic", nil, &t)
}

// History returns the latest limit events (all when limit <= 0).
func (c *Client) History(ctx context.Context, limit int) (*History, error) {
	var h History
	path := "/api/v1/history"
	if limit > 0 {
		path += fmt.Sprintf("?limit=%d", limit)
	}
	return &h, c.do(ctx, http.MethodGet, path, nil, &h)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	u := strings.TrimRight(c.BaseURL, "/") + path
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", u, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Actor != "" {
		req.Header.Set("X-Cutover-Actor", c.Actor)
	}
	if c.Traceparent != "" {
		req.Header.Set("Traceparent", c.Traceparent)
		if c.Tracestate != "" {
			req.Header.Set("Tracestate", c.Tracestate)
		}
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The gateway may well be there and still at work (a
			// promote runs its before_promote hooks): not "unreachable".
			return fmt.Errorf("admin API %s %s at %s: no answer before the timeout: %w", method, path, c.BaseURL, err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			// It was reached: whether a change was made is unknown.
			return fmt.Errorf("admin API %s %s at %s: the connection closed before an answer (did the gateway stop?); check the status to see whether it took effect: %w", method, path, c.BaseURL, err)
		}
		return fmt.Errorf("admin API unreachable at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("admin API %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var er ErrorResponse
		if json.Unmarshal(b, &er) != nil || er.Error.Message == "" {
			er.Error = ErrorBody{Message: strings.TrimSpace(string(b)), Code: "unexpected"}
			if er.Error.Message == "" {
				er.Error.Message = resp.Status
			}
		}
		return &Error{StatusCode: resp.StatusCode, ErrorBody: er.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin API %s %s: bad JSON answer (is %s cutover's admin address, admin.listen?): %w", method, path, c.BaseURL, err)
	}
	return nil
}

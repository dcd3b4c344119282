package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one agent's HTTP API (see Handler). Every call takes a
// context; its deadline bounds the whole request.
type Client struct {
	// Name is the agent's name in the gateway's configuration.
	Name string
	base string
	host string // the agent URL's host, where its replicas are reached
	tok  string
	hc   *http.Client
}

// NewClient returns a client for the agent at baseURL (http[s]://host:port)
// authenticating with token. hc nil means http.DefaultClient.
func NewClient(name, baseURL, token string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return nil, fmt.Errorf("agent %s: url %q: want http://host:port", name, baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{Name: name, base: strings.TrimRight(baseURL, "/"), host: u.Hostname(), tok: token, hc: hc}, nil
}

// APIError is an error answer of the agent.
type APIError struct {
	Agent   string
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("agent %s: %d %s", e.Agent, e.Status, e.Message)
}

// ReplicaURL is where the gateway reaches r: the agent's host at r's port.
func (c *Client) ReplicaURL(r Replica) string {
	return "http://" + net.JoinHostPort(c.host, strconv.Itoa(r.Port))
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("agent %s: %w", c.Name, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("agent %s: %w", c.Name, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %s %s: %w", c.Name, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("agent %s: %s %s: %w", c.Name, method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return &APIError{Agent: c.Name, Status: resp.StatusCode, Message: msg}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("agent %s: %s %s: answer: %w", c.Name, method, path, err)
		}
	}
	return nil
}

// Replicas lists every replica of the agent.
func (c *Client) Replicas(ctx context.Context) ([]Replica, error) {
	var out struct {
		Replicas []Replica `json:"replicas"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/replicas", nil, &out)
	return out.Replicas, err
}

// Replica returns one replica.
func (c *Client) Replica(ctx context.Context, id string) (Replica, error) {
	var r Replica
	err := c.do(ctx, http.MethodGet, "/v1/replicas/"+url.PathEscape(id), nil, &r)
	return r, err
}

// Start asks for a replica of model on gpus GPUs; it answers at once, the
// replica starting.
func (c *Client) Start(ctx context.Context, model string, gpus int) (Replica, error) {
	var r Replica
	err := c.do(ctx, http.MethodPost, "/v1/replicas", StartRequest{Model: model, GPUs: gpus}, &r)
	return r, err
}

// Stop stops a replica (SIGTERM, then SIGKILL) and answers once it is gone.
func (c *Client) Stop(ctx context.Context, id string) (Replica, error) {
	var r Replica
	err := c.do(ctx, http.MethodPost, "/v1/replicas/"+url.PathEscape(id)+"/stop", nil, &r)
	return r, err
}

// Sleep puts a replica to sleep at level (1 or 2).
func (c *Client) Sleep(ctx context.Context, id string, level int) (Replica, error) {
	var r Replica
	err := c.do(ctx, http.MethodPost, "/v1/replicas/"+url.PathEscape(id)+"/sleep?level="+strconv.Itoa(level), nil, &r)
	return r, err
}

// Wake wakes a sleeping replica.
func (c *Client) Wake(ctx context.Context, id string) (Replica, error) {
	var r Replica
	err := c.do(ctx, http.MethodPost, "/v1/replicas/"+url.PathEscape(id)+"/wake", nil, &r)
	return r, err
}

// FreeGPUs returns how many of the agent's GPUs no replica holds.
func (c *Client) FreeGPUs(ctx context.Context) (free, total int, err error) {
	var out struct {
		GPUs []struct {
			Replica string `json:"replica"`
		} `json:"gpus"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/gpus", nil, &out); err != nil {
		return 0, 0, err
	}
	for _, g := range out.GPUs {
		if g.Replica == "" {
			free++
		}
	}
	return free, len(out.GPUs), nil
}

// StartWait asks for a replica and answers once it runs, or with an
// error carrying its exit and last log lines; wait bounds it at the agent
// (ctx bounds the call).
func (c *Client) StartWait(ctx context.Context, model string, gpus int, wait time.Duration) (Replica, error) {
	return c.StartKey(ctx, StartRequest{Model: model, GPUs: gpus}, wait)
}

// StartKey asks for a replica as req says (with req.Key: the one started
// with that key, if any, else a new one); with wait > 0 it answers once
// the replica runs, or with an error carrying its exit and last log
// lines, else at once.
func (c *Client) StartKey(ctx context.Context, req StartRequest, wait time.Duration) (Replica, error) {
	path := "/v1/replicas"
	if wait > 0 {
		path += "?wait=" + url.QueryEscape(wait.String())
	}
	var r Replica
	err := c.do(ctx, http.MethodPost, path, req, &r)
	return r, err
}

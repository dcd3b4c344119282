package gateway_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/validation"
)

const testToken = "test-token"

var testModels = map[string]string{"blue": "model-v1", "green": "model-v2"}

// replica is a simulated vLLM server on a loopback port that a test can
// kill and bring back on the same address.
type replica struct {
	t    testing.TB
	cfg  mockllm.Config
	mock *mockllm.Server
	addr string
	ln   net.Listener
	srv  *http.Server
}

func startReplica(t testing.TB, cfg mockllm.Config, addr string) *replica {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	m, err := mockllm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{t: t, cfg: cfg, mock: m, addr: ln.Addr().String(), ln: ln, srv: &http.Server{Handler: m}}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

func (r *replica) URL() string { return "http://" + r.addr }

// kill closes the listener and every connection at once, like a crashed
// process.
func (r *replica) kill() { _ = r.srv.Close() }

// restart serves a fresh simulator on the same address.
func (r *replica) restart() *replica { return startReplica(r.t, r.cfg, r.addr) }

type envOptions struct {
	replicas  int // per pool, default 2
	mock      mockllm.Config
	modelName string
	// servedName: every replica serves this model id (like vLLM's
	// --served-model-name) and answers as its pool's testModels id.
	servedName string
	stateDir   string
	edit       func(*config.Config)
	// adjust sees every validation sample (gateway.WithSampleAdjust).
	adjust func(pool string, s *validation.Sample)
	// opts are more gateway options (gateway.WithTracing).
	opts []gateway.Option
}

// env is a gateway in this process with simulated pools, on loopback.
type env struct {
	t       testing.TB
	gw      *gateway.Gateway
	pools   map[string][]*replica
	admin   *api.Client
	traffic string
	http    *http.Client
	stop    func() error
	// clock is the control plane's time: a test moves it past a deadline
	// instead of waiting for it.
	clock *clock
	// floors are the simulated timings validation samples are cut to;
	// nil outside validationEnv.
	floors *floors
}

// clock is the real time plus an offset that only grows, so that
// deadlines fire when a test says, not when a loaded machine gets there.
// Frozen, it stands still until advanced.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
	frozen time.Time // non-zero: the time until advanced
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		return c.frozen
	}
	return time.Now().Add(c.offset)
}

// advance moves the clock forward by d.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		c.frozen = c.frozen.Add(d)
	}
	c.offset += d
}

// freeze stops the clock at its current time.
func (c *clock) freeze() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen = now
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.replicas == 0 {
		o.replicas = 2
	}
	if o.stateDir == "" {
		o.stateDir = t.TempDir()
	}
	cfg := config.Default()
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.StateDir = o.stateDir
	cfg.ModelName = o.modelName
	cfg.Health.Interval = config.Duration(time.Hour) // tests call Tick
	cfg.Health.Timeout = config.Duration(2 * time.Second)
	cfg.Proxy.DrainTimeout = config.Duration(20 * time.Second)
	off := false
	cfg.Proxy.AccessLog = &off
	cfg.Pools = map[string]*config.Pool{}
	e := &env{t: t, pools: map[string][]*replica{}, clock: &clock{}}
	for _, name := range config.PoolNames {
		p := &config.Pool{Model: cmp.Or(o.servedName, testModels[name])}
		for range o.replicas {
			mc := o.mock
			mc.Model = p.Model
			if o.servedName != "" {
				mc.AnswerAs = testModels[name]
			}
			r := startReplica(t, mc, "")
			e.pools[name] = append(e.pools[name], r)
			p.Replicas = append(p.Replicas, r.URL())
		}
		cfg.Pools[name] = p
	}
	if o.edit != nil {
		o.edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	gw, err := gateway.New(context.Background(), cfg, testToken, log, append([]gateway.Option{gateway.WithClock(e.clock.now), gateway.WithSampleAdjust(o.adjust)}, o.opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	stopped := false
	e.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = e.stop() })
	e.gw = gw
	e.traffic = "http://" + gw.TrafficAddr()
	e.admin = &api.Client{BaseURL: "http://" + gw.AdminAddr(), Token: testToken, Actor: "test"}
	e.http = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	t.Cleanup(e.http.CloseIdleConnections)
	return e
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// result is what a client saw of one request.
type result struct {
	status  int
	pool    string
	replica string
	model   string // the backend's model field
	text    string // message content, or concatenated stream deltas
	done    bool   // the stream ended with [DONE]
	usage   bool   // a usage object was seen
	body    string // raw body of a non-2xx answer
}

// chat sends a chat completion for prompt and reads the whole answer.
func (e *env) chat(ctx context.Context, model, prompt string, stream bool, extra string) (result, error) {
	body := fmt.Sprintf(`{%s"messages":[{"role":"user","content":%q}],"stream":%t%s}`, modelField(model), prompt, stream, extra)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.traffic+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	return readResult(resp, stream)
}

func modelField(model string) string {
	if model == "" {
		return ""
	}
	return fmt.Sprintf(`"model":%q,`, model)
}

func readResult(resp *http.Response, stream bool) (result, error) {
	res := result{status: resp.StatusCode, pool: resp.Header.Get("X-Cutover-Pool"), replica: resp.Header.Get("X-Cutover-Replica")}
	if resp.StatusCode != http.StatusOK {
		b, err := io.ReadAll(resp.Body)
		res.body = string(b)
		return res, err
	}
	if !stream {
		var v struct {
			Model   string `json:"model"`
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
			Usage *json.RawMessage `json:"usage"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			return res, fmt.Errorf("decode answer: %w", err)
		}
		res.model, res.usage = v.Model, v.Usage != nil
		if len(v.Choices) > 0 {
			res.text = v.Choices[0].Message.Content
		}
		return res, nil
	}
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if res.done {
			return res, errors.New("data after [DONE]")
		}
		if data == "[DONE]" {
			res.done = true
			continue
		}
		var c struct {
			Model   string           `json:"model"`
			Error   *json.RawMessage `json:"error"`
			Usage   *json.RawMessage `json:"usage"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return res, fmt.Errorf("bad chunk %q: %w", data, err)
		}
		if c.Error != nil {
			return res, fmt.Errorf("error inside the stream: %s", *c.Error)
		}
		res.model = c.Model
		if c.Usage != nil && string(*c.Usage) != "null" {
			res.usage = true
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Delta.Content)
		}
	}
	res.text = text.String()
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("stream cut: %w", err)
	}
	if !res.done {
		return res, errors.New("stream ended without [DONE]")
	}
	return res, nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package rollout

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// WarmupRequest is one chat completion sent to every new replica before it
// counts as ready, so weights are loaded and kernels compiled before any
// user request arrives.
type WarmupRequest struct {
	Prompt    string
	Stream    bool
	MaxTokens int
}

// warmer tracks warm-up progress per deployment and replica. It lives in
// memory only: after a restart, warm-up simply runs again.
type warmer struct {
	mu     sync.Mutex
	states map[string]*warmState // key: deployment id + " " + replica
	wg     sync.WaitGroup
}

type warmState struct {
	running, done bool
	err           string
	retryAt       time.Time
}

func newWarmer() *warmer { return &warmer{states: map[string]*warmState{}} }

func (w *warmer) state(id, replica string) warmState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := w.states[id+" "+replica]; s != nil {
		return *s
	}
	return warmState{}
}

// start runs the warm-up requests on r in the background.
func (w *warmer) start(ctx context.Context, c *Controller, id string, r *pool.Replica, model string) {
	key := id + " " + r.Name
	w.mu.Lock()
	s := w.states[key]
	if s == nil {
		s = &warmState{}
		w.states[key] = s
	}
	if s.running || s.done {
		w.mu.Unlock()
		return
	}
	s.running = true
	w.mu.Unlock()
	w.wg.Go(func() {
		err := c.warmReplica(ctx, r, model)
		w.mu.Lock()
		s.running = false
		if err != nil {
			s.err = err.Error()
			s.retryAt = c.now().Add(2 * time.Second) // compared with c.now() in reconcileWarming
		} else {
			s.done, s.err = true, ""
		}
		w.mu.Unlock()
		c.poke()
	})
}

func (w *warmer) wait() { w.wg.Wait() }

// warmReplica sends every warm-up request to r and checks each answer: 2xx,
// and for streams an end with [DONE] and no error event.
func (c *Controller) warmReplica(ctx context.Context, r *pool.Replica, model string) error {
	for i, wr := range c.opts.Settings.Warmup {
		if err := c.warmOnce(ctx, r, model, wr); err != nil {
			return fmt.Errorf("warm-up request %d (stream=%v): %w", i+1, wr.Stream, err)
		}
	}
	return nil
}

func (c *Controller) warmOnce(ctx context.Context, r *pool.Replica, model string, wr WarmupRequest) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Settings.WarmupTimeout)
	defer cancel()
	maxTokens := wr.MaxTokens
	if maxTokens == 0 {
		maxTokens = 16
	}
	body, _ := json.Marshal(map[string]any{
		"model":      model,
		"messages":   []map[string]string{{"role": "user", "content": wr.Prompt}},
		"max_tokens": maxTokens,
		"stream":     wr.Stream,
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Name+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	r.SetAuthorization(req.Header)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if !wr.Stream {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			return nil
		}
		var ev struct {
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal([]byte(data), &ev) == nil && len(ev.Error) > 0 && string(ev.Error) != "null" {
			return fmt.Errorf("error inside the stream: %s", ev.Error)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("stream broke: %w", err)
	}
	return fmt.Errorf("stream ended without [DONE]")
}

package driver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Response headers the example configurations set and the Verifier reads.
const (
	// PoolHeader names the pool a load balancer sent a request to.
	PoolHeader = "X-Cutover-Pool"
	// ConfigHeader names the version of the upstream file the nginx worker
	// that answered runs (a hash of the file, $<upstream>_config).
	ConfigHeader = "X-Cutover-Config"
)

// Verifier asks a load balancer what serves new requests, by requesting a
// URL through it, each time on a new connection, and reading PoolHeader
// (and ConfigHeader) from the answer. The answer's status does not
// matter: nginx adds the headers to its own error pages too (add_header
// ... always), HAProxy with http-after-response.
type Verifier struct {
	// URL is requested with GET through the load balancer.
	URL string
	// Timeout bounds Wait. Zero means 10s.
	Timeout time.Duration
	// Passes is how many answers in a row must match before Wait returns.
	// Zero means 3.
	Passes int
	// Settle is how long answers must keep matching, from the first one
	// that did, before Wait returns. After a reload nginx's master starts
	// the new workers, sleeps 100 ms, and only then tells the old ones to
	// stop accepting: until then both answer. Zero means no minimum.
	Settle time.Duration
	// Interval is the pause between two requests. Zero means 10ms.
	Interval time.Duration
	// Client sends the requests. Nil means a client without keep-alive.
	Client *http.Client
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// Answer is what one answer through the load balancer said.
type Answer struct {
	// Pool is PoolHeader's value.
	Pool string
	// Config is ConfigHeader's value, "" when absent.
	Config string
}

// Current returns what one answer says; an answer without PoolHeader is
// an error.
func (v *Verifier) Current(ctx context.Context) (Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, min(v.timeout(), 5*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL, nil)
	if err != nil {
		return Answer{}, fmt.Errorf("verify URL %q: %w", v.URL, err)
	}
	c := v.Client
	if c == nil {
		c = noKeepAlive
	}
	resp, err := c.Do(req)
	if err != nil {
		return Answer{}, err // *url.Error names the method and URL
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	a := Answer{Pool: resp.Header.Get(PoolHeader), Config: resp.Header.Get(ConfigHeader)}
	if a.Pool == "" {
		return Answer{}, fmt.Errorf("GET %s: status %d without an %s header (does the load balancer add it?)", v.URL, resp.StatusCode, PoolHeader)
	}
	return a, nil
}

// Wait polls until Passes answers in a row, spanning Settle, say want
// (want.Config "" matches any config), or fails with what the last answer
// said once Timeout has passed.
func (v *Verifier) Wait(ctx context.Context, want Answer) error {
	timeout := v.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	passes, interval := v.Passes, v.Interval
	if passes <= 0 {
		passes = 3
	}
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	t := time.NewTimer(0)
	defer t.Stop()
	var (
		last  error
		ok    int
		since time.Time // first answer of the current matching run
	)
	for ok < passes || time.Since(since) < v.Settle {
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("new requests do not reach pool %s after %s: %w", want.Pool, timeout, last)
		case <-t.C:
		}
		got, err := v.Current(ctx)
		switch {
		case err != nil:
			ok, last = 0, err
		case got.Pool != want.Pool:
			ok, last = 0, fmt.Errorf("%s answered %s: %s", v.URL, PoolHeader, got.Pool)
		case want.Config != "" && got.Config != want.Config:
			ok, last = 0, fmt.Errorf("%s answered %s: %q, want %q (the new file), or none when nginx.conf lacks `add_header %s $..._config always`",
				v.URL, ConfigHeader, got.Config, want.Config, ConfigHeader)
		default:
			if ok == 0 {
				since = time.Now()
			}
			ok++
		}
		t.Reset(interval)
	}
	return nil
}

func (v *Verifier) timeout() time.Duration {
	if v.Timeout > 0 {
		return v.Timeout
	}
	return 10 * time.Second
}

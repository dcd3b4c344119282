package driver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// PoolHeader is the response header that names the pool a load balancer
// sent a request to. The example configurations set it.
const PoolHeader = "X-Cutover-Pool"

// Verifier asks a load balancer which pool it sends new requests to, by
// requesting a URL it serves and reading PoolHeader from the answer. The
// answer's status does not matter: nginx adds the header to its own error
// pages too (add_header ... always), HAProxy with http-after-response.
type Verifier struct {
	// URL is requested with GET through the load balancer.
	URL string
	// Timeout bounds Wait. Zero means 10s.
	Timeout time.Duration
	// Passes is how many answers in a row, each on a new connection, must
	// name the pool before Wait returns. Zero means 3. After a reload
	// nginx's old workers may still accept a connection or two; several
	// passes on fresh connections tell that they stopped.
	Passes int
	// Interval is the pause between two requests. Zero means 10ms.
	Interval time.Duration
	// Client sends the requests. Nil means a client without keep-alive,
	// so that every request is a new connection.
	Client *http.Client
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// Current returns the pool named by one answer.
func (v *Verifier) Current(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, min(v.timeout(), 5*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL, nil)
	if err != nil {
		return "", fmt.Errorf("verify_url %q: %w", v.URL, err)
	}
	c := v.Client
	if c == nil {
		c = noKeepAlive
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err // *url.Error names the method and URL
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	pool := resp.Header.Get(PoolHeader)
	if pool == "" {
		return "", fmt.Errorf("GET %s: status %d without an %s header (is the load balancer configured to add it?)", v.URL, resp.StatusCode, PoolHeader)
	}
	return pool, nil
}

// Wait polls until Passes answers in a row name want, or fails with what
// the last answer said once Timeout has passed.
func (v *Verifier) Wait(ctx context.Context, want string) error {
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
	var last error
	for ok := 0; ok < passes; {
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("new requests do not reach pool %s after %s: %w", want, timeout, last)
		case <-t.C:
		}
		got, err := v.Current(ctx)
		switch {
		case err != nil:
			ok, last = 0, err
		case got != want:
			ok, last = 0, fmt.Errorf("%s answered %s: %s", v.URL, PoolHeader, got)
		default:
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

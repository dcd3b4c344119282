package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/cutover-dev/cutover/api"
)

// TestTrafficEndpoint: GET /api/v1/traffic answers, with the token only,
// each pool's recent request rate, error rate and TTFT p95 from the
// requests the gateway proxied.
func TestTrafficEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	for i := range 6 {
		if r, err := e.chat(ctx, testModels["blue"], "hello", i%2 == 0, ""); err != nil || r.status != http.StatusOK {
			t.Fatalf("request %d: %+v %v", i, r, err)
		}
	}
	tr, err := e.admin.Traffic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tr.ResolutionSeconds != 10 || tr.Since.IsZero() || len(tr.Pools["blue"]) == 0 || len(tr.Pools["green"]) == 0 {
		t.Fatalf("traffic: %+v", tr)
	}
	var blueRate float64
	var ttft bool
	for _, p := range tr.Pools["blue"] {
		blueRate += p.RequestsPerSecond
		ttft = ttft || p.TTFTP95MS != nil
		if p.ErrorsPerSecond != 0 {
			t.Errorf("blue errors at %s: %+v", p.Time, p)
		}
	}
	if blueRate == 0 || !ttft {
		t.Errorf("blue points show no requests or no TTFT: %+v", tr.Pools["blue"])
	}
	for _, p := range tr.Pools["green"] {
		if p.RequestsPerSecond != 0 {
			t.Errorf("green got traffic at %s: %+v", p.Time, p)
		}
	}

	noToken := &api.Client{BaseURL: e.admin.BaseURL, Token: "wrong"}
	_, err = noToken.Traffic(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Errorf("traffic with a wrong token: %v, want 401", err)
	}
}

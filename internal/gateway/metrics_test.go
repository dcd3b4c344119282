package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestMetricsEndpoint: /metrics on the admin listener needs the token and
// reflects real traffic through the gateway.
func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", mock: mockllm.Config{Tokens: 6}})
	for i := range 5 {
		stream, extra := i%2 == 0, ""
		if stream {
			extra = `,"stream_options":{"include_usage":true}`
		}
		if _, err := e.chat(context.Background(), "llama", "m", stream, extra); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(e.admin.BaseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, e.admin.BaseURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	for _, want := range []string{
		`cutover_requests_total{code="2xx",pool="blue"`,
		`cutover_output_tokens_total{pool="blue"`,
		`cutover_time_to_first_token_seconds_bucket{pool="blue"`,
		`cutover_live_pool{model="model-v1",pool="blue"} 1`,
		`cutover_replica_healthy{pool="green"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// 5 requests of 6 tokens each.
	var total float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "cutover_output_tokens_total{") {
			var v float64
			f := strings.Fields(line)
			if _, err := fmtSscan(f[len(f)-1], &v); err == nil {
				total += v
			}
		}
	}
	if total != 30 {
		t.Errorf("output tokens = %v, want 30", total)
	}
}

func fmtSscan(s string, v *float64) (int, error) { return fmt.Sscan(s, v) }

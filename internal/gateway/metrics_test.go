package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

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
	// A request is observed after its last bytes reach the client, so a
	// scrape right after the answers may miss the last of them: scrape
	// until all five are counted.
	var body string
	waitFor(t, "the five requests' tokens in /metrics", 20*time.Second, func() bool {
		body = scrapeMetrics(t, e)
		return outputTokens(body) >= 30
	})
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
	if total := outputTokens(body); total != 30 {
		t.Errorf("output tokens = %v, want 30", total)
	}
}

// scrapeMetrics reads the admin listener's /metrics with the token.
func scrapeMetrics(t testing.TB, e *env) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.admin.BaseURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// outputTokens sums cutover_output_tokens_total over its series in body.
func outputTokens(body string) float64 {
	var total float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "cutover_output_tokens_total{") {
			var v float64
			f := strings.Fields(line)
			if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
				total += v
			}
		}
	}
	return total
}

package proxy

import (
	"testing"
)

// TestCanaryModelIDRouting: during a canary, a request naming a pool's
// own model id goes to that pool when the weights drew the other; one
// pinned to a pool (the pool header and its token) stays there and gets
// 404 for the other pool's id; a pool with no share (weight 0) is not
// reached by naming its id.
func TestCanaryModelIDRouting(t *testing.T) {
	blue, green := newEchoBackend(t), newEchoBackend(t)
	for _, fe := range frontends {
		for _, tc := range []struct {
			name   string
			weight int
			model  string
			pin    string // pool header value, with the token
			status int
			pool   string
		}{
			{"canary's id", 50, "model-v2", "", 200, "green"},
			{"live's id", 50, "model-v1", "", 200, "blue"},
			{"canary's id at weight 0", 0, "model-v2", "", 404, ""},
			{"live's id at weight 100", 100, "model-v1", "", 404, ""},
			{"pinned to blue, green's id", 50, "model-v2", "blue", 404, ""},
		} {
			t.Run(fe.name+"/"+tc.name, func(t *testing.T) {
				h := newHandler(t, Options{PoolHeader: "X-Cutover-Pool", PoolHeaderToken: "tok"}, "llama")
				tb := testTable(t, "llama", blue.URL)
				tb.Pools["green"].Pool.Replicas = testTable(t, "", green.URL).Pools["blue"].Pool.Replicas
				tb.Canary, tb.CanaryWeight = tb.Pools["green"], tc.weight
				h.Apply(tb)
				addr := fe.start(t, h)
				for i := range 20 {
					pin, tok := tc.pin, ""
					if pin != "" {
						tok = "tok"
					}
					resp, b := send(t, "http://"+addr+"/v1/chat/completions", `{"model":"`+tc.model+`"}`,
						"X-Cutover-Pool", pin, "X-Cutover-Pool-Token", tok)
					if resp.StatusCode != tc.status {
						t.Fatalf("request %d: status %d, want %d: %s", i, resp.StatusCode, tc.status, b)
					}
					if tc.status != 200 {
						checkAPIError(t, b, "model_not_found")
						continue
					}
					if got := resp.Header.Get("X-Cutover-Pool"); got != tc.pool {
						t.Fatalf("request %d: X-Cutover-Pool %q, want %q", i, got, tc.pool)
					}
					if e := decodeEcho(t, b); e.Body != `{"model":"`+tc.model+`"}` {
						t.Fatalf("request %d: the replica got %q", i, e.Body)
					}
				}
			})
		}
	}
}

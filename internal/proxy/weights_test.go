package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// canaryHandler serves blue (live) and green (canary at weight) from two
// echo backends; affinity names the affinity header or "".
func canaryHandler(t *testing.T, weight int, affinity string) *Handler {
	t.Helper()
	blue, green := newEchoBackend(t), newEchoBackend(t)
	h := newHandler(t, Options{}, "", blue.URL)
	tb := h.Table()
	g := &pool.Pool{Name: "green", Model: "model-v2"}
	u, _ := url.Parse(green.URL)
	g.Replicas = []*pool.Replica{pool.NewReplica(u)}
	ct := route.New(2, "blue", "", tb.Live.Pool, g)
	ct.Canary, ct.CanaryWeight, ct.AffinityHeader = ct.Pools["green"], weight, affinity
	h.Apply(ct)
	return h
}

// TestCanaryPick: over both front ends, weight 0 and 100 send none/all
// requests to the canary, X-Cutover-Pool names the pool that answered,
// and with affinity one key stays on one pool.
func TestCanaryPick(t *testing.T) {
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			get := func(addr string, hdr map[string]string) string {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/models", nil)
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", resp.StatusCode)
				}
				return resp.Header.Get("X-Cutover-Pool")
			}
			for _, tt := range []struct {
				weight int
				want   string
			}{{0, "blue"}, {100, "green"}} {
				addr := fe.start(t, canaryHandler(t, tt.weight, ""))
				for range 20 {
					if got := get(addr, nil); got != tt.want {
						t.Fatalf("weight %d: served by %q, want %s", tt.weight, got, tt.want)
					}
				}
			}
			addr := fe.start(t, canaryHandler(t, 50, "X-Session-Id"))
			seen := map[string]int{}
			for i := range 40 {
				key := fmt.Sprintf("s%d", i)
				first := get(addr, map[string]string{"X-Session-Id": key})
				seen[first]++
				for range 2 {
					if got := get(addr, map[string]string{"x-session-id": key}); got != first {
						t.Fatalf("key %s served by %s then %s", key, first, got)
					}
				}
			}
			if seen["blue"] == 0 || seen["green"] == 0 {
				t.Fatalf("at 50 %% 40 keys all went one way: %v", seen)
			}
		})
	}
}

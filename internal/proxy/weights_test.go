package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// canaryHandler serves blue (live) and green (canary at weight) from two
// echo backends; affinity names the affinity header or "".
func canaryHandler(t *testing.T, opts Options, weight int, affinity string) *Handler {
	t.Helper()
	blue, green := newEchoBackend(t), newEchoBackend(t)
	h := newHandler(t, opts, "", blue.URL)
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
				addr := fe.start(t, canaryHandler(t, Options{}, tt.weight, ""))
				for range 20 {
					if got := get(addr, nil); got != tt.want {
						t.Fatalf("weight %d: served by %q, want %s", tt.weight, got, tt.want)
					}
				}
			}
			addr := fe.start(t, canaryHandler(t, Options{}, 50, "X-Session-Id"))
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

// TestPoolHeader: with the pool header configured, a request naming a
// pool with the right token goes there (the standby too); without the
// token, or with a wrong one, it goes by weight. Both headers are
// stripped either way. Off, they pass through like any header.
func TestPoolHeader(t *testing.T) {
	on := Options{PoolHeader: "X-Cutover-Target", PoolHeaderToken: "s3cret"}
	tests := []struct {
		name      string
		opts      Options
		hdr       map[string]string
		want      string
		forwarded bool
	}{
		{"named with token", on, map[string]string{"X-Cutover-Target": "green", "X-Cutover-Target-Token": "s3cret"}, "green", false},
		{"lower-case names", on, map[string]string{"x-cutover-target": "green", "x-cutover-target-token": "s3cret"}, "green", false},
		{"wrong token", on, map[string]string{"X-Cutover-Target": "green", "X-Cutover-Target-Token": "guess"}, "blue", false},
		{"no token", on, map[string]string{"X-Cutover-Target": "green"}, "blue", false},
		{"unknown pool", on, map[string]string{"X-Cutover-Target": "red", "X-Cutover-Target-Token": "s3cret"}, "blue", false},
		{"off", Options{}, map[string]string{"X-Cutover-Target": "green", "X-Cutover-Target-Token": "s3cret"}, "blue", true},
	}
	for _, fe := range frontends {
		for _, tt := range tests {
			t.Run(fe.name+"/"+tt.name, func(t *testing.T) {
				addr := fe.start(t, canaryHandler(t, tt.opts, 0, ""))
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/models", nil)
				for k, v := range tt.hdr {
					req.Header[k] = []string{v}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if got := resp.Header.Get("X-Cutover-Pool"); got != tt.want {
					t.Fatalf("served by %q, want %s", got, tt.want)
				}
				e := decodeEcho(t, string(b))
				if fwd := e.Header.Get("X-Cutover-Target") != "" || e.Header.Get("X-Cutover-Target-Token") != ""; fwd != tt.forwarded {
					t.Fatalf("headers forwarded: %v, want %v (%v)", fwd, tt.forwarded, e.Header)
				}
			})
		}
	}
}

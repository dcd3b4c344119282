package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLoopDetected: a pool whose replica is the gateway itself gets 508
// loop_detected after maxHops hops, through either server and either
// client to replicas, instead of opening connections to itself until it
// runs out of file descriptors. Regression: `cutover deploy --replica
// http://<the gateway's own listen address>` became ready (the gateway's
// /health and /v1/models pass its checks) and, once promoted, one request
// held some 20000 descriptors for 20 s.
func TestLoopDetected(t *testing.T) {
	transports := []struct {
		name string
		rt   func(t *testing.T) http.RoundTripper
	}{
		{"upstream", func(t *testing.T) http.RoundTripper {
			u := &Upstream{}
			t.Cleanup(u.CloseIdleConnections)
			return u
		}},
		{"net-http", func(t *testing.T) http.RoundTripper {
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			return tr
		}},
	}
	for _, fe := range frontends {
		for _, tr := range transports {
			if fe.name == "loop" && tr.name == "net-http" {
				continue // the loop hands such a handler's connections to net/http
			}
			t.Run(fe.name+"/"+tr.name, func(t *testing.T) {
				h := newHandler(t, Options{Transport: tr.rt(t)}, "")
				addr := fe.start(t, h)
				h.Apply(testTable(t, "", "http://"+addr)) // its own replica
				c, br := dialRaw(t, addr)
				c.SetDeadline(time.Now().Add(time.Minute)) // a loop fails the test, not hangs it
				writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", []string{"Content-Type: application/json"}, `{"model":"m"}`))
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != http.StatusLoopDetected || !strings.Contains(body, `"code":"loop_detected"`) {
					t.Fatalf("status %d: %.300q, want 508 loop_detected", resp.StatusCode, body)
				}
			})
		}
	}
}

// TestParseHops: the hops header's value, capped; anything else is 0.
func TestParseHops(t *testing.T) {
	for in, want := range map[string]int{"": 0, "0": 0, "3": 3, "7": 7, "8": maxHops, "99999999999999999999": maxHops, "-1": 0, "2x": 0, " 2": 0} {
		if got := parseHops(in); got != want {
			t.Errorf("parseHops(%q) = %d, want %d", in, got, want)
		}
	}
}

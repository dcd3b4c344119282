package proxy

import (
	"net/http"
	"slices"
	"testing"
)

// TestClientForwardingHeadersDropped: a client's Forwarded and
// X-Forwarded-For, -Host and -Proto never reach a replica (in any case,
// through either server and either client to replicas); the replica sees
// the gateway's own X-Forwarded-For only. Regression: Forwarded,
// X-Forwarded-Host and X-Forwarded-Proto were passed on, so a client
// could pose as another address or scheme to a replica that trusts them
// (Go's httputil.ReverseProxy drops all four).
func TestClientForwardingHeadersDropped(t *testing.T) {
	backend := newEchoBackend(t)
	header := []string{
		"Content-Type: application/json",
		"Forwarded: for=6.6.6.6;proto=https",
		"X-Forwarded-For: 6.6.6.6",
		"x-forwarded-host: evil.example",
		"X-FORWARDED-PROTO: https",
		"X-Real-Client: kept",
	}
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
				h := newHandler(t, Options{Transport: tr.rt(t)}, "", backend.URL)
				c, br := dialRaw(t, fe.start(t, h))
				writeRaw(t, c, rawRequest("POST", "/v1/chat/completions", header, "{}"))
				resp, body := readResp(t, br, "POST")
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %.300q", resp.StatusCode, body)
				}
				got := decodeEcho(t, body)
				for _, k := range []string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"} {
					if v, ok := got.Header[k]; ok {
						t.Errorf("the client's %s reached the replica: %q", k, v)
					}
				}
				if xff := got.Header["X-Forwarded-For"]; !slices.Equal(xff, []string{"127.0.0.1"}) {
					t.Errorf("replica saw X-Forwarded-For %q, want [127.0.0.1]", xff)
				}
				if v := got.Header["X-Real-Client"]; !slices.Equal(v, []string{"kept"}) {
					t.Errorf("replica saw X-Real-Client %q, want it passed on", v)
				}
			})
		}
	}
}

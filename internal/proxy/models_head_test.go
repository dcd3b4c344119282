package proxy

import (
	"net/http"
	"strconv"
	"testing"
)

// TestModelsHeadAnsweredLikeGet: with model_name, HEAD /v1/models gets the
// head of the gateway's own GET answer (the client-facing list's length,
// no body), through either server, and no replica sees it. Regression:
// HEAD went to a replica, whose head (its own list's length, its address
// in X-Cutover-Replica) told a client what GET hides.
func TestModelsHeadAnsweredLikeGet(t *testing.T) {
	backend := newEchoBackend(t)
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "llama", backend.URL)
			c, br := dialRaw(t, fe.start(t, h))
			writeRaw(t, c, rawRequest("GET", "/v1/models", nil, ""))
			get, getBody := readResp(t, br, "GET")
			writeRaw(t, c, rawRequest("HEAD", "/v1/models", nil, ""))
			head, headBody := readResp(t, br, "HEAD")
			if get.StatusCode != http.StatusOK || head.StatusCode != http.StatusOK {
				t.Fatalf("GET %d, HEAD %d, want 200 both", get.StatusCode, head.StatusCode)
			}
			if headBody != "" || head.Header.Get("Content-Length") != strconv.Itoa(len(getBody)) || head.Header.Get("Content-Type") != "application/json" {
				t.Errorf("HEAD answered %q with Content-Length %q, Content-Type %q; want GET's head (%d bytes of application/json) and no body",
					headBody, head.Header.Get("Content-Length"), head.Header.Get("Content-Type"), len(getBody))
			}
			if r := head.Header.Get("X-Cutover-Replica"); r != "" {
				t.Errorf("HEAD /v1/models reached replica %s", r)
			}
		})
	}
}

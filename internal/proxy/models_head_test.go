package proxy

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestModelsHeadAnsweredLikeGet: with model_name, HEAD /v1/models gets the
// head of the gateway's own GET answer (the client-facing list's length,
// no body), through either server, and no replica sees it. Regression:
// HEAD went to a replica, whose head (its own list's length, its address
// in X-Cutover-Replica) told a client what GET hides.
func TestModelsHeadAnsweredLikeGet(t *testing.T) {
	withModelName(t, func(t *testing.T, _ *Handler, c net.Conn, br *bufio.Reader) {
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

// withModelName runs fn over each front end, with a connection to a
// Handler whose table has model_name llama over an echo backend.
func withModelName(t *testing.T, fn func(t *testing.T, h *Handler, c net.Conn, br *bufio.Reader)) {
	backend := newEchoBackend(t)
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			h := newHandler(t, Options{}, "llama", backend.URL)
			c, br := dialRaw(t, fe.start(t, h))
			fn(t, h, c, br)
		})
	}
}

// TestModelsListNeedsAHealthyReplica: with model_name, the gateway's own
// GET and HEAD /v1/models answer 503 no_healthy_replica, as /health does,
// while the live pool has no healthy replica (a regression: 200 with the
// list, so clients probing liveness with it saw a pool that failed every
// completion), and the list again once one is back.
func TestModelsListNeedsAHealthyReplica(t *testing.T) {
	withModelName(t, func(t *testing.T, h *Handler, c net.Conn, br *bufio.Reader) {
		rep := h.Table().Live.Pool.Replicas[0]
		rep.Eject(time.Now(), errors.New("check failed"))
		for _, m := range []string{"GET", "HEAD"} {
			writeRaw(t, c, rawRequest(m, "/v1/models", nil, ""))
			resp, body := readResp(t, br, m)
			if resp.StatusCode != http.StatusServiceUnavailable || m == "GET" && !strings.Contains(body, `"code":"no_healthy_replica"`) {
				t.Fatalf("%s with no healthy replica: %d %q", m, resp.StatusCode, body)
			}
		}
		rep.RecordCheck(time.Now(), nil, 1, 1)
		writeRaw(t, c, rawRequest("GET", "/v1/models", nil, ""))
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"llama"`) {
			t.Fatalf("with the replica back: %d %q", resp.StatusCode, body)
		}
	})
}

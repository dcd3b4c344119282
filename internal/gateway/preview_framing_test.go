package gateway_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

// TestPreviewListenerFramingChecks: the preview listener refuses what the
// traffic listener refuses from the raw bytes — an HTTP/1.0 request with
// Transfer-Encoding, which net/http alone forwarded with an empty body —
// with 400 and a closed connection, nothing sent to the standby pool,
// while a well-framed request still reaches it.
func TestPreviewListenerFramingChecks(t *testing.T) {
	e := newEnv(t, envOptions{modelName: "llama", edit: func(c *config.Config) { c.Preview.Listen = "127.0.0.1:0" }})
	body := `{"model":"llama","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`
	for _, tc := range []struct {
		name       string
		req        string
		wantStatus int
		wantPool   string // X-Cutover-Pool; "" for none
		wantSent   bool   // the standby's replicas got the request
	}{
		{"HTTP/1.0 with Transfer-Encoding: refused, closed",
			"POST /v1/chat/completions HTTP/1.0\r\nHost: preview\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
				chunk(body) + "0\r\n\r\n",
			http.StatusBadRequest, "", false},
		{"well framed: to the standby pool",
			"POST /v1/chat/completions HTTP/1.1\r\nHost: preview\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\n\r\n" + body,
			http.StatusOK, "green", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := greenRequests(e)
			c, err := net.Dial("tcp", e.gw.PreviewAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("X-Cutover-Pool") != tc.wantPool {
				t.Fatalf("answer %d from pool %q: %s; want %d from %q", resp.StatusCode, resp.Header.Get("X-Cutover-Pool"), got, tc.wantStatus, tc.wantPool)
			}
			if tc.wantStatus == http.StatusBadRequest && !strings.Contains(string(got), `"error"`) {
				t.Fatalf("refusal body %s, want the OpenAI error shape", got)
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
				t.Fatalf("after the answer: read %d bytes, %v; want the connection closed", n, err)
			}
			if sent := greenRequests(e) > before; sent != tc.wantSent {
				t.Fatalf("the standby's replicas got the request: %v, want %v", sent, tc.wantSent)
			}
		})
	}
}

// greenRequests sums the completion requests green's replicas received.
func greenRequests(e *env) uint64 {
	var n uint64
	for _, r := range e.pools["green"] {
		n += r.mock.Stats().Requests
	}
	return n
}

func chunk(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }

package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestModelNotFoundBodyIsJSON: the 404 for an unknown model quotes the
// name the client sent; whatever it holds, the body stays JSON on both
// paths (a regression: it was quoted the Go way, \x01 and all).
func TestModelNotFoundBodyIsJSON(t *testing.T) {
	backend := newEchoBackend(t)
	for _, fe := range frontends {
		t.Run(fe.name, func(t *testing.T) {
			addr := fe.start(t, newHandler(t, Options{}, "chat", backend.URL))
			for _, body := range []string{
				`{"model":"gpt\u0001"}`, `{"model":"a\u000bb"}`, `{"model":"del\u007f"}`,
				"{\"model\":\"bad\xffutf8\"}", `{"model":"x\udb40\udc01"}`,
			} {
				resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 404 {
					t.Fatalf("request %q: status %d, want 404", body, resp.StatusCode)
				}
				checkAPIError(t, string(b), "model_not_found")
			}
		})
	}
}

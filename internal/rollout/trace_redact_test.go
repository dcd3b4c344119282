package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/hook"
)

// spanLog is a Tracer that keeps every attribute and error text of its
// spans as one string each.
type spanLog struct {
	mu    sync.Mutex
	spans []string
}

func (l *spanLog) Span(ctx context.Context, name string, _ time.Time, attrs ...slog.Attr) (context.Context, func(error, ...slog.Attr)) {
	return ctx, func(err error, more ...slog.Attr) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.spans = append(l.spans, fmt.Sprint(name, attrs, more, err))
	}
}

func (l *spanLog) Propagation(context.Context) (string, string) { return "", "" }

// TestHookSpanRedactsWebhookSecrets: a webhook hook's span and outcome
// name its URL without the user info and query that often carry its
// credentials (span attributes and error, the outcome's hook and error,
// so the history and the log too), whether the webhook answered an
// error or could not be reached. Regression: the span (exported to a
// tracing collector) and the log carried
// "POST https://user:password@host/...?token=...".
func TestHookSpanRedactsWebhookSecrets(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // connection refused
	for _, tc := range []struct{ name, base string }{{"http error", failing.URL}, {"unreachable", gone.URL}} {
		t.Run(tc.name, func(t *testing.T) {
			url := strings.Replace(tc.base, "http://", "http://ci:hunter2@", 1) + "/hook?token=t0psecret"
			l := &spanLog{}
			h := tracedHooks{HookRunner: &hook.Runner{}, t: l}
			o := h.Run(context.Background(), hook.Spec{Webhook: url, Timeout: 5 * time.Second}, hook.Payload{Event: "on_promote"})
			if o.OK {
				t.Fatalf("hook succeeded: %+v", o)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if len(l.spans) != 1 {
				t.Fatalf("spans %q, want one", l.spans)
			}
			for _, secret := range []string{"hunter2", "t0psecret", "xxxxx"} {
				if strings.Contains(l.spans[0], secret) {
					t.Errorf("span carries %q: %s", secret, l.spans[0])
				}
				if strings.Contains(o.Summary(), secret) || strings.Contains(o.Hook, secret) {
					t.Errorf("outcome carries %q: %s", secret, o.Summary())
				}
			}
			if !strings.Contains(l.spans[0], strings.TrimPrefix(tc.base, "http://")+"/hook") {
				t.Errorf("span does not name the webhook's host and path: %s", l.spans[0])
			}
		})
	}
}

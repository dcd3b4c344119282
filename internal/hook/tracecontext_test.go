package hook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTraceContextReachesHooks: a payload's trace context reaches a
// command as TRACEPARENT and TRACESTATE and a webhook as its headers, and
// stays out of the webhook's JSON body; without one neither is set.
func TestTraceContextReachesHooks(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	traced := payload
	traced.Traceparent, traced.Tracestate = tp, "k=v"
	t.Setenv("TRACEPARENT", "") // the gateway's own environment has none
	show := Spec{Command: []string{"sh", "-c", `echo "[$TRACEPARENT][$TRACESTATE]"`}}
	if o := (&Runner{}).Run(context.Background(), show, traced); strings.TrimSpace(o.Output) != "["+tp+"][k=v]" {
		t.Errorf("traced command saw %q", o.Output)
	}
	if o := (&Runner{}).Run(context.Background(), show, payload); strings.TrimSpace(o.Output) != "[][]" {
		t.Errorf("untraced command saw %q", o.Output)
	}

	var hdr http.Header
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr = r.Header.Clone()
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if o := (&Runner{}).Run(context.Background(), Spec{Webhook: srv.URL}, traced); !o.OK {
		t.Fatalf("webhook: %+v", o)
	}
	if hdr.Get("Traceparent") != tp || hdr.Get("Tracestate") != "k=v" {
		t.Errorf("webhook headers %v", hdr)
	}
	if strings.Contains(body, tp) {
		t.Errorf("trace context in the webhook's body: %s", body)
	}
	if o := (&Runner{}).Run(context.Background(), Spec{Webhook: srv.URL}, payload); !o.OK || hdr.Get("Traceparent") != "" {
		t.Errorf("untraced webhook: %+v, traceparent %q", o, hdr.Get("Traceparent"))
	}
}

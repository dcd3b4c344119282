package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type lastObs struct{ o chan Observation }

func (l lastObs) Observe(o *Observation) { l.o <- *o }

// TestIdleStreamIsAborted: a stream whose replica goes silent longer than
// the idle timeout is cut (the client sees a truncated stream, never a
// clean end), with either upstream client, and observed as upstream_idle.
func TestIdleStreamIsAborted(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
				w.(http.Flusher).Flush()
				select { // then silence
				case <-release:
				case <-r.Context().Done():
				}
			}))
			defer backend.Close()
			obs := lastObs{make(chan Observation, 1)}
			h := New(Options{Transport: tr.new(), IdleTimeout: 100 * time.Millisecond, Observer: obs})
			h.Apply(benchTableT(t, backend.URL))
			gw := httptest.NewServer(h)
			defer gw.Close()
			resp, err := http.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("stream ended cleanly after going idle: %q", b)
			}
			if !strings.Contains(string(b), `"a"`) {
				t.Errorf("first chunk lost: %q", b)
			}
			select {
			case o := <-obs.o:
				if o.Error != "upstream_idle" {
					t.Errorf("observed error %q, want upstream_idle", o.Error)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no observation")
			}
		})
	}
}

// TestIdleTimeoutHTTPSReplica: with the default client (Upstream, whose
// Fallback serves https), a stream from an https replica that goes silent
// is cut by IdleTimeout too (a regression: only requests through
// http.Transport had the means). https pools are served by net/http on
// both frontends.
func TestIdleTimeoutHTTPSReplica(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer backend.Close()
	defer close(release)
	for _, fe := range []struct {
		name  string
		start func(t *testing.T, h *Handler) string
	}{
		{"server", func(t *testing.T, h *Handler) string { return startServer(t, &Server{Handler: h}) }},
		{"net-http", startNetHTTP},
	} {
		t.Run(fe.name, func(t *testing.T) {
			obs := lastObs{make(chan Observation, 1)}
			u := &Upstream{Fallback: backend.Client().Transport}
			h := New(Options{Transport: u, IdleTimeout: 100 * time.Millisecond, Observer: obs, Logger: quiet})
			h.Apply(benchTableT(t, backend.URL))
			client := &http.Client{Timeout: 3 * time.Second}
			resp, err := client.Post("http://"+fe.start(t, h)+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if isTimeout(err) {
				t.Fatalf("the stream was still open when the client gave up (read %q)", b)
			}
			if o := <-obs.o; o.Error != "upstream_idle" {
				t.Errorf("observed error %q, want upstream_idle", o.Error)
			}
		})
	}
}

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

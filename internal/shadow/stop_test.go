package shadow

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/proxy"
)

// TestStopCancelsCopiesInFlight: Stop (a deployment aborted, failed or
// done validating) cancels the copies still waiting on the candidate
// instead of leaving them for up to Timeout (a regression: a hanging
// candidate kept the gateway's copies, and their connections, for two
// minutes after an abort; then the same through the helper process,
// validation.shadow.priority idle), and their pairs go to no sink.
func TestStopCancelsCopiesInFlight(t *testing.T) {
	for _, sd := range senders {
		// An https candidate's copies are sent by the gateway's process
		// even while a helper runs.
		for _, tls := range []bool{false, true} {
			name := sd.name
			if tls {
				name += "/https"
			}
			t.Run(name, func(t *testing.T) {
				started, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body) // so that net/http notices the client leaving
					started <- struct{}{}
					<-r.Context().Done()
					cancelled <- struct{}{}
				})
				srv := httptest.NewUnstartedServer(h)
				if tls {
					srv.StartTLS()
				} else {
					srv.Start()
				}
				defer srv.Close()
				u, _ := url.Parse(srv.URL)
				r := pool.NewReplica(u)
				cand := &pool.Pool{Name: "green", Model: "m2", Replicas: []*pool.Replica{r}}
				m := New(Options{Percent: 100, Concurrency: 1, Timeout: time.Hour, Upstream: &proxy.Upstream{}, HTTP: srv.Client(), Helper: sd.helper(t)})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				defer func() { cancel(); <-done }()
				pairs := make(chan Pair, 1)
				m.SetTarget("blue", cand, func(p Pair) { pairs <- p })
				go func() { m.Run(ctx); close(done) }()
				m.Submit(&proxy.Mirrored{Path: "/v1/chat/completions", Body: []byte(`{"model":"m1","messages":[{"role":"user","content":"hi"}]}`),
					Live: proxy.Observation{Pool: "blue", Status: http.StatusOK}})
				select {
				case <-started:
				case <-time.After(20 * time.Second):
					t.Fatal("the copy never reached the candidate")
				}
				if n := len(m.Unanswered()); n != 1 {
					t.Fatalf("Unanswered lists %d copies, want the one in flight", n)
				}
				m.Stop()
				select {
				case <-cancelled:
				case <-time.After(20 * time.Second):
					t.Fatal("the copy in flight was not cancelled by Stop")
				}
				await(t, "the replica released", func() bool { return r.InFlight() == 0 })
				if u := m.Unanswered(); u != nil {
					t.Fatalf("Unanswered after Stop: %v, want nil", u)
				}
				select {
				case p := <-pairs:
					t.Fatalf("a copy cancelled by Stop reached the sink: %+v", p)
				case <-time.After(100 * time.Millisecond):
				}
			})
		}
	}
}

package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
)

// heldBackend is a replica that answers a request only when told to: it
// reports each arrival on arrived and answers on its release channel.
type heldBackend struct {
	srv     *httptest.Server
	arrived chan string // the backend's URL, once per request
	release chan struct{}
}

func newHeldBackend(t *testing.T, arrived chan string) *heldBackend {
	t.Helper()
	b := &heldBackend{arrived: arrived, release: make(chan struct{}, 16)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		b.arrived <- b.srv.URL
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	closeAtEnd(t, b.srv)
	return b
}

// TestGatewayQueueHoldsUntilASlotFrees runs the llm balancer's gateway
// queue over real sockets on every serving path: with both replicas'
// single slot taken, a third request waits at the gateway (not in a
// replica's queue) and goes to the replica whose request ends first; a
// held request whose client leaves reaches no replica.
func TestGatewayQueueHoldsUntilASlotFrees(t *testing.T) {
	for _, sp := range servingPaths {
		t.Run(sp.name, func(t *testing.T) {
			arrived := make(chan string, 16)
			a, b := newHeldBackend(t, arrived), newHeldBackend(t, arrived)
			byURL := map[string]*heldBackend{a.srv.URL: a, b.srv.URL: b}
			l := pool.NewLLM(pool.LLMOptions{QueueTimeout: time.Hour, StaleAfter: time.Hour})
			h := newPathHandler(t, sp.netHTTP, Options{Picker: l}, a.srv.URL, b.srv.URL)
			for _, r := range h.table.Load().Live.Pool.Replicas {
				// Each engine runs one sequence at most and was seen queueing.
				r.SetEngineLoad(&pool.EngineLoad{At: time.Now(), Slots: 1, Queued: true})
			}
			addr := sp.start(t, h)
			type answer struct {
				status int
				err    error
			}
			send := func(ctx context.Context) <-chan answer {
				ch := make(chan answer, 1)
				go func() {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/chat/completions",
						strings.NewReader(`{"model":"model-v1","messages":[{"role":"user","content":"hi"}]}`))
					req.Header.Set("Content-Type", "application/json")
					resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
					if err != nil {
						ch <- answer{err: err}
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ch <- answer{status: resp.StatusCode}
				}()
				return ch
			}
			waitHeld := func(n int) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					st, _ := l.QueueStats("blue")
					if st.Waiting == n {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("held: %+v, want %d waiting", st, n)
					}
					time.Sleep(time.Millisecond)
				}
			}
			first := send(context.Background())
			firstAt := <-arrived
			second := send(context.Background())
			if at := <-arrived; at == firstAt {
				t.Fatalf("both requests went to %s", at)
			}
			third := send(context.Background())
			waitHeld(1)
			byURL[firstAt].release <- struct{}{}
			if ans := <-first; ans.err != nil || ans.status != 200 {
				t.Fatalf("first: %+v", ans)
			}
			if at := <-arrived; at != firstAt {
				t.Fatalf("the held request went to %s, want %s (the replica that freed a slot)", at, firstAt)
			}

			// Both full again; a fourth request is held, and its client leaves.
			ctx, cancel := context.WithCancel(context.Background())
			fourth := send(ctx)
			waitHeld(1)
			cancel()
			if ans := <-fourth; ans.err == nil {
				t.Fatalf("fourth: %+v, want the client's own error", ans)
			}
			deadline := time.Now().Add(10 * time.Second)
			for st, _ := l.QueueStats("blue"); st.Canceled != 1; st, _ = l.QueueStats("blue") {
				if time.Now().After(deadline) {
					t.Fatalf("stats %+v, want one canceled", st)
				}
				time.Sleep(time.Millisecond)
			}
			for _, be := range []*heldBackend{a, b} {
				be.release <- struct{}{}
			}
			for _, ch := range []<-chan answer{second, third} {
				if ans := <-ch; ans.err != nil || ans.status != 200 {
					t.Fatalf("answer %+v", ans)
				}
			}
			select {
			case at := <-arrived:
				t.Fatalf("the canceled request reached %s", at)
			default:
			}
			st, _ := l.QueueStats("blue")
			if st.Held != 2 || st.Dispatched != 1 || st.Canceled != 1 || st.Waiting != 0 {
				t.Fatalf("stats %+v", st)
			}
			// The answers are out before their replicas are released.
			deadline = time.Now().Add(10 * time.Second)
			for _, r := range h.table.Load().Live.Pool.Replicas {
				for r.InFlight() != 0 {
					if time.Now().After(deadline) {
						t.Fatalf("%s: %d in flight at the end", r.Name, r.InFlight())
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
}

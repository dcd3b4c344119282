package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/selfaddr"
	"github.com/cutover-dev/cutover/internal/validation"
)

// Preflight answers a fakeReplica can give to a chat completion.
const (
	answerOK          = "ok"
	answer500         = "500"
	answerErrorIn200  = "error-in-200"
	answerErrorStream = "error-in-stream"
	answerHang        = "hang"
)

// fakeReplica is an OpenAI-style replica on a real socket whose
// completions answer as its mode says; health and /v1/models are the
// fakeProber's business, as they stay fine in the accident this guards
// against.
type fakeReplica struct {
	srv *httptest.Server
	// arrived gets a value (if it has room) as each completion arrives.
	arrived chan struct{}

	mu    sync.Mutex
	mode  string
	calls int
	body  map[string]any // the last completion request
	auth  string         // its Authorization
}

func newFakeReplica(t *testing.T, mode string) *fakeReplica {
	t.Helper()
	r := &fakeReplica{mode: mode, arrived: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fakeReplica) URL() string { return r.srv.URL }

func (r *fakeReplica) set(mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = mode
}

func (r *fakeReplica) last() (calls int, body map[string]any, auth string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.body, r.auth
}

func (r *fakeReplica) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, req)
		return
	}
	var body map[string]any
	_ = json.NewDecoder(req.Body).Decode(&body)
	r.mu.Lock()
	r.calls++
	r.body, r.auth = body, req.Header.Get("Authorization")
	mode := r.mode
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
	switch mode {
	case answerOK:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"length"}]}`, body["model"])
	case answer500:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"error":{"message":"engine dead","type":"InternalServerError","code":500}}`)
	case answerErrorIn200:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"error","error":{"message":"CUDA out of memory","type":"InternalServerError","code":500}}`)
	case answerErrorStream:
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n")
		fmt.Fprint(w, "data: {\"error\":{\"message\":\"engine loop died\",\"type\":\"InternalServerError\",\"code\":500}}\n\n")
		fmt.Fprint(w, "data: [DONE]\n\n")
	case answerHang:
		<-req.Context().Done() // until the preflight gives up
	}
}

// newPreflightFx is newFx with the real preflight against blue and green
// replicas on sockets; green is the standby with the configured pool's
// key file.
func newPreflightFx(t *testing.T, minReady int, blue, green []*fakeReplica) *fx {
	t.Helper()
	urls := func(rs []*fakeReplica) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.URL())
		}
		return out
	}
	return newFx(t, func(o *Options) {
		o.Preflight = &CompletionPreflight{}
		o.Settings.PreflightTimeout = 2 * time.Second
		o.Settings.MinReady = minReady
		o.ReadKey = func(file string) (string, error) { return "key-of-" + file, nil }
		o.Pools = map[string]PoolSpec{
			"blue":  {Model: "m1", Replicas: urls(blue), APIKeyFile: "blue"},
			"green": {Model: "m2", Replicas: urls(green), APIKeyFile: "green"},
		}
	})
}

// TestPreflightGatesPromote: right before a promote each healthy replica
// of the standby gets one real completion; too few good answers refuse
// the promote naming every replica and what it answered, record it in the
// history, and leave blue live. Before the preflight existed each of
// these promotes succeeded and every client request then failed on green.
func TestPreflightGatesPromote(t *testing.T) {
	for _, tc := range []struct {
		name     string
		minReady int
		modes    []string // green's replicas
		refuse   []string // in the refusal; nil: the promote passes
	}{
		{name: "all answer", modes: []string{answerOK, answerOK}},
		{name: "500", modes: []string{answer500}, refuse: []string{"status 500", "engine dead", "0 of 1"}},
		{name: "error object in a 200", modes: []string{answerErrorIn200}, refuse: []string{"status 200 with an error object", "CUDA out of memory"}},
		{name: "error inside a 200 stream", modes: []string{answerErrorStream}, refuse: []string{"error inside the stream", "engine loop died"}},
		{name: "hang", modes: []string{answerHang}, refuse: []string{"no answer before the preflight timeout", "timeout 2s"}},
		{name: "one of two bad, min_ready all", modes: []string{answerOK, answer500}, refuse: []string{"1 of 2 healthy replica(s) of green answered, 2 needed"}},
		{name: "one of two bad, min_ready 1", minReady: 1, modes: []string{answerOK, answer500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var green []*fakeReplica
			for _, m := range tc.modes {
				green = append(green, newFakeReplica(t, m))
			}
			f := newPreflightFx(t, tc.minReady, []*fakeReplica{newFakeReplica(t, answerOK)}, green)
			rev := f.c.Status().Revision
			sw, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{})
			for _, r := range green {
				calls, body, auth := r.last()
				if calls != 1 || body["model"] != "m2" || body["max_tokens"] != float64(1) || auth != "Bearer key-of-green" {
					t.Fatalf("%s got %d preflight(s), the last %v with Authorization %q", r.URL(), calls, body, auth)
				}
			}
			if tc.refuse == nil {
				if err != nil || sw.Live != "green" {
					t.Fatalf("promote: %+v %v", sw, err)
				}
				return
			}
			refused(t, err, "preflight_failed", append([]string{"promote refused", "blue stays live"}, tc.refuse...)...)
			for i, r := range green {
				if tc.modes[i] != answerOK && !strings.Contains(err.Error(), r.URL()+": ") {
					t.Fatalf("refusal %q does not name %s", err, r.URL())
				}
			}
			s := f.c.Status()
			if s.Live != "blue" || s.Revision != rev+1 {
				t.Fatalf("after a refused preflight: live %s revision %d (was %d; only the history event may add one)", s.Live, s.Revision, rev)
			}
			if e := f.lastEvent("preflight_failed"); e.Actor != "op" || e.Reason != err.Error() {
				t.Fatalf("history event %+v", e)
			}
		})
	}
}

// TestPreflightGatesDeploymentPromote: a deployment that passed warm-up
// (and whatever validation) whose replicas stop serving completions while
// it waits in ready is not promoted, neither by an operator nor
// automatically; once they answer again the promote goes through.
func TestPreflightGatesDeploymentPromote(t *testing.T) {
	// Health and /v1/models stay fine (the fakeProber) while completions
	// fail from the start: ready is reached all the same.
	cand := newFakeReplica(t, answer500)
	f := newPreflightFx(t, 0, []*fakeReplica{newFakeReplica(t, answerOK)}, nil)
	f.opts.Settings.AutoPromote = true
	f.restart()
	if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3", Replicas: []string{cand.URL()}}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseReady)
	_, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{})
	refused(t, err, "preflight_failed", cand.URL(), "status 500", `model "m3"`)
	f.step() // auto_promote_after 0: the automatic promotion is due
	d := f.latest()
	if d.Phase != "ready" || !strings.Contains(d.Waiting, "auto-promotion blocked") || !strings.Contains(d.Waiting, "preflight") {
		t.Fatalf("after a refused automatic promotion: %s (%s)", d.Phase, d.Waiting)
	}
	if e := f.lastEvent("preflight_failed"); e.Actor != "controller" || e.Deployment != d.ID {
		t.Fatalf("history event %+v", e)
	}
	if s := f.c.Status(); s.Live != "blue" {
		t.Fatalf("live %s", s.Live)
	}
	cand.set(answerOK)
	if sw, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil || sw.Live != "green" {
		t.Fatalf("promote once the candidate answers: %+v %v", sw, err)
	}
}

// TestPreflightGatesRollback: rolling back onto a retained pool whose
// replicas pass their health checks but fail completions is the same
// accident as promoting one; it is refused the same way, within the
// deployment's retention and without a deployment.
func TestPreflightGatesRollback(t *testing.T) {
	t.Run("retained pool of a deployment", func(t *testing.T) {
		old := newFakeReplica(t, answerOK)
		cand := newFakeReplica(t, answerOK)
		f := newPreflightFx(t, 0, []*fakeReplica{old}, nil)
		if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3", Replicas: []string{cand.URL()}}); err != nil {
			t.Fatal(err)
		}
		f.until(PhaseReady)
		if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
			t.Fatal(err)
		}
		old.set(answerHang)
		_, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
		refused(t, err, "preflight_failed", "rollback refused", old.URL(), "no answer before the preflight timeout", "green stays live")
		if d := f.latest(); f.c.Status().Live != "green" || d.Phase != "promoted" {
			t.Fatalf("after a refused rollback: live %s, %s", f.c.Status().Live, d.Phase)
		}
		old.set(answerOK)
		if sw, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{}); err != nil || sw.Live != "blue" {
			t.Fatalf("rollback once blue answers: %+v %v", sw, err)
		}
	})
	t.Run("automatic rollback of the post-promotion checks", func(t *testing.T) {
		old := newFakeReplica(t, answerOK)
		cand := newFakeReplica(t, answerOK)
		f := newPreflightFx(t, 0, []*fakeReplica{old}, nil)
		f.opts.Validator = f.val
		f.opts.Validation = ValidationSettings{Enabled: true, PostPromotionWindow: 10 * time.Minute, Interval: 5 * time.Second}
		f.restart()
		if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3", Replicas: []string{cand.URL()}}); err != nil {
			t.Fatal(err)
		}
		f.until(PhaseValidating)
		f.step() // the window starts
		f.clk.Advance(5 * time.Second)
		f.until(PhaseReady)
		if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
			t.Fatal(err)
		}
		f.step() // starts the post-promotion window
		old.set(answer500)
		f.val.set(validation.Fail)
		f.clk.Advance(5 * time.Second)
		f.step()
		if d := f.latest(); f.c.Status().Live != "green" || d.Phase != "promoted" || !strings.Contains(d.Waiting, "could not roll back automatically") {
			t.Fatalf("automatic rollback onto a blue failing completions: live %s, %s (%s)", f.c.Status().Live, d.Phase, d.Waiting)
		}
		if e := f.lastEvent("auto_rollback_failed"); !strings.Contains(e.Reason, "preflight") || !strings.Contains(e.Reason, old.URL()+": status 500") {
			t.Fatalf("history event %+v", e)
		}
	})
	t.Run("plain switch", func(t *testing.T) {
		blue := newFakeReplica(t, answerOK)
		f := newPreflightFx(t, 0, []*fakeReplica{blue}, []*fakeReplica{newFakeReplica(t, answerOK)})
		if _, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{}); err != nil {
			t.Fatal(err)
		}
		blue.set(answerErrorIn200)
		_, err := f.c.Rollback(f.ctx, "op", api.RollbackRequest{})
		refused(t, err, "preflight_failed", "rollback refused", blue.URL(), "error object", "green stays live")
		if s := f.c.Status(); s.Live != "green" {
			t.Fatalf("live %s", s.Live)
		}
	})
}

// TestCheckCompletion: what counts as a completion in a 200.
func TestCheckCompletion(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		err            string // "" passes
	}{
		{"completion", "application/json", `{"choices":[{"message":{"content":"a"}}]}`, ""},
		{"null error", "application/json", `{"error":null,"choices":[{}]}`, ""},
		{"error object", "application/json", `{"error":{"message":"x"}}`, "error object"},
		{"no choices", "application/json", `{"id":"x"}`, "no choices"},
		{"not json", "text/html", `<html>bad gateway</html>`, "not a completion"},
		{"empty", "", ``, "not a completion"},
		{"stream", "text/event-stream; charset=utf-8", "data: {\"choices\":[{}]}\n\ndata: [DONE]\n\n", ""},
		{"stream with error", "text/event-stream", "data: {\"choices\":[{}]}\n\ndata: {\"error\":{\"message\":\"x\"}}\n\n", "inside the stream"},
		{"stream without choice", "text/event-stream", "data: [DONE]\n\n", "no choice"},
		{"stream garbage", "text/event-stream", "data: {oops\n\n", "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCompletion(tc.ct, []byte(tc.body))
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
}

// TestPreflightCallerGone: a caller that hangs up ends the preflight at
// once, whatever the timeout.
func TestPreflightCallerGone(t *testing.T) {
	r := newFakeReplica(t, answerHang)
	f := newPreflightFx(t, 0, []*fakeReplica{newFakeReplica(t, answerOK)}, []*fakeReplica{r})
	f.c.opts.Settings.PreflightTimeout = time.Hour
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() {
		_, err := f.c.Promote(ctx, "op", api.PromoteRequest{})
		done <- err
	}()
	select {
	case <-r.arrived:
	case err := <-done:
		t.Fatalf("promote ended (%v) before its preflight reached the replica", err)
	}
	cancel()
	err := <-done
	refused(t, err, "preflight_failed", "context canceled")
	if s := f.c.Status(); s.Live != "blue" {
		t.Fatalf("live %s", s.Live)
	}
}

// TestPreflightHoldsCanaryAt100: a canary step to 100 % sends every new
// request to the new pool, a switch like a promote: while the candidate
// fails completions the canary stays at its weight (status and history
// say why), and goes on once it answers.
func TestPreflightHoldsCanaryAt100(t *testing.T) {
	cand := newFakeReplica(t, answerErrorIn200)
	f := newPreflightFx(t, 0, []*fakeReplica{newFakeReplica(t, answerOK)}, nil)
	f.opts.Canary = CanarySettings{Steps: []CanaryStep{{Weight: 50, Pause: time.Minute}, {Weight: 100, Pause: time.Minute}}, AffinityHeader: "X-Session-Id", AffinityHash: []string{"user"}}
	f.restart()
	if _, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3", Replicas: []string{cand.URL()}}); err != nil {
		t.Fatal(err)
	}
	f.until(PhaseCanary)
	f.clk.Advance(time.Minute)
	f.step()
	d := f.latest()
	if d.Phase != "canary" || d.Canary.Step != 1 || d.Canary.Weight != 50 || !strings.Contains(d.Waiting, "canary held at 50%") || !strings.Contains(d.Waiting, "error object") {
		t.Fatalf("step to 100%% with a candidate failing completions: %s %+v (%s)", d.Phase, d.Canary, d.Waiting)
	}
	if e := f.lastEvent("preflight_failed"); !strings.Contains(e.Reason, "canary step 2/2 to 100% refused") || !strings.Contains(e.Reason, cand.URL()) {
		t.Fatalf("history event %+v", e)
	}
	f.checkWeight(50)
	cand.set(answerOK)
	f.clk.Advance(5 * time.Second) // the first retry's backoff
	f.step()
	if d = f.latest(); d.Canary.Step != 2 || d.Canary.Weight != 100 {
		t.Fatalf("once the candidate answers: %s %+v (%s)", d.Phase, d.Canary, d.Waiting)
	}
}

// TestPreflightRefusesGatewayItself: a standby replica that is one of the
// gateway's own listeners (a state written before deploys refused them)
// fails the preflight without being sent anything. The gateway passes a
// completion on to the live pool, so the preflight alone let the switch
// through, and every client request then looped.
func TestPreflightRefusesGatewayItself(t *testing.T) {
	self := newFakeReplica(t, answerOK) // answers like the gateway would
	other := newFakeReplica(t, answerOK)
	f := newPreflightFx(t, 0, []*fakeReplica{newFakeReplica(t, answerOK)}, []*fakeReplica{other, self})
	f.opts.Self = selfaddr.New(selfaddr.Listener{Role: "listen", Addr: strings.TrimPrefix(self.URL(), "http://")})
	f.restart()
	_, err := f.c.Promote(f.ctx, "op", api.PromoteRequest{})
	refused(t, err, "preflight_failed", self.URL()+": the gateway's own listen", "not a model server", "1 of 2 healthy replica(s) of green answered, 2 needed")
	if calls, _, _ := self.last(); calls != 0 {
		t.Fatalf("the gateway's own address got %d preflight completion(s)", calls)
	}
	if calls, _, _ := other.last(); calls != 1 {
		t.Fatalf("the other replica got %d preflight completion(s), want 1", calls)
	}
	if s := f.c.Status(); s.Live != "blue" {
		t.Fatalf("live %s after a refused preflight", s.Live)
	}
}

// TestDeployRefusesGatewayItself: a deploy naming the gateway's own
// listener is 400 bad_replica and changes nothing.
func TestDeployRefusesGatewayItself(t *testing.T) {
	f := newFx(t, func(o *Options) {
		o.Self = selfaddr.New(selfaddr.Listener{Role: "listen", Addr: strings.TrimPrefix(newReplica, "http://")})
	})
	rev := f.c.Status().Revision
	_, err := f.c.Deploy(f.ctx, "op", api.DeployRequest{Model: "m3", Replicas: []string{"http://127.0.0.1:4", newReplica + "/"}})
	refused(t, err, "bad_replica", "replicas[1]", "the gateway's own listen 127.0.0.1:3")
	if s := f.c.Status(); s.Revision != rev || s.Deployment != nil {
		t.Fatalf("a refused deploy changed the state: revision %d → %d, deployment %+v", rev, s.Revision, s.Deployment)
	}
}

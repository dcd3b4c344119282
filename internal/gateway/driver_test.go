package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/driver/lbtest"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// lbEnv is a gateway driving a real load balancer, and a client that
// sends traffic through that load balancer.
type lbEnv struct {
	*env
	lb     string // base URL of the load balancer
	client *lbClient
}

// nginxEnv starts blue and green replicas, nginx from the example
// configuration (plus server directives), and a gateway driving it. Its
// client retries connection failures before any response byte twice.
func nginxEnv(t *testing.T, mock mockllm.Config, server ...string) (*lbEnv, *lbtest.Nginx) {
	var n *lbtest.Nginx
	e := newEnv(t, envOptions{mock: mock, servedName: servedName, edit: func(c *config.Config) {
		n = lbtest.StartNginx(t, c.Pools["blue"].Replicas, server...)
		n.Configure(c)
	}})
	return &lbEnv{env: e, lb: "http://" + n.Addr, client: newLBClient(2)}, n
}

// haproxyEnv starts blue and green replicas, HAProxy from the example
// configuration, and a gateway driving it. Its client never retries.
func haproxyEnv(t *testing.T, mock mockllm.Config) (*lbEnv, *lbtest.HAProxy) {
	var h *lbtest.HAProxy
	e := newEnv(t, envOptions{mock: mock, servedName: servedName, edit: func(c *config.Config) {
		h = lbtest.StartHAProxy(t, c.Pools["blue"].Replicas, c.Pools["green"].Replicas)
		h.Configure(c)
	}})
	return &lbEnv{env: e, lb: "http://" + h.Addr, client: newLBClient(0)}, h
}

// lbClient sends chat completions through a load balancer. A request
// whose connection failed before any byte of a response arrived is sent
// again on a new connection, at most maxRetries times (the OpenAI SDKs
// retry twice by default); every such retry is counted and reported, never
// hidden. A failure after response bytes arrived (a cut stream) is never
// retried.
type lbClient struct {
	http       *http.Client
	fresh      *http.Client // without keep-alive, for retries
	maxRetries int
	retries    atomic.Int64
	mu         sync.Mutex
	errs       []string // the connection errors that were retried
	open       sync.Map // pool -> *atomic.Int64: streams whose headers arrived and body did not end
}

func newLBClient(maxRetries int) *lbClient {
	return &lbClient{maxRetries: maxRetries, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}},
		fresh: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
}

// servedName is the model id both pools serve in the load balancer tests:
// a load balancer cannot rewrite request bodies, so clients keep one name
// across versions only when the replicas serve one (vLLM's
// --served-model-name). Each pool still answers as its own version.
const servedName = "llama"

// chat sends one completion to base and reads the whole answer.
func (c *lbClient) chat(ctx context.Context, base, prompt string, stream bool, extra string) (result, error) {
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"stream":%t%s}`, servedName, prompt, stream, extra)
	for attempt := 0; ; attempt++ {
		hc := c.http
		if attempt > 0 {
			// Other idle connections to the same old nginx worker are
			// being closed too: retry on a new connection.
			hc = c.fresh
		}
		res, err := c.once(ctx, hc, base, body, stream)
		if err == nil || ctx.Err() != nil || attempt == c.maxRetries || !errors.Is(err, errBeforeResponse) {
			return res, err
		}
		c.retries.Add(1)
		c.mu.Lock()
		c.errs = append(c.errs, err.Error())
		c.mu.Unlock()
	}
}

var errBeforeResponse = errors.New("connection failed before any response byte")

func (c *lbClient) once(ctx context.Context, hc *http.Client, base, body string, stream bool) (result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("%w: %v", errBeforeResponse, err)
	}
	defer resp.Body.Close()
	if pool := resp.Header.Get("X-Cutover-Pool"); stream && resp.StatusCode == http.StatusOK {
		v, _ := c.open.LoadOrStore(pool, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		defer v.(*atomic.Int64).Add(-1)
	}
	return readResult(resp, stream)
}

// openStreams returns how many streams from pool are open now.
func (c *lbClient) openStreams(pool string) int64 {
	if v, ok := c.open.Load(pool); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (c *lbClient) retried() (int64, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retries.Load(), slices.Clone(c.errs)
}

// TestNginxCutoverUnderLoad promotes and rolls back through nginx, as the
// example configures it, while clients send short requests and streams
// (see cutoverUnderLoad). A reload makes nginx's old workers close their
// idle keep-alive connections: a request sent on one at that instant fails
// before any response byte. The client retries those, as the OpenAI SDKs
// do, and the test logs how many it retried.
func TestNginxCutoverUnderLoad(t *testing.T) {
	e, n := nginxEnv(t, loadMock)
	cutoverUnderLoad(t, e, 40)
	if strings.Contains(n.ErrorLog(), "[alert]") || strings.Contains(n.ErrorLog(), "[emerg]") {
		t.Errorf("nginx error log:\n%s", n.ErrorLog())
	}
}

// TestNginxCutoverWithoutClientKeepAlive is the same with nginx's
// keepalive_timeout 0 (no keep-alive towards clients) and a client that
// never retries: no request may fail at all.
func TestNginxCutoverWithoutClientKeepAlive(t *testing.T) {
	cutoverUnderLoad(t, nginxNoKeepAlive(t, loadMock), 40)
}

// nginxNoKeepAlive is nginxEnv with keepalive_timeout 0 and a client that
// never retries.
func nginxNoKeepAlive(t *testing.T, mock mockllm.Config) *lbEnv {
	e, _ := nginxEnv(t, mock, "keepalive_timeout 0;")
	e.client = newLBClient(0)
	return e
}

// TestHAProxyCutoverUnderLoad is the same through HAProxy, switched with
// the Runtime API.
func TestHAProxyCutoverUnderLoad(t *testing.T) {
	e, _ := haproxyEnv(t, loadMock)
	cutoverUnderLoad(t, e, 40)
}

const (
	loadStreamTokens = 20
	loadShortTokens  = 4
)

// loadMock makes streams last about a second.
var loadMock = mockllm.Config{ITL: 50 * time.Millisecond, Tokens: loadStreamTokens}

// cutoverUnderLoad promotes and rolls back while clients send short
// requests and streams through the load balancer (or the builtin gateway). Nothing may
// fail (connection failures before any response byte are retried and
// reported), every stream ends with [DONE] and the text of the pool that
// answered, a stream is open on the old pool at each switch, and every
// request that starts after a switch returned lands on the new pool.
func cutoverUnderLoad(t *testing.T, e *lbEnv, clients int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type record struct {
		start  time.Time
		end    time.Time // the answer read whole
		stream bool
		res    result
		err    error
	}
	var (
		mu       sync.Mutex
		records  []record
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	for i := range clients {
		wg.Go(func() {
			for n := 0; !stopping.Load() && n < 2000; n++ {
				stream := (i+n)%4 == 0
				prompt := fmt.Sprintf("client %d request %d", i, n)
				extra := fmt.Sprintf(`,"max_tokens":%d`, loadShortTokens)
				if stream {
					extra = `,"stream_options":{"include_usage":true}`
				}
				rec := record{start: time.Now(), stream: stream}
				rec.res, rec.err = e.client.chat(ctx, e.lb, prompt, stream, extra)
				rec.end = time.Now()
				if rec.err == nil && rec.res.status == 200 {
					want := mockllm.Answer(testModels[rec.res.pool], prompt, map[bool]int{true: loadStreamTokens, false: loadShortTokens}[stream])
					if rec.res.text != want {
						rec.err = fmt.Errorf("text from %s = %q, want %q", rec.res.pool, rec.res.text, want)
					}
				}
				mu.Lock()
				records = append(records, rec)
				mu.Unlock()
			}
		})
	}
	countAfter := func(t0 time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range records {
			if r.start.After(t0) {
				n++
			}
		}
		return n
	}
	open := e.client.openStreams
	// Several streams (each ~1 s) open at the switch, so that some outlive it.
	waitFor(t, "load on blue", 20*time.Second, func() bool { return countAfter(time.Time{}) >= clients && open("blue") >= 3 })

	promoted := time.Now()
	res, err := e.admin.Promote(ctx)
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	promoteReturned := time.Now()
	if res.Live != "green" {
		t.Fatalf("promote made %s live", res.Live)
	}
	t.Logf("%d streams still open on blue when the promote returned", open("blue"))
	waitFor(t, "load on green", 20*time.Second, func() bool { return countAfter(promoteReturned) >= clients && open("green") >= 3 })

	rolledBack := time.Now()
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	rollbackReturned := time.Now()
	t.Logf("%d streams still open on green when the rollback returned", open("green"))
	waitFor(t, "requests after rollback", 20*time.Second, func() bool { return countAfter(rollbackReturned) >= clients })
	stopping.Store(true)
	wg.Wait()

	var failed, streams int
	for _, r := range records {
		if r.err != nil || r.res.status != 200 {
			failed++
			if failed <= 5 {
				t.Errorf("request failed: status %d err %v body %s", r.res.status, r.err, r.res.body)
			}
			continue
		}
		if r.stream {
			streams++
			if !r.res.done || !r.res.usage {
				t.Errorf("stream incomplete: done=%v usage=%v", r.res.done, r.res.usage)
			}
		}
		// A request is judged by the switches it cannot have missed: one
		// sent after a switch returned and answered before the next began
		// (a client on a busy machine may send a request well after it
		// took its start time, so one started just before the rollback
		// may legitimately reach the gateway after it).
		switch {
		case r.start.After(promoteReturned) && r.end.Before(rolledBack) && r.res.pool != "green":
			t.Errorf("request started %s after promote returned (answered %s before the rollback) went to %s", r.start.Sub(promoteReturned), rolledBack.Sub(r.end), r.res.pool)
		case r.start.After(rollbackReturned) && r.res.pool != "blue":
			t.Errorf("request started %s after rollback returned went to %s", r.start.Sub(rollbackReturned), r.res.pool)
		case r.end.Before(promoted) && r.res.pool != "blue":
			t.Errorf("request answered before promote went to %s", r.res.pool)
		}
	}
	retries, errs := e.client.retried()
	t.Logf("%d requests (%d streams), %d failed; %d retried by the client after a connection failure before any response byte", len(records), streams, failed, retries)
	for i, msg := range errs {
		if i == 5 {
			t.Logf("  ... %d more", len(errs)-5)
			break
		}
		t.Logf("  retried: %s", msg)
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, len(records))
	}
	st, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Live != "blue" || st.Revision != 3 {
		t.Errorf("after promote+rollback: live %s revision %d, want blue 3", st.Live, st.Revision)
	}
}

// TestNginxRejectedSwitch breaks nginx's configuration (a bad directive in
// an included file) and promotes: nginx -t refuses, so blue stays live in
// nginx and in cutover's state, nginx keeps serving, and the refusal is in
// the promote's answer and the history. Fixing the configuration lets the
// next promote through.
func TestNginxRejectedSwitch(t *testing.T) {
	e, n := nginxEnv(t, mockllm.Config{Tokens: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	upstream := mustRead(t, n.UpstreamFile)
	extra := filepath.Join(n.Dir, "extra-broken.conf")
	if err := os.WriteFile(extra, []byte("bogus_directive on;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.admin.Promote(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadGateway || ae.Code != "apply_failed" || !strings.Contains(ae.Message, `unknown directive "bogus_directive"`) {
		t.Fatalf("promote with a broken nginx config: %v, want 502 apply_failed naming the directive", err)
	}
	t.Logf("promote refused: %s", ae.Message)
	st, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Live != "blue" {
		t.Errorf("status live = %s after a refused switch, want blue", st.Live)
	}
	if got := mustRead(t, n.UpstreamFile); got != upstream {
		t.Errorf("upstream file not restored:\n%s\nwant\n%s", got, upstream)
	}
	res, err := e.client.chat(ctx, e.lb, "still there?", false, "")
	if err != nil || res.status != 200 || res.pool != "blue" || !n.Running() {
		t.Errorf("nginx after the refused switch: %+v, %v, running %v; want 200 from blue", res, err, n.Running())
	}
	h, err := e.admin.History(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	last := h.Events[len(h.Events)-1]
	if last.Action != "apply_failed" || last.To != "blue" || !strings.Contains(last.Reason, "bogus_directive") {
		t.Errorf("last history event = %+v, want apply_failed back to blue naming the directive", last)
	}

	if err := os.Remove(extra); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatalf("promote after fixing nginx: %v", err)
	}
	res, err = e.client.chat(ctx, e.lb, "now green", false, "")
	if err != nil || res.pool != "green" {
		t.Errorf("after the promote: %+v, %v; want green", res, err)
	}
}

// TestNginxMarksUnhealthyReplicasDown kills a blue replica: after a health
// tick the upstream file marks it down (nginx reloaded), and nginx sends
// nothing to it; back up, it is a server again.
func TestNginxMarksUnhealthyReplicasDown(t *testing.T) {
	e, n := nginxEnv(t, mockllm.Config{Tokens: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := e.pools["blue"][1]
	dead.kill()
	for range 2 { // health.fall
		e.gw.Checker().Tick(ctx)
	}
	if err := e.gw.SyncDriver(ctx); err != nil {
		t.Fatal(err)
	}
	down := fmt.Sprintf("server %s down;", dead.addr)
	if f := mustRead(t, n.UpstreamFile); !strings.Contains(f, down) {
		t.Fatalf("upstream file does not mark %s down:\n%s", dead.addr, f)
	}
	for i := range 20 {
		res, err := e.client.chat(ctx, e.lb, fmt.Sprint("q", i), false, "")
		if err != nil || res.status != 200 {
			t.Fatalf("request %d with a dead replica marked down: %+v %v", i, res, err)
		}
	}
	// (The verification after the reload may still reach it through an
	// old worker: only client requests count.)
	for _, l := range strings.Split(n.ErrorLog(), "\n") {
		if strings.Contains(l, dead.addr) && strings.Contains(l, "POST") {
			t.Errorf("nginx sent a request to the replica marked down: %s", l)
		}
	}
	dead.restart()
	for range 2 { // health.rise
		e.gw.Checker().Tick(ctx)
	}
	if err := e.gw.SyncDriver(ctx); err != nil {
		t.Fatal(err)
	}
	if f := mustRead(t, n.UpstreamFile); strings.Contains(f, " down;") || !strings.Contains(f, "server "+dead.addr+";") {
		t.Errorf("replica back up but the upstream file says:\n%s", f)
	}
}

// TestHAProxySocketUnreachable promotes while HAProxy's admin socket
// cannot be reached: the promote fails with the reason, blue stays live in
// cutover's state and in HAProxy, and HAProxy keeps serving. With the
// socket back, the next promote works.
func TestHAProxySocketUnreachable(t *testing.T) {
	e, h := haproxyEnv(t, mockllm.Config{Tokens: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mapBefore := mustRead(t, h.MapFile)
	restore := h.HideSocket(t)
	_, err := e.admin.Promote(ctx)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadGateway || !strings.Contains(ae.Message, "admin socket") {
		t.Fatalf("promote with the socket unreachable: %v, want 502 naming the admin socket", err)
	}
	t.Logf("promote refused: %s", ae.Message)
	st, err := e.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Live != "blue" {
		t.Errorf("status live = %s, want blue", st.Live)
	}
	if got := mustRead(t, h.MapFile); got != mapBefore {
		t.Errorf("map file changed by a failed switch:\n%s", got)
	}
	res, err := e.client.chat(ctx, e.lb, "still blue?", false, "")
	if err != nil || res.status != 200 || res.pool != "blue" {
		t.Errorf("HAProxy after the failed switch: %+v %v, want 200 from blue", res, err)
	}
	hist, err := e.admin.History(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if last := hist.Events[len(hist.Events)-1]; last.Action != "apply_failed" || last.To != "blue" {
		t.Errorf("last history event = %+v, want apply_failed back to blue", last)
	}

	restore()
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatalf("promote with the socket back: %v", err)
	}
	if res, err := e.client.chat(ctx, e.lb, "green now", false, ""); err != nil || res.pool != "green" {
		t.Errorf("after the promote: %+v %v, want green", res, err)
	}
	if m := mustRead(t, h.MapFile); !strings.Contains(m, "live green\n") {
		t.Errorf("map file after the promote:\n%s", m)
	}
}

// TestHAProxyMaintainsUnhealthyReplicas kills a green replica: after a
// health tick its server is in maintenance, so a promote sends nothing to
// it; back up, it is ready again.
func TestHAProxyMaintainsUnhealthyReplicas(t *testing.T) {
	e, h := haproxyEnv(t, mockllm.Config{Tokens: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := e.pools["green"][0]
	dead.kill()
	for range 2 {
		e.gw.Checker().Tick(ctx)
	}
	if err := e.gw.SyncDriver(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		res, err := e.client.chat(ctx, e.lb, fmt.Sprint("q", i), false, "")
		if err != nil || res.status != 200 || res.pool != "green" {
			t.Fatalf("request %d with a dead green replica in maint: %+v %v", i, res, err)
		}
	}
	if st := h.Command(t, "show servers state green"); !maintained(st, dead.addr) {
		t.Errorf("dead replica %s not in maint:\n%s", dead.addr, st)
	}
	back := dead.restart()
	for range 2 {
		e.gw.Checker().Tick(ctx)
	}
	if err := e.gw.SyncDriver(ctx); err != nil {
		t.Fatal(err)
	}
	if st := h.Command(t, "show servers state green"); maintained(st, dead.addr) {
		t.Errorf("replica %s back up but still in maint:\n%s", dead.addr, st)
	}
	waitFor(t, "the replica back up answering through HAProxy", 10*time.Second, func() bool {
		_, _ = e.client.chat(ctx, e.lb, "who", false, "")
		return back.mock.Stats().Requests > 0
	})
}

// maintained reports whether the server at addr is in forced maintenance
// in an answer to show servers state (srv_admin_state bit 0x01).
func maintained(state, addr string) bool {
	host, port, _ := strings.Cut(addr, ":")
	for _, l := range strings.Split(state, "\n") {
		f := strings.Fields(l)
		// be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_port (19th)
		if len(f) > 18 && f[4] == host && f[18] == port {
			var admin int
			_, _ = fmt.Sscan(f[6], &admin)
			return admin&1 != 0
		}
	}
	return false
}

// TestSwitchPropagation measures, in one run, how soon every new request
// reaches the new pool after a switch through the builtin gateway, nginx
// (reload) and HAProxy (Runtime API): 8 clients send small completions
// back to back while the live pool is switched several times, and for each
// switch the last request that started and still reached the old pool is
// found. It logs medians (run with -v; docs/drivers.md quotes them) and
// asserts only that nothing failed: timings are not pass/fail on a shared
// machine.
func TestSwitchPropagation(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement; skipped with -short")
	}
	const switches = 6
	mock := mockllm.Config{Tokens: 2}
	type target struct {
		name string
		up   func(t *testing.T) *lbEnv
	}
	targets := []target{
		{"builtin", func(t *testing.T) *lbEnv {
			e := newEnv(t, envOptions{mock: mock, servedName: servedName})
			return &lbEnv{env: e, lb: e.traffic, client: newLBClient(0)}
		}},
		{"nginx", func(t *testing.T) *lbEnv { e, _ := nginxEnv(t, mock); return e }},
		{"nginx-keepalive_timeout-0", func(t *testing.T) *lbEnv { return nginxNoKeepAlive(t, mock) }},
		{"haproxy", func(t *testing.T) *lbEnv { e, _ := haproxyEnv(t, mock); return e }},
	}
	var report []string
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			m := measureSwitches(t, tg.up(t), switches)
			line := fmt.Sprintf("%-26s call %6.1f ms | all new requests on the new pool: %6.1f ms after the call started, %6.1f ms after it returned | %d requests, %d failed, %d retried",
				tg.name, ms(m.call), ms(m.fromStart), ms(m.fromReturn), m.requests, m.failed, m.retries)
			t.Log(line)
			report = append(report, line)
		})
	}
	t.Logf("medians of %d switches each:\n%s", switches, strings.Join(report, "\n"))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// switchTimes are medians over several switches.
type switchTimes struct {
	call, fromStart, fromReturn time.Duration
	requests, failed            int
	retries                     int64
}

// measureSwitches switches the live pool n times (promote, rollback, ...)
// under load and returns the medians; see TestSwitchPropagation.
func measureSwitches(t *testing.T, e *lbEnv, n int) switchTimes {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type rec struct {
		start time.Time
		pool  string
		err   error
	}
	var (
		mu       sync.Mutex
		recs     []rec
		done     atomic.Int64
		stopping atomic.Bool
		wg       sync.WaitGroup
	)
	for c := range 8 {
		wg.Go(func() {
			for i := 0; !stopping.Load() && i < 20000; i++ {
				start := time.Now()
				res, err := e.client.chat(ctx, e.lb, fmt.Sprintf("c%d r%d", c, i), false, `,"max_tokens":1`)
				if err == nil && res.status != 200 {
					err = fmt.Errorf("status %d: %s", res.status, res.body)
				}
				mu.Lock()
				recs = append(recs, rec{start, res.pool, err})
				mu.Unlock()
				done.Add(1)
			}
		})
	}
	type sw struct {
		t0, t1   time.Time
		old, new string
	}
	var sws []sw
	for i := range n {
		base := done.Load()
		waitFor(t, "requests between switches", 20*time.Second, func() bool { return done.Load() >= base+100 })
		old := e.gw.Controller().Status().Live
		t0 := time.Now()
		var (
			res *api.SwitchResult
			err error
		)
		if i%2 == 0 {
			res, err = e.admin.Promote(ctx)
		} else {
			res, err = e.admin.Rollback(ctx)
		}
		t1 := time.Now()
		if err != nil {
			stopping.Store(true)
			wg.Wait()
			t.Fatalf("switch %d: %v", i, err)
		}
		sws = append(sws, sw{t0, t1, old, res.Live})
	}
	base := done.Load()
	waitFor(t, "requests after the last switch", 20*time.Second, func() bool { return done.Load() >= base+100 })
	stopping.Store(true)
	wg.Wait()

	var out switchTimes
	var calls, fromStart, fromReturn []time.Duration
	for i, s := range sws {
		end := time.Now()
		if i+1 < len(sws) {
			end = sws[i+1].t0
		}
		lastOld := s.t0 // no old-pool request started after t0: propagation 0
		for _, r := range recs {
			if r.err == nil && r.pool == s.old && r.start.After(lastOld) && r.start.Before(end) {
				lastOld = r.start
			}
		}
		calls = append(calls, s.t1.Sub(s.t0))
		fromStart = append(fromStart, lastOld.Sub(s.t0))
		fromReturn = append(fromReturn, lastOld.Sub(s.t1))
	}
	for _, r := range recs {
		if r.err != nil {
			out.failed++
			if out.failed <= 3 {
				t.Errorf("request failed: %v", r.err)
			}
		}
	}
	out.requests = len(recs)
	out.retries, _ = e.client.retried()
	out.call, out.fromStart, out.fromReturn = median(calls), median(fromStart), median(fromReturn)
	return out
}

func median(d []time.Duration) time.Duration { return percentile(d, .5) }

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole harness with tiny sizes (a few seconds) so that
// it cannot rot: every scenario must run against every target and the
// report must hold them all. Timing goals are never asserted.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke run of the benchmark harness: skipped with -short")
	}
	for _, tool := range []string{"nginx", "haproxy", "wrk"} {
		if _, err := lookTool(tool); err != nil {
			if os.Getenv("CI") == "" {
				t.Skipf("smoke run of the benchmark harness skipped: %v (scripts/deps.sh installs it; with CI set this fails)", err)
			}
			t.Fatalf("CI: %v", err)
		}
	}
	o := smokeOptions()
	o.out = t.TempDir()
	o.command = "go test ./bench -run TestSmoke"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, _, err := run(ctx, o, t.Logf)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	md, err := os.ReadFile(o.out + "/results.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Goals", "## 1. ", "## 2. ", "## 3. ", "## 4. ", "## 5. ", "## 6. ", rep.Machine.Model, "reproduce: `go test"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	for i, sec := range strings.Split(string(md), "\n## ")[2:] {
		targets := targetOrder
		switch {
		case strings.HasPrefix(sec, "1. "):
			targets = satOrder
		case strings.HasPrefix(sec, "4. "):
			targets = targetOrder[1:]
		case strings.HasPrefix(sec, "5. "):
			targets = []string{shadowOff, shadowCopies, shadowOn}
		case strings.HasPrefix(sec, "6. "):
			targets = balanceOrder
		}
		for _, tg := range targets {
			if !strings.Contains(sec, "| "+tg+" |") {
				t.Errorf("section %d (%.30q) has no row for %s", i+1, sec, tg)
			}
		}
	}

	b, err := os.ReadFile(o.out + "/results.json")
	if err != nil {
		t.Fatal(err)
	}
	var got report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if got.Saturation == nil || got.Streams == nil || got.Idle == nil || got.Switch == nil || got.Shadow == nil || got.Balance == nil {
		t.Fatalf("results.json lacks a scenario: %s", b)
	}
	seen := map[string]bool{}
	for _, s := range got.Saturation.Samples {
		seen["saturation/"+s.Target] = s.Requests > 0 && s.RPS.valid() && s.Errors == 0
	}
	for _, s := range got.Streams.Samples {
		seen["streams/"+s.Target] = s.Chunks > 0 && s.Failed == 0
	}
	for _, s := range got.Idle.Samples {
		seen["idle/"+s.Target] = s.Established > 0
	}
	for _, s := range got.Switch.Samples {
		seen["switch/"+s.Target] = s.Requests > 0 && len(s.PropagationMs) == o.switches
	}
	for _, s := range got.Shadow.Samples {
		seen["shadow/"+s.Target] = s.Requests > 0
	}
	for _, s := range got.Balance.Samples {
		seen["balance/"+s.Target] = s.Completed > 0 && s.Failed == 0 && s.HitRate.valid()
	}
	want := []string{"shadow/" + shadowOff, "shadow/" + shadowCopies, "shadow/" + shadowOn, "saturation/" + targetCutoverRewrite}
	for _, tg := range balanceOrder {
		want = append(want, "balance/"+tg)
	}
	for _, tg := range targetOrder {
		want = append(want, "saturation/"+tg, "streams/"+tg, "idle/"+tg)
		if tg != targetDirect {
			want = append(want, "switch/"+tg)
		}
	}
	for _, k := range want {
		if !seen[k] {
			t.Errorf("no usable sample for %s", k)
		}
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		ppid      int
		ticks     uint64
		wantError bool
	}{
		{"plain", "42 (nginx) S 7 42 42 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 1 0 100 1000 200", 7, 175, false},
		{"name with spaces and parens", "9 (a (b) c) R 1 9 9 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1", 1, 7, false},
		{"truncated", "9 (x) R 1 2", 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := parseStat([]byte(tc.in))
			if (err != nil) != tc.wantError {
				t.Fatalf("err = %v, want error %v", err, tc.wantError)
			}
			if err == nil && (st.ppid != tc.ppid || st.ticks != tc.ticks) {
				t.Errorf("got ppid %d ticks %d, want %d %d", st.ppid, st.ticks, tc.ppid, tc.ticks)
			}
		})
	}
}

func TestRespParser(t *testing.T) {
	ev := func(id string) string { return `data: {"id":"` + id + `","x":1}` + "\n\n" }
	chunk := func(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
	chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n" +
		chunk(ev("a")) + chunk(ev("b")+ev("c")) + chunk("data: [DONE]\n\n") + "0\r\n\r\n"
	identity := "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(ev("z"))) + "\r\n\r\n" + ev("z")
	for _, tc := range []struct {
		name   string
		in     string
		pieces []int // split points
		ids    []string
		end    bool
	}{
		{"chunked in one read", chunked, nil, []string{"a", "b", "c", "[DONE]"}, true},
		{"chunked byte by byte", chunked, seq(len(chunked)), []string{"a", "b", "c", "[DONE]"}, true},
		{"chunked split in the head and a size line", chunked, []int{10, 80, 81, 83}, []string{"a", "b", "c", "[DONE]"}, true},
		{"content-length", identity, []int{40}, []string{"z"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p respParser
			var ids []string
			on := func(e []byte) {
				if strings.HasPrefix(string(e), "data: [DONE]") {
					ids = append(ids, "[DONE]")
					return
				}
				ids = append(ids, completionID(e))
			}
			prev, end := 0, false
			for _, cut := range append(tc.pieces, len(tc.in)) {
				if cut <= prev {
					continue
				}
				var err error
				if end, err = p.feed([]byte(tc.in[prev:cut]), on); err != nil {
					t.Fatal(err)
				}
				prev = cut
			}
			if strings.Join(ids, ",") != strings.Join(tc.ids, ",") || end != tc.end || p.status != 200 {
				t.Errorf("events %v end %v status %d, want %v end %v status 200", ids, end, p.status, tc.ids, tc.end)
			}
		})
	}
	var p respParser
	if _, err := p.feed([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"), func([]byte) {}); err == nil || p.status != 503 {
		t.Errorf("503: err %v status %d, want an error and 503", err, p.status)
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestTCPSegmentAndEventStarts(t *testing.T) {
	payload := "3a\r\n" + `data: {"id":"chatcmpl-1","o":1}` + "\n\n\r\n" + `data: {"id":"chatcmpl-2"}` + "\n\n"
	pkt := make([]byte, 20+32+len(payload))
	pkt[0], pkt[9] = 0x45, 6                           // IPv4, 20-byte header, TCP
	pkt[2], pkt[3] = byte(len(pkt)>>8), byte(len(pkt)) // total length
	pkt[22], pkt[23] = 0x9c, 0x40                      // destination port 40000
	pkt[27] = 7                                        // sequence number 7
	pkt[20+12] = 8 << 4                                // TCP header of 32 bytes
	copy(pkt[52:], payload)
	seg, ok := tcpSegment(pkt)
	if !ok || seg.dstPort != 40000 || seg.seq != 7 || string(seg.payload) != payload {
		t.Fatalf("tcpSegment = %+v, %v", seg, ok)
	}
	got := eventStarts(seg.payload)
	if len(got) != 2 || got[0] != (sseStart{4, "chatcmpl-1"}) || got[1].id != "chatcmpl-2" || payload[got[1].off:got[1].off+6] != "data: " {
		t.Errorf("eventStarts = %+v", got)
	}
	if _, ok := tcpSegment(pkt[:10]); ok {
		t.Error("tcpSegment accepted a short packet")
	}
	pkt[0] = 0x65
	if _, ok := tcpSegment(pkt); ok {
		t.Error("tcpSegment accepted a non-IPv4 packet")
	}
}

func TestParseWrk(t *testing.T) {
	out := "Running 1s test\n  1 threads and 8 connections\n" +
		`BENCHJSON {"requests":100,"duration_us":1000000,"connect":0,"read":1,"write":0,"status":2,"timeout":0,"p50_us":300,"p99_us":900}` + "\n"
	s, err := parseWrk(out)
	if err != nil || s.Requests != 100 || s.Read+s.Status != 3 || s.P99US != 900 {
		t.Errorf("parseWrk = %+v, %v", s, err)
	}
	if _, err := parseWrk("no summary"); err == nil {
		t.Error("parseWrk accepted output without a summary")
	}
}

// TestSaturationCountsSuccesses: error answers are not throughput (a proxy
// answering fast 503s must not come out ahead of nginx), nor the divisor of
// the CPU per request.
func TestSaturationCountsSuccesses(t *testing.T) {
	for _, tc := range []struct {
		w        wrkSummary
		rps, cpu num
	}{
		{wrkSummary{Requests: 1000, DurationUS: 1e6}, 1000, 2},
		{wrkSummary{Requests: 1000, DurationUS: 1e6, Status: 500, Timeout: 100}, 400, 5},
		{wrkSummary{Requests: 1000, DurationUS: 1e6, Status: 1000}, nan, nan},
	} {
		s := satSample{RPS: nan, CPUPer1k: nan, CPUSeconds: 2}
		s.fill(tc.w, true)
		if !sameNum(s.RPS, tc.rps) || !sameNum(s.CPUPer1k, tc.cpu) || s.Errors != tc.w.Status+tc.w.Timeout {
			t.Errorf("%+v: rps %v cpu/1k %v errors %d; want %v, %v", tc.w, s.RPS, s.CPUPer1k, s.Errors, tc.rps, tc.cpu)
		}
	}
}

func sameNum(a, b num) bool { return a == b || (!a.valid() && !b.valid()) }

// TestScenariosAreTrimmed: a scenario list written with spaces runs every
// scenario it names (a regression: it validated, then matched nothing).
func TestScenariosAreTrimmed(t *testing.T) {
	o, err := parseFlags([]string{"-scenarios", "switch, shadow"})
	if err != nil || o.scenarios != "switch,shadow" {
		t.Fatalf("parseFlags: scenarios %q, %v; want \"switch,shadow\"", o.scenarios, err)
	}
}

func TestPlateauGap(t *testing.T) {
	evs := func(at ...int64) streamResult {
		r := streamResult{status: 200}
		for _, a := range at {
			r.events = append(r.events, sseEvent{readAt: a})
		}
		return r
	}
	ended := evs(0, 10)
	ended.done = true
	for _, tc := range []struct {
		name string
		r    streamResult
		gap  time.Duration
		why  string
	}{
		{"steady", evs(0, 10, 20, 30, 40), 10, ""},
		{"stalls at the end", evs(0, 10, 20), 20, ""},
		{"gap across the window start", evs(0, 25, 30, 40), 25, ""},
		{"no event before the window", evs(15, 25), 0, "no event before the plateau"},
		{"ended", ended, 0, "stream ended early"},
		{"refused", streamResult{err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}, 0, "no answer: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gap, why := plateauGap(tc.r, 10, 40)
			if gap != tc.gap || why != tc.why {
				t.Errorf("got %v %q, want %v %q", gap, why, tc.gap, tc.why)
			}
		})
	}
}

func TestStatsAndNum(t *testing.T) {
	if p := percentile([]float64{5, 1, 4, 2, 3}, 50); p != 3 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99); p != 10 {
		t.Errorf("p99 = %v", p)
	}
	if m := median([]float64{4, math.NaN(), 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	b, err := json.Marshal([]num{1.5, nan})
	if err != nil || string(b) != "[1.5,null]" {
		t.Errorf("marshal = %s, %v", b, err)
	}
	var back []num
	if err := json.Unmarshal(b, &back); err != nil || back[0] != 1.5 || back[1].valid() {
		t.Errorf("unmarshal = %v, %v", back, err)
	}
	metrics := "# HELP x\nvllm:request_success_total{finished_reason=\"stop\"} 3\nvllm:request_success_total{finished_reason=\"length\"} 4\nvllm:request_success_totalx 9\n"
	if n := sumMetric([]byte(metrics), "vllm:request_success_total"); n != 7 {
		t.Errorf("sumMetric = %d", n)
	}
}

// TestUpstreamRendering checks that nginx's and HAProxy's configs hold
// every backend, balanced by least connections when there are several.
func TestUpstreamRendering(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   pools
		want []string
		not  []string
	}{
		{"one backend", pools{blue: "127.0.0.1:1"}, []string{"server 127.0.0.1:1;", "server blue1 127.0.0.1:1"}, []string{"least_conn", "leastconn", "zone"}},
		{"four backends", pools{blue: "127.0.0.1:1", blueMore: []string{"127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}},
			[]string{"zone backend 1m;", "least_conn;", "server 127.0.0.1:4;", "balance leastconn", "server blue1 127.0.0.1:1", "server blue4 127.0.0.1:4",
				"replicas: [http://127.0.0.1:1, http://127.0.0.1:2, http://127.0.0.1:3, http://127.0.0.1:4]"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := writeNginxUpstream(dir, tc.up.blues()...); err != nil {
				t.Fatal(err)
			}
			if err := render(haproxyConf, dir+"/haproxy.cfg", map[string]any{"Workers": 1, "MaxConn": 10, "Dir": dir,
				"Listen": "127.0.0.1:9", "Blues": tc.up.blues(), "Green": ""}); err != nil {
				t.Fatal(err)
			}
			if err := render(cutoverConf, dir+"/cutover.yaml", map[string]any{"Listen": "127.0.0.1:9", "Admin": "127.0.0.1:8",
				"Dir": dir, "Model": benchModel, "Blues": tc.up.blues(), "Green": "", "Extra": ""}); err != nil {
				t.Fatal(err)
			}
			var all string
			for _, f := range []string{"upstream.conf", "haproxy.cfg", "cutover.yaml"} {
				b, err := os.ReadFile(dir + "/" + f)
				if err != nil {
					t.Fatal(err)
				}
				all += string(b)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("configs lack %q:\n%s", w, all)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(all, w) {
					t.Errorf("configs hold %q:\n%s", w, all)
				}
			}
		})
	}
}

// TestEngineCounters reads the prefix-cache counters and the queue and
// running times, with and without labels, summed over replicas.
func TestEngineCounters(t *testing.T) {
	metrics := "# HELP vllm:prefix_cache_hits_total x\n# TYPE vllm:prefix_cache_hits_total counter\n" +
		"vllm:prefix_cache_hits_total{model_name=\"a b\"} 30\nvllm:prefix_cache_queries_total 100\nvllm:prompt_tokens_total 7\n" +
		"vllm:request_inference_time_seconds_sum{model_name=\"a\"} 2.5\nvllm:request_inference_time_seconds_count{model_name=\"a\"} 9\n" +
		"vllm:request_queue_time_seconds_sum{model_name=\"a\"} 0.25\nvllm:request_queue_time_seconds_count{model_name=\"a\"} 8\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, metrics) }))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ec, err := readEngineCounters(context.Background(), []string{addr, addr})
	if err != nil {
		t.Fatal(err)
	}
	if want := (engineCounters{hits: 60, queries: 200, runSeconds: 5, queueSeconds: 0.5, queueCount: 16}); ec != want {
		t.Errorf("got %+v, want %+v", ec, want)
	}
}

// TestEngineCountersWaitForASlowReplica: a replica whose /metrics answers
// late (a loaded machine) is waited for, not failed after a fixed 5 s (a
// regression: TestSmoke failed at load 10–13); one whose connection
// breaks, or a run that ends, fails the read at once.
func TestEngineCountersWaitForASlowReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 6 s for a slow replica: skipped with -short")
	}
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "vllm:prefix_cache_queries_total 10\n")
	}))
	defer slow.Close()
	// The stimulus, not a synchronisation: the answer comes after the
	// 5 s the read once allowed.
	timer := time.AfterFunc(6*time.Second, func() { close(release) })
	defer timer.Stop()
	ec, err := readEngineCounters(context.Background(), []string{strings.TrimPrefix(slow.URL, "http://")})
	if err != nil || ec.queries != 10 {
		t.Fatalf("slow replica: %+v, %v; want its counters", ec, err)
	}

	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = c.Close() // the process died mid-request
		}
	}))
	defer dead.Close()
	if _, err := readEngineCounters(context.Background(), []string{strings.TrimPrefix(dead.URL, "http://")}); err == nil {
		t.Fatal("a replica that broke its connection: no error")
	}

	ctx, cancel := context.WithCancel(context.Background())
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel() // the run ends while the replica holds the request
		<-r.Context().Done()
	}))
	defer stuck.Close()
	if _, err := readEngineCounters(ctx, []string{strings.TrimPrefix(stuck.URL, "http://")}); err == nil {
		t.Fatal("a run that ended: no error")
	}
}

// TestRoundOrder: direct runs first in every measured round and the
// proxies rotate, so that each runs first, and last, once every
// len(proxies) rounds; a warm-up keeps the order targets were started in.
func TestRoundOrder(t *testing.T) {
	var ts []*target
	for _, n := range []string{targetDirect, "nginx", "haproxy", "cutover"} {
		ts = append(ts, &target{name: n})
	}
	names := func(ts []*target) string {
		var s []string
		for _, t := range ts {
			s = append(s, t.name)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		round int
		want  string
	}{
		{-1, "direct,nginx,haproxy,cutover"},
		{0, "direct,nginx,haproxy,cutover"},
		{1, "direct,haproxy,cutover,nginx"},
		{2, "direct,cutover,nginx,haproxy"},
		{3, "direct,nginx,haproxy,cutover"},
	} {
		if got := names(roundOrder(ts, tc.round)); got != tc.want {
			t.Errorf("round %d: %s, want %s", tc.round, got, tc.want)
		}
	}
	if got := names(roundOrder(ts[1:], 1)); got != "haproxy,cutover,nginx" {
		t.Errorf("without direct: %s", got)
	}
}

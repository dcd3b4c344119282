package main

// The report: the machine, the versions, every sample (JSON) and the
// Markdown tables that docs/benchmarks.md quotes.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// report is one run of the harness.
type report struct {
	Date     string   `json:"date"` // start, UTC, RFC 3339
	Command  string   `json:"command"`
	Smoke    bool     `json:"smoke"`
	Machine  machine  `json:"machine"`
	Versions versions `json:"versions"`
	Workers  int      `json:"workers"` // per proxy: nginx workers, HAProxy threads, GOMAXPROCS
	Rounds   int      `json:"rounds"`
	// StreamsRounds: the streams scenario's rounds (Rounds: the others').
	StreamsRounds int     `json:"streams_rounds"`
	Seconds       float64 `json:"seconds"` // wall time of the run

	Saturation *satResult     `json:"saturation,omitempty"`
	Streams    *streamsResult `json:"streams,omitempty"`
	Idle       *idleResult    `json:"idle,omitempty"`
	Switch     *switchResult  `json:"switch,omitempty"`
	Shadow     *shadowResult  `json:"shadow,omitempty"`
	Balance    *balanceResult `json:"balance,omitempty"`
	Errors     []string       `json:"errors,omitempty"`
}

// machine describes where the run happened.
type machine struct {
	CPUs   int     `json:"cpus"`
	Model  string  `json:"cpu_model"`
	Kernel string  `json:"kernel"`
	MemGiB float64 `json:"mem_gib"`
}

// versions of everything measured.
type versions struct {
	Go      string `json:"go"`
	Cutover string `json:"cutover"`
	Nginx   string `json:"nginx"`
	HAProxy string `json:"haproxy"`
	Wrk     string `json:"wrk"`
}

// readMachine reads the CPU count and model, the kernel and the memory.
func readMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Model: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(string(b)) // MemTotal: N kB ...
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			m.MemGiB = math.Round(kb/1024/1024*10) / 10
		}
	}
	return m
}

// readVersions asks each tool for its version.
func readVersions(ctx context.Context, e *env, root string) versions {
	first := func(argv ...string) string {
		out, _ := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(l)
	}
	v := versions{Go: runtime.Version(), Nginx: first(e.nginx, "-v"), HAProxy: first(e.haproxy, "-v"), Wrk: first(e.wrk, "-v")}
	v.Nginx = strings.TrimPrefix(v.Nginx, "nginx version: ")
	v.HAProxy, _, _ = strings.Cut(strings.TrimPrefix(v.HAProxy, "HAProxy version "), " - ")
	v.Wrk, _, _ = strings.Cut(strings.TrimPrefix(v.Wrk, "wrk "), " Copyright")
	v.Cutover = "git " + first("git", "-C", root, "describe", "--always", "--dirty")
	if e.cutover != filepath.Join(root, "bench", "out", "bin", "cutover") {
		v.Cutover = "binary " + e.cutover + " (the working tree is at " + v.Cutover + ")"
	}
	return v
}

// write stores the report as results.json and results.md in runDir and
// copies both to out (the latest run).
func (r *report) write(out, runDir string) ([]string, error) {
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	md := []byte(r.markdown())
	var paths []string
	for _, dir := range []string{runDir, out} {
		for name, b := range map[string][]byte{"results.json": append(j, '\n'), "results.md": md} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return paths, fmt.Errorf("write report: %w", err)
			}
			paths = append(paths, p)
		}
	}
	return paths, nil
}

// mdTable is a Markdown table under construction.
type mdTable struct {
	head []string
	rows [][]string
}

func (t *mdTable) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *mdTable) String() string {
	var b strings.Builder
	line := func(cells []string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	line(t.head)
	sep := make([]string, len(t.head))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
	return b.String()
}

// f formats a measurement with the given decimals, "—" when missing.
func f(v num, decimals int) string {
	if !v.valid() {
		return "—"
	}
	return strconv.FormatFloat(float64(v), 'f', decimals, 64)
}

// fx formats a ratio as "0.87×".
func fx(v num) string {
	if !v.valid() {
		return "—"
	}
	return strconv.FormatFloat(float64(v), 'f', 2, 64) + "×"
}

// signed formats a difference with its sign.
func signed(v num, decimals int) string {
	if !v.valid() {
		return "—"
	}
	s := strconv.FormatFloat(float64(v), 'f', decimals, 64)
	if v >= 0 {
		s = "+" + s
	}
	return s
}

// targetOrder is the order of the rows.
var targetOrder = []string{targetDirect, targetNginx, targetHAProxy, targetCutover}

// satOrder is the order of the saturation scenario's rows: targetOrder and
// cutover with model_name rewriting.
var satOrder = append(append([]string(nil), targetOrder...), targetCutoverRewrite)

// perTarget collects one metric per target over rounds, and the per-round
// ratio of each target to nginx.
type perTarget struct {
	vals   map[string][]float64
	ratios map[string][]float64
}

// collect builds a perTarget from samples (target, round, value).
func collect[S any](samples []S, key func(S) (string, int, num)) perTarget {
	p := perTarget{vals: map[string][]float64{}, ratios: map[string][]float64{}}
	nginx := map[int]num{}
	for _, s := range samples {
		t, r, v := key(s)
		p.vals[t] = append(p.vals[t], float64(v))
		if t == targetNginx {
			nginx[r] = v
		}
	}
	for _, s := range samples {
		t, r, v := key(s)
		if n, ok := nginx[r]; ok {
			p.ratios[t] = append(p.ratios[t], ratio(float64(v), float64(n)))
		}
	}
	return p
}

func (p perTarget) med(t string) num      { return num(median(p.vals[t])) }
func (p perTarget) medRatio(t string) num { return num(median(p.ratios[t])) }

// ratioTo returns the ratio of a to nginx's value in the same round.
func ratioTo[S any](samples []S, s S, key func(S) (string, int, num)) num {
	_, r, v := key(s)
	for _, o := range samples {
		if t, or, ov := key(o); t == targetNginx && or == r {
			return num(ratio(float64(v), float64(ov)))
		}
	}
	return nan
}

// markdown renders the report.
func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# cutover benchmark: nginx, HAProxy and cutover on the same load\n\n")
	if r.Smoke {
		w("**Smoke run: tiny sizes, the figures mean nothing.**\n\n")
	}
	w("- date: %s (run took %.0f s)\n", r.Date, r.Seconds)
	w("- machine: %d CPUs, %s, Linux %s, %.1f GiB; shared and noisy: read the ratios, not the absolutes\n",
		r.Machine.CPUs, r.Machine.Model, r.Machine.Kernel, r.Machine.MemGiB)
	w("- versions: %s, cutover %s, %s, HAProxy %s, wrk %s\n", r.Versions.Go, r.Versions.Cutover, r.Versions.Nginx, r.Versions.HAProxy, r.Versions.Wrk)
	w("- fair share: every proxy gets %d workers (nginx worker_processes, HAProxy nbthread, cutover GOMAXPROCS); load tool, backends and proxy share the machine\n", r.Workers)
	w("- %d interleaved rounds (%d for the streams scenario): direct first, then the proxies; the saturation rounds rotate the proxies' order by one each round so that none always runs first or last; medians over rounds; ratios are to nginx in the same round, then the median\n", r.Rounds, r.StreamsRounds)
	w("- reproduce: `%s`\n\n", r.Command)
	if len(r.Errors) > 0 {
		w("**Errors:**\n\n")
		for _, e := range r.Errors {
			w("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
		w("\n")
	}
	r.goals(&b)
	if s := r.Saturation; s != nil {
		r.saturationMD(&b, s)
	}
	if s := r.Streams; s != nil {
		r.streamsMD(&b, s)
	}
	if s := r.Idle; s != nil {
		r.idleMD(&b, s)
	}
	if s := r.Switch; s != nil {
		r.switchMD(&b, s)
	}
	if s := r.Shadow; s != nil {
		r.shadowMD(&b, s)
	}
	if s := r.Balance; s != nil {
		r.balanceMD(&b, s)
	}
	return b.String()
}

// goals renders the goals of issues 7, 16 and 17 next to the measured medians. They are
// read, never asserted.
func (r *report) goals(b *strings.Builder) {
	t := mdTable{head: []string{"goal (issues 7, 16, 17)", "cutover measured", "met"}}
	met := func(ok bool, v ...num) string {
		for _, x := range v {
			if !x.valid() {
				return "—"
			}
		}
		if ok {
			return "yes"
		}
		return "no"
	}
	if s := r.Saturation; s != nil {
		rps := collect(s.Samples, func(x satSample) (string, int, num) { return x.Target, x.Round, x.RPS })
		cpu := collect(s.Samples, func(x satSample) (string, int, num) { return x.Target, x.Round, x.CPUPer1k })
		rr, cr := rps.medRatio(targetCutover), cpu.medRatio(targetCutover)
		t.row("1. throughput ≥ 1.0× nginx", fx(rr), met(rr >= 1, rr))
		t.row("1. CPU per request ≤ nginx", fx(cr), met(cr <= 1, cr))
		if len(rps.vals[targetCutoverRewrite]) > 0 {
			rr, cr := rps.medRatio(targetCutoverRewrite), cpu.medRatio(targetCutoverRewrite)
			t.row("1. the same with model_name rewriting: throughput ≥ 1.0× nginx", fx(rr), met(rr >= 1, rr))
			t.row("1. the same with model_name rewriting: CPU per request ≤ nginx", fx(cr), met(cr <= 1, cr))
		}
	}
	if s := r.Streams; s != nil {
		var add []float64
		co, hb := map[string]int{}, map[string]int{}
		for _, x := range s.Samples {
			if x.Target == targetCutover {
				add = append(add, float64(x.AddedDelayP99Ms))
			}
			co[x.Target] += x.Coalesced
			hb[x.Target] += x.HeldBack
		}
		a := num(median(add))
		t.row("2. added per-chunk delay p99 < 1 ms", signed(a, 3)+" ms", met(a < 1, a))
		// The references' counts stand beside cutover's: on a shared
		// machine they show how much of it is the machine's.
		t.row("2. no chunk coalesced or held back", fmt.Sprintf("%d coalesced, %d held back (nginx %d and %d, HAProxy %d and %d)",
			co[targetCutover], hb[targetCutover], co[targetNginx], hb[targetNginx], co[targetHAProxy], hb[targetHAProxy]),
			met(co[targetCutover] == 0 && hb[targetCutover] == 0))
		at := collect(s.Samples, func(x streamsSample) (string, int, num) { return x.Target, x.Round, x.AddedTTFBP50Ms })
		c, n := at.med(targetCutover), at.med(targetNginx)
		t.row("2. added TTFB p50 ≤ nginx's", signed(c, 3)+" ms (nginx "+signed(n, 3)+" ms)", met(c <= n, c, n))
	}
	if s := r.Idle; s != nil {
		var rss, per []float64
		onTime, streams := 0, 0
		for _, x := range s.Samples {
			if x.Target == targetCutover {
				rss, per = append(rss, float64(x.PlateauRSSMiB)), append(per, float64(x.PerStreamKiB))
				onTime, streams = onTime+x.OnTime, streams+x.Streams
			}
		}
		if streams > 0 {
			m, p := num(median(rss)), num(median(per))
			t.row("3. RSS ≤ 1 GiB (≤ 100 KB per stream)", f(m, 0)+" MiB, "+f(p, 1)+" KiB/stream",
				met(m <= 1024 && p*1024 <= 100_000, m, p))
			t.row("3. every stream on time", fmt.Sprintf("%d/%d on time", onTime, streams), met(onTime == streams))
			pk := collect(s.Samples, func(x idleSample) (string, int, num) { return x.Target, x.Round, x.PerStreamKiB })
			c, n := pk.med(targetCutover), pk.med(targetNginx)
			t.row("3. memory per idle stream ≤ nginx's", f(c, 1)+" KiB (nginx "+f(n, 1)+" KiB)", met(c <= n, c, n))
		}
	}
	if s := r.Switch; s != nil {
		var worst []float64
		for _, x := range s.Samples {
			if x.Target == targetCutover {
				worst = append(worst, float64(x.MaxMs))
			}
		}
		m := num(maxOf(worst))
		t.row("4. switch propagation < 1 ms", "worst "+signed(m, 3)+" ms", met(m < 1, m))
	}
	if s := r.Shadow; s != nil {
		rr := num(median(shadowRatios(s, shadowOff)))
		t.row("5. live p99 with shadow 100 % ≤ 1.05× 0 %", fx(rr)+pooledNote(s, shadowOff), met(rr <= 1.05, rr))
		rc := num(median(shadowRatios(s, shadowCopies)))
		t.row("5. (control) the same, the candidate's load in both", fx(rc)+pooledNote(s, shadowCopies), met(rc <= 1.05, rc))
	}
	if s := r.Balance; s != nil {
		p99 := collect(s.Samples, func(x balanceSample) (string, int, num) { return x.Target, x.Round, x.TTFTP99Ms })
		hit := collect(s.Samples, func(x balanceSample) (string, int, num) { return x.Target, x.Round, x.HitRate })
		thr := collect(s.Samples, func(x balanceSample) (string, int, num) { return x.Target, x.Round, x.Throughput })
		rr := p99.medRatio(balanceLLM)
		t.row("6. cutover llm TTFT p99 ≤ 0.5× nginx least_conn", fx(rr)+" (the floor no balancer can pass: "+fx(s.floorRatio())+")", met(rr <= 0.5, rr))
		lh, nh := hit.med(balanceLLM), hit.med(targetNginx)
		t.row("6. cutover llm prefix hit rate above nginx least_conn's", pct(lh)+" (nginx "+pct(nh)+")", met(lh > nh, lh, nh))
		tr := thr.medRatio(balanceLLM)
		t.row("6. cutover llm throughput ≥ nginx least_conn's", fx(tr), met(tr >= 1, tr))
	}
	if len(t.rows) > 0 {
		fmt.Fprintf(b, "## Goals\n\n%s\n", t.String())
	}
}

func (r *report) saturationMD(b *strings.Builder, s *satResult) {
	fmt.Fprintf(b, "## 1. Small non-streamed completions at saturation\n\n"+
		"wrk, %d connections, %d thread(s), %d s per run, 16-token answers, backend without delay. "+
		"CPU is the proxy's utime+stime (all its processes) per 1000 requests. Requests/s and CPU count successful answers only (errors: non-2xx answers and socket errors).\n\n", s.Connections, s.Threads, s.Seconds)
	key := func(m func(satSample) num) func(satSample) (string, int, num) {
		return func(x satSample) (string, int, num) { return x.Target, x.Round, m(x) }
	}
	rps := collect(s.Samples, key(func(x satSample) num { return x.RPS }))
	p50 := collect(s.Samples, key(func(x satSample) num { return x.P50Ms }))
	p99 := collect(s.Samples, key(func(x satSample) num { return x.P99Ms }))
	cpu := collect(s.Samples, key(func(x satSample) num { return x.CPUPer1k }))
	t := mdTable{head: []string{"target", "req/s", "p50 ms", "p99 ms", "CPU s / 1k req", "req/s ÷ nginx", "CPU ÷ nginx", "p99 ÷ nginx"}}
	for _, n := range satOrder {
		t.row(n, f(rps.med(n), 0), f(p50.med(n), 2), f(p99.med(n), 2), f(cpu.med(n), 3),
			fx(rps.medRatio(n)), fx(cpu.medRatio(n)), fx(p99.medRatio(n)))
	}
	fmt.Fprintf(b, "Medians over rounds:\n\n%s\n", t.String())
	pr := mdTable{head: []string{"round", "target", "req/s", "p50 ms", "p99 ms", "CPU s / 1k req", "req/s ÷ nginx", "CPU ÷ nginx", "errors", "other load (cores)"}}
	for _, x := range s.Samples {
		pr.row(strconv.Itoa(x.Round), x.Target, f(x.RPS, 0), f(x.P50Ms, 2), f(x.P99Ms, 2), f(x.CPUPer1k, 3),
			fx(ratioTo(s.Samples, x, key(func(x satSample) num { return x.RPS }))),
			fx(ratioTo(s.Samples, x, key(func(x satSample) num { return x.CPUPer1k }))), strconv.Itoa(x.Errors), f(x.OtherCores, 2))
	}
	fmt.Fprintf(b, "<details><summary>Per round</summary>\n\n%s\n</details>\n\n", pr.String())
}

func (r *report) streamsMD(b *strings.Builder, s *streamsResult) {
	fmt.Fprintf(b, "## 2. Concurrent streams\n\n"+
		"%d concurrent streams of %d tokens at %.0f ms (started over one ITL), one connection each. "+
		"TTFB: request written → first event read. Chunk delay: the backend's send of each event (%s) → the client's read. "+
		"Added: minus direct in the same round. Coalesced: an event read together with one sent ≥ ITL/2 earlier; "+
		"held back: read more than one ITL after it was sent.\n\n", s.Streams, s.Chunks, s.ITLMs, s.Capture)
	key := func(m func(streamsSample) num) func(streamsSample) (string, int, num) {
		return func(x streamsSample) (string, int, num) { return x.Target, x.Round, m(x) }
	}
	col := func(m func(streamsSample) num) perTarget { return collect(s.Samples, key(m)) }
	tp50 := col(func(x streamsSample) num { return x.TTFBP50Ms })
	tp99 := col(func(x streamsSample) num { return x.TTFBP99Ms })
	at50 := col(func(x streamsSample) num { return x.AddedTTFBP50Ms })
	at99 := col(func(x streamsSample) num { return x.AddedTTFBP99Ms })
	d50 := col(func(x streamsSample) num { return x.DelayP50Ms })
	d99 := col(func(x streamsSample) num { return x.DelayP99Ms })
	ad50 := col(func(x streamsSample) num { return x.AddedDelayP50Ms })
	ad99 := col(func(x streamsSample) num { return x.AddedDelayP99Ms })
	dmax := col(func(x streamsSample) num { return x.DelayMaxMs })
	t := mdTable{head: []string{"target", "TTFB p50 ms", "TTFB p99 ms", "added TTFB p50", "added TTFB p99",
		"chunk delay p50 ms", "p99 ms", "max ms", "added delay p50", "added delay p99", "coalesced", "held back", "failed"}}
	for _, n := range targetOrder {
		co, hb, fl := 0, 0, 0
		for _, x := range s.Samples {
			if x.Target == n {
				co, hb, fl = co+x.Coalesced, hb+x.HeldBack, fl+x.Failed
			}
		}
		t.row(n, f(tp50.med(n), 3), f(tp99.med(n), 3), signed(at50.med(n), 3), signed(at99.med(n), 3),
			f(d50.med(n), 3), f(d99.med(n), 3), f(num(maxOf(dmax.vals[n])), 2), signed(ad50.med(n), 3), signed(ad99.med(n), 3),
			strconv.Itoa(co), strconv.Itoa(hb), strconv.Itoa(fl))
	}
	fmt.Fprintf(b, "Medians over rounds (max: over all rounds; counts: summed):\n\n%s\n", t.String())
	pr := mdTable{head: []string{"round", "target", "TTFB p50", "TTFB p99", "delay p50", "delay p99", "delay max",
		"added delay p99", "chunks", "matched", "coalesced", "held back", "failed", "capture drops", "retransmitted", "other load (cores)"}}
	for _, x := range s.Samples {
		pr.row(strconv.Itoa(x.Round), x.Target, f(x.TTFBP50Ms, 3), f(x.TTFBP99Ms, 3), f(x.DelayP50Ms, 3), f(x.DelayP99Ms, 3),
			f(x.DelayMaxMs, 2), signed(x.AddedDelayP99Ms, 3), strconv.Itoa(x.Chunks), strconv.Itoa(x.Matched),
			strconv.Itoa(x.Coalesced), strconv.Itoa(x.HeldBack), strconv.Itoa(x.Failed), strconv.Itoa(x.CaptureDrops), strconv.Itoa(x.Retransmitted), f(x.OtherCores, 2))
	}
	fmt.Fprintf(b, "<details><summary>Per round (ms)</summary>\n\n%s\n</details>\n\n", pr.String())
}

func (r *report) idleMD(b *strings.Builder, s *idleResult) {
	fmt.Fprintf(b, "## 3. Many idle-ish streams\n\n"+
		"%d concurrent streams at one token per %.0f ms through one proxy at a time (fresh backend and proxy each), "+
		"RLIMIT_NOFILE %d. RSS: sum of VmRSS over the proxy's processes, before the ramp and the largest sample in "+
		"a %g s plateau. On time: every gap between two events during the plateau ≤ ITL + %.0f ms.\n\n",
		s.Streams, s.ITLMs, s.NoFile, s.PlateauSeconds, s.ToleranceMs)
	if s.Streams < s.Requested {
		fmt.Fprintf(b, "%d streams were asked for; RLIMIT_NOFILE (%d, a hard limit the harness may not raise here) "+
			"lets one proxy process relay %d (a client and an upstream socket each).\n\n", s.Requested, s.NoFile, s.Streams)
	}
	key := func(x idleSample) (string, int, num) { return x.Target, x.Round, x.PlateauRSSMiB }
	rss := collect(s.Samples, key)
	per := collect(s.Samples, func(x idleSample) (string, int, num) { return x.Target, x.Round, x.PerStreamKiB })
	sum := mdTable{head: []string{"target", "RSS plateau MiB", "KiB / stream", "RSS ÷ nginx", "streams on time", "worst gap ms"}}
	for _, n := range targetOrder {
		onTime, streams, worst := 0, 0, []float64{}
		for _, x := range s.Samples {
			if x.Target == n {
				onTime, streams, worst = onTime+x.OnTime, streams+x.Streams, append(worst, float64(x.MaxGapMs))
			}
		}
		sum.row(n, f(rss.med(n), 1), f(per.med(n), 1), fx(rss.medRatio(n)), fmt.Sprintf("%d/%d", onTime, streams), f(num(maxOf(worst)), 0))
	}
	fmt.Fprintf(b, "Medians over rounds (on time: summed; worst gap: over all streams and rounds):\n\n%s\n", sum.String())
	t := mdTable{head: []string{"round", "target", "established", "RSS before MiB", "RSS plateau MiB", "KiB / stream",
		"RSS ÷ nginx", "on time", "late", "failed", "max gap p99 ms", "max gap ms", "other load (cores)"}}
	var fails []string
	for _, x := range s.Samples {
		t.row(strconv.Itoa(x.Round), x.Target, strconv.Itoa(x.Established), f(x.BaselineRSSMiB, 1), f(x.PlateauRSSMiB, 1),
			f(x.PerStreamKiB, 1), fx(ratioTo(s.Samples, x, key)), strconv.Itoa(x.OnTime), strconv.Itoa(x.Late),
			strconv.Itoa(x.Failed), f(x.MaxGapP99Ms, 0), f(x.MaxGapMs, 0), f(x.OtherCores, 2))
		for why, n := range x.Failures {
			fails = append(fails, fmt.Sprintf("round %d, %s: %d × %s", x.Round, x.Target, n, why))
		}
	}
	fmt.Fprintf(b, "<details><summary>Per round</summary>\n\n%s\n</details>\n\n", t.String())
	if len(fails) > 0 {
		slices.Sort(fails)
		fmt.Fprintf(b, "Failed streams: %s.\n\n", strings.Join(fails, "; "))
	}
}

func (r *report) switchMD(b *strings.Builder, s *switchResult) {
	fmt.Fprintf(b, "## 4. Switch propagation under load\n\n"+
		"%d clients send small completions without pause; each round switches each proxy between two backends "+
		"(same model id; the random prefix of each backend's response ids says which answered). Propagation: the start of "+
		"the last request that still reached the old pool minus the switch call's return; ≤ 0 means no request that "+
		"started after the return reached the old pool. Stale: requests that started after a switch returned and still "+
		"reached the old pool.\n\n", s.Clients)
	t := mdTable{head: []string{"target", "switch method", "propagation median ms", "worst ms", "call ms (median)", "stale requests", "requests", "failed"}}
	for _, n := range targetOrder[1:] {
		var med, worst, call []float64
		reqs, failed, stale := 0, 0, 0
		for _, x := range s.Samples {
			if x.Target == n {
				med = append(med, nums(x.PropagationMs)...)
				worst = append(worst, float64(x.MaxMs))
				call = append(call, float64(x.CallMs))
				reqs, failed, stale = reqs+x.Requests, failed+x.Failed, stale+x.Stale
			}
		}
		t.row(n, s.Methods[n], signed(num(median(med)), 3), signed(num(maxOf(worst)), 3), f(num(median(call)), 3),
			strconv.Itoa(stale), strconv.Itoa(reqs), strconv.Itoa(failed))
	}
	fmt.Fprintf(b, "Over all switches of all rounds:\n\n%s\n", t.String())
	pr := mdTable{head: []string{"round", "target", "propagation per switch ms", "call ms", "stale", "requests", "failed", "other load (cores)"}}
	for _, x := range s.Samples {
		ps := make([]string, len(x.PropagationMs))
		for i, p := range x.PropagationMs {
			ps[i] = signed(p, 3)
		}
		pr.row(strconv.Itoa(x.Round), x.Target, strings.Join(ps, ", "), f(x.CallMs, 3), strconv.Itoa(x.Stale),
			strconv.Itoa(x.Requests), strconv.Itoa(x.Failed), f(x.OtherCores, 2))
	}
	fmt.Fprintf(b, "<details><summary>Per round</summary>\n\n%s\n</details>\n\n", pr.String())
}

// shadowRatios returns, per round, the p99 with shadow 100 % over the p99
// of base: shadowOff (the goal as written) or shadowCopies (the control,
// where the candidate does the same work but cutover mirrors nothing).
func shadowRatios(s *shadowResult, base string) []float64 {
	ref := map[int]num{}
	for _, x := range s.Samples {
		if x.Target == base {
			ref[x.Round] = x.P99Ms
		}
	}
	var out []float64
	for _, x := range s.Samples {
		if _, ok := ref[x.Round]; ok && x.Target == shadowOn {
			out = append(out, ratio(float64(x.P99Ms), float64(ref[x.Round])))
		}
	}
	return out
}

// pooledRatio is shadow 100 %'s p99 over base's, each taken over the
// requests of all rounds together; NaN when either is missing.
func pooledRatio(s *shadowResult, base string) num {
	on, ok1 := s.PooledP99Ms[shadowOn]
	ref, ok2 := s.PooledP99Ms[base]
	if !ok1 || !ok2 {
		return nan
	}
	return num(ratio(float64(on), float64(ref)))
}

// pooledNote is pooledRatio as a note to a per-round median.
func pooledNote(s *shadowResult, base string) string {
	if len(s.PooledP99Ms) == 0 {
		return ""
	}
	return " (all rounds pooled: " + fx(pooledRatio(s, base)) + ")"
}

func (r *report) shadowMD(b *strings.Builder, s *shadowResult) {
	fmt.Fprintf(b, "## 5. Shadow cost\n\n"+
		"Two cutover instances in front of the same backend, %.0f requests/s open loop for %.1f s each, interleaved: "+
		"one without a deployment (shadow 0 %%), one with a deployment held in validating with "+
		"`validation.shadow.percent: 100` (every live request copied to a second backend), and a control run "+
		"(`%s`): the shadow-0 instance while the harness sends each copy to the candidate itself after the live "+
		"answer, so that what is left of the candidate's own work on the shared cores is in both. The candidate "+
		"backend's CPU priority: %s (idle: SCHED_IDLE, standing for a green pool on machines of its own). "+
		"Copies: requests the candidate answered during the run.\n\n", s.Rate, s.Seconds, shadowCopies, s.Candidate)
	t := mdTable{head: []string{"round", "instance", "p50 ms", "p99 ms", "CPU s / 1k req", "requests", "copies", "failed", "dropped", "phase", "p99 ÷ shadow 0 %", "other load (cores)"}}
	off := map[int]num{}
	for _, x := range s.Samples {
		if x.Target == shadowOff {
			off[x.Round] = x.P99Ms
		}
	}
	for _, x := range s.Samples {
		t.row(strconv.Itoa(x.Round), x.Target, f(x.P50Ms, 3), f(x.P99Ms, 3), f(x.CPUPer1k, 3), strconv.Itoa(x.Requests),
			strconv.Itoa(x.Copies), strconv.Itoa(x.Failed), strconv.Itoa(x.Dropped), x.Phase,
			fx(num(ratio(float64(x.P99Ms), float64(off[x.Round])))), f(x.OtherCores, 2))
	}
	fmt.Fprintf(b, "%s\nMedian p99 ratio, shadow 100 %% ÷ 0 %%: %s; ÷ the control (the candidate's work in both, only cutover's mirroring differs): %s\n\n",
		t.String(), fx(num(median(shadowRatios(s, shadowOff)))), fx(num(median(shadowRatios(s, shadowCopies)))))
	if len(s.PooledP99Ms) > 0 {
		fmt.Fprintf(b, "p99 over the requests of all rounds together (a round's p99 rests on its 1 %% slowest requests alone): "+
			"shadow 0 %% %s ms, control %s ms, shadow 100 %% %s ms; shadow 100 %% ÷ 0 %%: %s, ÷ the control: %s.\n\n",
			f(s.PooledP99Ms[shadowOff], 3), f(s.PooledP99Ms[shadowCopies], 3), f(s.PooledP99Ms[shadowOn], 3),
			fx(pooledRatio(s, shadowOff)), fx(pooledRatio(s, shadowCopies)))
	}
}

// pct formats a fraction as a percentage.
func pct(v num) string {
	if !v.valid() {
		return "—"
	}
	return strconv.FormatFloat(100*float64(v), 'f', 1, 64) + " %"
}

// floorRatio is the median over rounds of the TTFT p99 floor over nginx's
// TTFT p99: the least "llm ÷ nginx" any balancer could reach.
func (s *balanceResult) floorRatio() num {
	var rs []float64
	for _, x := range s.Samples {
		if x.Target == targetNginx {
			rs = append(rs, ratio(float64(x.FloorTTFTP99Ms), float64(x.TTFTP99Ms)))
		}
	}
	return num(median(rs))
}

func (r *report) balanceMD(b *strings.Builder, s *balanceResult) {
	sim, w := s.Config.Sim, s.Config.Work
	fmt.Fprintf(b, "## 6. Balancing over %d replicas\n\n"+
		"%d identical simulated replicas (cutover mock-llm: --max-num-seqs %d, --ttft %g ms, --prefill-per-token %g µs, "+
		"--itl %g ms, --itl-per-seq %g ms, --kv-blocks %d, --block-size %d) behind nginx least_conn, HAProxy leastconn "+
		"and cutover's round_robin, least_outstanding and llm balancers. Open loop: Poisson arrivals at %.1f requests/s "+
		"for %g s per run (seed %d; aimed at %.0f %% of the pool's sequence slots busy, every prompt token counted "+
		"uncached), %.0f %% long one-shot prompts (%d–%d words, %d-token answers), the rest turns of chats "+
		"(%d–%d turns, each resending the conversation after a shared %d-word system prompt, %d–%d new words, "+
		"%d-token answers). TTFT: request sent → first token read; e2e: → [DONE]. Hit rate: the replicas' "+
		"vllm:prefix_cache_hits_total ÷ vllm:prefix_cache_queries_total during the run. Done/s: completed requests "+
		"from the first arrival to the last answer.\n\n",
		s.Replicas, s.Replicas, sim.MaxNumSeqs, sim.TTFTMs, sim.PrefillPerTokUs, sim.ITLMs, sim.ITLPerSeqMs, sim.KVBlocks, sim.BlockSize,
		s.Rate, s.Seconds, s.Seed, 100*s.Busy, 100*w.OneShotShare, w.OneShotMin, w.OneShotMax, w.OneShotAns,
		w.TurnsMin, w.TurnsMax, w.SystemWords, w.UserMin, w.UserMax, w.ChatAnswer)
	col := func(m func(balanceSample) num) perTarget {
		return collect(s.Samples, func(x balanceSample) (string, int, num) { return x.Target, x.Round, m(x) })
	}
	p50 := col(func(x balanceSample) num { return x.TTFTP50Ms })
	p99 := col(func(x balanceSample) num { return x.TTFTP99Ms })
	e2e := col(func(x balanceSample) num { return x.E2EP99Ms })
	thr := col(func(x balanceSample) num { return x.Throughput })
	hit := col(func(x balanceSample) num { return x.HitRate })
	chat := col(func(x balanceSample) num { return x.ChatTTFTP99Ms })
	one := col(func(x balanceSample) num { return x.OneShotTTFTP99Ms })
	busy := col(func(x balanceSample) num { return x.Busy })
	queue := col(func(x balanceSample) num { return x.QueueMs })
	floor := col(func(x balanceSample) num { return x.FloorTTFTP99Ms })
	t := mdTable{head: []string{"target", "TTFT p50 ms", "TTFT p99 ms", "chat TTFT p99 ms", "one-shot TTFT p99 ms", "e2e p99 ms",
		"done/s", "prefix hit rate", "busy", "queue wait ms", "TTFT p99 ÷ nginx", "chat TTFT p99 ÷ nginx", "failed"}}
	for _, n := range balanceOrder {
		failed := 0
		for _, x := range s.Samples {
			if x.Target == n {
				failed += x.Failed
			}
		}
		t.row(n, f(p50.med(n), 1), f(p99.med(n), 1), f(chat.med(n), 1), f(one.med(n), 1), f(e2e.med(n), 1), f(thr.med(n), 2),
			pct(hit.med(n)), pct(busy.med(n)), f(queue.med(n), 1), fx(p99.medRatio(n)), fx(chat.medRatio(n)), strconv.Itoa(failed))
	}
	fmt.Fprintf(b, "Medians over rounds (failed: summed):\n\n%s\n", t.String())
	fmt.Fprintf(b, "TTFT p99 floor: %s ms (%s nginx's TTFT p99), the p99 of each request's least possible TTFT — no wait for a slot, "+
		"every prompt token cached but the new ones — which no balancer can go below.\n\n", f(floor.med(targetNginx), 1), fx(s.floorRatio()))
	pr := mdTable{head: []string{"round", "target", "sent", "done", "failed", "TTFT p50 ms", "TTFT p99 ms", "chat TTFT p99 ms", "one-shot TTFT p99 ms",
		"e2e p99 ms", "done/s", "hit rate", "busy", "queue wait ms", "other load (cores)"}}
	for _, x := range s.Samples {
		pr.row(strconv.Itoa(x.Round), x.Target, strconv.Itoa(x.Sent), strconv.Itoa(x.Completed), strconv.Itoa(x.Failed),
			f(x.TTFTP50Ms, 1), f(x.TTFTP99Ms, 1), f(x.ChatTTFTP99Ms, 1), f(x.OneShotTTFTP99Ms, 1), f(x.E2EP99Ms, 1), f(x.Throughput, 2),
			pct(x.HitRate), pct(x.Busy), f(x.QueueMs, 1), f(x.OtherCores, 2))
	}
	fmt.Fprintf(b, "<details><summary>Per round</summary>\n\n%s\n</details>\n\n", pr.String())
}

package synthetic

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// keptFailures is how many failing results a CaseSummary keeps.
const keptFailures = 5

// Report summarises a run of a suite.
type Report struct {
	// Suite is the suite's file, "" when it was not loaded from one.
	Suite string
	// Cases is the number of cases in the suite.
	Cases int
	// Requests counts the results: requests that ran to an outcome.
	Requests int
	// Passed and Failed split Requests.
	Passed, Failed int
	// Skipped counts requests not run, or cut short, because the run's
	// context ended.
	Skipped int
	// PassRate is Passed/Requests; 0 when there were no requests.
	PassRate float64
	// Duration is the wall time of the whole run.
	Duration time.Duration
	// PerCase summarises each case, in suite order.
	PerCase []CaseSummary
}

// CaseSummary summarises the results of one case.
type CaseSummary struct {
	// Name is the case's name.
	Name string
	// Requests, Passed and Failed count the case's results.
	Requests, Passed, Failed int
	// LatencyP50 and LatencyP95 are percentiles of Result.Duration over the
	// results that got an answer; 0 when none did.
	LatencyP50, LatencyP95 time.Duration
	// TTFTP50 and TTFTP95 are percentiles of Result.TTFT over the results
	// that got a first token; 0 when none did.
	TTFTP50, TTFTP95 time.Duration
	// Failures are the case's first failing results (at most 5), in the
	// order they completed.
	Failures []Failure
}

// Failure is a failing result, as a report shows it.
type Failure struct {
	// Iteration is the failing run of the case, from 1.
	Iteration int
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Reasons are Result.Failures.
	Reasons []string
	// Text is the start of the answer text (at most 200 bytes).
	Text string
}

// OK reports whether the run is a success: at least one request, all
// passed, none skipped. A run with nothing to show never passes.
func (r Report) OK() bool {
	return r.Requests > 0 && r.Failed == 0 && r.Skipped == 0
}

// WriteText writes the report for people: a table of the cases, each
// failure with its reasons, and a last line such as "12 passed, 3 failed".
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tRUNS\tPASSED\tFAILED\tP50\tP95\tTTFT P50\tTTFT P95")
	for _, c := range r.PerCase {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", c.Name, c.Requests, c.Passed, c.Failed,
			dash(c.LatencyP50), dash(c.LatencyP95), dash(c.TTFTP50), dash(c.TTFTP95))
	}
	_ = tw.Flush() // writes to a strings.Builder never fail
	failing := false
	for _, c := range r.PerCase {
		if c.Failed == 0 {
			continue
		}
		if !failing {
			b.WriteString("\nFailures:\n")
			failing = true
		}
		fmt.Fprintf(&b, "  %s: %d of %d runs failed\n", c.Name, c.Failed, c.Requests)
		writeFailures(&b, c.Failures)
		if more := c.Failed - len(c.Failures); more > 0 {
			fmt.Fprintf(&b, "    (%d more failed runs not shown)\n", more)
		}
	}
	b.WriteByte('\n')
	b.WriteString(r.summaryLine())
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFailures writes fs, grouping the runs that failed for the same
// reasons with the same status.
func writeFailures(b *strings.Builder, fs []Failure) {
	type group struct {
		runs []int
		f    Failure
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, f := range fs {
		key := fmt.Sprint(f.Status, f.Reasons)
		g := byKey[key]
		if g == nil {
			g = &group{f: f}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.runs = append(g.runs, f.Iteration)
	}
	for _, g := range groups {
		slices.Sort(g.runs)
		runs := make([]string, len(g.runs))
		for i, n := range g.runs {
			runs[i] = strconv.Itoa(n)
		}
		label := "run"
		if len(runs) > 1 {
			label = "runs"
		}
		status := "no response"
		if g.f.Status != 0 {
			status = fmt.Sprintf("status %d", g.f.Status)
		}
		fmt.Fprintf(b, "    %s %s (%s):\n", label, strings.Join(runs, ", "), status)
		for _, reason := range g.f.Reasons {
			fmt.Fprintf(b, "      - %s\n", reason)
		}
		if g.f.Text != "" {
			fmt.Fprintf(b, "      answer: %q\n", g.f.Text)
		}
	}
}

// summaryLine is the report's last line.
func (r Report) summaryLine() string {
	s := fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed)
	if r.Skipped > 0 {
		s += fmt.Sprintf(", %d not run (canceled)", r.Skipped)
	}
	if r.Requests > 0 {
		s += fmt.Sprintf(" (%.1f%% pass)", 100*r.PassRate)
	}
	return s + fmt.Sprintf(" in %s", ms(r.Duration))
}

// dash renders a duration for the table, "-" when unknown.
func dash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return ms(d)
}

// WriteJSON writes the report as indented JSON (see MarshalJSON).
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

type jsonReport struct {
	Suite      string     `json:"suite,omitempty"`
	OK         bool       `json:"ok"`
	Cases      int        `json:"cases"`
	Requests   int        `json:"requests"`
	Passed     int        `json:"passed"`
	Failed     int        `json:"failed"`
	Skipped    int        `json:"skipped"`
	PassRate   float64    `json:"pass_rate"`
	DurationMS float64    `json:"duration_ms"`
	PerCase    []jsonCase `json:"per_case"`
}

type jsonCase struct {
	Name         string        `json:"name"`
	Requests     int           `json:"requests"`
	Passed       int           `json:"passed"`
	Failed       int           `json:"failed"`
	LatencyP50MS float64       `json:"latency_p50_ms"`
	LatencyP95MS float64       `json:"latency_p95_ms"`
	TTFTP50MS    float64       `json:"ttft_p50_ms"`
	TTFTP95MS    float64       `json:"ttft_p95_ms"`
	Failures     []jsonFailure `json:"failures"`
}

type jsonFailure struct {
	Iteration int      `json:"iteration"`
	Status    int      `json:"status"`
	Reasons   []string `json:"reasons"`
	Text      string   `json:"text"`
}

// MarshalJSON encodes the report with snake_case keys and durations in
// milliseconds: suite, ok, cases, requests, passed, failed, skipped,
// pass_rate, duration_ms and per_case (name, requests, passed, failed,
// latency_p50_ms, latency_p95_ms, ttft_p50_ms, ttft_p95_ms, failures with
// iteration, status, reasons and text).
func (r Report) MarshalJSON() ([]byte, error) {
	out := jsonReport{Suite: r.Suite, OK: r.OK(), Cases: r.Cases, Requests: r.Requests, Passed: r.Passed,
		Failed: r.Failed, Skipped: r.Skipped, PassRate: r.PassRate, DurationMS: millis(r.Duration),
		PerCase: make([]jsonCase, len(r.PerCase))}
	for i, c := range r.PerCase {
		jc := jsonCase{Name: c.Name, Requests: c.Requests, Passed: c.Passed, Failed: c.Failed,
			LatencyP50MS: millis(c.LatencyP50), LatencyP95MS: millis(c.LatencyP95),
			TTFTP50MS: millis(c.TTFTP50), TTFTP95MS: millis(c.TTFTP95),
			Failures: make([]jsonFailure, len(c.Failures))}
		for j, f := range c.Failures {
			jc.Failures[j] = jsonFailure(f)
		}
		out.PerCase[i] = jc
	}
	return json.Marshal(out)
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}

// tally collects results from Run's workers.
type tally struct {
	mu    sync.Mutex
	cases []caseTally // by case index; guarded by mu
}

type caseTally struct {
	passed, failed int
	latencies      []time.Duration
	ttfts          []time.Duration
	failures       []Failure
}

func newTally(s *Suite) *tally {
	return &tally{cases: make([]caseTally, len(s.Cases))}
}

// add records the result of a request of case i.
func (t *tally) add(i int, res Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &t.cases[i]
	if res.Pass {
		c.passed++
	} else {
		c.failed++
		if len(c.failures) < keptFailures {
			c.failures = append(c.failures, Failure{Iteration: res.Iteration, Status: res.Status,
				Reasons: res.Failures, Text: clip(res.Text, 200)})
		}
	}
	if res.TransportError == "" {
		c.latencies = append(c.latencies, res.Duration)
	}
	if res.TTFT > 0 {
		c.ttfts = append(c.ttfts, res.TTFT)
	}
}

// report builds the Report once every worker is done.
func (t *tally) report(s *Suite, total int, elapsed time.Duration) Report {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := Report{Suite: s.File, Cases: len(s.Cases), Duration: elapsed, PerCase: make([]CaseSummary, len(s.Cases))}
	for i := range t.cases {
		c := &t.cases[i]
		r.PerCase[i] = CaseSummary{Name: s.Cases[i].Name, Requests: c.passed + c.failed, Passed: c.passed, Failed: c.failed,
			LatencyP50: percentile(c.latencies, 0.50), LatencyP95: percentile(c.latencies, 0.95),
			TTFTP50: percentile(c.ttfts, 0.50), TTFTP95: percentile(c.ttfts, 0.95),
			Failures: c.failures}
		r.Passed += c.passed
		r.Failed += c.failed
	}
	r.Requests = r.Passed + r.Failed
	r.Skipped = total - r.Requests
	if r.Requests > 0 {
		r.PassRate = float64(r.Passed) / float64(r.Requests)
	}
	return r
}

// percentile returns the nearest-rank p-th percentile of ds (sorting it),
// 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[max(rank, 0)]
}

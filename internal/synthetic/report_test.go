package synthetic

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// failingRun runs a suite with a passing and a failing case, twice each,
// against the simulator.
func failingRun(t *testing.T) Report {
	t.Helper()
	url := serve(t, simulator(t, mockllm.Config{}))
	s, err := Parse([]byte(`
repeat: 2
defaults: {model: ` + testModel + `}
cases:
  - {name: greets, prompt: hi, stream: true}
  - name: wants-zebra
    messages: [{role: user, content: hi}]
    expect: {contains: [zebra], min_tokens: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	s.File = "suite.yaml"
	_, rep := runAll(t, &Runner{BaseURLs: []string{url}}, s)
	return rep
}

func TestReportText(t *testing.T) {
	rep := failingRun(t)
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	answer := mockllm.Answer(testModel, "hi", testTokens)
	for _, re := range []string{
		`(?m)^CASE +RUNS +PASSED +FAILED +P50 +P95 +TTFT P50 +TTFT P95$`,
		`(?m)^greets +2 +2 +0 +\S+ +\S+ +\S+ +\S+$`,
		`(?m)^wants-zebra +2 +0 +2 `,
		`(?m)^  wants-zebra: 2 of 2 runs failed\n    runs 1, 2 \(status 200\):\n      - text does not contain "zebra"\n      answer: "` +
			regexp.QuoteMeta(answer) + `"$`,
		`(?m)\n2 passed, 2 failed \(50\.0% pass\) in \S+\n\z`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report does not match %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "greets:") {
		t.Errorf("a passing case is listed under failures:\n%s", out)
	}
}

func TestReportJSON(t *testing.T) {
	rep := failingRun(t)
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Suite    string  `json:"suite"`
		OK       bool    `json:"ok"`
		Cases    int     `json:"cases"`
		Requests int     `json:"requests"`
		Passed   int     `json:"passed"`
		Failed   int     `json:"failed"`
		PassRate float64 `json:"pass_rate"`
		Duration float64 `json:"duration_ms"`
		PerCase  []struct {
			Name      string  `json:"name"`
			Failed    int     `json:"failed"`
			TTFTP95MS float64 `json:"ttft_p95_ms"`
			Failures  []struct {
				Iteration int      `json:"iteration"`
				Status    int      `json:"status"`
				Reasons   []string `json:"reasons"`
			} `json:"failures"`
		} `json:"per_case"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, b.String())
	}
	if got.Suite != "suite.yaml" || got.OK || got.Cases != 2 || got.Requests != 4 || got.Passed != 2 || got.Failed != 2 ||
		got.PassRate != 0.5 || got.Duration <= 0 || len(got.PerCase) != 2 {
		t.Fatalf("report:\n%s", b.String())
	}
	z := got.PerCase[1]
	if z.Name != "wants-zebra" || z.Failed != 2 || z.TTFTP95MS <= 0 || len(z.Failures) != 2 ||
		z.Failures[0].Status != 200 || z.Failures[0].Reasons[0] != `text does not contain "zebra"` {
		t.Errorf("failing case: %+v", z)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var ds []time.Duration
		for _, n := range ns {
			ds = append(ds, time.Duration(n)*time.Millisecond)
		}
		return ds
	}
	for _, tc := range []struct {
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.95, 7 * time.Millisecond},
		{ms(4, 1, 3, 2), 0.5, 2 * time.Millisecond},
		{ms(20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19), 0.95, 19 * time.Millisecond},
		{ms(20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19), 1, 20 * time.Millisecond},
	} {
		if got := percentile(tc.ds, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %s, want %s", tc.ds, tc.p, got, tc.want)
		}
	}
}

func TestEmptyReportIsNotOK(t *testing.T) {
	if (Report{}).OK() || (Report{Requests: 3, Passed: 3, Skipped: 1}).OK() || !(Report{Requests: 1, Passed: 1}).OK() {
		t.Error("OK must need at least one request, all passed, none skipped")
	}
}

// Package validation measures a candidate pool against the live one —
// shadow pairs, synthetic results, live traffic — and turns the
// measurements into gate verdicts. It knows nothing of deployments: the
// rollout controller reads its verdicts.
package validation

import (
	"fmt"
	"slices"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
)

// Gate names.
const (
	GateErrorRate      = "error_rate"
	GateLatencyRatio   = "latency_p95_ratio"
	GateTTFT           = "ttft_p95_ms"
	GateTTFTRatio      = "ttft_p95_ratio"
	GateTPSRatio       = "tokens_per_second_ratio"
	GateShadowMismatch = "shadow_mismatch_rate"
	GateSynthetic      = "synthetic_pass_rate"
)

// Verdicts.
const (
	Pass         = "pass"
	Fail         = "fail"
	Inconclusive = "inconclusive"
)

// GateConfig is one gate's threshold. A gate that is not Enabled is not
// evaluated.
type GateConfig struct {
	Enabled    bool
	Threshold  float64
	MinSamples int
}

// Gates configures every gate.
type Gates struct {
	ErrorRate, LatencyRatio, TTFT, TTFTRatio, TPSRatio, ShadowMismatch, Synthetic GateConfig
}

// GatesFromConfig converts the configured gates.
func GatesFromConfig(g config.ValidationGates) Gates {
	c := func(x config.Gate) GateConfig {
		return GateConfig{Enabled: x.Enabled, Threshold: x.Threshold, MinSamples: x.MinSamples}
	}
	return Gates{ErrorRate: c(g.ErrorRate), LatencyRatio: c(g.LatencyRatio), TTFT: c(g.TTFT), TTFTRatio: c(g.TTFTRatio),
		TPSRatio: c(g.TPSRatio), ShadowMismatch: c(g.ShadowMismatch), Synthetic: c(g.Synthetic)}
}

// Sample is one answer's measurements.
type Sample struct {
	Failed   bool
	Stream   bool
	Duration time.Duration
	TTFT     time.Duration
	Tokens   int
}

// tps is the generation speed of a stream: tokens after the first per
// second after the first token. Zero when it cannot be told.
func (s Sample) tps() float64 {
	gen := s.Duration - s.TTFT
	if !s.Stream || s.Tokens < 2 || gen <= 0 || s.Failed {
		return 0
	}
	return float64(s.Tokens-1) / gen.Seconds()
}

// Stats summarises samples for the gates; a recorded baseline is one.
type Stats struct {
	Samples    int     `json:"samples"`
	Errors     int     `json:"errors"`
	LatencyP95 float64 `json:"latency_p95_ms"`
	// LatencyN, TTFTN and TPSN count the samples behind each figure.
	LatencyN int     `json:"latency_n"`
	TTFTP95  float64 `json:"ttft_p95_ms"`
	TTFTN    int     `json:"ttft_n"`
	TPS      float64 `json:"tokens_per_second_p50"`
	TPSN     int     `json:"tps_n"`
}

// Summarise computes Stats over samples.
func Summarise(samples []Sample) Stats {
	var st Stats
	var lat, ttft, tps []float64
	for _, s := range samples {
		st.Samples++
		if s.Failed {
			st.Errors++
			continue
		}
		lat = append(lat, ms(s.Duration))
		if s.Stream && s.TTFT > 0 {
			ttft = append(ttft, ms(s.TTFT))
		}
		if v := s.tps(); v > 0 {
			tps = append(tps, v)
		}
	}
	st.LatencyP95, st.LatencyN = quantile(lat, .95), len(lat)
	st.TTFTP95, st.TTFTN = quantile(ttft, .95), len(ttft)
	st.TPS, st.TPSN = quantile(tps, .5), len(tps)
	return st
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[int(float64(len(v)-1)*q+0.5)]
}

// Inputs are what one evaluation sees.
type Inputs struct {
	// Candidate and Baseline summarise the candidate's and the live
	// pool's answers over the same window (or a recorded baseline).
	Candidate, Baseline Stats
	// Pairs counts deterministic shadow pairs and their mismatches.
	Pairs, Mismatches int
	// SyntheticRun and SyntheticPassed count synthetic results;
	// SyntheticExpected is how many the suite will produce (0: no suite).
	SyntheticRun, SyntheticPassed, SyntheticExpected int
	// Unanswered holds how long each shadow copy still in flight to the
	// candidate has waited so far (nil: none, or no shadow traffic).
	Unanswered []time.Duration
}

// hangBound is how long a copy may wait unanswered before it counts as
// hanging: the longest a p95 may take by the latency gate's threshold
// (threshold × the live p95). Zero (nothing counts as hanging before
// shadow.timeout) while the live p95 is unknown or the threshold unset.
func hangBound(g Gates, live Stats) time.Duration {
	if g.LatencyRatio.Threshold <= 0 || live.LatencyP95 <= 0 {
		return 0
	}
	return time.Duration(g.LatencyRatio.Threshold * live.LatencyP95 * float64(time.Millisecond))
}

// Evaluate computes every enabled gate. It is pure.
func Evaluate(g Gates, in Inputs) []api.Gate {
	var out []api.Gate
	add := func(name string, cfg GateConfig, value float64, op string, samples int, detail string) *api.Gate {
		if !cfg.Enabled {
			return nil
		}
		gate := api.Gate{Name: name, Value: round(value), Threshold: cfg.Threshold, Op: op, Samples: samples, MinSamples: cfg.MinSamples, Detail: detail}
		switch {
		case samples < cfg.MinSamples || samples == 0:
			gate.Verdict = Inconclusive
		case op == "<=" && value <= cfg.Threshold, op == ">=" && value >= cfg.Threshold:
			gate.Verdict = Pass
		default:
			gate.Verdict = Fail
		}
		out = append(out, gate)
		return &out[len(out)-1]
	}
	c, b := in.Candidate, in.Baseline
	// A copy the candidate has left unanswered longer than a p95 may take
	// counts as an error until it is answered, and while one does the
	// error rate does not pass: a candidate that stopped answering is not
	// passed on the answers it gave before (its hanging copies would
	// count only at shadow.timeout).
	hanging := 0
	if bound := hangBound(g, b); bound > 0 {
		for _, a := range in.Unanswered {
			if a > bound {
				hanging++
			}
		}
	}
	errs, answers := c.Errors+hanging, c.Samples+hanging
	rate := 0.0
	if answers > 0 {
		rate = float64(errs) / float64(answers)
	}
	detail := fmt.Sprintf("%d errors in %d candidate answers (5xx, transport, in-stream errors)", c.Errors, c.Samples)
	if hanging > 0 {
		detail += fmt.Sprintf(", and %d shadow copies unanswered for over %s (%g × the live p95), counted as errors", hanging, hangBound(g, b).Round(time.Millisecond), g.LatencyRatio.Threshold)
	}
	if e := add(GateErrorRate, g.ErrorRate, rate, "<=", answers, detail); e != nil && hanging > 0 && e.Verdict == Pass {
		e.Verdict = Inconclusive
	}
	add(GateLatencyRatio, g.LatencyRatio, ratio(c.LatencyP95, b.LatencyP95), "<=", min(c.LatencyN, b.LatencyN),
		fmt.Sprintf("candidate p95 %.0f ms (%d) / live p95 %.0f ms (%d)", c.LatencyP95, c.LatencyN, b.LatencyP95, b.LatencyN))
	add(GateTTFT, g.TTFT, c.TTFTP95, "<=", c.TTFTN, fmt.Sprintf("candidate p95 time to first token over %d streams, ms", c.TTFTN))
	add(GateTTFTRatio, g.TTFTRatio, ratio(c.TTFTP95, b.TTFTP95), "<=", min(c.TTFTN, b.TTFTN),
		fmt.Sprintf("candidate p95 TTFT %.0f ms (%d) / live %.0f ms (%d)", c.TTFTP95, c.TTFTN, b.TTFTP95, b.TTFTN))
	add(GateTPSRatio, g.TPSRatio, ratio(c.TPS, b.TPS), ">=", min(c.TPSN, b.TPSN),
		fmt.Sprintf("candidate median %.1f tokens/s (%d) / live %.1f (%d)", c.TPS, c.TPSN, b.TPS, b.TPSN))
	mm := 0.0
	if in.Pairs > 0 {
		mm = float64(in.Mismatches) / float64(in.Pairs)
	}
	add(GateShadowMismatch, g.ShadowMismatch, mm, "<=", in.Pairs, fmt.Sprintf("%d of %d deterministic shadow pairs answered different text", in.Mismatches, in.Pairs))
	if in.SyntheticExpected > 0 {
		pr := 0.0
		if in.SyntheticRun > 0 {
			pr = float64(in.SyntheticPassed) / float64(in.SyntheticRun)
		}
		cfg := g.Synthetic
		cfg.MinSamples = max(cfg.MinSamples, in.SyntheticExpected)
		add(GateSynthetic, cfg, pr, ">=", in.SyntheticRun, fmt.Sprintf("%d of %d synthetic requests passed (suite: %d)", in.SyntheticPassed, in.SyntheticRun, in.SyntheticExpected))
	}
	return out
}

// ratio is a/b, 0 when either is unknown.
func ratio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

func round(v float64) float64 { return float64(int64(v*10000+0.5)) / 10000 }

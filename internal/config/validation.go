package config

import (
	"fmt"
	"math"
	"os"
	"time"
)

// Validation configures the validating phase (between warming and ready)
// and the post-promotion window. The phase runs when shadow traffic or a
// synthetic suite is configured.
type Validation struct {
	// Deadline bounds validating; at it the deployment fails, naming the
	// gates that failed or lacked samples. Default 10m.
	Deadline Duration `yaml:"deadline"`
	// Interval between evaluations of the gates. Default 5s.
	Interval Duration `yaml:"interval"`
	// MinDuration is the least time validating lasts. Default 0.
	MinDuration Duration `yaml:"min_duration"`
	// FailureLimit is how many consecutive failing evaluations of one gate
	// fail the deployment, so that one noisy measurement does not. Default 3.
	FailureLimit int `yaml:"failure_limit"`
	// Shadow mirrors live traffic to the candidate.
	Shadow Shadow `yaml:"shadow"`
	// Synthetic is a suite file (see docs/synthetic.md) run against the
	// candidate's replicas. Empty: none.
	Synthetic string `yaml:"synthetic"`
	// Gates are the thresholds.
	Gates ValidationGates `yaml:"gates"`
	// PostPromotion holds the new live pool to the gates for this long
	// after the promotion, against the baseline recorded while validating;
	// a failure rolls back automatically. Default 0: off.
	PostPromotion Duration `yaml:"post_promotion"`
}

// Shadow configures request mirroring.
type Shadow struct {
	// Percent of live requests copied to the candidate, 0..100. 0: off.
	Percent float64 `yaml:"percent"`
	// MaxBodyBytes: larger request bodies are not mirrored (counted).
	// Default 1 MiB.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// Queue bounds copies waiting; more are dropped (counted). Default 256.
	Queue int `yaml:"queue"`
	// Concurrency bounds copies in flight. Default 16.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one copy, stream included. Default 2m.
	Timeout Duration `yaml:"timeout"`
	// Priority is the CPU priority copies are sent at by cutover serve:
	// "idle" (default) from a helper process at idle priority, so that
	// they never take a core from live traffic; "normal" from the gateway's
	// own process.
	Priority string `yaml:"priority"`
}

// Shadow priorities (Shadow.Priority).
const (
	ShadowPriorityIdle   = "idle"
	ShadowPriorityNormal = "normal"
)

// ValidationGates holds every gate's settings.
type ValidationGates struct {
	ErrorRate      Gate `yaml:"error_rate"`
	LatencyRatio   Gate `yaml:"latency_p95_ratio"`
	TTFT           Gate `yaml:"ttft_p95_ms"`
	TTFTRatio      Gate `yaml:"ttft_p95_ratio"`
	TPSRatio       Gate `yaml:"tokens_per_second_ratio"`
	ShadowMismatch Gate `yaml:"shadow_mismatch_rate"`
	Synthetic      Gate `yaml:"synthetic_pass_rate"`
}

// Gate is one gate's settings.
type Gate struct {
	// Enabled turns the gate on.
	Enabled bool `yaml:"enabled"`
	// Threshold is the limit: a maximum for rates, ratios and times, a
	// minimum for tokens_per_second_ratio and synthetic_pass_rate.
	Threshold float64 `yaml:"threshold"`
	// MinSamples: with fewer, the gate is inconclusive, never a pass.
	MinSamples int `yaml:"min_samples"`
}

// Preview configures the preview listener.
type Preview struct {
	// Listen, when set, is an address whose requests go to the standby
	// (candidate) pool, so an operator or CI job can try the new version
	// before anyone else. Responses carry X-Cutover-Pool.
	Listen string `yaml:"listen"`
	// TLS, when its files are set, serves the preview listener over TLS.
	TLS TLS `yaml:"tls"`
}

func defaultValidation() Validation {
	return Validation{
		Deadline:     Duration(10 * time.Minute),
		Interval:     Duration(5 * time.Second),
		FailureLimit: 3,
		Shadow: Shadow{MaxBodyBytes: 1 << 20, Queue: 256, Concurrency: 16, Timeout: Duration(2 * time.Minute),
			Priority: ShadowPriorityIdle},
		Gates: ValidationGates{
			ErrorRate:      Gate{Enabled: true, Threshold: 0.02, MinSamples: 20},
			LatencyRatio:   Gate{Enabled: true, Threshold: 1.5, MinSamples: 20},
			TTFT:           Gate{Enabled: false, Threshold: 2000, MinSamples: 10},
			TTFTRatio:      Gate{Enabled: true, Threshold: 1.5, MinSamples: 10},
			TPSRatio:       Gate{Enabled: true, Threshold: 0.7, MinSamples: 10},
			ShadowMismatch: Gate{Enabled: false, Threshold: 0.05, MinSamples: 10},
			Synthetic:      Gate{Enabled: true, Threshold: 1.0, MinSamples: 1},
		},
	}
}

// Enabled reports whether deployments go through the validating phase.
func (v *Validation) Enabled() bool { return v.Shadow.Percent > 0 || v.Synthetic != "" }

func (c *Config) validateValidation() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	v := &c.Validation
	if v.Deadline <= 0 {
		add("validation.deadline", "must be positive, got %s", v.Deadline)
	}
	if v.Interval <= 0 {
		add("validation.interval", "must be positive, got %s", v.Interval)
	}
	if v.MinDuration < 0 {
		add("validation.min_duration", "must not be negative, got %s", v.MinDuration)
	}
	if v.FailureLimit < 1 {
		add("validation.failure_limit", "must be at least 1, got %d", v.FailureLimit)
	}
	if v.PostPromotion < 0 {
		add("validation.post_promotion", "must not be negative, got %s", v.PostPromotion)
	}
	if v.PostPromotion > 0 && c.Driver != "" && c.Driver != "builtin" {
		add("validation.post_promotion", "the post-promotion window watches the traffic the gateway proxies; with driver %s the load balancer carries it, so set 0", c.Driver)
	}
	if v.PostPromotion > 0 && v.PostPromotion > c.Rollout.Retention {
		// The automatic rollback needs the old pool: retirement would end
		// the window early, silently.
		add("validation.post_promotion", "must not be longer than rollout.retention (%s), got %s: a failing gate rolls back to the retained pool", c.Rollout.Retention, v.PostPromotion)
	}
	s := &v.Shadow
	if !(s.Percent >= 0 && s.Percent <= 100) { // NaN too
		add("validation.shadow.percent", "must be between 0 and 100, got %g", s.Percent)
	}
	if s.Percent > 0 && c.Driver != "" && c.Driver != "builtin" {
		add("validation.shadow.percent", "shadow traffic needs driver: builtin (the gateway copies requests as it proxies them); with driver %s set it to 0 and use a synthetic suite", c.Driver)
	}
	if s.MaxBodyBytes < 0 {
		add("validation.shadow.max_body_bytes", "must not be negative, got %d", s.MaxBodyBytes)
	}
	if s.Queue < 1 {
		add("validation.shadow.queue", "must be at least 1, got %d", s.Queue)
	}
	if s.Concurrency < 1 {
		add("validation.shadow.concurrency", "must be at least 1, got %d", s.Concurrency)
	}
	if s.Timeout <= 0 {
		add("validation.shadow.timeout", "must be positive, got %s", s.Timeout)
	}
	if s.Priority != ShadowPriorityIdle && s.Priority != ShadowPriorityNormal {
		add("validation.shadow.priority", "must be %s or %s, got %q", ShadowPriorityIdle, ShadowPriorityNormal, s.Priority)
	}
	if v.Synthetic != "" {
		if _, err := os.Stat(v.Synthetic); err != nil {
			add("validation.synthetic", "suite file: %v", err)
		}
	}
	for key, g := range map[string]Gate{
		"error_rate": v.Gates.ErrorRate, "latency_p95_ratio": v.Gates.LatencyRatio, "ttft_p95_ms": v.Gates.TTFT,
		"ttft_p95_ratio": v.Gates.TTFTRatio, "tokens_per_second_ratio": v.Gates.TPSRatio,
		"shadow_mismatch_rate": v.Gates.ShadowMismatch, "synthetic_pass_rate": v.Gates.Synthetic,
	} {
		// A NaN fails every comparison and an infinity cannot be written
		// as JSON (the deployment record, the status): finite only.
		if !(g.Threshold >= 0) || math.IsInf(g.Threshold, 1) {
			add("validation.gates."+key+".threshold", "must be a finite number, not negative, got %g", g.Threshold)
		}
		if g.MinSamples < 0 {
			add("validation.gates."+key+".min_samples", "must not be negative, got %d", g.MinSamples)
		}
	}
	if c.Preview.Listen != "" {
		if listenClash(c.Preview.Listen, c.Listen) || listenClash(c.Preview.Listen, c.Admin.Listen) {
			add("preview.listen", "%q takes the same address as listen or admin.listen", c.Preview.Listen)
		}
	}
	return errs
}

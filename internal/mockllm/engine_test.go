package mockllm

import (
	"testing"
	"time"
)

// TestComputeTimelineSharesOneReplica: with MaxBatchedTokens, a replica's
// prefills run one after another, and a decoding sequence's token due
// during a prefill comes at the end of the step in progress (a chunk of
// the budget, or the prefill's end).
func TestComputeTimelineSharesOneReplica(t *testing.T) {
	ms := time.Millisecond
	s, err := New(Config{Model: testModel, TTFT: 5 * ms, ITL: 10 * ms, PrefillPerToken: ms / 10, MaxBatchedTokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	// A 1600-token prompt at t0: 160 ms of prefill, steps of 100 ms.
	if got := s.prefillWait(t0, 1600); got != 165*ms {
		t.Fatalf("first prompt: TTFT %v, want 165ms", got)
	}
	// A short prompt 20 ms later waits for it: its prefill starts at 160.
	if got := s.prefillWait(at(20*ms), 50); got != (160-20+5+5)*ms {
		t.Fatalf("second prompt: TTFT %v, want 150ms", got)
	}
	for _, tc := range []struct {
		name string
		now  time.Duration
		want time.Duration // the wait for one token from now
	}{
		{"due in the first step: at its end", 30 * ms, 70 * ms},
		{"due in the last chunk: at the prefill's end", 120 * ms, 40 * ms},
		{"due in the short prefill's step", 155 * ms, 10 * ms},
		{"no prefill by then", 170 * ms, 10 * ms},
	} {
		if got := s.decodeWait(at(tc.now), 1); got != tc.want {
			t.Errorf("%s: decodeWait at %v = %v, want %v", tc.name, tc.now, got, tc.want)
		}
	}
	// Later, with everything done, a prompt starts at once.
	if got := s.prefillWait(at(time.Second), 100); got != 15*ms {
		t.Fatalf("idle: TTFT %v, want 15ms", got)
	}
	if n := len(s.compute.res); n != 1 {
		t.Fatalf("%d prefills booked, want the ended ones dropped", n)
	}
}

// TestPrefillsSideBySideWithoutBudget: without MaxBatchedTokens each
// prefill runs on its own, as before.
func TestPrefillsSideBySideWithoutBudget(t *testing.T) {
	ms := time.Millisecond
	s, err := New(Config{Model: testModel, TTFT: 5 * ms, ITL: 10 * ms, PrefillPerToken: ms / 10})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	for range 3 {
		if got := s.prefillWait(t0, 1600); got != 165*ms {
			t.Fatalf("TTFT %v, want 165ms for every prompt", got)
		}
	}
	if got := s.decodeWait(t0, 2); got != 20*ms {
		t.Fatalf("decodeWait %v, want 20ms", got)
	}
}

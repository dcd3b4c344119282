package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestCutoverUnderLoad promotes and rolls back while 200 clients send short
// requests and multi-second streams. Nothing may fail, every stream must
// end with [DONE] and intact text from the pool that started it, and every
// request that starts after a switch returned must land on the new pool.
func TestCutoverUnderLoad(t *testing.T) {
	const (
		clients      = 200
		streamTokens = 30
		shortTokens  = 4
	)
	e := newEnv(t, envOptions{
		modelName: "llama",
		mock:      mockllm.Config{ITL: 100 * time.Millisecond, Tokens: streamTokens}, // streams last ~3 s
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type record struct {
		start  time.Time
		stream bool
		res    result
		err    error
	}
	var (
		mu       sync.Mutex
		records  []record
		stopping atomic.Bool
		started  atomic.Int64 // requests begun
		wg       sync.WaitGroup
	)
	for i := range clients {
		wg.Go(func() {
			for n := 0; !stopping.Load() && n < 1000; n++ {
				stream := (i+n)%4 == 0
				prompt := fmt.Sprintf("client %d request %d", i, n)
				extra := fmt.Sprintf(`,"max_tokens":%d`, shortTokens)
				if stream {
					extra = `,"stream_options":{"include_usage":true}`
				}
				rec := record{start: time.Now(), stream: stream}
				started.Add(1)
				rec.res, rec.err = e.chat(ctx, "llama", prompt, stream, extra)
				if rec.err == nil && rec.res.status == 200 {
					want := mockllm.Answer(testModels[rec.res.pool], prompt, map[bool]int{true: streamTokens, false: shortTokens}[stream])
					if rec.res.text != want {
						rec.err = fmt.Errorf("text from %s = %q, want %q", rec.res.pool, rec.res.text, want)
					}
					if rec.res.model != testModels[rec.res.pool] {
						rec.err = fmt.Errorf("model %q from pool %s, want %q", rec.res.model, rec.res.pool, testModels[rec.res.pool])
					}
				}
				mu.Lock()
				records = append(records, rec)
				mu.Unlock()
			}
		})
	}
	// countAfter counts finished requests that started after t0.
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
	inFlight := func(pool string) bool {
		return e.gw.Controller().Status().Pools[pool].InFlight > 0
	}
	waitFor(t, "load on blue", 30*time.Second, func() bool { return countAfter(time.Time{}) >= clients && inFlight("blue") })

	promoted := time.Now()
	res, err := e.admin.Promote(ctx)
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	promotedReturned := time.Now()
	if res.Live != "green" {
		t.Fatalf("promote made %s live", res.Live)
	}
	if !inFlight("blue") {
		t.Error("no stream was in flight on blue during the promote: the test proves nothing")
	}
	waitFor(t, "requests after promote", 30*time.Second, func() bool { return countAfter(promotedReturned) >= clients && inFlight("green") })

	rolledBack := time.Now()
	if _, err := e.admin.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	rollbackReturned := time.Now()
	waitFor(t, "requests after rollback", 30*time.Second, func() bool { return countAfter(rollbackReturned) >= clients })
	stopping.Store(true)
	wg.Wait()

	var failed, streams, crossed int
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
		switch {
		case r.start.After(promotedReturned) && r.start.Before(rolledBack) && r.res.pool != "green":
			t.Errorf("request started %s after promote returned went to %s", r.start.Sub(promotedReturned), r.res.pool)
		case r.start.After(rollbackReturned) && r.res.pool != "blue":
			t.Errorf("request started %s after rollback returned went to %s", r.start.Sub(rollbackReturned), r.res.pool)
		case r.start.Before(promoted) && r.res.pool != "blue":
			t.Errorf("request started before promote went to %s", r.res.pool)
		}
		if r.stream && r.start.Before(promoted) && r.res.pool == "blue" {
			crossed++ // a blue stream that may have spanned the promote
		}
	}
	t.Logf("%d requests (%d streams), %d failed; %d streams started on blue before the promote", len(records), streams, failed, crossed)
	if failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, len(records))
	}
	st := e.gw.Controller().Status()
	if st.Live != "blue" || st.Revision != 3 {
		t.Errorf("after promote+rollback: live %s revision %d, want blue 3", st.Live, st.Revision)
	}
}

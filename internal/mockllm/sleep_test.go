package mockllm

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const sleepChatBody = `{"model":"test-model","messages":[{"role":"user","content":"hello there"}]}`

func isSleeping(t *testing.T, base string) bool {
	t.Helper()
	code, _, body := do(t, "GET", base+"/is_sleeping", "")
	if code != 200 {
		t.Fatalf("GET /is_sleeping: %d %s", code, body)
	}
	var v struct {
		IsSleeping *bool `json:"is_sleeping"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.IsSleeping == nil {
		t.Fatalf("GET /is_sleeping body %q: %v", body, err)
	}
	return *v.IsSleeping
}

func chatContent(t *testing.T, base string) string {
	t.Helper()
	code, _, body := do(t, "POST", base+"/v1/chat/completions", sleepChatBody)
	if code != 200 {
		t.Fatalf("chat: %d %s", code, body)
	}
	var v struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || len(v.Choices) != 1 {
		t.Fatalf("chat body %q: %v", body, err)
	}
	return v.Choices[0].Message.Content
}

func TestSleepRoutesAbsentWithoutDevMode(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  SleepConfig
	}{
		{"off", SleepConfig{}},
		{"enabled without dev mode", SleepConfig{Enabled: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ts := newTestServer(t, Config{Sleep: c.cfg})
			for _, r := range [][2]string{{"POST", "/sleep"}, {"POST", "/wake_up"}, {"GET", "/is_sleeping"},
				{"POST", "/collective_rpc"}, {"POST", "/reset_prefix_cache"}} {
				if code, _, body := do(t, r[0], ts.URL+r[1], ""); code != 404 {
					t.Errorf("%s %s = %d %s, want 404", r[0], r[1], code, body)
				}
			}
		})
	}
}

func TestSleepWithoutEnableSleepMode(t *testing.T) {
	_, ts := newTestServer(t, Config{Sleep: SleepConfig{DevMode: true}})
	if isSleeping(t, ts.URL) {
		t.Fatal("is_sleeping true before any sleep")
	}
	code, _, body := do(t, "POST", ts.URL+"/sleep?level=1", "")
	if code != 500 || !strings.Contains(body, "--enable-sleep-mode") {
		t.Fatalf("POST /sleep without --enable-sleep-mode = %d %s, want 500 naming the flag", code, body)
	}
	if got := chatContent(t, ts.URL); got == "" {
		t.Fatal("empty answer")
	}
}

func TestSleepLevel1RefusesCompletionsThenWakes(t *testing.T) {
	_, ts := newTestServer(t, Config{Sleep: SleepConfig{Enabled: true, DevMode: true}})
	before := chatContent(t, ts.URL)
	if code, _, body := do(t, "POST", ts.URL+"/sleep?level=1", ""); code != 200 || body != "" {
		t.Fatalf("POST /sleep = %d %q, want 200 and an empty body", code, body)
	}
	if !isSleeping(t, ts.URL) {
		t.Fatal("is_sleeping false after /sleep")
	}
	for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
		code, _, body := do(t, "POST", ts.URL+path, sleepChatBody)
		if code != 503 || !strings.Contains(body, `"type":"ModelSleepingError"`) || !strings.Contains(body, `"code":503`) {
			t.Errorf("POST %s asleep = %d %s, want 503 ModelSleepingError", path, code, body)
		}
	}
	for _, path := range []string{"/health", "/v1/models", "/metrics"} {
		if code, _, body := do(t, "GET", ts.URL+path, ""); code != 200 {
			t.Errorf("GET %s asleep = %d %s, want 200", path, code, body)
		}
	}
	if code, _, _ := do(t, "POST", ts.URL+"/sleep", ""); code != 200 {
		t.Fatalf("second /sleep = %d, want 200 (no-op)", code)
	}
	if code, _, body := do(t, "POST", ts.URL+"/wake_up", ""); code != 200 || body != "" {
		t.Fatalf("POST /wake_up = %d %q", code, body)
	}
	if isSleeping(t, ts.URL) {
		t.Fatal("is_sleeping true after /wake_up")
	}
	if after := chatContent(t, ts.URL); after != before {
		t.Fatalf("level 1 woken answer %q, want the same as before sleeping %q", after, before)
	}
}

func TestSleepLevel2NeedsReloadWeights(t *testing.T) {
	s, ts := newTestServer(t, Config{Sleep: SleepConfig{Enabled: true, DevMode: true}})
	right := chatContent(t, ts.URL)

	t.Run("wake without reload gives wrong text", func(t *testing.T) {
		do(t, "POST", ts.URL+"/sleep?level=2", "")
		do(t, "POST", ts.URL+"/wake_up", "")
		if got := chatContent(t, ts.URL); got == right {
			t.Fatalf("level 2 woken without reload_weights answers the right text %q", got)
		}
		if !s.SleepStats().Garbage {
			t.Fatal("SleepStats.Garbage false")
		}
	})
	t.Run("documented sequence", func(t *testing.T) {
		do(t, "POST", ts.URL+"/sleep?level=2", "")
		code, _, body := do(t, "POST", ts.URL+"/collective_rpc", `{"method":"reload_weights"}`)
		if code != 500 {
			t.Fatalf("reload_weights with weights asleep = %d %s, want 500", code, body)
		}
		if code, _, _ := do(t, "POST", ts.URL+"/wake_up?tags=weights", ""); code != 200 {
			t.Fatalf("wake weights = %d", code)
		}
		if !isSleeping(t, ts.URL) {
			t.Fatal("is_sleeping false with kv_cache still asleep")
		}
		if code, _, body = do(t, "POST", ts.URL+"/collective_rpc", `{"method":"reload_weights"}`); code != 200 || body != `{"results":[null]}` {
			t.Fatalf("reload_weights = %d %s", code, body)
		}
		if code, _, _ := do(t, "POST", ts.URL+"/wake_up?tags=kv_cache", ""); code != 200 {
			t.Fatalf("wake kv_cache = %d", code)
		}
		if code, _, _ := do(t, "POST", ts.URL+"/reset_prefix_cache", ""); code != 200 {
			t.Fatalf("reset_prefix_cache = %d", code)
		}
		if isSleeping(t, ts.URL) {
			t.Fatal("still sleeping")
		}
		if got := chatContent(t, ts.URL); got != right {
			t.Fatalf("after the documented sequence answer %q, want %q", got, right)
		}
		if st := s.SleepStats(); st.Garbage || st.Level != 2 || st.PrefixCacheResets != 1 {
			t.Fatalf("SleepStats = %+v", st)
		}
	})
}

func TestSleepBadParams(t *testing.T) {
	_, ts := newTestServer(t, Config{Sleep: SleepConfig{Enabled: true, DevMode: true}})
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/sleep?level=3", ""},
		{"POST", "/sleep?mode=later", ""},
		{"POST", "/wake_up?tags=everything", ""},
		{"POST", "/collective_rpc", `not json`},
	} {
		if code, _, body := do(t, c.method, ts.URL+c.path, c.body); code != 400 {
			t.Errorf("%s %s = %d %s, want 400", c.method, c.path, code, body)
		}
	}
	if code, _, _ := do(t, "GET", ts.URL+"/sleep", ""); code != 405 {
		t.Errorf("GET /sleep = %d, want 405", code)
	}
	if isSleeping(t, ts.URL) {
		t.Fatal("a refused /sleep put the server to sleep")
	}
}

// startStream opens a slow stream and returns its body once the first
// bytes arrived.
func startStream(t *testing.T, base string) io.ReadCloser {
	t.Helper()
	body := `{"model":"test-model","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"hi"}]}`
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("stream status %d", resp.StatusCode)
	}
	buf := make([]byte, 1)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp.Body
}

func TestSleepModes(t *testing.T) {
	t.Run("abort cuts the stream in flight", func(t *testing.T) {
		_, ts := newTestServer(t, Config{Tokens: 200, ITL: 20 * time.Millisecond, Sleep: SleepConfig{Enabled: true, DevMode: true}})
		stream := startStream(t, ts.URL)
		if code, _, _ := do(t, "POST", ts.URL+"/sleep?level=1&mode=abort", ""); code != 200 {
			t.Fatalf("sleep = %d", code)
		}
		rest, _ := io.ReadAll(stream)
		if strings.Contains(string(rest), "[DONE]") {
			t.Fatal("stream finished with [DONE] although the sleep aborted it")
		}
	})
	t.Run("wait lets the stream finish", func(t *testing.T) {
		_, ts := newTestServer(t, Config{Tokens: 20, ITL: 5 * time.Millisecond, Sleep: SleepConfig{Enabled: true, DevMode: true}})
		stream := startStream(t, ts.URL)
		done := make(chan string, 1)
		go func() {
			rest, _ := io.ReadAll(stream)
			done <- string(rest)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if code, _, _ := doCtx(t, ctx, "POST", ts.URL+"/sleep?mode=wait", ""); code != 200 {
			t.Fatalf("sleep = %d", code)
		}
		if rest := <-done; !strings.Contains(rest, "[DONE]") {
			t.Fatalf("stream cut by a sleep with mode=wait: %q", rest)
		}
	})
}

func TestSleepDelays(t *testing.T) {
	// Not a timing goal: the delays must at least elapse.
	_, ts := newTestServer(t, Config{Sleep: SleepConfig{Enabled: true, DevMode: true,
		SleepDelay: 30 * time.Millisecond, WakeDelay: 40 * time.Millisecond}})
	t0 := time.Now()
	do(t, "POST", ts.URL+"/sleep", "")
	if d := time.Since(t0); d < 30*time.Millisecond {
		t.Fatalf("sleep took %v, want at least the sleep delay", d)
	}
	t0 = time.Now()
	do(t, "POST", ts.URL+"/wake_up", "")
	if d := time.Since(t0); d < 40*time.Millisecond {
		t.Fatalf("wake took %v, want at least the wake delay", d)
	}
	if _, err := New(Config{Model: "m", Sleep: SleepConfig{WakeDelay: -1}}); err == nil {
		t.Fatal("negative WakeDelay accepted")
	}
}

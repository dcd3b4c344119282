package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// awaitStatus polls url until the process answers, then returns its status.
func awaitStatus(t *testing.T, p *proc, method, url string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: no answer: %v; output:\n%s", method, url, err, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMockLLMSleepModeNeedsDevModeEnv(t *testing.T) {
	for _, c := range []struct {
		name string
		env  []string
		want int
	}{
		{"without VLLM_SERVER_DEV_MODE", []string{"VLLM_SERVER_DEV_MODE=0"}, http.StatusNotFound},
		{"with VLLM_SERVER_DEV_MODE=1", []string{"VLLM_SERVER_DEV_MODE=1"}, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := freeAddr(t)
			p := start(t, c.env, "mock-llm", "--model", "m", "--listen", addr, "--enable-sleep-mode", "--wake-delay", "1ms")
			if got := awaitStatus(t, p, "POST", "http://"+addr+"/sleep?level=1"); got != c.want {
				t.Fatalf("POST /sleep = %d, want %d", got, c.want)
			}
			if c.want != http.StatusOK {
				return
			}
			resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"x"}]}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("completion asleep = %d, want 503", resp.StatusCode)
			}
		})
	}
}

func TestMockLLMHelpNamesSleepFlags(t *testing.T) {
	code, out, _ := runCLI(t, nil, "mock-llm", "--help")
	for _, want := range []string{"--enable-sleep-mode", "--wake-delay", "--load-delay", "--sleep-delay", "VLLM_SERVER_DEV_MODE"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("mock-llm --help (exit %d) lacks %q", code, want)
		}
	}
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/agent"
)

// TestAgentBackoff: an agent that does not answer is checked again after
// 1s, doubling, at most every 30s.
func TestAgentBackoff(t *testing.T) {
	for _, tc := range []struct {
		fails int
		want  time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 16 * time.Second}, {6, 30 * time.Second}, {50, 30 * time.Second}} {
		if got := agentBackoff(tc.fails); got != tc.want {
			t.Errorf("after %d failed checks: next in %s, want %s", tc.fails, got, tc.want)
		}
	}
}

// TestPlaceSaysWhenNoAgentAnswers: when no agent answers (a wrong token
// on every one, say), placing replicas says so with their answers, not
// "not enough free GPUs".
func TestPlaceSaysWhenNoAgentAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":{"message":"invalid token","type":"auth","code":"unauthorized"}}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	c, err := agent.NewClient("gpu-a", srv.URL, "wrong", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	l := &agentLauncher{clients: []*agent.Client{c}, gpus: 1}
	_, err = l.place(context.Background(), 2)
	if err == nil || !strings.Contains(err.Error(), "no agent answered") || !strings.Contains(err.Error(), "401") || errors.Is(err, agent.ErrNoCapacity) {
		t.Fatalf("place with every agent refusing the token: %v", err)
	}
}

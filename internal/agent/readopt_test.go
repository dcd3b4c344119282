package agent

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cutover-dev/cutover/internal/freeport"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runAgentProcess starts `cutover agent --config path` and waits for its API.
func runAgentProcess(t *testing.T, path, base string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, "agent", "--config", path)
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/v1/replicas")
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not answering: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentReadoptsAfterKill9(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(testToken), 0o600); err != nil {
		t.Fatal(err)
	}
	listen, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"listen": listen, "token_file": tok, "gpus": "4", "ports": portRange(t),
		"command": mockCommand(), "env": map[string]string{"VLLM_SERVER_DEV_MODE": "1"},
		"log_dir": filepath.Join(dir, "logs"), "stop_grace": "5s",
	}
	b, _ := yaml.Marshal(cfg)
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	base := "http://" + listen

	first := runAgentProcess(t, path, base)
	var r1, r2 Replica
	apiCall(t, base, "POST", "/v1/replicas", `{"model":"m","gpus":2}`, &r1)
	apiCall(t, base, "POST", "/v1/replicas", `{"model":"m","gpus":1}`, &r2)
	awaitReplica(t, base, r1.ID, "running", stateIs(StateRunning))
	awaitReplica(t, base, r2.ID, "running", stateIs(StateRunning))
	t.Cleanup(func() {
		_ = syscall.Kill(-r1.PID, syscall.SIGKILL)
		_ = syscall.Kill(-r2.PID, syscall.SIGKILL)
	})
	if code := apiCall(t, base, "POST", "/v1/replicas/"+r1.ID+"/sleep", "", nil); code != 200 {
		t.Fatalf("sleep = %d", code)
	}

	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The replicas outlive the agent.
	if code, _ := chat(t, r2.URL, "m"); code != 200 {
		t.Fatalf("replica after the agent's kill -9: %d", code)
	}
	// While the agent is down, r2 crashes: its GPU must come back.
	if err := syscall.Kill(r2.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(r2.PID, 0) {
		if time.Now().After(deadline) {
			t.Fatal("r2 did not die")
		}
		time.Sleep(10 * time.Millisecond)
	}

	runAgentProcess(t, path, base)
	got := awaitReplica(t, base, r1.ID, "re-adopted", func(r Replica) bool { return r.Adopted })
	if got.State != StateSleeping || got.PID != r1.PID || !slices.Equal(got.GPUs, []int{0, 1}) {
		t.Fatalf("re-adopted %+v, want sleeping, pid %d, GPUs 0-1", got, r1.PID)
	}
	gone := awaitReplica(t, base, r2.ID, "exited", stateIs(StateExited))
	if !strings.Contains(gone.ExitReason, "agent was down") {
		t.Fatalf("r2 %+v, want exited while the agent was down", gone)
	}
	if l := ledger(t, base); !slices.Equal(l, []string{r1.ID, r1.ID, "", ""}) {
		t.Fatalf("ledger after restart %v, want GPUs 0-1 held by %s and the rest free", l, r1.ID)
	}
	// No double booking: 3 GPUs are not free.
	if code := apiCall(t, base, "POST", "/v1/replicas", `{"model":"m","gpus":3}`, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("start on 3 GPUs with 2 free = %d, want 503", code)
	}
	var w Replica
	if code := apiCall(t, base, "POST", "/v1/replicas/"+r1.ID+"/wake", "", &w); code != 200 || w.State != StateRunning {
		t.Fatalf("wake the adopted replica = %d %+v", code, w)
	}
	var s Replica
	if code := apiCall(t, base, "POST", "/v1/replicas/"+r1.ID+"/stop", "", &s); code != 200 || s.State != StateExited {
		t.Fatalf("stop the adopted replica = %d %+v", code, s)
	}
	if alive(r1.PID, 0) {
		t.Fatalf("adopted replica %d alive after stop", r1.PID)
	}
	if l := ledger(t, base); !slices.Equal(l, []string{"", "", "", ""}) {
		t.Fatalf("ledger at the end %v, want all free", l)
	}
}

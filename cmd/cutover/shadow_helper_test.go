//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// TestServeSendsCopiesFromIdleHelper: cutover serve with shadow traffic
// starts cutover shadow-helper, every thread of which runs at SCHED_IDLE,
// and the copies reach the candidate through it; the status counts them.
// With validation.shadow.priority: normal there is no helper and the
// gateway sends the copies itself.
func TestServeSendsCopiesFromIdleHelper(t *testing.T) {
	for _, priority := range []string{"idle", "normal"} {
		t.Run(priority, func(t *testing.T) { testServeShadow(t, priority) })
	}
}

func testServeShadow(t *testing.T, priority string) {
	cand, err := mockllm.New(mockllm.Config{Model: "model-v2", Tokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	var copies atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			copies.Add(1)
		}
		cand.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := serveConfig{listen: freeAddr(t), admin: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: nil,
		extra: "rollout:\n  warmup:\n    requests: []\nvalidation:\n  shadow:\n    percent: 100\n    priority: " + priority +
			"\n  min_duration: 1h\n  deadline: 2h\n"}
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	admin := &api.Client{BaseURL: "http://" + c.admin, Token: "secret"}
	waitAdmin(t, p, admin)
	ctx := context.Background()
	if _, err := admin.Deploy(ctx, api.DeployRequest{Model: "model-v2", Replicas: []string{srv.URL}}); err != nil {
		t.Fatal(err)
	}
	body := `{"model":"llama","messages":[{"role":"user","content":"hi"}]}`
	for i := 0; copies.Load() == 0; i++ {
		if i == 3000 {
			t.Fatalf("no copy reached the candidate after %d live requests; log:\n%s", i, p.stderr)
		}
		resp, err := http.Post("http://"+c.listen+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("live request %d: %s", i, resp.Status)
		}
		time.Sleep(10 * time.Millisecond) // a request every 10 ms while the deployment reaches validating
	}
	helper := helperOf(t, p.cmd.Process.Pid)
	if priority == "normal" {
		if helper != 0 {
			t.Errorf("shadow helper %d runs with priority normal", helper)
		}
	} else if helper == 0 {
		t.Errorf("no shadow-helper child of %d", p.cmd.Process.Pid)
	} else {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", helper))
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			a, err := unix.SchedGetAttr(tid, 0)
			if err != nil || a.Policy != unix.SCHED_IDLE {
				t.Errorf("shadow helper %d thread %d: policy %+v %v, want SCHED_IDLE (%d)", helper, tid, a, err, unix.SCHED_IDLE)
			}
		}
	}
	// A copy counts as sent once its answer is back.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := admin.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Shadow != nil && st.Shadow.Sent > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status shadow %+v, want copies sent", st.Shadow)
		}
	}
}

// helperOf returns the pid of the cutover shadow-helper process that
// parent started, 0 if there is none.
func helperOf(t *testing.T, parent int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, not ")".
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "shadow-helper") {
			return pid
		}
	}
	return 0
}

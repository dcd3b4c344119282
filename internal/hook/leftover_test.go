//go:build linux

package hook

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunIDAndTrace: a command hook gets CUTOVER_HOOK_RUN_ID, and the
// trace learns its process group (the hook's own pid) while it runs.
func TestRunIDAndTrace(t *testing.T) {
	p := payload
	p.RunID = "d-3.on_retire"
	var pgid int
	ctx := WithTrace(context.Background(), &Trace{Started: func(g int) { pgid = g }})
	o := (&Runner{}).Run(ctx, Spec{Command: []string{"sh", "-c", `echo "$CUTOVER_HOOK_RUN_ID $$"`}}, p)
	if !o.OK {
		t.Fatalf("outcome %+v", o)
	}
	if want := "d-3.on_retire " + strconv.Itoa(pgid); pgid <= 1 || o.Output != want {
		t.Fatalf("output %q, traced group %d; want %q", o.Output, pgid, want)
	}
}

// startGroup starts argv as the leader of a new process group with the
// hook run id runID in its environment, as a hook left behind by a
// killed cutover looks, and reaps it when it ends.
func startGroup(t *testing.T, runID string, argv ...string) int {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), RunIDEnv+"="+runID)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	// Wait until the group has its two processes (sh and its sleep).
	for i := 0; len(groupMembers(cmd.Process.Pid)) < 2; i++ {
		if i == 3000 {
			t.Fatalf("process group %d never had two processes", cmd.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd.Process.Pid
}

// TestEndLeftover: a leftover hook's process group, children included, is
// ended (SIGTERM, then SIGKILL for one that ignores it), and a group that
// does not carry the run id is left alone.
func TestEndLeftover(t *testing.T) {
	cases := []struct {
		name, script string
	}{
		{"stops on SIGTERM", "sleep 60 & wait"},
		{"ignores SIGTERM", `trap "" TERM; sleep 60 & wait`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pgid := startGroup(t, "d-1.on_retire.r5", "sh", "-c", tc.script)
			found, err := EndLeftover(context.Background(), pgid, "d-1.on_retire.r9", time.Second)
			if found || err != nil || len(groupMembers(pgid)) != 2 {
				t.Fatalf("EndLeftover with another run id: found %v, err %v, members %v; want the group left alone", found, err, groupMembers(pgid))
			}
			found, err = EndLeftover(context.Background(), pgid, "d-1.on_retire.r5", 200*time.Millisecond)
			if !found || err != nil {
				t.Fatalf("EndLeftover: found %v, err %v; want the group found and ended", found, err)
			}
			if m := groupMembers(pgid); len(m) != 0 {
				t.Fatalf("process group %d still has %v", pgid, m)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	state, pgrp, ok := parseStat([]byte("123 (a) b (c)) S 1 456 456 0 -1"))
	if !ok || state != 'S' || pgrp != 456 {
		t.Fatalf("parseStat = %c %d %v", state, pgrp, ok)
	}
	if _, _, ok := parseStat([]byte(strings.Repeat("x", 10))); ok {
		t.Fatal("parseStat accepted garbage")
	}
}

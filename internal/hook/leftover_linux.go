//go:build linux

package hook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EndLeftover ends process group pgid if it still runs hook run runID,
// left behind by a cutover that died (kill -9) while the hook ran: SIGTERM
// to the group, then SIGKILL once grace has passed. The group counts as
// the run's only when one of its live processes carries RunIDEnv=runID in
// its environment, so a group id reused since by something else is left
// alone. It returns whether such a group was found, and an error if it
// could not be ended.
func EndLeftover(ctx context.Context, pgid int, runID string, grace time.Duration) (bool, error) {
	if pgid <= 1 || runID == "" {
		return false, nil
	}
	members := groupMembers(pgid)
	if !carriesRun(members, runID) {
		return false, nil
	}
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, fmt.Errorf("signal process group %d: %w", pgid, err)
	}
	if waitGone(ctx, pgid, grace) {
		return true, nil
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	if waitGone(ctx, pgid, 5*time.Second) {
		return true, nil
	}
	return true, fmt.Errorf("process group %d (hook run %s) still has live processes %v after SIGKILL", pgid, runID, groupMembers(pgid))
}

// waitGone polls until group pgid has no live process, for up to d.
func waitGone(ctx context.Context, pgid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if len(groupMembers(pgid)) == 0 {
			return true
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling the kernel: nothing to wait on
	}
}

// groupMembers lists the live (not zombie) processes of group pgid.
func groupMembers(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		if state, pgrp, ok := parseStat(b); ok && pgrp == pgid && state != 'Z' && state != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

// parseStat reads the state and the process group from /proc/PID/stat:
// "pid (comm) state ppid pgrp ...", where comm may hold spaces and ')'.
func parseStat(b []byte) (state byte, pgrp int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pgrp, true
}

// carriesRun reports whether one of pids has RunIDEnv=runID in its
// environment.
func carriesRun(pids []int, runID string) bool {
	want := []byte(RunIDEnv + "=" + runID)
	for _, pid := range pids {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue
		}
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				return true
			}
		}
	}
	return false
}

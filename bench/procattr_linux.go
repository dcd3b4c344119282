package main

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts a child in its own process group and has the kernel kill
// it if the harness dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// idlePriority returns the command prefix that runs a child under the
// SCHED_IDLE policy (util-linux's chrt), or nil when chrt is missing.
func idlePriority() []string {
	p, err := exec.LookPath("chrt")
	if err != nil {
		return nil
	}
	return []string{p, "--idle", "0"}
}

//go:build unix

package hook

import (
	"os/exec"
	"syscall"
)

// ownGroup runs cmd in a process group of its own, and makes cancelling it
// (the hook's timeout) kill the whole group: whatever the hook started
// must not carry on after the hook was recorded as failed.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// groupOf is the process group of a started cmd: its own pid.
func groupOf(cmd *exec.Cmd) int { return cmd.Process.Pid }

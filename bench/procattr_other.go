//go:build !linux

package main

import "syscall"

// sysProcAttr puts a child in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// idlePriority returns nil: lowering a child's CPU priority is done only on
// Linux.
func idlePriority() []string { return nil }

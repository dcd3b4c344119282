//go:build !unix

package hook

import "os/exec"

// ownGroup leaves cmd as it is: process groups are a Unix matter, and
// cancelling kills the hook's own process only.
func ownGroup(*exec.Cmd) {}

// groupOf is 0: there are no process groups here.
func groupOf(*exec.Cmd) int { return 0 }

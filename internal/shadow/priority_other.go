//go:build !linux

package shadow

import "errors"

// IdlePriority is Linux-only: elsewhere the helper runs at the priority it
// was started with.
func IdlePriority() error { return errors.New("idle priority: not supported on this system") }

func schedIdle(int) (bool, error) { return false, errors.New("not supported") }

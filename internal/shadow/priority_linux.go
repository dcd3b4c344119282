package shadow

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// IdlePriority moves every thread of this process to the SCHED_IDLE
// policy: the kernel runs them only on a core nothing else wants. Threads
// started later inherit it. Lowering one's own priority needs no privilege.
func IdlePriority() error {
	// Twice: a thread the runtime started during the first pass was
	// cloned from one that may not have been moved yet.
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("idle priority: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
			if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("idle priority for thread %d: %w", tid, err)
			}
		}
	}
	return nil
}

// schedIdle reports whether thread tid runs at SCHED_IDLE (tests).
func schedIdle(tid int) (bool, error) {
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return false, fmt.Errorf("sched_getattr %d: %w", tid, err)
	}
	return a.Policy == unix.SCHED_IDLE, nil
}

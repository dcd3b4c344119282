//go:build unix

package store

import (
	"os"
	"syscall"
)

// unlock releases bbolt's flock on f. Closing f alone would not: the
// mapping bbolt made of the file keeps the lock alive.
func unlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

//go:build !unix

package store

import "os"

// unlock does nothing where bbolt does not lock with flock.
func unlock(*os.File) {}

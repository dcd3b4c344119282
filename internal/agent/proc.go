package agent

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStartTime returns the process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat), or 0 when unknown (no /proc).
func procStartTime(pid int) uint64 {
	_, start, ok := procStat(pid)
	if !ok {
		return 0
	}
	return start
}

// procStat reads a process's state letter and start time.
func procStat(pid int) (state byte, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	// The command name is in parentheses and may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, 0, false
	}
	f := strings.Fields(s[i+2:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// alive reports whether pid is the same live process that was recorded
// with start time start (0: not recorded). A zombie counts as gone.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, st, ok := procStat(pid)
	if !ok {
		// No /proc: fall back to signal 0.
		return syscall.Kill(pid, 0) == nil
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	return start == 0 || st == start
}

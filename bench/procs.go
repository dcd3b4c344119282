package main

// Child processes: start, stop, and their CPU time and memory read from /proc.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cutover-dev/cutover/internal/freeport"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (the kernel exports USER_HZ,
// not HZ, for exactly this reason).
const clockTicks = 100

// stopTimeout bounds a graceful stop before the process is killed.
const stopTimeout = 8 * time.Second

// proc is one child process the harness started. Its zero value is not
// usable; startProc returns one.
type proc struct {
	name string
	cmd  *exec.Cmd
	// pidFile holds the pid while the process runs, so that a harness killed
	// with -9 leaves a trace of what to stop.
	pidFile string
	// stopFn stops the process gracefully; nil means SIGTERM.
	stopFn func() error
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, set before done is closed
}

// startProc starts argv with its output in dir/name.log. The child gets its
// own process group (so that a terminal's Ctrl-C reaches only the harness,
// which stops it) and is killed by the kernel if the harness dies.
func startProc(dir, name string, argv, env []string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), pidFile: filepath.Join(dir, name+".pid")}
	_ = os.WriteFile(p.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *proc) logTail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, p.name+".log"))
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return strings.TrimSpace(string(b))
}

// stop ends the process: gracefully (stopFn, or SIGTERM), then, after
// stopTimeout, with SIGKILL to its process group, which holds only the
// process and the children it forked (nginx's workers).
func (p *proc) stop() error {
	if p.exited() {
		os.Remove(p.pidFile)
		return nil
	}
	var err error
	if p.stopFn != nil {
		err = p.stopFn()
	} else {
		err = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
		err = errors.Join(err, fmt.Errorf("stop %s (pid %d): killed after %s", p.name, p.pid(), stopTimeout))
	}
	// The group may still hold children that outlived their parent.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	os.Remove(p.pidFile)
	if err != nil {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	return nil
}

// procSet owns the processes of one scenario and stops them all, newest
// first. Its zero value is ready to use.
type procSet struct {
	mu    sync.Mutex
	procs []*proc // guarded by mu
}

// add registers p for stopAll.
func (s *procSet) add(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
}

// stopAll stops every registered process, newest first, and forgets them.
func (s *procSet) stopAll() error {
	s.mu.Lock()
	ps := s.procs
	s.procs = nil
	s.mu.Unlock()
	var errs []error
	for i := len(ps) - 1; i >= 0; i-- {
		if err := ps[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// procStat is what the harness reads from /proc/<pid>/stat.
type procStat struct {
	ppid  int
	ticks uint64 // utime + stime, in clockTicks
}

// readStat parses /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return parseStat(b)
}

// parseStat parses the text of /proc/<pid>/stat.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("stat %q: no ')'", b)
	}
	// After ")": state(3) ppid(4) ... utime(14) stime(15).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("stat %q: %d fields after the name, want 13 or more", b, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("stat %q: %w", b, err)
	}
	return procStat{ppid: ppid, ticks: ut + st}, nil
}

// readRSSKB returns VmRSS of pid in KiB.
func readRSSKB(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of pid %d: %w", pid, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// children returns the pids whose parent is pid, found by scanning /proc.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(c); err == nil && st.ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// group is the set of processes that count as one target: a process and,
// when withChildren, every process it forked (nginx's master and workers).
type group struct {
	root         int
	withChildren bool
}

// pids returns the group's live pids.
func (g group) pids() []int {
	if !g.withChildren {
		return []int{g.root}
	}
	return append([]int{g.root}, children(g.root)...)
}

// cpuSeconds returns the user+system CPU time used so far by the group's
// live processes. Workers that exited in between (an nginx reload) are lost,
// which is why measurements never span a reload.
func (g group) cpuSeconds() (float64, error) {
	var ticks uint64
	for _, pid := range g.pids() {
		st, err := readStat(pid)
		if err != nil {
			if pid == g.root {
				return 0, err
			}
			continue // a child that just exited
		}
		ticks += st.ticks
	}
	return float64(ticks) / clockTicks, nil
}

// rssKB returns the sum of VmRSS over the group. Pages shared between
// nginx's master and workers are counted once per process.
func (g group) rssKB() (uint64, error) {
	var sum uint64
	for _, pid := range g.pids() {
		kb, err := readRSSKB(pid)
		if err != nil {
			if pid == g.root {
				return 0, err
			}
			continue
		}
		sum += kb
	}
	return sum, nil
}

// raiseNoFile raises RLIMIT_NOFILE of the harness (and so of every child,
// which inherits it) to want, or to the hard limit when the harness may not
// raise that. It returns the soft limit in force afterwards.
func raiseNoFile(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return want, nil
		}
		// Not privileged: the hard limit is as far as we go.
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit NOFILE to %d: %w", lim.Cur, err)
	}
	return lim.Cur, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	return freeport.Pick() // below the ephemeral range: see package freeport
}

// freeAddr returns 127.0.0.1:<a free port>.
func freeAddr() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// lookTool finds a program in PATH or, for daemons that Debian installs
// there, in /usr/sbin and /sbin (not always in a non-root PATH).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /sbin (scripts/deps.sh installs it)", name)
}

// runTool runs a short command and returns its combined output.
func runTool(ctx context.Context, timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// cpuSnap is a reading of the machine's busy CPU time and of the part the
// harness and its descendants used, both in seconds.
type cpuSnap struct {
	at         time.Time
	busy, ours float64
}

// snapCPU reads /proc/stat and the harness's process tree. A descendant's
// cutime/cstime hold its reaped children, so a process that exits between
// two readings moves from one term to another without being lost.
func snapCPU() cpuSnap {
	s := cpuSnap{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f {
			if i == 0 || i == 4 || i == 5 || i > 8 { // name, idle, iowait, guest (already in user)
				continue
			}
			n, _ := strconv.ParseFloat(v, 64)
			s.busy += n / clockTicks
		}
	}
	parent := map[int]int{}
	total := map[int]float64{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
		for _, k := range f[11:15] { // utime stime cutime cstime
			n, _ := strconv.ParseFloat(k, 64)
			total[pid] += n / clockTicks
		}
	}
	self := os.Getpid()
	for pid := range total {
		for p, hops := pid, 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if p == self {
				s.ours += total[pid]
				break
			}
		}
	}
	return s
}

// otherCores returns how many CPUs, on average between a and b, processes
// outside the harness kept busy: the noise of a shared machine.
func otherCores(a, b cpuSnap) num {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return nan
	}
	return num(max(0, (b.busy-a.busy)-(b.ours-a.ours)) / wall)
}

// Package lbtest starts real nginx and HAProxy processes on 127.0.0.1 for
// tests, from the example configurations the repository ships
// (examples/nginx, examples/haproxy), so that the tests prove them.
package lbtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/freeport"
)

// Binary returns the path of program (nginx, haproxy). When it is not
// installed the test is skipped, unless the environment variable CI is
// set: there a missing load balancer fails the test.
func Binary(t testing.TB, program string) string {
	t.Helper()
	if p, err := exec.LookPath(program); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} { // Debian's place, often not on a user's PATH
		p := filepath.Join(dir, program)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed and CI is set: scripts/deps.sh installs it (apt-get install %s)", program, program)
	}
	t.Skipf("%s is not installed: run scripts/deps.sh (apt-get install %s) to run this test", program, program)
	return ""
}

// FreeAddr returns a 127.0.0.1 address nothing listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr() // below the ephemeral range: see package freeport
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// example reads examples/<name> and replaces each old string by its new
// one; every old string must occur exactly once, so that a change to the
// example that the tests no longer cover fails loudly here.
func example(t testing.TB, name string, oldnew ...string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(oldnew); i += 2 {
		if n := strings.Count(s, oldnew[i]); n != 1 {
			t.Fatalf("examples/%s: %q occurs %d times, want once", name, oldnew[i], n)
		}
		s = strings.Replace(s, oldnew[i], oldnew[i+1], 1)
	}
	return s
}

// tempDir returns a new directory removed at cleanup. Unlike t.TempDir its
// path is short and plain: HAProxy cannot parse a map path with the
// parentheses a subtest name may bring, and a unix socket path is limited
// to 107 bytes.
func tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cutover-lb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hostPort returns the host:port of replica URL raw.
func hostPort(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// proc is a load balancer process the test started and stops.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *output
}

// output collects a process's stdout and stderr.
type output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// start runs argv in the foreground, waits until addr accepts connections
// and registers a cleanup that stops it.
func start(t testing.TB, addr string, argv ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{}), out: &output{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", argv, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("%q exited at start: %s", argv, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q does not listen on %s after 10s: %v", argv, addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Nginx is an nginx master process (daemon off) running
// examples/nginx/nginx.conf, adapted to a temporary directory and port.
type Nginx struct {
	// Addr is the server's 127.0.0.1 address.
	Addr string
	// Dir holds the configuration, the pid file and the error log.
	Dir string
	// UpstreamFile is the file cutover owns.
	UpstreamFile string
	// Bin is the nginx binary.
	Bin string
	// Args are the -p/-c/-e flags every nginx command needs.
	Args []string
	proc *proc
}

// StartNginx starts nginx with the example configuration and the example
// bootstrap upstream file pointing at blue (two replica URLs). Directives
// in server are added to the example's server block. Files named
// extra*.conf in Dir are included inside http {}, so that a test can break
// the configuration.
func StartNginx(t testing.TB, blue []string, server ...string) *Nginx {
	t.Helper()
	bin := Binary(t, "nginx")
	if len(blue) != 2 {
		t.Fatalf("StartNginx wants 2 blue replicas, got %d", len(blue))
	}
	dir := tempDir(t)
	n := &Nginx{Addr: FreeAddr(t), Dir: dir, UpstreamFile: filepath.Join(dir, "upstream.conf"), Bin: bin}
	conf := filepath.Join(dir, "nginx.conf")
	n.Args = []string{"-p", dir + "/", "-c", conf, "-e", filepath.Join(dir, "error.log")}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	var temps strings.Builder
	for _, k := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", k, filepath.Join(dir, k))
	}
	writeFile(t, conf, example(t, "nginx/nginx.conf",
		"pid /run/nginx.pid;", fmt.Sprintf("pid %s;\nuser %s;", filepath.Join(dir, "nginx.pid"), u.Username),
		"error_log /var/log/nginx/error.log warn;", fmt.Sprintf("error_log %s notice;", filepath.Join(dir, "error.log")),
		"    access_log /var/log/nginx/llm-access.log;\n", "    access_log off;\n"+temps.String(),
		"include /etc/nginx/cutover/upstream.conf;", fmt.Sprintf("include %s;\n    include %s;", n.UpstreamFile, filepath.Join(dir, "extra*.conf")),
		"listen 127.0.0.1:8000;", fmt.Sprintf("listen %s;\n        %s", n.Addr, strings.Join(server, "\n        ")),
	))
	writeFile(t, n.UpstreamFile, example(t, "nginx/upstream.conf",
		"10.0.0.1:8000", hostPort(t, blue[0]), "10.0.0.2:8000", hostPort(t, blue[1])))
	n.proc = start(t, n.Addr, append([]string{bin, "-g", "daemon off;"}, n.Args...)...)
	return n
}

// Configure makes c drive this nginx.
func (n *Nginx) Configure(c *config.Config) {
	c.Driver = "nginx"
	c.Nginx.UpstreamFile = n.UpstreamFile
	c.Nginx.TestCommand = n.TestCommand()
	c.Nginx.ReloadCommand = n.ReloadCommand()
	c.Nginx.VerifyURL = "http://" + n.Addr + "/health"
}

// TestCommand is the argv of nginx -t for this nginx.
func (n *Nginx) TestCommand() []string { return append([]string{n.Bin, "-t", "-q"}, n.Args...) }

// ReloadCommand is the argv of nginx -s reload for this nginx.
func (n *Nginx) ReloadCommand() []string { return append([]string{n.Bin, "-s", "reload"}, n.Args...) }

// ErrorLog returns nginx's error log so far.
func (n *Nginx) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "error.log"))
	return string(b)
}

// Running reports whether the nginx master is still running.
func (n *Nginx) Running() bool {
	select {
	case <-n.proc.done:
		return false
	default:
		return true
	}
}

// HAProxy is an HAProxy process (foreground) running
// examples/haproxy/haproxy.cfg, adapted to a temporary directory, port and
// replicas.
type HAProxy struct {
	// Addr is the frontend's 127.0.0.1 address.
	Addr string
	// Dir holds the configuration, the map and the admin socket.
	Dir string
	// Socket is the admin socket's path.
	Socket string
	// MapFile is the map cutover owns.
	MapFile string
	// ConfigFile is the configuration HAProxy runs.
	ConfigFile string
	proc       *proc
}

// StartHAProxy starts HAProxy with the example configuration, blue and
// green being two replica URLs each, and the example bootstrap map (blue
// live).
func StartHAProxy(t testing.TB, blue, green []string) *HAProxy {
	t.Helper()
	bin := Binary(t, "haproxy")
	if len(blue) != 2 || len(green) != 2 {
		t.Fatalf("StartHAProxy wants 2 replicas per pool, got %d and %d", len(blue), len(green))
	}
	dir := tempDir(t)
	h := &HAProxy{Addr: FreeAddr(t), Dir: dir, Socket: filepath.Join(dir, "admin.sock"),
		MapFile: filepath.Join(dir, "cutover.map"), ConfigFile: filepath.Join(dir, "haproxy.cfg")}
	writeFile(t, h.ConfigFile, example(t, "haproxy/haproxy.cfg",
		"stats socket /run/haproxy/admin.sock", "stats socket "+h.Socket,
		"map(/etc/haproxy/cutover.map,blue)", fmt.Sprintf("map(%s,blue)", h.MapFile),
		"bind 127.0.0.1:8000", "bind "+h.Addr,
		"10.0.0.1:8000", hostPort(t, blue[0]), "10.0.0.2:8000", hostPort(t, blue[1]),
		"10.0.1.1:8000", hostPort(t, green[0]), "10.0.1.2:8000", hostPort(t, green[1]),
	))
	writeFile(t, h.MapFile, example(t, "haproxy/cutover.map"))
	h.proc = start(t, h.Addr, bin, "-db", "-f", h.ConfigFile)
	return h
}

// Configure makes c drive this HAProxy.
func (h *HAProxy) Configure(c *config.Config) {
	c.Driver = "haproxy"
	c.HAProxy.AdminSocket = h.Socket
	c.HAProxy.MapFile = h.MapFile
	c.HAProxy.ConfigFile = h.ConfigFile
	c.HAProxy.VerifyURL = "http://" + h.Addr + "/health"
}

// Output returns what HAProxy printed so far.
func (h *HAProxy) Output() string { return h.proc.out.String() }

// Command sends one Runtime API command to the admin socket and returns
// the answer.
func (h *HAProxy) Command(t testing.TB, cmd string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", h.Socket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// HideSocket makes the admin socket unreachable (renamed away) until the
// returned function puts it back.
func (h *HAProxy) HideSocket(t testing.TB) (restore func()) {
	t.Helper()
	away := h.Socket + ".away"
	if err := os.Rename(h.Socket, away); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Rename(away, h.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Error(err)
		}
	}
}

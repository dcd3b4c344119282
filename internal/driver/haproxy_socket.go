package driver

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// adminSocket speaks HAProxy's Runtime API over its stats socket: one
// command per connection, answered with text and then EOF. Commands that
// change something answer nothing on success and a message otherwise.
type adminSocket struct {
	path    string
	timeout time.Duration
}

// do sends one command and returns the answer.
func (s *adminSocket) do(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.path)
	if err != nil {
		return "", fmt.Errorf("haproxy admin socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy admin socket %s: %q: %w", s.path, cmd, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 8<<20))
	if err != nil {
		return "", fmt.Errorf("haproxy admin socket %s: %q: %w", s.path, cmd, err)
	}
	return string(b), nil
}

// change sends a command that answers nothing on success.
func (s *adminSocket) change(ctx context.Context, cmd string) error {
	out, err := s.do(ctx, cmd)
	if err != nil {
		return err
	}
	if msg := strings.TrimSpace(out); msg != "" {
		return &runtimeError{cmd: cmd, msg: msg}
	}
	return nil
}

// runtimeError is a command HAProxy answered with an error message.
type runtimeError struct{ cmd, msg string }

func (e *runtimeError) Error() string { return fmt.Sprintf("haproxy %q: %s", e.cmd, e.msg) }

// server is one line of `show servers state`.
type server struct {
	name  string
	addr  string // srv_addr: the resolved IP
	fqdn  string // srv_fqdn: the host name as configured, "-" if none
	port  string
	admin int // srv_admin_state bits
}

// HAProxy's srv_admin_state bits that cutover reads.
const (
	adminForcedMaint = 0x01 // set by `set server ... state maint`
	adminForcedDrain = 0x08 // set by `set server ... state drain`
)

// maint reports whether the server is in maintenance set by an operator.
func (s server) maint() bool { return s.admin&adminForcedMaint != 0 }

// matches reports whether the server is the replica at host:port.
func (s server) matches(host, port string) bool {
	return port == s.port && (host == s.addr || strings.EqualFold(host, s.fqdn))
}

func (s server) String() string { return s.name + " " + net.JoinHostPort(s.addr, s.port) }

// servers returns backend's servers.
func (s *adminSocket) servers(ctx context.Context, backend string) ([]server, error) {
	out, err := s.do(ctx, "show servers state "+backend)
	if err != nil {
		return nil, err
	}
	ss, err := parseServersState(out)
	if err != nil {
		return nil, fmt.Errorf("haproxy backend %q: %w", backend, err)
	}
	return ss, nil
}

// parseServersState reads the answer to `show servers state`: a version
// line, a "# name name ..." header, then one line per server.
func parseServersState(out string) ([]server, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "# ") {
		return nil, fmt.Errorf("unexpected answer to show servers state: %q", firstLine(out))
	}
	col := map[string]int{}
	for i, name := range strings.Fields(strings.TrimPrefix(lines[1], "# ")) {
		col[name] = i
	}
	need := []string{"srv_name", "srv_addr", "srv_admin_state", "srv_fqdn", "srv_port"}
	for _, c := range need {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("show servers state has no column %s", c)
		}
	}
	var ss []server
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) <= max(col["srv_name"], col["srv_addr"], col["srv_admin_state"], col["srv_fqdn"], col["srv_port"]) {
			continue
		}
		admin, err := strconv.Atoi(f[col["srv_admin_state"]])
		if err != nil {
			return nil, fmt.Errorf("bad srv_admin_state in %q", l)
		}
		ss = append(ss, server{name: f[col["srv_name"]], addr: f[col["srv_addr"]], fqdn: f[col["srv_fqdn"]], port: f[col["srv_port"]], admin: admin})
	}
	return ss, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// mapValue returns key's value in the map file as HAProxy holds it.
func (s *adminSocket) mapValue(ctx context.Context, file, key string) (value string, found bool, err error) {
	out, err := s.do(ctx, "show map "+file)
	if err != nil {
		return "", false, err
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[1] == key && strings.HasPrefix(f[0], "0x") {
			return f[2], true, nil
		}
	}
	if msg := strings.TrimSpace(out); msg != "" && !strings.HasPrefix(msg, "0x") {
		return "", false, &runtimeError{cmd: "show map " + file, msg: msg}
	}
	return "", false, nil
}

// setMap makes key map to value, adding the entry when it is missing.
func (s *adminSocket) setMap(ctx context.Context, file, key, value string, found bool) error {
	if found {
		return s.change(ctx, fmt.Sprintf("set map %s %s %s", file, key, value))
	}
	return s.change(ctx, fmt.Sprintf("add map %s %s %s", file, key, value))
}

// delMap removes key from the map.
func (s *adminSocket) delMap(ctx context.Context, file, key string) error {
	return s.change(ctx, fmt.Sprintf("del map %s %s", file, key))
}

// setState puts backend/srv in maintenance (maint) or back (ready).
func (s *adminSocket) setState(ctx context.Context, backend, srv string, maint bool) error {
	state := "ready"
	if maint {
		state = "maint"
	}
	return s.change(ctx, fmt.Sprintf("set server %s/%s state %s", backend, srv, state))
}

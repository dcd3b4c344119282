package driver_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/driver"
	"github.com/cutover-dev/cutover/internal/pool"
)

// fakeHAProxy answers Runtime API commands on a unix socket like HAProxy
// 2.6 does, for the servers and map it holds, and serves the verify URL
// with the backend the map names.
type fakeHAProxy struct {
	sock, mapFile string
	srv           *httptest.Server

	mu       sync.Mutex
	servers  map[string][]fakeServer // backend -> servers
	live     string                  // the map's value for key live, "" when absent
	commands []string
	stuck    bool // the verify URL keeps naming blue
}

type fakeServer struct {
	name, addr, fqdn, port string
	admin                  int
}

func newFakeHAProxy(t *testing.T) *fakeHAProxy {
	dir, err := os.MkdirTemp("", "fakehap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeHAProxy{sock: filepath.Join(dir, "admin.sock"), mapFile: filepath.Join(dir, "cutover.map"), live: "blue",
		servers: map[string][]fakeServer{
			"blue":  {{"b1", "10.0.0.1", "-", "8000", 0}, {"b2", "10.0.0.2", "gpu2.internal", "8000", 0}, {"spare", "10.0.0.9", "-", "8000", 0}},
			"green": {{"g1", "10.0.1.1", "-", "8000", 1}},
		}}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprint(c, f.answer(strings.TrimSpace(line)))
			c.Close()
		}
	}()
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		be := f.live
		if f.stuck {
			be = "blue"
		}
		w.Header().Set(driver.PoolHeader, be)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHAProxy) answer(cmd string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, cmd)
	w := strings.Fields(cmd)
	switch {
	case len(w) == 4 && w[0] == "show" && w[1] == "servers":
		ss, ok := f.servers[w[3]]
		if !ok {
			return "Can't find backend.\n"
		}
		var b strings.Builder
		b.WriteString("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n")
		for i, s := range ss {
			fmt.Fprintf(&b, "3 %s %d %s %s 2 %d 1 1 5 1 0 2 0 0 0 0 %s %s - 0 0 - - 0\n", w[3], i+1, s.name, s.addr, s.admin, s.fqdn, s.port)
		}
		return b.String() + "\n"
	case len(w) == 3 && w[0] == "show" && w[1] == "map":
		if f.live == "" {
			return "\n"
		}
		return "0x55d74f642d90 live " + f.live + "\n\n"
	case len(w) == 5 && (w[0] == "set" || w[0] == "add") && w[1] == "map":
		if w[0] == "set" && f.live == "" {
			return "entry not found.\n"
		}
		f.live = w[4]
		return "\n"
	case len(w) == 5 && w[0] == "set" && w[1] == "server":
		be, name, _ := strings.Cut(w[2], "/")
		for i, s := range f.servers[be] {
			if s.name == name {
				if w[4] == "maint" {
					f.servers[be][i].admin |= 1
				} else {
					f.servers[be][i].admin &^= 1
				}
				return "\n"
			}
		}
		return "No such server.\n"
	}
	return "Unknown command.\n"
}

// changes returns the commands that changed something since the last call.
func (f *fakeHAProxy) changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.commands {
		if !strings.HasPrefix(c, "show ") {
			out = append(out, c)
		}
	}
	f.commands = nil
	return out
}

func (f *fakeHAProxy) driver(t *testing.T) *driver.HAProxy {
	h, err := driver.NewHAProxy(driver.HAProxyOptions{
		Socket: f.sock, MapFile: f.mapFile, MapKey: "live",
		Backends: map[string]string{"blue": "blue", "green": "green"},
		Verify:   driver.Verifier{URL: f.srv.URL, Timeout: 300 * time.Millisecond},
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHAProxyApply(t *testing.T) {
	ctx := context.Background()
	f := newFakeHAProxy(t)
	h := f.driver(t)
	blue := replicas(t, "http://10.0.0.1:8000", "http://gpu2.internal:8000")
	green := replicas(t, "http://10.0.1.1:8000")
	pools := map[string][]*pool.Replica{"blue": blue, "green": green}

	if err := h.Apply(ctx, table("blue", pools)); err != nil {
		t.Fatal(err)
	}
	// The spare blue server is no replica: out. g1 was in maint: back.
	want := []string{"set server blue/spare state maint", "set server green/g1 state ready"}
	if got := f.changes(); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("first apply sent %q, want %q", got, want)
	}
	if b, _ := os.ReadFile(f.mapFile); !strings.HasSuffix(string(b), "\nlive blue\n") {
		t.Errorf("map file:\n%s", b)
	}
	if err := h.Apply(ctx, table("green", pools)); err != nil {
		t.Fatal(err)
	}
	if got := f.changes(); len(got) != 1 || got[0] != "set map "+f.mapFile+" live green" {
		t.Errorf("switch sent %q, want one set map", got)
	}
	if b, _ := os.ReadFile(f.mapFile); !strings.HasSuffix(string(b), "\nlive green\n") {
		t.Errorf("map file after the switch:\n%s", b)
	}
	if live, err := h.Live(ctx); err != nil || live != "green" {
		t.Errorf("Live = %q, %v", live, err)
	}
	if err := h.Sync(ctx); err != nil || len(f.changes()) != 0 {
		t.Errorf("Sync without a health change: %v, sent commands", err)
	}
	blue[1].SetInitial(time.Now(), errDown)
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.changes(); len(got) != 1 || got[0] != "set server blue/b2 state maint" {
		t.Errorf("Sync after blue/b2 failed sent %q", got)
	}
}

func TestHAProxyFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("replica that is no server", func(t *testing.T) {
		f := newFakeHAProxy(t)
		pools := map[string][]*pool.Replica{"blue": replicas(t, "http://10.0.0.1:8000"), "green": replicas(t, "http://10.0.1.7:8000")}
		err := f.driver(t).Apply(ctx, table("green", pools))
		if err == nil || !strings.Contains(err.Error(), "add `server NAME 10.0.1.7:8000` to backend green") {
			t.Fatalf("Apply = %v, want the line to add", err)
		}
		if got := f.changes(); len(got) != 0 {
			t.Errorf("a refused switch sent %q", got)
		}
	})
	t.Run("verification fails", func(t *testing.T) {
		f := newFakeHAProxy(t)
		h := f.driver(t)
		pools := map[string][]*pool.Replica{"blue": replicas(t, "http://10.0.0.1:8000"), "green": replicas(t, "http://10.0.1.1:8000")}
		if err := h.Apply(ctx, table("blue", pools)); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(f.mapFile)
		f.changes()
		f.mu.Lock()
		f.stuck = true
		f.mu.Unlock()
		err := h.Apply(ctx, table("green", pools))
		if err == nil || !strings.Contains(err.Error(), "put back to blue") {
			t.Fatalf("Apply = %v, want the map put back", err)
		}
		if got := f.changes(); strings.Join(got, "; ") != "set map "+f.mapFile+" live green; set map "+f.mapFile+" live blue" {
			t.Errorf("commands %q", got)
		}
		if after, _ := os.ReadFile(f.mapFile); string(after) != string(before) {
			t.Errorf("map file not restored:\n%s", after)
		}
	})
	t.Run("socket unreachable", func(t *testing.T) {
		h, err := driver.NewHAProxy(driver.HAProxyOptions{Socket: "/nonexistent/admin.sock", MapFile: "/nonexistent/map", MapKey: "live",
			Backends: map[string]string{"blue": "blue", "green": "green"}, Verify: driver.Verifier{URL: "http://127.0.0.1:1/"}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		err = h.Apply(ctx, table("blue", map[string][]*pool.Replica{"blue": replicas(t, "http://10.0.0.1:8000")}))
		if err == nil || !strings.Contains(err.Error(), "admin socket") || !strings.Contains(err.Error(), "nothing changed") {
			t.Errorf("Apply = %v", err)
		}
	})
}

func TestHAProxyWarnsWithoutNoDelay(t *testing.T) {
	for _, tt := range []struct {
		name, cfg string
		warn      bool
	}{
		{"set in defaults", "defaults\n    mode http\n    option http-no-delay\n", false},
		{"missing", "defaults\n    mode http\n", true},
		{"commented out", "defaults\n    # option http-no-delay\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(path, []byte(tt.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			var logs strings.Builder
			_, err := driver.NewHAProxy(driver.HAProxyOptions{Socket: "/x", MapFile: "/m", MapKey: "live", ConfigFile: path,
				Verify: driver.Verifier{URL: "http://127.0.0.1:1/"}, Logger: slogTo(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), "http-no-delay"); got != tt.warn {
				t.Errorf("warned = %v, want %v; log: %s", got, tt.warn, logs.String())
			}
		})
	}
}

// TestHAProxyDriftIsPutRight: a reload or restart of HAProxy resets the
// servers' states to haproxy.cfg's and may bring back an old map: Sync
// sees it and sets them again. Before, Sync compared the table only with
// its own memory of what it had set, and an unhealthy replica stayed in
// rotation after every reload.
func TestHAProxyDriftIsPutRight(t *testing.T) {
	ctx := context.Background()
	f := newFakeHAProxy(t)
	h, err := driver.NewHAProxy(driver.HAProxyOptions{
		Socket: f.sock, MapFile: f.mapFile, MapKey: "live",
		Backends:   map[string]string{"blue": "blue", "green": "green"},
		Verify:     driver.Verifier{URL: f.srv.URL, Timeout: 300 * time.Millisecond},
		DriftEvery: time.Nanosecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	blue := replicas(t, "http://10.0.0.1:8000", "http://gpu2.internal:8000")
	green := replicas(t, "http://10.0.1.1:8000")
	blue[1].SetInitial(time.Now(), errDown)
	if err := h.Apply(ctx, table("green", map[string][]*pool.Replica{"blue": blue, "green": green})); err != nil {
		t.Fatal(err)
	}
	f.changes()
	if err := h.Sync(ctx); err != nil || len(f.changes()) != 0 {
		t.Fatalf("Sync while HAProxy serves the table: %v, sent changes", err)
	}
	// A reload: every server as haproxy.cfg has it (ready), the map file's
	// older value.
	f.mu.Lock()
	for be := range f.servers {
		for i := range f.servers[be] {
			f.servers[be][i].admin = 0
		}
	}
	f.live = "blue"
	f.mu.Unlock()
	if err := h.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"set server blue/b2 state maint", "set server blue/spare state maint", "set map " + f.mapFile + " live green"}
	if got := f.changes(); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("Sync after the reload sent %q, want %q", got, want)
	}
	if live, err := h.Live(ctx); err != nil || live != "green" {
		t.Errorf("Live after Sync = %q, %v", live, err)
	}
}

package driver_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/driver"
	"github.com/cutover-dev/cutover/internal/driver/lbtest"
	"github.com/cutover-dev/cutover/internal/pool"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeNginx stands in for nginx in the driver's unit tests: its commands
// append their name to a log file, and its HTTP server answers with the
// pool and version of the upstream file as it is on disk (an nginx that
// reloads instantly), unless stuck, when it keeps naming one pool.
type fakeNginx struct {
	dir, file, log string
	srv            *httptest.Server
	stuck          atomic.Value // string: the pool named regardless of the file
}

var mapDefault = regexp.MustCompile(`\$cutover_(pool|config) \{\n    default (\S+);`)

func newFakeNginx(t *testing.T) *fakeNginx {
	f := &fakeNginx{dir: t.TempDir()}
	f.file, f.log = filepath.Join(f.dir, "upstream.conf"), filepath.Join(f.dir, "commands.log")
	f.stuck.Store("")
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := os.ReadFile(f.file)
		for _, m := range mapDefault.FindAllStringSubmatch(string(b), -1) {
			w.Header().Set(map[string]string{"pool": driver.PoolHeader, "config": driver.ConfigHeader}[m[1]], m[2])
		}
		if s := f.stuck.Load().(string); s != "" {
			w.Header().Set(driver.PoolHeader, s)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// cmd returns an argv that logs name and exits with code.
func (f *fakeNginx) cmd(name string, code int) []string {
	return []string{"sh", "-c", `echo "$0" >> "$1"; [ "$2" = 0 ] || echo "nginx: [emerg] simulated failure of $0" >&2; exit "$2"`, name, f.log, strconv.Itoa(code)}
}

func (f *fakeNginx) commands(t *testing.T) string {
	b, err := os.ReadFile(f.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	defer os.Remove(f.log)
	return strings.Join(strings.Fields(string(b)), " ")
}

func (f *fakeNginx) driver(t *testing.T, testCode, reloadCode int) *driver.Nginx {
	n, err := driver.NewNginx(driver.NginxOptions{
		File:          f.file,
		Render:        driver.NginxRender{Upstream: "cutover", Keepalive: 4},
		TestCommand:   f.cmd("test", testCode),
		ReloadCommand: f.cmd("reload", reloadCode),
		Verify:        driver.Verifier{URL: f.srv.URL, Timeout: 300 * time.Millisecond, Settle: time.Millisecond},
		RetryAfter:    time.Hour,
		Logger:        quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func twoPools(t *testing.T) (blue, green []*pool.Replica) {
	return replicas(t, "http://10.0.0.1:8000", "http://10.0.0.2:8000"), replicas(t, "http://10.0.1.1:8000")
}

func TestNginxApply(t *testing.T) {
	ctx := context.Background()
	f := newFakeNginx(t)
	blue, green := twoPools(t)
	pools := map[string][]*pool.Replica{"blue": blue, "green": green}
	n := f.driver(t, 0, 0)

	if err := n.Apply(ctx, table("blue", pools)); err != nil {
		t.Fatal(err)
	}
	if got := f.commands(t); got != "test reload" {
		t.Errorf("first apply ran %q, want test reload", got)
	}
	if err := n.Apply(ctx, table("green", pools)); err != nil {
		t.Fatal(err)
	}
	if got, _ := n.Live(ctx); got != "green" {
		t.Errorf("Live = %q, want green", got)
	}
	f.commands(t)
	if err := n.Apply(ctx, table("green", pools)); err != nil || f.commands(t) != "" {
		t.Errorf("applying the same table again: %v, ran commands", err)
	}
	if err := n.Sync(ctx); err != nil || f.commands(t) != "" {
		t.Errorf("Sync without a health change: %v, ran commands", err)
	}
	green[0].SetInitial(time.Now(), errDown)
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.commands(t); got != "test reload" {
		t.Errorf("Sync after a health change ran %q, want test reload", got)
	}
	if b, _ := os.ReadFile(f.file); !strings.Contains(string(b), "server 10.0.1.1:8000 down;") {
		t.Errorf("file after the health change:\n%s", b)
	}
}

// TestNginxFailuresRestore: whichever step fails, the previous file is
// back, nginx is reloaded again only if it may have loaded the new one,
// and the error says what failed.
func TestNginxFailuresRestore(t *testing.T) {
	tests := []struct {
		name               string
		testCode, reloadOK int
		stuck              bool
		wantCommands, want string
	}{
		{"test fails", 1, 0, false, "test", "nginx refused the new upstream file"},
		{"reload fails", 0, 1, false, "test reload reload", "reload_command"},
		{"verification fails", 0, 0, true, "test reload reload", "new requests do not reach pool green"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFakeNginx(t)
			blue, green := twoPools(t)
			pools := map[string][]*pool.Replica{"blue": blue, "green": green}
			if err := f.driver(t, 0, 0).Apply(ctx, table("blue", pools)); err != nil {
				t.Fatal(err)
			}
			good, _ := os.ReadFile(f.file)
			f.commands(t)
			n := f.driver(t, tt.testCode, tt.reloadOK)
			if tt.stuck {
				f.stuck.Store("blue")
			}
			err := n.Apply(ctx, table("green", pools))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Apply = %v, want an error saying %q", err, tt.want)
			}
			t.Logf("error: %v", err)
			if got, _ := os.ReadFile(f.file); string(got) != string(good) {
				t.Errorf("file not restored:\n%s", got)
			}
			if got := f.commands(t); got != tt.wantCommands {
				t.Errorf("commands %q, want %q", got, tt.wantCommands)
			}
			if err := n.Sync(ctx); err != nil || f.commands(t) != "" {
				t.Errorf("Sync right after a refused change retried it: %v", err)
			}
		})
	}
}

// TestNginxRestartKeepsServing: a driver whose file already holds the
// table nginx serves (cutover restarted) neither tests nor reloads.
func TestNginxRestartKeepsServing(t *testing.T) {
	ctx := context.Background()
	f := newFakeNginx(t)
	blue, green := twoPools(t)
	tb := table("blue", map[string][]*pool.Replica{"blue": blue, "green": green})
	if err := f.driver(t, 0, 0).Apply(ctx, tb); err != nil {
		t.Fatal(err)
	}
	f.commands(t)
	if err := f.driver(t, 0, 0).Apply(ctx, tb); err != nil {
		t.Fatal(err)
	}
	if got := f.commands(t); got != "" {
		t.Errorf("restart ran %q, want nothing", got)
	}
}

// TestNginxRejectsBadDirective runs real nginx: a file with a directive
// nginx does not know is refused by nginx -t, the previous file is back,
// and nginx still serves the previous pool.
func TestNginxRejectsBadDirective(t *testing.T) {
	ctx := context.Background()
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok.Close()
	ok2 := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer ok2.Close()
	ng := lbtest.StartNginx(t, []string{ok.URL, ok2.URL})
	blue, green := replicas(t, ok.URL), replicas(t, ok2.URL)
	pools := map[string][]*pool.Replica{"blue": blue, "green": green}
	newDriver := func(directives ...string) *driver.Nginx {
		n, err := driver.NewNginx(driver.NginxOptions{
			File:          ng.UpstreamFile,
			Render:        driver.NginxRender{Upstream: "cutover", Keepalive: 4, Directives: directives},
			TestCommand:   ng.TestCommand(),
			ReloadCommand: ng.ReloadCommand(),
			Verify:        driver.Verifier{URL: "http://" + ng.Addr + "/health", Timeout: 5 * time.Second},
			Logger:        quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := newDriver("least_conn").Apply(ctx, table("blue", pools)); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(ng.UpstreamFile)
	err := newDriver("bogus_directive 1").Apply(ctx, table("green", pools))
	if err == nil || !strings.Contains(err.Error(), `unknown directive "bogus_directive"`) {
		t.Fatalf("Apply with a bad directive = %v, want nginx's refusal", err)
	}
	if got, _ := os.ReadFile(ng.UpstreamFile); string(got) != string(good) {
		t.Errorf("file not restored:\n%s", got)
	}
	v := driver.Verifier{URL: "http://" + ng.Addr + "/health"}
	if a, err := v.Current(ctx); err != nil || a.Pool != "blue" {
		t.Errorf("nginx after the refusal: %+v %v, want blue", a, err)
	}
}

// TestNginxDriftIsPutRight: an upstream file edited outside cutover, or
// an nginx that answers for another pool than the table's (a reload of an
// older file, an undo whose reload failed), is seen by Sync, which writes,
// tests, reloads and verifies the table again. Before, Sync compared the
// table only with its own memory of the file, and status said green while
// nginx served blue for good.
func TestNginxDriftIsPutRight(t *testing.T) {
	ctx := context.Background()
	f := newFakeNginx(t)
	blue, green := twoPools(t)
	n, err := driver.NewNginx(driver.NginxOptions{
		File: f.file, Render: driver.NginxRender{Upstream: "cutover", Keepalive: 4},
		TestCommand: f.cmd("test", 0), ReloadCommand: f.cmd("reload", 0),
		Verify:     driver.Verifier{URL: f.srv.URL, Timeout: 300 * time.Millisecond, Settle: time.Millisecond},
		RetryAfter: time.Hour, DriftEvery: time.Nanosecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Apply(ctx, table("green", map[string][]*pool.Replica{"blue": blue, "green": green})); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(f.file)
	f.commands(t)
	if err := n.Sync(ctx); err != nil || f.commands(t) != "" {
		t.Fatalf("Sync while nginx serves the table: %v, ran commands", err)
	}
	// An edit by hand (the fake nginx serves the file as it is on disk).
	if err := os.WriteFile(f.file, []byte(strings.ReplaceAll(string(good), "default green;", "default blue;")), 0o644); err != nil {
		t.Fatal(err)
	}
	if live, _ := n.Live(ctx); live != "blue" {
		t.Fatalf("the edit did not take: %q", live)
	}
	if err := n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.commands(t); got != "test reload" {
		t.Errorf("Sync after the edit ran %q, want test reload", got)
	}
	if b, _ := os.ReadFile(f.file); string(b) != string(good) {
		t.Errorf("file after Sync:\n%s\nwant\n%s", b, good)
	}
	if live, _ := n.Live(ctx); live != "green" {
		t.Errorf("nginx serves %q after Sync, want green", live)
	}
	// The file is right but nginx answers for blue: Sync tries again,
	// and says why it could not.
	f.stuck.Store("blue")
	if err := n.Sync(ctx); err == nil || !strings.Contains(err.Error(), "blue") {
		t.Fatalf("Sync while nginx answers for blue: %v, want an error naming it", err)
	}
	if got := f.commands(t); !strings.HasPrefix(got, "test reload") {
		t.Errorf("Sync with nginx answering for blue ran %q, want test reload first", got)
	}
}

// TestNginxRefusesAStandbyItCouldNeverServe: a table whose standby pool
// has a replica nginx cannot name (a path prefix) or mixes schemes is
// refused before anything is written, as a deploy onto it must be: it
// was accepted, and failed only at the promote, after warm-up and
// validation.
func TestNginxRefusesAStandbyItCouldNeverServe(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		green []string
		want  string
	}{
		{"path prefix", []string{"http://10.0.1.1:8000/v2"}, "path prefix"},
		{"mixed schemes", []string{"http://10.0.1.1:8000", "https://10.0.1.2:8443"}, "mixes http and https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeNginx(t)
			n := f.driver(t, 0, 0)
			blue := replicas(t, "http://10.0.0.1:8000")
			if err := n.Apply(ctx, table("blue", map[string][]*pool.Replica{"blue": blue, "green": replicas(t, "http://10.0.1.1:8000")})); err != nil {
				t.Fatal(err)
			}
			good, _ := os.ReadFile(f.file)
			f.commands(t)
			err := n.Apply(ctx, table("blue", map[string][]*pool.Replica{"blue": blue, "green": replicas(t, tc.green...)}))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "pool green") {
				t.Fatalf("Apply = %v, want a refusal naming pool green and %q", err, tc.want)
			}
			if b, _ := os.ReadFile(f.file); string(b) != string(good) || f.commands(t) != "" {
				t.Errorf("the refused table changed the file or ran commands")
			}
		})
	}
}

package hook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var payload = Payload{Event: "on_retire", Deployment: "d-3", Pool: "blue", Model: "m1", Replicas: []string{"http://a:1", "http://b:2"}, Revision: 7, Reason: "retention ended"}

func TestCommandHook(t *testing.T) {
	tests := []struct {
		name     string
		spec     Spec
		ok       bool
		exit     int
		output   string
		errorHas string
	}{
		{"env reaches the command", Spec{Command: []string{"sh", "-c", `echo "$CUTOVER_EVENT $CUTOVER_DEPLOYMENT $CUTOVER_POOL $CUTOVER_MODEL $CUTOVER_REPLICAS $CUTOVER_REVISION"`}},
			true, 0, "on_retire d-3 blue m1 http://a:1,http://b:2 7", ""},
		{"exit code and output", Spec{Command: []string{"sh", "-c", "echo busy >&2; exit 4"}}, false, 4, "busy", ""},
		{"no shell: argv is literal", Spec{Command: []string{"echo", "$CUTOVER_POOL;", "rm"}}, true, 0, "$CUTOVER_POOL; rm", ""},
		{"missing program", Spec{Command: []string{"/nonexistent/hook"}}, false, -1, "", "no such file"},
		{"timeout", Spec{Command: []string{"sleep", "10"}, Timeout: 100 * time.Millisecond}, false, -1, "", "timed out after 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := (&Runner{}).Run(context.Background(), tt.spec, payload)
			if o.OK != tt.ok || o.ExitCode != tt.exit || !strings.Contains(o.Output, tt.output) || !strings.Contains(o.Error, tt.errorHas) {
				t.Fatalf("outcome %+v", o)
			}
			if o.Event != "on_retire" || o.Hook == "" {
				t.Errorf("outcome not labelled: %+v", o)
			}
			if !tt.ok && !strings.Contains(o.Summary(), "failed") {
				t.Errorf("summary %q", o.Summary())
			}
		})
	}
}

func TestOutputIsTruncatedToItsTail(t *testing.T) {
	o := (&Runner{}).Run(context.Background(), Spec{Command: []string{"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x; echo; echo LAST"}}, payload)
	if len(o.Output) > outputTail || !strings.HasSuffix(o.Output, "LAST") {
		t.Fatalf("output %d bytes, ends %q", len(o.Output), o.Output[max(0, len(o.Output)-10):])
	}
}

func TestWebhook(t *testing.T) {
	var got Payload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", 400)
			return
		}
		_ = json.NewDecoder(r.Body).Decode(&got)
		if strings.HasSuffix(r.URL.Path, "/fail") {
			http.Error(w, "quota exceeded", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	o := (&Runner{}).Run(context.Background(), Spec{Webhook: srv.URL + "/ok"}, payload)
	if !o.OK || o.Status != 204 {
		t.Fatalf("outcome %+v", o)
	}
	if got.Deployment != "d-3" || len(got.Replicas) != 2 || got.Revision != 7 {
		t.Fatalf("webhook body %+v", got)
	}
	o = (&Runner{}).Run(context.Background(), Spec{Webhook: srv.URL + "/fail"}, payload)
	if o.OK || o.Status != 503 || !strings.Contains(o.Output, "quota exceeded") || !strings.Contains(o.Summary(), "HTTP 503") {
		t.Fatalf("failing webhook outcome %+v (%s)", o, o.Summary())
	}
	srv.Close()
	o = (&Runner{}).Run(context.Background(), Spec{Webhook: srv.URL + "/ok"}, payload)
	if o.OK || o.Error == "" {
		t.Fatalf("unreachable webhook: %+v", o)
	}
}

// TestTimeoutKillsWhatTheHookStarted: a hook that times out is killed with
// everything it started, so nothing of it acts after its failure was
// recorded (a regression: only the direct child was killed).
func TestTimeoutKillsWhatTheHookStarted(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	spec := Spec{Command: []string{"sh", "-c", `sh -c 'echo $$ > "$0"; exec sleep 30' "$1"; echo after`, "sh", pidFile},
		Timeout: 300 * time.Millisecond}
	o := (&Runner{}).Run(context.Background(), spec, payload)
	if o.OK || !strings.Contains(o.Error, "timed out") {
		t.Fatalf("outcome %+v, want a timeout", o)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the grandchild never started: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d, started by the hook, still runs after the hook timed out", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether process pid exists and is not a zombie waiting to
// be reaped.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no procfs: trust kill
	}
	// The state follows the command name in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// TestStoppedHookSaysWhy: a hook killed because what ran it ended (an
// abort stopping a promote) says so, with the cause, instead of "exit code
// -1"; a webhook too.
func TestStoppedHookSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cause error
		want  string
	}{
		{"with a cause", errors.New("op2 aborted deployment d-1"), `before_promote hook "sleep 30" failed: stopped before it ended: op2 aborted deployment d-1`},
		{"without one", nil, `before_promote hook "sleep 30" failed: stopped before it ended`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			ctx = WithTrace(ctx, &Trace{Started: func(int) { cancel(tc.cause) }})
			o := (&Runner{}).Run(ctx, Spec{Command: []string{"sleep", "30"}}, Payload{Event: "before_promote"})
			if o.OK || o.Summary() != tc.want {
				t.Fatalf("outcome %+v, summary %q; want %q", o, o.Summary(), tc.want)
			}
		})
	}
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("op2 aborted deployment d-1"))
	o := (&Runner{}).Run(ctx, Spec{Webhook: srv.URL}, Payload{Event: "before_promote"})
	if o.OK || !strings.HasSuffix(o.Error, "stopped before it ended: op2 aborted deployment d-1") {
		t.Fatalf("webhook outcome %+v", o)
	}
}

package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

// minimal is the smallest valid configuration: two pools with a model and
// a replica each. Line numbers in tests below count from it.
const minimal = `pools:
  blue:
    model: m-1
    replicas: [http://127.0.0.1:8001]
  green:
    model: m-2
    replicas: [http://127.0.0.1:8002]
`

func TestParseMinimalGetsDefaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := config.Default()
	want.Pools = map[string]*config.Pool{
		"blue":  {Model: "m-1", Replicas: []string{"http://127.0.0.1:8001"}},
		"green": {Model: "m-2", Replicas: []string{"http://127.0.0.1:8002"}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(minimal) =\n%+v\nwant\n%+v", c, want)
	}
	// Spell out the documented defaults so that a change to Default is a
	// deliberate change to this test too.
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:8081"},
		{"state_dir", c.StateDir, "/var/lib/cutover"},
		{"live", c.Live, "blue"},
		{"balancer", c.Balancer, "least_outstanding"},
		{"health.path", c.Health.Path, "/health"},
		{"health.interval", c.Health.Interval.D(), 5 * time.Second},
		{"health.timeout", c.Health.Timeout.D(), 2 * time.Second},
		{"health.rise", c.Health.Rise, 2},
		{"health.fall", c.Health.Fall, 2},
		{"proxy.max_body_bytes", c.Proxy.MaxBodyBytes, int64(32 << 20)},
		{"proxy.response_header_timeout", c.Proxy.ResponseHeaderTimeout.D(), 10 * time.Minute},
		{"proxy.idle_timeout", c.Proxy.IdleTimeout.D(), 5 * time.Minute},
		{"proxy.timeout", c.Proxy.Timeout.D(), time.Duration(0)},
		{"proxy.drain_timeout", c.Proxy.DrainTimeout.D(), 30 * time.Second},
		{"proxy.access_log", c.Proxy.AccessLogEnabled(), true},
		{"proxy.max_buffered_bytes", c.Proxy.MaxBufferedBytes, int64(512 << 20)},
		{"proxy.client_write_timeout", c.Proxy.ClientWriteTimeout.D(), time.Minute},
		{"proxy.connect_timeout", c.Proxy.ConnectTimeout.D(), 5 * time.Second},
		{"proxy.expose_replica", c.Proxy.ExposeReplicaEnabled(), true},
		{"health.outlier.consecutive_5xx", c.Health.Outlier.Consecutive5xx, 5},
		{"health.outlier.failure_rate", c.Health.Outlier.FailureRate, 0.5},
		{"health.outlier.interval", c.Health.Outlier.Interval.D(), 10 * time.Second},
		{"health.outlier.minimum_requests", c.Health.Outlier.MinimumRequests, 20},
		{"health.outlier.base_ejection_time", c.Health.Outlier.BaseEjectionTime.D(), 30 * time.Second},
		{"health.outlier.max_ejection_time", c.Health.Outlier.MaxEjectionTime.D(), 5 * time.Minute},
		{"health.outlier.max_ejection_percent", c.Health.Outlier.MaxEjectionPercent, 50},
		{"validation.shadow.priority", c.Validation.Shadow.Priority, "idle"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	c, err := config.Parse([]byte(minimal + `live: green
model_name: chat
balancer: round_robin
health: {interval: 1m30s, rise: 3.0}
proxy: {access_log: false, timeout: 1h, expose_replica: false, max_body_bytes: 2e6}
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Live != "green" || c.ModelName != "chat" || c.Balancer != "round_robin" ||
		c.Health.Interval.D() != 90*time.Second || c.Health.Rise != 3 || c.Health.Fall != 2 ||
		c.Proxy.AccessLogEnabled() || c.Proxy.Timeout.D() != time.Hour || c.Proxy.ExposeReplicaEnabled() ||
		c.Proxy.MaxBodyBytes != 2_000_000 {
		t.Errorf("overrides not applied: %+v %+v %+v", c, c.Health, c.Proxy)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		key  string
		line int      // 0: the key is not in the file
		msg  []string // substrings of the field's message
	}{
		{"unknown top-level key", minimal + "listne: :9000\n", "listne", 8, []string{`unknown key "listne"`, "listen"}},
		{"unknown nested key", strings.Replace(minimal, "    replicas: [http://127.0.0.1:8001]", "    replcas: [http://127.0.0.1:8001]", 1),
			"pools.blue.replcas", 4, []string{`unknown key "replcas"`, "replicas"}},
		{"unknown pool", minimal + "  red: {model: m-3}\n", "pools.red", 8, []string{`"red"`}},
		{"missing pools", "listen: 127.0.0.1:9000\n", "pools", 0, []string{"missing"}},
		{"missing green", "pools:\n  blue:\n    model: m-1\n    replicas: [http://127.0.0.1:8001]\n", "pools.green", 1, []string{"missing"}},
		{"null green", "pools:\n  blue:\n    model: m-1\n    replicas: [http://127.0.0.1:8001]\n  green:\n", "pools.green", 5, []string{"missing"}},
		{"unknown live pool", minimal + "live: red\n", "live", 8, []string{`"red"`}},
		{"unknown log level", minimal + "log_level: verbose\n", "log_level", 8, []string{`"verbose"`, "debug, info, warn, error"}},
		{"log level", minimal + "log_level: debug\n", "", 0, nil}, // control: valid
		{"unknown shadow priority", minimal + "validation: {shadow: {priority: low}}\n", "validation.shadow.priority", 8, []string{`"low"`, "idle or normal"}},
		{"shadow priority", minimal + "validation: {shadow: {priority: normal}}\n", "", 0, nil}, // control: valid
		{"post-promotion window longer than the retention", minimal + "rollout: {retention: 5m}\nvalidation: {post_promotion: 30m}\n",
			"validation.post_promotion", 9, []string{"rollout.retention", "5m0s", "30m0s"}},
		{"replica host with a semicolon", strings.Replace(minimal, "http://127.0.0.1:8002", "http://a;b:8002", 1),
			"pools.green.replicas[0]", 7, []string{"bad character"}},
		{"replica host with an IPv6 zone", strings.Replace(minimal, "http://127.0.0.1:8002", "'http://[fe80::1%25x;%20server%20y]:8002'", 1),
			"pools.green.replicas[0]", 7, []string{"zone"}},
		// Non-finite numbers: a NaN fails every comparison, so range checks
		// written as "< 0 || > 100" let it through; an infinite gate
		// threshold cannot be written as JSON, which left the status and
		// the deployment record empty.
		{"shadow percent NaN", minimal + "validation: {shadow: {percent: .nan}}\n", "validation.shadow.percent", 8, []string{"NaN"}},
		{"gate threshold NaN", minimal + "validation: {gates: {error_rate: {threshold: .nan}}}\n", "validation.gates.error_rate.threshold", 8, []string{"NaN"}},
		{"gate threshold infinite", minimal + "validation: {gates: {latency_p95_ratio: {threshold: .inf}}}\n", "validation.gates.latency_p95_ratio.threshold", 8, []string{"+Inf"}},
		{"balancing weight infinite", minimal + "balancing: {queue_weight: .inf}\n", "balancing.queue_weight", 8, []string{"+Inf"}},
		{"duplicate replica with the default port", strings.Replace(minimal, "http://127.0.0.1:8002", "http://LocalHost:80, http://localhost/", 1),
			"pools.green.replicas[1]", 7, []string{"duplicate replica", "pools.green.replicas[0]"}},
		// A replica that is the gateway's own listener: every request of
		// the pool would come back to the gateway.
		{"replica is the listen address", minimal + "listen: 127.0.0.1:8002\nadmin: {listen: 127.0.0.1:9001}\n",
			"pools.green.replicas[0]", 7, []string{`"http://127.0.0.1:8002"`, "the gateway's own listen 127.0.0.1:8002", "not a model server"}},
		{"replica is a wildcard listener through localhost", strings.Replace(minimal, "http://127.0.0.1:8002", "http://localhost:9001/", 1) + "listen: 127.0.0.1:8000\nadmin: {listen: '0.0.0.0:9001'}\n",
			"pools.green.replicas[0]", 7, []string{"the gateway's own admin.listen 0.0.0.0:9001"}},
		{"replica on the listen port of another address", strings.Replace(minimal, "http://127.0.0.1:8002", "http://10.1.2.3:8000", 1) + "listen: 127.0.0.1:8000\nadmin: {listen: 127.0.0.1:9001}\n",
			"", 0, nil}, // control: another host
		// A port net.Listen refuses is named here (exit 2), not found at
		// bind time (exit 1).
		{"listen port out of range", minimal + "listen: 127.0.0.1:99999\n", "listen", 8, []string{"99999", "0 to 65535"}},
		{"admin listen port not a port", minimal + "admin: {listen: ':-1'}\n", "admin.listen", 8, []string{"0 to 65535"}},
		{"preview listen not host:port", minimal + "preview: {listen: nonsense}\n", "preview.listen", 8, []string{"not host:port"}},
		{"listen on a service name", minimal + "listen: 127.0.0.1:http-alt\n", "", 0, nil},                      // control: valid
		{"standby pool may be empty", strings.Replace(minimal, "[http://127.0.0.1:8002]", "[]", 1), "", 0, nil}, // control: valid
		{"live pool with empty replicas", strings.Replace(minimal, "[http://127.0.0.1:8001]", "[]", 1),
			"pools.blue.replicas", 4, []string{`"blue"`, "at least one replica"}},
		{"pool with replicas but no model", strings.Replace(minimal, "    model: m-2\n", "", 1),
			"pools.green.model", 5, []string{"must be set"}},
		{"model id with a terminal escape", strings.Replace(minimal, "model: m-2", `model: "m-2\e[2J"`, 1),
			"pools.green.model", 6, []string{"control character"}},
		{"client model name with a control character", minimal + "model_name: \"llama\\n\"\n", "model_name", 8, []string{"control character"}},
		{"client model name like an option", minimal + "model_name: --x\n", "model_name", 8, []string{"option"}},
		{"replica without scheme", strings.Replace(minimal, "http://127.0.0.1:8002", "127.0.0.1:8002", 1),
			"pools.green.replicas[0]", 7, []string{"127.0.0.1:8002"}},
		{"replica host:port only", strings.Replace(minimal, "http://127.0.0.1:8002", "localhost:8002", 1),
			"pools.green.replicas[0]", 7, []string{"localhost:8002", "http://"}},
		{"replica ftp", strings.Replace(minimal, "http://127.0.0.1:8002", "ftp://127.0.0.1:8002", 1),
			"pools.green.replicas[0]", 7, []string{"ftp://127.0.0.1:8002", "http://"}},
		{"replica bad port", strings.Replace(minimal, "http://127.0.0.1:8002", "http://127.0.0.1:99999", 1),
			"pools.green.replicas[0]", 7, []string{"http://127.0.0.1:99999", `"99999"`}},
		{"replica with query", strings.Replace(minimal, "http://127.0.0.1:8002", `"http://127.0.0.1:8002/?x=1"`, 1),
			"pools.green.replicas[0]", 7, []string{"x=1", "query"}},
		// Regression: a bare "?" set url.URL.ForceQuery, so the replica was
		// accepted as "http://h:1?" and every health path became a query.
		{"replica with empty query", strings.Replace(minimal, "http://127.0.0.1:8002", `"http://127.0.0.1:8002?"`, 1),
			"pools.green.replicas[0]", 7, []string{"http://127.0.0.1:8002?", "query"}},
		{"replica with user info", strings.Replace(minimal, "http://127.0.0.1:8002", "http://u:p@127.0.0.1:8002", 1),
			"pools.green.replicas[0]", 7, []string{"user info"}},
		{"duplicate replica in a pool", strings.Replace(minimal, "[http://127.0.0.1:8001]", "[http://127.0.0.1:8001, http://127.0.0.1:8001]", 1),
			"pools.blue.replicas[1]", 4, []string{"duplicate", "pools.blue.replicas[0]"}},
		{"duplicate replica across pools modulo slash", strings.Replace(minimal, "http://127.0.0.1:8002", "http://127.0.0.1:8001/", 1),
			"pools.green.replicas[0]", 7, []string{"duplicate", `"http://127.0.0.1:8001/"`, "pools.blue.replicas[0]"}},
		{"rise not a number", minimal + "health:\n  rise: abc\n", "health.rise", 9, []string{`"abc"`}},
		{"interval a bare number", minimal + "health:\n  interval: 5\n", "health.interval", 9, []string{`"5"`, "duration"}},
		{"interval a mapping", minimal + "health:\n  interval: {s: 5}\n", "health.interval", 9, []string{"mapping"}},
		{"interval zero", minimal + "health:\n  interval: 0s\n", "health.interval", 9, []string{"positive", "0s"}},
		{"rise zero", minimal + "health:\n  rise: 0\n", "health.rise", 9, []string{"at least 1", "0"}},
		{"outlier consecutive one", minimal + "health:\n  outlier:\n    consecutive_5xx: 1\n", "health.outlier.consecutive_5xx", 10, []string{"never ejects", "1"}},
		{"outlier consecutive off", minimal + "health:\n  outlier:\n    consecutive_5xx: 0\n", "", 0, nil}, // control: valid
		{"outlier failure rate over 1", minimal + "health:\n  outlier:\n    failure_rate: 1.5\n", "health.outlier.failure_rate", 10, []string{"1.5"}},
		{"outlier interval zero", minimal + "health:\n  outlier:\n    interval: 0s\n", "health.outlier.interval", 10, []string{"positive"}},
		{"outlier minimum requests zero", minimal + "health:\n  outlier:\n    minimum_requests: 0\n", "health.outlier.minimum_requests", 10, []string{"at least 1"}},
		{"outlier base ejection zero", minimal + "health:\n  outlier:\n    base_ejection_time: 0s\n", "health.outlier.base_ejection_time", 10, []string{"positive"}},
		{"outlier max below base", minimal + "health:\n  outlier:\n    base_ejection_time: 1m\n    max_ejection_time: 30s\n", "health.outlier.max_ejection_time", 11, []string{"base_ejection_time", "1m0s", "30s"}},
		{"outlier percent over 100", minimal + "health:\n  outlier:\n    max_ejection_percent: 101\n", "health.outlier.max_ejection_percent", 10, []string{"101"}},
		{"outlier unknown key", minimal + "health:\n  outlier:\n    consecutive_500: 3\n", "health.outlier.consecutive_500", 10, []string{"unknown key"}},
		{"health path relative", minimal + "health:\n  path: health\n", "health.path", 9, []string{`"health"`, "/"}},
		{"max body negative", minimal + "proxy:\n  max_body_bytes: -1\n", "proxy.max_body_bytes", 9, []string{"-1"}},
		{"negative duration", minimal + "proxy:\n  idle_timeout: -5s\n", "proxy.idle_timeout", 9, []string{"negative", "-5s"}},
		{"negative client write timeout", minimal + "proxy:\n  client_write_timeout: -1s\n", "proxy.client_write_timeout", 9, []string{"negative", "-1s"}},
		{"zero connect timeout", minimal + "proxy:\n  connect_timeout: 0s\n", "proxy.connect_timeout", 9, []string{"positive", "0s"}},
		{"buffered below body limit", minimal + "proxy:\n  max_buffered_bytes: 1024\n", "proxy.max_buffered_bytes", 9, []string{"1024", "proxy.max_body_bytes"}},
		{"bad balancer", minimal + "balancer: random\n", "balancer", 8, []string{`"random"`, "least_outstanding"}},
		{"admin listen equals listen", minimal + "listen: 127.0.0.1:9000\nadmin:\n  listen: 127.0.0.1:9000\n", "admin.listen", 10, []string{`"127.0.0.1:9000"`}},
		// Regression: the same address written two ways passed, and the
		// second listener failed at bind time (exit 1, after the start).
		{"admin listen localhost, listen 127.0.0.1", minimal + "listen: 127.0.0.1:9000\nadmin:\n  listen: localhost:9000\n", "admin.listen", 10, []string{`"localhost:9000"`, `"127.0.0.1:9000"`}},
		{"listen wildcard, admin 0.0.0.0", minimal + "listen: :9000\nadmin:\n  listen: 0.0.0.0:9000\n", "admin.listen", 10, []string{`"0.0.0.0:9000"`}},
		{"preview ::1, listen localhost", minimal + "listen: localhost:9000\npreview:\n  listen: '[::1]:9000'\n", "preview.listen", 10, []string{`"[::1]:9000"`}},
		{"preview wildcard, admin on a port of it", minimal + "admin:\n  listen: 127.0.0.1:9001\npreview:\n  listen: '[::]:9001'\n", "preview.listen", 11, []string{`"[::]:9001"`}},
		// Regression: a relative state_dir was taken silently, relative to
		// wherever cutover started (/ under systemd).
		{"state_dir relative", minimal + "state_dir: ./state\n", "state_dir", 8, []string{`"./state"`, "absolute"}},
		{"listen not host:port", minimal + "listen: localhost\n", "listen", 8, []string{`"localhost"`}},
		{"pools a list", "pools: [blue, green]\n", "pools", 1, []string{"list"}},
		{"negative gpus per replica", strings.Replace(minimal, "    model: m-2\n", "    model: m-2\n    gpus_per_replica: -1\n", 1), "pools.green.gpus_per_replica", 7, []string{"-1", "0 or more"}},
		{"replicas a string", strings.Replace(minimal, "[http://127.0.0.1:8001]", "http://127.0.0.1:8001", 1),
			"pools.blue.replicas", 4, []string{"want a list"}},
		{"top level a list", "- pools\n", "(top level)", 1, []string{"mapping"}},
		// Regressions: yaml.v3 truncated a fraction into an integer
		// (min_ready 0.5 meant all replicas), and a NUL in a hook's
		// command passed the check to fail at the first promote.
		{"fraction for an integer", minimal + "rollout:\n  min_ready: 0.5\n", "rollout.min_ready", 9, []string{`"0.5"`, "whole number"}},
		{"fraction for a size", minimal + "proxy:\n  max_body_bytes: 1.5\n", "proxy.max_body_bytes", 9, []string{`"1.5"`, "whole number"}},
		{"exponent with a fraction", minimal + "health:\n  rise: 15e-1\n", "health.rise", 9, []string{"whole number"}},
		{"infinity for an integer", minimal + "health:\n  rise: .inf\n", "health.rise", 9, []string{"whole number"}},
		{"NUL in a command", minimal + "hooks:\n  on_promote:\n    - command: [sh, -c, \"echo \\0 done\"]\n", "hooks.on_promote[0].command[2]", 10, []string{"NUL"}},
		{"invalid YAML", "pools:\n  blue: [\n", "(file)", 0, []string{"not valid YAML"}},
		{"tab indentation", "pools:\n\tblue: {}\n", "(file)", 0, []string{"not valid YAML"}},
		{"empty file", "", "(file)", 0, []string{"empty"}},
		{"only a comment", "# nothing here\n", "(file)", 0, []string{"empty"}},
		{"duplicate key", minimal + "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n", "(file)", 0, []string{"listen"}},
		// Regression: a pool named like a key path with a negative index
		// made lineOf index a node's children at -1 and panic.
		{"pool name with negative index", minimal + "  blue.replicas[-1]: {}\n", "pools.blue.replicas[-1]", 4, []string{"unknown pool"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.yaml))
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want an error naming %s", c, tt.key)
			}
			if c != nil {
				t.Errorf("Parse returned a config along with error %v", err)
			}
			f := fieldError(t, err, tt.key)
			if f.Line != tt.line {
				t.Errorf("%s: line %d, want %d", tt.key, f.Line, tt.line)
			}
			for _, s := range tt.msg {
				if !strings.Contains(f.Msg, s) {
					t.Errorf("%s: message %q does not mention %q", tt.key, f.Msg, s)
				}
			}
		})
	}
}

// fieldError returns the FieldError of err (a *config.Error) named key.
func fieldError(t *testing.T, err error, key string) *config.FieldError {
	t.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	if !config.IsInvalid(err) {
		t.Errorf("IsInvalid(%v) = false", err)
	}
	for _, f := range ce.Fields {
		if f.Key == key {
			return f
		}
	}
	t.Fatalf("no error for key %s in:\n%v", key, err)
	return nil
}

func TestParseReportsEveryField(t *testing.T) {
	_, err := config.Parse([]byte(minimal + "balancer: x\nhealth: {rise: 0, fall: 0}\n"))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *config.Error", err)
	}
	var keys []string
	for _, f := range ce.Fields {
		keys = append(keys, f.Key)
	}
	if want := []string{"balancer", "health.fall", "health.rise"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, good, minimal)
	writeFile(t, bad, minimal+"balancer: random\n")

	if _, err := config.Load(good); err != nil {
		t.Errorf("Load(good): %v", err)
	}

	_, err := config.Load(bad)
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load(bad) = %v, want a *config.Error", err)
	}
	if ce.File != bad || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "balancer (line 8)") {
		t.Errorf("Load(bad) error %q should name the file and the key with its line", err)
	}

	// Bounded (a regression: /dev/zero was read until memory ran out).
	big := filepath.Join(dir, "big.yaml")
	writeFile(t, big, minimal+"# "+strings.Repeat("x", config.MaxFileBytes)+"\n")
	if _, err := config.Load(big); !config.IsInvalid(err) || !strings.Contains(err.Error(), "over 1048576 bytes") {
		t.Errorf("Load(big) = %v, want an invalid config naming the limit", err)
	}

	_, err = config.Load(filepath.Join(dir, "missing.yaml"))
	if err == nil || config.IsInvalid(err) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error that is not an invalid config", err)
	}
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	emptyFile := filepath.Join(dir, "empty")
	writeFile(t, tokenFile, "  s3cret\n")
	writeFile(t, emptyFile, " \n")
	twoLines, nul := filepath.Join(dir, "two"), filepath.Join(dir, "nul")
	writeFile(t, twoLines, "tok1\ntok2\n")
	writeFile(t, nul, "\xff\xfe\x00bin")

	tests := []struct {
		name    string
		env     string
		file    string
		want    string
		wantErr []string
	}{
		{name: "env wins over file", env: "from-env\n", file: tokenFile, want: "from-env"},
		{name: "env only", env: "from-env", want: "from-env"},
		{name: "file read and trimmed", file: tokenFile, want: "s3cret"},
		{name: "blank env falls back to file", env: "  ", file: tokenFile, want: "s3cret"},
		{name: "empty file", file: emptyFile, wantErr: []string{emptyFile, "empty"}},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: []string{"admin.token_file", "nope"}},
		{name: "neither", wantErr: []string{config.TokenEnv, "admin.token_file"}},
		// Tokens no HTTP client can send (a regression: accepted, then
		// every CLI call failed as "admin API unreachable").
		{name: "two lines", file: twoLines, wantErr: []string{"admin.token_file", twoLines, "more than one line"}},
		{name: "binary", file: nul, wantErr: []string{"admin.token_file", "control byte 0x00 at offset 2"}},
		{name: "control in env", env: "abc\x01", wantErr: []string{config.TokenEnv, "control byte 0x01"}},
		{name: "space inside env, as before", env: "abc def", want: "abc def"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(config.TokenEnv, tt.env)
			c := config.Default()
			c.Admin.TokenFile = tt.file
			got, err := c.AdminToken()
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Errorf("AdminToken() = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("AdminToken() = %q, want an error", got)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestNormalizeReplicaURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "http://10.0.0.1:8000", "http://10.0.0.1:8000"},
		{"trailing slash", "http://10.0.0.1:8000/", "http://10.0.0.1:8000"},
		{"base path", "https://llm.internal/v2//", "https://llm.internal/v2"},
		{"ipv6", "http://[::1]:8000/", "http://[::1]:8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.NormalizeReplicaURL(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("NormalizeReplicaURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "health: {interval: 5, rise: abc}\nproxy: {max_body_bytes: -1}\n"))
	f.Add([]byte("pools:\n  blue: &p {model: m, replicas: [http://a:1]}\n  green: *p\n"))
	f.Add([]byte("pools: {blue: {replicas: [x]}, blue.replicas[0]: {}}\n"))
	f.Add([]byte("- [\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := config.Parse(b)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) || len(ce.Fields) == 0 {
			t.Fatalf("Parse error %v (%T) is not a *config.Error with fields", err, err)
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheck: config check accepts what serve would start with and
// exits 2 naming the key for what serve would refuse, including problems
// only found when the files the config names are read.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A busy listen address: check binds nothing, so it does not mind.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	stateDir := filepath.Join(dir, "state-not-created")
	base := serveConfig{listen: busy.Addr().String(), admin: freeAddr(t), stateDir: stateDir,
		blue: []string{"http://127.0.0.1:1"}}
	noToken := []string{"CUTOVER_ADMIN_TOKEN="}
	withToken := []string{"CUTOVER_ADMIN_TOKEN=x"}
	longToken := []string{"CUTOVER_ADMIN_TOKEN=" + strings.Repeat("k", 32)}

	tests := []struct {
		name     string
		admin    string // added to the admin mapping
		extra    string // appended to the config
		env      []string
		wantCode int
		want     []string // in stdout when 0, else in stderr
		weak     bool     // exit 0 with a warning about a short admin token
	}{
		{name: "ok with token file", admin: "  token_file: " + tokenFile + "\n", env: noToken, wantCode: 0, want: []string{": ok"}, weak: true},
		{name: "ok with token env", env: withToken, wantCode: 0, want: []string{": ok"}, weak: true},
		{name: "ok with a long token", env: longToken, wantCode: 0, want: []string{": ok"}},
		{name: "unknown key", extra: "retention: 1h\n", env: withToken, wantCode: 2, want: []string{"retention", "unknown key"}},
		{name: "bad duration", extra: "proxy: {drain_timeout: soon}\n", env: withToken, wantCode: 2, want: []string{"proxy.drain_timeout", "soon"}},
		{name: "shrink_to without shrink", extra: "rollout: {retention_mode: sleep, shrink_to: 1}\n", env: withToken, wantCode: 2, want: []string{"rollout.shrink_to", "only meaningful with rollout.retention_mode shrink"}},
		{name: "shrink_to zero", extra: "rollout: {retention_mode: shrink, shrink_to: 0}\n", env: withToken, wantCode: 2, want: []string{"rollout.shrink_to", "at least 1"}},
		{name: "no admin token", env: noToken, wantCode: 2, want: []string{"CUTOVER_ADMIN_TOKEN", "token_file"}},
		{name: "missing client keys file", extra: "auth: {api_keys_file: /nonexistent/keys}\n", env: withToken, wantCode: 2, want: []string{"auth.api_keys_file", "/nonexistent/keys"}},
		{name: "missing certificate", extra: "tls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}\n", env: withToken, wantCode: 2, want: []string{"tls", "/nonexistent/c.pem"}},
		{name: "ok with tracing", extra: "tracing: {endpoint: 127.0.0.1:4317, protocol: grpc, insecure: true, sample_ratio: 0.1}\n", env: longToken, wantCode: 0, want: []string{": ok"}},
		{name: "bad tracing protocol", extra: "tracing: {endpoint: http://127.0.0.1:4318, protocol: zipkin}\n", env: withToken, wantCode: 2, want: []string{"tracing.protocol", "zipkin"}},
		{name: "read token equals admin token", admin: "  token_file: " + tokenFile + "\n  read_token_file: " + tokenFile + "\n", env: noToken, wantCode: 2, want: []string{"admin.read_token_file", "admin token itself"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.extra = tt.extra
			path := c.write(t)
			if tt.admin != "" {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				admin := "admin:\n  listen: " + c.admin + "\n"
				if err := os.WriteFile(path, []byte(strings.Replace(string(b), admin, admin+tt.admin, 1)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, stdout, stderr := runCLI(t, tt.env, "config", "check", "--config", path)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.wantCode, stdout, stderr)
			}
			got := stderr
			if code == 0 {
				got = stdout
				if warned := strings.Contains(stderr, "warning: the admin token is"); warned != tt.weak {
					t.Errorf("short-token warning %v, want %v: stderr %q", warned, tt.weak, stderr)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output %q does not mention %q", got, w)
				}
			}
		})
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Errorf("config check touched state_dir %s: %v", stateDir, err)
	}
	for _, args := range [][]string{
		{"config", "check"},
		{"config", "check", "--config", filepath.Join(dir, "nope.yaml")},
		{"config"},
		{"config", "check", "extra-arg", "--config", tokenFile},
	} {
		if code, _, stderr := runCLI(t, withToken, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %s", args, code, stderr)
		}
	}
}

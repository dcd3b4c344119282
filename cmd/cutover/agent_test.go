package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentBadConfigExitsTwo(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ yaml, key string }{
		{"listen: 127.0.0.1:0\ntoken_file: " + tok + "\ngpus: 2\nports: 9000\ncommand: [x, '{port}']\nlog_dir: " + dir + "\n", "ports"},
		{"listen: 127.0.0.1:0\ntoken_file: " + tok + "\ngpus: 2\nports: 9000-9010\ncommand: [x, '{port}']\nlog_dir: " + dir + "\nbogus: 1\n", "bogus"},
		{"listen: 127.0.0.1:0\ntoken_file: " + filepath.Join(dir, "none") + "\ngpus: 2\nports: 9000-9010\ncommand: [x, '{port}']\nlog_dir: " + dir + "\n", "token_file"},
	} {
		p := filepath.Join(dir, "agent.yaml")
		if err := os.WriteFile(p, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runCLI(t, nil, "agent", "--config", p)
		if code != exitUsage || !strings.Contains(stderr, c.key) {
			t.Errorf("bad %s: exit %d, stderr %q; want 2 naming the key", c.key, code, stderr)
		}
	}
}

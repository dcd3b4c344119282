package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/cutover-dev/cutover/internal/auth"
)

// TestHashKey: `cutover auth hash-key` prints a keys-file line that
// authenticates the key read from stdin (or the one --generate shows on
// stderr), never holding the key itself.
func TestHashKey(t *testing.T) {
	run := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"auth", "hash-key"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	check := func(line, key, id string) {
		t.Helper()
		if strings.Contains(line, key) {
			t.Fatalf("line %q holds the key", line)
		}
		keys, err := auth.Parse([]byte(line))
		if err != nil {
			t.Fatalf("the printed line does not parse: %v", err)
		}
		ks := auth.New(keys)
		if i := ks.Authenticate("Bearer " + key); i < 0 || ks.ID(i) != id {
			t.Fatalf("the printed line does not authenticate the key as %s", id)
		}
	}
	out, stderr, code := run("sk-typed\n", "--id", "team-a", "--model", "llama", "--model", "llama-70b")
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), " llama,llama-70b") {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, stderr)
	}
	check(out, "sk-typed", "team-a")

	out, stderr, code = run("", "--id", "ci", "--generate")
	key := strings.TrimSpace(stderr[strings.LastIndex(stderr, " ")+1:])
	if code != 0 || !strings.HasPrefix(key, "sk-cutover-") {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, stderr)
	}
	check(out, key, "ci")

	for _, args := range [][]string{{}, {"--id", "bad/id"}} {
		if _, stderr, code := run("sk-x\n", args...); code != 2 {
			t.Errorf("hash-key %v: exit %d (%s), want 2", args, code, stderr)
		}
	}
	if _, stderr, code := run("", "--id", "a"); code != 2 || !strings.Contains(stderr, "stdin") {
		t.Errorf("hash-key without a key: exit %d (%s), want 2 naming stdin", code, stderr)
	}
}

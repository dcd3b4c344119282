package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLineAndAuthenticate(t *testing.T) {
	var lines []string
	for _, k := range []struct {
		id, key string
		models  []string
	}{{"team-a", "sk-a", nil}, {"ci", "sk-ci", []string{"llama", "llama-70b"}}} {
		l, err := Line(k.id, k.key, k.models)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(l, k.key) {
			t.Fatalf("line %q holds the key itself", l)
		}
		lines = append(lines, l)
	}
	path := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(path, []byte("# clients\n\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, authz string
		wantID      string // "" means refused
	}{
		{"team key", "Bearer sk-a", "team-a"},
		{"scheme in any case", "bearer sk-ci", "ci"},
		{"missing", "", ""},
		{"wrong key", "Bearer sk-b", ""},
		{"no scheme", "sk-a", ""},
		{"basic scheme", "Basic c2stYQ==", ""},
		{"empty bearer", "Bearer ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := ks.Authenticate(tt.authz)
			switch {
			case tt.wantID == "" && i >= 0:
				t.Fatalf("Authenticate(%q) = key %s, want refused", tt.authz, ks.ID(i))
			case tt.wantID != "" && (i < 0 || ks.ID(i) != tt.wantID):
				t.Fatalf("Authenticate(%q) = %d, want key %s", tt.authz, i, tt.wantID)
			}
		})
	}
	ci := ks.Authenticate("Bearer sk-ci")
	for model, want := range map[string]bool{"llama": true, "llama-70b": true, "other": false, "": false} {
		if got := ks.Allows(ci, model); got != want {
			t.Errorf("ci allows %q = %v, want %v", model, got, want)
		}
	}
	if a := ks.Authenticate("Bearer sk-a"); !ks.Allows(a, "anything") || !ks.Allows(a, "") {
		t.Error("a key without models must allow any")
	}
	c := ks.Counts()
	if c.Requests["team-a"] != 2 || c.Requests["ci"] != 2 || c.Forbidden["ci"] != 2 || c.Rejected != 5 {
		t.Errorf("counts %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	h := strings.Repeat("ab", 32)
	tests := []struct {
		name, file, want string
	}{
		{"plaintext key", "a sk-plaintext\n", "line 1: key a: the hash must be sha256:"},
		{"short hash", "a sha256:abcd\n", "line 1"},
		{"bad id", "a/b sha256:" + h + "\n", `line 1: key id "a/b"`},
		{"duplicate id", "a sha256:" + h + "\na sha256:" + strings.Repeat("cd", 32) + "\n", `line 2: key id "a" already on line 1`},
		{"duplicate hash", "a sha256:" + h + "\nb sha256:" + h + "\n", "line 2: key b has the same hash as line 1"},
		{"too many fields", "a sha256:" + h + " m1 m2\n", "line 1: want"},
		{"empty", "# nothing\n", "no keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want an error with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "sk-plaintext") {
				t.Errorf("error %q repeats a key", err)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	a, b := Generate(), Generate()
	if a == b || !strings.HasPrefix(a, "sk-cutover-") || len(a) != len("sk-cutover-")+48 {
		t.Fatalf("Generate = %q, %q", a, b)
	}
}

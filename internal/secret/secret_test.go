package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		want          string
		wantErr       string // substring; "" means success
	}{
		{"trailing newline trimmed", "k-123\n", "k-123", ""},
		{"surrounding blanks trimmed", "  k-123 \r\n", "k-123", ""},
		{"empty", "\n", "", "is empty"},
		{"two lines", "a\nb\n", "", "more than one line"},
		{"a NUL", "k-1\x00k-2", "", "control byte 0x00 at offset 3"},
		{"a DEL", "k-1\x7f", "", "control byte 0x7f at offset 3"},
		// What worked before stays: Go's client sends it, and the
		// gateway keeps the inner space of a bearer token.
		{"a space and a tab inside", "k-1 k\t2", "k-1 k\t2", ""},
		{"not ASCII", "k-é", "k-é", ""},
		{"base64", "a+b/c==", "a+b/c==", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadFile(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), p) {
					t.Fatalf("ReadFile = %q, %v; want an error naming %s with %q", got, err, p, tt.wantErr)
				}
				if tt.content != "\n" && strings.Contains(err.Error(), strings.TrimSpace(tt.content)) {
					t.Errorf("error %q repeats the secret", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ReadFile = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("ReadFile of a missing file = %v, want an error naming it", err)
	}
}

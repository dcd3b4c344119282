package config

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestShippedConfigsParse: every example configuration and the README's
// configuration block are valid, so the docs cannot rot.
func TestShippedConfigsParse(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	more, _ := filepath.Glob("../../examples/*/cutover.yaml")
	files = append(files, more...)
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("README has no yaml block")
	}
	for i, b := range blocks {
		if _, err := Parse(b[1]); err != nil {
			t.Errorf("README yaml block %d: %v", i, err)
		}
	}
}

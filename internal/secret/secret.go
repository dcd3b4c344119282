// Package secret reads secrets (API keys, tokens) from files, so that they
// never appear in a configuration file, a command line or a log line.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// ReadFile returns the contents of path without surrounding whitespace
// (a trailing newline, say). A missing, unreadable or empty file is an
// error naming the file; the error never includes the contents.
func ReadFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("secret file %s holds more than one line; put only the key in it", path)
	}
	if err := Check(s); err != nil {
		return "", fmt.Errorf("secret file %s %w", path, err)
	}
	return s, nil
}

// Check refuses a secret with a control byte other than tab (NUL, CR, LF,
// DEL and the like): no HTTP header can carry it (Go's client refuses to
// send such a header, so every request made with it would fail), and in a
// file it is a mistake (a binary file, a second line). The error completes
// "secret file F ..." and never includes the secret.
func Check(s string) error {
	for i := range len(s) {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("holds control byte 0x%02x at offset %d: a key, token or password is one line of text (e.g. `openssl rand -hex 32`)", c, i)
		}
	}
	return nil
}

// Bearer returns the Authorization header value for an API key.
func Bearer(key string) string { return "Bearer " + key }

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
	return s, nil
}

// Bearer returns the Authorization header value for an API key.
func Bearer(key string) string { return "Bearer " + key }

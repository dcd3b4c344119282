package pool

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// NormalizeURL checks that s is an http(s) base URL with a host and
// no query, and returns it without a trailing slash.
func NormalizeURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("malformed replica URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("replica URL %q must start with http:// or https://", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("replica URL %q has no host", s)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("replica URL %q must not carry a query, fragment or user info", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("replica URL %q has a bad port %q", s, p)
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u.String(), nil
}

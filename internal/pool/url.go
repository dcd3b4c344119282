package pool

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// NormalizeURL checks that s is an http(s) base URL with a host and
// no query, and returns it without a trailing slash.
func NormalizeURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		// 127.0.0.1:8000 would parse as a bad path and localhost:8000 as
		// scheme "localhost": say what is missing instead.
		return "", fmt.Errorf("replica URL %q is missing http:// or https:// (such as http://%s)", s, s)
	}
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
	if strings.Contains(u.Host, "%") {
		return "", fmt.Errorf("replica URL %q: a host with an IPv6 zone or escapes is not supported", s)
	}
	for _, c := range u.Hostname() {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':') {
			// The host is written into nginx and HAProxy configs: only
			// the characters of DNS names and IP addresses.
			return "", fmt.Errorf("replica URL %q has a bad character %q in its host", s, c)
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	out := u.String()
	if v, err := url.Parse(out); err != nil || v.Host != u.Host {
		return "", fmt.Errorf("replica URL %q does not survive being written back (%q)", s, out)
	}
	return out, nil
}

// ReplicaKey is what two normalized replica URLs share when they name the
// same server: the host in lower case, an IP address in its canonical
// form (an IPv4-mapped IPv6 address as IPv4), the port without leading
// zeros and the scheme's default port dropped (http://H:80, http://h and
// http://h:080 are one replica). Duplicate checks compare keys; the URL
// itself is kept as written.
func ReplicaKey(norm string) string {
	u, err := url.Parse(norm)
	if err != nil {
		return norm
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	if n, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(n)
	}
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	switch {
	case port != "":
		u.Host = net.JoinHostPort(host, port)
	case strings.Contains(host, ":"):
		u.Host = "[" + host + "]"
	default:
		u.Host = host
	}
	return u.String()
}

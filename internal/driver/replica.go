package driver

import (
	"fmt"
	"net"
	"strings"

	"github.com/cutover-dev/cutover/internal/pool"
)

// hostPort returns the address a load balancer's server line needs for r,
// with the scheme's default port filled in. A load balancer's server is an
// address only, so a replica with a path prefix cannot be one.
func hostPort(r *pool.Replica) (host, port string, err error) {
	u := r.URL
	if strings.Trim(u.Path, "/") != "" {
		return "", "", fmt.Errorf("replica %s has a path prefix: a load balancer server is host:port only", r.Name)
	}
	host, port = u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if host == "" || port == "" {
		return "", "", fmt.Errorf("replica %s: no host:port", r.Name)
	}
	return host, port, nil
}

// address is hostPort joined, with IPv6 addresses in brackets.
func address(r *pool.Replica) (string, error) {
	h, p, err := hostPort(r)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(h, p), nil
}

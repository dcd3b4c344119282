// Package selfaddr tells whether a replica URL leads back to one of the
// gateway's own listeners: a pool whose replica is the gateway itself
// sends every request round in a loop (the hops header ends it with 508,
// but every client request fails), so a deploy or a switch onto such a
// pool is refused before it happens.
//
// The rule is exact rather than heuristic: a URL reaches a listener when
// their ports are equal and the URL's host is an address the listener
// accepts on this machine — the listener's own address, or, for a
// wildcard listener (empty host, 0.0.0.0, ::), any address of this
// machine (loopback or an interface's). Another process cannot listen on
// the same port and address, so a match is the gateway. A replica on
// another host, or in another network namespace, never matches; a loop
// through another gateway is left to the hops header.
package selfaddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Listener is one of the gateway's listening addresses, with what it is
// (such as "listen" or "admin.listen") for messages.
type Listener struct {
	// Role names the listener in messages, such as "listen".
	Role string
	// Addr is its host:port, as bound (a port of 0 never matches).
	Addr string
}

// Match says which listener a URL reaches.
type Match struct {
	Listener
	// Host is the address the URL's host stood for.
	Host netip.Addr
}

// String describes the match for an error message.
func (m Match) String() string {
	return fmt.Sprintf("the gateway's own %s %s", m.Role, m.Addr)
}

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Checker finds URLs that reach the listeners it was given.
type Checker struct {
	listeners []Listener
	// Local returns the machine's addresses; nil means the interfaces'
	// (net.InterfaceAddrs). Loopback addresses are always local.
	Local func() ([]netip.Addr, error)
	// Resolver looks up host names; nil means net.DefaultResolver. Use
	// Static to look nothing up.
	Resolver Resolver
	// Static, when set, makes the checker pure: no lookups, no interface
	// list. Only loopback addresses, "localhost" and the listeners'
	// literal addresses are compared then.
	Static bool
}

// New returns a Checker for the listeners; those with an empty Addr are
// left out.
func New(ls ...Listener) *Checker {
	c := &Checker{}
	for _, l := range ls {
		if l.Addr != "" {
			c.listeners = append(c.listeners, l)
		}
	}
	return c
}

// Reaches reports whether rawURL (an http or https replica URL) reaches
// one of the listeners. Errors of the lookups are not reported: a host
// that does not resolve reaches nothing here (its health checks fail
// anyway).
func (c *Checker) Reaches(ctx context.Context, rawURL string) (Match, bool) {
	if c == nil || len(c.listeners) == 0 {
		return Match{}, false
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return Match{}, false
	}
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		default:
			port = "80"
		}
	}
	hosts := c.addrsOf(ctx, u.Hostname())
	if len(hosts) == 0 {
		return Match{}, false
	}
	var local []netip.Addr
	localDone := false
	for _, l := range c.listeners {
		lh, lp, err := net.SplitHostPort(l.Addr)
		if err != nil || !c.samePort(lp, port) {
			continue
		}
		wild := lh == ""
		var lips []netip.Addr
		if !wild {
			if ip, err := netip.ParseAddr(lh); err == nil && ip.Unmap().IsUnspecified() {
				wild = true
			} else {
				lips = c.addrsOf(ctx, lh)
			}
		}
		for _, h := range hosts {
			if !wild {
				for _, lip := range lips {
					if lip == h {
						return Match{Listener: l, Host: h}, true
					}
				}
				continue
			}
			if h.IsLoopback() {
				return Match{Listener: l, Host: h}, true
			}
			if c.Static {
				continue
			}
			if !localDone {
				local, localDone = c.local(), true
			}
			for _, a := range local {
				if a == h {
					return Match{Listener: l, Host: h}, true
				}
			}
		}
	}
	return Match{}, false
}

// samePort compares a listener's port (a number, or a service name
// unless Static) with a URL's (a number).
func (c *Checker) samePort(listen, url string) bool {
	if listen == url {
		return listen != "0"
	}
	n, err := strconv.Atoi(listen)
	if err != nil {
		if c.Static {
			return false
		}
		p, err := net.LookupPort("tcp", listen)
		if err != nil {
			return false
		}
		n = p
	}
	m, err := strconv.Atoi(url)
	return err == nil && n != 0 && n == m
}

// addrsOf is what host stands for: itself when an address, loopback for
// "localhost", else what the resolver says (nothing when Static).
func (c *Checker) addrsOf(ctx context.Context, host string) []netip.Addr {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap().WithZone("")}
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	}
	if c.Static {
		return nil
	}
	r := c.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap().WithZone("")
	}
	return ips
}

// local is the machine's addresses, loopback ones aside (those always
// count).
func (c *Checker) local() []netip.Addr {
	if c.Local != nil {
		as, _ := c.Local()
		return as
	}
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range ifs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, na.Unmap().WithZone(""))
		}
	}
	return out
}

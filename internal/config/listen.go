package config

import (
	"net"
	"net/netip"
	"strings"
)

// listenClash reports whether listeners on a and b (host:port) cannot
// both bind: the same port (not 0, which picks a free one) and hosts that
// overlap, however each is written — "localhost" is 127.0.0.1 and ::1, a
// wildcard (empty host, 0.0.0.0, ::) takes the port on every address.
// Other host names are compared as written: Validate looks nothing up.
func listenClash(a, b string) bool {
	ha, pa, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	hb, pb, err := net.SplitHostPort(b)
	if err != nil || pa != pb || pa == "0" {
		return false
	}
	xa, xb := listenHosts(ha), listenHosts(hb)
	if xa == nil || xb == nil {
		return true // a wildcard
	}
	for _, h := range xa {
		for _, k := range xb {
			if h == k {
				return true
			}
		}
	}
	return false
}

// listenHosts returns the addresses a listen host stands for, normalised;
// nil for a wildcard.
func listenHosts(h string) []string {
	if strings.EqualFold(h, "localhost") {
		return []string{"127.0.0.1", "::1"}
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		if h == "" {
			return nil
		}
		return []string{strings.ToLower(h)}
	}
	ip = ip.Unmap().WithZone("")
	if ip.IsUnspecified() {
		return nil
	}
	return []string{ip.String()}
}

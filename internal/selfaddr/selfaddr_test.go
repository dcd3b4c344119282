package selfaddr

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := f[host]; ok {
		return append([]netip.Addr(nil), ips...), nil
	}
	return nil, errors.New("no such host")
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestReaches(t *testing.T) {
	res := fakeResolver{
		"gpu-7.internal": addrs("10.0.0.7"),
		"me.internal":    addrs("10.0.0.5"),
		"lb.internal":    addrs("10.0.0.9", "10.0.0.5"),
	}
	local := func() ([]netip.Addr, error) { return addrs("10.0.0.5", "fd00::5"), nil }
	tests := []struct {
		name      string
		listeners []Listener
		static    bool
		url       string
		want      string // the matched listener's role, "" for none
	}{
		{"same loopback address and port", []Listener{{"listen", "127.0.0.1:8080"}}, false, "http://127.0.0.1:8080", "listen"},
		{"another port", []Listener{{"listen", "127.0.0.1:8080"}}, false, "http://127.0.0.1:8000", ""},
		{"localhost to a loopback listener", []Listener{{"listen", "127.0.0.1:8080"}}, false, "http://localhost:8080/v1", "listen"},
		{"another loopback address than the bound one", []Listener{{"listen", "127.0.0.1:8080"}}, false, "http://127.0.0.2:8080", ""},
		{"wildcard takes any loopback", []Listener{{"listen", "0.0.0.0:8080"}}, false, "http://127.0.0.2:8080", "listen"},
		{"wildcard takes an interface address", []Listener{{"listen", ":8080"}}, false, "http://10.0.0.5:8080", "listen"},
		{"wildcard ipv6 takes an interface address", []Listener{{"listen", "[::]:8080"}}, false, "http://[fd00::5]:8080", "listen"},
		{"wildcard, another host", []Listener{{"listen", "0.0.0.0:8080"}}, false, "http://10.0.0.7:8080", ""},
		{"a name resolving to this machine", []Listener{{"listen", "0.0.0.0:8080"}}, false, "http://me.internal:8080", "listen"},
		{"a name with one of its addresses here", []Listener{{"listen", "0.0.0.0:8080"}}, false, "http://lb.internal:8080", "listen"},
		{"a name resolving elsewhere", []Listener{{"listen", "0.0.0.0:8080"}}, false, "http://gpu-7.internal:8080", ""},
		{"a name that does not resolve", []Listener{{"listen", "0.0.0.0:8080"}}, false, "http://nowhere.internal:8080", ""},
		{"specific interface listener, same address", []Listener{{"listen", "10.0.0.5:8080"}}, false, "http://10.0.0.5:8080", "listen"},
		{"specific interface listener, loopback", []Listener{{"listen", "10.0.0.5:8080"}}, false, "http://127.0.0.1:8080", ""},
		{"default http port", []Listener{{"listen", "0.0.0.0:80"}}, false, "http://localhost", "listen"},
		{"default https port", []Listener{{"admin.listen", "0.0.0.0:443"}}, false, "https://localhost/", "admin.listen"},
		{"service name port", []Listener{{"listen", "0.0.0.0:http"}}, false, "http://127.0.0.1:80", "listen"},
		{"port 0 never matches", []Listener{{"listen", "127.0.0.1:0"}}, false, "http://127.0.0.1:0", ""},
		{"the admin listener", []Listener{{"listen", "127.0.0.1:8080"}, {"admin.listen", "127.0.0.1:9090"}}, false, "http://127.0.0.1:9090", "admin.listen"},
		{"ipv4-mapped ipv6", []Listener{{"listen", "127.0.0.1:8080"}}, false, "http://[::ffff:127.0.0.1]:8080", "listen"},
		{"ipv6 loopback to a wildcard", []Listener{{"listen", ":8080"}}, false, "http://[::1]:8080", "listen"},
		{"static: loopback still matches", []Listener{{"listen", "0.0.0.0:8080"}}, true, "http://localhost:8080", "listen"},
		{"static: no interface list", []Listener{{"listen", "0.0.0.0:8080"}}, true, "http://10.0.0.5:8080", ""},
		{"static: no lookups", []Listener{{"listen", "0.0.0.0:8080"}}, true, "http://me.internal:8080", ""},
		{"static: literal listener address", []Listener{{"listen", "10.0.0.5:8080"}}, true, "http://10.0.0.5:8080", "listen"},
		{"static: no service names", []Listener{{"listen", "0.0.0.0:http"}}, true, "http://127.0.0.1:80", ""},
		{"no listeners", nil, false, "http://127.0.0.1:8080", ""},
		{"empty listener address left out", []Listener{{"preview.listen", ""}}, false, "http://127.0.0.1:8080", ""},
		{"not a URL", []Listener{{"listen", "127.0.0.1:8080"}}, false, "127.0.0.1:8080", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.listeners...)
			c.Static, c.Resolver, c.Local = tt.static, res, local
			m, ok := c.Reaches(context.Background(), tt.url)
			if got := map[bool]string{true: m.Role, false: ""}[ok]; got != tt.want {
				t.Fatalf("Reaches(%q) = %q (%v), want %q", tt.url, got, m, tt.want)
			}
		})
	}
}

// TestReachesBoundListener checks the default lookups (the interfaces'
// addresses, the system resolver) against a real listener.
func TestReachesBoundListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := New(Listener{Role: "listen", Addr: ln.Addr().String()})
	if m, ok := c.Reaches(context.Background(), "http://"+ln.Addr().String()); !ok || m.Role != "listen" {
		t.Fatalf("the bound address itself: %v %v", m, ok)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if m, ok := c.Reaches(context.Background(), "http://localhost:"+port+"/v1"); !ok {
		t.Fatalf("localhost: %v %v", m, ok)
	}
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if m, ok := c.Reaches(context.Background(), "http://"+other.Addr().String()); ok {
		t.Fatalf("another listener matched: %v", m)
	}
	var nilChecker *Checker
	if _, ok := nilChecker.Reaches(context.Background(), "http://"+ln.Addr().String()); ok {
		t.Fatal("a nil Checker matched")
	}
}

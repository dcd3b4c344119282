package gateway_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

// hangConnects makes connects to the loopback port addr hang: a
// listening socket with a backlog of 0 that never accepts, its queue
// filled by one connection, so the kernel drops further SYNs (the way a
// replica behind a black-holing firewall, or an overloaded one, looks).
func hangConnects(t *testing.T, addr string) {
	t.Helper()
	_, ps, _ := net.SplitHostPort(addr)
	port, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind %s: %v", addr, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	filler, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("filling the accept queue of %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = filler.Close() })
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		_ = c.Close()
		t.Skipf("connects to %s do not hang on this kernel", addr)
	}
}

// TestConnectTimeout: with proxy.connect_timeout short, a request that
// meets a replica whose connect hangs goes to the other replica well
// inside the client's patience (3 s); the 5 s default would lose it.
// Both kinds of proxy.client. The replica hangs after the start's health
// check passed, as one that goes away under traffic does.
func TestConnectTimeout(t *testing.T) {
	for _, client := range []string{"cutover", "net/http"} {
		t.Run(strings.ReplaceAll(client, "/", "-"), func(t *testing.T) {
			e := newEnv(t, envOptions{edit: func(c *config.Config) {
				c.Proxy.Client = client
				c.Proxy.ConnectTimeout = config.Duration(150 * time.Millisecond)
			}})
			victim := e.pools["blue"][0]
			victim.kill()
			hangConnects(t, victim.addr)
			for i := range 6 {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				res, err := e.chat(ctx, "model-v1", fmt.Sprintf("hello %d", i), i%2 == 1, "")
				cancel()
				if err != nil || res.status != 200 {
					t.Fatalf("request %d: status %d, %v, body %s", i, res.status, err, res.body)
				}
			}
			const series = `cutover_retries_total{pool="blue"} `
			m := scrapeMetrics(t, e)
			_, rest, _ := strings.Cut(m, series)
			if n, _, _ := strings.Cut(rest, "\n"); n == "" || n == "0" {
				t.Errorf("no request was retried after the hanging replica: %s%q", series, n)
			}
		})
	}
}

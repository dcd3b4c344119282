package tlsfile_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/tlsfile"
	"github.com/cutover-dev/cutover/internal/tlsfile/tlstest"
)

// TestReload: a listener serves cert A; after the files are replaced and
// Check (or Reload) runs, a new handshake sees cert B while a connection
// made before keeps working; a broken pair keeps the current certificate.
func TestReload(t *testing.T) {
	for _, trigger := range []string{"check", "reload"} {
		t.Run(trigger, func(t *testing.T) {
			ca := tlstest.NewCA(t, "test CA")
			dir := t.TempDir()
			certFile, keyFile := ca.WritePair(t, dir, "cert-A")
			c, addr := serveEcho(t, certFile, keyFile, "")
			client := &tls.Config{RootCAs: ca.Pool()}
			old := dial(t, addr, client, "cert-A")
			if changed, err := c.Check(); changed || err != nil {
				t.Fatalf("Check with unchanged files = %v, %v", changed, err)
			}
			ca.WritePair(t, dir, "cert-B")
			switch trigger {
			case "check":
				if changed, err := c.Check(); !changed || err != nil {
					t.Fatalf("Check after the files changed = %v, %v", changed, err)
				}
			case "reload":
				if err := c.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			dial(t, addr, client, "cert-B").Close()
			echo(t, old) // established before the reload: still works
			old.Close()

			if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
				t.Fatal(err)
			}
			if changed, err := c.Check(); changed || err == nil || !strings.Contains(err.Error(), keyFile) {
				t.Fatalf("Check with a broken key = %v, %v; want an error naming %s", changed, err, keyFile)
			}
			dial(t, addr, client, "cert-B").Close() // still served
		})
	}
}

func TestLoadErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	dir := t.TempDir()
	certFile, _ := ca.WritePair(t, dir, "x")
	if _, err := tlsfile.Load(certFile, dir+"/missing.pem"); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("Load with a missing key = %v, want an error naming it", err)
	}
	if _, err := tlsfile.LoadCAs(certFile + ".nope"); err == nil {
		t.Error("LoadCAs of a missing file succeeded")
	}
	junk := dir + "/junk.pem"
	_ = os.WriteFile(junk, []byte("junk"), 0o600)
	if _, err := tlsfile.LoadCAs(junk); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("LoadCAs of junk = %v", err)
	}
}

// TestClientCA: with a client CA, a client without a certificate from it
// fails the handshake; one with it passes.
func TestClientCA(t *testing.T) {
	ca, other := tlstest.NewCA(t, "server CA"), tlstest.NewCA(t, "client CA")
	dir := t.TempDir()
	certFile, keyFile := ca.WritePair(t, dir, "server")
	other.WriteCA(t, dir+"/clients.pem")
	_, addr := serveEcho(t, certFile, keyFile, dir+"/clients.pem")
	good := other.Pair(t, "operator")
	bad := ca.Pair(t, "intruder")
	for name, certs := range map[string][]tls.Certificate{"none": nil, "wrong CA": {bad}} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), Certificates: certs})
		if err == nil {
			// TLS 1.3: the refusal arrives with the first read.
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = conn.Write([]byte("ping\n"))
			_, err = bufio.NewReader(conn).ReadString('\n')
			conn.Close()
		}
		if err == nil {
			t.Errorf("client cert %s: the connection worked", name)
		}
	}
	conn := dial(t, addr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{good}}, "server")
	echo(t, conn)
	conn.Close()
}

// serveEcho loads the pair and serves an echo over TLS with it until the
// test ends.
func serveEcho(t *testing.T, certFile, keyFile, clientCAFile string) (*tlsfile.Cert, string) {
	t.Helper()
	c, err := tlsfile.Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.ServerConfig(clientCAFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go echoServer(ln)
	return c, ln.Addr().String()
}

func echoServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// dial connects and checks that the server presented a certificate named cn.
func dial(t *testing.T, addr string, cfg *tls.Config, cn string) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; got != cn {
		t.Fatalf("server presented %q, want %q", got, cn)
	}
	return conn
}

func echo(t *testing.T, c *tls.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || l != "ping\n" {
		t.Fatalf("echo: %q, %v", l, err)
	}
}

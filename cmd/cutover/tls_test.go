package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/tlsfile/tlstest"
)

// TestSIGHUPReloadsTLS: `cutover serve` with a TLS traffic listener
// presents cert A; after the files are replaced and SIGHUP is sent, a new
// handshake presents cert B, a connection opened before still works, and
// the process keeps running.
func TestSIGHUPReloadsTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := ca.WritePair(t, dir, "cert-A")
	adminDir := t.TempDir()
	adminCert, adminKey := ca.WritePair(t, adminDir, "admin")
	ca.WriteCA(t, adminDir+"/ca.pem")
	opDir := t.TempDir()
	opCert, opKey := ca.WritePair(t, opDir, "operator")
	c := serveConfig{listen: freeAddr(t), stateDir: t.TempDir(),
		blue: mockPool(t, "model-v1", 1), green: mockPool(t, "model-v2", 1),
		extra: fmt.Sprintf("tls: {cert_file: %s, key_file: %s}\n", certFile, keyFile)}
	// serveConfig has no field for admin TLS: its block follows admin.listen.
	c.admin = freeAddr(t) + fmt.Sprintf("\n  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}", adminCert, adminKey, adminDir+"/ca.pem")
	adminAddr := strings.SplitN(c.admin, "\n", 2)[0]
	p := start(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, "serve", "--config", c.write(t))
	trust := &tls.Config{RootCAs: ca.Pool()}
	op, err := tls.LoadX509KeyPair(opCert, opKey)
	if err != nil {
		t.Fatal(err)
	}
	waitAdmin(t, p, &api.Client{BaseURL: "https://" + adminAddr, Token: "secret", HTTP: &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{op}}}}})
	// The CLI reaches the mutual-TLS admin API with its TLS flags only.
	tlsFlags := []string{"--admin", "https://" + adminAddr, "--ca-file", adminDir + "/ca.pem", "--cert-file", opCert, "--key-file", opKey}
	if code, out, stderr := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, append([]string{"status", "--json"}, tlsFlags...)...); code != 0 || !strings.Contains(out, `"live"`) {
		t.Fatalf("status over mutual TLS: exit %d %s %s", code, out, stderr)
	}
	if code, _, _ := runCLI(t, []string{"CUTOVER_ADMIN_TOKEN=secret"}, append([]string{"status"}, tlsFlags[:4]...)...); code != 1 {
		t.Fatalf("status without a client certificate: exit %d, want 1", code)
	}
	cn := func(conn *tls.Conn) string { return conn.ConnectionState().PeerCertificates[0].Subject.CommonName }
	old, err := tls.Dial("tcp", c.listen, trust)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if got := cn(old); got != "cert-A" {
		t.Fatalf("served %q, want cert-A", got)
	}
	oldBR := bufio.NewReader(old)
	ping := func(conn *tls.Conn, br *bufio.Reader) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("health over TLS: %d", resp.StatusCode)
		}
	}
	ping(old, oldBR)

	ca.WritePair(t, dir, "cert-B")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.Dial("tcp", c.listen, trust)
		if err != nil {
			t.Fatalf("after SIGHUP: %v\n%s", err, p.stderr.String())
		}
		got := cn(conn)
		conn.Close()
		if got == "cert-B" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving %q 30s after SIGHUP\n%s", got, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ping(old, oldBR)
	select {
	case err := <-p.done:
		t.Fatalf("cutover exited after SIGHUP: %v", err)
	default:
	}
}

package gateway_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
	"github.com/cutover-dev/cutover/internal/tlsfile/tlstest"
)

// TestTLSListenersAndHTTPSReplicas: the traffic, preview and admin
// listeners serve TLS (the admin one asking for client certificates),
// the live pool's replicas are https behind a private CA
// (upstream_tls.ca_file), and a new certificate is taken on reload or
// file change: a new handshake sees it while a connection opened before
// keeps working.
func TestTLSListenersAndHTTPSReplicas(t *testing.T) {
	dir := t.TempDir()
	ca, replicaCA, operators := tlstest.NewCA(t, "gateway CA"), tlstest.NewCA(t, "replica CA"), tlstest.NewCA(t, "operator CA")
	trafficDir, adminDir, previewDir := filepath.Join(dir, "traffic"), filepath.Join(dir, "admin"), filepath.Join(dir, "preview")
	for _, d := range []string{trafficDir, adminDir, previewDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	trafficCert, trafficKey := ca.WritePair(t, trafficDir, "traffic-A")
	adminCert, adminKey := ca.WritePair(t, adminDir, "admin")
	previewCert, previewKey := ca.WritePair(t, previewDir, "preview")
	operators.WriteCA(t, filepath.Join(dir, "operators.pem"))
	replicaCA.WriteCA(t, filepath.Join(dir, "replicas.pem"))

	var httpsReplicas []string
	for range 2 {
		m, err := mockllm.New(mockllm.Config{Model: "model-v1", Tokens: 4})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(m)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{replicaCA.Pair(t, "replica")}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		httpsReplicas = append(httpsReplicas, srv.URL)
	}
	e := newEnv(t, envOptions{mock: mockllm.Config{Tokens: 4}, edit: func(c *config.Config) {
		c.Pools["blue"].Replicas = httpsReplicas
		c.UpstreamTLS.CAFile = filepath.Join(dir, "replicas.pem")
		c.TLS = config.TLS{CertFile: trafficCert, KeyFile: trafficKey}
		c.Admin.TLS = config.TLS{CertFile: adminCert, KeyFile: adminKey, ClientCAFile: filepath.Join(dir, "operators.pem")}
		c.Preview = config.Preview{Listen: "127.0.0.1:0", TLS: config.TLS{CertFile: previewCert, KeyFile: previewKey}}
	}})
	trust := &tls.Config{RootCAs: ca.Pool()}
	sendModel := func(c *tls.Conn, br *bufio.Reader, model string) *http.Response {
		t.Helper()
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
		chat := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, chat); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return resp
	}
	send := func(c *tls.Conn, br *bufio.Reader) *http.Response { t.Helper(); return sendModel(c, br, "model-v1") }
	dialCN := func(addr, want string) (*tls.Conn, *bufio.Reader) {
		t.Helper()
		c, err := tls.Dial("tcp", addr, trust)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != want {
			t.Fatalf("%s presented %q, want %q", addr, got, want)
		}
		return c, bufio.NewReader(c)
	}

	old, oldBR := dialCN(e.gw.TrafficAddr(), "traffic-A")
	if resp := send(old, oldBR); resp.Header.Get("X-Cutover-Pool") != "blue" || !strings.HasPrefix(resp.Header.Get("X-Cutover-Replica"), "https://") {
		t.Fatalf("answered by %s %s, want an https replica of blue", resp.Header.Get("X-Cutover-Pool"), resp.Header.Get("X-Cutover-Replica"))
	}

	ca.WritePair(t, trafficDir, "traffic-B")
	if err := e.gw.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	c, br := dialCN(e.gw.TrafficAddr(), "traffic-B")
	send(c, br)
	send(old, oldBR) // opened before the reload: still served

	ca.WritePair(t, trafficDir, "traffic-C")
	e.gw.CheckTLS() // the files' watch, one tick
	c, br = dialCN(e.gw.TrafficAddr(), "traffic-C")
	send(c, br)

	c, br = dialCN(e.gw.PreviewAddr(), "preview")
	if resp := sendModel(c, br, "model-v2"); resp.Header.Get("X-Cutover-Pool") != "green" {
		t.Fatalf("preview answered from %s", resp.Header.Get("X-Cutover-Pool"))
	}

	ctx := context.Background()
	noCert := &api.Client{BaseURL: "https://" + e.gw.AdminAddr(), Token: testToken, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: trust}}}
	if _, err := noCert.Status(ctx); err == nil {
		t.Fatal("the admin API answered a client without a certificate")
	}
	withCert := &api.Client{BaseURL: "https://" + e.gw.AdminAddr(), Token: testToken, HTTP: &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{operators.Pair(t, "ops")}}}}}
	st, err := withCert.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Pools["blue"]; p.HealthyReplicas != 2 {
		t.Errorf("https replicas healthy %d of 2: %+v", p.HealthyReplicas, p)
	}
}

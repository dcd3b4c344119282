package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/proxy"
	"github.com/cutover-dev/cutover/internal/tlsfile"
)

// tlsSetup is the TLS of the listeners and of the replica clients, loaded
// from the configuration's files before anything else is opened.
type tlsSetup struct {
	// traffic, admin and preview are the listeners' server configs; nil
	// means plain TCP.
	traffic, admin, preview *tls.Config
	// certs are the listeners' certificates, reloaded on SIGHUP or when
	// their files change. key is the config key, for logs.
	certs []namedCert
	// upstreamCAs, when set, are trusted for https replicas.
	upstreamCAs *x509.CertPool
}

type namedCert struct {
	key  string
	cert *tlsfile.Cert
}

// tlsCheckInterval is how often the certificate files are looked at for
// a change (a renewal by certbot, say).
const tlsCheckInterval = 10 * time.Second

// loadTLS loads every tls block of cfg. An unreadable file is a
// configuration error naming the key.
func loadTLS(cfg *config.Config) (*tlsSetup, error) {
	s := &tlsSetup{}
	bad := func(key string, err error) error {
		return &config.Error{Fields: []*config.FieldError{{Key: key, Msg: err.Error()}}}
	}
	for _, l := range []struct {
		key string
		t   config.TLS
		out **tls.Config
	}{{"tls", cfg.TLS, &s.traffic}, {"admin.tls", cfg.Admin.TLS, &s.admin}, {"preview.tls", cfg.Preview.TLS, &s.preview}} {
		if !l.t.Enabled() || (l.key == "preview.tls" && cfg.Preview.Listen == "") {
			continue
		}
		c, err := tlsfile.Load(l.t.CertFile, l.t.KeyFile)
		if err != nil {
			return nil, bad(l.key, err)
		}
		sc, err := c.ServerConfig(l.t.ClientCAFile)
		if err != nil {
			return nil, bad(l.key+".client_ca_file", err)
		}
		*l.out = sc
		s.certs = append(s.certs, namedCert{l.key, c})
	}
	if f := cfg.UpstreamTLS.CAFile; f != "" {
		pool, err := tlsfile.SystemAndFile(f)
		if err != nil {
			return nil, bad("upstream_tls.ca_file", err)
		}
		s.upstreamCAs = pool
	}
	return s, nil
}

// transport is proxy.NewTransport trusting upstream_tls.ca_file, for every
// client of the replicas (health checks, warm-up, shadow, synthetic tests,
// https replicas on the data plane).
func (s *tlsSetup) transport(responseHeaderTimeout, dialTimeout time.Duration) *http.Transport {
	t := proxy.NewTransport(responseHeaderTimeout, dialTimeout)
	if s.upstreamCAs != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: s.upstreamCAs, MinVersion: tls.VersionTLS12}
	}
	return t
}

// listen binds addr, serving TLS with c when c is set. Accepted
// connections come without TCP keep-alive probes (like nginx's, without
// so_keepalive): four system calls fewer per connection. The traffic and
// preview listeners' proxy.Server turns them on for a connection that
// waits long on a replica, or that net/http serves; the admin listener's
// connections are short.
func listen(addr string, c *tls.Config) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil || c == nil {
		return ln, err
	}
	return tls.NewListener(ln, c), nil
}

// ReloadTLS reads every listener's certificate files again; new handshakes
// present the new certificates, connections already open keep theirs. On
// an error the listener keeps its current certificate.
func (g *Gateway) ReloadTLS() error {
	var errs []error
	for _, c := range g.tls.certs {
		if err := c.cert.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.key, err))
			continue
		}
		g.log.Info("TLS certificate loaded", "listener", c.key, "subject", c.cert.Leaf().Subject.String(), "not_after", c.cert.Leaf().NotAfter)
	}
	return errors.Join(errs...)
}

// prepareTLS reads every listener's certificate files again and returns
// the function that makes them current, without changing any yet: a
// reload that fails later keeps the certificates in use.
func (g *Gateway) prepareTLS() (use func(), err error) {
	var errs []error
	var ps []*tlsfile.Pending
	for _, c := range g.tls.certs {
		p, err := c.cert.Prepare()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.key, err))
			continue
		}
		ps = append(ps, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return func() {
		for i, p := range ps {
			p.Use()
			g.log.Info("TLS certificate loaded", "listener", g.tls.certs[i].key, "subject", p.Leaf().Subject.String(), "not_after", p.Leaf().NotAfter)
		}
	}, nil
}

// checkTLS reloads the certificates whose files changed: one tick of
// runTLS.
func (g *Gateway) checkTLS() {
	for _, c := range g.tls.certs {
		changed, err := c.cert.Check()
		switch {
		case err != nil:
			g.log.Warn("TLS certificate files unusable; keeping the current certificate", "listener", c.key, "error", err)
		case changed:
			g.log.Info("TLS certificate files changed: loaded", "listener", c.key, "subject", c.cert.Leaf().Subject.String(), "not_after", c.cert.Leaf().NotAfter)
		}
	}
}

// runTLS reloads the certificates when their files change, and the
// configuration on SIGHUP (onHUP), until ctx is done.
func (g *Gateway) runTLS(ctx context.Context, hup <-chan os.Signal) {
	var tick <-chan time.Time // nil without TLS: no file checks
	if len(g.tls.certs) > 0 {
		t := time.NewTicker(tlsCheckInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			g.onHUP(ctx)
		case <-tick:
			g.checkTLS()
		}
	}
}

// notifyHUP delivers SIGHUP to a channel while the gateway runs, with or
// without TLS: its default effect would end the process, and systemd's
// ExecReload sends it. stop undoes it.
func (g *Gateway) notifyHUP() (hup chan os.Signal, stop func()) {
	hup = make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

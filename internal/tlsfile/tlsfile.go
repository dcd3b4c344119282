// Package tlsfile serves a TLS certificate from a pair of PEM files and
// takes a new one from them without a restart: on Reload (SIGHUP) or when
// Check sees the files changed. Handshakes after a reload present the new
// certificate; connections already established keep theirs.
package tlsfile

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Cert is a certificate loaded from CertFile and KeyFile. Use it through
// GetCertificate in a tls.Config. Its methods are safe for concurrent use.
type Cert struct {
	// CertFile and KeyFile are the PEM files: the certificate (chain)
	// and its private key.
	CertFile, KeyFile string

	cur atomic.Pointer[tls.Certificate]

	mu  sync.Mutex // serialises Reload and Check
	sum [sha256.Size]byte
}

// Load reads the pair once; an error names the files and what is wrong.
func Load(certFile, keyFile string) (*Cert, error) {
	c := &Cert{CertFile: certFile, KeyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again and, when they hold a valid pair, makes it
// the certificate of every new handshake. On error the previous one stays.
func (c *Cert) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.loadLocked()
	return err
}

// Check reloads when the files' contents changed since the last load, and
// reports whether it did. An error (a pair half written, say) leaves the
// current certificate; the next Check tries again.
func (c *Cert) Check() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, _, _, err := c.read()
	if err != nil {
		return false, err
	}
	if sum == c.sum {
		return false, nil
	}
	return c.loadLocked()
}

func (c *Cert) read() (sum [sha256.Size]byte, certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(c.CertFile); err != nil {
		return sum, nil, nil, fmt.Errorf("tls cert_file: %w", err)
	}
	if keyPEM, err = os.ReadFile(c.KeyFile); err != nil {
		return sum, nil, nil, fmt.Errorf("tls key_file: %w", err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	copy(sum[:], h.Sum(nil))
	return sum, certPEM, keyPEM, nil
}

func (c *Cert) loadLocked() (bool, error) {
	p, err := c.parse()
	if err != nil {
		return false, err
	}
	c.cur.Store(p.pair)
	c.sum = p.sum
	return true, nil
}

// parse reads the files and checks the pair, using nothing yet.
func (c *Cert) parse() (*Pending, error) {
	sum, certPEM, keyPEM, err := c.read()
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls cert_file %s and key_file %s: %w", c.CertFile, c.KeyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls cert_file %s: %w", c.CertFile, err)
		}
	}
	return &Pending{c: c, pair: &pair, sum: sum}, nil
}

// Pending is a pair read from the files by Prepare and not in use yet.
type Pending struct {
	c    *Cert
	pair *tls.Certificate
	sum  [sha256.Size]byte
}

// Prepare reads and checks the files as Reload does but keeps the
// current certificate, so that a caller can make the new one current
// (Pending.Use) only once everything else it changes with it succeeded.
func (c *Cert) Prepare() (*Pending, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parse()
}

// Use makes the pair the certificate of every new handshake.
func (p *Pending) Use() {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.c.cur.Store(p.pair)
	p.c.sum = p.sum
}

// Leaf is the pair's parsed leaf certificate.
func (p *Pending) Leaf() *x509.Certificate { return p.pair.Leaf }

// GetCertificate is tls.Config.GetCertificate: the current certificate.
func (c *Cert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// Leaf is the current certificate, parsed: for logs (subject, expiry).
func (c *Cert) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// ServerConfig returns a TLS server configuration presenting c (TLS 1.2
// and later). With clientCAFile set, clients must present a certificate
// signed by one of its CAs (mutual TLS).
func (c *Cert) ServerConfig(clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
	if clientCAFile != "" {
		pool, err := LoadCAs(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// LoadCAs reads a PEM file of CA certificates into a pool.
func LoadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// SystemAndFile returns the system's CA pool with file's certificates
// added: for clients of https replicas signed by a private CA.
func SystemAndFile(file string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(bytes.TrimSpace(b)) {
		return nil, errors.New("CA file " + file + " holds no PEM certificate")
	}
	return pool, nil
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Etcd configures the shared state store of a fleet of gateways. When the
// block is absent (Config.Etcd nil) the gateway keeps its state in bbolt
// in state_dir, alone.
type Etcd struct {
	// Endpoints are the etcd client URLs, http:// or https://. Required.
	Endpoints []string `yaml:"endpoints"`
	// Prefix is the key prefix of this fleet: gateways with the same
	// endpoints and prefix share one state. Must start and end with "/".
	// Default /cutover/.
	Prefix string `yaml:"prefix"`
	// DialTimeout bounds connecting to etcd and each store request.
	// Default 5s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// Username, with PasswordFile, authenticates to etcd. Empty: no auth.
	Username string `yaml:"username"`
	// PasswordFile holds Username's password (one line).
	PasswordFile string `yaml:"password_file"`
	// SessionTTL is the lease of this gateway's leader-election session:
	// when the leader dies, another gateway takes over within it.
	// Default 10s, at least 2s.
	SessionTTL Duration `yaml:"session_ttl"`
	// TLS configures the client's TLS to etcd.
	TLS EtcdTLS `yaml:"tls"`
}

// EtcdTLS is the TLS of the etcd client, named as etcd's own clients name
// it. All empty: the system's CAs for https endpoints, no client
// certificate.
type EtcdTLS struct {
	// CAFile is a PEM file of CAs trusted for the etcd servers.
	CAFile string `yaml:"ca_file"`
	// CertFile is the client certificate presented to etcd.
	CertFile string `yaml:"cert_file"`
	// KeyFile is CertFile's private key.
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether any TLS setting is made.
func (t EtcdTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Fleet defaults.
const (
	DefaultEtcdPrefix      = "/cutover/"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdSessionTTL  = 10 * time.Second
)

// applyEtcdDefaults fills the etcd block's unset keys; a no-op without one.
func (c *Config) applyEtcdDefaults() {
	e := c.Etcd
	if e == nil {
		return
	}
	if e.Prefix == "" {
		e.Prefix = DefaultEtcdPrefix
	}
	if e.DialTimeout == 0 {
		e.DialTimeout = Duration(DefaultEtcdDialTimeout)
	}
	if e.SessionTTL == 0 {
		e.SessionTTL = Duration(DefaultEtcdSessionTTL)
	}
}

// FleetName is this gateway's name in the fleet: name when set, else
// hostname:port of listen.
func (c *Config) FleetName() string {
	if c.Name != "" {
		return c.Name
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "cutover"
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil || port == "" {
		return host
	}
	return host + ":" + port
}

// validateFleet checks name and the etcd block; nothing without them.
func (c *Config) validateFleet() []*FieldError {
	var errs []*FieldError
	add := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Name != "" && (strings.ContainsAny(c.Name, "/ \t\n") || len(c.Name) > 128) {
		add("name", "%q must be at most 128 characters without spaces or /", c.Name)
	}
	e := c.Etcd
	if e == nil {
		return errs
	}
	if len(e.Endpoints) == 0 {
		add("etcd.endpoints", "must list at least one etcd client URL, such as http://127.0.0.1:2379")
	}
	for i, ep := range e.Endpoints {
		key := fmt.Sprintf("etcd.endpoints[%d]", i)
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			add(key, "%q is not a URL: %v", ep, err)
		case u.Scheme != "http" && u.Scheme != "https":
			add(key, "%q must be http://host:port or https://host:port", ep)
		case u.Host == "" || u.Port() == "":
			add(key, "%q needs host:port", ep)
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
			add(key, "%q must be scheme://host:port only (no path, query or user)", ep)
		case u.Scheme == "http" && e.TLS.Enabled():
			add(key, "%q is http:// but etcd.tls is set; use https://", ep)
		}
	}
	if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") || len(e.Prefix) < 2 {
		add("etcd.prefix", "%q must start and end with / and name the fleet, such as /cutover/llama/", e.Prefix)
	}
	if e.DialTimeout <= 0 {
		add("etcd.dial_timeout", "must be positive, got %s", e.DialTimeout)
	}
	if e.SessionTTL < Duration(2*time.Second) || e.SessionTTL > Duration(5*time.Minute) {
		add("etcd.session_ttl", "must be between 2s and 5m, got %s", e.SessionTTL)
	}
	if (e.Username == "") != (e.PasswordFile == "") {
		if e.Username == "" {
			add("etcd.username", "must be set with etcd.password_file")
		} else {
			add("etcd.password_file", "must be set with etcd.username")
		}
	}
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		if e.TLS.CertFile == "" {
			add("etcd.tls.cert_file", "must be set with key_file")
		} else {
			add("etcd.tls.key_file", "must be set with cert_file")
		}
	}
	return errs
}

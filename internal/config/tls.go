package config

// TLS is a listener's TLS: off while CertFile and KeyFile are empty. The
// files are read at start and again on SIGHUP or when they change.
type TLS struct {
	// CertFile is the PEM certificate (chain) presented to clients.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile, admin.tls only: a PEM file of CAs; clients must present
	// a certificate signed by one of them (mutual TLS). Empty means no
	// client certificates are asked for.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// UpstreamTLS configures the gateway as a client of https replicas.
type UpstreamTLS struct {
	// CAFile is a PEM file of CAs trusted for https replicas, in addition
	// to the system's. Empty means the system's only.
	CAFile string `yaml:"ca_file"`
}

// validateTLS checks each listener's tls block: both files or neither,
// client_ca_file only on the admin listener and only with TLS.
func (c *Config) validateTLS() []*FieldError {
	var errs []*FieldError
	for key, t := range map[string]TLS{"tls": c.TLS, "admin.tls": c.Admin.TLS, "preview.tls": c.Preview.TLS} {
		switch {
		case t.CertFile != "" && t.KeyFile == "":
			errs = append(errs, &FieldError{Key: key + ".key_file", Msg: "must be set with cert_file"})
		case t.KeyFile != "" && t.CertFile == "":
			errs = append(errs, &FieldError{Key: key + ".cert_file", Msg: "must be set with key_file"})
		}
		if t.ClientCAFile == "" {
			continue
		}
		switch {
		case key != "admin.tls":
			errs = append(errs, &FieldError{Key: key + ".client_ca_file", Msg: "client certificates are supported on the admin listener only (admin.tls.client_ca_file); use auth.api_keys_file for clients"})
		case !t.Enabled():
			errs = append(errs, &FieldError{Key: key + ".client_ca_file", Msg: "needs cert_file and key_file: client certificates come with TLS"})
		}
	}
	if c.Preview.TLS.Enabled() && c.Preview.Listen == "" {
		errs = append(errs, &FieldError{Key: "preview.tls", Msg: "set without preview.listen"})
	}
	return errs
}

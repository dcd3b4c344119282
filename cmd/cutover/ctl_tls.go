package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/tlsfile"
)

// ctlTLS is how the CLI reaches an admin API served over TLS (admin.tls):
// a CA to trust besides the system's, and a client certificate when the
// listener asks for one (admin.tls.client_ca_file).
type ctlTLS struct {
	caFile, certFile, keyFile string
}

func (t *ctlTLS) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.caFile, "ca-file", os.Getenv("CUTOVER_ADMIN_CA_FILE"), "PEM CA certificate(s) to trust for an https --admin URL (env CUTOVER_ADMIN_CA_FILE)")
	cmd.Flags().StringVar(&t.certFile, "cert-file", os.Getenv("CUTOVER_ADMIN_CERT_FILE"), "client certificate for an admin API that requires one (env CUTOVER_ADMIN_CERT_FILE)")
	cmd.Flags().StringVar(&t.keyFile, "key-file", os.Getenv("CUTOVER_ADMIN_KEY_FILE"), "private key of --cert-file (env CUTOVER_ADMIN_KEY_FILE)")
}

// httpClient is nil (http.DefaultClient) without any TLS flag.
func (t *ctlTLS) httpClient() (*http.Client, error) {
	if t.caFile == "" && t.certFile == "" && t.keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.caFile != "" {
		pool, err := tlsfile.SystemAndFile(t.caFile)
		if err != nil {
			return nil, &usageError{fmt.Errorf("--ca-file: %w", err)}
		}
		cfg.RootCAs = pool
	}
	if (t.certFile == "") != (t.keyFile == "") {
		return nil, &usageError{fmt.Errorf("--cert-file and --key-file go together")}
	}
	if t.certFile != "" {
		pair, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			return nil, &usageError{fmt.Errorf("--cert-file/--key-file: %w", err)}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}

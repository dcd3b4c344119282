package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with configuration files",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return &usageError{fmt.Errorf("config needs a subcommand: check")}
		},
	}
	cmd.AddCommand(newConfigCheckCmd())
	return cmd
}

func newConfigCheckCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate a configuration file without starting anything",
		Long: `Validate FILE as serve would read it, without binding a listener, opening
the state or contacting a replica: the YAML and every key (unknown keys,
types, values), the admin token (CUTOVER_ADMIN_TOKEN or admin.token_file),
and the files the config names (certificates, key and token files,
validation.synthetic). Run it as the user the service runs as (sudo -u
cutover cutover config check ...), since it reads the same files.

Prints "FILE: ok" and exits 0, or exits 2 naming every bad key, as serve
does. Listen addresses being free and state_dir being writable are only
known at start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, token, err := loadServeConfig(path)
			if err != nil {
				return err
			}
			if err := gateway.Check(cfg, token); err != nil {
				return &usageError{err}
			}
			if w := weakToken(token); w != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	return cmd
}

// loadServeConfig reads the configuration at path and the admin token as
// serve does; every error is a usage error (exit 2).
func loadServeConfig(path string) (*config.Config, string, error) {
	if path == "" {
		return nil, "", &usageError{errMissingConfig}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, "", &usageError{err} // unreadable or invalid: exit 2
	}
	token, err := cfg.AdminToken()
	if err != nil {
		return nil, "", &usageError{err}
	}
	return cfg, token, nil
}

// minTokenBytes is the shortest admin token config check and serve take
// without a warning: 16 bytes, as `openssl rand -hex 8` gives; the docs
// suggest 32 random bytes.
const minTokenBytes = 16

// weakToken is a warning about an admin token short enough to guess, ""
// for one that is not. The token stays usable: it is the operator's
// choice, and scripts may hold it.
func weakToken(token string) string {
	if len(token) >= minTokenBytes {
		return ""
	}
	return fmt.Sprintf("the admin token is %d bytes, short enough to guess: anyone who reaches admin.listen can switch traffic with it; use at least %d random bytes (e.g. `openssl rand -hex 32`)", len(token), minTokenBytes)
}

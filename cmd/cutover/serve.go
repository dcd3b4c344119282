package main

import (
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/gateway"
)

func newServeCmd(g *globalFlags) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the gateway, the rollout controller and the admin API",
		Long: `Run the gateway: client traffic on listen goes to the live pool; the admin
API on admin.listen (Authorization: Bearer token from CUTOVER_ADMIN_TOKEN or
admin.token_file) switches pools. The live pool and the revision persist in
state_dir and win over the config's live on every later start (a start
whose live differs logs a warning). Listeners are bound before anything is
written, so a start that fails on a busy port changes nothing. A damaged
state file stops the start with exit 1 naming it: see cutover state check.

SIGTERM or SIGINT stops accepting, lets in-flight requests and streams finish
for up to proxy.drain_timeout, then exits 0. A second signal exits at once.

With TLS configured (tls, admin.tls, preview.tls), SIGHUP reloads the
listeners' certificate files (they are also reloaded when they change); open
connections keep the certificate they started with. SIGHUP (like cutover
reload) also reads FILE again and applies what can change live (see cutover
reload --help): a bad file changes nothing and is logged naming the keys;
changed keys that need a restart are logged too. log_level in FILE, when
set, wins over --log-level.

A bad config exits 2 naming the key; see docs/config.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, token, err := loadServeConfig(path)
			if err != nil {
				return err
			}
			log, level, err := g.leveledLogger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if w := weakToken(token); w != "" {
				log.Warn(w)
			}
			opts := []gateway.Option{gateway.WithConfigFile(path), gateway.WithLogLevel(level)}
			if exe, err := os.Executable(); err == nil && runtime.GOOS == "linux" {
				// Shadow copies go out from a helper at idle CPU priority
				// (SCHED_IDLE: Linux's).
				opts = append(opts, gateway.WithShadowHelper([]string{exe, "shadow-helper", "--log-format", g.logFormat}))
			}
			gw, err := gateway.New(cmd.Context(), cfg, token, log, opts...)
			if err != nil {
				return err
			}
			return gw.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML)")
	return cmd
}

type constError string

func (e constError) Error() string { return string(e) }

const errMissingConfig = constError("--config FILE is required (see docs/config.md, or try `cutover demo`)")

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/agent"
)

// newAgentCmd returns the "agent" command: the replica supervisor of one
// GPU server.
func newAgentCmd(g *globalFlags) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "agent --config agent.yaml",
		Short: "Start, stop, sleep and wake model replicas on this GPU server",
		Long: `Supervise model-server replicas on this GPU server: start them on free GPUs
(CUDA_VISIBLE_DEVICES from the agent's GPU ledger, each in its own process
group), stop them (SIGTERM, then SIGKILL after stop_grace), put them to sleep
and wake them through vLLM's sleep-mode endpoints, and list them. The HTTP
API needs the bearer token of token_file. Replicas outlive the agent: a
restarted agent re-adopts them from its state file.

agent.yaml:
  listen: 0.0.0.0:9090
  token_file: /etc/cutover/agent-token
  gpus: auto                # or a number
  ports: 8100-8199
  command: [vllm, serve, "{model}", --port, "{port}", --tensor-parallel-size, "{gpus_count}", --enable-sleep-mode]
  env: {VLLM_SERVER_DEV_MODE: "1"}
  log_dir: /var/log/cutover-agent
  log_max_mb: 100           # copytruncate to FILE.1 beyond this
  state_file: ""            # default log_dir/agent-state.json
  stop_grace: 30s

See docs/agent.md for the API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg, err := agent.LoadConfig(path)
			if err != nil {
				var fe *agent.FieldError
				if errors.As(err, &fe) {
					return &usageError{fmt.Errorf("%s: %w", path, err)}
				}
				return &usageError{err}
			}
			a, err := agent.New(cfg, log)
			if err != nil {
				return fmt.Errorf("agent: %w", err)
			}
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return fmt.Errorf("agent: listen %s: %w", cfg.Listen, err)
			}
			hs := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
			served := make(chan error, 1)
			go func() { served <- hs.Serve(ln) }()
			log.Info("agent listening", "addr", ln.Addr().String(), "gpus", len(a.GPUs()))
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			select {
			case err := <-served:
				return fmt.Errorf("agent: serving on %s: %w", ln.Addr(), err)
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
			log.Info("agent stopped; its replicas keep running and are re-adopted at the next start")
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "agent configuration file (required)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

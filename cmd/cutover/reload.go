package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/api"
)

func newReloadCmd() *cobra.Command {
	f := &ctlFlags{}
	var last bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running gateway read its configuration file again",
		Long: `Make the running gateway read its configuration file again (POST
/api/v1/reload; SIGHUP and systemctl reload cutover do the same). The file is
checked as a start would check it; a file that cannot be used changes nothing,
and reload exits 1 naming the keys. A valid file takes effect at once, without
dropping a request or a stream: TLS certificates, admin tokens, health checks,
the proxy.* settings but proxy.client (requests already in flight keep the
settings they started with), auth.api_keys_file, routing.*, validation.gates,
hooks, log_level, and the model, replicas and api_key_file of a pool no
deployment owns (a pool retained for rollback keeps its model and replicas
until it is retired). Key and token files are read again even when their path is
the same. The answer names what was applied, the changed keys that need a
restart (listen addresses, state_dir, etcd, the balancer, rollout.*, ...; see
docs/operations.md#reload), and those not applied because a deployment owns
or retains their pool. With a fleet, each gateway reloads its own file.

--last reloads nothing and shows how the last reload went, SIGHUP included
(systemctl reload cannot say): exit 1 if it was refused, with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if last {
				var refused string
				err := call(cmd, f, func(ctx context.Context, c *api.Client) (*api.LastReload, error) {
					l, err := c.LastReload(ctx)
					if err == nil {
						refused = l.Error
					}
					return l, err
				}, printLastReload)
				if err == nil && refused != "" {
					return &exitError{code: exitFailure, err: fmt.Errorf("the last reload was refused: %s", refused)}
				}
				return err
			}
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.ReloadResult, error) { return c.Reload(ctx) }, printReload)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&last, "last", false, "reload nothing: show how the last reload went (SIGHUP included); exit 1 if it was refused")
	return cmd
}

func printLastReload(w io.Writer, l *api.LastReload) {
	switch {
	case l.Time == nil:
		fmt.Fprintln(w, "no reload since the start")
	case l.Error != "":
		fmt.Fprintf(w, "%s at %s: refused, nothing changed\n", l.Trigger, l.Time.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "%s at %s: ", l.Trigger, l.Time.Format(time.RFC3339))
		printReload(w, l.Result)
	}
}

func printReload(w io.Writer, r *api.ReloadResult) {
	fmt.Fprintf(w, "reloaded %s\n", r.File)
	if len(r.Applied) > 0 {
		fmt.Fprintf(w, "applied: %s\n", strings.Join(r.Applied, ", "))
	}
	if len(r.RestartNeeded) > 0 {
		fmt.Fprintf(w, "changed, needs a restart: %s\n", strings.Join(r.RestartNeeded, ", "))
	}
	if len(r.NotApplied) > 0 {
		fmt.Fprintf(w, "changed, not applied (a deployment owns the pool: deploy to change it; or retains it for rollback until it is retired): %s\n", strings.Join(r.NotApplied, ", "))
	}
}

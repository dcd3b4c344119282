package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/api"
)

func newReloadCmd() *cobra.Command {
	f := &ctlFlags{}
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running gateway read its configuration file again",
		Long: `Make the running gateway read its configuration file again (POST
/api/v1/reload; SIGHUP and systemctl reload cutover do the same). The file is
checked as a start would check it; a file that cannot be used changes nothing,
and reload exits 1 naming the keys. A valid file reloads the listeners' TLS
certificates, the admin tokens (admin.token_file, admin.read_token_file) and
the health checks (health.path, interval, timeout, rise, fall); every other key whose value changed is listed as needing a restart (the rest
of the configuration is not applied live yet).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.ReloadResult, error) { return c.Reload(ctx) }, printReload)
		},
	}
	f.register(cmd)
	return cmd
}

func printReload(w io.Writer, r *api.ReloadResult) {
	fmt.Fprintf(w, "reloaded %s\n", r.File)
	if len(r.Applied) > 0 {
		fmt.Fprintf(w, "applied: %s\n", strings.Join(r.Applied, ", "))
	}
	if len(r.RestartNeeded) > 0 {
		fmt.Fprintf(w, "changed, needs a restart: %s\n", strings.Join(r.RestartNeeded, ", "))
	}
}

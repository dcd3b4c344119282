package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/shadow"
)

// newShadowHelperCmd is the process `cutover serve` starts to send shadow
// copies at idle CPU priority (see internal/shadow/helper.go). It speaks
// the mirror's protocol on stdin and stdout; it is not for people.
func newShadowHelperCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:    "shadow-helper",
		Short:  "Send shadow copies for cutover serve at idle CPU priority (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := shadow.IdlePriority(); err != nil {
				log.Warn("shadow helper runs at normal CPU priority", "err", err)
			}
			slog.SetDefault(log)
			return shadow.ServeHelper(cmd.Context(), os.Stdin, os.Stdout)
		},
	}
}

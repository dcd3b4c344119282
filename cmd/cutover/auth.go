package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/auth"
)

// newAuthCmd returns "auth": helpers for the client keys file.
func newAuthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Manage client API keys (auth.api_keys_file)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newHashKeyCmd())
	return cmd
}

func newHashKeyCmd() *cobra.Command {
	var (
		id       string
		models   []string
		generate bool
	)
	cmd := &cobra.Command{
		Use:   "hash-key --id ID [--model NAME ...] [--generate]",
		Short: "Print a line for auth.api_keys_file: a key's id, its SHA-256 and its models",
		Long: `Print one line for auth.api_keys_file: the key id (shown in access logs and
metrics), sha256:<hex> of the key (the file never holds a key itself) and,
with --model, the model names the key may use (repeat the flag; none: any).

The key is read from the first line of stdin, so it stays out of the shell
history and the process list:

  printf %s "$KEY" | cutover auth hash-key --id team-a --model llama >> /etc/cutover/keys

With --generate a new random key is made instead: the line goes to stdout and
the key to stderr, once — hand it to the client; it cannot be recovered from
the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return &usageError{fmt.Errorf("hash-key needs --id")}
			}
			var key string
			if generate {
				key = auth.Generate()
			} else {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				key = strings.TrimSpace(line)
				if key == "" {
					if err != nil && !errors.Is(err, io.EOF) {
						return fmt.Errorf("read the key from stdin: %w", err)
					}
					return &usageError{fmt.Errorf("no key on stdin: pipe one in, or pass --generate")}
				}
			}
			line, err := auth.Line(id, key, models)
			if err != nil {
				return &usageError{err}
			}
			if generate {
				fmt.Fprintf(cmd.ErrOrStderr(), "key for %s (shown once, not stored): %s\n", id, key)
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "key id, shown in logs and metrics (required)")
	cmd.Flags().StringArrayVar(&models, "model", nil, "model name the key may use (repeat; none: any)")
	cmd.Flags().BoolVar(&generate, "generate", false, "make a new random key instead of reading one from stdin")
	return cmd
}

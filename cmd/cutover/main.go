// Command cutover is a blue-green rollout gateway for self-hosted LLM APIs:
// an OpenAI-compatible proxy over two pools of model servers, the rollout
// controller that switches them, its admin API and CLI, and a vLLM
// simulator for demos and tests.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/mockllm"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed, or the server refused
	exitUsage   = 2 // bad flags, bad config: nothing was done
	exitTimeout = 3 // cutover wait, deploy --wait: time ran out before the phase
)

// usageError marks an error caused by what the user typed or wrote: bad
// flags or configuration. main exits with exitUsage for it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// globalFlags are shared by every subcommand.
type globalFlags struct {
	logFormat string
	logLevel  string
}

func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	log, _, err := g.leveledLogger(w)
	return log, err
}

// leveledLogger is logger, with the level it logs at: serve changes it
// (log_level, on start and on every reload).
func (g *globalFlags) leveledLogger(w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, nil, &usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)}
	}
	v := &slog.LevelVar{}
	v.Set(lvl)
	opts := &slog.HandlerOptions{Level: v}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), v, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), v, nil
	}
	return nil, nil, &usageError{fmt.Errorf("--log-format %q: want text or json", g.logFormat)}
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "cutover",
		Short: "Blue-green rollouts for self-hosted LLM APIs",
		Long: `cutover keeps two pools of OpenAI-compatible model servers (vLLM, SGLang,
TGI, llama.cpp server), blue and green, behind one gateway. It sends client
traffic to the live pool, switches pools atomically without cutting a stream,
and keeps the old pool for an instant rollback.

Start here:  cutover demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	// The global flags are checked before any command runs, including
	// those that never log.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		_, err := g.logger(io.Discard)
		return err
	}
	root.AddCommand(
		newServeCmd(g),
		newDemoCmd(g),
		newMockLLMCmd(g),
		newStatusCmd(),
		newPromoteCmd(),
		newRollbackCmd(),
		newHistoryCmd(),
		newDeployCmd(),
		newAbortCmd(),
		newRetireCmd(),
		newTestCmd(),
		newWaitCmd(),
		newVersionCmd(),
		newStateCmd(),
		newConfigCmd(),
		newReloadCmd(),
		newAgentCmd(g),
		newShadowHelperCmd(g),
	)
	root.Version = versionString()
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(newAuthCmd())
	markArgErrors(root)
	return root
}

// markArgErrors makes a wrong number of arguments a usage error (exit 2)
// for c and every command under it.
func markArgErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markArgErrors(sub)
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal exits at once, without waiting for the drain.
		<-ctx.Done()
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		fmt.Fprintln(stderr, "cutover: second signal, exiting now")
		os.Exit(exitFailure)
	}()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "cutover:", termSafe(err.Error())) // may quote the server
	return exitCode(err)
}

func exitCode(err error) int {
	var ue *usageError
	var fe *mockllm.FieldError
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), config.IsInvalid(err), errors.As(err, &fe):
		return exitUsage
	case strings.HasPrefix(err.Error(), "unknown command "):
		// cobra's own error for a command it does not know, which it
		// returns before any of ours can mark it.
		return exitUsage
	}
	return exitFailure
}

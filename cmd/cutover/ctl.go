package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/secret"
)

// ctlFlags are the flags of every command that talks to the admin API.
type ctlFlags struct {
	admin     string
	tokenFile string
	json      bool
	timeout   time.Duration
	tls       ctlTLS
}

func (f *ctlFlags) register(cmd *cobra.Command) {
	def := os.Getenv("CUTOVER_ADMIN")
	if def == "" {
		def = "http://127.0.0.1:8081"
	}
	cmd.Flags().StringVar(&f.admin, "admin", def, "admin API URL (env CUTOVER_ADMIN)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", "", "file holding the admin token (default: env "+config.TokenEnv+")")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the server's JSON answer")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
	f.tls.register(cmd)
}

func (f *ctlFlags) client() (*api.Client, error) {
	var token string
	var err error
	if f.tokenFile != "" {
		if token, err = secret.ReadFile(f.tokenFile); err != nil {
			return nil, &usageError{fmt.Errorf("--token-file: %w", err)}
		}
	} else if token, err = config.EnvToken(); err != nil {
		return nil, &usageError{err}
	}
	if token == "" {
		return nil, &usageError{fmt.Errorf("no admin token: set %s or pass --token-file", config.TokenEnv)}
	}
	if f.timeout <= 0 {
		return nil, &usageError{fmt.Errorf("--timeout must be positive, got %s", f.timeout)}
	}
	admin := f.admin
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	hc, err := f.tls.httpClient()
	if err != nil {
		return nil, err
	}
	// TRACEPARENT and TRACESTATE: OpenTelemetry's environment carriers of
	// the trace context, as a traced CI job sets them.
	return &api.Client{BaseURL: admin, Token: token, Actor: cliActor(), HTTP: hc,
		Traceparent: os.Getenv("TRACEPARENT"), Tracestate: os.Getenv("TRACESTATE")}, nil
}

func cliActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "cli:" + name + "@" + host
}

// call runs fn against the admin API and prints its answer as JSON or text.
func call[T any](cmd *cobra.Command, f *ctlFlags, fn func(context.Context, *api.Client) (T, error), text func(io.Writer, T)) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
	defer cancel()
	v, err := fn(ctx, c)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			if f.json {
				_ = json.NewEncoder(cmd.OutOrStdout()).Encode(api.ErrorResponse{Error: ae.ErrorBody})
			}
			if ae.Code == "unknown_path" {
				// The data plane's answer to a path outside /v1/.
				return fmt.Errorf("%s: %s looks like cutover's traffic address; --admin (or CUTOVER_ADMIN) wants the admin address (admin.listen)",
					ae.Message, c.BaseURL)
			}
			return errors.New(ae.Message)
		}
		return err
	}
	if f.json {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(termWriter{cmd.OutOrStdout()}, v)
	return nil
}

func newStatusCmd() *cobra.Command {
	f, w := &ctlFlags{}, &watchFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the live pool, the revision and each replica's health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if w.on {
				return watchStatus(cmd, f, w)
			}
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.Status, error) { return c.Status(ctx) }, printStatus)
		},
	}
	f.register(cmd)
	w.register(cmd)
	return cmd
}

func printStatus(w io.Writer, s *api.Status) {
	fmt.Fprintf(w, "live: %s   revision: %d", s.Live, s.Revision)
	if s.ModelName != "" {
		fmt.Fprintf(w, "   model_name: %s", s.ModelName)
	}
	if !s.SwitchedAt.IsZero() {
		fmt.Fprintf(w, "   switched: %s ago (from %s)", time.Since(s.SwitchedAt).Round(time.Second), s.Previous)
	}
	fmt.Fprintln(w)
	if s.Protection.Summary != "" {
		fmt.Fprintf(w, "protection: %s\n", s.Protection.Summary)
	}
	if e := s.SaveError; e != nil {
		fmt.Fprintf(w, "state: NOT SAVED since %s: %s (the controller retries until the state can be written; see docs/operations.md)\n", e.Since.Local().Format(time.DateTime), e.Error)
	}
	if e := s.BackupError; e != nil {
		held := fmt.Sprintf("it holds revision %d of %d", e.Revision, s.Revision)
		if e.Revision == 0 {
			held = "there is none yet"
		}
		fmt.Fprintf(w, "backup: BEHIND since %s (%s): %s (retried after each transition; see docs/operations.md)\n", e.Since.Local().Format(time.DateTime), held, e.Error)
	}
	if s.Launching != "" {
		fmt.Fprintf(w, "launching: %s\n", s.Launching)
	}
	names := make([]string, 0, len(s.Pools))
	for n := range s.Pools {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range names {
		p := s.Pools[n]
		role := poolRole(s, n)
		model := p.Model
		if model == "" {
			model = "-"
		}
		asleep := 0
		for _, r := range p.Replicas {
			if sleepsOnly(r) {
				asleep++
			}
		}
		health := fmt.Sprintf("%d/%d healthy", p.HealthyReplicas, len(p.Replicas))
		if asleep > 0 {
			// A sleeping replica answers its checks but serves nothing
			// until it is woken.
			health = fmt.Sprintf("%d/%d healthy, %d asleep", p.HealthyReplicas, len(p.Replicas), asleep)
		}
		fmt.Fprintf(tw, "\n%s\t%s\tmodel %s\t%s\t%d in flight\n", p.Name, role, model, health, p.InFlight)
		for _, r := range p.Replicas {
			h := "healthy"
			switch {
			case sleepsOnly(r):
				h = "asleep"
			case !r.Healthy:
				h = "UNHEALTHY"
			}
			line := fmt.Sprintf("  %s\t%s\t%d in flight", r.URL, h, r.InFlight)
			if e := r.Engine; e != nil {
				line += engineLine(e)
			}
			if r.LastError != "" {
				line += "\t" + r.LastError
			}
			fmt.Fprintln(tw, line)
		}
		if len(p.Replicas) == 0 {
			fmt.Fprintln(tw, "  (no replicas)")
		}
		if p.GatewayQueue != nil {
			fmt.Fprintln(tw, gatewayQueueLine(p.GatewayQueue))
		}
	}
	_ = tw.Flush()
	printCapacity(w, s)
	if s.Deployment != nil {
		printDeployment(w, s.Deployment)
	}
	printFleet(w, s.Fleet)
}

func printSwitch(w io.Writer, r *api.SwitchResult) {
	forced := ""
	if r.Forced {
		forced = " (forced)"
	}
	if r.Note != "" {
		fmt.Fprintf(w, "%s%s: %s, revision %d\n", r.Action, forced, r.Note, r.Revision)
	} else {
		fmt.Fprintf(w, "%s%s: %s is live (was %s), revision %d\n", r.Action, forced, r.Live, r.Previous, r.Revision)
	}
	if r.Restored > 0 {
		fmt.Fprintf(w, "first brought %s back to full size: %d replica(s) started through the agents, serving after %s\n", r.Live, r.Restored, time.Duration(r.RestoreMS)*time.Millisecond)
	}
	if r.Woke > 0 {
		fmt.Fprintf(w, "first woke %d replica(s) of %s in %s\n", r.Woke, r.Live, time.Duration(r.WakeMS)*time.Millisecond)
	}
}

func newPromoteCmd() *cobra.Command {
	f := &ctlFlags{}
	var req api.PromoteRequest
	cmd := &cobra.Command{
		Use:   "promote",
		Short: "Make the standby pool live (refused if it cannot serve)",
		Long: `Make the standby pool live. With a deployment in progress it must be ready
and its before_promote hooks must pass. Without one, the standby becomes
live if it has a healthy replica serving its model; when it holds a
deployment that failed, was aborted or was rolled back, promote is refused
(409, naming the deployment and its outcome) unless --force, and a forced
switch is recorded as forced in the history.

The answer comes once the before_promote hooks have run (each up to its
timeout), so --timeout defaults to 30m here. Giving up earlier (--timeout,
Ctrl-C) stops the hook that runs and does not promote.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.SwitchResult, error) { return c.PromoteWith(ctx, req) }, printSwitch)
		},
	}
	f.register(cmd)
	// A before_promote hook may take minutes (30 s by default each): a
	// client that gives up first cancels the promote and kills the hook.
	f.timeout = promoteTimeout
	t := cmd.Flags().Lookup("timeout")
	t.DefValue, t.Usage = f.timeout.String(), "give up after this long (the before_promote hooks run meanwhile; giving up stops them)"
	cmd.Flags().BoolVar(&req.Force, "force", false, "promote a standby whose deployment failed, was aborted or was rolled back (recorded as forced)")
	revisionFlag(cmd, &req.ExpectedRevision)
	return cmd
}

// promoteTimeout is promote's default --timeout: long enough for the
// before_promote hooks, which run inside the request.
const promoteTimeout = 30 * time.Minute

// revisionFlag adds --if-revision, the guard every switch takes.
func revisionFlag(cmd *cobra.Command, rev *int64) {
	cmd.Flags().Int64Var(rev, "if-revision", 0, "refuse (409 revision_mismatch) when the state changed since revision `N`, as status showed it")
}

func newRollbackCmd() *cobra.Command {
	f := &ctlFlags{}
	var req api.RollbackRequest
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Undo the last switch: make the previous live pool live again",
		Long: `Undo the last switch: make the previous live pool live again (during a
deployment's retention, the retained pool, at once). Rollback is not a
toggle: right after a rollback a second one is refused (already_rolled_back),
so two operators rolling back at once never bring back the version just
left; --to POOL makes that pool live on purpose.

With rollout.retention_mode sleep the retained pool is woken first; with
shrink, once the retained pool was made smaller, the missing replicas are
started through the agents first and the switch waits until they serve
its model (minutes for a large model, so without --now --timeout defaults
to 30m; the rollback goes on if the CLI gives up). --now switches at once
onto the replicas left instead; the missing ones are then started in the
background. With stop there is no retained pool and rollback is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !req.Now && !cmd.Flags().Changed("timeout") {
				f.timeout = 30 * time.Minute // a restore may load a model first
			}
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.SwitchResult, error) { return c.RollbackWith(ctx, req) }, printSwitch)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&req.To, "to", "", "make `POOL` live, even right after a rollback")
	cmd.Flags().BoolVar(&req.Now, "now", false, "retention_mode shrink: switch at once onto the replicas the shrunk retained pool has left (the missing ones are started in the background) instead of bringing it back to full size first")
	revisionFlag(cmd, &req.ExpectedRevision)
	return cmd
}

func newHistoryCmd() *cobra.Command {
	f := &ctlFlags{}
	var limit int
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List state transitions: time, actor, from -> to, reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return &usageError{fmt.Errorf("--limit %d: want 0 (all) or more", limit)}
			}
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.History, error) { return c.History(ctx, limit) }, printHistory)
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 50, "show the latest N events (0: all)")
	return cmd
}

func printHistory(w io.Writer, h *api.History) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tREV\tDEPLOYMENT\tACTION\tFROM -> TO\tACTOR\tREASON")
	for _, e := range h.Events {
		change := "-"
		if e.To != "" {
			from := e.From
			if from == "" {
				from = "-"
			}
			change = from + " -> " + e.To
		}
		dep := e.Deployment
		if dep == "" {
			dep = "-"
		}
		action := e.Action
		if e.Forced {
			action += " (forced)"
		}
		reason := e.Reason
		if e.Cost != nil {
			reason += " [gpu: " + costLine(e.Cost, false) + "]"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Revision, dep, action, change, e.Actor, reason)
	}
	_ = tw.Flush()
}

// sleepsOnly reports whether r is asleep and nothing else is wrong with
// it: its checks pass (a sleeping vLLM's /health answers) and it serves no
// request until it is woken.
func sleepsOnly(r api.Replica) bool { return r.Asleep && r.LastError == "" }

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/api"
)

func newDeployCmd() *cobra.Command {
	f := &ctlFlags{}
	var req api.DeployRequest
	wo := &waitOptions{}
	cmd := &cobra.Command{
		Use:   "deploy --model ID [--replica URL ...]",
		Short: "Put a new version into the standby pool and start its rollout",
		Long: `Put a new version into the standby pool (the one not live) and start its
lifecycle: warming (health checks, /v1/models lists the model, warm-up
requests on every replica) -> validating (only when validation is
configured: shadow traffic or a synthetic suite, held to the gates) ->
ready -> promote (cutover promote, or rollout.auto_promote) -> retention of
the old pool for instant rollback -> retirement (drain, on_retire hooks) ->
completed.

One deployment at a time. Deploying over a pool still retained for rollback
is refused with the time its retention ends, unless --force, which ends that
retention now.

With --wait the command then waits until the deployment is ready (or
--wait=promoted, --wait=completed), printing each phase, and exits 0 when it
gets there, 1 when the deployment fails or is aborted (with the reason), 3
when --wait-timeout runs out first: what a CI pipeline needs. See cutover
wait.

Replicas started with vLLM's --api-key need --api-key-file: a file on the
gateway's host holding that key (the gateway reads it; only the path is
sent and stored, the key never shows in status, history or logs). The file
must be one a pool names (pools.<pool>.api_key_file) or lie under a
directory of the gateway's admin.api_key_dirs; otherwise the deploy is
refused (bad_api_key_file). Without it the new replicas get the target
pool's pools.<pool>.api_key_file.

Without --replica the gateway starts the new replicas itself through its
agents (agents: and launch: in its configuration, see docs/agent.md): the
request answers once they all run (launch.ready_timeout), so --timeout
defaults to 30m then. Retirement of that pool stops them through the
agents, after the on_retire hooks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Model == "" {
				return &usageError{fmt.Errorf("deploy needs --model (and --replica URLs unless the gateway has agents)")}
			}
			if len(req.Replicas) == 0 && !cmd.Flags().Changed("timeout") {
				f.timeout = 30 * time.Minute // the agents load the model
			}
			if req.APIKeyFile != "" {
				abs, err := filepath.Abs(req.APIKeyFile)
				if err != nil {
					return &usageError{fmt.Errorf("--api-key-file %s: %w", req.APIKeyFile, err)}
				}
				req.APIKeyFile = abs
			}
			if wo.target != "" {
				if err := wo.check("--wait"); err != nil {
					return err
				}
			}
			var started *api.DeployResult
			err := call(cmd, f, func(ctx context.Context, c *api.Client) (*api.DeployResult, error) {
				r, err := c.Deploy(ctx, req)
				started = r
				return r, err
			}, func(w io.Writer, r *api.DeployResult) {
				d := r.Deployment
				fmt.Fprintf(w, "deployment %s: model %s into %s (%s), %s\n", d.ID, d.Model, d.Pool, plural(len(d.Replicas), "replica"), d.Phase)
				if d.Reason != "" {
					fmt.Fprintf(w, "  %s\n", d.Reason)
				}
				if r.Note != "" {
					fmt.Fprintf(w, "note: %s\n", r.Note)
				}
				if wo.target != "" {
					fmt.Fprintf(w, "waiting up to %s for it to be %s\n", wo.timeout, wo.target)
					return
				}
				hint := selfCommand() + " status"
				if cmd.Flags().Changed("admin") {
					hint += " --admin " + f.admin
				}
				fmt.Fprintln(w, "follow it with: "+hint)
			})
			if err != nil || wo.target == "" {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			wo.deployment = started.Deployment.ID
			return awaitPhase(cmd.Context(), c, wo, cmd.OutOrStdout(), f.json)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&req.Model, "model", "", "model id the new replicas serve")
	cmd.Flags().StringArrayVar(&req.Replicas, "replica", nil, "base URL of a new replica (repeat for each)")
	cmd.Flags().BoolVar(&req.Force, "force", false, "end the retention of a pool kept for rollback")
	revisionFlag(cmd, &req.ExpectedRevision)
	cmd.Flags().StringVar(&wo.target, "wait", "", "then wait until the deployment is ready (or --wait=promoted, --wait=completed); exit 1 if it fails, 3 on --wait-timeout")
	cmd.Flags().Lookup("wait").NoOptDefVal = "ready"
	cmd.Flags().DurationVar(&wo.timeout, "wait-timeout", 30*time.Minute, "with --wait: give up after this long (exit 3)")
	wo.interval = time.Second
	cmd.Flags().StringVar(&req.APIKeyFile, "api-key-file", "", "file on the gateway's host with the key the new replicas want (vLLM --api-key)")
	return cmd
}

func newAbortCmd() *cobra.Command {
	f := &ctlFlags{}
	var req api.AbortRequest
	cmd := &cobra.Command{
		Use:   "abort",
		Short: "Stop the deployment in progress (a rollback if it was promoted)",
		Long: `Stop the deployment in progress. Before the promotion it ends aborted:
the new pool never received client traffic (a canary share goes back to
the live pool at once). After the promotion an abort is a rollback, as
cutover rollback does it: with rollout.retention_mode shrink, once the
retained pool was made smaller, its missing replicas are started through
the agents first and the switch waits until they serve (so without --now
--timeout defaults to 30m; the abort goes on if the CLI gives up), and
--now switches at once onto the replicas left instead. Requests and
streams already running finish on the pool they started on either way.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !req.Now && !cmd.Flags().Changed("timeout") {
				f.timeout = 30 * time.Minute // after the promotion, a restore may load a model first
			}
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.Deployment, error) { return c.AbortWith(ctx, req) }, printDeploymentLine)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&req.Now, "now", false, "after the promotion, with retention_mode shrink: switch back at once onto the replicas the shrunk retained pool has left, as rollback --now")
	revisionFlag(cmd, &req.ExpectedRevision)
	return cmd
}

func newRetireCmd() *cobra.Command {
	f := &ctlFlags{}
	var force bool
	var rev int64
	cmd := &cobra.Command{
		Use:   "retire",
		Short: "End the old pool's retention now: drain it and run on_retire hooks",
		Long: `End the retention of the old pool now: it is drained and the on_retire
hooks run (free its GPUs there); after that rollback is refused. While
the post-promotion checks run (validation.post_promotion), retire
is refused unless --force, which ends them and their automatic rollback
too. While on_retire hooks are failing, retire retries them at once; with
--force the pool is marked retired without them (you freed the GPUs
yourself; replicas cutover started through its agents are still stopped).

Without --force, retire waits (up to --timeout) for the outcome of the
attempt it started: exit 0 once the pool is retired, exit 1 with the failing
hook's output when an on_retire hook failed (again), or when the retirement
did not finish within --timeout (a long drain: follow it with cutover status).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call(cmd, f, func(ctx context.Context, c *api.Client) (*api.Deployment, error) {
				return retireAndWait(ctx, c, api.RetireRequest{Force: force, ExpectedRevision: rev}, f.timeout)
			}, printDeploymentLine)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&force, "force", false, "end the post-promotion checks too; during retirement, mark the pool retired even though on_retire hooks fail")
	revisionFlag(cmd, &rev)
	return cmd
}

// retirePoll is how often retire asks for the outcome of its attempt.
const retirePoll = 200 * time.Millisecond

// retireAndWait asks for the retirement and, without force, waits for the
// outcome of the attempt it started: the deployment completed (nil), or
// one more failed on_retire attempt (an error carrying the hook's output).
func retireAndWait(ctx context.Context, c *api.Client, req api.RetireRequest, timeout time.Duration) (*api.Deployment, error) {
	before := -1 // failed attempts before this call; -1: unknown
	if st, err := c.Status(ctx); err == nil && st.Deployment != nil {
		before = st.Deployment.RetireAttempts
	}
	d, err := c.RetireWith(ctx, req)
	if err != nil || req.Force {
		return d, err
	}
	if before < 0 {
		before = d.RetireAttempts
	}
	t := time.NewTicker(retirePoll)
	defer t.Stop()
	for {
		switch {
		case d.Phase == "completed":
			return d, nil
		case d.RetireAttempts > before:
			return d, retireFailed(d)
		case d.Phase != "promoted" && d.Phase != "retiring":
			return d, fmt.Errorf("deployment %s is %s, not retired: %s", d.ID, d.Phase, d.Reason)
		}
		select {
		case <-ctx.Done():
			what := d.Waiting
			if what == "" {
				what = d.Reason
			}
			return d, fmt.Errorf("deployment %s is still %s after --timeout %s: %s (follow it with cutover status)", d.ID, d.Phase, timeout, what)
		case <-t.C:
		}
		next, err := c.Deployment(ctx, d.ID)
		if err != nil && ctx.Err() == nil {
			// The retirement was accepted: it goes on (or resumes
			// when the gateway is back) whatever this wait learns.
			return d, fmt.Errorf("the retirement of %s (deployment %s) was accepted, but following it failed: %w; it goes on in the gateway, and resumes after a restart: follow it with cutover status", d.From, d.ID, err)
		}
		if err == nil {
			d = next
		}
	}
}

// retireFailed describes a failed retirement attempt of d with the output
// of its latest failing on_retire hook.
func retireFailed(d *api.Deployment) error {
	var b strings.Builder
	fmt.Fprintf(&b, "retirement of %s failed (attempt %d, next automatic try %s): %s", d.From, d.RetireAttempts, until(d.NextRetireAttempt), d.RetireError)
	for i := len(d.Hooks) - 1; i >= 0; i-- {
		if h := d.Hooks[i]; h.Event == "on_retire" && !h.OK {
			if h.Output != "" {
				fmt.Fprintf(&b, "\nhook output (%s):\n%s", h.Hook, h.Output)
			}
			break
		}
	}
	b.WriteString("\n`cutover retire` tries again now; `cutover retire --force` marks the pool retired without the hook")
	return errors.New(b.String())
}

func printDeploymentLine(w io.Writer, d *api.Deployment) {
	fmt.Fprintf(w, "deployment %s: %s\n", d.ID, d.Phase)
	if d.Reason != "" {
		fmt.Fprintf(w, "  %s\n", d.Reason)
	}
}

// printDeployment writes the deployment block of cutover status.
func printDeployment(w io.Writer, d *api.Deployment) {
	fmt.Fprintf(w, "\ndeployment %s: %s -> %s (%s), from %s (%s)\n", d.ID, d.Model, d.Pool, strings.Join(d.Replicas, " "), d.From, d.FromModel)
	fmt.Fprintf(w, "  phase     %s since %s (%s ago)\n", strings.ToUpper(d.Phase), d.PhaseSince.Local().Format(time.DateTime), ago(d.PhaseSince))
	if !d.Deadline.IsZero() {
		fmt.Fprintf(w, "  %-9s %s (%s)\n", kindLabel(d.DeadlineKind), d.Deadline.Local().Format(time.DateTime), until(d.Deadline))
	}
	if c := canaryNote(d); c != "" {
		fmt.Fprintf(w, "  canary    %s\n", c)
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "  reason    %s\n", d.Reason)
	}
	// While gates are evaluated the note is their summary, which the
	// gates' lines show in full; any other note (the retained pool kept
	// awake, a shrink waiting for its drain) is shown whatever the gates.
	if d.Waiting != "" && (len(d.Gates) == 0 || d.Phase != "validating" && d.Phase != "canary") {
		fmt.Fprintf(w, "  waiting   %s\n", d.Waiting)
	}
	if !d.RetiredAt.IsZero() {
		fmt.Fprintf(w, "  retired   %s at %s\n", d.From, d.RetiredAt.Local().Format(time.DateTime))
	}
	if d.Cost != nil {
		fmt.Fprintf(w, "  gpu       %s\n", costLine(d.Cost, false))
	}
	if d.RetireError != "" {
		fmt.Fprintf(w, "  RETIRE FAILING (attempt %d, next %s): %s\n", d.RetireAttempts, until(d.NextRetireAttempt), d.RetireError)
	}
	if len(d.Gates) > 0 {
		switch {
		case d.GatesFromGateways > 0 && d.ShadowFromGateways > 0:
			fmt.Fprintf(w, "  gates     over the traffic of %d gateways, shadow copies from %d\n", d.GatesFromGateways, d.ShadowFromGateways)
		case d.GatesFromGateways > 0:
			fmt.Fprintf(w, "  gates     over the traffic of %d gateways\n", d.GatesFromGateways)
		default:
			fmt.Fprintln(w, "  gates")
		}
		for _, g := range d.Gates {
			fmt.Fprintf(w, "    %-24s %-12s %10g %s %-8g n=%d/%d", g.Name, strings.ToUpper(g.Verdict), g.Value, g.Op, g.Threshold, g.Samples, g.MinSamples)
			if g.ConsecutiveFailures > 0 {
				fmt.Fprintf(w, "  failing %dx", g.ConsecutiveFailures)
			}
			fmt.Fprintln(w)
		}
	}
	if d.Phase == "promoted" && time.Until(d.PostPromotionUntil) > 0 { // not after a rollback or a forced retire
		fmt.Fprintf(w, "  post-promotion checks until %s (%s)\n", d.PostPromotionUntil.Local().Format(time.DateTime), until(d.PostPromotionUntil))
	}
	for _, h := range lastN(d.Hooks, 5) {
		mark := "ok"
		if !h.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(w, "  hook      %s %s %s (%dms)\n", h.Event, mark, h.Hook, h.DurationMS)
	}
	if len(d.PendingHooks) > 0 {
		fmt.Fprintf(w, "  pending   hooks for %s\n", strings.Join(d.PendingHooks, ", "))
	}
}

func lastN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func kindLabel(kind string) string {
	switch kind {
	case "retention":
		return "retain to"
	case "auto_promote":
		return "promote"
	case "drain":
		return "drain by"
	case "validation":
		return "validate"
	case "canary_step":
		return "step end"
	default:
		return "deadline"
	}
}

func ago(t time.Time) string { return time.Since(t).Round(time.Second).String() }

func until(t time.Time) string { return untilFrom(time.Now(), t) }

// plural is n and noun, with an s when n is not 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

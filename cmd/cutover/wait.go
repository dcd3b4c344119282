package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/api"
)

// exitError carries its own exit code (main's exitCode honours it).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// waitTargets are the phases `cutover wait --for` accepts.
var waitTargets = []string{"ready", "promoted", "completed"}

// forwardPhases is the way forward, in order. A deployment that reached a
// later phase has passed the earlier ones: with auto-promotion, a wait for
// ready may first see it promoted.
var forwardPhases = []string{"pending", "warming", "validating", "canary", "ready", "promoted", "retiring", "completed"}

// waitVerdict says what phase means for a wait for target: done (reached
// or passed), failed (a side exit: failed, aborted, rolled_back), or
// neither yet.
func waitVerdict(phase, target string) (done, failed bool) {
	at := slices.Index(forwardPhases, phase)
	if at < 0 {
		return false, terminalPhase(phase)
	}
	return at >= slices.Index(forwardPhases, target), false
}

// awaitsPromote reports a canary at its last step whose pause is 0: it
// holds its weight, under the gates, until cutover promote — ready, for a
// wait, though its phase stays canary.
func awaitsPromote(d *api.Deployment) bool {
	c := d.Canary
	return d.Phase == "canary" && c != nil && c.Step == c.Steps && c.StepEndsAt.IsZero()
}

// waitOptions are the flags of cutover wait, and of deploy --wait.
type waitOptions struct {
	target     string
	deployment string // "" means the current, else latest, deployment
	timeout    time.Duration
	interval   time.Duration
}

func (o *waitOptions) check(flagFor string) error {
	if !slices.Contains(waitTargets, o.target) {
		return &usageError{fmt.Errorf("%s %q: want %s", flagFor, o.target, strings.Join(waitTargets, ", "))}
	}
	if o.timeout <= 0 {
		return &usageError{fmt.Errorf("wait timeout must be positive, got %s", o.timeout)}
	}
	if o.interval <= 0 {
		return &usageError{fmt.Errorf("--interval must be positive, got %s", o.interval)}
	}
	return nil
}

func newWaitCmd() *cobra.Command {
	f := &ctlFlags{}
	o := &waitOptions{}
	cmd := &cobra.Command{
		Use:   "wait [--for ready|promoted|completed] [--deployment ID] [--timeout D]",
		Short: "Wait until a deployment reaches a phase; non-zero exit if it fails or time runs out",
		Long: `Wait until the deployment in progress (else the latest one, or --deployment
ID) reaches the phase given by --for, polling the admin API every --interval
and printing each phase change. A later phase on the way forward counts:
a wait for ready ends at promoted too (auto-promotion).

Exit codes, for CI pipelines:
  0  the deployment reached the phase
  1  it ended failed, aborted or rolled_back (the reason is printed), or
     the server refused (no deployment, unknown id, wrong token)
  2  bad flags
  3  --timeout ran out first (the phase it was in is printed)

An unreachable gateway is retried until the timeout. With --json the
deployment's last state is printed as JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.timeout = f.timeout
			if err := o.check("--for"); err != nil {
				return err
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			return awaitPhase(cmd.Context(), c, o, cmd.OutOrStdout(), f.json)
		},
	}
	f.register(cmd)
	// Here --timeout bounds the whole wait, not one call.
	f.timeout = 30 * time.Minute
	t := cmd.Flags().Lookup("timeout")
	t.DefValue, t.Usage = f.timeout.String(), "give up after this long (exit 3)"
	cmd.Flags().StringVar(&o.target, "for", "ready", "phase to wait for: "+strings.Join(waitTargets, ", "))
	cmd.Flags().StringVar(&o.deployment, "deployment", "", "deployment id to wait for (default: the current, else the latest)")
	cmd.Flags().DurationVar(&o.interval, "interval", time.Second, "time between polls")
	return cmd
}

// perCall bounds one admin API call during a wait.
const perCall = 30 * time.Second

// awaitPhase polls until the deployment reaches o.target, fails, or
// o.timeout runs out, printing each phase it sees. The error says which;
// its exit code is 1 for a failed deployment or a refusal, exitTimeout for
// the timeout.
func awaitPhase(ctx context.Context, c *api.Client, o *waitOptions, out io.Writer, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tw := termWriter{out}
	id := o.deployment
	var last *api.Deployment
	var lastErr error
	lastPhase := ""
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		d, err := fetchDeployment(ctx, c, id)
		var ae *api.Error
		switch {
		case errors.As(err, &ae) && ae.StatusCode/100 == 4:
			return errors.New(ae.Message) // a wrong token or id: waiting will not help
		case err != nil && ctx.Err() == nil:
			lastErr = err // unreachable or 5xx: retried
		case err == nil:
			lastErr = nil
			last, id = d, d.ID
			if d.Phase != lastPhase && !asJSON {
				lastPhase = d.Phase
				line := fmt.Sprintf("%s  deployment %s: %s", time.Now().Format(time.TimeOnly), d.ID, d.Phase)
				if note := firstNonEmpty(d.Waiting, d.Reason); note != "" {
					line += " — " + shorten(note, 160)
				}
				fmt.Fprintln(tw, line)
			}
			done, failed := waitVerdict(d.Phase, o.target)
			if !done && o.target == "ready" && awaitsPromote(d) {
				done = true // a canary holding its last, manual step is ready to promote
			}
			if done || failed {
				if asJSON {
					printJSON(out, d)
				}
				if failed {
					return fmt.Errorf("deployment %s %s: %s", d.ID, d.Phase, firstNonEmpty(d.Reason, "no reason recorded"))
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
				what := "a deployment"
				if id != "" {
					what = "deployment " + id
				}
				return fmt.Errorf("interrupted while waiting for %s to be %s: %w", what, o.target, cause)
			}
			if asJSON && last != nil {
				printJSON(out, last)
			}
			return &exitError{code: exitTimeout, err: timeoutReason(o, last, lastErr)}
		case <-tick.C:
		}
	}
}

// timeoutReason says where the deployment was when the wait gave up.
func timeoutReason(o *waitOptions, last *api.Deployment, lastErr error) error {
	msg := fmt.Sprintf("timed out after %s waiting for", o.timeout)
	if last == nil {
		msg += " a deployment to be " + o.target
		if lastErr != nil {
			return fmt.Errorf("%s: %w", msg, lastErr)
		}
		return errors.New(msg)
	}
	msg += fmt.Sprintf(" deployment %s to be %s; it is %s", last.ID, o.target, last.Phase)
	if note := firstNonEmpty(last.Waiting, last.Reason); note != "" {
		msg += ": " + note
	}
	if lastErr != nil {
		msg += fmt.Sprintf(" (then the gateway stopped answering: %v)", lastErr)
	}
	return errors.New(msg)
}

// fetchDeployment reads deployment id, or with id "" the status's current
// (else latest) deployment.
func fetchDeployment(ctx context.Context, c *api.Client, id string) (*api.Deployment, error) {
	ctx, cancel := context.WithTimeout(ctx, perCall)
	defer cancel()
	if id != "" {
		return c.Deployment(ctx, id)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	if st.Deployment == nil {
		return nil, &api.Error{StatusCode: 404, ErrorBody: api.ErrorBody{Message: "no deployment to wait for: start one with cutover deploy", Code: "not_found"}}
	}
	return st.Deployment, nil
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

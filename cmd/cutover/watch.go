package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/api"
)

// watchFlags are the flags of cutover status --watch.
type watchFlags struct {
	on       bool
	interval time.Duration
}

func (w *watchFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.on, "watch", false, "redraw a compact view every --interval until interrupted (Ctrl-C)")
	cmd.Flags().DurationVar(&w.interval, "interval", 2*time.Second, "with --watch: time between redraws")
}

// ANSI sequences for redrawing a terminal in place.
const (
	ansiClear     = "\x1b[2J"
	ansiHome      = "\x1b[H"
	ansiClearLine = "\x1b[K"
	ansiClearDown = "\x1b[J"
)

// watchStatus redraws the status until the command's context is done
// (Ctrl-C), which is not an error. On a terminal each view replaces the
// last; otherwise views follow each other, separated by a blank line, and
// with --json each is one line of JSON. An unreachable gateway is shown and
// retried; a refusal (wrong token, wrong URL) ends the watch.
func watchStatus(cmd *cobra.Command, f *ctlFlags, w *watchFlags) error {
	if w.interval <= 0 {
		return &usageError{fmt.Errorf("--interval must be positive, got %s", w.interval)}
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	tty := isTerminal(out) && !f.json
	if tty {
		fmt.Fprint(out, ansiClear)
	}
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		st, err := fetchStatus(ctx, c, f.timeout)
		if ctx.Err() != nil {
			return nil
		}
		var ae *api.Error
		if errors.As(err, &ae) && ae.StatusCode/100 == 4 {
			return errors.New(ae.Message) // a wrong token or URL: waiting will not help
		}
		switch {
		case f.json && err != nil:
			fmt.Fprintf(cmd.ErrOrStderr(), "cutover: %s (retrying)\n", termSafe(err.Error()))
		case f.json:
			b, _ := json.Marshal(st) // a decoded api.Status always encodes
			fmt.Fprintf(out, "%s\n", b)
		default:
			var view bytes.Buffer
			fmt.Fprintf(&view, "%s  %s  every %s", time.Now().Format(time.TimeOnly), c.BaseURL, w.interval)
			if tty {
				view.WriteString("  (Ctrl-C to stop)")
			}
			view.WriteString("\n\n")
			if err != nil {
				fmt.Fprintf(&view, "%v\nretrying every %s\n", err, w.interval)
			} else {
				renderWatch(&view, st, time.Now())
			}
			writeView(out, []byte(termSafe(view.String())), tty, n == 0)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func fetchStatus(ctx context.Context, c *api.Client, timeout time.Duration) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Status(ctx)
}

// writeView draws one view: over the last one on a terminal, else after it.
func writeView(out io.Writer, view []byte, tty, first bool) {
	if !tty {
		if !first {
			fmt.Fprintln(out)
		}
		_, _ = out.Write(view)
		return
	}
	var b strings.Builder
	b.WriteString(ansiHome)
	for line := range strings.Lines(string(view)) {
		b.WriteString(strings.TrimSuffix(line, "\n"))
		b.WriteString(ansiClearLine + "\n")
	}
	b.WriteString(ansiClearDown)
	fmt.Fprint(out, b.String())
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// renderWatch writes the compact view of s: live pool, what protects it
// (as printStatus does), pools and replicas, the deployment with progress
// bars, and gates.
func renderWatch(w io.Writer, s *api.Status, now time.Time) {
	fmt.Fprintf(w, "LIVE %s", strings.ToUpper(s.Live))
	if p, ok := s.Pools[s.Live]; ok && p.Model != "" {
		fmt.Fprintf(w, "  %s", p.Model)
	}
	fmt.Fprintf(w, "  revision %d", s.Revision)
	if !s.SwitchedAt.IsZero() {
		fmt.Fprintf(w, "  switched %s ago", now.Sub(s.SwitchedAt).Round(time.Second))
		if s.Previous != "" {
			fmt.Fprintf(w, " from %s", s.Previous)
		}
	}
	fmt.Fprintln(w)
	if s.Protection.Summary != "" {
		fmt.Fprintf(w, "protection: %s\n", shorten(s.Protection.Summary, 160))
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range slices.Sorted(maps.Keys(s.Pools)) {
		p := s.Pools[n]
		model := p.Model
		if model == "" {
			model = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d healthy\t%d in flight\n", n, poolRole(s, n), model, p.HealthyReplicas, len(p.Replicas), p.InFlight)
		for _, r := range p.Replicas {
			health := "healthy"
			switch {
			case sleepsOnly(r):
				health = "asleep"
			case !r.Healthy:
				health = "UNHEALTHY"
			}
			line := fmt.Sprintf("\t%s\t%s\t%d in flight", health, r.URL, r.InFlight)
			if r.LastError != "" {
				line += "\t" + shorten(r.LastError, 90)
			}
			fmt.Fprintln(tw, line)
		}
	}
	_ = tw.Flush()

	d := s.Deployment
	if d == nil {
		return
	}
	fmt.Fprintf(w, "\ndeployment %s  %s -> %s  %s for %s\n", d.ID, d.Model, d.Pool, strings.ToUpper(d.Phase), now.Sub(d.PhaseSince).Round(time.Second))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, pl := range deploymentProgress(s, d, now) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", pl.label, progressBar(pl.frac, 24), pl.note)
	}
	if d.Waiting != "" {
		fmt.Fprintf(tw, "  waiting\t%s\n", shorten(d.Waiting, 140))
	} else if d.Reason != "" {
		fmt.Fprintf(tw, "  reason\t%s\n", shorten(d.Reason, 140))
	}
	if d.RetireError != "" {
		fmt.Fprintf(tw, "  RETIRE FAILING\tattempt %d: %s\n", d.RetireAttempts, shorten(d.RetireError, 120))
	}
	_ = tw.Flush()
	if len(d.Gates) > 0 {
		fmt.Fprintln(w, "  gates")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, g := range d.Gates {
			line := fmt.Sprintf("    %s\t%s\t%.4g %s %.4g\tn=%d/%d", g.Name, strings.ToUpper(g.Verdict), g.Value, g.Op, g.Threshold, g.Samples, g.MinSamples)
			if g.ConsecutiveFailures > 0 {
				line += fmt.Sprintf("\tfailing %dx", g.ConsecutiveFailures)
			}
			fmt.Fprintln(tw, line)
		}
		_ = tw.Flush()
	}
}

// poolRole says what pool name does now, as the gateway names it
// (api.Pool.Role): LIVE, "new (phase)" for a deployment's candidate,
// retained, retiring or standby.
func poolRole(s *api.Status, name string) string {
	p := s.Pools[name]
	switch {
	case p.Live:
		return "LIVE"
	case p.Role == "candidate" && s.Deployment != nil:
		return "new (" + s.Deployment.Phase + ")"
	case p.Role == "":
		return "standby" // a gateway older than the role field
	}
	return p.Role
}

func terminalPhase(phase string) bool {
	switch phase {
	case "completed", "failed", "aborted", "rolled_back":
		return true
	}
	return false
}

// progressLine is one bar of the deployment view.
type progressLine struct {
	label string
	frac  float64
	note  string
}

// deploymentProgress says how far along d is: healthy replicas while
// warming, gate samples while validating, and the time towards the
// deadline in any phase that has one.
func deploymentProgress(s *api.Status, d *api.Deployment, now time.Time) []progressLine {
	var lines []progressLine
	if d.Phase == "warming" && len(d.Replicas) > 0 {
		healthy := 0
		for _, r := range s.Pools[d.Pool].Replicas {
			if r.Healthy && containsURL(d.Replicas, r.URL) {
				healthy++
			}
		}
		lines = append(lines, progressLine{"replicas", float64(healthy) / float64(len(d.Replicas)), fmt.Sprintf("%d/%d healthy", healthy, len(d.Replicas))})
	}
	if d.Phase == "validating" {
		got, need, pass := 0, 0, 0
		for _, g := range d.Gates {
			if g.MinSamples > 0 {
				got += min(g.Samples, g.MinSamples)
				need += g.MinSamples
			}
			if g.Verdict == "pass" {
				pass++
			}
		}
		if need > 0 {
			lines = append(lines, progressLine{"samples", float64(got) / float64(need), fmt.Sprintf("%d/%d gates pass", pass, len(d.Gates))})
		}
	}
	if c := canaryNote(d); c != "" {
		lines = append(lines, progressLine{"weight", float64(d.Canary.Weight) / 100, c})
	}
	if !d.Deadline.IsZero() && !terminalPhase(d.Phase) {
		span := d.Deadline.Sub(d.PhaseSince)
		frac := 1.0
		if span > 0 {
			frac = float64(now.Sub(d.PhaseSince)) / float64(span)
		}
		lines = append(lines, progressLine{"time", frac, fmt.Sprintf("%s %s (%s)", kindLabel(d.DeadlineKind), d.Deadline.Local().Format(time.TimeOnly), untilFrom(now, d.Deadline))})
	}
	return lines
}

func containsURL(urls []string, u string) bool {
	for _, v := range urls {
		if strings.TrimRight(v, "/") == strings.TrimRight(u, "/") {
			return true
		}
	}
	return false
}

// progressBar draws frac (clamped to 0..1) as [#####-----] and a percentage.
func progressBar(frac float64, width int) string {
	frac = max(0, min(1, frac))
	n := int(frac*float64(width) + 0.5)
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", n), strings.Repeat("-", width-n), int(frac*100+0.5))
}

// untilFrom says when t is, seen at now, to the second: "in 2m0s",
// "3s ago", or "just now" / "in under a second" rather than "0s ago".
func untilFrom(now, t time.Time) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d == 0 && !t.After(now):
		return "just now"
	case d == 0:
		return "in under a second"
	case d < 0:
		return fmt.Sprintf("%s ago", -d)
	}
	return "in " + d.String()
}

// shorten cuts s to at most n runes, marking the cut.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

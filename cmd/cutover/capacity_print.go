package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// costLine sums up c: each pool and state's GPU-seconds (with the GPUs
// held now when withHeld) and the overlap.
func costLine(c *api.Cost, withHeld bool) string {
	var parts []string
	for _, u := range c.Usage {
		p := fmt.Sprintf("%s %s %s", u.Pool, u.State, gpuSeconds(u.GPUSeconds))
		if withHeld {
			p = fmt.Sprintf("%s %s %d GPU(s), %s", u.Pool, u.State, u.GPUs, gpuSeconds(u.GPUSeconds))
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		parts = []string{"none held"}
	}
	return fmt.Sprintf("%s; overlap %s", strings.Join(parts, "; "), gpuSeconds(c.OverlapGPUSeconds))
}

// gpuSeconds prints GPU-seconds, with GPU-hours beyond an hour.
func gpuSeconds(s float64) string {
	if s >= 3600 {
		return fmt.Sprintf("%.0f GPU-s (%.2f GPU-h)", s, s/3600)
	}
	return fmt.Sprintf("%.0f GPU-s", s)
}

// printCapacity writes the status's GPUs, agents, and launch and
// restores in progress.
func printCapacity(w io.Writer, s *api.Status) {
	if s.Cost != nil && len(s.Cost.Usage) > 0 {
		fmt.Fprintf(w, "\ngpus held now and GPU-seconds by pool and state since %s (overlap: every state but live; replicas given with --replica count 0):\n  %s\n",
			s.Cost.Since.Local().Format(time.DateTime), costLine(s.Cost, true))
	}
	if len(s.Agents) > 0 {
		// The gateway puts a retained pool to sleep through the replicas'
		// own API, not the agent's: the agent still says running.
		asleep := map[string]bool{}
		for _, p := range s.Pools {
			for _, r := range p.Replicas {
				if r.Asleep {
					asleep[r.URL] = true
				}
			}
		}
		fmt.Fprintln(w, "\nagents:")
		for _, a := range s.Agents {
			state := "up"
			if !a.Up {
				state = "DOWN"
			}
			line := fmt.Sprintf("  %-10s %-4s since %s  %d/%d GPUs free", a.Name, state, a.Since.Local().Format(time.DateTime), a.FreeGPUs, a.GPUs)
			var rs []string
			for _, r := range a.Replicas {
				state := r.State
				if state == "running" && asleep[r.URL] {
					state = "asleep"
				}
				rs = append(rs, r.ID+" "+state)
			}
			if len(rs) > 0 {
				line += "  replicas: " + strings.Join(rs, ", ")
			}
			if !a.Up && a.LastError != "" {
				line += fmt.Sprintf("  (next check %s: %s)", until(a.NextCheckAt), a.LastError)
			}
			fmt.Fprintln(w, line)
		}
	}
	if len(s.Orphans) > 0 {
		fmt.Fprintln(w, "\nreplicas no pool holds, still to stop (retried while their agent does not answer):")
		for _, r := range s.Orphans {
			fmt.Fprintf(w, "  %-10s %s %s (%d GPU(s))\n", r.Agent, r.ID, r.URL, r.GPUs)
		}
	}
	if l := s.Launch; l != nil {
		fmt.Fprintf(w, "\nlaunch of %s since %s:\n", l.Model, l.Since.Local().Format(time.DateTime))
		printSlots(w, l.Replicas)
	}
	for _, r := range s.Restores {
		kind := "for the rollback"
		if r.Background {
			kind = "in the background"
		}
		fmt.Fprintf(w, "\nrestore of %s to full size (%d replica(s) of %s, deployment %s, %s) since %s:\n",
			r.Pool, r.Wanted, r.Model, r.Deployment, kind, r.Since.Local().Format(time.DateTime))
		printSlots(w, r.Replicas)
	}
}

// printSlots writes a launch's or restore's replicas, one a line.
func printSlots(w io.Writer, rs []api.LaunchReplica) {
	for _, r := range rs {
		line := fmt.Sprintf("  %-10s %-8s", r.Agent, r.State)
		if r.ID != "" {
			line += fmt.Sprintf(" %s %s (%d GPU(s))", r.ID, r.URL, r.GPUs)
		}
		if r.Error != "" {
			line += "  " + r.Error
		}
		fmt.Fprintln(w, line)
	}
}

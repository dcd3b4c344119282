package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cutover-dev/cutover/api"
)

// printFleet prints the fleet part of a status: the store's health, the
// leader and every member; nothing for a single gateway.
func printFleet(w io.Writer, f *api.Fleet) {
	if f == nil {
		return
	}
	store := "reachable"
	if !f.Store.Healthy {
		store = "UNREACHABLE since " + f.Store.Since.UTC().Format(time.RFC3339) + " (serving the last routing table, changes refused)"
	}
	if f.Store.FromLocalCopy {
		store += ", started from the local copy"
	}
	if f.Store.Problem != "" {
		store += ", its STATE CANNOT BE FOLLOWED (changes refused)"
	}
	leader := f.Leader
	switch {
	case leader == "" && !f.Store.Healthy:
		leader = "(unknown while etcd is unreachable)"
	case leader == "":
		leader = "(none)"
	}
	fmt.Fprintf(w, "\nfleet: %d gateways   leader: %s   store: %s %s   this gateway: %s\n", len(f.Members), leader, f.Store.Kind, store, f.Self)
	if f.Store.Problem != "" {
		fmt.Fprintf(w, "  store problem: %s\n", f.Store.Problem)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var differ []string
	for _, m := range f.Members {
		role := "follower"
		if m.Name == f.Leader {
			role = "leader"
		}
		seen := "-"
		if !m.LastSeen.IsZero() {
			seen = time.Since(m.LastSeen).Round(time.Second).String() + " ago"
		}
		config := ""
		if f.Config != "" && m.Config != "" && m.Config != f.Config {
			config = "\tCONFIG DIFFERS"
			differ = append(differ, m.Name)
		}
		fmt.Fprintf(tw, "  %s\t%s\tadmin %s\trevision %d\tseen %s%s\n", m.Name, role, m.Admin, m.Revision, seen, config)
	}
	_ = tw.Flush()
	if len(differ) > 0 {
		fmt.Fprintf(w, "  configuration of %s differs from %s's (model_name, pools, rollout.strategy or rollout.retention_mode): keep the file the same on every gateway and reload each\n", strings.Join(differ, ", "), f.Self)
	}
}

package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the module version and the commit this binary was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), versionString())
			return nil
		},
	}
}

// buildCommit is the commit when the build sets it (make build:
// -ldflags "-X main.buildCommit=..."), for builds without Go's VCS stamp
// (-buildvcs=false, a source tree without .git).
var buildCommit string

// versionString is what cutover version and cutover --version print.
func versionString() string {
	bi, _ := debug.ReadBuildInfo()
	return formatVersion(bi, buildCommit)
}

// formatVersion says which build bi is: "cutover VERSION (commit C, TIME,
// modified) GOVERSION". VERSION is the module version (v1.2.3 from go
// install, "(devel)" from a checkout); the commit comes from the VCS
// stamp that go build records, else from commit.
func formatVersion(bi *debug.BuildInfo, commit string) string {
	if bi == nil {
		return "cutover (unknown version: built without module information)"
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	rev, at := commit, ""
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	out := "cutover " + version
	if rev == "" {
		out += " (commit unknown)"
	} else {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " (commit " + rev
		if at != "" {
			out += ", " + at
		}
		if modified {
			out += ", modified"
		}
		out += ")"
	}
	return out + " " + bi.GoVersion
}

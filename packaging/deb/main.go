// Command deb builds cutover's Debian package from a cutover binary with
// nfpm: the binary, the conffiles /etc/cutover/cutover.yaml and
// agent.yaml, the systemd units cutover.service and cutover-agent.service,
// shell completions and the maintainer scripts that make the cutover
// user, /var/lib/cutover, /var/lib/cutover-agent, /var/log/cutover-agent
// and the admin and agent tokens. `make deb` runs it:
//
//	go run ./deb -binary ../bin/cutover -version 0.1.0 -out ../dist
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
)

func main() {
	var o Options
	flag.StringVar(&o.Binary, "binary", "", "the cutover binary to package (required; it is run to make the shell completions)")
	flag.StringVar(&o.Version, "version", "", "Debian version of the package, e.g. 0.1.0 or 0.1.0~git20261206.abb6fd2 (required)")
	flag.StringVar(&o.Arch, "arch", runtime.GOARCH, "Debian architecture; the binary must be built for it")
	flag.StringVar(&o.OutDir, "out", ".", "directory for cutover_VERSION_ARCH.deb")
	flag.Parse()
	path, err := Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

package driver

import (
	"bufio"
	"bytes"
	"os"
	"strings"
)

// checkNoDelay warns when HAProxy's configuration file has no
// `option http-no-delay`: without it HAProxy may hold small response
// chunks (SSE tokens) for up to ~200 ms to merge them. The Runtime API
// cannot show the running configuration, so the file is what cutover can
// read; with no file configured it says how to enable the check.
func (h *HAProxy) checkNoDelay() {
	path := h.opts.ConfigFile
	if path == "" {
		h.log.Info("haproxy: set haproxy.config_file to let cutover check that the configuration has `option http-no-delay`")
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		h.log.Warn("haproxy: cannot read the configuration to check `option http-no-delay`", "config_file", path, "error", err)
		return
	}
	if !hasNoDelay(b) {
		h.log.Warn("haproxy: the configuration has no `option http-no-delay`: HAProxy may hold streamed tokens up to ~200 ms; add it to the defaults section",
			"config_file", path)
	}
}

// hasNoDelay reports whether cfg enables option http-no-delay on some
// line that is not a comment.
func hasNoDelay(cfg []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if f := strings.Fields(line); len(f) == 2 && f[0] == "option" && f[1] == "http-no-delay" {
			return true
		}
	}
	return false
}

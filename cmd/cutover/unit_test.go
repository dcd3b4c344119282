package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/config"
)

// unitFile is the systemd unit the Debian package ships (make deb).
const unitFile = "../../packaging/deb/files/cutover.service"

// unitDirectives reads the [Service] section of the unit: directive ->
// values in order.
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && section == "[Service]" {
			out[k] = append(out[k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServiceUnitHardening: the shipped unit runs as the package's user,
// is hardened, reloads with SIGHUP, and gives the drain time to finish.
func TestServiceUnitHardening(t *testing.T) {
	d := unitDirectives(t)
	want := map[string]string{
		"User":                     "cutover",
		"Group":                    "cutover",
		"ExecStart":                "/usr/bin/cutover serve --config /etc/cutover/cutover.yaml --log-format json",
		"ExecReload":               "/bin/kill -HUP $MAINPID",
		"StateDirectory":           "cutover",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"PrivateTmp":               "yes",
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "2",
		"LimitNOFILE":              "65536",
		"KillSignal":               "SIGTERM",
		"StateDirectoryMode":       "0750",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// systemd kills what is left after TimeoutStopSec: it must outlast the
	// default drain and the shipped config's.
	stop, err := time.ParseDuration(strings.Join(d["TimeoutStopSec"], ""))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	b, err := os.ReadFile("../../packaging/deb/files/cutover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := config.Parse(b)
	if err != nil {
		t.Fatalf("shipped config: %v", err)
	}
	if shipped.StateDir != "/var/lib/cutover" || shipped.Admin.TokenFile != "/etc/cutover/token" {
		t.Errorf("shipped config: state_dir %s, token_file %s; the package makes /var/lib/cutover and /etc/cutover/token",
			shipped.StateDir, shipped.Admin.TokenFile)
	}
	for name, drain := range map[string]time.Duration{"default": config.Default().Proxy.DrainTimeout.D(), "shipped": shipped.Proxy.DrainTimeout.D()} {
		if stop < drain+10*time.Second {
			t.Errorf("TimeoutStopSec %s leaves under 10s after the %s proxy.drain_timeout %s", stop, name, drain)
		}
	}
}

// TestServiceUnitVerifies: systemd-analyze verify accepts the unit (the
// binary path points at the test's build: verify checks it exists).
func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is missing (scripts/deps.sh installs Debian's systemd)")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "cutover.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/bin/cutover", binary)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
	// verify exits 0 on directives it ignores: any output is a finding.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

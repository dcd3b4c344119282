package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/agent"
	"github.com/cutover-dev/cutover/internal/config"
)

// unitFile and agentUnitFile are the systemd units the Debian package
// ships (make deb).
const (
	unitFile      = "../../packaging/deb/files/cutover.service"
	agentUnitFile = "../../packaging/deb/files/cutover-agent.service"
)

// unitDirectives reads the [Service] section of a unit: directive ->
// values in order.
func unitDirectives(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
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
	d := unitDirectives(t, unitFile)
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
	checkDirectives(t, d, want)
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

// TestServiceUnitVerifies: systemd-analyze verify accepts both units (the
// binary path points at the test's build: verify checks it exists).
func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is missing (scripts/deps.sh installs Debian's systemd)")
	}
	dir := t.TempDir()
	var units []string
	for _, file := range []string{unitFile, agentUnitFile} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		unit := filepath.Join(dir, filepath.Base(file))
		if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/bin/cutover", binary)), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, unit)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	// verify exits 0 on directives it ignores: any output is a finding.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestAgentUnitHardening: the agent's unit keeps cutover.service's
// hardening but what a supervisor of GPU processes cannot have
// (PrivateDevices would hide /dev/nvidia*), leaves the replicas running
// when the agent stops (they are re-adopted), has no ExecReload (SIGHUP
// would end the agent), and gives the replicas a writable HOME and a
// TMPDIR that outlives an agent restart (not PrivateTmp).
func TestAgentUnitHardening(t *testing.T) {
	d := unitDirectives(t, agentUnitFile)
	want := map[string]string{
		"User":                     "cutover",
		"Group":                    "cutover",
		"ExecStart":                "/usr/bin/cutover agent --config /etc/cutover/agent.yaml --log-format json",
		"KillMode":                 "process",
		"StateDirectory":           "cutover-agent cutover-agent/tmp",
		"LogsDirectory":            "cutover-agent",
		"Environment":              "HOME=/var/lib/cutover-agent TMPDIR=/var/lib/cutover-agent/tmp",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"PrivateTmp":               "no", // removed at stop, under replicas that outlive it (KillMode=process)
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "2",
		"LimitNOFILE":              "65536",
	}
	checkDirectives(t, d, want)
	for _, k := range []string{"PrivateDevices", "ExecReload"} {
		if v, ok := d[k]; ok {
			t.Errorf("%s = %q: the agent's unit must not set it", k, v)
		}
	}
	// Every other protection of cutover.service is kept.
	for k, v := range unitDirectives(t, unitFile) {
		if !strings.HasPrefix(k, "Protect") && !strings.HasPrefix(k, "Restrict") && k != "LockPersonality" {
			continue
		}
		if got := d[k]; !slices.Equal(got, v) {
			t.Errorf("%s = %q, want cutover.service's %q", k, got, v)
		}
	}
}

// TestShippedAgentConfig: the package's /etc/cutover/agent.yaml is valid
// as shipped (its token file made at install, a number of GPUs where
// nvidia-smi is missing) and keeps its files where the unit lets it write.
func TestShippedAgentConfig(t *testing.T) {
	b, err := os.ReadFile("../../packaging/deb/files/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(t.TempDir(), "agent-token")
	if err := os.WriteFile(token, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "token_file: /etc/cutover/agent-token", "token_file: "+token, 1)
	y = strings.Replace(y, "gpus: auto", "gpus: 2", 1)
	file := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.LoadConfig(file)
	if err != nil {
		t.Fatalf("shipped agent.yaml: %v", err)
	}
	if cfg.LogDir != "/var/log/cutover-agent" || cfg.StateFile != "/var/lib/cutover-agent/agent-state.json" {
		t.Errorf("log_dir %s, state_file %s: the unit makes /var/log/cutover-agent and /var/lib/cutover-agent writable", cfg.LogDir, cfg.StateFile)
	}
	if !strings.Contains(string(b), "token_file: /etc/cutover/agent-token") {
		t.Errorf("token_file is not /etc/cutover/agent-token, the file the package makes")
	}
}

// checkDirectives fails for each directive of want that d does not set,
// once, to its value.
func checkDirectives(t *testing.T, d map[string][]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

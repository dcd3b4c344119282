package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestInstallUpgradeRemove builds the package from a fresh cutover binary
// and installs it with dpkg into a throwaway root (maintainer scripts run
// chrootless with DPKG_ROOT): files, modes, ownership, the user, the
// admin and agent tokens, both units passing systemd-analyze verify; then
// an upgrade keeps the edited conffiles, the tokens and the state, and a
// purge removes the tokens and the state but not the user.
func TestInstallUpgradeRemove(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg is missing")
	}
	tmp := t.TempDir()
	binary := filepath.Join(tmp, "cutover")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, "./cmd/cutover")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cutover: %v\n%s", err, out)
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pkg := func(version string) string {
		path, err := Build(Options{Binary: binary, Version: version, OutDir: tmp, MTime: mtime})
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	first := pkg("0.1.0")

	if os.Geteuid() != 0 {
		// dpkg --root runs the maintainer scripts, whose chown needs root:
		// check the unpacked files only.
		dir := filepath.Join(tmp, "x")
		dpkg(t, "", "dpkg-deb", "-x", first, dir)
		checkFiles(t, dir, -1)
		t.Skip("not root: installed the files only (dpkg-deb -x); the maintainer scripts need root")
	}

	root := newRoot(t)
	dpkg(t, root, "-i", first)
	uid := checkUser(t, root)
	checkFiles(t, root, uid)
	token := read(t, filepath.Join(root, "etc/cutover/token"))
	agentToken := read(t, filepath.Join(root, "etc/cutover/agent-token"))
	for _, tok := range []string{token, agentToken} {
		if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(tok) {
			t.Errorf("token %q: want 64 hex digits and a newline", tok)
		}
	}
	if token == agentToken {
		t.Errorf("the admin and agent tokens are the same")
	}
	if got := read(t, filepath.Join(root, "var/lib/dpkg/info/cutover.conffiles")); got != "/etc/cutover/agent.yaml\n/etc/cutover/cutover.yaml\n" {
		t.Errorf("conffiles = %q, want /etc/cutover/agent.yaml and /etc/cutover/cutover.yaml", got)
	}
	verifyUnits(t, root)
	// The shipped config is valid as installed (the state is not touched).
	check := exec.Command(filepath.Join(root, "usr/bin/cutover"), "config", "check", "--config", filepath.Join(root, "etc/cutover/cutover.yaml"))
	check.Env = append(os.Environ(), "CUTOVER_ADMIN_TOKEN="+strings.TrimSpace(token))
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("config check of the installed conffile: %v\n%s", err, out)
	}

	// Upgrade: an edited conffile, the token and the state survive.
	conf := filepath.Join(root, "etc/cutover/cutover.yaml")
	edited := read(t, conf) + "# edited by the operator\n"
	write(t, conf, edited, 0o644)
	agentConf := filepath.Join(root, "etc/cutover/agent.yaml")
	agentEdited := read(t, agentConf) + "# edited by the operator\n"
	write(t, agentConf, agentEdited, 0o644)
	agentState := filepath.Join(root, "var/lib/cutover-agent/agent-state.json")
	write(t, agentState, "{}", 0o600)
	state := filepath.Join(root, "var/lib/cutover/cutover.db")
	write(t, state, "state", 0o600)
	dpkg(t, root, "-i", pkg("0.1.1"))
	if got := read(t, conf); got != edited {
		t.Errorf("upgrade replaced the edited conffile")
	}
	if got := read(t, filepath.Join(root, "etc/cutover/token")); got != token {
		t.Errorf("upgrade changed the token")
	}
	if got := read(t, agentConf); got != agentEdited {
		t.Errorf("upgrade replaced the edited agent conffile")
	}
	if got := read(t, filepath.Join(root, "etc/cutover/agent-token")); got != agentToken {
		t.Errorf("upgrade changed the agent token")
	}
	if got := read(t, agentState); got != "{}" {
		t.Errorf("upgrade changed the agent's state: %q", got)
	}
	if got := read(t, state); got != "state" {
		t.Errorf("upgrade changed the state: %q", got)
	}
	if n := strings.Count(read(t, filepath.Join(root, "etc/passwd")), "\ncutover:"); n != 1 {
		t.Errorf("%d cutover users after the upgrade, want 1", n)
	}
	if out := dpkg(t, root, "-s", "cutover"); !strings.Contains(out, "Version: 0.1.1") {
		t.Errorf("dpkg -s after upgrade:\n%s", out)
	}
	checkFiles(t, root, uid)

	// Remove keeps config, token and state; purge drops the token and the
	// state, keeps the user.
	dpkg(t, root, "-r", "cutover")
	for _, p := range []string{"etc/cutover/cutover.yaml", "etc/cutover/token", "var/lib/cutover/cutover.db",
		"etc/cutover/agent.yaml", "etc/cutover/agent-token", "var/lib/cutover-agent/agent-state.json"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("after remove: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/cutover")); !os.IsNotExist(err) {
		t.Errorf("after remove, /usr/bin/cutover: %v", err)
	}
	dpkg(t, root, "-P", "cutover")
	for _, p := range []string{"etc/cutover", "var/lib/cutover", "var/lib/cutover-agent", "var/log/cutover-agent"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("after purge, %s: %v", p, err)
		}
	}
	if !strings.Contains(read(t, filepath.Join(root, "etc/passwd")), "\ncutover:") {
		t.Errorf("purge removed the cutover user")
	}
}

// newRoot makes a throwaway root with what dpkg and useradd --prefix need.
func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc", "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(root, "var/lib/dpkg/status"), "", 0o644)
	write(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n", 0o644)
	write(t, filepath.Join(root, "etc/group"), "root:x:0:\n", 0o644)
	write(t, filepath.Join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", 0o600)
	write(t, filepath.Join(root, "etc/gshadow"), "root:*::\n", 0o600)
	return root
}

// dpkg runs dpkg on root (or a command of its own when root is empty and
// args[0] names one) and returns its output; failure ends the test.
func dpkg(t *testing.T, root string, args ...string) string {
	t.Helper()
	var cmd *exec.Cmd
	if root == "" {
		cmd = exec.Command(args[0], args[1:]...)
	} else {
		cmd = exec.Command("dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-not-root"}, args...)...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out.String())
	}
	return out.String()
}

// checkUser returns the uid of the cutover system user the package made.
func checkUser(t *testing.T, root string) int {
	t.Helper()
	for _, line := range strings.Split(read(t, filepath.Join(root, "etc/passwd")), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] != "cutover" {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil || uid == 0 || uid >= 1000 {
			t.Errorf("cutover uid %q: want a system uid (1-999)", f[2])
		}
		if f[5] != "/var/lib/cutover" || f[6] != "/usr/sbin/nologin" {
			t.Errorf("cutover user: home %s shell %s", f[5], f[6])
		}
		if !strings.Contains(read(t, filepath.Join(root, "etc/group")), "\ncutover:x:"+f[3]+":") {
			t.Errorf("no cutover group with gid %s", f[3])
		}
		return uid
	}
	t.Fatal("no cutover user in /etc/passwd")
	return -1
}

// checkFiles checks the installed files' modes and owners; uid is the
// cutover user's, or -1 when the maintainer scripts did not run.
func checkFiles(t *testing.T, root string, uid int) {
	t.Helper()
	files := []struct {
		path  string
		mode  fs.FileMode
		owner int // 0 root, 1 cutover
	}{
		{"usr/bin/cutover", 0o755, 0},
		{"etc/cutover", fs.ModeDir | 0o755, 0},
		{"etc/cutover/cutover.yaml", 0o644, 0},
		{"usr/lib/systemd/system/cutover.service", 0o644, 0},
		{"usr/lib/systemd/system/cutover-agent.service", 0o644, 0},
		{"etc/cutover/agent.yaml", 0o644, 0},
		{"usr/share/bash-completion/completions/cutover", 0o644, 0},
		{"usr/share/zsh/vendor-completions/_cutover", 0o644, 0},
		{"usr/share/fish/vendor_completions.d/cutover.fish", 0o644, 0},
		{"var/lib/cutover", fs.ModeDir | 0o750, 1},
		{"etc/cutover/token", 0o600, 1},
		{"etc/cutover/agent-token", 0o600, 1},
		{"var/lib/cutover-agent", fs.ModeDir | 0o750, 1},
		{"var/log/cutover-agent", fs.ModeDir | 0o750, 1},
	}
	for _, f := range files {
		if f.owner == 1 && uid < 0 {
			continue
		}
		fi, err := os.Stat(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if fi.Mode() != f.mode {
			t.Errorf("/%s: mode %v, want %v", f.path, fi.Mode(), f.mode)
		}
		want := 0
		if f.owner == 1 {
			want = uid
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && uid >= 0 && int(st.Uid) != want {
			t.Errorf("/%s: owner uid %d, want %d", f.path, st.Uid, want)
		}
	}
	if b := read(t, filepath.Join(root, "usr/share/bash-completion/completions/cutover")); !strings.Contains(b, "__start_cutover") {
		t.Errorf("bash completion does not look like cobra's")
	}
}

// verifyUnits runs systemd-analyze verify on the installed units, their
// ExecStart pointed at the installed binary (verify checks it exists).
func verifyUnits(t *testing.T, root string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is missing (scripts/deps.sh installs Debian's systemd): units not verified")
		return
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"cutover.service", "cutover-agent.service"} {
		b := read(t, filepath.Join(root, "usr/lib/systemd/system", name))
		unit := filepath.Join(dir, name)
		write(t, unit, strings.ReplaceAll(b, "/usr/bin/cutover", filepath.Join(root, "usr/bin/cutover")), 0o644)
		units = append(units, unit)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	// verify exits 0 on directives it ignores: any output is a finding.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, path, s string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

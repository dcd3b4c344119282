package main

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// packaged holds the units, the conffiles and the maintainer scripts.
//
//go:embed files
var packaged embed.FS

// Options say what to package and where to put it.
type Options struct {
	// Binary is the path of the cutover executable. It is run (completion
	// bash|zsh|fish) to make the shell completions, so it must run here.
	Binary string
	// Version is the package's Debian version, used as given.
	Version string
	// Arch is the Debian architecture (amd64, arm64); empty means amd64.
	Arch string
	// OutDir receives cutover_VERSION_ARCH.deb; empty means ".".
	OutDir string
	// MTime stamps every file; zero means SOURCE_DATE_EPOCH or now.
	MTime time.Time
}

// Build writes the package and returns its path.
func Build(o Options) (string, error) {
	if o.Binary == "" || o.Version == "" {
		return "", errors.New("binary and version are required")
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.OutDir == "" {
		o.OutDir = "."
	}
	work, err := os.MkdirTemp("", "cutover-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := copyEmbedded(work); err != nil {
		return "", err
	}
	completions := []struct{ shell, dst string }{
		{"bash", "/usr/share/bash-completion/completions/cutover"},
		{"zsh", "/usr/share/zsh/vendor-completions/_cutover"},
		{"fish", "/usr/share/fish/vendor_completions.d/cutover.fish"},
	}
	src := func(name string) string { return filepath.Join(work, "files", name) }
	contents := files.Contents{
		{Source: o.Binary, Destination: "/usr/bin/cutover", FileInfo: mode(0o755)},
		{Source: src("cutover.yaml"), Destination: "/etc/cutover/cutover.yaml", Type: files.TypeConfig, FileInfo: mode(0o644)},
		{Source: src("agent.yaml"), Destination: "/etc/cutover/agent.yaml", Type: files.TypeConfig, FileInfo: mode(0o644)},
		{Source: src("cutover.service"), Destination: "/usr/lib/systemd/system/cutover.service", FileInfo: mode(0o644)},
		{Source: src("cutover-agent.service"), Destination: "/usr/lib/systemd/system/cutover-agent.service", FileInfo: mode(0o644)},
		{Destination: "/etc/cutover", Type: files.TypeDir, FileInfo: mode(0o755)},
	}
	for _, c := range completions {
		out, err := exec.Command(o.Binary, "completion", c.shell).Output()
		if err != nil {
			return "", fmt.Errorf("%s completion %s: %w", o.Binary, c.shell, err)
		}
		path := filepath.Join(work, "completion."+c.shell)
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return "", err
		}
		contents = append(contents, &files.Content{Source: path, Destination: c.dst, FileInfo: mode(0o644)})
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          "cutover",
		Arch:          o.Arch,
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "cutover developers <cutover@cutover.dev>",
		Homepage:      "https://github.com/cutover-dev/cutover",
		License:       "Apache-2.0",
		MTime:         o.MTime,
		Description: "blue-green rollouts for self-hosted LLM APIs\n" +
			"cutover keeps two pools of OpenAI-compatible model servers (vLLM,\n" +
			"SGLang, TGI, llama.cpp server) behind one gateway and switches them\n" +
			"without cutting a stream. This package runs it as a systemd service.",
		Overridables: nfpm.Overridables{
			Contents:   contents,
			Recommends: []string{"systemd"},
			Scripts: nfpm.Scripts{
				PostInstall: src("postinst"),
				PreRemove:   src("prerm"),
				PostRemove:  src("postrm"),
			},
		},
	})
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(o.OutDir, fmt.Sprintf("cutover_%s_%s.deb", o.Version, o.Arch))
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(out)
		return "", fmt.Errorf("package %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return out, nil
}

func mode(m os.FileMode) *files.ContentFileInfo {
	return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: m}
}

// copyEmbedded writes the embedded files under dir, keeping the
// executable bit of the maintainer scripts.
func copyEmbedded(dir string) error {
	return fs.WalkDir(packaged, "files", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, path)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := packaged.ReadFile(path)
		if err != nil {
			return err
		}
		perm := os.FileMode(0o644)
		switch d.Name() {
		case "postinst", "prerm", "postrm":
			perm = 0o755
		}
		return os.WriteFile(dst, b, perm)
	})
}

package rollout

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// keyFileAllowed reports whether a deploy may name file as its replicas'
// key file: the gateway reads it and sends its contents as a Bearer token
// to replica URLs the caller chooses, so the file must be one a
// configured pool names (pools.<pool>.api_key_file) or lie under a
// directory of Options.KeyDirs (admin.api_key_dirs). Both sides are
// cleaned and their symlinks resolved before they are compared. The error
// names the file and the key that allows it.
func (c *Controller) keyFileAllowed(file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var named []string
	for _, p := range *c.configured.Load() {
		if p.APIKeyFile != "" {
			named = append(named, p.APIKeyFile)
		}
	}
	if slices.ContainsFunc(named, func(f string) bool { return resolved(f) == real }) {
		return nil
	}
	for _, d := range c.opts.KeyDirs {
		dir := resolved(d)
		if rel, err := filepath.Rel(dir, real); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
			return nil
		}
	}
	return fmt.Errorf("%s is neither a pool's api_key_file nor under a directory of admin.api_key_dirs: add its directory to admin.api_key_dirs in the gateway's configuration", file)
}

// resolved is path made absolute, cleaned and with its symlinks resolved;
// "" when it does not exist.
func resolved(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	r, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return ""
	}
	return r
}

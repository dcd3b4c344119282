package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/store"
)

func newStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Inspect the state files in state_dir (works without a running cutover)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newStateCheckCmd())
	cmd.AddCommand(newStateExportCmd(), newStateImportCmd())
	return cmd
}

// stateDirFlags locate state_dir: from --state-dir, else from the config.
type stateDirFlags struct {
	config, dir string
}

func (f *stateDirFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.config, "config", "c", "", "configuration file whose state_dir to use")
	cmd.Flags().StringVar(&f.dir, "state-dir", "", "the state directory (instead of --config)")
}

func (f *stateDirFlags) resolve() (string, error) {
	switch {
	case f.dir != "" && f.config != "":
		return "", &usageError{errors.New("give --state-dir or --config, not both")}
	case f.dir != "":
		return f.dir, nil
	case f.config != "":
		cfg, err := config.Load(f.config)
		if err != nil {
			return "", &usageError{err}
		}
		return cfg.StateDir, nil
	}
	return "", &usageError{errors.New("--state-dir DIR or --config FILE is required")}
}

func newStateCheckCmd() *cobra.Command {
	f := &stateDirFlags{}
	cmd := &cobra.Command{
		Use:   "check (--state-dir DIR | --config FILE)",
		Short: "Check the state file and its backup; exit 1 naming what is damaged",
		Long: `Check state_dir/` + store.DBFile + ` and its last good copy ` + store.BackupFile + `:
each must be a bbolt file that passes bbolt's consistency check and holds
what cutover writes (the state and history buckets, the revision and, past
revision 0, a JSON state document a start can use: the state, naming blue
or green live). Nothing is changed.

A running cutover holds the state file locked, so check it with cutover
stopped; the backup can be checked at any time.

Exit 0 when the state file is good (or does not exist yet, and neither does
a backup: the next start is a first start), 1 when it is missing beside a
backup, or it or its backup is damaged or cannot be read.
To restore the backup see docs/operations.md ("Restoring the state").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := f.resolve()
			if err != nil {
				return err
			}
			return checkState(cmd.OutOrStdout(), dir)
		},
	}
	f.register(cmd)
	return cmd
}

// checkState reports on the state file and the backup in dir, and fails
// when either is damaged or the state file cannot be checked.
func checkState(w io.Writer, dir string) error {
	var bad []string
	_, bakErr := os.Stat(filepath.Join(dir, store.BackupFile))
	for _, name := range []string{store.DBFile, store.BackupFile} {
		path := filepath.Join(dir, name)
		sum, err := store.CheckFile(path)
		if err == nil && sum.Doc != nil {
			if !json.Valid(sum.Doc) {
				err = &store.DamagedError{Path: path, Problem: fmt.Sprintf("its state document (revision %d) is not valid JSON", sum.Revision)}
			} else if derr := rollout.CheckDocument(sum.Doc, config.PoolNames); derr != nil {
				err = &store.DamagedError{Path: path, Problem: fmt.Sprintf("its state document (revision %d) cannot be started from: %v", sum.Revision, derr)}
			}
		}
		var de *store.DamagedError
		switch {
		case errors.Is(err, fs.ErrNotExist) && name == store.DBFile && bakErr == nil:
			fmt.Fprintf(w, "%s: MISSING, but its backup exists: a start refuses until you restore the backup (or remove it to start afresh)\n", path)
			bad = append(bad, name)
		case errors.Is(err, fs.ErrNotExist) && name == store.DBFile:
			fmt.Fprintf(w, "%s: does not exist: the next start is a first start\n", path)
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(w, "%s: does not exist: no write since backups began\n", path)
		case errors.As(err, &de):
			fmt.Fprintf(w, "%s: DAMAGED: %s\n", path, de.Problem)
			bad = append(bad, name)
		case err != nil:
			fmt.Fprintf(w, "%s: NOT CHECKED: %v\n", path, err)
			bad = append(bad, name)
		case sum.UnreadableEvents > 0:
			fmt.Fprintf(w, "%s: ok: revision %d, %d history events, but %d of them are not JSON (damaged in place): a start works, `cutover history` shows each as damaged\n",
				path, sum.Revision, sum.HistoryEvents, sum.UnreadableEvents)
		default:
			fmt.Fprintf(w, "%s: ok: revision %d, %d history events\n", path, sum.Revision, sum.HistoryEvents)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("state check failed for %v in %s", bad, dir)
	}
	return nil
}

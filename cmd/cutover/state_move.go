package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cutover-dev/cutover/internal/config"
	"github.com/cutover-dev/cutover/internal/gateway"
	"github.com/cutover-dev/cutover/internal/rollout"
	"github.com/cutover-dev/cutover/internal/store"
)

// stateFormat names the export file's format.
const stateFormat = "cutover-state/1"

// stateExport is what `cutover state export` writes: the state document at
// its revision and the whole history, oldest first.
type stateExport struct {
	Format   string            `json:"format"`
	Revision int64             `json:"revision"`
	State    json.RawMessage   `json:"state"`
	History  []json.RawMessage `json:"history"`
}

// openConfiguredStore opens the store of the configuration file path:
// bbolt in state_dir (cutover stopped: it holds the file locked) or etcd.
func openConfiguredStore(path string) (store.Store, error) {
	if path == "" {
		return nil, &usageError{errors.New("--config FILE is required")}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &usageError{err}
	}
	return gateway.OpenStore(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func newStateExportCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "export --config FILE > state.json",
		Short: "Write the state and its history as JSON (from bbolt or etcd, as the config says)",
		Long: `Write the state the configuration's store holds (bbolt in state_dir, or etcd
when the config has an etcd block) to stdout as JSON: the state document at
its revision, with the whole history. With bbolt, stop cutover first (it
holds the file locked). "cutover state import" reads it back into another
store, so a single gateway grows into a fleet without losing its history or
a retained pool.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openConfiguredStore(cfgPath)
			if err != nil {
				return err
			}
			defer st.Close()
			return exportState(cmd.Context(), st, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file whose store to read")
	return cmd
}

func exportState(ctx context.Context, st store.Store, w io.Writer) error {
	rec, err := st.Get(ctx)
	if err != nil {
		return err
	}
	if rec.Revision == 0 {
		return errors.New("the store holds no state yet (revision 0): nothing to export")
	}
	hist, err := st.History(ctx, 0)
	if err != nil {
		return err
	}
	out := stateExport{Format: stateFormat, Revision: rec.Revision, State: rec.Data, History: make([]json.RawMessage, len(hist))}
	for i, h := range hist {
		if !json.Valid(h) {
			// Damaged in place: kept, as a JSON string of its bytes, so
			// that the rest is exported.
			h, _ = json.Marshal(map[string]string{"action": "damaged", "actor": "store", "reason": "this history entry could not be read when exported", "raw": string(h)})
		}
		out.History[i] = h
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func newStateImportCmd() *cobra.Command {
	var cfgPath, file string
	var replace bool
	cmd := &cobra.Command{
		Use:   "import --config FILE [--file state.json] [--replace]",
		Short: "Load an exported state into the config's store (which must be empty)",
		Long: `Read a "cutover state export" file (stdin, or --file) and write it into the
store the configuration names (bbolt in state_dir, or etcd with an etcd
block), keeping its revision and history. The target must hold no state:
importing over one is refused. Start the gateways afterwards.

A fleet gateway's local copy of the state (state_dir/` + store.LocalFile + `) is
read too: the state without its history.

--replace (etcd only) writes over the state the prefix holds, for when it
cannot be followed: etcd lost its data or was restored from an older
snapshot (gateways refuse to start, status says "store problem"), or its
state is damaged. Take the local copy of the gateway that applied the
highest revision. Running gateways take the written state at once: its
revision is the file's, or one past the highest the store or any gateway
of the fleet holds when that is higher. The history already in etcd stays.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader = cmd.InOrStdin()
			if file != "" {
				f, err := os.Open(file)
				if err != nil {
					return &usageError{err}
				}
				defer f.Close()
				in = f
			}
			st, err := openConfiguredStore(cfgPath)
			if err != nil {
				return err
			}
			defer st.Close()
			rev, n, err := importState(cmd.Context(), st, in, replace)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported revision %d with %d history events\n", rev, n)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file whose store to write")
	cmd.Flags().StringVar(&file, "file", "", "export file (or a fleet gateway's "+store.LocalFile+") to read (default stdin)")
	cmd.Flags().BoolVar(&replace, "replace", false, "etcd only: write over the state the prefix holds (one that went back in time or is damaged)")
	return cmd
}

// replacer is a store that can write a state over the one it holds
// (store.Etcd).
type replacer interface {
	Replace(ctx context.Context, rec store.Record, history [][]byte) (int64, error)
}

func importState(ctx context.Context, st store.Store, r io.Reader, replace bool) (int64, int, error) {
	var in struct {
		stateExport
		// A fleet gateway's local copy has these, and no format.
		Saved  *time.Time `json:"saved"`
		Prefix string     `json:"prefix"`
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, 0, errors.New("read the export: it is empty (give `cutover state export` output on stdin or with --file)")
		}
		return 0, 0, fmt.Errorf("read the export: %w", err)
	}
	if in.Format != stateFormat && (in.Format != "" || in.Saved == nil) {
		return 0, 0, fmt.Errorf("export format %q, want %q (or a fleet gateway's %s)", in.Format, stateFormat, store.LocalFile)
	}
	if in.Revision <= 0 || len(in.State) == 0 || !json.Valid(in.State) {
		return 0, 0, fmt.Errorf("the export holds no valid state (revision %d)", in.Revision)
	}
	if err := rollout.CheckDocument(in.State, config.PoolNames); err != nil {
		// Imported, it would stop every start (a damaged state) with
		// nothing left to import over.
		return 0, 0, fmt.Errorf("the export's state cannot be started from: %w: %.80s", err, in.State)
	}
	if e, ok := st.(interface{ Prefix() string }); ok && in.Prefix != "" && in.Prefix != e.Prefix() {
		return 0, 0, fmt.Errorf("the local copy is of the fleet under etcd prefix %q, not %q: another fleet's state", in.Prefix, e.Prefix())
	}
	if replace {
		rp, ok := st.(replacer)
		if !ok {
			return 0, 0, &usageError{errors.New("--replace is for a fleet's etcd store; to restore a single gateway's state see docs/operations.md (Restoring the state)")}
		}
		hist, err := compactAll(in.History)
		if err != nil {
			return 0, 0, err
		}
		doc, err := compactJSON(in.State)
		if err != nil {
			return 0, 0, fmt.Errorf("the export's state: %w", err)
		}
		rev, err := rp.Replace(ctx, store.Record{Revision: in.Revision, Data: doc}, hist)
		return rev, len(hist), err
	}
	imp, ok := st.(store.Importer)
	if !ok {
		return 0, 0, errors.New("this store cannot import")
	}
	doc, err := compactJSON(in.State)
	if err != nil {
		return 0, 0, fmt.Errorf("the export's state: %w", err)
	}
	hist, err := compactAll(in.History)
	if err != nil {
		return 0, 0, err
	}
	if err := imp.Import(ctx, store.Record{Revision: in.Revision, Data: doc}, hist); err != nil {
		return 0, 0, err
	}
	return in.Revision, len(hist), nil
}

// compactJSON removes the indentation an export has for people: the
// store holds compact JSON.
func compactJSON(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	err := json.Compact(&b, raw)
	return b.Bytes(), err
}

// compactAll is compactJSON of each history event.
func compactAll(history []json.RawMessage) ([][]byte, error) {
	hist := make([][]byte, len(history))
	for i, h := range history {
		var err error
		if hist[i], err = compactJSON(h); err != nil {
			return nil, fmt.Errorf("the export's history event %d: %w", i, err)
		}
	}
	return hist, nil
}

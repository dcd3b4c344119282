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
	cmd := &cobra.Command{
		Use:   "import --config FILE [--file state.json]",
		Short: "Load an exported state into the config's store (which must be empty)",
		Long: `Read a "cutover state export" file (stdin, or --file) and write it into the
store the configuration names (bbolt in state_dir, or etcd with an etcd
block), keeping its revision and history. The target must hold no state:
importing over one is refused. Start the gateways afterwards.`,
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
			rev, n, err := importState(cmd.Context(), st, in)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported revision %d with %d history events\n", rev, n)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file whose store to write")
	cmd.Flags().StringVar(&file, "file", "", "export file to read (default stdin)")
	return cmd
}

func importState(ctx context.Context, st store.Store, r io.Reader) (int64, int, error) {
	var in stateExport
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, 0, errors.New("read the export: it is empty (give `cutover state export` output on stdin or with --file)")
		}
		return 0, 0, fmt.Errorf("read the export: %w", err)
	}
	if in.Format != stateFormat {
		return 0, 0, fmt.Errorf("export format %q, want %q", in.Format, stateFormat)
	}
	if in.Revision <= 0 || len(in.State) == 0 || !json.Valid(in.State) {
		return 0, 0, fmt.Errorf("the export holds no valid state (revision %d)", in.Revision)
	}
	if err := rollout.CheckDocument(in.State, config.PoolNames); err != nil {
		// Imported, it would stop every start (a damaged state) with
		// nothing left to import over.
		return 0, 0, fmt.Errorf("the export's state cannot be started from: %w: %.80s", err, in.State)
	}
	imp, ok := st.(store.Importer)
	if !ok {
		return 0, 0, errors.New("this store cannot import")
	}
	// The export is indented for people; the store holds compact JSON.
	compact := func(raw []byte) ([]byte, error) {
		var b bytes.Buffer
		err := json.Compact(&b, raw)
		return b.Bytes(), err
	}
	doc, err := compact(in.State)
	if err != nil {
		return 0, 0, fmt.Errorf("the export's state: %w", err)
	}
	hist := make([][]byte, len(in.History))
	for i, h := range in.History {
		if hist[i], err = compact(h); err != nil {
			return 0, 0, fmt.Errorf("the export's history event %d: %w", i, err)
		}
	}
	if err := imp.Import(ctx, store.Record{Revision: in.Revision, Data: doc}, hist); err != nil {
		return 0, 0, err
	}
	return in.Revision, len(hist), nil
}

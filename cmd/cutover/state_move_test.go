package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/api"
	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
	"github.com/cutover-dev/cutover/internal/store"
)

// TestStateExportImportBoltToEtcdAndBack: a single gateway's bbolt state
// moves into etcd (through the commands, by config) and back, keeping
// revision, document and every history event.
func TestStateExportImportBoltToEtcdAndBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := store.OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	for rev := int64(0); rev < 3; rev++ {
		if err := b.Put(ctx, rev, []byte(fmt.Sprintf(`{"live":"blue","n":%d}`, rev+1)), []byte(fmt.Sprintf(`{"revision":%d}`, rev+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	srv := etcdtest.New(t)
	pools := "pools:\n  blue: {model: m, replicas: [http://127.0.0.1:9]}\n  green: {model: m2}\n"
	boltCfg := filepath.Join(t.TempDir(), "bolt.yaml")
	etcdCfg := filepath.Join(t.TempDir(), "etcd.yaml")
	must(t, os.WriteFile(boltCfg, []byte(pools+"state_dir: "+dir+"\n"), 0o600))
	must(t, os.WriteFile(etcdCfg, []byte(pools+"state_dir: "+t.TempDir()+"\netcd:\n  endpoints: ["+srv.Endpoint()+"]\n  prefix: /move/\n"), 0o600))

	run := func(args []string, stdin string) string {
		t.Helper()
		cmd := newStateCmd()
		var out bytes.Buffer
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetContext(ctx)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("state %v: %v", args, err)
		}
		return out.String()
	}
	exported := run([]string{"export", "--config", boltCfg}, "")
	if got := run([]string{"import", "--config", etcdCfg}, exported); !strings.Contains(got, "imported revision 3 with 3 history events") {
		t.Fatalf("import into etcd said %q", got)
	}
	// Importing over a state is refused.
	cmd := newStateCmd()
	cmd.SetArgs([]string{"import", "--config", etcdCfg})
	cmd.SetIn(strings.NewReader(exported))
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "holds a state already") {
		t.Errorf("second import = %v, want a refusal", err)
	}
	back := run([]string{"export", "--config", etcdCfg}, "")
	if back != exported {
		t.Fatalf("etcd export differs from the bbolt one:\n%s\nwant\n%s", back, exported)
	}
	// And into an empty bbolt store again.
	dir2 := t.TempDir()
	b2, err := store.OpenBolt(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if _, _, err := importState(ctx, b2, strings.NewReader(back), false); err != nil {
		t.Fatalf("import into bbolt: %v", err)
	}
	rec, _ := b2.Get(ctx)
	h, _ := b2.History(ctx, 0)
	if rec.Revision != 3 || string(rec.Data) != `{"live":"blue","n":3}` || len(h) != 3 {
		t.Fatalf("bbolt after import: revision %d %s, %d events", rec.Revision, rec.Data, len(h))
	}
	if err := b2.Put(ctx, 3, []byte(`{}`)); err != nil {
		t.Errorf("Put after import: %v", err)
	}
}

// TestStateImportReplaceOverDamaged: a fleet's etcd holds a damaged state
// (gateways keep their last table and refuse changes); a plain import is
// refused, and import --replace writes a gateway's local copy over it at
// a revision past the damaged one, so every gateway takes it as news.
func TestStateImportReplaceOverDamaged(t *testing.T) {
	ctx := context.Background()
	srv := etcdtest.New(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "etcd.yaml")
	must(t, os.WriteFile(cfgPath, []byte("pools:\n  blue: {model: m, replicas: [http://127.0.0.1:9]}\n  green: {model: m2}\n"+
		"state_dir: "+dir+"\netcd:\n  endpoints: ["+srv.Endpoint()+"]\n  prefix: /replace/\n"), 0o600))
	s, err := store.OpenEtcd(store.EtcdOptions{Endpoints: []string{srv.Endpoint()}, Prefix: "/replace/", Timeout: 2 * time.Second, LocalDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good := []byte(`{"live":"green"}`)
	must(t, s.Put(ctx, 0, good))
	must(t, s.SaveLocal(store.Record{Revision: 1, Data: good}))
	must(t, s.Put(ctx, 1, []byte(`{"live":"green", "pools": garb`)))

	local := filepath.Join(dir, store.LocalFile)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "--config", cfgPath, "--file", local}, "holds a state already"},
		{[]string{"import", "--config", cfgPath, "--file", local, "--replace"}, ""},
	} {
		cmd := newStateCmd()
		var out bytes.Buffer
		cmd.SetArgs(tc.args)
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetContext(ctx)
		err := cmd.Execute()
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Fatalf("state %v = %v, want an error with %q", tc.args, err, tc.want)
		case tc.want == "" && (err != nil || !strings.Contains(out.String(), "imported revision 3 with 0 history events")):
			t.Fatalf("state %v = %q, %v; want revision 3 written", tc.args, out.String(), err)
		}
	}
	rec, err := s.Get(ctx)
	if err != nil || rec.Revision != 3 || string(rec.Data) != string(good) {
		t.Fatalf("after the replace: revision %d %s, %v; want 3 %s", rec.Revision, rec.Data, err, good)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPrintFleet(t *testing.T) {
	var b bytes.Buffer
	printFleet(&b, nil)
	if b.Len() != 0 {
		t.Fatalf("a single gateway printed %q", b.String())
	}
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	printFleet(&b, &api.Fleet{Leader: "gw-b", Self: "gw-a", Store: api.StoreHealth{Kind: "etcd", Healthy: false, Since: since},
		Members: []api.FleetMember{{Name: "gw-a", Admin: "10.0.0.1:8081", Revision: 7}, {Name: "gw-b", Admin: "10.0.0.2:8081", Revision: 7}}})
	out := b.String()
	for _, want := range []string{"fleet: 2 gateways", "leader: gw-b", "UNREACHABLE since 2026-01-02T03:04:05Z", "gw-a  follower", "gw-b  leader", "revision 7"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "DIFFERS") {
		t.Errorf("members without digests flagged:\n%s", out)
	}
	b.Reset()
	printFleet(&b, &api.Fleet{Leader: "gw-b", Self: "gw-a", Config: "aaa", Store: api.StoreHealth{Kind: "etcd", Healthy: true},
		Members: []api.FleetMember{{Name: "gw-a", Config: "aaa"}, {Name: "gw-b", Config: "bbb"}}})
	out = b.String()
	if !strings.Contains(out, "CONFIG DIFFERS") || !strings.Contains(out, "configuration of gw-b differs from gw-a's") || strings.Count(out, "CONFIG DIFFERS") != 1 {
		t.Errorf("a member whose configuration differs is not flagged once:\n%s", out)
	}
	b.Reset()
	printFleet(&b, &api.Fleet{Self: "gw-a", Store: api.StoreHealth{Kind: "etcd", Healthy: false, Since: since}})
	if out := b.String(); !strings.Contains(out, "leader: (unknown while etcd is unreachable)") {
		t.Errorf("no leader while etcd is unreachable:\n%s", out)
	}
	b.Reset()
	printFleet(&b, &api.Fleet{Self: "gw-a", Leader: "gw-a", Store: api.StoreHealth{Kind: "etcd", Healthy: true, Problem: "etcd holds state revision 1, older than revision 58"}})
	if out := b.String(); !strings.Contains(out, "STATE CANNOT BE FOLLOWED") || !strings.Contains(out, "store problem: etcd holds state revision 1, older than revision 58") {
		t.Errorf("a store problem not shown:\n%s", out)
	}
}

// TestImportRefusesStateWithoutLivePool: an export whose state names no
// pool cutover knows is refused and nothing is written (a regression: it
// was imported, and every start then failed on "persisted live pool is
// not configured", with the store no longer empty to import into again).
func TestImportRefusesStateWithoutLivePool(t *testing.T) {
	// A field of the wrong type stops a start as surely (decided by
	// rollout.CheckDocument, as for state check and serve).
	for _, doc := range []string{`{"live":"purple"}`, `{}`, `{"live":""}`, `[1]`, `{"live":"green","pools":5}`} {
		t.Run(doc, func(t *testing.T) {
			st, err := store.OpenBolt(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			in := fmt.Sprintf(`{"format":%q,"revision":3,"state":%s}`, stateFormat, doc)
			if _, _, err := importState(context.Background(), st, strings.NewReader(in), false); err == nil || !strings.Contains(err.Error(), "cannot be started from") {
				t.Fatalf("import of state %s: %v, want a refusal saying a start cannot use it", doc, err)
			}
			if rec, err := st.Get(context.Background()); err != nil || rec.Revision != 0 {
				t.Errorf("after the refusal the store holds revision %d (%v), want nothing", rec.Revision, err)
			}
		})
	}
	st, err := store.OpenBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// An empty input says so (it said only "read the export: EOF").
	if _, _, err := importState(context.Background(), st, strings.NewReader(""), false); err == nil || !strings.Contains(err.Error(), "it is empty") {
		t.Fatalf("import of nothing: %v, want an error saying the export is empty", err)
	}
	in := fmt.Sprintf(`{"format":%q,"revision":3,"state":{"live":"green"}}`, stateFormat)
	if rev, _, err := importState(context.Background(), st, strings.NewReader(in), false); err != nil || rev != 3 {
		t.Fatalf("import of a state with green live: revision %d, %v", rev, err)
	}
}

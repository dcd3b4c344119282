package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/fleet/etcdtest"
)

// TestWatchFromAheadEndsWhenEtcdWentBack: after etcd lost its data its
// revision starts over, and the client's watch, resumed from the revision
// it had reached, waits in silence for one etcd has not reached. The next
// Ping sees etcd's revision below the newest seen and ends that watch, so
// that Watch reads the state again.
func TestWatchFromAheadEndsWhenEtcdWentBack(t *testing.T) {
	srv := etcdtest.New(t)
	s, err := OpenEtcd(EtcdOptions{Endpoints: []string{srv.Endpoint()}, Prefix: "/resync/", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ahead = 1 << 40 // the revision the old etcd had reached
	s.noteEtcdRev(ahead)
	done := make(chan struct{})
	go func() {
		s.follow(ctx, ahead+1, Record{}, func(Record) {})
		close(done)
	}()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the watch from a revision etcd has not reached kept waiting after Ping saw etcd's revision go back")
	}
}

// TestLocalCopyOfAnotherFleetIsNotUsed: a gateway moved to another etcd
// prefix (another fleet) finds its local copy holds the old fleet's
// state: it neither serves it while etcd is down nor refuses the new
// fleet's older state for it.
func TestLocalCopyOfAnotherFleetIsNotUsed(t *testing.T) {
	srv := etcdtest.New(t)
	dir := t.TempDir()
	open := func(prefix string) *Etcd {
		s, err := OpenEtcd(EtcdOptions{Endpoints: []string{srv.Endpoint()}, Prefix: prefix, Timeout: 2 * time.Second, LocalDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	old := open("/old/")
	if err := old.SaveLocal(Record{Revision: 58, Data: []byte(`{"live":"green"}`)}); err != nil {
		t.Fatal(err)
	}
	s := open("/new/")
	if loc, err := s.LoadLocal(); err != nil || loc.Revision != 0 {
		t.Fatalf("local copy under another prefix: revision %d, %v; want none", loc.Revision, err)
	}
	if rec, err := s.Get(context.Background()); err != nil || rec.Revision != 0 {
		t.Fatalf("a new fleet's first start: revision %d, %v; want 0 and no error", rec.Revision, err)
	}
	if loc, err := old.LoadLocal(); err != nil || loc.Revision != 58 {
		t.Fatalf("the old fleet's own copy: revision %d, %v; want 58", loc.Revision, err)
	}
}

// TestStartedFromLocalCopyThenOlderEtcd: a gateway started from its local
// copy (revision 50) while etcd was down; etcd comes back wiped and another
// gateway writes a first state (revision 1). The Ping says the store went
// back in time, rather than let the watch bring revision 1 in as news.
func TestStartedFromLocalCopyThenOlderEtcd(t *testing.T) {
	srv := etcdtest.New(t)
	dir := t.TempDir()
	open := func(dir string) *Etcd {
		s, err := OpenEtcd(EtcdOptions{Endpoints: []string{srv.Endpoint()}, Prefix: "/older/", Timeout: time.Second, LocalDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	if err := open(dir).SaveLocal(Record{Revision: 50, Data: []byte(`{"live":"green"}`)}); err != nil {
		t.Fatal(err)
	}
	s := open(dir)
	srv.Stop()
	ctx := context.Background()
	if rec, err := s.Get(ctx); err != nil || rec.Revision != 50 || !s.FromLocal() {
		t.Fatalf("start with etcd down: revision %d, %v; want the local copy's 50", rec.Revision, err)
	}
	if err := srv.Wipe(); err != nil {
		t.Fatal(err)
	}
	other := open(t.TempDir())
	deadline := time.Now().Add(20 * time.Second)
	for other.Put(ctx, 0, []byte(`{"live":"blue"}`)) != nil {
		if time.Now().After(deadline) {
			t.Fatal("etcd back: no write went through")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("etcd back: no ping went through")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p := s.Problem(); !strings.Contains(p, "older than revision 50") {
		t.Fatalf("problem %q, want the store behind the local copy's revision 50", p)
	}
}

package store

import (
	"context"
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

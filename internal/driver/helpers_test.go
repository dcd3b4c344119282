package driver_test

import (
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cutover-dev/cutover/internal/pool"
	"github.com/cutover-dev/cutover/internal/route"
)

// replicas builds a pool's replicas from URLs; a URL prefixed with "!" is
// a replica failing its health checks.
func replicas(t testing.TB, urls ...string) []*pool.Replica {
	t.Helper()
	var rs []*pool.Replica
	for _, raw := range urls {
		down := strings.HasPrefix(raw, "!")
		u, err := url.Parse(strings.TrimPrefix(raw, "!"))
		if err != nil {
			t.Fatal(err)
		}
		r := pool.NewReplica(u)
		if down {
			r.SetInitial(time.Now(), errDown)
		}
		rs = append(rs, r)
	}
	return rs
}

// table returns a routing table with live as the live pool; pools maps a
// pool name to its replicas.
func table(live string, pools map[string][]*pool.Replica) *route.Table {
	var ps []*pool.Pool
	for _, name := range slices.Sorted(maps.Keys(pools)) {
		ps = append(ps, &pool.Pool{Name: name, Model: "model-" + name, Replicas: pools[name]})
	}
	return route.New(1, live, "", ps...)
}

var errDown = errors.New("connection refused")

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
